//! portcullis-core: the Portcullis governance engine.
//!
//! Everything that decides lives here, host-agnostic: no proxy-wasm, no I/O,
//! no clock or randomness except through [`engine::Env`]. The proxy-wasm
//! filter (`filters/proxy-wasm`) and any other adapter are thin translations
//! of their host's callbacks into [`engine::Exchange`] calls, so the same
//! decisions hold natively, in Envoy, and in host-shim.
//!
//! Modules, in the order a request meets them:
//! * [`json`]: the strict parser (duplicate keys and other parser-differential
//!   tricks refused);
//! * [`mcp`]: JSON-RPC and MCP classification, revisions and framing rules;
//! * [`bundle`]: the registry and policy documents, compiled;
//! * [`route`]: canonical request targets, so a respelled route still
//!   reaches its server's governance;
//! * [`glob`]: name matching, one automaton per list;
//! * [`engine`]: the per-stream state machine;
//! * [`sse`]: incremental event-stream parsing for streamed responses;
//! * [`audit`]: one record per MCP message;
//! * [`coerce`]: the readings lax SDK servers make of tool arguments, for
//!   policy rules to match against (not yet wired into [`policy`]).

pub mod audit;
pub mod bundle;
pub mod engine;
pub mod glob;
pub mod json;
pub mod mcp;
pub mod signing;
pub mod sse;

pub use engine::{Engine, Env, Exchange};

// content security (issue 4)
pub mod jcs;
pub mod pins;
pub mod scan;

// identity (issue 3)
pub mod identity;

// policy (issue 5)
pub mod policy;

// route canonicalisation
pub mod route;

// lax argument coercion by SDK servers
pub mod coerce;

//! portcullis-core: the Portcullis governance engine.
//!
//! Everything that decides lives here, host-agnostic: no proxy-wasm, no I/O,
//! no clock or randomness except through [`engine::Env`]. The proxy-wasm
//! filter (`filters/proxy-wasm`) and any other adapter are thin translations
//! of their host's callbacks into [`driver::StreamDriver`] calls, so the same
//! decisions hold natively, in Envoy, and in host-shim.
//!
//! Modules, in the order a request meets them:
//! * [`json`]: the strict parser (duplicate keys and other parser-differential
//!   tricks refused);
//! * [`media`]: Content-Type parsed strictly (UTF-8 only, no duplicate
//!   parameters), and how each SDK client reads a response's type;
//! * [`sniff`]: could any upstream parser read a body on an unknown route
//!   as JSON-RPC (any charset, lenient parsers)?
//! * [`mcp`]: JSON-RPC and MCP classification, revisions and framing rules,
//!   and the id forms each SDK client matches to its own requests;
//! * [`bundle`]: the registry and policy documents, compiled;
//! * [`route`]: canonical request targets, so a respelled route still
//!   reaches its server's governance;
//! * [`glob`]: name matching, one automaton per list;
//! * [`driver`]: the phase rules of a stream (headers, body, trailers, local
//!   replies, host faults), once for every build;
//! * [`engine`]: the per-stream state machine;
//! * [`sse`]: incremental event-stream parsing for streamed responses;
//! * [`audit`]: one record per MCP message;
//! * [`coerce`]: the readings lax SDK servers make of tool arguments, for
//!   restricting policy rules to match against;
//! * [`route`]: request targets canonicalised as every server reads them;
//! * [`media`], [`sniff`]: content types, and bodies a server could read as
//!   JSON-RPC.

pub mod audit;
pub mod bundle;
pub mod coerce;
pub mod driver;
pub mod engine;
pub mod glob;
pub mod json;
pub mod mcp;
pub mod media;
pub mod signing;
pub mod sniff;
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

// fail closed (issue 14): request targets as every server reads them
pub mod route;

// one test support (issue 15): tests and benches only, never in a filter build
#[cfg(feature = "test-util")]
pub mod test_util;

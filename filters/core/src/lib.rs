//! portcullis-core: the Portcullis governance engine.
//!
//! Everything that decides lives here, host-agnostic: no proxy-wasm, no I/O,
//! no clock or randomness except through [`env::Env`]. The proxy-wasm
//! filter (`filters/proxy-wasm`) and any other adapter are thin translations
//! of their host's callbacks into [`driver::StreamDriver`] calls, so the same
//! decisions hold natively, in Envoy, and in host-shim.
//!
//! # Layers
//!
//! Modules are stacked, and a module imports only from its own layer or
//! below (`tests/layers.rs` fails the build otherwise, and on any cycle), so
//! each can be read, tested and fuzzed without the ones above it:
//!
//! 0. **foundations**, knowing nothing of MCP governance:
//!    [`mod@env`] (the host seam), [`json`] (the strict parser), [`jcs`],
//!    [`glob`], [`spec`] (field errors, names, keys), [`media`]
//!    (Content-Type as each client reads it), [`sniff`] (could a server read
//!    a body as JSON-RPC?), [`route`] (request targets as every server
//!    reads them), [`coerce`] (lax SDK readings of arguments), [`sse`]
//!    (incremental event streams), [`mcp`] (JSON-RPC and MCP
//!    classification, revisions, framing, id forms), [`fleet`] (the
//!    messages of the fleet state service: RLS v3 and
//!    `portcullis.fleet.v1`);
//! 1. **facts**: [`audit`] (one record per MCP message), [`pins`],
//!    [`scan`] (PII, secrets, poisoning), [`signing`], [`identity`]
//!    (tokens, scopes, minting), [`policy::approval`] (approval tokens);
//! 2. **rules**: [`policy`] (ABAC, compiled) and [`policy::limits`];
//! 3. **[`verdict`]**: what every pillar answers for one message, and the
//!    one place a refusal becomes a status, a code and a title;
//! 4. **[`bundle`]** (the documents, compiled) and [`policy::gate`] (rules,
//!    limits and approvals as one verdict);
//! 5. **pillars**: [`registry`] (lifecycle, lists, shadow MCP) and
//!    [`content`] (answers and arguments screened, tool memory);
//! 6. **[`engine`]**: the per-stream state machine combining the pillars'
//!    verdicts, never reinterpreting one;
//! 7. **[`driver`]**: the phase rules of a stream (headers, body, trailers,
//!    local replies, host faults), once for every build; and, for tests
//!    and benches only, `test_util` (feature `test-util`).
//!
//! `ARCHITECTURE.md` at the repository root follows one tools/call through
//! these files.

// 0. foundations
pub mod coerce;
pub mod env;
pub mod fleet;
pub mod glob;
pub mod jcs;
pub mod json;
pub mod mcp;
pub mod media;
pub mod outcall;
pub mod route;
pub mod sniff;
pub mod spec;
pub mod sse;

// 1. facts (and 2. rules: `policy`, `policy::limits`)
pub mod audit;
pub mod identity;
pub mod pins;
pub mod policy;
pub mod scan;
pub mod signing;

// 3. verdicts
pub mod verdict;

// 4. the compiled bundle
pub mod bundle;

// 5. pillars
pub mod content;
pub mod registry;
pub mod tasks;

// 6. and 7. the engine and its driver
pub mod driver;
pub mod engine;

// Tests and benches only (feature `test-util`), never in a filter build: a
// `MemoryEnv` and the document builders.
#[cfg(feature = "test-util")]
pub mod test_util;

pub use engine::{Engine, Env, Exchange};

//! The decision engine: one [`Exchange`] per HTTP stream, driven by the
//! adapter's callbacks, answering each with what to do.
//!
//! The engine performs no I/O and knows no host: it takes headers and body
//! bytes in, and hands back edits, local replies and audit records. The
//! proxy-wasm filter and every other adapter translate those into their own
//! calls, so all the deciding is here, and tested natively.
//!
//! Shape of an exchange (Envoy's filter phases):
//! 1. request headers: strip client `x-mcp-*`, route to a server; an MCP
//!    POST waits for its whole body (bounded), anything else goes on;
//! 2. request body: parse strictly, classify, check framing, decide every
//!    message; forward with audit headers, or reply locally;
//! 3. response headers: choose how to read the body (buffered JSON, streamed
//!    SSE, or pass), and drop `content-length` where the body may change,
//!    since headers cannot change once they are forwarded;
//! 4. response body: correlate responses with requests by JSON-RPC id,
//!    filter list results to what the caller may use, audit each message.
//!
//! Identity (docs/identity.md) runs in phase 1: a server with `identity`
//! answers its RFC 9728 metadata, refuses a missing or bad token with 401
//! and a challenge, and decides later, per message, whether the token's
//! scopes cover the call (403). The client's `Authorization` never goes
//! upstream unless the server says `passthrough`; a token minted for the
//! call replaces it.
//!
//! Content security (docs/content-security.md) runs in phases 2 and 4:
//! tool-call arguments are scanned for PII and secrets; tools/list answers
//! have their tools' pins checked and their definitions screened for
//! poisoning; tool results and prompts are screened and redacted, per SSE
//! event as it completes. What a server's last tools/list showed decides
//! whether a later tools/call to that tool is refused (rug pulls), shared
//! across worker VMs through the host's shared data when it has some.

use crate::audit::ApprovalNote;
use crate::audit::{AuditRecord, ContentFindings, Decision, Direction, Outcome, rfc3339};
use crate::bundle::{Bundle, BundleError, Server, UnmatchedRoutes};
use crate::content::{Review, review_answer, review_content, summarize};
use crate::env::random_id;
pub use crate::env::{Env, SharedWrite};
use crate::identity::cache::CacheStats;
use crate::identity::{Identity, IdentityError, ServerIdentity, TokenCache, UpstreamAuth};
use crate::json::{canonical_string, parse_strict};
use crate::mcp::{self, Envelope, Kind, Message, RoutingHeaders, Target, codes};
use crate::policy::approval;
use crate::scan::injection::Surface;
use crate::spec::{short_hash, truncate};
use crate::sse;
use crate::verdict::{ApprovalState, DenyCause, Verdict};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

mod approve;
mod decide;
mod fleet;
mod request;
mod respond;
mod response;

use response::*;

pub use crate::env::metrics;

/// Prefix of the headers the filter owns. Client-sent ones are removed.
pub const AUDIT_HEADER_PREFIX: &str = "x-mcp-";

/// The names among `names` that belong to the filter (`x-mcp-*`, however a
/// server spells it: CGI and WSGI read `x_mcp_subject` as `x-mcp-subject`).
pub fn owned_field_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if is_owned_field(name) && !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Whether a header or trailer name is one the filter owns: `x-mcp-` in any
/// case, with `_` read as `-`.
pub fn is_owned_field(name: &str) -> bool {
    let prefix = AUDIT_HEADER_PREFIX.as_bytes();
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.iter())
            .all(|(a, b)| a.to_ascii_lowercase() == *b || (a == b'_' && *b == b'-'))
}

/// The audit headers added to a forwarded request.
pub mod headers {
    pub const METHOD: &str = "x-mcp-method";
    pub const SERVER: &str = "x-mcp-server";
    pub const TOOL: &str = "x-mcp-tool";
    pub const DECISION: &str = "x-mcp-decision";
    pub const BUNDLE_VERSION: &str = "x-mcp-bundle-version";
    pub const REQUEST_ID: &str = "x-mcp-request-id";
    pub const SUBJECT: &str = "x-mcp-subject";
    pub const AGENT: &str = "x-mcp-agent";
    pub const TENANT: &str = "x-mcp-tenant";
    /// Ids of the Policy rules that decided, comma-separated.
    pub const RULES: &str = "x-mcp-rules";
    /// What shadow-mode rules would have decided, when it differs.
    pub const SHADOW_DECISION: &str = "x-mcp-shadow-decision";
    /// Limits marked `global`, for Envoy's rate-limit filter descriptors.
    pub const RATE_LIMIT: &str = "x-mcp-rate-limit";
    /// The approval token a client retries a `requireApproval` call with
    /// (read, then stripped like every client `x-mcp-*` header).
    pub const APPROVAL: &str = "x-mcp-approval";
}

/// A header edit list: removals first, then sets (replacing any value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
}

/// A response the filter sends itself, instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Short reason for the host's logs (Envoy's response code details).
    pub details: String,
}

/// The request head, as the host presents it (lowercase header names,
/// HTTP/2 style pseudo-headers already split out).
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHeadersAction {
    /// Forward the request now.
    Continue(HeaderEdits),
    /// Apply the edits, then hold the request until its body is complete.
    ReadBody(HeaderEdits),
    /// Refuse the request.
    Reply(LocalReply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBodyAction {
    /// Keep buffering.
    Wait,
    /// Forward the request with these header edits.
    Forward(HeaderEdits),
    /// Forward the request with these header edits and this body in place
    /// of the one received (redacted arguments); `content-length` is among
    /// the edits.
    Rewrite(HeaderEdits, Vec<u8>),
    /// Refuse the request.
    Reply(LocalReply),
    /// Keep holding the request and make this call first; its answer comes
    /// back through [`Exchange::on_call_done`].
    Call(crate::outcall::Outcall),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBodyAction {
    /// Forward the bytes as they are.
    Pass,
    /// Hold them; the next call sees them again, with more appended.
    Buffer,
    /// Forward these bytes in place of the ones given.
    Replace(Vec<u8>),
}

/// A compiled configuration, shared by all exchanges of a VM, with the
/// VM's state: verified tokens, and what each server's tools looked like.
#[derive(Debug)]
pub struct Engine {
    bundle: Bundle,
    tokens: Mutex<TokenCache>,
    /// What each server's tools looked like (content pillar).
    tools: crate::content::ToolMemory,
    /// Redacts arguments kept in records (`auditArguments: redacted`).
    audit_scanner: Option<crate::scan::Scanner>,
    /// Requests filed for their session's GET stream when the host has no
    /// shared store (see `Exchange::register_for_stream`).
    streams: Mutex<BTreeMap<String, StreamTable>>,
    /// The root context's calls to the fleet state service in flight
    /// (engine/fleet.rs).
    fleet_root: Mutex<fleet::RootCalls>,
}

impl Engine {
    pub fn new(bundle: Bundle) -> Engine {
        let tokens = TokenCache::new(bundle.settings.token_cache_entries);
        // Also what redacts the arguments an approval page shows.
        let approval_page = bundle
            .settings
            .approvals
            .as_ref()
            .is_some_and(|a| a.service.is_some());
        let audit_scanner = (bundle.settings.audit_arguments
            == crate::bundle::AuditArguments::Redacted
            || approval_page)
            .then(crate::scan::Scanner::builtin)
            .and_then(Result::ok);
        let mut tools = crate::content::ToolMemory::new(&bundle.version);
        if bundle.settings.fleet.is_some() {
            tools = tools.fleet_wide();
        }
        Engine {
            bundle,
            tokens: Mutex::new(tokens),
            tools,
            audit_scanner,
            streams: Mutex::new(BTreeMap::new()),
            fleet_root: Mutex::new(fleet::RootCalls::default()),
        }
    }

    /// Hits and misses of the verified-token cache.
    pub fn token_cache_stats(&self) -> CacheStats {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    }

    /// Tool definitions this VM canonicalised and hashed to check pins; a
    /// repeated tools/list's unchanged tools reuse their pins.
    pub fn pins_hashed(&self) -> u64 {
        self.tools.pins_hashed()
    }

    /// Tool definitions this VM screened (ContentPolicy); a repeated
    /// tools/list's unchanged tools reuse their findings.
    pub fn tools_screened(&self) -> u64 {
        self.tools.tools_screened()
    }

    /// Tools of `server` that calls are refused for, after their last
    /// definitions failed a pin or screening (as this VM saw them).
    pub fn quarantined_tools(&self, server: &str) -> Vec<String> {
        self.tools.quarantined(server)
    }

    /// Compiles the filter's configuration (a bundle's JSON).
    pub fn from_config(bytes: &[u8]) -> Result<Engine, Vec<BundleError>> {
        Bundle::from_json(bytes).map(Engine::new)
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn version(&self) -> &str {
        &self.bundle.version
    }
}

/// A call as an audit record describes it, to decide again
/// (`portcullis simulate`).
#[derive(Debug, Clone, Default)]
pub struct RecordedCall {
    pub server: String,
    pub method: String,
    pub tool: Option<String>,
    pub resource: Option<String>,
    pub prompt: Option<String>,
    /// `None` when the record kept only the arguments' hash.
    pub arguments: Option<Value>,
    pub subject: Option<String>,
    pub agent: Option<String>,
    pub tenant: Option<String>,
    pub source: Option<String>,
    pub time_nanos: u64,
}

/// What the engine decides for a [`RecordedCall`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// `allow`, `deny` or `requireApproval`.
    pub decision: &'static str,
    pub rule: Option<String>,
    pub rules: Vec<String>,
    pub reason: String,
    /// What shadow rules would decide, when it differs.
    pub shadow: Option<&'static str>,
    pub policy_errors: Vec<String>,
}

struct ReplayEnv(u64);

impl Env for ReplayEnv {
    fn now_nanos(&self) -> u64 {
        self.0
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

impl Engine {
    /// Decides a recorded call with the same code a live one goes through:
    /// lifecycle, registry lists, quarantine and Policy rules. Not replayed:
    /// the token's scopes (records do not keep the token), limits and
    /// approvals' single use (they are state, not policy); an approval-gated
    /// call comes out as `requireApproval`.
    pub fn replay(self: &Arc<Self>, call: &RecordedCall) -> Replayed {
        use crate::identity::claims::Verification;
        let mut ex = Exchange::new(Arc::clone(self));
        ex.replay = true;
        ex.started_nanos = call.time_nanos;
        ex.source = call.source.clone();
        ex.server = self
            .bundle
            .servers
            .iter()
            .position(|s| s.name == call.server);
        ex.identity = call.subject.as_ref().map(|sub| {
            Arc::new(Identity {
                provider: "replay".into(),
                issuer: String::new(),
                subject: sub.clone(),
                agent: call.agent.clone(),
                tenant: call.tenant.clone(),
                roles: Vec::new(),
                groups: Vec::new(),
                scopes: Vec::new(),
                jti: None,
                audiences: Vec::new(),
                expires_at: None,
                not_before: None,
                issued_at: None,
                verification: Verification::EnvoyJwtAuthn,
                claims: serde_json::Map::new(),
            })
        });
        let target = match (&call.tool, &call.resource, &call.prompt) {
            (Some(t), _, _) => Target::Tool(t.clone()),
            (_, Some(r), _) => Target::Resource(r.clone()),
            (_, _, Some(p)) => Target::Prompt(p.clone()),
            _ => Target::None,
        };
        let msg = Message {
            kind: Kind::Request,
            id: Some(Value::from(1)),
            method: Some(call.method.clone()),
            target,
            arguments: call.arguments.clone(),
            meta_revision: None,
            client: None,
            error_code: None,
        };
        let env = ReplayEnv(call.time_nanos);
        let v = if ex.server.is_none() {
            Verdict::deny(
                DenyCause::Registry,
                format!("no McpServer named {:?} in this bundle", call.server),
                None,
            )
        } else {
            ex.verdict(&env, &msg)
        };
        let decision = match (&v.decision, &v.approval) {
            (Decision::Deny, Some(_)) => "requireApproval",
            (Decision::Deny, None) => "deny",
            (Decision::Allow, _) => "allow",
        };
        Replayed {
            decision,
            rule: v.rule,
            rules: v.rules,
            reason: v.reason,
            shadow: v.shadow.map(|s| s.decision),
            policy_errors: v.policy_errors,
        }
    }
}

/// How the response body is being read.
#[derive(Debug)]
enum ResponseMode {
    /// Not inspected: not MCP, or an HTTP error, or a reply of our own.
    Pass,
    /// One JSON document, buffered whole.
    Json,
    /// An event stream, inspected event by event.
    Sse(sse::Parser),
    /// The body was refused; what is left of it is dropped.
    Discard,
    /// An error answer's text (not JSON), buffered whole and screened.
    Text,
    /// No client reads this body (a 202's): it is not forwarded.
    Drop,
}

/// A forwarded request waiting for its response.
#[derive(Debug, Clone)]
struct Pending {
    /// The request's JSON-RPC id, as the client sent it.
    id: Value,
    record: AuditRecord,
    method: String,
    /// A tools/list for a later page (`params.cursor`).
    paged: bool,
}

/// What the request was, once its headers are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// No server matched (pass-through); not governed.
    Unmatched,
    /// No server matched, and the request may carry MCP: its body is read
    /// to tell (shadow-MCP discovery), then passed or refused.
    Shadow,
    /// An MCP POST on a server's route.
    Post,
    /// A GET (SSE stream) or other method on a server's route.
    Stream,
    /// DELETE (session end) or anything that carries no MCP message.
    Other,
}

/// One HTTP exchange.
#[derive(Debug)]
pub struct Exchange {
    engine: Arc<Engine>,
    request_id: String,
    /// The request's own `x-request-id`, recorded beside the filter's id.
    client_request_id: Option<String>,
    server: Option<usize>,
    route: Route,
    head: RequestHead,
    revision: Option<String>,
    session: Option<String>,
    started_nanos: u64,
    replied_locally: bool,
    pending: Vec<Pending>,
    /// Notifications and client responses forwarded, completed at 202.
    accepted: Vec<AuditRecord>,
    response_status: u16,
    mode: ResponseMode,
    stream_index: u32,
    done: Vec<AuditRecord>,
    finished: bool,
    /// Bytes to send in place of a refused response body, once.
    replacement: Option<Vec<u8>>,
    /// Who the verified token says is calling.
    identity: Option<Arc<Identity>>,
    /// What replaced the client's token upstream (audit).
    upstream_token: Option<&'static str>,
    /// The peer address (the host's `source.address`).
    source: Option<String>,
    /// Concurrency slots held until the stream ends.
    leases: Vec<crate::policy::limits::Lease>,
    /// A replay (`portcullis simulate`): the token's scopes are not known.
    replay: bool,
    /// The answer came with an error status: what it leaves unanswered
    /// completes as an HTTP error.
    http_error: bool,
    /// The legacy transport's session, as a GET stream's `endpoint` event
    /// named it (hashed).
    stream_session: Option<String>,
    /// The client's self-description, from the body (see
    /// [`mcp::ClientInfo`]).
    client: Option<mcp::ClientInfo>,
    /// `requestHeaders: forward`: the request headers went upstream before
    /// the body was decided, announcing these calls (from `Mcp-Method` and
    /// `Mcp-Name`; empty when the client sent none). The body must match.
    early: Option<Vec<(String, Option<String>)>>,
    /// An approval round trip waiting on its outcall (`approve.rs`).
    approval_flow: Option<Box<approve::Flow>>,
    /// The grant the approval service handed back, decided with in place
    /// of an `x-mcp-approval` header.
    approval_token: Option<String>,
    /// The round trip is over: the request is decided on what it has.
    approval_resolved: bool,
    /// This is an `initialize` that declared URL-mode elicitation.
    offers_url_mode: bool,
    /// Who approved (the approval service's word, for the record).
    approvers: Vec<String>,
    /// The last outcall id given out.
    next_call: u32,
    /// A fleet question in flight: a limit or an approval's spend
    /// (engine/fleet.rs).
    fleet_flow: Option<fleet::FleetFlow>,
    /// The fleet answers this request got.
    fleet_answers: fleet::FleetAnswers,
    /// The fleet's answers to this request's spends: spend key -> first
    /// spend (`None`: no answer).
    fleet_spends: Vec<(String, Option<bool>)>,
}

impl Exchange {
    pub fn new(engine: Arc<Engine>) -> Exchange {
        Exchange {
            engine,
            request_id: String::new(),
            client_request_id: None,
            server: None,
            route: Route::Unmatched,
            head: RequestHead::default(),
            revision: None,
            session: None,
            started_nanos: 0,
            replied_locally: false,
            pending: Vec::new(),
            accepted: Vec::new(),
            response_status: 0,
            mode: ResponseMode::Pass,
            stream_index: 0,
            done: Vec::new(),
            finished: false,
            replacement: None,
            identity: None,
            upstream_token: None,
            source: None,
            leases: Vec::new(),
            replay: false,
            http_error: false,
            stream_session: None,
            client: None,
            early: None,
            approval_flow: None,
            approval_token: None,
            approval_resolved: false,
            offers_url_mode: false,
            approvers: Vec::new(),
            next_call: 0,
            fleet_flow: None,
            fleet_answers: Vec::new(),
            fleet_spends: Vec::new(),
        }
    }

    /// Phase 2 resumed: the answer to the outcall (`RequestBodyAction::Call`)
    /// the request waited on. Each feature that makes calls claims the
    /// answers to its own; an answer nothing waits for fails closed.
    pub fn on_call_done(
        &mut self,
        env: &mut dyn Env,
        id: u32,
        result: crate::outcall::CallResult,
    ) -> RequestBodyAction {
        if let Some(flow) = self.approval_flow.take() {
            return self.approval_call_done(env, flow, id, result);
        }
        if let Some(action) = self.fleet_answer(env, id, &result) {
            return action;
        }
        RequestBodyAction::Reply(
            self.internal_error(env, "an outcall answer with no call in flight"),
        )
    }

    /// A fresh id for an outcall of this exchange.
    pub(super) fn next_call_id(&mut self) -> u32 {
        self.next_call = self.next_call.wrapping_add(1);
        self.next_call
    }

    /// The audit records completed since the last call.
    pub fn take_audit(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.done)
    }

    /// The id this exchange reports in `x-mcp-request-id` and its records.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn bundle(&self) -> &Bundle {
        &self.engine.bundle
    }

    fn server(&self) -> Option<&Server> {
        self.server.and_then(|i| self.engine.bundle.servers.get(i))
    }
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

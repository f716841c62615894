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

use crate::audit::{ApprovalNote, LimitNote};
use crate::audit::{
    AuditRecord, ContentFindings, Decision, Direction, Outcome, PinFinding, rfc3339,
};
use crate::bundle::{Bundle, BundleError, PinFailure, Server, UnknownMethods, UnmatchedRoutes};
use crate::identity::cache::CacheStats;
use crate::identity::{
    Identity, IdentityError, ServerIdentity, TokenCache, TrustMode, UpstreamAuth, extract_bearer,
};
use crate::json::{canonical_string, parse_strict};
use crate::mcp::{self, Envelope, Kind, Message, RoutingHeaders, Target, codes};
use crate::pins::PinStatus;
use crate::policy::{approval, limits};
use crate::scan::injection::Surface;
use crate::scan::{ContentPolicy, Inspection};
use crate::sse;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::env::StoreOf;
pub use crate::env::{Env, SharedWrite};

/// The counters the engine reports through [`Env::count`]. Per-type
/// counters append `.<TYPE>` (`portcullis.pii_found.EMAIL`).
pub mod metrics {
    pub const MESSAGES_ALLOWED: &str = "portcullis.messages_allowed";
    pub const MESSAGES_DENIED: &str = "portcullis.messages_denied";
    pub const AUTH_FAILED: &str = "portcullis.auth_failed";
    pub const SCOPE_DENIED: &str = "portcullis.scope_denied";
    pub const TOKENS_MINTED: &str = "portcullis.tokens_minted";
    pub const PINS_FAILED: &str = "portcullis.pins_failed";
    pub const POISONED_TOOLS_DROPPED: &str = "portcullis.poisoned_tools_dropped";
    pub const PII_FOUND: &str = "portcullis.pii_found";
    pub const INJECTION_FOUND: &str = "portcullis.injection_found";
    pub const CONTENT_BLOCKED: &str = "portcullis.content_blocked";
    pub const CONTENT_REDACTED: &str = "portcullis.content_redacted";
    pub const POLICY_DENIED: &str = "portcullis.policy_denied";
    pub const SHADOW_WOULD_DENY: &str = "portcullis.shadow_would_deny";
    pub const RATE_LIMITED: &str = "portcullis.rate_limited";
    pub const APPROVALS_REQUIRED: &str = "portcullis.approvals_required";
    pub const APPROVALS_GRANTED: &str = "portcullis.approvals_granted";
    pub const SHADOW_MCP: &str = "portcullis.shadow_mcp";
}

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
    tools: Mutex<BTreeMap<String, ToolState>>,
    /// Redacts arguments kept in records (`auditArguments: redacted`).
    audit_scanner: Option<crate::scan::Scanner>,
    /// Requests filed for their session's GET stream when the host has no
    /// shared store (see `Exchange::register_for_stream`).
    streams: Mutex<BTreeMap<String, StreamTable>>,
}

/// What the last tools/list of a server showed.
#[derive(Debug, Clone, Default)]
struct ToolState {
    /// Tools refused until a later list shows them passing, with why.
    failed: BTreeMap<String, String>,
    /// The pin of each tool's last-seen definition.
    hashes: BTreeMap<String, String>,
    /// Names of the last complete (unpaged) list.
    names: Option<BTreeSet<String>>,
    /// Each tool's `inputSchema` as last served, compiled: a call's
    /// arguments must validate against it strictly.
    schemas: BTreeMap<String, ToolSchema>,
}

/// A tool's advertised `inputSchema`, compiled once per definition.
#[derive(Debug, Clone)]
struct ToolSchema {
    /// The pin of the definition it came from (recompiled when it changes).
    hash: String,
    /// `None`: the schema did not compile (then only the policy's lax
    /// readings guard the call).
    validator: Option<Arc<jsonschema::Validator>>,
}

impl Engine {
    pub fn new(bundle: Bundle) -> Engine {
        let tokens = TokenCache::new(bundle.settings.token_cache_entries);
        let audit_scanner = (bundle.settings.audit_arguments
            == crate::bundle::AuditArguments::Redacted)
            .then(crate::scan::Scanner::builtin)
            .and_then(Result::ok);
        Engine {
            bundle,
            tokens: Mutex::new(tokens),
            tools: Mutex::new(BTreeMap::new()),
            audit_scanner,
            streams: Mutex::new(BTreeMap::new()),
        }
    }

    /// Hits and misses of the verified-token cache.
    pub fn token_cache_stats(&self) -> CacheStats {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    }

    /// Tools of `server` that calls are refused for, after their last
    /// definitions failed a pin or screening (as this VM saw them).
    pub fn quarantined_tools(&self, server: &str) -> Vec<String> {
        self.tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(server)
            .map(|s| s.failed.keys().cloned().collect())
            .unwrap_or_default()
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
            error_code: None,
        };
        let env = ReplayEnv(call.time_nanos);
        let v = if ex.server.is_none() {
            Verdict::deny(
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
        }
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

    /// Phase 1: the request headers.
    pub fn on_request_headers(
        &mut self,
        env: &mut dyn Env,
        head: RequestHead,
    ) -> RequestHeadersAction {
        self.started_nanos = env.now_nanos();
        // The record's id is the filter's own: a client-chosen x-request-id
        // would let two exchanges share one. The client's is kept beside it.
        self.request_id = random_id(env);
        self.client_request_id = head
            .header("x-request-id")
            .filter(|id| !id.is_empty() && id.is_ascii())
            .map(|id| truncate(id, 128).to_owned());
        self.session = head
            .header("mcp-session-id")
            .map(|s| short_hash(s.as_bytes()));
        self.source = env
            .property(&["source", "address"])
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|v| !v.is_empty() && v.len() <= 64);
        let mut edits = HeaderEdits::default();
        // The filter's own headers, however a server would spell them
        // (`X-MCP-Subject`, `x_mcp_subject`: CGI and WSGI read both as one).
        for (name, _) in &head.headers {
            if is_owned_field(name) && !edits.remove.contains(name) {
                edits.remove.push(name.clone());
            }
        }
        // RFC 9728 discovery needs no token, and lives outside the servers'
        // routes (`/.well-known/...`), so it is answered before routing.
        if head.method == "GET"
            && let Some(doc) = self.metadata_document(&head.path)
        {
            self.replied_locally = true;
            return RequestHeadersAction::Reply(LocalReply {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("cache-control".into(), "max-age=300".into()),
                ],
                body: doc.into_bytes(),
                details: "portcullis_protected_resource_metadata".into(),
            });
        }
        let engine = Arc::clone(&self.engine);
        // A target servers could read as another route is refused, not
        // guessed at (crate::route).
        let routed = engine.bundle.route(&head.authority, &head.path).map(|s| {
            s.and_then(|s| {
                engine
                    .bundle
                    .servers
                    .iter()
                    .position(|x| std::ptr::eq(x, s))
            })
        });
        self.head = head;
        let server = match routed {
            Ok(server) => server,
            Err(e) => {
                return RequestHeadersAction::Reply(self.refuse_head(
                    400,
                    codes::INVALID_REQUEST,
                    "Invalid Request",
                    format!(
                        "the request target cannot be read the way every server would read it: {e}"
                    ),
                ));
            }
        };
        self.server = server;
        if server.is_none() {
            if self.bundle().settings.unmatched_routes == UnmatchedRoutes::Deny {
                let reply = self.reply(
                    404,
                    None,
                    codes::UNKNOWN_SERVER,
                    "No registered MCP server at this route",
                    "no McpServer in the bundle matches this authority and path".into(),
                    None,
                );
                return RequestHeadersAction::Reply(reply);
            }
            // Maybe an MCP server the registry does not know: whatever the
            // method and content type, a body a server could read as
            // JSON-RPC is MCP. A request without a body is decided at once.
            self.route = Route::Shadow;
            return RequestHeadersAction::ReadBody(edits);
        }
        if let Some(reply) = self.refuse_ambiguous_head() {
            return RequestHeadersAction::Reply(reply);
        }
        if let Some(sid) = self.server().and_then(|s| s.identity.as_ref()) {
            match self.authenticate(env, &engine, sid) {
                Ok(identity) => {
                    self.identity = Some(identity);
                }
                Err(e) => return RequestHeadersAction::Reply(self.refuse_unauthenticated(env, &e)),
            }
        }
        // The upstream must answer in plain bytes: a compressed answer could
        // not be inspected (and is refused).
        edits
            .set
            .push(("accept-encoding".into(), "identity".into()));
        // Methods are compared exactly: `post` is not POST to the filter, and
        // some servers would read it as POST.
        match self.head.method.as_str() {
            "POST" => {
                self.route = Route::Post;
                if let Some(reply) = self.refuse_request_encoding() {
                    return RequestHeadersAction::Reply(reply);
                }
                if let Some(len) = self
                    .head
                    .header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    && len > self.bundle().settings.max_request_bytes
                {
                    return RequestHeadersAction::Reply(self.too_large(len));
                }
                RequestHeadersAction::ReadBody(edits)
            }
            // A GET (the server's stream), DELETE (session end), HEAD and
            // OPTIONS (CORS) carry no MCP message; one with a body is
            // refused when the body shows (a request without one is
            // forwarded at once).
            "GET" => {
                self.route = Route::Stream;
                RequestHeadersAction::ReadBody(edits)
            }
            "DELETE" | "HEAD" | "OPTIONS" => {
                self.route = Route::Other;
                RequestHeadersAction::ReadBody(edits)
            }
            other => {
                let reason = format!(
                    "method {:?} is not one an MCP endpoint accepts (POST, GET, DELETE); its body would reach the server uninspected",
                    truncate(other, 32)
                );
                let mut reply =
                    self.refuse_head(405, codes::INVALID_REQUEST, "Method not allowed", reason);
                reply
                    .headers
                    .push(("allow".into(), "GET, POST, DELETE".into()));
                RequestHeadersAction::Reply(reply)
            }
        }
    }

    /// Refuses a request on a governed route before its body is read, with
    /// a record saying why.
    fn refuse_head(&mut self, status: u16, code: i64, title: &str, reason: String) -> LocalReply {
        self.record_invalid(reason.clone(), code, status);
        self.reply(status, None, code, title, reason, None)
    }

    /// Headers that two readers could take differently: a repeated header
    /// the filter decides on (the filter reads one value, a server may read
    /// another, or both joined), and method overrides (a server that honours
    /// `X-HTTP-Method-Override` runs a method the filter never saw).
    fn refuse_ambiguous_head(&mut self) -> Option<LocalReply> {
        const SINGLE: &[&str] = &[
            "content-type",
            "content-length",
            "content-encoding",
            "transfer-encoding",
            "authorization",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "mcp-session-id",
            "last-event-id",
            "x-request-id",
        ];
        const OVERRIDES: &[&str] = &[
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ];
        let mut why = None;
        for name in SINGLE {
            let n = self
                .head
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .count();
            if n > 1 {
                why = Some(format!(
                    "header {name:?} appears {n} times; servers disagree on which one counts, so it is refused"
                ));
                break;
            }
        }
        // 2026-07-28's `Mcp-Param-*` mirrors of arguments: the server checks
        // each against the body, but a repeated one is read first-copy by one
        // reader and last-copy by another.
        if why.is_none() {
            let params: Vec<String> = self
                .head
                .headers
                .iter()
                .map(|(k, _)| k.to_ascii_lowercase())
                .filter(|k| k.starts_with("mcp-param-"))
                .collect();
            if let Some(dup) = params
                .iter()
                .enumerate()
                .find(|(i, k)| params.iter().skip(i + 1).any(|o| o == *k))
            {
                why = Some(format!(
                    "header {:?} appears more than once; servers disagree on which one counts, so it is refused",
                    truncate(dup.1, 64)
                ));
            }
        }
        if why.is_none()
            && let Some((k, _)) = self
                .head
                .headers
                .iter()
                .find(|(k, _)| OVERRIDES.iter().any(|o| k.eq_ignore_ascii_case(o)))
        {
            why = Some(format!(
                "header {:?} asks the server to run another method than the one the filter inspects; refused",
                truncate(k, 64)
            ));
        }
        why.map(|reason| self.refuse_head(400, codes::INVALID_REQUEST, "Invalid Request", reason))
    }

    /// An MCP POST's body must be JSON every server reads alike: the
    /// `application/json` media type with no charset but UTF-8 (a server that
    /// decodes by charset would read other bytes than the filter), and not
    /// compressed.
    fn refuse_request_encoding(&mut self) -> Option<LocalReply> {
        let ctype = self.head.header("content-type").unwrap_or("");
        let checked = crate::media::parse_utf8(ctype)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.is_json() {
                    Ok(())
                } else {
                    Err(format!("the media type is {}", m.essence()))
                }
            });
        if let Err(why) = checked {
            let reason = format!(
                "MCP messages are POSTed as application/json in UTF-8; content-type {:?}: {why}",
                truncate(ctype, 64)
            );
            return Some(self.refuse_head(
                415,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                reason,
            ));
        }
        if let Some(enc) = self
            .head
            .header("content-encoding")
            .filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            let reason = format!(
                "request bodies are inspected as sent; content-encoding {:?} is refused",
                truncate(enc, 32)
            );
            return Some(self.refuse_head(
                415,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                reason,
            ));
        }
        None
    }

    /// The RFC 9728 document for `path`, if it is a metadata path of a
    /// server with identity settings. The bare `/.well-known/...` path
    /// answers only when one server could be meant.
    fn metadata_document(&self, path: &str) -> Option<String> {
        let with_identity: Vec<&ServerIdentity> = self
            .bundle()
            .servers
            .iter()
            .filter_map(|s| s.identity.as_ref())
            .collect();
        let allow_bare = with_identity.len() == 1;
        with_identity
            .iter()
            .find(|sid| sid.metadata.serves(path, allow_bare))
            .map(|sid| sid.metadata.document_json())
    }

    /// Verifies the caller for a server with identity settings: claims from
    /// Envoy's `jwt_authn` for providers in that mode (when present), else
    /// the bearer token, checked here against providers in verify mode.
    fn authenticate(
        &self,
        env: &mut dyn Env,
        engine: &Engine,
        sid: &ServerIdentity,
    ) -> Result<Arc<Identity>, IdentityError> {
        let now = env.now_nanos() / 1_000_000_000;
        let providers = &engine.bundle.providers;
        let accepted = |mode: TrustMode| -> Vec<String> {
            providers
                .iter()
                .filter(|p| {
                    p.mode == mode && (sid.providers.is_empty() || sid.providers.contains(&p.name))
                })
                .map(|p| p.name.clone())
                .collect()
        };
        let envoy = accepted(TrustMode::EnvoyJwtAuthn);
        let verify = accepted(TrustMode::Verify);
        if crate::identity::query_has_token(&self.head.path) {
            return Err(IdentityError::TokenInQuery);
        }
        for name in &envoy {
            let Some(p) = providers.get(name) else {
                continue;
            };
            if let Some(payload) = env.property(&p.envoy_property_path()) {
                return providers
                    .authenticate_trusted_payload(&payload, sid.resource(), &envoy, now)
                    .map(Arc::new);
            }
        }
        if verify.is_empty() {
            return Err(IdentityError::MissingToken);
        }
        let authorization: Vec<&str> = self
            .head
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str())
            .collect();
        let token = extract_bearer(&authorization, &self.head.path)?;
        let mut cache = engine.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        providers.authenticate(token, sid.resource(), &verify, now, &mut cache)
    }

    /// 401 (or 400) with the challenge that points at the metadata, and a
    /// record: the body was never read, so the record is of the request.
    fn refuse_unauthenticated(&mut self, env: &mut dyn Env, e: &IdentityError) -> LocalReply {
        env.count(metrics::AUTH_FAILED, 1);
        let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
        let challenge = self
            .server()
            .and_then(|s| s.identity.as_ref())
            .map(|sid| sid.challenge(e))
            .unwrap_or_default();
        let reason = format!("{}; the request was not read", e.description());
        let mut record = self.unread_record(reason.clone(), codes::UNAUTHENTICATED, e.status());
        record.auth_error = Some(e.code());
        record.decision = Decision::Deny;
        record.outcome = Outcome::Denied;
        record.rule = Some(format!("McpServer/{server}#identity"));
        self.complete(record);
        let mut reply = self.reply(
            e.status(),
            None,
            codes::UNAUTHENTICATED,
            "Unauthorized",
            reason,
            Some(format!("McpServer/{server}#identity")),
        );
        reply.headers.push(("www-authenticate".into(), challenge));
        reply
    }

    /// What identity adds to a forwarded request, once, where it is
    /// forwarded: `x-mcp-subject/agent/tenant`, and the client's
    /// `Authorization` replaced or removed for `calls` (method and tool),
    /// per the server's `upstreamToken`.
    fn upstream_token_edits(
        &mut self,
        env: &mut dyn Env,
        calls: &[(&str, Option<&str>)],
        edits: &mut HeaderEdits,
    ) {
        let engine = Arc::clone(&self.engine);
        let Some(sid) = self
            .server
            .and_then(|i| engine.bundle.servers.get(i))
            .and_then(|s| s.identity.as_ref())
        else {
            return;
        };
        let Some(identity) = self.identity.clone() else {
            return;
        };
        for (name, value) in identity.audit_headers() {
            edits.set.push((name.to_owned(), value));
        }
        match sid.upstream_authorization_for(&identity, calls, env) {
            UpstreamAuth::Remove => {
                edits.remove.push("authorization".into());
                self.upstream_token = Some("stripped");
            }
            UpstreamAuth::Replace(minted) => {
                env.count(metrics::TOKENS_MINTED, 1);
                edits
                    .set
                    .push(("authorization".into(), minted.authorization()));
                self.upstream_token = Some("minted");
            }
            UpstreamAuth::Passthrough => {
                self.upstream_token = Some("passthrough");
            }
        }
    }

    /// Phase 2, while the body arrives: `size` is the total buffered so far.
    /// Refuses a body over the limit as soon as it is seen: on a governed
    /// route and on an unregistered one alike (a body that cannot be read
    /// whole cannot be shown not to be MCP).
    pub fn on_request_body_size(&mut self, size: u64) -> Option<LocalReply> {
        let reads = matches!(
            self.route,
            Route::Post | Route::Shadow | Route::Stream | Route::Other
        );
        if reads && !self.replied_locally && size > self.bundle().settings.max_request_bytes {
            return Some(self.too_large(size));
        }
        None
    }

    fn too_large(&mut self, size: u64) -> LocalReply {
        let limit = self.bundle().settings.max_request_bytes;
        let reason = format!(
            "request body of {size} bytes exceeds the {limit}-byte limit (Settings.spec.maxRequestBytes)"
        );
        self.record_invalid(reason.clone(), codes::TOO_LARGE, 413);
        self.reply(
            413,
            None,
            codes::TOO_LARGE,
            "Request body too large",
            reason,
            None,
        )
    }

    /// Phase 2: the request body. `body` is everything received so far.
    pub fn on_request_body(
        &mut self,
        env: &mut dyn Env,
        body: &[u8],
        end_of_stream: bool,
    ) -> RequestBodyAction {
        if self.replied_locally {
            return RequestBodyAction::Forward(HeaderEdits::default());
        }
        match self.route {
            Route::Shadow => return self.shadow_body(env, body, end_of_stream),
            Route::Stream | Route::Other => return self.bodiless(env, body, end_of_stream),
            Route::Unmatched => return RequestBodyAction::Forward(HeaderEdits::default()),
            Route::Post => {}
        }
        if let Some(reply) = self.on_request_body_size(body.len() as u64) {
            return RequestBodyAction::Reply(reply);
        }
        if !end_of_stream {
            return RequestBodyAction::Wait;
        }
        let value = match parse_strict(body) {
            Ok(v) => v,
            Err(e) => {
                let reason = e.to_string();
                self.record_invalid(reason.clone(), codes::PARSE_ERROR, 400);
                return RequestBodyAction::Reply(self.reply(
                    400,
                    None,
                    codes::PARSE_ERROR,
                    "Parse error",
                    reason,
                    None,
                ));
            }
        };
        let envelope = match mcp::classify(&value) {
            Ok(e) => e,
            Err(inv) => {
                self.record_invalid(inv.reason.clone(), inv.code, 400);
                let id = value.get("id").filter(|v| v.is_string() || v.is_number());
                return RequestBodyAction::Reply(self.reply(
                    400,
                    id,
                    inv.code,
                    "Invalid Request",
                    inv.reason,
                    None,
                ));
            }
        };
        if let Err(inv) = mcp::check_revisions(self.head.header("mcp-protocol-version"), &envelope)
            .and_then(|()| mcp::check_unique_ids(&envelope))
        {
            let first_id = envelope.messages.first().and_then(|m| m.id.clone());
            self.record_messages_invalid(&envelope, &inv.reason, inv.code);
            let title = if inv.code == codes::HEADER_MISMATCH {
                "Header mismatch"
            } else {
                "Invalid Request"
            };
            return RequestBodyAction::Reply(self.reply(
                400,
                first_id.as_ref(),
                inv.code,
                title,
                inv.reason,
                None,
            ));
        }
        let revision =
            mcp::effective_revision(self.head.header("mcp-protocol-version"), &envelope, &value);
        self.revision = Some(revision.clone());
        let routing = RoutingHeaders {
            protocol_version: self.head.header("mcp-protocol-version"),
            method: self.head.header("mcp-method"),
            name: self.head.header("mcp-name"),
        };
        if let Err(inv) = mcp::check_framing(&revision, &envelope, routing) {
            let first_id = envelope.messages.first().and_then(|m| m.id.clone());
            self.record_messages_invalid(&envelope, &inv.reason, inv.code);
            let title = if inv.code == codes::HEADER_MISMATCH {
                "Header mismatch"
            } else {
                "Invalid Request"
            };
            return RequestBodyAction::Reply(self.reply(
                400,
                first_id.as_ref(),
                inv.code,
                title,
                inv.reason,
                None,
            ));
        }
        let mut value = value;
        self.decide(env, envelope, &mut value)
    }

    fn decide(
        &mut self,
        env: &mut dyn Env,
        envelope: Envelope,
        value: &mut Value,
    ) -> RequestBodyAction {
        let mut decisions: Vec<Verdict> = envelope
            .messages
            .iter()
            .map(|m| self.verdict(env, m))
            .collect();
        // Content: tool-call arguments, in the body itself, so a redaction
        // is what the upstream receives.
        let mut rewritten = false;
        let mut findings: Vec<Option<ContentFindings>> = vec![None; envelope.messages.len()];
        if let Some((policy_name, policy)) = self.server().and_then(|s| s.content.clone()) {
            for (i, msg) in envelope.messages.iter().enumerate() {
                let allowed = decisions
                    .get(i)
                    .is_some_and(|d| d.decision == Decision::Allow);
                if !allowed || msg.method.as_deref() != Some("tools/call") {
                    continue;
                }
                let element = if envelope.batch {
                    value.get_mut(i)
                } else {
                    Some(&mut *value)
                };
                let Some(args) = element
                    .and_then(|v| v.get_mut("params"))
                    .and_then(|p| p.get_mut("arguments"))
                else {
                    continue;
                };
                let inspection = policy.inspect_arguments(args);
                rewritten |= inspection.modified && !inspection.blocked;
                let summary = summarize(env, &inspection);
                if inspection.blocked {
                    env.count(metrics::CONTENT_BLOCKED, 1);
                    if let Some(d) = decisions.get_mut(i) {
                        *d = Verdict::deny(
                            format!(
                                "the arguments carry {} which ContentPolicy/{policy_name} refuses on requests",
                                summary
                                    .as_ref()
                                    .map(ContentFindings::types)
                                    .unwrap_or_default()
                            ),
                            Some(format!("ContentPolicy/{policy_name}#pii")),
                        );
                    }
                }
                if let Some(f) = findings.get_mut(i) {
                    *f = summary;
                }
            }
        }
        let mut denied = decisions.iter().position(|d| d.decision == Decision::Deny);
        let mut global_limits = Vec::new();
        if denied.is_none() {
            // Limits count only calls that would otherwise go ahead, and an
            // approval is spent only once nothing else refuses the call.
            let (limited, global) = self.apply_limits(env, &envelope, &mut decisions);
            global_limits = global;
            if !limited && !self.spend_approvals(env, &mut decisions) {
                self.release_leases(env);
            }
            denied = decisions.iter().position(|d| d.decision == Decision::Deny);
        }
        for d in &decisions {
            if d.shadow.as_ref().is_some_and(|s| s.decision != "allow")
                && d.decision == Decision::Allow
            {
                env.count(metrics::SHADOW_WOULD_DENY, 1);
            }
        }
        if let Some(first_denied) = denied {
            env.count(metrics::MESSAGES_DENIED, decisions.len() as u64);
            if decisions.iter().any(|d| d.auth.is_some()) {
                env.count(metrics::SCOPE_DENIED, 1);
            }
            if decisions
                .iter()
                .any(|d| d.decision == Decision::Deny && !d.rules.is_empty() && d.limit.is_none())
            {
                env.count(metrics::POLICY_DENIED, 1);
            }
            if decisions
                .iter()
                .any(|d| d.approval.as_ref().is_some_and(|a| a.jti.is_none()))
            {
                env.count(metrics::APPROVALS_REQUIRED, 1);
            }
            return RequestBodyAction::Reply(self.refuse(
                &envelope,
                &decisions,
                &findings,
                first_denied,
            ));
        }
        env.count(metrics::MESSAGES_ALLOWED, decisions.len() as u64);
        let mut methods = Vec::new();
        let mut tools = Vec::new();
        let mut calls: Vec<(String, Option<String>)> = Vec::new();
        let mut rule_ids: Vec<String> = Vec::new();
        let mut shadow_decision: Option<&'static str> = None;
        for d in &decisions {
            for r in &d.rules {
                if !rule_ids.contains(r) {
                    rule_ids.push(r.clone());
                }
            }
            if let Some(sh) = &d.shadow {
                shadow_decision = Some(match (shadow_decision, sh.decision) {
                    (Some("deny"), _) | (_, "deny") => "deny",
                    (Some("requireApproval"), _) | (_, "requireApproval") => "requireApproval",
                    _ => "allow",
                });
            }
        }
        for (i, (msg, verdict)) in envelope.messages.iter().zip(decisions).enumerate() {
            let mut record = self.record_for(i as u32, Direction::Client, msg, &verdict);
            record.content = findings.get_mut(i).and_then(Option::take);
            if let Some(m) = &msg.method {
                methods.push(m.clone());
                let tool = match &msg.target {
                    Target::Tool(t) => Some(t.clone()),
                    _ => None,
                };
                calls.push((m.clone(), tool));
            }
            if let Target::Tool(t) = &msg.target {
                tools.push(t.clone());
                record.tool_sha256 = self.last_seen_hash(t);
            }
            match (msg.kind, &msg.id) {
                (Kind::Request, Some(id)) => {
                    let element = if envelope.batch {
                        value.get(i)
                    } else {
                        Some(&*value)
                    };
                    let paged = element
                        .and_then(|v| v.get("params"))
                        .and_then(|p| p.get("cursor"))
                        .is_some_and(|c| !c.is_null());
                    self.pending.push(Pending {
                        id: id.clone(),
                        record,
                        method: msg.method.clone().unwrap_or_default(),
                        paged,
                    })
                }
                _ => self.accepted.push(record),
            }
        }
        // The legacy transport answers on the session's GET stream, maybe
        // before this POST's 202 is back: the stream must know what it
        // answers from the moment the request goes upstream.
        if legacy_session_param(&self.head.path).is_some() && !self.pending.is_empty() {
            let open = self.pending.clone();
            self.register_for_stream(env, &open);
        }
        let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
        let mut edits = HeaderEdits::default();
        let call_refs: Vec<(&str, Option<&str>)> = calls
            .iter()
            .map(|(m, t)| (m.as_str(), t.as_deref()))
            .collect();
        self.upstream_token_edits(env, &call_refs, &mut edits);
        let token_mode = self.upstream_token;
        for p in self.pending.iter_mut() {
            p.record.upstream_token = token_mode;
        }
        for r in self.accepted.iter_mut() {
            r.upstream_token = token_mode;
        }
        edits.set.extend([
            (headers::METHOD.to_owned(), methods.join(",")),
            (headers::SERVER.to_owned(), server),
            (
                headers::DECISION.to_owned(),
                Decision::Allow.as_str().to_owned(),
            ),
            (
                headers::BUNDLE_VERSION.to_owned(),
                self.engine.version().to_owned(),
            ),
            (headers::REQUEST_ID.to_owned(), self.request_id.clone()),
        ]);
        if !tools.is_empty() {
            edits.set.push((headers::TOOL.to_owned(), tools.join(",")));
        }
        if !rule_ids.is_empty() {
            edits
                .set
                .push((headers::RULES.to_owned(), rule_ids.join(",")));
        }
        if let Some(sd) = shadow_decision {
            edits
                .set
                .push((headers::SHADOW_DECISION.to_owned(), sd.to_owned()));
        }
        if !global_limits.is_empty() {
            edits
                .set
                .push((headers::RATE_LIMIT.to_owned(), global_limits.join(",")));
        }
        if rewritten {
            let body = value.to_string().into_bytes();
            edits
                .set
                .push(("content-length".into(), body.len().to_string()));
            return RequestBodyAction::Rewrite(edits, body);
        }
        RequestBodyAction::Forward(edits)
    }

    /// The pin of `tool`'s definition in the server's last tools/list.
    fn last_seen_hash(&self, tool: &str) -> Option<String> {
        let server = self.server()?;
        let state = self
            .engine
            .tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.get(&server.name)?.hashes.get(tool).cloned()
    }

    /// Why calls to `tool` are refused, if its last-seen definition failed:
    /// the shared store when the host has one (all worker VMs agree), else
    /// this VM's own view.
    fn quarantine_reason(&self, env: &dyn Env, server: &Server, tool: &str) -> Option<String> {
        if let Some(bytes) = env.shared_get(&self.quarantine_key(server)) {
            return parse_strict(&bytes)
                .ok()?
                .get(tool)
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let state = self
            .engine
            .tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.get(&server.name)?.failed.get(tool).cloned()
    }

    fn quarantine_key(&self, server: &Server) -> String {
        format!(
            "portcullis.quarantine/{}/{}",
            self.engine.version(),
            server.name
        )
    }

    fn verdict(&self, env: &dyn Env, msg: &Message) -> Verdict {
        if let Some(server) = self.server()
            && let Some(refusal) = self.lifecycle_refusal(server)
        {
            return refusal;
        }
        let verdict = self.registry_verdict(msg);
        if verdict.decision == Decision::Deny {
            return verdict;
        }
        let Some(server) = self.server() else {
            return verdict;
        };
        if let (Some(method), Some(sid), Some(identity), false) = (
            msg.method.as_deref(),
            server.identity.as_ref(),
            self.identity.as_ref(),
            self.replay,
        ) {
            let tool = match &msg.target {
                Target::Tool(t) => Some(t.as_str()),
                _ => None,
            };
            if let Err(e) = sid.authorize(identity, method, tool) {
                let required = match &e {
                    IdentityError::InsufficientScope { required } => required.join(" "),
                    _ => String::new(),
                };
                let mut v = Verdict::deny(
                    format!(
                        "the token's scopes do not cover {method}{}; it needs {required:?}",
                        tool.map(|t| format!(" of tool {:?}", truncate(t, 128)))
                            .unwrap_or_default()
                    ),
                    Some(format!("McpServer/{}#identity.scopes", server.name)),
                );
                v.auth = Some(e);
                return v;
            }
        }
        if let Target::Tool(tool) = &msg.target
            && msg.method.as_deref() == Some("tools/call")
            && let Some(why) = self.quarantine_reason(env, server, tool)
        {
            return Verdict::deny(
                format!(
                    "tool {:?} is refused: its last-seen definition {why}",
                    truncate(tool, 128)
                ),
                Some(format!("McpServer/{}#pins", server.name)),
            );
        }
        let validator = match &msg.target {
            Target::Tool(tool) if msg.method.as_deref() == Some("tools/call") && !self.replay => {
                self.tool_validator(env, server, tool)
            }
            _ => None,
        };
        if let Target::Tool(tool) = &msg.target
            && let Some(why) =
                self.schema_refusal(validator.as_deref(), server, tool, msg.arguments.as_ref())
        {
            return Verdict::deny(why, Some(format!("McpServer/{}#inputSchema", server.name)));
        }
        self.policy_verdict(server, msg, verdict, validator.is_some())
    }

    /// The registry lifecycle: blocked, submitted outside dev, past its
    /// sunset, or not approved for this environment or tenant.
    fn lifecycle_refusal(&self, server: &Server) -> Option<Verdict> {
        use crate::bundle::ServerStatus;
        let settings = &self.bundle().settings;
        let rule = Some(format!("McpServer/{}#status", server.name));
        let today = self.started_nanos / (86_400 * 1_000_000_000);
        let why = match server.status {
            ServerStatus::Blocked => Some(format!("McpServer/{} is blocked", server.name)),
            ServerStatus::Submitted if settings.environment.as_deref() != Some("dev") => {
                Some(format!(
                    "McpServer/{} is submitted, not approved; it is usable only where Settings.spec.environment is dev",
                    server.name
                ))
            }
            ServerStatus::Deprecated if server.sunset_day.is_some_and(|d| today >= d) => {
                Some(format!(
                    "McpServer/{} is deprecated and past its sunset date",
                    server.name
                ))
            }
            _ => None,
        };
        if let Some(why) = why {
            return Some(Verdict::deny(why, rule));
        }
        if let Some(envname) = &settings.environment
            && !server.environments.is_empty()
            && !server.environments.contains(envname)
        {
            return Some(Verdict::deny(
                format!(
                    "McpServer/{} is not approved for environment {envname:?} (spec.environments)",
                    server.name
                ),
                Some(format!("McpServer/{}#environments", server.name)),
            ));
        }
        if !server.tenants.is_empty() {
            let tenant = self.identity.as_ref().and_then(|i| i.tenant.as_deref());
            if !tenant.is_some_and(|t| server.tenants.iter().any(|x| x == t)) {
                return Some(Verdict::deny(
                    format!(
                        "McpServer/{} is not approved for this caller's tenant (spec.tenants)",
                        server.name
                    ),
                    Some(format!("McpServer/{}#tenants", server.name)),
                ));
            }
        }
        None
    }

    fn policy_context(&self) -> crate::policy::Context<'_> {
        crate::policy::Context {
            identity: self.identity.as_deref(),
            source: self
                .source
                .as_deref()
                .and_then(crate::policy::parse_source_address),
            headers: &self.head.headers,
            now_unix: self.started_nanos / 1_000_000_000,
        }
    }

    /// The Policy rules' say on a call the registry allows.
    fn policy_verdict(
        &self,
        server: &Server,
        msg: &Message,
        verdict: Verdict,
        schema_known: bool,
    ) -> Verdict {
        use crate::policy::{Call, Outcome as P, TargetKind};
        let policy = &self.engine.bundle.policy;
        let Some(method) = msg.method.as_deref() else {
            return verdict;
        };
        if policy.rules.is_empty() {
            return verdict;
        }
        let target = match &msg.target {
            Target::Tool(t) => Some((TargetKind::Tool, t.as_str())),
            Target::Resource(r) => Some((TargetKind::Resource, r.as_str())),
            Target::Prompt(p) => Some((TargetKind::Prompt, p.as_str())),
            Target::None => None,
        };
        // A call that validated against the tool's advertised schema carries
        // the types the server reads; without one, restricting rules also
        // see every reading a lax server could make of the arguments.
        let lax = match (&msg.arguments, schema_known) {
            (Some(args), false) => crate::coerce::lax_variants(args),
            _ => Vec::new(),
        };
        let call = Call {
            server: &server.name,
            method,
            target,
            arguments: msg.arguments.as_ref(),
            lax_arguments: &lax,
        };
        let settings = &self.bundle().settings;
        let d = policy.decide(&call, &self.policy_context(), settings.enforce);
        let mut v = match d.outcome {
            P::Registry => verdict,
            P::Permit => Verdict::allow(d.reason.clone(), d.rules.first().cloned()),
            P::Forbid | P::NoPermit => Verdict::deny(
                d.reason.clone(),
                d.rules
                    .first()
                    .cloned()
                    .or_else(|| Some("Policy#default-deny".into())),
            ),
            P::RequireApproval => self.approval_verdict(server, &call, &d),
        };
        v.rules = d.rules;
        v.shadow = d.shadow;
        v.policy_errors = d.errors;
        v
    }

    /// A `requireApproval` call: allowed with a valid, unspent approval for
    /// exactly this call in `x-mcp-approval`, else refused with the id to
    /// approve.
    fn approval_verdict(
        &self,
        server: &Server,
        call: &crate::policy::Call,
        d: &crate::policy::PolicyDecision,
    ) -> Verdict {
        let rule = d.rules.first().cloned().unwrap_or_default();
        let binding = approval::Binding {
            sub: self
                .identity
                .as_ref()
                .map(|i| i.subject.clone())
                .unwrap_or_else(|| "-".into()),
            srv: server.name.clone(),
            tool: call.target.map(|(_, n)| n.to_owned()).unwrap_or_default(),
            args: approval::arguments_hash(call.arguments),
            rule: rule.clone(),
        };
        let id = approval::approval_id(&binding);
        let bundle = self.bundle();
        let token = self.head.header(headers::APPROVAL);
        let checked = token.map(|t| {
            approval::verify(
                t,
                &bundle.approval_keys,
                &id,
                self.started_nanos / 1_000_000_000,
                bundle.approval_max_ttl,
            )
        });
        match checked {
            Some(Ok(grant)) => {
                let mut v = Verdict::allow(format!("approved call ({})", d.reason), Some(rule));
                v.approval = Some(ApprovalState {
                    id,
                    binding,
                    jti: Some(grant.jti),
                    error: None,
                });
                v
            }
            other => {
                let error = match other {
                    Some(Err(e)) => Some(e),
                    _ => None,
                };
                let reason = match &error {
                    Some(e) => format!("{}; the approval sent was not accepted: {e}", d.reason),
                    None => format!(
                        "{}; retry with an approval token in x-mcp-approval",
                        d.reason
                    ),
                };
                let mut v = Verdict::deny(reason, Some(rule));
                v.approval = Some(ApprovalState {
                    id,
                    binding,
                    jti: None,
                    error,
                });
                v
            }
        }
    }

    /// Whether the caller may see `name` in a list (Policy rules).
    fn policy_visible(&self, kind: crate::policy::TargetKind, name: &str) -> bool {
        let Some(server) = self.server() else {
            return true;
        };
        let policy = &self.engine.bundle.policy;
        if policy.rules.is_empty() {
            return true;
        }
        let method = match kind {
            crate::policy::TargetKind::Tool => "tools/call",
            crate::policy::TargetKind::Resource => "resources/read",
            crate::policy::TargetKind::Prompt => "prompts/get",
        };
        let call = crate::policy::Call {
            server: &server.name,
            method,
            target: Some((kind, name)),
            arguments: None,
            lax_arguments: &[],
        };
        policy.visible(
            &call,
            &self.policy_context(),
            self.bundle().settings.enforce,
        )
    }

    /// Counts each allowed call against the limits that cover it. Returns
    /// the verdicts refused (with their limit), after giving back any slot
    /// this request took; shadow limits only note what they would do.
    fn apply_limits(
        &mut self,
        env: &mut dyn Env,
        envelope: &Envelope,
        decisions: &mut [Verdict],
    ) -> (bool, Vec<String>) {
        let engine = Arc::clone(&self.engine);
        let policy = &engine.bundle.policy;
        let mut global = Vec::new();
        if policy.limits.is_empty() {
            return (false, global);
        }
        let Some(server) = self.server().map(|s| s.name.clone()) else {
            return (false, global);
        };
        let identity = self.identity.clone();
        let now = env.now_nanos();
        let mut refused = false;
        for (msg, verdict) in envelope.messages.iter().zip(decisions.iter_mut()) {
            let Some(method) = msg.method.as_deref() else {
                continue;
            };
            let tool = match &msg.target {
                Target::Tool(t) => Some(t.as_str()),
                Target::Resource(r) => Some(r.as_str()),
                Target::Prompt(p) => Some(p.as_str()),
                Target::None => None,
            };
            let keys = limits::Keys {
                tenant: identity.as_ref().and_then(|i| i.tenant.as_deref()),
                subject: identity.as_ref().map(|i| i.subject.as_str()),
                agent: identity.as_ref().and_then(|i| i.agent.as_deref()),
                server: &server,
                method,
                tool,
            };
            for limit in policy.limits.iter().filter(|l| l.applies(&keys)) {
                if limit.global {
                    if !global.contains(&limit.id) {
                        global.push(limit.id.clone());
                    }
                    continue;
                }
                let lease_id = random_id(env);
                let enforced = limit.enforce && engine.bundle.settings.enforce;
                match limit.check(&mut StoreOf(env), &keys, now, &lease_id) {
                    limits::LimitVerdict::Within(lease) => {
                        if let Some(lease) = lease {
                            self.leases.push(lease);
                        }
                    }
                    limits::LimitVerdict::Over {
                        retry_after,
                        kind,
                        reason,
                    } => {
                        let note = LimitNote {
                            id: limit.id.clone(),
                            kind,
                            retry_after,
                            enforced,
                        };
                        if enforced {
                            *verdict = Verdict::deny(
                                format!("{reason} ({})", limit.id),
                                Some(limit.id.clone()),
                            );
                            verdict.limit = Some(note);
                            refused = true;
                            break;
                        }
                        verdict.shadow = Some(crate::policy::Shadow {
                            decision: "deny",
                            rules: vec![limit.id.clone()],
                        });
                        verdict.limit = Some(note);
                    }
                }
            }
            if refused {
                break;
            }
        }
        if refused {
            self.release_leases(env);
            env.count(metrics::RATE_LIMITED, 1);
        }
        (refused, global)
    }

    /// Records each approval of this request as spent, atomically across
    /// VMs. `false` (and the verdict refused) if one was already spent.
    fn spend_approvals(&mut self, env: &mut dyn Env, decisions: &mut [Verdict]) -> bool {
        let mut ok = true;
        for v in decisions.iter_mut() {
            let Some(state) = v.approval.as_mut() else {
                continue;
            };
            let Some(jti) = state.jti.clone() else {
                continue;
            };
            let key = format!("portcullis.approval/{jti}");
            let written = env.shared_write(&key, state.id.as_bytes(), None);
            if written == SharedWrite::Written {
                env.count(metrics::APPROVALS_GRANTED, 1);
                continue;
            }
            ok = false;
            // Conflict: spent already. Unavailable: single use cannot be
            // kept without a shared store, so it is refused the same way.
            let error = approval::ApprovalError::AlreadyUsed;
            let rule = v.rule.clone();
            let mut refused =
                Verdict::deny(format!("the approval sent was not accepted: {error}"), rule);
            refused.rules = std::mem::take(&mut v.rules);
            refused.approval = Some(ApprovalState {
                jti: None,
                error: Some(error),
                ..state.clone()
            });
            *v = refused;
        }
        ok
    }

    fn registry_verdict(&self, msg: &Message) -> Verdict {
        let Some(server) = self.server() else {
            return Verdict::deny("no McpServer matches this route".into(), None);
        };
        let Some(method) = msg.method.as_deref() else {
            return Verdict::allow("a client's answer to a server request".into(), None);
        };
        if !mcp::is_known_method(method) {
            return match self.bundle().settings.unknown_methods {
                UnknownMethods::Deny => Verdict::deny(
                    format!(
                        "method {:?} is not an MCP method this filter can govern",
                        truncate(method, 64)
                    ),
                    Some("Settings#unknownMethods".into()),
                ),
                UnknownMethods::Allow => Verdict::allow(
                    "unknown method allowed by Settings.unknownMethods".into(),
                    Some("Settings#unknownMethods".into()),
                ),
            };
        }
        let (set, field, what, name) = match &msg.target {
            Target::Tool(n) => (&server.tools, "tools", "tool", n),
            Target::Resource(n) => (&server.resources, "resources", "resource", n),
            Target::Prompt(n) => (&server.prompts, "prompts", "prompt", n),
            Target::None => {
                return Verdict::allow(
                    format!("{method} is allowed on every registered server"),
                    None,
                );
            }
        };
        match set.first_match(name) {
            Some(i) => Verdict::allow(
                format!(
                    "{what} {:?} is allowed by McpServer/{} ({:?})",
                    truncate(name, 128),
                    server.name,
                    set.glob(i).unwrap_or("")
                ),
                Some(format!("{}[{i}]", server.rule_id(field))),
            ),
            None => Verdict::deny(
                format!(
                    "{what} {:?} is not in the {field} list of McpServer/{}",
                    truncate(name, 128),
                    server.name
                ),
                Some(server.rule_id(field)),
            ),
        }
    }

    /// Refuses a body with at least one denied message. A batch is all or
    /// nothing: every request in it gets an error, the denied ones with their
    /// own reason, so no part of a batch that contained a refused call runs.
    fn refuse(
        &mut self,
        envelope: &Envelope,
        decisions: &[Verdict],
        findings: &[Option<ContentFindings>],
        first_denied: usize,
    ) -> LocalReply {
        let mut responses = Vec::new();
        let denied_reason = decisions
            .get(first_denied)
            .map(|d| d.reason.clone())
            .unwrap_or_default();
        // Too little scope is answered as OAuth says (403 and a challenge
        // naming the scopes), so a client can step up its authorization.
        let scope_error = decisions.iter().find_map(|d| d.auth.clone());
        let retry_after = decisions
            .iter()
            .filter_map(|d| d.limit.as_ref().filter(|l| l.enforced))
            .map(|l| l.retry_after)
            .max();
        let http_status = if scope_error.is_some() {
            403
        } else if retry_after.is_some() {
            429
        } else {
            200
        };
        for (i, (msg, verdict)) in envelope.messages.iter().zip(decisions).enumerate() {
            let verdict = if verdict.decision == Decision::Deny {
                verdict.clone()
            } else {
                Verdict::deny(
                    format!(
                        "batch refused because element {first_denied} was denied: {denied_reason}"
                    ),
                    decisions.get(first_denied).and_then(|d| d.rule.clone()),
                )
            };
            let code = if verdict.auth.is_some() {
                codes::INSUFFICIENT_SCOPE
            } else if verdict.limit.as_ref().is_some_and(|l| l.enforced) {
                codes::LIMITED
            } else if verdict.approval.is_some() {
                codes::APPROVAL_REQUIRED
            } else {
                codes::DENIED
            };
            let mut record = self.record_for(i as u32, Direction::Client, msg, &verdict);
            record.outcome = Outcome::Denied;
            record.http_status = Some(http_status);
            record.error_code = Some(code);
            record.auth_error = verdict.auth.as_ref().map(IdentityError::code);
            record.content = findings.get(i).cloned().flatten();
            self.complete(record);
            if msg.kind == Kind::Request {
                let mut data = json!({
                    "reason": verdict.reason,
                    "rule": verdict.rule,
                    "requestId": self.request_id,
                });
                if let Some(obj) = data.as_object_mut() {
                    if let Some(e) = &verdict.auth {
                        obj.insert("authError".into(), Value::from(e.code()));
                    }
                    if !verdict.rules.is_empty() {
                        obj.insert("rules".into(), json!(verdict.rules));
                    }
                    if let Some(l) = &verdict.limit {
                        obj.insert(
                            "limit".into(),
                            json!({"id": l.id, "kind": l.kind, "retryAfter": l.retry_after}),
                        );
                    }
                    if let Some(a) = &verdict.approval {
                        obj.insert("approval".into(), self.approval_data(a));
                    }
                }
                let title = match code {
                    codes::INSUFFICIENT_SCOPE => "Insufficient scope",
                    codes::LIMITED => "Limit reached",
                    codes::APPROVAL_REQUIRED => "Approval required",
                    _ => "Denied by Portcullis",
                };
                responses.push(mcp::error_response(
                    msg.id.as_ref(),
                    code,
                    title,
                    Some(data),
                ));
            }
        }
        let (status, body) = if envelope.batch {
            if responses.is_empty() {
                (
                    403,
                    Value::Array(vec![self.denial_without_id(&denied_reason)]),
                )
            } else {
                (http_status, Value::Array(responses))
            }
        } else {
            match responses.pop() {
                Some(r) => (http_status, r),
                // A refused notification has no id to answer; the HTTP status carries it.
                None => (403, self.denial_without_id(&denied_reason)),
            }
        };
        self.replied_locally = true;
        let mut headers = json_headers();
        if let (Some(e), Some(sid)) = (
            &scope_error,
            self.server().and_then(|s| s.identity.as_ref()),
        ) {
            headers.push(("www-authenticate".into(), sid.challenge(e)));
        }
        if let Some(secs) = retry_after
            && scope_error.is_none()
        {
            headers.push(("retry-after".into(), secs.to_string()));
        }
        LocalReply {
            status,
            headers,
            body: body.to_string().into_bytes(),
            details: if scope_error.is_some() {
                "portcullis_insufficient_scope".into()
            } else if retry_after.is_some() {
                "portcullis_limited".into()
            } else {
                "portcullis_denied".into()
            },
        }
    }

    /// `data.approval` of a refusal: what to approve, and where.
    fn approval_data(&self, a: &ApprovalState) -> Value {
        let url = self
            .bundle()
            .settings
            .approvals
            .as_ref()
            .and_then(|s| s.url.as_ref())
            .map(|u| {
                let sep = if u.contains('?') { '&' } else { '?' };
                format!("{u}{sep}id={}", a.id)
            });
        json!({
            "id": a.id,
            "covers": {
                "subject": a.binding.sub,
                "server": a.binding.srv,
                "tool": a.binding.tool,
                "argumentsSha256": a.binding.args,
                "rule": a.binding.rule,
            },
            "approveAt": url,
            "cli": format!("portcullis approve {} --key KEY", a.id),
            "header": headers::APPROVAL,
            "error": a.error.as_ref().map(approval::ApprovalError::code),
        })
    }

    fn denial_without_id(&self, reason: &str) -> Value {
        mcp::error_response(
            None,
            codes::DENIED,
            "Denied by Portcullis",
            Some(json!({"reason": reason, "requestId": self.request_id})),
        )
    }

    /// Phase 3: the response headers. Returns the header edits to apply.
    pub fn on_response_headers(
        &mut self,
        env: &mut dyn Env,
        status: u16,
        headers: &[(String, String)],
    ) -> HeaderEdits {
        self.response_status = status;
        let mut edits = HeaderEdits::default();
        if self.replied_locally {
            // Our own local reply, passing back through the encode path.
            // Envoy builds it with `content-type: text/plain` and *adds* the
            // reply's own headers (`addCopy`), so the JSON body would carry
            // two content types; replacing here leaves the right one.
            self.mode = ResponseMode::Pass;
            edits
                .set
                .push(("content-type".into(), "application/json".into()));
            return edits;
        }
        // `x-mcp-*` towards the client is the filter's word alone: an
        // upstream's own (any spelling) never reaches the client.
        for (name, _) in headers {
            if is_owned_field(name) && !edits.remove.contains(name) {
                edits.remove.push(name.clone());
            }
        }
        let governed = matches!(self.route, Route::Post | Route::Stream);
        if !governed {
            self.mode = ResponseMode::Pass;
            return edits;
        }
        if let Some(w) = self.server().and_then(deprecation_warning) {
            // RFC 7234 §5.5 (299: miscellaneous persistent warning).
            edits
                .set
                .push(("warning".into(), format!("299 portcullis {:?}", w)));
        }
        // Anything read from here on may change length, and this is the
        // last moment the headers can say so.
        edits.remove.push("content-length".into());
        let answering = if self.route == Route::Stream {
            crate::media::Answering::Get
        } else {
            crate::media::Answering::Post
        };
        let kind = match response_kind(headers, answering) {
            Ok(kind) => kind,
            Err(reason) => {
                self.refuse_response(env, &mut edits, &reason);
                return edits;
            }
        };
        let ok = (200..300).contains(&status);
        if !ok {
            // An error status does not end the clients' reading: both SDKs
            // read a JSON-RPC error (or a result) from a 4xx or 5xx body, and
            // show its text. It is read like any answer; what it does not
            // answer completes as an HTTP error.
            self.http_error = true;
        }
        if self.route == Route::Stream {
            // A GET stream is read as an event stream by the TypeScript
            // client whatever its content type says; the Python client only
            // reads text/event-stream. Only what both read alike passes.
            self.mode = match kind {
                BodyKind::EventStream => ResponseMode::Sse(sse::Parser::new(self.max_response())),
                BodyKind::Json if !ok => ResponseMode::Json,
                BodyKind::Other | BodyKind::Absent if !ok => ResponseMode::Text,
                _ => {
                    self.refuse_response(
                        env,
                        &mut edits,
                        "a GET stream that is not text/event-stream is read differently by the clients",
                    );
                    return edits;
                }
            };
            return edits;
        }
        if status == 202 {
            // Accepted: notifications and client answers end here, and a
            // request's answer travels on the GET stream (the legacy
            // transport; registered when it was forwarded). No client reads
            // a 202's body, so none is passed.
            self.complete_all(env, Outcome::Accepted);
            self.mode = ResponseMode::Drop;
            return edits;
        }
        self.complete_accepted(env);
        self.mode = match kind {
            BodyKind::EventStream => ResponseMode::Sse(sse::Parser::new(self.max_response())),
            BodyKind::Json => ResponseMode::Json,
            BodyKind::Other | BodyKind::Absent if !ok => ResponseMode::Text,
            BodyKind::Other | BodyKind::Absent if self.pending.is_empty() => ResponseMode::Drop,
            BodyKind::Other | BodyKind::Absent => {
                edits
                    .set
                    .push(("content-type".into(), "application/json".into()));
                self.fail_pending(
                    env,
                    "upstream answered an MCP request with a non-JSON, non-SSE body",
                );
                ResponseMode::Discard
            }
        };
        edits
    }

    /// Refuses a response the clients could read differently from the
    /// filter: the client gets a 502 with a JSON-RPC error for each open
    /// request (or one without an id), and a record says why.
    fn refuse_response(&mut self, env: &mut dyn Env, edits: &mut HeaderEdits, reason: &str) {
        edits.set.push((":status".into(), "502".into()));
        // The replacement is plain JSON, whatever the upstream's encoding.
        edits.remove.push("content-encoding".into());
        edits
            .set
            .push(("content-type".into(), "application/json".into()));
        self.response_status = 502;
        if self.pending.is_empty() {
            let mut record = self.base_record();
            record.direction = Direction::Server;
            record.message_index = self.next_stream_index();
            record.outcome = Outcome::UpstreamInvalid;
            record.error_code = Some(codes::UPSTREAM_REJECTED);
            record.reason = format!("upstream response refused: {reason}");
            self.finish_record(env, record);
        }
        self.fail_pending(env, reason);
        self.mode = ResponseMode::Discard;
    }

    /// Whether the response body is buffered whole before it is inspected
    /// (an answer read as one document), rather than read as it streams.
    pub fn buffers_response(&self) -> bool {
        matches!(self.mode, ResponseMode::Json | ResponseMode::Text)
    }

    fn max_response(&self) -> usize {
        usize::try_from(self.bundle().settings.max_response_bytes).unwrap_or(usize::MAX)
    }

    /// Phase 4: the response body. `data` is the current buffer: in JSON mode
    /// everything buffered so far, in SSE and pass modes the latest chunk.
    pub fn on_response_body(
        &mut self,
        env: &mut dyn Env,
        data: &[u8],
        end_of_stream: bool,
    ) -> ResponseBodyAction {
        let action = match &mut self.mode {
            ResponseMode::Pass => ResponseBodyAction::Pass,
            ResponseMode::Drop if data.is_empty() => ResponseBodyAction::Pass,
            ResponseMode::Drop => ResponseBodyAction::Replace(Vec::new()),
            ResponseMode::Discard => {
                ResponseBodyAction::Replace(self.replacement.take().unwrap_or_default())
            }
            ResponseMode::Json | ResponseMode::Text => {
                if data.len() > self.max_response() {
                    let reason = format!(
                        "upstream response exceeds the {}-byte limit (Settings.spec.maxResponseBytes)",
                        self.max_response()
                    );
                    self.fail_pending(env, &reason);
                    self.mode = ResponseMode::Discard;
                    let out = self.replacement.take().unwrap_or_default();
                    if end_of_stream {
                        self.finish(env);
                    }
                    return ResponseBodyAction::Replace(out);
                }
                if !end_of_stream {
                    return ResponseBodyAction::Buffer;
                }
                if matches!(self.mode, ResponseMode::Text) {
                    self.inspect_text_body(env, data)
                } else {
                    self.inspect_json_body(env, data)
                }
            }
            ResponseMode::Sse(parser) => {
                let parsed = parser.push(data);
                let (mut events, mut error) = match parsed {
                    Ok(events) => (events, None),
                    Err(e) => (Vec::new(), Some(e)),
                };
                if end_of_stream && error.is_none() {
                    let (tail, err) = parser.finish();
                    events.extend(tail);
                    error = err;
                }
                let mut out = Vec::with_capacity(data.len());
                for event in events {
                    self.inspect_event(env, event, &mut out);
                }
                if let Some(e) = error {
                    self.sse_failed(env, &e.to_string(), &mut out);
                    self.mode = ResponseMode::Discard;
                }
                if out.as_slice() == data {
                    ResponseBodyAction::Pass
                } else {
                    ResponseBodyAction::Replace(out)
                }
            }
        };
        if end_of_stream {
            self.finish(env);
        }
        action
    }

    /// The stream ended (or was reset): complete every record still open.
    pub fn on_stream_end(&mut self, env: &mut dyn Env) {
        self.finish(env);
    }

    fn finish(&mut self, env: &mut dyn Env) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.release_leases(env);
        // An event stream that ended before answering may be resumed: the
        // client reconnects with a GET (`Last-Event-ID`) and the answers
        // come there, so that stream must know what they answer.
        if self.route == Route::Post
            && matches!(self.mode, ResponseMode::Sse(_))
            && !self.pending.is_empty()
        {
            let open: Vec<Pending> = self.pending.clone();
            self.register_for_stream(env, &open);
        }
        let outcome = if self.http_error {
            Outcome::HttpError
        } else {
            Outcome::NoResponse
        };
        self.complete_all(env, outcome);
    }

    fn release_leases(&mut self, env: &mut dyn Env) {
        let now = env.now_nanos();
        for lease in std::mem::take(&mut self.leases) {
            crate::policy::limits::release(&mut StoreOf(env), &lease, now);
        }
    }

    /// A GET, DELETE, HEAD or OPTIONS on a governed route, once its body (if
    /// any) is complete: forwarded with the identity edits when it has none,
    /// refused when it has one (a server could act on bytes no MCP message
    /// frames, and the filter would not have read them).
    fn bodiless(
        &mut self,
        env: &mut dyn Env,
        body: &[u8],
        end_of_stream: bool,
    ) -> RequestBodyAction {
        if !body.is_empty() {
            let reason = format!(
                "a {} request on an MCP route carries no body; this one had {} bytes",
                truncate(&self.head.method, 16),
                body.len()
            );
            self.record_invalid(reason.clone(), codes::INVALID_REQUEST, 400);
            return RequestBodyAction::Reply(self.reply(
                400,
                None,
                codes::INVALID_REQUEST,
                "Invalid Request",
                reason,
                None,
            ));
        }
        if !end_of_stream {
            return RequestBodyAction::Wait;
        }
        let mut edits = HeaderEdits::default();
        self.upstream_token_edits(env, &[], &mut edits);
        RequestBodyAction::Forward(edits)
    }

    /// The body of a request to an unregistered route: MCP there is shadow MCP,
    /// recorded (or refused, `Settings.spec.shadowMcp: block`); anything
    /// else passes as it would have.
    fn shadow_body(
        &mut self,
        env: &mut dyn Env,
        body: &[u8],
        end_of_stream: bool,
    ) -> RequestBodyAction {
        // Past the limit it cannot be read whole, so it cannot be shown not
        // to be MCP: refused.
        if let Some(reply) = self.on_request_body_size(body.len() as u64) {
            return RequestBodyAction::Reply(reply);
        }
        if !end_of_stream {
            return RequestBodyAction::Wait;
        }
        // The methods, when the filter's strict reading finds them; else a
        // body that some server's laxer reading could take as JSON-RPC
        // (another encoding, a BOM, duplicate keys) is MCP of unknown method.
        let methods = match shadow_mcp_methods(body) {
            Some(m) => m,
            None if crate::sniff::could_be_jsonrpc(body) => vec![String::new()],
            None => {
                self.route = Route::Unmatched;
                return RequestBodyAction::Forward(HeaderEdits::default());
            }
        };
        env.count(metrics::SHADOW_MCP, 1);
        let block = self.bundle().settings.shadow_mcp == crate::bundle::ShadowMcp::Block;
        for (i, method) in methods.iter().enumerate() {
            let mut record = self.base_record();
            record.message_index = i as u32;
            record.kind = if method.is_empty() {
                "invalid"
            } else {
                "request"
            };
            record.method = Some(truncate(method, 128).to_owned()).filter(|m| !m.is_empty());
            record.shadow = true;
            record.authority = Some(truncate(&self.head.authority, 256).to_owned());
            record.path =
                Some(truncate(self.head.path.split('?').next().unwrap_or(""), 256).to_owned());
            record.rule = Some("Settings#shadowMcp".into());
            if block {
                record.decision = Decision::Deny;
                record.outcome = Outcome::Denied;
                record.http_status = Some(403);
                record.error_code = Some(codes::UNKNOWN_SERVER);
                record.reason =
                    "MCP traffic to a server the registry does not know (shadow MCP), refused"
                        .into();
                self.complete(record);
            } else {
                record.decision = Decision::Allow;
                record.outcome = Outcome::Observed;
                record.reason =
                    "MCP traffic to a server the registry does not know (shadow MCP), recorded"
                        .into();
                self.complete(record);
            }
        }
        self.route = Route::Unmatched;
        if block {
            let reply = self.reply(
                403,
                None,
                codes::UNKNOWN_SERVER,
                "Unregistered MCP server",
                "no McpServer in the bundle matches this route, and shadow MCP is refused (Settings.spec.shadowMcp)".into(),
                Some("Settings#shadowMcp".into()),
            );
            return RequestBodyAction::Reply(reply);
        }
        RequestBodyAction::Forward(HeaderEdits::default())
    }

    fn inspect_json_body(&mut self, env: &mut dyn Env, data: &[u8]) -> ResponseBodyAction {
        let value = match parse_strict(data) {
            Ok(v) => v,
            Err(e) => {
                let reason = format!("upstream response is not valid JSON: {e}");
                self.fail_pending(env, &reason);
                return ResponseBodyAction::Replace(self.replacement.take().unwrap_or_default());
            }
        };
        let (out, changed) = match value {
            Value::Array(items) if !items.is_empty() => {
                let mut out = Vec::with_capacity(items.len());
                let mut changed = false;
                for mut item in items {
                    match self.inspect_message(env, &mut item) {
                        Fate::Unchanged => out.push(item),
                        Fate::Changed => {
                            changed = true;
                            out.push(item);
                        }
                        Fate::Replace(values) => {
                            changed = true;
                            out.extend(values);
                        }
                    }
                }
                (out, changed)
            }
            mut single => match self.inspect_message(env, &mut single) {
                Fate::Unchanged => return ResponseBodyAction::Pass,
                Fate::Changed => (vec![single], true),
                Fate::Replace(values) => (values, true),
            },
        };
        if !changed {
            return ResponseBodyAction::Pass;
        }
        let body = match out.len() {
            // Nothing the client may read is left: it gets an error for
            // each request still open (or one without an id).
            0 => {
                self.fail_pending(env, "the upstream's answer was refused");
                return ResponseBodyAction::Replace(self.replacement.take().unwrap_or_default());
            }
            1 => out.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(out),
        };
        ResponseBodyAction::Replace(crate::json::to_client_string(&body).into_bytes())
    }

    /// A non-JSON body of an error answer (a proxy's or framework's HTML or
    /// text error page): clients show its text (the TypeScript SDK puts it
    /// in the error it throws), so it is screened and redacted as text.
    fn inspect_text_body(&mut self, env: &mut dyn Env, data: &[u8]) -> ResponseBodyAction {
        let Ok(text) = std::str::from_utf8(data) else {
            return ResponseBodyAction::Replace(
                b"upstream error body withheld by Portcullis: not UTF-8 text".to_vec(),
            );
        };
        let engine = Arc::clone(&self.engine);
        let Some((policy_name, policy)) = self
            .server
            .and_then(|i| engine.bundle.servers.get(i))
            .and_then(|s| s.content.as_ref())
        else {
            return ResponseBodyAction::Pass;
        };
        let mut value = Value::String(text.to_owned());
        let inspection = policy.inspect_result(&mut value, Surface::ToolResult);
        let findings = summarize(env, &inspection);
        for p in self.pending.iter_mut() {
            p.record.content = findings.clone();
        }
        if inspection.blocked {
            env.count(metrics::CONTENT_BLOCKED, 1);
            return ResponseBodyAction::Replace(
                format!(
                    "upstream error body withheld by Portcullis: ContentPolicy/{policy_name} blocks what it carries"
                )
                .into_bytes(),
            );
        }
        match value {
            Value::String(out) if inspection.modified => {
                ResponseBodyAction::Replace(out.into_bytes())
            }
            _ => ResponseBodyAction::Pass,
        }
    }

    fn inspect_event(&mut self, env: &mut dyn Env, event: sse::Event, out: &mut Vec<u8>) {
        let Some(data) = event.data.as_deref() else {
            out.extend_from_slice(&event.forward());
            return;
        };
        if data.trim().is_empty() {
            out.extend_from_slice(&event.forward());
            return;
        }
        // The legacy HTTP+SSE transport (2024-11-05) opens its GET stream
        // with an `endpoint` event whose data is the URL to POST messages
        // to: transport framing, not an MCP message. Its session id is what
        // the POSTs will name, and what their answers here are filed under.
        if self.route == Route::Stream
            && event.event.as_deref() == Some("endpoint")
            && is_endpoint_url(data)
        {
            if let Some(sid) = legacy_session_param(data) {
                self.stream_session = Some(short_hash(sid.as_bytes()));
            }
            out.extend_from_slice(&event.forward());
            return;
        }
        let mut value = match parse_strict(data.as_bytes()) {
            Ok(v) => v,
            Err(e) => {
                let reason = format!("an SSE event's data is not valid JSON: {e}");
                self.sse_failed(env, &reason, out);
                return;
            }
        };
        match self.inspect_message(env, &mut value) {
            Fate::Unchanged => out.extend_from_slice(&event.forward()),
            Fate::Changed => {
                out.extend_from_slice(&event.with_data(&crate::json::to_client_string(&value)))
            }
            Fate::Replace(values) => {
                // The first replacement keeps the event's id, so a client's
                // `Last-Event-ID` still advances; a dropped event sends
                // nothing.
                for (i, v) in values.iter().enumerate() {
                    if i == 0 {
                        out.extend_from_slice(&event.with_data(&crate::json::to_client_string(v)));
                    } else {
                        out.extend_from_slice(
                            format!(
                                "event: message\ndata: {}\n\n",
                                crate::json::to_client_string(v)
                            )
                            .as_bytes(),
                        );
                    }
                }
            }
        }
    }

    /// Replaces an uninspectable SSE event: each open request gets an error
    /// event, and the event itself is dropped.
    fn sse_failed(&mut self, env: &mut dyn Env, reason: &str, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            let mut record = self.base_record();
            record.direction = Direction::Server;
            record.message_index = self.next_stream_index();
            record.outcome = Outcome::UpstreamInvalid;
            record.error_code = Some(codes::UPSTREAM_REJECTED);
            record.reason = format!("an event of the upstream's stream was refused: {reason}");
            self.finish_record(env, record);
        }
        for p in std::mem::take(&mut self.pending) {
            let err = self.reject(env, p, reason);
            out.extend_from_slice(
                format!(
                    "event: message\ndata: {}\n\n",
                    crate::json::to_client_string(&err)
                )
                .as_bytes(),
            );
        }
    }

    /// Closes an open request whose answer was refused: its record says why,
    /// and the JSON-RPC error returned goes to the client in its place.
    fn reject(&mut self, env: &mut dyn Env, pending: Pending, reason: &str) -> Value {
        let err = self.upstream_error(Some(&pending.id), reason);
        let mut record = pending.record;
        record.outcome = Outcome::UpstreamInvalid;
        record.error_code = Some(codes::UPSTREAM_REJECTED);
        record.reason = format!("{}; response refused: {reason}", record.reason);
        self.finish_record(env, record);
        err
    }

    fn upstream_error(&self, id: Option<&Value>, reason: &str) -> Value {
        mcp::error_response(
            id,
            codes::UPSTREAM_REJECTED,
            "Upstream response rejected by Portcullis",
            Some(json!({"reason": reason, "requestId": self.request_id})),
        )
    }

    /// Records a message from the upstream that was refused without an open
    /// request to answer (it correlates with none, or is not JSON-RPC).
    fn refuse_server_message(&mut self, env: &mut dyn Env, msg: Option<&Message>, reason: &str) {
        let index = self.next_stream_index();
        let verdict = Verdict::deny(reason.to_owned(), None);
        let mut record = match msg {
            Some(m) => self.record_for(index, Direction::Server, m, &verdict),
            None => AuditRecord {
                direction: Direction::Server,
                message_index: index,
                reason: reason.to_owned(),
                ..self.base_record()
            },
        };
        record.decision = Decision::Deny;
        record.outcome = Outcome::UpstreamInvalid;
        record.error_code = Some(codes::UPSTREAM_REJECTED);
        self.finish_record(env, record);
    }

    /// Inspects one JSON-RPC message from the upstream: correlates an answer
    /// with the request it answers, as the clients would, and screens every
    /// string a client could show a model.
    fn inspect_message(&mut self, env: &mut dyn Env, value: &mut Value) -> Fate {
        let msg = match mcp::classify(value) {
            Ok(Envelope { mut messages, .. }) if messages.len() == 1 => messages.remove(0),
            _ => {
                // Not one JSON-RPC message: refuse rather than pass it.
                let reason = "upstream sent something that is not a JSON-RPC message";
                if self.pending.is_empty() {
                    self.refuse_server_message(env, None, reason);
                    return Fate::Replace(Vec::new());
                }
                let p = self.pending.remove(0);
                return Fate::Replace(vec![self.reject(env, p, reason)]);
            }
        };
        if msg.kind != Kind::Response {
            return self.inspect_server_message(env, &msg, value);
        }
        let id = msg.id.clone().unwrap_or(Value::Null);
        let matches: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| mcp::ids_match(&p.id, &id))
            .map(|(i, _)| i)
            .collect();
        let (mut record, method, paged, mut changed) = match matches.as_slice() {
            [i] => {
                let p = self.pending.remove(*i);
                // Every client sees the id it sent, in the form it sent it.
                let changed = value.get("id") != Some(&p.id);
                if changed && let Some(obj) = value.as_object_mut() {
                    obj.insert("id".into(), p.id.clone());
                }
                (p.record, Some(p.method), p.paged, changed)
            }
            [] => match self.take_registered(env, &id) {
                // An answer on a GET stream to a request forwarded earlier
                // (the legacy transport, or a resumed stream).
                Some((request_id, method, paged)) => {
                    let index = self.next_stream_index();
                    let mut r = self.record_for(
                        index,
                        Direction::Server,
                        &msg,
                        &Verdict::allow(
                            format!("answer to a {method} forwarded on an earlier request of this session"),
                            None,
                        ),
                    );
                    r.method = Some(truncate(&method, 128).to_owned());
                    let changed = value.get("id") != Some(&request_id);
                    if changed && let Some(obj) = value.as_object_mut() {
                        obj.insert("id".into(), request_id);
                    }
                    (r, Some(method), paged, changed)
                }
                None => {
                    self.refuse_server_message(
                        env,
                        Some(&msg),
                        "an answer that correlates with no request open on this stream; a client could take it for the answer to another request",
                    );
                    return Fate::Replace(Vec::new());
                }
            },
            several => {
                let reason =
                    "an answer whose id the clients would match with more than one open request";
                let mut errors = Vec::new();
                let mut taken: Vec<Pending> = Vec::new();
                for i in several.iter().rev() {
                    taken.push(self.pending.remove(*i));
                }
                for p in taken.into_iter().rev() {
                    errors.push(self.reject(env, p, reason));
                }
                return Fate::Replace(errors);
            }
        };
        let review = self.review_answer(env, method.as_deref(), paged, value);
        record.content = match (record.content.take(), review.content) {
            (Some(mut request), Some(answer)) => {
                request.merge(answer);
                Some(request)
            }
            (request, answer) => answer.or(request),
        };
        record.pin_failures = review.pins;
        record.tools_dropped = review.dropped;
        record.tools_added = review.added;
        record.tools_removed = review.removed;
        if let Some(reason) = review.refuse {
            let request_id = value.get("id").cloned();
            return Fate::Replace(vec![self.withhold(
                env,
                record,
                request_id.as_ref(),
                &reason,
            )]);
        }
        let removed = self.filter_list_result(method.as_deref(), value);
        if record.outcome != Outcome::Delivered {
            record.outcome = if msg.error_code.is_some() {
                Outcome::Error
            } else {
                Outcome::Result
            };
        }
        record.error_code = msg.error_code;
        let removed = removed.saturating_add(review.removed_from_list);
        if removed > 0 {
            record.filtered_out = Some(removed);
        }
        self.finish_record(env, record);
        changed |= removed > 0 || review.changed;
        if changed {
            Fate::Changed
        } else {
            Fate::Unchanged
        }
    }

    /// A request or notification from the server (progress, log messages,
    /// sampling and elicitation requests): what it asks the client to show
    /// is screened like an answer; refused, it is not delivered.
    fn inspect_server_message(
        &mut self,
        env: &mut dyn Env,
        msg: &Message,
        value: &mut Value,
    ) -> Fate {
        let index = self.next_stream_index();
        let verdict = Verdict::allow("server message on a response stream".into(), None);
        let mut record = self.record_for(index, Direction::Server, msg, &verdict);
        record.outcome = Outcome::Delivered;
        let engine = Arc::clone(&self.engine);
        let mut review = Review::default();
        if let Some(server) = self.server.and_then(|i| engine.bundle.servers.get(i))
            && let Some(params) = value.get_mut("params")
        {
            let surface = match msg.method.as_deref() {
                Some("sampling/createMessage" | "elicitation/create") => Surface::Prompt,
                _ => Surface::ToolResult,
            };
            review_content(env, server, surface, params, &mut review);
        }
        record.content = review.content;
        if let Some(reason) = review.refuse {
            record.decision = Decision::Deny;
            record.outcome = Outcome::Withheld;
            record.reason = format!("server message withheld: {reason}");
            self.finish_record(env, record);
            return Fate::Replace(Vec::new());
        }
        self.finish_record(env, record);
        if review.changed {
            Fate::Changed
        } else {
            Fate::Unchanged
        }
    }

    /// Refuses an upstream answer that policy withholds (a pin or content
    /// finding): its record says why, and the client gets a JSON-RPC error
    /// in its place.
    fn withhold(
        &mut self,
        env: &mut dyn Env,
        mut record: AuditRecord,
        id: Option<&Value>,
        reason: &str,
    ) -> Value {
        record.outcome = Outcome::Withheld;
        record.error_code = Some(codes::UPSTREAM_REJECTED);
        record.reason = format!("{}; response withheld: {reason}", record.reason);
        self.finish_record(env, record);
        self.upstream_error(id, reason)
    }

    /// Applies the server's pins and content policy to one answer, by the
    /// method of the request it answers: the method's own checks (the
    /// server-version pin, tools/list pins and poisoning screen, list
    /// entries screened), then every string of the result or error screened
    /// and redacted.
    fn review_answer(
        &mut self,
        env: &mut dyn Env,
        method: Option<&str>,
        paged: bool,
        value: &mut Value,
    ) -> Review {
        let mut review = Review::default();
        let engine = Arc::clone(&self.engine);
        let Some(server) = self.server.and_then(|i| engine.bundle.servers.get(i)) else {
            return review;
        };
        if let Some(error) = value.get_mut("error") {
            review_content(env, server, Surface::ToolResult, error, &mut review);
            return review;
        }
        let Some(result) = value.get_mut("result") else {
            return review;
        };
        let kind = method.unwrap_or("");
        match kind {
            "initialize" => {
                let version = result
                    .pointer("/serverInfo/version")
                    .and_then(Value::as_str);
                if let Err((expected, actual)) = server.pins.check_server_version(version) {
                    env.count(metrics::PINS_FAILED, 1);
                    review.refuse = Some(format!(
                        "server version {actual:?} is not the approved {expected:?} (McpServer/{}.spec.serverVersion)",
                        server.name
                    ));
                    return review;
                }
            }
            "tools/list" => {
                if result.is_object() {
                    self.review_tools(env, server, paged, result, &mut review);
                }
                if review.refuse.is_none() {
                    redact_tool_texts(env, server, result, &mut review);
                }
                return review;
            }
            "prompts/list" => review_entries(env, server, "prompts", "name", result, &mut review),
            "resources/list" => {
                review_entries(env, server, "resources", "uri", result, &mut review)
            }
            "resources/templates/list" => review_entries(
                env,
                server,
                "resourceTemplates",
                "uriTemplate",
                result,
                &mut review,
            ),
            _ => {}
        }
        if review.refuse.is_some() {
            return review;
        }
        let surface = match kind {
            "prompts/get" => Surface::Prompt,
            // What a server says of itself and its catalogue is read like a
            // tool's definition: where poisoning hides.
            "initialize"
            | "server/discover"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list" => Surface::ToolDefinition,
            _ => Surface::ToolResult,
        };
        review_content(env, server, surface, result, &mut review);
        review
    }

    /// The key this exchange's session files open requests under, for a GET
    /// stream of the same session to find their answers: the
    /// `Mcp-Session-Id`, the legacy transport's `session_id`/`sessionId`
    /// query parameter, or what a GET stream's `endpoint` event named.
    fn stream_key(&self) -> Option<String> {
        let server = self.server()?;
        let session = self
            .stream_session
            .clone()
            .or_else(|| self.session.clone())
            .or_else(|| legacy_session_param(&self.head.path).map(|s| short_hash(s.as_bytes())))?;
        Some(format!(
            "portcullis.pending/{}/{}/{session}",
            self.engine.version(),
            server.name
        ))
    }

    /// Files `open` requests so that their answers are recognised on a GET
    /// stream of the same session (shared by every worker VM; this VM's own
    /// table when the host has no shared store). Entries expire after
    /// [`PENDING_TTL_SECS`] and a session keeps at most [`PENDING_MAX`].
    fn register_for_stream(&mut self, env: &mut dyn Env, open: &[Pending]) {
        let Some(key) = self.stream_key() else {
            return;
        };
        let now = env.now_nanos() / 1_000_000_000;
        let add = |table: &mut StreamTable| {
            table.retain(|e| e.expires > now);
            for p in open {
                if table.iter().any(|e| e.id == p.id) {
                    continue;
                }
                if table.len() >= PENDING_MAX {
                    table.remove(0);
                }
                table.push(StreamEntry {
                    id: p.id.clone(),
                    method: p.method.clone(),
                    paged: p.paged,
                    expires: now.saturating_add(PENDING_TTL_SECS),
                });
            }
        };
        if !self.update_stream_table(env, &key, add) {
            let mut local = self
                .engine
                .streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            add(local.entry(key).or_default());
        }
    }

    /// The request an answer on a GET stream responds to, taken from the
    /// session's table (each answers once): its id, method and paging.
    fn take_registered(&mut self, env: &mut dyn Env, id: &Value) -> Option<(Value, String, bool)> {
        if self.route != Route::Stream {
            return None;
        }
        let key = self.stream_key()?;
        let now = env.now_nanos() / 1_000_000_000;
        let mut found = None;
        let mut take = |table: &mut StreamTable| {
            table.retain(|e| e.expires > now);
            let hits: Vec<usize> = table
                .iter()
                .enumerate()
                .filter(|(_, e)| mcp::ids_match(&e.id, id))
                .map(|(i, _)| i)
                .collect();
            // One request only: an id several could claim is refused.
            if let [i] = hits.as_slice() {
                let e = table.remove(*i);
                found = Some((e.id, e.method, e.paged));
            }
        };
        if !self.update_stream_table(env, &key, &mut take) {
            let mut local = self
                .engine
                .streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(table) = local.get_mut(&key) {
                take(table);
            }
        }
        found
    }

    /// Read-modify-write of a session table in the shared store, retried on
    /// a lost race. `false`: the host has no shared store.
    fn update_stream_table(
        &mut self,
        env: &mut dyn Env,
        key: &str,
        mut f: impl FnMut(&mut StreamTable),
    ) -> bool {
        for _ in 0..8 {
            let (mut table, cas) = match env.shared_get_cas(key) {
                Some((bytes, cas)) => (
                    serde_json::from_slice::<StreamTable>(&bytes).unwrap_or_default(),
                    Some(cas),
                ),
                None => (StreamTable::new(), None),
            };
            f(&mut table);
            let Ok(bytes) = serde_json::to_vec(&table) else {
                return true;
            };
            match env.shared_write(key, &bytes, cas) {
                SharedWrite::Written => return true,
                SharedWrite::Conflict => continue,
                SharedWrite::Unavailable => return false,
            }
        }
        true
    }

    /// A tools/list result: pins first (the rug-pull check), then poisoning
    /// screening; what fails is removed (or fails the list) and quarantined,
    /// so calls to it are refused until a later list shows it passing.
    fn review_tools(
        &mut self,
        env: &mut dyn Env,
        server: &Server,
        paged: bool,
        result: &mut Value,
        review: &mut Review,
    ) {
        let complete = !paged && result.get("nextCursor").is_none_or(Value::is_null);
        let Some(Value::Array(tools)) = result.get_mut("tools") else {
            return;
        };
        let received: BTreeSet<String> = tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let mut hashes: BTreeMap<String, String> = BTreeMap::new();
        let report = server.pins.check(tools);
        for t in &report.tools {
            if !t.name.is_empty() && !t.actual.is_empty() {
                hashes.insert(t.name.clone(), t.actual.clone());
            }
            let (status, expected, why) = match &t.status {
                PinStatus::Mismatch { expected, .. } => (
                    "mismatch",
                    Some(expected.clone()),
                    format!(
                        "changed since it was pinned (pinned {expected}, served {})",
                        t.actual
                    ),
                ),
                PinStatus::Unpinned if !t.pass => (
                    "unpinned",
                    None,
                    format!(
                        "is not pinned, and McpServer/{} says pinning: strict",
                        server.name
                    ),
                ),
                PinStatus::Duplicate => (
                    "duplicate",
                    server.pins.pin(&t.name).map(str::to_owned),
                    "appeared twice in one tools/list".to_owned(),
                ),
                PinStatus::Invalid { reason } => {
                    review.pins.push(PinFinding {
                        tool: String::new(),
                        status: "invalid",
                        expected: None,
                        actual: None,
                        detail: Some(reason.clone()),
                    });
                    continue;
                }
                _ => continue,
            };
            review.pins.push(PinFinding {
                tool: t.name.clone(),
                status,
                expected,
                actual: Some(t.actual.clone()).filter(|a| !a.is_empty()),
                detail: None,
            });
            failed.insert(t.name.clone(), why);
        }
        for name in &report.removed {
            review.pins.push(PinFinding {
                tool: name.clone(),
                status: "missing",
                expected: server.pins.pin(name).map(str::to_owned),
                actual: None,
                detail: None,
            });
        }
        let pin_failures = report.failures().count();
        if pin_failures > 0 {
            env.count(metrics::PINS_FAILED, pin_failures as u64);
            match server.pin_failure {
                PinFailure::FailServer => {
                    let names: Vec<&str> = failed.keys().map(String::as_str).collect();
                    review.refuse = Some(format!(
                        "tools/list withheld: {pin_failures} tool(s) failed their pins ({}); McpServer/{} says onPinFailure: failServer",
                        names.join(", "),
                        server.name
                    ));
                    // The whole server is untrusted until its pins are reviewed.
                    for name in &received {
                        failed.entry(name.clone()).or_insert_with(|| {
                            "was served in a tools/list that failed its pins (onPinFailure: failServer)".to_owned()
                        });
                    }
                }
                PinFailure::RemoveTool => {
                    let n = report.retain_passing(tools);
                    review.removed_from_list = review.removed_from_list.saturating_add(n as u32);
                }
            }
        }
        if review.refuse.is_none()
            && let Some((policy_name, policy)) = &server.content
        {
            let screens = policy.screen_tools(tools);
            let mut findings = ContentFindings::default();
            for sc in &screens {
                for f in &sc.findings {
                    note_screen_finding(env, &mut findings, f);
                }
                if sc.dropped {
                    env.count(metrics::POISONED_TOOLS_DROPPED, 1);
                    let rules: Vec<&str> = sc.findings.iter().map(|f| f.rule_id.as_str()).collect();
                    failed.insert(
                        sc.name.clone(),
                        format!(
                            "was screened as poisoned by ContentPolicy/{policy_name} ({})",
                            rules.join(", ")
                        ),
                    );
                    review.dropped.push(sc.name.clone());
                    review.removed_from_list = review.removed_from_list.saturating_add(1);
                }
            }
            if !screens.is_empty() {
                findings.action = if review.dropped.is_empty() {
                    "flagged"
                } else {
                    "dropped"
                };
                review.content = Some(findings);
            }
        }
        let passed: Vec<&String> = received
            .iter()
            .filter(|n| !failed.contains_key(*n))
            .collect();
        let compiled = self.compile_schemas(env, server, tools, &hashes, &failed);
        let snapshot = {
            let mut state = self
                .engine
                .tools
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let st = state.entry(server.name.clone()).or_default();
            for name in &passed {
                st.failed.remove(*name);
            }
            for (name, why) in &failed {
                st.failed.insert(name.clone(), why.clone());
            }
            st.hashes.extend(hashes);
            for (name, schema) in compiled {
                st.schemas.insert(name, schema);
            }
            if complete {
                if let Some(previous) = &st.names {
                    let (added, removed) = crate::pins::diff_names(previous, &received);
                    review.added = added;
                    review.removed = removed;
                }
                st.names = Some(received.clone());
            }
            st.failed.clone()
        };
        // Other worker VMs refuse the same tools: merge this list's verdicts
        // into the shared view rather than overwrite it with ours.
        let key = self.quarantine_key(server);
        let existing: Option<BTreeMap<String, String>> = env
            .shared_get(&key)
            .and_then(|b| serde_json::from_slice(&b).ok());
        if existing.is_none() && snapshot.is_empty() {
            // Nothing quarantined anywhere: no write on the common path.
            return;
        }
        let first_write = existing.is_none();
        let mut shared = existing.unwrap_or(snapshot);
        let before = shared.clone();
        for name in &passed {
            shared.remove(*name);
        }
        shared.extend(failed);
        if (first_write || shared != before)
            && let Ok(bytes) = serde_json::to_vec(&shared)
        {
            env.shared_set(&key, &bytes);
        }
    }

    /// Compiles the `inputSchema` of each passing tool whose definition
    /// changed since this VM last compiled it (by pin).
    fn compile_schemas(
        &self,
        env: &mut dyn Env,
        server: &Server,
        tools: &[Value],
        hashes: &BTreeMap<String, String>,
        failed: &BTreeMap<String, String>,
    ) -> Vec<(String, ToolSchema)> {
        let known: BTreeMap<String, String> = {
            let state = self
                .engine
                .tools
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state
                .get(&server.name)
                .map(|st| {
                    st.schemas
                        .iter()
                        .map(|(n, s)| (n.clone(), s.hash.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(hash) = hashes.get(name) else {
                continue;
            };
            if failed.contains_key(name) || known.get(name) == Some(hash) {
                continue;
            }
            let schema = tool.get("inputSchema");
            let validator = schema.and_then(compile_input_schema);
            // Every worker VM validates against it, not only the one that
            // saw the list: published beside the quarantine, schema first.
            if let Some(schema) = schema {
                let key = self.schema_key(server, name);
                if env.shared_get(&format!("{key}#hash")).as_deref() != Some(hash.as_bytes())
                    && let Ok(bytes) = serde_json::to_vec(schema)
                    && env.shared_set(&format!("{key}#schema"), &bytes)
                {
                    env.shared_set(&format!("{key}#hash"), hash.as_bytes());
                }
            }
            out.push((
                name.to_owned(),
                ToolSchema {
                    hash: hash.clone(),
                    validator,
                },
            ));
        }
        out
    }

    fn schema_key(&self, server: &Server, tool: &str) -> String {
        format!(
            "portcullis.schema/{}/{}/{tool}",
            self.engine.version(),
            server.name
        )
    }

    /// The compiled `inputSchema` of `tool` as the server last advertised it
    /// to this proxy: the shared copy when its pin differs from this VM's
    /// (another worker saw a newer list), else this VM's own.
    fn tool_validator(
        &self,
        env: &dyn Env,
        server: &Server,
        tool: &str,
    ) -> Option<Arc<jsonschema::Validator>> {
        let local = self
            .engine
            .tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&server.name)
            .and_then(|st| st.schemas.get(tool))
            .cloned();
        let key = self.schema_key(server, tool);
        let shared = env
            .shared_get(&format!("{key}#hash"))
            .and_then(|h| String::from_utf8(h).ok());
        match (shared, local) {
            (Some(hash), Some(l)) if l.hash == hash => l.validator,
            (Some(hash), _) => {
                let schema = parse_strict(&env.shared_get(&format!("{key}#schema"))?).ok()?;
                let validator = compile_input_schema(&schema);
                self.engine
                    .tools
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(server.name.clone())
                    .or_default()
                    .schemas
                    .insert(
                        tool.to_owned(),
                        ToolSchema {
                            hash,
                            validator: validator.clone(),
                        },
                    );
                validator
            }
            (None, local) => local.and_then(|l| l.validator),
        }
    }

    /// Why a tools/call's arguments are refused by the tool's own
    /// `inputSchema`, as the server last advertised it to this proxy
    /// ([`Exchange::tool_validator`]): strict JSON Schema, so a string where
    /// the server declares a number is refused, not left for a lax server to
    /// coerce past a policy rule.
    fn schema_refusal(
        &self,
        validator: Option<&jsonschema::Validator>,
        server: &Server,
        tool: &str,
        arguments: Option<&Value>,
    ) -> Option<String> {
        let validator = validator?;
        let empty = Value::Object(serde_json::Map::new());
        let args = arguments.unwrap_or(&empty);
        let first = validator.iter_errors(args).next()?;
        let at = first.instance_path().to_string();
        Some(format!(
            "the arguments do not validate against tool {:?}'s inputSchema as McpServer/{} advertised it (at {:?}: {}); a server that coerces them could act on other values than the filter decided on",
            truncate(tool, 128),
            server.name,
            if at.is_empty() { "/" } else { at.as_str() },
            truncate(&first.to_string(), 200),
        ))
    }

    fn next_stream_index(&mut self) -> u32 {
        let i = self.stream_index;
        self.stream_index = self.stream_index.saturating_add(1);
        1000u32.saturating_add(i)
    }

    /// Removes list entries the caller may not use. Returns how many.
    fn filter_list_result(&self, method: Option<&str>, value: &mut Value) -> u32 {
        let Some(server) = self.server() else {
            return 0;
        };
        let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) else {
            return 0;
        };
        let lists: &[(&str, &str)] = match method {
            Some("tools/list") => &[("tools", "name")],
            Some("resources/list") => &[("resources", "uri")],
            Some("prompts/list") => &[("prompts", "name")],
            Some(_) => &[],
            None => &[("tools", "name"), ("resources", "uri"), ("prompts", "name")],
        };
        let mut removed = 0u32;
        for (field, key) in lists {
            let (set, kind) = match *field {
                "tools" => (&server.tools, crate::policy::TargetKind::Tool),
                "resources" => (&server.resources, crate::policy::TargetKind::Resource),
                _ => (&server.prompts, crate::policy::TargetKind::Prompt),
            };
            if let Some(Value::Array(items)) = result.get_mut(*field) {
                let before = items.len();
                items.retain(|item| {
                    item.get(*key)
                        .and_then(Value::as_str)
                        .is_some_and(|n| set.is_match(n) && self.policy_visible(kind, n))
                });
                removed = removed.saturating_add((before - items.len()) as u32);
            }
        }
        removed
    }

    /// Fails every open request with a JSON-RPC error (the body is then
    /// replaced by those errors).
    fn fail_pending(&mut self, env: &mut dyn Env, reason: &str) {
        let mut errors = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            errors.push(self.reject(env, p, reason));
        }
        let body = match errors.len() {
            0 => self.upstream_error(None, reason),
            1 => errors.remove(0),
            _ => Value::Array(errors),
        };
        self.replacement = Some(crate::json::to_client_string(&body).into_bytes());
    }

    fn complete_accepted(&mut self, env: &mut dyn Env) {
        for mut record in std::mem::take(&mut self.accepted) {
            record.outcome = Outcome::Accepted;
            self.finish_record(env, record);
        }
    }

    fn complete_all(&mut self, env: &mut dyn Env, outcome: Outcome) {
        self.complete_accepted(env);
        for p in std::mem::take(&mut self.pending) {
            let mut record = p.record;
            record.outcome = outcome;
            self.finish_record(env, record);
        }
    }

    fn finish_record(&mut self, env: &mut dyn Env, mut record: AuditRecord) {
        let now = env.now_nanos();
        record.time = rfc3339(now);
        if record.http_status.is_none() && self.response_status != 0 {
            record.http_status = Some(self.response_status);
        }
        record.latency_ms = Some(now.saturating_sub(self.started_nanos) as f64 / 1e6);
        self.done.push(record);
    }

    fn complete(&mut self, mut record: AuditRecord) {
        record.latency_ms = Some(0.0);
        self.done.push(record);
    }

    fn record_for(
        &self,
        index: u32,
        direction: Direction,
        msg: &Message,
        verdict: &Verdict,
    ) -> AuditRecord {
        let (tool, resource, prompt) = match &msg.target {
            Target::Tool(t) => (Some(t.clone()), None, None),
            Target::Resource(r) => (None, Some(r.clone()), None),
            Target::Prompt(p) => (None, None, Some(p.clone())),
            Target::None => (None, None, None),
        };
        AuditRecord {
            message_index: index,
            direction,
            kind: msg.kind.as_str(),
            jsonrpc_id: msg.id.clone(),
            method: msg.method.as_ref().map(|m| truncate(m, 128).to_owned()),
            tool,
            resource,
            prompt,
            decision: verdict.decision,
            reason: verdict.reason.clone(),
            rule: verdict.rule.clone(),
            outcome: Outcome::NoResponse,
            auth_error: verdict.auth.as_ref().map(IdentityError::code),
            arguments_sha256: msg
                .arguments
                .as_ref()
                .map(|a| hex::encode(Sha256::digest(canonical_string(a).as_bytes()))),
            arguments: self.audit_arguments(msg),
            rules: verdict.rules.clone(),
            shadow_decision: verdict.shadow.clone(),
            policy_errors: verdict.policy_errors.clone(),
            limit: verdict.limit.clone(),
            approval: verdict.approval.as_ref().map(|a| ApprovalNote {
                id: a.id.clone(),
                status: if a.jti.is_some() {
                    "granted"
                } else if a.error.is_some() {
                    "refused"
                } else {
                    "required"
                },
                error: a.error.as_ref().map(approval::ApprovalError::code),
                jti: a.jti.clone(),
            }),
            ..self.base_record()
        }
    }

    /// The arguments as records keep them (`Settings.spec.auditArguments`):
    /// with every PII and secret finding redacted, whatever the content
    /// policy's actions, since a record must never hold them.
    fn audit_arguments(&self, msg: &Message) -> Option<Value> {
        if self.bundle().settings.audit_arguments != crate::bundle::AuditArguments::Redacted {
            return None;
        }
        let mut args = msg.arguments.clone()?;
        let scanner = &self.engine.audit_scanner.as_ref()?;
        redact_all(scanner, &mut args);
        Some(args)
    }

    /// The fields every record of this exchange shares.
    fn base_record(&self) -> AuditRecord {
        let id = self.identity.as_deref();
        AuditRecord {
            server: self.server().map(|s| s.name.clone()),
            protocol_version: self.revision.clone(),
            session: self.session.clone(),
            subject: id.map(|i| i.subject.clone()),
            agent: id.and_then(|i| i.agent.clone()),
            tenant: id.and_then(|i| i.tenant.clone()),
            token_jti: id.and_then(|i| i.jti.clone()),
            upstream_token: self.upstream_token,
            source: self.source.clone(),
            warning: self.server().and_then(deprecation_warning),
            client_request_id: self.client_request_id.clone(),
            ..AuditRecord::blank(
                rfc3339(self.started_nanos),
                self.request_id.clone(),
                self.engine.version().to_owned(),
            )
        }
    }

    /// A record for a request refused before its body was read (no MCP
    /// message is known yet).
    fn unread_record(&self, reason: String, code: i64, status: u16) -> AuditRecord {
        AuditRecord {
            kind: "unread",
            reason,
            http_status: Some(status),
            error_code: Some(code),
            ..self.base_record()
        }
    }

    /// Records a body refused before it could be classified.
    fn record_invalid(&mut self, reason: String, code: i64, status: u16) {
        let record = AuditRecord {
            reason,
            http_status: Some(status),
            error_code: Some(code),
            ..self.base_record()
        };
        self.complete(record);
    }

    /// Records each message of a body refused for its framing.
    fn record_messages_invalid(&mut self, envelope: &Envelope, reason: &str, code: i64) {
        for (i, msg) in envelope.messages.iter().enumerate() {
            let mut record = self.record_for(
                i as u32,
                Direction::Client,
                msg,
                &Verdict::deny(reason.to_owned(), None),
            );
            record.outcome = Outcome::Invalid;
            record.http_status = Some(400);
            record.error_code = Some(code);
            self.complete(record);
        }
    }

    fn reply(
        &mut self,
        status: u16,
        id: Option<&Value>,
        code: i64,
        message: &str,
        reason: String,
        rule: Option<String>,
    ) -> LocalReply {
        self.replied_locally = true;
        let mut data = json!({"reason": reason, "requestId": self.request_id});
        if let (Some(r), Some(obj)) = (rule, data.as_object_mut()) {
            obj.insert("rule".into(), Value::from(r));
        }
        let body = mcp::error_response(id, code, message, Some(data));
        LocalReply {
            status,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
            details: format!(
                "portcullis_{}",
                message.to_ascii_lowercase().replace(' ', "_")
            ),
        }
    }

    /// Fails the exchange closed after an internal error: the reply to send
    /// and the record saying why. Adapters call this when anything goes wrong
    /// that the engine itself did not decide.
    pub fn internal_error(&mut self, env: &mut dyn Env, what: &str) -> LocalReply {
        let reason = format!(
            "internal error in the filter ({what}); the request was refused rather than passed uninspected"
        );
        for p in std::mem::take(&mut self.pending) {
            let mut record = p.record;
            record.outcome = Outcome::Invalid;
            record.decision = Decision::Deny;
            record.reason = reason.clone();
            self.finish_record(env, record);
        }
        if self.done.is_empty() {
            self.record_invalid(reason.clone(), codes::INTERNAL, 500);
        }
        self.reply(500, None, codes::INTERNAL, "Internal error", reason, None)
    }
}

#[derive(Debug, Clone)]
struct Verdict {
    decision: Decision,
    reason: String,
    rule: Option<String>,
    /// Refused for the token's scopes (answered 403).
    auth: Option<IdentityError>,
    /// Every Policy rule that decided.
    rules: Vec<String>,
    shadow: Option<crate::policy::Shadow>,
    policy_errors: Vec<String>,
    /// An approval asked for (refused), or about to be spent (allowed).
    approval: Option<ApprovalState>,
    /// The limit that refused (or, in shadow, would have).
    limit: Option<LimitNote>,
}

#[derive(Debug, Clone)]
struct ApprovalState {
    id: String,
    binding: approval::Binding,
    /// Allowed: the grant's jti, to record as spent.
    jti: Option<String>,
    error: Option<approval::ApprovalError>,
}

impl Verdict {
    fn allow(reason: String, rule: Option<String>) -> Verdict {
        Verdict {
            decision: Decision::Allow,
            reason,
            rule,
            auth: None,
            rules: Vec::new(),
            shadow: None,
            policy_errors: Vec::new(),
            approval: None,
            limit: None,
        }
    }

    fn deny(reason: String, rule: Option<String>) -> Verdict {
        Verdict {
            decision: Decision::Deny,
            ..Verdict::allow(reason, rule)
        }
    }
}

/// The audit summary of one inspection (types and counts, never values),
/// with the per-type counters reported.
fn summarize(env: &mut dyn Env, inspection: &Inspection) -> Option<ContentFindings> {
    if inspection.pii.is_clean() && inspection.screen.is_empty() {
        return None;
    }
    let mut f = ContentFindings::default();
    for (entity, n) in &inspection.pii.counts {
        f.pii.insert(entity.clone(), u64::from(*n));
        env.count(&format!("{}.{entity}", metrics::PII_FOUND), u64::from(*n));
    }
    for finding in &inspection.screen {
        note_screen_finding(env, &mut f, finding);
    }
    f.action = if inspection.blocked {
        "blocked"
    } else if inspection.modified {
        env.count(metrics::CONTENT_REDACTED, 1);
        "redacted"
    } else {
        "flagged"
    };
    Some(f)
}

/// Adds one screening finding to a record's summary, and counts it.
fn note_screen_finding(
    env: &mut dyn Env,
    findings: &mut ContentFindings,
    finding: &crate::scan::injection::Finding,
) {
    let category = finding.category.as_str();
    *findings.injection.entry(category.to_owned()).or_insert(0) += 1;
    if !findings.rules.contains(&finding.rule_id) {
        findings.rules.push(finding.rule_id.clone());
    }
    env.count(&format!("{}.{category}", metrics::INJECTION_FOUND), 1);
}

/// What reviewing one answer found and did.
#[derive(Debug, Default)]
struct Review {
    /// Withhold the answer, for this reason.
    refuse: Option<String>,
    /// The answer was rewritten (redacted, stripped, tools removed).
    changed: bool,
    content: Option<ContentFindings>,
    pins: Vec<PinFinding>,
    dropped: Vec<String>,
    added: Vec<String>,
    removed: Vec<String>,
    /// Tools removed by pins or screening (beside the allowlist's own).
    removed_from_list: u32,
}

/// The warning a deprecated server's traffic carries until its sunset.
fn deprecation_warning(server: &Server) -> Option<String> {
    if server.status != crate::bundle::ServerStatus::Deprecated {
        return None;
    }
    Some(match server.sunset_day {
        Some(day) => format!(
            "McpServer/{} is deprecated; it is refused from {}",
            server.name,
            rfc3339(day * 86_400 * 1_000_000_000)
                .get(..10)
                .unwrap_or("")
        ),
        None => format!("McpServer/{} is deprecated", server.name),
    })
}

/// Replaces every PII and secret span in the strings of `value`.
fn redact_all(scanner: &crate::scan::Scanner, value: &mut Value) {
    use crate::scan::Action;
    match value {
        Value::String(text) => {
            let findings: Vec<(crate::scan::Finding, Action)> = scanner
                .scan_text(text)
                .into_iter()
                .map(|f| (f, Action::Redact))
                .collect();
            if !findings.is_empty() {
                let redacted = crate::scan::redact::apply(text, &findings).into_owned();
                *text = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_all(scanner, v)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_all(scanner, v)),
        _ => {}
    }
}

/// The MCP methods of a body, if it is JSON-RPC 2.0 carrying at least one
/// MCP method (`initialize`, `server/discover`, `tools/call`, ...).
fn shadow_mcp_methods(body: &[u8]) -> Option<Vec<String>> {
    let value = parse_strict(body).ok()?;
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let methods: Vec<String> = items
        .iter()
        .filter(|m| m.get("jsonrpc").and_then(Value::as_str) == Some("2.0"))
        .filter_map(|m| m.get("method").and_then(Value::as_str))
        .filter(|m| mcp::is_known_method(m) || *m == "server/discover")
        .map(str::to_owned)
        .collect();
    (!methods.is_empty()).then_some(methods)
}

/// A result, an error or a server message: screening and redaction of every
/// string in it, base64 `blob` contents included (decoded, screened as
/// text, re-encoded when redacted). Findings add to the review's.
fn review_content(
    env: &mut dyn Env,
    server: &Server,
    surface: Surface,
    part: &mut Value,
    review: &mut Review,
) {
    let Some((policy_name, policy)) = &server.content else {
        return;
    };
    let policy: &ContentPolicy = policy;
    let mut inspection = policy.inspect_result(part, surface);
    inspect_blobs(policy, surface, part, &mut inspection, 0);
    let summary = summarize(env, &inspection);
    let types = summary
        .as_ref()
        .map(ContentFindings::types)
        .unwrap_or_default();
    if let Some(s) = summary {
        merge_findings(&mut review.content, s);
    }
    if inspection.blocked {
        env.count(metrics::CONTENT_BLOCKED, 1);
        review.refuse = Some(format!(
            "the answer carries {types} which ContentPolicy/{policy_name} blocks"
        ));
    } else if inspection.modified {
        review.changed = true;
    }
}

/// Decodes every `blob` (base64, as MCP carries binary resource contents)
/// that is UTF-8 text, screens it, and re-encodes it when redacted: a
/// client that decodes it shows the text.
fn inspect_blobs(
    policy: &ContentPolicy,
    surface: Surface,
    value: &mut Value,
    into: &mut Inspection,
    depth: usize,
) {
    use base64::Engine as _;
    if depth > crate::json::MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "blob"
                    && let Value::String(b64) = v
                {
                    let Ok(bytes) =
                        base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())
                    else {
                        continue;
                    };
                    let Ok(text) = String::from_utf8(bytes) else {
                        continue;
                    };
                    let mut decoded = Value::String(text);
                    let found = policy.inspect_result(&mut decoded, surface);
                    if found.modified
                        && let Value::String(t) = &decoded
                    {
                        *b64 = base64::engine::general_purpose::STANDARD.encode(t.as_bytes());
                    }
                    into.pii.merge(found.pii);
                    into.screen.extend(found.screen);
                    into.blocked |= found.blocked;
                    into.modified |= found.modified;
                } else {
                    inspect_blobs(policy, surface, v, into, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                inspect_blobs(policy, surface, v, into, depth + 1);
            }
        }
        _ => {}
    }
}

/// A legacy `endpoint` event's data: a path (or same-scheme URL) without
/// whitespace or control characters.
fn is_endpoint_url(data: &str) -> bool {
    !data.is_empty()
        && data.len() <= 2048
        && (data.starts_with('/') || data.starts_with("http://") || data.starts_with("https://"))
        && !data.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A tool's advertised `inputSchema`, compiled for strict validation
/// (formats are not checked: the server's own validation does not either).
fn compile_input_schema(schema: &Value) -> Option<Arc<jsonschema::Validator>> {
    jsonschema::options()
        .should_validate_formats(false)
        .build(schema)
        .ok()
        .map(Arc::new)
}

/// What became of one message from the upstream.
#[derive(Debug)]
enum Fate {
    /// Forwarded byte for byte.
    Unchanged,
    /// Forwarded as rewritten in place (redacted, filtered, id normalised).
    Changed,
    /// Forwarded as these messages instead (errors); empty: not forwarded.
    Replace(Vec<Value>),
}

/// How long an answer may take to arrive on a GET stream after its request
/// was filed there (the legacy transport, a resumed stream).
pub const PENDING_TTL_SECS: u64 = 600;

/// Most requests a session files for its GET stream at once; the oldest
/// give way.
pub const PENDING_MAX: usize = 256;

/// A request filed for a GET stream of its session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct StreamEntry {
    id: Value,
    method: String,
    paged: bool,
    /// Unix seconds.
    expires: u64,
}

type StreamTable = Vec<StreamEntry>;

/// What a response's content type says it is, as every client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    EventStream,
    /// Another media type.
    Other,
    /// No content type.
    Absent,
}

/// Reads the response's content type and encoding; refuses what the clients
/// could read differently from the filter: several content types (each
/// client joins or picks them its own way), a charset other than UTF-8 (the
/// Python client decodes by it), a compressed body.
fn response_kind(
    headers: &[(String, String)],
    to: crate::media::Answering,
) -> Result<BodyKind, String> {
    let ctype = crate::media::single_header(headers).map_err(|e| e.to_string())?;
    if let Some((_, enc)) = headers.iter().find(|(k, v)| {
        k.eq_ignore_ascii_case("content-encoding") && !v.trim().eq_ignore_ascii_case("identity")
    }) {
        return Err(format!(
            "the upstream's answer is encoded ({:?}) and cannot be inspected",
            truncate(enc, 32)
        ));
    }
    let Some(ctype) = ctype else {
        return Ok(BodyKind::Absent);
    };
    let media = crate::media::parse_utf8(ctype).map_err(|e| e.to_string())?;
    let kind = if media.is_json() {
        BodyKind::Json
    } else if media.is_event_stream() {
        BodyKind::EventStream
    } else {
        BodyKind::Other
    };
    // A type one client reads as JSON or as an event stream (the Python
    // client's prefix test takes `application/json-seq` for JSON) must be
    // exactly that, or it would pass unread.
    let reading = crate::media::client_reading(Some(ctype), to);
    if to == crate::media::Answering::Post
        && ((reading.json && kind != BodyKind::Json)
            || (reading.sse && kind != BodyKind::EventStream))
    {
        return Err(format!(
            "content-type {:?} is read as JSON or as an event stream by some client but is not exactly that",
            truncate(ctype, 64)
        ));
    }
    Ok(kind)
}

/// The legacy transport's session id in a URL or path's query
/// (`?session_id=` in the Python SDK, `?sessionId=` in the TypeScript one).
fn legacy_session_param(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session_id" || k == "sessionId")
            .then_some(v)
            .filter(|v| !v.is_empty())
    })
}

/// A list's entries (prompts, resources, resource templates), screened like
/// tool definitions: an entry whose worst finding is `dropTool` is removed
/// (and named in the record), as a poisoned tool is.
fn review_entries(
    env: &mut dyn Env,
    server: &Server,
    field: &str,
    key: &str,
    result: &mut Value,
    review: &mut Review,
) {
    let Some((_, policy)) = &server.content else {
        return;
    };
    let Some(Value::Array(entries)) = result.get_mut(field) else {
        return;
    };
    let before = entries.len();
    let mut dropped = Vec::new();
    entries.retain(|entry| {
        let findings = policy.screen.check_json(entry, Surface::ToolDefinition);
        let drop = crate::scan::injection::worst(&findings)
            == Some(crate::scan::injection::ScreenAction::DropTool);
        if drop {
            dropped.push(
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .map(|n| truncate(n, 128).to_owned())
                    .unwrap_or_default(),
            );
        }
        !drop
    });
    let removed = before - entries.len();
    if removed > 0 {
        env.count(metrics::POISONED_TOOLS_DROPPED, removed as u64);
        review.dropped.extend(dropped);
        review.removed_from_list = review.removed_from_list.saturating_add(removed as u32);
        review.changed = true;
    }
}

/// PII and secrets in the texts of a tools/list's tools (titles,
/// descriptions, annotations): redacted like any answer. Names and schemas
/// are left as served: they are what calls are made with, and pins cover
/// them.
fn redact_tool_texts(env: &mut dyn Env, server: &Server, result: &mut Value, review: &mut Review) {
    let Some((_, policy)) = &server.content else {
        return;
    };
    let Some(Value::Array(tools)) = result.get_mut("tools") else {
        return;
    };
    let mut all = Inspection::default();
    for tool in tools.iter_mut() {
        let Some(obj) = tool.as_object_mut() else {
            continue;
        };
        for key in ["title", "description", "annotations"] {
            if let Some(v) = obj.get_mut(key) {
                let report = policy
                    .scanner
                    .redact_json(v, crate::scan::Direction::Response);
                all.modified |= report.modified();
                all.pii.merge(report);
            }
        }
    }
    if let Some(f) = summarize(env, &all) {
        merge_findings(&mut review.content, f);
    }
    review.changed |= all.modified;
}

fn merge_findings(into: &mut Option<ContentFindings>, more: ContentFindings) {
    match into {
        Some(f) => f.merge(more),
        None => *into = Some(more),
    }
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

fn random_id(env: &mut dyn Env) -> String {
    let mut buf = [0u8; 16];
    env.random_bytes(&mut buf);
    hex::encode(buf)
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(digest.get(..8).unwrap_or(&[]))
}

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

use crate::audit::{AuditRecord, Decision, Direction, Outcome, SCHEMA, rfc3339};
use crate::bundle::{Bundle, BundleError, Server, UnknownMethods, UnmatchedRoutes};
use crate::json::{canonical_string, parse_strict};
use crate::mcp::{self, Envelope, Kind, Message, RoutingHeaders, Target, codes};
use crate::sse;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What the engine needs from its host: the seam that adapters implement and
/// tests mock.
pub trait Env {
    /// Wall-clock time, Unix nanoseconds.
    fn now_nanos(&self) -> u64;
    /// Fills `buf` with random bytes (ids, nonces).
    fn random_bytes(&mut self, buf: &mut [u8]);
}

/// Prefix of the headers the filter owns. Client-sent ones are removed.
pub const AUDIT_HEADER_PREFIX: &str = "x-mcp-";

/// The audit headers added to a forwarded request.
pub mod headers {
    pub const METHOD: &str = "x-mcp-method";
    pub const SERVER: &str = "x-mcp-server";
    pub const TOOL: &str = "x-mcp-tool";
    pub const DECISION: &str = "x-mcp-decision";
    pub const BUNDLE_VERSION: &str = "x-mcp-bundle-version";
    pub const REQUEST_ID: &str = "x-mcp-request-id";
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

/// A compiled configuration, shared by all exchanges of a VM.
#[derive(Debug)]
pub struct Engine {
    bundle: Bundle,
}

impl Engine {
    pub fn new(bundle: Bundle) -> Engine {
        Engine { bundle }
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
}

/// A forwarded request waiting for its response.
#[derive(Debug, Clone)]
struct Pending {
    record: AuditRecord,
    method: String,
}

/// What the request was, once its headers are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// No server matched (pass-through); not governed.
    Unmatched,
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
    server: Option<usize>,
    route: Route,
    head: RequestHead,
    revision: Option<String>,
    session: Option<String>,
    started_nanos: u64,
    replied_locally: bool,
    pending: Vec<(String, Pending)>,
    /// Notifications and client responses forwarded, completed at 202.
    accepted: Vec<AuditRecord>,
    response_status: u16,
    mode: ResponseMode,
    stream_index: u32,
    done: Vec<AuditRecord>,
    finished: bool,
    /// Bytes to send in place of a refused response body, once.
    replacement: Option<Vec<u8>>,
}

impl Exchange {
    pub fn new(engine: Arc<Engine>) -> Exchange {
        Exchange {
            engine,
            request_id: String::new(),
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
        self.request_id = match head.header("x-request-id") {
            Some(id) if !id.is_empty() && id.len() <= 128 && id.is_ascii() => id.to_owned(),
            _ => random_id(env),
        };
        self.session = head
            .header("mcp-session-id")
            .map(|s| short_hash(s.as_bytes()));
        let mut edits = HeaderEdits::default();
        for (name, _) in &head.headers {
            if name.to_ascii_lowercase().starts_with(AUDIT_HEADER_PREFIX)
                && !edits.remove.contains(name)
            {
                edits.remove.push(name.clone());
            }
        }
        let server = self
            .bundle()
            .route(&head.authority, &head.path)
            .and_then(|s| {
                self.bundle()
                    .servers
                    .iter()
                    .position(|x| std::ptr::eq(x, s))
            });
        self.server = server;
        let method = head.method.clone();
        self.head = head;
        if server.is_none() {
            self.route = Route::Unmatched;
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
            return RequestHeadersAction::Continue(edits);
        }
        match method.as_str() {
            "POST" => {
                self.route = Route::Post;
                let ctype = self.head.header("content-type").unwrap_or("");
                if !is_json_media_type(ctype) {
                    let reason = format!(
                        "MCP messages are POSTed as application/json; got content-type {:?}",
                        truncate(ctype, 64)
                    );
                    self.record_invalid(reason.clone(), codes::UNSUPPORTED_MEDIA_TYPE, 415);
                    let reply = self.reply(
                        415,
                        None,
                        codes::UNSUPPORTED_MEDIA_TYPE,
                        "Unsupported media type",
                        reason,
                        None,
                    );
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
            "GET" => {
                self.route = Route::Stream;
                RequestHeadersAction::Continue(edits)
            }
            _ => {
                self.route = Route::Other;
                RequestHeadersAction::Continue(edits)
            }
        }
    }

    /// Phase 2, while the body arrives: `size` is the total buffered so far.
    /// Refuses a body over the limit as soon as it is seen.
    pub fn on_request_body_size(&mut self, size: u64) -> Option<LocalReply> {
        if self.route == Route::Post
            && !self.replied_locally
            && size > self.bundle().settings.max_request_bytes
        {
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
        if self.route != Route::Post || self.replied_locally {
            return RequestBodyAction::Forward(HeaderEdits::default());
        }
        if let Some(reply) = self.on_request_body_size(body.len() as u64) {
            return RequestBodyAction::Reply(reply);
        }
        if !end_of_stream {
            return RequestBodyAction::Wait;
        }
        let _ = env;
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
        self.decide(envelope)
    }

    fn decide(&mut self, envelope: Envelope) -> RequestBodyAction {
        let decisions: Vec<Verdict> = envelope.messages.iter().map(|m| self.verdict(m)).collect();
        let denied = decisions.iter().position(|d| d.decision == Decision::Deny);
        if let Some(first_denied) = denied {
            return RequestBodyAction::Reply(self.refuse(&envelope, &decisions, first_denied));
        }
        let mut methods = Vec::new();
        let mut tools = Vec::new();
        for (i, (msg, verdict)) in envelope.messages.iter().zip(decisions).enumerate() {
            let record = self.record_for(i as u32, Direction::Client, msg, &verdict);
            if let Some(m) = &msg.method {
                methods.push(m.clone());
            }
            if let Target::Tool(t) = &msg.target {
                tools.push(t.clone());
            }
            match (msg.kind, &msg.id) {
                (Kind::Request, Some(id)) => self.pending.push((
                    mcp::id_key(id),
                    Pending {
                        record,
                        method: msg.method.clone().unwrap_or_default(),
                    },
                )),
                _ => self.accepted.push(record),
            }
        }
        let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
        let mut set = vec![
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
        ];
        if !tools.is_empty() {
            set.push((headers::TOOL.to_owned(), tools.join(",")));
        }
        RequestBodyAction::Forward(HeaderEdits {
            remove: Vec::new(),
            set,
        })
    }

    fn verdict(&self, msg: &Message) -> Verdict {
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
        first_denied: usize,
    ) -> LocalReply {
        let mut responses = Vec::new();
        let denied_reason = decisions
            .get(first_denied)
            .map(|d| d.reason.clone())
            .unwrap_or_default();
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
            let mut record = self.record_for(i as u32, Direction::Client, msg, &verdict);
            record.outcome = Outcome::Denied;
            record.http_status = Some(200);
            record.error_code = Some(codes::DENIED);
            self.complete(record);
            if msg.kind == Kind::Request {
                responses.push(mcp::error_response(
                    msg.id.as_ref(),
                    codes::DENIED,
                    "Denied by Portcullis",
                    Some(json!({
                        "reason": verdict.reason,
                        "rule": verdict.rule,
                        "requestId": self.request_id,
                    })),
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
                (200, Value::Array(responses))
            }
        } else {
            match responses.pop() {
                Some(r) => (200, r),
                // A refused notification has no id to answer; the HTTP status carries it.
                None => (403, self.denial_without_id(&denied_reason)),
            }
        };
        self.replied_locally = true;
        LocalReply {
            status,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
            details: "portcullis_denied".into(),
        }
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
        let ctype = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let governed = matches!(self.route, Route::Post | Route::Stream);
        if !governed {
            self.mode = ResponseMode::Pass;
            return edits;
        }
        if !(200..300).contains(&status) {
            self.mode = ResponseMode::Pass;
            self.complete_all(env, Outcome::HttpError);
            return edits;
        }
        let is_sse = ctype.starts_with("text/event-stream");
        let is_json = is_json_media_type(&ctype);
        if self.route == Route::Stream {
            // A GET stream carries only server messages (and, on resumption
            // or the legacy transport, responses); it is read only as SSE.
            self.mode = if is_sse {
                ResponseMode::Sse(sse::Parser::new(self.max_response()))
            } else {
                ResponseMode::Pass
            };
            if is_sse {
                edits.remove.push("content-length".into());
            }
            return edits;
        }
        if status == 202 || (self.pending.is_empty() && !is_sse && !is_json) {
            self.mode = ResponseMode::Pass;
            self.complete_all(env, Outcome::Accepted);
            return edits;
        }
        // Anything that reaches here answers forwarded requests and will be
        // inspected; its length may change, and this is the last moment the
        // headers can say so.
        edits.remove.push("content-length".into());
        self.complete_accepted(env);
        if is_sse {
            self.mode = ResponseMode::Sse(sse::Parser::new(self.max_response()));
        } else if is_json {
            self.mode = ResponseMode::Json;
        } else {
            edits
                .set
                .push(("content-type".into(), "application/json".into()));
            self.fail_pending(
                env,
                "upstream answered an MCP request with a non-JSON, non-SSE body",
            );
            self.mode = ResponseMode::Discard;
        }
        edits
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
            ResponseMode::Discard => {
                ResponseBodyAction::Replace(self.replacement.take().unwrap_or_default())
            }
            ResponseMode::Json => {
                if data.len() > self.max_response() {
                    let reason = format!(
                        "upstream JSON response exceeds the {}-byte limit (Settings.spec.maxResponseBytes)",
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
                self.inspect_json_body(env, data)
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
        self.complete_all(env, Outcome::NoResponse);
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
        let mut value = value;
        let mut changed = false;
        match &mut value {
            Value::Array(items) => {
                for item in items.iter_mut() {
                    changed |= self.inspect_message(env, item);
                }
            }
            other => changed |= self.inspect_message(env, other),
        }
        if changed {
            ResponseBodyAction::Replace(value.to_string().into_bytes())
        } else {
            ResponseBodyAction::Pass
        }
    }

    fn inspect_event(&mut self, env: &mut dyn Env, event: sse::Event, out: &mut Vec<u8>) {
        let Some(data) = event.data.as_deref() else {
            out.extend_from_slice(&event.raw);
            return;
        };
        if data.trim().is_empty() {
            out.extend_from_slice(&event.raw);
            return;
        }
        // The legacy HTTP+SSE transport (2024-11-05) opens its GET stream
        // with an `endpoint` event whose data is the URL to POST messages
        // to: transport framing, not an MCP message.
        if self.route == Route::Stream
            && event.event.as_deref() == Some("endpoint")
            && is_endpoint_url(data)
        {
            out.extend_from_slice(&event.raw);
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
        if self.inspect_message(env, &mut value) {
            out.extend_from_slice(&event.with_data(&value.to_string()));
        } else {
            out.extend_from_slice(&event.raw);
        }
    }

    /// Replaces an uninspectable SSE event: each open request gets an error
    /// event, and the event itself is dropped.
    fn sse_failed(&mut self, env: &mut dyn Env, reason: &str, out: &mut Vec<u8>) {
        for (_, p) in std::mem::take(&mut self.pending) {
            let err = self.reject(env, p, reason);
            out.extend_from_slice(format!("event: message\ndata: {err}\n\n").as_bytes());
        }
    }

    /// Closes an open request whose answer was refused: its record says why,
    /// and the JSON-RPC error returned goes to the client in its place.
    fn reject(&mut self, env: &mut dyn Env, pending: Pending, reason: &str) -> Value {
        let err = self.upstream_error(pending.record.jsonrpc_id.as_ref(), reason);
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

    /// Inspects one JSON-RPC message from the upstream; returns whether it
    /// was rewritten.
    fn inspect_message(&mut self, env: &mut dyn Env, value: &mut Value) -> bool {
        let msg = match mcp::classify(value) {
            Ok(Envelope { mut messages, .. }) if messages.len() == 1 => messages.remove(0),
            _ => {
                // Not one JSON-RPC message: refuse rather than pass it.
                let reason = "upstream sent something that is not a JSON-RPC message";
                *value = if self.pending.is_empty() {
                    self.upstream_error(None, reason)
                } else {
                    let (_, p) = self.pending.remove(0);
                    self.reject(env, p, reason)
                };
                return true;
            }
        };
        match msg.kind {
            Kind::Response => {
                let key = msg.id.as_ref().map(mcp::id_key).unwrap_or_default();
                let pending = self
                    .pending
                    .iter()
                    .position(|(k, _)| *k == key)
                    .map(|i| self.pending.remove(i).1);
                // An uncorrelated response (a resumed or legacy stream) is
                // filtered as if it answered a list call: showing a caller a
                // tool it may not use is never the safe default.
                let method = pending.as_ref().map(|p| p.method.clone());
                let removed = self.filter_list_result(method.as_deref(), value);
                let mut record = match pending {
                    Some(p) => p.record,
                    None => {
                        let index = self.next_stream_index();
                        let mut r = self.record_for(
                            index,
                            Direction::Server,
                            &msg,
                            &Verdict::allow(
                                "response on a stream, not matched to a request of this exchange"
                                    .into(),
                                None,
                            ),
                        );
                        r.outcome = Outcome::Delivered;
                        r
                    }
                };
                if record.outcome != Outcome::Delivered {
                    record.outcome = if msg.error_code.is_some() {
                        Outcome::Error
                    } else {
                        Outcome::Result
                    };
                }
                record.error_code = msg.error_code;
                if removed > 0 {
                    record.filtered_out = Some(removed);
                }
                self.finish_record(env, record);
                removed > 0
            }
            Kind::Request | Kind::Notification => {
                let index = self.next_stream_index();
                let verdict = Verdict::allow("server message on a response stream".into(), None);
                let mut record = self.record_for(index, Direction::Server, &msg, &verdict);
                record.outcome = Outcome::Delivered;
                self.finish_record(env, record);
                false
            }
        }
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
            let set = match *field {
                "tools" => &server.tools,
                "resources" => &server.resources,
                _ => &server.prompts,
            };
            if let Some(Value::Array(items)) = result.get_mut(*field) {
                let before = items.len();
                items.retain(|item| {
                    item.get(*key)
                        .and_then(Value::as_str)
                        .is_some_and(|n| set.is_match(n))
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
        for (_, p) in std::mem::take(&mut self.pending) {
            errors.push(self.reject(env, p, reason));
        }
        let body = match errors.len() {
            0 => self.upstream_error(None, reason),
            1 => errors.remove(0),
            _ => Value::Array(errors),
        };
        self.replacement = Some(body.to_string().into_bytes());
    }

    fn complete_accepted(&mut self, env: &mut dyn Env) {
        for mut record in std::mem::take(&mut self.accepted) {
            record.outcome = Outcome::Accepted;
            self.finish_record(env, record);
        }
    }

    fn complete_all(&mut self, env: &mut dyn Env, outcome: Outcome) {
        self.complete_accepted(env);
        for (_, p) in std::mem::take(&mut self.pending) {
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
            schema: SCHEMA,
            time: rfc3339(self.started_nanos),
            request_id: self.request_id.clone(),
            message_index: index,
            direction,
            kind: msg.kind.as_str(),
            jsonrpc_id: msg.id.clone(),
            method: msg.method.as_ref().map(|m| truncate(m, 128).to_owned()),
            server: self.server().map(|s| s.name.clone()),
            tool,
            resource,
            prompt,
            protocol_version: self.revision.clone(),
            session: self.session.clone(),
            decision: verdict.decision,
            reason: verdict.reason.clone(),
            rule: verdict.rule.clone(),
            bundle_version: self.engine.version().to_owned(),
            outcome: Outcome::NoResponse,
            http_status: None,
            error_code: None,
            arguments_sha256: msg
                .arguments
                .as_ref()
                .map(|a| hex::encode(Sha256::digest(canonical_string(a).as_bytes()))),
            filtered_out: None,
            latency_ms: None,
        }
    }

    /// Records a body refused before it could be classified.
    fn record_invalid(&mut self, reason: String, code: i64, status: u16) {
        let record = AuditRecord {
            schema: SCHEMA,
            time: rfc3339(self.started_nanos),
            request_id: self.request_id.clone(),
            message_index: 0,
            direction: Direction::Client,
            kind: "invalid",
            jsonrpc_id: None,
            method: None,
            server: self.server().map(|s| s.name.clone()),
            tool: None,
            resource: None,
            prompt: None,
            protocol_version: self.revision.clone(),
            session: self.session.clone(),
            decision: Decision::Deny,
            reason,
            rule: None,
            bundle_version: self.engine.version().to_owned(),
            outcome: Outcome::Invalid,
            http_status: Some(status),
            error_code: Some(code),
            arguments_sha256: None,
            filtered_out: None,
            latency_ms: None,
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
        for (_, p) in std::mem::take(&mut self.pending) {
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
}

impl Verdict {
    fn allow(reason: String, rule: Option<String>) -> Verdict {
        Verdict {
            decision: Decision::Allow,
            reason,
            rule,
        }
    }

    fn deny(reason: String, rule: Option<String>) -> Verdict {
        Verdict {
            decision: Decision::Deny,
            reason,
            rule,
        }
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

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

fn is_json_media_type(ctype: &str) -> bool {
    let essence = ctype.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
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

//! Phases 3 to 6: the answer. Its headers say how the body is read; the
//! body is correlated with the requests it answers, reviewed, and passed,
//! rewritten or refused.

use super::*;

/// A legacy `endpoint` event's data: a path (or same-scheme URL) without
/// whitespace or control characters.
pub(super) fn is_endpoint_url(data: &str) -> bool {
    !data.is_empty()
        && data.len() <= 2048
        && (data.starts_with('/') || data.starts_with("http://") || data.starts_with("https://"))
        && !data.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What became of one message from the upstream.
#[derive(Debug)]
pub(super) enum Fate {
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
pub(super) struct StreamEntry {
    id: Value,
    method: String,
    paged: bool,
    /// Unix seconds.
    expires: u64,
}

pub(super) type StreamTable = Vec<StreamEntry>;

/// What a response's content type says it is, as every client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
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
pub(super) fn response_kind(
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

/// Turns a result's `cacheScope: "public"` into `"private"`; whether it did.
fn privatise_cache_scope(value: &mut Value) -> bool {
    match value
        .get_mut("result")
        .and_then(Value::as_object_mut)
        .and_then(|r| r.get_mut("cacheScope"))
    {
        Some(scope) if scope.as_str() == Some("public") => {
            *scope = Value::from("private");
            true
        }
        _ => false,
    }
}

/// The legacy transport's session id in a URL or path's query
/// (`?session_id=` in the Python SDK, `?sessionId=` in the TypeScript one).
pub(super) fn legacy_session_param(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session_id" || k == "sessionId")
            .then_some(v)
            .filter(|v| !v.is_empty())
    })
}

impl Exchange {
    /// Phase 3: the response headers. Returns the header edits to apply.
    pub fn on_response_headers(
        &mut self,
        env: &mut dyn Env,
        status: u16,
        headers: &[(String, String)],
    ) -> HeaderEdits {
        self.response_status = status;
        if (200..300).contains(&status)
            && let Some((_, session)) = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("mcp-session-id"))
        {
            self.remember_url_mode_session(env, session);
        }
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
        if let Some(w) = self.server().and_then(crate::registry::deprecation_warning) {
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

    /// `requestHeaders: forward`: the upstream answered before the filter
    /// decided the request (its headers went on, its body is still held). An
    /// answer to a request the filter has not allowed is not passed: the
    /// client gets a 502 with a JSON-RPC error, and a record says why.
    pub fn refuse_early_answer(
        &mut self,
        env: &mut dyn Env,
        headers: &[(String, String)],
    ) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        for (name, _) in headers {
            if is_owned_field(name) && !edits.remove.contains(name) {
                edits.remove.push(name.clone());
            }
        }
        edits.remove.push("content-length".into());
        let reason =
            "the upstream answered before the filter decided the request (its body was still held)";
        self.refuse_response(env, &mut edits, reason);
        let body = mcp::error_response(
            None,
            codes::UPSTREAM_REJECTED,
            "Upstream answer refused",
            Some(json!({"reason": reason, "requestId": self.request_id})),
        );
        self.replacement = Some(body.to_string().into_bytes());
        edits
    }

    /// Refuses a response the clients could read differently from the
    /// filter: the client gets a 502 with a JSON-RPC error for each open
    /// request (or one without an id), and a record says why.
    pub(super) fn refuse_response(
        &mut self,
        env: &mut dyn Env,
        edits: &mut HeaderEdits,
        reason: &str,
    ) {
        edits.set.push((":status".into(), "502".into()));
        // The replacement is plain JSON, whatever the upstream's encoding.
        edits.remove.push("content-encoding".into());
        edits
            .set
            .push(("content-type".into(), "application/json".into()));
        self.response_status = 502;
        if self.pending.is_empty() {
            self.record_unanswered_refusal(env, format!("upstream response refused: {reason}"));
        }
        self.fail_pending(env, reason);
        self.mode = ResponseMode::Discard;
    }

    /// Whether the response body is buffered whole before it is inspected
    /// (an answer read as one document), rather than read as it streams.
    pub fn buffers_response(&self) -> bool {
        matches!(self.mode, ResponseMode::Json | ResponseMode::Text)
    }

    pub(super) fn max_response(&self) -> usize {
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

    pub(super) fn finish(&mut self, env: &mut dyn Env) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.approval_abandoned();
        crate::policy::gate::release(env, &mut self.leases);
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

    pub(super) fn inspect_json_body(
        &mut self,
        env: &mut dyn Env,
        data: &[u8],
    ) -> ResponseBodyAction {
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
    pub(super) fn inspect_text_body(
        &mut self,
        env: &mut dyn Env,
        data: &[u8],
    ) -> ResponseBodyAction {
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

    pub(super) fn inspect_event(
        &mut self,
        env: &mut dyn Env,
        event: sse::Event,
        out: &mut Vec<u8>,
    ) {
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

    /// Records a refusal of upstream bytes that answer no open request (the
    /// open ones get their own records, with the error they were sent).
    fn record_unanswered_refusal(&mut self, env: &mut dyn Env, reason: String) {
        let mut record = self.base_record();
        record.direction = Direction::Server;
        record.message_index = self.next_stream_index();
        record.outcome = Outcome::UpstreamInvalid;
        record.error_code = Some(codes::UPSTREAM_REJECTED);
        record.reason = reason;
        self.finish_record(env, record);
    }

    /// Replaces an uninspectable SSE event: each open request gets an error
    /// event, and the event itself is dropped.
    pub(super) fn sse_failed(&mut self, env: &mut dyn Env, reason: &str, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            self.record_unanswered_refusal(
                env,
                format!("an event of the upstream's stream was refused: {reason}"),
            );
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
    pub(super) fn reject(&mut self, env: &mut dyn Env, pending: Pending, reason: &str) -> Value {
        let err = self.upstream_error(Some(&pending.id), reason);
        let mut record = pending.record;
        record.outcome = Outcome::UpstreamInvalid;
        record.error_code = Some(codes::UPSTREAM_REJECTED);
        record.reason = format!("{}; response refused: {reason}", record.reason);
        self.finish_record(env, record);
        err
    }

    pub(super) fn upstream_error(&self, id: Option<&Value>, reason: &str) -> Value {
        mcp::error_response(
            id,
            codes::UPSTREAM_REJECTED,
            "Upstream response rejected by Portcullis",
            Some(json!({"reason": reason, "requestId": self.request_id})),
        )
    }

    /// Records a message from the upstream that was refused without an open
    /// request to answer (it correlates with none, or is not JSON-RPC).
    pub(super) fn refuse_server_message(
        &mut self,
        env: &mut dyn Env,
        msg: Option<&Message>,
        reason: &str,
    ) {
        let index = self.next_stream_index();
        let verdict = Verdict::deny(DenyCause::Upstream, reason.to_owned(), None);
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
    pub(super) fn inspect_message(&mut self, env: &mut dyn Env, value: &mut Value) -> Fate {
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
        let engine = Arc::clone(&self.engine);
        let review = match self.server.and_then(|i| engine.bundle.servers.get(i)) {
            Some(server) => {
                review_answer(env, &engine.tools, server, method.as_deref(), paged, value)
            }
            None => Review::default(),
        };
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
        // MCP 2026-07-28 caching: `cacheScope: "public"` lets a cache serve
        // one result to every caller. A result this filter changed for its
        // caller (filtered, redacted), or one an identity governs, is this
        // caller's alone.
        let per_caller = removed > 0 || review.changed || self.identity.is_some();
        if per_caller && privatise_cache_scope(value) {
            changed = true;
        }
        if let Some(refusal) = self.bind_created_task(env, &mut record, value) {
            return Fate::Replace(vec![refusal]);
        }
        self.finish_record(env, record);
        changed |= removed > 0 || review.changed;
        if changed {
            Fate::Changed
        } else {
            Fate::Unchanged
        }
    }

    /// Binds the task a `CreateTaskResult` creates to the caller
    /// ([`crate::tasks`]). A task that cannot be bound (no shared store, or
    /// the server handed out a handle bound to someone else) could never be
    /// used through this proxy: the answer is withheld with the reason.
    fn bind_created_task(
        &mut self,
        env: &mut dyn Env,
        record: &mut AuditRecord,
        value: &Value,
    ) -> Option<Value> {
        let (task_id, ttl) = crate::tasks::created(value)?;
        let server = self.server()?.name.clone();
        record.task = Some(short_hash(task_id.as_bytes()));
        let principal = crate::tasks::principal(self.identity.as_deref());
        if crate::tasks::bind(
            env,
            &server,
            task_id,
            &principal,
            record.tool.as_deref(),
            ttl,
        ) {
            return None;
        }
        let reason = "the task this answer creates cannot be bound to the caller (no shared store, or its handle belongs to another principal)";
        let id = value.get("id").cloned();
        Some(self.withhold(env, record.clone(), id.as_ref(), reason))
    }

    /// A request or notification from the server (progress, log messages,
    /// sampling and elicitation requests): what it asks the client to show
    /// is screened like an answer; refused, it is not delivered.
    pub(super) fn inspect_server_message(
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
    pub(super) fn withhold(
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

    /// The key this exchange's session files open requests under, for a GET
    /// stream of the same session to find their answers: the
    /// `Mcp-Session-Id`, the legacy transport's `session_id`/`sessionId`
    /// query parameter, or what a GET stream's `endpoint` event named.
    pub(super) fn stream_key(&self) -> Option<String> {
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
    pub(super) fn register_for_stream(&mut self, env: &mut dyn Env, open: &[Pending]) {
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
    pub(super) fn take_registered(
        &mut self,
        env: &mut dyn Env,
        id: &Value,
    ) -> Option<(Value, String, bool)> {
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
    pub(super) fn update_stream_table(
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

    pub(super) fn next_stream_index(&mut self) -> u32 {
        let i = self.stream_index;
        self.stream_index = self.stream_index.saturating_add(1);
        1000u32.saturating_add(i)
    }

    /// Removes list entries the caller may not use. Returns how many.
    pub(super) fn filter_list_result(&self, method: Option<&str>, value: &mut Value) -> u32 {
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
    pub(super) fn fail_pending(&mut self, env: &mut dyn Env, reason: &str) {
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

    pub(super) fn complete_accepted(&mut self, env: &mut dyn Env) {
        for mut record in std::mem::take(&mut self.accepted) {
            record.outcome = Outcome::Accepted;
            self.finish_record(env, record);
        }
    }

    pub(super) fn complete_all(&mut self, env: &mut dyn Env, outcome: Outcome) {
        self.complete_accepted(env);
        for p in std::mem::take(&mut self.pending) {
            let mut record = p.record;
            record.outcome = outcome;
            self.finish_record(env, record);
        }
    }
}

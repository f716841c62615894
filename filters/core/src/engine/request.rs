//! Phases 1 and 2: the request. Its headers are checked (the filter's own
//! headers stripped, the target routed, methods, encodings and repeated
//! headers refused) and its body is parsed strictly, classified and framed,
//! then handed to [`super::decide`].

use super::*;

impl Exchange {
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
                return RequestHeadersAction::Reply(self.refuse_request(
                    DenyCause::Ambiguous,
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
                    DenyCause::UnknownServer,
                    None,
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
            let authorization: Vec<&str> = self
                .head
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.as_str())
                .collect();
            let mut cache = engine.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            let authenticated = sid.authenticate_request(
                &engine.bundle.providers,
                &*env,
                &authorization,
                &self.head.path,
                env.now_nanos() / 1_000_000_000,
                &mut cache,
            );
            drop(cache);
            match authenticated {
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
                let mut reply = self.refuse_request(DenyCause::MethodNotAllowed, reason);
                reply
                    .headers
                    .push(("allow".into(), "GET, POST, DELETE".into()));
                RequestHeadersAction::Reply(reply)
            }
        }
    }

    /// Whether the bundle lets request headers go on before the body is
    /// decided (`Settings.spec.requestHeaders: forward`).
    pub fn forwards_headers_early(&self) -> bool {
        self.bundle().settings.request_headers == crate::bundle::RequestHeaders::Forward
    }

    /// `requestHeaders: forward`, for a request whose body follows: the
    /// edits the headers take before they go on, ahead of the body's
    /// decision, or the refusal of a request that cannot be governed so.
    ///
    /// What needs the body (the decision's `x-mcp-decision`, `x-mcp-rules`,
    /// `x-mcp-shadow-decision` and `x-mcp-rate-limit`) is not sent; what the
    /// headers show is: the identity's headers and token edits, and the
    /// calls `Mcp-Method` and `Mcp-Name` announce, which the body must then
    /// match ([`Self::check_announced`]). `content-length` goes, so the body
    /// can still be rewritten (redacted arguments).
    pub fn forward_headers(&mut self, env: &mut dyn Env) -> Result<HeaderEdits, LocalReply> {
        let mut edits = HeaderEdits::default();
        match self.route {
            Route::Post => {}
            // A server acts on these from their headers alone (a GET opens
            // the stream, a DELETE ends the session), so a body the filter
            // would refuse must not follow headers already gone.
            Route::Stream | Route::Other => {
                let reason = format!(
                    "a {} request on an MCP route carries no body, and its headers cannot wait for one (Settings.spec.requestHeaders: forward)",
                    truncate(&self.head.method, 16)
                );
                return Err(self.refuse_request(DenyCause::Ambiguous, reason));
            }
            Route::Shadow | Route::Unmatched => return Ok(edits),
        }
        let method = self
            .head
            .header("mcp-method")
            .map(|m| truncate(m, 128).to_owned());
        let name = self
            .head
            .header("mcp-name")
            .map(|n| truncate(n, 256).to_owned());
        let announced: Vec<(String, Option<String>)> = match method {
            Some(m) => {
                let tool = (m == "tools/call").then_some(name).flatten();
                vec![(m, tool)]
            }
            None => Vec::new(),
        };
        edits.remove.push("content-length".into());
        let refs: Vec<(&str, Option<&str>)> = announced
            .iter()
            .map(|(m, t)| (m.as_str(), t.as_deref()))
            .collect();
        // A token is minted only for a call the client's own token covers:
        // one it does not is refused once its body shows, so the upstream
        // gets these headers with no token at all, and never the body.
        let covered = match (
            self.server().and_then(|s| s.identity.as_ref()),
            self.identity.as_ref(),
        ) {
            (Some(sid), Some(identity)) => refs
                .iter()
                .all(|(m, t)| sid.authorize(identity, m, *t).is_ok()),
            _ => true,
        };
        if covered {
            self.upstream_token_edits(env, &refs, &mut edits);
        } else if let Some(identity) = self.identity.clone() {
            for (name, value) in identity.audit_headers() {
                edits.set.push((name.to_owned(), value));
            }
            edits.remove.push("authorization".into());
            self.upstream_token = Some("stripped");
        }
        let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
        edits.set.extend([
            (headers::SERVER.to_owned(), server),
            (
                headers::BUNDLE_VERSION.to_owned(),
                self.engine.version().to_owned(),
            ),
            (headers::REQUEST_ID.to_owned(), self.request_id.clone()),
        ]);
        if let Some((m, tool)) = announced.first() {
            edits.set.push((headers::METHOD.to_owned(), m.clone()));
            if let Some(t) = tool {
                edits.set.push((headers::TOOL.to_owned(), t.clone()));
            }
        }
        self.early = Some(announced);
        Ok(edits)
    }

    /// Under `requestHeaders: forward`, once the body is read: the calls it
    /// makes must be the ones the forwarded headers announced (their
    /// `x-mcp-method` and `x-mcp-tool` already went upstream), and a token
    /// minted then must carry exactly the scopes these calls need. Either
    /// differing is refused, never forwarded under the wrong headers.
    pub(super) fn check_announced(&self, envelope: &Envelope) -> Result<(), mcp::Invalid> {
        let Some(announced) = &self.early else {
            return Ok(());
        };
        let calls: Vec<(&str, Option<&str>)> = envelope
            .messages
            .iter()
            .filter_map(|m| {
                let tool = match &m.target {
                    Target::Tool(t) => Some(t.as_str()),
                    _ => None,
                };
                m.method.as_deref().map(|method| (method, tool))
            })
            .collect();
        let early: Vec<(&str, Option<&str>)> = announced
            .iter()
            .map(|(m, t)| (m.as_str(), t.as_deref()))
            .collect();
        let mismatch = |reason: String| mcp::Invalid {
            code: codes::HEADER_MISMATCH,
            reason,
        };
        if !early.is_empty() && early != calls {
            return Err(mismatch(format!(
                "the Mcp-Method and Mcp-Name headers, already forwarded (Settings.spec.requestHeaders: forward), announce {} but the body makes {}",
                describe_calls(&early),
                describe_calls(&calls)
            )));
        }
        if let Some(sid) = self.server().and_then(|s| s.identity.as_ref())
            && sid.mints()
            && sid.minted_scopes(&early) != sid.minted_scopes(&calls)
        {
            return Err(mismatch(format!(
                "the token minted for the upstream went with the headers (Settings.spec.requestHeaders: forward), before the body showed {}; send Mcp-Method and Mcp-Name headers naming the call, or set requestHeaders: hold",
                describe_calls(&calls)
            )));
        }
        Ok(())
    }

    /// Headers that two readers could take differently: a repeated header
    /// the filter decides on (the filter reads one value, a server may read
    /// another, or both joined), and method overrides (a server that honours
    /// `X-HTTP-Method-Override` runs a method the filter never saw).
    pub(super) fn refuse_ambiguous_head(&mut self) -> Option<LocalReply> {
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
        why.map(|reason| self.refuse_request(DenyCause::Ambiguous, reason))
    }

    /// An MCP POST's body must be JSON every server reads alike: the
    /// `application/json` media type with no charset but UTF-8 (a server that
    /// decodes by charset would read other bytes than the filter), and not
    /// compressed.
    pub(super) fn refuse_request_encoding(&mut self) -> Option<LocalReply> {
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
            return Some(self.refuse_request(DenyCause::MediaType, reason));
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
            return Some(self.refuse_request(DenyCause::MediaType, reason));
        }
        None
    }

    /// The RFC 9728 document for `path`, if it is a metadata path of a
    /// server with identity settings. The bare `/.well-known/...` path
    /// answers only when one server could be meant.
    pub(super) fn metadata_document(&self, path: &str) -> Option<String> {
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

    /// 401 (or 400) with the challenge that points at the metadata, and a
    /// record: the body was never read, so the record is of the request.
    pub(super) fn refuse_unauthenticated(
        &mut self,
        env: &mut dyn Env,
        e: &IdentityError,
    ) -> LocalReply {
        env.count(metrics::AUTH_FAILED, 1);
        let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
        let challenge = self
            .server()
            .and_then(|s| s.identity.as_ref())
            .map(|sid| sid.challenge(e))
            .unwrap_or_default();
        let reason = format!("{}; the request was not read", e.description());
        let cause = DenyCause::Unauthenticated(e.clone());
        let shape = cause.shape();
        let mut record = self.unread_record(reason.clone(), shape.code, shape.status);
        record.auth_error = Some(e.code());
        record.decision = Decision::Deny;
        record.outcome = shape.outcome;
        record.rule = Some(format!("McpServer/{server}#identity"));
        self.complete(record);
        let mut reply = self.reply(
            cause,
            None,
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
    pub(super) fn upstream_token_edits(
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
        // Under `requestHeaders: forward` the headers already went with the
        // token edits (Self::forward_headers).
        if self.early.is_some() {
            return;
        }
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

    pub(super) fn too_large(&mut self, size: u64) -> LocalReply {
        let limit = self.bundle().settings.max_request_bytes;
        let reason = format!(
            "request body of {size} bytes exceeds the {limit}-byte limit (Settings.spec.maxRequestBytes)"
        );
        self.refuse_request(DenyCause::TooLarge, reason)
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
                return RequestBodyAction::Reply(
                    self.refuse_request(DenyCause::Malformed(codes::PARSE_ERROR), e.to_string()),
                );
            }
        };
        let envelope = match mcp::classify(&value) {
            Ok(e) => e,
            Err(inv) => {
                let cause = DenyCause::Malformed(inv.code);
                let shape = cause.shape();
                self.record_invalid(inv.reason.clone(), shape.code, shape.status);
                let id = value.get("id").filter(|v| v.is_string() || v.is_number());
                return RequestBodyAction::Reply(self.reply(cause, id, inv.reason, None));
            }
        };
        if let Err(inv) = mcp::check_revisions(self.head.header("mcp-protocol-version"), &envelope)
            .and_then(|()| mcp::check_unique_ids(&envelope))
        {
            return RequestBodyAction::Reply(self.refuse_framing(&envelope, inv));
        }
        let revision =
            mcp::effective_revision(self.head.header("mcp-protocol-version"), &envelope, &value);
        self.revision = Some(revision.clone());
        self.client = envelope.messages.iter().find_map(|m| m.client.clone());
        self.note_url_mode_offer(&value);
        let routing = RoutingHeaders {
            protocol_version: self.head.header("mcp-protocol-version"),
            method: self.head.header("mcp-method"),
            name: self.head.header("mcp-name"),
        };
        if let Err(inv) = mcp::check_framing(&revision, &envelope, routing) {
            return RequestBodyAction::Reply(self.refuse_framing(&envelope, inv));
        }
        if let Err(inv) = self.check_announced(&envelope) {
            return RequestBodyAction::Reply(self.refuse_framing(&envelope, inv));
        }
        let mut value = value;
        self.decide(env, envelope, &mut value)
    }

    /// A GET, DELETE, HEAD or OPTIONS on a governed route, once its body (if
    /// any) is complete: forwarded with the identity edits when it has none,
    /// refused when it has one (a server could act on bytes no MCP message
    /// frames, and the filter would not have read them).
    pub(super) fn bodiless(
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
            return RequestBodyAction::Reply(self.refuse_request(DenyCause::Ambiguous, reason));
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
    pub(super) fn shadow_body(
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
        let methods = match crate::registry::shadow_mcp(body) {
            Some(m) => m,
            None => {
                self.route = Route::Unmatched;
                return RequestBodyAction::Forward(HeaderEdits::default());
            }
        };
        env.count(metrics::SHADOW_MCP, 1);
        let block = self.bundle().settings.shadow_mcp == crate::bundle::ShadowMcp::Block;
        let shape = DenyCause::ShadowMcp.shape();
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
                record.outcome = shape.outcome;
                record.http_status = Some(shape.status);
                record.error_code = Some(shape.code);
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
                DenyCause::ShadowMcp,
                None,
                "no McpServer in the bundle matches this route, and shadow MCP is refused (Settings.spec.shadowMcp)".into(),
                Some("Settings#shadowMcp".into()),
            );
            return RequestBodyAction::Reply(reply);
        }
        RequestBodyAction::Forward(HeaderEdits::default())
    }
}

/// `tools/call add, ping`: the calls of a request, for an error.
fn describe_calls(calls: &[(&str, Option<&str>)]) -> String {
    if calls.is_empty() {
        return "no call".into();
    }
    calls
        .iter()
        .map(|(m, t)| match t {
            Some(t) => format!("{} {}", truncate(m, 64), truncate(t, 64)),
            None => truncate(m, 64).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

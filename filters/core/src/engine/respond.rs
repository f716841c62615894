//! Where errors become responses, once: a request is forwarded with its
//! audit headers, or refused with a reply whose status, JSON-RPC code and
//! title come from its [`DenyCause`] ([`DenyCause::shape`]); and every
//! message becomes one audit record.

use super::*;
use serde_json::Map;

impl Exchange {
    /// Forwards a request every message of which was allowed: the open
    /// requests wait for their answers (records complete then), and the
    /// upstream gets the audit headers and the identity's token edits.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        env: &mut dyn Env,
        envelope: &Envelope,
        decisions: Vec<Verdict>,
        mut findings: Vec<Option<ContentFindings>>,
        value: &Value,
        rewritten: bool,
        global_limits: Vec<String>,
    ) -> RequestBodyAction {
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
                record.tool_sha256 = self
                    .server()
                    .and_then(|s| self.engine.tools.last_seen_hash(s, t));
            }
            match (msg.kind, &msg.id) {
                (Kind::Request, Some(id)) => {
                    let element = if envelope.batch {
                        value.get(i)
                    } else {
                        Some(value)
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

    /// Refuses a body with at least one denied message. A batch is all or
    /// nothing: every request in it gets an error, the denied ones with their
    /// own reason, so no part of a batch that contained a refused call runs.
    pub(super) fn refuse(
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
        // The reply's status is its strongest cause's: too little scope is
        // answered as OAuth says (403 and a challenge naming the scopes), so
        // a client can step up its authorization; a limit as HTTP says (429
        // and Retry-After); everything else is a JSON-RPC error in a 200.
        let deciding = decisions
            .iter()
            .filter_map(|d| d.cause.as_ref())
            .max_by_key(|c| match c.shape().status {
                403 => 2,
                429 => 1,
                _ => 0,
            });
        let http_status = deciding.map_or(200, |c| c.shape().status);
        let scope_error = deciding.and_then(|c| match c {
            DenyCause::Scope(e) => Some(e.clone()),
            _ => None,
        });
        let retry_after = decisions
            .iter()
            .filter_map(|d| d.limit.as_ref().filter(|l| l.enforced))
            .map(|l| l.retry_after)
            .max();
        for (i, (msg, verdict)) in envelope.messages.iter().zip(decisions).enumerate() {
            let verdict = if verdict.decision == Decision::Deny {
                verdict.clone()
            } else {
                Verdict::deny(
                    DenyCause::Batch,
                    format!(
                        "batch refused because element {first_denied} was denied: {denied_reason}"
                    ),
                    decisions.get(first_denied).and_then(|d| d.rule.clone()),
                )
            };
            let shape = verdict.cause.as_ref().unwrap_or(&DenyCause::Batch).shape();
            let mut record = self.record_for(i as u32, Direction::Client, msg, &verdict);
            record.outcome = shape.outcome;
            record.http_status = Some(http_status);
            record.error_code = Some(shape.code);
            record.content = findings.get(i).cloned().flatten();
            self.complete(record);
            if msg.kind == Kind::Request {
                let mut data = json!({
                    "reason": verdict.reason,
                    "rule": verdict.rule,
                    "requestId": self.request_id,
                });
                if let Some(obj) = data.as_object_mut() {
                    if let Some(e) = verdict.auth() {
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
                responses.push(mcp::error_response(
                    msg.id.as_ref(),
                    shape.code,
                    shape.title,
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
            details: match deciding {
                Some(DenyCause::Scope(_)) => "portcullis_insufficient_scope",
                Some(DenyCause::Limit) => "portcullis_limited",
                _ => "portcullis_denied",
            }
            .into(),
        }
    }

    /// `data.approval` of a refusal: what to approve, and where.
    pub(super) fn approval_data(&self, a: &ApprovalState) -> Value {
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

    pub(super) fn denial_without_id(&self, reason: &str) -> Value {
        let shape = DenyCause::Batch.shape();
        mcp::error_response(
            None,
            shape.code,
            shape.title,
            Some(json!({"reason": reason, "requestId": self.request_id})),
        )
    }

    /// Refuses the request as a whole (no message of it is known yet), with
    /// its record.
    pub(super) fn refuse_request(&mut self, cause: DenyCause, reason: String) -> LocalReply {
        let shape = cause.shape();
        self.record_invalid(reason.clone(), shape.code, shape.status);
        self.reply(cause, None, reason, None)
    }

    /// Refuses a body whose messages break the framing rules of their
    /// revision, with a record of each message.
    pub(super) fn refuse_framing(&mut self, envelope: &Envelope, inv: mcp::Invalid) -> LocalReply {
        let first_id = envelope.messages.first().and_then(|m| m.id.clone());
        self.record_messages_invalid(envelope, &inv.reason, inv.code);
        let mut extra = Map::new();
        if inv.code == mcp::codes::UNSUPPORTED_PROTOCOL_VERSION {
            // 2026-07-28 schema, UnsupportedProtocolVersionError: `data`
            // names what the client may retry with and what it asked for.
            extra.insert(
                "supported".into(),
                Value::from(mcp::KNOWN_REVISIONS.to_vec()),
            );
            extra.insert(
                "requested".into(),
                Value::from(self.revision.clone().unwrap_or_default()),
            );
        }
        self.reply_with(
            DenyCause::Malformed(inv.code),
            first_id.as_ref(),
            inv.reason,
            None,
            extra,
        )
    }

    /// The reply for `cause`: its status, and a JSON-RPC error (answering
    /// `id`) carrying the reason, the filter's request id and the rule.
    pub(super) fn reply(
        &mut self,
        cause: DenyCause,
        id: Option<&Value>,
        reason: String,
        rule: Option<String>,
    ) -> LocalReply {
        self.reply_with(cause, id, reason, rule, Map::new())
    }

    /// [`Exchange::reply`] with more members in the error's `data`.
    pub(super) fn reply_with(
        &mut self,
        cause: DenyCause,
        id: Option<&Value>,
        reason: String,
        rule: Option<String>,
        extra: Map<String, Value>,
    ) -> LocalReply {
        let shape = cause.shape();
        self.replied_locally = true;
        let mut data = Map::new();
        data.insert("reason".into(), Value::from(reason));
        data.insert("requestId".into(), Value::from(self.request_id.clone()));
        if let Some(r) = rule {
            data.insert("rule".into(), Value::from(r));
        }
        data.extend(extra);
        let body = mcp::error_response(id, shape.code, shape.title, Some(Value::Object(data)));
        LocalReply {
            status: shape.status,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
            details: format!(
                "portcullis_{}",
                shape.title.to_ascii_lowercase().replace(' ', "_")
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
        let shape = DenyCause::Internal.shape();
        for p in std::mem::take(&mut self.pending) {
            let mut record = p.record;
            record.outcome = shape.outcome;
            record.decision = Decision::Deny;
            record.reason = reason.clone();
            self.finish_record(env, record);
        }
        if self.done.is_empty() {
            self.record_invalid(reason.clone(), shape.code, shape.status);
        }
        self.reply(DenyCause::Internal, None, reason, None)
    }

    pub(super) fn finish_record(&mut self, env: &mut dyn Env, mut record: AuditRecord) {
        let now = env.now_nanos();
        record.time = rfc3339(now);
        if record.http_status.is_none() && self.response_status != 0 {
            record.http_status = Some(self.response_status);
        }
        record.latency_ms = Some(now.saturating_sub(self.started_nanos) as f64 / 1e6);
        self.done.push(record);
    }

    pub(super) fn complete(&mut self, mut record: AuditRecord) {
        record.latency_ms = Some(0.0);
        self.done.push(record);
    }

    pub(super) fn record_for(
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
            Target::None | Target::Task(_) => (None, None, None),
        };
        let task = match &msg.target {
            Target::Task(t) => Some(short_hash(t.as_bytes())),
            _ => None,
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
            task,
            decision: verdict.decision,
            reason: verdict.reason.clone(),
            rule: verdict.rule.clone(),
            outcome: Outcome::NoResponse,
            auth_error: verdict.auth().map(IdentityError::code),
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
                approvers: if a.jti.is_some() {
                    self.approvers.clone()
                } else {
                    Vec::new()
                },
            }),
            ..self.base_record()
        }
    }

    /// The arguments as records keep them (`Settings.spec.auditArguments`):
    /// with every PII and secret finding redacted, whatever the content
    /// policy's actions, since a record must never hold them.
    pub(super) fn audit_arguments(&self, msg: &Message) -> Option<Value> {
        if self.bundle().settings.audit_arguments != crate::bundle::AuditArguments::Redacted {
            return None;
        }
        let mut args = msg.arguments.clone()?;
        let scanner = &self.engine.audit_scanner.as_ref()?;
        crate::content::redact_all(scanner, &mut args);
        Some(args)
    }

    /// The fields every record of this exchange shares.
    pub(super) fn base_record(&self) -> AuditRecord {
        let id = self.identity.as_deref();
        AuditRecord {
            server: self.server().map(|s| s.name.clone()),
            protocol_version: self.revision.clone(),
            client_name: self.client.as_ref().map(|c| c.name.clone()),
            client_version: self.client.as_ref().and_then(|c| c.version.clone()),
            session: self.session.clone(),
            subject: id.map(|i| i.subject.clone()),
            agent: id.and_then(|i| i.agent.clone()),
            tenant: id.and_then(|i| i.tenant.clone()),
            token_jti: id.and_then(|i| i.jti.clone()),
            upstream_token: self.upstream_token,
            source: self.source.clone(),
            warning: self.server().and_then(crate::registry::deprecation_warning),
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
    pub(super) fn unread_record(&self, reason: String, code: i64, status: u16) -> AuditRecord {
        AuditRecord {
            kind: "unread",
            reason,
            http_status: Some(status),
            error_code: Some(code),
            ..self.base_record()
        }
    }

    /// Records a body refused before it could be classified.
    pub(super) fn record_invalid(&mut self, reason: String, code: i64, status: u16) {
        let record = AuditRecord {
            reason,
            http_status: Some(status),
            error_code: Some(code),
            ..self.base_record()
        };
        self.complete(record);
    }

    /// Records each message of a body refused for its framing.
    pub(super) fn record_messages_invalid(&mut self, envelope: &Envelope, reason: &str, code: i64) {
        for (i, msg) in envelope.messages.iter().enumerate() {
            let cause = DenyCause::Malformed(code);
            let shape = cause.shape();
            let mut record = self.record_for(
                i as u32,
                Direction::Client,
                msg,
                &Verdict::deny(cause, reason.to_owned(), None),
            );
            record.outcome = shape.outcome;
            record.http_status = Some(shape.status);
            record.error_code = Some(shape.code);
            self.complete(record);
        }
    }
}

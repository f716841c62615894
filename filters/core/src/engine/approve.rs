//! Human approval over MCP 2026-07-28's multi round-trip requests
//! (`basic/patterns/mrtr`), with no client support beyond the standard.
//!
//! A `tools/call` a `requireApproval` rule holds, from a 2026-07-28 client
//! that declares URL-mode elicitation, when the bundle names an approval
//! service (`Settings.spec.approvals.service`):
//!
//! 1. **first attempt** (no `requestState`): the filter registers the
//!    pending call with the approval service (an outcall; refused if that
//!    fails), which answers with the request's id and a `requestState` it
//!    signed with a key the bundle lists. The filter answers the client
//!    itself with `resultType: "input_required"`: one URL-mode
//!    `elicitation/create` pointing at the request's page, and that state.
//! 2. **retry** (`requestState` echoed, `inputResponses` with the user's
//!    answer): the state is verified offline (signature, expiry, and that
//!    it was issued for this very call: subject, agent, server, tool,
//!    canonical arguments' hash, rule), then the service is asked for the
//!    decision. Approved: it hands back the `pat1.` grant the page minted;
//!    the grant is verified offline like any `x-mcp-approval` token (trust
//!    rests on its signature, not on the channel), the call is decided
//!    again with it, and its jti is spent once in shared data. Still
//!    pending: `input_required` again (mrtr: the server "either returns the
//!    final result or responds with another InputRequiredResult"). Denied,
//!    expired, declined by the user, or anything unverifiable: a JSON-RPC
//!    error (`-31099`) and a record.
//!
//! A 2025-11-25 client whose session declared URL-mode elicitation at
//! `initialize` gets that revision's way instead, the
//! `URLElicitationRequiredError` (`-32042`) naming the same page. Its retry
//! carries no state, so the filter asks the service to find the call's open
//! request by approval id and agent (`POST /approvals/v1/lookup`, which
//! files one when there is none): pending, the same error again; approved,
//! the grant, handed out once and then spent once here, as above.
//!
//! Every other revision, a client without URL elicitation, a batch, or a
//! request that carries `x-mcp-approval` keeps the `-31099` error flow.

use super::*;
use crate::outcall::{CallResult, Outcall};

/// The `inputRequests` key the filter uses (server-assigned, per mrtr).
pub const INPUT_KEY: &str = "portcullis_approval";
/// Where a 2026-07-28 request declares its client's capabilities.
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const DEFAULT_TIMEOUT_MS: u32 = 5000;
/// Largest answer read from the approval service.
const MAX_ANSWER: usize = 64 * 1024;
/// Slots of the table of 2025-11-25 sessions that declared URL-mode
/// elicitation (shared data, every worker). A fixed number, so a flood of
/// sessions costs no memory; a session whose slot another took falls back
/// to the `-31099` error flow, which still works.
const SESSION_SLOTS: u64 = 4096;

/// A round trip in flight: what the stream waits on, and what it needs to
/// finish the request afterwards.
#[derive(Debug)]
pub(super) struct Flow {
    call: u32,
    stage: Stage,
    envelope: Envelope,
    /// The body as received (before any redaction), decided again once a
    /// grant is in hand.
    value: Value,
    verdict: Verdict,
}

#[derive(Debug, Clone)]
enum Stage {
    /// Registering the pending call.
    Register,
    /// Asking for the decision on request `req`, whose state the client
    /// echoed.
    Decision { req: String, state: String },
    /// A 2025-11-25 call: finding its open request, or filing one.
    Lookup,
}

impl Exchange {
    /// Starts or continues a round trip for this request, if it is one the
    /// round trip applies to; `None` leaves the request to the error flow.
    pub(super) fn approval_round_trip(
        &mut self,
        env: &mut dyn Env,
        envelope: &Envelope,
        value: &Value,
        decisions: &[Verdict],
    ) -> Option<RequestBodyAction> {
        if self.replay || self.approval_resolved {
            return None;
        }
        let svc = self.bundle().settings.approvals.as_ref()?.service.clone()?;
        if envelope.batch || envelope.messages.len() != 1 {
            return None;
        }
        let msg = envelope.messages.first()?;
        let verdict = decisions.first()?;
        let a = verdict.approval.as_ref()?;
        if msg.kind != Kind::Request
            || msg.method.as_deref() != Some("tools/call")
            || verdict.decision != Decision::Deny
            || !matches!(verdict.cause, Some(DenyCause::ApprovalRequired))
            || a.jti.is_some()
            || a.error.is_some()
            || self.head.header(headers::APPROVAL).is_some()
        {
            return None;
        }
        let params = value.get("params");
        let url_mode = match self.revision.as_deref() {
            // mrtr: "Servers MUST NOT send an inputRequests that the client
            // has not declared support for in its capabilities."
            Some(mcp::STATELESS_REVISION) => params
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
                .and_then(|c| c.get("elicitation"))
                .is_some_and(declares_url_mode),
            // Elicitation: "Servers MUST NOT send elicitation requests with
            // modes that are not supported by the client"; the error carries
            // them, so only to a session that declared URL mode.
            Some(mcp::URL_ELICITATION_REVISION) => self.session_declared_url_mode(env),
            _ => false,
        };
        if !url_mode {
            return None;
        }
        let flow = |call, stage| Flow {
            call,
            stage,
            envelope: envelope.clone(),
            value: value.clone(),
            verdict: verdict.clone(),
        };
        let id = self.next_call_id();
        if self.revision.as_deref() == Some(mcp::URL_ELICITATION_REVISION) {
            let call = self.register_call(env, id, &svc, msg, a, "/approvals/v1/lookup");
            self.approval_flow = Some(Box::new(flow(id, Stage::Lookup)));
            return Some(RequestBodyAction::Call(call));
        }
        let state = match params.and_then(|p| p.get("requestState")) {
            None => {
                let call = self.register_call(env, id, &svc, msg, a, "/approvals/v1/requests");
                self.approval_flow = Some(Box::new(flow(id, Stage::Register)));
                return Some(RequestBodyAction::Call(call));
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Some(self.approval_refused(
                    flow(id, Stage::Register),
                    approval::ApprovalError::InvalidState,
                    "the requestState is not a string".into(),
                ));
            }
        };
        let keys = self.bundle().approval_keys.clone();
        let now = env.now_nanos() / 1_000_000_000;
        let checked =
            approval::verify_state(&state, &keys, &a.id, self.agent_or_dash().as_str(), now);
        let parsed = match checked {
            Ok(p) => p,
            Err(e) => {
                let error = match e {
                    approval::StateError::Expired => approval::ApprovalError::Expired,
                    _ => approval::ApprovalError::InvalidState,
                };
                return Some(self.approval_refused(
                    flow(id, Stage::Register),
                    error,
                    format!("{e}; start the call again without it"),
                ));
            }
        };
        // The user's answer to the elicitation: declining or cancelling it
        // ends the round trip (elicitation, "Response Actions").
        let action = params
            .and_then(|p| p.get("inputResponses"))
            .and_then(|r| r.get(INPUT_KEY))
            .and_then(|r| r.get("action"))
            .and_then(Value::as_str);
        if matches!(action, Some("decline" | "cancel")) {
            return Some(self.approval_refused(
                flow(id, Stage::Register),
                approval::ApprovalError::Declined,
                format!(
                    "the user answered the approval request with {:?}",
                    action.unwrap_or_default()
                ),
            ));
        }
        let call = Outcall::http(
            id,
            &svc.cluster,
            svc.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            "GET",
            svc.authority.as_deref().unwrap_or(&svc.cluster),
            &format!("/approvals/v1/requests/{}/decision", parsed.req),
            vec![("accept".into(), "application/json".into())],
            Vec::new(),
        );
        self.approval_flow = Some(Box::new(flow(
            id,
            Stage::Decision {
                req: parsed.req,
                state,
            },
        )));
        Some(RequestBodyAction::Call(call))
    }

    /// The stream ended while the round trip's outcall was out (the client
    /// went away, or the host reset the stream): nothing was forwarded, and
    /// the record says so.
    pub(super) fn approval_abandoned(&mut self) {
        let Some(flow) = self.approval_flow.take() else {
            return;
        };
        let Some(msg) = flow.envelope.messages.first() else {
            return;
        };
        let mut record = self.record_for(0, Direction::Client, msg, &flow.verdict);
        record.outcome = Outcome::NoResponse;
        record.reason = format!(
            "{}; the stream ended while the approval service was asked, and nothing was forwarded",
            flow.verdict.reason
        );
        self.complete(record);
    }

    /// The answer to the round trip's outcall.
    pub(super) fn approval_call_done(
        &mut self,
        env: &mut dyn Env,
        flow: Box<Flow>,
        id: u32,
        result: CallResult,
    ) -> RequestBodyAction {
        if flow.call != id {
            return RequestBodyAction::Reply(
                self.internal_error(env, "an outcall answer for another call"),
            );
        }
        let answer = result
            .http_ok()
            .and_then(|body| {
                if body.len() > MAX_ANSWER {
                    return Err("its answer is too large".into());
                }
                parse_strict(body).map_err(|e| format!("its answer is not JSON: {e}"))
            })
            .and_then(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err("its answer is not a JSON object".into()),
            });
        let answer = match answer {
            Ok(a) => a,
            Err(why) => {
                return self.approval_refused(
                    *flow,
                    approval::ApprovalError::ServiceUnavailable,
                    format!("the approval service could not be asked ({why}); the call is refused"),
                );
            }
        };
        let text = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
        match flow.stage.clone() {
            Stage::Register => {
                let (Some(req), Some(state)) = (text("request"), text("requestState")) else {
                    return self.approval_refused(
                        *flow,
                        approval::ApprovalError::ServiceUnavailable,
                        "the approval service's answer names no request and state".into(),
                    );
                };
                // The service's state must verify here, now: a service
                // whose key the bundle does not list would otherwise send
                // every client around a loop it cannot finish.
                let id_ok = flow.verdict.approval.as_ref().map(|a| a.id.clone());
                let keys = self.bundle().approval_keys.clone();
                let now = env.now_nanos() / 1_000_000_000;
                let agent = self.agent_or_dash();
                let verified = id_ok
                    .as_deref()
                    .map(|id| approval::verify_state(&state, &keys, id, &agent, now));
                match verified {
                    Some(Ok(p)) if p.req == req && is_request_id(&req) => {
                        self.input_required(*flow, &req, &state)
                    }
                    _ => self.approval_refused(
                        *flow,
                        approval::ApprovalError::ServiceUnavailable,
                        "the approval service's requestState does not verify against Settings.spec.approvals.keys".into(),
                    ),
                }
            }
            stage @ (Stage::Decision { .. } | Stage::Lookup) => match text("status").as_deref() {
                Some("pending") => match stage {
                    Stage::Decision { req, state } => self.input_required(*flow, &req, &state),
                    _ => match text("request").filter(|r| is_request_id(r)) {
                        Some(req) => self.url_elicitation_required(*flow, &req),
                        None => self.approval_refused(
                            *flow,
                            approval::ApprovalError::ServiceUnavailable,
                            "the approval service's answer names no request".into(),
                        ),
                    },
                },
                Some("approved") => {
                    let Some(token) = text("token") else {
                        return self.approval_refused(
                            *flow,
                            approval::ApprovalError::ServiceUnavailable,
                            "the approval service approved without a grant".into(),
                        );
                    };
                    self.approvers = answer
                        .get("approvers")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .take(8)
                                .map(|s| truncate(s, 128).to_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    // Decided again, with the grant as the approval: it is
                    // verified offline and spent once like any other.
                    self.approval_token = Some(token);
                    self.approval_resolved = true;
                    let Flow {
                        envelope,
                        mut value,
                        ..
                    } = *flow;
                    strip_round_trip(&mut value);
                    self.decide(env, envelope, &mut value)
                }
                Some("denied") => self.approval_refused(
                    *flow,
                    approval::ApprovalError::Denied,
                    "a person denied this call on the approval page".into(),
                ),
                Some("expired") => self.approval_refused(
                    *flow,
                    approval::ApprovalError::Expired,
                    "the approval request expired before anyone decided it".into(),
                ),
                _ => self.approval_refused(
                    *flow,
                    approval::ApprovalError::ServiceUnavailable,
                    "the approval service's answer has no known status".into(),
                ),
            },
        }
    }

    fn agent_or_dash(&self) -> String {
        self.identity
            .as_ref()
            .and_then(|i| i.agent.clone())
            .unwrap_or_else(|| "-".into())
    }

    /// The registration of a pending call: what the approval page shows.
    /// The arguments go with every PII and secret finding redacted.
    fn register_call(
        &self,
        env: &mut dyn Env,
        id: u32,
        svc: &crate::bundle::ApprovalService,
        msg: &Message,
        a: &ApprovalState,
        path: &str,
    ) -> Outcall {
        let mut args = msg
            .arguments
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()));
        match self.engine.audit_scanner.as_ref() {
            Some(scanner) => crate::content::redact_all(scanner, &mut args),
            // No scanner: nothing of the arguments leaves the filter.
            None => args = Value::String("(not shown: no PII scanner)".into()),
        }
        let identity = self.identity.as_deref();
        let body = json!({
            "approvalId": a.id,
            "agent": identity.and_then(|i| i.agent.clone()),
            "tenant": identity.and_then(|i| i.tenant.clone()),
            "arguments": args,
            "requestId": self.request_id,
            "bundleVersion": self.engine.version(),
            "time": rfc3339(env.now_nanos()),
            "client": self.client.as_ref().map(|c| json!({"name": c.name, "version": c.version})),
        });
        Outcall::http(
            id,
            &svc.cluster,
            svc.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            "POST",
            svc.authority.as_deref().unwrap_or(&svc.cluster),
            path,
            vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
            ],
            body.to_string().into_bytes(),
        )
    }

    /// The page of approval request `req`.
    fn page_url(&self, req: &str) -> String {
        self.bundle()
            .settings
            .approvals
            .as_ref()
            .and_then(|a| a.service.as_ref())
            .map(|s| format!("{}/{req}", s.page_url.trim_end_matches('/')))
            .unwrap_or_default()
    }

    /// What the person is asked, naming the held call's tool.
    fn elicitation_message(msg: &Message) -> String {
        let tool = match &msg.target {
            Target::Tool(t) => truncate(t, 128).to_owned(),
            _ => String::new(),
        };
        format!(
            "A person must approve this call to tool {tool:?} before it runs. Open the approval page; once it is approved, retry."
        )
    }

    /// The record of a call answered with a request to go to the page.
    fn record_sent_to_page(
        &mut self,
        flow: &Flow,
        msg: &Message,
        status: &'static str,
        error_code: Option<i64>,
        req: &str,
    ) {
        let mut record = self.record_for(0, Direction::Client, msg, &flow.verdict);
        record.outcome = Outcome::Denied;
        record.error_code = error_code;
        record.http_status = Some(200);
        record.reason = format!(
            "{}; answered {status}: approval request {req}",
            flow.verdict.reason
        );
        if let Some(note) = record.approval.as_mut() {
            note.status = status;
        }
        self.complete(record);
        self.replied_locally = true;
    }

    /// 2025-11-25's `URLElicitationRequiredError` (elicitation, "URL
    /// Elicitation Required Error"): one URL-mode elicitation, the request's
    /// page, its id as the `elicitationId`. HTTP 200, because both SDKs read
    /// a JSON-RPC error only from a successful response.
    fn url_elicitation_required(&mut self, flow: Flow, req: &str) -> RequestBodyAction {
        let page = self.page_url(req);
        let Some(msg) = flow.envelope.messages.first().cloned() else {
            return RequestBodyAction::Reply(self.refuse_request(
                DenyCause::Internal,
                "an approval round trip without its message".into(),
            ));
        };
        let body = json!({
            "jsonrpc": "2.0",
            "id": msg.id,
            "error": {
                "code": mcp::codes::URL_ELICITATION_REQUIRED,
                "message": "This call needs a person's approval.",
                "data": {
                    "elicitations": [{
                        "mode": "url",
                        "elicitationId": req,
                        "url": page,
                        "message": Self::elicitation_message(&msg),
                    }],
                    "requestId": self.request_id,
                }
            }
        });
        self.record_sent_to_page(
            &flow,
            &msg,
            "url_elicitation_required",
            Some(mcp::codes::URL_ELICITATION_REQUIRED),
            req,
        );
        RequestBodyAction::Reply(LocalReply {
            status: 200,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
            details: "portcullis_url_elicitation_required".into(),
        })
    }

    /// The `InputRequiredResult`: a URL-mode elicitation to the request's
    /// page, and the state to echo (mrtr, elicitation "URL Mode").
    fn input_required(&mut self, flow: Flow, req: &str, state: &str) -> RequestBodyAction {
        let page = self.page_url(req);
        let Some(msg) = flow.envelope.messages.first().cloned() else {
            return RequestBodyAction::Reply(self.refuse_request(
                DenyCause::Internal,
                "an approval round trip without its message".into(),
            ));
        };
        let body = json!({
            "jsonrpc": "2.0",
            "id": msg.id,
            "result": {
                "resultType": "input_required",
                "inputRequests": {
                    INPUT_KEY: {
                        "method": "elicitation/create",
                        "params": {
                            "mode": "url",
                            "message": Self::elicitation_message(&msg),
                            "url": page,
                        }
                    }
                },
                "requestState": state,
            }
        });
        self.record_sent_to_page(&flow, &msg, "input_required", None, req);
        RequestBodyAction::Reply(LocalReply {
            status: 200,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
            details: "portcullis_input_required".into(),
        })
    }

    /// Refuses the round trip's call with `error`, its reason, and a record.
    fn approval_refused(
        &mut self,
        flow: Flow,
        error: approval::ApprovalError,
        reason: String,
    ) -> RequestBodyAction {
        let mut verdict = flow.verdict;
        verdict.reason = reason;
        if let Some(a) = verdict.approval.as_mut() {
            a.error = Some(error);
        }
        let findings = vec![None; flow.envelope.messages.len()];
        RequestBodyAction::Reply(self.refuse(&flow.envelope, &[verdict], &findings, 0))
    }
}

impl Exchange {
    /// An `initialize` that declares URL-mode elicitation
    /// (`capabilities.elicitation.url`): its session is remembered once the
    /// server names it (`remember_url_mode_session`).
    pub(super) fn note_url_mode_offer(&mut self, value: &Value) {
        if self.bundle().settings.approvals.is_none() {
            return;
        }
        self.offers_url_mode = value.get("method").and_then(Value::as_str) == Some("initialize")
            && value
                .get("params")
                .and_then(|p| p.get("capabilities"))
                .and_then(|c| c.get("elicitation"))
                .is_some_and(declares_url_mode);
    }

    /// The answer to an `initialize` that offered URL mode names its
    /// session: remembered in the session table, keyed and stored by the
    /// session id's hash (never the id itself).
    pub(super) fn remember_url_mode_session(&mut self, env: &mut dyn Env, session: &str) {
        if !self.offers_url_mode {
            return;
        }
        let hash = short_hash(session.as_bytes());
        // A full table overwrites: that session falls back to the error flow.
        env.shared_set(&session_slot_key(&hash), hash.as_bytes());
    }

    /// Whether this request's session declared URL-mode elicitation.
    fn session_declared_url_mode(&self, env: &dyn Env) -> bool {
        let Some(hash) = self.session.as_deref() else {
            return false;
        };
        env.shared_get(&session_slot_key(hash))
            .is_some_and(|stored| stored == hash.as_bytes())
    }
}

/// `elicitation: {url: {}}` in a client's capabilities.
fn declares_url_mode(elicitation: &Value) -> bool {
    elicitation.get("url").is_some_and(Value::is_object)
}

/// The shared-data key of a session hash's slot.
fn session_slot_key(hash: &str) -> String {
    let slot = u64::from_str_radix(hash.get(..8).unwrap_or("0"), 16).unwrap_or(0) % SESSION_SLOTS;
    format!("portcullis.url-elicitation/{slot}")
}

/// Removes the filter's own round trip from a body before it goes upstream:
/// the `requestState` is the filter's (the upstream would reject it, or
/// worse, read it), and so is the answer under [`INPUT_KEY`]; answers to the
/// upstream's own input requests stay.
fn strip_round_trip(value: &mut Value) {
    let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) else {
        return;
    };
    params.remove("requestState");
    let now_empty = match params.get_mut("inputResponses") {
        Some(Value::Object(r)) => {
            r.remove(INPUT_KEY);
            r.is_empty()
        }
        _ => false,
    };
    if now_empty {
        params.remove("inputResponses");
    }
}

/// What a request id from the approval service may look like: it goes into
/// a URL path.
fn is_request_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

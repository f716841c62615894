//! The approval service and its page (docs/approvals.md): where a person
//! approves or denies a call a `requireApproval` rule held.
//!
//! Two sides, on the control plane's HTTP listener:
//! * **for filters** (`/approvals/v1/...`, JSON): a filter registers a call
//!   it answered with MCP 2026-07-28 `input_required`, and gets back a
//!   request id and a `requestState` signed with `--approval-key`; on the
//!   client's retry it asks for the decision. An approved request carries a
//!   `pat1.` grant signed with the same key, for exactly that call (the
//!   `apr1.` approval id), which the filter verifies offline and spends
//!   once: trust rests on the signature, not on this channel. Nothing here
//!   can approve anything; put it where only the mesh reaches it.
//! * **for people** (`/approvals`, HTML without JavaScript): the pending
//!   requests, one page per request (server, tool, arguments as the filter
//!   sent them, PII redacted; subject, agent, tenant, rule, time), and
//!   Approve / Deny. Approvers authenticate with a bearer token from an
//!   IdentityProvider of the request's bundle (audience: the page URL or
//!   one of the provider's audiences) and must hold a role the rule's
//!   `approvers.roles` names; `approvers.count` distinct people must approve
//!   (two-person approval); nobody approves their own call. Every decision
//!   is appended to the audit store with the approver's identity.

use crate::state::{State, now_ms};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use portcullis_core::bundle::Bundle;
use portcullis_core::identity::TokenCache;
use portcullis_core::policy::approval;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How long a registered request waits for a decision, by default.
pub const REQUEST_TTL_SECS: u64 = 900;
/// How long a grant is valid once minted (within the bundle's maxTtl).
const GRANT_TTL_SECS: u64 = 600;
const MAX_BODY: usize = 64 * 1024;
const MAX_PENDING: usize = 10_000;

/// A request's state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Pending,
    Approved { token: String },
    Denied { by: String },
}

/// One registered call.
#[derive(Debug, Clone)]
struct Pending {
    id: String,
    approval_id: String,
    binding: approval::Binding,
    agent: Option<String>,
    tenant: Option<String>,
    arguments: Value,
    request_id: String,
    bundle_version: String,
    client: Option<String>,
    created: u64,
    expires: u64,
    roles: Vec<String>,
    needed: u32,
    approvals: Vec<(String, u64)>,
    status: Status,
    /// Filed by a lookup (a 2025-11-25 client, whose retry carries no
    /// state): found again by approval id and agent.
    by_lookup: bool,
    /// A lookup already handed out its outcome (the grant, a denial, the
    /// expiry): the next identical call starts a new request.
    claimed: bool,
}

/// The approval service.
pub struct Approvals {
    key: SigningKey,
    requests: Mutex<BTreeMap<String, Pending>>,
    store: Option<Mutex<audit_store::Store>>,
    tokens: Mutex<TokenCache>,
    /// How long a registered request (and its requestState) lives.
    ttl: u64,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    reply(status, "application/json", v.to_string())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn rfc3339(secs: u64) -> String {
    portcullis_core::audit::rfc3339(secs.saturating_mul(1_000_000_000))
}

/// Who is deciding, from their verified token.
struct Approver {
    subject: String,
    issuer: String,
    roles: Vec<String>,
}

impl Approvals {
    pub fn new(key: SigningKey, store: Option<audit_store::Store>, ttl_secs: u64) -> Approvals {
        Approvals {
            ttl: ttl_secs.max(1),
            key,
            requests: Mutex::new(BTreeMap::new()),
            store: store.map(Mutex::new),
            tokens: Mutex::new(TokenCache::new(1024)),
        }
    }

    /// Whether `path` is this service's.
    pub fn owns(path: &str) -> bool {
        path == "/approvals" || path.starts_with("/approvals/")
    }

    pub async fn handle(&self, req: Request<Incoming>, state: &State) -> Reply {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let headers = req.headers().clone();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return reply(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "too large\n");
            }
        };
        self.expire();
        let rest = path.trim_start_matches("/approvals");
        match (method.as_str(), rest) {
            ("POST", "/v1/requests") => self.register(&body, state),
            ("POST", "/v1/lookup") => self.lookup(&body, state),
            ("GET", r) if r.starts_with("/v1/requests/") && r.ends_with("/decision") => {
                let id = r
                    .trim_start_matches("/v1/requests/")
                    .trim_end_matches("/decision");
                self.decision(id)
            }
            ("GET", "" | "/") => match self.authenticate(&headers, state, None) {
                Ok(who) => reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    self.list_html(&who),
                ),
                Err(r) => *r,
            },
            ("GET", r) => {
                let id = r.trim_start_matches('/');
                let Some(p) = self.get(id) else {
                    return reply(StatusCode::NOT_FOUND, "text/plain", "no such request\n");
                };
                match self.authenticate(&headers, state, Some(&p)) {
                    Ok(who) => reply(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        self.page_html(&p, &who, None),
                    ),
                    Err(r) => *r,
                }
            }
            ("POST", r) => {
                let id = r.trim_start_matches('/').to_owned();
                // A page behind a cookie-to-bearer proxy (Envoy oauth2)
                // must not be driven by another site's form.
                if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
                    && site != "same-origin"
                    && site != "none"
                {
                    return reply(
                        StatusCode::FORBIDDEN,
                        "text/plain",
                        "a decision must come from the approval page itself\n",
                    );
                }
                let Some(p) = self.get(&id) else {
                    return reply(StatusCode::NOT_FOUND, "text/plain", "no such request\n");
                };
                let who = match self.authenticate(&headers, state, Some(&p)) {
                    Ok(w) => w,
                    Err(r) => return *r,
                };
                let form = String::from_utf8_lossy(&body);
                let decision = form
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("decision="))
                    .unwrap_or("");
                let note = self.decide(&id, &who, decision);
                match self.get(&id) {
                    Some(p) => reply(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        self.page_html(&p, &who, Some(&note)),
                    ),
                    None => reply(StatusCode::NOT_FOUND, "text/plain", "no such request\n"),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    fn get(&self, id: &str) -> Option<Pending> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops requests long past their expiry (kept a while to answer
    /// `expired`).
    fn expire(&self) {
        let now = now_secs();
        self.lock()
            .retain(|_, p| now < p.expires.saturating_add(self.ttl));
    }

    /// `POST /approvals/v1/requests`, from a filter: files the call and
    /// answers its id and the `requestState` the client will echo.
    fn register(&self, body: &[u8], state: &State) -> Reply {
        let p = match self.filed(body, state, false) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let state_token = approval::sign_state(
            &approval::RequestState {
                req: p.id.clone(),
                id: p.approval_id.clone(),
                agt: p.agent.clone().unwrap_or_else(|| "-".into()),
                iat: p.created,
                exp: p.expires,
            },
            &self.key,
        );
        let Ok(state_token) = state_token else {
            return json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "cannot sign"}),
            );
        };
        if let Err(r) = self.insert(p.clone()) {
            return *r;
        }
        json_reply(
            StatusCode::OK,
            &json!({"request": p.id, "requestState": state_token}),
        )
    }

    /// `POST /approvals/v1/lookup`, from a filter, for a client whose retry
    /// carries no state (MCP 2025-11-25's URL elicitation error): the call's
    /// open request, found by approval id and agent, or a new one. An
    /// outcome other than pending is handed out once; the next identical
    /// call starts a new request, so one approval covers one call.
    fn lookup(&self, body: &[u8], state: &State) -> Reply {
        match self.filed(body, state, true) {
            Ok(p) => self.claim_or_file(p),
            Err(r) => *r,
        }
    }

    /// The lookup proper: `p` is the call as filed now.
    fn claim_or_file(&self, p: Pending) -> Reply {
        let now = now_secs();
        let found = {
            let mut map = self.lock();
            let open = map.values_mut().find(|o| {
                o.by_lookup && !o.claimed && o.approval_id == p.approval_id && o.agent == p.agent
            });
            open.map(|o| {
                let answer = outcome(o, now);
                if answer.get("status").and_then(Value::as_str) != Some("pending") {
                    o.claimed = true;
                }
                (o.id.clone(), answer)
            })
        };
        let (id, mut answer) = match found {
            Some(f) => f,
            None => {
                let id = p.id.clone();
                if let Err(r) = self.insert(p) {
                    return *r;
                }
                (id, json!({"status": "pending"}))
            }
        };
        if let Some(m) = answer.as_object_mut() {
            m.insert("request".into(), Value::String(id));
        }
        json_reply(StatusCode::OK, &answer)
    }

    /// Stores a new request and records it.
    fn insert(&self, p: Pending) -> Result<(), Box<Reply>> {
        {
            let mut map = self.lock();
            if map.len() >= MAX_PENDING {
                return Err(Box::new(json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "too many pending approval requests"}),
                )));
            }
            map.insert(p.id.clone(), p.clone());
        }
        self.audit(&p, "requested", None, "an approval was requested");
        Ok(())
    }

    /// A filter's registration body, read into a new request (not stored).
    fn filed(&self, body: &[u8], state: &State, by_lookup: bool) -> Result<Pending, Box<Reply>> {
        let bad = |why: &str| {
            Err(Box::new(json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": why}),
            )))
        };
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return bad("the body is not JSON");
        };
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(approval_id) = text("approvalId") else {
            return bad("no approvalId");
        };
        let binding = match approval::parse_id(&approval_id) {
            Ok(b) => b,
            Err(e) => return bad(&e),
        };
        let bundle_version = text("bundleVersion").unwrap_or_default();
        // The rule's approvers, from the bundle the filter decided with.
        let Some((roles, needed)) = state.approvers(&bundle_version, &binding.rule) else {
            return Err(Box::new(json_reply(
                StatusCode::CONFLICT,
                &json!({"error": "the control plane does not serve this bundle version, or its rule names no approvers"}),
            )));
        };
        let mut rid = [0u8; 16];
        if getrandom::fill(&mut rid).is_err() {
            return Err(Box::new(json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "no randomness"}),
            )));
        }
        let id = hex::encode(rid);
        let now = now_secs();
        let agent = text("agent");
        let client = v.get("client").and_then(|c| {
            let name = c.get("name")?.as_str()?;
            let version = c.get("version").and_then(Value::as_str).unwrap_or("");
            Some(format!("{name} {version}").trim().to_owned())
        });
        let p = Pending {
            id: id.clone(),
            approval_id,
            binding,
            agent,
            tenant: text("tenant"),
            arguments: v.get("arguments").cloned().unwrap_or(Value::Null),
            request_id: text("requestId").unwrap_or_default(),
            bundle_version,
            client,
            created: now,
            expires: now + self.ttl,
            roles,
            needed,
            approvals: Vec::new(),
            status: Status::Pending,
            by_lookup,
            claimed: false,
        };
        Ok(p)
    }

    /// `GET /approvals/v1/requests/{id}/decision`, from a filter.
    fn decision(&self, id: &str) -> Reply {
        let Some(p) = self.get(id) else {
            return json_reply(StatusCode::NOT_FOUND, &json!({"error": "no such request"}));
        };
        json_reply(StatusCode::OK, &outcome(&p, now_secs()))
    }

    /// The approver, from `Authorization: Bearer`, verified against the
    /// IdentityProviders of the request's bundle (or of any served bundle,
    /// for the list).
    fn authenticate(
        &self,
        headers: &http::HeaderMap,
        state: &State,
        p: Option<&Pending>,
    ) -> Result<Approver, Box<Reply>> {
        let unauthorized = |why: &str| {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/html; charset=utf-8",
                page(
                    "Sign in required",
                    &format!(
                        "<section class=card><h2>Sign in required</h2><p>{}</p><p class=muted>The approval page takes a bearer token from an IdentityProvider the bundle trusts; in production it sits behind Envoy's oauth2 filter, which signs you in.</p></section>",
                        esc(why)
                    ),
                ),
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"portcullis-approvals\""),
            );
            r
        };
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(Box::new(unauthorized("No bearer token was sent.")));
        };
        let bundles = match p {
            Some(p) => state.bundle(&p.bundle_version).into_iter().collect(),
            None => state.bundles(),
        };
        let mut cache = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        for b in bundles {
            let Some(resource) = b
                .settings
                .approvals
                .as_ref()
                .and_then(|a| a.service.as_ref())
                .map(|s| s.page_url.clone())
            else {
                continue;
            };
            if let Ok(id) =
                b.providers
                    .authenticate(token.trim(), &resource, &[], now_secs(), &mut cache)
            {
                return Ok(Approver {
                    subject: id.subject.clone(),
                    issuer: id.issuer.clone(),
                    roles: id.roles.clone(),
                });
            }
        }
        Err(Box::new(unauthorized(
            "The bearer token does not verify against any IdentityProvider of the bundle (issuer, signature, audience, expiry).",
        )))
    }

    /// Records `who`'s decision on request `id`; the note to show.
    fn decide(&self, id: &str, who: &Approver, decision: &str) -> String {
        let now = now_secs();
        let mut map = self.lock();
        let Some(p) = map.get_mut(id) else {
            return "No such request.".into();
        };
        if p.status != Status::Pending {
            return "This request was already decided.".into();
        }
        if now >= p.expires {
            return "This request expired; the caller must start again.".into();
        }
        if !who.roles.iter().any(|r| p.roles.contains(r)) {
            return format!(
                "You may not decide this request: the rule {} asks for one of the roles {}.",
                p.binding.rule,
                p.roles.join(", ")
            );
        }
        if who.subject == p.binding.sub {
            return "Nobody approves their own call.".into();
        }
        let snapshot;
        let note;
        match decision {
            "approve" => {
                if p.approvals.iter().any(|(s, _)| s == &who.subject) {
                    return "You already approved this request; another person must too.".into();
                }
                p.approvals.push((who.subject.clone(), now));
                if p.approvals.len() as u32 >= p.needed {
                    let mut jti = [0u8; 16];
                    if getrandom::fill(&mut jti).is_err() {
                        return "No randomness to mint the grant; try again.".into();
                    }
                    match approval::mint(&p.approval_id, &self.key, now, GRANT_TTL_SECS, &jti) {
                        Ok(token) => p.status = Status::Approved { token },
                        Err(e) => return format!("Cannot mint the grant: {e}"),
                    }
                    note = "Approved. The caller's retry will run this call once.".to_owned();
                } else {
                    note = format!(
                        "Your approval is recorded; {} more person(s) must approve.",
                        p.needed as usize - p.approvals.len()
                    );
                }
                snapshot = p.clone();
                drop(map);
                self.audit(&snapshot, "approve", Some(who), &note);
            }
            "deny" => {
                p.status = Status::Denied {
                    by: who.subject.clone(),
                };
                note = "Denied. The caller's retry will be refused.".to_owned();
                snapshot = p.clone();
                drop(map);
                self.audit(&snapshot, "deny", Some(who), &note);
            }
            _ => return "Choose Approve or Deny.".into(),
        }
        note
    }

    /// Appends a record of the request to the audit store.
    fn audit(&self, p: &Pending, decision: &str, who: Option<&Approver>, reason: &str) {
        let Some(store) = &self.store else {
            return;
        };
        let record = json!({
            "schema": "portcullis.audit/v1",
            "time": rfc3339(now_secs()),
            "kind": "approval",
            "decision": decision,
            "reason": reason,
            "request_id": p.request_id,
            "approval_request": p.id,
            "approval_id": p.approval_id,
            "subject": p.binding.sub,
            "agent": p.agent,
            "tenant": p.tenant,
            "server": p.binding.srv,
            "gen_ai.tool.name": p.binding.tool,
            "arguments_sha256": p.binding.args,
            "rule": p.binding.rule,
            "bundle_version": p.bundle_version,
            "approver": who.map(|w| json!({"subject": w.subject, "issuer": w.issuer, "roles": w.roles})),
            "approvals": p.approvals.iter().map(|(s, t)| json!({"subject": s, "time": rfc3339(*t)})).collect::<Vec<_>>(),
            "needed": p.needed,
        });
        let mut s = store.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = s.append(&record) {
            tracing::error!(error = %e, "cannot append an approval record to the audit store");
        }
    }

    fn list_html(&self, who: &Approver) -> String {
        let now = now_secs();
        let map = self.lock();
        let mut pending: Vec<&Pending> = map
            .values()
            .filter(|p| p.status == Status::Pending && now < p.expires)
            .collect();
        pending.sort_by_key(|p| std::cmp::Reverse(p.created));
        let mut decided: Vec<&Pending> = map
            .values()
            .filter(|p| p.status != Status::Pending)
            .collect();
        decided.sort_by_key(|p| std::cmp::Reverse(p.created));
        let row = |p: &Pending| {
            let (label, class) = status_label(p, now);
            format!(
                "<tr><td><a href=\"/approvals/{id}\">{tool}</a></td><td>{srv}</td><td>{sub}</td><td>{agent}</td><td>{tenant}</td><td><code>{rule}</code></td><td>{time}</td><td><span class=\"pill {class}\">{label}</span></td></tr>",
                id = esc(&p.id),
                tool = esc(&p.binding.tool),
                srv = esc(&p.binding.srv),
                sub = esc(&p.binding.sub),
                agent = esc(p.agent.as_deref().unwrap_or("—")),
                tenant = esc(p.tenant.as_deref().unwrap_or("—")),
                rule = esc(&p.binding.rule),
                time = esc(&rfc3339(p.created)),
            )
        };
        let table = |rows: &[&Pending], empty: &str| {
            if rows.is_empty() {
                return format!("<p class=muted>{empty}</p>");
            }
            let body: String = rows.iter().map(|p| row(p)).collect();
            format!(
                "<table><thead><tr><th>Tool</th><th>Server</th><th>Subject</th><th>Agent</th><th>Tenant</th><th>Rule</th><th>Requested</th><th>Status</th></tr></thead><tbody>{body}</tbody></table>"
            )
        };
        let body = format!(
            "{signed}<section class=card><h2>Waiting for a decision <span class=count>{n}</span></h2>{pending}</section><section class=card><h2>Decided</h2>{decided}</section>",
            signed = signed_in(who),
            n = pending.len(),
            pending = table(&pending, "Nothing is waiting for approval."),
            decided = table(&decided, "No decisions yet."),
        );
        page("Approvals", &body)
    }

    fn page_html(&self, p: &Pending, who: &Approver, note: Option<&str>) -> String {
        let now = now_secs();
        let (label, class) = status_label(p, now);
        let args = serde_json::to_string_pretty(&p.arguments).unwrap_or_default();
        let may = who.roles.iter().any(|r| p.roles.contains(r));
        let actions = if p.status == Status::Pending && now < p.expires {
            if may {
                format!(
                    "<form method=post action=\"/approvals/{id}\" class=actions><button name=decision value=approve class=approve>Approve</button><button name=decision value=deny class=deny>Deny</button></form>",
                    id = esc(&p.id)
                )
            } else {
                format!(
                    "<p class=warn>You may not decide this request: it needs one of the roles <b>{}</b>.</p>",
                    esc(&p.roles.join(", "))
                )
            }
        } else {
            String::new()
        };
        let approvals: String = if p.approvals.is_empty() {
            "none yet".into()
        } else {
            p.approvals
                .iter()
                .map(|(s, t)| format!("{} ({})", esc(s), esc(&rfc3339(*t))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let note = note
            .map(|n| format!("<p class=note>{}</p>", esc(n)))
            .unwrap_or_default();
        let dl = |k: &str, v: &str| format!("<dt>{k}</dt><dd>{v}</dd>");
        let body = format!(
            "{signed}<p><a href=\"/approvals\">&larr; All requests</a></p>{note}<section class=card><h2>{tool} <span class=muted>on</span> {srv} <span class=\"pill {class}\">{label}</span></h2><p class=muted>A <code>requireApproval</code> rule held this call. If you approve, the caller's next retry runs it once, with exactly these arguments.</p><dl>{rows}</dl><h3>Arguments <span class=muted>(personal data redacted)</span></h3><pre>{args}</pre>{actions}</section>",
            signed = signed_in(who),
            tool = esc(&p.binding.tool),
            srv = esc(&p.binding.srv),
            rows = [
                dl("Server", &esc(&p.binding.srv)),
                dl("Tool", &esc(&p.binding.tool)),
                dl("Subject", &esc(&p.binding.sub)),
                dl("Agent", &esc(p.agent.as_deref().unwrap_or("—"))),
                dl("Tenant", &esc(p.tenant.as_deref().unwrap_or("—"))),
                dl("Rule", &format!("<code>{}</code>", esc(&p.binding.rule))),
                dl("Requested", &esc(&rfc3339(p.created))),
                dl("Expires", &esc(&rfc3339(p.expires))),
                dl("Client", &esc(p.client.as_deref().unwrap_or("—"))),
                dl(
                    "Approvals",
                    &format!("{approvals} &mdash; {} needed", p.needed)
                ),
                dl(
                    "Arguments hash",
                    &format!("<code>{}</code>", esc(&p.binding.args))
                ),
                dl(
                    "Request id",
                    &format!("<code>{}</code>", esc(&p.request_id))
                ),
            ]
            .concat(),
            args = esc(&args),
        );
        page(&format!("Approve {}", p.binding.tool), &body)
    }
}

/// What a filter is told about a request: pending, approved (with the
/// grant and who approved), denied or expired.
fn outcome(p: &Pending, now: u64) -> Value {
    let approvers: Vec<&str> = p.approvals.iter().map(|(s, _)| s.as_str()).collect();
    match &p.status {
        Status::Approved { token } => {
            json!({"status": "approved", "token": token, "approvers": approvers})
        }
        Status::Denied { .. } => json!({"status": "denied"}),
        Status::Pending if now >= p.expires => json!({"status": "expired"}),
        Status::Pending => {
            json!({"status": "pending", "approvals": approvers.len(), "needed": p.needed})
        }
    }
}

fn status_label(p: &Pending, now: u64) -> (&'static str, &'static str) {
    match &p.status {
        Status::Approved { .. } => ("Approved", "ok"),
        Status::Denied { .. } => ("Denied", "bad"),
        Status::Pending if now >= p.expires => ("Expired", "muted"),
        Status::Pending => ("Pending", "wait"),
    }
}

fn signed_in(who: &Approver) -> String {
    format!(
        "<p class=who>Signed in as <b>{}</b> <span class=muted>({}; roles: {})</span></p>",
        esc(&who.subject),
        esc(&who.issuer),
        esc(&who.roles.join(", "))
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\"><title>{title} · Portcullis</title><style>{CSS}</style></head><body><header><span class=logo>▦</span> <b>Portcullis</b> <span class=muted>Approvals</span></header><main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
    )
}

const CSS: &str = "\
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f5f7;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:12px 28px;font-size:17px}header .muted{color:#aab3c5;margin-left:6px}.logo{color:#7aa2ff}\
main{max-width:1040px;margin:0 auto;padding:20px 28px}h1{font-size:24px;margin:8px 0 16px}h2{font-size:18px;margin:0 0 12px}h3{font-size:15px;margin:18px 0 6px}\
.card{background:#fff;border:1px solid #dfe3ea;border-radius:10px;padding:18px 22px;margin:0 0 18px;box-shadow:0 1px 2px rgba(0,0,0,.04)}\
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #eef0f4;font-size:14px}th{color:#5b6478;font-weight:600}\
a{color:#2f5bd3;text-decoration:none}a:hover{text-decoration:underline}code{font:13px ui-monospace,Menlo,monospace;background:#f1f3f7;padding:1px 5px;border-radius:4px}\
pre{background:#0f1420;color:#d7e0f5;padding:14px;border-radius:8px;overflow:auto;font:13px/1.45 ui-monospace,Menlo,monospace}\
dl{display:grid;grid-template-columns:160px 1fr;gap:6px 16px;margin:12px 0}dt{color:#5b6478}dd{margin:0}\
.muted{color:#7a8397;font-weight:400}.count{background:#e8edfb;color:#2f5bd3;border-radius:10px;padding:0 8px;font-size:13px}\
.pill{display:inline-block;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;vertical-align:middle}.pill.wait{background:#fff4d6;color:#8a5a00}.pill.ok{background:#dcf5e6;color:#146c3a}.pill.bad{background:#fde2e1;color:#a1261f}.pill.muted{background:#eceef2;color:#5b6478}\
.actions{display:flex;gap:12px;margin-top:18px}button{font:600 15px system-ui,sans-serif;border:0;border-radius:8px;padding:10px 26px;cursor:pointer}\
.approve{background:#1f8a4c;color:#fff}.deny{background:#fff;color:#a1261f;border:1px solid #e3aaa6}\
.note{background:#e8edfb;border:1px solid #c9d5f6;border-radius:8px;padding:10px 14px}.warn{background:#fff4d6;border-radius:8px;padding:10px 14px}.who{color:#3b4356;margin:0 0 14px}";

/// What [`Approvals`] needs from the control plane's snapshots.
impl State {
    /// The compiled bundle with `version`, if a snapshot serves it.
    pub fn bundle(&self, version: &str) -> Option<Arc<Bundle>> {
        self.snapshots()
            .into_iter()
            .find(|s| s.version == version)
            .and_then(|s| s.bundle.clone())
    }

    /// Every served compiled bundle.
    pub fn bundles(&self) -> Vec<Arc<Bundle>> {
        self.snapshots()
            .into_iter()
            .filter_map(|s| s.bundle.clone())
            .collect()
    }

    /// The `approvers` of rule `rule` (`Policy/<name>#<id>`) in the bundle
    /// with `version`: roles and how many must approve.
    pub fn approvers(&self, version: &str, rule: &str) -> Option<(Vec<String>, u32)> {
        let (doc, id) = rule.strip_prefix("Policy/")?.split_once('#')?;
        let snap = self
            .snapshots()
            .into_iter()
            .find(|s| s.version == version)?;
        let json = snap.json.as_ref()?;
        let policy = json
            .documents
            .iter()
            .find(|d| d.kind == "Policy" && d.metadata.name == doc)?;
        let r = policy
            .spec
            .get("rules")?
            .as_array()?
            .iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id))?;
        let a = r.get("approvers")?;
        let roles: Vec<String> = a
            .get("roles")?
            .as_array()?
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let count = a.get("count").and_then(Value::as_u64).unwrap_or(1);
        (!roles.is_empty()).then(|| (roles, u32::try_from(count).unwrap_or(1).max(1)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn approver(sub: &str, roles: &[&str]) -> Approver {
        Approver {
            subject: sub.into(),
            issuer: "https://idp.example.com".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn service_with(needed: u32) -> (Approvals, String, SigningKey) {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let a = Approvals::new(key.clone(), None, 900);
        let binding = approval::Binding {
            sub: "alice".into(),
            srv: "payments".into(),
            tool: "pay".into(),
            args: approval::arguments_hash(Some(&json!({"amount": 500}))),
            rule: "Policy/pay#big".into(),
        };
        let approval_id = approval::approval_id(&binding);
        let now = now_secs();
        a.lock().insert(
            "r1".into(),
            Pending {
                id: "r1".into(),
                approval_id: approval_id.clone(),
                binding,
                agent: None,
                tenant: None,
                arguments: json!({"amount": 500}),
                request_id: "q".into(),
                bundle_version: "v".into(),
                client: None,
                created: now,
                expires: now + 900,
                roles: vec!["payments-approver".into()],
                needed,
                approvals: Vec::new(),
                status: Status::Pending,
                by_lookup: false,
                claimed: false,
            },
        );
        (a, approval_id, key)
    }

    /// The call of `service_with` as a 2025-11-25 lookup files it.
    fn as_filed(a: &Approvals, agent: Option<&str>) -> Pending {
        let mut p = a.get("r1").unwrap();
        p.id = format!("new-{}", a.lock().len());
        p.agent = agent.map(str::to_owned);
        p.by_lookup = true;
        p
    }

    fn lookup(a: &Approvals, agent: Option<&str>) -> Value {
        let p = as_filed(a, agent);
        serde_json::from_slice(&futures_body(a.claim_or_file(p))).unwrap()
    }

    #[test]
    fn a_lookup_finds_its_open_request_and_hands_an_outcome_out_once() {
        let (a, approval_id, key) = service_with(1);
        // Requests filed with a state are not found by a lookup.
        let first = lookup(&a, Some("agent-1"));
        assert_eq!(first["status"], "pending");
        let req = first["request"].as_str().unwrap().to_owned();
        assert_ne!(req, "r1");
        // The retry finds the same request; another agent gets its own.
        assert_eq!(lookup(&a, Some("agent-1"))["request"], req.as_str());
        let other = lookup(&a, Some("agent-2"));
        assert_ne!(other["request"], req.as_str());
        let bob = approver("bob", &["payments-approver"]);
        assert!(a.decide(&req, &bob, "approve").starts_with("Approved"));
        // Approved: the grant, once.
        let got = lookup(&a, Some("agent-1"));
        assert_eq!(
            (got["status"].as_str(), got["request"].as_str()),
            (Some("approved"), Some(req.as_str()))
        );
        approval::verify(
            got["token"].as_str().unwrap(),
            &[key.verifying_key()],
            &approval_id,
            now_secs(),
            3600,
        )
        .unwrap();
        // The next identical call starts over.
        let again = lookup(&a, Some("agent-1"));
        assert_eq!(again["status"], "pending");
        assert_ne!(again["request"], req.as_str());
        // A denial is told once, too.
        let next = again["request"].as_str().unwrap().to_owned();
        assert!(a.decide(&next, &bob, "deny").starts_with("Denied"));
        assert_eq!(lookup(&a, Some("agent-1"))["status"], "denied");
        assert_eq!(lookup(&a, Some("agent-1"))["status"], "pending");
    }

    #[test]
    fn a_lookup_reports_an_expired_request_once() {
        let (a, _, _) = service_with(1);
        let first = lookup(&a, None);
        let req = first["request"].as_str().unwrap().to_owned();
        if let Some(p) = a.lock().get_mut(&req) {
            p.expires = now_secs();
        }
        assert_eq!(lookup(&a, None)["status"], "expired");
        assert_eq!(lookup(&a, None)["status"], "pending");
    }

    fn decision(a: &Approvals) -> Value {
        let r = a.decision("r1");
        let body = futures_body(r);
        serde_json::from_slice(&body).unwrap()
    }

    fn futures_body(r: Reply) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes().to_vec() })
    }

    #[test]
    fn two_person_approval_needs_two_distinct_approvers_with_the_role() {
        let (a, approval_id, key) = service_with(2);
        let bob = approver("bob", &["payments-approver"]);
        let carol = approver("carol", &["payments-approver"]);
        // Without the role, or approving one's own call: nothing recorded.
        assert!(
            a.decide("r1", &approver("mallory", &["viewer"]), "approve")
                .contains("may not decide")
        );
        assert!(
            a.decide("r1", &approver("alice", &["payments-approver"]), "approve")
                .contains("own call")
        );
        assert!(a.decide("r1", &bob, "approve").contains("1 more"));
        assert_eq!(decision(&a)["status"], "pending");
        // The same person twice does not make two.
        assert!(a.decide("r1", &bob, "approve").contains("already approved"));
        assert_eq!(decision(&a)["status"], "pending");
        assert!(a.decide("r1", &carol, "approve").starts_with("Approved"));
        let d = decision(&a);
        assert_eq!(d["status"], "approved");
        assert_eq!(d["approvers"], json!(["bob", "carol"]));
        // The grant is for exactly this call, signed with the service's key.
        let grant = approval::verify(
            d["token"].as_str().unwrap(),
            &[key.verifying_key()],
            &approval_id,
            now_secs(),
            3600,
        )
        .unwrap();
        assert!(grant.exp > now_secs());
        // Decided is decided.
        assert!(a.decide("r1", &carol, "deny").contains("already decided"));
    }

    #[test]
    fn one_deny_ends_the_request() {
        let (a, _, _) = service_with(2);
        assert!(
            a.decide("r1", &approver("bob", &["payments-approver"]), "deny")
                .starts_with("Denied")
        );
        assert_eq!(decision(&a)["status"], "denied");
        assert_eq!(a.decision("nope").status(), StatusCode::NOT_FOUND);
    }
}

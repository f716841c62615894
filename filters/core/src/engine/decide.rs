//! Why was this call denied? The decision on each message of a request,
//! every pillar in order, each one call that returns a [`Verdict`] the
//! engine passes on as it is:
//!
//! 1. **registry** ([`crate::registry::verdict`]): is the server usable, and
//!    does its list allow what the message names?
//! 2. **identity** ([`crate::identity::ServerIdentity::authorize`]): do the
//!    token's scopes cover the call?
//! 3. **content** ([`crate::content::ToolMemory`]): is the tool quarantined
//!    (its last-seen definition failed a pin or the poisoning screen), and do
//!    the arguments validate against its advertised `inputSchema`?
//! 4. **policy** ([`crate::policy::gate::rules`]): do the Policy rules
//!    permit it (and has a person approved it, where a rule asks)?
//!
//! Then, for the request as a whole: the arguments' content
//! ([`crate::content::review_arguments`]: PII redacted in the forwarded body,
//! or refused), the limits ([`crate::policy::gate::limits`], counted only
//! for calls nothing else refused) and each approval spent once. The first
//! refusal decides, and a batch is all or nothing; `respond.rs` turns the
//! outcome into the forwarded request or the refusal, and the records.

use super::*;
use crate::policy::gate;

/// A request the pillars judged and whose arguments were reviewed: what the
/// limits, the spends and the answer start from.
#[derive(Debug)]
pub(super) struct Reviewed {
    pub envelope: Envelope,
    pub decisions: Vec<Verdict>,
    pub findings: Vec<Option<ContentFindings>>,
    /// The body was changed (redacted, or the round trip's state stripped).
    pub rewritten: bool,
}

impl Exchange {
    pub(super) fn decide(
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
        if let Some(action) = self.approval_round_trip(env, &envelope, value, &decisions) {
            return action;
        }
        let (findings, rewritten) = self.review_arguments(env, &envelope, value, &mut decisions);
        // A round trip the filter finished: its requestState and its answer
        // were stripped from the body, which goes upstream rewritten.
        let rewritten = rewritten || self.approval_resolved;
        self.count_and_answer(
            env,
            Reviewed {
                envelope,
                decisions,
                findings,
                rewritten,
            },
            value,
        )
    }

    /// A request past its review: its fleet questions asked (one outcall at
    /// a time, the request held, and back here with each answer), then the
    /// limits counted, the approvals spent, and the request forwarded or
    /// refused. Asked only now, so a call the review refuses takes no fleet
    /// quota.
    pub(super) fn count_and_answer(
        &mut self,
        env: &mut dyn Env,
        reviewed: Reviewed,
        value: &mut Value,
    ) -> RequestBodyAction {
        let denied = |d: &[Verdict]| d.iter().position(|v| v.decision == Decision::Deny);
        let reviewed = if denied(&reviewed.decisions).is_none() {
            match self.fleet_call(reviewed, value) {
                Ok(call) => return RequestBodyAction::Call(call),
                Err(reviewed) => reviewed,
            }
        } else {
            reviewed
        };
        let Reviewed {
            envelope,
            mut decisions,
            findings,
            rewritten,
        } = reviewed;
        let mut global_limits = Vec::new();
        if denied(&decisions).is_none() {
            let engine = Arc::clone(&self.engine);
            let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
            let counted = gate::limits(
                &engine.bundle.policy,
                engine.bundle.settings.enforce,
                &server,
                self.identity.as_deref(),
                &envelope.messages,
                &mut decisions,
                env,
                &mut self.leases,
                &self.fleet_answers,
            );
            global_limits = counted.global;
            // An approval is spent only once nothing else refuses the call.
            let fleet_spends =
                engine
                    .bundle
                    .settings
                    .fleet
                    .is_some()
                    .then_some(gate::FleetSpends {
                        answers: self.fleet_spends.as_slice(),
                        rules: &engine.bundle.fleet_approval_rules,
                    });
            if !counted.refused && !gate::spend_approvals(env, &mut decisions, fleet_spends) {
                gate::release(env, &mut self.leases);
            }
        }
        count_decisions(env, &decisions);
        match denied(&decisions) {
            Some(first) => {
                // Fleet leases granted before the refusal go back now, not
                // at the stream's end.
                gate::release(env, &mut self.leases);
                RequestBodyAction::Reply(self.refuse(&envelope, &decisions, &findings, first))
            }
            None => self.forward(
                env,
                &envelope,
                decisions,
                findings,
                value,
                rewritten,
                global_limits,
            ),
        }
    }

    /// One message through the pillars that judge it alone.
    pub(super) fn verdict(&self, env: &dyn Env, msg: &Message) -> Verdict {
        let settings = &self.bundle().settings;
        let today = self.started_nanos / (86_400 * 1_000_000_000);
        let tenant = self.identity.as_ref().and_then(|i| i.tenant.as_deref());
        let verdict = crate::registry::verdict(self.server(), settings, msg, today, tenant);
        if verdict.decision == Decision::Deny {
            return verdict;
        }
        let Some(server) = self.server() else {
            return verdict;
        };
        if let Some(refusal) = self.scope_refusal(server, msg) {
            return refusal;
        }
        if let Target::Task(task_id) = &msg.target
            && !self.replay
        {
            let principal = crate::tasks::principal(self.identity.as_deref());
            if let Err(why) = crate::tasks::check(env, &server.name, task_id, &principal) {
                return Verdict::deny(
                    DenyCause::Task,
                    format!("{} refused: {why}", msg.method.as_deref().unwrap_or("")),
                    Some(format!("McpServer/{}#tasks", server.name)),
                );
            }
        }
        let tool = match (&msg.target, msg.method.as_deref()) {
            (Target::Tool(t), Some("tools/call")) => Some(t.as_str()),
            _ => None,
        };
        let memory = &self.engine.tools;
        if let Some(tool) = tool
            && let Some(why) = memory.quarantine_reason(env, server, tool)
        {
            return Verdict::deny(
                DenyCause::Quarantine,
                format!(
                    "tool {:?} is refused: its last-seen definition {why}",
                    truncate(tool, 128)
                ),
                Some(format!("McpServer/{}#pins", server.name)),
            );
        }
        let validator = match tool {
            Some(tool) if !self.replay => memory.tool_validator(env, server, tool),
            _ => None,
        };
        if let Some(tool) = tool
            && let Some(why) = crate::content::schema_refusal(
                validator.as_deref(),
                server,
                tool,
                msg.arguments.as_ref(),
            )
        {
            return Verdict::deny(
                DenyCause::InputSchema,
                why,
                Some(format!("McpServer/{}#inputSchema", server.name)),
            );
        }
        self.policy_verdict(server, msg, verdict, validator.is_some())
    }

    /// The token's scopes for the call (identity); `None` when they cover it
    /// or the server has no identity settings.
    fn scope_refusal(&self, server: &Server, msg: &Message) -> Option<Verdict> {
        let (method, sid, identity) = (
            msg.method.as_deref()?,
            server.identity.as_ref()?,
            self.identity.as_ref()?,
        );
        if self.replay {
            return None;
        }
        let tool = match &msg.target {
            Target::Tool(t) => Some(t.as_str()),
            _ => None,
        };
        let e = sid.authorize(identity, method, tool).err()?;
        let required = match &e {
            IdentityError::InsufficientScope { required } => required.join(" "),
            _ => String::new(),
        };
        Some(Verdict::deny(
            DenyCause::Scope(e),
            format!(
                "the token's scopes do not cover {method}{}; it needs {required:?}",
                tool.map(|t| format!(" of tool {:?}", truncate(t, 128)))
                    .unwrap_or_default()
            ),
            Some(format!("McpServer/{}#identity.scopes", server.name)),
        ))
    }

    pub(super) fn policy_context(&self) -> crate::policy::Context<'_> {
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
        use crate::policy::{Call, TargetKind};
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
            Target::None | Target::Task(_) => None,
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
        let bundle = self.bundle();
        let approvals = gate::Approvals {
            keys: &bundle.approval_keys,
            max_ttl: bundle.approval_max_ttl,
            token: self
                .approval_token
                .as_deref()
                .or(self.head.header(headers::APPROVAL)),
            subject: self.identity.as_ref().map(|i| i.subject.as_str()),
            now_unix: self.started_nanos / 1_000_000_000,
        };
        gate::rules(
            policy,
            &call,
            &self.policy_context(),
            bundle.settings.enforce,
            verdict,
            &approvals,
        )
    }

    /// Whether the caller may see `name` in a list (Policy rules).
    pub(super) fn policy_visible(&self, kind: crate::policy::TargetKind, name: &str) -> bool {
        let Some(server) = self.server() else {
            return true;
        };
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
        gate::visible(
            &self.engine.bundle.policy,
            &call,
            &self.policy_context(),
            self.bundle().settings.enforce,
        )
    }

    /// The content of every allowed tools/call's arguments, reviewed in the
    /// body itself (so a redaction is what the upstream receives): the
    /// findings per message, and whether the body was rewritten.
    fn review_arguments(
        &self,
        env: &mut dyn Env,
        envelope: &Envelope,
        value: &mut Value,
        decisions: &mut [Verdict],
    ) -> (Vec<Option<ContentFindings>>, bool) {
        let mut findings: Vec<Option<ContentFindings>> = vec![None; envelope.messages.len()];
        let mut rewritten = false;
        let Some(server) = self.server() else {
            return (findings, rewritten);
        };
        for (i, msg) in envelope.messages.iter().enumerate() {
            let allowed = decisions
                .get(i)
                .is_some_and(|d| d.decision == Decision::Allow);
            if !allowed {
                continue;
            }
            // The arguments of a call, and (2026-07-28) the answers a client
            // sends back on a retry (`inputResponses`, multi round-trip
            // requests, or `tasks/update`): both are what the user or agent
            // hands the server, so both meet the same content policy.
            let fields: &[&str] = if msg.method.as_deref() == Some("tools/call") {
                &["arguments", "inputResponses"]
            } else {
                &["inputResponses"]
            };
            for field in fields {
                let element = if envelope.batch {
                    value.get_mut(i)
                } else {
                    Some(&mut *value)
                };
                let Some(args) = element
                    .and_then(|v| v.get_mut("params"))
                    .and_then(|p| p.get_mut(*field))
                else {
                    continue;
                };
                let review = crate::content::review_arguments(env, server, args);
                rewritten |= review.modified;
                if let (Some(refusal), Some(d)) = (review.refusal, decisions.get_mut(i))
                    && d.decision == Decision::Allow
                {
                    *d = refusal;
                }
                if let (Some(slot), Some(found)) = (findings.get_mut(i), review.findings) {
                    match slot {
                        Some(existing) => existing.merge(found),
                        None => *slot = Some(found),
                    }
                }
            }
        }
        (findings, rewritten)
    }
}

/// The counters one request's decisions move.
fn count_decisions(env: &mut dyn Env, decisions: &[Verdict]) {
    for d in decisions {
        if d.shadow.as_ref().is_some_and(|s| s.decision != "allow") && d.decision == Decision::Allow
        {
            env.count(metrics::SHADOW_WOULD_DENY, 1);
        }
    }
    if !decisions.iter().any(|d| d.decision == Decision::Deny) {
        env.count(metrics::MESSAGES_ALLOWED, decisions.len() as u64);
        return;
    }
    env.count(metrics::MESSAGES_DENIED, decisions.len() as u64);
    if decisions.iter().any(|d| d.auth().is_some()) {
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
}

//! `scope: fleet` limits (issue 19): before the limits are counted, each
//! fleet rate or budget that covers a call of the request is asked of the
//! fleet state service, one outcall at a time (`RequestBodyAction::Call`,
//! a gRPC call to `Settings.spec.fleet.cluster`), and the decision runs
//! again with the answers. An answer that is not a clear yes or no (a gRPC
//! error, a timeout, garbage) is kept as no answer, and the limit's
//! `failClosed` decides in [`crate::policy::gate::limits`].
//!
//! A granted single-use approval is spent there too (`Fleet/Spend`),
//! before the limits are counted, for the same reason: the request is
//! decided again from the start with each answer.
//!
//! Concurrency leases are not asked here: a fleet lease must be released
//! when the stream ends, and the outcall seam only runs on the request
//! path, so a bundle with a fleet concurrency limit is refused where it
//! writes one.

use super::*;
use crate::fleet::{api, rls};
use crate::outcall::{CallResult, Outcall, OutcallKind};
use crate::policy::limits::{FleetAsk, Keys, LimitVerdict, Scope};

/// A fleet question in flight, with the request it holds.
#[derive(Debug)]
pub(super) struct FleetFlow {
    id: u32,
    /// The limit's bucket key, or the approval's spend key.
    key: String,
    question: Question,
    envelope: Envelope,
    value: Value,
}

/// What was asked of the fleet state service.
#[derive(Debug)]
enum Question {
    /// A fleet rate or budget (RLS v3 `ShouldRateLimit`).
    Limit { limit_id: String, ask: FleetAsk },
    /// A granted approval's single use (`Fleet/Spend`).
    Spend,
}

/// The fleet answers of this request: bucket key -> verdict (`None`: no
/// answer).
pub(crate) type FleetAnswers = Vec<(String, Option<LimitVerdict>)>;

impl Exchange {
    /// The next fleet question this request needs answered, if any: first
    /// each fleet rate or budget that covers one of its calls, then, with a
    /// fleet service configured, each granted approval's spend (once for
    /// the whole fleet, not in this proxy's shared data, where every proxy
    /// would accept it once). The request is kept to be decided again from
    /// the start with the answer, so all are asked before the limits are
    /// counted: an approval is spent even when a limit then refuses the call
    /// (docs/fleet.md).
    pub(super) fn fleet_call(
        &mut self,
        envelope: Envelope,
        decisions: &[Verdict],
        value: &mut Value,
    ) -> Result<Outcall, Envelope> {
        let engine = Arc::clone(&self.engine);
        let Some(fleet) = engine.bundle.settings.fleet.as_ref() else {
            return Err(envelope);
        };
        use prost::Message as _;
        let server = self.server().map(|s| s.name.clone()).unwrap_or_default();
        let identity = self.identity.clone();
        let mut next = None;
        'messages: for msg in &envelope.messages {
            let Some(method) = msg.method.as_deref() else {
                continue;
            };
            let tool = match &msg.target {
                Target::Tool(t) => Some(t.as_str()),
                Target::Resource(r) => Some(r.as_str()),
                Target::Prompt(p) => Some(p.as_str()),
                Target::None | Target::Task(_) => None,
            };
            let keys = Keys {
                tenant: identity.as_deref().and_then(|i| i.tenant.as_deref()),
                subject: identity.as_deref().map(|i| i.subject.as_str()),
                agent: identity.as_deref().and_then(|i| i.agent.as_deref()),
                server: &server,
                method,
                tool,
            };
            for limit in engine
                .bundle
                .policy
                .limits
                .iter()
                .filter(|l| l.scope == Scope::Fleet && l.applies(&keys))
            {
                let key = limit.bucket_key(&keys);
                if self.fleet_answers.iter().any(|(k, _)| *k == key) {
                    continue;
                }
                if let Some(FleetAsk::Rls(req)) =
                    limit.fleet_ask(&keys, &fleet.domain, LEASE_TTL_MS)
                {
                    next = Some((key, limit.id.clone(), req));
                    break 'messages;
                }
            }
        }
        let (key, question, service, method, message) = match next {
            Some((key, limit_id, req)) => {
                let message = req.encode_to_vec();
                let ask = FleetAsk::Rls(req);
                let question = Question::Limit { limit_id, ask };
                (key, question, rls::SERVICE, rls::METHOD, message)
            }
            None => {
                let spend = decisions
                    .iter()
                    .filter_map(|v| v.approval.as_ref()?.jti.as_deref())
                    .map(crate::policy::gate::spend_key)
                    .find(|key| !self.fleet_spends.iter().any(|(k, _)| k == key));
                let Some(key) = spend else {
                    return Err(envelope);
                };
                // Kept at least as long as any grant the bundle accepts
                // can live.
                let ttl_ms = engine
                    .bundle
                    .approval_max_ttl
                    .saturating_add(60)
                    .saturating_mul(1000);
                let message = api::SpendRequest {
                    key: key.clone(),
                    ttl_ms,
                }
                .encode_to_vec();
                (key, Question::Spend, api::SERVICE, api::SPEND, message)
            }
        };
        let id = self.next_call_id();
        let call = Outcall {
            id,
            cluster: fleet.cluster.clone(),
            timeout_ms: fleet.timeout_ms,
            kind: OutcallKind::Grpc {
                service: service.to_owned(),
                method: method.to_owned(),
                message,
                initial_metadata: Vec::new(),
            },
        };
        self.fleet_flow = Some(FleetFlow {
            id,
            key,
            question,
            envelope,
            value: std::mem::take(value),
        });
        Ok(call)
    }

    /// The answer to a fleet question: kept (`None`: no clear answer, which
    /// the limit's `failClosed` decides, or refuses a spend as
    /// `fleet_unavailable`), and the request decided again. `None` if no
    /// fleet question is in flight (the answer is someone else's).
    pub(super) fn fleet_answer(
        &mut self,
        env: &mut dyn Env,
        id: u32,
        result: &CallResult,
    ) -> Option<RequestBodyAction> {
        let flow = self.fleet_flow.take()?;
        if flow.id != id {
            return Some(RequestBodyAction::Reply(self.internal_error(
                env,
                "an outcall answer for another fleet question than the one asked",
            )));
        }
        let body = match result {
            CallResult::Grpc {
                status: 0, body, ..
            } => Some(body.as_slice()),
            _ => None,
        };
        match flow.question {
            Question::Limit { limit_id, ask } => {
                let engine = Arc::clone(&self.engine);
                let verdict = body.and_then(|body| {
                    engine
                        .bundle
                        .policy
                        .limits
                        .iter()
                        .find(|l| l.id == limit_id)
                        .and_then(|l| l.fleet_verdict(&ask, body))
                });
                self.fleet_answers.push((flow.key, verdict));
            }
            Question::Spend => {
                use prost::Message as _;
                let first = body
                    .and_then(|b| api::SpendResponse::decode(b).ok())
                    .map(|r| r.first);
                self.fleet_spends.push((flow.key, first));
            }
        }
        let mut value = flow.value;
        Some(self.decide(env, flow.envelope, &mut value))
    }
}

/// How long a fleet lease would live without a release (a proxy that dies
/// mid-call): as a proxy lease.
const LEASE_TTL_MS: u64 = crate::policy::limits::LEASE_NANOS / 1_000_000;

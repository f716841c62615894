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
//! path, so a fleet concurrency limit has no answer (failClosed).

use super::*;
use crate::fleet::{api, rls};
use crate::outcall::{CallResult, Outcall, OutcallKind};
use crate::policy::limits::{FleetAsk, Keys, LimitVerdict, Scope};

/// A fleet question in flight, with the request it holds.
#[derive(Debug)]
pub(super) struct FleetFlow {
    id: u32,
    key: String,
    limit_id: String,
    ask: FleetAsk,
    envelope: Envelope,
    value: Value,
}

/// The fleet answers of this request: bucket key -> verdict (`None`: no
/// answer).
pub(crate) type FleetAnswers = Vec<(String, Option<LimitVerdict>)>;

impl Exchange {
    /// The next fleet question this request needs answered, if any; the
    /// request is kept to be decided again when the answer comes.
    pub(super) fn fleet_call(
        &mut self,
        envelope: Envelope,
        value: &mut Value,
    ) -> Result<Outcall, Envelope> {
        let engine = Arc::clone(&self.engine);
        let Some(fleet) = engine.bundle.settings.fleet.as_ref() else {
            return Err(envelope);
        };
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
        let Some((key, limit_id, req)) = next else {
            return Err(envelope);
        };
        use prost::Message as _;
        let id = self.next_call_id();
        let call = Outcall {
            id,
            cluster: fleet.cluster.clone(),
            timeout_ms: fleet.timeout_ms,
            kind: OutcallKind::Grpc {
                service: rls::SERVICE.to_owned(),
                method: rls::METHOD.to_owned(),
                message: req.encode_to_vec(),
                initial_metadata: Vec::new(),
            },
        };
        self.fleet_flow = Some(FleetFlow {
            id,
            key,
            limit_id,
            ask: FleetAsk::Rls(req),
            envelope,
            value: std::mem::take(value),
        });
        Ok(call)
    }

    /// The answer to a fleet question: kept, and the request decided again.
    /// `None` if no fleet question is in flight (the answer is someone
    /// else's).
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
        let engine = Arc::clone(&self.engine);
        let verdict = match result {
            CallResult::Grpc {
                status: 0, body, ..
            } => engine
                .bundle
                .policy
                .limits
                .iter()
                .find(|l| l.id == flow.limit_id)
                .and_then(|l| l.fleet_verdict(&flow.ask, body)),
            _ => None,
        };
        self.fleet_answers.push((flow.key, verdict));
        let mut value = flow.value;
        Some(self.decide(env, flow.envelope, &mut value))
    }
}

/// A single-use approval's spend in flight, with the request it holds.
#[derive(Debug)]
pub(super) struct SpendFlow {
    id: u32,
    key: String,
    envelope: Envelope,
    value: Value,
}

impl Exchange {
    /// With a fleet service configured, a granted approval is spent there,
    /// once for the whole fleet (`portcullis.fleet.v1.Fleet/Spend`), not in
    /// this proxy's shared data, where every proxy would accept it once.
    /// Asked before the limits are counted, since the request is decided
    /// again from the start with the answer: an approval is therefore spent
    /// even when a limit then refuses the call (docs/fleet.md).
    pub(super) fn fleet_spend_call(
        &mut self,
        envelope: Envelope,
        decisions: &[Verdict],
        value: &mut Value,
    ) -> Result<Outcall, Envelope> {
        let engine = Arc::clone(&self.engine);
        let Some(fleet) = engine.bundle.settings.fleet.as_ref() else {
            return Err(envelope);
        };
        let next = decisions
            .iter()
            .filter_map(|v| v.approval.as_ref()?.jti.as_deref())
            .map(crate::policy::gate::spend_key)
            .find(|key| !self.fleet_spends.iter().any(|(k, _)| k == key));
        let Some(key) = next else {
            return Err(envelope);
        };
        use prost::Message as _;
        // Kept at least as long as any grant the bundle accepts can live.
        let ttl_ms = engine
            .bundle
            .approval_max_ttl
            .saturating_add(60)
            .saturating_mul(1000);
        let id = self.next_call_id();
        let call = Outcall {
            id,
            cluster: fleet.cluster.clone(),
            timeout_ms: fleet.timeout_ms,
            kind: OutcallKind::Grpc {
                service: api::SERVICE.to_owned(),
                method: api::SPEND.to_owned(),
                message: api::SpendRequest {
                    key: key.clone(),
                    ttl_ms,
                }
                .encode_to_vec(),
                initial_metadata: Vec::new(),
            },
        };
        self.fleet_spend_flow = Some(SpendFlow {
            id,
            key,
            envelope,
            value: std::mem::take(value),
        });
        Ok(call)
    }

    /// The answer to a spend: kept (`None`: no clear answer, refused as
    /// `fleet_unavailable`), and the request decided again. `None` if no
    /// spend is in flight.
    pub(super) fn fleet_spend_answer(
        &mut self,
        env: &mut dyn Env,
        id: u32,
        result: &CallResult,
    ) -> Option<RequestBodyAction> {
        let flow = self.fleet_spend_flow.take()?;
        if flow.id != id {
            return Some(RequestBodyAction::Reply(self.internal_error(
                env,
                "an outcall answer for another approval spend than the one asked",
            )));
        }
        let first = match result {
            CallResult::Grpc {
                status: 0, body, ..
            } => {
                use prost::Message as _;
                api::SpendResponse::decode(body.as_slice())
                    .ok()
                    .map(|r| r.first)
            }
            _ => None,
        };
        self.fleet_spends.push((flow.key, first));
        let mut value = flow.value;
        Some(self.decide(env, flow.envelope, &mut value))
    }
}

/// How long a fleet lease would live without a release (a proxy that dies
/// mid-call): as a proxy lease.
const LEASE_TTL_MS: u64 = crate::policy::limits::LEASE_NANOS / 1_000_000;

//! `scope: fleet` limits (issue 19): once a request passed every check of
//! this proxy (pillars and argument review) and before the limits are
//! counted, each fleet rate or budget that covers a call of the request is
//! asked of the fleet state service, one outcall at a time
//! (`RequestBodyAction::Call`, a gRPC call to
//! `Settings.spec.fleet.cluster`); the reviewed request
//! (`decide::Reviewed`) waits and goes on with each answer. An
//! answer that is not a clear yes or no (a gRPC error, a timeout, garbage)
//! is kept as no answer, and the limit's `failClosed` decides in
//! [`crate::policy::gate::limits`].
//!
//! A granted single-use approval is spent there too (`Fleet/Spend`), with
//! the same questions, so before the limits are counted.
//!
//! A fleet concurrency limit takes a lease (`Fleet/AcquireLease`, living
//! `Settings.spec.fleet.leaseTtlMs` at most) the same way. A granted lease
//! belongs to the exchange from its answer on, and goes back when the
//! exchange ends or is refused ([`crate::policy::gate::release`]): handed
//! to the root context through [`Env::enqueue_release`], which asks
//! `Fleet/ReleaseLease` and sees its answer: the stream's context is gone
//! by then, and the proxy-wasm SDK drops an answer whose context was
//! deleted (filters/proxy-wasm/src/root.rs).
//!
//! The root context's side (quarantine push and refresh on its tick, lease
//! releases) is [`Engine::fleet_tick`], [`Engine::fleet_release`] and
//! [`Engine::fleet_call_done`].

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
    reviewed: super::decide::Reviewed,
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
    /// would accept it once). The reviewed request waits for the answer
    /// and goes on with it; all are asked before the limits are counted, so
    /// an approval is spent even when a limit then refuses the call
    /// (docs/fleet.md).
    pub(super) fn fleet_call(
        &mut self,
        reviewed: super::decide::Reviewed,
        value: &mut Value,
    ) -> Result<Outcall, super::decide::Reviewed> {
        let engine = Arc::clone(&self.engine);
        let Some(fleet) = engine.bundle.settings.fleet.as_ref() else {
            return Err(reviewed);
        };
        let envelope = &reviewed.envelope;
        let decisions = &reviewed.decisions;
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
                if let Some(ask) = limit.fleet_ask(&keys, &fleet.domain, fleet.lease_ttl_ms) {
                    next = Some((key, limit.id.clone(), ask));
                    break 'messages;
                }
            }
        }
        let (key, question, service, method, message) = match next {
            Some((key, limit_id, ask)) => {
                let (service, method, message) = match &ask {
                    FleetAsk::Rls(req) => (rls::SERVICE, rls::METHOD, req.encode_to_vec()),
                    FleetAsk::Lease(req) => (api::SERVICE, api::ACQUIRE_LEASE, req.encode_to_vec()),
                };
                let question = Question::Limit { limit_id, ask };
                (key, question, service, method, message)
            }
            None => {
                let spend = decisions
                    .iter()
                    .filter(|v| {
                        crate::policy::gate::spent_by_fleet(&engine.bundle.fleet_approval_rules, v)
                    })
                    .filter_map(|v| v.approval.as_ref()?.jti.as_deref())
                    .map(crate::policy::gate::spend_key)
                    .find(|key| !self.fleet_spends.iter().any(|(k, _)| k == key));
                let Some(key) = spend else {
                    return Err(reviewed);
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
            reviewed,
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
                // A granted lease is the exchange's from now on, so that it
                // goes back however the exchange ends (refused by a later
                // check, or done).
                let verdict = match verdict {
                    Some(LimitVerdict::Within(Some(lease))) => {
                        self.leases.push(lease);
                        Some(LimitVerdict::Within(None))
                    }
                    other => other,
                };
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
        Some(self.count_and_answer(env, flow.reviewed, &mut value))
    }
}

/// What the root context asked the fleet state service.
#[derive(Debug)]
enum RootQuestion {
    /// `AddQuarantine`: a pin failure this proxy saw.
    Add(api::QuarantineEntry),
    /// `ListQuarantine`: the fleet's quarantine.
    List,
    /// `ReleaseLease`: a lease whose exchange ended.
    Release,
}

/// The root context's calls in flight, by the engine's id.
#[derive(Debug, Default)]
pub(crate) struct RootCalls {
    next: u32,
    asked: BTreeMap<u32, RootQuestion>,
}

impl Engine {
    /// How often the root context should tick for the fleet
    /// (`proxy_set_tick_period_milliseconds`): `Settings.spec.fleet
    /// .quarantineRefreshMs`, `None` without a fleet service.
    pub fn fleet_tick_period_ms(&self) -> Option<u32> {
        self.bundle
            .settings
            .fleet
            .as_ref()
            .map(|f| f.quarantine_refresh_ms)
    }

    /// The root context's tick: an `AddQuarantine` for each pin failure a
    /// stream of this proxy saw since (taken by this VM alone), and, if this
    /// VM's turn came ([`crate::fleet::quarantine::claim_refresh`]: one per
    /// period per proxy), a `ListQuarantine`. The host makes the calls and
    /// gives each answer to [`Engine::fleet_call_done`].
    pub fn fleet_tick(&self, env: &mut dyn Env) -> Vec<Outcall> {
        use crate::fleet::quarantine;
        use prost::Message as _;
        let Some(fleet) = self.bundle.settings.fleet.as_ref() else {
            return Vec::new();
        };
        let mut calls = Vec::new();
        for entry in quarantine::take_pushes(env) {
            let message = api::AddQuarantineRequest {
                entry: Some(entry.clone()),
            }
            .encode_to_vec();
            calls.push(self.root_call(api::ADD_QUARANTINE, message, RootQuestion::Add(entry)));
        }
        if quarantine::claim_refresh(env, fleet.quarantine_refresh_ms) {
            let message = api::ListQuarantineRequest {}.encode_to_vec();
            calls.push(self.root_call(api::LIST_QUARANTINE, message, RootQuestion::List));
        }
        calls
    }

    /// A lease a stream handed over ([`Env::enqueue_release`]) as its
    /// `ReleaseLease` call. `None`: not a release (nothing to call).
    pub fn fleet_release(&self, release: &[u8]) -> Option<Outcall> {
        use prost::Message as _;
        self.bundle.settings.fleet.as_ref()?;
        let req = api::ReleaseLeaseRequest::decode(release).ok()?;
        if req.key.is_empty() || req.lease_id.is_empty() {
            return None;
        }
        Some(self.root_call(
            api::RELEASE_LEASE,
            req.encode_to_vec(),
            RootQuestion::Release,
        ))
    }

    /// The answer to a root context's fleet call. A pushed entry that got no
    /// answer waits for the next tick; the list is stored when its version
    /// changed; a failed refresh keeps the last list (the local quarantine
    /// applies regardless). Returns what to log when something got no
    /// answer.
    pub fn fleet_call_done(
        &self,
        env: &mut dyn Env,
        id: u32,
        result: &CallResult,
    ) -> Option<String> {
        use crate::fleet::quarantine;
        use prost::Message as _;
        let question = self
            .fleet_root
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .asked
            .remove(&id)?;
        let body = match result {
            CallResult::Grpc {
                status: 0, body, ..
            } => Ok(body.as_slice()),
            CallResult::Grpc {
                status, message, ..
            } => Err(format!("gRPC status {status} ({message})")),
            CallResult::Http { status, .. } => Err(format!("HTTP {status} to a gRPC call")),
            CallResult::Failed(why) => Err(why.clone()),
        };
        let failed = |what: &str, why: &str| {
            Some(format!(
                "portcullis: the fleet state service did not answer {what}: {why}"
            ))
        };
        let note = match (question, body) {
            (RootQuestion::Add(entry), Ok(body)) => {
                match api::AddQuarantineResponse::decode(body) {
                    Ok(_) => None,
                    Err(e) => {
                        quarantine::queue_pushes(env, &[entry]);
                        failed("AddQuarantine", &e.to_string())
                    }
                }
            }
            (RootQuestion::Add(entry), Err(why)) => {
                quarantine::queue_pushes(env, &[entry]);
                failed("AddQuarantine (retried next tick)", &why)
            }
            (RootQuestion::List, Ok(body)) => match api::ListQuarantineResponse::decode(body) {
                Ok(list) => {
                    quarantine::store_list(env, &list);
                    None
                }
                Err(e) => failed("ListQuarantine (the last list is kept)", &e.to_string()),
            },
            (RootQuestion::List, Err(why)) => {
                failed("ListQuarantine (the last list is kept)", &why)
            }
            (RootQuestion::Release, Ok(_)) => None,
            (RootQuestion::Release, Err(why)) => {
                failed("ReleaseLease (the lease expires instead)", &why)
            }
        };
        if note.is_some() {
            env.count(crate::env::metrics::FLEET_UNAVAILABLE, 1);
        }
        note
    }

    fn root_call(&self, method: &str, message: Vec<u8>, question: RootQuestion) -> Outcall {
        let (cluster, timeout_ms) = self
            .bundle
            .settings
            .fleet
            .as_ref()
            .map(|f| (f.cluster.clone(), f.timeout_ms))
            .unwrap_or_default();
        let mut calls = self
            .fleet_root
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        calls.next = calls.next.wrapping_add(1);
        let id = calls.next;
        calls.asked.insert(id, question);
        Outcall {
            id,
            cluster,
            timeout_ms,
            kind: OutcallKind::Grpc {
                service: api::SERVICE.to_owned(),
                method: method.to_owned(),
                message,
                initial_metadata: Vec::new(),
            },
        }
    }
}

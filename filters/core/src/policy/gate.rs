//! The policy pillar's verdicts on the calls of one request, in the order
//! the engine asks for them: the rules (with a `requireApproval` rule's
//! approval checked), then the limits (counted only for calls nothing else
//! refused), then each approval spent once.
//!
//! Each function takes what it needs as values (the server's name, the
//! caller, the host's shared store) and returns [`Verdict`]s the engine
//! passes on as they are.

use super::limits::{self, Lease};
use super::{Call, Context, Outcome as P, PolicyDecision, PolicySet, approval};
use crate::audit::{LimitNote, Shadow};
use crate::env::{Env, SharedWrite, StoreOf, metrics, random_id};
use crate::identity::Identity;
use crate::mcp::{Message, Target};
use crate::verdict::{ApprovalState, DenyCause, Verdict};
use ed25519_dalek::VerifyingKey;

/// The header a client retries a `requireApproval` call with.
pub const APPROVAL_HEADER: &str = "x-mcp-approval";

/// What an approval is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Approvals<'a> {
    /// Keys that sign approvals (`Settings.spec.approvals.keys`).
    pub keys: &'a [VerifyingKey],
    /// Longest approval accepted, in seconds.
    pub max_ttl: u64,
    /// The token the request carried in `x-mcp-approval`, if any.
    pub token: Option<&'a str>,
    /// The caller's subject (`-` without identity).
    pub subject: Option<&'a str>,
    pub now_unix: u64,
}

/// The rules' say on a call the registry allows (`registry`, passed on when
/// no rule concerns the call).
pub fn rules(
    policy: &PolicySet,
    call: &Call,
    ctx: &Context,
    enforce: bool,
    registry: Verdict,
    approvals: &Approvals,
) -> Verdict {
    let d = policy.decide(call, ctx, enforce);
    let mut v = match d.outcome {
        P::Registry => registry,
        P::Permit => Verdict::allow(d.reason.clone(), d.rules.first().cloned()),
        P::Forbid | P::NoPermit => Verdict::deny(
            DenyCause::Policy,
            d.reason.clone(),
            d.rules
                .first()
                .cloned()
                .or_else(|| Some("Policy#default-deny".into())),
        ),
        P::RequireApproval => approval(call, &d, approvals),
    };
    v.rules = d.rules;
    v.shadow = d.shadow;
    v.policy_errors = d.errors;
    v
}

/// A `requireApproval` call: allowed with a valid, unspent approval for
/// exactly this call, else refused with the id to approve.
fn approval(call: &Call, d: &PolicyDecision, approvals: &Approvals) -> Verdict {
    let rule = d.rules.first().cloned().unwrap_or_default();
    let binding = approval::Binding {
        sub: approvals.subject.unwrap_or("-").to_owned(),
        srv: call.server.to_owned(),
        tool: call.target.map(|(_, n)| n.to_owned()).unwrap_or_default(),
        args: approval::arguments_hash(call.arguments),
        rule: rule.clone(),
    };
    let id = approval::approval_id(&binding);
    let checked = approvals.token.map(|t| {
        approval::verify(
            t,
            approvals.keys,
            &id,
            approvals.now_unix,
            approvals.max_ttl,
        )
    });
    match checked {
        Some(Ok(grant)) => {
            let mut v = Verdict::allow(format!("approved call ({})", d.reason), Some(rule));
            v.approval = Some(ApprovalState {
                id,
                binding,
                jti: Some(grant.jti),
                error: None,
            });
            v
        }
        other => {
            let error = match other {
                Some(Err(e)) => Some(e),
                _ => None,
            };
            let reason = match &error {
                Some(e) => format!("{}; the approval sent was not accepted: {e}", d.reason),
                None => format!(
                    "{}; retry with an approval token in {APPROVAL_HEADER}",
                    d.reason
                ),
            };
            let mut v = Verdict::deny(DenyCause::ApprovalRequired, reason, Some(rule));
            v.approval = Some(ApprovalState {
                id,
                binding,
                jti: None,
                error,
            });
            v
        }
    }
}

/// What counting a request against the limits did.
#[derive(Debug, Default)]
pub struct Counted {
    /// A limit refused a call (its verdict says which); every slot this
    /// request took was given back.
    pub refused: bool,
    /// Limits marked `global`, for Envoy's rate-limit filter.
    pub global: Vec<String>,
}

/// Counts each call against the limits that cover it; shadow limits only
/// note what they would do. Concurrency leases taken go to `leases`, held
/// until the stream ends ([`release`]).
#[allow(clippy::too_many_arguments)]
pub fn limits(
    policy: &PolicySet,
    enforce_all: bool,
    server: &str,
    identity: Option<&Identity>,
    messages: &[Message],
    decisions: &mut [Verdict],
    env: &mut dyn Env,
    leases: &mut Vec<Lease>,
    fleet: &[(String, Option<limits::LimitVerdict>)],
) -> Counted {
    let mut counted = Counted::default();
    if policy.limits.is_empty() {
        return counted;
    }
    let now = env.now_nanos();
    for (msg, verdict) in messages.iter().zip(decisions.iter_mut()) {
        let Some(method) = msg.method.as_deref() else {
            continue;
        };
        let tool = match &msg.target {
            Target::Tool(t) => Some(t.as_str()),
            Target::Resource(r) => Some(r.as_str()),
            Target::Prompt(p) => Some(p.as_str()),
            Target::None | Target::Task(_) => None,
        };
        let keys = limits::Keys {
            tenant: identity.and_then(|i| i.tenant.as_deref()),
            subject: identity.map(|i| i.subject.as_str()),
            agent: identity.and_then(|i| i.agent.as_deref()),
            server,
            method,
            tool,
        };
        for limit in policy.limits.iter().filter(|l| l.applies(&keys)) {
            if limit.global {
                if !counted.global.contains(&limit.id) {
                    counted.global.push(limit.id.clone());
                }
                continue;
            }
            let lease_id = random_id(env);
            let enforced = limit.enforce && enforce_all;
            let answer = fleet
                .iter()
                .find(|(k, _)| *k == limit.bucket_key(&keys))
                .and_then(|(_, v)| v.clone());
            let verdict_of = if limit.scope != limits::Scope::Fleet {
                limit.check(&mut StoreOf(env), &keys, now, &lease_id)
            } else if let Some(v) = answer {
                v
            } else {
                // No answer from the fleet state service (unreachable,
                // timed out, an error, or a question this build does not
                // ask): the limit's failClosed decides, never a silent
                // local count.
                if !limit.fail_closed {
                    verdict.limit = Some(LimitNote {
                        id: limit.id.clone(),
                        kind: "fleet-unavailable",
                        retry_after: 0,
                        enforced: false,
                    });
                    continue;
                }
                limits::LimitVerdict::Over {
                    retry_after: 1,
                    kind: "fleet-unavailable",
                    reason: "the fleet state service did not answer for this fleet limit; refused (failClosed)".into(),
                }
            };
            match verdict_of {
                limits::LimitVerdict::Within(lease) => {
                    if let Some(lease) = lease {
                        leases.push(lease);
                    }
                }
                limits::LimitVerdict::Over {
                    retry_after,
                    kind,
                    reason,
                } => {
                    let note = LimitNote {
                        id: limit.id.clone(),
                        kind,
                        retry_after,
                        enforced,
                    };
                    if enforced {
                        *verdict = Verdict::deny(
                            DenyCause::Limit,
                            format!("{reason} ({})", limit.id),
                            Some(limit.id.clone()),
                        );
                        verdict.limit = Some(note);
                        counted.refused = true;
                        break;
                    }
                    verdict.shadow = Some(Shadow {
                        decision: "deny",
                        rules: vec![limit.id.clone()],
                    });
                    verdict.limit = Some(note);
                }
            }
        }
        if counted.refused {
            break;
        }
    }
    if counted.refused {
        release(env, leases);
        env.count(metrics::RATE_LIMITED, 1);
    }
    counted
}

/// The fleet's part in spending approvals: the fleet service's answers
/// (spend key, first?) and the rules whose grants it spends.
#[derive(Debug, Clone, Copy)]
pub struct FleetSpends<'a> {
    pub answers: &'a [(String, Option<bool>)],
    pub rules: &'a std::collections::BTreeSet<String>,
}

impl FleetSpends<'_> {
    /// Whether `v`'s approval is spent by the fleet (its rule's `scope`).
    pub fn covers(&self, v: &Verdict) -> bool {
        spent_by_fleet(self.rules, v)
    }
}

/// Whether `v`'s approval rule is one of `fleet_rules` (a bundle's
/// `fleet_approval_rules`): its grant is spent by the fleet service.
pub fn spent_by_fleet(fleet_rules: &std::collections::BTreeSet<String>, v: &Verdict) -> bool {
    v.rule.as_ref().is_some_and(|r| fleet_rules.contains(r))
}

/// Records each approval of this request as spent, atomically across VMs
/// (or, for a rule of `fleet`, as the fleet service answered). `false`
/// (and that verdict refused) if one was already spent.
pub fn spend_approvals(
    env: &mut dyn Env,
    decisions: &mut [Verdict],
    fleet: Option<FleetSpends<'_>>,
) -> bool {
    let mut ok = true;
    for v in decisions.iter_mut() {
        let by_fleet = fleet.filter(|f| f.covers(v));
        let Some(state) = v.approval.as_mut() else {
            continue;
        };
        let Some(jti) = state.jti.clone() else {
            continue;
        };
        let key = spend_key(&jti);
        let error = match by_fleet {
            // Spent by the fleet state service (asked before the decision,
            // engine/fleet.rs): the first spend anywhere in the fleet counts.
            Some(f) => match f.answers.iter().find(|(k, _)| *k == key) {
                Some((_, Some(true))) => None,
                Some((_, Some(false))) => Some(approval::ApprovalError::AlreadyUsed),
                _ => Some(approval::ApprovalError::FleetUnavailable),
            },
            None => {
                let written = env.shared_write(&key, state.id.as_bytes(), None);
                // Conflict: spent already. Unavailable: single use cannot
                // be kept without a shared store, so it is refused the same
                // way.
                (written != SharedWrite::Written).then_some(approval::ApprovalError::AlreadyUsed)
            }
        };
        let Some(error) = error else {
            env.count(metrics::APPROVALS_GRANTED, 1);
            continue;
        };
        ok = false;
        let rule = v.rule.clone();
        let mut refused = Verdict::deny(
            DenyCause::ApprovalRequired,
            format!("the approval sent was not accepted: {error}"),
            rule,
        );
        refused.rules = std::mem::take(&mut v.rules);
        refused.approval = Some(ApprovalState {
            jti: None,
            error: Some(error),
            ..state.clone()
        });
        *v = refused;
    }
    ok
}

/// Where a single-use approval is recorded as spent: in shared data, and
/// as the fleet state service's spend key.
pub fn spend_key(jti: &str) -> String {
    format!("portcullis.approval/{jti}")
}

/// Gives back every concurrency slot in `leases`: a proxy slot in shared
/// data now, a fleet lease through [`Env::enqueue_release`] (the root
/// context asks the fleet state service; a lost release expires).
pub fn release(env: &mut dyn Env, leases: &mut Vec<Lease>) {
    let now = env.now_nanos();
    for lease in std::mem::take(leases) {
        if lease.fleet {
            use prost::Message as _;
            let req = crate::fleet::api::ReleaseLeaseRequest {
                key: lease.key,
                lease_id: lease.id,
            };
            if !env.enqueue_release(&req.encode_to_vec()) {
                env.count(metrics::FLEET_RELEASE_LOST, 1);
            }
            continue;
        }
        limits::release(&mut StoreOf(env), &lease, now);
    }
}

/// Whether a call `ctx` could make to `call`'s target is one the rules
/// allow to be seen at all (list results are filtered by it).
pub fn visible(policy: &PolicySet, call: &Call, ctx: &Context, enforce: bool) -> bool {
    policy.rules.is_empty() || policy.visible(call, ctx, enforce)
}

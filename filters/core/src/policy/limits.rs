//! Rate, concurrency and budget limits, kept in the host's shared store with
//! compare-and-swap so every worker VM of a proxy counts against the same
//! numbers.
//!
//! Why shaped so: Envoy runs one VM per worker thread, and proxy-wasm shared
//! data (with its `cas`) is the only state they have in common. Every update
//! is a read-modify-write retried on `CasMismatch`, never a blind write; a
//! key that does not exist yet is written with no cas (see
//! [`crate::env::SharedStore::put`]; the host refuses it if another VM
//! created the key first). If the store cannot be used at all the limit fails
//! closed: the call is refused, not waved through uncounted.
//!
//! State is small text (`tokens last_ns`, `day used`, `lease:expiry,...`)
//! so it is readable in a dump of the store.

use crate::glob::GlobSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::env::{SharedStore, SharedWrite as Write};

/// Retries of one read-modify-write before giving up (and refusing).
const MAX_TRIES: usize = 64;

/// `limits[]` in a Policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitSpec {
    pub id: String,
    /// McpServer names or globs; empty: all.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Tool names or globs; empty: every call the limit's methods cover.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Methods counted; default `tools/call`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// What one bucket is per: any of tenant, subject, agent, server, tool.
    /// Empty: one bucket for everything the limit covers.
    #[serde(default)]
    pub key: Vec<KeyPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// Calls in flight at once, per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// Also name this limit to Envoy's global rate-limit filter
    /// (`x-mcp-rate-limit`, docs/policy.md), for limits shared by a fleet.
    #[serde(default)]
    pub global: bool,
    /// `proxy` (default): counted in this proxy's shared data. `fleet`:
    /// counted by the fleet state service (Settings.spec.fleet,
    /// docs/fleet.md), one count for every proxy.
    #[serde(default)]
    pub scope: Scope,
    /// `scope: fleet` only. `true` (default): when the fleet service cannot
    /// answer, the call is refused with a clear error and a record. `false`:
    /// it passes, and its record says it went uncounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<bool>,
}

/// Where a limit is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    #[default]
    Proxy,
    Fleet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyPart {
    Tenant,
    Subject,
    Agent,
    Server,
    Tool,
}

/// A token bucket: `requests` per `per`, holding at most `burst`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateSpec {
    pub requests: u64,
    /// `30s`, `1m`, `1h`, `1d`.
    pub per: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

/// Units per UTC day; each call costs its tool's units.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetSpec {
    pub units_per_day: u64,
    /// Tool name or glob → units per call.
    #[serde(default)]
    pub costs: BTreeMap<String, u64>,
    #[serde(default = "one")]
    pub default_cost: u64,
}

fn one() -> u64 {
    1
}

/// The RLS v3 unit of a fleet rate's window (`per` of exactly one).
fn fleet_unit(per_ns: u64) -> Option<crate::fleet::rls::Unit> {
    use crate::fleet::rls::Unit;
    Some(match per_ns / 1_000_000_000 {
        1 => Unit::Second,
        60 => Unit::Minute,
        3_600 => Unit::Hour,
        86_400 => Unit::Day,
        _ => return None,
    })
}

#[derive(Debug)]
enum Kind {
    Rate {
        requests: u64,
        per_ns: u64,
        burst: u64,
    },
    Concurrency {
        max: u32,
    },
    Budget {
        units: u64,
        costs: Option<GlobSet>,
        cost_values: Vec<u64>,
        default_cost: u64,
    },
}

/// A compiled limit.
#[derive(Debug)]
pub struct Limit {
    /// `Policy/<name>#<id>`.
    pub id: String,
    pub enforce: bool,
    pub global: bool,
    pub scope: Scope,
    /// `scope: fleet`: refuse when the fleet service cannot answer.
    pub fail_closed: bool,
    servers: Vec<String>,
    tools: Option<GlobSet>,
    methods: Vec<String>,
    key: Vec<KeyPart>,
    kind: Kind,
}

/// A `scope: fleet` limit's question to the fleet state service.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetAsk {
    /// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
    Rls(crate::fleet::rls::RateLimitRequest),
    /// `portcullis.fleet.v1.Fleet/AcquireLease`.
    Lease(crate::fleet::api::AcquireLeaseRequest),
}

/// A concurrency slot held until the call's stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub id: String,
    /// Held by the fleet state service (`scope: fleet`), not in shared data.
    pub fleet: bool,
}

/// What a limit said about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitVerdict {
    Within(Option<Lease>),
    Over {
        /// Seconds until a retry could succeed (`Retry-After`).
        retry_after: u64,
        /// `rate`, `concurrency` or `budget`.
        kind: &'static str,
        reason: String,
    },
}

/// The call attributes a limit is keyed by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys<'a> {
    pub tenant: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub server: &'a str,
    pub method: &'a str,
    pub tool: Option<&'a str>,
}

/// How long a concurrency slot is held at most if its stream never ends
/// (a VM that died mid-call must not hold the slot forever).
pub const LEASE_NANOS: u64 = 300 * 1_000_000_000;

pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration; write e.g. 30s, 1m, 1h or 1d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let nanos = n
        .checked_mul(secs)
        .and_then(|s| s.checked_mul(1_000_000_000))
        .filter(|n| *n > 0)
        .ok_or_else(bad)?;
    Ok(nanos)
}

pub(super) fn compile(
    doc: &str,
    doc_enforce: bool,
    l: &LimitSpec,
    server_names: &[String],
) -> Result<Limit, (String, String)> {
    if crate::spec::check_name(&l.id).is_err() {
        return Err((
            "/id".into(),
            "a limit id is a short lowercase name (letters, digits, '-')".into(),
        ));
    }
    let servers =
        super::server_selector(&l.servers, server_names).map_err(|m| ("/servers".to_owned(), m))?;
    let tools = if l.tools.is_empty() {
        None
    } else {
        Some(GlobSet::new(&l.tools).map_err(|e| ("/tools".to_owned(), e.to_string()))?)
    };
    for m in &l.methods {
        if !crate::mcp::is_known_method(m) {
            return Err(("/methods".into(), format!("{m:?} is not an MCP method")));
        }
    }
    let kinds = [
        l.rate.is_some(),
        l.concurrency.is_some(),
        l.budget.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err((
            String::new(),
            "a limit is exactly one of rate, concurrency or budget; write two limits for two"
                .into(),
        ));
    }
    let kind = if let Some(r) = &l.rate {
        if r.requests == 0 {
            return Err(("/rate/requests".into(), "at least 1".into()));
        }
        let per_ns = parse_duration(&r.per).map_err(|m| ("/rate/per".to_owned(), m))?;
        let burst = r.burst.unwrap_or(r.requests);
        if burst == 0 {
            return Err(("/rate/burst".into(), "at least 1".into()));
        }
        Kind::Rate {
            requests: r.requests,
            per_ns,
            burst,
        }
    } else if let Some(max) = l.concurrency {
        if max == 0 {
            return Err(("/concurrency".into(), "at least 1".into()));
        }
        Kind::Concurrency { max }
    } else if let Some(b) = &l.budget {
        let patterns: Vec<&String> = b.costs.keys().collect();
        let costs = if patterns.is_empty() {
            None
        } else {
            Some(GlobSet::new(&patterns).map_err(|e| ("/budget/costs".to_owned(), e.to_string()))?)
        };
        Kind::Budget {
            units: b.units_per_day,
            costs,
            cost_values: b.costs.values().copied().collect(),
            default_cost: b.default_cost,
        }
    } else {
        return Err((
            String::new(),
            "a limit needs rate, concurrency or budget".into(),
        ));
    };
    if l.scope == Scope::Proxy && l.fail_closed.is_some() {
        return Err((
            "/failClosed".into(),
            "failClosed is what a `scope: fleet` limit does when the fleet service cannot answer; a proxy limit has no service".into(),
        ));
    }
    if l.scope == Scope::Fleet {
        if l.global {
            return Err((
                "/global".into(),
                "a fleet limit is already counted once for every proxy; drop `global` (Envoy's rate-limit filter) or `scope: fleet`".into(),
            ));
        }
        if let Kind::Rate { per_ns, .. } = &kind {
            // RLS v3 counts fixed windows of one unit.
            if fleet_unit(*per_ns).is_none() {
                return Err((
                    "/rate/per".into(),
                    "a fleet rate is counted in fixed windows of one unit: write 1s, 1m, 1h or 1d"
                        .into(),
                ));
            }
            if l.rate.as_ref().is_some_and(|r| r.burst.is_some()) {
                return Err((
                    "/rate/burst".into(),
                    "a fleet rate has no burst: its window admits `requests` at any pace".into(),
                ));
            }
        }
    }
    Ok(Limit {
        id: format!("Policy/{doc}#{}", l.id),
        enforce: doc_enforce && l.enforce.unwrap_or(true),
        global: l.global,
        scope: l.scope,
        fail_closed: l.fail_closed.unwrap_or(true),
        servers,
        tools,
        methods: if l.methods.is_empty() {
            vec!["tools/call".into()]
        } else {
            l.methods.clone()
        },
        key: l.key.clone(),
        kind,
    })
}

impl Limit {
    /// Whether this limit counts the call.
    pub fn applies(&self, keys: &Keys) -> bool {
        self.servers.iter().any(|s| s == keys.server)
            && self.methods.iter().any(|m| m == keys.method)
            && match &self.tools {
                None => true,
                Some(g) => keys.tool.is_some_and(|t| g.is_match(t)),
            }
    }

    /// The shared-store key of the bucket this call counts in.
    pub fn bucket_key(&self, keys: &Keys) -> String {
        let mut key = format!("portcullis.limit/{}", self.id);
        for part in &self.key {
            let (name, value) = match part {
                KeyPart::Tenant => ("tenant", keys.tenant),
                KeyPart::Subject => ("subject", keys.subject),
                KeyPart::Agent => ("agent", keys.agent),
                KeyPart::Server => ("server", Some(keys.server)),
                KeyPart::Tool => ("tool", keys.tool),
            };
            key.push('/');
            key.push_str(name);
            key.push('=');
            // Values are caller-controlled text: keep the key unambiguous.
            for c in value.unwrap_or("-").chars() {
                match c {
                    '/' | '%' | '=' => key.push_str(&format!("%{:02X}", c as u32)),
                    c if c.is_control() => {}
                    c => key.push(c),
                }
            }
        }
        key
    }

    /// What to ask the fleet state service for this call (`scope: fleet`):
    /// an RLS v3 request carrying the bundle's limit and the call's cost, or
    /// a concurrency lease. The bucket key is the same as a proxy limit's.
    pub fn fleet_ask(&self, keys: &Keys, domain: &str, lease_ttl_ms: u64) -> Option<FleetAsk> {
        use crate::fleet::{api, rls};
        let key = self.bucket_key(keys);
        match &self.kind {
            Kind::Rate {
                requests, per_ns, ..
            } => Some(FleetAsk::Rls(rls::request(
                domain,
                &[("limit", &key)],
                u32::try_from(*requests).unwrap_or(u32::MAX),
                fleet_unit(*per_ns)?,
                1,
            ))),
            Kind::Budget { units, .. } => Some(FleetAsk::Rls(rls::request(
                domain,
                &[("limit", &key)],
                u32::try_from(*units).unwrap_or(u32::MAX),
                rls::Unit::Day,
                u32::try_from(self.cost(keys)).unwrap_or(u32::MAX),
            ))),
            Kind::Concurrency { max } => Some(FleetAsk::Lease(api::AcquireLeaseRequest {
                key,
                limit: *max,
                ttl_ms: lease_ttl_ms,
            })),
        }
    }

    /// The fleet service's answer to [`Limit::fleet_ask`] as a verdict. An
    /// answer that is not a clear yes or no is `None`: the caller applies
    /// `failClosed`.
    pub fn fleet_verdict(&self, ask: &FleetAsk, answer: &[u8]) -> Option<LimitVerdict> {
        use crate::fleet::{api, rls};
        use prost::Message as _;
        match ask {
            FleetAsk::Rls(_) => match rls::verdict(answer) {
                rls::Verdict::Allow { .. } => Some(LimitVerdict::Within(None)),
                rls::Verdict::OverLimit { reset_seconds } => {
                    let (kind, what) = match &self.kind {
                        Kind::Budget { units, .. } => (
                            "budget",
                            format!("daily budget of {units} units spent (fleet-wide)"),
                        ),
                        Kind::Rate {
                            requests, per_ns, ..
                        } => (
                            "rate",
                            format!(
                                "rate limit of {requests} per {}s reached (fleet-wide)",
                                per_ns / 1_000_000_000
                            ),
                        ),
                        Kind::Concurrency { .. } => return None,
                    };
                    Some(LimitVerdict::Over {
                        retry_after: reset_seconds.unwrap_or(1).max(1),
                        kind,
                        reason: what,
                    })
                }
                rls::Verdict::Invalid(_) => None,
            },
            FleetAsk::Lease(req) => {
                let r = api::AcquireLeaseResponse::decode(answer).ok()?;
                if r.granted {
                    (!r.lease_id.is_empty()).then(|| {
                        LimitVerdict::Within(Some(Lease {
                            key: req.key.clone(),
                            id: r.lease_id,
                            fleet: true,
                        }))
                    })
                } else {
                    Some(LimitVerdict::Over {
                        retry_after: 1,
                        kind: "concurrency",
                        reason: format!("{} calls already in flight (fleet-wide)", req.limit),
                    })
                }
            }
        }
    }

    /// A budget's cost for this call (1 for other kinds).
    fn cost(&self, keys: &Keys) -> u64 {
        match &self.kind {
            Kind::Budget {
                costs,
                cost_values,
                default_cost,
                ..
            } => keys
                .tool
                .and_then(|t| costs.as_ref().and_then(|g| g.first_match(t)))
                .and_then(|i| cost_values.get(i).copied())
                .unwrap_or(*default_cost),
            _ => 1,
        }
    }

    /// Counts the call and says whether it is within the limit.
    pub fn check(
        &self,
        store: &mut dyn SharedStore,
        keys: &Keys,
        now_ns: u64,
        lease_id: &str,
    ) -> LimitVerdict {
        let key = self.bucket_key(keys);
        match &self.kind {
            Kind::Rate {
                requests,
                per_ns,
                burst,
            } => rate(store, &key, *requests, *per_ns, *burst, now_ns),
            Kind::Concurrency { max } => acquire(store, &key, *max, now_ns, lease_id),
            Kind::Budget {
                units,
                costs,
                cost_values,
                default_cost,
            } => {
                let cost = keys
                    .tool
                    .and_then(|t| costs.as_ref().and_then(|g| g.first_match(t)))
                    .and_then(|i| cost_values.get(i).copied())
                    .unwrap_or(*default_cost);
                budget(store, &key, *units, cost, now_ns)
            }
        }
    }
}

/// One read-modify-write: `update(current)` gives the new value and the
/// verdict, or `None` to leave the store as it is and answer `verdict`.
fn transact(
    store: &mut dyn SharedStore,
    key: &str,
    mut update: impl FnMut(Option<&str>) -> (Option<String>, LimitVerdict),
) -> LimitVerdict {
    for _ in 0..MAX_TRIES {
        let current = store.get(key);
        let text = current
            .as_ref()
            .and_then(|(v, _)| std::str::from_utf8(v).ok());
        let (new, verdict) = update(text.filter(|t| !t.is_empty()));
        let Some(new) = new else {
            return verdict;
        };
        match store.put(key, new.as_bytes(), current.map(|(_, cas)| cas)) {
            Write::Written => return verdict,
            Write::Conflict => continue,
            Write::Unavailable => {
                return LimitVerdict::Over {
                    retry_after: 1,
                    kind: "unavailable",
                    reason: "the proxy has no shared store to count this limit in; refused rather than uncounted".into(),
                };
            }
        }
    }
    LimitVerdict::Over {
        retry_after: 1,
        kind: "contended",
        reason: "the limit's counter was updated by too many calls at once; retry".into(),
    }
}

const MICRO: u128 = 1_000_000;

fn rate(
    store: &mut dyn SharedStore,
    key: &str,
    requests: u64,
    per_ns: u64,
    burst: u64,
    now: u64,
) -> LimitVerdict {
    let cap = u128::from(burst) * MICRO;
    transact(store, key, |current| {
        let (tokens, last) = current
            .and_then(|t| {
                let (a, b) = t.split_once(' ')?;
                Some((a.parse::<u128>().ok()?, b.parse::<u64>().ok()?))
            })
            .unwrap_or((cap, now));
        let elapsed = u128::from(now.saturating_sub(last));
        let refill = elapsed * u128::from(requests) * MICRO / u128::from(per_ns);
        let tokens = (tokens + refill).min(cap);
        if tokens >= MICRO {
            (
                Some(format!("{} {now}", tokens - MICRO)),
                LimitVerdict::Within(None),
            )
        } else {
            let missing = MICRO - tokens;
            let wait_ns = missing * u128::from(per_ns) / (u128::from(requests) * MICRO);
            let retry_after = (wait_ns / 1_000_000_000 + 1) as u64;
            // Keep the refill we computed, so the next caller's arithmetic
            // starts from now.
            (
                Some(format!("{tokens} {now}")),
                LimitVerdict::Over {
                    retry_after,
                    kind: "rate",
                    reason: format!(
                        "rate limit of {requests} per {}s reached",
                        per_ns / 1_000_000_000
                    ),
                },
            )
        }
    })
}

fn acquire(
    store: &mut dyn SharedStore,
    key: &str,
    max: u32,
    now: u64,
    lease_id: &str,
) -> LimitVerdict {
    transact(store, key, |current| {
        let mut leases: Vec<(&str, u64)> = live_leases(current, now);
        if leases.len() >= max as usize {
            let soonest = leases.iter().map(|(_, e)| *e).min().unwrap_or(now);
            return (
                None,
                LimitVerdict::Over {
                    retry_after: 1.max((soonest.saturating_sub(now)) / 1_000_000_000).min(5),
                    kind: "concurrency",
                    reason: format!("{max} calls are already in flight for this key"),
                },
            );
        }
        leases.push((lease_id, now + LEASE_NANOS));
        (
            Some(render_leases(&leases)),
            LimitVerdict::Within(Some(Lease {
                key: key.to_owned(),
                id: lease_id.to_owned(),
                fleet: false,
            })),
        )
    })
}

fn live_leases(current: Option<&str>, now: u64) -> Vec<(&str, u64)> {
    current
        .unwrap_or("")
        .split(',')
        .filter_map(|l| {
            let (id, exp) = l.split_once(':')?;
            Some((id, exp.parse::<u64>().ok()?))
        })
        .filter(|(_, exp)| *exp > now)
        .collect()
}

fn render_leases(leases: &[(&str, u64)]) -> String {
    leases
        .iter()
        .map(|(id, exp)| format!("{id}:{exp}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Gives a concurrency slot back (the call's stream ended).
pub fn release(store: &mut dyn SharedStore, lease: &Lease, now: u64) {
    let _ = transact(store, &lease.key, |current| {
        let leases: Vec<(&str, u64)> = live_leases(current, now)
            .into_iter()
            .filter(|(id, _)| *id != lease.id)
            .collect();
        (Some(render_leases(&leases)), LimitVerdict::Within(None))
    });
}

fn budget(store: &mut dyn SharedStore, key: &str, units: u64, cost: u64, now: u64) -> LimitVerdict {
    let day = now / (86_400 * 1_000_000_000);
    transact(store, key, |current| {
        let used = current
            .and_then(|t| {
                let (d, u) = t.split_once(' ')?;
                (d.parse::<u64>().ok()? == day).then(|| u.parse::<u64>().ok())?
            })
            .unwrap_or(0);
        if used.saturating_add(cost) > units {
            let next_midnight = (day + 1) * 86_400;
            let retry_after = next_midnight.saturating_sub(now / 1_000_000_000).max(1);
            return (
                None,
                LimitVerdict::Over {
                    retry_after,
                    kind: "budget",
                    reason: format!(
                        "daily budget of {units} units spent ({used} used; this call costs {cost})"
                    ),
                },
            );
        }
        (
            Some(format!("{day} {}", used + cost)),
            LimitVerdict::Within(None),
        )
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem {
        map: HashMap<String, (Vec<u8>, u32)>,
        next: u32,
    }

    impl SharedStore for Mem {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.get(key).cloned()
        }
        fn put(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Write {
            let cur = self.map.get(key).map(|(_, c)| *c);
            if cur != cas {
                return Write::Conflict;
            }
            self.next += 1;
            self.map.insert(key.into(), (value.to_vec(), self.next));
            Write::Written
        }
    }

    fn spec(yaml_json: serde_json::Value) -> LimitSpec {
        serde_json::from_value(yaml_json).unwrap()
    }

    fn compiled(v: serde_json::Value) -> Result<Limit, (String, String)> {
        compile("p", true, &spec(v), &["files".to_string()])
    }

    #[test]
    fn fleet_scope_is_checked_where_it_is_written() {
        let ok = compiled(serde_json::json!({
            "id": "calls", "rate": {"requests": 25, "per": "1m"}, "scope": "fleet"
        }))
        .unwrap();
        assert_eq!(ok.scope, Scope::Fleet);
        assert!(ok.fail_closed, "failClosed defaults to true");
        let e = compiled(serde_json::json!({
            "id": "calls", "rate": {"requests": 25, "per": "30s"}, "scope": "fleet"
        }))
        .unwrap_err();
        assert_eq!(e.0, "/rate/per");
        let e = compiled(serde_json::json!({
            "id": "calls", "rate": {"requests": 25, "per": "1m", "burst": 5}, "scope": "fleet"
        }))
        .unwrap_err();
        assert_eq!(e.0, "/rate/burst");
        let e = compiled(serde_json::json!({
            "id": "calls", "rate": {"requests": 25, "per": "1m"}, "failClosed": false
        }))
        .unwrap_err();
        assert_eq!(e.0, "/failClosed", "no service to fail on");
        let e = compiled(serde_json::json!({
            "id": "calls", "rate": {"requests": 25, "per": "1m"}, "scope": "fleet", "global": true
        }))
        .unwrap_err();
        assert_eq!(e.0, "/global");
        let open = compiled(serde_json::json!({
            "id": "b", "budget": {"unitsPerDay": 100}, "scope": "fleet", "failClosed": false
        }))
        .unwrap();
        assert!(!open.fail_closed);
    }

    #[test]
    fn fleet_asks_carry_the_bundle_limit_and_the_cost() {
        use crate::fleet::{api, rls};
        use prost::Message as _;
        let keys = Keys {
            server: "files",
            method: "tools/call",
            tool: Some("search"),
            subject: Some("alice"),
            ..Default::default()
        };
        let budget = compiled(serde_json::json!({
            "id": "b", "key": ["subject"], "scope": "fleet",
            "budget": {"unitsPerDay": 10, "costs": {"search": 4}}
        }))
        .unwrap();
        let ask = budget.fleet_ask(&keys, "portcullis", 300_000).unwrap();
        let FleetAsk::Rls(req) = &ask else {
            panic!("{ask:?}")
        };
        assert_eq!(req.hits_addend, 4, "the tool's cost");
        let d = &req.descriptors[0];
        assert_eq!(
            d.entries[0].value,
            "portcullis.limit/Policy/p#b/subject=alice"
        );
        assert_eq!(d.limit.as_ref().unwrap().requests_per_unit, 10);
        assert_eq!(d.limit.as_ref().unwrap().unit, rls::Unit::Day as i32);
        let over = rls::RateLimitResponse {
            overall_code: rls::Code::OverLimit as i32,
            statuses: vec![rls::DescriptorStatus {
                code: rls::Code::OverLimit as i32,
                duration_until_reset: Some(rls::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        };
        match budget.fleet_verdict(&ask, &over.encode_to_vec()) {
            Some(LimitVerdict::Over {
                kind, retry_after, ..
            }) => assert_eq!((kind, retry_after), ("budget", 3600)),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            budget.fleet_verdict(&ask, b"\xff\xff"),
            None,
            "garbage is no answer: failClosed decides"
        );
        let conc = compiled(serde_json::json!({
            "id": "c", "concurrency": 1, "scope": "fleet"
        }))
        .unwrap();
        let ask = conc.fleet_ask(&keys, "portcullis", 300_000).unwrap();
        let granted = api::AcquireLeaseResponse {
            granted: true,
            lease_id: "7".into(),
            active: 1,
        };
        match conc.fleet_verdict(&ask, &granted.encode_to_vec()) {
            Some(LimitVerdict::Within(Some(lease))) => assert_eq!(lease.id, "7"),
            v => panic!("{v:?}"),
        }
        let refused = api::AcquireLeaseResponse {
            granted: false,
            lease_id: String::new(),
            active: 1,
        };
        assert!(matches!(
            conc.fleet_verdict(&ask, &refused.encode_to_vec()),
            Some(LimitVerdict::Over {
                kind: "concurrency",
                ..
            })
        ));
    }

    #[test]
    fn bucket_refills_and_says_when() {
        let mut m = Mem::default();
        let s = 1_000_000_000u64;
        for _ in 0..3 {
            assert_eq!(
                rate(&mut m, "k", 3, 60 * s, 3, 0),
                LimitVerdict::Within(None)
            );
        }
        match rate(&mut m, "k", 3, 60 * s, 3, s) {
            LimitVerdict::Over {
                retry_after, kind, ..
            } => {
                assert_eq!(kind, "rate");
                assert_eq!(retry_after, 20);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            rate(&mut m, "k", 3, 60 * s, 3, 21 * s),
            LimitVerdict::Within(None)
        );
    }

    #[test]
    fn leases_expire_and_release() {
        let mut m = Mem::default();
        assert!(matches!(
            acquire(&mut m, "c", 1, 0, "a"),
            LimitVerdict::Within(Some(_))
        ));
        assert!(matches!(
            acquire(&mut m, "c", 1, 1, "b"),
            LimitVerdict::Over { .. }
        ));
        release(
            &mut m,
            &Lease {
                key: "c".into(),
                id: "a".into(),
                fleet: false,
            },
            2,
        );
        assert!(matches!(
            acquire(&mut m, "c", 1, 3, "b"),
            LimitVerdict::Within(Some(_))
        ));
        assert!(matches!(
            acquire(&mut m, "c", 1, 4 + LEASE_NANOS, "c"),
            LimitVerdict::Within(Some(_))
        ));
    }

    #[test]
    fn budget_resets_each_day() {
        let mut m = Mem::default();
        let day = 86_400 * 1_000_000_000u64;
        assert_eq!(budget(&mut m, "b", 10, 6, 5), LimitVerdict::Within(None));
        assert!(matches!(
            budget(&mut m, "b", 10, 6, 6),
            LimitVerdict::Over { kind: "budget", .. }
        ));
        assert_eq!(
            budget(&mut m, "b", 10, 6, day + 1),
            LimitVerdict::Within(None)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m").unwrap(), 60_000_000_000);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 m").is_err());
        assert!(parse_duration("m").is_err());
    }
}

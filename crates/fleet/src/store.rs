//! Fleet state in Redis. Every decision is one atomic step on the Redis
//! server (a Lua script or a single command), so any number of service
//! replicas and proxies share one count.
//!
//! Keys (`P` is the configured prefix; `{..}` are Redis Cluster hash tags,
//! so the keys one script touches live in one slot):
//! - `P:rl:{domain}:entries:unit:window` fixed-window counters;
//! - `P:lease:{key}` a sorted set of lease ids scored by expiry (ms), and
//!   `P:lease:{key}:seq` the id sequence;
//! - `P:spend:key` one per spent approval, with the token's lifetime;
//! - `P:{q}` the quarantine hash (server, tool -> entry) and `P:{q}:version`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::fleet::api::{
    AcquireLeaseResponse, AddQuarantineResponse, ListQuarantineResponse, QuarantineEntry,
};
use portcullis_core::fleet::rls::{
    self, Code, DescriptorStatus, RateLimit, RateLimitRequest, RateLimitResponse, Unit,
};
use prost::Message as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Why a request was not decided.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer (down, failing over, timed out): the caller
    /// refuses, fail closed.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The request cannot be decided as asked (no limit, unknown unit).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Check every descriptor, then count all of them or none: a call under
/// two limits consumes both or neither, and a refused call consumes
/// nothing (a budget of 10 with 8 spent refuses a cost of 4 and still
/// admits a cost of 2).
/// KEYS: counters. ARGV: per key, limit, hits, window ms.
/// Returns per key: over (0/1), value, pttl.
const RATE: &str = r#"
local n = #KEYS
local cur = {}
local over = {}
local any = 0
for i = 1, n do
  local limit = tonumber(ARGV[(i - 1) * 3 + 1])
  local hits = tonumber(ARGV[(i - 1) * 3 + 2])
  cur[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if cur[i] + hits > limit then over[i] = 1; any = 1 else over[i] = 0 end
end
if any == 0 then
  for i = 1, n do
    local hits = tonumber(ARGV[(i - 1) * 3 + 2])
    local ttl = tonumber(ARGV[(i - 1) * 3 + 3])
    cur[i] = redis.call('INCRBY', KEYS[i], hits)
    if cur[i] == hits then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
local out = {}
for i = 1, n do
  out[#out + 1] = over[i]
  out[#out + 1] = cur[i]
  out[#out + 1] = redis.call('PTTL', KEYS[i])
end
return out
"#;

/// Expired leases are dropped by Redis's own clock (TIME), so proxies and
/// service replicas with skewed clocks agree.
/// KEYS: the lease set, its id sequence. ARGV: limit, ttl ms.
/// Returns granted (0/1), active, id.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local active = redis.call('ZCARD', KEYS[1])
if active >= tonumber(ARGV[1]) then return {0, active, ''} end
local id = tostring(redis.call('INCR', KEYS[2]))
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, id)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1, active + 1, id}
"#;

/// KEYS: the quarantine hash, its version. ARGV: field, entry bytes.
/// Returns added (0/1), version.
const QUARANTINE_ADD: &str = r#"
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {0, v} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
"#;

/// KEYS: the quarantine hash, its version. Returns version, then the
/// entries' bytes.
const QUARANTINE_LIST: &str = r#"
local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do out[#out + 1] = v end
return out
"#;

#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    prefix: String,
    rate: redis::Script,
    acquire: redis::Script,
    q_add: redis::Script,
    q_list: redis::Script,
}

/// A key part that cannot break out of its place in a key: hash-tag braces
/// and the separator are escaped.
fn part(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '{' | '}' | ':' | '=' | ',' => o.push_str(&format!("%{:02X}", c as u32)),
            _ => o.push(c),
        }
    }
    o
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Store {
    /// Connects to Redis. `timeout` bounds every command and connect, so a
    /// dead Redis makes calls fail fast instead of hanging the proxy's call.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Store> {
        let client = redis::Client::open(url)?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(Store {
            conn,
            prefix: prefix.to_string(),
            rate: redis::Script::new(RATE),
            acquire: redis::Script::new(ACQUIRE),
            q_add: redis::Script::new(QUARANTINE_ADD),
            q_list: redis::Script::new(QUARANTINE_LIST),
        })
    }

    /// RLS v3 ShouldRateLimit over fixed windows. Each descriptor must
    /// carry its limit (`RateLimitOverride`): the bundle owns the limits.
    pub async fn should_rate_limit(
        &self,
        req: &RateLimitRequest,
    ) -> Result<RateLimitResponse, StoreError> {
        if req.descriptors.is_empty() {
            return Err(StoreError::Invalid("no descriptors".into()));
        }
        let now = now();
        let mut script = self.rate.prepare_invoke();
        let mut limits = Vec::new();
        for d in &req.descriptors {
            let Some(l) = &d.limit else {
                return Err(StoreError::Invalid(
                    "descriptor without a limit (RateLimitOverride)".into(),
                ));
            };
            let unit = Unit::try_from(l.unit).unwrap_or(Unit::Unknown);
            let Some(secs) = unit.seconds() else {
                return Err(StoreError::Invalid(format!("unit {}", l.unit)));
            };
            // rls.proto: hits_addend 0 means 1; a descriptor's own wins.
            let hits = d
                .hits_addend
                .map(|h| h.value)
                .unwrap_or(u64::from(req.hits_addend))
                .max(1);
            let window = now.as_secs() / secs;
            let entries: Vec<String> = d
                .entries
                .iter()
                .map(|e| format!("{}={}", part(&e.key), part(&e.value)))
                .collect();
            let key = format!(
                "{}:rl:{{{}}}:{}:{}:{}",
                self.prefix,
                part(&req.domain),
                entries.join(","),
                secs,
                window
            );
            script
                .key(key)
                .arg(l.requests_per_unit)
                .arg(hits)
                .arg(secs * 1000);
            limits.push((l.requests_per_unit, l.unit, secs, window));
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = script.invoke_async(&mut conn).await?;
        let mut statuses = Vec::new();
        let mut overall = Code::Ok;
        for (i, (limit, unit, secs, window)) in limits.into_iter().enumerate() {
            let over = out.get(i * 3).copied().unwrap_or(1) == 1;
            let value = out.get(i * 3 + 1).copied().unwrap_or(0).max(0) as u64;
            let reset = ((window + 1) * secs).saturating_sub(now.as_secs());
            if over {
                overall = Code::OverLimit;
            }
            statuses.push(DescriptorStatus {
                code: if over { Code::OverLimit } else { Code::Ok } as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: limit,
                    unit,
                    name: String::new(),
                }),
                limit_remaining: u64::from(limit).saturating_sub(value) as u32,
                duration_until_reset: Some(rls::Duration {
                    seconds: reset as i64,
                    nanos: 0,
                }),
            });
        }
        Ok(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
        })
    }

    pub async fn acquire_lease(
        &self,
        key: &str,
        limit: u32,
        ttl_ms: u64,
    ) -> Result<AcquireLeaseResponse, StoreError> {
        if ttl_ms == 0 {
            return Err(StoreError::Invalid("a lease needs an expiry".into()));
        }
        let set = format!("{}:lease:{{{}}}", self.prefix, part(key));
        let mut conn = self.conn.clone();
        let (granted, active, id): (i64, i64, String) = self
            .acquire
            .key(&set)
            .key(format!("{set}:seq"))
            .arg(limit)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(AcquireLeaseResponse {
            granted: granted == 1,
            lease_id: id,
            active: active.max(0) as u32,
        })
    }

    pub async fn release_lease(&self, key: &str, lease_id: &str) -> Result<bool, StoreError> {
        let set = format!("{}:lease:{{{}}}", self.prefix, part(key));
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("ZREM")
            .arg(&set)
            .arg(lease_id)
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// `SET NX PX`: exactly one spend of a key is first.
    pub async fn spend(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        if ttl_ms == 0 {
            return Err(StoreError::Invalid("a spend needs a lifetime".into()));
        }
        let mut conn = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(format!("{}:spend:{}", self.prefix, part(key)))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await?;
        Ok(r.is_some())
    }

    fn quarantine_keys(&self) -> (String, String) {
        let h = format!("{}:{{q}}", self.prefix);
        (h.clone(), format!("{h}:version"))
    }

    pub async fn add_quarantine(
        &self,
        entry: &QuarantineEntry,
    ) -> Result<AddQuarantineResponse, StoreError> {
        if entry.server.is_empty() || entry.tool.is_empty() {
            return Err(StoreError::Invalid(
                "quarantine needs server and tool".into(),
            ));
        }
        let (h, v) = self.quarantine_keys();
        let field = format!("{}={}", part(&entry.server), part(&entry.tool));
        let mut conn = self.conn.clone();
        let (added, version): (i64, i64) = self
            .q_add
            .key(h)
            .key(v)
            .arg(field)
            .arg(entry.encode_to_vec())
            .invoke_async(&mut conn)
            .await?;
        Ok(AddQuarantineResponse {
            added: added == 1,
            version: version.max(0) as u64,
        })
    }

    pub async fn list_quarantine(&self) -> Result<ListQuarantineResponse, StoreError> {
        let (h, v) = self.quarantine_keys();
        let mut conn = self.conn.clone();
        let out: Vec<redis::Value> = self.q_list.key(h).key(v).invoke_async(&mut conn).await?;
        let mut it = out.into_iter();
        let version = match it.next() {
            Some(redis::Value::Int(n)) => n.max(0) as u64,
            _ => return Err(StoreError::Unavailable("bad quarantine version".into())),
        };
        let mut entries = Vec::new();
        for v in it {
            let redis::Value::BulkString(b) = v else {
                return Err(StoreError::Unavailable("bad quarantine entry".into()));
            };
            let e = QuarantineEntry::decode(b.as_slice())
                .map_err(|e| StoreError::Unavailable(format!("bad quarantine entry: {e}")))?;
            entries.push(e);
        }
        entries.sort_by(|a, b| (&a.server, &a.tool).cmp(&(&b.server, &b.tool)));
        Ok(ListQuarantineResponse { entries, version })
    }
}

//! The host seam: everything the engine needs from whatever runs it.
//!
//! A leaf module, below everything else in the crate, so that every other
//! module can name the host without depending on the engine: the clock,
//! randomness, host properties (Envoy's attributes), the store every worker
//! VM shares (proxy-wasm shared data, with compare-and-swap) and counters.
//! Adapters implement [`Env`] (the proxy-wasm filter over hostcalls, the
//! component over its WIT imports, tests over memory); nothing in the crate
//! performs I/O of its own.

/// What the engine needs from its host: the seam that adapters implement and
/// tests mock.
pub trait Env {
    /// Wall-clock time, Unix nanoseconds.
    fn now_nanos(&self) -> u64;
    /// Fills `buf` with random bytes (ids, nonces).
    fn random_bytes(&mut self, buf: &mut [u8]);
    /// A host property by path (Envoy: `get_property`), for claims Envoy's
    /// `jwt_authn` filter verified. `None`: absent, or no such host.
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }
    /// A value every VM of this plugin on this proxy sees (proxy-wasm shared
    /// data). `None`: absent, or the host has no shared store.
    fn shared_get(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }
    /// Stores a shared value; `false` when the host cannot.
    fn shared_set(&mut self, _key: &str, _value: &[u8]) -> bool {
        false
    }
    /// A shared value with its cas (proxy-wasm `get_shared_data`).
    fn shared_get_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared_get(key).map(|v| (v, 0))
    }
    /// Writes a shared value if its cas is still `cas`, or with `None` if
    /// the key does not exist yet. The default is a host without cas: the
    /// write is unconditional.
    fn shared_write(&mut self, key: &str, value: &[u8], _cas: Option<u32>) -> SharedWrite {
        if self.shared_set(key, value) {
            SharedWrite::Written
        } else {
            SharedWrite::Unavailable
        }
    }
    /// Adds `delta` to the counter `metric` (dotted name, `portcullis.`…).
    fn count(&mut self, _metric: &str, _delta: u64) {}
    /// Hands a fleet lease to release (an encoded
    /// `portcullis.fleet.v1.ReleaseLeaseRequest`) to whatever outlives this
    /// stream: proxy-wasm's shared queue, drained by the root context, which
    /// makes the call and sees its answer after the stream's context is
    /// gone. `false` when the host has no such queue: the lease then
    /// expires.
    fn enqueue_release(&mut self, _release: &[u8]) -> bool {
        false
    }
}

/// An [`Env`] as a [`SharedStore`] (the limits' view of the host).
pub struct StoreOf<'a>(pub &'a mut dyn Env);

impl SharedStore for StoreOf<'_> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.shared_get_cas(key)
    }
    fn put(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        self.0.shared_write(key, value, cas)
    }
}

/// A store every worker VM of a proxy shares, with compare-and-swap: what
/// limits, approvals and the quarantine keep their state in.
pub trait SharedStore {
    /// The value and its cas, if the key exists.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes if the stored cas is still `cas`, or, with `None`, if the key
    /// does not exist yet.
    fn put(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite;
}

/// How a [`SharedStore::put`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Written,
    /// Someone else wrote first; read again and retry.
    Conflict,
    /// The host has no shared store.
    Unavailable,
}

/// The counters the engine reports through [`Env::count`]. Per-type
/// counters append `.<TYPE>` (`portcullis.pii_found.EMAIL`).
pub mod metrics {
    pub const MESSAGES_ALLOWED: &str = "portcullis.messages_allowed";
    pub const MESSAGES_DENIED: &str = "portcullis.messages_denied";
    pub const AUTH_FAILED: &str = "portcullis.auth_failed";
    pub const SCOPE_DENIED: &str = "portcullis.scope_denied";
    pub const TOKENS_MINTED: &str = "portcullis.tokens_minted";
    pub const PINS_FAILED: &str = "portcullis.pins_failed";
    pub const POISONED_TOOLS_DROPPED: &str = "portcullis.poisoned_tools_dropped";
    pub const PII_FOUND: &str = "portcullis.pii_found";
    pub const INJECTION_FOUND: &str = "portcullis.injection_found";
    pub const CONTENT_BLOCKED: &str = "portcullis.content_blocked";
    pub const CONTENT_REDACTED: &str = "portcullis.content_redacted";
    pub const POLICY_DENIED: &str = "portcullis.policy_denied";
    pub const SHADOW_WOULD_DENY: &str = "portcullis.shadow_would_deny";
    pub const RATE_LIMITED: &str = "portcullis.rate_limited";
    pub const APPROVALS_REQUIRED: &str = "portcullis.approvals_required";
    pub const APPROVALS_GRANTED: &str = "portcullis.approvals_granted";
    pub const SHADOW_MCP: &str = "portcullis.shadow_mcp";
    /// A fleet lease whose release could not be queued (it expires).
    pub const FLEET_RELEASE_LOST: &str = "portcullis.fleet_release_lost";
    /// A call to the fleet state service from the root context (quarantine
    /// push or refresh, lease release) that got no answer.
    pub const FLEET_UNAVAILABLE: &str = "portcullis.fleet_unavailable";
}

/// 16 random bytes as hex: request ids, lease ids.
pub fn random_id(env: &mut dyn Env) -> String {
    let mut buf = [0u8; 16];
    env.random_bytes(&mut buf);
    hex::encode(buf)
}

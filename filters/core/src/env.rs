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

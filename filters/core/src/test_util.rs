//! Test support: one in-memory host and the bundle builders every test and
//! bench of the workspace uses, so that none keeps its own copy.
//!
//! **Test-only.** This module exists only with the `test-util` feature, which
//! is off by default and never enabled by the proxy-wasm filter or the
//! component: tests and benches turn it on through a dev-dependency
//! (`portcullis-core = { ..., features = ["test-util"] }`). Its helpers panic
//! on misuse, as test code does.
//!
//! * [`MemoryEnv`]: an [`Env`] kept in memory, implementing every method as
//!   a proxy-wasm host does: a settable clock ([`MemoryEnv::now`]),
//!   deterministic random bytes (seeded), host properties (the source
//!   address, `jwt_authn` metadata), shared data with compare-and-swap
//!   ([`SharedData`], as proxy-wasm-cpp-host's `SharedData` has it, or
//!   [`SharedData::unavailable`]), and counters recorded in [`MemoryEnv::metrics`].
//! * [`doc`], [`server`]: bundle documents; [`bundle_json`], [`compile`],
//!   [`engine`]: a bundle of them, compiled.
//!
//! ```
//! use portcullis_core::Exchange;
//! use portcullis_core::test_util::{MemoryEnv, engine, server};
//!
//! let engine = engine(vec![server("files", "/mcp", &["read"])]);
//! let mut env = MemoryEnv::at_secs(1_800_000_000).with_source_address("10.0.0.1:4000");
//! let exchange = Exchange::new(engine);
//! # let _ = (exchange, &mut env);
//! ```

// Test support: a helper given bad input should fail the test loudly.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use crate::Engine;
use crate::bundle::{API_VERSION, Document, Metadata, assemble};
use crate::engine::{Env, SharedWrite};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// What [`MemoryEnv::new`]'s clock reads: 2026-12-01T16:00:00Z, in Unix
/// nanoseconds.
pub const DEFAULT_NOW_NANOS: u64 = 1_796_140_800_000_000_000;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The property Envoy answers with the downstream peer (`ip:port`).
pub const SOURCE_ADDRESS: [&str; 2] = ["source", "address"];

/// Where Envoy's `jwt_authn` filter leaves a verified payload stored with
/// `payload_in_metadata: <key>`, before the key.
pub const JWT_AUTHN_METADATA: [&str; 3] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
];

/// An [`Env`] in memory: one worker VM's view of its host.
///
/// [`MemoryEnv::new`]: the clock at [`DEFAULT_NOW_NANOS`], random bytes from
/// seed 0, an empty shared store of its own, no properties, no counters.
/// Builder methods change that; the clock, the shared store and the
/// counters are public fields, for tests to move and read.
#[derive(Debug)]
pub struct MemoryEnv {
    /// What [`Env::now_nanos`] returns (Unix nanoseconds); it moves only
    /// when a test moves it.
    pub now: u64,
    /// The shared data every VM of the plugin sees, or
    /// [`SharedData::unavailable`].
    pub shared: SharedData,
    /// Every [`Env::count`], summed by metric name.
    pub metrics: BTreeMap<String, u64>,
    /// Fleet lease releases handed to the root context
    /// ([`Env::enqueue_release`]), oldest first.
    pub releases: Vec<Vec<u8>>,
    properties: BTreeMap<Vec<String>, Vec<u8>>,
    random: Random,
}

/// Where random bytes come from.
#[derive(Debug, Clone, Copy)]
enum Random {
    /// splitmix64 from this state: deterministic, never repeating in a test.
    Seeded(u64),
    /// Every byte this one (benches: the cheapest host).
    Fill(u8),
}

impl Default for MemoryEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEnv {
    /// A host whose clock reads [`DEFAULT_NOW_NANOS`].
    pub fn new() -> Self {
        Self::at_nanos(DEFAULT_NOW_NANOS)
    }

    /// A host whose clock reads `nanos` (Unix nanoseconds).
    pub fn at_nanos(nanos: u64) -> Self {
        MemoryEnv {
            now: nanos,
            shared: SharedData::new(),
            metrics: BTreeMap::new(),
            releases: Vec::new(),
            properties: BTreeMap::new(),
            random: Random::Seeded(0),
        }
    }

    /// A host whose clock reads `secs` (Unix seconds).
    pub fn at_secs(secs: u64) -> Self {
        Self::at_nanos(secs * NANOS_PER_SEC)
    }

    /// Random bytes from `seed`: the same seed, the same bytes.
    pub fn seeded(mut self, seed: u64) -> Self {
        self.random = Random::Seeded(seed);
        self
    }

    /// Every random byte is `byte` (every request id the same).
    pub fn random_fill(mut self, byte: u8) -> Self {
        self.random = Random::Fill(byte);
        self
    }

    /// Shares `shared` with every other env given it: worker VMs of one
    /// proxy.
    pub fn with_shared_data(mut self, shared: SharedData) -> Self {
        self.shared = shared;
        self
    }

    /// A host with no shared store ([`SharedData::unavailable`]).
    pub fn without_shared_data(mut self) -> Self {
        self.shared = SharedData::unavailable();
        self
    }

    /// The property at `path` reads `value`.
    pub fn with_property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        self.set_property(path, value);
        self
    }

    /// The downstream peer is `address` (`ip:port`, as Envoy writes it).
    pub fn with_source_address(mut self, address: &str) -> Self {
        self.set_source_address(address);
        self
    }

    /// Envoy's `jwt_authn` verified a token and stored `payload` under `key`
    /// (`payload_in_metadata`), as JSON.
    pub fn with_jwt_payload(mut self, key: &str, payload: &Value) -> Self {
        let [a, b, c] = JWT_AUTHN_METADATA;
        self.set_property(&[a, b, c, key], payload.to_string());
        self
    }

    /// Sets the property at `path`.
    pub fn set_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        self.properties.insert(owned(path), value.into());
    }

    /// Removes the property at `path`.
    pub fn remove_property(&mut self, path: &[&str]) {
        self.properties.remove(&owned(path));
    }

    /// Sets the downstream peer's address.
    pub fn set_source_address(&mut self, address: &str) {
        self.set_property(&SOURCE_ADDRESS, address);
    }

    /// Moves the clock `secs` seconds on.
    pub fn advance_secs(&mut self, secs: u64) {
        self.now += secs * NANOS_PER_SEC;
    }

    /// The counter `metric`'s total (0 if never counted).
    pub fn metric(&self, metric: &str) -> u64 {
        self.metrics.get(metric).copied().unwrap_or(0)
    }
}

fn owned(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}

/// splitmix64's next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Env for MemoryEnv {
    fn now_nanos(&self) -> u64 {
        self.now
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        match &mut self.random {
            Random::Seeded(state) => {
                for chunk in buf.chunks_mut(8) {
                    let word = splitmix64(state).to_le_bytes();
                    for (b, w) in chunk.iter_mut().zip(word) {
                        *b = w;
                    }
                }
            }
            Random::Fill(byte) => buf.fill(*byte),
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties
            .iter()
            .find(|(k, _)| k.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.clone())
    }

    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        self.shared_get_cas(key).map(|(v, _)| v)
    }

    fn shared_set(&mut self, key: &str, value: &[u8]) -> bool {
        self.shared.set(key, value)
    }

    fn shared_get_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key)
    }

    fn shared_write(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        self.shared.write(key, value, cas)
    }

    fn enqueue_release(&mut self, release: &[u8]) -> bool {
        self.releases.push(release.to_vec());
        true
    }

    fn count(&mut self, metric: &str, delta: u64) {
        match self.metrics.get_mut(metric) {
            Some(n) => *n = n.saturating_add(delta),
            None => {
                self.metrics.insert(metric.to_owned(), delta);
            }
        }
    }
}

/// Shared data with compare-and-swap, as proxy-wasm-cpp-host's `SharedData`
/// (Envoy's) keeps it for one VM id, behind the filter's `shared_write`:
///
/// * a read returns the value and its cas;
/// * every write stamps the value with the next cas of one counter for the
///   whole store, starting at 1 and never 0 (it skips 0 when it wraps);
/// * a write with `Some(cas)` to an existing key whose cas differs is a
///   [`SharedWrite::Conflict`]; `Some(0)` is unconditional (proxy-wasm's
///   cas 0); a missing key is created whatever the cas;
/// * a write with `None` (create if absent) to an existing key is a
///   conflict.
///
/// Or a host without a shared store ([`SharedData::unavailable`]): reads
/// find nothing, writes are [`SharedWrite::Unavailable`].
///
/// A handle: clones share one store, across threads too.
#[derive(Clone)]
pub struct SharedData(Option<Arc<Mutex<Store>>>);

impl Default for SharedData {
    fn default() -> Self {
        Self::new()
    }
}

struct Store {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            entries: BTreeMap::new(),
            next_cas: 1,
        }
    }
}

impl SharedData {
    /// An empty store; its first write gets cas 1.
    pub fn new() -> Self {
        Self::with_next_cas(1)
    }

    /// No store: the host has no shared data, or it fails every call.
    pub fn unavailable() -> Self {
        SharedData(None)
    }

    /// Whether there is a store.
    pub fn is_available(&self) -> bool {
        self.0.is_some()
    }

    /// An empty store whose next write gets cas `next` (0 reads as 1), to
    /// see the counter wrap.
    pub fn with_next_cas(next: u32) -> Self {
        let store = Store {
            entries: BTreeMap::new(),
            next_cas: next.max(1),
        };
        SharedData(Some(Arc::new(Mutex::new(store))))
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Store>> {
        let store = self.0.as_ref()?;
        Some(store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The value at `key` and its cas.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock()?.entries.get(key).cloned()
    }

    /// Writes `value` at `key` if `cas` allows it (see [`SharedData`]).
    pub fn write(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        let Some(mut store) = self.lock() else {
            return SharedWrite::Unavailable;
        };
        let stored = store.entries.get(key).map(|(_, c)| *c);
        let conflict = match (stored, cas) {
            (None, _) | (Some(_), Some(0)) => false,
            (Some(_), None) => true,
            (Some(current), Some(expected)) => current != expected,
        };
        if conflict {
            return SharedWrite::Conflict;
        }
        let stamp = store.next_cas;
        store.next_cas = match stamp.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        store
            .entries
            .insert(key.to_owned(), (value.to_vec(), stamp));
        SharedWrite::Written
    }

    /// Writes `value` at `key` whatever is there; `false` without a store.
    pub fn set(&self, key: &str, value: &[u8]) -> bool {
        self.write(key, value, Some(0)) == SharedWrite::Written
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock()
            .map(|s| s.entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.lock().map_or(0, |s| s.entries.len())
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for SharedData {
    /// Keys, values (as text where they are) and cas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(store) = self.lock() else {
            return f.write_str("unavailable");
        };
        f.debug_map()
            .entries(
                store
                    .entries
                    .iter()
                    .map(|(k, (v, cas))| (k, (String::from_utf8_lossy(v), cas))),
            )
            .finish()
    }
}

/// A bundle document of `kind`, named `name`, with `spec`.
pub fn doc(kind: &str, name: &str, spec: Value) -> Document {
    Document {
        api_version: API_VERSION.into(),
        kind: kind.into(),
        metadata: Metadata {
            name: name.into(),
            labels: Default::default(),
            annotations: Default::default(),
        },
        spec,
        source: None,
    }
}

/// An `McpServer` routed by `path_prefix`, allowing `tools` (names or
/// globs). Add to its `spec` for more.
pub fn server(name: &str, path_prefix: &str, tools: &[&str]) -> Document {
    let tools: Vec<Value> = tools.iter().map(|t| json!({"name": t})).collect();
    doc(
        "McpServer",
        name,
        json!({"match": {"pathPrefix": path_prefix}, "tools": tools}),
    )
}

/// The compiled bundle JSON of `docs`, as the filter receives it.
pub fn bundle_json(docs: Vec<Document>) -> Vec<u8> {
    serde_json::to_vec(&assemble(docs)).expect("a bundle serialises")
}

/// The engine for `docs`, or its compile errors as text.
pub fn compile(docs: Vec<Document>) -> Result<Arc<Engine>, Vec<String>> {
    Engine::from_config(&bundle_json(docs))
        .map(Arc::new)
        .map_err(|errs| errs.iter().map(|e| e.to_string()).collect())
}

/// The engine for `docs`; panics with the compile errors.
pub fn engine(docs: Vec<Document>) -> Arc<Engine> {
    compile(docs).unwrap_or_else(|e| panic!("the test bundle does not compile: {e:#?}"))
}

/// The compiled bundle JSON of YAML documents (`---`-separated), read as
/// the CLI reads a bundle file.
#[cfg(feature = "yaml")]
pub fn yaml_bundle_json(yaml: &str) -> Vec<u8> {
    let sources = [("test.yaml".to_owned(), yaml.to_owned())];
    let bundle = crate::bundle::yaml::load_sources(&sources)
        .unwrap_or_else(|e| panic!("the test bundle does not compile: {e:#?}"));
    serde_json::to_vec(&bundle).expect("a bundle serialises")
}

/// The compiled bundle JSON of a bundle directory of YAML files.
#[cfg(feature = "yaml")]
pub fn yaml_dir_bundle_json(dir: &std::path::Path) -> Vec<u8> {
    let bundle =
        crate::bundle::yaml::load_dir(dir).unwrap_or_else(|e| panic!("{}: {e:#?}", dir.display()));
    serde_json::to_vec(&bundle).expect("a bundle serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_has_cpp_host_cas_semantics() {
        let mut env = MemoryEnv::new();
        assert_eq!(env.shared_get_cas("k"), None);
        assert_eq!(env.shared_write("k", b"a", None), SharedWrite::Written);
        let (v, cas) = env.shared_get_cas("k").unwrap();
        assert_eq!((v.as_slice(), cas), (&b"a"[..], 1));
        // Create-if-absent on a present key, and a stale cas, conflict.
        assert_eq!(env.shared_write("k", b"b", None), SharedWrite::Conflict);
        assert_eq!(env.shared_write("k", b"b", Some(7)), SharedWrite::Conflict);
        assert_eq!(env.shared_write("k", b"b", Some(1)), SharedWrite::Written);
        assert_eq!(env.shared_get_cas("k"), Some((b"b".to_vec(), 2)));
        // The old cas is stale now; an unconditional write bumps it too.
        assert_eq!(env.shared_write("k", b"c", Some(1)), SharedWrite::Conflict);
        assert!(env.shared_set("k", b"d"));
        assert_eq!(env.shared_get("k"), Some(b"d".to_vec()));
        assert_eq!(env.shared_get_cas("k").unwrap().1, 3);
        // One counter for the whole store.
        assert_eq!(env.shared_write("j", b"x", None), SharedWrite::Written);
        assert_eq!(env.shared_get_cas("j").unwrap().1, 4);
        assert_eq!(env.shared.keys(), ["j", "k"]);
        assert_eq!(env.shared.len(), 2);
    }

    #[test]
    fn cas_is_never_zero() {
        let shared = SharedData::with_next_cas(u32::MAX);
        shared.set("a", b"1");
        shared.set("b", b"2");
        assert_eq!(shared.get("a").unwrap().1, u32::MAX);
        assert_eq!(shared.get("b").unwrap().1, 1);
    }

    #[test]
    fn envs_given_one_store_share_it() {
        let shared = SharedData::new();
        let mut a = MemoryEnv::new().with_shared_data(shared.clone());
        let b = MemoryEnv::new().with_shared_data(shared);
        assert!(a.shared_set("k", b"v"));
        assert_eq!(b.shared_get("k"), Some(b"v".to_vec()));
    }

    #[test]
    fn without_a_store_writes_are_unavailable() {
        let mut env = MemoryEnv::new().without_shared_data();
        assert!(!env.shared_set("k", b"v"));
        assert_eq!(env.shared_write("k", b"v", None), SharedWrite::Unavailable);
        assert_eq!(env.shared_get("k"), None);
        assert!(env.shared.is_empty() && !env.shared.is_available());
        assert_eq!(format!("{:?}", env.shared), "unavailable");
    }

    #[test]
    fn random_bytes_are_deterministic_and_do_not_repeat() {
        let (mut a, mut b) = (MemoryEnv::new(), MemoryEnv::new());
        let (mut x, mut y, mut z) = ([0u8; 16], [0u8; 16], [0u8; 16]);
        a.random_bytes(&mut x);
        b.random_bytes(&mut y);
        a.random_bytes(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
        let mut other = MemoryEnv::new().seeded(1);
        other.random_bytes(&mut y);
        assert_ne!(x, y);
        let mut fixed = MemoryEnv::new().random_fill(0x5a);
        fixed.random_bytes(&mut y);
        assert_eq!(y, [0x5a; 16]);
    }

    #[test]
    fn properties_counters_and_clock() {
        let mut env = MemoryEnv::at_secs(10)
            .with_source_address("10.0.0.1:1")
            .with_jwt_payload("jwt_payload", &json!({"sub": "alice"}));
        assert_eq!(
            env.property(&["source", "address"]),
            Some(b"10.0.0.1:1".to_vec())
        );
        assert_eq!(
            env.property(&[
                "metadata",
                "filter_metadata",
                "envoy.filters.http.jwt_authn",
                "jwt_payload"
            ]),
            Some(br#"{"sub":"alice"}"#.to_vec())
        );
        env.remove_property(&SOURCE_ADDRESS);
        assert_eq!(env.property(&SOURCE_ADDRESS), None);
        env.count("portcullis.x", 2);
        env.count("portcullis.x", 3);
        assert_eq!(env.metric("portcullis.x"), 5);
        assert_eq!(env.metric("portcullis.y"), 0);
        env.advance_secs(5);
        assert_eq!(env.now_nanos(), 15 * NANOS_PER_SEC);
    }
}

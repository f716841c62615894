//! What the control plane knows, shared by the watcher, the xDS streams and
//! the HTTP side: the last good snapshot of each bundle directory, the
//! current error of each directory that does not compile, every node seen
//! with what it was sent, acked and NACKed, and the counters behind
//! `/metrics`.
//!
//! Snapshots are keyed by directory name (`prod`, `prod@acme`), the
//! go-control-plane shape: a node is mapped to a key by its metadata
//! ([`State::target`]) and streams compare versions, never contents. A
//! change bumps a `watch` generation that every stream waits on, so a new
//! version reaches all streams at once without polling.

use envoy_types::pb::google::protobuf::Any;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// One compiled, valid bundle directory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Directory name under `--bundles` (`prod`, `prod@acme`).
    pub key: String,
    /// The compiled bundle's content hash (`BundleJson.version`).
    pub version: String,
    /// The `TypedExtensionConfig` resource, packed.
    pub resource: Any,
    pub documents: usize,
    pub loaded_at_ms: u64,
    /// The compiled bundle and its documents (the approval page reads
    /// identity providers and rules' `approvers`).
    pub bundle: Option<Arc<portcullis_core::bundle::Bundle>>,
    pub json: Option<Arc<portcullis_core::bundle::BundleJson>>,
}

/// Why a directory's latest change was not published.
#[derive(Debug, Clone, Serialize)]
pub struct BundleFailure {
    /// One line per problem, `file:line: message`, files relative to `--bundles`.
    pub errors: Vec<String>,
    pub at_ms: u64,
}

/// A NACK a node sent.
#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub message: String,
    pub at_ms: u64,
}

/// One node (Envoy, or `portcullis serve --xds`), by node id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub cluster: String,
    pub environment: Option<String>,
    pub tenant: Option<String>,
    /// The snapshot key it is served from, once resolved.
    pub bundle: Option<String>,
    /// Open streams of this node.
    pub streams: u32,
    /// `ads`/`ecds` and `sotw`/`delta` of its latest stream.
    pub api: String,
    pub sent_version: Option<String>,
    pub acked_version: Option<String>,
    pub last_nack: Option<Nack>,
    /// Versions this node NACKed; not offered again to a node that still
    /// runs a version of its own.
    #[serde(skip)]
    pub nacked: BTreeSet<String>,
    pub responses: u64,
    pub acks: u64,
    pub nacks: u64,
    pub last_seen_ms: u64,
    /// Why the node gets nothing, if it does not.
    pub problem: Option<String>,
}

/// Monotonic counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub responses: AtomicU64,
    pub acks: AtomicU64,
    pub nacks: AtomicU64,
    pub stale: AtomicU64,
    pub bundle_errors: AtomicU64,
    pub bundle_versions: AtomicU64,
    pub jwks_fetches: AtomicU64,
    pub jwks_fetch_errors: AtomicU64,
    pub als_messages: AtomicU64,
    pub als_records: AtomicU64,
    pub als_rejected: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Everything shared; cheap to clone through an `Arc`.
#[derive(Debug)]
pub struct State {
    snapshots: RwLock<BTreeMap<String, Arc<Snapshot>>>,
    failures: RwLock<BTreeMap<String, BundleFailure>>,
    /// Directory names present under `--bundles` at the last scan.
    dirs: RwLock<BTreeSet<String>>,
    nodes: Mutex<BTreeMap<String, NodeStatus>>,
    pub counters: Counters,
    generation: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    /// The filter (resource) name served.
    pub filter_name: String,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    pub fn new(filter_name: String) -> Arc<State> {
        Arc::new(State {
            snapshots: RwLock::default(),
            failures: RwLock::default(),
            dirs: RwLock::default(),
            nodes: Mutex::default(),
            counters: Counters::default(),
            generation: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            filter_name,
        })
    }

    /// A receiver that changes whenever any snapshot does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Asks every stream and loop to end.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Publishes a new good snapshot (if its version is new) and clears the
    /// directory's error. Returns whether anything was published.
    pub fn publish(&self, snapshot: Snapshot) -> bool {
        if let Ok(mut f) = self.failures.write() {
            f.remove(&snapshot.key);
        }
        let changed = match self.snapshots.write() {
            Ok(mut s) => {
                let same = s
                    .get(&snapshot.key)
                    .is_some_and(|old| old.version == snapshot.version);
                if !same {
                    s.insert(snapshot.key.clone(), Arc::new(snapshot));
                }
                !same
            }
            Err(_) => false,
        };
        if changed {
            Counters::inc(&self.counters.bundle_versions);
            self.generation.send_modify(|g| *g += 1);
        }
        changed
    }

    /// Records that a directory's latest content does not compile; the last
    /// good snapshot stays.
    pub fn fail(&self, key: &str, errors: Vec<String>) {
        let new = match self.failures.read() {
            Ok(f) => f.get(key).is_none_or(|old| old.errors != errors),
            Err(_) => true,
        };
        if new {
            Counters::inc(&self.counters.bundle_errors);
        }
        if let Ok(mut f) = self.failures.write() {
            f.insert(
                key.to_string(),
                BundleFailure {
                    errors,
                    at_ms: now_ms(),
                },
            );
        }
    }

    pub fn set_dirs(&self, dirs: BTreeSet<String>) {
        let changed = match self.dirs.write() {
            Ok(mut d) => {
                let changed = *d != dirs;
                *d = dirs;
                changed
            }
            Err(_) => false,
        };
        // A new tenant directory may retarget nodes.
        if changed {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// The snapshot key for a node: `ENV@TENANT` when that directory
    /// exists, else `ENV`.
    pub fn target(&self, environment: &str, tenant: Option<&str>) -> String {
        if let Some(t) = tenant {
            let key = format!("{environment}@{t}");
            if self.dirs.read().is_ok_and(|d| d.contains(&key)) {
                return key;
            }
        }
        environment.to_string()
    }

    pub fn snapshot(&self, key: &str) -> Option<Arc<Snapshot>> {
        self.snapshots.read().ok()?.get(key).cloned()
    }

    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        self.snapshots
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn failures(&self) -> BTreeMap<String, BundleFailure> {
        self.failures.read().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn ready(&self) -> bool {
        self.snapshots.read().is_ok_and(|s| !s.is_empty())
    }

    /// Runs `f` on the node's entry, creating it.
    pub fn node<R>(&self, id: &str, f: impl FnOnce(&mut NodeStatus) -> R) -> Option<R> {
        let mut nodes = self.nodes.lock().ok()?;
        let n = nodes.entry(id.to_string()).or_insert_with(|| NodeStatus {
            id: id.to_string(),
            ..NodeStatus::default()
        });
        n.last_seen_ms = now_ms();
        Some(f(n))
    }

    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The `/status` document.
    pub fn status_json(&self) -> serde_json::Value {
        let snapshots: Vec<serde_json::Value> = self
            .snapshots()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "bundle": s.key,
                    "version": s.version,
                    "documents": s.documents,
                    "loadedAtMs": s.loaded_at_ms,
                })
            })
            .collect();
        serde_json::json!({
            "filterName": self.filter_name,
            "ready": self.ready(),
            "bundles": snapshots,
            "errors": self.failures(),
            "nodes": self.nodes(),
        })
    }

    /// Prometheus text exposition of everything `/metrics` shows.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let c = &self.counters;
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "portcullis_cp_responses_total",
            "xDS responses sent.",
            Counters::get(&c.responses),
        );
        counter(
            "portcullis_cp_acks_total",
            "xDS ACKs received.",
            Counters::get(&c.acks),
        );
        counter(
            "portcullis_cp_nacks_total",
            "xDS NACKs received.",
            Counters::get(&c.nacks),
        );
        counter(
            "portcullis_cp_stale_requests_total",
            "xDS requests ignored for a stale nonce.",
            Counters::get(&c.stale),
        );
        counter(
            "portcullis_cp_bundle_errors_total",
            "Bundle changes that did not compile (never pushed).",
            Counters::get(&c.bundle_errors),
        );
        counter(
            "portcullis_cp_bundle_versions_total",
            "Bundle versions published.",
            Counters::get(&c.bundle_versions),
        );
        counter(
            "portcullis_cp_jwks_fetches_total",
            "JWKS fetches.",
            Counters::get(&c.jwks_fetches),
        );
        counter(
            "portcullis_cp_jwks_fetch_errors_total",
            "JWKS fetches that failed (the last good keys stay).",
            Counters::get(&c.jwks_fetch_errors),
        );
        counter(
            "portcullis_cp_als_messages_total",
            "Access Log Service messages received.",
            Counters::get(&c.als_messages),
        );
        counter(
            "portcullis_cp_als_records_total",
            "Audit records appended from the Access Log Service.",
            Counters::get(&c.als_records),
        );
        counter(
            "portcullis_cp_als_rejected_total",
            "Audit lines from the Access Log Service that were not valid records.",
            Counters::get(&c.als_rejected),
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_cp_bundle_version_info The version served per bundle directory.\n# TYPE portcullis_cp_bundle_version_info gauge"
        );
        for s in self.snapshots() {
            let _ = writeln!(
                out,
                "portcullis_cp_bundle_version_info{{bundle=\"{}\",version=\"{}\"}} 1",
                label(&s.key),
                label(&s.version)
            );
        }
        let failures = self.failures();
        let _ = writeln!(
            out,
            "# HELP portcullis_cp_bundle_invalid 1 while a bundle directory's latest content does not compile.\n# TYPE portcullis_cp_bundle_invalid gauge"
        );
        let dirs = self.dirs.read().map(|d| d.clone()).unwrap_or_default();
        for d in &dirs {
            let _ = writeln!(
                out,
                "portcullis_cp_bundle_invalid{{bundle=\"{}\"}} {}",
                label(d),
                u8::from(failures.contains_key(d))
            );
        }
        let nodes = self.nodes();
        let connected = nodes.iter().filter(|n| n.streams > 0).count();
        let _ = writeln!(
            out,
            "# HELP portcullis_cp_connected_nodes Nodes with an open xDS stream.\n# TYPE portcullis_cp_connected_nodes gauge\nportcullis_cp_connected_nodes {connected}"
        );
        let mut by_version: BTreeMap<(String, String), u64> = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.streams > 0) {
            let key = (
                n.bundle.clone().unwrap_or_default(),
                n.acked_version.clone().unwrap_or_default(),
            );
            *by_version.entry(key).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP portcullis_cp_nodes_acked Connected nodes by bundle and acked version.\n# TYPE portcullis_cp_nodes_acked gauge"
        );
        for ((b, v), count) in by_version {
            let _ = writeln!(
                out,
                "portcullis_cp_nodes_acked{{bundle=\"{}\",version=\"{}\"}} {count}",
                label(&b),
                label(&v)
            );
        }
        let nacking = nodes
            .iter()
            .filter(|n| {
                n.streams > 0
                    && n.last_nack
                        .as_ref()
                        .is_some_and(|k| Some(&k.version) == n.sent_version.as_ref())
            })
            .count();
        let _ = writeln!(
            out,
            "# HELP portcullis_cp_nodes_nacking Connected nodes whose latest response was NACKed.\n# TYPE portcullis_cp_nodes_nacking gauge\nportcullis_cp_nodes_nacking {nacking}"
        );
        out
    }
}

/// Escapes a Prometheus label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

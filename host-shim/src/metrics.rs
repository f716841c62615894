//! Custom metrics defined by a plugin: counters, gauges and histograms.
//!
//! Envoy stores a plugin's metrics in the plugin's stats scope under the
//! `wasmcustom` namespace (context.cc `defineMetric`: `custom_stat_namespace_`),
//! shared by the VMs of all workers, while each VM keeps its own id -> stat
//! map. The same split is used here: one [`MetricsStore`] per plugin, and ids
//! in each VM. Prometheus output strips the custom namespace and does not add
//! the `envoy_` prefix, as Envoy's Prometheus formatter does for registered
//! custom namespaces.
//!
//! Beside them the admin listener shows host-shim's own figures
//! ([`WorkerStats`], [`host_prometheus_text`]): each worker VM's linear
//! memory and stream count, and the process's resident memory, so a soak
//! can see whether memory grows per request (issue 16, item 7).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Envoy's stat namespace for wasm-defined metrics.
pub const CUSTOM_STAT_NAMESPACE: &str = "wasmcustom";

/// Envoy's default histogram bucket bounds.
const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The value of one metric in a [`MetricsSnapshot`].
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(i64),
    Histogram {
        count: u64,
        sum: u64,
        buckets: Vec<u64>,
    },
}

/// Metric values keyed by full stat name (`wasmcustom.<name>`).
pub type MetricsSnapshot = BTreeMap<String, MetricValue>;

#[derive(Default)]
pub(crate) struct MetricsStore {
    values: Mutex<BTreeMap<String, MetricValue>>,
}

impl MetricsStore {
    /// Creates the stat if needed; defining an existing name reuses it, as
    /// Envoy's `counterFromElements` returns the existing stat.
    pub(crate) fn define(&self, kind: MetricKind, name: &str) -> String {
        let full = format!("{CUSTOM_STAT_NAMESPACE}.{name}");
        if let Ok(mut v) = self.values.lock() {
            v.entry(full.clone()).or_insert_with(|| match kind {
                MetricKind::Counter => MetricValue::Counter(0),
                MetricKind::Gauge => MetricValue::Gauge(0),
                MetricKind::Histogram => MetricValue::Histogram {
                    count: 0,
                    sum: 0,
                    buckets: vec![0; BUCKETS.len()],
                },
            });
        }
        full
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut MetricValue)) {
        if let Ok(mut v) = self.values.lock()
            && let Some(m) = v.get_mut(name)
        {
            f(m);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<MetricValue> {
        self.values.lock().ok().and_then(|v| v.get(name).cloned())
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        self.values.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

pub(crate) fn record_histogram(m: &mut MetricValue, value: u64) {
    if let MetricValue::Histogram {
        count,
        sum,
        buckets,
    } = m
    {
        *count += 1;
        *sum = sum.saturating_add(value);
        for (b, bound) in buckets.iter_mut().zip(BUCKETS.iter()) {
            if (value as f64) <= *bound {
                *b += 1;
            }
        }
    }
}

fn prometheus_name(full: &str) -> String {
    let base = full
        .strip_prefix(CUSTOM_STAT_NAMESPACE)
        .and_then(|s| s.strip_prefix('.'))
        .map(str::to_string)
        .unwrap_or_else(|| format!("envoy_{full}"));
    base.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Renders a snapshot in Prometheus text exposition format.
pub fn prometheus_text(snapshot: &MetricsSnapshot) -> String {
    let mut out = String::new();
    for (name, value) in snapshot {
        let n = prometheus_name(name);
        match value {
            MetricValue::Counter(v) => {
                out.push_str(&format!("# TYPE {n} counter\n{n}{{}} {v}\n"));
            }
            MetricValue::Gauge(v) => {
                out.push_str(&format!("# TYPE {n} gauge\n{n}{{}} {v}\n"));
            }
            MetricValue::Histogram {
                count,
                sum,
                buckets,
            } => {
                out.push_str(&format!("# TYPE {n} histogram\n"));
                for (b, bound) in buckets.iter().zip(BUCKETS.iter()) {
                    out.push_str(&format!("{n}_bucket{{le=\"{bound}\"}} {b}\n"));
                }
                out.push_str(&format!("{n}_bucket{{le=\"+Inf\"}} {count}\n"));
                out.push_str(&format!("{n}_sum{{}} {sum}\n{n}_count{{}} {count}\n"));
            }
        }
    }
    out
}

/// One worker's figures, written by the worker, read by the admin listener.
#[derive(Default)]
pub(crate) struct WorkerStats {
    /// The linear memory of the worker's proxy-wasm VM, bytes, as of its
    /// last finished stream, tick or start (0: no proxy-wasm VM yet, or a
    /// component runs instead).
    pub(crate) wasm_memory_bytes: AtomicU64,
    /// Streams the worker finished.
    pub(crate) streams: AtomicU64,
}

/// The process's resident set size, bytes (Linux: `VmRSS` of
/// `/proc/self/status`); `None` elsewhere.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// host-shim's own figures in Prometheus text format: per worker
/// `host_shim_wasm_vm_memory_bytes` and `host_shim_worker_streams_total`
/// (label `worker`), and `process_resident_memory_bytes` (the name
/// Prometheus client libraries give it).
pub(crate) fn host_prometheus_text(workers: &[WorkerStats]) -> String {
    let mut out = String::from("# TYPE host_shim_wasm_vm_memory_bytes gauge\n");
    for (i, w) in workers.iter().enumerate() {
        let v = w.wasm_memory_bytes.load(Ordering::Relaxed);
        out.push_str(&format!(
            "host_shim_wasm_vm_memory_bytes{{worker=\"{i}\"}} {v}\n"
        ));
    }
    out.push_str("# TYPE host_shim_worker_streams_total counter\n");
    for (i, w) in workers.iter().enumerate() {
        let v = w.streams.load(Ordering::Relaxed);
        out.push_str(&format!(
            "host_shim_worker_streams_total{{worker=\"{i}\"}} {v}\n"
        ));
    }
    if let Some(rss) = resident_bytes() {
        out.push_str(&format!(
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
        ));
    }
    out
}

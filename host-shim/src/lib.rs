//! host-shim: a proxy-wasm ABI v0.2.1 host on wasmtime, with Envoy's semantics.
//!
//! No Envoy binary runs in this project's tests, so this crate stands in for
//! it: [`Plugin`] loads a module the way Envoy does, [`serve`] runs it in
//! front of an upstream with one VM per worker thread, and [`StreamCore`]
//! plus [`TestVm`] let tests drive callbacks without HTTP. Anything a filter
//! can do here but not in Envoy is a bug; the semantics followed are listed,
//! with sources, in docs/host-shim.md.
//! [`component`] runs the Portcullis engine built as a WebAssembly component
//! (docs/component.md) through the same stream machinery, in place of a VM.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod abi;
pub mod component;
pub mod grpc;
pub mod headers;
mod hostcalls;
pub mod metrics;
mod plugin;
mod props;
mod proxy;
mod shared;
pub mod stream;
mod vm;
mod wasi;
mod wasm_filter;

use std::sync::Arc;

pub use component::{ComponentFilter, ComponentPlugin, ComponentVm};
pub use grpc::{GrpcCallResult, PendingGrpcCall};
pub use headers::HeaderMap;
pub use metrics::{MetricValue, MetricsSnapshot, prometheus_text};
pub use plugin::Plugin;
pub use proxy::{
    AccessLogEntry, AccessLogSink, DEFAULT_BUFFER_LIMIT, FilterHandle, ProxyConfig, Server, TestVm,
    serve,
};
pub use stream::{
    Dir, FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, HttpFilter, LocalReply,
    Output, SharedStream, StreamAction, StreamCore, StreamData, StreamInfo,
};
pub use vm::{HttpCallResponse, PendingHttpCall, WasmVm};
pub use wasm_filter::WasmFilter;

/// Envoy's `FailurePolicy` (api/envoy/extensions/wasm/v3/wasm.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// The failed VM answers every stream with a 503 (`UNSPECIFIED` means this).
    #[default]
    FailClosed,
    /// The failed VM is bypassed: streams continue as if it were absent.
    FailOpen,
    /// The stream that hit the failure gets a 503; later streams get a
    /// fresh VM.
    FailReload,
}

/// Log levels as proxy-wasm numbers them (spdlog order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    #[default]
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }
}

/// The Envoy node (bootstrap `node`), read by the `node` property.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub cluster: String,
    /// A JSON object, exposed as a protobuf `Struct` like Envoy's.
    pub metadata: serde_json::Value,
}

/// Receives every wasm log line the configured level lets through
/// (proxy_log and stdout/stderr writes), e.g. for tests.
pub trait LogSink: Send + Sync {
    fn log(&self, plugin: &str, level: LogLevel, message: &str);
}

/// A [`LogSink`] that keeps lines in memory.
#[derive(Default)]
pub struct MemoryLogSink {
    lines: std::sync::Mutex<Vec<(LogLevel, String)>>,
}

impl MemoryLogSink {
    pub fn lines(&self) -> Vec<(LogLevel, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl LogSink for MemoryLogSink {
    fn log(&self, _plugin: &str, level: LogLevel, message: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push((level, message.to_string()));
        }
    }
}

/// What Envoy's `envoy.extensions.wasm.v3.PluginConfig` + `VmConfig` carry.
#[derive(Clone, Default)]
pub struct PluginConfig {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub vm_config: Vec<u8>,
    pub configuration: Vec<u8>,
    pub failure_policy: FailurePolicy,
    pub node: NodeInfo,
    pub log_level: LogLevel,
    pub log_sink: Option<Arc<dyn LogSink>>,
    /// Envoy `PluginConfig.allow_on_headers_stop_iteration` (default false):
    /// when false, `StopIteration` from a headers callback is turned into
    /// `StopAllIterationAndWatermark` (no body callbacks until
    /// `proxy_continue_stream`); when true, body callbacks run while the
    /// headers are held and may still be modified.
    pub allow_on_headers_stop_iteration: bool,
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("name", &self.name)
            .field("root_id", &self.root_id)
            .field("vm_id", &self.vm_id)
            .field("failure_policy", &self.failure_policy)
            .field("log_level", &self.log_level)
            .finish()
    }
}

impl PluginConfig {
    /// A log line of the module: dropped below the configured level, else
    /// written to `tracing` target "wasm" in Envoy's shape (`Context::log`
    /// with `PluginBase::makeLogPrefix`, source/extensions/common/wasm:
    /// `wasm log <plugin> <root_id> <vm_id>: <message>`) and given to the
    /// log sink as it is.
    pub fn log(&self, level: LogLevel, msg: &str) {
        if level < self.log_level {
            return;
        }
        // Formatted only when the event is enabled: the filter logs every
        // audit record, so no allocation per line otherwise.
        let prefix = LogPrefix(self);
        match level {
            LogLevel::Trace => tracing::trace!(target: "wasm", "wasm log{prefix}: {msg}"),
            LogLevel::Debug => tracing::debug!(target: "wasm", "wasm log{prefix}: {msg}"),
            LogLevel::Info => tracing::info!(target: "wasm", "wasm log{prefix}: {msg}"),
            LogLevel::Warn => tracing::warn!(target: "wasm", "wasm log{prefix}: {msg}"),
            LogLevel::Error | LogLevel::Critical => {
                tracing::error!(target: "wasm", "wasm log{prefix}: {msg}")
            }
        }
        if let Some(sink) = &self.log_sink {
            sink.log(&self.name, level, msg);
        }
    }
}

/// Envoy's `PluginBase::makeLogPrefix`: ` <name> <root_id> <vm_id>`,
/// empty parts left out.
struct LogPrefix<'a>(&'a PluginConfig);

impl std::fmt::Display for LogPrefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in [&self.0.name, &self.0.root_id, &self.0.vm_id] {
            if !part.is_empty() {
                write!(f, " {part}")?;
            }
        }
        Ok(())
    }
}

/// Why a plugin could not be loaded (Envoy would reject the config).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("wasm module failed to compile: {0}")]
    Compile(String),
    #[error("missing or unknown Proxy-Wasm ABI version (need proxy_abi_version_0_2_1 or _0_2_0)")]
    AbiVersion,
    #[error("wasm module imports `{module}::{name}`, which the host (like Envoy) does not provide")]
    UnknownImport { module: String, name: String },
    #[error("wasm module failed to instantiate: {0}")]
    Instantiate(String),
    #[error("wasm VM failed to start: {0}")]
    Start(String),
    #[error("plugin configuration was rejected: {0}")]
    Configure(String),
}

//! `portcullis serve`: a proxy-wasm filter in front of an upstream, in
//! host-shim (our Envoy stand-in).
//!
//! By default the filter is Portcullis's own (embedded in this binary at
//! build time) with the compiled `--bundle` as its plugin configuration.
//! `--filter` runs any other proxy-wasm module instead, and
//! `--filter-config` overrides the configuration it gets. `--component`
//! runs the engine built as a WebAssembly component instead (same bundle,
//! same audit log; docs/component.md). Audit records are
//! read from the filter state `wasm.portcullis.audit` at the end of each
//! stream, as Envoy's access loggers read it, and appended to `--audit-log`
//! (JSONL), to `--audit-db` (the tamper-evident store, through
//! `audit_store::Ingestor`: group commit on a writer thread of its own, so
//! no proxy worker waits on a commit's fsync), or to both. SIGINT or
//! SIGTERM stops it gracefully, committing what is queued and sealing a
//! checkpoint.

use crate::bundle_cmd::load as load_bundle;
use crate::failure::Failure;
use audit_store::{IngestHandle, Ingestor, Notice};
use clap::Args;
use host_shim::{AccessLogEntry, AccessLogSink, FilterHandle, Plugin, PluginConfig, ProxyConfig};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The filter this binary embeds (see build.rs).
pub static DEFAULT_FILTER: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

/// The filter-state key Portcullis writes its audit records to.
pub const AUDIT_FILTER_STATE: &str = "wasm.portcullis.audit";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Bundle directory: the filter's configuration (compiled on start).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Upstream base URL, e.g. http://127.0.0.1:8000.
    #[arg(long)]
    upstream: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A proxy-wasm module to run instead of the embedded Portcullis filter.
    #[arg(long)]
    filter: Option<PathBuf>,
    /// The engine as a WebAssembly component (`portcullis_component.wasm`,
    /// built for wasm32-wasip2) to run in place of the proxy-wasm filter,
    /// with the same bundle and audit log (docs/component.md).
    #[arg(long, conflicts_with = "filter")]
    component: Option<PathBuf>,
    /// A file whose bytes are the filter's plugin configuration (instead of
    /// the compiled bundle).
    #[arg(long = "filter-config")]
    filter_config: Option<PathBuf>,
    /// A file whose bytes are the VM configuration.
    #[arg(long = "vm-config")]
    vm_config: Option<PathBuf>,
    /// A public key file (`KEY.pub` of `bundle keygen`); the filter then
    /// refuses bundles not signed by one of these keys (repeatable).
    #[arg(long = "trusted-bundle-key", conflicts_with = "vm_config")]
    trusted_bundle_keys: Vec<PathBuf>,
    /// A named cluster for the filter's http_call, NAME=URL (repeatable).
    #[arg(long = "cluster", value_parser = parse_cluster)]
    clusters: Vec<(String, String)>,
    /// Worker threads, each with its own VM (as Envoy's --concurrency).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Append each stream's audit records (JSON lines) to this file.
    #[arg(long = "audit-log")]
    audit_log: Option<PathBuf>,
    /// Also append them to this audit store (SQLite, hash-chained;
    /// docs/audit-store.md), committed as they arrive.
    #[arg(long = "audit-db")]
    audit_db: Option<PathBuf>,
    /// The key that signs the store's checkpoints (default: DB.key, made
    /// on first use, as `portcullis audit ingest` does).
    #[arg(long = "audit-key", requires = "audit_db")]
    audit_key: Option<PathBuf>,
    /// Admin address serving /stats/prometheus and /ready.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Buffer limit per stream and direction, bytes (Envoy's
    /// per_connection_buffer_limit_bytes, default 1 MiB as in Envoy). Set
    /// it above the bundle's maxRequestBytes/maxResponseBytes so an
    /// oversize body streamed without content-length gets the filter's
    /// JSON-RPC 413 and an audit record rather than the host's bare 413.
    #[arg(long = "buffer-limit", default_value_t = host_shim::DEFAULT_BUFFER_LIMIT)]
    buffer_limit: usize,
    /// The least severe log line printed to standard error: the module's
    /// own (`proxy_log`, in Envoy's `wasm log <plugin> <root> <vm>: ...`
    /// shape, and its level as `proxy_get_log_level` reports it), VM
    /// failures and host-shim's. Envoy's default is info. `RUST_LOG`, when
    /// set, overrides the filter for host-shim's lines.
    #[arg(long = "log-level", value_enum, default_value_t = LogLevelArg::Info)]
    log_level: LogLevelArg,
    /// What happens to streams when the filter's VM fails (Envoy
    /// `PluginConfig.failure_policy`; its default, FAIL_CLOSED, is ours):
    /// `fail-closed` answers every stream with a 503, `fail-reload` gives
    /// the failing stream a 503 and later streams a fresh VM, `fail-open`
    /// lets streams pass ungoverned (never for Portcullis in production).
    #[arg(long = "failure-policy", value_enum, default_value_t = FailurePolicyArg::Closed)]
    failure_policy: FailurePolicyArg,
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration` (Envoy 1.35+;
    /// default false, as in Envoy, and Istio's WasmPlugin cannot set it):
    /// when off, a module that returns StopIteration from a headers
    /// callback gets no body callback until it resumes. Portcullis needs it
    /// only for `Settings.spec.requestHeaders: hold` (docs/filter.md).
    #[arg(long = "allow-on-headers-stop-iteration")]
    allow_on_headers_stop_iteration: bool,
    /// `--xds URL` and its node flags: the bundle from a control plane.
    #[command(flatten)]
    xds: crate::serve_xds::XdsArgs,
}

/// Envoy's `FailurePolicy` values, as flags.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicyArg {
    #[value(name = "fail-closed")]
    Closed,
    #[value(name = "fail-reload")]
    Reload,
    #[value(name = "fail-open")]
    Open,
}

impl FailurePolicyArg {
    fn policy(self) -> host_shim::FailurePolicy {
        match self {
            FailurePolicyArg::Closed => host_shim::FailurePolicy::FailClosed,
            FailurePolicyArg::Reload => host_shim::FailurePolicy::FailReload,
            FailurePolicyArg::Open => host_shim::FailurePolicy::FailOpen,
        }
    }
}

/// Envoy's `--log-level` names.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevelArg {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

impl LogLevelArg {
    /// The module's level (`off` still lets nothing through: critical is
    /// filtered out below by the subscriber).
    fn module(self) -> host_shim::LogLevel {
        match self {
            LogLevelArg::Trace => host_shim::LogLevel::Trace,
            LogLevelArg::Debug => host_shim::LogLevel::Debug,
            LogLevelArg::Info => host_shim::LogLevel::Info,
            LogLevelArg::Warn => host_shim::LogLevel::Warn,
            LogLevelArg::Error => host_shim::LogLevel::Error,
            LogLevelArg::Critical | LogLevelArg::Off => host_shim::LogLevel::Critical,
        }
    }

    fn directive(self) -> &'static str {
        match self {
            LogLevelArg::Trace => "trace",
            LogLevelArg::Debug => "debug",
            LogLevelArg::Info => "info",
            LogLevelArg::Warn => "warn",
            LogLevelArg::Error | LogLevelArg::Critical => "error",
            LogLevelArg::Off => "off",
        }
    }
}

/// Prints the module's log lines and host-shim's own (VM failures, traps,
/// buffer limits) to standard error; without it they would be invisible
/// and a crashed filter would show only as 503s.
fn install_logging(level: LogLevelArg) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() && level != LogLevelArg::Off => {
            tracing_subscriber::EnvFilter::new(v)
        }
        _ => tracing_subscriber::EnvFilter::new(level.directive()),
    };
    // A second install (tests calling run twice) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn parse_cluster(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!("--cluster takes NAME=URL, got {s:?}")),
    }
}

fn read_file(flag: &str, path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::Usage(format!("cannot read {flag} {}: {e}", path.display())))
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    install_logging(args.log_level);
    let upstream: http::Uri = args
        .upstream
        .parse()
        .map_err(|e| Failure::Usage(format!("--upstream {:?} is not a URL: {e}", args.upstream)))?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
        return Err(Failure::Usage(format!(
            "--upstream {:?} must be an http:// URL with a host",
            args.upstream
        )));
    }
    let wasm = match &args.filter {
        Some(path) => read_file("--filter", path)?,
        None => DEFAULT_FILTER.to_vec(),
    };
    let configuration = match (&args.filter_config, &args.bundle) {
        (Some(path), _) => read_file("--filter-config", path)?,
        (None, Some(dir)) => {
            let bundle = load_bundle(dir)?;
            serde_json::to_vec(&bundle)
                .map_err(|e| Failure::Usage(format!("cannot serialise the bundle: {e}")))?
        }
        // From the control plane, once it answers (serve_xds).
        (None, None) if args.xds.xds.is_some() => Vec::new(),
        (None, None) => {
            return Err(Failure::Usage(
                "give --bundle DIR (or --filter-config FILE for another filter)".into(),
            ));
        }
    };
    let vm_config = match &args.vm_config {
        Some(path) => read_file("--vm-config", path)?,
        None => trust_vm_config(&args.trusted_bundle_keys)?,
    };
    if !args.trusted_bundle_keys.is_empty() && args.xds.xds.is_none() {
        // The filter makes the same check and refuses; checked here too so
        // the reason is printed, not only logged inside the VM.
        let trust = portcullis_core::signing::TrustConfig::parse(&vm_config)
            .map_err(|e| Failure::Usage(format!("--trusted-bundle-key: {e}")))?;
        trust
            .check_config(&configuration)
            .map_err(|e| Failure::Input(vec![format!("portcullis: {e}")]))?;
    }
    let mut clusters = HashMap::new();
    for (name, url) in &args.clusters {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Failure::Usage(format!("--cluster {name}={url}: not a URL: {e}")))?;
        clusters.insert(name.clone(), uri);
    }
    let file = match &args.audit_log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Failure::Usage(format!("cannot open --audit-log {}: {e}", path.display()))
                })?;
            Some(AuditFile {
                file: Mutex::new(file),
            })
        }
        None => None,
    };
    let db = match &args.audit_db {
        Some(path) => Some(AuditDb::open(path, args.audit_key.as_deref())?),
        None => None,
    };
    let sinks = Arc::new(AuditSinks { file, db });
    let access_log: Option<Arc<dyn AccessLogSink>> = if sinks.file.is_some() || sinks.db.is_some() {
        Some(sinks.clone())
    } else {
        None
    };
    let config = PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id: "portcullis".into(),
        vm_config,
        configuration,
        // The filter holds request headers until it has read the body, so
        // it can add audit headers and refuse before the upstream sees
        // anything: Envoy (>= 1.35) needs this flag for that.
        allow_on_headers_stop_iteration: args.allow_on_headers_stop_iteration,
        log_level: args.log_level.module(),
        failure_policy: args.failure_policy.policy(),
        ..PluginConfig::default()
    };
    let subscription = crate::serve_xds::start(&args.xds, &wasm, &config)?;
    let handle = match &args.component {
        Some(path) => {
            let component = read_file("--component", path)?;
            let plugin = host_shim::ComponentPlugin::load(&component, config).map_err(|e| {
                Failure::Input(vec![format!(
                    "portcullis: the component refused its configuration: {e}"
                )])
            })?;
            FilterHandle::component(plugin)
        }
        None => match &subscription {
            Some(xds) => FilterHandle::new(xds.first_plugin()?),
            None => FilterHandle::new(Plugin::load(&wasm, config).map_err(|e| {
                Failure::Input(vec![format!(
                    "portcullis: the filter refused its configuration: {e}"
                )])
            })?),
        },
    };
    if let Some(s) = &subscription {
        s.attach(handle.clone());
    }
    let proxy = ProxyConfig {
        listen: args.listen,
        upstream,
        clusters,
        workers: args.workers.max(1),
        buffer_limit: args.buffer_limit,
        access_log,
        admin: args.admin,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let server = host_shim::serve(proxy, handle)
            .await
            .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e:#}", args.listen)))?;
        // Before the line tests and scripts wait for, so they know it by then.
        if let Some(admin) = server.admin_addr() {
            println!("portcullis: admin on http://{admin}");
        }
        // The one line tests and scripts wait for.
        println!("portcullis: listening on http://{}", server.local_addr());
        let _ = std::io::stdout().flush();
        crate::control_plane_cmd::stop_signal().await;
        server.shutdown().await;
        Ok::<(), Failure>(())
    })?;
    // Commit what is queued and seal a checkpoint before exiting.
    if let Some(db) = &sinks.db {
        db.close()?;
    }
    Ok(())
}

/// The VM configuration naming the trusted bundle keys (docs/filter.md);
/// empty when there are none.
fn trust_vm_config(files: &[PathBuf]) -> Result<Vec<u8>, Failure> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for path in files {
        let key = audit_store::keys::load_verifying_key(path)
            .map_err(|e| Failure::Usage(format!("--trusted-bundle-key: {e}")))?;
        keys.push(audit_store::keys::public_hex(&key));
    }
    Ok(serde_json::json!({ "trustedBundleKeys": keys })
        .to_string()
        .into_bytes())
}

/// Where each stream's audit lines go: a JSONL file, an audit store, or both.
struct AuditSinks {
    file: Option<AuditFile>,
    db: Option<AuditDb>,
}

impl AccessLogSink for AuditSinks {
    fn log(&self, entry: &AccessLogEntry) {
        let Some(lines) = entry.filter_state.get(AUDIT_FILTER_STATE) else {
            return;
        };
        if let Some(file) = &self.file
            && let Ok(mut f) = file.file.lock()
        {
            let _ = f.write_all(lines);
            let _ = f.flush();
        }
        if let Some(db) = &self.db {
            db.send(lines);
        }
    }
}

/// Appends each stream's audit lines to a file.
struct AuditFile {
    file: Mutex<std::fs::File>,
}

/// Records per transaction at most.
const AUDIT_BATCH: usize = 1000;

/// Appends audit lines to the store through its group-commit writer:
/// [`IngestHandle::send_lines`] only queues, so a commit (an fsync with
/// `synchronous=FULL`) never stalls a proxy worker, as Envoy's access
/// loggers never stall the stream. A record is durable once the
/// transaction it went into commits: a kill -9 loses at most the records
/// still queued, never a committed one.
struct AuditDb {
    handle: IngestHandle,
    ingestor: Mutex<Option<Ingestor>>,
}

impl AuditDb {
    fn open(path: &std::path::Path, key: Option<&std::path::Path>) -> Result<AuditDb, Failure> {
        let key = crate::audit_cmd::signing_key(path, key, true)
            .map_err(|e| Failure::Usage(format!("--audit-db {}: {e}", path.display())))?;
        if let Some(notice) = key.notice() {
            eprintln!("{notice}");
        }
        let cfg = audit_store::Config {
            signing_key: Some(key.key),
            ..audit_store::Config::default()
        };
        let store = audit_store::Store::open(path, cfg).map_err(|e| {
            Failure::Usage(format!("cannot open --audit-db {}: {e}", path.display()))
        })?;
        let ingestor = Ingestor::spawn_with(store, AUDIT_BATCH, |notice| match notice {
            // The content of a bad line is never printed: it may hold what
            // redaction was for.
            Notice::BadLine => {
                eprintln!("portcullis: an audit line is not a record; not stored");
            }
            // Loudly: records would otherwise be lost silently.
            Notice::Refused(e) => {
                eprintln!("portcullis: the audit store refused records: {e}");
            }
        })
        .map_err(|e| Failure::Usage(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditDb {
            handle: ingestor.handle(),
            ingestor: Mutex::new(Some(ingestor)),
        })
    }

    fn send(&self, lines: &[u8]) {
        if self.handle.send_lines(lines.to_vec()).is_err() {
            eprintln!("portcullis: the audit store writer has stopped; records are not stored");
        }
    }

    /// Stops taking records, commits the queue and seals a checkpoint.
    fn close(&self) -> Result<(), Failure> {
        let ingestor = self.ingestor.lock().ok().and_then(|mut i| i.take());
        match ingestor.map(|i| i.shutdown().and_then(audit_store::Store::close)) {
            Some(Err(e)) => Err(Failure::input(format!("portcullis: the audit store: {e}"))),
            _ => Ok(()),
        }
    }
}

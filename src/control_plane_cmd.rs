//! `portcullis control-plane`: the xDS control plane
//! (`envoy/control-plane`, crate `portcullis-control-plane`) as a command.
//!
//! This file only turns flags into a `control_plane::Config`, prints the
//! bound addresses (`listening xds=... http=...`, one line, so scripts and
//! tests can pass port 0), and waits for ctrl-c or SIGTERM to shut down
//! gracefully. docs/control-plane.md describes the directory layout,
//! versions, ACK/NACK handling and endpoints.

use crate::failure::Failure;
use clap::Args;
use control_plane::resource::ResourceConfig;
use control_plane::{Config, WasmCode};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ControlPlaneArgs {
    /// Directory with one bundle directory per environment (dev/, staging/,
    /// prod/, and ENV@TENANT/ for a tenant's own bundle).
    #[arg(long)]
    bundles: PathBuf,
    /// gRPC address for ADS, ECDS and the Access Log Service.
    #[arg(long)]
    listen: SocketAddr,
    /// HTTP address for /metrics, /healthz, /readyz, /status and /wasm/.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Audit store (SQLite) that the Access Log Service appends to; without
    /// it the Access Log Service is not served.
    #[arg(long = "audit-db")]
    audit_db: Option<PathBuf>,
    /// Ed25519 key that signs the audit store's checkpoints.
    #[arg(long = "audit-key")]
    audit_key: Option<PathBuf>,
    /// Ed25519 key (64 hex digits, `portcullis audit keygen`) that signs
    /// approval grants and requestStates; serves the approval page at
    /// /approvals (docs/approvals.md). Its public half goes in the bundle's
    /// Settings.spec.approvals.keys.
    #[arg(long = "approval-key")]
    approval_key: Option<PathBuf>,
    /// How long an approval request (and the requestState a client holds)
    /// waits for a decision, seconds.
    #[arg(long = "approval-ttl", default_value_t = 900)]
    approval_ttl: u64,
    /// The filter code as a path on the proxies' file system (the default,
    /// with the filter this binary was built with).
    #[arg(long = "wasm-path", conflicts_with = "wasm_url")]
    wasm_path: Option<String>,
    /// The filter code as a URL proxies fetch (with its sha256); point it at
    /// this control plane's own http://HOST:PORT/wasm/portcullis_filter.wasm.
    #[arg(long = "wasm-url")]
    wasm_url: Option<String>,
    /// The Envoy cluster that reaches --wasm-url.
    #[arg(long = "wasm-cluster", default_value = "portcullis_control_plane")]
    wasm_cluster: String,
    /// The filter code served at /wasm/portcullis_filter.wasm (default: the
    /// filter embedded in this binary).
    #[arg(long = "wasm-file")]
    wasm_file: Option<PathBuf>,
    /// The resource (and filter) name.
    #[arg(long = "filter-name", default_value = "portcullis")]
    filter_name: String,
    /// How often the bundles directory is checked for changes, milliseconds.
    #[arg(long = "poll-ms", default_value_t = 500)]
    poll_ms: u64,
    /// How often JWKS named by `jwksUri` are refetched, seconds.
    #[arg(long = "jwks-refresh", default_value_t = 300)]
    jwks_refresh: u64,
}

pub fn run(args: ControlPlaneArgs) -> Result<(), Failure> {
    let wasm: Vec<u8> = match &args.wasm_file {
        Some(p) => std::fs::read(p)
            .map_err(|e| Failure::Usage(format!("cannot read --wasm-file {}: {e}", p.display())))?,
        None => crate::serve_cmd::DEFAULT_FILTER.to_vec(),
    };
    let code = match (&args.wasm_url, &args.wasm_path) {
        (Some(url), _) => {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(Failure::Usage(format!(
                    "--wasm-url {url:?} must be an http:// or https:// URL"
                )));
            }
            WasmCode::Remote {
                url: url.clone(),
                sha256: hex::encode(Sha256::digest(&wasm)),
                cluster: args.wasm_cluster.clone(),
            }
        }
        (None, Some(path)) => WasmCode::Local(path.clone()),
        (None, None) => WasmCode::Local(match &args.wasm_file {
            Some(p) => p.display().to_string(),
            None => env!("PORTCULLIS_FILTER_WASM").to_string(),
        }),
    };
    let mut cfg = Config::new(
        args.bundles.clone(),
        args.listen,
        ResourceConfig {
            filter_name: args.filter_name.clone(),
            code,
        },
    );
    cfg.http = args.http;
    cfg.wasm_bytes = Some(Arc::new(wasm));
    cfg.audit_db = args.audit_db.clone();
    cfg.audit_key = args.audit_key.clone();
    cfg.approval_key = args.approval_key.clone();
    cfg.approval_ttl = std::time::Duration::from_secs(args.approval_ttl);
    cfg.poll_interval = Duration::from_millis(args.poll_ms.max(50));
    cfg.jwks_refresh = Duration::from_secs(args.jwks_refresh.max(1));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let running = control_plane::start(cfg)
            .await
            .map_err(|e| Failure::Usage(format!("{e:#}")))?;
        for (key, f) in running.state.failures() {
            for e in f.errors {
                eprintln!("portcullis: bundle {key} not published: {e}");
            }
        }
        println!(
            "listening xds={} http={}",
            running.xds_addr,
            running
                .http_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into())
        );
        let _ = std::io::stdout().flush();
        running.run_until(stop_signal()).await;
        Ok(())
    })
}

/// ctrl-c, or SIGTERM where there is one.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

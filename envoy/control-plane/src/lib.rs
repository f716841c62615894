//! Portcullis's xDS control plane.
//!
//! Turns a git-friendly directory of bundle directories (one per
//! environment, optionally per tenant) into versioned snapshots and pushes
//! them to every proxy over ADS and ECDS, state-of-the-world and delta,
//! without a restart. Shaped like go-control-plane: a watcher
//! ([`source`]) compiles each directory into a snapshot whose version is
//! the bundle's content hash; streams ([`xds`]) map each node to a
//! snapshot by its metadata and track what they sent, what was acked and
//! what was NACKed ([`state`]). Around it: JWKS fetching for identity
//! providers ([`jwks`]), an HTTP side with metrics, health and status
//! ([`http`]), Envoy's Access Log Service into the audit store ([`als`]),
//! and an ECDS client for `portcullis serve --xds` ([`client`]).
//! docs/control-plane.md is the operator's guide.

pub mod als;
pub mod approvals;
pub mod client;
pub mod http;
pub mod jwks;
pub mod resource;
pub mod source;
pub mod state;
pub mod xds;

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_server::ExtensionConfigDiscoveryServiceServer;
use resource::ResourceConfig;
use state::State;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use resource::{TYPED_EXTENSION_CONFIG, WasmCode};

/// How to run a control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bundles directory (one subdirectory per environment).
    pub bundles: PathBuf,
    /// gRPC (xDS, ALS) address.
    pub listen: SocketAddr,
    /// HTTP address (metrics, health, status, wasm).
    pub http: Option<SocketAddr>,
    pub resource: ResourceConfig,
    /// The filter code served at `/wasm/portcullis_filter.wasm`.
    pub wasm_bytes: Option<Arc<Vec<u8>>>,
    /// Audit store for the Access Log Service.
    pub audit_db: Option<PathBuf>,
    /// Signing key for the audit store's checkpoints.
    pub audit_key: Option<PathBuf>,
    pub poll_interval: Duration,
    pub jwks_refresh: Duration,
    /// Signs approval grants and requestStates; serves `/approvals`.
    pub approval_key: Option<PathBuf>,
    /// How long an approval request waits for a decision.
    pub approval_ttl: Duration,
}

impl Config {
    pub fn new(bundles: PathBuf, listen: SocketAddr, resource: ResourceConfig) -> Self {
        Config {
            bundles,
            listen,
            http: None,
            resource,
            wasm_bytes: None,
            audit_db: None,
            audit_key: None,
            poll_interval: Duration::from_millis(500),
            jwks_refresh: Duration::from_secs(300),
            approval_key: None,
            approval_ttl: Duration::from_secs(approvals::REQUEST_TTL_SECS),
        }
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct Running {
    pub xds_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// Ends every stream and loop, then waits for the gRPC server to stop.
    pub async fn shutdown(self) {
        self.state.shut_down();
        let _ = self.grpc.await;
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Compiles every bundle directory once, binds the listeners and starts
/// serving. A directory that does not compile is reported (on `/status`)
/// and served once it does; start-up does not fail because of it.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    if !cfg.bundles.is_dir() {
        anyhow::bail!(
            "--bundles {} is not a directory; it holds one bundle directory per environment (dev/, staging/, prod/)",
            cfg.bundles.display()
        );
    }
    let state = State::new(cfg.resource.filter_name.clone());
    let jwks = jwks::JwksCache::new(state.clone());
    let mut seen = BTreeMap::new();
    source::scan(&state, &cfg.bundles, &jwks, &cfg.resource, &mut seen).await;

    let store = match &cfg.audit_db {
        Some(path) => {
            let mut store_cfg = audit_store::Config::default();
            if let Some(k) = &cfg.audit_key {
                store_cfg.signing_key = Some(audit_store::load_signing_key(k).map_err(|e| {
                    anyhow::anyhow!("cannot read --audit-key {}: {e}", k.display())
                })?);
            }
            Some(
                audit_store::Store::open(path, store_cfg).map_err(|e| {
                    anyhow::anyhow!("cannot open --audit-db {}: {e}", path.display())
                })?,
            )
        }
        None => None,
    };

    let approvals = match &cfg.approval_key {
        Some(k) => {
            let key = audit_store::load_signing_key(k)
                .map_err(|e| anyhow::anyhow!("cannot read --approval-key {}: {e}", k.display()))?;
            // Its own connection to the same store: SQLite serialises the
            // writers (each append is one IMMEDIATE transaction).
            let store = match &cfg.audit_db {
                Some(path) => Some(
                    audit_store::Store::open(path, audit_store::Config::default()).map_err(
                        |e| anyhow::anyhow!("cannot open --audit-db {}: {e}", path.display()),
                    )?,
                ),
                None => None,
            };
            Some(Arc::new(approvals::Approvals::new(
                key,
                store,
                cfg.approval_ttl.as_secs(),
            )))
        }
        None => None,
    };

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (xDS): {e}", cfg.listen))?;
    let xds_addr = listener.local_addr()?;
    let mut tasks = Vec::new();
    let http_addr = match cfg.http {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (HTTP): {e}"))?;
            let bound = l.local_addr()?;
            tasks.push(tokio::spawn(http::serve(
                l,
                state.clone(),
                cfg.wasm_bytes.clone(),
                approvals.clone(),
            )));
            Some(bound)
        }
        None => None,
    };
    tasks.push(tokio::spawn(source::watch(
        state.clone(),
        cfg.bundles.clone(),
        jwks,
        cfg.resource.clone(),
        cfg.poll_interval,
        cfg.jwks_refresh,
        seen,
    )));

    let xds = xds::Xds::new(state.clone());
    let router = tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(xds.clone()))
        .add_service(ExtensionConfigDiscoveryServiceServer::new(xds))
        .add_optional_service(
            store.map(|s| AccessLogServiceServer::new(als::Als::new(s, state.clone()))),
        );
    let mut stop = state.shutdown_signal();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let grpc = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(Running {
        xds_addr,
        http_addr,
        state,
        tasks,
        grpc,
    })
}

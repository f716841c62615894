//! The fleet state service (issue 19): one count for every proxy.
//!
//! Portcullis keeps per-proxy counters in proxy-wasm shared data; a limit,
//! budget, concurrency limit, approval spend or quarantine with
//! `scope: fleet` is decided here instead, over gRPC (`proxy_grpc_call`):
//! Envoy's Rate Limit Service v3 for rates and budgets, and
//! `portcullis.fleet.v1.Fleet` for leases, spends and the quarantine.
//! State lives in Redis, changed only by atomic scripts (store.rs); the
//! service itself holds none, so replicas can run side by side.

pub mod client;
pub mod rpc;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::task::JoinHandle;

pub use store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub listen: SocketAddr,
    /// `redis://host:port/db` (or `rediss://`).
    pub redis_url: String,
    /// Prefix of every key, so fleets can share a Redis.
    pub prefix: String,
    /// Bound on each Redis command and connect.
    pub redis_timeout: Duration,
}

/// A running service.
pub struct FleetServer {
    pub local_addr: SocketAddr,
    pub task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Connects to Redis and serves both APIs on one gRPC listener.
pub async fn serve(cfg: FleetConfig) -> anyhow::Result<FleetServer> {
    let store = Arc::new(Store::connect(&cfg.redis_url, &cfg.prefix, cfg.redis_timeout).await?);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let local_addr = listener.local_addr()?;
    let router = tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(rpc::Rls(store.clone())))
        .add_service(rpc::FleetApi(store));
    let task = tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(FleetServer { local_addr, task })
}

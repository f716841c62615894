//! `portcullis fleet`: the fleet state service (crates/fleet, issue 19) as a
//! command. Prints `listening grpc=ADDR` (one line, so scripts and tests can
//! pass port 0) and serves until ctrl-c or SIGTERM. docs/fleet.md describes
//! the APIs, costs and Redis sizing.

use crate::failure::Failure;
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct FleetArgs {
    /// gRPC address for RLS v3 and portcullis.fleet.v1.
    #[arg(long)]
    listen: SocketAddr,
    /// Redis (or Valkey) URL, e.g. redis://127.0.0.1:6379/0.
    #[arg(long)]
    redis: String,
    /// Prefix of every Redis key, so fleets can share one Redis.
    #[arg(long, default_value = "portcullis")]
    prefix: String,
    /// Bound on each Redis command and connect, milliseconds: past it the
    /// call is answered UNAVAILABLE and the proxy fails closed.
    #[arg(long = "redis-timeout-ms", default_value_t = 250)]
    redis_timeout_ms: u64,
}

pub fn run(args: FleetArgs) -> Result<(), Failure> {
    let cfg = fleet::FleetConfig {
        listen: args.listen,
        redis_url: args.redis,
        prefix: args.prefix,
        redis_timeout: Duration::from_millis(args.redis_timeout_ms.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let server = fleet::serve(cfg)
            .await
            .map_err(|e| Failure::Usage(format!("fleet service: {e:#}")))?;
        println!("listening grpc={}", server.local_addr);
        let _ = std::io::stdout().flush();
        tokio::select! {
            r = server.task => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Failure::Usage(format!("fleet service: {e}"))),
                Err(e) => Err(Failure::Usage(format!("fleet service: {e}"))),
            },
            _ = crate::control_plane_cmd::stop_signal() => Ok(()),
        }
    })
}

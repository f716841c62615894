//! What a fleet limit adds to a governed call (issue 19, docs/fleet.md): one
//! gRPC round trip to the fleet state service on loopback and its one Redis
//! script, measured from a client as the proxy's `proxy_grpc_call` makes it,
//! against a real redis-server started here.
//!
//! `rls/rate`: ShouldRateLimit for one descriptor (a rate or a budget).
//! `lease/acquire+release`: a concurrency limit's two calls.
//! `spend`: a single-use approval.
//! `redis/evalsha`: the same rate script straight to Redis (no service), to
//! split the cost between the service hop and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fleet::client::FleetClient;
use portcullis_core::fleet::rls::{self, Unit};

struct Redis {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis() -> (Redis, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    // Owned at once, so it is killed and waited for on every path.
    let redis = Redis { child, _dir: dir };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (redis, port);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not start");
}

fn fleet_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_redis, port) = redis();
    let url = format!("redis://127.0.0.1:{port}/");
    let client = rt.block_on(async {
        let s = fleet::serve(fleet::FleetConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            redis_url: url.clone(),
            prefix: "bench".into(),
            redis_timeout: Duration::from_millis(500),
        })
        .await
        .unwrap();
        FleetClient::connect(s.local_addr).await.unwrap()
    });
    let mut g = c.benchmark_group("fleet");
    g.bench_function("rls/rate", |b| {
        b.to_async(&rt).iter(|| async {
            let req = rls::request("bench", &[("tool", "t")], u32::MAX, Unit::Minute, 1);
            client.should_rate_limit(req).await.unwrap()
        })
    });
    g.bench_function("lease/acquire+release", |b| {
        b.to_async(&rt).iter(|| async {
            let r = client.acquire_lease("bench", 1_000, 60_000).await.unwrap();
            client.release_lease("bench", &r.lease_id).await.unwrap()
        })
    });
    let n = AtomicU64::new(0);
    g.bench_function("spend", |b| {
        b.to_async(&rt).iter(|| async {
            let k = format!("jti-{}", n.fetch_add(1, Ordering::Relaxed));
            client.spend(&k, 60_000).await.unwrap()
        })
    });
    let store = rt.block_on(async {
        fleet::Store::connect(&url, "bench-direct", Duration::from_millis(500))
            .await
            .unwrap()
    });
    g.bench_function("redis/evalsha", |b| {
        b.to_async(&rt).iter(|| async {
            let req = rls::request("bench", &[("tool", "t")], u32::MAX, Unit::Minute, 1);
            store.should_rate_limit(&req).await.unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, fleet_calls);
criterion_main!(benches);

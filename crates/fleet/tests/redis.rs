//! The fleet state service against a real redis-server on 127.0.0.1 (started
//! here, random port, temporary directory), reached over real gRPC: two
//! service instances share one Redis, as two proxies' calls would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet::client::FleetClient;
use fleet::{FleetConfig, FleetServer};
use portcullis_core::fleet::api::QuarantineEntry;
use portcullis_core::fleet::rls::{self, Code, Unit};

struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        // Owned at once, so it is killed and waited for on every path.
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn service(redis: &Redis) -> (FleetServer, FleetClient) {
    let s = fleet::serve(FleetConfig {
        listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        redis_url: redis.url(),
        prefix: "pc-test".into(),
        redis_timeout: Duration::from_millis(500),
    })
    .await
    .unwrap();
    let c = FleetClient::connect(s.local_addr).await.unwrap();
    (s, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_limit_of_25_admits_exactly_25_across_two_services() {
    let redis = Redis::start();
    let (_a, ca) = service(&redis).await;
    let (_b, cb) = service(&redis).await;
    let mut calls = Vec::new();
    for i in 0..80 {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        calls.push(tokio::spawn(async move {
            let req = rls::request("portcullis", &[("tool", "search")], 25, Unit::Hour, 0);
            c.should_rate_limit(req).await.unwrap().overall_code
        }));
    }
    let mut ok = 0;
    let mut over = 0;
    for c in calls {
        match Code::try_from(c.await.unwrap()).unwrap() {
            Code::Ok => ok += 1,
            Code::OverLimit => over += 1,
            Code::Unknown => panic!("no decision"),
        }
    }
    assert_eq!((ok, over), (25, 55));
}

#[tokio::test]
async fn a_budget_counts_costs_and_a_refused_call_spends_nothing() {
    let redis = Redis::start();
    let (_a, ca) = service(&redis).await;
    let (_b, cb) = service(&redis).await;
    let budget = |cost| rls::request("portcullis", &[("budget", "alice")], 10, Unit::Day, cost);
    let r = ca.should_rate_limit(budget(4)).await.unwrap();
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert_eq!(r.statuses[0].limit_remaining, 6);
    assert!(r.statuses[0].duration_until_reset.unwrap().seconds <= 86_400);
    let r = cb.should_rate_limit(budget(4)).await.unwrap();
    assert_eq!(
        r.statuses[0].limit_remaining, 2,
        "the other service sees it"
    );
    let r = ca.should_rate_limit(budget(4)).await.unwrap();
    assert_eq!(r.overall_code, Code::OverLimit as i32, "8 + 4 > 10");
    let r = cb.should_rate_limit(budget(2)).await.unwrap();
    assert_eq!(
        r.overall_code,
        Code::Ok as i32,
        "the refused 4 was not spent"
    );
    assert_eq!(r.statuses[0].limit_remaining, 0);
    let r = ca.should_rate_limit(budget(1)).await.unwrap();
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    // Another user's budget is its own.
    let r = ca
        .should_rate_limit(rls::request(
            "portcullis",
            &[("budget", "bob")],
            10,
            Unit::Day,
            10,
        ))
        .await
        .unwrap();
    assert_eq!(r.overall_code, Code::Ok as i32);
}

#[tokio::test]
async fn two_descriptors_are_counted_together_or_not_at_all() {
    let redis = Redis::start();
    let (_a, c) = service(&redis).await;
    let mut req = rls::request("portcullis", &[("tool", "a")], 5, Unit::Hour, 1);
    let tight = rls::request("portcullis", &[("user", "u")], 1, Unit::Hour, 1);
    req.descriptors.extend(tight.descriptors);
    assert_eq!(
        c.should_rate_limit(req.clone()).await.unwrap().overall_code,
        Code::Ok as i32
    );
    let r = c.should_rate_limit(req).await.unwrap();
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    assert_eq!(r.statuses[0].code, Code::Ok as i32);
    assert_eq!(r.statuses[1].code, Code::OverLimit as i32);
    assert_eq!(
        r.statuses[0].limit_remaining, 4,
        "the tool limit was not spent"
    );
    // A descriptor without a limit cannot be decided: refused, not passed.
    let mut bad = rls::request("portcullis", &[("tool", "a")], 5, Unit::Hour, 1);
    bad.descriptors[0].limit = None;
    let e = c.should_rate_limit(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrency_limit_of_1_holds_across_services_and_leases_expire() {
    let redis = Redis::start();
    let (_a, ca) = service(&redis).await;
    let (_b, cb) = service(&redis).await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        calls.push(tokio::spawn(async move {
            c.acquire_lease("tool:slow", 1, 60_000).await.unwrap()
        }));
    }
    let mut granted = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        if r.granted {
            granted.push(r.lease_id);
        }
    }
    assert_eq!(granted.len(), 1, "exactly one holder");
    assert!(
        !cb.acquire_lease("tool:slow", 1, 60_000)
            .await
            .unwrap()
            .granted
    );
    assert!(ca.release_lease("tool:slow", &granted[0]).await.unwrap());
    assert!(
        !ca.release_lease("tool:slow", &granted[0]).await.unwrap(),
        "released once"
    );
    let r = cb.acquire_lease("tool:slow", 1, 300).await.unwrap();
    assert!(r.granted, "free again after the release");
    assert!(!ca.acquire_lease("tool:slow", 1, 300).await.unwrap().granted);
    // A holder that never releases (a proxy that died) frees its slot when
    // the lease expires, by Redis's clock.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(ca.acquire_lease("tool:slow", 1, 300).await.unwrap().granted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_is_spent_once_across_services() {
    let redis = Redis::start();
    let (_a, ca) = service(&redis).await;
    let (_b, cb) = service(&redis).await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        calls.push(tokio::spawn(async move {
            c.spend("approval:jti-1", 60_000).await.unwrap()
        }));
    }
    let mut firsts = 0;
    for c in calls {
        firsts += usize::from(c.await.unwrap());
    }
    assert_eq!(firsts, 1);
    assert!(cb.spend("approval:jti-2", 60_000).await.unwrap());
}

#[tokio::test]
async fn a_quarantine_entry_added_through_one_service_is_listed_by_the_other() {
    let redis = Redis::start();
    let (_a, ca) = service(&redis).await;
    let (_b, cb) = service(&redis).await;
    let empty = cb.list_quarantine().await.unwrap();
    assert!(empty.entries.is_empty());
    let e = QuarantineEntry {
        server: "files".into(),
        tool: "read_file".into(),
        pin: "sha256:aaa".into(),
        seen: "sha256:bbb".into(),
        reason: "definition changed".into(),
    };
    let r = ca.add_quarantine(e.clone()).await.unwrap();
    assert!(r.added);
    assert!(r.version > empty.version);
    let again = cb.add_quarantine(e.clone()).await.unwrap();
    assert!(!again.added, "already quarantined");
    assert_eq!(again.version, r.version, "nothing changed");
    let list = cb.list_quarantine().await.unwrap();
    assert_eq!(list.entries, vec![e]);
    assert_eq!(list.version, r.version);
}

#[tokio::test]
async fn with_redis_down_calls_are_refused_unavailable_and_pass_again_after() {
    let redis = Redis::start();
    let (_a, c) = service(&redis).await;
    let req = || rls::request("portcullis", &[("tool", "t")], 100, Unit::Hour, 1);
    assert_eq!(
        c.should_rate_limit(req()).await.unwrap().overall_code,
        Code::Ok as i32
    );
    let port = redis.stop();
    let e = c.should_rate_limit(req()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    let e = c.spend("approval:x", 1000).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let _redis = Redis::start_on(port);
    // The connection comes back on its own; the first call may still meet
    // the old broken connection.
    let mut back = false;
    for _ in 0..50 {
        if let Ok(r) = c.should_rate_limit(req()).await {
            assert_eq!(r.overall_code, Code::Ok as i32);
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "calls pass again once Redis is back");
}

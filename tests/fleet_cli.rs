//! `portcullis fleet` as a process: it prints its bound address and serves
//! RLS v3 and portcullis.fleet.v1 from a real redis-server (issue 19).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleet::client::FleetClient;
use portcullis_core::fleet::rls::{self, Code, Unit};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_fleet_command_serves_from_redis() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = Kill(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed"),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["fleet", "--listen", "127.0.0.1:0", "--redis"])
        .arg(format!("redis://127.0.0.1:{port}/"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take();
    let _fleet = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout.unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening grpc=").unwrap();
    let c = FleetClient::connect(addr.parse().unwrap()).await.unwrap();
    let req = || rls::request("portcullis", &[("tool", "t")], 1, Unit::Minute, 1);
    assert_eq!(
        c.should_rate_limit(req()).await.unwrap().overall_code,
        Code::Ok as i32
    );
    assert_eq!(
        c.should_rate_limit(req()).await.unwrap().overall_code,
        Code::OverLimit as i32
    );
    assert!(c.spend("approval:a", 60_000).await.unwrap());
    assert!(!c.spend("approval:a", 60_000).await.unwrap());
}

//! Issue 19 end to end, real parts only: a redis-server on loopback,
//! `portcullis fleet`, and two `portcullis serve` (the wasm filter in
//! host-shim, its `proxy_grpc_call` to the fleet service) in front of the
//! same official-SDK MCP server.
//!
//! * A fleet limit of 25 holds at exactly 25 across both proxies under
//!   parallel load from both, as the upstream's own record shows.
//! * A daily budget holds across both.
//! * An approval grant spent through one proxy is refused `already_used`
//!   by the other, and the upstream runs the call once.
//! * With Redis stopped, calls under a fleet limit are refused with a clear
//!   error and a record; once Redis is back they pass again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use support::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_on(port: u16, dir: &Path) -> Kill {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let redis = Kill(child);
    assert!(
        eventually(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "redis-server on {port}"
    );
    redis
}

fn fleet_service(redis_port: u16) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["fleet", "--listen", "127.0.0.1:0", "--redis"])
        .arg(format!("redis://127.0.0.1:{redis_port}/"))
        .args(["--redis-timeout-ms", "200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take();
    let fleet = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout.unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening grpc=")
        .unwrap()
        .to_owned();
    (fleet, addr)
}

fn bundle(dir: &Path) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("server.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {name: docs}\n\
         spec:\n  match: {pathPrefix: /mcp}\n  owner: platform-team\n  classification: internal\n\
         \x20 tools:\n    - name: echo\n    - name: pay\n",
    )
    .unwrap();
    std::fs::write(
        b.join("policy.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: docs}\nspec:\n\
         \x20 rules:\n    - {id: all, effect: permit, tools: [echo, pay]}\n\
         \x20 limits:\n\
         \x20   - {id: echo-fleet, tools: [echo], scope: fleet, rate: {requests: 25, per: 1h}}\n\
         \x20   - {id: pay-budget, tools: [pay], scope: fleet, budget: {unitsPerDay: 10, costs: {pay: 4}}}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("settings.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {name: settings}\n\
         spec:\n  fleet: {cluster: fleet, timeoutMs: 1000}\n",
    )
    .unwrap();
    b
}

fn call(base: &str, id: usize, tool: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": "hi", "amount": 1, "to": "a"}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    http(
        base,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
        body.to_string().as_bytes(),
    )
}

fn upstream_calls(log: &Path, tool: &str) -> usize {
    jsonl(log)
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
        .filter(|b| b["method"] == "tools/call" && b["params"]["name"] == tool)
        .count()
}

#[test]
fn fleet_limits_hold_across_two_proxies_and_fail_closed_without_redis() {
    let dir = temp_dir("e2e-fleet");
    let redis_port = free_port();
    let redis = redis_on(redis_port, &dir);
    let (_fleet, fleet_addr) = fleet_service(redis_port);
    let upstream_log = dir.join("upstream.jsonl");
    let (_upstream, port) = mcp_server(&["--policy-tools", "--json-response"], &upstream_log);
    let b = bundle(&dir);
    let cluster = format!("fleet=http://{fleet_addr}");
    let proxies: Vec<_> = (0..2)
        .map(|i| {
            let audit = dir.join(format!("audit-{i}.jsonl"));
            let (p, base) = portcullis_serve(&[
                "--upstream",
                &format!("http://127.0.0.1:{port}"),
                "--bundle",
                b.to_str().unwrap(),
                "--audit-log",
                audit.to_str().unwrap(),
                "--cluster",
                &cluster,
                "--workers",
                "2",
            ]);
            (p, base.trim_end_matches('/').to_owned(), audit)
        })
        .collect();
    let bases: Vec<String> = proxies.iter().map(|(_, b, _)| b.clone()).collect();

    // 80 calls, 8 threads, alternating proxies: exactly 25 pass.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let bases = bases.clone();
                s.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let r = call(&bases[(t + i) % 2], t * 100 + i, "echo");
                            if r.status == 429 {
                                assert_eq!(r.json()["error"]["code"], -31089);
                                assert_eq!(
                                    r.json()["error"]["data"]["limit"]["id"],
                                    "Policy/docs#echo-fleet"
                                );
                            }
                            r.status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 25, "statuses: {statuses:?}");
    assert_eq!(statuses.len() - ok, 55, "statuses: {statuses:?}");
    assert_eq!(
        upstream_calls(&upstream_log, "echo"),
        25,
        "the upstream saw 25"
    );

    // A daily budget of 10, cost 4: two calls through either proxy, then no.
    assert_eq!(call(&bases[0], 1, "pay").status, 200);
    assert_eq!(call(&bases[1], 2, "pay").status, 200);
    let r = call(&bases[0], 3, "pay");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["data"]["limit"]["kind"], "budget");
    assert_eq!(call(&bases[1], 4, "pay").status, 429);
    assert_eq!(upstream_calls(&upstream_log, "pay"), 2);

    // Redis stopped: refused, clearly, and recorded; back: passes again.
    drop(redis);
    let r = call(&bases[1], 5, "pay");
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json()["error"]["data"]["limit"]["kind"],
        "fleet-unavailable"
    );
    let audit = proxies[1].2.clone();
    assert!(
        eventually(|| jsonl(&audit)
            .iter()
            .any(|r| r["limit"]["kind"] == "fleet-unavailable")),
        "the refusal is recorded"
    );
    let _redis = redis_on(redis_port, &dir);
    // A fresh Redis has no counts (no persistence in this test).
    assert!(
        eventually(|| call(&bases[0], 6, "pay").status == 200),
        "passes again once Redis is back"
    );
}

/// A single-use approval is spent once for the whole fleet: the grant
/// `portcullis approve` mints for a refused call passes through proxy A,
/// and the very same grant through proxy B is refused `already_used` (the
/// fleet service's `Spend` said it was not the first), with a record; the
/// upstream ran the call exactly once.
#[test]
fn an_approval_spent_through_one_proxy_is_refused_by_the_other() {
    let dir = temp_dir("e2e-fleet-approval");
    let redis_port = free_port();
    let _redis = redis_on(redis_port, &dir);
    let (_fleet, fleet_addr) = fleet_service(redis_port);
    let upstream_log = dir.join("upstream.jsonl");
    let (_upstream, port) = mcp_server(&["--policy-tools", "--json-response"], &upstream_log);

    let key = dir.join("approver.key");
    let (code, _, err) = portcullis(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "keygen: {err}");
    let public = std::fs::read_to_string(dir.join("approver.key.pub")).unwrap();
    let b = dir.join("bundle-approval");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("server.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {name: docs}\n\
         spec:\n  match: {pathPrefix: /mcp}\n  owner: platform-team\n  classification: internal\n\
         \x20 tools:\n    - name: pay\n",
    )
    .unwrap();
    std::fs::write(
        b.join("policy.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: docs}\nspec:\n\
         \x20 rules:\n\
         \x20   - {id: payments, effect: permit, tools: [pay]}\n\
         \x20   - id: big-payments\n\
         \x20     effect: requireApproval\n\
         \x20     tools: [pay]\n\
         \x20     arguments: {type: object, required: [amount], properties: {amount: {type: number, exclusiveMinimum: 100}}}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("settings.yaml"),
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {{name: settings}}\n\
             spec:\n  fleet: {{cluster: fleet, timeoutMs: 1000}}\n\
             \x20 approvals:\n    keys: [\"{}\"]\n    url: https://approvals.example.com/approve\n    maxTtl: 1h\n",
            public.trim()
        ),
    )
    .unwrap();

    let cluster = format!("fleet=http://{fleet_addr}");
    let proxies: Vec<_> = (0..2)
        .map(|i| {
            let audit = dir.join(format!("approval-audit-{i}.jsonl"));
            let (p, base) = portcullis_serve(&[
                "--upstream",
                &format!("http://127.0.0.1:{port}"),
                "--bundle",
                b.to_str().unwrap(),
                "--audit-log",
                audit.to_str().unwrap(),
                "--cluster",
                &cluster,
                "--workers",
                "2",
            ]);
            (p, base.trim_end_matches('/').to_owned(), audit)
        })
        .collect();

    // A big payment, as a raw MCP 2026-07-28 client without URL-mode
    // elicitation sends it: the error flow, retried with x-mcp-approval.
    fn pay(base: &str, id: usize, grant: Option<&str>) -> Response {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "pay", "arguments": {"amount": 2500, "to": "acct-9"}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}}});
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "pay"),
        ];
        if let Some(g) = grant {
            headers.push(("x-mcp-approval", g));
        }
        http(base, "POST", "/mcp", &headers, body.to_string().as_bytes())
    }
    let (base_a, base_b) = (&proxies[0].1, &proxies[1].1);

    // Without a grant: refused, with the id to approve.
    let refused = pay(base_a, 1, None).json();
    assert_eq!(refused["error"]["code"], -31099, "{refused}");
    let approval = &refused["error"]["data"]["approval"];
    assert_eq!(approval["covers"]["rule"], "Policy/docs#big-payments");
    let id = approval["id"].as_str().unwrap().to_owned();
    let (code, grant, err) = portcullis(&[
        "approve",
        &id,
        "--key",
        key.to_str().unwrap(),
        "--ttl",
        "10m",
    ]);
    assert_eq!(code, 0, "approve: {err}");
    let grant = grant.trim().to_owned();
    assert!(grant.starts_with("pat1."), "{grant}");
    assert_eq!(upstream_calls(&upstream_log, "pay"), 0);

    // Spent through proxy A: the call runs.
    let r = pay(base_a, 2, Some(&grant));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        r.json().to_string().contains("paid 2500.00 to acct-9"),
        "{}",
        r.json()
    );
    assert_eq!(upstream_calls(&upstream_log, "pay"), 1);

    // The same grant through proxy B: already spent in the fleet.
    let again = pay(base_b, 3, Some(&grant)).json();
    assert_eq!(again["error"]["code"], -31099, "{again}");
    assert_eq!(
        again["error"]["data"]["approval"]["error"], "already_used",
        "{again}"
    );
    // And through A again, for good measure.
    let again = pay(base_a, 4, Some(&grant)).json();
    assert_eq!(
        again["error"]["data"]["approval"]["error"], "already_used",
        "{again}"
    );
    assert_eq!(
        upstream_calls(&upstream_log, "pay"),
        1,
        "the upstream ran the approved call exactly once"
    );

    // The records: granted through A, refused already_used through B.
    let (audit_a, audit_b) = (&proxies[0].2, &proxies[1].2);
    assert!(
        eventually(|| jsonl(audit_a)
            .iter()
            .any(|r| r["approval"]["status"] == "granted" && r["outcome"] == "result")),
        "A records the granted call: {:#?}",
        jsonl(audit_a)
    );
    assert!(
        eventually(|| jsonl(audit_b)
            .iter()
            .any(|r| r["approval"]["error"] == "already_used")),
        "B records the refusal: {:#?}",
        jsonl(audit_b)
    );
    assert!(
        !jsonl(audit_b)
            .iter()
            .any(|r| r["approval"]["status"] == "granted"),
        "B granted nothing"
    );
}

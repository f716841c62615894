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
    fleet_tool_call(
        base,
        id,
        tool,
        json!({"text": "hi", "amount": 1, "to": "a"}),
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
    let proxies = two_fleet_proxies(&dir, &b, port, &fleet_addr);
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

    let proxies = two_fleet_proxies(&dir, &b, port, &fleet_addr);

    // A big payment, as a raw MCP 2026-07-28 client without URL-mode
    // elicitation sends it: the error flow, retried with x-mcp-approval.
    fn pay(base: &str, id: usize, grant: Option<&str>) -> Response {
        let grant: Vec<(&str, &str)> = grant.map(|g| ("x-mcp-approval", g)).into_iter().collect();
        fleet_rpc(
            base,
            id,
            "tools/call",
            Some("pay"),
            json!({"name": "pay", "arguments": {"amount": 2500, "to": "acct-9"}}),
            &grant,
        )
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

// ------------------------------------------------ quarantine and leases

/// A 2026-07-28 request straight to `/mcp` of `base`, with the SDK's
/// per-request `_meta`.
fn fleet_rpc(
    base: &str,
    id: usize,
    method: &str,
    name: Option<&str>,
    params: Value,
    extra: &[(&str, &str)],
) -> Response {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name));
    }
    headers.extend_from_slice(extra);
    http(base, "POST", "/mcp", &headers, body.to_string().as_bytes())
}

fn fleet_tool_call(base: &str, id: usize, tool: &str, arguments: Value) -> Response {
    fleet_rpc(
        base,
        id,
        "tools/call",
        Some(tool),
        json!({"name": tool, "arguments": arguments}),
        &[],
    )
}

/// Two `portcullis serve` (two workers each) over `bundle` in front of
/// `upstream_port`, with the fleet service as cluster `fleet`: each
/// proxy, its base URL and its audit log.
fn two_fleet_proxies(
    dir: &Path,
    bundle: &Path,
    upstream_port: u16,
    fleet_addr: &str,
) -> Vec<(Proc, String, PathBuf)> {
    let cluster = format!("fleet=http://{fleet_addr}");
    (0..2)
        .map(|i| {
            let audit = dir.join(format!("audit-{i}.jsonl"));
            let (p, base) = portcullis_serve(&[
                "--upstream",
                &format!("http://127.0.0.1:{upstream_port}"),
                "--bundle",
                bundle.to_str().unwrap(),
                "--audit-log",
                audit.to_str().unwrap(),
                "--cluster",
                &cluster,
                "--workers",
                "2",
            ]);
            (p, base.trim_end_matches('/').to_owned(), audit)
        })
        .collect()
}

/// tests/e2e/content_server.py (the official SDK's server with a sleeper
/// tool) on a free port.
fn content_upstream(extra: &[&str]) -> (Kill, u16) {
    let mut child = Command::new(python())
        .arg(root().join("tests/e2e/content_server.py"))
        .args(["--port", "0", "--json-response"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start content_server.py");
    let stdout = child.stdout.take().unwrap();
    let upstream = Kill(child);
    let mut port = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(p) = line.strip_prefix("READY ") {
            port = p.trim().parse::<u16>().ok();
            break;
        }
    }
    (upstream, port.expect("content_server.py printed READY"))
}

/// Issue 19: a rug pull seen through proxy A (the upstream changes a pinned
/// tool's definition, and A's tools/list catches it) is refused through
/// proxy B, which never listed the tools again: A's root context pushes the
/// pin failure to the fleet service on its tick, B's refreshes the fleet's
/// quarantine on its own. The stated bound with this bundle (the default
/// `quarantineRefreshMs` of 1000, `timeoutMs` 1000) is 2 x 1000 + 2 x 1000
/// = 4 s; the test polls with a generous deadline and asserts no timing.
#[test]
fn fleet_a_rug_pull_seen_through_one_proxy_is_refused_through_the_other() {
    use portcullis_core::pins::tool_pin;
    let dir = temp_dir("e2e-fleet-rug");
    let redis_port = free_port();
    let _redis = redis_on(redis_port, &dir);
    let (_fleet, fleet_addr) = fleet_service(redis_port);
    // The flip comes after the first tools/list answer: the approval below.
    let (_upstream, port) = content_upstream(&["--rug-pull", "--rug-pull-after", "1"]);
    let direct = mcp_client(
        &format!("http://127.0.0.1:{port}/mcp"),
        "2026-07-28",
        &json!([{"op": "list_tools"}]),
        &[],
    );
    let listed = direct
        .iter()
        .find(|l| l["op"] == "list_tools")
        .expect("the approval's list");
    let approved = listed["result"]["tools"].as_array().unwrap().clone();
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    let mut server =
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {name: crm}\n\
         spec:\n  match: {pathPrefix: /mcp}\n  owner: platform-team\n  classification: internal\n\
         \x20 pinning: lenient\n  onPinFailure: removeTool\n  tools:\n"
            .to_owned();
    for t in &approved {
        server.push_str(&format!(
            "    - name: {}\n      pin: {}\n",
            json!(t["name"]),
            json!(tool_pin(t).unwrap())
        ));
    }
    std::fs::write(b.join("server.yaml"), server).unwrap();
    std::fs::write(
        b.join("settings.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {name: settings}\n\
         spec:\n  fleet: {cluster: fleet, timeoutMs: 1000}\n",
    )
    .unwrap();
    let proxies = two_fleet_proxies(&dir, &b, port, &fleet_addr);
    let (a, bb) = (&proxies[0].1, &proxies[1].1);

    // B calls `add` as approved.
    let r = fleet_tool_call(bb, 1, "add", json!({"a": 2, "b": 40}));
    assert_eq!(r.status, 200, "{}", r.json());
    assert!(r.json()["error"].is_null(), "{}", r.json());

    // A lists the tools after the flip: `add` failed its pin and is gone.
    let r = fleet_rpc(a, 2, "tools/list", None, json!({}), &[]);
    assert_eq!(r.status, 200);
    let names: Vec<String> = r.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.iter().any(|n| n == "add"), "{names:?}");

    // B refuses it within the bound, without listing the tools itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        let r = fleet_tool_call(bb, 3, "add", json!({"a": 1, "b": 1}));
        let v = r.json();
        if v["error"]["data"]["rule"] == "McpServer/crm#pins" {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "proxy B still serves the rug-pulled tool: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(refused["error"]["data"]["rule"], "McpServer/crm#pins");
    let why = refused["error"]["data"]["reason"].as_str().unwrap();
    assert!(why.contains("fleet-wide quarantine"), "{why}");
}

/// Issue 19: a fleet concurrency limit of 1 holds across two proxies. Two
/// slow calls at once, one through each: exactly one passes, the other is
/// refused (429, -31089, `concurrency`). Once the first has ended its lease
/// goes back (the stream hands it to the root context's queue, which calls
/// ReleaseLease), so a new call passes long before the lease's expiry
/// (`leaseTtlMs`, 300 s by default).
#[test]
fn fleet_a_concurrency_limit_of_one_holds_across_two_proxies_and_is_released() {
    let dir = temp_dir("e2e-fleet-lease");
    let redis_port = free_port();
    let _redis = redis_on(redis_port, &dir);
    let (_fleet, fleet_addr) = fleet_service(redis_port);
    let upstream_log = dir.join("upstream.jsonl");
    let (_upstream, port) = mcp_server(&["--slow-tool", "--json-response"], &upstream_log);
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("server.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {name: docs}\n\
         spec:\n  match: {pathPrefix: /mcp}\n  owner: platform-team\n  classification: internal\n\
         \x20 tools:\n    - name: slow\n    - name: echo\n",
    )
    .unwrap();
    std::fs::write(
        b.join("policy.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: docs}\nspec:\n\
         \x20 rules:\n    - {id: all, effect: permit, tools: [slow, echo]}\n\
         \x20 limits:\n    - {id: one-slow, tools: [slow], scope: fleet, concurrency: 1}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("settings.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {name: settings}\n\
         spec:\n  fleet: {cluster: fleet, timeoutMs: 1000}\n",
    )
    .unwrap();
    let proxies = two_fleet_proxies(&dir, &b, port, &fleet_addr);
    let bases: Vec<String> = proxies.iter().map(|(_, b, _)| b.clone()).collect();

    let answers: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = bases
            .iter()
            .enumerate()
            .map(|(i, base)| {
                s.spawn(move || fleet_tool_call(base, 10 + i, "slow", json!({"seconds": 3})))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    let refused = answers
        .iter()
        .find(|r| r.status == 429)
        .expect("one refused");
    let v = refused.json();
    assert_eq!(v["error"]["code"], -31089, "{v}");
    assert_eq!(v["error"]["data"]["limit"]["kind"], "concurrency", "{v}");
    assert_eq!(
        v["error"]["data"]["limit"]["id"], "Policy/docs#one-slow",
        "{v}"
    );
    let passed = answers.iter().find(|r| r.status == 200).unwrap().json();
    assert!(passed["error"].is_null(), "{passed}");
    assert_eq!(upstream_calls(&upstream_log, "slow"), 1);

    // The lease went back when the call ended: a new call passes, through
    // either proxy, well before the lease would have expired.
    assert!(
        eventually(|| fleet_tool_call(&bases[1], 20, "slow", json!({"seconds": 0})).status == 200),
        "released"
    );
    assert!(
        eventually(|| fleet_tool_call(&bases[0], 21, "slow", json!({"seconds": 0})).status == 200),
        "released again"
    );
}

//! `portcullis control-plane` and `portcullis serve --xds`, end to end:
//! the Python MCP SDK talks through host-shim, which takes its bundle from
//! the control plane over ECDS, while a policy file is edited. The next
//! call follows the new bundle; calls in flight meanwhile do not fail; an
//! invalid edit is never applied. And the control plane stops cleanly on
//! SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn server_yaml(tools: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n  name: everything\nspec:\n  match: {pathPrefix: /mcp}\n  tools:\n",
    );
    for t in tools {
        s.push_str(&format!("    - name: {t}\n"));
    }
    s
}

/// Replaces `dir/server.yaml` atomically, as an editor or git does.
fn write_policy(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(".server.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("server.yaml")).unwrap();
}

fn version_of(dir: &Path) -> String {
    portcullis_core::bundle::yaml::load_dir(dir)
        .unwrap()
        .version
}

/// Starts the control plane; returns it, its xDS URL and its HTTP base URL.
fn control_plane(bundles: &Path) -> (Proc, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("control-plane")
        .arg("--bundles")
        .arg(bundles)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--poll-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start portcullis control-plane");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("control-plane did not print its addresses");
    let mut xds = String::new();
    let mut http = String::new();
    for part in line.split_whitespace() {
        if let Some(a) = part.strip_prefix("xds=") {
            xds = format!("http://{a}");
        }
        if let Some(a) = part.strip_prefix("http=") {
            http = format!("http://{a}");
        }
    }
    (
        Proc {
            child,
            name: "control-plane".into(),
        },
        xds,
        http,
    )
}

fn node_acked(http_base: &str, node: &str) -> Option<String> {
    let status = http(http_base, "GET", "/status", &[], b"").json();
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == node)?["acked_version"]
        .as_str()
        .map(str::to_string)
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn call(url: &str, tool: &str, args: Value) -> Value {
    let lines = mcp_client(
        url,
        "2025-06-18",
        &json!([{"op": "call_tool", "name": tool, "arguments": args}]),
        &[],
    );
    lines.last().unwrap().clone()
}

#[test]
fn serve_over_xds_follows_policy_edits_without_failing_calls_in_flight() {
    let dir = temp_dir("cp-e2e");
    let bundles = dir.join("bundles");
    let dev = bundles.join("dev");
    write_policy(&dev, &server_yaml(&["echo", "add"]));
    let v1 = version_of(&dev);
    let (_upstream, port) = mcp_server(&[], &dir.join("upstream.jsonl"));
    let (_cp, xds, cp_http) = control_plane(&bundles);
    let (_serve, base) = portcullis_serve(&[
        "--xds",
        &xds,
        "--xds-environment",
        "dev",
        "--xds-node-id",
        "e2e-serve",
        "--upstream",
        &format!("http://127.0.0.1:{port}"),
    ]);
    let url = format!("{base}/mcp");
    assert!(eventually(
        || node_acked(&cp_http, "e2e-serve").as_deref() == Some(v1.as_str())
    ));

    let added = call(&url, "add", json!({"a": 2, "b": 40}));
    assert_eq!(added["ok"], true, "{added}");
    assert_eq!(added["result"]["structuredContent"]["result"], 42);

    // Calls in flight while the bundle changes: one SDK session making
    // echo calls (allowed by both bundles) throughout.
    const STEADY: usize = 200;
    let steady_url = url.clone();
    let steady = std::thread::spawn(move || {
        let script: Vec<Value> = (0..STEADY)
            .map(|i| json!({"op": "call_tool", "name": "echo", "arguments": {"text": format!("m{i}")}}))
            .collect();
        mcp_client(&steady_url, "2025-06-18", &Value::Array(script), &[])
    });
    let record = dir.join("upstream.jsonl");
    let echoes_since = |t: f64| {
        // Read while the server appends: a line being written is skipped.
        std::fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| {
                r["time"].as_f64().unwrap() >= t
                    && r["body"].as_str().unwrap_or("").contains("\"echo\"")
            })
            .count()
    };
    assert!(
        eventually(|| echoes_since(0.0) >= 5),
        "the steady session did not start"
    );

    // The policy no longer allows `add`.
    write_policy(&dev, &server_yaml(&["echo"]));
    let v2 = version_of(&dev);
    assert_ne!(v1, v2);
    assert!(
        eventually(|| node_acked(&cp_http, "e2e-serve").as_deref() == Some(v2.as_str())),
        "serve did not ack {v2}"
    );
    let acked_at = now_secs();
    // The next call is decided by the new rule.
    let denied = call(&url, "add", json!({"a": 2, "b": 40}));
    assert_eq!(denied["ok"], false, "{denied}");
    assert!(
        denied["error"]["code"].is_i64(),
        "a JSON-RPC error: {denied}"
    );

    let lines = steady.join().unwrap();
    let calls: Vec<&Value> = lines.iter().filter(|l| l["op"] == "call_tool").collect();
    assert_eq!(calls.len(), STEADY);
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(c["ok"], true, "in-flight call {i} failed: {c}");
        assert_eq!(c["result"]["structuredContent"]["result"], format!("m{i}"));
    }
    // The session really spanned the switch: echo calls reached the
    // upstream after the new bundle was acked, too.
    assert!(
        echoes_since(acked_at) > 0,
        "the steady session ended before the switch; make it longer"
    );

    // An invalid edit is never applied: serve stays on v2.
    write_policy(
        &dev,
        &server_yaml(&["echo", "add"]).replace("name: add", "nme: add"),
    );
    assert!(eventually(|| {
        let s = http(&cp_http, "GET", "/status", &[], b"").json();
        s["errors"]["dev"]["errors"].as_array().is_some_and(|e| {
            e.iter()
                .any(|l| l.as_str().unwrap().contains("dev/server.yaml:"))
        })
    }));
    let still = call(&url, "add", json!({"a": 1, "b": 1}));
    assert_eq!(still["ok"], false, "{still}");
    assert_eq!(
        node_acked(&cp_http, "e2e-serve").as_deref(),
        Some(v2.as_str())
    );
    let echoed = call(&url, "echo", json!({"text": "still here"}));
    assert_eq!(echoed["ok"], true, "{echoed}");
}

#[test]
fn control_plane_stops_cleanly_on_sigterm() {
    let dir = temp_dir("cp-term");
    let bundles = dir.join("bundles");
    write_policy(&bundles.join("prod"), &server_yaml(&["echo"]));
    let (mut cp, _xds, cp_http) = control_plane(&bundles);
    let ready = http(&cp_http, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200);
    let metrics = String::from_utf8(http(&cp_http, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(metrics.contains(&format!(
        "portcullis_cp_bundle_version_info{{bundle=\"prod\",version=\"{}\"}} 1",
        version_of(&bundles.join("prod"))
    )));
    let pid = cp.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = cp.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("control-plane did not exit on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

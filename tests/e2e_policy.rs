//! The Policy pillar end to end: the official Python MCP SDK client through
//! `portcullis serve` (the wasm filter in host-shim) to the SDK server.
//!
//! * Argument-level rules: a file tool allowed only under `/data/public`;
//!   traversal attempts (`../`, percent-encoded, backslashes, `./..`) are
//!   refused and never reach the (deliberately naive) server.
//! * Approval: a payment above 100 needs approval; `portcullis approve`
//!   mints a token, one retry goes through, a second is refused, other
//!   arguments are refused, an expired approval is refused.
//! * Rate limits under concurrency: many parallel calls over several worker
//!   VMs never exceed the bucket; the exact count is asserted against what
//!   the upstream received.
//! * `portcullis simulate` replays the recorded calls against a changed
//!   bundle and reports exactly the calls whose decision changed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const REVISION: &str = "2025-11-25";

fn bundle_dir(dir: &Path, public_key: &str, extra_rules: &str, limit: &str) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("server.yaml"),
        r#"apiVersion: portcullis.dev/v1alpha1
kind: McpServer
metadata: {name: docs}
spec:
  match: {pathPrefix: /mcp}
  owner: platform-team
  classification: confidential
  tools:
    - name: fetch-file
    - name: pay
    - name: echo
"#,
    )
    .unwrap();
    std::fs::write(
        b.join("policy.yaml"),
        format!(
            r#"apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {{name: docs}}
spec:
  rules:
    - id: public-files
      effect: permit
      tools: [fetch-file]
      arguments:
        type: object
        required: [path]
        properties:
          path:
            type: string
            # Plain segments under /data/public only: no `.`/`..` segments, no
            # percent-escapes or backslashes the server might decode.
            pattern: "^/data/public(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$"
            not: {{pattern: "(^|/)\\.\\.?(/|$)"}}
    - id: payments
      effect: permit
      tools: [pay]
    - id: big-payments
      effect: requireApproval
      tools: [pay]
      arguments:
        type: object
        required: [amount]
        properties:
          amount: {{type: number, exclusiveMinimum: 100}}
{extra_rules}
  limits:
{limit}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        b.join("settings.yaml"),
        format!(
            r#"apiVersion: portcullis.dev/v1alpha1
kind: Settings
metadata: {{name: settings}}
spec:
  auditArguments: redacted
  approvals:
    keys: ["{public_key}"]
    url: https://approvals.example.com/approve
    maxTtl: 1h
"#
        ),
    )
    .unwrap();
    b
}

fn portcullis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("approver.key");
    let (ok, _, err) = portcullis(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert!(ok, "keygen: {err}");
    let public = std::fs::read_to_string(dir.join("approver.key.pub")).unwrap();
    (key, public.trim().to_owned())
}

struct Rig {
    _upstream: Proc,
    _proxy: Proc,
    url: String,
    upstream_log: PathBuf,
    audit: PathBuf,
}

fn start(dir: &Path, bundle: &Path, workers: &str) -> Rig {
    let upstream_log = dir.join("upstream.jsonl");
    let audit = dir.join("audit.jsonl");
    let (upstream, port) = mcp_server(&["--policy-tools", "--json-response"], &upstream_log);
    let upstream_url = format!("http://127.0.0.1:{port}");
    let (proxy, base) = portcullis_serve(&[
        "--upstream",
        &upstream_url,
        "--bundle",
        bundle.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
        "--workers",
        workers,
    ]);
    Rig {
        _upstream: upstream,
        _proxy: proxy,
        url: format!("{}/mcp", base.trim_end_matches('/')),
        upstream_log,
        audit,
    }
}

/// Tool calls the upstream actually received, as (name, arguments).
fn upstream_calls(log: &Path) -> Vec<(String, Value)> {
    jsonl(log)
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
        .filter(|b| b["method"] == "tools/call")
        .map(|b| {
            (
                b["params"]["name"].as_str().unwrap_or("").to_owned(),
                b["params"]["arguments"].clone(),
            )
        })
        .collect()
}

fn call(name: &str, args: Value) -> Value {
    json!({"op": "call_tool", "name": name, "arguments": args})
}

#[test]
fn file_reads_only_under_data_public_and_traversal_never_reaches_the_server() {
    let dir = temp_dir("e2e-policy-files");
    let (_, public) = keygen(&dir);
    let bundle = bundle_dir(&dir, &public, "", "    []");
    let rig = start(&dir, &bundle, "2");
    let attempts = [
        "/data/public/../private/salaries.txt",
        "/data/public/%2e%2e/private/salaries.txt",
        "/data/public/%2E%2E%2Fprivate%2Fsalaries.txt",
        "/data/public/..%2fprivate/salaries.txt",
        "/data/public/..\\private\\salaries.txt",
        "/data/public/./../private/salaries.txt",
        "/data/private/salaries.txt",
        "/data/publicity/../private/salaries.txt",
        "/data/public",
        "data/public/report.txt",
        "/data/public//../private/salaries.txt",
    ];
    let mut script = vec![call(
        "fetch-file",
        json!({"path": "/data/public/report.txt"}),
    )];
    script.extend(
        attempts
            .iter()
            .map(|p| call("fetch-file", json!({"path": p}))),
    );
    let lines = mcp_client(&rig.url, REVISION, &json!(script), &[]);
    assert_eq!(lines[0]["op"], "connect", "{lines:#?}");
    let ok = &lines[1];
    assert_eq!(ok["ok"], true, "{ok:#?}");
    assert!(ok.to_string().contains("quarterly report"), "{ok}");
    for (line, path) in lines[2..].iter().zip(attempts) {
        assert_eq!(line["ok"], false, "{path} was allowed: {line}");
        assert_eq!(line["error"]["code"], -31090, "{path}: {line}");
        assert_eq!(
            line["error"]["data"]["rule"], "Policy#default-deny",
            "{path}: {line}"
        );
    }
    let received = upstream_calls(&rig.upstream_log);
    assert_eq!(
        received,
        vec![(
            "fetch-file".to_owned(),
            json!({"path": "/data/public/report.txt"})
        )],
        "only the allowed read reached the server"
    );
    // Every attempt is in the audit, with its arguments (redacted form) and rule.
    let ok = eventually(|| {
        jsonl(&rig.audit)
            .iter()
            .filter(|r| r["gen_ai.tool.name"] == "fetch-file" && r["decision"] == "deny")
            .count()
            == attempts.len()
    });
    assert!(ok, "denials not all audited: {:#?}", jsonl(&rig.audit));
    let allowed: Vec<Value> = jsonl(&rig.audit)
        .into_iter()
        .filter(|r| r["gen_ai.tool.name"] == "fetch-file" && r["decision"] == "allow")
        .collect();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["rule"], "Policy/docs#public-files");
    assert_eq!(allowed[0]["arguments"]["path"], "/data/public/report.txt");
}

#[test]
fn a_big_payment_needs_one_approval_that_works_once() {
    let dir = temp_dir("e2e-policy-approval");
    let (key, public) = keygen(&dir);
    let bundle = bundle_dir(&dir, &public, "", "    []");
    let rig = start(&dir, &bundle, "2");
    let small = call("pay", json!({"amount": 40, "to": "acct-9"}));
    let big_args = json!({"amount": 2500, "to": "acct-9"});
    let lines = mcp_client(
        &rig.url,
        REVISION,
        &json!([small, call("pay", big_args.clone())]),
        &[],
    );
    assert_eq!(lines[1]["ok"], true, "{:#?}", lines[1]);
    let refused = &lines[2];
    assert_eq!(refused["ok"], false, "{refused:#?}");
    assert_eq!(refused["error"]["code"], -31099, "{refused:#?}");
    let approval = &refused["error"]["data"]["approval"];
    let id = approval["id"].as_str().unwrap().to_owned();
    assert_eq!(approval["covers"]["tool"], "pay");
    assert_eq!(approval["covers"]["server"], "docs");
    assert_eq!(approval["covers"]["rule"], "Policy/docs#big-payments");
    assert!(
        approval["approveAt"]
            .as_str()
            .unwrap()
            .starts_with("https://approvals.example.com/approve?id=apr1.")
    );

    let (ok, token, err) = portcullis(&[
        "approve",
        &id,
        "--key",
        key.to_str().unwrap(),
        "--ttl",
        "10m",
    ]);
    assert!(ok, "approve: {err}");
    assert!(
        err.contains("pay") && err.contains("docs"),
        "approve says what it covers: {err}"
    );
    let token = token.trim().to_owned();
    let header = format!("x-mcp-approval={token}");

    // With the approval: the retry goes through; the same token again, or
    // for other arguments, does not.
    let lines = mcp_client(
        &rig.url,
        REVISION,
        &json!([
            call("pay", big_args.clone()),
            call("pay", big_args.clone()),
            call("pay", json!({"amount": 9999, "to": "acct-9"})),
        ]),
        &["--header", &header],
    );
    assert_eq!(lines[1]["ok"], true, "approved retry: {:#?}", lines[1]);
    assert!(lines[1].to_string().contains("paid 2500.00 to acct-9"));
    assert_eq!(
        lines[2]["error"]["data"]["approval"]["error"], "already_used",
        "{:#?}",
        lines[2]
    );
    assert_eq!(
        lines[3]["error"]["data"]["approval"]["error"], "wrong_call",
        "{:#?}",
        lines[3]
    );

    // An approval that has already expired.
    let (ok, expired, _) = portcullis(&[
        "approve",
        &id,
        "--key",
        key.to_str().unwrap(),
        "--ttl",
        "1s",
    ]);
    assert!(ok);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let header = format!("x-mcp-approval={}", expired.trim());
    let lines = mcp_client(
        &rig.url,
        REVISION,
        &json!([call("pay", big_args.clone())]),
        &["--header", &header],
    );
    assert_eq!(
        lines[1]["error"]["data"]["approval"]["error"], "expired",
        "{:#?}",
        lines[1]
    );

    // A key the bundle does not trust.
    let other = temp_dir("e2e-policy-approval-rogue");
    let (rogue, _) = keygen(&other);
    let (_, forged, _) = portcullis(&["approve", &id, "--key", rogue.to_str().unwrap()]);
    let header = format!("x-mcp-approval={}", forged.trim());
    let lines = mcp_client(
        &rig.url,
        REVISION,
        &json!([call("pay", big_args.clone())]),
        &["--header", &header],
    );
    assert_eq!(
        lines[1]["error"]["data"]["approval"]["error"],
        "bad_signature"
    );

    // The server saw the small payment and exactly one big one.
    let pays: Vec<Value> = upstream_calls(&rig.upstream_log)
        .into_iter()
        .filter(|(n, _)| n == "pay")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(pays, vec![json!({"amount": 40, "to": "acct-9"}), big_args]);
    // Both events are audited: the request for approval and the approved call.
    let ok = eventually(|| {
        let recs = jsonl(&rig.audit);
        recs.iter().any(|r| r["approval"]["status"] == "required")
            && recs
                .iter()
                .any(|r| r["approval"]["status"] == "granted" && r["outcome"] == "result")
    });
    assert!(ok, "{:#?}", jsonl(&rig.audit));
    let (ok, _, err) = portcullis(&["approve", "apr1.bogus", "--key", key.to_str().unwrap()]);
    assert!(!ok && err.contains("approval id"), "{err}");
}

#[test]
fn parallel_calls_over_several_workers_never_exceed_the_bucket() {
    const BUCKET: usize = 25;
    const CALLS: usize = 120;
    let dir = temp_dir("e2e-policy-limits");
    let (_, public) = keygen(&dir);
    let limit = format!(
        "    - id: echo-bucket\n      tools: [echo]\n      rate: {{requests: {BUCKET}, per: 1h}}\n"
    );
    let bundle = bundle_dir(
        &dir,
        &public,
        "    - id: echo\n      effect: permit\n      tools: [echo]",
        &limit,
    );
    let rig = start(&dir, &bundle, "4");
    let base = rig.url.trim_end_matches("/mcp").to_owned();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let base = base.clone();
                s.spawn(move || {
                    (0..CALLS / 8)
                        .map(|i| {
                            let body = json!({"jsonrpc": "2.0", "id": t * 1000 + i, "method": "tools/call",
                                "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": {
                                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                                    "io.modelcontextprotocol/clientCapabilities": {}}}});
                            let r = http(
                                &base,
                                "POST",
                                "/mcp",
                                &[
                                    ("content-type", "application/json"),
                                    ("accept", "application/json, text/event-stream"),
                                    ("mcp-protocol-version", "2026-07-28"),
                                    ("mcp-method", "tools/call"),
                                    ("mcp-name", "echo"),
                                ],
                                body.to_string().as_bytes(),
                            );
                            if r.status == 429 {
                                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                                assert!(retry > 0 && retry <= 3600, "{retry}");
                                assert_eq!(r.json()["error"]["code"], -31089);
                                assert_eq!(r.json()["error"]["data"]["limit"]["id"], "Policy/docs#echo-bucket");
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
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok, BUCKET, "statuses: {statuses:?}");
    assert_eq!(limited, CALLS - BUCKET, "statuses: {statuses:?}");
    let received = upstream_calls(&rig.upstream_log)
        .into_iter()
        .filter(|(n, _)| n == "echo")
        .count();
    assert_eq!(received, BUCKET, "the upstream saw exactly the bucket");
    let ok = eventually(|| {
        jsonl(&rig.audit)
            .iter()
            .filter(|r| r["limit"]["id"] == "Policy/docs#echo-bucket")
            .count()
            == CALLS - BUCKET
    });
    assert!(ok, "each refusal audited with its limit");
}

#[test]
fn simulate_reports_exactly_the_calls_whose_decision_changed() {
    let dir = temp_dir("e2e-policy-simulate");
    let (_, public) = keygen(&dir);
    let bundle = bundle_dir(&dir, &public, "", "    []");
    let rig = start(&dir, &bundle, "2");
    let lines = mcp_client(
        &rig.url,
        REVISION,
        &json!([
            call("fetch-file", json!({"path": "/data/public/report.txt"})),
            call("fetch-file", json!({"path": "/data/private/salaries.txt"})),
            call("pay", json!({"amount": 10, "to": "a"})),
            call("pay", json!({"amount": 500, "to": "a"})),
            call("echo", json!({"text": "x"})),
        ]),
        &[],
    );
    assert_eq!(lines.len(), 6);
    let calls_file = dir.join("calls.jsonl");
    assert!(eventually(|| jsonl(&rig.audit)
        .iter()
        .filter(|r| r["mcp.method.name"] == "tools/call")
        .count()
        >= 5));
    std::fs::copy(&rig.audit, &calls_file).unwrap();

    // The next bundle forbids payments to account "a", and permits echo.
    let next_dir = dir.join("next");
    std::fs::create_dir_all(&next_dir).unwrap();
    let next = bundle_dir(
        &next_dir,
        &public,
        "    - id: no-pay-a\n      effect: forbid\n      tools: [pay]\n      when: \"args.to == 'a'\"\n    - id: echo\n      effect: permit\n      tools: [echo]",
        "    []",
    );
    let (same, out, err) = portcullis(&[
        "simulate",
        "--bundle",
        bundle.to_str().unwrap(),
        "--calls",
        calls_file.to_str().unwrap(),
    ]);
    assert!(same, "{err}");
    let calls: Vec<&str> = out.lines().filter(|l| l.contains(" tools/call ")).collect();
    assert_eq!(
        calls.iter().filter(|l| l.contains(": allow (")).count(),
        2,
        "{out}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.contains(": requireApproval ("))
            .count(),
        1,
        "{out}"
    );
    assert_eq!(
        calls.iter().filter(|l| l.contains(": deny (")).count(),
        2,
        "{out}"
    );

    let (ok, out, err) = portcullis(&[
        "simulate",
        "--bundle",
        next.to_str().unwrap(),
        "--calls",
        calls_file.to_str().unwrap(),
        "--against",
        bundle.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(!ok, "a changed decision exits 1: {out} {err}");
    let changed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String, String)> = changed
        .iter()
        .map(|c| {
            (
                c["target"].as_str().unwrap().to_owned(),
                c["before"]["decision"].as_str().unwrap().to_owned(),
                c["decision"]["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("pay".into(), "allow".into(), "deny".into()),
            ("pay".into(), "requireApproval".into(), "deny".into()),
            ("echo".into(), "deny".into(), "allow".into()),
        ],
        "{out}"
    );
    assert!(err.contains("3 decision(s) changed"), "{err}");
    let (ok, _, _) = portcullis(&[
        "simulate",
        "--bundle",
        next.to_str().unwrap(),
        "--calls",
        calls_file.to_str().unwrap(),
        "--against",
        bundle.to_str().unwrap(),
        "--allow-changes",
    ]);
    assert!(ok);
}

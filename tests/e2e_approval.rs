//! Human approval end to end (issue 18): the official Python SDK client
//! (mcp 2.3.0, its code unchanged) calls a risky tool over MCP 2026-07-28
//! through `portcullis serve`; the filter registers the call with the
//! control plane's approval service (an `http_call` to a `--cluster`) and
//! answers `input_required` with a URL-mode elicitation; a person opens the
//! page in headless Chromium (signed in with a bearer token from the
//! bundle's IdentityProvider, holding the rule's approver role) and clicks
//! Approve or Deny; the SDK's own retry then runs the call once. A second
//! retry with the same `requestState` is refused, a denied and an expired
//! request are refused, and the audit store (one SQLite file both
//! processes append to) holds the request, the approval with its approver,
//! and the call. The screenshots of docs/approvals/ are this test's
//! (`PORTCULLIS_APPROVAL_SCREENSHOTS=1`).
//!
//! MCP 2026-07-28, basic/patterns/mrtr: "Servers for which a given
//! `requestState` must be consumed at most once (e.g., one-time
//! redemptions) **MUST** enforce that invariant server-side."

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const ISS: &str = "https://idp.example.com";
const SECRET: &[u8] = b"e2e-only-approver-hmac-secret-0123456789-0123456789-0123456789-abc";
const TTL: u64 = 20;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An approver's token from the bundle's IdentityProvider.
fn approver_token(sub: &str, roles: &[&str], aud: &str) -> String {
    let claims = json!({"iss": ISS, "aud": aud, "sub": sub, "roles": roles,
        "iat": now() - 5, "exp": now() + 600});
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs-1".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

fn write_bundle(dir: &Path, public_key: &str, page_url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let docs = [
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "McpServer",
            "metadata": {"name": "payments"},
            "spec": {"match": {"pathPrefix": "/mcp"},
                     "tools": [{"name": "pay"}, {"name": "echo"}]}}),
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "IdentityProvider",
            "metadata": {"name": "corp-idp"},
            "spec": {"issuer": ISS, "algorithms": ["HS256"],
                     "jwks": {"keys": [{"kty": "oct", "kid": "hs-1", "k": b64(SECRET)}]}}}),
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Policy",
            "metadata": {"name": "payments"},
            "spec": {"rules": [
                {"id": "allow", "effect": "permit", "tools": ["pay", "echo"]},
                {"id": "big-payments", "effect": "requireApproval", "tools": ["pay"],
                 "description": "payments above 100 need a person",
                 "arguments": {"type": "object", "properties": {"amount": {"type": "number", "exclusiveMinimum": 100}}, "required": ["amount"]},
                 "approvers": {"roles": ["payments-approver"]}}]}}),
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Settings",
            "metadata": {"name": "settings"},
            "spec": {"approvals": {"keys": [public_key], "maxTtl": "15m",
                "service": {"cluster": "approvals", "pageUrl": page_url}}}}),
    ];
    let mut docs = docs;
    if holds_request_headers() {
        // The held run (cargo xtask test): the control plane must serve the
        // very bundle the proxy runs, so it is written held here.
        docs[3]["spec"]["requestHeaders"] = json!("hold");
    }
    // JSON is YAML: one document per file.
    for (i, d) in docs.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.yaml")), d.to_string()).unwrap();
    }
}

fn control_plane(bundles: &Path, http_port: u16, key: &Path, db: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("control-plane")
        .arg("--bundles")
        .arg(bundles)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .arg("--approval-key")
        .arg(key)
        .args(["--approval-ttl", &TTL.to_string()])
        .arg("--audit-db")
        .arg(db)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start portcullis control-plane");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("control-plane did not start");
    Proc {
        child,
        name: "control-plane".into(),
    }
}

fn chromium() -> String {
    std::env::var("PORTCULLIS_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// One run of the SDK client; its JSON lines.
fn client(
    url: &str,
    dir: &Path,
    name: &str,
    args: Value,
    decision: &str,
    token: &str,
    extra: &[&str],
) -> Vec<Value> {
    let profile = dir.join(format!("chromium-{name}"));
    let out = Command::new(python())
        .arg(root().join("tests/e2e/approval_client.py"))
        .args(["--url", url, "--tool", "pay", "--decision", decision])
        .args(["--arguments", &args.to_string()])
        .args(["--chromium", &chromium()])
        .arg("--profile")
        .arg(&profile)
        .args(extra)
        .env("PORTCULLIS_APPROVER_TOKEN", token)
        .output()
        .expect("run approval_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "approval_client.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn op<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["op"] == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// tools/call pay requests the upstream received.
fn pay_calls(record: &Path) -> usize {
    jsonl(record)
        .iter()
        .filter(|r| r["method"] == "POST")
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap_or("")).ok())
        .filter(|b| b["method"] == "tools/call" && b["params"]["name"] == "pay")
        .count()
}

/// The filter's records of tools/call `pay`.
fn pay_records(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["mcp.method.name"] == "tools/call" && r["gen_ai.tool.name"] == "pay")
        .collect()
}

fn query(db: &Path) -> Vec<Value> {
    let (code, out, err) = portcullis(&[
        "audit",
        "query",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The control plane, the SDK server upstream and `portcullis serve`,
/// sharing one audit store.
struct Rig {
    dir: std::path::PathBuf,
    page_url: String,
    url: String,
    db: std::path::PathBuf,
    record: std::path::PathBuf,
    _procs: Vec<Proc>,
}

fn rig(name: &str) -> Rig {
    let dir = temp_dir(name);
    let key = dir.join("approval.key");
    let (code, _, err) = portcullis(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let public = std::fs::read_to_string(dir.join("approval.key.pub"))
        .unwrap()
        .trim()
        .to_owned();
    let cp_port = free_port();
    let page_url = format!("http://127.0.0.1:{cp_port}/approvals");
    let bundles = dir.join("bundles");
    let bundle = bundles.join("prod");
    write_bundle(&bundle, &public, &page_url);
    let db = dir.join("audit.db");
    let _cp = control_plane(&bundles, cp_port, &key, &db);

    let record = dir.join("upstream.jsonl");
    let (_upstream, upstream_port) = mcp_server(&["--policy-tools"], &record);
    let (_proxy, base) = portcullis_serve(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--upstream",
        &format!("http://127.0.0.1:{upstream_port}"),
        "--cluster",
        &format!("approvals=http://127.0.0.1:{cp_port}"),
        "--audit-db",
        db.to_str().unwrap(),
    ]);
    Rig {
        url: format!("{base}/mcp"),
        dir,
        page_url,
        db,
        record,
        _procs: vec![_proxy, _upstream, _cp],
    }
}

#[test]
fn a_person_approves_in_the_page_and_the_sdk_retry_runs_once() {
    let Rig {
        dir,
        page_url,
        url,
        db,
        record,
        _procs,
    } = rig("e2e-approval");
    let bob = approver_token("bob@example.com", &["payments-approver"], &page_url);
    // The screenshots in docs/approvals/ are this test's, taken with
    // PORTCULLIS_APPROVAL_SCREENSHOTS=1; other runs keep theirs in the
    // temporary directory, so a test run leaves the tree as it was.
    let shots = if std::env::var_os("PORTCULLIS_APPROVAL_SCREENSHOTS").is_some() {
        root().join("docs/approvals")
    } else {
        dir.join("screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();

    // 1. Approved: the SDK's own retry runs the call; the same state again
    //    is refused.
    let args = json!({"amount": 250, "to": "acct-7 (invoice for carol@example.com)"});
    let lines = client(
        &url,
        &dir,
        "approve",
        args.clone(),
        "approve",
        &bob,
        &["--replay", "--screenshots", shots.to_str().unwrap()],
    );
    let elicit = op(&lines, "elicitation");
    assert_eq!(elicit["mode"], "url");
    let page = elicit["url"].as_str().unwrap();
    assert!(page.starts_with(&format!("{page_url}/")), "{page}");
    let seen = op(&lines, "page");
    assert_eq!(seen["list_has_request"], true, "the list shows the request");
    assert!(
        seen["note"].as_str().unwrap().starts_with("Approved"),
        "{seen}"
    );
    let call = op(&lines, "call");
    assert_eq!(call["ok"], true, "{call}");
    assert!(
        call["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("paid 250.00 to acct-7"),
        "{call}"
    );
    let replay = op(&lines, "replay");
    assert_eq!(replay["ok"], false, "{replay}");
    assert_eq!(replay["error"]["code"], -31099);
    assert_eq!(replay["error"]["data"]["approval"]["error"], "already_used");
    assert_eq!(
        pay_calls(&record),
        1,
        "the upstream ran the call exactly once"
    );
    for shot in ["list.png", "request.png", "approved.png"] {
        let bytes = std::fs::read(shots.join(shot)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot}"
        );
    }

    // 2. Denied: refused with a clear error, never forwarded.
    let lines = client(
        &url,
        &dir,
        "deny",
        json!({"amount": 900, "to": "acct-9"}),
        "deny",
        &bob,
        &[],
    );
    assert!(
        op(&lines, "page")["note"]
            .as_str()
            .unwrap()
            .starts_with("Denied")
    );
    let call = op(&lines, "call");
    assert_eq!(call["ok"], false, "{call}");
    assert_eq!(call["error"]["code"], -31099);
    assert_eq!(call["error"]["data"]["approval"]["error"], "denied");

    // 3. Someone without the approver role cannot decide; the request
    //    expires, and the retry after that is refused.
    let mallory = approver_token("mallory@example.com", &["viewer"], &page_url);
    let lines = client(
        &url,
        &dir,
        "expire",
        json!({"amount": 500, "to": "acct-3"}),
        "approve",
        &mallory,
        &["--wait-before-retry", &(TTL + 2).to_string()],
    );
    let note = op(&lines, "page")["note"].as_str().unwrap().to_owned();
    assert!(note.contains("may not decide"), "{note}");
    let call = op(&lines, "call");
    assert_eq!(call["ok"], false, "{call}");
    assert_eq!(call["error"]["data"]["approval"]["error"], "expired");
    assert_eq!(
        pay_calls(&record),
        1,
        "nothing but the approved call reached the upstream"
    );

    // 4. The audit store: the request, the approval with its approver, the
    //    call, the refusals.
    assert!(eventually(|| {
        query(&db)
            .iter()
            .filter(|r| r["kind"] == "approval")
            .count()
            >= 5
    }));
    let records = query(&db);
    let approvals: Vec<&Value> = records.iter().filter(|r| r["kind"] == "approval").collect();
    let approve = approvals
        .iter()
        .find(|r| r["decision"] == "approve")
        .expect("an approval record");
    assert_eq!(approve["approver"]["subject"], "bob@example.com");
    assert_eq!(approve["approver"]["issuer"], ISS);
    assert_eq!(approve["gen_ai.tool.name"], "pay");
    assert_eq!(approve["rule"], "Policy/payments#big-payments");
    assert!(approvals.iter().any(|r| r["decision"] == "requested"));
    assert!(
        approvals
            .iter()
            .any(|r| r["decision"] == "deny" && r["approver"]["subject"] == "bob@example.com")
    );
    let calls = pay_records(&records);
    assert!(
        calls
            .iter()
            .any(|r| r["approval"]["status"] == "input_required"),
        "the input_required answer is recorded"
    );
    let granted = calls
        .iter()
        .find(|r| r["approval"]["status"] == "granted")
        .expect("the approved call's record");
    assert_eq!(granted["decision"], "allow");
    assert_eq!(granted["approval"]["approvers"][0], "bob@example.com");
    assert!(
        calls
            .iter()
            .any(|r| r["approval"]["error"] == "already_used")
    );
    assert!(calls.iter().any(|r| r["approval"]["error"] == "denied"));
    assert!(calls.iter().any(|r| r["approval"]["error"] == "expired"));
    // The page never saw the PII in the arguments, nor does the store.
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("carol@example.com"), "PII reached the store");
}

/// The person's part alone: the page of `page` in Chromium, signed in with
/// `token`, and `decision` clicked. What the page said.
fn decide_in_page(dir: &Path, name: &str, page: &str, decision: &str, token: &str) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/e2e/approval_client.py"))
        .args(["--open", page, "--decision", decision])
        .args(["--chromium", &chromium()])
        .arg("--profile")
        .arg(dir.join(format!("chromium-{name}")))
        .env("PORTCULLIS_APPROVER_TOKEN", token)
        .output()
        .expect("run approval_client.py --open");
    assert!(
        out.status.success(),
        "approval_client.py --open failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The TypeScript SDK client of `approval_client_2025.mjs`, its stdin kept
/// to say when the person is done.
struct TsClient {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl TsClient {
    fn start(url: &str, args: &Value, again: bool) -> TsClient {
        let mut cmd = node();
        cmd.arg(root().join("tests/e2e/approval_client_2025.mjs"))
            .args([
                "--url",
                url,
                "--tool",
                "pay",
                "--arguments",
                &args.to_string(),
            ]);
        if again {
            cmd.arg("--again");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start approval_client_2025.mjs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
            }
        });
        TsClient { child, lines }
    }

    fn next(&self, op: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {op} line from the TypeScript client"));
            if line["op"] == op {
                return line;
            }
        }
    }

    /// The person is done: the application retries.
    fn done(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"done\n").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for TsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// MCP 2025-11-25, client/elicitation, "URL Elicitation Required Error":
/// "When a request cannot be processed until an elicitation is completed,
/// the server MAY return a URLElicitationRequiredError (code -32042) to
/// indicate to the client that a URL mode elicitation is required." The
/// official TypeScript SDK (1.32.2, 2025-11-25, unchanged) declares URL
/// mode, gets the error for the risky call, a person approves in the page
/// (headless Chromium), and the application's retry runs the call once;
/// the same call again needs a new approval. A denied request is refused.
#[test]
fn a_2025_11_25_client_is_sent_to_the_page_and_its_retry_runs_once() {
    let Rig {
        dir,
        page_url,
        url,
        db,
        record,
        _procs,
    } = rig("e2e-approval-2025");
    let bob = approver_token("bob@example.com", &["payments-approver"], &page_url);

    // Approved: the retry runs once; the same call again is a new request.
    let args = json!({"amount": 300, "to": "acct-5 (for dave@example.com)"});
    let mut ts = TsClient::start(&url, &args, true);
    assert_eq!(ts.next("connect")["protocol_version"], "2025-11-25");
    let first = ts.next("elicitation");
    assert_eq!(first["mode"], "url");
    let page = first["url"].as_str().unwrap().to_owned();
    assert!(page.starts_with(&format!("{page_url}/")), "{page}");
    assert_eq!(
        first["elicitationId"].as_str().unwrap(),
        page.rsplit('/').next().unwrap()
    );
    let seen = decide_in_page(&dir, "ts-approve", &page, "approve", &bob);
    assert!(
        seen["note"].as_str().unwrap().starts_with("Approved"),
        "{seen}"
    );
    ts.done();
    let call = ts.next("call");
    assert_eq!(call["ok"], true, "{call}");
    assert!(
        call["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("paid 300.00 to acct-5"),
        "{call}"
    );
    let again = ts.next("again");
    assert_eq!(again["ok"], false, "{again}");
    assert_eq!(again["error"]["code"], -32042);
    let next = &again["error"]["data"]["elicitations"][0];
    assert_ne!(next["elicitationId"], first["elicitationId"], "{again}");
    drop(ts);
    assert_eq!(pay_calls(&record), 1, "the upstream ran the call once");

    // Denied: refused with the clear error, never forwarded.
    let mut ts = TsClient::start(&url, &json!({"amount": 700, "to": "acct-8"}), false);
    let page = ts.next("elicitation")["url"].as_str().unwrap().to_owned();
    let seen = decide_in_page(&dir, "ts-deny", &page, "deny", &bob);
    assert!(
        seen["note"].as_str().unwrap().starts_with("Denied"),
        "{seen}"
    );
    ts.done();
    let call = ts.next("call");
    assert_eq!(call["ok"], false, "{call}");
    assert_eq!(call["error"]["code"], -31099);
    assert_eq!(call["error"]["data"]["approval"]["error"], "denied");
    drop(ts);
    assert_eq!(pay_calls(&record), 1, "the denied call never ran");

    // The store: the error answers, the grant, the decisions, no PII.
    assert!(eventually(|| {
        query(&db)
            .iter()
            .any(|r| r["approval"]["error"] == "denied")
    }));
    let records = query(&db);
    let calls = pay_records(&records);
    assert!(
        calls
            .iter()
            .any(|r| r["approval"]["status"] == "url_elicitation_required"),
        "the -32042 answer is recorded"
    );
    let granted = calls
        .iter()
        .find(|r| r["approval"]["status"] == "granted")
        .expect("the approved call's record");
    assert_eq!(granted["approval"]["approvers"][0], "bob@example.com");
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "approval" && r["decision"] == "approve")
    );
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("dave@example.com"), "PII reached the store");
}

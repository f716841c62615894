//! End to end for content security (issue 4): the official Python MCP SDK
//! client through `portcullis serve` to an SDK server that misbehaves on
//! purpose (`tests/e2e/content_server.py`).
//!
//! * Rug pull: the test approves the server's tools by listing them
//!   directly and pinning each with `pins::tool_pin`; then, through the
//!   proxy, the first list shows `add`, the server swaps its description for
//!   a poisoned one, the next list no longer shows it, a call to it is
//!   refused (`-31090`, rule `McpServer/crm#pins`) and never reaches the
//!   server, and the audit record names both hashes.
//! * PII: a tool result with an email, a card and a phone number reaches
//!   the client redacted, in SSE and in JSON answers; the audit has counts,
//!   never values; the admin endpoint's counters move by the same counts. A
//!   secret in a call's arguments is refused before the upstream.
//! * Poisoning: a tool with the `<IMPORTANT>` sidenote attack never reaches
//!   the client, and calls to it are refused.
//!
//! Expected redactions, counts and screening verdicts come from the engine's
//! own `scan::default_policy()` run natively over what the upstream really
//! answered (its `--record`), as `filters/core/tests/governance.rs` does:
//! these tests check that the proxy, in wasm, on the wire, does the same.
//! Each scenario runs at 2025-11-25 and at the stateless 2026-07-28.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use portcullis_core::mcp::codes;
use portcullis_core::pins::tool_pin;
use portcullis_core::scan::{self, injection::Surface};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::*;

const HANDSHAKE: &str = "2025-11-25";
const STATELESS: &str = "2026-07-28";
const SERVER: &str = "crm";
const PINS_RULE: &str = "McpServer/crm#pins";
// Audit field names (OpenTelemetry semantic conventions).
const METHOD: &str = "mcp.method.name";
const TOOL: &str = "gen_ai.tool.name";

// The values content_server.py's lookup_customer returns (each test checks
// the upstream really sent them).
const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const PHONE: &str = "+1 415 555 0132";
/// AWS's documented example access key id.
const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

const CONTENT_POLICY: &str = "apiVersion: portcullis.dev/v1alpha1
kind: ContentPolicy
metadata:
  name: default
spec: {}
";

/// The upstream: content_server.py with its own request record.
struct Upstream {
    _proc: Proc,
    url: String,
    record: PathBuf,
}

impl Upstream {
    fn start(dir: &Path, extra: &[&str]) -> Upstream {
        let record = dir.join("upstream.jsonl");
        let mut child = Command::new(python())
            .arg(root().join("tests/e2e/content_server.py"))
            .args(["--port", "0", "--record"])
            .arg(&record)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start content_server.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().unwrap());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("content_server.py did not print READY within 60 s");
        Upstream {
            _proc: Proc {
                child,
                name: "content_server".into(),
            },
            url: format!("http://127.0.0.1:{port}/mcp"),
            record,
        }
    }

    /// The requests recorded so far, each with its JSON-RPC body parsed
    /// (`null` for GET and DELETE).
    fn requests(&self) -> Vec<(Value, Value)> {
        jsonl(&self.record)
            .into_iter()
            .map(|r| {
                let body =
                    serde_json::from_str(r["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
                (r, body)
            })
            .collect()
    }

    /// The recorded tools/call requests to `tool`.
    fn calls_to(&self, tool: &str) -> Vec<(Value, Value)> {
        self.requests()
            .into_iter()
            .filter(|(_, b)| b["method"] == "tools/call" && b["params"]["name"] == tool)
            .collect()
    }

    /// The first recorded request for which `f` holds, once there is one.
    fn wait_for(&self, what: &str, f: impl Fn(&Value) -> bool) -> (Value, Value) {
        self.wait_for_after(0, what, f)
    }

    /// As [`Upstream::wait_for`], among the requests after the first `skip`.
    fn wait_for_after(
        &self,
        skip: usize,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> (Value, Value) {
        let mut found = None;
        assert!(
            eventually(|| {
                found = self.requests().into_iter().skip(skip).find(|(_, b)| f(b));
                found.is_some()
            }),
            "the upstream never recorded {what}: {:#?}",
            jsonl(&self.record)
        );
        found.unwrap()
    }
}

/// `portcullis serve` in front of an [`Upstream`], with an audit log and an
/// admin listener.
struct Proxy {
    _proc: Proc,
    url: String,
    admin: String,
    audit: PathBuf,
}

impl Proxy {
    fn start(dir: &Path, upstream: &Upstream, docs: &[(&str, String)], workers: usize) -> Proxy {
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        for (file, text) in docs {
            std::fs::write(bundle.join(file), text).unwrap();
        }
        let audit = dir.join("audit.jsonl");
        let base = upstream.url.trim_end_matches("/mcp").to_owned();
        // serve does not print the admin address: name a free port, and try
        // another when it was taken in between.
        for _ in 0..3 {
            let admin = format!("127.0.0.1:{}", free_port());
            let Some((proc, url)) = try_portcullis_serve_at(
                "127.0.0.1:0",
                &[
                    "--bundle",
                    bundle.to_str().unwrap(),
                    "--upstream",
                    &base,
                    "--audit-log",
                    audit.to_str().unwrap(),
                    "--admin",
                    &admin,
                    "--workers",
                    &workers.to_string(),
                ],
            ) else {
                continue;
            };
            let admin = format!("http://{admin}");
            assert_eq!(http(&admin, "GET", "/ready", &[], b"").status, 200);
            return Proxy {
                _proc: proc,
                url: format!("{url}/mcp"),
                admin,
                audit,
            };
        }
        panic!("portcullis serve did not start with any of three admin ports");
    }

    /// The Prometheus counters (`name{} value` lines).
    fn counters(&self) -> HashMap<String, u64> {
        let r = http(&self.admin, "GET", "/stats/prometheus", &[], b"");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.strip_suffix("{}")?.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// The audit records from index `from` on, once `ready` holds for them;
    /// with the whole file's text.
    fn audit_after(&self, from: usize, ready: impl Fn(&[Value]) -> bool) -> (Vec<Value>, String) {
        let mut records = Vec::new();
        let ok = eventually(|| {
            records = jsonl(&self.audit).get(from..).unwrap_or_default().to_vec();
            ready(&records)
        });
        assert!(ok, "audit records never complete: {records:#?}");
        (records, std::fs::read_to_string(&self.audit).unwrap())
    }

    fn audit_len(&self) -> usize {
        jsonl(&self.audit).len()
    }

    /// A 2026-07-28 tools/call sent by hand on a fresh connection (workers
    /// take connections round robin, so two in a row reach both VMs).
    fn raw_call(&self, tool: &str, id: u32) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {"a": 1, "b": 2}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": STATELESS,
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}}});
        let base = self.url.trim_end_matches("/mcp");
        http(
            base,
            "POST",
            "/mcp",
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", STATELESS),
                ("mcp-method", "tools/call"),
                ("mcp-name", tool),
            ],
            body.to_string().as_bytes(),
        )
        .json()
    }
}

/// A metric as the admin endpoint names it: the filter's dotted name with
/// every other character turned into `_`, as Envoy's Prometheus output does.
fn prom(metric: &str) -> String {
    metric
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, metric: &str) -> u64 {
    let name = prom(metric);
    after.get(&name).copied().unwrap_or(0) - before.get(&name).copied().unwrap_or(0)
}

fn server_doc(pins: &[(String, String)], server_version: Option<&str>) -> String {
    let mut s = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n  name: {SERVER}\nspec:\n  match: {{pathPrefix: /mcp}}\n"
    );
    if pins.is_empty() {
        s.push_str("  tools:\n    - name: \"*\"\n");
        return s;
    }
    s.push_str("  pinning: lenient\n  onPinFailure: removeTool\n");
    if let Some(v) = server_version {
        s.push_str(&format!("  serverVersion: {}\n", json!(v)));
    }
    s.push_str("  tools:\n");
    for (name, pin) in pins {
        s.push_str(&format!(
            "    - name: {}\n      pin: {}\n",
            json!(name),
            json!(pin)
        ));
    }
    s
}

/// The script's steps (after the connect line, which must have succeeded).
fn steps(lines: &[Value]) -> &[Value] {
    assert_eq!(lines[0]["op"], "connect");
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    &lines[1..]
}

fn tools(step: &Value) -> Vec<Value> {
    assert_eq!(step["ok"], true, "{step}");
    step["result"]["tools"].as_array().unwrap().clone()
}

fn names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The JSON-RPC answer in an upstream's recorded response (JSON, or the
/// SSE event that carries the answer), by request id.
fn upstream_answer(record: &Value, id: &Value) -> Value {
    let body = record["response_body"].as_str().unwrap();
    let ctype = record["response_headers"]["content-type"]
        .as_str()
        .unwrap_or("");
    let messages: Vec<Value> = if ctype.starts_with("text/event-stream") {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim_start()).ok())
            .collect()
    } else {
        vec![serde_json::from_str(body).unwrap()]
    };
    messages
        .into_iter()
        .find(|m| &m["id"] == id && m.get("result").is_some())
        .unwrap_or_else(|| panic!("no answer to {id} in {body}"))
}

fn records<'a>(records: &'a [Value], method: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r[METHOD] == method).collect()
}

fn refused_by(step: &Value, rule: &str) {
    assert_eq!(step["ok"], false, "{step}");
    assert_eq!(step["error"]["code"], codes::DENIED, "{step}");
    assert_eq!(step["error"]["data"]["rule"], rule, "{step}");
}

// ---------------------------------------------------------------- rug pull

fn rug_pull(revision: &str, label: &str) {
    let dir = temp_dir(&format!("content-rug-{label}"));
    // Flips after its second tools/list answer: the approval below, then the
    // first list through the proxy.
    let upstream = Upstream::start(&dir, &["--rug-pull", "--rug-pull-after", "2"]);

    // Approval: the definitions as the server serves them, pinned here.
    let direct = mcp_client(&upstream.url, revision, &json!([{"op": "list_tools"}]), &[]);
    let approved = tools(&steps(&direct)[0]);
    let approved_names = names(&approved);
    for t in ["add", "lookup_customer", "read_file"] {
        assert!(approved_names.iter().any(|n| n == t), "{approved_names:?}");
    }
    let pins: Vec<(String, String)> = approved
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), tool_pin(t).unwrap()))
        .collect();
    let approved_add = pins.iter().find(|(n, _)| n == "add").unwrap().1.clone();
    let version = direct[0]["server_info"]["version"].as_str();
    let proxy = Proxy::start(
        &dir,
        &upstream,
        &[
            ("server.yaml", server_doc(&pins, version)),
            ("content.yaml", CONTENT_POLICY.to_owned()),
        ],
        2,
    );
    let before = proxy.counters();

    let lines = mcp_client(
        &proxy.url,
        revision,
        &json!([
            {"op": "list_tools"},
            {"op": "list_tools"},
            {"op": "call_tool", "name": "add", "arguments": {"a": 2, "b": 40}},
            {"op": "call_tool", "name": "read_file", "arguments": {"path": "notes.txt"}},
        ]),
        &[],
    );
    let s = steps(&lines);
    // As approved, every pin holds.
    assert_eq!(names(&tools(&s[0])), approved_names);
    // After the flip, add is gone and the rest is untouched.
    let expected: Vec<String> = approved_names
        .iter()
        .filter(|n| *n != "add")
        .cloned()
        .collect();
    let second = tools(&s[1]);
    assert_eq!(names(&second), expected);
    for t in &second {
        let i = approved_names.iter().position(|n| n == &t["name"]).unwrap();
        assert_eq!(t, &approved[i]);
    }
    refused_by(&s[2], PINS_RULE);
    let why = s[2]["error"]["data"]["reason"].as_str().unwrap();
    assert!(why.contains("\"add\""), "{why}");
    assert_eq!(s[3]["ok"], true, "other tools still work: {}", s[3]);

    // Every worker VM refuses it, not only the one that saw the list: two
    // calls on fresh connections land on both.
    for id in [901, 902] {
        let answer = proxy.raw_call("add", id);
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["error"]["code"], codes::DENIED, "{answer}");
        assert_eq!(answer["error"]["data"]["rule"], PINS_RULE, "{answer}");
    }

    // The server did serve the sleeper (the proxy removed it), and never
    // saw a call to it.
    upstream.wait_for("the read_file call", |b| {
        b["method"] == "tools/call" && b["params"]["name"] == "read_file"
    });
    assert!(
        upstream.calls_to("add").is_empty(),
        "a rug-pulled tool was called: {:#?}",
        upstream.calls_to("add")
    );
    let lists: Vec<(Value, Value)> = upstream
        .requests()
        .into_iter()
        .filter(|(_, b)| b["method"] == "tools/list")
        .collect();
    assert_eq!(lists.len(), 3, "one direct list, two proxied");
    let third = &lists[2];
    let served = upstream_answer(&third.0, &third.1["id"]);
    let served_add = served["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "add")
        .expect("the server stopped listing add")
        .clone();
    assert!(
        served_add["description"]
            .as_str()
            .unwrap()
            .contains("<IMPORTANT>"),
        "{served_add}"
    );
    let served_pin = tool_pin(&served_add).unwrap();
    assert_ne!(served_pin, approved_add);
    // The refusal names both hashes.
    assert!(
        why.contains(&approved_add) && why.contains(&served_pin),
        "{why}"
    );

    // The audit: the failed pin with both hashes, and the refused call.
    let (audit, text) = proxy.audit_after(0, |r| {
        records(r, "tools/list")
            .iter()
            .any(|x| x["pin_failures"].is_array())
            && records(r, "tools/call").len() >= 4
    });
    let failing: Vec<&Value> = records(&audit, "tools/list")
        .into_iter()
        .filter(|r| r["pin_failures"].is_array())
        .collect();
    assert_eq!(failing.len(), 1, "{failing:#?}");
    assert_eq!(
        failing[0]["pin_failures"],
        json!([{"tool": "add", "status": "mismatch", "expected": approved_add, "actual": served_pin}])
    );
    assert_eq!(failing[0]["outcome"], "result");
    assert_eq!(failing[0]["filtered_out"], 1);
    let refused: Vec<&Value> = records(&audit, "tools/call")
        .into_iter()
        .filter(|r| r[TOOL] == "add")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
    for r in &refused {
        assert_eq!(r["outcome"], "denied", "{r}");
        assert_eq!(r["decision"], "deny", "{r}");
        assert_eq!(r["rule"], PINS_RULE, "{r}");
        assert_eq!(r["error_code"], codes::DENIED, "{r}");
    }
    assert!(!text.contains("<IMPORTANT>"), "definitions in the audit");
    if revision == HANDSHAKE {
        // The server announced the change on the session's GET stream; the
        // proxy records the notification when that stream closes.
        proxy.audit_after(0, |r| {
            records(r, "notifications/tools/list_changed")
                .iter()
                .any(|x| x["direction"] == "server")
        });
    }
    let after = proxy.counters();
    assert_eq!(
        delta(
            &before,
            &after,
            portcullis_core::engine::metrics::PINS_FAILED
        ),
        1
    );
}

#[test]
fn rug_pull_is_removed_and_refused_2025_11_25() {
    rug_pull(HANDSHAKE, "handshake");
}

#[test]
fn rug_pull_is_removed_and_refused_2026_07_28() {
    rug_pull(STATELESS, "stateless");
}

// --------------------------------------------------------------------- PII

fn pii(json_response: bool, label: &str) {
    use portcullis_core::engine::metrics;
    let dir = temp_dir(&format!("content-pii-{label}"));
    let flags: &[&str] = if json_response {
        &["--json-response"]
    } else {
        &[]
    };
    let upstream = Upstream::start(&dir, flags);
    let proxy = Proxy::start(
        &dir,
        &upstream,
        &[
            ("server.yaml", server_doc(&[], None)),
            ("content.yaml", CONTENT_POLICY.to_owned()),
        ],
        2,
    );
    let policy = scan::default_policy().unwrap();
    for (customer, revision) in [(7, HANDSHAKE), (8, STATELESS)] {
        let from = proxy.audit_len();
        let before = proxy.counters();
        let secret_path = format!("creds/{AWS_KEY}.txt");
        let lines = mcp_client(
            &proxy.url,
            revision,
            &json!([
                {"op": "list_tools"},
                // A progress token makes the 2026-07-28 answer SSE too.
                {"op": "call_tool", "name": "lookup_customer",
                 "arguments": {"customer_id": customer}, "progress": true},
                {"op": "call_tool", "name": "read_file", "arguments": {"path": secret_path}},
            ]),
            &[],
        );
        let s = steps(&lines);
        let call = &s[1];
        assert_eq!(call["ok"], true, "{revision}: {call}");
        let ctype = call["http"][0]["content_type"].as_str().unwrap();
        let wanted = if json_response {
            "application/json"
        } else {
            "text/event-stream"
        };
        assert!(ctype.starts_with(wanted), "{revision}: {ctype}");

        // What the upstream really answered, and what the engine makes of
        // it natively.
        let (rec, body) = upstream.wait_for("the lookup_customer call", |b| {
            b["method"] == "tools/call" && b["params"]["arguments"]["customer_id"] == customer
        });
        let raw = upstream_answer(&rec, &body["id"]);
        let raw_text = raw["result"].to_string();
        for v in [EMAIL, CARD, PHONE] {
            assert!(
                raw_text.contains(v),
                "the upstream did not send {v}: {raw_text}"
            );
        }
        let mut expected = raw["result"].clone();
        let inspection = policy.inspect_result(&mut expected, Surface::ToolResult);
        assert!(inspection.modified && !inspection.blocked);

        // The client got the redacted result, never a value.
        let got = &call["result"];
        assert_eq!(got["content"], expected["content"], "{revision}");
        assert_eq!(
            got["structuredContent"], expected["structuredContent"],
            "{revision}"
        );
        let line = call.to_string();
        for v in [EMAIL, CARD, PHONE] {
            assert!(
                !line.contains(v),
                "{revision}: {v} reached the client: {line}"
            );
        }
        let counts: BTreeMap<String, u64> = inspection
            .pii
            .counts
            .iter()
            .map(|(k, n)| (k.clone(), u64::from(*n)))
            .collect();
        for entity in ["EMAIL", "CREDIT_CARD", "PHONE"] {
            let marker = format!("[REDACTED:{entity}]");
            assert_eq!(
                line.matches(&marker).count() as u64,
                counts.get(entity).copied().unwrap_or(0),
                "{revision}: {marker} in {line}"
            );
            assert!(line.contains(&marker), "{revision}: no {marker} in {line}");
        }
        if !json_response {
            // The progress event passed through the rewritten stream.
            assert_eq!(call["result"]["_progress"][0]["message"], "record found");
        }

        // The secret in the arguments never left the proxy.
        refused_by(&s[2], "ContentPolicy/default#pii");
        let mut args = json!({"path": secret_path});
        assert!(policy.inspect_arguments(&mut args).blocked);

        // The audit has the counts, not the values.
        let (audit, text) = proxy.audit_after(from, |r| records(r, "tools/call").len() >= 2);
        let calls = records(&audit, "tools/call");
        let lookup = calls.iter().find(|r| r[TOOL] == "lookup_customer").unwrap();
        assert_eq!(lookup["outcome"], "result", "{lookup}");
        assert_eq!(lookup["findings"]["pii"], json!(counts), "{lookup}");
        assert_eq!(lookup["findings"]["action"], "redacted", "{lookup}");
        let blocked = calls.iter().find(|r| r[TOOL] == "read_file").unwrap();
        assert_eq!(blocked["outcome"], "denied", "{blocked}");
        assert_eq!(blocked["rule"], "ContentPolicy/default#pii", "{blocked}");
        assert_eq!(blocked["findings"]["action"], "blocked", "{blocked}");
        assert_eq!(
            blocked["findings"]["pii"],
            json!({"AWS_ACCESS_KEY": 1}),
            "{blocked}"
        );
        for v in [EMAIL, CARD, PHONE, AWS_KEY] {
            assert!(!text.contains(v), "{revision}: {v} in the audit log");
        }
        // After the audit line is written, the upstream's record of this
        // run is complete: the secret is in none of it.
        assert!(
            upstream.calls_to("read_file").is_empty(),
            "{revision}: the call with a secret reached the upstream"
        );
        assert!(
            !std::fs::read_to_string(&upstream.record)
                .unwrap()
                .contains(AWS_KEY)
        );

        // The counters moved by what was found.
        let after = proxy.counters();
        for (entity, n) in &counts {
            let m = format!("{}.{entity}", metrics::PII_FOUND);
            assert_eq!(delta(&before, &after, &m), *n, "{revision}: {m}");
        }
        assert_eq!(
            delta(
                &before,
                &after,
                &format!("{}.AWS_ACCESS_KEY", metrics::PII_FOUND)
            ),
            1
        );
        assert_eq!(delta(&before, &after, metrics::CONTENT_REDACTED), 1);
        assert_eq!(delta(&before, &after, metrics::CONTENT_BLOCKED), 1);
    }
}

#[test]
fn pii_is_redacted_in_sse_answers() {
    pii(false, "sse");
}

#[test]
fn pii_is_redacted_in_json_answers() {
    pii(true, "json");
}

// --------------------------------------------------------------- poisoning

#[test]
fn poisoned_tools_never_reach_the_client() {
    use portcullis_core::engine::metrics;
    let dir = temp_dir("content-poisoned");
    let upstream = Upstream::start(&dir, &["--poisoned"]);
    // One worker: `tool_sha256` is what the VM that took the call saw in
    // its last tools/list, so it is only certain when there is one VM (the
    // rug-pull test checks refusals across two).
    let proxy = Proxy::start(
        &dir,
        &upstream,
        &[
            ("server.yaml", server_doc(&[], None)),
            ("content.yaml", CONTENT_POLICY.to_owned()),
        ],
        1,
    );
    let policy = scan::default_policy().unwrap();
    for revision in [HANDSHAKE, STATELESS] {
        let from = proxy.audit_len();
        let seen = upstream.requests().len();
        let before = proxy.counters();
        let lines = mcp_client(
            &proxy.url,
            revision,
            &json!([
                {"op": "list_tools"},
                {"op": "call_tool", "name": "send_note",
                 "arguments": {"to": "bob", "text": "hi", "sidenote": "{}"}},
                {"op": "call_tool", "name": "add", "arguments": {"a": 2, "b": 40}},
            ]),
            &[],
        );
        let s = steps(&lines);
        let listed = tools(&s[0]);

        // The list the upstream served, screened natively.
        let list = upstream.wait_for_after(seen, "a tools/list of this run", |b| {
            b["method"] == "tools/list"
        });
        let served = upstream_answer(&list.0, &list.1["id"]);
        let mut kept = served["result"]["tools"].as_array().unwrap().clone();
        assert!(names(&kept).iter().any(|n| n == "send_note"));
        let screens = policy.screen_tools(&mut kept);
        let dropped: Vec<String> = screens
            .iter()
            .filter(|sc| sc.dropped)
            .map(|sc| sc.name.clone())
            .collect();
        assert_eq!(dropped, vec!["send_note".to_string()]);
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        for f in screens.iter().flat_map(|sc| &sc.findings) {
            *categories
                .entry(f.category.as_str().to_owned())
                .or_insert(0) += 1;
        }

        assert_eq!(listed, kept, "{revision}");
        assert!(!names(&listed).iter().any(|n| n == "send_note"));
        refused_by(&s[1], PINS_RULE);
        assert_eq!(s[2]["ok"], true, "{revision}: {}", s[2]);
        assert_eq!(s[2]["result"]["structuredContent"]["result"], 2 + 40);
        assert!(upstream.calls_to("send_note").is_empty());

        let (audit, text) = proxy.audit_after(from, |r| {
            records(r, "tools/list")
                .iter()
                .any(|x| x["tools_dropped"].is_array())
                && records(r, "tools/call").len() >= 2
        });
        let list = records(&audit, "tools/list")
            .into_iter()
            .find(|x| x["tools_dropped"].is_array())
            .unwrap();
        assert_eq!(list["tools_dropped"], json!(dropped), "{list}");
        assert_eq!(list["filtered_out"], 1, "{list}");
        assert_eq!(list["findings"]["action"], "dropped", "{list}");
        assert_eq!(list["findings"]["injection"], json!(categories), "{list}");
        for c in ["instruction", "secretAccess", "exfiltration"] {
            assert!(categories.contains_key(c), "{categories:?}");
        }
        let refused = records(&audit, "tools/call")
            .into_iter()
            .find(|r| r[TOOL] == "send_note")
            .unwrap();
        assert_eq!(refused["outcome"], "denied", "{refused}");
        assert_eq!(refused["rule"], PINS_RULE, "{refused}");
        // A call that passes names the definition it was made against.
        let add = records(&audit, "tools/call")
            .into_iter()
            .find(|r| r[TOOL] == "add")
            .unwrap();
        let served_add = served["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "add")
            .unwrap();
        assert_eq!(add["outcome"], "result", "{add}");
        assert_eq!(add["tool_sha256"], tool_pin(served_add).unwrap(), "{add}");
        assert!(!text.contains("<IMPORTANT>"));

        let after = proxy.counters();
        assert_eq!(delta(&before, &after, metrics::POISONED_TOOLS_DROPPED), 1);
        for (c, n) in &categories {
            let m = format!("{}.{c}", metrics::INJECTION_FOUND);
            assert_eq!(delta(&before, &after, &m), *n, "{revision}: {m}");
        }
    }
}

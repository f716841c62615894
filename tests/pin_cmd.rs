//! `portcullis pin` against real MCP servers (the official Python SDK):
//! `tests/e2e/mcp_server.py` with SSE and with JSON answers, and
//! `tests/e2e/pin_server.py` for paginated lists, bearer challenges and a
//! repeated tool name.
//!
//! Every pin in the output is checked against `tool_pin` of the tool
//! definitions as fetched by another client (the SDK's own, or raw JSON-RPC
//! written here), and the `--header` value must never show in what the
//! command prints, on success or failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use portcullis_core::pins::tool_pin;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::*;

/// A fake bearer token: it must reach the server and never be printed.
const SECRET: &str = "pin-test-secret-7f3a9c0d";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_no_secret(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the header value was printed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
    }
}

fn portcullis(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn pin(args: &[&str]) -> Run {
    let mut all = vec!["pin"];
    all.extend_from_slice(args);
    portcullis(&all)
}

/// Starts `tests/e2e/pin_server.py`; returns it and its port.
fn pin_server(extra: &[&str]) -> (Proc, u16) {
    let mut child = Command::new(python())
        .arg(root().join("tests/e2e/pin_server.py"))
        .args(["--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
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
        .expect("pin_server.py did not print READY within 60 s");
    (
        Proc {
            child,
            name: "pin_server".into(),
        },
        port,
    )
}

/// The one document of the output, as JSON.
fn parse_doc(yaml: &str) -> Value {
    let docs = portcullis_core::bundle::yaml::parse_documents("pin.yaml", yaml)
        .unwrap_or_else(|e| panic!("output is not YAML ({e}):\n{yaml}"));
    assert_eq!(docs.len(), 1, "{yaml}");
    docs.into_iter().next().unwrap().value
}

/// The output's tools agree with `tools` (definitions fetched elsewhere):
/// the same names, sorted, each with the pin of its definition.
fn assert_pins(doc: &Value, tools: &[Value]) {
    let mut expected: Vec<(String, String)> = tools
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), tool_pin(t).unwrap()))
        .collect();
    expected.sort();
    let got: Vec<(String, String)> = doc["spec"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t.as_object().unwrap().len(), 2, "{t}");
            (
                t["name"].as_str().unwrap().to_owned(),
                t["pin"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

/// The tools as the SDK's own client lists them (one page: mcp_server.py
/// does not paginate).
fn sdk_tools(url: &str) -> Vec<Value> {
    let lines = mcp_client(url, "2025-11-25", &json!([{"op": "list_tools"}]), &[]);
    assert_eq!(lines[1]["op"], "list_tools");
    assert!(lines[1]["result"].get("nextCursor").is_none());
    lines[1]["result"]["tools"].as_array().unwrap().clone()
}

fn direct(extra: &[&str], label: &str) {
    let dir = temp_dir(&format!("pin-{label}"));
    let record = dir.join("upstream.jsonl");
    let (_server, port) = mcp_server(extra, &record);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let auth = format!("Authorization: Bearer {SECRET}");
    let run = pin(&["--url", &url, "--header", &auth, "--strict"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.assert_no_secret(SECRET);
    assert!(
        run.stderr.contains("filtered") && run.stderr.contains("upstream directly"),
        "{}",
        run.stderr
    );

    let first = run.stdout.lines().next().unwrap();
    let head = format!(
        "# pins of {url} (serverInfo \"portcullis-e2e-upstream\" \"1.0.0\"), protocol 2025-11-25, 7 tools, taken "
    );
    assert!(first.starts_with(&head), "{first}");
    let when = &first[head.len()..];
    assert!(
        when.len() == 24 && when.ends_with('Z') && when.starts_with("20"),
        "{when}"
    );

    let doc = parse_doc(&run.stdout);
    assert_eq!(doc["apiVersion"], "portcullis.dev/v1alpha1");
    assert_eq!(doc["kind"], "McpServer");
    assert_eq!(doc["metadata"]["name"], "portcullis-e2e-upstream");
    assert_eq!(doc["spec"]["match"], json!({"pathPrefix": "/mcp"}));
    assert_eq!(doc["spec"]["serverVersion"], "1.0.0");
    assert_eq!(doc["spec"]["pinning"], "strict");
    let tools = sdk_tools(&url);
    assert_eq!(tools.len(), 7);
    assert_pins(&doc, &tools);

    // The wire, as the server recorded it: the handshake, the credential on
    // every request, the version and session after initialize, and the
    // session ended.
    let ours = |r: &Value| {
        r["headers"]["user-agent"]
            .as_str()
            .is_some_and(|u| u.starts_with("portcullis-pin/"))
    };
    assert!(eventually(|| jsonl(&record)
        .iter()
        .any(|r| ours(r) && r["method"] == "DELETE")));
    let mut reqs: Vec<Value> = jsonl(&record).into_iter().filter(ours).collect();
    reqs.sort_by_key(|r| r["seq"].as_u64());
    let shape: Vec<(String, String)> = reqs
        .iter()
        .map(|r| {
            let method = serde_json::from_str::<Value>(r["body"].as_str().unwrap())
                .ok()
                .and_then(|b| b["method"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (r["method"].as_str().unwrap().to_owned(), method)
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        shape,
        [
            pair("POST", "initialize"),
            pair("POST", "notifications/initialized"),
            pair("POST", "tools/list"),
            pair("DELETE", ""),
        ]
    );
    let session = reqs[0]["response_headers"]["mcp-session-id"]
        .as_str()
        .unwrap();
    for (i, r) in reqs.iter().enumerate() {
        let h = &r["headers"];
        assert_eq!(h["authorization"], format!("Bearer {SECRET}"));
        assert_eq!(h["accept"], "application/json, text/event-stream");
        if i > 0 {
            assert_eq!(h["mcp-protocol-version"], "2025-11-25");
            assert_eq!(h["mcp-session-id"], session);
        } else {
            assert!(h.get("mcp-session-id").is_none());
        }
    }
    let answer = reqs[2]["response_headers"]["content-type"]
        .as_str()
        .unwrap();
    let expected = if extra.contains(&"--json-response") {
        "application/json"
    } else {
        "text/event-stream"
    };
    assert!(answer.starts_with(expected), "{answer}");
}

#[test]
fn pins_sdk_server_sse() {
    direct(&[], "sse");
}

#[test]
fn pins_sdk_server_json() {
    direct(&["--json-response"], "json");
}

/// Raw JSON-RPC over the test's own HTTP client: every page of tools/list.
fn raw_tools(base: &str, auth: &str) -> (Vec<Value>, usize) {
    let headers = |session: Option<&str>| {
        let mut h = vec![
            ("authorization", auth.to_owned()),
            ("content-type", "application/json".to_owned()),
            ("accept", "application/json, text/event-stream".to_owned()),
        ];
        if let Some(s) = session {
            h.push(("mcp-session-id", s.to_owned()));
            h.push(("mcp-protocol-version", "2025-11-25".to_owned()));
        }
        h
    };
    let post = |session: Option<&str>, body: Value| {
        let h = headers(session);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(base, "POST", "/mcp", &h, body.to_string().as_bytes())
    };
    let init = post(
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "pin-test", "version": "0"}}}),
    );
    assert_eq!(init.status, 200);
    let session = init.header("mcp-session-id").unwrap().to_owned();
    let note = post(
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(note.status, 202);
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut msg = json!({"jsonrpc": "2.0", "id": 2 + pages, "method": "tools/list"});
        if let Some(c) = &cursor {
            msg["params"] = json!({ "cursor": c });
        }
        let answer = post(Some(&session), msg).json();
        pages += 1;
        tools.extend(
            answer["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        match answer["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (tools, pages),
        }
    }
}

#[test]
fn follows_pages_and_carries_credentials() {
    let (_server, port) = pin_server(&[
        "--tools",
        "25",
        "--page-size",
        "10",
        "--json-response",
        "--bearer",
        SECRET,
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/mcp");
    let (tools, pages) = raw_tools(&base, &format!("Bearer {SECRET}"));
    assert_eq!((tools.len(), pages), (25, 3));

    let auth = format!("Authorization: Bearer {SECRET}");
    let run = pin(&["--url", &url, "--header", &auth]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.assert_no_secret(SECRET);
    assert!(run.stdout.contains(", 25 tools, taken "), "{}", run.stdout);
    let doc = parse_doc(&run.stdout);
    // "Pin Test_Server" made DNS-1123.
    assert_eq!(doc["metadata"]["name"], "pin-test-server");
    assert_eq!(doc["spec"]["serverVersion"], "2.0.0-rc.1");
    assert!(
        doc["spec"].get("pinning").is_none(),
        "lenient is the default"
    );
    assert_pins(&doc, &tools);

    // --name and -o.
    let dir = temp_dir("pin-output");
    let out = dir.join("server.yaml");
    let run = pin(&[
        "--url",
        &url,
        "--header",
        &auth,
        "--name",
        "team.pinned",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    run.assert_no_secret(SECRET);
    let doc = parse_doc(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(doc["metadata"]["name"], "team.pinned");
    assert_pins(&doc, &tools);

    // No credential: the 401, its challenge, and what to do.
    let run = pin(&["--url", &url]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    for part in [
        "401",
        r#"WWW-Authenticate: Bearer realm="pin-test", error="invalid_token", scope="tools:list""#,
        "--header",
    ] {
        assert!(run.stderr.contains(part), "{part}: {}", run.stderr);
    }

    // A wrong credential is not printed either.
    let wrong = "Bearer wrong-token-5e6f7a8b";
    let run = pin(&[
        "--url",
        &url,
        "--header",
        &format!("Authorization: {wrong}"),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    run.assert_no_secret("wrong-token-5e6f7a8b");

    // Not the MCP endpoint.
    let run = pin(&["--url", &format!("{base}/nope"), "--header", &auth]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
    run.assert_no_secret(SECRET);
}

#[test]
fn refuses_duplicate_names_and_endless_lists() {
    let (_server, port) = pin_server(&["--tools", "3", "--page-size", "2", "--duplicate"]);
    let run = pin(&["--url", &format!("http://127.0.0.1:{port}/mcp")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("\"tool-000\" twice"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    // 101 pages: one more than followed.
    let (_server, port) = pin_server(&["--tools", "1010", "--page-size", "10", "--json-response"]);
    let run = pin(&["--url", &format!("http://127.0.0.1:{port}/mcp")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("after 100 pages"), "{}", run.stderr);

    // 10,001 tools.
    let (_server, port) =
        pin_server(&["--tools", "10001", "--page-size", "6000", "--json-response"]);
    let run = pin(&["--url", &format!("http://127.0.0.1:{port}/mcp")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than 10000 tools"),
        "{}",
        run.stderr
    );
}

#[test]
fn refuses_https_and_bad_flags() {
    let auth = format!("Authorization: Bearer {SECRET}");
    let run = pin(&["--url", "https://127.0.0.1:9/mcp", "--header", &auth]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("plain-HTTP listener") && run.stderr.contains("port-forward"),
        "{}",
        run.stderr
    );
    run.assert_no_secret(SECRET);

    for (args, needle) in [
        (vec!["--header", "X: y"], "required"),
        (vec!["--url", "ftp://127.0.0.1/mcp"], "http://"),
        (vec!["--url", "http://user:pw@127.0.0.1:9/mcp"], "--header"),
        (
            vec!["--url", "http://127.0.0.1:9/mcp", "--timeout", "0"],
            "timeout",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/mcp", "--name", "Not_DNS"],
            "DNS-1123",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/mcp", "--header", "Accept: */*"],
            "itself",
        ),
    ] {
        let run = pin(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    // Malformed --header flags are refused without quoting them.
    for bad in [
        format!("Authorization Bearer {SECRET}"),
        format!("Authorization=Bearer {SECRET}"),
        format!("Authorization=Bearer {SECRET}: x"),
    ] {
        let run = pin(&["--url", "http://127.0.0.1:9/mcp", "--header", &bad]);
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--header"), "{}", run.stderr);
        run.assert_no_secret(SECRET);
    }
}

#[test]
fn dead_port_and_silent_server() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let auth = format!("Authorization: Bearer {SECRET}");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let run = pin(&["--url", &url, "--header", &auth]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot connect") && run.stderr.contains(&url),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    run.assert_no_secret(SECRET);

    // A peer that accepts and never answers: --timeout ends it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let held = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    });
    let url = format!("http://127.0.0.1:{port}/mcp");
    let start = std::time::Instant::now();
    let run = pin(&["--url", &url, "--timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no answer") && run.stderr.contains("within 1 s"),
        "{}",
        run.stderr
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    holder.join().unwrap();
}

/// (Needs the McpServer fields `pin`, `serverVersion`, `pinning`.) The
/// output, committed as is, compiles as a bundle.
#[test]
fn output_is_a_bundle() {
    let dir = temp_dir("pin-bundle");
    let (_server, port) = mcp_server(&[], &dir.join("upstream.jsonl"));
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let out = bundle.join("upstream.yaml");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let run = pin(&["--url", &url, "--strict", "-o", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    check_bundle(&bundle);
}

fn check_bundle(dir: &Path) {
    let run = portcullis(&["bundle", "check", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("ok: 1 documents"), "{}", run.stdout);
}

/// A pin approves a definition: `portcullis pin` runs the filter's poisoning
/// screen first and pins nothing while a tool is flagged, unless told to
/// with `--allow-flagged` (docs/threat-model.md, class 9).
#[test]
fn pin_refuses_a_flagged_tool_unless_told() {
    let (_server, port) = pin_server(&["--tools", "2", "--poisoned", "--json-response"]);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let run = pin(&["--url", &url]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing pinned:\n{}", run.stdout);
    assert!(
        run.stderr
            .contains("\"tool-poisoned\" flagged by the poisoning screen"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--allow-flagged"), "{}", run.stderr);

    let run = pin(&["--url", &url, "--allow-flagged"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("pinned anyway"), "{}", run.stderr);
    let doc = parse_doc(&run.stdout);
    let names: Vec<&str> = doc["spec"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"tool-poisoned"), "{names:?}");
}

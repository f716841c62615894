//! Shared test vectors (tests/vectors/*.json) run against the three builds of
//! the engine: the native core (an `Exchange` driven directly), the
//! proxy-wasm filter in host-shim, and the WebAssembly component in
//! host-shim. Each build must give what the vector's `.expected.json` says:
//! what went upstream, what the client got, and the audit records (with
//! `time` and `latency_ms` normalised). Since all three are compared with
//! one file, they agree with each other.
//!
//! The native runner does by hand what host-shim and the proxy-wasm adapter
//! do (header edits, buffering, local replies through the encode path), so
//! any difference is the adapters', not the harness's.
//!
//! `PORTCULLIS_VECTORS_REGENERATE=1 cargo test --test vectors native` writes
//! the expected files from the native core; read the diff before keeping it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use host_shim::{
    ComponentPlugin, ComponentVm, Dir, HeaderMap, Output, Plugin, PluginConfig, StreamCore, TestVm,
};
use portcullis_core::engine::{
    Env, HeaderEdits, LocalReply, RequestBodyAction, RequestHead, RequestHeadersAction,
    ResponseBodyAction,
};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FILTER: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));
const AUDIT_STATE: &str = "wasm.portcullis.audit";
const BUFFER_LIMIT: usize = 1024 * 1024;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Every vector: its name and its JSON.
fn vectors() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json")
            && !stem.ends_with(".expected")
        {
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((stem.to_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 9, "tests/vectors has {} vectors", out.len());
    out
}

fn bundle_json(vector: &Value) -> Vec<u8> {
    let dir = vectors_dir()
        .join("bundles")
        .join(vector["bundle"].as_str().unwrap());
    let bundle = portcullis_core::bundle::yaml::load_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()));
    serde_json::to_vec(&bundle).unwrap()
}

struct Request {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_owned(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn body_of(v: &Value) -> Vec<u8> {
    let mut body = match (&v["json"], &v["text"]) {
        (Value::Null, Value::String(t)) => t.clone().into_bytes(),
        (Value::Null, _) => Vec::new(),
        (j, _) => j.to_string().into_bytes(),
    };
    if let Some(n) = v["pad_to"].as_u64() {
        body.resize(n as usize, b' ');
    }
    body
}

/// The request as a client sends it: these defaults unless `headers` is
/// given, then `extra_headers`, and a `content-length`.
fn request(vector: &str, index: usize, v: &Value) -> Request {
    let body = body_of(v);
    let mut headers = match &v["headers"] {
        Value::Null => vec![
            ("content-type".into(), "application/json".into()),
            (
                "accept".into(),
                "application/json, text/event-stream".into(),
            ),
            ("mcp-protocol-version".into(), "2025-11-25".into()),
            ("x-request-id".into(), format!("{vector}-{index}")),
        ],
        h => pairs(h),
    };
    headers.extend(pairs(&v["extra_headers"]));
    if !body.is_empty() {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    Request {
        method: v["method"].as_str().unwrap_or("POST").to_owned(),
        path: v["path"].as_str().unwrap_or("/mcp").to_owned(),
        authority: v["authority"].as_str().unwrap_or("mcp.test").to_owned(),
        headers,
        body,
    }
}

/// The upstream's answer: a JSON body (with `content-length`) or chunks.
fn response(v: &Value) -> Response {
    let mut headers = pairs(&v["headers"]);
    let chunks = match &v["chunks"] {
        Value::Array(c) => c
            .iter()
            .map(|s| s.as_str().unwrap().as_bytes().to_vec())
            .collect(),
        _ => {
            let body = body_of(v);
            headers.push(("content-length".into(), body.len().to_string()));
            vec![body]
        }
    };
    Response {
        status: v["status"].as_u64().unwrap_or(200) as u16,
        headers,
        chunks,
    }
}

/// What one exchange did, in the form the expected files hold.
fn outcome(
    upstream: Option<(&HeaderMap, &[u8])>,
    client: (u16, &HeaderMap, &[u8]),
    audit: &str,
) -> Value {
    let headers = |h: &HeaderMap| -> Value {
        let mut v: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        v.sort();
        json!(v)
    };
    let body = |b: &[u8]| -> Value {
        serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let records: Vec<Value> = audit
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            if let Some(o) = r.as_object_mut() {
                if o.contains_key("time") {
                    o.insert("time".into(), json!("<time>"));
                }
                if o.contains_key("latency_ms") {
                    o.insert("latency_ms".into(), json!("<latency>"));
                }
            }
            r
        })
        .collect();
    json!({
        "upstream": upstream.map(|(h, b)| json!({"headers": headers(h), "body": body(b)})),
        "client": {"status": client.0, "headers": headers(client.1), "body": body(client.2)},
        "audit": records,
    })
}

// ------------------------------------------------------------------ native

/// The engine's host, natively: the real clock, and one shared store for
/// the vector (as host-shim's shared data is). Randomness only makes ids the
/// vectors give themselves (`x-request-id`), so a counter does.
struct NativeEnv {
    shared: HashMap<String, Vec<u8>>,
    counter: u8,
}

impl Env for NativeEnv {
    fn now_nanos(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.counter = self.counter.wrapping_add(1);
        buf.fill(self.counter);
    }
    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.get(key).cloned()
    }
    fn shared_set(&mut self, key: &str, value: &[u8]) -> bool {
        self.shared.insert(key.to_owned(), value.to_vec());
        true
    }
}

fn apply(h: &mut HeaderMap, edits: &HeaderEdits) {
    for name in &edits.remove {
        h.remove(name);
    }
    for (name, value) in &edits.set {
        h.replace(name, value.as_bytes());
    }
}

/// One exchange through the engine, with the host's part done here the way
/// host-shim and filters/proxy-wasm/src/filter.rs do it.
fn native_exchange(
    engine: &Arc<Engine>,
    env: &mut NativeEnv,
    req: &Request,
    resp: &Response,
) -> Value {
    let mut ex = Exchange::new(engine.clone());
    let mut audit = String::new();
    let mut up = HeaderMap::new();
    for (k, v) in &req.headers {
        up.add(k, v.as_bytes());
    }
    let head = RequestHead {
        method: req.method.clone(),
        path: req.path.clone(),
        authority: req.authority.clone(),
        headers: req.headers.clone(),
    };
    let mut reply: Option<LocalReply> = None;
    let mut up_body = req.body.clone();
    let read_body = match ex.on_request_headers(env, head) {
        RequestHeadersAction::Continue(e) => {
            apply(&mut up, &e);
            false
        }
        RequestHeadersAction::ReadBody(e) => {
            apply(&mut up, &e);
            true
        }
        RequestHeadersAction::Reply(r) => {
            reply = Some(r);
            false
        }
    };
    if reply.is_none() && (read_body || !req.body.is_empty()) {
        match ex.on_request_body_size(req.body.len() as u64) {
            Some(r) => reply = Some(r),
            None => match ex.on_request_body(env, &req.body, true) {
                RequestBodyAction::Forward(e) => apply(&mut up, &e),
                RequestBodyAction::Rewrite(e, b) => {
                    apply(&mut up, &e);
                    up_body = b;
                }
                RequestBodyAction::Reply(r) => reply = Some(r),
                RequestBodyAction::Wait => panic!("the engine waits for more of a whole body"),
            },
        }
    }
    let mut client = HeaderMap::new();
    let mut client_body = Vec::new();
    let (status, forwarded) = match &reply {
        Some(r) => {
            // Envoy's local reply through the encode path: its own
            // content-length and text/plain type, then the reply's headers.
            if !r.body.is_empty() {
                client.add("content-length", r.body.len().to_string().as_bytes());
                client.add("content-type", b"text/plain");
            }
            for (k, v) in &r.headers {
                client.add(k, v.as_bytes());
            }
            (r.status, false)
        }
        None => {
            for (k, v) in &resp.headers {
                client.add(k, v.as_bytes());
            }
            (resp.status, true)
        }
    };
    let plain: Vec<(String, String)> = client
        .iter()
        .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let chunks: Vec<Vec<u8>> = match &reply {
        Some(r) if r.body.is_empty() => Vec::new(),
        Some(r) => vec![r.body.clone()],
        None => resp.chunks.clone(),
    };
    let edits = ex.on_response_headers(env, status, &plain);
    apply(&mut client, &edits);
    if chunks.is_empty() {
        ex.on_stream_end(env);
    }
    let mut held: Vec<u8> = Vec::new();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        held.extend_from_slice(&chunk);
        match ex.on_response_body(env, &held, i + 1 == n) {
            ResponseBodyAction::Pass => client_body.append(&mut held),
            ResponseBodyAction::Buffer => {}
            ResponseBodyAction::Replace(b) => {
                client_body.extend_from_slice(&b);
                held.clear();
            }
        }
    }
    ex.on_stream_end(env);
    for r in ex.take_audit() {
        audit.push_str(&r.to_json_line());
        audit.push('\n');
    }
    outcome(
        forwarded.then_some((&up, up_body.as_slice())),
        (status, &client, &client_body),
        &audit,
    )
}

fn run_native(name: &str, vector: &Value) -> Value {
    let engine = Arc::new(Engine::from_config(&bundle_json(vector)).unwrap());
    let mut env = NativeEnv {
        shared: HashMap::new(),
        counter: 0,
    };
    let exchanges = vector["exchanges"].as_array().unwrap();
    json!(
        exchanges
            .iter()
            .enumerate()
            .map(|(i, x)| native_exchange(
                &engine,
                &mut env,
                &request(name, i, &x["request"]),
                &response(&x["response"])
            ))
            .collect::<Vec<_>>()
    )
}

// --------------------------------------------------------------- host-shim

fn collect(
    s: &mut StreamCore,
    up: &mut Option<HeaderMap>,
    up_body: &mut Vec<u8>,
    client: &mut Option<HeaderMap>,
    client_body: &mut Vec<u8>,
) {
    for o in s.take_outputs() {
        match o {
            Output::Headers(Dir::Request, h, _) => *up = Some(h),
            Output::Data(Dir::Request, b, _) => up_body.extend(b),
            Output::Headers(Dir::Response, h, _) => *client = Some(h),
            Output::Data(Dir::Response, b, _) => client_body.extend(b),
            _ => {}
        }
    }
}

/// One exchange through a host-shim stream, as the proxy drives it.
fn shim_exchange(mut s: StreamCore, req: &Request, resp: &Response) -> Value {
    let mut h = HeaderMap::new();
    h.add(":method", req.method.as_bytes());
    h.add(":path", req.path.as_bytes());
    h.add(":authority", req.authority.as_bytes());
    h.add(":scheme", b"http");
    for (k, v) in &req.headers {
        h.add(k, v.as_bytes());
    }
    let (mut up, mut up_body, mut client, mut client_body) = (None, Vec::new(), None, Vec::new());
    s.decode_headers(h, req.body.is_empty());
    if !req.body.is_empty() {
        s.decode_data(req.body.clone(), true);
    }
    collect(&mut s, &mut up, &mut up_body, &mut client, &mut client_body);
    let forwarded = up.is_some() && client.is_none();
    if forwarded {
        let mut rh = HeaderMap::new();
        rh.add(":status", resp.status.to_string().as_bytes());
        for (k, v) in &resp.headers {
            rh.add(k, v.as_bytes());
        }
        s.encode_headers(rh, resp.chunks.is_empty());
        let n = resp.chunks.len();
        for (i, c) in resp.chunks.iter().enumerate() {
            s.encode_data(c.clone(), i + 1 == n);
        }
        collect(&mut s, &mut up, &mut up_body, &mut client, &mut client_body);
    }
    s.finish();
    let audit = s
        .data()
        .borrow()
        .info
        .filter_state
        .get(AUDIT_STATE)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let client = client.expect("the client got no response");
    let status = client
        .get_str(":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    outcome(
        if forwarded {
            up.as_ref().map(|h| (h, up_body.as_slice()))
        } else {
            None
        },
        (status, &client, &client_body),
        &audit,
    )
}

fn plugin_config(vm_id: String, vector: &Value) -> PluginConfig {
    PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id,
        configuration: bundle_json(vector),
        allow_on_headers_stop_iteration: true,
        ..PluginConfig::default()
    }
}

fn run_filter(name: &str, vector: &Value) -> Value {
    // One VM per vector, and its own shared data (vm_id), as a fresh proxy.
    let plugin = Plugin::load(
        FILTER,
        plugin_config(format!("vectors-filter-{name}"), vector),
    )
    .unwrap_or_else(|e| panic!("{name}: the filter refused the bundle: {e}"));
    let vm = TestVm::new(&plugin).unwrap();
    let exchanges = vector["exchanges"].as_array().unwrap();
    json!(
        exchanges
            .iter()
            .enumerate()
            .map(|(i, x)| shim_exchange(
                vm.stream(),
                &request(name, i, &x["request"]),
                &response(&x["response"])
            ))
            .collect::<Vec<_>>()
    )
}

fn component_wasm() -> Vec<u8> {
    let path = env!("PORTCULLIS_COMPONENT_WASM");
    assert!(
        !path.is_empty(),
        "the component was not built (PORTCULLIS_SKIP_COMPONENT was set for this build); unset it and rebuild"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run_component(name: &str, vector: &Value) -> Value {
    let plugin = ComponentPlugin::load(
        &component_wasm(),
        plugin_config(format!("vectors-component-{name}"), vector),
    )
    .unwrap_or_else(|e| panic!("{name}: the component refused the bundle: {e}"));
    let vm = ComponentVm::new(plugin).unwrap();
    let exchanges = vector["exchanges"].as_array().unwrap();
    json!(
        exchanges
            .iter()
            .enumerate()
            .map(|(i, x)| shim_exchange(
                vm.stream(BUFFER_LIMIT),
                &request(name, i, &x["request"]),
                &response(&x["response"])
            ))
            .collect::<Vec<_>>()
    )
}

// ------------------------------------------------------------------- tests

fn expected_path(name: &str) -> PathBuf {
    vectors_dir().join(format!("{name}.expected.json"))
}

fn expected(name: &str) -> Value {
    let path = expected_path(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with PORTCULLIS_VECTORS_REGENERATE=1 cargo test --test vectors native",
            path.display()
        )
    });
    serde_json::from_slice(&bytes).unwrap()
}

/// Runs every vector through one build and compares with the expected
/// files, reporting every mismatch, not only the first.
fn check(build: &str, run: impl Fn(&str, &Value) -> Value) {
    let mut failures = Vec::new();
    for (name, vector) in vectors() {
        let got = run(&name, &vector);
        let want = expected(&name);
        if got != want {
            failures.push(format!(
                "{name} ({build}):\n--- expected\n{}\n--- got\n{}",
                serde_json::to_string_pretty(&want).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn native_core_matches_the_vectors() {
    if std::env::var_os("PORTCULLIS_VECTORS_REGENERATE").is_some() {
        for (name, vector) in vectors() {
            let got = run_native(&name, &vector);
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(expected_path(&name), text).unwrap();
        }
    }
    check("native core", run_native);
}

#[test]
fn proxy_wasm_filter_matches_the_vectors() {
    check("proxy-wasm filter in host-shim", run_filter);
}

#[test]
fn component_matches_the_vectors() {
    check("component in host-shim", run_component);
}

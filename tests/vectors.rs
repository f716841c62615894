//! Shared test vectors (tests/vectors/*.json) run against the three builds of
//! the engine: the native core (an `Exchange` driven directly), the
//! proxy-wasm filter in host-shim, and the WebAssembly component in
//! host-shim. Each build must give what the vector's `.expected.json` says:
//! what went upstream, what the client got, and the audit records (with
//! `time` and `latency_ms` normalised). Since all three are compared with
//! one file, they agree with each other.
//!
//! All three run through host-shim's model of Envoy's filter manager
//! (`StreamCore`); the native build is the core's own stream driver behind a
//! small `HttpFilter` here, so any difference between builds is the
//! adapters', not the harness's. Request ids are the filter's own (random);
//! each exchange's id is replaced by `<request-id>` wherever it appears.
//!
//! Every vector runs in both of the filter's request-header modes
//! (`Settings.spec.requestHeaders`): `forward`, the default, against
//! `NAME.expected.json`, with the proxy-wasm filter under Envoy's default
//! (`allow_on_headers_stop_iteration: false`) and with the flag set; and
//! `hold` against `NAME.hold.expected.json`, with the flag set (which that
//! mode needs).
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
use host_shim::{
    FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, HttpFilter, SharedStream,
    StreamAction, StreamData,
};
use portcullis_core::Engine;
use portcullis_core::bundle::{BundleJson, assemble};
use portcullis_core::driver::{Output as Out, Step, StreamDriver};
use portcullis_core::engine::{HeaderEdits, RequestHead};
use portcullis_core::test_util::{MemoryEnv, SharedData, doc, yaml_dir_bundle_json};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
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

/// `Settings.spec.requestHeaders`, which the vectors run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Hold,
}

fn bundle_json(vector: &Value, mode: Mode) -> Vec<u8> {
    let bytes = yaml_dir_bundle_json(
        &vectors_dir()
            .join("bundles")
            .join(vector["bundle"].as_str().unwrap()),
    );
    if mode == Mode::Forward {
        return bytes;
    }
    let bundle: BundleJson = serde_json::from_slice(&bytes).unwrap();
    let mut documents = bundle.documents;
    match documents.iter_mut().find(|d| d.kind == "Settings") {
        Some(d) => {
            d.spec["requestHeaders"] = json!("hold");
        }
        None => documents.push(doc("Settings", "hold", json!({"requestHeaders": "hold"}))),
    }
    serde_json::to_vec(&assemble(documents)).unwrap()
}

struct Request {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    /// The body as the client sends it, chunk by chunk.
    chunks: Vec<Vec<u8>>,
    trailers: Vec<(String, String)>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    trailers: Vec<(String, String)>,
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
    let chunks: Vec<Vec<u8>> = match &v["chunks"] {
        Value::Array(c) => c
            .iter()
            .map(|s| s.as_str().unwrap().as_bytes().to_vec())
            .collect(),
        _ => vec![body_of(v)],
    };
    let chunks: Vec<Vec<u8>> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    let body: Vec<u8> = chunks.concat();
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
    let trailers = pairs(&v["trailers"]);
    // Trailers need chunked framing: no content-length then.
    if !body.is_empty() && trailers.is_empty() && v["no_content_length"] != json!(true) {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    Request {
        method: v["method"].as_str().unwrap_or("POST").to_owned(),
        path: v["path"].as_str().unwrap_or("/mcp").to_owned(),
        authority: v["authority"].as_str().unwrap_or("mcp.test").to_owned(),
        headers,
        chunks,
        trailers,
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
        trailers: pairs(&v["trailers"]),
    }
}

/// What one exchange did, in the form the expected files hold.
fn outcome(
    upstream: Option<(&HeaderMap, &[u8])>,
    client: (u16, &HeaderMap, &[u8]),
    audit: &str,
    trailers: (&Option<HeaderMap>, &Option<HeaderMap>),
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
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    let mut out = json!({
        "upstream": upstream.map(|(h, b)| json!({"headers": headers(h), "body": body(b)})),
        "client": {"status": client.0, "headers": headers(client.1), "body": body(client.2)},
        "audit": records,
    });
    // Trailers, when the exchange had any (what each side received).
    if let (Some(t), Some(up)) = (trailers.0, out["upstream"].as_object_mut()) {
        up.insert("trailers".into(), headers(t));
    }
    if let (Some(t), Some(c)) = (trailers.1, out["client"].as_object_mut()) {
        c.insert("trailers".into(), headers(t));
    }
    // The filter's request id is random: wherever it appears (records,
    // `x-mcp-request-id`, error data), it reads `<request-id>`.
    let mut text = out.to_string();
    for id in ids {
        text = text.replace(&id, "<request-id>");
    }
    serde_json::from_str(&text).unwrap()
}

// ------------------------------------------------------------------ native

fn apply(h: &mut HeaderMap, edits: &HeaderEdits) {
    for name in &edits.remove {
        h.remove(name);
    }
    for (name, value) in &edits.set {
        h.replace(name, value.as_bytes());
    }
}

/// The core's stream driver as a host-shim filter: the native build. What it
/// does with each output is what the proxy-wasm hostcalls do.
struct NativeFilter {
    driver: StreamDriver,
    stream: SharedStream,
    env: MemoryEnv,
    audit: String,
}

impl NativeFilter {
    fn record(&mut self) {
        for r in self.driver.take_audit() {
            self.audit.push_str(&r.to_json_line());
            self.audit.push('\n');
        }
        self.stream
            .borrow_mut()
            .info
            .filter_state
            .insert(AUDIT_STATE.to_owned(), self.audit.as_bytes().to_vec());
    }

    /// Applies an output's edits and body; `true` to go on, `false` for a
    /// pause; a reply is queued as the filter's local reply.
    fn apply(&mut self, dir: Dir, out: Out) -> Option<bool> {
        self.record();
        let mut d = self.stream.borrow_mut();
        let side = d.side_mut(dir);
        if side.headers_active {
            apply(&mut side.headers, &out.headers);
        }
        if let Some(t) = side.trailers.as_mut().filter(|_| side.trailers_active) {
            apply(t, &out.trailers);
        }
        if let Some(b) = out.body {
            side.body = Some(b);
        }
        match out.step {
            Step::Continue => Some(true),
            Step::Pause => Some(false),
            Step::Call(_) => panic!("no vector configures an outcall"),
            Step::Reply(r) => {
                d.push_action(StreamAction::LocalReply(host_shim::LocalReply {
                    status: r.status,
                    body: r.body,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    details: r.details,
                    grpc_status: None,
                }));
                None
            }
        }
    }

    fn held(&self, dir: Dir) -> Vec<u8> {
        self.stream
            .borrow()
            .side(dir)
            .visible_body()
            .cloned()
            .unwrap_or_default()
    }

    fn trailer_names(&self, dir: Dir) -> Vec<String> {
        self.stream
            .borrow()
            .side(dir)
            .trailers
            .as_ref()
            .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
            .unwrap_or_default()
    }
}

fn headers_status(go: Option<bool>) -> FilterHeadersStatus {
    match go {
        Some(true) => FilterHeadersStatus::Continue,
        Some(false) => FilterHeadersStatus::StopIteration,
        None => FilterHeadersStatus::StopAllIterationAndWatermark,
    }
}

fn data_status(go: Option<bool>) -> FilterDataStatus {
    match go {
        Some(true) => FilterDataStatus::Continue,
        Some(false) => FilterDataStatus::StopIterationAndBuffer,
        None => FilterDataStatus::StopIterationNoBuffer,
    }
}

fn trailers_status(go: Option<bool>) -> FilterTrailersStatus {
    match go {
        Some(true) => FilterTrailersStatus::Continue,
        _ => FilterTrailersStatus::StopIteration,
    }
}

impl HttpFilter for NativeFilter {
    fn on_request_headers(&mut self, end_stream: bool) -> FilterHeadersStatus {
        let head = {
            let d = self.stream.borrow();
            let mut head = RequestHead::default();
            for (k, v) in d.request.headers.iter() {
                let v = String::from_utf8_lossy(v).into_owned();
                match k {
                    ":method" => head.method = v,
                    ":path" => head.path = v,
                    ":authority" => head.authority = v,
                    _ if k.starts_with(':') => {}
                    _ => head.headers.push((k.to_owned(), v)),
                }
            }
            head
        };
        let out = self.driver.request_headers(&mut self.env, head, end_stream);
        headers_status(self.apply(Dir::Request, out))
    }
    fn on_request_body(&mut self, _len: usize, end_stream: bool) -> FilterDataStatus {
        let body = self.held(Dir::Request);
        let out = self
            .driver
            .request_body(&mut self.env, &mut body.as_slice(), end_stream);
        data_status(self.apply(Dir::Request, out))
    }
    fn on_request_trailers(&mut self) -> FilterTrailersStatus {
        let (body, names) = (self.held(Dir::Request), self.trailer_names(Dir::Request));
        let out = self
            .driver
            .request_trailers(&mut self.env, &mut body.as_slice(), &names);
        trailers_status(self.apply(Dir::Request, out))
    }
    fn on_response_headers(&mut self, end_stream: bool) -> FilterHeadersStatus {
        let (status, headers) = {
            let d = self.stream.borrow();
            let status = d
                .response
                .headers
                .get_str(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let headers: Vec<(String, String)> = d
                .response
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            (status, headers)
        };
        let out = self
            .driver
            .response_headers(&mut self.env, status, &headers, end_stream);
        headers_status(self.apply(Dir::Response, out))
    }
    fn on_response_body(&mut self, _len: usize, end_stream: bool) -> FilterDataStatus {
        let body = self.held(Dir::Response);
        let out = self
            .driver
            .response_body(&mut self.env, &mut body.as_slice(), end_stream);
        data_status(self.apply(Dir::Response, out))
    }
    fn on_response_trailers(&mut self) -> FilterTrailersStatus {
        let (body, names) = (self.held(Dir::Response), self.trailer_names(Dir::Response));
        let out = self
            .driver
            .response_trailers(&mut self.env, &mut body.as_slice(), &names);
        trailers_status(self.apply(Dir::Response, out))
    }
    fn on_log(&mut self) {
        self.driver.end(&mut self.env);
        self.record();
    }
    fn on_destroy(&mut self) {}
}

/// Now, Unix nanoseconds.
fn wall_clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn run_native(name: &str, vector: &Value, mode: Mode) -> Value {
    let engine = Arc::new(Engine::from_config(&bundle_json(vector, mode)).unwrap());
    // One shared store for the vector, as host-shim's shared data is.
    let shared = SharedData::new();
    let exchanges = vector["exchanges"].as_array().unwrap();
    json!(
        exchanges
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let data = Rc::new(RefCell::new(StreamData::default()));
                let filter = NativeFilter {
                    driver: StreamDriver::new(engine.clone()),
                    stream: data.clone(),
                    // The engine's host, natively: the wall clock when the
                    // exchange starts, random bytes seeded per exchange
                    // (request ids are normalised), the vector's shared data.
                    env: MemoryEnv::at_nanos(wall_clock_nanos())
                        .seeded(i as u64)
                        .with_shared_data(shared.clone()),
                    audit: String::new(),
                };
                shim_exchange(
                    StreamCore::new(Box::new(filter), data, BUFFER_LIMIT),
                    &request(name, i, &x["request"]),
                    &response(&x["response"]),
                )
            })
            .collect::<Vec<_>>()
    )
}

// --------------------------------------------------------------- host-shim

/// What a side received: headers, body, trailers.
#[derive(Default)]
struct Received {
    headers: Option<HeaderMap>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

fn collect(s: &mut StreamCore, up: &mut Received, client: &mut Received) {
    for o in s.take_outputs() {
        let (side, o) = match &o {
            Output::Headers(Dir::Request, ..)
            | Output::Data(Dir::Request, ..)
            | Output::Trailers(Dir::Request, ..) => (&mut *up, o),
            Output::Headers(Dir::Response, ..)
            | Output::Data(Dir::Response, ..)
            | Output::Trailers(Dir::Response, ..) => (&mut *client, o),
            _ => continue,
        };
        match o {
            Output::Headers(_, h, _) => side.headers = Some(h),
            Output::Data(_, b, _) => side.body.extend(b),
            Output::Trailers(_, t) => side.trailers = Some(t),
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
    let (mut up, mut client) = (Received::default(), Received::default());
    let has_trailers = !req.trailers.is_empty();
    s.decode_headers(h, req.chunks.is_empty() && !has_trailers);
    let n = req.chunks.len();
    for (i, c) in req.chunks.iter().enumerate() {
        s.decode_data(c.clone(), i + 1 == n && !has_trailers);
    }
    if has_trailers {
        let mut t = HeaderMap::new();
        for (k, v) in &req.trailers {
            t.add(k, v.as_bytes());
        }
        s.decode_trailers(t);
    }
    collect(&mut s, &mut up, &mut client);
    let forwarded = up.headers.is_some() && client.headers.is_none();
    // Under `requestHeaders: forward` a refused request's headers went
    // upstream; not one byte of its body may follow them.
    assert!(
        forwarded || up.body.is_empty(),
        "a refused request's body reached the upstream: {:?}",
        String::from_utf8_lossy(&up.body)
    );
    if forwarded {
        let mut rh = HeaderMap::new();
        rh.add(":status", resp.status.to_string().as_bytes());
        for (k, v) in &resp.headers {
            rh.add(k, v.as_bytes());
        }
        let has_trailers = !resp.trailers.is_empty();
        s.encode_headers(rh, resp.chunks.is_empty() && !has_trailers);
        let n = resp.chunks.len();
        for (i, c) in resp.chunks.iter().enumerate() {
            s.encode_data(c.clone(), i + 1 == n && !has_trailers);
        }
        if has_trailers {
            let mut t = HeaderMap::new();
            for (k, v) in &resp.trailers {
                t.add(k, v.as_bytes());
            }
            s.encode_trailers(t);
        }
        collect(&mut s, &mut up, &mut client);
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
    let client_headers = client.headers.expect("the client got no response");
    let status = client_headers
        .get_str(":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    outcome(
        if forwarded {
            up.headers.as_ref().map(|h| (h, up.body.as_slice()))
        } else {
            None
        },
        (status, &client_headers, &client.body),
        &audit,
        (
            if forwarded { &up.trailers } else { &None },
            &client.trailers,
        ),
    )
}

fn plugin_config(vm_id: String, vector: &Value, mode: Mode, allow: bool) -> PluginConfig {
    PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id,
        configuration: bundle_json(vector, mode),
        allow_on_headers_stop_iteration: allow,
        ..PluginConfig::default()
    }
}

fn run_filter(name: &str, vector: &Value, mode: Mode, allow: bool) -> Value {
    // One VM per vector, and its own shared data (vm_id), as a fresh proxy.
    let plugin = Plugin::load(
        FILTER,
        plugin_config(
            format!("vectors-filter-{name}-{mode:?}-{allow}"),
            vector,
            mode,
            allow,
        ),
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

fn run_component(name: &str, vector: &Value, mode: Mode) -> Value {
    let plugin = ComponentPlugin::load(
        &component_wasm(),
        plugin_config(
            format!("vectors-component-{name}-{mode:?}"),
            vector,
            mode,
            mode == Mode::Hold,
        ),
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

fn expected_path(name: &str, mode: Mode) -> PathBuf {
    match mode {
        Mode::Forward => vectors_dir().join(format!("{name}.expected.json")),
        Mode::Hold => vectors_dir().join(format!("{name}.hold.expected.json")),
    }
}

fn expected(name: &str, mode: Mode) -> Value {
    let path = expected_path(name, mode);
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
fn check(build: &str, mode: Mode, run: impl Fn(&str, &Value) -> Value) {
    let mut failures = Vec::new();
    for (name, vector) in vectors() {
        let got = run(&name, &vector);
        let want = expected(&name, mode);
        if got != want {
            failures.push(format!(
                "{name} ({build}, requestHeaders: {mode:?}):\n--- expected\n{}\n--- got\n{}",
                serde_json::to_string_pretty(&want).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn native_core_matches_the_vectors() {
    for mode in [Mode::Forward, Mode::Hold] {
        if std::env::var_os("PORTCULLIS_VECTORS_REGENERATE").is_some() {
            for (name, vector) in vectors() {
                let got = run_native(&name, &vector, mode);
                let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
                std::fs::write(expected_path(&name, mode), text).unwrap();
            }
        }
        check("native core", mode, |n, v| run_native(n, v, mode));
    }
}

/// The filter under Envoy's and Istio's default
/// (`allow_on_headers_stop_iteration: false`, Envoy
/// `convertVmCallResultToFilterHeadersStatus`): the default mode needs
/// nothing more.
#[test]
fn proxy_wasm_filter_matches_the_vectors_under_envoys_default() {
    check("proxy-wasm filter in host-shim", Mode::Forward, |n, v| {
        run_filter(n, v, Mode::Forward, false)
    });
}

/// With `allow_on_headers_stop_iteration: true` (Envoy 1.35+): both modes.
#[test]
fn proxy_wasm_filter_matches_the_vectors_with_stop_iteration_allowed() {
    for mode in [Mode::Forward, Mode::Hold] {
        check("proxy-wasm filter in host-shim", mode, |n, v| {
            run_filter(n, v, mode, true)
        });
    }
}

#[test]
fn component_matches_the_vectors() {
    for mode in [Mode::Forward, Mode::Hold] {
        check("component in host-shim", mode, |n, v| {
            run_component(n, v, mode)
        });
    }
}

/// `requestHeaders: hold` under Envoy's default is the stall docs/filter.md
/// warns of: Envoy turns the filter's `StopIteration` into
/// `StopAllIterationAndWatermark` and gives it no body, so nothing reaches
/// the upstream and nothing answers (until a timeout). Shown so the docs'
/// pairing of mode and flag stays true.
#[test]
fn hold_mode_without_the_flag_stalls_as_envoy_would() {
    let (name, vector) = vectors()
        .into_iter()
        .find(|(n, _)| n == "allowed-call")
        .unwrap();
    let plugin = Plugin::load(
        FILTER,
        plugin_config(format!("vectors-stall-{name}"), &vector, Mode::Hold, false),
    )
    .unwrap();
    let vm = TestVm::new(&plugin).unwrap();
    let mut s = vm.stream();
    let req = request(&name, 0, &vector["exchanges"][0]["request"]);
    let mut h = HeaderMap::new();
    h.add(":method", req.method.as_bytes());
    h.add(":path", req.path.as_bytes());
    h.add(":authority", req.authority.as_bytes());
    for (k, v) in &req.headers {
        h.add(k, v.as_bytes());
    }
    s.decode_headers(h, false);
    for c in &req.chunks {
        s.decode_data(c.clone(), true);
    }
    assert!(
        s.take_outputs().is_empty(),
        "stop-all: no headers, body or reply went anywhere"
    );
}

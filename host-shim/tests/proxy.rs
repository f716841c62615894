//! The HTTP proxy end to end: real hyper upstream and client on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Wat, config, load};
use host_shim::{
    AccessLogEntry, AccessLogSink, FailurePolicy, FilterHandle, LogLevel, LogSink, ProxyConfig,
    serve,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Default, Clone)]
struct Seen {
    reqs: Arc<Mutex<Vec<(http::request::Parts, Bytes)>>>,
}

type Gate = Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>;

/// An upstream that records requests; `/sse` streams two events, the second
/// only after `gate` fires.
async fn upstream(seen: Seen, gate: Gate) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let seen = seen.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let seen = seen.clone();
                    let gate = gate.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let b = body.collect().await.unwrap().to_bytes();
                        let path = parts.uri.path().to_string();
                        seen.reqs.lock().unwrap().push((parts, b.clone()));
                        let (mut tx, rx) =
                            http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
                        if path == "/sse" {
                            tokio::spawn(async move {
                                tx.send_data(Bytes::from_static(b"data: 1\n\n"))
                                    .await
                                    .unwrap();
                                let g = gate.lock().await.take();
                                if let Some(g) = g {
                                    let _ = g.await;
                                }
                                tx.send_data(Bytes::from_static(b"data: 2\n\n"))
                                    .await
                                    .unwrap();
                            });
                            let mut r = http::Response::new(rx);
                            r.headers_mut()
                                .insert("content-type", "text/event-stream".parse().unwrap());
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        let echo = format!("echo:{}", String::from_utf8_lossy(&b));
                        let len = echo.len();
                        tokio::spawn(async move {
                            let _ = tx.send_data(Bytes::from(echo)).await;
                        });
                        let mut r = http::Response::new(rx);
                        r.headers_mut().insert("x-upstream", "1".parse().unwrap());
                        // `/fixed`: a length-delimited answer (else chunked).
                        if path == "/fixed" {
                            r.headers_mut().insert("content-length", len.into());
                        }
                        Ok(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    c: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    method: &str,
    url: String,
    body: &'static [u8],
) -> (http::response::Parts, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let r = c.request(req).await.unwrap();
    let (p, b) = r.into_parts();
    (p, b.collect().await.unwrap().to_bytes())
}

fn proxy_config(up: std::net::SocketAddr) -> ProxyConfig {
    let mut c = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        format!("http://{up}").parse().unwrap(),
    );
    c.workers = 1;
    c
}

#[derive(Default)]
struct Logs(Mutex<Vec<AccessLogEntry>>);

impl AccessLogSink for Logs {
    fn log(&self, e: &AccessLogEntry) {
        self.0.lock().unwrap().push(e.clone());
    }
}

/// Adds headers both ways, records an audit property, denies `/deny`.
fn filter_module(w: &Wat, version: &str) -> String {
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_add_header_map_value (i32.const 0) {xf} {ver}))
    (drop (call $proxy_remove_header_map_value (i32.const 0) {cl}))
    (drop (call $proxy_set_property {audit} {rec}))
    (drop (call $proxy_get_header_map_value (i32.const 0) {path} (i32.const 200) (i32.const 204)))
    (if (i32.eq (i32.load8_u (i32.add (i32.load (i32.const 200)) (i32.const 1))) (i32.const 100))
      (then (drop (call $proxy_send_local_response (i32.const 403) {det} {nope} {hdrs} (i32.const -1)))))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (if (i32.eqz (local.get $e)) (then (return (i32.const 1))))
    (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) {pre}))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_add_header_map_value (i32.const 2) {xr} {ver}))
    (if (i32.eqz (call $proxy_get_property {up_addr} (i32.const 200) (i32.const 204)))
      (then (call $out {k_up})))
    (if (i32.eqz (call $proxy_get_property {details} (i32.const 200) (i32.const 204)))
      (then (call $out {k_details})))
    (i32.const 0))
"#,
        xf = w.s("x-filter"),
        ver = w.s(version),
        cl = w.s("content-length"),
        audit = w.s("portcullis.audit"),
        rec = w.s("audited"),
        path = w.s(":path"),
        det = w.s("denied"),
        nope = w.s("nope"),
        hdrs = w.pairs(&[("x-reason", "policy")]),
        pre = w.s("pre:"),
        xr = w.s("x-resp"),
        up_addr = w.s("upstream\0address"),
        k_up = w.s("upstream_address"),
        details = w.s("response\0code_details"),
        k_details = w.s("code_details"),
    );
    w.module(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_modifies_denies_and_logs() {
    let seen = Seen::default();
    let up = upstream(seen.clone(), Gate::default()).await;
    let w = Wat::new();
    let (p, _) = load(&filter_module(&w, "v1"), config("proxy-main"));
    let logs = Arc::new(Logs::default());
    let mut cfg = proxy_config(up);
    cfg.access_log = Some(logs.clone());
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    let handle = FilterHandle::new(p);
    let server = serve(cfg, handle.clone()).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = client();

    let (parts, body) = send(&c, "POST", format!("{base}/mcp"), b"{\"a\":1}").await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["x-resp"], "v1");
    assert_eq!(parts.headers["x-upstream"], "1");
    assert_eq!(body, "echo:pre:{\"a\":1}");
    {
        let reqs = seen.reqs.lock().unwrap();
        let (rp, rb) = reqs.last().unwrap();
        assert_eq!(rp.headers["x-filter"], "v1");
        assert!(
            rp.headers.contains_key("x-request-id"),
            "generated like Envoy"
        );
        assert_eq!(rp.headers["host"], server.local_addr().to_string());
        assert_eq!(
            rp.headers["x-forwarded-proto"], "http",
            "set by the connection manager, as Envoy's mutateRequestHeaders"
        );
        assert_eq!(rb, "pre:{\"a\":1}");
    }

    let (parts, body) = send(&c, "GET", format!("{base}/deny"), b"").await;
    assert_eq!(parts.status, 403);
    assert_eq!(parts.headers["x-reason"], "policy");
    assert_eq!(
        parts.headers["x-resp"], "v1",
        "local reply went through on_response_headers"
    );
    assert_eq!(body, "nope");

    // Hot swap: new streams use the new plugin.
    let w2 = Wat::new();
    let (p2, _) = load(&filter_module(&w2, "v2"), config("proxy-main-2"));
    handle.set(p2);
    let (parts, _) = send(&c, "GET", format!("{base}/x"), b"").await;
    assert_eq!(parts.headers["x-resp"], "v2");

    // h2c downstream.
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let (parts, _) = send(&h2, "GET", format!("{base}/h2"), b"").await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_2);

    let admin = server.admin_addr().unwrap();
    let (parts, _) = send(&c, "GET", format!("http://{admin}/ready"), b"").await;
    assert_eq!(parts.status, 200);

    server.shutdown().await;
    let logs = logs.0.lock().unwrap();
    assert!(logs.len() >= 4, "{}", logs.len());
    // Envoy's router: a proxied answer's details are `via_upstream`, and
    // `upstream.address` names the host it came from.
    let proxied = logs.iter().find(|e| e.path == "/mcp").unwrap();
    assert_eq!(
        proxied.filter_state["wasm.upstream_address"],
        up.to_string().as_bytes()
    );
    assert_eq!(proxied.filter_state["wasm.code_details"], b"via_upstream");
    let deny = logs.iter().find(|e| e.path == "/deny").unwrap();
    assert!(
        !deny.filter_state.contains_key("wasm.upstream_address"),
        "a local reply never went upstream"
    );
    assert_eq!(deny.response_code, 403);
    assert!(deny.local_reply);
    assert_eq!(deny.filter_state["wasm.portcullis.audit"], b"audited");
    assert_eq!(deny.method, "GET");
    assert!(!deny.request_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_flows_event_by_event() {
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel();
    let gate: Gate = Arc::new(tokio::sync::Mutex::new(Some(gate_rx)));
    let up = upstream(Seen::default(), gate).await;
    let w = Wat::new();
    let (p, _) = load(&w.module(""), config("proxy-sse"));
    let server = serve(proxy_config(up), FilterHandle::new(p)).await.unwrap();
    let req = http::Request::builder()
        .uri(format!("http://{}/sse", server.local_addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first, "data: 1\n\n",
        "first event arrives before the second is sent"
    );
    gate_tx.send(()).unwrap();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "data: 2\n\n");
    server.shutdown().await;
}

/// Logs one line per body callback: which direction, whether
/// `end_of_stream`, and whether the call carried bytes.
fn framing_module(w: &Wat) -> String {
    let body = format!(
        r#"
  (func $say (param $e i32) (param $s i32) (param $chunk i32) (param $chunkl i32) (param $empty i32) (param $emptyl i32) (param $full i32) (param $fulll i32)
    (if (i32.eqz (local.get $e))
      (then (call $log (local.get $chunk) (local.get $chunkl)))
      (else (if (i32.eqz (local.get $s))
        (then (call $log (local.get $empty) (local.get $emptyl)))
        (else (call $log (local.get $full) (local.get $fulll)))))))
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (call $say (local.get $e) (local.get $s) {rq_chunk} {rq_empty} {rq_full})
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (call $say (local.get $e) (local.get $s) {rs_chunk} {rs_empty} {rs_full})
    (i32.const 0))
"#,
        rq_chunk = w.s("request data"),
        rq_empty = w.s("request end (empty)"),
        rq_full = w.s("request end (with data)"),
        rs_chunk = w.s("response data"),
        rs_empty = w.s("response end (empty)"),
        rs_full = w.s("response end (with data)"),
    );
    w.module(&body)
}

/// Envoy's HTTP/1 codec hands a body over as `(data, end_stream=false)` and
/// ends the message with `(empty, end_stream=true)` (`onBody`, then
/// `onMessageComplete`; source/common/http/http1/codec_impl.cc), even when
/// `content-length` says the data was all of it, for requests and responses.
/// HTTP/2's DATA frame carries END_STREAM itself: one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_bodies_end_with_an_empty_end_of_stream_call() {
    let up = upstream(Seen::default(), Gate::default()).await;
    let w = Wat::new();
    let (p, sink) = load(&framing_module(&w), config("framing"));
    let server = serve(proxy_config(up), FilterHandle::new(p)).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let lines = |sink: &host_shim::MemoryLogSink| -> Vec<String> {
        sink.lines().into_iter().map(|(_, l)| l).collect()
    };

    let (parts, body) = send(&client(), "POST", format!("{base}/fixed"), b"hello").await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "echo:hello");
    assert_eq!(
        lines(&sink),
        [
            "request data",
            "request end (empty)",
            "response data",
            "response end (empty)"
        ],
        "HTTP/1.1 with content-length both ways"
    );

    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let before = lines(&sink).len();
    let (parts, _) = send(&h2, "POST", format!("{base}/fixed"), b"hello").await;
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(
        lines(&sink)[before..],
        [
            "request end (with data)",
            "response data",
            "response end (empty)"
        ],
        "HTTP/2 downstream: END_STREAM on the DATA frame; the upstream is HTTP/1.1"
    );
    server.shutdown().await;
}

fn trap_module(w: &Wat) -> String {
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (if (i32.eq (call $proxy_get_shared_data {k} (i32.const 200) (i32.const 204) (i32.const 208)) (i32.const 1))
      (then
        (drop (call $proxy_set_shared_data {k} {k} (i32.const 0)))
        (unreachable)))
    (i32.const 0))
"#,
        k = w.s("trapped"),
    );
    w.module(&body)
}

async fn two_requests(policy: FailurePolicy, name: &str) -> (u16, u16) {
    let up = upstream(Seen::default(), Gate::default()).await;
    let w = Wat::new();
    let mut cfg = config(name);
    cfg.failure_policy = policy;
    let (p, _) = load(&trap_module(&w), cfg);
    let server = serve(proxy_config(up), FilterHandle::new(p)).await.unwrap();
    let c = client();
    let base = format!("http://{}", server.local_addr());
    let (a, _) = send(&c, "GET", format!("{base}/1"), b"").await;
    let (b, _) = send(&c, "GET", format!("{base}/2"), b"").await;
    server.shutdown().await;
    (a.status.as_u16(), b.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_fail_closed_fail_reload_fail_open() {
    assert_eq!(
        two_requests(FailurePolicy::FailClosed, "trap-closed").await,
        (503, 503)
    );
    assert_eq!(
        two_requests(FailurePolicy::FailReload, "trap-reload").await,
        (503, 200),
        "a fresh VM serves later streams"
    );
    assert_eq!(
        two_requests(FailurePolicy::FailOpen, "trap-open").await,
        (200, 200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_buffer_limit_is_413() {
    let up = upstream(Seen::default(), Gate::default()).await;
    let w = Wat::new();
    let (p, _) = load(&filter_module(&w, "v1"), config("proxy-413"));
    let mut cfg = proxy_config(up);
    cfg.buffer_limit = 16;
    let server = serve(cfg, FilterHandle::new(p)).await.unwrap();
    // A chunked body: the filter sees end_stream=false and pauses, so the
    // filter manager buffers and crosses the limit. (A body that arrives
    // whole with end_stream is never buffered, in Envoy either.)
    let c: Client<_, http_body_util::channel::Channel<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(2);
    tokio::spawn(async move {
        let _ = tx
            .send_data(Bytes::from_static(
                b"0123456789012345678901234567890123456789",
            ))
            .await;
    });
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/big", server.local_addr()))
        .body(body)
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "Payload Too Large"
    );
    server.shutdown().await;
}

struct ChanSink(Mutex<std::sync::mpsc::Sender<String>>);

impl LogSink for ChanSink {
    fn log(&self, _: &str, _: LogLevel, m: &str) {
        let _ = self.0.lock().unwrap().send(m.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_vm_ticks_and_http_call_resumes() {
    let up = upstream(Seen::default(), Gate::default()).await;
    let w = Wat::new();
    let body = format!(
        r#"
  (global $ctx (mut i32) (i32.const 0))
  (func (export "proxy_on_vm_start") (param $c i32) (param $s i32) (result i32)
    (drop (call $proxy_set_tick_period_milliseconds (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $c i32)
    (call $log {tick})
    (drop (call $proxy_set_tick_period_milliseconds (i32.const 0))))
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (global.set $ctx (local.get $c))
    (drop (call $proxy_http_call {cluster} {hdrs} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 300)))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param $root i32) (param $tok i32) (param $nh i32) (param $nb i32) (param $nt i32)
    (drop (call $proxy_set_effective_context (global.get $ctx)))
    (drop (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (local.get $nb) (i32.const 200) (i32.const 204)))
    (drop (call $proxy_add_header_map_value (i32.const 0) {xa} {ok}))
    (drop (call $proxy_continue_stream (i32.const 0))))
"#,
        tick = w.s("tick"),
        cluster = w.s("authz"),
        hdrs = w.pairs(&[
            (":method", "GET"),
            (":path", "/authz"),
            (":authority", "authz")
        ]),
        xa = w.s("x-authz"),
        ok = w.s("ok"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cfg = config("proxy-ticks");
    cfg.log_sink = Some(Arc::new(ChanSink(Mutex::new(tx))));
    let bin = wat::parse_str(w.module(&body)).unwrap();
    let p = host_shim::Plugin::load(&bin, cfg).unwrap();
    let seen = Seen::default();
    let authz = upstream(seen.clone(), Gate::default()).await;
    let mut pc = proxy_config(up);
    pc.clusters = HashMap::from([("authz".into(), format!("http://{authz}").parse().unwrap())]);
    let server = serve(pc, FilterHandle::new(p)).await.unwrap();
    let (parts, body) = send(
        &client(),
        "POST",
        format!("http://{}/x", server.local_addr()),
        b"hi",
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "echo:hi");
    assert_eq!(seen.reqs.lock().unwrap()[0].0.uri.path(), "/authz");
    // The worker VM was created by the request; its root context ticks.
    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(got.unwrap(), "tick");
    server.shutdown().await;
}

/// Logs its lifecycle: `start` (on_vm_start), `tick`, `done` (on_done).
fn lifecycle_module(w: &Wat) -> String {
    let body = format!(
        r#"
  (func (export "proxy_on_vm_start") (param $c i32) (param $n i32) (result i32)
    (call $log {start})
    (i32.const 1))
  (func (export "proxy_on_configure") (param $c i32) (param $n i32) (result i32)
    (drop (call $proxy_set_tick_period_milliseconds (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $c i32)
    (call $log {tick}))
  (func (export "proxy_on_done") (param $c i32) (result i32)
    (call $log {done})
    (i32.const 1))
"#,
        start = w.s("start"),
        tick = w.s("tick"),
        done = w.s("done"),
    );
    w.module(&body)
}

fn count(sink: &host_shim::MemoryLogSink, line: &str) -> usize {
    sink.lines().iter().filter(|(_, l)| l == line).count()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Envoy starts a VM per worker when the configuration loads (on_vm_start,
/// on_configure, the tick timer), not at a worker's first request
/// (`getOrCreateThreadLocalPlugin` from the filter config's TLS slot,
/// source/extensions/common/wasm/wasm.cc), and again for a new
/// configuration. The load-time VM gets its teardown (on_done) as Envoy's
/// base VM does when the configuration goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_vms_start_and_tick_before_any_request() {
    let up = upstream(Seen::default(), Gate::default()).await;
    let w = Wat::new();
    let (p, sink) = load(&lifecycle_module(&w), config("lifecycle"));
    assert_eq!(
        sink.lines().into_iter().map(|(_, l)| l).collect::<Vec<_>>(),
        ["start", "done"],
        "the load-time VM starts, configures, and is torn down"
    );
    let mut cfg = proxy_config(up);
    cfg.workers = 2;
    let handle = FilterHandle::new(p);
    let server = serve(cfg, handle.clone()).await.unwrap();
    assert!(
        eventually(|| count(&sink, "start") == 3 && count(&sink, "tick") >= 2).await,
        "both idle workers started a VM and tick: {:?}",
        sink.lines()
    );

    let w2 = Wat::new();
    let (p2, sink2) = load(&lifecycle_module(&w2), config("lifecycle-2"));
    handle.set(p2);
    assert!(
        eventually(|| count(&sink2, "start") == 3 && count(&sink2, "tick") >= 1).await,
        "a swap starts the new VM on every worker at once: {:?}",
        sink2.lines()
    );
    server.shutdown().await;
}

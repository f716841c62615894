//! A governed tools/call under a fleet rate limit against the same call
//! under a proxy-local one (issue 19, docs/fleet.md "Costs").
//!
//! Real parts on 127.0.0.1, started here as `tests/e2e_fleet.rs` starts
//! them: a `redis-server` and the fleet state service (`portcullis fleet`,
//! the binary under bench, its own process). The two bundles differ only in
//! the limit's `scope`: `rate: {requests: 1e9, per: 1m}` on the called
//! tool, `scope: proxy` (counted in shared data with CAS) or `scope: fleet`
//! (asked of the service with one RLS v3 `ShouldRateLimit`, one Redis
//! script).
//!
//! `fleet_limit/wasm/{proxy,fleet}`: `portcullis_filter.wasm` in host-shim
//! (`host_shim::TestVm`, the callbacks Envoy drives): request headers and
//! body; for `fleet`, the filter's `proxy_grpc_call` is carried out as
//! `portcullis serve`'s worker carries it out (`host_shim::grpc`'s HTTP/2
//! client, one connection kept open, `perform_grpc_call`, then
//! `proxy_on_grpc_receive` and the stream resumed); then response headers
//! and body, and the audit record.
//!
//! `fleet_limit/native/{proxy,fleet}`: the same exchange through
//! `portcullis_core::Exchange` natively; the engine's fleet outcall is
//! answered by the same real gRPC call to the service (the same
//! `host_shim::grpc::perform_grpc_call`), so the difference between the
//! two is again the fleet question's whole round trip.
//!
//! The split: `fleet_limit/rpc` is the fleet question alone (the
//! filter's own `ShouldRateLimit` request, sent over the same client to the
//! service and Redis); `fleet_limit/{native,wasm}/fleet-no-network` is the
//! fleet exchange with that real answer replayed at once (the engine's own
//! cost of asking and deciding again, no network).
//!
//! Without `redis-server` on PATH the benches are skipped with a message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use host_shim::grpc::{GrpcCallResult, PendingGrpcCall, perform_grpc_call};
use host_shim::{Dir, HeaderMap, Output, Plugin, PluginConfig, TestVm};
use portcullis_core::engine::{RequestBodyAction, RequestHead, RequestHeadersAction};
use portcullis_core::outcall::{CallResult, Outcall, OutcallKind};
use portcullis_core::test_util::{MemoryEnv, bundle_json, doc, server};
use portcullis_core::{Engine, Exchange};
use serde_json::json;
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));
const CLUSTER: &str = "fleet";

const BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
const RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#;

/// A child process killed and waited for when dropped.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// redis-server on loopback, no persistence; `None` if it is not installed.
fn redis(dir: &std::path::Path) -> Option<(Kill, u16)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Kill(child);
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((redis, port));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not start on {port}");
}

/// `portcullis fleet` on an ephemeral port; its address.
fn fleet_service(redis_port: u16) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["fleet", "--listen", "127.0.0.1:0", "--redis"])
        .arg(format!("redis://127.0.0.1:{redis_port}/"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let fleet = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening grpc=")
        .unwrap_or_else(|| panic!("portcullis fleet said {line:?}"))
        .to_owned();
    (fleet, addr)
}

/// The same bundle but for the limit's scope.
fn bundle(scope: &str) -> Vec<u8> {
    bundle_json(vec![
        server("docs", "/mcp", &["echo"]),
        doc(
            "Policy",
            "p",
            json!({
                "rules": [{"id": "all", "effect": "permit", "tools": ["echo"]}],
                "limits": [{"id": "calls", "tools": ["echo"], "scope": scope,
                            "rate": {"requests": 1_000_000_000u64, "per": "1m"}}],
            }),
        ),
        doc(
            "Settings",
            "s",
            json!({"fleet": {"cluster": CLUSTER, "timeoutMs": 1000}}),
        ),
    ])
}

// ------------------------------------------------------------------ native

/// The engine's outcall as host-shim's pending call (what the proxy-wasm
/// adapter's `proxy_grpc_call` becomes in host-shim).
fn pending(call: &Outcall, upstream: &http::Uri) -> PendingGrpcCall {
    let OutcallKind::Grpc {
        service,
        method,
        message,
        initial_metadata,
    } = &call.kind
    else {
        panic!("not a gRPC outcall: {call:?}")
    };
    let mut metadata = HeaderMap::new();
    for (k, v) in initial_metadata {
        metadata.add(k, v);
    }
    PendingGrpcCall {
        token: call.id,
        cluster: call.cluster.clone(),
        upstream: upstream.clone(),
        authority: call.cluster.clone(),
        service: service.clone(),
        method: method.clone(),
        metadata,
        message: message.clone(),
        timeout: Some(Duration::from_millis(u64::from(call.timeout_ms))),
    }
}

fn call_result(r: GrpcCallResult) -> CallResult {
    match r {
        GrpcCallResult::Message(body) => CallResult::Grpc {
            status: 0,
            message: String::new(),
            body,
        },
        GrpcCallResult::Close { status, message } => CallResult::Grpc {
            status,
            message,
            body: Vec::new(),
        },
    }
}

/// One whole exchange natively; `outcall` answers a fleet question.
/// Returns how many outcalls were made.
fn native_exchange(
    engine: &Arc<Engine>,
    env: &mut MemoryEnv,
    mut outcall: impl FnMut(&Outcall) -> CallResult,
) -> usize {
    let mut ex = Exchange::new(engine.clone());
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.example.com".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("mcp-protocol-version".into(), "2025-11-25".into()),
            ("x-request-id".into(), "bench".into()),
        ],
    };
    assert!(matches!(
        ex.on_request_headers(env, head),
        RequestHeadersAction::ReadBody(_)
    ));
    let mut action = ex.on_request_body(env, BODY, true);
    let mut calls = 0;
    while let RequestBodyAction::Call(c) = &action {
        calls += 1;
        let id = c.id;
        let result = outcall(c);
        action = ex.on_call_done(env, id, result);
    }
    assert!(
        matches!(action, RequestBodyAction::Forward(_)),
        "{action:?}"
    );
    black_box(ex.on_response_headers(
        env,
        200,
        &[("content-type".into(), "application/json".into())],
    ));
    black_box(ex.on_response_body(env, RESPONSE, true));
    ex.on_stream_end(env);
    black_box(ex.take_audit());
    calls
}

// -------------------------------------------------------------------- wasm

fn plugin(bundle: Vec<u8>) -> Arc<Plugin> {
    let config = PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id: "portcullis".into(),
        configuration: bundle,
        allow_on_headers_stop_iteration: true,
        ..PluginConfig::default()
    };
    Plugin::load(WASM, config).expect("filter loads")
}

/// One whole exchange through the filter in host-shim; `grpc` carries out
/// each `proxy_grpc_call` it makes. Returns (forwarded and answered, calls).
fn wasm_exchange(
    vm: &TestVm,
    mut grpc: impl FnMut(PendingGrpcCall) -> GrpcCallResult,
) -> (bool, usize) {
    let mut s = vm.stream();
    s.decode_headers(
        HeaderMap::from_pairs(&[
            (":method", "POST"),
            (":path", "/mcp"),
            (":authority", "mcp.example.com"),
            (":scheme", "https"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2025-11-25"),
            ("x-request-id", "bench"),
        ]),
        false,
    );
    s.decode_data(BODY.to_vec(), true);
    let mut calls = 0;
    loop {
        let pending = vm.vm.take_grpc_calls();
        if pending.is_empty() {
            break;
        }
        for call in pending {
            calls += 1;
            let token = call.token;
            let r = grpc(call);
            vm.vm.complete_grpc_call(token, r);
        }
        s.process_actions();
    }
    let upstream = s.take_outputs();
    s.encode_headers(
        HeaderMap::from_pairs(&[(":status", "200"), ("content-type", "application/json")]),
        false,
    );
    s.encode_data(RESPONSE.to_vec(), true);
    let downstream = s.take_outputs();
    s.finish();
    let ok = upstream
        .iter()
        .any(|o| matches!(o, Output::Headers(Dir::Request, _, _)))
        && downstream
            .iter()
            .any(|o| matches!(o, Output::Data(Dir::Response, d, _) if d.as_slice() == RESPONSE));
    (ok, calls)
}

fn fleet_limit(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some((_redis, redis_port)) = redis(&dir) else {
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "fleet_limit: SKIPPED, redis-server is not on PATH (Debian: apt-get install redis-server)"
        );
        return;
    };
    let (_fleet, addr) = fleet_service(redis_port);
    let upstream: http::Uri = format!("http://{addr}").parse().unwrap();
    // As a `portcullis serve` worker: one thread, a current-thread runtime,
    // one HTTP/2 client for every proxy_grpc_call.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = host_shim::grpc::client();
    // What `portcullis serve`'s worker does with a `proxy_grpc_call`: the
    // call over that client, its result.
    let grpc = |call: PendingGrpcCall| rt.block_on(perform_grpc_call(client.clone(), call));
    let mut group = c.benchmark_group("fleet_limit");

    for scope in ["proxy", "fleet"] {
        let want_calls = usize::from(scope == "fleet");

        let engine = Arc::new(Engine::from_config(&bundle(scope)).unwrap());
        let mut env = MemoryEnv::at_secs(1_800_000_000).random_fill(0x5a);
        // Once, checked: the service answers (a failed call would be
        // refused, failClosed, and the exchange assert it was forwarded).
        let calls = native_exchange(&engine, &mut env, |c| {
            let r = grpc(pending(c, &upstream));
            assert!(matches!(r, GrpcCallResult::Message(_)), "{r:?}");
            call_result(r)
        });
        assert_eq!(calls, want_calls, "native {scope}: fleet questions");
        let mut answer = |c: &Outcall| call_result(grpc(pending(c, &upstream)));
        group.bench_function(format!("native/{scope}"), |b| {
            b.iter(|| native_exchange(&engine, &mut env, &mut answer))
        });

        let p = plugin(bundle(scope));
        let vm = TestVm::with_clusters(&p, HashMap::from([(CLUSTER.into(), upstream.clone())]))
            .expect("vm");
        let mut seen = None;
        let (ok, calls) = wasm_exchange(&vm, |call| {
            let r = grpc(call.clone());
            seen = Some((call, r.clone()));
            r
        });
        assert!(ok, "wasm {scope}: forwarded and answered");
        assert_eq!(calls, want_calls, "wasm {scope}: proxy_grpc_calls");
        let mut carry = |call: PendingGrpcCall| grpc(call);
        group.bench_function(format!("wasm/{scope}"), |b| {
            b.iter(|| black_box(wasm_exchange(&vm, &mut carry)))
        });

        let Some((call, answer)) = seen else {
            continue;
        };
        // The split: the fleet question alone (the filter's own
        // ShouldRateLimit request over the same client), and the filter's
        // fleet path with that real answer replayed, no network.
        assert!(matches!(answer, GrpcCallResult::Message(_)), "{answer:?}");
        group.bench_function("rpc", |b| b.iter(|| black_box(grpc(call.clone()))));
        let canned = call_result(answer.clone());
        group.bench_function("native/fleet-no-network", |b| {
            b.iter(|| native_exchange(&engine, &mut env, |_| canned.clone()))
        });
        group.bench_function("wasm/fleet-no-network", |b| {
            b.iter(|| black_box(wasm_exchange(&vm, |_| answer.clone())))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, fleet_limit);
criterion_main!(benches);

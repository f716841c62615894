//! Cost of a Policy decision (issue 5) as rules grow, natively and in wasm.
//!
//! `decide/native/<n>`: `PolicySet::decide` alone for a bundle of n rules
//! (10, 100, 1000), each naming its own tool, one
//! in ten with an argument schema, one in ten with a CEL `when`; the call
//! hits a rule in the middle. Matching is indexed by tool, so the cost
//! should stay nearly flat as n grows.
//!
//! `exchange/{native,wasm}/<n>` and `.../limits`: a whole tools/call
//! (request, response, audit) through the engine and through the wasm
//! filter in host-shim, for the same bundles, and with a token bucket and a
//! daily budget on (both counted in shared data with CAS).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use host_shim::{Dir, HeaderMap, Output, Plugin, PluginConfig, TestVm};
use portcullis_core::engine::{RequestBodyAction, RequestHead, RequestHeadersAction};
use portcullis_core::policy::{Call, Context, TargetKind};
use portcullis_core::test_util::{MemoryEnv, bundle_json, doc, server};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));
const SIZES: [usize; 3] = [10, 100, 1000];

fn bundle(rules: usize, limits: bool) -> Vec<u8> {
    let tools: Vec<String> = (0..rules).map(|i| format!("tool-{i}")).collect();
    let tools: Vec<&str> = tools.iter().map(String::as_str).collect();
    let rule_docs: Vec<Value> = (0..rules)
        .map(|i| {
            let mut r = json!({"id": format!("r{i}"), "effect": "permit", "tools": [format!("tool-{i}")]});
            if i % 10 == 3 {
                r["arguments"] = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 64}}});
            }
            if i % 10 == 7 {
                r["when"] = json!("args.city != 'Atlantis'");
            }
            r
        })
        .collect();
    let mut policy = json!({"rules": rule_docs});
    if limits {
        policy["limits"] = json!([
            {"id": "bucket", "rate": {"requests": 1_000_000_000u64, "per": "1s"}},
            {"id": "budget", "budget": {"unitsPerDay": 1_000_000_000_000u64}},
        ]);
    }
    bundle_json(vec![
        server("big", "/mcp", &tools),
        doc("Policy", "p", policy),
    ])
}

/// The tool a call names: the middle rule, one with a CEL condition.
fn target(rules: usize) -> String {
    let mid = rules / 2;
    format!("tool-{}", mid - mid % 10 + 7)
}

fn call_body(tool: &str) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{"city":"Paris"}}})
        .to_string()
        .into_bytes()
}

const RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;

/// The host: fixed clock and random bytes, shared data with CAS.
fn bench_env() -> MemoryEnv {
    MemoryEnv::at_secs(1_800_000_000).random_fill(0x5a)
}

fn native_exchange(engine: &Arc<Engine>, env: &mut MemoryEnv, body: &[u8]) {
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
    let action = ex.on_request_body(env, body, true);
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
}

fn wasm_exchange(vm: &TestVm, body: &[u8]) -> bool {
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
    s.decode_data(body.to_vec(), true);
    let upstream = s.take_outputs();
    s.encode_headers(
        HeaderMap::from_pairs(&[(":status", "200"), ("content-type", "application/json")]),
        false,
    );
    s.encode_data(RESPONSE.to_vec(), true);
    let downstream = s.take_outputs();
    s.finish();
    upstream
        .iter()
        .any(|o| matches!(o, Output::Headers(Dir::Request, _, _)))
        && downstream
            .iter()
            .any(|o| matches!(o, Output::Data(Dir::Response, d, _) if d.as_slice() == RESPONSE))
}

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

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy/decide");
    for n in SIZES {
        let engine = Engine::from_config(&bundle(n, false)).unwrap();
        let policy = engine.bundle().policy.clone();
        let tool = target(n);
        let args = json!({"city": "Paris"});
        let call = Call {
            server: "big",
            method: "tools/call",
            target: Some((TargetKind::Tool, &tool)),
            arguments: Some(&args),
            lax_arguments: &[],
        };
        let ctx = Context::default();
        let d = policy.decide(&call, &ctx, true);
        assert_eq!(d.rules, vec![format!("Policy/p#r{}", &tool[5..])], "{d:?}");
        group.bench_function(format!("native/{n}"), |b| {
            b.iter(|| black_box(policy.decide(black_box(&call), &ctx, true)))
        });
    }
    group.finish();
}

fn exchange(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy/exchange");
    for n in SIZES {
        let body = call_body(&target(n));
        let engine = Arc::new(Engine::from_config(&bundle(n, false)).unwrap());
        let mut env = bench_env();
        native_exchange(&engine, &mut env, &body);
        group.bench_function(format!("native/{n}"), |b| {
            b.iter(|| native_exchange(&engine, &mut env, &body))
        });
        let vm_plugin = plugin(bundle(n, false));
        let vm = TestVm::new(&vm_plugin).expect("vm");
        assert!(wasm_exchange(&vm, &body), "wasm {n}");
        group.bench_function(format!("wasm/{n}"), |b| {
            b.iter(|| black_box(wasm_exchange(&vm, &body)))
        });
    }
    let n = 100;
    let body = call_body(&target(n));
    let engine = Arc::new(Engine::from_config(&bundle(n, true)).unwrap());
    let mut env = bench_env();
    native_exchange(&engine, &mut env, &body);
    assert!(!env.shared.is_empty(), "limits counted");
    group.bench_function("native/100/limits", |b| {
        b.iter(|| native_exchange(&engine, &mut env, &body))
    });
    let vm_plugin = plugin(bundle(n, true));
    let vm = TestVm::new(&vm_plugin).expect("vm");
    assert!(wasm_exchange(&vm, &body));
    group.bench_function("wasm/100/limits", |b| {
        b.iter(|| black_box(wasm_exchange(&vm, &body)))
    });
    group.finish();
}

criterion_group!(benches, decide, exchange);
criterion_main!(benches);

//! The cost of a *typical* exchange (issue 16, target 1), natively, as the
//! wasm filter in host-shim, and beside the host's floor.
//!
//! Typical: a tools/call with 1 KiB of arguments and a cached RS256 token,
//! on a server with 100 policy rules (one in ten with an argument schema,
//! one in ten with a CEL `when`, and one untargeted CEL forbid every call
//! evaluates), the built-in content policy on both directions (arguments
//! scanned, the answer screened and scanned), and a 4 KiB answer of clean
//! prose, once as JSON and once as one SSE event.
//!
//! `typical/{native,wasm}/{json,sse}`: the whole exchange (request headers
//! with `Authorization: Bearer`, body decided, response headers, body
//! screened, audit record). `typical/floor/{json,sse}`: an empty proxy-wasm
//! module (every callback returns Continue, no hostcall) driven through the
//! same callbacks with the same bytes: what host-shim itself costs, so the
//! filter's own cost in wasm is `wasm - floor`.
//!
//! `tools_list/{native,wasm}/50`: a tools/list answer of 50 pinned tools
//! (about 1 KiB each) that did not change since the last one: the pins
//! come from the VM's pin cache and the screening findings from its
//! screening cache, not from canonicalising, hashing and screening each
//! tool again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use host_shim::{Dir, HeaderMap, Output, Plugin, PluginConfig, TestVm};
use portcullis_core::engine::{
    RequestBodyAction, RequestHead, RequestHeadersAction, ResponseBodyAction,
};
use portcullis_core::test_util::MemoryEnv;
use portcullis_core::{Engine, Exchange};
use serde_json::Value;
use std::hint::black_box;
use std::sync::Arc;

#[path = "support/typical.rs"]
mod fixture;
use fixture::*;

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

fn content_type(sse: bool) -> &'static str {
    if sse {
        "text/event-stream"
    } else {
        "application/json"
    }
}

/// One whole exchange through the engine; returns the body sent to the
/// client.
fn native_exchange(
    engine: &Arc<Engine>,
    env: &mut MemoryEnv,
    authorization: &str,
    request: &[u8],
    answer: &[u8],
    sse: bool,
) -> Vec<u8> {
    let mut ex = Exchange::new(engine.clone());
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.example.com".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "accept".into(),
                "application/json, text/event-stream".into(),
            ),
            ("mcp-protocol-version".into(), "2025-11-25".into()),
            ("authorization".into(), authorization.into()),
            ("x-request-id".into(), "bench".into()),
        ],
    };
    let action = ex.on_request_headers(env, head);
    assert!(
        matches!(action, RequestHeadersAction::ReadBody(_)),
        "{action:?}"
    );
    let action = ex.on_request_body(env, request, true);
    assert!(
        matches!(action, RequestBodyAction::Forward(_)),
        "{action:?}"
    );
    black_box(ex.on_response_headers(
        env,
        200,
        &[("content-type".into(), content_type(sse).into())],
    ));
    let out = match ex.on_response_body(env, answer, true) {
        ResponseBodyAction::Pass => answer.to_vec(),
        ResponseBodyAction::Replace(b) => b,
        ResponseBodyAction::Buffer => panic!("the whole body was given"),
    };
    black_box(ex.take_audit());
    out
}

fn plugin(wasm: &[u8], bundle: Vec<u8>) -> Arc<Plugin> {
    let config = PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id: "portcullis".into(),
        configuration: bundle,
        allow_on_headers_stop_iteration: true,
        ..PluginConfig::default()
    };
    Plugin::load(wasm, config).expect("module loads")
}

/// One whole exchange through a proxy-wasm module; returns the body sent
/// to the client.
fn wasm_exchange(
    vm: &TestVm,
    authorization: &str,
    request: &[u8],
    answer: &[u8],
    sse: bool,
) -> Vec<u8> {
    let mut s = vm.stream();
    s.decode_headers(
        HeaderMap::from_pairs(&[
            (":method", "POST"),
            (":path", "/mcp"),
            (":authority", "mcp.example.com"),
            (":scheme", "https"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
            ("authorization", authorization),
            ("x-request-id", "bench"),
        ]),
        false,
    );
    s.decode_data(request.to_vec(), true);
    black_box(s.take_outputs());
    s.encode_headers(
        HeaderMap::from_pairs(&[(":status", "200"), ("content-type", content_type(sse))]),
        false,
    );
    s.encode_data(answer.to_vec(), true);
    let mut out = Vec::new();
    for o in s.take_outputs() {
        if let Output::Data(Dir::Response, d, _) = o {
            out.extend_from_slice(&d);
        }
    }
    s.finish();
    out
}

fn typical(c: &mut Criterion) {
    let bundle = typical_bundle();
    let bearer = token();
    let request = call_body();
    let mut group = c.benchmark_group("typical");

    // Native: the engine as the filter drives it. The clock is fixed at
    // bench start, so the cached token never expires mid-run.
    let engine = Arc::new(Engine::from_config(&bundle).unwrap());
    let mut env = MemoryEnv::at_nanos(now() * 1_000_000_000)
        .without_shared_data()
        .random_fill(0x5a);
    let filter = plugin(WASM, bundle.clone());
    let vm = TestVm::new(&filter).expect("vm");
    let floor = plugin(&wat::parse_str(EMPTY_MODULE).unwrap(), Vec::new());
    let floor_vm = TestVm::new(&floor).expect("vm");
    for sse in [false, true] {
        let framing = if sse { "sse" } else { "json" };
        let answer = call_answer(sse);
        // The answer is clean: forwarded as it came, by all three.
        assert_eq!(
            native_exchange(&engine, &mut env, &bearer, &request, &answer, sse),
            answer
        );
        assert_eq!(wasm_exchange(&vm, &bearer, &request, &answer, sse), answer);
        assert_eq!(
            wasm_exchange(&floor_vm, &bearer, &request, &answer, sse),
            answer
        );
        group.bench_function(format!("native/{framing}"), |b| {
            b.iter(|| native_exchange(&engine, &mut env, &bearer, &request, &answer, sse))
        });
        group.bench_function(format!("wasm/{framing}"), |b| {
            b.iter(|| black_box(wasm_exchange(&vm, &bearer, &request, &answer, sse)))
        });
        group.bench_function(format!("floor/{framing}"), |b| {
            b.iter(|| black_box(wasm_exchange(&floor_vm, &bearer, &request, &answer, sse)))
        });
    }
    let stats = engine.token_cache_stats();
    assert_eq!(stats.misses, 1, "the token is verified once, then cached");
    group.finish();
}

fn tools_list(c: &mut Criterion) {
    let bundle = typical_bundle();
    let bearer = token();
    let request = list_body();
    let answer = list_answer();
    let mut group = c.benchmark_group("tools_list");

    let engine = Arc::new(Engine::from_config(&bundle).unwrap());
    let mut env = MemoryEnv::at_nanos(now() * 1_000_000_000)
        .without_shared_data()
        .random_fill(0x5a);
    let out = native_exchange(&engine, &mut env, &bearer, &request, &answer, false);
    let listed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        listed["result"]["tools"].as_array().map(Vec::len),
        Some(LISTED_TOOLS),
        "every tool passes its pin"
    );
    group.bench_function(format!("native/{LISTED_TOOLS}"), |b| {
        b.iter(|| {
            black_box(native_exchange(
                &engine, &mut env, &bearer, &request, &answer, false,
            ))
        })
    });
    let filter = plugin(WASM, bundle);
    let vm = TestVm::new(&filter).expect("vm");
    assert_eq!(wasm_exchange(&vm, &bearer, &request, &answer, false), out);
    group.bench_function(format!("wasm/{LISTED_TOOLS}"), |b| {
        b.iter(|| black_box(wasm_exchange(&vm, &bearer, &request, &answer, false)))
    });
    group.finish();
}

criterion_group!(benches, typical, tools_list);
criterion_main!(benches);

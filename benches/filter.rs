//! Cost of one MCP tools/call through the filter: the engine called natively,
//! beside the same filter compiled to wasm and run in host-shim (wasmtime),
//! driven through the same callbacks Envoy would make.
//!
//! Each iteration is a whole exchange: request headers, request body
//! (decided), response headers and response body (correlated, audited).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use host_shim::{HeaderMap, Plugin, PluginConfig, TestVm};
use portcullis_core::engine::RequestHead;
use portcullis_core::test_util::{MemoryEnv, yaml_dir_bundle_json};
use portcullis_core::{Engine, Exchange};
use std::hint::black_box;
use std::sync::Arc;

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

fn bundle_json() -> Vec<u8> {
    yaml_dir_bundle_json(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundle"))
}

fn call_body(tool: &str) -> Vec<u8> {
    serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":tool,"arguments":{"city":"Paris","units":"metric"}}})
    .to_string()
    .into_bytes()
}

const RESPONSE: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Weather in Paris: snowy, 14C"}],"isError":false}}"#;

fn native(c: &mut Criterion) {
    let engine = Arc::new(Engine::from_config(&bundle_json()).expect("engine"));
    let mut group = c.benchmark_group("tools_call");
    for (name, tool) in [
        ("native/allowed", "get-weather"),
        ("native/denied", "delete-file"),
    ] {
        let body = call_body(tool);
        // The host: fixed clock and random bytes, no shared store.
        let mut env = MemoryEnv::new().without_shared_data().random_fill(0x5a);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut ex = Exchange::new(engine.clone());
                let head = RequestHead {
                    method: "POST".into(),
                    path: "/mcp".into(),
                    authority: "127.0.0.1:8080".into(),
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        (
                            "accept".into(),
                            "application/json, text/event-stream".into(),
                        ),
                        ("mcp-protocol-version".into(), "2025-11-25".into()),
                        ("x-request-id".into(), "bench".into()),
                    ],
                };
                black_box(ex.on_request_headers(&mut env, head));
                black_box(ex.on_request_body(&mut env, &body, true));
                black_box(ex.on_response_headers(
                    &mut env,
                    200,
                    &[("content-type".into(), "application/json".into())],
                ));
                black_box(ex.on_response_body(&mut env, RESPONSE, true));
                black_box(ex.take_audit());
            })
        });
    }
    group.finish();
}

fn wasm(c: &mut Criterion) {
    let config = PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id: "portcullis".into(),
        configuration: bundle_json(),
        allow_on_headers_stop_iteration: true,
        ..PluginConfig::default()
    };
    let plugin = Plugin::load(WASM, config).expect("filter loads");
    let vm = TestVm::new(&plugin).expect("vm");
    let mut group = c.benchmark_group("tools_call");
    for (name, tool) in [
        ("wasm/allowed", "get-weather"),
        ("wasm/denied", "delete-file"),
    ] {
        let body = call_body(tool);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut s = vm.stream();
                s.decode_headers(
                    HeaderMap::from_pairs(&[
                        (":method", "POST"),
                        (":path", "/mcp"),
                        (":authority", "127.0.0.1:8080"),
                        (":scheme", "http"),
                        ("content-type", "application/json"),
                        ("accept", "application/json, text/event-stream"),
                        ("mcp-protocol-version", "2025-11-25"),
                        ("x-request-id", "bench"),
                    ]),
                    false,
                );
                s.decode_data(body.clone(), true);
                black_box(s.take_outputs());
                s.encode_headers(
                    HeaderMap::from_pairs(&[
                        (":status", "200"),
                        ("content-type", "application/json"),
                    ]),
                    false,
                );
                s.encode_data(RESPONSE.to_vec(), true);
                black_box(s.take_outputs());
                s.finish();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, native, wasm);
criterion_main!(benches);

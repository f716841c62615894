//! Cost of one MCP tools/call exchange through the engine built as a
//! WebAssembly component (wasmtime's component model), beside the same
//! engine as the proxy-wasm filter, both in host-shim and driven through the
//! same stream callbacks (benches/filter.rs has the native figure).
//!
//! Each iteration is a whole exchange: request headers, request body
//! (decided), response headers and response body (correlated, audited),
//! then the access-log phase and teardown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use host_shim::{
    ComponentPlugin, ComponentVm, HeaderMap, Plugin, PluginConfig, StreamCore, TestVm,
};
use portcullis_core::test_util::yaml_dir_bundle_json;
use std::hint::black_box;

const FILTER: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

fn bundle_json() -> Vec<u8> {
    yaml_dir_bundle_json(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundle"))
}

fn config(vm_id: &str) -> PluginConfig {
    PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id: vm_id.into(),
        configuration: bundle_json(),
        allow_on_headers_stop_iteration: true,
        ..PluginConfig::default()
    }
}

fn call_body(tool: &str) -> Vec<u8> {
    serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":tool,"arguments":{"city":"Paris","units":"metric"}}})
    .to_string()
    .into_bytes()
}

const RESPONSE: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Weather in Paris: snowy, 14C"}],"isError":false}}"#;

/// One exchange on a fresh stream, as benches/filter.rs drives it.
fn exchange(mut s: StreamCore, body: &[u8]) {
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
    s.decode_data(body.to_vec(), true);
    black_box(s.take_outputs());
    s.encode_headers(
        HeaderMap::from_pairs(&[(":status", "200"), ("content-type", "application/json")]),
        false,
    );
    s.encode_data(RESPONSE.to_vec(), true);
    black_box(s.take_outputs());
    s.finish();
}

fn builds(c: &mut Criterion) {
    let path = env!("PORTCULLIS_COMPONENT_WASM");
    assert!(
        !path.is_empty(),
        "the component was not built (PORTCULLIS_SKIP_COMPONENT was set); unset it and rebuild"
    );
    let component = std::fs::read(path).expect("component");
    let plugin = Plugin::load(FILTER, config("bench-filter")).expect("filter loads");
    let vm = TestVm::new(&plugin).expect("vm");
    let cplugin =
        ComponentPlugin::load(&component, config("bench-component")).expect("component loads");
    let cvm = ComponentVm::new(cplugin).expect("instance");
    let mut group = c.benchmark_group("tools_call");
    for (outcome, tool) in [("allowed", "get-weather"), ("denied", "delete-file")] {
        let body = call_body(tool);
        group.bench_function(format!("proxy-wasm/{outcome}"), |b| {
            b.iter(|| exchange(vm.stream(), &body))
        });
        group.bench_function(format!("component/{outcome}"), |b| {
            b.iter(|| exchange(cvm.stream(vm.buffer_limit), &body))
        });
    }
    group.finish();
}

criterion_group!(benches, builds);
criterion_main!(benches);

//! Cost of content security (issue 4): PII and secret scanning, injection
//! screening, JSON redaction, and tool-definition pins.
//!
//! `scan/*` and `screen/*` report throughput (`Throughput::Bytes`) over a
//! ~1 MiB corpus in two variants: `dense`, the labelled texts of
//! `filters/core/tests/data/scan/*.json` (PII, secrets, poisoning and
//! injection cases) interleaved with benign prose, so roughly every other
//! paragraph carries findings; and `clean`, the benign prose alone (the
//! common case: one automaton pass, nothing to validate). `redact_json`
//! runs on a tool result built from the dense corpus. `pins/*` checks a
//! 500-tool list whose every definition matches its pin.
//!
//! `exchange/*`: a tools/call response carrying ~64 KiB of that mixed text
//! through the engine natively and through the wasm filter in host-shim,
//! with a ContentPolicy, as JSON and as SSE.
//!
//! `scan-throughput/*`: the content policy's throughput in wasm (issue 16,
//! item 3), from a ~256 KiB answer with and without the policy (see
//! [`scan_throughput`]).
//!
//! The learned detector (issue 20): `detector/score/*` is the model alone
//! over the same corpora (its cost per KiB is the inverse of the
//! throughput); `check_text/*` screens a result with the model named for
//! results, `check_text/*/rules-only` with the detector off, so the first
//! minus the second is what the model adds; `screen_tools_500/*` is a
//! tools/list of 500 tools screened with and without the model; and
//! `exchange/*/policy+model` is the exchange with the model named for tool
//! results (by default it does not score them), so `policy+model` minus
//! `policy` is the model's cost per result in wasm under host-shim and
//! natively.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use host_shim::{Dir, HeaderMap, Output, Plugin, PluginConfig, TestVm};
use portcullis_core::engine::{RequestBodyAction, RequestHead, ResponseBodyAction};
use portcullis_core::pins::{self, PinSet};
use portcullis_core::scan::detector::Model;
use portcullis_core::scan::injection::{InjectionSpec, ScreenAction, Surface};
use portcullis_core::scan::{ContentPolicySpec, Direction, Scanner, Screen};
use portcullis_core::test_util::{MemoryEnv, yaml_bundle_json};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

const MIB: usize = 1 << 20;

/// Benign prose: technical and business text of the kind tool results
/// carry, with numbers, dates, versions and paths that must not be flagged.
const PROSE: [&str; 10] = [
    "The quarterly report shows revenue grew by 12 percent compared with the same period last year, driven mostly by the new subscription tier. Operating costs stayed flat, and the team expects the margin to improve further once the migration of the billing system completes in the third quarter.",
    "To build the project, install the toolchain listed in the repository, run the build script from the top-level directory and wait for the compiler to finish. The first build takes several minutes because every dependency is compiled from source; later builds reuse the cache and finish much faster.",
    "The weather service reported light rain in the morning, clearing by noon, with temperatures between 9 and 14 degrees. Winds from the south-west at 20 kilometres per hour are expected to ease in the evening, and the outlook for the weekend is dry and mild.",
    "Version 2.4 of the library removes the deprecated configuration options and replaces them with a single settings object. Applications that still pass the old flags will see a warning at start-up; the migration guide in the documentation explains each change with an example.",
    "Meeting notes: the group agreed to move the release to the second week of the month so that the accessibility review can finish. Action items were assigned to the design and platform teams, and the next check-in is scheduled for Tuesday afternoon.",
    "The function reads the input file line by line, splits each line on commas and converts the third column to a floating-point number. Lines that cannot be parsed are counted and skipped, and the summary at the end prints the total, the mean and the number of rejected lines.",
    "Our support policy covers the two most recent major versions. Security fixes are back-ported for twelve months after a release, and customers on older versions are encouraged to upgrade during a maintenance window that suits their own schedule.",
    "The search returned 48 documents matching the query, sorted by relevance. The top results discuss cache invalidation strategies, the trade-offs between write-through and write-back designs, and how time-to-live values interact with clock skew across regions.",
    "Directions: leave the station by the north exit, walk two blocks along the river and turn left at the bakery. The office is on the fourth floor of the brick building opposite the park; visitors sign in at the front desk and receive a badge.",
    "The chart compares response times before and after the change. The median dropped from 180 to 95 milliseconds, while the 99th percentile improved less, from 900 to 610 milliseconds, because the slowest requests are dominated by a downstream service.",
];

fn load(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/filters/core/tests/data/scan/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Every text of the evaluation sets: PII texts, poisoning and injection
/// texts (tool results, prompts) and the descriptions of the tool cases.
fn labelled_texts() -> Vec<String> {
    let mut out = Vec::new();
    for file in [
        "pii.json",
        "holdout_pii.json",
        "poisoning.json",
        "holdout_poisoning.json",
    ] {
        for case in load(file) {
            if let Some(t) = case["text"].as_str() {
                out.push(t.to_owned());
            }
            if let Some(d) = case["tool"]["description"].as_str() {
                out.push(d.to_owned());
            }
        }
    }
    assert!(out.len() > 100, "the evaluation sets are all there");
    out
}

/// Paragraphs cycled until `target` bytes: labelled texts interleaved with
/// prose (`dense`) or prose alone.
fn corpus(target: usize, dense: bool) -> String {
    let labelled = labelled_texts();
    let mut out = String::with_capacity(target + 4096);
    let mut i = 0;
    while out.len() < target {
        if dense {
            out.push_str(&labelled[i % labelled.len()]);
            out.push_str("\n\n");
        }
        out.push_str(PROSE[i % PROSE.len()]);
        out.push_str("\n\n");
        i += 1;
    }
    out
}

/// A tools/call result with `text` split over content items of ~4 KiB
/// (on paragraph boundaries), as a server returning a document would.
fn tool_result(text: &str) -> Value {
    let mut items = Vec::new();
    let mut current = String::new();
    for para in text.split_inclusive("\n\n") {
        current.push_str(para);
        if current.len() >= 4096 {
            items.push(json!({"type": "text", "text": std::mem::take(&mut current)}));
        }
    }
    if !current.is_empty() {
        items.push(json!({"type": "text", "text": current}));
    }
    json!({"content": items, "isError": false})
}

fn scan(c: &mut Criterion) {
    let scanner = Scanner::builtin().unwrap();
    // Results named: by default the model does not score them.
    let mut named = InjectionSpec::default();
    named
        .detector
        .actions
        .insert(Surface::ToolResult, ScreenAction::Flag);
    let screen = Screen::compile(&named).unwrap();
    let dense = corpus(MIB, true);
    let clean = corpus(MIB, false);
    eprintln!(
        "corpus: dense {} bytes, {} PII/secret findings, {} screening findings; \
         clean {} bytes, {} PII/secret findings, {} screening findings",
        dense.len(),
        scanner.scan_text(&dense).len(),
        screen.check_text(&dense, Surface::ToolResult).len(),
        clean.len(),
        scanner.scan_text(&clean).len(),
        screen.check_text(&clean, Surface::ToolResult).len(),
    );
    let mut rules_only = InjectionSpec::default();
    rules_only.detector.enabled = false;
    let rules_only = Screen::compile(&rules_only).unwrap();
    let model = Model::builtin().unwrap();
    let mut group = c.benchmark_group("content/native");
    for (name, text) in [("dense", &dense), ("clean", &clean)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("scan_text/{name}"), |b| {
            b.iter(|| black_box(scanner.scan_text(black_box(text))))
        });
        group.bench_function(format!("check_text/{name}"), |b| {
            b.iter(|| black_box(screen.check_text(black_box(text), Surface::ToolResult)))
        });
        group.bench_function(format!("check_text/{name}/rules-only"), |b| {
            b.iter(|| black_box(rules_only.check_text(black_box(text), Surface::ToolResult)))
        });
        group.bench_function(format!("detector/score/{name}"), |b| {
            b.iter(|| black_box(model.score(black_box(text))))
        });
    }
    // ~64 KiB tool result: the size the exchange benches use.
    let result = tool_result(&corpus(64 * 1024, true));
    let bytes = serde_json::to_vec(&result).unwrap().len();
    let mut probe = result.clone();
    let report = scanner.redact_json(&mut probe, Direction::Response);
    eprintln!(
        "redact_json input: {bytes} bytes of JSON, {} findings, {} redacted",
        report.total(),
        report.redacted
    );
    assert!(report.modified(), "the dense tool result has PII to redact");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("redact_json/tool_result_64k", |b| {
        b.iter_batched(
            || result.clone(),
            |mut v| black_box(scanner.redact_json(&mut v, Direction::Response)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A realistic tool definition: title, description, an input schema with
/// several typed properties (an enum, a nested object, an array) and
/// annotations.
fn tool(i: usize) -> Value {
    json!({
        "name": format!("tool_{i:03}"),
        "title": format!("Tool number {i}"),
        "description": format!(
            "Searches the records of collection {i} and returns the matching entries as JSON. \
             Use the filter to narrow the results; results are paginated, pass the cursor \
             from the previous page to continue."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Free-text query.", "maxLength": 512},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "order": {"type": "string", "enum": ["relevance", "newest", "oldest"]},
                "filter": {
                    "type": "object",
                    "properties": {
                        "owner": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "since": {"type": "string", "format": "date-time"}
                    },
                    "additionalProperties": false
                },
                "cursor": {"type": ["string", "null"]}
            },
            "required": ["query"],
            "additionalProperties": false
        },
        "annotations": {"readOnlyHint": true, "openWorldHint": false},
        "_meta": {"vendor/revision": i}
    })
}

/// A tools/list of 500 tools screened by a ContentPolicy, with the learned
/// detector (the default) and without it.
fn screen_tools(c: &mut Criterion) {
    let tools: Vec<Value> = (0..500).map(tool).collect();
    let with_model = portcullis_core::scan::compile(&ContentPolicySpec::default()).unwrap();
    let mut spec = ContentPolicySpec::default();
    spec.injection.detector.enabled = false;
    let without = portcullis_core::scan::compile(&spec).unwrap();
    let mut probe = tools.clone();
    let verdicts = with_model.screen_tools(&mut probe);
    assert_eq!(probe.len(), 500, "no benign tool dropped: {verdicts:?}");
    let mut group = c.benchmark_group("content/native");
    group.throughput(Throughput::Elements(tools.len() as u64));
    for (name, policy) in [("rules+model", &with_model), ("rules-only", &without)] {
        group.bench_function(format!("screen_tools_500/{name}"), |b| {
            b.iter_batched(
                || tools.clone(),
                |mut t| black_box(policy.screen_tools(&mut t)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn pins(c: &mut Criterion) {
    let tools: Vec<Value> = (0..500).map(tool).collect();
    let set = PinSet::new(
        tools.iter().map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                pins::tool_pin(t).unwrap(),
            )
        }),
        true,
    )
    .unwrap();
    let report = set.check(&tools);
    assert!(report.passed(), "every tool matches its pin");
    let mut group = c.benchmark_group("content/native");
    group.throughput(Throughput::Elements(tools.len() as u64));
    group.bench_function("pins/check_500", |b| {
        b.iter(|| black_box(set.check(black_box(&tools))))
    });
    group.throughput(Throughput::Elements(1));
    let one = &tools[0];
    group.bench_function("pins/tool_pin", |b| {
        b.iter(|| black_box(pins::tool_pin(black_box(one)).unwrap()))
    });
    group.finish();
}

/// One server at `/mcp` allowing `fetch-document`; with `policy`, the
/// bundle's ContentPolicy `default` applies to it: built-in PII and secret
/// rules (redact on responses) and injection screening, with critical
/// tool-result findings stripped rather than blocking the call, so the
/// whole response is inspected, rewritten and forwarded.
fn bundle_json(policy: bool) -> Vec<u8> {
    bundle_json_with(policy, false)
}

/// As [`bundle_json`], with the learned detector named for tool results
/// (`model`) or left at its default (which does not score them).
fn bundle_json_with(policy: bool, model: bool) -> Vec<u8> {
    let mut yaml = String::from(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {name: docs}\nspec:\n  \
         match: {pathPrefix: /mcp}\n  tools: [{name: fetch-document}]\n",
    );
    if !policy {
        // The baseline: screening turned off by name (it is on by default).
        yaml.push_str("  contentPolicy: none\n");
    } else {
        yaml.push_str(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: ContentPolicy\nmetadata: {name: default}\n\
             spec:\n  injection:\n    actions:\n      toolResult: {critical: strip}\n",
        );
        if model {
            yaml.push_str("    detector: {actions: {toolResult: flag}}\n");
        }
    }
    yaml_bundle_json(&yaml)
}

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch-document","arguments":{"id":"q3-report"}}}"#;

/// The response body as the server sends it: the JSON-RPC answer, or one
/// SSE `message` event carrying it.
fn response_body(result: &Value, sse: bool) -> Vec<u8> {
    let msg = json!({"jsonrpc": "2.0", "id": 7, "result": result}).to_string();
    if sse {
        format!("event: message\ndata: {msg}\n\n").into_bytes()
    } else {
        msg.into_bytes()
    }
}

fn content_type(sse: bool) -> &'static str {
    if sse {
        "text/event-stream"
    } else {
        "application/json"
    }
}

/// One whole exchange through the engine; returns the body sent to the
/// client.
fn native_exchange(engine: &Arc<Engine>, response: &[u8], sse: bool) -> Vec<u8> {
    // The host: fixed clock and random bytes, no shared store.
    let mut env = MemoryEnv::new().without_shared_data().random_fill(0x5a);
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
    let action = ex.on_request_body(&mut env, CALL, true);
    assert!(
        matches!(action, RequestBodyAction::Forward(_)),
        "{action:?}"
    );
    black_box(ex.on_response_headers(
        &mut env,
        200,
        &[("content-type".into(), content_type(sse).into())],
    ));
    let out = match ex.on_response_body(&mut env, response, true) {
        ResponseBodyAction::Pass => response.to_vec(),
        ResponseBodyAction::Replace(b) => b,
        ResponseBodyAction::Buffer => panic!("the whole body was given"),
    };
    black_box(ex.take_audit());
    out
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

/// One whole exchange through the wasm filter; returns the body sent to
/// the client.
fn wasm_exchange(vm: &TestVm, response: &[u8], sse: bool) -> Vec<u8> {
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
    s.decode_data(CALL.to_vec(), true);
    black_box(s.take_outputs());
    s.encode_headers(
        HeaderMap::from_pairs(&[(":status", "200"), ("content-type", content_type(sse))]),
        false,
    );
    s.encode_data(response.to_vec(), true);
    let mut out = Vec::new();
    for o in s.take_outputs() {
        if let Output::Data(Dir::Response, d, _) = o {
            out.extend_from_slice(&d);
        }
    }
    s.finish();
    out
}

/// Panics unless `out` is the redacted, forwarded tool result (not an
/// error in its place).
fn assert_redacted(out: &[u8], what: &str) {
    let text = String::from_utf8_lossy(out);
    assert!(
        text.contains("[REDACTED:") && text.contains("\"isError\":false"),
        "{what}: {}",
        &text[..text.len().min(300)]
    );
}

fn exchange(c: &mut Criterion) {
    let result = tool_result(&corpus(64 * 1024, true));
    let mut group = c.benchmark_group("content/exchange");
    let plain = Arc::new(Engine::from_config(&bundle_json(false)).unwrap());
    let policy = Arc::new(Engine::from_config(&bundle_json(true)).unwrap());
    let plain_plugin = plugin(bundle_json(false));
    let plain_vm = TestVm::new(&plain_plugin).expect("vm");
    let policy_plugin = plugin(bundle_json(true));
    let policy_vm = TestVm::new(&policy_plugin).expect("vm");
    let model = Arc::new(Engine::from_config(&bundle_json_with(true, true)).unwrap());
    let model_plugin = plugin(bundle_json_with(true, true));
    let model_vm = TestVm::new(&model_plugin).expect("vm");
    for sse in [false, true] {
        let framing = if sse { "sse" } else { "json" };
        let body = response_body(&result, sse);
        group.throughput(Throughput::Bytes(body.len() as u64));
        assert_eq!(native_exchange(&plain, &body, sse), body);
        assert_redacted(&native_exchange(&policy, &body, sse), "native");
        assert_eq!(wasm_exchange(&plain_vm, &body, sse), body);
        assert_redacted(&wasm_exchange(&policy_vm, &body, sse), "wasm");
        group.bench_function(format!("native/{framing}/no-policy"), |b| {
            b.iter(|| black_box(native_exchange(&plain, &body, sse)))
        });
        group.bench_function(format!("native/{framing}/policy"), |b| {
            b.iter(|| black_box(native_exchange(&policy, &body, sse)))
        });
        group.bench_function(format!("wasm/{framing}/no-policy"), |b| {
            b.iter(|| black_box(wasm_exchange(&plain_vm, &body, sse)))
        });
        group.bench_function(format!("wasm/{framing}/policy"), |b| {
            b.iter(|| black_box(wasm_exchange(&policy_vm, &body, sse)))
        });
        assert_redacted(&native_exchange(&model, &body, sse), "native, model");
        assert_redacted(&wasm_exchange(&model_vm, &body, sse), "wasm, model");
        group.bench_function(format!("native/{framing}/policy+model"), |b| {
            b.iter(|| black_box(native_exchange(&model, &body, sse)))
        });
        group.bench_function(format!("wasm/{framing}/policy+model"), |b| {
            b.iter(|| black_box(wasm_exchange(&model_vm, &body, sse)))
        });
    }
    group.finish();
}

/// How fast the content policy scans and screens in wasm, where no bench
/// runs the scanner alone: a tools/call answer of ~256 KiB of text (clean
/// prose, or the dense mix) through the wasm filter in host-shim with the
/// ContentPolicy and with `contentPolicy: none`, and the same natively. At
/// this size the exchange's fixed cost is a few percent, and the content
/// policy's own throughput (parse of the answer into a tree, PII scan,
/// screening, redaction) is `bytes / (t(policy) - t(no-policy))`, bytes
/// being the body (criterion's throughput line is `bytes / t`).
fn scan_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("content/scan-throughput");
    let plain = Arc::new(Engine::from_config(&bundle_json(false)).unwrap());
    let policy = Arc::new(Engine::from_config(&bundle_json(true)).unwrap());
    let plain_plugin = plugin(bundle_json(false));
    let plain_vm = TestVm::new(&plain_plugin).expect("vm");
    let policy_plugin = plugin(bundle_json(true));
    let policy_vm = TestVm::new(&policy_plugin).expect("vm");
    for (name, dense) in [("clean", false), ("dense", true)] {
        let body = response_body(&tool_result(&corpus(256 * 1024, dense)), false);
        group.throughput(Throughput::Bytes(body.len() as u64));
        assert_eq!(wasm_exchange(&plain_vm, &body, false), body);
        let out = wasm_exchange(&policy_vm, &body, false);
        if dense {
            assert_redacted(&out, "wasm, dense");
        } else {
            // Clean prose: inspected, nothing found, forwarded as it came.
            assert_eq!(out, body, "clean answer changed");
        }
        assert_eq!(native_exchange(&policy, &body, false), out);
        for (engine, label) in [(&plain, "no-policy"), (&policy, "policy")] {
            group.bench_function(format!("native/{name}/{label}"), |b| {
                b.iter(|| black_box(native_exchange(engine, &body, false)))
            });
        }
        for (vm, label) in [(&plain_vm, "no-policy"), (&policy_vm, "policy")] {
            group.bench_function(format!("wasm/{name}/{label}"), |b| {
                b.iter(|| black_box(wasm_exchange(vm, &body, false)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, scan, screen_tools, pins, exchange, scan_throughput);
criterion_main!(benches);

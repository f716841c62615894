//! The typical exchange of issue 16 (target 1), shared by
//! `benches/typical.rs` and the load helper (`benches/load/helper.rs`):
//! the bundle, the token, the request and the answers, and the empty
//! proxy-wasm module that measures the host's floor.
//!
//! Typical: a tools/call with 1 KiB of arguments and a cached RS256 token,
//! on a server with 100 policy rules (one in ten with an argument schema,
//! one in ten with a CEL `when`, and one untargeted CEL forbid every call
//! evaluates), the built-in content policy on both directions (arguments
//! scanned, the answer screened and scanned), and a 4 KiB answer of clean
//! prose, as JSON or as one SSE event.

// Each includer uses its own part of this. Bench support: a broken
// fixture fails loudly, as the benches themselves do.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_core::pins::tool_pin;
use portcullis_core::test_util::{bundle_json, doc};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISS: &str = "https://idp.example.com";
pub const RES: &str = "https://mcp.example.com/mcp";
pub const RULES: usize = 100;
/// The tool called: its rule has a CEL `when`.
pub const TOOL: &str = "tool-57";
pub const LISTED_TOOLS: usize = 50;

/// Clean prose: no PII, no secrets, no injection, as most tool traffic is.
pub const PROSE: [&str; 6] = [
    "The quarterly planning meeting moved the release to the second week of the month so that the accessibility review can finish first.",
    "Action items were assigned to the design and platform teams, and the next check-in is planned for Tuesday afternoon in the large room.",
    "Rainfall over the northern valleys stayed below the seasonal average, while the coastal stations reported mild temperatures and light winds.",
    "The library catalogue lists three editions of the report; the second adds an appendix on methodology and corrects two tables in chapter four.",
    "Build times fell after the cache was moved closer to the runners, and the flaky integration suite now retries only the network-bound cases.",
    "Customers asked for clearer invoices, so the billing page groups charges by project and shows the totals before taxes at the top.",
];

pub fn prose(bytes: usize) -> String {
    let mut text = String::new();
    for sentence in PROSE.iter().cycle() {
        if text.len() + sentence.len() + 1 > bytes {
            break;
        }
        text.push_str(sentence);
        text.push(' ');
    }
    text
}

pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/filters/core/tests/data/identity/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Unix seconds: the wasm filter reads the host clock, so the token is
/// minted against the real time for both sides.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RS256 access token for `RES` and `TOOL`, valid for an hour, signed
/// with the test-only fixture key `rsa-1`.
pub fn token() -> String {
    let now = now();
    let claims = json!({
        "iss": ISS, "sub": "alice@example.com", "aud": RES,
        "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
        "jti": "typical-1", "azp": "claude-desktop", "tid": "acme",
        "scope": format!("mcp tools:{TOOL}"), "groups": ["eng"], "roles": ["dev"],
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_rsa_pem(fixture("rsa-1.pem").as_bytes()).unwrap();
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    )
}

/// A tool definition of about 1 KiB, as a server lists it.
pub fn listed_tool(i: usize) -> Value {
    json!({
        "name": format!("tool-{i}"),
        "title": format!("Tool {i}"),
        "description": prose(600),
        "inputSchema": {"type": "object", "properties": {
            "query": {"type": "string", "description": "What to look for.", "maxLength": 4096},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "cursor": {"type": "string"}},
            "required": ["query"]},
        "annotations": {"readOnlyHint": true, "openWorldHint": false},
    })
}

/// The typical bundle: one identity provider, one server with 100 tools
/// (the first `LISTED_TOOLS` pinned), 100 rules, the built-in content
/// policy (no ContentPolicy document, no `contentPolicy: none`).
pub fn typical_bundle() -> Vec<u8> {
    let mut jwks: Value = serde_json::from_str(&fixture("jwks.public.json")).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| !k["kid"].as_str().unwrap().contains("attacker"));
    let tools: Vec<Value> = (0..RULES)
        .map(|i| {
            if i < LISTED_TOOLS {
                json!({"name": format!("tool-{i}"), "pin": tool_pin(&listed_tool(i)).unwrap()})
            } else {
                json!({"name": format!("tool-{i}")})
            }
        })
        .collect();
    let mut rules: Vec<Value> = (0..RULES - 1)
        .map(|i| {
            let mut r = json!({"id": format!("r{i}"), "effect": "permit", "tools": [format!("tool-{i}")]});
            if i % 10 == 3 {
                r["arguments"] = json!({"type": "object", "properties": {"query": {"type": "string", "maxLength": 4096}}});
            }
            if i % 10 == 7 {
                r["when"] = json!("size(args.query) < 4096 && subject.tenant == 'acme'");
            }
            r
        })
        .collect();
    rules.push(json!({"id": "blocked", "effect": "forbid", "when": "'x-block' in headers"}));
    bundle_json(vec![
        doc(
            "IdentityProvider",
            "corp-idp",
            json!({"issuer": ISS, "jwks": jwks, "algorithms": ["RS256"]}),
        ),
        doc(
            "McpServer",
            "docs",
            json!({
                "match": {"pathPrefix": "/mcp"},
                "tools": tools,
                "identity": {"resource": RES, "providers": ["corp-idp"],
                             "scopes": {"required": ["mcp"], "toolDefault": ["tools:{tool}"]}},
            }),
        ),
        doc("Policy", "typical", json!({"rules": rules})),
        doc("Settings", "default", json!({"tokenCacheEntries": 1024})),
    ])
}

/// A tools/call of `TOOL` with 1 KiB of arguments.
pub fn call_body() -> Vec<u8> {
    call_body_for(TOOL)
}

/// A tools/call of `tool` with 1 KiB of arguments.
pub fn call_body_for(tool: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": tool, "arguments": {"query": prose(1000), "limit": 10}}})
    .to_string()
    .into_bytes()
}

pub fn list_body() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}"#.to_vec()
}

/// The answer as the server sends it: JSON, or one SSE `message` event.
pub fn framed(result: Value, sse: bool) -> Vec<u8> {
    let msg = json!({"jsonrpc": "2.0", "id": 7, "result": result}).to_string();
    if sse {
        format!("event: message\ndata: {msg}\n\n").into_bytes()
    } else {
        msg.into_bytes()
    }
}

pub fn call_answer(sse: bool) -> Vec<u8> {
    framed(
        json!({"content": [{"type": "text", "text": prose(4096)}], "isError": false}),
        sse,
    )
}

pub fn list_answer() -> Vec<u8> {
    framed(
        json!({"tools": (0..LISTED_TOOLS).map(listed_tool).collect::<Vec<_>>()}),
        false,
    )
}

/// The host's floor: a proxy-wasm module whose every stream callback
/// returns Continue without a hostcall.
pub const EMPTY_MODULE: &str = r#"(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

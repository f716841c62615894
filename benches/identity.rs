//! Cost of bearer-token verification (issue 3), per JOSE algorithm.
//!
//! `native/*`: `ProviderSet::authenticate` (size check, cache probe, strict
//! parse, signature, claim mapping, time and audience checks) called
//! directly, cold (a zero-capacity `TokenCache`, so nothing is ever cached:
//! what `tokenCacheEntries: 0` does) and cached (the same token, warm
//! cache). Tokens are minted by the independent `jsonwebtoken` crate with
//! the test-only fixture keys of `filters/core/tests/data/identity/`
//! (2048-bit RSA, P-256, P-384, Ed25519; RSA keygen per run would dominate
//! the bench start).
//!
//! `exchange/*`: a whole tools/call (request headers with
//! `Authorization: Bearer`, body, response headers, body, audit) through the
//! engine natively and through the wasm filter in host-shim, with and
//! without identity on the server, so the identity cost is the difference.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{Criterion, criterion_group, criterion_main};
use host_shim::{Dir, HeaderMap, Output, Plugin, PluginConfig, TestVm};
use jsonwebtoken::{Algorithm as A, EncodingKey, Header};
use portcullis_core::engine::{RequestBodyAction, RequestHead, RequestHeadersAction};
use portcullis_core::identity::provider::{self, ProviderSet};
use portcullis_core::identity::{TokenCache, b64};
use portcullis_core::test_util::{MemoryEnv, yaml_bundle_json};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

const ISS: &str = "https://idp.example.com";
const RES: &str = "https://mcp.example.com/mcp";
/// Test-only, like the fixture keys: 64 bytes, enough for HS512.
const HS_SECRET: &[u8] = b"test-only-hmac-secret-0123456789-0123456789-0123456789-abcdefghij";

const ALGS: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512",
];

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/filters/core/tests/data/identity/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Unix seconds. The wasm filter reads the host clock, so tokens are
/// minted against the real time for both sides.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The fixture JWKS without the attackers' keys, plus the HMAC secret.
fn jwks() -> Value {
    let mut all: Value = serde_json::from_str(&fixture("jwks.public.json")).unwrap();
    let keys = all["keys"].as_array_mut().unwrap();
    keys.retain(|k| !k["kid"].as_str().unwrap().contains("attacker"));
    keys.push(json!({"kty": "oct", "kid": "hs-1", "k": b64::encode(HS_SECRET)}));
    all
}

fn provider_spec() -> Value {
    json!({"issuer": ISS, "jwks": jwks(), "algorithms": ALGS})
}

fn kid(alg: A) -> &'static str {
    match alg {
        A::HS256 | A::HS384 | A::HS512 => "hs-1",
        A::ES256 => "ec-p256",
        A::ES384 => "ec-p384",
        A::EdDSA => "ed25519",
        A::RS384 => "rsa-2",
        _ => "rsa-1",
    }
}

fn signing_key(alg: A) -> EncodingKey {
    let pem = || fixture(&format!("{}.pem", kid(alg)));
    match alg {
        A::HS256 | A::HS384 | A::HS512 => EncodingKey::from_secret(HS_SECRET).unwrap(),
        A::ES256 | A::ES384 => EncodingKey::from_ec_pem(pem().as_bytes()).unwrap(),
        A::EdDSA => EncodingKey::from_ed_pem(pem().as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem().as_bytes()).unwrap(),
    }
}

/// A realistic access token for `RES`, valid for an hour.
fn token(alg: A) -> String {
    let now = now();
    let claims = json!({
        "iss": ISS,
        "sub": "alice@example.com",
        "aud": RES,
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        "jti": "bench-token-1",
        "azp": "claude-desktop",
        "tid": "acme",
        "scope": "mcp tools:get-weather",
        "groups": ["eng"],
        "roles": ["dev"],
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid(alg).to_string());
    jsonwebtoken::encode(&header, &claims, &signing_key(alg)).unwrap()
}

fn native(c: &mut Criterion) {
    let p = provider::compile_value("corp-idp", &provider_spec()).unwrap();
    let providers = ProviderSet::new(vec![p]).unwrap();
    let mut group = c.benchmark_group("identity/native");
    for name in ALGS {
        let alg: A = name.parse().unwrap();
        let token = token(alg);
        let t = now();
        // Capacity 0: every call verifies (and allocates nothing for the
        // cache), which is what `tokenCacheEntries: 0` gives the filter.
        let mut cold = TokenCache::new(0);
        let id = providers
            .authenticate(&token, RES, &[], t, &mut cold)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(id.subject, "alice@example.com");
        group.bench_function(format!("cold/{name}"), |b| {
            b.iter(|| {
                black_box(
                    providers
                        .authenticate(black_box(&token), RES, &[], t, &mut cold)
                        .unwrap(),
                )
            })
        });
        let mut warm = TokenCache::default();
        providers
            .authenticate(&token, RES, &[], t, &mut warm)
            .unwrap();
        group.bench_function(format!("cached/{name}"), |b| {
            b.iter(|| {
                black_box(
                    providers
                        .authenticate(black_box(&token), RES, &[], t, &mut warm)
                        .unwrap(),
                )
            })
        });
        assert_eq!(warm.stats().misses, 1, "{name}: the cached runs must hit");
    }
    group.finish();
}

/// The algorithms of the exchange benches: the common RSA, EC, EdDSA and
/// HMAC choices.
const EXCHANGE_ALGS: [&str; 4] = ["RS256", "ES256", "EdDSA", "HS256"];

/// One server at `/mcp` allowing `get-weather`; with `identity`, it needs a
/// token from `corp-idp` for `RES` with scope `mcp` and `tools:get-weather`
/// (the client's `Authorization` is stripped before forwarding, the default
/// without an upstream key). `cache`: `Settings.tokenCacheEntries`.
fn bundle_json(identity: bool, cache: usize) -> Vec<u8> {
    let identity_spec = if identity {
        format!(
            "  identity:\n    resource: {RES}\n    providers: [corp-idp]\n    \
             scopes: {{required: [mcp], toolDefault: [\"tools:{{tool}}\"]}}\n"
        )
    } else {
        String::new()
    };
    let yaml = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: IdentityProvider\nmetadata: {{name: corp-idp}}\n\
         spec: {spec}\n---\n\
         apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {{name: weather}}\nspec:\n  \
         match: {{pathPrefix: /mcp}}\n  tools: [{{name: get-weather}}]\n{identity_spec}---\n\
         apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {{name: default}}\n\
         spec: {{tokenCacheEntries: {cache}}}\n",
        spec = provider_spec(),
    );
    yaml_bundle_json(&yaml)
}

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-weather","arguments":{"city":"Paris","units":"metric"}}}"#;
const RESPONSE: &[u8] = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Weather in Paris: snowy, 14C"}],"isError":false}}"#;

/// One whole exchange through the engine; panics unless the call was
/// forwarded and answered.
fn native_exchange(engine: &Arc<Engine>, env: &mut MemoryEnv, authorization: &str) {
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
    let action = ex.on_request_body(env, CALL, true);
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
    black_box(ex.take_audit());
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

/// One whole exchange through the wasm filter. Returns whether the request
/// went upstream without the client's `Authorization` (identity on) or
/// with it (identity off), and the response came back as sent.
fn wasm_exchange(vm: &TestVm, authorization: &str, identity: bool) -> bool {
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
    s.decode_data(CALL.to_vec(), true);
    let upstream = s.take_outputs();
    s.encode_headers(
        HeaderMap::from_pairs(&[(":status", "200"), ("content-type", "application/json")]),
        false,
    );
    s.encode_data(RESPONSE.to_vec(), true);
    let downstream = s.take_outputs();
    s.finish();
    let forwarded = upstream.iter().any(|o| {
        matches!(o, Output::Headers(Dir::Request, h, _)
            if h.get("authorization").is_some() != identity)
    });
    let answered = downstream
        .iter()
        .any(|o| matches!(o, Output::Data(Dir::Response, d, _) if d.as_slice() == RESPONSE));
    forwarded && answered
}

fn exchange(c: &mut Criterion) {
    let now_nanos = now() * 1_000_000_000;
    let tokens: Vec<(&str, String)> = EXCHANGE_ALGS
        .iter()
        .map(|name| (*name, format!("Bearer {}", token(name.parse().unwrap()))))
        .collect();
    let mut group = c.benchmark_group("identity/exchange");

    // Native: the engine, as the filter drives it.
    // Time is the wall clock at bench start, fixed, so a cached entry never
    // expires mid-run and tokens minted against `now()` are valid.
    let mut env = MemoryEnv::at_nanos(now_nanos)
        .without_shared_data()
        .random_fill(0x5a);
    let plain = Arc::new(Engine::from_config(&bundle_json(false, 1024)).unwrap());
    let (_, any_token) = &tokens[0];
    group.bench_function("native/no-identity", |b| {
        b.iter(|| native_exchange(&plain, &mut env, any_token))
    });
    let cold = Arc::new(Engine::from_config(&bundle_json(true, 0)).unwrap());
    let cached = Arc::new(Engine::from_config(&bundle_json(true, 1024)).unwrap());
    for (name, token) in &tokens {
        group.bench_function(format!("native/cold/{name}"), |b| {
            b.iter(|| native_exchange(&cold, &mut env, token))
        });
        native_exchange(&cached, &mut env, token);
        let before = cached.token_cache_stats();
        group.bench_function(format!("native/cached/{name}"), |b| {
            b.iter(|| native_exchange(&cached, &mut env, token))
        });
        assert_eq!(
            cached.token_cache_stats().misses,
            before.misses,
            "{name}: cached runs must hit"
        );
    }
    assert_eq!(cold.token_cache_stats().hits, 0);

    // Wasm: the filter in host-shim, through the callbacks Envoy makes.
    let plain = plugin(bundle_json(false, 1024));
    let plain_vm = TestVm::new(&plain).expect("vm");
    assert!(wasm_exchange(&plain_vm, any_token, false));
    group.bench_function("wasm/no-identity", |b| {
        b.iter(|| black_box(wasm_exchange(&plain_vm, any_token, false)))
    });
    let cold = plugin(bundle_json(true, 0));
    let cold_vm = TestVm::new(&cold).expect("vm");
    let cached = plugin(bundle_json(true, 1024));
    let cached_vm = TestVm::new(&cached).expect("vm");
    for (name, token) in &tokens {
        assert!(wasm_exchange(&cold_vm, token, true), "{name}: wasm cold");
        group.bench_function(format!("wasm/cold/{name}"), |b| {
            b.iter(|| black_box(wasm_exchange(&cold_vm, token, true)))
        });
        assert!(
            wasm_exchange(&cached_vm, token, true),
            "{name}: wasm cached"
        );
        group.bench_function(format!("wasm/cached/{name}"), |b| {
            b.iter(|| black_box(wasm_exchange(&cached_vm, token, true)))
        });
    }
    group.finish();
}

criterion_group!(benches, native, exchange);
criterion_main!(benches);

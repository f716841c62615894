//! End to end for identity (issue 3): the official Python MCP SDK client
//! discovers how to authenticate from Portcullis's 401 (RFC 9728), gets a
//! token from a stand-in IdP (PyJWT, test-only keys in
//! `tests/fixtures/identity`), and runs a session through `portcullis
//! serve` to an SDK server that accepts only tokens Portcullis minted for it
//! (EdDSA, verified with PyJWT against the proxy's public key).
//!
//! Checked: the challenge and the metadata document; that the upstream gets
//! a fresh, short-lived token per request (never the client's) naming the
//! user, the agent and the call's scope; 403 with `insufficient_scope` for a
//! tool the token lacks; that wrong-audience, expired, forged, unsigned and
//! query-string tokens are refused with their status and challenge and never
//! reach the upstream; and that audit records carry who and why, but no
//! token. Expected statuses, challenges and codes come from
//! `portcullis_core::identity::IdentityError`, the source of truth.
//!
//! The resource URI (the tokens' audience) has to name the proxy's port, so
//! each test picks a free port first and writes the bundle with it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use portcullis_core::identity::IdentityError;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use support::*;

const ISSUER: &str = "https://idp.test.example";
const MINT_ISSUER: &str = "https://portcullis.test";
const RS_KID: &str = "test-rs-1";
const ES_KID: &str = "test-es-1";
const MINT_KID: &str = "portcullis-test-1";
const SUBJECT: &str = "alice@example.test";
const AGENT: &str = "claude-agent-7";
const TENANT: &str = "acme";

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/identity").join(name)
}

/// An SDK server behind `portcullis serve`, with the identity bundle.
struct Rig {
    // Dropped in field order: the proxy goes before the upstream.
    _proxy: Proc,
    _server: Proc,
    base: String,
    record: PathBuf,
    audit: PathBuf,
}

impl Rig {
    fn start(name: &str) -> Rig {
        Rig::start_with(name, false)
    }

    /// With `Settings.spec.requestHeaders: hold` (and Envoy's
    /// `allow_on_headers_stop_iteration`), whatever the run's mode: a token
    /// minted for exactly the body's calls, for clients older than
    /// 2026-07-28 that do not announce their calls in `Mcp-Method`.
    fn start_held(name: &str) -> Rig {
        Rig::start_with(name, true)
    }

    fn start_with(name: &str, held: bool) -> Rig {
        let dir = temp_dir(&format!("identity-{name}"));
        let record = dir.join("upstream.jsonl");
        let audit = dir.join("audit.jsonl");
        let template = std::fs::read_to_string(fixture("bundle.yaml.tmpl")).unwrap();
        let jwk = fixture("portcullis-mint.pub.jwk.json");
        for _ in 0..3 {
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            let bundle = dir.join("bundle");
            std::fs::create_dir_all(&bundle).unwrap();
            std::fs::write(
                bundle.join("identity.yaml"),
                template.replace("{{PORT}}", &port.to_string()),
            )
            .unwrap();
            let resource = format!("{base}/mcp");
            let (server, upstream_port) = mcp_server(
                &[
                    "--verify-upstream-jwk",
                    jwk.to_str().unwrap(),
                    "--expect-aud",
                    &resource,
                ],
                &record,
            );
            let upstream = format!("http://127.0.0.1:{upstream_port}");
            let bundle = if held { hold_bundle(&bundle) } else { bundle };
            let mut args = vec![
                "--bundle",
                bundle.to_str().unwrap(),
                "--upstream",
                &upstream,
                "--audit-log",
                audit.to_str().unwrap(),
            ];
            if held {
                args.push("--allow-on-headers-stop-iteration");
            }
            let Some((proxy, url)) = try_portcullis_serve_at(&format!("127.0.0.1:{port}"), &args)
            else {
                continue; // the port was taken in between: try another
            };
            assert_eq!(url, base);
            return Rig {
                _proxy: proxy,
                _server: server,
                base,
                record,
                audit,
            };
        }
        panic!("portcullis serve did not start on any of three free ports");
    }

    fn resource(&self) -> String {
        format!("{}/mcp", self.base)
    }

    fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.base)
    }

    fn client(&self, revision: &str, scope: &str, script: &Value) -> Vec<Value> {
        let key = fixture("idp-rs256.pem");
        mcp_client(
            &self.resource(),
            revision,
            script,
            &[
                "--auth-flow",
                "--idp-key",
                key.to_str().unwrap(),
                "--idp-kid",
                RS_KID,
                "--idp-alg",
                "RS256",
                "--idp-issuer",
                ISSUER,
                "--subject",
                SUBJECT,
                "--agent",
                AGENT,
                "--tenant",
                TENANT,
                "--scope",
                scope,
            ],
        )
    }

    /// What the upstream received, once `n` requests have been recorded.
    fn upstream_records(&self, at_least: usize) -> Vec<Value> {
        let mut record = Vec::new();
        assert!(
            eventually(|| {
                record = jsonl(&self.record);
                record.len() >= at_least
            }),
            "the upstream recorded {} requests, expected at least {at_least}: {record:?}",
            record.len()
        );
        record
    }

    /// The audit records, once `ready` holds for them.
    fn audit_records(&self, ready: impl Fn(&[Value]) -> bool) -> (Vec<Value>, String) {
        let mut records = Vec::new();
        let ok = eventually(|| {
            records = jsonl(&self.audit);
            ready(&records)
        });
        assert!(ok, "audit records never complete: {records:#?}");
        (records, std::fs::read_to_string(&self.audit).unwrap())
    }
}

/// A token from the stand-in IdP (`tests/e2e/mint_token.py`): the line it
/// prints, `{token, sha256, jti, claims}`.
fn mint(args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/e2e/mint_token.py"))
        .args(["--issuer", ISSUER, "--subject", SUBJECT, "--agent", AGENT])
        .args(["--tenant", TENANT])
        .args(args)
        .output()
        .expect("run mint_token.py");
    assert!(
        out.status.success(),
        "mint_token.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn token(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

fn step<'a>(lines: &'a [Value], op: &str, nth: usize) -> &'a Value {
    lines
        .iter()
        .filter(|l| l["op"] == op)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {op} #{nth} in {lines:#?}"))
}

/// The JSON-RPC messages in one recorded POST body: (method, tool name).
fn messages(record: &Value) -> Vec<(String, Option<String>)> {
    let Ok(body) = serde_json::from_str::<Value>(record["body"].as_str().unwrap_or("")) else {
        return Vec::new();
    };
    let items = match body {
        Value::Array(a) => a,
        other => vec![other],
    };
    items
        .iter()
        .filter_map(|m| {
            let method = m["method"].as_str()?.to_owned();
            let tool = (method == "tools/call")
                .then(|| m["params"]["name"].as_str().map(str::to_owned))
                .flatten();
            Some((method, tool))
        })
        .collect()
}

/// Every upstream request carried a valid token Portcullis minted for it:
/// for this user, agent and tenant, living 60 s, with a unique `jti`, not
/// the client's token, scoped to exactly what the request needed. Returns
/// the minted tokens.
fn assert_minted(record: &[Value], client_sha256: &str, resource: &str) -> Vec<String> {
    let mut jtis = HashSet::new();
    let mut tokens = Vec::new();
    for r in record {
        if r["method"] == "POST"
            && r["body"].as_str().unwrap_or("").is_empty()
            && !holds_request_headers()
        {
            // A call refused under `requestHeaders: forward`: its headers
            // went on before its body was decided, without a token (the
            // call was outside the client's scopes), and its body never.
            assert!(r["headers"].get("authorization").is_none(), "{r:#}");
            continue;
        }
        let auth = &r["auth"];
        assert_eq!(auth["valid"], true, "upstream got a bad token: {r:#}");
        assert_ne!(r["status"], 401, "{r:#}");
        assert_ne!(
            auth["sha256"], client_sha256,
            "the client's token reached the upstream: {r:#}"
        );
        let c = &auth["claims"];
        assert_eq!(c["iss"], MINT_ISSUER, "{r:#}");
        assert_eq!(c["aud"], resource, "{r:#}");
        assert_eq!(c["sub"], SUBJECT, "{r:#}");
        assert_eq!(c["act"]["sub"], AGENT, "{r:#}");
        assert_eq!(c["tenant"], TENANT, "{r:#}");
        assert_eq!(
            c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
            60,
            "{r:#}"
        );
        assert_eq!(auth["header"]["alg"], "EdDSA", "{r:#}");
        assert_eq!(auth["header"]["kid"], MINT_KID, "{r:#}");
        assert!(
            jtis.insert(c["jti"].as_str().unwrap().to_owned()),
            "jti reused: {r:#}"
        );
        // Scope: `mcp` for every request, plus `tools:<tool>` for a call.
        let mut expected = vec!["mcp".to_owned()];
        for (_, tool) in messages(r) {
            if let Some(t) = tool {
                expected.push(format!("tools:{t}"));
            }
        }
        assert_eq!(c["scope"], expected.join(" "), "{r:#}");
        let h = &r["identity_headers"];
        assert_eq!(h["x-mcp-subject"], SUBJECT, "{r:#}");
        assert_eq!(h["x-mcp-agent"], AGENT, "{r:#}");
        assert_eq!(h["x-mcp-tenant"], TENANT, "{r:#}");
        let header = r["headers"]["authorization"].as_str().unwrap();
        tokens.push(header.strip_prefix("Bearer ").unwrap().to_owned());
    }
    tokens
}

/// No token, and nothing shaped like one (a JWS starts with `eyJ`, base64url
/// of `{"`), anywhere in the audit log.
fn assert_no_tokens(audit_text: &str, tokens: &[&str]) {
    assert!(!audit_text.is_empty());
    for t in tokens {
        assert!(!audit_text.contains(t), "a raw token is in the audit log");
        // Its signature alone would be a leak too.
        let sig = t.rsplit('.').next().unwrap();
        if !sig.is_empty() {
            assert!(
                !audit_text.contains(sig),
                "a token signature is in the audit log"
            );
        }
    }
    assert!(
        !audit_text.contains("eyJ"),
        "something token-shaped is in the audit log:\n{audit_text}"
    );
}

/// The JSON-RPC error body of a refusal.
fn assert_jsonrpc_error(resp: &Response, what: &str) {
    assert!(
        resp.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{what}: {resp:?}"
    );
    let body = resp.json();
    assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
    assert!(body["error"]["code"].is_i64(), "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
}

const JSON_AND_SSE: &str = "application/json, text/event-stream";

fn initialize_body(id: u32) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string()
    .into_bytes()
}

#[test]
fn discovery_then_authorised_session_with_minted_upstream_tokens() {
    // A 2025-11-25 client announces no call in its headers: a token for
    // exactly each call needs the headers held.
    let rig = Rig::start_held("session");
    let resource = rig.resource();
    let metadata_url = rig.metadata_url();
    let script = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"text": "hello, identified"}},
        {"op": "call_tool", "name": "add", "arguments": {"a": 2, "b": 40}}
    ]);
    let lines = rig.client("2025-11-25", "mcp tools:echo tools:add", &script);

    // 1. No token: 401 pointing at the metadata, with a JSON-RPC body.
    let challenge = step(&lines, "auth_challenge", 0);
    assert_eq!(challenge["ok"], true, "{challenge:#}");
    assert_eq!(challenge["status"], IdentityError::MissingToken.status());
    assert_eq!(
        challenge["www_authenticate"],
        IdentityError::MissingToken.www_authenticate(Some(&metadata_url)),
    );
    assert_eq!(challenge["resource_metadata"], metadata_url.as_str());
    assert_eq!(challenge["body"]["jsonrpc"], "2.0", "{challenge:#}");
    assert!(challenge["body"]["error"]["code"].is_i64(), "{challenge:#}");

    // 2. The RFC 9728 document, without a token.
    let meta = step(&lines, "auth_metadata", 0);
    assert_eq!(meta["ok"], true, "{meta:#}");
    let doc = &meta["document"];
    assert_eq!(doc["resource"], resource.as_str());
    assert_eq!(doc["authorization_servers"], json!([ISSUER]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    let supported: Vec<&str> = doc["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["mcp", "tools:echo", "tools:add", "tools:countdown"] {
        assert!(supported.contains(&s), "{s} missing from {supported:?}");
    }
    // The bare form answers the same (one server behind this authority).
    let bare = http(
        &rig.base,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        b"",
    );
    assert_eq!(bare.status, 200, "{bare:?}");
    assert_eq!(&bare.json(), doc);
    let again = http(
        &rig.base,
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
        b"",
    );
    assert_eq!(again.status, 200);
    assert!(
        again
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(&again.json(), doc);

    // 3. The token, then the session: everything works as without identity.
    let issued = step(&lines, "auth_token", 0);
    let client_sha256 = issued["sha256"].as_str().unwrap();
    let client_jti = issued["jti"].as_str().unwrap();
    assert_eq!(issued["claims"]["aud"], resource.as_str());
    assert_eq!(step(&lines, "connect", 0)["ok"], true, "{lines:#?}");
    let tools = step(&lines, "list_tools", 0);
    assert_eq!(tools["ok"], true, "{tools:#}");
    let echo = step(&lines, "call_tool", 0);
    assert_eq!(echo["ok"], true, "{echo:#}");
    assert_eq!(
        echo["result"]["structuredContent"]["result"],
        "hello, identified"
    );
    let add = step(&lines, "call_tool", 1);
    assert_eq!(add["result"]["structuredContent"]["result"], 42, "{add:#}");

    // The upstream: initialize, initialized, GET stream, tools/list, two
    // calls, DELETE; each with its own minted token.
    let record = rig.upstream_records(7);
    let methods: Vec<&str> = record
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(methods.contains(&"GET"), "{methods:?}");
    assert!(methods.contains(&"DELETE"), "{methods:?}");
    assert!(
        record.iter().all(|r| r["path"] == "/mcp"),
        "the metadata requests or the 401 probe reached the upstream: {record:#?}"
    );
    let calls: Vec<Option<String>> = record.iter().flat_map(messages).map(|m| m.1).collect();
    assert!(calls.contains(&Some("echo".into())), "{calls:?}");
    assert!(calls.contains(&Some("add".into())), "{calls:?}");
    let minted = assert_minted(&record, client_sha256, &resource);

    // Audit: who and how on every forwarded message; the probe's refusal.
    let (records, text) = rig.audit_records(|rs| {
        rs.iter()
            .any(|r| r["gen_ai.tool.name"] == "add" && r["outcome"] == "result")
            && rs.iter().any(|r| r["auth_error"].is_string())
    });
    let probe = records
        .iter()
        .find(|r| r["auth_error"].is_string())
        .unwrap();
    assert_eq!(probe["auth_error"], IdentityError::MissingToken.code());
    assert_eq!(probe["decision"], "deny", "{probe:#}");
    let allowed: Vec<&Value> = records
        .iter()
        .filter(|r| r["direction"] == "client" && r["decision"] == "allow")
        .collect();
    assert!(allowed.len() >= 5, "{records:#?}");
    for r in &allowed {
        assert_eq!(r["subject"], SUBJECT, "{r:#}");
        assert_eq!(r["agent"], AGENT, "{r:#}");
        assert_eq!(r["tenant"], TENANT, "{r:#}");
        assert_eq!(r["token_jti"], client_jti, "{r:#}");
        assert_eq!(r["upstream_token"], "minted", "{r:#}");
        assert!(r.get("auth_error").is_none(), "{r:#}");
    }
    let minted: Vec<&str> = minted.iter().map(String::as_str).collect();
    assert_no_tokens(&text, &minted);
}

#[test]
fn a_tool_outside_the_token_scope_is_403_and_never_forwarded() {
    let rig = Rig::start("scope");
    let script = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"text": "allowed"}},
        {"op": "call_tool", "name": "add", "arguments": {"a": 1, "b": 2}}
    ]);
    // Stateless revision: every call is its own POST.
    let lines = rig.client("2026-07-28", "mcp tools:echo", &script);
    assert_eq!(step(&lines, "connect", 0)["ok"], true, "{lines:#?}");
    let echo = step(&lines, "call_tool", 0);
    assert_eq!(echo["ok"], true, "{echo:#}");
    assert_eq!(echo["result"]["structuredContent"]["result"], "allowed");

    let add = step(&lines, "call_tool", 1);
    assert_eq!(add["ok"], false, "{add:#}");
    assert!(add["error"]["code"].is_i64(), "a JSON-RPC error: {add:#}");
    let http_entry = &add["http"][0];
    let refusal = IdentityError::InsufficientScope {
        required: vec!["mcp".into(), "tools:add".into()],
    };
    assert_eq!(http_entry["status"], refusal.status(), "{add:#}");
    assert_eq!(
        http_entry["www_authenticate"],
        refusal.www_authenticate(Some(&rig.metadata_url())),
        "{add:#}"
    );

    let client_sha256 = step(&lines, "auth_token", 0)["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = rig.upstream_records(3);
    let calls: Vec<Option<String>> = record.iter().flat_map(messages).map(|m| m.1).collect();
    assert!(calls.contains(&Some("echo".into())), "{calls:?}");
    assert!(
        !calls.contains(&Some("add".into())),
        "the refused call reached the upstream: {calls:?}"
    );
    let minted = assert_minted(&record, &client_sha256, &rig.resource());

    let (records, text) = rig.audit_records(|rs| {
        rs.iter().any(|r| {
            r["auth_error"] == IdentityError::InsufficientScope { required: vec![] }.code()
        })
    });
    let denied = records
        .iter()
        .find(|r| r["auth_error"] == refusal.code())
        .unwrap();
    assert_eq!(denied["decision"], "deny", "{denied:#}");
    assert_eq!(denied["gen_ai.tool.name"], "add", "{denied:#}");
    assert_eq!(denied["subject"], SUBJECT, "{denied:#}");
    assert_eq!(denied["agent"], AGENT, "{denied:#}");
    assert_eq!(denied["outcome"], "denied", "{denied:#}");
    let minted: Vec<&str> = minted.iter().map(String::as_str).collect();
    assert_no_tokens(&text, &minted);
}

#[test]
fn bad_tokens_are_refused_with_their_challenge_and_never_reach_upstream() {
    let rig = Rig::start("refused");
    let resource = rig.resource();
    let metadata_url = rig.metadata_url();
    let rs = fixture("idp-rs256.pem");
    let rs = rs.to_str().unwrap();
    let attacker = fixture("attacker-rs256.pem");
    let attacker = attacker.to_str().unwrap();
    let scope = "mcp tools:echo";

    let good = mint(&[
        "--key", rs, "--kid", RS_KID, "--aud", &resource, "--scope", scope,
    ]);
    let other_aud = format!("{}/other", rig.base);
    let wrong_audience = mint(&[
        "--key", rs, "--kid", RS_KID, "--aud", &other_aud, "--scope", scope,
    ]);
    let expired = mint(&[
        "--key",
        rs,
        "--kid",
        RS_KID,
        "--aud",
        &resource,
        "--scope",
        scope,
        "--expired",
    ]);
    let forged = mint(&[
        "--key", attacker, "--kid", RS_KID, "--aud", &resource, "--scope", scope,
    ]);
    let unknown_kid = mint(&[
        "--key",
        attacker,
        "--kid",
        "not-in-the-jwks",
        "--aud",
        &resource,
        "--scope",
        scope,
    ]);
    let unsigned = mint(&[
        "--key",
        rs,
        "--kid",
        RS_KID,
        "--aud",
        &resource,
        "--scope",
        scope,
        "--alg-none",
    ]);
    let es256 = fixture("idp-es256.pem");
    let es256_token = mint(&[
        "--key",
        es256.to_str().unwrap(),
        "--kid",
        ES_KID,
        "--alg",
        "ES256",
        "--aud",
        &resource,
        "--scope",
        scope,
    ]);

    let bearer = |t: &Value| format!("Bearer {}", token(t));
    let cases: Vec<(&str, &str, String, Option<String>, IdentityError)> = vec![
        (
            "POST without a token",
            "POST",
            "/mcp".into(),
            None,
            IdentityError::MissingToken,
        ),
        (
            "GET without a token",
            "GET",
            "/mcp".into(),
            None,
            IdentityError::MissingToken,
        ),
        (
            "DELETE without a token",
            "DELETE",
            "/mcp".into(),
            None,
            IdentityError::MissingToken,
        ),
        (
            "Basic credentials",
            "POST",
            "/mcp".into(),
            Some("Basic YWxpY2U6c2VjcmV0".into()),
            IdentityError::MissingToken,
        ),
        (
            "not a JWT",
            "POST",
            "/mcp".into(),
            Some("Bearer not-a-jwt".into()),
            IdentityError::Malformed,
        ),
        (
            "another audience",
            "POST",
            "/mcp".into(),
            Some(bearer(&wrong_audience)),
            IdentityError::WrongAudience,
        ),
        (
            "expired",
            "POST",
            "/mcp".into(),
            Some(bearer(&expired)),
            IdentityError::Expired,
        ),
        (
            "signed by a key not in the JWKS",
            "POST",
            "/mcp".into(),
            Some(bearer(&forged)),
            IdentityError::BadSignature,
        ),
        (
            "a kid not in the JWKS",
            "POST",
            "/mcp".into(),
            Some(bearer(&unknown_kid)),
            IdentityError::UnknownKid,
        ),
        (
            "alg none",
            "POST",
            "/mcp".into(),
            Some(bearer(&unsigned)),
            IdentityError::AlgNone,
        ),
        (
            "a good token in the query string too",
            "POST",
            format!("/mcp?access_token={}", token(&good)),
            Some(bearer(&good)),
            IdentityError::TokenInQuery,
        ),
        (
            "a good token in the query string only",
            "POST",
            format!("/mcp?access_token={}", token(&good)),
            None,
            IdentityError::TokenInQuery,
        ),
    ];
    for (what, method, path, authorization, expected) in &cases {
        let mut headers = vec![
            ("accept", JSON_AND_SSE),
            ("content-type", "application/json"),
        ];
        if let Some(a) = authorization {
            headers.push(("authorization", a.as_str()));
        }
        let body = if *method == "POST" {
            initialize_body(1)
        } else {
            Vec::new()
        };
        let resp = http(&rig.base, method, path, &headers, &body);
        assert_eq!(resp.status, expected.status(), "{what}: {resp:?}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some(expected.www_authenticate(Some(&metadata_url)).as_str()),
            "{what}: {resp:?}"
        );
        assert_jsonrpc_error(&resp, what);
        let text = String::from_utf8_lossy(&resp.body);
        assert!(
            !text.contains("eyJ"),
            "{what}: the answer quotes a token: {text}"
        );
    }

    // Positive control, last: a good ES256 token (the provider's second key
    // and algorithm) gets through, so the refusals above were about the
    // tokens. Anything refused earlier that had reached the upstream would
    // be recorded before this.
    let ok = http(
        &rig.base,
        "POST",
        "/mcp",
        &[
            ("accept", JSON_AND_SSE),
            ("content-type", "application/json"),
            ("authorization", &bearer(&es256_token)),
        ],
        &initialize_body(2),
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let record = rig.upstream_records(1);
    assert_eq!(
        record.len(),
        1,
        "refused requests reached the upstream: {record:#?}"
    );
    assert_eq!(messages(&record[0]), vec![("initialize".into(), None)]);
    let minted = assert_minted(&record, es256_token["sha256"].as_str().unwrap(), &resource);

    // Audit: every refusal is recorded with its code (the body was never
    // read, so one record per request, whatever its method), with no
    // identity for a token that did not verify, and no token anywhere.
    let codes: Vec<&str> = cases.iter().map(|c| c.4.code()).collect();
    let enough = |rs: &[Value]| {
        codes.iter().all(|code| {
            let want = codes.iter().filter(|c| *c == code).count();
            rs.iter().filter(|r| r["auth_error"] == *code).count() == want
        }) && rs
            .iter()
            .any(|r| r["token_jti"] == es256_token["jti"] && r["decision"] == "allow")
    };
    let (records, text) = rig.audit_records(enough);
    for r in records.iter().filter(|r| r["auth_error"].is_string()) {
        assert_eq!(r["decision"], "deny", "{r:#}");
        assert!(
            r.get("subject").is_none(),
            "unverified identity recorded: {r:#}"
        );
        assert!(
            r.get("token_jti").is_none(),
            "unverified jti recorded: {r:#}"
        );
    }
    let allowed = records
        .iter()
        .find(|r| r["token_jti"] == es256_token["jti"])
        .unwrap();
    assert_eq!(allowed["subject"], SUBJECT, "{allowed:#}");
    assert_eq!(allowed["agent"], AGENT, "{allowed:#}");
    assert_eq!(allowed["upstream_token"], "minted", "{allowed:#}");
    let mut tokens: Vec<&str> = [
        &good,
        &wrong_audience,
        &expired,
        &forged,
        &unknown_kid,
        &unsigned,
        &es256_token,
    ]
    .iter()
    .map(|t| token(t))
    .collect();
    tokens.extend(minted.iter().map(String::as_str));
    assert_no_tokens(&text, &tokens);
}

/// `requestHeaders: forward` (the default) with a minted upstream token: a
/// 2025-11-25 client announces no call in its headers, so the token that
/// went with them is scoped for no tool, and its tools/call is refused with
/// a clear error (-32020, naming `Mcp-Method`/`Mcp-Name` and `hold`) rather
/// than forwarded under a token for another call. Connecting and listing
/// still work. With the headers held, the call passes.
#[test]
fn an_unannounced_call_cannot_get_a_minted_token_once_headers_left() {
    let rig = Rig::start("unannounced");
    let script = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"text": "old client"}}
    ]);
    let lines = rig.client("2025-11-25", "mcp tools:echo", &script);
    assert_eq!(step(&lines, "connect", 0)["ok"], true, "{lines:#?}");
    assert_eq!(step(&lines, "list_tools", 0)["ok"], true, "{lines:#?}");
    let echo = step(&lines, "call_tool", 0);
    if holds_request_headers() {
        assert_eq!(echo["ok"], true, "{echo:#}");
        return;
    }
    assert_eq!(echo["ok"], false, "{echo:#}");
    assert_eq!(echo["error"]["code"], -32020, "{echo:#}");
    let text = echo.to_string();
    assert!(
        text.contains("Mcp-Method") && text.contains("requestHeaders: hold"),
        "{echo:#}"
    );
    let record = rig.upstream_records(2);
    let calls: Vec<Option<String>> = record.iter().flat_map(messages).map(|m| m.1).collect();
    assert!(
        !calls.contains(&Some("echo".into())),
        "the refused call's body reached the upstream: {calls:?}"
    );
}

//! The Policy pillar through the engine, natively: rule semantics (forbid
//! overrides, order independence, default deny), every matcher kind, CEL
//! and schema errors, shadow mode, limits over a CAS store, approvals,
//! per-caller list filtering, registry lifecycle and shadow-MCP discovery.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_core::audit::{AuditRecord, Decision};
use portcullis_core::bundle::{Bundle, Document, assemble};
use portcullis_core::engine::{
    HeaderEdits, RequestBodyAction, RequestHead, RequestHeadersAction, ResponseBodyAction,
};
use portcullis_core::mcp::codes;
use portcullis_core::policy::approval;
use portcullis_core::test_util::{self, MemoryEnv, doc};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::sync::Arc;

const ISS: &str = "https://idp.example.com";
const RES: &str = "https://mcp.example.com/mcp";
/// 2027-01-15T10:30:00Z, a Friday.
const NOW: u64 = 1_800_009_000;
const SECRET: &[u8] = b"test-only-hmac-secret-0123456789-0123456789-0123456789-abcdefghij";

/// The host: a real compare-and-swap store, as proxy-wasm has, and a
/// client address.
fn env() -> MemoryEnv {
    MemoryEnv::at_secs(NOW).with_source_address("10.1.2.3:45678")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn provider() -> Document {
    doc(
        "IdentityProvider",
        "corp-idp",
        json!({
            "issuer": ISS,
            "algorithms": ["HS256"],
            "jwks": {"keys": [{"kty": "oct", "kid": "hs-1", "k": b64(SECRET)}]},
        }),
    )
}

/// An `McpServer` behind the identity provider, with resources and
/// prompts.
fn server(name: &str, prefix: &str, tools: &[&str]) -> Document {
    let mut d = test_util::server(name, prefix, tools);
    d.spec["resources"] = json!([{"uri": "file:///data/*"}]);
    d.spec["prompts"] = json!([{"name": "*"}]);
    d.spec["identity"] = json!({"resource": RES, "upstreamToken": {"mode": "strip"}});
    d
}

fn policy(name: &str, spec: Value) -> Document {
    doc("Policy", name, spec)
}

fn token(sub: &str, extra: Value) -> String {
    let mut claims = json!({"iss": ISS, "aud": RES, "sub": sub, "azp": "agent-7",
        "tenant": "acme", "iat": NOW - 10, "exp": NOW + 200_000});
    if let (Some(c), Value::Object(x)) = (claims.as_object_mut(), extra) {
        c.extend(x);
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs-1".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

fn call(tool: &str, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
        .to_string()
        .into_bytes()
}

struct Sent {
    ex: Exchange,
    /// The headers phase's edits (client `x-mcp-*` removals).
    head_edits: HeaderEdits,
    action: RequestBodyAction,
}

impl Sent {
    fn forwarded(&self) -> Option<&HeaderEdits> {
        match &self.action {
            RequestBodyAction::Forward(e) | RequestBodyAction::Rewrite(e, _) => Some(e),
            _ => None,
        }
    }

    fn reply(&self) -> (u16, Value, &[(String, String)]) {
        match &self.action {
            RequestBodyAction::Reply(r) => (
                r.status,
                serde_json::from_slice(&r.body).unwrap(),
                &r.headers,
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.forwarded()?
            .set
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Ends the stream (no answer) and returns the records.
    fn end(mut self, e: &mut MemoryEnv) -> Vec<AuditRecord> {
        self.ex.on_stream_end(e);
        self.ex.take_audit()
    }
}

fn send(
    engine: &Arc<Engine>,
    e: &mut MemoryEnv,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Sent {
    let mut ex = Exchange::new(engine.clone());
    let mut h: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let head = RequestHead {
        method: "POST".into(),
        path: path.into(),
        authority: "mcp.example.com".into(),
        headers: h,
    };
    let mut head_edits = HeaderEdits::default();
    let action = match ex.on_request_headers(e, head) {
        RequestHeadersAction::ReadBody(ed) => {
            head_edits = ed;
            ex.on_request_body(e, body, true)
        }
        RequestHeadersAction::Reply(r) => RequestBodyAction::Reply(r),
        RequestHeadersAction::Continue(ed) => RequestBodyAction::Forward(ed),
    };
    Sent {
        ex,
        head_edits,
        action,
    }
}

fn as_user(sub: &str, extra: Value) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {}", token(sub, extra)))]
}

fn decide(
    engine: &Arc<Engine>,
    e: &mut MemoryEnv,
    sub: &str,
    tool: &str,
    args: Value,
) -> (bool, Vec<AuditRecord>) {
    let sent = send(
        engine,
        e,
        "/mcp",
        &as_user(sub, json!({})),
        &call(tool, args),
    );
    let allowed = sent.forwarded().is_some();
    (allowed, sent.end(e))
}

// ---------------------------------------------------------------- semantics

fn rules_ab() -> Vec<Value> {
    vec![
        json!({"id": "everyone-reads", "effect": "permit", "tools": ["read_*"]}),
        json!({"id": "no-secrets", "effect": "forbid", "tools": ["read_secret"]}),
        json!({"id": "alice-writes", "effect": "permit", "tools": ["write"], "subject": {"users": ["alice"]}}),
    ]
}

#[test]
fn forbid_overrides_permit_and_nothing_unpermitted_passes() {
    let engine = test_util::engine(vec![
        provider(),
        server(
            "files",
            "/mcp",
            &["read_file", "read_secret", "write", "stat"],
        ),
        policy("files", json!({"rules": rules_ab()})),
    ]);
    let mut e = env();
    let (ok, recs) = decide(&engine, &mut e, "bob", "read_file", json!({}));
    assert!(ok);
    assert_eq!(recs[0].rule.as_deref(), Some("Policy/files#everyone-reads"));
    assert_eq!(recs[0].rules, vec!["Policy/files#everyone-reads"]);

    // Both a permit and a forbid match: the forbid wins.
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("bob", json!({})),
        &call("read_secret", json!({})),
    );
    let (status, body, _) = sent.reply();
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], codes::DENIED);
    assert_eq!(
        body["error"]["data"]["rules"],
        json!(["Policy/files#no-secrets"])
    );
    let recs = sent.end(&mut e);
    assert_eq!(recs[0].decision, Decision::Deny);
    assert_eq!(recs[0].rule.as_deref(), Some("Policy/files#no-secrets"));

    // Registered, but no rule permits it: default deny.
    let (ok, recs) = decide(&engine, &mut e, "bob", "stat", json!({}));
    assert!(!ok);
    assert_eq!(recs[0].rule.as_deref(), Some("Policy#default-deny"));
    assert!(
        recs[0].reason.contains("default deny"),
        "{}",
        recs[0].reason
    );

    // A subject matcher: alice may write, bob may not.
    assert!(decide(&engine, &mut e, "alice", "write", json!({})).0);
    assert!(!decide(&engine, &mut e, "bob", "write", json!({})).0);
    // tools/list and initialize are not "use" methods: not default-denied.
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("bob", json!({})),
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    assert!(sent.forwarded().is_some());
}

#[test]
fn the_order_of_rules_and_documents_does_not_matter() {
    let calls: Vec<(&str, &str)> = vec![
        ("alice", "read_file"),
        ("alice", "read_secret"),
        ("alice", "write"),
        ("bob", "write"),
        ("bob", "stat"),
        ("bob", "read_file"),
    ];
    let decisions = |docs: Vec<Document>| -> Vec<(bool, Option<String>)> {
        let engine = test_util::engine(docs);
        let mut e = env();
        calls
            .iter()
            .map(|(who, tool)| {
                let (ok, recs) = decide(&engine, &mut e, who, tool, json!({}));
                (ok, recs[0].rule.clone())
            })
            .collect()
    };
    let srv = || {
        server(
            "files",
            "/mcp",
            &["read_file", "read_secret", "write", "stat"],
        )
    };
    let forward = decisions(vec![
        provider(),
        srv(),
        policy("p", json!({"rules": rules_ab()})),
    ]);
    let mut reversed_rules = rules_ab();
    reversed_rules.reverse();
    let reversed = decisions(vec![
        policy("p", json!({"rules": reversed_rules})),
        srv(),
        provider(),
    ]);
    assert_eq!(forward, reversed);
    // Split across two documents, in either order: the same decisions
    // (rule ids name their document, so compare only allow/deny).
    let r = rules_ab();
    let split = |a_first: bool| {
        let a = policy("a", json!({"rules": [r[0].clone(), r[2].clone()]}));
        let b = policy("b", json!({"rules": [r[1].clone()]}));
        let docs = if a_first {
            vec![provider(), srv(), a, b]
        } else {
            vec![b, srv(), a, provider()]
        };
        decisions(docs)
            .into_iter()
            .map(|(ok, _)| ok)
            .collect::<Vec<_>>()
    };
    let plain: Vec<bool> = forward.iter().map(|(ok, _)| *ok).collect();
    assert_eq!(split(true), plain);
    assert_eq!(split(false), plain);
    assert_eq!(plain, vec![true, false, true, false, false, true]);
}

#[test]
fn a_server_no_permit_reaches_is_governed_by_its_registry_lists() {
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["read_file"]),
        server("other", "/other", &["echo"]),
        policy(
            "p",
            json!({"rules": [
                {"id": "files-only", "effect": "permit", "servers": ["files"], "tools": ["read_file"]},
                {"id": "no-echo-for-bob", "effect": "forbid", "servers": ["other"], "tools": ["echo"], "subject": {"users": ["bob"]}},
            ]}),
        ),
    ]);
    let mut e = env();
    let s = send(
        &engine,
        &mut e,
        "/other",
        &as_user("alice", json!({})),
        &call("echo", json!({})),
    );
    assert!(
        s.forwarded().is_some(),
        "registry lists permit on an ungoverned server"
    );
    let s = send(
        &engine,
        &mut e,
        "/other",
        &as_user("bob", json!({})),
        &call("echo", json!({})),
    );
    assert!(s.forwarded().is_none(), "forbids still apply there");
    // A tool the registry does not list is refused before any rule.
    let s = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("rm", json!({})),
    );
    let recs = s.end(&mut e);
    assert_eq!(recs[0].rule.as_deref(), Some("McpServer/files#tools"));
}

// ---------------------------------------------------------------- matchers

#[test]
fn every_matcher_kind() {
    let engine = test_util::engine(vec![
        provider(),
        server(
            "files",
            "/mcp",
            &[
                "t-user", "t-agent", "t-tenant", "t-role", "t-group", "t-claim", "t-cidr",
                "t-header", "t-time", "t-args", "t-cel", "t-method",
            ],
        ),
        policy(
            "m",
            json!({"rules": [
                {"id": "user", "effect": "permit", "tools": ["t-user"], "subject": {"users": ["ali*"]}},
                {"id": "agent", "effect": "permit", "tools": ["t-agent"], "subject": {"agents": ["agent-7"]}},
                {"id": "tenant", "effect": "permit", "tools": ["t-tenant"], "subject": {"tenants": ["acme"]}},
                {"id": "role", "effect": "permit", "tools": ["t-role"], "subject": {"roles": ["admin"]}},
                {"id": "group", "effect": "permit", "tools": ["t-group"], "subject": {"groups": ["finance"]}},
                {"id": "claim", "effect": "permit", "tools": ["t-claim"], "subject": {"claims": {"org.dept": ["eng*"]}}},
                {"id": "cidr", "effect": "permit", "tools": ["t-cidr"], "source": {"cidrs": ["10.0.0.0/8"]}},
                {"id": "header", "effect": "permit", "tools": ["t-header"], "headers": {"x-env": ["prod-*"]}},
                {"id": "time", "effect": "permit", "tools": ["t-time"], "time": {"days": ["fri"], "after": "09:00", "before": "17:00"}},
                {"id": "args", "effect": "permit", "tools": ["t-args"], "arguments": {
                    "type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "maximum": 10}}}},
                {"id": "cel", "effect": "permit", "tools": ["t-cel"], "when": "args.n > 3 && subject.tenant == 'acme' && request.tool == 't-cel'"},
                {"id": "method", "effect": "permit", "methods": ["tools/call"], "tools": ["t-method"]},
                {"id": "res", "effect": "permit", "resources": ["file:///data/public/*"]},
                {"id": "prompt", "effect": "permit", "prompts": ["greet"], "subject": {"users": ["alice"]}},
            ]}),
        ),
    ]);
    let mut e = env();
    let ok = |e: &mut MemoryEnv,
              sub: &str,
              extra: Value,
              tool: &str,
              args: Value,
              hdrs: &[(&str, &str)]| {
        let mut h = as_user(sub, extra);
        h.extend(hdrs.iter().map(|(k, v)| (*k, v.to_string())));
        send(&engine, e, "/mcp", &h, &call(tool, args))
            .forwarded()
            .is_some()
    };
    let none = json!({});
    assert!(ok(
        &mut e,
        "alice",
        none.clone(),
        "t-user",
        none.clone(),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-user",
        none.clone(),
        &[]
    ));
    assert!(ok(
        &mut e,
        "bob",
        none.clone(),
        "t-agent",
        none.clone(),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        json!({"azp": "agent-9"}),
        "t-agent",
        none.clone(),
        &[]
    ));
    assert!(ok(
        &mut e,
        "bob",
        none.clone(),
        "t-tenant",
        none.clone(),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        json!({"tenant": "globex"}),
        "t-tenant",
        none.clone(),
        &[]
    ));
    assert!(ok(
        &mut e,
        "bob",
        json!({"roles": ["viewer", "admin"]}),
        "t-role",
        none.clone(),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        json!({"roles": ["viewer"]}),
        "t-role",
        none.clone(),
        &[]
    ));
    assert!(ok(
        &mut e,
        "bob",
        json!({"groups": ["finance"]}),
        "t-group",
        none.clone(),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-group",
        none.clone(),
        &[]
    ));
    assert!(ok(
        &mut e,
        "bob",
        json!({"org": {"dept": "engineering"}}),
        "t-claim",
        none.clone(),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        json!({"org": {"dept": "sales"}}),
        "t-claim",
        none.clone(),
        &[]
    ));
    assert!(ok(&mut e, "bob", none.clone(), "t-cidr", none.clone(), &[]));
    e.set_source_address("192.0.2.9:1000");
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-cidr",
        none.clone(),
        &[]
    ));
    e.set_source_address("[::ffff:10.9.9.9]:1000");
    assert!(ok(&mut e, "bob", none.clone(), "t-cidr", none.clone(), &[]));
    assert!(ok(
        &mut e,
        "bob",
        none.clone(),
        "t-header",
        none.clone(),
        &[("x-env", "prod-eu")]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-header",
        none.clone(),
        &[("x-env", "staging")]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-header",
        none.clone(),
        &[]
    ));
    assert!(ok(&mut e, "bob", none.clone(), "t-time", none.clone(), &[]));
    let friday = e.now;
    e.now = friday + 8 * 3600 * 1_000_000_000; // 18:30
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-time",
        none.clone(),
        &[]
    ));
    e.now = friday + 86_400 * 1_000_000_000; // Saturday 10:30
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-time",
        none.clone(),
        &[]
    ));
    e.now = friday;
    assert!(ok(
        &mut e,
        "bob",
        none.clone(),
        "t-args",
        json!({"n": 10}),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-args",
        json!({"n": 11}),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-args",
        json!({"n": "5"}),
        &[]
    ));
    assert!(!ok(&mut e, "bob", none.clone(), "t-args", json!({}), &[]));
    assert!(ok(
        &mut e,
        "bob",
        none.clone(),
        "t-cel",
        json!({"n": 4}),
        &[]
    ));
    assert!(!ok(
        &mut e,
        "bob",
        none.clone(),
        "t-cel",
        json!({"n": 3}),
        &[]
    ));
    assert!(ok(
        &mut e,
        "bob",
        none.clone(),
        "t-method",
        none.clone(),
        &[]
    ));
    // Resources and prompts.
    let read = |e: &mut MemoryEnv, uri: &str| {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":uri}})
            .to_string();
        send(
            &engine,
            e,
            "/mcp",
            &as_user("bob", json!({})),
            body.as_bytes(),
        )
        .forwarded()
        .is_some()
    };
    assert!(read(&mut e, "file:///data/public/a.txt"));
    assert!(!read(&mut e, "file:///data/private/a.txt"));
    let prompt = |e: &mut MemoryEnv, who: &str| {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}})
            .to_string();
        send(
            &engine,
            e,
            "/mcp",
            &as_user(who, json!({})),
            body.as_bytes(),
        )
        .forwarded()
        .is_some()
    };
    assert!(prompt(&mut e, "alice"));
    assert!(!prompt(&mut e, "bob"));
}

#[test]
fn a_cel_error_fails_closed_and_is_reported() {
    let engine = test_util::engine(vec![
        provider(),
        server("pay", "/mcp", &["pay", "refund"]),
        policy(
            "p",
            json!({"rules": [
                // `args.amount` is a string below: `>` on it is an evaluation error.
                {"id": "small", "effect": "permit", "tools": ["pay"], "when": "args.amount < 100"},
                {"id": "all-refunds", "effect": "permit", "tools": ["refund"]},
                {"id": "odd-refunds", "effect": "forbid", "tools": ["refund"], "when": "args.amount % 2 == 1"},
            ]}),
        ),
    ]);
    let mut e = env();
    let (ok, recs) = decide(&engine, &mut e, "bob", "pay", json!({"amount": 5}));
    assert!(ok, "{:?}", recs[0].reason);
    let (ok, recs) = decide(&engine, &mut e, "bob", "pay", json!({"amount": "5"}));
    assert!(!ok, "an erroring permit does not permit");
    assert_eq!(
        recs[0].policy_errors,
        vec!["Policy/p#small: the rule could not be evaluated"]
    );
    let (ok, recs) = decide(&engine, &mut e, "bob", "refund", json!({"amount": "x"}));
    assert!(!ok, "an erroring forbid forbids");
    assert_eq!(recs[0].rule.as_deref(), Some("Policy/p#odd-refunds"));
    assert_eq!(recs[0].policy_errors.len(), 1);
    assert!(decide(&engine, &mut e, "bob", "refund", json!({"amount": 2})).0);
}

/// A `when` builds only the attributes it reads (issue 16); the verdicts
/// are those of the whole attribute set: member paths, missing keys (fail
/// closed), `has()`, `in`, `size()` of a whole map, macros with their own
/// variables, string functions, an erroring forbid.
#[test]
fn cel_conditions_decide_on_exactly_what_they_read() {
    let whens = [
        (
            "t-lines",
            "args.order.lines.exists(l, l.sku == 'A-1' && l.qty <= 10)",
        ),
        ("t-has", "has(args.dryRun) && args.dryRun == true"),
        ("t-size", "size(args) <= 2"),
        (
            "t-in",
            "'confirm' in args && args.note.startsWith('ok') && args.note.contains('fine')",
        ),
        (
            "t-claims",
            "subject.claims.tenant == 'acme' && size(subject.claims) >= 5 && has(subject.claims.azp)",
        ),
        ("t-or", "args.missing.deeper == 1 || args.fallback == true"),
        (
            "t-all",
            "args.items.all(i, i > 0) && args.items.size() == 3",
        ),
        ("t-map", "args.meta == {'k': 'v'}"),
        (
            "t-req",
            "request.tool == 't-req' && subject.tenant == 'acme' && time.weekday == 5",
        ),
    ];
    let mut tools: Vec<&str> = whens.iter().map(|(t, _)| *t).collect();
    tools.push("t-block");
    let mut rules: Vec<Value> = whens
        .iter()
        .enumerate()
        .map(|(i, (tool, when))| json!({"id": format!("c{i}"), "effect": "permit", "tools": [tool], "when": when}))
        .collect();
    rules.push(json!({"id": "block-open", "effect": "permit", "tools": ["t-block"]}));
    rules.push(json!({"id": "block", "effect": "forbid", "tools": ["t-block"], "when": "args.target.host.endsWith('.internal')"}));
    let engine = test_util::engine(vec![
        provider(),
        server("s", "/mcp", &tools),
        policy("p", json!({"rules": rules})),
    ]);
    let mut e = env();
    for (tool, args, allowed) in [
        (
            "t-lines",
            json!({"order": {"lines": [{"sku": "B"}, {"sku": "A-1", "qty": 3}]}}),
            true,
        ),
        (
            "t-lines",
            json!({"order": {"lines": [{"sku": "A-1", "qty": 30}]}}),
            false,
        ),
        ("t-lines", json!({"order": {}}), false),
        ("t-has", json!({"dryRun": true}), true),
        ("t-has", json!({"dryRun": "true"}), false),
        ("t-has", json!({}), false),
        ("t-size", json!({"a": 1, "b": {"c": [1, 2, 3]}}), true),
        ("t-size", json!({"a": 1, "b": 2, "c": 3}), false),
        ("t-in", json!({"confirm": null, "note": "ok, fine"}), true),
        ("t-in", json!({"note": "ok, fine"}), false),
        ("t-in", json!({"confirm": 1, "note": "fine"}), false),
        ("t-claims", json!({}), true),
        ("t-or", json!({"fallback": true}), true),
        ("t-or", json!({"missing": {"deeper": 1}}), true),
        ("t-or", json!({}), false),
        ("t-all", json!({"items": [1, 2, 3]}), true),
        ("t-all", json!({"items": [1, -2, 3]}), false),
        ("t-all", json!({"items": "abc"}), false),
        ("t-map", json!({"meta": {"k": "v"}}), true),
        ("t-map", json!({"meta": {"k": "v", "x": 1}}), false),
        ("t-req", json!({}), true),
        ("t-block", json!({"target": {"host": "example.com"}}), true),
        ("t-block", json!({"target": {"host": "db.internal"}}), false),
        ("t-block", json!({"target": "db.internal"}), false),
        ("t-block", json!({}), false),
    ] {
        let (ok, recs) = decide(&engine, &mut e, "bob", tool, args.clone());
        assert_eq!(ok, allowed, "{tool} {args}: {:?}", recs[0].reason);
    }
}

#[test]
fn bad_rules_are_refused_at_configure_time_with_their_field() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"id": "s", "effect": "permit", "arguments": {"type": "no-such-type"}}),
            "spec.rules[0].arguments",
        ),
        (
            json!({"id": "s", "effect": "permit", "arguments": {"pattern": "(["}}),
            "spec.rules[0].arguments",
        ),
        (
            json!({"id": "c", "effect": "permit", "when": "args.n >"}),
            "spec.rules[0].when",
        ),
        (
            json!({"id": "c", "effect": "permit", "when": "argz.n > 1"}),
            "spec.rules[0].when",
        ),
        (
            json!({"id": "x", "effect": "permit", "servers": ["nope"]}),
            "spec.rules[0].servers",
        ),
        (
            json!({"id": "x", "effect": "allow"}),
            "spec.rules[0].effect",
        ),
        (
            json!({"id": "x", "effect": "permit", "source": {"cidrs": ["10.0.0.0/99"]}}),
            "spec.rules[0].source.cidrs[0]",
        ),
        (
            json!({"id": "x", "effect": "permit", "time": {"after": "25:00"}}),
            "spec.rules[0].time.after",
        ),
        (
            json!({"id": "x", "effect": "permit", "methods": ["tools/cal"]}),
            "spec.rules[0].methods",
        ),
        (
            json!({"id": "x", "effect": "permit", "frobnicate": true}),
            "spec.rules[0]",
        ),
    ];
    for (rule, field) in cases {
        let errs = test_util::compile(vec![
            server("files", "/mcp", &["a"]),
            policy("bad", json!({"rules": [rule.clone()]})),
        ])
        .expect_err(&format!("{rule} compiled"));
        assert!(
            errs.iter()
                .any(|e| e.contains("Policy/bad") && e.contains(field)),
            "{rule}: {errs:#?} should name {field}"
        );
    }
    let errs = test_util::compile(vec![
        server("files", "/mcp", &["a"]),
        policy(
            "dup",
            json!({"rules": [{"id": "a", "effect": "permit"}, {"id": "a", "effect": "forbid"}]}),
        ),
    ])
    .unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("spec.rules[1].id")),
        "{errs:#?}"
    );
}

// ---------------------------------------------------------------- shadow mode

#[test]
fn shadow_rules_record_would_deny_without_blocking() {
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["read_file", "rm"]),
        policy(
            "live",
            json!({"rules": [{"id": "all", "effect": "permit", "tools": ["*"]}]}),
        ),
        policy(
            "trial",
            json!({"enforce": false, "rules": [
            {"id": "no-rm", "effect": "forbid", "tools": ["rm"]}]}),
        ),
    ]);
    let mut e = env();
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("bob", json!({})),
        &call("rm", json!({})),
    );
    assert!(sent.forwarded().is_some(), "a shadow forbid does not block");
    assert_eq!(
        sent.header("x-mcp-shadow-decision").as_deref(),
        Some("deny")
    );
    assert_eq!(
        sent.header("x-mcp-rules").as_deref(),
        Some("Policy/live#all")
    );
    let recs = sent.end(&mut e);
    let shadow = recs[0].shadow_decision.as_ref().unwrap();
    assert_eq!(shadow.decision, "deny");
    assert_eq!(shadow.rules, vec!["Policy/trial#no-rm"]);
    assert_eq!(e.metrics.get("portcullis.shadow_would_deny"), Some(&1));
    // The same rule as a whole-bundle shadow: Settings.enforce: false.
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["read_file", "rm"]),
        policy(
            "live",
            json!({"rules": [{"id": "no-rm", "effect": "forbid", "tools": ["rm"]}]}),
        ),
        doc("Settings", "settings", json!({"enforce": false})),
    ]);
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("bob", json!({})),
        &call("rm", json!({})),
    );
    assert!(sent.forwarded().is_some());
    let recs = sent.end(&mut e);
    assert_eq!(recs[0].shadow_decision.as_ref().unwrap().decision, "deny");
    let text = recs[0].to_json_line();
    assert!(
        text.contains("\"shadow_decision\":{\"decision\":\"deny\""),
        "{text}"
    );
}

// ---------------------------------------------------------------- limits

fn limits_engine(limit: Value) -> Arc<Engine> {
    test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["read_file", "search", "pay"]),
        policy("limits", json!({"limits": [limit]})),
    ])
}

#[test]
fn a_token_bucket_refuses_with_429_and_retry_after_per_key() {
    let engine = limits_engine(json!({"id": "per-user", "key": ["tenant", "subject"],
        "rate": {"requests": 3, "per": "1m"}}));
    let mut e = env();
    for _ in 0..3 {
        assert!(decide(&engine, &mut e, "alice", "read_file", json!({})).0);
    }
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("read_file", json!({})),
    );
    let (status, body, headers) = sent.reply();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], codes::LIMITED);
    assert_eq!(
        body["error"]["data"]["limit"]["id"],
        "Policy/limits#per-user"
    );
    assert_eq!(body["error"]["data"]["limit"]["kind"], "rate");
    let retry = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        retry, "21",
        "a token every 20 s; one more second to be sure"
    );
    let recs = sent.end(&mut e);
    assert_eq!(recs[0].limit.as_ref().unwrap().id, "Policy/limits#per-user");
    assert_eq!(recs[0].http_status, Some(429));
    // Another subject has its own bucket.
    assert!(decide(&engine, &mut e, "bob", "read_file", json!({})).0);
    // Twenty seconds later one token is back.
    e.now += 20 * 1_000_000_000;
    assert!(decide(&engine, &mut e, "alice", "read_file", json!({})).0);
    assert!(!decide(&engine, &mut e, "alice", "read_file", json!({})).0);
}

#[test]
fn concurrency_slots_are_held_until_the_stream_ends() {
    let engine =
        limits_engine(json!({"id": "one-at-a-time", "key": ["subject"], "concurrency": 1}));
    let mut e = env();
    let first = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("search", json!({})),
    );
    assert!(first.forwarded().is_some());
    let second = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("search", json!({})),
    );
    assert_eq!(second.reply().0, 429);
    let recs = second.end(&mut e);
    assert_eq!(recs[0].limit.as_ref().unwrap().kind, "concurrency");
    first.end(&mut e);
    assert!(decide(&engine, &mut e, "alice", "search", json!({})).0);
}

#[test]
fn daily_budgets_charge_per_tool_and_reset_at_midnight() {
    let engine = limits_engine(json!({"id": "spend", "key": ["tenant"],
        "budget": {"unitsPerDay": 10, "costs": {"pay": 4}, "defaultCost": 1}}));
    let mut e = env();
    assert!(decide(&engine, &mut e, "alice", "pay", json!({})).0);
    let (ok, recs) = decide(&engine, &mut e, "bob", "pay", json!({}));
    assert!(ok, "{:?} {:?}", recs[0].reason, e.shared);
    assert!(
        !decide(&engine, &mut e, "alice", "pay", json!({})).0,
        "8 + 4 > 10 (same tenant)"
    );
    assert!(
        decide(&engine, &mut e, "alice", "search", json!({})).0,
        "9 <= 10"
    );
    assert!(
        decide(&engine, &mut e, "alice", "search", json!({})).0,
        "10 <= 10"
    );
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("search", json!({})),
    );
    let (_, body, headers) = sent.reply();
    assert_eq!(body["error"]["data"]["limit"]["kind"], "budget");
    let retry: u64 = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(
        retry,
        86_400 - (NOW % 86_400),
        "until the next UTC midnight"
    );
    e.now += retry * 1_000_000_000;
    assert!(decide(&engine, &mut e, "alice", "pay", json!({})).0);
}

#[test]
fn global_limits_are_named_for_envoys_rate_limit_filter() {
    // The header is set once the body is decided, so only while the
    // request headers are held (`requestHeaders: hold`).
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["read_file", "search", "pay"]),
        policy(
            "limits",
            json!({"limits": [{"id": "fleet", "global": true, "key": ["tenant"],
                "rate": {"requests": 1, "per": "1s"}}]}),
        ),
        test_util::doc("Settings", "s", json!({"requestHeaders": "hold"})),
    ]);
    let mut e = env();
    for _ in 0..3 {
        let sent = send(
            &engine,
            &mut e,
            "/mcp",
            &as_user("alice", json!({})),
            &call("search", json!({})),
        );
        assert_eq!(
            sent.header("x-mcp-rate-limit").as_deref(),
            Some("Policy/limits#fleet")
        );
        assert_eq!(sent.header("x-mcp-tenant").as_deref(), Some("acme"));
    }
}

/// Under `requestHeaders: forward` (the default) the headers leave before a
/// global limit could be named in them, so such a bundle is refused, with
/// the field and what to do.
#[test]
fn global_limits_need_the_request_headers_held() {
    let json = assemble(vec![
        provider(),
        server("files", "/mcp", &["read_file"]),
        policy(
            "limits",
            json!({"limits": [{"id": "fleet", "global": true,
                "rate": {"requests": 1, "per": "1s"}}]}),
        ),
    ]);
    let errors = Bundle::compile(&json).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{text:?}");
    assert_eq!(errors[0].pointer, "/spec/limits/0/global");
    assert!(text[0].contains("requestHeaders: hold"), "{text:?}");
}

#[test]
fn a_host_without_shared_data_refuses_rather_than_counts_nothing() {
    let engine = limits_engine(json!({"id": "r", "rate": {"requests": 100, "per": "1m"}}));
    let mut e = env().without_shared_data();
    let mut ex = Exchange::new(engine.clone());
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.example.com".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "authorization".into(),
                format!("Bearer {}", token("alice", json!({}))),
            ),
        ],
    };
    assert!(matches!(
        ex.on_request_headers(&mut e, head),
        RequestHeadersAction::ReadBody(_)
    ));
    match ex.on_request_body(&mut e, &call("search", json!({})), true) {
        RequestBodyAction::Reply(r) => assert_eq!(r.status, 429),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- approvals

fn approval_engine(signing: &ed25519_dalek::SigningKey) -> Arc<Engine> {
    use base64::Engine as _;
    let public =
        base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().to_bytes());
    test_util::engine(vec![
        provider(),
        server("payments", "/mcp", &["pay"]),
        policy(
            "pay",
            json!({"rules": [
                {"id": "pay", "effect": "permit", "tools": ["pay"]},
                {"id": "big", "effect": "requireApproval", "tools": ["pay"],
                 "arguments": {"type": "object", "properties": {"amount": {"type": "number", "exclusiveMinimum": 100}}, "required": ["amount"]}},
            ]}),
        ),
        doc(
            "Settings",
            "settings",
            json!({"approvals": {"keys": [public], "url": "https://approve.example.com/ui", "maxTtl": "1h"}}),
        ),
    ])
}

/// With a fleet state service configured, a granted approval is spent
/// there (`portcullis.fleet.v1.Fleet/Spend`), once for the whole fleet:
/// the service's "first" lets the call through, "not first" (spent through
/// another proxy) refuses it `already_used`, and no answer refuses it
/// `fleet_unavailable` with a record; nothing is written to shared data.
/// A payments server whose `pay` needs approval (`big` carries `rule`'s
/// extra fields) under a fleet service, with the key that signs grants.
fn fleet_approval_engine(rule: Value) -> (Arc<Engine>, ed25519_dalek::SigningKey) {
    use base64::Engine as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes());
    let mut big = json!({"id": "big", "effect": "requireApproval", "tools": ["pay"]});
    if let (Some(b), Value::Object(x)) = (big.as_object_mut(), rule) {
        b.extend(x);
    }
    let engine = test_util::engine(vec![
        provider(),
        server("payments", "/mcp", &["pay"]),
        policy(
            "pay",
            json!({"rules": [{"id": "pay", "effect": "permit", "tools": ["pay"]}, big]}),
        ),
        doc(
            "Settings",
            "settings",
            json!({"approvals": {"keys": [public], "maxTtl": "1h"},
                   "fleet": {"cluster": "portcullis_fleet", "timeoutMs": 200}}),
        ),
    ]);
    (engine, key)
}

/// The approval id alice's unapproved `pay` call with `args` is refused with.
fn approval_id_for(engine: &Arc<Engine>, e: &mut MemoryEnv, args: &Value) -> String {
    let first = send(
        engine,
        e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("pay", args.clone()),
    );
    let id = first.reply().1["error"]["data"]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    first.end(e);
    id
}

#[test]
fn with_a_fleet_service_an_approval_is_spent_fleet_wide() {
    use portcullis_core::env::Env as _;
    use portcullis_core::fleet::api;
    use portcullis_core::outcall::{CallResult, OutcallKind};
    use prost::Message as _;

    let (engine, key) = fleet_approval_engine(json!({}));
    let mut e = env();
    let args = json!({"amount": 500});
    let id = approval_id_for(&engine, &mut e, &args);

    let attempt = |e: &mut MemoryEnv, seed: u8, answer: CallResult| {
        let token = approval::mint(&id, &key, NOW, 600, &[seed; 16]).unwrap();
        let mut h = as_user("alice", json!({}));
        h.push(("x-mcp-approval", token));
        let mut sent = send(&engine, e, "/mcp", &h, &call("pay", args.clone()));
        let RequestBodyAction::Call(c) = &sent.action else {
            panic!("the spend is asked of the fleet: {:?}", sent.action)
        };
        assert_eq!(c.cluster, "portcullis_fleet");
        let OutcallKind::Grpc {
            service,
            method,
            message,
            ..
        } = &c.kind
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            (service.as_str(), method.as_str()),
            (api::SERVICE, api::SPEND)
        );
        let req = api::SpendRequest::decode(message.as_slice()).unwrap();
        assert_eq!(req.key, format!("portcullis.approval/{}", hex(seed)));
        assert!(req.ttl_ms >= 3_600_000, "kept as long as a grant can live");
        let call_id = c.id;
        sent.action = sent.ex.on_call_done(e, call_id, answer);
        sent
    };
    let spend = |first: bool| CallResult::Grpc {
        status: 0,
        message: String::new(),
        body: api::SpendResponse { first }.encode_to_vec(),
    };

    let sent = attempt(&mut e, 9, spend(true));
    assert!(sent.forwarded().is_some(), "{:?}", sent.action);
    let recs = sent.end(&mut e);
    assert_eq!(recs[0].approval.as_ref().unwrap().status, "granted");
    assert!(
        e.shared_get(&format!("portcullis.approval/{}", hex(9)))
            .is_none(),
        "spent in the fleet, not in this proxy's shared data"
    );

    // Spent through another proxy: the fleet says it was not the first.
    let sent = attempt(&mut e, 9, spend(false));
    assert_eq!(
        sent.reply().1["error"]["data"]["approval"]["error"],
        "already_used"
    );
    sent.end(&mut e);

    for failure in [
        CallResult::Failed("timeout".into()),
        CallResult::Grpc {
            status: 14,
            message: "redis unavailable".into(),
            body: Vec::new(),
        },
    ] {
        let sent = attempt(&mut e, 10, failure);
        let (_, body, _) = sent.reply();
        assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED);
        assert_eq!(
            body["error"]["data"]["approval"]["error"],
            "fleet_unavailable"
        );
        let recs = sent.end(&mut e);
        assert_eq!(recs.len(), 1, "a record per refusal");
        assert_eq!(recs[0].decision, Decision::Deny);
    }
}

/// Each approval gate chooses where its grants are spent (issue 19: "each
/// limit, budget and approval gate chooses `scope: proxy` [...] or `scope:
/// fleet`"): under a fleet service, a rule of `scope: proxy` spends in this
/// proxy's shared data and asks the fleet nothing.
#[test]
fn an_approval_rule_of_scope_proxy_is_spent_here_even_with_a_fleet() {
    use portcullis_core::env::Env as _;

    let (engine, key) = fleet_approval_engine(json!({"scope": "proxy"}));
    assert!(engine.bundle().fleet_approval_rules.is_empty());
    let mut e = env();
    let args = json!({"amount": 500});
    let id = approval_id_for(&engine, &mut e, &args);
    let token = approval::mint(&id, &key, NOW, 600, &[11; 16]).unwrap();
    let mut h = as_user("alice", json!({}));
    h.push(("x-mcp-approval", token));
    let sent = send(&engine, &mut e, "/mcp", &h, &call("pay", args.clone()));
    assert!(
        sent.forwarded().is_some(),
        "no fleet question: {:?}",
        sent.action
    );
    sent.end(&mut e);
    assert!(
        e.shared_get(&format!("portcullis.approval/{}", hex(11)))
            .is_some(),
        "spent in this proxy's shared data"
    );
    let again = send(&engine, &mut e, "/mcp", &h, &call("pay", args));
    assert_eq!(
        again.reply().1["error"]["data"]["approval"]["error"],
        "already_used"
    );
}

/// `scope` on a rule is where an approval is spent: a `requireApproval`
/// rule's alone, and `fleet` needs the fleet service; each error at its
/// field.
#[test]
fn an_approval_scope_is_checked_where_it_is_written() {
    let bundle = |rules: Value, settings: Value| {
        assemble(vec![
            provider(),
            server("payments", "/mcp", &["pay"]),
            policy("pay", json!({ "rules": rules })),
            test_util::doc("Settings", "settings", settings),
        ])
    };
    let errors = Bundle::compile(&bundle(
        json!([{"id": "pay", "effect": "permit", "tools": ["pay"], "scope": "fleet"}]),
        json!({"fleet": {"cluster": "fleet"}}),
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/spec/rules/0/scope");
    assert!(
        errors[0].to_string().contains("requireApproval"),
        "{}",
        errors[0]
    );
    let errors = Bundle::compile(&bundle(
        json!([{"id": "pay", "effect": "permit", "tools": ["pay"]},
               {"id": "big", "effect": "requireApproval", "tools": ["pay"], "scope": "fleet"}]),
        json!({}),
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].pointer, "/spec/rules/1/scope");
    assert!(
        errors[0].to_string().contains("Settings.spec.fleet"),
        "{}",
        errors[0]
    );
    // With a fleet, an approval rule is the fleet's unless it says proxy.
    let b = Bundle::compile(&bundle(
        json!([{"id": "pay", "effect": "permit", "tools": ["pay"]},
               {"id": "big", "effect": "requireApproval", "tools": ["pay"]},
               {"id": "local", "effect": "requireApproval", "tools": ["pay"], "scope": "proxy"}]),
        json!({"fleet": {"cluster": "fleet"}}),
    ))
    .unwrap();
    assert_eq!(
        b.fleet_approval_rules.iter().collect::<Vec<_>>(),
        ["Policy/pay#big"]
    );
}

fn hex(seed: u8) -> String {
    format!("{seed:02x}").repeat(16)
}

#[test]
fn approve_then_one_retry_then_refused() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let engine = approval_engine(&key);
    let mut e = env();
    assert!(
        decide(&engine, &mut e, "alice", "pay", json!({"amount": 50})).0,
        "small payments need no approval"
    );

    let args = json!({"amount": 500, "to": "acct-1"});
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("pay", args.clone()),
    );
    let (status, body, _) = sent.reply();
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED);
    let a = &body["error"]["data"]["approval"];
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(a["covers"]["subject"], "alice");
    assert_eq!(a["covers"]["server"], "payments");
    assert_eq!(a["covers"]["tool"], "pay");
    assert_eq!(a["covers"]["rule"], "Policy/pay#big");
    assert_eq!(
        a["covers"]["argumentsSha256"],
        approval::arguments_hash(Some(&args))
    );
    assert_eq!(
        a["approveAt"],
        format!("https://approve.example.com/ui?id={id}")
    );
    let recs = sent.end(&mut e);
    assert_eq!(recs[0].approval.as_ref().unwrap().status, "required");

    let token = approval::mint(&id, &key, NOW, 600, &[9; 16]).unwrap();
    let mut h = as_user("alice", json!({}));
    h.push(("x-mcp-approval", token.clone()));
    let sent = send(&engine, &mut e, "/mcp", &h, &call("pay", args.clone()));
    assert!(sent.forwarded().is_some(), "{:?}", sent.action);
    assert!(
        sent.head_edits.remove.iter().any(|h| h == "x-mcp-approval"),
        "the token is not passed upstream"
    );
    let recs = sent.end(&mut e);
    let note = recs[0].approval.as_ref().unwrap();
    assert_eq!(note.status, "granted");
    assert_eq!(
        note.jti.as_deref(),
        Some("09090909090909090909090909090909")
    );

    // The same token again: spent.
    let sent = send(&engine, &mut e, "/mcp", &h, &call("pay", args.clone()));
    let (_, body, _) = sent.reply();
    assert_eq!(body["error"]["data"]["approval"]["error"], "already_used");

    // A fresh token for this call, but the arguments changed.
    let token2 = approval::mint(&id, &key, NOW, 600, &[10; 16]).unwrap();
    let mut h2 = as_user("alice", json!({}));
    h2.push(("x-mcp-approval", token2.clone()));
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &h2,
        &call("pay", json!({"amount": 5000, "to": "acct-1"})),
    );
    assert_eq!(
        sent.reply().1["error"]["data"]["approval"]["error"],
        "wrong_call"
    );
    // Someone else presenting alice's approval.
    let mut h3 = as_user("mallory", json!({}));
    h3.push(("x-mcp-approval", token2.clone()));
    let sent = send(&engine, &mut e, "/mcp", &h3, &call("pay", args.clone()));
    assert_eq!(
        sent.reply().1["error"]["data"]["approval"]["error"],
        "wrong_call"
    );
    // Expired.
    e.now += 601 * 1_000_000_000;
    let sent = send(&engine, &mut e, "/mcp", &h2, &call("pay", args.clone()));
    assert_eq!(
        sent.reply().1["error"]["data"]["approval"]["error"],
        "expired"
    );
    // Signed by a key the bundle does not trust.
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let forged = approval::mint(&id, &rogue, NOW + 601, 600, &[11; 16]).unwrap();
    let mut h4 = as_user("alice", json!({}));
    h4.push(("x-mcp-approval", forged));
    let sent = send(&engine, &mut e, "/mcp", &h4, &call("pay", args));
    assert_eq!(
        sent.reply().1["error"]["data"]["approval"]["error"],
        "bad_signature"
    );
}

// ---------------------------------------------------------------- lists

#[test]
fn lists_show_a_caller_only_what_it_may_use() {
    let engine = test_util::engine(vec![
        provider(),
        server(
            "files",
            "/mcp",
            &["read_file", "write", "admin_reset", "pay"],
        ),
        policy(
            "p",
            json!({"rules": [
                {"id": "read", "effect": "permit", "tools": ["read_file"]},
                {"id": "write", "effect": "permit", "tools": ["write"], "subject": {"users": ["alice"]}},
                {"id": "admin", "effect": "permit", "tools": ["admin_reset"], "subject": {"roles": ["admin"]}},
                {"id": "no-admin-for-agents", "effect": "forbid", "tools": ["admin_reset"], "subject": {"agents": ["agent-7"]}},
                // Depends on arguments: shown, decided per call.
                {"id": "small-pay", "effect": "permit", "tools": ["pay"], "when": "args.amount < 10"},
            ]}),
        ),
    ]);
    let listed = |sub: &str, extra: Value| -> Vec<String> {
        let mut e = env();
        let mut sent = send(
            &engine,
            &mut e,
            "/mcp",
            &as_user(sub, extra),
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
        );
        assert!(sent.forwarded().is_some());
        let tools: Vec<Value> = ["read_file", "write", "admin_reset", "pay", "unregistered"]
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
            .collect();
        let answer = json!({"jsonrpc":"2.0","id":7,"result":{"tools": tools}}).to_string();
        sent.ex.on_response_headers(
            &mut e,
            200,
            &[("content-type".into(), "application/json".into())],
        );
        let out = match sent.ex.on_response_body(&mut e, answer.as_bytes(), true) {
            ResponseBodyAction::Replace(b) => b,
            ResponseBodyAction::Pass => answer.into_bytes(),
            ResponseBodyAction::Buffer => panic!("buffered"),
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        listed("alice", json!({})),
        vec!["read_file", "write", "pay"]
    );
    assert_eq!(listed("bob", json!({})), vec!["read_file", "pay"]);
    assert_eq!(
        listed("bob", json!({"roles": ["admin"], "azp": "console"})),
        vec!["read_file", "admin_reset", "pay"]
    );
    assert_eq!(
        listed("bob", json!({"roles": ["admin"]})),
        vec!["read_file", "pay"],
        "agent-7 is forbidden admin_reset"
    );
}

// ---------------------------------------------------------------- indexing

#[test]
fn a_thousand_rules_compile_and_decide_by_index() {
    let tools: Vec<String> = (0..1000).map(|i| format!("tool-{i}")).collect();
    let tool_refs: Vec<&str> = tools.iter().map(String::as_str).collect();
    let rules: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"id": format!("r{i}"), "effect": "permit", "tools": [format!("tool-{i}")],
                        "subject": {"users": [format!("user-{}", i % 10)]}})
        })
        .collect();
    let engine = test_util::engine(vec![
        provider(),
        server("big", "/mcp", &tool_refs),
        policy("big", json!({"rules": rules})),
    ]);
    assert_eq!(engine.bundle().policy.rules.len(), 1000);
    let mut e = env();
    let (ok, recs) = decide(&engine, &mut e, "user-9", "tool-999", json!({}));
    assert!(ok);
    assert_eq!(recs[0].rule.as_deref(), Some("Policy/big#r999"));
    assert!(!decide(&engine, &mut e, "user-8", "tool-999", json!({})).0);
}

// ---------------------------------------------------------------- registry lifecycle

#[test]
fn lifecycle_blocked_submitted_deprecated_environment_tenant() {
    let srv = |name: &str, prefix: &str, extra: Value| {
        let mut d = server(name, prefix, &["echo"]);
        if let (Some(spec), Value::Object(x)) = (d.spec.as_object_mut(), extra) {
            spec.extend(x);
        }
        d
    };
    let engine = test_util::engine(vec![
        provider(),
        srv(
            "blocked",
            "/blocked",
            json!({"status": "blocked", "owner": "sec", "classification": "restricted"}),
        ),
        srv("submitted", "/submitted", json!({"status": "submitted"})),
        srv(
            "old",
            "/old",
            json!({"status": "deprecated", "sunset": "2027-02-01"}),
        ),
        srv(
            "gone",
            "/gone",
            json!({"status": "deprecated", "sunset": "2027-01-15"}),
        ),
        srv(
            "staging-only",
            "/staging",
            json!({"environments": ["staging"]}),
        ),
        srv("globex-only", "/globex", json!({"tenants": ["globex"]})),
        srv(
            "fine",
            "/fine",
            json!({"environments": ["prod"], "tenants": ["acme"], "lastReview": "2026-11-30", "license": "MIT"}),
        ),
        doc("Settings", "settings", json!({"environment": "prod"})),
    ]);
    let mut e = env();
    let go = |e: &mut MemoryEnv, path: &str| {
        let s = send(
            &engine,
            e,
            path,
            &as_user("alice", json!({})),
            &call("echo", json!({})),
        );
        let ok = s.forwarded().is_some();
        (ok, s.end(e))
    };
    let (ok, recs) = go(&mut e, "/blocked");
    assert!(!ok);
    assert_eq!(recs[0].rule.as_deref(), Some("McpServer/blocked#status"));
    assert!(
        !go(&mut e, "/submitted").0,
        "submitted is refused outside dev"
    );
    assert!(!go(&mut e, "/gone").0, "past the sunset day");
    assert!(!go(&mut e, "/staging").0);
    assert!(!go(&mut e, "/globex").0);
    assert!(go(&mut e, "/fine").0);
    // Deprecated before sunset: served, with a warning header and record.
    let mut s = send(
        &engine,
        &mut e,
        "/old",
        &as_user("alice", json!({})),
        &call("echo", json!({})),
    );
    assert!(s.forwarded().is_some());
    let edits = s.ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "application/json".into())],
    );
    let warning = edits
        .set
        .iter()
        .find(|(k, _)| k == "warning")
        .unwrap()
        .1
        .clone();
    assert!(warning.starts_with("299 portcullis "), "{warning}");
    assert!(warning.contains("2027-02-01"), "{warning}");
    // An initialize is refused on a blocked server too.
    let s = send(
        &engine,
        &mut e,
        "/blocked",
        &as_user("alice", json!({})),
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert!(s.forwarded().is_none());

    // In dev, a submitted server can be tried.
    let dev = test_util::engine(vec![
        provider(),
        srv("submitted", "/submitted", json!({"status": "submitted"})),
        doc("Settings", "settings", json!({"environment": "dev"})),
    ]);
    let s = send(
        &dev,
        &mut e,
        "/submitted",
        &as_user("alice", json!({})),
        &call("echo", json!({})),
    );
    assert!(s.forwarded().is_some());
    // A sunset without deprecation, or a bad date, is a bundle error.
    let errs =
        test_util::compile(vec![srv("x", "/x", json!({"sunset": "2027-01-01"}))]).unwrap_err();
    assert!(errs.iter().any(|e| e.contains("spec.sunset")), "{errs:?}");
    let errs = test_util::compile(vec![srv(
        "x",
        "/x",
        json!({"status": "deprecated", "sunset": "Jan 1"}),
    )])
    .unwrap_err();
    assert!(errs.iter().any(|e| e.contains("YYYY-MM-DD")), "{errs:?}");
}

// ---------------------------------------------------------------- shadow MCP

#[test]
fn mcp_on_an_unregistered_route_is_recorded_or_refused() {
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    // Recorded and passed only when the bundle says so by name.
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["echo"]),
        doc("Settings", "settings", json!({"shadowMcp": "record"})),
    ]);
    let mut e = env();
    let s = send(&engine, &mut e, "/rogue/mcp?x=1", &[], init);
    assert!(s.forwarded().is_some(), "recorded, not refused, when asked");
    let recs = s.end(&mut e);
    assert_eq!(recs.len(), 1);
    assert!(recs[0].shadow);
    assert_eq!(recs[0].authority.as_deref(), Some("mcp.example.com"));
    assert_eq!(recs[0].path.as_deref(), Some("/rogue/mcp"));
    assert_eq!(recs[0].method.as_deref(), Some("initialize"));
    assert_eq!(recs[0].source.as_deref(), Some("10.1.2.3:45678"));
    assert!(recs[0].server.is_none());
    // Not MCP: not recorded.
    let s = send(&engine, &mut e, "/api/orders", &[], br#"{"order": 1}"#);
    assert!(s.forwarded().is_some());
    assert!(s.end(&mut e).is_empty());
    // By default: refused.
    let engine = test_util::engine(vec![provider(), server("files", "/mcp", &["echo"])]);
    let s = send(
        &engine,
        &mut e,
        "/rogue",
        &[],
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}"#,
    );
    let (status, body, _) = s.reply();
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], codes::UNKNOWN_SERVER);
    let recs = s.end(&mut e);
    assert!(recs[0].shadow);
    assert_eq!(recs[0].decision, Decision::Deny);
}

#[test]
fn redacted_arguments_are_kept_only_when_asked_and_never_raw() {
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["send"]),
        doc(
            "Settings",
            "settings",
            json!({"auditArguments": "redacted"}),
        ),
    ]);
    let mut e = env();
    let (ok, recs) = decide(
        &engine,
        &mut e,
        "alice",
        "send",
        json!({"to": "bob@example.com", "n": 3}),
    );
    assert!(ok);
    let args = recs[0].arguments.as_ref().unwrap();
    assert_eq!(args["n"], 3);
    assert!(
        !args["to"].as_str().unwrap().contains("bob@example.com"),
        "{args}"
    );
    let plain = test_util::engine(vec![provider(), server("files", "/mcp", &["send"])]);
    let (_, recs) = decide(
        &plain,
        &mut e,
        "alice",
        "send",
        json!({"to": "bob@example.com"}),
    );
    assert!(recs[0].arguments.is_none());
    assert!(recs[0].arguments_sha256.is_some());
}

#[test]
fn the_compiled_bundle_round_trips_policy_documents() {
    let json = assemble(vec![
        provider(),
        server("files", "/mcp", &["a"]),
        policy(
            "p",
            json!({"rules": [{"id": "a", "effect": "permit", "tools": ["a"]}]}),
        ),
    ]);
    let bundle = Bundle::compile(&json).unwrap();
    assert_eq!(bundle.policy.rules[0].id, "Policy/p#a");
}

// ---------------------------------------------------------- fleet scope

/// A `scope: fleet` limit needs Settings.spec.fleet; the error names the
/// field and what to do (issue 19).
#[test]
fn fleet_limits_need_a_fleet_service() {
    let json = assemble(vec![
        provider(),
        server("files", "/mcp", &["read_file"]),
        policy(
            "limits",
            json!({"limits": [{"id": "calls", "scope": "fleet",
                "rate": {"requests": 25, "per": "1m"}}]}),
        ),
    ]);
    let errors = Bundle::compile(&json).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{text:?}");
    assert_eq!(errors[0].pointer, "/spec/limits/0/scope");
    assert!(text[0].contains("Settings.spec.fleet"), "{text:?}");

    // A fleet-wide concurrency limit compiles with a fleet service; its
    // lease settings are checked where they are written.
    let with_fleet = |fleet: Value| {
        assemble(vec![
            provider(),
            server("files", "/mcp", &["read_file"]),
            policy(
                "limits",
                json!({"limits": [{"id": "one", "scope": "fleet", "concurrency": 1}]}),
            ),
            test_util::doc("Settings", "settings", json!({ "fleet": fleet })),
        ])
    };
    Bundle::compile(&with_fleet(json!({"cluster": "fleet", "timeoutMs": 200}))).unwrap();
    let errors = Bundle::compile(&with_fleet(
        json!({"cluster": "fleet", "leaseTtlMs": 10, "quarantineRefreshMs": 5}),
    ))
    .unwrap_err();
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        ["/spec/fleet/quarantineRefreshMs", "/spec/fleet/leaseTtlMs"]
    );
}

/// A fleet limit asks the fleet state service (RLS v3 over gRPC, on the
/// cluster Settings names) before the call is decided, and the answer
/// decides: OK passes, OVER_LIMIT refuses with the window's reset as
/// Retry-After, and no answer (a failed call, an error status) refuses with
/// a clear error and a record (failClosed, the default) or, with
/// `failClosed: false`, passes with a record saying it went uncounted.
/// Nothing is ever counted locally for it.
#[test]
fn a_fleet_limit_is_asked_of_the_fleet_service_and_fails_closed() {
    use portcullis_core::fleet::rls;
    use portcullis_core::outcall::{CallResult, OutcallKind};
    use prost::Message as _;

    let fleet_engine = |extra: Value| {
        let mut limit = json!({"id": "calls", "scope": "fleet", "key": ["subject"],
            "budget": {"unitsPerDay": 10, "costs": {"pay": 4}}});
        if let (Some(l), Some(x)) = (limit.as_object_mut(), extra.as_object()) {
            l.extend(x.clone());
        }
        test_util::engine(vec![
            provider(),
            server("files", "/mcp", &["read_file", "search", "pay"]),
            policy("limits", json!({"limits": [limit]})),
            test_util::doc(
                "Settings",
                "s",
                json!({"fleet": {"cluster": "portcullis_fleet", "timeoutMs": 200}}),
            ),
        ])
    };
    let ask = |engine: &Arc<Engine>, e: &mut MemoryEnv| {
        let sent = send(
            engine,
            e,
            "/mcp",
            &as_user("alice", json!({})),
            &call("pay", json!({})),
        );
        let RequestBodyAction::Call(c) = &sent.action else {
            panic!("no fleet call: {:?}", sent.action)
        };
        let c = c.clone();
        assert_eq!(
            (c.cluster.as_str(), c.timeout_ms),
            ("portcullis_fleet", 200)
        );
        let OutcallKind::Grpc {
            service,
            method,
            message,
            ..
        } = &c.kind
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            (service.as_str(), method.as_str()),
            (
                "envoy.service.ratelimit.v3.RateLimitService",
                "ShouldRateLimit"
            )
        );
        let req = rls::RateLimitRequest::decode(message.as_slice()).unwrap();
        assert_eq!(req.hits_addend, 4, "the tool's cost");
        assert_eq!(
            req.descriptors[0].limit.as_ref().unwrap().requests_per_unit,
            10
        );
        (sent, c.id)
    };
    let answer = |mut sent: Sent, e: &mut MemoryEnv, id: u32, result: CallResult| {
        sent.action = sent.ex.on_call_done(e, id, result);
        sent
    };
    let rls_answer = |code: rls::Code, reset: i64| CallResult::Grpc {
        status: 0,
        message: String::new(),
        body: rls::RateLimitResponse {
            overall_code: code as i32,
            statuses: vec![rls::DescriptorStatus {
                code: code as i32,
                duration_until_reset: Some(rls::Duration {
                    seconds: reset,
                    nanos: 0,
                }),
                ..Default::default()
            }],
        }
        .encode_to_vec(),
    };
    let engine = fleet_engine(json!({}));
    let mut e = env();

    let (sent, id) = ask(&engine, &mut e);
    let sent = answer(sent, &mut e, id, rls_answer(rls::Code::Ok, 100));
    assert!(sent.forwarded().is_some(), "OK passes");
    sent.end(&mut e);

    let (sent, id) = ask(&engine, &mut e);
    let sent = answer(sent, &mut e, id, rls_answer(rls::Code::OverLimit, 3600));
    let (status, body, headers) = sent.reply();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["data"]["limit"]["kind"], "budget");
    let retry = headers.iter().find(|(k, _)| k == "retry-after").unwrap();
    assert_eq!(retry.1, "3600", "the window's reset");
    sent.end(&mut e);

    for failure in [
        CallResult::Failed("timeout".into()),
        CallResult::Grpc {
            status: 14,
            message: "redis unavailable".into(),
            body: Vec::new(),
        },
    ] {
        let (sent, id) = ask(&engine, &mut e);
        let sent = answer(sent, &mut e, id, failure);
        let (status, body, _) = sent.reply();
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], codes::LIMITED);
        assert_eq!(body["error"]["data"]["limit"]["kind"], "fleet-unavailable");
        assert!(
            body["error"]["data"]["reason"]
                .as_str()
                .unwrap()
                .contains("fleet state service did not answer"),
            "{body}"
        );
        let recs = sent.end(&mut e);
        assert_eq!(recs[0].limit.as_ref().unwrap().kind, "fleet-unavailable");
    }
    assert!(
        e.shared
            .keys()
            .iter()
            .all(|k| !k.contains("Policy/limits#calls")),
        "nothing counted locally"
    );

    let open = fleet_engine(json!({"failClosed": false}));
    let (sent, id) = ask(&open, &mut e);
    let sent = answer(sent, &mut e, id, CallResult::Failed("reset".into()));
    assert!(sent.forwarded().is_some());
    let recs = sent.end(&mut e);
    let note = recs[0].limit.as_ref().unwrap();
    assert_eq!((note.kind, note.enforced), ("fleet-unavailable", false));

    // An answer for a call that was not asked fails closed.
    let (sent, id) = ask(&engine, &mut e);
    let sent = answer(sent, &mut e, id + 7, rls_answer(rls::Code::Ok, 1));
    assert_eq!(sent.reply().0, 500);
}

/// A fleet concurrency limit takes a lease from the fleet state service
/// (`Fleet/AcquireLease`) before the call goes on: granted passes and the
/// lease is handed to the root context's release queue when the exchange
/// ends; not granted refuses like a proxy concurrency limit (429, -31089);
/// no answer refuses fail closed. The root context turns each queued
/// release into a `Fleet/ReleaseLease` call.
/// A call the argument review refuses (a secret in its arguments, blocked
/// by the default content policy) takes no fleet quota: the fleet is asked
/// only once nothing in this proxy refuses the call.
#[test]
fn a_call_the_argument_review_refuses_asks_the_fleet_nothing() {
    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["pay"]),
        policy(
            "limits",
            json!({"limits": [{"id": "calls", "scope": "fleet", "key": ["subject"],
                "budget": {"unitsPerDay": 10, "costs": {"pay": 4}}}]}),
        ),
        test_util::doc(
            "Settings",
            "s",
            json!({"fleet": {"cluster": "portcullis_fleet", "timeoutMs": 200}}),
        ),
    ]);
    let mut e = env();
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("pay", json!({"key": "AKIAIOSFODNN7EXAMPLE"})),
    );
    let (_, body, _) = sent.reply();
    assert_eq!(
        body["error"]["data"]["rule"], "ContentPolicy/builtin#pii",
        "{body}"
    );
    // The same call without the secret is asked of the fleet.
    let sent = send(
        &engine,
        &mut e,
        "/mcp",
        &as_user("alice", json!({})),
        &call("pay", json!({"amount": 5})),
    );
    assert!(
        matches!(sent.action, RequestBodyAction::Call(_)),
        "{:?}",
        sent.action
    );
}

#[test]
fn a_fleet_concurrency_limit_takes_a_lease_and_releases_it_at_the_end() {
    use portcullis_core::fleet::api;
    use portcullis_core::outcall::{CallResult, OutcallKind};
    use prost::Message as _;

    let engine = test_util::engine(vec![
        provider(),
        server("files", "/mcp", &["read_file", "search"]),
        policy(
            "limits",
            json!({"limits": [{"id": "one", "scope": "fleet", "key": ["subject"], "concurrency": 1}]}),
        ),
        test_util::doc(
            "Settings",
            "s",
            json!({"fleet": {"cluster": "portcullis_fleet", "timeoutMs": 200, "leaseTtlMs": 60000}}),
        ),
    ]);
    let mut e = env();
    let ask = |e: &mut MemoryEnv| {
        let sent = send(
            &engine,
            e,
            "/mcp",
            &as_user("alice", json!({})),
            &call("search", json!({})),
        );
        let RequestBodyAction::Call(c) = &sent.action else {
            panic!("no lease asked: {:?}", sent.action)
        };
        let OutcallKind::Grpc {
            service,
            method,
            message,
            ..
        } = &c.kind
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            (service.as_str(), method.as_str()),
            ("portcullis.fleet.v1.Fleet", "AcquireLease")
        );
        let req = api::AcquireLeaseRequest::decode(message.as_slice()).unwrap();
        assert_eq!((req.limit, req.ttl_ms), (1, 60000));
        assert!(req.key.ends_with("#one/subject=alice"), "{}", req.key);
        let id = c.id;
        (sent, id, req.key)
    };
    let lease = |granted: bool, id: &str| CallResult::Grpc {
        status: 0,
        message: String::new(),
        body: api::AcquireLeaseResponse {
            granted,
            lease_id: id.into(),
            active: 1,
        }
        .encode_to_vec(),
    };

    // Granted: forwarded; the lease goes back when the exchange ends.
    let (mut sent, id, key) = ask(&mut e);
    sent.action = sent.ex.on_call_done(&mut e, id, lease(true, "L1"));
    assert!(sent.forwarded().is_some(), "{:?}", sent.action);
    assert!(e.releases.is_empty(), "held while the call runs");
    sent.end(&mut e);
    assert_eq!(e.releases.len(), 1);
    let release = api::ReleaseLeaseRequest::decode(e.releases[0].as_slice()).unwrap();
    assert_eq!(
        (release.key.as_str(), release.lease_id.as_str()),
        (key.as_str(), "L1")
    );

    // Not granted: refused as a concurrency limit, nothing to release.
    let (mut sent, id, _) = ask(&mut e);
    sent.action = sent.ex.on_call_done(&mut e, id, lease(false, ""));
    let (status, body, _) = sent.reply();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], codes::LIMITED);
    assert_eq!(body["error"]["data"]["limit"]["kind"], "concurrency");
    assert_eq!(body["error"]["data"]["limit"]["id"], "Policy/limits#one");
    let recs = sent.end(&mut e);
    assert_eq!(recs[0].limit.as_ref().unwrap().kind, "concurrency");
    assert_eq!(e.releases.len(), 1);

    // No answer: refused fail closed, with a record.
    let (mut sent, id, _) = ask(&mut e);
    sent.action = sent
        .ex
        .on_call_done(&mut e, id, CallResult::Failed("timeout".into()));
    let (status, body, _) = sent.reply();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["data"]["limit"]["kind"], "fleet-unavailable");
    sent.end(&mut e);
    assert_eq!(e.releases.len(), 1);

    // The root context's side: a queued release becomes ReleaseLease; a
    // failure is reported (the lease expires instead).
    let call = engine.fleet_release(&e.releases[0]).unwrap();
    let OutcallKind::Grpc {
        method, message, ..
    } = &call.kind
    else {
        panic!("{call:?}")
    };
    assert_eq!(method, "ReleaseLease");
    assert_eq!(message, &e.releases[0]);
    assert_eq!(call.cluster, "portcullis_fleet");
    let note = engine
        .fleet_call_done(&mut e, call.id, &CallResult::Failed("reset".into()))
        .unwrap();
    assert!(note.contains("ReleaseLease"), "{note}");
    assert!(engine.fleet_release(b"\xff garbage").is_none());
    let ok = engine.fleet_release(&e.releases[0]).unwrap();
    let done = CallResult::Grpc {
        status: 0,
        message: String::new(),
        body: api::ReleaseLeaseResponse { released: true }.encode_to_vec(),
    };
    assert_eq!(engine.fleet_call_done(&mut e, ok.id, &done), None);
    // An answer to no call of the root's is not one.
    assert_eq!(engine.fleet_call_done(&mut e, ok.id, &done), None);
}

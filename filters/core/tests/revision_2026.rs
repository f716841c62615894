//! What MCP 2026-07-28 asks of a governing proxy, through the engine: task
//! handles bound to their principal (the tasks extension), caching hints on
//! results the filter changed per caller, the client's `_meta` identity in
//! the record, and the error codes the revision reserves. Each test quotes
//! the specification text it holds the filter to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_core::audit::{AuditRecord, Decision};
use portcullis_core::bundle::Document;
use portcullis_core::engine::{
    RequestBodyAction, RequestHead, RequestHeadersAction, ResponseBodyAction,
};
use portcullis_core::mcp::codes;
use portcullis_core::test_util::{self, MemoryEnv, doc};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::sync::Arc;

const ISS: &str = "https://idp.example.com";
const RES: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_009_000;
const SECRET: &[u8] = b"test-only-hmac-secret-0123456789-0123456789-0123456789-abcdefghij";
const REV: &str = "2026-07-28";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A server `build` behind an identity provider, or without identity.
fn engine(identity: bool) -> Arc<Engine> {
    let mut server = test_util::server("ci", "/mcp", &["build", "status"]);
    let mut docs: Vec<Document> = Vec::new();
    if identity {
        server.spec["identity"] = json!({"resource": RES, "upstreamToken": {"mode": "strip"}});
        docs.push(doc(
            "IdentityProvider",
            "corp-idp",
            json!({
                "issuer": ISS,
                "algorithms": ["HS256"],
                "jwks": {"keys": [{"kty": "oct", "kid": "hs-1", "k": b64(SECRET)}]},
            }),
        ));
    }
    docs.push(server);
    test_util::engine(docs)
}

fn token(sub: &str) -> String {
    let claims = json!({"iss": ISS, "aud": RES, "sub": sub, "azp": "agent-7",
        "iat": NOW - 10, "exp": NOW + 200_000});
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs-1".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

/// A 2026-07-28 request: `_meta` revision and the routing headers.
fn request(id: u64, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(REV);
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Sends `body` with exactly these headers (no routing headers added): for
/// requests whose headers are the point.
fn send_raw(
    engine: &Arc<Engine>,
    e: &mut MemoryEnv,
    headers: &[(&str, &str)],
    body: &Value,
) -> RequestBodyAction {
    let mut ex = Exchange::new(engine.clone());
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.example.com".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    match ex.on_request_headers(e, head) {
        RequestHeadersAction::ReadBody(_) => {
            ex.on_request_body(e, body.to_string().as_bytes(), true)
        }
        other => panic!("expected the body read, got {other:?}"),
    }
}

struct Sent {
    ex: Exchange,
    action: RequestBodyAction,
}

fn send(engine: &Arc<Engine>, e: &mut MemoryEnv, user: Option<&str>, body: &Value) -> Sent {
    let method = body["method"].as_str().unwrap();
    let params = &body["params"];
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str);
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), "application/json".into()),
        ("mcp-protocol-version".into(), REV.into()),
        ("mcp-method".into(), method.into()),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name".into(), n.into()));
    }
    if let Some(u) = user {
        headers.push(("authorization".into(), format!("Bearer {}", token(u))));
    }
    let mut ex = Exchange::new(engine.clone());
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.example.com".into(),
        headers,
    };
    let action = match ex.on_request_headers(e, head) {
        RequestHeadersAction::ReadBody(_) => {
            ex.on_request_body(e, body.to_string().as_bytes(), true)
        }
        RequestHeadersAction::Reply(r) => RequestBodyAction::Reply(r),
        RequestHeadersAction::Continue(ed) => RequestBodyAction::Forward(ed),
    };
    Sent { ex, action }
}

impl Sent {
    fn forwarded(&self) -> bool {
        matches!(
            self.action,
            RequestBodyAction::Forward(_) | RequestBodyAction::Rewrite(..)
        )
    }

    fn refusal(&self) -> (u16, Value) {
        match &self.action {
            RequestBodyAction::Reply(r) => (r.status, serde_json::from_slice(&r.body).unwrap()),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The upstream answers `answer` as JSON; what the client gets, and the
    /// records.
    fn answer(mut self, e: &mut MemoryEnv, answer: &Value) -> (Value, Vec<AuditRecord>) {
        self.ex.on_response_headers(
            e,
            200,
            &[("content-type".into(), "application/json".into())],
        );
        let bytes = answer.to_string().into_bytes();
        let out = match self.ex.on_response_body(e, &bytes, true) {
            ResponseBodyAction::Pass => bytes,
            ResponseBodyAction::Replace(b) => b,
            ResponseBodyAction::Buffer => panic!("a whole body is not buffered further"),
        };
        self.ex.on_stream_end(e);
        (serde_json::from_slice(&out).unwrap(), self.ex.take_audit())
    }

    fn records(mut self, e: &mut MemoryEnv) -> Vec<AuditRecord> {
        self.ex.on_stream_end(e);
        self.ex.take_audit()
    }
}

fn create_task(engine: &Arc<Engine>, e: &mut MemoryEnv, user: Option<&str>, task: &str) {
    let call = request(1, "tools/call", json!({"name": "build", "arguments": {}}));
    let sent = send(engine, e, user, &call);
    assert!(sent.forwarded(), "{:?}", sent.action);
    let (out, records) = sent.answer(
        e,
        &json!({"jsonrpc": "2.0", "id": 1, "result": {
            "resultType": "task", "taskId": task, "status": "working",
            "createdAt": "2027-01-15T10:30:00Z", "lastUpdatedAt": "2027-01-15T10:30:00Z",
            "ttlMs": 600_000, "pollIntervalMs": 5000}}),
    );
    assert_eq!(out["result"]["taskId"], task, "{out}");
    assert!(
        records[0].task.is_some(),
        "the creating call's record names the task"
    );
}

/// The tasks extension (SEP-2663, "Security Implications"): "Servers
/// **MUST** perform authentication and authorization checks on each
/// task-related request to ensure that the client has permission to access
/// a task." And (Streamable HTTP): "When `tasks/get`, `tasks/update`, or
/// `tasks/cancel` is sent over the Streamable HTTP transport, the client
/// **MUST** set the `Mcp-Name` header [...] to the value of
/// `params.taskId`."
#[test]
fn a_task_is_bound_to_the_principal_whose_call_created_it() {
    let engine = engine(true);
    let mut e = MemoryEnv::at_secs(NOW);
    create_task(&engine, &mut e, Some("alice"), "786512e2-9e0d-44bd");

    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let mut params = json!({"taskId": "786512e2-9e0d-44bd"});
        if method == "tasks/update" {
            params["inputResponses"] = json!({"confirm": {"action": "accept"}});
        }
        let body = request(2, method, params);
        let alice = send(&engine, &mut e, Some("alice"), &body);
        assert!(alice.forwarded(), "{method}: {:?}", alice.action);

        let bob = send(&engine, &mut e, Some("bob"), &body);
        let (status, json) = bob.refusal();
        assert_eq!(
            (status, &json["error"]["code"]),
            (200, &json!(codes::DENIED))
        );
        assert_eq!(
            json["error"]["data"]["rule"], "McpServer/ci#tasks",
            "{json}"
        );
        let reason = json["error"]["data"]["reason"].as_str().unwrap();
        assert!(reason.contains("another principal"), "{reason}");
        let records = bob.records(&mut e);
        assert_eq!(records[0].decision, Decision::Deny);
        // The handle is a capability: recorded hashed, never in the clear.
        let line = serde_json::to_string(&records[0]).unwrap();
        assert!(
            records[0].task.is_some() && !line.contains("786512e2"),
            "{line}"
        );
    }

    // A handle this proxy never saw created, and one whose TTL ended.
    let unknown = request(3, "tasks/get", json!({"taskId": "guessed-0001"}));
    let (_, json) = send(&engine, &mut e, Some("alice"), &unknown).refusal();
    assert!(
        json["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("not created through this proxy"),
        "{json}"
    );
    e.advance_secs(601);
    let late = request(4, "tasks/get", json!({"taskId": "786512e2-9e0d-44bd"}));
    assert!(!send(&engine, &mut e, Some("alice"), &late).forwarded());
}

/// The same handle, handed by a server to a second caller, stays the first
/// caller's: the answer that would give it away is withheld.
#[test]
fn a_server_cannot_hand_one_callers_task_to_another() {
    let engine = engine(true);
    let mut e = MemoryEnv::at_secs(NOW);
    create_task(&engine, &mut e, Some("alice"), "shared-handle");
    let call = request(5, "tools/call", json!({"name": "build", "arguments": {}}));
    let sent = send(&engine, &mut e, Some("bob"), &call);
    assert!(sent.forwarded());
    let (out, records) = sent.answer(
        &mut e,
        &json!({"jsonrpc": "2.0", "id": 5, "result": {
            "resultType": "task", "taskId": "shared-handle", "status": "working"}}),
    );
    assert_eq!(out["error"]["code"], codes::UPSTREAM_REJECTED, "{out}");
    assert!(records.iter().any(|r| r.reason.contains("cannot be bound")));
}

/// Without identity there is no principal to tell apart, but a handle the
/// proxy did not see created is still refused, and `Mcp-Name` must carry
/// the handle ("the client **MUST** set the `Mcp-Name` header").
#[test]
fn without_identity_tasks_still_need_a_handle_this_proxy_created() {
    let engine = engine(false);
    let mut e = MemoryEnv::at_secs(NOW);
    create_task(&engine, &mut e, None, "t-anon");
    let get = request(2, "tasks/get", json!({"taskId": "t-anon"}));
    assert!(send(&engine, &mut e, None, &get).forwarded());
    let other = request(3, "tasks/get", json!({"taskId": "t-other"}));
    assert!(!send(&engine, &mut e, None, &other).forwarded());

    // The handle in the body and in Mcp-Name must agree.
    let headers = [
        ("content-type", "application/json"),
        ("mcp-protocol-version", REV),
        ("mcp-method", "tasks/get"),
        ("mcp-name", "t-other"),
    ];
    let RequestBodyAction::Reply(r) = send_raw(&engine, &mut e, &headers, &get) else {
        panic!("a mismatch is refused")
    };
    let json: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (r.status, &json["error"]["code"]),
        (400, &json!(codes::HEADER_MISMATCH))
    );

    // A lookalike key a case-insensitive server would read as taskId.
    let sly = request(
        4,
        "tasks/get",
        json!({"taskId": "t-anon", "taskid": "t-other"}),
    );
    assert!(!send(&engine, &mut e, None, &sly).forwarded());
}

/// Caching (server/utilities/caching): "`public`: The response does not
/// contain user-specific data. Any client or intermediary (e.g., shared
/// gateway, caching proxy) MAY cache the response and serve it across
/// authorization contexts." A result the filter decided per caller is not
/// that.
#[test]
fn a_result_decided_per_caller_is_never_public() {
    let list = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "result": {
            "tools": [{"name": "build", "inputSchema": {"type": "object"}}],
            "resultType": "complete", "ttlMs": 60_000, "cacheScope": "public"}})
    };
    let req = request(1, "tools/list", json!({}));
    let mut e = MemoryEnv::at_secs(NOW);

    // Identity governs the server: every caller's view is its own.
    let governed = engine(true);
    let (out, _) = send(&governed, &mut e, Some("alice"), &req).answer(&mut e, &list(1));
    assert_eq!(out["result"]["cacheScope"], "private", "{out}");
    assert_eq!(out["result"]["ttlMs"], 60_000);

    // No identity and nothing changed: the server's hint stands.
    let open = engine(false);
    let (out, _) = send(&open, &mut e, None, &req).answer(&mut e, &list(1));
    assert_eq!(out["result"]["cacheScope"], "public", "{out}");
    assert_eq!(out["result"]["resultType"], "complete");
}

/// Basic (2026-07-28 changelog, major change 2): "Clients SHOULD identify
/// themselves on each request (`io.modelcontextprotocol/clientInfo`)". The
/// record keeps that label beside the verified identity.
#[test]
fn the_clients_meta_identity_is_in_the_record() {
    let engine = engine(true);
    let mut e = MemoryEnv::at_secs(NOW);
    let mut call = request(1, "tools/call", json!({"name": "status", "arguments": {}}));
    call["params"]["_meta"]["io.modelcontextprotocol/clientInfo"] =
        json!({"name": "claude-code", "version": "2.4.1"});
    let records = send(&engine, &mut e, Some("alice"), &call).records(&mut e);
    assert_eq!(records[0].client_name.as_deref(), Some("claude-code"));
    assert_eq!(records[0].client_version.as_deref(), Some("2.4.1"));
    assert_eq!(records[0].subject.as_deref(), Some("alice"));
    let line = serde_json::to_value(&records[0]).unwrap();
    assert_eq!(line["mcp.client.name"], "claude-code");

    // A name longer than any label is cut, on a character boundary.
    call["params"]["_meta"]["io.modelcontextprotocol/clientInfo"] =
        json!({"name": "é".repeat(200)});
    let records = send(&engine, &mut e, Some("alice"), &call).records(&mut e);
    let name = records[0].client_name.clone().unwrap();
    assert!(name.len() <= 128 && name.chars().all(|c| c == 'é'));
}

/// Basic, "Error codes": "`-32020` to `-32099` — reserved for the MCP
/// specification. [...] Implementations **MUST NOT** emit any code from
/// this sub-range that is not defined by this specification and **MUST**
/// use defined codes only with their specified meanings." And the schema's
/// `UnsupportedProtocolVersionError`: `data: {supported, requested}`, with
/// HTTP 400.
#[test]
fn refusals_use_only_the_codes_the_revision_allows() {
    let engine = engine(false);
    let mut e = MemoryEnv::at_secs(NOW);
    let mut body = request(1, "tools/list", json!({}));
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let headers = [
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2099-01-01"),
        ("mcp-method", "tools/list"),
    ];
    let RequestBodyAction::Reply(r) = send_raw(&engine, &mut e, &headers, &body) else {
        panic!("an unknown revision is refused")
    };
    let json: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(json["error"]["code"], codes::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(json["error"]["data"]["requested"], "2099-01-01");
    let supported = json["error"]["data"]["supported"].as_array().unwrap();
    assert!(supported.contains(&json!(REV)), "{json}");

    // A denial: Portcullis's own code, outside the JSON-RPC reserved range.
    let denied = request(2, "tools/call", json!({"name": "deploy", "arguments": {}}));
    let (_, json) = send(&engine, &mut e, None, &denied).refusal();
    let code = json["error"]["code"].as_i64().unwrap();
    assert_eq!(code, codes::DENIED);
    assert!(!(-32768..=-32000).contains(&code));
}

/// Subscriptions (basic/patterns/subscriptions; changelog major change 4):
/// `subscriptions/listen` is "a single long-lived POST-response stream for
/// opted-in server-to-client change notifications", tagged with
/// `io.modelcontextprotocol/subscriptionId`; the tasks extension sends
/// `notifications/tasks` on it, each carrying "the complete task state",
/// results included. Everything on it is screened as it passes, like any
/// other stream.
#[test]
fn a_subscriptions_listen_stream_is_screened_as_it_flows() {
    let engine = engine(false);
    let mut e = MemoryEnv::at_secs(NOW);
    let listen = request(
        1,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    );
    let mut sent = send(&engine, &mut e, None, &listen);
    assert!(sent.forwarded(), "{:?}", sent.action);
    sent.ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "text/event-stream".into())],
    );
    let meta = json!({"io.modelcontextprotocol/subscriptionId": "sub-1"});
    let events = [
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
            "params": {"_meta": meta}}),
        json!({"jsonrpc": "2.0", "method": "notifications/tasks", "params": {
            "_meta": meta, "taskId": "t-9", "status": "completed", "resultType": "complete",
            "result": {"content": [{"type": "text",
                "text": "build done; mail ops@example.com or call +1 415 555 0100"}]}}}),
    ];
    let mut out = Vec::new();
    for ev in &events {
        let chunk = format!("event: message\ndata: {ev}\n\n");
        match sent.ex.on_response_body(&mut e, chunk.as_bytes(), false) {
            ResponseBodyAction::Pass => out.extend_from_slice(chunk.as_bytes()),
            ResponseBodyAction::Replace(b) => out.extend_from_slice(&b),
            ResponseBodyAction::Buffer => panic!("a stream is never buffered whole"),
        }
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("notifications/tools/list_changed"), "{text}");
    assert!(!text.contains("ops@example.com"), "{text}");
    assert!(text.contains("[REDACTED:EMAIL]"), "{text}");
    let records = sent.records(&mut e);
    assert!(
        records
            .iter()
            .any(|r| r.method.as_deref() == Some("notifications/tasks")),
        "{records:?}"
    );
}

/// server/discover: "servers MUST implement this RPC to advertise their
/// supported protocol versions, capabilities, and identity" (changelog,
/// major change 3). It is allowed on every registered server, and what it
/// says of the server reaches the client screened.
#[test]
fn server_discover_passes_and_its_answer_is_screened() {
    let engine = engine(false);
    let mut e = MemoryEnv::at_secs(NOW);
    let discover = request(1, "server/discover", json!({}));
    let sent = send(&engine, &mut e, None, &discover);
    assert!(sent.forwarded(), "{:?}", sent.action);
    let (out, records) = sent.answer(
        &mut e,
        &json!({"jsonrpc": "2.0", "id": 1, "result": {
            "supportedVersions": [REV],
            "capabilities": {"tools": {"listChanged": true}},
            "instructions": "Questions? Write to admin@example.com.",
            "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "ci", "version": "1.0.0"}}}}),
    );
    assert_eq!(out["result"]["supportedVersions"], json!([REV]));
    let instructions = out["result"]["instructions"].as_str().unwrap();
    assert!(!instructions.contains("admin@example.com"), "{out}");
    assert_eq!(records[0].method.as_deref(), Some("server/discover"));
    assert_eq!(records[0].decision, Decision::Allow);
}

/// Multi round-trip requests (basic/patterns/mrtr): the client answers an
/// `input_required` result by retrying "the original request" with
/// `inputResponses`, and the tasks extension's `tasks/update` carries them
/// too. What a user or agent puts there reaches the server like arguments
/// do, so it meets the same content policy: a key is refused (secrets block
/// on requests by default), PII is flagged in the record.
#[test]
fn input_responses_meet_the_arguments_content_policy() {
    let engine = engine(false);
    let mut e = MemoryEnv::at_secs(NOW);
    let mut retry = request(1, "tools/call", json!({"name": "build", "arguments": {}}));
    retry["params"]["inputResponses"] = json!({"who": {"action": "accept",
        "content": {"email": "carol@example.com"}}});
    retry["params"]["requestState"] = json!("opaque-server-state");
    let sent = send(&engine, &mut e, None, &retry);
    assert!(sent.forwarded(), "{:?}", sent.action);
    let records = sent.records(&mut e);
    let found = serde_json::to_value(&records[0].content).unwrap();
    assert!(found.to_string().contains("EMAIL"), "{found}");

    create_task(&engine, &mut e, None, "t-key");
    for body in [
        {
            let mut r = retry.clone();
            r["params"]["inputResponses"]["who"]["content"] =
                json!({"key": "AKIAIOSFODNN7EXAMPLE"});
            r
        },
        request(
            2,
            "tasks/update",
            json!({"taskId": "t-key", "inputResponses": {"k": {"action": "accept",
                "content": {"key": "AKIAIOSFODNN7EXAMPLE"}}}}),
        ),
    ] {
        let (_, json) = send(&engine, &mut e, None, &body).refusal();
        assert_eq!(json["error"]["code"], codes::DENIED, "{json}");
        let rule = json["error"]["data"]["rule"].as_str().unwrap();
        assert!(rule.starts_with("ContentPolicy/"), "{json}");
    }
}

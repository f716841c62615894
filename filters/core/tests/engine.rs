//! The engine end to end, natively: requests and responses through an
//! `Exchange`, with the decisions, edits, replies and audit records checked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::bundle::Document;
use portcullis_core::engine::{
    HeaderEdits, RequestBodyAction, RequestHead, RequestHeadersAction, ResponseBodyAction,
};
use portcullis_core::mcp::codes;
use portcullis_core::test_util::{self, MemoryEnv, doc, server};
use portcullis_core::{Engine, Exchange};
use serde_json::{Value, json};
use std::sync::Arc;

/// The host: fixed clock, seeded randomness, no shared store.
fn env() -> MemoryEnv {
    MemoryEnv::new().without_shared_data()
}

fn engine_with(extra: Vec<Document>) -> Arc<Engine> {
    let mut everything = server("everything", "/mcp", &["echo", "get-*"]);
    everything.spec["resources"] = json!([{"uri": "file:///public/*"}]);
    everything.spec["prompts"] = json!([{"name": "greet"}]);
    let mut docs = vec![everything];
    docs.extend(extra);
    test_util::engine(docs)
}

fn engine() -> Arc<Engine> {
    engine_with(vec![])
}

fn post(headers: &[(&str, &str)]) -> RequestHead {
    let mut h: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "localhost:8080".into(),
        headers: h,
    }
}

/// Sends `body` as a POST; returns the body action.
fn send(
    ex: &mut Exchange,
    e: &mut MemoryEnv,
    head: RequestHead,
    body: &[u8],
) -> (HeaderEdits, RequestBodyAction) {
    let edits = match ex.on_request_headers(e, head) {
        RequestHeadersAction::ReadBody(edits) => edits,
        other => panic!("expected ReadBody, got {other:?}"),
    };
    (edits, ex.on_request_body(e, body, true))
}

fn call(tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{"text":"hi"}}}).to_string()
}

fn reply_json(action: &RequestBodyAction) -> (u16, Value) {
    match action {
        RequestBodyAction::Reply(r) => (r.status, serde_json::from_slice(&r.body).unwrap()),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn header<'a>(edits: &'a HeaderEdits, name: &str) -> Option<&'a str> {
    edits
        .set
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn allowed_call_is_forwarded_with_audit_headers_and_spoofed_ones_removed() {
    let engine = engine();
    let mut ex = Exchange::new(engine.clone());
    let mut e = env();
    let head = post(&[
        ("x-mcp-decision", "allow"),
        ("X-MCP-Tool", "delete-file"),
        ("x-request-id", "req-1"),
    ]);
    let (strip, action) = send(&mut ex, &mut e, head, call("echo").as_bytes());
    assert_eq!(
        strip.remove,
        vec!["x-mcp-decision".to_string(), "X-MCP-Tool".to_string()]
    );
    let RequestBodyAction::Forward(edits) = action else {
        panic!("{action:?}")
    };
    assert_eq!(header(&edits, "x-mcp-method"), Some("tools/call"));
    assert_eq!(header(&edits, "x-mcp-server"), Some("everything"));
    assert_eq!(header(&edits, "x-mcp-tool"), Some("echo"));
    assert_eq!(header(&edits, "x-mcp-decision"), Some("allow"));
    assert_eq!(
        header(&edits, "x-mcp-bundle-version"),
        Some(engine.version())
    );
    // The request id is the filter's own: a client-chosen x-request-id
    // would let two exchanges share one. The client's is recorded beside it.
    let own_id = header(&edits, "x-mcp-request-id").unwrap().to_owned();
    assert_eq!(own_id.len(), 32);
    assert_ne!(own_id, "req-1");
    assert!(
        ex.take_audit().is_empty(),
        "the record waits for the response"
    );

    let resp_edits = ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "application/json".into())],
    );
    assert_eq!(resp_edits.remove, vec!["content-length".to_string()]);
    let body = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
    assert_eq!(
        ex.on_response_body(&mut e, body, true),
        ResponseBodyAction::Pass
    );
    let records = ex.take_audit();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.decision, Decision::Allow);
    assert_eq!(r.outcome, Outcome::Result);
    assert_eq!(r.tool.as_deref(), Some("echo"));
    assert_eq!(r.rule.as_deref(), Some("McpServer/everything#tools[0]"));
    assert_eq!(r.request_id, own_id);
    assert_eq!(r.client_request_id.as_deref(), Some("req-1"));
    assert_eq!(r.http_status, Some(200));
    assert!(r.arguments_sha256.as_ref().unwrap().len() == 64);
    let line = r.to_json_line();
    assert!(
        !line.contains("\"hi\""),
        "arguments never appear in records: {line}"
    );
}

#[test]
fn denied_call_gets_a_stable_jsonrpc_error_and_a_record() {
    let mut ex = Exchange::new(engine());
    let mut e = env();
    let (_, action) = send(&mut ex, &mut e, post(&[]), call("delete-file").as_bytes());
    let (status, body) = reply_json(&action);
    assert_eq!(status, 200);
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["code"], codes::DENIED);
    assert_eq!(body["error"]["data"]["rule"], "McpServer/everything#tools");
    assert!(
        body["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("delete-file")
    );
    assert_eq!(body["error"]["data"]["requestId"], ex.request_id());
    let records = ex.take_audit();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision, Decision::Deny);
    assert_eq!(records[0].outcome, Outcome::Denied);
    // The local reply comes back through the response path; only its
    // doubled content type (Envoy adds ours to its text/plain) is mended.
    let edits = ex.on_response_headers(
        &mut e,
        200,
        &[
            ("content-type".into(), "text/plain".into()),
            ("content-type".into(), "application/json".into()),
        ],
    );
    assert_eq!(
        edits.set,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert!(edits.remove.is_empty());
    assert_eq!(
        ex.on_response_body(&mut e, b"{}", true),
        ResponseBodyAction::Pass
    );
    assert!(ex.take_audit().is_empty(), "still exactly one record");
}

#[test]
fn escaped_names_are_decided_on_their_decoded_form() {
    let mut ex = Exchange::new(engine());
    let mut e = env();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\u0065cho"}}"#;
    let (_, action) = send(&mut ex, &mut e, post(&[]), body.as_bytes());
    let RequestBodyAction::Forward(edits) = action else {
        panic!("{action:?}")
    };
    assert_eq!(header(&edits, "x-mcp-tool"), Some("echo"));
    let mut ex = Exchange::new(engine());
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"delete\u002dfile"}}"#;
    let (_, action) = send(&mut ex, &mut e, post(&[]), body.as_bytes());
    assert_eq!(reply_json(&action).1["error"]["code"], codes::DENIED);
}

#[test]
fn bad_bodies_get_clear_errors_and_records() {
    let cases: Vec<(&[u8], u16, i64)> = vec![
        (b"{not json", 400, codes::PARSE_ERROR),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\xff\"}", 400, codes::PARSE_ERROR),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete-file"}}"#, 400, codes::PARSE_ERROR),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"delete-file"}}"#, 400, codes::INVALID_REQUEST),
        (br#"{"jsonrpc":"2.0","id":1}"#, 400, codes::INVALID_REQUEST),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/exec","params":{}}"#, 200, codes::DENIED),
    ];
    for (body, status, code) in cases {
        let mut ex = Exchange::new(engine());
        let mut e = env();
        let (_, action) = send(&mut ex, &mut e, post(&[]), body);
        let (got_status, json) = reply_json(&action);
        assert_eq!(
            (got_status, json["error"]["code"].as_i64().unwrap()),
            (status, code),
            "{}",
            String::from_utf8_lossy(body)
        );
        let records = ex.take_audit();
        assert_eq!(records.len(), 1, "{}", String::from_utf8_lossy(body));
        assert_eq!(records[0].decision, Decision::Deny);
    }
}

#[test]
fn oversize_bodies_get_413_from_header_or_size() {
    let engine = engine_with(vec![doc(
        "Settings",
        "default",
        json!({"maxRequestBytes": 64}),
    )]);
    let mut ex = Exchange::new(engine.clone());
    let mut e = env();
    let RequestHeadersAction::ReadBody(_) = ex.on_request_headers(&mut e, post(&[])) else {
        panic!()
    };
    assert_eq!(ex.on_request_body_size(32), None);
    let reply = ex.on_request_body_size(65).unwrap();
    assert_eq!(reply.status, 413);
    let json: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["code"], codes::TOO_LARGE);
    assert_eq!(ex.take_audit().len(), 1);

    let mut ex = Exchange::new(engine);
    let RequestHeadersAction::Reply(reply) =
        ex.on_request_headers(&mut e, post(&[("content-length", "1000")]))
    else {
        panic!()
    };
    assert_eq!(reply.status, 413);
    assert_eq!(ex.take_audit().len(), 1);
}

#[test]
fn wrong_content_type_on_an_mcp_route_is_refused() {
    let mut ex = Exchange::new(engine());
    let mut e = env();
    let mut head = post(&[]);
    head.headers[0].1 = "text/plain".into();
    let RequestHeadersAction::Reply(reply) = ex.on_request_headers(&mut e, head) else {
        panic!()
    };
    assert_eq!(reply.status, 415);
    let json: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["code"], codes::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(ex.take_audit().len(), 1);
}

#[test]
fn respelled_routes_are_governed_and_unreadable_ones_refused() {
    let mut e = env();
    // Servers route /%4D%43%50;x/ to /mcp: so does the filter, and governs it.
    let mut ex = Exchange::new(engine());
    let mut head = post(&[]);
    head.path = "/%4D%43%50;x/".into();
    head.authority = "LOCALHOST.:8080".into();
    let (_, action) = send(&mut ex, &mut e, head, call("delete-file").as_bytes());
    let (status, body) = reply_json(&action);
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], codes::DENIED);
    assert_eq!(body["error"]["data"]["rule"], "McpServer/everything#tools");
    // A path servers could decode differently is refused before routing.
    let mut ex = Exchange::new(engine());
    let mut head = post(&[]);
    head.path = "/%252e%252e/mcp".into();
    let RequestHeadersAction::Reply(reply) = ex.on_request_headers(&mut e, head) else {
        panic!()
    };
    assert_eq!(reply.status, 400);
    let json: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["code"], codes::INVALID_REQUEST);
    let reason = json["error"]["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("double percent-encoding"), "{reason}");
    let records = ex.take_audit();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].http_status, Some(400));
}

#[test]
fn a_batch_with_one_denied_call_is_refused_whole() {
    let mut ex = Exchange::new(engine());
    let mut e = env();
    let body = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete-file"}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{}}
    ])
    .to_string();
    let (_, action) = send(
        &mut ex,
        &mut e,
        post(&[("mcp-protocol-version", "2025-03-26")]),
        body.as_bytes(),
    );
    let (status, json) = reply_json(&action);
    assert_eq!(status, 200);
    let items = json.as_array().unwrap();
    assert_eq!(
        items.len(),
        2,
        "one error per request; none for the notification"
    );
    assert_eq!(items[0]["id"], 1);
    assert!(
        items[0]["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("batch refused because element 1")
    );
    assert_eq!(items[1]["id"], 2);
    assert!(
        items[1]["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("delete-file")
    );
    let records = ex.take_audit();
    assert_eq!(records.len(), 3, "one record per message");
    assert!(records.iter().all(|r| r.decision == Decision::Deny));

    // An all-allowed batch is forwarded, and answered element by element.
    let mut ex = Exchange::new(engine());
    let body = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
        {"jsonrpc":"2.0","id":"b","method":"tools/list"}
    ])
    .to_string();
    let (_, action) = send(
        &mut ex,
        &mut e,
        post(&[("mcp-protocol-version", "2025-03-26")]),
        body.as_bytes(),
    );
    let RequestBodyAction::Forward(edits) = action else {
        panic!("{action:?}")
    };
    assert_eq!(
        header(&edits, "x-mcp-method"),
        Some("tools/call,tools/list")
    );
    ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "application/json".into())],
    );
    let resp = json!([
        {"jsonrpc":"2.0","id":"b","result":{"tools":[{"name":"echo"},{"name":"delete-file"}]}},
        {"jsonrpc":"2.0","id":1,"result":{}}
    ])
    .to_string();
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut e, resp.as_bytes(), true)
    else {
        panic!()
    };
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out[0]["result"]["tools"], json!([{"name":"echo"}]));
    assert_eq!(ex.take_audit().len(), 2);

    // Later revisions forbid batches.
    let mut ex = Exchange::new(engine());
    let (_, action) = send(
        &mut ex,
        &mut e,
        post(&[("mcp-protocol-version", "2025-06-18")]),
        body.as_bytes(),
    );
    assert_eq!(
        reply_json(&action).1["error"]["code"],
        codes::INVALID_REQUEST
    );
}

#[test]
fn stateless_revision_headers_must_match_the_body() {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}).to_string();
    let good = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let mut e = env();
    let mut ex = Exchange::new(engine());
    let (_, action) = send(&mut ex, &mut e, post(&good), body.as_bytes());
    assert!(
        matches!(action, RequestBodyAction::Forward(_)),
        "{action:?}"
    );
    for bad in [
        [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "echo"),
        ],
        [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete-file"),
        ],
    ] {
        let mut ex = Exchange::new(engine());
        let (_, action) = send(&mut ex, &mut e, post(&bad), body.as_bytes());
        let (status, json) = reply_json(&action);
        assert_eq!(status, 400);
        assert_eq!(json["error"]["code"], codes::HEADER_MISMATCH);
        assert_eq!(ex.take_audit().len(), 1);
    }
}

#[test]
fn tools_list_is_filtered_in_json_and_sse_responses() {
    let list = json!({"jsonrpc":"2.0","id":5,"result":{"tools":[
        {"name":"echo"},{"name":"get-weather"},{"name":"delete-file"},{"name":"add"}
    ]}});
    let req = json!({"jsonrpc":"2.0","id":5,"method":"tools/list"}).to_string();
    let mut e = env();

    let mut ex = Exchange::new(engine());
    send(&mut ex, &mut e, post(&[]), req.as_bytes());
    ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "application/json".into())],
    );
    let bytes = list.to_string();
    assert_eq!(
        ex.on_response_body(&mut e, &bytes.as_bytes()[..10], false),
        ResponseBodyAction::Buffer
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut e, bytes.as_bytes(), true)
    else {
        panic!()
    };
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        out["result"]["tools"],
        json!([{"name":"echo"},{"name":"get-weather"}])
    );
    let records = ex.take_audit();
    assert_eq!(records[0].filtered_out, Some(2));

    // SSE, split into small chunks, with a progress notification first.
    let mut ex = Exchange::new(engine());
    send(&mut ex, &mut e, post(&[]), req.as_bytes());
    let edits = ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "text/event-stream".into())],
    );
    assert_eq!(edits.remove, vec!["content-length".to_string()]);
    let stream = format!(
        "event: message\ndata: {}\n\nevent: message\nid: 9\ndata: {}\n\n",
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}),
        list
    );
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = stream.as_bytes().chunks(7).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        match ex.on_response_body(&mut e, chunk, i + 1 == chunks.len()) {
            ResponseBodyAction::Pass => out.extend_from_slice(chunk),
            ResponseBodyAction::Replace(b) => out.extend_from_slice(&b),
            ResponseBodyAction::Buffer => panic!("SSE is never buffered whole"),
        }
    }
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""
        ),
        "{text}"
    );
    assert!(text.contains("id: 9\n"));
    assert!(!text.contains("delete-file"));
    assert!(text.contains("get-weather"));
    let records = ex.take_audit();
    assert_eq!(
        records.len(),
        2,
        "the request and the server's notification"
    );
}

#[test]
fn unparseable_upstream_responses_never_pass() {
    let req = call("echo");
    let mut e = env();
    let mut ex = Exchange::new(engine());
    send(&mut ex, &mut e, post(&[]), req.as_bytes());
    ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "application/json".into())],
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut e, b"{\"jsonrpc\":", true)
    else {
        panic!()
    };
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["id"], 1);
    assert_eq!(out["error"]["code"], codes::UPSTREAM_REJECTED);
    assert_eq!(ex.take_audit()[0].outcome, Outcome::UpstreamInvalid);

    // An SSE event with invalid JSON is replaced by an error event.
    let mut ex = Exchange::new(engine());
    send(&mut ex, &mut e, post(&[]), req.as_bytes());
    ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "text/event-stream".into())],
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut e, b"data: {oops\n\n", true)
    else {
        panic!()
    };
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&codes::UPSTREAM_REJECTED.to_string()),
        "{text}"
    );
    assert!(!text.contains("oops"));
}

#[test]
fn notifications_are_recorded_at_202_and_unmatched_routes_pass() {
    let mut e = env();
    let mut ex = Exchange::new(engine());
    let body = json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string();
    let (_, action) = send(&mut ex, &mut e, post(&[]), body.as_bytes());
    assert!(matches!(action, RequestBodyAction::Forward(_)));
    ex.on_response_headers(&mut e, 202, &[]);
    let records = ex.take_audit();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, Outcome::Accepted);

    // An unmatched JSON POST is read (it might be shadow MCP); not MCP, it
    // passes untouched and unrecorded, spoofed x-mcp-* headers stripped.
    let mut ex = Exchange::new(engine());
    let mut head = post(&[("x-mcp-server", "spoof")]);
    head.path = "/health".into();
    let RequestHeadersAction::ReadBody(edits) = ex.on_request_headers(&mut e, head) else {
        panic!()
    };
    assert_eq!(edits.remove, vec!["x-mcp-server".to_string()]);
    let action = ex.on_request_body(&mut e, br#"{"status":"ok"}"#, true);
    assert!(
        matches!(action, RequestBodyAction::Forward(_)),
        "{action:?}"
    );
    assert!(ex.take_audit().is_empty());
    // Any method, any content type: a body a server could read as JSON-RPC
    // on an unregistered route is MCP, refused (shadow MCP); a request
    // without one is forwarded as soon as that is known.
    let mut ex = Exchange::new(engine());
    let mut head = post(&[("x-mcp-server", "spoof"), ("content-type", "text/plain")]);
    head.path = "/health".into();
    head.method = "PUT".into();
    let RequestHeadersAction::ReadBody(edits) = ex.on_request_headers(&mut e, head) else {
        panic!()
    };
    assert_eq!(edits.remove, vec!["x-mcp-server".to_string()]);
    let (status, _) = reply_json(
        &ex.on_request_body(
            &mut e,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}})
                .to_string()
                .as_bytes(),
            true,
        ),
    );
    assert_eq!(status, 403);
    assert!(ex.take_audit()[0].shadow);
    let mut ex = Exchange::new(engine());
    let mut head = post(&[("x-mcp-server", "spoof")]);
    head.path = "/health".into();
    head.method = "GET".into();
    let RequestHeadersAction::ReadBody(edits) = ex.on_request_headers(&mut e, head) else {
        panic!()
    };
    assert_eq!(edits.remove, vec!["x-mcp-server".to_string()]);
    assert!(matches!(
        ex.on_request_body(&mut e, b"", true),
        RequestBodyAction::Forward(_)
    ));
}

#[test]
fn an_unanswered_request_is_recorded_at_stream_end() {
    let mut e = env();
    let mut ex = Exchange::new(engine());
    send(&mut ex, &mut e, post(&[]), call("echo").as_bytes());
    ex.on_stream_end(&mut e);
    let records = ex.take_audit();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, Outcome::NoResponse);
    ex.on_stream_end(&mut e);
    assert!(ex.take_audit().is_empty());
}

#[test]
fn legacy_sse_transport_keeps_its_endpoint_event_and_filters_lists() {
    let mut e = env();
    // One engine, as one VM: the GET and the POST share its state.
    let engine = engine();
    let mut ex = Exchange::new(engine.clone());
    let head = RequestHead {
        method: "GET".into(),
        path: "/mcp/sse".into(),
        authority: "localhost".into(),
        headers: vec![],
    };
    // A GET is held until it is known to carry no body.
    assert!(matches!(
        ex.on_request_headers(&mut e, head),
        RequestHeadersAction::ReadBody(_)
    ));
    assert!(matches!(
        ex.on_request_body(&mut e, b"", true),
        RequestBodyAction::Forward(_)
    ));
    ex.on_response_headers(
        &mut e,
        200,
        &[("content-type".into(), "text/event-stream".into())],
    );
    let endpoint = b"event: endpoint\ndata: /mcp/messages?session_id=abc\n\n";
    assert_eq!(
        ex.on_response_body(&mut e, endpoint, false),
        ResponseBodyAction::Pass
    );
    // The POST carrying a tools/list names the session; forwarded, it is
    // filed for the GET stream, where its answer will come.
    let mut post_ex = Exchange::new(engine.clone());
    let mut head = post(&[("mcp-protocol-version", "2024-11-05")]);
    head.path = "/mcp/messages?session_id=abc".into();
    assert!(matches!(
        post_ex.on_request_headers(&mut e, head),
        RequestHeadersAction::ReadBody(_)
    ));
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    assert!(matches!(
        post_ex.on_request_body(&mut e, body.as_bytes(), true),
        RequestBodyAction::Forward(_)
    ));
    // The answer arrives on the GET stream (maybe before the POST's 202),
    // is recognised as the tools/list's, and filtered.
    let list = format!(
        "event: message\ndata: {}\n\n",
        json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"},{"name":"rm"}]}})
    );
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut e, list.as_bytes(), false)
    else {
        panic!()
    };
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("echo") && !text.contains("\"rm\""), "{text}");
    let recs = ex.take_audit();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].method.as_deref(), Some("tools/list"));
    assert_eq!(recs[0].filtered_out, Some(1));
    // A second answer with the same id answers nothing: refused, recorded.
    let ResponseBodyAction::Replace(out) = ex.on_response_body(&mut e, list.as_bytes(), false)
    else {
        panic!()
    };
    assert!(out.is_empty());
    assert_eq!(ex.take_audit()[0].outcome, Outcome::UpstreamInvalid);

    // The POST itself got 202: recorded as accepted.
    post_ex.on_response_headers(&mut e, 202, &[]);
    let records = post_ex.take_audit();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, Outcome::Accepted);
}

//! Human approval over MCP 2026-07-28's multi round-trip requests, through
//! the stream driver and its outcall seam (`Step::Call` /
//! `StreamDriver::call_done`): the `input_required` answer, the signed
//! `requestState`, the retry checked and spent once, every refusal, and
//! the older revisions' error flow, and 2025-11-25's
//! `URLElicitationRequiredError` (`-32042`) for sessions that declared URL
//! mode. The approval service's answers are
//! built here with the same signing code the control plane uses; the
//! service itself is tested end to end in tests/e2e_approval.rs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ed25519_dalek::SigningKey;
use portcullis_core::driver::{CallResult, OutcallKind, Output, Step, StreamDriver};
use portcullis_core::engine::RequestHead;
use portcullis_core::mcp::codes;
use portcullis_core::policy::approval;
use portcullis_core::test_util::{self, MemoryEnv, doc};
use portcullis_core::{Engine, audit::AuditRecord};
use serde_json::{Value, json};
use std::sync::Arc;

const NOW: u64 = 1_800_009_000;
const REV: &str = "2026-07-28";

fn engine(key: &SigningKey) -> Arc<Engine> {
    use base64::Engine as _;
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes());
    test_util::engine(vec![
        test_util::server("payments", "/mcp", &["pay", "echo"]),
        doc(
            "Policy",
            "pay",
            json!({"rules": [
                {"id": "pay", "effect": "permit", "tools": ["pay", "echo"]},
                {"id": "big", "effect": "requireApproval", "tools": ["pay"],
                 "approvers": {"roles": ["payments-approver"], "count": 1}},
            ]}),
        ),
        doc(
            "Settings",
            "settings",
            json!({"approvals": {"keys": [public], "maxTtl": "1h",
                "service": {"cluster": "approvals", "authority": "cp.internal",
                            "pageUrl": "https://approve.example.com/approvals"}}}),
        ),
    ])
}

/// A 2026-07-28 tools/call from a client that declares URL elicitation.
fn call(id: u64, args: Value, extra: Value) -> Value {
    let mut params = json!({"name": "pay", "arguments": args, "_meta": {
        "io.modelcontextprotocol/protocolVersion": REV,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}, "url": {}}},
    }});
    if let (Some(p), Value::Object(x)) = (params.as_object_mut(), extra) {
        p.extend(x);
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

struct Stream {
    d: StreamDriver,
    out: Output,
}

fn send(engine: &Arc<Engine>, e: &mut MemoryEnv, body: &Value, revision: &str) -> Stream {
    send_in(engine, e, body, revision, None)
}

fn send_in(
    engine: &Arc<Engine>,
    e: &mut MemoryEnv,
    body: &Value,
    revision: &str,
    session: Option<&str>,
) -> Stream {
    let mut d = StreamDriver::new(engine.clone());
    let mut headers = vec![
        ("content-type".into(), "application/json".into()),
        ("mcp-protocol-version".into(), revision.into()),
    ];
    if revision == REV {
        headers.push(("mcp-method".into(), "tools/call".into()));
        headers.push(("mcp-name".into(), "pay".into()));
    }
    if let Some(s) = session {
        headers.push(("mcp-session-id".into(), s.into()));
    }
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.example.com".into(),
        headers,
    };
    // Under `requestHeaders: forward` (the default) the headers go on and
    // the body is held.
    let out = d.request_headers(e, head, false);
    assert!(matches!(out.step, Step::Pause | Step::Continue), "{out:?}");
    let bytes = body.to_string().into_bytes();
    let out = d.request_body(e, &mut bytes.as_slice(), true);
    Stream { d, out }
}

impl Stream {
    fn call(&self) -> (u32, String, String, Value) {
        let Step::Call(c) = &self.out.step else {
            panic!("expected an outcall, got {:?}", self.out.step);
        };
        assert_eq!(c.cluster, "approvals");
        let OutcallKind::Http {
            method,
            path,
            authority,
            body,
            ..
        } = &c.kind
        else {
            panic!("an HTTP call")
        };
        assert_eq!(authority, "cp.internal");
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        (c.id, method.clone(), path.clone(), body)
    }

    fn answer(&mut self, e: &mut MemoryEnv, status: u16, body: Value) {
        let id = self.call().0;
        self.out = self.d.call_done(
            e,
            id,
            CallResult::Http {
                status,
                headers: vec![],
                body: body.to_string().into_bytes(),
            },
        );
    }

    fn reply(&self) -> Value {
        let Step::Reply(r) = &self.out.step else {
            panic!("expected a reply, got {:?}", self.out.step);
        };
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    fn forwarded(&self) -> bool {
        self.out.step == Step::Continue
    }

    fn records(mut self, e: &mut MemoryEnv) -> Vec<AuditRecord> {
        self.d.end(e);
        self.d.take_audit()
    }
}

/// What the approval service answers a registration: a request id and a
/// state it signed.
fn registered(key: &SigningKey, approval_id: &str, req: &str, ttl: u64) -> Value {
    let st = approval::RequestState {
        req: req.into(),
        id: approval_id.into(),
        agt: "-".into(),
        iat: NOW,
        exp: NOW + ttl,
    };
    json!({"request": req, "requestState": approval::sign_state(&st, key).unwrap()})
}

/// The first attempt: registration, then `input_required`. Returns the
/// state and the approval id.
fn first_attempt(engine: &Arc<Engine>, e: &mut MemoryEnv, key: &SigningKey) -> (String, String) {
    let args = json!({"amount": 500, "to": "acct-1", "memo": "for alice@example.com"});
    let mut s = send(engine, e, &call(1, args, json!({})), REV);
    let (_, method, path, reg) = s.call();
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/approvals/v1/requests")
    );
    let approval_id = reg["approvalId"].as_str().unwrap().to_owned();
    let binding = approval::parse_id(&approval_id).unwrap();
    assert_eq!(
        (binding.srv.as_str(), binding.tool.as_str()),
        ("payments", "pay")
    );
    assert_eq!(binding.rule, "Policy/pay#big");
    // What the page shows has PII redacted before it leaves the filter.
    assert!(
        !reg["arguments"].to_string().contains("alice@example.com"),
        "{reg}"
    );
    assert_eq!(reg["arguments"]["amount"], 500);

    s.answer(e, 200, registered(key, &approval_id, "r-1", 900));
    let body = s.reply();
    let result = &body["result"];
    assert_eq!(body["id"], 1);
    assert_eq!(result["resultType"], "input_required");
    let ask = &result["inputRequests"]["portcullis_approval"];
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(ask["params"]["mode"], "url");
    assert_eq!(
        ask["params"]["url"],
        "https://approve.example.com/approvals/r-1"
    );
    assert!(
        ask["params"]["message"]
            .as_str()
            .unwrap()
            .contains("approve")
    );
    let state = result["requestState"].as_str().unwrap().to_owned();
    let recs = s.records(e);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].approval.as_ref().unwrap().status, "input_required");
    (state, approval_id)
}

fn retry(state: &str, id: u64, action: &str) -> Value {
    call(
        id,
        json!({"amount": 500, "to": "acct-1", "memo": "for alice@example.com"}),
        json!({"requestState": state,
               "inputResponses": {"portcullis_approval": {"action": action}}}),
    )
}

#[test]
fn input_required_then_approved_retry_runs_once() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let engine = engine(&key);
    let mut e = MemoryEnv::at_secs(NOW);
    let (state, approval_id) = first_attempt(&engine, &mut e, &key);

    // Retried before anyone decided: asked again, same page, same state.
    let mut s = send(&engine, &mut e, &retry(&state, 2, "accept"), REV);
    let (_, method, path, _) = s.call();
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("GET", "/approvals/v1/requests/r-1/decision")
    );
    s.answer(&mut e, 200, json!({"status": "pending"}));
    let body = s.reply();
    assert_eq!(body["result"]["resultType"], "input_required");
    assert_eq!(body["result"]["requestState"], state);

    // Approved: the grant the page minted is verified offline and spent.
    let grant = approval::mint(&approval_id, &key, NOW, 600, &[7; 16]).unwrap();
    let approved = json!({"status": "approved", "token": grant, "approvers": ["bob"]});
    let mut s = send(&engine, &mut e, &retry(&state, 3, "accept"), REV);
    s.answer(&mut e, 200, approved.clone());
    assert!(s.forwarded(), "{:?}", s.out);
    // The filter's requestState and its answer never reach the upstream
    // (the upstream would take them for its own).
    let sent: Value = serde_json::from_slice(s.out.body.as_ref().unwrap()).unwrap();
    assert!(sent["params"].get("requestState").is_none(), "{sent}");
    assert!(sent["params"].get("inputResponses").is_none(), "{sent}");
    assert_eq!(sent["params"]["arguments"]["amount"], 500);
    let recs = s.records(&mut e);
    let note = recs[0].approval.as_ref().unwrap();
    assert_eq!(note.status, "granted");
    assert_eq!(note.approvers, vec!["bob".to_owned()]);

    // The same state again: the service still says approved, with the same
    // grant, which is spent.
    let mut s = send(&engine, &mut e, &retry(&state, 4, "accept"), REV);
    s.answer(&mut e, 200, approved);
    let body = s.reply();
    assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED);
    assert_eq!(body["error"]["data"]["approval"]["error"], "already_used");
}

#[test]
fn denied_expired_declined_and_tampered_are_refused() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let engine = engine(&key);
    let mut e = MemoryEnv::at_secs(NOW);
    let (state, approval_id) = first_attempt(&engine, &mut e, &key);
    let error_of = |s: &Stream| s.reply()["error"]["data"]["approval"]["error"].clone();

    let mut s = send(&engine, &mut e, &retry(&state, 2, "accept"), REV);
    s.answer(&mut e, 200, json!({"status": "denied"}));
    assert_eq!(error_of(&s), "denied");
    assert_eq!(s.reply()["error"]["code"], codes::APPROVAL_REQUIRED);

    let mut s = send(&engine, &mut e, &retry(&state, 3, "accept"), REV);
    s.answer(&mut e, 200, json!({"status": "expired"}));
    assert_eq!(error_of(&s), "expired");

    // The user declined to open the page: no call to the service.
    let s = send(&engine, &mut e, &retry(&state, 4, "decline"), REV);
    assert_eq!(error_of(&s), "declined");

    // The state for other arguments (same page, changed call).
    let other = call(
        5,
        json!({"amount": 5000, "to": "acct-1", "memo": "for alice@example.com"}),
        json!({"requestState": state}),
    );
    let s = send(&engine, &mut e, &other, REV);
    assert_eq!(error_of(&s), "invalid_state");

    // A state signed by a key the bundle does not list.
    let rogue = SigningKey::from_bytes(&[1u8; 32]);
    let forged = registered(&rogue, &approval_id, "r-1", 900)["requestState"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = send(&engine, &mut e, &retry(&forged, 6, "accept"), REV);
    assert_eq!(error_of(&s), "invalid_state");

    // A grant for another call, handed back by the service: verified
    // offline, refused.
    let other_id = approval::approval_id(&approval::Binding {
        args: approval::arguments_hash(Some(&json!({"amount": 1}))),
        ..approval::parse_id(&approval_id).unwrap()
    });
    let wrong = approval::mint(&other_id, &key, NOW, 600, &[8; 16]).unwrap();
    let mut s = send(&engine, &mut e, &retry(&state, 7, "accept"), REV);
    s.answer(&mut e, 200, json!({"status": "approved", "token": wrong}));
    assert_eq!(error_of(&s), "wrong_call");

    // The state expires.
    e.advance_secs(901);
    let s = send(&engine, &mut e, &retry(&state, 8, "accept"), REV);
    assert_eq!(error_of(&s), "expired");
}

#[test]
fn an_unreachable_or_confused_service_fails_closed() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let engine = engine(&key);
    let mut e = MemoryEnv::at_secs(NOW);
    let body = call(1, json!({"amount": 500}), json!({}));

    for answer in [
        CallResult::Failed("no answer (timeout)".into()),
        CallResult::Http {
            status: 503,
            headers: vec![],
            body: b"{}".to_vec(),
        },
        CallResult::Http {
            status: 200,
            headers: vec![],
            body: b"not json".to_vec(),
        },
    ] {
        let mut s = send(&engine, &mut e, &body, REV);
        let id = s.call().0;
        s.out = s.d.call_done(&mut e, id, answer);
        let reply = s.reply();
        assert_eq!(
            reply["error"]["data"]["approval"]["error"],
            "service_unavailable"
        );
        let recs = s.records(&mut e);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].decision, portcullis_core::audit::Decision::Deny);
    }

    // A state from a service whose key the bundle does not list.
    let mut s = send(&engine, &mut e, &body, REV);
    let approval_id = s.call().3["approvalId"].as_str().unwrap().to_owned();
    let rogue = SigningKey::from_bytes(&[1u8; 32]);
    s.answer(&mut e, 200, registered(&rogue, &approval_id, "r-9", 900));
    assert_eq!(
        s.reply()["error"]["data"]["approval"]["error"],
        "service_unavailable"
    );

    // The client goes away while the service is asked: a record, nothing
    // forwarded.
    let s = send(&engine, &mut e, &body, REV);
    assert!(matches!(s.out.step, Step::Call(_)));
    let recs = s.records(&mut e);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].decision, portcullis_core::audit::Decision::Deny);
    assert!(
        recs[0].reason.contains("stream ended"),
        "{}",
        recs[0].reason
    );

    // An answer for a call the stream never made.
    let mut s = send(&engine, &mut e, &body, REV);
    let id = s.call().0;
    let out = s.d.call_done(
        &mut e,
        id + 100,
        CallResult::Http {
            status: 200,
            headers: vec![],
            body: b"{}".to_vec(),
        },
    );
    let Step::Reply(r) = out.step else {
        panic!("fails closed")
    };
    assert_eq!(r.status, 500);
}

#[test]
fn older_revisions_and_clients_without_url_elicitation_keep_the_error() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let engine = engine(&key);
    let mut e = MemoryEnv::at_secs(NOW);
    // 2025-11-25: the -31099 error with the approval id.
    let old = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "pay", "arguments": {"amount": 500}}});
    let s = send(&engine, &mut e, &old, "2025-11-25");
    let body = s.reply();
    assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED);
    assert!(
        body["error"]["data"]["approval"]["id"]
            .as_str()
            .unwrap()
            .starts_with("apr1.")
    );
    // 2026-07-28 without URL-mode elicitation declared.
    let mut no_url = call(2, json!({"amount": 500}), json!({}));
    no_url["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let s = send(&engine, &mut e, &no_url, REV);
    assert_eq!(s.reply()["error"]["code"], codes::APPROVAL_REQUIRED);
}

/// A 2025-11-25 session opened by an `initialize` declaring `elicitation`
/// `capabilities` (`url` when `url_mode`), named by the server's answer.
fn open_session(engine: &Arc<Engine>, e: &mut MemoryEnv, session: &str, url_mode: bool) {
    let elicitation = if url_mode {
        json!({"form": {}, "url": {}})
    } else {
        json!({})
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": elicitation},
        "clientInfo": {"name": "test-client", "version": "1"}}});
    let mut s = send_in(engine, e, &init, "2025-11-25", None);
    assert!(s.forwarded(), "{:?}", s.out);
    s.d.response_headers(
        e,
        200,
        &[
            ("content-type".into(), "application/json".into()),
            ("mcp-session-id".into(), session.into()),
        ],
        false,
    );
    let answer = json!({"jsonrpc": "2.0", "id": 0, "result": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "serverInfo": {"name": "payments", "version": "1"}}});
    let bytes = answer.to_string().into_bytes();
    s.d.response_body(e, &mut bytes.as_slice(), true);
    s.d.end(e);
}

fn call_2025(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "pay", "arguments": {"amount": 500, "memo": "for alice@example.com"}}})
}

/// Elicitation (2025-11-25), "URL Elicitation Required Error": "When a
/// request cannot be processed until an elicitation is completed, the
/// server MAY return a URLElicitationRequiredError (code -32042) [...] Any
/// elicitations returned in the error MUST be URL mode elicitations and
/// have an elicitationId property." The retry carries nothing of the first
/// attempt, so the service finds the call's request by approval id and
/// agent (`/approvals/v1/lookup`); its grant is verified offline and spent
/// once.
#[test]
fn a_2025_11_25_session_with_url_mode_gets_the_url_elicitation_error_then_runs_once() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let engine = engine(&key);
    let mut e = MemoryEnv::at_secs(NOW);
    open_session(&engine, &mut e, "sess-url", true);

    // First attempt: filed with the service, answered -32042.
    let mut s = send_in(
        &engine,
        &mut e,
        &call_2025(1),
        "2025-11-25",
        Some("sess-url"),
    );
    let (_, method, path, filed) = s.call();
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/approvals/v1/lookup")
    );
    assert!(
        !filed["arguments"].to_string().contains("alice@example.com"),
        "{filed}"
    );
    let approval_id = filed["approvalId"].as_str().unwrap().to_owned();
    s.answer(&mut e, 200, json!({"status": "pending", "request": "r-9"}));
    let body = s.reply();
    assert_eq!(body["id"], 1);
    let error = &body["error"];
    assert_eq!(error["code"], codes::URL_ELICITATION_REQUIRED);
    let ask = &error["data"]["elicitations"][0];
    assert_eq!(ask["mode"], "url");
    assert_eq!(ask["elicitationId"], "r-9");
    assert_eq!(ask["url"], "https://approve.example.com/approvals/r-9");
    assert!(ask["message"].as_str().unwrap().contains("\"pay\""));
    let recs = s.records(&mut e);
    assert_eq!(
        recs[0].approval.as_ref().unwrap().status,
        "url_elicitation_required"
    );
    assert_eq!(recs[0].error_code, Some(codes::URL_ELICITATION_REQUIRED));

    // The retry, once approved: the grant is checked and the call runs.
    let grant = approval::mint(&approval_id, &key, NOW, 600, &[9; 16]).unwrap();
    let approved =
        json!({"status": "approved", "request": "r-9", "token": grant, "approvers": ["bob"]});
    let mut s = send_in(
        &engine,
        &mut e,
        &call_2025(2),
        "2025-11-25",
        Some("sess-url"),
    );
    assert_eq!(s.call().2, "/approvals/v1/lookup");
    s.answer(&mut e, 200, approved.clone());
    assert!(s.forwarded(), "{:?}", s.out);
    let recs = s.records(&mut e);
    assert_eq!(recs[0].approval.as_ref().unwrap().status, "granted");

    // A service that hands the same grant out twice gains nothing: spent.
    let mut s = send_in(
        &engine,
        &mut e,
        &call_2025(3),
        "2025-11-25",
        Some("sess-url"),
    );
    s.answer(&mut e, 200, approved);
    let body = s.reply();
    assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED);
    assert_eq!(body["error"]["data"]["approval"]["error"], "already_used");

    // A grant approved for other arguments does not fit this call.
    let mut bigger = call_2025(4);
    bigger["params"]["arguments"]["amount"] = json!(5000);
    let s = send_in(&engine, &mut e, &bigger, "2025-11-25", Some("sess-url"));
    let other_id = s.call().3["approvalId"].as_str().unwrap().to_owned();
    assert_ne!(other_id, approval_id);
    let other = approval::mint(&other_id, &key, NOW, 600, &[10; 16]).unwrap();
    let mut s = send_in(
        &engine,
        &mut e,
        &call_2025(4),
        "2025-11-25",
        Some("sess-url"),
    );
    s.answer(
        &mut e,
        200,
        json!({"status": "approved", "request": "r-9", "token": other}),
    );
    let body = s.reply();
    assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED);
    assert!(!s.forwarded());

    // Denied and expired end in the error, with a record.
    for (status, error) in [("denied", "denied"), ("expired", "expired")] {
        let mut s = send_in(
            &engine,
            &mut e,
            &call_2025(5),
            "2025-11-25",
            Some("sess-url"),
        );
        s.answer(&mut e, 200, json!({"status": status, "request": "r-9"}));
        let body = s.reply();
        assert_eq!(body["error"]["code"], codes::APPROVAL_REQUIRED, "{status}");
        assert_eq!(body["error"]["data"]["approval"]["error"], error);
    }

    // A pending answer without a usable request id, and a service that
    // cannot be reached, fail closed.
    for answer in [
        json!({"status": "pending"}),
        json!({"status": "pending", "request": "../../x"}),
    ] {
        let mut s = send_in(
            &engine,
            &mut e,
            &call_2025(6),
            "2025-11-25",
            Some("sess-url"),
        );
        s.answer(&mut e, 200, answer);
        assert_eq!(
            s.reply()["error"]["data"]["approval"]["error"],
            "service_unavailable"
        );
    }
    let mut s = send_in(
        &engine,
        &mut e,
        &call_2025(7),
        "2025-11-25",
        Some("sess-url"),
    );
    let id = s.call().0;
    s.out =
        s.d.call_done(&mut e, id, CallResult::Failed("no cluster".into()));
    assert_eq!(
        s.reply()["error"]["data"]["approval"]["error"],
        "service_unavailable"
    );
}

/// Elicitation (2025-11-25): "Servers MUST NOT send elicitation requests
/// with modes that are not supported by the client." A session that did
/// not declare URL mode, a request naming no session, and a session the
/// filter never saw open keep the `-31099` error flow.
#[test]
fn a_2025_11_25_session_without_url_mode_keeps_the_error_flow() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let engine = engine(&key);
    let mut e = MemoryEnv::at_secs(NOW);
    open_session(&engine, &mut e, "sess-form", false);
    for session in [Some("sess-form"), None, Some("sess-unknown")] {
        let s = send_in(&engine, &mut e, &call_2025(1), "2025-11-25", session);
        let body = s.reply();
        assert_eq!(
            body["error"]["code"],
            codes::APPROVAL_REQUIRED,
            "{session:?}"
        );
        assert!(body["error"]["data"]["approval"]["id"].is_string());
    }
    // A URL-mode session of an older revision gets the error flow too.
    open_session(&engine, &mut e, "sess-url", true);
    let s = send_in(
        &engine,
        &mut e,
        &call_2025(2),
        "2025-06-18",
        Some("sess-url"),
    );
    assert_eq!(s.reply()["error"]["code"], codes::APPROVAL_REQUIRED);
}

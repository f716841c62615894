//! `exchange`: a whole HTTP stream through the core's stream driver
//! (`portcullis_core::driver::StreamDriver`), with a host that does what
//! Envoy does with each output (holds, buffers, replaces, forwards, replies).
//!
//! The stream, read from the input: request headers (method, path and
//! content type from small tables or fuzzed text, a few optional MCP
//! headers), the request body in fuzzed chunks, optional request trailers,
//! response headers (status and content type from tables or fuzzed), the
//! response body in fuzzed chunks, optional response trailers, the end. The
//! bundle has a governed server at `/mcp`, the default ContentPolicy and a
//! Policy whose forbid rule reads the arguments (`pay` over 100).
//!
//! Properties: the engine never panics, and
//! * the body forwarded upstream is the client's body unchanged, or strict
//!   JSON (a rewrite);
//! * a local reply's body is empty or strict JSON, and the reply passes back
//!   through the response callbacks untouched;
//! * the body the client gets is the upstream's unchanged, or empty, or
//!   valid for the content type it is sent with: for an event stream, a
//!   stream the filter's own parser accepts whose every event with data
//!   carries blank data, strict JSON or (on a GET stream) an `endpoint`
//!   URL; for JSON, strict JSON; for anything else (an HTTP error's text),
//!   UTF-8 text;
//! * nothing is held when the stream ends (a body held for ever would hang
//!   the client).

use super::input::{Input, chunks};
use portcullis_core::Engine;
use portcullis_core::bundle::assemble;
use portcullis_core::driver::{Output, Step, StreamDriver};
use portcullis_core::engine::{HeaderEdits, RequestHead};
use portcullis_core::json::parse_strict;
use portcullis_core::media;
use portcullis_core::test_util::{MemoryEnv, doc};
use serde_json::json;
use std::sync::{Arc, OnceLock};

fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let docs = vec![
                doc(
                    "McpServer",
                    "s",
                    json!({
                        "match": {"pathPrefix": "/mcp"},
                        "tools": [{"name": "echo"}, {"name": "pay"}, {"name": "get-*"}],
                        "resources": [{"uri": "file:///*"}],
                        "prompts": [{"name": "*"}],
                    }),
                ),
                doc("ContentPolicy", "default", json!({})),
                doc(
                    "Policy",
                    "payments",
                    json!({"rules": [
                        {"id": "everyone", "effect": "permit", "tools": ["*"]},
                        {"id": "every-resource", "effect": "permit", "resources": ["*"]},
                        {"id": "every-prompt", "effect": "permit", "prompts": ["*"]},
                        {"id": "big-payments", "effect": "forbid", "tools": ["pay"],
                         "arguments": {"type": "object",
                                       "properties": {"amount": {"type": "number", "exclusiveMinimum": 100}},
                                       "required": ["amount"]}},
                    ]}),
                ),
                doc(
                    "Settings",
                    "default",
                    json!({"maxRequestBytes": 4096, "maxResponseBytes": 8192,
                           "unmatchedRoutes": "passthrough"}),
                ),
            ];
            let config = serde_json::to_vec(&assemble(docs)).expect("bundle");
            Arc::new(Engine::from_config(&config).expect("engine"))
        })
        .clone()
}

/// An entry of `table`, or (for the index one past it) fuzzed text.
fn pick(input: &mut Input, table: &[&str]) -> Option<String> {
    let i = usize::from(input.byte()) % (table.len() + 2);
    match table.get(i) {
        Some(s) => Some((*s).to_owned()),
        None if i == table.len() => Some(String::from_utf8_lossy(input.short()).into_owned()),
        None => None,
    }
}

const METHODS: &[&str] = &["POST", "GET", "DELETE", "OPTIONS", "PUT", "HEAD"];
const PATHS: &[&str] = &[
    "/mcp",
    "/mcp/",
    "/MCP",
    "/other",
    "/mcp?x=1",
    "/%6dcp",
    "*",
    "/mcp/../x",
    "//h/mcp",
];
const REQUEST_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "text/event-stream",
    "text/plain",
    "application/json; charset=utf-7",
];
const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "text/event-stream",
    "text/event-stream; charset=utf-8",
    "text/plain",
    "application/json; charset=utf-16",
    "application/json-seq",
];
const STATUSES: &[u16] = &[200, 202, 204, 400, 401, 404, 500];

/// Headers as the host holds them.
fn apply(headers: &mut Vec<(String, String)>, edits: &HeaderEdits) {
    for name in &edits.remove {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    for (name, value) in &edits.set {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One direction's body at the host: what is held, what went on.
#[derive(Default)]
struct Side {
    held: Vec<u8>,
    forwarded: Vec<u8>,
}

impl Side {
    /// Applies an output's body and step; the reply, if one was asked for.
    fn apply(&mut self, out: &Output) -> Option<portcullis_core::engine::LocalReply> {
        if let Some(b) = &out.body {
            self.held = b.clone();
        }
        match &out.step {
            Step::Continue => {
                self.forwarded.append(&mut self.held);
                None
            }
            Step::Pause | Step::Call(_) => None,
            Step::Reply(r) => Some(r.clone()),
        }
    }
}

/// Whether to narrate each stream on stderr (`PORTCULLIS_FUZZ_DEBUG=1`, for
/// running a target on one input by hand).
fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PORTCULLIS_FUZZ_DEBUG").is_some())
}

fn check_reply(reply: &portcullis_core::engine::LocalReply) {
    assert!(
        reply.body.is_empty() || parse_strict(&reply.body).is_ok(),
        "a local reply's body is not JSON: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
}

fn check_sse(out: &[u8], get: bool) {
    let events = super::sse::parse_chunks(&[out], usize::MAX)
        .unwrap_or_else(|e| panic!("the client gets an invalid event stream ({e}): {out:?}"));
    for e in &events {
        let Some(d) = &e.data else { continue };
        if d.trim().is_empty() || (get && e.event.as_deref() == Some("endpoint")) {
            continue;
        }
        assert!(
            parse_strict(d.as_bytes()).is_ok(),
            "an event's data is not JSON: {d:?} in {out:?}"
        );
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let method = pick(&mut input, METHODS).unwrap_or_default();
    let path = pick(&mut input, PATHS).unwrap_or_default();
    let request_type = pick(&mut input, REQUEST_TYPES);
    let flags = input.byte();
    let status = match STATUSES.get(usize::from(input.byte() % 8)) {
        Some(s) => *s,
        None => 100 + input.u16() % 500,
    };
    let response_type = pick(&mut input, RESPONSE_TYPES);
    let n = usize::from(input.byte() % 4);
    let request_sizes = input.take(n);
    let n = usize::from(input.byte() % 4);
    let response_sizes = input.take(n);
    let request_body = input.long();
    let response_body = input.rest();

    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(t) = request_type {
        headers.push(("content-type".into(), t));
    }
    if flags & 4 != 0 {
        headers.push((
            "accept".into(),
            "application/json, text/event-stream".into(),
        ));
    }
    if flags & 8 != 0 {
        headers.push(("mcp-protocol-version".into(), "2025-06-18".into()));
    }
    if flags & 16 != 0 {
        headers.push(("mcp-session-id".into(), "s-1".into()));
    }
    let request_trailers = flags & 1 != 0;
    let response_trailers = flags & 2 != 0;
    let trailer_names = vec!["x-mcp-subject".to_owned(), "x-other".to_owned()];

    // A fixed clock and fixed randomness (core's test host).
    let mut env = MemoryEnv::at_nanos(1_700_000_000_000_000_000).random_fill(7);
    let mut driver = StreamDriver::new(engine());
    let get = method == "GET";
    let head = RequestHead {
        method,
        path,
        authority: "mcp.example".into(),
        headers,
    };

    // The request.
    let mut up = Side::default();
    let chunks_in = chunks(request_body, request_sizes);
    let no_body = chunks_in.is_empty();
    let out = driver.request_headers(&mut env, head, no_body && !request_trailers);
    let mut reply = up.apply(&out);
    let mut headers_go = out.step == Step::Continue;
    for (i, c) in chunks_in.iter().enumerate() {
        if reply.is_some() {
            break;
        }
        up.held.extend_from_slice(c);
        let end = i + 1 == chunks_in.len() && !request_trailers;
        let held = up.held.clone();
        let out = driver.request_body(&mut env, &mut held.as_slice(), end);
        reply = up.apply(&out);
        headers_go |= out.step == Step::Continue;
    }
    if request_trailers && reply.is_none() {
        let held = up.held.clone();
        let out = driver.request_trailers(&mut env, &mut held.as_slice(), &trailer_names);
        assert!(
            out.trailers.remove.contains(&"x-mcp-subject".to_owned()),
            "the filter's own trailer reaches the upstream"
        );
        reply = up.apply(&out);
        headers_go |= out.step == Step::Continue;
    }
    let _ = driver.take_audit();

    if let Some(reply) = reply {
        if debug() {
            eprintln!(
                "reply {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        check_reply(&reply);
        // The reply comes back through the response callbacks, untouched.
        let mut rh = reply.headers.clone();
        rh.push(("content-type".into(), "text/plain".into()));
        let out = driver.response_headers(&mut env, reply.status, &rh, reply.body.is_empty());
        assert_eq!(out.step, Step::Continue);
        if !reply.body.is_empty() {
            let out = driver.response_body(&mut env, &mut reply.body.as_slice(), true);
            assert_eq!(out.step, Step::Continue, "the reply is held");
            assert_eq!(out.body, None, "the reply is rewritten");
        }
        driver.end(&mut env);
        let _ = driver.take_audit();
        return;
    }

    assert!(
        headers_go && up.held.is_empty(),
        "the request is held for ever ({} bytes)",
        up.held.len()
    );
    assert!(
        up.forwarded == request_body || parse_strict(&up.forwarded).is_ok(),
        "a rewritten request is not JSON: {:?}",
        String::from_utf8_lossy(&up.forwarded)
    );

    // The response.
    let mut rh: Vec<(String, String)> = Vec::new();
    if let Some(t) = response_type {
        rh.push(("content-type".into(), t));
    }
    let mut down = Side::default();
    let chunks_out = chunks(response_body, response_sizes);
    let end = chunks_out.is_empty() && !response_trailers;
    let out = driver.response_headers(&mut env, status, &rh, end);
    assert_eq!(out.step, Step::Continue, "response headers held");
    apply(&mut rh, &out.headers);
    for (i, c) in chunks_out.iter().enumerate() {
        down.held.extend_from_slice(c);
        let end = i + 1 == chunks_out.len() && !response_trailers;
        let held = down.held.clone();
        let out = driver.response_body(&mut env, &mut held.as_slice(), end);
        assert!(
            !matches!(out.step, Step::Reply(_)),
            "a reply asked for in the response"
        );
        down.apply(&out);
    }
    if response_trailers {
        let held = down.held.clone();
        let out = driver.response_trailers(&mut env, &mut held.as_slice(), &trailer_names);
        assert_eq!(out.step, Step::Continue, "response trailers held");
        assert!(
            out.trailers.remove.contains(&"x-mcp-subject".to_owned()),
            "the upstream's x-mcp-* trailer reaches the client"
        );
        down.apply(&out);
    }
    driver.end(&mut env);
    let _ = driver.take_audit();

    assert!(
        down.held.is_empty(),
        "the response is held for ever ({} bytes)",
        down.held.len()
    );
    let sent = &down.forwarded;
    if debug() {
        eprintln!(
            "forwarded {:?}\nresponse {status} {rh:?}\n{:?}",
            String::from_utf8_lossy(&up.forwarded),
            String::from_utf8_lossy(sent)
        );
    }
    if sent == response_body || sent.is_empty() {
        return;
    }
    let ctype = header(&rh, "content-type").and_then(|t| media::parse(t).ok());
    match ctype {
        Some(m) if m.is_event_stream() => check_sse(sent, get),
        Some(m) if m.is_json() => assert!(
            parse_strict(sent).is_ok(),
            "the client gets a JSON answer that is not JSON: {:?}",
            String::from_utf8_lossy(sent)
        ),
        _ => assert!(
            std::str::from_utf8(sent).is_ok(),
            "the client gets a rewritten text that is not UTF-8"
        ),
    }
}

//! Host calls exercised by WAT modules through the sans-IO stream API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;

use common::{Wat, bytes, config, hm, load, req_headers, status};
use host_shim::{
    Dir, HttpCallResponse, LoadError, MetricValue, NodeInfo, Output, Plugin, StreamInfo, TestVm,
};

fn headers_out(outs: &[Output], dir: Dir) -> Option<(host_shim::HeaderMap, bool)> {
    outs.iter().find_map(|o| match o {
        Output::Headers(d, h, e) if *d == dir => Some((h.clone(), *e)),
        _ => None,
    })
}

fn data_out(outs: &[Output], dir: Dir) -> Vec<u8> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Data(d, b, _) if *d == dir => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn headers_pairs_value_and_mutations() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (call $rec {k_n} (local.get $n))
    (call $rec {k_st} (call $proxy_get_header_map_value (i32.const 0) {dup} (i32.const 200) (i32.const 204)))
    (call $out {k_dup})
    (drop (call $proxy_get_header_map_value (i32.const 0) {auth} (i32.const 200) (i32.const 204)))
    (call $out {k_auth})
    (call $rec {k_missing} (call $proxy_get_header_map_value (i32.const 0) {nope} (i32.const 200) (i32.const 204)))
    (drop (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 200) (i32.const 204)))
    (call $out {k_pairs})
    (call $rec {k_add} (call $proxy_add_header_map_value (i32.const 0) {added} {one}))
    (drop (call $proxy_replace_header_map_value (i32.const 0) {dup} {three}))
    (drop (call $proxy_remove_header_map_value (i32.const 0) {ctype}))
    (call $rec {k_resp} (call $proxy_add_header_map_value (i32.const 2) {added} {one}))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_get_header_map_value (i32.const 2) {status} (i32.const 200) (i32.const 204)))
    (call $out {k_status})
    (drop (call $proxy_replace_header_map_value (i32.const 2) {server} {shim}))
    (i32.const 0))
"#,
        k_n = w.s("n"),
        k_st = w.s("st"),
        dup = w.s("X-Dup"),
        k_dup = w.s("dup"),
        auth = w.s(":authority"),
        k_auth = w.s("auth"),
        nope = w.s("nope"),
        k_missing = w.s("missing"),
        k_pairs = w.s("pairs"),
        k_add = w.s("add"),
        added = w.s("X-Added"),
        one = w.s("1"),
        three = w.s("three"),
        ctype = w.s("content-type"),
        k_resp = w.s("resp_early"),
        status = w.s(":status"),
        k_status = w.s("status"),
        server = w.s("server"),
        shim = w.s("shim"),
    );
    let (p, _) = load(&w.module(&body), config("headers"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/mcp"), true);
    assert_eq!(status(&s, "n"), Some(7));
    assert_eq!(status(&s, "st"), Some(0));
    assert_eq!(bytes(&s, "dup").unwrap(), b"one", "first value wins");
    assert_eq!(bytes(&s, "auth").unwrap(), b"example.com");
    assert_eq!(status(&s, "missing"), Some(1), "NotFound");
    let pairs = host_shim::abi::decode_pairs(&bytes(&s, "pairs").unwrap()).unwrap();
    assert_eq!(pairs.len(), 7);
    assert_eq!(pairs[0].0, b":method");
    assert_eq!(status(&s, "add"), Some(0));
    assert_eq!(
        status(&s, "resp_early"),
        Some(2),
        "no response headers yet: BadArgument"
    );
    let outs = s.take_outputs();
    let (h, eos) = headers_out(&outs, Dir::Request).unwrap();
    assert!(eos);
    assert_eq!(h.get("x-added").unwrap(), b"1", "names are lowercased");
    assert_eq!(h.iter().filter(|(k, _)| *k == "x-dup").count(), 1);
    assert_eq!(h.get("x-dup").unwrap(), b"three");
    assert!(h.get("content-type").is_none());
    assert_eq!(
        h.iter().take(4).filter(|(k, _)| k.starts_with(':')).count(),
        4
    );

    s.encode_headers(hm(&[(":status", "200"), ("server", "up")]), true);
    assert_eq!(bytes(&s, "status").unwrap(), b"200");
    let outs = s.take_outputs();
    let (h, _) = headers_out(&outs, Dir::Response).unwrap();
    assert_eq!(h.get("server").unwrap(), b"shim");
    assert!(s.is_complete());
    s.finish();
}

#[test]
fn pause_buffers_chunks_and_set_buffer_rules() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_body") (param $c i32) (param $size i32) (param $eos i32) (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (call $rec {k_size} (local.get $size))
    (drop (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (local.get $size) (i32.const 200) (i32.const 204)))
    (call $out {k_body})
    (call $rec {k_mid} (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 1) (i32.const 1) {z}))
    (call $rec {k_pre} (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) {lt}))
    (call $rec {k_app} (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 1000) (i32.const 0) {gt}))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $c i32) (param $size i32) (param $eos i32) (result i32)
    (call $rec {k_rsize} (local.get $size))
    (call $rec {k_rep} (call $proxy_set_buffer_bytes (i32.const 1) (i32.const 0) (local.get $size) {new}))
    (i32.const 0))
"#,
        k_size = w.s("size"),
        k_body = w.s("body"),
        k_mid = w.s("mid"),
        z = w.s("Z"),
        k_pre = w.s("pre"),
        lt = w.s("<"),
        k_app = w.s("app"),
        gt = w.s(">"),
        k_rsize = w.s("rsize"),
        k_rep = w.s("rep"),
        new = w.s("replaced"),
    );
    let (p, _) = load(&w.module(&body), config("bodies"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.remove("content-length");
    s.decode_headers(h, false);
    assert!(headers_out(&s.take_outputs(), Dir::Request).is_some());
    s.decode_data(b"ab".to_vec(), false);
    s.decode_data(b"cd".to_vec(), false);
    assert!(
        s.take_outputs().is_empty(),
        "paused chunks are buffered, not forwarded"
    );
    s.decode_data(b"ef".to_vec(), true);
    assert_eq!(
        status(&s, "size"),
        Some(6),
        "body_size covers all buffered data"
    );
    assert_eq!(bytes(&s, "body").unwrap(), b"abcdef");
    assert_eq!(status(&s, "mid"), Some(2), "mid-range write is BadArgument");
    assert_eq!(status(&s, "pre"), Some(0));
    assert_eq!(status(&s, "app"), Some(0));
    let outs = s.take_outputs();
    assert_eq!(data_out(&outs, Dir::Request), b"<abcdef>");
    assert!(outs.contains(&Output::Data(Dir::Request, b"<abcdef>".to_vec(), true)));

    s.encode_headers(hm(&[(":status", "200")]), false);
    s.encode_data(b"old body".to_vec(), true);
    assert_eq!(status(&s, "rsize"), Some(8));
    assert_eq!(status(&s, "rep"), Some(0));
    assert_eq!(data_out(&s.take_outputs(), Dir::Response), b"replaced");
}

#[test]
fn local_reply_is_deferred_and_passes_through_response_callbacks() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (call $rec {k_slr} (call $proxy_send_local_response (i32.const 403) {details} {rbody} {hdrs} (i32.const -1)))
    (call $rec {k_after} (call $proxy_add_header_map_value (i32.const 0) {xa} {one}))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_get_header_map_value (i32.const 2) {st} (i32.const 200) (i32.const 204)))
    (call $out {k_seen})
    (drop (call $proxy_add_header_map_value (i32.const 2) {xs} {one}))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $c i32) (param $size i32) (param $eos i32) (result i32)
    (call $rec {k_rb} (local.get $size))
    (i32.const 0))
"#,
        k_slr = w.s("slr"),
        details = w.s("denied by policy"),
        rbody = w.s("nope"),
        hdrs = w.pairs(&[("x-reason", "policy")]),
        k_after = w.s("after"),
        xa = w.s("x-after"),
        one = w.s("1"),
        st = w.s(":status"),
        k_seen = w.s("seen"),
        xs = w.s("x-seen"),
        k_rb = w.s("rb"),
    );
    let (p, _) = load(&w.module(&body), config("localreply"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(status(&s, "slr"), Some(0));
    assert_eq!(
        status(&s, "after"),
        Some(0),
        "the VM call continues after send_local_response"
    );
    let outs = s.take_outputs();
    assert!(
        headers_out(&outs, Dir::Request).is_none(),
        "Continue after a local reply does not forward the request"
    );
    let (h, eos) = headers_out(&outs, Dir::Response).unwrap();
    assert!(!eos);
    assert_eq!(h.get(":status").unwrap(), b"403");
    assert_eq!(h.get("x-reason").unwrap(), b"policy");
    assert_eq!(
        h.get("x-seen").unwrap(),
        b"1",
        "local reply ran on_response_headers"
    );
    assert_eq!(h.get("content-type").unwrap(), b"text/plain");
    assert_eq!(data_out(&outs, Dir::Response), b"nope");
    assert_eq!(bytes(&s, "seen").unwrap(), b"403");
    assert_eq!(status(&s, "rb"), Some(4));
    let d = s.data().borrow();
    assert!(d.info.local_reply);
    assert_eq!(
        d.info.response_code_details.as_deref(),
        Some("denied_by_policy")
    );
}

/// Envoy `Utility::prepareLocalReply` (source/common/http/utility.cc): the
/// module's headers are added first, `text/plain` only when it set no
/// content-type, content-length from the body; an empty body has neither.
#[test]
fn local_reply_keeps_the_modules_content_type() {
    for (ctype, body, want) in [
        (
            Some("application/json"),
            "{}",
            Some(&b"application/json"[..]),
        ),
        (None, "{}", Some(&b"text/plain"[..])),
        (Some("application/json"), "", None),
    ] {
        let w = Wat::new();
        let pairs: Vec<(&str, &str)> = match ctype {
            Some(c) => vec![("content-type", c), ("content-length", "99")],
            None => vec![],
        };
        let module = format!(
            r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_send_local_response (i32.const 400) {details} {rbody} {hdrs} (i32.const -1)))
    (i32.const 0))
"#,
            details = w.s("bad"),
            rbody = w.s(body),
            hdrs = w.pairs(&pairs),
        );
        let (p, _) = load(&w.module(&module), config("localreply-ctype"));
        let vm = TestVm::new(&p).unwrap();
        let mut s = vm.stream();
        s.decode_headers(req_headers("/"), true);
        let outs = s.take_outputs();
        let (h, _) = headers_out(&outs, Dir::Response).unwrap();
        assert_eq!(h.get("content-type"), want, "{ctype:?} {body:?}");
        let types = h
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .count();
        assert!(types <= 1, "one content-type, not the module's and Envoy's");
        let length = h.get("content-length").map(<[u8]>::to_vec);
        if body.is_empty() {
            assert_eq!(length, None);
        } else {
            assert_eq!(length.as_deref(), Some(body.len().to_string().as_bytes()));
        }
    }
}

/// Envoy's access-log phase reads the stream's request headers even when a
/// local reply answered the request before they were forwarded (HCM `log()`
/// passes `filter_manager_.requestHeaders()`; Envoy `Context::log`).
#[test]
fn on_log_reads_request_headers_after_a_headers_phase_local_reply() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_send_local_response (i32.const 403) {details} {rbody} {hdrs} (i32.const -1)))
    (i32.const 0))
  (func (export "proxy_on_log") (param $c i32)
    (call $rec {k_st} (call $proxy_get_header_map_value (i32.const 0) {path} (i32.const 200) (i32.const 204)))
    (call $out {k_path}))
"#,
        details = w.s("denied"),
        rbody = w.s("no"),
        hdrs = w.pairs(&[]),
        k_st = w.s("log_status"),
        path = w.s(":path"),
        k_path = w.s("log_path"),
    );
    let (p, _) = load(&w.module(&body), config("log-after-reply"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/denied"), true);
    s.finish();
    assert_eq!(status(&s, "log_status"), Some(0));
    assert_eq!(bytes(&s, "log_path").unwrap(), b"/denied");
}

fn http_call_module(w: &Wat) -> String {
    let body = format!(
        r#"
  (global $ctx (mut i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (global.set $ctx (local.get $c))
    (call $rec {k_unknown} (call $proxy_http_call {nope} {hdrs} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 300)))
    (call $rec {k_nopath} (call $proxy_http_call {authz} {nopath} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 300)))
    (call $rec {k_huge} (call $proxy_http_call {authz} {hdrs} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0x80000000) (i32.const 300)))
    (call $rec {k_neg} (call $proxy_http_call {authz} {hdrs} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 300)))
    (call $rec {k_call} (call $proxy_http_call {authz} {hdrs} {cbody} (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 300)))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param $root i32) (param $tok i32) (param $nh i32) (param $nb i32) (param $nt i32)
    (drop (call $proxy_set_effective_context (global.get $ctx)))
    (call $rec {k_nh} (local.get $nh))
    (drop (call $proxy_get_header_map_value (i32.const 6) {st} (i32.const 200) (i32.const 204)))
    (call $out {k_cst})
    (drop (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (local.get $nb) (i32.const 200) (i32.const 204)))
    (call $out {k_cbody})
    (call $rec {k_hadd} (call $proxy_add_header_map_value (i32.const 0) {xauthz} {ok}))
    (call $rec {k_cont} (call $proxy_continue_stream (i32.const 0)))
    (call $rec {k_late} (call $proxy_add_header_map_value (i32.const 0) {xlate} {ok})))
"#,
        k_unknown = w.s("unknown"),
        nope = w.s("nope"),
        hdrs = w.pairs(&[
            (":method", "POST"),
            (":path", "/check"),
            (":authority", "authz")
        ]),
        k_nopath = w.s("nopath"),
        k_huge = w.s("huge"),
        k_neg = w.s("neg"),
        authz = w.s("authz"),
        nopath = w.pairs(&[(":method", "GET"), (":authority", "authz")]),
        k_call = w.s("call"),
        cbody = w.s("body"),
        k_nh = w.s("nh"),
        st = w.s(":status"),
        k_cst = w.s("call_status"),
        k_cbody = w.s("call_body"),
        k_hadd = w.s("hadd"),
        xauthz = w.s("x-authz"),
        ok = w.s("ok"),
        k_cont = w.s("cont"),
        k_late = w.s("late"),
        xlate = w.s("x-late"),
    );
    w.module(&body)
}

#[test]
fn http_call_then_continue_stream() {
    let w = Wat::new();
    let (p, _) = load(&http_call_module(&w), config("httpcall"));
    let clusters = HashMap::from([("authz".to_string(), "http://127.0.0.1:9".parse().unwrap())]);
    let vm = TestVm::with_clusters(&p, clusters).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(
        status(&s, "unknown"),
        Some(2),
        "unknown cluster: BadArgument"
    );
    assert_eq!(status(&s, "nopath"), Some(2), "missing :path: BadArgument");
    // Envoy `Context::httpCall` (context.cc) takes the timeout as an int:
    // 2^31 ms and above, like -1, is refused and nothing is dispatched.
    assert_eq!(status(&s, "huge"), Some(2), "timeout 2^31 ms: BadArgument");
    assert_eq!(status(&s, "neg"), Some(2), "timeout -1: BadArgument");
    assert_eq!(status(&s, "call"), Some(0));
    assert!(s.take_outputs().is_empty(), "stopped while the call is out");
    let calls = vm.vm.take_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers.get(":path").unwrap(), b"/check");
    assert_eq!(calls[0].headers.get("content-length").unwrap(), b"4");
    let resp = HttpCallResponse {
        headers: hm(&[(":status", "200"), ("x-a", "b")]),
        body: b"allowed".to_vec(),
        trailers: Default::default(),
    };
    vm.vm.complete_http_call(calls[0].token, Some(resp));
    assert_eq!(status(&s, "nh"), Some(2));
    assert_eq!(bytes(&s, "call_status").unwrap(), b"200");
    assert_eq!(bytes(&s, "call_body").unwrap(), b"allowed");
    assert_eq!(status(&s, "hadd"), Some(0));
    assert_eq!(status(&s, "cont"), Some(0));
    assert_eq!(
        status(&s, "late"),
        Some(2),
        "headers are gone once continued"
    );
    s.process_actions();
    let (h, eos) = headers_out(&s.take_outputs(), Dir::Request).unwrap();
    assert!(eos);
    assert_eq!(h.get("x-authz").unwrap(), b"ok");
    assert!(h.get("x-late").is_none());
}

#[test]
fn http_call_failure_gives_zero_headers() {
    let w = Wat::new();
    let (p, _) = load(&http_call_module(&w), config("httpcall-fail"));
    let clusters = HashMap::from([("authz".to_string(), "http://127.0.0.1:9".parse().unwrap())]);
    let vm = TestVm::with_clusters(&p, clusters).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    let calls = vm.vm.take_http_calls();
    vm.vm.complete_http_call(calls[0].token, None);
    assert_eq!(status(&s, "nh"), Some(0));
    assert_eq!(
        bytes(&s, "call_status"),
        Some(Vec::new()),
        "no headers to read"
    );
}

#[tokio::test]
async fn http_call_to_loopback_server_and_dead_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let b = req.into_body().collect().await.unwrap().to_bytes();
                        let mut r = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(format!("allowed:{}", String::from_utf8_lossy(&b))),
                        ));
                        r.headers_mut().insert("x-authz", "yes".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let w = Wat::new();
    let (p, _) = load(&http_call_module(&w), config("httpcall-live"));
    for (target, expect_status, expect_body) in
        [(addr, "200", Some("allowed:body")), (dead, "503", None)]
    {
        let clusters = HashMap::from([(
            "authz".to_string(),
            format!("http://{target}").parse().unwrap(),
        )]);
        let vm = TestVm::with_clusters(&p, clusters).unwrap();
        let mut s = vm.stream();
        s.decode_headers(req_headers("/"), true);
        vm.run_http_calls().await;
        // Envoy's async client turns a connect failure into the router's
        // 503 local reply, delivered as a response with headers.
        assert_eq!(bytes(&s, "call_status").unwrap(), expect_status.as_bytes());
        if let Some(b) = expect_body {
            assert_eq!(bytes(&s, "call_body").unwrap(), b.as_bytes());
        }
        s.process_actions();
        assert!(headers_out(&s.take_outputs(), Dir::Request).is_some());
    }
}

#[test]
fn shared_data_cas_across_two_vms() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (local $st i32)
    (local.set $st (call $proxy_get_shared_data {k} (i32.const 200) (i32.const 204) (i32.const 208)))
    (call $rec {k_get} (local.get $st))
    (if (i32.eq (local.get $st) (i32.const 1))
      (then
        (call $rec {k_first} (call $proxy_set_shared_data {k} {v1} (i32.const 0)))
        (return (i32.const 0))))
    (call $out {k_val})
    (call $rec {k_cas} (i32.load (i32.const 208)))
    (call $rec {k_bad} (call $proxy_set_shared_data {k} {vx} (i32.add (i32.load (i32.const 208)) (i32.const 1000))))
    (call $rec {k_good} (call $proxy_set_shared_data {k} {v2} (i32.load (i32.const 208))))
    (i32.const 0))
"#,
        k = w.s("key"),
        k_get = w.s("get"),
        k_first = w.s("first"),
        v1 = w.s("v1"),
        k_val = w.s("val"),
        k_cas = w.s("cas"),
        k_bad = w.s("bad"),
        vx = w.s("vX"),
        k_good = w.s("good"),
        v2 = w.s("v2"),
    );
    let (p, _) = load(&w.module(&body), config("shareddata"));
    let a = TestVm::new(&p).unwrap();
    let b = TestVm::new(&p).unwrap();
    let mut s = a.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(status(&s, "get"), Some(1), "NotFound at first");
    assert_eq!(status(&s, "first"), Some(0));
    let mut s = b.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(status(&s, "get"), Some(0), "the other VM sees it");
    assert_eq!(bytes(&s, "val").unwrap(), b"v1");
    let cas = status(&s, "cas").unwrap();
    assert_ne!(cas, 0);
    assert_eq!(status(&s, "bad"), Some(8), "CasMismatch");
    assert_eq!(status(&s, "good"), Some(0));
    let mut s = a.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(bytes(&s, "val").unwrap(), b"v2");
    assert_ne!(status(&s, "cas").unwrap(), cas);
}

#[test]
fn shared_queue_wakes_the_last_registrant() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_vm_start") (param $c i32) (param $s i32) (result i32)
    (drop (call $proxy_register_shared_queue {q} (i32.const 300)))
    (i32.const 1))
  (func (export "proxy_on_queue_ready") (param $root i32) (param $tok i32)
    (drop (call $proxy_dequeue_shared_queue (local.get $tok) (i32.const 200) (i32.const 204)))
    (call $log (i32.load (i32.const 200)) (i32.load (i32.const 204)))
    (if (i32.eq (call $proxy_dequeue_shared_queue (local.get $tok) (i32.const 200) (i32.const 204)) (i32.const 7))
      (then (call $log {empty}))))
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (call $rec {k_res} (call $proxy_resolve_shared_queue {vm} {q} (i32.const 304)))
    (call $rec {k_unk} (call $proxy_resolve_shared_queue {vm} {other} (i32.const 308)))
    (call $rec {k_own} (call $proxy_resolve_shared_queue (i32.const 0) (i32.const 0) {q} (i32.const 312)))
    (call $rec {k_same} (i32.eq (i32.load (i32.const 304)) (i32.load (i32.const 312))))
    (call $rec {k_enq} (call $proxy_enqueue_shared_queue (i32.load (i32.const 304)) {msg}))
    (i32.const 0))
"#,
        q = w.s("q"),
        empty = w.s("queue-empty"),
        k_res = w.s("res"),
        vm = w.s("queues-vm"),
        k_unk = w.s("unk"),
        k_own = w.s("own"),
        k_same = w.s("same"),
        other = w.s("other"),
        k_enq = w.s("enq"),
        msg = w.s("hello-queue"),
    );
    let (p, sink) = load(&w.module(&body), config("queues"));
    let a = TestVm::new(&p).unwrap();
    let b = TestVm::new(&p).unwrap();
    let mut s = a.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(status(&s, "res"), Some(0));
    assert_eq!(status(&s, "unk"), Some(1));
    // cpp-host `lookupSharedQueue`: an empty vm_id is the caller's own VM.
    assert_eq!(status(&s, "own"), Some(0));
    assert_eq!(status(&s, "same"), Some(1), "the same queue's token");
    assert_eq!(status(&s, "enq"), Some(0));
    a.vm.dispatch_pending_events();
    assert!(!sink.lines().iter().any(|(_, l)| l == "hello-queue"));
    b.vm.dispatch_pending_events();
    let lines: Vec<String> = sink.lines().into_iter().map(|(_, l)| l).collect();
    assert!(lines.contains(&"hello-queue".to_string()), "{lines:?}");
    assert!(lines.contains(&"queue-empty".to_string()));
}

#[test]
fn properties_filter_state_node_and_metadata() {
    let w = Wat::new();
    let paths: Vec<(&str, String)> = vec![
        ("path", "request\0path".into()),
        ("url_path", "request\0url_path".into()),
        ("method", "request\0method".into()),
        ("dup", "request\0headers\0x-dup".into()),
        ("team", "node\0metadata\0team".into()),
        ("weight", "node\0metadata\0weight".into()),
        ("nodemeta", "node\0metadata".into()),
        ("node_id", "node\0id".into()),
        ("plugin_name", "plugin_name".into()),
        ("vm_id", "plugin_vm_id".into()),
        ("src", "source\0address".into()),
        ("src_port", "source\0port".into()),
        (
            "sub",
            "metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0payload\0sub".into(),
        ),
        ("audit", "portcullis.audit".into()),
    ];
    let mut code = String::new();
    code.push_str(&format!(
        "    (call $rec {} (call $proxy_set_property {} {}))\n",
        w.s("set_st"),
        w.s("portcullis.audit"),
        w.s("rec1")
    ));
    for (k, path) in &paths {
        code.push_str(&format!(
            "    (call $rec {} (call $proxy_get_property {} (i32.const 200) (i32.const 204)))\n    (call $out {})\n",
            w.s(&format!("st_{k}")),
            w.s(path),
            w.s(&format!("p_{k}"))
        ));
    }
    code.push_str(&format!(
        "    (call $rec {} (call $proxy_get_property {} (i32.const 200) (i32.const 204)))\n",
        w.s("st_nope"),
        w.s("nope\0x")
    ));
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
{code}    (i32.const 0))
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (call $rec {k_late} (call $proxy_get_property {rp} (i32.const 200) (i32.const 204)))
    (i32.const 0))
  (func (export "proxy_on_vm_start") (param $c i32) (param $s i32) (result i32)
    (if (i32.ne (call $proxy_set_property {rk} {rk}) (i32.const 1)) (then (unreachable)))
    (i32.const 1))
"#,
        k_late = w.s("st_late"),
        rp = w.s("request\0path"),
        rk = w.s("x"),
    );
    let mut cfg = config("props");
    cfg.node = NodeInfo {
        id: "node-1".into(),
        cluster: "c1".into(),
        metadata: serde_json::json!({"team": "mcp", "weight": 2.5}),
    };
    let (p, _) = load(&w.module(&body), cfg);
    let vm = TestVm::new(&p).unwrap();
    let mut info = StreamInfo {
        downstream_remote: Some("1.2.3.4:5678".parse().unwrap()),
        ..Default::default()
    };
    info.dynamic_metadata.insert(
        "envoy.filters.http.jwt_authn".into(),
        serde_json::json!({"payload": {"sub": "alice", "iat": 1}}),
    );
    let mut s = vm.stream_with(info);
    s.decode_headers(req_headers("/p?x=1"), false);
    let p_ = |k: &str| bytes(&s, &format!("p_{k}")).unwrap();
    assert_eq!(status(&s, "set_st"), Some(0));
    assert_eq!(p_("path"), b"/p?x=1");
    assert_eq!(p_("url_path"), b"/p");
    assert_eq!(p_("method"), b"POST");
    assert_eq!(p_("dup"), b"one,two");
    assert_eq!(p_("team"), b"mcp");
    assert_eq!(
        p_("weight"),
        2.5f64.to_le_bytes(),
        "Struct numbers are doubles"
    );
    let meta = host_shim::abi::decode_pairs(&p_("nodemeta")).unwrap();
    assert_eq!(meta[0], (b"team".to_vec(), b"mcp".to_vec()));
    assert_eq!(p_("node_id"), b"node-1");
    assert_eq!(p_("plugin_name"), b"props");
    assert_eq!(p_("vm_id"), b"props-vm");
    assert_eq!(p_("src"), b"1.2.3.4:5678");
    assert_eq!(p_("src_port"), 5678i64.to_le_bytes());
    assert_eq!(p_("sub"), b"alice");
    assert_eq!(p_("audit"), b"rec1", "filter state round trip");
    assert_eq!(status(&s, "st_nope"), Some(1));
    assert_eq!(
        s.data()
            .borrow()
            .info
            .filter_state
            .get("wasm.portcullis.audit")
            .unwrap(),
        b"rec1",
        "stored under Envoy's key"
    );
    s.decode_data(b"{}".to_vec(), true);
    assert_eq!(
        status(&s, "st_late"),
        Some(1),
        "request.path is gone once the headers were continued (as in Envoy)"
    );
}

#[test]
fn metrics_define_increment_record_get() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (call $rec {k_def} (call $proxy_define_metric (i32.const 0) {reqs} (i32.const 300)))
    (call $rec {k_cid} (i32.load (i32.const 300)))
    (call $rec {k_inc} (call $proxy_increment_metric (i32.load (i32.const 300)) (i64.const 5)))
    (call $rec {k_neg} (call $proxy_increment_metric (i32.load (i32.const 300)) (i64.const -1)))
    (drop (call $proxy_get_metric (i32.load (i32.const 300)) (i32.const 400)))
    (call $rec {k_cval} (i32.load (i32.const 400)))
    (drop (call $proxy_define_metric (i32.const 1) {inflight} (i32.const 304)))
    (drop (call $proxy_record_metric (i32.load (i32.const 304)) (i64.const 7)))
    (drop (call $proxy_increment_metric (i32.load (i32.const 304)) (i64.const -2)))
    (drop (call $proxy_define_metric (i32.const 2) {lat} (i32.const 308)))
    (drop (call $proxy_record_metric (i32.load (i32.const 308)) (i64.const 42)))
    (call $rec {k_hget} (call $proxy_get_metric (i32.load (i32.const 308)) (i32.const 400)))
    (call $rec {k_hinc} (call $proxy_increment_metric (i32.load (i32.const 308)) (i64.const 1)))
    (call $rec {k_badtype} (call $proxy_define_metric (i32.const 9) {reqs} (i32.const 312)))
    (call $rec {k_unknown} (call $proxy_increment_metric (i32.const 400) (i64.const 1)))
    (i32.const 0))
"#,
        k_def = w.s("def"),
        reqs = w.s("reqs"),
        k_cid = w.s("cid"),
        k_inc = w.s("inc"),
        k_neg = w.s("neg"),
        k_cval = w.s("cval"),
        inflight = w.s("inflight"),
        lat = w.s("latency_ms"),
        k_hget = w.s("hget"),
        k_hinc = w.s("hinc"),
        k_badtype = w.s("badtype"),
        k_unknown = w.s("unknown"),
    );
    let (p, _) = load(&w.module(&body), config("metrics"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    assert_eq!(status(&s, "def"), Some(0));
    assert_eq!(
        status(&s, "cid"),
        Some(4),
        "Envoy counter ids: type bits 0, step 4"
    );
    assert_eq!(status(&s, "inc"), Some(0));
    assert_eq!(status(&s, "neg"), Some(2), "counters only go up");
    assert_eq!(status(&s, "cval"), Some(5));
    assert_eq!(status(&s, "hget"), Some(2), "histograms cannot be read");
    assert_eq!(status(&s, "hinc"), Some(2));
    assert_eq!(status(&s, "badtype"), Some(2));
    assert_eq!(status(&s, "unknown"), Some(1));
    let snap = p.metrics_snapshot();
    assert_eq!(snap["wasmcustom.reqs"], MetricValue::Counter(5));
    assert_eq!(snap["wasmcustom.inflight"], MetricValue::Gauge(5));
    match &snap["wasmcustom.latency_ms"] {
        MetricValue::Histogram { count, sum, .. } => assert_eq!((*count, *sum), (1, 42)),
        other => panic!("{other:?}"),
    }
    let prom = p.prometheus();
    assert!(prom.contains("# TYPE reqs counter\nreqs{} 5\n"), "{prom}");
    assert!(prom.contains("latency_ms_count{} 1"), "{prom}");
}

#[test]
fn ticks_logs_config_and_wasi() {
    let w = Wat::new();
    let (sp, sl) = w.raw("hello stdout\n");
    let body = format!(
        r#"
  (func (export "proxy_on_vm_start") (param $c i32) (param $s i32) (result i32)
    (drop (call $proxy_set_tick_period_milliseconds (i32.const 5)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param $c i32) (param $size i32) (result i32)
    (drop (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (local.get $size) (i32.const 200) (i32.const 204)))
    (call $log (i32.load (i32.const 200)) (i32.load (i32.const 204)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $c i32)
    (call $log {tick}))
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (i32.store (i32.const 500) (i32.const {sp}))
    (i32.store (i32.const 504) (i32.const {sl}))
    (call $rec {k_fdw} (call $fd_write (i32.const 1) (i32.const 500) (i32.const 1) (i32.const 508)))
    (call $rec {k_nw} (i32.load (i32.const 508)))
    (call $rec {k_bad_fd} (call $fd_write (i32.const 5) (i32.const 500) (i32.const 1) (i32.const 508)))
    (drop (call $environ_sizes_get (i32.const 520) (i32.const 524)))
    (call $rec {k_env} (i32.load (i32.const 520)))
    (call $rec {k_rand} (call $random_get (i32.const 600) (i32.const 16)))
    (call $rec {k_open} (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 700)))
    (call $rec {k_clock} (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 710)))
    (call $rec {k_lvl_st} (call $proxy_get_log_level (i32.const 720)))
    (call $rec {k_lvl} (i32.load (i32.const 720)))
    (call $rec {k_cfg} (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const 10) (i32.const 200) (i32.const 204)))
    (call $rec {k_grpc} (call $proxy_grpc_call {nope} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 730)))
    (call $rec {k_ff} (call $proxy_call_foreign_function {nope} (i32.const 0) (i32.const 0) (i32.const 200) (i32.const 204)))
    (call $rec {k_done} (call $proxy_done))
    (i32.const 0))
"#,
        tick = w.s("tick"),
        k_fdw = w.s("fdw"),
        k_nw = w.s("nw"),
        k_bad_fd = w.s("badfd"),
        k_env = w.s("env"),
        k_rand = w.s("rand"),
        k_open = w.s("open"),
        k_clock = w.s("clock"),
        k_lvl_st = w.s("lvl_st"),
        k_lvl = w.s("lvl"),
        k_cfg = w.s("cfg"),
        k_grpc = w.s("grpc"),
        nope = w.s("nope"),
        k_ff = w.s("ff"),
        k_done = w.s("done"),
    );
    let mut cfg = config("ticks");
    cfg.configuration = b"{\"mode\":\"strict\"}".to_vec();
    let (p, sink) = load(&w.module(&body), cfg);
    let vm = TestVm::new(&p).unwrap();
    assert_eq!(
        vm.vm.tick_period(),
        Some(std::time::Duration::from_millis(5))
    );
    vm.vm.on_tick();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    let lines: Vec<String> = sink.lines().into_iter().map(|(_, l)| l).collect();
    assert!(lines.contains(&"tick".to_string()));
    assert!(
        lines.contains(&"{\"mode\":\"strict\"}".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"hello stdout".to_string()),
        "stdout is a log line"
    );
    assert_eq!(status(&s, "fdw"), Some(0));
    assert_eq!(status(&s, "nw"), Some(13));
    assert_eq!(status(&s, "badfd"), Some(8));
    assert_eq!(status(&s, "env"), Some(0), "no environment");
    assert_eq!(status(&s, "rand"), Some(0));
    assert_eq!(status(&s, "open"), Some(44), "no files: ENOENT");
    assert_eq!(status(&s, "clock"), Some(0));
    assert_eq!(status(&s, "lvl_st"), Some(0));
    assert_eq!(status(&s, "lvl"), Some(2));
    assert_eq!(
        status(&s, "cfg"),
        Some(1),
        "plugin config only during on_configure"
    );
    assert_eq!(
        status(&s, "grpc"),
        Some(4),
        "unknown gRPC cluster: ParseFailure"
    );
    assert_eq!(status(&s, "ff"), Some(1));
    assert_eq!(status(&s, "done"), Some(1));
}

#[test]
fn load_rejects_unknown_import_bad_abi_and_false_configure() {
    let bad_import = r#"(module
      (import "env" "proxy_does_not_exist" (func (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1")))"#;
    match Plugin::load(bad_import.as_bytes(), config("bad")) {
        Err(e @ LoadError::UnknownImport { .. }) => {
            assert!(e.to_string().contains("env::proxy_does_not_exist"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let wasi_file = r#"(module
      (import "wasi_snapshot_preview1" "fd_open_everything" (func (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1")))"#;
    assert!(matches!(
        Plugin::load(wasi_file.as_bytes(), config("bad2")),
        Err(LoadError::UnknownImport { .. })
    ));
    let no_abi = r#"(module (memory (export "memory") 1))"#;
    assert!(matches!(
        Plugin::load(no_abi.as_bytes(), config("bad3")),
        Err(LoadError::AbiVersion)
    ));
    let w = Wat::new();
    let m = w.module(
        r#"  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(
        Plugin::load(m.as_bytes(), config("bad4")),
        Err(LoadError::Configure(_))
    ));
    let m = w.module(
        r#"  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(
        Plugin::load(m.as_bytes(), config("bad5")),
        Err(LoadError::Start(_))
    ));
}

#[test]
fn buffer_limit_gives_413_and_500() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (if (i32.eqz (local.get $e)) (then (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (drop (call $proxy_add_header_map_value (i32.const 2) {xs} {one}))
    (drop (call $proxy_get_header_map_value (i32.const 2) {st} (i32.const 200) (i32.const 204)))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 200))) (i32.const 50)) (then (return (i32.const 2))))
    (i32.const 0))
"#,
        xs = w.s("x-seen"),
        one = w.s("1"),
        st = w.s(":status"),
    );
    let (p, _) = load(&w.module(&body), config("limits"));
    let mut vm = TestVm::new(&p).unwrap();
    vm.buffer_limit = 8;
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.remove("content-length");
    s.decode_headers(h, false);
    s.take_outputs();
    s.decode_data(b"12345".to_vec(), false);
    s.decode_data(b"67890".to_vec(), false);
    let outs = s.take_outputs();
    let (h, _) = headers_out(&outs, Dir::Response).unwrap();
    assert_eq!(h.get(":status").unwrap(), b"413");
    assert_eq!(
        h.get("x-seen").unwrap(),
        b"1",
        "413 runs through the encode path"
    );

    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    s.take_outputs();
    s.encode_headers(hm(&[(":status", "200")]), false);
    assert!(
        headers_out(&s.take_outputs(), Dir::Response).is_none(),
        "stopped"
    );
    s.encode_data(b"0123456789".to_vec(), false);
    let outs = s.take_outputs();
    let (h, _) = headers_out(&outs, Dir::Response).unwrap();
    assert_eq!(h.get(":status").unwrap(), b"500");
    assert!(
        h.get("x-seen").is_none(),
        "sent directly, not through the filter"
    );
}

#[test]
fn forwarded_headers_are_immutable_and_content_length_is_checked() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (call $rec {k_add} (call $proxy_add_header_map_value (i32.const 0) {xl} {one}))
    (call $rec {k_get} (call $proxy_get_header_map_value (i32.const 0) {p} (i32.const 200) (i32.const 204)))
    (call $rec {k_pairs} (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 200) (i32.const 204)))
    (call $rec {k_n} (i32.load (i32.load (i32.const 200))))
    (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) {extra}))
    (i32.const 0))
"#,
        k_add = w.s("add"),
        xl = w.s("x-late"),
        one = w.s("1"),
        k_get = w.s("get"),
        p = w.s(":path"),
        k_pairs = w.s("pairs"),
        k_n = w.s("npairs"),
        extra = w.s("extra"),
    );
    let (p, _) = load(&w.module(&body), config("immutable"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.add("content-length", b"2");
    s.decode_headers(h, false);
    let outs = s.take_outputs();
    assert!(headers_out(&outs, Dir::Request).is_some());
    s.decode_data(b"{}".to_vec(), true);
    assert_eq!(
        status(&s, "add"),
        Some(2),
        "BadArgument after the headers went on"
    );
    assert_eq!(status(&s, "get"), Some(2));
    assert_eq!(status(&s, "pairs"), Some(0));
    let outs = s.take_outputs();
    assert!(outs.contains(&Output::ResetUpstream), "{outs:?}");
    let (h, _) = headers_out(&outs, Dir::Response).unwrap();
    assert_eq!(
        h.get(":status").unwrap(),
        b"500",
        "body grew past content-length"
    );
}

fn stop_iteration_module(w: &Wat) -> String {
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (i32.const 1))
  (func (export "proxy_on_request_body") (param $c i32) (param $size i32) (param $eos i32) (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (call $rec {k_size} (local.get $size))
    (call $rec {k_add} (call $proxy_add_header_map_value (i32.const 0) {xb} {one}))
    (i32.const 0))
"#,
        k_size = w.s("size"),
        k_add = w.s("add"),
        xb = w.s("x-from-body"),
        one = w.s("1"),
    );
    w.module(&body)
}

#[test]
fn stop_iteration_from_headers_is_stop_all_by_default() {
    let w = Wat::new();
    let (p, _) = load(&stop_iteration_module(&w), config("stopall"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.remove("content-length");
    s.decode_headers(h, false);
    s.decode_data(b"abc".to_vec(), false);
    s.decode_data(b"def".to_vec(), true);
    assert!(s.take_outputs().is_empty());
    assert_eq!(
        status(&s, "size"),
        None,
        "no body callback while stopped-all"
    );
    // What proxy_continue_stream(Request) queues, e.g. from an http_call callback.
    s.data()
        .borrow_mut()
        .actions
        .push(host_shim::StreamAction::Continue(Dir::Request));
    s.process_actions();
    assert_eq!(status(&s, "size"), Some(6), "the held body arrives whole");
    assert_eq!(status(&s, "add"), Some(2), "headers already went on");
    let outs = s.take_outputs();
    let (h, eos) = headers_out(&outs, Dir::Request).unwrap();
    assert!(!eos);
    assert!(h.get("x-from-body").is_none());
    assert_eq!(data_out(&outs, Dir::Request), b"abcdef");
}

#[test]
fn allow_on_headers_stop_iteration_keeps_headers_mutable_in_body() {
    let w = Wat::new();
    let mut cfg = config("stopsingle");
    cfg.allow_on_headers_stop_iteration = true;
    let (p, _) = load(&stop_iteration_module(&w), cfg);
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.remove("content-length");
    s.decode_headers(h, false);
    s.decode_data(b"abc".to_vec(), false);
    assert!(s.take_outputs().is_empty());
    s.decode_data(b"def".to_vec(), true);
    assert_eq!(status(&s, "size"), Some(6));
    assert_eq!(status(&s, "add"), Some(0), "held headers are still mutable");
    let outs = s.take_outputs();
    let (h, eos) = headers_out(&outs, Dir::Request).unwrap();
    assert!(!eos);
    assert_eq!(h.get("x-from-body").unwrap(), b"1");
    assert_eq!(
        outs.last().unwrap(),
        &Output::Data(Dir::Request, b"abcdef".to_vec(), true)
    );
}

/// A module that buffers every request and response body chunk, and in the
/// trailers callbacks reads the whole held body, rewrites it and (request
/// side) edits the still-held headers and the trailers.
fn trailers_module(w: &Wat) -> String {
    let body = format!(
        r#"
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (i32.const 1))
  (func (export "proxy_on_request_body") (param $c i32) (param $size i32) (param $eos i32) (result i32)
    (i32.const 1))
  (func (export "proxy_on_request_trailers") (param $c i32) (param $n i32) (result i32)
    (call $rec {k_get} (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 200) (i32.const 204)))
    (call $out {k_body})
    (call $rec {k_set} (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const -1) {new}))
    (call $rec {k_hdr} (call $proxy_replace_header_map_value (i32.const 0) {xd} {yes}))
    (call $rec {k_trl} (call $proxy_remove_header_map_value (i32.const 1) {xt}))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $c i32) (param $size i32) (param $eos i32) (result i32)
    (i32.const 1))
  (func (export "proxy_on_response_trailers") (param $c i32) (param $n i32) (result i32)
    (drop (call $proxy_get_buffer_bytes (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 200) (i32.const 204)))
    (call $out {k_rbody})
    (i32.const 0))
"#,
        k_get = w.s("get"),
        k_body = w.s("body"),
        k_set = w.s("set"),
        new = w.s("decided"),
        k_hdr = w.s("hdr"),
        xd = w.s("x-decided"),
        yes = w.s("yes"),
        k_trl = w.s("trl"),
        xt = w.s("x-mcp-subject"),
        k_rbody = w.s("rbody"),
    );
    w.module(&body)
}

/// Envoy context.cc: `decodeTrailers` runs the VM's `on_request_trailers`
/// while `buffering_request_body_` is set by the last body callback, and
/// `getBuffer(HttpRequestBody)` then hands out the filter manager's whole
/// buffered body (`modifyDecodingBuffer`), readable and writable; the
/// headers are still held (`request_headers_` is cleared only on Continue),
/// and `commonContinue` forwards headers, the buffered data and the
/// trailers. A filter can therefore decide a body that ends in trailers.
#[test]
fn trailers_see_and_rewrite_the_buffered_body() {
    let w = Wat::new();
    let mut cfg = config("trailers");
    cfg.allow_on_headers_stop_iteration = true;
    let (p, _) = load(&trailers_module(&w), cfg);
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.remove("content-length");
    s.decode_headers(h, false);
    s.decode_data(b"abc".to_vec(), false);
    s.decode_data(b"def".to_vec(), false);
    assert!(s.take_outputs().is_empty(), "held until the trailers");
    s.decode_trailers(hm(&[("x-mcp-subject", "mallory"), ("x-other", "1")]));
    assert_eq!(status(&s, "get"), Some(0));
    assert_eq!(
        bytes(&s, "body").unwrap(),
        b"abcdef",
        "the whole buffered body"
    );
    assert_eq!(status(&s, "set"), Some(0));
    assert_eq!(status(&s, "hdr"), Some(0), "headers still held at trailers");
    assert_eq!(status(&s, "trl"), Some(0));
    let outs = s.take_outputs();
    let (h, eos) = headers_out(&outs, Dir::Request).unwrap();
    assert!(!eos);
    assert_eq!(h.get("x-decided").unwrap(), b"yes");
    assert_eq!(data_out(&outs, Dir::Request), b"decided");
    let trailers = outs
        .iter()
        .find_map(|o| match o {
            Output::Trailers(Dir::Request, t) => Some(t.clone()),
            _ => None,
        })
        .expect("trailers forwarded");
    assert!(trailers.get("x-mcp-subject").is_none());
    assert_eq!(trailers.get("x-other").unwrap(), b"1");

    s.encode_headers(hm(&[(":status", "200")]), false);
    s.encode_data(b"{\"a\":".to_vec(), false);
    s.encode_data(b"1}".to_vec(), false);
    s.encode_trailers(hm(&[("grpc-status", "0")]));
    assert_eq!(bytes(&s, "rbody").unwrap(), b"{\"a\":1}");
    let outs = s.take_outputs();
    assert_eq!(data_out(&outs, Dir::Response), b"{\"a\":1}");
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Trailers(Dir::Response, _)))
    );
    s.finish();
}

/// Envoy `commonContinue`: trailers that arrived while the request headers
/// were stopped-all (the default, without `allow_on_headers_stop_iteration`)
/// are delivered after the held data (`doTrailers` after `doData`), even when
/// the filter buffers that data, so they still reach `on_request_trailers`
/// with the whole body.
#[test]
fn trailers_held_behind_stop_all_follow_the_body() {
    let w = Wat::new();
    let (p, _) = load(&trailers_module(&w), config("trailers-stopall"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    let mut h = req_headers("/");
    h.remove("content-length");
    s.decode_headers(h, false);
    s.decode_data(b"abc".to_vec(), false);
    s.decode_trailers(hm(&[("x-other", "1")]));
    assert!(s.take_outputs().is_empty());
    s.data()
        .borrow_mut()
        .actions
        .push(host_shim::StreamAction::Continue(Dir::Request));
    s.process_actions();
    assert_eq!(bytes(&s, "body").unwrap(), b"abc");
    let outs = s.take_outputs();
    assert_eq!(data_out(&outs, Dir::Request), b"decided");
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Trailers(Dir::Request, _)))
    );
}

/// Envoy `Context::getMap`: in the last body callback of a stream that has
/// no trailers, writing to the trailers adds them (`addDecodedTrailers`,
/// `addEncodedTrailers`); the body then goes on without end_stream and the
/// added trailers end the stream. Before the last chunk there is nothing to
/// write to (BadArgument). Both directions, and after a buffered body.
#[test]
fn trailers_can_be_added_in_the_last_body_callback() {
    let w = Wat::new();
    let body = format!(
        r#"
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (if (i32.eqz (local.get $e))
      (then
        (call $rec {k_early} (call $proxy_add_header_map_value (i32.const 1) {name} {one}))
        (return (i32.const 1))))
    (call $rec {k_req} (call $proxy_add_header_map_value (i32.const 1) {name} {one}))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (if (local.get $e)
      (then (call $rec {k_resp} (call $proxy_add_header_map_value (i32.const 3) {name} {two}))))
    (i32.const 0))
"#,
        k_early = w.s("early"),
        k_req = w.s("req"),
        k_resp = w.s("resp"),
        name = w.s("x-added"),
        one = w.s("1"),
        two = w.s("2"),
    );
    let (p, _) = load(&w.module(&body), config("add-trailers"));
    let vm = TestVm::new(&p).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), false);
    s.decode_data(b"ab".to_vec(), false);
    assert_eq!(
        status(&s, "early"),
        Some(2),
        "not the last chunk: BadArgument"
    );
    s.decode_data(b"cd".to_vec(), true);
    assert_eq!(status(&s, "req"), Some(0));
    let outs = s.take_outputs();
    assert_eq!(data_out(&outs, Dir::Request), b"abcd");
    assert!(
        outs.iter()
            .all(|o| !matches!(o, Output::Data(Dir::Request, _, true))),
        "the data no longer ends the request"
    );
    match outs.last() {
        Some(Output::Trailers(Dir::Request, t)) => assert_eq!(t.get("x-added").unwrap(), b"1"),
        other => panic!("the added trailers end the request: {other:?}"),
    }

    s.encode_headers(hm(&[(":status", "200")]), false);
    s.encode_data(b"ok".to_vec(), true);
    assert_eq!(status(&s, "resp"), Some(0));
    let outs = s.take_outputs();
    assert_eq!(data_out(&outs, Dir::Response), b"ok");
    match outs.last() {
        Some(Output::Trailers(Dir::Response, t)) => assert_eq!(t.get("x-added").unwrap(), b"2"),
        other => panic!("the added trailers end the response: {other:?}"),
    }
    s.finish();
}

/// Envoy `getBuffer(HttpRequestBody)`: while the filter buffers the body
/// (`buffering_request_body_`), the buffered data is reachable from any
/// callback through `modifyDecodingBuffer`, so a filter that paused on the
/// body and asked another service (`http_call`) reads and rewrites the
/// body in the answer's callback, then continues with the rewritten body.
#[test]
fn the_buffered_body_is_readable_and_writable_from_an_http_call_callback() {
    let w = Wat::new();
    let body = format!(
        r#"
  (global $ctx (mut i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param $c i32) (param $s i32) (param $e i32) (result i32)
    (global.set $ctx (local.get $c))
    (if (local.get $e)
      (then (call $rec {k_call} (call $proxy_http_call {authz} {hdrs} (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 300)))))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param $root i32) (param $tok i32) (param $nh i32) (param $nb i32) (param $nt i32)
    (drop (call $proxy_set_effective_context (global.get $ctx)))
    (call $rec {k_get} (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 200) (i32.const 204)))
    (call $out {k_seen})
    (call $rec {k_set} (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 1000) {new}))
    (call $rec {k_cont} (call $proxy_continue_stream (i32.const 0))))
"#,
        k_call = w.s("call"),
        authz = w.s("authz"),
        hdrs = w.pairs(&[
            (":method", "POST"),
            (":path", "/check"),
            (":authority", "authz")
        ]),
        k_get = w.s("get"),
        k_seen = w.s("seen"),
        k_set = w.s("set"),
        new = w.s("rewritten"),
        k_cont = w.s("cont"),
    );
    let (p, _) = load(&w.module(&body), config("held-body"));
    let clusters = HashMap::from([("authz".to_string(), "http://127.0.0.1:9".parse().unwrap())]);
    let vm = TestVm::with_clusters(&p, clusters).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), false);
    s.decode_data(b"abc".to_vec(), false);
    s.decode_data(b"def".to_vec(), true);
    assert_eq!(status(&s, "call"), Some(0));
    assert_eq!(
        data_out(&s.take_outputs(), Dir::Request),
        b"",
        "held while the call is out"
    );
    let calls = vm.vm.take_http_calls();
    assert_eq!(calls.len(), 1);
    vm.vm.complete_http_call(
        calls[0].token,
        Some(HttpCallResponse {
            headers: hm(&[(":status", "200")]),
            body: Vec::new(),
            trailers: Default::default(),
        }),
    );
    assert_eq!(status(&s, "get"), Some(0));
    assert_eq!(
        bytes(&s, "seen").unwrap(),
        b"abcdef",
        "the whole buffered body"
    );
    assert_eq!(status(&s, "set"), Some(0));
    assert_eq!(status(&s, "cont"), Some(0));
    s.process_actions();
    let outs = s.take_outputs();
    assert_eq!(data_out(&outs, Dir::Request), b"rewritten");
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Data(Dir::Request, _, true))),
        "the rewritten body ends the request"
    );
}

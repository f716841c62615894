//! `proxy_grpc_call` against a real gRPC server (tonic, Envoy's Rate Limit
//! Service v3) over 127.0.0.1: the answer through `proxy_on_grpc_receive`
//! and `GrpcReceiveBuffer`, failures through `proxy_on_grpc_close` and
//! `proxy_get_status`, as Envoy's `Context::onGrpcReceive`/`onGrpcClose`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Wat, bytes, config, load, req_headers, status};
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use host_shim::{Dir, Output, TestVm};
use prost::Message as _;

struct Rls;

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        req: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let tenant = req
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let r = req.into_inner();
        match r.domain.as_str() {
            "slow" => tokio::time::sleep(Duration::from_secs(30)).await,
            "fail" => return Err(tonic::Status::permission_denied("no such domain")),
            _ => {}
        }
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: if r.hits_addend > 3 {
                Code::OverLimit as i32
            } else {
                Code::Ok as i32
            },
            response_headers_to_add: vec![HeaderValue {
                key: "x-tenant-seen".into(),
                value: tenant,
                ..Default::default()
            }],
            ..Default::default()
        }))
    }
}

async fn rls_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RateLimitServiceServer::new(Rls))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    addr
}

/// On request headers: one grpc_call to ShouldRateLimit with the domain and
/// hits_addend taken from the request path's message bytes; the answer or
/// the close is recorded and the stream continued.
fn module(w: &Wat, service: &[u8], msg: &[u8], timeout_ms: u32) -> String {
    let body = format!(
        r#"
  (global $ctx (mut i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param $c i32) (param $n i32) (param $e i32) (result i32)
    (global.set $ctx (local.get $c))
    (call $rec {k_call} (call $proxy_grpc_call {svc} {sname} {method} {md} {msg} (i32.const {timeout_ms}) (i32.const 300)))
    (call $rec {k_token} (i32.load (i32.const 300)))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive") (param $root i32) (param $tok i32) (param $size i32)
    (drop (call $proxy_set_effective_context (global.get $ctx)))
    (call $rec {k_rtok} (local.get $tok))
    (call $rec {k_size} (local.get $size))
    (call $rec {k_get} (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (local.get $size) (i32.const 200) (i32.const 204)))
    (call $out {k_msg})
    (drop (call $proxy_continue_stream (i32.const 0))))
  (func (export "proxy_on_grpc_close") (param $root i32) (param $tok i32) (param $code i32)
    (drop (call $proxy_set_effective_context (global.get $ctx)))
    (call $rec {k_rtok} (local.get $tok))
    (call $rec {k_code} (local.get $code))
    (drop (call $proxy_get_status (i32.const 208) (i32.const 200) (i32.const 204)))
    (call $out {k_smsg})
    (drop (call $proxy_continue_stream (i32.const 0))))
"#,
        k_call = w.s("call"),
        svc = w.b(service),
        sname = w.s("envoy.service.ratelimit.v3.RateLimitService"),
        method = w.s("ShouldRateLimit"),
        md = w.pairs(&[("x-tenant", "acme")]),
        msg = w.b(msg),
        k_token = w.s("token"),
        k_rtok = w.s("rtok"),
        k_size = w.s("size"),
        k_get = w.s("get"),
        k_msg = w.s("msg"),
        k_code = w.s("code"),
        k_smsg = w.s("status_msg"),
    );
    w.module(&body)
}

fn rls_request(domain: &str, hits: u32) -> Vec<u8> {
    RateLimitRequest {
        domain: domain.into(),
        hits_addend: hits,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Runs one request through a VM whose cluster "fleet" points at `target`.
async fn run(
    name: &str,
    service: &[u8],
    msg: &[u8],
    timeout_ms: u32,
    target: SocketAddr,
) -> host_shim::StreamCore {
    let w = Wat::new();
    let (p, _) = load(&module(&w, service, msg, timeout_ms), config(name));
    let clusters = HashMap::from([(
        "fleet".to_string(),
        format!("http://{target}").parse().unwrap(),
    )]);
    let vm = TestVm::with_clusters(&p, clusters).unwrap();
    let mut s = vm.stream();
    s.decode_headers(req_headers("/"), true);
    vm.run_grpc_calls().await;
    s.process_actions();
    s
}

#[tokio::test]
async fn grpc_call_answer_arrives_in_the_receive_buffer() {
    let addr = rls_server().await;
    let mut s = run("grpc-ok", b"fleet", &rls_request("mcp", 5), 5000, addr).await;
    assert_eq!(status(&s, "call"), Some(0));
    let token = status(&s, "token").unwrap();
    assert_eq!(
        token & 3,
        1,
        "a gRPC call id (cpp-host CalloutType::GrpcCall)"
    );
    assert_eq!(status(&s, "rtok"), Some(token));
    assert_eq!(status(&s, "get"), Some(0));
    assert_eq!(status(&s, "code"), None, "no close after a receive");
    let resp = RateLimitResponse::decode(bytes(&s, "msg").unwrap().as_slice()).unwrap();
    assert_eq!(
        resp.overall_code,
        Code::OverLimit as i32,
        "hits_addend 5 > 3"
    );
    assert_eq!(
        resp.response_headers_to_add[0].value, "acme",
        "the module's initial metadata reached the server"
    );
    assert_eq!(
        status(&s, "size"),
        Some(bytes(&s, "msg").unwrap().len() as u32)
    );
    assert!(
        s.take_outputs()
            .iter()
            .any(|o| matches!(o, Output::Headers(Dir::Request, _, _))),
        "the stream went on after the answer"
    );
}

#[tokio::test]
async fn grpc_service_proto_names_the_cluster() {
    let addr = rls_server().await;
    // envoy.config.core.v3.GrpcService { envoy_grpc { cluster_name: "fleet" } }
    let svc = host_shim::grpc::GrpcService {
        envoy_grpc: Some(host_shim::grpc::EnvoyGrpc {
            cluster_name: "fleet".into(),
            authority: String::new(),
        }),
        google_grpc: None,
        initial_metadata: vec![],
    }
    .encode_to_vec();
    let s = run("grpc-proto", &svc, &rls_request("mcp", 1), 5000, addr).await;
    assert_eq!(status(&s, "call"), Some(0));
    let resp = RateLimitResponse::decode(bytes(&s, "msg").unwrap().as_slice()).unwrap();
    assert_eq!(resp.overall_code, Code::Ok as i32);
}

#[tokio::test]
async fn grpc_call_to_an_unknown_cluster_is_refused() {
    let addr = rls_server().await;
    let s = run("grpc-unknown", b"nope", &rls_request("mcp", 1), 5000, addr).await;
    assert_eq!(
        status(&s, "call"),
        Some(4),
        "Envoy: an unparsable service that names no cluster is ParseFailure"
    );
    assert_eq!(status(&s, "rtok"), None, "no callback follows");
    let svc = host_shim::grpc::GrpcService {
        envoy_grpc: Some(host_shim::grpc::EnvoyGrpc {
            cluster_name: "elsewhere".into(),
            authority: String::new(),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let s = run(
        "grpc-unknown-proto",
        &svc,
        &rls_request("mcp", 1),
        5000,
        addr,
    )
    .await;
    assert_eq!(
        status(&s, "call"),
        Some(10),
        "a GrpcService whose cluster is unknown: the async client refuses it"
    );
}

#[tokio::test]
async fn grpc_call_server_error_status_reaches_on_grpc_close() {
    let addr = rls_server().await;
    let s = run("grpc-fail", b"fleet", &rls_request("fail", 1), 5000, addr).await;
    assert_eq!(status(&s, "call"), Some(0));
    assert_eq!(status(&s, "code"), Some(7), "PERMISSION_DENIED");
    assert_eq!(bytes(&s, "status_msg").unwrap(), b"no such domain");
    assert_eq!(status(&s, "get"), None, "no receive after a close");
}

#[tokio::test]
async fn grpc_call_timeout_and_dead_port_close_with_unavailable() {
    let addr = rls_server().await;
    let s = run("grpc-slow", b"fleet", &rls_request("slow", 1), 100, addr).await;
    assert_eq!(status(&s, "code"), Some(14));
    assert_eq!(
        bytes(&s, "status_msg").unwrap(),
        b"upstream request timeout"
    );
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = run("grpc-dead", b"fleet", &rls_request("mcp", 1), 5000, dead).await;
    assert_eq!(status(&s, "code"), Some(14));
    assert!(
        String::from_utf8(bytes(&s, "status_msg").unwrap())
            .unwrap()
            .starts_with("upstream connect error"),
    );
}

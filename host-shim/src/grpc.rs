//! `proxy_grpc_call`: a unary gRPC call from a module to a named cluster,
//! with Envoy's semantics (source/extensions/common/wasm/context.cc,
//! `Context::grpcCall`, `onGrpcReceive`, `onGrpcClose`; proxy-wasm cpp-host
//! src/exports.cc `grpc_call`).
//!
//! - The service argument is a serialized `envoy.config.core.v3.GrpcService`;
//!   if it does not parse, Envoy takes the bytes as a cluster name, and an
//!   unknown one is `ParseFailure`.
//! - A parsed `GrpcService` must name an `envoy_grpc` cluster (Envoy's
//!   `getOrCreateRawAsyncClient` fails otherwise: `BadArgument`); the shim has
//!   no Google gRPC client, so `google_grpc` is `BadArgument` too. A parsed
//!   but unknown cluster is started with `skip_cluster_check` in Envoy and
//!   its async client refuses it ("Cluster not available"), so `sendRaw`
//!   returns null: `InternalFailure`.
//! - Success is `proxy_on_grpc_receive(root, token, size)` with the message
//!   readable as `GrpcReceiveBuffer`; any other outcome is
//!   `proxy_on_grpc_close(root, token, status)` with the message readable by
//!   `proxy_get_status`. Both go to the root context (cpp-host `grpc_call`
//!   runs on `contextOrEffectiveContext()->root_context()`).
//! - The timeout (ms, 0 = none) is the async client's route timeout: when it
//!   fires the router's local reply is a 504, which a gRPC request sees as
//!   `grpc-status` 14 (`Grpc::Utility::httpToGrpcStatus`) with the body
//!   "upstream request timeout" as `grpc-message`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::headers::HeaderMap;

/// gRPC status codes the shim produces itself.
pub mod code {
    pub const OK: u32 = 0;
    pub const UNKNOWN: u32 = 2;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// `envoy.config.core.v3.GrpcService`, the fields Envoy reads for an
/// `envoy_grpc` target (hand-written so the shim needs no proto codegen).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrpcService {
    #[prost(message, optional, tag = "1")]
    pub envoy_grpc: Option<EnvoyGrpc>,
    /// `google_grpc`: only its presence matters here.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub google_grpc: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "5")]
    pub initial_metadata: Vec<HeaderValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EnvoyGrpc {
    #[prost(string, tag = "1")]
    pub cluster_name: String,
    #[prost(string, tag = "2")]
    pub authority: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Where a call goes, resolved from the service argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub cluster: String,
    pub authority: String,
    pub metadata: Vec<(String, String)>,
}

/// Why a service argument names no usable target, as an ABI status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// Not a `GrpcService` and not a known cluster name.
    UnknownClusterName,
    /// A `GrpcService` with no `envoy_grpc` cluster.
    NoEnvoyGrpc,
}

/// Envoy `Context::grpcCall`'s reading of the service bytes.
pub(crate) fn resolve_target(
    service: &[u8],
    known: impl Fn(&str) -> bool,
) -> Result<Target, TargetError> {
    use prost::Message as _;
    match GrpcService::decode(service) {
        Ok(svc) => {
            let Some(eg) = svc.envoy_grpc.filter(|e| !e.cluster_name.is_empty()) else {
                return Err(TargetError::NoEnvoyGrpc);
            };
            if svc.google_grpc.is_some() {
                return Err(TargetError::NoEnvoyGrpc);
            }
            // EnvoyGrpc.authority: "If not set, the authority header value
            // will be cluster_name."
            let authority = if eg.authority.is_empty() {
                eg.cluster_name.clone()
            } else {
                eg.authority
            };
            Ok(Target {
                cluster: eg.cluster_name,
                authority,
                metadata: svc
                    .initial_metadata
                    .into_iter()
                    .map(|h| (h.key.to_ascii_lowercase(), h.value))
                    .collect(),
            })
        }
        Err(_) => {
            let name = String::from_utf8_lossy(service).into_owned();
            if known(&name) {
                Ok(Target {
                    authority: name.clone(),
                    cluster: name,
                    metadata: Vec::new(),
                })
            } else {
                Err(TargetError::UnknownClusterName)
            }
        }
    }
}

/// An outgoing `proxy_grpc_call`, waiting for the IO layer.
#[derive(Debug, Clone)]
pub struct PendingGrpcCall {
    pub token: u32,
    pub cluster: String,
    pub upstream: http::Uri,
    /// What Envoy would send as `:authority` (see `perform_grpc_call`).
    pub authority: String,
    pub service: String,
    pub method: String,
    /// The module's initial metadata, then the `GrpcService`'s.
    pub metadata: HeaderMap,
    pub message: Vec<u8>,
    /// Envoy: 0 means no timeout.
    pub timeout: Option<Duration>,
}

/// How a unary call ended: the response message, or a status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcCallResult {
    Message(Vec<u8>),
    Close { status: u32, message: String },
}

impl GrpcCallResult {
    fn close(status: u32, message: &str) -> Self {
        GrpcCallResult::Close {
            status,
            message: message.to_string(),
        }
    }
}

/// The HTTP/2 (prior knowledge, as Envoy's `http2_protocol_options` gRPC
/// clusters) client calls go through.
///
/// With `TCP_NODELAY`, as Envoy's upstream connections have it (`CodecClient`
/// sets `connection_->noDelay(true)`). Without it every call took about
/// 40 ms more on loopback (`benches/fleet_limit.rs`: 44.5 ms a governed
/// call, 0.4 to 0.8 ms with it), Nagle's algorithm holding a small second
/// write (HEADERS, then DATA) until the server's delayed ACK.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector)
}

/// `grpc-timeout` as gRPC's PROTOCOL-HTTP2 wants it: at most 8 digits.
fn grpc_timeout(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", (d.as_secs()).min(99_999_999))
    }
}

/// Envoy `Grpc::Utility::httpToGrpcStatus`.
fn http_to_grpc(status: u16) -> u32 {
    match status {
        400 => code::INTERNAL,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// grpc-message is percent-encoded on the wire.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or_default();
        if c == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(h), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn grpc_status_of(h: &http::HeaderMap) -> Option<(u32, String)> {
    let st = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let msg = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((st, msg))
}

/// Performs a call like Envoy's gRPC async client (`AsyncRequestImpl`):
/// connect failure or reset before headers is the router's 503 (status 14),
/// a timeout its 504 (status 14), a non-200 HTTP status maps by
/// `httpToGrpcStatus`, an OK status without a message is `Internal`.
pub async fn perform_grpc_call(
    client: Client<HttpConnector, Full<Bytes>>,
    call: PendingGrpcCall,
) -> GrpcCallResult {
    let timeout = call.timeout;
    let fut = async move {
        let mut parts = call.upstream.clone().into_parts();
        parts.path_and_query = match format!("/{}/{}", call.service, call.method).parse() {
            Ok(p) => Some(p),
            Err(_) => return GrpcCallResult::close(code::INTERNAL, "bad service or method name"),
        };
        let Ok(uri) = http::Uri::from_parts(parts) else {
            return GrpcCallResult::close(code::INTERNAL, "bad upstream");
        };
        let mut b = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = call.timeout {
            b = b.header("grpc-timeout", grpc_timeout(t));
        }
        for (k, v) in call.metadata.iter() {
            if !k.starts_with(':') {
                b = b.header(k, v);
            }
        }
        let mut framed = BytesMut::with_capacity(call.message.len() + 5);
        framed.put_u8(0);
        framed.put_u32(call.message.len() as u32);
        framed.put_slice(&call.message);
        let Ok(req) = b.body(Full::new(framed.freeze())) else {
            return GrpcCallResult::close(code::INTERNAL, "bad initial metadata");
        };
        // hyper connects to the URI's authority and sends it as
        // `:authority`, so the cluster's address is sent where Envoy would
        // send `EnvoyGrpc.authority` (or the cluster name); the shim's
        // clusters are plain addresses with no virtual hosting behind them.
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(_) => {
                return GrpcCallResult::close(
                    code::UNAVAILABLE,
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                );
            }
        };
        let status = resp.status().as_u16();
        // Trailers-only responses carry grpc-status in the headers.
        let head_status = grpc_status_of(resp.headers());
        if status != 200 {
            return match head_status {
                Some((s, m)) => GrpcCallResult::Close {
                    status: s,
                    message: m,
                },
                None => GrpcCallResult::Close {
                    status: http_to_grpc(status),
                    message: format!("{status}"),
                },
            };
        }
        let collected = match resp.into_body().collect().await {
            Ok(c) => c,
            Err(_) => return GrpcCallResult::close(code::INTERNAL, "stream reset"),
        };
        let trailer_status = collected.trailers().and_then(grpc_status_of);
        let Some((st, msg)) = trailer_status.or(head_status) else {
            return GrpcCallResult::close(code::INTERNAL, "no grpc-status");
        };
        if st != code::OK {
            return GrpcCallResult::Close {
                status: st,
                message: msg,
            };
        }
        let mut body = collected.to_bytes();
        if body.remaining() < 5 {
            // Envoy AsyncRequestImpl::onRemoteClose: OK with no message.
            return GrpcCallResult::close(code::INTERNAL, "");
        }
        let compressed = body.get_u8();
        let len = body.get_u32() as usize;
        if compressed != 0 || body.remaining() < len {
            return GrpcCallResult::close(code::INTERNAL, "bad gRPC frame");
        }
        GrpcCallResult::Message(body.split_to(len).to_vec())
    };
    match timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => GrpcCallResult::close(code::UNAVAILABLE, "upstream request timeout"),
        },
        None => fut.await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;

    #[test]
    fn service_bytes_name_a_cluster_or_a_grpc_service() {
        let known = |c: &str| c == "fleet";
        let t = resolve_target(b"fleet", known).unwrap();
        assert_eq!(
            (t.cluster.as_str(), t.authority.as_str()),
            ("fleet", "fleet")
        );
        assert_eq!(
            resolve_target(b"nope", known),
            Err(TargetError::UnknownClusterName)
        );
        let svc = GrpcService {
            envoy_grpc: Some(EnvoyGrpc {
                cluster_name: "fleet".into(),
                authority: "fleet.internal".into(),
            }),
            google_grpc: None,
            initial_metadata: vec![HeaderValue {
                key: "X-Tenant".into(),
                value: "a".into(),
            }],
        };
        let t = resolve_target(&svc.encode_to_vec(), known).unwrap();
        assert_eq!(t.authority, "fleet.internal");
        assert_eq!(t.metadata, vec![("x-tenant".to_string(), "a".to_string())]);
        let google = GrpcService {
            google_grpc: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            resolve_target(&google.encode_to_vec(), known),
            Err(TargetError::NoEnvoyGrpc)
        );
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode("no%20way%"), "no way%");
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250m");
    }
}

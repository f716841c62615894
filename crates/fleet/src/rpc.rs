//! The gRPC face of the store: RLS v3 (envoy-types' generated server) and
//! `portcullis.fleet.v1.Fleet` (hand-written: its messages are prost derives
//! in portcullis-core, so no codegen is needed here either).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::ratelimit::v3 as env_rls;
use portcullis_core::fleet::api;
use portcullis_core::fleet::rls::RateLimitRequest;
use prost::Message as _;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::store::{Store, StoreError};

fn status(e: StoreError) -> Status {
    match e {
        // The proxy's failClosed reads UNAVAILABLE as "no decision".
        StoreError::Unavailable(m) => Status::unavailable(m),
        StoreError::Invalid(m) => Status::invalid_argument(m),
    }
}

/// RLS v3 `ShouldRateLimit`. Messages cross from envoy-types to the core's
/// wire-compatible derives by their bytes.
pub struct Rls(pub Arc<Store>);

#[tonic::async_trait]
impl env_rls::rate_limit_service_server::RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        req: Request<env_rls::RateLimitRequest>,
    ) -> Result<Response<env_rls::RateLimitResponse>, Status> {
        let bytes = req.into_inner().encode_to_vec();
        let req = RateLimitRequest::decode(bytes.as_slice())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let resp = self.0.should_rate_limit(&req).await.map_err(status)?;
        let out = env_rls::RateLimitResponse::decode(resp.encode_to_vec().as_slice())
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(out))
    }
}

/// `portcullis.fleet.v1.Fleet`.
#[derive(Clone)]
pub struct FleetApi(pub Arc<Store>);

impl NamedService for FleetApi {
    const NAME: &'static str = api::SERVICE;
}

/// A unary method as a closure from request message to response message.
struct Unary<F>(F);

impl<Req, Resp, F, Fut> UnaryService<Req> for Unary<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<Response<Resp>, Status>;
    fn call(&mut self, req: Request<Req>) -> Self::Future {
        let fut = (self.0)(req.into_inner());
        Box::pin(async move { fut.await.map(Response::new) })
    }
}

async fn unary<B, Req, Resp, F, Fut>(
    req: http::Request<B>,
    f: F,
) -> http::Response<tonic::body::Body>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnMut(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
    grpc.unary(Unary(f), req).await
}

impl<B> Service<http::Request<B>> for FleetApi
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let store = self.0.clone();
        let method = req
            .uri()
            .path()
            .strip_prefix(&format!("/{}/", api::SERVICE))
            .unwrap_or_default()
            .to_string();
        Box::pin(async move {
            let resp = match method.as_str() {
                api::ACQUIRE_LEASE => {
                    unary(req, move |m: api::AcquireLeaseRequest| {
                        let s = store.clone();
                        async move {
                            s.acquire_lease(&m.key, m.limit, m.ttl_ms)
                                .await
                                .map_err(status)
                        }
                    })
                    .await
                }
                api::RELEASE_LEASE => {
                    unary(req, move |m: api::ReleaseLeaseRequest| {
                        let s = store.clone();
                        async move {
                            s.release_lease(&m.key, &m.lease_id)
                                .await
                                .map(|released| api::ReleaseLeaseResponse { released })
                                .map_err(status)
                        }
                    })
                    .await
                }
                api::SPEND => {
                    unary(req, move |m: api::SpendRequest| {
                        let s = store.clone();
                        async move {
                            s.spend(&m.key, m.ttl_ms)
                                .await
                                .map(|first| api::SpendResponse { first })
                                .map_err(status)
                        }
                    })
                    .await
                }
                api::ADD_QUARANTINE => {
                    unary(req, move |m: api::AddQuarantineRequest| {
                        let s = store.clone();
                        async move {
                            let Some(e) = m.entry else {
                                return Err(Status::invalid_argument("no entry"));
                            };
                            s.add_quarantine(&e).await.map_err(status)
                        }
                    })
                    .await
                }
                api::LIST_QUARANTINE => {
                    unary(req, move |_: api::ListQuarantineRequest| {
                        let s = store.clone();
                        async move { s.list_quarantine().await.map_err(status) }
                    })
                    .await
                }
                _ => Status::unimplemented(format!("no method {method}")).into_http(),
            };
            Ok(resp)
        })
    }
}

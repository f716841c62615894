//! A client for both APIs (tests, the e2e and operators' tooling).

use envoy_types::pb::envoy::service::ratelimit::v3 as env_rls;
use portcullis_core::fleet::api;
use portcullis_core::fleet::rls::{RateLimitRequest, RateLimitResponse};
use prost::Message as _;
use tonic::Status;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct FleetClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl FleetClient {
    pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let ch = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(ch),
        })
    }

    async fn call<Req, Resp>(&self, service: &str, method: &str, m: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut g = self.grpc.clone();
        g.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = PathAndQuery::try_from(format!("/{service}/{method}"))
            .map_err(|e| Status::internal(e.to_string()))?;
        g.unary(
            tonic::Request::new(m),
            path,
            tonic_prost::ProstCodec::<Req, Resp>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn should_rate_limit(
        &self,
        req: RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        // Through envoy-types' messages, as Envoy's own RLS client sends them.
        let env = env_rls::RateLimitRequest::decode(req.encode_to_vec().as_slice())
            .map_err(|e| Status::internal(e.to_string()))?;
        let r: env_rls::RateLimitResponse = self
            .call(
                portcullis_core::fleet::rls::SERVICE,
                portcullis_core::fleet::rls::METHOD,
                env,
            )
            .await?;
        RateLimitResponse::decode(r.encode_to_vec().as_slice())
            .map_err(|e| Status::internal(e.to_string()))
    }

    pub async fn acquire_lease(
        &self,
        key: &str,
        limit: u32,
        ttl_ms: u64,
    ) -> Result<api::AcquireLeaseResponse, Status> {
        let m = api::AcquireLeaseRequest {
            key: key.into(),
            limit,
            ttl_ms,
        };
        self.call(api::SERVICE, api::ACQUIRE_LEASE, m).await
    }

    pub async fn release_lease(&self, key: &str, lease_id: &str) -> Result<bool, Status> {
        let m = api::ReleaseLeaseRequest {
            key: key.into(),
            lease_id: lease_id.into(),
        };
        let r: api::ReleaseLeaseResponse = self.call(api::SERVICE, api::RELEASE_LEASE, m).await?;
        Ok(r.released)
    }

    pub async fn spend(&self, key: &str, ttl_ms: u64) -> Result<bool, Status> {
        let m = api::SpendRequest {
            key: key.into(),
            ttl_ms,
        };
        let r: api::SpendResponse = self.call(api::SERVICE, api::SPEND, m).await?;
        Ok(r.first)
    }

    pub async fn add_quarantine(
        &self,
        entry: api::QuarantineEntry,
    ) -> Result<api::AddQuarantineResponse, Status> {
        let m = api::AddQuarantineRequest { entry: Some(entry) };
        self.call(api::SERVICE, api::ADD_QUARANTINE, m).await
    }

    pub async fn list_quarantine(&self) -> Result<api::ListQuarantineResponse, Status> {
        self.call(
            api::SERVICE,
            api::LIST_QUARANTINE,
            api::ListQuarantineRequest {},
        )
        .await
    }
}

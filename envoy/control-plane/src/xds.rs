//! ADS and ECDS, state-of-the-world and delta, over one stream engine.
//!
//! All four RPCs serve one resource type,
//! `type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig`, and
//! differ only in framing, so each stream is one task running a
//! [`SotwStream`] or [`DeltaStream`] state machine that wakes on either a
//! request from the client or a new snapshot generation. The rules follow
//! Envoy's xDS protocol document (api-docs/xds_protocol.rst), cited inline:
//!
//! * "ACK/NACK and resource type instance version": a request whose
//!   `response_nonce` is the last nonce sent and whose `error_detail` is
//!   unset ACKs the version sent with it (SotW also echoes it as
//!   `version_info`); `error_detail` set is a NACK, and `version_info` then
//!   names the last good version.
//! * "When to send an update": only when the resources changed. A NACKed
//!   version is therefore never resent on the stream; the node stays on its
//!   last acked version until a newer one exists, and the NACK is recorded
//!   for the status page and metrics.
//! * "Resource updates": a request carrying a nonce other than the latest
//!   one sent on the stream is stale; the server sends nothing for it and
//!   ignores its ACK/NACK (delta subscription changes in it still apply).
//! * Reconnects: a new stream's first request carries the version the
//!   client has (`version_info` / `initial_resource_versions`). SotW always
//!   answers a new stream with the current version; delta answers unless
//!   the client already has it (incremental xDS "resume" semantics).
//! * "Knowing When a Requested Resource Does Not Exist": a node whose
//!   bundle directory has no valid bundle yet gets no response; the stream
//!   remembers the subscription and is answered once the bundle exists.
//! * Nodes: `node` is required in the first request of a stream only; its
//!   metadata (`environment`, `tenant`) picks the snapshot.

use crate::resource::TYPED_EXTENSION_CONFIG;
use crate::state::{Counters, Nack, State, now_ms};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_server::ExtensionConfigDiscoveryService;
use envoy_types::pb::google::protobuf::value::Kind;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The xDS services (one value implements both ADS and ECDS).
#[derive(Debug, Clone)]
pub struct Xds {
    state: Arc<State>,
}

impl Xds {
    pub fn new(state: Arc<State>) -> Self {
        Xds { state }
    }
}

/// What a stream knows of its node.
#[derive(Debug, Clone)]
struct NodeKey {
    id: String,
    environment: Option<String>,
    tenant: Option<String>,
}

fn metadata_string(node: &Node, key: &str) -> Option<String> {
    let v = node.metadata.as_ref()?.fields.get(key)?;
    match &v.kind {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Registers the node of a stream's first request; keeps a stream count
/// that [`StreamGuard`] gives back.
fn register(state: &Arc<State>, node: &Node, api: &str) -> (NodeKey, StreamGuard) {
    let key = NodeKey {
        id: node.id.clone(),
        environment: metadata_string(node, "environment"),
        tenant: metadata_string(node, "tenant"),
    };
    state.node(&key.id, |n| {
        n.cluster = node.cluster.clone();
        n.environment = key.environment.clone();
        n.tenant = key.tenant.clone();
        n.streams += 1;
        n.api = api.to_string();
        n.problem = key
            .environment
            .is_none()
            .then(|| "node metadata has no `environment`; nothing is served".to_string());
    });
    (
        key.clone(),
        StreamGuard {
            state: state.clone(),
            id: key.id,
        },
    )
}

struct StreamGuard {
    state: Arc<State>,
    id: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state
            .node(&self.id, |n| n.streams = n.streams.saturating_sub(1));
    }
}

/// The snapshot a node should have now, if any.
fn target(state: &State, node: &NodeKey) -> Option<Arc<crate::state::Snapshot>> {
    let env = node.environment.as_deref()?;
    let key = state.target(env, node.tenant.as_deref());
    let snap = state.snapshot(&key);
    state.node(&node.id, |n| {
        n.bundle = Some(key.clone());
        if node.environment.is_some() {
            n.problem = snap.is_none().then(|| {
                format!("no valid bundle in directory `{key}` yet; see errors on /status")
            });
        }
    });
    snap
}

fn record_ack(state: &State, node: &str, version: &str) {
    Counters::inc(&state.counters.acks);
    state.node(node, |n| {
        n.acks += 1;
        n.acked_version = Some(version.to_string());
    });
}

fn record_nack(state: &State, node: &str, version: &str, message: &str) {
    Counters::inc(&state.counters.nacks);
    tracing::warn!(
        node,
        version,
        message,
        "NACK: the node rejected a bundle version"
    );
    state.node(node, |n| {
        n.nacks += 1;
        n.nacked.insert(version.to_string());
        n.last_nack = Some(Nack {
            version: version.to_string(),
            message: message.to_string(),
            at_ms: now_ms(),
        });
    });
}

fn record_sent(state: &State, node: &str, version: &str) {
    Counters::inc(&state.counters.responses);
    state.node(node, |n| {
        n.responses += 1;
        n.sent_version = Some(version.to_string());
    });
}

fn node_nacked(state: &State, node: &str, version: &str) -> bool {
    state
        .node(node, |n| n.nacked.contains(version))
        .unwrap_or(false)
}

/// Whether a resource-name list asks for `name` (empty: everything).
fn wants(names: &[String], name: &str) -> bool {
    names.is_empty() || names.iter().any(|n| n == name || n == "*")
}

/// A state-of-the-world stream.
#[derive(Default)]
struct SotwStream {
    node: Option<NodeKey>,
    /// Resource names of the latest request; `None` until the client asked
    /// for our type.
    names: Option<Vec<String>>,
    nonce: u64,
    last_nonce: Option<String>,
    sent_version: Option<String>,
    /// The client reported running some version (reconnect, or an ACK).
    client_has_version: bool,
    /// The first request of the stream forces one response.
    force: bool,
}

impl Protocol for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn on_request(
        &mut self,
        state: &Arc<State>,
        req: DiscoveryRequest,
        api: &str,
        guard: &mut Option<StreamGuard>,
    ) -> Result<(), Status> {
        let node = stream_node(state, &mut self.node, req.node.as_ref(), api, guard)?;
        if req.type_url != TYPED_EXTENSION_CONFIG {
            // ADS here serves ECDS only; other types get no response, as
            // for a resource that does not exist.
            tracing::debug!(type_url = req.type_url, "ignoring an unserved type");
            return Ok(());
        }
        if !req.response_nonce.is_empty() {
            if Some(&req.response_nonce) != self.last_nonce.as_ref() {
                // xds_protocol.rst: stale nonce, ignore.
                Counters::inc(&state.counters.stale);
                return Ok(());
            }
            let sent = self.sent_version.clone().unwrap_or_default();
            match &req.error_detail {
                Some(err) => record_nack(state, &node.id, &sent, &err.message),
                None if req.version_info == sent => {
                    self.client_has_version = true;
                    record_ack(state, &node.id, &sent);
                }
                None => {}
            }
        } else {
            // A first request (new stream or new subscription).
            if !req.version_info.is_empty() {
                self.client_has_version = true;
                state.node(&node.id, |n| {
                    n.acked_version = Some(req.version_info.clone())
                });
            }
            self.force = true;
        }
        self.names = Some(req.resource_names);
        Ok(())
    }

    fn next_response(&mut self, state: &State) -> Option<DiscoveryResponse> {
        let node = self.node.clone()?;
        let names = self.names.as_ref()?;
        if !wants(names, &state.filter_name) {
            return None;
        }
        let snap = target(state, &node)?;
        let force = std::mem::take(&mut self.force);
        if self.sent_version.as_ref() == Some(&snap.version) && !force {
            return None;
        }
        // A version this node NACKed is not offered again while it runs
        // one of its own; it waits for a newer version.
        if self.client_has_version && node_nacked(state, &node.id, &snap.version) {
            return None;
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        self.last_nonce = Some(nonce.clone());
        self.sent_version = Some(snap.version.clone());
        record_sent(state, &node.id, &snap.version);
        Some(DiscoveryResponse {
            version_info: snap.version.clone(),
            resources: vec![snap.resource.clone()],
            type_url: TYPED_EXTENSION_CONFIG.to_string(),
            nonce,
            ..DiscoveryResponse::default()
        })
    }
}

/// A delta (incremental) stream.
#[derive(Default)]
struct DeltaStream {
    node: Option<NodeKey>,
    started: bool,
    wildcard: bool,
    subscribed: BTreeSet<String>,
    /// What the client has, by resource name.
    client_versions: HashMap<String, String>,
    nonce: u64,
    last_nonce: Option<String>,
    sent_version: Option<String>,
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn on_request(
        &mut self,
        state: &Arc<State>,
        req: DeltaDiscoveryRequest,
        api: &str,
        guard: &mut Option<StreamGuard>,
    ) -> Result<(), Status> {
        let node = stream_node(state, &mut self.node, req.node.as_ref(), api, guard)?;
        if req.type_url != TYPED_EXTENSION_CONFIG {
            tracing::debug!(type_url = req.type_url, "ignoring an unserved type");
            return Ok(());
        }
        if !self.started {
            self.started = true;
            // xds_protocol.rst: an empty first subscribe list is a legacy
            // wildcard request; "*" is an explicit one.
            self.wildcard = req.resource_names_subscribe.is_empty();
            if let Some(v) = req.initial_resource_versions.get(&state.filter_name) {
                state.node(&node.id, |n| n.acked_version = Some(v.clone()));
            }
            self.client_versions = req.initial_resource_versions.clone();
        }
        for name in &req.resource_names_subscribe {
            if name == "*" {
                self.wildcard = true;
            } else {
                self.subscribed.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                self.wildcard = false;
            } else {
                self.subscribed.remove(name);
                self.client_versions.remove(name);
            }
        }
        if !req.response_nonce.is_empty() {
            if Some(&req.response_nonce) != self.last_nonce.as_ref() {
                Counters::inc(&state.counters.stale);
                return Ok(());
            }
            let sent = self.sent_version.clone().unwrap_or_default();
            match &req.error_detail {
                Some(err) => record_nack(state, &node.id, &sent, &err.message),
                None => {
                    self.client_versions
                        .insert(state.filter_name.clone(), sent.clone());
                    record_ack(state, &node.id, &sent);
                }
            }
        }
        Ok(())
    }

    fn next_response(&mut self, state: &State) -> Option<DeltaDiscoveryResponse> {
        let node = self.node.clone()?;
        let name = &state.filter_name;
        if !self.started || !(self.wildcard || self.subscribed.contains(name)) {
            return None;
        }
        let snap = target(state, &node)?;
        let client = self.client_versions.get(name);
        if client == Some(&snap.version) || self.sent_version.as_ref() == Some(&snap.version) {
            return None;
        }
        if client.is_some() && node_nacked(state, &node.id, &snap.version) {
            return None;
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        self.last_nonce = Some(nonce.clone());
        self.sent_version = Some(snap.version.clone());
        record_sent(state, &node.id, &snap.version);
        Some(DeltaDiscoveryResponse {
            system_version_info: snap.version.clone(),
            resources: vec![Resource {
                name: name.clone(),
                version: snap.version.clone(),
                resource: Some(snap.resource.clone()),
                ..Resource::default()
            }],
            type_url: TYPED_EXTENSION_CONFIG.to_string(),
            nonce,
            ..DeltaDiscoveryResponse::default()
        })
    }
}

type SotwOut = ReceiverStream<Result<DiscoveryResponse, Status>>;
type DeltaOut = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

/// The stream's node: registered from its first request, which must name
/// it; later requests may omit it (xds_protocol.rst).
fn stream_node(
    state: &Arc<State>,
    slot: &mut Option<NodeKey>,
    node: Option<&Node>,
    api: &str,
    guard: &mut Option<StreamGuard>,
) -> Result<NodeKey, Status> {
    if let Some(key) = slot {
        return Ok(key.clone());
    }
    let Some(node) = node else {
        return Err(Status::invalid_argument(
            "the first request of a stream must carry `node` (id and metadata.environment)",
        ));
    };
    let (key, g) = register(state, node, api);
    *slot = Some(key.clone());
    *guard = Some(g);
    Ok(key)
}

/// One xDS stream's protocol state: state-of-the-world or delta. The loop
/// that drives a stream ([`serve_stream`]) is the same for both.
trait Protocol: Default + Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
    fn on_request(
        &mut self,
        state: &Arc<State>,
        req: Self::Request,
        api: &str,
        guard: &mut Option<StreamGuard>,
    ) -> Result<(), Status>;
    fn next_response(&mut self, state: &State) -> Option<Self::Response>;
}

/// Reads requests and answers each change of the published snapshots,
/// until the client goes, the protocol is violated or the server stops.
fn serve_stream<P: Protocol>(
    state: Arc<State>,
    mut inbound: Streaming<P::Request>,
    api: &'static str,
) -> ReceiverStream<Result<P::Response, Status>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut changes = state.subscribe();
        let mut shutdown = state.shutdown_signal();
        let mut guard = None;
        let mut s = P::default();
        loop {
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => {
                        if let Err(status) = s.on_request(&state, req, api, &mut guard) {
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    }
                    _ => break,
                },
                r = changes.changed() => if r.is_err() { break },
                _ = shutdown.changed() => break,
                _ = tx.closed() => break,
            }
            if let Some(resp) = s.next_response(&state)
                && tx.send(Ok(resp)).await.is_err()
            {
                break;
            }
        }
        drop(guard);
    });
    ReceiverStream::new(rx)
}

fn sotw(state: Arc<State>, inbound: Streaming<DiscoveryRequest>, api: &'static str) -> SotwOut {
    serve_stream::<SotwStream>(state, inbound, api)
}

fn delta(
    state: Arc<State>,
    inbound: Streaming<DeltaDiscoveryRequest>,
    api: &'static str,
) -> DeltaOut {
    serve_stream::<DeltaStream>(state, inbound, api)
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Xds {
    type StreamAggregatedResourcesStream = SotwOut;
    type DeltaAggregatedResourcesStream = DeltaOut;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwOut>, Status> {
        Ok(Response::new(sotw(
            self.state.clone(),
            request.into_inner(),
            "ads-sotw",
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaOut>, Status> {
        Ok(Response::new(delta(
            self.state.clone(),
            request.into_inner(),
            "ads-delta",
        )))
    }
}

#[tonic::async_trait]
impl ExtensionConfigDiscoveryService for Xds {
    type StreamExtensionConfigsStream = SotwOut;
    type DeltaExtensionConfigsStream = DeltaOut;

    async fn stream_extension_configs(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwOut>, Status> {
        Ok(Response::new(sotw(
            self.state.clone(),
            request.into_inner(),
            "ecds-sotw",
        )))
    }

    async fn delta_extension_configs(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaOut>, Status> {
        Ok(Response::new(delta(
            self.state.clone(),
            request.into_inner(),
            "ecds-delta",
        )))
    }

    /// The REST-style fetch: the current version, no tracking.
    async fn fetch_extension_configs(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let req = request.into_inner();
        let node = req
            .node
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("the request must carry `node`"))?;
        let env = metadata_string(node, "environment")
            .ok_or_else(|| Status::invalid_argument("node metadata has no `environment`"))?;
        let key = self
            .state
            .target(&env, metadata_string(node, "tenant").as_deref());
        let snap = self
            .state
            .snapshot(&key)
            .ok_or_else(|| Status::unavailable(format!("no valid bundle in `{key}` yet")))?;
        Ok(Response::new(DiscoveryResponse {
            version_info: snap.version.clone(),
            resources: vec![snap.resource.clone()],
            type_url: TYPED_EXTENSION_CONFIG.to_string(),
            ..DiscoveryResponse::default()
        }))
    }
}

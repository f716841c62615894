//! An ECDS client (delta xDS) for proxies that are not Envoy: `portcullis
//! serve --xds URL` uses it to receive each bundle version, apply it, and
//! ACK it (or NACK it with the reason when the filter refuses it).
//!
//! It reconnects with backoff and resumes with `initial_resource_versions`
//! set to the version it runs, so a control plane restart does not resend
//! what it already has (xds_protocol.rst, incremental xDS "resume").

use crate::resource::{TYPED_EXTENSION_CONFIG, plugin_configuration};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_client::ExtensionConfigDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// The largest xDS response the client accepts (a bundle and its envelope).
pub const MAX_BUNDLE_MESSAGE: usize = 64 * 1024 * 1024;

/// Who the client is and what it subscribes to.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` of the control plane's xDS listener.
    pub url: String,
    pub node_id: String,
    pub cluster: String,
    pub environment: String,
    pub tenant: Option<String>,
    pub filter_name: String,
}

/// Applies `(version, plugin configuration)`; `Err` is sent as a NACK.
pub type Apply = Arc<dyn Fn(&str, &str) -> Result<(), String> + Send + Sync>;

/// A node with `environment` (and `tenant`) metadata.
pub fn node(id: &str, cluster: &str, environment: &str, tenant: Option<&str>) -> Node {
    let mut fields = std::collections::HashMap::new();
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    fields.insert("environment".to_string(), s(environment));
    if let Some(t) = tenant {
        fields.insert("tenant".to_string(), s(t));
    }
    Node {
        id: id.to_string(),
        cluster: cluster.to_string(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}

/// Runs until `shutdown` turns true, reconnecting as needed.
pub async fn run_ecds(cfg: ClientConfig, apply: Apply, mut shutdown: watch::Receiver<bool>) {
    let mut current: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let session = session(&cfg, &apply, &mut current);
        tokio::select! {
            r = session => match r {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::warn!(url = cfg.url, "xDS stream ended: {e}; reconnecting"),
            },
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn session(
    cfg: &ClientConfig,
    apply: &Apply,
    current: &mut Option<String>,
) -> Result<(), String> {
    // tonic refuses messages over 4 MiB by default; a bundle of a thousand
    // servers is larger than that, and Envoy's own gRPC client has no such
    // limit, so allow what a bundle can reasonably be.
    let mut client = ExtensionConfigDiscoveryServiceClient::connect(cfg.url.clone())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", cfg.url))?
        .max_decoding_message_size(MAX_BUNDLE_MESSAGE);
    let (tx, rx) = mpsc::channel(4);
    let mut initial = DeltaDiscoveryRequest {
        node: Some(node(
            &cfg.node_id,
            &cfg.cluster,
            &cfg.environment,
            cfg.tenant.as_deref(),
        )),
        type_url: TYPED_EXTENSION_CONFIG.to_string(),
        resource_names_subscribe: vec![cfg.filter_name.clone()],
        ..DeltaDiscoveryRequest::default()
    };
    if let Some(v) = current.as_ref() {
        initial
            .initial_resource_versions
            .insert(cfg.filter_name.clone(), v.clone());
    }
    tx.send(initial).await.map_err(|e| e.to_string())?;
    let mut responses = client
        .delta_extension_configs(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("the control plane refused the stream: {e}"))?
        .into_inner();
    while let Some(resp) = responses.message().await.map_err(|e| e.to_string())? {
        let mut error = None;
        for r in &resp.resources {
            if r.name != cfg.filter_name {
                continue;
            }
            let Some(any) = &r.resource else { continue };
            let outcome = match plugin_configuration(any) {
                Ok((_, json)) => {
                    let apply = apply.clone();
                    let version = r.version.clone();
                    tokio::task::spawn_blocking(move || apply(&version, &json))
                        .await
                        .unwrap_or_else(|e| Err(format!("applying the bundle failed: {e}")))
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => *current = Some(r.version.clone()),
                Err(e) => error = Some(e),
            }
        }
        let ack = DeltaDiscoveryRequest {
            type_url: TYPED_EXTENSION_CONFIG.to_string(),
            response_nonce: resp.nonce.clone(),
            error_detail: error.map(|message| RpcStatus {
                // google.rpc.Code INVALID_ARGUMENT
                code: 3,
                message,
                ..RpcStatus::default()
            }),
            ..DeltaDiscoveryRequest::default()
        };
        tx.send(ack).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

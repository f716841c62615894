//! Helpers for the control plane's tests: bundle directories on disk, a
//! running control plane on 127.0.0.1:0, xDS clients built from the
//! envoy-types protos (tonic), and a tiny HTTP GET.

#![allow(dead_code)]

use control_plane::resource::{ResourceConfig, plugin_configuration};
use control_plane::{Config, Running, TYPED_EXTENSION_CONFIG, WasmCode, client};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_client::ExtensionConfigDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

/// One McpServer document allowing `tools`.
pub fn server_yaml(name: &str, tools: &[&str]) -> String {
    let mut s = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n  name: {name}\nspec:\n  match: {{pathPrefix: /mcp}}\n  tools:\n"
    );
    for t in tools {
        s.push_str(&format!("    - name: {t}\n"));
    }
    s
}

/// Writes `DIR/key/server.yaml`, creating the directory.
pub fn write_bundle(root: &Path, key: &str, yaml: &str) {
    let dir = root.join(key);
    std::fs::create_dir_all(&dir).unwrap();
    // Write then rename, as editors and git do, so the watcher never reads
    // a half-written file.
    let tmp = dir.join(".server.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, dir.join("server.yaml")).unwrap();
}

/// The version `portcullis bundle build` gives the directory: computed
/// independently of the control plane.
pub fn expected_version(root: &Path, key: &str) -> String {
    portcullis_core::bundle::yaml::load_dir(&root.join(key))
        .unwrap()
        .version
}

pub async fn start(root: &Path) -> Running {
    start_with(root, |_| {}).await
}

pub async fn start_with(root: &Path, f: impl FnOnce(&mut Config)) -> Running {
    let mut cfg = Config::new(
        root.to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
        ResourceConfig {
            filter_name: "portcullis".into(),
            code: WasmCode::Local("/etc/portcullis/portcullis_filter.wasm".into()),
        },
    );
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
    cfg.poll_interval = Duration::from_millis(100);
    f(&mut cfg);
    control_plane::start(cfg).await.unwrap()
}

pub fn node(id: &str, env: &str, tenant: Option<&str>) -> Node {
    client::node(id, "test", env, tenant)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    AdsSotw,
    EcdsSotw,
    AdsDelta,
    EcdsDelta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Ack,
    Nack,
}

/// What a test client saw: one entry per response, the version it carried.
#[derive(Debug, Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<String>>>);

impl Seen {
    pub fn versions(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn last(&self) -> Option<String> {
        self.0.lock().unwrap().last().cloned()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// An xDS client (tonic, envoy-types protos) that ACKs or NACKs every
/// response and records each version. `initial` is the version it claims
/// to have (a reconnect).
pub fn spawn_client(
    addr: SocketAddr,
    api: Api,
    node: Node,
    behaviour: Behaviour,
    initial: Option<String>,
) -> (Seen, JoinHandle<()>) {
    let seen = Seen::default();
    let s = seen.clone();
    let handle = tokio::spawn(async move {
        let url = format!("http://{addr}");
        match api {
            Api::AdsSotw | Api::EcdsSotw => {
                let (tx, rx) = mpsc::channel(8);
                tx.send(DiscoveryRequest {
                    node: Some(node),
                    type_url: TYPED_EXTENSION_CONFIG.into(),
                    resource_names: vec!["portcullis".into()],
                    version_info: initial.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .unwrap();
                let mut stream = if api == Api::AdsSotw {
                    AggregatedDiscoveryServiceClient::connect(url)
                        .await
                        .unwrap()
                        .stream_aggregated_resources(ReceiverStream::new(rx))
                        .await
                        .unwrap()
                        .into_inner()
                } else {
                    ExtensionConfigDiscoveryServiceClient::connect(url)
                        .await
                        .unwrap()
                        .stream_extension_configs(ReceiverStream::new(rx))
                        .await
                        .unwrap()
                        .into_inner()
                };
                let mut acked = String::new();
                while let Ok(Some(resp)) = stream.message().await {
                    assert_eq!(resp.type_url, TYPED_EXTENSION_CONFIG);
                    assert_eq!(resp.resources.len(), 1);
                    let (name, json) = plugin_configuration(&resp.resources[0]).unwrap();
                    assert_eq!(name, "portcullis");
                    let bundle: serde_json::Value = serde_json::from_str(&json).unwrap();
                    // The version is the bundle's own content hash.
                    assert_eq!(bundle["version"], resp.version_info.as_str());
                    s.0.lock().unwrap().push(resp.version_info.clone());
                    let reply = match behaviour {
                        Behaviour::Ack => {
                            acked = resp.version_info.clone();
                            DiscoveryRequest {
                                type_url: TYPED_EXTENSION_CONFIG.into(),
                                resource_names: vec!["portcullis".into()],
                                version_info: resp.version_info.clone(),
                                response_nonce: resp.nonce.clone(),
                                ..Default::default()
                            }
                        }
                        Behaviour::Nack => DiscoveryRequest {
                            type_url: TYPED_EXTENSION_CONFIG.into(),
                            resource_names: vec!["portcullis".into()],
                            version_info: acked.clone(),
                            response_nonce: resp.nonce.clone(),
                            error_detail: Some(RpcStatus {
                                code: 3,
                                message: "test client refuses every bundle".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    };
                    if tx.send(reply).await.is_err() {
                        break;
                    }
                }
            }
            Api::AdsDelta | Api::EcdsDelta => {
                let (tx, rx) = mpsc::channel(8);
                let mut first = DeltaDiscoveryRequest {
                    node: Some(node),
                    type_url: TYPED_EXTENSION_CONFIG.into(),
                    resource_names_subscribe: vec!["portcullis".into()],
                    ..Default::default()
                };
                if let Some(v) = initial {
                    first
                        .initial_resource_versions
                        .insert("portcullis".into(), v);
                }
                tx.send(first).await.unwrap();
                let mut stream = if api == Api::AdsDelta {
                    AggregatedDiscoveryServiceClient::connect(url)
                        .await
                        .unwrap()
                        .delta_aggregated_resources(ReceiverStream::new(rx))
                        .await
                        .unwrap()
                        .into_inner()
                } else {
                    ExtensionConfigDiscoveryServiceClient::connect(url)
                        .await
                        .unwrap()
                        .delta_extension_configs(ReceiverStream::new(rx))
                        .await
                        .unwrap()
                        .into_inner()
                };
                while let Ok(Some(resp)) = stream.message().await {
                    assert_eq!(resp.type_url, TYPED_EXTENSION_CONFIG);
                    assert_eq!(resp.resources.len(), 1);
                    let r = &resp.resources[0];
                    assert_eq!(r.name, "portcullis");
                    let (_, json) = plugin_configuration(r.resource.as_ref().unwrap()).unwrap();
                    let bundle: serde_json::Value = serde_json::from_str(&json).unwrap();
                    assert_eq!(bundle["version"], r.version.as_str());
                    assert_eq!(resp.system_version_info, r.version);
                    s.0.lock().unwrap().push(r.version.clone());
                    let reply = DeltaDiscoveryRequest {
                        type_url: TYPED_EXTENSION_CONFIG.into(),
                        response_nonce: resp.nonce.clone(),
                        error_detail: (behaviour == Behaviour::Nack).then(|| RpcStatus {
                            code: 3,
                            message: "test client refuses every bundle".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    if tx.send(reply).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    (seen, handle)
}

/// Polls `f` every 50 ms until it returns true; panics with `what` after 20 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// As [`eventually`], for an async check.
pub async fn eventually_async<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A plain HTTP/1.1 GET over 127.0.0.1: (status, body).
pub async fn get(addr: SocketAddr, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
}

pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, body) = get(addr, "/status", "application/json").await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

pub async fn metrics(addr: SocketAddr) -> String {
    let (code, body) = get(addr, "/metrics", "text/plain").await;
    assert_eq!(code, 200);
    String::from_utf8(body).unwrap()
}

/// The value of one metric line (exact name with labels).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn node_status<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("node {id} not on /status: {status}"))
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_of(t: &tempfile::TempDir) -> PathBuf {
    t.path().to_path_buf()
}

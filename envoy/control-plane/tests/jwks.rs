//! JWKS by URL: the control plane fetches an IdentityProvider's `jwksUri`
//! (here from a JWKS server on 127.0.0.1), embeds the keys in the bundle,
//! follows a key rotation with a new version, and keeps the last good keys
//! when the issuer fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use control_plane::resource::plugin_configuration;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A JWKS server answering every request with the current (status, body).
async fn jwks_server(reply: Arc<Mutex<(u16, String)>>) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let (code, body) = reply.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn keys() -> (String, String) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/identity/idp-jwks.json"),
    )
    .unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rsa_only = serde_json::json!({"keys": [all["keys"][0].clone()]});
    (rsa_only.to_string(), all.to_string())
}

fn provider_yaml(url: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: IdentityProvider\nmetadata: {{name: idp}}\nspec:\n  issuer: https://idp.test.example\n  algorithms: [RS256, ES256]\n  jwksUri: \"{url}\"\n"
    )
}

fn served_json(cp: &control_plane::Running) -> String {
    let snap = cp.state.snapshot("prod").unwrap();
    plugin_configuration(&snap.resource).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_are_fetched_embedded_rotated_and_kept_on_failure() {
    let (first, rotated) = keys();
    let reply = Arc::new(Mutex::new((200u16, first.clone())));
    let idp = jwks_server(reply.clone()).await;
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    std::fs::write(
        root.join("prod/idp.yaml"),
        provider_yaml(&format!("http://{idp}/jwks.json")),
    )
    .unwrap();
    let cp = start_with(&root, |c| c.jwks_refresh = Duration::from_millis(300)).await;
    let http = cp.http_addr.unwrap();

    let json = served_json(&cp);
    assert!(
        json.contains("test-rs-1") && !json.contains("test-es-1"),
        "{json}"
    );
    assert!(!json.contains("jwksUri"));
    let v1 = cp.state.snapshot("prod").unwrap().version.clone();
    let (client, _h) = spawn_client(
        cp.xds_addr,
        Api::EcdsDelta,
        node("n", "prod", None),
        Behaviour::Ack,
        None,
    );
    eventually("the client has v1", || {
        client.last().as_deref() == Some(v1.as_str())
    })
    .await;

    // The issuer rotates: a new key is published; the proxies get it
    // without anyone editing a file.
    reply.lock().unwrap().1 = rotated;
    eventually("a new version carries the new key", || {
        served_json(&cp).contains("test-es-1")
    })
    .await;
    let v2 = cp.state.snapshot("prod").unwrap().version.clone();
    assert_ne!(v1, v2);
    eventually("the client has v2", || {
        client.last().as_deref() == Some(v2.as_str())
    })
    .await;

    // The issuer fails: the last good keys stay, and so does the version.
    reply.lock().unwrap().0 = 500;
    eventually_async("fetch errors are counted", || async {
        metric(
            &metrics(http).await,
            "portcullis_cp_jwks_fetch_errors_total",
        )
        .unwrap_or(0.0)
            >= 2.0
    })
    .await;
    assert_eq!(cp.state.snapshot("prod").unwrap().version, v2);
    assert!(served_json(&cp).contains("test-es-1"));
    assert_eq!(client.versions(), vec![v1, v2]);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_jwks_uri_without_cached_keys_is_a_bundle_error() {
    // A port nothing listens on: bind, take the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    std::fs::write(
        root.join("prod/idp.yaml"),
        provider_yaml(&format!("http://127.0.0.1:{port}/jwks.json")),
    )
    .unwrap();
    let cp = start(&root).await;
    assert!(cp.state.snapshot("prod").is_none());
    let s = status(cp.http_addr.unwrap()).await;
    let errors = s["errors"]["prod"]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("prod/idp.yaml:7: jwksUri")),
        "{errors:?}"
    );
    assert_eq!(get(cp.http_addr.unwrap(), "/readyz", "*/*").await.0, 503);
    cp.shutdown().await;
}

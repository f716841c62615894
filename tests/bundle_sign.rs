//! Signed bundles, end to end:
//!
//! * `portcullis bundle keygen` + `bundle build --sign-key` produce a
//!   signature that an independent Ed25519 implementation (Python's
//!   `cryptography`) verifies over `portcullis-bundle-v1\n` + version, and
//!   signing leaves the version alone;
//! * the real wasm filter, loaded in host-shim with `trustedBundleKeys` in
//!   its VM configuration, takes the signed bundle and refuses (with the
//!   reason logged) an unsigned one, one signed by another key, one whose
//!   signature was altered, and one whose documents were changed after
//!   signing; without trusted keys it takes the unsigned one;
//! * `portcullis serve --trusted-bundle-key` carries MCP traffic from the
//!   Python SDK with the signed bundle, and refuses to start with an
//!   unsigned one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use host_shim::{LogLevel, MemoryLogSink, Plugin, PluginConfig};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use support::*;

const WASM: &[u8] = include_bytes!(env!("PORTCULLIS_FILTER_WASM"));

fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let (code, out, err) = portcullis(&["bundle", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_owned();
    assert!(out.contains(&public), "{out}");
    (key.display().to_string(), public)
}

fn build(dir: &Path, out_name: &str, key: Option<&str>) -> Value {
    let out = dir.join(out_name);
    let bundle = root().join("examples/bundle");
    let mut args = vec![
        "bundle",
        "build",
        bundle.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    if let Some(k) = key {
        args.extend(["--sign-key", k]);
    }
    let (code, o, e) = portcullis(&args);
    assert_eq!(code, 0, "{o}{e}");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Loads the real filter with a VM configuration and a plugin
/// configuration; returns whether it accepted, and its log.
fn load(vm_config: &Value, bundle: &Value) -> (bool, Vec<String>) {
    let sink = Arc::new(MemoryLogSink::default());
    let config = PluginConfig {
        name: "portcullis".into(),
        root_id: "portcullis".into(),
        vm_id: "portcullis".into(),
        vm_config: if vm_config.is_null() {
            Vec::new()
        } else {
            vm_config.to_string().into_bytes()
        },
        configuration: bundle.to_string().into_bytes(),
        allow_on_headers_stop_iteration: true,
        log_level: LogLevel::Info,
        log_sink: Some(sink.clone()),
        ..PluginConfig::default()
    };
    let ok = Plugin::load(WASM, config).is_ok();
    (ok, sink.lines().into_iter().map(|(_, l)| l).collect())
}

#[test]
fn signature_verifies_independently_and_keeps_the_version() {
    let dir = temp_dir("bundle-sign-indep");
    let (key, public) = keygen(&dir, "bundle.key");
    let unsigned = build(&dir, "unsigned.json", None);
    let signed = build(&dir, "signed.json", Some(&key));
    assert!(unsigned.get("signature").is_none());
    assert_eq!(signed["version"], unsigned["version"]);
    let sig = &signed["signature"];
    assert_eq!(sig["alg"], "Ed25519");
    // Python's cryptography checks the signature and recomputes the key id.
    let script = r#"
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
bundle = json.load(open(sys.argv[1]))
pub = bytes.fromhex(sys.argv[2])
sig = bundle["signature"]
Ed25519PublicKey.from_public_bytes(pub).verify(
    base64.b64decode(sig["value"]),
    b"portcullis-bundle-v1\n" + bundle["version"].encode())
assert sig["keyId"] == hashlib.sha256(pub).hexdigest()[:16], sig["keyId"]
try:
    Ed25519PublicKey.from_public_bytes(pub).verify(
        base64.b64decode(sig["value"]), bundle["version"].encode())
    print("unprefixed message verified")
except Exception:
    print("OK")
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(dir.join("signed.json"))
        .arg(&public)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn the_filter_refuses_what_its_trusted_keys_did_not_sign() {
    let dir = temp_dir("bundle-sign-filter");
    let (key, public) = keygen(&dir, "a.key");
    let (other_key, _) = keygen(&dir, "b.key");
    let unsigned = build(&dir, "unsigned.json", None);
    let signed = build(&dir, "signed.json", Some(&key));
    let by_other = build(&dir, "other.json", Some(&other_key));
    let trust = json!({ "trustedBundleKeys": [public] });

    let (ok, log) = load(&trust, &signed);
    assert!(ok, "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("signature verified")),
        "{log:?}"
    );

    // No trusted key: signatures are not required.
    let (ok, log) = load(&Value::Null, &unsigned);
    assert!(ok, "{log:?}");

    let refused = |bundle: &Value, why: &str| {
        let (ok, log) = load(&trust, bundle);
        assert!(!ok, "accepted: {bundle}");
        assert!(
            log.iter()
                .any(|l| l.contains("bundle refused") && l.contains(why)),
            "expected {why:?} in {log:?}"
        );
    };
    refused(&unsigned, "unsigned");
    refused(&by_other, "does not trust");

    let mut altered = signed.clone();
    let value = altered["signature"]["value"].as_str().unwrap().to_owned();
    let flipped = if value.starts_with('A') { "B" } else { "A" };
    altered["signature"]["value"] = Value::String(format!("{flipped}{}", &value[1..]));
    refused(&altered, "does not verify");

    // A document changed after signing, with its version recomputed so the
    // content check passes: the signature no longer covers it.
    let mut edited: portcullis_core::bundle::BundleJson =
        serde_json::from_value(signed.clone()).unwrap();
    edited.documents[0].spec["tools"] = json!([{"name": "*"}]);
    edited.version = portcullis_core::bundle::content_version(&edited.documents);
    refused(&serde_json::to_value(&edited).unwrap(), "does not verify");

    // The same edit without a new version is refused by the content check.
    let mut stale = signed.clone();
    stale["documents"][0]["spec"]["tools"] = json!([{"name": "*"}]);
    let (ok, _) = load(&trust, &stale);
    assert!(!ok);

    // A VM configuration that is not what the filter reads stops the VM.
    let (ok, log) = load(&json!({"trustedBundleKey": [public]}), &signed);
    assert!(!ok);
    assert!(
        log.iter().any(|l| l.contains("VM configuration refused")),
        "{log:?}"
    );
}

#[test]
fn serve_with_a_trusted_key_carries_traffic_and_refuses_unsigned() {
    let dir = temp_dir("bundle-sign-serve");
    let (key, _) = keygen(&dir, "k");
    let _ = build(&dir, "signed.json", Some(&key));
    let pubfile = dir.join("k.pub");
    let record = dir.join("upstream.jsonl");
    let (_server, port) = mcp_server(&[], &record);
    let upstream = format!("http://127.0.0.1:{port}");

    // Unsigned (the directory, compiled unsigned): refused at start.
    let bundle_dir = root().join("examples/bundle");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bundle",
            bundle_dir.to_str().unwrap(),
            "--upstream",
            &upstream,
            "--trusted-bundle-key",
            pubfile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsigned"), "{err}");

    // Signed (the compiled file as the filter configuration): serves.
    let signed = dir.join("signed.json");
    let (_proxy, url) = portcullis_serve(&[
        "--filter-config",
        signed.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--trusted-bundle-key",
        pubfile.to_str().unwrap(),
    ]);
    let script = json!([
        {"op": "call_tool", "name": "echo", "arguments": {"text": "signed"}},
        {"op": "call_tool", "name": "delete-file", "arguments": {"path": "/x"}},
    ]);
    let out = mcp_client(&format!("{url}/mcp"), "2025-11-25", &script, &[]);
    let calls: Vec<&Value> = out.iter().filter(|l| l["op"] == "call_tool").collect();
    assert_eq!(calls.len(), 2, "{out:?}");
    assert_eq!(calls[0]["ok"], true, "{out:?}");
    assert_ne!(calls[1]["ok"], true, "{out:?}");
}

//! `portcullis package` against real parts: the image layout it writes is
//! pushed by Debian's `skopeo` into Debian's `docker-registry` (the CNCF
//! distribution registry) on loopback, then pulled back over the registry
//! API: the manifest carries the wasm media types Istio's WasmPlugin pulls,
//! and the layer is the module byte for byte, its digest the module's
//! sha256.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!("{name} is not installed: `apt-get install skopeo docker-registry` (.ci/run does)");
}

/// Starts the registry on a loopback port, storing under `dir`; returns it
/// and its address once `/v2/` answers.
fn registry(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new(tool("docker-registry"))
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let proc = Proc {
        child,
        name: "docker-registry".into(),
    };
    let base = format!("http://{addr}");
    assert!(
        eventually(|| std::net::TcpStream::connect(&addr).is_ok()
            && http(&base, "GET", "/v2/", &[], b"").status == 200),
        "the registry did not answer on {addr}"
    );
    (proc, base)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Packages `module` (or the embedded filter), pushes it with skopeo and
/// pulls it back; returns (printed module sha256, manifest, layer bytes).
fn round_trip(name: &str, filter: Option<&Path>) -> (String, Value, Vec<u8>, String) {
    let dir = temp_dir(&format!("oci-{name}"));
    let layout = dir.join("layout");
    let mut args = vec!["package", "--out", layout.to_str().unwrap(), "--tag", "v1"];
    if let Some(f) = filter {
        args.extend(["--filter", f.to_str().unwrap()]);
    }
    let (code, out, err) = portcullis(&args);
    assert_eq!(code, 0, "{out}{err}");
    let printed = out
        .lines()
        .find_map(|l| l.strip_prefix("module sha256: "))
        .unwrap()
        .to_owned();
    let manifest_digest = out
        .lines()
        .find_map(|l| l.strip_prefix("manifest digest: "))
        .unwrap()
        .to_owned();

    let (_registry, base) = registry(&dir);
    let authority = base.trim_start_matches("http://");
    let push = Command::new(tool("skopeo"))
        .args(["copy", "--dest-tls-verify=false", "--insecure-policy"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{authority}/portcullis:v1"))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&push.stderr)
    );

    let resp = http(
        &base,
        "GET",
        "/v2/portcullis/manifests/v1",
        &[("accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(manifest_digest.as_str()),
        "the registry holds the manifest package printed, unchanged"
    );
    let manifest = resp.json();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = http(
        &base,
        "GET",
        &format!("/v2/portcullis/blobs/{layer_digest}"),
        &[],
        b"",
    );
    assert_eq!(blob.status, 200);
    (printed, manifest, blob.body.clone(), layer_digest)
}

#[test]
fn the_filter_image_round_trips_through_a_registry() {
    let (printed, manifest, layer, layer_digest) = round_trip("embedded", None);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "one layer");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    assert!(
        layer.starts_with(b"\0asm"),
        "the layer is the module itself"
    );
    assert_eq!(layer_digest, format!("sha256:{}", sha256_hex(&layer)));
    assert_eq!(
        printed,
        sha256_hex(&layer),
        "printed digest = the pulled layer's"
    );
}

#[test]
fn a_given_module_is_the_layer_byte_for_byte() {
    let dir = temp_dir("oci-module");
    let module = dir.join("m.wasm");
    // The smallest valid module: magic and version.
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let (printed, _, layer, _) = round_trip("given", Some(&module));
    assert_eq!(layer, b"\0asm\x01\0\0\0");
    assert_eq!(printed, sha256_hex(b"\0asm\x01\0\0\0"));
}

#[test]
fn not_a_module_is_refused_with_a_clear_error() {
    let dir = temp_dir("oci-bad");
    let file = dir.join("not.wasm");
    std::fs::write(&file, b"hello").unwrap();
    let out = dir.join("layout");
    let (code, _, err) = portcullis(&[
        "package",
        "--out",
        out.to_str().unwrap(),
        "--filter",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not WebAssembly"), "{err}");
    assert!(!out.exists(), "nothing written");
}

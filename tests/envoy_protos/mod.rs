//! Envoy's own protobuf schema for the config tests: envoy-types' `.proto`
//! sources (the very ones its Rust types were generated from) compiled with
//! protox into one descriptor pool, and YAML turned into the JSON that
//! Envoy reads as protobuf JSON. Shared by tests/envoy_xds_config.rs and
//! tests/envoy_access_log.rs.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use prost_reflect::DescriptorPool;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use yaml_rust2::Yaml;

/// Where cargo unpacked envoy-types (its `proto/` directory), from `cargo
/// metadata`, so the tests read the very sources the Rust types came from.
fn envoy_types_protos() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types is a dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    Path::new(&manifest).parent().unwrap().join("proto")
}

/// The descriptor pool of every message the configs in `envoy/` use (and
/// everything they import), compiled once per test binary.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let proto = envoy_types_protos();
        let includes: Vec<PathBuf> = [
            "data-plane-api",
            "xds",
            "protoc-gen-validate",
            "googleapis",
            "cel-spec/proto",
            "opentelemetry-proto",
            "client_model",
        ]
        .iter()
        .map(|d| proto.join(d))
        .collect();
        let files = [
            "envoy/config/bootstrap/v3/bootstrap.proto",
            "envoy/config/core/v3/extension.proto",
            "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
            "envoy/extensions/filters/http/router/v3/router.proto",
            "envoy/extensions/filters/http/wasm/v3/wasm.proto",
            "envoy/extensions/access_loggers/file/v3/file.proto",
            "envoy/extensions/access_loggers/grpc/v3/als.proto",
            "envoy/extensions/access_loggers/open_telemetry/v3/logs_service.proto",
            "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
            "envoy/config/cluster/v3/cluster.proto",
        ];
        let fds = protox::compile(files, includes).expect("envoy-types' protos compile");
        DescriptorPool::from_file_descriptor_set(fds).unwrap()
    })
}

/// A YAML node as JSON (what Envoy does with YAML before reading it as
/// protobuf JSON). A duplicate key fails, as it does in Envoy.
pub fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let k = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => panic!("non-string key {other:?}"),
                };
                assert!(
                    m.insert(k.clone(), to_json(v)).is_none(),
                    "duplicate key {k}"
                );
            }
            Value::Object(m)
        }
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => Value::from(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        other => panic!("unsupported YAML node {other:?}"),
    }
}

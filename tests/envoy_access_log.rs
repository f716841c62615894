//! `envoy/access-log.yaml` must be a bootstrap Envoy accepts, and its
//! access loggers must read the filter's audit records the way Envoy
//! stores them: filter state key `wasm.` + the filter's property name,
//! serialised `PLAIN` (the raw bytes) for the file and OpenTelemetry
//! loggers, and listed in `filter_state_objects_to_log` for the gRPC ALS.
//!
//! Read strictly, as tests/envoy_xds_config.rs does: envoy-types' own
//! `.proto` sources compiled with protox into a descriptor pool, the YAML
//! read through prost-reflect's protobuf-JSON mapping (unknown fields,
//! wrong enum values and unknown `@type`s fail), then decoded into
//! envoy-types' `Bootstrap`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use envoy_protos::{pool, to_json};
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::Message;
use prost_reflect::DynamicMessage;
use std::path::Path;
use yaml_rust2::YamlLoader;

mod envoy_protos;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn access_log_bootstrap_is_strict_envoy_and_reads_the_audit_filter_state() {
    let text = std::fs::read_to_string(root().join("envoy/access-log.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1);
    let json = to_json(&docs[0]);
    let pool = pool();
    let desc = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .unwrap();
    let msg = DynamicMessage::deserialize(desc, json.clone())
        .unwrap_or_else(|e| panic!("envoy/access-log.yaml is not a valid Bootstrap: {e}"));
    let bootstrap = Bootstrap::decode(msg.encode_to_vec().as_slice()).unwrap();
    let statics = bootstrap.static_resources.unwrap();
    let clusters: Vec<&str> = statics.clusters.iter().map(|c| c.name.as_str()).collect();

    // The key is "wasm." + the property the filter writes.
    let filter_src =
        std::fs::read_to_string(root().join("filters/proxy-wasm/src/filter.rs")).unwrap();
    assert!(
        filter_src.contains("pub const AUDIT_PROPERTY: &str = \"portcullis.audit\";"),
        "the filter's audit property changed; update envoy/access-log.yaml"
    );
    let key = "wasm.portcullis.audit";
    let plain = format!("%FILTER_STATE({key}:PLAIN)%");

    let hcm =
        &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let logs = hcm["access_log"].as_array().unwrap();
    let kinds: Vec<&str> = logs
        .iter()
        .map(|l| l["typed_config"]["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
        ]
    );
    // 1: JSONL, the operator alone, nothing for an empty stream.
    let f = &logs[0]["typed_config"]["log_format"];
    assert_eq!(f["text_format_source"]["inline_string"], plain.as_str());
    assert_eq!(f["omit_empty_values"], true);
    // 1b: JSON with the records under portcullis.audit.
    let j = &logs[1]["typed_config"]["log_format"]["json_format"];
    assert_eq!(j["portcullis.audit"], plain.as_str());
    // 2: ALS to the control plane, with the filter state object.
    let c = &logs[2]["typed_config"]["common_config"];
    assert_eq!(c["filter_state_objects_to_log"], serde_json::json!([key]));
    let als_cluster = c["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .unwrap();
    assert!(
        clusters.contains(&als_cluster),
        "{als_cluster} is not a cluster"
    );
    // 3: OpenTelemetry, body = the records.
    let o = &logs[3]["typed_config"];
    assert_eq!(o["body"]["string_value"], plain.as_str());
    let otel_cluster = o["common_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .unwrap();
    assert!(
        clusters.contains(&otel_cluster),
        "{otel_cluster} is not a cluster"
    );
    // No periodic flush: each record is logged once, at stream end.
    assert!(hcm.get("access_log_options").is_none());
}

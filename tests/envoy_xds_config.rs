//! The xDS Envoy configs in `envoy/` (ADS and ECDS bootstraps) and the Istio
//! resources in `envoy/istio/` must be what Envoy and Istio accept, so a
//! typo in a field or a type URL fails here, not in a cluster.
//!
//! prost types do not deserialize from YAML or JSON, and `envoy-types` has
//! no serde support; but it ships the `.proto` sources it was generated
//! from. So the test compiles those with `protox` (a Rust protobuf
//! compiler) into a descriptor pool and reads each file through
//! `prost-reflect`'s protobuf-JSON mapping, which is Envoy's own YAML
//! semantics: unknown fields are refused, enums must name a value, and an
//! `Any`'s `@type` must name a message in the pool (its body is then checked
//! the same way). The message is then decoded into `envoy-types`' own
//! `Bootstrap`, and the pieces Portcullis relies on are read from the typed
//! protos: the filter's ECDS name, its accepted type URL, its default config
//! (a Wasm filter whose bundle the real filter engine accepts).
//!
//! The `WasmPlugin` is a CRD, not an Envoy proto: its field names and enum
//! values are checked against the `extensions.istio.io/v1alpha1` schema,
//! and its `pluginConfig` against the compiled `examples/bundle`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use envoy_protos::{pool, to_json};
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_filter,
};
use envoy_types::pb::google::protobuf::StringValue;
use portcullis_core::Engine;
use portcullis_core::bundle::UnmatchedRoutes;
use prost::Message;
use prost_reflect::DynamicMessage;
use serde_json::Value;
use std::path::Path;
use yaml_rust2::YamlLoader;

mod envoy_protos;

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load_yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{path}: one document");
    to_json(&docs[0])
}

/// Reads JSON as the protobuf message `full_name`, strictly.
fn parse_as(full_name: &str, json: &Value) -> Result<DynamicMessage, String> {
    let desc = pool()
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is in the pool"));
    DynamicMessage::deserialize(desc, json.clone()).map_err(|e| e.to_string())
}

fn bootstrap(json: &Value) -> Result<Bootstrap, String> {
    let msg = parse_as("envoy.config.bootstrap.v3.Bootstrap", json)?;
    Bootstrap::decode(msg.encode_to_vec().as_slice()).map_err(|e| e.to_string())
}

/// What a bootstrap must hold for Portcullis: returns the filter's config
/// source for the caller's own check.
fn check_bootstrap(path: &str) -> ConfigSourceSpecifier {
    let b = bootstrap(&load_yaml(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let statics = b.static_resources.as_ref().unwrap();
    let clusters: Vec<&str> = statics.clusters.iter().map(|c| c.name.as_str()).collect();
    let listener = &statics.listeners[0];
    let hcm_any = listener.filter_chains[0].filters[0]
        .config_type
        .as_ref()
        .map(|c| match c {
            envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a) => {
                a.clone()
            }
            other => panic!("{path}: HCM config is {other:?}"),
        })
        .unwrap();
    let hcm = HttpConnectionManager::decode(hcm_any.value.as_slice()).unwrap();
    let filter = &hcm.http_filters[0];
    assert_eq!(
        filter.name, "portcullis",
        "{path}: the ECDS resource name is the filter's"
    );
    let Some(http_filter::ConfigType::ConfigDiscovery(discovery)) = &filter.config_type else {
        panic!("{path}: the portcullis filter must use config_discovery");
    };
    assert_eq!(discovery.type_urls, vec![WASM_TYPE.to_owned()]);
    for url in &discovery.type_urls {
        let name = url.strip_prefix("type.googleapis.com/").unwrap();
        assert!(
            pool().get_message_by_name(name).is_some(),
            "{path}: type_urls names no message: {url}"
        );
    }
    assert!(
        !discovery.apply_default_config_without_warming,
        "{path}: warm on the control plane, not the default"
    );
    // The default config is a Wasm filter whose bundle refuses everything.
    let default = discovery.default_config.as_ref().expect("a default config");
    assert_eq!(default.type_url, WASM_TYPE);
    let wasm = Wasm::decode(default.value.as_slice()).unwrap();
    let plugin = wasm.config.unwrap();
    assert_eq!(
        plugin.allow_on_headers_stop_iteration.map(|b| b.value),
        Some(true)
    );
    let configuration = plugin.configuration.unwrap();
    assert_eq!(
        configuration.type_url,
        "type.googleapis.com/google.protobuf.StringValue"
    );
    let bundle = StringValue::decode(configuration.value.as_slice())
        .unwrap()
        .value;
    let engine = Engine::from_config(bundle.as_bytes())
        .unwrap_or_else(|e| panic!("{path}: the default bundle is refused: {e:?}"));
    assert!(engine.bundle().servers.is_empty());
    assert_eq!(
        engine.bundle().settings.unmatched_routes,
        UnmatchedRoutes::Deny,
        "{path}: the default bundle must fail closed"
    );
    let source = discovery.config_source.as_ref().unwrap();
    let specifier = source.config_source_specifier.clone().unwrap();
    if let ConfigSourceSpecifier::ApiConfigSource(api) = &specifier {
        for g in &api.grpc_services {
            if let Some(
                envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier::EnvoyGrpc(
                    e,
                ),
            ) = &g.target_specifier
            {
                assert!(
                    clusters.contains(&e.cluster_name.as_str()),
                    "{path}: cluster {} is not defined",
                    e.cluster_name
                );
            }
        }
    }
    let node = b.node.unwrap();
    let meta = node.metadata.unwrap();
    assert!(
        meta.fields.contains_key("environment"),
        "{path}: the control plane picks the bundle by node metadata environment"
    );
    specifier
}

#[test]
fn ecds_bootstrap_parses_strictly() {
    let specifier = check_bootstrap("envoy/ecds.yaml");
    assert!(matches!(
        specifier,
        ConfigSourceSpecifier::ApiConfigSource(_)
    ));
}

#[test]
fn ads_bootstrap_parses_strictly() {
    let specifier = check_bootstrap("envoy/ads.yaml");
    assert!(matches!(specifier, ConfigSourceSpecifier::Ads(_)));
    let b = bootstrap(&load_yaml("envoy/ads.yaml")).unwrap();
    let ads = b.dynamic_resources.unwrap().ads_config.unwrap();
    let clusters: Vec<String> = b
        .static_resources
        .unwrap()
        .clusters
        .into_iter()
        .map(|c| c.name)
        .collect();
    for g in ads.grpc_services {
        if let Some(
            envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier::EnvoyGrpc(e),
        ) = g.target_specifier
        {
            assert!(clusters.contains(&e.cluster_name), "{}", e.cluster_name);
        }
    }
}

/// The strictness itself: a misspelt field, a wrong enum value and a wrong
/// type URL in the real file are each refused.
#[test]
fn typos_fail() {
    let text = std::fs::read_to_string(root().join("envoy/ecds.yaml")).unwrap();
    for (from, to) in [
        (
            "apply_default_config_without_warming",
            "apply_default_config_without_warmin",
        ),
        ("api_type: GRPC", "api_type: GRCP"),
        (
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasmm",
        ),
        ("failure_policy: FAIL_CLOSED", "failure_policy: FAIL_CLOSE"),
        ("initial_fetch_timeout: 15s", "initial_fetch_timeout: soon"),
    ] {
        assert!(text.contains(from), "the file has {from}");
        let bad = text.replacen(from, to, 1);
        let json = to_json(&YamlLoader::load_from_str(&bad).unwrap()[0]);
        assert!(bootstrap(&json).is_err(), "{from} → {to} was accepted");
    }
}

#[test]
fn istio_envoyfilter_patches_parse_strictly() {
    let ef = load_yaml("envoy/istio/envoyfilter-ecds.yaml");
    assert_eq!(ef["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(ef["kind"], "EnvoyFilter");
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    let mut seen = Vec::new();
    for p in patches {
        let apply = p["applyTo"].as_str().unwrap();
        let value = &p["patch"]["value"];
        let message = match apply {
            "HTTP_FILTER" => {
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter"
            }
            "CLUSTER" => "envoy.config.cluster.v3.Cluster",
            other => panic!("unexpected patch {other}"),
        };
        let msg = parse_as(message, value).unwrap_or_else(|e| panic!("{apply}: {e}"));
        if apply == "HTTP_FILTER" {
            let f = envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter::decode(
                msg.encode_to_vec().as_slice(),
            )
            .unwrap();
            assert_eq!(f.name, "portcullis");
            let Some(http_filter::ConfigType::ConfigDiscovery(d)) = f.config_type else {
                panic!("the patch must use config_discovery");
            };
            assert_eq!(d.type_urls, vec![WASM_TYPE.to_owned()]);
        }
        seen.push(apply);
    }
    seen.sort();
    assert_eq!(seen, ["CLUSTER", "HTTP_FILTER"]);
    // The filter's cluster is the one the other patch adds.
    assert_eq!(
        patches.iter().find(|p| p["applyTo"] == "CLUSTER").unwrap()["patch"]["value"]["name"],
        patches
            .iter()
            .find(|p| p["applyTo"] == "HTTP_FILTER")
            .unwrap()["patch"]["value"]["config_discovery"]["config_source"]["api_config_source"]["grpc_services"]
            [0]["envoy_grpc"]["cluster_name"]
    );
}

/// Field names of `extensions.istio.io/v1alpha1` WasmPlugin `spec`, and the
/// values of its enums (Istio's CRD schema).
const WASMPLUGIN_SPEC: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "pluginConfig",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "match",
    "type",
    "verificationKey",
];

fn check_keys(what: &str, v: &Value, allowed: &[&str]) {
    for k in v.as_object().unwrap().keys() {
        assert!(allowed.contains(&k.as_str()), "{what}: unknown field {k}");
    }
}

fn check_enum(what: &str, v: &Value, allowed: &[&str]) {
    if !v.is_null() {
        assert!(
            allowed.contains(&v.as_str().unwrap()),
            "{what}: {v} is not one of {allowed:?}"
        );
    }
}

#[test]
fn istio_wasmplugin_matches_the_crd_schema_and_the_bundle() {
    let wp = load_yaml("envoy/istio/wasmplugin.yaml");
    assert_eq!(wp["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(wp["kind"], "WasmPlugin");
    check_keys(
        "metadata",
        &wp["metadata"],
        &["name", "namespace", "labels", "annotations"],
    );
    let spec = &wp["spec"];
    check_keys("spec", spec, WASMPLUGIN_SPEC);
    check_keys("spec.selector", &spec["selector"], &["matchLabels"]);
    check_enum(
        "spec.imagePullPolicy",
        &spec["imagePullPolicy"],
        &["UNSPECIFIED_POLICY", "IfNotPresent", "Always"],
    );
    check_enum(
        "spec.phase",
        &spec["phase"],
        &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"],
    );
    check_enum(
        "spec.failStrategy",
        &spec["failStrategy"],
        &["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"],
    );
    check_enum(
        "spec.type",
        &spec["type"],
        &["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"],
    );
    for m in spec["match"].as_array().unwrap() {
        check_keys("spec.match[]", m, &["mode", "ports"]);
        check_enum(
            "spec.match[].mode",
            &m["mode"],
            &["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"],
        );
        for p in m["ports"].as_array().unwrap() {
            check_keys("spec.match[].ports[]", p, &["number"]);
            assert!(p["number"].as_u64().is_some());
        }
    }
    assert!(spec["priority"].is_i64());
    let sha = spec["sha256"].as_str().unwrap();
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
    let url = spec["url"].as_str().unwrap();
    assert!(
        ["oci://", "https://", "http://", "file://"]
            .iter()
            .any(|s| url.starts_with(s)),
        "{url}"
    );
    // pluginConfig is the compiled example bundle, which the filter accepts.
    let built = serde_json::to_value(
        portcullis_core::bundle::yaml::load_dir(&root().join("examples/bundle")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        spec["pluginConfig"], built,
        "envoy/istio/wasmplugin.yaml's pluginConfig is stale: paste `portcullis bundle build examples/bundle` into it"
    );
    Engine::from_config(spec["pluginConfig"].to_string().as_bytes()).unwrap();
}

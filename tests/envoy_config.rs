//! The Envoy bootstrap in `envoy/` must carry the bundle it documents: its
//! inline plugin configuration is the compiled `examples/bundle`, and the
//! filter accepts it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_core::Engine;
use portcullis_core::bundle::yaml::load_dir;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn get<'a>(y: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(y, |y, k| match k.parse::<usize>() {
        Ok(i) => &y[i],
        Err(_) => &y[*k],
    })
}

#[test]
fn envoy_bootstrap_inlines_the_example_bundle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("envoy/envoy.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let hcm = get(
        &docs[0],
        &[
            "static_resources",
            "listeners",
            "0",
            "filter_chains",
            "0",
            "filters",
            "0",
            "typed_config",
        ],
    );
    let wasm = get(hcm, &["http_filters", "0", "typed_config"]);
    assert_eq!(
        wasm["@type"].as_str(),
        Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")
    );
    let config = get(wasm, &["config", "configuration"]);
    assert_eq!(
        config["@type"].as_str(),
        Some("type.googleapis.com/google.protobuf.StringValue")
    );
    let inline = config["value"].as_str().unwrap();
    let inline: serde_json::Value = serde_json::from_str(inline).unwrap();
    let built = serde_json::to_value(load_dir(&root.join("examples/bundle")).unwrap()).unwrap();
    assert_eq!(
        inline, built,
        "envoy/envoy.yaml's bundle is stale: paste `portcullis bundle build examples/bundle` into it"
    );
    Engine::from_config(inline.to_string().as_bytes())
        .expect("the filter accepts the inline bundle");
    assert_eq!(
        get(wasm, &["config", "failure_policy"]).as_str(),
        Some("FAIL_CLOSED")
    );
    assert_eq!(
        get(wasm, &["config", "allow_on_headers_stop_iteration"]).as_bool(),
        Some(true)
    );
    let log = get(
        hcm,
        &[
            "access_log",
            "0",
            "typed_config",
            "log_format",
            "text_format_source",
            "inline_string",
        ],
    );
    assert_eq!(
        log.as_str(),
        Some("%FILTER_STATE(wasm.portcullis.audit:PLAIN)%")
    );
}

//! The one xDS resource: an `envoy.config.core.v3.TypedExtensionConfig`
//! named after the filter, holding `envoy.extensions.filters.http.wasm.v3.Wasm`
//! with the bundle JSON as the plugin configuration.
//!
//! The plugin fields match `envoy/envoy.yaml` (vm_id, root_id, FAIL_CLOSED,
//! `allow_on_headers_stop_iteration`) so that ECDS delivers exactly what a
//! static bootstrap would. The code is a local file or a remote `http_uri`
//! with its sha256 (Envoy refuses remote code without one); the remote
//! form lets Envoy fetch the filter from the control plane's own
//! `/wasm/portcullis_filter.wasm`.

use envoy_types::pb::envoy::config::core::v3::{
    AsyncDataSource, DataSource, HttpUri, RemoteDataSource, TypedExtensionConfig,
    async_data_source, data_source, http_uri,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    FailurePolicy, PluginConfig, VmConfig, plugin_config,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, StringValue};
use prost::{Message, Name};

/// The ECDS type URL (and the one resource type ADS serves here).
pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// Where Envoy gets the filter code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmCode {
    /// A path on the proxy's file system.
    Local(String),
    /// A URL Envoy fetches through `cluster`, checked against `sha256` (hex).
    Remote {
        url: String,
        sha256: String,
        cluster: String,
    },
}

/// Everything about the resource that is not the bundle.
#[derive(Debug, Clone)]
pub struct ResourceConfig {
    pub filter_name: String,
    pub code: WasmCode,
}

fn pack<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// Builds the packed `TypedExtensionConfig` for one bundle.
pub fn build(cfg: &ResourceConfig, bundle_json: &str) -> Any {
    let code = match &cfg.code {
        WasmCode::Local(path) => async_data_source::Specifier::Local(DataSource {
            specifier: Some(data_source::Specifier::Filename(path.clone())),
            ..DataSource::default()
        }),
        WasmCode::Remote {
            url,
            sha256,
            cluster,
        } => async_data_source::Specifier::Remote(RemoteDataSource {
            http_uri: Some(HttpUri {
                uri: url.clone(),
                timeout: Some(Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster.clone())),
            }),
            sha256: sha256.clone(),
            ..RemoteDataSource::default()
        }),
    };
    let wasm = Wasm {
        config: Some(PluginConfig {
            name: cfg.filter_name.clone(),
            root_id: "portcullis".into(),
            configuration: Some(pack(&StringValue {
                value: bundle_json.to_string(),
            })),
            failure_policy: FailurePolicy::FailClosed as i32,
            // The filter holds request headers until it has read the body
            // (see envoy/envoy.yaml): Envoy >= 1.35 needs this.
            allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
            vm: Some(plugin_config::Vm::VmConfig(VmConfig {
                vm_id: "portcullis".into(),
                runtime: "envoy.wasm.runtime.v8".into(),
                code: Some(AsyncDataSource {
                    specifier: Some(code),
                }),
                ..VmConfig::default()
            })),
            ..PluginConfig::default()
        }),
    };
    pack(&TypedExtensionConfig {
        name: cfg.filter_name.clone(),
        typed_config: Some(pack(&wasm)),
    })
}

/// The reverse of [`build`], for clients (`portcullis serve --xds`, tests):
/// the filter name and the plugin configuration (the bundle JSON).
pub fn plugin_configuration(resource: &Any) -> Result<(String, String), String> {
    if resource.type_url != TYPED_EXTENSION_CONFIG {
        return Err(format!(
            "expected a {TYPED_EXTENSION_CONFIG}, got {}",
            resource.type_url
        ));
    }
    let tec = TypedExtensionConfig::decode(resource.value.as_slice())
        .map_err(|e| format!("bad TypedExtensionConfig: {e}"))?;
    let typed = tec
        .typed_config
        .ok_or("the TypedExtensionConfig has no typed_config")?;
    if typed.type_url != Wasm::type_url() {
        return Err(format!(
            "expected typed_config {}, got {}",
            Wasm::type_url(),
            typed.type_url
        ));
    }
    let wasm = Wasm::decode(typed.value.as_slice()).map_err(|e| format!("bad Wasm: {e}"))?;
    let configuration = wasm
        .config
        .and_then(|c| c.configuration)
        .ok_or("the Wasm filter has no plugin configuration")?;
    if configuration.type_url != StringValue::type_url() {
        return Err(format!(
            "expected a StringValue plugin configuration, got {}",
            configuration.type_url
        ));
    }
    let s = StringValue::decode(configuration.value.as_slice())
        .map_err(|e| format!("bad StringValue: {e}"))?;
    Ok((tec.name, s.value))
}

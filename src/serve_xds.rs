//! `portcullis serve --xds URL`: host-shim as an xDS client.
//!
//! The filter's plugin configuration comes from the control plane over
//! ECDS (delta) instead of `--bundle`. Each new version is loaded as a new
//! plugin (which runs the filter's on_configure, so a bundle the filter
//! refuses is NACKed with its reason and never used) and swapped into the
//! proxy's `FilterHandle`: new requests get it, requests in flight finish
//! on the VM they started on. The client runs on its own thread and
//! runtime so loading a plugin never stalls the proxy's workers.

use crate::failure::Failure;
use clap::Args;
use control_plane::client::{self, Apply, ClientConfig};
use host_shim::{FilterHandle, Plugin, PluginConfig};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long `serve` waits for the first bundle before giving up.
const FIRST_BUNDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug, Clone)]
pub struct XdsArgs {
    /// Take the filter's bundle from a Portcullis control plane (ECDS) at
    /// this URL, e.g. http://127.0.0.1:18000, instead of --bundle.
    #[arg(long, conflicts_with_all = ["bundle", "filter_config", "component"])]
    pub xds: Option<String>,
    /// The node id the control plane tracks this proxy by.
    #[arg(long = "xds-node-id")]
    pub node_id: Option<String>,
    /// Node metadata `environment`: which bundle directory to receive.
    #[arg(long = "xds-environment", default_value = "dev")]
    pub environment: String,
    /// Node metadata `tenant`: receive ENV@TENANT when it exists.
    #[arg(long = "xds-tenant")]
    pub tenant: Option<String>,
    /// The ECDS resource (filter) name.
    #[arg(long = "xds-filter-name", default_value = "portcullis")]
    pub filter_name: String,
}

#[derive(Default)]
struct Slot {
    /// The latest plugin loaded, until the proxy is up.
    first: Option<Arc<Plugin>>,
    handle: Option<FilterHandle>,
}

/// A running subscription.
pub struct Subscription {
    slot: Arc<(Mutex<Slot>, Condvar)>,
}

/// Starts the client when `--xds` is given.
pub fn start(
    args: &XdsArgs,
    wasm: &[u8],
    template: &PluginConfig,
) -> Result<Option<Subscription>, Failure> {
    let Some(url) = args.xds.clone() else {
        return Ok(None);
    };
    if !url.starts_with("http://") {
        return Err(Failure::Usage(format!(
            "--xds {url:?} must be an http:// URL of the control plane's xDS listener"
        )));
    }
    let cfg = ClientConfig {
        url,
        node_id: args
            .node_id
            .clone()
            .unwrap_or_else(|| format!("portcullis-serve-{}", std::process::id())),
        cluster: "portcullis-serve".into(),
        environment: args.environment.clone(),
        tenant: args.tenant.clone(),
        filter_name: args.filter_name.clone(),
    };
    let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
    let s = slot.clone();
    let wasm = wasm.to_vec();
    let template = template.clone();
    let apply: Apply = Arc::new(move |version: &str, json: &str| {
        let config = PluginConfig {
            configuration: json.as_bytes().to_vec(),
            ..template.clone()
        };
        let plugin = Plugin::load(&wasm, config)
            .map_err(|e| format!("the filter refused bundle {version}: {e}"))?;
        let (lock, cv) = &*s;
        let mut slot = lock.lock().map_err(|_| "poisoned".to_string())?;
        match &slot.handle {
            Some(h) => h.set(plugin),
            None => slot.first = Some(plugin),
        }
        cv.notify_all();
        eprintln!("portcullis: applied bundle {version} from xDS");
        Ok(())
    });
    std::thread::Builder::new()
        .name("xds-client".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                eprintln!("portcullis: cannot start the xDS client runtime");
                return;
            };
            // Runs for the life of the process.
            let (_keep, never) = tokio::sync::watch::channel(false);
            rt.block_on(client::run_ecds(cfg, apply, never));
        })
        .map_err(|e| Failure::Usage(format!("cannot start the xDS client: {e}")))?;
    Ok(Some(Subscription { slot }))
}

impl Subscription {
    /// Blocks until the first bundle is loaded.
    pub fn first_plugin(&self) -> Result<Arc<Plugin>, Failure> {
        let (lock, cv) = &*self.slot;
        let guard = lock
            .lock()
            .map_err(|_| Failure::Usage("xDS client state poisoned".into()))?;
        let (mut guard, _) = cv
            .wait_timeout_while(guard, FIRST_BUNDLE_TIMEOUT, |s| s.first.is_none())
            .map_err(|_| Failure::Usage("xDS client state poisoned".into()))?;
        guard.first.take().ok_or_else(|| {
            Failure::Usage(format!(
                "no bundle from the control plane within {}s; check --xds, --xds-environment and the control plane's /status",
                FIRST_BUNDLE_TIMEOUT.as_secs()
            ))
        })
    }

    /// From now on each new bundle goes to `handle`.
    pub fn attach(&self, handle: FilterHandle) {
        let (lock, _) = &*self.slot;
        if let Ok(mut s) = lock.lock() {
            // A bundle that arrived since first_plugin() is applied now.
            if let Some(p) = s.first.take() {
                handle.set(p);
            }
            s.handle = Some(handle);
        }
    }
}

//! Plugin loading: compile once, validate with a load-time VM.
//!
//! Envoy compiles a plugin's module once and, before accepting the config,
//! starts a VM on the main thread and runs `on_vm_start` and `on_configure`;
//! `false` from either (or a trap) rejects the config. Worker VMs are then
//! created from the same compiled module. [`Plugin::load`] does the same with
//! one process-wide wasmtime `Engine`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use wasmtime::{Engine, Linker, Module};

use crate::metrics::{MetricsSnapshot, MetricsStore};
use crate::vm::{Host, WasmVm, linker};
use crate::{LoadError, PluginConfig};

/// A compiled, validated plugin. Cheap to share; each worker makes its VM.
pub struct Plugin {
    id: u64,
    module: Module,
    linker: Linker<Host>,
    config: PluginConfig,
    metrics: MetricsStore,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id)
            .field("name", &self.config.name)
            .finish()
    }
}

pub(crate) fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut cfg = wasmtime::Config::new();
        // File:line in trap backtraces costs a DWARF pass per compile; names
        // are always there. WASMTIME_BACKTRACE_DETAILS=1 turns lines on.
        cfg.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Environment);
        // HOST_SHIM_PERFMAP=1 writes /tmp/perf-<pid>.map, so `perf report`
        // names the module's functions instead of bare JIT addresses.
        if std::env::var_os("HOST_SHIM_PERFMAP").is_some() {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Compiling a debug filter with an unoptimised (dev-profile) cranelift
        // takes minutes, so compiled code is cached on disk across processes.
        if std::env::var_os("HOST_SHIM_NO_CODE_CACHE").is_none() {
            let mut cc = wasmtime::CacheConfig::new();
            cc.with_directory(std::env::temp_dir().join("host-shim-wasmtime-cache"));
            if let Ok(cache) = wasmtime::Cache::new(cc) {
                cfg.cache(Some(cache));
            }
        }
        Engine::new(&cfg).unwrap_or_else(|_| Engine::default())
    })
}

/// Compiled modules by content, so loading the same bytes twice in one
/// process (tests, hot reload of an unchanged bundle) compiles once.
fn compile(wasm: &[u8]) -> Result<Module, LoadError> {
    use std::hash::{Hash, Hasher};
    type ByHash = HashMap<u64, Vec<(Vec<u8>, Module)>>;
    static MODULES: OnceLock<std::sync::Mutex<ByHash>> = OnceLock::new();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut h);
    let key = h.finish();
    let cache = MODULES.get_or_init(Default::default);
    if let Ok(c) = cache.lock()
        && let Some((_, m)) = c.get(&key).and_then(|v| v.iter().find(|(b, _)| b == wasm))
    {
        return Ok(m.clone());
    }
    let module = Module::new(engine(), wasm).map_err(|e| LoadError::Compile(format!("{e:?}")))?;
    if let Ok(mut c) = cache.lock() {
        c.entry(key)
            .or_default()
            .push((wasm.to_vec(), module.clone()));
    }
    Ok(module)
}

/// ABI versions cpp-host accepts for the 0.2 line (`BytecodeUtil::getAbiVersion`).
const ABI_EXPORTS: [&str; 2] = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

impl Plugin {
    /// Compiles `wasm` (binary or WAT text), checks its ABI version and
    /// imports, and validates it with a load-time VM.
    pub fn load(wasm: &[u8], config: PluginConfig) -> Result<Arc<Plugin>, LoadError> {
        Self::load_with_clusters(wasm, config, HashMap::new())
    }

    /// Like [`Plugin::load`], with the clusters `http_call` may use during
    /// `on_vm_start`/`on_configure` of the load-time VM.
    pub fn load_with_clusters(
        wasm: &[u8],
        config: PluginConfig,
        clusters: HashMap<String, http::Uri>,
    ) -> Result<Arc<Plugin>, LoadError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let module = compile(wasm)?;
        if !module.exports().any(|e| ABI_EXPORTS.contains(&e.name())) {
            return Err(LoadError::AbiVersion);
        }
        let linker = linker(engine()).map_err(|e| LoadError::Instantiate(format!("{e:?}")))?;
        let plugin = Arc::new(Plugin {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            module,
            linker,
            config,
            metrics: MetricsStore::default(),
        });
        let vm = WasmVm::new(plugin.clone(), Arc::new(clusters))?;
        // Envoy keeps this base VM on the main thread for the configuration's
        // life; host-shim has no main-thread dispatcher to tick it on, so it
        // only validates, then gets its teardown as Envoy's does at the end
        // (`proxy_on_done`, `proxy_on_delete` on the root context).
        vm.shutdown();
        drop(vm);
        Ok(plugin)
    }

    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// Unique per load; a reloaded plugin gets a new id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The plugin's custom metrics (`wasmcustom.*`), shared by all its VMs.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The metrics in Prometheus text format.
    pub fn prometheus(&self) -> String {
        crate::metrics::prometheus_text(&self.metrics.snapshot())
    }

    pub(crate) fn metrics(&self) -> &MetricsStore {
        &self.metrics
    }

    pub(crate) fn engine(&self) -> &'static Engine {
        engine()
    }

    pub(crate) fn module(&self) -> &Module {
        &self.module
    }

    pub(crate) fn linker(&self) -> &Linker<Host> {
        &self.linker
    }
}

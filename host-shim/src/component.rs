//! The Portcullis engine built as a WebAssembly component
//! (`wit/portcullis.wit`, world `governance`), run with wasmtime's component
//! model as an [`HttpFilter`], in place of a proxy-wasm VM.
//!
//! The shape follows the proxy-wasm side of this crate so the two builds can
//! be compared stream for stream: a [`ComponentPlugin`] is compiled once (and
//! cached by content) and validated by a load-time instance that accepts the
//! bundle; each worker makes its own [`ComponentVm`] (one store, one
//! instance, configured with the same bundle); each stream is one
//! `exchange` resource. [`ComponentFilter`] then does on the host side what
//! `filters/proxy-wasm/src/filter.rs` does inside the proxy-wasm filter:
//! header edits, body replacement, local replies, and the audit lines in the
//! filter state `wasm.portcullis.audit`, so access logs read them alike.
//!
//! The imports are this crate's own services: the key-value store is
//! proxy-wasm's shared data (`shared.rs`, scoped by `vm_id`, with the same
//! cas), so every worker's instance sees one store; counters are the
//! plugin's metrics; properties are Envoy's attribute paths (`props.rs`).
//! A trap fails the stream closed (503, as FAIL_CLOSED does) and the worker
//! starts a fresh instance for the next stream.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use wasmtime::component::{Component, HasSelf, Linker, ResourceAny};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::headers::HeaderMap;
use crate::metrics::{MetricKind, MetricValue, MetricsSnapshot, MetricsStore};
use crate::props::{PropEnv, get_property};
use crate::stream::{
    Dir, FILTER_STATE_PREFIX, FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus,
    HttpFilter, LocalReply, SharedStream, StreamAction, StreamCore, StreamData, StreamInfo,
};
use crate::{LoadError, LogLevel, PluginConfig};

mod bindings {
    wasmtime::component::bindgen!({
        world: "governance",
        path: "../wit",
    });
}

use bindings::Governance;
use bindings::portcullis::governance::types::{
    Action, AuditRecord, BundleInfo, Decision, HeaderEdits, Reply, RequestContext, RequestHead,
};
use bindings::portcullis::governance::{
    clock, counters, key_value, logging, properties, random, types,
};

/// The property (filter state `wasm.portcullis.audit`) the audit lines go
/// to, as the proxy-wasm filter writes them.
pub const AUDIT_PROPERTY: &str = "portcullis.audit";

/// One process-wide engine for components, with the same on-disk code cache
/// as proxy-wasm modules (compiling the engine takes seconds).
fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        cfg.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Environment);
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

/// Compiled components by content: the same bytes compile once per process.
fn compile(wasm: &[u8]) -> Result<Component, LoadError> {
    use std::hash::{Hash, Hasher};
    type ByHash = HashMap<u64, Vec<(Vec<u8>, Component)>>;
    static COMPONENTS: OnceLock<std::sync::Mutex<ByHash>> = OnceLock::new();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut h);
    let key = h.finish();
    let cache = COMPONENTS.get_or_init(Default::default);
    if let Ok(c) = cache.lock()
        && let Some((_, m)) = c.get(&key).and_then(|v| v.iter().find(|(b, _)| b == wasm))
    {
        return Ok(m.clone());
    }
    let component = Component::new(engine(), wasm).map_err(|e| {
        LoadError::Compile(format!(
            "{e:?} (is this a component built for wasm32-wasip2, e.g. portcullis_component.wasm?)"
        ))
    })?;
    if let Ok(mut c) = cache.lock() {
        c.entry(key)
            .or_default()
            .push((wasm.to_vec(), component.clone()));
    }
    Ok(component)
}

/// A compiled component with its bundle, validated. Cheap to share; each
/// worker makes its own [`ComponentVm`].
pub struct ComponentPlugin {
    id: u64,
    component: Component,
    linker: Linker<ComponentHost>,
    config: PluginConfig,
    bundle: BundleInfo,
    metrics: Arc<MetricsStore>,
}

impl std::fmt::Debug for ComponentPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentPlugin")
            .field("id", &self.id)
            .field("name", &self.config.name)
            .field("bundle", &self.bundle.version)
            .finish()
    }
}

impl ComponentPlugin {
    /// Compiles `wasm` (a component), links the imports, and configures a
    /// load-time instance with `config.configuration` (the bundle's JSON):
    /// a bundle the engine refuses refuses the load, every error named.
    pub fn load(wasm: &[u8], config: PluginConfig) -> Result<Arc<ComponentPlugin>, LoadError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let component = compile(wasm)?;
        let mut linker = Linker::<ComponentHost>::new(engine());
        // Rust's standard library on wasm32-wasip2 imports a few WASI
        // interfaces (environment, exit, stderr for panic messages); the
        // engine uses none of them, so they get an empty context.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Instantiate(format!("{e:?}")))?;
        Governance::add_to_linker::<_, HasSelf<_>>(&mut linker, |h| h)
            .map_err(|e| LoadError::Instantiate(format!("{e:?}")))?;
        let mut plugin = ComponentPlugin {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            component,
            linker,
            config,
            bundle: BundleInfo {
                version: String::new(),
                servers: 0,
            },
            metrics: Arc::new(MetricsStore::default()),
        };
        let (_, info) = plugin.instantiate()?;
        plugin.bundle = info;
        Ok(Arc::new(plugin))
    }

    fn instantiate(&self) -> Result<(Instance, BundleInfo), LoadError> {
        let host = ComponentHost {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            stream: ThreadBound(None),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(engine(), host);
        let bindings = Governance::instantiate(&mut store, &self.component, &self.linker)
            .map_err(|e| LoadError::Instantiate(format!("{e:?}")))?;
        let configured = bindings
            .portcullis_governance_engine()
            .call_configure(&mut store, &self.config.configuration)
            .map_err(|e| LoadError::Start(format!("configure trapped: {e:?}")))?;
        match configured {
            Ok(info) => Ok((Instance { store, bindings }, info)),
            Err(errors) => Err(LoadError::Configure(
                errors
                    .iter()
                    .map(describe_bundle_error)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// Unique per load; a reloaded plugin gets a new id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The bundle version the engine reported.
    pub fn bundle_version(&self) -> &str {
        &self.bundle.version
    }

    /// The engine's counters (`wasmcustom.portcullis.*`), shared by all
    /// instances, named as the proxy-wasm filter's are.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    pub fn prometheus(&self) -> String {
        crate::metrics::prometheus_text(&self.metrics.snapshot())
    }
}

fn describe_bundle_error(e: &types::BundleError) -> String {
    let mut s = String::new();
    match (&e.file, e.line) {
        (Some(f), Some(l)) => s.push_str(&format!("{f}:{l}: ")),
        (Some(f), None) => s.push_str(&format!("{f}: ")),
        _ => {}
    }
    if let Some(d) = &e.document {
        s.push_str(&format!("{d}: "));
    }
    if !e.field.is_empty() {
        s.push_str(&format!("{}: ", e.field));
    }
    s.push_str(&e.message);
    s
}

/// What an instance's imports see.
pub struct ComponentHost {
    config: PluginConfig,
    metrics: Arc<MetricsStore>,
    /// The stream whose callback is running, for property lookups.
    stream: ThreadBound<Option<SharedStream>>,
    wasi: WasiCtx,
    table: ResourceTable,
}

/// A value that never leaves the thread that made it, in a type that must be
/// `Send` (`WasiView` asks it of the store's data).
struct ThreadBound<T>(T);

// SAFETY: the only `ThreadBound` is the store data's current stream, which
// is `Some` only during a call made by a `ComponentVm` (an `Rc`, so `!Send`)
// on its own thread, and is reset to `None` before the call returns; a
// store that could move to another thread (the load-time instance) never
// holds one.
unsafe impl<T> Send for ThreadBound<T> {}

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for ComponentHost {}

impl clock::Host for ComponentHost {
    fn now(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

impl random::Host for ComponentHost {
    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let mut buf = vec![0u8; len.min(1 << 16) as usize];
        let _ = getrandom::getrandom(&mut buf);
        buf
    }
}

impl key_value::Host for ComponentHost {
    fn get(&mut self, key: String) -> Option<(Vec<u8>, u64)> {
        crate::shared::get_shared_data(&self.config.vm_id, &key)
            .ok()
            .map(|(v, cas)| (v, u64::from(cas)))
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        condition: key_value::Condition,
    ) -> Result<(), key_value::StoreError> {
        use crate::abi::Status;
        let vm_id = &self.config.vm_id;
        let status = match condition {
            // proxy-wasm's store: cas 0 writes unconditionally.
            key_value::Condition::Always => crate::shared::set_shared_data(vm_id, &key, &value, 0),
            key_value::Condition::Absent => crate::shared::add_shared_data(vm_id, &key, &value),
            // No stored value has cas 0, or one over u32 (proxy-wasm's), so
            // those cannot match.
            key_value::Condition::Cas(c) => match u32::try_from(c) {
                Ok(c) if c != 0 => crate::shared::set_shared_data(vm_id, &key, &value, c),
                _ => Status::CasMismatch,
            },
        };
        match status {
            Status::Ok => Ok(()),
            Status::CasMismatch => Err(key_value::StoreError::CasMismatch),
            other => Err(key_value::StoreError::Unavailable(format!(
                "shared data store failed: {other:?}"
            ))),
        }
    }
}

impl logging::Host for ComponentHost {
    fn log(&mut self, level: logging::Level, message: String) {
        let level = match level {
            logging::Level::Debug => LogLevel::Debug,
            logging::Level::Info => LogLevel::Info,
            logging::Level::Warn => LogLevel::Warn,
            logging::Level::Error => LogLevel::Error,
            logging::Level::Critical => LogLevel::Critical,
        };
        self.config.log(level, &message);
    }
}

impl counters::Host for ComponentHost {
    fn add(&mut self, name: String, delta: u64) {
        // Named as proxy_define_metric names them (`wasmcustom.<name>`).
        let full = self.metrics.define(MetricKind::Counter, &name);
        self.metrics.update(&full, |m| {
            if let MetricValue::Counter(v) = m {
                *v = v.saturating_add(delta);
            }
        });
    }
}

impl properties::Host for ComponentHost {
    fn get(&mut self, path: Vec<String>) -> Option<Vec<u8>> {
        let joined = path.join("\0").into_bytes();
        let stream = self.stream.0.as_ref().map(|s| s.borrow());
        let env = PropEnv {
            plugin: &self.config,
            stream: stream.as_deref(),
        };
        get_property(&env, &joined).ok()
    }
}

struct Instance {
    store: Store<ComponentHost>,
    bindings: Governance,
}

/// One instance of a [`ComponentPlugin`] (a worker's), configured with the
/// plugin's bundle. Streams on the worker share it, one call at a time.
pub struct ComponentVm {
    plugin: Arc<ComponentPlugin>,
    instance: RefCell<Instance>,
    failed: std::cell::Cell<bool>,
}

impl ComponentVm {
    pub fn new(plugin: Arc<ComponentPlugin>) -> Result<Rc<ComponentVm>, LoadError> {
        let (instance, _) = plugin.instantiate()?;
        Ok(Rc::new(ComponentVm {
            plugin,
            instance: RefCell::new(instance),
            failed: std::cell::Cell::new(false),
        }))
    }

    pub fn plugin(&self) -> &Arc<ComponentPlugin> {
        &self.plugin
    }

    /// A call trapped: this instance is not used for new streams.
    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }

    /// A new stream on this instance, with no IO (tests, benches).
    pub fn stream(self: &Rc<Self>, buffer_limit: usize) -> StreamCore {
        self.stream_with(StreamInfo::default(), buffer_limit)
    }

    pub fn stream_with(self: &Rc<Self>, info: StreamInfo, buffer_limit: usize) -> StreamCore {
        let data = Rc::new(RefCell::new(StreamData {
            info,
            ..Default::default()
        }));
        let filter = ComponentFilter::new(self.clone(), data.clone());
        StreamCore::new(Box::new(filter), data, buffer_limit)
    }

    /// Runs `f` against the instance with `stream` visible to property
    /// lookups. `None` once the instance has failed (or fails now).
    fn with<R>(
        &self,
        stream: &SharedStream,
        f: impl FnOnce(&mut Store<ComponentHost>, &Governance) -> wasmtime::Result<R>,
    ) -> Option<R> {
        if self.failed.get() {
            return None;
        }
        let Ok(mut inst) = self.instance.try_borrow_mut() else {
            return None;
        };
        let Instance { store, bindings } = &mut *inst;
        store.data_mut().stream = ThreadBound(Some(stream.clone()));
        let r = f(store, bindings);
        store.data_mut().stream = ThreadBound(None);
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed.set(true);
                self.plugin.config.log(
                    LogLevel::Critical,
                    &format!("portcullis component trapped, failing the stream closed: {e:?}"),
                );
                None
            }
        }
    }
}

/// One stream through the component: the host half of the adapter. It
/// sequences nothing: the component's stream driver (the same one the
/// proxy-wasm filter runs) decides per callback, and this applies each
/// decision the way the proxy-wasm hostcalls would.
pub struct ComponentFilter {
    vm: Rc<ComponentVm>,
    stream: SharedStream,
    exchange: Option<ResourceAny>,
    audit_lines: String,
    failed: bool,
    logged: bool,
}

/// Which callback a decision answers: what its actions mean depends on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    Body,
    Trailers,
}

/// A decision as Envoy's filter manager takes it from one callback.
enum Status {
    Headers(FilterHeadersStatus),
    Data(FilterDataStatus),
    Trailers(FilterTrailersStatus),
}

impl ComponentFilter {
    pub fn new(vm: Rc<ComponentVm>, stream: SharedStream) -> ComponentFilter {
        ComponentFilter {
            vm,
            stream,
            exchange: None,
            audit_lines: String::new(),
            failed: false,
            logged: false,
        }
    }

    /// The exchange resource, made on first use.
    fn exchange(&mut self) -> Option<ResourceAny> {
        if let Some(x) = self.exchange {
            return Some(x);
        }
        let x = self.vm.with(&self.stream, |store, g| {
            g.portcullis_governance_engine()
                .exchange()
                .call_constructor(store)
        })?;
        self.exchange = Some(x);
        Some(x)
    }

    /// The component failed: one 503, as a fail-closed proxy-wasm VM gives.
    fn fail(&mut self) {
        if !self.failed {
            self.failed = true;
            self.stream
                .borrow_mut()
                .push_action(StreamAction::FailStream);
        }
    }

    fn call(
        &mut self,
        f: impl FnOnce(
            &mut Store<ComponentHost>,
            &Governance,
            ResourceAny,
        ) -> wasmtime::Result<Decision>,
    ) -> Option<Decision> {
        if self.failed {
            return None;
        }
        let Some(x) = self.exchange() else {
            self.fail();
            return None;
        };
        match self.vm.with(&self.stream, |store, g| f(store, g, x)) {
            Some(decision) => {
                self.record(&decision.audit);
                Some(decision)
            }
            None => {
                self.fail();
                None
            }
        }
    }

    /// Applies one decision to the stream, as the proxy-wasm adapter's
    /// hostcalls would, and returns the status for the callback.
    fn apply_decision(&mut self, dir: Dir, phase: Phase, decision: Option<Decision>) -> Status {
        let Some(decision) = decision else {
            // Failed: the 503 is queued; stop everything.
            return match phase {
                Phase::Headers => {
                    Status::Headers(FilterHeadersStatus::StopAllIterationAndWatermark)
                }
                Phase::Body => Status::Data(FilterDataStatus::StopIterationNoBuffer),
                Phase::Trailers => Status::Trailers(FilterTrailersStatus::StopIteration),
            };
        };
        self.apply_trailers(dir, &decision.trailers);
        let (edits, body, proceed) = match decision.action {
            Action::Continue(edits) => (Some(edits), None, true),
            Action::Pause(edits) => (Some(edits), None, false),
            Action::Rewrite(rw) => (Some(rw.edits), Some(rw.body), true),
            Action::Respond(reply) => {
                self.reply(reply);
                return match phase {
                    Phase::Headers => {
                        Status::Headers(FilterHeadersStatus::StopAllIterationAndWatermark)
                    }
                    Phase::Body => Status::Data(FilterDataStatus::StopIterationNoBuffer),
                    Phase::Trailers => Status::Trailers(FilterTrailersStatus::StopIteration),
                };
            }
        };
        if let Some(edits) = &edits {
            self.apply(dir, edits);
        }
        if let Some(body) = body {
            self.replace_body(dir, body);
        }
        match (phase, proceed) {
            (Phase::Headers, true) => Status::Headers(FilterHeadersStatus::Continue),
            // Held, still editable, while body callbacks run (Envoy with
            // allow_on_headers_stop_iteration).
            (Phase::Headers, false) => Status::Headers(FilterHeadersStatus::StopIteration),
            (Phase::Body, true) => Status::Data(FilterDataStatus::Continue),
            (Phase::Body, false) => Status::Data(FilterDataStatus::StopIterationAndBuffer),
            (Phase::Trailers, true) => Status::Trailers(FilterTrailersStatus::Continue),
            (Phase::Trailers, false) => Status::Trailers(FilterTrailersStatus::StopIteration),
        }
    }

    /// Logs each record and republishes all of this stream's lines as the
    /// filter state access loggers read.
    fn record(&mut self, records: &[AuditRecord]) {
        if records.is_empty() {
            return;
        }
        for r in records {
            self.vm.plugin.config.log(LogLevel::Info, &r.json);
            self.audit_lines.push_str(&r.json);
            self.audit_lines.push('\n');
        }
        self.stream.borrow_mut().info.filter_state.insert(
            format!("{FILTER_STATE_PREFIX}{AUDIT_PROPERTY}"),
            self.audit_lines.as_bytes().to_vec(),
        );
    }

    fn apply(&self, dir: Dir, edits: &HeaderEdits) {
        let mut d = self.stream.borrow_mut();
        let side = d.side_mut(dir);
        if !side.headers_active {
            if !edits.remove.is_empty() || !edits.set.is_empty() {
                self.vm.plugin.config.log(
                    LogLevel::Warn,
                    "portcullis component: header edits after the headers were forwarded are dropped",
                );
            }
            return;
        }
        for name in &edits.remove {
            side.headers.remove(name);
        }
        for (name, value) in &edits.set {
            side.headers.replace(name, value.as_bytes());
        }
    }

    fn apply_trailers(&self, dir: Dir, edits: &HeaderEdits) {
        if edits.remove.is_empty() && edits.set.is_empty() {
            return;
        }
        let mut d = self.stream.borrow_mut();
        let side = d.side_mut(dir);
        let Some(trailers) = side.trailers.as_mut().filter(|_| side.trailers_active) else {
            return;
        };
        for name in &edits.remove {
            trailers.remove(name);
        }
        for (name, value) in &edits.set {
            trailers.replace(name, value.as_bytes());
        }
    }

    fn reply(&mut self, reply: Reply) {
        // As proxy_send_local_response: whitespace in details becomes `_`,
        // header names are lowercase.
        let details = reply
            .details
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        self.stream
            .borrow_mut()
            .push_action(StreamAction::LocalReply(LocalReply {
                status: reply.status,
                body: reply.body,
                headers: reply
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes()))
                    .collect(),
                details,
                grpc_status: None,
            }));
    }

    fn replace_body(&self, dir: Dir, body: Vec<u8>) {
        self.stream.borrow_mut().side_mut(dir).body = Some(body);
    }

    /// What the host holds of a body now (as `get_buffer_bytes` sees it).
    fn held(&self, dir: Dir) -> Vec<u8> {
        self.stream
            .borrow()
            .side(dir)
            .visible_body()
            .cloned()
            .unwrap_or_default()
    }

    fn trailers(&self, dir: Dir) -> Vec<(String, String)> {
        self.stream
            .borrow()
            .side(dir)
            .trailers
            .as_ref()
            .map(non_pseudo)
            .unwrap_or_default()
    }

    fn request_head(&self) -> (RequestHead, RequestContext) {
        let d = self.stream.borrow();
        let mut head = RequestHead {
            method: String::new(),
            path: String::new(),
            authority: String::new(),
            headers: Vec::new(),
        };
        for (name, value) in d.request.headers.iter() {
            let value = String::from_utf8_lossy(value).into_owned();
            match name {
                ":method" => head.method = value,
                ":path" => head.path = value,
                ":authority" => head.authority = value,
                _ if name.starts_with(':') => {}
                _ => head.headers.push((name.to_owned(), value)),
            }
        }
        let context = RequestContext {
            source_address: d.info.downstream_remote.map(|a| a.to_string()),
        };
        (head, context)
    }
}

fn headers_status(s: Status) -> FilterHeadersStatus {
    match s {
        Status::Headers(h) => h,
        _ => FilterHeadersStatus::StopAllIterationAndWatermark,
    }
}

fn data_status(s: Status) -> FilterDataStatus {
    match s {
        Status::Data(d) => d,
        _ => FilterDataStatus::StopIterationNoBuffer,
    }
}

fn trailers_status(s: Status) -> FilterTrailersStatus {
    match s {
        Status::Trailers(t) => t,
        _ => FilterTrailersStatus::StopIteration,
    }
}

impl HttpFilter for ComponentFilter {
    fn on_request_headers(&mut self, end_stream: bool) -> FilterHeadersStatus {
        let (head, context) = self.request_head();
        let d = self.call(|store, g, x| {
            g.portcullis_governance_engine()
                .exchange()
                .call_request_headers(store, x, &head, &context, end_stream)
        });
        headers_status(self.apply_decision(Dir::Request, Phase::Headers, d))
    }

    fn on_request_body(&mut self, _body_len: usize, end_stream: bool) -> FilterDataStatus {
        let body = self.held(Dir::Request);
        let d = self.call(|store, g, x| {
            g.portcullis_governance_engine()
                .exchange()
                .call_request_body(store, x, &body, end_stream)
        });
        data_status(self.apply_decision(Dir::Request, Phase::Body, d))
    }

    fn on_request_trailers(&mut self) -> FilterTrailersStatus {
        let (trailers, body) = (self.trailers(Dir::Request), self.held(Dir::Request));
        let d = self.call(|store, g, x| {
            g.portcullis_governance_engine()
                .exchange()
                .call_request_trailers(store, x, &trailers, &body)
        });
        trailers_status(self.apply_decision(Dir::Request, Phase::Trailers, d))
    }

    fn on_response_headers(&mut self, end_stream: bool) -> FilterHeadersStatus {
        // The 503 of a failed component passes back untouched, as a failed
        // proxy-wasm VM's does (Envoy `failStream`).
        if self.failed {
            return FilterHeadersStatus::Continue;
        }
        let (status, headers) = {
            let d = self.stream.borrow();
            let h = &d.response.headers;
            let status = h
                .get_str(":status")
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(0);
            (status, non_pseudo(h))
        };
        let d = self.call(|store, g, x| {
            g.portcullis_governance_engine()
                .exchange()
                .call_response_headers(store, x, status, &headers, end_stream)
        });
        headers_status(self.apply_decision(Dir::Response, Phase::Headers, d))
    }

    fn on_response_body(&mut self, _body_len: usize, end_stream: bool) -> FilterDataStatus {
        if self.failed {
            return FilterDataStatus::Continue;
        }
        let data = self.held(Dir::Response);
        let d = self.call(|store, g, x| {
            g.portcullis_governance_engine()
                .exchange()
                .call_response_body(store, x, &data, end_stream)
        });
        data_status(self.apply_decision(Dir::Response, Phase::Body, d))
    }

    fn on_response_trailers(&mut self) -> FilterTrailersStatus {
        if self.failed {
            return FilterTrailersStatus::Continue;
        }
        let (trailers, data) = (self.trailers(Dir::Response), self.held(Dir::Response));
        let d = self.call(|store, g, x| {
            g.portcullis_governance_engine()
                .exchange()
                .call_response_trailers(store, x, &trailers, &data)
        });
        trailers_status(self.apply_decision(Dir::Response, Phase::Trailers, d))
    }

    fn on_log(&mut self) {
        if self.logged || self.failed {
            return;
        }
        self.logged = true;
        let Some(x) = self.exchange() else {
            return;
        };
        let records = self.vm.with(&self.stream, |store, g| {
            g.portcullis_governance_engine()
                .exchange()
                .call_end(store, x)
        });
        if let Some(records) = records {
            self.record(&records);
        }
    }

    fn on_destroy(&mut self) {
        if let Some(x) = self.exchange.take() {
            let _ = self
                .vm
                .with(&self.stream, |store, _| x.resource_drop(store));
        }
    }
}

fn non_pseudo(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

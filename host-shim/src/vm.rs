//! One proxy-wasm VM: a wasmtime instance plus the host state its calls see.
//!
//! Envoy runs one VM per worker thread and never shares it across threads,
//! so a [`WasmVm`] is `!Send`, lives in an `Rc`, and is driven only from its
//! worker. Calls into the module go through [`WasmVm::call`], which sets the
//! current context (cpp-host `ContextBase` / `contextOrEffectiveContext`) and
//! records traps: a trap marks the VM failed (cpp-host `FailState::RuntimeError`)
//! and every later call is refused, as in cpp-host `isFailed()`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use wasmtime::{Func, Instance, Linker, Memory, Store, Val};

use crate::grpc::{GrpcCallResult, PendingGrpcCall};
use crate::headers::HeaderMap;
use crate::plugin::Plugin;
use crate::shared::VmEvent;
use crate::stream::SharedStream;
use crate::{LoadError, hostcalls, wasi};

/// A response (or failure) for a `proxy_http_call`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

/// An outgoing `proxy_http_call`, waiting for the IO layer to perform it.
#[derive(Debug, Clone)]
pub struct PendingHttpCall {
    pub token: u32,
    pub cluster: String,
    pub upstream: http::Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    /// Envoy: 0 means no timeout.
    pub timeout: Option<Duration>,
}

pub(crate) struct Ctx {
    /// 0 for root contexts.
    pub parent: u32,
    pub stream: Option<SharedStream>,
}

/// The state host calls see (`Store` data).
pub(crate) struct Host {
    pub plugin: Arc<Plugin>,
    pub clusters: Arc<HashMap<String, http::Uri>>,
    pub memory: Option<Memory>,
    pub current: u32,
    pub effective: Option<u32>,
    pub root_id: u32,
    pub contexts: HashMap<u32, Ctx>,
    pub stop_next_iteration: bool,
    /// PluginConfiguration is readable only during on_configure (Envoy
    /// `temp_plugin_`).
    pub in_configure: bool,
    pub http_call_response: Option<HttpCallResponse>,
    pub call_data: Vec<u8>,
    pub status: (u32, Vec<u8>),
    pub pending_http: Vec<PendingHttpCall>,
    pub http_tokens: HashMap<u32, u32>,
    pub next_token: u32,
    pub pending_grpc: Vec<PendingGrpcCall>,
    /// gRPC call token -> the root context its answer goes to.
    pub grpc_tokens: HashMap<u32, u32>,
    /// cpp-host `next_grpc_call_id_`: starts at CalloutType::GrpcCall (1).
    pub next_grpc_token: u32,
    /// Envoy `grpc_receive_buffer_`, during `proxy_on_grpc_receive`.
    pub grpc_receive: Option<Vec<u8>>,
    pub tick_period_ms: u64,
    pub tick_notify: Rc<Notify>,
    pub http_notify: Rc<Notify>,
    pub events_tx: UnboundedSender<VmEvent>,
    pub metric_ids: HashMap<u32, String>,
    pub next_metric: [u32; 3],
    pub pending_done: bool,
}

impl Host {
    /// cpp-host `contextOrEffectiveContext`.
    pub fn ctx_id(&self) -> u32 {
        self.effective.unwrap_or(self.current)
    }

    pub fn stream(&self) -> Option<SharedStream> {
        self.contexts
            .get(&self.ctx_id())
            .and_then(|c| c.stream.clone())
    }
}

/// Outcome of one call into the module.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallResult {
    pub ret: Option<i64>,
    pub trapped: bool,
    /// `proxy_send_local_response` ran: cpp-host `stopNextIteration(true)`.
    pub stop_next: bool,
}

struct Inner {
    store: Store<Host>,
    funcs: HashMap<String, Export>,
    instance: Instance,
}

/// The most parameters or results an export is called with here (the
/// proxy-wasm callbacks take at most five).
const MAX_VALS: usize = 8;

/// An exported function with its signature read once at instantiation:
/// `Func::ty` builds a `FuncType` (registry lookup, allocations) on every
/// call otherwise, and this runs for every callback of every stream.
#[derive(Clone, Copy)]
struct Export {
    func: Func,
    /// Which parameters are i64 (the rest are passed as i32).
    i64_params: [bool; MAX_VALS],
    params: usize,
    results: usize,
}

/// A live VM for one plugin on one thread.
pub struct WasmVm {
    inner: RefCell<Inner>,
    failed: std::cell::Cell<bool>,
    plugin: Arc<Plugin>,
    events_rx: RefCell<Option<UnboundedReceiver<VmEvent>>>,
    next_context: std::cell::Cell<u32>,
    root_id: u32,
}

/// Builds the linker with every host function this shim provides.
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<Host>, wasmtime::Error> {
    let mut l = Linker::new(engine);
    hostcalls::add(&mut l)?;
    wasi::add(&mut l)?;
    Ok(l)
}

impl WasmVm {
    /// Instantiates the module and starts the root context: `_initialize`,
    /// `proxy_on_context_create(root)`, `proxy_on_vm_start`,
    /// `proxy_on_configure`, as Envoy does per worker (cpp-host
    /// `ContextBase::onStart` / `onConfigure`). `false` from either fails.
    pub fn new(
        plugin: Arc<Plugin>,
        clusters: Arc<HashMap<String, http::Uri>>,
    ) -> Result<Rc<WasmVm>, LoadError> {
        let (tx, rx) = unbounded_channel();
        let host = Host {
            plugin: plugin.clone(),
            clusters,
            memory: None,
            current: 0,
            effective: None,
            root_id: 1,
            contexts: HashMap::new(),
            stop_next_iteration: false,
            in_configure: false,
            http_call_response: None,
            call_data: Vec::new(),
            status: (0, Vec::new()),
            pending_http: Vec::new(),
            http_tokens: HashMap::new(),
            next_token: 0,
            pending_grpc: Vec::new(),
            grpc_tokens: HashMap::new(),
            next_grpc_token: 1,
            grpc_receive: None,
            tick_period_ms: 0,
            tick_notify: Rc::new(Notify::new()),
            http_notify: Rc::new(Notify::new()),
            events_tx: tx,
            metric_ids: HashMap::new(),
            next_metric: [0, 1, 2],
            pending_done: false,
        };
        let mut store = Store::new(plugin.engine(), host);
        let linker = plugin.linker();
        for imp in plugin.module().imports() {
            if linker.get_by_import(&mut store, &imp).is_none() {
                return Err(LoadError::UnknownImport {
                    module: imp.module().to_string(),
                    name: imp.name().to_string(),
                });
            }
        }
        let instance = linker
            .instantiate(&mut store, plugin.module())
            .map_err(|e| LoadError::Instantiate(format!("{e:?}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| LoadError::Instantiate("module does not export `memory`".into()))?;
        store.data_mut().memory = Some(memory);
        let mut funcs = HashMap::new();
        for e in plugin.module().exports() {
            if let Some(func) = instance.get_func(&mut store, e.name()) {
                let ty = func.ty(&store);
                let mut i64_params = [false; MAX_VALS];
                for (slot, t) in i64_params.iter_mut().zip(ty.params()) {
                    *slot = matches!(t, wasmtime::ValType::I64);
                }
                let (params, results) = (ty.params().len(), ty.results().len());
                funcs.insert(
                    e.name().to_string(),
                    Export {
                        func,
                        i64_params,
                        params,
                        results,
                    },
                );
            }
        }
        store.data_mut().contexts.insert(
            1,
            Ctx {
                parent: 0,
                stream: None,
            },
        );
        let vm = Rc::new(WasmVm {
            inner: RefCell::new(Inner {
                store,
                funcs,
                instance,
            }),
            failed: std::cell::Cell::new(false),
            plugin: plugin.clone(),
            events_rx: RefCell::new(Some(rx)),
            next_context: std::cell::Cell::new(2),
            root_id: 1,
        });
        // WASI reactor / command initialisation (cpp-host startVm).
        for init in ["_initialize", "_start"] {
            if vm.has_export(init) {
                let r = vm.call(init, &[], 0);
                if r.trapped {
                    return Err(LoadError::Start(format!("{init} trapped")));
                }
                break;
            }
        }
        let cfg = plugin.config();
        vm.call("proxy_on_context_create", &[1, 0], 1);
        let started = vm.call("proxy_on_vm_start", &[1, cfg.vm_config.len() as i64], 1);
        if started.trapped || started.ret == Some(0) {
            return Err(LoadError::Start("proxy_on_vm_start returned false".into()));
        }
        vm.inner.borrow_mut().store.data_mut().in_configure = true;
        let configured = vm.call(
            "proxy_on_configure",
            &[1, cfg.configuration.len() as i64],
            1,
        );
        vm.inner.borrow_mut().store.data_mut().in_configure = false;
        if configured.trapped || configured.ret == Some(0) {
            return Err(LoadError::Configure(
                "proxy_on_configure returned false".into(),
            ));
        }
        Ok(vm)
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    pub fn root_context_id(&self) -> u32 {
        self.root_id
    }

    /// The size of the module's linear memory, in bytes (a whole number of
    /// 64 KiB wasm pages; it only grows). `None` while a call into the
    /// module holds the store.
    pub fn memory_bytes(&self) -> Option<u64> {
        let inner = self.inner.try_borrow().ok()?;
        let memory = inner.store.data().memory?;
        u64::try_from(memory.data_size(&inner.store)).ok()
    }

    /// Whether a trap killed this VM.
    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }

    fn has_export(&self, name: &str) -> bool {
        self.inner.borrow().funcs.contains_key(name)
    }

    /// Registers a new HTTP context; `proxy_on_context_create` runs lazily on
    /// the first callback, as Envoy's `onCreate` in `decodeHeaders`.
    pub(crate) fn new_http_context(&self, stream: SharedStream) -> u32 {
        let id = self.next_context.get();
        self.next_context.set(id + 1);
        self.inner.borrow_mut().store.data_mut().contexts.insert(
            id,
            Ctx {
                parent: self.root_id,
                stream: Some(stream),
            },
        );
        id
    }

    pub(crate) fn remove_context(&self, id: u32) {
        self.inner
            .borrow_mut()
            .store
            .data_mut()
            .contexts
            .remove(&id);
    }

    /// Calls an export with i32/i64 args; a missing export is a no-op
    /// (cpp-host only calls callbacks the module defines).
    pub(crate) fn call(&self, name: &str, args: &[i64], context: u32) -> CallResult {
        if self.failed.get() {
            return CallResult {
                trapped: true,
                ..Default::default()
            };
        }
        let mut inner = self.inner.borrow_mut();
        let Some(f) = inner.funcs.get(name).copied() else {
            return CallResult::default();
        };
        // The callback's arity: missing arguments are zero, extra ones
        // dropped. On the stack for every proxy-wasm callback; an export
        // with more values than that (not a proxy-wasm callback) gets
        // vectors.
        let arg = |i: usize| {
            let a = args.get(i).copied().unwrap_or(0);
            match f.i64_params.get(i) {
                Some(true) => Val::I64(a),
                _ => Val::I32(a as i32),
            }
        };
        let mut param_buf = [Val::I32(0); MAX_VALS];
        let mut result_buf = [Val::I32(0); MAX_VALS];
        let (param_vec, mut result_vec): (Vec<Val>, Vec<Val>);
        let params: &[Val] = match param_buf.get_mut(..f.params) {
            Some(p) => {
                for (i, v) in p.iter_mut().enumerate() {
                    *v = arg(i);
                }
                p
            }
            None => {
                // Wider than MAX_VALS: read the real types.
                let ty = f.func.ty(&inner.store);
                param_vec = ty
                    .params()
                    .enumerate()
                    .map(|(i, t)| {
                        let a = args.get(i).copied().unwrap_or(0);
                        match t {
                            wasmtime::ValType::I64 => Val::I64(a),
                            _ => Val::I32(a as i32),
                        }
                    })
                    .collect();
                &param_vec
            }
        };
        let results: &mut [Val] = match result_buf.get_mut(..f.results) {
            Some(r) => r,
            None => {
                result_vec = vec![Val::I32(0); f.results];
                &mut result_vec
            }
        };
        {
            let h = inner.store.data_mut();
            h.current = context;
            h.effective = None;
            h.stop_next_iteration = false;
        }
        let r = f.func.call(&mut inner.store, params, results);
        let h = inner.store.data_mut();
        let stop_next = h.stop_next_iteration;
        h.effective = None;
        h.stop_next_iteration = false;
        drop(inner);
        match r {
            Ok(()) => CallResult {
                ret: results.first().map(|v| match v {
                    Val::I32(i) => i64::from(*i),
                    Val::I64(i) => *i,
                    _ => 0,
                }),
                trapped: false,
                stop_next,
            },
            Err(e) => {
                self.failed.set(true);
                // One line, as Envoy's `Function: <name> failed: <cause>`
                // (cpp-host's `fail(FailState::RuntimeError, ...)`); the
                // wasm backtrace follows at debug.
                let plugin = &self.plugin.config().name;
                tracing::error!(
                    target: "wasm",
                    "wasm {plugin}: Function: {name} failed: {}",
                    e.root_cause()
                );
                tracing::debug!(target: "wasm", "wasm {plugin}: {name}: {e:?}");
                CallResult {
                    trapped: true,
                    stop_next,
                    ..Default::default()
                }
            }
        }
    }

    /// Tick period set by `proxy_set_tick_period_milliseconds` (0 = off).
    pub fn tick_period(&self) -> Option<Duration> {
        let ms = self.inner.borrow().store.data().tick_period_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    pub(crate) fn tick_notify(&self) -> Rc<Notify> {
        self.inner.borrow().store.data().tick_notify.clone()
    }

    pub(crate) fn http_notify(&self) -> Rc<Notify> {
        self.inner.borrow().store.data().http_notify.clone()
    }

    /// cpp-host `onTick`: on the root context.
    pub fn on_tick(&self) {
        self.call("proxy_on_tick", &[i64::from(self.root_id)], self.root_id);
    }

    /// Outgoing http calls queued since the last take.
    pub fn take_http_calls(&self) -> Vec<PendingHttpCall> {
        std::mem::take(&mut self.inner.borrow_mut().store.data_mut().pending_http)
    }

    /// Delivers an http_call result. `None` is a failure (Envoy
    /// `onHttpCallFailure`): status BrokenConnection / "reset", and
    /// `proxy_on_http_call_response` with 0 headers, 0 body, 0 trailers.
    pub fn complete_http_call(&self, token: u32, response: Option<HttpCallResponse>) {
        let root = {
            let mut inner = self.inner.borrow_mut();
            let h = inner.store.data_mut();
            let Some(root) = h.http_tokens.remove(&token) else {
                return;
            };
            match &response {
                Some(_) => h.status = (0, Vec::new()),
                None => {
                    h.status = (
                        crate::abi::Status::BrokenConnection as u32,
                        b"reset".to_vec(),
                    )
                }
            }
            h.http_call_response = response.clone();
            root
        };
        let (nh, nb, nt) = response
            .as_ref()
            .map(|r| (r.headers.len(), r.body.len(), r.trailers.len()))
            .unwrap_or((0, 0, 0));
        self.call(
            "proxy_on_http_call_response",
            &[
                i64::from(root),
                i64::from(token),
                nh as i64,
                nb as i64,
                nt as i64,
            ],
            root,
        );
        let mut inner = self.inner.borrow_mut();
        let h = inner.store.data_mut();
        h.http_call_response = None;
        h.status = (0, Vec::new());
    }

    /// Outgoing gRPC calls queued since the last take.
    pub fn take_grpc_calls(&self) -> Vec<PendingGrpcCall> {
        std::mem::take(&mut self.inner.borrow_mut().store.data_mut().pending_grpc)
    }

    /// Delivers a gRPC call's end, as Envoy `Context::onGrpcReceive` (the
    /// message as GrpcReceiveBuffer during `proxy_on_grpc_receive(root,
    /// token, size)`) or `Context::onGrpcClose` (status code and message for
    /// `proxy_get_status` during `proxy_on_grpc_close(root, token, code)`).
    /// A cancelled or unknown token is dropped.
    pub fn complete_grpc_call(&self, token: u32, result: GrpcCallResult) {
        let root = {
            let mut inner = self.inner.borrow_mut();
            let h = inner.store.data_mut();
            let Some(root) = h.grpc_tokens.remove(&token) else {
                return;
            };
            match &result {
                GrpcCallResult::Message(m) => h.grpc_receive = Some(m.clone()),
                GrpcCallResult::Close { status, message } => {
                    h.status = (*status, message.as_bytes().to_vec())
                }
            }
            root
        };
        match &result {
            GrpcCallResult::Message(m) => self.call(
                "proxy_on_grpc_receive",
                &[i64::from(root), i64::from(token), m.len() as i64],
                root,
            ),
            GrpcCallResult::Close { status, .. } => self.call(
                "proxy_on_grpc_close",
                &[i64::from(root), i64::from(token), i64::from(*status)],
                root,
            ),
        };
        let mut inner = self.inner.borrow_mut();
        let h = inner.store.data_mut();
        h.grpc_receive = None;
        h.status = (0, Vec::new());
    }

    /// Delivers queued cross-VM events (queue wake-ups) without blocking.
    pub fn dispatch_pending_events(&self) {
        loop {
            let ev = match self.events_rx.borrow_mut().as_mut() {
                Some(rx) => rx.try_recv().ok(),
                None => None,
            };
            match ev {
                Some(ev) => self.dispatch_event(ev),
                None => break,
            }
        }
    }

    pub(crate) fn take_events_rx(&self) -> Option<UnboundedReceiver<VmEvent>> {
        self.events_rx.borrow_mut().take()
    }

    pub(crate) fn dispatch_event(&self, ev: VmEvent) {
        match ev {
            VmEvent::QueueReady { context_id, token } => {
                let exists = self
                    .inner
                    .borrow()
                    .store
                    .data()
                    .contexts
                    .contains_key(&context_id);
                if exists {
                    self.call(
                        "proxy_on_queue_ready",
                        &[i64::from(context_id), i64::from(token)],
                        context_id,
                    );
                }
            }
        }
    }

    /// Root teardown: `proxy_on_done` then `proxy_on_delete` on the root.
    pub fn shutdown(&self) {
        let root = i64::from(self.root_id);
        self.call("proxy_on_done", &[root], self.root_id);
        self.call("proxy_on_delete", &[root], self.root_id);
        self.failed.set(true);
    }

    #[allow(dead_code)]
    fn instance(&self) -> Instance {
        self.inner.borrow().instance
    }
}

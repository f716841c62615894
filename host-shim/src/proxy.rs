//! The reverse proxy: Envoy's threading model around [`StreamCore`].
//!
//! As in Envoy, N worker threads each run their own (current-thread) event
//! loop and their own VM; the listener hands each accepted connection to one
//! worker, round robin, and a stream never leaves its worker or VM. Bodies
//! stream chunk by chunk in both directions, so a body callback that returns
//! Continue forwards that chunk at once (SSE works). Downstream speaks
//! HTTP/1.1 and h2c, upstream HTTP/1.1.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::component::{ComponentFilter, ComponentPlugin, ComponentVm};
use crate::headers::HeaderMap;
use crate::metrics::WorkerStats;
use crate::plugin::Plugin;
use crate::stream::{Dir, HttpFilter, Output, StreamCore, StreamData, StreamInfo};
use crate::vm::{HttpCallResponse, PendingHttpCall, WasmVm};
use crate::wasm_filter::WasmFilter;
use crate::{FailurePolicy, LoadError};

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// Where and how to proxy.
#[derive(Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub upstream: http::Uri,
    /// Cluster name -> base URI, for `proxy_http_call`.
    pub clusters: HashMap<String, http::Uri>,
    pub workers: usize,
    /// Per-stream body buffer limit (Envoy `per_connection_buffer_limit_bytes`).
    pub buffer_limit: usize,
    pub access_log: Option<Arc<dyn AccessLogSink>>,
    /// Admin listener: `GET /stats/prometheus` (the plugin's metrics, then
    /// host-shim's own: each worker VM's linear memory, the process's
    /// resident memory), `GET /ready`.
    pub admin: Option<SocketAddr>,
}

impl ProxyConfig {
    pub fn new(listen: SocketAddr, upstream: http::Uri) -> Self {
        Self {
            listen,
            upstream,
            clusters: HashMap::new(),
            workers: 2,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            access_log: None,
            admin: None,
        }
    }
}

/// Receives one entry per finished stream, after the filter's `on_log`.
pub trait AccessLogSink: Send + Sync {
    fn log(&self, entry: &AccessLogEntry);
}

/// One access-log line, built from the stream's final state.
#[derive(Debug, Clone)]
pub struct AccessLogEntry {
    /// Filter state with Envoy's keys, e.g. "wasm.portcullis.audit".
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub method: String,
    pub path: String,
    pub authority: String,
    pub response_code: u16,
    pub response_code_details: String,
    pub local_reply: bool,
    pub start: SystemTime,
    pub duration: Duration,
    pub request_id: String,
    pub dynamic_metadata: serde_json::Map<String, serde_json::Value>,
}

/// Presets dynamic metadata per stream, the way an earlier Envoy filter
/// (e.g. jwt_authn) would have written it.
pub type MetadataHook =
    Arc<dyn Fn(&HeaderMap) -> serde_json::Map<String, serde_json::Value> + Send + Sync>;

struct HandleInner {
    plugin: RwLock<Option<Arc<Plugin>>>,
    /// When set, streams run this component instead of the plugin.
    component: RwLock<Option<Arc<ComponentPlugin>>>,
    metadata: RwLock<Option<MetadataHook>>,
    /// Bumped on every swap, so workers start the new VM at once.
    generation: watch::Sender<u64>,
}

/// The plugin new streams should use. [`FilterHandle::set`] swaps it: new
/// streams get a VM of the new plugin (started on every worker at the swap,
/// as Envoy starts its thread-local VMs), streams in
/// flight finish on their old VM.
#[derive(Clone)]
pub struct FilterHandle {
    inner: Arc<HandleInner>,
}

impl FilterHandle {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        Self {
            inner: Arc::new(HandleInner {
                plugin: RwLock::new(Some(plugin)),
                component: RwLock::new(None),
                metadata: RwLock::new(None),
                generation: watch::Sender::new(0),
            }),
        }
    }

    /// Streams run a WebAssembly component (see [`crate::component`]).
    pub fn component(component: Arc<ComponentPlugin>) -> Self {
        Self {
            inner: Arc::new(HandleInner {
                plugin: RwLock::new(None),
                component: RwLock::new(Some(component)),
                metadata: RwLock::new(None),
                generation: watch::Sender::new(0),
            }),
        }
    }

    pub fn set(&self, plugin: Arc<Plugin>) {
        if let Ok(mut p) = self.inner.plugin.write() {
            *p = Some(plugin);
        }
        if let Ok(mut c) = self.inner.component.write() {
            *c = None;
        }
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Swaps in another component (a new bundle) for new streams.
    pub fn set_component(&self, component: Arc<ComponentPlugin>) {
        if let Ok(mut c) = self.inner.component.write() {
            *c = Some(component);
        }
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Changes whenever [`FilterHandle::set`] or `set_component` swaps the
    /// filter.
    fn swaps(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    pub fn current(&self) -> Option<Arc<Plugin>> {
        self.inner.plugin.read().ok().and_then(|p| p.clone())
    }

    pub fn current_component(&self) -> Option<Arc<ComponentPlugin>> {
        self.inner.component.read().ok().and_then(|c| c.clone())
    }

    /// The running filter's metrics in Prometheus text format.
    pub fn prometheus(&self) -> String {
        match (self.current_component(), self.current()) {
            (Some(c), _) => c.prometheus(),
            (None, Some(p)) => p.prometheus(),
            (None, None) => String::new(),
        }
    }

    /// Sets a hook that presets dynamic metadata for each stream.
    pub fn set_metadata_hook(&self, hook: Option<MetadataHook>) {
        if let Ok(mut m) = self.inner.metadata.write() {
            *m = hook;
        }
    }

    fn metadata_for(&self, h: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
        self.inner
            .metadata
            .read()
            .ok()
            .and_then(|m| m.as_ref().map(|f| f(h)))
            .unwrap_or_default()
    }
}

/// A running proxy.
pub struct Server {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stops accepting, lets open connections finish their streams, joins
    /// the workers.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.acceptor.await;
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

struct Shared {
    filter: FilterHandle,
    upstream: http::Uri,
    clusters: Arc<HashMap<String, http::Uri>>,
    buffer_limit: usize,
    access_log: Option<Arc<dyn AccessLogSink>>,
    next_conn: AtomicU64,
    /// One per worker, by index.
    stats: Arc<[WorkerStats]>,
}

/// Starts the listener, the workers and (optionally) the admin listener.
pub async fn serve(config: ProxyConfig, filter: FilterHandle) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let stats: Arc<[WorkerStats]> = (0..config.workers.max(1))
        .map(|_| WorkerStats::default())
        .collect();
    let shared = Arc::new(Shared {
        filter: filter.clone(),
        upstream: config.upstream.clone(),
        clusters: Arc::new(config.clusters.clone()),
        buffer_limit: config.buffer_limit,
        access_log: config.access_log.clone(),
        next_conn: AtomicU64::new(1),
        stats: stats.clone(),
    });
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for i in 0..config.workers.max(1) {
        let (tx, rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
        senders.push(tx);
        let shared = shared.clone();
        let sd = shutdown_rx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("host-shim-worker-{i}"))
                .spawn(move || worker_main(i, rx, shared, sd))?,
        );
    }
    let admin_addr = match config.admin {
        Some(a) => Some(start_admin(a, filter, stats, shutdown_rx.clone()).await?),
        None => None,
    };
    let mut sd = shutdown_rx;
    let acceptor = tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((s, peer)) = r else { continue };
                    let Ok(std_stream) = s.into_std() else { continue };
                    if let Some(tx) = senders.get(next % senders.len().max(1)) {
                        let _ = tx.send((std_stream, peer));
                    }
                    next = next.wrapping_add(1);
                }
                _ = sd.changed() => break,
            }
        }
    });
    Ok(Server {
        local_addr,
        admin_addr,
        shutdown,
        acceptor,
        workers,
    })
}

struct WorkerState {
    shared: Arc<Shared>,
    /// This worker's index in `shared.stats`.
    index: usize,
    vm: RefCell<Option<Rc<WasmVm>>>,
    component: RefCell<Option<Rc<ComponentVm>>>,
    client: Client<HttpConnector, Channel<Bytes>>,
    call_client: Client<HttpConnector, Full<Bytes>>,
    /// HTTP/2 for proxy_grpc_call.
    grpc_client: Client<HttpConnector, Full<Bytes>>,
    active: Cell<usize>,
    idle: Notify,
}

/// An HTTP/1.1 client for the upstream and for `http_call`, with
/// `TCP_NODELAY` as every Envoy upstream connection has it (`CodecClient`
/// sets `connection_->noDelay(true)`; see `crate::grpc::client`, where its
/// absence cost 40 ms a call).
fn http1_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn worker_main(
    index: usize,
    mut rx: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::error!(target: "host_shim", "worker runtime failed to start");
        return;
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let state = Rc::new(WorkerState {
            shared,
            index,
            vm: RefCell::new(None),
            component: RefCell::new(None),
            client: http1_client(),
            call_client: http1_client(),
            grpc_client: crate::grpc::client(),
            active: Cell::new(0),
            idle: Notify::new(),
        });
        // Envoy starts each worker's VM when the configuration loads
        // (on_vm_start, on_configure, its tick timer), not at the worker's
        // first request (source/extensions/common/wasm/wasm.cc,
        // `getOrCreateThreadLocalPlugin` from the filter config's TLS slot),
        // and again on every swap.
        let mut swaps = state.shared.filter.swaps();
        state.warm();
        loop {
            tokio::select! {
                Ok(()) = swaps.changed() => state.warm(),
                c = rx.recv() => {
                    let Some((s, peer)) = c else { break };
                    let st = state.clone();
                    let sd = shutdown.clone();
                    st.active.set(st.active.get() + 1);
                    tokio::task::spawn_local(async move {
                        serve_conn(st.clone(), s, peer, sd).await;
                        st.active.set(st.active.get().saturating_sub(1));
                        st.idle.notify_one();
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        while state.active.get() > 0 {
            state.idle.notified().await;
        }
        if let Some(vm) = state.vm.borrow_mut().take() {
            vm.shutdown();
        }
        state.component.borrow_mut().take();
    });
}

#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

async fn serve_conn(
    state: Rc<WorkerState>,
    s: std::net::TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(s) = tokio::net::TcpStream::from_std(s) else {
        return;
    };
    let local = s.local_addr().ok();
    let conn_id = state.shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let st = state.clone();
    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req, peer, local, conn_id));
    let builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
    let conn = builder.serve_connection(TokioIo::new(s), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

impl WorkerState {
    /// Starts this worker's VM (or component instance) for the current
    /// filter now, so idle workers tick and a bad configuration shows at
    /// once.
    fn warm(self: &Rc<Self>) {
        let started = match self.shared.filter.current_component() {
            Some(c) => self.component_for_stream(c).map(|_| ()),
            None => self.vm_for_stream().map(|_| ()),
        };
        if let Err(e) = started {
            tracing::error!(target: "host_shim", "worker VM failed to start: {e}");
        }
        self.publish_memory();
    }

    /// Shows the VM's linear memory on the admin listener. Memory grows
    /// only inside calls into the module, so publishing after each stream,
    /// tick and start keeps the figure current when the worker is idle.
    fn publish_memory(&self) {
        let Some(stats) = self.shared.stats.get(self.index) else {
            return;
        };
        let bytes = match &*self.vm.borrow() {
            Some(vm) => vm.memory_bytes(),
            None => Some(0),
        };
        if let Some(b) = bytes {
            stats.wasm_memory_bytes.store(b, Ordering::Relaxed);
        }
    }

    fn stream_finished(&self) {
        if let Some(stats) = self.shared.stats.get(self.index) {
            stats.streams.fetch_add(1, Ordering::Relaxed);
        }
        self.publish_memory();
    }

    /// This worker's component instance for a new stream, when the handle
    /// runs a component: made lazily, replaced for a new component or after
    /// a trap.
    fn component_for_stream(
        &self,
        plugin: Arc<ComponentPlugin>,
    ) -> Result<Rc<ComponentVm>, LoadError> {
        let mut slot = self.component.borrow_mut();
        let stale = match &*slot {
            None => true,
            Some(vm) => vm.plugin().id() != plugin.id() || vm.is_failed(),
        };
        if stale {
            *slot = Some(ComponentVm::new(plugin)?);
        }
        slot.clone()
            .ok_or_else(|| LoadError::Start("no component instance".into()))
    }

    /// This worker's VM for a new stream: made lazily, replaced when the
    /// handle points at another plugin, or when it failed under FAIL_RELOAD.
    fn vm_for_stream(self: &Rc<Self>) -> Result<Rc<WasmVm>, LoadError> {
        let Some(plugin) = self.shared.filter.current() else {
            return Err(LoadError::Start("no plugin".into()));
        };
        let mut slot = self.vm.borrow_mut();
        let stale = match &*slot {
            None => true,
            Some(vm) => {
                vm.plugin().id() != plugin.id()
                    || (vm.is_failed()
                        && plugin.config().failure_policy == FailurePolicy::FailReload)
            }
        };
        if stale {
            let vm = WasmVm::new(plugin, self.shared.clusters.clone())?;
            self.start_vm_tasks(&vm);
            *slot = Some(vm);
        }
        slot.clone().ok_or_else(|| LoadError::Start("no VM".into()))
    }

    fn start_vm_tasks(self: &Rc<Self>, vm: &Rc<WasmVm>) {
        // Ticks: Envoy's per-root-context timer on this worker's dispatcher.
        let weak = Rc::downgrade(vm);
        let notify = vm.tick_notify();
        let st = self.clone();
        tokio::task::spawn_local(async move {
            while let Some(period) = weak.upgrade().map(|v| v.tick_period()) {
                match period {
                    None => notify.notified().await,
                    Some(d) => {
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {
                                match weak.upgrade() {
                                    Some(vm) if !vm.is_failed() => {
                                        vm.on_tick();
                                        st.publish_memory();
                                    }
                                    _ => break,
                                }
                            }
                            _ = notify.notified() => {}
                        }
                    }
                }
            }
        });
        // Outgoing http calls.
        let weak = Rc::downgrade(vm);
        let notify = vm.http_notify();
        let st = self.clone();
        tokio::task::spawn_local(async move {
            loop {
                notify.notified().await;
                let Some(vm) = weak.upgrade() else { break };
                for call in vm.take_http_calls() {
                    let w: Weak<WasmVm> = weak.clone();
                    let client = st.call_client.clone();
                    tokio::task::spawn_local(async move {
                        let token = call.token;
                        let res = perform_http_call(client, call).await;
                        if let Some(vm) = w.upgrade() {
                            vm.complete_http_call(token, res);
                        }
                    });
                }
                for call in vm.take_grpc_calls() {
                    let w: Weak<WasmVm> = weak.clone();
                    let client = st.grpc_client.clone();
                    tokio::task::spawn_local(async move {
                        let token = call.token;
                        let res = crate::grpc::perform_grpc_call(client, call).await;
                        if let Some(vm) = w.upgrade() {
                            vm.complete_grpc_call(token, res);
                        }
                    });
                }
            }
        });
        // Cross-VM events (shared queue wake-ups).
        if let Some(mut rx) = vm.take_events_rx() {
            let weak = Rc::downgrade(vm);
            tokio::task::spawn_local(async move {
                while let Some(ev) = rx.recv().await {
                    match weak.upgrade() {
                        Some(vm) => vm.dispatch_event(ev),
                        None => break,
                    }
                }
            });
        }
    }
}

fn local_response(status: u16, details: &str) -> HttpCallResponse {
    let mut h = HeaderMap::new();
    h.add(":status", status.to_string().as_bytes());
    h.add("content-length", details.len().to_string().as_bytes());
    h.add("content-type", b"text/plain");
    HttpCallResponse {
        headers: h,
        body: details.as_bytes().to_vec(),
        trailers: HeaderMap::new(),
    }
}

/// Performs an http_call like Envoy's async client, which runs the router:
/// a connect failure or a reset before headers becomes the router's 503
/// local reply, a timeout its 504, both delivered as *responses*; only a
/// reset after the headers is a failure (0 headers).
pub(crate) async fn perform_http_call(
    client: Client<HttpConnector, Full<Bytes>>,
    call: PendingHttpCall,
) -> Option<HttpCallResponse> {
    let fut = async {
        let path = call.headers.get_str(":path").unwrap_or("/").to_string();
        let mut parts = call.upstream.clone().into_parts();
        parts.path_and_query = path.parse().ok();
        let uri = http::Uri::from_parts(parts).ok()?;
        let mut b = http::Request::builder()
            .method(call.headers.get_str(":method").unwrap_or("GET"))
            .uri(uri);
        for (k, v) in call.headers.iter() {
            if k == ":authority" {
                b = b.header("host", v);
            } else if !k.starts_with(':') {
                b = b.header(k, v);
            }
        }
        let req = b.body(Full::new(Bytes::from(call.body.clone()))).ok()?;
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(_) => {
                return Some(local_response(
                    503,
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                ));
            }
        };
        let mut headers = HeaderMap::new();
        headers.add(":status", resp.status().as_str().as_bytes());
        for (k, v) in resp.headers() {
            headers.add(k.as_str(), v.as_bytes());
        }
        let collected = resp.into_body().collect().await.ok()?;
        let trailers = collected
            .trailers()
            .map(|t| {
                let mut m = HeaderMap::new();
                for (k, v) in t {
                    m.add(k.as_str(), v.as_bytes());
                }
                m
            })
            .unwrap_or_default();
        Some(HttpCallResponse {
            headers,
            body: collected.to_bytes().to_vec(),
            trailers,
        })
    };
    match call.timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Some(local_response(504, "upstream request timeout")),
        },
        None => fut.await,
    }
}

/// Random bytes for request ids, fetched 2 KiB at a time per thread as
/// Envoy's `RandomUtility::uuid` does (source/common/common/random_generator.cc:
/// a thread-local 2048-byte buffer refilled with `RAND_bytes`), so a stream
/// costs no `getrandom` syscall.
struct RandomBuffer {
    bytes: [u8; 2048],
    next: usize,
}

thread_local! {
    static RANDOM: RefCell<RandomBuffer> = const {
        RefCell::new(RandomBuffer { bytes: [0; 2048], next: 2048 })
    };
}

fn random_16() -> [u8; 16] {
    let mut out = [0u8; 16];
    let refilled = RANDOM.with_borrow_mut(|r| {
        if r.next + 16 > r.bytes.len() {
            getrandom::getrandom(&mut r.bytes).ok()?;
            r.next = 0;
        }
        out.copy_from_slice(r.bytes.get(r.next..r.next + 16)?);
        r.next += 16;
        Some(())
    });
    if refilled.is_none() {
        // The OS source failed: ask it directly, as before.
        let _ = getrandom::getrandom(&mut out);
    }
    out
}

fn request_id() -> String {
    let mut b = random_16();
    // UUID v4 layout, as Envoy's request id extension generates.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        for nibble in [x >> 4, x & 0x0f] {
            s.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "te",
];

/// Downstream request head as Envoy presents it to filters: pseudo-headers
/// first, in the order an HTTP/1.1 request gets them (`:authority` from
/// Host, `:path`, `:method`, `:scheme`: what the proxy-wasm SDK's
/// http_headers example logs under Envoy), then the client's headers in
/// their order (lowercase, hop-by-hop gone), then what the connection
/// manager adds (`ConnectionManagerUtility::mutateRequestHeaders`):
/// `x-forwarded-proto`, then `x-request-id` if absent (`generate_request_id`).
/// Both are inline headers in Envoy, set in place when the client sent
/// them. HTTP/2 keeps the client's pseudo-header order in Envoy; hyper does
/// not expose it, so host-shim uses the HTTP/1.1 order for both.
pub(crate) fn request_header_map(parts: &http::request::Parts) -> HeaderMap {
    let mut h = HeaderMap::new();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    h.add(":authority", authority.as_bytes());
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    h.add(":path", pq.as_bytes());
    h.add(":method", parts.method.as_str().as_bytes());
    h.add(
        ":scheme",
        parts.uri.scheme_str().unwrap_or("http").as_bytes(),
    );
    for (k, v) in &parts.headers {
        let k = k.as_str();
        if k == "host" || HOP_BY_HOP.contains(&k) {
            continue;
        }
        h.add(k, v.as_bytes());
    }
    // With no trusted hops (the default `xff_num_trusted_hops: 0`) the
    // client's x-forwarded-proto is replaced by the connection's own
    // scheme; the listener here is plaintext.
    h.replace("x-forwarded-proto", b"http");
    if h.get("x-request-id").is_none() {
        h.add("x-request-id", request_id().as_bytes());
    }
    h
}

type RespBody = Channel<Bytes, std::io::Error>;

type UpstreamFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<Incoming>, hyper_util::client::legacy::Error>,
            >,
    >,
>;

fn to_http_headers(h: &HeaderMap, out: &mut http::HeaderMap) {
    for (k, v) in h.iter() {
        if k.starts_with(':') || HOP_BY_HOP.contains(&k) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            http::header::HeaderValue::from_bytes(v),
        ) {
            out.append(n, v);
        }
    }
}

fn simple_response(status: u16, body: &str) -> http::Response<RespBody> {
    let (mut tx, rx) = Channel::new(1);
    let _ = tx.try_send(Frame::data(Bytes::from(body.to_string())));
    let mut r = http::Response::new(rx);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r
}

/// What runs a stream: a proxy-wasm VM or a component instance.
enum StreamVm {
    Wasm(Rc<WasmVm>),
    Component(Rc<ComponentVm>),
}

async fn handle(
    state: Rc<WorkerState>,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    conn_id: u64,
) -> Result<http::Response<RespBody>, std::io::Error> {
    let vm = match state.shared.filter.current_component() {
        Some(c) => state.component_for_stream(c).map(StreamVm::Component),
        None => state.vm_for_stream().map(StreamVm::Wasm),
    };
    let vm = match vm {
        Ok(vm) => vm,
        Err(e) => {
            tracing::error!(target: "host_shim", "no wasm VM for stream: {e}");
            return Ok(simple_response(503, "wasm VM unavailable"));
        }
    };
    let (parts, body) = req.into_parts();
    let headers = request_header_map(&parts);
    let notify = Rc::new(Notify::new());
    let info = StreamInfo {
        protocol: match parts.version {
            http::Version::HTTP_2 => "HTTP/2".into(),
            http::Version::HTTP_10 => "HTTP/1.0".into(),
            _ => "HTTP/1.1".into(),
        },
        downstream_remote: Some(peer),
        downstream_local: local,
        connection_id: conn_id,
        request_id: headers
            .get_str("x-request-id")
            .unwrap_or_default()
            .to_string(),
        dynamic_metadata: state.shared.filter.metadata_for(&headers),
        ..Default::default()
    };
    let data = Rc::new(RefCell::new(StreamData {
        info,
        notify: Some(notify.clone()),
        ..Default::default()
    }));
    let filter: Box<dyn HttpFilter> = match vm {
        StreamVm::Wasm(vm) => Box::new(WasmFilter::new(vm, data.clone())),
        StreamVm::Component(vm) => Box::new(ComponentFilter::new(vm, data.clone())),
    };
    let core = StreamCore::new(filter, data, state.shared.buffer_limit);
    let (head_tx, head_rx) = oneshot::channel();
    let end = body.is_end_stream();
    let h1 = parts.version != http::Version::HTTP_2;
    tokio::task::spawn_local(drive(state, core, headers, end, h1, body, head_tx, notify));
    match head_rx.await {
        Ok(r) => Ok(r),
        Err(_) => Err(std::io::Error::other("stream reset")),
    }
}

/// Pumps frames between hyper and the [`StreamCore`] until the stream ends.
///
/// HTTP/1 framing as Envoy's codec delivers it: the HTTP/1 parser hands the
/// body over as it arrives with `end_stream = false` (`onBody`) and ends the
/// message with an empty `end_stream = true` call (`onMessageComplete`,
/// source/common/http/http1/codec_impl.cc), for requests and responses,
/// length-delimited or chunked; hyper knows a length-delimited body ended
/// with its last chunk, so `h1` splits that into the two calls. HTTP/2's
/// DATA frame carries END_STREAM itself, so there one call is right.
#[allow(clippy::too_many_arguments)]
async fn drive(
    state: Rc<WorkerState>,
    mut core: StreamCore,
    headers: HeaderMap,
    end: bool,
    h1: bool,
    mut req_body: Incoming,
    head_tx: oneshot::Sender<http::Response<RespBody>>,
    notify: Rc<Notify>,
) {
    let mut head_tx = Some(head_tx);
    let mut down_tx: Option<Sender<Bytes, std::io::Error>> = None;
    let mut up_tx: Option<Sender<Bytes>> = None;
    let mut up_fut: Option<UpstreamFuture> = None;
    let mut up_body: Option<Incoming> = None;
    let mut up_h1 = true;
    let mut req_done = end;
    core.decode_headers(headers, end);
    loop {
        for o in core.take_outputs() {
            match o {
                Output::Headers(Dir::Request, h, eos) => {
                    let (tx, rx) = Channel::new(8);
                    if !eos {
                        up_tx = Some(tx);
                    }
                    match upstream_request(&state.shared.upstream, &h, rx) {
                        Some(req) => {
                            let client = state.client.clone();
                            up_fut = Some(Box::pin(async move { client.request(req).await }));
                        }
                        None => core.upstream_failed("bad request"),
                    }
                }
                Output::Data(Dir::Request, b, eos) => {
                    if let Some(tx) = up_tx.as_mut()
                        && !b.is_empty()
                    {
                        let _ = tx.send_data(Bytes::from(b)).await;
                    }
                    if eos {
                        up_tx = None;
                    }
                }
                Output::Trailers(Dir::Request, t) => {
                    if let Some(mut tx) = up_tx.take() {
                        let mut m = http::HeaderMap::new();
                        to_http_headers(&t, &mut m);
                        let _ = tx.send_trailers(m).await;
                    }
                }
                Output::Headers(Dir::Response, h, eos) => {
                    let (tx, rx) = Channel::<Bytes, std::io::Error>::new(8);
                    let mut r = http::Response::new(rx);
                    *r.status_mut() = h
                        .get_str(":status")
                        .and_then(|s| s.parse::<u16>().ok())
                        .and_then(|s| http::StatusCode::from_u16(s).ok())
                        .unwrap_or(http::StatusCode::BAD_GATEWAY);
                    to_http_headers(&h, r.headers_mut());
                    if !eos {
                        down_tx = Some(tx);
                    }
                    if let Some(t) = head_tx.take() {
                        let _ = t.send(r);
                    }
                }
                Output::Data(Dir::Response, b, eos) => {
                    if let Some(tx) = down_tx.as_mut()
                        && !b.is_empty()
                    {
                        let _ = tx.send_data(Bytes::from(b)).await;
                    }
                    if eos {
                        down_tx = None;
                    }
                }
                Output::Trailers(Dir::Response, t) => {
                    if let Some(mut tx) = down_tx.take() {
                        let mut m = http::HeaderMap::new();
                        to_http_headers(&t, &mut m);
                        let _ = tx.send_trailers(m).await;
                    }
                }
                Output::ResetUpstream => {
                    up_fut = None;
                    up_tx = None;
                    up_body = None;
                }
                Output::ResetDownstream => {
                    head_tx = None;
                    if let Some(tx) = down_tx.take() {
                        tx.abort(std::io::Error::other("stream reset"));
                    }
                }
            }
        }
        if core.is_complete() {
            break;
        }
        let read_req = !req_done && core.wants_request_data();
        tokio::select! {
            f = req_body.frame(), if read_req => {
                match f {
                    Some(Ok(frame)) => {
                        let eos = req_body.is_end_stream();
                        match frame.into_data() {
                            Ok(d) => {
                                req_done = eos;
                                if eos && h1 && !d.is_empty() {
                                    core.decode_data(d.to_vec(), false);
                                    core.decode_data(Vec::new(), true);
                                } else {
                                    core.decode_data(d.to_vec(), eos);
                                }
                            }
                            Err(frame) => {
                                req_done = true;
                                if let Ok(t) = frame.into_trailers() {
                                    core.decode_trailers(from_http_headers(&t));
                                }
                            }
                        }
                    }
                    Some(Err(_)) => {
                        // Downstream went away: Envoy resets the stream.
                        core.reset();
                        break;
                    }
                    None => {
                        req_done = true;
                        core.decode_data(Vec::new(), true);
                    }
                }
            }
            r = async { match up_fut.as_mut() { Some(f) => f.await, None => std::future::pending().await } }, if up_fut.is_some() => {
                up_fut = None;
                match r {
                    Ok(resp) => {
                        let (p, b) = resp.into_parts();
                        let mut h = HeaderMap::new();
                        h.add(":status", p.status.as_str().as_bytes());
                        for (k, v) in &p.headers {
                            if !HOP_BY_HOP.contains(&k.as_str()) {
                                h.add(k.as_str(), v.as_bytes());
                            }
                        }
                        let eos = b.is_end_stream();
                        up_h1 = p.version != http::Version::HTTP_2;
                        {
                            // Envoy's router: `response.code_details` is
                            // `via_upstream` for a proxied answer, and
                            // `upstream.address` the host it came from.
                            let mut d = core.data().borrow_mut();
                            d.info.response_code_details.get_or_insert_with(|| "via_upstream".into());
                            d.info.upstream_address = p
                                .extensions
                                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                                .map(|i| i.remote_addr());
                        }
                        if !eos {
                            up_body = Some(b);
                        }
                        core.encode_headers(h, eos);
                    }
                    Err(e) => {
                        tracing::debug!(target: "host_shim", "upstream request failed: {e:?}");
                        core.upstream_failed("connection failure");
                    }
                }
            }
            f = async { match up_body.as_mut() { Some(b) => b.frame().await, None => std::future::pending().await } }, if up_body.is_some() => {
                match f {
                    Some(Ok(frame)) => {
                        let eos = up_body.as_ref().map(|b| b.is_end_stream()).unwrap_or(true);
                        match frame.into_data() {
                            Ok(d) => {
                                if eos { up_body = None; }
                                if eos && up_h1 && !d.is_empty() {
                                    core.encode_data(d.to_vec(), false);
                                    core.encode_data(Vec::new(), true);
                                } else {
                                    core.encode_data(d.to_vec(), eos);
                                }
                            }
                            Err(frame) => {
                                up_body = None;
                                if let Ok(t) = frame.into_trailers() {
                                    core.encode_trailers(from_http_headers(&t));
                                }
                            }
                        }
                    }
                    Some(Err(_)) => {
                        up_body = None;
                        core.upstream_failed("upstream reset");
                    }
                    None => {
                        up_body = None;
                        core.encode_data(Vec::new(), true);
                    }
                }
            }
            _ = notify.notified() => core.process_actions(),
        }
    }
    core.finish();
    state.stream_finished();
    if let Some(sink) = &state.shared.access_log {
        let d = core.data().borrow();
        let rh = d
            .request
            .forwarded_headers
            .as_ref()
            .unwrap_or(&d.request.headers);
        let entry = AccessLogEntry {
            filter_state: d.info.filter_state.clone(),
            method: rh.get_str(":method").unwrap_or_default().to_string(),
            path: rh.get_str(":path").unwrap_or_default().to_string(),
            authority: rh.get_str(":authority").unwrap_or_default().to_string(),
            response_code: d.info.response_code.unwrap_or(0),
            response_code_details: d
                .info
                .response_code_details
                .clone()
                .unwrap_or_else(|| "via_upstream".into()),
            local_reply: d.info.local_reply,
            start: d.info.start,
            duration: Duration::from_nanos(d.info.duration_nanos.unwrap_or(0).max(0) as u64),
            request_id: d.info.request_id.clone(),
            dynamic_metadata: d.info.dynamic_metadata.clone(),
        };
        sink.log(&entry);
    }
}

fn from_http_headers(h: &http::HeaderMap) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in h {
        m.add(k.as_str(), v.as_bytes());
    }
    m
}

/// Upstream request from the forwarded headers; `:authority` is sent as
/// Host, like Envoy's HTTP/1.1 codec.
fn upstream_request(
    upstream: &http::Uri,
    h: &HeaderMap,
    body: Channel<Bytes>,
) -> Option<http::Request<Channel<Bytes>>> {
    let mut parts = upstream.clone().into_parts();
    parts.path_and_query = h.get_str(":path").unwrap_or("/").parse().ok();
    let uri = http::Uri::from_parts(parts).ok()?;
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::from_bytes(h.get(":method").unwrap_or(b"GET")).ok()?;
    *req.uri_mut() = uri;
    if let Some(a) = h.get(":authority")
        && let Ok(v) = http::header::HeaderValue::from_bytes(a)
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    to_http_headers(h, req.headers_mut());
    Some(req)
}

async fn start_admin(
    addr: SocketAddr,
    filter: FilterHandle,
    stats: Arc<[WorkerStats]>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let mut sd = shutdown;
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((s, _)) = r else { continue };
                    let f = filter.clone();
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let f = f.clone();
                            let stats = stats.clone();
                            async move {
                                let (status, body) = match req.uri().path() {
                                    "/ready" => (200, "LIVE\n".to_string()),
                                    "/stats/prometheus" => (
                                        200,
                                        f.prometheus() + &crate::metrics::host_prometheus_text(&stats),
                                    ),
                                    _ => (404, "not found\n".to_string()),
                                };
                                let mut r = http::Response::new(Full::new(Bytes::from(body)));
                                *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
                                Ok::<_, Infallible>(r)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
                _ = sd.changed() => break,
            }
        }
    });
    Ok(local)
}

/// A VM on the current thread with no IO, for driving callbacks by hand.
pub struct TestVm {
    pub vm: Rc<WasmVm>,
    pub buffer_limit: usize,
}

impl TestVm {
    pub fn new(plugin: &Arc<Plugin>) -> Result<Self, LoadError> {
        Self::with_clusters(plugin, HashMap::new())
    }

    pub fn with_clusters(
        plugin: &Arc<Plugin>,
        clusters: HashMap<String, http::Uri>,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            vm: WasmVm::new(plugin.clone(), Arc::new(clusters))?,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        })
    }

    /// A new stream on this VM.
    pub fn stream(&self) -> StreamCore {
        self.stream_with(StreamInfo::default())
    }

    pub fn stream_with(&self, info: StreamInfo) -> StreamCore {
        let data = Rc::new(RefCell::new(StreamData {
            info,
            ..Default::default()
        }));
        let filter = WasmFilter::new(self.vm.clone(), data.clone());
        StreamCore::new(Box::new(filter), data, self.buffer_limit)
    }

    /// Performs queued http calls for real (needs a tokio runtime) and
    /// delivers the results.
    pub async fn run_http_calls(&self) {
        let client = http1_client();
        for call in self.vm.take_http_calls() {
            let token = call.token;
            let r = perform_http_call(client.clone(), call).await;
            self.vm.complete_http_call(token, r);
        }
    }

    /// Performs queued gRPC calls for real (needs a tokio runtime) and
    /// delivers the results.
    pub async fn run_grpc_calls(&self) {
        let client = crate::grpc::client();
        for call in self.vm.take_grpc_calls() {
            let token = call.token;
            let r = crate::grpc::perform_grpc_call(client.clone(), call).await;
            self.vm.complete_grpc_call(token, r);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The order a filter reads request headers in, as Envoy gives them for
    /// an HTTP/1.1 request (the proxy-wasm SDK's http_headers example under
    /// Envoy logs `:authority :path :method :scheme`, the client's headers,
    /// then `x-forwarded-proto` and `x-request-id`): Envoy's HTTP/1 codec
    /// turns Host into `:authority`, and `mutateRequestHeaders` sets the
    /// connection manager's two after the client's.
    /// Request ids keep the UUID v4 layout and differ from one stream to
    /// the next, across buffer refills.
    #[test]
    fn request_ids_are_uuid_v4_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..400 {
            let id = request_id();
            assert_eq!(id.len(), 36, "{id}");
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(
                id.bytes()
                    .all(|c| c == b'-' || (c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
            );
            assert_eq!(&id[14..15], "4");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn request_headers_come_in_envoys_order() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/mcp?x=1")
            .header("host", "mcp.test")
            .header("user-agent", "curl/8")
            .header("accept", "*/*")
            .header("connection", "keep-alive")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let h = request_header_map(&parts);
        let names: Vec<&str> = h.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                ":authority",
                ":path",
                ":method",
                ":scheme",
                "user-agent",
                "accept",
                "x-forwarded-proto",
                "x-request-id"
            ]
        );
        assert_eq!(h.get_str(":authority"), Some("mcp.test"));
        assert_eq!(h.get_str(":path"), Some("/mcp?x=1"));

        // A client's own x-forwarded-proto and x-request-id keep their
        // place (inline headers, set in place); the scheme is the
        // listener's.
        let req = http::Request::builder()
            .uri("/")
            .header("host", "h")
            .header("x-request-id", "abc")
            .header("x-forwarded-proto", "https")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let h = request_header_map(&parts);
        let names: Vec<&str> = h.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                ":authority",
                ":path",
                ":method",
                ":scheme",
                "x-request-id",
                "x-forwarded-proto",
                "accept"
            ]
        );
        assert_eq!(h.get_str("x-forwarded-proto"), Some("http"));
        assert_eq!(h.get_str("x-request-id"), Some("abc"));
    }
}

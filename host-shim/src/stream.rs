//! A sans-IO model of Envoy's HTTP filter manager for one filter.
//!
//! [`StreamCore`] sits between the downstream (client) and the upstream, feeds
//! headers, body chunks and trailers to an [`HttpFilter`], and turns the
//! filter's statuses into [`Output`]s. It does no IO so the same code serves
//! the hyper proxy and tests that drive callbacks by hand. The rules it
//! applies are Envoy's (`source/common/http/filter_manager.cc` and
//! `source/extensions/common/wasm/context.cc`); each is noted where it is
//! implemented and listed in docs/host-shim.md.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::HeaderMap;

/// Envoy context.cc `CelStateKeyPrefix`: `proxy_set_property(path, v)`
/// stores filter state under `"wasm." + path`.
pub const FILTER_STATE_PREFIX: &str = "wasm.";

/// Envoy `Http::FilterHeadersStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterHeadersStatus {
    Continue,
    StopIteration,
    StopAllIterationAndBuffer,
    StopAllIterationAndWatermark,
}

/// Envoy `Http::FilterDataStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDataStatus {
    Continue,
    StopIterationAndBuffer,
    StopIterationAndWatermark,
    StopIterationNoBuffer,
}

/// Envoy `Http::FilterTrailersStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterTrailersStatus {
    Continue,
    StopIteration,
}

/// Which half of the stream: the request (decode path, towards the
/// upstream) or the response (encode path, towards the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Request,
    Response,
}

/// An HTTP stream filter, shaped like Envoy's `StreamFilter`, so a
/// non-proxy-wasm filter (e.g. a WebAssembly component) can be slotted in.
/// The filter reads and writes the stream through the [`SharedStream`] it was
/// created with; deferred effects go to [`StreamData::actions`].
pub trait HttpFilter {
    fn on_request_headers(&mut self, end_stream: bool) -> FilterHeadersStatus;
    fn on_request_body(&mut self, body_len: usize, end_stream: bool) -> FilterDataStatus;
    fn on_request_trailers(&mut self) -> FilterTrailersStatus;
    fn on_response_headers(&mut self, end_stream: bool) -> FilterHeadersStatus;
    fn on_response_body(&mut self, body_len: usize, end_stream: bool) -> FilterDataStatus;
    fn on_response_trailers(&mut self) -> FilterTrailersStatus;
    /// Access-log phase, once the stream is complete.
    fn on_log(&mut self);
    /// Stream teardown (proxy-wasm: `on_done` then `on_delete`).
    fn on_destroy(&mut self);
}

/// A local reply requested by a filter (or by the host on its behalf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub details: String,
    pub grpc_status: Option<u32>,
}

/// Effects a filter asks for during a callback. Envoy defers them until the
/// VM call returns (`addAfterVmCallAction`), and so does [`StreamCore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAction {
    Continue(Dir),
    LocalReply(LocalReply),
    /// `proxy_close_stream`: Envoy resets the stream.
    Reset(Dir),
    /// The VM failed and the policy is fail-closed: 503 once.
    FailStream,
}

/// Per-stream facts Envoy keeps in `StreamInfo`, read by properties and the
/// access log.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub start: SystemTime,
    pub protocol: String,
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    /// The upstream host's address once connected (CEL `upstream.address`).
    pub upstream_address: Option<SocketAddr>,
    pub connection_id: u64,
    pub request_id: String,
    pub response_code: Option<u16>,
    pub response_code_details: Option<String>,
    pub local_reply: bool,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Set when the stream completes (CEL `request.duration`).
    pub duration_nanos: Option<i64>,
    /// Dynamic metadata: `filter_metadata` namespace -> Struct (JSON object),
    /// e.g. what jwt_authn writes under "envoy.filters.http.jwt_authn".
    pub dynamic_metadata: serde_json::Map<String, serde_json::Value>,
    /// Filter state, keys as Envoy stores them ("wasm." + property path).
    pub filter_state: BTreeMap<String, Vec<u8>>,
}

impl Default for StreamInfo {
    fn default() -> Self {
        Self {
            start: SystemTime::now(),
            protocol: "HTTP/1.1".into(),
            downstream_remote: None,
            downstream_local: None,
            upstream_address: None,
            connection_id: 0,
            request_id: String::new(),
            response_code: None,
            response_code_details: None,
            local_reply: false,
            request_bytes: 0,
            response_bytes: 0,
            duration_nanos: None,
            dynamic_metadata: Default::default(),
            filter_state: BTreeMap::new(),
        }
    }
}

impl StreamInfo {
    pub(crate) fn start_unix_nanos(&self) -> i64 {
        self.start
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    }
}

/// One direction's maps and body as the filter can see them.
#[derive(Debug, Default)]
pub struct DirData {
    pub headers: HeaderMap,
    /// Envoy keeps a pointer to the header map only until the headers are
    /// continued (context.cc `decodeHeaders`: `request_headers_ = nullptr`
    /// on Continue). While false the filter cannot read or change them.
    pub headers_active: bool,
    /// The headers as forwarded, for on_log (`access_log_request_headers_`).
    pub forwarded_headers: Option<HeaderMap>,
    /// The body the filter sees: the current chunk, or everything buffered
    /// after `StopIterationAndBuffer`. `None` outside body callbacks.
    pub body: Option<Vec<u8>>,
    pub trailers: Option<HeaderMap>,
    pub trailers_active: bool,
    /// The filter added trailers in the last body callback (Envoy's
    /// `addDecodedTrailers` from `getMap` at end of stream).
    pub trailers_added: bool,
    /// The body held for this filter while it buffers
    /// (`StopIterationAndBuffer`): readable and writable from callbacks
    /// outside the body callbacks, an http_call's answer above all, as
    /// Envoy's `getBuffer` reaches the filter manager's buffered data
    /// through `modifyDecodingBuffer` while `buffering_request_body_`.
    pub held: Option<Vec<u8>>,
}

impl DirData {
    /// The body a hostcall reaches now: the chunk or buffer of a body or
    /// trailers callback, else what is held while the filter buffers.
    pub fn visible_body(&self) -> Option<&Vec<u8>> {
        self.body.as_ref().or(self.held.as_ref())
    }

    pub fn visible_body_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self.body {
            Some(ref mut b) => Some(b),
            None => self.held.as_mut(),
        }
    }
}

/// Stream state shared by [`StreamCore`] and its filter.
#[derive(Debug, Default)]
pub struct StreamData {
    pub info: StreamInfo,
    pub request: DirData,
    pub response: DirData,
    pub end_of_stream: bool,
    pub access_log_phase: bool,
    pub actions: Vec<StreamAction>,
    /// Wakes the proxy task when an async callback queued actions.
    pub(crate) notify: Option<Rc<tokio::sync::Notify>>,
}

impl StreamData {
    pub fn side(&self, dir: Dir) -> &DirData {
        match dir {
            Dir::Request => &self.request,
            Dir::Response => &self.response,
        }
    }

    pub fn side_mut(&mut self, dir: Dir) -> &mut DirData {
        match dir {
            Dir::Request => &mut self.request,
            Dir::Response => &mut self.response,
        }
    }

    pub fn push_action(&mut self, a: StreamAction) {
        self.actions.push(a);
        if let Some(n) = &self.notify {
            n.notify_one();
        }
    }

    /// Request headers as Envoy's CEL activation sees them: the live map
    /// while held, the logged map in the access-log phase, else nothing.
    pub(crate) fn visible_request_headers(&self) -> Option<&HeaderMap> {
        visible(&self.request, self.access_log_phase)
    }

    pub(crate) fn visible_response_headers(&self) -> Option<&HeaderMap> {
        visible(&self.response, self.access_log_phase)
    }
}

fn visible(d: &DirData, log_phase: bool) -> Option<&HeaderMap> {
    if d.headers_active {
        Some(&d.headers)
    } else if log_phase {
        d.forwarded_headers.as_ref()
    } else {
        None
    }
}

pub type SharedStream = Rc<RefCell<StreamData>>;

/// What the stream wants the IO layer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `Request`: send headers upstream; `Response`: send them to the client.
    Headers(Dir, HeaderMap, bool),
    Data(Dir, Vec<u8>, bool),
    Trailers(Dir, HeaderMap),
    /// Abandon the upstream request (a local reply took over).
    ResetUpstream,
    /// Reset the downstream stream (Envoy `resetStream`).
    ResetDownstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadersState {
    NotYet,
    /// Stopped by the filter; `limit` is true for StopAllIterationAndBuffer
    /// (buffer limit applies) and false for watermark (flow control).
    Stopped {
        limit: bool,
    },
    /// Plain `StopIteration`: headers are held (and stay mutable) while body
    /// callbacks still run; a body `Continue` releases them (Envoy
    /// `commonHandleAfterDataCallback` -> `commonContinue`).
    StoppedSingle,
    Forwarded,
}

#[derive(Debug)]
struct Side {
    headers: HeadersState,
    /// Data that arrived while the headers were stopped (Envoy buffers it
    /// without calling the filter, `handleDataIfStopAll`).
    pending: Vec<u8>,
    pending_end: bool,
    buffering: bool,
    buffer: Vec<u8>,
    /// The last body callback had end_stream and was stopped.
    data_end: bool,
    data_stopped: bool,
    trailers: Option<HeaderMap>,
    trailers_stopped: bool,
    end_seen: bool,
    done: bool,
    content_length: Option<u64>,
    forwarded_bytes: u64,
}

impl Side {
    fn new() -> Self {
        Self {
            headers: HeadersState::NotYet,
            pending: Vec::new(),
            pending_end: false,
            buffering: false,
            buffer: Vec::new(),
            data_end: false,
            data_stopped: false,
            trailers: None,
            trailers_stopped: false,
            end_seen: false,
            done: false,
            content_length: None,
            forwarded_bytes: 0,
        }
    }
}

/// The filter-manager state machine for one stream and one filter.
pub struct StreamCore {
    filter: Box<dyn HttpFilter>,
    data: SharedStream,
    buffer_limit: usize,
    out: VecDeque<Output>,
    req: Side,
    resp: Side,
    /// A local reply is being encoded; the upstream response is ignored.
    local_reply: bool,
    failed_once: bool,
    reset: bool,
    finished: bool,
}

impl StreamCore {
    pub fn new(filter: Box<dyn HttpFilter>, data: SharedStream, buffer_limit: usize) -> Self {
        Self {
            filter,
            data,
            buffer_limit,
            out: VecDeque::new(),
            req: Side::new(),
            resp: Side::new(),
            local_reply: false,
            failed_once: false,
            reset: false,
            finished: false,
        }
    }

    pub fn data(&self) -> &SharedStream {
        &self.data
    }

    /// Drains what the IO layer should do next.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.out.drain(..).collect()
    }

    /// Whether downstream body should be read now. While the request headers
    /// are stopped under watermark mode Envoy stops reading (flow control);
    /// not reading gives the same backpressure.
    pub fn wants_request_data(&self) -> bool {
        !self.reset
            && !self.local_reply
            && !matches!(self.req.headers, HeadersState::Stopped { limit: false })
    }

    /// The request is finished in both directions (or was reset).
    pub fn is_complete(&self) -> bool {
        self.reset || (self.resp.done && (self.req.done || self.local_reply))
    }

    pub fn response_started(&self) -> bool {
        self.resp.headers == HeadersState::Forwarded
    }

    pub fn is_reset(&self) -> bool {
        self.reset
    }

    fn side(&mut self, dir: Dir) -> &mut Side {
        match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        }
    }

    fn blocked(&self, dir: Dir) -> bool {
        self.reset || (dir == Dir::Request && self.local_reply)
    }

    // ---- entry points ----

    /// Request headers from the client.
    pub fn decode_headers(&mut self, headers: HeaderMap, end_stream: bool) {
        self.headers_in(Dir::Request, headers, end_stream);
        self.process_actions();
    }

    pub fn decode_data(&mut self, chunk: Vec<u8>, end_stream: bool) {
        self.data_in(Dir::Request, chunk, end_stream);
        self.process_actions();
    }

    pub fn decode_trailers(&mut self, trailers: HeaderMap) {
        self.trailers_in(Dir::Request, trailers);
        self.process_actions();
    }

    /// Response headers from the upstream. Ignored once a local reply took
    /// over the response.
    pub fn encode_headers(&mut self, headers: HeaderMap, end_stream: bool) {
        if self.local_reply {
            return;
        }
        self.headers_in(Dir::Response, headers, end_stream);
        self.process_actions();
    }

    pub fn encode_data(&mut self, chunk: Vec<u8>, end_stream: bool) {
        if self.local_reply {
            return;
        }
        self.data_in(Dir::Response, chunk, end_stream);
        self.process_actions();
    }

    pub fn encode_trailers(&mut self, trailers: HeaderMap) {
        if self.local_reply {
            return;
        }
        self.trailers_in(Dir::Response, trailers);
        self.process_actions();
    }

    /// The upstream could not be reached or reset before a response: the
    /// router's 503 local reply, which goes through the filter's encode path.
    pub fn upstream_failed(&mut self, reason: &str) {
        if self.resp.headers == HeadersState::NotYet && !self.local_reply {
            self.send_local_reply(LocalReply {
                status: 503,
                body: format!(
                    "upstream connect error or disconnect/reset before headers. reset reason: {reason}"
                )
                .into_bytes(),
                headers: Vec::new(),
                details: "upstream_reset_before_response_started".into(),
                grpc_status: None,
            });
        } else {
            self.reset_stream();
        }
        self.process_actions();
    }

    /// Sends a local reply as the host (not the filter) would, e.g. to test
    /// that it passes through the filter's response callbacks.
    pub fn local_reply(&mut self, reply: LocalReply) {
        self.send_local_reply(reply);
        self.process_actions();
    }

    /// Runs actions queued by async callbacks (http_call responses, ticks,
    /// queue events) since the last call.
    pub fn process_actions(&mut self) {
        loop {
            let actions = std::mem::take(&mut self.data.borrow_mut().actions);
            if actions.is_empty() {
                break;
            }
            for a in actions {
                if self.reset {
                    continue;
                }
                match a {
                    StreamAction::Continue(dir) => self.resume(dir),
                    StreamAction::LocalReply(r) => self.send_local_reply(r),
                    StreamAction::Reset(_) => self.reset_stream(),
                    StreamAction::FailStream => {
                        // cpp-host CHECK_FAIL / Envoy failStream: one 503.
                        if !self.failed_once {
                            self.failed_once = true;
                            self.send_local_reply(LocalReply {
                                status: 503,
                                body: Vec::new(),
                                headers: Vec::new(),
                                details: "wasm_fail_stream".into(),
                                grpc_status: None,
                            });
                        }
                    }
                }
            }
        }
    }

    /// End of stream: the access-log phase then teardown, as Envoy's HCM does
    /// (`log()` before `destroyFilters()`). Safe to call twice.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        {
            let mut d = self.data.borrow_mut();
            let elapsed = d.info.start.elapsed().unwrap_or(Duration::ZERO);
            d.info.duration_nanos = Some(elapsed.as_nanos() as i64);
            d.access_log_phase = true;
            d.request.headers_active = false;
            d.response.headers_active = false;
            // Envoy's access log gets the stream's header maps whether or
            // not they were ever forwarded (HCM `log()` passes
            // `filter_manager_.requestHeaders()`), so on_log still reads the
            // request headers of a request answered by a local reply.
            let data = &mut *d;
            for side in [&mut data.request, &mut data.response] {
                if side.forwarded_headers.is_none() && !side.headers.is_empty() {
                    side.forwarded_headers = Some(side.headers.clone());
                }
            }
        }
        self.filter.on_log();
        self.data.borrow_mut().access_log_phase = false;
        self.filter.on_destroy();
        // Actions queued now have no stream to act on (Envoy drops them too).
        self.data.borrow_mut().actions.clear();
    }

    // ---- internals ----

    fn headers_in(&mut self, dir: Dir, headers: HeaderMap, end_stream: bool) {
        if self.blocked(dir) {
            return;
        }
        {
            let mut d = self.data.borrow_mut();
            if dir == Dir::Response {
                d.info.response_code = headers.get_str(":status").and_then(|s| s.parse().ok());
            }
            let s = d.side_mut(dir);
            s.headers = headers;
            s.headers_active = true;
            d.end_of_stream = end_stream;
        }
        self.side(dir).end_seen = end_stream;
        let st = match dir {
            Dir::Request => self.filter.on_request_headers(end_stream),
            Dir::Response => self.filter.on_response_headers(end_stream),
        };
        match st {
            FilterHeadersStatus::Continue => self.forward_headers(dir),
            FilterHeadersStatus::StopAllIterationAndBuffer => {
                self.side(dir).headers = HeadersState::Stopped { limit: true }
            }
            FilterHeadersStatus::StopIteration => {
                self.side(dir).headers = HeadersState::StoppedSingle
            }
            FilterHeadersStatus::StopAllIterationAndWatermark => {
                self.side(dir).headers = HeadersState::Stopped { limit: false }
            }
        }
    }

    fn forward_headers(&mut self, dir: Dir) {
        self.forward_headers_more(dir, false);
    }

    /// `more_data`: body follows right away (released by a body callback).
    fn forward_headers_more(&mut self, dir: Dir, more_data: bool) {
        let h = {
            let mut d = self.data.borrow_mut();
            let s = d.side_mut(dir);
            s.headers_active = false;
            s.forwarded_headers = Some(s.headers.clone());
            let h = s.headers.clone();
            if dir == Dir::Response {
                d.info.response_code = h.get_str(":status").and_then(|s| s.parse().ok());
            }
            h
        };
        let side = self.side(dir);
        side.headers = HeadersState::Forwarded;
        side.content_length = h
            .get_str("content-length")
            .and_then(|v| v.trim().parse().ok());
        let has_pending = !side.pending.is_empty() || side.pending_end;
        let eos = side.end_seen && !has_pending && side.trailers.is_none() && !more_data;
        if eos {
            side.done = true;
        }
        let pending_trailers = !has_pending && side.trailers.is_some();
        self.out.push_back(Output::Headers(dir, h, eos));
        if has_pending {
            let side = self.side(dir);
            let p = std::mem::take(&mut side.pending);
            let end = side.pending_end;
            self.body_to_filter(dir, p, end);
            // Envoy `commonContinue`: trailers that arrived while the
            // headers were stopped follow the held data (`doTrailers` after
            // `doData`), even when the filter buffered that data.
            if !self.blocked(dir)
                && let Some(t) = self.side(dir).trailers.take()
            {
                self.trailers_to_filter(dir, t);
            }
        } else if pending_trailers && let Some(t) = self.side(dir).trailers.take() {
            self.trailers_to_filter(dir, t);
        }
    }

    fn data_in(&mut self, dir: Dir, chunk: Vec<u8>, end_stream: bool) {
        if self.blocked(dir) {
            return;
        }
        {
            let mut d = self.data.borrow_mut();
            match dir {
                Dir::Request => d.info.request_bytes += chunk.len() as u64,
                Dir::Response => d.info.response_bytes += chunk.len() as u64,
            }
        }
        let limit = self.buffer_limit;
        let side = self.side(dir);
        side.end_seen |= end_stream;
        match side.headers {
            HeadersState::NotYet => {}
            HeadersState::Stopped { limit: lim } => {
                side.pending.extend_from_slice(&chunk);
                side.pending_end = end_stream;
                if lim && side.pending.len() > limit {
                    self.overflow(dir);
                }
            }
            HeadersState::Forwarded | HeadersState::StoppedSingle => {
                self.body_to_filter(dir, chunk, end_stream)
            }
        }
    }

    /// Moves the buffered body where the filter's hostcalls see it between
    /// callbacks ([`DirData::held`]).
    fn lend(&mut self, dir: Dir) {
        let b = std::mem::take(&mut self.side(dir).buffer);
        self.data.borrow_mut().side_mut(dir).held = Some(b);
    }

    /// Takes the buffered body back (with the filter's edits) before the
    /// host uses it.
    fn reclaim(&mut self, dir: Dir) {
        let held = self.data.borrow_mut().side_mut(dir).held.take();
        if let Some(b) = held {
            self.side(dir).buffer = b;
        }
    }

    fn body_to_filter(&mut self, dir: Dir, chunk: Vec<u8>, end_stream: bool) {
        self.reclaim(dir);
        let limit = self.buffer_limit;
        let side = self.side(dir);
        // Envoy context.cc decodeData: while buffering, the new chunk is added
        // to the filter manager's buffer first (`addDecodedData`), which sends
        // the 413/500 itself when the limit is crossed, before the VM runs;
        // the VM then sees the whole buffer and body_size is its length.
        if side.buffering {
            side.buffer.extend_from_slice(&chunk);
            if side.buffer.len() > limit {
                self.overflow(dir);
                return;
            }
        } else {
            side.buffer = chunk;
        }
        let body = std::mem::take(&mut side.buffer);
        let len = body.len();
        {
            let mut d = self.data.borrow_mut();
            d.side_mut(dir).body = Some(body);
            d.end_of_stream = end_stream;
        }
        let st = match dir {
            Dir::Request => self.filter.on_request_body(len, end_stream),
            Dir::Response => self.filter.on_response_body(len, end_stream),
        };
        let (body, added) = {
            let mut d = self.data.borrow_mut();
            let s = d.side_mut(dir);
            let added = std::mem::take(&mut s.trailers_added);
            if added {
                s.trailers_active = false;
            }
            (
                s.body.take().unwrap_or_default(),
                added.then(|| s.trailers.clone()).flatten(),
            )
        };
        let side = self.side(dir);
        side.buffer = body;
        side.data_end = end_stream;
        // Trailers the filter added at end of stream follow the body: the
        // data goes on without end_stream, then the trailers end it, and
        // this filter's own trailers callback is not run (FilterManager
        // `decodeData`: `decodeTrailers` from the next filter).
        if added.is_some() {
            side.trailers = added;
        }
        match st {
            FilterDataStatus::Continue => {
                side.buffering = false;
                side.data_stopped = false;
                let b = std::mem::take(&mut side.buffer);
                if side.headers == HeadersState::StoppedSingle {
                    self.forward_headers_more(dir, true);
                }
                self.forward_data(dir, b, end_stream);
                self.forward_added_trailers(dir, end_stream);
            }
            // Watermark is treated as Buffer: the Rust SDK never returns it.
            FilterDataStatus::StopIterationAndBuffer
            | FilterDataStatus::StopIterationAndWatermark => {
                side.buffering = true;
                side.data_stopped = true;
                if side.buffer.len() > limit {
                    self.overflow(dir);
                } else {
                    self.lend(dir);
                }
            }
            // Envoy does not keep the chunk: the filter dropped it.
            FilterDataStatus::StopIterationNoBuffer => {
                side.buffering = false;
                side.data_stopped = true;
                side.buffer.clear();
            }
        }
    }

    fn forward_data(&mut self, dir: Dir, bytes: Vec<u8>, end_stream: bool) {
        let side = self.side(dir);
        side.forwarded_bytes += bytes.len() as u64;
        if let Some(cl) = side.content_length {
            let sent = side.forwarded_bytes;
            if sent > cl || (end_stream && sent != cl) {
                self.content_length_mismatch(dir, cl, sent);
                return;
            }
        }
        let side = self.side(dir);
        let eos = end_stream && side.trailers.is_none();
        if eos {
            side.done = true;
        }
        if !bytes.is_empty() || eos {
            self.out.push_back(Output::Data(dir, bytes, eos));
        }
    }

    /// A filter changed the body size after a `content-length` was sent on:
    /// Envoy's codec would then send a broken message (or hang the peer), so
    /// the shim fails loudly instead of papering over it.
    fn content_length_mismatch(&mut self, dir: Dir, cl: u64, sent: u64) {
        tracing::error!(
            target: "host_shim",
            ?dir,
            content_length = cl,
            body_bytes = sent,
            "filter changed the body size but content-length was already forwarded; \
             remove content-length in the headers callback when changing the body"
        );
        match dir {
            Dir::Request => {
                self.out.push_back(Output::ResetUpstream);
                self.req.done = true;
                self.send_local_reply(LocalReply {
                    status: 500,
                    body: b"content-length mismatch after body modification".to_vec(),
                    headers: Vec::new(),
                    details: "wasm_content_length_mismatch".into(),
                    grpc_status: None,
                });
            }
            Dir::Response => self.reset_stream(),
        }
    }

    fn trailers_in(&mut self, dir: Dir, trailers: HeaderMap) {
        if self.blocked(dir) {
            return;
        }
        let side = self.side(dir);
        side.end_seen = true;
        match side.headers {
            HeadersState::Forwarded | HeadersState::StoppedSingle => {
                self.trailers_to_filter(dir, trailers)
            }
            _ => side.trailers = Some(trailers),
        }
    }

    fn trailers_to_filter(&mut self, dir: Dir, trailers: HeaderMap) {
        self.reclaim(dir);
        // Envoy context.cc `getBuffer(HttpRequestBody)`: while the last body
        // callback buffered (`buffering_request_body_`), the body buffer is
        // the filter manager's whole buffered body (`modifyDecodingBuffer`),
        // readable and writable from the trailers callback; otherwise it is
        // the last chunk's pointer, already forwarded (nothing).
        let buffering = self.side(dir).buffering;
        let held = buffering.then(|| std::mem::take(&mut self.side(dir).buffer));
        {
            let mut d = self.data.borrow_mut();
            let s = d.side_mut(dir);
            s.trailers = Some(trailers);
            s.trailers_active = true;
            s.body = held;
        }
        let st = match dir {
            Dir::Request => self.filter.on_request_trailers(),
            Dir::Response => self.filter.on_response_trailers(),
        };
        let body = self.data.borrow_mut().side_mut(dir).body.take();
        if let Some(body) = body {
            self.side(dir).buffer = body;
        }
        match st {
            FilterTrailersStatus::Continue => self.forward_trailers(dir),
            FilterTrailersStatus::StopIteration => self.side(dir).trailers_stopped = true,
        }
    }

    fn forward_trailers(&mut self, dir: Dir) {
        self.reclaim(dir);
        if self.side(dir).headers == HeadersState::StoppedSingle {
            self.forward_headers_more(dir, true);
        }
        let t = {
            let mut d = self.data.borrow_mut();
            let s = d.side_mut(dir);
            s.trailers_active = false;
            s.trailers.clone().unwrap_or_default()
        };
        let side = self.side(dir);
        side.trailers_stopped = false;
        let buffered = std::mem::take(&mut side.buffer);
        side.buffering = false;
        side.data_stopped = false;
        if !buffered.is_empty() {
            // Through the content-length check: a filter that rewrote the
            // body at its trailers must have fixed the length too.
            self.forward_data(dir, buffered, false);
            if self.reset || (dir == Dir::Request && self.local_reply) {
                return;
            }
        }
        self.side(dir).done = true;
        self.out.push_back(Output::Trailers(dir, t));
    }

    /// Envoy `continueDecoding`/`continueEncoding`.
    fn resume(&mut self, dir: Dir) {
        if self.blocked(dir) {
            return;
        }
        self.reclaim(dir);
        let side = self.side(dir);
        match side.headers {
            HeadersState::Stopped { .. } => self.forward_headers(dir),
            HeadersState::StoppedSingle => {
                let more = side.data_stopped;
                self.forward_headers_more(dir, more);
                let side = self.side(dir);
                if more {
                    side.buffering = false;
                    side.data_stopped = false;
                    let b = std::mem::take(&mut side.buffer);
                    let end = side.data_end;
                    self.forward_data(dir, b, end);
                    self.forward_added_trailers(dir, end);
                }
            }
            HeadersState::NotYet => {}
            HeadersState::Forwarded => {
                if side.trailers_stopped {
                    self.forward_trailers(dir);
                } else if side.data_stopped {
                    side.buffering = false;
                    side.data_stopped = false;
                    let b = std::mem::take(&mut side.buffer);
                    let end = side.data_end;
                    self.forward_data(dir, b, end);
                    self.forward_added_trailers(dir, end);
                }
            }
        }
    }

    /// After the last data went on without end_stream because the filter
    /// added trailers at the end of the stream: the trailers end it.
    fn forward_added_trailers(&mut self, dir: Dir, end: bool) {
        if end
            && self.side(dir).trailers.is_some()
            && !self.reset
            && !(dir == Dir::Request && self.local_reply)
        {
            self.forward_trailers(dir);
        }
    }

    /// Buffer limit crossed. Envoy: a decoder filter's buffer over the limit
    /// gives a 413 local reply (filter_manager.cc, "request_payload_too_large");
    /// an encoder's gives a 500 ("response_payload_too_large") if nothing was
    /// sent downstream yet, else a reset.
    fn overflow(&mut self, dir: Dir) {
        tracing::warn!(target: "host_shim", ?dir, limit = self.buffer_limit, "buffer limit exceeded");
        match dir {
            Dir::Request => self.send_local_reply(LocalReply {
                status: 413,
                body: b"Payload Too Large".to_vec(),
                headers: Vec::new(),
                details: "request_payload_too_large".into(),
                grpc_status: None,
            }),
            Dir::Response => self.send_local_reply(LocalReply {
                status: 500,
                body: b"Internal Server Error".to_vec(),
                headers: Vec::new(),
                details: "response_payload_too_large".into(),
                grpc_status: None,
            }),
        }
    }

    /// Resets the stream in both directions (e.g. the client went away).
    pub fn reset(&mut self) {
        self.reset_stream();
    }

    fn reset_stream(&mut self) {
        if !self.reset {
            self.reset = true;
            self.out.push_back(Output::ResetUpstream);
            self.out.push_back(Output::ResetDownstream);
        }
    }

    /// Envoy `FilterManager::sendLocalReply`: before any response headers
    /// exist the reply runs through the encoder filters, this one included
    /// (`sendLocalReplyViaFilterChain`); once the upstream's headers are in
    /// but nothing went downstream it is sent directly; after that the
    /// stream is reset.
    fn send_local_reply(&mut self, r: LocalReply) {
        if self.reset {
            return;
        }
        if self.resp.headers == HeadersState::Forwarded || self.local_reply {
            self.reset_stream();
            return;
        }
        // Envoy `Utility::prepareLocalReply` (source/common/http/utility.cc):
        // `:status`, then the module's headers (`modify_headers`), then
        // content-length from the body and `text/plain` only when the module
        // set no content-type; an empty body drops both.
        let mut h = HeaderMap::new();
        h.add(":status", r.status.to_string().as_bytes());
        for (k, v) in &r.headers {
            h.add(k, v);
        }
        h.remove("content-length");
        if r.body.is_empty() {
            h.remove("content-type");
        } else {
            h.add("content-length", r.body.len().to_string().as_bytes());
            if h.get("content-type").is_none() {
                h.add("content-type", b"text/plain");
            }
        }
        {
            let mut d = self.data.borrow_mut();
            d.info.local_reply = true;
            d.info.response_code = Some(r.status);
            d.info.response_code_details = Some(r.details.clone());
        }
        let direct = self.resp.headers != HeadersState::NotYet;
        self.local_reply = true;
        if !self.req.done {
            self.out.push_back(Output::ResetUpstream);
        }
        if direct {
            let eos = r.body.is_empty();
            self.resp.done = eos;
            self.resp.headers = HeadersState::Forwarded;
            self.out.push_back(Output::Headers(Dir::Response, h, eos));
            if !eos {
                self.resp.done = true;
                self.out
                    .push_back(Output::Data(Dir::Response, r.body, true));
            }
            return;
        }
        // Through this filter's encode path.
        self.resp = Side::new();
        let eos = r.body.is_empty();
        self.headers_in(Dir::Response, h, eos);
        if !eos && !self.reset {
            self.data_in(Dir::Response, r.body, true);
        }
    }
}

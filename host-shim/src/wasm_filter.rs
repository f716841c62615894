//! The proxy-wasm VM as an [`HttpFilter`]: one HTTP context per stream.
//!
//! Status conversion and failure handling follow cpp-host `context.cc`:
//! `convertVmCallResultToFilter*Status` (a local reply or an out-of-range
//! value stops iteration; `StopIteration` from a headers callback becomes
//! `StopAllIterationAndWatermark`, Envoy's default
//! `allow_on_headers_stop_iteration = false`), and `CHECK_FAIL_HTTP` (a failed
//! VM continues the stream under fail-open, else fails it once with a 503).

use std::rc::Rc;

use crate::FailurePolicy;
use crate::stream::{
    FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, HttpFilter, SharedStream,
    StreamAction,
};
use crate::vm::{CallResult, WasmVm};

pub struct WasmFilter {
    vm: Rc<WasmVm>,
    ctx: u32,
    stream: SharedStream,
    created: bool,
    stream_failed: bool,
}

impl WasmFilter {
    pub fn new(vm: Rc<WasmVm>, stream: SharedStream) -> Self {
        let ctx = vm.new_http_context(stream.clone());
        Self {
            vm,
            ctx,
            stream,
            created: false,
            stream_failed: false,
        }
    }

    pub fn context_id(&self) -> u32 {
        self.ctx
    }

    fn fail_open(&self) -> bool {
        self.vm.plugin().config().failure_policy == FailurePolicy::FailOpen
    }

    /// cpp-host CHECK_FAIL: `Some(open)` to return when the VM is dead.
    fn check_fail(&mut self) -> Option<bool> {
        if !self.vm.is_failed() {
            return None;
        }
        if self.fail_open() {
            return Some(true);
        }
        if !self.stream_failed {
            self.stream_failed = true;
            self.stream
                .borrow_mut()
                .push_action(StreamAction::FailStream);
        }
        Some(false)
    }

    /// Envoy `onCreate`, lazily on the first callback.
    fn ensure_created(&mut self) {
        if !self.created {
            self.created = true;
            let root = i64::from(self.vm.root_context_id());
            self.vm.call(
                "proxy_on_context_create",
                &[i64::from(self.ctx), root],
                self.ctx,
            );
        }
    }

    fn call(&mut self, name: &str, args: &[i64]) -> CallResult {
        let mut full = vec![i64::from(self.ctx)];
        full.extend_from_slice(args);
        self.vm.call(name, &full, self.ctx)
    }

    fn headers(&mut self, name: &str, n: usize, eos: bool) -> FilterHeadersStatus {
        if let Some(open) = self.check_fail() {
            return if open {
                FilterHeadersStatus::Continue
            } else {
                FilterHeadersStatus::StopAllIterationAndWatermark
            };
        }
        self.ensure_created();
        let r = self.call(name, &[n as i64, i64::from(eos)]);
        if let Some(open) = self.check_fail() {
            return if open {
                FilterHeadersStatus::Continue
            } else {
                FilterHeadersStatus::StopAllIterationAndWatermark
            };
        }
        match r.ret.unwrap_or(0) {
            _ if r.stop_next => FilterHeadersStatus::StopAllIterationAndWatermark,
            0 => FilterHeadersStatus::Continue,
            1 if self.vm.plugin().config().allow_on_headers_stop_iteration => {
                FilterHeadersStatus::StopIteration
            }
            2 => FilterHeadersStatus::StopAllIterationAndBuffer,
            _ => FilterHeadersStatus::StopAllIterationAndWatermark,
        }
    }

    fn body(&mut self, name: &str, len: usize, eos: bool) -> FilterDataStatus {
        if let Some(open) = self.check_fail() {
            return if open {
                FilterDataStatus::Continue
            } else {
                FilterDataStatus::StopIterationNoBuffer
            };
        }
        self.ensure_created();
        let r = self.call(name, &[len as i64, i64::from(eos)]);
        if let Some(open) = self.check_fail() {
            return if open {
                FilterDataStatus::Continue
            } else {
                FilterDataStatus::StopIterationNoBuffer
            };
        }
        match r.ret.unwrap_or(0) {
            _ if r.stop_next => FilterDataStatus::StopIterationNoBuffer,
            0 => FilterDataStatus::Continue,
            1 => FilterDataStatus::StopIterationAndBuffer,
            2 => FilterDataStatus::StopIterationAndWatermark,
            _ => FilterDataStatus::StopIterationNoBuffer,
        }
    }

    fn trailers(&mut self, name: &str, n: usize) -> FilterTrailersStatus {
        if let Some(open) = self.check_fail() {
            return if open {
                FilterTrailersStatus::Continue
            } else {
                FilterTrailersStatus::StopIteration
            };
        }
        self.ensure_created();
        let r = self.call(name, &[n as i64]);
        if let Some(open) = self.check_fail() {
            return if open {
                FilterTrailersStatus::Continue
            } else {
                FilterTrailersStatus::StopIteration
            };
        }
        if r.stop_next || r.ret.unwrap_or(0) != 0 {
            FilterTrailersStatus::StopIteration
        } else {
            FilterTrailersStatus::Continue
        }
    }

    /// Envoy encode*: skipped once the failure 503 was sent
    /// (`failure_local_reply_sent_`).
    fn skip_encode(&self) -> bool {
        self.stream_failed
    }
}

impl HttpFilter for WasmFilter {
    fn on_request_headers(&mut self, end_stream: bool) -> FilterHeadersStatus {
        let n = self.stream.borrow().request.headers.len();
        self.headers("proxy_on_request_headers", n, end_stream)
    }

    fn on_request_body(&mut self, body_len: usize, end_stream: bool) -> FilterDataStatus {
        self.body("proxy_on_request_body", body_len, end_stream)
    }

    fn on_request_trailers(&mut self) -> FilterTrailersStatus {
        let n = self
            .stream
            .borrow()
            .request
            .trailers
            .as_ref()
            .map(|t| t.len())
            .unwrap_or(0);
        self.trailers("proxy_on_request_trailers", n)
    }

    fn on_response_headers(&mut self, end_stream: bool) -> FilterHeadersStatus {
        if self.skip_encode() {
            return FilterHeadersStatus::Continue;
        }
        let n = self.stream.borrow().response.headers.len();
        self.headers("proxy_on_response_headers", n, end_stream)
    }

    fn on_response_body(&mut self, body_len: usize, end_stream: bool) -> FilterDataStatus {
        if self.skip_encode() {
            return FilterDataStatus::Continue;
        }
        self.body("proxy_on_response_body", body_len, end_stream)
    }

    fn on_response_trailers(&mut self) -> FilterTrailersStatus {
        if self.skip_encode() {
            return FilterTrailersStatus::Continue;
        }
        let n = self
            .stream
            .borrow()
            .response
            .trailers
            .as_ref()
            .map(|t| t.len())
            .unwrap_or(0);
        self.trailers("proxy_on_response_trailers", n)
    }

    /// Envoy `Context::log`: runs `onCreate` first if the stream never
    /// reached the filter (e.g. a local reply before headers).
    fn on_log(&mut self) {
        if self.vm.is_failed() {
            return;
        }
        self.ensure_created();
        self.call("proxy_on_log", &[]);
    }

    /// Envoy `onDestroy`: `on_done` then `on_delete`, if the context exists.
    fn on_destroy(&mut self) {
        if self.created && !self.vm.is_failed() {
            self.call("proxy_on_done", &[]);
            self.call("proxy_on_delete", &[]);
        }
        self.vm.remove_context(self.ctx);
    }
}

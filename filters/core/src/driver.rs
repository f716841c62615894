//! One stream driver: the phase rules of an HTTP stream, written once.
//!
//! Every build of Portcullis (the proxy-wasm filter, the WebAssembly
//! component, the native test runner) receives the same callbacks in the same
//! order, Envoy's filter phases: request headers, request body chunks,
//! request trailers, response headers, response body chunks, response
//! trailers, end of stream. Which phase completes a body, what a trailer
//! means, what follows a local reply and how a host's failure fails the
//! stream closed are decided here, so the adapters only translate: a
//! [`Output`] into hostcalls (proxy-wasm) or a WIT `decision` (component).
//! When the rules lived in each adapter they drifted, and a request body
//! followed by trailers reached the upstream undecided (docs/threat-model.md,
//! "Trailers").
//!
//! The rules, each from Envoy's `source/extensions/common/wasm/context.cc`:
//! * a request the engine must read is held at its headers
//!   (`StopIteration`) under `requestHeaders: hold`, or under `forward` (the
//!   default, for Envoy's `allow_on_headers_stop_iteration: false`) its
//!   headers go on at once with what they alone decide, and an answer that
//!   comes before the body is decided is refused; either way its body chunks
//!   are buffered
//!   (`StopIterationAndBuffer`), and it is decided when the body is complete:
//!   at the chunk with `end_of_stream`, or at the **trailers**, where
//!   `getBuffer(HttpRequestBody)` returns the whole buffered body because the
//!   last body callback buffered (`buffering_request_body_`);
//! * a JSON answer is buffered the same way and inspected at its end, at the
//!   last chunk or at the trailers; an event stream is inspected event by
//!   event and forwarded as it goes, so at its trailers nothing is held (the
//!   filter cannot add bytes then: whatever the parser still holds is never
//!   forwarded, and the open requests' records say why);
//! * once the filter asked for a local reply, every later callback of the
//!   stream passes untouched: the reply itself comes back through the
//!   response callbacks (Envoy runs it through the encoder chain);
//! * a host fault (a hostcall that failed) becomes a 500 JSON-RPC error and
//!   an audit record ([`StreamDriver::fail`]), never a request forwarded
//!   uninspected;
//! * the engine may ask for an outcall ([`Step::Call`], [`crate::outcall`])
//!   before it decides a request: the request stays held (its body
//!   buffered) until [`StreamDriver::call_done`] gives the answer back,
//!   which decides it, or asks for another call. An answer for a call the
//!   driver is not waiting on fails the stream closed.

use crate::engine::{
    Env, Exchange, HeaderEdits, LocalReply, RequestBodyAction, RequestHead, RequestHeadersAction,
    ResponseBodyAction,
};
pub use crate::engine::{is_owned_field, owned_field_names};
pub use crate::outcall::{CallResult, Outcall, OutcallKind};
use crate::{Engine, audit::AuditRecord};
use std::sync::Arc;

/// What the host does after a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Forward what is held: the headers, the buffered body, the trailers.
    Continue,
    /// Hold: headers stay held (and editable), body chunks are buffered; the
    /// next body callback sees everything held so far (Envoy's
    /// `StopIteration` for headers, `StopIterationAndBuffer` for data).
    Pause,
    /// Answer the client with this reply; forward nothing more of the
    /// request. Envoy: `send_local_response`, then stop.
    Reply(LocalReply),
    /// Keep holding the request (as [`Step::Pause`]) and make this call;
    /// give its answer to [`StreamDriver::call_done`]. A host that cannot
    /// make it calls [`StreamDriver::call_done`] with
    /// [`CallResult::Failed`] (the stream fails closed).
    Call(Outcall),
}

/// The answer to one callback. The adapter applies, in order: header edits
/// to the headers of this callback's direction (the request headers while
/// they are held; the response headers in the response-headers phase),
/// trailer edits (in a trailers phase), the body replacement, then `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub step: Step,
    pub headers: HeaderEdits,
    pub trailers: HeaderEdits,
    /// Replaces the body the host holds now (the chunk just given, or all
    /// that was buffered) with these bytes.
    pub body: Option<Vec<u8>>,
}

impl Output {
    fn step(step: Step) -> Output {
        Output {
            step,
            headers: HeaderEdits::default(),
            trailers: HeaderEdits::default(),
            body: None,
        }
    }

    fn proceed() -> Output {
        Output::step(Step::Continue)
    }

    fn hold() -> Output {
        Output::step(Step::Pause)
    }

    fn edits(step: Step, headers: HeaderEdits) -> Output {
        Output {
            headers,
            ..Output::step(step)
        }
    }
}

/// A hostcall failed; the text names it (`proxy_get_buffer_bytes returned
/// status 2`). Never holds payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFault(pub String);

impl std::fmt::Display for HostFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The body the host holds at a callback: read only when the driver needs
/// it (reading is a copy out of the proxy).
pub trait HeldBody {
    /// Its length in bytes (proxy-wasm's `body_size`).
    fn len(&self) -> usize;
    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its bytes.
    fn bytes(&mut self) -> Result<Vec<u8>, HostFault>;
}

impl HeldBody for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, HostFault> {
        Ok(self.to_vec())
    }
}

/// One HTTP stream of the engine, driven callback by callback.
#[derive(Debug)]
pub struct StreamDriver {
    exchange: Exchange,
    /// A local reply was asked for: later callbacks pass everything.
    replied: bool,
    /// The request was decided (forwarded, refused, or passed ungoverned).
    request_decided: bool,
    /// The response body is being buffered for inspection (a JSON answer).
    response_buffered: bool,
    /// The request headers went on before the body was decided
    /// (`requestHeaders: forward`): later header edits cannot reach them.
    headers_gone: bool,
    /// The engine's id of the outcall the stream waits on.
    awaiting: Option<u32>,
}

impl StreamDriver {
    pub fn new(engine: Arc<Engine>) -> StreamDriver {
        StreamDriver {
            exchange: Exchange::new(engine),
            replied: false,
            request_decided: false,
            response_buffered: false,
            headers_gone: false,
            awaiting: None,
        }
    }

    /// The id of the outcall this stream waits on, if any.
    pub fn awaiting_call(&self) -> Option<u32> {
        self.awaiting
    }

    /// The id this stream's records carry (empty until the request headers).
    pub fn request_id(&self) -> &str {
        self.exchange.request_id()
    }

    /// The exchange, for tests and tools that look at its state.
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// Audit records completed since the last call.
    pub fn take_audit(&mut self) -> Vec<AuditRecord> {
        self.exchange.take_audit()
    }

    /// Whether a local reply was asked for on this stream.
    pub fn replied(&self) -> bool {
        self.replied
    }

    fn reply(&mut self, reply: LocalReply) -> Output {
        self.replied = true;
        self.request_decided = true;
        Output::step(Step::Reply(reply))
    }

    /// Request headers. `head` has the pseudo-headers split out.
    pub fn request_headers(
        &mut self,
        env: &mut dyn Env,
        head: RequestHead,
        end_of_stream: bool,
    ) -> Output {
        match self.exchange.on_request_headers(env, head) {
            RequestHeadersAction::Continue(edits) => {
                self.request_decided = true;
                Output::edits(Step::Continue, edits)
            }
            RequestHeadersAction::ReadBody(edits) => {
                if end_of_stream {
                    // No body follows: decide on the empty one now, with the
                    // headers' own edits first.
                    let mut out = self.decide_request(env, &mut (&[] as &[u8]));
                    let mut all = edits;
                    all.remove.append(&mut out.headers.remove);
                    all.set.append(&mut out.headers.set);
                    out.headers = all;
                    return out;
                }
                if self.exchange.forwards_headers_early() {
                    return match self.exchange.forward_headers(env) {
                        Ok(mut more) => {
                            self.headers_gone = true;
                            let mut all = edits;
                            all.remove.append(&mut more.remove);
                            all.set.append(&mut more.set);
                            Output::edits(Step::Continue, all)
                        }
                        Err(reply) => self.reply(reply),
                    };
                }
                Output::edits(Step::Pause, edits)
            }
            RequestHeadersAction::Reply(reply) => self.reply(reply),
        }
    }

    /// A request body chunk; `body` is everything held (the chunk, or all
    /// buffered since the headers when the driver paused).
    pub fn request_body(
        &mut self,
        env: &mut dyn Env,
        body: &mut dyn HeldBody,
        end_of_stream: bool,
    ) -> Output {
        if self.replied || self.request_decided {
            return Output::proceed();
        }
        if let Some(reply) = self.exchange.on_request_body_size(body.len() as u64) {
            return self.reply(reply);
        }
        if !end_of_stream {
            return Output::hold();
        }
        self.decide_request(env, body)
    }

    /// Request trailers: the body is complete, and held whole (every body
    /// callback paused). `names` are the trailers' field names.
    pub fn request_trailers(
        &mut self,
        env: &mut dyn Env,
        body: &mut dyn HeldBody,
        names: &[String],
    ) -> Output {
        let mut out = if self.replied || self.request_decided {
            Output::proceed()
        } else if let Some(reply) = self.exchange.on_request_body_size(body.len() as u64) {
            self.reply(reply)
        } else {
            self.decide_request(env, body)
        };
        // The filter's own fields are the filter's, in trailers too: an
        // upstream that merges trailers into headers must not see a
        // client-chosen `x-mcp-subject`.
        out.trailers.remove = owned_field_names(names);
        out
    }

    fn decide_request(&mut self, env: &mut dyn Env, body: &mut dyn HeldBody) -> Output {
        let bytes = match body.bytes() {
            Ok(b) => b,
            Err(fault) => return self.fail(env, &fault.0).unwrap_or_else(Output::proceed),
        };
        self.request_decided = true;
        let mut out = self.decided_request(env, &bytes);
        if self.headers_gone {
            // They went on with what could be decided from them; the rest of
            // the decision's header edits have nothing left to edit.
            out.headers = HeaderEdits::default();
        }
        out
    }

    fn decided_request(&mut self, env: &mut dyn Env, bytes: &[u8]) -> Output {
        let action = self.exchange.on_request_body(env, bytes, true);
        self.body_action(env, action)
    }

    fn body_action(&mut self, env: &mut dyn Env, action: RequestBodyAction) -> Output {
        match action {
            RequestBodyAction::Wait => {
                // The engine asked for more of a body that is complete: a
                // broken invariant, so refuse rather than forward.
                self.fail(env, "the engine waited on a complete request body")
                    .unwrap_or_else(Output::proceed)
            }
            RequestBodyAction::Forward(edits) => Output::edits(Step::Continue, edits),
            RequestBodyAction::Rewrite(edits, rewritten) => Output {
                body: Some(rewritten),
                ..Output::edits(Step::Continue, edits)
            },
            RequestBodyAction::Reply(reply) => self.reply(reply),
            RequestBodyAction::Call(call) => {
                self.awaiting = Some(call.id);
                Output::step(Step::Call(call))
            }
        }
    }

    /// The answer to the outcall the stream waits on (`id` is the
    /// [`Outcall::id`]). Returns what to do with the held request: forward
    /// it, answer it, or make another call.
    pub fn call_done(&mut self, env: &mut dyn Env, id: u32, result: CallResult) -> Output {
        if self.replied {
            return Output::proceed();
        }
        if self.awaiting != Some(id) {
            return self
                .fail(env, "an outcall answer for a call this stream did not make")
                .unwrap_or_else(Output::proceed);
        }
        self.awaiting = None;
        let action = self.exchange.on_call_done(env, id, result);
        let mut out = self.body_action(env, action);
        if self.headers_gone {
            out.headers = HeaderEdits::default();
        }
        out
    }

    /// Response headers (`:status` split out as `status`).
    pub fn response_headers(
        &mut self,
        env: &mut dyn Env,
        status: u16,
        headers: &[(String, String)],
        end_of_stream: bool,
    ) -> Output {
        let undecided = !self.request_decided || self.awaiting.is_some();
        let edits = if self.headers_gone && undecided && !self.replied {
            // The upstream answered a request the filter has not decided:
            // its body is still held here.
            self.exchange.refuse_early_answer(env, headers)
        } else {
            self.exchange.on_response_headers(env, status, headers)
        };
        self.response_buffered = self.exchange.buffers_response();
        if end_of_stream {
            self.exchange.on_stream_end(env);
        }
        Output::edits(Step::Continue, edits)
    }

    /// A response body chunk; `body` is what the host holds (everything
    /// buffered while the driver paused, else the latest chunk).
    pub fn response_body(
        &mut self,
        env: &mut dyn Env,
        body: &mut dyn HeldBody,
        end_of_stream: bool,
    ) -> Output {
        let bytes = match body.bytes() {
            Ok(b) => b,
            Err(fault) => return self.fail(env, &fault.0).unwrap_or_else(Output::proceed),
        };
        self.response_action(env, &bytes, end_of_stream)
    }

    /// Response trailers: the body is complete. A buffered answer is held
    /// whole and inspected now; a stream was forwarded as it went.
    pub fn response_trailers(
        &mut self,
        env: &mut dyn Env,
        body: &mut dyn HeldBody,
        names: &[String],
    ) -> Output {
        let bytes = if self.response_buffered {
            match body.bytes() {
                Ok(b) => b,
                Err(fault) => return self.fail(env, &fault.0).unwrap_or_else(Output::proceed),
            }
        } else {
            Vec::new()
        };
        let mut out = self.response_action(env, &bytes, true);
        if !self.response_buffered {
            // Nothing is held to replace: bytes the engine would add now
            // (errors for a stream cut mid-event) cannot be sent; what it
            // refused is never forwarded, and the records say why.
            out.body = None;
        }
        out.step = Step::Continue;
        out.trailers.remove = owned_field_names(names);
        out
    }

    fn response_action(&mut self, env: &mut dyn Env, bytes: &[u8], end: bool) -> Output {
        match self.exchange.on_response_body(env, bytes, end) {
            ResponseBodyAction::Pass => Output::proceed(),
            ResponseBodyAction::Buffer => Output::hold(),
            ResponseBodyAction::Replace(b) => Output {
                body: Some(b),
                ..Output::proceed()
            },
        }
    }

    /// The stream ended or was reset (Envoy's access-log phase): every
    /// record still open is completed.
    pub fn end(&mut self, env: &mut dyn Env) {
        self.exchange.on_stream_end(env);
    }

    /// The adapter could not carry out an output (a hostcall failed): the
    /// stream fails closed. Returns the reply to send, unless one was sent
    /// already (then nothing more can be), and records why either way.
    pub fn fail(&mut self, env: &mut dyn Env, what: &str) -> Option<Output> {
        self.awaiting = None;
        let reply = self.exchange.internal_error(env, what);
        if self.replied {
            return None;
        }
        Some(self.reply(reply))
    }
}

//! One HTTP stream: proxy-wasm's callbacks (`on_http_request_body` and the
//! rest, in the wasm32-only `Http` context below), translated into
//! [`portcullis_core::driver::StreamDriver`] calls and its outputs back into
//! hostcalls. The phase rules (when a body is complete, what trailers mean,
//! what follows a local reply) are the driver's, shared with every other
//! build; this file only translates.
//!
//! Everything here is host-agnostic over [`Host`], so the translation itself
//! is unit-tested with a mock. Any hostcall failure fails the stream closed:
//! a 500 JSON-RPC error and an audit record, never a request forwarded
//! uninspected.

use crate::host::{Body, EnvOf, Headers, Host, HostError, Level};
use portcullis_core::Engine;
use portcullis_core::driver::{self, HeldBody, HostFault, Output, StreamDriver};
use portcullis_core::engine::{HeaderEdits, LocalReply, RequestHead};
use portcullis_core::outcall::{CallResult, Outcall};
use std::sync::Arc;

/// The property the audit records are written to (`wasm.portcullis.audit`
/// in Envoy's filter state), one JSON line per record.
pub const AUDIT_PROPERTY: &str = "portcullis.audit";

/// What a callback returns to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    Pause,
}

pub struct Stream {
    driver: StreamDriver,
    audit_lines: String,
    /// The outcall in flight: the host's token, the engine's id, and the
    /// size of the request body held meanwhile.
    call: Option<PendingCall>,
}

#[derive(Debug, Clone, Copy)]
struct PendingCall {
    token: u32,
    id: u32,
    body_size: usize,
}

impl Stream {
    pub fn new(engine: Arc<Engine>) -> Stream {
        Stream {
            driver: StreamDriver::new(engine),
            audit_lines: String::new(),
            call: None,
        }
    }

    /// The id this stream's records carry (empty until the request headers).
    pub fn request_id(&self) -> &str {
        self.driver.request_id()
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Step {
        let out = host.headers(Headers::Request).map(|pairs| {
            let mut head = RequestHead::default();
            for (name, value) in pairs {
                match name.as_str() {
                    ":method" => head.method = value,
                    ":path" => head.path = value,
                    ":authority" => head.authority = value,
                    _ if name.starts_with(':') => {}
                    _ => head.headers.push((name, value)),
                }
            }
            self.driver
                .request_headers(&mut EnvOf(host), head, end_of_stream)
        });
        self.finish(host, Headers::Request, Body::Request, 0, out)
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let out = if end_of_stream {
            // The bytes are read only when the body is complete: before that
            // the driver needs only its size (the limit).
            host.body(Body::Request, body_size).map(|bytes| {
                self.driver
                    .request_body(&mut EnvOf(host), &mut bytes.as_slice(), true)
            })
        } else {
            Ok(self
                .driver
                .request_body(&mut EnvOf(host), &mut Sized(body_size), false))
        };
        self.finish(host, Headers::Request, Body::Request, body_size, out)
    }

    pub fn on_request_trailers(&mut self, host: &mut dyn Host, body_size: usize) -> Step {
        let out = host.headers(Headers::RequestTrailers).and_then(|pairs| {
            let names: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
            let bytes = host.body(Body::Request, body_size)?;
            Ok(self
                .driver
                .request_trailers(&mut EnvOf(host), &mut bytes.as_slice(), &names))
        });
        self.finish(host, Headers::Request, Body::Request, body_size, out)
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Step {
        let out = host.headers(Headers::Response).map(|pairs| {
            let status = pairs
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok())
                .unwrap_or(0);
            let headers: Vec<(String, String)> = pairs
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect();
            self.driver
                .response_headers(&mut EnvOf(host), status, &headers, end_of_stream)
        });
        self.finish(host, Headers::Response, Body::Response, 0, out)
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let out = host.body(Body::Response, body_size).map(|bytes| {
            self.driver
                .response_body(&mut EnvOf(host), &mut bytes.as_slice(), end_of_stream)
        });
        self.finish(host, Headers::Response, Body::Response, body_size, out)
    }

    pub fn on_response_trailers(&mut self, host: &mut dyn Host, body_size: usize) -> Step {
        let out = host.headers(Headers::ResponseTrailers).and_then(|pairs| {
            let names: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
            let bytes = host.body(Body::Response, body_size)?;
            Ok(self
                .driver
                .response_trailers(&mut EnvOf(host), &mut bytes.as_slice(), &names))
        });
        self.finish(host, Headers::Response, Body::Response, body_size, out)
    }

    /// The answer to an outcall (`on_http_call_response`,
    /// `on_grpc_call_response`). `true` when it was this stream's.
    pub fn on_call_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        result: CallResult,
    ) -> bool {
        let Some(pending) = self.call.filter(|p| p.token == token) else {
            return false;
        };
        self.call = None;
        let out = self.driver.call_done(&mut EnvOf(host), pending.id, result);
        let step = self.finish(
            host,
            Headers::Request,
            Body::Request,
            pending.body_size,
            Ok(out),
        );
        // A request held for the call goes on now; a reply was sent, and
        // another call keeps it held.
        if step == Step::Continue
            && !self.driver.replied()
            && let Err(e) = host.resume_request()
        {
            self.fault(host, &e.to_string());
        }
        true
    }

    /// The stream is over (Envoy's access-log phase): close open records.
    pub fn on_log(&mut self, host: &mut dyn Host) {
        self.driver.end(&mut EnvOf(host));
        self.flush_audit(host);
    }

    /// Carries out the driver's output for one callback: edits, body, then
    /// the step. A hostcall that fails on the way fails the stream closed.
    fn finish(
        &mut self,
        host: &mut dyn Host,
        headers: Headers,
        body: Body,
        body_size: usize,
        out: Result<Output, HostError>,
    ) -> Step {
        let result = out.and_then(|out| self.apply(host, headers, body, body_size, out));
        let step = match result {
            Ok(step) => step,
            Err(err) => self.fault(host, &err.to_string()),
        };
        self.flush_audit(host);
        step
    }

    fn apply(
        &mut self,
        host: &mut dyn Host,
        headers: Headers,
        body: Body,
        body_size: usize,
        out: Output,
    ) -> Result<Step, HostError> {
        edit(host, headers, &out.headers)?;
        if !out.trailers.remove.is_empty() || !out.trailers.set.is_empty() {
            edit(host, headers.trailers(), &out.trailers)?;
        }
        if let Some(bytes) = &out.body {
            host.replace_body(body, body_size, bytes)?;
        }
        Ok(match out.step {
            driver::Step::Continue => Step::Continue,
            driver::Step::Pause => Step::Pause,
            driver::Step::Reply(reply) => {
                self.send(host, &reply)?;
                Step::Pause
            }
            driver::Step::Call(call) => return self.dispatch(host, headers, body, body_size, call),
        })
    }

    /// Makes the engine's outcall while the request stays held. A host
    /// that cannot make it answers it as failed: the stream fails closed.
    fn dispatch(
        &mut self,
        host: &mut dyn Host,
        headers: Headers,
        body: Body,
        body_size: usize,
        call: Outcall,
    ) -> Result<Step, HostError> {
        match host.dispatch_call(&call) {
            Ok(token) => {
                self.call = Some(PendingCall {
                    token,
                    id: call.id,
                    body_size,
                });
                Ok(Step::Pause)
            }
            Err(e) => {
                let out = self.driver.call_done(
                    &mut EnvOf(host),
                    call.id,
                    CallResult::Failed(format!("the host could not make it: {e}")),
                );
                self.apply(host, headers, body, body_size, out)
            }
        }
    }

    fn send(&mut self, host: &mut dyn Host, reply: &LocalReply) -> Result<(), HostError> {
        host.send_local_reply(reply)
    }

    /// A hostcall failed: log it, and fail the stream closed with the
    /// driver's reply (unless one was sent already).
    fn fault(&mut self, host: &mut dyn Host, what: &str) -> Step {
        host.log(
            Level::Error,
            &format!("portcullis: {what}; failing the request closed"),
        );
        if let Some(Output {
            step: driver::Step::Reply(reply),
            ..
        }) = self.driver.fail(&mut EnvOf(host), what)
            && let Err(e) = host.send_local_reply(&reply)
        {
            host.log(
                Level::Critical,
                &format!("portcullis: cannot send the fail-closed reply: {e}"),
            );
        }
        self.flush_audit(host);
        Step::Pause
    }

    fn flush_audit(&mut self, host: &mut dyn Host) {
        let records = self.driver.take_audit();
        if records.is_empty() {
            return;
        }
        for record in records {
            let line = record.to_json_line();
            host.log(Level::Info, &line);
            self.audit_lines.push_str(&line);
            self.audit_lines.push('\n');
        }
        if let Err(e) = host.set_property(AUDIT_PROPERTY, self.audit_lines.as_bytes()) {
            host.log(
                Level::Warn,
                &format!("portcullis: cannot write audit filter state: {e}"),
            );
        }
    }
}

/// proxy-wasm's HTTP context: each callback one call into [`Stream`], which
/// hands the stream to the driver. Only built for wasm32, where the ABI is.
#[cfg(target_arch = "wasm32")]
mod http {
    use super::{Step, Stream};
    use crate::abi::AbiHost;
    use crate::host::WHOLE_BUFFER;
    use portcullis_core::Engine;
    use proxy_wasm::traits::{Context, HttpContext};
    use proxy_wasm::types::Action;
    use std::cell::RefCell;
    use std::sync::Arc;

    thread_local! {
        /// The request and bundle of the callback running now, for the
        /// panic hook's record.
        pub static CURRENT: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    }

    pub struct Http {
        stream: Stream,
        version: String,
    }

    impl Http {
        pub fn new(engine: Arc<Engine>, version: String) -> Http {
            Http {
                stream: Stream::new(engine),
                version,
            }
        }

        fn enter(&self) {
            let id = self.stream.request_id().to_owned();
            let version = self.version.clone();
            CURRENT.with(|c| *c.borrow_mut() = (id, version));
        }
    }

    fn action(step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Pause => Action::Pause,
        }
    }

    impl Context for Http {
        fn on_http_call_response(
            &mut self,
            token_id: u32,
            num_headers: usize,
            body_size: usize,
            _num_trailers: usize,
        ) {
            let result = AbiHost.http_call_result(num_headers, body_size);
            self.call_response(token_id, result);
        }

        fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
            let result = AbiHost.grpc_call_result(status_code, response_size);
            self.call_response(token_id, result);
        }
    }

    impl HttpContext for Http {
        fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
            self.enter();
            action(self.stream.on_request_headers(&mut AbiHost, end_of_stream))
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            self.enter();
            action(
                self.stream
                    .on_request_body(&mut AbiHost, body_size, end_of_stream),
            )
        }

        fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
            self.enter();
            action(self.stream.on_request_trailers(&mut AbiHost, WHOLE_BUFFER))
        }

        fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
            self.enter();
            action(self.stream.on_response_headers(&mut AbiHost, end_of_stream))
        }

        fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            self.enter();
            action(
                self.stream
                    .on_response_body(&mut AbiHost, body_size, end_of_stream),
            )
        }

        fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
            self.enter();
            action(self.stream.on_response_trailers(&mut AbiHost, WHOLE_BUFFER))
        }

        fn on_log(&mut self) {
            self.enter();
            self.stream.on_log(&mut AbiHost);
        }
    }

    impl Http {
        /// An outcall's answer, routed here by the SDK's dispatcher.
        pub fn call_response(&mut self, token: u32, result: portcullis_core::outcall::CallResult) {
            self.enter();
            let mine = self.stream.on_call_response(&mut AbiHost, token, result);
            if !mine {
                use crate::host::{Host, Level};
                AbiHost.log(
                    Level::Warn,
                    "portcullis: an outcall answer for no call this stream made, ignored",
                );
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
pub use http::{CURRENT, Http};

/// A body whose bytes are not needed yet (a chunk before the end): only its
/// size counts, against the limit.
struct Sized(usize);

impl HeldBody for Sized {
    fn len(&self) -> usize {
        self.0
    }
    fn bytes(&mut self) -> Result<Vec<u8>, HostFault> {
        Err(HostFault(
            "the body was read before it was complete (filter bug)".into(),
        ))
    }
}

fn edit(host: &mut dyn Host, which: Headers, edits: &HeaderEdits) -> Result<(), HostError> {
    for name in &edits.remove {
        host.set_header(which, name, None)?;
    }
    for (name, value) in &edits.set {
        host.set_header(which, name, Some(value))?;
    }
    Ok(())
}

//! One HTTP stream: proxy-wasm's callbacks, translated into
//! [`portcullis_core::Exchange`] calls and back into hostcalls.
//!
//! Everything here is host-agnostic over [`Host`], so the translation itself
//! is unit-tested with a mock. The rules it keeps are Envoy's:
//! * returning `Pause` from a body callback buffers (StopIterationAndBuffer),
//!   and the next callback's `body_size` covers everything buffered;
//! * request headers may still be edited in the body phase because the
//!   headers phase paused; response headers may not, so the engine decides
//!   in the headers phase whether the body may change length;
//! * a local reply sent from the request path comes back through this
//!   stream's response callbacks, and is passed through untouched.
//!
//! Any hostcall failure fails the stream closed: a 500 JSON-RPC error and an
//! audit record, never a request forwarded uninspected.

use crate::host::{Body, EnvOf, Headers, Host, HostError, Level};
use portcullis_core::engine::{
    HeaderEdits, LocalReply, RequestBodyAction, RequestHead, RequestHeadersAction,
    ResponseBodyAction,
};
use portcullis_core::{Engine, Exchange};
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
    exchange: Exchange,
    audit_lines: String,
    /// Set once a local reply was sent: later callbacks pass everything.
    replied: bool,
}

impl Stream {
    pub fn new(engine: Arc<Engine>) -> Stream {
        Stream {
            exchange: Exchange::new(engine),
            audit_lines: String::new(),
            replied: false,
        }
    }

    /// The id this stream's records carry (empty until the request headers).
    pub fn request_id(&self) -> &str {
        self.exchange.request_id()
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Step {
        let result = self.request_headers(host, end_of_stream);
        self.settle(host, result)
    }

    fn request_headers(
        &mut self,
        host: &mut dyn Host,
        end_of_stream: bool,
    ) -> Result<Step, HostError> {
        let pairs = host.headers(Headers::Request)?;
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
        let action = self.exchange.on_request_headers(&mut EnvOf(host), head);
        match action {
            RequestHeadersAction::Continue(edits) => {
                apply(host, Headers::Request, &edits)?;
                Ok(Step::Continue)
            }
            RequestHeadersAction::ReadBody(edits) => {
                apply(host, Headers::Request, &edits)?;
                if end_of_stream {
                    // No body will follow: decide on the empty one now.
                    return self.finish_request(host, &[], true);
                }
                Ok(Step::Pause)
            }
            RequestHeadersAction::Reply(reply) => self.reply(host, &reply),
        }
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let result = self.request_body(host, body_size, end_of_stream);
        self.settle(host, result)
    }

    fn request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Step, HostError> {
        if self.replied {
            return Ok(Step::Continue);
        }
        if let Some(reply) = self.exchange.on_request_body_size(body_size as u64) {
            return self.reply(host, &reply);
        }
        if !end_of_stream {
            return Ok(Step::Pause);
        }
        let body = host.body(Body::Request, body_size)?;
        self.finish_request(host, &body, true)
    }

    fn finish_request(
        &mut self,
        host: &mut dyn Host,
        body: &[u8],
        end_of_stream: bool,
    ) -> Result<Step, HostError> {
        match self
            .exchange
            .on_request_body(&mut EnvOf(host), body, end_of_stream)
        {
            RequestBodyAction::Wait => Ok(Step::Pause),
            RequestBodyAction::Forward(edits) => {
                apply(host, Headers::Request, &edits)?;
                Ok(Step::Continue)
            }
            RequestBodyAction::Rewrite(edits, rewritten) => {
                apply(host, Headers::Request, &edits)?;
                host.replace_body(Body::Request, body.len(), &rewritten)?;
                Ok(Step::Continue)
            }
            RequestBodyAction::Reply(reply) => self.reply(host, &reply),
        }
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Step {
        let result = self.response_headers(host, end_of_stream);
        self.settle(host, result)
    }

    fn response_headers(
        &mut self,
        host: &mut dyn Host,
        end_of_stream: bool,
    ) -> Result<Step, HostError> {
        let pairs = host.headers(Headers::Response)?;
        let status = pairs
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .collect();
        let edits = self
            .exchange
            .on_response_headers(&mut EnvOf(host), status, &headers);
        apply(host, Headers::Response, &edits)?;
        if end_of_stream {
            self.exchange.on_stream_end(&mut EnvOf(host));
        }
        Ok(Step::Continue)
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let result = self.response_body(host, body_size, end_of_stream);
        self.settle(host, result)
    }

    fn response_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Step, HostError> {
        let data = host.body(Body::Response, body_size)?;
        match self
            .exchange
            .on_response_body(&mut EnvOf(host), &data, end_of_stream)
        {
            ResponseBodyAction::Pass => Ok(Step::Continue),
            ResponseBodyAction::Buffer => Ok(Step::Pause),
            ResponseBodyAction::Replace(bytes) => {
                host.replace_body(Body::Response, body_size, &bytes)?;
                Ok(Step::Continue)
            }
        }
    }

    /// The stream is over (Envoy's access-log phase): close open records.
    pub fn on_log(&mut self, host: &mut dyn Host) {
        self.exchange.on_stream_end(&mut EnvOf(host));
        self.flush_audit(host);
    }

    fn reply(&mut self, host: &mut dyn Host, reply: &LocalReply) -> Result<Step, HostError> {
        self.replied = true;
        host.send_local_reply(reply)?;
        Ok(Step::Pause)
    }

    /// Writes new audit records, and turns a hostcall failure into a
    /// fail-closed reply.
    fn settle(&mut self, host: &mut dyn Host, result: Result<Step, HostError>) -> Step {
        let step = match result {
            Ok(step) => step,
            Err(err) => {
                host.log(
                    Level::Error,
                    &format!("portcullis: {err}; failing the request closed"),
                );
                let reply = self
                    .exchange
                    .internal_error(&mut EnvOf(host), &err.to_string());
                if self.replied {
                    // Already answered; nothing more can be sent.
                    Step::Pause
                } else {
                    self.replied = true;
                    if let Err(e) = host.send_local_reply(&reply) {
                        host.log(
                            Level::Critical,
                            &format!("portcullis: cannot send the fail-closed reply: {e}"),
                        );
                    }
                    Step::Pause
                }
            }
        };
        self.flush_audit(host);
        step
    }

    fn flush_audit(&mut self, host: &mut dyn Host) {
        let records = self.exchange.take_audit();
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

fn apply(host: &mut dyn Host, which: Headers, edits: &HeaderEdits) -> Result<(), HostError> {
    for name in &edits.remove {
        host.set_header(which, name, None)?;
    }
    for (name, value) in &edits.set {
        host.set_header(which, name, Some(value))?;
    }
    Ok(())
}

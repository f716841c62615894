//! The one seam between the filter and its proxy: everything the filter asks
//! of the host, as a trait.
//!
//! [`crate::abi::AbiHost`] implements it with proxy-wasm hostcalls inside a
//! proxy; unit tests implement it with a recording mock. Every method returns
//! a `Result` instead of panicking on an unexpected status (as the SDK's own
//! wrappers do), because a panic in wasm is a trap and a trap is a dead VM.

use portcullis_core::engine::{Env, LocalReply, SharedWrite};
use portcullis_core::outcall::Outcall;
use std::fmt;

/// A hostcall that did not succeed, with the proxy-wasm status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned status {}", self.call, self.status)
    }
}

/// Which header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    RequestTrailers,
    Response,
    ResponseTrailers,
}

impl Headers {
    /// The trailers of the same direction.
    pub fn trailers(self) -> Headers {
        match self {
            Headers::Request | Headers::RequestTrailers => Headers::RequestTrailers,
            Headers::Response | Headers::ResponseTrailers => Headers::ResponseTrailers,
        }
    }
}

/// The `body_size` to read a whole buffer with when the callback gives no
/// size (trailers): hosts clamp a read to what they hold (cpp-host
/// `get_buffer_bytes`), and a write with a length at least the buffer's
/// replaces all of it (Envoy `Buffer::copyFrom`).
pub const WHOLE_BUFFER: usize = u32::MAX as usize;

/// Which body buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
}

/// Log levels, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

pub trait Host {
    fn headers(&self, which: Headers) -> Result<Vec<(String, String)>, HostError>;
    /// Sets (replacing every value) or, with `None`, removes a header.
    fn set_header(
        &mut self,
        which: Headers,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), HostError>;
    /// The first `size` bytes of a body buffer.
    fn body(&self, which: Body, size: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the first `size` bytes of a body buffer (all of it, as the
    /// filter always passes the size it was given) with `data`.
    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) -> Result<(), HostError>;
    fn send_local_reply(&mut self, reply: &LocalReply) -> Result<(), HostError>;
    /// Sets a per-stream property; Envoy keeps it as filter state under the
    /// key `wasm.<path>`, where access loggers read it.
    fn set_property(&mut self, path: &str, value: &[u8]) -> Result<(), HostError>;
    fn log(&mut self, level: Level, message: &str);
    fn now_nanos(&self) -> u64;
    fn random_bytes(&mut self, buf: &mut [u8]);
    /// A property by path (Envoy: attributes, metadata, filter state).
    /// `Ok(None)` when absent.
    fn property(&self, _path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(None)
    }
    /// Plugin-wide shared data (every worker VM sees it). `Ok(None)` when
    /// the key is absent.
    fn shared_get(&self, _key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(None)
    }
    fn shared_set(&mut self, _key: &str, _value: &[u8]) -> Result<(), HostError> {
        Err(HostError {
            call: "proxy_set_shared_data (unsupported by this host)",
            status: 12,
        })
    }
    /// Shared data with its cas; `Ok(None)` when absent.
    fn shared_get_cas(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        Ok(self.shared_get(key)?.map(|v| (v, 0)))
    }
    /// Writes if the stored cas is still `cas` (`None`: only if absent).
    /// `Ok(false)`: someone else wrote first.
    fn shared_set_cas(
        &mut self,
        key: &str,
        value: &[u8],
        _cas: Option<u32>,
    ) -> Result<bool, HostError> {
        self.shared_set(key, value).map(|()| true)
    }
    /// Adds `delta` to a counter, defining it on first use.
    fn count(&mut self, _metric: &str, _delta: u64) -> Result<(), HostError> {
        Ok(())
    }
    /// Starts an outcall (`proxy_http_call` / `proxy_grpc_call`); the
    /// host's token. The answer arrives in `on_http_call_response` /
    /// `on_grpc_call_response`.
    fn dispatch_call(&mut self, _call: &Outcall) -> Result<u32, HostError> {
        Err(HostError {
            call: "proxy_http_call (unsupported by this host)",
            status: 12,
        })
    }
    /// Queues a fleet lease release for the root context
    /// (`proxy_enqueue_shared_queue` on the queue the root registered).
    fn enqueue_release(&mut self, _release: &[u8]) -> Result<(), HostError> {
        Err(HostError {
            call: "proxy_enqueue_shared_queue (unsupported by this host)",
            status: 12,
        })
    }
    /// Lets a held request go on (`proxy_continue_stream(Request)`).
    fn resume_request(&mut self) -> Result<(), HostError> {
        Err(HostError {
            call: "proxy_continue_stream (unsupported by this host)",
            status: 12,
        })
    }
}

/// Adapts a [`Host`] to the engine's [`Env`].
pub struct EnvOf<'a>(pub &'a mut dyn Host);

impl Env for EnvOf<'_> {
    fn now_nanos(&self) -> u64 {
        self.0.now_nanos()
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.0.random_bytes(buf)
    }

    // The engine treats these as best effort (an absent property, no shared
    // store, a metric not counted): a failure here must not fail a request
    // the engine can still decide, so errors are logged and absorbed.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.0.property(path).ok().flatten()
    }

    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.shared_get(key).ok().flatten()
    }

    fn shared_set(&mut self, key: &str, value: &[u8]) -> bool {
        match self.0.shared_set(key, value) {
            Ok(()) => true,
            Err(e) => {
                self.0.log(
                    Level::Warn,
                    &format!("portcullis: shared data not written: {e}"),
                );
                false
            }
        }
    }

    fn shared_get_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.shared_get_cas(key).ok().flatten()
    }

    fn shared_write(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        match self.0.shared_set_cas(key, value, cas) {
            Ok(true) => SharedWrite::Written,
            Ok(false) => SharedWrite::Conflict,
            Err(e) => {
                self.0.log(
                    Level::Warn,
                    &format!("portcullis: shared data not written: {e}"),
                );
                SharedWrite::Unavailable
            }
        }
    }

    fn enqueue_release(&mut self, release: &[u8]) -> bool {
        match self.0.enqueue_release(release) {
            Ok(()) => true,
            Err(e) => {
                self.0.log(
                    Level::Warn,
                    &format!("portcullis: fleet lease release not queued (it expires): {e}"),
                );
                false
            }
        }
    }

    fn count(&mut self, metric: &str, delta: u64) {
        if let Err(e) = self.0.count(metric, delta) {
            self.0.log(
                Level::Debug,
                &format!("portcullis: metric {metric} not counted: {e}"),
            );
        }
    }
}

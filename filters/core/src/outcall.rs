//! The outcall seam: a call the engine asks its host to make to another
//! service (an HTTP request or a gRPC call to a named cluster) while the
//! stream waits, and the answer it gets back.
//!
//! The engine performs no I/O: it hands the driver a
//! [`crate::driver::Step::Call`] with an [`Outcall`], the adapter carries
//! it out (proxy-wasm: `proxy_http_call` / `proxy_grpc_call`; the stream
//! stays paused, Envoy's `StopIterationAndBuffer`), and gives the answer back
//! through [`crate::driver::StreamDriver::call_done`] as a [`CallResult`].
//! The engine may answer that with another call (calls chain), a reply, or
//! the request forwarded. Every failure (no such cluster, timeout, reset, a
//! non-2xx answer, a body that does not parse) fails the stream closed.
//!
//! Envoy's semantics, from `source/extensions/common/wasm/context.cc`
//! (`Context::httpCall`, `Context::grpcCall`): the cluster must exist, the
//! timeout is milliseconds, the response arrives at the root context and
//! the proxy-wasm SDK hands it to the stream that made the call.

/// A call to another service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcall {
    /// The engine's id for this call, given back in
    /// [`crate::driver::StreamDriver::call_done`] (not the host's token).
    pub id: u32,
    /// The upstream cluster (Envoy: a cluster name; host-shim: `--cluster`).
    pub cluster: String,
    /// Milliseconds before the host gives up (then [`CallResult::Failed`]).
    pub timeout_ms: u32,
    pub kind: OutcallKind,
}

/// What kind of call, with what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcallKind {
    /// An HTTP request (`proxy_http_call`).
    Http {
        method: String,
        path: String,
        authority: String,
        /// Other headers (lowercase names), without pseudo-headers.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A unary gRPC call (`proxy_grpc_call`).
    Grpc {
        /// Fully qualified service (`portcullis.fleet.v1.Fleet`).
        service: String,
        method: String,
        /// The serialized request message.
        message: Vec<u8>,
        initial_metadata: Vec<(String, Vec<u8>)>,
    },
}

/// The answer to an [`Outcall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    /// An HTTP answer, any status (the engine judges it).
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A gRPC answer: `status` is the gRPC status code (0 is OK),
    /// `message` its text, `body` the response message.
    Grpc {
        status: u32,
        message: String,
        body: Vec<u8>,
    },
    /// No answer: the host could not make the call, or it failed (reset,
    /// timeout). The text says which, without payload bytes.
    Failed(String),
}

impl Outcall {
    /// An HTTP call.
    #[allow(clippy::too_many_arguments)]
    pub fn http(
        id: u32,
        cluster: &str,
        timeout_ms: u32,
        method: &str,
        authority: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Outcall {
        Outcall {
            id,
            cluster: cluster.to_owned(),
            timeout_ms,
            kind: OutcallKind::Http {
                method: method.to_owned(),
                path: path.to_owned(),
                authority: authority.to_owned(),
                headers,
                body,
            },
        }
    }
}

impl CallResult {
    /// The body of a 2xx HTTP answer, or why there is none.
    pub fn http_ok(&self) -> Result<&[u8], String> {
        match self {
            CallResult::Http { status, body, .. } if (200..300).contains(status) => Ok(body),
            CallResult::Http { status, .. } => Err(format!("it answered HTTP {status}")),
            CallResult::Grpc { .. } => Err("it answered gRPC to an HTTP call".into()),
            CallResult::Failed(why) => Err(why.clone()),
        }
    }
}

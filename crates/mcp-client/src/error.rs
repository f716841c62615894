//! What can go wrong talking to a server, in the protocol's terms.

use crate::text::quote;
use http::StatusCode;

/// A failed exchange. Each message names the step (`initialize`,
/// `tools/list`, ...) and what the server did; none holds a header value,
/// but server text may echo one, so scrub it with [`crate::Secrets`]
/// before showing it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The protocol revision to offer cannot be sent as a header.
    #[error("the protocol revision {0:?} is not usable as a header value")]
    ProtocolVersion(String),
    /// No runtime for the exchange.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A request could not be built.
    #[error("cannot build the request: {0}")]
    Request(String),
    /// No connection to the endpoint.
    #[error("{step}: cannot connect to {endpoint} ({cause})")]
    Connect {
        step: String,
        endpoint: String,
        cause: String,
    },
    /// The connection failed mid-exchange.
    #[error("{step} to {endpoint}: {cause}")]
    Transport {
        step: String,
        endpoint: String,
        cause: String,
    },
    /// The exchange took longer than the timeout.
    #[error("{step}: no answer from {endpoint} within {seconds} s")]
    Timeout {
        step: String,
        endpoint: String,
        seconds: u64,
    },
    /// A non-2xx answer: the `WWW-Authenticate` challenge of a 401 and what
    /// the body said (a JSON-RPC error, or the body quoted), if anything.
    #[error("{step}: HTTP {status}{}{}",
        .challenge.as_ref().map(|c| format!(" (WWW-Authenticate: {c})")).unwrap_or_default(),
        .said.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Status {
        step: String,
        status: StatusCode,
        challenge: Option<String>,
        said: Option<String>,
    },
    /// A 2xx answer that is neither JSON nor an SSE stream.
    #[error("{step}: the server answered with content type {}, not application/json or text/event-stream", quote(.content_type))]
    ContentType { step: String, content_type: String },
    /// The initialize result names no protocol revision.
    #[error("the initialize answer has no valid protocolVersion")]
    NoProtocolVersion,
    /// More tools than [`crate::MAX_TOOLS`].
    #[error("tools/list: the server lists more than {max} tools")]
    TooManyTools { max: usize },
    /// Still a `nextCursor` after [`crate::MAX_PAGES`] pages.
    #[error("tools/list: still a nextCursor after {max} pages")]
    EndlessList { max: usize },
    /// An answer that is not what the protocol says it must be (bad JSON, a
    /// JSON-RPC error, a missing field, a broken stream).
    #[error("{step}: {problem}")]
    Answer { step: String, problem: String },
}

impl Error {
    pub(crate) fn answer(step: &str, problem: impl Into<String>) -> Error {
        Error::Answer {
            step: step.to_owned(),
            problem: problem.into(),
        }
    }
}

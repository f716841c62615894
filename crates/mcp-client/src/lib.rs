//! A small MCP client over Streamable HTTP, for reading a live server's
//! tool definitions: `portcullis pin` pins them and `portcullis vet`
//! screens them, and both fetch them with this crate.
//!
//! It speaks the handshake era of the protocol (initialize,
//! `notifications/initialized`, `tools/list` page by page, then a DELETE of
//! the session) on hyper, and plain HTTP only: it carries no TLS stack, so a
//! TLS server is reached through a proxy's plain-HTTP listener or a
//! port-forward. Answers go through the filter's own strict JSON parser and
//! SSE parser (`portcullis_core::json`, `portcullis_core::sse`), so a
//! definition read here is the one the filter reads.
//!
//! Request headers given by the caller are credentials: [`RequestHeaders`]
//! marks them sensitive and keeps [`Secrets`] to scrub from anything shown.
//! Server text is never trusted with the terminal: [`text::clip`] escapes
//! control characters and [`text::quote`] quotes what is shown.
//!
//! Errors are typed ([`UrlError`], [`HeaderError`], [`Error`]) and say what
//! went wrong in the protocol's terms; the caller adds what its user can do
//! about it (which flag to change), since only it knows its flags.

mod endpoint;
mod error;
mod headers;
mod session;
pub mod text;

pub use endpoint::{Endpoint, UrlError};
pub use error::Error;
pub use headers::{HeaderError, OWN_HEADERS, RequestHeaders, Secrets};
pub use session::{CLIENT_NAME, MAX_PAGES, MAX_TOOLS, ToolList, fetch_tools};

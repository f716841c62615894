//! Identity: who is calling, on whose behalf, and with what right.
//!
//! The MCP authorization spec makes every MCP server an OAuth 2.1 resource
//! server. Portcullis plays that role for every server in the bundle, in the
//! filter, so the same rules hold whatever sits behind it:
//!
//! * [`provider`]: `kind: IdentityProvider` documents (issuer, inline JWKS,
//!   algorithm allowlist, skew, claim mappings), compiled once at configure
//!   time so a bad key or algorithm is a bundle error with a JSON pointer,
//!   never a runtime surprise;
//! * [`jwks`]: public keys (and HMAC secrets) parsed into ready-to-verify
//!   form; [`jwt`]: strict compact-JWS parsing and signature checks;
//!   [`rsa_verify`] and [`p256_verify`]: RSA and ES256 verification
//!   prepared per key at configure time;
//!   [`alg`]: the algorithms and key families both speak of;
//! * [`claims`]: the time, issuer and audience checks, and the mapping of
//!   claims to an [`Identity`];
//! * [`cache`]: a bounded per-VM cache of verified tokens, because RSA and
//!   ECDSA in wasm cost far more than the rest of a request;
//! * [`scopes`]: per-tool scope requirements; [`metadata`]: the 401 challenge
//!   and RFC 9728 protected-resource metadata; [`mint`]: per-call upstream
//!   tokens (token isolation); [`server`]: the per-`McpServer` settings that
//!   tie these together; [`extract`]: where a token may come from.
//!
//! How the engine uses it, per request to a server with identity settings:
//!
//! 1. on a `GET` whose path [`ProtectedResource::serves`], answer 200 with
//!    [`ProtectedResource::document_json`] (no token needed);
//! 2. on request headers, [`ServerIdentity::authenticate`] with all
//!    `Authorization` values, `:path`, now in seconds and the VM's
//!    [`TokenCache`]; on `Err(e)` reply `e.status()` with
//!    `WWW-Authenticate: server.challenge(&e)` and audit `e.code()`;
//! 3. once the MCP message is classified, [`ServerIdentity::authorize`]
//!    (403 on [`IdentityError::InsufficientScope`]);
//! 4. before forwarding, [`ServerIdentity::upstream_authorization`]: remove,
//!    replace or (flagged) keep the `Authorization` header; put
//!    [`Identity::audit_headers`] and the `jti` in the audit record.
//!
//! Everything here is host-agnostic like the rest of the crate: time arrives
//! as a parameter, randomness through [`crate::env::Env`], and nothing is
//! fetched. Errors are a closed enum with one variant per attack class, so the
//! audit record can say exactly what was refused; no error ever carries any
//! part of a token.

pub mod alg;
pub mod b64;
pub mod cache;
pub mod claims;
pub mod envoy;
pub mod error;
pub mod extract;
pub mod jwks;
pub mod jwt;
pub mod metadata;
pub mod mint;
pub mod p256_verify;
pub mod provider;
pub mod rsa_verify;
pub mod scopes;
pub mod server;

pub use alg::Algorithm;
pub use cache::TokenCache;
pub use claims::Identity;
pub use error::IdentityError;
pub use extract::{extract_bearer, query_has_token};
pub use metadata::ProtectedResource;
pub use mint::{MintRequest, MintedToken, Minter};
pub use provider::{IdentityProviderSpec, Provider, ProviderSet, TrustMode};
pub use scopes::ScopePolicy;
pub use server::{ServerIdentity, ServerIdentitySpec, UpstreamAuth, UpstreamTokenMode};

pub use crate::spec::{SpecError, pointer_segment};

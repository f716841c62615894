//! Why a request's identity was refused, and what the client is told.
//!
//! One variant per attack class, so audit records and metrics can tell an
//! expired token from a forged one, and so tests can assert exactly which
//! defence fired. Every variant maps to an HTTP status and an RFC 6750
//! `WWW-Authenticate` challenge. The descriptions are fixed strings chosen
//! here: nothing from the token (claims, kid, header values) is ever echoed,
//! because error text ends up in logs, audit records and client responses.

use std::fmt;

/// Longest `scope` attribute put in a challenge, bytes.
pub const MAX_SCOPE_ATTRIBUTE: usize = 1024;

/// A refused identity. `Display` gives the fixed, token-free description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// No `Authorization: Bearer` credential at all.
    MissingToken,
    /// A token in the query string (`access_token=`): refused, since URLs
    /// end up in logs and referrers (RFC 6750 §2.3, OAuth 2.1).
    TokenInQuery,
    /// Several `Authorization` headers, an empty token, or a bearer token
    /// with characters outside RFC 6750's `b64token`.
    InvalidRequest,
    /// The token is longer than the provider allows.
    TooLarge,
    /// Not a compact JWS: wrong number of segments, bad base64url (padding,
    /// non-canonical), bad or duplicate-key JSON, wrong claim types.
    Malformed,
    /// `alg: none` (in any case): an unsigned token.
    AlgNone,
    /// An algorithm that is unknown or not in the provider's allowlist.
    AlgNotAllowed,
    /// The algorithm does not fit the key (an HS token against an RSA or EC
    /// key, an RS token against an EC key, a key whose `alg` differs).
    KeyConfusion,
    /// No key with this `kid`, or no key at all for the algorithm.
    UnknownKid,
    /// The signature does not verify: tampered header, payload or signature.
    BadSignature,
    /// A `crit` header parameter (none is understood, RFC 7515 §4.1.11).
    UnsupportedCrit,
    /// `exp` has passed (beyond the clock skew).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the clock skew).
    NotYetValid,
    /// `iss` is not an issuer of a provider this server trusts.
    WrongIssuer,
    /// `aud` is missing or does not name this server's resource URI
    /// (RFC 8707): a token issued for another server.
    WrongAudience,
    /// A claim the provider requires is absent. Carries the configured claim
    /// name (from the bundle, not from the token).
    MissingClaim { claim: String },
    /// Valid token, too little scope for this call. 403.
    InsufficientScope { required: Vec<String> },
}

impl IdentityError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            IdentityError::InsufficientScope { .. } => 403,
            // RFC 6750 §3.1: invalid_request is a 400.
            IdentityError::TokenInQuery | IdentityError::InvalidRequest => 400,
            _ => 401,
        }
    }

    /// The RFC 6750 error code, `None` when the request carried no
    /// credential (§3.1: then the challenge has no error attribute).
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            IdentityError::MissingToken => None,
            IdentityError::TokenInQuery | IdentityError::InvalidRequest => Some("invalid_request"),
            IdentityError::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// A stable machine-readable reason, for audit records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::MissingToken => "missing_token",
            IdentityError::TokenInQuery => "token_in_query",
            IdentityError::InvalidRequest => "invalid_request",
            IdentityError::TooLarge => "too_large",
            IdentityError::Malformed => "malformed",
            IdentityError::AlgNone => "alg_none",
            IdentityError::AlgNotAllowed => "alg_not_allowed",
            IdentityError::KeyConfusion => "key_confusion",
            IdentityError::UnknownKid => "unknown_kid",
            IdentityError::BadSignature => "bad_signature",
            IdentityError::UnsupportedCrit => "unsupported_crit",
            IdentityError::Expired => "expired",
            IdentityError::NotYetValid => "not_yet_valid",
            IdentityError::WrongIssuer => "wrong_issuer",
            IdentityError::WrongAudience => "wrong_audience",
            IdentityError::MissingClaim { .. } => "missing_claim",
            IdentityError::InsufficientScope { .. } => "insufficient_scope",
        }
    }

    /// The `error_description` sent to the client: fixed text only.
    pub fn description(&self) -> &'static str {
        match self {
            IdentityError::MissingToken => "bearer token required",
            IdentityError::TokenInQuery => {
                "access tokens in the query string are refused; use the Authorization header"
            }
            IdentityError::InvalidRequest => "malformed Authorization header",
            IdentityError::TooLarge => "token too large",
            IdentityError::Malformed => "malformed token",
            IdentityError::AlgNone => "unsigned tokens are refused",
            IdentityError::AlgNotAllowed => "token algorithm not allowed",
            IdentityError::KeyConfusion => "token algorithm does not match the key type",
            IdentityError::UnknownKid => "no key for this token",
            IdentityError::BadSignature => "invalid token signature",
            IdentityError::UnsupportedCrit => "unsupported critical header parameter",
            IdentityError::Expired => "token expired",
            IdentityError::NotYetValid => "token not yet valid",
            IdentityError::WrongIssuer => "token issuer not trusted",
            IdentityError::WrongAudience => "token audience is not this resource",
            IdentityError::MissingClaim { .. } => "token lacks a required claim",
            IdentityError::InsufficientScope { .. } => "insufficient scope for this call",
        }
    }

    /// The `WWW-Authenticate` header value. `resource_metadata` is the RFC
    /// 9728 metadata URL of the server (see
    /// [`super::ProtectedResource::metadata_url`]), so clients can discover
    /// the authorization server from any 401 or 403.
    pub fn www_authenticate(&self, resource_metadata: Option<&str>) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(code) = self.oauth_error() {
            params.push(("error", code.to_string()));
            params.push(("error_description", self.description().to_string()));
        }
        if let IdentityError::InsufficientScope { required } = self {
            // Scopes derived from a tool name are request-controlled text:
            // bound what they can add to a response header.
            let mut scope = String::new();
            for s in required {
                if scope.len() + s.len() + 1 > MAX_SCOPE_ATTRIBUTE {
                    break;
                }
                if !scope.is_empty() {
                    scope.push(' ');
                }
                scope.push_str(s);
            }
            params.push(("scope", scope));
        }
        if let Some(url) = resource_metadata {
            params.push(("resource_metadata", url.to_string()));
        }
        challenge(&params)
    }
}

/// `Bearer k="v", k2="v2"`, values as RFC 7230 quoted-strings.
pub(crate) fn challenge(params: &[(&str, String)]) -> String {
    let mut out = String::from("Bearer");
    for (i, (k, v)) in params.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                // Control characters can't appear in a header; drop them.
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::MissingClaim { claim } => {
                write!(f, "{} ({claim})", self.description())
            }
            IdentityError::InsufficientScope { required } => {
                write!(
                    f,
                    "{} (requires {})",
                    self.description(),
                    required.join(" ")
                )
            }
            _ => f.write_str(self.description()),
        }
    }
}

impl std::error::Error for IdentityError {}

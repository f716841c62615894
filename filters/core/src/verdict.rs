//! What every pillar returns for one message, and why a message is
//! refused.
//!
//! The registry, identity, content and policy pillars each decide in their
//! own module and return a [`Verdict`]; the engine combines them (the first
//! refusal wins; a batch is all or nothing) but never reinterprets one. Why
//! a message or a request is refused is one [`DenyCause`], and
//! [`DenyCause::shape`] is the one exhaustive match that turns it into the
//! HTTP status, the JSON-RPC error code and title, and the record's outcome
//! (`engine/respond.rs` builds the reply and the record from it).

use crate::audit::{Decision, LimitNote, Outcome, Shadow};
use crate::identity::IdentityError;
use crate::mcp::codes;
use crate::policy::approval;

/// A pillar's verdict on one message.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: String,
    /// The rule that decided, when one did.
    pub rule: Option<String>,
    /// Why it is refused (set on every denial).
    pub cause: Option<DenyCause>,
    /// Every Policy rule that decided.
    pub rules: Vec<String>,
    pub shadow: Option<Shadow>,
    pub policy_errors: Vec<String>,
    /// An approval asked for (refused), or about to be spent (allowed).
    pub approval: Option<ApprovalState>,
    /// The limit that refused (or, in shadow, would have).
    pub limit: Option<LimitNote>,
}

/// An approval a `requireApproval` rule asked for, or one about to be spent.
#[derive(Debug, Clone)]
pub struct ApprovalState {
    pub id: String,
    pub binding: approval::Binding,
    /// Allowed: the grant's jti, to record as spent.
    pub jti: Option<String>,
    pub error: Option<approval::ApprovalError>,
}

impl Verdict {
    pub fn allow(reason: String, rule: Option<String>) -> Verdict {
        Verdict {
            decision: Decision::Allow,
            reason,
            rule,
            cause: None,
            rules: Vec::new(),
            shadow: None,
            policy_errors: Vec::new(),
            approval: None,
            limit: None,
        }
    }

    pub fn deny(cause: DenyCause, reason: String, rule: Option<String>) -> Verdict {
        Verdict {
            decision: Decision::Deny,
            cause: Some(cause),
            ..Verdict::allow(reason, rule)
        }
    }

    /// The identity error of a scope refusal (answered 403 with a challenge).
    pub fn auth(&self) -> Option<&IdentityError> {
        match &self.cause {
            Some(DenyCause::Scope(e)) => Some(e),
            _ => None,
        }
    }
}

/// Why a message, a request or an answer is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyCause {
    // One message of a request, decided by a pillar.
    /// The server's tools, resources or prompts list does not allow it, or
    /// the method is one the filter cannot govern (registry).
    Registry,
    /// The server is blocked, submitted, past its sunset, or not approved for
    /// this environment or tenant (registry lifecycle).
    Lifecycle,
    /// The token's scopes do not cover the call (identity).
    Scope(IdentityError),
    /// The tool's last-seen definition failed its pin or screening (content).
    Quarantine,
    /// The arguments do not validate against the tool's advertised
    /// `inputSchema` (content).
    InputSchema,
    /// The ContentPolicy blocks what the arguments carry (content).
    Content,
    /// A Policy rule forbids it, or none permits it (policy).
    Policy,
    /// A task request names a task bound to another principal, or one this
    /// proxy never saw created (tasks extension).
    Task,
    /// A `requireApproval` rule asks for a person's approval (policy).
    ApprovalRequired,
    /// A rate, concurrency or budget limit (policy).
    Limit,
    /// Another message of the same batch was refused.
    Batch,
    // A whole request, before or instead of its messages.
    /// No valid token for a server with identity settings.
    Unauthenticated(IdentityError),
    /// The body exceeds `maxRequestBytes`.
    TooLarge,
    /// Not `application/json` in UTF-8, or compressed.
    MediaType,
    /// Not JSON, not JSON-RPC, or framed against the revision's rules (the
    /// JSON-RPC code says which).
    Malformed(i64),
    /// A method an MCP endpoint does not accept.
    MethodNotAllowed,
    /// A target, header or body the filter and a server could read
    /// differently.
    Ambiguous,
    /// No McpServer matches the route (`unmatchedRoutes: deny`).
    UnknownServer,
    /// MCP to an unregistered route (shadow MCP).
    ShadowMcp,
    /// The filter failed; it refuses rather than pass uninspected.
    Internal,
    // An answer from the upstream.
    /// The answer could not be inspected, or policy withholds it.
    Upstream,
}

/// What a refusal looks like on the wire and in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// HTTP status of the reply when this cause decides it alone.
    pub status: u16,
    /// The JSON-RPC error code.
    pub code: i64,
    /// The JSON-RPC error message.
    pub title: &'static str,
    /// The record's outcome.
    pub outcome: Outcome,
}

impl DenyCause {
    /// The one place a refusal becomes a status, a code and a title.
    pub fn shape(&self) -> Shape {
        use DenyCause::*;
        let (status, code, title, outcome) = match self {
            Registry | Lifecycle | Quarantine | InputSchema | Content | Policy | Batch | Task => {
                (200, codes::DENIED, "Denied by Portcullis", Outcome::Denied)
            }
            Scope(_) => (
                403,
                codes::INSUFFICIENT_SCOPE,
                "Insufficient scope",
                Outcome::Denied,
            ),
            ApprovalRequired => (
                200,
                codes::APPROVAL_REQUIRED,
                "Approval required",
                Outcome::Denied,
            ),
            Limit => (429, codes::LIMITED, "Limit reached", Outcome::Denied),
            Unauthenticated(e) => (
                e.status(),
                codes::UNAUTHENTICATED,
                "Unauthorized",
                Outcome::Denied,
            ),
            TooLarge => (
                413,
                codes::TOO_LARGE,
                "Request body too large",
                Outcome::Invalid,
            ),
            MediaType => (
                415,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                Outcome::Invalid,
            ),
            Malformed(code) => (
                400,
                *code,
                match *code {
                    codes::PARSE_ERROR => "Parse error",
                    codes::HEADER_MISMATCH => "Header mismatch",
                    codes::UNSUPPORTED_PROTOCOL_VERSION => "Unsupported protocol version",
                    _ => "Invalid Request",
                },
                Outcome::Invalid,
            ),
            MethodNotAllowed => (
                405,
                codes::INVALID_REQUEST,
                "Method not allowed",
                Outcome::Invalid,
            ),
            Ambiguous => (
                400,
                codes::INVALID_REQUEST,
                "Invalid Request",
                Outcome::Invalid,
            ),
            UnknownServer => (
                404,
                codes::UNKNOWN_SERVER,
                "No registered MCP server at this route",
                Outcome::Denied,
            ),
            ShadowMcp => (
                403,
                codes::UNKNOWN_SERVER,
                "Unregistered MCP server",
                Outcome::Denied,
            ),
            Internal => (500, codes::INTERNAL, "Internal error", Outcome::Invalid),
            Upstream => (
                502,
                codes::UPSTREAM_REJECTED,
                "Upstream response rejected by Portcullis",
                Outcome::UpstreamInvalid,
            ),
        };
        Shape {
            status,
            code,
            title,
            outcome,
        }
    }
}

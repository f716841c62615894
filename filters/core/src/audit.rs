//! Audit records: exactly one per MCP message, in a versioned JSON schema.
//!
//! A record is written when its message's fate is known: at once for a
//! refused message, when the matching response arrives for a forwarded
//! request, and at stream end for one that never got an answer. Records
//! carry decisions and identifiers, never payloads: arguments appear only as
//! a SHA-256 of their canonical JSON, and the session id only as a hash, so
//! a record can be logged at info level and shipped anywhere.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The schema identifier every record carries.
pub const SCHEMA: &str = "portcullis.audit/v1";

/// Who sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to server (a POST body).
    Client,
    /// Server to client (a request or notification on a response stream).
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// How the message's exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered with a result.
    Result,
    /// The upstream answered with a JSON-RPC error.
    Error,
    /// Refused by the filter; the upstream never saw it.
    Denied,
    /// Accepted by the upstream (HTTP 202): a notification, or a legacy
    /// HTTP+SSE request whose answer travels on the SSE stream.
    Accepted,
    /// The upstream answered with an HTTP error status.
    HttpError,
    /// The upstream's answer could not be inspected and was replaced.
    UpstreamInvalid,
    /// The stream ended with no answer.
    NoResponse,
    /// The message itself was malformed and refused.
    Invalid,
    /// Not governed, passed on and recorded (shadow MCP).
    Observed,
    /// Seen on a response stream and passed on (server messages).
    Delivered,
    /// The upstream answered, and policy withheld the answer (a failed pin,
    /// blocked content); the client got a JSON-RPC error instead.
    Withheld,
}

/// Content findings of one message: types and counts, never the values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContentFindings {
    /// PII and secrets by entity type (`EMAIL`, `AWS_ACCESS_KEY`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pii: BTreeMap<String, u64>,
    /// Injection and poisoning findings by category (`instruction`,
    /// `secretAccess`, `shadowing`, `exfiltration`, `hidden`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub injection: BTreeMap<String, u64>,
    /// The screening rule ids that matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// flagged, redacted, dropped (tools removed) or blocked.
    pub action: &'static str,
}

impl ContentFindings {
    /// Adds `other`'s findings (a request's and its answer's, in one
    /// record); the stronger action wins.
    pub fn merge(&mut self, other: ContentFindings) {
        for (k, n) in other.pii {
            *self.pii.entry(k).or_insert(0) += n;
        }
        for (k, n) in other.injection {
            *self.injection.entry(k).or_insert(0) += n;
        }
        for r in other.rules {
            if !self.rules.contains(&r) {
                self.rules.push(r);
            }
        }
        let rank = |a: &str| match a {
            "blocked" => 3,
            "dropped" => 2,
            "redacted" => 1,
            _ => 0,
        };
        if rank(other.action) > rank(self.action) {
            self.action = other.action;
        }
    }

    /// The types found, for reasons: `EMAIL, US_SSN, instruction`.
    pub fn types(&self) -> String {
        self.pii
            .keys()
            .chain(self.injection.keys())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One tool of a tools/list whose pin did not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinFinding {
    pub tool: String,
    /// mismatch, unpinned (strict mode), duplicate, missing (pinned, not
    /// served) or invalid (no name).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub schema: &'static str,
    /// RFC 3339, UTC, millisecond precision.
    pub time: String,
    /// The filter's own id for the HTTP exchange (also sent upstream as
    /// `x-mcp-request-id`): never the client's, so two exchanges cannot
    /// share one.
    pub request_id: String,
    /// The `x-request-id` the request arrived with, if any (the client's or
    /// a proxy's), kept for correlation with other logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// Position of the message in its HTTP exchange (batch element, or event
    /// number on a stream).
    pub message_index: u32,
    pub direction: Direction,
    /// request, notification, response or invalid.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<Value>,
    #[serde(rename = "mcp.method.name", skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(rename = "gen_ai.tool.name", skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(rename = "mcp.resource.uri", skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(
        rename = "mcp.protocol.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<String>,
    /// The client's own name and version, as it gave them (2026-07-28's
    /// `_meta` clientInfo, or `initialize`'s), bounded; a label, not proof.
    #[serde(rename = "mcp.client.name", skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(rename = "mcp.client.version", skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// SHA-256 (first 16 hex digits) of the task handle a task request names
    /// (the handle is a capability: never recorded in the clear).
    #[serde(rename = "mcp.task.id", skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// SHA-256 (first 16 hex digits) of the `Mcp-Session-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The person (or service) the verified token names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The agent or client acting for the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The client token's `jti` (the token itself is never recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_jti: Option<String>,
    /// What went upstream in place of the client's token: minted, stripped,
    /// or passthrough (token isolation off for this server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_token: Option<&'static str>,
    /// Why authentication or scopes refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_error: Option<&'static str>,
    pub decision: Decision,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub bundle_version: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// SHA-256 of the canonical JSON of the tool or prompt arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
    /// Entries removed from a list result (tools/list and the like).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered_out: Option<u32>,
    /// The pin of the called tool's definition in the server's last
    /// tools/list, as this VM saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_sha256: Option<String>,
    /// PII and injection findings.
    #[serde(rename = "findings", skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentFindings>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pin_failures: Vec<PinFinding>,
    /// Tools removed from a tools/list as poisoned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools_dropped: Vec<String>,
    /// Tool names added or removed since the previous complete tools/list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools_removed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Every rule id that decided (Policy rules; `rule` is the first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// What shadow-mode rules would have decided, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_decision: Option<Shadow>,
    /// Rules that could not be evaluated (a CEL error), failed closed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_errors: Vec<String>,
    /// The limit that refused the call (or would have, in shadow mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitNote>,
    /// A human approval asked for, or used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalNote>,
    /// The arguments with PII and secrets redacted (`Settings.spec.auditArguments: redacted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// The peer address the request came from (the host's `source.address`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// MCP traffic to a route no McpServer matches (shadow MCP).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// The request's authority and path, on shadow-MCP records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A lifecycle warning (a deprecated server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What shadow-mode rules (or limits) would have decided, when it differs
/// from what was enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadow {
    /// `allow`, `deny` or `requireApproval`.
    pub decision: &'static str,
    pub rules: Vec<String>,
}

/// Which limit refused a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitNote {
    pub id: String,
    /// `rate`, `concurrency`, `budget` (or `unavailable`, `contended`).
    pub kind: &'static str,
    pub retry_after: u64,
    /// `false`: a shadow limit, which did not refuse.
    pub enforced: bool,
}

/// An approval asked for (`required`, `refused`) or spent (`granted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalNote {
    pub id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Who approved, as the approval service reported (a granted round
    /// trip of MCP 2026-07-28).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

impl AuditRecord {
    /// A record with only the identifying fields set: an invalid client
    /// message, denied, until the caller says otherwise.
    pub fn blank(time: String, request_id: String, bundle_version: String) -> AuditRecord {
        AuditRecord {
            schema: SCHEMA,
            time,
            request_id,
            client_request_id: None,
            message_index: 0,
            direction: Direction::Client,
            kind: "invalid",
            jsonrpc_id: None,
            method: None,
            server: None,
            tool: None,
            resource: None,
            prompt: None,
            protocol_version: None,
            client_name: None,
            client_version: None,
            task: None,
            session: None,
            subject: None,
            agent: None,
            tenant: None,
            token_jti: None,
            upstream_token: None,
            auth_error: None,
            decision: Decision::Deny,
            reason: String::new(),
            rule: None,
            bundle_version,
            outcome: Outcome::Invalid,
            http_status: None,
            error_code: None,
            arguments_sha256: None,
            filtered_out: None,
            tool_sha256: None,
            content: None,
            pin_failures: Vec::new(),
            tools_dropped: Vec::new(),
            tools_added: Vec::new(),
            tools_removed: Vec::new(),
            latency_ms: None,
            rules: Vec::new(),
            shadow_decision: None,
            policy_errors: Vec::new(),
            limit: None,
            approval: None,
            arguments: None,
            source: None,
            shadow: false,
            authority: None,
            path: None,
            warning: None,
        }
    }

    /// The record as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"schema\":\"{SCHEMA}\",\"error\":\"audit record failed to serialise: {e}\"}}"
            )
        })
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC with milliseconds, without a
/// date library (the filter has no clock library, only the host's time).
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos / 1_000_000) % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_796_140_800_123_000_000),
            "2026-12-01T16:00:00.123Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }
}

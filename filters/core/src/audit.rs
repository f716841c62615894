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
    /// Seen on a response stream and passed on (server messages).
    Delivered,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub schema: &'static str,
    /// RFC 3339, UTC, millisecond precision.
    pub time: String,
    pub request_id: String,
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
    /// SHA-256 (first 16 hex digits) of the `Mcp-Session-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl AuditRecord {
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

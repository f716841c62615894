//! Realistic synthetic audit records, for tests, benchmarks and demos.
//!
//! Shaped like what the filter writes for a `tools/call` (field for field,
//! see docs/audit-schema.md) plus the identity fields the store indexes, so
//! sizes and index selectivity in benchmarks resemble production.

use crate::time::format_rfc3339_ms;
use serde_json::{Value, json};

/// Subjects, agents and tools the generator cycles through.
pub const SUBJECTS: usize = 1000;
pub const AGENTS: usize = 50;
pub const TOOLS: usize = 40;

/// Record number `n` at `time_ms`, with the given subject and tool.
pub fn record(n: u64, subject: &str, tool: &str, time_ms: i64) -> Value {
    let denied = n.is_multiple_of(10);
    json!({
        "schema": "portcullis.audit/v1",
        "time": format_rfc3339_ms(time_ms),
        "request_id": format!("req-{n:010}"),
        "message_index": 0,
        "direction": "client",
        "kind": "request",
        "jsonrpc_id": n,
        "mcp.method.name": "tools/call",
        "server": "crm",
        "gen_ai.tool.name": tool,
        "mcp.protocol.version": "2025-06-18",
        "session": "5f2b9c1d0e7a4b33",
        "subject": subject,
        "agent": format!("agent-{}", n % AGENTS as u64),
        "tenant": "acme",
        "decision": if denied { "deny" } else { "allow" },
        "reason": if denied { "tool not allowed for caller" } else { "allowed by rule" },
        "rule": "crm-readers",
        "bundle_version": "2026-12-01.1",
        "outcome": if denied { "denied" } else { "result" },
        "http_status": 200,
        "arguments_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "latency_ms": 12.5,
    })
}

/// Record `n` of a synthetic stream: subject, tool and agent spread
/// deterministically, times one every `step_ms` from `start_ms`.
pub fn nth(n: u64, start_ms: i64, step_ms: i64) -> Value {
    let subject = format!("user-{}", (n.wrapping_mul(2_654_435_761)) % SUBJECTS as u64);
    let tool = format!("tool-{}", (n.wrapping_mul(40_503)) % TOOLS as u64);
    let t = start_ms.saturating_add(step_ms.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)));
    record(n, &subject, &tool, t)
}

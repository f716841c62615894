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
        "agent": format!("agent-{}", mix(n ^ 0xa5a5) % AGENTS as u64),
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
/// pseudo-randomly and independently (so each subject calls every tool),
/// times one every `step_ms` from `start_ms`.
pub fn nth(n: u64, start_ms: i64, step_ms: i64) -> Value {
    let subject = format!("user-{}", mix(n) % SUBJECTS as u64);
    let tool = format!("tool-{}", mix(n ^ 0x5bd1_e995) % TOOLS as u64);
    let t = start_ms.saturating_add(step_ms.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)));
    record(n, &subject, &tool, t)
}

/// SplitMix64's finaliser: a cheap, well-spread hash of `n`.
pub fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

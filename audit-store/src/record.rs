//! From an audit record to what the store keeps: canonical bytes (what the
//! chain hashes) and the indexed columns (what queries filter on).
//!
//! Canonical form is compact JSON with object keys sorted by byte order at
//! every level, computed once at append. The stored text *is* the canonical
//! text, so verification hashes the stored bytes as they are and never
//! depends on re-serialising. Indexed columns are derived from the record
//! alone, so verification can re-derive them and catch a column edited to
//! hide a row from a query.

use crate::time::parse_rfc3339_ms;
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The schema prefix every stored record must carry.
pub const SCHEMA_PREFIX: &str = "portcullis.audit/";

/// Where each identity column is read from, first match wins. The v1
/// schema's filter does not fill identity yet; these are the names the
/// schema reserves for it (see docs/audit-schema.md).
pub const SUBJECT_KEYS: &[&str] = &["subject", "enduser.id", "user.id"];
pub const AGENT_KEYS: &[&str] = &["agent", "gen_ai.agent.id", "gen_ai.agent.name"];
pub const TENANT_KEYS: &[&str] = &["tenant", "tenant.id"];

/// The columns copied out of a record for indexing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Indexed {
    pub time_ms: i64,
    pub subject: Option<String>,
    pub agent: Option<String>,
    pub tenant: Option<String>,
    pub server: Option<String>,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub request_id: Option<String>,
    pub direction: Option<String>,
}

/// A record ready to append: validated, canonical, its columns extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub canonical: String,
    pub indexed: Indexed,
}

impl Prepared {
    /// Prepares a parsed record.
    pub fn from_value(value: &Value) -> Result<Prepared> {
        let Value::Object(map) = value else {
            return Err(Error::InvalidRecord("not a JSON object".into()));
        };
        let indexed = extract(map)?;
        let mut canonical = String::with_capacity(512);
        write_canonical(value, &mut canonical);
        Ok(Prepared { canonical, indexed })
    }

    /// Prepares one line of JSON.
    pub fn from_json(line: &str) -> Result<Prepared> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| Error::InvalidRecord(e.to_string()))?;
        Prepared::from_value(&value)
    }

    /// Prepares anything that serialises to a record (such as
    /// `portcullis_core::audit::AuditRecord`).
    pub fn from_serialize<T: serde::Serialize + ?Sized>(record: &T) -> Result<Prepared> {
        let value =
            serde_json::to_value(record).map_err(|e| Error::InvalidRecord(e.to_string()))?;
        Prepared::from_value(&value)
    }
}

/// Derives the indexed columns from a record's object.
pub fn extract(map: &Map<String, Value>) -> Result<Indexed> {
    match map.get("schema") {
        Some(Value::String(s)) if s.starts_with(SCHEMA_PREFIX) => {}
        Some(other) => {
            return Err(Error::InvalidRecord(format!(
                "schema {other} is not {SCHEMA_PREFIX}*"
            )));
        }
        None => return Err(Error::InvalidRecord("no \"schema\" field".into())),
    }
    let time = match map.get("time") {
        Some(Value::String(t)) => t,
        _ => return Err(Error::InvalidRecord("no \"time\" string".into())),
    };
    let time_ms = parse_rfc3339_ms(time)
        .ok_or_else(|| Error::InvalidRecord(format!("time {time:?} is not RFC 3339")))?;
    Ok(Indexed {
        time_ms,
        subject: identity(map, SUBJECT_KEYS),
        agent: identity(map, AGENT_KEYS),
        tenant: identity(map, TENANT_KEYS),
        server: string(map, "server"),
        method: string(map, "mcp.method.name"),
        tool: string(map, "gen_ai.tool.name"),
        decision: string(map, "decision"),
        request_id: string(map, "request_id"),
        direction: string(map, "direction"),
    })
}

fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// An identity is a string, or an object naming it by `id` or `sub`.
fn identity(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match map.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => ["id", "sub"].iter().find_map(|f| match o.get(*f) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    })
}

/// Writes `value` as compact JSON with object keys sorted (byte order).
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping of a plain string cannot fail.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_and_extracts_columns() {
        let v = json!({
            "time": "2026-12-01T16:00:00.123Z",
            "schema": "portcullis.audit/v1",
            "gen_ai.tool.name": "search",
            "subject": {"sub": "alice"},
            "decision": "allow",
            "nested": {"b": 1, "a": [true, null, "x\"y"]},
        });
        let p = Prepared::from_value(&v).unwrap();
        assert_eq!(
            p.canonical,
            r#"{"decision":"allow","gen_ai.tool.name":"search","nested":{"a":[true,null,"x\"y"],"b":1},"schema":"portcullis.audit/v1","subject":{"sub":"alice"},"time":"2026-12-01T16:00:00.123Z"}"#
        );
        assert_eq!(p.indexed.subject.as_deref(), Some("alice"));
        assert_eq!(p.indexed.tool.as_deref(), Some("search"));
        assert_eq!(p.indexed.time_ms, 1_796_140_800_123);
        // Re-preparing the canonical text is a fixed point.
        assert_eq!(Prepared::from_json(&p.canonical).unwrap(), p);
    }

    #[test]
    fn rejects_what_is_not_a_record() {
        assert!(Prepared::from_json("[1]").is_err());
        assert!(Prepared::from_json(r#"{"time":"2026-12-01T16:00:00Z"}"#).is_err());
        assert!(Prepared::from_json(r#"{"schema":"portcullis.audit/v1"}"#).is_err());
        assert!(
            Prepared::from_json(r#"{"schema":"other","time":"2026-12-01T16:00:00Z"}"#).is_err()
        );
        assert!(Prepared::from_json("{").is_err());
    }
}

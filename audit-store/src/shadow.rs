//! Shadow MCP: servers that carried MCP traffic but are not in the registry.
//!
//! The filter marks a record of MCP traffic on a route no McpServer matches
//! with `"shadow": true`, the request's `authority` (and `path`), and no
//! `server`. There is no indexed column for these fields, and shadow
//! records are rare, so the listing reads the time range through the time
//! index and lets SQLite's `json_extract` pick the shadow records out; the
//! grouping by authority, with callers, happens here, where it can collect
//! distinct subjects and addresses without SQL string gymnastics.

use crate::Result;
use crate::time::format_rfc3339_ms;
use rusqlite::Connection;
use serde::Serialize;
use std::collections::BTreeMap;

/// Record fields a caller's network address may be in, in preference order
/// (OpenTelemetry's names first).
pub const ADDRESS_FIELDS: &[&str] = &[
    "network.peer.address",
    "client.address",
    "source.address",
    "source_address",
];

/// One caller of a shadow server: a subject, an address, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub count: u64,
}

/// One shadow server, by authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowServer {
    pub authority: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: u64,
    /// Distinct paths seen, sorted.
    pub paths: Vec<String>,
    /// Distinct methods seen, sorted.
    pub methods: Vec<String>,
    /// Distinct callers, most frequent first.
    pub callers: Vec<Caller>,
}

/// The shadow servers seen at or after `since_ms`, by authority.
pub fn shadow_servers(conn: &Connection, since_ms: Option<i64>) -> Result<Vec<ShadowServer>> {
    let address = ADDRESS_FIELDS
        .iter()
        .map(|f| format!("json_extract(record, '$.\"{f}\"')"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT COALESCE(json_extract(record, '$.authority'), ''), time_ms, subject, agent, \
         json_extract(record, '$.path'), method, COALESCE({address}) \
         FROM records WHERE time_ms >= ?1 AND json_extract(record, '$.shadow') = 1 \
         ORDER BY time_ms, seq"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([since_ms.unwrap_or(i64::MIN)])?;
    type Key = (Option<String>, Option<String>, Option<String>);
    struct Acc {
        server: ShadowServer,
        callers: BTreeMap<Key, u64>,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let authority: String = r.get(0)?;
        let authority = if authority.is_empty() {
            "(no authority)".to_string()
        } else {
            authority.to_ascii_lowercase()
        };
        let time: i64 = r.get(1)?;
        let subject: Option<String> = r.get(2)?;
        let agent: Option<String> = r.get(3)?;
        let path: Option<String> = r.get(4).ok().flatten();
        let method: Option<String> = r.get(5)?;
        let addr: Option<String> = r.get(6).ok().flatten();
        let acc = by.entry(authority.clone()).or_insert_with(|| Acc {
            server: ShadowServer {
                authority,
                first_seen_ms: time,
                last_seen_ms: time,
                count: 0,
                paths: Vec::new(),
                methods: Vec::new(),
                callers: Vec::new(),
            },
            callers: BTreeMap::new(),
        });
        let s = &mut acc.server;
        s.first_seen_ms = s.first_seen_ms.min(time);
        s.last_seen_ms = s.last_seen_ms.max(time);
        s.count += 1;
        for (set, v) in [(&mut s.paths, path), (&mut s.methods, method)] {
            if let Some(v) = v
                && let Err(i) = set.binary_search(&v)
            {
                set.insert(i, v);
            }
        }
        *acc.callers.entry((subject, agent, addr)).or_insert(0) += 1;
    }
    Ok(by
        .into_values()
        .map(|mut acc| {
            let mut callers: Vec<Caller> = acc
                .callers
                .into_iter()
                .map(|((subject, agent, address), count)| Caller {
                    subject,
                    agent,
                    address,
                    count,
                })
                .collect();
            callers.sort_by_key(|c| std::cmp::Reverse(c.count));
            acc.server.callers = callers;
            acc.server
        })
        .collect())
}

/// One shadow server as a JSON object, with `first_seen` and `last_seen`
/// added as RFC 3339 times beside the millisecond fields.
pub fn to_json(s: &ShadowServer) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(s).map_err(|e| crate::Error::Format(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "first_seen".into(),
            format_rfc3339_ms(s.first_seen_ms).into(),
        );
        o.insert("last_seen".into(), format_rfc3339_ms(s.last_seen_ms).into());
    }
    Ok(v)
}

/// The shadow servers as an aligned table (authority, first and last seen,
/// count, callers as `subject@address (n)`, paths), with a closing line
/// saying how many were seen since `since_ms`.
pub fn table(found: &[ShadowServer], since_ms: i64) -> String {
    let fmt = format_rfc3339_ms;
    let header = [
        "AUTHORITY",
        "FIRST_SEEN",
        "LAST_SEEN",
        "COUNT",
        "CALLERS",
        "PATHS",
    ];
    let rows: Vec<[String; 6]> = found
        .iter()
        .map(|s| {
            let callers: Vec<String> = s
                .callers
                .iter()
                .map(|c| {
                    let who = [c.subject.as_deref(), c.address.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("@");
                    let who = if who.is_empty() {
                        "(anonymous)".into()
                    } else {
                        who
                    };
                    format!("{who} ({})", c.count)
                })
                .collect();
            [
                s.authority.clone(),
                fmt(s.first_seen_ms),
                fmt(s.last_seen_ms),
                s.count.to_string(),
                callers.join(", "),
                s.paths.join(", "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    out.push_str(&format!(
        "({} shadow server{} since {})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        fmt(since_ms)
    ));
    out
}

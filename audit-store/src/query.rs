//! Queries: a filter over the indexed columns, and the three output formats.
//!
//! The headline question, "every call by user X to tool Y in the last 30
//! days", is equality on `subject` and `tool` plus a range on `time_ms`,
//! which is exactly the `(subject, tool, time_ms)` index: SQLite seeks to
//! the first matching entry and reads only the answer, already in time
//! order. Other filters use the time index or scan. Rows stream to the
//! writer, so a large answer never sits in memory (except for `table`,
//! which must measure its columns first).

use crate::store::{Store, from_i64};
use crate::{Error, Result};
use rusqlite::types::Value as SqlValue;
use serde_json::Value;
use std::io::Write;

/// What to select. `None` fields match anything; times are Unix ms,
/// `since` inclusive and `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub subject: Option<String>,
    pub agent: Option<String>,
    pub tenant: Option<String>,
    pub tool: Option<String>,
    pub server: Option<String>,
    pub method: Option<String>,
    pub decision: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: Option<u64>,
    /// Time order (the default), or seq (chain) order.
    pub order: Order,
}

/// The order rows come back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By `time_ms`, then seq: what an auditor reads.
    #[default]
    Time,
    /// By seq: the chain's order, for recomputing hashes from an export.
    Seq,
}

/// One stored record as a query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
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
    /// The record's canonical JSON, exactly as chained.
    pub record: String,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One record per line, as stored (so its hash can be recomputed).
    #[default]
    Json,
    Csv,
    Table,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s {
            "json" | "jsonl" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "table" => Ok(Format::Table),
            other => Err(format!("unknown format {other:?} (json, csv, table)")),
        }
    }
}

/// The SQL and parameters for a filter.
pub fn sql(filter: &Filter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(
        "SELECT seq, time_ms, subject, agent, tenant, server, method, tool, decision, \
         request_id, direction, record FROM records WHERE 1 = 1",
    );
    let mut args: Vec<SqlValue> = Vec::new();
    let text = [
        ("subject", &filter.subject),
        ("agent", &filter.agent),
        ("tenant", &filter.tenant),
        ("tool", &filter.tool),
        ("server", &filter.server),
        ("method", &filter.method),
        ("decision", &filter.decision),
    ];
    for (col, v) in text {
        if let Some(v) = v {
            args.push(SqlValue::Text(v.clone()));
            sql.push_str(&format!(" AND {col} = ?{}", args.len()));
        }
    }
    if let Some(s) = filter.since {
        args.push(SqlValue::Integer(s));
        sql.push_str(&format!(" AND time_ms >= ?{}", args.len()));
    }
    if let Some(u) = filter.until {
        args.push(SqlValue::Integer(u));
        sql.push_str(&format!(" AND time_ms < ?{}", args.len()));
    }
    sql.push_str(match filter.order {
        Order::Time => " ORDER BY time_ms, seq",
        Order::Seq => " ORDER BY seq",
    });
    if let Some(l) = filter.limit {
        args.push(SqlValue::Integer(i64::try_from(l).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    (sql, args)
}

impl Store {
    /// Streams the matching rows, in time order, to `each`.
    pub fn query_each(
        &self,
        filter: &Filter,
        mut each: impl FnMut(Row) -> Result<()>,
    ) -> Result<u64> {
        let (sql, args) = sql(filter);
        let mut stmt = self.connection().prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            each(Row {
                seq: from_i64(r.get(0)?)?,
                time_ms: r.get(1)?,
                subject: r.get(2)?,
                agent: r.get(3)?,
                tenant: r.get(4)?,
                server: r.get(5)?,
                method: r.get(6)?,
                tool: r.get(7)?,
                decision: r.get(8)?,
                request_id: r.get(9)?,
                direction: r.get(10)?,
                record: r.get(11)?,
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The matching rows, in time order.
    pub fn query(&self, filter: &Filter) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.query_each(filter, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// SQLite's plan for a filter (to check the index is used).
    pub fn explain(&self, filter: &Filter) -> Result<String> {
        let (sql, args) = sql(filter);
        let mut stmt = self
            .connection()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut plan = Vec::new();
        while let Some(r) = rows.next()? {
            plan.push(r.get::<_, String>(3)?);
        }
        Ok(plan.join("; "))
    }

    /// Writes the matching rows to `out` in `format`. Returns the count.
    pub fn query_to(&self, filter: &Filter, format: Format, out: &mut dyn Write) -> Result<u64> {
        match format {
            Format::Json => self.query_each(filter, |r| {
                writeln!(out, "{}", r.record)?;
                Ok(())
            }),
            Format::Csv => {
                writeln!(out, "{}", COLUMNS.join(","))?;
                self.query_each(filter, |r| {
                    let cells = cells(&r);
                    let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                    writeln!(out, "{}", line.join(","))?;
                    Ok(())
                })
            }
            Format::Table => {
                let mut table: Vec<Vec<String>> = Vec::new();
                let n = self.query_each(filter, |r| {
                    table.push(cells(&r));
                    Ok(())
                })?;
                write_table(&table, out)?;
                Ok(n)
            }
        }
    }
}

/// The columns of csv and table output.
pub const COLUMNS: &[&str] = &[
    "seq",
    "time",
    "subject",
    "agent",
    "tenant",
    "server",
    "direction",
    "method",
    "tool",
    "resource",
    "decision",
    "outcome",
    "rule",
    "request_id",
];

fn cells(r: &Row) -> Vec<String> {
    let rec: Value = serde_json::from_str(&r.record).unwrap_or(Value::Null);
    let field = |k: &str| match rec.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        r.seq.to_string(),
        field("time"),
        o(&r.subject),
        o(&r.agent),
        o(&r.tenant),
        o(&r.server),
        o(&r.direction),
        o(&r.method),
        o(&r.tool),
        field("mcp.resource.uri"),
        o(&r.decision),
        field("outcome"),
        field("rule"),
        o(&r.request_id),
    ]
}

/// RFC 4180 quoting: quote a cell holding a comma, quote or line break.
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn write_table(rows: &[Vec<String>], out: &mut dyn Write) -> Result<()> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(clean(cell).chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>, out: &mut dyn Write| -> Result<()> {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", parts.join("  ").trim_end()).map_err(Error::from)
    };
    line(&mut COLUMNS.iter().map(|c| c.to_uppercase()), out)?;
    for row in rows {
        line(&mut row.iter().map(|c| clean(c)), out)?;
    }
    writeln!(
        out,
        "({} record{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_formats() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!("table".parse::<Format>(), Ok(Format::Table));
        assert_eq!("jsonl".parse::<Format>(), Ok(Format::Json));
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn sql_binds_every_filter() {
        let f = Filter {
            subject: Some("alice".into()),
            tool: Some("t".into()),
            since: Some(1),
            until: Some(2),
            limit: Some(3),
            ..Filter::default()
        };
        let (sql, args) = sql(&f);
        assert!(sql.contains("subject = ?1 AND tool = ?2 AND time_ms >= ?3 AND time_ms < ?4"));
        assert!(sql.ends_with("ORDER BY time_ms, seq LIMIT ?5"));
        assert_eq!(args.len(), 5);
    }
}

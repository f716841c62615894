//! JSON-aware redaction and the report it produces.
//!
//! Redacting the raw bytes of a message would break it: a span can sit
//! inside an escape sequence, and a replacement could add a quote. So
//! redaction works on the parsed [`Value`]: every string (and every object
//! key) is scanned as decoded text, matched spans are replaced by
//! `[REDACTED:<ENTITY>]` (which needs no escaping), and the caller
//! serialises the value again. The result is always valid JSON with the same
//! structure, and the SSE event around it is rebuilt by the engine with the
//! same framing.
//!
//! The [`Report`] is what an audit record may hold: entity types, counts,
//! rule ids, JSON pointers and offsets, never the matched text.

use super::{Action, Direction, Finding, Scanner};
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Most findings listed in one report (counts keep counting past it).
pub const MAX_REPORT_FINDINGS: usize = 256;

/// The replacement text for an entity.
pub fn placeholder(entity: &str) -> String {
    format!("[REDACTED:{entity}]")
}

/// One finding inside a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonFinding {
    /// RFC 6901 pointer of the string (for a key: of its object, with
    /// `key: true`).
    pub pointer: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
    pub entity: String,
    pub rule_id: String,
    pub action: Action,
    /// Byte offsets in the string before redaction.
    pub start: usize,
    pub end: usize,
}

/// What a redaction pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Findings per entity type (all actions but `Off`).
    pub counts: BTreeMap<String, u32>,
    /// Some finding's action is `Block`: refuse the message.
    pub blocked: bool,
    /// Spans replaced.
    pub redacted: u32,
    /// The first [`MAX_REPORT_FINDINGS`] findings.
    pub findings: Vec<JsonFinding>,
    /// More findings than were listed.
    pub truncated: bool,
}

impl Report {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.counts.is_empty()
    }

    /// Whether the value was changed.
    pub fn modified(&self) -> bool {
        self.redacted > 0
    }

    /// Adds another report's findings (two parts of one message).
    pub fn merge(&mut self, other: Report) {
        for (k, n) in other.counts {
            *self.counts.entry(k).or_insert(0) += n;
        }
        self.blocked |= other.blocked;
        self.redacted = self.redacted.saturating_add(other.redacted);
        for f in other.findings {
            if self.findings.len() >= MAX_REPORT_FINDINGS {
                self.truncated = true;
                break;
            }
            self.findings.push(f);
        }
        self.truncated |= other.truncated;
    }

    /// Total findings.
    pub fn total(&self) -> u64 {
        self.counts.values().map(|&c| u64::from(c)).sum()
    }

    fn record(&mut self, pointer: &str, key: bool, f: &Finding, action: Action) {
        *self.counts.entry(f.entity.clone()).or_insert(0) += 1;
        if action == Action::Block {
            self.blocked = true;
        }
        if matches!(action, Action::Redact | Action::Block) {
            self.redacted += 1;
        }
        if self.findings.len() < MAX_REPORT_FINDINGS {
            self.findings.push(JsonFinding {
                pointer: pointer.to_owned(),
                key,
                entity: f.entity.clone(),
                rule_id: f.rule_id.clone(),
                action,
                start: f.start,
                end: f.end,
            });
        } else {
            self.truncated = true;
        }
    }
}

/// `text` with the spans of `Redact` and `Block` findings replaced.
/// Findings must be sorted and non-overlapping (as the scanner returns them).
pub fn apply<'a>(text: &'a str, findings: &[(Finding, Action)]) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut last = 0;
    for (f, action) in findings {
        if !matches!(action, Action::Redact | Action::Block) || f.start < last {
            continue;
        }
        let (Some(before), true) = (text.get(last..f.start), f.end <= text.len()) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(before);
        buf.push_str(&placeholder(&f.entity));
        last = f.end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(text.get(last..).unwrap_or(""));
            Cow::Owned(buf)
        }
    }
}

fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

/// Redacts `value` in place; see the module documentation.
pub fn redact_json(scanner: &Scanner, value: &mut Value, direction: Direction) -> Report {
    let mut report = Report::default();
    let mut pointer = String::new();
    walk(scanner, value, direction, &mut pointer, &mut report);
    report
}

fn walk(
    scanner: &Scanner,
    value: &mut Value,
    direction: Direction,
    pointer: &mut String,
    report: &mut Report,
) {
    match value {
        Value::String(s) => {
            let findings = scanner.scan_text_for(s, direction);
            if findings.is_empty() {
                return;
            }
            for (f, a) in &findings {
                report.record(pointer, false, f, *a);
            }
            if let Cow::Owned(new) = apply(s, &findings) {
                *s = new;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(scanner, item, direction, pointer, report);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            service_account(scanner, map, direction, pointer, report);
            redact_keys(scanner, map, direction, pointer, report);
            for (k, v) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_token(k));
                walk(scanner, v, direction, pointer, report);
                pointer.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A GCP service-account key as a JSON object: its `private_key_id` is
/// 40 hex digits that no text pattern can tell from a hash, so the object's
/// shape (`"type": "service_account"`) decides. The `private_key` value is
/// caught by the private-key pattern.
fn service_account(
    scanner: &Scanner,
    map: &mut Map<String, Value>,
    direction: Direction,
    pointer: &str,
    report: &mut Report,
) {
    const ENTITY: &str = "GCP_SERVICE_ACCOUNT_KEY";
    if map.get("type").and_then(Value::as_str) != Some("service_account") {
        return;
    }
    let action = scanner.action_for(ENTITY, direction);
    if action == Action::Off {
        return;
    }
    if let Some(Value::String(id)) = map.get_mut("private_key_id") {
        if id.starts_with("[REDACTED:") {
            return;
        }
        let f = Finding {
            entity: ENTITY.into(),
            rule_id: "secret.gcp-service-account-object".into(),
            start: 0,
            end: id.len(),
        };
        report.record(&format!("{pointer}/private_key_id"), false, &f, action);
        if matches!(action, Action::Redact | Action::Block) {
            *id = placeholder(ENTITY);
        }
    }
}

/// Object keys can carry PII too (maps keyed by email address). A redacted
/// key that collides with an existing one gets a `#2`, `#3`... suffix, so
/// no member is lost and no duplicate key is produced.
fn redact_keys(
    scanner: &Scanner,
    map: &mut Map<String, Value>,
    direction: Direction,
    pointer: &str,
    report: &mut Report,
) {
    let mut renames: Vec<(String, String)> = Vec::new();
    for k in map.keys() {
        let findings = scanner.scan_text_for(k, direction);
        for (f, a) in &findings {
            report.record(pointer, true, f, *a);
        }
        if let Cow::Owned(new) = apply(k, &findings) {
            renames.push((k.clone(), new));
        }
    }
    if renames.is_empty() {
        return;
    }
    let old = std::mem::take(map);
    for (k, v) in old {
        let new_key = renames
            .iter()
            .find(|(from, _)| *from == k)
            .map(|(_, to)| to.clone())
            .unwrap_or(k);
        let mut candidate = new_key.clone();
        let mut n = 2;
        while map.contains_key(&candidate) {
            candidate = format!("{new_key}#{n}");
            n += 1;
        }
        map.insert(candidate, v);
    }
}

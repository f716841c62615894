//! What changed between two bundles, in the terms a reviewer approves:
//! servers added or removed, status changes, tools newly allowed or
//! dropped, pins, identity, content policy, rules.
//!
//! Documents are matched by kind and `metadata.name`, and compared as JSON
//! trees, so a kind or field added to the schema later diffs without a
//! change here. Arrays of objects that each carry a `name`, `uri` or `id`
//! are matched by that key (a reordered tool list is no change), and arrays
//! of plain values as sets (a scope added is `+ scope`). Only the wording
//! knows kinds: a path under `spec.tools` of an McpServer reads as "tool",
//! under `spec.rules` of a Policy as "rule", and so on.

use portcullis_core::bundle::BundleJson;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One change, as `bundle diff --format json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `McpServer`, `Policy`, ...; `Bundle` for the bundle's own fields.
    pub kind: String,
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Where in the document (`spec.tools[get-weather].pin`); empty for a
    /// whole document.
    pub path: String,
    /// What it is to a reviewer: `server`, `status`, `tool`, `pin`,
    /// `identity`, `content`, `rule`, `setting`, `version`, `signature` or
    /// `field`.
    pub category: &'static str,
    /// One line for the text output.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// Every change from `old` to `new`, documents in kind and name order.
pub fn diff(old: &BundleJson, new: &BundleJson) -> Vec<Change> {
    let mut out = Vec::new();
    let docs = |b: &BundleJson| -> BTreeMap<(String, String), Value> {
        b.documents
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.source = None;
                let v = serde_json::to_value(&d).unwrap_or(Value::Null);
                ((d.kind, d.metadata.name), v)
            })
            .collect()
    };
    let (a, b) = (docs(old), docs(new));
    let mut keys: Vec<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (kind, name) = key;
        match (a.get(key), b.get(key)) {
            (None, Some(doc)) => out.push(whole(kind, name, "added", doc)),
            (Some(doc), None) => out.push(whole(kind, name, "removed", doc)),
            (Some(x), Some(y)) => {
                let mut leaves = Vec::new();
                walk(x, y, &mut Vec::new(), &mut leaves);
                for leaf in leaves {
                    out.push(word(kind, name, leaf));
                }
            }
            (None, None) => {}
        }
    }
    if old.signature != new.signature {
        let summary = match (&old.signature, &new.signature) {
            (None, Some(s)) => format!("now signed (key {})", s.key_id),
            (Some(_), None) => "no longer signed".to_owned(),
            (Some(a), Some(b)) if a.key_id != b.key_id => {
                format!("signing key {} → {}", a.key_id, b.key_id)
            }
            _ => "signature changed".to_owned(),
        };
        out.push(Change {
            kind: "Bundle".into(),
            name: String::new(),
            change: "changed",
            path: "signature".into(),
            category: "signature",
            summary,
            old: old
                .signature
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
            new: new
                .signature
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
        });
    }
    out
}

fn whole(kind: &str, name: &str, change: &'static str, doc: &Value) -> Change {
    let spec = doc.get("spec").unwrap_or(&Value::Null);
    let summary = match kind {
        "McpServer" => {
            let mut s = format!("server {change}");
            if change == "added" {
                let mut facts = Vec::new();
                if let Some(status) = spec.get("status") {
                    facts.push(format!("status {}", status_text(status)));
                }
                if let Some(route) = spec.get("match") {
                    facts.push(format!("match {}", compact(route)));
                }
                let tools: Vec<String> = spec
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|t| {
                        t.iter()
                            .filter_map(|t| t.get("name").and_then(Value::as_str))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                facts.push(if tools.is_empty() {
                    "no tools allowed".to_owned()
                } else {
                    format!("tools allowed: {}", tools.join(", "))
                });
                s.push_str(&format!(" ({})", facts.join("; ")));
            }
            s
        }
        "Policy" => format!("policy {change}"),
        "ContentPolicy" => format!("content policy {change}"),
        "Settings" => format!("settings {change}"),
        "IdentityProvider" => format!("identity provider {change}"),
        _ => format!("document {change}"),
    };
    Change {
        kind: kind.into(),
        name: name.into(),
        change,
        path: String::new(),
        category: category_of_kind(kind),
        summary,
        old: (change == "removed").then(|| doc.clone()),
        new: (change == "added").then(|| doc.clone()),
    }
}

fn category_of_kind(kind: &str) -> &'static str {
    match kind {
        "McpServer" => "server",
        "Policy" => "rule",
        "ContentPolicy" => "content",
        "Settings" => "setting",
        "IdentityProvider" => "identity",
        _ => "field",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    /// An array element matched by its key field, or a plain value of a set.
    Item(String),
}

fn path_text(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Item(i) => {
                s.push('[');
                s.push_str(i);
                s.push(']');
            }
        }
    }
    s
}

/// A difference at one path: `None` on a side where it is absent.
struct Leaf {
    path: Vec<Seg>,
    old: Option<Value>,
    new: Option<Value>,
}

fn walk(a: &Value, b: &Value, path: &mut Vec<Seg>, out: &mut Vec<Leaf>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                path.push(Seg::Key(k.clone()));
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(p, q, path, out),
                    (p, q) => out.push(Leaf {
                        path: path.clone(),
                        old: p.cloned(),
                        new: q.cloned(),
                    }),
                }
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) => match (keyed(x), keyed(y)) {
            (Some(p), Some(q)) => {
                let mut keys: Vec<&String> = p.keys().chain(q.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    path.push(Seg::Item(k.clone()));
                    match (p.get(k), q.get(k)) {
                        (Some(m), Some(n)) => walk(m, n, path, out),
                        (m, n) => out.push(Leaf {
                            path: path.clone(),
                            old: m.cloned(),
                            new: n.cloned(),
                        }),
                    }
                    path.pop();
                }
            }
            _ => out.push(Leaf {
                path: path.clone(),
                old: Some(a.clone()),
                new: Some(b.clone()),
            }),
        },
        _ => out.push(Leaf {
            path: path.clone(),
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
    }
}

/// An array as a map from each element's identity, when it has one: the
/// `name`, `uri` or `id` of objects that all carry it, or the value itself
/// for arrays of plain values. `None` (compare the array whole) when
/// identities repeat or the elements are mixed.
fn keyed(items: &[Value]) -> Option<BTreeMap<String, Value>> {
    let mut map = BTreeMap::new();
    if items.iter().all(|v| !v.is_object() && !v.is_array()) {
        for v in items {
            let k = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            if map.insert(k, v.clone()).is_some() {
                return None;
            }
        }
        return Some(map);
    }
    let field = ["name", "uri", "id"].into_iter().find(|f| {
        items
            .iter()
            .all(|v| v.get(*f).and_then(Value::as_str).is_some())
    })?;
    for v in items {
        let k = v.get(field).and_then(Value::as_str)?.to_owned();
        if map.insert(k, v.clone()).is_some() {
            return None;
        }
    }
    Some(map)
}

/// A leaf in reviewer terms.
fn word(kind: &str, name: &str, leaf: Leaf) -> Change {
    let change = match (&leaf.old, &leaf.new) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        _ => "changed",
    };
    let path = path_text(&leaf.path);
    let segs: Vec<&Seg> = leaf.path.iter().collect();
    let key = |i: usize| match segs.get(i) {
        Some(Seg::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    let item = |i: usize| match segs.get(i) {
        Some(Seg::Item(k)) => Some(k.as_str()),
        _ => None,
    };
    let arrow = || {
        format!(
            "{} → {}",
            leaf.old.as_ref().map_or("(none)".into(), compact),
            leaf.new.as_ref().map_or("(none)".into(), compact)
        )
    };
    let (category, summary): (&'static str, String) = match (kind, key(0), key(1)) {
        ("McpServer", Some("spec"), Some("status")) => {
            let show = |v: &Option<Value>| v.as_ref().map_or("(none)".into(), status_text);
            if segs.len() == 2 {
                (
                    "status",
                    format!("status {} → {}", show(&leaf.old), show(&leaf.new)),
                )
            } else {
                ("status", format!("{path}: {}", arrow()))
            }
        }
        ("McpServer", Some("spec"), Some(list @ ("tools" | "resources" | "prompts"))) => {
            let noun = match list {
                "tools" => "tool",
                "resources" => "resource",
                _ => "prompt",
            };
            match (item(2), key(3)) {
                (Some(entry), None) => match change {
                    "added" => {
                        let pin = leaf
                            .new
                            .as_ref()
                            .and_then(|v| v.get("pin"))
                            .map(|p| format!(" (pinned {})", compact(p)))
                            .unwrap_or_default();
                        ("tool", format!("{noun} {entry} newly allowed{pin}"))
                    }
                    "removed" => ("tool", format!("{noun} {entry} no longer allowed")),
                    _ => ("tool", format!("{noun} {entry}: {}", arrow())),
                },
                (Some(entry), Some("pin")) => (
                    "pin",
                    match change {
                        "added" => format!("{noun} {entry}: now pinned {}", show_new(&leaf)),
                        "removed" => format!("{noun} {entry}: pin removed"),
                        _ => format!("{noun} {entry}: pin {}", arrow()),
                    },
                ),
                _ => ("tool", format!("{list} list: {}", arrow())),
            }
        }
        ("McpServer", Some("spec"), Some("serverVersion")) => {
            ("pin", format!("server version pin {}", arrow()))
        }
        ("McpServer", Some("spec"), Some("pinning" | "onPinFailure")) => {
            ("pin", format!("{path}: {}", arrow()))
        }
        ("McpServer", Some("spec"), Some("identity")) => {
            ("identity", set_or_arrow(&path, change, &leaf, &segs))
        }
        ("McpServer", Some("spec"), Some("contentPolicy")) => {
            ("content", format!("content policy {}", arrow()))
        }
        ("McpServer", Some("spec"), Some("match")) => ("server", format!("{path}: {}", arrow())),
        ("Policy", Some("spec"), Some("rules")) => match (item(2), segs.len()) {
            (Some(rule), 3) => (
                "rule",
                match change {
                    "added" => format!("rule {rule} added: {}", show_new(&leaf)),
                    "removed" => format!("rule {rule} removed"),
                    _ => format!("rule {rule} changed: {}", arrow()),
                },
            ),
            (Some(rule), _) => (
                "rule",
                format!(
                    "rule {rule}: {}",
                    set_or_arrow(
                        &path_text(leaf.path.get(3..).unwrap_or_default()),
                        change,
                        &leaf,
                        &segs
                    )
                ),
            ),
            _ => ("rule", format!("rules: {}", arrow())),
        },
        ("Policy", _, _) => ("rule", set_or_arrow(&path, change, &leaf, &segs)),
        ("ContentPolicy", _, _) => ("content", set_or_arrow(&path, change, &leaf, &segs)),
        ("Settings", Some("spec"), Some(_)) => (
            "setting",
            format!(
                "setting {}: {}",
                path_text(leaf.path.get(1..).unwrap_or_default()),
                arrow()
            ),
        ),
        ("IdentityProvider", _, _) => ("identity", set_or_arrow(&path, change, &leaf, &segs)),
        _ => ("field", set_or_arrow(&path, change, &leaf, &segs)),
    };
    Change {
        kind: kind.into(),
        name: name.into(),
        change,
        path,
        category,
        summary,
        old: leaf.old,
        new: leaf.new,
    }
}

fn show_new(leaf: &Leaf) -> String {
    leaf.new.as_ref().map_or("(none)".into(), compact)
}

/// `path: + value` / `path: - value` for set members and added or removed
/// fields, else `path: old → new`.
fn set_or_arrow(path: &str, change: &str, leaf: &Leaf, segs: &[&Seg]) -> String {
    let is_item = matches!(segs.last(), Some(Seg::Item(_)));
    match (change, &leaf.old, &leaf.new) {
        ("added", _, Some(v)) if is_item => {
            format!("{}: + {}", parent_path(path), compact(v))
        }
        ("removed", Some(v), _) if is_item => {
            format!("{}: - {}", parent_path(path), compact(v))
        }
        ("added", _, Some(v)) => format!("{path}: added {}", compact(v)),
        ("removed", Some(v), _) => format!("{path}: removed (was {})", compact(v)),
        (_, old, new) => format!(
            "{path}: {} → {}",
            old.as_ref().map_or("(none)".into(), compact),
            new.as_ref().map_or("(none)".into(), compact)
        ),
    }
}

fn parent_path(path: &str) -> &str {
    path.rsplit_once('[').map_or(path, |(p, _)| p)
}

/// A status in a line: a plain string as itself, an object by its main
/// field (`state`, `phase` or `value`) and the rest compact.
fn status_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let main = ["state", "phase", "value"]
                .iter()
                .find_map(|k| m.get(*k).and_then(Value::as_str));
            match main {
                Some(main) => {
                    let rest: Map<String, Value> = m
                        .iter()
                        .filter(|(k, _)| !["state", "phase", "value"].contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if rest.is_empty() {
                        main.to_owned()
                    } else {
                        format!("{main} {}", compact(&Value::Object(rest)))
                    }
                }
                None => compact(v),
            }
        }
        v => compact(v),
    }
}

/// Compact JSON, cut at 120 characters.
fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        let mut cut: String = s.chars().take(117).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

/// The JSON report: both versions and every change.
pub fn to_json(old: &BundleJson, new: &BundleJson, changes: &[Change]) -> Value {
    serde_json::json!({
        "old": old.version,
        "new": new.version,
        "changes": changes,
    })
}

/// The text report: one block per document, `+` added, `-` removed, `~`
/// changed.
pub fn render_text(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".into();
    }
    let mut out = String::new();
    let mut current: Option<(&str, &str)> = None;
    for c in changes {
        let doc = (c.kind.as_str(), c.name.as_str());
        let mark = match c.change {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        if c.path.is_empty() {
            out.push_str(&format!("{mark} {}/{}: {}\n", c.kind, c.name, c.summary));
            current = None;
            continue;
        }
        if current != Some(doc) {
            if c.kind == "Bundle" {
                out.push_str("~ bundle:\n");
            } else {
                out.push_str(&format!("~ {}/{}:\n", c.kind, c.name));
            }
            current = Some(doc);
        }
        out.push_str(&format!("    {mark} {}\n", c.summary));
    }
    let n = changes.len();
    out.push_str(&format!("{n} change{}\n", if n == 1 { "" } else { "s" }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::bundle::assemble;
    use portcullis_core::test_util::doc;
    use serde_json::json;

    // Kinds and fields the compiler may not know yet (status, Policy) are
    // diffed from the JSON alone.
    #[test]
    fn status_and_policy_rules_generically() {
        let old = assemble(vec![
            doc("McpServer", "crm", json!({"status": "approved"})),
            doc(
                "Policy",
                "default",
                json!({"rules": [
                    {"name": "deny-deletes", "effect": "deny", "tools": ["delete-*"]},
                    {"name": "old-rule", "effect": "allow"},
                ]}),
            ),
        ]);
        let new = assemble(vec![
            doc(
                "McpServer",
                "crm",
                json!({"status": {"state": "deprecated", "sunset": "2027-01-01"}}),
            ),
            doc(
                "Policy",
                "default",
                json!({"rules": [
                    {"name": "new-rule", "effect": "deny"},
                    {"name": "deny-deletes", "effect": "deny", "tools": ["delete-*", "drop-*"]},
                ]}),
            ),
        ]);
        let changes = diff(&old, &new);
        let summaries: Vec<&str> = changes.iter().map(|c| c.summary.as_str()).collect();
        assert!(
            summaries.contains(&r#"status approved → deprecated {"sunset":"2027-01-01"}"#),
            "{summaries:?}"
        );
        assert!(
            summaries.contains(&r#"rule new-rule added: {"name":"new-rule","effect":"deny"}"#),
            "{summaries:?}"
        );
        assert!(
            summaries.contains(&"rule old-rule removed"),
            "{summaries:?}"
        );
        assert!(
            summaries.contains(&r#"rule deny-deletes: tools: + "drop-*""#),
            "{summaries:?}"
        );
        assert_eq!(changes.len(), 4, "{summaries:?}");
        assert!(
            changes
                .iter()
                .all(|c| c.category == "status" || c.category == "rule")
        );
    }
}

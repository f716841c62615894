//! What the bundle and the audit store say, as facts to score.

use crate::{DAY_MS, Error, RUNBOOK_ANNOTATION};
use audit_store::time::now_ms;
use audit_store::{Config, Filter, Store};
use serde_json::Value;

/// What the bundle says, read generically from its JSON documents.
#[derive(Debug, Default)]
pub struct BundleFacts {
    pub version: String,
    pub servers: Vec<ServerFacts>,
    pub providers: usize,
    pub providers_with_tenant: usize,
    pub content_policies: Vec<String>,
    pub policies: Vec<PolicyFacts>,
    pub unmatched_deny: bool,
    pub settings_at: String,
    pub runbook: Option<String>,
}

/// What one McpServer document says.
#[derive(Debug, Default)]
pub struct ServerFacts {
    pub name: String,
    /// `file:line` of the document.
    pub at: String,
    pub owner: Option<String>,
    pub classification: Option<String>,
    pub server_version: Option<String>,
    pub status: Option<String>,
    pub last_review: Option<String>,
    pub scoped: bool,
    pub tools: usize,
    pub allow_all_tools: bool,
    pub literal_tools: usize,
    pub pinned_tools: usize,
    pub pinning_strict: bool,
    pub vetted: bool,
    pub identity: bool,
    /// mint, strip or passthrough.
    pub upstream: Option<String>,
    pub tool_scopes: bool,
    pub content_policy: Option<String>,
    pub runbook: Option<String>,
}

/// What one Policy document says.
#[derive(Debug, Default)]
pub struct PolicyFacts {
    pub name: String,
    pub at: String,
    pub rules: usize,
    pub argument_rules: usize,
    pub attribute_rules: usize,
    pub approval_rules: usize,
    pub shadow_rules: usize,
    pub limits: usize,
}

fn at(doc: &Value) -> String {
    let file = doc
        .pointer("/source/file")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match doc.pointer("/source/line").and_then(Value::as_u64) {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn nonempty(v: &Value, p: &str) -> bool {
    match v.pointer(p) {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

impl BundleFacts {
    /// Reads a compiled bundle, as JSON.
    pub fn read(bundle: &Value) -> BundleFacts {
        let mut f = BundleFacts {
            version: str_at(bundle, "/version").unwrap_or("?").to_string(),
            ..BundleFacts::default()
        };
        let empty = Vec::new();
        let docs = bundle
            .get("documents")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let kind = |d: &Value| {
            d.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        for d in docs {
            let name = str_at(d, "/metadata/name").unwrap_or("?").to_string();
            match kind(d).as_str() {
                "IdentityProvider" => {
                    f.providers += 1;
                    if nonempty(d, "/spec/claims/tenant") {
                        f.providers_with_tenant += 1;
                    }
                }
                "ContentPolicy" => f.content_policies.push(name),
                "Settings" => {
                    f.unmatched_deny = str_at(d, "/spec/unmatchedRoutes") == Some("deny");
                    f.settings_at = at(d);
                    f.runbook = str_at(
                        d,
                        &format!("/metadata/annotations/{}", esc(RUNBOOK_ANNOTATION)),
                    )
                    .map(str::to_owned);
                }
                "Policy" => f.policies.push(PolicyFacts::read(name, d)),
                _ => {}
            }
        }
        for d in docs.iter().filter(|d| kind(d) == "McpServer") {
            let s = ServerFacts::read(d, &f.content_policies);
            f.servers.push(s);
        }
        f
    }
}

/// Escapes a key for a JSON pointer.
fn esc(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

impl ServerFacts {
    fn read(d: &Value, content_policies: &[String]) -> ServerFacts {
        let spec = d.get("spec").cloned().unwrap_or(Value::Null);
        let label = |k: &str| {
            str_at(&spec, &format!("/{k}"))
                .or_else(|| str_at(d, &format!("/metadata/labels/{k}")))
                .map(str::to_owned)
        };
        let tools = spec
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect();
        let literal = names
            .iter()
            .filter(|n| !n.contains(['*', '?', '[']))
            .count();
        let pinned = tools
            .iter()
            .filter(|t| t.get("pin").and_then(Value::as_str).is_some())
            .count();
        let identity = spec.get("identity").filter(|v| v.is_object());
        let upstream = identity.map(|i| {
            match (
                str_at(i, "/upstreamToken/mode"),
                i.pointer("/upstreamToken/key")
                    .is_some_and(|k| !k.is_null()),
            ) {
                (Some(m), _) => m.to_string(),
                (None, true) => "mint".to_string(),
                (None, false) => "strip".to_string(),
            }
        });
        // As the bundle compiles it: a named policy, else `default`, else
        // the built-in one; only `contentPolicy: none` leaves a server
        // unscreened.
        let content_policy = match str_at(&spec, "/contentPolicy") {
            Some(portcullis_core::bundle::NO_CONTENT_POLICY) => None,
            Some(named) => Some(named.to_owned()),
            None => Some(
                if content_policies
                    .iter()
                    .any(|c| c == portcullis_core::bundle::DEFAULT_CONTENT_POLICY)
                {
                    portcullis_core::bundle::DEFAULT_CONTENT_POLICY
                } else {
                    portcullis_core::bundle::BUILTIN_CONTENT_POLICY
                }
                .to_string(),
            ),
        };
        ServerFacts {
            name: str_at(d, "/metadata/name").unwrap_or("?").to_string(),
            at: at(d),
            owner: label("owner"),
            classification: label("classification"),
            server_version: str_at(&spec, "/serverVersion").map(str::to_owned),
            status: str_at(&spec, "/status").map(str::to_owned),
            last_review: str_at(&spec, "/lastReview").map(str::to_owned),
            scoped: nonempty(&spec, "/environments") || nonempty(&spec, "/tenants"),
            tools: names.len(),
            allow_all_tools: names.contains(&"*"),
            literal_tools: literal,
            pinned_tools: pinned,
            pinning_strict: str_at(&spec, "/pinning") == Some("strict"),
            vetted: d
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .is_some_and(|a| a.keys().any(|k| k.starts_with("portcullis.dev/vet"))),
            identity: identity.is_some(),
            upstream,
            tool_scopes: identity.is_some_and(|i| {
                nonempty(i, "/scopes/toolDefault") || nonempty(i, "/scopes/tools")
            }),
            content_policy,
            runbook: str_at(
                d,
                &format!("/metadata/annotations/{}", esc(RUNBOOK_ANNOTATION)),
            )
            .map(str::to_owned),
        }
    }

    /// Pinned to a version: `spec.serverVersion`, or a pin on every
    /// literal tool.
    pub fn version_pinned(&self) -> bool {
        self.server_version.is_some()
            || (self.literal_tools > 0 && self.pinned_tools >= self.literal_tools)
    }
}

impl PolicyFacts {
    fn read(name: String, d: &Value) -> PolicyFacts {
        let empty = Vec::new();
        let rules = d
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let effect = |r: &Value| {
            r.get("effect")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let policy_shadow = d.pointer("/spec/enforce").and_then(Value::as_bool) == Some(false);
        PolicyFacts {
            name,
            at: at(d),
            rules: rules.len(),
            argument_rules: rules
                .iter()
                .filter(|r| {
                    nonempty(r, "/arguments")
                        || str_at(r, "/when").is_some_and(|w| w.contains("arguments"))
                })
                .count(),
            attribute_rules: rules
                .iter()
                .filter(|r| {
                    [
                        "/subject",
                        "/arguments",
                        "/when",
                        "/source",
                        "/time",
                        "/headers",
                    ]
                    .iter()
                    .any(|p| nonempty(r, p))
                })
                .count(),
            approval_rules: rules
                .iter()
                .filter(|r| effect(r) == "requireApproval")
                .count(),
            shadow_rules: if policy_shadow {
                rules.len().max(1)
            } else {
                rules
                    .iter()
                    .filter(|r| r.get("enforce").and_then(Value::as_bool) == Some(false))
                    .count()
            },
            limits: d
                .pointer("/spec/limits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        }
    }
}

/// What the audit store shows.
#[derive(Debug, Default)]
pub struct AuditFacts {
    pub records: u64,
    pub records_30d: u64,
    pub tool_calls_90d: u64,
    pub attributed_90d: u64,
    pub with_agent_90d: u64,
    pub chain_ok: bool,
    pub chain_finding: Option<String>,
    pub checkpoints: u64,
    pub unsealed: u64,
    pub anchor_seq: Option<u64>,
    pub oldest_ms: Option<i64>,
    pub findings_30d: u64,
    pub shadow_30d: u64,
    pub passthrough_30d: u64,
    pub pin_checks_30d: u64,
    pub traced: u64,
    pub headline_indexed: bool,
    pub headline_ms: f64,
    pub headline_rows: u64,
    pub headline_subject: Option<(String, String)>,
}

impl AuditFacts {
    /// Reads the store at `db`: counts over the last 30 and 90 days, the
    /// chain's verification, and the headline query, timed.
    pub fn read(db: &std::path::Path) -> Result<AuditFacts, Error> {
        let store = Store::open_existing(db, Config::default())?;
        let conn = store.connection();
        let now = now_ms();
        let count = |sql: &str, since: i64| -> Result<u64, Error> {
            let n: i64 = conn.query_row(sql, [since], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let d30 = now - 30 * DAY_MS;
        let d90 = now - 90 * DAY_MS;
        let mut f = AuditFacts {
            records: count("SELECT COUNT(*) FROM records WHERE ?1 = ?1", 0)?,
            records_30d: count("SELECT COUNT(*) FROM records WHERE time_ms >= ?1", d30)?,
            tool_calls_90d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 AND method = 'tools/call'",
                d90,
            )?,
            attributed_90d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 AND method = 'tools/call' \
                 AND subject IS NOT NULL",
                d90,
            )?,
            with_agent_90d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 AND method = 'tools/call' \
                 AND agent IS NOT NULL",
                d90,
            )?,
            findings_30d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 \
                 AND json_extract(record, '$.findings') IS NOT NULL",
                d30,
            )?,
            shadow_30d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 \
                 AND json_extract(record, '$.shadow') = 1",
                d30,
            )?,
            passthrough_30d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 \
                 AND json_extract(record, '$.upstream_token') = 'passthrough'",
                d30,
            )?,
            pin_checks_30d: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 AND method = 'tools/list'",
                d30,
            )?,
            traced: count(
                "SELECT COUNT(*) FROM records WHERE time_ms >= ?1 AND \
                 (json_extract(record, '$.trace_id') IS NOT NULL \
                  OR json_extract(record, '$.traceparent') IS NOT NULL)",
                d30,
            )?,
            ..AuditFacts::default()
        };
        f.oldest_ms = conn.query_row("SELECT MIN(time_ms) FROM records", [], |r| r.get(0))?;
        let report = store.verify(None)?;
        f.chain_ok = report.is_ok();
        f.chain_finding = report.finding.as_ref().map(ToString::to_string);
        f.checkpoints = report.checkpoints;
        f.unsealed = report.unsealed;
        f.anchor_seq = report.anchor_seq;
        // The headline question, asked for real: the latest attributed
        // call's subject and tool, over the last 30 days.
        let latest: Option<(String, String)> = conn
            .query_row(
                "SELECT subject, tool FROM records WHERE subject IS NOT NULL AND tool IS NOT NULL \
                 ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((subject, tool)) = latest {
            let filter = Filter {
                subject: Some(subject.clone()),
                tool: Some(tool.clone()),
                since: Some(d30),
                ..Filter::default()
            };
            f.headline_indexed = store
                .explain(&filter)?
                .contains("records_subject_tool_time");
            let t = std::time::Instant::now();
            f.headline_rows = store.query_each(&filter, |_| Ok(()))?;
            f.headline_ms = t.elapsed().as_secs_f64() * 1000.0;
            f.headline_subject = Some((subject, tool));
        }
        Ok(f)
    }
}

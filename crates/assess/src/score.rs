//! The twelve questions and the six pillars' maturity levels, scored from
//! the facts.

use crate::{AuditFacts, BundleFacts, DAY_MS, RUNBOOK_ANNOTATION, ServerFacts};
use audit_store::time::now_ms;
use compliance::crosswalk::Crosswalk;
use serde::Serialize;

/// One of the twelve questions, scored.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub number: u8,
    pub pillar: &'static str,
    pub question: &'static str,
    /// 0 (no), 1 (partial), 2 (yes).
    pub score: u8,
    pub earned: Vec<String>,
    pub missing: Vec<String>,
}

/// One pillar's maturity level.
#[derive(Debug, Clone, Serialize)]
pub struct PillarLevel {
    pub pillar: &'static str,
    pub level: u8,
    pub name: &'static str,
    /// What the level reached rests on.
    pub earned: Vec<String>,
    /// What the next level needs.
    pub missing: Vec<String>,
    /// The pillar's questions' points, and their maximum.
    pub points: u8,
    pub max_points: u8,
}

/// The whole assessment, as `assess --format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub bundle_version: String,
    /// The audit store read, as the caller names it (`None` from
    /// [`assess`]; the caller sets it).
    pub audit: Option<String>,
    pub total: u8,
    pub max_total: u8,
    /// The framework's band for the total (0-6 Ungoverned ... 23-24 Optimized).
    pub level: u8,
    pub level_name: &'static str,
    pub questions: Vec<Point>,
    pub pillars: Vec<PillarLevel>,
}

const LEVEL_NAMES: [&str; 5] = ["Ungoverned", "Reactive", "Managed", "Defined", "Optimized"];

fn level_name(l: u8) -> &'static str {
    LEVEL_NAMES.get(usize::from(l)).copied().unwrap_or("?")
}

/// The framework's bands for the 0-24 total.
pub fn band(total: u8) -> u8 {
    match total {
        0..=6 => 0,
        7..=12 => 1,
        13..=18 => 2,
        19..=22 => 3,
        _ => 4,
    }
}

struct Q {
    earned: Vec<String>,
    missing: Vec<String>,
}

impl Q {
    fn new() -> Q {
        Q {
            earned: Vec::new(),
            missing: Vec::new(),
        }
    }
    fn ok(&mut self, s: impl Into<String>) {
        self.earned.push(s.into());
    }
    fn no(&mut self, s: impl Into<String>) {
        self.missing.push(s.into());
    }
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

fn servers_where(f: &BundleFacts, p: impl Fn(&ServerFacts) -> bool) -> Vec<String> {
    f.servers
        .iter()
        .filter(|s| p(s))
        .map(|s| format!("{} ({})", s.name, s.at))
        .collect()
}

/// Scores everything.
pub fn assess(f: &BundleFacts, a: Option<&AuditFacts>) -> Assessment {
    let n = f.servers.len();
    let no_audit = "no audit store given: pass --audit DB (records from `portcullis audit ingest`)";
    let mut qs: Vec<Point> = Vec::new();
    let mut push = |number: u8, pillar: &'static str, question: &'static str, score: u8, q: Q| {
        qs.push(Point {
            number,
            pillar,
            question,
            score,
            earned: q.earned,
            missing: q.missing,
        })
    };

    // 1. Inventory with version, owner, classification.
    let mut q = Q::new();
    let s1 = if n == 0 {
        q.no("no McpServer documents: register each server (kind: McpServer)");
        0
    } else {
        q.ok(format!(
            "{n} McpServer(s) registered in bundle {}",
            f.version
        ));
        let no_owner = servers_where(f, |s| s.owner.is_none());
        let no_class = servers_where(f, |s| s.classification.is_none());
        let no_version = servers_where(f, |s| !s.version_pinned());
        for (gap, what) in [
            (&no_owner, "spec.owner"),
            (&no_class, "spec.classification"),
            (&no_version, "spec.serverVersion (or a pin on every tool)"),
        ] {
            if gap.is_empty() {
                q.ok(format!("every server has {what}"));
            } else {
                q.no(format!("add {what} to {}", list(gap)));
            }
        }
        if no_owner.is_empty() && no_class.is_empty() && no_version.is_empty() {
            2
        } else {
            1
        }
    };
    push(
        1,
        "registry",
        "Can you list every MCP server running in production, including version, owner, and classification?",
        s1,
        q,
    );

    // 2. Block a server with one change.
    let mut q = Q::new();
    let s2 = if n == 0 {
        q.no("no registry to change: add McpServer documents");
        0
    } else {
        q.ok("one bundle change blocks a server: `status: blocked` on its McpServer, or remove its tools");
        if f.unmatched_deny {
            q.ok(format!(
                "Settings.spec.unmatchedRoutes is deny ({}): a server removed from the registry is refused, not passed through",
                f.settings_at
            ));
            2
        } else {
            q.no("set Settings.spec.unmatchedRoutes: deny, so traffic to a server removed from (or never in) the registry is refused instead of passed through");
            1
        }
    };
    push(
        2,
        "registry",
        "Can you block a server from running in production through a single change, without coordinating across teams?",
        s2,
        q,
    );

    // 3. Per-user, per-tool, non-replayable tokens.
    let mut q = Q::new();
    let no_identity = servers_where(f, |s| !s.identity);
    let not_minted = servers_where(f, |s| s.identity && s.upstream.as_deref() != Some("mint"));
    let no_tool_scopes = servers_where(f, |s| s.identity && !s.tool_scopes);
    let s3 = if n == 0 || no_identity.len() == n {
        q.no("no server has identity settings: add McpServer.spec.identity (providers, resource, scopes, upstreamToken.key)");
        0
    } else {
        q.ok(format!(
            "{} of {n} servers validate a per-user token for their own audience (identity.resource)",
            n - no_identity.len()
        ));
        let mut full = no_identity.is_empty();
        if !no_identity.is_empty() {
            q.no(format!("add spec.identity to {}", list(&no_identity)));
        }
        if not_minted.is_empty() {
            q.ok("every identity server gets a per-call minted token (upstreamToken.key): the client's token is never replayed upstream");
        } else {
            full = false;
            q.no(format!(
                "set identity.upstreamToken.key (mint a per-call token) on {}",
                list(&not_minted)
            ));
        }
        if no_tool_scopes.is_empty() {
            q.ok(
                "per-tool scopes (identity.scopes.toolDefault or .tools) on every identity server",
            );
        } else {
            full = false;
            q.no(format!(
                "add identity.scopes.toolDefault (e.g. [\"tools:{{tool}}\"]) to {}",
                list(&no_tool_scopes)
            ));
        }
        if let Some(a) = a
            && a.passthrough_30d > 0
        {
            full = false;
            q.no(format!(
                "{} records in the last 30 days passed the client's token through (upstream_token: passthrough)",
                a.passthrough_30d
            ));
        }
        if full { 2 } else { 1 }
    };
    push(
        3,
        "identity",
        "Does every tool call carry a per-user, per-tool token that cannot be replayed elsewhere?",
        s3,
        q,
    );

    // 4. Attribution of agent actions to a human, 90 days.
    let mut q = Q::new();
    let s4 = match a {
        None => {
            q.no(no_audit);
            if n > 0 && no_identity.is_empty() {
                q.ok("every server requires a verified token, so records will name the subject");
                1
            } else {
                0
            }
        }
        Some(a) if a.tool_calls_90d == 0 => {
            q.no("no tools/call records in the last 90 days to attribute");
            0
        }
        Some(a) => {
            let share = a.attributed_90d as f64 / a.tool_calls_90d as f64;
            let line = format!(
                "{} of {} tool calls in the last 90 days ({:.1}%) name a subject; {} name an agent",
                a.attributed_90d,
                a.tool_calls_90d,
                share * 100.0,
                a.with_agent_90d
            );
            if a.attributed_90d == a.tool_calls_90d {
                q.ok(line);
                2
            } else if a.attributed_90d > 0 {
                q.ok(line);
                q.no(format!(
                    "{} tool calls have no subject: put every server behind identity ({})",
                    a.tool_calls_90d - a.attributed_90d,
                    if no_identity.is_empty() {
                        "all are now".to_string()
                    } else {
                        list(&no_identity)
                    }
                ));
                1
            } else {
                q.no(line);
                0
            }
        }
    };
    push(
        4,
        "identity",
        "Can you attribute every agent action in the last 90 days to a responsible human?",
        s4,
        q,
    );

    // 5. Parameters, not just names.
    let mut q = Q::new();
    let arg_rules: usize = f.policies.iter().map(|p| p.argument_rules).sum();
    let attr_rules: usize = f.policies.iter().map(|p| p.attribute_rules).sum();
    let s5 = if arg_rules > 0 {
        q.ok(format!(
            "{arg_rules} Policy rule(s) test the call's arguments (arguments schema or a `when` over arguments): {}",
            list(&f.policies.iter().filter(|p| p.argument_rules > 0).map(|p| format!("{} ({})", p.name, p.at)).collect::<Vec<_>>())
        ));
        2
    } else if attr_rules > 0 || !f.policies.is_empty() {
        q.ok(format!(
            "{} Policy document(s) with {attr_rules} attribute rule(s)",
            f.policies.len()
        ));
        q.no("add a Policy rule with `arguments` (a JSON Schema) or a `when` expression over arguments");
        1
    } else {
        q.no("decisions use tool names only (McpServer.spec.tools): add a kind: Policy document with rules that test `arguments`");
        0
    };
    push(
        5,
        "policy",
        "Does your policy engine evaluate tool parameters, not just tool names?",
        s5,
        q,
    );

    // 6. PII and injection screening both ways.
    let mut q = Q::new();
    let unscreened = servers_where(f, |s| s.content_policy.is_none());
    let s6 = if n == 0 || unscreened.len() == n {
        q.no(format!(
            "content security is turned off (contentPolicy: none) on {}: remove it to get the built-in policy (PII redaction and injection screening on requests and responses)",
            list(&unscreened)
        ));
        0
    } else {
        let mut used: Vec<String> = f
            .servers
            .iter()
            .filter_map(|s| s.content_policy.clone())
            .collect();
        used.sort();
        used.dedup();
        q.ok(format!(
            "ContentPolicy {} screens PII and injection on requests and responses for {} of {n} servers",
            list(&used),
            n - unscreened.len()
        ));
        if let Some(a) = a {
            q.ok(format!(
                "{} records with content findings in the last 30 days",
                a.findings_30d
            ));
        }
        if unscreened.is_empty() {
            2
        } else {
            q.no(format!(
                "content security is off (contentPolicy: none) on {}",
                list(&unscreened)
            ));
            1
        }
    };
    push(
        6,
        "policy",
        "Are PII redaction and prompt injection screening enforced on both request and response payloads?",
        s6,
        q,
    );

    // 7. Human approval for high-risk calls.
    let mut q = Q::new();
    let approvals: usize = f.policies.iter().map(|p| p.approval_rules).sum();
    let s7 = if approvals > 0 {
        q.ok(format!(
            "{approvals} Policy rule(s) with effect requireApproval"
        ));
        2
    } else {
        q.no("no rule requires approval: add a Policy rule with `effect: requireApproval` for writes, payments and deletions");
        0
    };
    push(
        7,
        "policy",
        "Are high-risk tool calls gated by human approval before execution?",
        s7,
        q,
    );

    // 8. The headline query.
    let mut q = Q::new();
    let s8 = match a {
        None => {
            q.no(no_audit);
            0
        }
        Some(a) => match &a.headline_subject {
            None => {
                q.no("no record names both a subject and a tool: put servers behind identity so the question has answers");
                0
            }
            Some((subject, tool)) => {
                let line = format!(
                    "asked it: every call by {subject} to {tool} in the last 30 days: {} rows in {:.1} ms",
                    a.headline_rows, a.headline_ms
                );
                if a.headline_indexed {
                    q.ok(format!("{line}, through the (subject, tool, time) index"));
                    2
                } else {
                    q.ok(line);
                    q.no("the query does not use the records_subject_tool_time index: re-create the store with this version");
                    1
                }
            }
        },
    };
    push(
        8,
        "observability",
        "Can you query \"every tool call by user X to tool Y in the last 30 days\" in under five minutes?",
        s8,
        q,
    );

    // 9. Immutable, 90 days, auditor access.
    let mut q = Q::new();
    let s9 = match a {
        None => {
            q.no(no_audit);
            0
        }
        Some(a) if !a.chain_ok => {
            q.no(format!(
                "the audit chain does not verify: {}",
                a.chain_finding.as_deref().unwrap_or("?")
            ));
            0
        }
        Some(a) => {
            q.ok(format!("hash chain of {} records verifies", a.records));
            let mut score = 2;
            if a.checkpoints > 0 {
                q.ok(format!(
                    "{} signed checkpoints; {} records not yet sealed",
                    a.checkpoints, a.unsealed
                ));
            } else {
                score = 1;
                q.no("no signed checkpoints: ingest with a key (`audit ingest --key`) so a consistent rewrite shows");
            }
            let age_days = a.oldest_ms.map(|o| (now_ms() - o) / DAY_MS).unwrap_or(0);
            match a.anchor_seq {
                None => q.ok(format!(
                    "nothing pruned: every record since the first ({age_days} days ago) is kept"
                )),
                Some(s) if age_days >= 89 => q.ok(format!(
                    "pruned from the signed checkpoint at {s}, keeping {age_days} days"
                )),
                Some(s) => {
                    score = 1;
                    q.no(format!(
                        "pruned at {s} leaving only {age_days} days: keep at least 90 (`audit prune --retention 90d`)"
                    ));
                }
            }
            q.ok("auditors query it directly: `portcullis audit query` and signed `portcullis evidence export` packs");
            score
        }
    };
    push(
        9,
        "observability",
        "Is your audit log immutable, retained for at least 90 days, and accessible to auditors directly?",
        s9,
        q,
    );

    // 10. Vetting pipeline.
    let mut q = Q::new();
    let unvetted = servers_where(f, |s| {
        !(s.vetted || (s.literal_tools > 0 && s.pinned_tools >= s.literal_tools))
    });
    let no_status = servers_where(f, |s| s.status.is_none());
    let s10 = if n == 0 {
        q.no("no servers registered");
        0
    } else if unvetted.len() == n {
        q.no("no server shows vetting: add servers with `portcullis vet` (records portcullis.dev/vet-* annotations) and pin their tools (`portcullis pin`)");
        0
    } else {
        q.ok(format!(
            "{} of {n} servers were vetted (vet annotations or every tool pinned)",
            n - unvetted.len()
        ));
        let mut full = unvetted.is_empty();
        if !unvetted.is_empty() {
            q.no(format!("vet and pin {}", list(&unvetted)));
        }
        if no_status.is_empty() {
            q.ok("every server states its lifecycle status (submitted, approved, blocked, deprecated)");
        } else {
            full = false;
            q.no(format!(
                "state spec.status explicitly on {}",
                list(&no_status)
            ));
        }
        if full { 2 } else { 1 }
    };
    push(
        10,
        "lifecycle",
        "Does every new server go through a documented vetting pipeline before being approved?",
        s10,
        q,
    );

    // 11. Mapped to three or more frameworks.
    let mut q = Q::new();
    let s11 = match Crosswalk::embedded() {
        Ok(c) => {
            q.ok(format!(
                "crosswalk {} maps {} controls to {} frameworks ({})",
                c.version,
                c.controls.len(),
                c.frameworks.len(),
                c.frameworks.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            if a.is_some_and(|a| a.records > 0) {
                q.ok("and the audit store holds records to evidence them (`portcullis evidence export`)");
                2
            } else {
                q.no("no audit records to evidence the mapped controls: pass --audit DB");
                1
            }
        }
        Err(e) => {
            q.no(format!(
                "the embedded crosswalk is invalid: {}",
                e.join("; ")
            ));
            0
        }
    };
    push(
        11,
        "compliance",
        "Are your governance controls mapped to at least three compliance frameworks?",
        s11,
        q,
    );

    // 12. Incident response runbook.
    let mut q = Q::new();
    let no_runbook = servers_where(f, |s| s.runbook.is_none());
    let s12 = if let Some(r) = &f.runbook {
        q.ok(format!(
            "Settings names the runbook ({RUNBOOK_ANNOTATION}: {r})"
        ));
        2
    } else if n > 0 && no_runbook.is_empty() {
        q.ok(format!(
            "every server names its runbook ({RUNBOOK_ANNOTATION})"
        ));
        2
    } else if no_runbook.len() < n {
        q.ok(format!(
            "{} of {n} servers name a runbook",
            n - no_runbook.len()
        ));
        q.no(format!(
            "add metadata.annotations.\"{RUNBOOK_ANNOTATION}\" to Settings or to {}",
            list(&no_runbook)
        ));
        1
    } else {
        q.no(format!(
            "no runbook is referenced: add metadata.annotations.\"{RUNBOOK_ANNOTATION}\": <URL> to the Settings document (the runbook itself is yours to write; Portcullis cannot see it)"
        ));
        0
    };
    push(
        12,
        "compliance",
        "Do you have a documented incident response runbook for MCP-specific failures?",
        s12,
        q,
    );

    let pillars = maturity(f, a, &qs);
    let total: u8 = qs.iter().map(|p| p.score).sum();
    let level = band(total);
    Assessment {
        bundle_version: f.version.clone(),
        audit: None,
        total,
        max_total: 24,
        level,
        level_name: level_name(level),
        questions: qs,
        pillars,
    }
}

/// A criterion for a maturity level: the level it belongs to, whether it
/// holds, and what it is (said as earned when it holds, as missing when not).
type Criterion = (u8, bool, String);

fn level_of(pillar: &'static str, criteria: Vec<Criterion>, qs: &[Point]) -> PillarLevel {
    let mut level = 0u8;
    for l in 1..=4u8 {
        if criteria.iter().filter(|c| c.0 == l).all(|c| c.1) {
            level = l;
        } else {
            break;
        }
    }
    let earned = criteria
        .iter()
        .filter(|c| c.0 <= level && c.1)
        .map(|c| format!("L{}: {}", c.0, c.2))
        .collect();
    let missing = criteria
        .iter()
        .filter(|c| c.0 == level + 1 && !c.1)
        .map(|c| format!("L{}: {}", c.0, c.2))
        .collect();
    let mine: Vec<&Point> = qs.iter().filter(|p| p.pillar == pillar).collect();
    PillarLevel {
        pillar,
        level,
        name: level_name(level),
        earned,
        missing,
        points: mine.iter().map(|p| p.score).sum(),
        max_points: u8::try_from(mine.len() * 2).unwrap_or(u8::MAX),
    }
}

fn maturity(f: &BundleFacts, a: Option<&AuditFacts>, qs: &[Point]) -> Vec<PillarLevel> {
    let n = f.servers.len();
    let all = |p: &dyn Fn(&ServerFacts) -> bool| n > 0 && f.servers.iter().all(p);
    let any = |p: &dyn Fn(&ServerFacts) -> bool| f.servers.iter().any(p);
    let has_records = a.is_some_and(|a| a.records > 0);
    let recent = a.is_some_and(|a| a.records_30d > 0);
    let chain = a.is_some_and(|a| a.chain_ok && a.checkpoints > 0);
    let attributed =
        a.is_some_and(|a| a.tool_calls_90d > 0 && a.attributed_90d == a.tool_calls_90d);
    let rules: usize = f.policies.iter().map(|p| p.rules).sum();
    let attr_rules: usize = f.policies.iter().map(|p| p.attribute_rules).sum();
    let approvals: usize = f.policies.iter().map(|p| p.approval_rules).sum();
    let shadow_rules: usize = f.policies.iter().map(|p| p.shadow_rules).sum();
    let limits: usize = f.policies.iter().map(|p| p.limits).sum();
    let crosswalk = Crosswalk::embedded().ok();
    let frameworks = crosswalk.as_ref().map_or(0, |c| c.frameworks.len());

    vec![
        level_of(
            "registry",
            vec![
                (1, n > 0 || a.is_some_and(|a| a.shadow_30d > 0), "a list of known servers (McpServer documents)".into()),
                (2, any(&|s| s.status.as_deref().unwrap_or("approved") == "approved" && s.tools > 0), "an approved allow-list: an approved McpServer with its tools listed (default deny)".into()),
                (3, all(&|s| s.version_pinned()), "every server version-pinned (spec.serverVersion or tool pins)".into()),
                (3, all(&|s| s.classification.is_some() && s.owner.is_some()), "every server classified with an owner (spec.classification, spec.owner)".into()),
                (3, all(&|s| s.scoped), "every server scoped to environments or tenants (spec.environments / spec.tenants)".into()),
                (4, all(&|s| s.vetted), "every entry came through automated vetting (`portcullis vet` annotations)".into()),
                (4, f.unmatched_deny, "nothing outside the catalogue runs (Settings.spec.unmatchedRoutes: deny)".into()),
            ],
            qs,
        ),
        level_of(
            "identity",
            vec![
                (1, any(&|s| s.identity), "OAuth on some servers (McpServer.spec.identity)".into()),
                (2, all(&|s| s.identity) && f.providers > 0, "OAuth on every server, per-user tokens from an IdentityProvider".into()),
                (3, all(&|s| matches!(s.upstream.as_deref(), Some("mint") | Some("strip"))) && a.is_none_or(|a| a.passthrough_30d == 0), "token isolation on every server (upstreamToken mint or strip, no passthrough)".into()),
                (3, all(&|s| s.tool_scopes), "per-tool scopes on every server (identity.scopes.toolDefault / .tools)".into()),
                (4, f.providers >= 2 && f.providers_with_tenant > 0, "identity federated across providers and tenants (2+ IdentityProviders, claims.tenant)".into()),
            ],
            qs,
        ),
        level_of(
            "policy",
            vec![
                (1, n > 0, "some policy exists (registry allow-lists)".into()),
                (2, all(&|s| s.tools > 0 && !s.allow_all_tools), "basic RBAC at the gateway: every server lists its tools (no \"*\")".into()),
                (3, attr_rules > 0, "tool-level ABAC: Policy rules over subject, arguments or context".into()),
                (3, n > 0 && f.servers.iter().all(|s| s.content_policy.is_some()), "content filtering on every server (ContentPolicy)".into()),
                (3, approvals > 0, "human-in-the-loop gates (Policy rules with effect: requireApproval)".into()),
                (3, limits > 0, "rate limits or budgets on calls (Policy spec.limits)".into()),
                (4, shadow_rules > 0, "simulation before enforcement (Policy rules with enforce: false)".into()),
                (4, rules > 0 && all(&|s| s.pinning_strict), "drift detection on every server (pinning: strict)".into()),
            ],
            qs,
        ),
        level_of(
            "observability",
            vec![
                (1, has_records, "audit records exist in a store (--audit)".into()),
                (2, recent, "centralised logs: records in the last 30 days".into()),
                (3, attributed, "per-call audit with a subject on every tool call (last 90 days)".into()),
                (3, chain, "tamper-evident: the chain verifies, with signed checkpoints".into()),
                (4, a.is_some_and(|a| a.traced > 0), "trace correlation: records carry a W3C trace id (trace_id / traceparent)".into()),
            ],
            qs,
        ),
        level_of(
            "lifecycle",
            vec![
                (1, any(&|s| s.last_review.is_some() || s.status.is_some()), "servers are reviewed (spec.lastReview or spec.status)".into()),
                (2, all(&|s| s.status.is_some()), "a submission workflow: every server states spec.status".into()),
                (3, all(&|s| s.vetted || (s.literal_tools > 0 && s.pinned_tools >= s.literal_tools)), "a vetting pipeline: every server vetted or pinned".into()),
                (3, all(&|s| !s.scoped || s.status.is_some()) && any(&|s| s.scoped), "staged promotion: servers approved per environment (spec.environments)".into()),
                (4, all(&|s| s.pinning_strict), "continuous re-validation: pinning: strict on every server".into()),
                (4, a.is_some_and(|a| a.pin_checks_30d > 0), "re-validation observed: tools/list checked in the last 30 days".into()),
            ],
            qs,
        ),
        level_of(
            "compliance",
            vec![
                (1, has_records, "audit findings can be tracked (an audit store with records)".into()),
                (2, frameworks >= 1, "one framework mapped (compliance/crosswalk.yaml)".into()),
                (3, frameworks >= 6, "all six frameworks mapped".into()),
                (3, chain, "evidence automation started: a verifiable store for `portcullis evidence export`".into()),
                (4, false, "continuous compliance evidence: a scheduled `portcullis evidence export` into your GRC tool (an operating practice Portcullis cannot observe)".into()),
            ],
            qs,
        ),
    ]
}

//! The content pillar: what servers' answers and clients' arguments carry.
//!
//! * **Answers** ([`review_answer`]): by the method of the request they
//!   answer, the method's own checks (the server-version pin, tools/list pins
//!   and the poisoning screen, list entries screened), then every string of
//!   the result or error screened and redacted, base64 blobs included.
//! * **Arguments** ([`review_arguments`]): PII and secrets in a tools/call's
//!   arguments, redacted in the forwarded body or refused.
//! * **What the tools looked like** ([`ToolMemory`]): each server's last
//!   tools/list as this proxy saw it, so that a later call to a tool whose
//!   definition failed its pin or screening is refused (the quarantine), and
//!   a call's arguments are validated against the tool's own advertised
//!   `inputSchema`. Both are shared by every worker VM through the host's
//!   shared data when it has some.
//!
//! Every function returns findings and verdicts the engine records and acts
//! on as they are.

use crate::audit::{ContentFindings, PinFinding};
use crate::bundle::{PinFailure, Server};
use crate::env::{Env, metrics};
use crate::fleet::api::QuarantineEntry;
use crate::fleet::quarantine as fleet_q;
use crate::json::parse_strict;
use crate::pins::{PinCache, PinStatus};
use crate::scan::injection::Surface;
use crate::scan::{ContentPolicy, Inspection};
use crate::spec::truncate;
use crate::verdict::{DenyCause, Verdict};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What each server's last tools/list showed this VM.
#[derive(Debug)]
pub struct ToolMemory {
    /// The bundle version: shared keys are per bundle.
    version: String,
    tools: Mutex<BTreeMap<String, ToolState>>,
    /// Tools canonicalised and hashed so far (the others reused a pin).
    pins_hashed: AtomicU64,
    /// Tool definitions screened so far (the others reused their findings).
    tools_screened: AtomicU64,
    /// A fleet state service is configured: pin failures are pushed to it,
    /// and its quarantine is refused here too ([`crate::fleet::quarantine`]).
    fleet: bool,
    /// The fleet's list as last read from shared data, by its version, so a
    /// decision decodes it only when it changed.
    fleet_cache: Mutex<Option<FleetList>>,
}

/// The fleet's quarantine entries, with the version they were read at.
type FleetList = (Vec<u8>, Arc<Vec<QuarantineEntry>>);

/// What the last tools/list of a server showed.
#[derive(Debug, Clone, Default)]
struct ToolState {
    /// Tools refused until a later list shows them passing, with why.
    failed: BTreeMap<String, String>,
    /// The pin of each tool's last-seen definition.
    hashes: BTreeMap<String, String>,
    /// Names of the last complete (unpaged) list.
    names: Option<BTreeSet<String>>,
    /// Each tool's `inputSchema` as last served, compiled: a call's
    /// arguments must validate against it strictly.
    schemas: BTreeMap<String, ToolSchema>,
    /// The pins of the last list's tools, so an unchanged tool is not
    /// canonicalised and hashed again.
    pins: PinCache,
    /// The screening findings of the last list's tools, so an unchanged
    /// tool is not screened again.
    screens: crate::scan::ToolScreenCache,
}

/// A tool's advertised `inputSchema`, compiled once per definition.
#[derive(Debug, Clone)]
struct ToolSchema {
    /// The pin of the definition it came from (recompiled when it changes).
    hash: String,
    /// `None`: the schema did not compile (then only the policy's lax
    /// readings guard the call).
    validator: Option<Arc<jsonschema::Validator>>,
}

/// What a tools/call's arguments carry, and what the ContentPolicy makes of
/// it.
#[derive(Debug, Default)]
pub struct ArgumentReview {
    /// Findings for the record (types and counts, never values).
    pub findings: Option<ContentFindings>,
    /// The arguments were redacted in place: forward the rewritten body.
    pub modified: bool,
    /// Refused: what it carries is blocked on requests.
    pub refusal: Option<Verdict>,
}

/// PII and secrets in a tools/call's `arguments`, in the body itself, so a
/// redaction is what the upstream receives.
pub fn review_arguments(env: &mut dyn Env, server: &Server, args: &mut Value) -> ArgumentReview {
    let Some((policy_name, policy)) = &server.content else {
        return ArgumentReview::default();
    };
    let inspection = policy.inspect_arguments(args);
    let findings = summarize(env, &inspection);
    let refusal = inspection.blocked.then(|| {
        env.count(metrics::CONTENT_BLOCKED, 1);
        Verdict::deny(
            DenyCause::Content,
            format!(
                "the arguments carry {} which ContentPolicy/{policy_name} refuses on requests",
                findings
                    .as_ref()
                    .map(ContentFindings::types)
                    .unwrap_or_default()
            ),
            Some(format!("ContentPolicy/{policy_name}#pii")),
        )
    });
    ArgumentReview {
        modified: inspection.modified && !inspection.blocked,
        findings,
        refusal,
    }
}

/// Applies the server's pins and content policy to one answer, by the
/// method of the request it answers: the method's own checks (the
/// server-version pin, tools/list pins and poisoning screen, list
/// entries screened), then every string of the result or error screened
/// and redacted.
pub fn review_answer(
    env: &mut dyn Env,
    memory: &ToolMemory,
    server: &Server,
    method: Option<&str>,
    paged: bool,
    value: &mut Value,
) -> Review {
    let mut review = Review::default();
    if let Some(error) = value.get_mut("error") {
        review_content(env, server, Surface::ToolResult, error, &mut review);
        return review;
    }
    let Some(result) = value.get_mut("result") else {
        return review;
    };
    let kind = method.unwrap_or("");
    match kind {
        "initialize" => {
            let version = result
                .pointer("/serverInfo/version")
                .and_then(Value::as_str);
            if let Err((expected, actual)) = server.pins.check_server_version(version) {
                env.count(metrics::PINS_FAILED, 1);
                review.refuse = Some(format!(
                    "server version {actual:?} is not the approved {expected:?} (McpServer/{}.spec.serverVersion)",
                    server.name
                ));
                return review;
            }
        }
        "tools/list" => {
            if result.is_object() {
                memory.review_tools(env, server, paged, result, &mut review);
            }
            if review.refuse.is_none() {
                redact_tool_texts(env, server, result, &mut review);
            }
            return review;
        }
        "prompts/list" => review_entries(env, server, "prompts", "name", result, &mut review),
        "resources/list" => review_entries(env, server, "resources", "uri", result, &mut review),
        "resources/templates/list" => review_entries(
            env,
            server,
            "resourceTemplates",
            "uriTemplate",
            result,
            &mut review,
        ),
        _ => {}
    }
    if review.refuse.is_some() {
        return review;
    }
    let surface = match kind {
        "prompts/get" => Surface::Prompt,
        // What a server says of itself and its catalogue is read like a
        // tool's definition: where poisoning hides.
        "initialize"
        | "server/discover"
        | "prompts/list"
        | "resources/list"
        | "resources/templates/list" => Surface::ToolDefinition,
        _ => Surface::ToolResult,
    };
    review_content(env, server, surface, result, &mut review);
    review
}

impl ToolMemory {
    pub fn new(version: &str) -> ToolMemory {
        ToolMemory {
            version: version.to_owned(),
            tools: Mutex::new(BTreeMap::new()),
            pins_hashed: AtomicU64::new(0),
            tools_screened: AtomicU64::new(0),
            fleet: false,
            fleet_cache: Mutex::new(None),
        }
    }

    /// With a fleet state service: the quarantine is fleet-wide.
    pub fn fleet_wide(mut self) -> ToolMemory {
        self.fleet = true;
        self
    }

    /// The fleet's quarantine entries binding `server` (none without a
    /// fleet service, or before the first refresh).
    pub fn fleet_quarantine(&self, env: &dyn Env, server: &Server) -> Vec<QuarantineEntry> {
        self.fleet_entries(env)
            .iter()
            .filter(|e| fleet_q::applies(&server.name, |t| server.pins.pin(t), e))
            .cloned()
            .collect()
    }

    fn fleet_entries(&self, env: &dyn Env) -> Arc<Vec<QuarantineEntry>> {
        if !self.fleet {
            return Arc::default();
        }
        let Some(version) = env.shared_get(fleet_q::VERSION_KEY) else {
            return Arc::default();
        };
        let mut cache = self
            .fleet_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((v, entries)) = cache.as_ref()
            && *v == version
        {
            return Arc::clone(entries);
        }
        let Some((version, list)) = fleet_q::stored_list(env) else {
            return Arc::default();
        };
        let entries = Arc::new(list.entries);
        *cache = Some((version, Arc::clone(&entries)));
        entries
    }

    /// How many tool definitions this VM has canonicalised and hashed to
    /// check their pins: unchanged tools of a repeated tools/list reuse
    /// their pins and do not count.
    pub fn pins_hashed(&self) -> u64 {
        self.pins_hashed.load(Ordering::Relaxed)
    }

    /// Tool definitions screened so far.
    pub fn tools_screened(&self) -> u64 {
        self.tools_screened.load(Ordering::Relaxed)
    }

    /// Tools of `server` that calls are refused for, as this VM saw them.
    pub fn quarantined(&self, server: &str) -> Vec<String> {
        self.tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(server)
            .map(|s| s.failed.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A tools/list result: pins first (the rug-pull check), then poisoning
    /// screening; what fails is removed (or fails the list) and quarantined,
    /// so calls to it are refused until a later list shows it passing.
    fn review_tools(
        &self,
        env: &mut dyn Env,
        server: &Server,
        paged: bool,
        result: &mut Value,
        review: &mut Review,
    ) {
        let complete = !paged && result.get("nextCursor").is_none_or(Value::is_null);
        let Some(Value::Array(tools)) = result.get_mut("tools") else {
            return;
        };
        let received: BTreeSet<String> = tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let mut hashes: BTreeMap<String, String> = BTreeMap::new();
        // The cache is taken out while the list is checked and put back
        // below; a list checked meanwhile by the same VM only misses it.
        let (mut pin_cache, mut screen_cache) = {
            let mut state = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .get_mut(&server.name)
                .map(|st| {
                    (
                        std::mem::take(&mut st.pins),
                        std::mem::take(&mut st.screens),
                    )
                })
                .unwrap_or_default()
        };
        let report = server.pins.check_cached(tools, &mut pin_cache);
        let mut pushes: Vec<QuarantineEntry> = Vec::new();
        self.pins_hashed
            .fetch_add(report.hashed as u64, Ordering::Relaxed);
        for t in &report.tools {
            if !t.name.is_empty() && !t.actual.is_empty() {
                hashes.insert(t.name.clone(), t.actual.clone());
            }
            let (status, expected, why) = match &t.status {
                PinStatus::Mismatch { expected, .. } => (
                    "mismatch",
                    Some(expected.clone()),
                    format!(
                        "changed since it was pinned (pinned {expected}, served {})",
                        t.actual
                    ),
                ),
                PinStatus::Unpinned if !t.pass => (
                    "unpinned",
                    None,
                    format!(
                        "is not pinned, and McpServer/{} says pinning: strict",
                        server.name
                    ),
                ),
                PinStatus::Duplicate => (
                    "duplicate",
                    server.pins.pin(&t.name).map(str::to_owned),
                    "appeared twice in one tools/list".to_owned(),
                ),
                PinStatus::Invalid { reason } => {
                    review.pins.push(PinFinding {
                        tool: String::new(),
                        status: "invalid",
                        expected: None,
                        actual: None,
                        detail: Some(reason.clone()),
                    });
                    continue;
                }
                _ => continue,
            };
            if self.fleet {
                pushes.push(QuarantineEntry {
                    server: server.name.clone(),
                    tool: t.name.clone(),
                    pin: expected.clone().unwrap_or_default(),
                    seen: t.actual.clone(),
                    reason: why.clone(),
                });
            }
            review.pins.push(PinFinding {
                tool: t.name.clone(),
                status,
                expected,
                actual: Some(t.actual.clone()).filter(|a| !a.is_empty()),
                detail: None,
            });
            failed.insert(t.name.clone(), why);
        }
        for name in &report.removed {
            review.pins.push(PinFinding {
                tool: name.clone(),
                status: "missing",
                expected: server.pins.pin(name).map(str::to_owned),
                actual: None,
                detail: None,
            });
        }
        let pin_failures = report.failures().count();
        if pin_failures > 0 {
            env.count(metrics::PINS_FAILED, pin_failures as u64);
            match server.pin_failure {
                PinFailure::FailServer => {
                    let names: Vec<&str> = failed.keys().map(String::as_str).collect();
                    review.refuse = Some(format!(
                        "tools/list withheld: {pin_failures} tool(s) failed their pins ({}); McpServer/{} says onPinFailure: failServer",
                        names.join(", "),
                        server.name
                    ));
                    // The whole server is untrusted until its pins are reviewed.
                    for name in &received {
                        failed.entry(name.clone()).or_insert_with(|| {
                            "was served in a tools/list that failed its pins (onPinFailure: failServer)".to_owned()
                        });
                    }
                }
                PinFailure::RemoveTool => {
                    let n = report.retain_passing(tools);
                    review.removed_from_list = review.removed_from_list.saturating_add(n as u32);
                }
            }
        }
        // Tools another proxy of the fleet saw fail their pins are not
        // offered here either, whatever this upstream serves this proxy.
        let fleet_quarantined = self.fleet_quarantine(env, server);
        if review.refuse.is_none() && !fleet_quarantined.is_empty() {
            let before = tools.len();
            tools.retain(|t| {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                let hit = fleet_quarantined.iter().any(|e| e.tool == name);
                if hit && !failed.contains_key(name) {
                    review.pins.push(PinFinding {
                        tool: name.to_owned(),
                        status: "fleet_quarantined",
                        expected: None,
                        actual: None,
                        detail: None,
                    });
                }
                !hit
            });
            let n = before - tools.len();
            review.removed_from_list = review.removed_from_list.saturating_add(n as u32);
        }
        if review.refuse.is_none()
            && let Some((policy_name, policy)) = &server.content
        {
            let before = screen_cache.screened;
            let screens = policy.screen_tools_cached(tools, &mut screen_cache);
            self.tools_screened.fetch_add(
                screen_cache.screened.saturating_sub(before),
                Ordering::Relaxed,
            );
            let mut findings = ContentFindings::default();
            for sc in &screens {
                for f in &sc.findings {
                    note_screen_finding(env, &mut findings, f);
                }
                if sc.dropped {
                    env.count(metrics::POISONED_TOOLS_DROPPED, 1);
                    let rules: Vec<&str> = sc.findings.iter().map(|f| f.rule_id.as_str()).collect();
                    failed.insert(
                        sc.name.clone(),
                        format!(
                            "was screened as poisoned by ContentPolicy/{policy_name} ({})",
                            rules.join(", ")
                        ),
                    );
                    review.dropped.push(sc.name.clone());
                    review.removed_from_list = review.removed_from_list.saturating_add(1);
                }
            }
            if !screens.is_empty() {
                findings.action = if review.dropped.is_empty() {
                    "flagged"
                } else {
                    "dropped"
                };
                review.content = Some(findings);
            }
        }
        let passed: Vec<&String> = received
            .iter()
            .filter(|n| !failed.contains_key(*n))
            .collect();
        let compiled = self.compile_schemas(env, server, tools, &hashes, &failed);
        let snapshot = {
            let mut state = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
            let st = state.entry(server.name.clone()).or_default();
            for name in &passed {
                st.failed.remove(*name);
            }
            for (name, why) in &failed {
                st.failed.insert(name.clone(), why.clone());
            }
            st.hashes.extend(hashes);
            st.pins = pin_cache;
            st.screens = screen_cache;
            for (name, schema) in compiled {
                st.schemas.insert(name, schema);
            }
            if complete {
                if let Some(previous) = &st.names {
                    let (added, removed) = crate::pins::diff_names(previous, &received);
                    review.added = added;
                    review.removed = removed;
                }
                st.names = Some(received.clone());
            }
            st.failed.clone()
        };
        // The rest of the fleet refuses them too, once the root context
        // pushed them (its next tick).
        let known = self.fleet_entries(env);
        pushes.retain(|p| {
            !known
                .iter()
                .any(|k| k.server == p.server && k.tool == p.tool && k.pin == p.pin)
        });
        fleet_q::queue_pushes(env, &pushes);
        // Other worker VMs refuse the same tools: merge this list's verdicts
        // into the shared view rather than overwrite it with ours.
        let key = self.quarantine_key(server);
        let existing: Option<BTreeMap<String, String>> = env
            .shared_get(&key)
            .and_then(|b| serde_json::from_slice(&b).ok());
        if existing.is_none() && snapshot.is_empty() {
            // Nothing quarantined anywhere: no write on the common path.
            return;
        }
        let first_write = existing.is_none();
        let mut shared = existing.unwrap_or(snapshot);
        let before = shared.clone();
        for name in &passed {
            shared.remove(*name);
        }
        shared.extend(failed);
        if (first_write || shared != before)
            && let Ok(bytes) = serde_json::to_vec(&shared)
        {
            env.shared_set(&key, &bytes);
        }
    }

    /// Compiles the `inputSchema` of each passing tool whose definition
    /// changed since this VM last compiled it (by pin).
    fn compile_schemas(
        &self,
        env: &mut dyn Env,
        server: &Server,
        tools: &[Value],
        hashes: &BTreeMap<String, String>,
        failed: &BTreeMap<String, String>,
    ) -> Vec<(String, ToolSchema)> {
        let known: BTreeMap<String, String> = {
            let state = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .get(&server.name)
                .map(|st| {
                    st.schemas
                        .iter()
                        .map(|(n, s)| (n.clone(), s.hash.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(hash) = hashes.get(name) else {
                continue;
            };
            if failed.contains_key(name) || known.get(name) == Some(hash) {
                continue;
            }
            let schema = tool.get("inputSchema");
            let validator = schema.and_then(compile_input_schema);
            // Every worker VM validates against it, not only the one that
            // saw the list: published beside the quarantine, schema first.
            if let Some(schema) = schema {
                let key = self.schema_key(server, name);
                if env.shared_get(&format!("{key}#hash")).as_deref() != Some(hash.as_bytes())
                    && let Ok(bytes) = serde_json::to_vec(schema)
                    && env.shared_set(&format!("{key}#schema"), &bytes)
                {
                    env.shared_set(&format!("{key}#hash"), hash.as_bytes());
                }
            }
            out.push((
                name.to_owned(),
                ToolSchema {
                    hash: hash.clone(),
                    validator,
                },
            ));
        }
        out
    }

    /// The pin of `tool`'s definition in the server's last tools/list.
    pub fn last_seen_hash(&self, server: &Server, tool: &str) -> Option<String> {
        let state = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
        state.get(&server.name)?.hashes.get(tool).cloned()
    }

    /// Why calls to `tool` are refused, if its last-seen definition failed:
    /// the shared store when the host has one (all worker VMs agree), else
    /// this VM's own view.
    pub fn quarantine_reason(&self, env: &dyn Env, server: &Server, tool: &str) -> Option<String> {
        self.local_quarantine_reason(env, server, tool)
            .or_else(|| self.fleet_quarantine_reason(env, server, tool))
    }

    fn local_quarantine_reason(
        &self,
        env: &dyn Env,
        server: &Server,
        tool: &str,
    ) -> Option<String> {
        if let Some(bytes) = env.shared_get(&self.quarantine_key(server)) {
            return parse_strict(&bytes)
                .ok()?
                .get(tool)
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let state = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
        state.get(&server.name)?.failed.get(tool).cloned()
    }

    /// Why the fleet refuses `tool`: another proxy saw it fail the pin this
    /// bundle still gives it.
    fn fleet_quarantine_reason(
        &self,
        env: &dyn Env,
        server: &Server,
        tool: &str,
    ) -> Option<String> {
        self.fleet_entries(env)
            .iter()
            .find(|e| e.tool == tool && fleet_q::applies(&server.name, |t| server.pins.pin(t), e))
            .map(|e| {
                format!(
                    "{}, as a proxy of the fleet saw it (fleet-wide quarantine)",
                    e.reason
                )
            })
    }

    fn quarantine_key(&self, server: &Server) -> String {
        format!("portcullis.quarantine/{}/{}", self.version, server.name)
    }

    fn schema_key(&self, server: &Server, tool: &str) -> String {
        format!("portcullis.schema/{}/{}/{tool}", self.version, server.name)
    }

    /// The compiled `inputSchema` of `tool` as the server last advertised it
    /// to this proxy: the shared copy when its pin differs from this VM's
    /// (another worker saw a newer list), else this VM's own.
    pub fn tool_validator(
        &self,
        env: &dyn Env,
        server: &Server,
        tool: &str,
    ) -> Option<Arc<jsonschema::Validator>> {
        let local = self
            .tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&server.name)
            .and_then(|st| st.schemas.get(tool))
            .cloned();
        let key = self.schema_key(server, tool);
        let shared = env
            .shared_get(&format!("{key}#hash"))
            .and_then(|h| String::from_utf8(h).ok());
        match (shared, local) {
            (Some(hash), Some(l)) if l.hash == hash => l.validator,
            (Some(hash), _) => {
                let schema = parse_strict(&env.shared_get(&format!("{key}#schema"))?).ok()?;
                let validator = compile_input_schema(&schema);
                self.tools
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(server.name.clone())
                    .or_default()
                    .schemas
                    .insert(
                        tool.to_owned(),
                        ToolSchema {
                            hash,
                            validator: validator.clone(),
                        },
                    );
                validator
            }
            (None, local) => local.and_then(|l| l.validator),
        }
    }
}

/// Why a tools/call's arguments are refused by the tool's own
/// `inputSchema`, as the server last advertised it to this proxy
/// ([`ToolMemory::tool_validator`]): strict JSON Schema, so a string where
/// the server declares a number is refused, not left for a lax server to
/// coerce past a policy rule.
pub fn schema_refusal(
    validator: Option<&jsonschema::Validator>,
    server: &Server,
    tool: &str,
    arguments: Option<&Value>,
) -> Option<String> {
    let validator = validator?;
    let empty = Value::Object(serde_json::Map::new());
    let args = arguments.unwrap_or(&empty);
    let first = validator.iter_errors(args).next()?;
    let at = first.instance_path().to_string();
    Some(format!(
        "the arguments do not validate against tool {:?}'s inputSchema as McpServer/{} advertised it (at {:?}: {}); a server that coerces them could act on other values than the filter decided on",
        truncate(tool, 128),
        server.name,
        if at.is_empty() { "/" } else { at.as_str() },
        truncate(&first.to_string(), 200),
    ))
}

/// The audit summary of one inspection (types and counts, never values),
/// with the per-type counters reported.
pub fn summarize(env: &mut dyn Env, inspection: &Inspection) -> Option<ContentFindings> {
    if inspection.pii.is_clean() && inspection.screen.is_empty() {
        return None;
    }
    let mut f = ContentFindings::default();
    for (entity, n) in &inspection.pii.counts {
        f.pii.insert(entity.clone(), u64::from(*n));
        env.count(&format!("{}.{entity}", metrics::PII_FOUND), u64::from(*n));
    }
    for finding in &inspection.screen {
        note_screen_finding(env, &mut f, finding);
    }
    f.action = if inspection.blocked {
        "blocked"
    } else if inspection.modified {
        env.count(metrics::CONTENT_REDACTED, 1);
        "redacted"
    } else {
        "flagged"
    };
    Some(f)
}

/// Adds one screening finding to a record's summary, and counts it.
fn note_screen_finding(
    env: &mut dyn Env,
    findings: &mut ContentFindings,
    finding: &crate::scan::injection::Finding,
) {
    let category = finding.category.as_str();
    *findings.injection.entry(category.to_owned()).or_insert(0) += 1;
    if !findings.rules.contains(&finding.rule_id) {
        findings.rules.push(finding.rule_id.clone());
    }
    env.count(&format!("{}.{category}", metrics::INJECTION_FOUND), 1);
}

/// What reviewing one answer found and did.
#[derive(Debug, Default)]
pub struct Review {
    /// Withhold the answer, for this reason.
    pub refuse: Option<String>,
    /// The answer was rewritten (redacted, stripped, tools removed).
    pub changed: bool,
    pub content: Option<ContentFindings>,
    pub pins: Vec<PinFinding>,
    /// Tools dropped from a list (pins or screening), added and removed
    /// since the last complete list.
    pub dropped: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Tools removed by pins or screening (beside the allowlist's own).
    pub removed_from_list: u32,
}

/// Replaces every PII and secret span in the strings of `value`.
pub fn redact_all(scanner: &crate::scan::Scanner, value: &mut Value) {
    use crate::scan::Action;
    match value {
        Value::String(text) => {
            let findings: Vec<(crate::scan::Finding, Action)> = scanner
                .scan_text(text)
                .into_iter()
                .map(|f| (f, Action::Redact))
                .collect();
            if !findings.is_empty() {
                let redacted = crate::scan::redact::apply(text, &findings).into_owned();
                *text = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_all(scanner, v)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_all(scanner, v)),
        _ => {}
    }
}

/// A result, an error or a server message: screening and redaction of every
/// string in it, base64 `blob` contents included (decoded, screened as
/// text, re-encoded when redacted). Findings add to the review's.
pub fn review_content(
    env: &mut dyn Env,
    server: &Server,
    surface: Surface,
    part: &mut Value,
    review: &mut Review,
) {
    let Some((policy_name, policy)) = &server.content else {
        return;
    };
    let policy: &ContentPolicy = policy;
    let mut inspection = policy.inspect_result(part, surface);
    inspect_blobs(policy, surface, part, &mut inspection, 0);
    let summary = summarize(env, &inspection);
    let types = summary
        .as_ref()
        .map(ContentFindings::types)
        .unwrap_or_default();
    if let Some(s) = summary {
        merge_findings(&mut review.content, s);
    }
    if inspection.blocked {
        env.count(metrics::CONTENT_BLOCKED, 1);
        review.refuse = Some(format!(
            "the answer carries {types} which ContentPolicy/{policy_name} blocks"
        ));
    } else if inspection.modified {
        review.changed = true;
    }
}

/// Decodes every `blob` (base64, as MCP carries binary resource contents)
/// that is UTF-8 text, screens it, and re-encodes it when redacted: a
/// client that decodes it shows the text.
fn inspect_blobs(
    policy: &ContentPolicy,
    surface: Surface,
    value: &mut Value,
    into: &mut Inspection,
    depth: usize,
) {
    use base64::Engine as _;
    if depth > crate::json::MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "blob"
                    && let Value::String(b64) = v
                {
                    let Ok(bytes) =
                        base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())
                    else {
                        continue;
                    };
                    let Ok(text) = String::from_utf8(bytes) else {
                        continue;
                    };
                    let mut decoded = Value::String(text);
                    let found = policy.inspect_result(&mut decoded, surface);
                    if found.modified
                        && let Value::String(t) = &decoded
                    {
                        *b64 = base64::engine::general_purpose::STANDARD.encode(t.as_bytes());
                    }
                    into.pii.merge(found.pii);
                    into.screen.extend(found.screen);
                    into.blocked |= found.blocked;
                    into.modified |= found.modified;
                } else {
                    inspect_blobs(policy, surface, v, into, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                inspect_blobs(policy, surface, v, into, depth + 1);
            }
        }
        _ => {}
    }
}

/// A tool's advertised `inputSchema`, compiled for strict validation
/// (formats are not checked: the server's own validation does not either).
fn compile_input_schema(schema: &Value) -> Option<Arc<jsonschema::Validator>> {
    jsonschema::options()
        .should_validate_formats(false)
        .build(schema)
        .ok()
        .map(Arc::new)
}

/// A list's entries (prompts, resources, resource templates), screened like
/// tool definitions: an entry whose worst finding is `dropTool` is removed
/// (and named in the record), as a poisoned tool is.
fn review_entries(
    env: &mut dyn Env,
    server: &Server,
    field: &str,
    key: &str,
    result: &mut Value,
    review: &mut Review,
) {
    let Some((_, policy)) = &server.content else {
        return;
    };
    let Some(Value::Array(entries)) = result.get_mut(field) else {
        return;
    };
    let before = entries.len();
    let mut dropped = Vec::new();
    entries.retain(|entry| {
        let findings = policy.screen.check_json(entry, Surface::ToolDefinition);
        let drop = crate::scan::injection::worst(&findings)
            == Some(crate::scan::injection::ScreenAction::DropTool);
        if drop {
            dropped.push(
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .map(|n| truncate(n, 128).to_owned())
                    .unwrap_or_default(),
            );
        }
        !drop
    });
    let removed = before - entries.len();
    if removed > 0 {
        env.count(metrics::POISONED_TOOLS_DROPPED, removed as u64);
        review.dropped.extend(dropped);
        review.removed_from_list = review.removed_from_list.saturating_add(removed as u32);
        review.changed = true;
    }
}

/// PII and secrets in the texts of a tools/list's tools (titles,
/// descriptions, annotations): redacted like any answer. Names and schemas
/// are left as served: they are what calls are made with, and pins cover
/// them.
fn redact_tool_texts(env: &mut dyn Env, server: &Server, result: &mut Value, review: &mut Review) {
    let Some((_, policy)) = &server.content else {
        return;
    };
    let Some(Value::Array(tools)) = result.get_mut("tools") else {
        return;
    };
    let mut all = Inspection::default();
    for tool in tools.iter_mut() {
        let Some(obj) = tool.as_object_mut() else {
            continue;
        };
        for key in ["title", "description", "annotations"] {
            if let Some(v) = obj.get_mut(key) {
                let report = policy
                    .scanner
                    .redact_json(v, crate::scan::Direction::Response);
                all.modified |= report.modified();
                all.pii.merge(report);
            }
        }
    }
    if let Some(f) = summarize(env, &all) {
        merge_findings(&mut review.content, f);
    }
    review.changed |= all.modified;
}

fn merge_findings(into: &mut Option<ContentFindings>, more: ContentFindings) {
    match into {
        Some(f) => f.merge(more),
        None => *into = Some(more),
    }
}

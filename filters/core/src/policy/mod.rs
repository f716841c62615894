//! `kind: Policy`: tool-, resource- and argument-level ABAC, compiled once
//! and decided per call, with the decision explaining itself.
//!
//! The semantics are Cedar's, because they are the ones a reviewer can hold
//! in their head and that do not depend on the order of rules:
//!
//! * **forbid overrides** everything: any matching `forbid` denies;
//! * otherwise a matching `requireApproval` asks for a person's approval
//!   (an approved retry goes through, see [`approval`]);
//! * otherwise a matching `permit` allows;
//! * otherwise **nothing is permitted** (tools/call, resources/read and
//!   prompts/get): default deny.
//!
//! The registry still comes first: a tool a server's `McpServer.spec.tools`
//! does not list is refused before any rule is read. A server that no
//! `permit` or `requireApproval` rule can reach is governed by its registry
//! lists alone (the lists are its permit); the moment a rule could permit
//! something on it, the lists become necessary but not sufficient.
//!
//! Shaped for speed as rules grow: at configure time every rule is placed in
//! a per-server index keyed by the literal tool, resource or prompt it names
//! (globs go in one overlapping automaton per server and kind), so a call
//! looks at the handful of rules that can concern it, not at all of them.
//! Schemas become validators and `when` expressions CEL programs at
//! configure time too; a bad one is a bundle error with its document's file
//! and line and the field.
//!
//! A CEL evaluation pays only for what its expression reads, and rules
//! without `when` never touch CEL. At configure time [`when`] walks each
//! expression for the member paths it reads of each attribute root
//! (`args.city`, `subject.tenant`, `'x-block' in headers`); per call only
//! those roots are built, holding only those paths (a whole value wherever
//! the expression uses more than a constant lookup), straight as the
//! interpreter's values borrowing the call's strings, in a scope over one
//! standard-library environment shared by every rule. Building each root
//! whole as `cel::Value`s, which `add_variable` then copied again, was most
//! of a decision's CEL cost (the whole claim set and every argument for
//! `subject.tenant` and `args.query`); building the environment per call
//! cost more than the evaluation.

pub mod approval;
pub mod gate;
pub mod limits;
mod when;

use crate::glob::GlobSet;
use crate::identity::Identity;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub use limits::{LimitSpec, LimitVerdict};
use when::Need;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Effect {
    Permit,
    Forbid,
    RequireApproval,
}

/// `kind: Policy` spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// `false`: every rule and limit here only records what it would have
    /// done (shadow mode).
    #[serde(default = "yes")]
    pub enforce: bool,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
}

fn yes() -> bool {
    true
}

/// One rule. Every matcher given must match; an absent matcher matches all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub effect: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// McpServer names or globs.
    #[serde(default)]
    pub servers: Vec<String>,
    /// MCP methods (`tools/call`, `tools/list`, ...), exact.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub prompts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectSpec>,
    /// A JSON Schema (2020-12) the call's arguments must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    /// Header name → globs; the header must be present and match one.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSpec>,
    /// A CEL expression over the attributes in docs/policy.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// `false`: shadow; recorded, never decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// `requireApproval` only: who may approve on the approval page, and
    /// how many distinct people must (docs/approvals.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<ApproversSpec>,
    /// `requireApproval` only: where a grant is spent once. `fleet` (the
    /// default when `Settings.spec.fleet` is set): once for every proxy,
    /// by the fleet state service; `proxy`: in this proxy's shared data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<limits::Scope>,
}

/// `approvers` of a `requireApproval` rule: the roles (from a token of an
/// IdentityProvider the bundle trusts) an approver must hold one of, and
/// how many distinct approvers a call needs (two-person approval: `2`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproversSpec {
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// Who is calling, from the identity layer. Lists are any-of; all given
/// fields must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectSpec {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Claim (dotted path) → accepted values (globs over the claim as text).
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// Addresses or CIDRs (`10.0.0.0/8`, `::1/128`, `192.0.2.7`).
    pub cidrs: Vec<String>,
}

/// Time of day, UTC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeSpec {
    /// `mon`..`sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// `HH:MM`, exclusive. `after` > `before` wraps past midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// A compiled rule.
pub struct Rule {
    /// `Policy/<name>#<id>`.
    pub id: String,
    pub effect: Effect,
    pub enforce: bool,
    methods: Vec<String>,
    subject: Option<CompiledSubject>,
    arguments: Option<jsonschema::Validator>,
    sources: Vec<Cidr>,
    headers: Vec<(String, GlobSet)>,
    time: Option<CompiledTime>,
    when: Option<CelCondition>,
    /// Whether the rule names any tool, resource or prompt (a rule that does
    /// not applies to every target on its servers).
    has_targets: bool,
    /// Whether only the call's identity and request decide it (no argument
    /// schema, no CEL): what list filtering can judge.
    static_only: bool,
}

/// A compiled `when`: the program, the attribute roots it reads with how
/// much of each ([`when`]), and the environment it runs in.
struct CelCondition {
    program: cel::Program,
    reads: Vec<(&'static str, Need)>,
    env: std::sync::Arc<cel::Env>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .field("effect", &self.effect)
            .field("enforce", &self.enforce)
            .finish_non_exhaustive()
    }
}

struct CompiledSubject {
    users: Option<GlobSet>,
    agents: Option<GlobSet>,
    tenants: Option<GlobSet>,
    roles: Vec<String>,
    groups: Vec<String>,
    claims: Vec<(Vec<String>, GlobSet)>,
}

#[derive(Debug, Clone, Copy)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

struct CompiledTime {
    /// Bit 0 = Monday.
    days: u8,
    after: Option<u32>,
    before: Option<u32>,
}

/// The three kinds of thing a call targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Tool,
    Resource,
    Prompt,
}

/// Rules of one server and target kind, by what they name.
#[derive(Debug, Default)]
struct TargetIndex {
    literal: HashMap<String, Vec<u32>>,
    globs: Option<GlobSet>,
    glob_rules: Vec<Vec<u32>>,
}

impl TargetIndex {
    fn add(&mut self, pattern: &str, rule: u32, glob_patterns: &mut Vec<String>) {
        if crate::spec::is_glob(pattern) {
            match glob_patterns.iter().position(|p| p == pattern) {
                Some(i) => {
                    if let Some(v) = self.glob_rules.get_mut(i) {
                        v.push(rule);
                    }
                }
                None => {
                    glob_patterns.push(pattern.to_owned());
                    self.glob_rules.push(vec![rule]);
                }
            }
        } else {
            self.literal
                .entry(pattern.to_owned())
                .or_default()
                .push(rule);
        }
    }

    fn candidates(&self, name: &str, out: &mut Vec<u32>) {
        if let Some(v) = self.literal.get(name) {
            out.extend_from_slice(v);
        }
        if let Some(globs) = &self.globs {
            for i in globs.all_matches(name) {
                if let Some(v) = self.glob_rules.get(i) {
                    out.extend_from_slice(v);
                }
            }
        }
    }
}

/// Everything the rules of one server need, indexed.
#[derive(Debug, Default)]
struct ServerIndex {
    tools: TargetIndex,
    resources: TargetIndex,
    prompts: TargetIndex,
    /// Rules that name no target at all.
    untargeted: Vec<u32>,
    /// A permit or approval rule reaches this server (enforced ones; all).
    governed_enforced: bool,
    governed_any: bool,
}

/// All `Policy` documents of a bundle, compiled.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub rules: Vec<Rule>,
    servers: HashMap<String, ServerIndex>,
    pub limits: Vec<limits::Limit>,
}

/// The call being decided.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub server: &'a str,
    pub method: &'a str,
    pub target: Option<(TargetKind, &'a str)>,
    /// `params.arguments` (tools/call, prompts/get).
    pub arguments: Option<&'a Value>,
    /// The other readings of `arguments` a lax server could act on
    /// (`crate::coerce`: `"2500"` read as 2500), when the tool's own
    /// schema is not known to have pinned their types. A rule that
    /// restricts (forbid, requireApproval) matches if the arguments or any
    /// reading does, so no coercion a server performs gets a call past it.
    pub lax_arguments: &'a [Value],
}

/// Where the call came from and when.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub identity: Option<&'a Identity>,
    pub source: Option<IpAddr>,
    /// Lowercase names.
    pub headers: &'a [(String, String)],
    pub now_unix: u64,
}

/// A rule's verdict on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    No,
    Yes,
    /// Evaluation failed (a CEL error): fails closed per effect.
    Error,
}

/// The policy's decision on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    pub outcome: Outcome,
    /// Ids of the rules that decided (forbids, approvals, or permits).
    pub rules: Vec<String>,
    pub reason: String,
    /// Rules that could not be evaluated, with why.
    pub errors: Vec<String>,
    /// What the rules in shadow mode would have changed, when they would.
    pub shadow: Option<Shadow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Permit,
    Forbid,
    /// No rule permits (default deny).
    NoPermit,
    RequireApproval,
    /// The server is governed by its registry lists alone.
    Registry,
}

impl Outcome {
    pub fn allows(self) -> bool {
        matches!(self, Outcome::Permit | Outcome::Registry)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Permit => "permit",
            Outcome::Forbid => "forbid",
            Outcome::NoPermit => "deny",
            Outcome::RequireApproval => "requireApproval",
            Outcome::Registry => "permit",
        }
    }
}

pub use crate::audit::Shadow;

/// Methods a default-deny applies to: the ones that use something.
pub fn is_use_method(method: &str) -> bool {
    matches!(method, "tools/call" | "resources/read" | "prompts/get")
}

impl PolicySet {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.limits.is_empty()
    }

    /// Decides `call`. `enforce_all` is the bundle's `Settings.enforce`.
    pub fn decide(&self, call: &Call, ctx: &Context, enforce_all: bool) -> PolicyDecision {
        let index = self.servers.get(call.server);
        let mut candidates: Vec<u32> = Vec::new();
        if let Some(ix) = index {
            if let Some((kind, name)) = call.target {
                let t = match kind {
                    TargetKind::Tool => &ix.tools,
                    TargetKind::Resource => &ix.resources,
                    TargetKind::Prompt => &ix.prompts,
                };
                t.candidates(name, &mut candidates);
            }
            candidates.extend_from_slice(&ix.untargeted);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut errors = Vec::new();
        let mut matched: Vec<(&Rule, bool)> = Vec::new();
        for i in candidates {
            let Some(rule) = self.rules.get(i as usize) else {
                continue;
            };
            let enforced = rule.enforce && enforce_all;
            match rule.evaluate(call, ctx) {
                Match::No => {}
                Match::Yes => matched.push((rule, enforced)),
                Match::Error => {
                    errors.push(format!("{}: the rule could not be evaluated", rule.id));
                    // Fails closed: an erroring forbid forbids, an erroring
                    // permit does not permit.
                    if rule.effect == Effect::Forbid {
                        matched.push((rule, enforced));
                    }
                }
            }
        }
        let governed = |enforced_only: bool| {
            index.is_some_and(|ix| {
                if enforced_only {
                    ix.governed_enforced && enforce_all
                } else {
                    ix.governed_any
                }
            })
        };
        let (outcome, rules) = combine(
            call,
            matched.iter().filter(|(_, e)| *e).map(|(r, _)| *r),
            governed(true),
        );
        let (all_outcome, all_rules) =
            combine(call, matched.iter().map(|(r, _)| *r), governed(false));
        let shadow = (all_outcome.allows() != outcome.allows()
            || (all_outcome == Outcome::RequireApproval) != (outcome == Outcome::RequireApproval))
            .then(|| Shadow {
                decision: match all_outcome {
                    Outcome::RequireApproval => "requireApproval",
                    o if o.allows() => "allow",
                    _ => "deny",
                },
                rules: all_rules.clone(),
            });
        let reason = match outcome {
            Outcome::Forbid => format!("forbidden by {}", rules.join(", ")),
            Outcome::RequireApproval => {
                format!("{} requires a person's approval", rules.join(", "))
            }
            Outcome::Permit => format!("permitted by {}", rules.join(", ")),
            Outcome::NoPermit => format!(
                "no Policy rule permits {} on McpServer/{} (default deny)",
                describe(call),
                call.server
            ),
            Outcome::Registry => String::new(),
        };
        PolicyDecision {
            outcome,
            rules,
            reason,
            errors: {
                // Each erroring rule once, in id order, for stable records.
                errors.sort();
                errors.dedup();
                errors
            },
            shadow,
        }
    }

    /// Whether `caller` could use the target at all, for list filtering:
    /// rules whose outcome depends on arguments or CEL count as able to
    /// permit, and as unable to forbid, so a list never hides what a call
    /// could be allowed.
    pub fn visible(&self, call: &Call, ctx: &Context, enforce_all: bool) -> bool {
        let Some(ix) = self.servers.get(call.server) else {
            return true;
        };
        let mut candidates: Vec<u32> = Vec::new();
        if let Some((kind, name)) = call.target {
            let t = match kind {
                TargetKind::Tool => &ix.tools,
                TargetKind::Resource => &ix.resources,
                TargetKind::Prompt => &ix.prompts,
            };
            t.candidates(name, &mut candidates);
        }
        candidates.extend_from_slice(&ix.untargeted);
        let mut permitted = !(ix.governed_enforced && enforce_all);
        for i in candidates {
            let Some(rule) = self.rules.get(i as usize) else {
                continue;
            };
            if !(rule.enforce && enforce_all) {
                continue;
            }
            let static_match = rule.static_match(call, ctx);
            match rule.effect {
                Effect::Forbid if static_match && rule.static_only => return false,
                Effect::Permit | Effect::RequireApproval if static_match => permitted = true,
                _ => {}
            }
        }
        permitted
    }
}

fn describe(call: &Call) -> String {
    match call.target {
        Some((TargetKind::Tool, n)) => format!("tool {n:?}"),
        Some((TargetKind::Resource, n)) => format!("resource {n:?}"),
        Some((TargetKind::Prompt, n)) => format!("prompt {n:?}"),
        None => call.method.to_owned(),
    }
}

fn combine<'r>(
    call: &Call,
    matched: impl Iterator<Item = &'r Rule>,
    governed: bool,
) -> (Outcome, Vec<String>) {
    let mut forbids = Vec::new();
    let mut approvals = Vec::new();
    let mut permits = Vec::new();
    for rule in matched {
        match rule.effect {
            Effect::Forbid => forbids.push(rule.id.clone()),
            Effect::RequireApproval => approvals.push(rule.id.clone()),
            Effect::Permit => permits.push(rule.id.clone()),
        }
    }
    if !forbids.is_empty() {
        (Outcome::Forbid, forbids)
    } else if !approvals.is_empty() {
        (Outcome::RequireApproval, approvals)
    } else if !permits.is_empty() {
        (Outcome::Permit, permits)
    } else if governed && is_use_method(call.method) {
        (Outcome::NoPermit, Vec::new())
    } else {
        (Outcome::Registry, Vec::new())
    }
}

impl Rule {
    /// Matchers that need only the request and identity.
    fn static_match(&self, call: &Call, ctx: &Context) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == call.method) {
            return false;
        }
        if self.has_targets && call.target.is_none() {
            return false;
        }
        if let Some(s) = &self.subject
            && !s.matches(ctx.identity)
        {
            return false;
        }
        if !self.sources.is_empty()
            && !ctx
                .source
                .is_some_and(|ip| self.sources.iter().any(|c| c.contains(ip)))
        {
            return false;
        }
        for (name, globs) in &self.headers {
            let ok = ctx
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .any(|(_, v)| globs.is_match(v));
            if !ok {
                return false;
            }
        }
        if let Some(t) = &self.time
            && !t.matches(ctx.now_unix)
        {
            return false;
        }
        true
    }

    fn evaluate(&self, call: &Call, ctx: &Context) -> Match {
        if !self.static_match(call, ctx) {
            return Match::No;
        }
        let empty = Value::Object(Map::new());
        let args = call.arguments.unwrap_or(&empty);
        let mut verdict = self.evaluate_arguments(call, ctx, args);
        // A restricting rule also holds when any lax reading of the
        // arguments meets it (`"2500"` read as 2500 by the server). A permit
        // is decided on the arguments as sent: requiring every reading to
        // match would refuse ordinary calls (every boolean also reads as
        // 0/1), and a permit's schema that fixes its types already refuses a
        // string where it wants a number.
        if self.effect == Effect::Permit || (self.arguments.is_none() && self.when.is_none()) {
            return verdict;
        }
        for reading in call.lax_arguments {
            verdict = match (verdict, self.evaluate_arguments(call, ctx, reading)) {
                (Match::Yes, _) | (_, Match::Yes) => Match::Yes,
                (Match::Error, _) | (_, Match::Error) => Match::Error,
                _ => Match::No,
            };
        }
        verdict
    }

    /// The argument conditions (schema, then CEL) on one reading of the
    /// arguments.
    fn evaluate_arguments(&self, call: &Call, ctx: &Context, args: &Value) -> Match {
        if let Some(schema) = &self.arguments
            && !schema.is_valid(args)
        {
            return Match::No;
        }
        if let Some(condition) = &self.when {
            return match run_cel(condition, call, ctx, args) {
                Ok(true) => Match::Yes,
                Ok(false) => Match::No,
                Err(()) => Match::Error,
            };
        }
        Match::Yes
    }
}

/// The names a `when` expression may use; anything else is a configure-time
/// error, so a typo cannot silently never match.
const CEL_ROOTS: &[&str] = &["request", "args", "subject", "source", "headers", "time"];

/// The standard library environment every `when` runs in: built once, as
/// building it registers every standard function.
fn cel_env() -> std::sync::Arc<cel::Env> {
    static ENV: std::sync::OnceLock<std::sync::Arc<cel::Env>> = std::sync::OnceLock::new();
    std::sync::Arc::clone(ENV.get_or_init(|| std::sync::Arc::new(cel::Env::stdlib())))
}

/// One attribute root of the CEL attribute set (docs/policy.md):
/// `request`, `args`, `subject`, `source`, `headers`, `time`, holding what
/// `need` reads of it, borrowing the call's strings.
fn cel_attribute<'v>(
    root: &str,
    need: &Need,
    call: &Call<'v>,
    ctx: &Context<'v>,
    args: &'v Value,
) -> Option<Box<dyn cel::common::value::Val + 'v>> {
    use cel::common::types::{CelBool, CelInt, CelList, CelMap, CelMapKey, CelString, CelUInt};
    use cel::common::value::Val;
    use std::borrow::Cow;
    type Built<'v> = Box<dyn Val + 'v>;
    /// A record of fixed fields, with those `need` reads.
    fn record<'v, const N: usize>(
        need: &Need,
        names: [&'static str; N],
        mut field: impl FnMut(&'static str, &Need) -> Built<'v>,
    ) -> Built<'v> {
        let m: HashMap<CelMapKey<'v>, Built<'v>> = names
            .into_iter()
            .filter_map(|name| Some((CelMapKey::from(name), field(name, need.field(name)?))))
            .collect();
        Box::new(CelMap::from(m))
    }
    fn string(s: &str) -> Built<'_> {
        Box::new(CelString::from(s))
    }
    fn strings(list: Option<&Vec<String>>) -> Built<'_> {
        Box::new(CelList::from(
            list.map(|l| l.iter().map(|s| string(s)).collect::<Vec<_>>())
                .unwrap_or_default(),
        ))
    }
    fn int(n: u64) -> Built<'static> {
        // Integers are CEL `int`, as `when::json` makes them.
        match i64::try_from(n) {
            Ok(i) => Box::new(CelInt::from(i)),
            Err(_) => Box::new(CelUInt::from(n)),
        }
    }
    let id = ctx.identity;
    Some(match root {
        "request" => {
            let (tool, resource, prompt) = match call.target {
                Some((TargetKind::Tool, n)) => (n, "", ""),
                Some((TargetKind::Resource, n)) => ("", n, ""),
                Some((TargetKind::Prompt, n)) => ("", "", n),
                None => ("", "", ""),
            };
            record(
                need,
                ["server", "method", "tool", "resource", "prompt"],
                |name, _| {
                    string(match name {
                        "server" => call.server,
                        "method" => call.method,
                        "tool" => tool,
                        "resource" => resource,
                        _ => prompt,
                    })
                },
            )
        }
        "args" => when::json(args, need),
        "subject" => record(
            need,
            [
                "authenticated",
                "id",
                "agent",
                "tenant",
                "roles",
                "groups",
                "scopes",
                "claims",
            ],
            |name, need| match name {
                "authenticated" => Box::new(CelBool::from(id.is_some())),
                "id" => string(id.map(|i| i.subject.as_str()).unwrap_or("")),
                "agent" => string(id.and_then(|i| i.agent.as_deref()).unwrap_or("")),
                "tenant" => string(id.and_then(|i| i.tenant.as_deref()).unwrap_or("")),
                "roles" => strings(id.map(|i| &i.roles)),
                "groups" => strings(id.map(|i| &i.groups)),
                "scopes" => strings(id.map(|i| &i.scopes)),
                _ => match id {
                    Some(i) => when::object(&i.claims, need),
                    None => Box::new(CelMap::default()),
                },
            },
        ),
        "source" => record(need, ["address"], |_, _| {
            Box::new(CelString::from(
                ctx.source.map(|s| s.to_string()).unwrap_or_default(),
            ))
        }),
        "headers" => {
            // Lower-cased names; a repeated header keeps its last value.
            let mut m: HashMap<CelMapKey<'v>, Built<'v>> = HashMap::new();
            for (k, v) in ctx.headers {
                let k: Cow<'v, str> = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(k.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(k.as_str())
                };
                if need.field(&k).is_some() {
                    m.insert(CelMapKey::String(CelString::from(k)), string(v));
                }
            }
            Box::new(CelMap::from(m))
        }
        "time" => {
            let (hour, minute, weekday) = clock(ctx.now_unix);
            record(need, ["unix", "hour", "minute", "weekday"], |name, _| {
                int(match name {
                    "unix" => ctx.now_unix,
                    "hour" => hour,
                    "minute" => minute,
                    _ => weekday,
                })
            })
        }
        _ => return None,
    })
}

fn run_cel(condition: &CelCondition, call: &Call, ctx: &Context, args: &Value) -> Result<bool, ()> {
    match eval_cel(condition, call, ctx, args) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        _ => Err(()),
    }
}

fn eval_cel(
    condition: &CelCondition,
    call: &Call,
    ctx: &Context,
    args: &Value,
) -> cel::ResolveResult {
    let mut context = cel::Context::with_env(std::sync::Arc::clone(&condition.env));
    for (root, need) in &condition.reads {
        let value = cel_attribute(root, need, call, ctx, args)
            .ok_or_else(|| cel::ExecutionError::undeclared_reference(root))?;
        context.add_variable_as_val(*root, value);
    }
    condition.program.execute(&context)
}

/// UTC hour, minute and ISO weekday (1 = Monday) of a Unix time.
fn clock(unix: u64) -> (u64, u64, u64) {
    let secs = unix % 86_400;
    let days = unix / 86_400;
    // 1970-01-01 was a Thursday (ISO 4).
    let weekday = (days + 3) % 7 + 1;
    (secs / 3600, (secs % 3600) / 60, weekday)
}

impl CompiledTime {
    fn matches(&self, unix: u64) -> bool {
        let (h, m, wd) = clock(unix);
        if self.days != 0 && self.days & (1 << (wd - 1)) == 0 {
            return false;
        }
        let minute = (h * 60 + m) as u32;
        match (self.after, self.before) {
            (Some(a), Some(b)) if a <= b => minute >= a && minute < b,
            (Some(a), Some(b)) => minute >= a || minute < b,
            (Some(a), None) => minute >= a,
            (None, Some(b)) => minute < b,
            (None, None) => true,
        }
    }
}

impl CompiledSubject {
    fn matches(&self, identity: Option<&Identity>) -> bool {
        let Some(id) = identity else {
            return false;
        };
        let one = |set: &Option<GlobSet>, v: Option<&str>| match set {
            None => true,
            Some(g) => v.is_some_and(|v| g.is_match(v)),
        };
        one(&self.users, Some(&id.subject))
            && one(&self.agents, id.agent.as_deref())
            && one(&self.tenants, id.tenant.as_deref())
            && (self.roles.is_empty() || self.roles.iter().any(|r| id.roles.contains(r)))
            && (self.groups.is_empty() || self.groups.iter().any(|g| id.groups.contains(g)))
            && self.claims.iter().all(|(path, globs)| {
                claim_at(&id.claims, path).is_some_and(|v| match v {
                    Value::String(s) => globs.is_match(s),
                    Value::Array(items) => items.iter().any(|i| match i {
                        Value::String(s) => globs.is_match(s),
                        other => globs.is_match(&other.to_string()),
                    }),
                    other => globs.is_match(&other.to_string()),
                })
            })
    }
}

fn claim_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = claims.get(first)?;
    for seg in rest {
        v = v.get(seg)?;
    }
    Some(v)
}

impl Cidr {
    fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR (10.0.0.0/8, ::1/128)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses the host's `source.address` (`1.2.3.4:5678`, `[::1]:5678`).
pub fn parse_source_address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

fn parse_hhmm(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time of day; write HH:MM (UTC), e.g. 09:30");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A compile error: JSON pointer under the document, and message.
pub use crate::spec::SpecError;

/// Compiles the `Policy` documents (name, spec) against the bundle's server
/// names.
pub fn compile(
    docs: &[(String, PolicySpec)],
    server_names: &[String],
) -> Result<PolicySet, Vec<(usize, SpecError)>> {
    let mut errors: Vec<(usize, SpecError)> = Vec::new();
    let mut set = PolicySet::default();
    let mut glob_patterns: HashMap<String, [Vec<String>; 3]> = HashMap::new();
    for name in server_names {
        set.servers.insert(name.clone(), ServerIndex::default());
        glob_patterns.insert(name.clone(), Default::default());
    }
    for (doc_index, (doc_name, spec)) in docs.iter().enumerate() {
        let mut ids: Vec<&str> = Vec::new();
        for (i, r) in spec.rules.iter().enumerate() {
            let at = |field: &str| format!("/spec/rules/{i}{field}");
            let mut err = |field: &str, msg: String| errors.push((doc_index, (at(field), msg)));
            if crate::spec::check_name(&r.id).is_err() {
                err(
                    "/id",
                    "a rule id is a short lowercase name (letters, digits, '-')".into(),
                );
                continue;
            }
            if ids.contains(&r.id.as_str()) {
                err(
                    "/id",
                    format!("a second rule {:?} in this Policy; ids are unique", r.id),
                );
                continue;
            }
            ids.push(&r.id);
            let servers = match server_selector(&r.servers, server_names) {
                Ok(s) => s,
                Err(m) => {
                    err("/servers", m);
                    continue;
                }
            };
            let rule = match compile_rule(doc_name, spec.enforce, r) {
                Ok(rule) => rule,
                Err((field, msg)) => {
                    err(&field, msg);
                    continue;
                }
            };
            let index = set.rules.len() as u32;
            for server in &servers {
                let (Some(ix), Some(patterns)) =
                    (set.servers.get_mut(server), glob_patterns.get_mut(server))
                else {
                    continue;
                };
                if matches!(rule.effect, Effect::Permit | Effect::RequireApproval) {
                    ix.governed_any = true;
                    if rule.enforce {
                        ix.governed_enforced = true;
                    }
                }
                let [pt, pr, pp] = patterns;
                for t in &r.tools {
                    ix.tools.add(t, index, pt);
                }
                for t in &r.resources {
                    ix.resources.add(t, index, pr);
                }
                for t in &r.prompts {
                    ix.prompts.add(t, index, pp);
                }
                if !rule.has_targets {
                    ix.untargeted.push(index);
                }
            }
            set.rules.push(rule);
        }
        for (i, l) in spec.limits.iter().enumerate() {
            if ids.contains(&l.id.as_str()) {
                errors.push((
                    doc_index,
                    (
                        format!("/spec/limits/{i}/id"),
                        format!("{:?} is already a rule or limit id in this Policy", l.id),
                    ),
                ));
                continue;
            }
            ids.push(&l.id);
            match limits::compile(doc_name, spec.enforce, l, server_names) {
                Ok(limit) => set.limits.push(limit),
                Err((field, msg)) => {
                    errors.push((doc_index, (format!("/spec/limits/{i}{field}"), msg)))
                }
            }
        }
    }
    for (server, [pt, pr, pp]) in glob_patterns {
        let Some(ix) = set.servers.get_mut(&server) else {
            continue;
        };
        for (t, p) in [
            (&mut ix.tools, pt),
            (&mut ix.resources, pr),
            (&mut ix.prompts, pp),
        ] {
            if !p.is_empty() {
                match GlobSet::new_overlapping(&p) {
                    Ok(g) => t.globs = Some(g),
                    Err(e) => errors.push((0, ("/spec/rules".into(), e.to_string()))),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// The servers a `servers` list selects (empty: all). A literal name must
/// be a server of the bundle, so a typo is an error, not a rule that never
/// applies.
pub fn server_selector(
    patterns: &[String],
    server_names: &[String],
) -> Result<Vec<String>, String> {
    if patterns.is_empty() {
        return Ok(server_names.to_vec());
    }
    for p in patterns {
        if !crate::spec::is_glob(p) && !server_names.iter().any(|s| s == p) {
            return Err(format!(
                "no McpServer named {p:?} in this bundle; name one of {server_names:?} or use a glob"
            ));
        }
    }
    let globs = GlobSet::new(patterns).map_err(|e| e.to_string())?;
    Ok(server_names
        .iter()
        .filter(|s| globs.is_match(s))
        .cloned()
        .collect())
}

fn glob_list(list: &[String], field: &str) -> Result<Option<GlobSet>, SpecError> {
    if list.is_empty() {
        return Ok(None);
    }
    GlobSet::new(list)
        .map(Some)
        .map_err(|e| (field.to_owned(), e.to_string()))
}

fn compile_rule(doc: &str, doc_enforce: bool, r: &RuleSpec) -> Result<Rule, SpecError> {
    if let Some(a) = &r.approvers {
        if r.effect != Effect::RequireApproval {
            return Err((
                "/approvers".into(),
                "approvers are only for requireApproval rules".into(),
            ));
        }
        if a.roles.is_empty() {
            return Err((
                "/approvers/roles".into(),
                "name at least one role an approver must hold".into(),
            ));
        }
        if !(1..=5).contains(&a.count.unwrap_or(1)) {
            return Err((
                "/approvers/count".into(),
                "count is how many distinct people must approve: 1 to 5".into(),
            ));
        }
    }
    if r.scope.is_some() && r.effect != Effect::RequireApproval {
        return Err((
            "/scope".into(),
            "scope is where an approval is spent, so only for requireApproval rules (a limit has its own scope)".into(),
        ));
    }
    for m in &r.methods {
        if !crate::mcp::is_known_method(m) {
            return Err(("/methods".into(), format!("{m:?} is not an MCP method")));
        }
    }
    for (field, list) in [
        ("/tools", &r.tools),
        ("/resources", &r.resources),
        ("/prompts", &r.prompts),
    ] {
        glob_list(list, field)?;
    }
    let subject = match &r.subject {
        None => None,
        Some(s) => Some(CompiledSubject {
            users: glob_list(&s.users, "/subject/users")?,
            agents: glob_list(&s.agents, "/subject/agents")?,
            tenants: glob_list(&s.tenants, "/subject/tenants")?,
            roles: s.roles.clone(),
            groups: s.groups.clone(),
            claims: s
                .claims
                .iter()
                .map(|(path, values)| {
                    let globs = GlobSet::new(values)
                        .map_err(|e| (format!("/subject/claims/{path}"), e.to_string()))?;
                    Ok((path.split('.').map(str::to_owned).collect(), globs))
                })
                .collect::<Result<_, SpecError>>()?,
        }),
    };
    let arguments = match &r.arguments {
        None => None,
        Some(schema) => Some(
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(schema)
                .map_err(|e| {
                    (
                        "/arguments".to_owned(),
                        format!("the JSON Schema does not compile: {e}"),
                    )
                })?,
        ),
    };
    let sources = match &r.source {
        None => Vec::new(),
        Some(s) => {
            if s.cidrs.is_empty() {
                return Err((
                    "/source/cidrs".into(),
                    "list at least one address or CIDR".into(),
                ));
            }
            s.cidrs
                .iter()
                .enumerate()
                .map(|(i, c)| Cidr::parse(c).map_err(|m| (format!("/source/cidrs/{i}"), m)))
                .collect::<Result<_, _>>()?
        }
    };
    let headers = r
        .headers
        .iter()
        .map(|(name, globs)| {
            let set =
                GlobSet::new(globs).map_err(|e| (format!("/headers/{name}"), e.to_string()))?;
            if globs.is_empty() {
                return Err((
                    format!("/headers/{name}"),
                    "list at least one value or glob".into(),
                ));
            }
            Ok((name.to_ascii_lowercase(), set))
        })
        .collect::<Result<_, SpecError>>()?;
    let time = match &r.time {
        None => None,
        Some(t) => {
            let mut days = 0u8;
            for (i, d) in t.days.iter().enumerate() {
                let bit = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(d))
                    .ok_or_else(|| {
                        (
                            format!("/time/days/{i}"),
                            format!("{d:?} is not a day; use mon..sun"),
                        )
                    })?;
                days |= 1 << bit;
            }
            Some(CompiledTime {
                days,
                after: t
                    .after
                    .as_deref()
                    .map(parse_hhmm)
                    .transpose()
                    .map_err(|m| ("/time/after".to_owned(), m))?,
                before: t
                    .before
                    .as_deref()
                    .map(parse_hhmm)
                    .transpose()
                    .map_err(|m| ("/time/before".to_owned(), m))?,
            })
        }
    };
    let when = match &r.when {
        None => None,
        Some(expr) => {
            let program = cel::Program::compile(expr).map_err(|e| {
                (
                    "/when".to_owned(),
                    format!("the CEL expression does not parse: {e}"),
                )
            })?;
            let read = when::reads(program.expression());
            if let Some(var) = read.free.iter().find(|v| !CEL_ROOTS.contains(&v.as_str())) {
                return Err((
                    "/when".into(),
                    format!("unknown attribute {var:?}; a `when` expression may use {CEL_ROOTS:?}"),
                ));
            }
            let reads = CEL_ROOTS
                .iter()
                .filter_map(|root| Some((*root, read.names.get(*root)?.clone())))
                .collect();
            Some(CelCondition {
                program,
                reads,
                env: cel_env(),
            })
        }
    };
    let static_only = arguments.is_none() && when.is_none();
    Ok(Rule {
        id: format!("Policy/{doc}#{}", r.id),
        effect: r.effect,
        enforce: doc_enforce && r.enforce.unwrap_or(true),
        methods: r.methods.clone(),
        subject,
        arguments,
        sources,
        headers,
        time,
        when,
        has_targets: !(r.tools.is_empty() && r.resources.is_empty() && r.prompts.is_empty()),
        static_only,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    /// The attribute map as it was built before each root was built alone
    /// (the whole of docs/policy.md's set as JSON, then to CEL): the
    /// reference each root must still equal.
    fn reference_attributes(call: &Call, ctx: &Context, args: &Value) -> Value {
        let (tool, resource, prompt) = match call.target {
            Some((TargetKind::Tool, n)) => (Some(n), None, None),
            Some((TargetKind::Resource, n)) => (None, Some(n), None),
            Some((TargetKind::Prompt, n)) => (None, None, Some(n)),
            None => (None, None, None),
        };
        let id = ctx.identity;
        let (hour, minute, weekday) = clock(ctx.now_unix);
        let headers: Map<String, Value> = ctx
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.as_str())))
            .collect();
        serde_json::json!({
            "request": {"server": call.server, "method": call.method, "tool": tool.unwrap_or(""),
                        "resource": resource.unwrap_or(""), "prompt": prompt.unwrap_or("")},
            "args": args,
            "subject": {
                "authenticated": id.is_some(),
                "id": id.map(|i| i.subject.as_str()).unwrap_or(""),
                "agent": id.and_then(|i| i.agent.as_deref()).unwrap_or(""),
                "tenant": id.and_then(|i| i.tenant.as_deref()).unwrap_or(""),
                "roles": id.map(|i| i.roles.clone()).unwrap_or_default(),
                "groups": id.map(|i| i.groups.clone()).unwrap_or_default(),
                "scopes": id.map(|i| i.scopes.clone()).unwrap_or_default(),
                "claims": id.map(|i| Value::Object(i.claims.clone())).unwrap_or(Value::Object(Map::new())),
            },
            "source": {"address": ctx.source.map(|s| s.to_string()).unwrap_or_default()},
            "headers": headers,
            "time": {"unix": ctx.now_unix, "hour": hour, "minute": minute, "weekday": weekday},
        })
    }

    fn alice() -> Identity {
        Identity {
            provider: "idp".into(),
            issuer: "https://idp".into(),
            subject: "alice".into(),
            agent: Some("bot".into()),
            tenant: None,
            roles: vec!["admin".into(), "ops".into()],
            groups: vec![],
            scopes: vec!["mcp".into()],
            jti: None,
            audiences: vec![],
            expires_at: None,
            not_before: None,
            issued_at: None,
            verification: crate::identity::claims::Verification::EnvoyJwtAuthn,
            claims:
                serde_json::json!({"sub": "alice", "n": 3, "nested": {"x": [1, "y", null, 2.5]}})
                    .as_object()
                    .cloned()
                    .unwrap(),
        }
    }

    /// JSON as CEL saw it before values were built straight as `Val`s:
    /// the reference.
    fn to_cel(value: &Value) -> cel::Value {
        use std::sync::Arc;
        match value {
            Value::Null => cel::Value::Null,
            Value::Bool(b) => cel::Value::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => cel::Value::Int(i),
                (None, Some(u)) => cel::Value::UInt(u),
                _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => cel::Value::String(Arc::new(s.clone())),
            Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
            Value::Object(map) => {
                let m: HashMap<cel::objects::Key, cel::Value> = map
                    .iter()
                    .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect();
                cel::Value::Map(cel::objects::Map { map: Arc::new(m) })
            }
        }
    }

    /// Equal and of the same kinds all the way down (`cel::Value`'s `==`
    /// takes `1 == 1u`).
    fn same(a: &cel::Value, b: &cel::Value) -> bool {
        use cel::Value as V;
        match (a, b) {
            (V::Map(x), V::Map(y)) => {
                x.map.len() == y.map.len()
                    && x.map
                        .iter()
                        .all(|(k, v)| y.map.get(k).is_some_and(|w| same(v, w)))
            }
            (V::List(x), V::List(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(v, w)| same(v, w))
            }
            (V::Int(x), V::Int(y)) => x == y,
            (V::UInt(x), V::UInt(y)) => x == y,
            (V::Float(x), V::Float(y)) => x.to_bits() == y.to_bits(),
            (V::String(x), V::String(y)) => x == y,
            (V::Bool(x), V::Bool(y)) => x == y,
            (V::Null, V::Null) => true,
            _ => false,
        }
    }

    /// `when` evaluated the way it was before only what it reads was
    /// built: every root whole, from the whole attribute map as JSON.
    fn eval_full(when: &str, call: &Call, ctx: &Context, args: &Value) -> cel::ResolveResult {
        let attributes = reference_attributes(call, ctx, args);
        let mut context = cel::Context::default();
        for root in CEL_ROOTS {
            context
                .add_variable(*root, to_cel(&attributes[*root]))
                .unwrap();
        }
        cel::Program::compile(when).unwrap().execute(&context)
    }

    fn rule(when: &str) -> Rule {
        compile_rule(
            "p",
            true,
            &serde_json::from_value(
                serde_json::json!({"id": "r", "effect": "permit", "when": when}),
            )
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn each_cel_root_is_built_as_the_whole_attribute_map_had_it() {
        let id = alice();
        let headers = vec![
            ("X-Team".to_owned(), "a".to_owned()),
            ("x-team".to_owned(), "b".to_owned()),
            ("Accept".to_owned(), "*/*".to_owned()),
        ];
        let args = serde_json::json!({"city": "Paris", "n": -4, "big": 18446744073709551615u64, "f": 0.5, "l": [true, {}]});
        for (identity, target, source) in [
            (
                Some(&id),
                Some((TargetKind::Tool, "t")),
                parse_source_address("10.0.0.1"),
            ),
            (None, Some((TargetKind::Resource, "file:///x")), None),
            (
                None,
                Some((TargetKind::Prompt, "p")),
                parse_source_address("::1"),
            ),
            (None, None, None),
        ] {
            let call = Call {
                server: "s",
                method: "tools/call",
                target,
                arguments: Some(&args),
                lax_arguments: &[],
            };
            let ctx = Context {
                identity,
                source,
                headers: &headers,
                now_unix: 1_800_000_123,
            };
            let reference = reference_attributes(&call, &ctx, &args);
            for root in CEL_ROOTS {
                let built = cel_attribute(root, &Need::All, &call, &ctx, &args).unwrap();
                let built = cel::Value::try_from(built.as_ref()).unwrap();
                assert!(
                    same(&built, &to_cel(&reference[*root])),
                    "{root}: {built:?}"
                );
            }
        }
    }

    #[test]
    fn a_when_builds_only_the_roots_it_reads() {
        let roots = |when: &str| -> Vec<&str> {
            rule(when)
                .when
                .unwrap()
                .reads
                .iter()
                .map(|(r, _)| *r)
                .collect()
        };
        assert_eq!(roots("args.n > 1"), ["args"]);
        assert_eq!(
            roots("has(subject.claims.x) || time.hour < 3"),
            ["subject", "time"]
        );
        assert_eq!(
            roots("request.tool == 't' && headers['x'] == source.address && size(args) > 0"),
            ["request", "args", "source", "headers"]
        );
        assert!(roots("true").is_empty());
        // Comprehension variables are not attributes; a name used outside
        // the comprehension binding it still is.
        assert_eq!(roots("args.l.exists(x, x > 1)"), ["args"]);
        let bad = compile_rule(
            "p",
            true,
            &serde_json::from_value(serde_json::json!(
                {"id": "r", "effect": "permit", "when": "args.l.exists(x, x > 1) || x > 1"}
            ))
            .unwrap(),
        );
        assert!(matches!(bad, Err((f, m)) if f == "/when" && m.contains("\"x\"")));
        // Only the fields read.
        let reads = rule("subject.tenant == 'a' && 'x-block' in headers && args.q.size() < 9")
            .when
            .unwrap()
            .reads;
        let want =
            |f: &[&str]| Need::Fields(f.iter().map(|k| ((*k).to_owned(), Need::All)).collect());
        assert_eq!(
            reads,
            [
                ("args", want(&["q"])),
                ("subject", want(&["tenant"])),
                ("headers", want(&["x-block"])),
            ]
        );
    }

    /// Every `when` below, over every call below, evaluates to what it did
    /// with the whole attribute map: the same value or the same error.
    #[test]
    fn a_selective_build_decides_as_the_whole_attribute_map() {
        let exprs = [
            // args: paths, missing keys, has, in, size of the whole, macros
            "args.city == 'Paris'",
            "args['city'] == 'Paris'",
            "args.missing == 1",
            "args.missing.deeper == 1",
            "has(args.city)",
            "has(args.missing)",
            "has(args.nested.x)",
            "has(args.nested.q)",
            "has(args.city.x)",
            "args.city.x == 1",
            "args.n.x == 1",
            "args.nested.x[1] == 'y'",
            "args.nested.x[3] == 2.5",
            "args.nested.x.exists(v, v == 2.5)",
            "args.l.exists(v, v == true)",
            "args.l[1] == {}",
            "args.tags.all(t, t.startsWith('a'))",
            "args.tags.exists_one(t, t == 'ab')",
            "args.tags.filter(t, t.endsWith('c')).size() == 1",
            "args.tags.map(t, t + '!')[0] == 'ab!'",
            "size(args) == 7",
            "args.size() > 3",
            "'city' in args",
            "'nope' in args",
            "'x' in args.nested",
            "'ab' in args.tags",
            "1 in args",
            "args.exists(k, k == 'city')",
            "args.all(k, k.size() > 0)",
            "args == {'city': 'Paris'}",
            "args.nested == {'x': [1, 'y', null, 2.5]}",
            "args.nested.x == [1, 'y', null, 2.5]",
            "args.city.startsWith('Pa') && args.city.endsWith('is') && args.city.contains('ar')",
            "args.city.size() == 5 && size(args.city) == 5",
            "args.n % 2 == 0",
            "args.n > 3",
            "args.big > 0u",
            "args.f < 1.0",
            "dyn(args).city == 'Paris'",
            "args[request.tool] == 1",
            "args[0] == 1",
            "[args.city, args.n].size() == 2",
            "{'a': args.city}.a == 'Paris'",
            "args.city == 'Paris' || args.missing == 1",
            "args.missing == 1 || true",
            "args.missing == 1 && false",
            "[1, 2].exists(args, args == 2) && args.city == 'Paris'",
            "[{'z': 1}].exists(args, has(args.z)) && has(args.city)",
            "args.city",
            "args",
            // subject
            "subject.authenticated",
            "subject.id == 'alice' && subject.agent.startsWith('b')",
            "subject.tenant == ''",
            "'ops' in subject.roles",
            "subject.roles.exists(r, r == 'admin')",
            "size(subject.groups) == 0 && subject.scopes == ['mcp']",
            "subject.claims.sub == 'alice'",
            "has(subject.claims.nested) && has(subject.claims.nested.x)",
            "subject.claims.nested.x[3] == 2.5",
            "subject.claims.missing == 1",
            "has(subject.claims.missing)",
            "size(subject.claims) == 3",
            "subject.claims.exists(k, k == 'n')",
            "'n' in subject.claims",
            "subject.nope == 1",
            "size(subject) == 8",
            // request
            "request.tool == 't' && request.method == 'tools/call' && request.server == 's'",
            "request.prompt == '' && request.resource == ''",
            "size(request) == 5",
            "request.nope == 1",
            "has(request.resource)",
            // headers
            "headers['x-team'] == 'b'",
            "headers['X-Team'] == 'b'",
            "'x-team' in headers",
            "'X-Team' in headers",
            "headers.accept == '*/*'",
            "size(headers) == 2",
            "headers.exists(h, h == 'accept')",
            "has(headers.missing)",
            "headers.missing == 'x'",
            // source, time
            "source.address == '10.0.0.1'",
            "source.address.startsWith('10.')",
            "size(source) == 1 && has(source.address)",
            "time.hour < 12 && time.minute >= 0",
            "time.weekday >= 1 && time.unix > 0",
            "size(time) == 4",
            // several roots at once
            "request.tool == 't' && subject.id == 'alice' && headers['x-team'] == 'b' && args.n > 1",
        ];
        let id = alice();
        let headers = [
            ("X-Team".to_owned(), "a".to_owned()),
            ("x-team".to_owned(), "b".to_owned()),
            ("Accept".to_owned(), "*/*".to_owned()),
        ];
        let argument_sets = [
            serde_json::json!({
                "city": "Paris", "n": 4, "big": 18446744073709551615u64, "f": 0.5,
                "l": [true, {}], "tags": ["ab", "abc"], "nested": {"x": [1, "y", null, 2.5]},
            }),
            serde_json::json!({}),
            serde_json::json!({"city": {"x": 1}, "nested": "flat", "tags": "ab", "n": "4"}),
            serde_json::json!([1, 2]),
            serde_json::json!("city"),
            serde_json::json!(null),
        ];
        let mut compared = 0;
        for when in exprs {
            let r = rule(when);
            let condition = r.when.as_ref().unwrap();
            for args in &argument_sets {
                for (identity, source) in
                    [(Some(&id), parse_source_address("10.0.0.1")), (None, None)]
                {
                    for headers in [&headers[..], &[]] {
                        let call = Call {
                            server: "s",
                            method: "tools/call",
                            target: Some((TargetKind::Tool, "t")),
                            arguments: Some(args),
                            lax_arguments: &[],
                        };
                        let ctx = Context {
                            identity,
                            source,
                            headers,
                            now_unix: 1_800_000_123,
                        };
                        let selective = eval_cel(condition, &call, &ctx, args);
                        let full = eval_full(when, &call, &ctx, args);
                        match (&selective, &full) {
                            (Ok(a), Ok(b)) => {
                                assert!(same(a, b), "{when} over {args}: {a:?} != {b:?}")
                            }
                            (Err(a), Err(b)) => assert_eq!(a, b, "{when} over {args}"),
                            _ => panic!("{when} over {args}: {selective:?} != {full:?}"),
                        }
                        assert_eq!(
                            r.evaluate(&call, &ctx),
                            match full {
                                Ok(cel::Value::Bool(true)) => Match::Yes,
                                Ok(cel::Value::Bool(false)) => Match::No,
                                _ => Match::Error,
                            },
                            "{when} over {args}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, exprs.len() * argument_sets.len() * 4);
    }

    #[test]
    fn a_when_evaluates_over_what_it_reads() {
        let id = alice();
        let headers = vec![("X-Team".to_owned(), "b".to_owned())];
        let args = serde_json::json!({"n": 3});
        let call = Call {
            server: "s",
            method: "tools/call",
            target: Some((TargetKind::Tool, "t")),
            arguments: Some(&args),
            lax_arguments: &[],
        };
        let ctx = Context {
            identity: Some(&id),
            source: parse_source_address("10.0.0.1"),
            headers: &headers,
            now_unix: 1_800_000_123,
        };
        for (when, expected) in [
            ("args.n == 3", Match::Yes),
            (
                "subject.claims.nested.x[3] == 2.5 && 'ops' in subject.roles",
                Match::Yes,
            ),
            (
                "headers['x-team'] == 'b' && source.address == '10.0.0.1'",
                Match::Yes,
            ),
            (
                "time.weekday >= 1 && request.tool == 't' && subject.agent == 'bot'",
                Match::Yes,
            ),
            ("subject.tenant != ''", Match::No),
            ("args.missing == 1", Match::Error),
            ("has(args.missing)", Match::No),
            ("true", Match::Yes),
        ] {
            assert_eq!(rule(when).evaluate(&call, &ctx), expected, "{when}");
        }
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let l = Cidr::parse("::1/128").unwrap();
        assert!(l.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn clock_and_windows() {
        // 2026-12-02 is a Wednesday; 10:30 UTC.
        let t = 1_796_207_400u64 - (1_796_207_400 % 86_400) + 10 * 3600 + 30 * 60;
        let (h, m, wd) = clock(t);
        assert_eq!((h, m), (10, 30));
        assert_eq!(wd, 3);
        let office = CompiledTime {
            days: 0b1_1111,
            after: Some(9 * 60),
            before: Some(17 * 60),
        };
        assert!(office.matches(t));
        let night = CompiledTime {
            days: 0,
            after: Some(22 * 60),
            before: Some(6 * 60),
        };
        assert!(!night.matches(t));
        assert!(night.matches(t - 10 * 3600 - 30 * 60 + 3600));
    }
}

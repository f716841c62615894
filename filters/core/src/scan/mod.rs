//! Content security: PII and secret detection, redaction, and injection
//! screening, compiled once from a `kind: ContentPolicy` bundle document.
//!
//! Shape, and why:
//! * [`ContentPolicySpec`] is the document's `spec`, strict serde
//!   (`deny_unknown_fields`), so a typo in a policy is a compile error and
//!   not a silently ignored rule. [`compile`] turns it into a
//!   [`ContentPolicy`] holding a [`Scanner`] (PII, secrets) and an
//!   [`injection::Screen`] (poisoning, injection, hidden content), or into
//!   every error at once as `(pointer, message)` pairs, pointers relative to
//!   the spec (`/pii/custom/0/regex`).
//! * The scanner is one leftmost-first multi-pattern automaton over every
//!   entity pattern (built-in and custom): one pass over the text whatever
//!   the number of patterns. Each candidate is confirmed by a
//!   [`validators::Validator`]; a rejected candidate resumes the search one
//!   character later, so a failed candidate cannot hide a real one that
//!   overlaps it.
//! * Findings and reports carry entity types, rule ids, offsets and JSON
//!   pointers, never the matched text, so they can go into audit records and
//!   metrics as they are.
//! * Redaction is JSON-aware ([`Scanner::redact_json`]): it rewrites spans
//!   inside string values (and object keys), so the message stays valid JSON
//!   and the SSE framing around it is untouched.

pub mod detector;
pub mod injection;
pub mod patterns;
pub mod redact;
pub mod validators;

use patterns::{BUILTINS, Class};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use validators::Validator;

pub use injection::{InjectionSpec, Screen};
pub use redact::{JsonFinding, Report};

/// Which way a message is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Client to server: tools/call arguments.
    Request,
    /// Server to client: tool results, prompts, resources.
    Response,
}

/// What to do with a detected entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Not reported at all.
    Off,
    /// Reported in the audit record; content passes unchanged.
    Flag,
    /// The span is replaced by `[REDACTED:<ENTITY>]`.
    Redact,
    /// The message is refused (spans are also redacted, in case a caller
    /// passes it on regardless).
    Block,
}

/// Actions for one entity type (or group), per direction; an absent side
/// falls through to the next, less specific entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectionalActions {
    #[serde(default)]
    pub request: Option<Action>,
    #[serde(default)]
    pub response: Option<Action>,
}

/// A pattern from the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomPattern {
    /// Rule id reported in findings (`acme.employee-id`).
    pub id: String,
    /// Entity type (`EMPLOYEE_ID`), uppercase letters, digits and `_`.
    pub entity: String,
    /// Regular expression (regex-automata syntax; no look-around or
    /// back-references).
    pub regex: String,
    /// Validator confirming each candidate (default: none).
    #[serde(default)]
    pub validator: Option<Validator>,
    /// Treat as a secret (default actions of secrets) rather than PII.
    #[serde(default)]
    pub secret: bool,
}

/// `spec.pii` of a ContentPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiiSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Actions by entity type, by group (`pii`, `secrets`) or for all (`*`).
    /// Most specific wins; defaults: PII flag on requests and redact on
    /// responses, secrets block on requests and redact on responses.
    #[serde(default)]
    pub actions: BTreeMap<String, DirectionalActions>,
    /// Built-in pattern ids switched off (`pii.ipv4`).
    #[serde(default)]
    pub disable: Vec<String>,
    /// Extra patterns, tried after the built-ins.
    #[serde(default)]
    pub custom: Vec<CustomPattern>,
}

impl Default for PiiSpec {
    fn default() -> Self {
        PiiSpec {
            enabled: true,
            actions: BTreeMap::new(),
            disable: Vec::new(),
            custom: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The `spec` of a `kind: ContentPolicy` document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentPolicySpec {
    #[serde(default)]
    pub pii: PiiSpec,
    #[serde(default)]
    pub injection: InjectionSpec,
}

/// A compiled content policy.
#[derive(Debug, Clone)]
pub struct ContentPolicy {
    pub scanner: Scanner,
    pub screen: Screen,
}

/// What inspecting one message part found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// PII and secrets.
    pub pii: Report,
    /// Injection screening (empty for request arguments).
    pub screen: Vec<injection::Finding>,
    /// Refuse the message: a PII `block`, or a screening `blockCall` /
    /// `dropTool`.
    pub blocked: bool,
    /// The value was changed (redacted or stripped): re-serialise it.
    pub modified: bool,
}

/// The screening verdict on one tool of a tools/list result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolScreen {
    /// Position in the list as received.
    pub index: usize,
    pub name: String,
    /// Removed from the list.
    pub dropped: bool,
    pub findings: Vec<injection::Finding>,
}

impl ContentPolicy {
    /// tools/call `params.arguments`: PII and secrets, request direction.
    pub fn inspect_arguments(&self, arguments: &mut serde_json::Value) -> Inspection {
        let pii = self.scanner.redact_json(arguments, Direction::Request);
        Inspection {
            blocked: pii.blocked,
            modified: pii.modified(),
            pii,
            screen: Vec::new(),
        }
    }

    /// A tools/call `result` (`Surface::ToolResult`) or a prompts/get
    /// `result` (`Surface::Prompt`): screening (strip) first, so stripped
    /// spans are not also reported as PII, then PII redaction.
    pub fn inspect_result(
        &self,
        result: &mut serde_json::Value,
        surface: injection::Surface,
    ) -> Inspection {
        use injection::ScreenAction;
        let screen = self.screen.strip_json(result, surface);
        let pii = self.scanner.redact_json(result, Direction::Response);
        let blocked = pii.blocked
            || screen
                .iter()
                .any(|f| matches!(f.action, ScreenAction::BlockCall | ScreenAction::DropTool));
        let modified = pii.modified() || screen.iter().any(|f| f.action == ScreenAction::Strip);
        Inspection {
            pii,
            screen,
            blocked,
            modified,
        }
    }

    /// The `tools` array of a tools/list result: removes every tool whose
    /// worst finding is `dropTool`, and returns a verdict for each tool that
    /// had findings (dropped or not), for the audit record. Pins are checked
    /// before this, by [`crate::pins::PinSet::check`].
    pub fn screen_tools(&self, tools: &mut Vec<serde_json::Value>) -> Vec<ToolScreen> {
        self.screen_tools_cached(tools, &mut ToolScreenCache::default())
    }

    /// [`ContentPolicy::screen_tools`], reusing the findings of every tool
    /// whose screened members are exactly those of the same-named tool in
    /// `cache` (the last list this policy screened), and leaving in `cache`
    /// the tools of this list. A server serves the same tools/list again
    /// and again, and screening a definition (the learned detector above
    /// all) costs far more than comparing it.
    pub fn screen_tools_cached(
        &self,
        tools: &mut Vec<serde_json::Value>,
        cache: &mut ToolScreenCache,
    ) -> Vec<ToolScreen> {
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(tools.len());
        let mut last = std::mem::take(&mut cache.tools);
        for (index, tool) in tools.iter().enumerate() {
            let name = tool.get("name").and_then(serde_json::Value::as_str);
            let remembered = name
                .and_then(|n| last.remove(n))
                .filter(|(members, _)| ToolScreenCache::same_members(tool, members));
            let findings = match remembered {
                Some((members, findings)) => {
                    cache.reused = cache.reused.saturating_add(1);
                    if let Some(n) = name {
                        cache
                            .tools
                            .insert(n.to_owned(), (members, findings.clone()));
                    }
                    findings
                }
                None => {
                    let findings = self.screen.check_tool(tool);
                    cache.screened = cache.screened.saturating_add(1);
                    if let Some(n) = name {
                        let members = ToolScreenCache::members(tool);
                        cache
                            .tools
                            .insert(n.to_owned(), (members, findings.clone()));
                    }
                    findings
                }
            };
            let dropped = injection::worst(&findings) == Some(injection::ScreenAction::DropTool);
            keep.push(!dropped);
            if !findings.is_empty() {
                out.push(ToolScreen {
                    index,
                    name: tool
                        .get("name")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    dropped,
                    findings,
                });
            }
        }
        let mut keep = keep.into_iter();
        tools.retain(|_| keep.next().unwrap_or(false));
        out
    }
}

/// What [`ContentPolicy::screen_tools_cached`] remembers: per tool name of
/// the last list, the screened members of its definition
/// ([`injection::TOOL_TEXT_KEYS`] and [`injection::TOOL_TREE_KEYS`]) and
/// their findings. A tool is reused only when every one of those members is
/// equal (`Value` equality, exact: no digest that could collide) to the
/// remembered one, so its findings are the ones screening it would give.
/// Only the last list's tools are kept, so it never holds more than one
/// list. It belongs to one policy: the engine keeps one per server, in a
/// memory rebuilt with each bundle.
#[derive(Debug, Clone, Default)]
pub struct ToolScreenCache {
    tools: std::collections::HashMap<String, (serde_json::Value, Vec<injection::Finding>)>,
    /// Tools screened, and tools whose findings were reused, so far.
    pub screened: u64,
    pub reused: u64,
}

impl ToolScreenCache {
    fn screened_keys() -> impl Iterator<Item = &'static str> {
        injection::TOOL_TEXT_KEYS
            .into_iter()
            .chain(injection::TOOL_TREE_KEYS)
    }

    /// The screened members of `tool` (an object; `Null` when it is not).
    fn members(tool: &serde_json::Value) -> serde_json::Value {
        let Some(obj) = tool.as_object() else {
            return serde_json::Value::Null;
        };
        let kept = Self::screened_keys()
            .filter_map(|k| obj.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect();
        serde_json::Value::Object(kept)
    }

    /// Whether `tool`'s screened members are exactly `members`.
    fn same_members(tool: &serde_json::Value, members: &serde_json::Value) -> bool {
        match (tool.as_object(), members.as_object()) {
            (Some(obj), Some(kept)) => Self::screened_keys().all(|k| obj.get(k) == kept.get(k)),
            _ => false,
        }
    }

    /// How many tools it remembers.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// Compiles a ContentPolicy spec: every error, with a JSON pointer relative
/// to the spec.
pub fn compile(spec: &ContentPolicySpec) -> Result<ContentPolicy, Vec<(String, String)>> {
    let scanner = Scanner::compile(&spec.pii);
    let screen = Screen::compile(&spec.injection);
    match (scanner, screen) {
        (Ok(scanner), Ok(screen)) => Ok(ContentPolicy { scanner, screen }),
        (a, b) => {
            let mut errs = a.err().unwrap_or_default();
            errs.extend(b.err().unwrap_or_default());
            Err(errs)
        }
    }
}

/// The built-in policy (an empty spec).
pub fn default_policy() -> Result<ContentPolicy, Vec<(String, String)>> {
    compile(&ContentPolicySpec::default())
}

/// One detected entity in a text. Never holds the matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub entity: String,
    pub rule_id: String,
    /// Byte offsets of the span in the scanned text.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    entity: String,
    validator: Validator,
    request: Action,
    response: Action,
}

/// The compiled PII and secret scanner.
#[derive(Debug, Clone)]
pub struct Scanner {
    regex: Option<Regex>,
    rules: Vec<Rule>,
}

/// Upper bound on findings kept per scanned text, so a hostile payload of a
/// million emails costs bounded memory. Counting stops there too; the
/// report says so.
pub const MAX_FINDINGS_PER_TEXT: usize = 10_000;

/// Rejected candidates up to this length are rescanned from their next
/// character, so one cannot hide an overlapping real entity; longer ones
/// (no built-in entity but keys and tokens is this long) resume after their
/// end. This bounds the rescanning to `MAX_RESCAN` per byte.
const MAX_RESCAN: usize = 64;

fn entity_name_ok(e: &str) -> bool {
    !e.is_empty()
        && e.len() <= 64
        && e.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl Scanner {
    /// Compiles `spec.pii`.
    pub fn compile(spec: &PiiSpec) -> Result<Scanner, Vec<(String, String)>> {
        let mut errs = Vec::new();
        for (i, id) in spec.disable.iter().enumerate() {
            if !BUILTINS.iter().any(|b| b.id == id) {
                errs.push((
                    format!("/pii/disable/{i}"),
                    format!("no built-in pattern {id:?}"),
                ));
            }
        }
        let mut known: Vec<(String, Class)> = BUILTINS
            .iter()
            .map(|b| (b.entity.to_owned(), b.class))
            .collect();
        for (i, c) in spec.custom.iter().enumerate() {
            if !entity_name_ok(&c.entity) {
                errs.push((
                    format!("/pii/custom/{i}/entity"),
                    "entity types are 1-64 of A-Z, 0-9 and _".into(),
                ));
            }
            if c.id.is_empty() {
                errs.push((format!("/pii/custom/{i}/id"), "empty id".into()));
            }
            if let Err(e) = syntax::parse(&c.regex) {
                errs.push((format!("/pii/custom/{i}/regex"), e.to_string()));
            }
            let class = if c.secret { Class::Secret } else { Class::Pii };
            known.push((c.entity.clone(), class));
        }
        for key in spec.actions.keys() {
            if key != "*"
                && key != "pii"
                && key != "secrets"
                && !known.iter().any(|(e, _)| e == key)
            {
                errs.push((
                    format!("/pii/actions/{}", key.replace('~', "~0").replace('/', "~1")),
                    format!("unknown entity type {key:?}; use a built-in or custom entity, \"pii\", \"secrets\" or \"*\""),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let action = |entity: &str, class: Class, dir: Direction| -> Action {
            let group = match class {
                Class::Pii => "pii",
                Class::Secret => "secrets",
            };
            let pick = |k: &str| {
                spec.actions.get(k).and_then(|a| match dir {
                    Direction::Request => a.request,
                    Direction::Response => a.response,
                })
            };
            pick(entity)
                .or_else(|| pick(group))
                .or_else(|| pick("*"))
                .unwrap_or(match (class, dir) {
                    (Class::Pii, Direction::Request) => Action::Flag,
                    (Class::Pii, Direction::Response) => Action::Redact,
                    (Class::Secret, Direction::Request) => Action::Block,
                    (Class::Secret, Direction::Response) => Action::Redact,
                })
        };
        let mut patterns: Vec<String> = Vec::new();
        let mut rules = Vec::new();
        if spec.enabled {
            for b in BUILTINS
                .iter()
                .filter(|b| !spec.disable.iter().any(|d| d == b.id))
            {
                patterns.push(b.regex.to_owned());
                rules.push(Rule {
                    id: b.id.to_owned(),
                    entity: b.entity.to_owned(),
                    validator: b.validator,
                    request: action(b.entity, b.class, Direction::Request),
                    response: action(b.entity, b.class, Direction::Response),
                });
            }
            for c in &spec.custom {
                let class = if c.secret { Class::Secret } else { Class::Pii };
                patterns.push(c.regex.clone());
                rules.push(Rule {
                    id: c.id.clone(),
                    entity: c.entity.clone(),
                    validator: c.validator.unwrap_or(Validator::None),
                    request: action(&c.entity, class, Direction::Request),
                    response: action(&c.entity, class, Direction::Response),
                });
            }
        }
        let regex = if patterns.is_empty() {
            None
        } else {
            Some(
                Regex::builder()
                    .configure(Regex::config().match_kind(MatchKind::LeftmostFirst))
                    .syntax(syntax::Config::new().unicode(true).utf8(true))
                    .build_many(&patterns)
                    .map_err(|e| vec![("/pii".to_owned(), e.to_string())])?,
            )
        };
        Ok(Scanner { regex, rules })
    }

    /// The scanner of the built-in patterns and default actions.
    pub fn builtin() -> Result<Scanner, Vec<(String, String)>> {
        Scanner::compile(&PiiSpec::default())
    }

    /// The action for `entity` in `direction` (`Off` for unknown types).
    pub fn action_for(&self, entity: &str, direction: Direction) -> Action {
        self.rules
            .iter()
            .find(|r| r.entity == entity)
            .map(|r| match direction {
                Direction::Request => r.request,
                Direction::Response => r.response,
            })
            .unwrap_or(Action::Off)
    }

    /// Every validated entity in `text`, in order, non-overlapping.
    pub fn scan_text(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.scan_each(text, |rule, start, end| {
            out.push(Finding {
                entity: rule.entity.clone(),
                rule_id: rule.id.clone(),
                start,
                end,
            });
            out.len() < MAX_FINDINGS_PER_TEXT
        });
        out
    }

    /// Findings with the action each gets in `direction` (`Off` dropped).
    pub fn scan_text_for(&self, text: &str, direction: Direction) -> Vec<(Finding, Action)> {
        let mut out = Vec::new();
        self.scan_each(text, |rule, start, end| {
            let action = match direction {
                Direction::Request => rule.request,
                Direction::Response => rule.response,
            };
            if action != Action::Off {
                out.push((
                    Finding {
                        entity: rule.entity.clone(),
                        rule_id: rule.id.clone(),
                        start,
                        end,
                    },
                    action,
                ));
            }
            out.len() < MAX_FINDINGS_PER_TEXT
        });
        out
    }

    /// Whether `text` contains anything at all (cheap pre-check).
    pub fn is_match(&self, text: &str) -> bool {
        let mut any = false;
        self.scan_each(text, |_, _, _| {
            any = true;
            false
        });
        any
    }

    /// Calls `f(rule, start, end)` for each validated match; `f` returns
    /// whether to go on.
    fn scan_each(&self, text: &str, mut f: impl FnMut(&Rule, usize, usize) -> bool) {
        let Some(regex) = &self.regex else { return };
        let mut pos = 0;
        // The last rejected candidate: a suffix of it from the same pattern
        // (`doe@example.com` inside `jane..doe@example.com`) is no better.
        let mut rejected: Option<(usize, usize)> = None;
        while pos <= text.len() {
            let Some(m) = regex.find(Input::new(text).range(pos..)) else {
                break;
            };
            let (s, e) = (m.start(), m.end());
            let pid = m.pattern().as_usize();
            let accepted = if rejected == Some((pid, e)) {
                None
            } else {
                self.rules.get(pid).and_then(|rule| {
                    let cand = text.get(s..e)?;
                    let (a, b) = validators::validate(rule.validator, text, s, cand)?;
                    (b > a).then_some((rule, s + a, s + b))
                })
            };
            match accepted {
                Some((rule, a, b)) => {
                    if !f(rule, a, b) {
                        return;
                    }
                    pos = b.max(s + 1);
                }
                None if e - s > MAX_RESCAN => {
                    // A long rejected candidate is not rescanned from every
                    // offset (that would be quadratic on hostile input).
                    rejected = Some((pid, e));
                    pos = e.max(s + 1);
                }
                None => {
                    rejected = Some((pid, e));
                    // Resume one character after the rejected start.
                    pos = s + text
                        .get(s..)
                        .and_then(|t| t.chars().next())
                        .map_or(1, char::len_utf8);
                }
            }
            while pos < text.len() && !text.is_char_boundary(pos) {
                pos += 1;
            }
        }
    }

    /// `text` with every span whose action is `Redact` or `Block` replaced,
    /// and the findings (with actions). Borrowed when nothing changed.
    pub fn redact_text<'a>(
        &self,
        text: &'a str,
        direction: Direction,
    ) -> (std::borrow::Cow<'a, str>, Vec<(Finding, Action)>) {
        let findings = self.scan_text_for(text, direction);
        let out = redact::apply(text, &findings);
        (out, findings)
    }

    /// JSON-aware redaction of a whole message body or a part of it (the
    /// `arguments` of a tools/call, the `result` of a response).
    pub fn redact_json(&self, value: &mut serde_json::Value, direction: Direction) -> Report {
        redact::redact_json(self, value, direction)
    }
}

#[cfg(test)]
mod tests;

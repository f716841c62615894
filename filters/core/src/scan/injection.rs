//! Tool-poisoning and prompt-injection screening.
//!
//! What a model reads from an MCP server (tool descriptions, schema strings,
//! prompt texts, tool results) is an instruction channel that no user sees.
//! This module screens it for the published attack shapes: instructions
//! addressed to the model, requests to read secrets, text that redefines
//! another tool (shadowing), exfiltration channels, and hidden content
//! (invisible characters, mixed-script words, whitespace runs, blobs).
//!
//! Shape, and why:
//! * Rules are data ([`RuleSpec`]): built-in defaults in [`BUILTIN_RULES`],
//!   overridable by id and extendable through `spec.injection` of the
//!   ContentPolicy, so the control plane can ship a new rule without a new
//!   filter build. Each has an id, a [`Category`] and a [`Severity`].
//! * One multi-pattern automaton (`MatchKind::All`) answers "which rules
//!   match this text" in a single pass; only the rules that did match are
//!   then run alone to find their spans (needed to strip). Clean text, by
//!   far the common case, costs one pass whatever the number of rules.
//!   There is one such set per [`Surface`], of the rules that can report
//!   there: the others were skipped after the search anyway.
//! * The action is chosen per [`Surface`] and severity (`actions`), or per
//!   rule: drop the tool from a tools/list, block the call, strip the span,
//!   or flag only. [`worst`] folds a list of findings into one decision.
//! * Mixed-script (homoglyph) words are found by code, not by regex: a word
//!   mixing Latin with Cyrillic or Greek letters.
//! * Beside the rules, the learned detector ([`super::detector`]) scores each
//!   screened string; at or above its surface's threshold it is a finding of
//!   rule [`DETECTOR_RULE`] like any other, with its score. The rules stay
//!   for what is exact (hidden characters, escapes, blobs, exfiltration
//!   shapes); the model is for wording no rule foresaw.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::detector::Model;

/// What kind of attack a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Category {
    /// Instructions addressed to the model.
    Instruction,
    /// Requests to read keys, credentials, configuration, environment.
    SecretAccess,
    /// Text that redefines how another tool behaves.
    Shadowing,
    /// Channels that carry data out: URLs with placeholders, hidden parameters.
    Exfiltration,
    /// Content a human reviewer does not see.
    Hidden,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Instruction,
        Category::SecretAccess,
        Category::Shadowing,
        Category::Exfiltration,
        Category::Hidden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Instruction => "instruction",
            Category::SecretAccess => "secretAccess",
            Category::Shadowing => "shadowing",
            Category::Exfiltration => "exfiltration",
            Category::Hidden => "hidden",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// Where screened text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Surface {
    /// A tool definition in a tools/list result.
    ToolDefinition,
    /// The result of a tools/call.
    ToolResult,
    /// The messages of a prompts/get result.
    Prompt,
}

/// What to do about a finding, in increasing order of force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScreenAction {
    /// Not reported.
    Off,
    /// Recorded only.
    Flag,
    /// The matched span is removed (hidden characters deleted, other text
    /// replaced by `[REMOVED:<rule id>]`).
    Strip,
    /// The call is refused (a tool result or prompt is replaced by an error).
    BlockCall,
    /// The tool is removed from the tools/list (on other surfaces: as
    /// `BlockCall`).
    DropTool,
}

/// What a rule's pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// Text: descriptions, schema strings, results.
    #[default]
    Text,
    /// Names of input-schema properties.
    ParamName,
}

/// One rule, as it appears in the bundle. For an override of a built-in
/// rule only `id` and the fields to change are needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Regular expression (regex-automata syntax). Required for new rules.
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub target: Option<Target>,
    /// Surfaces the rule applies to (default: all).
    #[serde(default)]
    pub surfaces: Option<Vec<Surface>>,
    /// Fixed action, overriding the per-surface table.
    #[serde(default)]
    pub action: Option<ScreenAction>,
}

/// `spec.injection` of a ContentPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Built-in rule ids switched off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// New rules, and overrides of built-in ones (same id).
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Action per surface and severity; unlisted pairs keep the defaults
    /// (tool definitions: high and critical drop the tool; results and
    /// prompts: high strips, critical blocks; low and medium flag).
    #[serde(default)]
    pub actions: BTreeMap<Surface, BTreeMap<Severity, ScreenAction>>,
    /// The learned detector (on by default).
    #[serde(default)]
    pub detector: DetectorSpec,
}

impl Default for InjectionSpec {
    fn default() -> Self {
        InjectionSpec {
            enabled: true,
            disable: Vec::new(),
            rules: Vec::new(),
            actions: BTreeMap::new(),
            detector: DetectorSpec::default(),
        }
    }
}

/// A score or threshold between 0 and 1. `Eq` because a compiled policy
/// refuses NaN (and a spec is compared only for equality of documents).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Probability(pub f64);

impl Eq for Probability {}

/// `spec.injection.detector` of a ContentPolicy: the learned detector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectorSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Score at or above which a string is reported, per surface (0 < t <=
    /// 1); unlisted surfaces keep [`default_threshold`], chosen from the
    /// training report (`detector/REPORT.md`).
    #[serde(default)]
    pub thresholds: BTreeMap<Surface, Probability>,
    /// Action per surface for a reported string; unlisted surfaces keep
    /// [`default_detector_action`] (drop a tool definition, flag a result or
    /// prompt).
    #[serde(default)]
    pub actions: BTreeMap<Surface, ScreenAction>,
    /// Severity of its findings (default high).
    #[serde(default)]
    pub severity: Option<Severity>,
}

impl Default for DetectorSpec {
    fn default() -> Self {
        DetectorSpec {
            enabled: true,
            thresholds: BTreeMap::new(),
            actions: BTreeMap::new(),
            severity: None,
        }
    }
}

/// The rule id of the learned detector's findings.
pub const DETECTOR_RULE: &str = "model.injection";

/// Strings shorter than this many bytes are not scored: names, enum values
/// and types carry too few n-grams for a score to mean anything.
pub const DETECTOR_MIN_BYTES: usize = 20;

/// The default threshold per surface: the score at which the `val` split of
/// the training corpora had a false-positive rate of at most 1% on tool
/// definitions (dropped by default; on all of them and on the MCP servers'
/// own alone, and above every benign tool of the rules' development set,
/// the gate of `tests/scan_eval.rs`) and 2% on results and prompts
/// (flagged) (`detector/REPORT.md`, "Thresholds"; `detector/thresholds.json`).
pub fn default_threshold(surface: Surface) -> f64 {
    match surface {
        Surface::ToolDefinition => 0.926,
        Surface::ToolResult => 0.643,
        Surface::Prompt => 0.3,
    }
}

/// What a detector finding does by default: a tool definition the model
/// reads as poisoned is dropped (secure by default, where poisoning lives
/// and where the threshold was calibrated); a prompt is flagged. Tool
/// results are not scored unless an operator names `toolResult`: there the
/// model would only flag (a false positive must not break a call) and costs
/// about 0.2 ms a KiB natively, several times the rest of the screen, on
/// every call (docs/content-security.md, "The learned detector").
pub fn default_detector_action(surface: Surface) -> ScreenAction {
    match surface {
        Surface::ToolDefinition => ScreenAction::DropTool,
        Surface::Prompt => ScreenAction::Flag,
        Surface::ToolResult => ScreenAction::Off,
    }
}

fn yes() -> bool {
    true
}

/// A built-in rule.
pub struct Builtin {
    pub id: &'static str,
    pub category: Category,
    pub severity: Severity,
    /// `None` for the code-implemented detectors.
    pub pattern: Option<&'static str>,
    pub target: Target,
    /// Empty: all surfaces.
    pub surfaces: &'static [Surface],
}

use Category as C;
use Severity as S;
const DEFS: &[Surface] = &[Surface::ToolDefinition, Surface::Prompt];
const ALL: &[Surface] = &[];

const fn r(
    id: &'static str,
    category: Category,
    severity: Severity,
    pattern: &'static str,
    surfaces: &'static [Surface],
) -> Builtin {
    Builtin {
        id,
        category,
        severity,
        pattern: Some(pattern),
        target: Target::Text,
        surfaces,
    }
}

/// The id of the mixed-script detector (implemented in code).
pub const MIXED_SCRIPT: &str = "hidden.mixed-script";
/// The id of the base64-blob rule, whose matches are confirmed in code.
const BASE64_BLOB: &str = "hidden.base64-blob";

/// The built-in rules. Sources for each shape are in docs/content-security.md.
pub const BUILTIN_RULES: &[Builtin] = &[
    // --- instructions addressed to the model
    r(
        "instruction.ignore-previous",
        C::Instruction,
        S::High,
        r"(?i)(?-u:\b)(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+)*(?:previous|prior|above|earlier|preceding|other|system|original)\s+(?:instructions?|prompts?|rules|directions|guidelines|messages|context)",
        ALL,
    ),
    r(
        "instruction.conceal-from-user",
        C::Instruction,
        S::High,
        r"(?i)(?-u:\b)(?:(?:do\s+not|don'?t|never|must\s+not|should\s+not)\s+(?:tell|inform|notify|alert|show|reveal|mention|disclose|display)(?-u:\b)|without\s+(?:telling|informing|notifying|alerting)\s+(?:the\s+)?user|(?:hide|conceal|keep)\s+(?:this|it|that)\s+(?:secret\s+)?from\s+(?:the\s+)?user|the\s+user\s+(?:must|should)\s+not\s+(?:know|see|notice|be\s+told))",
        ALL,
    ),
    r(
        "instruction.important-tag",
        C::Instruction,
        S::High,
        r"(?is)<\s*(?:important|system|instructions?|secret|hidden|admin|sys|critical)\s*>.*?<\s*/\s*(?:important|system|instructions?|secret|hidden|admin|sys|critical)\s*>|<\s*(?:important|system|instructions?|secret|hidden|admin|sys|critical)\s*>",
        ALL,
    ),
    r(
        "instruction.role-override",
        C::Instruction,
        S::High,
        r"(?i)(?-u:\b)(?:you\s+are\s+now\s+(?:a|an|in)(?-u:\b)|from\s+now\s+on,?\s+you|new\s+(?:system\s+)?instructions?\s*:|\[\s*system\s*\]|developer\s+mode\s+enabled)",
        ALL,
    ),
    r(
        "instruction.model-directive",
        C::Instruction,
        S::Medium,
        r"(?i)(?-u:\b)(?:before\s+(?:using|calling|invoking)\s+this\s+tool,?\s+(?:you\s+)?(?:must|should|need\s+to|have\s+to)?\s*(?:first\s+)?(?:read|call|run|send|fetch|open|include)|otherwise\s+the\s+tool\s+(?:will\s+not|won'?t)\s+work|this\s+is\s+(?:very\s+)+important|the\s+(?:system|application)\s+will\s+crash|all\s+data\s+will\s+be\s+lost)",
        ALL,
    ),
    r(
        "instruction.html-comment",
        C::Instruction,
        S::Medium,
        r"(?s)<!--.*?-->",
        DEFS,
    ),
    // --- requests for secrets and local files
    r(
        "secret.ssh-key",
        C::SecretAccess,
        S::High,
        r"(?i)(?:\.ssh/(?:id_[a-z0-9_]+|authorized_keys|known_hosts|config)(?-u:\b)|(?-u:\b)id_(?:rsa|dsa|ecdsa|ed25519)(?:\.pub)?(?-u:\b))",
        DEFS,
    ),
    r(
        "secret.mcp-config",
        C::SecretAccess,
        S::High,
        r"(?i)(?:(?-u:\b)mcp\.json(?-u:\b)|claude_desktop_config\.json|\.cursor/|\.codeium/windsurf|\.continue/config|\.vscode/mcp)",
        DEFS,
    ),
    r(
        "secret.credential-files",
        C::SecretAccess,
        S::High,
        r"(?i)(?:\.aws/credentials|\.netrc(?-u:\b)|\.npmrc(?-u:\b)|\.pypirc(?-u:\b)|\.docker/config\.json|\.kube/config|\.git-credentials|\.gnupg/|/etc/(?:passwd|shadow)(?-u:\b)|(?-u:\b)wallet\.dat(?-u:\b)|(?:^|[\s/'`(])\.env(?:\.[a-z]+)?(?-u:\b))",
        DEFS,
    ),
    r(
        "secret.environment",
        C::SecretAccess,
        S::Medium,
        r"(?i)(?-u:\b)(?:environment\s+variables?|env\s+vars?|process\.env|os\.environ|printenv)(?-u:\b)",
        DEFS,
    ),
    r(
        "secret.read-credentials",
        C::SecretAccess,
        S::High,
        r"(?i)(?-u:\b)(?:read|cat|send|include|upload|pass|attach|extract|copy|collect|append)(?-u:\b)[^.\n]{0,40}(?-u:\b)(?:private\s+keys?|ssh\s+keys?|api\s+keys?|access\s+tokens?|credentials|passwords?|secrets?|seed\s+phrases?)(?-u:\b)",
        DEFS,
    ),
    r(
        "secret.env-secret-name",
        C::SecretAccess,
        S::High,
        r"(?-u:\b)[A-Z][A-Z0-9_]*_(?:API_KEY|SECRET(?:_KEY)?|ACCESS_KEY|TOKEN|PASSWORD)(?-u:\b)",
        DEFS,
    ),
    // A result or prompt that asks the model for a local file's contents:
    // the "advanced tool poisoning" shape, where the output does the asking.
    r(
        "secret.request-file-contents",
        C::SecretAccess,
        S::High,
        r"(?i)(?-u:\b)(?:provide|send|include|pass|paste|share|attach|upload)\s+(?:me\s+)?(?:the\s+)?(?:full\s+|entire\s+|complete\s+)?(?:contents?|text)\s+of\s+(?:the\s+)?(?:file\s+)?[`'\x22]?(?:~|\$HOME|/etc|/root|/home|\.\.?/|[A-Za-z]:\\)",
        ALL,
    ),
    // --- cross-tool shadowing
    r(
        "shadowing.when-other-tool",
        C::Shadowing,
        S::High,
        r"(?i)(?-u:\b)when(?:ever)?\s+(?:\(?[a-z0-9_]+\)?\s+)?(?:the\s+)?[`'\x22]?[a-z][a-z0-9_.\-]*[`'\x22]?\s+(?:tool\s+|function\s+)?is\s+(?:called|invoked|used|executed|available|present)",
        DEFS,
    ),
    r(
        "shadowing.side-effect-on-tool",
        C::Shadowing,
        S::High,
        r"(?i)(?-u:\b)(?:side\s+effects?\s+on|overrides?|redefines?|changes?\s+the\s+behaviou?r\s+of|modif(?:y|ies)\s+the\s+behaviou?r\s+of)\s+(?:the\s+)?(?:also\s+present\s+|other\s+)?[`'\x22]?[a-z0-9_.\-]+[`'\x22]?\s+(?:tool|function)",
        DEFS,
    ),
    r(
        "shadowing.redirect-recipient",
        C::Shadowing,
        S::High,
        r"(?i)(?-u:\b)(?:must|should|always|make\s+sure\s+(?:to|you))\s+(?:also\s+)?(?:send|forward|bcc|cc|copy|redirect|change)\s+(?:all\s+|every\s+|each\s+)?(?:emails?|messages?|the\s+recipient|recipients?|transfers?|payments?)(?-u:\b)",
        DEFS,
    ),
    r(
        "shadowing.instead-of-tool",
        C::Shadowing,
        S::Medium,
        r"(?i)(?-u:\b)instead\s+of\s+(?:using|calling)\s+(?:the\s+)?[`'\x22]?[a-z0-9_.\-]+[`'\x22]?\s+tool",
        DEFS,
    ),
    // --- exfiltration channels
    r(
        "exfiltration.url-placeholder",
        C::Exfiltration,
        S::High,
        r"(?i)https?://[^\s\x22'<>]+[?&][a-z0-9_\-]+=(?:\{[^}\s]*\}|\$\{[^}\s]*\}|<[^>\s]+>|\{\{[^}]*\}\}|%s|\[[A-Z_]+\])",
        ALL,
    ),
    r(
        "exfiltration.markdown-image",
        C::Exfiltration,
        S::High,
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*=[^)\s]*\)",
        ALL,
    ),
    r(
        "exfiltration.pass-as-parameter",
        C::Exfiltration,
        S::High,
        r"(?i)(?-u:\b)pass\s+(?:its|the|their|this|that|all)?\s*(?:full\s+|entire\s+)?(?:content|contents|value|text|data|output)\s+(?:as|in|into|via)\s+(?:the\s+)?[`'\x22]?[a-z_][a-z0-9_]*[`'\x22]?",
        DEFS,
    ),
    r(
        "exfiltration.send-data-to",
        C::Exfiltration,
        S::High,
        r"(?i)(?-u:\b)(?:send|post|upload|forward|transmit|exfiltrate|leak|email)\s+(?:it|them|this|everything|all\s+(?:of\s+)?(?:it|the\s+\w+)|the\s+(?:data|contents?|results?|files?|conversation|chat\s+history|messages?))(?:\s+of\s+[^.\n]{1,40}?)?\s+to\s+(?:https?://|[\w.+\-]+@[\w\-]+\.|\+?\d{6,})",
        ALL,
    ),
    r(
        "exfiltration.conversation-history",
        C::Exfiltration,
        S::Medium,
        r"(?i)(?-u:\b)(?:full|entire|whole|complete)\s+(?:list\s+of\s+(?:last|previous|recent)\s+messages|conversation(?:\s+history)?|chat\s+history)",
        DEFS,
    ),
    r(
        "exfiltration.include-history",
        C::Exfiltration,
        S::High,
        r"(?i)(?-u:\b)(?:include|attach|append|add|pass|put)\s+(?:a\s+|the\s+)?(?:full|entire|whole|complete)\s+(?:list\s+of\s+)?(?:(?:last|previous|recent|prior)\s+)?(?:messages|conversation|chat\s+history|emails|chats)",
        DEFS,
    ),
    Builtin {
        id: "exfiltration.data-parameter",
        category: C::Exfiltration,
        severity: S::High,
        pattern: Some(
            r"(?i)(?:^|_)(?:content_from|contents_of|file_contents|conversation_?history|chat_?history|previous_?messages|system_?prompt)(?:_|$)",
        ),
        target: Target::ParamName,
        surfaces: &[Surface::ToolDefinition],
    },
    Builtin {
        id: "secret.param-name",
        category: C::SecretAccess,
        severity: S::High,
        pattern: Some(
            r"(?i)(?:ssh|id_rsa|id_ed25519|id_ecdsa|private_?key|mnemonic|seed_?phrase|aws_?secret|\.env)",
        ),
        target: Target::ParamName,
        surfaces: &[Surface::ToolDefinition],
    },
    Builtin {
        id: "exfiltration.hidden-parameter",
        category: C::Exfiltration,
        severity: S::Medium,
        pattern: Some(
            r"(?i)^(?:side_?note|sidenote|hidden\w*|secret\w*|internal_\w+|debug_?info|__\w+|\w*(?:passw(?:or)?d|credentials?|api_?key|access_?token)\w*)$",
        ),
        target: Target::ParamName,
        surfaces: &[Surface::ToolDefinition],
    },
    // --- hidden content
    r(
        "hidden.unicode-tags",
        C::Hidden,
        S::Critical,
        r"[\x{E0000}-\x{E007F}]+",
        ALL,
    ),
    r(
        "hidden.bidi-control",
        C::Hidden,
        S::High,
        r"[\x{202A}-\x{202E}\x{2066}-\x{2069}\x{200E}\x{200F}\x{061C}]+",
        ALL,
    ),
    r(
        "hidden.zero-width",
        C::Hidden,
        S::High,
        r"[\x{200B}\x{200C}\x{200D}\x{2060}-\x{2064}\x{FEFF}\x{180E}\x{00AD}]+",
        DEFS,
    ),
    r(
        "hidden.ansi-escape",
        C::Hidden,
        S::High,
        r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07",
        ALL,
    ),
    r(
        "hidden.whitespace-run",
        C::Hidden,
        S::High,
        r"[ \t\x{00A0}\x{2000}-\x{200A}\x{3000}]{40,}\S|(?:[ \t]*\r?\n){15,}[ \t]*\S",
        DEFS,
    ),
    r(
        BASE64_BLOB,
        C::Hidden,
        S::Medium,
        r"[A-Za-z0-9+/]{80,}={0,2}",
        DEFS,
    ),
    r(
        "hidden.hex-blob",
        C::Hidden,
        S::Medium,
        r"(?-u:\b)(?:[0-9a-fA-F]{2}){48,}(?-u:\b)",
        DEFS,
    ),
    Builtin {
        id: MIXED_SCRIPT,
        category: C::Hidden,
        severity: S::High,
        pattern: None,
        target: Target::Text,
        surfaces: DEFS,
    },
];

/// One screening finding. Never holds the matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub rule_id: String,
    pub category: Category,
    pub severity: Severity,
    pub action: ScreenAction,
    /// RFC 6901 pointer of the string inside the screened value ("" for a
    /// plain text). For a parameter-name finding, the pointer of the
    /// property.
    pub pointer: String,
    /// Byte offsets in that string.
    pub start: usize,
    pub end: usize,
    /// The learned detector's score (its findings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Probability>,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    category: Category,
    severity: Severity,
    surfaces: Vec<Surface>,
    action: Option<ScreenAction>,
    /// The rule alone, for spans; `None` for code detectors.
    regex: Option<Regex>,
}

/// The compiled screen.
#[derive(Debug, Clone)]
pub struct Screen {
    rules: Vec<Rule>,
    /// Per surface ([`surface_slot`]), the text rules with a pattern that
    /// can report there (they apply to it and their action on it is not
    /// `Off`), as one set.
    text_sets: [SurfaceSet; 3],
    /// Every text rule with a pattern, in rule order: the unsplit set
    /// [`Screen::reference_check_text`] runs.
    text_pats: Vec<(usize, String)>,
    /// That unsplit set, compiled on first use (by tests only).
    reference_set: std::sync::OnceLock<Option<Regex>>,
    name_set: Option<Regex>,
    name_ids: Vec<usize>,
    mixed_script: Option<usize>,
    actions: BTreeMap<(Surface, Severity), ScreenAction>,
    detector: Option<Detector>,
}

/// The text rules that can report on one surface, `MatchKind::All`:
/// pattern i is `rules[ids[i]]`, in rule order. A rule that does not apply
/// to a surface, or whose action there is `Off`, was skipped after the
/// search anyway; leaving it out of that surface's set (tool results skip
/// the ~20 rules meant for definitions and prompts) changes no finding and
/// no order, since findings follow the rule order either way.
#[derive(Debug, Clone, Default)]
struct SurfaceSet {
    set: Option<Regex>,
    ids: Vec<usize>,
}

/// The index of `surface` in [`Screen::text_sets`].
fn surface_slot(surface: Surface) -> usize {
    match surface {
        Surface::ToolDefinition => 0,
        Surface::ToolResult => 1,
        Surface::Prompt => 2,
    }
}

const SURFACES: [Surface; 3] = [
    Surface::ToolDefinition,
    Surface::ToolResult,
    Surface::Prompt,
];

/// The learned detector as compiled: the shared model and, per surface, the
/// threshold and action.
#[derive(Debug, Clone)]
struct Detector {
    model: Arc<Model>,
    severity: Severity,
    thresholds: BTreeMap<Surface, f64>,
    actions: BTreeMap<Surface, ScreenAction>,
}

/// The members of a tool definition [`Screen::check_tool`] screens as text.
pub const TOOL_TEXT_KEYS: [&str; 3] = ["name", "title", "description"];
/// The members it walks (every string inside, and object keys).
pub const TOOL_TREE_KEYS: [&str; 3] = ["inputSchema", "outputSchema", "annotations"];

/// Spans reported per rule per string, at most.
const MAX_SPANS_PER_RULE: usize = 64;

fn default_action(surface: Surface, severity: Severity) -> ScreenAction {
    match (surface, severity) {
        (_, S::Low | S::Medium) => ScreenAction::Flag,
        (Surface::ToolDefinition, S::High | S::Critical) => ScreenAction::DropTool,
        (_, S::High) => ScreenAction::Strip,
        (_, S::Critical) => ScreenAction::BlockCall,
    }
}

/// Lazy-DFA cache for the all-rules set. With the default (2 MiB) the
/// overlapping search over ~30 rules thrashes on text with many findings
/// and falls back to a far slower engine (about 1 MiB/s measured by
/// `benches/content.rs`); the cache grows only as a text needs it.
const SET_CACHE_BYTES: usize = 16 << 20;

fn build(patterns: &[&str], kind: MatchKind) -> Result<Regex, String> {
    let mut config = Regex::config().match_kind(kind);
    if kind == MatchKind::All {
        config = config.hybrid_cache_capacity(SET_CACHE_BYTES);
    }
    Regex::builder()
        .configure(config)
        .syntax(syntax::Config::new().unicode(true).utf8(true))
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

impl Screen {
    /// Compiles the built-in rules with `spec` applied.
    pub fn compile(spec: &InjectionSpec) -> Result<Screen, Vec<(String, String)>> {
        let mut errs = Vec::new();
        for (i, id) in spec.disable.iter().enumerate() {
            if !BUILTIN_RULES.iter().any(|b| b.id == id) {
                errs.push((
                    format!("/injection/disable/{i}"),
                    format!("no built-in rule {id:?}"),
                ));
            }
        }
        // Start from the built-ins, then apply overrides and additions.
        struct Draft {
            id: String,
            category: Category,
            severity: Severity,
            pattern: Option<String>,
            target: Target,
            surfaces: Vec<Surface>,
            action: Option<ScreenAction>,
        }
        let mut drafts: Vec<Draft> = Vec::new();
        if spec.enabled {
            for b in BUILTIN_RULES
                .iter()
                .filter(|b| !spec.disable.iter().any(|d| d == b.id))
            {
                drafts.push(Draft {
                    id: b.id.to_owned(),
                    category: b.category,
                    severity: b.severity,
                    pattern: b.pattern.map(str::to_owned),
                    target: b.target,
                    surfaces: b.surfaces.to_vec(),
                    action: None,
                });
            }
        }
        for (i, rs) in spec.rules.iter().enumerate() {
            let at = |f: &str| format!("/injection/rules/{i}/{f}");
            if let Some(Err(e)) = rs.pattern.as_deref().map(syntax::parse) {
                errs.push((at("pattern"), e.to_string()));
                continue;
            }
            if let Some(d) = drafts.iter_mut().find(|d| d.id == rs.id) {
                if d.pattern.is_none() && rs.pattern.is_some() {
                    errs.push((
                        at("pattern"),
                        format!(
                            "{:?} is implemented in code; its pattern cannot be replaced",
                            rs.id
                        ),
                    ));
                    continue;
                }
                if let Some(c) = rs.category {
                    d.category = c;
                }
                if let Some(s) = rs.severity {
                    d.severity = s;
                }
                if let Some(p) = &rs.pattern {
                    d.pattern = Some(p.clone());
                }
                if let Some(t) = rs.target {
                    d.target = t;
                }
                if let Some(s) = &rs.surfaces {
                    d.surfaces = s.clone();
                }
                d.action = rs.action.or(d.action);
                continue;
            }
            if spec.disable.contains(&rs.id) || !spec.enabled {
                continue;
            }
            let (Some(category), Some(severity), Some(pattern)) =
                (rs.category, rs.severity, rs.pattern.clone())
            else {
                errs.push((
                    format!("/injection/rules/{i}"),
                    format!("new rule {:?} needs category, severity and pattern", rs.id),
                ));
                continue;
            };
            if rs.id.is_empty() {
                errs.push((at("id"), "empty id".into()));
                continue;
            }
            drafts.push(Draft {
                id: rs.id.clone(),
                category,
                severity,
                pattern: Some(pattern),
                target: rs.target.unwrap_or_default(),
                surfaces: rs.surfaces.clone().unwrap_or_default(),
                action: rs.action,
            });
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut rules = Vec::with_capacity(drafts.len());
        let (mut text_pats, mut text_ids, mut name_pats, mut name_ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut mixed_script = None;
        for (idx, d) in drafts.into_iter().enumerate() {
            let regex = match &d.pattern {
                Some(p) => Some(
                    build(&[p.as_str()], MatchKind::LeftmostFirst)
                        .map_err(|e| vec![(format!("/injection/rules/{}", d.id), e)])?,
                ),
                None => None,
            };
            match (&d.pattern, d.target) {
                (Some(p), Target::Text) => {
                    text_pats.push(p.clone());
                    text_ids.push(idx);
                }
                (Some(p), Target::ParamName) => {
                    name_pats.push(p.clone());
                    name_ids.push(idx);
                }
                (None, _) => {
                    if d.id == MIXED_SCRIPT {
                        mixed_script = Some(idx);
                    }
                }
            }
            rules.push(Rule {
                id: d.id,
                category: d.category,
                severity: d.severity,
                surfaces: d.surfaces,
                action: d.action,
                regex,
            });
        }
        let set = |pats: &[String]| -> Result<Option<Regex>, Vec<(String, String)>> {
            if pats.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
            build(&refs, MatchKind::All)
                .map(Some)
                .map_err(|e| vec![("/injection/rules".to_owned(), e)])
        };
        let mut actions = BTreeMap::new();
        for (surface, m) in &spec.actions {
            for (sev, a) in m {
                actions.insert((*surface, *sev), *a);
            }
        }
        let detector = Self::compile_detector(spec)?;
        let mut screen = Screen {
            text_sets: Default::default(),
            text_pats: text_ids.iter().copied().zip(text_pats).collect(),
            reference_set: std::sync::OnceLock::new(),
            name_set: set(&name_pats)?,
            rules,
            name_ids,
            mixed_script,
            actions,
            detector,
        };
        for surface in SURFACES {
            let (ids, pats): (Vec<usize>, Vec<String>) = screen
                .text_pats
                .iter()
                .filter(|(i, _)| {
                    screen.rules.get(*i).is_some_and(|rule| {
                        Self::applies(rule, surface)
                            && screen.action(rule, surface) != ScreenAction::Off
                    })
                })
                .cloned()
                .unzip();
            // Definitions and prompts usually share their rules: compile
            // once (a clone shares the automaton, not the search cache).
            let same = screen
                .text_sets
                .iter()
                .find(|s| s.set.is_some() && s.ids == ids);
            let compiled = match same {
                Some(s) => s.set.clone(),
                None => set(&pats)?,
            };
            if let Some(slot) = screen.text_sets.get_mut(surface_slot(surface)) {
                *slot = SurfaceSet { set: compiled, ids };
            }
        }
        Ok(screen)
    }

    /// The detector of `spec.detector`: thresholds checked, the built-in
    /// model loaded (parsed and checked once per process, then shared).
    fn compile_detector(spec: &InjectionSpec) -> Result<Option<Detector>, Vec<(String, String)>> {
        let d = &spec.detector;
        if !spec.enabled || !d.enabled {
            return Ok(None);
        }
        let mut errs = Vec::new();
        let mut thresholds = BTreeMap::new();
        let mut actions = BTreeMap::new();
        for surface in [
            Surface::ToolDefinition,
            Surface::ToolResult,
            Surface::Prompt,
        ] {
            let t = d
                .thresholds
                .get(&surface)
                .map_or(default_threshold(surface), |p| p.0);
            if !(t > 0.0 && t <= 1.0) {
                errs.push((
                    format!("/injection/detector/thresholds/{}", surface_name(surface)),
                    format!("threshold {t} is not a score; use a number above 0 and at most 1"),
                ));
            }
            thresholds.insert(surface, t);
            let a = d
                .actions
                .get(&surface)
                .copied()
                .unwrap_or_else(|| default_detector_action(surface));
            // Dropping a tool means refusing the call anywhere else.
            let a = if a == ScreenAction::DropTool && surface != Surface::ToolDefinition {
                ScreenAction::BlockCall
            } else {
                a
            };
            actions.insert(surface, a);
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let model = Model::builtin()
            .map_err(|e| vec![("/injection/detector".to_owned(), e.to_string())])?;
        Ok(Some(Detector {
            model,
            severity: d.severity.unwrap_or(Severity::High),
            thresholds,
            actions,
        }))
    }

    /// The learned detector's score of `text` on `surface`, whether or not
    /// it reaches the threshold (`None` when the detector is off or the text
    /// too short to score), for reviewers (`portcullis vet`).
    pub fn detector_score(&self, text: &str) -> Option<super::detector::Score> {
        let d = self.detector.as_ref()?;
        (text.len() >= DETECTOR_MIN_BYTES).then(|| d.model.score(text))
    }

    /// The threshold the detector applies on `surface` (`None` when off).
    pub fn detector_threshold(&self, surface: Surface) -> Option<f64> {
        self.detector
            .as_ref()
            .and_then(|d| d.thresholds.get(&surface).copied())
    }

    /// The built-in rules and actions.
    pub fn builtin() -> Result<Screen, Vec<(String, String)>> {
        Screen::compile(&InjectionSpec::default())
    }

    fn action(&self, rule: &Rule, surface: Surface) -> ScreenAction {
        self.action_at(rule, surface, rule.severity)
    }

    fn action_at(&self, rule: &Rule, surface: Surface, severity: Severity) -> ScreenAction {
        let a = rule.action.unwrap_or_else(|| {
            self.actions
                .get(&(surface, severity))
                .copied()
                .unwrap_or_else(|| default_action(surface, severity))
        });
        if a == ScreenAction::DropTool && surface != Surface::ToolDefinition {
            ScreenAction::BlockCall
        } else {
            a
        }
    }

    fn applies(rule: &Rule, surface: Surface) -> bool {
        rule.surfaces.is_empty() || rule.surfaces.contains(&surface)
    }

    /// Screens one text.
    pub fn check_text(&self, text: &str, surface: Surface) -> Vec<Finding> {
        let mut out = Vec::new();
        self.text_into(text, surface, "", &mut out);
        out
    }

    /// The rule findings of [`Screen::check_text`] (no learned detector) as
    /// the unsplit search finds them: one set of every text rule (compiled
    /// on first use), whose hits are filtered by surface and action. For
    /// differential tests of the per-surface sets.
    #[doc(hidden)]
    pub fn reference_check_text(&self, text: &str, surface: Surface) -> Vec<Finding> {
        let mut out = Vec::new();
        let set = self.reference_set.get_or_init(|| {
            let pats: Vec<&str> = self.text_pats.iter().map(|(_, p)| p.as_str()).collect();
            build(&pats, MatchKind::All).ok()
        });
        if let Some(set) = set {
            let mut hits = PatternSet::new(set.pattern_len());
            set.which_overlapping_matches(&Input::new(text), &mut hits);
            let hit_rules = hits
                .iter()
                .filter_map(|pid| self.text_pats.get(pid.as_usize()).map(|(i, _)| *i));
            self.spans_into(hit_rules, text, surface, "", &mut out);
        }
        self.mixed_script_into(text, surface, "", &mut out);
        out
    }

    fn text_into(&self, text: &str, surface: Surface, pointer: &str, out: &mut Vec<Finding>) {
        self.rules_into(text, surface, pointer, out);
        if let Some(d) = &self.detector
            && text.len() >= DETECTOR_MIN_BYTES
        {
            let action = d
                .actions
                .get(&surface)
                .copied()
                .unwrap_or(ScreenAction::Off);
            let threshold = d.thresholds.get(&surface).copied().unwrap_or(1.0);
            if action != ScreenAction::Off {
                let s = d.model.score(text);
                if f64::from(s.score) >= threshold {
                    out.push(Finding {
                        rule_id: DETECTOR_RULE.to_owned(),
                        category: Category::Instruction,
                        severity: d.severity,
                        action,
                        pointer: pointer.to_owned(),
                        start: s.start,
                        end: s.end,
                        score: Some(Probability(f64::from(s.score))),
                    });
                }
            }
        }
    }

    fn rules_into(&self, text: &str, surface: Surface, pointer: &str, out: &mut Vec<Finding>) {
        if let Some(SurfaceSet {
            set: Some(set),
            ids,
        }) = self.text_sets.get(surface_slot(surface))
        {
            let mut hits = PatternSet::new(set.pattern_len());
            set.which_overlapping_matches(&Input::new(text), &mut hits);
            let hit_rules = hits.iter().filter_map(|pid| ids.get(pid.as_usize()));
            self.spans_into(hit_rules.copied(), text, surface, pointer, out);
        }
        self.mixed_script_into(text, surface, pointer, out);
    }

    /// The findings of the rules `hit` (indices into `rules`, whose set
    /// matched `text`), in that order: each rule alone finds its spans.
    fn spans_into(
        &self,
        hit: impl Iterator<Item = usize>,
        text: &str,
        surface: Surface,
        pointer: &str,
        out: &mut Vec<Finding>,
    ) {
        {
            for i in hit {
                let Some(rule) = self.rules.get(i) else {
                    continue;
                };
                if !Self::applies(rule, surface) {
                    continue;
                }
                let action = self.action(rule, surface);
                if action == ScreenAction::Off {
                    continue;
                }
                let Some(re) = &rule.regex else { continue };
                for m in re.find_iter(text).take(MAX_SPANS_PER_RULE) {
                    let (mut severity, mut action) = (rule.severity, action);
                    if rule.id == BASE64_BLOB {
                        match decoded_blob(text.get(m.range()).unwrap_or("")) {
                            None => continue,
                            // Encoded readable text has no business in a
                            // description: one notch up.
                            Some(true) if rule.severity < Severity::High => {
                                severity = Severity::High;
                                action = self.action_at(rule, surface, severity);
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(Finding {
                        rule_id: rule.id.clone(),
                        category: rule.category,
                        severity,
                        action,
                        pointer: pointer.to_owned(),
                        start: m.start(),
                        end: m.end(),
                        score: None,
                    });
                }
            }
        }
    }

    fn mixed_script_into(
        &self,
        text: &str,
        surface: Surface,
        pointer: &str,
        out: &mut Vec<Finding>,
    ) {
        if let Some(rule) = self.mixed_script.and_then(|i| self.rules.get(i))
            && Self::applies(rule, surface)
        {
            {
                let action = self.action(rule, surface);
                if action != ScreenAction::Off {
                    for (start, end) in mixed_script_words(text)
                        .into_iter()
                        .take(MAX_SPANS_PER_RULE)
                    {
                        out.push(Finding {
                            rule_id: rule.id.clone(),
                            category: rule.category,
                            severity: rule.severity,
                            action,
                            pointer: pointer.to_owned(),
                            start,
                            end,
                            score: None,
                        });
                    }
                }
            }
        }
    }

    fn name_into(&self, name: &str, pointer: &str, out: &mut Vec<Finding>) {
        let Some(set) = &self.name_set else { return };
        let mut hits = PatternSet::new(set.pattern_len());
        set.which_overlapping_matches(&Input::new(name), &mut hits);
        for pid in hits.iter() {
            let Some(rule) = self
                .name_ids
                .get(pid.as_usize())
                .and_then(|&i| self.rules.get(i))
            else {
                continue;
            };
            if !Self::applies(rule, Surface::ToolDefinition) {
                continue;
            }
            let action = self.action(rule, Surface::ToolDefinition);
            if action != ScreenAction::Off {
                out.push(Finding {
                    rule_id: rule.id.clone(),
                    category: rule.category,
                    severity: rule.severity,
                    action,
                    pointer: pointer.to_owned(),
                    start: 0,
                    end: name.len(),
                    score: None,
                });
            }
        }
    }

    /// Screens one tool definition of a tools/list result: its name, title,
    /// description, annotations, and every string and property name of its
    /// input and output schemas.
    pub fn check_tool(&self, tool: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(obj) = tool.as_object() else {
            return out;
        };
        for key in TOOL_TEXT_KEYS {
            if let Some(Value::String(s)) = obj.get(key) {
                self.text_into(s, Surface::ToolDefinition, &format!("/{key}"), &mut out);
            }
        }
        for key in TOOL_TREE_KEYS {
            if let Some(v) = obj.get(key) {
                let mut ptr = format!("/{key}");
                self.walk(v, Surface::ToolDefinition, &mut ptr, true, &mut out);
            }
        }
        out
    }

    /// Screens every string in a JSON value (a tools/call `result`, a
    /// prompts/get `result`).
    pub fn check_json(&self, value: &Value, surface: Surface) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut ptr = String::new();
        self.walk(value, surface, &mut ptr, false, &mut out);
        out
    }

    fn walk(
        &self,
        v: &Value,
        surface: Surface,
        ptr: &mut String,
        schema: bool,
        out: &mut Vec<Finding>,
    ) {
        match v {
            Value::String(s) => self.text_into(s, surface, ptr, out),
            Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    let len = ptr.len();
                    ptr.push('/');
                    ptr.push_str(&i.to_string());
                    self.walk(item, surface, ptr, schema, out);
                    ptr.truncate(len);
                }
            }
            Value::Object(m) => {
                let props = schema && ptr.ends_with("/properties");
                for (k, item) in m {
                    let len = ptr.len();
                    ptr.push('/');
                    ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    if props {
                        // A property name is read by the model as text too.
                        self.name_into(k, ptr, out);
                        self.text_into(k, surface, ptr, out);
                    }
                    self.walk(item, surface, ptr, schema, out);
                    ptr.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Strips, in place, the spans of `Strip` findings from every string of
    /// `value` (as [`Screen::check_json`] would find them), and returns all
    /// findings. Stripping is idempotent: the result screens clean of the
    /// stripped rules.
    pub fn strip_json(&self, value: &mut Value, surface: Surface) -> Vec<Finding> {
        let mut findings = self.check_json(value, surface);
        // The model's `dropTool` removes a definition from a list; it never
        // refuses a whole answer on a statistical guess. A server's
        // `initialize` instructions are directives to the model by design
        // (server-everything's read as poisoning), so there its finding is
        // recorded only; the rules still refuse what is exact.
        for f in findings.iter_mut() {
            if f.rule_id == DETECTOR_RULE && f.action == ScreenAction::DropTool {
                f.action = ScreenAction::Flag;
            }
        }
        let mut by_ptr: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in findings.iter().filter(|f| f.action == ScreenAction::Strip) {
            by_ptr.entry(f.pointer.as_str()).or_default().push(f);
        }
        for (ptr, fs) in by_ptr {
            if let Some(Value::String(s)) = value.pointer_mut(ptr) {
                let owned: Vec<Finding> = fs.into_iter().cloned().collect();
                *s = strip(s, &owned);
            }
        }
        findings
    }
}

/// `text` with the spans of `findings` whose action is `Strip` removed:
/// hidden characters deleted, other text replaced by `[REMOVED:<rule>]`.
/// Overlapping spans are merged.
pub fn strip(text: &str, findings: &[Finding]) -> String {
    let mut spans: Vec<(usize, usize, &Finding)> = findings
        .iter()
        .filter(|f| f.action == ScreenAction::Strip && f.start < f.end && f.end <= text.len())
        .map(|f| (f.start, f.end, f))
        .collect();
    spans.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (s, e, f) in spans {
        if e <= last {
            continue;
        }
        let s = s.max(last);
        out.push_str(text.get(last..s).unwrap_or(""));
        if f.category != Category::Hidden || f.rule_id == "hidden.whitespace-run" {
            out.push_str("[REMOVED:");
            out.push_str(&f.rule_id);
            out.push(']');
        }
        last = e;
    }
    out.push_str(text.get(last..).unwrap_or(""));
    out
}

/// The most forceful action among `findings` (`None` when there are none).
pub fn worst(findings: &[Finding]) -> Option<ScreenAction> {
    findings.iter().map(|f| f.action).max()
}

/// A base64 run worth reporting: mixed case and digits (a long identifier or
/// a word is not) and it decodes. `Some(true)` when what it decodes to is
/// readable text (an encoded instruction), `Some(false)` for binary data.
fn decoded_blob(s: &str) -> Option<bool> {
    use base64::Engine as _;
    let has = |f: fn(&u8) -> bool| s.bytes().any(|b| f(&b));
    if !(has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase) && has(u8::is_ascii_digit)) {
        return None;
    }
    let body = s.trim_end_matches('=');
    let cut = body.len() - body.len() % 4;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(body.get(..cut).unwrap_or(""))
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok();
    Some(text.is_some_and(|t| {
        let printable = t
            .chars()
            .filter(|c| !c.is_control() || c.is_whitespace())
            .count();
        printable * 10 >= t.chars().count() * 9
    }))
}

fn script(c: char) -> Option<u8> {
    match c {
        'a'..='z' | 'A'..='Z' | '\u{C0}'..='\u{24F}' => Some(0),
        '\u{370}'..='\u{3FF}' | '\u{1F00}'..='\u{1FFF}' => Some(1),
        '\u{400}'..='\u{52F}' => Some(2),
        _ => None,
    }
}

/// Byte spans of words (runs of alphanumerics) that mix Latin letters with
/// Greek or Cyrillic ones, and have at least three letters: `pаypal` with a
/// Cyrillic `а`. (Latin-1 `µ` is Latin, so `5µs` is not reported.)
pub fn mixed_script_words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut seen = [false; 3];
    let mut letters = 0;
    let mut flush =
        |start: &mut Option<usize>, end: usize, seen: &mut [bool; 3], letters: &mut usize| {
            if let Some(s) = start.take() {
                let [latin, greek, cyrillic] = *seen;
                if *letters >= 3 && latin && (greek || cyrillic) {
                    out.push((s, end));
                }
            }
            *seen = [false; 3];
            *letters = 0;
        };
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            if start.is_none() {
                start = Some(i);
            }
            if let Some(sc) = script(c) {
                if let Some(slot) = seen.get_mut(usize::from(sc)) {
                    *slot = true;
                }
                letters += 1;
            }
        } else {
            flush(&mut start, i, &mut seen, &mut letters);
        }
    }
    flush(&mut start, text.len(), &mut seen, &mut letters);
    out
}

fn surface_name(s: Surface) -> &'static str {
    match s {
        Surface::ToolDefinition => "toolDefinition",
        Surface::ToolResult => "toolResult",
        Surface::Prompt => "prompt",
    }
}

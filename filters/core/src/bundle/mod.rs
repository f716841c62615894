//! The bundle: the registry and policy documents, compiled into the one JSON
//! document a filter takes as its plugin configuration.
//!
//! Authors write Kubernetes-style YAML documents (`apiVersion`, `kind`,
//! `metadata.name`, `spec`) in a directory; `yaml` (feature `yaml`) turns the directory into
//! a [`BundleJson`], and [`Bundle::compile`] turns that into the matchers the
//! engine uses. Compilation happens once per configuration, never per
//! request, and is where every mistake is caught: an unknown field, a bad
//! glob, two servers claiming one route. Each error names its document, the
//! field, and (from YAML) the file and line, so a reviewer can fix it.
//!
//! The bundle's `version` is a content hash over the documents' meaning (not
//! their file names or order), so the same policy always has the same version.

#[cfg(feature = "yaml")]
pub mod yaml;

use crate::glob::GlobSet;
use crate::identity::{ProviderSet, ServerIdentity, ServerIdentitySpec};
use crate::json::canonical_string;
use crate::pins::PinSet;
use crate::route::{HostPattern, PathPrefix, RouteError, Target};
use crate::scan::{ContentPolicy, ContentPolicySpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The only `apiVersion` documents may carry.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// Default request body limit (1 MiB), also Envoy's default buffer limit.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Default limit on a buffered JSON response, or on one SSE event.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// The compiled bundle as JSON: the filter's plugin configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleJson {
    pub api_version: String,
    pub kind: String,
    /// `sha256:<hex>` over the canonical form of the documents.
    pub version: String,
    pub documents: Vec<Document>,
    /// Ed25519 over `version` (see [`crate::signing`]); not part of the
    /// content hash. Checked by the filter when its VM configuration
    /// trusts a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signing::BundleSignature>,
}

/// One registry or policy document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Value,
    /// Where the document came from, for error messages. Not hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub labels: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub annotations: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

/// `kind: McpServer`: one approved MCP server and what may be used on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServerSpec {
    /// Which requests belong to this server. Absent: every request.
    #[serde(default, rename = "match")]
    pub route: RouteMatch,
    /// Tools that may be called, by name or glob. Default deny: a tools/call
    /// for a tool not listed is refused, and tools/list hides it. A literal
    /// name may carry a `pin` of its approved definition.
    #[serde(default)]
    pub tools: Vec<ToolEntry>,
    /// Resources that may be read, by URI or glob. Default deny.
    #[serde(default)]
    pub resources: Vec<UriEntry>,
    /// Prompts that may be fetched, by name or glob. Default deny.
    #[serde(default)]
    pub prompts: Vec<NameEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `lenient` (default): only pinned tools are checked. `strict`: a tool
    /// without a pin fails too.
    #[serde(default)]
    pub pinning: Pinning,
    /// What a failed pin does to a tools/list result.
    #[serde(default)]
    pub on_pin_failure: PinFailure,
    /// The approved `serverInfo.version`; an initialize answer with another
    /// version is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The `ContentPolicy` applied to this server's traffic. Default: the
    /// one named `default`, if the bundle has it; else the built-in policy
    /// (`builtin`: PII and secrets redacted, poisoning and injection
    /// screened). `none` turns content security off for this server, by
    /// name only (`portcullis assess` scores it down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_policy: Option<String>,
    /// Token validation, scopes and token isolation (docs/identity.md).
    /// Absent: no token is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ServerIdentitySpec>,
    /// Registry: the team answerable for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Registry: the most sensitive data the server handles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Registry: when the server was last reviewed (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_review: Option<String>,
    /// Environments (`Settings.spec.environment`) it is approved for;
    /// empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Tenants (the token's tenant) it is approved for; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Lifecycle: `submitted` (refused outside dev), `approved`, `blocked`
    /// (refused), `deprecated` (a warning header until `sunset`, then
    /// refused).
    #[serde(default)]
    pub status: ServerStatus,
    /// `YYYY-MM-DD` (UTC): the first day a deprecated server is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<String>,
}

/// Data sensitivity of a registered server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

/// Where a server is in the submission → approval → deprecation lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServerStatus {
    Submitted,
    #[default]
    Approved,
    Blocked,
    Deprecated,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Submitted => "submitted",
            ServerStatus::Approved => "approved",
            ServerStatus::Blocked => "blocked",
            ServerStatus::Deprecated => "deprecated",
        }
    }
}

/// A `tools` entry: a name or glob, and for a literal name an optional pin
/// (`sha256:` over the RFC 8785 form of its definition; `portcullis pin`
/// prints them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pinning {
    #[default]
    Lenient,
    Strict,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PinFailure {
    /// The failing tools are removed from the list (and calls to them
    /// refused); the others go on.
    #[default]
    RemoveTool,
    /// The whole tools/list answer is refused: one changed tool makes the
    /// server untrusted until its pins are reviewed.
    FailServer,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// A path prefix, matched at a segment boundary: `/mcp` matches `/mcp`,
    /// `/mcp/x` and `/mcp?q`, not `/mcpx`. Both sides are compared in the
    /// canonical form of [`crate::route`] (decoded, case-folded, dot segments
    /// and `;params` resolved), so `/%4D%43%50/` and `/MCP;x=1` match too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The `:authority` (Host), case-insensitive, trailing dot ignored;
    /// without a port it matches any port, with port 80 or 443 it also
    /// matches a request that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameEntry {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriEntry {
    pub uri: String,
}

/// `kind: Settings`: filter-wide behaviour. At most one per bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsSpec {
    /// Largest request body inspected; larger ones get 413.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u64,
    /// Largest JSON response body, or SSE event, inspected; larger ones are
    /// replaced by a JSON-RPC error.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: u64,
    /// What to do with a request no `McpServer` matches.
    #[serde(default)]
    pub unmatched_routes: UnmatchedRoutes,
    /// What to do with a JSON-RPC method this filter does not know.
    #[serde(default)]
    pub unknown_methods: UnknownMethods,
    /// Verified tokens kept per VM (keyed by a hash of the token, expiring
    /// at `exp`), so a signature is checked once per token, not per call.
    /// 0 disables the cache.
    #[serde(default = "default_token_cache")]
    pub token_cache_entries: usize,
    /// `false`: every Policy rule and limit only records what it would have
    /// done (shadow mode for the whole bundle).
    #[serde(default = "default_true")]
    pub enforce: bool,
    /// The environment this bundle is for (`dev`, `staging`, `prod`...):
    /// `submitted` servers are refused outside `dev`, and servers approved
    /// for other environments are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Keys that sign approvals of `requireApproval` calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalSettings>,
    /// What records keep of tool-call arguments besides their hash.
    #[serde(default)]
    pub audit_arguments: AuditArguments,
    /// MCP traffic on a route no McpServer matches (shadow MCP): refused
    /// (the default), or recorded and passed (`record`, an explicit opt-out).
    #[serde(default)]
    pub shadow_mcp: ShadowMcp,
    /// When the request headers go on: `forward` (the default) lets them go
    /// at once and holds the body until it is decided, which works under
    /// every Envoy and Istio; `hold` keeps them until the body is decided,
    /// which needs Envoy's `allow_on_headers_stop_iteration` (docs/filter.md,
    /// "Request headers").
    #[serde(default)]
    pub request_headers: RequestHeaders,
    /// The fleet state service (`portcullis fleet`, docs/fleet.md) that
    /// counts `scope: fleet` limits; with it the quarantine is fleet-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSettings>,
}

/// `Settings.spec.fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSettings {
    /// The proxy's cluster that reaches the service over HTTP/2 (Envoy: a
    /// cluster with `http2_protocol_options`; `portcullis serve`:
    /// `--cluster NAME=http://HOST:PORT`).
    pub cluster: String,
    /// Milliseconds a call to it may take before the limit's `failClosed`
    /// decides; default 250.
    #[serde(default = "default_fleet_timeout")]
    pub timeout_ms: u32,
    /// The RLS domain the limits are counted under; default `portcullis`.
    #[serde(default = "default_fleet_domain")]
    pub domain: String,
    /// How often each proxy pushes the pin failures it saw and reads the
    /// fleet's quarantine (its root context's tick); default 1000. A rug
    /// pull seen by one proxy is refused by every other within twice this
    /// plus twice `timeoutMs` (docs/fleet.md, "Quarantine propagation").
    #[serde(default = "default_quarantine_refresh")]
    pub quarantine_refresh_ms: u32,
    /// How long a fleet concurrency lease lives if its release is lost (a
    /// proxy that died mid-call); default 300000, as a proxy lease.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_ms: u64,
}

fn default_quarantine_refresh() -> u32 {
    1000
}

fn default_lease_ttl() -> u64 {
    crate::policy::limits::LEASE_NANOS / 1_000_000
}

fn default_fleet_timeout() -> u32 {
    250
}

fn default_fleet_domain() -> String {
    "portcullis".into()
}

/// `Settings.spec.requestHeaders`: what the filter does with a request's
/// headers while it waits for the body it must read.
///
/// Envoy turns a filter's `StopIteration` from a headers callback into
/// `StopAllIterationAndWatermark` unless the filter config sets
/// `allow_on_headers_stop_iteration` (Envoy 1.35 and later; Istio's
/// WasmPlugin cannot set it), and then the filter never sees the body. So
/// the default must not stop the headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestHeaders {
    /// The headers go upstream at once, with everything the filter can
    /// decide from them (the client's token replaced or removed, the
    /// identity's `x-mcp-*` headers, `content-length` removed so the body
    /// can be rewritten); the body is held and decided whole, and a refusal
    /// resets the upstream request before any byte of the body reaches it.
    /// Requests that carry no MCP message must come without a body.
    #[default]
    Forward,
    /// The headers wait for the body's decision, so the upstream also gets
    /// the decision's headers (`x-mcp-decision`, `x-mcp-rules`,
    /// `x-mcp-rate-limit`, a token minted for exactly the body's calls).
    /// Needs `allow_on_headers_stop_iteration: true` (Envoy 1.35+).
    Hold,
}

fn default_true() -> bool {
    true
}

/// `Settings.spec.approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSettings {
    /// Base64 Ed25519 public keys (`portcullis audit keygen` writes pairs).
    pub keys: Vec<String>,
    /// Where a person approves; the approval id is appended as `?id=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Longest approval accepted (`15m`, `1h`); default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<String>,
    /// The approval service (the control plane's approval page) that MCP
    /// 2026-07-28 clients are sent to with an `input_required` result
    /// instead of the `-31099` error (docs/approvals.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ApprovalService>,
}

/// `Settings.spec.approvals.service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalService {
    /// The cluster the filter calls (an Envoy cluster; `portcullis serve
    /// --cluster NAME=URL`).
    pub cluster: String,
    /// `:authority` of those calls; default: the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Where people open a request's page: `<pageUrl>/<request id>`.
    pub page_url: String,
    /// How long a call to the service may take; default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditArguments {
    /// Only `arguments_sha256`.
    #[default]
    Hash,
    /// Also the arguments, with every PII and secret finding redacted (what
    /// `portcullis simulate` replays argument rules against).
    Redacted,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ShadowMcp {
    /// Recorded and passed on: traffic to an unregistered MCP server goes
    /// ungoverned. Only by name (`shadowMcp: record`).
    Record,
    /// Refused with 403 and a record: MCP reaches only registered servers.
    #[default]
    Block,
}

/// The `ContentPolicy` a server without `contentPolicy` gets, if present.
pub const DEFAULT_CONTENT_POLICY: &str = "default";

/// The name of the built-in content policy, which a server without
/// `contentPolicy` gets when the bundle has no `default` one.
pub const BUILTIN_CONTENT_POLICY: &str = "builtin";

/// `contentPolicy: none`: no content security for this server.
pub const NO_CONTENT_POLICY: &str = "none";

/// Default size of the verified-token cache.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 1024;

/// Largest verified-token cache a bundle may ask for.
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 65_536;

fn default_token_cache() -> usize {
    DEFAULT_TOKEN_CACHE_ENTRIES
}

fn default_max_request() -> u64 {
    DEFAULT_MAX_REQUEST_BYTES
}

fn default_max_response() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

impl Default for SettingsSpec {
    fn default() -> Self {
        SettingsSpec {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            unmatched_routes: UnmatchedRoutes::default(),
            unknown_methods: UnknownMethods::default(),
            token_cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
            enforce: true,
            environment: None,
            approvals: None,
            audit_arguments: AuditArguments::default(),
            shadow_mcp: ShadowMcp::default(),
            request_headers: RequestHeaders::default(),
            fleet: None,
        }
    }
}

/// Requests to routes outside the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnmatchedRoutes {
    /// Not MCP as far as the registry knows: passed on untouched (client
    /// `x-mcp-*` headers are still stripped). Suits a filter on a listener
    /// that carries other traffic too.
    #[default]
    Passthrough,
    /// Refused with 404 and a JSON-RPC error.
    Deny,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnknownMethods {
    /// Refused: a method the filter cannot classify is one it cannot govern.
    #[default]
    Deny,
    /// Forwarded, and audited as unknown.
    Allow,
}

/// A compilation error, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    pub file: Option<String>,
    pub line: Option<usize>,
    /// `Kind/name` of the document, when known.
    pub document: Option<String>,
    /// JSON pointer of the offending field inside the document (`/spec/tools/1/name`).
    pub pointer: String,
    pub message: String,
}

impl BundleError {
    fn at(doc: &Document, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        BundleError {
            file: doc.source.as_ref().map(|s| s.file.clone()),
            line: doc.source.as_ref().map(|s| s.line),
            document: Some(format!("{}/{}", doc.kind, doc.metadata.name)),
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    /// The field in dotted form (`spec.tools[1].name`), for people.
    pub fn field(&self) -> String {
        pointer_to_field(&self.pointer)
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            _ => {}
        }
        if let Some(doc) = &self.document {
            write!(f, "{doc}: ")?;
        }
        if !self.pointer.is_empty() {
            write!(f, "{}: ", self.field())?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for BundleError {}

pub use crate::spec::pointer_to_field;

/// A compiled `McpServer`.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    /// `match.pathPrefix`, canonical ([`crate::route`]).
    pub path_prefix: Option<PathPrefix>,
    /// `match.authority`, canonical; without a port when it names none.
    pub authority: Option<HostPattern>,
    pub tools: GlobSet,
    pub resources: GlobSet,
    pub prompts: GlobSet,
    pub source: Option<Source>,
    /// Tool pins and the server-version pin.
    pub pins: PinSet,
    pub pin_failure: PinFailure,
    /// Name of the `ContentPolicy` applied, and the policy.
    pub content: Option<(String, Arc<ContentPolicy>)>,
    pub identity: Option<ServerIdentity>,
    pub status: ServerStatus,
    /// Days since the epoch of `sunset`.
    pub sunset_day: Option<u64>,
    pub environments: Vec<String>,
    pub tenants: Vec<String>,
    pub owner: Option<String>,
    pub classification: Option<Classification>,
}

impl Server {
    /// The rule id reported when this server's `field` list decides.
    pub fn rule_id(&self, field: &str) -> String {
        format!("McpServer/{}#{field}", self.name)
    }

    /// Whether this server's route takes `target` read as `path` (one of
    /// [`Target::paths`]).
    fn matches(&self, target: &Target, path: &str) -> bool {
        if let Some(pattern) = &self.authority
            && !pattern.matches(target.host(), target.port())
        {
            return false;
        }
        self.path_prefix.as_ref().is_none_or(|p| p.matches(path))
    }

    fn specificity(&self) -> (bool, bool, usize) {
        (
            self.authority.is_some(),
            self.authority.as_ref().is_some_and(|a| a.port().is_some()),
            self.path_prefix.as_ref().map_or(0, |p| p.as_str().len()),
        )
    }
}

/// The compiled bundle: everything a request is decided against.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub version: String,
    pub servers: Vec<Server>,
    pub settings: SettingsSpec,
    /// The `IdentityProvider` documents.
    pub providers: ProviderSet,
    /// The `Policy` documents, compiled and indexed.
    pub policy: Arc<crate::policy::PolicySet>,
    /// Approval keys, from `Settings.spec.approvals`.
    pub approval_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// Longest approval accepted, seconds.
    pub approval_max_ttl: u64,
    /// `requireApproval` rules (ids) whose grants are spent once for the
    /// whole fleet (`scope: fleet`, the default with `Settings.spec.fleet`).
    pub fleet_approval_rules: std::collections::BTreeSet<String>,
}

impl Bundle {
    /// Parses and compiles a bundle's JSON (the filter's configuration).
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, Vec<BundleError>> {
        let value = crate::json::parse_strict(bytes).map_err(|e| {
            vec![BundleError {
                file: None,
                line: None,
                document: None,
                pointer: String::new(),
                message: format!("the filter configuration is not valid JSON: {e}"),
            }]
        })?;
        let json: BundleJson = from_value_at(value, "").map_err(|(pointer, message)| {
            vec![BundleError {
                file: None,
                line: None,
                document: None,
                pointer,
                message: format!(
                    "the filter configuration is not a Portcullis bundle ({message}); build one with `portcullis bundle build DIR`"
                ),
            }]
        })?;
        let expected = content_version(&json.documents);
        if json.version != expected {
            return Err(vec![BundleError {
                file: None,
                line: None,
                document: None,
                pointer: "/version".into(),
                message: format!(
                    "bundle version {} does not match its content ({expected}); the bundle was edited after it was built",
                    json.version
                ),
            }]);
        }
        Bundle::compile(&json)
    }

    /// Compiles parsed documents, collecting every error rather than the first.
    pub fn compile(json: &BundleJson) -> Result<Bundle, Vec<BundleError>> {
        let mut errors = Vec::new();
        if json.api_version != API_VERSION {
            errors.push(BundleError {
                file: None,
                line: None,
                document: None,
                pointer: "/apiVersion".into(),
                message: format!("apiVersion must be {API_VERSION:?}"),
            });
        }
        let mut servers: Vec<Server> = Vec::new();
        let mut server_docs: Vec<&Document> = Vec::new();
        let mut providers = Vec::new();
        let mut provider_docs: Vec<&Document> = Vec::new();
        let mut policies: Vec<(String, Arc<ContentPolicy>)> = Vec::new();
        let mut settings: Option<(SettingsSpec, &Document)> = None;
        let mut policy_docs: Vec<(&Document, crate::policy::PolicySpec)> = Vec::new();
        let mut seen_names: Vec<(String, String)> = Vec::new();
        for doc in &json.documents {
            if doc.api_version != API_VERSION {
                errors.push(BundleError::at(
                    doc,
                    "/apiVersion",
                    format!(
                        "apiVersion must be {API_VERSION:?}, not {:?}",
                        doc.api_version
                    ),
                ));
                continue;
            }
            if let Err(msg) = check_name(&doc.metadata.name) {
                errors.push(BundleError::at(doc, "/metadata/name", msg));
                continue;
            }
            let key = (doc.kind.clone(), doc.metadata.name.clone());
            if seen_names.contains(&key) {
                errors.push(BundleError::at(
                    doc,
                    "/metadata/name",
                    format!(
                        "a second {} named {:?}; names are unique per kind",
                        doc.kind, doc.metadata.name
                    ),
                ));
                continue;
            }
            seen_names.push(key);
            match doc.kind.as_str() {
                // Servers refer to providers and policies by name, so they
                // are compiled once every other document is known.
                "McpServer" => server_docs.push(doc),
                "IdentityProvider" => {
                    match crate::identity::provider::compile_value(&doc.metadata.name, &doc.spec) {
                        Ok(p) => {
                            providers.push(p);
                            provider_docs.push(doc);
                        }
                        Err(errs) => errors.extend(
                            errs.into_iter()
                                .map(|(p, m)| BundleError::at(doc, format!("/spec{p}"), m)),
                        ),
                    }
                }
                "ContentPolicy"
                    if [BUILTIN_CONTENT_POLICY, NO_CONTENT_POLICY]
                        .contains(&doc.metadata.name.as_str()) =>
                {
                    errors.push(BundleError::at(
                        doc,
                        "/metadata/name",
                        format!(
                            "{:?} is reserved (contentPolicy: none turns content security off; builtin is the built-in policy); name this ContentPolicy otherwise",
                            doc.metadata.name
                        ),
                    ))
                }
                "ContentPolicy" => {
                    match from_value_at::<ContentPolicySpec>(doc.spec.clone(), "/spec") {
                        Ok(spec) => match crate::scan::compile(&spec) {
                            Ok(policy) => {
                                policies.push((doc.metadata.name.clone(), Arc::new(policy)))
                            }
                            Err(errs) => errors.extend(
                                errs.into_iter()
                                    .map(|(p, m)| BundleError::at(doc, format!("/spec{p}"), m)),
                            ),
                        },
                        Err((pointer, message)) => {
                            errors.push(BundleError::at(doc, pointer, message))
                        }
                    }
                }
                "Settings" => {
                    if let Some((_, first)) = &settings {
                        errors.push(BundleError::at(
                            doc,
                            "",
                            format!(
                                "a bundle holds at most one Settings document; another is {}/{}",
                                first.kind, first.metadata.name
                            ),
                        ));
                        continue;
                    }
                    match from_value_at::<SettingsSpec>(doc.spec.clone(), "/spec") {
                        Ok(spec) => {
                            if spec.max_request_bytes == 0 || spec.max_response_bytes == 0 {
                                errors.push(BundleError::at(
                                    doc,
                                    "/spec",
                                    "body limits must be at least 1 byte",
                                ));
                            }
                            if spec.token_cache_entries > MAX_TOKEN_CACHE_ENTRIES {
                                errors.push(BundleError::at(
                                    doc,
                                    "/spec/tokenCacheEntries",
                                    format!("at most {MAX_TOKEN_CACHE_ENTRIES} entries"),
                                ));
                            }
                            settings = Some((spec, doc));
                        }
                        Err((pointer, message)) => {
                            errors.push(BundleError::at(doc, pointer, message))
                        }
                    }
                }
                "Policy" => match from_value_at::<crate::policy::PolicySpec>(doc.spec.clone(), "/spec") {
                    Ok(spec) => policy_docs.push((doc, spec)),
                    Err((pointer, message)) => errors.push(BundleError::at(doc, pointer, message)),
                },
                other => errors.push(BundleError::at(
                    doc,
                    "/kind",
                    format!(
                        "unknown kind {other:?}; expected McpServer, IdentityProvider, ContentPolicy, Policy or Settings"
                    ),
                )),
            }
        }
        let providers = match ProviderSet::new(providers) {
            Ok(set) => set,
            Err(errs) => {
                for (name, (p, m)) in errs {
                    match provider_docs.iter().find(|d| d.metadata.name == name) {
                        Some(doc) => errors.push(BundleError::at(doc, format!("/spec{p}"), m)),
                        None => errors.push(BundleError {
                            file: None,
                            line: None,
                            document: Some(format!("IdentityProvider/{name}")),
                            pointer: format!("/spec{p}"),
                            message: m,
                        }),
                    }
                }
                ProviderSet::default()
            }
        };
        for doc in server_docs {
            match compile_server(doc, &providers, &policies) {
                Ok(server) => servers.push(server),
                Err(mut e) => errors.append(&mut e),
            }
        }
        // Policies name servers, so they are compiled after them.
        let server_names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
        let specs: Vec<(String, crate::policy::PolicySpec)> = policy_docs
            .iter()
            .map(|(d, s)| (d.metadata.name.clone(), s.clone()))
            .collect();
        let policy = match crate::policy::compile(&specs, &server_names) {
            Ok(p) => p,
            Err(errs) => {
                for (i, (p, m)) in errs {
                    if let Some((doc, _)) = policy_docs.get(i) {
                        errors.push(BundleError::at(doc, p, m));
                    }
                }
                crate::policy::PolicySet::default()
            }
        };
        // A global limit is named to Envoy's rate-limit filter in a request
        // header, which must be set before the headers go on: only `hold`
        // can.
        let forward = settings
            .as_ref()
            .is_none_or(|(s, _)| s.request_headers == RequestHeaders::Forward);
        if forward {
            for (doc, spec) in &policy_docs {
                for (i, limit) in spec.limits.iter().enumerate() {
                    if limit.global {
                        errors.push(BundleError::at(
                            doc,
                            format!("/spec/limits/{i}/global"),
                            "a global limit is named to Envoy's rate-limit filter in a request header, set only once the body is decided; \
                             set Settings.spec.requestHeaders: hold (with Envoy's allow_on_headers_stop_iteration: true), or drop `global`",
                        ));
                    }
                }
            }
        }
        // A fleet limit is counted by the fleet state service: the bundle
        // must say where it is.
        let fleet = settings.as_ref().and_then(|(s, _)| s.fleet.as_ref());
        if let Some((spec, doc)) = &settings
            && let Some(f) = &spec.fleet
        {
            if f.cluster.trim().is_empty() {
                errors.push(BundleError::at(
                    doc,
                    "/spec/fleet/cluster",
                    "the cluster that reaches the fleet state service (`portcullis fleet`)",
                ));
            }
            if f.timeout_ms == 0 {
                errors.push(BundleError::at(
                    doc,
                    "/spec/fleet/timeoutMs",
                    "at least 1 millisecond",
                ));
            }
            // A tick faster than the service answers only piles up calls.
            if f.quarantine_refresh_ms < 100 {
                errors.push(BundleError::at(
                    doc,
                    "/spec/fleet/quarantineRefreshMs",
                    "at least 100 milliseconds",
                ));
            }
            if f.lease_ttl_ms < 1000 {
                errors.push(BundleError::at(
                    doc,
                    "/spec/fleet/leaseTtlMs",
                    "at least 1000 milliseconds (a lease must outlive the call it covers)",
                ));
            }
        }
        if fleet.is_none() {
            for (doc, spec) in &policy_docs {
                for (i, limit) in spec.limits.iter().enumerate() {
                    if limit.scope == crate::policy::limits::Scope::Fleet {
                        errors.push(BundleError::at(
                            doc,
                            format!("/spec/limits/{i}/scope"),
                            "a fleet limit is counted by the fleet state service; set Settings.spec.fleet (cluster, timeoutMs), or use scope: proxy",
                        ));
                    }
                }
                for (i, rule) in spec.rules.iter().enumerate() {
                    if rule.scope == Some(crate::policy::limits::Scope::Fleet) {
                        errors.push(BundleError::at(
                            doc,
                            format!("/spec/rules/{i}/scope"),
                            "a fleet approval is spent by the fleet state service; set Settings.spec.fleet (cluster, timeoutMs), or use scope: proxy",
                        ));
                    }
                }
            }
        }
        // Where each approval rule's grants are spent: its own word, else
        // the fleet whenever there is one.
        let fleet_approval_rules = policy_docs
            .iter()
            .flat_map(|(doc, spec)| {
                spec.rules
                    .iter()
                    .filter(|r| r.effect == crate::policy::Effect::RequireApproval)
                    .filter(|r| {
                        r.scope.unwrap_or(if fleet.is_some() {
                            crate::policy::limits::Scope::Fleet
                        } else {
                            crate::policy::limits::Scope::Proxy
                        }) == crate::policy::limits::Scope::Fleet
                    })
                    .map(|r| format!("Policy/{}#{}", doc.metadata.name, r.id))
            })
            .collect();
        let mut approval_keys = Vec::new();
        let mut approval_max_ttl = 3600;
        if let Some((spec, doc)) = &settings
            && let Some(a) = &spec.approvals
        {
            if a.keys.is_empty() {
                errors.push(BundleError::at(
                    doc,
                    "/spec/approvals/keys",
                    "list at least one Ed25519 public key (base64) that signs approvals",
                ));
            }
            for (i, k) in a.keys.iter().enumerate() {
                match crate::spec::parse_public_key(k) {
                    Ok(key) => approval_keys.push(key),
                    Err(m) => {
                        errors.push(BundleError::at(doc, format!("/spec/approvals/keys/{i}"), m))
                    }
                }
            }
            if let Some(svc) = &a.service
                && !(svc.page_url.starts_with("https://") || svc.page_url.starts_with("http://"))
            {
                errors.push(BundleError::at(
                    doc,
                    "/spec/approvals/service/pageUrl",
                    "an http:// or https:// URL people can open",
                ));
            }
            if let Some(ttl) = &a.max_ttl {
                match crate::policy::limits::parse_duration(ttl) {
                    Ok(n) => approval_max_ttl = n / 1_000_000_000,
                    Err(m) => errors.push(BundleError::at(doc, "/spec/approvals/maxTtl", m)),
                }
            }
        }
        // Two servers with the same route would make the decision depend on
        // document order; refuse instead of guessing.
        for (i, a) in servers.iter().enumerate() {
            for b in servers.iter().skip(i + 1) {
                if a.path_prefix == b.path_prefix && a.authority == b.authority {
                    let doc = json
                        .documents
                        .iter()
                        .find(|d| d.kind == "McpServer" && d.metadata.name == b.name);
                    let mut err = BundleError {
                        file: None,
                        line: None,
                        document: Some(format!("McpServer/{}", b.name)),
                        pointer: "/spec/match".into(),
                        message: format!(
                            "same route as McpServer/{}; give one of them a distinct match (pathPrefix or authority)",
                            a.name
                        ),
                    };
                    if let Some(d) = doc {
                        err = BundleError::at(d, "/spec/match", err.message);
                    }
                    errors.push(err);
                }
            }
        }
        if !errors.is_empty() {
            // Servers are compiled last; report in document order anyway.
            let position = |e: &BundleError| {
                json.documents
                    .iter()
                    .position(|d| {
                        e.document.as_deref()
                            == Some(format!("{}/{}", d.kind, d.metadata.name).as_str())
                    })
                    .unwrap_or(usize::MAX)
            };
            errors.sort_by_key(position);
            return Err(errors);
        }
        Ok(Bundle {
            version: json.version.clone(),
            servers,
            settings: settings.map(|(s, _)| s).unwrap_or_default(),
            providers,
            policy: Arc::new(policy),
            approval_keys,
            approval_max_ttl,
            fleet_approval_rules,
        })
    }

    /// The most specific server whose route matches the request's
    /// `:authority` and `:path`, if any. Both are canonicalised first
    /// ([`crate::route`]); a target that cannot be, or whose readings reach
    /// different servers, is an error the caller refuses (400).
    pub fn route(&self, authority: &str, path: &str) -> Result<Option<&Server>, RouteError> {
        self.route_target(&Target::parse(authority, path)?)
    }

    /// As [`Bundle::route`], for a target already canonicalised. Every
    /// reading of the path picks its most specific server; a reading that
    /// picks none defers to the others (over-matching is safe), two that
    /// pick different servers are [`RouteError::Ambiguous`].
    pub fn route_target(&self, target: &Target) -> Result<Option<&Server>, RouteError> {
        let mut chosen: Option<&Server> = None;
        for path in target.paths() {
            let best = self
                .servers
                .iter()
                .filter(|s| s.matches(target, path))
                .max_by_key(|s| s.specificity());
            match (chosen, best) {
                (Some(a), Some(b)) if !std::ptr::eq(a, b) => {
                    return Err(RouteError::Ambiguous {
                        first: format!("McpServer/{}", a.name),
                        second: format!("McpServer/{}", b.name),
                    });
                }
                (None, Some(b)) => chosen = Some(b),
                _ => {}
            }
        }
        Ok(chosen)
    }
}

pub use crate::spec::check_name;

fn compile_server(
    doc: &Document,
    providers: &ProviderSet,
    policies: &[(String, Arc<ContentPolicy>)],
) -> Result<Server, Vec<BundleError>> {
    let spec: McpServerSpec = from_value_at(doc.spec.clone(), "/spec")
        .map_err(|(p, m)| vec![BundleError::at(doc, p, m)])?;
    let mut errors = Vec::new();
    let mut globs = |field: &str, entries: Vec<(usize, String)>, key: &str| -> GlobSet {
        let mut ok = Vec::new();
        for (i, pattern) in entries {
            match GlobSet::new(&[pattern.as_str()]) {
                Ok(_) => ok.push(pattern),
                Err(e) => errors.push(BundleError::at(
                    doc,
                    format!("/spec/{field}/{i}/{key}"),
                    format!("{e}"),
                )),
            }
        }
        GlobSet::new(&ok).unwrap_or_else(|e| {
            errors.push(BundleError::at(
                doc,
                format!("/spec/{field}"),
                e.to_string(),
            ));
            GlobSet::empty()
        })
    };
    let tools = globs(
        "tools",
        spec.tools
            .iter()
            .map(|t| t.name.clone())
            .enumerate()
            .collect(),
        "name",
    );
    let resources = globs(
        "resources",
        spec.resources
            .iter()
            .map(|r| r.uri.clone())
            .enumerate()
            .collect(),
        "uri",
    );
    let prompts = globs(
        "prompts",
        spec.prompts
            .iter()
            .map(|p| p.name.clone())
            .enumerate()
            .collect(),
        "name",
    );
    let path_prefix = match spec.route.path_prefix.as_deref().map(PathPrefix::parse) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            errors.push(BundleError::at(doc, "/spec/match/pathPrefix", e));
            None
        }
    };
    let authority = match spec.route.authority.as_deref().map(HostPattern::parse) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            errors.push(BundleError::at(doc, "/spec/match/authority", e));
            None
        }
    };
    let mut pin_list = Vec::new();
    for (i, t) in spec.tools.iter().enumerate() {
        if let Some(pin) = &t.pin {
            if is_glob(&t.name) {
                errors.push(BundleError::at(
                    doc,
                    format!("/spec/tools/{i}/pin"),
                    format!(
                        "{:?} is a glob; a pin belongs to one literal tool name",
                        t.name
                    ),
                ));
            } else if pin_list
                .iter()
                .any(|(n, _): &(String, String)| *n == t.name)
            {
                errors.push(BundleError::at(
                    doc,
                    format!("/spec/tools/{i}/name"),
                    format!("tool {:?} is pinned twice", t.name),
                ));
            } else {
                pin_list.push((t.name.clone(), pin.clone()));
            }
        }
    }
    let pins = match PinSet::new(pin_list, spec.pinning == Pinning::Strict) {
        Ok(p) => match &spec.server_version {
            Some(v) => p.with_server_version(v.clone()),
            None => p,
        },
        Err(errs) => {
            for (name, e) in errs {
                let i = spec.tools.iter().position(|t| t.name == name).unwrap_or(0);
                errors.push(BundleError::at(
                    doc,
                    format!("/spec/tools/{i}/pin"),
                    format!("{e}; take pins with `portcullis pin --url URL`"),
                ));
            }
            PinSet::default()
        }
    };
    let content = match &spec.content_policy {
        Some(name) if name == NO_CONTENT_POLICY => None,
        Some(name) if name == BUILTIN_CONTENT_POLICY => {
            builtin_content_policy().map(|p| (BUILTIN_CONTENT_POLICY.to_owned(), p))
        }
        Some(name) => match policies.iter().find(|(n, _)| n == name) {
            Some((n, p)) => Some((n.clone(), Arc::clone(p))),
            None => {
                errors.push(BundleError::at(
                    doc,
                    "/spec/contentPolicy",
                    format!("no ContentPolicy named {name:?} in the bundle"),
                ));
                None
            }
        },
        None => policies
            .iter()
            .find(|(n, _)| n == DEFAULT_CONTENT_POLICY)
            .map(|(n, p)| (n.clone(), Arc::clone(p)))
            .or_else(|| builtin_content_policy().map(|p| (BUILTIN_CONTENT_POLICY.to_owned(), p))),
    };
    let identity = match &spec.identity {
        None => None,
        Some(id) => {
            let literal: Vec<&str> = spec
                .tools
                .iter()
                .map(|t| t.name.as_str())
                .filter(|n| !is_glob(n))
                .collect();
            match ServerIdentity::compile(id, providers, &literal) {
                Ok(s) => Some(s),
                Err(errs) => {
                    errors.extend(
                        errs.into_iter()
                            .map(|(p, m)| BundleError::at(doc, format!("/spec/identity{p}"), m)),
                    );
                    None
                }
            }
        }
    };
    let mut day = |field: &str, text: &Option<String>| -> Option<u64> {
        let t = text.as_deref()?;
        match parse_date(t) {
            Some(d) => Some(d),
            None => {
                errors.push(BundleError::at(
                    doc,
                    format!("/spec/{field}"),
                    format!("{t:?} is not a date; write YYYY-MM-DD"),
                ));
                None
            }
        }
    };
    let sunset_day = day("sunset", &spec.sunset);
    day("lastReview", &spec.last_review);
    if spec.sunset.is_some() && spec.status != ServerStatus::Deprecated {
        errors.push(BundleError::at(
            doc,
            "/spec/sunset",
            "a sunset date needs status: deprecated",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Server {
        status: spec.status,
        sunset_day,
        environments: spec.environments.clone(),
        tenants: spec.tenants.clone(),
        owner: spec.owner.clone(),
        classification: spec.classification,
        name: doc.metadata.name.clone(),
        path_prefix,
        authority,
        tools,
        resources,
        prompts,
        source: doc.source.clone(),
        pins,
        pin_failure: spec.on_pin_failure,
        content,
        identity,
    })
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
pub fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if text.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

pub use crate::spec::is_glob;

pub use crate::spec::from_value_at;

/// The built-in content policy, compiled once per process (its patterns are
/// fixed, so every bundle shares one).
pub fn builtin_content_policy() -> Option<Arc<ContentPolicy>> {
    static BUILTIN: std::sync::OnceLock<Option<Arc<ContentPolicy>>> = std::sync::OnceLock::new();
    BUILTIN
        .get_or_init(|| crate::scan::default_policy().ok().map(Arc::new))
        .clone()
}

/// The content version of a list of documents: `sha256:` and the hex digest
/// of their canonical JSON, sources left out and documents sorted by kind and
/// name, so neither file layout nor order changes it.
pub fn content_version(documents: &[Document]) -> String {
    let mut docs: Vec<Value> = documents
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.source = None;
            serde_json::to_value(d).unwrap_or(Value::Null)
        })
        .collect();
    docs.sort_by_key(|d| {
        (
            d.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            d.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        )
    });
    let digest = Sha256::digest(canonical_string(&Value::Array(docs)).as_bytes());
    format!("sha256:{}", hex::encode(digest))
}

/// Assembles documents into a bundle, stamping its version.
pub fn assemble(documents: Vec<Document>) -> BundleJson {
    BundleJson {
        api_version: API_VERSION.into(),
        kind: "Bundle".into(),
        version: content_version(&documents),
        documents,
        signature: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(kind: &str, name: &str, spec: Value) -> Document {
        Document {
            api_version: API_VERSION.into(),
            kind: kind.into(),
            metadata: Metadata {
                name: name.into(),
                labels: Default::default(),
                annotations: Default::default(),
            },
            spec,
            source: Some(Source {
                file: format!("{name}.yaml"),
                line: 1,
            }),
        }
    }

    #[test]
    fn compiles_the_issue_shape_and_routes() {
        let b = assemble(vec![doc(
            "McpServer",
            "everything",
            json!({"match": {"pathPrefix": "/mcp"}, "tools": [{"name": "echo"}, {"name": "get-*"}]}),
        )]);
        let bundle = Bundle::compile(&b).unwrap();
        let s = bundle.route("localhost:8080", "/mcp").unwrap().unwrap();
        assert!(s.tools.is_match("echo"));
        assert!(s.tools.is_match("get-weather"));
        assert!(!s.tools.is_match("delete-file"));
        assert!(bundle.route("x", "/mcpx").unwrap().is_none());
        assert!(bundle.route("x", "/mcp/sub?x=1").unwrap().is_some());
        assert!(bundle.route("x", "/other").unwrap().is_none());
    }

    #[test]
    fn most_specific_route_wins() {
        let b = assemble(vec![
            doc("McpServer", "all", json!({})),
            doc("McpServer", "mcp", json!({"match": {"pathPrefix": "/mcp"}})),
            doc(
                "McpServer",
                "host",
                json!({"match": {"pathPrefix": "/mcp", "authority": "Api.Example.com"}}),
            ),
        ]);
        let bundle = Bundle::compile(&b).unwrap();
        let name = |a: &str, p: &str| bundle.route(a, p).unwrap().unwrap().name.clone();
        assert_eq!(name("other", "/x"), "all");
        assert_eq!(name("other", "/mcp"), "mcp");
        assert_eq!(name("api.example.com:443", "/mcp"), "host");
        assert_eq!(name("API.example.com.", "/MCP/"), "host");
        assert_eq!(name("user@api.example.com:8443", "/%6dcp"), "host");
        assert_eq!(name("", "http://api.example.com/mcp"), "host");
        assert_eq!(
            name("api.example.com", "https://API.example.com:443/mcp"),
            "host"
        );
        assert!(bundle.route("other", "http://api.example.com/mcp").is_err());
    }

    fn routes(prefix: &str, authority: Option<&str>) -> Bundle {
        let mut m = serde_json::Map::new();
        m.insert("pathPrefix".into(), json!(prefix));
        if let Some(a) = authority {
            m.insert("authority".into(), json!(a));
        }
        Bundle::compile(&assemble(vec![doc(
            "McpServer",
            "mcp",
            json!({"match": Value::Object(m)}),
        )]))
        .unwrap()
    }

    #[test]
    fn odd_spellings_route_to_the_server() {
        let bundle = routes("/mcp", None);
        for path in [
            "/mcp",
            "/MCP",
            "/mcp/",
            "/Mcp/x?y",
            "/%6dcp",
            "/%4D%43%50/",
            "//mcp",
            "/mcp;jsessionid=1",
            "/MCP;a=b/./",
            "/x/../mcp",
            "/x/..%2fmcp",
            "/%2e%2e/mcp",
            "\\mcp",
            "/x\\..\\mcp",
            "/mcp/../x",
            "/%E2%84%AAmcp/../mcp",
            "http://h/mcp",
            "//evil.example/mcp",
        ] {
            let s = bundle
                .route("h", path)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(s.is_some(), "{path} should route to the server");
        }
        for path in ["/mcpx", "/x/mcp", "/", "*"] {
            assert!(bundle.route("h", path).unwrap().is_none(), "{path}");
        }
        for (authority, path) in [
            ("h", "/mcp%"),
            ("h", "/%252e%252e/mcp"),
            ("h", "/mcp%00"),
            ("h", "/a%2Fb/../mcp"),
            ("h", "mcp"),
            ("", "/mcp"),
            ("h:0", "/mcp"),
            ("[::1", "/mcp"),
            ("other", "http://h/mcp"),
        ] {
            assert!(bundle.route(authority, path).is_err(), "{authority} {path}");
        }
    }

    #[test]
    fn authority_patterns_are_canonical() {
        let bundle = routes("/mcp", Some("API.Example.com.:443"));
        for authority in [
            "api.example.com",
            "api.example.com:443",
            "API.EXAMPLE.COM.:443",
            "u:p@api.example.com",
        ] {
            assert!(
                bundle.route(authority, "/mcp").unwrap().is_some(),
                "{authority}"
            );
        }
        for authority in [
            "api.example.com:8443",
            "example.com",
            "api.example.com.evil",
        ] {
            assert!(
                bundle.route(authority, "/mcp").unwrap().is_none(),
                "{authority}"
            );
        }
        let bundle = routes("/", Some("[::1]"));
        assert!(bundle.route("[0:0::1]:8080", "/x").unwrap().is_some());
        assert!(bundle.route("127.0.0.1", "/x").unwrap().is_none());
    }

    #[test]
    fn readings_that_disagree_are_refused() {
        // Starlette keeps /mcp/../x under Mount("/mcp"), nginx makes it /x:
        // with a server on each, the request is ambiguous.
        let b = assemble(vec![
            doc("McpServer", "mcp", json!({"match": {"pathPrefix": "/mcp"}})),
            doc("McpServer", "x", json!({"match": {"pathPrefix": "/x"}})),
        ]);
        let bundle = Bundle::compile(&b).unwrap();
        let err = bundle.route("h", "/mcp/../x").unwrap_err();
        assert!(
            err.to_string().contains("McpServer/x and McpServer/mcp"),
            "{err}"
        );
        assert_eq!(bundle.route("h", "/mcp/x").unwrap().unwrap().name, "mcp");
    }

    #[test]
    fn route_patterns_that_do_not_canonicalise_are_bundle_errors() {
        let b = assemble(vec![
            doc(
                "McpServer",
                "a",
                json!({"match": {"pathPrefix": "/mcp%zz"}}),
            ),
            doc(
                "McpServer",
                "b",
                json!({"match": {"pathPrefix": "/a/../mcp"}}),
            ),
            doc("McpServer", "c", json!({"match": {"pathPrefix": "mcp"}})),
            doc("McpServer", "d", json!({"match": {"authority": "user@h"}})),
            doc("McpServer", "e", json!({"match": {"authority": "h:99999"}})),
            doc("McpServer", "f", json!({"match": {"pathPrefix": "/%252F"}})),
        ]);
        let errs = Bundle::compile(&b).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 6, "{text:#?}");
        assert_eq!(errs[0].pointer, "/spec/match/pathPrefix");
        assert!(
            text[0].contains("malformed percent-encoding"),
            "{}",
            text[0]
        );
        assert!(text[1].contains("'..' segments"), "{}", text[1]);
        assert!(text[2].contains("must start with '/'"), "{}", text[2]);
        assert_eq!(errs[3].pointer, "/spec/match/authority");
        assert!(text[3].contains("userinfo"), "{}", text[3]);
        assert!(text[4].contains("1-65535"), "{}", text[4]);
        assert!(text[5].contains("double percent-encoding"), "{}", text[5]);
    }

    #[test]
    fn routes_that_canonicalise_alike_are_the_same_route() {
        let b = assemble(vec![
            doc("McpServer", "a", json!({"match": {"pathPrefix": "/mcp"}})),
            doc("McpServer", "b", json!({"match": {"pathPrefix": "/MCP/"}})),
        ]);
        let errs = Bundle::compile(&b).unwrap_err();
        assert!(errs[0].to_string().contains("same route as McpServer/a"));
    }

    #[test]
    fn errors_name_document_field_and_fix() {
        let b = assemble(vec![
            doc("McpServer", "a", json!({"toolz": []})),
            doc(
                "McpServer",
                "b",
                json!({"tools": [{"name": "ok"}, {"name": "bad\\"}]}),
            ),
            doc("Gateway", "c", json!({})),
            doc("McpServer", "Bad_Name", json!({})),
        ]);
        let errs = Bundle::compile(&b).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            text[0].starts_with("a.yaml:1: McpServer/a: spec.toolz: unknown field `toolz`"),
            "{}",
            text[0]
        );
        assert_eq!(errs[1].pointer, "/spec/tools/1/name");
        assert!(text[1].contains("escape it"), "{}", text[1]);
        assert!(text[2].contains("unknown kind \"Gateway\""));
        assert!(text[3].contains("DNS-1123"));
    }

    #[test]
    fn ambiguous_routes_are_refused() {
        let b = assemble(vec![
            doc("McpServer", "a", json!({"match": {"pathPrefix": "/mcp"}})),
            doc("McpServer", "b", json!({"match": {"pathPrefix": "/mcp"}})),
        ]);
        let errs = Bundle::compile(&b).unwrap_err();
        assert!(errs[0].to_string().contains("same route as McpServer/a"));
    }

    #[test]
    fn version_ignores_order_and_sources_and_is_checked() {
        let a = doc("McpServer", "a", json!({}));
        let mut b = doc(
            "McpServer",
            "b",
            json!({"match": {"pathPrefix": "/b"}, "tools": [{"name": "x"}]}),
        );
        let v1 = content_version(&[a.clone(), b.clone()]);
        b.source = None;
        assert_eq!(v1, content_version(&[b.clone(), a.clone()]));
        let mut json = assemble(vec![a, b]);
        let bytes = serde_json::to_vec(&json).unwrap();
        if let Err(e) = Bundle::from_json(&bytes) {
            panic!("{e:?}");
        }
        json.documents[0].spec = json!({"tools": [{"name": "*"}]});
        assert!(Bundle::compile(&json).is_ok());
        let bytes = serde_json::to_vec(&json).unwrap();
        let errs = Bundle::from_json(&bytes).unwrap_err();
        assert!(errs[0].message.contains("edited after it was built"));
    }

    #[test]
    fn settings_defaults_and_limits() {
        let b = assemble(vec![doc(
            "Settings",
            "default",
            json!({"maxRequestBytes": 10, "unmatchedRoutes": "deny"}),
        )]);
        let bundle = Bundle::compile(&b).unwrap();
        assert_eq!(bundle.settings.max_request_bytes, 10);
        assert_eq!(
            bundle.settings.max_response_bytes,
            DEFAULT_MAX_RESPONSE_BYTES
        );
        assert_eq!(bundle.settings.unmatched_routes, UnmatchedRoutes::Deny);
        let b = assemble(vec![doc(
            "Settings",
            "default",
            json!({"unmatchedRoutes": "maybe"}),
        )]);
        assert!(Bundle::compile(&b).is_err());
    }
}

//! MCP over JSON-RPC 2.0: what a message is, which operation it asks for and
//! on what, and whether its HTTP framing agrees with its body.
//!
//! The filter decides on the *operation* (`tools/call` on tool `echo` of
//! server `everything`), so this module turns a parsed body into a list of
//! [`Message`]s with that operation extracted, and refuses anything whose
//! meaning a server could read differently: members JSON-RPC does not define,
//! keys that differ from a known one only in case, batches where the
//! negotiated revision forbids them, and 2026-07-28 routing headers
//! (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version`) that disagree with the
//! body.

use serde_json::{Map, Value};

/// Protocol revisions this filter understands. A request that names any other
/// revision is refused: its framing rules are unknown, so it cannot be
/// inspected with confidence.
pub const KNOWN_REVISIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// The revision assumed when a request names none (the streamable HTTP
/// transport says so for a missing `MCP-Protocol-Version` header).
pub const DEFAULT_REVISION: &str = "2025-03-26";

/// The stateless revision: no sessions, and routing headers mirrored from the
/// body that must agree with it.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// The revision whose `URLElicitationRequiredError` (`-32042`) sends a
/// client to a page and has it retry: its way to ask for an approval.
pub const URL_ELICITATION_REVISION: &str = "2025-11-25";

/// Where the 2026-07-28 revision carries the protocol version in a body.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// JSON-RPC and MCP error codes this filter answers with.
///
/// MCP 2026-07-28 (basic/index, "Error codes") reserves `-32020..=-32099`
/// for codes the specification defines, and says implementations "MUST NOT
/// emit any code from this sub-range that is not defined by this
/// specification"; new application codes "SHOULD be allocated outside the
/// JSON-RPC reserved range (`-32768` to `-32000`)". Portcullis's own codes
/// are therefore `-31089..=-31099` (they were `-320NN` before that revision:
/// the last two digits are unchanged), and the codes MCP defines are used
/// only with their meaning (`-32020` header mismatch, `-32022` unsupported
/// protocol version). One numbering for every revision, so an operator's
/// alerts and a client's handling do not depend on what the client speaks.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// MCP 2026-07-28 `HeaderMismatch`: HTTP headers mirrored from the body
    /// disagree with it.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28 `UnsupportedProtocolVersion`: the request names a
    /// protocol revision this filter does not know; `data` carries
    /// `{supported, requested}` as the schema requires.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Refused by the bundle: the call's server, tool, resource or prompt is
    /// not allowed. `data` carries `{reason, rule, requestId}`.
    pub const DENIED: i64 = -31090;
    /// The request body exceeds the configured limit.
    pub const TOO_LARGE: i64 = -31091;
    /// An MCP route received a body that is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: i64 = -31092;
    /// The filter failed internally; it refuses rather than pass uninspected.
    pub const INTERNAL: i64 = -31093;
    /// The upstream's answer could not be inspected (unparseable, oversize).
    pub const UPSTREAM_REJECTED: i64 = -31094;
    /// No registered MCP server matches the request's route.
    pub const UNKNOWN_SERVER: i64 = -31095;
    /// No valid token for a server with identity settings (HTTP 401/400).
    pub const UNAUTHENTICATED: i64 = -31097;
    /// The token's scopes do not cover the call (HTTP 403).
    pub const INSUFFICIENT_SCOPE: i64 = -31098;
    /// A Policy rule asks for a person's approval (`data.approval`).
    pub const APPROVAL_REQUIRED: i64 = -31099;
    /// A rate, concurrency or budget limit was reached (HTTP 429).
    pub const LIMITED: i64 = -31089;
    /// MCP 2025-11-25 `URLElicitationRequiredError`: the request can run
    /// once the URL-mode elicitations in `data.elicitations` are done (the
    /// approval page of a held call).
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;

    /// Whether `code` lies in the sub-range MCP 2026-07-28 reserves for
    /// codes its specification defines.
    pub fn is_mcp_reserved(code: i64) -> bool {
        (-32099..=-32020).contains(&code)
    }
}

/// The kind of a JSON-RPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Notification => "notification",
            Kind::Response => "response",
        }
    }
}

/// What a message operates on, as governance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Tool(String),
    Resource(String),
    Prompt(String),
    /// A task handle (`params.taskId` of `tasks/get`, `tasks/update`,
    /// `tasks/cancel` and 2025-11-25's `tasks/result`).
    Task(String),
}

impl Target {
    /// The value the 2026-07-28 `Mcp-Name` header must carry.
    pub fn name(&self) -> Option<&str> {
        match self {
            Target::None => None,
            Target::Tool(n) | Target::Resource(n) | Target::Prompt(n) | Target::Task(n) => Some(n),
        }
    }
}

/// MCP methods this filter knows. Anything else is refused unless the bundle
/// allows unknown methods: a method the filter cannot classify is a method it
/// cannot govern.
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    // The 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`).
    "tasks/update",
    // Server-to-client requests, seen on response streams.
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

/// The methods that name a task by `params.taskId`: a task handle is bound
/// to the principal whose call created it.
pub fn is_task_method(method: &str) -> bool {
    matches!(
        method,
        "tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result"
    )
}

/// Whether `method` is one this filter can classify.
pub fn is_known_method(method: &str) -> bool {
    method.starts_with("notifications/") || KNOWN_METHODS.contains(&method)
}

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: Kind,
    /// The JSON-RPC id (requests and responses).
    pub id: Option<Value>,
    /// The method (requests and notifications).
    pub method: Option<String>,
    pub target: Target,
    /// `params.arguments` of a tools/call or prompts/get.
    pub arguments: Option<Value>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, if given.
    pub meta_revision: Option<String>,
    /// Who the client says it is: `params._meta["io.modelcontextprotocol/
    /// clientInfo"]` (2026-07-28), or `initialize`'s `params.clientInfo`.
    pub client: Option<ClientInfo>,
    /// For responses: `Some(code)` when the response is an error.
    pub error_code: Option<i64>,
}

/// Where the 2026-07-28 revision carries the client's identity in a body.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// The longest client name or version a record keeps (the client chooses
/// them, so they are bounded like any other client text).
pub const CLIENT_INFO_MAX: usize = 128;

/// A client's self-description (`Implementation` in the schema): a label
/// for the audit trail, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub version: Option<String>,
}

impl ClientInfo {
    /// Reads an `Implementation` object; `None` without a string `name`.
    fn from_value(v: &Value) -> Option<ClientInfo> {
        let name = v.get("name").and_then(Value::as_str)?;
        Some(ClientInfo {
            name: crate::spec::truncate(name, CLIENT_INFO_MAX).to_owned(),
            version: v
                .get("version")
                .and_then(Value::as_str)
                .map(|s| crate::spec::truncate(s, CLIENT_INFO_MAX).to_owned()),
        })
    }
}

/// A body: one message or a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub batch: bool,
    pub messages: Vec<Message>,
}

/// Why a body is not an acceptable MCP message. `code` is the JSON-RPC error
/// code to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: i64,
    pub reason: String,
}

impl Invalid {
    fn request(reason: impl Into<String>) -> Self {
        Invalid {
            code: codes::INVALID_REQUEST,
            reason: reason.into(),
        }
    }
}

/// Classifies a parsed body (see [`crate::json::parse_strict`]).
pub fn classify(value: &Value) -> Result<Envelope, Invalid> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Invalid::request("empty JSON-RPC batch"));
            }
            let messages = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    classify_one(item).map_err(|e| Invalid {
                        code: e.code,
                        reason: format!("batch element {i}: {}", e.reason),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Envelope {
                batch: true,
                messages,
            })
        }
        other => Ok(Envelope {
            batch: false,
            messages: vec![classify_one(other)?],
        }),
    }
}

const MESSAGE_MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

fn classify_one(value: &Value) -> Result<Message, Invalid> {
    let obj = value
        .as_object()
        .ok_or_else(|| Invalid::request("a JSON-RPC message must be an object"))?;
    refuse_lookalike_keys(obj, MESSAGE_MEMBERS, "message")?;
    for key in obj.keys() {
        if !MESSAGE_MEMBERS.contains(&key.as_str()) {
            return Err(Invalid::request(format!(
                "member {key:?} is not part of JSON-RPC 2.0"
            )));
        }
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::request("\"jsonrpc\" must be \"2.0\""));
    }
    let id = match obj.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        Some(Value::Null) => Some(Value::Null),
        Some(_) => return Err(Invalid::request("\"id\" must be a string or a number")),
    };
    match obj.get("method") {
        Some(Value::String(method)) => {
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(Invalid::request(
                    "a message cannot be both a request and a response",
                ));
            }
            if id == Some(Value::Null) {
                return Err(Invalid::request("a request id must not be null"));
            }
            let params = match obj.get("params") {
                None => None,
                Some(Value::Object(p)) => Some(p),
                Some(_) => return Err(Invalid::request("\"params\" must be an object")),
            };
            let (target, arguments) = extract_target(method, params)?;
            let meta_revision = params
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get(META_PROTOCOL_VERSION))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let client = params
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get(META_CLIENT_INFO))
                .or_else(|| {
                    params
                        .filter(|_| method == "initialize")
                        .and_then(|p| p.get("clientInfo"))
                })
                .and_then(ClientInfo::from_value);
            Ok(Message {
                kind: if id.is_some() {
                    Kind::Request
                } else {
                    Kind::Notification
                },
                id,
                method: Some(method.clone()),
                target,
                arguments,
                meta_revision,
                client,
                error_code: None,
            })
        }
        Some(_) => Err(Invalid::request("\"method\" must be a string")),
        None => {
            let error_code = match (obj.get("result"), obj.get("error")) {
                (Some(_), None) => None,
                (None, Some(err)) => {
                    Some(err.get("code").and_then(Value::as_i64).ok_or_else(|| {
                        Invalid::request("an error response needs an integer \"code\"")
                    })?)
                }
                _ => {
                    return Err(Invalid::request(
                        "a response needs exactly one of \"result\" and \"error\"",
                    ));
                }
            };
            if id.is_none() {
                return Err(Invalid::request("a response needs an \"id\""));
            }
            Ok(Message {
                kind: Kind::Response,
                id,
                method: None,
                target: Target::None,
                arguments: None,
                meta_revision: None,
                client: None,
                error_code,
            })
        }
    }
}

/// Refuses keys that equal a known key except in ASCII case (`"Name"` beside
/// `"name"`): a case-insensitive server would read them as the same key, a
/// duplicate in disguise.
fn refuse_lookalike_keys(
    obj: &Map<String, Value>,
    known: &[&str],
    what: &str,
) -> Result<(), Invalid> {
    for key in obj.keys() {
        if let Some(k) = known
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key) && **k != key.as_str())
        {
            return Err(Invalid::request(format!(
                "{what} member {key:?} differs from {k:?} only in case; refused as ambiguous"
            )));
        }
    }
    Ok(())
}

fn extract_target(
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Result<(Target, Option<Value>), Invalid> {
    let string_param = |key: &str| -> Result<String, Invalid> {
        let params = params.ok_or_else(|| Invalid {
            code: codes::INVALID_REQUEST,
            reason: format!("{method} needs params"),
        })?;
        refuse_lookalike_keys(
            params,
            &["name", "uri", "arguments", "taskId", "_meta"],
            "params",
        )?;
        match params.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(Invalid::request(format!(
                "{method} needs a string params.{key}"
            ))),
        }
    };
    let arguments = || -> Result<Option<Value>, Invalid> {
        match params.and_then(|p| p.get("arguments")) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(Invalid::request("params.arguments must be an object")),
        }
    };
    Ok(match method {
        "tools/call" => (Target::Tool(string_param("name")?), arguments()?),
        "prompts/get" => (Target::Prompt(string_param("name")?), arguments()?),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (Target::Resource(string_param("uri")?), None)
        }
        m if is_task_method(m) => (Target::Task(string_param("taskId")?), None),
        _ => (Target::None, None),
    })
}

/// The revision a request speaks: the `MCP-Protocol-Version` header, else the
/// body's `_meta` revision, else `initialize`'s requested version, else
/// [`DEFAULT_REVISION`].
pub fn effective_revision(header: Option<&str>, envelope: &Envelope, body: &Value) -> String {
    if let Some(h) = header {
        return h.trim().to_owned();
    }
    if let Some(m) = envelope
        .messages
        .iter()
        .find_map(|m| m.meta_revision.clone())
    {
        return m;
    }
    if let Some(v) = body
        .get("params")
        .filter(|_| body.get("method").and_then(Value::as_str) == Some("initialize"))
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
    {
        return v.to_owned();
    }
    DEFAULT_REVISION.to_owned()
}

/// Refuses a body whose messages name different revisions in `_meta`, or
/// name one the `MCP-Protocol-Version` header contradicts. A server reading
/// the body's revision would apply its framing rules (2026-07-28 routes on
/// `Mcp-Method` and `Mcp-Name`) while the filter applied the header's, and
/// the checks of one would be skipped for the other.
pub fn check_revisions(header: Option<&str>, envelope: &Envelope) -> Result<(), Invalid> {
    let mismatch = |reason: String| Invalid {
        code: codes::HEADER_MISMATCH,
        reason,
    };
    let mut named: Option<&str> = None;
    for m in &envelope.messages {
        let Some(r) = m.meta_revision.as_deref() else {
            continue;
        };
        match named {
            Some(n) if n != r => {
                return Err(mismatch(format!(
                    "messages of one body name different protocol revisions in _meta ({n:?} and {r:?})"
                )));
            }
            _ => named = Some(r),
        }
    }
    if let (Some(h), Some(b)) = (header, named)
        && h.trim() != b
    {
        return Err(mismatch(format!(
            "MCP-Protocol-Version header {:?} does not match the body's _meta revision {b:?}",
            h.trim()
        )));
    }
    Ok(())
}

/// The 2026-07-28 routing headers of one POST.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoutingHeaders<'a> {
    pub protocol_version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Checks the framing rules of `revision` against a classified body.
///
/// * Batches exist only in 2025-03-26 (2025-06-18 removed them).
/// * In 2026-07-28, `Mcp-Method` must equal the body's method, `Mcp-Name` the
///   tool, prompt or resource it names (and be absent when it names none),
///   and `MCP-Protocol-Version` the body's `_meta` revision. Disagreement is
///   answered with HTTP 400 and -32020, as the revision requires, because a
///   gateway routing on the header and a server executing the body would
///   otherwise act on different operations.
pub fn check_framing(
    revision: &str,
    envelope: &Envelope,
    headers: RoutingHeaders<'_>,
) -> Result<(), Invalid> {
    if !KNOWN_REVISIONS.contains(&revision) {
        return Err(Invalid {
            code: codes::UNSUPPORTED_PROTOCOL_VERSION,
            reason: format!(
                "protocol revision {revision:?} is not one this filter can inspect ({})",
                KNOWN_REVISIONS.join(", ")
            ),
        });
    }
    if envelope.batch && revision != "2025-03-26" && revision != "2024-11-05" {
        return Err(Invalid::request(format!(
            "JSON-RPC batches are not allowed in protocol revision {revision}"
        )));
    }
    if revision != STATELESS_REVISION {
        return Ok(());
    }
    let mismatch = |reason: String| Invalid {
        code: codes::HEADER_MISMATCH,
        reason,
    };
    let Some(msg) = envelope.messages.first() else {
        return Err(Invalid::request("empty body"));
    };
    let Some(method) = msg.method.as_deref() else {
        // A client's answer to a server request carries no method.
        return Ok(());
    };
    match headers.method {
        None => {
            return Err(mismatch(
                "Mcp-Method header is required in 2026-07-28".into(),
            ));
        }
        Some(h) if h != method => {
            return Err(mismatch(format!(
                "Mcp-Method header {h:?} does not match the body's method {method:?}"
            )));
        }
        Some(_) => {}
    }
    match (headers.name, msg.target.name()) {
        (Some(h), Some(b)) if h != b => {
            return Err(mismatch(format!(
                "Mcp-Name header {h:?} does not match the body's {b:?}"
            )));
        }
        (None, Some(b)) => {
            return Err(mismatch(format!(
                "Mcp-Name header is required for {method} (the body names {b:?})"
            )));
        }
        (Some(h), None) => {
            return Err(mismatch(format!(
                "Mcp-Name header {h:?} given, but {method} names nothing"
            )));
        }
        _ => {}
    }
    if let (Some(h), Some(b)) = (headers.protocol_version, msg.meta_revision.as_deref())
        && h.trim() != b
    {
        return Err(mismatch(format!(
            "MCP-Protocol-Version header {h:?} does not match the body's _meta revision {b:?}"
        )));
    }
    Ok(())
}

/// Builds a JSON-RPC error response.
pub fn error_response(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    if let Some(d) = data {
        error.insert("data".into(), d);
    }
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    obj.insert("id".into(), id.cloned().unwrap_or(Value::Null));
    obj.insert("error".into(), Value::Object(error));
    Value::Object(obj)
}

/// A stable text form of a JSON-RPC id (`1` and `"1"` differ here; see
/// [`ids_match`] for how clients compare them).
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// The largest request id an official client can have minted: both count
/// up from a small integer, and the TS client keeps ids as JavaScript
/// numbers, exact up to 2^53.
pub const MAX_CLIENT_ID: u64 = 1 << 53;

/// The keys ([`id_key`] of a JSON integer) of every request id of its own
/// that some official client would match a response carrying `id` to.
///
/// `id_key` keeps `1` and `"1"` apart; the clients do not. Their own ids are
/// non-negative integers (TS counts from 0, `shared/protocol.js:16, 665`;
/// Python from 1, `mcp/shared/jsonrpc_dispatcher.py:311, 793-795`), and a
/// response finds its request as follows:
///
/// * **TS SDK 1.32.2**: `Protocol._onresponse` looks the request up with
///   `Number(response.id)` in a `Map` (`shared/protocol.js:477-499`; the same
///   for `_requestResolvers`, and `Number(progressToken)` for progress,
///   line 454), after zod accepted the id as a string or an integer number
///   (`types.js:110`; an error response's id may be absent, line 178). So
///   any string whose `Number()` is the request id matches it ([`ts_request_id`]).
/// * **Python SDK 2.3.0**: `_resolve_pending` looks the request up with
///   `coerce_request_id(id)` (`mcp/shared/jsonrpc_dispatcher.py:678-684`),
///   which turns a string into `int(s)` when Python can
///   (`mcp/shared/dispatcher.py:56-67`); a number must be a JSON integer
///   (`RequestId = Annotated[int, Field(strict=True)] | str`,
///   `mcp_types/jsonrpc.py:32`: `1.0` is refused) ([`python_request_id`]).
///
/// Beyond the id, context: the Python client takes **every** response on a
/// POST's event stream as the answer to that POST's request, replacing its
/// id (whatever it was, `null` included; `mcp/client/streamable_http.py:192-194`),
/// and answers a request whose POST got a status >= 400 with a JSON-RPC
/// error body using that error (lines 398-415). The TS client does the same
/// on a resumed stream (`replayMessageId`, `client/streamableHttp.js:219-223`).
///
/// To correlate as the clients do, compare `client_request_ids` of a
/// request's id and of a response's id (a Python caller may give its own
/// id as the string `"7"`, which it keeps under 7). Negative and
/// non-integer ids are only ever matched exactly, which [`id_key`] covers.
pub fn client_id_keys(id: &Value) -> Vec<String> {
    client_request_ids(id)
        .into_iter()
        .map(|k| id_key(&Value::from(k)))
        .collect()
}

/// The request ids behind [`client_id_keys`], ascending, without repeats.
pub fn client_request_ids(id: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = [ts_request_id(id), python_request_id(id)]
        .into_iter()
        .flatten()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The request id the TS client matches `id` to: `Number(id)` when that is
/// an integer in `0..=MAX_CLIENT_ID` (`-0` is `0`: a `Map` compares with
/// SameValueZero). For a string, `Number()` trims JavaScript whitespace
/// (including U+FEFF, U+2028 and U+00A0, not U+0085), reads `""` as `0`, and
/// takes `0x`/`0o`/`0b` integers, a sign, decimals and exponents (`" 1"`,
/// `"0x1"`, `"1e0"`, `"1."`, `".1e1"`, `"01"`, `"+1"` are all 1). For a
/// number, any JSON number whose value is integral (`1.0`, `1e0`); as
/// serde_json's float parsing may differ from JavaScript's by an ulp, a value
/// within two ulps of an integer counts as that integer.
pub fn ts_request_id(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return exact_client_id(u as f64);
            }
            if n.as_i64().is_some() {
                return None; // negative
            }
            let x = n.as_f64()?;
            let k = x.round();
            let tolerance = 2.0 * f64::EPSILON * k.abs().max(1.0);
            if (x - k).abs() <= tolerance {
                exact_client_id(k)
            } else {
                None
            }
        }
        Value::String(s) => js_string_to_number(s).and_then(exact_client_id),
        _ => None,
    }
}

/// `x` as a client id, if it is exactly an integer in `0..=MAX_CLIENT_ID`.
fn exact_client_id(x: f64) -> Option<u64> {
    let in_range = x.is_finite() && x.trunc() == x && (0.0..=MAX_CLIENT_ID as f64).contains(&x);
    in_range.then(|| x.abs() as u64)
}

/// JavaScript's `StrWhiteSpaceChar`: WhiteSpace and LineTerminator.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// `Number(s)` (ECMA-262 StringToNumber), `None` for NaN.
fn js_string_to_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return Some(0.0);
    }
    let radix = match t.get(..2) {
        Some("0x" | "0X") => Some(16),
        Some("0o" | "0O") => Some(8),
        Some("0b" | "0B") => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        let digits = t.get(2..)?;
        if digits.is_empty() {
            return None;
        }
        let mut v: u128 = 0;
        for c in digits.chars() {
            let d = c.to_digit(radix)?;
            // Past u128 the value is far above any client id.
            v = v
                .checked_mul(u128::from(radix))
                .and_then(|v| v.checked_add(u128::from(d)))
                .unwrap_or(u128::MAX);
        }
        return Some(v as f64);
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return Some(f64::INFINITY);
    }
    // StrUnsignedDecimalLiteral: digits [. digits] [exp] | . digits [exp].
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (unsigned.get(..i)?, Some(unsigned.get(i + 1..)?)),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !all_digits(frac) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !all_digits(e) {
            return None;
        }
    }
    // Validated above, so Rust's (correctly rounded) parser reads exactly
    // the ECMAScript grammar here.
    t.parse::<f64>().ok()
}

/// The request id the Python client matches `id` to: a JSON integer as
/// itself, and a string as `int(s)` (`coerce_request_id`), when that is in
/// `0..=MAX_CLIENT_ID`. `int()` strips ASCII whitespace and the non-ASCII
/// characters `str.isspace()` accepts (U+0085, U+00A0, U+2028, U+3000...,
/// not U+FEFF nor `\x1c`-`\x1f`), takes a sign, any Unicode decimal digit
/// (`"١"` and `"１"` are 1) and single underscores between digits
/// (`"1_0"` is 10); `"-0"` is 0. Python 3.11+ refuses more than 4300 digits,
/// which this ignores.
pub fn python_request_id(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => n.as_u64().filter(|&k| k <= MAX_CLIENT_ID),
        Value::String(s) => python_int(s),
        _ => None,
    }
}

fn is_python_int_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// The code points of the digit zero of every run of ten decimal digits
/// (General Category Nd), Unicode 16.0 (Python 3.14's; earlier Pythons know
/// a subset).
const DECIMAL_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of a Unicode decimal digit.
fn decimal_digit(c: char) -> Option<u32> {
    let cp = u32::from(c);
    let i = DECIMAL_ZEROS.partition_point(|&z| z <= cp).checked_sub(1)?;
    let zero = DECIMAL_ZEROS.get(i)?;
    let d = cp - zero;
    (d < 10).then_some(d)
}

/// `int(s)` in base 10, when it is in `0..=MAX_CLIENT_ID`.
fn python_int(s: &str) -> Option<u64> {
    let t = s.trim_matches(is_python_int_space);
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let mut value: u64 = 0;
    let mut previous_was_digit = false;
    for c in digits.chars() {
        if c == '_' {
            if !previous_was_digit {
                return None;
            }
            previous_was_digit = false;
            continue;
        }
        let d = decimal_digit(c)?;
        value = value
            .saturating_mul(10)
            .saturating_add(u64::from(d))
            .min(MAX_CLIENT_ID + 1);
        previous_was_digit = true;
    }
    if !previous_was_digit || value > MAX_CLIENT_ID || (negative && value != 0) {
        return None;
    }
    Some(value)
}

/// Whether some official client would take a response with id `response`
/// as the answer to its request with id `request`: the same JSON value, or
/// ids both clients' lookups bring to one request number
/// ([`client_request_ids`]). The filter correlates this way, so that no
/// spelling of an id makes a client act on an answer the filter judged as
/// the answer to something else.
pub fn ids_match(request: &Value, response: &Value) -> bool {
    if request == response {
        return true;
    }
    let ours = client_request_ids(request);
    client_request_ids(response)
        .iter()
        .any(|k| ours.contains(k))
}

/// Refuses a body in which two requests carry ids a client would take as
/// the same: their answers could not be told apart (a tools/list answer
/// would pass as a tools/call one).
pub fn check_unique_ids(envelope: &Envelope) -> Result<(), Invalid> {
    let ids: Vec<&Value> = envelope
        .messages
        .iter()
        .filter(|m| m.kind == Kind::Request)
        .filter_map(|m| m.id.as_ref())
        .collect();
    for (i, a) in ids.iter().enumerate() {
        for b in ids.iter().skip(i + 1) {
            if ids_match(a, b) {
                return Err(Invalid::request(format!(
                    "two requests of one batch have ids a client reads as the same ({a} and {b})"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_strict;

    fn env(body: &str) -> Result<Envelope, Invalid> {
        classify(&parse_strict(body.as_bytes()).unwrap())
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let e = env(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#).unwrap();
        let m = &e.messages[0];
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.target, Target::Tool("echo".into()));
        assert_eq!(m.arguments, Some(serde_json::json!({"text":"hi"})));
        let e = env(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(e.messages[0].kind, Kind::Notification);
        let e = env(r#"{"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"x"}}"#).unwrap();
        assert_eq!(e.messages[0].kind, Kind::Response);
        assert_eq!(e.messages[0].error_code, Some(-32601));
        let e = env(
            r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        )
        .unwrap();
        assert_eq!(e.messages[0].target, Target::Resource("file:///a".into()));
    }

    #[test]
    fn refuses_malformed_and_ambiguous_messages() {
        for body in [
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"rm"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            r#"[]"#,
            r#"3"#,
        ] {
            assert!(env(body).is_err(), "accepted {body}");
        }
    }

    #[test]
    fn batches_only_in_2025_03_26() {
        let e = env(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#).unwrap();
        assert!(e.batch);
        assert!(check_framing("2025-03-26", &e, RoutingHeaders::default()).is_ok());
        assert!(check_framing("2025-06-18", &e, RoutingHeaders::default()).is_err());
    }

    #[test]
    fn stateless_headers_must_match_body() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let e = env(body).unwrap();
        let good = RoutingHeaders {
            protocol_version: Some("2026-07-28"),
            method: Some("tools/call"),
            name: Some("echo"),
        };
        assert!(check_framing(STATELESS_REVISION, &e, good).is_ok());
        for bad in [
            RoutingHeaders {
                method: Some("tools/list"),
                ..good
            },
            RoutingHeaders {
                method: None,
                ..good
            },
            RoutingHeaders {
                name: Some("delete-file"),
                ..good
            },
            RoutingHeaders { name: None, ..good },
            RoutingHeaders {
                protocol_version: Some("2025-11-25"),
                ..good
            },
        ] {
            let err = check_framing(STATELESS_REVISION, &e, bad).unwrap_err();
            assert_eq!(err.code, codes::HEADER_MISMATCH);
        }
    }

    #[test]
    fn ids_match_as_the_clients_compare_them() {
        use serde_json::json;
        for (req, resp) in [
            (json!(1), json!("1")),
            (json!(1), json!(" 1 ")),
            (json!(1), json!("0x1")),
            (json!(1), json!("1e0")),
            (json!(1), json!(1.0)),
            (json!(0), json!("")),
            (json!(10), json!("1_0")),
            (json!("abc"), json!("abc")),
        ] {
            assert!(ids_match(&req, &resp), "{req} ~ {resp}");
        }
        for (req, resp) in [
            (json!(1), json!(2)),
            (json!("a"), json!("b")),
            (json!(1), json!("x1")),
        ] {
            assert!(!ids_match(&req, &resp), "{req} !~ {resp}");
        }
        let dup = env(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"1","method":"ping"}]"#).unwrap();
        assert!(check_unique_ids(&dup).is_err());
    }

    #[test]
    fn unknown_revisions_are_refused() {
        let e = env(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        let err = check_framing("2099-01-01", &e, RoutingHeaders::default()).unwrap_err();
        assert_eq!(err.code, codes::UNSUPPORTED_PROTOCOL_VERSION);
    }

    /// MCP 2026-07-28, basic/index, "Error codes": the sub-range `-32020` to
    /// `-32099` is "reserved for the MCP specification. [...]
    /// Implementations **MUST NOT** emit any code from this sub-range that is
    /// not defined by this specification and **MUST** use defined codes only
    /// with their specified meanings", and "New error codes for purposes not
    /// defined by this specification **SHOULD** be allocated outside the
    /// JSON-RPC reserved range (`-32768` to `-32000`)".
    #[test]
    fn own_codes_stay_out_of_the_reserved_ranges() {
        use codes::*;
        for own in [
            DENIED,
            TOO_LARGE,
            UNSUPPORTED_MEDIA_TYPE,
            INTERNAL,
            UPSTREAM_REJECTED,
            UNKNOWN_SERVER,
            UNAUTHENTICATED,
            INSUFFICIENT_SCOPE,
            APPROVAL_REQUIRED,
            LIMITED,
        ] {
            assert!(!(-32768..=-32000).contains(&own), "{own}");
        }
        // The two MCP defines, used with their meaning.
        assert_eq!(HEADER_MISMATCH, -32020);
        assert_eq!(UNSUPPORTED_PROTOCOL_VERSION, -32022);
        assert!(is_mcp_reserved(HEADER_MISMATCH) && is_mcp_reserved(UNSUPPORTED_PROTOCOL_VERSION));
    }

    /// The TS client matches with `Number(response.id)` against numeric
    /// request ids (`shared/protocol.js:477-478`); the Python client with
    /// `int()` on string ids (`mcp/shared/dispatcher.py:56-67`). Values
    /// checked against Node 20 and CPython 3.11.
    #[test]
    fn client_id_keys_follow_both_clients() {
        use serde_json::json;
        let cases: &[(Value, &[u64])] = &[
            (json!(1), &[1]),
            (json!(0), &[0]),
            (json!("1"), &[1]),
            (json!(" 1"), &[1]),
            (json!("1 "), &[1]),
            (json!("0x1"), &[1]),
            (json!("0X10"), &[16]),
            (json!("0b1"), &[1]),
            (json!("0o1"), &[1]),
            (json!("1e0"), &[1]),
            (json!("+1"), &[1]),
            (json!("1."), &[1]),
            (json!(".1e1"), &[1]),
            (json!("01"), &[1]),
            (json!("0.99999999999999999999"), &[1]),
            (json!("1e-400"), &[0]),
            (json!(""), &[0]),
            (json!(" \t\n"), &[0]),
            (json!("-0"), &[0]),
            (json!("\u{2028}1"), &[1]),
            (json!("\u{feff}1"), &[1]), // JS trims U+FEFF; Python does not
            (json!("\u{a0}1"), &[1]),
            (json!("\u{85}1"), &[1]), // Python strips U+0085; JS does not
            (json!("1_0"), &[10]),    // Python only
            (json!("\u{661}"), &[1]), // Arabic-Indic one, Python only
            (json!("\u{ff11}\u{ff10}"), &[10]), // fullwidth, Python only
            (json!("0_1"), &[1]),
            (json!("007"), &[7]),
            (json!("-0_0"), &[0]),
        ];
        for (id, want) in cases {
            assert_eq!(client_request_ids(id), *want, "{id}");
        }
        for id in [
            json!(-1),
            json!(1.5),
            json!("-1"),
            json!("abc"),
            json!("1 2"),
            json!("_1"),
            json!("1_"),
            json!("1__0"),
            json!("+_1"),
            json!("- 1"),
            json!("-0x1"),
            json!("0x"),
            json!("1e"),
            json!("e1"),
            json!("."),
            json!("Infinity"),
            json!("NaN"),
            json!("\u{1c}1"),
            json!("\u{200b}1"),
            json!(true),
            json!(null),
            json!({}),
            json!(9007199254740994_u64),
            json!("0x20000000000002"),
        ] {
            assert_eq!(client_request_ids(&id), Vec::<u64>::new(), "{id}");
        }
        // Numbers: TS takes any integral value, Python only JSON integers.
        let n = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
        assert_eq!(ts_request_id(&n("1.0")), Some(1));
        assert_eq!(python_request_id(&n("1.0")), None);
        assert_eq!(ts_request_id(&n("1e0")), Some(1));
        assert_eq!(ts_request_id(&n("10e-1")), Some(1));
        assert_eq!(ts_request_id(&n("1.0000000000000001")), Some(1));
        assert_eq!(ts_request_id(&n("-0")), Some(0));
        assert_eq!(ts_request_id(&n("-0.0")), Some(0));
        assert_eq!(ts_request_id(&n("1e-400")), Some(0));
        assert_eq!(ts_request_id(&n("1.5")), None);
        assert_eq!(python_request_id(&n("7")), Some(7));
        // Per client, where they differ.
        assert_eq!(ts_request_id(&json!("1_0")), None);
        assert_eq!(python_request_id(&json!("1_0")), Some(10));
        assert_eq!(ts_request_id(&json!("0x10")), Some(16));
        assert_eq!(python_request_id(&json!("0x10")), None);
        assert_eq!(python_request_id(&json!("")), None);
        // 2^53 + 1 rounds to 2^53 in JavaScript.
        assert_eq!(
            ts_request_id(&json!("0x20000000000001")),
            Some(MAX_CLIENT_ID)
        );
        assert_eq!(client_id_keys(&json!(" 1")), vec![id_key(&json!(1))]);
        assert_eq!(client_id_keys(&json!("abc")), Vec::<String>::new());
    }
}

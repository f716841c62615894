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

/// Where the 2026-07-28 revision carries the protocol version in a body.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// JSON-RPC and MCP error codes this filter answers with. Portcullis's own
/// codes sit in -32090..=-32099 of the implementation-defined server range,
/// clear of the codes MCP itself assigns (-32002, -32020, -32042).
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// MCP 2026-07-28: HTTP headers mirrored from the body disagree with it.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// Refused by the bundle: the call's server, tool, resource or prompt is
    /// not allowed. `data` carries `{reason, rule, requestId}`.
    pub const DENIED: i64 = -32090;
    /// The request body exceeds the configured limit.
    pub const TOO_LARGE: i64 = -32091;
    /// An MCP route received a body that is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: i64 = -32092;
    /// The filter failed internally; it refuses rather than pass uninspected.
    pub const INTERNAL: i64 = -32093;
    /// The upstream's answer could not be inspected (unparseable, oversize).
    pub const UPSTREAM_REJECTED: i64 = -32094;
    /// No registered MCP server matches the request's route.
    pub const UNKNOWN_SERVER: i64 = -32095;
    /// The request names a protocol revision this filter does not know.
    pub const UNSUPPORTED_REVISION: i64 = -32096;
    /// No valid token for a server with identity settings (HTTP 401/400).
    pub const UNAUTHENTICATED: i64 = -32097;
    /// The token's scopes do not cover the call (HTTP 403).
    pub const INSUFFICIENT_SCOPE: i64 = -32098;
    /// A Policy rule asks for a person's approval (`data.approval`).
    pub const APPROVAL_REQUIRED: i64 = -32099;
    /// A rate, concurrency or budget limit was reached (HTTP 429).
    pub const LIMITED: i64 = -32089;
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
}

impl Target {
    /// The value the 2026-07-28 `Mcp-Name` header must carry.
    pub fn name(&self) -> Option<&str> {
        match self {
            Target::None => None,
            Target::Tool(n) | Target::Resource(n) | Target::Prompt(n) => Some(n),
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
    // Server-to-client requests, seen on response streams.
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

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
    /// For responses: `Some(code)` when the response is an error.
    pub error_code: Option<i64>,
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
        refuse_lookalike_keys(params, &["name", "uri", "arguments", "_meta"], "params")?;
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
            code: codes::UNSUPPORTED_REVISION,
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

/// Whether some official client would take a response with id `response`
/// as the answer to its request with id `request`. Clients compare loosely:
/// the TypeScript SDK looks its handler up by `Number(response.id)` (so
/// `"1"`, `" 1 "`, `"0x1"`, `"1e0"` all answer request 1, and `null` or `""`
/// answer request 0), and the Python SDK treats `1` and `"1"` alike. The
/// filter correlates the same way, so that no spelling of an id makes a
/// client act on an answer the filter judged as something else.
pub fn ids_match(request: &Value, response: &Value) -> bool {
    if request == response {
        return true;
    }
    let keys = client_id_keys(response);
    client_id_keys(request).iter().any(|k| keys.contains(k))
}

/// Every key under which some client would match `id`: its exact JSON text,
/// its JavaScript `Number()` value, and its Python `int()` value.
pub fn client_id_keys(id: &Value) -> Vec<String> {
    let mut keys = vec![format!("json:{id}")];
    if let Some(n) = js_number(id).filter(|n| n.is_finite()) {
        keys.push(format!("num:{}", number_key(n)));
    }
    if let Some(n) = python_int(id) {
        keys.push(format!("num:{n}"));
    }
    keys
}

/// A number's key: an integral value as its integer, else its shortest
/// decimal form.
fn number_key(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// JavaScript's `Number(v)` for the values a JSON-RPC id can be.
fn js_number(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(0.0),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => js_string_to_number(s),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// ECMAScript `StringToNumber`: whitespace and line terminators trimmed,
/// empty is 0, `0x`/`0o`/`0b` integers, decimal literals with exponents;
/// anything else is NaN (`None`).
fn js_string_to_number(s: &str) -> Option<f64> {
    let is_js_space = |c: char| {
        matches!(
            c,
            '\u{9}' | '\u{a}' | '\u{b}' | '\u{c}' | '\u{d}' | ' ' | '\u{a0}' | '\u{1680}'
                | '\u{2000}'..='\u{200a}'
                | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
        )
    };
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return Some(0.0);
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            return u128::from_str_radix(digits, radix).ok().map(|n| n as f64);
        }
    }
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body == "Infinity" {
        return Some(f64::INFINITY);
    }
    // StrDecimalLiteral: digits, an optional fraction, an optional exponent.
    let bytes = body.as_bytes();
    let mut i = 0;
    let int_digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = bytes.iter().skip(i).take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = bytes.iter().skip(i).take_while(|b| b.is_ascii_digit()).count();
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != bytes.len() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Python's `int(v)` for an id: an integer, an integral float, or a string
/// of digits with optional sign, surrounding whitespace and single
/// underscores between digits.
fn python_int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
                    .map(|f| f as i128)
            }),
        Value::String(s) => {
            let t = s.trim();
            let (neg, digits) = match t.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            if digits.is_empty()
                || digits.starts_with('_')
                || digits.ends_with('_')
                || digits.contains("__")
                || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
            {
                return None;
            }
            let clean: String = digits.chars().filter(|c| *c != '_').collect();
            let n: i128 = clean.parse().ok()?;
            Some(if neg { -n } else { n })
        }
        _ => None,
    }
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
            (json!(0), json!(null)),
            (json!(0), json!("")),
            (json!(10), json!("1_0")),
            (json!("abc"), json!("abc")),
        ] {
            assert!(ids_match(&req, &resp), "{req} ~ {resp}");
        }
        for (req, resp) in [(json!(1), json!(2)), (json!("a"), json!("b")), (json!(1), json!("x1"))] {
            assert!(!ids_match(&req, &resp), "{req} !~ {resp}");
        }
        let dup = env(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"1","method":"ping"}]"#).unwrap();
        assert!(check_unique_ids(&dup).is_err());
    }

    #[test]
    fn unknown_revisions_are_refused() {
        let e = env(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        let err = check_framing("2099-01-01", &e, RoutingHeaders::default()).unwrap_err();
        assert_eq!(err.code, codes::UNSUPPORTED_REVISION);
    }
}

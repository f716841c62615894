//! Strict JSON: the one parser every byte of MCP traffic goes through.
//!
//! A governance filter and the server behind it must read a message the same
//! way, or an attacker writes one that the filter reads as `echo` and the
//! server reads as `delete-file`. So this parser refuses everything on which
//! JSON parsers are known to disagree, instead of picking a winner:
//!
//! * duplicate object keys (`{"name":"echo","name":"rm"}`): RFC 8259 leaves
//!   the result undefined, and real parsers differ (first wins, last wins);
//! * bytes that are not UTF-8, and lone UTF-16 surrogates in `\u` escapes;
//! * a leading byte-order mark, and anything after the value but whitespace;
//! * nesting deeper than [`MAX_DEPTH`].
//!
//! Escapes are decoded (`"tools\/call"` is `tools/call`, `"\u0065cho"` is
//! `echo`), because every conforming parser decodes them the same way; the
//! decision is then taken on the decoded text, which is what the server sees.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of arrays and objects accepted. serde_json itself stops at
/// 128; MCP messages are shallow, so a lower bound costs nothing and keeps
/// recursion well inside a wasm stack.
pub const MAX_DEPTH: usize = 64;

/// Why a payload was refused. The message is safe to return to a client: it
/// never quotes the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("body is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("body starts with a byte-order mark; send plain UTF-8 JSON")]
    ByteOrderMark,
    #[error(
        "duplicate key {key:?} in a JSON object; parsers disagree on which one wins, so it is refused"
    )]
    DuplicateKey { key: String },
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("invalid JSON at line {line}, column {column}: {reason}")]
    Syntax {
        line: usize,
        column: usize,
        reason: String,
    },
}

/// Parses `bytes` as one JSON value, refusing the ambiguous inputs listed in
/// the module documentation.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError::ByteOrderMark);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| JsonError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictSeed { depth: 0 }
        .deserialize(&mut de)
        .map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(value)
}

/// Marker prefixes that let [`classify`] recover our own errors from the
/// `serde_json::Error` they travel inside.
const DUP_MARK: &str = "\u{1}portcullis-duplicate-key:";
const DEPTH_MARK: &str = "\u{1}portcullis-too-deep";

fn classify(err: serde_json::Error) -> JsonError {
    let text = err.to_string();
    if let Some(rest) = text.strip_prefix(DUP_MARK) {
        // serde_json appends " at line L column C"; the key is what precedes it.
        let key = rest
            .rsplit_once(" at line ")
            .map(|(k, _)| k)
            .unwrap_or(rest)
            .to_string();
        return JsonError::DuplicateKey { key };
    }
    if text.starts_with(DEPTH_MARK) {
        return JsonError::TooDeep;
    }
    let reason = text
        .rsplit_once(" at line ")
        .map(|(r, _)| r.to_string())
        .unwrap_or(text);
    JsonError::Syntax {
        line: err.line(),
        column: err.column(),
        reason,
    }
}

struct StrictSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

struct StrictVisitor {
    depth: usize,
}

impl StrictVisitor {
    fn deeper<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth.saturating_add(1);
        if depth > MAX_DEPTH {
            return Err(E::custom(DEPTH_MARK));
        }
        Ok(depth)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.deeper()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed { depth })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.deeper()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUP_MARK}{key}")));
            }
            let value = map.next_value_seed(StrictSeed { depth })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Serialises `value` with object keys sorted, recursively: the stable form
/// hashed into audit records and bundle versions, so that two documents that
/// differ only in key order hash alike.
pub fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Writes U+2028, U+2029 and U+0085 in a serialised JSON text as the escapes
/// `\u2028`, `\u2029` and `\u0085`.
///
/// serde_json (like `JSON.stringify` and pydantic) writes them raw, which is
/// valid JSON; but Python's `str.splitlines()` (httpx's `LineDecoder`,
/// `httpx2/_decoders.py:401`, which line-oriented SSE readers such as
/// httpx-sse before 0.4.1 used) and JavaScript source parsers before ES2019
/// read them as line breaks. In a valid JSON text they can only sit inside
/// strings (they are not JSON whitespace), where the escape denotes the same
/// character, so the value is unchanged. Use it whenever a message is
/// re-serialised for a client ([`to_client_string`]); `json` must be a JSON
/// text, or the result may differ from it.
pub fn escape_line_separators(json: &str) -> Cow<'_, str> {
    const SEPARATORS: [char; 3] = ['\u{85}', '\u{2028}', '\u{2029}'];
    if !json.contains(SEPARATORS) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '\u{85}' => out.push_str("\\u0085"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `value` serialised as serde_json does, with the line separators escaped
/// ([`escape_line_separators`]): the text to send a client.
pub fn to_client_string(value: &Value) -> String {
    let text = value.to_string();
    match escape_line_separators(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json_and_decodes_escapes() {
        let v = parse_strict(br#"{"method":"tools\/call","params":{"name":"\u0065cho"}}"#).unwrap();
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["name"], "echo");
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey { key: "a".into() })
        );
        assert_eq!(
            parse_strict(br#"{"params":{"name":"echo","name":"rm"}}"#),
            Err(JsonError::DuplicateKey { key: "name".into() })
        );
        // An escaped spelling of the same key is the same key.
        assert_eq!(
            parse_strict(br#"{"name":"echo","n\u0061me":"rm"}"#),
            Err(JsonError::DuplicateKey { key: "name".into() })
        );
    }

    #[test]
    fn refuses_non_utf8_bom_and_lone_surrogates() {
        assert_eq!(
            parse_strict(b"{\"a\":\"\xff\"}"),
            Err(JsonError::NotUtf8 { offset: 6 })
        );
        assert_eq!(
            parse_strict(b"\xEF\xBB\xBF{}"),
            Err(JsonError::ByteOrderMark)
        );
        assert!(matches!(
            parse_strict(br#"{"a":"\ud800"}"#),
            Err(JsonError::Syntax { .. })
        ));
    }

    #[test]
    fn refuses_trailing_content_and_deep_nesting() {
        assert!(matches!(
            parse_strict(br#"{} {}"#),
            Err(JsonError::Syntax { .. })
        ));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse_strict(deep.as_bytes()), Err(JsonError::TooDeep));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse_strict(ok.as_bytes()).is_ok());
    }

    #[test]
    fn canonical_form_sorts_keys() {
        let a = parse_strict(br#"{"b":1,"a":{"d":[1,2],"c":"x"}}"#).unwrap();
        assert_eq!(canonical_string(&a), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }

    /// serde_json leaves U+2028, U+2029 and U+0085 raw inside strings; the
    /// escaped text is the same JSON value with no character a line
    /// splitter (Python `str.splitlines()`) breaks at.
    #[test]
    fn line_separators_are_escaped_without_changing_the_value() {
        let v = serde_json::json!({"t": "a\u{2028}b\u{2029}c\u{85}d\n", "\u{2028}": 1});
        let raw = v.to_string();
        assert!(raw.contains('\u{2028}'), "serde_json writes it raw");
        let text = to_client_string(&v);
        assert!(!text.contains(['\u{85}', '\u{2028}', '\u{2029}']));
        assert!(text.contains("a\\u2028b\\u2029c\\u0085d"));
        assert_eq!(parse_strict(text.as_bytes()).unwrap(), v);
        assert!(matches!(
            escape_line_separators("{\"a\":1}"),
            Cow::Borrowed(_)
        ));
    }
}

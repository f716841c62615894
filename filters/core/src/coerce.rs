//! What lax SDK servers make of tool-call arguments.
//!
//! Policy rules match a tool call's `arguments` with JSON Schema over the raw
//! JSON, but a server does not necessarily see that JSON. The Python MCP SDK
//! (`MCPServer`/FastMCP, `mcp/server/mcpserver/utilities/func_metadata.py`)
//! validates arguments with a pydantic model in lax mode
//! (`arg_model.model_validate(...)`), so `{"amount": "2500"}` reaches a
//! `amount: float` parameter as `2500.0`, and a `forbid` on `amount > 100`
//! written against numbers is skipped by quoting the number. The TypeScript
//! SDK validates with zod, which coerces nothing unless a schema says
//! `z.coerce`, so it reads arguments as sent.
//!
//! [`lax_variants`] lists the other readings of an `arguments` value that a
//! lax server could act on, one per [`Coercion`] kind, each applied to every
//! value of its kind everywhere in the document (nested objects and arrays
//! are walked, down to [`crate::json::MAX_DEPTH`]). A variant is produced
//! only if it differs from the raw value and from the variants before it, so
//! ordinary arguments have none, and there are never more than
//! [`MAX_VARIANTS`].
//!
//! # How the policy engine uses them
//!
//! A rule that *restricts* (`forbid`, `requireApproval`) matches if the raw
//! arguments **or any** variant match: the server may act on any of them. A
//! rule that *permits* matches only if the raw arguments **and every**
//! variant match. Both err towards governing the call. The price is paid by
//! permitting rules with typed schemas: a string that merely looks like a
//! number or a boolean (`"no"`, `"1"`) and every boolean (read as 0/1) give
//! variants of another type, which a `type: string` or `const: true` does
//! not accept; such rules should accept both spellings (`type: [string,
//! number]`), or the engine should pick the one reading the tool's
//! `inputSchema` implies.
//!
//! # The rules (pydantic-core 2.50.5, `src/input/shared.rs`,
//! `src/input/input_python.rs`; checked against the 2.50.5 wheel)
//!
//! The SDK validates the Python objects `json.loads` made of the arguments
//! (Python mode); for strings, numbers and booleans the lax rules are the
//! same as pydantic's JSON mode (`src/input/input_json.rs`).
//!
//! Numbers ([`lax_number`]), for an `int` field (`str_as_int`,
//! `clean_int_str`, `strip_leading_zeros`):
//! * surrounding Unicode whitespace is trimmed (`" 2500 "`, `"2500\u{a0}"`);
//! * one leading `+` or `-` (`"+2500"`; not `"+-1"`, `"--1"`);
//! * leading zeros, and underscores among them (`"02500"`, `"0_0"`);
//! * a fraction of zeros (`"2500.0"`, `"1.00 "`);
//! * single underscores between digits (`"1_000"`; not `"_1"`, `"1_"`,
//!   `"1__0"`);
//! * decimal digits only: no `0x`/`0o`/`0b`, no `1,000`, no non-ASCII digits,
//!   no exponent.
//!
//! For a `float` field (`str_as_float`): Rust's `f64::from_str` on the
//! trimmed string (exponents `"2.5e3"`, `".5"`, `"5."`, `"inf"`,
//! `"-Infinity"`, `"nan"`, any case), else, untrimmed, with its underscores
//! removed under the rule above (`"1_000.5"`, `"1e1_0"`). An infinity becomes
//! `±f64::MAX` here (JSON has no infinity; the stand-in compares the same way
//! with every finite bound); a NaN string has no numeric variant (NaN fails
//! every comparison anyway).
//!
//! Booleans become 0 and 1 for a number field.
//!
//! Booleans ([`lax_bool`], `str_as_bool`): exactly `"0"`, `"1"`, and in any
//! ASCII case `"f"`, `"n"`, `"no"`, `"off"`, `"false"` / `"t"`, `"y"`,
//! `"on"`, `"yes"`, `"true"`; no trimming (`" true"` is refused). The numbers
//! 0 and 1 (and 0.0 and 1.0) become `false` and `true` (`int_as_bool`).
//!
//! JSON in strings (`FuncMetadata.pre_parse_json`): before validation, the
//! SDK `json.loads` every top-level string argument whose parameter is not
//! annotated `str`, and keeps the result if it is an array, an object or
//! `null` (`"[\"a\"]"` becomes `["a"]`). Pydantic then validates the parsed
//! value laxly, hence [`Coercion::JsonStringsMixed`].
//!
//! # Not covered
//!
//! A variant applies one kind everywhere, so a call that needs two kinds in
//! one reading (a bool field sent `"1"` and a number field sent `true`) is
//! covered only where [`Coercion::Mixed`] happens to read it that way; the
//! exact reading needs the tool's input schema. Also not covered: object
//! keys (`dict[int, ...]` parses them), `Decimal`, date, enum and other
//! types' lax parsing, and Python's `json.loads` extensions (`NaN`,
//! `Infinity`) inside JSON strings.

use crate::json::MAX_DEPTH;
use serde_json::{Map, Number, Value};

/// Most variants [`lax_variants`] returns.
pub const MAX_VARIANTS: usize = 5;

/// One way a lax server reads arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coercion {
    /// Every string [`lax_number`] accepts is that number; booleans are 0/1
    /// (a server with number fields).
    Numeric,
    /// Every string [`lax_bool`] accepts is that boolean; the numbers 0 and 1
    /// are `false`/`true` (a server with boolean fields).
    Boolean,
    /// Every string is a number if [`lax_number`] accepts it, else a boolean
    /// if [`lax_bool`] does; other values stay (number and boolean fields
    /// together, each sent as a string).
    Mixed,
    /// Top-level strings that hold a JSON array, object or `null` are that
    /// value (the SDK's `pre_parse_json`).
    JsonStrings,
    /// [`Coercion::JsonStrings`], then [`Coercion::Mixed`].
    JsonStringsMixed,
}

impl Coercion {
    pub const ALL: [Coercion; MAX_VARIANTS] = [
        Coercion::Numeric,
        Coercion::Boolean,
        Coercion::Mixed,
        Coercion::JsonStrings,
        Coercion::JsonStringsMixed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Coercion::Numeric => "numeric",
            Coercion::Boolean => "boolean",
            Coercion::Mixed => "mixed",
            Coercion::JsonStrings => "jsonStrings",
            Coercion::JsonStringsMixed => "jsonStringsMixed",
        }
    }

    /// `value` read this way.
    pub fn apply(self, value: &Value) -> Value {
        match self {
            Coercion::Numeric => walk(value, 0, &numeric),
            Coercion::Boolean => walk(value, 0, &boolean),
            Coercion::Mixed => walk(value, 0, &mixed),
            Coercion::JsonStrings => json_strings(value),
            Coercion::JsonStringsMixed => walk(&json_strings(value), 0, &mixed),
        }
    }
}

/// The readings of `arguments` a lax server could act on besides the raw
/// one: distinct, each different from `arguments`, at most
/// [`MAX_VARIANTS`]. See the module documentation for how to use them.
pub fn lax_variants(arguments: &Value) -> Vec<Value> {
    lax_variants_by_kind(arguments)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// As [`lax_variants`], with the kind of each (for audit reasons).
pub fn lax_variants_by_kind(arguments: &Value) -> Vec<(Coercion, Value)> {
    let mut out: Vec<(Coercion, Value)> = Vec::new();
    for kind in Coercion::ALL {
        let v = kind.apply(arguments);
        if v != *arguments && !out.iter().any(|(_, o)| *o == v) {
            out.push((kind, v));
        }
    }
    out
}

fn walk(value: &Value, depth: usize, f: &dyn Fn(&Value) -> Option<Value>) -> Value {
    if depth > MAX_DEPTH {
        return value.clone();
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), walk(v, depth + 1, f)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, depth + 1, f)).collect()),
        scalar => f(scalar).unwrap_or_else(|| scalar.clone()),
    }
}

fn numeric(value: &Value) -> Option<Value> {
    match value {
        Value::String(s) => lax_number(s).map(Value::Number),
        Value::Bool(b) => Some(Value::from(u8::from(*b))),
        _ => None,
    }
}

fn boolean(value: &Value) -> Option<Value> {
    match value {
        Value::String(s) => lax_bool(s).map(Value::Bool),
        Value::Number(n) => {
            let x = n.as_f64()?;
            if x == 0.0 {
                Some(Value::Bool(false))
            } else if x == 1.0 {
                Some(Value::Bool(true))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn mixed(value: &Value) -> Option<Value> {
    match value {
        Value::String(s) => lax_number(s)
            .map(Value::Number)
            .or_else(|| lax_bool(s).map(Value::Bool)),
        _ => None,
    }
}

fn json_strings(value: &Value) -> Value {
    let Value::Object(map) = value else {
        return value.clone();
    };
    let parsed: Map<String, Value> = map
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(p @ (Value::Array(_) | Value::Object(_) | Value::Null)) => p,
                    _ => v.clone(),
                },
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(parsed)
}

/// The number pydantic's lax `int` or `float` validation reads in `text`, if
/// either accepts it: the integer if `int` does, else the float (an
/// infinity as `±f64::MAX`; NaN as nothing).
pub fn lax_number(text: &str) -> Option<Number> {
    if let Some(n) = lax_int(text) {
        return Some(n);
    }
    let x = lax_float(text)?;
    if x.is_nan() {
        return None;
    }
    let x = if x == f64::INFINITY {
        f64::MAX
    } else if x == f64::NEG_INFINITY {
        f64::MIN
    } else {
        x
    };
    // An integral float is the integer, as JSON Schema compares them.
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        return Some(Number::from(x as i64));
    }
    Number::from_f64(x)
}

/// The boolean pydantic's lax `bool` validation reads in `text`
/// (`str_as_bool`).
pub fn lax_bool(text: &str) -> Option<bool> {
    const FALSE: [&str; 5] = ["f", "n", "no", "off", "false"];
    const TRUE: [&str; 5] = ["t", "y", "on", "yes", "true"];
    if text == "0" || FALSE.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        Some(false)
    } else if text == "1" || TRUE.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        Some(true)
    } else {
        None
    }
}

/// pydantic-core's `str_as_int`: the text as a JSON integer, else cleaned by
/// `clean_int_str` and then a JSON integer.
fn lax_int(text: &str) -> Option<Number> {
    if let Some(n) = json_int(text) {
        return Some(n);
    }
    json_int(&clean_int_str(text)?)
}

/// `-?(0|[1-9][0-9]*)`, at most 4300 digits (CPython's and jiter's bound).
fn json_int(text: &str) -> Option<Number> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let ok = !digits.is_empty()
        && digits.len() <= 4300
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !ok {
        return None;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(Number::from(u));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

/// pydantic-core's `clean_int_str`.
fn clean_int_str(text: &str) -> Option<String> {
    let len_before = text.len();
    let mut s = text.trim();
    if let Some(rest) = s.strip_prefix('+') {
        if rest.starts_with('-') {
            return None;
        }
        s = rest;
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        if rest.starts_with(['-', '+']) {
            return None;
        }
        negative = true;
        s = rest;
    }
    s = strip_leading_zeros(s)?;
    if let Some((whole, fraction)) = s.split_once('.')
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b == b'0')
    {
        s = whole;
    }
    let sign = if negative { "-" } else { "" };
    if let Some(stripped) = strip_underscores(s) {
        return Some(format!("{sign}{stripped}"));
    }
    if len_before == s.len() {
        return None;
    }
    Some(format!("{sign}{s}"))
}

/// pydantic-core's `strip_leading_zeros`.
fn strip_leading_zeros(s: &str) -> Option<&str> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '0')) => {}
        Some((_, c)) if c.is_ascii_digit() || c == '-' => return Some(s),
        _ => return None,
    }
    for (i, c) in chars {
        match c {
            '0' | '_' => {}
            '1'..='9' | '-' => return s.get(i..),
            // Keep the zero before the point.
            '.' => return s.get(i.saturating_sub(1)..),
            _ => return None,
        }
    }
    s.get(s.len().saturating_sub(1)..)
}

/// pydantic-core's `strip_underscores`: `None` when there are none, or when
/// one leads, trails or doubles.
fn strip_underscores(s: &str) -> Option<String> {
    if s.starts_with('_') || s.ends_with('_') || !s.contains('_') || s.contains("__") {
        None
    } else {
        Some(s.replace('_', ""))
    }
}

/// pydantic-core's `str_as_float`.
fn lax_float(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .or_else(|| strip_underscores(text)?.parse::<f64>().ok())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use serde_json::json;

    enum N {
        None,
        Int(i128),
        Float(f64),
    }

    /// What pydantic 2.14.4 / pydantic-core 2.50.5 make of each string as
    /// `int` (else `float`) and as `bool`, generated with
    /// `TypeAdapter(int|float|bool).validate_python(text)`.
    #[rustfmt::skip]
    const PYDANTIC: &[(&str, N, Option<bool>)] = &[
        ("2500", N::Int(2500i128), None),
        (" 2500 ", N::Int(2500i128), None),
        ("\t2500\n", N::Int(2500i128), None),
        ("2_500", N::Int(2500i128), None),
        ("_2500", N::None, None),
        ("2__500", N::None, None),
        ("+2500", N::Int(2500i128), None),
        ("-2500", N::Int(-2500i128), None),
        ("+-1", N::None, None),
        ("-+1", N::None, None),
        ("--1", N::None, None),
        ("02500", N::Int(2500i128), None),
        ("00", N::Int(0i128), None),
        ("0_0", N::Int(0i128), None),
        ("2500.0", N::Int(2500i128), None),
        ("2500.00", N::Int(2500i128), None),
        ("2500.5", N::Float(2500.5), None),
        ("2.5e3", N::Float(2500.0), None),
        ("2.5E3", N::Float(2500.0), None),
        ("1e3", N::Float(1000.0), None),
        (" 1e3 ", N::Float(1000.0), None),
        ("1_000.5", N::Float(1000.5), None),
        ("1_000.0", N::Int(1000i128), None),
        (".5", N::Float(0.5), None),
        ("5.", N::Float(5.0), None),
        ("0x10", N::None, None),
        ("0o10", N::None, None),
        ("0b1", N::None, None),
        ("inf", N::Float(f64::MAX), None),
        ("-inf", N::Float(f64::MIN), None),
        ("+inf", N::Float(f64::MAX), None),
        ("Infinity", N::Float(f64::MAX), None),
        ("INF", N::Float(f64::MAX), None),
        ("infinity", N::Float(f64::MAX), None),
        ("nan", N::None, None),
        ("NaN", N::None, None),
        ("-nan", N::None, None),
        ("1,000", N::None, None),
        ("\u{661}\u{662}\u{663}", N::None, None),
        ("\u{b2}", N::None, None),
        ("2500\u{a0}", N::Int(2500i128), None),
        ("\u{2003}2500", N::Int(2500i128), None),
        ("", N::None, None),
        (" ", N::None, None),
        ("true", N::None, Some(true)),
        ("True", N::None, Some(true)),
        ("TRUE", N::None, Some(true)),
        ("yes", N::None, Some(true)),
        ("YES", N::None, Some(true)),
        ("on", N::None, Some(true)),
        ("ON", N::None, Some(true)),
        ("y", N::None, Some(true)),
        ("Y", N::None, Some(true)),
        ("t", N::None, Some(true)),
        ("T", N::None, Some(true)),
        ("1", N::Int(1i128), Some(true)),
        ("0", N::Int(0i128), Some(false)),
        ("f", N::None, Some(false)),
        ("F", N::None, Some(false)),
        ("n", N::None, Some(false)),
        ("N", N::None, Some(false)),
        ("no", N::None, Some(false)),
        ("No", N::None, Some(false)),
        ("off", N::None, Some(false)),
        ("OFF", N::None, Some(false)),
        ("false", N::None, Some(false)),
        ("False", N::None, Some(false)),
        (" true", N::None, None),
        ("true ", N::None, None),
        ("tRuE", N::None, Some(true)),
        ("1.0", N::Int(1i128), None),
        ("0.0", N::Int(0i128), None),
        ("01", N::Int(1i128), None),
        ("00001", N::Int(1i128), None),
        ("1e309", N::Float(f64::MAX), None),
        ("-1e309", N::Float(f64::MIN), None),
        ("-0", N::Int(0i128), None),
        ("+0", N::Int(0i128), None),
        ("0.5e1", N::Float(5.0), None),
        ("25e2", N::Float(2500.0), None),
        ("999999999999999999999999999999", N::Float(1e+30), None),
        ("1_2_3", N::Int(123i128), None),
        ("12_", N::None, None),
        ("-1_000", N::Int(-1000i128), None),
        (" 1_000.5 ", N::None, None),
        ("1_000.5 ", N::None, None),
        (" 2_500 ", N::Int(2500i128), None),
        ("_1", N::None, None),
        ("1__0", N::None, None),
        ("1_", N::None, None),
        ("1_e3", N::Float(1000.0), None),
        ("1e1_0", N::Float(10000000000.0), None),
        ("1.5_0", N::Float(1.5), None),
        ("+.5", N::Float(0.5), None),
        ("-.5", N::Float(-0.5), None),
        ("1e", N::None, None),
        ("e3", N::None, None),
        ("0_1", N::Int(1i128), None),
        ("00.0", N::Int(0i128), None),
        ("-00.0", N::Int(0i128), None),
        ("-0_1", N::Int(-1i128), None),
        ("0.", N::Float(0.0), None),
        ("1.", N::Float(1.0), None),
        ("1.00 ", N::Int(1i128), None),
        ("+1.0", N::Int(1i128), None),
        ("1.50", N::Float(1.5), None),
        ("1e+3", N::Float(1000.0), None),
        ("1E-3", N::Float(0.001), None),
        ("infinit", N::None, None),
        ("+nan", N::None, None),
        ("inFinITY", N::Float(f64::MAX), None),
        ("\u{200b}1", N::None, None),
        ("0x1p3", N::None, None),
        ("1_0.0_0", N::Float(10.0), None),
        ("1 0", N::None, None),
        ("9223372036854775807", N::Int(9223372036854775807i128), None),
        ("9223372036854775808", N::Int(9223372036854775808i128), None),
        ("18446744073709551616", N::Float(1.8446744073709552e+19), None),
        ("-9223372036854775809", N::Float(-9.223372036854776e+18), None),
        ("0.1", N::Float(0.1), None),
        ("-0.0", N::Int(0i128), None),
        ("1.0e0", N::Float(1.0), None),
        ("ab", N::None, None),
        ("2500abc", N::None, None),
        ("yes ", N::None, None),
        ("1.", N::Float(1.0), None),
        ("0_", N::None, None),
        ("0._0", N::Float(0.0), None),
        ("00_1.0_0", N::Float(1.0), None),
    ];

    #[test]
    fn strings_read_as_pydantic_reads_them() {
        for (text, number, boolean) in PYDANTIC {
            let got = lax_number(text);
            match number {
                N::None => assert_eq!(got, None, "{text:?}"),
                N::Int(i) => {
                    let got = got.unwrap_or_else(|| panic!("{text:?} is {i}"));
                    let as_int = got
                        .as_i64()
                        .map(i128::from)
                        .or_else(|| got.as_u64().map(i128::from));
                    assert_eq!(as_int, Some(*i), "{text:?}");
                }
                N::Float(f) => {
                    let got = got.unwrap_or_else(|| panic!("{text:?} is {f}"));
                    assert_eq!(got.as_f64(), Some(*f), "{text:?}");
                }
            }
            assert_eq!(lax_bool(text), *boolean, "{text:?}");
        }
    }

    #[test]
    fn ordinary_arguments_have_no_variants() {
        // (Booleans and the numbers 0 and 1 do have variants: a lax server
        // reads them as numbers and booleans.)
        for v in [
            json!({}),
            json!({"text": "hello", "n": 3, "x": null}),
            json!({"nested": {"list": ["a", 2.5, {"deep": "b"}]}}),
            json!("plain"),
            json!([]),
        ] {
            assert!(lax_variants(&v).is_empty(), "{v}");
        }
    }

    #[test]
    fn quoted_numbers_are_read_as_numbers() {
        let raw = json!({"amount": "2500", "note": "pay", "nested": [{"v": " 2.5e3 "}]});
        let variants = lax_variants_by_kind(&raw);
        let (kind, numeric) = &variants[0];
        assert_eq!(*kind, Coercion::Numeric);
        assert_eq!(numeric["amount"], json!(2500));
        assert_eq!(numeric["note"], json!("pay"));
        assert_eq!(numeric["nested"][0]["v"], json!(2500));
        // Mixed reads the same here, so it is not repeated.
        assert_eq!(variants.len(), 1, "{variants:?}");
    }

    #[test]
    fn each_kind_once_and_only_when_it_changes_something() {
        let raw = json!({"amount": "2_500", "confirm": "yes", "flag": true, "one": 1, "s": "1"});
        let variants = lax_variants_by_kind(&raw);
        let kinds: Vec<Coercion> = variants.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [Coercion::Numeric, Coercion::Boolean, Coercion::Mixed]
        );
        assert_eq!(
            variants[0].1,
            json!({"amount": 2500, "confirm": "yes", "flag": 1, "one": 1, "s": 1})
        );
        assert_eq!(
            variants[1].1,
            json!({"amount": "2_500", "confirm": true, "flag": true, "one": true, "s": true})
        );
        // A number field and a bool field sent as strings, read together.
        assert_eq!(
            variants[2].1,
            json!({"amount": 2500, "confirm": true, "flag": true, "one": 1, "s": 1})
        );
        assert!(variants.len() <= MAX_VARIANTS);
    }

    #[test]
    fn json_in_top_level_strings_is_parsed_as_the_sdk_does() {
        let raw = json!({
            "to": "[\"ceo@example.com\", \"2500\"]",
            "opts": " {\"force\": \"true\"} ",
            "gone": "null",
            "n": "42",
            "word": "true",
            "bad": "[1,",
            "deep": {"inner": "[1]"}
        });
        let variants = lax_variants_by_kind(&raw);
        let json = &variants
            .iter()
            .find(|(k, _)| *k == Coercion::JsonStrings)
            .unwrap()
            .1;
        assert_eq!(json["to"], json!(["ceo@example.com", "2500"]));
        assert_eq!(json["opts"], json!({"force": "true"}));
        assert_eq!(json["gone"], Value::Null);
        // Scalars are left for pydantic; only the top level is pre-parsed.
        assert_eq!(json["n"], json!("42"));
        assert_eq!(json["word"], json!("true"));
        assert_eq!(json["bad"], json!("[1,"));
        assert_eq!(json["deep"], json!({"inner": "[1]"}));
        let both = &variants
            .iter()
            .find(|(k, _)| *k == Coercion::JsonStringsMixed)
            .unwrap()
            .1;
        assert_eq!(both["to"], json!(["ceo@example.com", 2500]));
        assert_eq!(both["opts"], json!({"force": true}));
        assert_eq!(both["n"], json!(42));
        assert_eq!(variants.len(), MAX_VARIANTS);
    }

    #[test]
    fn infinities_and_big_numbers_keep_their_order() {
        let v = lax_variants(&json!({"amount": "inf", "neg": "-Infinity", "nan": "nan"}));
        assert_eq!(v[0]["amount"], json!(f64::MAX));
        assert_eq!(v[0]["neg"], json!(f64::MIN));
        assert_eq!(v[0]["nan"], json!("nan"));
        let v = lax_variants(&json!({"a": "99999999999999999999"}));
        assert!(v[0]["a"].as_f64().unwrap() > 9.9e19);
    }

    #[test]
    fn numbers_zero_and_one_are_booleans_for_a_bool_field() {
        let v = lax_variants_by_kind(&json!({"a": 0, "b": 1.0, "c": 2, "d": -0.0}));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, Coercion::Boolean);
        assert_eq!(v[0].1, json!({"a": false, "b": true, "c": 2, "d": false}));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = json!("5");
        for _ in 0..(MAX_DEPTH + 10) {
            deep = json!([deep]);
        }
        let variants = lax_variants(&json!({"d": deep, "top": "5"}));
        assert_eq!(variants[0]["top"], json!(5));
        let mut inner = &variants[0]["d"];
        while let Value::Array(items) = inner {
            inner = &items[0];
        }
        // Past MAX_DEPTH the value is left as sent.
        assert_eq!(*inner, json!("5"));
    }
}

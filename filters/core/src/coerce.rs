//! What lax SDK servers make of tool-call arguments (interim; the full
//! pydantic-faithful rules land with the coercion work).

use serde_json::Value;

/// The readings of `value` a lax server could act on, each differing from
/// it: numbers parsed from strings (and booleans as 0/1), and booleans
/// parsed from strings.
pub fn lax_variants(value: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for f in [numeric as fn(&Value) -> Option<Value>, boolean] {
        let v = map(value, f, 0);
        if &v != value {
            out.push(v);
        }
    }
    out
}

fn map(value: &Value, f: fn(&Value) -> Option<Value>, depth: usize) -> Value {
    if depth > crate::json::MAX_DEPTH {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| map(v, f, depth + 1)).collect()),
        Value::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| (k.clone(), map(v, f, depth + 1)))
                .collect(),
        ),
        other => f(other).unwrap_or_else(|| other.clone()),
    }
}

fn numeric(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty()
                || t.chars()
                    .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            {
                return None;
            }
            let n: f64 = t.replace('_', "").parse().ok()?;
            serde_json::Number::from_f64(n).map(Value::Number)
        }
        Value::Bool(b) => Some(Value::from(u8::from(*b))),
        _ => None,
    }
}

fn boolean(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Some(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "off" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

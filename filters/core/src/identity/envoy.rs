//! Reading the payload Envoy's `jwt_authn` filter verified.
//!
//! With `payload_in_metadata: <key>`, `jwt_authn` stores the verified JWT
//! payload in the request's dynamic metadata under
//! `envoy.filters.http.jwt_authn`. A proxy-wasm filter reads it with
//! `get_property(["metadata", "filter_metadata",
//! "envoy.filters.http.jwt_authn", <key>])`, and Envoy answers with the
//! value serialised as protobuf: a `google.protobuf.Struct`, or a
//! `google.protobuf.Value` holding one, depending on the path. Hosts and
//! tests may also hand over plain JSON. [`payload_claims`] accepts all
//! three, so the caller need not know which one its host produces.
//!
//! The decoder is a few dozen lines rather than a protobuf dependency: it
//! knows exactly the four well-known messages involved, refuses anything
//! else, and bounds nesting like [`crate::json::MAX_DEPTH`].

use super::error::IdentityError;
use serde_json::{Map, Number, Value};

/// The claims in a payload: JSON text, or a protobuf `Struct` or `Value`.
pub fn payload_claims(bytes: &[u8]) -> Result<Map<String, Value>, IdentityError> {
    // Protobuf first: a Struct opens with 0x0a (field 1, length-delimited),
    // which is also '\n', so JSON with a leading newline falls through.
    let proto = match bytes.first() {
        Some(0x0a) => decode_struct(bytes, 0),
        // Value: field 5 (struct_value), length-delimited.
        Some(0x2a) => decode_value(bytes, 0),
        _ => None,
    };
    let value = match proto {
        Some(v) => v,
        None => crate::json::parse_strict(bytes).map_err(|_| IdentityError::Malformed)?,
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(IdentityError::Malformed),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// (field number, wire type).
    fn tag(&mut self) -> Option<(u64, u8)> {
        let t = self.varint()?;
        Some((t >> 3, u8::try_from(t & 7).ok()?))
    }

    fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.len_delimited().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            _ => None,
        }
    }
}

fn decode_struct(bytes: &[u8], depth: usize) -> Option<Value> {
    if depth > crate::json::MAX_DEPTH {
        return None;
    }
    let mut r = Reader { bytes, pos: 0 };
    let mut map = Map::new();
    while !r.done() {
        match r.tag()? {
            (1, 2) => {
                let entry = r.len_delimited()?;
                let (k, v) = decode_entry(entry, depth)?;
                // Duplicate keys are refused, as in JSON.
                if map.insert(k, v).is_some() {
                    return None;
                }
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(Value::Object(map))
}

fn decode_entry(bytes: &[u8], depth: usize) -> Option<(String, Value)> {
    let mut r = Reader { bytes, pos: 0 };
    let (mut key, mut value) = (None, Value::Null);
    while !r.done() {
        match r.tag()? {
            (1, 2) => key = Some(String::from_utf8(r.len_delimited()?.to_vec()).ok()?),
            (2, 2) => value = decode_value(r.len_delimited()?, depth + 1)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((key?, value))
}

fn decode_value(bytes: &[u8], depth: usize) -> Option<Value> {
    if depth > crate::json::MAX_DEPTH {
        return None;
    }
    let mut r = Reader { bytes, pos: 0 };
    let mut value = Value::Null;
    while !r.done() {
        value = match r.tag()? {
            (1, 0) => {
                r.varint()?;
                Value::Null
            }
            (2, 1) => {
                let raw = <[u8; 8]>::try_from(r.take(8)?).ok()?;
                let f = f64::from_le_bytes(raw);
                // Whole numbers (all NumericDates) stay integers.
                if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Value::Number(Number::from(f as u64))
                } else {
                    Value::Number(Number::from_f64(f)?)
                }
            }
            (3, 2) => Value::String(String::from_utf8(r.len_delimited()?.to_vec()).ok()?),
            (4, 0) => Value::Bool(r.varint()? != 0),
            (5, 2) => decode_struct(r.len_delimited()?, depth + 1)?,
            (6, 2) => decode_list(r.len_delimited()?, depth + 1)?,
            (_, wire) => {
                r.skip(wire)?;
                continue;
            }
        };
    }
    Some(value)
}

fn decode_list(bytes: &[u8], depth: usize) -> Option<Value> {
    if depth > crate::json::MAX_DEPTH {
        return None;
    }
    let mut r = Reader { bytes, pos: 0 };
    let mut items = Vec::new();
    while !r.done() {
        match r.tag()? {
            (1, 2) => items.push(decode_value(r.len_delimited()?, depth + 1)?),
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn field(n: u64, wire: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | wire, out);
        if wire == 2 {
            varint(payload.len() as u64, out);
        }
        out.extend_from_slice(payload);
    }
    fn enc_value(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match v {
            Value::Null => field(1, 0, &[0], &mut out),
            Value::Number(n) => field(2, 1, &n.as_f64().unwrap().to_le_bytes(), &mut out),
            Value::String(s) => field(3, 2, s.as_bytes(), &mut out),
            Value::Bool(b) => field(4, 0, &[u8::from(*b)], &mut out),
            Value::Object(_) => field(5, 2, &enc_struct(v), &mut out),
            Value::Array(items) => {
                let mut list = Vec::new();
                for i in items {
                    field(1, 2, &enc_value(i), &mut list);
                }
                field(6, 2, &list, &mut out);
            }
        }
        out
    }
    fn enc_struct(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in v.as_object().unwrap() {
            let mut entry = Vec::new();
            field(1, 2, k.as_bytes(), &mut entry);
            field(2, 2, &enc_value(v), &mut entry);
            field(1, 2, &entry, &mut out);
        }
        out
    }

    #[test]
    fn struct_value_and_json_agree() {
        let claims = json!({
            "iss": "https://idp", "sub": "alice", "exp": 1_800_000_000u64,
            "aud": ["a", "b"], "act": {"sub": "agent"}, "admin": true, "x": null, "f": 1.5,
        });
        let want = claims.as_object().unwrap().clone();
        assert_eq!(payload_claims(claims.to_string().as_bytes()).unwrap(), want);
        assert_eq!(payload_claims(&enc_struct(&claims)).unwrap(), want);
        assert_eq!(payload_claims(&enc_value(&claims)).unwrap(), want);
        assert_eq!(payload_claims(b"[1]"), Err(IdentityError::Malformed));
        assert_eq!(
            payload_claims(&[0x0a, 0x05, 0x01]),
            Err(IdentityError::Malformed)
        );
        let dup = [
            enc_struct(&json!({"sub": "a"})),
            enc_struct(&json!({"sub": "b"})),
        ]
        .concat();
        assert_eq!(payload_claims(&dup), Err(IdentityError::Malformed));
    }
}

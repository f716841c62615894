//! `json_differential`: `portcullis_core::json::parse_strict` against
//! serde_json.
//!
//! * Whenever the strict parser accepts, `serde_json::from_slice` accepts and
//!   gives the same `Value`.
//! * Whenever serde_json accepts and the strict parser refuses, the refusal
//!   is one that `json.rs` documents, and exactly the one a reference reader
//!   finds first in document order: a duplicate key (the same key, escapes
//!   decoded) or nesting deeper than `MAX_DEPTH`. (A byte-order mark, bytes
//!   that are not UTF-8 and lone surrogates are refused by serde_json too.)
//! * Whenever serde_json refuses, so does the strict parser.
//!
//! The reference reader is serde_json's own deserializer with a visitor
//! that only records the first duplicate key or too-deep container; it does
//! not share the strict parser's code.

use portcullis_core::json::{JsonError, MAX_DEPTH, parse_strict};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// What the reference reader found first in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Anomaly {
    Duplicate(String),
    TooDeep,
}

/// Walks a JSON text with serde_json, recording the first anomaly.
struct Walk<'s> {
    depth: usize,
    found: &'s mut Option<Anomaly>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH && self.found.is_none() {
            *self.found = Some(Anomaly::TooDeep);
        }
        loop {
            let more = seq.next_element_seed(Walk {
                depth,
                found: &mut *self.found,
            })?;
            if more.is_none() {
                return Ok(());
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH && self.found.is_none() {
            *self.found = Some(Anomaly::TooDeep);
        }
        let mut keys: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) && self.found.is_none() {
                *self.found = Some(Anomaly::Duplicate(key.clone()));
            }
            keys.push(key);
            map.next_value_seed(Walk {
                depth,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

/// The first anomaly of a text serde_json accepts.
fn first_anomaly(data: &[u8]) -> Option<Anomaly> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(data);
    Walk {
        depth: 0,
        found: &mut found,
    }
    .deserialize(&mut de)
    .expect("serde_json accepted this text once");
    de.end().expect("and its end");
    found
}

pub fn check(data: &[u8]) {
    let strict = parse_strict(data);
    let loose = serde_json::from_slice::<Value>(data);
    match (&strict, &loose) {
        (Ok(s), Ok(l)) => {
            assert_eq!(s, l, "the strict parser read another value");
            assert_eq!(first_anomaly(data), None, "accepted an ambiguous text");
        }
        (Ok(s), Err(e)) => panic!("strict accepted {s:?}, serde_json refused: {e}"),
        (Err(err), Ok(_)) => {
            let expected = match first_anomaly(data) {
                Some(Anomaly::Duplicate(key)) => JsonError::DuplicateKey { key },
                Some(Anomaly::TooDeep) => JsonError::TooDeep,
                None => panic!("strict refused a text serde_json reads unambiguously: {err:?}"),
            };
            assert_eq!(err, &expected, "not the first documented refusal");
        }
        (Err(_), Err(_)) => {}
    }
}

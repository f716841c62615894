//! `ids`: `portcullis_core::mcp::client_request_ids` and `ids_match` on two
//! arbitrary JSON-RPC ids (the input cut at its first `0xFF` byte, which no
//! JSON text holds; each half read by serde_json, or taken as a string when
//! it is not JSON).
//!
//! Never panics; `ids_match` is symmetric and reflexive; the ids
//! `client_request_ids` gives are ascending, without repeats and at most
//! `MAX_CLIENT_ID`; and two ids that share one of them match.

use portcullis_core::mcp::{MAX_CLIENT_ID, client_id_keys, client_request_ids, ids_match};
use serde_json::Value;

fn value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn check_ids(v: &Value) -> Vec<u64> {
    let ids = client_request_ids(v);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{v}: {ids:?}");
    assert!(ids.iter().all(|k| *k <= MAX_CLIENT_ID), "{v}: {ids:?}");
    assert_eq!(client_id_keys(v).len(), ids.len());
    assert!(ids_match(v, v), "{v} does not match itself");
    ids
}

pub fn check(data: &[u8]) {
    let (a, b) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"1"[..]),
    };
    let (a, b) = (value(a), value(b));
    let (ia, ib) = (check_ids(&a), check_ids(&b));
    let m = ids_match(&a, &b);
    assert_eq!(m, ids_match(&b, &a), "not symmetric: {a} {b}");
    if ia.iter().any(|k| ib.contains(k)) {
        assert!(m, "{a} and {b} share a client id but do not match");
    }
}

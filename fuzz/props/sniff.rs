//! `sniff`: `portcullis_core::sniff::could_be_jsonrpc` on arbitrary bytes.
//!
//! Never panics; and it over-approximates as `sniff.rs` documents: when
//! serde_json reads the bytes as an object, or arrays holding one at any
//! depth (every enclosing container an array), that has a `jsonrpc` or a
//! `method` member, `could_be_jsonrpc` is true.

use portcullis_core::sniff::could_be_jsonrpc;
use serde_json::Value;

/// Whether `v` is an object with a `jsonrpc` or `method` member, or an
/// array holding one (through arrays only).
fn has_rpc_member(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("jsonrpc") || m.contains_key("method"),
        Value::Array(items) => items.iter().any(has_rpc_member),
        _ => false,
    }
}

pub fn check(data: &[u8]) {
    let sniffed = could_be_jsonrpc(data);
    if let Ok(v) = serde_json::from_slice::<Value>(data)
        && has_rpc_member(&v)
    {
        assert!(sniffed, "JSON-RPC-like JSON not sniffed: {v}");
    }
}

//! `jsonrpc`: strict JSON, JSON-RPC classification and framing checks on
//! arbitrary bytes: none may panic, and an accepted body must re-serialise to
//! JSON the strict parser accepts again as the same value (no value it builds
//! is unrepresentable).

use portcullis_core::json::parse_strict;
use portcullis_core::mcp::{self, RoutingHeaders};

pub fn check(data: &[u8]) {
    let Ok(value) = parse_strict(data) else {
        return;
    };
    let again = serde_json::to_vec(&value).expect("serialises");
    assert_eq!(parse_strict(&again).expect("round trip"), value);
    if let Ok(envelope) = mcp::classify(&value) {
        for revision in mcp::KNOWN_REVISIONS {
            let _ = mcp::check_framing(revision, &envelope, RoutingHeaders::default());
        }
        let _ = mcp::effective_revision(None, &envelope, &value);
        let _ = mcp::check_unique_ids(&envelope);
    }
}

//! Could a server read a body as JSON-RPC? (placeholder; the full sniffer
//! lands with the client-differential work).

/// Over-approximates: any body mentioning `jsonrpc` in any case, in UTF-8 or
/// in UTF-16.
pub fn could_be_jsonrpc(body: &[u8]) -> bool {
    let ascii: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| *b != 0)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    ascii.windows(7).any(|w| w == b"jsonrpc")
}

//! Proxy-Wasm ABI v0.2.1 constants and the pairs wire format.
//!
//! Kept apart from the host calls so the numbers can be checked against the
//! spec (`abi-versions/v0.2.1/README.md`) and the Rust SDK's `types.rs` in one
//! place.

/// `proxy_result_t` values returned by every host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    BrokenConnection = 11,
    Unimplemented = 12,
}

/// `proxy_buffer_type_t`.
pub mod buffer {
    pub const HTTP_REQUEST_BODY: i32 = 0;
    pub const HTTP_RESPONSE_BODY: i32 = 1;
    pub const DOWNSTREAM_DATA: i32 = 2;
    pub const UPSTREAM_DATA: i32 = 3;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const GRPC_RECEIVE_BUFFER: i32 = 5;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
    pub const CALL_DATA: i32 = 8;
}

/// `proxy_map_type_t`.
pub mod map {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const GRPC_INITIAL_METADATA: i32 = 4;
    pub const GRPC_TRAILING_METADATA: i32 = 5;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// `proxy_stream_type_t`.
pub mod stream {
    pub const REQUEST: i32 = 0;
    pub const RESPONSE: i32 = 1;
    pub const DOWNSTREAM: i32 = 2;
    pub const UPSTREAM: i32 = 3;
}

/// A list of key/value byte pairs, as in header maps and property maps.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Serialises pairs as the ABI wants: `u32 count`, then `count` times
/// `(u32 key_len, u32 value_len)`, then every key and value, each followed by
/// a NUL byte (cpp-host `PairsUtil::marshalPairs`).
pub fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Parses the pairs format; `None` on a malformed buffer (cpp-host
/// `PairsUtil::toPairs` returns an empty list, and the caller then sees no
/// pairs; we report it so the host call can answer `BadArgument`).
pub fn decode_pairs(data: &[u8]) -> Option<Pairs> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = data.get(at..at + 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let n = word(0)?;
    let mut sizes = Vec::with_capacity(n.min(1024));
    let mut at = 4;
    for _ in 0..n {
        sizes.push((word(at)?, word(at + 4)?));
        at += 8;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for (kl, vl) in sizes {
        let k = data.get(at..at + kl)?.to_vec();
        at += kl + 1;
        let v = data.get(at..at + vl)?.to_vec();
        at += vl + 1;
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let p = vec![
            (b":path".to_vec(), b"/".to_vec()),
            (b"a".to_vec(), b"".to_vec()),
        ];
        let enc = encode_pairs(&p);
        assert_eq!(decode_pairs(&enc).unwrap(), p);
        assert!(decode_pairs(&enc[..enc.len() - 3]).is_none());
    }
}

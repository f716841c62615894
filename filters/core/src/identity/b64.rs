//! Strict base64url, the only encoding JOSE uses.
//!
//! RFC 7515 mandates the URL-safe alphabet without padding. Accepting padding,
//! the standard alphabet or non-zero trailing bits would let one token have
//! several spellings, which defeats a cache keyed by the token's hash and is
//! a classic parser differential; so all of them are refused here, in one
//! place, for tokens and JWKs alike.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes canonical, unpadded base64url. `None` on anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    // The engine refuses `=`, `+`, `/` and non-canonical trailing bits.
    URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_padding_alphabet_and_trailing_bits() {
        assert_eq!(decode("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode("YQ=="), None);
        assert_eq!(decode("YR"), None, "non-zero trailing bits");
        assert_eq!(decode("+/+/"), None);
        assert_eq!(decode("-_-_").map(|v| v.len()), Some(3));
        assert_eq!(decode("Y"), None);
    }
}

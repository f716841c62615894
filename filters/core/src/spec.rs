//! Helpers every part of a bundle's specification shares, below the parts
//! that use them: how a field error is located (a JSON pointer relative to
//! the spec), how names and globs are told apart, and how an Ed25519 public
//! key is written. One definition each, so the bundle compiler, identity,
//! policy, signing and approvals agree (they used to keep their own copies,
//! and the key parsers disagreed about URL-safe base64).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

/// A configure-time error: the JSON pointer of the offending field, relative
/// to the spec being compiled, and a message for people.
pub type SpecError = (String, String);

/// Escapes a JSON-pointer segment (`~` → `~0`, `/` → `~1`).
pub fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// `/spec/tools/1/name` → `spec.tools[1].name`.
pub fn pointer_to_field(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push('[');
            out.push_str(&part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

/// The rule for `metadata.name`: a DNS-1123 name (tools that write
/// documents, such as `portcullis pin`, check their names with it too).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "metadata.name {name:?} must be a DNS-1123 name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// Whether a `tools` entry is a pattern rather than one literal name (the
/// metacharacters `GlobSet` knows).
pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '\\'])
}

/// Deserialises `value` as `T`, reporting the failing field as a JSON pointer
/// under `base`.
pub fn from_value_at<T: serde::de::DeserializeOwned>(
    value: Value,
    base: &str,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut pointer = base.to_string();
        for seg in e.path().iter() {
            use serde_path_to_error::Segment;
            match seg {
                Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    pointer.push('/');
                    pointer.push_str(&pointer_segment(key));
                }
                Segment::Unknown => {}
            }
        }
        (pointer, e.into_inner().to_string())
    })
}

/// An Ed25519 public key as 64 hex digits (what `portcullis audit keygen`
/// and `bundle keygen` write to `KEY.pub`) or as base64 of its 32 bytes, in
/// either alphabet, padded or not.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text.as_bytes()).ok())
            .ok_or_else(|| "expected 64 hex digits or base64 of 32 bytes".to_owned())?
    };
    let raw = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("an Ed25519 public key is 32 bytes, this is {}", bytes.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "not an Ed25519 public key".to_owned())
}

/// `s` cut to at most `max` bytes, at a character boundary: for quoting
/// client- or server-chosen text in reasons and records.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// The first 8 bytes of a SHA-256, as hex: how a session id is recorded.
pub fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    hex::encode(digest.get(..8).unwrap_or(&[]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_key_parser_reads_every_spelling() {
        let key = [7u8; 32];
        let pk = ed25519_dalek::SigningKey::from_bytes(&key).verifying_key();
        let raw = pk.to_bytes();
        for text in [
            hex::encode(raw),
            STANDARD.encode(raw),
            STANDARD_NO_PAD.encode(raw),
            URL_SAFE.encode(raw),
            URL_SAFE_NO_PAD.encode(raw),
        ] {
            assert_eq!(parse_public_key(&text).unwrap(), pk, "{text}");
        }
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&STANDARD.encode([1u8; 31])).is_err());
    }

    #[test]
    fn field_errors_and_names() {
        assert_eq!(pointer_to_field("/spec/tools/1/name"), "spec.tools[1].name");
        assert_eq!(pointer_segment("a/b~c"), "a~1b~0c");
        assert!(check_name("good-name.1").is_ok());
        assert!(check_name("Bad").is_err());
        assert!(is_glob("get-*") && !is_glob("get"));
        let r: Result<u8, SpecError> = from_value_at(Value::from("x"), "/spec/n");
        assert_eq!(r.unwrap_err().0, "/spec/n");
    }
}

//! `media`: `portcullis_core::media::parse` on arbitrary text: never
//! panics; when it accepts, the type and subtype are lower-case, and the
//! essence (`type/subtype`) parses again to the same essence, without
//! parameters.

use portcullis_core::media;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = media::parse_utf8(&text);
    let Ok(m) = media::parse(&text) else {
        return;
    };
    let essence = m.essence();
    assert!(
        !essence.bytes().any(|b| b.is_ascii_uppercase()),
        "essence {essence:?} not lower-case"
    );
    let again = media::parse(&essence)
        .unwrap_or_else(|e| panic!("essence {essence:?} of {text:?} is refused: {e}"));
    assert_eq!(again.essence(), essence, "from {text:?}");
}

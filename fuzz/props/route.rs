//! `route`: `portcullis_core::route::Target::parse(authority, path)` on
//! arbitrary text (the authority before the first `\n`, the path after it;
//! without a `\n` the authority is `a`).
//!
//! Never panics; when it accepts (`route.rs`, "The path"):
//! * the canonical path is `*` or starts with `/`, and has no empty segment
//!   (`//`), no `.` or `..` segment, no `;`, `?`, `#` (cut), no `\` (a
//!   separator), no ASCII upper-case letter (folded) and no ASCII control;
//!   a `%` in it is one the request spelled `%25` and is never followed by
//!   two hex digits (double encoding is refused);
//! * every other reading has no `//`, `\`, `;`, `?`, `#`, upper-case ASCII
//!   letter or control either;
//! * idempotence: the canonical host, port and path, written back as a
//!   request (`%` as `%25` and a space as `%20`, since the canonical path is
//!   decoded; an IPv6 host in brackets), parse to the same host, port and
//!   canonical path, with no other reading.

use portcullis_core::route::Target;

fn hex2(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_hexdigit() && b[1].is_ascii_hexdigit()
}

fn check_reading(p: &str, what: &str) {
    assert!(p.starts_with('/'), "{what} {p:?} does not start with /");
    assert!(!p.contains("//"), "{what} {p:?} has //");
    assert!(
        !p.contains([';', '?', '#', '\\']),
        "{what} {p:?} has ; ? # or \\"
    );
    assert!(
        !p.bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_control()),
        "{what} {p:?} has an upper-case letter or a control"
    );
}

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (authority, path) = text.split_once('\n').unwrap_or(("a", &text));
    let Ok(target) = Target::parse(authority, path) else {
        return;
    };
    let canonical = target.path();
    if canonical != "*" {
        check_reading(canonical, "canonical path");
        assert!(
            !canonical.split('/').any(|s| s == "." || s == ".."),
            "canonical path {canonical:?} has a dot segment"
        );
        for (i, _) in canonical.match_indices('%') {
            assert!(
                !hex2(&canonical[i + 1..]),
                "canonical path {canonical:?} has an escape"
            );
        }
        for other in target.paths().skip(1) {
            check_reading(other, "reading");
        }
    }

    let host = target.host();
    let mut again_authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if let Some(port) = target.port() {
        again_authority.push_str(&format!(":{port}"));
    }
    let again_path = canonical.replace('%', "%25").replace(' ', "%20");
    let again = Target::parse(&again_authority, &again_path).unwrap_or_else(|e| {
        panic!("{authority:?} {path:?} gave {target:?}; {again_authority:?} {again_path:?} is refused: {e}")
    });
    assert_eq!(again.host(), host, "host not idempotent");
    assert_eq!(again.port(), target.port(), "port not idempotent");
    assert_eq!(
        again.paths().collect::<Vec<_>>(),
        vec![canonical],
        "path not idempotent from {path:?}"
    );
}

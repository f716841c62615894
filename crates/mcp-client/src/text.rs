//! Server text made safe to show: quoted, clipped, control characters
//! escaped, so what a server says cannot drive a terminal or break the
//! document it is written into.

use serde_json::Value;

/// `s` as a JSON string that is also a YAML double-quoted scalar meaning
/// the same: JSON leaves DEL, C1 controls, U+2028/9 and BOM-like characters
/// raw, which YAML either forbids or (1.1) reads as line breaks.
pub fn quote(s: &str) -> String {
    let json = Value::String(s.to_owned()).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// At most 200 characters, with control characters shown escaped.
pub fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_mean_the_same_in_json_and_yaml() {
        for s in [
            "get-weather",
            "a\"b\\c",
            "line\nbreak",
            "del\u{7f}",
            "nel\u{85}",
            "ls\u{2028}",
            "é😀",
        ] {
            let q = quote(s);
            assert!(!q.contains(['\n', '\u{85}', '\u{2028}', '\u{7f}']), "{q}");
            let from_json: String = serde_json::from_str(&q).unwrap();
            assert_eq!(from_json, s);
            let doc = format!("k: {q}\n");
            let yaml = yaml_rust2::YamlLoader::load_from_str(&doc).unwrap();
            assert_eq!(yaml[0]["k"].as_str(), Some(s), "{q}");
        }
    }

    #[test]
    fn clipped_text_is_short_and_inert() {
        assert_eq!(clip("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        let long = clip(&"x".repeat(300));
        assert_eq!(long.chars().count(), 201);
        assert!(long.ends_with('…'));
    }
}

//! `metadata.name` for a server's document.

/// The bundle's own rule for `metadata.name`, so a name accepted here is
/// one `bundle check` accepts.
pub fn check_name(name: &str) -> Result<(), String> {
    portcullis_core::bundle::check_name(name)
}

/// `serverInfo.name` as a DNS-1123 name: lowercased, other characters
/// turned into `-` (runs of them into one), trimmed to a letter or digit at
/// both ends, at most 253 characters. `None` when nothing is left.
pub fn dns_name(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let mut name: String = out
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(253)
        .collect();
    name.truncate(
        name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            .len(),
    );
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(
            dns_name("portcullis-e2e-upstream").as_deref(),
            Some("portcullis-e2e-upstream")
        );
        assert_eq!(
            dns_name("My Weather_Server").as_deref(),
            Some("my-weather-server")
        );
        assert_eq!(
            dns_name("  --Acme.Tools v2!! ").as_deref(),
            Some("acme.tools-v2")
        );
        assert_eq!(dns_name("ÜBER").as_deref(), Some("ber"));
        assert_eq!(dns_name("***"), None);
        assert_eq!(dns_name(""), None);
        let long = dns_name(&"a-".repeat(300)).unwrap();
        assert!(long.len() <= 253 && check_name(&long).is_ok(), "{long}");
        for s in ["Weather", "x_y", "ÜBER Server", "a.b", "-x-"] {
            if let Some(n) = dns_name(s) {
                assert!(check_name(&n).is_ok(), "{s} -> {n}");
            }
        }
    }
}

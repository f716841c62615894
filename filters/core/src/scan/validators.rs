//! Validators that confirm a regex candidate before it becomes a finding.
//!
//! A regex alone cannot tell a card number from an order number, so every
//! built-in entity pattern is deliberately a little loose and each candidate
//! is confirmed here by the entity's own rule: Luhn, ISO 13616 mod-97 with
//! the country's length, the SSA's never-issued SSN ranges, a real address
//! parse, a JWT header that decodes to JSON. A validator returns the part of
//! the candidate it accepts (`Some((from, to))`, byte offsets into the
//! candidate: possibly shorter, so greedy patterns can over-reach and be
//! trimmed back, or narrowed to a value after its key) or `None`.
//!
//! All functions are total: no panics, no indexing, any `&str` in.

use base64::Engine as _;

/// Which validator confirms a pattern's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Validator {
    /// Accept the candidate as matched.
    None,
    Email,
    Phone,
    Luhn,
    Iban,
    UsSsn,
    Ipv4,
    Ipv6,
    Jwt,
    /// Slack tokens: a minimum length on top of the pattern.
    SlackToken,
    /// `key: "value"` shapes: keep only the value (after the last `:` or
    /// `=`, quotes and backslashes skipped), so the key stays readable.
    ValueAfterSeparator,
}

/// Confirms `cand` (which starts at byte `start` of `text`) and returns the
/// accepted part as byte offsets into `cand`.
pub fn validate(v: Validator, text: &str, start: usize, cand: &str) -> Option<(usize, usize)> {
    if v == Validator::ValueAfterSeparator {
        let sep = cand.rfind([':', '='])?;
        let value_start = cand
            .char_indices()
            .skip_while(|(i, _)| *i <= sep)
            .find(|(_, c)| !matches!(c, ' ' | '\t' | '"' | '\'' | '\\'))
            .map(|(i, _)| i)?;
        return Some((value_start, cand.len()));
    }
    let len = match v {
        Validator::None => Some(cand.len()),
        Validator::Email => email(cand).then_some(cand.len()),
        Validator::Phone => phone(text, start, cand).then_some(cand.len()),
        Validator::Luhn => card(cand),
        Validator::Iban => iban(cand),
        Validator::UsSsn => us_ssn(cand).then_some(cand.len()),
        Validator::Ipv4 => ipv4(text, start, cand).then_some(cand.len()),
        Validator::Ipv6 => ipv6(cand).then_some(cand.len()),
        Validator::Jwt => jwt(cand).then_some(cand.len()),
        Validator::SlackToken => (cand.len() >= 24).then_some(cand.len()),
        Validator::ValueAfterSeparator => None,
    }?;
    Some((0, len))
}

/// The character just before byte `start` of `text`.
fn char_before(text: &str, start: usize) -> Option<char> {
    text.get(..start).and_then(|s| s.chars().next_back())
}

/// The text following a candidate.
fn after(text: &str, start: usize, len: usize) -> &str {
    text.get(start + len..).unwrap_or("")
}

/// Luhn checksum over ASCII digits.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// An email address: the pattern's shape plus label rules (no empty label,
/// no label starting or ending with `-`, no `..` in the local part, a TLD of
/// letters).
pub fn email(cand: &str) -> bool {
    let Some((local, domain)) = cand.rsplit_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let labels_ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
    labels_ok && tld_ok
}

/// A phone number: E.164 (`+` and 8 to 15 digits) or a national form
/// (the pattern requires separators; 10 to 12 digits here), not all one
/// digit, not glued to a longer number, and not a date or a version.
pub fn phone(text: &str, start: usize, cand: &str) -> bool {
    let digits: Vec<u8> = cand.bytes().filter(u8::is_ascii_digit).collect();
    let n = digits.len();
    let international = cand.starts_with('+') || cand.starts_with("00");
    let len_ok = if international {
        (8..=15).contains(&n)
    } else {
        (10..=12).contains(&n)
    };
    if !len_ok {
        return false;
    }
    if digits
        .first()
        .is_some_and(|f| digits.iter().all(|d| d == f))
    {
        return false;
    }
    if char_before(text, start).is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '-') {
        return false;
    }
    // A national number is not the tail of a longer run of groups
    // (`0044 0532 0130 01` inside a rejected IBAN or card).
    if !international {
        let before: Vec<char> = text
            .get(..start)
            .unwrap_or("")
            .chars()
            .rev()
            .take(2)
            .collect();
        if let [' ', c] = before.as_slice()
            && c.is_ascii_alphanumeric()
            && text.get(..start).is_some_and(|b| {
                b.trim_end().rsplit(' ').next().is_some_and(|w| {
                    w.len() >= 2
                        && w.bytes()
                            .all(|x| x.is_ascii_digit() || x.is_ascii_uppercase())
                })
            })
        {
            return false;
        }
    }
    let next = after(text, start, cand.len());
    let mut rest = next.chars();
    match (rest.next(), rest.next()) {
        (Some(c), _) if c.is_ascii_digit() => false,
        (Some('.' | '-' | '/'), Some(d)) if d.is_ascii_digit() => false,
        _ => true,
    }
}

/// A payment card number: 13 to 19 digits, separators (if any) all the same,
/// a known issuer prefix, and the Luhn check. Tries the whole candidate and
/// then shorter prefixes that end at a group boundary, so
/// `4111 1111 1111 1111 2024` is trimmed to the card.
pub fn card(cand: &str) -> Option<usize> {
    let mut ends: Vec<usize> = vec![cand.len()];
    for (i, b) in cand.bytes().enumerate().rev() {
        if b == b' ' || b == b'-' {
            ends.push(i);
        }
    }
    ends.into_iter()
        .find(|&end| card_exact(cand.get(..end).unwrap_or("")))
}

fn card_exact(cand: &str) -> bool {
    let digits: Vec<u8> = cand.bytes().filter(u8::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let seps: Vec<u8> = cand.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w.first() != w.last()) {
        return false;
    }
    let prefix = |p: &str| digits.starts_with(p.as_bytes());
    let two: u32 = std::str::from_utf8(digits.get(..2).unwrap_or(b"00"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let four: u32 = std::str::from_utf8(digits.get(..4).unwrap_or(b"0000"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let issuer = prefix("4")                      // Visa
        || (51..=55).contains(&two)                 // Mastercard
        || (2221..=2720).contains(&four)            // Mastercard 2-series
        || two == 34 || two == 37                   // American Express
        || prefix("6011") || prefix("65") || (644..=649).contains(&(four / 10)) // Discover
        || two == 36 || two == 38 || two == 39 || (300..=305).contains(&(four / 10)) // Diners
        || (3528..=3589).contains(&four)            // JCB
        || prefix("62")                             // UnionPay
        || prefix("50") || (56..=69).contains(&two); // Maestro and others
    if digits.iter().all(|d| Some(d) == digits.first()) {
        return false;
    }
    issuer && luhn_ok(&digits)
}

/// ISO 13616 IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// The registered IBAN length of a country code.
pub fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| *c == country)
        .map(|(_, n)| *n)
}

/// An IBAN: the country's registered length (the candidate is trimmed to it
/// when the pattern ran on into following text) and mod-97 = 1.
pub fn iban(cand: &str) -> Option<usize> {
    let country = cand.get(..2)?;
    let want = iban_length(country)?;
    // Walk the candidate, counting alphanumerics, to find where the IBAN of
    // the registered length ends in the original (spaced) text.
    let mut compact = String::with_capacity(want);
    let mut end = 0;
    for (i, c) in cand.char_indices() {
        if c == ' ' {
            continue;
        }
        compact.push(c);
        end = i + c.len_utf8();
        if compact.len() == want {
            break;
        }
    }
    if compact.len() != want {
        return None;
    }
    // What follows the accepted part must not continue the same group.
    if cand
        .get(end..)
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let rearranged = compact.get(4..)?.chars().chain(compact.get(..4)?.chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = c.to_digit(36)?;
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    (rem == 1).then_some(end)
}

/// A US Social Security number, Presidio-style: one kind of separator, area
/// not 000, 666 or 900-999 (never issued; 9xx are ITINs), group not 00,
/// serial not 0000, not all one digit, and not a number known to be
/// invalid or published as an example (123-45-6789, 987-65-432x, the
/// Woolworth wallet card 078-05-1120, the 1962 advertisement 219-09-9999).
pub fn us_ssn(cand: &str) -> bool {
    let seps: Vec<u8> = cand.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w.first() != w.last()) {
        return false;
    }
    let d: Vec<u8> = cand.bytes().filter(u8::is_ascii_digit).collect();
    if d.len() != 9 {
        return false;
    }
    let (area, group, serial) = match (d.get(..3), d.get(3..5), d.get(5..)) {
        (Some(a), Some(g), Some(s)) => (a, g, s),
        _ => return false,
    };
    if area == b"000" || area == b"666" || area.first() == Some(&b'9') {
        return false;
    }
    if group == b"00" || serial == b"0000" {
        return false;
    }
    if d.iter().all(|x| Some(x) == d.first()) {
        return false;
    }
    let known_invalid: [&[u8]; 4] = [b"123456789", b"98765432", b"078051120", b"219099999"];
    !known_invalid.iter().any(|k| d.starts_with(k))
}

/// An IPv4 address in dotted-quad form that parses (no leading zeros, each
/// octet at most 255) and is not part of a longer dotted run such as a
/// version `1.2.3.4.5` or an OID.
pub fn ipv4(text: &str, start: usize, cand: &str) -> bool {
    if cand.parse::<std::net::Ipv4Addr>().is_err() {
        return false;
    }
    if char_before(text, start).is_some_and(|c| c == '.' || c.is_ascii_alphanumeric()) {
        return false;
    }
    let mut rest = after(text, start, cand.len()).chars();
    !matches!((rest.next(), rest.next()), (Some('.'), Some(d)) if d.is_ascii_digit())
}

/// An IPv6 address that parses, written with at least three groups or a
/// `::` with two (so `::` alone and `a::b`-like tokens in code stay out).
pub fn ipv6(cand: &str) -> bool {
    if cand.parse::<std::net::Ipv6Addr>().is_err() {
        return false;
    }
    let groups = cand.split(':').filter(|g| !g.is_empty()).count();
    groups >= 3 || (cand.contains("::") && groups >= 2)
}

/// A JWT: three base64url parts whose header decodes to a JSON object with
/// a string `alg` and whose payload decodes to a JSON object.
pub fn jwt(cand: &str) -> bool {
    let mut parts = cand.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |s: &str| -> Option<serde_json::Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()
    };
    let header_ok = decode(h).is_some_and(|v| v.get("alg").is_some_and(|a| a.is_string()));
    header_ok && decode(p).is_some_and(|v| v.is_object())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(!luhn_ok(b"4111111111111112"));
        assert_eq!(card("4111 1111 1111 1111"), Some(19));
        assert_eq!(card("4111-1111-1111-1111"), Some(19));
        assert_eq!(card("378282246310005"), Some(15)); // Amex test number
        assert_eq!(card("5555 5555 5555 4444"), Some(19)); // Mastercard test
        assert_eq!(card("6011 1111 1111 1117"), Some(19)); // Discover test
        assert_eq!(card("4111 1111 1111 1112"), None); // Luhn fails
        assert_eq!(card("4111-1111 1111-1111"), None); // mixed separators
        assert_eq!(card("1234 5678 9012 3452"), None); // no such issuer
        assert_eq!(card("4111 1111 1111 1111 2024"), Some(19)); // trimmed
        assert_eq!(card("0000 0000 0000 0000"), None);
    }

    #[test]
    fn ibans() {
        assert_eq!(iban("DE89370400440532013000"), Some(22));
        assert_eq!(iban("DE89 3704 0044 0532 0130 00"), Some(27));
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32"), Some(27));
        assert_eq!(iban("FR14 2004 1010 0505 0001 3M02 606"), Some(33));
        assert_eq!(iban("DE89 3704 0044 0532 0130 01"), None); // mod-97
        assert_eq!(iban("DE89 3704 0044 0532 0130"), None); // too short
        assert_eq!(iban("ZZ89 3704 0044 0532 0130 00"), None); // no country
        // Runs on into text: trimmed to the registered length.
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32 THEN"), Some(27));
        assert_eq!(iban_length("NO"), Some(15));
    }

    #[test]
    fn ssns() {
        assert!(us_ssn("536-90-4399"));
        assert!(us_ssn("536 90 4399"));
        assert!(!us_ssn("536-90 4399"));
        assert!(!us_ssn("000-12-3456"));
        assert!(!us_ssn("666-12-3456"));
        assert!(!us_ssn("912-12-3456"));
        assert!(!us_ssn("536-00-4399"));
        assert!(!us_ssn("536-90-0000"));
        assert!(!us_ssn("123-45-6789"));
        assert!(!us_ssn("078-05-1120"));
        assert!(!us_ssn("111-11-1111"));
    }

    #[test]
    fn emails_phones_ips() {
        assert!(email("jane.doe+mcp@example.co.uk"));
        assert!(!email("jane..doe@example.com"));
        assert!(!email("jane@-example.com"));
        assert!(!email("jane@example.c0m"));
        assert!(phone("+1 415 555 2671", 0, "+1 415 555 2671"));
        assert!(phone("+442079460958", 0, "+442079460958"));
        assert!(!phone("+1234", 0, "+1234"));
        assert!(phone("(415) 555-2671", 0, "(415) 555-2671"));
        assert!(phone("020 7946 0958", 0, "020 7946 0958"));
        assert!(!phone("01-02-2023", 0, "01-02-2023"));
        assert!(!phone("555-555-5555x", 1, "55-555-5555")); // glued
        assert!(ipv4("host 10.1.2.3 up", 5, "10.1.2.3"));
        assert!(!ipv4("10.1.2.300", 0, "10.1.2.300"));
        assert!(!ipv4("010.1.2.3", 0, "010.1.2.3"));
        assert!(!ipv4("v1.2.3.4.5", 1, "1.2.3.4"));
        assert!(ipv6("2001:db8::8a2e:370:7334"));
        assert!(ipv6("fe80::1"));
        assert!(!ipv6("::"));
        assert!(!ipv6("12:30:45"));
    }

    #[test]
    fn jwts() {
        // {"alg":"HS256","typ":"JWT"} . {"sub":"1234567890"} . sig
        assert!(jwt(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"
        ));
        // Header without alg.
        assert!(!jwt("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln"));
        assert!(!jwt("eyJhbGciOiJIUzI1NiJ9.bm90anNvbg.c2ln"));
    }
}

//! The built-in PII and secret patterns, as data.
//!
//! Order matters: all patterns go into one leftmost-first automaton, so
//! where two could start at the same byte the earlier one wins. Secrets come
//! first (their prefixes are distinctive), then shapes from most to least
//! specific, and phone numbers, the loosest, last. Every pattern is paired
//! with a [`Validator`]; the patterns are written to over-match a little and
//! leave the final word to it.

use super::validators::Validator;

/// Whether an entity is personal data or a credential: the two have
/// different default actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Class {
    Pii,
    Secret,
}

/// One built-in pattern.
pub struct Builtin {
    pub id: &'static str,
    pub entity: &'static str,
    pub class: Class,
    pub regex: &'static str,
    pub validator: Validator,
}

const fn b(
    id: &'static str,
    entity: &'static str,
    class: Class,
    regex: &'static str,
    validator: Validator,
) -> Builtin {
    Builtin {
        id,
        entity,
        class,
        regex,
        validator,
    }
}

use Class::{Pii, Secret};

/// Every built-in pattern, in priority order.
///
/// No pattern has an unbounded "anything" repetition: the body of a key
/// block is base64, blanks and PEM header characters, so a search that finds
/// no `-----END` stops at the first other character instead of running to
/// the end of a hostile input once per `-----BEGIN`; an email's local part
/// is at most 64 characters (RFC 5321), so `1.1.1.1…` is not one long
/// potential address keeping the automaton scanning to the end for every
/// rejected IPv4 candidate inside it.
pub const BUILTINS: &[Builtin] = &[
    b(
        "secret.private-key",
        "PRIVATE_KEY",
        Secret,
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,\-]|\\[nr])*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        Validator::None,
    ),
    // A key block cut short (truncated output, a streamed chunk): the header
    // and whatever base64 follows, with real or JSON-escaped line breaks.
    b(
        "secret.private-key-unterminated",
        "PRIVATE_KEY",
        Secret,
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s]|\\[nr])*",
        Validator::None,
    ),
    b(
        "secret.gcp-service-account-key-id",
        "GCP_SERVICE_ACCOUNT_KEY",
        Secret,
        r#"\\?"private_key_id\\?"\s*:\s*\\?"[0-9a-f]{40}"#,
        Validator::ValueAfterSeparator,
    ),
    b(
        "secret.aws-access-key-id",
        "AWS_ACCESS_KEY",
        Secret,
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
        Validator::None,
    ),
    b(
        "secret.aws-secret-access-key",
        "AWS_SECRET_KEY",
        Secret,
        r#"(?i:aws_?secret_?access_?key)\\?["']?\s*[:=]\s*\\?["']?[A-Za-z0-9/+=]{40}(?-u:\b)"#,
        Validator::ValueAfterSeparator,
    ),
    b(
        "secret.gcp-api-key",
        "GCP_API_KEY",
        Secret,
        r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}",
        Validator::None,
    ),
    b(
        "secret.github-token",
        "GITHUB_TOKEN",
        Secret,
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?-u:\b)",
        Validator::None,
    ),
    b(
        "secret.slack-token",
        "SLACK_TOKEN",
        Secret,
        r"(?-u:\b)xox[abprs]-[0-9A-Za-z]+(?:-[0-9A-Za-z]+)+",
        Validator::SlackToken,
    ),
    b(
        "secret.jwt",
        "JWT",
        Secret,
        r"(?-u:\b)ey[A-Za-z0-9_\-]{5,}\.ey[A-Za-z0-9_\-]{3,}\.[A-Za-z0-9_\-]*",
        Validator::Jwt,
    ),
    b(
        "pii.email",
        "EMAIL",
        Pii,
        r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}",
        Validator::Email,
    ),
    b(
        "pii.iban",
        "IBAN",
        Pii,
        r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}",
        Validator::Iban,
    ),
    b(
        "pii.us-ssn",
        "US_SSN",
        Pii,
        r"(?-u:\b)[0-9]{3}[\- .][0-9]{2}[\- .][0-9]{4}(?-u:\b)",
        Validator::UsSsn,
    ),
    b(
        "pii.credit-card",
        "CREDIT_CARD",
        Pii,
        r"(?-u:\b)(?:[0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{3,6}){2,5})(?-u:\b)",
        Validator::Luhn,
    ),
    b(
        "pii.ipv4",
        "IP_ADDRESS",
        Pii,
        r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
        Validator::Ipv4,
    ),
    b(
        "pii.ipv6",
        "IP_ADDRESS",
        Pii,
        r"(?-u:\b)[0-9A-Fa-f]{1,4}(?::{1,2}[0-9A-Fa-f]{1,4}){1,7}(?:::)?|::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}",
        Validator::Ipv6,
    ),
    b(
        "pii.phone-international",
        "PHONE",
        Pii,
        r"\+[1-9][0-9 ().\-]{6,20}[0-9]|(?-u:\b)00[1-9][0-9 .\-]{6,18}[0-9]",
        Validator::Phone,
    ),
    b(
        "pii.phone-nanp",
        "PHONE",
        Pii,
        r"(?:\([2-9][0-9]{2}\) ?|(?-u:\b)[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}(?-u:\b)",
        Validator::Phone,
    ),
    b(
        "pii.phone-national",
        "PHONE",
        Pii,
        r"(?-u:\b)0[1-9][0-9]{0,4}(?:[ .\-][0-9]{2,8}){1,4}(?-u:\b)",
        Validator::Phone,
    ),
];

/// The entity types of the built-in patterns, each once.
pub fn builtin_entities() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in BUILTINS {
        if !out.contains(&p.entity) {
            out.push(p.entity);
        }
    }
    out
}

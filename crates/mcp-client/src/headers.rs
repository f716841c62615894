//! Request headers the caller adds (credentials, mostly), and the secrets
//! they hold.
//!
//! A header flag may be all token, so nothing of it is quoted in an error
//! until its name is known good, and a value is never quoted at all.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Headers this client sets itself; a caller's header may not override them.
pub const OWN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// Headers sent on every request, marked sensitive. No `Debug`: they hold
/// credentials.
pub struct RequestHeaders {
    pub(crate) map: HeaderMap,
    secrets: Secrets,
}

/// Strings that must not be shown: the header values, and their words (a
/// server may echo only the token of `Bearer <token>`).
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

/// Why a header is refused. Numbers count from 1, in the order given;
/// nothing here holds a value.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// No `:` between name and value.
    #[error("header number {number} has no ':'")]
    NoColon { number: usize },
    /// The part before `:` is not a header name.
    #[error("header number {number}: the part before ':' is not a header name")]
    BadName { number: usize },
    /// One of [`OWN_HEADERS`].
    #[error("header {name}: this client sets it itself")]
    Reserved { name: String },
    /// The value has characters a header value cannot.
    #[error("header {name}: the value is not a valid header value (visible ASCII and spaces)")]
    BadValue { name: String },
}

impl RequestHeaders {
    /// Parses `Name: value` strings.
    pub fn parse(raw: &[String]) -> Result<RequestHeaders, HeaderError> {
        let mut map = HeaderMap::new();
        let mut secrets = Vec::new();
        for (i, h) in raw.iter().enumerate() {
            let number = i + 1;
            let Some((name, value)) = h.split_once(':') else {
                return Err(HeaderError::NoColon { number });
            };
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| HeaderError::BadName { number })?;
            if OWN_HEADERS.contains(&name.as_str()) {
                return Err(HeaderError::Reserved {
                    name: name.to_string(),
                });
            }
            let mut value =
                HeaderValue::from_str(value.trim()).map_err(|_| HeaderError::BadValue {
                    name: name.to_string(),
                })?;
            value.set_sensitive(true);
            if let Ok(v) = value.to_str() {
                secrets.push(v.to_owned());
                secrets.extend(v.split_whitespace().map(str::to_owned));
            }
            map.append(name, value);
        }
        // Short strings are words of any message, not credentials; longest
        // first, so a value is scrubbed before its parts.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(RequestHeaders {
            map,
            secrets: Secrets(secrets),
        })
    }

    /// What to scrub from anything shown.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Whether a header of this name is set, and sensitive.
    pub fn is_sensitive(&self, name: &str) -> Option<bool> {
        self.map.get(name).map(HeaderValue::is_sensitive)
    }
}

impl Secrets {
    /// `text` with every secret replaced by `[header value]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[header value]");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_never_quoted() {
        let secret = "Bearer tok-0123456789";
        for bad in [
            format!("Authorization {secret}"),
            format!("Authorization={secret}: x"),
            format!("Authorization: {secret}\u{1}"),
        ] {
            match RequestHeaders::parse(&[bad]) {
                Err(e) => assert!(!e.to_string().contains("tok-0123456789"), "{e}"),
                Ok(_) => panic!("accepted"),
            }
        }
        let Ok(h) = RequestHeaders::parse(&[format!("Authorization: {secret}")]) else {
            panic!("refused a good header");
        };
        assert_eq!(h.is_sensitive("authorization"), Some(true));
        assert_eq!(
            h.secrets()
                .scrub("server said tok-0123456789 and Bearer tok-0123456789"),
            "server said [header value] and [header value]"
        );
        assert!(matches!(
            RequestHeaders::parse(&["Accept: x".into()]),
            Err(HeaderError::Reserved { .. })
        ));
    }
}

//! The server's MCP endpoint: a plain `http://` URL, checked before any
//! connection is made.

use http::Uri;

/// A checked MCP endpoint URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) uri: Uri,
    shown: String,
    path: String,
}

/// Why a URL is not a usable endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// It does not parse as a URL.
    #[error("not a URL ({0})")]
    Invalid(String),
    /// `https://`: this client has no TLS stack.
    #[error("https:// is not spoken (the client carries no TLS stack)")]
    Https,
    /// Any scheme other than `http`.
    #[error("the URL must start with http://")]
    NotHttp,
    /// No authority.
    #[error("the URL has no host")]
    NoHost,
    /// `user:password@` in the authority: credentials go in headers.
    #[error("the URL carries credentials")]
    Credentials,
}

impl Endpoint {
    /// Checks `url`: `http://HOST[:PORT][/PATH]`, without credentials.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| UrlError::Invalid(e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(s) if s.eq_ignore_ascii_case("https") => return Err(UrlError::Https),
            _ => return Err(UrlError::NotHttp),
        }
        let Some(authority) = uri.authority() else {
            return Err(UrlError::NoHost);
        };
        if authority.as_str().contains('@') {
            return Err(UrlError::Credentials);
        }
        let path = match uri.path() {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        let shown = format!("http://{authority}{path}");
        Ok(Endpoint { uri, shown, path })
    }

    /// The URL as messages and documents show it: without the query, which
    /// may carry a key.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The URL's path (`/` when it has none).
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_without_credentials() {
        let e = Endpoint::parse("http://127.0.0.1:8000/mcp?key=secret").unwrap();
        assert_eq!((e.shown(), e.path()), ("http://127.0.0.1:8000/mcp", "/mcp"));
        assert_eq!(Endpoint::parse("http://h").unwrap().path(), "/");
        assert!(matches!(
            Endpoint::parse("HTTPS://h/"),
            Err(UrlError::Https)
        ));
        assert!(matches!(
            Endpoint::parse("ftp://h/"),
            Err(UrlError::NotHttp)
        ));
        assert!(matches!(Endpoint::parse("/mcp"), Err(UrlError::NotHttp)));
        assert!(matches!(
            Endpoint::parse("http://u:p@h/"),
            Err(UrlError::Credentials)
        ));
        assert!(matches!(
            Endpoint::parse("http://a b"),
            Err(UrlError::Invalid(_))
        ));
    }
}

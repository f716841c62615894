//! Where a bearer token may come from: the `Authorization` header, only.
//!
//! OAuth 2.1 and the MCP authorization spec drop the query-string method
//! (`?access_token=`): URLs are logged by every proxy, browser and server on
//! the way, so a token there is already leaked. Such a request is refused
//! with its own error ([`IdentityError::TokenInQuery`]) even when a header
//! token is present too, so the client's bug is visible rather than
//! silently tolerated. Several `Authorization` headers are refused as
//! ambiguous (which one would the upstream read?).

use super::error::IdentityError;

/// The token from the request's `Authorization` header values (all of
/// them, in order) and its `:path` (path and query).
pub fn extract_bearer<'a>(authorization: &[&'a str], path: &str) -> Result<&'a str, IdentityError> {
    if query_has_token(path) {
        return Err(IdentityError::TokenInQuery);
    }
    let value = match authorization {
        [] => return Err(IdentityError::MissingToken),
        [one] => one.trim_matches([' ', '\t']),
        _ => return Err(IdentityError::InvalidRequest),
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, DPoP...) is no bearer credential at all.
        return Err(IdentityError::MissingToken);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || !is_b64token(token) {
        return Err(IdentityError::InvalidRequest);
    }
    Ok(token)
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| B64TOKEN.get(usize::from(b)).copied().unwrap_or(false))
}

/// The b64token characters (RFC 6750 §2.1) but `=`, by byte: a table
/// lookup per byte of a token of a few hundred bytes, on every request
/// (a cached token's whole check is cheaper than the chain of comparisons
/// this replaced, in wasm).
// Evaluated at compile time: an index out of range would not compile.
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Whether the query has an `access_token` parameter, in any case and with
/// any percent-encoding of its name.
pub fn query_has_token(path: &str) -> bool {
    let Some((_, query)) = path.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or(query);
    query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or(pair);
        percent_decode(name).eq_ignore_ascii_case("access_token")
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(0));
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_only() {
        assert_eq!(
            extract_bearer(&["Bearer abc.def.ghi"], "/mcp"),
            Ok("abc.def.ghi")
        );
        assert_eq!(extract_bearer(&["bearer  abc"], "/mcp"), Ok("abc"));
        assert_eq!(
            extract_bearer(&[], "/mcp"),
            Err(IdentityError::MissingToken)
        );
        assert_eq!(
            extract_bearer(&["Basic Zm9vOmJhcg=="], "/mcp"),
            Err(IdentityError::MissingToken)
        );
        assert_eq!(
            extract_bearer(&["Bearer "], "/mcp"),
            Err(IdentityError::InvalidRequest)
        );
        assert_eq!(
            extract_bearer(&["Bearer a\"b"], "/mcp"),
            Err(IdentityError::InvalidRequest)
        );
        assert_eq!(
            extract_bearer(&["Bearer a", "Bearer b"], "/mcp"),
            Err(IdentityError::InvalidRequest)
        );
    }

    #[test]
    fn token_characters_are_rfc_6750_b64token() {
        for b in 0..=255u8 {
            let allowed =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            let token = [b'a', b];
            let token = String::from_utf8_lossy(&token);
            assert_eq!(is_b64token(&token), allowed || b == b'=', "byte {b:#04x}");
        }
        assert!(is_b64token("abc=="));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
    }

    #[test]
    fn query_token_refused() {
        for path in [
            "/mcp?access_token=x",
            "/mcp?a=1&ACCESS_TOKEN=x",
            "/mcp?access%5Ftoken=x",
            "/mcp?access_token",
        ] {
            assert_eq!(
                extract_bearer(&["Bearer abc"], path),
                Err(IdentityError::TokenInQuery),
                "{path}"
            );
        }
        assert_eq!(
            extract_bearer(&["Bearer abc"], "/mcp?x=access_token"),
            Ok("abc")
        );
    }
}

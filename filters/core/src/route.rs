//! Canonical request targets: which registered server a request is for.
//!
//! The filter governs a request only if it recognises the route as a
//! registered `McpServer`'s (`spec.match: {pathPrefix, authority}`); anything
//! else is passed through or refused as unmatched. An attacker who spells a
//! route so that the filter sees "no server" while the server behind it
//! routes the bytes to its MCP endpoint walks around governance. Real
//! servers do not route on raw bytes:
//!
//! * uvicorn percent-decodes the whole path, `%2F` included, before Starlette
//!   routes it (`uvicorn/protocols/http/h11_impl.py`: `unquote(raw_path)`;
//!   `httptools_impl.py`: `urllib.parse.unquote(path)`), so `/%6dcp` is
//!   `/mcp`; Starlette matches a compiled regex against that decoded path
//!   (`starlette/routing.py`, `compile_path`, `Route.matches`) and resolves no
//!   dot segments, so a `Mount("/mcp")` (`^/mcp/(?P<path>.*)$`, as in the MCP
//!   SDK's `Mount(message_path, ...)` in `mcp/server/mcpserver/server.py`)
//!   takes `/mcp/../x` too;
//! * Express (pillarjs/router, `getPathname` → `parseurl(req).pathname`, and
//!   `lib/layer.js` → path-to-regexp with `sensitive: false` and
//!   `trailing: !strict`) matches the undecoded path case-insensitively and
//!   ignores a trailing slash (`/MCP/`);
//! * servlet containers drop `;params` (`/mcp;jsessionid=1`), nginx merges
//!   slashes and resolves dot segments after decoding, Node code that does
//!   `new URL(req.url, base)` reads `//host/mcp` as host `host`, path `/mcp`,
//!   and WHATWG URL parsing treats `\` as `/`.
//!
//! So routing happens on a canonical form of the target that
//! *over-approximates* every such reading: if any plausible upstream routes
//! the bytes to a registered prefix, the canonical form matches it too.
//! Over-matching is safe (the request is governed); under-matching is a
//! bypass. What cannot be canonicalised that way is refused ([`RouteError`]).
//!
//! # The path
//!
//! [`Target::path`] is used only for matching, never forwarded:
//! 1. the query and fragment are cut at the first raw `?` or `#`;
//! 2. the rest is percent-decoded once, all of it (`%2F` becomes `/`,
//!    `%5C` becomes `\`), and must be UTF-8 without control characters;
//! 3. `\` is a separator like `/`;
//! 4. every segment loses its `;params` (a decoded `?` or `#` is cut the same
//!    way, for servers that decode before splitting off the query);
//! 5. dot segments are resolved (RFC 3986 §5.2.4, clamped at the root);
//! 6. empty segments are merged (`//mcp` is `/mcp`);
//! 7. letters are lowercased: ASCII, every other letter by Unicode
//!    lowercasing, and the code points that case-insensitive comparisons in
//!    Java (`equalsIgnoreCase`), .NET (`OrdinalIgnoreCase`), Python
//!    (`casefold`) and Unicode-aware regexes map onto ASCII letters:
//!    U+212A KELVIN SIGN → `k`, U+017F LATIN SMALL LETTER LONG S → `s`,
//!    U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE and U+0131 LATIN SMALL
//!    LETTER DOTLESS I → `i`.
//!
//! A single canonical path cannot over-approximate every reading when dot
//! segments are present: Starlette keeps `/mcp/../x` under `/mcp`, nginx
//! resolves it to `/x`. So a path with dot segments has a second reading,
//! the *literal* one (steps 1–4, 6, 7 without 5), and a path that starts with
//! two separators has a third, the *network-path* one (the rest after
//! `//host`). A server is chosen by every reading ([`Target::paths`]);
//! readings that reach different servers make the request ambiguous, and
//! the bundle refuses it.
//!
//! Two readings are enough only when every resolver agrees on which
//! segments are dot segments and where segments end. Which they do not once
//! a path mixes two of: a plain `.`/`..` segment, an encoded separator
//! (`%2F`, `%5C`), a raw `\`, an encoded dot inside a dot segment (`%2e%2e`),
//! `;params` on a dot segment (`..;x`), an empty segment (`//`). Envoy's
//! `normalize_path` decodes `%2e` but not `%2F`, HAProxy resolves before any
//! decoding, Tomcat strips `;params` first and nginx does not: each reads
//! `/a%2Fb/../mcp` or `/x/%2e%2e/y/../mcp` differently. Such a path has a
//! dot segment and two of those features, and is refused
//! ([`RouteError::AmbiguousDotSegments`]). One feature alone is fine: a
//! resolver either sees it (the canonical reading) or does not (then it sees
//! no dot segment at all: the literal reading).
//!
//! Double encoding is refused: a `%` that decodes into another valid escape
//! (`%252e`, `%252F`, `%25%32%46`) reads differently on a server that
//! decodes twice, and no canonical form covers both readings.
//!
//! Request-target forms (RFC 9112 §3.2): origin-form (`/...`; a leading `\`
//! counts as `/`), absolute-form (`http://authority/...` or `https://...`,
//! whose authority wins over `Host` per RFC 9112 §3.2.2 — a `Host` that
//! differs is refused rather than guessed between) and asterisk-form (`*`,
//! for `OPTIONS`: its path is `*`, which only a server without `pathPrefix`
//! matches, as no server routes `*` to a resource). Anything else is refused.
//!
//! # The authority
//!
//! [`Target::host`] is lowercase, without userinfo (`user:pw@`) and without
//! trailing dots; an IPv6 literal is written without brackets in its RFC 5952
//! form (`[0:0::1]` is `::1`). [`Target::port`] is the port, if one is given
//! and it is not the scheme's default (when the scheme is known). A
//! [`HostPattern`] without a port matches any port; one with port 80 or 443
//! also matches a request without a port (default-port equivalence,
//! whichever the scheme: over-matching is safe). Refused: characters outside
//! letters, digits, `-`, `.`, `_`, `~` (percent-encoded hosts included, since
//! no server decodes them alike), empty labels, an empty host, more than one
//! `@`, a port that is not 1–65535, a bad IPv6 literal (zone ids included).

use std::fmt;
use std::net::Ipv6Addr;

/// Longest excerpt of a request's target quoted in an error.
pub const ECHO_LIMIT: usize = 64;

/// Why a request target cannot be canonicalised. The message quotes at most
/// [`ECHO_LIMIT`] characters of the request, escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "the request target {target:?} is neither origin-form (/...), absolute-form (http(s)://host/...) nor *"
    )]
    TargetForm { target: String },
    #[error("the request target has a character not allowed in a URI near {near:?}")]
    InvalidCharacter { near: String },
    #[error("malformed percent-encoding in the request path near {near:?}")]
    MalformedEscape { near: String },
    #[error(
        "double percent-encoding in the request path near {near:?}; a server that decodes twice would read another path"
    )]
    DoubleEncoding { near: String },
    #[error("the request path decodes to a control character near {near:?}")]
    ControlCharacter { near: String },
    #[error("the request path does not decode to UTF-8 near {near:?}")]
    NotUtf8 { near: String },
    #[error(
        "the request path {path:?} mixes dot segments with encoded or doubled separators, encoded dots or ;params, which servers resolve differently"
    )]
    AmbiguousDotSegments { path: String },
    #[error("the authority {authority:?} is not a valid host[:port]: {problem}")]
    Authority {
        authority: String,
        problem: &'static str,
    },
    #[error("the request target's authority {target:?} differs from the Host {host:?}")]
    AuthorityMismatch { target: String, host: String },
    #[error("readings of the request path reach different servers ({first} and {second})")]
    Ambiguous { first: String, second: String },
}

/// At most [`ECHO_LIMIT`] characters of `s`, marked when cut.
fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_LIMIT) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or("")),
    }
}

/// A request's target in canonical form, for matching only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: Option<u16>,
    /// The canonical reading first, then any other reading (literal,
    /// network-path), without duplicates.
    paths: Vec<String>,
}

impl Target {
    /// Canonicalises a request's `:authority` and `:path`.
    pub fn parse(authority: &str, path: &str) -> Result<Target, RouteError> {
        Target::parse_with_scheme(None, authority, path)
    }

    /// As [`Target::parse`], with the `:scheme` when known: an explicit
    /// default port (`:443` for `https`) is then dropped.
    pub fn parse_with_scheme(
        scheme: Option<&str>,
        authority: &str,
        path: &str,
    ) -> Result<Target, RouteError> {
        let (scheme, authority_text, path) = match split_absolute(path)? {
            Some((s, a, p)) => {
                let header = canonical_authority(authority, Userinfo::Strip);
                let target = canonical_authority(a, Userinfo::Strip)?;
                if !authority.is_empty() {
                    let header = header?;
                    let port = |(h, p): &(String, Option<u16>)| {
                        (h.clone(), p.filter(|p| Some(*p) != default_port(Some(s))))
                    };
                    if port(&header) != port(&target) {
                        return Err(RouteError::AuthorityMismatch {
                            target: echo(a),
                            host: echo(authority),
                        });
                    }
                }
                (Some(s), a, p)
            }
            None => (scheme, authority, path),
        };
        let (host, port) = canonical_authority(authority_text, Userinfo::Strip)?;
        let port = port.filter(|p| Some(*p) != default_port(scheme));
        let paths = if path == "*" {
            vec!["*".to_owned()]
        } else if path.starts_with(['/', '\\']) {
            path_readings(path)?
        } else {
            return Err(RouteError::TargetForm { target: echo(path) });
        };
        Ok(Target { host, port, paths })
    }

    /// The canonical host: lowercase, no trailing dot, IPv6 unbracketed.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The canonical path (dot segments resolved); `*` for asterisk-form.
    pub fn path(&self) -> &str {
        self.paths.first().map_or("/", String::as_str)
    }

    /// Every reading of the path a server might route on, canonical first.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }
}

fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    }
}

/// `http(s)://authority[/path]` → (scheme, authority, path), the path `/`
/// when empty. `None` for any other form.
fn split_absolute(target: &str) -> Result<Option<(&str, &str, &str)>, RouteError> {
    let Some((scheme, rest)) = target.split_once("://") else {
        return Ok(None);
    };
    if scheme.starts_with(['/', '\\']) || scheme == "*" {
        return Ok(None);
    }
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(RouteError::TargetForm {
            target: echo(target),
        });
    }
    // WHATWG URL parsing ends the authority at `\` too.
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = if path.starts_with(['/', '\\']) {
        path
    } else {
        "/"
    };
    Ok(Some((scheme, authority, path)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Userinfo {
    Strip,
    Refuse,
}

/// `[userinfo@]host[:port]` → (canonical host, port).
fn canonical_authority(
    authority: &str,
    userinfo: Userinfo,
) -> Result<(String, Option<u16>), RouteError> {
    let bad = |problem: &'static str| RouteError::Authority {
        authority: echo(authority),
        problem,
    };
    let hostport = match authority.split_once('@') {
        None => authority,
        Some(_) if userinfo == Userinfo::Refuse => return Err(bad("userinfo is not allowed")),
        Some((_, rest)) if rest.contains('@') => return Err(bad("more than one '@'")),
        Some((info, rest)) => {
            if info.contains(['/', '?', '#', '[', ']', '\\'])
                || info.chars().any(|c| c.is_ascii_control() || c == ' ')
            {
                return Err(bad("invalid characters in userinfo"));
            }
            rest
        }
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let Some((literal, tail)) = rest.split_once(']') else {
            return Err(bad("an IPv6 literal without its closing ']'"));
        };
        let addr: Ipv6Addr = literal
            .parse()
            .map_err(|_| bad("not a valid IPv6 literal (zone ids are not accepted)"))?;
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(bad("text after the IPv6 literal")),
            },
        };
        (addr.to_string(), port)
    } else {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if host.contains(':') {
            return Err(bad("an IPv6 address must be in brackets"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err(bad("a host is letters, digits, '-', '.', '_' and '~'"));
        }
        let host = host.trim_end_matches('.');
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.split('.').any(str::is_empty) {
            return Err(bad("the host has an empty label"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(parse_port(p).ok_or_else(|| bad("the port is not a number 1-65535"))?),
    };
    Ok((host, port))
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|p| *p != 0)
}

/// One segment of the finest reading: decoded, split at every separator,
/// `;params` cut.
struct Segment {
    text: String,
    dot: Dot,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dot {
    No,
    One,
    Two,
}

/// What makes dot-segment resolution differ between servers (see the
/// module documentation).
#[derive(Default)]
struct Features {
    plain_dots: bool,
    encoded_separator: bool,
    backslash: bool,
    encoded_dot: bool,
    dot_params: bool,
    empty_segment: bool,
}

impl Features {
    fn count(&self) -> usize {
        [
            self.plain_dots,
            self.encoded_separator,
            self.backslash,
            self.encoded_dot,
            self.dot_params,
            self.empty_segment,
        ]
        .iter()
        .filter(|f| **f)
        .count()
    }
}

/// The readings of an origin-form path (starting with `/` or `\`).
fn path_readings(path: &str) -> Result<Vec<String>, RouteError> {
    let path = cut_query(path);
    let mut readings = Vec::with_capacity(4);
    push_readings(path, path, &mut readings)?;
    // `//host/rest` (or `/\host`...): a network-path reference to URL
    // parsers that resolve the target against a base.
    let mut chars = path.chars();
    if matches!(
        (chars.next(), chars.next()),
        (Some('/' | '\\'), Some('/' | '\\'))
    ) {
        let after = path.get(2..).unwrap_or("");
        let rest = after
            .find(['/', '\\'])
            .and_then(|i| after.get(i..))
            .unwrap_or("/");
        push_readings(rest, path, &mut readings)?;
    }
    let mut unique: Vec<String> = Vec::with_capacity(readings.len());
    for r in readings {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    Ok(unique)
}

/// The canonical reading of `path`, and the literal one if it has dot
/// segments; `whole` is the request's path, for the error.
fn push_readings(path: &str, whole: &str, readings: &mut Vec<String>) -> Result<(), RouteError> {
    let (segments, features) = split_segments(path)?;
    readings.push(resolved(&segments));
    if segments.iter().any(|s| s.dot != Dot::No) {
        if features.count() > 1 {
            return Err(RouteError::AmbiguousDotSegments { path: echo(whole) });
        }
        readings.push(literal(&segments));
    }
    Ok(())
}

fn cut_query(path: &str) -> &str {
    path.find(['?', '#'])
        .and_then(|i| path.get(..i))
        .unwrap_or(path)
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// The finest reading of `path` (which starts with a separator), and the
/// features that decide whether its dot segments are ambiguous.
fn split_segments(path: &str) -> Result<(Vec<Segment>, Features), RouteError> {
    let near = |at: usize| echo(path.get(at.saturating_sub(8)..).unwrap_or(path));
    if let Some(at) = path.bytes().position(|b| b.is_ascii_control() || b == b' ') {
        return Err(RouteError::InvalidCharacter { near: near(at) });
    }
    let mut features = Features {
        backslash: path.contains('\\'),
        ..Features::default()
    };
    let mut out = Vec::new();
    let mut offset = 0;
    for raw in path.split('/') {
        let start = offset;
        offset += raw.len() + 1;
        let plain_dot = raw == "." || raw == "..";
        features.plain_dots |= plain_dot;
        // Decode, remembering which bytes were escapes.
        let bytes = raw.as_bytes();
        let mut decoded: Vec<(u8, bool)> = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b'%' {
                match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) if is_hex(h) && is_hex(l) => {
                        decoded.push(((hex_value(h) << 4) | hex_value(l), true));
                        i += 3;
                    }
                    _ => {
                        return Err(RouteError::MalformedEscape {
                            near: near(start + i),
                        });
                    }
                }
            } else {
                decoded.push((b, false));
                i += 1;
            }
        }
        let plain: Vec<u8> = decoded.iter().map(|(b, _)| *b).collect();
        if plain
            .windows(3)
            .any(|w| matches!(w, [b'%', h, l] if is_hex(*h) && is_hex(*l)))
        {
            return Err(RouteError::DoubleEncoding { near: near(start) });
        }
        if plain.iter().any(|b| b.is_ascii_control()) {
            return Err(RouteError::ControlCharacter { near: near(start) });
        }
        if std::str::from_utf8(&plain).is_err() {
            return Err(RouteError::NotUtf8 { near: near(start) });
        }
        // Split at every separator, raw or decoded.
        for part in decoded.split(|(b, _)| matches!(b, b'/' | b'\\')) {
            let cut = part
                .iter()
                .position(|(b, _)| matches!(b, b';' | b'?' | b'#'))
                .unwrap_or(part.len());
            let kept = part.get(..cut).unwrap_or(part);
            let text: Vec<u8> = kept.iter().map(|(b, _)| *b).collect();
            let dot = match text.as_slice() {
                b"." => Dot::One,
                b".." => Dot::Two,
                _ => Dot::No,
            };
            if dot != Dot::No && !plain_dot {
                features.dot_params |= cut < part.len();
                features.encoded_dot |= kept.iter().any(|(_, escaped)| *escaped);
            }
            // Splitting valid UTF-8 at ASCII bytes leaves valid UTF-8.
            let text = String::from_utf8(text).unwrap_or_default();
            out.push(Segment { text, dot });
        }
        features.encoded_separator |= decoded
            .iter()
            .any(|(b, escaped)| *escaped && matches!(b, b'/' | b'\\'));
    }
    // The path starts with a separator: the first segment is the empty one
    // before it.
    if !out.is_empty() {
        out.remove(0);
    }
    let last = out.len().saturating_sub(1);
    features.empty_segment = out
        .iter()
        .enumerate()
        .any(|(i, s)| i < last && s.text.is_empty());
    Ok((out, features))
}

/// Dot segments resolved (clamped at the root), empty segments merged,
/// letters folded.
fn resolved(segments: &[Segment]) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing = false;
    for s in segments {
        trailing = true;
        match s.dot {
            Dot::One => {}
            Dot::Two => {
                stack.pop();
            }
            Dot::No if s.text.is_empty() => {}
            Dot::No => {
                stack.push(&s.text);
                trailing = false;
            }
        }
    }
    join(&stack, trailing)
}

/// Dot segments kept as names, empty segments merged, letters folded.
fn literal(segments: &[Segment]) -> String {
    let parts: Vec<&str> = segments
        .iter()
        .map(|s| s.text.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let trailing = segments.last().is_some_and(|s| s.text.is_empty());
    join(&parts, trailing)
}

fn join(parts: &[&str], trailing: bool) -> String {
    let mut out = String::from("/");
    out.push_str(&parts.join("/"));
    if trailing && !parts.is_empty() {
        out.push('/');
    }
    fold(&out)
}

/// Lowercase for matching: ASCII, Unicode lowercasing for other letters, and
/// the code points case-insensitive comparisons map onto ASCII letters.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{212A}' => out.push('k'),
            '\u{017F}' => out.push('s'),
            '\u{0130}' | '\u{0131}' => out.push('i'),
            c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// A compiled `match.pathPrefix`: canonical, without a trailing slash
/// (except the root), matched at a segment boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

impl PathPrefix {
    /// Canonicalises a bundle's `pathPrefix`. Refused: not starting with
    /// `/`, a query or fragment, `;params`, dot segments, and whatever a
    /// request path is refused for.
    pub fn parse(prefix: &str) -> Result<PathPrefix, String> {
        if !prefix.starts_with('/') {
            return Err(format!("pathPrefix {prefix:?} must start with '/'"));
        }
        if prefix.contains(['?', '#', ';']) {
            return Err(format!(
                "pathPrefix {prefix:?} must not contain '?', '#' or ';' (servers cut the path there)"
            ));
        }
        let (segments, _) = split_segments(prefix).map_err(|e| format!("pathPrefix: {e}"))?;
        if segments.iter().any(|s| s.dot != Dot::No) {
            return Err(format!(
                "pathPrefix {prefix:?} must not contain '.' or '..' segments"
            ));
        }
        let canonical = resolved(&segments);
        let canonical = match canonical.strip_suffix('/') {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => canonical,
        };
        Ok(PathPrefix(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a canonical path is under this prefix: `/mcp` matches `/mcp`,
    /// `/mcp/` and `/mcp/x`, not `/mcpx`; `/` matches every path (not `*`).
    pub fn matches(&self, path: &str) -> bool {
        if self.0 == "/" {
            return path.starts_with('/');
        }
        match path.strip_prefix(self.0.as_str()) {
            None => false,
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
        }
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A compiled `match.authority`: canonical host, optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Canonicalises a bundle's `authority` (`host` or `host:port`; no
    /// userinfo, no empty port).
    pub fn parse(authority: &str) -> Result<HostPattern, String> {
        if authority.ends_with(':') {
            return Err(format!("authority {authority:?} has an empty port"));
        }
        let (host, port) = canonical_authority(authority, Userinfo::Refuse)
            .map_err(|e| format!("{e}; write a host or host:port"))?;
        Ok(HostPattern { host, port })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Same host; and the pattern names no port, or the same port, or a
    /// default port (80, 443) when the request names none.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if self.host != host {
            return false;
        }
        match (self.port, port) {
            (None, _) => true,
            (Some(p), Some(q)) => p == q,
            (Some(p), None) => p == 80 || p == 443,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.host.contains(':');
        match (bracket, self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    fn target(authority: &str, path: &str) -> Target {
        Target::parse(authority, path).unwrap_or_else(|e| panic!("{authority} {path}: {e}"))
    }

    /// The canonical path.
    fn canon(path: &str) -> String {
        target("h", path).path().to_owned()
    }

    /// Every reading.
    fn readings(path: &str) -> Vec<String> {
        target("h", path).paths().map(str::to_owned).collect()
    }

    /// Whether some reading of `path` is under `prefix`.
    fn under(prefix: &str, path: &str) -> bool {
        let prefix = PathPrefix::parse(prefix).unwrap();
        target("h", path).paths().any(|p| prefix.matches(p))
    }

    fn refused(authority: &str, path: &str) -> RouteError {
        match Target::parse(authority, path) {
            Ok(t) => panic!("{authority} {path} was accepted as {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn spellings_of_mcp_all_match() {
        for path in [
            "/mcp",
            "/mcp/",
            "/mcp/x",
            "/mcp?x=1",
            "/mcp#frag",
            "/MCP",
            "/Mcp/",
            "/%6dcp",
            "/%6Dcp",
            "/%4D%43%50/",
            "//mcp",
            "///mcp//",
            "/mcp;jsessionid=1",
            "/mcp;a=b/x",
            "/MCP;a=b/./",
            "/a/../mcp",
            "/a/b/../../mcp",
            "/../mcp",
            "/../../mcp/x",
            "/./mcp",
            "/%2e%2e/mcp",
            "/%2E%2E/mcp",
            "/x/%2e%2e/mcp",
            "/x/.%2e/mcp",
            "/x/..%2fmcp",
            "/x/..%2Fmcp",
            "/x%2f..%2fmcp",
            "\\mcp",
            "/x\\..\\mcp",
            "\\\\mcp",
            "/x/..;/mcp",
            "/x/..;a=b/mcp",
            "/mcp%2fx",
            "/mcp%3bx",
            "/mcp%3Fx",
            "/mcp%23x",
            "/%4d%43%50",
            "/MCP/../mcp/",
            "/mcp/.",
            "/mcp/..",
            "/mcp/../x",
            "/mcp/..%2fx",
            "http://h/mcp",
            "HTTPS://h/MCP?q",
            "http://h\\mcp",
            "//evil.example/mcp",
            "/\\evil.example/mcp",
        ] {
            assert!(under("/mcp", path), "{path} should be under /mcp");
        }
    }

    #[test]
    fn look_alikes_do_not_match() {
        for path in [
            "/mcpx", "/mc", "/x/mcp", "/mc%70x", "/mcp./x", "/mc;p", "*", "/%6d/cp", "/x/./mcp",
        ] {
            assert!(!under("/mcp", path), "{path} should not be under /mcp");
        }
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(canon("/mcp"), "/mcp");
        assert_eq!(canon("/"), "/");
        assert_eq!(canon("/mcp/"), "/mcp/");
        assert_eq!(canon("/%4D%43%50/"), "/mcp/");
        assert_eq!(canon("//mcp"), "/mcp");
        assert_eq!(canon("/a//b///c"), "/a/b/c");
        assert_eq!(canon("/x/..%2fmcp"), "/mcp");
        assert_eq!(canon("/mcp;jsessionid=1"), "/mcp");
        assert_eq!(canon("/MCP;a=b/./"), "/mcp/");
        assert_eq!(canon("/%2e%2e/mcp"), "/mcp");
        assert_eq!(canon("/../../.."), "/");
        assert_eq!(canon("/a/b/.."), "/a/");
        assert_eq!(canon("/a/b/."), "/a/b/");
        assert_eq!(canon("\\mcp"), "/mcp");
        assert_eq!(canon("/a%20b"), "/a b");
        assert_eq!(canon("/caf%C3%A9"), "/café");
        assert_eq!(canon("/CAF%C3%89"), "/café");
        assert_eq!(canon("/%E2%84%AAey"), "/key");
        assert_eq!(canon("/\u{212A}EY"), "/key");
        assert_eq!(canon("/ba%C5%BF"), "/bas");
        assert_eq!(canon("/%C4%B0D/%C4%B1d"), "/id/id");
        assert_eq!(canon("/100%25"), "/100%");
        assert_eq!(canon("/a%25zz"), "/a%zz");
        assert_eq!(canon("/a?b/../c"), "/a");
        assert_eq!(canon("/a#/../c"), "/a");
        assert_eq!(canon("*"), "*");
        assert_eq!(canon("/x%3Fy/z"), "/x/z");
    }

    #[test]
    fn dot_segments_also_read_literally() {
        // Starlette keeps /mcp/../x under Mount("/mcp"); nginx makes it /x.
        assert_eq!(readings("/mcp/../x"), ["/x", "/mcp/../x"]);
        assert_eq!(readings("/x/..%2fmcp"), ["/mcp", "/x/../mcp"]);
        assert_eq!(readings("/a/%2e%2e/b"), ["/b", "/a/../b"]);
        assert_eq!(readings("/mcp/x"), ["/mcp/x"]);
        // A network-path reading, for `new URL(target, base)`.
        assert_eq!(readings("//evil/mcp?x"), ["/evil/mcp", "/mcp"]);
        assert_eq!(readings("//mcp"), ["/mcp", "/"]);
    }

    #[test]
    fn mixed_dot_spellings_are_refused() {
        for path in [
            "/a%2Fb/../mcp",      // raw resolvers pop a%2Fb, decoders pop b
            "/b/a%2F../../mcp",   // a%2F.. is one segment before decoding
            "/x/%2e%2e/y/../mcp", // a resolver that decodes no dots keeps %2e%2e
            "/x//../mcp",         // merging slashes first pops x
            "/x\\y/../mcp",       // WHATWG splits at the backslash
            "/x/..;a/y/../mcp",   // Tomcat strips the params, nginx does not
            "/x/..%2f%2e%2e/mcp",
        ] {
            assert!(
                matches!(refused("h", path), RouteError::AmbiguousDotSegments { .. }),
                "{path}"
            );
        }
    }

    #[test]
    fn undecodable_paths_are_refused() {
        assert!(matches!(
            refused("h", "/mcp%"),
            RouteError::MalformedEscape { .. }
        ));
        assert!(matches!(
            refused("h", "/mcp%4"),
            RouteError::MalformedEscape { .. }
        ));
        assert!(matches!(
            refused("h", "/%zzmcp"),
            RouteError::MalformedEscape { .. }
        ));
        assert!(matches!(
            refused("h", "/%%32%46"),
            RouteError::MalformedEscape { .. }
        ));
        assert!(matches!(
            refused("h", "/mcp%00"),
            RouteError::ControlCharacter { .. }
        ));
        assert!(matches!(
            refused("h", "/mcp%0a"),
            RouteError::ControlCharacter { .. }
        ));
        assert!(matches!(
            refused("h", "/mcp%7F"),
            RouteError::ControlCharacter { .. }
        ));
        assert!(matches!(
            refused("h", "/mcp\u{0}"),
            RouteError::InvalidCharacter { .. }
        ));
        assert!(matches!(
            refused("h", "/m cp"),
            RouteError::InvalidCharacter { .. }
        ));
        assert!(matches!(
            refused("h", "/mcp\t"),
            RouteError::InvalidCharacter { .. }
        ));
        assert!(matches!(
            refused("h", "/%c0%ae%c0%ae/mcp"),
            RouteError::NotUtf8 { .. }
        ));
        assert!(matches!(refused("h", "/%ff"), RouteError::NotUtf8 { .. }));
        assert!(matches!(
            refused("h", "/%252e%252e/mcp"),
            RouteError::DoubleEncoding { .. }
        ));
        assert!(matches!(
            refused("h", "/x/..%252Fmcp"),
            RouteError::DoubleEncoding { .. }
        ));
        assert!(matches!(
            refused("h", "/%25%32%46"),
            RouteError::DoubleEncoding { .. }
        ));
        assert!(matches!(
            refused("h", "/%256dcp"),
            RouteError::DoubleEncoding { .. }
        ));
    }

    #[test]
    fn target_forms() {
        assert!(matches!(refused("h", ""), RouteError::TargetForm { .. }));
        assert!(matches!(refused("h", "mcp"), RouteError::TargetForm { .. }));
        assert!(matches!(
            refused("h", "ftp://h/mcp"),
            RouteError::TargetForm { .. }
        ));
        assert!(matches!(
            refused("h", "h:443"),
            RouteError::TargetForm { .. }
        ));
        assert!(matches!(refused("h", "**"), RouteError::TargetForm { .. }));
        let t = target("", "http://API.example.com.:443/mcp");
        assert_eq!(
            (t.host(), t.port(), t.path()),
            ("api.example.com", Some(443), "/mcp")
        );
        let t = target("api.example.com", "https://api.example.com:443");
        assert_eq!(
            (t.host(), t.port(), t.path()),
            ("api.example.com", None, "/")
        );
        let t = target("api.example.com:80", "http://api.example.com/mcp");
        assert_eq!((t.host(), t.port()), ("api.example.com", None));
        let t = target("api.example.com", "http://user:pw@API.example.com/mcp");
        assert_eq!(t.host(), "api.example.com");
        assert!(matches!(
            refused("other.example.com", "http://api.example.com/mcp"),
            RouteError::AuthorityMismatch { .. }
        ));
        assert!(matches!(
            refused("h", "http:///mcp"),
            RouteError::Authority { .. }
        ));
        // A path that merely contains :// is origin-form.
        assert_eq!(canon("/redirect/http://x/mcp"), "/redirect/http:/x/mcp");
    }

    #[test]
    fn authorities() {
        let hp = |a: &str| {
            let t = target(a, "/");
            (t.host().to_owned(), t.port())
        };
        assert_eq!(hp("API.Example.COM"), ("api.example.com".into(), None));
        assert_eq!(hp("api.example.com."), ("api.example.com".into(), None));
        assert_eq!(
            hp("api.example.com..:8443"),
            ("api.example.com".into(), Some(8443))
        );
        assert_eq!(
            hp("user:pw@api.example.com"),
            ("api.example.com".into(), None)
        );
        assert_eq!(
            hp("user@api.example.com:80"),
            ("api.example.com".into(), Some(80))
        );
        assert_eq!(hp("[::1]:8080"), ("::1".into(), Some(8080)));
        assert_eq!(hp("[::1]"), ("::1".into(), None));
        assert_eq!(hp("[0:0:0:0:0:0:0:1]"), ("::1".into(), None));
        assert_eq!(hp("[2001:DB8::A]:443"), ("2001:db8::a".into(), Some(443)));
        assert_eq!(hp("127.0.0.1:00080"), ("127.0.0.1".into(), Some(80)));
        assert_eq!(hp("h:"), ("h".into(), None));
        let t = Target::parse_with_scheme(Some("https"), "h:443", "/").unwrap();
        assert_eq!(t.port(), None);
        let t = Target::parse_with_scheme(Some("http"), "h:443", "/").unwrap();
        assert_eq!(t.port(), Some(443));
        for bad in [
            "",
            ":8080",
            "user@",
            "a@b@c",
            "h:0",
            "h:65536",
            "h:99999999999",
            "h:8o",
            "h:-1",
            "[::1",
            "[::1]x",
            "[::g]",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "::1",
            "a b",
            "a/b",
            "%61pi.example.com",
            "a..b",
            ".a",
            "...",
            "h\u{0}",
            "bücher.de",
            "a,b",
        ] {
            assert!(
                matches!(refused(bad, "/"), RouteError::Authority { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("Api.Example.com").unwrap();
        assert!(p.matches("api.example.com", None));
        assert!(p.matches("api.example.com", Some(8443)));
        assert!(!p.matches("api.example.co", None));
        let p = HostPattern::parse("api.example.com:443").unwrap();
        assert!(p.matches("api.example.com", Some(443)));
        assert!(p.matches("api.example.com", None));
        assert!(!p.matches("api.example.com", Some(8443)));
        let p = HostPattern::parse("api.example.com:8443").unwrap();
        assert!(!p.matches("api.example.com", None));
        let p = HostPattern::parse("[::1]:8080").unwrap();
        assert_eq!(p.to_string(), "[::1]:8080");
        assert!(p.matches("::1", Some(8080)));
        assert_eq!(HostPattern::parse("H.").unwrap().to_string(), "h");
        for bad in ["", "user@h", "h:", "h:0", "a/b", "[::1", "h h"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        let c = |p: &str| PathPrefix::parse(p).unwrap().to_string();
        assert_eq!(c("/mcp"), "/mcp");
        assert_eq!(c("/MCP/"), "/mcp");
        assert_eq!(c("/%6dcp"), "/mcp");
        assert_eq!(c("//a//b/"), "/a/b");
        assert_eq!(c("/"), "/");
        assert_eq!(c("//"), "/");
        for bad in [
            "mcp",
            "",
            "/mcp?x",
            "/mcp#x",
            "/mcp;v=1",
            "/a/../mcp",
            "/./mcp",
            "/%2e%2e/mcp",
            "/mcp%",
            "/%252F",
            "/mcp%00",
        ] {
            assert!(PathPrefix::parse(bad).is_err(), "{bad:?}");
        }
        let root = PathPrefix::parse("/").unwrap();
        assert!(root.matches("/"));
        assert!(root.matches("/anything"));
        assert!(!root.matches("*"));
        let p = PathPrefix::parse("/a/b").unwrap();
        assert!(p.matches("/a/b"));
        assert!(p.matches("/a/b/"));
        assert!(p.matches("/a/b/c"));
        assert!(!p.matches("/a/bc"));
        assert!(!p.matches("/a"));
        assert!(under("/a/b", "/a%2Fb"));
        assert!(under("/a/b", "/A;x/B;y/"));
    }

    #[test]
    fn errors_echo_at_most_a_truncated_excerpt() {
        let long = format!("/{}%zz", "a".repeat(500));
        let text = refused("h", &long).to_string();
        assert!(text.len() < 200, "{text}");
        let text = refused(&format!("{}!", "b".repeat(300)), "/").to_string();
        assert!(text.contains('…') && text.len() < 200, "{text}");
        let text = refused("h", "/\u{1b}[31m").to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}

//! Content-Type as every side reads it.
//!
//! The filter inspects a body as JSON or as an event stream, decoded as
//! UTF-8. A client or server that takes the same header to mean another
//! media type or another charset acts on bytes the filter never read. This
//! module parses a Content-Type value strictly (RFC 9110 §8.3.1: `type "/"
//! subtype *( OWS ";" OWS name "=" ( token / quoted-string ) )`, names
//! case-insensitive) and refuses what the implementations below could read
//! differently from each other:
//!
//! * a `charset` other than `utf-8` ([`MediaType::require_utf8`]), quoted or
//!   not, in any case;
//! * a parameter named twice (`charset=utf-8; charset=utf-7`: Python's
//!   `email.message.Message.get_param` takes the first, the `content-type`
//!   npm package the last);
//! * parameter names with `*` (RFC 2231/8187 extended values: Python's
//!   `email` module reads `charset*=''utf-7` and `charset*0=utf-7` as the
//!   charset, npm `content-type` as other parameters);
//! * quoted-pairs and non-ASCII octets in quoted strings (Python unquotes
//!   only `\\` and `\"`, npm `content-type` every `\x`), empty parameters
//!   (`;;`), spaces around `=`, lists (`a/b, c/d`: what a repeated header
//!   becomes when joined), and anything else outside the grammar.
//!
//! Python's codec lookup is loose (`codecs.lookup` folds every
//! non-alphanumeric run to `_`, so `"utf-7`, `'utf-7'`, `utf\-7` and
//! `u8`/`utf8` are all codecs), and so is iconv-lite's (it drops every
//! non-alphanumeric), so only the exact name `utf-8` is accepted.
//!
//! # What each side does with Content-Type (as read for this module)
//!
//! Requests, servers:
//! * **TS SDK 1.32.2, Streamable HTTP** (`server/webStandardStreamableHttp.js:475-497`):
//!   `isJsonContentType` (`shared/mediaType.js:25-56`): the `content-type`
//!   package's essence must be `application/json`; when the parameters do not
//!   parse, the essence is the text before the first `;`, trimmed and
//!   lower-cased, unless a `,` follows it. The body is then decoded by
//!   `readRequestBody` (`server/requestBody.js:36-56`) with `new TextDecoder()`:
//!   UTF-8 whatever the charset, one leading BOM stripped. But when an
//!   Express app uses `express.json()` (as `createMcpExpressApp` does,
//!   `server/express.js:47`) the body arrives as `parsedBody`, decoded by
//!   body-parser with the charset (any `utf-*`, via iconv-lite, which has
//!   `utf-7`, `utf-16le`, `utf-16be`, `utf-32`) and inflated per
//!   Content-Encoding (gzip, deflate, br).
//! * **TS SDK 1.32.2, legacy HTTP+SSE** (`server/sse.js:106-114`, used by
//!   server-everything's `sse` transport, `transports/sse.js:44-55`):
//!   `contentType.parse` strictly, `type === 'application/json'`, then
//!   `getRawBody(req, { encoding: ct.parameters.charset ?? 'utf-8' })`: the
//!   body is decoded with whatever charset iconv-lite knows (`utf-7`,
//!   `utf-16le`, `latin1`, ...).
//! * **Python SDK 2.3.0**: every POST first passes
//!   `TransportSecurityMiddleware.validate_request`
//!   (`mcp/server/transport_security.py:94-107`):
//!   `content_type.lower().startswith("application/json")` on the *first*
//!   Content-Type header (Starlette's `Headers.get`, `starlette/datastructures.py:560-565`),
//!   so `application/jsonx`, `application/json-seq` and
//!   `application/json, text/plain` pass. The session transport then also
//!   requires one comma-separated item before the first `;` to equal
//!   `application/json` exactly, case-sensitively
//!   (`mcp/server/streamable_http.py:529-534`; `text/plain, application/json`
//!   is stopped by the first check). The body is `pydantic_core.from_json`
//!   (UTF-8 only, no BOM) there (`streamable_http.py:578-581`), and
//!   `validate_json` in the legacy SSE transport (`mcp/server/sse.py:268-272`).
//!   The 2026-07-28 handler (`mcp/server/_streamable_http_modern.py:393-412`)
//!   has only the prefix check and reads the body with `json.loads(bytes)`,
//!   which detects UTF-8 (BOM stripped), UTF-16 and UTF-32 itself.
//!
//! Responses, clients:
//! * **Python SDK client, POST** (`mcp/client/streamable_http.py:434-446`):
//!   `content-type` lower-cased (`httpx` joins repeated headers with `, `);
//!   `startswith("application/json")` reads the body as JSON
//!   (`validate_json(bytes)`: UTF-8, the charset ignored, lines 448-458);
//!   `startswith("text/event-stream")` hands it to `EventSource`, which
//!   requires the essence (`partition(";")`, stripped, lower-cased) to be
//!   `text/event-stream` (`httpx2/_sse.py:205-208`) and decodes the text with
//!   the charset parameter if Python knows the codec (`httpx2/_models.py:675-717`,
//!   charset from `email.message`, lines 101-106); anything else, and a
//!   missing header, is an "Unexpected content type" error for the request.
//!   A status >= 400 with a body starting `application/json` that parses as a
//!   JSON-RPC error is delivered as the request's answer (lines 398-415).
//! * **Python SDK client, GET** (lines 221-231, and resumption 275-316): the
//!   `EventSource` essence check: only `text/event-stream` is read.
//! * **TS SDK client, POST** (`client/streamableHttp.js:397-420`):
//!   `mediaTypeEssence` as above; `text/event-stream` is read as SSE
//!   (`TextDecoderStream`: UTF-8, charset ignored), `application/json` with
//!   `response.json()` (UTF-8, BOM stripped), anything else (or no header) is
//!   an error. A non-2xx body is put in the thrown error's message (line 378).
//! * **TS SDK client, GET** (`client/streamableHttp.js:88-121`): any 2xx is
//!   parsed as an event stream **whatever its Content-Type**, missing
//!   included. See [`client_reading`].

/// A parsed Content-Type value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// The type, lower-cased (`application`).
    pub type_: String,
    /// The subtype, lower-cased (`json`).
    pub subtype: String,
    /// Parameters in order: names lower-cased, values unquoted with their
    /// case kept. No name appears twice.
    pub params: Vec<(String, String)>,
}

/// Why a Content-Type is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("the Content-Type header is missing")]
    Missing,
    #[error("more than one Content-Type header; implementations disagree on which one counts")]
    Repeated,
    #[error("the Content-Type is not a single media type (RFC 9110 §8.3.1): {reason}")]
    Malformed { reason: &'static str },
    #[error(
        "the Content-Type names parameter {name:?} twice; implementations disagree on which one counts"
    )]
    DuplicateParameter { name: String },
    #[error(
        "the Content-Type parameter {name:?} uses the RFC 2231 extended form, which some \
         implementations read as the plain parameter"
    )]
    ExtendedParameter { name: String },
    #[error(
        "the Content-Type charset {charset:?} is not utf-8; only UTF-8 bodies can be inspected"
    )]
    Charset { charset: String },
}

impl MediaType {
    /// `type/subtype`, lower-cased.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.type_, self.subtype)
    }

    /// Whether the essence is `application/json`.
    pub fn is_json(&self) -> bool {
        self.type_ == "application" && self.subtype == "json"
    }

    /// Whether the essence is `text/event-stream`.
    pub fn is_event_stream(&self) -> bool {
        self.type_ == "text" && self.subtype == "event-stream"
    }

    /// The value of parameter `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `charset` parameter, if given.
    pub fn charset(&self) -> Option<&str> {
        self.param("charset")
    }

    /// Refuses a `charset` other than `utf-8` (ASCII case-insensitive).
    /// A missing charset is UTF-8 to every side that matters here (JSON is
    /// UTF-8; httpx2's default encoding is `utf-8`; WHATWG and
    /// `TextDecoder` decode UTF-8).
    pub fn require_utf8(&self) -> Result<(), MediaError> {
        match self.charset() {
            None => Ok(()),
            Some(c) if c.eq_ignore_ascii_case("utf-8") => Ok(()),
            Some(c) => Err(MediaError::Charset {
                charset: c.chars().take(40).collect(),
            }),
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A cursor over the header value's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        self.bytes.get(start..self.pos).unwrap_or_default()
    }

    /// A quoted string, the opening quote already seen at `pos`; returns its
    /// content. Quoted-pairs and non-ASCII octets are refused.
    fn quoted(&mut self) -> Result<&'a [u8], MediaError> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => {
                    return Err(MediaError::Malformed {
                        reason: "unterminated quoted string",
                    });
                }
                Some(b'"') => {
                    let content = self.bytes.get(start..self.pos).unwrap_or_default();
                    self.pos += 1;
                    return Ok(content);
                }
                Some(b'\\') => {
                    return Err(MediaError::Malformed {
                        reason: "a quoted-pair (backslash) in a quoted string",
                    });
                }
                Some(b) if b == b'\t' || (0x20..0x7f).contains(&b) => self.pos += 1,
                Some(_) => {
                    return Err(MediaError::Malformed {
                        reason: "a control or non-ASCII character in a quoted string",
                    });
                }
            }
        }
    }
}

/// Parses one Content-Type value strictly (see the module documentation).
pub fn parse(value: &str) -> Result<MediaType, MediaError> {
    let mut c = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    c.skip_ows();
    let type_ = c.token();
    if type_.is_empty() || c.peek() != Some(b'/') {
        return Err(MediaError::Malformed {
            reason: "expected type/subtype",
        });
    }
    c.pos += 1;
    let subtype = c.token();
    if subtype.is_empty() {
        return Err(MediaError::Malformed {
            reason: "expected type/subtype",
        });
    }
    let lower = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase();
    let mut media = MediaType {
        type_: lower(type_),
        subtype: lower(subtype),
        params: Vec::new(),
    };
    loop {
        c.skip_ows();
        match c.peek() {
            None => break,
            Some(b';') => c.pos += 1,
            Some(_) => {
                return Err(MediaError::Malformed {
                    reason: "expected ';' between parameters",
                });
            }
        }
        c.skip_ows();
        let name = c.token();
        if name.is_empty() {
            return Err(MediaError::Malformed {
                reason: "an empty or unnamed parameter",
            });
        }
        if c.peek() != Some(b'=') {
            return Err(MediaError::Malformed {
                reason: "a parameter needs '=' right after its name",
            });
        }
        c.pos += 1;
        let raw_value = if c.peek() == Some(b'"') {
            c.quoted()?
        } else {
            let t = c.token();
            if t.is_empty() {
                return Err(MediaError::Malformed {
                    reason: "a parameter value must be a token or a quoted string",
                });
            }
            t
        };
        let name = lower(name);
        if name.contains('*') {
            return Err(MediaError::ExtendedParameter { name });
        }
        if media.params.iter().any(|(n, _)| *n == name) {
            return Err(MediaError::DuplicateParameter { name });
        }
        media
            .params
            .push((name, String::from_utf8_lossy(raw_value).into_owned()));
    }
    Ok(media)
}

/// [`parse`], then [`MediaType::require_utf8`]: the check for a request or
/// response body the filter is going to inspect.
pub fn parse_utf8(value: &str) -> Result<MediaType, MediaError> {
    let media = parse(value)?;
    media.require_utf8()?;
    Ok(media)
}

/// The one Content-Type header among `headers` (names compared ASCII
/// case-insensitively): `None` when there is none, [`MediaError::Repeated`]
/// when there are several (httpx and fetch join them with `, `, Starlette and
/// Node's `http` keep the first, the filter cannot know which one a side
/// uses).
pub fn single_header(headers: &[(String, String)]) -> Result<Option<&str>, MediaError> {
    let mut found = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            if found.is_some() {
                return Err(MediaError::Repeated);
            }
            found = Some(value.as_str());
        }
    }
    Ok(found)
}

/// Which request a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// A POST of JSON-RPC messages.
    Post,
    /// A GET that opens (or resumes) a server-message stream.
    Get,
}

/// How some official client may read a 2xx response body, over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientReading {
    /// Some client parses the body as JSON.
    pub json: bool,
    /// Some client parses the body as an event stream.
    pub sse: bool,
}

/// How the Python and TypeScript SDK clients may read a 2xx response with
/// Content-Type `content_type` (`None`: no header) answering `to`
/// (file:line in the module documentation). A body some client reads must
/// be inspected as that, or refused; a response with neither flag is read
/// by no client. For a GET the answer is always `sse`, because the TS client
/// never looks at the Content-Type of its GET stream.
pub fn client_reading(content_type: Option<&str>, to: Answering) -> ClientReading {
    let value = content_type.unwrap_or("");
    // Python's `str.lower()` and JS `toLowerCase()` map no non-ASCII
    // character to an ASCII letter of these media types (U+212A KELVIN SIGN
    // lower-cases to `k`, which neither contains).
    let lowered = value.to_lowercase();
    // The essence as the TS client (`mediaTypeEssence`) and the Python
    // `EventSource` check take it: before the first `;`, trimmed. Trimming
    // every Unicode space over-approximates both `String.prototype.trim` and
    // `str.strip`.
    let first = lowered
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    match to {
        Answering::Get => ClientReading {
            json: false,
            sse: true,
        },
        Answering::Post => ClientReading {
            json: content_type.is_some()
                && (lowered.starts_with("application/json") || first == "application/json"),
            sse: content_type.is_some()
                && (lowered.starts_with("text/event-stream") || first == "text/event-stream"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_media_types_and_parameters() {
        let m = parse("Application/JSON").unwrap();
        assert!(m.is_json() && !m.is_event_stream());
        assert_eq!(m.essence(), "application/json");
        let m = parse(" text/event-stream ;\tCharSet=\"UTF-8\" ; x=y ").unwrap();
        assert!(m.is_event_stream());
        assert_eq!(m.charset(), Some("UTF-8"));
        assert_eq!(m.param("X"), Some("y"));
        assert!(m.require_utf8().is_ok());
        let m = parse("application/json; profile=\"a; b=c\"").unwrap();
        assert_eq!(m.param("profile"), Some("a; b=c"));
        assert_eq!(m.charset(), None);
        assert!(parse_utf8("application/json").unwrap().is_json());
        assert!(parse_utf8("application/json;charset=utf-8").is_ok());
    }

    /// httpx2 decodes an event stream with the charset it names
    /// (`httpx2/_models.py:675-717`), and the TS legacy server and
    /// body-parser decode request bodies with it (iconv-lite): any charset
    /// but UTF-8 means bytes the filter read as UTF-8 are read as something
    /// else. Python's codec lookup folds punctuation (`"utf-7`, `'utf-7'`
    /// and `utf\-7` are UTF-7), so the value must be exactly `utf-8`.
    #[test]
    fn charsets_other_than_utf8_are_refused() {
        for value in [
            "text/event-stream; charset=utf-7",
            "text/event-stream; charset=\"UTF-7\"",
            "text/event-stream; charset='utf-8'",
            "application/json; charset=utf-16le",
            "application/json; charset=utf8",
            "application/json; charset=utf-8-sig",
            "application/json; charset=latin1",
            "application/json; charset=\"utf-8 \"",
        ] {
            assert!(
                matches!(parse_utf8(value), Err(MediaError::Charset { .. })),
                "accepted {value:?}"
            );
        }
    }

    /// Python's `email` parser (behind httpx2's charset) takes the first of
    /// two parameters and reads `charset*` / `charset*0` as `charset`; npm
    /// `content-type` takes the last and keeps `charset*` apart.
    #[test]
    fn duplicate_and_extended_parameters_are_refused() {
        assert_eq!(
            parse("text/event-stream; charset=utf-8; CHARSET=utf-7"),
            Err(MediaError::DuplicateParameter {
                name: "charset".into()
            })
        );
        for value in [
            "text/event-stream; charset*=''utf-7",
            "text/event-stream; charset*0=utf-7",
            "text/event-stream; charset=utf-8; charset*=utf-8''utf-7",
        ] {
            assert!(
                matches!(parse(value), Err(MediaError::ExtendedParameter { .. })),
                "accepted {value:?}"
            );
        }
    }

    /// Values outside the grammar are read differently by each side
    /// (Python's `email` splits quote-aware and unquotes only `\\` and
    /// `\"`; TS falls back to the text before `;`; a joined repeated header
    /// has a comma), so all are refused.
    #[test]
    fn malformed_values_are_refused() {
        for value in [
            "",
            " ",
            "application",
            "application/",
            "/json",
            "application/json, text/event-stream",
            "application/json,text/plain",
            "application/json;",
            "application/json;;charset=utf-8",
            "application/json; charset",
            "application/json; charset=",
            "application/json; charset = utf-8",
            "application/json; charset=\"utf-8",
            "application/json; charset=\"utf\\-8\"",
            "application/json; x=\"\\\";charset=utf-7\"",
            "application/json; charset=utf-8 (comment)",
            "application/json; x=1 charset=utf-7",
            "application/json; x=\"é\"",
            "application/json\u{0}",
            "application/jsön",
            "text/event-stream; charset=utf-8\"",
        ] {
            assert!(
                matches!(parse(value), Err(MediaError::Malformed { .. })),
                "accepted {value:?}: {:?}",
                parse(value)
            );
        }
    }

    #[test]
    fn a_repeated_header_is_refused() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(single_header(&h(&[("x", "y")])), Ok(None));
        assert_eq!(
            single_header(&h(&[("Content-Type", "application/json")])),
            Ok(Some("application/json"))
        );
        assert_eq!(
            single_header(&h(&[
                ("content-type", "text/event-stream"),
                ("CONTENT-TYPE", "application/json")
            ])),
            Err(MediaError::Repeated)
        );
        // Two headers that httpx joins into `text/event-stream;x=", ";charset=utf-7`:
        // Python's essence is `text/event-stream` and its charset utf-7, while
        // a filter reading the first header sees a plain event stream.
        let split = h(&[
            ("content-type", "text/event-stream;x=\""),
            ("content-type", "\";charset=utf-7"),
        ]);
        assert_eq!(single_header(&split), Err(MediaError::Repeated));
        assert!(matches!(
            parse_utf8("text/event-stream;x=\", \";charset=utf-7"),
            Err(MediaError::Charset { .. })
        ));
    }

    /// The clients' own checks: Python `startswith` on the lower-cased
    /// value (`streamable_http.py:437-441`), TS the essence
    /// (`client/streamableHttp.js:397-420`); and the TS client reads any
    /// 2xx GET answer as an event stream (`client/streamableHttp.js:107-121`).
    #[test]
    fn how_clients_read_responses() {
        let post = |v: Option<&str>| client_reading(v, Answering::Post);
        let both = |json, sse| ClientReading { json, sse };
        assert_eq!(post(Some("application/json")), both(true, false));
        assert_eq!(
            post(Some("Application/JSON; charset=utf-8")),
            both(true, false)
        );
        assert_eq!(post(Some("application/jsonx")), both(true, false));
        assert_eq!(post(Some("application/json-seq")), both(true, false));
        assert_eq!(post(Some(" application/json ;")), both(true, false));
        assert_eq!(post(Some("text/event-stream")), both(false, true));
        assert_eq!(post(Some("text/event-streams")), both(false, true));
        assert_eq!(post(Some("text/plain")), both(false, false));
        assert_eq!(
            post(Some("text/plain; a=application/json")),
            both(false, false)
        );
        assert_eq!(post(None), both(false, false));
        for v in [None, Some("text/plain"), Some("application/json")] {
            assert_eq!(client_reading(v, Answering::Get), both(false, true));
        }
    }
}

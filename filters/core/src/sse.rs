//! Incremental Server-Sent Events parsing, for inspecting streamed MCP
//! responses event by event.
//!
//! A proxy sees an SSE body as arbitrary chunks: an event may be split
//! anywhere, even between the `\r` and `\n` of one line ending or inside the
//! stream's byte-order mark. The parser keeps at most one incomplete event,
//! bounded by a limit, and hands out each event as soon as its terminating
//! blank line arrives, so a long-lived stream flows through event by event
//! instead of being held back.
//!
//! Each [`Event`] keeps its raw bytes: an event the filter does not change is
//! forwarded byte for byte, and only a rewritten one is re-serialised.
//!
//! # One reading for every client
//!
//! The filter inspects what it parsed and forwards bytes; a client that reads
//! those bytes differently acts on something nobody inspected. So the parser
//! accepts only streams that every official client reads the same way, and
//! refuses the rest ([`SseError`]). The clients, as read for this module:
//!
//! * **WHATWG `EventSource`** ("event stream interpretation", HTML §9.2.6):
//!   UTF-8 decode, one leading U+FEFF ignored *at the start of the stream
//!   only* (the grammar is `stream = [ bom ] *event`); lines end in CRLF, LF
//!   or CR; unknown field names are ignored; the charset parameter of the
//!   Content-Type is ignored.
//! * **TypeScript SDK 1.32.2** (`client/streamableHttp.js:189-196`): bytes go
//!   through `TextDecoderStream()` (UTF-8, which strips one real BOM at the
//!   start) and then `eventsource-parser` 3.1.1, whose `feed()` also drops
//!   the three *characters* U+00EF U+00BB U+00BF at the start of the first
//!   decoded chunk (`dist/index.js:21`, char codes 239/187/191), i.e. a BOM
//!   that was UTF-8-encoded twice (bytes `C3 AF C2 BB C2 BF`). Lines end in
//!   CRLF, LF or CR (`index.js:44-83`); unknown fields are reported to
//!   `onError` and otherwise ignored (`index.js:141-148`; the SDK passes no
//!   `onError`, so nothing happens).
//! * **Python SDK 2.3.0** (`mcp/client/streamable_http.py:482`, `httpx2`
//!   `EventSource`, `httpx2/_sse.py:196-226`): text comes from
//!   `Response.aiter_text()`, decoded with the Content-Type's `charset` when
//!   Python knows the codec (`httpx2/_models.py:675-717`, so `utf-7`,
//!   `utf-16`, `utf-8-sig`... are honoured) and UTF-8 otherwise, with
//!   `errors="replace"` (`_decoders.py:377-378`). Python's `utf-8` codec does
//!   *not* strip a BOM. Lines are split by `_SSELineDecoder`
//!   (`_sse.py:127-174`) on CRLF, LF and CR only; it does not use the
//!   `str.splitlines()`-like `LineDecoder` (`_decoders.py:387-435`, which
//!   also breaks at `\x0b \x0c \x1c \x1d \x1e \x85 U+2028 U+2029`).
//!   Unknown fields are ignored (`_sse.py:93-113`).
//!
//! What that means here:
//!
//! * **Byte-order mark.** Exactly one `EF BB BF` is skipped at the very
//!   start of the stream, as WHATWG and `TextDecoderStream` do; it stays in
//!   the first event's [`Event::raw`]. The Python client does not strip it,
//!   so to Python the first line has field name `"\u{feff}data"` and is
//!   ignored: Python then reads *less* than the filter inspected (never
//!   more), so the stream is accepted rather than refused. (If the dropped
//!   line was a `data` line and the event still has others, the filter
//!   parsed `A\nB` as one JSON text and Python parses `B`; a newline can
//!   only sit between JSON tokens, and a suffix of a JSON text that starts
//!   at a token boundary is a complete value only when `A` is whitespace, so
//!   both read the same value.) A U+FEFF anywhere else is part of a field
//!   name and refused below.
//! * **Field names.** A line that is not blank and not a comment must have
//!   the field name `data`, `event`, `id` or `retry`, exactly. Anything else
//!   is refused ([`SseError::UnknownField`]): every client ignores such a
//!   line, but *which* lines count as unknown differs (`"ï»¿data"` is
//!   `data` to the TypeScript client when it opens the stream, and
//!   `"\u{feff}data"` is `data` to a WHATWG parser when it opens the stream),
//!   and the filter would otherwise forward an event it saw without data.
//!   The SDK servers emit nothing else: sse_starlette writes only comments,
//!   `id`, `event`, `data` and `retry` (`sse_starlette/event.py:32-59`; its
//!   keep-alive is the comment `: ping - <time>`, `sse.py:486-507`), and the
//!   TypeScript server only `event: message`, `id`, `retry` and `data`
//!   (`server/webStandardStreamableHttp.js:212-214, 424-431`,
//!   `server/sse.js:71, 154`). Comments (`:` lines) stay legal.
//! * **Line separators that only some readers honour** (`\x0b \x0c \x1c \x1d
//!   \x1e`, U+0085, U+2028, U+2029; what Python's `str.splitlines()` adds to
//!   CR and LF). No official client splits SSE lines on them, but older
//!   Python clients did (`httpx-sse` before 0.4.1 read `aiter_lines()`, i.e.
//!   the `LineDecoder` above), as may any line-oriented tool behind the
//!   filter; to such a reader `event: x\u{2028}data: {...}` carries data the
//!   filter never saw. They are refused ([`SseError::LineSeparator`]) in
//!   field names, comments and the `event`, `id` and `retry` values. In
//!   `data` values the C0 ones are refused too (JSON never contains them
//!   raw), while U+0085, U+2028 and U+2029 are allowed: a JSON text may carry
//!   them raw inside strings (serde_json, `JSON.stringify` and pydantic all
//!   do), and a reader that split there would be left with an unterminated
//!   string, i.e. invalid JSON. To remove even that, [`Event::forward`] and
//!   [`Event::with_data`] write them as `\u2028`-style escapes
//!   ([`crate::json::escape_line_separators`]).
//! * Bytes that are not UTF-8 are refused (clients would substitute U+FFFD).
//!   The charset is the Content-Type's business ([`crate::media`]): a stream
//!   whose charset is not UTF-8 must be refused before it reaches this
//!   parser, because the Python client decodes it with that charset.

use std::borrow::Cow;

/// The UTF-8 encoding of U+FEFF.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Characters that Python's `str.splitlines()` treats as line breaks besides
/// CR and LF.
const SPLITLINES_EXTRA: &[char] = &[
    '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}', '\u{2029}',
];

/// The ones of [`SPLITLINES_EXTRA`] that a JSON text never contains raw.
const C0_SEPARATORS: &[char] = &['\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}'];

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event exactly as received, including its terminating blank line
    /// (and, for the stream's first event, the byte-order mark if any).
    pub raw: Vec<u8>,
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`; `None` when the event had no data line.
    pub data: Option<String>,
    /// `id:` field.
    pub id: Option<String>,
    /// `retry:` field, when it is ASCII digits (as WHATWG and
    /// eventsource-parser require).
    pub retry: Option<u64>,
}

impl Event {
    /// Serialises the event with new `data` (a JSON text), keeping the
    /// original `event`, `id` and `retry` lines and comments where they were;
    /// the new `data:` lines take the place of the first old one.
    ///
    /// Whatever `raw` holds, no line of it that any client could read as
    /// data survives: the output is built from lines whose field name is
    /// exactly `event`, `id` or `retry` and from comments, each free of
    /// `SPLITLINES_EXTRA` characters, so every `data` line, every
    /// lookalike (`"\u{feff}data"`, `"ï»¿data"`, `"Data"`) and the stream's
    /// byte-order mark are dropped. Lines end in LF in the output, whatever
    /// they ended in (CR, CRLF) before. `data` is split at CR, LF and CRLF
    /// into `data:` lines (a JSON text has those only between tokens), and
    /// U+0085, U+2028 and U+2029 in it are written as JSON escapes
    /// ([`crate::json::escape_line_separators`]; in a JSON text they can
    /// only sit inside strings, where the escape means the same character).
    pub fn with_data(&self, data: &str) -> Vec<u8> {
        let data = crate::json::escape_line_separators(data);
        let mut out = Vec::with_capacity(data.len() + self.raw.len() + 8);
        let write_data = |out: &mut Vec<u8>| {
            for part in split_lines_keep_empty(&data) {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(part.as_bytes());
                out.push(b'\n');
            }
        };
        let mut data_written = false;
        let raw = String::from_utf8_lossy(&self.raw);
        let text = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
        for line in split_lines(text) {
            match classify_line(line) {
                Ok(Line::Blank) => {}
                Ok(Line::Field(Field::Data, _)) => {
                    if !data_written {
                        write_data(&mut out);
                        data_written = true;
                    }
                }
                Ok(Line::Comment | Line::Field(Field::Event | Field::Id | Field::Retry, _)) => {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                // A line the parser would have refused (only in an event
                // built by hand): dropped, never copied.
                Err(_) => {}
            }
        }
        if !data_written {
            write_data(&mut out);
        }
        out.push(b'\n');
        out
    }

    /// The bytes to forward for this event when the filter leaves its data
    /// unchanged: [`Event::raw`], unless the data holds U+0085, U+2028 or
    /// U+2029, in which case the event is re-serialised with those escaped
    /// ([`Event::with_data`]), so that not even a line-splitting reader
    /// behind the filter can see a line the filter did not.
    pub fn forward(&self) -> Cow<'_, [u8]> {
        match &self.data {
            Some(d) if d.contains(['\u{85}', '\u{2028}', '\u{2029}']) => {
                Cow::Owned(self.with_data(d))
            }
            _ => Cow::Borrowed(&self.raw),
        }
    }
}

/// Why a stream could not be parsed, or is refused as ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("an SSE event is not valid UTF-8")]
    NotUtf8,
    #[error("the stream ended inside an unterminated SSE event")]
    Truncated,
    /// A line whose field name is not exactly `data`, `event`, `id` or
    /// `retry` (`field` is cut to 32 characters).
    #[error(
        "an SSE line has field name {field:?}, not data, event, id or retry; clients disagree \
         on which such lines carry data (a byte-order mark, a lookalike), so the stream is refused"
    )]
    UnknownField { field: String },
    /// A line holds a character that some line readers treat as a line
    /// break (Python's `str.splitlines()`): `\x0b \x0c \x1c \x1d \x1e`, or
    /// U+0085, U+2028, U+2029 outside a `data` value.
    #[error(
        "an SSE line contains {ch:?}, which some clients read as a line break; the stream is \
         refused so that every client sees the lines the filter inspected"
    )]
    LineSeparator { ch: char },
}

/// The incremental parser. Feed it chunks with [`Parser::push`].
#[derive(Debug, Clone)]
pub struct Parser {
    buf: Vec<u8>,
    /// Next byte of `buf` to examine.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    limit: usize,
    /// Whether the start of the stream was examined for a byte-order mark.
    bom_checked: bool,
    /// Length of the byte-order mark at the start of `buf` (0 or 3); only
    /// ever non-zero while the stream's first event is incomplete.
    bom_len: usize,
}

impl Parser {
    /// A parser that refuses events larger than `limit` bytes.
    pub fn new(limit: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            pos: 0,
            line_start: 0,
            limit,
            bom_checked: false,
            bom_len: 0,
        }
    }

    /// Bytes held back while waiting for an event to complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Adds `chunk` and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        self.drain_events(false, &mut events)?;
        if self.buf.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        Ok(events)
    }

    /// Ends the stream: returns the events still held (a final CR ends a
    /// line here), and an error when bytes of an unterminated event remain,
    /// because the upstream stopped mid-event; those bytes are never passed
    /// on unparsed. (The Python client would dispatch an event ended by a
    /// final CR, `httpx2/_sse.py:156-163`; WHATWG and eventsource-parser
    /// drop it. Refusing covers both.)
    pub fn finish(&mut self) -> (Vec<Event>, Option<SseError>) {
        let mut events = Vec::new();
        if let Err(e) = self.drain_events(true, &mut events) {
            return (events, Some(e));
        }
        let rest = std::mem::take(&mut self.buf);
        let skip = std::mem::take(&mut self.bom_len);
        self.pos = 0;
        self.line_start = 0;
        let rest = rest.get(skip..).unwrap_or(&[]);
        if rest.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            (events, None)
        } else {
            (events, Some(SseError::Truncated))
        }
    }

    fn drain_events(&mut self, eof: bool, events: &mut Vec<Event>) -> Result<(), SseError> {
        while let Some(end) = self.scan_to_event_end(eof) {
            // A whole event can arrive in one chunk: the limit is per event,
            // not only on what is held back.
            if end > self.limit {
                return Err(SseError::TooLarge { limit: self.limit });
            }
            // The event leaves the buffer whole (one copy of what follows
            // it, usually nothing), not byte by byte.
            let rest = self.buf.split_off(end);
            let raw = std::mem::replace(&mut self.buf, rest);
            self.pos = 0;
            self.line_start = 0;
            let skip = std::mem::take(&mut self.bom_len);
            events.push(interpret(raw, skip)?);
        }
        Ok(())
    }

    /// At the start of the stream, decides whether it opens with a
    /// byte-order mark; `false` while too few bytes have arrived to tell.
    fn check_bom(&mut self, eof: bool) -> bool {
        if self.bom_checked {
            return true;
        }
        let n = self.buf.len().min(BOM.len());
        let head = self.buf.get(..n).unwrap_or_default();
        if n < BOM.len() && BOM.starts_with(head) && !eof {
            return false;
        }
        self.bom_checked = true;
        if self.buf.starts_with(BOM) {
            self.bom_len = BOM.len();
            self.pos = BOM.len();
            self.line_start = BOM.len();
        }
        true
    }

    /// Scans from `pos` for a blank line; returns the index just past it.
    fn scan_to_event_end(&mut self, eof: bool) -> Option<usize> {
        if !self.check_bom(eof) {
            return None;
        }
        loop {
            let tail = self.buf.get(self.pos..).unwrap_or_default();
            let Some(next) = line_break(tail) else {
                // No line ends in what arrived: the next chunk is scanned
                // from where this one ended, not from the start again.
                self.pos = self.buf.len();
                return None;
            };
            self.pos += next;
            let &b = self.buf.get(self.pos)?;
            let term_len = match b {
                b'\n' => 1,
                b'\r' => match self.buf.get(self.pos + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A CR at the end may be the first half of a CRLF,
                    // unless the stream has ended.
                    None if eof => 1,
                    None => return None,
                },
                _ => {
                    self.pos += 1;
                    continue;
                }
            };
            let line_is_empty = self.pos == self.line_start;
            self.pos += term_len;
            self.line_start = self.pos;
            if line_is_empty {
                return Some(self.pos);
            }
        }
    }
}

/// The known field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    Event,
    Id,
    Retry,
}

/// One line of an event, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line<'a> {
    Blank,
    Comment,
    /// A field and its value (one leading space dropped).
    Field(Field, &'a str),
}

/// Classifies one line (without its terminator), refusing the lines that
/// clients could read differently (see the module documentation).
fn classify_line(line: &str) -> Result<Line<'_>, SseError> {
    if line.is_empty() {
        return Ok(Line::Blank);
    }
    let (name, value) = match line.split_once(':') {
        Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
        None => (line, ""),
    };
    let field = match name {
        "" => None,
        "data" => Some(Field::Data),
        "event" => Some(Field::Event),
        "id" => Some(Field::Id),
        "retry" => Some(Field::Retry),
        other => {
            if let Some(ch) = find_separator(other, SPLITLINES_EXTRA) {
                return Err(SseError::LineSeparator { ch });
            }
            return Err(SseError::UnknownField {
                field: other.chars().take(32).collect(),
            });
        }
    };
    let forbidden = match field {
        Some(Field::Data) => C0_SEPARATORS,
        _ => SPLITLINES_EXTRA,
    };
    if let Some(ch) = find_separator(value, forbidden) {
        return Err(SseError::LineSeparator { ch });
    }
    Ok(match field {
        None => Line::Comment,
        Some(f) => Line::Field(f, value),
    })
}

/// The first of `forbidden` in `text`. Every separator is a C0 control or
/// non-ASCII, so text of printable ASCII (the common case: a JSON `data`
/// line) is cleared by one pass over its bytes, without decoding chars.
fn find_separator(text: &str, forbidden: &[char]) -> Option<char> {
    if text.bytes().all(|b| (0x20..0x80).contains(&b)) {
        return None;
    }
    text.chars().find(|c| forbidden.contains(c))
}

/// The offset of the first CR or LF in `bytes`.
fn line_break(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\r', b'\n', bytes)
}

fn interpret(raw: Vec<u8>, skip: usize) -> Result<Event, SseError> {
    let body = raw.get(skip..).unwrap_or_default();
    let text = std::str::from_utf8(body).map_err(|_| SseError::NotUtf8)?;
    let mut event = None;
    let mut data: Option<String> = None;
    let mut id = None;
    let mut retry = None;
    for line in split_lines(text) {
        match classify_line(line)? {
            Line::Blank | Line::Comment => {}
            Line::Field(Field::Event, v) => event = Some(v.to_owned()),
            Line::Field(Field::Data, v) => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            },
            Line::Field(Field::Id, v) => {
                if !v.contains('\0') {
                    id = Some(v.to_owned());
                }
            }
            Line::Field(Field::Retry, v) => {
                retry = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse().ok()
                } else {
                    None
                };
            }
        }
    }
    Ok(Event {
        event,
        data,
        id,
        retry,
        raw,
    })
}

/// Lines of `text`, each ended by CRLF, LF or CR (the last one possibly
/// unterminated); an empty `text` has none.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match line_break(rest.as_bytes()) {
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
            Some(i) => {
                let line = rest.get(..i).unwrap_or("");
                let tail = rest.get(i..).unwrap_or("");
                let skip = if tail.starts_with("\r\n") { 2 } else { 1 };
                rest = tail.get(skip..).unwrap_or("");
                Some(line)
            }
        }
    })
}

/// `text` cut at CRLF, LF and CR, keeping empty parts (`""` is one empty
/// part, `"a\n"` is `"a"` and `""`): the `data:` lines that carry `text`.
fn split_lines_keep_empty(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match line_break(current.as_bytes()) {
            None => {
                rest = None;
                Some(current)
            }
            Some(i) => {
                let line = current.get(..i).unwrap_or("");
                let tail = current.get(i..).unwrap_or("");
                let skip = if tail.starts_with("\r\n") { 2 } else { 1 };
                rest = Some(tail.get(skip..).unwrap_or(""));
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b": keep-alive\n\nevent: message\nid: 7\nretry: 1500\ndata: {\"a\":\ndata: 1}\n\r\ndata: second\r\n\r\ndata:third\rdata: x\r\r";

    fn all_at_once() -> Vec<Event> {
        parse_all(SAMPLE).unwrap()
    }

    /// Parses a whole stream, failing on the first error.
    fn parse_all(stream: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut p = Parser::new(1 << 20);
        let mut events = p.push(stream)?;
        let (tail, err) = p.finish();
        events.extend(tail);
        match err {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }

    /// Parses `stream` cut at every point (and byte by byte) and checks that
    /// each way gives the same result as all at once.
    fn same_at_every_split(stream: &[u8]) -> Result<Vec<Event>, SseError> {
        let whole = parse_all(stream);
        for cut in 0..=stream.len() {
            let mut p = Parser::new(1 << 20);
            let got = p.push(&stream[..cut]).and_then(|mut a| {
                a.extend(p.push(&stream[cut..])?);
                let (tail, err) = p.finish();
                a.extend(tail);
                err.map_or(Ok(a), Err)
            });
            assert_eq!(got, whole, "split at {cut}");
        }
        let mut p = Parser::new(1 << 20);
        let mut got = Ok(Vec::new());
        for b in stream {
            match p.push(std::slice::from_ref(b)) {
                Ok(ev) => {
                    if let Ok(g) = &mut got {
                        g.extend(ev);
                    }
                }
                Err(e) => {
                    got = Err(e);
                    break;
                }
            }
        }
        if let Ok(g) = &mut got {
            let (tail, err) = p.finish();
            g.extend(tail);
            if let Some(e) = err {
                got = Err(e);
            }
        }
        assert_eq!(got, whole, "byte by byte");
        whole
    }

    #[test]
    fn parses_fields_comments_and_line_endings() {
        let events = all_at_once();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].data, None);
        assert_eq!(events[1].event.as_deref(), Some("message"));
        assert_eq!(events[1].id.as_deref(), Some("7"));
        assert_eq!(events[1].retry, Some(1500));
        assert_eq!(events[1].data.as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(events[2].data.as_deref(), Some("second"));
        assert_eq!(events[3].data.as_deref(), Some("third\nx"));
        let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.clone()).collect();
        assert_eq!(joined, SAMPLE, "raw bytes are kept exactly");
    }

    #[test]
    fn any_split_point_gives_the_same_events() {
        assert_eq!(same_at_every_split(SAMPLE).unwrap(), all_at_once());
    }

    #[test]
    fn oversize_invalid_and_truncated_events_fail() {
        let mut p = Parser::new(16);
        assert_eq!(
            p.push(b"data: 0123456789abcdef"),
            Err(SseError::TooLarge { limit: 16 })
        );
        let mut p = Parser::new(1024);
        assert_eq!(p.push(b"data: \xff\n\n"), Err(SseError::NotUtf8));
        let mut p = Parser::new(1024);
        assert!(p.push(b"data: {\"half\"").unwrap().is_empty());
        assert_eq!(p.finish(), (vec![], Some(SseError::Truncated)));
    }

    /// The Python client dispatches an event ended by a CR at the very end
    /// of the stream (`httpx2/_sse.py:156-163` turns the held CR into a
    /// newline, and the empty line after it dispatches); WHATWG and
    /// eventsource-parser drop the unterminated event. The filter refuses it.
    #[test]
    fn an_event_cut_by_the_end_of_the_stream_is_refused() {
        assert_eq!(same_at_every_split(b"data: {}\r"), Err(SseError::Truncated));
        assert_eq!(same_at_every_split(b"data: {}\n"), Err(SseError::Truncated));
        assert_eq!(same_at_every_split(b"data: {}\n\r").unwrap().len(), 1);
    }

    #[test]
    fn rewrites_keep_event_and_id() {
        let events = all_at_once();
        let out = events[1].with_data("{}");
        assert_eq!(out, b"event: message\nid: 7\nretry: 1500\ndata: {}\n\n");
        let mut p = Parser::new(1024);
        let again = p.push(&out).unwrap();
        assert_eq!(again[0].data.as_deref(), Some("{}"));
    }

    /// WHATWG (`stream = [ bom ] *event`) and `TextDecoderStream` (TS client)
    /// skip one UTF-8 BOM at the start of the stream: the first line is a
    /// data line to them, so the filter reads it as one too. The Python
    /// client keeps the BOM (its `utf-8` codec does not strip it) and
    /// ignores that line: it reads less than the filter inspected.
    #[test]
    fn one_bom_at_the_stream_start_is_skipped_and_kept_in_raw() {
        let stream = b"\xEF\xBB\xBFdata: {\"a\":1}\n\ndata: 2\n\n";
        let events = same_at_every_split(stream).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(events[0].raw, b"\xEF\xBB\xBFdata: {\"a\":1}\n\n");
        assert_eq!(events[1].data.as_deref(), Some("2"));
        // A BOM followed by a blank line, and a stream of only a BOM.
        let events = same_at_every_split(b"\xEF\xBB\xBF\ndata: x\n\n").unwrap();
        assert_eq!(events[1].data.as_deref(), Some("x"));
        assert_eq!(same_at_every_split(b"\xEF\xBB\xBF").unwrap(), vec![]);
        // Two bytes of a BOM are not one.
        assert!(same_at_every_split(b"\xEF\xBBdata: x\n\n").is_err());
    }

    /// WHATWG strips a BOM only at the start of the stream; the old parser
    /// stripped one at the start of every event, where no client does (to
    /// them `\u{feff}data` is an unknown field). A second BOM at the start
    /// (`TextDecoderStream` strips only one) and one starting a later event
    /// are refused.
    #[test]
    fn a_bom_anywhere_else_is_refused() {
        let bom_field = SseError::UnknownField {
            field: "\u{feff}data".into(),
        };
        assert_eq!(
            same_at_every_split(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"),
            Err(bom_field.clone())
        );
        assert_eq!(
            same_at_every_split(b"data: 1\n\n\xEF\xBB\xBFdata: x\n\n"),
            Err(bom_field.clone())
        );
        assert_eq!(
            same_at_every_split(b"event: message\n\xEF\xBB\xBFdata: x\n\n"),
            Err(bom_field)
        );
    }

    /// eventsource-parser (TS client) drops the characters U+00EF U+00BB
    /// U+00BF at the start of the first decoded chunk (`dist/index.js:21`),
    /// so `"ï»¿data: ..."` (a BOM encoded twice: `C3 AF C2 BB C2 BF`) is a
    /// data line to it; the old filter saw an unknown field and forwarded
    /// the event uninspected.
    #[test]
    fn a_twice_encoded_bom_is_refused() {
        let stream = "ï»¿data: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n\n";
        assert_eq!(
            same_at_every_split(stream.as_bytes()),
            Err(SseError::UnknownField {
                field: "ï»¿data".into()
            })
        );
        assert!(same_at_every_split("\u{feff}ï»¿data: x\n\n".as_bytes()).is_err());
    }

    /// Every client ignores an unknown field, so a lookalike of `data` is a
    /// line the filter cannot know how each client reads; all are refused.
    #[test]
    fn unknown_and_lookalike_field_names_are_refused() {
        for line in [
            "Data: x",
            "DATA: x",
            "data : x",
            " data: x",
            "dat\u{430}: x", // Cyrillic a
            "data\u{200b}: x",
            "foo: bar",
            "retry2: 5",
            "x",
        ] {
            let stream = format!("{line}\n\n");
            assert!(
                matches!(
                    same_at_every_split(stream.as_bytes()),
                    Err(SseError::UnknownField { .. })
                ),
                "accepted {line:?}"
            );
        }
        let long = format!("{}: x\n\n", "f".repeat(100));
        let Err(SseError::UnknownField { field }) = parse_all(long.as_bytes()) else {
            panic!("accepted a long field name");
        };
        assert_eq!(field.len(), 32);
    }

    /// What the SDK servers send must keep flowing: sse_starlette's CRLF
    /// events and `: ping - <time>` keep-alives (`sse_starlette/event.py:32-59`,
    /// `sse.py:486-507`), and the TS server's priming and message events
    /// (`server/webStandardStreamableHttp.js:212-214, 424-431`), including
    /// fields without a colon and empty values.
    #[test]
    fn what_the_sdk_servers_send_is_accepted() {
        let stream = b": ping - 2026-01-01 00:00:00.000000+00:00\r\n\r\n\
            id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n\
            id: abc_0\nretry: 1000\ndata: \n\n\
            event: message\nid: abc_1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n\
            event: endpoint\ndata: /message?sessionId=1\n\n\
            data\n\n:\n\nevent\ndata:\n\n";
        let events = same_at_every_split(stream).unwrap();
        assert_eq!(events.len(), 8);
        assert_eq!(events[1].id.as_deref(), Some("1"));
        assert_eq!(events[2].retry, Some(1000));
        assert_eq!(events[2].data.as_deref(), Some(""));
        assert_eq!(events[5].data.as_deref(), Some(""));
        assert_eq!(events[7].event.as_deref(), Some(""));
    }

    /// A line-splitting reader (Python's `str.splitlines()`, as in httpx's
    /// `LineDecoder`, `_decoders.py:401`, which httpx-sse < 0.4.1 used)
    /// breaks lines at these characters; in a comment or a non-data field
    /// they would hide a data line from the filter.
    #[test]
    fn line_separators_outside_data_are_refused() {
        for sep in SPLITLINES_EXTRA {
            for template in [
                "event: message{sep}data: {{}}\n\n",
                ": ping{sep}data: {{}}\n\n",
                "id: 1{sep}data: {{}}\n\n",
                "retry: 1{sep}data: {{}}\n\n",
                "data{sep}: {{}}\n\n",
            ] {
                let stream = template
                    .replace("{sep}", &sep.to_string())
                    .replace("{{}}", "{}");
                assert_eq!(
                    same_at_every_split(stream.as_bytes()),
                    Err(SseError::LineSeparator { ch: *sep }),
                    "accepted {stream:?}"
                );
            }
        }
    }

    /// The byte pre-check clears only text the char search would clear.
    #[test]
    fn find_separator_agrees_with_a_char_search() {
        let texts = [
            "",
            "plain ascii {\"a\":1}",
            "tab\there",
            "\u{1}",
            "caf\u{e9}",
            "x\u{0b}y",
            "x\u{1e}",
            "\u{85}",
            "a\u{2028}b",
            "\u{2029}",
            "\u{feff}data",
            "\u{10ffff}\u{0c}",
        ];
        for t in texts {
            for set in [SPLITLINES_EXTRA, C0_SEPARATORS] {
                let naive = t.chars().find(|c| set.contains(c));
                assert_eq!(find_separator(t, set), naive, "{t:?}");
            }
        }
    }

    /// In data, the C0 separators are refused (a JSON text never has them
    /// raw); U+0085, U+2028 and U+2029 may sit raw inside JSON strings (the
    /// SDK servers write them so) and are accepted, but forwarded escaped.
    #[test]
    fn line_separators_in_data() {
        for sep in C0_SEPARATORS {
            let stream = format!("data: {{\"a\":\"x{sep}y\"}}\n\n");
            assert_eq!(
                same_at_every_split(stream.as_bytes()),
                Err(SseError::LineSeparator { ch: *sep })
            );
        }
        let stream = "id: 4\ndata: {\"a\":\"x\u{2028}data: y\u{85}\u{2029}\"}\n\n";
        let events = same_at_every_split(stream.as_bytes()).unwrap();
        let data = events[0].data.as_deref().unwrap();
        assert_eq!(data, "{\"a\":\"x\u{2028}data: y\u{85}\u{2029}\"}");
        let forwarded = events[0].forward();
        assert_eq!(
            &*forwarded,
            b"id: 4\ndata: {\"a\":\"x\\u2028data: y\\u0085\\u2029\"}\n\n"
        );
        let again = parse_all(&forwarded).unwrap();
        let a: serde_json::Value = serde_json::from_str(again[0].data.as_deref().unwrap()).unwrap();
        let b: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(a, b, "the escapes mean the same JSON value");
        // An event without them is forwarded as received.
        let plain = parse_all(b"data: {}\r\n\r\n").unwrap();
        assert!(matches!(plain[0].forward(), Cow::Borrowed(b) if b == b"data: {}\r\n\r\n"));
    }

    /// `with_data` keeps no line any client could read as data, whatever the
    /// original bytes: the stream's BOM, data lines before and between other
    /// fields, CR-only line ends, and (in an event built by hand) lookalikes.
    #[test]
    fn rewrites_leave_no_original_data_line() {
        let streams: [&[u8]; 4] = [
            b"\xEF\xBB\xBFdata: EVIL1\nevent: message\n\n",
            b"data: EVIL1\r: note\rid: 9\rdata: EVIL2\rretry: 10\revent: message\r\r",
            b"id: 9\r\ndata:EVIL1\r\ndata\r\ndata: EVIL2\r\n: note\r\n\r\n",
            b"\xEF\xBB\xBF: c\r\ndata: EVIL1\nid: 9\rdata: EVIL2\r\n\n",
        ];
        for stream in streams {
            let events = parse_all(stream).unwrap();
            let before = &events[0];
            let out = before.with_data("{\"ok\":1}\n");
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(!text.contains("EVIL"), "{text:?}");
            assert!(
                !text.contains('\r') && !text.starts_with('\u{feff}'),
                "{text:?}"
            );
            let after = &parse_all(&out).unwrap()[0];
            assert_eq!(after.data.as_deref(), Some("{\"ok\":1}\n"));
            assert_eq!(after.event, before.event);
            assert_eq!(after.id, before.id);
            assert_eq!(after.retry, before.retry);
            let comments = |s: &str| s.lines().filter(|l| l.starts_with(':')).count();
            let original = String::from_utf8_lossy(stream).replace(['\r', '\u{feff}'], "\n");
            assert_eq!(comments(&text), comments(&original), "comments kept");
        }
        // The new data takes the first data line's place.
        let e = &parse_all(b"id: 1\ndata: a\nevent: x\ndata: b\n\n").unwrap()[0];
        assert_eq!(
            e.with_data("[1,\r\n2]"),
            b"id: 1\ndata: [1,\ndata: 2]\nevent: x\n\n"
        );
        // An event built by hand with lines the parser would refuse.
        let forged = Event {
            raw:
                "event: m\n\u{feff}data: EVIL\nï»¿data: EVIL\nDATA: EVIL\n: a\u{2028}data: EVIL\n\n"
                    .into(),
            event: Some("m".into()),
            data: None,
            id: None,
            retry: None,
        };
        let out = forged.with_data("{}");
        assert_eq!(out, b"event: m\ndata: {}\n\n");
    }

    /// WHATWG and eventsource-parser take `retry` only as ASCII digits.
    #[test]
    fn retry_is_ascii_digits_only() {
        let events = parse_all(b"retry: +5\n\nretry: 5 \n\nretry: 05\n\n").unwrap();
        assert_eq!(events[0].retry, None);
        assert_eq!(events[1].retry, None);
        assert_eq!(events[2].retry, Some(5));
    }
}

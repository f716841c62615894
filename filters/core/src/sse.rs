//! Incremental Server-Sent Events parsing, for inspecting streamed MCP
//! responses event by event.
//!
//! A proxy sees an SSE body as arbitrary chunks: an event may be split
//! anywhere, even between the `\r` and `\n` of one line ending. The parser
//! keeps at most one incomplete event, bounded by a limit, and hands out each
//! event as soon as its terminating blank line arrives, so a long-lived
//! stream flows through event by event instead of being held back.
//!
//! Each [`Event`] keeps its raw bytes: an event the filter does not change is
//! forwarded byte for byte, and only a rewritten one is re-serialised. Field
//! parsing follows the WHATWG "event stream interpretation" rules (lines end
//! in CRLF, LF or CR; `data` lines join with `\n`; one leading space after
//! the colon is dropped; comments start with `:`).

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event exactly as received, including its terminating blank line.
    pub raw: Vec<u8>,
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`; `None` when the event had no data line.
    pub data: Option<String>,
    /// `id:` field.
    pub id: Option<String>,
    /// `retry:` field, when it is a valid integer.
    pub retry: Option<u64>,
}

impl Event {
    /// Serialises an event with new `data`, keeping every other line of
    /// the original (`event`, `id`, `retry`, comments) where it was; the
    /// new `data:` lines take the place of the first old one. `data` may
    /// contain newlines; each becomes a `data:` line.
    pub fn with_data(&self, data: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + self.raw.len());
        let mut data_written = false;
        // The parser only yields events that are valid UTF-8.
        let raw = std::str::from_utf8(&self.raw).unwrap_or("");
        for line in split_lines(raw) {
            if line.is_empty() {
                continue;
            }
            let is_data = line == "data" || line.starts_with("data:");
            if is_data {
                if !data_written {
                    for part in data.split('\n') {
                        out.extend_from_slice(b"data: ");
                        out.extend_from_slice(part.as_bytes());
                        out.push(b'\n');
                    }
                    data_written = true;
                }
                continue;
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        if !data_written {
            for part in data.split('\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(part.as_bytes());
                out.push(b'\n');
            }
        }
        out.push(b'\n');
        out
    }
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("an SSE event is not valid UTF-8")]
    NotUtf8,
    #[error("the stream ended inside an unterminated SSE event")]
    Truncated,
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
}

impl Parser {
    /// A parser that refuses events larger than `limit` bytes.
    pub fn new(limit: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            pos: 0,
            line_start: 0,
            limit,
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
    /// on unparsed.
    pub fn finish(&mut self) -> (Vec<Event>, Option<SseError>) {
        let mut events = Vec::new();
        if let Err(e) = self.drain_events(true, &mut events) {
            return (events, Some(e));
        }
        let rest = std::mem::take(&mut self.buf);
        self.pos = 0;
        self.line_start = 0;
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
            let raw: Vec<u8> = self.buf.drain(..end).collect();
            self.pos = 0;
            self.line_start = 0;
            events.push(interpret(raw)?);
        }
        Ok(())
    }

    /// Scans from `pos` for a blank line; returns the index just past it.
    fn scan_to_event_end(&mut self, eof: bool) -> Option<usize> {
        while let Some(&b) = self.buf.get(self.pos) {
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
        None
    }
}

fn interpret(raw: Vec<u8>) -> Result<Event, SseError> {
    let text = std::str::from_utf8(&raw).map_err(|_| SseError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event = None;
    let mut data: Option<String> = None;
    let mut id = None;
    let mut retry = None;
    for line in split_lines(text) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => id = Some(value.to_owned()),
            "retry" => retry = value.parse().ok(),
            _ => {}
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

fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\r', '\n']) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b": keep-alive\n\nevent: message\nid: 7\nretry: 1500\ndata: {\"a\":\ndata: 1}\n\r\ndata: second\r\n\r\ndata:third\rdata: x\r\r";

    fn all_at_once() -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut events = p.push(SAMPLE).unwrap();
        let (tail, err) = p.finish();
        assert_eq!(err, None);
        events.extend(tail);
        events
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
        let expected = all_at_once();
        for cut in 0..=SAMPLE.len() {
            let mut p = Parser::new(1 << 20);
            let mut got = p.push(&SAMPLE[..cut]).unwrap();
            got.extend(p.push(&SAMPLE[cut..]).unwrap());
            let (tail, err) = p.finish();
            assert_eq!(err, None);
            got.extend(tail);
            assert_eq!(got, expected, "split at {cut}");
        }
        let mut p = Parser::new(1 << 20);
        let mut got = Vec::new();
        for b in SAMPLE {
            got.extend(p.push(std::slice::from_ref(b)).unwrap());
        }
        got.extend(p.finish().0);
        assert_eq!(got, expected, "byte by byte");
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

    #[test]
    fn rewrites_keep_event_and_id() {
        let events = all_at_once();
        let out = events[1].with_data("{}");
        assert_eq!(out, b"event: message\nid: 7\nretry: 1500\ndata: {}\n\n");
        let mut p = Parser::new(1024);
        let again = p.push(&out).unwrap();
        assert_eq!(again[0].data.as_deref(), Some("{}"));
    }
}

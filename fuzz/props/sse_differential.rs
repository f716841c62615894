//! `sse_differential`: the filter's SSE parser (`portcullis_core::sse`)
//! against a reference event-stream reader written here from the WHATWG HTML
//! standard, §9.2.6 "Interpreting an event stream".
//!
//! Input: one byte `n`, then `n % 8` chunk sizes, then the stream.
//!
//! * Split-point invariance: the stream in one chunk, in the fuzzed chunks
//!   and (when short) byte by byte gives the same events, or the same
//!   refusal.
//! * Where the filter accepts the stream, the events the reference
//!   dispatches are exactly the filter's events that have data, with the
//!   same data, the same type and the same last event id (the reference's
//!   id persists across events, as the standard says; the filter's is per
//!   event, so it is carried forward here).
//! * Every such event's re-serialisations, `Event::with_data(data)` and
//!   `Event::forward()`, read back through the reference (alone, as a new
//!   stream) as one event with the same data (with U+0085, U+2028 and
//!   U+2029 written as JSON escapes, which `sse.rs` documents), the same
//!   type and the same id; and through the filter's parser too.
//!
//! A stream the filter refuses is fine (it fails closed).
//!
//! No crate was used as the reference: the maintained Rust SSE parsers are
//! async stream adapters (eventsource-stream, last released 2022, sse-stream)
//! that a fuzz target would have to drive through an executor, and their
//! readings of BOMs and CR at the end of input are their own; the standard's
//! algorithm is 50 lines.

use super::input::{Input, chunks};
use super::sse::parse_chunks;
use portcullis_core::json::escape_line_separators;

/// One event the reference dispatches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefEvent {
    /// The event's type: the `event` field, or "message" when empty.
    pub kind: String,
    pub data: String,
    /// The last event ID string when the event was dispatched.
    pub last_event_id: String,
}

/// WHATWG event stream interpretation of a whole stream (the bytes are all
/// there is: a final CR ends a line, an unterminated last line is dropped).
pub fn reference(bytes: &[u8]) -> Vec<RefEvent> {
    // "The stream must then be parsed by reading everything line by line,
    // ... decoded using the UTF-8 decode algorithm" (which strips one BOM
    // and replaces invalid sequences).
    let decoded = String::from_utf8_lossy(bytes);
    let text = decoded.strip_prefix('\u{feff}').unwrap_or(&decoded);
    let mut out = Vec::new();
    let mut data = String::new();
    let mut kind = String::new();
    let mut last_id = String::new();
    let mut rest = text;
    // end-of-line = ( cr lf / cr / lf ); a line without one at the end of
    // the stream is never processed.
    while let Some(i) = rest.find(['\r', '\n']) {
        let line = &rest[..i];
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            // Dispatch: "If the data buffer is an empty string, set the data
            // buffer and the event type buffer to the empty string and
            // return." Else drop one trailing LF, and the event's type is
            // the buffer if not empty, else "message".
            if !data.is_empty() {
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(RefEvent {
                    kind: if kind.is_empty() {
                        "message".to_owned()
                    } else {
                        kind.clone()
                    },
                    data: std::mem::take(&mut data),
                    last_event_id: last_id.clone(),
                });
            }
            data.clear();
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = value.to_owned(),
            // "retry" sets the reconnection time, which nothing here reads;
            // any other field is ignored.
            _ => {}
        }
    }
    out
}

/// The filter's type for an event: its `event` field, "message" if none or
/// empty (as a WHATWG client reads it).
fn kind_of(event: Option<&str>) -> String {
    match event {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => "message".to_owned(),
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let n = usize::from(input.byte() % 8);
    let sizes = input.take(n);
    let stream = input.rest();
    let limit = 1 << 16;

    let whole = parse_chunks(&[stream], limit);
    let chunked = parse_chunks(&chunks(stream, sizes), limit);
    assert_eq!(whole, chunked, "chunk sizes {sizes:?}");
    if stream.len() <= 256 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(whole, parse_chunks(&bytes, limit), "byte by byte");
    }
    let Ok(events) = whole else {
        return;
    };

    // What the filter inspected is what a WHATWG client dispatches.
    let mut last_id = String::new();
    let mut expected = Vec::new();
    for e in &events {
        if let Some(id) = &e.id {
            last_id = id.clone();
        }
        if let Some(d) = &e.data {
            expected.push(RefEvent {
                kind: kind_of(e.event.as_deref()),
                data: d.clone(),
                last_event_id: last_id.clone(),
            });
        }
    }
    assert_eq!(reference(stream), expected, "the reference reads otherwise");

    // Re-serialised events read back the same.
    for e in &events {
        let Some(d) = &e.data else {
            assert_eq!(reference(&e.raw), vec![], "an event without data");
            continue;
        };
        let want = RefEvent {
            kind: kind_of(e.event.as_deref()),
            data: escape_line_separators(d).into_owned(),
            last_event_id: e.id.clone().unwrap_or_default(),
        };
        let rewritten = e.with_data(d);
        let forwarded = e.forward();
        for (what, bytes) in [("with_data", &rewritten[..]), ("forward", &forwarded[..])] {
            assert_eq!(reference(bytes), vec![want.clone()], "{what}: {bytes:?}");
            let again = parse_chunks(&[bytes], limit).unwrap_or_else(|err| {
                panic!("{what}: the filter refuses its own {bytes:?}: {err}")
            });
            let [one] = again.as_slice() else {
                panic!("{what}: {} events from one", again.len());
            };
            assert_eq!(one.data.as_deref(), Some(want.data.as_str()), "{what}");
            assert_eq!(one.event, e.event, "{what}");
            assert_eq!(one.id, e.id, "{what}");
        }
    }
}

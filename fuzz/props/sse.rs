//! `sse`: the SSE parser on arbitrary bytes split at an arbitrary point (the
//! first two bytes, little-endian, modulo the length): no panic, and the same
//! events, or the same refusal, whatever the split.

use super::input::Input;
use portcullis_core::sse::{Event, Parser, SseError};

/// Parses `chunks` as one stream, as the filter does: the events, or the
/// first refusal (events before it are dropped, so that results compare
/// whatever the chunking).
pub fn parse_chunks(chunks: &[&[u8]], limit: usize) -> Result<Vec<Event>, SseError> {
    let mut p = Parser::new(limit);
    let mut events = Vec::new();
    for c in chunks {
        events.extend(p.push(c)?);
    }
    let (tail, err) = p.finish();
    events.extend(tail);
    match err {
        Some(e) => Err(e),
        None => Ok(events),
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let cut = usize::from(input.u16());
    let data = input.rest();
    let cut = cut % (data.len() + 1);
    let (a, b) = data.split_at(cut);
    let whole = parse_chunks(&[data], 1 << 16);
    let split = parse_chunks(&[a, b], 1 << 16);
    assert_eq!(whole, split, "split at {cut}");
}

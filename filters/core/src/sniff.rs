//! "Could an upstream read this body as JSON-RPC?", for requests on routes
//! the registry does not know.
//!
//! Such a request is refused when it could be MCP traffic, whatever its
//! Content-Type says (the Python SDK's 2026-07-28 handler does not look at
//! the Content-Type at all, `mcp/server/_streamable_http_modern.py:393-412`,
//! and body-parser decodes any `utf-*` charset). [`could_be_jsonrpc`]
//! over-approximates: it answers `true` whenever some plausible server-side
//! parser could read the bytes as a JSON object, or an array holding one,
//! with a `jsonrpc` or `method` member. The parsers considered:
//!
//! * Python `json.loads(bytes)`: detects UTF-8 (a BOM stripped), UTF-16 and
//!   UTF-32 (by BOM and by the pattern of zero bytes); accepts `NaN` and
//!   `Infinity`; the last of duplicate keys wins. pydantic/jiter,
//!   serde_json, Go's `encoding/json` (which matches keys
//!   case-insensitively, folding `ſ` to `s` and `K` to `k`), Jackson and
//!   Gson (lenient mode: comments, single quotes, unquoted names, `=`).
//! * Node `JSON.parse` after charset decoding by iconv-lite: UTF-8, latin1
//!   and other single-byte code pages, UTF-16LE/BE, UTF-32, UTF-7 (and
//!   UTF-7-IMAP, which body-parser accepts as a `utf-*` charset), and the
//!   double-byte code pages (Shift_JIS, GBK, Big5), whose trail bytes can
//!   swallow an ASCII bracket, backslash or colon.
//! * JSON5 / JSONC / YAML flow style: comments, single-quoted strings,
//!   unquoted and escaped identifiers (`\u006asonrpc`), `\xHH` escapes and
//!   line continuations.
//!
//! How: for each decoding (an ASCII-compatible one that reads valid UTF-8
//! sequences as UTF-8 and every other byte as latin1; UTF-16LE/BE;
//! UTF-32LE/BE; UTF-7 and UTF-7-IMAP when the body has a `+` or `&`), skip
//! byte-order marks, whitespace and comments; if the first character is
//! neither `{` nor `[`, that decoding is done (the cheap exit for bodies that
//! are not JSON). Otherwise the body is JSON-RPC-like when
//!
//! 1. the text, with every escape decoded and case folded, contains
//!    `jsonrpc` anywhere (no tokenisation to get wrong; "jsonrpc" is rare
//!    outside JSON-RPC), or
//! 2. a string or identifier that folds to `method` is followed by `:` or
//!    `=` inside an object whose enclosing containers are all arrays, or
//! 3. the structure could not be followed exactly (an unterminated string or
//!    comment, unbalanced brackets, an ISO-2022 escape byte, or a byte of a
//!    double-byte lead range right before `[ ] { } \ : =`) and the folded
//!    text contains `method` anywhere.
//!
//! A body with a Content-Encoding must be decoded before it is sniffed
//! (body-parser inflates gzip, deflate and br); this function sees bytes.

/// U+FFFD, for bytes a decoding cannot map.
const REPLACEMENT: char = '\u{FFFD}';

/// Whether some plausible server-side JSON parser could read `body` as a
/// JSON-RPC message (see the module documentation).
pub fn could_be_jsonrpc(body: &[u8]) -> bool {
    Decoding::ALL.iter().any(|&d| {
        if !d.applies(body) || !starts_like_json(d.chars(body)) {
            return false;
        }
        let structure = scan_structure(d.chars(body));
        if structure.method_key {
            return true;
        }
        let reliable = structure.reliable && !(d == Decoding::AsciiCompatible && dbcs_risk(body));
        let words = folded_words(Unescape::new(d.chars(body)));
        words.jsonrpc || (!reliable && words.method)
    })
}

/// The decodings tried, each an over-approximation of a family of charsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// Valid UTF-8 sequences as UTF-8, every other byte as latin1: the ASCII
    /// structure of UTF-8, latin1, windows-125x and the like.
    AsciiCompatible,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
    /// RFC 2152, as iconv-lite decodes it (`+` shifts to base64).
    Utf7,
    /// RFC 3501 modified UTF-7 (`&` shifts, `,` for `/`).
    Utf7Imap,
}

impl Decoding {
    const ALL: [Decoding; 7] = [
        Decoding::AsciiCompatible,
        Decoding::Utf16Le,
        Decoding::Utf16Be,
        Decoding::Utf32Le,
        Decoding::Utf32Be,
        Decoding::Utf7,
        Decoding::Utf7Imap,
    ];

    /// Whether the decoding could read `body` differently from
    /// [`Decoding::AsciiCompatible`] at all.
    fn applies(self, body: &[u8]) -> bool {
        match self {
            Decoding::Utf7 => body.contains(&b'+'),
            Decoding::Utf7Imap => body.contains(&b'&'),
            _ => true,
        }
    }

    fn chars(self, body: &[u8]) -> Box<dyn Iterator<Item = char> + '_> {
        match self {
            Decoding::AsciiCompatible => Box::new(AsciiCompatible {
                bytes: body,
                pos: 0,
            }),
            Decoding::Utf16Le => Box::new(
                char::decode_utf16(
                    body.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([byte(c, 0), byte(c, 1)])),
                )
                .map(|r| r.unwrap_or(REPLACEMENT)),
            ),
            Decoding::Utf16Be => Box::new(
                char::decode_utf16(
                    body.chunks_exact(2)
                        .map(|c| u16::from_be_bytes([byte(c, 0), byte(c, 1)])),
                )
                .map(|r| r.unwrap_or(REPLACEMENT)),
            ),
            Decoding::Utf32Le => Box::new(body.chunks_exact(4).map(|c| {
                char::from_u32(u32::from_le_bytes([
                    byte(c, 0),
                    byte(c, 1),
                    byte(c, 2),
                    byte(c, 3),
                ]))
                .unwrap_or(REPLACEMENT)
            })),
            Decoding::Utf32Be => Box::new(body.chunks_exact(4).map(|c| {
                char::from_u32(u32::from_be_bytes([
                    byte(c, 0),
                    byte(c, 1),
                    byte(c, 2),
                    byte(c, 3),
                ]))
                .unwrap_or(REPLACEMENT)
            })),
            Decoding::Utf7 => Box::new(Utf7::new(body, b'+', b'/')),
            Decoding::Utf7Imap => Box::new(Utf7::new(body, b'&', b',')),
        }
    }
}

fn byte(chunk: &[u8], i: usize) -> u8 {
    chunk.get(i).copied().unwrap_or(0)
}

/// See [`Decoding::AsciiCompatible`].
struct AsciiCompatible<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for AsciiCompatible<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let first = *self.bytes.get(self.pos)?;
        let len = match first {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        if len > 1
            && let Some(seq) = self.bytes.get(self.pos..self.pos + len)
            && let Ok(s) = std::str::from_utf8(seq)
            && let Some(c) = s.chars().next()
        {
            self.pos += len;
            return Some(c);
        }
        self.pos += 1;
        Some(char::from(first))
    }
}

/// UTF-7 as iconv-lite's `Utf7Decoder` reads it (`encodings/utf7.js`):
/// outside a shift, bytes are characters (`+-` is `+`); a shift byte starts
/// a base64 run that ends at the first non-base64 byte (a `-` there is
/// absorbed); each run is decoded on its own as UTF-16BE, leftover bits
/// dropped.
struct Utf7<'a> {
    bytes: &'a [u8],
    pos: usize,
    shift: u8,
    slash: u8,
    in_run: bool,
    /// Whether the current run has had any base64 character yet.
    run_started: bool,
    acc: u32,
    bits: u32,
    high: Option<u16>,
    queued: Option<char>,
}

impl<'a> Utf7<'a> {
    fn new(bytes: &'a [u8], shift: u8, slash: u8) -> Self {
        Utf7 {
            bytes,
            pos: 0,
            shift,
            slash,
            in_run: false,
            run_started: false,
            acc: 0,
            bits: 0,
            high: None,
            queued: None,
        }
    }

    fn base64(&self, b: u8) -> Option<u32> {
        match b {
            b'A'..=b'Z' => Some(u32::from(b - b'A')),
            b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            // UTF-7-IMAP writes `,` for `/` (iconv-lite accepts both).
            b',' if self.slash == b',' => Some(63),
            _ => None,
        }
    }

    /// Takes one UTF-16 unit; returns a character when one is complete.
    fn unit(&mut self, u: u16) -> Option<char> {
        if (0xd800..0xdc00).contains(&u) {
            let lone = self.high.replace(u);
            return lone.map(|_| REPLACEMENT);
        }
        match self.high.take() {
            Some(h) if (0xdc00..0xe000).contains(&u) => {
                let c = 0x10000 + ((u32::from(h) - 0xd800) << 10) + (u32::from(u) - 0xdc00);
                Some(char::from_u32(c).unwrap_or(REPLACEMENT))
            }
            Some(_) => {
                self.queued = Some(char::from_u32(u32::from(u)).unwrap_or(REPLACEMENT));
                Some(REPLACEMENT)
            }
            None => Some(char::from_u32(u32::from(u)).unwrap_or(REPLACEMENT)),
        }
    }
}

impl Iterator for Utf7<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        loop {
            if let Some(c) = self.queued.take() {
                return Some(c);
            }
            let Some(&b) = self.bytes.get(self.pos) else {
                return self.high.take().map(|_| REPLACEMENT);
            };
            self.pos += 1;
            if self.in_run {
                if let Some(v) = self.base64(b) {
                    self.run_started = true;
                    self.acc = (self.acc << 6 | v) & 0x3f_ffff;
                    self.bits += 6;
                    if self.bits >= 16 {
                        self.bits -= 16;
                        let u = (self.acc >> self.bits) as u16;
                        if let Some(c) = self.unit(u) {
                            return Some(c);
                        }
                    }
                    continue;
                }
                // The run ends: `+-` is a plain `+`, and a `-` is absorbed.
                let empty = !self.run_started;
                self.in_run = false;
                self.acc = 0;
                self.bits = 0;
                let lone = self.high.take().map(|_| REPLACEMENT);
                let this = if b == b'-' {
                    empty.then_some(char::from(self.shift))
                } else {
                    Some(char::from(b))
                };
                match (lone, this) {
                    (Some(r), Some(c)) => {
                        self.queued = Some(c);
                        return Some(r);
                    }
                    (Some(r), None) => return Some(r),
                    (None, Some(c)) => return Some(c),
                    (None, None) => continue,
                }
            }
            if b == self.shift {
                self.in_run = true;
                self.run_started = false;
                continue;
            }
            return Some(char::from(b));
        }
    }
}

/// Whitespace as the most lenient parser considered sees it (JSON5: every
/// Unicode space, line terminators, U+FEFF), plus the BOM.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

fn is_line_end(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// Skips a comment whose first character `c` was just read, if it starts
/// one (`//`, `/* */`, `#`); returns `None` when `c` starts no comment,
/// `Some(terminated)` otherwise.
fn skip_comment(c: char, it: &mut std::iter::Peekable<impl Iterator<Item = char>>) -> Option<bool> {
    let block = match (c, it.peek()) {
        ('#', _) => false,
        ('/', Some('/')) => {
            it.next();
            false
        }
        ('/', Some('*')) => {
            it.next();
            true
        }
        _ => return None,
    };
    if block {
        let mut star = false;
        for c in it.by_ref() {
            if star && c == '/' {
                return Some(true);
            }
            star = c == '*';
        }
        Some(false)
    } else {
        for c in it.by_ref() {
            if is_line_end(c) {
                break;
            }
        }
        Some(true)
    }
}

/// Whether the first character that is not space, a BOM or a comment opens
/// an object or an array.
fn starts_like_json(chars: impl Iterator<Item = char>) -> bool {
    let mut it = chars.peekable();
    while let Some(c) = it.next() {
        if is_space(c) {
            continue;
        }
        if skip_comment(c, &mut it).is_some() {
            continue;
        }
        return c == '{' || c == '[';
    }
    false
}

/// One character of case folding as Go's `encoding/json`, Java's
/// `equalsIgnoreCase` and Python's `casefold` would fold the letters of
/// `jsonrpc` and `method` (`ſ` U+017F is an `s` to all three).
fn fold(c: char) -> char {
    if c == '\u{17f}' {
        return 's';
    }
    c.to_lowercase().next().unwrap_or(c)
}

fn folds_to(text: &str, word: &str) -> bool {
    text.chars().map(fold).eq(word.chars())
}

/// What one backslash escape stands for.
enum Escape {
    Char(char),
    /// A `\uXXXX` naming a UTF-16 surrogate.
    Surrogate(u32),
    /// A line continuation, or the end of the input.
    Nothing,
}

fn hex_digits(it: &mut std::iter::Peekable<impl Iterator<Item = char>>, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..n {
        let d = it.peek().and_then(|c| c.to_digit(16))?;
        it.next();
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

/// Reads one escape, the backslash already read.
fn escape_unit(it: &mut std::iter::Peekable<impl Iterator<Item = char>>) -> Escape {
    let Some(c) = it.next() else {
        return Escape::Nothing;
    };
    let c = match c {
        'u' if it.peek() == Some(&'{') => {
            it.next();
            let mut v = 0u32;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(16)) {
                it.next();
                v = v.saturating_mul(16).saturating_add(d);
            }
            if it.peek() == Some(&'}') {
                it.next();
            }
            char::from_u32(v).unwrap_or(REPLACEMENT)
        }
        'u' => match hex_digits(it, 4) {
            Some(v @ 0xd800..=0xdfff) => return Escape::Surrogate(v),
            Some(v) => char::from_u32(v).unwrap_or(REPLACEMENT),
            None => 'u',
        },
        'x' => hex_digits(it, 2).and_then(char::from_u32).unwrap_or('x'),
        'U' => hex_digits(it, 8).and_then(char::from_u32).unwrap_or('U'),
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'v' => '\u{b}',
        '0' => '\0',
        c if is_line_end(c) => {
            // A continuation: JSON5 drops the line end, YAML also the
            // indentation after it.
            if c == '\r' && it.peek() == Some(&'\n') {
                it.next();
            }
            while it.peek().is_some_and(|&c| c == ' ' || c == '\t') {
                it.next();
            }
            return Escape::Nothing;
        }
        c => c,
    };
    Escape::Char(c)
}

/// Decodes a backslash escape (the backslash already read) into at most two
/// characters: JSON's `\uXXXX` (a surrogate pair joined), JSON5's `\xHH`
/// and line continuations, YAML's `\UXXXXXXXX`, JS's `\u{...}`, and `\c`
/// as `c` for any other `c`.
fn decode_escape(it: &mut std::iter::Peekable<impl Iterator<Item = char>>) -> [Option<char>; 2] {
    match escape_unit(it) {
        Escape::Char(c) => [Some(c), None],
        Escape::Nothing => [None, None],
        Escape::Surrogate(high @ 0xd800..=0xdbff) if it.peek() == Some(&'\\') => {
            it.next();
            match escape_unit(it) {
                Escape::Surrogate(low @ 0xdc00..=0xdfff) => {
                    let c = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
                    [Some(char::from_u32(c).unwrap_or(REPLACEMENT)), None]
                }
                Escape::Surrogate(_) => [Some(REPLACEMENT), Some(REPLACEMENT)],
                Escape::Char(c) => [Some(REPLACEMENT), Some(c)],
                Escape::Nothing => [Some(REPLACEMENT), None],
            }
        }
        Escape::Surrogate(_) => [Some(REPLACEMENT), None],
    }
}

/// The characters of a text with every backslash escape decoded, wherever
/// it is (see [`decode_escape`]).
struct Unescape<I: Iterator<Item = char>> {
    it: std::iter::Peekable<I>,
    queued: Option<char>,
}

impl<I: Iterator<Item = char>> Unescape<I> {
    fn new(it: I) -> Self {
        Unescape {
            it: it.peekable(),
            queued: None,
        }
    }
}

impl<I: Iterator<Item = char>> Iterator for Unescape<I> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        if let Some(c) = self.queued.take() {
            return Some(c);
        }
        loop {
            let c = self.it.next()?;
            if c != '\\' || self.it.peek().is_none() {
                return Some(c);
            }
            if let [Some(a), b] = decode_escape(&mut self.it) {
                self.queued = b;
                return Some(a);
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Words {
    jsonrpc: bool,
    method: bool,
}

/// Whether the folded text contains `jsonrpc` and `method`.
fn folded_words(chars: impl Iterator<Item = char>) -> Words {
    const JSONRPC: [char; 7] = ['j', 's', 'o', 'n', 'r', 'p', 'c'];
    const METHOD: [char; 6] = ['m', 'e', 't', 'h', 'o', 'd'];
    let mut window = [' '; 7];
    let mut words = Words::default();
    for c in chars {
        window.rotate_left(1);
        if let Some(last) = window.last_mut() {
            *last = fold(c);
        }
        words.jsonrpc |= window == JSONRPC;
        words.method |= window.get(1..) == Some(&METHOD[..]);
        if words.jsonrpc {
            break;
        }
    }
    words
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Structure {
    /// A `method` key in a top-level object (or one in top-level arrays).
    method_key: bool,
    /// Strings, comments and brackets were all closed properly.
    reliable: bool,
}

/// Follows strings (either quote), comments and brackets, and looks for a
/// `method` key at message level.
fn scan_structure(chars: impl Iterator<Item = char>) -> Structure {
    let mut it = chars.peekable();
    let mut stack: Vec<Container> = Vec::new();
    let mut reliable = true;
    // The last string or identifier, while only space or comments follow it.
    let mut last_word: Option<String> = None;
    while let Some(c) = it.next() {
        if is_space(c) {
            continue;
        }
        if let Some(terminated) = skip_comment(c, &mut it) {
            reliable &= terminated;
            continue;
        }
        match c {
            '{' => stack.push(Container::Object),
            '[' => stack.push(Container::Array),
            '}' | ']' => {
                let want = if c == '}' {
                    Container::Object
                } else {
                    Container::Array
                };
                reliable &= stack.pop() == Some(want);
            }
            '"' | '\'' => {
                let mut s = String::new();
                let mut closed = false;
                while let Some(d) = it.next() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if d == '\\' {
                        s.extend(decode_escape(&mut it).into_iter().flatten());
                    } else {
                        s.push(d);
                    }
                }
                reliable &= closed;
                last_word = Some(s);
                continue;
            }
            ':' | '=' => {
                let at_message_level = stack.last() == Some(&Container::Object)
                    && stack.iter().rev().skip(1).all(|k| *k == Container::Array);
                if at_message_level && last_word.as_deref().is_some_and(|w| folds_to(w, "method")) {
                    return Structure {
                        method_key: true,
                        reliable,
                    };
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '\\' => {
                let mut s = String::new();
                let mut next = Some(c);
                while let Some(d) = next {
                    if d == '\\' {
                        s.extend(decode_escape(&mut it).into_iter().flatten());
                    } else {
                        s.push(d);
                    }
                    next =
                        it.next_if(|&d| d.is_alphanumeric() || d == '_' || d == '$' || d == '\\');
                }
                last_word = Some(s);
                continue;
            }
            _ => {}
        }
        last_word = None;
    }
    Structure {
        method_key: false,
        reliable: reliable && stack.is_empty(),
    }
}

/// Whether a charset the ASCII-compatible decoding stands in for could read
/// the structure differently: an ISO-2022 escape (ESC switches to a mode
/// where ASCII bytes pair into other characters), or a byte of a double-byte
/// lead range (Shift_JIS, GBK, Big5, Johab) right before a byte that such an
/// encoding may take as its trail and that matters to the structure.
fn dbcs_risk(body: &[u8]) -> bool {
    body.contains(&0x1b)
        || body.windows(2).any(|w| {
            matches!(
                w,
                [0x81..=0xfe, b'[' | b']' | b'{' | b'}' | b'\\' | b':' | b'=']
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#;

    fn utf16le(s: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xff, 0xfe] } else { vec![] };
        out.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    fn utf16be(s: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xfe, 0xff] } else { vec![] };
        out.extend(s.encode_utf16().flat_map(u16::to_be_bytes));
        out
    }

    fn utf32(s: &str, le: bool) -> Vec<u8> {
        s.chars()
            .flat_map(|c| {
                let v = u32::from(c);
                if le { v.to_le_bytes() } else { v.to_be_bytes() }
            })
            .collect()
    }

    /// UTF-7 with every character base64-encoded (what iconv-lite decodes).
    fn utf7_all_encoded(s: &str, shift: u8, slash: u8) -> Vec<u8> {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let mut out = vec![shift];
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                let v = ((n >> (18 - 6 * i)) & 63) as usize;
                let b = B64[v];
                out.push(if b == b'/' { slash } else { b });
            }
        }
        out.push(b'-');
        out
    }

    /// Python `json.loads(bytes)` detects UTF-8 (BOM stripped), UTF-16 and
    /// UTF-32 by BOM and zero bytes; Node decodes whatever charset the
    /// header names. Every encoding of a message is caught.
    #[test]
    fn a_message_is_caught_in_every_encoding() {
        let mut bodies: Vec<(&str, Vec<u8>)> = vec![
            ("utf-8", MESSAGE.into()),
            (
                "utf-8 with BOM",
                [&b"\xEF\xBB\xBF"[..], MESSAGE.as_bytes()].concat(),
            ),
            ("utf-16le", utf16le(MESSAGE, false)),
            ("utf-16le with BOM", utf16le(MESSAGE, true)),
            ("utf-16be", utf16be(MESSAGE, false)),
            ("utf-16be with BOM", utf16be(MESSAGE, true)),
            ("utf-32le", utf32(MESSAGE, true)),
            ("utf-32be", utf32(&format!("\u{feff}{MESSAGE}"), false)),
            ("utf-7", utf7_all_encoded(MESSAGE, b'+', b'/')),
            ("utf-7-imap", utf7_all_encoded(MESSAGE, b'&', b',')),
        ];
        // UTF-7 with only the opening brace encoded, and a BOM first.
        let mut partial = b"+/v8-+AHs-".to_vec();
        partial.extend_from_slice(&MESSAGE.as_bytes()[1..]);
        bodies.push(("utf-7, partly encoded", partial));
        // latin1 / windows-1252: non-ASCII bytes around an ASCII message.
        bodies.push((
            "latin1",
            b"\xA0\n{\"n\xE9\":1,\"jsonrpc\":\"2.0\",\"method\":\"ping\"}".to_vec(),
        ));
        for (name, body) in bodies {
            assert!(could_be_jsonrpc(&body), "{name} missed");
        }
    }

    #[test]
    fn batches_whitespace_and_leniency() {
        for body in [
            format!("  \r\n\t[{MESSAGE}]  \n"),
            format!("[[ {MESSAGE} ]]"),
            // Python accepts NaN and Infinity; last duplicate wins.
            r#"{"id":NaN,"method":"x","method":"tools/call"}"#.into(),
            // JSON5 / JSONC / Gson lenient.
            "// note\n{method: 'tools/call'}".into(),
            "/* { */ {'method' = 'x'}".into(),
            "# c\n{ method : 1 }".into(),
        ] {
            assert!(could_be_jsonrpc(body.as_bytes()), "missed {body:?}");
        }
    }

    /// A key that decodes to `jsonrpc` or `method`: JSON `\u` escapes,
    /// JSON5 `\x` escapes, escaped identifiers and line continuations, and
    /// Go's case-insensitive keys (with `ſ` folding to `s`).
    #[test]
    fn escaped_and_case_folded_keys_are_caught() {
        for body in [
            r#"{"\u006aSONRPC":"2.0"}"#,
            r#"{"\u006A\u0073\u006f\u006e\u0072\u0070\u0063":"2.0"}"#,
            r#"{"j\x73onrpc":"2.0"}"#,
            "{\"json\\\nrpc\":\"2.0\"}",
            r#"{\u006asonrpc: "2.0"}"#,
            r#"{"JſONRPC":"2.0"}"#,
            r#"{"MeThOd":"tools/call"}"#,
            r#"{"m\u0065thod":"tools/call"}"#,
            r#"{"meth\u{6f}d":"tools/call"}"#,
            r#"{"a":[],"\u004dETHOD":1}"#,
        ] {
            assert!(could_be_jsonrpc(body.as_bytes()), "missed {body:?}");
        }
    }

    /// Bodies that are not JSON leave at the first character, in every
    /// decoding; JSON without either member, or with `method` only below
    /// message level, is not JSON-RPC.
    #[test]
    fn other_bodies_are_not_jsonrpc() {
        for body in [
            &b""[..],
            b"   ",
            b"hello world, method jsonrpc",
            b"<xml method=\"jsonrpc\"/>",
            b"a=1&method=tools/call&jsonrpc=2.0",
            b"\"jsonrpc\"",
            b"42",
            br#"{"name":"x","items":[1,2,3]}"#,
            br#"{"payment":{"method":"card"},"note":"[}{]"}"#,
            br#"[{"a":{"method":"card"}}]"#,
            br#"{"a":"method"}"#,
            b"\x1f\x8b\x08\x00", // gzip: the caller decodes first
        ] {
            assert!(
                !could_be_jsonrpc(body),
                "flagged {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// When the structure cannot be followed (a double-byte lead byte that
    /// Shift_JIS would pair with the next `{`, an ISO-2022 escape, an
    /// unterminated string, unbalanced brackets), any `method` counts.
    #[test]
    fn uncertain_structure_falls_back_to_any_method() {
        // Balanced and unambiguous: `method` below message level is not one.
        let nested = br#"{"a":"x", "b":"y", "p":{"method":1,"q":"z"}}"#;
        assert!(!could_be_jsonrpc(nested));
        for body in [
            &b"{\"a\":\"\x81\\\", \"p\":{\"method\":1,\"q\":\"\x81\\\"}}"[..],
            b"{\"a\":\x1b$B{\x1b(B\"p\":{\"method\":1}}",
            br#"{"a":"unterminated, "p":{"method":1}}"#,
            br#"{"a":1}}, {"p":{"method":1}"#,
            // YAML flow style: a quote inside a plain scalar.
            br#"{a: it's, p: {method: 1}}"#,
        ] {
            assert!(
                could_be_jsonrpc(body),
                "missed {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn utf7_decoding_follows_iconv_lite() {
        let d = |b: &[u8]| Utf7::new(b, b'+', b'/').collect::<String>();
        assert_eq!(d(b"a+-b"), "a+b");
        assert_eq!(d(b"+AHs-x"), "{x");
        assert_eq!(d(b"+AHsAIg.x"), "{\".x");
        assert_eq!(d(b"+2D3eAA-"), "\u{1f600}");
        assert_eq!(d(b"+2D0-x"), "\u{fffd}x");
        let d = |b: &[u8]| Utf7::new(b, b'&', b',').collect::<String>();
        assert_eq!(d(b"&AHs-&-"), "{&");
    }
}

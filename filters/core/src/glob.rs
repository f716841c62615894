//! Name globs (`get-*`, `file:///data/*`), compiled once into one automaton.
//!
//! A server may list hundreds of tool patterns; matching a name must not be a
//! loop over them. All of a list's wildcard globs become one multi-pattern
//! `regex_automata::meta::Regex`, built at configure time, so a lookup is one
//! anchored search whatever the list's length. Globs without a wildcard, the
//! usual case (an approved tool list), go into a hash map instead: building
//! an automaton costs tens of microseconds, and a catalogue of a thousand
//! servers would otherwise spend seconds configuring (benches/control_plane).
//!
//! Syntax, deliberately small: `*` matches any run of characters (including
//! none, and including `/`), `?` exactly one character, and `\` makes the next
//! character literal. Everything else is literal; matching is case-sensitive
//! and covers the whole name.

use std::collections::HashMap;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternSet};

/// Why a glob list did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("glob {glob:?} ends with a lone backslash; escape it as \\\\")]
    TrailingEscape { glob: String },
    #[error("glob {glob:?} is empty")]
    Empty { glob: String },
    #[error("globs could not be compiled: {reason}")]
    Build { reason: String },
}

/// A compiled list of globs.
#[derive(Debug, Clone)]
pub struct GlobSet {
    /// The wildcard globs; pattern `i` of it is glob `wild[i]`.
    regex: Option<Regex>,
    wild: Vec<usize>,
    /// Globs without a wildcard, unescaped, to their indices (ascending).
    literals: HashMap<String, Vec<usize>>,
    globs: Vec<String>,
    /// Built with `MatchKind::All`, for [`GlobSet::all_matches`].
    overlapping: bool,
}

impl GlobSet {
    /// The set that matches nothing.
    pub fn empty() -> GlobSet {
        GlobSet {
            regex: None,
            wild: Vec::new(),
            literals: HashMap::new(),
            globs: Vec::new(),
            overlapping: false,
        }
    }

    /// Compiles `globs`. An empty list matches nothing.
    pub fn new<S: AsRef<str>>(globs: &[S]) -> Result<GlobSet, GlobError> {
        GlobSet::build(globs, false)
    }

    /// Compiles `globs` so that [`GlobSet::all_matches`] can say every glob
    /// a name matches (policy rules: several may concern one tool).
    pub fn new_overlapping<S: AsRef<str>>(globs: &[S]) -> Result<GlobSet, GlobError> {
        GlobSet::build(globs, true)
    }

    fn build<S: AsRef<str>>(globs: &[S], overlapping: bool) -> Result<GlobSet, GlobError> {
        let mut patterns = Vec::new();
        let mut wild = Vec::new();
        let mut literals: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in globs.iter().enumerate() {
            match parse(g.as_ref())? {
                Parsed::Literal(name) => literals.entry(name).or_default().push(i),
                Parsed::Wildcard(regex) => {
                    patterns.push(regex);
                    wild.push(i);
                }
            }
        }
        let regex = if patterns.is_empty() {
            None
        } else {
            let kind = if overlapping {
                MatchKind::All
            } else {
                MatchKind::LeftmostFirst
            };
            let built = Regex::builder()
                .syntax(syntax::Config::new().unicode(true).utf8(true))
                .configure(Regex::config().match_kind(kind))
                .build_many(&patterns)
                .map_err(|e| GlobError::Build {
                    reason: e.to_string(),
                })?;
            Some(built)
        };
        Ok(GlobSet {
            regex,
            wild,
            literals,
            globs: globs.iter().map(|g| g.as_ref().to_owned()).collect(),
            overlapping,
        })
    }

    /// Whether any glob matches the whole of `name`.
    pub fn is_match(&self, name: &str) -> bool {
        self.first_match(name).is_some()
    }

    /// The index (in the list given to [`GlobSet::new`]) of the first glob
    /// matching the whole of `name`.
    pub fn first_match(&self, name: &str) -> Option<usize> {
        let literal = self
            .literals
            .get(name)
            .and_then(|indices| indices.first().copied());
        // Leftmost-first over anchored, `$`-ended patterns prefers the
        // earliest pattern that matches, and `wild` keeps list order.
        let wildcard = self.regex.as_ref().and_then(|regex| {
            let input = Input::new(name).anchored(Anchored::Yes);
            regex
                .find(input)
                .and_then(|m| self.wild.get(m.pattern().as_usize()).copied())
        });
        match (literal, wildcard) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Indices of every glob matching the whole of `name`, ascending. On a
    /// set not built with [`GlobSet::new_overlapping`], at most the first.
    pub fn all_matches(&self, name: &str) -> Vec<usize> {
        if !self.overlapping {
            return self.first_match(name).into_iter().collect();
        }
        let mut out: Vec<usize> = self.literals.get(name).cloned().unwrap_or_default();
        if let Some(regex) = self.regex.as_ref() {
            let input = Input::new(name).anchored(Anchored::Yes);
            let mut patterns = PatternSet::new(regex.pattern_len());
            regex.which_overlapping_matches(&input, &mut patterns);
            out.extend(
                patterns
                    .iter()
                    .filter_map(|p| self.wild.get(p.as_usize()).copied()),
            );
        }
        out.sort_unstable();
        out
    }

    /// The glob at `index`.
    pub fn glob(&self, index: usize) -> Option<&str> {
        self.globs.get(index).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.globs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }
}

/// A glob, classified: a plain name, or a wildcard pattern as a regex.
enum Parsed {
    Literal(String),
    Wildcard(String),
}

fn parse(glob: &str) -> Result<Parsed, GlobError> {
    if glob.is_empty() {
        return Err(GlobError::Empty { glob: glob.into() });
    }
    let mut literal = String::with_capacity(glob.len());
    let mut out = String::with_capacity(glob.len() * 2 + 8);
    let mut wildcard = false;
    // (?s): `*` and `?` match newlines too, so a name cannot hide behind one.
    out.push_str("(?s:");
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                wildcard = true;
                out.push_str(".*");
            }
            '?' => {
                wildcard = true;
                out.push('.');
            }
            '\\' => match chars.next() {
                Some(lit) => {
                    literal.push(lit);
                    push_literal(&mut out, lit);
                }
                None => return Err(GlobError::TrailingEscape { glob: glob.into() }),
            },
            lit => {
                literal.push(lit);
                push_literal(&mut out, lit);
            }
        }
    }
    out.push_str(")$");
    Ok(if wildcard {
        Parsed::Wildcard(out)
    } else {
        Parsed::Literal(literal)
    })
}

fn push_literal(out: &mut String, c: char) {
    // regex-syntax accepts an escape before any of its meta characters.
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_sets_report_every_match() {
        let set = GlobSet::new_overlapping(&["get-*", "*-weather", "echo", "*"]).unwrap();
        assert_eq!(set.all_matches("get-weather"), vec![0, 1, 3]);
        assert_eq!(set.all_matches("echo"), vec![2, 3]);
        assert_eq!(set.all_matches("get-weatherx"), vec![0, 3]);
        let plain = GlobSet::new(&["get-*", "*-weather"]).unwrap();
        assert_eq!(plain.all_matches("get-weather"), vec![0]);
    }

    #[test]
    fn literal_and_wildcard_globs_keep_list_order() {
        let set = GlobSet::new(&["get-*", "get-time", "a\\*b", "get-time"]).unwrap();
        // The wildcard comes first in the list, so it is the first match.
        assert_eq!(set.first_match("get-time"), Some(0));
        let set = GlobSet::new(&["get-time", "get-*"]).unwrap();
        assert_eq!(set.first_match("get-time"), Some(0));
        assert_eq!(set.first_match("get-date"), Some(1));
        // An escaped star is a literal star.
        let set = GlobSet::new_overlapping(&["a\\*b", "*", "a*b", "a\\*b"]).unwrap();
        assert_eq!(set.all_matches("a*b"), vec![0, 1, 2, 3]);
        assert_eq!(set.all_matches("axb"), vec![1, 2]);
        assert!(!GlobSet::new(&["a\\*b"]).unwrap().is_match("axb"));
    }

    #[test]
    fn matches_whole_names_only() {
        let set = GlobSet::new(&["echo", "get-*", "a?c"]).unwrap();
        assert!(set.is_match("echo"));
        assert!(!set.is_match("echo2"));
        assert!(!set.is_match("xecho"));
        assert!(set.is_match("get-weather"));
        assert!(set.is_match("get-"));
        assert!(!set.is_match("forget-it"));
        assert!(set.is_match("abc"));
        assert!(!set.is_match("ac"));
        assert_eq!(set.first_match("get-time"), Some(1));
        assert_eq!(set.glob(1), Some("get-*"));
    }

    #[test]
    fn star_matches_everything_including_newlines_and_slashes() {
        let set = GlobSet::new(&["*"]).unwrap();
        assert!(set.is_match(""));
        assert!(set.is_match("a/b\nc"));
        let files = GlobSet::new(&["file:///data/*"]).unwrap();
        assert!(files.is_match("file:///data/x/y"));
        assert!(!files.is_match("file:///etc/passwd"));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        let set = GlobSet::new(&["a.b", "x+(y)", r"lit\*"]).unwrap();
        assert!(set.is_match("a.b"));
        assert!(!set.is_match("aXb"));
        assert!(set.is_match("x+(y)"));
        assert!(set.is_match("lit*"));
        assert!(!set.is_match("litX"));
        let newline = GlobSet::new(&["echo"]).unwrap();
        assert!(!newline.is_match("echo\n"));
    }

    #[test]
    fn empty_list_matches_nothing_and_bad_globs_fail() {
        let set = GlobSet::new::<&str>(&[]).unwrap();
        assert!(!set.is_match("echo"));
        assert!(GlobSet::new(&[""]).is_err());
        assert!(GlobSet::new(&["abc\\"]).is_err());
    }
}

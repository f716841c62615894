//! ARCHITECTURE.md cannot rot: every file it names exists, every function
//! its tables name is defined in a file of the same row, and the tools/call
//! spine stays at five files or fewer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

/// The `code` spans of a piece of text.
fn spans(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

const EXTENSIONS: &[&str] = &[
    ".rs", ".md", ".toml", ".wit", ".py", ".mjs", ".json", ".sh", ".yaml",
];

/// Whether a span names a file or directory of the repository: it starts
/// with one of the repository's top-level entries, or is a file name.
fn is_path(span: &str, top: &BTreeSet<String>) -> bool {
    if span.contains(' ') || span.contains("::") {
        return false;
    }
    let first = span.split('/').next().unwrap_or("");
    (span.contains('/') && top.contains(first)) || EXTENSIONS.iter().any(|e| span.ends_with(e))
}

fn top_level() -> BTreeSet<String> {
    std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "target")
        .collect()
}

/// Every file name in the repository (for bare names like `engine.rs`).
fn names(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            names(&path, out);
        } else {
            out.insert(name);
        }
    }
}

#[test]
fn every_file_it_names_exists() {
    let top = top_level();
    let mut all = BTreeSet::new();
    names(&root(), &mut all);
    let mut missing = Vec::new();
    let mut checked = 0;
    for span in spans(&page()) {
        if !is_path(&span, &top) {
            continue;
        }
        checked += 1;
        let found = if let Some((prefix, suffix)) = span.split_once('*') {
            // `tests/e2e_*.rs`: some file of the directory matches.
            let (dir, start) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            std::fs::read_dir(root().join(dir)).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(start) && n.ends_with(suffix)
                })
            })
        } else if span.contains('/') {
            root().join(span.trim_end_matches('/')).exists()
        } else {
            all.contains(&span)
        };
        if !found {
            missing.push(span);
        }
    }
    assert!(
        checked > 30,
        "only {checked} paths read: is the page's format still the same?"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {missing:?}"
    );
}

/// The table rows of the section headed `heading`, up to the next `## `.
fn section(heading: &str) -> String {
    let page = page();
    let start = page
        .find(heading)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no {heading:?} section"));
    let rest = &page[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// Functions (`Type::f`, `module::f`, `f`) named in the rows of the tables
/// of `text` that also name a source file: each must be defined in one of
/// the row's files.
fn check_rows(text: &str) -> usize {
    let mut checked = 0;
    for row in text.lines().filter(|l| l.starts_with('|')) {
        let spans = spans(row);
        let files: Vec<&String> = spans.iter().filter(|s| s.ends_with(".rs")).collect();
        if files.is_empty() {
            continue;
        }
        let sources: Vec<String> = files
            .iter()
            .filter(|f| f.contains('/'))
            .map(|f| std::fs::read_to_string(root().join(f)).unwrap_or_default())
            .collect();
        for span in &spans {
            let is_function = span
                .rsplit("::")
                .next()
                .is_some_and(|f| f.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                && span
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
                && (span.contains("::") || span.contains('_'));
            if !is_function || span.ends_with(".rs") {
                continue;
            }
            let name = span.rsplit("::").next().unwrap_or(span);
            let defined = sources
                .iter()
                .any(|s| s.contains(&format!("fn {name}(")) || s.contains(&format!("fn {name}<")));
            assert!(
                defined,
                "ARCHITECTURE.md: `{span}` is not defined in {files:?} (row: {row})"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_function_its_tables_name_is_defined_where_it_says() {
    let n = check_rows(&page());
    assert!(n >= 15, "only {n} functions read from the tables");
}

#[test]
fn the_spine_is_five_files_or_fewer() {
    let spine = section("## The spine");
    // The first table of the section is the spine.
    let table: Vec<&str> = spine
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let files: BTreeSet<String> = table
        .iter()
        .flat_map(|row| spans(row))
        .filter(|s| s.ends_with(".rs"))
        .collect();
    assert!(
        !files.is_empty() && files.len() <= 5,
        "the spine names {} files: {files:?}",
        files.len()
    );
    // It starts where the proxy hands over the body.
    assert!(table.iter().any(|r| r.contains("on_http_request_body")));
}

/// Every workspace member has a row in the crate map, under its own name
/// and directory, so a new crate cannot arrive without its one concern.
#[test]
fn every_workspace_crate_is_on_the_crate_map() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap();
    let members: Vec<&str> = manifest[start..end]
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert!(members.len() > 5, "no members read from Cargo.toml");
    let map = section("## Crates");
    let mut missing = Vec::new();
    for member in members {
        let crate_toml = std::fs::read_to_string(root().join(member).join("Cargo.toml")).unwrap();
        let name = crate_toml
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        let row = format!("| `{name}` | `{member}/` |");
        if !map.contains(&row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's crate map lacks rows: {missing:?}"
    );
}

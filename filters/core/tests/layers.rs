//! The crate's layering, enforced: a module imports only from its own layer
//! or below, every module has a layer, and the import graph has no cycle.
//!
//! The layers are the ones `src/lib.rs` documents. A new module must be
//! placed here on purpose; one that reaches upward (say `mcp` naming the
//! engine) fails with the file and the import, so the dependency can be
//! turned around before it sets.
//!
//! Imports are read from the source: every `crate::` and `super::` path
//! outside comments and outside the `#[cfg(test)] mod tests` block, grouped
//! imports (`use crate::{a, b::{c, d}}`) included.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layer of each module node. A node is a top-level module, except under
/// `policy`, whose files sit on different layers (approval tokens below the
/// verdict, the gate above it).
const LAYERS: &[(&str, u8)] = &[
    // 0. foundations
    ("env", 0),
    ("json", 0),
    ("jcs", 0),
    ("glob", 0),
    ("spec", 0),
    ("media", 0),
    ("sniff", 0),
    ("route", 0),
    ("coerce", 0),
    ("sse", 0),
    ("mcp", 0),
    ("outcall", 0),
    ("fleet", 0),
    // 1. facts
    ("audit", 1),
    ("pins", 1),
    ("scan", 1),
    ("signing", 1),
    ("identity", 1),
    ("policy::approval", 1),
    // 2. rules
    ("policy", 2),
    ("policy::when", 2),
    ("policy::limits", 2),
    // 3. verdicts
    ("verdict", 3),
    // 4. the bundle, and the policy gate
    ("bundle", 4),
    ("policy::gate", 4),
    // 5. pillars
    ("registry", 5),
    ("content", 5),
    ("tasks", 5),
    // 6. the engine
    ("engine", 6),
    // 7. the driver, and helpers for tests of everything below
    ("driver", 7),
    ("test_util", 7),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (module path, file).
fn files(dir: &Path, module: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.is_dir() {
            let mut m = module.to_vec();
            m.push(name);
            files(&path, &m, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut m = module.to_vec();
            if stem != "mod" && stem != "lib" {
                m.push(stem.to_owned());
            }
            out.push((m, path));
        }
    }
}

/// The source without comments and without its unit-test module.
fn code(text: &str) -> String {
    let mut kept = String::new();
    let mut skip_depth: Option<i64> = None;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let line = strip_comment(line);
        let trimmed = line.trim();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += braces(&line);
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test && trimmed.starts_with("mod ") && trimmed.ends_with('{') {
            pending_cfg_test = false;
            let depth = braces(&line);
            if depth > 0 {
                skip_depth = Some(depth);
            }
            continue;
        }
        pending_cfg_test = false;
        kept.push_str(&line);
        kept.push('\n');
    }
    kept
}

/// `line` up to a `//` that is outside a string literal.
fn strip_comment(line: &str) -> String {
    let mut in_string = false;
    let mut escaped = false;
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn braces(line: &str) -> i64 {
    line.chars()
        .map(|c| match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        })
        .sum()
}

fn ident_at(chars: &[char], mut i: usize) -> Option<(String, usize)> {
    let start = i;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    (i > start).then(|| (chars[start..i].iter().collect(), i))
}

/// The paths a use-tree starting at `i` names, each prefixed by `prefix`.
fn tree(chars: &[char], i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    if chars.get(i) == Some(&'{') {
        let mut depth = 0;
        let mut j = i + 1;
        let mut item_start = j;
        while j < chars.len() {
            match chars[j] {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    item(chars, item_start, prefix, out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    item(chars, item_start, prefix, out);
                    item_start = j + 1;
                }
                _ => {}
            }
            j += 1;
        }
        return;
    }
    item(chars, i, prefix, out);
}

fn item(chars: &[char], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    let Some((name, next)) = ident_at(chars, i) else {
        if !prefix.is_empty() {
            out.push(prefix.to_vec());
        }
        return;
    };
    let mut path = prefix.to_vec();
    path.push(name);
    if chars.get(next) == Some(&':') && chars.get(next + 1) == Some(&':') {
        tree(chars, next + 2, &path, out);
    } else {
        out.push(path);
    }
}

/// Every path the code names through `anchor` (`crate::` or `super::`).
fn paths(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let anchor: Vec<char> = anchor.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + anchor.len() <= chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if boundary && chars[i..i + anchor.len()] == anchor[..] {
            tree(&chars, i + anchor.len(), &[], &mut out);
            i += anchor.len();
        } else {
            i += 1;
        }
    }
    out
}

fn node(module: &[String]) -> String {
    match module {
        [first, second, ..] if first == "policy" => format!("policy::{second}"),
        [first, ..] => first.clone(),
        [] => "lib".to_owned(),
    }
}

struct Graph {
    /// node -> node -> one place it is imported (file and path)
    edges: BTreeMap<String, BTreeMap<String, String>>,
    nodes: BTreeSet<String>,
}

fn graph() -> Graph {
    let mut all = Vec::new();
    files(&src(), &[], &mut all);
    let modules: BTreeSet<Vec<String>> = all.iter().map(|(m, _)| m.clone()).collect();
    // The longest module prefix of a path: the module it imports from.
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut nodes = BTreeSet::new();
    for (module, file) in &all {
        // Unit-test files (`scan/tests.rs`) are tests, not layers.
        if module.is_empty() || module.last().is_some_and(|m| m == "tests") {
            continue;
        }
        let from = node(module);
        nodes.insert(from.clone());
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code = code(&text);
        let mut named = paths(&code, "crate::");
        // `super::x` in module `a::b` (`a/b.rs` or `a/b/mod.rs`) is `a::x`.
        let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
        for p in paths(&code, "super::") {
            let mut full = parent.clone();
            full.extend(p);
            named.push(full);
        }
        for path in named {
            let Some(target) = resolve(&path) else {
                continue;
            };
            let to = node(&target);
            if to != from {
                let place = format!("{}: {}", relative(file), path.join("::"));
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(place);
            }
        }
    }
    Graph { edges, nodes }
}

fn relative(file: &Path) -> String {
    file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or(file)
        .display()
        .to_string()
}

fn layer(node: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == node).map(|(_, l)| *l)
}

#[test]
fn every_module_has_a_layer() {
    let g = graph();
    let missing: Vec<&String> = g.nodes.iter().filter(|n| layer(n).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules without a layer: {missing:?}; place each in LAYERS (tests/layers.rs) and in the \
         list in src/lib.rs"
    );
    // And no layer names a module that is gone.
    let stale: Vec<&str> = LAYERS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !g.nodes.contains(*n) && *n != "test_util")
        .collect();
    assert!(
        stale.is_empty(),
        "LAYERS names modules that do not exist: {stale:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let g = graph();
    let mut upward = Vec::new();
    for (from, tos) in &g.edges {
        let Some(lf) = layer(from) else { continue };
        for (to, place) in tos {
            let Some(lt) = layer(to) else { continue };
            if lt > lf {
                upward.push(format!(
                    "{from} (layer {lf}) imports {to} (layer {lt}) at {place}"
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that reach upward (move the shared item down, or the importer up):\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_import_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search with colours; report the first cycle found.
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        if let Some(tos) = g.edges.get(n) {
            for to in tos.keys() {
                if let Some(c) = visit(to, g, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in &g.nodes {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(n, &g, &mut state, &mut stack) {
            let places: Vec<String> = cycle
                .windows(2)
                .filter_map(|w| g.edges.get(&w[0]).and_then(|t| t.get(&w[1])).cloned())
                .collect();
            panic!(
                "import cycle {}:\n{}",
                cycle.join(" -> "),
                places.join("\n")
            );
        }
    }
}

/// The reader itself: grouped and nested imports, `super::`, comments and
/// the test module are read as a person would.
#[test]
fn the_reader_reads_grouped_imports_and_skips_comments_and_tests() {
    let text = "use crate::{a::{B, c::D}, e};\n\
                // use crate::commented;\n\
                let s = \"// not a comment\"; crate::f::g(); // crate::trailing\n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::only_in_tests;\n}\n";
    let code = code(text);
    let mut found: Vec<String> = paths(&code, "crate::")
        .iter()
        .map(|p| p.join("::"))
        .collect();
    found.sort();
    assert_eq!(found, ["a::B", "a::c::D", "e", "f::g"]);
}

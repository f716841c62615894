//! `portcullis promote SERVER@VERSION --to ENV --bundles DIR`: copies an
//! approved `McpServer` document, at the `spec.serverVersion` it was
//! approved at, from one environment's bundle directory to the next, the
//! way a reviewer would edit the tree by hand, so the result is an ordinary
//! commit to review.
//!
//! `DIR` holds one bundle directory per environment (`dev`, `staging`,
//! `prod`, and `ENV@TENANT` for a tenant's own). The document is found by
//! kind and name in the source environment; in the target it replaces the
//! server's document, in place: the whole file when the document is alone
//! in it, else only that document's lines (from its first line that is not
//! a comment), every other byte kept. A server
//! new to the target gets a file of its own. The target must still compile
//! with the change, or nothing is written.
//!
//! Documents are split on `---` lines at column 0, the only place YAML
//! allows a document marker, so comments and formatting survive.

use crate::Failure;
use clap::Args;
use portcullis_core::bundle::yaml::{load_sources, parse_documents};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The promotion order; an environment's default source is the one before.
pub const ORDER: [&str; 3] = ["dev", "staging", "prod"];

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The server and its `spec.serverVersion`, e.g. `weather@1.4.0`.
    target: String,
    /// The environment to promote into (`staging`, `prod`, `prod@TENANT`).
    #[arg(long)]
    to: String,
    /// The environment to promote from (default: the one before `--to` in
    /// dev → staging → prod).
    #[arg(long)]
    from: Option<String>,
    /// The directory holding one bundle directory per environment.
    #[arg(long)]
    bundles: PathBuf,
    /// Show the change without writing it.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// A YAML file cut into documents: `(start, end)` byte ranges of each
/// document's text, marker lines excluded.
fn split_documents(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---"
            || bare == "..."
            || bare.starts_with("--- #")
            || (bare.starts_with("---") && bare.get(3..).is_some_and(|r| r.trim().is_empty()));
        if is_marker {
            out.push((start, pos));
            start = pos + line.len();
        }
        pos += line.len();
    }
    out.push((start, text.len()));
    out
}

/// A document's range without the comment and blank lines that open it:
/// those belong to the file around it, and stay when it is replaced.
fn body_range(text: &str, (start, end): (usize, usize)) -> (usize, usize) {
    let mut pos = start;
    for line in text
        .get(start..end)
        .unwrap_or_default()
        .split_inclusive('\n')
    {
        let t = line.trim();
        if !(t.is_empty() || t.starts_with('#')) {
            break;
        }
        pos += line.len();
    }
    (pos, end)
}

/// A document's kind and name, if it parses as one.
fn identify(text: &str) -> Option<Value> {
    let docs = parse_documents("", text).ok()?;
    docs.into_iter().next().map(|d| d.value)
}

fn is_server(doc: &Value, name: &str) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some("McpServer")
        && doc.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
}

/// Whether a range holds only blank lines and comments.
fn is_empty(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

/// Every `*.yaml` / `*.yml` file under `dir`, recursively, in path order
/// (as the bundle loader reads them), with names relative to `dir`.
fn files(dir: &Path) -> Result<Vec<(String, String)>, Failure> {
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                collect(&path, out)?;
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut paths = Vec::new();
    collect(dir, &mut paths)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", dir.display())))?;
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        let shown = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        out.push((shown, text));
    }
    Ok(out)
}

/// Where a server's document is: file index and byte range.
struct Found {
    file: usize,
    range: (usize, usize),
    /// The only document of its file (besides comments).
    alone: bool,
    doc: Value,
}

fn find(files: &[(String, String)], name: &str) -> Result<Option<Found>, String> {
    let mut found: Option<Found> = None;
    for (i, (file, text)) in files.iter().enumerate() {
        let ranges = split_documents(text);
        let docs = ranges
            .iter()
            .filter(|(s, e)| !is_empty(text.get(*s..*e).unwrap_or("")))
            .count();
        for &(s, e) in &ranges {
            let Some(doc) = text.get(s..e).and_then(identify) else {
                continue;
            };
            if is_server(&doc, name) {
                if let Some(prev) = &found {
                    return Err(format!(
                        "McpServer/{name} is defined twice ({} and {file}); fix the directory first",
                        files.get(prev.file).map_or("", |f| f.0.as_str())
                    ));
                }
                found = Some(Found {
                    file: i,
                    range: (s, e),
                    alone: docs == 1,
                    doc,
                });
            }
        }
    }
    Ok(found)
}

/// The environment `to` is promoted from by default.
fn previous(bundles: &Path, to: &str) -> Result<String, Failure> {
    let (base, tenant) = match to.split_once('@') {
        Some((b, t)) => (b, Some(t)),
        None => (to, None),
    };
    let at = ORDER.iter().position(|e| *e == base).ok_or_else(|| {
        Failure::Usage(format!(
            "--to {to}: no default --from for it (the order is dev → staging → prod); pass --from ENV"
        ))
    })?;
    let Some(prev) = at.checked_sub(1).and_then(|i| ORDER.get(i)) else {
        return Err(Failure::Usage(format!(
            "--to {to}: {base} is the first environment; nothing is promoted into it"
        )));
    };
    // A tenant's environment is promoted from the same tenant's previous
    // one when there is one, else from the shared previous one.
    if let Some(t) = tenant {
        let own = format!("{prev}@{t}");
        if bundles.join(&own).is_dir() {
            return Ok(own);
        }
    }
    Ok((*prev).to_owned())
}

pub fn run(args: PromoteArgs) -> Result<(), Failure> {
    let Some((server, version)) = args.target.rsplit_once('@') else {
        return Err(Failure::Usage(format!(
            "{:?} is not SERVER@VERSION (e.g. weather@1.4.0)",
            args.target
        )));
    };
    if server.is_empty() || version.is_empty() {
        return Err(Failure::Usage(format!(
            "{:?} is not SERVER@VERSION (e.g. weather@1.4.0)",
            args.target
        )));
    }
    let from = match &args.from {
        Some(f) => f.clone(),
        None => previous(&args.bundles, &args.to)?,
    };
    if from == args.to {
        return Err(Failure::Usage(format!("--from and --to are both {from}")));
    }
    let from_dir = args.bundles.join(&from);
    let to_dir = args.bundles.join(&args.to);
    for dir in [&from_dir, &to_dir] {
        if !dir.is_dir() {
            return Err(Failure::Usage(format!(
                "{} is not a directory; --bundles holds one bundle directory per environment",
                dir.display()
            )));
        }
    }

    let source_files = files(&from_dir)?;
    let source = find(&source_files, server)
        .map_err(|e| Failure::Input(vec![format!("portcullis: {from}: {e}")]))?
        .ok_or_else(|| {
            Failure::Input(vec![format!(
                "portcullis: {} has no McpServer/{server}",
                from_dir.display()
            )])
        })?;
    let have = source
        .doc
        .pointer("/spec/serverVersion")
        .and_then(Value::as_str);
    if have != Some(version) {
        return Err(Failure::Input(vec![format!(
            "portcullis: {from} has McpServer/{server} at serverVersion {}, not {version}; \
             promote the version that was approved there",
            have.map_or("(none)".into(), |v| format!("{v:?}"))
        )]));
    }
    let (source_file, source_text) = source_files
        .get(source.file)
        .ok_or_else(|| Failure::Usage("internal: lost the source file".into()))?;
    let doc_text = source_text
        .get(source.range.0..source.range.1)
        .unwrap_or_default();

    let mut target_files = files(&to_dir)?;
    let existing = find(&target_files, server)
        .map_err(|e| Failure::Input(vec![format!("portcullis: {}: {e}", args.to)]))?;
    let old_version = existing
        .as_ref()
        .and_then(|f| f.doc.pointer("/spec/serverVersion"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let changed_file = match &existing {
        Some(found) => {
            let (name, text) = target_files
                .get_mut(found.file)
                .ok_or_else(|| Failure::Usage("internal: lost the target file".into()))?;
            let new_text = if found.alone {
                // The whole file is the server's: it becomes the source's
                // file (with its comments) when the source is alone too.
                if source.alone {
                    source_text.clone()
                } else {
                    doc_text.to_owned()
                }
            } else {
                let (s, e) = body_range(text, found.range);
                let (bs, be) = body_range(source_text, source.range);
                let mut body = source_text.get(bs..be).unwrap_or_default().to_owned();
                if !body.ends_with('\n') && e < text.len() {
                    body.push('\n');
                }
                format!(
                    "{}{}{}",
                    text.get(..s).unwrap_or_default(),
                    body,
                    text.get(e..).unwrap_or_default()
                )
            };
            if new_text == *text {
                println!(
                    "portcullis: {}/{name} already has McpServer/{server} at {version}; nothing to do",
                    args.to
                );
                return Ok(());
            }
            *text = new_text;
            name.clone()
        }
        None => {
            let base = Path::new(source_file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{server}.yaml"));
            let name = if target_files.iter().any(|(f, _)| *f == base) {
                format!("{server}.yaml")
            } else {
                base
            };
            if target_files.iter().any(|(f, _)| *f == name) {
                return Err(Failure::Input(vec![format!(
                    "portcullis: {}/{name} exists and does not hold McpServer/{server}; \
                     add the document by hand",
                    args.to
                )]));
            }
            let text = if source.alone {
                source_text.clone()
            } else {
                doc_text.to_owned()
            };
            target_files.push((name.clone(), text));
            name
        }
    };

    // The target must still compile: an invalid bundle is never written.
    if let Err(errors) = load_sources(&target_files) {
        let mut lines: Vec<String> = errors
            .iter()
            .map(|e| format!("error: {}/{e}", to_dir.display()))
            .collect();
        lines.push(format!(
            "portcullis: promoting McpServer/{server}@{version} would break {}; nothing written",
            args.to
        ));
        return Err(Failure::Input(lines));
    }

    let path = to_dir.join(&changed_file);
    let (_, text) = target_files
        .iter()
        .find(|(f, _)| *f == changed_file)
        .ok_or_else(|| Failure::Usage("internal: lost the changed file".into()))?;
    let summary = match &old_version {
        Some(old) if old != version => {
            format!(
                "promote {server} {old} → {version} to {} (from {from})",
                args.to
            )
        }
        Some(_) => format!("promote {server} {version} to {} (from {from})", args.to),
        None if existing.is_some() => {
            format!("promote {server}@{version} to {} (from {from})", args.to)
        }
        None => format!("add {server}@{version} to {} (from {from})", args.to),
    };
    if !args.dry_run {
        std::fs::write(&path, text)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    println!(
        "{} {}",
        if args.dry_run {
            "would change"
        } else {
            "changed"
        },
        path.display()
    );
    println!("commit: {summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_markers_only() {
        let text = "a: 1\n---\nb: |\n  ---\n  x\n--- \nc: 3";
        let r = split_documents(text);
        let parts: Vec<&str> = r.iter().map(|(s, e)| &text[*s..*e]).collect();
        assert_eq!(parts, vec!["a: 1\n", "b: |\n  ---\n  x\n", "c: 3"]);
    }
}

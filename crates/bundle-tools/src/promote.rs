//! Promotion: an approved `McpServer` document, at the `spec.serverVersion`
//! it was approved at, copied from one environment's bundle directory to
//! the next, the way a reviewer would edit the tree by hand, so the result
//! is an ordinary commit to review.
//!
//! The bundles directory holds one bundle directory per environment (`dev`,
//! `staging`, `prod`, and `ENV@TENANT` for a tenant's own). The document is
//! found by kind and name in the source environment; in the target it
//! replaces the server's document, in place: the whole file when the
//! document is alone in it, else only that document's lines (from its
//! first line that is not a comment), every other byte kept. A server new
//! to the target gets a file of its own. The target must still compile with
//! the change ([`plan`] checks it with the bundle loader), or there is no
//! plan.
//!
//! Documents are split on `---` lines at column 0, the only place YAML
//! allows a document marker, so comments and formatting survive.

use portcullis_core::bundle::BundleError;
use portcullis_core::bundle::yaml::{load_sources, parse_documents};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The promotion order; an environment's default source is the one before.
pub const ORDER: [&str; 3] = ["dev", "staging", "prod"];

/// What to promote, and where.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The directory holding one bundle directory per environment.
    pub bundles: &'a Path,
    /// `metadata.name` of the McpServer.
    pub server: &'a str,
    /// The `spec.serverVersion` it must have in the source.
    pub version: &'a str,
    /// The source environment (`None`: [`default_source`]).
    pub from: Option<&'a str>,
    /// The target environment.
    pub to: &'a str,
}

/// What a promotion changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The target already holds the document as the source has it.
    Unchanged {
        /// The target's file, relative to its environment directory.
        file: String,
    },
    /// Write `text` to `path`.
    Write {
        path: PathBuf,
        text: String,
        /// The source environment.
        from: String,
        /// A commit message's subject line.
        summary: String,
    },
}

/// Why there is no plan.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// Not `SERVER@VERSION`.
    #[error("{0:?} is not SERVER@VERSION (e.g. weather@1.4.0)")]
    BadTarget(String),
    /// `to` is not in [`ORDER`], so it has no default source.
    #[error("{to}: no default source environment (the order is dev → staging → prod)")]
    NoDefaultSource { to: String },
    /// `to` is the first environment.
    #[error("{to}: {base} is the first environment; nothing is promoted into it")]
    FirstEnvironment { to: String, base: String },
    /// Source and target are the same environment.
    #[error("the source and target environments are both {0}")]
    SameEnvironment(String),
    /// An environment directory is missing.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// An environment's file or directory cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server is defined twice in one environment.
    #[error(
        "{env}: McpServer/{server} is defined twice ({first} and {second}); fix the directory first"
    )]
    DefinedTwice {
        env: String,
        server: String,
        first: String,
        second: String,
    },
    /// The source has no such server.
    #[error("{} has no McpServer/{server}", .dir.display())]
    Missing { dir: PathBuf, server: String },
    /// The source has the server at another version.
    #[error("{from} has McpServer/{server} at serverVersion {}, not {want}; promote the version that was approved there",
        .have.as_ref().map_or("(none)".into(), |v| format!("{v:?}")))]
    WrongVersion {
        from: String,
        server: String,
        have: Option<String>,
        want: String,
    },
    /// The file a new server would get holds something else.
    #[error("{to}/{file} exists and does not hold McpServer/{server}; add the document by hand")]
    NameTaken {
        to: String,
        file: String,
        server: String,
    },
    /// The target would not compile; nothing is planned.
    #[error("promoting McpServer/{server}@{version} would break {to}")]
    WouldBreak {
        to: String,
        to_dir: PathBuf,
        server: String,
        version: String,
        errors: Vec<BundleError>,
    },
    /// A bug: a file found a moment ago is gone from the list.
    #[error("internal: lost the {0} file")]
    Internal(&'static str),
}

/// Splits `SERVER@VERSION` (at the last `@`).
pub fn parse_target(target: &str) -> Result<(&str, &str), PromoteError> {
    match target.rsplit_once('@') {
        Some((server, version)) if !server.is_empty() && !version.is_empty() => {
            Ok((server, version))
        }
        _ => Err(PromoteError::BadTarget(target.to_owned())),
    }
}

/// The environment `to` is promoted from by default: the one before it in
/// [`ORDER`]; for `ENV@TENANT`, the same tenant's previous environment when
/// it has one, else the shared one.
pub fn default_source(bundles: &Path, to: &str) -> Result<String, PromoteError> {
    let (base, tenant) = match to.split_once('@') {
        Some((b, t)) => (b, Some(t)),
        None => (to, None),
    };
    let at = ORDER
        .iter()
        .position(|e| *e == base)
        .ok_or_else(|| PromoteError::NoDefaultSource { to: to.to_owned() })?;
    let Some(prev) = at.checked_sub(1).and_then(|i| ORDER.get(i)) else {
        return Err(PromoteError::FirstEnvironment {
            to: to.to_owned(),
            base: base.to_owned(),
        });
    };
    if let Some(t) = tenant {
        let own = format!("{prev}@{t}");
        if bundles.join(&own).is_dir() {
            return Ok(own);
        }
    }
    Ok((*prev).to_owned())
}

/// Plans a promotion: reads both environments, splices the document into
/// the target's text, and checks that the target still compiles.
pub fn plan(req: &Request) -> Result<Plan, PromoteError> {
    let (server, version, to) = (req.server, req.version, req.to);
    let from = match req.from {
        Some(f) => f.to_owned(),
        None => default_source(req.bundles, to)?,
    };
    if from == to {
        return Err(PromoteError::SameEnvironment(from));
    }
    let from_dir = req.bundles.join(&from);
    let to_dir = req.bundles.join(to);
    for dir in [&from_dir, &to_dir] {
        if !dir.is_dir() {
            return Err(PromoteError::NotADirectory(dir.clone()));
        }
    }

    let source_files = files(&from_dir)?;
    let source = find(&source_files, &from, server)?.ok_or_else(|| PromoteError::Missing {
        dir: from_dir.clone(),
        server: server.to_owned(),
    })?;
    let have = source
        .doc
        .pointer("/spec/serverVersion")
        .and_then(Value::as_str);
    if have != Some(version) {
        return Err(PromoteError::WrongVersion {
            from,
            server: server.to_owned(),
            have: have.map(str::to_owned),
            want: version.to_owned(),
        });
    }
    let (source_file, source_text) = source_files
        .get(source.file)
        .ok_or(PromoteError::Internal("source"))?;
    let doc_text = source_text
        .get(source.range.0..source.range.1)
        .unwrap_or_default();

    let mut target_files = files(&to_dir)?;
    let existing = find(&target_files, to, server)?;
    let old_version = existing
        .as_ref()
        .and_then(|f| f.doc.pointer("/spec/serverVersion"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let changed_file = match &existing {
        Some(found) => {
            let (name, text) = target_files
                .get_mut(found.file)
                .ok_or(PromoteError::Internal("target"))?;
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
                return Ok(Plan::Unchanged { file: name.clone() });
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
                return Err(PromoteError::NameTaken {
                    to: to.to_owned(),
                    file: name,
                    server: server.to_owned(),
                });
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

    // The target must still compile: an invalid bundle is never planned.
    if let Err(errors) = load_sources(&target_files) {
        return Err(PromoteError::WouldBreak {
            to: to.to_owned(),
            to_dir,
            server: server.to_owned(),
            version: version.to_owned(),
            errors,
        });
    }

    let (_, text) = target_files
        .iter()
        .find(|(f, _)| *f == changed_file)
        .ok_or(PromoteError::Internal("changed"))?;
    let summary = match &old_version {
        Some(old) if old != version => {
            format!("promote {server} {old} → {version} to {to} (from {from})")
        }
        Some(_) => format!("promote {server} {version} to {to} (from {from})"),
        None if existing.is_some() => {
            format!("promote {server}@{version} to {to} (from {from})")
        }
        None => format!("add {server}@{version} to {to} (from {from})"),
    };
    Ok(Plan::Write {
        path: to_dir.join(&changed_file),
        text: text.clone(),
        from,
        summary,
    })
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
fn files(dir: &Path) -> Result<Vec<(String, String)>, PromoteError> {
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
    collect(dir, &mut paths).map_err(|source| PromoteError::Read {
        path: dir.to_owned(),
        source,
    })?;
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| PromoteError::Read {
            path: path.clone(),
            source,
        })?;
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

fn find(files: &[(String, String)], env: &str, name: &str) -> Result<Option<Found>, PromoteError> {
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
                    return Err(PromoteError::DefinedTwice {
                        env: env.to_owned(),
                        server: name.to_owned(),
                        first: files.get(prev.file).map_or("", |f| f.0.as_str()).to_owned(),
                        second: file.clone(),
                    });
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

    #[test]
    fn targets_and_default_sources() {
        assert_eq!(parse_target("a@b@1.0").unwrap(), ("a@b", "1.0"));
        assert!(parse_target("weather").is_err());
        assert!(parse_target("@1").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_source(dir.path(), "prod").unwrap(), "staging");
        assert_eq!(default_source(dir.path(), "prod@acme").unwrap(), "staging");
        std::fs::create_dir(dir.path().join("staging@acme")).unwrap();
        assert_eq!(
            default_source(dir.path(), "prod@acme").unwrap(),
            "staging@acme"
        );
        assert!(matches!(
            default_source(dir.path(), "dev"),
            Err(PromoteError::FirstEnvironment { .. })
        ));
        assert!(matches!(
            default_source(dir.path(), "qa"),
            Err(PromoteError::NoDefaultSource { .. })
        ));
    }
}

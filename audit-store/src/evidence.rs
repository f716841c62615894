//! Evidence packs: a directory of files, a manifest of their SHA-256
//! hashes, and an Ed25519 signature over the manifest; plus running the
//! crosswalk's saved queries against a store.
//!
//! The pack is shaped for an auditor who trusts nothing but a public key:
//! `manifest.json` lists every file with its hash and size, `manifest.sig`
//! signs the manifest's exact bytes (domain-separated, like checkpoints),
//! so one signature check and one hash per file prove that nothing was
//! changed, added or removed since the pack was written. The key is the
//! audit store's checkpoint key format (`keys`), so one `audit keygen`
//! serves both. What the files *contain* (which queries, which framework)
//! is the caller's business: this module signs and checks any directory.

use crate::{Error, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The manifest's file name inside a pack.
pub const MANIFEST: &str = "manifest.json";
/// The signature's file name inside a pack.
pub const SIGNATURE: &str = "manifest.sig";
/// What `schema` a manifest carries.
pub const SCHEMA: &str = "portcullis.evidence/v1";
/// Prefixed to the manifest bytes before signing, so a signature over a
/// pack can never be mistaken for one over a checkpoint, or vice versa.
pub const MANIFEST_DOMAIN: &[u8] = b"portcullis.evidence.manifest/v1\0";

/// One file of a pack, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the pack, `/`-separated.
    pub path: String,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// The manifest: the files, the signer, and whatever the caller describes
/// the pack with (framework, window, store head, ...), kept in `meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    #[serde(flatten)]
    pub meta: serde_json::Map<String, Value>,
    pub files: Vec<FileEntry>,
}

/// Hashes every file under `dir` (recursively, sorted by path), except the
/// manifest and signature themselves.
pub fn hash_tree(dir: &Path) -> Result<Vec<FileEntry>> {
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths)?;
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for rel in paths {
        if rel == MANIFEST || rel == SIGNATURE {
            continue;
        }
        let (sha256, bytes) = hash_file(&dir.join(&rel))?;
        out.push(FileEntry {
            path: rel,
            sha256,
            bytes,
        });
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else {
            // Symlinks and other non-regular files are listed too, so
            // verification can name them as unexpected rather than follow
            // them out of the pack.
            let rel = path
                .strip_prefix(root)
                .map_err(|_| Error::Format(format!("{} escapes the pack", path.display())))?;
            out.push(rel_string(rel));
        }
    }
    Ok(())
}

fn rel_string(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut HashWriter(&mut h))?;
    Ok((hex::encode(h.finalize()), n))
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(MANIFEST_DOMAIN.len() + manifest.len());
    m.extend_from_slice(MANIFEST_DOMAIN);
    m.extend_from_slice(manifest);
    m
}

/// Hashes `dir`, writes `manifest.json` (with `meta`) and `manifest.sig`.
/// Returns the manifest written.
pub fn seal(
    dir: &Path,
    key: &SigningKey,
    meta: serde_json::Map<String, Value>,
) -> Result<Manifest> {
    let manifest = Manifest {
        schema: SCHEMA.into(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        meta,
        files: hash_tree(dir)?,
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Format(format!("manifest: {e}")))?;
    bytes.push(b'\n');
    let sig = key.sign(&signed_message(&bytes));
    std::fs::write(dir.join(MANIFEST), &bytes)?;
    std::fs::write(
        dir.join(SIGNATURE),
        format!("{}\n", hex::encode(sig.to_bytes())),
    )?;
    Ok(manifest)
}

/// The first thing wrong with a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// `manifest.json` or `manifest.sig` is missing or unreadable.
    Unreadable { path: String, detail: String },
    /// The signature does not verify (the manifest was edited, or signed
    /// by another key than the one trusted).
    BadSignature { detail: String },
    /// A file the manifest lists is not there.
    Missing { path: String },
    /// A file's bytes do not match its hash.
    Modified {
        path: String,
        expected: String,
        actual: String,
    },
    /// A file is there that the manifest does not list.
    Extra { path: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable { path, detail } => write!(f, "{path}: {detail}"),
            Problem::BadSignature { detail } => {
                write!(f, "{MANIFEST}: the signature does not verify: {detail}")
            }
            Problem::Missing { path } => {
                write!(
                    f,
                    "{path}: missing (listed in the manifest, not in the pack)"
                )
            }
            Problem::Modified {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{path}: modified (sha256 {actual}, the manifest says {expected})"
            ),
            Problem::Extra { path } => {
                write!(f, "{path}: unexpected file (not in the manifest)")
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackReport {
    /// Files whose hash was checked and matched.
    pub files_checked: u64,
    /// The signer's key as the manifest names it (hex).
    pub signer: Option<String>,
    /// Whether the signature was checked against a key the caller gave.
    pub trusted_key: bool,
    /// The manifest's own description of the pack, when it could be read.
    pub meta: serde_json::Map<String, Value>,
    /// `None` when everything verified.
    pub problem: Option<Problem>,
}

impl PackReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks a pack: the manifest's signature (against `trusted`, else the key
/// the manifest names), then every listed file's hash, then that no file is
/// there that the manifest does not list. Stops at the first problem.
pub fn verify(dir: &Path, trusted: Option<&VerifyingKey>) -> Result<PackReport> {
    let mut report = PackReport {
        files_checked: 0,
        signer: None,
        trusted_key: trusted.is_some(),
        meta: serde_json::Map::new(),
        problem: None,
    };
    if let Err(p) = check(dir, trusted, &mut report) {
        report.problem = Some(p);
    }
    Ok(report)
}

fn check(
    dir: &Path,
    trusted: Option<&VerifyingKey>,
    report: &mut PackReport,
) -> std::result::Result<(), Problem> {
    let unreadable = |path: &str, detail: String| Problem::Unreadable {
        path: path.into(),
        detail,
    };
    if !dir.is_dir() {
        return Err(unreadable(
            &dir.display().to_string(),
            "not a directory".into(),
        ));
    }
    let bytes =
        std::fs::read(dir.join(MANIFEST)).map_err(|e| unreadable(MANIFEST, e.to_string()))?;
    let sig_text = std::fs::read_to_string(dir.join(SIGNATURE))
        .map_err(|e| unreadable(SIGNATURE, e.to_string()))?;
    let sig = hex::decode(sig_text.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| unreadable(SIGNATURE, "expected 128 hex digits".into()))?;
    // The signature is checked over the raw bytes before anything in them
    // is believed; a manifest that does not parse is then simply "modified".
    let named_key = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("public_key")?.as_str().map(str::to_owned));
    report.signer = named_key.clone();
    let key = match trusted {
        Some(k) => *k,
        None => named_key
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| Problem::BadSignature {
                detail: "the manifest names no valid public_key".into(),
            })?,
    };
    key.verify(&signed_message(&bytes), &sig)
        .map_err(|_| Problem::BadSignature {
            detail: if trusted.is_some() {
                "not signed by the given public key, or the manifest was changed after signing"
                    .into()
            } else {
                "the manifest was changed after signing".into()
            },
        })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| unreadable(MANIFEST, format!("signed but not a manifest: {e}")))?;
    if manifest.schema != SCHEMA {
        return Err(unreadable(
            MANIFEST,
            format!("schema {:?}, expected {SCHEMA}", manifest.schema),
        ));
    }
    report.meta = manifest.meta.clone();
    let mut listed = std::collections::BTreeSet::new();
    for entry in &manifest.files {
        let rel = safe_relative(&entry.path).ok_or_else(|| {
            unreadable(
                MANIFEST,
                format!(
                    "lists {:?}, which is not a path inside the pack",
                    entry.path
                ),
            )
        })?;
        listed.insert(entry.path.clone());
        let path = dir.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(Problem::Missing {
                    path: entry.path.clone(),
                });
            }
        }
        let (actual, _) = hash_file(&path).map_err(|e| unreadable(&entry.path, e.to_string()))?;
        if actual != entry.sha256 {
            return Err(Problem::Modified {
                path: entry.path.clone(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        report.files_checked += 1;
    }
    let mut present = Vec::new();
    walk(dir, dir, &mut present).map_err(|e| unreadable(".", e.to_string()))?;
    present.sort();
    for p in present {
        if p != MANIFEST && p != SIGNATURE && !listed.contains(&p) {
            return Err(Problem::Extra { path: p });
        }
    }
    Ok(())
}

/// A manifest path as a relative path with no `..`, root or prefix.
fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

/// A SQLite value as JSON (blobs as hex).
pub fn sql_to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(hex::encode(b)),
    }
}

/// Runs a saved (read-only) query with `:since` and `:until` bound (each
/// only if the query names it), handing each row to `each` with the column
/// names. Refuses anything that would write. Returns the column names and
/// the row count.
pub fn run_query(
    conn: &Connection,
    sql: &str,
    since_ms: i64,
    until_ms: i64,
    mut each: impl FnMut(&[String], &rusqlite::Row<'_>) -> Result<()>,
) -> Result<(Vec<String>, u64)> {
    let mut stmt = prepare_query(conn, sql)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    for (name, value) in [(":since", since_ms), (":until", until_ms)] {
        if let Some(i) = stmt.parameter_index(name)? {
            stmt.raw_bind_parameter(i, value)?;
        }
    }
    let mut rows = stmt.raw_query();
    let mut n = 0;
    while let Some(r) = rows.next()? {
        each(&columns, r)?;
        n += 1;
    }
    Ok((columns, n))
}

/// Prepares a saved query, checking that it only reads and names no
/// parameter but `:since` and `:until`.
pub fn prepare_query<'c>(conn: &'c Connection, sql: &str) -> Result<rusqlite::Statement<'c>> {
    let stmt = conn.prepare(sql)?;
    if !stmt.readonly() {
        return Err(Error::Format(
            "a saved query must only read (SELECT); this one writes".into(),
        ));
    }
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            Some(":since") | Some(":until") => {}
            other => {
                return Err(Error::Format(format!(
                    "a saved query may take only :since and :until, not {}",
                    other.unwrap_or("a positional ?")
                )));
            }
        }
    }
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_verify_then_tamper() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.txt"), b"alpha").unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), b"beta").unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut meta = serde_json::Map::new();
        meta.insert("framework".into(), "soc2".into());
        let m = seal(dir.path(), &key, meta).unwrap();
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "sub/b.txt"]);
        let r = verify(dir.path(), Some(&key.verifying_key())).unwrap();
        assert!(r.is_ok(), "{:?}", r.problem);
        assert_eq!(r.files_checked, 2);
        assert_eq!(r.meta.get("framework"), Some(&Value::from("soc2")));

        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let r = verify(dir.path(), Some(&other)).unwrap();
        assert!(matches!(r.problem, Some(Problem::BadSignature { .. })));

        std::fs::write(dir.path().join("sub/b.txt"), b"betA").unwrap();
        let r = verify(dir.path(), None).unwrap();
        assert!(
            matches!(&r.problem, Some(Problem::Modified { path, .. }) if path == "sub/b.txt"),
            "{:?}",
            r.problem
        );
    }

    #[test]
    fn manifest_paths_must_stay_inside() {
        assert!(safe_relative("../x").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../b").is_none());
        assert_eq!(safe_relative("a/b").unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn saved_queries_must_only_read() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (5);")
            .unwrap();
        assert!(prepare_query(&conn, "DELETE FROM t").is_err());
        assert!(prepare_query(&conn, "SELECT x FROM t WHERE x = ?1").is_err());
        let mut seen = Vec::new();
        let (cols, n) = run_query(
            &conn,
            "SELECT x FROM t WHERE x >= :since AND x < :until",
            2,
            9,
            |_, r| {
                seen.push(sql_to_json(r.get_ref(0)?));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((cols, n), (vec!["x".to_string()], 1));
        assert_eq!(seen, [Value::from(5)]);
    }
}

//! Signed compliance evidence packs.
//!
//! `export` runs the crosswalk's saved queries for one framework's
//! controls over the audit store for a time window and writes, per
//! control, the records (verbatim, as chained) and the query results
//! (JSONL and CSV), beside the chain verification report, the checkpoints,
//! the crosswalk itself and the bundle in force. `audit_store::evidence`
//! then hashes every file into a manifest and signs it, so the pack can be
//! handed over and checked offline (`audit_store::evidence::verify`).
//!
//! Layout of a pack:
//!
//! ```text
//! README.txt                  what this is and how to check it
//! controls.json               the framework's controls: mapping, files, counts
//! crosswalk.yaml              the crosswalk used (as embedded)
//! chain-verification.json     the store's verification at export time
//! checkpoints.jsonl           the store's signed checkpoints
//! controls/<ID>/records.jsonl the control's records, as stored
//! controls/<ID>/<query>.jsonl the control's saved queries' rows (and .csv)
//! bundles/bundle.json         the compiled bundle in force
//! bundles/src/...             its YAML sources
//! manifest.json, manifest.sig SHA-256 of every file above; Ed25519 signature
//! ```

use crate::crosswalk::{CROSSWALK_YAML, Crosswalk, QueryKind};
use audit_store::ed25519_dalek::SigningKey;
use audit_store::evidence::{self, run_query, sql_to_json};
use audit_store::rusqlite::Connection;
use audit_store::time::format_rfc3339_ms;
use audit_store::{Finding, Store};
use portcullis_core::bundle::BundleJson;
use serde_json::{Map, Value, json};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One export.
#[derive(Clone, Copy)]
pub struct Export<'a> {
    /// The framework's key in the crosswalk (`soc2`, `hipaa`, ...).
    pub framework: &'a str,
    /// The window, Unix milliseconds: `since` inclusive, `until` exclusive.
    pub since_ms: i64,
    pub until_ms: i64,
    /// When the export runs (the manifest's `generated`).
    pub now_ms: i64,
    /// The audit store, and its path as the manifest records it.
    pub store: &'a Store,
    pub store_path: &'a Path,
    /// The key that signs the manifest.
    pub key: &'a SigningKey,
    /// The compiled bundle in force and its source directory.
    pub bundle: Option<(&'a BundleJson, &'a Path)>,
    /// Where to write the pack: a new or empty directory.
    pub output: &'a Path,
    /// Who made the pack (`portcullis 0.1.0`).
    pub generator: &'a str,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub controls: usize,
    pub records: u64,
    pub files: usize,
    /// The manifest's signer (public key, hex).
    pub signer: String,
    /// What was wrong with the store's chain at export time; the pack
    /// records it in `chain-verification.json`.
    pub store_finding: Option<Finding>,
}

/// Why a pack could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The embedded crosswalk does not validate: a build defect.
    #[error("the embedded crosswalk is invalid (a build defect): {}", .0.join("; "))]
    Crosswalk(Vec<String>),
    /// The output directory has files in it (everything in it would be
    /// sealed into the pack).
    #[error("{}: the directory is not empty", .0.display())]
    OutputNotEmpty(PathBuf),
    /// The output path exists and is not a readable directory.
    #[error("{}: not a directory: {source}", .path.display())]
    OutputNotADirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The output directory cannot be created.
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A pack file cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The audit store failed (a query, verification, sealing).
    #[error(transparent)]
    Store(#[from] audit_store::Error),
    /// Any other file operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A report did not serialise.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Writes and seals a pack.
pub fn export(e: &Export) -> Result<Exported, PackError> {
    let cw = Crosswalk::embedded().map_err(PackError::Crosswalk)?;
    let framework = e.framework;
    let (since, until) = (e.since_ms, e.until_ms);
    prepare_output(e.output)?;
    let dir = e.output;
    let conn = e.store.connection();

    std::fs::write(dir.join("crosswalk.yaml"), CROSSWALK_YAML)?;
    let report = e.store.verify(None)?;
    write_json(
        &dir.join("chain-verification.json"),
        &serde_json::to_value(&report)?,
    )?;
    let cps = cw
        .query("checkpoints")
        .map(|q| q.sql.clone())
        .unwrap_or_else(|| "SELECT * FROM checkpoints ORDER BY seq".into());
    write_rows(conn, &cps, 0, i64::MAX, &dir.join("checkpoints"), false)?;

    let mut controls = Vec::new();
    let mut total_records = 0u64;
    for c in cw.controls_for(framework) {
        let cdir = dir.join("controls").join(&c.id);
        std::fs::create_dir_all(&cdir)?;
        let mut files = Vec::new();
        let mut counts = Map::new();
        if let Some(rq) = c.records.as_deref().and_then(|r| cw.query(r)) {
            let n = write_records(conn, &rq.sql, since, until, &cdir.join("records.jsonl"))?;
            total_records += n;
            files.push(format!("controls/{}/records.jsonl", c.id));
            counts.insert("records".into(), json!({"query": rq.id, "rows": n}));
        }
        for qid in &c.queries {
            let Some(q) = cw.query(qid) else { continue };
            let base = cdir.join(&q.id);
            let n = match q.kind {
                QueryKind::Records => {
                    let n =
                        write_records(conn, &q.sql, since, until, &base.with_extension("jsonl"))?;
                    files.push(format!("controls/{}/{}.jsonl", c.id, q.id));
                    n
                }
                QueryKind::Summary => {
                    let n = write_rows(conn, &q.sql, since, until, &base, true)?;
                    files.push(format!("controls/{}/{}.jsonl", c.id, q.id));
                    files.push(format!("controls/{}/{}.csv", c.id, q.id));
                    n
                }
            };
            counts.insert(q.id.clone(), json!({"title": q.title, "rows": n}));
        }
        controls.push(json!({
            "id": c.id,
            "title": c.title,
            "pillar": c.pillar,
            "description": c.description,
            "framework_controls": c.mappings.get(framework),
            "implemented_by": {
                "bundle": c.implemented_by.bundle,
                "audit": c.implemented_by.audit,
                "features": c.implemented_by.features,
            },
            "notes": c.notes,
            "files": files,
            "results": counts,
        }));
    }
    let framework_name = cw
        .frameworks
        .get(framework)
        .map(|f| f.name.clone())
        .unwrap_or_default();
    write_json(
        &dir.join("controls.json"),
        &json!({"framework": framework, "framework_name": framework_name, "controls": controls}),
    )?;

    let mut bundle_meta = Value::Null;
    if let Some((b, src)) = e.bundle {
        let bdir = dir.join("bundles");
        std::fs::create_dir_all(bdir.join("src"))?;
        write_json(&bdir.join("bundle.json"), &serde_json::to_value(b)?)?;
        copy_yaml(src, &bdir.join("src"))?;
        bundle_meta = json!({"version": b.version, "documents": b.documents.len(), "source": src.display().to_string()});
    }
    let (head_seq, head_hash) = e.store.head()?;
    std::fs::write(
        dir.join("README.txt"),
        readme(framework, &framework_name, since, until),
    )?;

    let mut meta = Map::new();
    meta.insert("framework".into(), framework.into());
    meta.insert("framework_name".into(), framework_name.clone().into());
    meta.insert("crosswalk_version".into(), cw.version.clone().into());
    meta.insert("generated".into(), format_rfc3339_ms(e.now_ms).into());
    meta.insert("since".into(), format_rfc3339_ms(since).into());
    meta.insert("until".into(), format_rfc3339_ms(until).into());
    meta.insert(
        "store".into(),
        json!({
            "path": e.store_path.display().to_string(),
            "head_seq": head_seq,
            "head_hash": hex_string(&head_hash),
            "verified": report.is_ok(),
            "checkpoint_signers": report.signers,
        }),
    );
    meta.insert("bundle".into(), bundle_meta);
    meta.insert("generator".into(), e.generator.into());
    let manifest = evidence::seal(dir, e.key, meta)?;
    Ok(Exported {
        controls: controls.len(),
        records: total_records,
        files: manifest.files.len(),
        signer: manifest.public_key,
        store_finding: report.finding,
    })
}

/// A new or empty directory, created if missing.
fn prepare_output(dir: &Path) -> Result<(), PackError> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|source| PackError::OutputNotADirectory {
                path: dir.to_owned(),
                source,
            })?;
        if entries.next().is_some() {
            return Err(PackError::OutputNotEmpty(dir.to_owned()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| PackError::Create {
        path: dir.to_owned(),
        source,
    })
}

fn write_json(path: &Path, v: &Value) -> Result<(), PackError> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    std::fs::write(path, s).map_err(|source| PackError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A records query's rows: the `record` column, verbatim, one per line.
fn write_records(
    conn: &Connection,
    sql: &str,
    since: i64,
    until: i64,
    path: &Path,
) -> Result<u64, PackError> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    let (_, n) = run_query(conn, sql, since, until, |cols, row| {
        let i = cols.iter().position(|c| c == "record").unwrap_or(0);
        let text: String = row.get(i)?;
        writeln!(w, "{text}")?;
        Ok(())
    })?;
    w.flush()?;
    Ok(n)
}

/// A summary query's rows as JSONL (`base.jsonl`) and, with `csv`, CSV.
fn write_rows(
    conn: &Connection,
    sql: &str,
    since: i64,
    until: i64,
    base: &Path,
    csv: bool,
) -> Result<u64, PackError> {
    let mut jw = BufWriter::new(std::fs::File::create(base.with_extension("jsonl"))?);
    let mut cw = if csv {
        Some(BufWriter::new(std::fs::File::create(
            base.with_extension("csv"),
        )?))
    } else {
        None
    };
    let mut header = false;
    let (cols, n) = run_query(conn, sql, since, until, |cols, row| {
        let mut obj = Map::new();
        let mut cells = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            let v = sql_to_json(row.get_ref(i)?);
            cells.push(audit_store::query::csv_cell(&match &v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }));
            obj.insert(c.clone(), v);
        }
        writeln!(jw, "{}", Value::Object(obj))?;
        if let Some(w) = cw.as_mut() {
            if !header {
                writeln!(w, "{}", cols.join(","))?;
                header = true;
            }
            writeln!(w, "{}", cells.join(","))?;
        }
        Ok(())
    })?;
    if let Some(w) = cw.as_mut() {
        if !header {
            writeln!(w, "{}", cols.join(","))?;
        }
        w.flush()?;
    }
    jw.flush()?;
    Ok(n)
}

fn copy_yaml(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let path = entry.path();
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&to)?;
            copy_yaml(&path, &to)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            std::fs::copy(&path, &to)?;
        }
    }
    Ok(())
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn readme(framework: &str, name: &str, since: i64, until: i64) -> String {
    format!(
        "Portcullis evidence pack: {name} ({framework})\n\
         Window: {} to {} (exclusive)\n\
         \n\
         controls.json lists each Portcullis control mapped to this framework, the\n\
         framework control ids it contributes to, and its files under controls/<ID>/:\n\
         records.jsonl holds the audit records exactly as the store chained them; each\n\
         <query>.jsonl / .csv holds a saved query's rows (the SQL is in crosswalk.yaml).\n\
         chain-verification.json is the store's hash-chain verification at export time.\n\
         \n\
         To check this pack: portcullis evidence verify DIR --public-key KEY.pub\n\
         manifest.json lists the SHA-256 of every other file; manifest.sig is an Ed25519\n\
         signature (hex) over the bytes \"portcullis.evidence.manifest/v1\\0\" followed by\n\
         manifest.json exactly as stored.\n",
        format_rfc3339_ms(since),
        format_rfc3339_ms(until)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_store::{Config, sample};

    #[test]
    fn a_pack_verifies_and_refuses_a_used_directory() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let cfg = Config {
            signing_key: Some(key.clone()),
            ..Config::default()
        };
        let mut store = Store::open(&dir.path().join("a.db"), cfg).unwrap();
        let now = audit_store::time::now_ms();
        for i in 0..10u64 {
            store
                .append(&sample::record(i, "alice", "search", now - 1000))
                .unwrap();
        }
        store.checkpoint().unwrap();
        let out = dir.path().join("pack");
        let export = Export {
            framework: "soc2",
            since_ms: now - 86_400_000,
            until_ms: now + 1,
            now_ms: now,
            store: &store,
            store_path: &dir.path().join("a.db"),
            key: &key,
            bundle: None,
            output: &out,
            generator: "test",
        };
        let done = super::export(&export).unwrap();
        assert!(done.controls > 0 && done.files > 0, "{done:?}");
        assert!(done.store_finding.is_none());
        let report = evidence::verify(&out, Some(&key.verifying_key())).unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(
            report.meta.get("framework").and_then(Value::as_str),
            Some("soc2")
        );
        assert!(matches!(
            super::export(&export),
            Err(PackError::OutputNotEmpty(_))
        ));
    }
}

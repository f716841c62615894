//! `portcullis evidence export|verify`: signed compliance evidence packs.
//!
//! An auditor asks, per framework control, "show me the evidence". The
//! crosswalk (`compliance/crosswalk.yaml`, embedded: [`crosswalk`]) says
//! which Portcullis controls serve which framework controls and which saved
//! queries evidence each; `export` runs those queries over the audit store
//! for a time window and writes, per control, the records (verbatim, as
//! chained) and the query results (JSONL and CSV), beside the chain
//! verification report, the checkpoints, the crosswalk itself and the
//! bundle in force. `audit_store::evidence` then hashes every file into a
//! manifest and signs it with an audit-store key (`portcullis audit
//! keygen`), so the pack can be handed over and checked offline with
//! `evidence verify` and nothing but the public key.
//!
//! Layout of a pack:
//!
//! ```text
//! README.txt                  what this is and how to check it
//! controls.json               the framework's controls: mapping, files, counts
//! crosswalk.yaml              the crosswalk used (as embedded)
//! chain-verification.json     `audit verify` of the store at export time
//! checkpoints.jsonl           the store's signed checkpoints
//! controls/<ID>/records.jsonl the control's records, as stored
//! controls/<ID>/<query>.jsonl the control's saved queries' rows (and .csv)
//! bundles/bundle.json         the compiled bundle in force (--bundles)
//! bundles/src/...             its YAML sources
//! manifest.json, manifest.sig SHA-256 of every file above; Ed25519 signature
//! ```

pub mod crosswalk;

use anyhow::{Context, Result, bail};
use audit_store::evidence::{self, run_query, sql_to_json};
use audit_store::time::{format_rfc3339_ms, now_ms, parse_time_arg};
use audit_store::{Config, Store};
use crosswalk::{Crosswalk, QueryKind};
use serde_json::{Map, Value, json};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `portcullis evidence <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum EvidenceCommand {
    /// Write a signed evidence pack for one framework from the audit store.
    Export(ExportArgs),
    /// Check a pack: every hash, no file missing or extra, the signature.
    Verify(VerifyArgs),
}

/// The frameworks the crosswalk maps to, by their CLI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framework {
    #[value(name = "soc2")]
    Soc2,
    #[value(name = "hipaa")]
    Hipaa,
    #[value(name = "pci")]
    Pci,
    #[value(name = "eu-ai-act")]
    EuAiAct,
    #[value(name = "nist-ai-rmf")]
    NistAiRmf,
    #[value(name = "iso27001")]
    Iso27001,
}

impl Framework {
    pub fn key(self) -> &'static str {
        match self {
            Framework::Soc2 => "soc2",
            Framework::Hipaa => "hipaa",
            Framework::Pci => "pci",
            Framework::EuAiAct => "eu-ai-act",
            Framework::NistAiRmf => "nist-ai-rmf",
            Framework::Iso27001 => "iso27001",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub framework: Framework,
    /// The window's start: a duration back from now (90d) or RFC 3339.
    #[arg(long, default_value = "90d")]
    pub since: String,
    /// The window's end (exclusive): a duration back from now or RFC 3339.
    /// Default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// The audit store (SQLite).
    #[arg(long)]
    pub audit: PathBuf,
    /// The Ed25519 key that signs the manifest (`portcullis audit keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The bundle directory in force, copied into the pack with its
    /// compiled JSON.
    #[arg(long)]
    pub bundles: Option<PathBuf>,
    /// Where to write the pack: a new or empty directory.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The pack directory.
    pub dir: PathBuf,
    /// The public key the manifest must be signed with (KEY.pub). Without
    /// it, the signature is checked against the key the manifest names,
    /// which shows integrity, not who signed.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs an evidence subcommand for `main`: exit 0 on success, 1 when the
/// pack (or the store it was exported from) does not verify, 2 when the
/// command could not run.
pub fn dispatch(cmd: &EvidenceCommand) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let r = match cmd {
        EvidenceCommand::Export(a) => export(a, &mut out),
        EvidenceCommand::Verify(a) => verify(a, &mut out),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: evidence: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `evidence export`.
pub fn export(a: &ExportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let cw = Crosswalk::embedded().map_err(|e| {
        anyhow::anyhow!(
            "the embedded crosswalk is invalid (a build defect): {}",
            e.join("; ")
        )
    })?;
    let framework = a.framework.key();
    let now = now_ms();
    let since = parse_time_arg(&a.since, now).with_context(|| {
        format!(
            "--since {:?}: expected a duration (90d, 12h) or RFC 3339",
            a.since
        )
    })?;
    let until = match &a.until {
        Some(u) => parse_time_arg(u, now)
            .with_context(|| format!("--until {u:?}: expected a duration or RFC 3339"))?,
        None => now,
    };
    if since >= until {
        bail!("--since must be before --until");
    }
    let key = audit_store::load_signing_key(&a.key).with_context(|| {
        format!(
            "signing key {} (make one with `portcullis audit keygen --out FILE`)",
            a.key.display()
        )
    })?;
    let bundle = a
        .bundles
        .as_deref()
        .map(|d| {
            crate::bundle_cmd::load(d).map_err(|f| match f {
                crate::Failure::Usage(l) => anyhow::anyhow!(l),
                crate::Failure::Input(lines) => anyhow::anyhow!(lines.join("; ")),
            })
        })
        .transpose()?;
    let store = Store::open_existing(&a.audit, Config::default())
        .with_context(|| format!("cannot open audit store {}", a.audit.display()))?;
    prepare_output(&a.output)?;
    let dir = &a.output;

    std::fs::write(dir.join("crosswalk.yaml"), crosswalk::CROSSWALK_YAML)?;
    let report = store.verify(None)?;
    write_json(
        &dir.join("chain-verification.json"),
        &serde_json::to_value(&report)?,
    )?;
    let cps = cw
        .query("checkpoints")
        .map(|q| q.sql.clone())
        .unwrap_or_else(|| "SELECT * FROM checkpoints ORDER BY seq".into());
    write_rows(
        store.connection(),
        &cps,
        0,
        i64::MAX,
        &dir.join("checkpoints"),
        false,
    )?;

    let mut controls = Vec::new();
    let mut total_records = 0u64;
    for c in cw.controls_for(framework) {
        let cdir = dir.join("controls").join(&c.id);
        std::fs::create_dir_all(&cdir)?;
        let mut files = Vec::new();
        let mut counts = Map::new();
        if let Some(rq) = c.records.as_deref().and_then(|r| cw.query(r)) {
            let n = write_records(
                store.connection(),
                &rq.sql,
                since,
                until,
                &cdir.join("records.jsonl"),
            )?;
            total_records += n;
            files.push(format!("controls/{}/records.jsonl", c.id));
            counts.insert("records".into(), json!({"query": rq.id, "rows": n}));
        }
        for qid in &c.queries {
            let Some(q) = cw.query(qid) else { continue };
            let base = cdir.join(&q.id);
            let n = match q.kind {
                QueryKind::Records => {
                    let n = write_records(
                        store.connection(),
                        &q.sql,
                        since,
                        until,
                        &base.with_extension("jsonl"),
                    )?;
                    files.push(format!("controls/{}/{}.jsonl", c.id, q.id));
                    n
                }
                QueryKind::Summary => {
                    let n = write_rows(store.connection(), &q.sql, since, until, &base, true)?;
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
    if let (Some(b), Some(src)) = (&bundle, a.bundles.as_deref()) {
        let bdir = dir.join("bundles");
        std::fs::create_dir_all(bdir.join("src"))?;
        write_json(&bdir.join("bundle.json"), &serde_json::to_value(b)?)?;
        copy_yaml(src, &bdir.join("src"))?;
        bundle_meta = json!({"version": b.version, "documents": b.documents.len(), "source": src.display().to_string()});
    }
    let (head_seq, head_hash) = store.head()?;
    std::fs::write(
        dir.join("README.txt"),
        readme(framework, &framework_name, since, until),
    )?;

    let mut meta = Map::new();
    meta.insert("framework".into(), framework.into());
    meta.insert("framework_name".into(), framework_name.clone().into());
    meta.insert("crosswalk_version".into(), cw.version.clone().into());
    meta.insert("generated".into(), format_rfc3339_ms(now).into());
    meta.insert("since".into(), format_rfc3339_ms(since).into());
    meta.insert("until".into(), format_rfc3339_ms(until).into());
    meta.insert(
        "store".into(),
        json!({
            "path": a.audit.display().to_string(),
            "head_seq": head_seq,
            "head_hash": hex_string(&head_hash),
            "verified": report.is_ok(),
            "checkpoint_signers": report.signers,
        }),
    );
    meta.insert("bundle".into(), bundle_meta);
    meta.insert(
        "generator".into(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION")).into(),
    );
    let manifest = evidence::seal(dir, &key, meta)?;
    writeln!(
        out,
        "wrote {framework} evidence pack {}: {} controls, {} records, {} files; manifest signed by {}",
        dir.display(),
        controls.len(),
        total_records,
        manifest.files.len(),
        manifest.public_key
    )?;
    if let Some(f) = &report.finding {
        writeln!(
            out,
            "FAILED: the audit store does not verify ({f}); the pack records this in \
             chain-verification.json"
        )?;
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `evidence verify`.
pub fn verify(a: &VerifyArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let trusted = a
        .public_key
        .as_deref()
        .map(audit_store::load_verifying_key)
        .transpose()?;
    let report = evidence::verify(&a.dir, trusted.as_ref())?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        match &report.problem {
            None => {
                let field = |k: &str| report.meta.get(k).and_then(Value::as_str).unwrap_or("?");
                writeln!(
                    out,
                    "OK: {} files verified; {} evidence pack for {} .. {}, signed by {}",
                    report.files_checked,
                    field("framework"),
                    field("since"),
                    field("until"),
                    report.signer.as_deref().unwrap_or("?")
                )?;
                if !report.trusted_key {
                    writeln!(
                        out,
                        "note: the signature was checked against the key the manifest names; \
                         pass --public-key KEY.pub to check who signed it"
                    )?;
                }
                if report
                    .meta
                    .get("store")
                    .and_then(|s| s.get("verified"))
                    .and_then(Value::as_bool)
                    == Some(false)
                {
                    writeln!(
                        out,
                        "warning: the audit store did not verify when this pack was exported; \
                         see chain-verification.json"
                    )?;
                }
            }
            Some(p) => writeln!(out, "FAILED: {p}")?,
        }
    }
    out.flush()?;
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn prepare_output(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("-o {}: not a directory", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "-o {}: the directory is not empty; give a new or empty directory (everything \
                 in it is sealed into the pack)",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

/// A records query's rows: the `record` column, verbatim, one per line.
fn write_records(
    conn: &audit_store::rusqlite::Connection,
    sql: &str,
    since: i64,
    until: i64,
    path: &Path,
) -> Result<u64> {
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
    conn: &audit_store::rusqlite::Connection,
    sql: &str,
    since: i64,
    until: i64,
    base: &Path,
    csv: bool,
) -> Result<u64> {
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

fn copy_yaml(src: &Path, dst: &Path) -> Result<()> {
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

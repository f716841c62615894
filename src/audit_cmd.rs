//! `portcullis audit ...`: the audit store's subcommands, as clap argument
//! structs and plain functions, so `main.rs` only adds one enum variant.
//!
//! Each command is a function that takes its parsed arguments and a writer
//! and returns the process exit code, so the tests drive it exactly as the
//! binary does without spawning it. The store itself is the
//! `portcullis-audit-store` crate; this file only translates flags
//! (durations such as `30d`, key files, formats) into its API calls.

use anyhow::{Context, Result, bail};
use audit_store::time::{now_ms, parse_duration_ms, parse_time_arg};
use audit_store::{Config, Filter, Format, Order, Store, Synchronous};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `portcullis audit <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Select records: "every call by user X to tool Y in the last 30 days".
    Query(QueryArgs),
    /// Walk the hash chain and checkpoints; name the first record that was
    /// modified, removed or reordered.
    Verify(VerifyArgs),
    /// Append records from a JSONL file (`-` for standard input).
    Ingest(IngestArgs),
    /// Apply retention: remove records older than the retention period.
    Prune(PruneArgs),
    /// Generate a checkpoint signing key (and KEY.pub).
    Keygen(KeygenArgs),
    /// List shadow MCP servers: MCP traffic to servers not in the registry.
    Shadow(ShadowArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Csv,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync every commit: survives power loss.
    Full,
    /// fsync at WAL checkpoints: survives a process kill, not power loss.
    Normal,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The audit store (SQLite).
    #[arg(long)]
    pub db: PathBuf,
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// gen_ai.tool.name.
    #[arg(long)]
    pub tool: Option<String>,
    #[arg(long)]
    pub server: Option<String>,
    /// mcp.method.name, such as tools/call.
    #[arg(long)]
    pub method: Option<String>,
    /// allow or deny.
    #[arg(long)]
    pub decision: Option<String>,
    /// A duration back from now (30d, 12h, 90m) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// A duration back from now or an RFC 3339 time (exclusive).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: OutputFormat,
    /// Order by seq (the chain's order) instead of time.
    #[arg(long)]
    pub by_seq: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub db: PathBuf,
    /// The public key checkpoints must be signed with (hex, as `keygen`
    /// writes to KEY.pub). Without it, each checkpoint is checked against
    /// the key it names, which shows consistency, not authenticity.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    #[arg(long)]
    pub db: PathBuf,
    /// JSONL audit records (as `portcullis serve --audit-log` writes), or `-`.
    pub file: PathBuf,
    /// The checkpoint signing key. Default: DB.key, generated if missing.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Sign a checkpoint every N records.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Records per transaction at most.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "full")]
    pub sync: SyncMode,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[arg(long)]
    pub db: PathBuf,
    /// The checkpoint signing key. Default: DB.key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Keep this much history (a duration: 90d, 12w).
    #[arg(long, default_value = "90d")]
    pub retention: String,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the secret key; the public key goes to OUT.pub.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ShadowArgs {
    #[arg(long)]
    pub db: PathBuf,
    /// A duration back from now (30d, 12h) or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    pub since: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ShadowFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShadowFormat {
    Table,
    Json,
}

/// Runs an audit subcommand for `main`: exit 0 on success, 1 when
/// `verify` finds tampering, 2 when the command could not run (the error is
/// printed as one line on standard error).
pub fn dispatch(cmd: &AuditCommand) -> ExitCode {
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: audit: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs an audit subcommand, writing to standard output.
pub fn run(cmd: &AuditCommand) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        AuditCommand::Query(a) => query(a, &mut out),
        AuditCommand::Verify(a) => verify(a, &mut out),
        AuditCommand::Ingest(a) => ingest(a, &mut out),
        AuditCommand::Prune(a) => prune(a, &mut out),
        AuditCommand::Keygen(a) => keygen(a, &mut out),
        AuditCommand::Shadow(a) => shadow(a, &mut out),
    }
}

/// `audit query`.
pub fn query(a: &QueryArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let now = now_ms();
    let time = |s: &Option<String>, flag: &str| -> Result<Option<i64>> {
        s.as_deref()
            .map(|v| {
                parse_time_arg(v, now).with_context(|| {
                    format!("--{flag} {v:?}: expected a duration (30d, 12h, 90m) or RFC 3339")
                })
            })
            .transpose()
    };
    let filter = Filter {
        subject: a.subject.clone(),
        agent: a.agent.clone(),
        tenant: a.tenant.clone(),
        tool: a.tool.clone(),
        server: a.server.clone(),
        method: a.method.clone(),
        decision: a.decision.clone(),
        since: time(&a.since, "since")?,
        until: time(&a.until, "until")?,
        limit: a.limit,
        order: if a.by_seq { Order::Seq } else { Order::Time },
    };
    let store = open_existing(&a.db, Config::default())?;
    let format = match a.format {
        OutputFormat::Json => Format::Json,
        OutputFormat::Csv => Format::Csv,
        OutputFormat::Table => Format::Table,
    };
    store.query_to(&filter, format, out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: exit 0 when the store verifies, 1 when it does not.
pub fn verify(a: &VerifyArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let trusted = a
        .key
        .as_deref()
        .map(audit_store::load_verifying_key)
        .transpose()?;
    let store = open_existing(&a.db, Config::default())?;
    let report = store.verify(trusted.as_ref())?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        match &report.finding {
            None => writeln!(
                out,
                "OK: {} records verified (through seq {}), {} signed checkpoints{}{}",
                report.records,
                report.last_seq,
                report.checkpoints,
                match report.anchor_seq {
                    Some(s) => format!(", resuming from the pruning anchor at {s}"),
                    None => String::new(),
                },
                if report.unsealed > 0 {
                    format!(
                        "; {} records after the last checkpoint are not yet sealed",
                        report.unsealed
                    )
                } else {
                    String::new()
                }
            )?,
            Some(f) => writeln!(out, "FAILED: {f}")?,
        }
        if report.is_ok() && report.checkpoints == 0 && report.records > 0 {
            writeln!(
                out,
                "warning: no signed checkpoints: the chain is self-consistent, but nothing is \
                 sealed against a consistent rewrite"
            )?;
        }
        if !report.trusted_key && report.checkpoints > 0 {
            writeln!(
                out,
                "note: signatures were checked against the keys the checkpoints name ({}); \
                 pass --key PUB to check them against a key you trust",
                report.signers.join(", ")
            )?;
        }
    }
    out.flush()?;
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `audit ingest`.
pub fn ingest(a: &IngestArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let key = signing_key(&a.db, a.key.as_deref(), true, out)?;
    let cfg = Config {
        checkpoint_every: a.checkpoint_every,
        synchronous: match a.sync {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        },
        signing_key: Some(key),
        ..Config::default()
    };
    let mut store = Store::open(&a.db, cfg)?;
    let report = if a.file.as_os_str() == "-" {
        audit_store::ingest_jsonl_stream(&mut store, std::io::stdin().lock(), a.batch, |_, _| {})
    } else {
        let f = std::fs::File::open(&a.file)
            .with_context(|| format!("cannot open {}", a.file.display()))?;
        audit_store::ingest_jsonl(&mut store, f, a.batch, |_, _| {})
    };
    // Seal what was committed even if a later line was bad.
    let closed = store.close();
    let report = report?;
    closed?;
    match (report.first_seq, report.last_seq) {
        (Some(f), Some(l)) => writeln!(out, "ingested {} records (seq {f}..={l})", report.records)?,
        _ => writeln!(out, "ingested 0 records")?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `audit prune`.
pub fn prune(a: &PruneArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let Some(retention_ms) = parse_duration_ms(&a.retention) else {
        bail!(
            "--retention {:?}: expected a duration such as 90d",
            a.retention
        );
    };
    let key = signing_key(&a.db, a.key.as_deref(), false, out)?;
    let mut store = open_existing(
        &a.db,
        Config {
            retention_ms,
            signing_key: Some(key),
            ..Config::default()
        },
    )?;
    let report = store.prune(now_ms())?;
    store.close()?;
    match report.anchor_seq {
        Some(s) => writeln!(
            out,
            "pruned {} records; the chain now resumes from the signed checkpoint at {s}",
            report.removed
        )?,
        None => writeln!(out, "pruned {} records", report.removed)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `audit keygen`.
pub fn keygen(a: &KeygenArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let public = audit_store::generate_key(&a.out)?;
    writeln!(
        out,
        "wrote {} (secret) and {} (public {})",
        a.out.display(),
        audit_store::keys::public_path(&a.out).display(),
        audit_store::keys::public_hex(&public)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn open_existing(db: &Path, cfg: Config) -> Result<Store> {
    Store::open_existing(db, cfg)
        .with_context(|| format!("cannot open audit store {}", db.display()))
}

/// The signing key: `--key`, else `DB.key` (generated when `create`).
pub fn signing_key(
    db: &Path,
    key: Option<&Path>,
    create: bool,
    out: &mut dyn Write,
) -> Result<audit_store::ed25519_dalek::SigningKey> {
    let path = match key {
        Some(k) => k.to_path_buf(),
        None => {
            let mut p = db.as_os_str().to_owned();
            p.push(".key");
            PathBuf::from(p)
        }
    };
    if create && key.is_none() && !path.exists() {
        let public = audit_store::generate_key(&path)?;
        writeln!(
            out,
            "generated checkpoint signing key {} (public key {}); keep a copy of the public key \
             away from the database and pass it to `audit verify --key`",
            path.display(),
            audit_store::keys::public_hex(&public)
        )?;
    }
    audit_store::load_signing_key(&path).with_context(|| format!("signing key {}", path.display()))
}

/// `audit shadow`: the shadow MCP servers seen since `--since`, by authority.
pub fn shadow(a: &ShadowArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let since = parse_time_arg(&a.since, now_ms()).with_context(|| {
        format!(
            "--since {:?}: expected a duration (30d, 12h, 90m) or RFC 3339",
            a.since
        )
    })?;
    let store = open_existing(&a.db, Config::default())?;
    let found = audit_store::shadow::shadow_servers(store.connection(), Some(since))?;
    let fmt = audit_store::time::format_rfc3339_ms;
    match a.format {
        ShadowFormat::Json => {
            for s in &found {
                let mut v = serde_json::to_value(s)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("first_seen".into(), fmt(s.first_seen_ms).into());
                    o.insert("last_seen".into(), fmt(s.last_seen_ms).into());
                }
                writeln!(out, "{v}")?;
            }
        }
        ShadowFormat::Table => {
            let header = [
                "AUTHORITY",
                "FIRST_SEEN",
                "LAST_SEEN",
                "COUNT",
                "CALLERS",
                "PATHS",
            ];
            let rows: Vec<[String; 6]> = found
                .iter()
                .map(|s| {
                    let callers: Vec<String> = s
                        .callers
                        .iter()
                        .map(|c| {
                            let who = [c.subject.as_deref(), c.address.as_deref()]
                                .into_iter()
                                .flatten()
                                .collect::<Vec<_>>()
                                .join("@");
                            let who = if who.is_empty() {
                                "(anonymous)".into()
                            } else {
                                who
                            };
                            format!("{who} ({})", c.count)
                        })
                        .collect();
                    [
                        s.authority.clone(),
                        fmt(s.first_seen_ms),
                        fmt(s.last_seen_ms),
                        s.count.to_string(),
                        callers.join(", "),
                        s.paths.join(", "),
                    ]
                })
                .collect();
            let mut widths = header.map(str::len);
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String], out: &mut dyn Write| -> Result<()> {
                let parts: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", parts.join("  ").trim_end())?;
                Ok(())
            };
            line(&header.map(String::from), out)?;
            for r in &rows {
                line(r, out)?;
            }
            writeln!(
                out,
                "({} shadow server{} since {})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                fmt(since)
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

//! `portcullis audit query|verify|ingest|prune|keygen|shadow`: the
//! tamper-evident audit store (`audit-store/`, its `admin` operations),
//! fed by `serve --audit-log` files.
//!
//! This file only translates flags (durations such as `30d`, key files,
//! formats) into those calls and prints their reports. Exit 0 on success,
//! 1 when `verify` finds tampering, 2 when the command could not run.

use crate::failure::Failure;
use audit_store::admin::{self, IngestOptions};
use audit_store::time::{now_ms, parse_duration_ms, parse_time_arg};
use audit_store::{Filter, Format, Order, Synchronous};
use std::path::{Path, PathBuf};

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

/// A command that could not run: `portcullis: audit: ...`.
fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::in_command("audit", e)
}

pub fn run(cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Query(a) => query(&a),
        AuditCommand::Verify(a) => verify(&a),
        AuditCommand::Ingest(a) => ingest(&a),
        AuditCommand::Prune(a) => prune(&a),
        AuditCommand::Keygen(a) => keygen(&a),
        AuditCommand::Shadow(a) => shadow(&a),
    }
}

/// A `--since` / `--until` value: a duration back from `now` or RFC 3339.
fn time_arg(flag: &str, value: &str, now: i64) -> Result<i64, Failure> {
    parse_time_arg(value, now).ok_or_else(|| {
        failed(format!(
            "--{flag} {value:?}: expected a duration (30d, 12h, 90m) or RFC 3339"
        ))
    })
}

fn query(a: &QueryArgs) -> Result<(), Failure> {
    let now = now_ms();
    let time =
        |s: &Option<String>, flag: &str| s.as_deref().map(|v| time_arg(flag, v, now)).transpose();
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
    let format = match a.format {
        OutputFormat::Json => Format::Json,
        OutputFormat::Csv => Format::Csv,
        OutputFormat::Table => Format::Table,
    };
    admin::query(&a.db, &filter, format, &mut std::io::stdout().lock()).map_err(failed)?;
    Ok(())
}

fn verify(a: &VerifyArgs) -> Result<(), Failure> {
    let trusted = a
        .key
        .as_deref()
        .map(audit_store::load_verifying_key)
        .transpose()
        .map_err(failed)?;
    let report = admin::verify(&a.db, trusted.as_ref()).map_err(failed)?;
    if a.json {
        let json = serde_json::to_string(&report).map_err(failed)?;
        println!("{json}");
    } else {
        print!("{}", report.summary());
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::quiet())
    }
}

/// The checkpoint signing key: `--key`, else `DB.key` (made when `create`,
/// and said so on standard output).
pub fn signing_key(db: &Path, key: Option<&Path>, create: bool) -> Result<admin::StoreKey, String> {
    let k = admin::store_key(db, key, create).map_err(|e| {
        let path = key.map_or_else(|| admin::default_key_path(db), Path::to_path_buf);
        format!("signing key {}: {e}", path.display())
    })?;
    Ok(k)
}

fn ingest(a: &IngestArgs) -> Result<(), Failure> {
    let key = signing_key(&a.db, a.key.as_deref(), true).map_err(failed)?;
    if let Some(notice) = key.notice() {
        println!("{notice}");
    }
    let opts = IngestOptions {
        checkpoint_every: a.checkpoint_every,
        batch: a.batch,
        synchronous: match a.sync {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        },
        stream: a.file.as_os_str() == "-",
    };
    let report = if opts.stream {
        admin::ingest(&a.db, key.key, std::io::stdin().lock(), opts)
    } else {
        let f = std::fs::File::open(&a.file)
            .map_err(|e| failed(format!("cannot open {}: {e}", a.file.display())))?;
        admin::ingest(&a.db, key.key, f, opts)
    }
    .map_err(failed)?;
    println!("{report}");
    Ok(())
}

fn prune(a: &PruneArgs) -> Result<(), Failure> {
    let Some(retention_ms) = parse_duration_ms(&a.retention) else {
        return Err(failed(format!(
            "--retention {:?}: expected a duration such as 90d",
            a.retention
        )));
    };
    let key = signing_key(&a.db, a.key.as_deref(), false).map_err(failed)?;
    let report = admin::prune(&a.db, key.key, retention_ms, now_ms()).map_err(failed)?;
    println!("{report}");
    Ok(())
}

fn keygen(a: &KeygenArgs) -> Result<(), Failure> {
    let public = audit_store::generate_key(&a.out).map_err(failed)?;
    println!(
        "wrote {} (secret) and {} (public {})",
        a.out.display(),
        audit_store::keys::public_path(&a.out).display(),
        audit_store::keys::public_hex(&public)
    );
    Ok(())
}

fn shadow(a: &ShadowArgs) -> Result<(), Failure> {
    let since = parse_time_arg(&a.since, now_ms()).ok_or_else(|| {
        failed(format!(
            "--since {:?}: expected a duration (30d, 12h, 90m) or RFC 3339",
            a.since
        ))
    })?;
    let found = admin::shadow(&a.db, since).map_err(failed)?;
    match a.format {
        ShadowFormat::Json => {
            for s in &found {
                println!("{}", audit_store::shadow::to_json(s).map_err(failed)?);
            }
        }
        ShadowFormat::Table => print!("{}", audit_store::shadow::table(&found, since)),
    }
    Ok(())
}

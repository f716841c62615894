//! `portcullis evidence export|verify`: signed compliance evidence packs
//! (docs/evidence.md). The crosswalk and the pack are the `compliance`
//! crate's (`compliance::pack::export`); checking a pack is the audit
//! store's (`audit_store::evidence::verify`). This file turns flags into
//! those calls and prints what they found.
//!
//! Exit 0 on success, 1 when the pack (or the store it was exported from)
//! does not verify, 2 when the command could not run.

use crate::failure::Failure;
use audit_store::evidence;
use audit_store::time::{now_ms, parse_time_arg};
use audit_store::{Config, Store};
use compliance::pack::{self, Export, PackError};
use serde_json::Value;
use std::path::PathBuf;

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

/// A command that could not run: `portcullis: evidence: ...`.
fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::in_command("evidence", e)
}

pub fn run(cmd: EvidenceCommand) -> Result<(), Failure> {
    match cmd {
        EvidenceCommand::Export(a) => export(&a),
        EvidenceCommand::Verify(a) => verify(&a),
    }
}

fn export(a: &ExportArgs) -> Result<(), Failure> {
    let framework = a.framework.key();
    let now = now_ms();
    let since = parse_time_arg(&a.since, now).ok_or_else(|| {
        failed(format!(
            "--since {:?}: expected a duration (90d, 12h) or RFC 3339",
            a.since
        ))
    })?;
    let until = match &a.until {
        Some(u) => parse_time_arg(u, now)
            .ok_or_else(|| failed(format!("--until {u:?}: expected a duration or RFC 3339")))?,
        None => now,
    };
    if since >= until {
        return Err(failed("--since must be before --until"));
    }
    let key = audit_store::load_signing_key(&a.key).map_err(|e| {
        failed(format!(
            "signing key {} (make one with `portcullis audit keygen --out FILE`): {e}",
            a.key.display()
        ))
    })?;
    let bundle = match a.bundles.as_deref() {
        Some(dir) => Some(crate::bundle_cmd::load(dir).map_err(|f| match f {
            Failure::Usage(l) => failed(l),
            Failure::Input(lines) => failed(lines.join("; ")),
        })?),
        None => None,
    };
    let store = Store::open_existing(&a.audit, Config::default()).map_err(|e| {
        failed(format!(
            "cannot open audit store {}: {e}",
            a.audit.display()
        ))
    })?;
    let generator = format!("portcullis {}", env!("CARGO_PKG_VERSION"));
    let done = pack::export(&Export {
        framework,
        since_ms: since,
        until_ms: until,
        now_ms: now,
        store: &store,
        store_path: &a.audit,
        key: &key,
        bundle: bundle.as_ref().zip(a.bundles.as_deref()),
        output: &a.output,
        generator: &generator,
    })
    .map_err(|e| match e {
        PackError::OutputNotEmpty(dir) => failed(format!(
            "-o {}: the directory is not empty; give a new or empty directory (everything \
             in it is sealed into the pack)",
            dir.display()
        )),
        PackError::OutputNotADirectory { .. } => failed(format!("-o {e}")),
        e => failed(e),
    })?;
    println!(
        "wrote {framework} evidence pack {}: {} controls, {} records, {} files; manifest signed by {}",
        a.output.display(),
        done.controls,
        done.records,
        done.files,
        done.signer
    );
    if let Some(f) = &done.store_finding {
        println!(
            "FAILED: the audit store does not verify ({f}); the pack records this in \
             chain-verification.json"
        );
        return Err(Failure::quiet());
    }
    Ok(())
}

fn verify(a: &VerifyArgs) -> Result<(), Failure> {
    let trusted = a
        .public_key
        .as_deref()
        .map(audit_store::load_verifying_key)
        .transpose()
        .map_err(failed)?;
    let report = evidence::verify(&a.dir, trusted.as_ref()).map_err(failed)?;
    if a.json {
        println!("{}", serde_json::to_string(&report).map_err(failed)?);
    } else {
        match &report.problem {
            None => {
                let field = |k: &str| report.meta.get(k).and_then(Value::as_str).unwrap_or("?");
                println!(
                    "OK: {} files verified; {} evidence pack for {} .. {}, signed by {}",
                    report.files_checked,
                    field("framework"),
                    field("since"),
                    field("until"),
                    report.signer.as_deref().unwrap_or("?")
                );
                if !report.trusted_key {
                    println!(
                        "note: the signature was checked against the key the manifest names; \
                         pass --public-key KEY.pub to check who signed it"
                    );
                }
                if report
                    .meta
                    .get("store")
                    .and_then(|s| s.get("verified"))
                    .and_then(Value::as_bool)
                    == Some(false)
                {
                    println!(
                        "warning: the audit store did not verify when this pack was exported; \
                         see chain-verification.json"
                    );
                }
            }
            Some(p) => println!("FAILED: {p}"),
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::quiet())
    }
}

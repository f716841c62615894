//! `portcullis assess`: the governance self-assessment, computed from the
//! bundle in force and, optionally, the audit store (the `assess` crate),
//! printed as text or JSON, and optionally written as an HTML report.
//!
//! Exit 0 with a report, 1 when the bundle does not compile, 2 when the
//! command could not run.

use crate::failure::Failure;
use assess::{Assessment, AuditFacts, BundleFacts};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AssessFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AssessArgs {
    /// The bundle directory in force (YAML documents).
    #[arg(long)]
    pub bundles: PathBuf,
    /// The audit store: evidence of what actually happened.
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// Also write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: AssessFormat,
}

/// A command that could not run: `portcullis: assess: ...`.
fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::in_command("assess", e)
}

pub fn run(args: AssessArgs) -> Result<(), Failure> {
    let bundle = crate::bundle_cmd::load(&args.bundles).map_err(|f| match f {
        Failure::Usage(l) => failed(l),
        input => input,
    })?;
    let bundle_json = serde_json::to_value(&bundle).map_err(failed)?;
    let facts = BundleFacts::read(&bundle_json);
    let audit = match &args.audit {
        Some(db) => Some(
            AuditFacts::read(db)
                .map_err(|e| failed(format!("audit store {}: {e}", db.display())))?,
        ),
        None => None,
    };
    let a = Assessment {
        audit: args.audit.as_ref().map(|p| p.display().to_string()),
        ..assess::assess(&facts, audit.as_ref())
    };
    match args.format {
        AssessFormat::Json => println!("{}", serde_json::to_string_pretty(&a).map_err(failed)?),
        AssessFormat::Text => print!("{}", assess::report::text(&a)),
    }
    if let Some(path) = &args.html {
        let page = assess::report::html(&a).map_err(failed)?;
        std::fs::write(path, page)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

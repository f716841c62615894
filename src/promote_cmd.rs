//! `portcullis promote SERVER@VERSION --to ENV --bundles DIR`: copies an
//! approved `McpServer` document, at the `spec.serverVersion` it was
//! approved at, from one environment's bundle directory to the next, by
//! editing the YAML in place (`bundle_tools::promote`), so the result is an
//! ordinary commit to review. The target must still compile with the
//! change, or nothing is written.

use crate::failure::Failure;
use bundle_tools::promote::{self, Plan, Request};
use clap::Args;
use std::path::PathBuf;

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

pub fn run(args: PromoteArgs) -> Result<(), Failure> {
    let (server, version) = promote::parse_target(&args.target)?;
    let plan = promote::plan(&Request {
        bundles: &args.bundles,
        server,
        version,
        from: args.from.as_deref(),
        to: &args.to,
    })?;
    match plan {
        Plan::Unchanged { file } => println!(
            "portcullis: {}/{file} already has McpServer/{server} at {version}; nothing to do",
            args.to
        ),
        Plan::Write {
            path,
            text,
            summary,
            ..
        } => {
            if !args.dry_run {
                std::fs::write(&path, text)
                    .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
            }
            let done = if args.dry_run {
                "would change"
            } else {
                "changed"
            };
            println!("{done} {}", path.display());
            println!("commit: {summary}");
        }
    }
    Ok(())
}

//! `portcullis bundle build|check|keygen|diff`: compile a directory of
//! registry and policy documents into the filter's JSON, check it, make a
//! signing key, and show what changed between two bundles in reviewer
//! terms (`bundle_tools::diff`).
//!
//! `bundle diff` exits 0, or with `--exit-code` 1 when there are changes
//! (as `git diff --exit-code`); 2 when a bundle cannot be read.

use crate::failure::Failure;
use bundle_tools::diff;
use bundle_tools::source::{self, LoadError};
use clap::{Args, Subcommand};
use portcullis_core::bundle::BundleJson;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Compile DIR's YAML documents into the filter's JSON configuration.
    Build {
        /// Directory of *.yaml / *.yml documents.
        dir: PathBuf,
        /// Write the JSON here instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Sign the bundle with this Ed25519 key (as `bundle keygen` or
        /// `audit keygen` writes it).
        #[arg(long = "sign-key")]
        sign_key: Option<PathBuf>,
    },
    /// Write a new Ed25519 signing key to OUT and its public half to OUT.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Show what changed between two bundles, in reviewer terms.
    Diff(DiffArgs),
    /// Validate DIR without writing anything.
    Check {
        /// Directory of *.yaml / *.yml documents.
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The old bundle: a directory of YAML documents or a compiled JSON file.
    old: PathBuf,
    /// The new bundle, likewise.
    new: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 1 when the bundles differ.
    #[arg(long = "exit-code")]
    exit_code: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Loads and compiles a bundle directory, with errors ready to print
/// (every command that takes a bundle directory loads it here).
pub fn load(dir: &Path) -> Result<BundleJson, Failure> {
    Ok(source::load_dir(dir)?)
}

pub fn run(command: BundleCommand) -> Result<(), Failure> {
    match command {
        BundleCommand::Build {
            dir,
            output,
            sign_key,
        } => build(&dir, output.as_deref(), sign_key.as_deref()),
        BundleCommand::Keygen { out } => {
            let public = audit_store::keys::generate_key(&out)
                .map_err(|e| Failure::Usage(format!("bundle keygen: {e}")))?;
            println!(
                "secret key: {}\npublic key: {} (key id {})\n{}",
                out.display(),
                audit_store::keys::public_path(&out).display(),
                portcullis_core::signing::key_id(&public),
                audit_store::keys::public_hex(&public)
            );
            Ok(())
        }
        BundleCommand::Diff(args) => run_diff(&args),
        BundleCommand::Check { dir } => {
            let bundle = load(&dir)?;
            println!(
                "ok: {} documents, version {}",
                bundle.documents.len(),
                bundle.version
            );
            Ok(())
        }
    }
}

fn build(dir: &Path, output: Option<&Path>, sign_key: Option<&Path>) -> Result<(), Failure> {
    let mut bundle = load(dir)?;
    if let Some(path) = sign_key {
        let key = audit_store::keys::load_signing_key(path).map_err(|e| {
            Failure::Usage(format!(
                "--sign-key: {e}; make one with `portcullis bundle keygen --out FILE`"
            ))
        })?;
        bundle.signature = Some(portcullis_core::signing::sign(&bundle.version, &key));
    }
    let json = serde_json::to_string_pretty(&bundle)
        .map_err(|e| Failure::Usage(format!("cannot serialise the bundle: {e}")))?;
    match output {
        Some(path) => {
            std::fs::write(path, format!("{json}\n"))
                .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "portcullis: wrote {} ({} documents, version {}{})",
                path.display(),
                bundle.documents.len(),
                bundle.version,
                bundle
                    .signature
                    .as_ref()
                    .map(|s| format!(", signed by key {}", s.key_id))
                    .unwrap_or_default()
            );
        }
        None => println!("{json}"),
    }
    Ok(())
}

fn run_diff(args: &DiffArgs) -> Result<(), Failure> {
    let old = load_either(&args.old)?;
    let new = load_either(&args.new)?;
    let changes = diff::diff(&old, &new);
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&diff::to_json(&old, &new, &changes))
                .map_err(|e| Failure::Usage(format!("cannot serialise the diff: {e}")))?
        ),
        Format::Text => print!("{}", diff::render_text(&changes)),
    }
    if args.exit_code && !changes.is_empty() {
        return Err(Failure::quiet());
    }
    Ok(())
}

/// A bundle directory or a compiled JSON file. A directory that does not
/// compile exits 2, not 1: with --exit-code, 1 means "they differ".
fn load_either(path: &Path) -> Result<BundleJson, Failure> {
    source::load_any(path).map_err(|e| match e {
        LoadError::Compile { .. } => {
            if let Failure::Input(lines) = Failure::from(e) {
                for line in lines {
                    eprintln!("{line}");
                }
            }
            Failure::Usage(format!(
                "{} does not compile; nothing was compared",
                path.display()
            ))
        }
        e => e.into(),
    })
}

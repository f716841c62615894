//! `portcullis`: the one command-line tool.
//!
//! * `portcullis bundle build DIR [-o FILE]` / `bundle check DIR`: compile a
//!   directory of registry and policy documents into the filter's JSON.
//! * `portcullis serve ...`: run a proxy-wasm filter (ours by default, with
//!   the bundle as its configuration) in front of an upstream, in host-shim.
//! * `portcullis audit query|verify|ingest|prune|keygen`: the tamper-evident
//!   audit store (`audit-store/`), fed by `serve --audit-log` files.
//! * `portcullis pin --url URL`: a live server's tool pins, as an McpServer document.
//! * `portcullis approve ID --key KEY`, `portcullis simulate --bundle DIR
//!   --calls FILE`: human approval and policy replay (`docs/policy.md`).
//!
//! Exit codes: 0 success; 1 the input was read but is wrong (a bundle with
//! errors); 2 the command itself is wrong (a bad flag, a missing file).

mod approve_cmd;
mod audit_cmd;
mod pin_cmd;
mod serve;
mod simulate_cmd;

use clap::{Parser, Subcommand};
use portcullis_core::bundle::{BundleError, yaml};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "MCP governance in the proxy you already run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile and check bundles.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Run a proxy-wasm filter in front of an upstream (host-shim).
    Serve(serve::ServeArgs),
    /// Query, verify, ingest and prune the tamper-evident audit store.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Print a live MCP server's tool pins as an McpServer bundle document.
    Pin(pin_cmd::PinArgs),
    /// Approve one call a `requireApproval` rule refused: print its token.
    Approve(approve_cmd::ApproveArgs),
    /// Replay recorded calls through a bundle's policy; show what changes.
    Simulate(simulate_cmd::SimulateArgs),
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Compile DIR's YAML documents into the filter's JSON configuration.
    Build {
        /// Directory of *.yaml / *.yml documents.
        dir: PathBuf,
        /// Write the JSON here instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Validate DIR without writing anything.
    Check {
        /// Directory of *.yaml / *.yml documents.
        dir: PathBuf,
    },
}

/// A failure, and which exit code it earns.
pub enum Failure {
    /// Exit 2: the invocation is wrong (one line).
    Usage(String),
    /// Exit 1: the input is wrong (one line per problem).
    Input(Vec<String>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One clear line, not clap's usage block.
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("portcullis: {first} (see `portcullis --help`)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Bundle { command } => run_bundle(command),
        Command::Serve(args) => serve::run(args),
        Command::Pin(args) => pin_cmd::run(args),
        Command::Approve(args) => approve_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::Audit { command } => return audit_cmd::dispatch(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(line)) => {
            eprintln!("portcullis: {line}");
            ExitCode::from(2)
        }
        Err(Failure::Input(lines)) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::from(1)
        }
    }
}

/// Loads and compiles a bundle directory, with errors ready to print.
pub fn load_bundle(dir: &Path) -> Result<portcullis_core::bundle::BundleJson, Failure> {
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "bundle directory {} does not exist or is not a directory",
            dir.display()
        )));
    }
    yaml::load_dir(dir).map_err(|errors| Failure::Input(format_errors(dir, &errors)))
}

fn format_errors(dir: &Path, errors: &[BundleError]) -> Vec<String> {
    let mut lines: Vec<String> = errors
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(f) = &e.file
                && !Path::new(f).is_absolute()
            {
                e.file = Some(dir.join(f).display().to_string());
            }
            format!("error: {e}")
        })
        .collect();
    lines.push(format!(
        "portcullis: {} error{} in bundle {}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        dir.display()
    ));
    lines
}

fn run_bundle(command: BundleCommand) -> Result<(), Failure> {
    match command {
        BundleCommand::Build { dir, output } => {
            let bundle = load_bundle(&dir)?;
            let json = serde_json::to_string_pretty(&bundle)
                .map_err(|e| Failure::Usage(format!("cannot serialise the bundle: {e}")))?;
            match output {
                Some(path) => {
                    std::fs::write(&path, format!("{json}\n")).map_err(|e| {
                        Failure::Usage(format!("cannot write {}: {e}", path.display()))
                    })?;
                    eprintln!(
                        "portcullis: wrote {} ({} documents, version {})",
                        path.display(),
                        bundle.documents.len(),
                        bundle.version
                    );
                }
                None => println!("{json}"),
            }
            Ok(())
        }
        BundleCommand::Check { dir } => {
            let bundle = load_bundle(&dir)?;
            println!(
                "ok: {} documents, version {}",
                bundle.documents.len(),
                bundle.version
            );
            Ok(())
        }
    }
}

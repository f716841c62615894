//! `portcullis`: the one command-line tool. Each command is a module that
//! parses its flags, calls the library that does the work, and prints;
//! [`failure`] is where the libraries' errors become messages and exit
//! codes.
//!
//! * `portcullis bundle build|check|keygen|diff` ([`bundle_cmd`]): compile
//!   and review bundles (`portcullis-core`, `portcullis-bundle-tools`).
//! * `portcullis serve ...` ([`serve_cmd`]): run a proxy-wasm filter (ours
//!   by default, with the bundle as its configuration) in front of an
//!   upstream, in host-shim.
//! * `portcullis audit query|verify|ingest|prune|keygen|shadow`
//!   ([`audit_cmd`]): the tamper-evident audit store (`audit-store/`), fed
//!   by `serve --audit-log` files.
//! * `portcullis pin --url URL`, `portcullis vet --url URL` ([`pin_cmd`],
//!   [`vet_cmd`]): a live server's tool pins, or a `submitted` registry
//!   entry screened for poisoning (`portcullis-mcp-client`,
//!   `portcullis-vet`).
//! * `portcullis approve ID --key KEY`, `portcullis simulate --bundle DIR
//!   --calls FILE`: human approval and policy replay (`docs/policy.md`).
//! * `portcullis promote SERVER@VERSION --to ENV` ([`promote_cmd`]): the
//!   review workflow (`docs/bundles.md`).
//! * `portcullis control-plane`: bundles to proxies over xDS.
//! * `portcullis evidence export|verify`, `portcullis assess`: compliance
//!   evidence packs and the self-assessment (`portcullis-compliance`,
//!   `portcullis-assess`).
//!
//! * `portcullis package --out DIR` ([`package_cmd`]): the filter as an
//!   OCI image for Istio's WasmPlugin (`portcullis-oci`).
//!
//! Exit codes: 0 success; 1 the input was read but is wrong (a bundle with
//! errors); 2 the command itself is wrong (a bad flag, a missing file).

/// mimalloc rather than glibc malloc: a proxied stream allocates its
/// header maps, bodies and futures afresh, and glibc's free-list
/// consolidation showed in `serve`'s profile (docs/host-shim.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod approve_cmd;
mod assess_cmd;
mod audit_cmd;
mod bundle_cmd;
mod control_plane_cmd;
mod evidence_cmd;
mod failure;
mod fleet_cmd;
mod package_cmd;
mod pin_cmd;
mod promote_cmd;
mod serve_cmd;
mod serve_xds;
mod simulate_cmd;
mod vet_cmd;

use clap::{Parser, Subcommand};
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
        command: bundle_cmd::BundleCommand,
    },
    /// Run a proxy-wasm filter in front of an upstream (host-shim).
    Serve(serve_cmd::ServeArgs),
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
    /// Serve bundles to proxies over xDS (ADS, ECDS) and receive their access logs.
    ControlPlane(control_plane_cmd::ControlPlaneArgs),
    /// Serve fleet-wide limits, budgets, leases, approval spends and the
    /// quarantine from Redis (RLS v3 and portcullis.fleet.v1 over gRPC).
    Fleet(fleet_cmd::FleetArgs),
    /// Copy an McpServer at a version from one environment's bundle to the next.
    Promote(promote_cmd::PromoteArgs),
    /// Screen a live MCP server's tools and write a `submitted` McpServer entry.
    Vet(vet_cmd::VetArgs),
    /// Export or verify a signed compliance evidence pack (docs/evidence.md).
    Evidence {
        #[command(subcommand)]
        command: evidence_cmd::EvidenceCommand,
    },
    /// Score the 12-question self-assessment and each pillar's maturity from
    /// the live bundles and audit store.
    Assess(assess_cmd::AssessArgs),
    /// Write the filter as an OCI image layout (push it with skopeo; Istio's
    /// WasmPlugin pulls it).
    Package(package_cmd::PackageArgs),
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
        Command::Bundle { command } => bundle_cmd::run(command),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Audit { command } => audit_cmd::run(command),
        Command::Pin(args) => pin_cmd::run(args),
        Command::Approve(args) => approve_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::ControlPlane(args) => control_plane_cmd::run(args),
        Command::Fleet(args) => fleet_cmd::run(args),
        Command::Promote(args) => promote_cmd::run(args),
        Command::Vet(args) => vet_cmd::run(args),
        Command::Evidence { command } => evidence_cmd::run(command),
        Command::Assess(args) => assess_cmd::run(args),
        Command::Package(args) => package_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

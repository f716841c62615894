//! `portcullis approve ID --key KEY`: a person approves one refused call.
//!
//! A `requireApproval` refusal carries an approval id that says what it
//! covers (subject, server, tool, the arguments' hash, the rule). This
//! command shows that, signs a single-use token for it with an Ed25519 key
//! (the `portcullis audit keygen` format; the bundle's
//! `Settings.spec.approvals.keys` holds the public half), and prints the
//! token. The caller retries with it in `x-mcp-approval`. The control plane
//! will serve the same as an API; the token format is the contract.

use crate::failure::Failure;
use clap::Args;
use portcullis_core::policy::{approval, limits};
use std::path::PathBuf;

#[derive(Args)]
pub struct ApproveArgs {
    /// The approval id from the refusal (`error.data.approval.id`).
    id: String,
    /// Ed25519 signing key file (`portcullis audit keygen --out FILE`).
    #[arg(long)]
    key: PathBuf,
    /// How long the approval stays usable (`30s`, `15m`, `1h`). The bundle's
    /// `approvals.maxTtl` caps what the filter accepts.
    #[arg(long, default_value = "15m")]
    ttl: String,
}

pub fn run(args: ApproveArgs) -> Result<(), Failure> {
    let binding = approval::parse_id(&args.id)
        .map_err(|e| Failure::Usage(format!("{e}; pass the id exactly as the refusal gave it")))?;
    let ttl =
        limits::parse_duration(&args.ttl).map_err(|e| Failure::Usage(format!("--ttl: {e}")))?;
    let key = audit_store::load_signing_key(&args.key)
        .map_err(|e| Failure::Usage(format!("--key: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Failure::Usage(format!("the clock is before 1970: {e}")))?
        .as_secs();
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti)
        .map_err(|e| Failure::Usage(format!("no randomness for the token id: {e}")))?;
    let token =
        approval::mint(&args.id, &key, now, ttl / 1_000_000_000, &jti).map_err(Failure::Usage)?;
    eprintln!(
        "approving {} calling tool {:?} on McpServer/{} with arguments {} (asked by {}), for {}",
        binding.sub, binding.tool, binding.srv, binding.args, binding.rule, args.ttl
    );
    println!("{token}");
    Ok(())
}

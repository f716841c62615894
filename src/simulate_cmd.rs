//! `portcullis simulate --bundle DIR --calls FILE.jsonl [--against OLD]`:
//! policy as code in CI.
//!
//! Replays recorded calls (audit records, one JSON object per line, as the
//! filter writes them) through the engine's own decision path
//! (`Engine::replay`: lifecycle, registry, quarantine, Policy rules) and
//! prints each decision. With `--against`, it decides every call under both
//! bundles and prints the ones whose decision changed; exit code 1 when any
//! did, unless `--allow-changes`. Only client requests that use or list
//! something are replayed; answers, notifications and shadow-MCP records
//! are skipped. Records that kept only the arguments' hash replay with
//! empty arguments, and are marked so (`Settings.spec.auditArguments:
//! redacted` keeps them).

use crate::failure::Failure;
use clap::{Args, ValueEnum};
use portcullis_core::Engine;
use portcullis_core::engine::{RecordedCall, Replayed};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct SimulateArgs {
    /// The bundle directory to decide with.
    #[arg(long)]
    bundle: PathBuf,
    /// Recorded calls: audit records as JSON lines (`-` for stdin).
    #[arg(long)]
    calls: PathBuf,
    /// A second bundle directory (the one in force): print what changes.
    #[arg(long)]
    against: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 even when decisions changed.
    #[arg(long)]
    allow_changes: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn engine_for(dir: &std::path::Path) -> Result<Arc<Engine>, Failure> {
    let json = crate::bundle_cmd::load(dir)?;
    let bundle = portcullis_core::bundle::Bundle::compile(&json)
        .map_err(|errs| Failure::Input(errs.iter().map(|e| format!("error: {e}")).collect()))?;
    Ok(Arc::new(Engine::new(bundle)))
}

/// The call a record describes, if it is one to replay.
fn recorded_call(record: &Value) -> Option<(RecordedCall, bool)> {
    let s = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_owned);
    if s("direction").as_deref() != Some("client") || s("kind").as_deref() != Some("request") {
        return None;
    }
    if record.get("shadow").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    // The record's names (docs/audit-schema.md): OpenTelemetry's where
    // they exist.
    let method = s("mcp.method.name")?;
    let server = s("server")?;
    let arguments = record.get("arguments").cloned();
    let has_args_hash = record.get("arguments_sha256").is_some();
    let time_nanos = s("time")
        .and_then(|t| audit_store::time::parse_rfc3339_ms(&t))
        .map(|ms| ms.max(0) as u64 * 1_000_000)
        .unwrap_or(0);
    let call = RecordedCall {
        server,
        method,
        tool: s("gen_ai.tool.name"),
        resource: s("mcp.resource.uri"),
        prompt: s("prompt"),
        arguments,
        subject: s("subject"),
        agent: s("agent"),
        tenant: s("tenant"),
        source: s("source"),
        time_nanos,
    };
    let arguments_missing = has_args_hash && call.arguments.is_none();
    Some((call, arguments_missing))
}

fn target(call: &RecordedCall) -> String {
    call.tool
        .clone()
        .or_else(|| call.resource.clone())
        .or_else(|| call.prompt.clone())
        .unwrap_or_default()
}

pub fn run(args: SimulateArgs) -> Result<(), Failure> {
    let new = engine_for(&args.bundle)?;
    let old = args.against.as_deref().map(engine_for).transpose()?;
    let reader: Box<dyn BufRead> = if args.calls.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.calls)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", args.calls.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = std::io::stdout().lock();
    let (mut replayed, mut changed) = (0usize, 0usize);
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Failure::Usage(format!("{}: {e}", args.calls.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(&line).map_err(|e| {
            Failure::Input(vec![format!(
                "{}:{}: not a JSON audit record: {e}",
                args.calls.display(),
                n + 1
            )])
        })?;
        let Some((call, arguments_missing)) = recorded_call(&record) else {
            continue;
        };
        replayed += 1;
        let decided = new.replay(&call);
        let before: Option<Replayed> = old.as_ref().map(|o| o.replay(&call));
        let differs = before
            .as_ref()
            .is_some_and(|b| b.decision != decided.decision);
        if differs {
            changed += 1;
        }
        if old.is_some() && !differs {
            continue;
        }
        let line_no = n + 1;
        let written = match args.format {
            Format::Json => {
                let v = json!({
                    "line": line_no,
                    "request_id": record.get("request_id"),
                    "server": call.server,
                    "method": call.method,
                    "target": target(&call),
                    "subject": call.subject,
                    "decision": decided,
                    "before": before,
                    "arguments_missing": arguments_missing,
                });
                writeln!(out, "{v}")
            }
            Format::Text => {
                let who = call.subject.as_deref().unwrap_or("-");
                let was = before
                    .as_ref()
                    .map(|b| format!("{} -> ", b.decision))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "line {line_no}: {who} {} {} on {}: {was}{} ({}){}",
                    call.method,
                    target(&call),
                    call.server,
                    decided.decision,
                    decided.rule.as_deref().unwrap_or("-"),
                    if arguments_missing {
                        " [arguments not recorded]"
                    } else {
                        ""
                    }
                )
            }
        };
        written.map_err(|e| Failure::Usage(format!("cannot write: {e}")))?;
    }
    eprintln!(
        "portcullis: {replayed} call{} replayed{}",
        if replayed == 1 { "" } else { "s" },
        if old.is_some() {
            format!(", {changed} decision(s) changed")
        } else {
            String::new()
        }
    );
    if changed > 0 && !args.allow_changes {
        return Err(Failure::Input(vec![format!(
            "portcullis: {changed} decision(s) differ between {} and {}",
            args.against
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            args.bundle.display()
        )]));
    }
    Ok(())
}

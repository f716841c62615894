//! `portcullis vet --url URL` (or `--tools-list FILE`): the vetting step of
//! the registry's submission workflow. It fetches a server's tool
//! definitions (with `portcullis pin`'s session), runs the poisoning screen
//! the filter runs over tools/list, pins every tool, and writes an
//! `McpServer` document with `status: submitted`, ready for a reviewer
//! (the `vet` crate: `VetEntry`).
//!
//! A flagged tool is left out of `tools` (written as a comment instead), so
//! approving the entry as it stands never allows a tool the screen flagged;
//! the exit status is 1 when any tool is flagged.

use crate::failure::Failure;
use crate::pin_cmd::{entry_name, fetch_live, now_rfc3339};
use clap::Args;
use mcp_client::Secrets;
use mcp_client::text::quote;
use portcullis_core::scan::injection::DETECTOR_RULE;
use std::path::PathBuf;
use vet::tools_list::{self, ToolsListError};
use vet::{Origin, VetEntry, findings_text, pin_tools, score_text, scores, screen};

// No Debug: the arguments hold credentials.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["url", "tools_list"])))]
pub struct VetArgs {
    /// The server's MCP endpoint, plain http:// (e.g. http://127.0.0.1:8000/mcp).
    #[arg(long)]
    url: Option<String>,
    /// A saved tools/list answer (the JSON-RPC response, its `result`, or the
    /// `tools` array) instead of a live server.
    #[arg(long = "tools-list")]
    tools_list: Option<PathBuf>,
    /// A request header, 'Name: value' (repeatable); never printed.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// metadata.name of the entry (default: serverInfo.name as a DNS-1123
    /// name; required with --tools-list).
    #[arg(long)]
    name: Option<String>,
    /// `match.pathPrefix` of the entry (default: the URL's path).
    #[arg(long = "path-prefix")]
    path_prefix: Option<String>,
    /// The protocol revision offered in initialize.
    #[arg(long = "protocol-version", default_value = "2025-11-25")]
    protocol_version: String,
    /// Write the YAML here instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Seconds each HTTP exchange may take.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

pub fn run(args: VetArgs) -> Result<(), Failure> {
    let (origin, path, tools, secrets) = match (&args.url, &args.tools_list) {
        (Some(url), _) => {
            let live = fetch_live(
                url,
                &args.headers,
                args.name.as_ref(),
                &args.protocol_version,
                args.timeout,
            )?;
            let origin = live.origin();
            let path = live.endpoint.path().to_owned();
            (
                origin,
                Some(path),
                live.tools.tools,
                live.headers.secrets().clone(),
            )
        }
        (None, Some(file)) => {
            if !args.headers.is_empty() {
                return Err(Failure::Usage(
                    "--header goes with --url, not --tools-list".into(),
                ));
            }
            let origin = Origin {
                shown: file.display().to_string(),
                ..Origin::default()
            };
            (origin, None, read_tools_list(file)?, Secrets::default())
        }
        (None, None) => return Err(Failure::Usage("give --url URL or --tools-list FILE".into())),
    };
    let scrub = |s: &str| secrets.scrub(s);
    if args.name.is_none() && origin.server_name.is_none() {
        return Err(Failure::Usage(
            "--tools-list has no serverInfo to name the entry; pass --name".into(),
        ));
    }
    let name = entry_name(args.name.as_ref(), origin.server_name.as_deref(), scrub)?;
    let screens = screen(&tools).map_err(|e| Failure::Usage(format!("internal: {e}")))?;
    let scores = scores(&tools).map_err(|e| Failure::Usage(format!("internal: {e}")))?;
    let pins = pin_tools(&tools).map_err(|e| Failure::input(scrub(&format!("portcullis: {e}"))))?;
    let path = args
        .path_prefix
        .clone()
        .or(path)
        .unwrap_or_else(|| "/mcp".into());
    let yaml = scrub(
        &VetEntry {
            origin: &origin,
            name: &name,
            path: &path,
            when: &now_rfc3339(),
            tools: &tools,
            pins: &pins,
            screens: &screens,
            scores: &scores,
        }
        .render(),
    );
    match &args.output {
        Some(out) => {
            std::fs::write(out, &yaml)
                .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", out.display())))?;
            eprintln!(
                "portcullis: wrote {} (McpServer/{name}, status submitted, {} tools, {} flagged)",
                out.display(),
                tools.len(),
                screens.len()
            );
        }
        None => print!("{yaml}"),
    }
    if screens.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = screens
        .iter()
        .map(|s| {
            // A tool the model flagged: its score and the n-grams behind it.
            let why = scores
                .iter()
                .find(|t| t.name == s.name && s.findings.iter().any(|f| f.rule_id == DETECTOR_RULE))
                .map(|t| format!("; model {}", score_text(t)))
                .unwrap_or_default();
            scrub(&format!(
                "portcullis: tool {} flagged: {}{why}",
                quote(&s.name),
                findings_text(s)
            ))
        })
        .collect();
    lines.push(format!(
        "portcullis: {} of {} tools flagged by the poisoning screen; they are left out of the entry",
        screens.len(),
        tools.len()
    ));
    Err(Failure::Input(lines))
}

/// The `tools` of a saved tools/list.
fn read_tools_list(file: &PathBuf) -> Result<Vec<serde_json::Value>, Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::Usage(format!("cannot read --tools-list {}: {e}", file.display())))?;
    tools_list::parse(&bytes).map_err(|e| {
        Failure::input(match e {
            ToolsListError::NotJson(why) => format!(
                "portcullis: --tools-list {} is not valid JSON: {why}",
                file.display()
            ),
            ToolsListError::NoTools => format!("portcullis: --tools-list {} {e}", file.display()),
        })
    })
}

//! `portcullis vet --url URL` (or `--tools-list FILE`): the vetting step of
//! the registry's submission workflow. It fetches a server's tool
//! definitions (with `portcullis pin`'s client), runs the same poisoning
//! screen the filter runs over tools/list (`scan::default_policy()` and
//! `ContentPolicy::screen_tools`), pins every tool, and writes an
//! `McpServer` document with `status: submitted`, ready for a reviewer.
//!
//! Findings are written twice: as comments above the document, for the
//! reviewer, and as the `portcullis.dev/vet-findings` annotation (compact
//! JSON), for tools. A flagged tool is left out of `tools` (written as a
//! comment instead), so approving the entry as it stands never allows a
//! tool the screen flagged; the exit status is 1 when any tool is flagged.

use crate::Failure;
use crate::pin_cmd::{dns_name, fetch_live, pin_tools, quote};
use clap::Args;
use portcullis_core::scan::{ToolScreen, default_policy};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Where the definitions came from, for the header comment.
struct Origin {
    shown: String,
    path: Option<String>,
    server_name: Option<String>,
    server_version: Option<String>,
    secrets: Vec<String>,
}

pub fn run(args: VetArgs) -> Result<(), Failure> {
    let (origin, tools) = match (&args.url, &args.tools_list) {
        (Some(url), _) => {
            let live = fetch_live(
                url,
                &args.headers,
                args.name.as_ref(),
                &args.protocol_version,
                args.timeout,
            )?;
            let origin = Origin {
                shown: live.target.shown.clone(),
                path: Some(live.target.path.clone()),
                server_name: live.taken.server_name.clone(),
                server_version: live.taken.server_version.clone(),
                secrets: live.secrets.clone(),
            };
            (origin, live.taken.tools)
        }
        (None, Some(file)) => {
            if !args.headers.is_empty() {
                return Err(Failure::Usage(
                    "--header goes with --url, not --tools-list".into(),
                ));
            }
            (
                Origin {
                    shown: file.display().to_string(),
                    path: None,
                    server_name: None,
                    server_version: None,
                    secrets: Vec::new(),
                },
                read_tools_list(file)?,
            )
        }
        (None, None) => return Err(Failure::Usage("give --url URL or --tools-list FILE".into())),
    };
    let scrub = |s: &str| {
        let mut out = s.to_owned();
        for secret in &origin.secrets {
            out = out.replace(secret.as_str(), "[header value]");
        }
        out
    };
    let name = match (&args.name, &origin.server_name) {
        (Some(n), _) => {
            crate::pin_cmd::check_name(n).map_err(|m| Failure::Usage(format!("--name: {m}")))?;
            n.clone()
        }
        (None, Some(server)) => dns_name(server).ok_or_else(|| {
            Failure::Input(vec![scrub(&format!(
                "portcullis: serverInfo.name {} gives no DNS-1123 name; pass --name",
                quote(server)
            ))])
        })?,
        (None, None) => {
            return Err(Failure::Usage(
                "--tools-list has no serverInfo to name the entry; pass --name".into(),
            ));
        }
    };

    let policy = default_policy().map_err(|errs| {
        Failure::Usage(format!(
            "internal: the built-in content policy does not compile: {errs:?}"
        ))
    })?;
    let mut screened = tools.clone();
    let screens = policy.screen_tools(&mut screened);
    let (pins, unpinnable) = pin_tools(&tools).map_err(|e| Failure::Input(vec![scrub(&e)]))?;

    let when = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let when = portcullis_core::audit::rfc3339(when);
    let path = args
        .path_prefix
        .clone()
        .or_else(|| origin.path.clone())
        .unwrap_or_else(|| "/mcp".into());
    let yaml = render(&Entry {
        origin: &origin,
        name: &name,
        path: &path,
        when: &when,
        tools: &tools,
        pins: &pins,
        unpinnable: &unpinnable,
        screens: &screens,
    });
    let yaml = scrub(&yaml);
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
        Ok(())
    } else {
        let mut lines: Vec<String> = screens
            .iter()
            .map(|s| {
                scrub(&format!(
                    "portcullis: tool {} flagged: {}",
                    quote(&s.name),
                    rules(s)
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
}

/// The `tools` of a saved tools/list: the JSON-RPC response, its result, or
/// the array itself.
fn read_tools_list(file: &PathBuf) -> Result<Vec<Value>, Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::Usage(format!("cannot read --tools-list {}: {e}", file.display())))?;
    let value = portcullis_core::json::parse_strict(&bytes).map_err(|e| {
        Failure::Input(vec![format!(
            "portcullis: --tools-list {} is not valid JSON: {e}",
            file.display()
        )])
    })?;
    let tools = match &value {
        Value::Array(a) => Some(a),
        v => v
            .pointer("/result/tools")
            .or_else(|| v.get("tools"))
            .and_then(Value::as_array),
    };
    tools.cloned().ok_or_else(|| {
        Failure::Input(vec![format!(
            "portcullis: --tools-list {} holds no tools: give a tools/list response, its \
             result, or the tools array",
            file.display()
        )])
    })
}

pub(crate) fn rules(s: &ToolScreen) -> String {
    let mut out: Vec<String> = s
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} ({}, {}) at {}",
                f.rule_id,
                serde_json::to_value(f.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                serde_json::to_value(f.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                if f.pointer.is_empty() {
                    "/"
                } else {
                    &f.pointer
                }
            )
        })
        .collect();
    out.dedup();
    out.join(", ")
}

struct Entry<'a> {
    origin: &'a Origin,
    name: &'a str,
    path: &'a str,
    when: &'a str,
    tools: &'a [Value],
    pins: &'a BTreeMap<String, String>,
    unpinnable: &'a [String],
    screens: &'a [ToolScreen],
}

fn render(e: &Entry) -> String {
    let o = e.origin;
    let server = match (&o.server_name, &o.server_version) {
        (Some(n), Some(v)) => format!("serverInfo {} {}", quote(n), quote(v)),
        (Some(n), None) => format!("serverInfo {}, no version", quote(n)),
        (None, _) => "no serverInfo".to_owned(),
    };
    let mut out = format!(
        "# vetted {} ({server}), {} tools, {}\n",
        one_line(&o.shown),
        e.tools.len(),
        e.when
    );
    if e.screens.is_empty() {
        out.push_str("# poisoning screen: no findings\n");
    } else {
        out.push_str(&format!(
            "# poisoning screen: {} tool(s) FLAGGED; they are left out of `tools` below:\n",
            e.screens.len()
        ));
        for s in e.screens {
            out.push_str(&format!(
                "#   {}{}: {}\n",
                quote(&s.name),
                if s.dropped {
                    " (the filter would drop it)"
                } else {
                    ""
                },
                rules(s)
            ));
        }
    }
    for name in e.unpinnable {
        out.push_str(&format!(
            "# left out: tool {} (glob characters in its name; it cannot be pinned)\n",
            quote(name)
        ));
    }
    let findings: Vec<Value> = e
        .screens
        .iter()
        .map(|s| {
            json!({
                "tool": s.name,
                "dropped": s.dropped,
                "findings": s.findings,
            })
        })
        .collect();
    out.push_str("apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n");
    out.push_str(&format!("  name: {}\n", quote(e.name)));
    out.push_str("  annotations:\n");
    out.push_str(&format!(
        "    portcullis.dev/vetted-at: {}\n",
        quote(e.when)
    ));
    out.push_str(&format!(
        "    portcullis.dev/vetted-from: {}\n",
        quote(&one_line(&o.shown))
    ));
    out.push_str(&format!(
        "    portcullis.dev/vet-findings: {}\n",
        quote(&Value::Array(findings).to_string())
    ));
    out.push_str("spec:\n  status: submitted\n  match:\n");
    out.push_str(&format!("    pathPrefix: {}\n", quote(e.path)));
    if let Some(v) = &o.server_version {
        out.push_str(&format!("  serverVersion: {}\n", quote(v)));
    }
    let flagged: Vec<&str> = e.screens.iter().map(|s| s.name.as_str()).collect();
    let allowed: Vec<(&String, &String)> = e
        .pins
        .iter()
        .filter(|(n, _)| !flagged.contains(&n.as_str()))
        .collect();
    if allowed.is_empty() {
        out.push_str("  tools: []\n");
    } else {
        out.push_str("  tools:\n");
        for (name, pin) in &allowed {
            out.push_str(&format!(
                "    - name: {}\n      pin: {}\n",
                quote(name),
                quote(pin)
            ));
        }
    }
    for (name, pin) in e.pins.iter().filter(|(n, _)| flagged.contains(&n.as_str())) {
        out.push_str(&format!(
            "    # FLAGGED, not allowed: - name: {}\n    #                      pin: {}\n",
            quote(name),
            quote(pin)
        ));
    }
    out
}

/// A path or URL shown in a comment stays on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

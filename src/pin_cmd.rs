//! `portcullis pin --url URL`: a live MCP server's tool pins, printed as an
//! `McpServer` bundle document, so approving a server's current tool
//! definitions is committing this output (issue 4, the rug-pull defence).
//!
//! The session is `mcp_client`'s; screening, pinning and the document are
//! the `vet` crate's. `--header` values are credentials: they are never
//! printed, and server text quoted in messages is scrubbed of them.

use crate::failure::{self, Failure};
use clap::Args;
use mcp_client::text::quote;
use mcp_client::{Endpoint, RequestHeaders, ToolList};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vet::name::{check_name, dns_name};
use vet::{Origin, PinDocument, findings_text, pin_tools, screen};

// No Debug: the arguments hold credentials.
#[derive(Args)]
pub struct PinArgs {
    /// The server's MCP endpoint, plain http:// (e.g. http://127.0.0.1:8000/mcp).
    #[arg(long)]
    url: String,
    /// A request header, 'Name: value' (repeatable), e.g. 'Authorization:
    /// Bearer …'. Sent on every request; the value is never printed.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// metadata.name of the document (default: serverInfo.name, lowercased
    /// and made a DNS-1123 name).
    #[arg(long)]
    name: Option<String>,
    /// The protocol revision offered in initialize.
    #[arg(long = "protocol-version", default_value = "2025-11-25")]
    protocol_version: String,
    /// Emit `pinning: strict`: a tool without a pin is then refused.
    #[arg(long)]
    strict: bool,
    /// Pin even tools the poisoning screen flags (by default `pin` refuses:
    /// a pin approves a definition, and a flagged one needs a person's
    /// review first; `portcullis vet` shows why each was flagged).
    #[arg(long = "allow-flagged")]
    allow_flagged: bool,
    /// Write the YAML here instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Seconds each HTTP exchange may take.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

/// A live server's tool definitions, as one session fetched them (shared
/// with `portcullis vet`).
pub struct Live {
    pub endpoint: Endpoint,
    pub tools: ToolList,
    pub headers: RequestHeaders,
}

impl Live {
    pub fn scrub(&self, s: &str) -> String {
        self.headers.secrets().scrub(s)
    }

    pub fn origin(&self) -> Origin {
        Origin {
            shown: self.endpoint.shown().to_owned(),
            server_name: self.tools.server_name.clone(),
            server_version: self.tools.server_version.clone(),
        }
    }
}

/// `--name` checked, or `serverInfo.name` made a DNS-1123 name.
pub fn entry_name(
    given: Option<&String>,
    server: Option<&str>,
    scrub: impl Fn(&str) -> String,
) -> Result<String, Failure> {
    match (given, server) {
        (Some(n), _) => {
            check_name(n).map_err(|m| Failure::Usage(format!("--name: {m}")))?;
            Ok(n.clone())
        }
        (None, server) => dns_name(server.unwrap_or("")).ok_or_else(|| {
            Failure::input(scrub(&format!(
                "portcullis: serverInfo.name {} gives no DNS-1123 name; pass --name",
                quote(server.unwrap_or(""))
            )))
        }),
    }
}

/// Checks the flags shared with `vet` and runs one session against `url`.
pub fn fetch_live(
    url: &str,
    raw_headers: &[String],
    name: Option<&String>,
    protocol_version: &str,
    timeout: u64,
) -> Result<Live, Failure> {
    let endpoint = Endpoint::parse(url)?;
    let headers = RequestHeaders::parse(raw_headers)?;
    if let Some(name) = name {
        check_name(name).map_err(|m| Failure::Usage(format!("--name: {m}")))?;
    }
    let tools = mcp_client::fetch_tools(
        &endpoint,
        &headers,
        protocol_version,
        Duration::from_secs(timeout),
    )
    .map_err(|e| failure::exchange(&e, headers.secrets()))?;
    if !tools.declares_tools {
        eprintln!(
            "portcullis: note: the server declares no tools capability; the document pins no tools"
        );
    }
    if tools.protocol != protocol_version {
        eprintln!(
            "portcullis: note: asked for protocol {protocol_version}, the server answered {}",
            tools.protocol
        );
    }
    Ok(Live {
        endpoint,
        tools,
        headers,
    })
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    portcullis_core::audit::rfc3339(nanos)
}

pub fn run(args: PinArgs) -> Result<(), Failure> {
    let live = fetch_live(
        &args.url,
        &args.headers,
        args.name.as_ref(),
        &args.protocol_version,
        args.timeout,
    )?;
    let scrub = |s: &str| live.scrub(s);
    let name = entry_name(args.name.as_ref(), live.tools.server_name.as_deref(), scrub)?;
    let tools = &live.tools.tools;
    // The filter screens every tools/list for poisoning; a pin must not
    // approve what the screen would flag without someone saying so.
    let screens = screen(tools).map_err(|e| Failure::Usage(format!("internal: {e}")))?;
    if !screens.is_empty() {
        let mut lines: Vec<String> = screens
            .iter()
            .map(|s| {
                scrub(&format!(
                    "portcullis: tool {} flagged by the poisoning screen: {}",
                    quote(&s.name),
                    findings_text(s)
                ))
            })
            .collect();
        if !args.allow_flagged {
            lines.push(format!(
                "portcullis: {} of {} tools flagged; nothing was pinned. Review them (`portcullis vet --url …` shows why), then pin with --allow-flagged if they are safe",
                screens.len(),
                tools.len()
            ));
            return Err(Failure::Input(lines));
        }
        for line in lines {
            eprintln!("{line} (pinned anyway: --allow-flagged)");
        }
    }
    let pins = pin_tools(tools).map_err(|e| Failure::input(scrub(&format!("portcullis: {e}"))))?;
    for tool in &pins.unpinnable {
        eprintln!(
            "{}",
            scrub(&format!(
                "portcullis: warning: tool {} is left out: its name has glob characters (* ? \\), \
                 and a pin belongs to one literal name; list it by hand if it must be callable",
                quote(tool)
            ))
        );
    }
    let yaml = PinDocument {
        origin: &live.origin(),
        protocol: &live.tools.protocol,
        name: &name,
        path: live.endpoint.path(),
        pins: &pins,
        strict: args.strict,
        when: &now_rfc3339(),
    }
    .render();
    eprintln!(
        "portcullis: note: through the Portcullis proxy, tools/list is what the proxy lets \
         through (filtered by policy); pin against the upstream directly to see every tool"
    );
    match &args.output {
        Some(path) => {
            std::fs::write(path, &yaml)
                .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "portcullis: wrote {} ({} tool pins, McpServer/{name})",
                path.display(),
                pins.pins.len()
            );
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

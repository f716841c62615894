//! The registry pillar: which MCP servers exist, in which state, and what
//! each one lets a caller use.
//!
//! Three questions, each answered here and nowhere else:
//! * **lifecycle**: is the server usable at all (not blocked, approved or in
//!   `dev`, before its sunset, approved for this environment and tenant)?
//! * **lists**: does the server's `tools`, `resources` or `prompts` list
//!   allow what the message names, and is the method one the filter can
//!   govern?
//! * **shadow MCP**: is a body sent to a route no server matches MCP
//!   (something a server could read as JSON-RPC)?
//!
//! Each returns a [`Verdict`] (or the facts of one) that the engine passes
//! on as it is.

use crate::bundle::{Server, ServerStatus, SettingsSpec, UnknownMethods};
use crate::json::parse_strict;
use crate::mcp::{self, Message, Target};
use crate::spec::truncate;
use crate::verdict::{DenyCause, Verdict};
use serde_json::Value;

/// The registry's verdict on one message sent to `server` (`None`: no server
/// matches the route): its lifecycle first, then its lists. `today` is in
/// days since the epoch; `tenant` is the caller's, from its token.
pub fn verdict(
    server: Option<&Server>,
    settings: &SettingsSpec,
    msg: &Message,
    today: u64,
    tenant: Option<&str>,
) -> Verdict {
    let Some(server) = server else {
        return Verdict::deny(
            DenyCause::Registry,
            "no McpServer matches this route".into(),
            None,
        );
    };
    if let Some(refusal) = lifecycle(server, settings, today, tenant) {
        return refusal;
    }
    lists(server, settings, msg)
}

/// The server's lifecycle: blocked, submitted outside dev, past its sunset,
/// or not approved for this environment or tenant.
pub fn lifecycle(
    server: &Server,
    settings: &SettingsSpec,
    today: u64,
    tenant: Option<&str>,
) -> Option<Verdict> {
    let deny = |reason: String, rule: String| {
        Some(Verdict::deny(DenyCause::Lifecycle, reason, Some(rule)))
    };
    let status_rule = format!("McpServer/{}#status", server.name);
    match server.status {
        ServerStatus::Blocked => {
            return deny(format!("McpServer/{} is blocked", server.name), status_rule);
        }
        ServerStatus::Submitted if settings.environment.as_deref() != Some("dev") => {
            return deny(
                format!(
                    "McpServer/{} is submitted, not approved; it is usable only where Settings.spec.environment is dev",
                    server.name
                ),
                status_rule,
            );
        }
        ServerStatus::Deprecated if server.sunset_day.is_some_and(|d| today >= d) => {
            return deny(
                format!(
                    "McpServer/{} is deprecated and past its sunset date",
                    server.name
                ),
                status_rule,
            );
        }
        _ => {}
    }
    if let Some(envname) = &settings.environment
        && !server.environments.is_empty()
        && !server.environments.contains(envname)
    {
        return deny(
            format!(
                "McpServer/{} is not approved for environment {envname:?} (spec.environments)",
                server.name
            ),
            format!("McpServer/{}#environments", server.name),
        );
    }
    if !server.tenants.is_empty() && !tenant.is_some_and(|t| server.tenants.iter().any(|x| x == t))
    {
        return deny(
            format!(
                "McpServer/{} is not approved for this caller's tenant (spec.tenants)",
                server.name
            ),
            format!("McpServer/{}#tenants", server.name),
        );
    }
    None
}

/// The server's lists: the method must be one the filter can govern, and
/// the tool, resource or prompt it names must be listed.
pub fn lists(server: &Server, settings: &SettingsSpec, msg: &Message) -> Verdict {
    let Some(method) = msg.method.as_deref() else {
        return Verdict::allow("a client's answer to a server request".into(), None);
    };
    if !mcp::is_known_method(method) {
        return match settings.unknown_methods {
            UnknownMethods::Deny => Verdict::deny(
                DenyCause::Registry,
                format!(
                    "method {:?} is not an MCP method this filter can govern",
                    truncate(method, 64)
                ),
                Some("Settings#unknownMethods".into()),
            ),
            UnknownMethods::Allow => Verdict::allow(
                "unknown method allowed by Settings.unknownMethods".into(),
                Some("Settings#unknownMethods".into()),
            ),
        };
    }
    let (set, field, what, name) = match &msg.target {
        Target::Tool(n) => (&server.tools, "tools", "tool", n),
        Target::Resource(n) => (&server.resources, "resources", "resource", n),
        Target::Prompt(n) => (&server.prompts, "prompts", "prompt", n),
        // A task is judged by whose it is (crate::tasks), not by a list.
        Target::None | Target::Task(_) => {
            return Verdict::allow(
                format!("{method} is allowed on every registered server"),
                None,
            );
        }
    };
    match set.first_match(name) {
        Some(i) => Verdict::allow(
            format!(
                "{what} {:?} is allowed by McpServer/{} ({:?})",
                truncate(name, 128),
                server.name,
                set.glob(i).unwrap_or("")
            ),
            Some(format!("{}[{i}]", server.rule_id(field))),
        ),
        None => Verdict::deny(
            DenyCause::Registry,
            format!(
                "{what} {:?} is not in the {field} list of McpServer/{}",
                truncate(name, 128),
                server.name
            ),
            Some(server.rule_id(field)),
        ),
    }
}

/// Whether the name is listed at all (list results are filtered by it).
pub fn listed(server: &Server, field: &str, name: &str) -> bool {
    match field {
        "tools" => server.tools.is_match(name),
        "resources" => server.resources.is_match(name),
        _ => server.prompts.is_match(name),
    }
}

/// The warning a deprecated server's traffic carries until its sunset.
pub fn deprecation_warning(server: &Server) -> Option<String> {
    if server.status != ServerStatus::Deprecated {
        return None;
    }
    Some(match server.sunset_day {
        Some(day) => format!(
            "McpServer/{} is deprecated; it is refused from {}",
            server.name,
            crate::audit::rfc3339(day * 86_400 * 1_000_000_000)
                .get(..10)
                .unwrap_or("")
        ),
        None => format!("McpServer/{} is deprecated", server.name),
    })
}

/// A body sent to a route no server matches, as shadow MCP: the MCP methods
/// it carries when the filter's strict reading finds them (`initialize`,
/// `server/discover`, `tools/call`, ...), else one of unknown method (`""`)
/// when some server's laxer reading could take it as JSON-RPC (another
/// encoding, a BOM, duplicate keys: [`crate::sniff`]). `None`: not MCP.
pub fn shadow_mcp(body: &[u8]) -> Option<Vec<String>> {
    if let Some(methods) = strict_mcp_methods(body) {
        return Some(methods);
    }
    crate::sniff::could_be_jsonrpc(body).then(|| vec![String::new()])
}

fn strict_mcp_methods(body: &[u8]) -> Option<Vec<String>> {
    let value = parse_strict(body).ok()?;
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let methods: Vec<String> = items
        .iter()
        .filter(|m| m.get("jsonrpc").and_then(Value::as_str) == Some("2.0"))
        .filter_map(|m| m.get("method").and_then(Value::as_str))
        .filter(|m| mcp::is_known_method(m) || *m == "server/discover")
        .map(str::to_owned)
        .collect();
    (!methods.is_empty()).then_some(methods)
}

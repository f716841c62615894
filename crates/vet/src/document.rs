//! The `McpServer` documents `pin` and `vet` write, as YAML text.
//!
//! Written by hand rather than by a YAML library so the comments (where
//! the definitions came from, what the screen found, what was left out)
//! sit where a reviewer reads them. Every scalar goes through
//! [`quote`](mcp_client::text::quote), which is valid JSON and YAML at
//! once, so a server's names cannot break the document.

use crate::pins::Pins;
use crate::screen::{ToolScore, findings_text, score_text};
use mcp_client::text::quote;
use portcullis_core::scan::ToolScreen;
use serde_json::{Value, json};

/// Where the definitions came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The endpoint (without its query) or the file, as shown.
    pub shown: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
}

/// `portcullis pin`'s document: every pinnable tool, pinned.
#[derive(Debug, Clone, Copy)]
pub struct PinDocument<'a> {
    pub origin: &'a Origin,
    /// The protocol revision the server answered with.
    pub protocol: &'a str,
    /// `metadata.name`.
    pub name: &'a str,
    /// `match.pathPrefix`.
    pub path: &'a str,
    pub pins: &'a Pins,
    /// Emit `pinning: strict`.
    pub strict: bool,
    /// When the pins were taken (RFC 3339).
    pub when: &'a str,
}

/// `portcullis vet`'s entry: `status: submitted`, flagged tools left out.
#[derive(Debug, Clone, Copy)]
pub struct VetEntry<'a> {
    pub origin: &'a Origin,
    pub name: &'a str,
    pub path: &'a str,
    /// When it was vetted (RFC 3339).
    pub when: &'a str,
    /// Every tool, as received.
    pub tools: &'a [Value],
    pub pins: &'a Pins,
    /// What the poisoning screen flagged.
    pub screens: &'a [ToolScreen],
    /// Every tool's score by the learned detector (may be empty).
    pub scores: &'a [ToolScore],
}

fn tool_lines(out: &mut String, pins: &mut dyn Iterator<Item = (&String, &String)>) {
    let mut any = false;
    for (name, pin) in pins {
        if !any {
            out.push_str("  tools:\n");
            any = true;
        }
        out.push_str(&format!(
            "    - name: {}\n      pin: {}\n",
            quote(name),
            quote(pin)
        ));
    }
    if !any {
        out.push_str("  tools: []\n");
    }
}

fn left_out(out: &mut String, unpinnable: &[String]) {
    for name in unpinnable {
        out.push_str(&format!(
            "# left out: tool {} (glob characters in its name; it cannot be pinned)\n",
            quote(name)
        ));
    }
}

impl PinDocument<'_> {
    /// The document, with a header comment saying where and when.
    pub fn render(&self) -> String {
        let o = self.origin;
        let server = match (&o.server_name, &o.server_version) {
            (Some(n), Some(v)) => format!("{} {}", quote(n), quote(v)),
            (Some(n), None) => format!("{}, no version", quote(n)),
            (None, _) => "none".to_owned(),
        };
        let n = self.pins.pins.len();
        let mut out = format!(
            "# pins of {} (serverInfo {server}), protocol {}, {n} tool{}, taken {}\n",
            o.shown,
            self.protocol,
            if n == 1 { "" } else { "s" },
            self.when
        );
        left_out(&mut out, &self.pins.unpinnable);
        out.push_str("apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n");
        out.push_str(&format!("  name: {}\n", quote(self.name)));
        out.push_str("spec:\n  match:\n");
        out.push_str(&format!("    pathPrefix: {}\n", quote(self.path)));
        if let Some(v) = &o.server_version {
            out.push_str(&format!("  serverVersion: {}\n", quote(v)));
        }
        if self.strict {
            out.push_str("  pinning: strict\n");
        }
        tool_lines(&mut out, &mut self.pins.pins.iter());
        out
    }
}

impl VetEntry<'_> {
    /// The entry, with the screen's findings as comments above it and as
    /// the `portcullis.dev/vet-findings` annotation (compact JSON).
    pub fn render(&self) -> String {
        let o = self.origin;
        let server = match (&o.server_name, &o.server_version) {
            (Some(n), Some(v)) => format!("serverInfo {} {}", quote(n), quote(v)),
            (Some(n), None) => format!("serverInfo {}, no version", quote(n)),
            (None, _) => "no serverInfo".to_owned(),
        };
        let mut out = format!(
            "# vetted {} ({server}), {} tools, {}\n",
            one_line(&o.shown),
            self.tools.len(),
            self.when
        );
        if self.screens.is_empty() {
            out.push_str("# poisoning screen: no findings\n");
        } else {
            out.push_str(&format!(
                "# poisoning screen: {} tool(s) FLAGGED; they are left out of `tools` below:\n",
                self.screens.len()
            ));
            for s in self.screens {
                out.push_str(&format!(
                    "#   {}{}: {}\n",
                    quote(&s.name),
                    if s.dropped {
                        " (the filter would drop it)"
                    } else {
                        ""
                    },
                    findings_text(s)
                ));
            }
        }
        if !self.scores.is_empty() {
            out.push_str(
                "# learned detector, every tool (score, and the n-grams that raised it):\n",
            );
            for s in self.scores {
                out.push_str(&format!(
                    "#   {}: {}\n",
                    quote(&s.name),
                    one_line(&score_text(s))
                ));
            }
        }
        left_out(&mut out, &self.pins.unpinnable);
        let findings: Vec<Value> = self
            .screens
            .iter()
            .map(|s| json!({"tool": s.name, "dropped": s.dropped, "findings": s.findings}))
            .collect();
        out.push_str("apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n");
        out.push_str(&format!("  name: {}\n", quote(self.name)));
        out.push_str("  annotations:\n");
        out.push_str(&format!(
            "    portcullis.dev/vetted-at: {}\n",
            quote(self.when)
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
        out.push_str(&format!("    pathPrefix: {}\n", quote(self.path)));
        if let Some(v) = &o.server_version {
            out.push_str(&format!("  serverVersion: {}\n", quote(v)));
        }
        let flagged = |n: &str| self.screens.iter().any(|s| s.name == n);
        tool_lines(
            &mut out,
            &mut self.pins.pins.iter().filter(|(n, _)| !flagged(n)),
        );
        for (name, pin) in self.pins.pins.iter().filter(|(n, _)| flagged(n)) {
            out.push_str(&format!(
                "    # FLAGGED, not allowed: - name: {}\n    #                      pin: {}\n",
                quote(name),
                quote(pin)
            ));
        }
        out
    }
}

/// A path or URL shown in a comment stays on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin_tools;

    #[test]
    fn documents_read_back_as_yaml() {
        let tools = [
            json!({"name": "get-weather", "inputSchema": {"type": "object"}}),
            json!({"name": "x*", "inputSchema": {"type": "object"}}),
        ];
        let pins = pin_tools(&tools).unwrap();
        let origin = Origin {
            shown: "http://h/mcp".into(),
            server_name: Some("w".into()),
            server_version: None,
        };
        let pin = PinDocument {
            origin: &origin,
            protocol: "2025-11-25",
            name: "w",
            path: "/mcp",
            pins: &pins,
            strict: true,
            when: "2026-01-01T00:00:00Z",
        }
        .render();
        assert!(pin.starts_with(
            "# pins of http://h/mcp (serverInfo \"w\", no version), protocol 2025-11-25, 1 tool, taken"
        ), "{pin}");
        let entry = VetEntry {
            origin: &origin,
            name: "w",
            path: "/mcp",
            when: "2026-01-01T00:00:00Z",
            tools: &tools,
            pins: &pins,
            screens: &[],
            scores: &crate::scores(&tools).unwrap(),
        }
        .render();
        assert!(entry.contains("# learned detector, every tool"), "{entry}");
        for text in [pin, entry] {
            let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
            assert_eq!(
                docs[0]["spec"]["tools"][0]["name"].as_str(),
                Some("get-weather")
            );
            assert_eq!(docs[0]["spec"]["tools"][1].as_str(), None);
        }
    }
}

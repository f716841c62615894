//! Tool pins, by tool name.

use mcp_client::text::quote;
use portcullis_core::pins::tool_pin;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every tool's pin, and the tools that cannot be pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// Pin by tool name.
    pub pins: BTreeMap<String, String>,
    /// Names with glob characters (`*`, `?`, `\`): the bundle would read
    /// them as patterns, and a pin belongs to one literal name.
    pub unpinnable: Vec<String>,
}

/// Why a tools/list cannot be pinned at all.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A tool without a pin (no name, not an object, ...).
    #[error(
        "tools/list item {index}: {reason}; a tool without a name cannot be pinned, fix the server"
    )]
    Unpinnable { index: usize, reason: String },
    /// Two tools of one name: clients disagree on which copy wins.
    #[error("the server lists tool {} twice; clients disagree on which copy wins, so it cannot be pinned: fix the server", quote(.0))]
    Duplicate(String),
}

/// Pins `tools` (a tools/list's `tools`, all pages).
pub fn pin_tools(tools: &[Value]) -> Result<Pins, PinError> {
    let mut out = Pins::default();
    for (index, tool) in tools.iter().enumerate() {
        let pin = tool_pin(tool).map_err(|e| PinError::Unpinnable {
            index,
            reason: e.to_string(),
        })?;
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if out.pins.contains_key(&name) || out.unpinnable.contains(&name) {
            return Err(PinError::Duplicate(name));
        }
        if name.contains(['*', '?', '\\']) {
            out.unpinnable.push(name);
        } else {
            out.pins.insert(name, pin);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_are_left_out_and_duplicates_refused() {
        let tools = [
            json!({"name": "b", "inputSchema": {"type": "object"}}),
            json!({"name": "a*", "inputSchema": {"type": "object"}}),
        ];
        let p = pin_tools(&tools).unwrap();
        assert_eq!(p.pins.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(p.unpinnable, ["a*"]);
        let twice = [tools[0].clone(), tools[0].clone()];
        assert!(matches!(pin_tools(&twice), Err(PinError::Duplicate(n)) if n == "b"));
        assert!(matches!(
            pin_tools(&[json!({"description": "x"})]),
            Err(PinError::Unpinnable { index: 0, .. })
        ));
    }
}

//! A saved tools/list answer, read in place of a live server.

use serde_json::Value;

/// Why saved bytes are not a tools/list.
#[derive(Debug, thiserror::Error)]
pub enum ToolsListError {
    /// Not JSON (as the filter's strict parser reads it).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but none of the three shapes.
    #[error("holds no tools: give a tools/list response, its result, or the tools array")]
    NoTools,
}

/// The `tools` of a saved tools/list: the JSON-RPC response, its result, or
/// the array itself. Read with the filter's strict JSON parser.
pub fn parse(bytes: &[u8]) -> Result<Vec<Value>, ToolsListError> {
    let value = portcullis_core::json::parse_strict(bytes)
        .map_err(|e| ToolsListError::NotJson(e.to_string()))?;
    let tools = match &value {
        Value::Array(a) => Some(a),
        v => v
            .pointer("/result/tools")
            .or_else(|| v.get("tools"))
            .and_then(Value::as_array),
    };
    tools.cloned().ok_or(ToolsListError::NoTools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_shapes() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#,
            r#"{"tools":[{"name":"a"}]}"#,
            r#"[{"name":"a"}]"#,
        ] {
            assert_eq!(parse(text.as_bytes()).unwrap().len(), 1, "{text}");
        }
        assert!(matches!(parse(b"{}"), Err(ToolsListError::NoTools)));
        assert!(matches!(parse(b"{"), Err(ToolsListError::NotJson(_))));
    }
}

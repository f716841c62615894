//! The poisoning screen, as the filter runs it over every tools/list.

use portcullis_core::scan::{ToolScreen, default_policy};
use serde_json::Value;

/// The built-in content policy does not compile: a build defect.
#[derive(Debug, thiserror::Error)]
#[error("the built-in content policy does not compile: {0}")]
pub struct ScreenError(String);

/// The tools the screen flags, with why (the definitions themselves are
/// not changed).
pub fn screen(tools: &[Value]) -> Result<Vec<ToolScreen>, ScreenError> {
    let policy = default_policy().map_err(|errs| ScreenError(format!("{errs:?}")))?;
    let mut screened = tools.to_vec();
    Ok(policy.screen_tools(&mut screened))
}

/// A flagged tool's findings, one phrase each: `rule (severity, action) at
/// pointer`, repeats dropped.
pub fn findings_text(s: &ToolScreen) -> String {
    let word = |v: Result<Value, serde_json::Error>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut out: Vec<String> = s
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} ({}, {}) at {}",
                f.rule_id,
                word(serde_json::to_value(f.severity)),
                word(serde_json::to_value(f.action)),
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

//! The rules of the content screen as the filter applies them, for the
//! detector's training report (`detector/pipeline.py`): reads JSON lines
//! `{"text": "...", "surface": "toolDefinition" | "toolResult" | "prompt"}`
//! on stdin and writes one line per input, `{"rules": [[rule id, action], ...]}`:
//! the built-in rules' findings with the default actions (the learned
//! detector is switched off here; the pipeline scores it itself, so the
//! report can show rules, model, and both).
//!
//!     cargo run -p portcullis-core --example screen_jsonl < in.jsonl > out.jsonl

use portcullis_core::scan::Screen;
use portcullis_core::scan::injection::{DETECTOR_RULE, InjectionSpec, Surface};
use serde::Deserialize;
use std::io::{BufRead, Write};

#[derive(Deserialize)]
struct Line {
    text: String,
    surface: Surface,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut spec = InjectionSpec::default();
    spec.detector.enabled = false;
    let screen = Screen::compile(&spec).map_err(|e| format!("{e:?}"))?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line: Line = serde_json::from_str(&line?)?;
        let rules: Vec<(String, _)> = screen
            .check_text(&line.text, line.surface)
            .into_iter()
            .filter(|f| f.rule_id != DETECTOR_RULE)
            .map(|f| (f.rule_id, f.action))
            .collect();
        serde_json::to_writer(&mut out, &serde_json::json!({ "rules": rules }))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

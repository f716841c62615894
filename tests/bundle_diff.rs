//! `portcullis bundle diff OLD NEW` on real bundle directories (and a
//! compiled JSON file): servers added and removed, tools newly allowed and
//! dropped, pins and the server-version pin, settings, a new content
//! policy; reordering and file layout are no change; `--exit-code`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::*;

fn pin(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn server(name: &str, prefix: &str, version: &str, tools: &[(&str, Option<String>)]) -> String {
    let mut s = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {{name: {name}}}\nspec:\n  match: {{pathPrefix: {prefix}}}\n  serverVersion: \"{version}\"\n  tools:\n"
    );
    for (t, p) in tools {
        s.push_str(&format!("    - name: {t}\n"));
        if let Some(p) = p {
            s.push_str(&format!("      pin: \"{p}\"\n"));
        }
    }
    s
}

fn settings(unmatched: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {{name: default}}\nspec:\n  unmatchedRoutes: {unmatched}\n"
    )
}

#[test]
fn reviewer_terms_in_text_and_json() {
    let dir = temp_dir("bundle-diff");
    let old = dir.join("old");
    let new = dir.join("new");
    write(
        &old,
        "weather.yaml",
        &server(
            "weather",
            "/weather",
            "1.0.0",
            &[("get-weather", Some(pin('a'))), ("delete-all", None)],
        ),
    );
    write(
        &old,
        "legacy.yaml",
        &server("legacy", "/legacy", "0.9", &[("ping", None)]),
    );
    write(&old, "settings.yaml", &settings("passthrough"));
    // New: one file with several documents, in another order.
    let combined = [
        settings("deny"),
        server(
            "calendar",
            "/cal",
            "2.0",
            &[("list-events", Some(pin('c')))],
        ),
        server(
            "weather",
            "/weather",
            "1.1.0",
            &[("get-forecast", None), ("get-weather", Some(pin('b')))],
        ),
        "apiVersion: portcullis.dev/v1alpha1\nkind: ContentPolicy\nmetadata: {name: default}\nspec: {}\n"
            .to_owned(),
    ]
    .join("---\n");
    write(&new, "all.yaml", &combined);

    let (code, out, err) = run(&[
        "bundle",
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let changes = report["changes"].as_array().unwrap();
    let find = |kind: &str, name: &str, needle: &str| -> &Value {
        changes
            .iter()
            .find(|c| {
                c["kind"] == kind
                    && c["name"] == name
                    && c["summary"].as_str().unwrap().contains(needle)
            })
            .unwrap_or_else(|| panic!("no {kind}/{name} change with {needle:?} in {out}"))
    };
    assert_eq!(
        find("McpServer", "calendar", "server added")["change"],
        "added"
    );
    assert_eq!(
        find("McpServer", "legacy", "server removed")["change"],
        "removed"
    );
    let added = find("McpServer", "weather", "tool get-forecast newly allowed");
    assert_eq!(added["category"], "tool");
    assert_eq!(added["path"], "spec.tools[get-forecast]");
    assert_eq!(
        find("McpServer", "weather", "tool delete-all no longer allowed")["change"],
        "removed"
    );
    let pin_change = find("McpServer", "weather", "tool get-weather: pin");
    assert_eq!(pin_change["category"], "pin");
    assert_eq!(pin_change["old"], pin('a'));
    assert_eq!(pin_change["new"], pin('b'));
    assert_eq!(
        find("McpServer", "weather", "server version pin")["new"],
        "1.1.0"
    );
    assert_eq!(
        find("Settings", "default", "setting unmatchedRoutes")["new"],
        "deny"
    );
    assert_eq!(
        find("ContentPolicy", "default", "content policy added")["category"],
        "content"
    );
    // Nothing else: moving documents between files is no change.
    assert_eq!(changes.len(), 8, "{out}");

    // Text: one block per document, and --exit-code.
    let (code, text, _) = run(&[
        "bundle",
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--exit-code",
    ]);
    assert_eq!(code, 1);
    assert!(text.contains("~ McpServer/weather:\n"), "{text}");
    assert!(
        text.contains("    + tool get-forecast newly allowed\n"),
        "{text}"
    );
    assert!(
        text.contains("    - tool delete-all no longer allowed\n"),
        "{text}"
    );
    assert!(
        text.contains("- McpServer/legacy: server removed\n"),
        "{text}"
    );
    assert!(text.ends_with("8 changes\n"), "{text}");

    // A compiled file against its own directory: no change, exit 0.
    let compiled = dir.join("new.json");
    let (code, _, err) = run(&[
        "bundle",
        "build",
        new.to_str().unwrap(),
        "-o",
        compiled.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, text, _) = run(&[
        "bundle",
        "diff",
        compiled.to_str().unwrap(),
        new.to_str().unwrap(),
        "--exit-code",
    ]);
    assert_eq!((code, text.as_str()), (0, "no changes\n"));

    // A bundle that does not compile is an error, not a diff.
    let broken = dir.join("broken");
    write(
        &broken,
        "x.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata: {name: x}\nspec: {tols: []}\n",
    );
    let (code, _, err) = run(&[
        "bundle",
        "diff",
        old.to_str().unwrap(),
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tols"), "{err}");
}

//! The fuzz targets' regression inputs, replayed on stable without
//! cargo-fuzz: every file under `fuzz/regressions/<target>/` goes through
//! the same property check as the fuzz target `<target>` (`fuzz/props/`,
//! shared with `fuzz/fuzz_targets/`). A crash input a fuzzer found, once
//! saved there, stays a test (fuzz/README.md says how).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../fuzz/props/mod.rs"]
mod props;

use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Inputs of open bugs, from `fuzz/regressions/KNOWN_FAILING`: one
/// `<target>/<file>` a line (text after `#` is a comment), expected to fail
/// until the bug is fixed.
fn known_failing() -> Vec<String> {
    std::fs::read_to_string(regressions().join("KNOWN_FAILING"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Each target's inputs through its check; a failing input is named. An
/// input listed as known failing must still fail (else take it off the list).
#[test]
fn every_regression_input_holds_its_property() {
    let known = known_failing();
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (target, check) in props::TARGETS {
        for file in files(&regressions().join(target)) {
            let data = std::fs::read(&file).unwrap();
            let name = format!("{target}/{}", file.file_name().unwrap().to_string_lossy());
            replayed += 1;
            let result = std::panic::catch_unwind(|| check(&data));
            match (result, known.contains(&name)) {
                (Ok(()), false) => {}
                (Ok(()), true) => failed.push(format!(
                    "{name} passes now: take it off fuzz/regressions/KNOWN_FAILING"
                )),
                (Err(_), true) => eprintln!("{name}: still failing (known, listed)"),
                (Err(e), false) => {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    failed.push(format!("{name}: {why}"));
                }
            }
        }
    }
    assert!(
        replayed > 0,
        "no regression inputs under {:?}",
        regressions()
    );
    for name in &known {
        assert!(
            regressions().join(name).is_file(),
            "KNOWN_FAILING names {name}, which is not there"
        );
    }
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Every folder under fuzz/regressions is a target's, so no input is
/// silently skipped.
#[test]
fn every_regression_folder_names_a_target() {
    for entry in std::fs::read_dir(regressions()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            assert!(
                props::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/regressions/{name} is no target's"
            );
        }
    }
}

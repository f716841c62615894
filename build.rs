//! Builds the proxy-wasm filter for `wasm32-wasip1` and hands its path to
//! the CLI, which embeds it as the default filter of `portcullis serve`.
//! Also builds the engine as a WebAssembly component for `wasm32-wasip2`
//! (`filters/component`) and hands its path to tests and benches as
//! `PORTCULLIS_COMPONENT_WASM`; `PORTCULLIS_SKIP_COMPONENT=1` skips that
//! second build (its path is then empty, as after a failed component build,
//! and what needs it says so).
//!
//! The filter is built by a nested cargo with its own target directory (the
//! outer build holds the lock on the usual one), and with the outer build's
//! wrappers and flags removed: under `cargo clippy` they would lint the wasm
//! build with clippy's driver, and host RUSTFLAGS do not belong to wasm.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    for path in [
        "filters/core/src",
        "filters/core/Cargo.toml",
        "filters/proxy-wasm/src",
        "filters/proxy-wasm/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=PORTCULLIS_FILTER_WASM_PREBUILT");

    // OUT_DIR is <target>/<profile>/build/<pkg>/out; build beside <profile>.
    let target_dir = out_dir
        .ancestors()
        .nth(3)
        .map(|p| p.join("wasm-filter"))
        .unwrap_or_else(|| out_dir.join("wasm-filter"));
    // A prebuilt filter (e.g. from a release artifact) skips the nested build.
    if let Ok(prebuilt) = env::var("PORTCULLIS_FILTER_WASM_PREBUILT") {
        println!("cargo:rustc-env=PORTCULLIS_FILTER_WASM={prebuilt}");
        build_component(&root, &out_dir, &target_dir);
        return;
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--package",
            "portcullis-filter",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(&target_dir);
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status();
    let ok = matches!(status, Ok(s) if s.success());
    if !ok {
        println!(
            "cargo:warning=building the wasm filter failed; is the target installed? run `rustup target add wasm32-wasip1`"
        );
        std::process::exit(1);
    }
    let wasm = target_dir.join("wasm32-wasip1/wasm/portcullis_filter.wasm");
    let copy = out_dir.join("portcullis_filter.wasm");
    if let Err(e) = std::fs::copy(&wasm, &copy) {
        println!("cargo:warning=cannot copy {}: {e}", wasm.display());
        std::process::exit(1);
    }
    println!("cargo:rustc-env=PORTCULLIS_FILTER_WASM={}", copy.display());
    build_component(&root, &out_dir, &target_dir);
}

/// The component build: the same nested cargo, target dir and scrubbed
/// environment as the filter's, for `wasm32-wasip2`.
fn build_component(
    root: &std::path::Path,
    out_dir: &std::path::Path,
    target_dir: &std::path::Path,
) {
    for path in [
        "filters/component/src",
        "filters/component/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=PORTCULLIS_COMPONENT_WASM_PREBUILT");
    println!("cargo:rerun-if-env-changed=PORTCULLIS_SKIP_COMPONENT");
    if let Ok(prebuilt) = env::var("PORTCULLIS_COMPONENT_WASM_PREBUILT") {
        println!("cargo:rustc-env=PORTCULLIS_COMPONENT_WASM={prebuilt}");
        return;
    }
    if env::var_os("PORTCULLIS_SKIP_COMPONENT").is_some_and(|v| !v.is_empty() && v != "0") {
        println!("cargo:rustc-env=PORTCULLIS_COMPONENT_WASM=");
        return;
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--package",
            "portcullis-component",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(target_dir);
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    // The CLI does not embed the component, so a failed build does not fail
    // this one: the path is left empty and the tests and benches that need
    // the component fail, saying so.
    let ok = matches!(cmd.status(), Ok(s) if s.success());
    if !ok {
        println!(
            "cargo:warning=building the wasm component failed; is the target installed? run `rustup target add wasm32-wasip2` (or set PORTCULLIS_SKIP_COMPONENT=1)"
        );
        println!("cargo:rustc-env=PORTCULLIS_COMPONENT_WASM=");
        return;
    }
    let wasm = target_dir.join("wasm32-wasip2/wasm/portcullis_component.wasm");
    let copy = out_dir.join("portcullis_component.wasm");
    if let Err(e) = std::fs::copy(&wasm, &copy) {
        println!("cargo:warning=cannot copy {}: {e}", wasm.display());
        println!("cargo:rustc-env=PORTCULLIS_COMPONENT_WASM=");
        return;
    }
    println!(
        "cargo:rustc-env=PORTCULLIS_COMPONENT_WASM={}",
        copy.display()
    );
}

//! Builds the proxy-wasm filter for `wasm32-wasip1` and hands its path to
//! the CLI, which embeds it as the default filter of `portcullis serve`.
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

    // A prebuilt filter (e.g. from a release artifact) skips the nested build.
    if let Ok(prebuilt) = env::var("PORTCULLIS_FILTER_WASM_PREBUILT") {
        println!("cargo:rustc-env=PORTCULLIS_FILTER_WASM={prebuilt}");
        return;
    }

    // OUT_DIR is <target>/<profile>/build/<pkg>/out; build beside <profile>.
    let target_dir = out_dir
        .ancestors()
        .nth(3)
        .map(|p| p.join("wasm-filter"))
        .unwrap_or_else(|| out_dir.join("wasm-filter"));
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
}

//! `cargo xtask`: the README's two set-up commands.
//!
//! * `cargo xtask demo`: a real MCP server (the official Python SDK) behind
//!   `portcullis serve` with `examples/bundle`, and a client showing the
//!   filtered tools list, an allowed call, a denied call and the audit
//!   records.
//! * `cargo xtask test`: every test: the workspace's unit and integration
//!   tests, the wasm build, and the end-to-end tests with the Python and
//!   TypeScript SDKs.
//!
//! * `cargo xtask wasm-size [FILE]`: the shipped filter's bytes by section
//!   and by crate ([`size`]).
//!
//! Both start from a machine with only rustup (plus Python and, for `test`,
//! Node.js with npm): they add the wasm target and create a Python virtual
//! environment with the pinned SDK under the target directory (reused while
//! `tests/e2e/requirements.txt` is unchanged); `test` also installs the
//! pinned Node packages there with `npm ci` (reused while
//! `tests/e2e/package-lock.json` is unchanged). `cargo xtask venv` and
//! `cargo xtask node` do only that, and print the Python / the
//! `node_modules` directory to use.

mod size;

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    match task.as_str() {
        "test" => test(&root),
        "demo" => demo(&root),
        "venv" => venv(&root).map(|p| println!("{}", p.display())),
        "node" => node_modules(&root).map(|p| println!("{}", p.display())),
        "wasm-size" => size::run(&root, std::env::args().nth(2).as_deref()),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|venv|node|wasm-size [FILE]>");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time; prefer it to the
    // compile-time value, which a target directory shared between clones
    // (CI's cache) would carry over from another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// rustup installs the toolchain's targets on first use, unless its
/// auto-install is off; adding the target explicitly works either way.
fn ensure_wasm_target() {
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip1", "wasm32-wasip2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The Python environment for the end-to-end tests, created on first use.
fn venv(root: &Path) -> Result<PathBuf> {
    let dir = target_dir(root).join("e2e-venv");
    let python = dir.join("bin/python");
    let requirements = root.join("tests/e2e/requirements.txt");
    let wanted = std::fs::read(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let stamp = dir.join(".requirements");
    if python.exists() && std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
        return Ok(python);
    }
    let system_python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .context(
            "the end-to-end tests need Python 3.10 or newer (python3) for the official MCP SDK",
        )?;
    run(Command::new(system_python)
        .args(["-m", "venv", "--clear"])
        .arg(&dir))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, &wanted)?;
    Ok(python)
}

/// The Node packages for the end-to-end tests (the TypeScript SDK and the
/// reference server-everything, exactly as `tests/e2e/package-lock.json`
/// pins them), installed with `npm ci` on first use. Returns the
/// `node_modules` directory (`PORTCULLIS_E2E_NODE_MODULES` for the tests).
fn node_modules(root: &Path) -> Result<PathBuf> {
    let dir = target_dir(root).join("e2e-node");
    let modules = dir.join("node_modules");
    let mut wanted = Vec::new();
    for file in ["package.json", "package-lock.json"] {
        let path = root.join("tests/e2e").join(file);
        wanted.extend(
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        wanted.push(0);
    }
    let stamp = dir.join(".package-lock");
    if modules
        .join("@modelcontextprotocol/sdk/package.json")
        .exists()
        && std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice())
    {
        return Ok(modules);
    }
    const NEED: &str = "the end-to-end tests need Node.js 18 or newer and npm for the official MCP \
                        TypeScript SDK (Debian: apt-get install nodejs npm)";
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .context(NEED)?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        bail!("{NEED}; found node {version}");
    }
    Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .context(NEED)?;
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(&stamp);
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(root.join("tests/e2e").join(file), dir.join(file))?;
    }
    // Exactly the lockfile; no install scripts (none of these packages has
    // one), no audit or funding requests.
    run(Command::new("npm").current_dir(&dir).args([
        "ci",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
    ]))?;
    std::fs::write(&stamp, &wanted)?;
    Ok(modules)
}

/// The suites that drive `portcullis serve` with SDK clients and raw bytes,
/// run a second time with the request headers held.
const HELD_SUITES: &[&str] = &[
    "bad_input",
    "e2e_approval",
    "e2e_component",
    "e2e_content",
    "e2e_fail_closed",
    "e2e_identity",
    "e2e_policy",
    "e2e_python",
    "e2e_ts",
];

fn test(root: &Path) -> Result<()> {
    ensure_wasm_target();
    let python = venv(root)?;
    let node_modules = node_modules(root)?;
    run(cargo()
        .current_dir(root)
        // Benches are compiled by clippy in CI and run by `cargo bench`;
        // here they would only build their large fixtures for nothing.
        .args([
            "test",
            "--workspace",
            "--lib",
            "--bins",
            "--tests",
            "--examples",
            "--no-fail-fast",
        ])
        .env("PORTCULLIS_E2E_PYTHON", &python)
        .env("PORTCULLIS_E2E_NODE_MODULES", &node_modules))?;
    // The end-to-end suites again with the request headers held
    // (`Settings.spec.requestHeaders: hold`, and `portcullis serve` given
    // Envoy's `allow_on_headers_stop_iteration`): the filter's two modes,
    // through real SDKs, both ways (docs/filter.md).
    let mut held = cargo();
    held.current_dir(root)
        .args(["test", "--workspace", "--no-fail-fast"]);
    for suite in HELD_SUITES {
        held.args(["--test", suite]);
    }
    run(held
        .env("PORTCULLIS_E2E_REQUEST_HEADERS", "hold")
        .env("PORTCULLIS_E2E_PYTHON", &python)
        .env("PORTCULLIS_E2E_NODE_MODULES", &node_modules))?;
    // Doc tests (not covered by the target selection above).
    run(cargo()
        .current_dir(root)
        .args(["test", "--workspace", "--doc"]))?;
    Ok(())
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a line starting with `prefix` on the child's stdout and returns
/// the rest of it.
fn wait_for_line(child: &mut Child, prefix: &str, what: &str) -> Result<String> {
    let stdout = child.stdout.take().context("child has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .with_context(|| format!("{what} did not start within 60 s"))
}

fn demo(root: &Path) -> Result<()> {
    ensure_wasm_target();
    let python = venv(root)?;
    run(cargo()
        .current_dir(root)
        .args(["build", "--bin", "portcullis"]))?;
    let portcullis = target_dir(root).join("debug/portcullis");
    let work = target_dir(root).join("demo");
    std::fs::create_dir_all(&work)?;
    let audit = work.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);

    let mut server = Guard(
        Command::new(&python)
            .arg(root.join("tests/e2e/mcp_server.py"))
            .args(["--port", "0", "--allow-any-host", "--root"])
            .arg(root.join("tests/e2e"))
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the demo MCP server")?,
    );
    let port = wait_for_line(&mut server.0, "READY ", "the MCP server")?;
    let mut proxy = Guard(
        Command::new(&portcullis)
            .args(["serve", "--bundle"])
            .arg(root.join("examples/bundle"))
            .args([
                "--upstream",
                &format!("http://127.0.0.1:{port}"),
                "--listen",
                "127.0.0.1:0",
                "--audit-log",
            ])
            .arg(&audit)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start portcullis serve")?,
    );
    let url = wait_for_line(
        &mut proxy.0,
        "portcullis: listening on ",
        "portcullis serve",
    )?;
    println!(
        "\n== MCP server (Python SDK) on 127.0.0.1:{port}, behind portcullis serve at {url}, bundle examples/bundle\n"
    );

    let script = r#"[
      {"op": "list_tools"},
      {"op": "call_tool", "name": "get-weather", "arguments": {"city": "Paris"}},
      {"op": "call_tool", "name": "delete-file", "arguments": {"path": "/etc/passwd"}}
    ]"#;
    let mut client = Command::new(&python)
        .arg(root.join("tests/e2e/mcp_client.py"))
        .args([
            "--url",
            &format!("{url}/mcp"),
            "--protocol-version",
            "2025-11-25",
            "--script",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the MCP client")?;
    if let Some(mut stdin) = client.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = client.wait_with_output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        match v["op"].as_str() {
            Some("list_tools") => {
                let names: Vec<&str> = v["result"]["tools"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
                    .unwrap_or_default();
                println!("tools/list (filtered by the bundle): {}", names.join(", "));
                println!(
                    "  (the server also has delete-file and read-file; the bundle does not allow them)\n"
                );
            }
            Some("call_tool") if v["ok"] == true => {
                let text = v["result"]["content"][0]["text"].as_str().unwrap_or("");
                println!("allowed call get-weather(Paris) -> {text:?}\n");
            }
            Some("call_tool") => {
                println!(
                    "denied call delete-file(/etc/passwd) -> JSON-RPC error {}:",
                    v["error"]["code"]
                );
                println!(
                    "  {}\n",
                    serde_json::to_string_pretty(&v["error"]["data"])
                        .unwrap_or_default()
                        .replace('\n', "\n  ")
                );
            }
            _ => {}
        }
    }
    drop(proxy);
    drop(server);
    println!("audit records ({}), one per MCP message:", audit.display());
    for line in std::fs::read_to_string(&audit).unwrap_or_default().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        println!(
            "  {:<26} {:<12} {:<6} {:<10} {}",
            v["mcp.method.name"]
                .as_str()
                .unwrap_or(v["kind"].as_str().unwrap_or("")),
            v["gen_ai.tool.name"].as_str().unwrap_or("-"),
            v["decision"].as_str().unwrap_or(""),
            v["outcome"].as_str().unwrap_or(""),
            v["rule"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

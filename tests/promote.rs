//! `portcullis promote SERVER@VERSION --to ENV --bundles DIR` on a real
//! bundles tree in a temporary directory: a document alone in its file
//! replaces the file; one among others is replaced in place with every
//! other byte kept; a server new to the environment gets its own file; a
//! version not approved in the source, or a result that does not compile,
//! writes nothing; a tenant environment falls back to the shared one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use support::*;

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

fn server(name: &str, prefix: &str, version: &str, tool: &str) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n  name: {name}\nspec:\n  match: {{pathPrefix: {prefix}}}\n  serverVersion: \"{version}\"\n  tools:\n    - name: {tool}\n"
    )
}

fn put(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every file under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            out.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
    out
}

fn promote(bundles: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["promote"];
    all.extend_from_slice(args);
    all.extend(["--bundles", bundles.to_str().unwrap()]);
    run(&all)
}

fn check(dir: &Path) {
    let (code, out, err) = run(&["bundle", "check", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

struct Tree {
    root: std::path::PathBuf,
    dev_weather: String,
    prod_head: String,
    prod_tail: String,
}

fn tree(name: &str) -> Tree {
    let root = temp_dir(name);
    let dev_weather = format!(
        "# weather, approved in dev after review #42\n{}  description: Forecasts.\n",
        server("weather", "/weather", "1.4.0", "get-forecast")
    );
    put(&root.join("dev"), "weather.yaml", &dev_weather);
    put(
        &root.join("dev"),
        "calendar.yaml",
        &server("calendar", "/calc", "1.0", "list-events"),
    );
    put(
        &root.join("dev"),
        "notes.yaml",
        &server("notes", "/notes", "0.3", "add-note"),
    );
    put(
        &root.join("staging"),
        "weather.yaml",
        &server("weather", "/weather", "1.3.0", "get-weather"),
    );
    // prod: weather among other documents, with comments around it.
    let prod_head = format!(
        "# prod servers: edit with `portcullis promote`\n{}---\n# weather below\n",
        server("calc", "/calc", "3.1", "add")
    );
    let prod_tail = format!(
        "---\n{}# end of file\n",
        server("search", "/search", "7", "query")
    );
    put(
        &root.join("prod"),
        "servers.yaml",
        &format!(
            "{prod_head}{}{prod_tail}",
            server("weather", "/weather", "1.2.0", "get-weather")
        ),
    );
    put(
        &root.join("prod"),
        "settings.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {name: default}\nspec: {unmatchedRoutes: deny}\n",
    );
    Tree {
        root,
        dev_weather,
        prod_head,
        prod_tail,
    }
}

#[test]
fn promotes_dev_to_staging_to_prod() {
    let t = tree("promote-chain");
    let b = &t.root;
    check(&b.join("prod"));

    // Alone in its file: the file becomes the source's, comments included.
    let (code, out, err) = promote(b, &["weather@1.4.0", "--to", "staging"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(b.join("staging/weather.yaml")).unwrap(),
        t.dev_weather
    );
    assert!(
        out.contains(&format!(
            "changed {}",
            b.join("staging/weather.yaml").display()
        )),
        "{out}"
    );
    assert!(
        out.contains("commit: promote weather 1.3.0 → 1.4.0 to staging (from dev)"),
        "{out}"
    );
    check(&b.join("staging"));

    // Among others: only that document changes.
    let (code, out, err) = promote(b, &["weather@1.4.0", "--to", "prod"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("commit: promote weather 1.2.0 → 1.4.0 to prod (from staging)"),
        "{out}"
    );
    let prod = std::fs::read_to_string(b.join("prod/servers.yaml")).unwrap();
    // The document replaced from its first non-comment line: the comments
    // around it are prod's and stay; the source's own comment stays behind.
    let dev_body = t.dev_weather.split_once('\n').unwrap().1;
    assert!(dev_body.starts_with("apiVersion"));
    assert_eq!(prod, format!("{}{dev_body}{}", t.prod_head, t.prod_tail));
    check(&b.join("prod"));

    // Again: nothing to do, nothing written.
    let before = snapshot(&b.join("prod"));
    let (code, out, _) = promote(b, &["weather@1.4.0", "--to", "prod"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(snapshot(&b.join("prod")), before);
}

#[test]
fn refuses_and_writes_nothing() {
    let t = tree("promote-refuse");
    let b = &t.root;
    let before: Vec<_> = ["dev", "staging", "prod"]
        .iter()
        .map(|e| snapshot(&b.join(e)))
        .collect();

    // A version that was not approved in the source.
    let (code, _, err) = promote(b, &["weather@9.9.9", "--to", "staging"]);
    assert_eq!(code, 1);
    assert!(err.contains("not 9.9.9"), "{err}");

    // A server the source does not have.
    let (code, _, err) = promote(b, &["nope@1", "--to", "staging"]);
    assert_eq!(code, 1);
    assert!(err.contains("no McpServer/nope"), "{err}");

    // calendar claims /calc, which prod's calc already routes: prod would
    // not compile.
    let (code, _, err) = promote(b, &["calendar@1.0", "--from", "dev", "--to", "prod"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing written"), "{err}");

    // Bad invocations.
    assert_eq!(promote(b, &["weather", "--to", "prod"]).0, 2);
    assert_eq!(promote(b, &["weather@1.4.0", "--to", "dev"]).0, 2);
    assert_eq!(promote(b, &["weather@1.4.0", "--to", "qa"]).0, 2);

    let after: Vec<_> = ["dev", "staging", "prod"]
        .iter()
        .map(|e| snapshot(&b.join(e)))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_new_server_gets_its_own_file_and_tenants_fall_back() {
    let t = tree("promote-new");
    let b = &t.root;
    std::fs::create_dir_all(b.join("staging@acme")).unwrap();
    put(
        &b.join("staging@acme"),
        "base.yaml",
        &server("base", "/base", "1", "x"),
    );

    let (code, out, err) = promote(b, &["notes@0.3", "--to", "staging@acme", "--from", "dev"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("commit: add notes@0.3 to staging@acme (from dev)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("staging@acme/notes.yaml")).unwrap(),
        std::fs::read_to_string(b.join("dev/notes.yaml")).unwrap()
    );
    check(&b.join("staging@acme"));

    // prod@acme: staging@acme exists, so it is the default source.
    std::fs::create_dir_all(b.join("prod@acme")).unwrap();
    put(
        &b.join("prod@acme"),
        "base.yaml",
        &server("base", "/base", "1", "x"),
    );
    let (code, out, err) = promote(b, &["notes@0.3", "--to", "prod@acme"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(from staging@acme)"), "{out}");
}

//! `portcullis evidence export|verify` end to end: a real store filled by
//! `portcullis audit ingest`, a key from `portcullis audit keygen`, a pack
//! exported for every framework, then verified; and each kind of tampering
//! (a flipped byte, a removed file, an added file, an edited manifest, the
//! wrong key) must fail verification naming what is wrong.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use audit_store::time::{format_rfc3339_ms, now_ms};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::portcullis;

const DAY: i64 = 86_400_000;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The records: 60 sampled tools/call records over the last 50 days (10%
/// denied), one 120 days old (outside --since 90d), a tools/list with a pin
/// failure, a response with PII findings, and a shadow MCP initialize.
fn records(now: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for n in 0..60u64 {
        let subject = ["alice", "bob", "carol"][(n % 3) as usize];
        let tool = ["search", "update"][(n % 2) as usize];
        out.push(audit_store::sample::record(
            n,
            subject,
            tool,
            now - 50 * DAY + (n as i64) * DAY / 2,
        ));
    }
    out.push(audit_store::sample::record(
        999,
        "old",
        "search",
        now - 120 * DAY,
    ));
    let base = |kind: &str, method: &str, t: i64| {
        json!({
            "schema": "portcullis.audit/v1", "time": format_rfc3339_ms(t),
            "request_id": format!("x-{method}-{t}"), "message_index": 0, "direction": "client",
            "kind": kind, "mcp.method.name": method, "server": "crm", "decision": "allow",
            "reason": "test", "bundle_version": "2026-12-01.1", "outcome": "result",
        })
    };
    let mut list = base("request", "tools/list", now - 3 * DAY);
    list["outcome"] = "withheld".into();
    list["pin_failures"] = json!([{"tool": "search", "status": "mismatch", "expected": "sha256:aa", "actual": "sha256:bb"}]);
    out.push(list);
    let mut pii = base("request", "resources/read", now - 2 * DAY);
    pii["findings"] = json!({"pii": {"EMAIL": 2, "US_SSN": 1}, "action": "redacted"});
    out.push(pii);
    let mut shadow = base("request", "initialize", now - DAY);
    shadow["server"] = Value::Null;
    shadow["shadow"] = true.into();
    shadow["authority"] = "rogue.internal:8080".into();
    out.push(shadow);
    out
}

struct Fixture {
    dir: PathBuf,
    db: PathBuf,
    key: PathBuf,
    tool_calls_in_window: usize,
}

fn fixture(name: &str) -> Fixture {
    let dir = support::temp_dir(name);
    let db = dir.join("audit.db");
    let key = dir.join("evidence.key");
    let (code, out, err) = portcullis(&["audit", "keygen", "--out", s(&key)]);
    assert_eq!(code, 0, "{out}{err}");
    let now = now_ms();
    let recs = records(now);
    let jsonl: String = recs.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join("in.jsonl"), jsonl).unwrap();
    let (code, out, err) = portcullis(&[
        "audit",
        "ingest",
        "--db",
        s(&db),
        "--checkpoint-every",
        "10",
        s(&dir.join("in.jsonl")),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("ingested {} records", recs.len())),
        "{out}"
    );
    Fixture {
        dir,
        db,
        key,
        tool_calls_in_window: 60,
    }
}

fn export(f: &Fixture, framework: &str, out: &Path) -> (i32, String, String) {
    portcullis(&[
        "evidence",
        "export",
        "--framework",
        framework,
        "--since",
        "90d",
        "--audit",
        s(&f.db),
        "--key",
        s(&f.key),
        "--bundles",
        s(&support::root().join("examples/bundle")),
        "-o",
        s(out),
    ])
}

fn verify(pack: &Path, public: Option<&Path>) -> (i32, String) {
    let mut args = vec!["evidence", "verify", s(pack)];
    if let Some(p) = public {
        args.extend(["--public-key", s(p)]);
    }
    let (code, out, err) = portcullis(&args);
    (code, format!("{out}{err}"))
}

#[test]
fn export_then_verify_then_tamper() {
    let f = fixture("evidence");
    let pack = f.dir.join("soc2-pack");
    let (code, out, err) = export(&f, "soc2", &pack);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote soc2 evidence pack"), "{out}");
    let public = audit_store::keys::public_path(&f.key);

    // The contents: controls with the framework's ids, records verbatim.
    let controls: Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("controls.json")).unwrap())
            .unwrap();
    assert_eq!(controls["framework"], "soc2");
    let list = controls["controls"].as_array().unwrap();
    assert!(list.len() >= 6, "{controls}");
    for c in list {
        let ids = c["framework_controls"].as_array().unwrap();
        assert!(
            !ids.is_empty() && ids.iter().all(|i| i.as_str().unwrap().starts_with("CC")),
            "{c}"
        );
        for file in c["files"].as_array().unwrap() {
            assert!(
                pack.join(file.as_str().unwrap()).is_file(),
                "{file} listed but absent"
            );
        }
    }
    let obs = std::fs::read_to_string(pack.join("controls/PC-OBS-1/records.jsonl")).unwrap();
    assert_eq!(
        obs.lines().count(),
        f.tool_calls_in_window,
        "tools/call in 90 days, not the 120-day-old one"
    );
    // Each exported record is the stored canonical text, byte for byte.
    let (code, stored, _) = portcullis(&[
        "audit",
        "query",
        "--db",
        s(&f.db),
        "--method",
        "tools/call",
        "--since",
        "90d",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(obs, stored);
    let shadow =
        std::fs::read_to_string(pack.join("controls/PC-REG-2/shadow_servers.jsonl")).unwrap();
    let shadow: Value = serde_json::from_str(shadow.lines().next().unwrap()).unwrap();
    assert_eq!(
        (shadow["authority"].as_str(), shadow["records"].as_i64()),
        (Some("rogue.internal:8080"), Some(1))
    );
    let pii = std::fs::read_to_string(pack.join("controls/PC-POL-2/pii_findings.csv")).unwrap();
    assert_eq!(
        pii,
        "server,entity,findings,records\ncrm,EMAIL,2,1\ncrm,US_SSN,1,1\n"
    );
    let chain: Value = serde_json::from_str(
        &std::fs::read_to_string(pack.join("chain-verification.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(chain["finding"], Value::Null, "{chain}");
    assert_eq!(chain["records"], 64);
    assert!(
        pack.join("bundles/bundle.json").is_file()
            && pack.join("bundles/src/everything.yaml").is_file()
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["framework"], "soc2");
    assert_eq!(manifest["store"]["head_seq"], 64);
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"controls/PC-OBS-1/records.jsonl") && listed.contains(&"crosswalk.yaml")
    );

    let (code, text) = verify(&pack, Some(public.as_path()));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with(&format!("OK: {} files verified", listed.len())),
        "{text}"
    );

    // Each tampering, on its own copy, fails and names what changed.
    let case = |name: &str, damage: &dyn Fn(&Path), expect: &[&str]| {
        let copy = f.dir.join(format!("tamper-{name}"));
        copy_dir(&pack, &copy);
        damage(&copy);
        let (code, text) = verify(&copy, Some(public.as_path()));
        assert_eq!(code, 1, "{name}: {text}");
        for e in expect {
            assert!(text.contains(e), "{name}: expected {e:?} in {text}");
        }
    };
    case(
        "flip",
        &|p| {
            let file = p.join("controls/PC-OBS-1/records.jsonl");
            let mut b = std::fs::read(&file).unwrap();
            b[100] ^= 0x01;
            std::fs::write(&file, b).unwrap();
        },
        &["FAILED: controls/PC-OBS-1/records.jsonl: modified"],
    );
    case(
        "remove",
        &|p| std::fs::remove_file(p.join("chain-verification.json")).unwrap(),
        &["FAILED: chain-verification.json: missing"],
    );
    case(
        "add",
        &|p| std::fs::write(p.join("controls/PC-OBS-1/extra.jsonl"), "{}\n").unwrap(),
        &["FAILED: controls/PC-OBS-1/extra.jsonl: unexpected file"],
    );
    case(
        "manifest",
        &|p| {
            // Make the manifest agree with an edited file: only the signature
            // can tell.
            let file = p.join("crosswalk.yaml");
            std::fs::write(&file, "schema: forged\n").unwrap();
            let m = std::fs::read_to_string(p.join("manifest.json")).unwrap();
            let mut v: Value = serde_json::from_str(&m).unwrap();
            for e in v["files"].as_array_mut().unwrap() {
                if e["path"] == "crosswalk.yaml" {
                    e["sha256"] =
                        "9f35b58e05d7bd66c1f1a3e3a94b8ec49bb1bf3a9dd4b0da60bc22f0ba7e8cdd".into();
                }
            }
            std::fs::write(
                p.join("manifest.json"),
                serde_json::to_string_pretty(&v).unwrap(),
            )
            .unwrap();
        },
        &["FAILED: manifest.json: the signature does not verify"],
    );
    case(
        "signature",
        &|p| std::fs::remove_file(p.join("manifest.sig")).unwrap(),
        &["FAILED: manifest.sig"],
    );

    // Another key: the signature is valid, but not the trusted one's.
    let other = f.dir.join("other.key");
    assert_eq!(portcullis(&["audit", "keygen", "--out", s(&other)]).0, 0);
    let other_public = audit_store::keys::public_path(&other);
    let (code, text) = verify(&pack, Some(other_public.as_path()));
    assert_eq!(code, 1);
    assert!(
        text.contains("not signed by the given public key"),
        "{text}"
    );
    // Without a trusted key it verifies, and says what that does not show.
    let (code, text) = verify(&pack, None);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pass --public-key"), "{text}");

    // Refuses to write into a non-empty directory.
    let (code, _, err) = export(&f, "soc2", &pack);
    assert_eq!(code, 2);
    assert!(err.contains("not empty"), "{err}");
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn every_framework_exports_and_verifies() {
    let f = fixture("evidence-all");
    let public = audit_store::keys::public_path(&f.key);
    let prefix = [
        ("soc2", "CC"),
        ("hipaa", "164."),
        ("pci", ""),
        ("eu-ai-act", "Article "),
        ("nist-ai-rmf", ""),
        ("iso27001", "A."),
    ];
    for (framework, p) in prefix {
        let pack = f.dir.join(framework);
        let (code, out, err) = export(&f, framework, &pack);
        assert_eq!(code, 0, "{framework}: {out}{err}");
        let (code, text) = verify(&pack, Some(public.as_path()));
        assert_eq!(code, 0, "{framework}: {text}");
        let controls: Value =
            serde_json::from_str(&std::fs::read_to_string(pack.join("controls.json")).unwrap())
                .unwrap();
        assert_eq!(controls["framework"], framework);
        let list = controls["controls"].as_array().unwrap();
        assert!(list.len() >= 6, "{framework}");
        for c in list {
            for id in c["framework_controls"].as_array().unwrap() {
                assert!(id.as_str().unwrap().starts_with(p), "{framework}: {id}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&f.dir);
}

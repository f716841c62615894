//! `portcullis assess` on two real bundles of different maturity, one with
//! a real audit store: the scores must differ for stated reasons, and the
//! HTML report must render in headless Chromium (Debian's `chromium`) with
//! the six pillars drawn and the totals computed by the page's own script.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use audit_store::time::now_ms;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::portcullis;

const DAY: i64 = 86_400_000;
const PILLARS: [&str; 6] = [
    "registry",
    "identity",
    "policy",
    "observability",
    "lifecycle",
    "compliance",
];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A bare bundle: one server, every tool allowed, nothing else.
const BASIC: &str = "\
apiVersion: portcullis.dev/v1alpha1
kind: McpServer
metadata: {name: notes}
spec:
  match: {pathPrefix: /mcp}
  tools:
    - name: \"*\"
";

/// A governed bundle. The JWKS and minting key come from the identity test
/// fixture, so the IdentityProvider and upstream token are real ones.
fn mature() -> String {
    let tmpl =
        std::fs::read_to_string(support::root().join("tests/fixtures/identity/bundle.yaml.tmpl"))
            .unwrap();
    let line = |prefix: &str| {
        tmpl.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} not in the identity fixture"))
            .trim()
            .to_string()
    };
    let jwks = line("jwks:");
    let key = line("key:");
    format!(
        "\
apiVersion: portcullis.dev/v1alpha1
kind: IdentityProvider
metadata: {{name: corp-idp}}
spec:
  issuer: https://idp.test.example
  algorithms: [RS256, ES256]
  {jwks}
  claims:
    agent: [/act/sub, azp]
    tenant: [tenant]
---
apiVersion: portcullis.dev/v1alpha1
kind: IdentityProvider
metadata: {{name: partner-idp}}
spec:
  issuer: https://partner.test.example
  algorithms: [RS256, ES256]
  {jwks}
---
apiVersion: portcullis.dev/v1alpha1
kind: ContentPolicy
metadata: {{name: default}}
spec: {{}}
---
apiVersion: portcullis.dev/v1alpha1
kind: Settings
metadata:
  name: default
  annotations:
    portcullis.dev/runbook: https://runbooks.example/mcp-incidents
spec:
  environment: prod
  unmatchedRoutes: deny
---
apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {{name: crm-rules}}
spec:
  rules:
    - id: small-exports
      effect: permit
      servers: [crm]
      tools: [search]
      arguments:
        type: object
        properties:
          limit: {{type: integer, maximum: 100}}
    - id: approve-updates
      effect: requireApproval
      servers: [crm]
      tools: [update]
    - id: trial-forbid-bulk
      effect: forbid
      servers: [crm]
      tools: [search]
      enforce: false
      arguments:
        type: object
        required: [bulk]
  limits:
    - id: per-user
      key: [subject]
      rate: {{requests: 60, per: 1m}}
---
apiVersion: portcullis.dev/v1alpha1
kind: McpServer
metadata:
  name: crm
  annotations:
    portcullis.dev/vetted-at: \"2026-11-30T10:00:00Z\"
    portcullis.dev/vet-findings: \"[]\"
spec:
  owner: sales-platform
  classification: confidential
  status: approved
  lastReview: \"2026-11-30\"
  environments: [prod]
  match: {{pathPrefix: /mcp}}
  serverVersion: \"1.4.2\"
  pinning: strict
  tools:
    - name: search
      pin: \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"
    - name: update
      pin: \"sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752\"
  identity:
    resource: https://crm.example/mcp
    providers: [corp-idp, partner-idp]
    scopes:
      required: [mcp]
      toolDefault: [\"tools:{{tool}}\"]
    upstreamToken:
      {key}
      issuer: https://portcullis.test
      lifetimeSeconds: 60
"
    )
}

fn bundle(dir: &Path, name: &str, text: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("bundle.yaml"), text).unwrap();
    let (code, out, err) = portcullis(&["bundle", "check", s(&d)]);
    assert_eq!(code, 0, "{name} bundle must compile: {out}{err}");
    d
}

fn assess(bundles: &Path, audit: Option<&Path>, html: Option<&Path>) -> Value {
    let mut args = vec!["assess", "--bundles", s(bundles), "--format", "json"];
    if let Some(a) = audit {
        args.extend(["--audit", s(a)]);
    }
    if let Some(h) = html {
        args.extend(["--html", s(h)]);
    }
    let (code, out, err) = portcullis(&args);
    assert_eq!(code, 0, "{out}{err}");
    // --html appends a "wrote" line after the JSON.
    let json = out.rsplit_once("\nwrote ").map_or(out.as_str(), |(j, _)| j);
    serde_json::from_str(json).unwrap()
}

fn question(a: &Value, n: u64) -> &Value {
    a["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["number"] == n)
        .unwrap()
}

fn pillar(a: &Value, p: &str) -> u64 {
    a["pillars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pillar"] == p)
        .unwrap()["level"]
        .as_u64()
        .unwrap()
}

/// The framework's bands, restated: 0-6, 7-12, 13-18, 19-22, 23-24.
fn band(total: u64) -> u64 {
    [6, 12, 18, 22].iter().filter(|b| total > **b).count() as u64
}

fn check_explained(a: &Value) {
    let qs = a["questions"].as_array().unwrap();
    assert_eq!(qs.len(), 12);
    let mut sum = 0;
    for q in qs {
        let score = q["score"].as_u64().unwrap();
        assert!(score <= 2);
        sum += score;
        let earned = q["earned"].as_array().unwrap();
        let missing = q["missing"].as_array().unwrap();
        // Every point says why: a full score names what earned it, anything
        // less names what is missing.
        if score == 2 {
            assert!(!earned.is_empty(), "{q}");
        } else {
            assert!(!missing.is_empty(), "{q}");
        }
    }
    assert_eq!(a["total"].as_u64().unwrap(), sum);
    assert_eq!(a["level"].as_u64().unwrap(), band(sum));
    let ps: Vec<&str> = a["pillars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pillar"].as_str().unwrap())
        .collect();
    assert_eq!(ps, PILLARS);
    for p in a["pillars"].as_array().unwrap() {
        if p["level"].as_u64().unwrap() < 4 {
            assert!(!p["missing"].as_array().unwrap().is_empty(), "{p}");
        }
    }
}

fn store(dir: &Path) -> PathBuf {
    let db = dir.join("audit.db");
    let now = now_ms();
    let lines: String = (0..40u64)
        .map(|n| {
            let tool = if n % 2 == 0 { "search" } else { "update" };
            format!(
                "{}\n",
                audit_store::sample::record(n, "alice", tool, now - 20 * DAY + n as i64 * 1000)
            )
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
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
    db
}

#[test]
fn different_bundles_score_differently_and_say_why() {
    let dir = support::temp_dir("assess");
    let basic = bundle(&dir, "basic", BASIC);
    let mature_dir = bundle(&dir, "mature", &mature());
    let db = store(&dir);

    let b = assess(&basic, None, None);
    let m = assess(&mature_dir, Some(&db), None);
    check_explained(&b);
    check_explained(&m);
    assert!(
        m["total"].as_u64() > b["total"].as_u64(),
        "mature {} vs basic {}",
        m["total"],
        b["total"]
    );

    // Identity: nothing vs. per-call minted tokens with per-tool scopes.
    assert_eq!(question(&b, 3)["score"], 0);
    assert!(
        question(&b, 3)["missing"]
            .to_string()
            .contains("spec.identity")
    );
    assert_eq!(question(&m, 3)["score"], 2, "{}", question(&m, 3));
    // Attribution: needs the store; the mature one has every call's subject.
    assert_eq!(question(&b, 4)["score"], 0);
    assert_eq!(question(&m, 4)["score"], 2, "{}", question(&m, 4));
    assert!(
        question(&m, 4)["earned"]
            .to_string()
            .contains("40 of 40 tool calls")
    );
    // Approval gates come from the Policy document.
    assert_eq!(question(&b, 7)["score"], 0);
    assert!(
        question(&b, 7)["missing"]
            .to_string()
            .contains("requireApproval")
    );
    assert_eq!(question(&m, 7)["score"], 2);
    // The headline query is asked for real against the store.
    assert_eq!(question(&b, 8)["score"], 0);
    assert_eq!(question(&m, 8)["score"], 2, "{}", question(&m, 8));
    assert!(
        question(&m, 8)["earned"]
            .to_string()
            .contains("every call by alice")
    );
    // Inventory: owner, classification and version.
    assert_eq!(question(&b, 1)["score"], 1);
    assert!(
        question(&b, 1)["missing"]
            .to_string()
            .contains("spec.owner")
    );
    assert_eq!(question(&m, 1)["score"], 2);
    // The runbook annotation.
    assert_eq!(question(&m, 12)["score"], 2);
    assert!(
        question(&b, 12)["missing"]
            .to_string()
            .contains("portcullis.dev/runbook")
    );

    for p in ["registry", "identity", "policy", "observability"] {
        assert!(
            pillar(&m, p) > pillar(&b, p),
            "{p}: mature {} vs basic {}",
            pillar(&m, p),
            pillar(&b, p)
        );
    }
    assert_eq!(pillar(&b, "identity"), 0);
    assert_eq!(pillar(&b, "observability"), 0);
    assert!(pillar(&m, "identity") >= 3);
    assert!(pillar(&m, "observability") >= 3);

    // Text output names the pillars and what is missing.
    let (code, text, _) = portcullis(&["assess", "--bundles", s(&basic)]);
    assert_eq!(code, 0);
    assert!(
        text.contains(&format!("Self-assessment: {}/24", b["total"])),
        "{text}"
    );
    assert!(text.contains("identity") && text.contains("- "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn chromium() -> String {
    std::env::var("PORTCULLIS_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let dir = support::temp_dir("assess-html");
    let mature_dir = bundle(&dir, "mature", &mature());
    let db = store(&dir);
    let html = dir.join("report.html");
    let a = assess(&mature_dir, Some(&db), Some(&html));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<link") && !page.contains("src="),
        "self-contained"
    );

    let profile = dir.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", &url])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install it: apt-get install -y chromium",
                chromium()
            )
        });
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the page's script did not run:\n{dom}"
    );
    // The script drew one label per pillar with its level, and the polygon.
    for p in a["pillars"].as_array().unwrap() {
        let name = p["pillar"].as_str().unwrap();
        let label = format!(
            "{}{} {}/4",
            name[..1].to_uppercase(),
            &name[1..],
            p["level"]
        );
        let tag = format!("data-pillar=\"{name}\" data-level=\"{}\"", p["level"]);
        assert!(dom.contains(&tag), "no {tag} in the rendered DOM");
        assert!(
            dom.contains(&label),
            "no label {label:?} in the rendered DOM"
        );
    }
    assert_eq!(dom.matches("class=\"pillar-label\"").count(), 6);
    assert!(dom.contains("id=\"levels\""));
    // The totals the page computed from its data agree with the CLI's.
    assert!(
        dom.contains(&format!(
            "<span id=\"computed-total\">{}/24</span>",
            a["total"]
        )),
        "computed total missing"
    );
    assert!(dom.contains(&format!(
        "<span id=\"computed-level\">{}</span>",
        a["level"]
    )));
    // A screenshot of the chart is not blank: many distinct colours.
    let png = dir.join("report.png");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=800,700", "--virtual-time-budget=5000", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // A blank 800x700 page compresses to about a kilobyte; text and a
    // filled polygon do not.
    assert!(
        bytes.len() > 10_000,
        "screenshot looks blank ({} bytes)",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Content security is on by default (the built-in policy): a bare bundle
/// scores on question 6, and only `contentPolicy: none`, said by name,
/// scores it down, naming the server (docs/threat-model.md, class 9).
#[test]
fn content_security_off_by_name_scores_down() {
    let dir = support::temp_dir("assess-content");
    let basic = bundle(&dir, "basic", BASIC);
    let off = bundle(
        &dir,
        "off",
        &BASIC.replace("  tools:\n", "  contentPolicy: none\n  tools:\n"),
    );
    let b = assess(&basic, None, None);
    let o = assess(&off, None, None);
    assert_eq!(question(&b, 6)["score"], 2, "{}", question(&b, 6));
    assert!(
        question(&b, 6)["earned"].to_string().contains("builtin"),
        "{}",
        question(&b, 6)
    );
    assert_eq!(question(&o, 6)["score"], 0, "{}", question(&o, 6));
    assert!(
        question(&o, 6)["missing"]
            .to_string()
            .contains("contentPolicy: none"),
        "{}",
        question(&o, 6)
    );
}

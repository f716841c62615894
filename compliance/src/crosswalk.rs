//! The compliance crosswalk (`compliance/crosswalk.yaml`), embedded in the
//! binary, parsed and checked.
//!
//! The crosswalk is data, not code, so that GRC reviewers can read and
//! change it without reading Rust; but a wrong control id in an evidence
//! pack is worse than none, so [`Crosswalk::validate`] holds every id to
//! the numbering its framework actually uses: full tables for the
//! frameworks with a small closed set (SOC 2 common criteria, NIST AI RMF
//! subcategories, ISO/IEC 27001:2022 Annex A), and for the larger ones
//! (HIPAA, PCI DSS, the AI Act) the shape plus a list of ids checked
//! against the source texts, so a new citation has to be added there on
//! purpose. The YAML is read with the bundle loader's parser (no second
//! YAML dependency), which also gives every error a line.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The crosswalk as shipped.
pub const CROSSWALK_YAML: &str = include_str!("../crosswalk.yaml");

/// What `schema` the file must carry.
pub const SCHEMA: &str = "portcullis.crosswalk/v1";

/// The six frameworks, by the names the CLI and the file use.
pub const FRAMEWORKS: &[&str] = &[
    "soc2",
    "hipaa",
    "pci",
    "eu-ai-act",
    "nist-ai-rmf",
    "iso27001",
];

/// The six pillars of the governance framework, in its order.
pub const PILLARS: &[&str] = &[
    "registry",
    "identity",
    "policy",
    "observability",
    "lifecycle",
    "compliance",
];

/// The crosswalk file: frameworks, pillars, saved queries and controls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crosswalk {
    pub schema: String,
    pub version: String,
    pub frameworks: BTreeMap<String, FrameworkInfo>,
    pub pillars: Vec<String>,
    pub queries: Vec<SavedQuery>,
    pub controls: Vec<Control>,
}

/// A framework the crosswalk maps to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameworkInfo {
    pub name: String,
}

/// What a saved query selects, which decides how a pack exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryKind {
    /// Selects `seq` and `record`: exported as the stored records verbatim.
    Records,
    /// Any columns: exported as rows.
    Summary,
}

/// A read-only SQL query over the audit store, taking `:since` and
/// `:until`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedQuery {
    pub id: String,
    pub kind: QueryKind,
    pub title: String,
    pub sql: String,
}

/// A Portcullis control: what implements it, which queries evidence it,
/// and which framework controls it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub pillar: String,
    pub description: String,
    pub implemented_by: ImplementedBy,
    /// The records query whose result is this control's records.
    #[serde(default)]
    pub records: Option<String>,
    #[serde(default)]
    pub queries: Vec<String>,
    pub mappings: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Where a control is implemented: bundle fields, audit fields, features.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImplementedBy {
    #[serde(default)]
    pub bundle: Vec<String>,
    #[serde(default)]
    pub audit: Vec<String>,
    #[serde(default)]
    pub features: Vec<String>,
}

impl Crosswalk {
    /// The embedded crosswalk, checked.
    pub fn embedded() -> Result<Crosswalk, Vec<String>> {
        let c = Crosswalk::parse(CROSSWALK_YAML)?;
        let errors = c.validate();
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    /// Parses crosswalk YAML (one document), without validating it.
    pub fn parse(text: &str) -> Result<Crosswalk, Vec<String>> {
        let docs = portcullis_core::bundle::yaml::parse_documents("crosswalk.yaml", text)
            .map_err(|e| vec![e.to_string()])?;
        let [doc] = docs.as_slice() else {
            return Err(vec![format!(
                "crosswalk.yaml: expected one YAML document, found {}",
                docs.len()
            )]);
        };
        serde_json::from_value(doc.value.clone()).map_err(|e| vec![format!("crosswalk.yaml: {e}")])
    }

    /// The saved query of this id.
    pub fn query(&self, id: &str) -> Option<&SavedQuery> {
        self.queries.iter().find(|q| q.id == id)
    }

    /// The controls mapped to `framework`, in file order.
    pub fn controls_for<'a>(&'a self, framework: &'a str) -> impl Iterator<Item = &'a Control> {
        self.controls
            .iter()
            .filter(move |c| c.mappings.get(framework).is_some_and(|v| !v.is_empty()))
    }

    /// Everything wrong with the crosswalk, one line each (empty: valid).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.schema != SCHEMA {
            errors.push(format!("schema is {:?}, expected {SCHEMA:?}", self.schema));
        }
        if self.version.trim().is_empty() {
            errors.push("version is empty".into());
        }
        let names: BTreeSet<&str> = self.frameworks.keys().map(String::as_str).collect();
        if names != FRAMEWORKS.iter().copied().collect::<BTreeSet<&str>>() {
            errors.push(format!(
                "frameworks are {names:?}, expected exactly {FRAMEWORKS:?}"
            ));
        }
        if self.pillars != PILLARS {
            errors.push(format!(
                "pillars are {:?}, expected {PILLARS:?}",
                self.pillars
            ));
        }
        let mut query_ids = BTreeSet::new();
        for q in &self.queries {
            if !is_slug(&q.id) {
                errors.push(format!("query id {:?}: use lower_snake_case", q.id));
            }
            if !query_ids.insert(q.id.as_str()) {
                errors.push(format!("query {}: defined twice", q.id));
            }
        }
        let mut control_ids = BTreeSet::new();
        let mut covered_pillars = BTreeSet::new();
        for c in &self.controls {
            let at = format!("control {}", c.id);
            if !is_control_id(&c.id) {
                errors.push(format!("{at}: ids look like PC-REG-1 (PC-<pillar>-<n>)"));
            }
            if !control_ids.insert(c.id.as_str()) {
                errors.push(format!("{at}: defined twice"));
            }
            if !PILLARS.contains(&c.pillar.as_str()) {
                errors.push(format!("{at}: unknown pillar {:?}", c.pillar));
            }
            covered_pillars.insert(c.pillar.as_str());
            if c.title.trim().is_empty() || c.description.trim().is_empty() {
                errors.push(format!("{at}: needs a title and a description"));
            }
            if c.records.is_none() && c.queries.is_empty() {
                errors.push(format!("{at}: names no saved query, so it has no evidence"));
            }
            if let Some(r) = &c.records {
                match self.query(r) {
                    None => errors.push(format!("{at}: records query {r:?} is not defined")),
                    Some(q) if q.kind != QueryKind::Records => {
                        errors.push(format!("{at}: records query {r:?} is not of kind records"))
                    }
                    Some(_) => {}
                }
            }
            for q in &c.queries {
                if self.query(q).is_none() {
                    errors.push(format!("{at}: query {q:?} is not defined"));
                }
            }
            for f in c.mappings.keys() {
                if !FRAMEWORKS.contains(&f.as_str()) {
                    errors.push(format!("{at}: unknown framework {f:?}"));
                }
            }
            for f in FRAMEWORKS {
                let ids = c.mappings.get(*f).map(Vec::as_slice).unwrap_or(&[]);
                if ids.is_empty() {
                    errors.push(format!("{at}: maps to nothing in {f}"));
                }
                let mut seen = BTreeSet::new();
                for id in ids {
                    if !seen.insert(id) {
                        errors.push(format!("{at}: {f} {id:?} listed twice"));
                    }
                    if let Err(e) = check_id(f, id) {
                        errors.push(format!("{at}: {f} {id:?}: {e}"));
                    }
                }
            }
        }
        for p in PILLARS {
            if !covered_pillars.contains(p) {
                errors.push(format!("no control in pillar {p}"));
            }
        }
        errors
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_control_id(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("PC"), Some(p), Some(n), None)
            if ["REG", "IDN", "POL", "OBS", "LCY", "CMP"].contains(&p)
                && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    )
}

/// SOC 2 common criteria (TSC 2017): CC1.1-1.5, CC2.1-2.3, CC3.1-3.4,
/// CC4.1-4.2, CC5.1-5.3, CC6.1-6.8, CC7.1-7.5, CC8.1, CC9.1-9.2.
const SOC2_SERIES: &[(u32, u32)] = &[
    (1, 5),
    (2, 3),
    (3, 4),
    (4, 2),
    (5, 3),
    (6, 8),
    (7, 5),
    (8, 1),
    (9, 2),
];

/// NIST AI RMF 1.0 subcategories per category (72 in all).
const NIST_SERIES: &[(&str, &[u32])] = &[
    ("GOVERN", &[7, 3, 2, 3, 2, 2]),
    ("MAP", &[6, 3, 5, 2, 2]),
    ("MEASURE", &[3, 13, 3, 3]),
    ("MANAGE", &[4, 4, 2, 3]),
];

/// ISO/IEC 27001:2022 Annex A: 5.1-5.37 organizational, 6.1-6.8 people,
/// 7.1-7.14 physical, 8.1-8.34 technological.
const ISO_SERIES: &[(u32, u32)] = &[(5, 37), (6, 8), (7, 14), (8, 34)];

/// HIPAA Security Rule standards and implementation specifications cited
/// or likely to be (45 CFR 164.308-164.316).
const HIPAA_KNOWN: &[&str] = &[
    "164.308(a)(1)",
    "164.308(a)(1)(i)",
    "164.308(a)(1)(ii)(A)",
    "164.308(a)(1)(ii)(B)",
    "164.308(a)(1)(ii)(C)",
    "164.308(a)(1)(ii)(D)",
    "164.308(a)(2)",
    "164.308(a)(3)",
    "164.308(a)(4)",
    "164.308(a)(4)(i)",
    "164.308(a)(4)(ii)(A)",
    "164.308(a)(4)(ii)(B)",
    "164.308(a)(4)(ii)(C)",
    "164.308(a)(5)",
    "164.308(a)(5)(ii)(B)",
    "164.308(a)(5)(ii)(C)",
    "164.308(a)(6)",
    "164.308(a)(6)(ii)",
    "164.308(a)(7)",
    "164.308(a)(8)",
    "164.308(b)(1)",
    "164.312(a)(1)",
    "164.312(a)(2)(i)",
    "164.312(a)(2)(ii)",
    "164.312(a)(2)(iii)",
    "164.312(a)(2)(iv)",
    "164.312(b)",
    "164.312(c)(1)",
    "164.312(c)(2)",
    "164.312(d)",
    "164.312(e)(1)",
    "164.312(e)(2)(i)",
    "164.312(e)(2)(ii)",
    "164.314(a)(1)",
    "164.316(a)",
    "164.316(b)(1)",
    "164.316(b)(2)(i)",
    "164.316(b)(2)(ii)",
    "164.316(b)(2)(iii)",
];

/// PCI DSS v4.0 requirements checked against the standard's text.
const PCI_KNOWN: &[&str] = &[
    "1.2.1", "1.3.1", "1.4.1", "2.2.1", "3.3.1", "3.4.1", "3.5.1", "6.2.4", "6.3.1", "6.3.2",
    "6.4.1", "6.4.2", "6.5.1", "6.5.2", "7.2.1", "7.2.2", "7.2.4", "7.2.5", "7.3.1", "8.2.1",
    "8.2.2", "8.3.1", "8.6.1", "8.6.2", "8.6.3", "10.2.1", "10.2.1.1", "10.2.1.2", "10.2.1.4",
    "10.2.2", "10.3.1", "10.3.2", "10.3.3", "10.3.4", "10.4.1", "10.4.1.1", "10.5.1", "10.7.2",
    "11.3.1", "11.5.1", "11.5.2", "12.1.1", "12.3.1", "12.4.1", "12.5.1", "12.5.2", "12.8.1",
    "12.10.1",
];

/// EU AI Act paragraphs checked against Regulation (EU) 2024/1689 as
/// published (final numbering; the 2021 proposal's Article 61 is now 72).
const AI_ACT_KNOWN: &[&str] = &[
    "Article 9(1)",
    "Article 9(2)",
    "Article 11(1)",
    "Article 12(1)",
    "Article 12(2)",
    "Article 12(3)",
    "Article 13(1)",
    "Article 14(1)",
    "Article 14(2)",
    "Article 14(3)",
    "Article 14(4)",
    "Article 15(1)",
    "Article 15(4)",
    "Article 15(5)",
    "Article 17(1)",
    "Article 18(1)",
    "Article 19(1)",
    "Article 21(1)",
    "Article 26(1)",
    "Article 26(2)",
    "Article 26(5)",
    "Article 26(6)",
    "Article 72(1)",
    "Article 73(1)",
];

/// Checks one id against its framework's numbering.
pub fn check_id(framework: &str, id: &str) -> Result<(), String> {
    let dotted = |s: &str| -> Option<Vec<u32>> {
        s.split('.')
            .map(|p| {
                (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect()
    };
    match framework {
        "soc2" => {
            let n = id
                .strip_prefix("CC")
                .and_then(dotted)
                .ok_or("expected CCn.n")?;
            match n.as_slice() {
                [series, point] => SOC2_SERIES
                    .iter()
                    .any(|(s, max)| s == series && (1..=*max).contains(point))
                    .then_some(())
                    .ok_or_else(|| format!("CC{series}.{point} is not a common criterion")),
                _ => Err("expected CCn.n".into()),
            }
        }
        "nist-ai-rmf" => {
            let (func, rest) = id.split_once(' ').ok_or("expected FUNCTION n.n")?;
            let counts = NIST_SERIES
                .iter()
                .find(|(f, _)| *f == func)
                .map(|(_, c)| *c)
                .ok_or("function must be GOVERN, MAP, MEASURE or MANAGE")?;
            match dotted(rest).as_deref() {
                Some([cat, sub]) => counts
                    .get((*cat as usize).wrapping_sub(1))
                    .filter(|max| (1..=**max).contains(sub))
                    .map(|_| ())
                    .ok_or_else(|| format!("{func} {cat}.{sub} is not an AI RMF subcategory")),
                _ => Err("expected FUNCTION n.n".into()),
            }
        }
        "iso27001" => {
            let n = id
                .strip_prefix("A.")
                .and_then(dotted)
                .ok_or("expected A.n.n")?;
            match n.as_slice() {
                [theme, c] => ISO_SERIES
                    .iter()
                    .any(|(t, max)| t == theme && (1..=*max).contains(c))
                    .then_some(())
                    .ok_or_else(|| format!("A.{theme}.{c} is not an Annex A control")),
                _ => Err("expected A.n.n".into()),
            }
        }
        "hipaa" => {
            if !hipaa_shape(id) {
                return Err("expected 164.3xx(a)(1)(ii)(A) form".into());
            }
            HIPAA_KNOWN
                .contains(&id)
                .then_some(())
                .ok_or_else(|| "not in the list of checked Security Rule citations".into())
        }
        "pci" => {
            let n = dotted(id).ok_or("expected n.n.n")?;
            if !(3..=4).contains(&n.len()) || !n.first().is_some_and(|r| (1..=12).contains(r)) {
                return Err("expected requirement n.n.n with n in 1-12".into());
            }
            PCI_KNOWN
                .contains(&id)
                .then_some(())
                .ok_or_else(|| "not in the list of checked PCI DSS v4.0 requirements".into())
        }
        "eu-ai-act" => {
            let rest = id.strip_prefix("Article ").ok_or("expected Article n(m)")?;
            let (art, para) = rest.split_once('(').ok_or("expected Article n(m)")?;
            let art: u32 = art.parse().map_err(|_| "expected Article n(m)")?;
            let para = para.strip_suffix(')').ok_or("expected Article n(m)")?;
            if !(1..=113).contains(&art) || para.parse::<u32>().is_err() {
                return Err("the Act has Articles 1-113, paragraphs numbered".into());
            }
            AI_ACT_KNOWN
                .contains(&id)
                .then_some(())
                .ok_or_else(|| "not in the list of checked AI Act paragraphs".into())
        }
        other => Err(format!("unknown framework {other:?}")),
    }
}

/// `164.` + a Security Rule section + parenthesised levels: a lowercase
/// letter, then a number, then a roman numeral, then a capital letter.
fn hipaa_shape(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("164.") else {
        return false;
    };
    let Some((section, levels)) = rest.split_once('(') else {
        return false;
    };
    if !["308", "310", "312", "314", "316"].contains(&section) {
        return false;
    }
    let Some(levels) = levels.strip_suffix(')') else {
        return false;
    };
    let parts: Vec<&str> = levels.split(")(").collect();
    let ok = |i: usize, p: &str| match i {
        0 => p.len() == 1 && p.bytes().all(|b| b.is_ascii_lowercase()),
        1 => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
        2 => ["i", "ii", "iii", "iv", "v"].contains(&p),
        3 => p.len() == 1 && p.bytes().all(|b| b.is_ascii_uppercase()),
        _ => false,
    };
    parts.iter().enumerate().all(|(i, p)| ok(i, p))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    #[test]
    fn embedded_crosswalk_is_valid() {
        let c = Crosswalk::parse(CROSSWALK_YAML).unwrap();
        let errors = c.validate();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        assert!(c.controls.len() >= 6);
        // Every control maps to every framework (validate checks it; this
        // says it in the test's own words, from the parsed data).
        for ctl in &c.controls {
            for f in FRAMEWORKS {
                assert!(
                    c.controls_for(f).any(|x| x.id == ctl.id),
                    "{} not mapped to {f}",
                    ctl.id
                );
            }
        }
    }

    #[test]
    fn saved_queries_compile_and_run_against_a_real_store() {
        let c = Crosswalk::embedded().unwrap();
        let dir = std::env::temp_dir().join(format!("portcullis-crosswalk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store =
            audit_store::Store::open(&dir.join("a.db"), audit_store::Config::default()).unwrap();
        let now = audit_store::time::now_ms();
        for i in 0..20u64 {
            store
                .append(&audit_store::sample::record(
                    i,
                    "alice",
                    "search",
                    now - 1000,
                ))
                .unwrap();
        }
        for q in &c.queries {
            let (cols, _) = audit_store::evidence::run_query(
                store.connection(),
                &q.sql,
                now - 86_400_000,
                now + 1,
                |_, _| Ok(()),
            )
            .unwrap_or_else(|e| panic!("query {}: {e}", q.id));
            if q.kind == QueryKind::Records {
                assert_eq!(cols, ["seq", "record"], "query {}", q.id);
            }
        }
        let (_, n) = audit_store::evidence::run_query(
            store.connection(),
            &c.query("tool_call_records").unwrap().sql,
            now - 86_400_000,
            now + 1,
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(n, 20, "the sample records are all tools/call");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ids_are_held_to_their_numbering() {
        for (f, good) in [
            ("soc2", "CC6.8"),
            ("soc2", "CC8.1"),
            ("nist-ai-rmf", "MEASURE 2.13"),
            ("nist-ai-rmf", "GOVERN 1.7"),
            ("iso27001", "A.5.37"),
            ("iso27001", "A.8.34"),
            ("hipaa", "164.312(b)"),
            ("hipaa", "164.308(a)(1)(ii)(D)"),
            ("pci", "10.2.1.1"),
            ("eu-ai-act", "Article 12(1)"),
        ] {
            assert_eq!(check_id(f, good), Ok(()), "{f} {good}");
        }
        for (f, bad) in [
            ("soc2", "CC6.9"),
            ("soc2", "CC8.2"),
            ("soc2", "CC10.1"),
            ("nist-ai-rmf", "MEASURE 2.14"),
            ("nist-ai-rmf", "MANAGE 5.1"),
            ("nist-ai-rmf", "GOVERN 0.1"),
            ("iso27001", "A.5.38"),
            ("iso27001", "A.12.4.1"),
            ("hipaa", "164.312(f)"),
            ("hipaa", "164.502(b)"),
            ("pci", "13.1.1"),
            ("pci", "10"),
            ("eu-ai-act", "Article 61"),
            ("eu-ai-act", "Art 12"),
            ("eu-ai-act", "Article 200(1)"),
        ] {
            assert!(check_id(f, bad).is_err(), "{f} {bad} accepted");
        }
    }
}

//! Labelled evaluation of the content scanners: precision and recall per
//! entity type (PII and secrets) and per attack category (poisoning and
//! injection), printed, and checked against floors.
//!
//! The cases live in `tests/data/scan/` (`pii.json`, `poisoning.json`),
//! each with the source it comes from; `tests/data/scan/README.md` and
//! `docs/content-security.md` explain the set and why the floors are where
//! they are. Run with `--nocapture` to see the tables.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use portcullis_core::scan::injection::{DETECTOR_RULE, ScreenAction, Surface};
use portcullis_core::scan::{Scanner, Screen};
use serde_json::Value;
use std::collections::BTreeMap;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/scan/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Counts {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            f64::from(self.tp) / f64::from(self.tp + self.fp)
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            f64::from(self.tp) / f64::from(self.tp + self.fn_)
        }
    }
}

fn print_table(title: &str, rows: &BTreeMap<String, Counts>) -> Counts {
    println!("\n{title}");
    println!(
        "{:<26} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "", "tp", "fp", "fn", "precision", "recall"
    );
    let mut all = Counts::default();
    for (k, c) in rows {
        println!(
            "{:<26} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
            k,
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
        all.tp += c.tp;
        all.fp += c.fp;
        all.fn_ += c.fn_;
    }
    println!(
        "{:<26} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
        "ALL",
        all.tp,
        all.fp,
        all.fn_,
        all.precision(),
        all.recall()
    );
    all
}

/// Development-set floors, explained in docs/content-security.md
/// ("Evaluation"): the rules were tuned on this set, so these are regression
/// guards, not estimates of real-world performance.
const PII_MICRO_FLOOR: f64 = 0.95;
const PII_PER_ENTITY_FLOOR: f64 = 0.85;
const POISON_CASE_PRECISION_FLOOR: f64 = 0.95;
const POISON_CASE_RECALL_FLOOR: f64 = 0.95;
const POISON_CATEGORY_FLOOR: f64 = 0.75;
// Held-out floors: the level measured when the held-out set was frozen
// (PII 1.000 / 0.952; poisoning cases 1.000 / 0.833, categories 1.000 /
// 0.667), less a margin. The held-out set is never tuned against; a change
// that pushes it under these is a regression.
const HOLDOUT_PII_FLOOR: f64 = 0.90;
const HOLDOUT_POISON_CASE_PRECISION_FLOOR: f64 = 0.90;
const HOLDOUT_POISON_CASE_RECALL_FLOOR: f64 = 0.75;
const HOLDOUT_POISON_CATEGORY_FLOOR: f64 = 0.60;

fn eval_pii(file: &str) -> (BTreeMap<String, Counts>, Counts) {
    let scanner = Scanner::builtin().unwrap();
    let cases = load(file);
    let mut rows: BTreeMap<String, Counts> = BTreeMap::new();
    let mut misses = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        // Expected spans: each value located in the text, in order.
        let mut expected: Vec<(String, usize, usize, bool)> = Vec::new();
        let mut from = 0;
        for e in case["expect"].as_array().unwrap() {
            let (entity, value) = (e[0].as_str().unwrap(), e[1].as_str().unwrap());
            let at = text[from..]
                .find(value)
                .map(|i| i + from)
                .or_else(|| text.find(value));
            let at = at.unwrap_or_else(|| panic!("{id}: {value:?} not in text"));
            expected.push((entity.to_owned(), at, at + value.len(), false));
            from = at + value.len();
        }
        for f in scanner.scan_text(text) {
            let hit = expected
                .iter_mut()
                .find(|(e, s, t, used)| !*used && *e == f.entity && f.start < *t && *s < f.end);
            match hit {
                Some(h) => {
                    h.3 = true;
                    rows.entry(f.entity.clone()).or_default().tp += 1;
                }
                None => {
                    rows.entry(f.entity.clone()).or_default().fp += 1;
                    misses.push(format!("FP {id}: {} {:?}", f.entity, &text[f.start..f.end]));
                }
            }
        }
        for (entity, s, t, used) in &expected {
            if !used {
                rows.entry(entity.clone()).or_default().fn_ += 1;
                misses.push(format!("FN {id}: {entity} {:?}", &text[*s..*t]));
            }
        }
    }
    let all = print_table(
        &format!("PII and secrets, {file} ({} cases)", cases.len()),
        &rows,
    );
    for m in &misses {
        println!("  {m}");
    }
    (rows, all)
}

#[test]
fn pii_and_secrets_development_set() {
    let (rows, all) = eval_pii("pii.json");
    assert!(
        all.precision() >= PII_MICRO_FLOOR,
        "micro precision {:.3}",
        all.precision()
    );
    assert!(
        all.recall() >= PII_MICRO_FLOOR,
        "micro recall {:.3}",
        all.recall()
    );
    for (k, c) in &rows {
        assert!(
            c.precision() >= PII_PER_ENTITY_FLOOR,
            "{k} precision {:.3}",
            c.precision()
        );
        assert!(
            c.recall() >= PII_PER_ENTITY_FLOOR,
            "{k} recall {:.3}",
            c.recall()
        );
    }
}

#[test]
fn pii_and_secrets_held_out_set() {
    let (_, all) = eval_pii("holdout_pii.json");
    assert!(
        all.precision() >= HOLDOUT_PII_FLOOR,
        "micro precision {:.3}",
        all.precision()
    );
    assert!(
        all.recall() >= HOLDOUT_PII_FLOOR,
        "micro recall {:.3}",
        all.recall()
    );
}

fn surface(s: &str) -> Surface {
    match s {
        "toolDefinition" => Surface::ToolDefinition,
        "toolResult" => Surface::ToolResult,
        "prompt" => Surface::Prompt,
        other => panic!("surface {other}"),
    }
}

/// What the rules, the learned detector and both together did on a set:
/// case-level counts (a case is caught when a finding would act, or for the
/// model when its score reaches its surface's threshold).
#[derive(Default)]
struct Layers {
    rules: Counts,
    model: Counts,
    both: Counts,
    /// Benign tool definitions acted on, by the rules and by both.
    benign_tools_rules: u32,
    benign_tools_both: u32,
}

fn count(c: &mut Counts, predicted: bool, malicious: bool) {
    match (predicted, malicious) {
        (true, true) => c.tp += 1,
        (true, false) => c.fp += 1,
        (false, true) => c.fn_ += 1,
        (false, false) => {}
    }
}

fn eval_poisoning(file: &str) -> (BTreeMap<String, Counts>, Counts, Layers) {
    // Results named, so the model is measured on every surface (by default
    // it does not score tool results: docs/content-security.md).
    let spec: portcullis_core::scan::injection::InjectionSpec = serde_json::from_value(
        serde_json::json!({"detector": {"actions": {"toolResult": "flag"}}}),
    )
    .unwrap();
    let screen = Screen::compile(&spec).unwrap();
    let cases = load(file);
    let mut rows: BTreeMap<String, Counts> = BTreeMap::new();
    let mut case_level = Counts::default();
    let mut layers = Layers::default();
    let mut notes = Vec::new();
    let mut scores = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let surf = surface(case["surface"].as_str().unwrap());
        let findings = match case.get("tool") {
            Some(tool) => screen.check_tool(tool),
            None => screen.check_text(case["text"].as_str().unwrap(), surf),
        };
        // The learned detector is measured beside the rules, not inside
        // their per-category table: its findings say "injection", not which
        // category, and the rules' floors stay what they were.
        let model_hit = findings.iter().any(|f| f.rule_id == DETECTOR_RULE);
        let best = findings
            .iter()
            .filter_map(|f| f.score.map(|p| p.0))
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        let model_score = best.unwrap_or_else(|| {
            // Below threshold: the highest score of its texts, for the table.
            let texts: Vec<String> = match case.get("tool") {
                Some(tool) => [&tool["description"], &tool["title"]]
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                None => vec![case["text"].as_str().unwrap().to_owned()],
            };
            texts
                .iter()
                .filter_map(|t| screen.detector_score(t))
                .map(|s| f64::from(s.score))
                .fold(0.0, f64::max)
        });
        let labels_any = !case["labels"].as_array().unwrap().is_empty();
        scores.push((id.to_owned(), labels_any, model_score, model_hit));
        let rules_acting = findings
            .iter()
            .any(|f| f.rule_id != DETECTOR_RULE && f.action > ScreenAction::Flag);
        let both_acting = findings.iter().any(|f| f.action > ScreenAction::Flag);
        count(&mut layers.rules, rules_acting, labels_any);
        count(&mut layers.model, model_hit, labels_any);
        count(&mut layers.both, rules_acting || model_hit, labels_any);
        if !labels_any && surf == Surface::ToolDefinition {
            layers.benign_tools_rules += u32::from(rules_acting);
            layers.benign_tools_both += u32::from(both_acting);
        }
        // A category counts as detected when a finding of it would act
        // (drop, block or strip), not merely be flagged.
        let acting: Vec<_> = findings
            .iter()
            .filter(|f| f.action > ScreenAction::Flag && f.rule_id != DETECTOR_RULE)
            .collect();
        let mut predicted: Vec<&str> = acting.iter().map(|f| f.category.as_str()).collect();
        predicted.sort_unstable();
        predicted.dedup();
        let labels: Vec<&str> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        for cat in portcullis_core::scan::injection::Category::ALL.map(|c| c.as_str()) {
            let (p, l) = (predicted.contains(&cat), labels.contains(&cat));
            let row = rows.entry(cat.to_owned()).or_default();
            match (p, l) {
                (true, true) => row.tp += 1,
                (true, false) => {
                    row.fp += 1;
                    notes.push(format!("FP {id}: {cat}"));
                }
                (false, true) => {
                    row.fn_ += 1;
                    notes.push(format!("FN {id}: {cat}"));
                }
                (false, false) => {}
            }
        }
        match (!acting.is_empty(), !labels.is_empty()) {
            (true, true) => case_level.tp += 1,
            (true, false) => {
                case_level.fp += 1;
                let rules: Vec<&str> = acting.iter().map(|f| f.rule_id.as_str()).collect();
                notes.push(format!("BENIGN ACTED ON {id}: {rules:?}"));
            }
            (false, true) => {
                case_level.fn_ += 1;
                notes.push(format!("MISSED {id}"));
            }
            (false, false) => {}
        }
    }
    let malicious = cases
        .iter()
        .filter(|c| !c["labels"].as_array().unwrap().is_empty())
        .count();
    print_table(
        &format!(
            "Poisoning and injection per category, {file} ({} cases, {malicious} malicious)",
            cases.len()
        ),
        &rows,
    );
    println!(
        "\nCase level (malicious case acted on / benign case left alone): precision {:.3} recall {:.3} (tp {} fp {} fn {})",
        case_level.precision(),
        case_level.recall(),
        case_level.tp,
        case_level.fp,
        case_level.fn_
    );
    for n in &notes {
        println!("  {n}");
    }
    println!("\nLearned detector beside the rules, case level ({file}):");
    println!(
        "{:<10} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "", "tp", "fp", "fn", "precision", "recall"
    );
    for (name, c) in [
        ("rules", &layers.rules),
        ("model", &layers.model),
        ("both", &layers.both),
    ] {
        println!(
            "{:<10} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
            name,
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
    }
    println!(
        "benign tool definitions acted on: rules {}, rules and model {}",
        layers.benign_tools_rules, layers.benign_tools_both
    );
    println!("model scores (case, malicious, score, reported):");
    for (id, malicious, score, hit) in &scores {
        println!(
            "  {score:.3} {} {} {id}",
            if *malicious { "M" } else { "-" },
            if *hit { "reported" } else { "" }
        );
    }
    (rows, case_level, layers)
}

/// The learned detector may add catches, but not drop benign tools the
/// rules leave alone: precision on benign tool descriptions must not fall.
/// The ceiling is the number it adds today on each set, measured when the
/// model was exported (see detector/REPORT.md); a retrained model that adds
/// more fails here.
const MODEL_EXTRA_BENIGN_TOOLS_DEV: u32 = 0;
const MODEL_EXTRA_BENIGN_TOOLS_HOLDOUT: u32 = 0;

#[test]
fn poisoning_development_set() {
    let (rows, case_level, layers) = eval_poisoning("poisoning.json");
    assert!(
        layers.benign_tools_both <= layers.benign_tools_rules + MODEL_EXTRA_BENIGN_TOOLS_DEV,
        "the model drops benign tool definitions the rules keep: {} vs {}",
        layers.benign_tools_both,
        layers.benign_tools_rules
    );
    assert!(layers.both.recall() >= layers.rules.recall());
    assert!(
        case_level.precision() >= POISON_CASE_PRECISION_FLOOR,
        "case precision"
    );
    assert!(
        case_level.recall() >= POISON_CASE_RECALL_FLOOR,
        "case recall"
    );
    for (k, c) in &rows {
        assert!(
            c.precision() >= POISON_CATEGORY_FLOOR,
            "{k} precision {:.3}",
            c.precision()
        );
        assert!(
            c.recall() >= POISON_CATEGORY_FLOOR,
            "{k} recall {:.3}",
            c.recall()
        );
    }
}

#[test]
fn poisoning_held_out_set() {
    let (rows, case_level, layers) = eval_poisoning("holdout_poisoning.json");
    assert!(
        layers.benign_tools_both <= layers.benign_tools_rules + MODEL_EXTRA_BENIGN_TOOLS_HOLDOUT,
        "the model drops benign tool definitions the rules keep: {} vs {}",
        layers.benign_tools_both,
        layers.benign_tools_rules
    );
    assert!(layers.both.recall() >= layers.rules.recall());
    assert!(
        case_level.precision() >= HOLDOUT_POISON_CASE_PRECISION_FLOOR,
        "case precision {:.3}",
        case_level.precision()
    );
    assert!(
        case_level.recall() >= HOLDOUT_POISON_CASE_RECALL_FLOOR,
        "case recall {:.3}",
        case_level.recall()
    );
    let all = rows.values().fold(Counts::default(), |a, c| Counts {
        tp: a.tp + c.tp,
        fp: a.fp + c.fp,
        fn_: a.fn_ + c.fn_,
    });
    assert!(
        all.precision() >= HOLDOUT_POISON_CATEGORY_FLOOR,
        "category micro precision {:.3}",
        all.precision()
    );
    assert!(
        all.recall() >= HOLDOUT_POISON_CATEGORY_FLOOR,
        "category micro recall {:.3}",
        all.recall()
    );
}

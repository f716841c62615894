//! `cargo xtask wasm-size [FILE]`: where the filter's bytes go.
//!
//! Issue 17 asks for a smaller module and to measure what each dependency
//! costs first. This reads the module's sections and its `name` section,
//! and adds up the code bytes of every function by the crate its (mangled)
//! name starts in: for a trait impl `<T as Trait>::f`, the crate of `T`.
//! Without FILE it builds the filter as shipped (`--profile wasm`).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use wasmparser::{Name, Parser, Payload};

pub fn report(module: &[u8]) -> Result<String> {
    let mut sections: Vec<(String, usize)> = Vec::new();
    let mut bodies: Vec<usize> = Vec::new();
    let mut imported_functions = 0u32;
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload.context("the module does not parse")? {
            Payload::TypeSection(s) => sections.push(("type".into(), span(s.range()))),
            Payload::ImportSection(s) => {
                sections.push(("import".into(), span(s.range())));
                for import in s.into_imports() {
                    if matches!(import?.ty, wasmparser::TypeRef::Func(_)) {
                        imported_functions += 1;
                    }
                }
            }
            Payload::FunctionSection(s) => sections.push(("function".into(), span(s.range()))),
            Payload::ExportSection(s) => sections.push(("export".into(), span(s.range()))),
            Payload::ElementSection(s) => sections.push(("element".into(), span(s.range()))),
            Payload::DataSection(s) => sections.push(("data".into(), span(s.range()))),
            Payload::CodeSectionStart { size, .. } => sections.push(("code".into(), size as usize)),
            Payload::CodeSectionEntry(body) => bodies.push(span(body.range())),
            Payload::CustomSection(c) => {
                sections.push((format!("custom:{}", c.name()), c.data().len()));
                if let wasmparser::KnownCustom::Name(reader) = c.as_known() {
                    for name in reader {
                        if let Name::Function(map) = name? {
                            for naming in map {
                                let naming = naming?;
                                names.insert(naming.index, naming.name.to_owned());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut by_crate: BTreeMap<String, usize> = BTreeMap::new();
    for (i, size) in bodies.iter().enumerate() {
        let index = imported_functions + i as u32;
        let krate = names
            .get(&index)
            .map(|n| crate_of(n))
            .unwrap_or_else(|| "(unnamed)".into());
        *by_crate.entry(krate).or_default() += size;
    }
    let total = module.len();
    let code: usize = bodies.iter().sum();
    let mut out =
        format!("module: {total} bytes\n\nsection                          bytes      share\n");
    for (name, size) in &sections {
        out.push_str(&format!(
            "{name:<28} {size:>10} {:>9.1}%\n",
            100.0 * *size as f64 / total as f64
        ));
    }
    let mut crates: Vec<(String, usize)> = by_crate.into_iter().collect();
    crates.sort_by_key(|c| std::cmp::Reverse(c.1));
    out.push_str(&format!(
        "\ncode by crate ({} functions, {code} bytes)     bytes  of code\n",
        bodies.len()
    ));
    for (krate, size) in crates.iter().take(30) {
        out.push_str(&format!(
            "{krate:<28} {size:>10} {:>9.1}%\n",
            100.0 * *size as f64 / code.max(1) as f64
        ));
    }
    Ok(out)
}

fn span(range: std::ops::Range<u64>) -> usize {
    usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX)
}

/// The crate a function's name starts in.
fn crate_of(name: &str) -> String {
    let demangled = format!("{:#}", rustc_demangle::demangle(name));
    let trimmed = demangled.trim_start_matches(['<', '&', '*', ' ']);
    let trimmed = trimmed
        .strip_prefix("mut ")
        .or_else(|| trimmed.strip_prefix("dyn "))
        .or_else(|| trimmed.strip_prefix("impl "))
        .unwrap_or(trimmed);
    let head: String = trimmed
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if head.is_empty() || !trimmed[head.len()..].starts_with("::") {
        return "(other)".into();
    }
    head
}

pub fn run(root: &Path, file: Option<&str>) -> Result<()> {
    let module = match file {
        Some(f) => std::fs::read(f).with_context(|| format!("cannot read {f}"))?,
        None => {
            crate::run(crate::cargo().current_dir(root).args([
                "build",
                "-p",
                "portcullis-filter",
                "--target",
                "wasm32-wasip1",
                "--profile",
                "wasm",
            ]))?;
            let path = crate::target_dir(root).join("wasm32-wasip1/wasm/portcullis_filter.wasm");
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
    };
    print!("{}", report(&module)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn crates_of_mangled_names() {
        assert_eq!(
            crate_of("_ZN10jsonschema8keywords3ref7compile17h0123456789abcdefE"),
            "jsonschema"
        );
        assert_eq!(
            // A trait impl counts for the crate of its Self type (a name
            // taken from the filter).
            crate_of(
                "_ZN89_$LT$serde_path_to_error..de..MapAccess$LT$X$GT$$u20$as$u20$serde_core..de..MapAccess$GT$13next_key_seed17h7980186c4bc418f3E"
            ),
            "serde_path_to_error"
        );
        assert_eq!(crate_of("main"), "(other)");
    }

    #[test]
    fn a_module_with_named_functions_is_reported_by_crate() {
        let wasm = wat::parse_str(
            r#"(module
                 (func $_ZN4core3fmt5write17h0123456789abcdefE (result i32) (i32.const 1))
                 (func $_ZN5hello5world17h0123456789abcdefE (result i32) (i32.add (i32.const 1) (i32.const 2))))"#,
        )
        .unwrap();
        let report = report(&wasm).unwrap();
        assert!(report.contains("custom:name"), "{report}");
        assert!(report.contains("\ncore "), "{report}");
        assert!(report.contains("\nhello "), "{report}");
    }
}

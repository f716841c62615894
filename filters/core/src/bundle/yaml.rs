//! Bundle directories of YAML documents, read with a line for every field.
//!
//! A reviewer fixes a bundle in its YAML, so every error must point at a file
//! and a line there. serde's YAML deserialisers report only syntax errors
//! with positions, so this module walks yaml-rust2's marked event stream
//! itself, building each document's JSON value and, beside it, the line of
//! every JSON pointer. Errors found later (by [`Bundle::compile`]) carry a
//! pointer, which the map turns back into a line.
//!
//! The YAML accepted is deliberately plain: the YAML 1.2 core schema, no
//! anchors or aliases (they make one edit change many places, and alias
//! bombs are a denial of service), no custom tags, and no duplicate keys.

use super::{Bundle, BundleError, BundleJson, Document, Source, assemble, from_value_at};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One parsed YAML document with the line of each of its fields.
#[derive(Debug, Clone)]
pub struct LocatedDocument {
    pub file: String,
    pub line: usize,
    pub value: Value,
    pub lines: HashMap<String, usize>,
}

impl LocatedDocument {
    /// The line of `pointer`, or of its nearest located parent.
    pub fn line_of(&self, pointer: &str) -> usize {
        let mut p = pointer.to_string();
        loop {
            if let Some(l) = self.lines.get(&p) {
                return *l;
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => return self.line,
            }
        }
    }
}

/// Reads every `*.yaml` / `*.yml` file under `dir` (recursively, in path
/// order) and compiles them into a bundle. All errors are returned, each with
/// its file and line.
pub fn load_dir(dir: &Path) -> Result<BundleJson, Vec<BundleError>> {
    let mut files = Vec::new();
    collect_files(dir, &mut files).map_err(|e| {
        vec![BundleError {
            file: Some(dir.display().to_string()),
            line: None,
            document: None,
            pointer: String::new(),
            message: format!("cannot read bundle directory: {e}"),
        }]
    })?;
    files.sort();
    if files.is_empty() {
        return Err(vec![BundleError {
            file: Some(dir.display().to_string()),
            line: None,
            document: None,
            pointer: String::new(),
            message: "no .yaml or .yml files found; a bundle directory holds McpServer and Settings documents".into(),
        }]);
    }
    let mut sources = Vec::new();
    for path in &files {
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![BundleError {
                file: Some(shown.clone()),
                line: None,
                document: None,
                pointer: String::new(),
                message: format!("cannot read file: {e}"),
            }]
        })?;
        sources.push((shown, text));
    }
    load_sources(&sources)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Compiles `(file name, YAML text)` pairs into a bundle.
pub fn load_sources(sources: &[(String, String)]) -> Result<BundleJson, Vec<BundleError>> {
    let mut errors = Vec::new();
    let mut located = Vec::new();
    for (file, text) in sources {
        match parse_documents(file, text) {
            Ok(mut docs) => located.append(&mut docs),
            Err(e) => errors.push(e),
        }
    }
    let mut documents = Vec::new();
    for doc in &located {
        match from_value_at::<Document>(doc.value.clone(), "") {
            Ok(mut d) => {
                d.source = Some(Source {
                    file: doc.file.clone(),
                    line: doc.line,
                });
                documents.push(d);
            }
            Err((pointer, message)) => errors.push(BundleError {
                file: Some(doc.file.clone()),
                line: Some(doc.line_of(&pointer)),
                document: doc_label(&doc.value),
                pointer,
                message: format!(
                    "{message} (a document has apiVersion, kind, metadata.name and spec)"
                ),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let bundle = assemble(documents);
    if let Err(errs) = Bundle::compile(&bundle) {
        return Err(errs
            .into_iter()
            .map(|mut e| {
                // Refine the document's line to the offending field's.
                if let (Some(file), Some(label)) = (&e.file, &e.document)
                    && let Some(doc) = located
                        .iter()
                        .find(|d| &d.file == file && doc_label(&d.value).as_ref() == Some(label))
                {
                    e.line = Some(doc.line_of(&e.pointer));
                }
                e
            })
            .collect());
    }
    Ok(bundle)
}

fn doc_label(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let name = value.pointer("/metadata/name")?.as_str()?;
    Some(format!("{kind}/{name}"))
}

/// Parses one file's documents.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<LocatedDocument>, BundleError> {
    let mut builder = Builder {
        file: file.to_string(),
        stack: Vec::new(),
        docs: Vec::new(),
        error: None,
        doc_line: 1,
        lines: HashMap::new(),
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(BundleError {
            file: Some(file.into()),
            line: Some(e.marker().line()),
            document: None,
            pointer: String::new(),
            message: format!("YAML syntax error: {}", e.info()),
        });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.docs)
}

enum Frame {
    Seq {
        items: Vec<Value>,
        pointer: String,
    },
    Map {
        map: Map<String, Value>,
        pointer: String,
        pending_key: Option<String>,
    },
}

struct Builder {
    file: String,
    stack: Vec<Frame>,
    docs: Vec<LocatedDocument>,
    error: Option<BundleError>,
    doc_line: usize,
    lines: HashMap<String, usize>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(BundleError {
                file: Some(self.file.clone()),
                line: Some(mark.line()),
                document: None,
                pointer: String::new(),
                message,
            });
        }
    }

    /// The pointer the next value will have, or `None` when the next scalar
    /// is a mapping key.
    fn next_pointer(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, pointer }) => Some(format!("{pointer}/{}", items.len())),
            Some(Frame::Map {
                pointer,
                pending_key: Some(k),
                ..
            }) => Some(format!(
                "{pointer}/{}",
                k.replace('~', "~0").replace('/', "~1")
            )),
            Some(Frame::Map {
                pending_key: None, ..
            }) => None,
        }
    }

    fn push_value(&mut self, value: Value, mark: Marker) {
        match self.stack.last_mut() {
            None => {
                let lines = std::mem::take(&mut self.lines);
                self.docs.push(LocatedDocument {
                    file: self.file.clone(),
                    line: self.doc_line,
                    value,
                    lines,
                });
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map, pending_key, ..
            }) => {
                if let Some(k) = pending_key.take() {
                    map.insert(k, value);
                } else {
                    self.fail(mark, "internal: value without a key".into());
                }
            }
        }
    }

    fn refuse_tag(&mut self, tag: &Option<Tag>, mark: Marker) -> bool {
        match tag {
            None => false,
            Some(t) if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" => false,
            Some(t) => {
                self.fail(
                    mark,
                    format!(
                        "YAML tag {}{} is not supported in bundles; remove it",
                        t.handle, t.suffix
                    ),
                );
                true
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.doc_line = mark.line();
                self.lines.clear();
            }
            Event::Alias(_) => self.fail(
                mark,
                "YAML aliases (*name) are not supported in bundles; write the value out".into(),
            ),
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    self.fail(
                        mark,
                        "YAML anchors (&name) are not supported in bundles".into(),
                    );
                    return;
                }
                if self.refuse_tag(&tag, mark) {
                    return;
                }
                match self.next_pointer() {
                    None => {
                        // A mapping key.
                        if let Some(Frame::Map {
                            map,
                            pending_key,
                            pointer,
                        }) = self.stack.last_mut()
                        {
                            if map.contains_key(&text) {
                                let msg = format!(
                                    "duplicate key {text:?}; each key may appear once in a mapping"
                                );
                                self.fail(mark, msg);
                                return;
                            }
                            let key_pointer =
                                format!("{pointer}/{}", text.replace('~', "~0").replace('/', "~1"));
                            self.lines.insert(key_pointer, mark.line());
                            *pending_key = Some(text);
                        }
                    }
                    Some(pointer) => {
                        self.lines.entry(pointer).or_insert(mark.line());
                        let value = scalar_value(text, style, tag.as_ref());
                        self.push_value(value, mark);
                    }
                }
            }
            ev @ (Event::SequenceStart(..) | Event::MappingStart(..)) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                let (Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)) = ev
                else {
                    return;
                };
                if anchor != 0 {
                    self.fail(
                        mark,
                        "YAML anchors (&name) are not supported in bundles".into(),
                    );
                    return;
                }
                if self.refuse_tag(&tag, mark) {
                    return;
                }
                let Some(pointer) = self.next_pointer() else {
                    self.fail(
                        mark,
                        "mapping keys must be plain scalars, not collections".into(),
                    );
                    return;
                };
                self.lines.entry(pointer.clone()).or_insert(mark.line());
                self.stack.push(if is_seq {
                    Frame::Seq {
                        items: Vec::new(),
                        pointer,
                    }
                } else {
                    Frame::Map {
                        map: Map::new(),
                        pointer,
                        pending_key: None,
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let value = match self.stack.pop() {
                    Some(Frame::Seq { items, .. }) => Value::Array(items),
                    Some(Frame::Map { map, .. }) => Value::Object(map),
                    None => {
                        self.fail(mark, "internal: unbalanced YAML collection".into());
                        return;
                    }
                };
                self.push_value(value, mark);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema for plain scalars; quoted ones are always strings.
fn scalar_value(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(t) = tag
        && t.suffix == "str"
    {
        return Value::String(text);
    }
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::from(i);
    }
    let looks_float = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_float && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const GOOD: &str = "apiVersion: portcullis.dev/v1alpha1
kind: McpServer
metadata: {name: everything}
spec:
  match: {pathPrefix: /mcp}
  tools:
    - name: echo
    - name: \"get-*\"
";

    #[test]
    fn loads_the_documented_shape() {
        let b = load_sources(&src(&[("servers.yaml", GOOD)])).unwrap();
        assert_eq!(b.documents.len(), 1);
        assert_eq!(b.documents[0].spec["tools"][1]["name"], "get-*");
        assert_eq!(b.documents[0].source.as_ref().unwrap().line, 1);
        assert!(b.version.starts_with("sha256:"));
    }

    #[test]
    fn multi_document_files_keep_their_own_lines() {
        let text = format!(
            "{GOOD}---\napiVersion: portcullis.dev/v1alpha1\nkind: Settings\nmetadata: {{name: default}}\nspec: {{maxRequestBytes: 2048}}\n"
        );
        let b = load_sources(&src(&[("all.yaml", &text)])).unwrap();
        assert_eq!(b.documents[1].source.as_ref().unwrap().line, 9);
    }

    #[test]
    fn field_errors_point_at_the_field_line() {
        let bad = GOOD.replace("- name: \"get-*\"", "- name: \"get-\\\\\"");
        let errs = load_sources(&src(&[("servers.yaml", &bad)])).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(8), "{}", errs[0]);
        assert!(
            errs[0]
                .to_string()
                .starts_with("servers.yaml:8: McpServer/everything: spec.tools[1].name:")
        );

        let typo = GOOD.replace("  tools:", "  toolz:");
        let errs = load_sources(&src(&[("s.yaml", &typo)])).unwrap_err();
        assert_eq!(errs[0].line, Some(6), "{}", errs[0]);
        assert!(errs[0].message.contains("unknown field `toolz`"));
    }

    #[test]
    fn syntax_errors_duplicates_aliases_and_missing_fields() {
        let errs = load_sources(&src(&[("a.yaml", "kind: [unclosed\n")])).unwrap_err();
        assert_eq!(errs[0].file.as_deref(), Some("a.yaml"));
        assert!(errs[0].message.contains("YAML syntax error"));

        let dup = GOOD.replace("kind: McpServer\n", "kind: McpServer\nkind: Settings\n");
        let errs = load_sources(&src(&[("d.yaml", &dup)])).unwrap_err();
        assert_eq!(errs[0].line, Some(3));
        assert!(errs[0].message.contains("duplicate key \"kind\""));

        let alias = "a: &x 1\nb: *x\n";
        let errs = load_sources(&src(&[("x.yaml", alias)])).unwrap_err();
        assert!(errs[0].message.contains("anchors"));

        let errs = load_sources(&src(&[(
            "m.yaml",
            "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nspec: {}\n",
        )]))
        .unwrap_err();
        assert!(
            errs[0].message.contains("missing field `metadata`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let docs = parse_documents(
            "s.yaml",
            "a: 12\nb: '12'\nc: true\nd: ~\ne: 1.5\nf: get-*\n",
        )
        .unwrap();
        let v = &docs[0].value;
        assert_eq!(v["a"], 12);
        assert_eq!(v["b"], "12");
        assert_eq!(v["c"], true);
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], 1.5);
        assert_eq!(v["f"], "get-*");
    }
}

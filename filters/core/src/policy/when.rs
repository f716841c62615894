//! What a `when` expression reads, and JSON turned into CEL values only as
//! deep as it is read.
//!
//! Shaped by where a CEL decision spent its time: building the attribute
//! roots as `cel::Value`s (every argument and claim copied into `Arc`s),
//! then `cel::Context::add_variable` copying that tree once more into the
//! interpreter's `Val`s. So at configure time [`reads`] walks the compiled
//! expression for the member paths it reads from each root (`args.city`,
//! `subject.tenant`, `headers['x-team']`, `'x-block' in headers`), and per
//! call the roots are built straight as `Val`s, borrowing the call's
//! strings, holding only those paths.
//!
//! Exactness is by construction, not by guessing types: a value is built
//! partly only where every use of it in the expression is a constant field
//! or key lookup (a select, `has()`, `[<string literal>]`, `<string
//! literal> in`), and a partial map holds a looked-up key exactly when the
//! whole map does, with the same value below it. Anything else (a root or
//! member passed to a function, `size()`, a comprehension's range, a
//! computed index, an equality) reads the whole value there, and a value
//! that turns out not to be a map at run time is built whole too. So each
//! lookup an evaluation makes finds what it would have found in the whole
//! attribute set, and a missing attribute errors (fails closed) as before.
//! Names a comprehension binds may shadow a root; they are counted as reads
//! of it all the same (more is built, never less).

use cel::common::ast::operators::{IN, INDEX};
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How much of a value an expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// All of it.
    All,
    /// Only these keys, each as deep as its own need; a value that is not a
    /// map is built whole.
    Fields(BTreeMap<String, Need>),
}

/// [`Need::All`], to lend where a field of a wholly read value is built.
pub static ALL: Need = Need::All;

impl Need {
    fn add(&mut self, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else {
            *self = Need::All;
            return;
        };
        if let Need::Fields(fields) = self {
            fields
                .entry((*first).to_owned())
                .or_insert_with(|| Need::Fields(BTreeMap::new()))
                .add(rest);
        }
    }

    /// What is read of the field `name`, or `None` when nothing is.
    pub fn field(&self, name: &str) -> Option<&Need> {
        match self {
            Need::All => Some(&ALL),
            Need::Fields(fields) => fields.get(name),
        }
    }
}

/// What an expression reads: each identifier it names, with how much of it
/// (comprehension variables included), and the identifiers free in it
/// (named outside any comprehension binding them), which must be
/// attributes.
#[derive(Debug, Default)]
pub struct Reads {
    pub names: BTreeMap<String, Need>,
    pub free: BTreeSet<String>,
}

/// What `expr` reads.
pub fn reads(expr: &IdedExpr) -> Reads {
    let mut out = Reads::default();
    walk(expr, &mut Vec::new(), &mut out);
    out
}

/// The identifier a chain of constant lookups starts from, its segments
/// pushed onto `segments` outermost first.
fn path<'e>(expr: &'e IdedExpr, segments: &mut Vec<&'e str>) -> Option<&'e str> {
    match &expr.expr {
        Expr::Ident(name) => Some(name),
        Expr::Select(select) if !select.test => {
            segments.push(&select.field);
            path(&select.operand, segments)
        }
        Expr::Call(call) if call.func_name == INDEX && call.target.is_none() => {
            match call.args.as_slice() {
                [operand, key] => {
                    segments.push(string_literal(key)?);
                    path(operand, segments)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn string_literal(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// Records a read of `root` at `segments` (outermost first), or, when
/// `expr` is no chain of constant lookups, walks it; `extra` is one more
/// segment read below the chain (`has()`'s field, `in`'s key).
fn read<'e>(expr: &'e IdedExpr, extra: Option<&'e str>, bound: &mut Vec<&'e str>, out: &mut Reads) {
    let mut segments: Vec<&str> = extra.into_iter().collect();
    match path(expr, &mut segments) {
        Some(root) => {
            segments.reverse();
            if !root.starts_with('@') && !bound.contains(&root) {
                out.free.insert(root.to_owned());
            }
            out.names
                .entry(root.to_owned())
                .or_insert_with(|| Need::Fields(BTreeMap::new()))
                .add(&segments);
        }
        None => walk_parts(expr, bound, out),
    }
}

fn walk<'e>(expr: &'e IdedExpr, bound: &mut Vec<&'e str>, out: &mut Reads) {
    read(expr, None, bound, out);
}

/// The sub-expressions of an expression that is no lookup chain.
fn walk_parts<'e>(expr: &'e IdedExpr, bound: &mut Vec<&'e str>, out: &mut Reads) {
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        // An identifier is a chain `read` took; kept for completeness.
        Expr::Ident(_) => read(expr, None, bound, out),
        Expr::Select(select) => {
            if select.test {
                // has(x.f): whether x has f.
                read(&select.operand, Some(&select.field), bound, out);
            } else {
                walk(&select.operand, bound, out);
            }
        }
        Expr::Call(call) => {
            if let (IN, None, [key, container]) =
                (call.func_name.as_str(), &call.target, call.args.as_slice())
                && let Some(key) = string_literal(key)
            {
                // 'k' in m: whether m has k (or, m a list, whether it holds
                // 'k': a list is built whole).
                read(container, Some(key), bound, out);
                return;
            }
            if let Some(target) = &call.target {
                walk(target, bound, out);
            }
            for arg in &call.args {
                walk(arg, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, out);
            walk(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(&c.iter_var);
            if let Some(v) = &c.iter_var2 {
                bound.push(v);
            }
            bound.push(&c.accu_var);
            walk(&c.loop_cond, bound, out);
            walk(&c.loop_step, bound, out);
            walk(&c.result, bound, out);
            bound.truncate(depth);
        }
        Expr::List(list) => {
            for e in &list.elements {
                walk(e, bound, out);
            }
        }
        Expr::Map(map) => entries(&map.entries, bound, out),
        Expr::Struct(s) => entries(&s.entries, bound, out),
    }
}

fn entries<'e>(
    entries: &'e [cel::common::ast::IdedEntryExpr],
    bound: &mut Vec<&'e str>,
    out: &mut Reads,
) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::StructField(f) => walk(&f.value, bound, out),
            EntryExpr::MapEntry(m) => {
                walk(&m.key, bound, out);
                walk(&m.value, bound, out);
            }
        }
    }
}

/// A JSON value as CEL sees it, as much of it as `need` reads, borrowing
/// its strings. Integers are CEL `int` (not `uint`, which is what serde
/// would give every non-negative number), so `args.n % 2 == 1` and
/// `args.n > 3` mean what they say with int literals.
pub fn json<'v>(value: &'v Value, need: &Need) -> Box<dyn Val + 'v> {
    match (value, need) {
        (Value::Object(map), _) => object(map, need),
        (Value::Null, _) => Box::new(CelNull),
        (Value::Bool(b), _) => Box::new(CelBool::from(*b)),
        (Value::Number(n), _) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        (Value::String(s), _) => Box::new(CelString::from(s.as_str())),
        (Value::Array(items), _) => Box::new(CelList::from(
            items.iter().map(|i| json(i, &ALL)).collect::<Vec<_>>(),
        )),
    }
}

/// A JSON object as a CEL map, with only the keys `need` reads.
pub fn object<'v>(map: &'v Map<String, Value>, need: &Need) -> Box<dyn Val + 'v> {
    let entries: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = match need {
        Need::All => map
            .iter()
            .map(|(k, v)| (CelMapKey::from(k.as_str()), json(v, &ALL)))
            .collect(),
        Need::Fields(fields) => fields
            .iter()
            .filter_map(|(k, sub)| {
                let (k, v) = map.get_key_value(k)?;
                Some((CelMapKey::from(k.as_str()), json(v, sub)))
            })
            .collect(),
    };
    Box::new(CelMap::from(entries))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn need(expr: &str) -> BTreeMap<String, Need> {
        reads(cel::Program::compile(expr).unwrap().expression()).names
    }

    fn fields<const N: usize>(f: [(&str, Need); N]) -> Need {
        Need::Fields(f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    #[test]
    fn constant_lookups_are_paths_and_everything_else_reads_all() {
        assert_eq!(
            need("args.a.b == 1 && args['c'] > 2 && has(args.d.e) && 'f' in args.g"),
            BTreeMap::from([(
                "args".to_owned(),
                fields([
                    ("a", fields([("b", Need::All)])),
                    ("c", Need::All),
                    ("d", fields([("e", Need::All)])),
                    ("g", fields([("f", Need::All)])),
                ])
            )])
        );
        // A shorter path reads all below it.
        assert_eq!(
            need("args.a.b == 1 && args.a == {}")["args"],
            fields([("a", Need::All)])
        );
        for whole in [
            "size(args) > 0",
            "args.size() > 0",
            "args == {}",
            "args.exists(k, k == 'x')",
            "args[request.tool] == 1",
            "args[1] == 1",
            "dyn(args).x == 1",
            "[args][0].x == 1",
            "{'a': args}.a.x == 1",
            "1 in args",
        ] {
            assert_eq!(need(whole)["args"], Need::All, "{whole}");
        }
        // A computed index reads all of what it indexes, and what it
        // indexes with.
        let n = need("args.a[subject.id] == 1");
        assert_eq!(n["args"], fields([("a", Need::All)]));
        assert_eq!(n["subject"], fields([("id", Need::All)]));
        assert_eq!(
            need("args.a.map(x, x.y).size() > 0")["args"],
            fields([("a", Need::All)])
        );
    }

    #[test]
    fn comprehension_variables_are_bound_not_free() {
        let r = reads(
            cel::Program::compile("args.l.exists(x, x.n > 1) && args.m.all(k, args.m[k] != k)")
                .unwrap()
                .expression(),
        );
        assert!(r.free.iter().eq(["args"]), "{:?}", r.free);
        let r = reads(
            cel::Program::compile("[1].exists(x, x > 0) && x == 1")
                .unwrap()
                .expression(),
        );
        assert!(r.free.contains("x"), "used outside its comprehension");
        // A variable shadowing a root still counts as reading it.
        assert_eq!(
            need("[{}].exists(args, has(args.z)) && args.a == 1")["args"],
            fields([("a", Need::All), ("z", Need::All)])
        );
    }

    #[test]
    fn json_is_built_as_deep_as_read() {
        let v = serde_json::json!({"a": {"b": 1, "c": [1, {"d": "x"}]}, "e": "s", "f": null});
        let as_value = |val: Box<dyn Val + '_>| cel::Value::try_from(val.as_ref()).unwrap();
        let want = |j: serde_json::Value| cel::Value::try_from(json(&j, &ALL).as_ref()).unwrap();
        assert_eq!(
            as_value(json(&v, &fields([("a", fields([("c", Need::All)]))]))),
            want(serde_json::json!({"a": {"c": [1, {"d": "x"}]}}))
        );
        // Missing keys stay missing; a non-map is built whole.
        assert_eq!(
            as_value(json(
                &v,
                &fields([("zz", Need::All), ("e", fields([("q", Need::All)]))])
            )),
            want(serde_json::json!({"e": "s"}))
        );
        assert_eq!(
            as_value(json(&serde_json::json!([1]), &fields([("a", Need::All)]))),
            want(serde_json::json!([1]))
        );
    }
}

//! Per-tool scopes: what a token must grant for a given MCP call.
//!
//! A server declares scopes three ways, all additive (every listed scope is
//! required): `required` for every request; `methods` per JSON-RPC method
//! (`tools/list: [mcp:read]`); and, for `tools/call`, `tools` per tool name,
//! falling back to `toolDefault`, a list of patterns where `{tool}` stands
//! for the tool's name (`tools:{tool}`). A per-tool entry replaces the
//! default for that tool, so a dangerous tool can demand `admin` without
//! also needing a `tools:` scope nobody issues.
//!
//! Scope strings are checked against RFC 6749's scope-token grammar at
//! configure time. A tool name comes from the request, so a name that would
//! make an invalid scope (spaces, quotes) simply yields a requirement no
//! token can meet: refused, never widened.

use super::SpecError;
use super::error::IdentityError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `scopes` field of a server's identity settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopesSpec {
    /// Scopes every request needs.
    #[serde(default)]
    pub required: Vec<String>,
    /// Extra scopes per JSON-RPC method.
    #[serde(default)]
    pub methods: BTreeMap<String, Vec<String>>,
    /// Scopes a `tools/call` needs when its tool has no entry in `tools`;
    /// `{tool}` is replaced by the tool name.
    #[serde(default)]
    pub tool_default: Vec<String>,
    /// Scopes per tool name (exact), replacing `toolDefault`.
    #[serde(default)]
    pub tools: BTreeMap<String, Vec<String>>,
}

/// Compiled [`ScopesSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopePolicy {
    spec: ScopesSpec,
}

/// `granted == pattern.replace("{tool}", tool)`, without the new string.
fn equals_substituted(granted: &str, pattern: &str, tool: &str) -> bool {
    let mut parts = pattern.split("{tool}");
    let Some(mut rest) = parts.next().and_then(|first| granted.strip_prefix(first)) else {
        return false;
    };
    for part in parts {
        match rest.strip_prefix(tool).and_then(|r| r.strip_prefix(part)) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// RFC 6749 §3.3 scope-token: `%x21 / %x23-5B / %x5D-7E`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn check_list(list: &[String], at: &str, placeholder: bool, errors: &mut Vec<SpecError>) {
    for (i, s) in list.iter().enumerate() {
        let bare = if placeholder {
            s.replace("{tool}", "x")
        } else {
            s.clone()
        };
        if !is_scope_token(&bare) || (!placeholder && s.contains("{tool}")) {
            errors.push((
                format!("{at}/{i}"),
                if s.contains("{tool}") && !placeholder {
                    "{tool} is only meaningful in toolDefault and tools".into()
                } else {
                    "not a valid OAuth scope (no spaces, quotes or backslashes)".into()
                },
            ));
        }
    }
}

impl ScopePolicy {
    pub fn compile(spec: &ScopesSpec, at: &str) -> Result<ScopePolicy, Vec<SpecError>> {
        let mut errors = Vec::new();
        check_list(
            &spec.required,
            &format!("{at}/required"),
            false,
            &mut errors,
        );
        for (m, list) in &spec.methods {
            let p = format!("{at}/methods/{}", super::pointer_segment(m));
            check_list(list, &p, false, &mut errors);
        }
        check_list(
            &spec.tool_default,
            &format!("{at}/toolDefault"),
            true,
            &mut errors,
        );
        for (t, list) in &spec.tools {
            let p = format!("{at}/tools/{}", super::pointer_segment(t));
            check_list(list, &p, true, &mut errors);
        }
        if errors.is_empty() {
            Ok(ScopePolicy { spec: spec.clone() })
        } else {
            Err(errors)
        }
    }

    /// The scopes a call needs: `method` is the JSON-RPC method, `tool` the
    /// tool name of a `tools/call`. Deduplicated, in declaration order.
    pub fn required(&self, method: &str, tool: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |s: String| {
            if !out.contains(&s) {
                out.push(s);
            }
        };
        let (fixed, patterns) = self.lists(method, tool);
        fixed.cloned().for_each(&mut add);
        if let Some((list, tool)) = patterns {
            list.iter()
                .map(|s| s.replace("{tool}", tool))
                .for_each(&mut add);
        }
        out
    }

    /// The lists a call's scopes come from: the fixed ones (every call's,
    /// then the method's), and a `tools/call`'s patterns with the tool name
    /// for `{tool}`. The one place that decides which lists apply, so
    /// [`ScopePolicy::required`] and the check cannot disagree.
    fn lists<'a>(
        &'a self,
        method: &str,
        tool: Option<&'a str>,
    ) -> (
        impl Iterator<Item = &'a String>,
        Option<(&'a [String], &'a str)>,
    ) {
        let fixed = self
            .spec
            .required
            .iter()
            .chain(self.spec.methods.get(method).into_iter().flatten());
        let patterns = tool.map(|t| {
            let list = self.spec.tools.get(t).unwrap_or(&self.spec.tool_default);
            (list.as_slice(), t)
        });
        (fixed, patterns)
    }

    /// `Ok` when `granted` covers [`ScopePolicy::required`]; otherwise
    /// [`IdentityError::InsufficientScope`] listing everything the call
    /// needs (RFC 6750 §3.1: the scope attribute names the scopes necessary).
    pub fn check(
        &self,
        granted: &[String],
        method: &str,
        tool: Option<&str>,
    ) -> Result<(), IdentityError> {
        if self.covers(granted, method, tool) {
            return Ok(());
        }
        Err(IdentityError::InsufficientScope {
            required: self.required(method, tool),
        })
    }

    /// Whether `granted` holds every scope of [`ScopePolicy::required`],
    /// without building that list: this runs on every call, and only a
    /// refusal needs the list.
    fn covers(&self, granted: &[String], method: &str, tool: Option<&str>) -> bool {
        let (mut fixed, patterns) = self.lists(method, tool);
        fixed.all(|r| granted.iter().any(|g| g == r))
            && patterns.is_none_or(|(list, tool)| {
                list.iter()
                    .all(|pattern| granted.iter().any(|g| equals_substituted(g, pattern, tool)))
            })
    }

    /// Scopes that can be listed in `scopes_supported`: the fixed ones, and
    /// the patterns expanded for `tool_names` (the server's tool names that
    /// are not globs).
    pub fn supported(&self, tool_names: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |s: &str| {
            if is_scope_token(s) && !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        };
        self.spec.required.iter().for_each(|s| add(s));
        self.spec.methods.values().flatten().for_each(|s| add(s));
        for t in tool_names {
            let list = self.spec.tools.get(*t).unwrap_or(&self.spec.tool_default);
            list.iter().for_each(|s| add(&s.replace("{tool}", t)));
        }
        for (t, list) in &self.spec.tools {
            list.iter().for_each(|s| add(&s.replace("{tool}", t)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn covers_is_the_required_list_checked() {
        let spec = ScopesSpec {
            required: vec!["mcp".into()],
            methods: BTreeMap::from([("tools/list".into(), vec!["mcp:read".into()])]),
            tool_default: vec!["tools:{tool}".into(), "{tool}:{tool}:x".into()],
            tools: BTreeMap::from([("rm".into(), vec!["admin".into(), "rm-{tool}".into()])]),
        };
        let policy = ScopePolicy::compile(&spec, "").unwrap();
        let calls: [(&str, Option<&str>); 7] = [
            ("initialize", None),
            ("tools/list", None),
            ("tools/call", Some("echo")),
            ("tools/call", Some("rm")),
            ("tools/call", Some("")),
            ("tools/call", Some("{tool}")),
            ("tools/call", Some("ec")),
        ];
        let grants: Vec<Vec<String>> = [
            vec![],
            vec!["mcp"],
            vec!["mcp", "mcp:read"],
            vec!["mcp", "tools:echo", "echo:echo:x"],
            vec!["mcp", "tools:echo", "echo:echo:"],
            vec!["mcp", "tools:echo", "echo:ech:x"],
            vec!["mcp", "admin", "rm-rm"],
            vec!["mcp", "admin", "rm-rmx"],
            vec!["mcp", "tools:", "::x"],
            vec!["mcp", "tools:{tool}", "{tool}:{tool}:x"],
            vec!["mcp", "tools:ec", "ec:ec:x", "tools:echo"],
        ]
        .iter()
        .map(|g| g.iter().map(|s| (*s).to_string()).collect())
        .collect();
        let mut allowed = 0;
        for granted in &grants {
            for (method, tool) in calls {
                let required = policy.required(method, tool);
                let want = required.iter().all(|r| granted.contains(r));
                assert_eq!(
                    policy.check(granted, method, tool).is_ok(),
                    want,
                    "{granted:?} {method} {tool:?}"
                );
                allowed += usize::from(want);
            }
        }
        // Both outcomes are exercised.
        assert!(allowed > 5 && allowed < grants.len() * calls.len() - 5);
    }
}

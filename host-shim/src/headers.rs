//! An ordered, multi-valued header map with Envoy's rules.
//!
//! `http::HeaderMap` cannot hold pseudo-headers and reorders values, and the
//! ABI exposes order and duplicates, so the host keeps its own map. Names are
//! lowercased on every insert (Envoy `Http::LowerCaseString`), and
//! pseudo-headers stay in front of regular ones (Envoy `HeaderMapImpl`).

/// Ordered header list; names are lowercase, values are raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(String, Vec<u8>)>,
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Whether a stored (lowercase) name is `name` lowercased, without
/// allocating the lowercase copy: lookups run several times per stream.
fn same_name(stored: &str, name: &str) -> bool {
    stored.eq_ignore_ascii_case(name)
}

impl HeaderMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from pairs, lowercasing names.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        let mut m = Self::new();
        for (k, v) in pairs {
            m.add(k.as_ref(), v.as_ref());
        }
        m
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The first value for `name`: Envoy `getHeaderMapValue` returns
    /// `entry[0]` only (context.cc, with a TODO about multiple values).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| same_name(k, name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends a value (Envoy `addCopy`): duplicates are kept.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        let n = lower(name);
        if n.starts_with(':') {
            let pos = self
                .entries
                .iter()
                .position(|(k, _)| !k.starts_with(':'))
                .unwrap_or(self.entries.len());
            self.entries.insert(pos, (n, value.to_vec()));
        } else {
            self.entries.push((n, value.to_vec()));
        }
    }

    /// Envoy `setCopy`: the first entry keeps its position and gets the new
    /// value, later duplicates go; adds the header when absent.
    pub fn replace(&mut self, name: &str, value: &[u8]) {
        match self.entries.iter().position(|(k, _)| same_name(k, name)) {
            Some(first) => {
                let mut i = 0;
                self.entries.retain(|(k, _)| {
                    let keep = !same_name(k, name) || i == first;
                    i += 1;
                    keep
                });
                if let Some(e) = self.entries.get_mut(first) {
                    e.1 = value.to_vec();
                }
            }
            None => self.add(name, value),
        }
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(k, _)| !same_name(k, name));
    }

    /// Byte size as Envoy's `HeaderMap::byteSize` (keys plus values).
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    pub fn to_pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect()
    }

    pub fn set_pairs(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        self.entries.clear();
        for (k, v) in pairs {
            self.add(&String::from_utf8_lossy(k), v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_headers_stay_first_and_replace_keeps_first() {
        let mut m = HeaderMap::new();
        m.add("X-A", b"1");
        m.add(":path", b"/");
        m.add("x-a", b"2");
        assert_eq!(m.iter().next().unwrap().0, ":path");
        assert_eq!(m.get("X-A").unwrap(), b"1");
        m.replace("x-a", b"3");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("x-a").unwrap(), b"3");
        m.remove("x-a");
        assert_eq!(m.len(), 1);
    }

    /// Lookups compare names without allocating a lowercase copy; they
    /// must find exactly what the lowercased comparison found.
    #[test]
    fn lookups_ignore_ascii_case_only() {
        let mut m = HeaderMap::new();
        m.add("Content-Type", b"a");
        m.add("x-\u{c9}t\u{e9}", b"b");
        assert_eq!(m.get("CONTENT-type").unwrap(), b"a");
        assert_eq!(m.get("content-typ"), None);
        assert_eq!(m.get("content-type-"), None);
        // Non-ASCII letters are not case-folded (nor were they before).
        assert_eq!(m.get("X-\u{c9}T\u{e9}").unwrap(), b"b");
        assert_eq!(m.get("x-\u{e9}t\u{e9}"), None);
        m.replace("CONTENT-TYPE", b"c");
        assert_eq!(m.get("content-type").unwrap(), b"c");
        m.replace("New", b"d");
        assert_eq!(m.iter().last().unwrap(), ("new", &b"d"[..]));
        m.remove("NEW");
        assert_eq!(m.get("new"), None);
    }
}

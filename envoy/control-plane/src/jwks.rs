//! JWKS for identity providers, fetched by the control plane (the only
//! component that reaches out) and embedded in the bundle.
//!
//! The core's `IdentityProvider` spec only accepts an inline `jwks`
//! (`deny_unknown_fields`), so a document naming `jwksUri: URL` is rewritten
//! before compiling: the `jwksUri:` line becomes `jwks: {...}` with the
//! fetched keys as one line of JSON (valid YAML flow), on the same line, so
//! error line numbers still point into the file as written. Keys are cached
//! per URL and refreshed on an interval; a failed fetch keeps the last good
//! keys, and a refresh that changes any keys bumps [`JwksCache::generation`]
//! so the watcher recompiles (key rotation becomes a new bundle version).
//!
//! Only `http://` URLs are fetched (no TLS stack is in the workspace); put
//! an HTTPS-terminating proxy or a sidecar in front of an `https://` issuer.

use crate::state::{Counters, State};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

/// Fetched key sets by URL.
#[derive(Debug)]
pub struct JwksCache {
    keys: Mutex<BTreeMap<String, String>>,
    errors: Mutex<BTreeMap<String, String>>,
    generation: AtomicU64,
    client: HttpClient,
    state: Arc<State>,
}

impl JwksCache {
    pub fn new(state: Arc<State>) -> Arc<JwksCache> {
        Arc::new(JwksCache {
            keys: Mutex::default(),
            errors: Mutex::default(),
            generation: AtomicU64::new(0),
            client: Client::builder(TokioExecutor::new()).build_http(),
            state,
        })
    }

    /// Changes whenever any cached key set does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The last fetch error per URL (cleared by a good fetch).
    pub fn errors(&self) -> BTreeMap<String, String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The keys of `url` as one line of JSON: cached, else fetched now.
    pub async fn get(&self, url: &str) -> Result<String, String> {
        if let Some(k) = self.keys.lock().ok().and_then(|k| k.get(url).cloned()) {
            return Ok(k);
        }
        self.refresh_one(url).await
    }

    /// Fetches `url`; on success caches it, on failure keeps what was cached.
    async fn refresh_one(&self, url: &str) -> Result<String, String> {
        Counters::inc(&self.state.counters.jwks_fetches);
        match self.fetch(url).await {
            Ok(json) => {
                if let Ok(mut e) = self.errors.lock() {
                    e.remove(url);
                }
                if let Ok(mut k) = self.keys.lock() {
                    let old = k.insert(url.to_string(), json.clone());
                    if old.is_some_and(|o| o != json) {
                        self.generation.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(json)
            }
            Err(e) => {
                Counters::inc(&self.state.counters.jwks_fetch_errors);
                tracing::warn!(url, error = %e, "JWKS fetch failed; keeping the last good keys");
                if let Ok(mut errs) = self.errors.lock() {
                    errs.insert(url.to_string(), e.clone());
                }
                match self.keys.lock().ok().and_then(|k| k.get(url).cloned()) {
                    Some(k) => Ok(k),
                    None => Err(e),
                }
            }
        }
    }

    /// Refetches every cached URL.
    pub async fn refresh_all(&self) {
        let urls: Vec<String> = self
            .keys
            .lock()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        for url in urls {
            let _ = self.refresh_one(&url).await;
        }
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("jwksUri {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "jwksUri {url:?}: only http:// is fetched; front an https issuer with a local proxy, or inline the keys as `jwks`"
            ));
        }
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("jwksUri {url:?}: {e}"))?;
        let resp = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("jwksUri {url:?}: no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| format!("jwksUri {url:?}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("jwksUri {url:?} answered {}", resp.status()));
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| format!("jwksUri {url:?}: body not complete within {FETCH_TIMEOUT:?}"))?
        .map_err(|e| format!("jwksUri {url:?}: cannot read the body: {e}"))?
        .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("jwksUri {url:?} did not return JSON: {e}"))?;
        if !value.get("keys").is_some_and(|k| k.is_array()) {
            return Err(format!(
                "jwksUri {url:?} returned JSON without a \"keys\" array (not a JWKS)"
            ));
        }
        serde_json::to_string(&value).map_err(|e| format!("jwksUri {url:?}: {e}"))
    }
}

/// A `jwksUri:` line found in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriLine {
    /// 0-based line index.
    pub index: usize,
    pub indent: String,
    pub url: String,
}

/// Finds `jwksUri: URL` lines (block style, the way the docs write them).
pub fn find_uri_lines(text: &str) -> Vec<UriLine> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let trimmed = line.trim_start();
            let rest = trimmed.strip_prefix("jwksUri:")?;
            let indent = line.get(..line.len() - trimmed.len())?.to_string();
            // Drop a trailing comment, then quotes.
            let value = match rest.find(" #") {
                Some(i) => rest.get(..i)?,
                None => rest,
            }
            .trim();
            let url = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .to_string();
            Some(UriLine { index, indent, url })
        })
        .collect()
}

/// Replaces each found line by `jwks: <json>`, keeping line numbers.
pub fn substitute(text: &str, found: &[(UriLine, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match found.iter().find(|(u, _)| u.index == i) {
            Some((u, json)) => {
                out.push_str(&u.indent);
                out.push_str("jwks: ");
                out.push_str(json);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_substitutes_on_the_same_line() {
        let text = "kind: IdentityProvider\nspec:\n  issuer: x\n  jwksUri: \"http://127.0.0.1:1/jwks\" # keys\n  algorithms: [RS256]\n";
        let found = find_uri_lines(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url, "http://127.0.0.1:1/jwks");
        assert_eq!(found[0].index, 3);
        let out = substitute(text, &[(found[0].clone(), "{\"keys\":[]}".into())]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[3], "  jwks: {\"keys\":[]}");
        assert_eq!(lines[4], "  algorithms: [RS256]");
        assert_eq!(out.lines().count(), text.lines().count());
    }
}

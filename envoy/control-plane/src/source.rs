//! The bundles directory and its watcher.
//!
//! `--bundles DIR` holds one bundle directory per environment (`DIR/dev`,
//! `DIR/staging`, `DIR/prod`) and optionally per environment and tenant
//! (`DIR/prod@acme`); each is what `portcullis bundle build` accepts. The
//! watcher polls (every 500 ms by default; portable, and a git checkout
//! that swaps many files at once is seen as one change) a fingerprint of
//! each directory's YAML files (path, size, mtime), and recompiles a
//! directory whose fingerprint changed. Only a bundle that compiles becomes
//! a snapshot; otherwise the errors (`file:line`, files relative to DIR)
//! are recorded and the last good snapshot keeps being served.

use crate::jwks::{self, JwksCache};
use crate::resource::{self, ResourceConfig};
use crate::state::{Snapshot, State, now_ms};
use portcullis_core::bundle::{BundleError, BundleJson, yaml};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The YAML files under `dir`, recursively, sorted (as `load_dir` reads them).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// A cheap summary of a directory's files; equal fingerprints mean no
/// change worth recompiling.
pub fn fingerprint(dir: &Path) -> String {
    let mut files = Vec::new();
    let mut h = Sha256::new();
    if let Err(e) = yaml_files(dir, &mut files) {
        h.update(format!("error:{e}"));
    }
    files.sort();
    for f in &files {
        h.update(f.display().to_string());
        if let Ok(m) = std::fs::metadata(f) {
            h.update(m.len().to_le_bytes());
            if let Ok(t) = m.modified()
                && let Ok(d) = t.duration_since(UNIX_EPOCH)
            {
                h.update(d.as_nanos().to_le_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// The bundle directories under `root`: subdirectories not starting with `.`.
pub fn bundle_dirs(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && e.path().is_dir() {
                out.insert(name);
            }
        }
    }
    out
}

fn error_line(key: &str, e: &BundleError) -> String {
    let mut e = e.clone();
    if let Some(f) = &e.file
        && !Path::new(f).is_absolute()
    {
        e.file = Some(format!("{key}/{f}"));
    }
    e.to_string()
}

/// Reads and compiles one bundle directory, fetching `jwksUri` keys first.
/// Errors are lines ready to show (`prod/idp.yaml:4: ...`).
pub async fn compile(root: &Path, key: &str, jwks: &JwksCache) -> Result<BundleJson, Vec<String>> {
    let dir = root.join(key);
    let d = dir.clone();
    let read = tokio::task::spawn_blocking(move || read_sources(&d)).await;
    let mut sources = match read {
        Ok(Ok(s)) => s,
        Ok(Err(errors)) => return Err(errors.iter().map(|e| error_line(key, e)).collect()),
        Err(e) => return Err(vec![format!("{key}: reading the directory failed: {e}")]),
    };
    let mut errors = Vec::new();
    for (file, text) in &mut sources {
        let found = jwks::find_uri_lines(text);
        if found.is_empty() {
            continue;
        }
        let mut subs = Vec::new();
        for u in found {
            match jwks.get(&u.url).await {
                Ok(json) => subs.push((u, json)),
                Err(e) => errors.push(format!("{key}/{file}:{}: {e}", u.index + 1)),
            }
        }
        *text = jwks::substitute(text, &subs);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let compiled = tokio::task::spawn_blocking(move || yaml::load_sources(&sources)).await;
    match compiled {
        Ok(Ok(bundle)) => Ok(bundle),
        Ok(Err(errors)) => Err(errors.iter().map(|e| error_line(key, e)).collect()),
        Err(e) => Err(vec![format!("{key}: compiling failed: {e}")]),
    }
}

/// As `yaml::load_dir` reads a directory: relative names, sorted.
fn read_sources(dir: &Path) -> Result<Vec<(String, String)>, Vec<BundleError>> {
    let err = |file: String, message: String| {
        vec![BundleError {
            file: Some(file),
            line: None,
            document: None,
            pointer: String::new(),
            message,
        }]
    };
    let mut files = Vec::new();
    yaml_files(dir, &mut files)
        .map_err(|e| err(String::new(), format!("cannot read bundle directory: {e}")))?;
    files.sort();
    if files.is_empty() {
        return Err(err(
            String::new(),
            "no .yaml or .yml files found; a bundle directory holds McpServer and Settings documents".into(),
        ));
    }
    let mut sources = Vec::new();
    for path in &files {
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(shown.clone(), format!("cannot read file: {e}")))?;
        sources.push((shown, text));
    }
    Ok(sources)
}

/// Compiles `key` and publishes or records the result. Returns the new
/// version when one was published.
pub async fn reload(
    state: &State,
    root: &Path,
    key: &str,
    jwks: &JwksCache,
    cfg: &ResourceConfig,
) -> Option<String> {
    match compile(root, key, jwks).await {
        Ok(bundle) => {
            let json = match serde_json::to_string(&bundle) {
                Ok(j) => j,
                Err(e) => {
                    state.fail(
                        key,
                        vec![format!("{key}: cannot serialise the bundle: {e}")],
                    );
                    return None;
                }
            };
            let version = bundle.version.clone();
            let published = state.publish(Snapshot {
                key: key.to_string(),
                version: version.clone(),
                resource: resource::build(cfg, &json),
                documents: bundle.documents.len(),
                loaded_at_ms: now_ms(),
                bundle: portcullis_core::bundle::Bundle::compile(&bundle)
                    .ok()
                    .map(Arc::new),
                json: Some(Arc::new(bundle.clone())),
            });
            if published {
                tracing::info!(bundle = key, version, "published a new bundle version");
                Some(version)
            } else {
                None
            }
        }
        Err(errors) => {
            for e in &errors {
                tracing::warn!(bundle = key, "not published: {e}");
            }
            state.fail(key, errors);
            None
        }
    }
}

/// Scans once: recompiles every directory whose fingerprint (or whose JWKS)
/// changed since `seen`.
pub async fn scan(
    state: &State,
    root: &Path,
    jwks: &JwksCache,
    cfg: &ResourceConfig,
    seen: &mut BTreeMap<String, String>,
) {
    let dirs = bundle_dirs(root);
    let generation = jwks.generation();
    for key in &dirs {
        let fp = format!("{}:{generation}", fingerprint(&root.join(key)));
        if seen.get(key) == Some(&fp) {
            continue;
        }
        reload(state, root, key, jwks, cfg).await;
        seen.insert(key.clone(), fp);
    }
    seen.retain(|k, _| dirs.contains(k));
    state.set_dirs(dirs);
}

/// Polls `root` every `interval` until shutdown; refreshes JWKS every
/// `jwks_refresh`.
pub async fn watch(
    state: Arc<State>,
    root: PathBuf,
    jwks: Arc<JwksCache>,
    cfg: ResourceConfig,
    interval: Duration,
    jwks_refresh: Duration,
    mut seen: BTreeMap<String, String>,
) {
    let mut shutdown = state.shutdown_signal();
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if last_refresh.elapsed() >= jwks_refresh {
            jwks.refresh_all().await;
            last_refresh = tokio::time::Instant::now();
        }
        scan(&state, &root, &jwks, &cfg, &mut seen).await;
    }
}

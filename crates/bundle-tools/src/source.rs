//! Where bundles come from: a directory of YAML documents, or a compiled
//! bundle's JSON.

use portcullis_core::bundle::{BundleError, BundleJson, yaml};
use std::path::{Path, PathBuf};

/// Why a bundle cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory is missing (or is a file, where a directory is needed).
    #[error("bundle directory {} does not exist or is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The directory's documents do not compile.
    #[error("{} error{} in bundle {}", .errors.len(), if .errors.len() == 1 { "" } else { "s" }, .dir.display())]
    Compile {
        dir: PathBuf,
        errors: Vec<BundleError>,
    },
    /// A compiled bundle file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not a compiled bundle.
    #[error("{} is not a compiled bundle ({reason})", .path.display())]
    NotCompiled { path: PathBuf, reason: String },
}

/// Compiles a bundle directory.
pub fn load_dir(dir: &Path) -> Result<BundleJson, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::NotADirectory(dir.to_owned()));
    }
    yaml::load_dir(dir).map_err(|errors| LoadError::Compile {
        dir: dir.to_owned(),
        errors,
    })
}

/// A bundle directory (compiled) or a compiled JSON file.
pub fn load_any(path: &Path) -> Result<BundleJson, LoadError> {
    if path.is_dir() {
        return load_dir(path);
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| LoadError::NotCompiled {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A compile error with its file made a path under `dir` (the loader
/// names files relative to the directory).
pub fn under(dir: &Path, error: &BundleError) -> BundleError {
    let mut e = error.clone();
    if let Some(f) = &e.file
        && !Path::new(f).is_absolute()
    {
        e.file = Some(dir.join(f).display().to_string());
    }
    e
}

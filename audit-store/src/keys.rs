//! Checkpoint signing keys on disk.
//!
//! A key file holds the 32-byte Ed25519 seed as 64 hex digits (or the raw
//! 32 bytes); its public half goes in `FILE.pub`, also hex. The store reads
//! the secret key only to sign checkpoints; `verify --key PUB` takes the
//! public key, which should be kept somewhere an attacker with write access
//! to the database cannot also change.

use crate::{Error, Result};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};

fn read_32(path: &Path) -> Result<[u8; 32]> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Key(format!("cannot read {}: {e}", path.display())))?;
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(raw);
    }
    let text = String::from_utf8_lossy(&bytes);
    let decoded = hex::decode(text.trim())
        .map_err(|_| Error::Key(format!("{}: expected 64 hex digits", path.display())))?;
    <[u8; 32]>::try_from(decoded.as_slice())
        .map_err(|_| Error::Key(format!("{}: expected 32 bytes", path.display())))
}

/// Loads a signing key (the secret seed).
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    Ok(SigningKey::from_bytes(&read_32(path)?))
}

/// Loads a public key. A secret key file is accepted too (its public half
/// is derived), which is convenient but not what an auditor should hold.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let bytes = read_32(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| {
        Error::Key(format!(
            "{}: not an Ed25519 public key: {e}",
            path.display()
        ))
    })
}

/// A public key as hex, the form key files and reports use.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

/// The path of a key file's public half.
pub fn public_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generates a new key at `path` (refusing to overwrite; mode 0600 on Unix)
/// and writes its public half to `path.pub`.
pub fn generate_key(path: &Path) -> Result<VerifyingKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Key(format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut f, format!("{}\n", hex::encode(seed)).as_bytes())?;
    f.sync_all()?;
    let public = key.verifying_key();
    std::fs::write(
        public_path(path),
        format!("{}\n", hex::encode(public.to_bytes())),
    )?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let public = generate_key(&path).unwrap();
        assert_eq!(load_signing_key(&path).unwrap().verifying_key(), public);
        assert_eq!(load_verifying_key(&public_path(&path)).unwrap(), public);
        assert!(generate_key(&path).is_err(), "must not overwrite a key");
    }
}

//! The hash chain and signed checkpoints: the bytes that make tampering show.
//!
//! Each record's hash is `SHA-256(prev_hash || record || seq_be64)`, where
//! `record` is the stored canonical JSON and the chain starts from 32 zero
//! bytes. Including `seq` binds each record to its position, so moving a
//! row, not only editing it, breaks the chain. A checkpoint signs
//! `DOMAIN || seq_be64 || hash || created_ms_be64` with Ed25519; verifying it
//! against a public key held outside the database is what stops an attacker
//! who rewrites the whole chain consistently.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The hash the first record chains from.
pub const GENESIS: [u8; 32] = [0; 32];

/// Domain separation for checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"portcullis.audit.checkpoint/v1\0";

/// A record's chain hash.
pub fn record_hash(prev: &[u8; 32], record: &[u8], seq: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(record);
    h.update(seq.to_be_bytes());
    h.finalize().into()
}

/// A signed statement: "the chain's hash at record `seq` was `hash`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: [u8; 32],
    pub created_ms: i64,
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(seq: u64, hash: &[u8; 32], created_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&created_ms.to_be_bytes());
    m
}

impl Checkpoint {
    /// Signs the chain's state at `seq`.
    pub fn sign(key: &SigningKey, seq: u64, hash: [u8; 32], created_ms: i64) -> Checkpoint {
        let sig = key.sign(&checkpoint_message(seq, &hash, created_ms));
        Checkpoint {
            seq,
            hash,
            created_ms,
            public_key: key.verifying_key().to_bytes(),
            signature: sig.to_bytes(),
        }
    }

    /// Checks the signature against `trusted` if given, else against the
    /// key the checkpoint names (which shows only internal consistency).
    pub fn check(&self, trusted: Option<&VerifyingKey>) -> Result<(), String> {
        let key = match trusted {
            Some(k) => {
                if k.to_bytes() != self.public_key {
                    return Err(format!(
                        "signed by key {}, not the trusted key {}",
                        hex::encode(self.public_key),
                        hex::encode(k.to_bytes())
                    ));
                }
                *k
            }
            None => VerifyingKey::from_bytes(&self.public_key)
                .map_err(|e| format!("bad public key: {e}"))?,
        };
        let sig = Signature::from_bytes(&self.signature);
        key.verify(
            &checkpoint_message(self.seq, &self.hash, self.created_ms),
            &sig,
        )
        .map_err(|_| "signature does not verify".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_binds_position_and_checkpoint_signs() {
        let a = record_hash(&GENESIS, b"{}", 1);
        assert_ne!(a, record_hash(&GENESIS, b"{}", 2));
        assert_ne!(a, record_hash(&a, b"{}", 1));
        let key = SigningKey::from_bytes(&[7; 32]);
        let cp = Checkpoint::sign(&key, 1, a, 42);
        cp.check(None).unwrap();
        cp.check(Some(&key.verifying_key())).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(cp.check(Some(&other)).is_err());
        let mut forged = cp.clone();
        forged.seq = 2;
        assert!(forged.check(None).is_err());
    }
}

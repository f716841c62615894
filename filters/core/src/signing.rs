//! Bundle signatures: Ed25519 over the bundle's content version.
//!
//! A compiled bundle's `version` is the SHA-256 of its documents, and
//! [`crate::bundle::Bundle::from_json`] refuses a bundle whose documents do
//! not hash to it; so signing the version signs the content, and the
//! signature stays 64 bytes however large the bundle is. The signed message
//! is [`MESSAGE_PREFIX`] followed by the version string, so a signature made
//! for a bundle can never be replayed as some other Ed25519-signed message
//! (an audit checkpoint, say) made with the same key.
//!
//! The signature travels in the bundle JSON as a top-level `signature`
//! object (`alg`, `keyId`, `value`), left out of the content hash. Key files
//! are those `portcullis audit keygen` writes (64 hex digits, `.pub` beside
//! them), so one keygen serves audit checkpoints and bundles.
//!
//! Trust is configured per VM, not per bundle: the VM configuration's
//! `trustedBundleKeys` ([`TrustConfig`]). With no trusted key a filter takes
//! any bundle, signed or not (signatures are then not checked at all, as
//! there is nothing to check them against); with one or more it refuses an
//! unsigned bundle and one whose signature does not verify under a trusted
//! key. This uses the same `ed25519-dalek` the JWT code uses, so the wasm
//! filter carries one Ed25519 implementation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What precedes the version in the signed message.
pub const MESSAGE_PREFIX: &[u8] = b"portcullis-bundle-v1\n";
/// The only `signature.alg`.
pub const ALG: &str = "Ed25519";

/// The `signature` field of a compiled bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSignature {
    /// Always `Ed25519`.
    pub alg: String,
    /// [`key_id`] of the public key: which key to check it with.
    pub key_id: String,
    /// The 64-byte signature, standard base64.
    pub value: String,
}

/// The bytes a bundle signature covers.
pub fn message(version: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(MESSAGE_PREFIX.len() + version.len());
    m.extend_from_slice(MESSAGE_PREFIX);
    m.extend_from_slice(version.as_bytes());
    m
}

/// A public key's id: the first 16 hex digits of the SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = hex::encode(digest);
    id.truncate(16);
    id
}

/// Signs a bundle version.
pub fn sign(version: &str, key: &SigningKey) -> BundleSignature {
    let signature: Signature = key.sign(&message(version));
    BundleSignature {
        alg: ALG.into(),
        key_id: key_id(&key.verifying_key()),
        value: STANDARD.encode(signature.to_bytes()),
    }
}

/// Checks a bundle's signature against the trusted keys. `Ok` names the key
/// that verified it; `Err` says why the bundle must be refused.
pub fn verify(
    version: &str,
    signature: Option<&BundleSignature>,
    trusted: &[VerifyingKey],
) -> Result<String, String> {
    let Some(sig) = signature else {
        return Err(format!(
            "bundle {version} is unsigned, and this filter trusts only bundles signed by key {}; \
             build it with `portcullis bundle build DIR --sign-key KEYFILE`",
            ids(trusted)
        ));
    };
    if sig.alg != ALG {
        return Err(format!(
            "bundle {version} is signed with {:?}; only {ALG} signatures are accepted",
            sig.alg
        ));
    }
    let Some(key) = trusted.iter().find(|k| key_id(k) == sig.key_id) else {
        return Err(format!(
            "bundle {version} is signed by key {}, which this filter does not trust (trusted: {}); \
             sign it with a trusted key or add its public key to trustedBundleKeys",
            sig.key_id,
            ids(trusted)
        ));
    };
    let bytes = STANDARD
        .decode(sig.value.as_bytes())
        .map_err(|e| format!("bundle {version}: signature.value is not base64 ({e})"))?;
    let signature = Signature::from_slice(&bytes).map_err(|_| {
        format!(
            "bundle {version}: signature.value is {} bytes, not a 64-byte Ed25519 signature",
            bytes.len()
        )
    })?;
    key.verify_strict(&message(version), &signature)
        .map_err(|_| {
            format!(
                "bundle {version}: the signature does not verify under key {}; the bundle or \
                 its signature was changed after signing",
                sig.key_id
            )
        })
        .map(|()| sig.key_id.clone())
}

fn ids(keys: &[VerifyingKey]) -> String {
    keys.iter().map(key_id).collect::<Vec<_>>().join(", ")
}

/// The filter's VM configuration (Envoy's `vm_config.configuration`), as
/// JSON. Empty configuration means no trusted keys.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    pub trusted_bundle_keys: Vec<VerifyingKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrustConfigJson {
    #[serde(default)]
    trusted_bundle_keys: Vec<String>,
}

impl TrustConfig {
    /// Parses the VM configuration: empty (or only whitespace), or a JSON
    /// object `{"trustedBundleKeys": ["<key>", ...]}`, each key 32 bytes as
    /// standard base64 or as 64 hex digits (the form of `KEY.pub`).
    pub fn parse(bytes: &[u8]) -> Result<TrustConfig, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(TrustConfig::default());
        }
        let value = crate::json::parse_strict(bytes)
            .map_err(|e| format!("the VM configuration is not valid JSON: {e}"))?;
        let json: TrustConfigJson = serde_json::from_value(value).map_err(|e| {
            format!(
                "the VM configuration is not {{\"trustedBundleKeys\": [...]}}: {e}; see docs/filter.md"
            )
        })?;
        let mut keys = Vec::with_capacity(json.trusted_bundle_keys.len());
        for (i, text) in json.trusted_bundle_keys.iter().enumerate() {
            keys.push(parse_public_key(text).map_err(|e| format!("trustedBundleKeys[{i}]: {e}"))?);
        }
        Ok(TrustConfig {
            trusted_bundle_keys: keys,
        })
    }

    /// Whether bundles must be signed.
    pub fn required(&self) -> bool {
        !self.trusted_bundle_keys.is_empty()
    }

    /// Checks a filter configuration (bundle JSON bytes) against the trusted
    /// keys. Only `version` and `signature` are read here; the content is
    /// checked against `version` when the bundle is compiled.
    pub fn check_config(&self, config: &[u8]) -> Result<Option<String>, String> {
        if !self.required() {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Signed {
            version: String,
            #[serde(default)]
            signature: Option<BundleSignature>,
        }
        let signed: Signed = serde_json::from_slice(config).map_err(|e| {
            format!("the filter configuration has no readable version and signature: {e}")
        })?;
        verify(
            &signed.version,
            signed.signature.as_ref(),
            &self.trusted_bundle_keys,
        )
        .map(Some)
    }
}

pub use crate::spec::parse_public_key;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn trust(keys: &[&SigningKey]) -> TrustConfig {
        let list: Vec<String> = keys
            .iter()
            .map(|k| STANDARD.encode(k.verifying_key().as_bytes()))
            .collect();
        TrustConfig::parse(
            serde_json::json!({ "trustedBundleKeys": list })
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn sign_then_verify_and_refusals() {
        let k = key(7);
        let other = key(8);
        let sig = sign("sha256:abc", &k);
        let t = trust(&[&other, &k]);
        assert_eq!(
            verify("sha256:abc", Some(&sig), &t.trusted_bundle_keys).unwrap(),
            key_id(&k.verifying_key())
        );
        // Another version: the signature no longer covers it.
        let e = verify("sha256:abd", Some(&sig), &t.trusted_bundle_keys).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        // Unsigned.
        let e = verify("sha256:abc", None, &t.trusted_bundle_keys).unwrap_err();
        assert!(e.contains("unsigned"), "{e}");
        // Signed by an untrusted key.
        let e = verify(
            "sha256:abc",
            Some(&sig),
            &trust(&[&other]).trusted_bundle_keys,
        )
        .unwrap_err();
        assert!(e.contains("does not trust"), "{e}");
        // A flipped bit in the value.
        let mut bad = sig.clone();
        let mut bytes = STANDARD.decode(&bad.value).unwrap();
        bytes[0] ^= 1;
        bad.value = STANDARD.encode(bytes);
        assert!(verify("sha256:abc", Some(&bad), &t.trusted_bundle_keys).is_err());
    }

    #[test]
    fn the_message_is_domain_separated() {
        assert_eq!(message("v"), b"portcullis-bundle-v1\nv".to_vec());
    }

    #[test]
    fn trust_config_forms() {
        assert!(!TrustConfig::parse(b"").unwrap().required());
        assert!(!TrustConfig::parse(b" \n").unwrap().required());
        let k = key(1).verifying_key();
        let hex_form = serde_json::json!({ "trustedBundleKeys": [hex::encode(k.as_bytes())] });
        let t = TrustConfig::parse(hex_form.to_string().as_bytes()).unwrap();
        assert_eq!(t.trusted_bundle_keys, vec![k]);
        for bad in [
            &br#"{"trustedBundleKey": []}"#[..],
            br#"{"trustedBundleKeys": ["abc"]}"#,
            br#"{"trustedBundleKeys": "x"}"#,
            b"not json",
        ] {
            assert!(
                TrustConfig::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn check_config_reads_only_version_and_signature() {
        let k = key(3);
        let t = trust(&[&k]);
        let sig = sign("sha256:00", &k);
        let config = serde_json::json!({
            "apiVersion": "x", "kind": "Bundle", "version": "sha256:00",
            "documents": [], "signature": sig,
        });
        assert!(
            t.check_config(config.to_string().as_bytes())
                .unwrap()
                .is_some()
        );
        assert_eq!(
            TrustConfig::default().check_config(b"anything").unwrap(),
            None
        );
        assert!(t.check_config(br#"{"version":"sha256:00"}"#).is_err());
    }
}

//! JSON Web Key Sets, parsed once into ready-to-verify keys.
//!
//! The filter never fetches a JWKS: the control plane puts it inline in the
//! `IdentityProvider` document, and it is parsed here at configure time. All
//! the expensive and fallible work (base64url, big-integer and curve-point
//! decoding, size checks) happens then, so a bad key is a bundle error with
//! the pointer of its field, and verification only ever sees valid keys.
//!
//! Keys are typed by what they can verify ([`KeyMaterial`]); the algorithm of
//! a token must fit the key's type ([`Jwk::fits`]), which is what makes
//! HS/RS key confusion impossible: an RSA public key is never used as an
//! HMAC secret. Private members in an asymmetric JWK are refused, so a
//! leaked private key in a bundle is caught at review time.

use super::SpecError;
use super::alg::{Algorithm, Family};
use super::b64;
use serde_json::Value;
use std::fmt;

/// Smallest RSA modulus accepted, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: bigger keys only cost time.
pub const MAX_RSA_BITS: usize = 8192;
/// Smallest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash
/// size; HS384/HS512 additionally need 48/64 bytes, see [`Jwk::fits`]).
pub const MIN_HMAC_BYTES: usize = 32;

/// What a key can verify.
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(Box<super::rsa_verify::RsaPublicKey>),
    /// With its table of multiples (~166 KiB), shared by clones.
    P256(std::sync::Arc<super::p256_verify::P256Key>),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An HMAC secret (`kty: oct`).
    Oct(Vec<u8>),
}

impl KeyMaterial {
    pub fn family(&self) -> Family {
        match self {
            KeyMaterial::Rsa(_) => Family::Rsa,
            KeyMaterial::P256(_) => Family::P256,
            KeyMaterial::P384(_) => Family::P384,
            KeyMaterial::Ed25519(_) => Family::Ed25519,
            KeyMaterial::Oct(_) => Family::Hmac,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    // Never print key bytes: HMAC secrets are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Rsa(_) => f.write_str("Rsa(..)"),
            KeyMaterial::P256(_) => f.write_str("P256(..)"),
            KeyMaterial::P384(_) => f.write_str("P384(..)"),
            KeyMaterial::Ed25519(_) => f.write_str("Ed25519(..)"),
            KeyMaterial::Oct(k) => write!(f, "Oct({} bytes)", k.len()),
        }
    }
}

/// One verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's `alg`, when the JWK pins one.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

impl Jwk {
    /// Whether a token signed with `alg` may be checked against this key:
    /// the key type must be the algorithm's, the key's own `alg` (if any)
    /// must be `alg`, and an HMAC secret must be at least the hash size.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.material.family() != alg.family() {
            return false;
        }
        if let Some(pinned) = self.alg
            && pinned != alg
        {
            return false;
        }
        match &self.material {
            KeyMaterial::Oct(k) => k.len() >= alg.hmac_min_key_bytes(),
            _ => true,
        }
    }
}

/// A parsed key set; order is preserved (it is the order keys are tried in
/// when a token has no `kid`).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    pub fn by_kid(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Parses a JWKS object (`{"keys": [...]}`). Pointers in errors are
/// `base` + the path inside the JWKS. Keys with `use: enc` are skipped
/// (they are not for signatures); every other problem is an error.
pub fn parse_jwks(value: &Value, base: &str) -> Result<KeySet, Vec<SpecError>> {
    let mut errors = Vec::new();
    let Some(obj) = value.as_object() else {
        return Err(vec![(
            base.to_string(),
            "jwks must be a JWKS object {\"keys\": [...]}".into(),
        )]);
    };
    for k in obj.keys() {
        if k != "keys" {
            errors.push((
                format!("{base}/{}", super::pointer_segment(k)),
                "unknown JWKS member; only \"keys\" is allowed".into(),
            ));
        }
    }
    let Some(keys) = obj.get("keys").and_then(Value::as_array) else {
        errors.push((format!("{base}/keys"), "keys must be an array".into()));
        return Err(errors);
    };
    let mut set = KeySet::default();
    for (i, key) in keys.iter().enumerate() {
        let at = format!("{base}/keys/{i}");
        match parse_jwk(key, &at) {
            Ok(Some(jwk)) => {
                if let Some(kid) = &jwk.kid
                    && set.by_kid(kid).is_some()
                {
                    errors.push((
                        format!("{at}/kid"),
                        format!("duplicate kid {kid:?}; kids are unique in a key set"),
                    ));
                    continue;
                }
                set.keys.push(jwk);
            }
            Ok(None) => {}
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

fn member<'a>(
    obj: &'a serde_json::Map<String, Value>,
    at: &str,
    name: &str,
    errors: &mut Vec<SpecError>,
) -> Option<&'a str> {
    match obj.get(name) {
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push((format!("{at}/{name}"), format!("{name} must be a string")));
            None
        }
        None => {
            errors.push((format!("{at}/{name}"), format!("{name} is required")));
            None
        }
    }
}

fn bytes_member(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    name: &str,
    errors: &mut Vec<SpecError>,
) -> Option<Vec<u8>> {
    let s = member(obj, at, name, errors)?;
    match b64::decode(s) {
        Some(b) if !b.is_empty() => Some(b),
        _ => {
            errors.push((
                format!("{at}/{name}"),
                format!("{name} must be canonical unpadded base64url"),
            ));
            None
        }
    }
}

/// Parses one JWK; `Ok(None)` for an encryption key (skipped).
pub fn parse_jwk(value: &Value, at: &str) -> Result<Option<Jwk>, Vec<SpecError>> {
    let mut errors = Vec::new();
    let Some(obj) = value.as_object() else {
        return Err(vec![(at.to_string(), "a JWK must be an object".into())]);
    };
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(u)) if u == "enc" => return Ok(None),
        Some(_) => errors.push((format!("{at}/use"), "use must be \"sig\" or \"enc\"".into())),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            errors.push((
                format!("{at}/key_ops"),
                "key_ops must be an array including \"verify\"".into(),
            ));
        }
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            errors.push((format!("{at}/kid"), "kid must be a non-empty string".into()));
            None
        }
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(s)) => match Algorithm::parse(s) {
            Some(a) => Some(a),
            None => {
                errors.push((
                    format!("{at}/alg"),
                    format!(
                        "unsupported alg {s:?}; expected one of {}",
                        Algorithm::names()
                    ),
                ));
                None
            }
        },
        Some(_) => {
            errors.push((format!("{at}/alg"), "alg must be a string".into()));
            None
        }
    };
    let kty = member(obj, at, "kty", &mut errors).unwrap_or_default();
    let private_members: &[&str] = match kty {
        "RSA" => &["d", "p", "q", "dp", "dq", "qi", "oth"],
        "EC" | "OKP" => &["d"],
        _ => &[],
    };
    for m in private_members {
        if obj.contains_key(*m) {
            errors.push((
                format!("{at}/{m}"),
                "private key material in a verification key set; publish only the public key"
                    .into(),
            ));
        }
    }
    let material = match kty {
        "RSA" => rsa_key(obj, at, &mut errors),
        "EC" => ec_key(obj, at, &mut errors),
        "OKP" => okp_key(obj, at, &mut errors),
        "oct" => {
            let k = bytes_member(obj, at, "k", &mut errors);
            match k {
                Some(k) if k.len() >= MIN_HMAC_BYTES => Some(KeyMaterial::Oct(k)),
                Some(_) => {
                    errors.push((
                        format!("{at}/k"),
                        format!("HMAC secret shorter than {MIN_HMAC_BYTES} bytes"),
                    ));
                    None
                }
                None => None,
            }
        }
        "" => None,
        other => {
            errors.push((
                format!("{at}/kty"),
                format!("unsupported kty {other:?}; expected RSA, EC, OKP or oct"),
            ));
            None
        }
    };
    if let (Some(material), Some(alg)) = (&material, alg)
        && material.family() != alg.family()
    {
        errors.push((
            format!("{at}/alg"),
            format!("alg {} does not fit kty {kty:?}", alg.name()),
        ));
    }
    if let (Some(KeyMaterial::Oct(k)), Some(alg)) = (&material, alg)
        && k.len() < alg.hmac_min_key_bytes()
    {
        errors.push((
            format!("{at}/k"),
            format!(
                "{} needs a secret of at least {} bytes",
                alg.name(),
                alg.hmac_min_key_bytes()
            ),
        ));
    }
    match material {
        Some(material) if errors.is_empty() => Ok(Some(Jwk { kid, alg, material })),
        _ => Err(errors),
    }
}

fn rsa_key(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    errors: &mut Vec<SpecError>,
) -> Option<KeyMaterial> {
    let n = bytes_member(obj, at, "n", errors);
    let e = bytes_member(obj, at, "e", errors);
    let (n, e) = (n?, e?);
    if n.first() == Some(&0) || e.first() == Some(&0) {
        errors.push((
            format!("{at}/n"),
            "n and e must be minimal big-endian integers (no leading zero)".into(),
        ));
        return None;
    }
    let bits = n.len() * 8;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        errors.push((
            format!("{at}/n"),
            format!("RSA modulus of {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"),
        ));
        return None;
    }
    match super::rsa_verify::RsaPublicKey::new(&n, &e) {
        Ok(key) => Some(KeyMaterial::Rsa(Box::new(key))),
        Err(err) => {
            errors.push((format!("{at}/n"), format!("invalid RSA public key: {err}")));
            None
        }
    }
}

fn ec_key(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    errors: &mut Vec<SpecError>,
) -> Option<KeyMaterial> {
    let crv = member(obj, at, "crv", errors)?;
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        other => {
            errors.push((
                format!("{at}/crv"),
                format!("unsupported EC curve {other:?}; expected P-256 or P-384"),
            ));
            return None;
        }
    };
    let x = bytes_member(obj, at, "x", errors);
    let y = bytes_member(obj, at, "y", errors);
    let (x, y) = (x?, y?);
    if x.len() != size || y.len() != size {
        errors.push((
            format!("{at}/x"),
            format!("{crv} coordinates must be {size} bytes each"),
        ));
        return None;
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(4);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let key = if size == 32 {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .ok()
            .map(|k| KeyMaterial::P256(std::sync::Arc::new(super::p256_verify::P256Key::new(k))))
    } else {
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .ok()
            .map(KeyMaterial::P384)
    };
    if key.is_none() {
        errors.push((format!("{at}/x"), format!("not a point on {crv}")));
    }
    key
}

fn okp_key(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    errors: &mut Vec<SpecError>,
) -> Option<KeyMaterial> {
    let crv = member(obj, at, "crv", errors)?;
    if crv != "Ed25519" {
        errors.push((
            format!("{at}/crv"),
            format!("unsupported OKP curve {crv:?}; expected Ed25519"),
        ));
        return None;
    }
    let x = bytes_member(obj, at, "x", errors)?;
    let Ok(bytes) = <[u8; 32]>::try_from(x.as_slice()) else {
        errors.push((format!("{at}/x"), "Ed25519 public keys are 32 bytes".into()));
        return None;
    };
    match ed25519_dalek::VerifyingKey::from_bytes(&bytes) {
        Ok(k) if !k.is_weak() => Some(KeyMaterial::Ed25519(k)),
        _ => {
            errors.push((format!("{at}/x"), "not a valid Ed25519 public key".into()));
            None
        }
    }
}

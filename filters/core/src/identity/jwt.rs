//! Compact JWS parsing and signature verification.
//!
//! Parsing is deliberately unforgiving, because every leniency in a JWT
//! parser has been an exploit somewhere: exactly three segments (five would
//! be JWE), canonical unpadded base64url only, JSON through
//! [`crate::json::parse_strict`] (duplicate keys refused, so the filter and
//! the upstream cannot read different claims), `alg: none` refused in any
//! case, a `crit` header refused (no extension is understood), and a size
//! limit checked before anything is decoded. Header parameters that name
//! keys (`jku`, `x5u`, `jwk`, `x5c`) are ignored: keys come only from the
//! bundle.
//!
//! Verification takes the algorithm from the header only after it has been
//! matched against the key's type ([`super::jwks::Jwk::fits`]), so an HS256
//! token can never be checked with an RSA public key as its secret.

use super::b64;
use super::error::IdentityError;
use super::jwks::KeyMaterial;
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

/// Default largest token accepted, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

pub use super::alg::{Algorithm, Family};

/// A token split, decoded and parsed, not yet verified.
#[derive(Debug, Clone)]
pub struct Parsed<'t> {
    /// The header's `alg`, known to be one of [`Algorithm`] (not yet checked
    /// against an allowlist).
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
    pub claims: Map<String, Value>,
}

/// Splits and parses a compact JWS. Checks, in order: size, shape,
/// header encoding and JSON, `alg` (none, unknown), `crit`, `typ`, payload
/// encoding and JSON, signature encoding.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, IdentityError> {
    if token.len() > max_bytes {
        return Err(IdentityError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::Malformed);
    };
    let header = decode_object(h)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => {
            return Err(IdentityError::AlgNone);
        }
        Some(Value::String(a)) => Algorithm::parse(a).ok_or(IdentityError::AlgNotAllowed)?,
        _ => return Err(IdentityError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(IdentityError::UnsupportedCrit);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if acceptable_typ(t) => {}
        Some(_) => return Err(IdentityError::Malformed),
    }
    // RFC 7797 unencoded payloads are only legal with crit, refused above;
    // a stray b64 parameter is still a sign of confusion.
    if header.contains_key("b64") {
        return Err(IdentityError::UnsupportedCrit);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(IdentityError::Malformed),
    };
    let claims = decode_object(p)?;
    let signature = b64::decode(s).ok_or(IdentityError::Malformed)?;
    if signature.is_empty() {
        return Err(IdentityError::Malformed);
    }
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(IdentityError::Malformed)?;
    Ok(Parsed {
        alg,
        kid,
        signing_input,
        signature,
        claims,
    })
}

/// `JWT`, `at+jwt` (RFC 9068) and their `application/` forms, any case.
fn acceptable_typ(typ: &str) -> bool {
    let t = typ.strip_prefix("application/").unwrap_or(typ);
    t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt")
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, IdentityError> {
    let bytes = b64::decode(segment).ok_or(IdentityError::Malformed)?;
    match crate::json::parse_strict(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(IdentityError::Malformed),
    }
}

/// Checks `signature` over `input` with `key` under `alg`. The caller has
/// already checked that the key fits the algorithm; a mismatch here is
/// simply `false`.
pub fn verify_signature(alg: Algorithm, key: &KeyMaterial, input: &[u8], signature: &[u8]) -> bool {
    use super::rsa_verify::Hash;
    use hmac::{KeyInit, Mac};
    use p256::ecdsa::signature::Verifier;
    match (alg, key) {
        (Algorithm::Hs256, KeyMaterial::Oct(k)) => hmac::Hmac::<Sha256>::new_from_slice(k)
            .map(|mut m| {
                m.update(input);
                m.verify_slice(signature).is_ok()
            })
            .unwrap_or(false),
        (Algorithm::Hs384, KeyMaterial::Oct(k)) => hmac::Hmac::<Sha384>::new_from_slice(k)
            .map(|mut m| {
                m.update(input);
                m.verify_slice(signature).is_ok()
            })
            .unwrap_or(false),
        (Algorithm::Hs512, KeyMaterial::Oct(k)) => hmac::Hmac::<Sha512>::new_from_slice(k)
            .map(|mut m| {
                m.update(input);
                m.verify_slice(signature).is_ok()
            })
            .unwrap_or(false),
        (Algorithm::Rs256, KeyMaterial::Rsa(k)) => {
            k.verify_pkcs1v15(Hash::Sha256, input, signature)
        }
        (Algorithm::Rs384, KeyMaterial::Rsa(k)) => {
            k.verify_pkcs1v15(Hash::Sha384, input, signature)
        }
        (Algorithm::Rs512, KeyMaterial::Rsa(k)) => {
            k.verify_pkcs1v15(Hash::Sha512, input, signature)
        }
        // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
        (Algorithm::Ps256, KeyMaterial::Rsa(k)) => k.verify_pss(Hash::Sha256, input, signature),
        (Algorithm::Ps384, KeyMaterial::Rsa(k)) => k.verify_pss(Hash::Sha384, input, signature),
        (Algorithm::Ps512, KeyMaterial::Rsa(k)) => k.verify_pss(Hash::Sha512, input, signature),
        // JWS ECDSA signatures are fixed-size r || s, not DER.
        (Algorithm::Es256, KeyMaterial::P256(k)) => k.verify(input, signature),
        (Algorithm::Es384, KeyMaterial::P384(k)) => p384::ecdsa::Signature::from_slice(signature)
            .map(|sig| k.verify(input, &sig).is_ok())
            .unwrap_or(false),
        (Algorithm::EdDsa, KeyMaterial::Ed25519(k)) => {
            ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| k.verify_strict(input, &sig).is_ok())
                .unwrap_or(false)
        }
        _ => false,
    }
}

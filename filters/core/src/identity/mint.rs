//! Token isolation: a fresh upstream token for each call.
//!
//! The MCP authorization spec forbids passing a client's token through to
//! an upstream: that token was issued for Portcullis (the resource the client
//! talked to), and an upstream holding it could replay it anywhere it is
//! accepted, the confused-deputy problem. Instead the filter mints a token
//! for the one call it forwards: `aud` = that server's resource, `sub` = the
//! user, `act.sub` = the agent (RFC 8693 actor), `scope` = what this call
//! needed, a random `jti`, and a life of seconds (60 by default, never more
//! than an hour), signed with the server's own key from the bundle, so the
//! upstream verifies it offline and a leaked one is worth almost nothing.
//!
//! Only EdDSA (Ed25519) and HS256 are offered: both are deterministic, fast
//! in wasm (tens of microseconds), and need no randomness to sign; the `jti`
//! comes from [`crate::env::Env::random_bytes`].

use super::SpecError;
use super::b64;
use crate::env::Env;
use serde_json::{Map, Value, json};
use std::fmt;

/// Default minted-token life, seconds.
pub const DEFAULT_LIFETIME_SECONDS: u64 = 60;
/// Longest minted-token life, seconds.
pub const MAX_LIFETIME_SECONDS: u64 = 3600;
/// Issuer of minted tokens unless the spec names one.
pub const DEFAULT_ISSUER: &str = "portcullis";

#[derive(Clone)]
enum MintKey {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Hs256(Vec<u8>),
}

/// A compiled signing key and token template for one server.
#[derive(Clone)]
pub struct Minter {
    key: MintKey,
    pub kid: Option<String>,
    pub issuer: String,
    pub lifetime_seconds: u64,
}

impl fmt::Debug for Minter {
    // The key is a secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("lifetime_seconds", &self.lifetime_seconds)
            .finish()
    }
}

/// What goes into one minted token.
#[derive(Debug, Clone, Copy)]
pub struct MintRequest<'a> {
    /// The upstream server's resource URI (`aud`).
    pub audience: &'a str,
    pub subject: &'a str,
    pub agent: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// Scopes for this call (`scope`, space-separated).
    pub scopes: &'a [String],
}

/// A minted token and the facts the audit record wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedToken {
    pub token: String,
    pub jti: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl MintedToken {
    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

impl Minter {
    /// Compiles a private JWK (`{"kty":"OKP","crv":"Ed25519","d":..,"x":..}`
    /// or `{"kty":"oct","k":..}`), with an optional `kid` and `alg` (which
    /// must be EdDSA or HS256 respectively). `at` is the key's pointer.
    pub fn compile(
        key: &Value,
        issuer: Option<&str>,
        lifetime_seconds: u64,
        at: &str,
        lifetime_at: &str,
    ) -> Result<Minter, Vec<SpecError>> {
        let mut errors = Vec::new();
        if lifetime_seconds == 0 || lifetime_seconds > MAX_LIFETIME_SECONDS {
            errors.push((
                lifetime_at.to_string(),
                format!("between 1 and {MAX_LIFETIME_SECONDS} seconds"),
            ));
        }
        let Some(obj) = key.as_object() else {
            errors.push((
                at.to_string(),
                "the signing key must be a JWK object".into(),
            ));
            return Err(errors);
        };
        let text = |name: &str| obj.get(name).and_then(Value::as_str);
        let kid = text("kid").map(str::to_string);
        let alg = text("alg");
        let bytes = |name: &str, errors: &mut Vec<SpecError>| -> Option<Vec<u8>> {
            let v = text(name).and_then(b64::decode);
            if v.is_none() {
                errors.push((
                    format!("{at}/{name}"),
                    format!("{name} is required, as canonical unpadded base64url"),
                ));
            }
            v
        };
        let mint_key = match (text("kty"), text("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                if alg.is_some_and(|a| a != "EdDSA") {
                    errors.push((format!("{at}/alg"), "an Ed25519 key signs EdDSA".into()));
                }
                let d = bytes("d", &mut errors);
                match d.as_deref().map(<[u8; 32]>::try_from) {
                    Some(Ok(seed)) => {
                        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
                        if let Some(x) = text("x")
                            && b64::decode(x).as_deref() != Some(sk.verifying_key().as_bytes())
                        {
                            errors.push((format!("{at}/x"), "x is not the public key of d".into()));
                        }
                        Some(MintKey::Ed25519(Box::new(sk)))
                    }
                    Some(Err(_)) => {
                        errors.push((format!("{at}/d"), "an Ed25519 seed is 32 bytes".into()));
                        None
                    }
                    None => None,
                }
            }
            (Some("oct"), _) => {
                if alg.is_some_and(|a| a != "HS256") {
                    errors.push((format!("{at}/alg"), "an oct key signs HS256".into()));
                }
                match bytes("k", &mut errors) {
                    Some(k) if k.len() >= 32 => Some(MintKey::Hs256(k)),
                    Some(_) => {
                        errors.push((
                            format!("{at}/k"),
                            "an HS256 secret is at least 32 bytes".into(),
                        ));
                        None
                    }
                    None => None,
                }
            }
            _ => {
                errors.push((
                    format!("{at}/kty"),
                    "minting keys are Ed25519 (kty OKP, crv Ed25519) or HS256 (kty oct)".into(),
                ));
                None
            }
        };
        match mint_key {
            Some(key) if errors.is_empty() => Ok(Minter {
                key,
                kid,
                issuer: issuer.unwrap_or(DEFAULT_ISSUER).to_string(),
                lifetime_seconds,
            }),
            _ => Err(errors),
        }
    }

    /// `EdDSA` or `HS256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            MintKey::Ed25519(_) => "EdDSA",
            MintKey::Hs256(_) => "HS256",
        }
    }

    /// The public JWK upstreams verify minted tokens with (EdDSA only; an
    /// HS256 secret is shared out of band).
    pub fn public_jwk(&self) -> Option<Value> {
        match &self.key {
            MintKey::Ed25519(sk) => {
                let mut jwk = json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "x": b64::encode(sk.verifying_key().as_bytes()),
                });
                if let (Some(kid), Some(obj)) = (&self.kid, jwk.as_object_mut()) {
                    obj.insert("kid".into(), json!(kid));
                }
                Some(jwk)
            }
            MintKey::Hs256(_) => None,
        }
    }

    /// Mints a token for one call. Time and the `jti` come from `env`.
    pub fn mint<E: Env + ?Sized>(&self, req: &MintRequest<'_>, env: &mut E) -> MintedToken {
        let now = env.now_nanos() / 1_000_000_000;
        let mut id = [0u8; 16];
        env.random_bytes(&mut id);
        let jti = b64::encode(&id);
        let exp = now.saturating_add(self.lifetime_seconds);

        let mut header = Map::new();
        header.insert("alg".into(), json!(self.algorithm()));
        header.insert("typ".into(), json!("at+jwt"));
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), json!(kid));
        }
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(req.subject));
        claims.insert("aud".into(), json!(req.audience));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(jti));
        if !req.scopes.is_empty() {
            claims.insert("scope".into(), json!(req.scopes.join(" ")));
        }
        if let Some(agent) = req.agent {
            claims.insert("act".into(), json!({ "sub": agent }));
        }
        if let Some(tenant) = req.tenant {
            claims.insert("tenant".into(), json!(tenant));
        }
        let mut token = b64::encode(Value::Object(header).to_string().as_bytes());
        token.push('.');
        token.push_str(&b64::encode(Value::Object(claims).to_string().as_bytes()));
        let signature = self.sign(token.as_bytes());
        token.push('.');
        token.push_str(&b64::encode(&signature));
        MintedToken {
            token,
            jti,
            issued_at: now,
            expires_at: exp,
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match &self.key {
            MintKey::Ed25519(sk) => {
                use ed25519_dalek::Signer;
                sk.sign(input).to_bytes().to_vec()
            }
            MintKey::Hs256(k) => {
                use hmac::{KeyInit, Mac};
                match hmac::Hmac::<sha2::Sha256>::new_from_slice(k) {
                    Ok(mut mac) => {
                        mac.update(input);
                        mac.finalize().into_bytes().to_vec()
                    }
                    // HMAC accepts keys of any length; unreachable.
                    Err(_) => Vec::new(),
                }
            }
        }
    }
}

//! `kind: IdentityProvider`: a trusted token issuer, compiled.
//!
//! A provider is an issuer plus everything needed to accept its tokens
//! without any I/O: the inline JWKS (the control plane fetches and rotates
//! it; the filter never does), the algorithm allowlist, the clock skew, the
//! required claims and the claim mapping. [`compile`] checks all of it at
//! configure time and reports each problem with the JSON pointer of its
//! field, so a typo in an algorithm name fails the bundle, not every request.
//!
//! A [`ProviderSet`] holds all providers of a bundle and routes a token to
//! the one whose `issuer` matches the token's `iss` (exact string match,
//! RFC 9207 style), consulting the verified-token cache first.
//!
//! Two trust modes exist ([`TrustMode`]): `verify`, where the filter checks
//! signatures itself, and `envoyJwtAuthn`, where Envoy's `jwt_authn` filter
//! already did and the filter only maps (and re-checks the times, issuer and
//! audience of) the payload Envoy put in its dynamic metadata.

use super::SpecError;
use super::cache::{CachedToken, TokenCache};
use super::claims::{ClaimMapping, ClaimMappingSpec, ClaimPath, Identity, Verification};
use super::error::IdentityError;
use super::jwks::{KeySet, parse_jwks};
use super::jwt::{self, Algorithm, Family};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Largest clock skew accepted in a spec, seconds.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
/// Default clock skew, seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Largest `maxTokenBytes` accepted in a spec.
pub const MAX_TOKEN_BYTES_LIMIT: usize = 64 * 1024;

/// How a provider's tokens are trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrustMode {
    /// The filter verifies signatures against the inline JWKS.
    #[default]
    Verify,
    /// Envoy's `jwt_authn` filter verified the token and stored its payload
    /// in dynamic metadata (`payload_in_metadata`); the filter trusts it.
    EnvoyJwtAuthn,
}

/// The `spec` of a `kind: IdentityProvider` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityProviderSpec {
    /// The exact `iss` of this provider's tokens.
    pub issuer: String,
    #[serde(default)]
    pub mode: TrustMode,
    /// The provider's JWKS, inline (`{"keys": [...]}`). Required in `verify`
    /// mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Accepted `alg` values. Required in `verify` mode; `none` is never
    /// accepted.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Audiences accepted in addition to the server's own resource URI.
    /// Leave empty unless the issuer cannot put the resource URI in `aud`
    /// (RFC 8707): any token for these audiences is accepted by every server
    /// that trusts this provider.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// Claims (names or JSON pointers) that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Whether tokens must carry `exp` (default true).
    #[serde(default = "yes")]
    pub require_expiry: bool,
    #[serde(default)]
    pub claims: ClaimMappingSpec,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// `envoyJwtAuthn` mode: the `payload_in_metadata` name configured on
    /// Envoy's `jwt_authn` provider (default `jwt_payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_payload_key: Option<String>,
}

fn default_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}
fn yes() -> bool {
    true
}
fn default_max_token_bytes() -> usize {
    jwt::DEFAULT_MAX_TOKEN_BYTES
}

/// A compiled identity provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub mode: TrustMode,
    pub keys: KeySet,
    pub algorithms: Vec<Algorithm>,
    pub audiences: Vec<String>,
    pub clock_skew_seconds: u64,
    pub required_claims: Vec<ClaimPath>,
    pub require_expiry: bool,
    pub mapping: ClaimMapping,
    pub max_token_bytes: usize,
    pub envoy_payload_key: String,
    /// SHA-256 of the spec's canonical JSON: cache entries verified under an
    /// older version of this provider (before a key rotation) are not reused.
    pub fingerprint: [u8; 32],
}

/// Compiles the `spec` (a JSON value, as found in the bundle) of the
/// `IdentityProvider` named `name`. Pointers in errors are relative to the
/// spec (`/jwks/keys/0/n`); prefix them with `/spec`.
pub fn compile_value(name: &str, spec: &Value) -> Result<Provider, Vec<SpecError>> {
    let parsed: IdentityProviderSpec =
        crate::spec::from_value_at(spec.clone(), "").map_err(|e| vec![e])?;
    compile(name, &parsed)
}

/// Compiles a parsed spec. See [`compile_value`].
pub fn compile(name: &str, spec: &IdentityProviderSpec) -> Result<Provider, Vec<SpecError>> {
    let mut errors: Vec<SpecError> = Vec::new();
    if spec.issuer.is_empty() {
        errors.push(("/issuer".into(), "issuer must not be empty".into()));
    }
    if spec.clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        errors.push((
            "/clockSkewSeconds".into(),
            format!("at most {MAX_CLOCK_SKEW_SECONDS} seconds"),
        ));
    }
    if spec.max_token_bytes == 0 || spec.max_token_bytes > MAX_TOKEN_BYTES_LIMIT {
        errors.push((
            "/maxTokenBytes".into(),
            format!("between 1 and {MAX_TOKEN_BYTES_LIMIT}"),
        ));
    }
    let mut algorithms = Vec::new();
    for (i, a) in spec.algorithms.iter().enumerate() {
        if a.eq_ignore_ascii_case("none") {
            errors.push((
                format!("/algorithms/{i}"),
                "alg none (unsigned tokens) is never accepted".into(),
            ));
            continue;
        }
        match Algorithm::parse(a) {
            Some(alg) if algorithms.contains(&alg) => {
                errors.push((format!("/algorithms/{i}"), format!("{a} listed twice")));
            }
            Some(alg) => algorithms.push(alg),
            None => errors.push((
                format!("/algorithms/{i}"),
                format!(
                    "unsupported algorithm {a:?}; expected one of {}",
                    Algorithm::names()
                ),
            )),
        }
    }
    let keys = match (&spec.jwks, spec.mode) {
        (Some(jwks), _) => parse_jwks(jwks, "/jwks").unwrap_or_else(|e| {
            errors.extend(e);
            KeySet::default()
        }),
        (None, TrustMode::Verify) => {
            errors.push(("/jwks".into(), "verify mode needs an inline jwks".into()));
            KeySet::default()
        }
        (None, TrustMode::EnvoyJwtAuthn) => KeySet::default(),
    };
    if spec.mode == TrustMode::Verify {
        if spec.algorithms.is_empty() {
            errors.push((
                "/algorithms".into(),
                "list the accepted algorithms (for example [RS256])".into(),
            ));
        }
        if let Some(jwks) = &spec.jwks
            && errors.is_empty()
        {
            for (i, key) in keys.keys.iter().enumerate() {
                if let Some(alg) = key.alg
                    && !algorithms.contains(&alg)
                {
                    errors.push((
                        format!("/jwks/keys/{i}/alg"),
                        format!("key alg {} is not in algorithms", alg.name()),
                    ));
                }
            }
            let usable = keys
                .keys
                .iter()
                .any(|k| algorithms.iter().any(|a| k.fits(*a)));
            if !usable && jwks.get("keys").is_some() {
                errors.push((
                    "/jwks/keys".into(),
                    "no key in jwks can verify any of the listed algorithms".into(),
                ));
            }
        }
    }
    let required_claims = spec
        .required_claims
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            ClaimPath::parse(c, &format!("/requiredClaims/{i}"))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    let mapping = ClaimMapping::compile(&spec.claims, "/claims").unwrap_or_else(|e| {
        errors.extend(e);
        ClaimMapping::compile(&ClaimMappingSpec::default(), "/claims")
            .unwrap_or_else(|_| empty_mapping())
    });
    if let Some(k) = &spec.envoy_payload_key
        && k.is_empty()
    {
        errors.push(("/envoyPayloadKey".into(), "must not be empty".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let canonical = serde_json::to_value(spec)
        .map(|v| crate::json::canonical_string(&v))
        .unwrap_or_default();
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(&Sha256::digest(format!("{name}\0{canonical}").as_bytes()));
    Ok(Provider {
        name: name.to_string(),
        issuer: spec.issuer.clone(),
        mode: spec.mode,
        keys,
        algorithms,
        audiences: spec.audiences.clone(),
        clock_skew_seconds: spec.clock_skew_seconds,
        required_claims,
        require_expiry: spec.require_expiry,
        mapping,
        max_token_bytes: spec.max_token_bytes,
        envoy_payload_key: spec
            .envoy_payload_key
            .clone()
            .unwrap_or_else(|| "jwt_payload".into()),
        fingerprint,
    })
}

fn empty_mapping() -> ClaimMapping {
    ClaimMapping {
        subject: Vec::new(),
        agent: Vec::new(),
        tenant: Vec::new(),
        roles: Vec::new(),
        groups: Vec::new(),
        scopes: Vec::new(),
    }
}

impl Provider {
    /// Verifies the signature of a parsed token and maps its claims. Does
    /// not check times or audience: see [`Provider::check`].
    pub fn verify_parsed(&self, parsed: jwt::Parsed<'_>) -> Result<Identity, IdentityError> {
        if self.mode != TrustMode::Verify {
            // An envoy-mode provider has no keys of its own.
            return Err(IdentityError::UnknownKid);
        }
        let alg = parsed.alg;
        if !self.algorithms.contains(&alg) {
            return Err(IdentityError::AlgNotAllowed);
        }
        let input = parsed.signing_input.as_bytes();
        let verified = match &parsed.kid {
            Some(kid) => {
                let key = self.keys.by_kid(kid).ok_or(IdentityError::UnknownKid)?;
                if !key.fits(alg) {
                    return Err(IdentityError::KeyConfusion);
                }
                jwt::verify_signature(alg, &key.material, input, &parsed.signature)
            }
            None => {
                let mut candidates = self.keys.keys.iter().filter(|k| k.fits(alg)).peekable();
                if candidates.peek().is_none() {
                    // An HS token where only public keys exist is the
                    // classic confusion attack; anything else is just
                    // a token no key can check.
                    let confused = alg.family() == Family::Hmac
                        || self
                            .keys
                            .keys
                            .iter()
                            .any(|k| k.material.family() == alg.family());
                    return Err(if confused && !self.keys.keys.is_empty() {
                        IdentityError::KeyConfusion
                    } else {
                        IdentityError::UnknownKid
                    });
                }
                candidates
                    .any(|k| jwt::verify_signature(alg, &k.material, input, &parsed.signature))
            }
        };
        if !verified {
            return Err(IdentityError::BadSignature);
        }
        let identity = super::claims::build_identity(
            &self.name,
            parsed.claims,
            &self.mapping,
            &self.required_claims,
            Verification::Signature { alg },
        )?;
        if identity.issuer != self.issuer {
            return Err(IdentityError::WrongIssuer);
        }
        Ok(identity)
    }

    /// The checks that depend on the request rather than the token: the
    /// times at `now` (Unix seconds) with skew, and the audience. Cheap;
    /// run on every request, cached or not.
    pub fn check(
        &self,
        identity: &Identity,
        resource: &str,
        now: u64,
    ) -> Result<(), IdentityError> {
        let skew = self.clock_skew_seconds;
        match identity.expires_at {
            Some(exp) if now >= exp.saturating_add(skew) => return Err(IdentityError::Expired),
            None if self.require_expiry => {
                return Err(IdentityError::MissingClaim {
                    claim: "exp".into(),
                });
            }
            _ => {}
        }
        if let Some(nbf) = identity.not_before
            && now.saturating_add(skew) < nbf
        {
            return Err(IdentityError::NotYetValid);
        }
        if let Some(iat) = identity.issued_at
            && now.saturating_add(skew) < iat
        {
            return Err(IdentityError::NotYetValid);
        }
        let ok = identity
            .audiences
            .iter()
            .any(|a| same_resource(a, resource) || self.audiences.iter().any(|x| x == a));
        if !ok {
            return Err(IdentityError::WrongAudience);
        }
        Ok(())
    }

    /// Maps a payload verified elsewhere (Envoy `jwt_authn`'s
    /// `payload_in_metadata`: protobuf `Struct`/`Value` bytes as
    /// `get_property` returns them, or JSON) to an [`Identity`]. No signature
    /// is checked, so call this only with a provider in
    /// [`TrustMode::EnvoyJwtAuthn`] and only with the value read from
    /// Envoy's dynamic metadata, never with anything from the request.
    /// Times, issuer and audience are still checked.
    pub fn identity_from_trusted_payload(
        &self,
        payload: &[u8],
        resource: &str,
        now: u64,
    ) -> Result<Identity, IdentityError> {
        if self.mode != TrustMode::EnvoyJwtAuthn {
            return Err(IdentityError::WrongIssuer);
        }
        let claims = super::envoy::payload_claims(payload)?;
        let identity = super::claims::build_identity(
            &self.name,
            claims,
            &self.mapping,
            &self.required_claims,
            Verification::EnvoyJwtAuthn,
        )?;
        if identity.issuer != self.issuer {
            return Err(IdentityError::WrongIssuer);
        }
        self.check(&identity, resource, now)?;
        Ok(identity)
    }

    /// The Envoy property path holding this provider's payload, in
    /// envoy-mode: `metadata.filter_metadata["envoy.filters.http.jwt_authn"][key]`.
    pub fn envoy_property_path(&self) -> [&str; 4] {
        [
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            &self.envoy_payload_key,
        ]
    }
}

/// `aud` names `resource`: exactly, or with a trailing slash when the
/// resource is a bare origin (`https://h` and `https://h/` are one resource,
/// and clients and issuers disagree on which to write).
fn same_resource(aud: &str, resource: &str) -> bool {
    if aud == resource {
        return true;
    }
    let bare_origin = resource
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.contains(['/', '?']));
    bare_origin && aud.strip_suffix('/') == Some(resource)
}

/// All identity providers of a bundle.
#[derive(Debug, Clone, Default)]
pub struct ProviderSet {
    providers: Vec<Provider>,
    max_token_bytes: usize,
}

impl ProviderSet {
    /// Fails (with the provider names) when two providers share an issuer:
    /// a token could then be routed to either.
    pub fn new(providers: Vec<Provider>) -> Result<ProviderSet, Vec<(String, SpecError)>> {
        let mut errors = Vec::new();
        for (i, p) in providers.iter().enumerate() {
            if let Some(first) = providers.iter().take(i).find(|q| q.issuer == p.issuer) {
                errors.push((
                    p.name.clone(),
                    (
                        "/issuer".to_string(),
                        format!("issuer already used by IdentityProvider {:?}", first.name),
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let max_token_bytes = providers
            .iter()
            .map(|p| p.max_token_bytes)
            .max()
            .unwrap_or(0);
        Ok(ProviderSet {
            providers,
            max_token_bytes,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    fn by_issuer(&self, issuer: &str, allowed: &[String]) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|p| p.issuer == issuer && (allowed.is_empty() || allowed.contains(&p.name)))
    }

    /// Verifies a bearer token for the server whose canonical resource URI
    /// is `resource`, accepting only the providers named in `allowed`
    /// (empty: any). `now` is Unix seconds. A cached verification is reused
    /// when the token, the provider and its keys are unchanged; times and
    /// audience are re-checked every time.
    pub fn authenticate(
        &self,
        token: &str,
        resource: &str,
        allowed: &[String],
        now: u64,
        cache: &mut TokenCache,
    ) -> Result<Arc<Identity>, IdentityError> {
        if token.len() > self.max_token_bytes {
            return Err(IdentityError::TooLarge);
        }
        if let Some(hit) = cache.get(token, now) {
            if let Some(p) = self.get(&hit.identity.provider)
                && p.fingerprint == hit.fingerprint
            {
                // Still valid for the servers that do trust this provider:
                // keep the entry either way.
                if !(allowed.is_empty() || allowed.contains(&p.name)) {
                    return Err(IdentityError::WrongIssuer);
                }
                p.check(&hit.identity, resource, now)?;
                return Ok(hit.identity.clone());
            }
            // Verified under a provider that changed or is gone.
            cache.remove(token);
        }
        let parsed = jwt::parse(token, self.max_token_bytes)?;
        let provider = match parsed.claims.get("iss") {
            Some(Value::String(iss)) => self
                .by_issuer(iss, allowed)
                .ok_or(IdentityError::WrongIssuer)?,
            Some(_) => return Err(IdentityError::Malformed),
            None => return Err(IdentityError::WrongIssuer),
        };
        if token.len() > provider.max_token_bytes {
            return Err(IdentityError::TooLarge);
        }
        let identity = provider.verify_parsed(parsed)?;
        provider.check(&identity, resource, now)?;
        let identity = Arc::new(identity);
        if let Some(exp) = identity.expires_at {
            cache.insert(
                token,
                CachedToken {
                    identity: identity.clone(),
                    fingerprint: provider.fingerprint,
                    expires_at: exp.saturating_add(provider.clock_skew_seconds),
                },
                now,
            );
        }
        Ok(identity)
    }

    /// [`Provider::identity_from_trusted_payload`] with the provider chosen
    /// by the payload's `iss` among `allowed` (empty: any).
    pub fn authenticate_trusted_payload(
        &self,
        payload: &[u8],
        resource: &str,
        allowed: &[String],
        now: u64,
    ) -> Result<Identity, IdentityError> {
        let claims = super::envoy::payload_claims(payload)?;
        let Some(Value::String(iss)) = claims.get("iss") else {
            return Err(IdentityError::WrongIssuer);
        };
        self.by_issuer(iss, allowed)
            .ok_or(IdentityError::WrongIssuer)?
            .identity_from_trusted_payload(payload, resource, now)
    }
}

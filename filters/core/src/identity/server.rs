//! Per-server identity settings: the `identity` field of an `McpServer`.
//!
//! This is the one struct the engine needs per server. It ties the pieces
//! together in the order a request meets them: [`ServerIdentity::authenticate`]
//! (token from the header, verified against the providers this server
//! trusts, `aud` = this server's resource URI), [`ServerIdentity::authorize`]
//! (the per-tool scopes, once the MCP message is classified), and
//! [`ServerIdentity::upstream_authorization`] (what replaces the client's
//! `Authorization` header before the request goes upstream). Every refusal
//! is an [`IdentityError`] whose challenge [`ServerIdentity::challenge`]
//! builds with this server's metadata URL.
//!
//! Token isolation is the default: without an `upstreamToken` key the
//! client's header is removed and nothing replaces it; with one, a token is
//! minted per call. Passthrough must be asked for by name, and
//! [`UpstreamAuth::Passthrough`] lets the audit record flag it.

use super::SpecError;
use super::cache::TokenCache;
use super::claims::Identity;
use super::error::IdentityError;
use super::extract::extract_bearer;
use super::metadata::ProtectedResource;
use super::mint::{DEFAULT_LIFETIME_SECONDS, MintRequest, MintedToken, Minter};
use super::provider::{ProviderSet, TrustMode};
use super::scopes::{ScopePolicy, ScopesSpec};
use crate::env::Env;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What the filter sends upstream in place of the client's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamTokenMode {
    /// A token minted for this call (needs `key`).
    Mint,
    /// Remove the client's `Authorization` header and send none.
    Strip,
    /// Forward the client's token unchanged. Breaks token isolation; only
    /// for upstreams that must see the original token. Audited.
    Passthrough,
}

/// `upstreamToken` in a server's identity settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTokenSpec {
    /// Default: `mint` when a `key` is given, else `strip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<UpstreamTokenMode>,
    /// The signing key, a private JWK: Ed25519 (`kty: OKP`) or HS256
    /// (`kty: oct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    /// `iss` of minted tokens (default `portcullis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` of minted tokens (default: the server's `resource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default = "default_lifetime")]
    pub lifetime_seconds: u64,
}

fn default_lifetime() -> u64 {
    DEFAULT_LIFETIME_SECONDS
}

/// The `identity` field the lead embeds in `McpServerSpec`
/// (`#[serde(default, skip_serializing_if = "Option::is_none")] pub identity:
/// Option<ServerIdentitySpec>`). Absent: the server needs no token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerIdentitySpec {
    /// The server's canonical resource URI (RFC 8707), for example
    /// `https://mcp.example.com/mcp`: the `aud` tokens must carry, and the
    /// `resource` of its RFC 9728 metadata.
    pub resource: String,
    /// Names of the `IdentityProvider` documents whose tokens are accepted.
    /// Empty: all of them.
    #[serde(default)]
    pub providers: Vec<String>,
    /// `authorization_servers` in the metadata. Default: the issuers of the
    /// accepted providers.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes: ScopesSpec,
    /// `scopes_supported` in the metadata. Default: derived from `scopes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_token: Option<UpstreamTokenSpec>,
}

/// Compiled per-server identity settings.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub metadata: ProtectedResource,
    pub providers: Vec<String>,
    pub scopes: ScopePolicy,
    pub upstream: Upstream,
}

/// Compiled upstream-token behaviour.
#[derive(Debug, Clone)]
pub enum Upstream {
    Mint {
        minter: Box<Minter>,
        audience: String,
    },
    Strip,
    Passthrough,
}

/// What to do with the `Authorization` header going upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    /// Remove it.
    Remove,
    /// Replace it with this minted token (`MintedToken::authorization()`).
    Replace(MintedToken),
    /// Leave the client's header as it is. Flag this in the audit record.
    Passthrough,
}

impl ServerIdentity {
    /// Compiles `spec` against the bundle's providers. Pointers are relative
    /// to the `identity` object (prefix them with `/spec/identity`).
    /// `tool_names` are the server's literal (non-glob) tool names, used to
    /// derive `scopes_supported`.
    pub fn compile(
        spec: &ServerIdentitySpec,
        providers: &ProviderSet,
        tool_names: &[&str],
    ) -> Result<ServerIdentity, Vec<SpecError>> {
        let mut errors = Vec::new();
        for (i, name) in spec.providers.iter().enumerate() {
            if providers.get(name).is_none() {
                errors.push((
                    format!("/providers/{i}"),
                    format!("no IdentityProvider named {name:?}"),
                ));
            }
        }
        if providers.is_empty() {
            errors.push((
                "/providers".into(),
                "identity needs at least one IdentityProvider in the bundle".into(),
            ));
        }
        let scopes = ScopePolicy::compile(&spec.scopes, "/scopes").unwrap_or_else(|e| {
            errors.extend(e);
            ScopePolicy::default()
        });
        let authorization_servers = if spec.authorization_servers.is_empty() {
            let mut list: Vec<String> = Vec::new();
            for p in providers.iter() {
                if (spec.providers.is_empty() || spec.providers.contains(&p.name))
                    && !list.contains(&p.issuer)
                {
                    list.push(p.issuer.clone());
                }
            }
            list
        } else {
            spec.authorization_servers.clone()
        };
        let scopes_supported = spec
            .scopes_supported
            .clone()
            .unwrap_or_else(|| scopes.supported(tool_names));
        let metadata = match ProtectedResource::new(
            &spec.resource,
            authorization_servers,
            scopes_supported,
            "/resource",
        ) {
            Ok(mut m) => {
                m.resource_name = spec.resource_name.clone();
                m.resource_documentation = spec.resource_documentation.clone();
                Some(m)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let upstream = match &spec.upstream_token {
            None => Upstream::Strip,
            Some(u) => {
                let mode = u.mode.unwrap_or(if u.key.is_some() {
                    UpstreamTokenMode::Mint
                } else {
                    UpstreamTokenMode::Strip
                });
                match (mode, &u.key) {
                    (UpstreamTokenMode::Mint, Some(key)) => match Minter::compile(
                        key,
                        u.issuer.as_deref(),
                        u.lifetime_seconds,
                        "/upstreamToken/key",
                        "/upstreamToken/lifetimeSeconds",
                    ) {
                        Ok(m) => Upstream::Mint {
                            minter: Box::new(m),
                            audience: u
                                .audience
                                .clone()
                                .or_else(|| metadata.as_ref().map(|m| m.resource.clone()))
                                .unwrap_or_default(),
                        },
                        Err(e) => {
                            errors.extend(e);
                            Upstream::Strip
                        }
                    },
                    (UpstreamTokenMode::Mint, None) => {
                        errors.push((
                            "/upstreamToken/key".into(),
                            "mode mint needs a signing key".into(),
                        ));
                        Upstream::Strip
                    }
                    (UpstreamTokenMode::Strip, _) => Upstream::Strip,
                    (UpstreamTokenMode::Passthrough, _) => Upstream::Passthrough,
                }
            }
        };
        match metadata {
            Some(metadata) if errors.is_empty() => Ok(ServerIdentity {
                metadata,
                providers: spec.providers.clone(),
                scopes,
                upstream,
            }),
            _ => Err(errors),
        }
    }

    /// The canonical resource URI.
    pub fn resource(&self) -> &str {
        &self.metadata.resource
    }

    /// Step 1, on request headers: who is calling. The one authentication
    /// path, used by the engine for every request to this server: claims
    /// Envoy's `jwt_authn` verified (read through `env`'s properties at
    /// [`super::Provider::envoy_property_path`]) for the server's providers
    /// in that mode, else the bearer token from `authorization` (every
    /// `Authorization` value) verified here by its providers in verify mode.
    /// A token in the query (`path`) is refused in either mode. `now` is in
    /// Unix seconds.
    pub fn authenticate_request(
        &self,
        providers: &ProviderSet,
        env: &dyn Env,
        authorization: &[&str],
        path: &str,
        now: u64,
        cache: &mut TokenCache,
    ) -> Result<Arc<Identity>, IdentityError> {
        if super::extract::query_has_token(path) {
            return Err(IdentityError::TokenInQuery);
        }
        // With no `jwt_authn` provider (most bundles) the list is empty, and
        // an empty Vec does not allocate.
        let envoy = self.accepted(providers, TrustMode::EnvoyJwtAuthn);
        for name in &envoy {
            let Some(p) = providers.get(name) else {
                continue;
            };
            if let Some(payload) = env.property(&p.envoy_property_path()) {
                return providers
                    .authenticate_trusted_payload(&payload, self.resource(), &envoy, now)
                    .map(Arc::new);
            }
        }
        let verify = self.accepted(providers, TrustMode::Verify);
        if verify.is_empty() {
            return Err(IdentityError::MissingToken);
        }
        let token = extract_bearer(authorization, path)?;
        providers.authenticate(token, self.resource(), &verify, now, cache)
    }

    /// The server's providers (all the bundle's, when it names none) in
    /// `mode`.
    fn accepted(&self, providers: &ProviderSet, mode: TrustMode) -> Vec<String> {
        providers
            .iter()
            .filter(|p| p.mode == mode && self.trusts(&p.name))
            .map(|p| p.name.clone())
            .collect()
    }

    /// Whether this server accepts the provider named `name` (it names
    /// none: all of them).
    fn trusts(&self, name: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| p == name)
    }

    /// [`Self::authenticate_request`] for a request carrying a bearer token
    /// and no `jwt_authn` claims.
    pub fn authenticate(
        &self,
        providers: &ProviderSet,
        authorization: &[&str],
        path: &str,
        now: u64,
        cache: &mut TokenCache,
    ) -> Result<Arc<Identity>, IdentityError> {
        self.authenticate_request(providers, &NoClaims, authorization, path, now, cache)
    }

    /// [`Self::authenticate_request`] for a request whose `jwt_authn` claims
    /// are `payload` (what `get_property` returned for the provider's
    /// [`super::Provider::envoy_property_path`]; `None` when absent).
    pub fn authenticate_envoy(
        &self,
        providers: &ProviderSet,
        payload: Option<&[u8]>,
        path: &str,
        now: u64,
    ) -> Result<Arc<Identity>, IdentityError> {
        let mut cache = TokenCache::new(0);
        self.authenticate_request(providers, &EnvoyClaims(payload), &[], path, now, &mut cache)
    }

    /// Step 2, once the MCP message is classified: the scopes for `method`
    /// (and `tool`, for `tools/call`).
    pub fn authorize(
        &self,
        identity: &Identity,
        method: &str,
        tool: Option<&str>,
    ) -> Result<(), IdentityError> {
        self.scopes.check(&identity.scopes, method, tool)
    }

    /// Step 3, before forwarding: what to do with `Authorization`.
    pub fn upstream_authorization<E: Env + ?Sized>(
        &self,
        identity: &Identity,
        method: &str,
        tool: Option<&str>,
        env: &mut E,
    ) -> UpstreamAuth {
        self.upstream_authorization_for(identity, &[(method, tool)], env)
    }

    /// Step 3 for a request carrying several calls (a batch), or none (a
    /// GET stream, a DELETE): one token whose `scope` is the union of what
    /// each call needs, so it covers the request and nothing more.
    pub fn upstream_authorization_for<E: Env + ?Sized>(
        &self,
        identity: &Identity,
        calls: &[(&str, Option<&str>)],
        env: &mut E,
    ) -> UpstreamAuth {
        match &self.upstream {
            Upstream::Strip => UpstreamAuth::Remove,
            Upstream::Passthrough => UpstreamAuth::Passthrough,
            Upstream::Mint { minter, audience } => {
                let scopes = self.minted_scopes(calls);
                UpstreamAuth::Replace(minter.mint(
                    &MintRequest {
                        audience,
                        subject: &identity.subject,
                        agent: identity.agent.as_deref(),
                        tenant: identity.tenant.as_deref(),
                        scopes: &scopes,
                    },
                    env,
                ))
            }
        }
    }

    /// Whether the upstream gets a token minted per request, whose scopes
    /// depend on the request's calls ([`Self::minted_scopes`]).
    pub fn mints(&self) -> bool {
        matches!(self.upstream, Upstream::Mint { .. })
    }

    /// The `scope` a token minted for `calls` carries: the union of what
    /// each call needs (a tool without a scope rule gets `tools:NAME`), or
    /// the server's own scopes for a request with no call.
    pub fn minted_scopes(&self, calls: &[(&str, Option<&str>)]) -> Vec<String> {
        let mut scopes: Vec<String> = Vec::new();
        let mut add = |s: String| {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        };
        if calls.is_empty() {
            self.scopes
                .required("", None)
                .into_iter()
                .for_each(&mut add);
        }
        for (method, tool) in calls {
            let required = self.scopes.required(method, *tool);
            if required.is_empty()
                && let Some(t) = tool
                && super::scopes::is_scope_token(t)
            {
                add(format!("tools:{t}"));
            }
            required.into_iter().for_each(&mut add);
        }
        scopes
    }

    /// The `WWW-Authenticate` value for `error`, pointing at this server's
    /// metadata.
    pub fn challenge(&self, error: &IdentityError) -> String {
        self.metadata.challenge_for(error)
    }
}

/// A host with no `jwt_authn` claims.
struct NoClaims;

impl Env for NoClaims {
    fn now_nanos(&self) -> u64 {
        0
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

/// A host whose `jwt_authn` claims are one payload, at every provider's
/// path.
struct EnvoyClaims<'a>(Option<&'a [u8]>);

impl Env for EnvoyClaims<'_> {
    fn now_nanos(&self) -> u64 {
        0
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        buf.fill(0);
    }
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        self.0.map(<[u8]>::to_vec)
    }
}

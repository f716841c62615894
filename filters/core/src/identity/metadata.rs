//! RFC 9728 protected-resource metadata and the 401 challenge that points
//! to it.
//!
//! An MCP client that gets a 401 reads `resource_metadata` from the
//! `WWW-Authenticate` header, fetches that document, and learns which
//! authorization servers issue tokens for this resource and which scopes
//! exist. The filter answers both the path-qualified form
//! (`/.well-known/oauth-protected-resource/mcp` for resource
//! `https://host/mcp`, RFC 9728 §3.1) and, where the lead allows it, the bare
//! form, straight from the bundle: no upstream is consulted.
//!
//! The resource URI is the server's canonical identifier (RFC 8707): it is
//! what tokens must carry in `aud`, and the metadata's `resource` member must
//! be identical to it (§3.3), so it is normalised once, here.

use super::SpecError;
use serde_json::{Value, json};

/// The well-known path prefix.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// One server's protected-resource description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// Canonical resource URI: lowercase scheme and host, no fragment.
    pub resource: String,
    /// `scheme://authority`.
    origin: String,
    /// The path (and query) after the authority; "" for none or "/".
    path: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
}

/// Canonicalises a resource URI: `https://Host/path` → `https://host/path`.
/// Accepts `https`, and `http` for loopback hosts only. Refuses fragments,
/// userinfo and empty hosts.
pub fn canonical_resource(uri: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| "resource must be an absolute URI (https://host/path)".to_string())?;
    let scheme = scheme.to_ascii_lowercase();
    if uri.contains('#') {
        return Err("resource must not contain a fragment (RFC 8707)".into());
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("resource needs a host and no userinfo".into());
    }
    let authority = authority.to_ascii_lowercase();
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .and_then(|i| authority.get(..=i))
            .unwrap_or(&authority)
    } else {
        authority.split(':').next().unwrap_or(&authority)
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match scheme.as_str() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("resource must be https (http only for localhost)".into()),
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("resource must not contain whitespace".into());
    }
    let origin = format!("{scheme}://{authority}");
    let path = if path == "/" { "" } else { path };
    Ok((format!("{origin}{path}"), origin, path.to_string()))
}

impl ProtectedResource {
    /// `at` is the pointer of the resource field, for errors.
    pub fn new(
        resource: &str,
        authorization_servers: Vec<String>,
        scopes_supported: Vec<String>,
        at: &str,
    ) -> Result<ProtectedResource, SpecError> {
        let (resource, origin, path) =
            canonical_resource(resource).map_err(|m| (at.to_string(), m))?;
        Ok(ProtectedResource {
            resource,
            origin,
            path,
            authorization_servers,
            scopes_supported,
            resource_name: None,
            resource_documentation: None,
        })
    }

    /// The request path of the metadata document:
    /// `/.well-known/oauth-protected-resource` + the resource's path.
    pub fn metadata_path(&self) -> String {
        format!("{WELL_KNOWN}{}", self.path)
    }

    /// The absolute metadata URL, for `resource_metadata=`.
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.origin, self.metadata_path())
    }

    /// Whether a `GET` for `request_path` (query ignored) is this server's
    /// metadata. The bare `/.well-known/oauth-protected-resource` also
    /// matches when `allow_bare` (the lead sets it when this is the only
    /// server on the authority, or the resource has no path).
    pub fn serves(&self, request_path: &str, allow_bare: bool) -> bool {
        let path = request_path
            .split(['?', '#'])
            .next()
            .unwrap_or(request_path);
        path == self.metadata_path() || ((allow_bare || self.path.is_empty()) && path == WELL_KNOWN)
    }

    /// The RFC 9728 document.
    pub fn document(&self) -> Value {
        let mut doc = json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if let Some(obj) = doc.as_object_mut() {
            if !self.scopes_supported.is_empty() {
                obj.insert("scopes_supported".into(), json!(self.scopes_supported));
            }
            if let Some(n) = &self.resource_name {
                obj.insert("resource_name".into(), json!(n));
            }
            if let Some(d) = &self.resource_documentation {
                obj.insert("resource_documentation".into(), json!(d));
            }
        }
        doc
    }

    /// The document as a response body (`application/json`).
    pub fn document_json(&self) -> String {
        self.document().to_string()
    }

    /// The `WWW-Authenticate` value for a request without credentials.
    pub fn challenge(&self) -> String {
        super::error::challenge(&[("resource_metadata", self.metadata_url())])
    }

    /// The `WWW-Authenticate` value for a refused identity.
    pub fn challenge_for(&self, error: &super::IdentityError) -> String {
        error.www_authenticate(Some(&self.metadata_url()))
    }
}

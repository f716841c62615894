//! Claims: the registered-claim checks and the mapping to an [`Identity`].
//!
//! Identity providers disagree on where they put things (the agent may be in
//! `azp`, `client_id` or the RFC 8693 `act` claim; scopes in `scope` or
//! `scp`; tenants in `tid` or a custom claim), so each field of an
//! [`Identity`] is read from an ordered list of claim paths, first present
//! wins. A path starting with `/` is a JSON pointer into the claims
//! (`/act/sub`); anything else is a top-level claim name, so names with dots
//! or slashes-free URLs (`https:..`) need no escaping.
//!
//! The time and audience checks run on the [`Identity`], not on the raw
//! claims, so a cached identity is re-checked exactly like a fresh one.

use super::SpecError;
use super::error::IdentityError;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Where each [`Identity`] field comes from. Each field is one claim path
/// or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMappingSpec {
    #[serde(default = "default_subject", deserialize_with = "one_or_many")]
    pub subject: Vec<String>,
    #[serde(default = "default_agent", deserialize_with = "one_or_many")]
    pub agent: Vec<String>,
    #[serde(default = "default_tenant", deserialize_with = "one_or_many")]
    pub tenant: Vec<String>,
    #[serde(default = "default_roles", deserialize_with = "one_or_many")]
    pub roles: Vec<String>,
    #[serde(default = "default_groups", deserialize_with = "one_or_many")]
    pub groups: Vec<String>,
    #[serde(default = "default_scopes", deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
}

impl Default for ClaimMappingSpec {
    fn default() -> Self {
        ClaimMappingSpec {
            subject: default_subject(),
            agent: default_agent(),
            tenant: default_tenant(),
            roles: default_roles(),
            groups: default_groups(),
            scopes: default_scopes(),
        }
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
fn default_subject() -> Vec<String> {
    strings(&["sub"])
}
fn default_agent() -> Vec<String> {
    strings(&["/act/sub", "azp", "client_id"])
}
fn default_tenant() -> Vec<String> {
    strings(&["tenant", "tid"])
}
fn default_roles() -> Vec<String> {
    strings(&["roles"])
}
fn default_groups() -> Vec<String> {
    strings(&["groups"])
}
fn default_scopes() -> Vec<String> {
    strings(&["scope", "scp"])
}

/// Accepts `"x"` or `["x", "y"]`.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A claim location: a top-level name or a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    pub fn parse(text: &str, at: &str) -> Result<ClaimPath, SpecError> {
        if text.is_empty() || text == "/" {
            return Err((at.to_string(), "empty claim path".into()));
        }
        Ok(ClaimPath(text.to_string()))
    }

    pub fn get<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c Value> {
        let value = if let Some(pointer) = self.0.strip_prefix('/') {
            let (first, rest) = match pointer.split_once('/') {
                Some((f, r)) => (f, Some(r)),
                None => (pointer, None),
            };
            let first = first.replace("~1", "/").replace("~0", "~");
            let top = claims.get(&first)?;
            match rest {
                Some(r) => top.pointer(&format!("/{r}"))?,
                None => top,
            }
        } else {
            claims.get(&self.0)?
        };
        (!value.is_null()).then_some(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Compiled [`ClaimMappingSpec`].
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    pub subject: Vec<ClaimPath>,
    pub agent: Vec<ClaimPath>,
    pub tenant: Vec<ClaimPath>,
    pub roles: Vec<ClaimPath>,
    pub groups: Vec<ClaimPath>,
    pub scopes: Vec<ClaimPath>,
}

impl ClaimMapping {
    pub fn compile(spec: &ClaimMappingSpec, at: &str) -> Result<ClaimMapping, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut paths = |field: &str, list: &[String]| -> Vec<ClaimPath> {
            if list.is_empty() && field == "subject" {
                errors.push((format!("{at}/{field}"), "subject needs a claim".into()));
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    ClaimPath::parse(p, &format!("{at}/{field}/{i}"))
                        .map_err(|e| errors.push(e))
                        .ok()
                })
                .collect()
        };
        let mapping = ClaimMapping {
            subject: paths("subject", &spec.subject),
            agent: paths("agent", &spec.agent),
            tenant: paths("tenant", &spec.tenant),
            roles: paths("roles", &spec.roles),
            groups: paths("groups", &spec.groups),
            scopes: paths("scopes", &spec.scopes),
        };
        if errors.is_empty() {
            Ok(mapping)
        } else {
            Err(errors)
        }
    }
}

/// How an [`Identity`] was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The filter checked the signature itself.
    Signature { alg: super::alg::Algorithm },
    /// Claims taken from Envoy's `jwt_authn` filter, which checked the
    /// signature; the filter did not.
    EnvoyJwtAuthn,
}

/// Who is calling. Built from verified claims only.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Name of the `IdentityProvider` document that accepted the token.
    pub provider: String,
    pub issuer: String,
    /// The person (or service) on whose behalf the call is made.
    pub subject: String,
    /// The client or agent acting for the subject, when the token says.
    pub agent: Option<String>,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub jti: Option<String>,
    pub audiences: Vec<String>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    pub not_before: Option<u64>,
    pub issued_at: Option<u64>,
    pub verification: Verification,
    /// All claims, for policy. Never log these wholesale.
    pub claims: Map<String, Value>,
}

/// Longest value put in an `x-mcp-*` header.
pub const MAX_HEADER_VALUE: usize = 256;

impl Identity {
    /// The audit headers for this identity: `x-mcp-subject`, and
    /// `x-mcp-agent` / `x-mcp-tenant` when known. Values are cleaned for a
    /// header (control characters dropped, at most [`MAX_HEADER_VALUE`]
    /// bytes), since claims are issuer-controlled text.
    pub fn audit_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("x-mcp-subject", header_safe(&self.subject))];
        if let Some(a) = &self.agent {
            out.push(("x-mcp-agent", header_safe(a)));
        }
        if let Some(t) = &self.tenant {
            out.push(("x-mcp-tenant", header_safe(t)));
        }
        out
    }

    /// Whether every scope in `required` was granted.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|r| self.scopes.iter().any(|g| g == r))
    }
}

/// Drops control characters and caps the length at a char boundary.
pub fn header_safe(s: &str) -> String {
    // The usual case, printable ASCII that fits, is copied as it is.
    if s.len() <= MAX_HEADER_VALUE && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_owned();
    }
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_HEADER_VALUE {
            break;
        }
        out.push(c);
    }
    out
}

/// A NumericDate (RFC 7519 §2): a non-negative number, fractions dropped.
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, IdentityError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n.as_f64()
                && (0.0..1.0e15).contains(&f)
            {
                // Bounded above, so the cast cannot saturate surprisingly.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(f.floor() as u64))
            } else {
                Err(IdentityError::Malformed)
            }
        }
        Some(_) => Err(IdentityError::Malformed),
    }
}

/// `aud` as a list: a string or an array of strings (RFC 7519 §4.1.3).
pub fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, IdentityError> {
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or(IdentityError::Malformed)
            })
            .collect(),
        Some(_) => Err(IdentityError::Malformed),
    }
}

fn first_string(
    claims: &Map<String, Value>,
    paths: &[ClaimPath],
) -> Result<Option<String>, IdentityError> {
    for p in paths {
        match p.get(claims) {
            Some(Value::String(s)) if !s.is_empty() => return Ok(Some(s.clone())),
            Some(Value::String(_)) | None => {}
            // Numbers are common for numeric user ids; keep their text.
            Some(Value::Number(n)) => return Ok(Some(n.to_string())),
            Some(_) => return Err(IdentityError::Malformed),
        }
    }
    Ok(None)
}

/// A list claim: an array of strings, or one string split on spaces (the
/// OAuth `scope` form).
fn string_list(
    claims: &Map<String, Value>,
    paths: &[ClaimPath],
) -> Result<Vec<String>, IdentityError> {
    for p in paths {
        match p.get(claims) {
            None => {}
            Some(Value::String(s)) => {
                return Ok(s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect());
            }
            Some(Value::Array(items)) => {
                return items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or(IdentityError::Malformed)
                    })
                    .collect();
            }
            Some(_) => return Err(IdentityError::Malformed),
        }
    }
    Ok(Vec::new())
}

/// Builds an [`Identity`] from claims whose origin is already established.
/// Checks types of the registered claims and the presence of `required`
/// claims and of a subject; not times or audience (see
/// [`super::Provider::check`]).
pub fn build_identity(
    provider: &str,
    claims: Map<String, Value>,
    mapping: &ClaimMapping,
    required: &[ClaimPath],
    verification: Verification,
) -> Result<Identity, IdentityError> {
    let issuer = match claims.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(IdentityError::Malformed),
        None => return Err(IdentityError::WrongIssuer),
    };
    for r in required {
        if r.get(&claims).is_none() {
            return Err(IdentityError::MissingClaim {
                claim: r.as_str().to_string(),
            });
        }
    }
    let subject =
        first_string(&claims, &mapping.subject)?.ok_or_else(|| IdentityError::MissingClaim {
            claim: mapping
                .subject
                .first()
                .map_or("sub", ClaimPath::as_str)
                .to_string(),
        })?;
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(IdentityError::Malformed),
    };
    Ok(Identity {
        provider: provider.to_string(),
        issuer,
        agent: first_string(&claims, &mapping.agent)?,
        tenant: first_string(&claims, &mapping.tenant)?,
        roles: string_list(&claims, &mapping.roles)?,
        groups: string_list(&claims, &mapping.groups)?,
        scopes: string_list(&claims, &mapping.scopes)?,
        jti,
        audiences: audiences(&claims)?,
        expires_at: numeric_date(&claims, "exp")?,
        not_before: numeric_date(&claims, "nbf")?,
        issued_at: numeric_date(&claims, "iat")?,
        subject,
        verification,
        claims,
    })
}

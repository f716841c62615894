//! Human approval of one specific call: ids that say what they cover, and
//! signed single-use tokens that grant exactly that.
//!
//! Shaped so the filter needs no approval service: a `requireApproval`
//! refusal carries an **approval id** that encodes what is being approved
//! (subject, server, tool, the SHA-256 of the canonical arguments and the
//! rule), so whoever approves sees exactly that, and signs it. The
//! **approval token** is `pat1.<payload>.<signature>` (base64url), an
//! Ed25519 signature over the payload `{id, jti, iat, exp}`. The filter
//! holds only public keys (`Settings.spec.approvals.keys`), recomputes the
//! id of the call in front of it, and accepts the token only for that id,
//! before it expires, once: the `jti` is recorded in shared data, created
//! atomically so two worker VMs cannot both spend it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an approval covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The subject (person) calling; `-` when the call carried no identity.
    pub sub: String,
    pub srv: String,
    pub tool: String,
    /// `sha256:<hex>` of the arguments' RFC 8785 form.
    pub args: String,
    /// The rule that asked for approval.
    pub rule: String,
}

const ID_PREFIX: &str = "apr1.";
const TOKEN_PREFIX: &str = "pat1.";
/// Domain separation: a signature over an approval is never valid as
/// anything else (a bundle signature, a checkpoint).
const SIGNED_CONTEXT: &[u8] = b"portcullis-approval-v1\n";

/// Why an approval token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("the approval token is malformed")]
    Malformed,
    #[error(
        "the approval token's signature does not verify against any approval key in the bundle"
    )]
    BadSignature,
    #[error("the approval is for another call (different subject, server, tool or arguments)")]
    WrongCall,
    #[error("the approval expired")]
    Expired,
    #[error("the approval's lifetime exceeds Settings.spec.approvals.maxTtl")]
    TooLong,
    #[error("the approval was already used")]
    AlreadyUsed,
    #[error("the requestState is not one the approval service issued for this call")]
    InvalidState,
    #[error("the user declined the approval request")]
    Declined,
    #[error("a person denied the call")]
    Denied,
    #[error("the approval service could not be asked")]
    ServiceUnavailable,
    #[error("single use could not be checked: the fleet state service did not answer; try again")]
    FleetUnavailable,
}

impl ApprovalError {
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::Malformed => "malformed",
            ApprovalError::BadSignature => "bad_signature",
            ApprovalError::WrongCall => "wrong_call",
            ApprovalError::Expired => "expired",
            ApprovalError::TooLong => "too_long",
            ApprovalError::AlreadyUsed => "already_used",
            ApprovalError::InvalidState => "invalid_state",
            ApprovalError::Declined => "declined",
            ApprovalError::Denied => "denied",
            ApprovalError::ServiceUnavailable => "service_unavailable",
            ApprovalError::FleetUnavailable => "fleet_unavailable",
        }
    }
}

/// The approval token's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub id: String,
    /// Unique per token; what single use is recorded by.
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

/// The SHA-256 of a call's canonical arguments (absent arguments = `{}`).
pub fn arguments_hash(arguments: Option<&Value>) -> String {
    use sha2::{Digest, Sha256};
    let empty = Value::Object(serde_json::Map::new());
    let canon = crate::jcs::to_string(arguments.unwrap_or(&empty));
    format!("sha256:{}", hex::encode(Sha256::digest(canon.as_bytes())))
}

/// The approval id of a call: its binding, canonical and encoded.
pub fn approval_id(binding: &Binding) -> String {
    let value = serde_json::to_value(binding).unwrap_or(Value::Null);
    let canon = crate::jcs::to_string(&value);
    format!("{ID_PREFIX}{}", URL_SAFE_NO_PAD.encode(canon.as_bytes()))
}

/// What an approval id covers (for whoever approves it).
pub fn parse_id(id: &str) -> Result<Binding, String> {
    let body = id
        .strip_prefix(ID_PREFIX)
        .ok_or_else(|| format!("an approval id starts with {ID_PREFIX:?}"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| "the approval id is not base64url".to_owned())?;
    let value = crate::json::parse_strict(&bytes)
        .map_err(|e| format!("the approval id is not JSON: {e}"))?;
    let binding: Binding = serde_json::from_value(value)
        .map_err(|e| format!("the approval id does not describe a call: {e}"))?;
    // Only the canonical form is an id, so one call has one id.
    if approval_id(&binding) != id {
        return Err("the approval id is not in canonical form".into());
    }
    Ok(binding)
}

/// Mints an approval token for `id` (the CLI's `portcullis approve`).
pub fn mint(
    id: &str,
    key: &SigningKey,
    now: u64,
    ttl_secs: u64,
    jti: &[u8],
) -> Result<String, String> {
    parse_id(id)?;
    let grant = Grant {
        id: id.to_owned(),
        jti: hex::encode(jti),
        iat: now,
        exp: now.saturating_add(ttl_secs),
    };
    let payload = serde_json::to_vec(&grant).map_err(|e| e.to_string())?;
    let payload_b64 = URL_SAFE_NO_PAD.encode(&payload);
    let mut message = SIGNED_CONTEXT.to_vec();
    message.extend_from_slice(payload_b64.as_bytes());
    let sig = key.sign(&message);
    Ok(format!(
        "{TOKEN_PREFIX}{payload_b64}.{}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    ))
}

/// Checks a token for the call `expected_id`, at `now` (Unix seconds).
/// Single use is the caller's to record (it needs the shared store).
pub fn verify(
    token: &str,
    keys: &[VerifyingKey],
    expected_id: &str,
    now: u64,
    max_ttl_secs: u64,
) -> Result<Grant, ApprovalError> {
    let body = token
        .trim()
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(ApprovalError::Malformed)?;
    let (payload_b64, sig_b64) = body.split_once('.').ok_or(ApprovalError::Malformed)?;
    let sig_bytes: [u8; 64] = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(ApprovalError::Malformed)?;
    let sig = Signature::from_bytes(&sig_bytes);
    let mut message = SIGNED_CONTEXT.to_vec();
    message.extend_from_slice(payload_b64.as_bytes());
    if !keys.iter().any(|k| k.verify(&message, &sig).is_ok()) {
        return Err(ApprovalError::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| ApprovalError::Malformed)?;
    let value = crate::json::parse_strict(&payload).map_err(|_| ApprovalError::Malformed)?;
    let grant: Grant = serde_json::from_value(value).map_err(|_| ApprovalError::Malformed)?;
    // Constant-time compare: ids are not secret, but the habit costs nothing.
    if !constant_time_eq(grant.id.as_bytes(), expected_id.as_bytes()) {
        return Err(ApprovalError::WrongCall);
    }
    if now >= grant.exp {
        return Err(ApprovalError::Expired);
    }
    if grant.exp.saturating_sub(grant.iat) > max_ttl_secs {
        return Err(ApprovalError::TooLong);
    }
    Ok(grant)
}

/// Domain separation for the `requestState` of an approval round trip
/// (MCP 2026-07-28 `InputRequiredResult.requestState`).
const STATE_CONTEXT: &[u8] = b"portcullis-approval-state-v1\n";
const STATE_PREFIX: &str = "prs1.";

/// What a `requestState` says: which pending approval request a retry
/// belongs to, for which call and agent, until when. Signed by the approval
/// service with a key in `Settings.spec.approvals.keys`, so the filter
/// holds no secret and the client cannot alter it (2026-07-28, mrtr:
/// "servers MUST treat requestState as an attacker-controlled input").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestState {
    /// The approval service's id of the pending request.
    pub req: String,
    /// The approval id (`apr1.`): subject, server, tool, arguments, rule.
    pub id: String,
    /// The agent that asked (`-` when none).
    pub agt: String,
    pub iat: u64,
    pub exp: u64,
}

/// Why a `requestState` was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the requestState is malformed")]
    Malformed,
    #[error("the requestState's signature does not verify against any approval key in the bundle")]
    BadSignature,
    #[error(
        "the requestState belongs to another call (different subject, agent, server, tool, arguments or rule)"
    )]
    WrongCall,
    #[error("the requestState expired")]
    Expired,
}

impl StateError {
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Malformed => "malformed_state",
            StateError::BadSignature => "bad_state_signature",
            StateError::WrongCall => "wrong_call",
            StateError::Expired => "expired",
        }
    }
}

/// Signs a `requestState` (the approval service's side).
pub fn sign_state(state: &RequestState, key: &SigningKey) -> Result<String, String> {
    let payload = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    let payload_b64 = URL_SAFE_NO_PAD.encode(&payload);
    let mut message = STATE_CONTEXT.to_vec();
    message.extend_from_slice(payload_b64.as_bytes());
    let sig = key.sign(&message);
    Ok(format!(
        "{STATE_PREFIX}{payload_b64}.{}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    ))
}

/// Checks a `requestState` for the call `expected_id` by `agent`, at `now`.
pub fn verify_state(
    state: &str,
    keys: &[VerifyingKey],
    expected_id: &str,
    agent: &str,
    now: u64,
) -> Result<RequestState, StateError> {
    let body = state
        .strip_prefix(STATE_PREFIX)
        .ok_or(StateError::Malformed)?;
    let (payload_b64, sig_b64) = body.split_once('.').ok_or(StateError::Malformed)?;
    let sig_bytes: [u8; 64] = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(StateError::Malformed)?;
    let sig = Signature::from_bytes(&sig_bytes);
    let mut message = STATE_CONTEXT.to_vec();
    message.extend_from_slice(payload_b64.as_bytes());
    if !keys.iter().any(|k| k.verify(&message, &sig).is_ok()) {
        return Err(StateError::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| StateError::Malformed)?;
    let value = crate::json::parse_strict(&payload).map_err(|_| StateError::Malformed)?;
    let parsed: RequestState = serde_json::from_value(value).map_err(|_| StateError::Malformed)?;
    if !constant_time_eq(parsed.id.as_bytes(), expected_id.as_bytes())
        || !constant_time_eq(parsed.agt.as_bytes(), agent.as_bytes())
    {
        return Err(StateError::WrongCall);
    }
    if now >= parsed.exp {
        return Err(StateError::Expired);
    }
    Ok(parsed)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub use crate::spec::parse_public_key;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            sub: "alice".into(),
            srv: "payments".into(),
            tool: "pay".into(),
            args: arguments_hash(Some(&serde_json::json!({"amount": 500}))),
            rule: "Policy/pay#big".into(),
        }
    }

    #[test]
    fn mint_verify_and_refusals() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let keys = [key.verifying_key()];
        let id = approval_id(&binding());
        assert_eq!(parse_id(&id).unwrap(), binding());
        let token = mint(&id, &key, 1000, 600, &[1; 16]).unwrap();
        let g = verify(&token, &keys, &id, 1001, 3600).unwrap();
        assert_eq!(g.exp, 1600);
        assert_eq!(
            verify(&token, &keys, &id, 1600, 3600),
            Err(ApprovalError::Expired)
        );
        assert_eq!(
            verify(&token, &keys, &id, 1001, 60),
            Err(ApprovalError::TooLong)
        );
        let mut other = binding();
        other.args = arguments_hash(Some(&serde_json::json!({"amount": 5000})));
        assert_eq!(
            verify(&token, &keys, &approval_id(&other), 1001, 3600),
            Err(ApprovalError::WrongCall)
        );
        let stranger = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            verify(&token, &[stranger.verifying_key()], &id, 1001, 3600),
            Err(ApprovalError::BadSignature)
        );
        // A payload edited after signing.
        let (head, sig) = token.rsplit_once('.').unwrap();
        let forged = format!("{}x.{sig}", head);
        assert!(verify(&forged, &keys, &id, 1001, 3600).is_err());
        assert_eq!(
            verify("nope", &keys, &id, 1, 1),
            Err(ApprovalError::Malformed)
        );
    }

    #[test]
    fn ids_are_canonical() {
        let id = approval_id(&binding());
        let tampered = format!("{id}A");
        assert!(parse_id(&tampered).is_err());
        assert!(parse_id("apr1.e30").is_err());
    }
    #[test]
    fn request_state_signs_and_binds() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let keys = [key.verifying_key()];
        let id = approval_id(&binding());
        let st = RequestState {
            req: "r1".into(),
            id: id.clone(),
            agt: "bot".into(),
            iat: 1000,
            exp: 1300,
        };
        let signed = sign_state(&st, &key).unwrap();
        assert_eq!(verify_state(&signed, &keys, &id, "bot", 1001), Ok(st));
        assert_eq!(
            verify_state(&signed, &keys, &id, "other-bot", 1001),
            Err(StateError::WrongCall)
        );
        let mut other = binding();
        other.sub = "mallory".into();
        assert_eq!(
            verify_state(&signed, &keys, &approval_id(&other), "bot", 1001),
            Err(StateError::WrongCall)
        );
        assert_eq!(
            verify_state(&signed, &keys, &id, "bot", 1300),
            Err(StateError::Expired)
        );
        let stranger = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            verify_state(&signed, &[stranger.verifying_key()], &id, "bot", 1001),
            Err(StateError::BadSignature)
        );
        // A state is not a grant, and a grant is not a state (domains).
        let token = mint(&id, &key, 1000, 600, &[1; 16]).unwrap();
        let as_state = token.replacen("pat1.", "prs1.", 1);
        assert_eq!(
            verify_state(&as_state, &keys, &id, "bot", 1001),
            Err(StateError::BadSignature)
        );
        let (head, sig) = signed.rsplit_once('.').unwrap();
        assert!(verify_state(&format!("{head}x.{sig}"), &keys, &id, "bot", 1001).is_err());
        assert_eq!(
            verify_state("nope", &keys, &id, "bot", 1),
            Err(StateError::Malformed)
        );
    }
}

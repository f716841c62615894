//! Identity (issue 3), tested against an independent JWT implementation:
//! every token here is minted by the `jsonwebtoken` crate (or, for the
//! malformed ones, assembled by hand and signed with its `crypto::sign`),
//! and every token Portcullis mints is verified by `jsonwebtoken`.
//!
//! Keys are test-only fixtures under `tests/data/identity/` (see its
//! README): RSA keygen in a debug build is too slow to do per run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jsonwebtoken::{Algorithm as A, DecodingKey, EncodingKey, Header, Validation};
use portcullis_core::identity::provider::{self, ProviderSet};
use portcullis_core::identity::server::Upstream;
use portcullis_core::identity::*;
use portcullis_core::test_util::MemoryEnv;
use serde_json::{Value, json};
use std::sync::Arc;

const ISS: &str = "https://idp.example.com";
const RES: &str = "https://mcp.example.com/mcp";
const OTHER_RES: &str = "https://other.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const HS_SECRET: &[u8] = b"test-only-hmac-secret-0123456789-0123456789-0123456789-abcdefghij";

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/identity/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The provider's JWKS: every fixture key but the attackers', plus an HMAC
/// secret.
fn jwks() -> Value {
    let mut all: Value = serde_json::from_str(&data("jwks.public.json")).unwrap();
    let keys = all["keys"].as_array_mut().unwrap();
    keys.retain(|k| !k["kid"].as_str().unwrap().contains("attacker"));
    keys.push(json!({"kty": "oct", "kid": "hs-1", "k": b64(HS_SECRET)}));
    all
}

const ALL_ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

fn spec(algs: &[&str]) -> Value {
    json!({
        "issuer": ISS,
        "jwks": jwks(),
        "algorithms": algs,
        "clockSkewSeconds": 30,
        "claims": {"tenant": "tid", "roles": "/realm_access/roles"},
    })
}

fn providers_with(spec: Value) -> ProviderSet {
    let p = provider::compile_value("corp-idp", &spec).unwrap();
    ProviderSet::new(vec![p]).unwrap()
}

fn providers() -> ProviderSet {
    providers_with(spec(&ALL_ALGS))
}

fn server_spec() -> Value {
    json!({
        "resource": RES,
        "scopes": {"required": ["mcp"], "toolDefault": ["tools:{tool}"], "tools": {"rm": ["admin"]}},
        "upstreamToken": {"key": serde_json::from_str::<Value>(&data("mint-ed25519.private.jwk.json")).unwrap()},
    })
}

fn server(providers: &ProviderSet) -> ServerIdentity {
    let spec: ServerIdentitySpec = serde_json::from_value(server_spec()).unwrap();
    ServerIdentity::compile(&spec, providers, &["echo", "rm"]).unwrap()
}

fn key_for(alg: A, kid: &str) -> EncodingKey {
    match alg {
        A::HS256 | A::HS384 | A::HS512 => EncodingKey::from_secret(HS_SECRET).unwrap(),
        A::ES256 | A::ES384 => {
            EncodingKey::from_ec_pem(data(&format!("{kid}.pem")).as_bytes()).unwrap()
        }
        A::EdDSA => EncodingKey::from_ed_pem(data(&format!("{kid}.pem")).as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(data(&format!("{kid}.pem")).as_bytes()).unwrap(),
    }
}

fn default_kid(alg: A) -> &'static str {
    match alg {
        A::HS256 | A::HS384 | A::HS512 => "hs-1",
        A::ES256 => "ec-p256",
        A::ES384 => "ec-p384",
        A::EdDSA => "ed25519",
        A::PS384 | A::RS384 => "rsa-2",
        _ => "rsa-1",
    }
}

fn jalg(name: &str) -> A {
    name.parse().unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "alice@example.com",
        "aud": RES,
        "iat": NOW - 10,
        "exp": NOW + 300,
        "jti": "token-1",
        "azp": "claude-desktop",
        "tid": "acme",
        "scope": "mcp tools:echo",
        "groups": ["eng"],
        "realm_access": {"roles": ["dev", "oncall"]},
    })
}

/// A token minted by `jsonwebtoken`; `signer` names the key file, `kid` the
/// header's kid (None: no kid).
fn mint(alg: A, signer: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key_for(alg, signer)).unwrap()
}

fn good(alg: A) -> String {
    let kid = default_kid(alg);
    mint(alg, kid, Some(kid), &claims())
}

/// A token assembled by hand: raw header and payload JSON text, signed
/// with `jsonwebtoken::crypto::sign`.
fn raw(header: &str, payload: &str, alg: A, signer: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key_for(alg, signer), alg).unwrap();
    format!("{input}.{sig}")
}

fn auth(providers: &ProviderSet, token: &str) -> Result<Arc<Identity>, IdentityError> {
    let mut cache = TokenCache::new(16);
    providers.authenticate(token, RES, &[], NOW, &mut cache)
}

/// Asserts the variant, its status and its challenge.
fn refused(result: Result<Arc<Identity>, IdentityError>, want: IdentityError, status: u16) {
    let err = result.expect_err("token must be refused");
    assert_eq!(err, want);
    assert_eq!(err.status(), status, "{err:?}");
    let srv = server(&providers());
    let challenge = srv.challenge(&err);
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(
            "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        ),
        "{challenge}"
    );
    if let Some(code) = err.oauth_error() {
        assert!(
            challenge.contains(&format!("error=\"{code}\"")),
            "{challenge}"
        );
    }
}

// ---------------------------------------------------------------- algorithms

#[test]
fn every_algorithm_verifies_and_maps_claims() {
    let providers = providers();
    for name in ALL_ALGS {
        let alg = jalg(name);
        let id = auth(&providers, &good(alg)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(id.subject, "alice@example.com", "{name}");
        assert_eq!(id.agent.as_deref(), Some("claude-desktop"));
        assert_eq!(id.tenant.as_deref(), Some("acme"));
        assert_eq!(id.roles, ["dev", "oncall"]);
        assert_eq!(id.groups, ["eng"]);
        assert_eq!(id.scopes, ["mcp", "tools:echo"]);
        assert_eq!(id.jti.as_deref(), Some("token-1"));
        assert_eq!(id.provider, "corp-idp");
        assert_eq!(id.expires_at, Some(NOW + 300));
        assert_eq!(id.claims["tid"], "acme");
    }
}

#[test]
fn every_algorithm_without_kid_tries_fitting_keys() {
    // rsa-2 is the second RSA key: rotation with kid-less tokens.
    let providers = providers();
    for name in ALL_ALGS {
        let alg = jalg(name);
        let token = mint(alg, default_kid(alg), None, &claims());
        auth(&providers, &token).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

#[test]
fn every_algorithm_refuses_a_forged_signature() {
    let providers = providers();
    for name in ALL_ALGS {
        let alg = jalg(name);
        let kid = default_kid(alg);
        let token = match alg {
            A::HS256 | A::HS384 | A::HS512 => {
                let mut header = Header::new(alg);
                header.kid = Some(kid.into());
                let wrong = EncodingKey::from_secret(
                    b"another-secret-of-sufficient-length-for-hs512-0123456789abcdefghijklmn",
                )
                .unwrap();
                jsonwebtoken::encode(&header, &claims(), &wrong).unwrap()
            }
            A::ES256 => mint(alg, "ec-attacker", Some(kid), &claims()),
            A::ES384 => {
                // Sign with the P-256 attacker's signature size mismatch: a
                // P-384 kid with a signature from nobody.
                let good = good(alg);
                let (head, sig) = good.rsplit_once('.').unwrap();
                let mut sig = sig.as_bytes().to_vec();
                sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
                format!("{head}.{}", String::from_utf8(sig).unwrap())
            }
            A::EdDSA => mint(alg, "ed25519-attacker", Some(kid), &claims()),
            _ => mint(alg, "rsa-attacker", Some(kid), &claims()),
        };
        refused(auth(&providers, &token), IdentityError::BadSignature, 401);
    }
}

#[test]
fn key_rotation_picks_the_key_by_kid() {
    let providers = providers();
    for kid in ["rsa-1", "rsa-2"] {
        auth(&providers, &mint(A::RS256, kid, Some(kid), &claims())).unwrap();
    }
    // Signed by rsa-1 but labelled rsa-2: the kid decides, and it fails.
    refused(
        auth(
            &providers,
            &mint(A::RS256, "rsa-1", Some("rsa-2"), &claims()),
        ),
        IdentityError::BadSignature,
        401,
    );
}

// ---------------------------------------------------------- attack classes

#[test]
fn expired() {
    let mut c = claims();
    c["exp"] = json!(NOW - 31); // beyond the 30 s skew
    refused(
        auth(&providers(), &good_with(A::ES256, &c)),
        IdentityError::Expired,
        401,
    );
    c["exp"] = json!(NOW - 29); // within it
    auth(&providers(), &good_with(A::ES256, &c)).unwrap();
}

fn good_with(alg: A, claims: &Value) -> String {
    let kid = default_kid(alg);
    mint(alg, kid, Some(kid), claims)
}

#[test]
fn not_yet_valid() {
    let mut c = claims();
    c["nbf"] = json!(NOW + 60);
    refused(
        auth(&providers(), &good_with(A::RS256, &c)),
        IdentityError::NotYetValid,
        401,
    );
    let mut c = claims();
    c["iat"] = json!(NOW + 3600);
    refused(
        auth(&providers(), &good_with(A::RS256, &c)),
        IdentityError::NotYetValid,
        401,
    );
    c["iat"] = json!(NOW + 10); // within skew
    auth(&providers(), &good_with(A::RS256, &c)).unwrap();
}

#[test]
fn wrong_audience() {
    let mut c = claims();
    c["aud"] = json!(OTHER_RES);
    refused(
        auth(&providers(), &good_with(A::EdDSA, &c)),
        IdentityError::WrongAudience,
        401,
    );
    c["aud"] = json!([OTHER_RES, RES]);
    auth(&providers(), &good_with(A::EdDSA, &c)).unwrap();
    c.as_object_mut().unwrap().remove("aud");
    refused(
        auth(&providers(), &good_with(A::EdDSA, &c)),
        IdentityError::WrongAudience,
        401,
    );
    // A prefix or a trailing-slash variant is another resource.
    c["aud"] = json!("https://mcp.example.com/");
    refused(
        auth(&providers(), &good_with(A::EdDSA, &c)),
        IdentityError::WrongAudience,
        401,
    );
}

#[test]
fn wrong_issuer() {
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com");
    refused(
        auth(&providers(), &good_with(A::RS256, &c)),
        IdentityError::WrongIssuer,
        401,
    );
    c.as_object_mut().unwrap().remove("iss");
    refused(
        auth(&providers(), &good_with(A::RS256, &c)),
        IdentityError::WrongIssuer,
        401,
    );
}

#[test]
fn alg_none() {
    let payload = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            refused(auth(&providers(), &token), IdentityError::AlgNone, 401);
        }
    }
}

#[test]
fn alg_not_allowed() {
    let only_rs = providers_with(spec(&["RS256"]));
    refused(
        auth(&only_rs, &good(A::ES256)),
        IdentityError::AlgNotAllowed,
        401,
    );
    refused(
        auth(&only_rs, &good(A::PS256)),
        IdentityError::AlgNotAllowed,
        401,
    );
    let token = raw(
        r#"{"alg":"HS1","kid":"hs-1"}"#,
        &claims().to_string(),
        A::HS256,
        "hs-1",
    );
    refused(
        auth(&providers(), &token),
        IdentityError::AlgNotAllowed,
        401,
    );
    // Case matters in JOSE: "rs256" is not RS256.
    let token = raw(
        r#"{"alg":"rs256","kid":"rsa-1"}"#,
        &claims().to_string(),
        A::RS256,
        "rsa-1",
    );
    refused(
        auth(&providers(), &token),
        IdentityError::AlgNotAllowed,
        401,
    );
}

#[test]
fn hs_rs_key_confusion() {
    // The classic attack: HS256 with the RSA public key as the HMAC secret.
    let public_pem = {
        let jwk: Value = jwks()["keys"][0].clone();
        jwk.to_string()
    };
    let providers = providers();
    for secret in [public_pem.as_bytes(), data("rsa-1.pem").as_bytes()] {
        let mut header = Header::new(A::HS256);
        header.kid = Some("rsa-1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        refused(auth(&providers, &token), IdentityError::KeyConfusion, 401);
    }
    // Without a kid, against a provider with only asymmetric keys.
    let mut s = spec(&["RS256", "HS256"]);
    s["jwks"]["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kty"] != "oct");
    let asym_only = providers_with(s);
    let token = jsonwebtoken::encode(
        &Header::new(A::HS256),
        &claims(),
        &EncodingKey::from_secret(b"whatever-the-attacker-likes-0123456789").unwrap(),
    )
    .unwrap();
    refused(auth(&asym_only, &token), IdentityError::KeyConfusion, 401);
    // ES256 token naming an RSA key.
    refused(
        auth(
            &providers,
            &mint(A::ES256, "ec-p256", Some("rsa-1"), &claims()),
        ),
        IdentityError::KeyConfusion,
        401,
    );
    // A key pinned to RS256 refuses PS256 tokens.
    let mut s = spec(&["RS256", "PS256"]);
    s["jwks"]["keys"][0]["alg"] = json!("RS256");
    refused(
        auth(
            &providers_with(s),
            &mint(A::PS256, "rsa-1", Some("rsa-1"), &claims()),
        ),
        IdentityError::KeyConfusion,
        401,
    );
}

#[test]
fn unknown_kid() {
    refused(
        auth(
            &providers(),
            &mint(A::RS256, "rsa-attacker", Some("rsa-attacker"), &claims()),
        ),
        IdentityError::UnknownKid,
        401,
    );
}

#[test]
fn tampered_payload_and_signature() {
    let providers = providers();
    for name in ["RS256", "ES256", "EdDSA", "HS256"] {
        let token = good(jalg(name));
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("admin@example.com");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        );
        refused(auth(&providers, &forged), IdentityError::BadSignature, 401);
        let mut sig = parts[2].as_bytes().to_vec();
        sig[5] = if sig[5] == b'x' { b'y' } else { b'x' };
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        refused(auth(&providers, &forged), IdentityError::BadSignature, 401);
        // Header swapped for another algorithm's: alg no longer fits.
        let other = good(A::HS512);
        let other_header = other.split('.').next().unwrap();
        let forged = format!("{other_header}.{}.{}", parts[1], parts[2]);
        assert!(auth(&providers, &forged).is_err());
    }
}

#[test]
fn unsupported_crit() {
    let token = raw(
        r#"{"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}"#,
        &claims().to_string(),
        A::RS256,
        "rsa-1",
    );
    refused(
        auth(&providers(), &token),
        IdentityError::UnsupportedCrit,
        401,
    );
    let token = raw(
        r#"{"alg":"RS256","kid":"rsa-1","b64":false}"#,
        &claims().to_string(),
        A::RS256,
        "rsa-1",
    );
    refused(
        auth(&providers(), &token),
        IdentityError::UnsupportedCrit,
        401,
    );
}

#[test]
fn oversize_token() {
    let mut c = claims();
    c["padding"] = json!("x".repeat(9 * 1024));
    let token = good_with(A::HS256, &c);
    refused(auth(&providers(), &token), IdentityError::TooLarge, 401);
    // The limit is configurable.
    let mut s = spec(&["HS256"]);
    s["maxTokenBytes"] = json!(16 * 1024);
    auth(&providers_with(s), &token).unwrap();
    let mut s = spec(&["HS256"]);
    s["maxTokenBytes"] = json!(200);
    refused(
        auth(&providers_with(s), &good(A::HS256)),
        IdentityError::TooLarge,
        401,
    );
}

#[test]
fn malformed_tokens() {
    let providers = providers();
    let token = good(A::HS256);
    let parts: Vec<&str> = token.split('.').collect();
    let payload = claims().to_string();
    let cases: Vec<(&str, String)> = vec![
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("four segments", format!("{token}.x")),
        ("JWE shape", format!("{}.a.b.c.d", parts[0])),
        (
            "padded header",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "padded signature",
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        ),
        (
            "standard alphabet",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                parts[2].replace(['-', '_'], "+")
            ),
        ),
        ("empty signature", format!("{}.{}.", parts[0], parts[1])),
        (
            "header not JSON",
            format!("{}.{}.{}", b64(b"{alg"), parts[1], parts[2]),
        ),
        (
            "header array",
            format!("{}.{}.{}", b64(b"[1]"), parts[1], parts[2]),
        ),
        (
            "payload not JSON",
            raw(
                r#"{"alg":"HS256","kid":"hs-1"}"#,
                "not json",
                A::HS256,
                "hs-1",
            ),
        ),
        (
            "duplicate claim",
            raw(
                r#"{"alg":"HS256","kid":"hs-1"}"#,
                &payload.replacen('{', r#"{"sub":"mallory","#, 1),
                A::HS256,
                "hs-1",
            ),
        ),
        (
            "duplicate header key",
            raw(
                r#"{"alg":"HS256","alg":"none","kid":"hs-1"}"#,
                &payload,
                A::HS256,
                "hs-1",
            ),
        ),
        (
            "exp a string",
            good_with(A::HS256, &{
                let mut c = claims();
                c["exp"] = json!("tomorrow");
                c
            }),
        ),
        (
            "aud a number",
            good_with(A::HS256, &{
                let mut c = claims();
                c["aud"] = json!(7);
                c
            }),
        ),
        (
            "typ id token",
            raw(
                r#"{"alg":"HS256","kid":"hs-1","typ":"dpop+jwt"}"#,
                &payload,
                A::HS256,
                "hs-1",
            ),
        ),
    ];
    for (what, token) in cases {
        refused(auth(&providers, &token), IdentityError::Malformed, 401);
        let _ = what;
    }
    // Non-canonical base64url: a final character with non-zero spare bits.
    let sig = parts[2];
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    // HS256 signatures are 32 bytes: 43 chars, the last carrying 2 spare bits.
    let bumped = alphabet.as_bytes()[idx | 1] as char;
    if bumped != last {
        let forged = format!(
            "{}.{}.{}{}",
            parts[0],
            parts[1],
            &sig[..sig.len() - 1],
            bumped
        );
        refused(auth(&providers, &forged), IdentityError::Malformed, 401);
    }
}

#[test]
fn missing_required_claim() {
    let mut s = spec(&["ES256"]);
    s["requiredClaims"] = json!(["tid", "/act/sub"]);
    let p = providers_with(s);
    let err = auth(&p, &good(A::ES256)).unwrap_err();
    assert_eq!(
        err,
        IdentityError::MissingClaim {
            claim: "/act/sub".into()
        }
    );
    assert_eq!(err.status(), 401);
    let mut c = claims();
    c["act"] = json!({"sub": "agent-7"});
    let id = auth(&p, &good_with(A::ES256, &c)).unwrap();
    assert_eq!(
        id.agent.as_deref(),
        Some("agent-7"),
        "act.sub is preferred over azp"
    );
    // No subject at all.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    refused(
        auth(&providers(), &good_with(A::ES256, &c)),
        IdentityError::MissingClaim {
            claim: "sub".into(),
        },
        401,
    );
    // exp is required unless the provider says otherwise.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let token = raw(
        r#"{"alg":"ES256","kid":"ec-p256"}"#,
        &c.to_string(),
        A::ES256,
        "ec-p256",
    );
    refused(
        auth(&providers(), &token),
        IdentityError::MissingClaim {
            claim: "exp".into(),
        },
        401,
    );
}

#[test]
fn token_in_query_string() {
    let providers = providers();
    let srv = server(&providers);
    let token = good(A::RS256);
    let header = format!("Bearer {token}");
    let mut cache = TokenCache::new(4);
    let err = srv
        .authenticate(
            &providers,
            &[&header],
            &format!("/mcp?access_token={token}"),
            NOW,
            &mut cache,
        )
        .unwrap_err();
    assert_eq!(err, IdentityError::TokenInQuery);
    assert_eq!(err.status(), 400);
    let challenge = srv.challenge(&err);
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert!(
        !challenge.contains(&token[..20]),
        "no token in the challenge"
    );
    // The header alone is fine.
    srv.authenticate(&providers, &[&header], "/mcp", NOW, &mut cache)
        .unwrap();
}

#[test]
fn missing_token_gets_the_bare_challenge() {
    let providers = providers();
    let srv = server(&providers);
    let mut cache = TokenCache::new(4);
    let err = srv
        .authenticate(&providers, &[], "/mcp", NOW, &mut cache)
        .unwrap_err();
    assert_eq!(err, IdentityError::MissingToken);
    assert_eq!(err.status(), 401);
    assert_eq!(
        srv.challenge(&err),
        "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(srv.challenge(&err), srv.metadata.challenge());
}

#[test]
fn token_for_another_tool_gets_403_insufficient_scope() {
    let providers = providers();
    let srv = server(&providers);
    let id = auth(&providers, &good(A::EdDSA)).unwrap();
    srv.authorize(&id, "tools/call", Some("echo")).unwrap();
    srv.authorize(&id, "tools/list", None).unwrap();
    let err = srv
        .authorize(&id, "tools/call", Some("write_file"))
        .unwrap_err();
    assert_eq!(
        err,
        IdentityError::InsufficientScope {
            required: vec!["mcp".into(), "tools:write_file".into()]
        }
    );
    assert_eq!(err.status(), 403);
    assert_eq!(
        srv.challenge(&err),
        "Bearer error=\"insufficient_scope\", error_description=\"insufficient scope for this call\", \
         scope=\"mcp tools:write_file\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    // A per-tool override replaces the default.
    let err = srv.authorize(&id, "tools/call", Some("rm")).unwrap_err();
    assert_eq!(
        err,
        IdentityError::InsufficientScope {
            required: vec!["mcp".into(), "admin".into()]
        }
    );
    // A tool name that is no valid scope can never be satisfied.
    assert!(
        srv.authorize(&id, "tools/call", Some("echo tools:echo"))
            .is_err()
    );
}

#[test]
fn errors_never_quote_the_token() {
    let token = good(A::RS256);
    for err in [
        IdentityError::BadSignature,
        IdentityError::Malformed,
        IdentityError::MissingClaim {
            claim: "tid".into(),
        },
    ] {
        let text = format!("{err} {err:?} {}", err.www_authenticate(None));
        for part in token.split('.') {
            assert!(!text.contains(&part[..12]));
        }
    }
}

// -------------------------------------------------------------------- cache

#[test]
fn cache_hit_reuses_the_verification() {
    let providers = providers();
    let mut cache = TokenCache::new(8);
    let token = good(A::RS256);
    let a = providers
        .authenticate(&token, RES, &[], NOW, &mut cache)
        .unwrap();
    let b = providers
        .authenticate(&token, RES, &[], NOW + 1, &mut cache)
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b), "second call served from the cache");
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(cache.len(), 1);
    // A cached token is still checked against the audience of each server.
    let err = providers
        .authenticate(&token, OTHER_RES, &[], NOW, &mut cache)
        .unwrap_err();
    assert_eq!(err, IdentityError::WrongAudience);
    // And against the providers the server trusts.
    let err = providers
        .authenticate(&token, RES, &["someone-else".into()], NOW, &mut cache)
        .unwrap_err();
    assert_eq!(err, IdentityError::WrongIssuer);
    // Without losing the entry for the servers that do.
    let hits = cache.stats().hits;
    providers
        .authenticate(&token, RES, &["corp-idp".into()], NOW, &mut cache)
        .unwrap();
    assert_eq!(cache.stats().hits, hits + 1);
}

#[test]
fn cache_entries_expire_at_exp() {
    let mut s = spec(&["ES256"]);
    s["clockSkewSeconds"] = json!(0);
    let providers = providers_with(s);
    let mut cache = TokenCache::new(8);
    let mut c = claims();
    c["exp"] = json!(NOW + 100);
    let token = good_with(A::ES256, &c);
    providers
        .authenticate(&token, RES, &[], NOW, &mut cache)
        .unwrap();
    providers
        .authenticate(&token, RES, &[], NOW + 99, &mut cache)
        .unwrap();
    assert_eq!(cache.stats().hits, 1);
    let err = providers
        .authenticate(&token, RES, &[], NOW + 100, &mut cache)
        .unwrap_err();
    assert_eq!(err, IdentityError::Expired);
    assert_eq!(cache.len(), 0, "expired entry dropped");
    assert_eq!(cache.stats().expirations, 1);
}

#[test]
fn cache_is_bounded() {
    let providers = providers();
    let mut cache = TokenCache::new(3);
    let tokens: Vec<String> = (0..10)
        .map(|i| {
            let mut c = claims();
            c["jti"] = json!(format!("t{i}"));
            good_with(A::HS256, &c)
        })
        .collect();
    // Keep t0 hot: CLOCK gives used entries a second chance.
    for t in &tokens {
        providers
            .authenticate(&tokens[0], RES, &[], NOW, &mut cache)
            .unwrap();
        providers
            .authenticate(t, RES, &[], NOW, &mut cache)
            .unwrap();
        assert!(cache.len() <= 3);
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.stats().evictions >= 7);
    let hits = cache.stats().hits;
    providers
        .authenticate(&tokens[0], RES, &[], NOW, &mut cache)
        .unwrap();
    assert_eq!(cache.stats().hits, hits + 1, "the hot entry survived");
    // Refused tokens are never cached.
    let mut c = claims();
    c["aud"] = json!(OTHER_RES);
    let _ = providers.authenticate(&good_with(A::HS256, &c), RES, &[], NOW, &mut cache);
    let _ = providers.authenticate(&format!("{}x", tokens[1]), RES, &[], NOW, &mut cache);
    assert_eq!(cache.len(), 3);
}

#[test]
fn cache_ignores_entries_from_before_a_key_rotation() {
    let mut cache = TokenCache::new(8);
    let token = good(A::RS256);
    providers()
        .authenticate(&token, RES, &[], NOW, &mut cache)
        .unwrap();
    // The control plane rotates rsa-1 out of the JWKS.
    let mut s = spec(&ALL_ALGS);
    s["jwks"]["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "rsa-1");
    let rotated = providers_with(s);
    let err = rotated
        .authenticate(&token, RES, &[], NOW, &mut cache)
        .unwrap_err();
    assert_eq!(err, IdentityError::UnknownKid);
}

#[test]
fn cached_verification_is_fast() {
    let providers = providers();
    let mut cache = TokenCache::new(8);
    let token = good(A::RS256);
    providers
        .authenticate(&token, RES, &[], NOW, &mut cache)
        .unwrap();
    let n = 2000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        providers
            .authenticate(&token, RES, &[], NOW, &mut cache)
            .unwrap();
    }
    let per = start.elapsed() / n;
    eprintln!("cached verification: {per:?} per call (debug build)");
    // Generous: this is a debug build on a shared machine.
    assert!(per < std::time::Duration::from_millis(1), "{per:?}");
}

// ------------------------------------------------------------------ minting

#[test]
fn minted_tokens_verify_with_jsonwebtoken() {
    let providers = providers();
    let srv = server(&providers);
    let mut c = claims();
    c["act"] = json!({"sub": "agent-7"});
    let id = auth(&providers, &good_with(A::EdDSA, &c)).unwrap();
    let mut env = MemoryEnv::at_secs(jsonwebtoken::get_current_timestamp());
    let UpstreamAuth::Replace(minted) =
        srv.upstream_authorization(&id, "tools/call", Some("echo"), &mut env)
    else {
        panic!("mint expected");
    };
    assert!(minted.authorization().starts_with("Bearer "));
    let jwk: Value = serde_json::from_str(&data("mint-ed25519.private.jwk.json")).unwrap();
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(A::EdDSA);
    validation.set_audience(&[RES]);
    validation.set_issuer(&["portcullis"]);
    let decoded = jsonwebtoken::decode::<Value>(&minted.token, &key, &validation).unwrap();
    assert_eq!(decoded.header.kid.as_deref(), Some("mint-1"));
    let claims = decoded.claims;
    assert_eq!(claims["sub"], "alice@example.com");
    assert_eq!(claims["act"]["sub"], "agent-7");
    assert_eq!(claims["scope"], "mcp tools:echo");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["jti"], minted.jti.as_str());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    // The public JWK the minter publishes verifies too.
    let Upstream::Mint { minter, .. } = &srv.upstream else {
        panic!()
    };
    let public = minter.public_jwk().unwrap();
    assert_eq!(public["x"], jwk["x"]);
    // Each call gets its own jti.
    let UpstreamAuth::Replace(second) =
        srv.upstream_authorization(&id, "tools/call", Some("echo"), &mut env)
    else {
        panic!()
    };
    assert_ne!(second.jti, minted.jti);
    assert_ne!(second.token, minted.token);
    // And the client's token is never what goes upstream.
    assert!(!minted.token.contains(&good_with(A::EdDSA, &c)));
}

#[test]
fn minted_hs256_tokens_verify_with_jsonwebtoken() {
    let providers = providers();
    let mut spec = server_spec();
    spec["upstreamToken"] = json!({
        "key": {"kty": "oct", "k": b64(HS_SECRET)},
        "issuer": "https://portcullis.example.com",
        "lifetimeSeconds": 3600,
    });
    let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
    let srv = ServerIdentity::compile(&spec, &providers, &[]).unwrap();
    let id = auth(&providers, &good(A::HS256)).unwrap();
    let mut env = MemoryEnv::at_secs(jsonwebtoken::get_current_timestamp());
    let UpstreamAuth::Replace(minted) =
        srv.upstream_authorization(&id, "tools/call", Some("echo"), &mut env)
    else {
        panic!()
    };
    let mut validation = Validation::new(A::HS256);
    validation.set_audience(&[RES]);
    validation.set_issuer(&["https://portcullis.example.com"]);
    let decoded = jsonwebtoken::decode::<Value>(
        &minted.token,
        &DecodingKey::from_secret(HS_SECRET).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.claims["act"]["sub"], "claude-desktop");
    assert_eq!(minted.expires_at - minted.issued_at, 3600);
}

#[test]
fn upstream_modes_and_lifetime_limits() {
    let providers = providers();
    let compile = |upstream: Value| {
        let mut spec = server_spec();
        spec["upstreamToken"] = upstream;
        let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
        ServerIdentity::compile(&spec, &providers, &[])
    };
    let id = auth(&providers, &good(A::HS256)).unwrap();
    let mut env = MemoryEnv::at_secs(NOW);
    let strip = compile(json!({})).unwrap();
    assert_eq!(
        strip.upstream_authorization(&id, "tools/list", None, &mut env),
        UpstreamAuth::Remove
    );
    let pass = compile(json!({"mode": "passthrough"})).unwrap();
    assert_eq!(
        pass.upstream_authorization(&id, "tools/list", None, &mut env),
        UpstreamAuth::Passthrough
    );
    // No upstreamToken at all: strip, never passthrough.
    let mut spec = server_spec();
    spec.as_object_mut().unwrap().remove("upstreamToken");
    let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
    let default = ServerIdentity::compile(&spec, &providers, &[]).unwrap();
    assert_eq!(
        default.upstream_authorization(&id, "tools/list", None, &mut env),
        UpstreamAuth::Remove
    );

    let key = json!({"kty": "oct", "k": b64(HS_SECRET)});
    let err = compile(json!({"key": key, "lifetimeSeconds": 3601})).unwrap_err();
    assert_eq!(err[0].0, "/upstreamToken/lifetimeSeconds");
    let err = compile(json!({"mode": "mint"})).unwrap_err();
    assert_eq!(err[0].0, "/upstreamToken/key");
    let err = compile(json!({"key": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}})).unwrap_err();
    assert_eq!(err[0].0, "/upstreamToken/key/kty");
    let err = compile(json!({"key": {"kty": "oct", "k": b64(b"short")}})).unwrap_err();
    assert_eq!(err[0].0, "/upstreamToken/key/k");
}

// ------------------------------------------------------------- metadata

#[test]
fn protected_resource_metadata() {
    let providers = providers();
    let srv = server(&providers);
    let m = &srv.metadata;
    assert_eq!(
        m.metadata_path(),
        "/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        m.metadata_url(),
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert!(m.serves("/.well-known/oauth-protected-resource/mcp", false));
    assert!(m.serves("/.well-known/oauth-protected-resource/mcp?x=1", false));
    assert!(!m.serves("/.well-known/oauth-protected-resource", false));
    assert!(m.serves("/.well-known/oauth-protected-resource", true));
    assert!(!m.serves("/.well-known/oauth-protected-resource/other", true));
    let doc: Value = serde_json::from_str(&m.document_json()).unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": RES,
            "authorization_servers": [ISS],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["mcp", "tools:echo", "admin"],
        })
    );
    // Hosts are case-insensitive; the canonical form is lowercase, and a
    // bare origin has the bare metadata path.
    let mut spec = server_spec();
    spec["resource"] = json!("HTTPS://MCP.Example.com/");
    spec["authorizationServers"] = json!(["https://as.example.com"]);
    spec["resourceName"] = json!("Example MCP");
    let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
    let srv = ServerIdentity::compile(&spec, &providers, &[]).unwrap();
    assert_eq!(srv.resource(), "https://mcp.example.com");
    assert_eq!(
        srv.metadata.metadata_url(),
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    );
    assert!(
        srv.metadata
            .serves("/.well-known/oauth-protected-resource", false)
    );
    let doc = srv.metadata.document();
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://as.example.com"])
    );
    assert_eq!(doc["resource_name"], "Example MCP");
    // http only for loopback; no fragments.
    for bad in [
        "http://mcp.example.com/mcp",
        "https://mcp.example.com/mcp#x",
        "mcp.example.com",
        "https://u@h/",
    ] {
        let mut spec = server_spec();
        spec["resource"] = json!(bad);
        let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
        let err = ServerIdentity::compile(&spec, &providers, &[]).unwrap_err();
        assert_eq!(err[0].0, "/resource", "{bad}");
    }
    let mut spec = server_spec();
    spec["resource"] = json!("http://127.0.0.1:8080/mcp");
    let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
    ServerIdentity::compile(&spec, &providers, &[]).unwrap();
}

// ------------------------------------------------------ configure time

fn compile_err(spec: Value) -> Vec<(String, String)> {
    provider::compile_value("p", &spec).unwrap_err()
}

#[test]
fn bad_provider_specs_are_refused_with_pointers() {
    let pointers = |errs: Vec<(String, String)>| errs.into_iter().map(|e| e.0).collect::<Vec<_>>();
    let mut s = spec(&["none"]);
    assert!(pointers(compile_err(s.clone())).contains(&"/algorithms/0".to_string()));
    s["algorithms"] = json!(["RS256", "RSA256"]);
    assert_eq!(pointers(compile_err(s.clone())), ["/algorithms/1"]);
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][0]["n"] = json!("AQAB");
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/0/n"]);
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][0]["n"] = json!(format!("{}=", s["jwks"]["keys"][0]["n"].as_str().unwrap()));
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/0/n"]);
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][0]["d"] = json!("AQAB");
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/0/d"]);
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][3]["x"] = json!(b64(&[7u8; 32]));
    assert_eq!(
        pointers(compile_err(s)),
        ["/jwks/keys/3/x"],
        "EC point not on the curve"
    );
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][1]["kid"] = json!("rsa-1");
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/1/kid"]);
    let mut s = spec(&["HS256"]);
    s["jwks"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "k": b64(b"short")}));
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/6/k"]);
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][0]["alg"] = json!("ES256");
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/0/alg"]);
    let mut s = spec(&["RS256"]);
    s["jwks"]["keys"][0]["kty"] = json!("DSA");
    assert_eq!(pointers(compile_err(s)), ["/jwks/keys/0/kty"]);
    let mut s = spec(&["RS256"]);
    s["clockSkew"] = json!(5);
    assert_eq!(
        pointers(compile_err(s)),
        ["/clockSkew"],
        "unknown fields refused"
    );
    let mut s = spec(&["RS256"]);
    s["clockSkewSeconds"] = json!(3600);
    assert_eq!(pointers(compile_err(s)), ["/clockSkewSeconds"]);
    let mut s = spec(&["ES384"]);
    s["jwks"] = json!({"keys": [jwks()["keys"][0].clone()]});
    assert_eq!(
        pointers(compile_err(s)),
        ["/jwks/keys"],
        "no key for any algorithm"
    );
    let s = json!({"issuer": ISS, "algorithms": ["RS256"]});
    assert_eq!(pointers(compile_err(s)), ["/jwks"]);
    // Two providers for one issuer.
    let a = provider::compile_value("a", &spec(&["RS256"])).unwrap();
    let b = provider::compile_value("b", &spec(&["RS256"])).unwrap();
    let err = ProviderSet::new(vec![a, b]).unwrap_err();
    assert_eq!(err[0].0, "b");
}

#[test]
fn bad_scopes_are_refused_with_pointers() {
    let providers = providers();
    let mut spec = server_spec();
    spec["scopes"] = json!({"required": ["a b"], "tools": {"x/y": ["ok", "{tool}\""]}, "methods": {"tools/list": ["{tool}"]}});
    let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
    let err = ServerIdentity::compile(&spec, &providers, &[]).unwrap_err();
    let pointers: Vec<&str> = err.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "/scopes/required/0",
            "/scopes/methods/tools~1list/0",
            "/scopes/tools/x~1y/1"
        ]
    );
    let mut spec = server_spec();
    spec["providers"] = json!(["nope"]);
    let spec: ServerIdentitySpec = serde_json::from_value(spec).unwrap();
    let err = ServerIdentity::compile(&spec, &providers, &[]).unwrap_err();
    assert_eq!(err[0].0, "/providers/0");
}

// ---------------------------------------------------------- envoy mode

#[test]
fn envoy_jwt_authn_mode_maps_the_verified_payload() {
    let p = provider::compile_value(
        "envoy",
        &json!({"issuer": ISS, "mode": "envoyJwtAuthn", "envoyPayloadKey": "corp_payload"}),
    )
    .unwrap();
    assert_eq!(
        p.envoy_property_path(),
        [
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            "corp_payload"
        ]
    );
    let providers = ProviderSet::new(vec![p]).unwrap();
    let srv = server(&providers);
    let payload = claims().to_string();
    let id = srv
        .authenticate_envoy(&providers, Some(payload.as_bytes()), "/mcp", NOW)
        .unwrap();
    assert_eq!(id.subject, "alice@example.com");
    assert_eq!(id.agent.as_deref(), Some("claude-desktop"));
    assert_eq!(
        id.verification,
        portcullis_core::identity::claims::Verification::EnvoyJwtAuthn
    );
    // Times and audience still hold.
    let mut c = claims();
    c["exp"] = json!(NOW - 120);
    let err = srv
        .authenticate_envoy(&providers, Some(c.to_string().as_bytes()), "/mcp", NOW)
        .unwrap_err();
    assert_eq!(err, IdentityError::Expired);
    let mut c = claims();
    c["aud"] = json!(OTHER_RES);
    let err = srv
        .authenticate_envoy(&providers, Some(c.to_string().as_bytes()), "/mcp", NOW)
        .unwrap_err();
    assert_eq!(err, IdentityError::WrongAudience);
    assert_eq!(
        srv.authenticate_envoy(&providers, None, "/mcp", NOW)
            .unwrap_err(),
        IdentityError::MissingToken
    );
    assert_eq!(
        srv.authenticate_envoy(
            &providers,
            Some(payload.as_bytes()),
            "/mcp?access_token=x",
            NOW
        )
        .unwrap_err(),
        IdentityError::TokenInQuery
    );
    // An envoy-mode provider verifies no bearer tokens itself...
    let err = auth(&providers, &good(A::RS256)).unwrap_err();
    assert_eq!(err, IdentityError::UnknownKid);
    // ...and a verify-mode provider takes no unsigned payloads.
    let err = providers_with(spec(&["RS256"]))
        .authenticate_trusted_payload(payload.as_bytes(), RES, &[], NOW)
        .unwrap_err();
    assert_eq!(err, IdentityError::WrongIssuer);
}

#[test]
fn audit_headers_are_header_safe() {
    let mut c = claims();
    c["sub"] = json!("alice\r\nx-mcp-subject: root");
    let id = auth(&providers(), &good_with(A::HS256, &c)).unwrap();
    let headers = id.audit_headers();
    assert_eq!(
        headers,
        [
            ("x-mcp-subject", "alicex-mcp-subject: root".to_string()),
            ("x-mcp-agent", "claude-desktop".to_string()),
            ("x-mcp-tenant", "acme".to_string()),
        ]
    );
}

// ------------------------------------------------------------- performance

/// Prints cold (uncached) and cached verification costs per algorithm, and
/// minting costs. Not a pass/fail test: run it in release, natively or in
/// wasm, with `cargo test --release --test identity -- --ignored
/// --nocapture perf_report`. The figures are in docs/identity.md.
#[test]
#[ignore]
fn perf_report() {
    use std::time::{Duration, Instant};
    // The best of five rounds: the machine is shared, and the minimum is
    // the least disturbed figure.
    fn time(n: u32, mut f: impl FnMut()) -> Duration {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..n {
                    f();
                }
                start.elapsed() / n
            })
            .min()
            .unwrap()
    }
    let providers = providers();
    println!("{:<8} {:>12} {:>12}", "alg", "cold", "cached");
    for name in ALL_ALGS {
        let token = good(jalg(name));
        let mut none = TokenCache::new(0);
        let cold = time(20, || {
            providers
                .authenticate(&token, RES, &[], NOW, &mut none)
                .unwrap();
        });
        let mut cache = TokenCache::new(64);
        providers
            .authenticate(&token, RES, &[], NOW, &mut cache)
            .unwrap();
        let cached = time(5000, || {
            providers
                .authenticate(&token, RES, &[], NOW, &mut cache)
                .unwrap();
        });
        println!("{name:<8} {cold:>12.1?} {cached:>12.1?}");
    }
    // The same signatures through jsonwebtoken (RustCrypto rsa, p256,
    // ed25519-dalek), interleaved with ours, for a ratio that survives a
    // noisy machine.
    let keys = jwks();
    let jwk = |kid: &str| {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .clone()
    };
    println!("{:<8} {:>12} {:>12}", "alg", "portcullis", "jsonwebtoken");
    for name in ["RS256", "PS256", "ES256", "EdDSA"] {
        let alg = jalg(name);
        let token = good(alg);
        let k = jwk(default_kid(alg));
        let s = |f: &str| k[f].as_str().unwrap().to_string();
        let key = match alg {
            A::ES256 => DecodingKey::from_ec_components(&s("x"), &s("y")).unwrap(),
            A::EdDSA => DecodingKey::from_ed_components(&s("x")).unwrap(),
            _ => DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap(),
        };
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut none = TokenCache::new(0);
        let ours = time(20, || {
            providers
                .authenticate(&token, RES, &[], NOW, &mut none)
                .unwrap();
        });
        let theirs = time(20, || {
            assert!(jsonwebtoken::crypto::verify(sig, input.as_bytes(), &key, alg).unwrap());
        });
        println!("{name:<8} {ours:>12.1?} {theirs:>12.1?}");
    }
    let srv = server(&providers);
    let id = auth(&providers, &good(A::EdDSA)).unwrap();
    let mut env = MemoryEnv::at_secs(NOW);
    let mint = time(2000, || {
        let _ = srv.upstream_authorization(&id, "tools/call", Some("echo"), &mut env);
    });
    println!("mint EdDSA {mint:>12.1?}");
    let extract = time(100_000, || {
        let _ = extract_bearer(&["Bearer abc.def.ghi"], "/mcp?x=1");
    });
    println!("extract {extract:>12.1?}");
}

#[test]
fn rsa_verification_agrees_with_jsonwebtoken_on_many_messages() {
    // The RSA verifier is Portcullis's own (rsa_verify.rs): check it on
    // varied messages, and that every single-byte change to a signature
    // is refused.
    let providers = providers();
    for name in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let alg = jalg(name);
        for i in 0..4 {
            let mut c = claims();
            c["jti"] = json!(format!("{name}-{i}"));
            c["pad"] = json!("p".repeat(i * 37));
            let token = good_with(alg, &c);
            auth(&providers, &token).unwrap_or_else(|e| panic!("{name} {i}: {e:?}"));
            let (head, sig) = token.rsplit_once('.').unwrap();
            let mut raw_sig = {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(sig)
                    .unwrap()
            };
            let at = (i * 61) % raw_sig.len();
            raw_sig[at] ^= 0x01;
            let forged = format!("{head}.{}", b64(&raw_sig));
            refused(auth(&providers, &forged), IdentityError::BadSignature, 401);
        }
    }
}

#[test]
fn every_attack_class_has_its_own_audit_code() {
    let all = [
        IdentityError::MissingToken,
        IdentityError::TokenInQuery,
        IdentityError::InvalidRequest,
        IdentityError::TooLarge,
        IdentityError::Malformed,
        IdentityError::AlgNone,
        IdentityError::AlgNotAllowed,
        IdentityError::KeyConfusion,
        IdentityError::UnknownKid,
        IdentityError::BadSignature,
        IdentityError::UnsupportedCrit,
        IdentityError::Expired,
        IdentityError::NotYetValid,
        IdentityError::WrongIssuer,
        IdentityError::WrongAudience,
        IdentityError::MissingClaim {
            claim: "tid".into(),
        },
        IdentityError::InsufficientScope {
            required: vec!["a".into()],
        },
    ];
    let codes: std::collections::BTreeSet<&str> = all.iter().map(IdentityError::code).collect();
    assert_eq!(codes.len(), all.len());
    for e in &all {
        let expected = match e {
            IdentityError::InsufficientScope { .. } => 403,
            IdentityError::TokenInQuery | IdentityError::InvalidRequest => 400,
            _ => 401,
        };
        assert_eq!(e.status(), expected, "{e:?}");
        let c = e.www_authenticate(Some("https://h/.well-known/oauth-protected-resource"));
        assert!(c.starts_with("Bearer "), "{c}");
        assert!(!c.contains('\n'));
    }
    // A huge tool name cannot blow up the challenge header.
    let e = IdentityError::InsufficientScope {
        required: vec!["mcp".into(), format!("tools:{}", "x".repeat(5000))],
    };
    assert!(e.www_authenticate(None).len() < 1200);
}

//! `jwt`: JWT parsing and verification on arbitrary input: no panic, and
//! nothing that is not a correctly signed token for the provider is ever
//! accepted (the fuzzer cannot sign with the provider's secret).

use portcullis_core::identity::{ProviderSet, TokenCache, jwt, provider};
use serde_json::json;
use std::sync::OnceLock;

const ISS: &str = "https://idp.fuzz.example";
const RES: &str = "https://mcp.fuzz.example/mcp";

fn providers() -> &'static ProviderSet {
    static SET: OnceLock<ProviderSet> = OnceLock::new();
    SET.get_or_init(|| {
        // A 32-byte HMAC secret nobody can sign with by chance.
        let spec = json!({
            "issuer": ISS,
            "algorithms": ["HS256", "RS256", "ES256", "EdDSA"],
            "jwks": {"keys": [{"kty": "oct", "kid": "k", "k": "ZnV6ei1vbmx5LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"}]},
        });
        let p = provider::compile_value("fuzz", &spec).expect("fuzz provider compiles");
        ProviderSet::new(vec![p]).expect("one provider")
    })
}

pub fn check(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jwt::parse(token, 8192);
    let mut cache = TokenCache::new(4);
    let verdict = providers().authenticate(token, RES, &[], 1_800_000_000, &mut cache);
    assert!(verdict.is_err(), "an unsigned fuzz input was accepted");
}

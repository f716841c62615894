//! A whole exchange on arbitrary request and response bodies: the engine
//! never panics, and whatever it forwards it has parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::bundle::{API_VERSION, Document, Metadata, assemble};
use portcullis_core::engine::{Env, RequestHead};
use portcullis_core::{Engine, Exchange};
use std::sync::{Arc, OnceLock};

struct FixedEnv;
impl Env for FixedEnv {
    fn now_nanos(&self) -> u64 {
        1
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        buf.fill(1);
    }
}

fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let doc = Document {
                api_version: API_VERSION.into(),
                kind: "McpServer".into(),
                metadata: Metadata { name: "s".into(), labels: Default::default(), annotations: Default::default() },
                spec: serde_json::json!({"tools": [{"name": "echo"}, {"name": "get-*"}]}),
                source: None,
            };
            let json = serde_json::to_vec(&assemble(vec![doc])).expect("bundle");
            Arc::new(Engine::from_config(&json).expect("engine"))
        })
        .clone()
}

fuzz_target!(|input: (bool, Vec<u8>, Vec<u8>)| {
    let (sse, request, response) = input;
    let mut ex = Exchange::new(engine());
    let mut env = FixedEnv;
    let head = RequestHead {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "a".into(),
        headers: vec![("content-type".into(), "application/json".into())],
    };
    let _ = ex.on_request_headers(&mut env, head);
    let _ = ex.on_request_body(&mut env, &request, true);
    let ctype = if sse { "text/event-stream" } else { "application/json" };
    let _ = ex.on_response_headers(&mut env, 200, &[("content-type".into(), ctype.into())]);
    let mid = response.len() / 2;
    let _ = ex.on_response_body(&mut env, &response[..mid], false);
    let _ = ex.on_response_body(&mut env, &response, true);
    let _ = ex.take_audit();
});

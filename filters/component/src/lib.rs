//! portcullis-component: the Portcullis engine as a WebAssembly component.
//!
//! A thin adapter, like `filters/proxy-wasm`: the exports of the
//! `portcullis:governance/engine` interface (wit/portcullis.wit) in,
//! [`portcullis_core`] calls, the world's imports (clock, random, key-value,
//! logging, counters, properties) out. It decides nothing itself; it mirrors
//! `filters/proxy-wasm/src/filter.rs` step for step, so that the same bundle
//! and the same traffic give the same decisions, bodies and audit records in
//! either build (tests/vectors.rs holds the two to that).
//!
//! Built for `wasm32-wasip2`, whose rustc links a component directly
//! (`wasm-component-ld`): no wasip1 adapter module to ship or keep in step.
//! The engine itself needs no WASI; what the component imports from WASI is
//! only what Rust's standard library links in (docs/component.md).
//!
//! Panics: `panic = "abort"` in the `wasm` profile makes a panic a trap; the
//! host then fails the stream closed and instantiates afresh. The code is
//! kept panic-free by the workspace's clippy lints.

mod bindings {
    #![allow(
        clippy::all,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        unsafe_op_in_unsafe_fn
    )]
    wit_bindgen::generate!({
        world: "governance",
        path: "../../wit",
    });
}

use bindings::exports::portcullis::governance::engine::{Guest, GuestExchange};
use bindings::portcullis::governance::types as t;
use bindings::portcullis::governance::{clock, counters, key_value, logging, properties, random};
use portcullis_core::audit::{AuditRecord, Decision};
use portcullis_core::engine::{
    Env, HeaderEdits, LocalReply, RequestBodyAction, RequestHead, RequestHeadersAction,
    ResponseBodyAction, SharedWrite,
};
use portcullis_core::mcp::{codes, error_response};
use portcullis_core::{Engine, Exchange};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// The engine new exchanges use; a component instance is single-threaded.
    static ENGINE: RefCell<Option<Arc<Engine>>> = const { RefCell::new(None) };
}

struct Component;

impl Guest for Component {
    type Exchange = Stream;

    fn configure(bundle: Vec<u8>) -> Result<t::BundleInfo, Vec<t::BundleError>> {
        match Engine::from_config(&bundle) {
            Ok(engine) => {
                let info = t::BundleInfo {
                    version: engine.version().to_owned(),
                    servers: u32::try_from(engine.bundle().servers.len()).unwrap_or(u32::MAX),
                };
                // Exchanges in flight keep the engine they started with.
                ENGINE.with(|e| *e.borrow_mut() = Some(Arc::new(engine)));
                Ok(info)
            }
            Err(errors) => Err(errors
                .into_iter()
                .map(|e| t::BundleError {
                    field: e.field(),
                    line: e.line.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
                    file: e.file,
                    document: e.document,
                    message: e.message,
                })
                .collect()),
        }
    }
}

// Only the wasm build exports: a native cdylib cannot carry the component
// model's export names (`portcullis:governance/engine@0.1.0#...`), which
// the native linker's version script rejects. Natively the crate is built
// for clippy and unit tests only.
#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);

/// The engine's [`Env`], over the world's imports.
struct HostEnv;

impl Env for HostEnv {
    fn now_nanos(&self) -> u64 {
        clock::now()
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        let bytes = random::random_bytes(u32::try_from(buf.len()).unwrap_or(u32::MAX));
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = src;
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        properties::get(&path)
    }

    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        key_value::get(key).map(|(value, _cas)| value)
    }

    fn shared_set(&mut self, key: &str, value: &[u8]) -> bool {
        // Unconditional, as the proxy-wasm filter writes (cas 0): the engine
        // merges what it read before writing.
        shared_write(key, value, key_value::Condition::Always) == SharedWrite::Written
    }

    fn shared_get_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        // The engine's cas is proxy-wasm's u32; a host whose versions do not
        // fit has none the engine can hand back, so the value reads as absent
        // of a version (0), and a conditional write then conflicts.
        key_value::get(key).map(|(value, cas)| (value, u32::try_from(cas).unwrap_or(0)))
    }

    fn shared_write(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        let condition = match cas {
            Some(c) => key_value::Condition::Cas(u64::from(c)),
            None => key_value::Condition::Absent,
        };
        shared_write(key, value, condition)
    }

    fn count(&mut self, metric: &str, delta: u64) {
        counters::add(metric, delta);
    }
}

fn shared_write(key: &str, value: &[u8], condition: key_value::Condition) -> SharedWrite {
    match key_value::set(key, value, condition) {
        Ok(()) => SharedWrite::Written,
        Err(key_value::StoreError::CasMismatch) => SharedWrite::Conflict,
        Err(key_value::StoreError::Unavailable(why)) => {
            logging::log(
                logging::Level::Warn,
                &format!("portcullis: shared data not written: {why}"),
            );
            SharedWrite::Unavailable
        }
    }
}

/// One exchange: the engine's, or none when no bundle was configured.
pub struct Stream {
    inner: RefCell<Option<Inner>>,
}

struct Inner {
    exchange: Exchange,
    /// Set once a reply was sent: later callbacks pass everything.
    replied: bool,
}

impl GuestExchange for Stream {
    fn new() -> Stream {
        let engine = ENGINE.with(|e| e.borrow().clone());
        Stream {
            inner: RefCell::new(engine.map(|engine| Inner {
                exchange: Exchange::new(engine),
                replied: false,
            })),
        }
    }

    fn request_id(&self) -> String {
        self.inner
            .borrow()
            .as_ref()
            .map(|i| i.exchange.request_id().to_owned())
            .unwrap_or_default()
    }

    fn request_headers(
        &self,
        head: t::RequestHead,
        _context: t::RequestContext,
        _end_of_stream: bool,
    ) -> t::Decision {
        let mut slot = self.inner.borrow_mut();
        let Some(inner) = slot.as_mut() else {
            return unconfigured();
        };
        let head = RequestHead {
            method: head.method,
            path: head.path,
            authority: head.authority,
            headers: head.headers,
        };
        let action = match inner.exchange.on_request_headers(&mut HostEnv, head) {
            RequestHeadersAction::Continue(edits) => t::Action::Continue(edits_out(edits)),
            // With no body to follow, the host calls `request-body([], true)`
            // next, as the proxy-wasm filter decides on the empty body.
            RequestHeadersAction::ReadBody(edits) => t::Action::Pause(edits_out(edits)),
            RequestHeadersAction::Reply(reply) => inner.reply(reply),
        };
        inner.decision(action)
    }

    fn request_body(&self, body: Vec<u8>, end_of_stream: bool) -> t::Decision {
        let mut slot = self.inner.borrow_mut();
        let Some(inner) = slot.as_mut() else {
            return unconfigured();
        };
        if inner.replied {
            return inner.decision(t::Action::Continue(no_edits()));
        }
        if let Some(reply) = inner.exchange.on_request_body_size(body.len() as u64) {
            let action = inner.reply(reply);
            return inner.decision(action);
        }
        if !end_of_stream {
            return inner.decision(t::Action::Pause(no_edits()));
        }
        let action = match inner.exchange.on_request_body(&mut HostEnv, &body, true) {
            RequestBodyAction::Wait => t::Action::Pause(no_edits()),
            RequestBodyAction::Forward(edits) => t::Action::Continue(edits_out(edits)),
            RequestBodyAction::Rewrite(edits, body) => t::Action::Rewrite(t::Rewrite {
                edits: edits_out(edits),
                body,
            }),
            RequestBodyAction::Reply(reply) => inner.reply(reply),
        };
        inner.decision(action)
    }

    fn response_headers(
        &self,
        status: u16,
        headers: Vec<(String, String)>,
        end_of_stream: bool,
    ) -> t::Decision {
        let mut slot = self.inner.borrow_mut();
        let Some(inner) = slot.as_mut() else {
            return unconfigured();
        };
        let edits = inner
            .exchange
            .on_response_headers(&mut HostEnv, status, &headers);
        if end_of_stream {
            inner.exchange.on_stream_end(&mut HostEnv);
        }
        inner.decision(t::Action::Continue(edits_out(edits)))
    }

    fn response_body(&self, data: Vec<u8>, end_of_stream: bool) -> t::Decision {
        let mut slot = self.inner.borrow_mut();
        let Some(inner) = slot.as_mut() else {
            return unconfigured();
        };
        let action = match inner
            .exchange
            .on_response_body(&mut HostEnv, &data, end_of_stream)
        {
            ResponseBodyAction::Pass => t::Action::Continue(no_edits()),
            ResponseBodyAction::Buffer => t::Action::Pause(no_edits()),
            ResponseBodyAction::Replace(body) => t::Action::Rewrite(t::Rewrite {
                edits: no_edits(),
                body,
            }),
        };
        inner.decision(action)
    }

    fn end(&self) -> Vec<t::AuditRecord> {
        let mut slot = self.inner.borrow_mut();
        let Some(inner) = slot.as_mut() else {
            return Vec::new();
        };
        inner.exchange.on_stream_end(&mut HostEnv);
        inner.exchange.take_audit().iter().map(record_out).collect()
    }
}

impl Inner {
    fn reply(&mut self, reply: LocalReply) -> t::Action {
        self.replied = true;
        t::Action::Respond(reply_out(reply))
    }

    /// The action with the records this call completed, and what they say.
    fn decision(&mut self, action: t::Action) -> t::Decision {
        let records = self.exchange.take_audit();
        let reason = records
            .iter()
            .find(|r| r.decision == Decision::Deny)
            .map(|r| r.reason.clone());
        let mut rules: Vec<String> = Vec::new();
        for rule in records.iter().filter_map(|r| r.rule.as_ref()) {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
        t::Decision {
            action,
            reason,
            rules,
            audit: records.iter().map(record_out).collect(),
        }
    }
}

/// Every call on an exchange made before a bundle was accepted: refused,
/// never passed uninspected.
fn unconfigured() -> t::Decision {
    let reason = "portcullis has no bundle: the host must call configure with a bundle built by `portcullis bundle build DIR` before opening exchanges";
    let body = error_response(
        None,
        codes::INTERNAL,
        "Internal error",
        Some(serde_json::json!({ "reason": reason })),
    );
    t::Decision {
        action: t::Action::Respond(t::Reply {
            status: 503,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            details: "portcullis_not_configured".into(),
        }),
        reason: Some(reason.into()),
        rules: Vec::new(),
        audit: Vec::new(),
    }
}

fn no_edits() -> t::HeaderEdits {
    t::HeaderEdits {
        remove: Vec::new(),
        set: Vec::new(),
    }
}

fn edits_out(edits: HeaderEdits) -> t::HeaderEdits {
    t::HeaderEdits {
        remove: edits.remove,
        set: edits.set,
    }
}

fn reply_out(reply: LocalReply) -> t::Reply {
    t::Reply {
        status: reply.status,
        headers: reply.headers,
        body: reply.body,
        details: reply.details,
    }
}

fn record_out(record: &AuditRecord) -> t::AuditRecord {
    t::AuditRecord {
        decision: match record.decision {
            Decision::Allow => t::Verdict::Allow,
            Decision::Deny => t::Verdict::Deny,
        },
        reason: record.reason.clone(),
        rule: record.rule.clone(),
        json: record.to_json_line(),
    }
}

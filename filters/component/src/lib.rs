//! portcullis-component: the Portcullis engine as a WebAssembly component.
//!
//! A thin adapter, like `filters/proxy-wasm`: the exports of the
//! `portcullis:governance/engine` interface (wit/portcullis.wit) in,
//! [`portcullis_core::driver::StreamDriver`] calls, the world's imports
//! (clock, random, key-value, logging, counters, properties) out. It decides
//! nothing and sequences nothing itself: the phase rules are the driver's,
//! shared with `filters/proxy-wasm`, so that the same bundle and the same
//! traffic give the same decisions, bodies and audit records in either
//! build (tests/vectors.rs holds the two to that).
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
use portcullis_core::Engine;
use portcullis_core::audit::{AuditRecord, Decision};
use portcullis_core::driver::{Output, Step, StreamDriver};
use portcullis_core::engine::{Env, HeaderEdits, LocalReply, RequestHead, SharedWrite};
use portcullis_core::mcp::{codes, error_response};
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

/// One exchange: the engine's stream driver, or none when no bundle was
/// configured.
pub struct Stream {
    inner: RefCell<Option<StreamDriver>>,
}

impl GuestExchange for Stream {
    fn new() -> Stream {
        let engine = ENGINE.with(|e| e.borrow().clone());
        Stream {
            inner: RefCell::new(engine.map(StreamDriver::new)),
        }
    }

    fn request_id(&self) -> String {
        self.inner
            .borrow()
            .as_ref()
            .map(|d| d.request_id().to_owned())
            .unwrap_or_default()
    }

    fn request_headers(
        &self,
        head: t::RequestHead,
        _context: t::RequestContext,
        end_of_stream: bool,
    ) -> t::Decision {
        let head = RequestHead {
            method: head.method,
            path: head.path,
            authority: head.authority,
            headers: head.headers,
        };
        self.drive(|d| d.request_headers(&mut HostEnv, head, end_of_stream))
    }

    fn request_body(&self, body: Vec<u8>, end_of_stream: bool) -> t::Decision {
        self.drive(|d| d.request_body(&mut HostEnv, &mut body.as_slice(), end_of_stream))
    }

    fn request_trailers(&self, trailers: Vec<(String, String)>, body: Vec<u8>) -> t::Decision {
        let names: Vec<String> = trailers.into_iter().map(|(k, _)| k).collect();
        self.drive(|d| d.request_trailers(&mut HostEnv, &mut body.as_slice(), &names))
    }

    fn response_headers(
        &self,
        status: u16,
        headers: Vec<(String, String)>,
        end_of_stream: bool,
    ) -> t::Decision {
        self.drive(|d| d.response_headers(&mut HostEnv, status, &headers, end_of_stream))
    }

    fn response_body(&self, data: Vec<u8>, end_of_stream: bool) -> t::Decision {
        self.drive(|d| d.response_body(&mut HostEnv, &mut data.as_slice(), end_of_stream))
    }

    fn response_trailers(&self, trailers: Vec<(String, String)>, data: Vec<u8>) -> t::Decision {
        let names: Vec<String> = trailers.into_iter().map(|(k, _)| k).collect();
        self.drive(|d| d.response_trailers(&mut HostEnv, &mut data.as_slice(), &names))
    }

    fn end(&self) -> Vec<t::AuditRecord> {
        let mut slot = self.inner.borrow_mut();
        let Some(driver) = slot.as_mut() else {
            return Vec::new();
        };
        driver.end(&mut HostEnv);
        driver.take_audit().iter().map(record_out).collect()
    }
}

impl Stream {
    /// Runs one callback through the driver and translates its output.
    fn drive(&self, f: impl FnOnce(&mut StreamDriver) -> Output) -> t::Decision {
        let mut slot = self.inner.borrow_mut();
        let Some(driver) = slot.as_mut() else {
            return unconfigured();
        };
        let mut out = f(driver);
        // The component's world has no outcall import: a call the engine
        // asks for (an approval service) fails the request closed, with the
        // engine's refusal and record (docs/component.md).
        while let Step::Call(call) = &out.step {
            let id = call.id;
            out = driver.call_done(
                &mut HostEnv,
                id,
                portcullis_core::outcall::CallResult::Failed(
                    "the WebAssembly component build cannot make outcalls; use the proxy-wasm filter for Settings.spec.approvals.service".into(),
                ),
            );
        }
        decision(driver, out)
    }
}

/// The driver's output as a WIT decision, with the records this call
/// completed and what they say.
fn decision(driver: &mut StreamDriver, out: Output) -> t::Decision {
    let action = match out.step {
        Step::Continue => match out.body {
            Some(body) => t::Action::Rewrite(t::Rewrite {
                edits: edits_out(out.headers),
                body,
            }),
            None => t::Action::Continue(edits_out(out.headers)),
        },
        Step::Pause => t::Action::Pause(edits_out(out.headers)),
        Step::Reply(reply) => t::Action::Respond(reply_out(reply)),
        // `drive` answers every call before it gets here.
        Step::Call(_) => t::Action::Pause(edits_out(out.headers)),
    };
    let records = driver.take_audit();
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
        trailers: edits_out(out.trailers),
        reason,
        rules,
        audit: records.iter().map(record_out).collect(),
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
        trailers: no_edits(),
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

//! portcullis-filter: the Portcullis proxy-wasm filter.
//!
//! A thin adapter: proxy-wasm 0.2 callbacks in, [`portcullis_core`] calls,
//! hostcalls out. The root context compiles the bundle (the plugin
//! configuration) in `on_configure` and refuses a bad one, so Envoy rejects
//! the configuration instead of running without policy. Each HTTP context
//! is a [`filter::Stream`] (its proxy-wasm callbacks are in `filter.rs`).
//!
//! The VM configuration (Envoy's `vm_config.configuration`, read in
//! `on_vm_start`) may name `trustedBundleKeys`; then `on_configure` also
//! refuses an unsigned or badly signed bundle
//! ([`portcullis_core::signing`]), and the last good bundle stays in force.
//!
//! Panics: wasm32 on stable Rust cannot unwind, so a panic is a trap. The
//! code is kept panic-free by clippy lints (no `unwrap`, `expect`, `panic`,
//! indexing), the SDK's panicking hostcall wrappers are not used (see
//! [`abi`]), and as a last resort a panic hook logs the failure, writes an
//! audit record and asks for a fail-closed 500 before the trap. What the
//! proxy does with the VM afterwards is its `failure_policy` (see
//! `docs/filter.md`).

pub mod abi;
pub mod filter;
pub mod host;
pub mod root;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use crate::abi::AbiHost;
    use crate::filter::{AUDIT_PROPERTY, CURRENT, Http};
    use crate::host::{Host, Level};
    use crate::root::{FleetRoot, RELEASE_QUEUE};
    use portcullis_core::Engine;
    use portcullis_core::audit::{AuditRecord, rfc3339};
    use portcullis_core::engine::LocalReply;
    use portcullis_core::mcp::{codes, error_response};
    use portcullis_core::signing::TrustConfig;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};
    use std::sync::Arc;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        std::panic::set_hook(Box::new(on_panic));
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(Root { engine: None, trust: None, fleet: FleetRoot::default(), queue: None })
        });
    }}

    fn on_panic(info: &std::panic::PanicHookInfo<'_>) {
        let mut host = AbiHost;
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown location".into());
        let (request_id, bundle_version) = CURRENT.with(|c| c.borrow().clone());
        let reason = format!("the filter panicked at {location}; the request is refused");
        let record = AuditRecord {
            reason: reason.clone(),
            http_status: Some(500),
            error_code: Some(codes::INTERNAL),
            ..AuditRecord::blank(
                rfc3339(host.now_nanos()),
                request_id.clone(),
                bundle_version,
            )
        };
        let line = record.to_json_line();
        host.log(Level::Critical, &format!("portcullis: {reason}"));
        host.log(Level::Info, &line);
        let _ = host.set_property(AUDIT_PROPERTY, format!("{line}\n").as_bytes());
        let body = error_response(
            None,
            codes::INTERNAL,
            "Internal error",
            Some(serde_json::json!({"reason": reason, "requestId": request_id})),
        );
        let _ = host.send_local_reply(&LocalReply {
            status: 500,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            details: "portcullis_panic".into(),
        });
    }

    struct Root {
        engine: Option<Arc<Engine>>,
        /// From the VM configuration; `None` until `on_vm_start` accepted it
        /// (a VM whose configuration was refused never configures).
        trust: Option<TrustConfig>,
        /// Fleet calls of this root context (quarantine, lease releases).
        fleet: FleetRoot,
        /// The fleet release queue this root registered.
        queue: Option<u32>,
    }

    impl Context for Root {
        /// Answers to the root's own fleet calls: the SDK's dispatcher
        /// routes a gRPC answer to the context that dispatched it, here the
        /// root (from its tick or queue callback).
        fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
            let mut host = AbiHost;
            let result = host.grpc_call_result(status_code, response_size);
            if !self.fleet.answer(&mut host, token_id, result) {
                host.log(
                    Level::Warn,
                    "portcullis: a gRPC answer for no call of the root context, ignored",
                );
            }
        }
    }

    impl RootContext for Root {
        fn on_vm_start(&mut self, _size: usize) -> bool {
            let mut host = AbiHost;
            let bytes = self.get_vm_configuration().unwrap_or_default();
            match TrustConfig::parse(&bytes) {
                Ok(trust) => {
                    if trust.required() {
                        host.log(
                            Level::Info,
                            &format!(
                                "portcullis: only bundles signed by {} trusted key(s) are accepted",
                                trust.trusted_bundle_keys.len()
                            ),
                        );
                    }
                    self.trust = Some(trust);
                    // Fleet lease releases come here from the streams. Without
                    // the queue a lease is not released but expires.
                    match host.register_release_queue(RELEASE_QUEUE) {
                        Ok(id) => self.queue = Some(id),
                        Err(e) => host.log(
                            Level::Warn,
                            &format!("portcullis: no fleet release queue ({e}); fleet leases expire instead of being released"),
                        ),
                    }
                    true
                }
                Err(e) => {
                    host.log(
                        Level::Error,
                        &format!("portcullis: VM configuration refused: {e}"),
                    );
                    false
                }
            }
        }

        fn on_configure(&mut self, _size: usize) -> bool {
            let mut host = AbiHost;
            let Some(config) = self.get_plugin_configuration() else {
                host.log(
                    Level::Error,
                    "portcullis: no plugin configuration; give the filter a bundle built with `portcullis bundle build DIR`",
                );
                return false;
            };
            let Some(trust) = &self.trust else {
                host.log(
                    Level::Error,
                    "portcullis: the VM configuration was refused, so no bundle is accepted",
                );
                return false;
            };
            // Checked before compiling: an untrusted bundle is not even
            // parsed further, and the engine in force stays.
            match trust.check_config(&config) {
                Ok(Some(key_id)) => host.log(
                    Level::Info,
                    &format!("portcullis: bundle signature verified (key {key_id})"),
                ),
                Ok(None) => {}
                Err(e) => {
                    host.log(Level::Error, &format!("portcullis: bundle refused: {e}"));
                    return false;
                }
            }
            match Engine::from_config(&config) {
                Ok(engine) => {
                    host.log(
                        Level::Info,
                        &format!(
                            "portcullis: bundle {} loaded ({} servers)",
                            engine.version(),
                            engine.bundle().servers.len()
                        ),
                    );
                    // The fleet's quarantine is refreshed on the tick; none
                    // without a fleet service (a reconfiguration stops it).
                    let period = engine.fleet_tick_period_ms().unwrap_or(0);
                    if let Err(e) = host.set_tick_period(period) {
                        host.log(
                            Level::Error,
                            &format!("portcullis: no tick for the fleet quarantine: {e}"),
                        );
                    }
                    // A reconfiguration replaces the engine for new streams;
                    // streams in flight keep the one they started with.
                    self.engine = Some(Arc::new(engine));
                    true
                }
                Err(errors) => {
                    for e in &errors {
                        host.log(Level::Error, &format!("portcullis: bundle refused: {e}"));
                    }
                    false
                }
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            let engine = self.engine.clone()?;
            let version = engine.version().to_owned();
            Some(Box::new(Http::new(engine, version)))
        }

        fn on_tick(&mut self) {
            if let Some(engine) = self.engine.clone() {
                self.fleet.tick(&mut AbiHost, &engine);
            }
        }

        fn on_queue_ready(&mut self, queue_id: u32) {
            if Some(queue_id) != self.queue {
                return;
            }
            let Some(engine) = self.engine.clone() else {
                return;
            };
            self.fleet.releases(&mut AbiHost, &engine, |host| {
                match AbiHost.dequeue(queue_id) {
                    Ok(item) => item,
                    Err(e) => {
                        host.log(Level::Warn, &format!("portcullis: release queue: {e}"));
                        None
                    }
                }
            });
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }
}

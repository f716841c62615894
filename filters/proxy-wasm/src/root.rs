//! The root context's part in the fleet (issue 19, docs/fleet.md): on its
//! tick it pushes this proxy's pin failures and refreshes the fleet's
//! quarantine, and it releases the fleet leases streams hand it through the
//! shared queue. The engine says what to call ([`Engine::fleet_tick`],
//! [`Engine::fleet_release`]); this makes the calls and routes the answers.
//!
//! Why a queue to the root rather than a `ReleaseLease` from the stream's
//! own `on_log`: the stream's context is gone when the answer comes. A
//! call is owned by the root context in any case (proxy-wasm-cpp-host
//! src/exports.cc runs `grpc_call` on
//! `contextOrEffectiveContext()->root_context()`, and Envoy's
//! `Context::~Context` in source/extensions/common/wasm/context.cc cancels
//! the outstanding `grpc_call_request_` of the context being destroyed, so
//! only a root's teardown cancels it), but the SDK hands the answer to the
//! context that dispatched it and drops it once that context was deleted:
//! a failed release would go unseen. From the root it is logged and
//! counted, and a lost one still expires (`leaseTtlMs`).

use crate::host::{EnvOf, Host, Level};
use portcullis_core::Engine;
use portcullis_core::outcall::{CallResult, Outcall};
use std::collections::HashMap;
use std::sync::Arc;

/// The shared queue streams hand fleet lease releases to.
pub const RELEASE_QUEUE: &str = "portcullis.fleet.release";

/// Most releases taken from the queue in one `on_queue_ready`: the rest
/// wait for the next wake-up (each enqueue wakes the owner again).
const RELEASES_PER_WAKE: usize = 256;

/// The root context's fleet calls in flight.
#[derive(Default)]
pub struct FleetRoot {
    /// The host's token -> the engine that asked (a reconfiguration may
    /// replace the root's engine meanwhile) and its id for the call.
    calls: HashMap<u32, (Arc<Engine>, u32)>,
}

impl FleetRoot {
    /// `proxy_on_tick`.
    pub fn tick(&mut self, host: &mut dyn Host, engine: &Arc<Engine>) {
        let calls = engine.fleet_tick(&mut EnvOf(host));
        for call in calls {
            self.dispatch(host, engine, call);
        }
    }

    /// `proxy_on_queue_ready` on the release queue: `next` dequeues one item
    /// (`None`: empty).
    pub fn releases(
        &mut self,
        host: &mut dyn Host,
        engine: &Arc<Engine>,
        mut next: impl FnMut(&mut dyn Host) -> Option<Vec<u8>>,
    ) {
        for _ in 0..RELEASES_PER_WAKE {
            let Some(item) = next(host) else {
                return;
            };
            match engine.fleet_release(&item) {
                Some(call) => self.dispatch(host, engine, call),
                None => host.log(
                    Level::Warn,
                    "portcullis: a fleet lease release that is not one, dropped",
                ),
            }
        }
    }

    /// `on_grpc_call_response` on the root context. `false`: not a call of
    /// this root's.
    pub fn answer(&mut self, host: &mut dyn Host, token: u32, result: CallResult) -> bool {
        let Some((engine, id)) = self.calls.remove(&token) else {
            return false;
        };
        if let Some(note) = engine.fleet_call_done(&mut EnvOf(host), id, &result) {
            host.log(Level::Warn, &note);
        }
        true
    }

    /// Calls in flight (tests).
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    fn dispatch(&mut self, host: &mut dyn Host, engine: &Arc<Engine>, call: Outcall) {
        match host.dispatch_call(&call) {
            Ok(token) => {
                self.calls.insert(token, (Arc::clone(engine), call.id));
            }
            Err(e) => {
                let failed = CallResult::Failed(format!("the host could not make it: {e}"));
                if let Some(note) = engine.fleet_call_done(&mut EnvOf(host), call.id, &failed) {
                    host.log(Level::Warn, &note);
                }
            }
        }
    }
}

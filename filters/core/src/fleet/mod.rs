//! Fleet-wide state (issue 19): the messages a proxy exchanges with the
//! fleet state service over `proxy_grpc_call`. Pure encoding, no I/O: the
//! engine builds requests and reads answers; the host performs the call.
//!
//! - [`rls`]: the subset of Envoy's Rate Limit Service v3 the filter uses
//!   (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), wire
//!   compatible with `envoy/service/ratelimit/v3/rls.proto`, so a fleet limit
//!   can also be served by an RLS an operator already runs.
//! - [`api`]: Portcullis's own `portcullis.fleet.v1.Fleet` service for what
//!   RLS cannot express (crates/fleet/proto/portcullis/fleet/v1/fleet.proto).
//! - [`quarantine`]: the fleet's quarantine as this proxy keeps it in
//!   shared data (what to push, the list last read, who refreshes).

pub mod api;
pub mod quarantine;
pub mod rls;

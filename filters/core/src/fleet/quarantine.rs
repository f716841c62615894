//! The fleet-wide quarantine in this proxy's shared data (issue 19).
//!
//! Three keys, shared by every worker VM of the proxy and independent of the
//! bundle version (the fleet's list is the fleet's, whatever bundle a proxy
//! runs):
//!
//! - [`PUSH_KEY`]: pin failures this proxy saw and has not yet sent with
//!   `AddQuarantine`. Written by the stream that saw the tools/list, taken
//!   whole (compare-and-swap) by one root context on its tick.
//! - [`LIST_KEY`] and [`VERSION_KEY`]: the fleet's last `ListQuarantine`
//!   answer and its version, written by the root context that refreshed,
//!   read by every stream's decision ([`crate::content::ToolMemory`]).
//! - [`REFRESH_KEY`]: when the next refresh is due (Unix nanoseconds). The
//!   root context whose compare-and-swap moves it on does the refresh, so
//!   one `ListQuarantine` per period per proxy, not one per worker.
//!
//! Values are `ListQuarantineResponse` messages (prost), the service's own
//! encoding.

use super::api::{ListQuarantineResponse, QuarantineEntry};
use crate::env::{Env, SharedWrite};
use prost::Message as _;

pub const PUSH_KEY: &str = "portcullis.fleet/quarantine-push";
pub const LIST_KEY: &str = "portcullis.fleet/quarantine";
pub const VERSION_KEY: &str = "portcullis.fleet/quarantine#version";
pub const REFRESH_KEY: &str = "portcullis.fleet/quarantine-refresh";

/// Attempts at a compare-and-swap before giving up (another VM kept
/// writing first); the next list or tick tries again.
const CAS_TRIES: usize = 8;

/// Whether a fleet entry binds server `server` of this bundle, whose pin
/// for the entry's tool is `pin_of(tool)`: the entry names the pin its tool
/// failed, so a bundle that pins the tool otherwise (it was reviewed again
/// and re-pinned) is not bound by it.
pub fn applies<'a>(
    server: &str,
    pin_of: impl FnOnce(&str) -> Option<&'a str>,
    entry: &QuarantineEntry,
) -> bool {
    entry.server == server && pin_of(&entry.tool).unwrap_or("") == entry.pin
}

/// Adds `entries` to what the root context pushes on its next tick.
pub fn queue_pushes(env: &mut dyn Env, entries: &[QuarantineEntry]) {
    if entries.is_empty() {
        return;
    }
    for _ in 0..CAS_TRIES {
        let current = env.shared_get_cas(PUSH_KEY);
        let mut list = current
            .as_ref()
            .and_then(|(b, _)| ListQuarantineResponse::decode(b.as_slice()).ok())
            .unwrap_or_default();
        for e in entries {
            if !list
                .entries
                .iter()
                .any(|x| x.server == e.server && x.tool == e.tool && x.pin == e.pin)
            {
                list.entries.push(e.clone());
            }
        }
        match env.shared_write(PUSH_KEY, &list.encode_to_vec(), current.map(|(_, cas)| cas)) {
            SharedWrite::Conflict => continue,
            SharedWrite::Written | SharedWrite::Unavailable => return,
        }
    }
}

/// Takes every entry waiting to be pushed (this VM alone gets them).
pub fn take_pushes(env: &mut dyn Env) -> Vec<QuarantineEntry> {
    for _ in 0..CAS_TRIES {
        let Some((bytes, cas)) = env.shared_get_cas(PUSH_KEY) else {
            return Vec::new();
        };
        let list = ListQuarantineResponse::decode(bytes.as_slice()).unwrap_or_default();
        if list.entries.is_empty() {
            return Vec::new();
        }
        let empty = ListQuarantineResponse::default().encode_to_vec();
        match env.shared_write(PUSH_KEY, &empty, Some(cas)) {
            SharedWrite::Written => return list.entries,
            SharedWrite::Conflict => continue,
            SharedWrite::Unavailable => return Vec::new(),
        }
    }
    Vec::new()
}

/// Whether this VM does the refresh due now: the one whose write moves the
/// due time on. It moves three quarters of a period, so the VM's next tick
/// (a period on) is always due again: at most one period between refreshes.
pub fn claim_refresh(env: &mut dyn Env, period_ms: u32) -> bool {
    let now = env.now_nanos();
    let current = env.shared_get_cas(REFRESH_KEY);
    let due = current
        .as_ref()
        .and_then(|(b, _)| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    if now < due {
        return false;
    }
    let next = now.saturating_add(u64::from(period_ms) * 750_000);
    env.shared_write(
        REFRESH_KEY,
        next.to_string().as_bytes(),
        current.map(|(_, cas)| cas),
    ) == SharedWrite::Written
}

/// Stores the fleet's list when its version is not the one stored: the
/// list first, then the version readers key their cache on. `true` when it
/// changed.
pub fn store_list(env: &mut dyn Env, list: &ListQuarantineResponse) -> bool {
    let version = list.version.to_string();
    if env.shared_get(VERSION_KEY).as_deref() == Some(version.as_bytes()) {
        return false;
    }
    env.shared_set(LIST_KEY, &list.encode_to_vec())
        && env.shared_set(VERSION_KEY, version.as_bytes())
}

/// The fleet's list as last stored, with its version.
pub fn stored_list(env: &dyn Env) -> Option<(Vec<u8>, ListQuarantineResponse)> {
    let version = env.shared_get(VERSION_KEY)?;
    let list = ListQuarantineResponse::decode(env.shared_get(LIST_KEY)?.as_slice()).ok()?;
    Some((version, list))
}

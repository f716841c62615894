//! Process-wide shared data and shared queues, scoped by `vm_id`.
//!
//! Envoy keeps both in process-global singletons (cpp-host `shared_data.cc`
//! `getGlobalSharedData`, `shared_queue.cc`), so every VM with the same
//! `vm_id` on every worker thread sees one key/value store and one set of
//! queues. The same shape is used here: `Mutex`-guarded statics, and queue
//! wake-ups are posted to the owning VM's event channel, the way cpp-host
//! posts `onQueueReady` to the registrant's dispatcher (`call_on_thread`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use tokio::sync::mpsc::UnboundedSender;

use crate::abi::Status;

/// Events delivered to a VM from other threads.
#[derive(Debug)]
pub(crate) enum VmEvent {
    QueueReady { context_id: u32, token: u32 },
}

#[derive(Default)]
struct DataStore {
    /// vm_id -> key -> (value, cas)
    data: HashMap<String, HashMap<String, (Vec<u8>, u32)>>,
    next_cas: u32,
}

fn data_store() -> &'static Mutex<DataStore> {
    static S: OnceLock<Mutex<DataStore>> = OnceLock::new();
    S.get_or_init(|| {
        Mutex::new(DataStore {
            next_cas: 1,
            ..Default::default()
        })
    })
}

/// cpp-host `SharedData::get`: `NotFound` when absent.
pub(crate) fn get_shared_data(vm_id: &str, key: &str) -> Result<(Vec<u8>, u32), Status> {
    let s = data_store().lock().map_err(|_| Status::InternalFailure)?;
    s.data
        .get(vm_id)
        .and_then(|m| m.get(key))
        .cloned()
        .ok_or(Status::NotFound)
}

/// cpp-host `SharedData::set` (src/shared_data.cc): on an existing key a
/// non-zero `cas` must match the stored one, else `CasMismatch`; a missing
/// key is created whatever `cas` says (the filter relies on this to create
/// a key only if absent, passing a cas no value has). Every write, and only
/// a write, takes a fresh cas (`nextCas`, never 0).
pub(crate) fn set_shared_data(vm_id: &str, key: &str, value: &[u8], cas: u32) -> Status {
    let Ok(mut guard) = data_store().lock() else {
        return Status::InternalFailure;
    };
    let s = &mut *guard;
    let map = s.data.entry(vm_id.to_string()).or_default();
    let existing = map.get(key).map(|e| e.1);
    if let Some(stored) = existing
        && cas != 0
        && cas != stored
    {
        return Status::CasMismatch;
    }
    let next = s.next_cas;
    s.next_cas = s.next_cas.wrapping_add(1);
    if s.next_cas == 0 {
        s.next_cas = 1;
    }
    map.insert(key.to_string(), (value.to_vec(), next));
    Status::Ok
}

/// Creates `key` only if it is absent, else `CasMismatch`. proxy-wasm has no
/// such call (its filters pass a cas no value has, see above); the
/// component's `key-value` import has `absent` as a condition, and it is
/// served from the same store so both kinds of guest share one state.
pub(crate) fn add_shared_data(vm_id: &str, key: &str, value: &[u8]) -> Status {
    let Ok(mut guard) = data_store().lock() else {
        return Status::InternalFailure;
    };
    let s = &mut *guard;
    let map = s.data.entry(vm_id.to_string()).or_default();
    if map.contains_key(key) {
        return Status::CasMismatch;
    }
    let next = s.next_cas;
    s.next_cas = s.next_cas.wrapping_add(1);
    if s.next_cas == 0 {
        s.next_cas = 1;
    }
    map.insert(key.to_string(), (value.to_vec(), next));
    Status::Ok
}

struct Queue {
    items: VecDeque<Vec<u8>>,
    owner_context: u32,
    owner: UnboundedSender<VmEvent>,
}

#[derive(Default)]
struct QueueStore {
    tokens: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_token: u32,
}

fn queue_store() -> &'static Mutex<QueueStore> {
    static S: OnceLock<Mutex<QueueStore>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(QueueStore::default()))
}

/// cpp-host `SharedQueue::registerQueue`: one token per (vm_id, name); a later
/// registration moves ownership (who gets `on_queue_ready`) and keeps data.
pub(crate) fn register_queue(
    vm_id: &str,
    name: &str,
    context_id: u32,
    owner: UnboundedSender<VmEvent>,
) -> Result<u32, Status> {
    let mut s = queue_store().lock().map_err(|_| Status::InternalFailure)?;
    let key = (vm_id.to_string(), name.to_string());
    let token = match s.tokens.get(&key) {
        Some(t) => *t,
        None => {
            s.next_token += 1;
            let t = s.next_token;
            s.tokens.insert(key, t);
            t
        }
    };
    let items = s.queues.remove(&token).map(|q| q.items).unwrap_or_default();
    s.queues.insert(
        token,
        Queue {
            items,
            owner_context: context_id,
            owner,
        },
    );
    Ok(token)
}

/// cpp-host `SharedQueue::resolveQueue`: `NotFound` for an unknown queue.
pub(crate) fn resolve_queue(vm_id: &str, name: &str) -> Result<u32, Status> {
    let s = queue_store().lock().map_err(|_| Status::InternalFailure)?;
    s.tokens
        .get(&(vm_id.to_string(), name.to_string()))
        .copied()
        .ok_or(Status::NotFound)
}

/// cpp-host `SharedQueue::dequeue`: `Empty` when nothing is queued.
pub(crate) fn dequeue(token: u32) -> Result<Vec<u8>, Status> {
    let mut s = queue_store().lock().map_err(|_| Status::InternalFailure)?;
    let q = s.queues.get_mut(&token).ok_or(Status::NotFound)?;
    q.items.pop_front().ok_or(Status::Empty)
}

/// cpp-host `SharedQueue::enqueue`: queue, then wake the owner on its thread.
pub(crate) fn enqueue(token: u32, value: &[u8]) -> Status {
    let (owner, ctx) = {
        let Ok(mut s) = queue_store().lock() else {
            return Status::InternalFailure;
        };
        let Some(q) = s.queues.get_mut(&token) else {
            return Status::NotFound;
        };
        q.items.push_back(value.to_vec());
        (q.owner.clone(), q.owner_context)
    };
    // A dead owner (VM gone) just leaves the item queued, as in cpp-host
    // where `getThreadLocalWasm` finds nothing.
    let _ = owner.send(VmEvent::QueueReady {
        context_id: ctx,
        token,
    });
    Status::Ok
}

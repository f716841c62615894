//! Task handles bound to the principal whose call created them (the MCP
//! 2026-07-28 tasks extension, `io.modelcontextprotocol/tasks`).
//!
//! A server may answer a `tools/call` with a `CreateTaskResult`
//! (`resultType: "task"`, a `taskId`), and the client then polls
//! `tasks/get`, answers with `tasks/update` and stops with `tasks/cancel`,
//! naming only the `taskId`. Sessions are gone in 2026-07-28, so nothing in
//! those requests ties them to the caller that started the task; the
//! extension leaves it to servers ("Servers **MUST** perform authentication
//! and authorization checks on each task-related request to ensure that the
//! client has permission to access a task"), and a server that does not
//! leaves the handle as a bearer capability anyone who learns it can use.
//!
//! The filter does that check itself, so it holds whatever the server does:
//! when an answer creates a task, the handle is bound (in the store every
//! worker shares) to the principal of the call — subject, agent and tenant
//! of the verified token, or "anonymous" on a server without identity — and
//! a later task request is let through only for that principal, before the
//! task's TTL ends. A handle the filter never saw bound is refused too: it
//! was created elsewhere (another proxy, before a restart) or guessed, and
//! the filter cannot tell whose it is.
//!
//! The store holds a SHA-256 of the handle (handles are capabilities, not
//! to be kept in the clear) and of the principal.

use crate::env::{Env, SharedWrite};
use crate::identity::Identity;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A task's binding lasts its `ttlMs`, at most this long.
pub const MAX_TTL_SECS: u64 = 30 * 86_400;
/// The binding of a task whose result names no `ttlMs`.
pub const DEFAULT_TTL_SECS: u64 = 86_400;

/// Why a task request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRefusal {
    /// No binding: the task was not created through this proxy, or its
    /// binding's TTL ended.
    Unknown,
    /// Bound to another principal.
    OtherPrincipal,
}

impl std::fmt::Display for TaskRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskRefusal::Unknown => {
                "the task was not created through this proxy, or its time to live has ended"
            }
            TaskRefusal::OtherPrincipal => "the task belongs to another principal",
        })
    }
}

/// What a binding says of its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The tool whose call created the task.
    pub tool: Option<String>,
}

fn hex_sha256(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

fn key(server: &str, task_id: &str) -> String {
    format!("portcullis.task/{server}/{}", hex_sha256(&[task_id]))
}

/// The principal a task is bound to, hashed.
pub fn principal(identity: Option<&Identity>) -> String {
    match identity {
        Some(i) => hex_sha256(&[
            "token",
            &i.issuer,
            &i.subject,
            i.agent.as_deref().unwrap_or(""),
            i.tenant.as_deref().unwrap_or(""),
        ]),
        None => hex_sha256(&["anonymous"]),
    }
}

/// The handle a `CreateTaskResult` answer carries, with its TTL in seconds:
/// 2026-07-28's (`result.resultType == "task"`, `taskId` and `ttlMs` in the
/// result) or 2025-11-25's (`result.task` with `taskId` and `ttl` in ms).
pub fn created(answer: &Value) -> Option<(&str, u64)> {
    let result = answer.get("result")?;
    let (task, ttl_key) = if result.get("resultType").and_then(Value::as_str) == Some("task") {
        (result, "ttlMs")
    } else {
        (result.get("task").filter(|t| t.is_object())?, "ttl")
    };
    let id = task.get("taskId").and_then(Value::as_str)?;
    let ttl = task
        .get(ttl_key)
        .and_then(Value::as_u64)
        .map_or(DEFAULT_TTL_SECS, |ms| ms.div_ceil(1000))
        .clamp(1, MAX_TTL_SECS);
    Some((id, ttl))
}

/// Binds `task_id` on `server` to `principal` until `now + ttl`. `false`
/// when the host keeps no shared store (the task will be refused) or the
/// handle is bound already to someone else (the first binding stands).
pub fn bind(
    env: &mut dyn Env,
    server: &str,
    task_id: &str,
    principal: &str,
    tool: Option<&str>,
    ttl_secs: u64,
) -> bool {
    let expires = env.now_nanos() / 1_000_000_000 + ttl_secs;
    let value = serde_json::json!({"p": principal, "tool": tool, "exp": expires});
    let k = key(server, task_id);
    let bytes = value.to_string().into_bytes();
    match env.shared_write(&k, &bytes, None) {
        SharedWrite::Written => true,
        SharedWrite::Unavailable => false,
        // Bound before: the same principal may renew it (a server repeats a
        // handle); another's binding is kept, never taken over.
        SharedWrite::Conflict => match env.shared_get_cas(&k) {
            Some((old, cas)) => {
                let same = serde_json::from_slice::<Value>(&old)
                    .ok()
                    .and_then(|v| v.get("p").and_then(Value::as_str).map(str::to_owned))
                    .is_some_and(|p| p == principal);
                same && env.shared_write(&k, &bytes, Some(cas)) == SharedWrite::Written
            }
            None => false,
        },
    }
}

/// Whether `principal` may use `task_id` on `server` now.
pub fn check(
    env: &dyn Env,
    server: &str,
    task_id: &str,
    principal: &str,
) -> Result<Bound, TaskRefusal> {
    let raw = env
        .shared_get(&key(server, task_id))
        .ok_or(TaskRefusal::Unknown)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| TaskRefusal::Unknown)?;
    let now = env.now_nanos() / 1_000_000_000;
    if v.get("exp")
        .and_then(Value::as_u64)
        .is_none_or(|e| e <= now)
    {
        return Err(TaskRefusal::Unknown);
    }
    let bound = v.get("p").and_then(Value::as_str).unwrap_or("");
    // Not secrets, but the comparison costs nothing to make constant-time.
    if !constant_time_eq(bound.as_bytes(), principal.as_bytes()) {
        return Err(TaskRefusal::OtherPrincipal);
    }
    Ok(Bound {
        tool: v.get("tool").and_then(Value::as_str).map(str::to_owned),
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::MemoryEnv;
    use serde_json::json;

    #[test]
    fn a_task_is_usable_by_its_principal_only_until_its_ttl() {
        let mut env = MemoryEnv::default();
        let alice = hex_sha256(&["alice"]);
        let bob = hex_sha256(&["bob"]);
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "resultType": "task", "taskId": "t-1", "status": "working", "ttlMs": 60_000}});
        let (id, ttl) = created(&answer).unwrap();
        assert_eq!((id, ttl), ("t-1", 60));
        assert!(bind(&mut env, "s", id, &alice, Some("build"), ttl));
        assert_eq!(
            check(&env, "s", "t-1", &alice),
            Ok(Bound {
                tool: Some("build".into())
            })
        );
        assert_eq!(
            check(&env, "s", "t-1", &bob),
            Err(TaskRefusal::OtherPrincipal)
        );
        // Another server's task of the same id, and an id never bound.
        assert_eq!(check(&env, "t", "t-1", &alice), Err(TaskRefusal::Unknown));
        assert_eq!(check(&env, "s", "t-2", &alice), Err(TaskRefusal::Unknown));
        // Bob cannot take the handle over by having it handed to him.
        assert!(!bind(&mut env, "s", id, &bob, None, ttl));
        assert_eq!(
            check(&env, "s", "t-1", &bob),
            Err(TaskRefusal::OtherPrincipal)
        );
        env.advance_secs(61);
        assert_eq!(check(&env, "s", "t-1", &alice), Err(TaskRefusal::Unknown));
    }

    #[test]
    fn only_a_create_task_result_creates_a_task() {
        for not in [
            json!({"result": {"resultType": "complete", "taskId": "x"}}),
            json!({"result": {"resultType": "task"}}),
            json!({"result": {"resultType": "task", "taskId": 7}}),
            json!({"error": {"code": 1, "message": "m"}}),
        ] {
            assert_eq!(created(&not), None, "{not}");
        }
        let huge = json!({"result": {"resultType": "task", "taskId": "x", "ttlMs": u64::MAX}});
        assert_eq!(created(&huge), Some(("x", MAX_TTL_SECS)));
        let none = json!({"result": {"resultType": "task", "taskId": "x"}});
        assert_eq!(created(&none), Some(("x", DEFAULT_TTL_SECS)));
        // 2025-11-25: `{task: {taskId, ttl}}`, so its tasks/get and
        // tasks/result find the handle bound too.
        let old = json!({"result": {"task": {"taskId": "y", "status": "working", "ttl": 5_000}}});
        assert_eq!(created(&old), Some(("y", 5)));
    }
}

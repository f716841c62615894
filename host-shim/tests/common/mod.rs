//! Test helpers: build WAT modules that call the raw proxy-wasm imports.
//!
//! Modules report what they saw through filter state (`proxy_set_property`),
//! which tests read back from the stream, so each test can assert on exact
//! statuses and bytes without a wasm-side test framework.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::sync::Arc;

use host_shim::{MemoryLogSink, Plugin, PluginConfig, StreamCore};

/// Collects string literals as data segments and hands out
/// `(i32.const ptr) (i32.const len)` operands.
pub struct Wat {
    data: RefCell<Vec<(u32, Vec<u8>)>>,
    next: RefCell<u32>,
}

impl Default for Wat {
    fn default() -> Self {
        Self::new()
    }
}

impl Wat {
    pub fn new() -> Self {
        Self {
            data: RefCell::new(Vec::new()),
            next: RefCell::new(4096),
        }
    }

    /// Operands for a byte string: pointer then length.
    pub fn b(&self, bytes: &[u8]) -> String {
        let mut next = self.next.borrow_mut();
        let p = *next;
        *next += bytes.len() as u32 + 8;
        self.data.borrow_mut().push((p, bytes.to_vec()));
        format!("(i32.const {p}) (i32.const {})", bytes.len())
    }

    /// Raw (ptr, len) of a new literal.
    pub fn raw(&self, s: &str) -> (u32, u32) {
        let ops = self.s(s);
        let nums: Vec<u32> = ops
            .split(|c: char| !c.is_ascii_digit())
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().unwrap())
            .collect();
        (nums[1], nums[3])
    }

    pub fn s(&self, s: &str) -> String {
        self.b(s.as_bytes())
    }

    /// The proxy-wasm pairs encoding of `pairs`, as operands.
    pub fn pairs(&self, pairs: &[(&str, &str)]) -> String {
        let p: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        self.b(&host_shim::abi::encode_pairs(&p))
    }

    /// A full module: memory, allocator, ABI marker, recording helpers, and
    /// default callbacks for whatever `body` does not define.
    pub fn module(&self, body: &str) -> String {
        let mut m = String::from("(module\n");
        m.push_str(IMPORTS);
        m.push_str(
            r#"
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 131072))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  ;; record(key, status): filter state key -> 4-byte LE status
  (func $rec (param $kp i32) (param $kl i32) (param $st i32)
    (i32.store (i32.const 100) (local.get $st))
    (drop (call $proxy_set_property (local.get $kp) (local.get $kl) (i32.const 100) (i32.const 4))))
  ;; out(key): filter state key -> the buffer whose ptr/size are at 200/204
  (func $out (param $kp i32) (param $kl i32)
    (drop (call $proxy_set_property (local.get $kp) (local.get $kl)
      (i32.load (i32.const 200)) (i32.load (i32.const 204)))))
  ;; log(msg) at info
  (func $log (param $p i32) (param $l i32)
    (drop (call $proxy_log (i32.const 2) (local.get $p) (local.get $l))))
"#,
        );
        for (name, def) in DEFAULTS {
            if !body.contains(&format!("\"{name}\"")) {
                m.push_str(def);
                m.push('\n');
            }
        }
        m.push_str(body);
        for (p, bytes) in self.data.borrow().iter() {
            let esc: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
            m.push_str(&format!("\n  (data (i32.const {p}) \"{esc}\")"));
        }
        m.push_str("\n)\n");
        m
    }
}

const DEFAULTS: &[(&str, &str)] = &[
    (
        "proxy_on_context_create",
        r#"  (func (export "proxy_on_context_create") (param i32 i32))"#,
    ),
    (
        "proxy_on_vm_start",
        r#"  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))"#,
    ),
    (
        "proxy_on_configure",
        r#"  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))"#,
    ),
];

const IMPORTS: &str = r#"
  (import "env" "proxy_log" (func $proxy_log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $proxy_get_log_level (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $proxy_get_current_time_nanoseconds (param i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $proxy_set_tick_period_milliseconds (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $proxy_get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $proxy_set_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $proxy_get_header_map_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $proxy_set_header_map_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $proxy_get_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $proxy_replace_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $proxy_remove_header_map_value (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $proxy_get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $proxy_set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $proxy_get_shared_data (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $proxy_set_shared_data (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $proxy_register_shared_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $proxy_resolve_shared_queue (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $proxy_dequeue_shared_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $proxy_enqueue_shared_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $proxy_continue_stream (param i32) (result i32)))
  (import "env" "proxy_close_stream" (func $proxy_close_stream (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $proxy_send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $proxy_http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $proxy_grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $proxy_grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $proxy_grpc_send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $proxy_grpc_cancel (param i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $proxy_grpc_close (param i32) (result i32)))
  (import "env" "proxy_get_status" (func $proxy_get_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $proxy_set_effective_context (param i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $proxy_call_foreign_function (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_done" (func $proxy_done (result i32)))
  (import "env" "proxy_define_metric" (func $proxy_define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $proxy_increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $proxy_record_metric (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $proxy_get_metric (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
"#;

pub fn config(name: &str) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        root_id: format!("{name}-root"),
        vm_id: format!("{name}-vm"),
        ..Default::default()
    }
}

/// Loads `wat` text with a memory log sink attached.
pub fn load(wat: &str, mut cfg: PluginConfig) -> (Arc<Plugin>, Arc<MemoryLogSink>) {
    let sink = Arc::new(MemoryLogSink::default());
    cfg.log_sink = Some(sink.clone());
    let bin = wat::parse_str(wat).unwrap_or_else(|e| panic!("bad wat: {e}\n{wat}"));
    let p = Plugin::load(&bin, cfg).expect("plugin loads");
    (p, sink)
}

/// A filter-state value recorded by `$rec` as a status code.
pub fn status(s: &StreamCore, key: &str) -> Option<u32> {
    let d = s.data().borrow();
    d.info
        .filter_state
        .get(&format!("wasm.{key}"))
        .map(|v| u32::from_le_bytes(v.as_slice().try_into().unwrap()))
}

/// A filter-state value recorded by `$out` (raw bytes).
pub fn bytes(s: &StreamCore, key: &str) -> Option<Vec<u8>> {
    s.data()
        .borrow()
        .info
        .filter_state
        .get(&format!("wasm.{key}"))
        .cloned()
}

pub fn hm(pairs: &[(&str, &str)]) -> host_shim::HeaderMap {
    host_shim::HeaderMap::from_pairs(pairs)
}

pub fn req_headers(path: &str) -> host_shim::HeaderMap {
    hm(&[
        (":method", "POST"),
        (":path", path),
        (":authority", "example.com"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("x-dup", "one"),
        ("x-dup", "two"),
    ])
}

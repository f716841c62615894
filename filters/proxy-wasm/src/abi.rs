//! [`Host`] over the proxy-wasm ABI v0.2.1 imports.
//!
//! The filter declares the imports it uses itself instead of calling the
//! SDK's `hostcalls` wrappers, because those panic on any status they do not
//! expect (a refused header edit, say), and a panic is a trap that kills the
//! VM for every stream on the worker. Here each status becomes a
//! [`HostError`] the stream turns into a fail-closed reply.
//!
//! Maps travel in the ABI's pair encoding: a little-endian `u32` count, then
//! a `u32` key length and `u32` value length per pair, then each key and
//! value followed by a NUL byte. Decoding is bounds-checked throughout.

/// Decodes the ABI's pair encoding.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    let mut at = 4usize;
    for _ in 0..count {
        sizes.push((read_u32(at)?, read_u32(at.checked_add(4)?)?));
        at = at.checked_add(8)?;
    }
    let mut pairs = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at = at.checked_add(v)?.checked_add(1)?;
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

/// Encodes pairs in the ABI's pair encoding.
pub fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// The `grpc_service` argument of `proxy_grpc_call` for `cluster`: a
/// serialized `envoy.config.core.v3.GrpcService` whose field `envoy_grpc`
/// (number one) names the cluster in its `cluster_name`. Envoy's
/// `Context::grpcCall` (source/extensions/common/wasm/context.cc) first
/// parses the bytes as that message and takes them as a bare cluster name
/// only when they do not parse. A bare name that happens to parse (as
/// unknown fields: `xxxx` does) has no target and gets `BadArgument`, on
/// which the SDK's `dispatch_grpc_call` panics, killing the VM. So the
/// message is sent; a name of 126 bytes or more (whose lengths would not be
/// one-byte varints, so not UTF-8 for the SDK's `&str`) goes bare.
pub fn grpc_service_arg(cluster: &str) -> String {
    let n = cluster.len();
    if n >= 126 {
        return cluster.to_owned();
    }
    let mut out = String::with_capacity(n + 4);
    // Tag 0x0a (field 1, length-delimited) and a one-byte length, twice;
    // every byte is below 0x80, so the string stays ASCII around the name.
    out.push('\u{0a}');
    out.push(char::from((n + 2) as u8));
    out.push('\u{0a}');
    out.push(char::from(n as u8));
    out.push_str(cluster);
    out
}

#[cfg(target_arch = "wasm32")]
pub use imports::AbiHost;

#[cfg(target_arch = "wasm32")]
mod imports {
    use super::decode_pairs;
    use super::encode_pairs;
    use crate::host::{Body, Headers, Host, HostError, Level};
    use portcullis_core::engine::LocalReply;
    use portcullis_core::outcall::{CallResult, Outcall, OutcallKind};

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_set_buffer_bytes(
            buffer_type: u32,
            start: usize,
            size: usize,
            buffer_data: *const u8,
            buffer_size: usize,
        ) -> u32;
        fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_metric_id: *mut u32,
        ) -> u32;
        fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        fn proxy_register_shared_queue(
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        fn proxy_enqueue_shared_queue(
            queue_id: u32,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_dequeue_shared_queue(
            queue_id: u32,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    }

    // Metric ids by name. A VM is single-threaded, so a thread-local is
    // the VM's own table.
    std::thread_local! {
        static METRICS: std::cell::RefCell<std::collections::HashMap<String, u32>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
        /// The release queue's token, from the root context's registration.
        /// Tokens are proxy-wide (cpp-host `SharedQueue`), so a stream
        /// enqueues on it directly, with no `proxy_resolve_shared_queue`
        /// (which would need this VM's `vm_id`).
        static RELEASE_QUEUE: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    }

    /// Counter, in the ABI's metric types.
    const METRIC_COUNTER: u32 = 0;

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buf: *mut u8, buf_len: usize) -> u16;
    }

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    const CAS_MISMATCH: u32 = 8;
    const EMPTY: u32 = 7;

    fn check(call: &'static str, status: u32) -> Result<(), HostError> {
        if status == OK {
            Ok(())
        } else {
            Err(HostError { call, status })
        }
    }

    fn map_type(which: Headers) -> u32 {
        match which {
            Headers::Request => 0,
            Headers::RequestTrailers => 1,
            Headers::Response => 2,
            Headers::ResponseTrailers => 3,
        }
    }

    fn buffer_type(which: Body) -> u32 {
        match which {
            Body::Request => 0,
            Body::Response => 1,
        }
    }

    /// Takes ownership of memory the host allocated through the module's
    /// `proxy_on_memory_allocate`.
    ///
    /// # Safety
    /// `data` must be null or a pointer returned by that allocator for `size`
    /// bytes, not yet freed.
    unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() || size == 0 {
            return Vec::new();
        }
        // SAFETY: per the ABI, the host filled `size` bytes it allocated with the
        // module's allocator (a `Vec<u8>` of that capacity).
        unsafe { Vec::from_raw_parts(data, size, size) }
    }

    /// The proxy itself.
    pub struct AbiHost;

    impl AbiHost {
        /// Registers the root context on the fleet release queue; its
        /// `on_queue_ready` then gets every release. cpp-host's
        /// `SharedQueue::registerQueue` keys a queue by (vm_id, name) and a
        /// later registration of the same name takes it over, keeping its
        /// token and items: with one VM per worker, the last worker's root
        /// drains the releases of all.
        pub fn register_release_queue(&mut self, name: &str) -> Result<u32, HostError> {
            let mut id: u32 = 0;
            // SAFETY: pointer and length of a live str; out-pointer to a local.
            let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
            check("proxy_register_shared_queue", status)?;
            RELEASE_QUEUE.with(|q| q.set(Some(id)));
            Ok(id)
        }

        /// The next item of a queue this root registered; `None` when empty.
        pub fn dequeue(&mut self, queue: u32) -> Result<Option<Vec<u8>>, HostError> {
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size: usize = 0;
            // SAFETY: out-pointers to locals.
            let status = unsafe { proxy_dequeue_shared_queue(queue, &mut data, &mut size) };
            if status == EMPTY {
                return Ok(None);
            }
            check("proxy_dequeue_shared_queue", status)?;
            // SAFETY: see `take_host_bytes`.
            Ok(Some(unsafe { take_host_bytes(data, size) }))
        }

        /// `proxy_set_tick_period_milliseconds` for the root context (0:
        /// no ticks).
        pub fn set_tick_period(&mut self, ms: u32) -> Result<(), HostError> {
            // SAFETY: no pointers.
            check("proxy_set_tick_period_milliseconds", unsafe {
                proxy_set_tick_period_milliseconds(ms)
            })
        }

        /// The answer to an HTTP outcall, read in `on_http_call_response`.
        /// No headers: the call failed (reset, timeout, no healthy host).
        pub fn http_call_result(&self, num_headers: usize, body_size: usize) -> CallResult {
            use proxy_wasm::types::{BufferType, MapType};
            if num_headers == 0 {
                return CallResult::Failed(
                    "no answer (the call failed, was reset or timed out)".into(),
                );
            }
            let headers = match proxy_wasm::hostcalls::get_map(MapType::HttpCallResponseHeaders) {
                Ok(h) => h,
                Err(s) => {
                    return CallResult::Failed(format!(
                        "its headers could not be read (status {})",
                        s as u32
                    ));
                }
            };
            let body = match proxy_wasm::hostcalls::get_buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size,
            ) {
                Ok(b) => b.unwrap_or_default(),
                Err(s) => {
                    return CallResult::Failed(format!(
                        "its body could not be read (status {})",
                        s as u32
                    ));
                }
            };
            let status = headers
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok())
                .unwrap_or(0);
            let headers = headers
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect();
            CallResult::Http {
                status,
                headers,
                body,
            }
        }

        /// The answer to a gRPC outcall, read in `on_grpc_call_response`.
        pub fn grpc_call_result(&self, status: u32, size: usize) -> CallResult {
            use proxy_wasm::types::BufferType;
            let body = if size == 0 {
                Vec::new()
            } else {
                match proxy_wasm::hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size) {
                    Ok(b) => b.unwrap_or_default(),
                    Err(s) => {
                        return CallResult::Failed(format!(
                            "its message could not be read (status {})",
                            s as u32
                        ));
                    }
                }
            };
            let message = if status == 0 {
                String::new()
            } else {
                proxy_wasm::hostcalls::get_grpc_status()
                    .ok()
                    .and_then(|(_, m)| m)
                    .unwrap_or_default()
            };
            CallResult::Grpc {
                status,
                message,
                body,
            }
        }
    }

    impl Host for AbiHost {
        fn headers(&self, which: Headers) -> Result<Vec<(String, String)>, HostError> {
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size: usize = 0;
            // SAFETY: out-pointers to locals; the host writes an allocation of ours.
            let status =
                unsafe { proxy_get_header_map_pairs(map_type(which), &mut data, &mut size) };
            check("proxy_get_header_map_pairs", status)?;
            // SAFETY: see `take_host_bytes`.
            let bytes = unsafe { take_host_bytes(data, size) };
            decode_pairs(&bytes).ok_or(HostError {
                call: "proxy_get_header_map_pairs (malformed map)",
                status: 4,
            })
        }

        fn set_header(
            &mut self,
            which: Headers,
            name: &str,
            value: Option<&str>,
        ) -> Result<(), HostError> {
            // SAFETY: pointers and lengths of live slices.
            let status = unsafe {
                match value {
                    Some(v) => proxy_replace_header_map_value(
                        map_type(which),
                        name.as_ptr(),
                        name.len(),
                        v.as_ptr(),
                        v.len(),
                    ),
                    None => {
                        proxy_remove_header_map_value(map_type(which), name.as_ptr(), name.len())
                    }
                }
            };
            // Removing a header that is not there is not a failure.
            if value.is_none() && status == NOT_FOUND {
                return Ok(());
            }
            check("proxy_replace/remove_header_map_value", status)
        }

        fn body(&self, which: Body, size: usize) -> Result<Vec<u8>, HostError> {
            if size == 0 {
                return Ok(Vec::new());
            }
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut len: usize = 0;
            // SAFETY: out-pointers to locals.
            let status =
                unsafe { proxy_get_buffer_bytes(buffer_type(which), 0, size, &mut data, &mut len) };
            if status == NOT_FOUND || status == EMPTY {
                return Ok(Vec::new());
            }
            check("proxy_get_buffer_bytes", status)?;
            // SAFETY: see `take_host_bytes`.
            Ok(unsafe { take_host_bytes(data, len) })
        }

        fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) -> Result<(), HostError> {
            // start 0 and the whole current size: the "replace" form every host
            // supports (Envoy supports only prepend, replace and append).
            // SAFETY: pointer and length of a live slice.
            let status = unsafe {
                proxy_set_buffer_bytes(buffer_type(which), 0, size, data.as_ptr(), data.len())
            };
            check("proxy_set_buffer_bytes", status)
        }

        fn send_local_reply(&mut self, reply: &LocalReply) -> Result<(), HostError> {
            let headers = encode_pairs(&reply.headers);
            // SAFETY: pointers and lengths of live buffers.
            let status = unsafe {
                proxy_send_local_response(
                    u32::from(reply.status),
                    reply.details.as_ptr(),
                    reply.details.len(),
                    reply.body.as_ptr(),
                    reply.body.len(),
                    headers.as_ptr(),
                    headers.len(),
                    -1,
                )
            };
            check("proxy_send_local_response", status)
        }

        fn set_property(&mut self, path: &str, value: &[u8]) -> Result<(), HostError> {
            // SAFETY: pointers and lengths of live slices.
            let status = unsafe {
                proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
            };
            check("proxy_set_property", status)
        }

        fn log(&mut self, level: Level, message: &str) {
            // SAFETY: pointer and length of a live str. A failed log has nowhere
            // to be reported.
            let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
        }

        fn now_nanos(&self) -> u64 {
            let mut t: u64 = 0;
            // SAFETY: out-pointer to a local.
            let _ = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
            t
        }

        fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
            // The ABI's property path: segments separated by NUL bytes.
            let encoded = path.join("\0");
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size: usize = 0;
            // SAFETY: pointer and length of a live string; out-pointers to locals.
            let status = unsafe {
                proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size)
            };
            if status == NOT_FOUND {
                return Ok(None);
            }
            check("proxy_get_property", status)?;
            // SAFETY: see `take_host_bytes`.
            Ok(Some(unsafe { take_host_bytes(data, size) }))
        }

        fn shared_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
            Ok(self.shared_get_cas(key)?.map(|(v, _)| v))
        }

        fn shared_get_cas(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size: usize = 0;
            let mut cas: u32 = 0;
            // SAFETY: pointer and length of a live str; out-pointers to locals.
            let status = unsafe {
                proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
            };
            if status == NOT_FOUND {
                return Ok(None);
            }
            check("proxy_get_shared_data", status)?;
            // SAFETY: see `take_host_bytes`.
            Ok(Some((unsafe { take_host_bytes(data, size) }, cas)))
        }

        fn shared_set_cas(
            &mut self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<bool, HostError> {
            // proxy-wasm has no "set if absent". proxy-wasm-cpp-host's
            // SharedData::set (Envoy's) creates a missing key whatever cas is
            // given, and refuses an existing one whose cas differs; cas values
            // count up from 1, so u32::MAX is one no stored value has in
            // practice: passing it creates the key only if it is absent.
            let cas = cas.unwrap_or(u32::MAX);
            // SAFETY: pointers and lengths of live slices.
            let status = unsafe {
                proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
            };
            if status == CAS_MISMATCH {
                return Ok(false);
            }
            check("proxy_set_shared_data", status).map(|()| true)
        }

        fn shared_set(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
            // cas 0: unconditional. The engine merges before writing; a lost
            // race costs one list's verdicts until the next tools/list.
            // SAFETY: pointers and lengths of live slices.
            let status = unsafe {
                proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), 0)
            };
            check("proxy_set_shared_data", status)
        }

        fn count(&mut self, metric: &str, delta: u64) -> Result<(), HostError> {
            let known = METRICS.with(|m| m.borrow().get(metric).copied());
            let id = match known {
                Some(id) => id,
                None => {
                    let mut id: u32 = 0;
                    // SAFETY: pointer and length of a live str; out-pointer to a local.
                    let status = unsafe {
                        proxy_define_metric(METRIC_COUNTER, metric.as_ptr(), metric.len(), &mut id)
                    };
                    check("proxy_define_metric", status)?;
                    METRICS.with(|m| m.borrow_mut().insert(metric.to_owned(), id));
                    id
                }
            };
            let offset = i64::try_from(delta).unwrap_or(i64::MAX);
            // SAFETY: no pointers.
            check("proxy_increment_metric", unsafe {
                proxy_increment_metric(id, offset)
            })
        }

        fn dispatch_call(&mut self, call: &Outcall) -> Result<u32, HostError> {
            // The SDK's dispatchers, not raw imports: they register the
            // token with the SDK's dispatcher, which routes the answer (it
            // arrives at the root context: cpp-host `http_call` uses
            // `root_context()`) back to this stream. They panic only on a
            // status Envoy's `Context::httpCall` / `grpcCall`
            // (source/extensions/common/wasm/context.cc) never returns.
            let timeout = std::time::Duration::from_millis(u64::from(call.timeout_ms));
            match &call.kind {
                OutcallKind::Http {
                    method,
                    path,
                    authority,
                    headers,
                    body,
                } => {
                    let mut all: Vec<(&str, &str)> = vec![
                        (":method", method.as_str()),
                        (":path", path.as_str()),
                        (":authority", authority.as_str()),
                    ];
                    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    let body = (!body.is_empty()).then_some(body.as_slice());
                    proxy_wasm::hostcalls::dispatch_http_call(
                        &call.cluster,
                        all,
                        body,
                        Vec::new(),
                        timeout,
                    )
                    .map_err(|s| HostError {
                        call: "proxy_http_call",
                        status: s as u32,
                    })
                }
                OutcallKind::Grpc {
                    service,
                    method,
                    message,
                    initial_metadata,
                } => {
                    let md: Vec<(&str, &[u8])> = initial_metadata
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_slice()))
                        .collect();
                    proxy_wasm::hostcalls::dispatch_grpc_call(
                        &super::grpc_service_arg(&call.cluster),
                        service,
                        method,
                        md,
                        Some(message.as_slice()),
                        timeout,
                    )
                    .map_err(|s| HostError {
                        call: "proxy_grpc_call",
                        status: s as u32,
                    })
                }
            }
        }

        fn enqueue_release(&mut self, release: &[u8]) -> Result<(), HostError> {
            let Some(queue) = RELEASE_QUEUE.with(std::cell::Cell::get) else {
                return Err(HostError {
                    call: "proxy_enqueue_shared_queue (no release queue registered)",
                    status: NOT_FOUND,
                });
            };
            // SAFETY: pointer and length of a live slice.
            let status =
                unsafe { proxy_enqueue_shared_queue(queue, release.as_ptr(), release.len()) };
            check("proxy_enqueue_shared_queue", status)
        }

        fn resume_request(&mut self) -> Result<(), HostError> {
            proxy_wasm::hostcalls::resume_http_request().map_err(|s| HostError {
                call: "proxy_continue_stream",
                status: s as u32,
            })
        }

        fn random_bytes(&mut self, buf: &mut [u8]) {
            // SAFETY: pointer and length of a live buffer. Envoy implements
            // WASI random_get; on failure the buffer keeps its zeros, which only
            // makes a generated request id less unique.
            let _ = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_malformed_maps_are_refused() {
        let pairs = vec![
            (":path".to_string(), "/mcp".to_string()),
            ("x".to_string(), String::new()),
        ];
        let bytes = encode_pairs(&pairs);
        assert_eq!(decode_pairs(&bytes), Some(pairs));
        assert_eq!(decode_pairs(&bytes[..bytes.len() - 3]), None);
        assert_eq!(decode_pairs(&[255, 255, 255, 255]), None);
        assert_eq!(decode_pairs(&[]), Some(vec![]));
    }

    #[test]
    fn grpc_service_names_its_cluster_as_a_message() {
        assert_eq!(
            grpc_service_arg("fleet").as_bytes(),
            b"\x0a\x07\x0a\x05fleet"
        );
        // `xxxx` would parse as a GrpcService of unknown fields if sent bare.
        assert_eq!(grpc_service_arg("xxxx").as_bytes(), b"\x0a\x06\x0a\x04xxxx");
        let long = "c".repeat(125);
        assert_eq!(grpc_service_arg(&long).len(), 129);
        assert_eq!(grpc_service_arg(&long).as_bytes()[1], 127);
        let longer = "c".repeat(126);
        assert_eq!(grpc_service_arg(&longer), longer);
    }
}

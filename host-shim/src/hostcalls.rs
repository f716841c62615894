//! The `env.proxy_*` host functions of ABI v0.2.1, with Envoy's semantics.
//!
//! Every function the Rust SDK 0.2.5 links is here, plus the rest of cpp-host's
//! `FOR_ALL_HOST_FUNCTIONS` for 0.2.x, so no module traps on a missing
//! import. Each returns a `proxy_result_t`; only a trap inside the module's
//! own allocator (called to return data) propagates as a trap. The statuses
//! follow cpp-host `src/exports.cc` and Envoy `context.cc`, cited per call.

use wasmtime::{Caller, Linker};

use crate::abi::{Status, buffer, decode_pairs, encode_pairs, map, stream};
use crate::grpc;
use crate::headers::HeaderMap;
use crate::metrics::{MetricKind, MetricValue, record_histogram};
use crate::props::{PropEnv, get_property};
use crate::shared;
use crate::stream::{Dir, FILTER_STATE_PREFIX, LocalReply, StreamAction};
use crate::vm::{Host, PendingHttpCall};

pub(crate) enum HErr {
    S(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for HErr {
    fn from(s: Status) -> Self {
        HErr::S(s)
    }
}

type R = Result<(), HErr>;

fn done(r: R) -> wasmtime::Result<i32> {
    match r {
        Ok(()) => Ok(Status::Ok as i32),
        Err(HErr::S(s)) => Ok(s as i32),
        Err(HErr::Trap(e)) => Err(e),
    }
}

fn span(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    Some(start..end)
}

pub(crate) fn read(c: &Caller<'_, Host>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let mem = c.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let r = span(ptr, len).ok_or(Status::InvalidMemoryAccess)?;
    mem.data(c)
        .get(r)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

pub(crate) fn write(c: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let mem = c.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let r = span(ptr, bytes.len() as i32).ok_or(Status::InvalidMemoryAccess)?;
    mem.data_mut(c)
        .get_mut(r)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(c: &mut Caller<'_, Host>, ptr: i32, v: u32) -> Result<(), Status> {
    write(c, ptr, &v.to_le_bytes())
}

/// cpp-host `copyToPointerSize`: allocate in the module (its
/// `proxy_on_memory_allocate`, or `malloc`), copy, return pointer and size.
/// Empty data gives a null pointer and size 0.
pub(crate) fn give(c: &mut Caller<'_, Host>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> R {
    let mut ptr = 0i32;
    if !data.is_empty() {
        let alloc = c
            .get_export("proxy_on_memory_allocate")
            .or_else(|| c.get_export("malloc"))
            .and_then(|e| e.into_func())
            .ok_or(Status::InvalidMemoryAccess)?;
        let f = alloc
            .typed::<i32, i32>(&*c)
            .map_err(|_| Status::InvalidMemoryAccess)?;
        ptr = f.call(&mut *c, data.len() as i32).map_err(HErr::Trap)?;
        if ptr == 0 {
            return Err(Status::InvalidMemoryAccess.into());
        }
        write(c, ptr, data)?;
    }
    write_u32(c, ptr_ptr, ptr as u32)?;
    write_u32(c, size_ptr, data.len() as u32)?;
    Ok(())
}

fn str_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn plugin_name(c: &Caller<'_, Host>) -> String {
    c.data().plugin.config().name.clone()
}

// ---- header maps ----

/// Envoy `getConstMap`: what the filter may read. `None` when Envoy's
/// pointer is null (headers already forwarded, or not yet there).
fn const_map(c: &Caller<'_, Host>, t: i32) -> Result<Option<HeaderMap>, Status> {
    let h = c.data();
    match t {
        map::HTTP_CALL_RESPONSE_HEADERS => {
            return Ok(h.http_call_response.as_ref().map(|r| r.headers.clone()));
        }
        map::HTTP_CALL_RESPONSE_TRAILERS => {
            return Ok(h.http_call_response.as_ref().map(|r| r.trailers.clone()));
        }
        map::GRPC_INITIAL_METADATA | map::GRPC_TRAILING_METADATA => return Ok(None),
        map::REQUEST_HEADERS..=map::RESPONSE_TRAILERS => {}
        _ => return Err(Status::BadArgument),
    }
    let Some(s) = h.stream() else {
        return Ok(None);
    };
    let s = s.borrow();
    Ok(match t {
        map::REQUEST_HEADERS => s.visible_request_headers().cloned(),
        map::RESPONSE_HEADERS => s.visible_response_headers().cloned(),
        map::REQUEST_TRAILERS => {
            // Envoy: no request trailers in the access-log phase.
            (s.request.trailers_active && !s.access_log_phase)
                .then(|| s.request.trailers.clone())
                .flatten()
        }
        _ => {
            if s.response.trailers_active || s.access_log_phase {
                s.response.trailers.clone()
            } else {
                None
            }
        }
    })
}

fn is_log_phase(c: &Caller<'_, Host>) -> bool {
    c.data()
        .stream()
        .map(|s| s.borrow().access_log_phase)
        .unwrap_or(false)
}

/// Envoy `getMap`: a mutable map, only while Envoy still holds it. Anything
/// else is `BadArgument`; a write to headers already forwarded is also
/// logged, since it would be silently lost if the host accepted it.
fn with_map(c: &Caller<'_, Host>, t: i32, f: impl FnOnce(&mut HeaderMap)) -> R {
    let (dir, trailers) = match t {
        map::REQUEST_HEADERS => (Dir::Request, false),
        map::REQUEST_TRAILERS => (Dir::Request, true),
        map::RESPONSE_HEADERS => (Dir::Response, false),
        map::RESPONSE_TRAILERS => (Dir::Response, true),
        _ => return Err(Status::BadArgument.into()),
    };
    let s = c.data().stream().ok_or(Status::BadArgument)?;
    let mut s = s.borrow_mut();
    let log_phase = s.access_log_phase;
    let end_of_stream = s.end_of_stream;
    let side = s.side_mut(dir);
    if trailers {
        // Envoy `Context::getMap`: in the last body callback of a stream
        // without trailers, writing trailers adds them
        // (`addDecodedTrailers` / `addEncodedTrailers`).
        if !side.trailers_active
            && !log_phase
            && end_of_stream
            && side.body.is_some()
            && side.trailers.is_none()
        {
            side.trailers = Some(HeaderMap::new());
            side.trailers_active = true;
            side.trailers_added = true;
        }
        if !side.trailers_active || log_phase {
            return Err(Status::BadArgument.into());
        }
        if let Some(m) = side.trailers.as_mut() {
            f(m);
        }
        return Ok(());
    }
    if !side.headers_active || log_phase {
        if side.forwarded_headers.is_some() {
            tracing::warn!(
                target: "wasm",
                plugin = %plugin_name(c),
                ?dir,
                "filter modified headers that were already forwarded; Envoy returns BadArgument \
                 and the change is lost (return StopIteration from the headers callback to keep them)"
            );
        }
        return Err(Status::BadArgument.into());
    }
    f(&mut side.headers);
    Ok(())
}

fn get_header_map_value(mut c: Caller<'_, Host>, t: i32, kp: i32, kl: i32, vp: i32, vs: i32) -> R {
    let key = str_of(&read(&c, kp, kl)?);
    let Some(m) = const_map(&c, t)? else {
        // Envoy getHeaderMapValue: NotFound in the log phase, else BadArgument.
        return Err(if is_log_phase(&c) {
            Status::NotFound
        } else {
            Status::BadArgument
        }
        .into());
    };
    let v = m.get(&key).ok_or(Status::NotFound)?.to_vec();
    give(&mut c, &v, vp, vs)
}

fn get_header_map_pairs(mut c: Caller<'_, Host>, t: i32, pp: i32, ps: i32) -> R {
    // Envoy getHeaderMapPairs: a missing map is an empty list, Ok.
    let pairs = const_map(&c, t)?.map(|m| m.to_pairs()).unwrap_or_default();
    let enc = encode_pairs(&pairs);
    give(&mut c, &enc, pp, ps)
}

fn set_header_map_pairs(c: Caller<'_, Host>, t: i32, p: i32, l: i32) -> R {
    let pairs = decode_pairs(&read(&c, p, l)?).ok_or(Status::BadArgument)?;
    with_map(&c, t, |m| m.set_pairs(&pairs))
}

fn add_header(c: Caller<'_, Host>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> R {
    let k = str_of(&read(&c, kp, kl)?);
    let v = read(&c, vp, vl)?;
    with_map(&c, t, |m| m.add(&k, &v))
}

fn replace_header(c: Caller<'_, Host>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> R {
    let k = str_of(&read(&c, kp, kl)?);
    let v = read(&c, vp, vl)?;
    with_map(&c, t, |m| m.replace(&k, &v))
}

fn remove_header(c: Caller<'_, Host>, t: i32, kp: i32, kl: i32) -> R {
    let k = str_of(&read(&c, kp, kl)?);
    with_map(&c, t, |m| m.remove(&k))
}

fn get_header_map_size(mut c: Caller<'_, Host>, t: i32, sp: i32) -> R {
    let mut size = 0usize;
    with_map(&c, t, |m| size = m.byte_size())?;
    write_u32(&mut c, sp, size as u32)?;
    Ok(())
}

// ---- buffers ----

enum Buf {
    Body(Dir),
    Const(Vec<u8>),
    Missing,
}

/// Envoy `getBuffer`.
fn buffer_of(c: &Caller<'_, Host>, t: i32) -> Result<Buf, Status> {
    let h = c.data();
    let cfg = h.plugin.config();
    Ok(match t {
        buffer::HTTP_REQUEST_BODY => Buf::Body(Dir::Request),
        buffer::HTTP_RESPONSE_BODY => Buf::Body(Dir::Response),
        buffer::DOWNSTREAM_DATA | buffer::UPSTREAM_DATA => Buf::Const(Vec::new()),
        // Envoy `grpc_receive_buffer_`: set only during on_grpc_receive.
        buffer::GRPC_RECEIVE_BUFFER => match &h.grpc_receive {
            Some(m) => Buf::Const(m.clone()),
            None => Buf::Const(Vec::new()),
        },
        buffer::HTTP_CALL_RESPONSE_BODY => match &h.http_call_response {
            Some(r) => Buf::Const(r.body.clone()),
            None => Buf::Missing,
        },
        buffer::VM_CONFIGURATION => Buf::Const(cfg.vm_config.clone()),
        buffer::PLUGIN_CONFIGURATION if h.in_configure => Buf::Const(cfg.configuration.clone()),
        buffer::PLUGIN_CONFIGURATION => Buf::Missing,
        buffer::CALL_DATA => Buf::Const(h.call_data.clone()),
        _ => return Err(Status::BadArgument),
    })
}

/// The body a callback sees: the chunk or buffer of a body or trailers
/// callback, else what is held while the filter buffers (Envoy `getBuffer`:
/// `modifyDecodingBuffer` while `buffering_request_body_`), else nothing.
fn body_bytes(c: &Caller<'_, Host>, dir: Dir) -> Vec<u8> {
    c.data()
        .stream()
        .and_then(|s| s.borrow().side(dir).visible_body().cloned())
        .unwrap_or_default()
}

fn get_buffer_bytes(mut c: Caller<'_, Host>, t: i32, start: i32, len: i32, pp: i32, ps: i32) -> R {
    let data = match buffer_of(&c, t)? {
        Buf::Body(d) => body_bytes(&c, d),
        Buf::Const(v) => v,
        Buf::Missing => return Err(Status::NotFound.into()),
    };
    let (start, len) = (start as u32 as usize, len as u32 as usize);
    if start.checked_add(len).is_none() {
        return Err(Status::BadArgument.into());
    }
    // cpp-host get_buffer_bytes: clamp, never over-read.
    let slice = data
        .get(start.min(data.len())..start.saturating_add(len).min(data.len()))
        .unwrap_or_default()
        .to_vec();
    give(&mut c, &slice, pp, ps)
}

fn get_buffer_status(mut c: Caller<'_, Host>, t: i32, lp: i32, fp: i32) -> R {
    let len = match buffer_of(&c, t)? {
        Buf::Body(d) => body_bytes(&c, d).len(),
        Buf::Const(v) => v.len(),
        Buf::Missing => return Err(Status::NotFound.into()),
    };
    write_u32(&mut c, lp, len as u32)?;
    write_u32(&mut c, fp, 0)?;
    Ok(())
}

/// Envoy `Buffer::copyFrom` for body buffers: prepend (start 0, length 0),
/// replace (start 0, length >= size), append (start >= size); anything
/// else is `BadArgument`. (Envoy >= 1.31 also accepts start 0 with a
/// shorter length as "replace that prefix"; the shim keeps the older,
/// stricter rule so a filter that relies on it is caught here.)
fn set_buffer_bytes(c: Caller<'_, Host>, t: i32, start: i32, len: i32, dp: i32, dl: i32) -> R {
    let data = read(&c, dp, dl)?;
    let dir = match buffer_of(&c, t)? {
        Buf::Body(d) => d,
        _ => return Err(Status::BadArgument.into()),
    };
    let s = c.data().stream().ok_or(Status::BadArgument)?;
    let mut s = s.borrow_mut();
    let body = s
        .side_mut(dir)
        .visible_body_mut()
        .ok_or(Status::BadArgument)?;
    let (start, len) = (start as u32 as usize, len as u32 as usize);
    if start == 0 && len == 0 {
        let mut v = data;
        v.extend_from_slice(body);
        *body = v;
    } else if start == 0 && len >= body.len() {
        *body = data;
    } else if start >= body.len() {
        body.extend_from_slice(&data);
    } else {
        return Err(Status::BadArgument.into());
    }
    Ok(())
}

// ---- properties ----

fn get_property_call(mut c: Caller<'_, Host>, pp: i32, pl: i32, vp: i32, vs: i32) -> R {
    let path = read(&c, pp, pl)?;
    let v = {
        let h = c.data();
        let stream = h.stream();
        let guard = stream.as_ref().map(|s| s.borrow());
        let env = PropEnv {
            plugin: h.plugin.config(),
            stream: guard.as_deref(),
        };
        get_property(&env, &path)?
    };
    give(&mut c, &v, vp, vs)
}

/// Envoy `setProperty`: filter state under "wasm." + path; `NotFound`
/// without a stream (root contexts).
fn set_property_call(c: Caller<'_, Host>, pp: i32, pl: i32, vp: i32, vl: i32) -> R {
    let path = str_of(&read(&c, pp, pl)?);
    let value = read(&c, vp, vl)?;
    let s = c.data().stream().ok_or(Status::NotFound)?;
    s.borrow_mut()
        .info
        .filter_state
        .insert(format!("{FILTER_STATE_PREFIX}{path}"), value);
    Ok(())
}

// ---- stream control ----

fn continue_stream(c: Caller<'_, Host>, t: i32) -> R {
    let dir = match t {
        stream::REQUEST => Dir::Request,
        stream::RESPONSE => Dir::Response,
        stream::DOWNSTREAM => return Ok(()),
        stream::UPSTREAM => return Err(Status::Unimplemented.into()),
        _ => return Err(Status::BadArgument.into()),
    };
    if let Some(s) = c.data().stream() {
        let mut s = s.borrow_mut();
        s.push_action(StreamAction::Continue(dir));
        // Envoy continueStream nulls request_headers_/trailers right away
        // (for either direction); response headers stay until forwarded.
        s.request.headers_active = false;
        s.request.trailers_active = false;
    }
    Ok(())
}

fn close_stream(c: Caller<'_, Host>, t: i32) -> R {
    let dir = match t {
        stream::REQUEST => Dir::Request,
        stream::RESPONSE => Dir::Response,
        stream::DOWNSTREAM | stream::UPSTREAM => return Ok(()),
        _ => return Err(Status::BadArgument.into()),
    };
    if let Some(s) = c.data().stream() {
        let mut s = s.borrow_mut();
        if s.info.response_code_details.is_none() {
            s.info.response_code_details = Some("wasm_close_stream".into());
        }
        s.push_action(StreamAction::Reset(dir));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn send_local_response(
    mut c: Caller<'_, Host>,
    code: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    grpc: i32,
) -> R {
    let details = read(&c, dp, dl)?;
    let body = read(&c, bp, bl)?;
    let headers = decode_pairs(&read(&c, hp, hl)?).unwrap_or_default();
    if let Some(s) = c.data().stream() {
        // Envoy: details have whitespace replaced (`replaceAllEmptySpace`);
        // grpc_status outside 0..=16 means "no grpc-status".
        let details: String = str_of(&details)
            .chars()
            .map(|ch| if ch.is_whitespace() { '_' } else { ch })
            .collect();
        s.borrow_mut()
            .push_action(StreamAction::LocalReply(LocalReply {
                status: code as u32 as u16,
                body,
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (str_of(&k).to_ascii_lowercase(), v))
                    .collect(),
                details,
                grpc_status: (0..=16).contains(&grpc).then_some(grpc as u32),
            }));
    }
    c.data_mut().stop_next_iteration = true;
    Ok(())
}

// ---- http_call ----

#[allow(clippy::too_many_arguments)]
fn http_call(
    mut c: Caller<'_, Host>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    tp: i32,
    tl: i32,
    timeout: i32,
    token_ptr: i32,
) -> R {
    let cluster = str_of(&read(&c, up, ul)?);
    let headers = decode_pairs(&read(&c, hp, hl)?).ok_or(Status::BadArgument)?;
    let body = read(&c, bp, bl)?;
    let trailers = decode_pairs(&read(&c, tp, tl)?).ok_or(Status::BadArgument)?;
    // Envoy `Context::httpCall` (source/extensions/common/wasm/context.cc)
    // takes the timeout as an `int`: 2^31 ms or more arrives negative and is
    // refused (BadArgument) before the cluster is looked up. Then: unknown
    // cluster -> BadArgument; :path, :method and :authority are required ->
    // BadArgument.
    if timeout < 0 {
        return Err(Status::BadArgument.into());
    }
    let upstream = c
        .data()
        .clusters
        .get(&cluster)
        .cloned()
        .ok_or(Status::BadArgument)?;
    let mut h = HeaderMap::new();
    h.set_pairs(&headers);
    if h.get(":path").is_none() || h.get(":method").is_none() || h.get(":authority").is_none() {
        return Err(Status::BadArgument.into());
    }
    if !body.is_empty() {
        h.replace("content-length", body.len().to_string().as_bytes());
    }
    let mut t = HeaderMap::new();
    t.set_pairs(&trailers);
    let host = c.data_mut();
    host.next_token += 1;
    let token = host.next_token;
    // cpp-host http_call runs on the root context; the response goes there.
    let root = root_of(host);
    host.http_tokens.insert(token, root);
    host.pending_http.push(PendingHttpCall {
        token,
        cluster,
        upstream,
        headers: h,
        body,
        trailers: t,
        timeout: (timeout > 0).then(|| std::time::Duration::from_millis(timeout as u32 as u64)),
    });
    host.http_notify.notify_one();
    write_u32(&mut c, token_ptr, token)?;
    Ok(())
}

/// The root context a callout's answer goes to (cpp-host runs http_call and
/// grpc_call on `contextOrEffectiveContext()->root_context()`).
fn root_of(host: &Host) -> u32 {
    host.contexts
        .get(&host.ctx_id())
        .map(|x| {
            if x.parent == 0 {
                host.ctx_id()
            } else {
                x.parent
            }
        })
        .unwrap_or(host.root_id)
}

/// Envoy `Context::grpcCall`, see `grpc.rs` for the semantics.
#[allow(clippy::too_many_arguments)]
fn grpc_call(
    mut c: Caller<'_, Host>,
    sp: i32,
    sl: i32,
    np: i32,
    nl: i32,
    mp: i32,
    ml: i32,
    ip: i32,
    il: i32,
    rp: i32,
    rl: i32,
    timeout: i32,
    token_ptr: i32,
) -> R {
    let service = read(&c, sp, sl)?;
    let service_name = str_of(&read(&c, np, nl)?);
    let method = str_of(&read(&c, mp, ml)?);
    let initial = decode_pairs(&read(&c, ip, il)?).ok_or(Status::BadArgument)?;
    let message = read(&c, rp, rl)?;
    // Envoy's grpcCall takes the timeout as milliseconds from a u32 Word;
    // a negative i32 here is a timeout of 2^31 ms or more, kept as such.
    let timeout_ms = timeout as u32 as u64;
    let target = {
        let clusters = &c.data().clusters;
        grpc::resolve_target(&service, |n| clusters.contains_key(n)).map_err(|e| match e {
            grpc::TargetError::UnknownClusterName => Status::ParseFailure,
            grpc::TargetError::NoEnvoyGrpc => Status::BadArgument,
        })?
    };
    let upstream = c
        .data()
        .clusters
        .get(&target.cluster)
        .cloned()
        .ok_or(Status::InternalFailure)?;
    let mut metadata = HeaderMap::new();
    metadata.set_pairs(&initial);
    for (k, v) in &target.metadata {
        metadata.add(k, v.as_bytes());
    }
    let host = c.data_mut();
    // cpp-host `nextGrpcCallId`: callout ids step by 4 and a gRPC call's
    // low bits are 1, so they never collide with http_call tokens.
    host.next_grpc_token = host.next_grpc_token.wrapping_add(4);
    let token = host.next_grpc_token;
    let root = root_of(host);
    host.grpc_tokens.insert(token, root);
    host.pending_grpc.push(grpc::PendingGrpcCall {
        token,
        cluster: target.cluster,
        upstream,
        authority: target.authority,
        service: service_name,
        method,
        metadata,
        message,
        timeout: (timeout_ms > 0).then(|| std::time::Duration::from_millis(timeout_ms)),
    });
    host.http_notify.notify_one();
    write_u32(&mut c, token_ptr, token)?;
    Ok(())
}

/// gRPC streams are not provided. Envoy answers an unknown cluster name with
/// `ParseFailure`; for a known target the shim answers `Unimplemented`.
fn grpc_stream_start(c: &Caller<'_, Host>, sp: i32, sl: i32) -> R {
    let service = read(c, sp, sl)?;
    let clusters = &c.data().clusters;
    match grpc::resolve_target(&service, |n| clusters.contains_key(n)) {
        Ok(_) => Err(Status::Unimplemented.into()),
        Err(grpc::TargetError::UnknownClusterName) => Err(Status::ParseFailure.into()),
        Err(grpc::TargetError::NoEnvoyGrpc) => Err(Status::BadArgument.into()),
    }
}

/// Envoy `Context::grpcCancel` / `grpcClose` on a call: the request is
/// cancelled and no callback follows; an unknown token is `NotFound`.
fn grpc_cancel(mut c: Caller<'_, Host>, token: i32) -> R {
    let token = token as u32;
    let h = c.data_mut();
    if h.grpc_tokens.remove(&token).is_some() {
        h.pending_grpc.retain(|p| p.token != token);
        Ok(())
    } else {
        Err(Status::NotFound.into())
    }
}

// ---- shared data / queues ----

fn vm_id(c: &Caller<'_, Host>) -> String {
    c.data().plugin.config().vm_id.clone()
}

fn get_shared_data(mut c: Caller<'_, Host>, kp: i32, kl: i32, vp: i32, vs: i32, cp: i32) -> R {
    let key = str_of(&read(&c, kp, kl)?);
    let (v, cas) = shared::get_shared_data(&vm_id(&c), &key)?;
    give(&mut c, &v, vp, vs)?;
    write_u32(&mut c, cp, cas)?;
    Ok(())
}

fn set_shared_data(c: Caller<'_, Host>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) -> R {
    let key = str_of(&read(&c, kp, kl)?);
    let v = read(&c, vp, vl)?;
    match shared::set_shared_data(&vm_id(&c), &key, &v, cas as u32) {
        Status::Ok => Ok(()),
        s => Err(s.into()),
    }
}

fn register_queue(mut c: Caller<'_, Host>, np: i32, nl: i32, tp: i32) -> R {
    let name = str_of(&read(&c, np, nl)?);
    let h = c.data();
    // cpp-host registerSharedQueue: owned by the root context.
    let owner = h
        .contexts
        .get(&h.ctx_id())
        .map(|x| if x.parent == 0 { h.ctx_id() } else { x.parent })
        .unwrap_or(h.root_id);
    let token = shared::register_queue(&vm_id(&c), &name, owner, h.events_tx.clone())?;
    write_u32(&mut c, tp, token)?;
    Ok(())
}

fn resolve_queue(mut c: Caller<'_, Host>, vp: i32, vl: i32, np: i32, nl: i32, tp: i32) -> R {
    let vm = str_of(&read(&c, vp, vl)?);
    let name = str_of(&read(&c, np, nl)?);
    // cpp-host `ContextBase::lookupSharedQueue`: an empty vm_id means this
    // VM's own.
    let vm = if vm.is_empty() { vm_id(&c) } else { vm };
    let token = shared::resolve_queue(&vm, &name)?;
    write_u32(&mut c, tp, token)?;
    Ok(())
}

fn dequeue(mut c: Caller<'_, Host>, token: i32, vp: i32, vs: i32) -> R {
    let v = shared::dequeue(token as u32)?;
    give(&mut c, &v, vp, vs)
}

fn enqueue(c: Caller<'_, Host>, token: i32, vp: i32, vl: i32) -> R {
    let v = read(&c, vp, vl)?;
    match shared::enqueue(token as u32, &v) {
        Status::Ok => Ok(()),
        s => Err(s.into()),
    }
}

// ---- metrics ----

/// Envoy wasm.h: the low two bits of a metric id are its type
/// (`kMetricTypeMask`), ids step by 4 (`kMetricIdIncrement`).
fn metric_kind(id: u32) -> Option<MetricKind> {
    match id & 3 {
        0 => Some(MetricKind::Counter),
        1 => Some(MetricKind::Gauge),
        2 => Some(MetricKind::Histogram),
        _ => None,
    }
}

fn define_metric(mut c: Caller<'_, Host>, t: i32, np: i32, nl: i32, ip: i32) -> R {
    let kind = match t {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Histogram,
        _ => return Err(Status::BadArgument.into()),
    };
    let name = str_of(&read(&c, np, nl)?);
    let full = c.data().plugin.metrics().define(kind, &name);
    let h = c.data_mut();
    let slot = match kind {
        MetricKind::Counter => &mut h.next_metric[0],
        MetricKind::Gauge => &mut h.next_metric[1],
        MetricKind::Histogram => &mut h.next_metric[2],
    };
    *slot += 4;
    let id = *slot;
    h.metric_ids.insert(id, full);
    write_u32(&mut c, ip, id)?;
    Ok(())
}

fn metric_name(c: &Caller<'_, Host>, id: i32) -> Option<String> {
    c.data().metric_ids.get(&(id as u32)).cloned()
}

/// Envoy `incrementMetric`: counters need a positive offset
/// (else BadArgument), gauges go up or down, histograms are BadArgument.
fn increment_metric(c: Caller<'_, Host>, id: i32, offset: i64) -> R {
    let kind = metric_kind(id as u32);
    if !matches!(kind, Some(MetricKind::Counter | MetricKind::Gauge)) {
        return Err(Status::BadArgument.into());
    }
    let name = metric_name(&c, id).ok_or(Status::NotFound)?;
    if kind == Some(MetricKind::Counter) && offset <= 0 {
        return Err(Status::BadArgument.into());
    }
    c.data().plugin.metrics().update(&name, |m| match m {
        MetricValue::Counter(v) => *v = v.saturating_add(offset as u64),
        MetricValue::Gauge(v) => *v = v.saturating_add(offset),
        MetricValue::Histogram { .. } => {}
    });
    Ok(())
}

/// Envoy `recordMetric`: counter add, gauge set, histogram record.
fn record_metric(c: Caller<'_, Host>, id: i32, value: i64) -> R {
    let name = metric_name(&c, id).ok_or(Status::NotFound)?;
    c.data().plugin.metrics().update(&name, |m| match m {
        MetricValue::Counter(v) => *v = v.saturating_add(value as u64),
        MetricValue::Gauge(v) => *v = value,
        MetricValue::Histogram { .. } => record_histogram(m, value as u64),
    });
    Ok(())
}

/// Envoy `getMetric`: histograms are BadArgument.
fn get_metric(mut c: Caller<'_, Host>, id: i32, rp: i32) -> R {
    if metric_kind(id as u32) == Some(MetricKind::Histogram) || metric_kind(id as u32).is_none() {
        return Err(Status::BadArgument.into());
    }
    let name = metric_name(&c, id).ok_or(Status::NotFound)?;
    let v = match c.data().plugin.metrics().get(&name) {
        Some(MetricValue::Counter(v)) => v,
        Some(MetricValue::Gauge(v)) => v as u64,
        _ => return Err(Status::NotFound.into()),
    };
    write(&mut c, rp, &v.to_le_bytes())?;
    Ok(())
}

// ---- logging ----

/// Envoy `Context::log`: levels are spdlog's (0 trace .. 5 critical);
/// [`crate::PluginConfig::log`] filters and writes them.
pub(crate) fn emit_log(c: &Caller<'_, Host>, level: i32, msg: &str) -> Result<(), Status> {
    let lvl = crate::LogLevel::from_i32(level).ok_or(Status::BadArgument)?;
    c.data().plugin.config().log(lvl, msg);
    Ok(())
}

macro_rules! wrap {
    ($l:expr, $name:literal, |$c:ident $(, $a:ident : $t:ty)*| $body:expr) => {
        $l.func_wrap("env", $name, |$c: Caller<'_, Host> $(, $a: $t)*| -> wasmtime::Result<i32> {
            #[allow(unused_mut)]
            let mut $c = $c;
            done((move || -> R { $body })())
        })?;
    };
}

#[allow(unused_braces, clippy::redundant_closure_call)]
pub(crate) fn add(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    wrap!(l, "proxy_log", |c, level: i32, p: i32, n: i32| {
        let msg = str_of(&read(&c, p, n)?);
        emit_log(&c, level, &msg).map_err(HErr::from)
    });
    wrap!(l, "proxy_get_log_level", |c, rp: i32| {
        let lvl = c.data().plugin.config().log_level as u32;
        let mut c = c;
        write_u32(&mut c, rp, lvl).map_err(HErr::from)
    });
    wrap!(l, "proxy_get_current_time_nanoseconds", |c, rp: i32| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut c = c;
        write(&mut c, rp, &now.to_le_bytes()).map_err(HErr::from)
    });
    wrap!(l, "proxy_set_tick_period_milliseconds", |c, ms: i32| {
        // cpp-host setTimerPeriod: the period belongs to the root context.
        let mut c = c;
        let h = c.data_mut();
        h.tick_period_ms = ms as u32 as u64;
        h.tick_notify.notify_one();
        Ok(())
    });
    wrap!(
        l,
        "proxy_get_buffer_bytes",
        |c, t: i32, s: i32, n: i32, pp: i32, ps: i32| { get_buffer_bytes(c, t, s, n, pp, ps) }
    );
    wrap!(
        l,
        "proxy_get_buffer_status",
        |c, t: i32, lp: i32, fp: i32| { get_buffer_status(c, t, lp, fp) }
    );
    wrap!(
        l,
        "proxy_set_buffer_bytes",
        |c, t: i32, s: i32, n: i32, dp: i32, dl: i32| { set_buffer_bytes(c, t, s, n, dp, dl) }
    );
    wrap!(
        l,
        "proxy_get_header_map_pairs",
        |c, t: i32, pp: i32, ps: i32| { get_header_map_pairs(c, t, pp, ps) }
    );
    wrap!(
        l,
        "proxy_set_header_map_pairs",
        |c, t: i32, p: i32, n: i32| { set_header_map_pairs(c, t, p, n) }
    );
    wrap!(
        l,
        "proxy_get_header_map_value",
        |c, t: i32, kp: i32, kl: i32, vp: i32, vs: i32| {
            get_header_map_value(c, t, kp, kl, vp, vs)
        }
    );
    wrap!(
        l,
        "proxy_add_header_map_value",
        |c, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| { add_header(c, t, kp, kl, vp, vl) }
    );
    wrap!(
        l,
        "proxy_replace_header_map_value",
        |c, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| { replace_header(c, t, kp, kl, vp, vl) }
    );
    wrap!(
        l,
        "proxy_remove_header_map_value",
        |c, t: i32, kp: i32, kl: i32| { remove_header(c, t, kp, kl) }
    );
    wrap!(l, "proxy_get_header_map_size", |c, t: i32, sp: i32| {
        get_header_map_size(c, t, sp)
    });
    wrap!(
        l,
        "proxy_get_property",
        |c, pp: i32, pl: i32, vp: i32, vs: i32| { get_property_call(c, pp, pl, vp, vs) }
    );
    wrap!(
        l,
        "proxy_set_property",
        |c, pp: i32, pl: i32, vp: i32, vl: i32| { set_property_call(c, pp, pl, vp, vl) }
    );
    wrap!(
        l,
        "proxy_get_shared_data",
        |c, kp: i32, kl: i32, vp: i32, vs: i32, cp: i32| { get_shared_data(c, kp, kl, vp, vs, cp) }
    );
    wrap!(
        l,
        "proxy_set_shared_data",
        |c, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            set_shared_data(c, kp, kl, vp, vl, cas)
        }
    );
    wrap!(
        l,
        "proxy_register_shared_queue",
        |c, np: i32, nl: i32, tp: i32| { register_queue(c, np, nl, tp) }
    );
    wrap!(
        l,
        "proxy_resolve_shared_queue",
        |c, vp: i32, vl: i32, np: i32, nl: i32, tp: i32| { resolve_queue(c, vp, vl, np, nl, tp) }
    );
    wrap!(
        l,
        "proxy_dequeue_shared_queue",
        |c, t: i32, vp: i32, vs: i32| { dequeue(c, t, vp, vs) }
    );
    wrap!(
        l,
        "proxy_enqueue_shared_queue",
        |c, t: i32, vp: i32, vl: i32| { enqueue(c, t, vp, vl) }
    );
    wrap!(l, "proxy_continue_stream", |c, t: i32| continue_stream(
        c, t
    ));
    wrap!(l, "proxy_close_stream", |c, t: i32| close_stream(c, t));
    wrap!(
        l,
        "proxy_send_local_response",
        |c, code: i32, dp: i32, dl: i32, bp: i32, bl: i32, hp: i32, hl: i32, g: i32| {
            send_local_response(c, code, dp, dl, bp, bl, hp, hl, g)
        }
    );
    wrap!(
        l,
        "proxy_http_call",
        |c,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         to: i32,
         tk: i32| { http_call(c, up, ul, hp, hl, bp, bl, tp, tl, to, tk) }
    );
    wrap!(
        l,
        "proxy_grpc_call",
        |c,
         sp: i32,
         sl: i32,
         np: i32,
         nl: i32,
         mp: i32,
         ml: i32,
         ip: i32,
         il: i32,
         rp: i32,
         rl: i32,
         to: i32,
         tk: i32| { grpc_call(c, sp, sl, np, nl, mp, ml, ip, il, rp, rl, to, tk) }
    );
    wrap!(
        l,
        "proxy_grpc_stream",
        |c, sp: i32, sl: i32, _a: i32, _b: i32, _d: i32, _e: i32, _f: i32, _g: i32, _tk: i32| {
            grpc_stream_start(&c, sp, sl)
        }
    );
    // Envoy grpcSend: a call token is BadArgument, an unknown stream
    // NotFound; no streams exist here.
    wrap!(
        l,
        "proxy_grpc_send",
        |c, t: i32, _p: i32, _n: i32, _e: i32| {
            if c.data().grpc_tokens.contains_key(&(t as u32)) {
                Err(Status::BadArgument.into())
            } else {
                Err(Status::NotFound.into())
            }
        }
    );
    wrap!(l, "proxy_grpc_cancel", |c, t: i32| grpc_cancel(c, t));
    wrap!(l, "proxy_grpc_close", |c, t: i32| grpc_cancel(c, t));
    wrap!(l, "proxy_get_status", |c, cp: i32, mp: i32, ms: i32| {
        let (code, msg) = c.data().status.clone();
        let mut c = c;
        write_u32(&mut c, cp, code)?;
        give(&mut c, &msg, mp, ms)
    });
    wrap!(l, "proxy_set_effective_context", |c, id: i32| {
        let mut c = c;
        if !c.data().contexts.contains_key(&(id as u32)) {
            return Err(Status::BadArgument.into());
        }
        c.data_mut().effective = Some(id as u32);
        Ok(())
    });
    // Envoy registers a few named foreign functions; none are provided here.
    wrap!(
        l,
        "proxy_call_foreign_function",
        |_c, _np: i32, _nl: i32, _ap: i32, _al: i32, _rp: i32, _rs: i32| {
            Err(Status::NotFound.into())
        }
    );
    wrap!(l, "proxy_done", |c| {
        // cpp-host WasmBase::done: only a root context that returned false
        // from on_done may call it; otherwise NotFound.
        let mut c = c;
        let h = c.data_mut();
        if h.pending_done && h.ctx_id() == h.root_id {
            h.pending_done = false;
            Ok(())
        } else {
            Err(Status::NotFound.into())
        }
    });
    wrap!(
        l,
        "proxy_define_metric",
        |c, t: i32, np: i32, nl: i32, ip: i32| { define_metric(c, t, np, nl, ip) }
    );
    wrap!(l, "proxy_increment_metric", |c, id: i32, off: i64| {
        increment_metric(c, id, off)
    });
    wrap!(
        l,
        "proxy_record_metric",
        |c, id: i32, v: i64| record_metric(c, id, v)
    );
    wrap!(l, "proxy_get_metric", |c, id: i32, rp: i32| get_metric(
        c, id, rp
    ));
    Ok(())
}

//! `proxy_get_property` paths and their byte encodings, as Envoy serves them.
//!
//! Envoy resolves a property path through CEL: the first segment picks a
//! top-level value (context.cc `findValue`, expr `StreamActivation`), the
//! rest walk maps, lists and proto messages (context.cc `getProperty`), and
//! the final value is encoded by context.cc `serializeValue`:
//! strings/bytes raw, int64/uint64/double little-endian 8 bytes, bool 1 byte,
//! timestamps and durations as int64 nanoseconds, maps and lists in the
//! pairs format (list items as keys with empty values), messages as
//! protobuf wire bytes. A `google.protobuf.Struct` (node metadata, dynamic
//! metadata) becomes a CEL map, so its number leaves are doubles.

use serde_json::Value as Json;

use crate::abi::{Status, encode_pairs};
use crate::headers::HeaderMap;
use crate::stream::StreamData;

/// A CEL-like value, before encoding.
#[derive(Debug, Clone)]
pub(crate) enum PVal {
    Str(Vec<u8>),
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
    Map(Vec<(String, PVal)>),
    List(Vec<PVal>),
    /// A proto message: its wire bytes, and its fields for path walking.
    Msg(Vec<u8>, Vec<(String, PVal)>),
    Null,
}

impl PVal {
    fn str(s: impl AsRef<[u8]>) -> Self {
        PVal::Str(s.as_ref().to_vec())
    }

    fn child(&self, part: &str) -> Option<PVal> {
        match self {
            PVal::Map(m) | PVal::Msg(_, m) => {
                m.iter().find(|(k, _)| k == part).map(|(_, v)| v.clone())
            }
            PVal::List(l) => part.parse::<usize>().ok().and_then(|i| l.get(i).cloned()),
            _ => None,
        }
    }

    /// context.cc `serializeValue`.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, Status> {
        Ok(match self {
            PVal::Str(s) => s.clone(),
            PVal::Int(i) => i.to_le_bytes().to_vec(),
            PVal::Uint(u) => u.to_le_bytes().to_vec(),
            PVal::Double(d) => d.to_le_bytes().to_vec(),
            PVal::Bool(b) => vec![u8::from(*b)],
            PVal::Map(m) => {
                let mut pairs = Vec::with_capacity(m.len());
                for (k, v) in m {
                    pairs.push((k.as_bytes().to_vec(), v.encode()?));
                }
                encode_pairs(&pairs)
            }
            PVal::List(l) => {
                let mut pairs = Vec::with_capacity(l.len());
                for v in l {
                    pairs.push((v.encode()?, Vec::new()));
                }
                encode_pairs(&pairs)
            }
            PVal::Msg(bytes, _) => bytes.clone(),
            // CEL null has no case in serializeValue.
            PVal::Null => return Err(Status::SerializationFailure),
        })
    }
}

/// A JSON value read as a protobuf `Struct`/`Value`, the way CEL unwraps it.
pub(crate) fn json_to_pval(v: &Json) -> PVal {
    match v {
        Json::Null => PVal::Null,
        Json::Bool(b) => PVal::Bool(*b),
        Json::Number(n) => PVal::Double(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => PVal::str(s),
        Json::Array(a) => PVal::List(a.iter().map(json_to_pval).collect()),
        Json::Object(o) => PVal::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_pval(v)))
                .collect(),
        ),
    }
}

// --- a tiny protobuf writer, enough for Node, Metadata and Struct ---

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field_bytes(num: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(num << 3 | 2), out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// `google.protobuf.Value` wire bytes.
fn pb_value(v: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Json::Null => {
            varint(1 << 3, &mut out);
            varint(0, &mut out);
        }
        Json::Number(n) => {
            varint(2 << 3 | 1, &mut out);
            out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
        }
        Json::String(s) => field_bytes(3, s.as_bytes(), &mut out),
        Json::Bool(b) => {
            varint(4 << 3, &mut out);
            varint(u64::from(*b), &mut out);
        }
        Json::Object(_) => field_bytes(5, &pb_struct(v), &mut out),
        Json::Array(a) => {
            let mut list = Vec::new();
            for item in a {
                field_bytes(1, &pb_value(item), &mut list);
            }
            field_bytes(6, &list, &mut out);
        }
    }
    out
}

/// `google.protobuf.Struct` wire bytes (map<string, Value> fields = 1).
pub(crate) fn pb_struct(v: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    if let Json::Object(o) = v {
        for (k, val) in o {
            let mut entry = Vec::new();
            field_bytes(1, k.as_bytes(), &mut entry);
            field_bytes(2, &pb_value(val), &mut entry);
            field_bytes(1, &entry, &mut out);
        }
    }
    out
}

/// The `node` value: `envoy.config.core.v3.Node` (id = 1, cluster = 2,
/// metadata = 3).
pub(crate) fn node_value(node: &crate::NodeInfo) -> PVal {
    let mut bytes = Vec::new();
    if !node.id.is_empty() {
        field_bytes(1, node.id.as_bytes(), &mut bytes);
    }
    if !node.cluster.is_empty() {
        field_bytes(2, node.cluster.as_bytes(), &mut bytes);
    }
    let meta = if node.metadata.is_object() {
        node.metadata.clone()
    } else {
        Json::Object(Default::default())
    };
    let meta_bytes = pb_struct(&meta);
    if !meta_bytes.is_empty() {
        field_bytes(3, &meta_bytes, &mut bytes);
    }
    PVal::Msg(
        bytes,
        vec![
            ("id".into(), PVal::str(&node.id)),
            ("cluster".into(), PVal::str(&node.cluster)),
            ("metadata".into(), json_to_pval(&meta)),
        ],
    )
}

/// The `metadata` value: `envoy.config.core.v3.Metadata`
/// (filter_metadata = 1, map<string, Struct>).
fn metadata_value(meta: &serde_json::Map<String, Json>) -> PVal {
    let mut bytes = Vec::new();
    let mut fm = Vec::new();
    for (ns, s) in meta {
        let mut entry = Vec::new();
        field_bytes(1, ns.as_bytes(), &mut entry);
        field_bytes(2, &pb_struct(s), &mut entry);
        field_bytes(1, &entry, &mut bytes);
        fm.push((ns.clone(), json_to_pval(s)));
    }
    PVal::Msg(bytes, vec![("filter_metadata".into(), PVal::Map(fm))])
}

fn headers_value(h: Option<&HeaderMap>) -> PVal {
    let mut m: Vec<(String, PVal)> = Vec::new();
    if let Some(h) = h {
        for (k, v) in h.iter() {
            // Envoy's HeadersWrapper joins repeated headers with ",".
            if let Some((_, PVal::Str(existing))) = m.iter_mut().find(|(ek, _)| ek == k) {
                existing.push(b',');
                existing.extend_from_slice(v);
            } else {
                m.push((k.to_string(), PVal::str(v)));
            }
        }
    }
    PVal::Map(m)
}

fn addr_value(addr: Option<std::net::SocketAddr>) -> Option<PVal> {
    addr.map(|a| {
        PVal::Map(vec![
            ("address".into(), PVal::str(a.to_string())),
            ("port".into(), PVal::Int(i64::from(a.port()))),
        ])
    })
}

/// What a property lookup can see besides the stream.
pub(crate) struct PropEnv<'a> {
    pub plugin: &'a crate::PluginConfig,
    pub stream: Option<&'a StreamData>,
}

fn top_level(env: &PropEnv<'_>, name: &str) -> Option<PVal> {
    let p = env.plugin;
    match name {
        "plugin_name" => return Some(PVal::str(&p.name)),
        "plugin_root_id" => return Some(PVal::str(&p.root_id)),
        "plugin_vm_id" => return Some(PVal::str(&p.vm_id)),
        "node" => return Some(node_value(&p.node)),
        "xds" => {
            return Some(PVal::Map(vec![("node".into(), node_value(&p.node))]));
        }
        // envoy.config.core.v3.TrafficDirection: UNSPECIFIED = 0.
        "listener_direction" => return Some(PVal::Int(0)),
        _ => {}
    }
    let s = env.stream?;
    let info = &s.info;
    // Header-derived fields are only visible while Envoy still holds the
    // header map pointer: before the headers were continued, or in on_log.
    let req_h = s.visible_request_headers();
    let resp_h = s.visible_response_headers();
    match name {
        "request" => {
            let mut m = vec![
                ("time".into(), PVal::Int(info.start_unix_nanos())),
                ("protocol".into(), PVal::str(&info.protocol)),
            ];
            if let Some(h) = req_h {
                let path = h.get(":path").unwrap_or_default().to_vec();
                let (url_path, query) = match path.iter().position(|b| *b == b'?') {
                    Some(i) => (
                        path.get(..i).unwrap_or_default().to_vec(),
                        path.get(i + 1..).unwrap_or_default().to_vec(),
                    ),
                    None => (path.clone(), Vec::new()),
                };
                let hv = |n: &str| h.get(n).map(PVal::str);
                for (k, v) in [
                    ("path", Some(PVal::Str(path.clone()))),
                    ("url_path", Some(PVal::Str(url_path))),
                    ("query", Some(PVal::Str(query))),
                    ("host", hv(":authority")),
                    ("scheme", hv(":scheme")),
                    ("method", hv(":method")),
                    ("referer", hv("referer")),
                    ("useragent", hv("user-agent")),
                    ("id", hv("x-request-id")),
                ] {
                    if let Some(v) = v {
                        m.push((k.into(), v));
                    }
                }
                if let Some(cl) = h
                    .get_str("content-length")
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    m.push(("size".into(), PVal::Int(cl)));
                }
                m.push(("headers".into(), headers_value(Some(h))));
            }
            if let Some(d) = info.duration_nanos {
                m.push(("duration".into(), PVal::Int(d)));
                m.push(("total_size".into(), PVal::Int(info.request_bytes as i64)));
                if !m.iter().any(|(k, _)| k == "size") {
                    m.push(("size".into(), PVal::Int(info.request_bytes as i64)));
                }
            }
            Some(PVal::Map(m))
        }
        "response" => {
            let mut m = Vec::new();
            if let Some(c) = info.response_code {
                m.push(("code".into(), PVal::Int(i64::from(c))));
            }
            if let Some(d) = &info.response_code_details {
                m.push(("code_details".into(), PVal::str(d)));
            }
            m.push(("flags".into(), PVal::Uint(0)));
            if resp_h.is_some() {
                m.push(("headers".into(), headers_value(resp_h)));
            }
            m.push(("size".into(), PVal::Int(info.response_bytes as i64)));
            Some(PVal::Map(m))
        }
        "source" => addr_value(info.downstream_remote),
        "destination" => addr_value(info.downstream_local),
        // Envoy `upstream.address`/`upstream.port`: the host the router
        // connected to (absent for a local reply that never went upstream).
        "upstream" => addr_value(info.upstream_address),
        "connection" => Some(PVal::Map(vec![
            ("id".into(), PVal::Uint(info.connection_id)),
            ("mtls".into(), PVal::Bool(false)),
            ("requested_server_name".into(), PVal::str("")),
        ])),
        "connection_id" => Some(PVal::Uint(info.connection_id)),
        "metadata" => Some(metadata_value(&info.dynamic_metadata)),
        "filter_state" => Some(PVal::Map(
            info.filter_state
                .iter()
                .map(|(k, v)| (k.clone(), PVal::Str(v.clone())))
                .collect(),
        )),
        // context.cc findValue: unknown names are looked up as CelState
        // filter state under "wasm." + name.
        other => info
            .filter_state
            .get(&format!("{}{other}", crate::stream::FILTER_STATE_PREFIX))
            .map(|v| PVal::Str(v.clone())),
    }
}

/// context.cc `getProperty`: walks a NUL-separated path.
pub(crate) fn get_property(env: &PropEnv<'_>, path: &[u8]) -> Result<Vec<u8>, Status> {
    let mut parts = path
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let first = parts.next().ok_or(Status::NotFound)?;
    let mut v = top_level(env, &first).ok_or(Status::NotFound)?;
    for part in parts {
        if part.is_empty() {
            break;
        }
        v = v.child(&part).ok_or(Status::NotFound)?;
    }
    v.encode()
}

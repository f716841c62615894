//! One session: initialize, `notifications/initialized`, `tools/list` page
//! by page, and the session's DELETE whatever the outcome, so a failed run
//! leaves nothing open on the server.

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::headers::RequestHeaders;
use crate::text::{clip, quote};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::json::parse_strict;
use portcullis_core::sse;
use serde_json::{Value, json};
use std::time::Duration;

/// Pages of `tools/list` followed before giving up on a server whose list
/// never ends.
pub const MAX_PAGES: usize = 100;
/// Tools accepted over all pages.
pub const MAX_TOOLS: usize = 10_000;
/// The `clientInfo.name` (and User-Agent product) this client announces.
pub const CLIENT_NAME: &str = "portcullis-pin";
/// Largest JSON answer, or SSE event, read.
const MAX_BODY: usize = 64 << 20;
/// How much of an error answer is read (and at most 200 characters shown).
const MAX_ERROR_BODY: usize = 64 << 10;
const ACCEPT: &str = "application/json, text/event-stream";

/// What one session found.
#[derive(Debug, Clone)]
pub struct ToolList {
    /// The protocol revision the server answered with.
    pub protocol: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// The tools of all pages, as received.
    pub tools: Vec<Value>,
    /// Whether initialize declared the tools capability (without it, no
    /// `tools/list` is sent and `tools` is empty).
    pub declares_tools: bool,
}

/// Runs one session against `endpoint`, offering `protocol_version`, each
/// HTTP exchange allowed `timeout`; blocks until it is over.
pub fn fetch_tools(
    endpoint: &Endpoint,
    headers: &RequestHeaders,
    protocol_version: &str,
    timeout: Duration,
) -> Result<ToolList, Error> {
    if protocol_version.is_empty() || HeaderValue::from_str(protocol_version).is_err() {
        return Err(Error::ProtocolVersion(protocol_version.to_owned()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let mut session = Session {
        client: Client::builder(TokioExecutor::new()).build_http(),
        endpoint,
        headers: &headers.map,
        timeout,
        protocol: None,
        session_id: None,
        next_id: 1,
    };
    runtime.block_on(session.take(protocol_version))
}

struct Session<'a> {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: &'a Endpoint,
    headers: &'a HeaderMap,
    timeout: Duration,
    /// The negotiated revision, sent as `MCP-Protocol-Version` after
    /// initialize.
    protocol: Option<HeaderValue>,
    session_id: Option<HeaderValue>,
    next_id: u64,
}

impl Session<'_> {
    /// The whole exchange. The session is deleted whatever the outcome once
    /// it exists.
    async fn take(&mut self, offered: &str) -> Result<ToolList, Error> {
        let mut taken = self.initialize(offered).await?;
        let listed = self.list(&mut taken).await;
        self.delete().await;
        listed.map(|()| taken)
    }

    async fn initialize(&mut self, offered: &str) -> Result<ToolList, Error> {
        let params = json!({
            "protocolVersion": offered,
            "capabilities": {},
            "clientInfo": {"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")},
        });
        let (result, headers) = self.call("initialize", Some(params)).await?;
        let protocol = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .ok_or(Error::NoProtocolVersion)?
            .to_owned();
        self.protocol = HeaderValue::from_str(&protocol).ok();
        self.session_id = headers.get("mcp-session-id").cloned();
        let info = result.get("serverInfo");
        let text = |key: &str| {
            info.and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let declares_tools = result
            .get("capabilities")
            .and_then(|c| c.get("tools"))
            .is_some_and(Value::is_object);
        self.notify("notifications/initialized").await?;
        Ok(ToolList {
            protocol,
            server_name: text("name"),
            server_version: text("version"),
            tools: Vec::new(),
            declares_tools,
        })
    }

    /// `tools/list`, following `nextCursor`.
    async fn list(&mut self, taken: &mut ToolList) -> Result<(), Error> {
        if !taken.declares_tools {
            return Ok(());
        }
        let mut cursor: Option<String> = None;
        for page in 1..=MAX_PAGES {
            let params = cursor.take().map(|c| json!({ "cursor": c }));
            let (result, _) = self.call("tools/list", params).await?;
            let step = format!("tools/list page {page}");
            let Some(tools) = result.get("tools").and_then(Value::as_array) else {
                return Err(Error::answer(&step, "the result has no \"tools\" array"));
            };
            if taken.tools.len() + tools.len() > MAX_TOOLS {
                return Err(Error::TooManyTools { max: MAX_TOOLS });
            }
            taken.tools.extend(tools.iter().cloned());
            match result.get("nextCursor") {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::String(c)) => cursor = Some(c.clone()),
                Some(_) => return Err(Error::answer(&step, "nextCursor is not a string")),
            }
        }
        Err(Error::EndlessList { max: MAX_PAGES })
    }

    fn request(&self, method: Method, body: Option<&Value>) -> Result<Request<Full<Bytes>>, Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.endpoint.uri.clone());
        if let Some(h) = req.headers_mut() {
            h.clone_from(self.headers);
            h.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
            h.insert(
                header::USER_AGENT,
                HeaderValue::from_static(concat!("portcullis-pin/", env!("CARGO_PKG_VERSION"))),
            );
            if body.is_some() {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            if let Some(v) = &self.protocol {
                h.insert("mcp-protocol-version", v.clone());
            }
            if let Some(v) = &self.session_id {
                h.insert("mcp-session-id", v.clone());
            }
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        req.body(Full::new(bytes))
            .map_err(|e| Error::Request(e.to_string()))
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        step: &str,
    ) -> Result<Response<Incoming>, Error> {
        self.client.request(req).await.map_err(|e| {
            let (step, endpoint, cause) =
                (step.to_owned(), self.endpoint.shown().to_owned(), chain(&e));
            if e.is_connect() {
                Error::Connect {
                    step,
                    endpoint,
                    cause,
                }
            } else {
                Error::Transport {
                    step,
                    endpoint,
                    cause,
                }
            }
        })
    }

    /// One JSON-RPC request; its result and the answer's headers.
    async fn call(
        &mut self,
        method: &str,
        params: Option<Value>,
    ) -> Result<(Value, HeaderMap), Error> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let (Some(p), Some(obj)) = (params, msg.as_object_mut()) {
            obj.insert("params".into(), p);
        }
        let req = self.request(Method::POST, Some(&msg))?;
        let exchange = async {
            let resp = self.send(req, method).await?;
            let headers = resp.headers().clone();
            let result = read_answer(resp, id, method).await?;
            Ok((result, headers))
        };
        self.within(method, exchange).await
    }

    async fn notify(&self, method: &str) -> Result<(), Error> {
        let req = self.request(
            Method::POST,
            Some(&json!({"jsonrpc": "2.0", "method": method})),
        )?;
        self.within(method, async {
            let resp = self.send(req, method).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_limited(resp.into_body(), MAX_ERROR_BODY).await;
            if status.is_success() {
                Ok(())
            } else {
                Err(status_error(
                    method,
                    status,
                    &headers,
                    &body.unwrap_or_default(),
                ))
            }
        })
        .await
    }

    /// Ends the session; failures do not matter (the server expires it).
    async fn delete(&self) {
        if self.session_id.is_none() {
            return;
        }
        if let Ok(req) = self.request(Method::DELETE, None) {
            let _ = tokio::time::timeout(self.timeout.min(Duration::from_secs(5)), async {
                if let Ok(resp) = self.client.request(req).await {
                    let _ = read_limited(resp.into_body(), MAX_ERROR_BODY).await;
                }
            })
            .await;
        }
    }

    async fn within<T>(
        &self,
        step: &str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    step: step.to_owned(),
                    endpoint: self.endpoint.shown().to_owned(),
                    seconds: self.timeout.as_secs(),
                })
            })
    }
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, String> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| chain(&*e))
}

/// Reads the answer to request `id`: a JSON body, or the SSE stream until
/// the response with that id (notifications and requests on it skipped).
async fn read_answer(resp: Response<Incoming>, id: u64, step: &str) -> Result<Value, Error> {
    let status = resp.status();
    let headers = resp.headers().clone();
    if !status.is_success() {
        let body = read_limited(resp.into_body(), MAX_ERROR_BODY).await;
        return Err(status_error(
            step,
            status,
            &headers,
            &body.unwrap_or_default(),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "application/json" => {
            let body = read_limited(resp.into_body(), MAX_BODY)
                .await
                .map_err(|e| Error::answer(step, format!("reading the answer failed: {e}")))?;
            let msg = parse_strict(&body)
                .map_err(|e| Error::answer(step, format!("the answer is not valid JSON: {e}")))?;
            match find_response(&msg, id) {
                Some(r) => rpc_result(r, step),
                None => Err(Error::answer(
                    step,
                    format!("the JSON answer is not the response to request id {id}"),
                )),
            }
        }
        "text/event-stream" => read_sse(resp.into_body(), id, step).await,
        other => Err(Error::ContentType {
            step: step.to_owned(),
            content_type: other.to_owned(),
        }),
    }
}

async fn read_sse(mut body: Incoming, id: u64, step: &str) -> Result<Value, Error> {
    let mut parser = sse::Parser::new(MAX_BODY);
    let sse_err = |e: sse::SseError| Error::answer(step, format!("bad SSE stream: {e}"));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::answer(
                step,
                format!("reading the SSE stream failed: {}", chain(&e)),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for event in parser.push(&data).map_err(sse_err)? {
            if let Some(result) = event_answer(&event, id, step)? {
                return Ok(result);
            }
        }
    }
    let (events, err) = parser.finish();
    for event in events {
        if let Some(result) = event_answer(&event, id, step)? {
            return Ok(result);
        }
    }
    let why = err.map(|e| format!(" ({e})")).unwrap_or_default();
    Err(Error::answer(
        step,
        format!("the SSE stream ended without the response to request id {id}{why}"),
    ))
}

/// The result in one SSE event, if it carries the response to `id` (a
/// JSON-RPC error is an `Err`, as is an event that is not JSON).
fn event_answer(event: &sse::Event, id: u64, step: &str) -> Result<Option<Value>, Error> {
    let Some(data) = event.data.as_deref().filter(|d| !d.trim().is_empty()) else {
        return Ok(None); // keep-alive, or an event with no message
    };
    let msg = parse_strict(data.as_bytes())
        .map_err(|e| Error::answer(step, format!("an SSE event is not valid JSON: {e}")))?;
    find_response(&msg, id)
        .map(|r| rpc_result(r, step))
        .transpose()
}

/// The JSON-RPC response to `id` in a message (or a batch of them).
fn find_response(msg: &Value, id: u64) -> Option<&Value> {
    let is_it = |m: &&Value| {
        m.get("method").is_none()
            && m.get("id").and_then(Value::as_u64) == Some(id)
            && (m.get("result").is_some() || m.get("error").is_some())
    };
    match msg {
        Value::Array(items) => items.iter().find(is_it),
        m => Some(m).filter(is_it),
    }
}

fn rpc_result(msg: &Value, step: &str) -> Result<Value, Error> {
    if let Some(err) = msg.get("error") {
        return Err(Error::answer(
            step,
            format!("the server answered {}", rpc_error(err)),
        ));
    }
    match msg.get("result") {
        Some(r @ Value::Object(_)) => Ok(r.clone()),
        _ => Err(Error::answer(step, "the result is not a JSON object")),
    }
}

fn rpc_error(err: &Value) -> String {
    let code = err.get("code").map(Value::to_string).unwrap_or_default();
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    format!("JSON-RPC error {code}: {}", quote(&clip(message)))
}

/// A non-2xx answer: its challenge (401) and what its body said.
fn status_error(step: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    // The challenge names the realm and scopes, not a secret.
    let challenge = (status == StatusCode::UNAUTHORIZED)
        .then(|| headers.get(header::WWW_AUTHENTICATE))
        .flatten()
        .map(|v| clip(&String::from_utf8_lossy(v.as_bytes())));
    let said = match parse_strict(body)
        .ok()
        .and_then(|m| m.get("error").map(rpc_error))
    {
        Some(e) => Some(e),
        None if !body.is_empty() => Some(quote(&clip(&String::from_utf8_lossy(body)))),
        None => None,
    };
    Error::Status {
        step: step.to_owned(),
        status,
        challenge,
        said,
    }
}

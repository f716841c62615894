//! `portcullis pin --url URL`: a live MCP server's tool pins, printed as an
//! `McpServer` bundle document, so approving a server's current tool
//! definitions is committing this output (issue 4, the rug-pull defence).
//!
//! It is a small Streamable HTTP client of the handshake era (initialize,
//! `notifications/initialized`, `tools/list` page by page, DELETE of the
//! session) on hyper, and plain HTTP only: the CLI carries no TLS stack, so
//! a TLS server is reached through the proxy's plain-HTTP listener or a
//! port-forward. Answers go through the filter's own strict JSON parser and
//! SSE parser, and pins through `pins::tool_pin`, so a pin taken here is the
//! one the filter computes. `--header` values are credentials: they are
//! never printed, and server text quoted in messages is scrubbed of them.

use crate::Failure;
use clap::Args;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::json::parse_strict;
use portcullis_core::pins::tool_pin;
use portcullis_core::sse;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pages of `tools/list` followed before giving up on a server whose list
/// never ends.
pub const MAX_PAGES: usize = 100;
/// Tools accepted over all pages.
pub const MAX_TOOLS: usize = 10_000;
/// Largest JSON answer, or SSE event, read.
const MAX_BODY: usize = 64 << 20;
/// How much of an error answer is read (and at most 200 characters shown).
const MAX_ERROR_BODY: usize = 64 << 10;
const ACCEPT: &str = "application/json, text/event-stream";
/// Headers this client sets itself; a `--header` may not override them.
const OWN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
];

// No Debug: the arguments hold credentials.
#[derive(Args)]
pub struct PinArgs {
    /// The server's MCP endpoint, plain http:// (e.g. http://127.0.0.1:8000/mcp).
    #[arg(long)]
    url: String,
    /// A request header, 'Name: value' (repeatable), e.g. 'Authorization:
    /// Bearer …'. Sent on every request; the value is never printed.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// metadata.name of the document (default: serverInfo.name, lowercased
    /// and made a DNS-1123 name).
    #[arg(long)]
    name: Option<String>,
    /// The protocol revision offered in initialize.
    #[arg(long = "protocol-version", default_value = "2025-11-25")]
    protocol_version: String,
    /// Emit `pinning: strict`: a tool without a pin is then refused.
    #[arg(long)]
    strict: bool,
    /// Pin even tools the poisoning screen flags (by default `pin` refuses:
    /// a pin approves a definition, and a flagged one needs a person's
    /// review first; `portcullis vet` shows why each was flagged).
    #[arg(long = "allow-flagged")]
    allow_flagged: bool,
    /// Write the YAML here instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Seconds each HTTP exchange may take.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

/// A live server's tool definitions, as one session fetched them (shared
/// with `portcullis vet`).
pub(crate) struct Live {
    pub target: Target,
    pub taken: Taken,
    /// `--header` values, to scrub from anything printed.
    pub secrets: Vec<String>,
}

impl Live {
    pub fn scrub(&self, s: &str) -> String {
        scrub(s, &self.secrets)
    }

    /// `--name`, or serverInfo.name made a DNS-1123 name.
    pub fn name(&self, given: Option<&String>) -> Result<String, Failure> {
        match given {
            Some(n) => Ok(n.clone()),
            None => {
                let server = self.taken.server_name.as_deref().unwrap_or("");
                dns_name(server).ok_or_else(|| {
                    Failure::Input(vec![self.scrub(&format!(
                        "portcullis: serverInfo.name {} gives no DNS-1123 name; pass --name",
                        quote(server)
                    ))])
                })
            }
        }
    }
}

/// Checks the flags shared with `vet` and runs one session against `url`.
pub(crate) fn fetch_live(
    url: &str,
    raw_headers: &[String],
    name: Option<&String>,
    protocol_version: &str,
    timeout: u64,
) -> Result<Live, Failure> {
    let target = Target::parse(url)?;
    let (headers, secrets) = parse_headers(raw_headers)?;
    if let Some(name) = name {
        check_name(name).map_err(|m| Failure::Usage(format!("--name: {m}")))?;
    }
    if protocol_version.is_empty() || HeaderValue::from_str(protocol_version).is_err() {
        return Err(Failure::Usage(
            "--protocol-version must be a revision such as 2025-11-25".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;
    let mut session = Session {
        client: Client::builder(TokioExecutor::new()).build_http(),
        target: &target,
        headers: &headers,
        timeout: Duration::from_secs(timeout),
        protocol: None,
        session_id: None,
        next_id: 1,
    };
    let taken = runtime
        .block_on(session.take(protocol_version))
        .map_err(|e| Failure::Input(vec![format!("portcullis: {}", scrub(&e, &secrets))]))?;
    drop(session);
    if taken.protocol != protocol_version {
        eprintln!(
            "portcullis: note: asked for protocol {protocol_version}, the server answered {}",
            taken.protocol
        );
    }
    Ok(Live {
        target,
        taken,
        secrets,
    })
}

pub fn run(args: PinArgs) -> Result<(), Failure> {
    let live = fetch_live(
        &args.url,
        &args.headers,
        args.name.as_ref(),
        &args.protocol_version,
        args.timeout,
    )?;
    let scrub = |s: &str| live.scrub(s);
    let name = live.name(args.name.as_ref())?;
    let (target, taken) = (&live.target, &live.taken);
    // The filter screens every tools/list for poisoning; a pin must not
    // approve what the screen would flag without someone saying so.
    let policy = portcullis_core::scan::default_policy().map_err(|errs| {
        Failure::Usage(format!(
            "internal: the built-in content policy does not compile: {errs:?}"
        ))
    })?;
    let mut screened = taken.tools.clone();
    let screens = policy.screen_tools(&mut screened);
    if !screens.is_empty() {
        let mut lines: Vec<String> = screens
            .iter()
            .map(|s| {
                scrub(&format!(
                    "portcullis: tool {} flagged by the poisoning screen: {}",
                    quote(&s.name),
                    crate::vet::rules(s)
                ))
            })
            .collect();
        if !args.allow_flagged {
            lines.push(format!(
                "portcullis: {} of {} tools flagged; nothing was pinned. Review them (`portcullis vet --url …` shows why), then pin with --allow-flagged if they are safe",
                screens.len(),
                taken.tools.len()
            ));
            return Err(Failure::Input(lines));
        }
        for line in lines {
            eprintln!("{line} (pinned anyway: --allow-flagged)");
        }
    }
    let (pins, unpinnable) =
        pin_tools(&taken.tools).map_err(|e| Failure::Input(vec![scrub(&e)]))?;
    for tool in &unpinnable {
        eprintln!(
            "{}",
            scrub(&format!(
                "portcullis: warning: tool {} is left out: its name has glob characters (* ? \\), \
                 and a pin belongs to one literal name; list it by hand if it must be callable",
                quote(tool)
            ))
        );
    }
    let when = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let yaml = render(&Document {
        shown_url: &target.shown,
        path: &target.path,
        name: &name,
        taken,
        pins: &pins,
        unpinnable: &unpinnable,
        strict: args.strict,
        when: &portcullis_core::audit::rfc3339(when),
    });
    eprintln!(
        "portcullis: note: through the Portcullis proxy, tools/list is what the proxy lets \
         through (filtered by policy); pin against the upstream directly to see every tool"
    );
    match &args.output {
        Some(path) => {
            std::fs::write(path, &yaml)
                .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "portcullis: wrote {} ({} tool pins, McpServer/{name})",
                path.display(),
                pins.len()
            );
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

/// The `--url`, checked.
pub(crate) struct Target {
    uri: Uri,
    /// What messages and the output show: no query (it may carry a key).
    pub shown: String,
    /// The URL's path: the document's `match.pathPrefix`.
    pub path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, Failure> {
        let uri: Uri = url.parse().map_err(|e| {
            Failure::Usage(format!(
                "--url is not a URL ({e}); write it as http://HOST:PORT/PATH"
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(s) if s.eq_ignore_ascii_case("https") => {
                return Err(Failure::Usage(
                    "--url is https://, but `portcullis pin` speaks plain HTTP only (the CLI \
                     carries no TLS stack): point it at the proxy's plain-HTTP listener, or at a \
                     port-forward to the server (e.g. `kubectl port-forward`), with http://"
                        .into(),
                ));
            }
            _ => {
                return Err(Failure::Usage(
                    "--url must start with http:// (e.g. http://127.0.0.1:8000/mcp)".into(),
                ));
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(Failure::Usage("--url has no host".into()));
        };
        if authority.as_str().contains('@') {
            return Err(Failure::Usage(
                "--url carries credentials; pass them with --header instead".into(),
            ));
        }
        let path = match uri.path() {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        let shown = format!("http://{authority}{path}");
        Ok(Target { uri, shown, path })
    }
}

/// Parses `--header` flags. Messages name the header, never its value.
/// Returns the headers and the strings to scrub from anything printed.
fn parse_headers(raw: &[String]) -> Result<(HeaderMap, Vec<String>), Failure> {
    let mut map = HeaderMap::new();
    let mut secrets = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let n = i + 1;
        // Nothing of the flag is quoted until the name is known good: a
        // mistyped flag may be all token.
        let Some((name, value)) = h.split_once(':') else {
            return Err(Failure::Usage(format!(
                "--header number {n} has no ':'; write it as 'Name: value'"
            )));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            Failure::Usage(format!(
                "--header number {n}: the part before ':' is not a header name; write it as 'Name: value'"
            ))
        })?;
        if OWN_HEADERS.contains(&name.as_str()) {
            return Err(Failure::Usage(format!(
                "--header {name}: `portcullis pin` sets this header itself"
            )));
        }
        let value = value.trim();
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            Failure::Usage(format!(
                "--header {name}: the value is not a valid header value (visible ASCII and spaces)"
            ))
        })?;
        value.set_sensitive(true);
        if let Ok(v) = value.to_str() {
            secrets.push(v.to_owned());
            // A server may echo only the token of `Bearer <token>`.
            secrets.extend(v.split_whitespace().map(str::to_owned));
        }
        map.append(name, value);
    }
    // Short strings are words of any message, not credentials; longest
    // first, so a value is scrubbed before its parts.
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    Ok((map, secrets))
}

/// `text` with every secret replaced.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[header value]");
        }
    }
    out
}

/// What one session found.
pub(crate) struct Taken {
    pub protocol: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// The tools of all pages, as received.
    pub tools: Vec<Value>,
    /// Whether initialize declared the tools capability.
    has_tools: bool,
}

struct Session<'a> {
    client: Client<HttpConnector, Full<Bytes>>,
    target: &'a Target,
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
    /// it exists, so a failed run leaves nothing open on the server.
    async fn take(&mut self, offered: &str) -> Result<Taken, String> {
        let mut taken = self.initialize(offered).await?;
        let listed = self.list(&mut taken).await;
        self.delete().await;
        listed.map(|()| taken)
    }

    async fn initialize(&mut self, offered: &str) -> Result<Taken, String> {
        let params = json!({
            "protocolVersion": offered,
            "capabilities": {},
            "clientInfo": {"name": "portcullis-pin", "version": env!("CARGO_PKG_VERSION")},
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
            .ok_or("the initialize answer has no valid protocolVersion; is --url an MCP server?")?
            .to_owned();
        self.protocol = HeaderValue::from_str(&protocol).ok();
        self.session_id = headers.get("mcp-session-id").cloned();
        let info = result.get("serverInfo");
        let text = |key: &str| {
            info.and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let has_tools = result
            .get("capabilities")
            .and_then(|c| c.get("tools"))
            .is_some_and(Value::is_object);
        self.notify("notifications/initialized").await?;
        Ok(Taken {
            protocol,
            server_name: text("name"),
            server_version: text("version"),
            tools: Vec::new(),
            has_tools,
        })
    }

    /// `tools/list`, following `nextCursor`.
    async fn list(&mut self, taken: &mut Taken) -> Result<(), String> {
        if !taken.has_tools {
            eprintln!(
                "portcullis: note: the server declares no tools capability; the document pins no tools"
            );
            return Ok(());
        }
        let mut cursor: Option<String> = None;
        for page in 1..=MAX_PAGES {
            let params = cursor.take().map(|c| json!({ "cursor": c }));
            let (result, _) = self.call("tools/list", params).await?;
            let Some(tools) = result.get("tools").and_then(Value::as_array) else {
                return Err(format!(
                    "tools/list page {page}: the result has no \"tools\" array"
                ));
            };
            if taken.tools.len() + tools.len() > MAX_TOOLS {
                return Err(format!(
                    "tools/list: the server lists more than {MAX_TOOLS} tools; refusing to pin them all"
                ));
            }
            taken.tools.extend(tools.iter().cloned());
            match result.get("nextCursor") {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::String(c)) => cursor = Some(c.clone()),
                Some(_) => {
                    return Err(format!(
                        "tools/list page {page}: nextCursor is not a string"
                    ));
                }
            }
        }
        Err(format!(
            "tools/list: still a nextCursor after {MAX_PAGES} pages; refusing to page on \
             (a server whose list never ends)"
        ))
    }

    fn request(
        &self,
        method: Method,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.target.uri.clone());
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
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        what: &str,
    ) -> Result<Response<Incoming>, String> {
        self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                format!(
                    "{what}: cannot connect to {} ({}); is the server running, and is --url right?",
                    self.target.shown,
                    chain(&e)
                )
            } else {
                format!("{what} to {}: {}", self.target.shown, chain(&e))
            }
        })
    }

    /// One JSON-RPC request; its result and the answer's headers.
    async fn call(
        &mut self,
        method: &str,
        params: Option<Value>,
    ) -> Result<(Value, HeaderMap), String> {
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

    async fn notify(&self, method: &str) -> Result<(), String> {
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
                Err(http_error(
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
        what: &str,
        fut: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{what}: no answer from {} within {} s (--timeout)",
                    self.target.shown,
                    self.timeout.as_secs()
                ))
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
async fn read_answer(resp: Response<Incoming>, id: u64, what: &str) -> Result<Value, String> {
    let status = resp.status();
    let headers = resp.headers().clone();
    if !status.is_success() {
        let body = read_limited(resp.into_body(), MAX_ERROR_BODY).await;
        return Err(http_error(
            what,
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
                .map_err(|e| format!("{what}: reading the answer failed: {e}"))?;
            let msg = parse_strict(&body)
                .map_err(|e| format!("{what}: the answer is not valid JSON: {e}"))?;
            match find_response(&msg, id) {
                Some(r) => rpc_result(r, what),
                None => Err(format!(
                    "{what}: the JSON answer is not the response to request id {id}"
                )),
            }
        }
        "text/event-stream" => read_sse(resp.into_body(), id, what).await,
        other => Err(format!(
            "{what}: the server answered with content type {}, not application/json or \
             text/event-stream; is --url the MCP endpoint?",
            quote(other)
        )),
    }
}

async fn read_sse(mut body: Incoming, id: u64, what: &str) -> Result<Value, String> {
    let mut parser = sse::Parser::new(MAX_BODY);
    let sse_err = |e: sse::SseError| format!("{what}: bad SSE stream: {e}");
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| format!("{what}: reading the SSE stream failed: {}", chain(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for event in parser.push(&data).map_err(sse_err)? {
            if let Some(result) = event_answer(&event, id, what)? {
                return Ok(result);
            }
        }
    }
    let (events, err) = parser.finish();
    for event in events {
        if let Some(result) = event_answer(&event, id, what)? {
            return Ok(result);
        }
    }
    let why = err.map(|e| format!(" ({e})")).unwrap_or_default();
    Err(format!(
        "{what}: the SSE stream ended without the response to request id {id}{why}"
    ))
}

/// The result in one SSE event, if it carries the response to `id` (a
/// JSON-RPC error is an `Err`, as is an event that is not JSON).
fn event_answer(event: &sse::Event, id: u64, what: &str) -> Result<Option<Value>, String> {
    let Some(data) = event.data.as_deref().filter(|d| !d.trim().is_empty()) else {
        return Ok(None); // keep-alive, or an event with no message
    };
    let msg = parse_strict(data.as_bytes())
        .map_err(|e| format!("{what}: an SSE event is not valid JSON: {e}"))?;
    find_response(&msg, id)
        .map(|r| rpc_result(r, what))
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

fn rpc_result(msg: &Value, what: &str) -> Result<Value, String> {
    if let Some(err) = msg.get("error") {
        return Err(format!("{what}: the server answered {}", rpc_error(err)));
    }
    match msg.get("result") {
        Some(r @ Value::Object(_)) => Ok(r.clone()),
        _ => Err(format!("{what}: the result is not a JSON object")),
    }
}

fn rpc_error(err: &Value) -> String {
    let code = err.get("code").map(Value::to_string).unwrap_or_default();
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    format!("JSON-RPC error {code}: {}", quote(&clip(message)))
}

/// A non-2xx answer, with what the operator can do about it.
fn http_error(what: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> String {
    let mut out = format!("{what}: HTTP {status}");
    if status == StatusCode::UNAUTHORIZED {
        // The challenge names the realm and scopes, not a secret.
        if let Some(v) = headers.get(header::WWW_AUTHENTICATE) {
            out.push_str(&format!(
                " (WWW-Authenticate: {})",
                clip(&String::from_utf8_lossy(v.as_bytes()))
            ));
        }
    }
    let rpc = parse_strict(body)
        .ok()
        .and_then(|m| m.get("error").map(rpc_error));
    match rpc {
        Some(e) => out.push_str(&format!(": {e}")),
        None if !body.is_empty() => {
            out.push_str(&format!(
                ": {}",
                quote(&clip(&String::from_utf8_lossy(body)))
            ));
        }
        None => {}
    }
    let hint = match status.as_u16() {
        401 | 403 => "; pass credentials with --header 'Authorization: Bearer …'",
        404 | 405 => "; is --url the MCP endpoint (often /mcp)?",
        421 => "; the server refused the Host header (DNS-rebinding protection)",
        _ => "",
    };
    out.push_str(hint);
    out
}

/// At most 200 characters, with control characters shown escaped (server
/// text must not drive the terminal).
fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The pin of each tool, by name; and the names that cannot be pinned
/// because the bundle would read them as globs.
pub(crate) fn pin_tools(
    tools: &[Value],
) -> Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut pins = BTreeMap::new();
    let mut globs = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let pin = tool_pin(tool).map_err(|e| {
            format!("portcullis: tools/list item {i}: {e}; a tool without a name cannot be pinned, fix the server")
        })?;
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if pins.contains_key(&name) || globs.contains(&name) {
            return Err(format!(
                "portcullis: the server lists tool {} twice; clients disagree on which copy wins, \
                 so it cannot be pinned: fix the server",
                quote(&name)
            ));
        }
        if name.contains(['*', '?', '\\']) {
            globs.push(name);
        } else {
            pins.insert(name, pin);
        }
    }
    Ok((pins, globs))
}

struct Document<'a> {
    shown_url: &'a str,
    path: &'a str,
    name: &'a str,
    taken: &'a Taken,
    pins: &'a BTreeMap<String, String>,
    unpinnable: &'a [String],
    strict: bool,
    when: &'a str,
}

fn render(d: &Document) -> String {
    let t = d.taken;
    let server = match (&t.server_name, &t.server_version) {
        (Some(n), Some(v)) => format!("{} {}", quote(n), quote(v)),
        (Some(n), None) => format!("{}, no version", quote(n)),
        (None, _) => "none".to_owned(),
    };
    let n = d.pins.len();
    let mut out = format!(
        "# pins of {} (serverInfo {server}), protocol {}, {n} tool{}, taken {}\n",
        d.shown_url,
        t.protocol,
        if n == 1 { "" } else { "s" },
        d.when
    );
    for name in d.unpinnable {
        out.push_str(&format!(
            "# left out: tool {} (glob characters in its name; it cannot be pinned)\n",
            quote(name)
        ));
    }
    out.push_str("apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n");
    out.push_str(&format!("  name: {}\n", quote(d.name)));
    out.push_str("spec:\n  match:\n");
    out.push_str(&format!("    pathPrefix: {}\n", quote(d.path)));
    if let Some(v) = &t.server_version {
        out.push_str(&format!("  serverVersion: {}\n", quote(v)));
    }
    if d.strict {
        out.push_str("  pinning: strict\n");
    }
    if d.pins.is_empty() {
        out.push_str("  tools: []\n");
    } else {
        out.push_str("  tools:\n");
        for (name, pin) in d.pins {
            out.push_str(&format!(
                "    - name: {}\n      pin: {}\n",
                quote(name),
                quote(pin)
            ));
        }
    }
    out
}

/// `s` as a JSON string that is also a YAML double-quoted scalar meaning
/// the same: JSON leaves DEL, C1 controls, U+2028/9 and BOM-like characters
/// raw, which YAML either forbids or (1.1) reads as line breaks.
pub(crate) fn quote(s: &str) -> String {
    let json = Value::String(s.to_owned()).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// `serverInfo.name` as a DNS-1123 name: lowercased, other characters
/// turned into `-` (runs of them into one), trimmed to a letter or digit at
/// both ends, at most 253 characters.
pub(crate) fn dns_name(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let mut name: String = out
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(253)
        .collect();
    name.truncate(
        name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            .len(),
    );
    (!name.is_empty()).then_some(name)
}

/// The bundle's own rule for `metadata.name`, so a name this command
/// accepts is one `bundle check` accepts.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    portcullis_core::bundle::check_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(
            dns_name("portcullis-e2e-upstream").as_deref(),
            Some("portcullis-e2e-upstream")
        );
        assert_eq!(
            dns_name("My Weather_Server").as_deref(),
            Some("my-weather-server")
        );
        assert_eq!(
            dns_name("  --Acme.Tools v2!! ").as_deref(),
            Some("acme.tools-v2")
        );
        assert_eq!(dns_name("ÜBER").as_deref(), Some("ber"));
        assert_eq!(dns_name("***"), None);
        assert_eq!(dns_name(""), None);
        let long = dns_name(&"a-".repeat(300)).unwrap();
        assert!(long.len() <= 253 && check_name(&long).is_ok(), "{long}");
        for s in ["Weather", "x_y", "ÜBER Server", "a.b", "-x-"] {
            if let Some(n) = dns_name(s) {
                assert!(check_name(&n).is_ok(), "{s} -> {n}");
            }
        }
    }

    #[test]
    fn quoted_strings_mean_the_same_in_json_and_yaml() {
        for s in [
            "get-weather",
            "a\"b\\c",
            "line\nbreak",
            "del\u{7f}",
            "nel\u{85}",
            "ls\u{2028}",
            "é😀",
        ] {
            let q = quote(s);
            assert!(!q.contains(['\n', '\u{85}', '\u{2028}', '\u{7f}']), "{q}");
            let from_json: String = serde_json::from_str(&q).unwrap();
            assert_eq!(from_json, s);
            let doc = format!("k: {q}\n");
            let yaml = yaml_rust2::YamlLoader::load_from_str(&doc).unwrap();
            assert_eq!(yaml[0]["k"].as_str(), Some(s), "{q}");
        }
    }

    #[test]
    fn header_values_are_never_quoted() {
        let secret = "Bearer tok-0123456789";
        for bad in [
            format!("Authorization {secret}"),
            format!("Authorization={secret}: x"),
            format!("Authorization: {secret}\u{1}"),
        ] {
            match parse_headers(&[bad]) {
                Err(Failure::Usage(m)) => assert!(!m.contains("tok-0123456789"), "{m}"),
                _ => panic!("accepted"),
            }
        }
        let Ok((map, secrets)) = parse_headers(&[format!("Authorization: {secret}")]) else {
            panic!("refused a good header");
        };
        assert!(map["authorization"].is_sensitive());
        assert_eq!(
            scrub(
                "server said tok-0123456789 and Bearer tok-0123456789",
                &secrets
            ),
            "server said [header value] and [header value]"
        );
    }
}

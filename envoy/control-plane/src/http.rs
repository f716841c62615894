//! The control plane's HTTP side (`--http ADDR`): `/metrics` (Prometheus
//! text), `/healthz`, `/readyz` (ready once a valid snapshot exists),
//! `/status` (JSON; HTML for browsers, or with `?format=html`), and the
//! filter code at `/wasm/portcullis_filter.wasm` for Envoy's remote
//! `http_uri` code source.
//!
//! Plain hyper, HTTP/1.1: this is an operator endpoint, not a data path.

use crate::state::State;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The path the filter code is served at.
pub const WASM_PATH: &str = "/wasm/portcullis_filter.wasm";

/// Serves until the state shuts down.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    wasm: Option<Arc<Vec<u8>>>,
    approvals: Option<Arc<crate::approvals::Approvals>>,
) {
    let mut shutdown = state.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        let wasm = wasm.clone();
        let approvals = approvals.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                let wasm = wasm.clone();
                let approvals = approvals.clone();
                async move {
                    if crate::approvals::Approvals::owns(req.uri().path())
                        && let Some(a) = approvals
                    {
                        return Ok::<_, Infallible>(a.handle(req, &state).await);
                    }
                    Ok::<_, Infallible>(route(&req, &state, wasm.as_deref()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn route(req: &Request<Incoming>, state: &State, wasm: Option<&Vec<u8>>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let wants_html = query.contains("format=html")
        || req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    match path {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if state.ready() {
                reply(StatusCode::OK, "text/plain", "ready\n")
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: no bundle directory has compiled yet (see /status)\n",
                )
            }
        }
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics_text(),
        ),
        "/status" | "/" if wants_html || path == "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_html(state),
        ),
        "/status" => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&state.status_json()).unwrap_or_default(),
        ),
        WASM_PATH => match wasm {
            Some(w) => reply(StatusCode::OK, "application/wasm", w.clone()),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no filter code is served; start the control plane with --wasm-file\n",
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn short(v: Option<&String>) -> String {
    match v {
        Some(v) => esc(v.get(..19).unwrap_or(v)),
        None => "&mdash;".into(),
    }
}

/// The status page: bundles, errors, and one row per node.
pub fn status_html(state: &State) -> String {
    use std::fmt::Write;
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Portcullis control plane</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.bad{color:#b00}</style></head><body>\
         <h1>Portcullis control plane</h1>",
    );
    let _ = write!(
        h,
        "<p>Filter <code>{}</code>; {}</p><h2>Bundles</h2><table><tr><th>directory</th><th>version</th><th>documents</th></tr>",
        esc(&state.filter_name),
        if state.ready() {
            "ready"
        } else {
            "<span class=bad>not ready</span>"
        }
    );
    for s in state.snapshots() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&s.key),
            esc(&s.version),
            s.documents
        );
    }
    h.push_str("</table>");
    let failures = state.failures();
    if !failures.is_empty() {
        h.push_str("<h2 class=bad>Not published (last good version still served)</h2><ul>");
        for (key, f) in &failures {
            for e in &f.errors {
                let _ = write!(h, "<li><b>{}</b>: <code>{}</code></li>", esc(key), esc(e));
            }
        }
        h.push_str("</ul>");
    }
    h.push_str(
        "<h2>Nodes</h2><table><tr><th>node</th><th>environment</th><th>tenant</th><th>bundle</th>\
         <th>streams</th><th>api</th><th>sent</th><th>acked</th><th>last NACK</th><th>note</th></tr>",
    );
    for n in state.nodes() {
        let nack = match &n.last_nack {
            Some(k) => format!(
                "<span class=bad><code>{}</code>: {}</span>",
                short(Some(&k.version)),
                esc(&k.message)
            ),
            None => "&mdash;".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&n.id),
            esc(n.environment.as_deref().unwrap_or("")),
            esc(n.tenant.as_deref().unwrap_or("")),
            esc(n.bundle.as_deref().unwrap_or("")),
            n.streams,
            esc(&n.api),
            short(n.sent_version.as_ref()),
            short(n.acked_version.as_ref()),
            nack,
            esc(n.problem.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

//! Content-Type as every reader of the message reads it (placeholder; the
//! full parser lands with the client-differential work).

/// Checks the content type of an MCP request body: `application/json`, and
/// no charset other than UTF-8.
pub fn check_json_request(ctype: &str) -> Result<(), String> {
    let mut parts = ctype.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err("not application/json".into());
    }
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("charset") {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") {
                return Err(format!("charset {v:?} is not utf-8"));
            }
        }
    }
    Ok(())
}

/// What a response's media type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    Json,
    EventStream,
    Other,
}

/// Checks a response's content type: no charset but UTF-8.
pub fn check_response(ctype: &str) -> Result<ResponseMedia, String> {
    let mut parts = ctype.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("charset") {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") {
                return Err(format!("charset {v:?} is not utf-8; clients would decode other text than the filter read"));
            }
        }
    }
    Ok(match essence.as_str() {
        "application/json" => ResponseMedia::Json,
        "text/event-stream" => ResponseMedia::EventStream,
        _ => ResponseMedia::Other,
    })
}

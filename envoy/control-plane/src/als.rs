//! Envoy's Access Log Service (`envoy.service.accesslog.v3`) into the
//! audit store.
//!
//! The filter writes its audit records (JSON lines) to the property
//! `portcullis.audit`; Envoy keeps wasm properties in filter state under
//! `wasm.` + name, and the gRPC access logger, configured with
//! `filter_state_objects_to_log: [wasm.portcullis.audit]`, sends each as
//! `common_properties.filter_state_objects[key]`: the object's
//! `serializeAsProto()`, which for a wasm (CEL) state of type bytes or
//! string is a `google.protobuf.BytesValue` packed in an Any (Envoy
//! source/extensions/filters/common/expr/cel_state.cc and
//! access_loggers/grpc/grpc_access_log_utils.cc). A `StringValue` is
//! accepted as well.
//!
//! Each message's records are committed in one transaction before the next
//! message is read: the stream only proceeds past what is durable, and a
//! store failure ends the stream with an error (Envoy reconnects).

use crate::state::{Counters, State};
use audit_store::{Prepared, Store};
use envoy_types::pb::envoy::data::accesslog::v3::AccessLogCommon;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogService;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use envoy_types::pb::google::protobuf::{Any, BytesValue, StringValue};
use prost::{Message, Name};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status, Streaming};

/// The filter-state key the filter's audit lines are under.
pub const AUDIT_FILTER_STATE: &str = "wasm.portcullis.audit";

/// The Access Log Service, appending to one store.
#[derive(Debug, Clone)]
pub struct Als {
    store: Arc<Mutex<Store>>,
    state: Arc<State>,
}

impl Als {
    pub fn new(store: Store, state: Arc<State>) -> Self {
        Als {
            store: Arc::new(Mutex::new(store)),
            state,
        }
    }
}

/// The text of one filter-state object, if it is a bytes or string value.
fn object_text(any: &Any) -> Option<String> {
    if any.type_url == BytesValue::type_url() {
        let v = BytesValue::decode(any.value.as_slice()).ok()?;
        return Some(String::from_utf8_lossy(&v.value).into_owned());
    }
    if any.type_url == StringValue::type_url() {
        return StringValue::decode(any.value.as_slice())
            .ok()
            .map(|v| v.value);
    }
    None
}

/// The audit lines of one message, in order.
pub fn audit_lines(msg: &StreamAccessLogsMessage) -> Vec<String> {
    let commons: Vec<&AccessLogCommon> = match &msg.log_entries {
        Some(LogEntries::HttpLogs(h)) => h
            .log_entry
            .iter()
            .filter_map(|e| e.common_properties.as_ref())
            .collect(),
        Some(LogEntries::TcpLogs(t)) => t
            .log_entry
            .iter()
            .filter_map(|e| e.common_properties.as_ref())
            .collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for c in commons {
        let Some(any) = c.filter_state_objects.get(AUDIT_FILTER_STATE) else {
            continue;
        };
        match object_text(any) {
            Some(text) => out.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string),
            ),
            None => tracing::warn!(
                type_url = any.type_url,
                "{AUDIT_FILTER_STATE} is neither a BytesValue nor a StringValue; skipped"
            ),
        }
    }
    out
}

#[tonic::async_trait]
impl AccessLogService for Als {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut inbound = request.into_inner();
        while let Some(msg) = inbound.message().await? {
            Counters::inc(&self.state.counters.als_messages);
            let mut batch = Vec::new();
            for line in audit_lines(&msg) {
                match Prepared::from_json(&line) {
                    Ok(p) => batch.push(p),
                    Err(e) => {
                        Counters::inc(&self.state.counters.als_rejected);
                        tracing::warn!(error = %e, "an audit line from the access log is not a record; skipped");
                    }
                }
            }
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            let store = self.store.clone();
            let result = tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .map_err(|_| "the audit store lock is poisoned".to_string())?
                    .append_prepared(&batch)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| Status::internal(format!("audit append task failed: {e}")))?;
            result
                .map_err(|e| Status::internal(format!("cannot append to the audit store: {e}")))?;
            Counters::add(&self.state.counters.als_records, n);
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

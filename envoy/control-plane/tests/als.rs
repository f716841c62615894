//! The Access Log Service: a tonic client sends Envoy
//! `StreamAccessLogsMessage`s built from the envoy-types protos, with the
//! filter's audit lines in filter state the way Envoy serialises a wasm
//! property (a BytesValue in an Any), and the records land in the audit
//! store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use envoy_types::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpAccessLogEntry};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries,
};
use envoy_types::pb::google::protobuf::{Any, BytesValue, StringValue};
use prost::{Message, Name};

fn record(i: usize, subject: &str, tool: &str) -> String {
    serde_json::json!({
        "schema": "portcullis.audit/v1",
        "time": format!("2026-12-01T10:00:{:02}.000Z", i % 60),
        "request_id": format!("req-{i}"),
        "subject": subject,
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": tool,
        "decision": "allow",
    })
    .to_string()
}

fn entry(state: Any) -> HttpAccessLogEntry {
    let mut common = AccessLogCommon::default();
    common
        .filter_state_objects
        .insert("wasm.portcullis.audit".into(), state);
    HttpAccessLogEntry {
        common_properties: Some(common),
        ..Default::default()
    }
}

fn bytes_state(lines: &[String]) -> Any {
    Any {
        type_url: BytesValue::type_url(),
        value: BytesValue {
            value: format!("{}\n", lines.join("\n")).into_bytes(),
        }
        .encode_to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_entries_with_filter_state_land_in_the_audit_store() {
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    let db = dir.path().join("audit.db");
    let d = db.clone();
    let cp = start_with(&root, move |c| c.audit_db = Some(d)).await;

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut client = AccessLogServiceClient::connect(format!("http://{}", cp.xds_addr))
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        client
            .stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let mut sent = Vec::new();
    // Three messages: two entries of two records (BytesValue, as Envoy
    // sends a wasm property), one entry as a StringValue, and one entry
    // without Portcullis state (another filter's request).
    for m in 0..3 {
        let mut entries = Vec::new();
        for e in 0..2 {
            let base = m * 10 + e * 2;
            let lines = vec![
                record(base, "alice", "echo"),
                record(base + 1, "bob", "add"),
            ];
            sent.extend(lines.clone());
            entries.push(entry(bytes_state(&lines)));
        }
        let line = record(m * 10 + 9, "carol", "echo");
        sent.push(line.clone());
        entries.push(entry(Any {
            type_url: StringValue::type_url(),
            value: StringValue { value: line }.encode_to_vec(),
        }));
        entries.push(HttpAccessLogEntry::default());
        tx.send(StreamAccessLogsMessage {
            identifier: (m == 0).then(|| Identifier {
                node: Some(node("envoy-1", "prod", None)),
                log_name: "portcullis_audit".into(),
            }),
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: entries,
            })),
        })
        .await
        .unwrap();
    }
    drop(tx);
    call.await.unwrap().unwrap();
    let m = metrics(cp.http_addr.unwrap()).await;
    assert_eq!(metric(&m, "portcullis_cp_als_messages_total"), Some(3.0));
    assert_eq!(
        metric(&m, "portcullis_cp_als_records_total"),
        Some(sent.len() as f64)
    );
    cp.shutdown().await;

    let store = audit_store::Store::open_existing(&db, audit_store::Config::default()).unwrap();
    let rows = store
        .query(&audit_store::Filter {
            order: audit_store::Order::Seq,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), sent.len());
    let ids: Vec<String> = rows.iter().map(|r| r.request_id.clone().unwrap()).collect();
    let want: Vec<String> = sent
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, want, "records stored in the order sent");
    let alice = store
        .query(&audit_store::Filter {
            subject: Some("alice".into()),
            tool: Some("echo".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(alice.len(), 6);
    let report = store.verify(None).unwrap();
    assert!(report.is_ok(), "the chain verifies: {report:?}");
    assert_eq!(report.records, sent.len() as u64);
}

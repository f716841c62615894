//! The control plane against real xDS clients (tonic, envoy-types protos)
//! over 127.0.0.1: many concurrent SotW and delta streams on ADS and ECDS,
//! NACKs, invalid bundles, reconnects and per-environment targeting.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::time::Duration;

const APIS: [Api; 4] = [Api::AdsSotw, Api::EcdsSotw, Api::AdsDelta, Api::EcdsDelta];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_change_reaches_all_twenty_clients_with_the_same_version() {
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    let v1 = expected_version(&root, "prod");
    let cp = start(&root).await;
    let http = cp.http_addr.unwrap();

    let mut clients = Vec::new();
    for i in 0..20 {
        let api = APIS[i % 4];
        let (seen, _h) = spawn_client(
            cp.xds_addr,
            api,
            node(&format!("node-{i}"), "prod", None),
            Behaviour::Ack,
            None,
        );
        clients.push(seen);
    }
    eventually("all 20 clients have v1", || {
        clients
            .iter()
            .all(|c| c.last().as_deref() == Some(v1.as_str()))
    })
    .await;
    eventually_async("every node acked v1", || async {
        let s = status(http).await;
        (0..20).all(|i| node_status(&s, &format!("node-{i}"))["acked_version"] == v1.as_str())
    })
    .await;

    write_bundle(&root, "prod", &server_yaml("everything", &["echo", "add"]));
    let v2 = expected_version(&root, "prod");
    assert_ne!(v1, v2);
    eventually("all 20 clients have v2", || {
        clients
            .iter()
            .all(|c| c.last().as_deref() == Some(v2.as_str()))
    })
    .await;
    for c in &clients {
        // Exactly the two versions, in order: no duplicate pushes.
        assert_eq!(c.versions(), vec![v1.clone(), v2.clone()]);
    }

    // Every node acked v2, as the status page and metrics tell.
    eventually_async("every node shows v2 acked", || async {
        let s = status(http).await;
        (0..20).all(|i| node_status(&s, &format!("node-{i}"))["acked_version"] == v2.as_str())
    })
    .await;
    let m = metrics(http).await;
    assert_eq!(metric(&m, "portcullis_cp_connected_nodes"), Some(20.0));
    assert_eq!(
        metric(
            &m,
            &format!("portcullis_cp_nodes_acked{{bundle=\"prod\",version=\"{v2}\"}}")
        ),
        Some(20.0)
    );
    assert_eq!(metric(&m, "portcullis_cp_acks_total"), Some(40.0));
    assert_eq!(metric(&m, "portcullis_cp_responses_total"), Some(40.0));
    assert_eq!(
        metric(
            &m,
            &format!("portcullis_cp_bundle_version_info{{bundle=\"prod\",version=\"{v2}\"}}")
        ),
        Some(1.0)
    );
    let s = status(http).await;
    let apis: std::collections::BTreeSet<String> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["api"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(apis.len(), 4, "all four RPCs were used: {apis:?}");
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacking_client_is_reported_and_not_flooded() {
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    let v1 = expected_version(&root, "prod");
    let cp = start(&root).await;
    let http = cp.http_addr.unwrap();

    let (sotw, _a) = spawn_client(
        cp.xds_addr,
        Api::EcdsSotw,
        node("nacker-sotw", "prod", None),
        Behaviour::Nack,
        None,
    );
    let (delta, _b) = spawn_client(
        cp.xds_addr,
        Api::AdsDelta,
        node("nacker-delta", "prod", None),
        Behaviour::Nack,
        None,
    );
    let (good, _c) = spawn_client(
        cp.xds_addr,
        Api::EcdsSotw,
        node("good", "prod", None),
        Behaviour::Ack,
        None,
    );
    eventually("each client has its first response", || {
        sotw.count() == 1 && delta.count() == 1 && good.count() == 1
    })
    .await;
    eventually_async("both NACKs are recorded", || async {
        let s = status(http).await;
        ["nacker-sotw", "nacker-delta"]
            .iter()
            .all(|id| node_status(&s, id)["last_nack"]["version"] == v1.as_str())
    })
    .await;

    // Touch the file without changing its content: a recompile, same
    // version, so nothing may be pushed. Wait several poll cycles.
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(sotw.count(), 1, "a NACKed version was resent");
    assert_eq!(delta.count(), 1, "a NACKed version was resent");

    let s = status(http).await;
    for id in ["nacker-sotw", "nacker-delta"] {
        let n = node_status(&s, id);
        assert_eq!(n["nacks"], 1);
        assert_eq!(n["responses"], 1);
        assert_eq!(
            n["last_nack"]["message"],
            "test client refuses every bundle"
        );
        // It stays on its last acked version: none.
        assert!(n["acked_version"].is_null(), "{n}");
    }
    assert_eq!(node_status(&s, "good")["acked_version"], v1.as_str());
    let m = metrics(http).await;
    assert_eq!(metric(&m, "portcullis_cp_nacks_total"), Some(2.0));
    assert_eq!(metric(&m, "portcullis_cp_nodes_nacking"), Some(2.0));
    let (code, html) = get(http, "/status", "text/html").await;
    assert_eq!(code, 200);
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("nacker-sotw") && html.contains("test client refuses every bundle"));

    // A newer version is offered once (and NACKed once) more.
    write_bundle(&root, "prod", &server_yaml("everything", &["echo", "add"]));
    let v2 = expected_version(&root, "prod");
    eventually("the newer version reaches every client", || {
        [&sotw, &delta, &good]
            .iter()
            .all(|c| c.last().as_deref() == Some(v2.as_str()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sotw.versions(), vec![v1.clone(), v2.clone()]);
    assert_eq!(delta.versions(), vec![v1.clone(), v2.clone()]);
    eventually_async("the second NACK is recorded", || async {
        let s = status(http).await;
        node_status(&s, "nacker-delta")["nacks"] == 2
            && node_status(&s, "nacker-sotw")["nacks"] == 2
    })
    .await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_bundle_is_never_sent_and_its_error_is_shown() {
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    let v1 = expected_version(&root, "prod");
    let cp = start(&root).await;
    let http = cp.http_addr.unwrap();
    let (sotw, _a) = spawn_client(
        cp.xds_addr,
        Api::AdsSotw,
        node("n-sotw", "prod", None),
        Behaviour::Ack,
        None,
    );
    let (delta, _b) = spawn_client(
        cp.xds_addr,
        Api::EcdsDelta,
        node("n-delta", "prod", None),
        Behaviour::Ack,
        None,
    );
    eventually("both have v1", || {
        sotw.last().as_deref() == Some(v1.as_str()) && delta.last().as_deref() == Some(v1.as_str())
    })
    .await;

    // A typo in a field name, on line 8.
    let bad = server_yaml("everything", &["echo"]).replace("    - name: echo", "    - nam: echo");
    write_bundle(&root, "prod", &bad);
    eventually_async("the error is on /status", || async {
        let s = status(http).await;
        s["errors"]["prod"]["errors"].as_array().is_some_and(|e| {
            e.iter()
                .any(|l| l.as_str().unwrap().starts_with("prod/server.yaml:8"))
        })
    })
    .await;
    let m = metrics(http).await;
    assert_eq!(
        metric(&m, "portcullis_cp_bundle_invalid{bundle=\"prod\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "portcullis_cp_bundle_errors_total"), Some(1.0));
    // The last good version is still the one served.
    let s = status(http).await;
    assert_eq!(s["bundles"][0]["version"], v1.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sotw.versions(), vec![v1.clone()]);
    assert_eq!(delta.versions(), vec![v1.clone()]);

    // A client connecting now gets the last good version.
    let (late, _c) = spawn_client(
        cp.xds_addr,
        Api::EcdsSotw,
        node("late", "prod", None),
        Behaviour::Ack,
        None,
    );
    eventually("the late client gets v1", || {
        late.last().as_deref() == Some(v1.as_str())
    })
    .await;

    // Fixed: published, error cleared.
    write_bundle(&root, "prod", &server_yaml("everything", &["echo", "add"]));
    let v2 = expected_version(&root, "prod");
    eventually("all get v2", || {
        [&sotw, &delta, &late]
            .iter()
            .all(|c| c.last().as_deref() == Some(v2.as_str()))
    })
    .await;
    let m = metrics(http).await;
    assert_eq!(
        metric(&m, "portcullis_cp_bundle_invalid{bundle=\"prod\"}"),
        Some(0.0)
    );
    let s = status(http).await;
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_the_current_version() {
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    let v1 = expected_version(&root, "prod");
    let cp = start(&root).await;

    for api in APIS {
        let id = format!("re-{api:?}");
        let (seen, h) = spawn_client(
            cp.xds_addr,
            api,
            node(&id, "prod", None),
            Behaviour::Ack,
            None,
        );
        eventually("first connection gets v1", || {
            seen.last().as_deref() == Some(v1.as_str())
        })
        .await;
        h.abort();
        let _ = h.await;
    }
    // The bundle changes while the clients are away.
    write_bundle(&root, "prod", &server_yaml("everything", &["echo", "add"]));
    let v2 = expected_version(&root, "prod");
    eventually_async("v2 is published", || async {
        cp.state.snapshot("prod").is_some_and(|s| s.version == v2)
    })
    .await;
    for api in APIS {
        let id = format!("re-{api:?}");
        // They come back claiming v1, the version they run.
        let (seen, _h) = spawn_client(
            cp.xds_addr,
            api,
            node(&id, "prod", None),
            Behaviour::Ack,
            Some(v1.clone()),
        );
        eventually("the reconnect gets v2", || {
            seen.last().as_deref() == Some(v2.as_str())
        })
        .await;
        assert_eq!(seen.versions(), vec![v2.clone()]);
    }
    let s = status(cp.http_addr.unwrap()).await;
    for api in APIS {
        let n = node_status(&s, &format!("re-{api:?}"));
        assert_eq!(n["acked_version"], v2.as_str());
        assert_eq!(n["streams"], 1);
    }
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_prod_and_tenant_nodes_get_their_own_versions() {
    let dir = tempdir();
    let root = path_of(&dir);
    write_bundle(
        &root,
        "staging",
        &server_yaml("everything", &["echo", "add"]),
    );
    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    write_bundle(
        &root,
        "prod@acme",
        &server_yaml("everything", &["echo", "countdown"]),
    );
    let staging = expected_version(&root, "staging");
    let prod = expected_version(&root, "prod");
    let acme = expected_version(&root, "prod@acme");
    assert!(staging != prod && prod != acme && staging != acme);
    let cp = start(&root).await;

    let mut cases = Vec::new();
    for (i, api) in APIS.iter().enumerate() {
        for (env, tenant, want) in [
            ("staging", None, &staging),
            ("prod", None, &prod),
            ("prod", Some("acme"), &acme),
            // A tenant without its own directory gets the environment's.
            ("prod", Some("globex"), &prod),
        ] {
            let id = format!("{env}-{}-{i}", tenant.unwrap_or("none"));
            let (seen, _h) = spawn_client(
                cp.xds_addr,
                *api,
                node(&id, env, tenant),
                Behaviour::Ack,
                None,
            );
            cases.push((seen, want.clone()));
        }
    }
    eventually("every node has its own environment's version", || {
        cases
            .iter()
            .all(|(s, want)| s.last().as_deref() == Some(want.as_str()))
    })
    .await;

    // Changing staging leaves prod alone.
    write_bundle(
        &root,
        "staging",
        &server_yaml("everything", &["echo", "add", "countdown"]),
    );
    let staging2 = expected_version(&root, "staging");
    eventually("staging nodes move on", || {
        cases
            .iter()
            .filter(|(_, want)| *want == staging)
            .all(|(s, _)| s.last().as_deref() == Some(staging2.as_str()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (s, want) in &cases {
        if *want != staging {
            assert_eq!(
                s.versions(),
                vec![want.clone()],
                "a non-staging node was pushed"
            );
        }
    }
    // A node without an environment gets nothing and is reported.
    let (lost, _h) = spawn_client(
        cp.xds_addr,
        Api::EcdsDelta,
        control_plane::client::node("lost", "test", "", None),
        Behaviour::Ack,
        None,
    );
    let http = cp.http_addr.unwrap();
    eventually_async("the node without environment is reported", || async {
        let s = status(http).await;
        s["nodes"].as_array().unwrap().iter().any(|n| {
            n["id"] == "lost"
                && n["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("environment"))
        })
    })
    .await;
    assert_eq!(lost.count(), 0);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_the_wasm_code_are_served() {
    let dir = tempdir();
    let root = path_of(&dir);
    // Not ready until some directory compiles.
    write_bundle(&root, "prod", "not: [valid\n");
    let wasm = b"\0asm\x01\0\0\0 test filter bytes".to_vec();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&wasm))
    };
    let w = wasm.clone();
    let cp = start_with(&root, move |c| {
        c.wasm_bytes = Some(std::sync::Arc::new(w));
        c.resource.code = control_plane::WasmCode::Remote {
            url: "http://127.0.0.1:1/wasm/portcullis_filter.wasm".into(),
            sha256: sha.clone(),
            cluster: "portcullis_control_plane".into(),
        };
    })
    .await;
    let http = cp.http_addr.unwrap();
    assert_eq!(get(http, "/healthz", "*/*").await.0, 200);
    assert_eq!(get(http, "/readyz", "*/*").await.0, 503);
    let (code, body) = get(http, "/wasm/portcullis_filter.wasm", "*/*").await;
    assert_eq!(code, 200);
    assert_eq!(body, wasm);

    write_bundle(&root, "prod", &server_yaml("everything", &["echo"]));
    eventually_async("ready once a bundle compiles", || async {
        get(http, "/readyz", "*/*").await.0 == 200
    })
    .await;
    // The resource names the remote code with the sha256 of what is served.
    let snap = cp.state.snapshot("prod").unwrap();
    let tec =
        <envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig as prost::Message>::decode(
            snap.resource.value.as_slice(),
        )
        .unwrap();
    let wasm_cfg = <envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm as prost::Message>::decode(
        tec.typed_config.unwrap().value.as_slice(),
    )
    .unwrap();
    let pc = wasm_cfg.config.unwrap();
    assert_eq!(pc.failure_policy, 2, "FAIL_CLOSED");
    assert!(pc.allow_on_headers_stop_iteration.unwrap().value);
    let Some(envoy_types::pb::envoy::extensions::wasm::v3::plugin_config::Vm::VmConfig(vm)) = pc.vm
    else {
        panic!("no vm_config");
    };
    let Some(envoy_types::pb::envoy::config::core::v3::async_data_source::Specifier::Remote(r)) =
        vm.code.unwrap().specifier
    else {
        panic!("not remote code");
    };
    let served = get(http, "/wasm/portcullis_filter.wasm", "*/*").await.1;
    use sha2::Digest;
    assert_eq!(r.sha256, hex::encode(sha2::Sha256::digest(&served)));
    assert!(
        r.http_uri
            .unwrap()
            .uri
            .ends_with("/wasm/portcullis_filter.wasm")
    );
    cp.shutdown().await;
}

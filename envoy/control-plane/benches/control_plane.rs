//! The control plane at catalogue scale: a bundle of 1,000 McpServers with
//! 10,000 tools (one file per server, as a git-managed registry keeps them).
//!
//! * `bundle_compile/load_dir`: reading and compiling the directory, what
//!   the control plane does for every change before it publishes.
//! * `bundle_compile/engine_from_config`: the filter's `on_configure` for
//!   that bundle (natively; the proxy-wasm figure is in benches/filter.rs).
//! * `change_to_ack/ecds_delta_1000_clients`: from the moment a server file
//!   is rewritten until the control plane has recorded the ACK of the new
//!   version from each of 1,000 ECDS (delta) clients, each on its own
//!   connection. It includes the directory poll (`poll_interval` 20 ms, so
//!   10 ms on average), the compile, and sending the whole bundle to every
//!   client. The clients are `control_plane::client` (what `portcullis serve
//!   --xds` runs); they acknowledge without loading a VM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use control_plane::client::{Apply, ClientConfig, run_ecds};
use control_plane::resource::ResourceConfig;
use control_plane::{Config, WasmCode};
use criterion::{Criterion, criterion_group, criterion_main};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVERS: usize = 1_000;
const TOOLS_PER_SERVER: usize = 10;
const CLIENTS: usize = 1_000;

fn server_yaml(i: usize, generation: usize) -> String {
    let mut s = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: McpServer\nmetadata:\n  name: server-{i:04}\nspec:\n  match: {{pathPrefix: /mcp/server-{i:04}}}\n  owner: team-{}\n  classification: internal\n  tools:\n",
        i % 37
    );
    for t in 0..TOOLS_PER_SERVER {
        s.push_str(&format!("    - name: tool_{t}_of_{i:04}\n"));
    }
    // A change a reviewer would make: a tool renamed (the version is a hash
    // of the documents' meaning, so it must change).
    if generation > 0 {
        s.push_str(&format!("    - name: added_in_{generation}\n"));
    }
    s
}

fn write_catalogue(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..SERVERS {
        std::fs::write(dir.join(format!("server-{i:04}.yaml")), server_yaml(i, 0)).unwrap();
    }
}

/// Rewrites one server file (write, then rename, as git checkouts do).
fn touch(dir: &Path, generation: usize) {
    let tmp = dir.join(".server-0000.yaml.tmp");
    std::fs::write(&tmp, server_yaml(0, generation)).unwrap();
    std::fs::rename(&tmp, dir.join("server-0000.yaml")).unwrap();
}

fn bundle_compile(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("prod");
    write_catalogue(&dir);
    let bundle = portcullis_core::bundle::yaml::load_dir(&dir).unwrap();
    let tools: usize = bundle
        .documents
        .iter()
        .filter_map(|d| d.spec.get("tools").and_then(|t| t.as_array()))
        .map(Vec::len)
        .sum();
    assert_eq!(tools, SERVERS * TOOLS_PER_SERVER);
    let json = serde_json::to_vec(&bundle).unwrap();
    eprintln!(
        "catalogue: {SERVERS} servers, {tools} tools, bundle JSON {} KiB",
        json.len() / 1024
    );

    let mut g = c.benchmark_group("bundle_compile");
    g.sample_size(10);
    g.bench_function("load_dir", |b| {
        b.iter(|| portcullis_core::bundle::yaml::load_dir(&dir).unwrap())
    });
    g.bench_function("engine_from_config", |b| {
        b.iter(|| portcullis_core::Engine::from_config(&json).unwrap())
    });
    g.finish();
}

fn change_to_ack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("prod");
    write_catalogue(&dir);

    let mut cfg = Config::new(
        root.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
        ResourceConfig {
            filter_name: "portcullis".into(),
            code: WasmCode::Local("/etc/portcullis/portcullis_filter.wasm".into()),
        },
    );
    cfg.poll_interval = Duration::from_millis(20);
    let running = rt.block_on(control_plane::start(cfg)).unwrap();
    let state = running.state.clone();
    let url = format!("http://{}", running.xds_addr);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let apply: Apply = Arc::new(|_version, _json| Ok(()));
    for i in 0..CLIENTS {
        let cfg = ClientConfig {
            url: url.clone(),
            node_id: format!("bench-node-{i:04}"),
            cluster: "bench".into(),
            environment: "prod".into(),
            tenant: None,
            filter_name: "portcullis".into(),
        };
        rt.spawn(run_ecds(cfg, apply.clone(), stop_rx.clone()));
    }
    let all_acked = |version: &str| {
        let nodes = state.nodes();
        nodes.len() == CLIENTS
            && nodes
                .iter()
                .all(|n| n.acked_version.as_deref() == Some(version))
    };
    let current = || {
        state
            .snapshot("prod")
            .map(|s| s.version.clone())
            .unwrap_or_default()
    };
    let wait = |version: &str, deadline: Duration| {
        let start = Instant::now();
        while !all_acked(version) {
            assert!(
                start.elapsed() < deadline,
                "not every client acked {version} within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    wait(&current(), Duration::from_secs(120));

    let mut generation = 0;
    let mut g = c.benchmark_group("change_to_ack");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("ecds_delta_1000_clients", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = current();
                generation += 1;
                let start = Instant::now();
                touch(&dir, generation);
                let version = loop {
                    let v = current();
                    if v != before {
                        break v;
                    }
                    assert!(start.elapsed() < Duration::from_secs(60), "no new version");
                    std::thread::sleep(Duration::from_millis(1));
                };
                wait(&version, Duration::from_secs(120));
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    let _ = stop_tx.send(true);
    rt.block_on(running.shutdown());
}

criterion_group!(benches, bundle_compile, change_to_ack);
criterion_main!(benches);

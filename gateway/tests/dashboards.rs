//! Every metric a dashboard panel or an alert rule uses must be one the
//! gateway really exports: scrape a running cluster-mode gateway (after some traffic)
//! and compare with every `gateway_…` name in `dashboards/`.

mod support;

use std::path::Path;

use stomp::Command;
use support::{
    http_get,
    metric_names::{exported_names, referenced_names},
    start_in_cluster, Client,
};

fn files_under(dir: &Path, extensions: &[&str], out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, extensions, out);
        } else if extensions
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
        {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_only_exported_metrics() {
    // A cluster member, so the Redis series are exported too.
    let redis = support::redis::RedisServer::start().await;
    let gw = start_in_cluster(&["--redis-url", &redis.url(), "--presence-prefix", "/topic/"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/dash", "client-individual").await;
    c.send(Command::Send, &[("destination", "/topic/dash")], b"x")
        .await;
    let m = c.frame().await;
    c.send(Command::Nack, &[("id", m.header("ack").unwrap())], b"")
        .await;
    let exported = exported_names(&http_get(gw.addr, "/metrics", "").await);
    assert!(
        exported.contains("gateway_connections"),
        "scrape worked: {exported:?}"
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut files = Vec::new();
    files_under(&dir, &["json", "yml", "yaml"], &mut files);
    let dashboards = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .count();
    assert!(
        dashboards >= 1 && files.len() > dashboards,
        "dashboards and alert rules present: {files:?}"
    );

    let mut unknown = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for name in referenced_names(&text, "gateway_") {
            if !exported.contains(&name) {
                unknown.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics used but not exported:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn name_extraction_finds_identifiers_only() {
    let names = referenced_names(
        r#"rate(gateway_frames_in_total{x="y"}[5m]) / my_gateway_x + gateway_up"#,
        "gateway_",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["gateway_frames_in_total", "gateway_up"]
    );
    let exported = exported_names("# HELP a b\ngateway_a 1\ngateway_b{l=\"1\"} 2\n");
    assert_eq!(
        exported.into_iter().collect::<Vec<_>>(),
        ["gateway_a", "gateway_b"]
    );
}

//! HTTP routes and the WebSocket upgrade.

mod support;

use support::{http_get, start, Client};

#[tokio::test]
async fn healthz_is_200_and_other_paths_404() {
    let gw = start(&[]).await;
    assert!(http_get(gw.addr, "/healthz", "")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(http_get(gw.addr, "/nope", "")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(
        http_get(gw.addr, "/", "").await.starts_with("HTTP/1.1 200"),
        "demo page"
    );
}

#[tokio::test]
async fn ws_without_upgrade_headers_is_rejected() {
    let gw = start(&[]).await;
    assert!(http_get(gw.addr, "/ws", "")
        .await
        .starts_with("HTTP/1.1 400"));
    let bad_version = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 8\r\n";
    assert!(http_get(gw.addr, "/ws", bad_version)
        .await
        .starts_with("HTTP/1.1 400"));
}

#[tokio::test]
async fn best_offered_stomp_subprotocol_is_selected() {
    let gw = start(&[]).await;
    let c = Client::open(gw.addr, &["v10.stomp", "v12.stomp", "v11.stomp"]).await;
    assert_eq!(c.protocol.as_deref(), Some("v12.stomp"));
    let c = Client::open(gw.addr, &["v11.stomp", "v10.stomp"]).await;
    assert_eq!(c.protocol.as_deref(), Some("v11.stomp"));
    let c = Client::open(gw.addr, &["mqtt"]).await;
    assert_eq!(c.protocol, None, "unknown subprotocols are not echoed");
}

#[tokio::test]
async fn client_offering_no_subprotocol_is_accepted() {
    let gw = start(&[]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    assert_eq!(c.protocol, None);
    let reply = c.connect(&[("accept-version", "1.2")]).await;
    assert_eq!(reply.header("version"), Some("1.2"));
}

/// Sends a request with any method and returns the response head.
async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(support::WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn head_works_like_get_and_other_methods_are_404() {
    let gw = start(&[]).await;
    let head = request(gw.addr, "HEAD", "/").await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/html"),
        "{head}"
    );
    assert!(!head.contains("<html"), "HEAD carries no body");
    assert!(request(gw.addr, "POST", "/healthz")
        .await
        .starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn readyz_reports_ready_with_json() {
    let gw = start(&[]).await;
    let r = http_get(gw.addr, "/readyz", "").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(r#""status":"ready""#), "{r}");
}

/// A node without Redis is a fleet of one: `/fleet` shows itself and a
/// rebalancer that is off (nothing to balance against).
#[tokio::test]
async fn fleet_of_an_embedded_node_is_itself_and_never_sheds() {
    let gw = start(&["--node-id", "solo", "--fleet-report-ms", "20"]).await;
    let _a = Client::connected(gw.addr).await;
    let mut body = String::new();
    for _ in 0..100 {
        let r = http_get(gw.addr, "/fleet", "").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        body = r.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        if body.contains(r#""connections":1,"capacity""#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fleet["node"], "solo");
    assert_eq!(fleet["state"], "off");
    assert_eq!(fleet["nodes"], 1);
    assert_eq!(fleet["members"][0]["node"], "solo");
    assert_eq!(fleet["members"][0]["connections"], 1, "{body}");
    assert_eq!(fleet["spread"], 0);
}

#[tokio::test]
async fn connection_cap_refuses_upgrades_with_503_and_fails_readiness() {
    let gw = start(&["--max-connections", "2"]).await;
    let _a = Client::connected(gw.addr).await;
    let _b = Client::connected(gw.addr).await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let refused = http_get(gw.addr, "/ws", upgrade).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after"),
        "{refused}"
    );
    let r = http_get(gw.addr, "/readyz", "").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("at_capacity"),
        "{r}"
    );
    assert_eq!(
        gw.node
            .metrics()
            .upgrades_rejected(gateway::metrics::UpgradeRejection::Capacity),
        1
    );
}

#[tokio::test]
async fn metrics_exposes_counters_that_follow_traffic() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/m", "auto").await;
    c.send(stomp::Command::Send, &[("destination", "/topic/m")], b"x")
        .await;
    c.frame().await;
    let m = http_get(gw.addr, "/metrics", "").await;
    for line in [
        "gateway_connections 1",
        "gateway_subscriptions 1",
        "gateway_destinations 1",
        "gateway_messages_published_total 1",
        "gateway_deliveries_total 1",
        r#"gateway_frames_in_total{command="SUBSCRIBE"} 1"#,
        r#"gateway_frames_out_total{command="MESSAGE"} 1"#,
        r#"gateway_frames_out_total{command="RECEIPT"} 1"#,
        "gateway_delivery_latency_seconds_count 1",
        "gateway_draining 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
}

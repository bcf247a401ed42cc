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
    assert!(http_get(gw.addr, "/", "").await.starts_with("HTTP/1.1 404"));
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

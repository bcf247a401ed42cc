//! Fan-out over real sockets: ordering to many subscribers, and a slow
//! consumer that is cut off without costing the others a message.

mod support;

use std::time::Duration;

use gateway::metrics::CloseReason;
use stomp::Command;
use support::{start, Client};

#[tokio::test]
async fn every_subscriber_gets_every_message_in_publish_order() {
    let gw = start(&[]).await;
    let mut subscribers = Vec::new();
    for i in 0..40 {
        let mut c = Client::connected(gw.addr).await;
        c.subscribe(&format!("s{i}"), "/topic/order", "auto").await;
        subscribers.push(c);
    }
    let mut publisher = Client::connected(gw.addr).await;
    for n in 0..300 {
        publisher
            .send(
                Command::Send,
                &[("destination", "/topic/order")],
                n.to_string().as_bytes(),
            )
            .await;
    }
    for (i, s) in subscribers.iter_mut().enumerate() {
        for n in 0..300 {
            let m = s.frame().await;
            assert_eq!(m.body.as_ref(), n.to_string().as_bytes(), "subscriber {i}");
            assert_eq!(m.header("subscription"), Some(format!("s{i}").as_str()));
        }
    }
    assert_eq!(gw.node.metrics().deliveries_written.get(), 40 * 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_and_others_lose_nothing() {
    // The publisher sends 3,000 frames as fast as receipts allow: past the
    // default frame-rate burst, which this test is not about.
    let gw = start(&["--outbound-queue", "256", "--max-frame-rate", "0"]).await;
    let mut slow = Client::open_with_receive_buffer(gw.addr, &[], Some(4096)).await;
    slow.connect(&[("accept-version", "1.2")]).await;
    slow.subscribe("slow", "/topic/firehose", "auto").await;
    let mut fast = Client::connected(gw.addr).await;
    fast.subscribe("fast", "/topic/firehose", "auto").await;
    let mut publisher = Client::connected(gw.addr).await;

    let body = vec![b'x'; 4096];
    let total = 3000;
    let reader = tokio::spawn(async move {
        for n in 0..total {
            let m = fast.frame().await;
            assert_eq!(
                m.header("x-seq"),
                Some(n.to_string().as_str()),
                "fast subscriber lost or reordered: {:?}",
                m.headers
            );
        }
    });
    // The publisher waits for a receipt every 50 messages, as a real client
    // with flow control would, so only the consumer that stopped reading
    // falls behind.
    publisher
        .publish_numbered("/topic/firehose", total, |_| body.clone())
        .await;
    reader
        .await
        .expect("fast subscriber received everything in order");

    // The slow one gets what fit, then the ERROR, then the close.
    let (received, error) = slow.frames_until_error().await;
    assert!(
        received < total,
        "the slow consumer was cut off early ({received} messages)"
    );
    assert_eq!(error.header("message"), Some("slow consumer"));
    slow.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_that_never_reads_again_is_cut_off() {
    let gw = start(&[
        "--outbound-queue",
        "64",
        "--heartbeat-send-ms",
        "0",
        "--heartbeat-recv-ms",
        "0",
    ])
    .await;
    let mut dead = Client::open_with_receive_buffer(gw.addr, &[], Some(4096)).await;
    dead.connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
        .await;
    dead.subscribe("d", "/topic/dead", "auto").await;
    let mut publisher = Client::connected(gw.addr).await;
    let body = vec![b'x'; 16 * 1024];
    for n in 0..1000 {
        let mut headers = vec![("destination", "/topic/dead")];
        if n % 50 == 49 {
            headers.push(("receipt", "batch"));
        }
        publisher.send(Command::Send, &headers, &body).await;
        if n % 50 == 49 {
            assert_eq!(publisher.frame().await.command, Command::Receipt);
        }
    }
    // No heart-beats and no reads: only the overflow can end it, after the
    // bounded flush wait for its ERROR.
    for _ in 0..100 {
        if gw.node.metrics().closed(CloseReason::SlowConsumer) == 1 {
            assert_eq!(gw.node.registry().subscription_count(), 0);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a consumer that stopped reading was never disconnected");
}

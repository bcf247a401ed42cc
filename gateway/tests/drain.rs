//! Graceful drain and zero-downtime restart, against the real binary:
//! SIGTERM fails readiness at once, keeps serving for the drain delay, then
//! closes every connection (queued messages first, then ERROR "server
//! restarting") spread over the drain window, and exits 0. A second process
//! can bind the same port meanwhile (SO_REUSEPORT) so no new connection is
//! refused during a restart.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use stomp::Command;
use support::{
    http_get,
    process::{free_port, signal, spawn_gateway, wait_exit},
    Client,
};
use tokio::time::{sleep, timeout, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_client_and_exits_zero() {
    let addr = free_port();
    let delay = Duration::from_millis(800);
    let window = Duration::from_millis(1200);
    let mut child = spawn_gateway(
        addr,
        &[
            "--drain-delay-ms",
            "800",
            "--drain-window-ms",
            "1200",
            "--heartbeat-send-ms",
            "0",
        ],
    )
    .await;

    let subscribers = 30;
    let mut readers = Vec::new();
    let signalled: Arc<Mutex<Option<Instant>>> = Arc::default();
    for i in 0..subscribers {
        let mut c = Client::connected(addr).await;
        c.subscribe(&format!("s{i}"), "/topic/drain", "auto").await;
        readers.push(tokio::spawn(async move {
            let mut bodies = Vec::new();
            loop {
                let f = c.frame().await;
                if f.command == Command::Error {
                    let at = Instant::now();
                    c.expect_closed().await;
                    return (bodies, f.header("message").map(str::to_string), at);
                }
                bodies.push(String::from_utf8(f.body.to_vec()).unwrap());
            }
        }));
    }

    // Publish with a receipt per message, before and during the drain delay.
    let mut publisher = Client::connected(addr).await;
    let mut receipted = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(700) {
        if n == 20 {
            signal(&child, "TERM");
            *signalled.lock().unwrap() = Some(Instant::now());
            // Readiness fails as soon as the signal is handled, while the
            // node still serves (the handler runs on the node's own
            // schedule: poll briefly rather than race it).
            let mut ready = http_get(addr, "/readyz", "").await;
            let deadline = Instant::now() + Duration::from_secs(2);
            while !ready.starts_with("HTTP/1.1 503") && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ready = http_get(addr, "/readyz", "").await;
            }
            assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
            assert!(ready.contains(r#""status":"draining""#), "{ready}");
        }
        let body = n.to_string();
        publisher
            .send(
                Command::Send,
                &[("destination", "/topic/drain"), ("receipt", &body)],
                body.as_bytes(),
            )
            .await;
        let r = publisher.frame().await;
        assert_eq!(
            r.command,
            Command::Receipt,
            "publishing during the drain delay works"
        );
        receipted.push(body);
        n += 1;
        sleep(Duration::from_millis(10)).await;
    }
    let signalled = signalled.lock().unwrap().expect("signal sent");
    assert!(receipted.len() > 20);

    let mut closes = Vec::new();
    for reader in readers {
        let (bodies, message, at) = timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.as_deref(), Some("server restarting"));
        assert_eq!(
            bodies, receipted,
            "every message accepted before the close arrived, in order"
        );
        closes.push(at - signalled);
    }
    closes.sort();
    let (first, last) = (closes[0], *closes.last().unwrap());
    assert!(
        first >= delay - Duration::from_millis(50),
        "closed during the drain delay: {first:?}"
    );
    assert!(
        last <= delay + window + Duration::from_millis(500),
        "last close too late: {last:?}"
    );
    assert!(
        last - first >= window / 2,
        "closes not spread over the window: {first:?}..{last:?}"
    );

    let status = wait_exit(&mut child, delay + window + Duration::from_secs(8)).await;
    assert!(status.success(), "exit status {status}");
}

/// Opens a WebSocket and completes CONNECT; any failure is returned.
async fn try_session(addr: SocketAddr) -> Result<(), String> {
    let attempt = async {
        let mut c = Client::open_checked(addr).await?;
        c.send(Command::Connect, &[("accept-version", "1.2")], b"")
            .await;
        match c.next_frame().await {
            Some(f) if f.command == Command::Connected => Ok(()),
            Some(f) => Err(format!("got {f:?}")),
            None => Err("closed before CONNECTED".to_string()),
        }
    };
    timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Linux resets connections still in a SO_REUSEPORT listener's accept queue
/// when it closes, unless `net.ipv4.tcp_migrate_req` is 1 (then they move to
/// the new process's listener). The ansible role sets it on every host;
/// this test sets it the same way (it needs root, as the test command has)
/// and puts the old value back.
struct MigrateRequests(Option<String>);

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

impl MigrateRequests {
    fn enable() -> MigrateRequests {
        let old = std::fs::read_to_string(MIGRATE_REQ)
            .expect("kernel with net.ipv4.tcp_migrate_req (Linux >= 5.14)");
        std::fs::write(MIGRATE_REQ, "1").expect("root can set net.ipv4.tcp_migrate_req");
        MigrateRequests(Some(old))
    }
}

impl Drop for MigrateRequests {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = std::fs::write(MIGRATE_REQ, old.trim());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_port_refuses_no_connection() {
    let _migrate = MigrateRequests::enable();
    let addr = free_port();
    let flags = ["--drain-delay-ms", "300", "--drain-window-ms", "300"];
    let mut old = spawn_gateway(addr, &flags).await;

    let attempts = tokio::spawn(async move {
        let (mut ok, mut failures) = (0, Vec::new());
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            match try_session(addr).await {
                Ok(()) => ok += 1,
                Err(e) => failures.push(e),
            }
            sleep(Duration::from_millis(5)).await;
        }
        (ok, failures)
    });

    sleep(Duration::from_millis(400)).await;
    let new = spawn_gateway(addr, &flags).await;
    sleep(Duration::from_millis(300)).await;
    signal(&old, "TERM");
    let status = wait_exit(&mut old, Duration::from_secs(10)).await;
    assert!(status.success(), "old process exit status {status}");

    let (ok, failures) = attempts.await.unwrap();
    signal(&new, "KILL");
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} sessions opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_exits_at_once() {
    let addr = free_port();
    let mut child = spawn_gateway(addr, &["--drain-delay-ms", "30000"]).await;
    let _client = Client::connected(addr).await;
    signal(&child, "TERM");
    sleep(Duration::from_millis(200)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still draining after the first signal"
    );
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(1));
}

//! `scripts/cluster`: the whole cluster on loopback in one command. The
//! test starts it (debug builds), sends a message through one node to a
//! subscriber on another and through nginx, checks that Prometheus scrapes
//! the gateways, stops it, and checks that nothing is left running.

mod support;

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use stomp::Command as Stomp;
use support::Client;
use tokio::time::{sleep, Instant};

/// Ports base+0 … base+90 as the script uses them.
const OFFSETS: [u16; 9] = [0, 1, 2, 3, 10, 20, 30, 90, 89];

fn free_block() -> u16 {
    for attempt in 0..200u32 {
        let base = 30_000 + ((std::process::id() * 7 + attempt * 97) % 300) as u16 * 100;
        let free = OFFSETS
            .iter()
            .all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free block of ports for the cluster");
}

struct ClusterScript {
    root: PathBuf,
    dir: PathBuf,
    base: u16,
}

impl ClusterScript {
    fn run(&self, command: &str) -> std::process::Output {
        Command::new(self.root.join("scripts/cluster"))
            .arg(command)
            .env("CLUSTER_DIR", &self.dir)
            .env("CLUSTER_PORT_BASE", self.base.to_string())
            .env("CLUSTER_PROFILE", "debug")
            .output()
            .expect("scripts/cluster runs")
    }

    fn port(&self, offset: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + offset))
    }
}

impl Drop for ClusterScript {
    fn drop(&mut self) {
        let _ = self.run("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_dir(dir.join("pids"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_starts_the_cluster_and_stop_leaves_nothing_running() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cluster = ClusterScript {
        dir: std::env::temp_dir().join(format!("cluster-script-{}", std::process::id())),
        root,
        base: free_block(),
    };
    let started = cluster.run("start");
    assert!(
        started.status.success(),
        "start failed:\n{}\n{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    let printed = String::from_utf8_lossy(&started.stdout);
    assert!(
        printed.contains(&format!("ws://127.0.0.1:{}/ws", cluster.base)),
        "{printed}"
    );
    let running = pids(&cluster.dir);
    assert_eq!(running.len(), 8, "eight processes: {running:?}");

    // Through node a to a subscriber on node c, and to one behind nginx.
    let mut on_c = Client::connected(cluster.port(3)).await;
    on_c.subscribe("s", "/topic/chat.lobby", "auto").await;
    let mut via_nginx = Client::connected(cluster.port(0)).await;
    via_nginx.subscribe("s", "/topic/chat.lobby", "auto").await;
    let mut on_a = Client::connected(cluster.port(1)).await;
    on_a.send(
        Stomp::Send,
        &[("destination", "/topic/chat.lobby"), ("receipt", "r")],
        b"hello cluster",
    )
    .await;
    assert_eq!(on_a.frame().await.command, Stomp::Receipt);
    for subscriber in [&mut on_c, &mut via_nginx] {
        let m = subscriber.frame().await;
        assert_eq!(&m.body[..], b"hello cluster", "{m:?}");
        assert!(m.header("message-id").unwrap().starts_with("a-"));
    }

    // Prometheus scrapes the gateways' series.
    let prometheus = cluster.port(90);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = support::http_get(
            prometheus,
            "/api/v1/query?query=count(gateway_connections)",
            "",
        )
        .await;
        if response.contains("\"value\":[") && response.contains("\"3\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has the three gateways' series: {response}"
        );
        sleep(Duration::from_millis(500)).await;
    }

    let stopped = cluster.run("stop");
    assert!(stopped.status.success());
    assert!(
        !cluster.run("status").status.success(),
        "status says stopped"
    );
    sleep(Duration::from_millis(200)).await;
    let left: Vec<i32> = running.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}

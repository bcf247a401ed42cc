//! A real `redis-server` on a free loopback port, for cluster tests.
//! Killed when dropped. `scripts/test` installs redis-server if missing.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where a persistent server keeps its append-only file (`None`: it
    /// keeps nothing, and a restart comes back empty).
    data: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_with(None).await
    }

    /// A server that writes every command to its append-only file before
    /// answering or publishing (`appendfsync always`), so a kill and
    /// restart come back with every stream and counter, as a managed Redis
    /// does: what it delivered to one node is still in its streams for the
    /// others.
    pub async fn start_persistent() -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "gateway-redis-aof-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        RedisServer::start_with(Some(dir)).await
    }

    async fn start_with(data: Option<std::path::PathBuf>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            port,
            child: None,
            data,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let mut command = redis_server(self.port);
        if let Some(dir) = &self.data {
            command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (an outage).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with no publish in flight: the test's publishers
    /// pause while `paused` is set; what they sent settles, the server
    /// dies, and they go on (into the outage). A pipeline Redis runs but
    /// dies before answering is another fault, one no node can settle: its
    /// node delivers it locally as well (a duplicate with the same
    /// message-id or, on a Redis that loses its data, the only copy), as
    /// docs/cluster.md says.
    pub async fn kill_between_publishes(&mut self, paused: &std::sync::atomic::AtomicBool) {
        use std::sync::atomic::Ordering;
        paused.store(true, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.kill();
        paused.store(false, Ordering::Release);
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.data {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A local Redis Cluster of `n` primaries (no replicas), each on a free
/// loopback port with its files in a temporary directory.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub async fn start(n: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "gateway-redis-cluster-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = redis_server(port)
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                ])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            let server = RedisServer {
                port,
                child: Some(child),
                data: None,
            };
            for _ in 0..100 {
                if server.cli(&["PING"]).trim() == "PONG" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            nodes.push(server);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..200 {
            if nodes
                .iter()
                .all(|s| s.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return RedisCluster { nodes, dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis cluster did not reach cluster_state:ok");
    }

    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Sum of `PUBSUB SHARDNUMSUB channel` over the shards.
    pub fn shard_subscribers(&self, channel: &str) -> u32 {
        self.nodes
            .iter()
            .map(|s| {
                let out = s.cli(&["PUBSUB", "SHARDNUMSUB", channel]);
                out.lines()
                    .nth(1)
                    .and_then(|l| l.trim().parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// `redis-server` on a loopback port, without persistence.
fn redis_server(port: u16) -> Command {
    let mut command = Command::new("redis-server");
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    command
}

//! Shared helpers for the api's tests: real PostgreSQL and Redis servers,
//! the api binary as a child process, an in-process gateway, a small HTTP
//! client. Every wait is bounded.

#![allow(dead_code)]

#[path = "../../../gateway/tests/support/metric_names.rs"]
pub mod metric_names;
pub mod postgres;
#[path = "../../../gateway/tests/support/redis.rs"]
pub mod redis;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use loadtest::client::{Client, Target};
use serde_json::Value;
use stomp::{Command as Stomp, Frame};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout, Instant},
};

pub use postgres::{free_port, Postgres};
pub use redis::RedisServer;

pub const WAIT: Duration = Duration::from_secs(20);

/// The api binary, running.
pub struct ApiProcess {
    pub addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl ApiProcess {
    /// Starts `api` against `pg` and `redis` with extra flags and waits
    /// until it answers `/healthz`.
    pub async fn start(pg: &Postgres, redis: &RedisServer, extra: &[&str]) -> ApiProcess {
        ApiProcess::start_with_env(pg, redis, extra, &[]).await
    }

    /// [`ApiProcess::start`] with environment variables (AWS credentials).
    pub async fn start_with_env(
        pg: &Postgres,
        redis: &RedisServer,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ApiProcess {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--database-url".into(),
            pg.url(),
            "--redis-url".into(),
            redis.url(),
            "--database-timeout-ms".into(),
            "1000".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut api = ApiProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        api.spawn().await;
        api
    }

    async fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_api"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("api binary runs");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok((200, _)) = try_http(self.addr, "GET", "/healthz", &[], None).await {
                return;
            }
            sleep(Duration::from_millis(25)).await;
        }
        panic!("api did not start");
    }

    /// SIGKILL: the process dies wherever it was.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns its status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()?.code()
    }

    /// Starts it again with the same flags (and port).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// One metric's value from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http(self.addr, "GET", "/metrics", &[], None).await;
        let text = body.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP/1.1 request; the reply's status and body (JSON when it parses,
/// else a string).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, Value) {
    timeout(WAIT, try_http(addr, method, path, headers, body))
        .await
        .expect("http request timed out")
        .expect("http request")
}

async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let value = serde_json::from_str(&rest).unwrap_or(Value::String(rest));
    Ok((status, value))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// The messages path of `destination`, percent-encoded as one segment.
pub fn path_of(destination: &str) -> String {
    let mut encoded = String::new();
    for b in destination.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/v1/destinations/{encoded}/messages")
}

/// An in-process gateway in cluster mode with `durable` destinations.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub node: Arc<gateway::Node>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn gateway(redis: &RedisServer, durable: &str, extra: &[&str]) -> TestGateway {
    let url = redis.url();
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        &url,
        "--durable",
        durable,
        "--max-frame-rate",
        "0",
    ];
    args.extend_from_slice(extra);
    let config = gateway::Config::load_from(args).expect("gateway config");
    let gw = gateway::Gateway::bind(config).await.expect("bind gateway");
    let addr = gw.local_addr();
    let node = gw.node().clone();
    let task = gw.spawn();
    for _ in 0..250 {
        if node.broker().is_available() {
            return TestGateway { addr, node, task };
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway did not connect to redis");
}

/// A connected STOMP client of `gw`.
pub async fn stomp_client(gw: &TestGateway) -> Client {
    let target = Target::parse(&format!("ws://{}/ws", gw.addr)).unwrap();
    Client::connect(&target, None).await.expect("stomp connect")
}

/// Sends `count` messages to `destination`, header `x-n` numbering them
/// from `first`, with a RECEIPT on the last so all are accepted on return.
pub async fn send_numbered(client: &mut Client, destination: &str, first: usize, count: usize) {
    for n in first..first + count {
        let mut frame = Frame::new(Stomp::Send)
            .with_header("destination", destination)
            .with_header("x-n", n.to_string().as_str());
        if n + 1 == first + count {
            frame = frame.with_header("receipt", "sent");
        }
        frame.body = format!("message {n}").into();
        client.send(&frame).await.expect("send");
    }
    loop {
        let f = client.frame_within(WAIT).await.expect("receipt");
        if f.command == Stomp::Receipt {
            return;
        }
    }
}

/// Rows stored for `destination`.
pub async fn stored(db: &tokio_postgres::Client, destination: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM messages WHERE destination = $1",
        &[&destination],
    )
    .await
    .map_or(0, |r| r.get(0))
}

/// Polls `stored` until it reaches `count` (or the wait ends); returns the
/// last count seen.
pub async fn wait_stored(db: &tokio_postgres::Client, destination: &str, count: i64) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = stored(db, destination).await;
        if n >= count || Instant::now() >= deadline {
            return n;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

//! Deliveries per second through real sockets: one node with the embedded
//! broker versus two nodes bridged by a local redis-server, with the same
//! load (publishers on node 1, subscribers spread over the nodes).
//!
//! `cargo bench -p benches --bench cluster_throughput` (needs redis-server
//! on PATH for the cluster case; `scripts/install-redis` installs it). In
//! test mode (`cargo test --all-targets`) it runs a tiny load once.

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::{Buf, BytesMut};
use gateway::{Config, Gateway};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A minimal STOMP-over-WebSocket client: enough to publish and count.
struct Ws {
    stream: TcpStream,
    buf: BytesMut,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> Ws {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            stream.read_buf(&mut buf).await.unwrap();
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.advance(i + 4);
                break;
            }
        }
        let mut ws = Ws { stream, buf };
        ws.send(b"CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0")
            .await;
        ws.next().await;
        ws
    }

    async fn send(&mut self, payload: &[u8]) {
        let mut frame = vec![0x81];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]); // zero mask: payload unchanged
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next WebSocket message's payload length (its content is not needed).
    async fn next(&mut self) -> usize {
        loop {
            if self.buf.len() >= 2 {
                let (len, head) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= head + len {
                    self.buf.advance(head + len);
                    return len;
                }
            }
            assert!(
                self.stream.read_buf(&mut self.buf).await.unwrap() > 0,
                "closed"
            );
        }
    }
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_redis() -> Option<(Redis, String)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some((Redis(child), format!("redis://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn start_node(redis: Option<&str>) -> SocketAddr {
    let mut args = vec![
        "gateway".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--outbound-queue".into(),
        "65536".into(),
    ];
    if let Some(url) = redis {
        args.extend(["--redis-url".into(), url.to_string()]);
    }
    let gateway = Gateway::bind(Config::load_from(args).unwrap())
        .await
        .unwrap();
    let addr = gateway.local_addr();
    let node = gateway.node().clone();
    gateway.spawn();
    if redis.is_some() {
        while !node.broker.is_available() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    addr
}

/// Publishes `messages` from `publishers` clients on `nodes[0]` to
/// `subscribers` clients spread over `nodes`; returns deliveries per second.
async fn run(nodes: &[SocketAddr], subscribers: usize, publishers: usize, messages: usize) -> f64 {
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let mut ws = Ws::connect(nodes[i % nodes.len()]).await;
        ws.send(b"SUBSCRIBE\nid:0\ndestination:/topic/bench\nreceipt:r\n\n\0")
            .await;
        ws.next().await;
        subs.push(ws);
    }
    let started = Instant::now();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for _ in 0..messages {
                    ws.next().await;
                }
            })
        })
        .collect();
    let per_publisher = messages / publishers;
    let writers: Vec<_> = (0..publishers)
        .map(|_| {
            let addr = nodes[0];
            tokio::spawn(async move {
                let mut ws = Ws::connect(addr).await;
                let frame = b"SEND\ndestination:/topic/bench\ncontent-type:application/json\n\n{\"user\":\"alice\",\"text\":\"hello everyone, how is it going?\"}\0";
                for _ in 0..per_publisher {
                    ws.send(frame).await;
                }
                ws
            })
        })
        .collect();
    let mut keep = Vec::new();
    for w in writers {
        keep.push(w.await.unwrap());
    }
    for r in readers {
        r.await.unwrap();
    }
    (subscribers * messages) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (subscribers, publishers, messages) = if quick { (4, 1, 50) } else { (200, 4, 20_000) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let embedded = start_node(None).await;
        let rate = run(&[embedded], subscribers, publishers, messages).await;
        println!("embedded, 1 node: {subscribers} subscribers x {messages} messages: {rate:.0} deliveries/s");
        match start_redis().await {
            Some((_redis, url)) => {
                let nodes = [start_node(Some(&url)).await, start_node(Some(&url)).await];
                let rate = run(&nodes, subscribers, publishers, messages).await;
                println!("redis, 2 nodes: {subscribers} subscribers x {messages} messages: {rate:.0} deliveries/s");
            }
            None => println!("redis-server not found: cluster case skipped"),
        }
    });
}

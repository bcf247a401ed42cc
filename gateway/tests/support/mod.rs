//! Shared helpers for the gateway's integration tests: an in-process gateway
//! on a free loopback port, and a raw STOMP-over-WebSocket client that can
//! also send malformed bytes. Every wait has a timeout so no test can hang.

#![allow(dead_code)]

pub mod metric_names;
pub mod nginx;
pub mod pki;
pub mod process;
pub mod recovery;
pub mod redis;

use std::{net::SocketAddr, time::Duration};

use bytes::{Buf, BytesMut};
use gateway::{Config, Gateway, Node};
use std::sync::Arc;
use stomp::{Command, Decoder, Frame, Item, Limits, Version};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::timeout,
};

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestGateway {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    task: JoinHandle<()>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a gateway on 127.0.0.1:0 with extra flags.
pub async fn start(flags: &[&str]) -> TestGateway {
    let mut args = vec!["gateway", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    let config = Config::load_from(args).expect("valid test config");
    let gateway = Gateway::bind(config).await.expect("bind");
    let addr = gateway.local_addr();
    let node = gateway.node().clone();
    TestGateway {
        addr,
        node,
        task: gateway.spawn(),
    }
}

/// Starts a cluster member (`flags` name its `--redis-url`) and waits until
/// both of its Redis connections are up.
pub async fn start_in_cluster(flags: &[&str]) -> TestGateway {
    let gw = start(flags).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !gw.node.broker().is_available() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not connect to redis ({flags:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw
}

pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// One WebSocket message from the server.
#[derive(Debug, Clone)]
pub struct WsMessage {
    pub opcode: u8,
    /// Inflated when the server compressed it (permessage-deflate).
    pub payload: Vec<u8>,
    /// The server sent it compressed (RSV1).
    pub compressed: bool,
}

/// Inflates a permessage-deflate payload as RFC 7692 says: with the
/// `00 00 ff ff` the sender removed appended, each message on its own.
pub fn inflate_message(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 64);
    let mut inflater = flate2::Decompress::new(false);
    loop {
        let consumed = inflater.total_in() as usize;
        out.reserve(64 * 1024);
        inflater
            .decompress_vec(&input[consumed..], &mut out, flate2::FlushDecompress::Sync)
            .expect("the server sent valid deflate data");
        if inflater.total_in() as usize == input.len() && out.capacity() > out.len() {
            return out;
        }
    }
}

/// A client's byte stream: plain TCP or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    stream: Box<dyn Io>,
    buf: BytesMut,
    decoder: Decoder,
    /// STOMP bytes received but not yet decoded.
    stomp: BytesMut,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// WebSocket messages received, in order (for opcode checks).
    pub messages: Vec<WsMessage>,
    /// The HTTP response head of the upgrade (status line and headers).
    pub response_head: String,
    /// When bytes last arrived (a peer's heart-beats keep it fresh).
    last_data: tokio::time::Instant,
    /// A write failed: the server is gone.
    write_failed: bool,
}

/// Performs an HTTP request and returns the raw response head.
pub async fn http_get(addr: SocketAddr, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("http timeout")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

impl Client {
    /// Opens a WebSocket to `/ws` offering `protocols`.
    pub async fn open(addr: SocketAddr, protocols: &[&str]) -> Client {
        Client::open_with_receive_buffer(addr, protocols, None).await
    }

    /// Like [`Client::open`], with a capped kernel receive buffer so a test
    /// can make this client a slow reader without sending gigabytes.
    pub async fn open_with_receive_buffer(
        addr: SocketAddr,
        protocols: &[&str],
        receive_buffer: Option<u32>,
    ) -> Client {
        let offered = protocols.join(", ");
        let mut headers = Vec::new();
        if !protocols.is_empty() {
            headers.push(("Sec-WebSocket-Protocol", offered.as_str()));
        }
        Client::open_slow(addr, &headers, receive_buffer).await
    }

    /// Opens a WebSocket whose upgrade carries `headers`, with the socket's
    /// receive buffer set to `receive_buffer` bytes (a consumer that
    /// stops reading fills it soon).
    pub async fn open_slow(
        addr: SocketAddr,
        headers: &[(&str, &str)],
        receive_buffer: Option<u32>,
    ) -> Client {
        match timeout(WAIT, Client::try_open(addr, headers, receive_buffer)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("upgrade refused: {e}"),
            Err(_) => panic!("upgrade timeout"),
        }
    }

    /// Like [`Client::open`] but returns failures instead of panicking.
    pub async fn open_checked(addr: SocketAddr) -> Result<Client, String> {
        Client::try_open(addr, &[], None).await
    }

    /// Connects, upgrades, and returns the client or why it failed.
    async fn try_open(
        addr: SocketAddr,
        headers: &[(&str, &str)],
        receive_buffer: Option<u32>,
    ) -> Result<Client, String> {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        if let Some(size) = receive_buffer {
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| format!("rcvbuf: {e}"))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Client::upgrade(Box::new(stream), &addr.to_string(), headers).await
    }

    /// Opens a WebSocket whose upgrade request carries extra `headers`
    /// (Origin, Authorization, X-Forwarded-For…); `Err` holds the HTTP
    /// response head when the server refused.
    pub async fn open_with_headers(
        addr: SocketAddr,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        timeout(
            WAIT,
            Client::upgrade(Box::new(stream), &addr.to_string(), headers),
        )
        .await
        .map_err(|_| "upgrade timeout".to_string())?
    }

    /// Opens a STOMP 1.2 WebSocket as a browser behind a sticky load
    /// balancer would: sending cookie `name` when the client has a value.
    pub async fn open_sticky(
        via: SocketAddr,
        name: &str,
        value: Option<&str>,
    ) -> Result<Client, String> {
        let cookie = value.map(|v| format!("{name}={v}"));
        let mut headers = vec![("Sec-WebSocket-Protocol", "v12.stomp")];
        if let Some(c) = &cookie {
            headers.push(("Cookie", c));
        }
        Client::open_with_headers(via, &headers).await
    }

    /// Sends a STOMP 1.2 CONNECT without heart-beats, presenting a resume
    /// token and the client's own positions when it has them.
    pub async fn send_resume_connect(&mut self, token: Option<&str>, positions: Option<&str>) {
        let mut connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("heart-beat", "0,0");
        if let Some(t) = token {
            connect = connect.with_header("resume-token", t);
        }
        if let Some(p) = positions {
            connect = connect.with_header("resume-positions", p);
        }
        self.send_frame(&connect).await;
    }

    /// The value the upgrade response set for cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.response_head.lines().find_map(|l| {
            let (header, value) = l.split_once(':')?;
            if !header.eq_ignore_ascii_case("set-cookie") {
                return None;
            }
            let (n, v) = value.trim().split(';').next()?.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }

    /// Sends the upgrade request over `stream` and reads the response.
    pub async fn upgrade(
        mut stream: Box<dyn Io>,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let mut req = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed during upgrade".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head);
        }
        let protocol = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("sec-websocket-protocol: ")
                    .or_else(|| l.strip_prefix("Sec-WebSocket-Protocol: "))
            })
            .map(str::to_string);
        buf.advance(head_end);
        Ok(Client {
            stream,
            buf,
            decoder: Decoder::new(Limits {
                max_frame_bytes: 1 << 24,
                max_headers: 1000,
                max_header_line: 1 << 16,
            }),
            stomp: BytesMut::new(),
            protocol,
            messages: Vec::new(),
            response_head: head,
            last_data: tokio::time::Instant::now(),
            write_failed: false,
        })
    }

    /// Opens a WebSocket and completes a STOMP 1.2 CONNECT without heart-beats.
    pub async fn connected(addr: SocketAddr) -> Client {
        let mut c = Client::open(addr, &["v12.stomp"]).await;
        let reply = c
            .connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
            .await;
        assert_eq!(reply.command, Command::Connected, "{reply:?}");
        c
    }

    /// Sends CONNECT with `headers` and returns the reply frame.
    pub async fn connect(&mut self, headers: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new(Command::Connect);
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        self.send_frame(&f).await;
        self.frame().await
    }

    /// Sends one masked WebSocket frame.
    pub async fn send_ws(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mask = [0x5a, 0x13, 0xc4, 0x7e];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // The server may already have closed (error tests): remember write
        // errors rather than fail.
        if self.stream.write_all(&out).await.is_err() {
            self.write_failed = true;
        }
    }

    /// Whether a write failed (the server closed or died).
    pub fn is_closed(&self) -> bool {
        self.write_failed
    }

    /// How long since bytes last arrived.
    pub fn idle_for(&self) -> Duration {
        self.last_data.elapsed()
    }

    /// Writes `bytes` to the socket as they are (hand-made WebSocket frames).
    pub async fn send_raw_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends raw STOMP bytes in one text WebSocket message.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send_ws(true, OP_TEXT, bytes).await;
    }

    pub async fn send_frame(&mut self, frame: &Frame) {
        let bytes = frame.to_bytes(Version::V1_2);
        self.send_raw(&bytes).await;
    }

    /// Builds and sends a frame from a command and headers.
    pub async fn send(&mut self, command: Command, headers: &[(&str, &str)], body: &[u8]) {
        let mut f = Frame::new(command).with_body(body.to_vec());
        for (k, v) in headers {
            f = f.with_header(*k, *v);
        }
        self.send_frame(&f).await;
    }

    /// The next WebSocket message; `None` when the connection closed.
    pub async fn message(&mut self) -> Option<WsMessage> {
        self.message_within(WAIT)
            .await
            .expect("timed out waiting for a websocket message")
    }

    /// Reads the next WebSocket message and returns its payload length
    /// without keeping it (benchmarks that receive millions of messages).
    pub async fn skip_message(&mut self) -> usize {
        loop {
            if let Some(m) = self.parse_message() {
                return m.payload.len();
            }
            let read = timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("timed out waiting for a websocket message");
            assert!(read.expect("read") > 0, "connection closed");
        }
    }

    /// Like [`Client::message`] but with a caller-chosen wait; `Err` on timeout.
    pub async fn message_within(&mut self, wait: Duration) -> Result<Option<WsMessage>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.parse_message() {
                self.messages.push(m.clone());
                return Ok(Some(m));
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => self.last_data = tokio::time::Instant::now(),
            }
        }
    }

    fn parse_message(&mut self) -> Option<WsMessage> {
        if self.buf.len() < 2 {
            return None;
        }
        assert_eq!(self.buf[1] & 0x80, 0, "server frames must not be masked");
        let (len, head) = match self.buf[1] & 0x7f {
            126 if self.buf.len() >= 4 => {
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 if self.buf.len() >= 10 => (
                u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if self.buf.len() < head + len {
            return None;
        }
        let opcode = self.buf[0] & 0x0f;
        assert!(
            self.buf[0] & 0x80 != 0,
            "server sends unfragmented messages"
        );
        let compressed = self.buf[0] & 0x40 != 0;
        self.buf.advance(head);
        let mut payload = self.buf.split_to(len).to_vec();
        if compressed {
            payload = inflate_message(&payload);
        }
        Some(WsMessage {
            opcode,
            payload,
            compressed,
        })
    }

    /// Publishes `total` messages to `destination`, each with an `x-seq`
    /// header (0, 1, …) and `body(n)`, waiting for a receipt after every
    /// 50, as a client with flow control would: only a consumer that
    /// stopped reading falls behind.
    pub async fn publish_numbered(
        &mut self,
        destination: &str,
        total: u32,
        body: impl Fn(u32) -> Vec<u8>,
    ) {
        for n in 0..total {
            let seq = n.to_string();
            let mut headers = vec![("destination", destination), ("x-seq", seq.as_str())];
            if n % 50 == 49 {
                headers.push(("receipt", "batch"));
            }
            self.send(Command::Send, &headers, &body(n)).await;
            if n % 50 == 49 {
                assert_eq!(self.frame().await.command, Command::Receipt);
            }
        }
    }

    /// Reads frames up to the first ERROR: how many came before it, and
    /// the ERROR.
    pub async fn frames_until_error(&mut self) -> (u32, Frame) {
        let mut before = 0;
        loop {
            let f = self.frame().await;
            if f.command == Command::Error {
                return (before, f);
            }
            before += 1;
        }
    }

    /// The next STOMP frame (heart-beats skipped). Panics on close/timeout.
    pub async fn frame(&mut self) -> Frame {
        self.next_frame()
            .await
            .expect("connection closed while waiting for a frame")
    }

    /// The next STOMP frame, or `None` once the server closed.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        self.next_frame_within(WAIT)
            .await
            .expect("timed out waiting for a websocket message")
    }

    /// Like [`Client::next_frame`] with a caller-chosen wait for each
    /// WebSocket message; `Err` on timeout.
    pub async fn next_frame_within(&mut self, wait: Duration) -> Result<Option<Frame>, ()> {
        loop {
            while let Some(item) = self
                .decoder
                .decode(&mut self.stomp)
                .expect("server sent valid STOMP")
            {
                if let Item::Frame(f) = item {
                    return Ok(Some(f));
                }
            }
            let Some(m) = self.message_within(wait).await? else {
                return Ok(None);
            };
            match m.opcode {
                OP_TEXT | OP_BINARY => self.stomp.extend_from_slice(&m.payload),
                OP_CLOSE => return Ok(None),
                _ => {}
            }
        }
    }

    /// Expects an ERROR frame, then the close; returns the ERROR.
    pub async fn expect_error(&mut self) -> Frame {
        let f = self.frame().await;
        assert_eq!(f.command, Command::Error, "expected ERROR, got {f:?}");
        self.expect_closed().await;
        f
    }

    /// Expects the connection to end (close frame and/or EOF) without
    /// another STOMP frame.
    pub async fn expect_closed(&mut self) {
        loop {
            match self.message().await {
                None => return,
                Some(m) if m.opcode == OP_CLOSE => {
                    // Server closes the TCP connection after its close frame.
                    let rest = self.message().await;
                    assert!(rest.is_none(), "data after close: {rest:?}");
                    return;
                }
                Some(m) if m.opcode == OP_TEXT && m.payload == b"\n" => {}
                Some(m) => panic!(
                    "expected close, got {m:?} ({:?})",
                    String::from_utf8_lossy(&m.payload)
                ),
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        self.send(
            Command::Subscribe,
            &[
                ("id", id),
                ("destination", destination),
                ("ack", ack),
                ("receipt", &format!("sub-{id}")),
            ],
            b"",
        )
        .await;
        let r = self.frame().await;
        assert_eq!(r.command, Command::Receipt, "{r:?}");
        assert_eq!(r.header("receipt-id"), Some(format!("sub-{id}").as_str()));
    }
}

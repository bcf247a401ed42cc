//! One STOMP-over-WebSocket client connection, minimal and fast: the
//! WebSocket upgrade, masked client frames, server frame parsing, and the
//! STOMP codec from the `stomp` crate.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use stomp::{Command, Decoder, Frame, Item, Limits, Version};

use crate::scan::{scan_message, Scan, Stamped};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// Why a connection failed; the variant names the cause in reports.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("upgrade refused: {0}")]
    Upgrade(String),
    #[error("STOMP CONNECT refused: {0}")]
    Refused(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("closed by server")]
    Closed,
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// A short stable name for counting failures by cause.
    pub fn cause(&self) -> &'static str {
        match self {
            ClientError::Connect(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                "no_ephemeral_port"
            }
            ClientError::Connect(e) if e.raw_os_error() == Some(libc::EMFILE) => "fd_limit",
            ClientError::Connect(_) => "connect",
            ClientError::Upgrade(_) => "upgrade",
            ClientError::Refused(_) => "stomp_refused",
            ClientError::Io(_) => "io",
            ClientError::Protocol(_) => "protocol",
            ClientError::Closed => "closed",
            ClientError::Timeout => "timeout",
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub login: Option<(String, String)>,
    pub token: Option<String>,
    /// The CONNECT `host` header (RabbitMQ reads it as the virtual host);
    /// the URL's authority when `None`.
    pub stomp_host: Option<String>,
    /// The CONNECT `heart-beat` header (`0,0`: none).
    pub heart_beat: String,
    /// Offer permessage-deflate and inflate what arrives compressed.
    pub deflate: bool,
}

impl Target {
    /// Parses `ws://host:port/path` (TLS is not supported: test inside the
    /// TLS terminator or directly against the gateway).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            login: None,
            token: None,
            stomp_host: None,
            heart_beat: "0,0".to_string(),
            deflate: false,
        })
    }
}

/// An open STOMP session.
pub struct Client {
    stream: TcpStream,
    read: BytesMut,
    stomp: BytesMut,
    decoder: Decoder,
    out: BytesMut,
}

/// A server message: the STOMP frame, or a heart-beat.
pub enum Received {
    Frame(Frame),
    HeartBeat,
}

/// A server message as [`Client::receive_stamped`] sees it.
pub enum Incoming {
    /// A MESSAGE, read in place (see [`crate::scan`]).
    Message(Stamped),
    /// Any other frame, decoded.
    Frame(Frame),
    HeartBeat,
}

/// Bytes a read may bring in at once.
const READ_CHUNK: usize = 4096;

/// Largest frame accepted from the server.
const MAX_FRAME_BYTES: usize = 16 << 20;

impl Client {
    /// Connects from `source` (a loopback address spreads the ephemeral
    /// ports over several source IPs), upgrades and completes CONNECT.
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Client, ClientError> {
        Client::connect_with(target, source, &[])
            .await
            .map(|(client, _)| client)
    }

    /// [`Client::connect`] with extra CONNECT headers (a resume token);
    /// returns the CONNECTED frame too.
    pub async fn connect_with(
        target: &Target,
        source: Option<IpAddr>,
        extra: &[(&str, &str)],
    ) -> Result<(Client, Frame), ClientError> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ClientError::Connect)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(ClientError::Connect)?;
        }
        let stream = socket
            .connect(target.addr)
            .await
            .map_err(ClientError::Connect)?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            read: BytesMut::new(),
            stomp: BytesMut::new(),
            decoder: Decoder::new(Limits {
                max_frame_bytes: MAX_FRAME_BYTES,
                max_headers: 1024,
                max_header_line: 1 << 16,
            }),
            out: BytesMut::new(),
        };
        client.upgrade(target).await?;
        let mut connect = Frame::new(Command::Connect)
            .with_header("accept-version", "1.2")
            .with_header("host", target.stomp_host.as_deref().unwrap_or(&target.host))
            .with_header("heart-beat", target.heart_beat.as_str());
        if let Some((login, passcode)) = &target.login {
            connect = connect
                .with_header("login", login.as_str())
                .with_header("passcode", passcode.as_str());
        }
        if let Some(token) = &target.token {
            connect = connect.with_header("passcode", token.as_str());
        }
        for (name, value) in extra {
            connect = connect.with_header(*name, *value);
        }
        client.send(&connect).await?;
        loop {
            match client.receive().await? {
                Received::Frame(f) if f.command == Command::Connected => return Ok((client, f)),
                Received::Frame(f) => {
                    let message = f.header("message").unwrap_or("no message").to_string();
                    return Err(ClientError::Refused(message));
                }
                Received::HeartBeat => {}
            }
        }
    }

    async fn upgrade(&mut self, target: &Target) -> Result<(), ClientError> {
        let extensions = if target.deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: v12.stomp\r\n{extensions}\r\n",
            target.path, target.host
        );
        self.stream.write_all(request.as_bytes()).await?;
        loop {
            if let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.read[..end]).into_owned();
                self.read.advance(end + 4);
                if !head.starts_with("HTTP/1.1 101") {
                    let status = head.lines().next().unwrap_or_default().to_string();
                    return Err(ClientError::Upgrade(status));
                }
                return Ok(());
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends one STOMP frame in one masked WebSocket text message.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        let mut payload = BytesMut::new();
        frame.encode(Version::V1_2, &mut payload);
        self.out.clear();
        put_masked(&mut self.out, &payload);
        self.stream.write_all(&self.out).await?;
        Ok(())
    }

    /// The next STOMP frame (or heart-beat) from the server.
    pub async fn receive(&mut self) -> Result<Received, ClientError> {
        loop {
            match self.decoder.decode(&mut self.stomp) {
                Ok(Some(Item::Frame(f))) => return Ok(Received::Frame(f)),
                Ok(Some(Item::HeartBeat)) => return Ok(Received::HeartBeat),
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            self.read_ws_message().await?;
        }
    }

    /// The next server message, MESSAGE frames only scanned for their
    /// stamp and subscription (no allocation): the subscribers' hot path.
    pub async fn receive_stamped(&mut self) -> Result<Incoming, ClientError> {
        loop {
            match scan_message(&self.stomp, MAX_FRAME_BYTES).map_err(ClientError::Protocol)? {
                Scan::Message(stamped, len) => {
                    self.stomp.advance(len);
                    return Ok(Incoming::Message(stamped));
                }
                Scan::Incomplete => self.read_ws_message().await?,
                Scan::Other => {
                    return Ok(match self.receive().await? {
                        Received::Frame(f) => Incoming::Frame(f),
                        Received::HeartBeat => Incoming::HeartBeat,
                    })
                }
            }
        }
    }

    /// Like [`Client::receive`], giving up after `wait`.
    pub async fn receive_within(&mut self, wait: Duration) -> Result<Received, ClientError> {
        tokio::time::timeout(wait, self.receive())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// The next STOMP frame within `wait`, skipping heart-beats (servers
    /// such as RabbitMQ follow each frame with an EOL).
    pub async fn frame_within(&mut self, wait: Duration) -> Result<Frame, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Received::Frame(f) = self.receive_within(left).await? {
                return Ok(f);
            }
        }
    }

    /// Moves the next WebSocket message's payload into the STOMP buffer.
    async fn read_ws_message(&mut self) -> Result<(), ClientError> {
        loop {
            if let Some((first, head, len)) = parse_header(&self.read) {
                if self.read.len() >= head + len {
                    self.read.advance(head);
                    let payload = self.read.split_to(len);
                    match first & 0x0f {
                        0..=2 if first & 0x40 != 0 => inflate_into(&payload, &mut self.stomp)?,
                        0..=2 => self.stomp.extend_from_slice(&payload),
                        8 => return Err(ClientError::Closed),
                        9 => {
                            self.out.clear();
                            put_masked_with_opcode(&mut self.out, 0xA, &payload);
                            self.stream.write_all(&self.out).await?;
                        }
                        _ => {}
                    }
                    return Ok(());
                }
            }
            // Room for several messages per read: without it `read_buf`
            // offers only the 64 bytes BytesMut reserves, and one MESSAGE
            // takes several system calls. (An emptied buffer reuses its
            // allocation, so this allocates once per connection.)
            self.read.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

thread_local! {
    static INFLATER: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// Inflates one permessage-deflate message (RFC 7692: `00 00 ff ff`
/// appended) onto `out`, with the thread's decompressor reset for it.
fn inflate_into(payload: &[u8], out: &mut BytesMut) -> Result<(), ClientError> {
    INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let mut scratch = Vec::with_capacity(payload.len() * 4 + 256);
        for input in [payload, &[0, 0, 0xff, 0xff][..]] {
            let mut consumed = 0;
            loop {
                scratch.clear();
                let (in_before, out_before) = (d.total_in(), d.total_out());
                d.decompress_vec(
                    &input[consumed..],
                    &mut scratch,
                    flate2::FlushDecompress::Sync,
                )
                .map_err(|e| ClientError::Protocol(format!("bad compressed message: {e}")))?;
                consumed += (d.total_in() - in_before) as usize;
                out.extend_from_slice(&scratch);
                if out.len() > MAX_FRAME_BYTES {
                    return Err(ClientError::Protocol("compressed message too large".into()));
                }
                let full = scratch.len() == scratch.capacity();
                if !full && (consumed == input.len() || d.total_out() == out_before) {
                    break;
                }
            }
        }
        Ok(())
    })
}

/// (first byte, header length, payload length) of a complete server frame
/// header; the first byte holds FIN, RSV1 (compressed) and the opcode.
fn parse_header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let first = buf[0];
    match buf[1] & 0x7f {
        126 if buf.len() >= 4 => {
            Some((first, 4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))))
        }
        127 if buf.len() >= 10 => {
            let len = u64::from_be_bytes(buf[2..10].try_into().ok()?);
            Some((first, 10, usize::try_from(len).ok()?))
        }
        126 | 127 => None,
        n => Some((first, 2, usize::from(n))),
    }
}

fn put_masked(out: &mut BytesMut, payload: &[u8]) {
    put_masked_with_opcode(out, 0x1, payload);
}

/// A masked client frame. The mask key is fixed: masking defends against
/// cache poisoning by browsers' scripts, which a load tool is not.
fn put_masked_with_opcode(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&[0x80 | opcode]);
    match payload.len() {
        n if n < 126 => out.extend_from_slice(&[0x80 | n as u8]),
        n if n <= usize::from(u16::MAX) => {
            out.extend_from_slice(&[0x80 | 126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[0x80 | 127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

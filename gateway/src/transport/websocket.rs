//! RFC 6455 framing for the server side, streaming and buffer-lean.
//!
//! fastwebsockets performs the HTTP upgrade (see `server.rs`), but its
//! `WebSocket` keeps an 8 KiB read buffer for the life of every connection,
//! four times our whole per-connection budget. This module frames and
//! unframes on buffers the connection allocates only while bytes are in
//! flight, and reuses fastwebsockets' SIMD unmasking. Data frames are not
//! reassembled: STOMP frames may span WebSocket messages anyway, so text,
//! binary and continuation payloads are unmasked straight into the STOMP
//! decoder's buffer as they arrive.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes we send.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;

/// A WebSocket-level protocol violation; the connection answers with a close
/// frame carrying code 1002.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("websocket protocol error: {0}")]
pub struct WsError(pub &'static str);

/// A control frame the connection must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Ping(Bytes),
    Pong,
    Close,
}

#[derive(Debug, Clone, Copy)]
struct Payload {
    opcode: u8,
    remaining: u64,
    mask: [u8; 4],
    /// How many payload bytes were unmasked so far (mask phase).
    offset: usize,
}

/// Incremental reader of client frames.
#[derive(Debug, Default)]
pub struct WsReader {
    payload: Option<Payload>,
    /// Inside a fragmented data message (a continuation is expected).
    fragmented: bool,
    /// Payload of the control frame being read (at most 125 bytes).
    control: BytesMut,
}

impl WsReader {
    /// True when no frame is partially read, so buffers can be released.
    pub fn is_idle(&self) -> bool {
        self.payload.is_none()
    }

    /// Consumes bytes from `raw`. Data payloads are unmasked and appended to
    /// `data`. Returns at the first complete control frame, or `None` once
    /// `raw` holds no complete header and no payload bytes remain to move.
    pub fn read(
        &mut self,
        raw: &mut BytesMut,
        data: &mut BytesMut,
    ) -> Result<Option<Control>, WsError> {
        loop {
            let Some(mut payload) = self.payload else {
                if !self.read_header(raw)? {
                    return Ok(None);
                }
                continue;
            };
            let available = raw
                .len()
                .min(usize::try_from(payload.remaining).unwrap_or(usize::MAX));
            let is_control = payload.opcode >= OP_CLOSE;
            if available > 0 {
                let mut chunk = raw.split_to(available);
                let mask = rotate(payload.mask, payload.offset);
                fastwebsockets::unmask(&mut chunk, mask);
                if is_control {
                    self.control.extend_from_slice(&chunk);
                } else {
                    data.extend_from_slice(&chunk);
                }
                payload.offset += available;
                payload.remaining -= available as u64;
            }
            if payload.remaining > 0 {
                self.payload = Some(payload);
                return Ok(None);
            }
            self.payload = None;
            if is_control {
                let body = self.control.split().freeze();
                self.control = BytesMut::new();
                return Ok(Some(match payload.opcode {
                    OP_PING => Control::Ping(body),
                    OP_PONG => Control::Pong,
                    _ => Control::Close,
                }));
            }
        }
    }

    /// Parses one frame header if it is complete.
    fn read_header(&mut self, raw: &mut BytesMut) -> Result<bool, WsError> {
        if raw.len() < 2 {
            return Ok(false);
        }
        let (b0, b1) = (raw[0], raw[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Err(WsError("reserved bits set without a negotiated extension"));
        }
        if b1 & 0x80 == 0 {
            return Err(WsError("client frames must be masked"));
        }
        let (len, header_len) = match b1 & 0x7F {
            126 => {
                if raw.len() < 4 {
                    return Ok(false);
                }
                (u64::from(u16::from_be_bytes([raw[2], raw[3]])), 4)
            }
            127 => {
                if raw.len() < 10 {
                    return Ok(false);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        if raw.len() < header_len + 4 {
            return Ok(false);
        }
        match opcode {
            OP_TEXT | OP_BINARY => {
                if self.fragmented {
                    return Err(WsError("new data frame inside a fragmented message"));
                }
                self.fragmented = !fin;
            }
            OP_CONTINUATION => {
                if !self.fragmented {
                    return Err(WsError("continuation frame without a message to continue"));
                }
                self.fragmented = !fin;
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(WsError(
                        "control frames must be final and at most 125 bytes",
                    ));
                }
            }
            _ => return Err(WsError("unknown opcode")),
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&raw[header_len..header_len + 4]);
        raw.advance(header_len + 4);
        self.payload = Some(Payload {
            opcode,
            remaining: len,
            mask,
            offset: 0,
        });
        Ok(true)
    }
}

/// The mask key as seen from payload byte `offset`.
fn rotate(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let mut m = mask;
    m.rotate_left(offset % 4);
    m
}

/// Kind of data frame a server message travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Text,
    Binary,
}

/// Appends an unmasked, final frame header for a payload of `len` bytes.
pub fn put_header(dst: &mut BytesMut, opcode: u8, len: usize) {
    dst.put_u8(0x80 | opcode);
    if len < 126 {
        dst.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        dst.put_u8(126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(127);
        dst.put_u64(len as u64);
    }
}

/// Appends the header of a data frame.
pub fn put_data_header(dst: &mut BytesMut, kind: DataKind, len: usize) {
    let opcode = match kind {
        DataKind::Text => OP_TEXT,
        DataKind::Binary => OP_BINARY,
    };
    put_header(dst, opcode, len);
}

/// Appends a whole data frame.
pub fn put_data(dst: &mut BytesMut, kind: DataKind, payload: &[u8]) {
    put_data_header(dst, kind, payload.len());
    dst.put_slice(payload);
}

pub fn put_pong(dst: &mut BytesMut, payload: &[u8]) {
    put_header(dst, OP_PONG, payload.len());
    dst.put_slice(payload);
}

pub fn put_ping(dst: &mut BytesMut) {
    put_header(dst, OP_PING, 0);
}

pub fn put_close(dst: &mut BytesMut, code: u16, reason: &str) {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    put_header(dst, OP_CLOSE, 2 + reason.len());
    dst.put_u16(code);
    dst.put_slice(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
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
        out
    }

    #[test]
    fn data_split_anywhere_is_unmasked_in_order() {
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = client_frame(false, OP_TEXT, &body[..300]);
        wire.extend(client_frame(true, OP_CONTINUATION, &body[300..]));
        wire.extend(client_frame(true, OP_PING, b"hi"));
        for step in [1, 3, 7, 1000, wire.len()] {
            let mut reader = WsReader::default();
            let (mut raw, mut data) = (BytesMut::new(), BytesMut::new());
            let mut controls = Vec::new();
            for chunk in wire.chunks(step) {
                raw.extend_from_slice(chunk);
                while let Some(c) = reader.read(&mut raw, &mut data).unwrap() {
                    controls.push(c);
                }
            }
            assert_eq!(&data[..], &body[..], "step {step}");
            assert_eq!(controls, [Control::Ping(Bytes::from_static(b"hi"))]);
            assert!(reader.is_idle());
        }
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut unmasked = BytesMut::from(&[0x81u8, 0x01, b'x'][..]);
        assert!(WsReader::default()
            .read(&mut unmasked, &mut BytesMut::new())
            .is_err());
        let mut cont = BytesMut::from(&client_frame(true, OP_CONTINUATION, b"x")[..]);
        assert!(WsReader::default()
            .read(&mut cont, &mut BytesMut::new())
            .is_err());
        let mut big_ping = BytesMut::from(&client_frame(true, OP_PING, &[0; 126])[..]);
        assert!(WsReader::default()
            .read(&mut big_ping, &mut BytesMut::new())
            .is_err());
        let mut rsv = BytesMut::from(&client_frame(true, OP_TEXT, b"x")[..]);
        rsv[0] |= 0x40;
        assert!(WsReader::default()
            .read(&mut rsv, &mut BytesMut::new())
            .is_err());
    }

    #[test]
    fn server_headers_use_the_shortest_length_encoding() {
        for (len, header) in [(5usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
            let mut b = BytesMut::new();
            put_data_header(&mut b, DataKind::Binary, len);
            assert_eq!(b.len(), header, "len {len}");
            assert_eq!(b[0], 0x82);
        }
    }
}

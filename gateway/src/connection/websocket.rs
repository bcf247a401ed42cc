//! RFC 6455 framing for the server side, streaming and buffer-lean.
//!
//! fastwebsockets performs the HTTP upgrade (see `transport/upgrade.rs`),
//! but its `WebSocket` keeps an 8 KiB read buffer for the life of every
//! connection, four times our whole per-connection budget. This module
//! frames and unframes on buffers the connection allocates only while bytes
//! are in flight, and reuses fastwebsockets' `unmask` (a word-at-a-time
//! XOR; its SIMD path is not compiled in 0.10). Data frames are not
//! reassembled: STOMP frames may span WebSocket messages anyway, so text,
//! binary and continuation payloads are unmasked straight into the STOMP
//! decoder's buffer as they arrive.
//!
//! It lives under `connection/` because only the connection task frames
//! and unframes; the transport layer above it hands over a raw stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::deflate::{self, InflateError};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// The first reserved bit: a compressed message (permessage-deflate).
const RSV1: u8 = 0x40;

/// Close codes we send (RFC 6455 section 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
/// The node goes away: drain, or a rebalance that moves the client.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// A WebSocket protocol violation.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not UTF-8, or a close reason that is not.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// A STOMP-level violation: the ERROR frame before the close says which.
pub const CLOSE_POLICY: u16 = 1008;
/// A message or STOMP frame over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Why the client's WebSocket stream cannot be read on: the connection
/// answers with a close frame carrying `code`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("websocket error {code}: {reason}")]
pub struct WsError {
    pub code: u16,
    pub reason: &'static str,
}

impl WsError {
    fn protocol(reason: &'static str) -> WsError {
        WsError {
            code: CLOSE_PROTOCOL_ERROR,
            reason,
        }
    }

    fn invalid_payload(reason: &'static str) -> WsError {
        WsError {
            code: CLOSE_INVALID_PAYLOAD,
            reason,
        }
    }
}

/// A control frame the connection must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Ping(Bytes),
    Pong,
    /// The client closes, with the status code it gave (validated), which
    /// the answering close frame echoes.
    Close(Option<u16>),
}

#[derive(Debug, Clone, Copy)]
struct Payload {
    opcode: u8,
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    /// How many payload bytes were unmasked so far (mask phase).
    offset: usize,
}

/// Incremental reader of client frames.
#[derive(Debug)]
pub struct WsReader {
    payload: Option<Payload>,
    /// Inside a fragmented data message (a continuation is expected).
    fragmented: bool,
    /// The data message being read is text: its payload is checked as
    /// UTF-8 as it arrives, across fragments.
    text: Utf8Check,
    in_text: bool,
    /// Payload of the control frame being read (at most 125 bytes).
    control: BytesMut,
    /// The largest data message accepted (sum of its fragments, and once
    /// inflated).
    max_message: u64,
    /// Bytes of the current data message so far.
    message_len: u64,
    /// permessage-deflate was negotiated: messages with RSV1 are inflated.
    inflate: bool,
    /// The data message being read is compressed: its payload collects in
    /// `deflated` (boxed: only while such a message is in flight, and
    /// small in every idle connection) and is inflated whole at its last
    /// fragment.
    compressed: bool,
    deflated: Option<Box<BytesMut>>,
}

impl Default for WsReader {
    fn default() -> Self {
        WsReader::new(u64::MAX, false)
    }
}

impl WsReader {
    /// A reader that refuses data messages longer than `max_message`
    /// bytes (close code 1009) before reading their payload, and, with
    /// `inflate` (permessage-deflate negotiated), compressed ones that
    /// inflate to more.
    pub fn new(max_message: u64, inflate: bool) -> WsReader {
        WsReader {
            payload: None,
            fragmented: false,
            text: Utf8Check::default(),
            in_text: false,
            control: BytesMut::new(),
            max_message,
            message_len: 0,
            inflate,
            compressed: false,
            deflated: None,
        }
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflates(&self) -> bool {
        self.inflate
    }

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
                } else if self.compressed {
                    self.deflated
                        .get_or_insert_with(Box::default)
                        .extend_from_slice(&chunk);
                } else {
                    if self.in_text && !self.text.feed(&chunk) {
                        return Err(WsError::invalid_payload("text message is not valid UTF-8"));
                    }
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
                    _ => Control::Close(close_code(&body)?),
                }));
            }
            if payload.fin && std::mem::take(&mut self.compressed) {
                self.inflate_message(data)?;
            }
            if payload.fin && std::mem::take(&mut self.in_text) && !self.text.finish() {
                return Err(WsError::invalid_payload(
                    "text message ends inside a UTF-8 sequence",
                ));
            }
        }
    }

    /// Inflates the compressed message just read onto `data`, checking a
    /// text message's UTF-8 as it goes.
    fn inflate_message(&mut self, data: &mut BytesMut) -> Result<(), WsError> {
        let start = data.len();
        let limit = usize::try_from(self.max_message).unwrap_or(usize::MAX);
        let payload = self.deflated.take().unwrap_or_default();
        let inflated = deflate::inflate(&payload, limit, data);
        match inflated {
            Ok(_) => {}
            Err(InflateError::TooLarge) => {
                return Err(WsError {
                    code: CLOSE_TOO_BIG,
                    reason: "compressed message inflates to more than the server accepts",
                })
            }
            Err(InflateError::Corrupt) => {
                return Err(WsError::invalid_payload(
                    "compressed message is not valid deflate data",
                ))
            }
        }
        if self.in_text && !self.text.feed(&data[start..]) {
            return Err(WsError::invalid_payload("text message is not valid UTF-8"));
        }
        Ok(())
    }

    /// Parses one frame header if it is complete.
    fn read_header(&mut self, raw: &mut BytesMut) -> Result<bool, WsError> {
        if raw.len() < 2 {
            return Ok(false);
        }
        let (b0, b1) = (raw[0], raw[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let compressed = b0 & RSV1 != 0;
        if b0 & 0x70 & !RSV1 != 0 || (compressed && !self.inflate) {
            return Err(WsError::protocol(
                "reserved bits set without a negotiated extension",
            ));
        }
        if compressed && !matches!(opcode, OP_TEXT | OP_BINARY) {
            return Err(WsError::protocol(
                "compressed bit on a continuation or control frame",
            ));
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::protocol("client frames must be masked"));
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
                if b[0] & 0x80 != 0 {
                    return Err(WsError::protocol(
                        "64-bit payload length with its most significant bit set",
                    ));
                }
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        // Nothing below may run twice for one frame: wait for the mask too.
        if raw.len() < header_len + 4 {
            return Ok(false);
        }
        match opcode {
            OP_TEXT | OP_BINARY => {
                if self.fragmented {
                    return Err(WsError::protocol(
                        "new data frame inside a fragmented message",
                    ));
                }
                self.fragmented = !fin;
                self.in_text = opcode == OP_TEXT;
                self.compressed = compressed;
                self.message_len = 0;
            }
            OP_CONTINUATION => {
                if !self.fragmented {
                    return Err(WsError::protocol(
                        "continuation frame without a message to continue",
                    ));
                }
                self.fragmented = !fin;
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(WsError::protocol("fragmented control frame"));
                }
                if len > 125 {
                    return Err(WsError::protocol(
                        "control frame payload longer than 125 bytes",
                    ));
                }
            }
            _ => return Err(WsError::protocol("reserved opcode")),
        }
        if opcode < OP_CLOSE {
            self.message_len = self.message_len.saturating_add(len);
            if self.message_len > self.max_message {
                return Err(WsError {
                    code: CLOSE_TOO_BIG,
                    reason: "message larger than the server accepts",
                });
            }
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&raw[header_len..header_len + 4]);
        raw.advance(header_len + 4);
        self.payload = Some(Payload {
            opcode,
            fin,
            remaining: len,
            mask,
            offset: 0,
        });
        Ok(true)
    }
}

/// The status code of a client's close frame, checked: a payload is
/// empty or holds a code a peer may send (RFC 6455 section 7.4) and a
/// UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !may_be_sent(code) {
                return Err(WsError::protocol("close code that may not be sent"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::invalid_payload("close reason is not UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

/// Whether a peer may put `code` in a close frame: the codes RFC 6455
/// defines for use on the wire, the IANA-registered 1012–1014, and the
/// ranges for libraries and applications. 1004–1006 and 1015 are
/// reserved or only for reporting; the rest of 0–2999 is unassigned.
fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Incremental UTF-8 validation of a text message whose bytes arrive in
/// arbitrary pieces: holds at most the 3 bytes of a sequence split between
/// pieces, never the message.
#[derive(Debug, Default)]
struct Utf8Check {
    partial: [u8; 4],
    len: u8,
}

impl Utf8Check {
    /// Checks the next piece; false once the message cannot be UTF-8.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        if self.len > 0 {
            let need = sequence_len(self.partial[0]);
            while usize::from(self.len) < need {
                let Some((&b, rest)) = bytes.split_first() else {
                    return true;
                };
                self.partial[usize::from(self.len)] = b;
                self.len += 1;
                bytes = rest;
                // Fail at the first byte that cannot continue the sequence.
                if std::str::from_utf8(&self.partial[..usize::from(self.len)])
                    .is_err_and(|e| e.error_len().is_some())
                {
                    return false;
                }
            }
            self.len = 0;
            if std::str::from_utf8(&self.partial[..need]).is_err() {
                return false;
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                // An incomplete sequence at the end: keep it for the next piece.
                let tail = &bytes[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                true
            }
        }
    }

    /// Whether the message ended on a whole character.
    fn finish(&mut self) -> bool {
        std::mem::take(&mut self.len) == 0
    }
}

/// The length of the UTF-8 sequence a (valid) lead byte starts.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        _ => 2,
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

impl DataKind {
    /// Binary for a body that is not text (or configured so), else text.
    pub fn of(binary: bool) -> DataKind {
        if binary {
            DataKind::Binary
        } else {
            DataKind::Text
        }
    }

    fn opcode(self) -> u8 {
        match self {
            DataKind::Text => OP_TEXT,
            DataKind::Binary => OP_BINARY,
        }
    }
}

/// Appends an unmasked, final frame header for a payload of `len` bytes.
pub fn put_header(dst: &mut BytesMut, opcode: u8, len: usize) {
    put_header_bits(dst, 0x80 | opcode, len);
}

/// The first byte is FIN, the RSV bits and the opcode, as given.
fn put_header_bits(dst: &mut BytesMut, first: u8, len: usize) {
    dst.put_u8(first);
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
    put_header(dst, kind.opcode(), len);
}

/// Appends the header of a data frame whose payload is compressed
/// (permessage-deflate: RSV1 set).
pub fn put_compressed_header(dst: &mut BytesMut, kind: DataKind, len: usize) {
    put_header_bits(dst, 0x80 | RSV1 | kind.opcode(), len);
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

    /// A client's compressed message, as RFC 7692 frames it (the tail
    /// `00 00 ff ff` removed), split into frames of `split` bytes.
    fn compressed_message(opcode: u8, text: &[u8], split: usize) -> Vec<u8> {
        let frame = crate::deflate::CompressedFrame::new(b"", text);
        let mut payload = BytesMut::new();
        frame.put(&[], &mut payload);
        let chunks: Vec<&[u8]> = payload.chunks(split).collect();
        let mut wire = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let fin = i + 1 == chunks.len();
            let mut f = client_frame(fin, if i == 0 { opcode } else { OP_CONTINUATION }, chunk);
            if i == 0 {
                f[0] |= RSV1;
            }
            wire.extend(f);
        }
        wire
    }

    fn read_compressed(wire: &[u8], max_message: u64) -> Result<BytesMut, WsError> {
        let mut reader = WsReader::new(max_message, true);
        let (mut raw, mut data) = (BytesMut::from(wire), BytesMut::new());
        while reader.read(&mut raw, &mut data)?.is_some() {}
        Ok(data)
    }

    #[test]
    fn compressed_messages_inflate_only_where_negotiated_and_within_the_limit() {
        let text = "SEND\ndestination:/topic/a\n\nhéllo héllo héllo héllo\0".repeat(50);
        for split in [3, 40, 10_000] {
            let wire = compressed_message(OP_TEXT, text.as_bytes(), split);
            assert_eq!(
                &read_compressed(&wire, 1 << 20).unwrap()[..],
                text.as_bytes()
            );
        }
        let wire = compressed_message(OP_TEXT, text.as_bytes(), 10_000);
        // Not negotiated: RSV1 is a protocol error.
        let mut plain = WsReader::new(1 << 20, false);
        let err = plain
            .read(&mut BytesMut::from(&wire[..]), &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(err.code, CLOSE_PROTOCOL_ERROR);
        // RSV1 on a continuation frame.
        let mut wire = client_frame(false, OP_TEXT, b"SEND");
        let mut cont = client_frame(true, OP_CONTINUATION, b"x");
        cont[0] |= RSV1;
        wire.extend(cont);
        assert_eq!(
            read_compressed(&wire, 1 << 20).unwrap_err().code,
            CLOSE_PROTOCOL_ERROR
        );
        // A bomb: 10 MB of one byte in a few KB.
        let bomb = compressed_message(OP_BINARY, &vec![b'a'; 10_000_000], 100_000);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            read_compressed(&bomb, 65_536).unwrap_err().code,
            CLOSE_TOO_BIG
        );
        // Invalid UTF-8 once inflated, in a text message.
        let bad = compressed_message(OP_TEXT, &[b'a', 0xff, b'b'], 100);
        assert_eq!(
            read_compressed(&bad, 1 << 20).unwrap_err().code,
            CLOSE_INVALID_PAYLOAD
        );
        // Not deflate at all.
        let mut junk = client_frame(true, OP_BINARY, &[0xff, 0xff, 0xff, 0xff]);
        junk[0] |= RSV1;
        assert_eq!(
            read_compressed(&junk, 1 << 20).unwrap_err().code,
            CLOSE_INVALID_PAYLOAD
        );
    }

    #[test]
    fn data_split_anywhere_is_unmasked_in_order() {
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        // Binary: the bytes are not UTF-8 (text is checked; see below).
        let mut wire = client_frame(false, OP_BINARY, &body[..300]);
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

    /// Reads `wire` whole; the first error's close code, or the controls.
    fn read_all(wire: &[u8], max_message: u64) -> Result<(Vec<Control>, BytesMut), u16> {
        let mut reader = WsReader::new(max_message, false);
        let (mut raw, mut data) = (BytesMut::from(wire), BytesMut::new());
        let mut controls = Vec::new();
        loop {
            match reader.read(&mut raw, &mut data) {
                Ok(Some(c)) => controls.push(c),
                Ok(None) => return Ok((controls, data)),
                Err(e) => return Err(e.code),
            }
        }
    }

    #[test]
    fn every_protocol_violation_closes_with_1002() {
        let mut unmasked = vec![0x81u8, 0x01, b'x'];
        let mut rsv = client_frame(true, OP_TEXT, b"x");
        rsv[0] |= 0x40;
        let mut nested = client_frame(false, OP_TEXT, b"a");
        nested.extend(client_frame(true, OP_TEXT, b"b"));
        let mut huge = vec![0x82u8, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        huge.extend_from_slice(&[1, 2, 3, 4]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", std::mem::take(&mut unmasked)),
            ("reserved bit", rsv),
            ("reserved data opcode", client_frame(true, 0x3, b"x")),
            ("reserved control opcode", client_frame(true, 0xB, b"")),
            ("ping over 125", client_frame(true, OP_PING, &[0; 126])),
            ("fragmented ping", client_frame(false, OP_PING, b"x")),
            ("fragmented close", client_frame(false, OP_CLOSE, &[3, 232])),
            (
                "continuation first",
                client_frame(true, OP_CONTINUATION, b"x"),
            ),
            ("data inside a fragmented message", nested),
            ("64-bit length with the MSB set", huge),
            ("1-byte close payload", client_frame(true, OP_CLOSE, &[3])),
        ];
        for (name, wire) in cases {
            assert_eq!(read_all(&wire, u64::MAX).err(), Some(1002), "{name}");
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        ] {
            let wire = client_frame(true, OP_CLOSE, &code.to_be_bytes());
            assert_eq!(read_all(&wire, u64::MAX).err(), Some(1002), "code {code}");
        }
    }

    #[test]
    fn close_frames_carry_a_valid_code_and_a_utf8_reason() {
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 3000, 4999] {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice("bye ✓".as_bytes());
            let (controls, _) = read_all(&client_frame(true, OP_CLOSE, &payload), 10).unwrap();
            assert_eq!(controls, [Control::Close(Some(code))]);
        }
        let (controls, _) = read_all(&client_frame(true, OP_CLOSE, b""), 10).unwrap();
        assert_eq!(controls, [Control::Close(None)]);
        let bad_reason = [0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD];
        assert_eq!(
            read_all(&client_frame(true, OP_CLOSE, &bad_reason), 10).err(),
            Some(1007)
        );
    }

    #[test]
    fn text_must_be_utf8_checked_across_fragments_and_chunks() {
        let text = "κόσμε: 𝄞 and ü".as_bytes();
        // Fragment boundaries inside multi-byte characters, read byte by byte.
        let mut wire = client_frame(false, OP_TEXT, &text[..1]);
        wire.extend(client_frame(false, OP_CONTINUATION, &text[1..9]));
        wire.extend(client_frame(true, OP_PING, b""));
        wire.extend(client_frame(true, OP_CONTINUATION, &text[9..]));
        for step in [1, 2, 5, wire.len()] {
            let mut reader = WsReader::default();
            let (mut raw, mut data) = (BytesMut::new(), BytesMut::new());
            for chunk in wire.chunks(step) {
                raw.extend_from_slice(chunk);
                while reader.read(&mut raw, &mut data).unwrap().is_some() {}
            }
            assert_eq!(&data[..], text, "step {step}");
        }
        // Binary messages are not checked.
        assert!(read_all(&client_frame(true, OP_BINARY, &[0xFF, 0xFE]), 10).is_ok());

        let invalid: [&[u8]; 5] = [
            &[0xFF],
            &[0xC0, 0x80],             // overlong NUL
            &[0xED, 0xA0, 0x80],       // a surrogate
            &[0xF4, 0x90, 0x80, 0x80], // past U+10FFFF
            &[b'a', 0xCE],             // ends inside a sequence
        ];
        for bytes in invalid {
            assert_eq!(
                read_all(&client_frame(true, OP_TEXT, bytes), 100).err(),
                Some(1007),
                "{bytes:x?}"
            );
        }
        // Split across fragments, the invalid byte in the second one.
        let mut split = client_frame(false, OP_TEXT, &[b'x', 0xE2, 0x82]);
        split.extend(client_frame(true, OP_CONTINUATION, &[0x28]));
        assert_eq!(read_all(&split, 100).err(), Some(1007));
        // The first fragment alone is fine: nothing is judged early.
        assert!(read_all(&client_frame(false, OP_TEXT, &[b'x', 0xE2, 0x82]), 100).is_ok());
    }

    #[test]
    fn messages_over_the_limit_close_with_1009_before_their_payload() {
        let header_only = &client_frame(true, OP_BINARY, &[0; 200])[..8];
        assert_eq!(read_all(header_only, 100).err(), Some(1009));
        let mut fragments = client_frame(false, OP_TEXT, &[b'a'; 60]);
        fragments.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 60]));
        assert_eq!(read_all(&fragments, 100).err(), Some(1009));
        assert!(read_all(&client_frame(true, OP_TEXT, &[b'a'; 100]), 100).is_ok());
    }

    /// The fuzz target's checks (`fuzz/fuzz_targets/websocket.rs`) over
    /// seeded random streams of mostly well-formed frames, so every test
    /// run exercises them: the outcome does not depend on how the bytes
    /// are chunked, and only 1002, 1007 and 1009 end a stream.
    #[test]
    fn random_streams_read_the_same_in_any_chunking() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let run = |wire: &[u8], chunk: usize| {
            let mut reader = WsReader::new(300, false);
            let (mut raw, mut data) = (BytesMut::new(), BytesMut::new());
            let mut controls = Vec::new();
            for piece in wire.chunks(chunk) {
                raw.extend_from_slice(piece);
                loop {
                    match reader.read(&mut raw, &mut data) {
                        Ok(Some(c)) => controls.push(c),
                        Ok(None) => break,
                        Err(e) => {
                            assert!(matches!(e.code, 1002 | 1007 | 1009), "{e:?}");
                            return (controls, Some(e.code), data.len());
                        }
                    }
                }
            }
            (controls, None, data.len())
        };
        for _ in 0..3000 {
            let mut wire = Vec::new();
            for _ in 0..(next() % 6) {
                let opcode = [OP_TEXT, OP_BINARY, OP_CONTINUATION, OP_PING, OP_CLOSE, 3]
                    [(next() % 6) as usize];
                let len = (next() % 140) as usize;
                let payload: Vec<u8> = (0..len)
                    .map(|_| match next() % 8 {
                        0 => (next() % 256) as u8,
                        1 => 0xE2,
                        2 => 0x82,
                        _ => b'a' + (next() % 26) as u8,
                    })
                    .collect();
                let mut frame = client_frame(next() % 4 != 0, opcode, &payload);
                if next() % 20 == 0 {
                    let i = (next() as usize) % frame.len();
                    frame[i] ^= 1 << (next() % 8);
                }
                wire.extend(frame);
            }
            let whole = run(&wire, wire.len().max(1));
            let chunk = 1 + (next() % 17) as usize;
            let pieces = run(&wire, chunk);
            assert_eq!(whole.0, pieces.0, "controls, chunk {chunk}");
            assert_eq!(whole.1, pieces.1, "outcome, chunk {chunk}");
            if whole.1.is_none() {
                assert_eq!(whole.2, pieces.2, "data, chunk {chunk}");
            }
        }
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

//! Frame encoding.

use bytes::{BufMut, BytesMut};

use crate::{escape, Frame, Version};

impl Frame {
    /// Appends the wire form of this frame to `dst`.
    ///
    /// Header values (and names) are escaped unless the command is CONNECT,
    /// STOMP or CONNECTED, or the version is 1.0. When the body is not empty
    /// and the caller gave no `content-length`, one is added so a body may
    /// hold NUL bytes.
    pub fn encode(&self, version: Version, dst: &mut BytesMut) {
        let escaping = version.escapes_headers() && self.command.escapes_headers();
        dst.reserve(self.encoded_len_hint());
        dst.put_slice(self.command.as_str().as_bytes());
        dst.put_u8(b'\n');
        for header in &self.headers {
            put_header_part(header.name().as_bytes(), escaping, dst);
            dst.put_u8(b':');
            put_header_part(header.value().as_bytes(), escaping, dst);
            dst.put_u8(b'\n');
        }
        if !self.body.is_empty() && self.header("content-length").is_none() {
            dst.put_slice(b"content-length:");
            dst.put_slice(decimal(self.body.len() as u64, &mut [0; 20]));
            dst.put_u8(b'\n');
        }
        dst.put_u8(b'\n');
        dst.put_slice(&self.body);
        dst.put_u8(0);
    }

    /// Convenience: encode into a fresh buffer.
    pub fn to_bytes(&self, version: Version) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        self.encode(version, &mut buf);
        buf.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name().len() + h.value().len() + 2)
            .sum();
        self.command.as_str().len() + headers + self.body.len() + 32
    }
}

fn put_header_part(part: &[u8], escaping: bool, dst: &mut BytesMut) {
    if escaping {
        escape::escape_into(part, dst);
    } else {
        dst.put_slice(part);
    }
}

/// `n` in decimal, written into `buf` without allocating; returns the
/// digits. Shared with the fan-out path, which formats `ack` ids per delivery.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

//! The streaming frame decoder.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::{escape, Command, Frame, Header};

/// Bounds enforced while a frame is still arriving, so a hostile peer can make
/// the decoder hold at most `max_frame_bytes` (plus one read) in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Command line + headers + body, excluding the final NUL.
    pub max_frame_bytes: usize,
    /// Header lines after the command line.
    pub max_headers: usize,
    /// One header line, escaped, without its EOL.
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_headers: 32,
            max_header_line: 1024,
        }
    }
}

/// What the decoder found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Frame(Frame),
    /// One bare EOL: a heart-beat (or the optional EOLs after a frame's NUL).
    HeartBeat,
}

/// Why a byte stream is not valid STOMP. Every variant is fatal for the
/// connection: the decoder does not try to resynchronise.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("header line longer than {limit} bytes")]
    HeaderLineTooLong { limit: usize },
    #[error("more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("malformed header line (no ':'): {0:?}")]
    MalformedHeader(String),
    #[error("undefined escape sequence in header")]
    InvalidEscape,
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid content-length header {0:?}")]
    InvalidContentLength(String),
    #[error("frame body is not followed by NUL at the position content-length gives")]
    MissingNul,
    #[error("carriage return not followed by line feed")]
    BareCarriageReturn,
}

/// Where the scan of the current frame stands. Kept between calls so bytes
/// already inspected are not scanned again when more arrive.
#[derive(Debug, Clone, Copy, Default)]
enum Scan {
    /// Between frames: EOLs here are heart-beats.
    #[default]
    Idle,
    /// Inside the command/header block. `line_start` is where the current
    /// line begins, `lines` how many lines are complete.
    Headers { line_start: usize, lines: usize },
    /// Headers complete; `body_start` is the first body byte.
    Body {
        body_start: usize,
        /// Header lines seen, to size the header list once.
        headers: usize,
        content_length: Option<usize>,
        /// Bytes from `body_start` already known to hold no NUL.
        scanned: usize,
    },
}

/// A resumable STOMP decoder over a caller-owned [`BytesMut`].
///
/// Call [`Decoder::decode`] after appending bytes; it returns `Ok(None)` while
/// the buffer holds no complete item. Consumed bytes are split off the buffer
/// and the frame's headers and body are zero-copy slices of them.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    escaping: bool,
    scan: Scan,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            escaping: true,
            scan: Scan::Idle,
        }
    }

    /// STOMP 1.0 sessions do not escape headers; call with `false` once such
    /// a session is negotiated.
    pub fn set_escaping(&mut self, escaping: bool) {
        self.escaping = escaping;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// True when no part of a frame has been consumed by the scan, i.e. the
    /// buffer can be dropped once empty.
    pub fn is_idle(&self) -> bool {
        matches!(self.scan, Scan::Idle)
    }

    /// Decodes the next item at the front of `buf`, if it is complete.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        loop {
            match self.scan {
                Scan::Idle => match buf.first() {
                    None => return Ok(None),
                    Some(b'\n') => {
                        buf.advance(1);
                        return Ok(Some(Item::HeartBeat));
                    }
                    Some(b'\r') => match buf.get(1) {
                        None => return Ok(None),
                        Some(b'\n') => {
                            buf.advance(2);
                            return Ok(Some(Item::HeartBeat));
                        }
                        Some(_) => return Err(DecodeError::BareCarriageReturn),
                    },
                    Some(_) => {
                        self.scan = Scan::Headers {
                            line_start: 0,
                            lines: 0,
                        }
                    }
                },
                Scan::Headers { line_start, lines } => {
                    if !self.scan_headers(buf, line_start, lines)? {
                        return Ok(None);
                    }
                }
                Scan::Body {
                    body_start,
                    headers,
                    content_length,
                    scanned,
                } => {
                    let Some(nul) =
                        self.find_body_end(buf, body_start, headers, content_length, scanned)?
                    else {
                        return Ok(None);
                    };
                    self.scan = Scan::Idle;
                    let frame = buf.split_to(nul + 1).freeze();
                    return self
                        .parse(frame, body_start, headers, nul)
                        .map(|f| Some(Item::Frame(f)));
                }
            }
        }
    }

    /// Advances the header scan. Returns true once the blank line ending the
    /// headers is found (and the state moved to `Scan::Body`).
    fn scan_headers(
        &mut self,
        buf: &BytesMut,
        mut line_start: usize,
        mut lines: usize,
    ) -> Result<bool, DecodeError> {
        let limits = self.limits;
        while let Some(rel) = memchr::memchr(b'\n', &buf[line_start..]) {
            let line = trim_cr(&buf[line_start..line_start + rel]);
            let next = line_start + rel + 1;
            if line.len() > limits.max_header_line {
                return Err(DecodeError::HeaderLineTooLong {
                    limit: limits.max_header_line,
                });
            }
            if line.is_empty() && lines > 0 {
                let content_length = find_content_length(&buf[..line_start])?;
                if let Some(len) = content_length {
                    if next + len > limits.max_frame_bytes {
                        return Err(DecodeError::FrameTooLarge {
                            limit: limits.max_frame_bytes,
                        });
                    }
                }
                self.scan = Scan::Body {
                    body_start: next,
                    headers: lines - 1,
                    content_length,
                    scanned: 0,
                };
                return Ok(true);
            }
            lines += 1;
            if lines > limits.max_headers + 1 {
                return Err(DecodeError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            line_start = next;
        }
        if buf.len() - line_start > limits.max_header_line + 1 {
            return Err(DecodeError::HeaderLineTooLong {
                limit: limits.max_header_line,
            });
        }
        if buf.len() > limits.max_frame_bytes {
            return Err(DecodeError::FrameTooLarge {
                limit: limits.max_frame_bytes,
            });
        }
        self.scan = Scan::Headers { line_start, lines };
        Ok(false)
    }

    /// Finds the index of the NUL that ends the frame, if it is buffered.
    fn find_body_end(
        &mut self,
        buf: &BytesMut,
        body_start: usize,
        headers: usize,
        content_length: Option<usize>,
        scanned: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let max = self.limits.max_frame_bytes;
        if let Some(len) = content_length {
            let nul = body_start + len;
            return match buf.get(nul) {
                None => Ok(None),
                Some(0) => Ok(Some(nul)),
                Some(_) => Err(DecodeError::MissingNul),
            };
        }
        let from = body_start + scanned;
        if let Some(rel) = memchr::memchr(0, &buf[from..]) {
            let nul = from + rel;
            if nul > max {
                return Err(DecodeError::FrameTooLarge { limit: max });
            }
            return Ok(Some(nul));
        }
        if buf.len() > max {
            return Err(DecodeError::FrameTooLarge { limit: max });
        }
        self.scan = Scan::Body {
            body_start,
            headers,
            content_length,
            scanned: buf.len() - body_start,
        };
        Ok(None)
    }

    /// Builds the frame from a complete, frozen frame (`nul` indexes its NUL).
    fn parse(
        &self,
        frame: Bytes,
        body_start: usize,
        header_count: usize,
        nul: usize,
    ) -> Result<Frame, DecodeError> {
        let head = &frame[..body_start];
        let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
        let command_line = lines.next().unwrap_or_default();
        let command = Command::parse(command_line).ok_or_else(|| {
            DecodeError::UnknownCommand(
                String::from_utf8_lossy(&command_line[..command_line.len().min(64)]).into_owned(),
            )
        })?;
        let unescape = self.escaping && command.escapes_headers();
        let mut headers = Vec::with_capacity(header_count);
        for line in lines.filter(|l| !l.is_empty()) {
            let colon = memchr::memchr(b':', line).ok_or_else(|| {
                DecodeError::MalformedHeader(
                    String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned(),
                )
            })?;
            let name = header_part(&frame, line, 0, colon, unescape)?;
            let value = header_part(&frame, line, colon + 1, line.len(), unescape)?;
            headers.push(Header::from_utf8_bytes(name, value));
        }
        Ok(Frame {
            command,
            headers,
            body: frame.slice(body_start..nul),
        })
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

/// Slices `line[from..to]` out of `frame` (zero-copy) or unescapes it into a
/// new buffer when it holds a backslash, then checks UTF-8.
fn header_part(
    frame: &Bytes,
    line: &[u8],
    from: usize,
    to: usize,
    unescape: bool,
) -> Result<Bytes, DecodeError> {
    let raw = &line[from..to];
    let bytes = if unescape && raw.contains(&b'\\') {
        Bytes::from(escape::unescape(raw).ok_or(DecodeError::InvalidEscape)?)
    } else {
        frame.slice_ref(raw)
    };
    std::str::from_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(bytes)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first `content-length` header of a header block, parsed.
fn find_content_length(head: &[u8]) -> Result<Option<usize>, DecodeError> {
    const NAME: &[u8] = b"content-length:";
    for line in head.split(|&b| b == b'\n').skip(1).map(trim_cr) {
        if let Some(value) = line.strip_prefix(NAME) {
            let text = std::str::from_utf8(value).unwrap_or("");
            return match text.parse::<usize>() {
                Ok(n) if !text.starts_with('+') => Ok(Some(n)),
                _ => Err(DecodeError::InvalidContentLength(
                    String::from_utf8_lossy(&value[..value.len().min(32)]).into_owned(),
                )),
            };
        }
    }
    Ok(None)
}

//! Input: WebSocket unframing, STOMP decoding, the frame-rate limit, and
//! handing each frame to the session.

use bytes::BytesMut;
use stomp::{DecodeError, Item};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};

use super::{websocket, Connection, Pending, Replaying};
use crate::{
    connection::websocket::Control,
    metrics::CloseReason,
    session::{Flow, PendingReplay, StompError},
};

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(super) fn on_read(&mut self) {
        self.last_read = Instant::now();
        self.process_input();
    }

    /// Unframes and handles what is buffered, until it runs out, the
    /// connection closes, or a SUBSCRIBE must become live first.
    pub(super) fn process_input(&mut self) {
        loop {
            match self.ws.read(&mut self.raw, &mut self.stomp) {
                Ok(None) => break,
                Ok(Some(Control::Ping(payload))) => websocket::put_pong(&mut self.write, &payload),
                Ok(Some(Control::Pong)) => {}
                Ok(Some(Control::Close(code))) => {
                    // Echo the client's code (RFC 6455 section 5.5.1).
                    let code = code.unwrap_or(websocket::CLOSE_NORMAL);
                    websocket::put_close(&mut self.write, code, "");
                    self.begin_close(CloseReason::Client);
                    return;
                }
                Err(e) => {
                    let message = match e.code {
                        websocket::CLOSE_INVALID_PAYLOAD => "invalid websocket payload",
                        websocket::CLOSE_TOO_BIG => "message too large",
                        _ => "websocket protocol error",
                    };
                    self.fail_with_code(
                        StompError::new(message).detail(e.reason.to_string()),
                        e.code,
                    );
                    return;
                }
            }
            if self.decode_frames() {
                return;
            }
        }
        self.decode_frames();
        if self.raw.is_empty() {
            self.raw = BytesMut::new();
        }
        if self.stomp.is_empty() && self.decoder.is_idle() {
            self.stomp = BytesMut::new();
        }
    }

    /// Decodes and handles every complete frame. Returns true when input
    /// processing must stop (closing, or waiting for a subscription).
    fn decode_frames(&mut self) -> bool {
        while self.closing.is_none() && self.pending.is_none() {
            let frame = match self.decoder.decode(&mut self.stomp) {
                Ok(Some(Item::Frame(frame))) => frame,
                Ok(Some(Item::HeartBeat)) => continue,
                Ok(None) => return false,
                Err(e) => {
                    let code = match e {
                        DecodeError::FrameTooLarge { .. } => websocket::CLOSE_TOO_BIG,
                        _ => websocket::CLOSE_POLICY,
                    };
                    self.fail_with_code(
                        StompError::new("malformed frame").detail(e.to_string()),
                        code,
                    );
                    return true;
                }
            };
            self.ctx.metrics.frame_in(frame.command);
            if !self.within_frame_rate() {
                let (rate, burst) = (self.ctx.max_frame_rate, self.ctx.frame_burst);
                self.fail(
                    StompError::new("rate limit exceeded")
                        .detail(format!(
                            "more than {rate} frames/s (bursts of up to {burst}) from this connection"
                        ))
                        .reason(CloseReason::RateLimited),
                );
                return true;
            }
            let was_connected = self.session.is_connected();
            let (session, mut out) = self.session_and_output();
            let flow = session.on_frame(frame, &mut out);
            drop(out);
            match flow {
                Ok(Flow::Continue) => {
                    if !was_connected && self.session.is_connected() {
                        self.decoder
                            .set_escaping(self.session.version().escapes_headers());
                    }
                }
                Ok(Flow::Disconnect) => {
                    websocket::put_close(&mut self.write, websocket::CLOSE_NORMAL, "");
                    self.begin_close(CloseReason::Client);
                }
                Ok(Flow::AwaitSubscription(pending)) => {
                    self.pending = Some(Pending::Subscription(pending))
                }
                Ok(Flow::AwaitReplay(pending)) => {
                    let PendingReplay {
                        subscription,
                        receipt,
                    } = *pending;
                    let planned = self
                        .ctx
                        .session
                        .resume
                        .start_resubscription(subscription.clone());
                    self.pending = Some(Pending::Replay(Box::new(Replaying {
                        planned,
                        subscription,
                        receipt,
                    })));
                }
                Ok(Flow::AwaitResume(request)) => {
                    let resolution = self.ctx.session.resume.start_fetch(*request);
                    self.pending = Some(Pending::Resume(resolution));
                }
                Err(e) => self.fail(e),
            }
        }
        true
    }

    /// Takes a token for one client frame; false when the client is over
    /// its rate.
    fn within_frame_rate(&mut self) -> bool {
        let (rate, burst) = (self.ctx.max_frame_rate, self.ctx.frame_burst);
        if rate == 0 {
            return true;
        }
        let now_ms = self.opened.elapsed().as_millis() as u32;
        self.frame_bucket.take(now_ms, rate, burst)
    }
}

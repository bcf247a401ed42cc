//! The connection's one timer: the CONNECT deadline, token expiry, the
//! heart-beat deadlines both ways, and the flush deadline of a close.

use std::time::Duration;

use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};

use super::{websocket, Connection};
use crate::{metrics::CloseReason, session::StompError};

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Handles an expired deadline. Returns a reason when the connection
    /// must end now without flushing.
    pub(super) fn on_timer(&mut self) -> Option<CloseReason> {
        let now = Instant::now();
        if let Some((deadline, reason)) = self.closing {
            return (now >= deadline).then_some(reason);
        }
        if !self.session.is_connected() {
            let connect_timeout = self.ctx.settings.connect_timeout();
            if now >= self.opened + connect_timeout {
                let secs = connect_timeout.as_secs_f64();
                self.fail(
                    StompError::new("connect timeout")
                        .detail(format!(
                            "no CONNECT frame within {secs} s of the WebSocket upgrade"
                        ))
                        .reason(CloseReason::Timeout),
                );
            }
            return None;
        }
        if self.session.expires_at().is_some_and(|at| now >= at) {
            self.fail(
                StompError::new("token expired")
                    .detail("the token this connection authenticated with has expired; reconnect with a fresh one")
                    .reason(CloseReason::TokenExpired),
            );
            return None;
        }
        if let Some(deadline) = self.receive_deadline() {
            if now >= deadline {
                self.fail(
                    StompError::new("heart-beat timeout")
                        .detail("nothing received from the client within the negotiated heart-beat interval")
                        .reason(CloseReason::Timeout),
                );
                return None;
            }
        }
        if let Some(interval) = self.send_interval() {
            if now >= self.last_write + interval {
                if self.session.heartbeat().send.is_some() {
                    websocket::put_data(&mut self.write, websocket::DataKind::Text, b"\n");
                } else {
                    websocket::put_ping(&mut self.write);
                }
                // Count it as written now so the timer does not fire again
                // before the socket has taken it.
                self.last_write = now;
            }
        }
        None
    }

    /// The STOMP heart-beat interval or, without one, the WebSocket keep-alive.
    fn send_interval(&self) -> Option<Duration> {
        let keepalive = self.ctx.settings.keepalive_ping_ms;
        self.session
            .heartbeat()
            .send
            .or_else(|| (keepalive > 0).then(|| Duration::from_millis(keepalive)))
    }

    fn receive_deadline(&self) -> Option<Instant> {
        let interval = self.session.heartbeat().recv?;
        Some(self.last_read + interval.mul_f64(self.ctx.settings.heartbeat_grace))
    }

    pub(super) fn next_deadline(&self) -> Instant {
        if let Some((deadline, _)) = self.closing {
            return deadline;
        }
        if !self.session.is_connected() {
            return self.opened + self.ctx.settings.connect_timeout();
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let send = self.send_interval().map(|i| self.last_write + i);
        [send, self.receive_deadline(), self.session.expires_at()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }
}

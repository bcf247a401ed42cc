//! The task that owns one WebSocket connection after the upgrade.
//!
//! A single task per connection both reads and writes: it waits on the
//! socket, the outbound queue and one timer at once (`poll_event`), so an
//! idle connection costs one small future and no buffers. Read and write
//! buffers exist only while bytes are in flight and are released when they
//! drain. Whatever is queued when the socket becomes writable leaves in one
//! write.

use std::{
    future::{poll_fn, Future},
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use stomp::{Decoder, Item, Version};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::oneshot,
    time::{sleep_until, Instant, Sleep},
};

use crate::{
    metrics::CloseReason,
    node::{InFlight, Node},
    outbound::{CloseRequest, Outbound},
    resume::{metrics::Outcome, Resolution},
    security::{FrameBucket, IpSlot, Principal},
    session::{write_frame, Flow, PendingSubscription, Session, StompError},
    transport::websocket::{self, Control, WsReader},
};

/// How long a closing connection may take to flush its last frames.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket reads go through a stack buffer of this size, then are copied
/// into a heap buffer sized to what arrived.
const READ_CHUNK: usize = 16 * 1024;

enum Event {
    Read,
    SubscriptionLive,
    /// A CONNECT's resume is resolved.
    Resumed(Resolution),
    Eof,
    Outbound,
    Timer,
    Flushed,
    Failed,
}

struct Connection<S> {
    stream: S,
    node: Arc<Node>,
    outbound: Arc<Outbound>,
    session: Session,
    ws: WsReader,
    decoder: Decoder,
    /// Bytes read from the socket, not yet unframed.
    raw: BytesMut,
    /// Unmasked WebSocket payload, not yet decoded as STOMP.
    stomp: BytesMut,
    /// Bytes waiting for the socket.
    write: BytesMut,
    last_read: Instant,
    last_write: Instant,
    opened: Instant,
    /// Set once the connection is closing: no more reads or deliveries,
    /// only flushing until this deadline.
    closing: Option<(Instant, CloseReason)>,
    /// A SUBSCRIBE waiting to be live cluster-wide, or a CONNECT waiting
    /// for its resume; frames after it wait.
    pending: Option<Pending>,
    /// The client's frame rate limit (`--max-frame-rate`).
    frame_bucket: FrameBucket,
    /// Held for the connection's life: its place in the per-IP count.
    _ip_slot: Option<IpSlot>,
    /// The fingerprint of the affinity cookie its upgrade set (0: none),
    /// remembered if the node sheds it (see [`crate::rebalance::bounce`]).
    affinity: u64,
}

/// What input processing waits for.
enum Pending {
    Subscription(Box<PendingSubscription>),
    Resume(oneshot::Receiver<Resolution>),
}

/// What the upgrade established about a connection before it starts.
#[derive(Default)]
pub struct Admission {
    /// The user of a valid `Authorization: Bearer` token on the upgrade.
    pub principal: Option<Arc<Principal>>,
    /// The connection's place in its client IP's count (with a per-IP limit).
    pub ip_slot: Option<IpSlot>,
    /// The fingerprint of the affinity cookie the upgrade response set
    /// (0: none).
    pub affinity: u64,
}

/// Runs one connection to completion. `early` holds bytes the HTTP layer
/// read past the upgrade request.
///
/// `handshake` keeps the node from finishing a drain while this connection is
/// between its upgrade and its entry in the roster.
///
/// The connection's state is built before the returned future, so the
/// future holds only that state: an `async fn` would also keep room for
/// every argument for the connection's whole life.
pub fn run<S>(
    stream: S,
    early: Bytes,
    node: Arc<Node>,
    subprotocol: Option<Version>,
    handshake: InFlight,
    admission: Admission,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // `early` usually is a slice of hyper's 8 KiB read buffer: copy what it
    // holds and drop it now, or the whole buffer would live as long as the
    // connection.
    let raw = BytesMut::from(&early[..]);
    drop(early);
    let outbound = Outbound::new(node.config.outbound_queue);
    let now = Instant::now();
    let Admission {
        principal,
        ip_slot,
        affinity,
    } = admission;
    let mut conn = Connection {
        session: Session::new(node.clone(), outbound.clone(), subprotocol, principal),
        frame_bucket: FrameBucket::new(node.config.frame_burst),
        _ip_slot: ip_slot,
        affinity,
        decoder: Decoder::new(node.config.decoder_limits()),
        stream,
        node,
        outbound,
        ws: WsReader::default(),
        raw,
        stomp: BytesMut::new(),
        write: BytesMut::new(),
        last_read: now,
        last_write: now,
        opened: now,
        closing: None,
        pending: None,
    };
    async move {
        conn.node.metrics.connections_opened.inc();
        conn.node.metrics.connections_current.inc();
        let id = conn.node.connections.insert(conn.outbound.clone());
        // Now in the roster, the drain can see it: the handshake's hold ends.
        drop(handshake);
        let reason = conn.serve().await;
        conn.session.close(reason);
        conn.node.connections.remove(id);
        conn.node.metrics.connection_closed(reason);
        tracing::debug!(reason = reason.as_str(), "connection closed");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn serve(&mut self) -> CloseReason {
        // Deadlines only move later as traffic flows, so the timer is re-armed
        // only when it fires or when a deadline moves earlier (CONNECT
        // received, closing): an early wake-up just re-checks and re-arms.
        let mut armed = self.next_deadline();
        let timer = sleep_until(armed);
        tokio::pin!(timer);
        if !self.raw.is_empty() {
            self.on_read();
        }
        loop {
            let next = self.next_deadline();
            if next < armed {
                armed = next;
                timer.as_mut().reset(armed);
            }
            let event = poll_fn(|cx| self.poll_event(cx, timer.as_mut())).await;
            match event {
                Event::Read => self.on_read(),
                Event::SubscriptionLive => {
                    if let Some(Pending::Subscription(pending)) = self.pending.take() {
                        if let Some(receipt) = &pending.receipt {
                            self.session.write_receipt(receipt, &mut self.write);
                        }
                    }
                    self.process_input();
                }
                Event::Resumed(resolution) => {
                    self.pending = None;
                    self.session.finish_resume(resolution, &mut self.write);
                    self.decoder
                        .set_escaping(self.session.version().escapes_headers());
                    self.process_input();
                }
                Event::Outbound => self.on_outbound(),
                Event::Timer => {
                    if let Some(reason) = self.on_timer() {
                        return reason;
                    }
                    armed = self.next_deadline();
                    timer.as_mut().reset(armed);
                }
                Event::Eof => return self.closing.map_or(CloseReason::Client, |(_, r)| r),
                Event::Failed => return self.closing.map_or(CloseReason::Io, |(_, r)| r),
                Event::Flushed => return self.closing.map_or(CloseReason::Client, |(_, r)| r),
            }
        }
    }

    /// Waits for the next thing to do, making write progress on the way.
    fn poll_event(&mut self, cx: &mut Context<'_>, timer: Pin<&mut Sleep>) -> Poll<Event> {
        while !self.write.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.write) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Event::Failed),
                Poll::Ready(Ok(n)) => {
                    let _ = self.write.split_to(n);
                    self.last_write = Instant::now();
                    self.node.metrics.bytes_out.inc_by(n as u64);
                }
                Poll::Pending => break,
            }
        }
        if self.write.is_empty() {
            // Release the allocation between bursts.
            self.write = BytesMut::new();
            if self.closing.is_some() {
                // Everything is flushed: send FIN. (Shut down in this poll,
                // under the closing deadline of the one timer, rather than
                // with a separate timeout future that would enlarge every
                // connection's state.)
                match Pin::new(&mut self.stream).poll_shutdown(cx) {
                    Poll::Ready(_) => return Poll::Ready(Event::Flushed),
                    Poll::Pending => {}
                }
            }
        }
        let pending_done = match &mut self.pending {
            Some(Pending::Subscription(pending)) => Pin::new(&mut pending.ready)
                .poll(cx)
                .map(|_| Event::SubscriptionLive),
            Some(Pending::Resume(rx)) => Pin::new(rx).poll(cx).map(|result| {
                Event::Resumed(result.unwrap_or(Resolution::Failed(Outcome::Unknown)))
            }),
            None => Poll::Pending,
        };
        if pending_done.is_ready() {
            return pending_done;
        }
        let room = self.write.len() < self.node.config.max_write_buffer;
        if self.closing.is_none() {
            // With the write buffer full, stop reading (back-pressure on a
            // client that sends but does not read) and stop draining the
            // queue, but still notice an overflow: a peer that stopped
            // reading must be cut off even if it never reads again.
            if room {
                match poll_read_chunk(&mut self.stream, cx, &mut self.raw) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                    Poll::Ready(Ok(n)) => {
                        self.node.metrics.bytes_in.inc_by(n as u64);
                        return Poll::Ready(Event::Read);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Event::Failed),
                    Poll::Pending => {}
                }
            }
            if self.outbound.poll_ready(cx).is_ready()
                && (room || self.outbound.has_overflowed() || self.outbound.close_requested())
            {
                return Poll::Ready(Event::Outbound);
            }
        }
        if timer.poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    }

    fn on_read(&mut self) {
        self.last_read = Instant::now();
        self.process_input();
    }

    /// Unframes and handles what is buffered, until it runs out, the
    /// connection closes, or a SUBSCRIBE must become live first.
    fn process_input(&mut self) {
        loop {
            match self.ws.read(&mut self.raw, &mut self.stomp) {
                Ok(None) => break,
                Ok(Some(Control::Ping(payload))) => websocket::put_pong(&mut self.write, &payload),
                Ok(Some(Control::Pong)) => {}
                Ok(Some(Control::Close)) => {
                    websocket::put_close(&mut self.write, websocket::CLOSE_NORMAL, "");
                    self.begin_close(CloseReason::Client);
                    return;
                }
                Err(e) => {
                    self.fail(StompError::new("websocket protocol error").detail(e.0.to_string()));
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
                    self.fail(StompError::new("malformed frame").detail(e.to_string()));
                    return true;
                }
            };
            self.node.metrics.frame_in(frame.command);
            if !self.within_frame_rate() {
                let config = &self.node.config;
                let (rate, burst) = (config.max_frame_rate, config.frame_burst);
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
            match self.session.on_frame(frame, &mut self.write) {
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
                Ok(Flow::AwaitResume(rx)) => self.pending = Some(Pending::Resume(rx)),
                Err(e) => self.fail(e),
            }
        }
        true
    }

    /// Takes a token for one client frame; false when the client is over
    /// its rate.
    fn within_frame_rate(&mut self) -> bool {
        let config = &self.node.config;
        if config.max_frame_rate == 0 {
            return true;
        }
        let now_ms = self.opened.elapsed().as_millis() as u32;
        self.frame_bucket
            .take(now_ms, config.max_frame_rate, config.frame_burst)
    }

    fn on_outbound(&mut self) {
        if self.outbound.has_overflowed() {
            let capacity = self.node.config.outbound_queue;
            self.fail(
                StompError::new("slow consumer")
                    .detail(format!(
                        "more than {capacity} messages were waiting to be sent to this connection"
                    ))
                    .reason(CloseReason::SlowConsumer),
            );
            return;
        }
        match self.outbound.close_request() {
            Some(CloseRequest::Drain) => {
                self.hand_off(
                    StompError::new("server restarting")
                        .detail("this node is shutting down; reconnect to continue")
                        .reason(CloseReason::Drain),
                );
                return;
            }
            Some(CloseRequest::Rebalance) if self.session.is_movable() => {
                self.node
                    .rebalance
                    .bounces
                    .remember(self.affinity, tokio::time::Instant::now());
                self.hand_off(
                    StompError::new("rebalancing")
                        .detail(
                            "this node holds more than its share of the cluster's connections; \
                             reconnect (with the resume-token) to continue on another node",
                        )
                        .header("reason", "rebalance")
                        .reason(CloseReason::Rebalance),
                );
                return;
            }
            Some(CloseRequest::Rebalance) => self.outbound.cancel_shed(),
            None => {}
        }
        self.write_queued(self.node.config.max_write_buffer);
    }

    /// Closes on the node's initiative (drain, rebalance): everything
    /// already queued goes out, then `error` with a handoff resume token
    /// taken after that flush, so its positions are what the client got.
    fn hand_off(&mut self, mut error: StompError) {
        self.write_queued(usize::MAX);
        if let Some(token) = self.session.handoff_token() {
            error = error.header(crate::resume::TOKEN_HEADER, token);
        }
        self.fail(error);
    }

    /// Moves queued deliveries into the write buffer until it holds `limit`
    /// bytes or the queue is empty.
    fn write_queued(&mut self, limit: usize) {
        let mode = self.node.config.message_frames;
        let metrics = &self.node.metrics;
        let mut taken = 0u64;
        let mut written = 0u64;
        let mut failed = None;
        while self.write.len() < limit {
            let Some(delivery) = self.outbound.pop() else {
                break;
            };
            if taken == 0 {
                // The oldest message of the batch: its wait is the batch's worst.
                metrics
                    .delivery_latency
                    .observe(delivery.message.age().as_secs_f64());
            }
            taken += 1;
            match self.session.write_delivery(delivery, mode, &mut self.write) {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.fail(e);
        }
        let metrics = &self.node.metrics;
        if taken > 0 {
            metrics.write_batch.observe(taken as f64);
            metrics.deliveries_written.inc_by(written);
            metrics.frames_out(stomp::Command::Message, written);
        }
    }

    /// Handles an expired deadline. Returns a reason when the connection
    /// must end now without flushing.
    fn on_timer(&mut self) -> Option<CloseReason> {
        let now = Instant::now();
        if let Some((deadline, reason)) = self.closing {
            return (now >= deadline).then_some(reason);
        }
        let config = &self.node.config;
        if !self.session.is_connected() {
            if now >= self.opened + config.connect_timeout() {
                let secs = config.connect_timeout().as_secs_f64();
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
        let keepalive = self.node.config.keepalive_ping_ms;
        self.session
            .heartbeat()
            .send
            .or_else(|| (keepalive > 0).then(|| Duration::from_millis(keepalive)))
    }

    fn receive_deadline(&self) -> Option<Instant> {
        let interval = self.session.heartbeat().recv?;
        Some(self.last_read + interval.mul_f64(self.node.config.heartbeat_grace))
    }

    fn next_deadline(&self) -> Instant {
        if let Some((deadline, _)) = self.closing {
            return deadline;
        }
        if !self.session.is_connected() {
            return self.opened + self.node.config.connect_timeout();
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let send = self.send_interval().map(|i| self.last_write + i);
        [send, self.receive_deadline(), self.session.expires_at()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    /// Sends the ERROR frame for `error`, then closes.
    fn fail(&mut self, error: StompError) {
        if self.closing.is_some() {
            return;
        }
        tracing::debug!(message = %error.message, detail = ?error.detail, "closing connection with ERROR");
        self.node.metrics.frames_out(stomp::Command::Error, 1);
        write_frame(&mut self.write, &error.to_frame(), self.session.version());
        websocket::put_close(&mut self.write, websocket::CLOSE_POLICY, &error.message);
        self.begin_close(error.reason);
    }

    fn begin_close(&mut self, reason: CloseReason) {
        if self.closing.is_none() {
            self.closing = Some((Instant::now() + CLOSE_FLUSH_TIMEOUT, reason));
            self.outbound.close();
        }
    }
}

/// Reads whatever the socket has into a stack buffer and appends it to
/// `dst`, so no heap buffer exists while the connection is idle.
fn poll_read_chunk<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    dst: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut chunk = [0u8; READ_CHUNK];
    let mut buf = ReadBuf::new(&mut chunk);
    match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => {
            dst.extend_from_slice(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    /// Every idle connection pays for its task's future: the memory budget
    /// (2 KiB per idle client, see docs/architecture.md) leaves it well
    /// under 1 KiB. A new field or a second timer future shows up here.
    #[test]
    fn connection_future_stays_small() {
        let node = crate::node::Node::embedded(crate::config::Config::default()).unwrap();
        let handshake = node.in_flight();
        let future = super::run(
            tokio::io::empty(),
            bytes::Bytes::new(),
            node,
            None,
            handshake,
            super::Admission::default(),
        );
        let size = std::mem::size_of_val(&future);
        assert!(size <= 800, "connection future grew to {size} bytes");
    }
}

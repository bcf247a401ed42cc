//! The task that owns one WebSocket connection after the upgrade.
//!
//! A single task per connection both reads and writes: it waits on the
//! socket, the outbound queue and one timer at once (`poll_event`), so an
//! idle connection costs one small future and no buffers. Read and write
//! buffers exist only while bytes are in flight and are released when they
//! drain. Whatever is queued when the socket becomes writable leaves in one
//! write.
//!
//! The connection decides only what concerns its socket: reading and
//! unframing (`input.rs`), writing and the closes a node starts
//! (`writer.rs`), and its deadlines (`timers.rs`). STOMP is the session's;
//! this task feeds it frames and deliveries and frames what it writes.

use std::{
    future::{poll_fn, Future},
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use stomp::{Decoder, Version};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::oneshot,
    time::{sleep_until, Instant, Sleep},
};

mod context;
mod input;
mod timers;
pub mod websocket;
mod writer;

pub use context::ConnectionContext;
use websocket::WsReader;

use crate::{
    drain::InFlight,
    hub::Outbound,
    metrics::CloseReason,
    resume::{metrics::Outcome, state::SavedSubscription, Planned, Resolution},
    security::{FrameBucket, IpSlot, Principal},
    session::{write_frame, PendingSubscription, Session, StompError},
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
    /// A SUBSCRIBE's `resume-from` replay is fetched.
    Replayed(Planned),
    Eof,
    Outbound,
    Timer,
    Flushed,
    Failed,
}

struct Connection<S> {
    stream: S,
    ctx: Arc<ConnectionContext>,
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
    Replay(Box<Replaying>),
}

/// A SUBSCRIBE with `resume-from` whose replay is being fetched.
struct Replaying {
    planned: oneshot::Receiver<Planned>,
    /// What to join with if the fetch fails: the subscription, reported
    /// with a gap.
    subscription: SavedSubscription,
    receipt: Option<String>,
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
    /// The upgrade negotiated permessage-deflate.
    pub deflate: bool,
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
    ctx: Arc<ConnectionContext>,
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
    let outbound = Outbound::new(ctx.settings.outbound_queue);
    let now = Instant::now();
    let Admission {
        principal,
        ip_slot,
        affinity,
        deflate,
    } = admission;
    // A WebSocket message may carry more than one STOMP frame, but never
    // more than two of the largest.
    let max_message = (ctx.decoder_limits.max_frame_bytes as u64).saturating_mul(2);
    let mut conn = Connection {
        session: Session::new(
            ctx.session.clone(),
            outbound.clone(),
            subprotocol,
            principal,
        ),
        frame_bucket: FrameBucket::new(ctx.frame_burst),
        _ip_slot: ip_slot,
        affinity,
        decoder: Decoder::new(ctx.decoder_limits),
        stream,
        ctx,
        outbound,
        ws: WsReader::new(max_message, deflate),
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
        conn.ctx.metrics.connections_opened.inc();
        conn.ctx.metrics.connections_current.inc();
        if conn.ws.deflates() {
            conn.ctx.metrics.deflate_connections.inc();
        }
        let id = conn.ctx.roster.insert(conn.outbound.clone());
        // Now in the roster, the drain can see it: the handshake's hold ends.
        drop(handshake);
        let reason = conn.serve().await;
        conn.session.close(reason);
        conn.ctx.roster.remove(id);
        conn.ctx.metrics.connection_closed(reason);
        if conn.ws.deflates() {
            conn.ctx.metrics.deflate_connections.dec();
        }
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
                            let (session, mut out) = self.session_and_output();
                            session.write_receipt(receipt, &mut out);
                        }
                    }
                    self.process_input();
                }
                Event::Resumed(resolution) => {
                    self.pending = None;
                    let (session, mut out) = self.session_and_output();
                    session.finish_resume(resolution, &mut out);
                    drop(out);
                    self.decoder
                        .set_escaping(self.session.version().escapes_headers());
                    self.process_input();
                }
                Event::Replayed(planned) => {
                    if let Some(Pending::Replay(replaying)) = self.pending.take() {
                        let (session, mut out) = self.session_and_output();
                        session.finish_resubscription(
                            planned,
                            replaying.receipt.as_deref(),
                            &mut out,
                        );
                    }
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
                    self.ctx.metrics.bytes_out.inc_by(n as u64);
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
        let pending_done =
            match &mut self.pending {
                Some(Pending::Subscription(pending)) => Pin::new(&mut pending.ready)
                    .poll(cx)
                    .map(|_| Event::SubscriptionLive),
                Some(Pending::Resume(rx)) => Pin::new(rx).poll(cx).map(|result| {
                    Event::Resumed(result.unwrap_or(Resolution::Failed(Outcome::Unknown)))
                }),
                Some(Pending::Replay(replaying)) => {
                    Pin::new(&mut replaying.planned).poll(cx).map(|result| {
                        Event::Replayed(result.unwrap_or_else(|_| {
                            Planned::unreplayed(replaying.subscription.clone())
                        }))
                    })
                }
                None => Poll::Pending,
            };
        if pending_done.is_ready() {
            return pending_done;
        }
        let room = self.write.len() < self.ctx.settings.max_write_buffer;
        if self.closing.is_none() {
            // With the write buffer full, stop reading (back-pressure on a
            // client that sends but does not read) and stop draining the
            // queue, but still notice an overflow: a peer that stopped
            // reading must be cut off even if it never reads again.
            if room {
                match poll_read_chunk(&mut self.stream, cx, &mut self.raw) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                    Poll::Ready(Ok(n)) => {
                        self.ctx.metrics.bytes_in.inc_by(n as u64);
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

    /// Sends the ERROR frame for `error`, then closes with the WebSocket
    /// code its reason maps to: 1001 (going away) when the node moves the
    /// client on, 1008 (policy violation) for every STOMP-level error.
    pub(super) fn fail(&mut self, error: StompError) {
        let code = match error.reason {
            CloseReason::Drain | CloseReason::Rebalance => websocket::CLOSE_GOING_AWAY,
            _ => websocket::CLOSE_POLICY,
        };
        self.fail_with_code(error, code);
    }

    /// Sends the ERROR frame for `error` (a STOMP client reads why), then a
    /// close frame with `code` (a WebSocket library reports it).
    pub(super) fn fail_with_code(&mut self, error: StompError, code: u16) {
        if self.closing.is_some() {
            return;
        }
        tracing::debug!(message = %error.message, detail = ?error.detail, "closing connection with ERROR");
        self.ctx.metrics.frames_out(stomp::Command::Error, 1);
        let (session, mut out) = self.session_and_output();
        write_frame(&mut out, &error.to_frame(), session.version());
        drop(out);
        websocket::put_close(&mut self.write, code, &error.message);
        self.begin_close(error.reason);
    }

    pub(super) fn begin_close(&mut self, reason: CloseReason) {
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
    // Uninitialised: this runs on every wake-up of the task, most of them
    // for outbound messages with nothing to read, and zeroing 16 KiB each
    // time cost more than the rest of a delivery's user-space work (and
    // evicted half of L1). The reader only ever exposes what it filled.
    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut buf = ReadBuf::uninit(&mut chunk);
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
        let handshake = node.lifecycle().in_flight();
        let future = super::run(
            tokio::io::empty(),
            bytes::Bytes::new(),
            node.connection_context().clone(),
            None,
            handshake,
            super::Admission::default(),
        );
        let size = std::mem::size_of_val(&future);
        assert!(size <= 800, "connection future grew to {size} bytes");
    }
}

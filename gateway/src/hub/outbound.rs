//! One connection's bounded outbound queue, fed by the fan-out.
//!
//! Many publishers push concurrently and one connection task pops. The queue
//! is lock-free ([`SegQueue`]) so the fan-out takes no lock per subscriber.
//! It is allocated on the first push (a `SegQueue` is ~300 bytes of
//! cache-padded indices), so a connection that never receives a message
//! pays 16 bytes for it; its blocks are freed as they drain.
//! Bounding is an atomic counter: a push that would exceed the capacity is
//! refused and flags the connection as a slow consumer instead of growing.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;
use crossbeam_queue::SegQueue;

use super::message::EncodedMessage;

/// One message for one subscription of one connection: a shared encoded
/// message and the connection-local key of the subscription it matched.
pub struct Delivery {
    pub message: Arc<EncodedMessage>,
    pub subscription: u32,
}

/// The producer/consumer handle shared by the registry and the connection.
pub struct Outbound {
    queue: OnceLock<Box<SegQueue<Delivery>>>,
    len: AtomicUsize,
    capacity: usize,
    /// Room added by resume replays, given back as the queue drains, so a
    /// replay never makes the first live message look like an overflow.
    replay_room: AtomicUsize,
    overflowed: AtomicBool,
    closed: AtomicBool,
    /// A [`CloseRequest`] as its `u8`, 0 for none.
    close_request: AtomicU8,
    /// A [`Movability`] as its `u8`, kept up to date by the session so the
    /// rebalancer can choose whom to shed without touching sessions.
    movability: AtomicU8,
    /// The authenticated user, set at CONNECT, so a backend can disconnect
    /// every connection of one user without touching sessions.
    user: OnceLock<Box<str>>,
    /// Why a backend disconnected it (with [`CloseRequest::Disconnect`]).
    disconnect_reason: OnceLock<Box<str>>,
    waker: AtomicWaker,
}

/// Why the node asks a connection to flush and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRequest {
    /// The node is shutting down.
    Drain = 1,
    /// The node holds more than its share of the fleet's connections.
    Rebalance = 2,
    /// A backend disconnected the connection's user.
    Disconnect = 3,
}

/// How well a connection's session survives a move to another node; the
/// rebalancer sheds [`Movability::Lossless`] ones first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Movability {
    /// Not connected, STOMP 1.0, resume off, or client-ack subscriptions
    /// (whose unacknowledged messages a resume would not redeliver).
    Pinned = 0,
    /// Resumable; a subscription to a destination the new node does not
    /// replay may report a gap (`resume-lost`).
    Resumable = 1,
    /// Resumable, and every subscription is to a durable destination that
    /// any node replays from Redis.
    Lossless = 2,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: the message was not queued and the connection is
    /// now marked as a slow consumer.
    Overflow,
    /// The connection is closing; the message was dropped.
    Closed,
}

impl Outbound {
    pub fn new(capacity: usize) -> Arc<Outbound> {
        Arc::new(Outbound {
            queue: OnceLock::new(),
            len: AtomicUsize::new(0),
            capacity,
            replay_room: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            close_request: AtomicU8::new(0),
            movability: AtomicU8::new(Movability::Pinned as u8),
            user: OnceLock::new(),
            disconnect_reason: OnceLock::new(),
            waker: AtomicWaker::new(),
        })
    }

    /// Called by the fan-out for every matching subscriber: one atomic add,
    /// one lock-free push, one wake. Never blocks.
    pub fn push(&self, delivery: Delivery) -> Pushed {
        if self.closed.load(Ordering::Relaxed) {
            return Pushed::Closed;
        }
        let capacity = self.capacity + self.replay_room.load(Ordering::Relaxed);
        if self.len.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            if !self.overflowed.swap(true, Ordering::AcqRel) {
                self.waker.wake();
            }
            return Pushed::Overflow;
        }
        self.queue
            .get_or_init(|| Box::new(SegQueue::new()))
            .push(delivery);
        self.waker.wake();
        Pushed::Queued
    }

    /// Queues a missed message for a resuming subscription in room of its
    /// own: a resume replays at most a ring's (or a recent stream's) worth
    /// per subscription, and live messages keep the whole capacity.
    pub fn push_replay(&self, delivery: Delivery) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        self.replay_room.fetch_add(1, Ordering::AcqRel);
        self.len.fetch_add(1, Ordering::AcqRel);
        self.queue
            .get_or_init(|| Box::new(SegQueue::new()))
            .push(delivery);
        self.waker.wake();
    }

    pub fn pop(&self) -> Option<Delivery> {
        let delivery = self.queue.get()?.pop()?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        if self.replay_room.load(Ordering::Relaxed) > 0 {
            let _ = self
                .replay_room
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |r| r.checked_sub(1));
        }
        Some(delivery)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.get().is_none_or(|q| q.is_empty())
    }

    /// Closed: its connection ended (or it is a resume hold's).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn has_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Asks the connection to flush what is queued and close (drain). A
    /// drain overrides a rebalance request not yet acted on, not a
    /// backend's disconnect.
    pub fn request_close(&self) {
        let _ = self
            .close_request
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != CloseRequest::Disconnect as u8).then_some(CloseRequest::Drain as u8)
            });
        self.waker.wake();
    }

    /// Asks the connection to flush, hand its client a resume token and
    /// close, so it reconnects elsewhere. False when a close was already
    /// requested.
    pub fn request_shed(&self) -> bool {
        let asked = self
            .close_request
            .compare_exchange(
                0,
                CloseRequest::Rebalance as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if asked {
            self.waker.wake();
        }
        asked
    }

    /// Names the connection's authenticated user (once, at CONNECT).
    pub fn set_user(&self, user: &str) {
        let _ = self.user.set(user.into());
    }

    pub fn user(&self) -> Option<&str> {
        self.user.get().map(|u| &**u)
    }

    /// Asks the connection to close with ERROR `disconnected` and `reason`:
    /// its user was disconnected by a backend. Overrides a drain or a
    /// rebalance (neither of which should let the client resume).
    pub fn request_disconnect(&self, reason: &str) {
        let _ = self.disconnect_reason.set(reason.into());
        self.close_request
            .store(CloseRequest::Disconnect as u8, Ordering::Release);
        self.waker.wake();
    }

    pub fn disconnect_reason(&self) -> &str {
        self.disconnect_reason.get().map_or("", |r| &**r)
    }

    /// Withdraws a rebalance request the connection cannot honour (its
    /// session stopped being movable); a drain request stays.
    pub fn cancel_shed(&self) {
        let _ = self.close_request.compare_exchange(
            CloseRequest::Rebalance as u8,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub fn close_requested(&self) -> bool {
        self.close_request.load(Ordering::Acquire) != 0
    }

    /// The pending close request, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        match self.close_request.load(Ordering::Acquire) {
            1 => Some(CloseRequest::Drain),
            2 => Some(CloseRequest::Rebalance),
            3 => Some(CloseRequest::Disconnect),
            _ => None,
        }
    }

    pub fn set_movability(&self, movability: Movability) {
        self.movability.store(movability as u8, Ordering::Relaxed);
    }

    pub fn movability(&self) -> Movability {
        match self.movability.load(Ordering::Relaxed) {
            2 => Movability::Lossless,
            1 => Movability::Resumable,
            _ => Movability::Pinned,
        }
    }

    /// Ready when there is something to pop, the queue overflowed, or a
    /// close was requested.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if !self.is_empty() || self.has_overflowed() || self.close_requested() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Stops accepting pushes and drops what is queued.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        while self.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::message::EncodedMessage;

    fn delivery() -> Delivery {
        Delivery {
            message: EncodedMessage::for_test(b"x"),
            subscription: 1,
        }
    }

    #[test]
    fn push_beyond_capacity_overflows_without_growing() {
        let q = Outbound::new(2);
        assert_eq!(q.push(delivery()), Pushed::Queued);
        assert_eq!(q.push(delivery()), Pushed::Queued);
        assert_eq!(q.push(delivery()), Pushed::Overflow);
        assert_eq!(q.len(), 2);
        assert!(q.has_overflowed());
        assert!(q.pop().is_some() && q.pop().is_some() && q.pop().is_none());
    }

    #[test]
    fn replay_has_room_of_its_own_given_back_as_it_drains() {
        let q = Outbound::new(2);
        for _ in 0..5 {
            q.push_replay(delivery());
        }
        assert_eq!(q.push(delivery()), Pushed::Queued);
        assert_eq!(q.push(delivery()), Pushed::Queued);
        assert_eq!(q.push(delivery()), Pushed::Overflow);
        for _ in 0..7 {
            assert!(q.pop().is_some());
        }
        assert!(q.pop().is_none());
        assert_eq!(q.push(delivery()), Pushed::Queued);
        assert_eq!(q.push(delivery()), Pushed::Queued);
        assert_eq!(
            q.push(delivery()),
            Pushed::Overflow,
            "room returned to the capacity"
        );
    }

    #[test]
    fn a_drain_overrides_a_shed_but_not_the_reverse() {
        let q = Outbound::new(1);
        assert_eq!(q.close_request(), None);
        assert!(q.request_shed());
        assert!(!q.request_shed(), "asked once");
        assert_eq!(q.close_request(), Some(CloseRequest::Rebalance));
        q.request_close();
        assert_eq!(q.close_request(), Some(CloseRequest::Drain));
        assert!(!q.request_shed());
        assert_eq!(q.close_request(), Some(CloseRequest::Drain));
    }

    #[test]
    fn closed_queue_drops_pushes() {
        let q = Outbound::new(4);
        q.push(delivery());
        q.close();
        assert_eq!(q.len(), 0);
        assert_eq!(q.push(delivery()), Pushed::Closed);
    }
}

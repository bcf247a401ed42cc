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
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;
use crossbeam_queue::SegQueue;

use crate::message::EncodedMessage;

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
    close_requested: AtomicBool,
    waker: AtomicWaker,
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
            close_requested: AtomicBool::new(false),
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

    /// Asks the connection to flush what is queued and close (drain).
    pub fn request_close(&self) {
        self.close_requested.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn close_requested(&self) -> bool {
        self.close_requested.load(Ordering::Acquire)
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
    use crate::message::EncodedMessage;

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
    fn closed_queue_drops_pushes() {
        let q = Outbound::new(4);
        q.push(delivery());
        q.close();
        assert_eq!(q.len(), 0);
        assert_eq!(q.push(delivery()), Pushed::Closed);
    }
}

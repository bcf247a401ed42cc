//! The hub: who is subscribed to what on this node, and the path a
//! publication takes to their connections.
//!
//! * [`registry`]: destination → subscribers, sharded, with copy-on-write
//!   snapshots; tells the broker when the node's interest in a destination
//!   begins and ends.
//! * [`fanout`]: the broker's delivery sink; encodes a publication once
//!   ([`message`]) and pushes one shared pointer per subscriber.
//! * [`outbound`]: each connection's bounded queue, the only thing the
//!   fan-out touches per subscriber.
//! * [`ring`]: the per-destination replay rings resume draws on, filled
//!   under the same lock as the fan-out's snapshot.
//!
//! The hub calls down into the broker only; sessions and resume call into
//! it, and connections drain their queues. Nothing here knows about
//! sockets, STOMP sessions or resume tokens.

pub mod fanout;
pub mod message;
pub mod outbound;
pub mod registry;
pub mod ring;

pub use fanout::Fanout;
pub use message::EncodedMessage;
pub use outbound::{CloseRequest, Delivery, Movability, Outbound};
pub use registry::{Membership, Registry, Restored, Subscriber, RESERVED_PREFIX};

//! Headers only the server may set. A SEND (or a server-side publish
//! through the api) that carries one has it dropped, so receivers and the
//! history can trust what they read there.

/// The header carrying a message's position in its destination (see
/// `docs/protocol.md`, Positions).
pub const POSITION_HEADER: &str = "position";

/// The header naming an authenticated sender; the gateway sets it on every
/// message from an authenticated connection (as RabbitMQ's validated
/// `user-id`).
pub const USER_ID_HEADER: &str = "user-id";

/// Header names a SEND may not pass through to MESSAGE: they describe the
/// SEND frame itself or are set by the server.
pub const RESERVED_HEADERS: &[&str] = &[
    "destination",
    "message-id",
    "subscription",
    "ack",
    "receipt",
    "transaction",
    "content-length",
    POSITION_HEADER,
];

-- Messages of durable destinations, one row per stream entry.
--
-- The primary key is also the history index: a page of one destination's
-- history is one backward range scan of (destination, position) that stops
-- after `limit` rows, whatever the table's size (see docs/api.md).
CREATE TABLE messages (
    destination  text   NOT NULL,
    -- The Redis stream entry id, <position_ms>-<position_seq>: the message's
    -- identity (redeliveries carry the same one) and the history cursor.
    -- position_ms is Redis's clock at the append, i.e. the publish time.
    position_ms  bigint NOT NULL,
    position_seq bigint NOT NULL,
    -- The STOMP message-id the gateways delivered it with.
    message_id   text   NOT NULL,
    -- The gateway node (or api instance) that published it.
    origin       text   NOT NULL,
    -- Application headers as a JSON object (first occurrence wins, as in
    -- STOMP); includes the server-set user-id of authenticated senders.
    headers      jsonb  NOT NULL,
    body         bytea  NOT NULL,
    PRIMARY KEY (destination, position_ms, position_seq)
);

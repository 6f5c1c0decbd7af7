//! A sans-IO NATS Streaming client over one NATS connection.
//!
//! The simulator, the benchmark and the tests need a client whose every byte and every
//! timer is in the caller's hands, so this one speaks both layers itself: the NATS client
//! protocol (CONNECT, PING/PONG, SUB/UNSUB of its inboxes) and STAN on top of it, with the
//! subjects and flows of shared/spec/PROTOCOL.md §1.4, §2.1 and §3.
//!
//! It is driven like the server:
//!
//! ```text
//! let mut c = Client::new(cfg, now);
//! c.handle_input(now, bytes_read);          // bytes arrived from the server
//! c.handle_timeout(now);                     // time passed
//! while let Some(bytes) = c.poll_transmit() { /* write them */ }
//! while let Some(event) = c.poll_event() { /* Connected, PubAck, Msg, ... */ }
//! let next = c.poll_timeout();               // when to call handle_timeout next
//! ```
//!
//! Every operation started through the API ends with exactly one event (a publish with
//! `PubAck`, a subscribe with `Subscribed` or `SubscribeFailed`, ...), also when the
//! connection ends first; the connection's own end (`ConnectFailed`, `ConnectionLost`,
//! `Closed`) is always the last event. Refusals by the server are events carrying the
//! server's text verbatim; `Err` is kept for calls the client state does not allow.

mod connection;
mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use connection::Client;

use crate::streaming::pb::MsgProto;

/// How a client connects and how long it waits for answers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub cluster_id: String,
    /// Must match `^[a-zA-Z0-9_-]+$` for the server to accept it; also the NATS
    /// connection name.
    pub client_id: String,
    /// The connect request goes to `<discover_prefix>.<cluster_id>`.
    pub discover_prefix: String,
    /// Client→server ping period asked for in the connect request; the server echoes it
    /// and the echo is what the client uses. Negative values mean milliseconds, which
    /// the server accepts for tests.
    pub ping_interval_secs: i32,
    /// Unanswered pings tolerated before the connection is declared lost.
    pub ping_max_out: i32,
    /// Wait for the connect, subscribe, unsubscribe and close responses.
    pub connect_wait: Duration,
    /// Wait for each PubAck.
    pub pub_ack_wait: Duration,
    /// Publishes awaiting their PubAck beyond which [`Client::can_publish`] says no.
    pub max_pub_acks_inflight: usize,
    /// Seeds every inbox, connection ID and message GUID this client makes.
    pub rng_seed: u64,
}

impl ClientConfig {
    /// The defaults of the Go client (§3.1, §3.2, §3.9), except `ping_max_out` 3, which
    /// declares a dead server after about 20 s instead of minutes.
    pub fn new(cluster_id: impl Into<String>, client_id: impl Into<String>, rng_seed: u64) -> Self {
        ClientConfig {
            cluster_id: cluster_id.into(),
            client_id: client_id.into(),
            discover_prefix: "_STAN.discover".into(),
            ping_interval_secs: 5,
            ping_max_out: 3,
            connect_wait: Duration::from_secs(2),
            pub_ack_wait: Duration::from_secs(30),
            max_pub_acks_inflight: 16_384,
            rng_seed,
        }
    }
}

/// Where a new subscription starts (§3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Only messages published after the subscription is created.
    #[default]
    NewOnly,
    /// The last stored message, then new ones.
    LastReceived,
    /// The oldest stored message ("deliver all available").
    First,
    /// The message with this sequence (clamped by the server to what is stored).
    Sequence(u64),
    /// Messages stored no longer than this before the subscribe request.
    TimeDelta(Duration),
    /// Messages stored at or after this wall-clock time (Unix nanoseconds); sent as a
    /// delta from the caller's `now`, as the protocol carries only deltas.
    Time(i64),
}

/// Options of one subscription; the defaults are the Go client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub queue_group: Option<String>,
    pub durable_name: Option<String>,
    /// Most unacknowledged messages the server sends at once.
    pub max_in_flight: i32,
    /// Seconds before the server redelivers an unacknowledged message.
    pub ack_wait_secs: i32,
    pub start: StartAt,
    /// When set, messages are acknowledged only through [`Client::ack`]; otherwise each
    /// one is acknowledged as it arrives.
    pub manual_ack: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            queue_group: None,
            durable_name: None,
            max_in_flight: 1024,
            ack_wait_secs: 30,
            start: StartAt::NewOnly,
            manual_ack: false,
        }
    }
}

/// Names one subscription of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubHandle(u64);

/// The unique ID of one published message, echoed by its PubAck.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(String);

impl Guid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something the application should learn about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server accepted the connect request; publishing and subscribing may start.
    Connected,
    /// The connection never came up: the server's error, or a timeout. Final.
    ConnectFailed(String),
    /// The end of one publish: acknowledged (`error: None`), refused by the server, or
    /// given up on.
    PubAck {
        guid: Guid,
        error: Option<String>,
    },
    /// A delivery (or redelivery) to a subscription.
    Msg {
        sub: SubHandle,
        msg: MsgProto,
    },
    Subscribed {
        sub: SubHandle,
    },
    SubscribeFailed {
        sub: SubHandle,
        error: String,
    },
    /// The end of an unsubscribe or subscription close; the subscription is gone from
    /// this client either way.
    Unsubscribed {
        sub: SubHandle,
        error: Option<String>,
    },
    /// The end of [`Client::close`]. Final.
    Closed {
        error: Option<String>,
    },
    /// The connection ended without being closed: ping failure, a server that no longer
    /// knows this client, or the NATS connection breaking. Final.
    ConnectionLost(String),
}

/// A call the client cannot carry out in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection is closing, closed or lost.
    #[error("stan: connection closed")]
    ConnectionClosed,
    /// The server has not accepted the connection yet.
    #[error("stan: invalid connection")]
    NotConnected,
    /// Unknown subscription, or one whose subscribe or unsubscribe is still under way.
    #[error("stan: invalid subscription")]
    InvalidSubscription,
    /// The server gave no subject for closing subscriptions (§4).
    #[error("stan: not supported by server")]
    NotSupported,
    #[error("stan: cannot manually ack in auto-ack mode")]
    ManualAckInAutoMode,
    /// The message would exceed the server's `max_payload`, which would end the NATS
    /// connection.
    #[error("nats: maximum payload exceeded")]
    MaxPayload,
}

/// Client-side error texts, worded as the Go client words them (§5) because
/// applications match on them.
pub mod errors {
    pub const CONNECT_TIMEOUT: &str = "stan: connect request timeout (possibly wrong cluster ID?)";
    pub const SUBSCRIBE_TIMEOUT: &str = "stan: subscribe request timeout";
    pub const UNSUBSCRIBE_TIMEOUT: &str = "stan: unsubscribe request timeout";
    pub const CLOSE_TIMEOUT: &str = "stan: close request timeout";
    pub const PUB_ACK_TIMEOUT: &str = "stan: publish ack timeout";
    pub const CONNECTION_CLOSED: &str = "stan: connection closed";
    pub const PING_FAILURE: &str = "stan: connection lost due to PING failure";
    /// No INFO from the NATS server within the connect wait.
    pub const NATS_TIMEOUT: &str = "nats: timeout";
    /// The NATS connection ended under the client.
    pub const NATS_CONNECTION_CLOSED: &str = "nats: connection closed";
}

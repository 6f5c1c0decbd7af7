//! Per-connection state of the embedded NATS server and the JSON it exchanges on
//! connect (`INFO` out, `CONNECT` in).

use core::net::SocketAddr;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::account::AccountId;
use super::sublist::SubKey;
use crate::time::{Instant, Now};

/// Identifies a client connection; also the `cid` shown by monitoring.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Where a connection is in its life, named for what it waits for next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Authentication is required and no CONNECT has been accepted yet.
    AwaitingConnect,
    /// Operations are accepted.
    Open,
    /// The server decided to close; remaining output is flushed, then the socket closed.
    Closing,
}

/// Why a connection ended, in the NATS server's monitoring vocabulary.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum CloseReason {
    ClientClosed,
    AuthenticationTimeout,
    AuthenticationViolation,
    ParseError,
    ProtocolViolation,
    MaxPayloadExceeded,
    MaxControlLineExceeded,
    StaleConnection,
    SlowConsumerPendingBytes,
    MaxConnectionsExceeded,
    NoRespondersRequiresHeaders,
    ServerShutdown,
    TlsHandshakeError,
    DuplicateRoute,
    ClusterNameConflict,
    DuplicateServerName,
    WrongPort,
    WrongGateway,
    RouteRemoved,
}

impl CloseReason {
    /// The text the NATS server shows for this reason in `/connz` and its logs.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::ParseError => "Parse Error",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::NoRespondersRequiresHeaders => "No Responders Requires Headers",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::TlsHandshakeError => "TLS Handshake Failure",
            CloseReason::DuplicateRoute => "Duplicate Route",
            CloseReason::ClusterNameConflict => "Cluster Name Conflict",
            CloseReason::DuplicateServerName => "Duplicate Server Name",
            CloseReason::WrongPort => "Wrong Port",
            CloseReason::WrongGateway => "Wrong Gateway",
            CloseReason::RouteRemoved => "Route Removed",
        }
    }
}

/// The `CONNECT` options a client may send; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConnectOptions {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub auth_token: Option<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub protocol: i32,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: false,
            pedantic: false,
            tls_required: false,
            auth_token: None,
            user: None,
            pass: None,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            protocol: 0,
            // Echo is on unless a client turns it off.
            echo: true,
            headers: false,
            no_responders: false,
        }
    }
}

/// The `INFO` document sent on accept.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Info<'a> {
    pub server_id: &'a str,
    pub server_name: &'a str,
    pub version: &'a str,
    pub proto: u8,
    pub git_commit: &'a str,
    pub go: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: usize,
    pub client_id: u64,
    pub client_ip: String,
    /// Client addresses of the servers of the cluster, this one's first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
}

/// Traffic counters of one connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub id: ConnId,
    /// The account the client authenticated into; `$G` until then. Routes carry
    /// every account and use this one for nothing.
    pub account: AccountId,
    /// The user the client authenticated as, when users are configured.
    pub user: Option<String>,
    /// An in-process client (the streaming server): deliveries are queued as
    /// [`InternalMsg`] instead of being written as bytes.
    pub internal: bool,
    pub peer: SocketAddr,
    pub phase: Phase,
    pub opts: ConnectOptions,
    pub connect_received: bool,
    pub start_wall_ns: i64,
    pub last_activity_wall_ns: i64,
    pub last_in: Instant,
    /// Bytes of an operation not yet complete.
    pub inbuf: Vec<u8>,
    /// Bytes produced since the last poll.
    pub out: Vec<u8>,
    /// Whether the connection is already in the server's list of connections to flush.
    pub dirty: bool,
    /// Bytes handed to the driver and not yet reported written.
    pub unflushed: usize,
    pub subs: FxHashMap<Box<[u8]>, SubKey>,
    pub pings_out: u32,
    pub ping_at: Instant,
    pub auth_deadline: Option<Instant>,
    pub traffic: Traffic,
    pub close_reason: Option<CloseReason>,
    /// TLS version and cipher suite, once the handshake completed.
    pub tls: Option<(String, String)>,
}

impl Conn {
    /// A connection opened at `now`, in its first phase, whose first keepalive is due
    /// at `ping_at`.
    pub fn new(id: ConnId, peer: SocketAddr, phase: Phase, now: Now, ping_at: Instant) -> Conn {
        Conn {
            id,
            account: AccountId::GLOBAL,
            user: None,
            internal: false,
            peer,
            phase,
            opts: ConnectOptions::default(),
            connect_received: false,
            start_wall_ns: now.wall_ns,
            last_activity_wall_ns: now.wall_ns,
            last_in: now.mono,
            inbuf: Vec::new(),
            out: Vec::new(),
            dirty: false,
            unflushed: 0,
            subs: FxHashMap::default(),
            pings_out: 0,
            ping_at,
            auth_deadline: None,
            traffic: Traffic::default(),
            close_reason: None,
            tls: None,
        }
    }

    /// Bytes queued toward the client and not yet written (the NATS "pending bytes").
    pub fn pending_bytes(&self) -> usize {
        self.unflushed + self.out.len()
    }
}

/// A subscription of a client connection.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub conn: ConnId,
    /// The subject space the subscription lives in.
    pub account: AccountId,
    /// Set for the server's own subscriptions that carry messages between accounts;
    /// `conn` means nothing for them.
    pub forward: Option<Forward>,
    pub sid: Box<[u8]>,
    pub subject: Box<[u8]>,
    pub queue: Option<Box<[u8]>>,
    /// Auto-unsubscribe after this many deliveries (`UNSUB <sid> <max>`).
    pub max: Option<u64>,
    pub delivered: u64,
}

/// Where a subscription that joins accounts sends what it receives.
#[derive(Debug, Clone)]
pub(crate) enum Forward {
    /// A stream import: to the subscribers of account `into`, under the subject
    /// `rename` gives.
    Stream { into: AccountId, rename: Rename },
    /// A service import: requests go to account `dest`, their reply subject
    /// replaced by one of `dest` that leads the answer back.
    Service {
        dest: AccountId,
        /// The importing account, where answers go back to.
        home: AccountId,
        rename: Rename,
    },
    /// Answers to service requests, on the account's `_R_.<prefix>.>`.
    Responses,
}

/// How a subject changes on its way into another account.
#[derive(Debug, Clone)]
pub(crate) enum Rename {
    Same,
    /// Prepended, with its trailing dot.
    Prefix(Box<[u8]>),
    /// Replaced by this literal subject.
    Literal(Box<[u8]>),
}

impl Rename {
    pub fn apply(&self, subject: &[u8]) -> Vec<u8> {
        match self {
            Rename::Same => subject.to_vec(),
            Rename::Prefix(p) => [&p[..], subject].concat(),
            Rename::Literal(l) => l.to_vec(),
        }
    }
}

/// A message delivered to an in-process subscriber; its bytes stay in the server's
/// queue buffer, read with [`super::Server::internal_parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalMsg {
    pub conn: ConnId,
    pub sid: u64,
    offset: usize,
    subject_len: usize,
    reply_len: Option<usize>,
    payload_len: usize,
}

/// In-process deliveries: one growing buffer instead of an allocation per message.
#[derive(Debug, Default)]
pub(crate) struct InternalQueue {
    buf: Vec<u8>,
    queue: std::collections::VecDeque<InternalMsg>,
}

impl InternalQueue {
    pub fn push(
        &mut self,
        conn: ConnId,
        sid: u64,
        subject: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
    ) {
        let offset = self.buf.len();
        self.buf.extend_from_slice(subject);
        self.buf.extend_from_slice(reply.unwrap_or_default());
        self.buf.extend_from_slice(payload);
        self.queue.push_back(InternalMsg {
            conn,
            sid,
            offset,
            subject_len: subject.len(),
            reply_len: reply.map(<[u8]>::len),
            payload_len: payload.len(),
        });
    }

    /// The next message; the bytes of the one returned before are released first.
    pub fn pop(&mut self) -> Option<InternalMsg> {
        if self.queue.is_empty() {
            self.buf.clear();
        }
        self.queue.pop_front()
    }

    pub fn parts(&self, m: &InternalMsg) -> (&[u8], Option<&[u8]>, &[u8]) {
        let subject = &self.buf[m.offset..m.offset + m.subject_len];
        let reply_at = m.offset + m.subject_len;
        let reply = m.reply_len.map(|n| &self.buf[reply_at..reply_at + n]);
        let payload_at = reply_at + m.reply_len.unwrap_or(0);
        (
            subject,
            reply,
            &self.buf[payload_at..payload_at + m.payload_len],
        )
    }
}

//! The node the runtime drives: the embedded NATS server with the streaming server
//! attached to it in-process, as one more NATS client whose messages never touch a
//! socket; or, with an external NATS server (`-ns`), the streaming server behind a
//! client connection ([`Link`]) whose sockets the runtime dials.

use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::log::{Level, LogLine, Origin};
use crate::nats::link::{Link, LinkConfig};
use crate::nats::{self, ConnId, Input, Output, Server};
use crate::store::Store;
use crate::streaming::{self, Action, Streaming};
use crate::time::{Instant, Now};

/// Everything a node needs to start.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub nats: nats::Config,
    /// The streaming server's settings; `None` runs plain NATS only.
    pub streaming: Option<streaming::Config>,
}

struct Attached {
    server: Streaming,
    conn: ConnId,
}

/// The connection to an external NATS server and its current socket.
struct External {
    link: Link,
    conn: Option<ConnId>,
    /// Socket ids are taken from above those of accepted connections (there are none
    /// in this mode, but the driver keeps one id space).
    next_conn: u64,
}

/// One server process's worth of protocol state.
pub struct Node {
    nats: Server,
    streaming: Option<Attached>,
    external: Option<External>,
    logs: VecDeque<LogLine>,
}

impl Node {
    /// A plain NATS node.
    pub fn new(cfg: NodeConfig) -> Self {
        Node {
            nats: Server::new(cfg.nats),
            streaming: None,
            external: None,
            logs: VecDeque::new(),
        }
    }

    /// A node running the streaming server over `store` behind a connection to an
    /// external NATS server; `link.name` is filled in (`_NSS-<cid>-general`). The
    /// local NATS server object runs nothing: monitoring reports it idle.
    pub fn with_external(
        cfg: NodeConfig,
        store: Box<dyn Store>,
        mut link: LinkConfig,
    ) -> Result<Self, String> {
        let mut node = Node::with_streaming(cfg, store)?;
        let cid = node.streaming().map_or("", |s| s.cluster_id());
        link.name = format!("_NSS-{cid}-general");
        node.external = Some(External {
            link: Link::new(link),
            conn: None,
            next_conn: 1_000_000,
        });
        Ok(node)
    }

    /// Whether the streaming server runs behind an external NATS server.
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// A new socket to the external NATS server at `url` (with its credentials
    /// redacted, for logs; `userinfo` holds them, see [`Link::attach`]); its bytes
    /// come in as [`Input`]s of the returned id.
    pub fn attach_external(
        &mut self,
        url: &str,
        userinfo: Option<(String, Option<String>)>,
    ) -> Option<ConnId> {
        let ext = self.external.as_mut()?;
        let id = ConnId(ext.next_conn);
        ext.next_conn += 1;
        ext.conn = Some(id);
        ext.link.attach(url, userinfo);
        Some(id)
    }

    /// Whether the external connection needs a new socket: none is attached.
    pub fn external_down(&self) -> bool {
        self.external.as_ref().is_some_and(|e| e.conn.is_none())
    }

    /// Whether the external NATS server accepted the current socket's CONNECT.
    pub fn external_up(&self) -> bool {
        self.external.as_ref().is_some_and(|e| e.link.is_up())
    }

    /// Why the current or last external socket failed (`nats: authorization
    /// violation`), if the server said or sent garbage.
    pub fn external_error(&self) -> Option<&str> {
        self.external.as_ref().and_then(|e| e.link.error())
    }

    /// A node running the streaming server over `store`; fails on invalid limits.
    pub fn with_streaming(cfg: NodeConfig, store: Box<dyn Store>) -> Result<Self, String> {
        let stan_cfg = cfg.streaming.clone().unwrap_or_default();
        let max_payload = cfg.nats.max_payload;
        let mut node = Node::new(cfg);
        let mut server = Streaming::new(stan_cfg, store)?;
        server.set_max_payload(max_payload);
        node.streaming = Some(Attached {
            server,
            conn: ConnId(0),
        });
        Ok(node)
    }

    /// Lines logged before the NATS banner (streaming nodes only).
    pub fn banner(&self) -> Vec<String> {
        self.streaming
            .as_ref()
            .map(|s| s.server.banner())
            .unwrap_or_default()
    }

    /// Recovers the streaming state and opens its subscriptions.
    pub fn start(&mut self, now: Now) -> Result<(), String> {
        let Some(att) = self.streaming.as_mut() else {
            return Ok(());
        };
        if self.external.is_none() {
            let name = format!("_NSS-{}-general", att.server.cluster_id());
            att.conn = self.nats.add_internal_client(now, &name);
        }
        let result = att.server.start(now);
        self.pump(now);
        result
    }

    /// True once for every attempt at the store's exclusive lock that an FT standby
    /// wants; the runtime tries the lock without waiting and answers with
    /// [`Node::handle_store_lock`].
    pub fn poll_store_lock(&mut self) -> bool {
        self.streaming
            .as_mut()
            .is_some_and(|s| s.server.poll_store_lock())
    }

    /// The outcome of an attempt at the store's lock; see
    /// [`Streaming::handle_store_lock`].
    pub fn handle_store_lock(&mut self, now: Now, lock: streaming::ft::StoreLock) {
        if let Some(att) = self.streaming.as_mut() {
            att.server.handle_store_lock(now, lock);
        }
        self.pump(now);
    }

    /// The fatal error that stopped the streaming server after startup (an FT
    /// conflict, say): the process should exit.
    pub fn failure(&self) -> Option<&str> {
        self.streaming.as_ref().and_then(|s| s.server.failure())
    }

    /// Registers a newly accepted client connection.
    pub fn accept(&mut self, now: Now, peer: SocketAddr) -> ConnId {
        self.nats.accept(now, peer)
    }

    pub fn handle_input(&mut self, now: Now, input: Input<'_>) {
        if let Some(ext) = self.external.as_mut() {
            let conn = match input {
                Input::Received { conn, .. }
                | Input::Flushed { conn, .. }
                | Input::Closed { conn }
                | Input::TlsFailed { conn, .. } => conn,
            };
            if ext.conn == Some(conn) {
                match input {
                    Input::Received { bytes, .. } => ext.link.received(bytes),
                    Input::Flushed { .. } => {}
                    Input::Closed { .. } | Input::TlsFailed { .. } => {
                        ext.link.detach();
                        ext.conn = None;
                    }
                }
                self.pump(now);
                return;
            }
        }
        self.nats.handle_input(now, input);
        self.pump(now);
    }

    /// The TLS handshake of the client at `peer` completed; see
    /// [`Server::tls_established`](crate::nats::Server::tls_established).
    pub fn tls_established(&mut self, now: Now, peer: SocketAddr, version: &str, cipher: &str) {
        self.nats.tls_established(peer, version, cipher);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.nats.handle_timeout(now);
        if let Some(att) = self.streaming.as_mut() {
            att.server.handle_timeout(now);
        }
        self.pump(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(line) = self.logs.pop_front() {
            return Some(Output::Log(line));
        }
        if let Some(ext) = self.external.as_mut() {
            if let Some(conn) = ext.conn {
                if let Some(data) = ext.link.take_output() {
                    return Some(Output::Send { conn, data });
                }
                if ext.link.take_close() {
                    ext.link.detach();
                    ext.conn = None;
                    while let Some(line) = ext.link.poll_log() {
                        self.logs.push_back(line);
                    }
                    return Some(Output::Close { conn });
                }
            }
        }
        self.nats.poll_output()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let stan = self
            .streaming
            .as_ref()
            .and_then(|s| s.server.poll_timeout());
        match (self.nats.poll_timeout(), stan) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes the batch durable before its outputs are released.
    pub fn flush_store(&mut self) -> Result<(), String> {
        match self.streaming.as_mut() {
            Some(att) => att.server.flush(),
            None => Ok(()),
        }
    }

    /// True while a reader is far behind; see [`Server::wants_backpressure`].
    pub fn wants_backpressure(&self) -> bool {
        self.nats.wants_backpressure()
    }

    /// Whether `conn` is far behind in reading; see [`Server::is_behind`].
    pub fn is_behind(&self, conn: ConnId) -> bool {
        self.nats.is_behind(conn)
    }

    /// Whether the driver should hold back this connection's input; see
    /// [`Server::holds_input`].
    pub fn holds_input(&self, conn: ConnId) -> bool {
        self.nats.holds_input(conn)
    }

    /// Applies a reloaded NATS configuration; see [`Server::reload`].
    pub fn reload_nats(&mut self, now: Now, cfg: nats::Config) -> Result<Vec<String>, String> {
        let lines = self.nats.reload(cfg)?;
        self.pump(now);
        Ok(lines)
    }

    /// The embedded NATS server, for monitoring.
    pub fn nats(&self) -> &Server {
        &self.nats
    }

    /// The streaming server, for monitoring.
    pub fn streaming(&self) -> Option<&Streaming> {
        self.streaming.as_ref().map(|s| &s.server)
    }

    /// Moves messages between the NATS server and the streaming server until neither has
    /// anything left for the other.
    fn pump(&mut self, now: Now) {
        if self.external.is_some() {
            return self.pump_external(now);
        }
        let Some(att) = self.streaming.as_mut() else {
            return;
        };
        loop {
            let mut progressed = false;
            while let Some(m) = self.nats.take_internal() {
                progressed = true;
                let (subject, reply, payload) = self.nats.internal_parts(&m);
                att.server.handle_msg(now, m.sid, subject, reply, payload);
            }
            while let Some(action) = att.server.poll_action() {
                progressed = true;
                match action {
                    Action::Subscribe { sid, subject } => {
                        if self
                            .nats
                            .internal_subscribe(att.conn, &subject, sid)
                            .is_err()
                        {
                            self.logs.push_back(LogLine {
                                origin: Origin::Stream,
                                level: Level::Error,
                                text: format!(
                                    "Unable to subscribe to {subject:?}: invalid subject"
                                ),
                            });
                        }
                    }
                    Action::Unsubscribe { sid } => self.nats.internal_unsubscribe(att.conn, sid),
                    Action::Publish {
                        subject,
                        reply,
                        payload,
                    } => {
                        let reply_bytes = reply.as_deref().map(str::as_bytes);
                        let delivered = self.nats.internal_publish(
                            now,
                            att.conn,
                            subject.as_bytes(),
                            reply_bytes,
                            &payload,
                        );
                        if let (false, Some(r)) = (delivered, reply) {
                            att.server.handle_no_responders(now, &r);
                        }
                    }
                    Action::Log(line) => self.logs.push_back(line),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// [`Node::pump`] with the external NATS server on the other side.
    fn pump_external(&mut self, now: Now) {
        let (Some(att), Some(ext)) = (self.streaming.as_mut(), self.external.as_mut()) else {
            return;
        };
        loop {
            let mut progressed = false;
            while let Some(m) = ext.link.poll_msg() {
                progressed = true;
                let body = &m.payload[m.header_len.unwrap_or(0).min(m.payload.len())..];
                // A request nobody listens to comes back as a 503 status on its reply
                // subject.
                if m.sid == streaming::sid::REPLIES
                    && m.header_len.is_some()
                    && m.payload.starts_with(b"NATS/1.0 503")
                {
                    let reply = String::from_utf8_lossy(m.subject).into_owned();
                    att.server.handle_no_responders(now, &reply);
                    continue;
                }
                att.server.handle_msg(now, m.sid, m.subject, m.reply, body);
            }
            if let Some(mp) = ext.link.max_payload() {
                att.server.set_max_payload(mp);
            }
            while let Some(action) = att.server.poll_action() {
                progressed = true;
                match action {
                    Action::Subscribe { sid, subject } => ext.link.subscribe(sid, &subject),
                    Action::Unsubscribe { sid } => ext.link.unsubscribe(sid),
                    // Dropped while disconnected: acknowledged publishes are
                    // redelivered and requests time out, as with the NATS client.
                    Action::Publish {
                        subject,
                        reply,
                        payload,
                    } => {
                        ext.link.publish(
                            subject.as_bytes(),
                            reply.as_deref().map(str::as_bytes),
                            &payload,
                        );
                    }
                    Action::Log(line) => self.logs.push_back(line),
                }
            }
            if !progressed {
                break;
            }
        }
        while let Some(line) = ext.link.poll_log() {
            self.logs.push_back(line);
        }
    }
}

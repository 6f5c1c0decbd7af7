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

/// The roles of the connections to an external NATS server, each its own link named
/// `_NSS-<cid>-<role>` (OPERATIONS §5): `general` holds the subscriptions to
/// requests and ack inboxes, `send` publishes deliveries and responses, `hb` sends
/// the requests this server makes (heartbeats, probes) and holds their reply inbox,
/// where the NATS server's no-responders status comes back to the publisher.
///
/// Acks share `general` with the requests: messages of one client that arrive on
/// different connections can be reordered, and an ack overtaken by the client's
/// close or unsubscribe request would be lost (redelivered on resume).
pub const EXTERNAL_ROLES: [&str; 3] = ["general", "send", "hb"];
const GENERAL: usize = 0;
const SEND: usize = 1;
const HB: usize = 2;

/// The connections to an external NATS server and their current sockets.
struct External {
    links: [Link; 3],
    conns: [Option<ConnId>; 3],
    /// Log lines held, with every later one, until the NATS server confirmed the
    /// server's own subscriptions made with them (at startup, when an FT standby
    /// takes over): "ready" must mean that clients can be answered.
    held_logs: Option<Vec<LogLine>>,
    /// Socket ids are taken from above those of accepted connections (there are none
    /// in this mode, but the driver keeps one id space).
    next_conn: u64,
}

impl External {
    /// The link holding subscription `sid`.
    fn role_of_sid(sid: u64) -> usize {
        use streaming::sid;
        match sid {
            sid::REPLIES | sid::PARTITIONS_INBOX => HB,
            _ => GENERAL,
        }
    }
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

    /// A node running the streaming server over `store` behind connections to an
    /// external NATS server, one per [`EXTERNAL_ROLES`], all with `link`'s settings
    /// (its name is replaced by `_NSS-<cid>-<role>`). The local NATS server object
    /// runs nothing: monitoring reports it idle.
    pub fn with_external(
        cfg: NodeConfig,
        store: Box<dyn Store>,
        link: LinkConfig,
    ) -> Result<Self, String> {
        let mut node = Node::with_streaming(cfg, store)?;
        let cid = node.streaming().map_or("", |s| s.cluster_id()).to_string();
        let links = EXTERNAL_ROLES.map(|role| {
            Link::new(LinkConfig {
                name: format!("_NSS-{cid}-{role}"),
                ..link.clone()
            })
        });
        node.external = Some(External {
            links,
            conns: [None; 3],
            held_logs: None,
            next_conn: 1_000_000,
        });
        Ok(node)
    }

    /// A new socket for connection `role` (an index of [`EXTERNAL_ROLES`]) to the
    /// external NATS server at `url` (with its credentials redacted, for logs;
    /// `userinfo` holds them, see [`Link::attach`]); its bytes come in as
    /// [`Input`]s of the returned id.
    pub fn attach_external(
        &mut self,
        role: usize,
        url: &str,
        userinfo: Option<(String, Option<String>)>,
    ) -> Option<ConnId> {
        let ext = self.external.as_mut()?;
        let link = ext.links.get_mut(role)?;
        let id = ConnId(ext.next_conn);
        ext.next_conn += 1;
        ext.conns[role] = Some(id);
        link.attach(url, userinfo);
        Some(id)
    }

    /// Whether connection `role` has no socket.
    pub fn external_down(&self, role: usize) -> bool {
        self.external
            .as_ref()
            .is_some_and(|e| e.conns.get(role).is_some_and(Option::is_none))
    }

    /// Whether the external NATS server accepted the CONNECT of connection `role`'s
    /// current socket.
    pub fn external_up(&self, role: usize) -> bool {
        self.external
            .as_ref()
            .and_then(|e| e.links.get(role))
            .is_some_and(Link::is_up)
    }

    /// Why connection `role`'s current or last socket failed (`nats: authorization
    /// violation`), if the server said so or sent garbage.
    pub fn external_error(&self, role: usize) -> Option<&str> {
        self.external
            .as_ref()
            .and_then(|e| e.links.get(role))
            .and_then(Link::error)
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

    /// Keeps the clustered streaming server's Raft log in `log`; see
    /// [`Streaming::set_raft_log`].
    pub fn set_raft_log(&mut self, log: Box<dyn crate::raft::RaftLog>) {
        if let Some(att) = self.streaming.as_mut() {
            att.server.set_raft_log(log);
        }
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
            att.conn = self.nats.add_internal_client(now, &name)?;
        }
        let result = att.server.start(now);
        self.pump(now);
        if result.is_err() {
            // The reason is logged by the caller; what led to it goes first.
            if let Some(held) = self.external.as_mut().and_then(|e| e.held_logs.take()) {
                let later = std::mem::take(&mut self.logs);
                self.logs.extend(held);
                self.logs.extend(later);
            }
        }
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

    /// Registers a route connection: dialed to `url`, or accepted when `None`.
    pub fn accept_route(
        &mut self,
        now: Now,
        peer: SocketAddr,
        url: Option<crate::nats::RouteUrl>,
    ) -> ConnId {
        let id = self.nats.accept_route(now, peer, url);
        self.pump(now);
        id
    }

    /// See [`Server::route_dial_failed`](crate::nats::Server::route_dial_failed).
    pub fn route_dial_failed(&mut self, now: Now, url: &crate::nats::RouteUrl, error: &str) {
        self.nats.route_dial_failed(now, url, error);
        self.pump(now);
    }

    /// See [`Server::start_routes`](crate::nats::Server::start_routes).
    pub fn start_routes(&mut self, now: Now, port: u16) {
        self.nats.start_routes(now, port);
        self.pump(now);
    }

    pub fn handle_input(&mut self, now: Now, input: Input<'_>) {
        if let Some(ext) = self.external.as_mut() {
            let conn = match input {
                Input::Received { conn, .. }
                | Input::Flushed { conn, .. }
                | Input::Closed { conn }
                | Input::TlsFailed { conn, .. } => conn,
            };
            if let Some(role) = ext.conns.iter().position(|c| *c == Some(conn)) {
                match input {
                    Input::Received { bytes, .. } => ext.links[role].received(bytes),
                    Input::Flushed { .. } => {}
                    Input::Closed { .. } | Input::TlsFailed { .. } => {
                        ext.links[role].detach();
                        ext.conns[role] = None;
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
        if let Some(ext) = self.external.as_mut() {
            for link in &mut ext.links {
                link.handle_timeout(now.mono);
            }
        }
        self.pump(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(line) = self.logs.pop_front() {
            return Some(Output::Log(line));
        }
        if let Some(ext) = self.external.as_mut() {
            // Subscriptions leave before the publishes that announce them (a
            // subscription response after its ack inbox).
            for role in [GENERAL, HB, SEND] {
                let Some(conn) = ext.conns[role] else {
                    continue;
                };
                let link = &mut ext.links[role];
                if let Some(data) = link.take_output() {
                    return Some(Output::Send { conn, data });
                }
                if link.take_close() {
                    link.detach();
                    ext.conns[role] = None;
                    while let Some(line) = link.poll_log() {
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
        let links = self
            .external
            .iter()
            .flat_map(|e| e.links.iter().filter_map(Link::poll_timeout));
        [self.nats.poll_timeout(), stan]
            .into_iter()
            .flatten()
            .chain(links)
            .min()
    }

    /// Makes the batch durable before its outputs are released.
    pub fn flush_store(&mut self, now: Now) -> Result<(), String> {
        let result = match self.streaming.as_mut() {
            Some(att) => att.server.flush(now),
            None => Ok(()),
        };
        // Clustered, the flush releases what the batch sends and Raft's messages.
        self.pump(now);
        result
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
            self.pump_external(now);
            return self.release_held_logs();
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

    /// Logs the startup lines once every connection is confirmed.
    fn release_held_logs(&mut self) {
        let Some(ext) = self.external.as_mut() else {
            return;
        };
        if ext.held_logs.is_none() || !ext.links.iter().all(Link::synced) {
            return;
        }
        let held = ext.held_logs.take().unwrap_or_default();
        let later = std::mem::take(&mut self.logs);
        self.logs.extend(held);
        self.logs.extend(later);
    }

    /// [`Node::pump`] with the external NATS server on the other side.
    fn pump_external(&mut self, now: Now) {
        let (Some(att), Some(ext)) = (self.streaming.as_mut(), self.external.as_mut()) else {
            return;
        };
        let mut own_subscriptions = false;
        // The streaming server's lines may be held; the connections' own (errors,
        // reconnections) never are.
        let mut stream_logs = Vec::new();
        loop {
            let mut progressed = false;
            for (role, link) in ext.links.iter_mut().enumerate() {
                while let Some(m) = link.poll_msg() {
                    progressed = true;
                    // A request nobody listens to comes back as a 503 status on its
                    // reply subject.
                    if role == HB
                        && m.header_len.is_some()
                        && m.payload.starts_with(b"NATS/1.0 503")
                    {
                        let reply = String::from_utf8_lossy(m.subject).into_owned();
                        att.server.handle_no_responders(now, &reply);
                        continue;
                    }
                    let body = &m.payload[m.header_len.unwrap_or(0).min(m.payload.len())..];
                    att.server.handle_msg(now, m.sid, m.subject, m.reply, body);
                }
            }
            if let Some(mp) = ext.links[GENERAL].max_payload() {
                att.server.set_max_payload(mp);
            }
            while let Some(action) = att.server.poll_action() {
                progressed = true;
                match action {
                    Action::Subscribe { sid, subject } => {
                        own_subscriptions |= !(streaming::sid::FIRST_ACK
                            ..streaming::sid::MORE_PUBLISH)
                            .contains(&sid);
                        ext.links[External::role_of_sid(sid)].subscribe(sid, &subject)
                    }
                    Action::Unsubscribe { sid } => {
                        ext.links[External::role_of_sid(sid)].unsubscribe(sid)
                    }
                    // Dropped while disconnected: unacknowledged deliveries are sent
                    // again and requests time out, as with the NATS client.
                    Action::Publish {
                        subject,
                        reply,
                        payload,
                    } => {
                        let role = if reply.is_some() { HB } else { SEND };
                        ext.links[role].publish(
                            subject.as_bytes(),
                            reply.as_deref().map(str::as_bytes),
                            &payload,
                        );
                    }
                    Action::Log(line) => stream_logs.push(line),
                }
            }
            if !progressed {
                break;
            }
        }
        for link in &mut ext.links {
            while let Some(line) = link.poll_log() {
                self.logs.push_back(line);
            }
        }
        if own_subscriptions {
            for link in &mut ext.links {
                link.ping();
            }
            ext.held_logs.get_or_insert_with(Vec::new);
        }
        // A fatal line ends the process: what was held comes out with it rather than
        // wait for a readiness that will not come.
        let fatal = stream_logs.iter().any(|l| l.level == Level::Fatal);
        match ext.held_logs.as_mut() {
            Some(held) if !fatal => held.extend(stream_logs),
            Some(held) => {
                self.logs.extend(held.drain(..));
                self.logs.extend(stream_logs);
            }
            None => self.logs.extend(stream_logs),
        }
    }
}

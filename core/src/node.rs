//! The node the runtime drives: the embedded NATS server with the streaming server
//! attached to it in-process, as one more NATS client whose messages never touch a
//! socket.

use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::log::{Level, LogLine, Origin};
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

/// One server process's worth of protocol state.
pub struct Node {
    nats: Server,
    streaming: Option<Attached>,
    logs: VecDeque<LogLine>,
}

impl Node {
    /// A plain NATS node.
    pub fn new(cfg: NodeConfig) -> Self {
        Node {
            nats: Server::new(cfg.nats),
            streaming: None,
            logs: VecDeque::new(),
        }
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
        let name = format!("_NSS-{}-general", att.server.cluster_id());
        att.conn = self.nats.add_internal_client(now, &name);
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
}

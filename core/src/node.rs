//! The node the runtime drives: the embedded NATS server with the streaming server
//! attached to it in-process.

use std::net::SocketAddr;

use crate::nats::{self, ConnId, Input, Output, Server};
use crate::time::{Instant, Now};

/// Everything a node needs to start.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub nats: nats::Config,
}

/// One server process's worth of protocol state.
pub struct Node {
    nats: Server,
}

impl Node {
    pub fn new(cfg: NodeConfig) -> Self {
        Node {
            nats: Server::new(cfg.nats),
        }
    }

    /// Registers a newly accepted client connection.
    pub fn accept(&mut self, now: Now, peer: SocketAddr) -> ConnId {
        self.nats.accept(now, peer)
    }

    pub fn handle_input(&mut self, now: Now, input: Input<'_>) {
        self.nats.handle_input(now, input);
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.nats.handle_timeout(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.nats.poll_output()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nats.poll_timeout()
    }

    /// True while a reader is far behind; see [`Server::wants_backpressure`].
    pub fn wants_backpressure(&self) -> bool {
        self.nats.wants_backpressure()
    }

    /// The embedded NATS server, for monitoring.
    pub fn nats(&self) -> &Server {
        &self.nats
    }
}

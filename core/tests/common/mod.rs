//! A virtual-time world around one node, recording a readable transcript of everything
//! that goes in and comes out.

#![allow(dead_code)]

pub mod stan;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use stan_core::nats::{ConnId, Input, Output};
use stan_core::node::{Node, NodeConfig};
use stan_core::Now;

pub struct World {
    pub node: Node,
    pub now: Now,
    pub transcript: String,
    next_port: u16,
    /// Connections the node closed.
    pub closed: Vec<ConnId>,
    /// Bytes received per connection since the last `take`.
    pub received: std::collections::BTreeMap<ConnId, Vec<u8>>,
    /// Routes the node asked to dial, in order.
    pub dials: Vec<stan_core::nats::RouteUrl>,
}

/// A fixed starting wall clock so transcripts are stable: 2024-01-01T00:00:00Z.
pub const START_WALL_NS: i64 = 1_704_067_200_000_000_000;

impl World {
    pub fn new(cfg: NodeConfig) -> Self {
        World {
            node: Node::new(cfg),
            now: Now {
                mono: stan_core::Instant::from_nanos(0),
                wall_ns: START_WALL_NS,
            },
            transcript: String::new(),
            next_port: 50000,
            closed: Vec::new(),
            received: Default::default(),
            dials: Vec::new(),
        }
    }

    /// A world around a node built elsewhere (an external-mode node, say).
    pub fn with_node(node: Node) -> Self {
        let mut w = World::new(NodeConfig::default());
        w.node = node;
        w
    }

    fn stamp(&self) -> String {
        let ms = self.now.mono.as_nanos() / 1_000_000;
        format!("[{}.{:03}s]", ms / 1000, ms % 1000)
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.transcript, "# {text}");
    }

    pub fn accept(&mut self) -> ConnId {
        self.next_port += 1;
        let peer: SocketAddr = format!("127.0.0.1:{}", self.next_port).parse().unwrap();
        let id = self.node.accept(self.now, peer);
        let _ = writeln!(
            self.transcript,
            "{} accept c{} from {peer}",
            self.stamp(),
            id.0
        );
        self.drain();
        id
    }

    /// A route connection: dialed to `url`, or accepted on the cluster port.
    pub fn route(&mut self, url: Option<stan_core::nats::RouteUrl>) -> ConnId {
        self.next_port += 1;
        let peer: SocketAddr = format!("127.0.0.1:{}", self.next_port).parse().unwrap();
        let how = url
            .as_ref()
            .map_or("accept".to_string(), |u| format!("dialed {}", u.url));
        let id = self.node.accept_route(self.now, peer, url);
        let _ = writeln!(
            self.transcript,
            "{} route c{} from {peer} ({how})",
            self.stamp(),
            id.0
        );
        self.drain();
        id
    }

    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        let _ = writeln!(
            self.transcript,
            "{} c{} >> {}",
            self.stamp(),
            conn.0,
            show(bytes)
        );
        self.node
            .handle_input(self.now, Input::Received { conn, bytes });
        self.drain();
    }

    pub fn hang_up(&mut self, conn: ConnId) {
        let _ = writeln!(self.transcript, "{} c{} hangs up", self.stamp(), conn.0);
        self.node.handle_input(self.now, Input::Closed { conn });
        self.drain();
    }

    /// The driver reports that the client's TLS handshake failed.
    pub fn tls_fails(&mut self, conn: ConnId, error: &str) {
        let _ = writeln!(
            self.transcript,
            "{} c{} TLS handshake fails: {error}",
            self.stamp(),
            conn.0
        );
        self.node
            .handle_input(self.now, Input::TlsFailed { conn, error });
        self.drain();
    }

    /// Advances virtual time to `d` later, firing every timer due on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now.advanced(d);
        while let Some(at) = self.node.poll_timeout() {
            if at > end.mono {
                break;
            }
            let step = at.saturating_since(self.now.mono);
            self.now = self.now.advanced(step);
            let _ = writeln!(self.transcript, "{} timers fire", self.stamp());
            self.node.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    pub fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { conn, data } => {
                    let _ = writeln!(
                        self.transcript,
                        "{}   c{} << {}",
                        self.stamp(),
                        conn.0,
                        show(&data)
                    );
                    self.received
                        .entry(conn)
                        .or_default()
                        .extend_from_slice(&data);
                    self.node.handle_input(
                        self.now,
                        Input::Flushed {
                            conn,
                            bytes: data.len(),
                        },
                    );
                }
                Output::Close { conn } => {
                    let _ = writeln!(self.transcript, "{}   close c{}", self.stamp(), conn.0);
                    self.closed.push(conn);
                }
                Output::Log(line) => {
                    let _ = writeln!(
                        self.transcript,
                        "{}   log [{}] {}",
                        self.stamp(),
                        line.level.tag(),
                        line.text
                    );
                }
                Output::Dial { url } => {
                    let _ = writeln!(self.transcript, "{}   dial {}", self.stamp(), url.url);
                    self.dials.push(url);
                }
            }
        }
    }

    /// Bytes received by `conn` since the last call, as text.
    pub fn take(&mut self, conn: ConnId) -> String {
        String::from_utf8_lossy(&self.received.remove(&conn).unwrap_or_default()).into_owned()
    }
}

/// Protocol bytes made readable: CRLF shown as `␍␊` line breaks, long payloads cut.
pub fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, line) in text.split_inclusive("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\n      ");
        }
        let (body, crlf) = match line.strip_suffix("\r\n") {
            Some(b) => (b, true),
            None => (line, false),
        };
        if body.len() > 160 {
            let cut = body.char_indices().nth(160).map_or(body.len(), |(i, _)| i);
            let _ = write!(out, "{}…({} bytes)", &body[..cut], body.len());
        } else {
            out.push_str(body);
        }
        if crlf {
            out.push_str("␍␊");
        }
    }
    out
}

#[macro_export]
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

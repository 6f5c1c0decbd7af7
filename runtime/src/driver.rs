//! The driver: one task owns the core [`Node`]; connection tasks move bytes.
//!
//! Each turn the driver takes every input that is ready as one batch, feeds it to the
//! node, fires due timers, and only then releases the batch's outputs to the writers.
//! The driver is generic over the listener and the wall clock so that the same loop
//! runs on tokio in production and inside the simulator.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stan_core::log::LogLine;
use stan_core::nats::{ConnId, Input, Output};
use stan_core::node::Node;
use stan_core::{Instant, Now};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::tls::HandshakeFailed;

/// Accepts connections; implemented for tokio's listener here and for simulated
/// listeners elsewhere.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = tokio::net::TcpListener::accept(self).await?;
        // Small writes (PONG, +OK, PubAcks) must not wait for Nagle's timer.
        let _ = s.set_nodelay(true);
        Ok((s, a))
    }
}

/// Reads the wall clock in Unix nanoseconds; the simulator supplies a virtual one.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real wall clock.
pub fn system_wall_clock() -> WallClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    })
}

/// Work on the node from outside the driver: monitoring, a configuration reload.
type Job = Box<dyn FnOnce(&mut Node, Now) + Send>;

/// The embedder's own IO on the node after every turn; see [`Driver::after_turn`].
type TurnHook = Box<dyn FnMut(&mut Node, Now) + Send>;

enum Event {
    Accepted(Box<dyn FnOnce(ConnId) -> Spawned + Send>, SocketAddr),
    /// A new socket to the external NATS server.
    Dialed(Box<Dialed>),
    /// A route connection: accepted on the cluster port (no URL) or dialed.
    Route(
        Box<dyn FnOnce(ConnId) -> Spawned + Send>,
        SocketAddr,
        Option<stan_core::nats::RouteUrl>,
    ),
    /// Dialing a route failed, for the reason given in Go's words.
    DialFailed(stan_core::nats::RouteUrl, String),
    Flushed(ConnId, usize),
    Closed(ConnId),
    Job(Job),
    /// The client's TLS handshake failed; nothing was read from it.
    HandshakeFailed(ConnId, String),
    /// A write to the client blocked past the write deadline.
    WriteDeadline {
        id: ConnId,
        peer: SocketAddr,
        limit: Duration,
        bytes: usize,
    },
}

/// A socket to the external NATS server, for [`DriverHandle::attach_external`].
struct Dialed {
    spawn: Box<dyn FnOnce(ConnId) -> Spawned + Send>,
    /// Which of the node's external connections it is.
    role: usize,
    url: String,
    userinfo: Option<(String, Option<String>)>,
    /// What was read before the socket was handed over (the INFO line).
    initial: Vec<u8>,
    /// Dropped when the socket is gone.
    closed: oneshot::Sender<()>,
}

struct Spawned {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
    /// Tells the writer the server closed the connection: what is still queued gets
    /// [`CLOSE_FLUSH_DEADLINE`] to leave, then the socket is dropped.
    closing: oneshot::Sender<()>,
}

/// Bytes read from a connection; kept apart from the other events so the driver can
/// stop taking input while a reader is far behind and still see its writes complete.
/// End of input travels the same way, after the connection's last bytes.
enum Data {
    /// The permits hold the bytes' share of [`MAX_INPUT_IN_FLIGHT`] and of the
    /// connection's [`MAX_CONN_INPUT_IN_FLIGHT`] until they are fed.
    Bytes(ConnId, Vec<u8>, [OwnedSemaphorePermit; 2]),
    Eof(ConnId),
}

impl Data {
    fn conn(&self) -> ConnId {
        match self {
            Data::Bytes(id, ..) | Data::Eof(id) => *id,
        }
    }
}

/// A handle to a running driver, for monitoring and shutdown.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::UnboundedSender<Event>,
    data_tx: mpsc::Sender<Data>,
    write_deadline: Arc<AtomicU64>,
    input_budget: Arc<Semaphore>,
}

impl DriverHandle {
    /// Hands a new socket of external connection `role` to the external NATS server
    /// at `peer` (`url` as logged, `userinfo` its credentials, `initial` the bytes
    /// already read from it) to the node. The receiver resolves when the socket is gone; `None` if
    /// the driver has stopped.
    pub fn attach_external<S>(
        &self,
        role: usize,
        stream: S,
        peer: SocketAddr,
        url: String,
        userinfo: Option<(String, Option<String>)>,
        initial: Vec<u8>,
    ) -> Option<oneshot::Receiver<()>>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (closed, rx) = oneshot::channel();
        let spawn = self.spawner(stream, peer);
        let dialed = Dialed {
            spawn,
            role,
            url,
            userinfo,
            initial,
            closed,
        };
        self.tx.send(Event::Dialed(Box::new(dialed))).ok()?;
        Some(rx)
    }

    fn spawner<S>(&self, stream: S, peer: SocketAddr) -> Box<dyn FnOnce(ConnId) -> Spawned + Send>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (events, data) = (self.tx.clone(), self.data_tx.clone());
        let (deadline, budget) = (self.write_deadline.clone(), self.input_budget.clone());
        Box::new(move |id| spawn_connection(id, peer, stream, events, data, deadline, budget))
    }

    /// How long one write to a client may block before the client is closed as a
    /// slow consumer (`write_deadline`); zero waits forever. Applies to the next
    /// write of every connection.
    pub fn set_write_deadline(&self, deadline: Duration) {
        let nanos = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        self.write_deadline.store(nanos, Ordering::Relaxed);
    }

    /// Runs `f` on the driver's task with the node and the current time.
    pub async fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Node, Now) -> T + Send + 'static,
    ) -> Option<T> {
        self.update(move |node: &mut Node, now| f(node, now)).await
    }

    /// Runs `f` on the driver's task with the node to change; what it outputs leaves
    /// with the batch it joins.
    pub async fn update<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Now) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |node, now| {
            let _ = tx.send(f(node, now));
        });
        self.tx.send(Event::Job(job)).ok()?;
        rx.await.ok()
    }
}

/// Largest read. A connection starts with [`MIN_READ_BUF`] and doubles while reads fill
/// it, so thousands of idle connections do not each hold a large buffer.
const READ_BUF: usize = 64 * 1024;
const MIN_READ_BUF: usize = 4 * 1024;
/// Bytes read from sockets and not yet fed to the node, over all connections. While the
/// driver holds input back (a reader is behind) readers stop here instead of queueing
/// without bound; the semaphore is fair, so one flooding connection cannot take all of it.
const MAX_INPUT_IN_FLIGHT: usize = 8 * 1024 * 1024;
/// The share of one connection: a producer whose input is held back stops reading
/// here, leaving the rest of the budget to everybody else.
const MAX_CONN_INPUT_IN_FLIGHT: usize = 1024 * 1024;
/// How long bytes queued toward a connection the server has closed may take to leave
/// (the NATS server's write deadline); a peer that does not read loses them.
const CLOSE_FLUSH_DEADLINE: Duration = Duration::from_secs(10);
const MAX_BATCH: usize = 256;
/// Input bytes taken into one batch: enough to amortise the store flush, small enough
/// that acknowledgements of the batch's first messages are not held back for long.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Input bytes one connection may feed per turn of a round, so that a client sending
/// a flood of small requests delays a neighbour's request by this much work at most.
const TURN_QUANTUM: usize = 16 * 1024;
/// The longest the driver holds input back while a reader that is behind makes no
/// progress; past it input flows again and a reader that stays stuck reaches the
/// slow-consumer limit and is closed.
const MAX_STALL: Duration = Duration::from_millis(250);

/// Owns the node and runs it until `shutdown` resolves.
pub struct Driver {
    node: Node,
    wall: WallClock,
    origin: tokio::time::Instant,
    rx: mpsc::UnboundedReceiver<Event>,
    tx: mpsc::UnboundedSender<Event>,
    data_rx: mpsc::Receiver<Data>,
    data_tx: mpsc::Sender<Data>,
    input_budget: Arc<Semaphore>,
    /// Input read and not yet fed, per connection, in arrival order.
    parked: HashMap<ConnId, VecDeque<Data>>,
    /// Connections with parked input, in the order they get their next turn: each
    /// batch feeds one read per connection per round, so a flood from one client
    /// does not queue everybody else's requests behind it.
    turns: VecDeque<ConnId>,
    /// Connections that had nothing waiting when their input arrived, not fed yet.
    fresh: HashSet<ConnId>,
    /// The last batch ended early to let fresh input out first; the next one may not.
    ended_for_fresh: bool,
    conns: HashMap<ConnId, Spawned>,
    /// Sockets to the external NATS server, told when they are gone.
    external: HashMap<ConnId, oneshot::Sender<()>>,
    log: Box<dyn FnMut(LogLine) + Send>,
    /// Nanoseconds; shared with the connection tasks, which read it per write.
    write_deadline: Arc<AtomicU64>,
    after_turn: Option<TurnHook>,
}

impl Driver {
    pub fn new(node: Node, wall: WallClock, log: Box<dyn FnMut(LogLine) + Send>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(1024);
        Driver {
            node,
            wall,
            origin: tokio::time::Instant::now(),
            rx,
            tx,
            data_rx,
            data_tx,
            input_budget: Arc::new(Semaphore::new(MAX_INPUT_IN_FLIGHT)),
            parked: HashMap::new(),
            turns: VecDeque::new(),
            fresh: HashSet::new(),
            ended_for_fresh: false,
            conns: HashMap::new(),
            external: HashMap::new(),
            log,
            // Off until the embedder sets it: the server takes it from its options.
            write_deadline: Arc::new(AtomicU64::new(0)),
            after_turn: None,
        }
    }

    /// Runs `hook` after the node has taken each batch and its due timers, before the
    /// store flush and the release of the outputs: IO the node asks for that is not a
    /// connection's (the FT store lock), answered within the same turn.
    pub fn after_turn(&mut self, hook: impl FnMut(&mut Node, Now) + Send + 'static) {
        self.after_turn = Some(Box::new(hook));
    }

    pub fn handle(&self) -> DriverHandle {
        DriverHandle {
            tx: self.tx.clone(),
            data_tx: self.data_tx.clone(),
            write_deadline: self.write_deadline.clone(),
            input_budget: self.input_budget.clone(),
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: Instant::from_nanos(self.origin.elapsed().as_nanos() as u64),
            wall_ns: (self.wall)(),
        }
    }

    /// Starts the node's streaming server (recovery, subscriptions, startup lines).
    pub fn start(&mut self) -> Result<(), String> {
        let now = self.now();
        let result = self.node.start(now);
        // Startup redeliveries record pending messages: durable before they leave,
        // like every batch.
        if let Err(e) = self.node.flush_store(now) {
            (self.log)(LogLine {
                origin: stan_core::log::Origin::Stream,
                level: stan_core::log::Level::Error,
                text: format!("Error flushing store: {e}"),
            });
        }
        self.release();
        result
    }

    /// Takes over a socket the node already uses as `id` (the first connection to
    /// the external NATS server, made before the driver runs). The receiver resolves
    /// when the socket is gone.
    pub fn adopt<S>(&mut self, id: ConnId, stream: S, peer: SocketAddr) -> oneshot::Receiver<()>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let spawn = self.handle().spawner(stream, peer);
        self.conns.insert(id, spawn(id));
        let (closed, rx) = oneshot::channel();
        self.external.insert(id, closed);
        rx
    }

    /// Starts accepting connections from `listener` on a task of its own.
    pub fn serve<L: Listener>(&self, mut listener: L) -> tokio::task::JoinHandle<()> {
        let tx = self.tx.clone();
        let data_tx = self.data_tx.clone();
        let deadline = self.write_deadline.clone();
        let budget = self.input_budget.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let (events, data) = (tx.clone(), data_tx.clone());
                        let (deadline, budget) = (deadline.clone(), budget.clone());
                        let spawn = Box::new(move |id| {
                            spawn_connection(id, peer, stream, events, data, deadline, budget)
                        });
                        if tx.send(Event::Accepted(spawn, peer)).is_err() {
                            return;
                        }
                    }
                    // Out of descriptors and similar: wait a little rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    }

    /// The cluster port is up on `port`: the node logs it and starts its routes.
    pub fn start_routes(&mut self, port: u16) {
        let now = self.now();
        self.node.start_routes(now, port);
        self.release();
    }

    /// Starts accepting route connections from `listener` (the cluster port).
    pub fn serve_routes(
        &self,
        mut listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<()> {
        let tx = self.tx.clone();
        let data_tx = self.data_tx.clone();
        let deadline = self.write_deadline.clone();
        let budget = self.input_budget.clone();
        tokio::spawn(async move {
            loop {
                match Listener::accept(&mut listener).await {
                    Ok((stream, peer)) => {
                        let (events, data) = (tx.clone(), data_tx.clone());
                        let (deadline, budget) = (deadline.clone(), budget.clone());
                        let spawn = Box::new(move |id| {
                            spawn_connection(id, peer, stream, events, data, deadline, budget)
                        });
                        if tx.send(Event::Route(spawn, peer, None)).is_err() {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    }

    /// Opens a route the node asked for; the outcome comes back as an event.
    fn dial(&self, url: stan_core::nats::RouteUrl) {
        let tx = self.tx.clone();
        let data_tx = self.data_tx.clone();
        let deadline = self.write_deadline.clone();
        let budget = self.input_budget.clone();
        tokio::spawn(async move {
            let addr = stan_core::nats::route::join_host_port(&url.host, url.port);
            let dialed = tokio::time::timeout(
                ROUTE_DIAL_TIMEOUT,
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await;
            let event = match dialed {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    match stream.peer_addr() {
                        Ok(peer) => {
                            let (events, data) = (tx.clone(), data_tx);
                            let spawn = Box::new(move |id| {
                                spawn_connection(id, peer, stream, events, data, deadline, budget)
                            });
                            Event::Route(spawn, peer, Some(url))
                        }
                        Err(e) => {
                            Event::DialFailed(url, format!("dial tcp {addr}: {}", go_error(&e)))
                        }
                    }
                }
                Ok(Err(e)) => Event::DialFailed(url, format!("dial tcp {addr}: {}", go_error(&e))),
                Err(_) => Event::DialFailed(url, format!("dial tcp {addr}: i/o timeout")),
            };
            let _ = tx.send(event);
        });
    }

    /// Runs until `shutdown` completes, then closes every connection.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Node {
        tokio::pin!(shutdown);
        // While stalled: when a lagging reader last made progress (or the stall began).
        let mut stalled_since: Option<tokio::time::Instant> = None;
        loop {
            let deadline = self.node.poll_timeout().map(|at| {
                let wait =
                    Duration::from_nanos(at.as_nanos()).saturating_sub(self.origin.elapsed());
                tokio::time::Instant::now() + wait
            });
            // While a reader is behind, the input of those feeding it waits until it
            // catches up (bounded).
            let holding = match (self.node.wants_backpressure(), stalled_since) {
                (false, _) => {
                    stalled_since = None;
                    false
                }
                (true, None) => {
                    stalled_since = Some(tokio::time::Instant::now());
                    true
                }
                (true, Some(t)) => t.elapsed() < MAX_STALL,
            };
            let stall_end = stalled_since
                .filter(|_| holding && !self.turns.is_empty())
                .map(|t| t + MAX_STALL);
            // Input left over from the last batch is fed without waiting for news: its
            // senders may have nothing more to say until they hear back.
            let backlog = self
                .turns
                .iter()
                .any(|&id| !(holding && self.node.holds_input(id)));
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                ev = self.rx.recv() => {
                    let now = self.now();
                    if let Some(ev) = ev {
                        // Progress is a reader that is behind taking some of
                        // what waits for it; everybody else's writes do not count.
                        if let Event::Flushed(id, _) = &ev {
                            if stalled_since.is_some() && self.node.is_behind(*id) {
                                stalled_since = Some(tokio::time::Instant::now());
                            }
                        }
                        self.apply(now, ev);
                    }
                }
                data = self.data_rx.recv() => {
                    if let Some(data) = data {
                        self.park(data);
                    }
                }
                _ = sleep_until(deadline) => {}
                _ = sleep_until(stall_end) => {}
                _ = std::future::ready(()), if backlog => {}
            }
            // Take everything else that is ready as part of the same batch.
            let now = self.now();
            for _ in 0..MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(ev) => self.apply(now, ev),
                    Err(_) => break,
                }
            }
            while let Ok(data) = self.data_rx.try_recv() {
                self.park(data);
            }
            self.feed_parked(now, stalled_since);
            self.node.handle_timeout(now);
            if let Some(hook) = self.after_turn.as_mut() {
                hook(&mut self.node, now);
            }
            // Group commit: one flush for the whole batch, before anything it
            // acknowledges leaves.
            if let Err(e) = self.node.flush_store(now) {
                (self.log)(stan_core::log::LogLine {
                    origin: stan_core::log::Origin::Stream,
                    level: stan_core::log::Level::Error,
                    text: format!("Error flushing store: {e}"),
                });
            }
            self.release();
        }
        for (_, c) in self.conns.drain() {
            c.reader.abort();
        }
        self.node
    }

    fn park(&mut self, data: Data) {
        let id = data.conn();
        let queue = self.parked.entry(id).or_default();
        if queue.is_empty() {
            // A connection with nothing waiting goes first: whoever sends a little now
            // and then is served before a flood's next turn, and a flood, always
            // waiting, never jumps the queue this way.
            self.turns.push_front(id);
            self.fresh.insert(id);
        }
        queue.push_back(data);
    }

    /// Feeds parked input, one read per connection per round, up to a batch; the
    /// connections the node holds back keep theirs (for at most [`MAX_STALL`]
    /// without progress).
    fn feed_parked(&mut self, now: Now, stalled_since: Option<tokio::time::Instant>) {
        let stall_over = stalled_since.is_some_and(|t| t.elapsed() >= MAX_STALL);
        let mut held = Vec::new();
        let mut taken = 0;
        // A batch ends after a round that fed several connections: its outputs leave
        // now rather than after more reads of a busy neighbour.
        let (mut round_left, mut fed_in_round) = (self.turns.len(), 0);
        // Fresh input is at the front; once it is fed, the batch may end there, so
        // that its answers leave before a flood's next turn is worked through (every
        // other batch at most, so that a stream of newcomers cannot starve a flood).
        let mut fed_fresh = false;
        let may_end_for_fresh = !std::mem::take(&mut self.ended_for_fresh);
        while taken < MAX_BATCH_BYTES {
            if fed_fresh
                && may_end_for_fresh
                && self
                    .turns
                    .front()
                    .is_some_and(|id| !self.fresh.contains(id))
            {
                self.ended_for_fresh = true;
                break;
            }
            if round_left == 0 {
                if fed_in_round > 1 {
                    break;
                }
                // Input that arrived meanwhile joins the next round, so a connection
                // alone with a flood waits one turn of it, not a whole batch.
                while let Ok(data) = self.data_rx.try_recv() {
                    self.park(data);
                }
                (round_left, fed_in_round) = (self.turns.len(), 0);
            }
            let Some(id) = self.turns.pop_front() else {
                break;
            };
            round_left -= 1;
            if !stall_over && self.node.wants_backpressure() && self.node.holds_input(id) {
                held.push(id);
                continue;
            }
            fed_fresh |= self.fresh.remove(&id);
            let Some(queue) = self.parked.get_mut(&id) else {
                continue;
            };
            let Some(mut data) = queue.pop_front() else {
                self.parked.remove(&id);
                continue;
            };
            // One turn feeds at most a quantum; the rest of a large read waits for
            // the connection's next turn (the node keeps partial operations).
            if let Data::Bytes(_, bytes, _) = &mut data {
                if bytes.len() > TURN_QUANTUM {
                    let rest = bytes.split_off(TURN_QUANTUM);
                    let head = std::mem::replace(bytes, rest);
                    queue.push_front(data);
                    self.turns.push_back(id);
                    taken += self.feed(now, id, &head);
                    fed_in_round += 1;
                    continue;
                }
            }
            if queue.is_empty() {
                self.parked.remove(&id);
            } else {
                self.turns.push_back(id);
            }
            taken += self.input(now, data);
            fed_in_round += 1;
        }
        // Held connections keep their place at the front.
        for id in held.into_iter().rev() {
            self.turns.push_front(id);
        }
    }

    /// Feeds one read to the node; returns its size.
    fn input(&mut self, now: Now, data: Data) -> usize {
        match data {
            Data::Bytes(id, bytes, _permit) => self.feed(now, id, &bytes),
            Data::Eof(id) => {
                self.apply(now, Event::Closed(id));
                0
            }
        }
    }

    fn feed(&mut self, now: Now, conn: ConnId, bytes: &[u8]) -> usize {
        self.node.handle_input(now, Input::Received { conn, bytes });
        bytes.len()
    }

    fn apply(&mut self, now: Now, ev: Event) {
        match ev {
            Event::Accepted(spawn, peer) => {
                let id = self.node.accept(now, peer);
                self.conns.insert(id, spawn(id));
            }
            Event::Route(spawn, peer, url) => {
                let id = self.node.accept_route(now, peer, url);
                self.conns.insert(id, spawn(id));
            }
            Event::DialFailed(url, error) => self.node.route_dial_failed(now, &url, &error),
            Event::Flushed(id, n) => self
                .node
                .handle_input(now, Input::Flushed { conn: id, bytes: n }),
            Event::Dialed(d) => {
                let Some(id) = self.node.attach_external(d.role, &d.url, d.userinfo) else {
                    return;
                };
                self.conns.insert(id, (d.spawn)(id));
                self.external.insert(id, d.closed);
                if !d.initial.is_empty() {
                    self.feed(now, id, &d.initial);
                }
            }
            Event::Closed(id) => {
                if let Some(c) = self.conns.remove(&id) {
                    c.reader.abort();
                }
                self.external.remove(&id);
                self.parked.remove(&id);
                self.fresh.remove(&id);
                self.node.handle_input(now, Input::Closed { conn: id });
            }
            Event::Job(f) => f(&mut self.node, now),
            Event::WriteDeadline {
                id,
                peer,
                limit,
                bytes,
            } => {
                (self.log)(LogLine {
                    origin: stan_core::log::Origin::Nats,
                    level: stan_core::log::Level::Info,
                    text: format!(
                        "{peer} - cid:{} - Slow Consumer Detected: WriteDeadline of {} exceeded with 1 chunks of {bytes} total bytes.",
                        id.0,
                        stan_core::timefmt::go_duration(limit.as_nanos() as i64)
                    ),
                });
                self.apply(now, Event::Closed(id));
            }
            Event::HandshakeFailed(id, error) => {
                self.node.handle_input(
                    now,
                    Input::TlsFailed {
                        conn: id,
                        error: &error,
                    },
                );
                self.apply(now, Event::Closed(id));
            }
        }
    }

    fn release(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { conn, data } => {
                    if let Some(c) = self.conns.get(&conn) {
                        let _ = c.writer.send(data);
                    }
                }
                Output::Close { conn } => {
                    // Dropping the writer's sender lets it finish what is queued, then close.
                    if let Some(c) = self.conns.remove(&conn) {
                        c.reader.abort();
                        let _ = c.closing.send(());
                    }
                    self.external.remove(&conn);
                    // Whatever it sent after the close is not read.
                    self.parked.remove(&conn);
                    self.fresh.remove(&conn);
                }
                Output::Log(line) => (self.log)(line),
                Output::Dial { url } => self.dial(url),
            }
        }
    }
}

/// How long one attempt to open a route may take.
const ROUTE_DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// A connect error as Go's network library words the common ones.
fn go_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn spawn_connection<S>(
    id: ConnId,
    peer: SocketAddr,
    stream: S,
    events: mpsc::UnboundedSender<Event>,
    data: mpsc::Sender<Data>,
    deadline: Arc<AtomicU64>,
    budget: Arc<Semaphore>,
) -> Spawned
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (closing_tx, closing_rx) = oneshot::channel::<()>();
    let flushed = events.clone();
    tokio::spawn(async move {
        // Resolves CLOSE_FLUSH_DEADLINE after the server closed the connection; a peer
        // that never reads would otherwise keep this task, its socket and every byte
        // queued for it forever.
        let give_up = async {
            if closing_rx.await.is_ok() {
                tokio::time::sleep(CLOSE_FLUSH_DEADLINE).await;
            } else {
                // The driver ended without closing: keep writing as before.
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(give_up);
        loop {
            let mut chunk = tokio::select! {
                c = wrx.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
                _ = &mut give_up => return,
            };
            // Coalesce what is already queued into one write.
            while let Ok(more) = wrx.try_recv() {
                chunk.extend_from_slice(&more);
                if chunk.len() >= 1 << 20 {
                    break;
                }
            }
            let n = chunk.len();
            let limit = Duration::from_nanos(deadline.load(Ordering::Relaxed));
            let write = async {
                if limit.is_zero() {
                    Ok(wr.write_all(&chunk).await)
                } else {
                    tokio::time::timeout(limit, wr.write_all(&chunk)).await
                }
            };
            let written = tokio::select! {
                w = write => w,
                _ = &mut give_up => return,
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let _ = flushed.send(Event::Closed(id));
                    return;
                }
                Err(_) => {
                    let _ = flushed.send(Event::WriteDeadline {
                        id,
                        peer,
                        limit,
                        bytes: n,
                    });
                    return;
                }
            }
            if flushed.send(Event::Flushed(id, n)).is_err() {
                return;
            }
        }
        tokio::select! {
            _ = wr.shutdown() => {}
            _ = &mut give_up => {}
        }
    });
    let own_budget = Arc::new(Semaphore::new(MAX_CONN_INPUT_IN_FLIGHT));
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; MIN_READ_BUF];
        loop {
            match rd.read(&mut buf).await {
                // No input came before the handshake, so none can be overtaken.
                Err(e) if e.get_ref().is_some_and(|r| r.is::<HandshakeFailed>()) => {
                    let _ = events.send(Event::HandshakeFailed(id, e.to_string()));
                    return;
                }
                Ok(0) | Err(_) => {
                    let _ = data.send(Data::Eof(id)).await;
                    return;
                }
                Ok(n) => {
                    // The connection's share first: a held-back producer waits here
                    // without taking from everybody's budget.
                    let Ok(own) = own_budget.clone().acquire_many_owned(n as u32).await else {
                        return;
                    };
                    let Ok(shared) = budget.clone().acquire_many_owned(n as u32).await else {
                        return;
                    };
                    // Exactly the bytes read travel to the driver; the buffer stays
                    // here, growing while reads fill it and shrinking when they do not.
                    let bytes = buf[..n].to_vec();
                    if n == buf.len() && buf.len() < READ_BUF {
                        buf.resize(buf.len() * 2, 0);
                    } else if n < buf.len() / 8 && buf.len() > MIN_READ_BUF {
                        buf = vec![0u8; buf.len() / 2];
                    }
                    if data
                        .send(Data::Bytes(id, bytes, [own, shared]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Spawned {
        writer: wtx,
        reader: reader.abort_handle(),
        closing: closing_tx,
    }
}

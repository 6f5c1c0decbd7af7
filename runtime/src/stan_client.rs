//! An async NATS Streaming client over tokio, for tests and `stan-bench`.
//!
//! One task owns the socket and a core [`Client`]; [`StanConn`] and [`StanSubscription`]
//! talk to it over channels, so every protocol decision stays in the core state machine
//! and this file only moves bytes, time and results. The monotonic clock is
//! `tokio::time::Instant`, so a simulated tokio clock drives the client's timers too.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use stan_core::client::{Client, ClientConfig, ClientError, Event, Guid, SubHandle};
use stan_core::{Instant, Now};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::driver::{system_wall_clock, WallClock};

pub use stan_core::client::{StartAt, SubscribeOptions};
/// A message delivered to a subscription.
pub use stan_core::streaming::pb::MsgProto as Msg;

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StanError {
    /// The socket could not be opened or failed.
    #[error("{0}")]
    Io(String),
    /// A refusal or failure text from the server or the protocol (timeouts, ping
    /// failure), verbatim.
    #[error("{0}")]
    Protocol(String),
    /// The call is not allowed in the client's state.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Connection settings beyond the address and IDs; defaults are the Go client's.
#[derive(Debug, Clone)]
pub struct StanOptions {
    pub discover_prefix: String,
    pub connect_wait: Duration,
    pub pub_ack_wait: Duration,
    pub ping_interval_secs: i32,
    pub ping_max_out: i32,
    /// Most publishes awaiting a PubAck; further `publish_async` calls wait.
    pub max_pub_acks_inflight: usize,
    /// Seeds inboxes and GUIDs; `None` picks a fresh seed so that processes differ.
    pub rng_seed: Option<u64>,
}

impl Default for StanOptions {
    fn default() -> Self {
        let c = ClientConfig::new("", "", 0);
        StanOptions {
            discover_prefix: c.discover_prefix,
            connect_wait: c.connect_wait,
            pub_ack_wait: c.pub_ack_wait,
            ping_interval_secs: c.ping_interval_secs,
            ping_max_out: c.ping_max_out,
            max_pub_acks_inflight: c.max_pub_acks_inflight,
            rng_seed: None,
        }
    }
}

/// Inboxes and GUIDs must not collide between clients of different processes or of one
/// process, so an unseeded client mixes the wall clock, the process ID and a counter.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let wall = (system_wall_clock())() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    wall ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

type Reply<T> = oneshot::Sender<Result<T, StanError>>;

enum Command {
    Publish {
        channel: String,
        data: Vec<u8>,
        done: Reply<()>,
        permit: OwnedSemaphorePermit,
    },
    Subscribe {
        channel: String,
        opts: SubscribeOptions,
        msgs: mpsc::UnboundedSender<Msg>,
        done: Reply<SubHandle>,
    },
    Ack {
        sub: SubHandle,
        sequence: u64,
        done: Reply<()>,
    },
    Unsubscribe {
        sub: SubHandle,
        close: bool,
        done: Reply<()>,
    },
    Close {
        done: Reply<()>,
    },
}

/// What handles share with the connection task.
struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    /// Why the connection ended, for calls that find the task gone.
    ended: Arc<Mutex<Option<StanError>>>,
    pub_permits: Arc<Semaphore>,
}

impl Shared {
    fn gone(&self) -> StanError {
        self.ended
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or(StanError::Client(ClientError::ConnectionClosed))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StanError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }
}

/// A connection to a NATS Streaming server. Clones share the connection; when the last
/// handle (connection or subscription) is dropped the connection is closed.
#[derive(Clone)]
pub struct StanConn {
    shared: Arc<Shared>,
    client_id: Arc<str>,
}

impl std::fmt::Debug for StanConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StanConn")
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl StanConn {
    /// Connects to the NATS server at `addr` (`host:port`, optionally `nats://`-prefixed)
    /// and registers `client_id` with the streaming server of `cluster_id`.
    pub async fn connect(
        addr: &str,
        cluster_id: &str,
        client_id: &str,
        opts: StanOptions,
    ) -> Result<StanConn, StanError> {
        let addr = addr.split_once("://").map_or(addr, |(_, rest)| rest);
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| StanError::Io(e.to_string()))?;
        // PubAcks and acks are small and latency-bound.
        let _ = stream.set_nodelay(true);
        Self::connect_stream(stream, cluster_id, client_id, opts).await
    }

    /// As [`StanConn::connect`], over an already open stream (a simulated one, say).
    pub async fn connect_stream<S>(
        stream: S,
        cluster_id: &str,
        client_id: &str,
        opts: StanOptions,
    ) -> Result<StanConn, StanError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut cfg = ClientConfig::new(
            cluster_id,
            client_id,
            opts.rng_seed.unwrap_or_else(fresh_seed),
        );
        cfg.discover_prefix = opts.discover_prefix;
        cfg.connect_wait = opts.connect_wait;
        cfg.pub_ack_wait = opts.pub_ack_wait;
        cfg.ping_interval_secs = opts.ping_interval_secs;
        cfg.ping_max_out = opts.ping_max_out;
        cfg.max_pub_acks_inflight = opts.max_pub_acks_inflight.max(1);
        let (commands, rx) = mpsc::unbounded_channel();
        let ended = Arc::new(Mutex::new(None));
        let (connected_tx, connected_rx) = oneshot::channel();
        let task = Task {
            origin: tokio::time::Instant::now(),
            wall: system_wall_clock(),
            connected: Some(connected_tx),
            pubs: HashMap::new(),
            subs: HashMap::new(),
            subscribing: HashMap::new(),
            unsubscribing: HashMap::new(),
            closing: None,
            ended: ended.clone(),
        };
        tokio::spawn(task.run(cfg, stream, rx));
        let shared = Arc::new(Shared {
            commands,
            ended,
            pub_permits: Arc::new(Semaphore::new(opts.max_pub_acks_inflight.max(1))),
        });
        match connected_rx.await {
            Ok(Ok(())) => Ok(StanConn {
                shared,
                client_id: client_id.into(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(shared.gone()),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Publishes and waits for the PubAck.
    pub async fn publish(&self, channel: &str, data: &[u8]) -> Result<(), StanError> {
        self.publish_async(channel, data).await?.await
    }

    /// Sends a publish and returns a future of its PubAck. Waits first while
    /// `max_pub_acks_inflight` PubAcks are outstanding.
    pub async fn publish_async(
        &self,
        channel: &str,
        data: &[u8],
    ) -> Result<PubAckWaiter, StanError> {
        let permit = self
            .shared
            .pub_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.shared.gone())?;
        let (done, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Publish {
                channel: channel.to_string(),
                data: data.to_vec(),
                done,
                permit,
            })
            .map_err(|_| self.shared.gone())?;
        Ok(PubAckWaiter {
            rx,
            shared: self.shared.clone(),
        })
    }

    /// Subscribes; returns once the server accepted the subscription.
    pub async fn subscribe(
        &self,
        channel: &str,
        opts: SubscribeOptions,
    ) -> Result<StanSubscription, StanError> {
        let (msgs, rx) = mpsc::unbounded_channel();
        let sub = self
            .shared
            .call(|done| Command::Subscribe {
                channel: channel.to_string(),
                opts,
                msgs,
                done,
            })
            .await?;
        Ok(StanSubscription {
            sub,
            rx,
            shared: self.shared.clone(),
        })
    }

    /// Closes the connection on the server and waits for its answer.
    pub async fn close(&self) -> Result<(), StanError> {
        self.shared.call(|done| Command::Close { done }).await
    }
}

/// Resolves when the PubAck of one publish arrives (or the publish fails).
pub struct PubAckWaiter {
    rx: oneshot::Receiver<Result<(), StanError>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PubAckWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubAckWaiter").finish_non_exhaustive()
    }
}

impl Future for PubAckWaiter {
    type Output = Result<(), StanError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.shared.gone())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One subscription. Messages are buffered without bound on this side; with automatic
/// acks they are acknowledged as they arrive, so `max_in_flight` does not limit the
/// buffer.
pub struct StanSubscription {
    sub: SubHandle,
    rx: mpsc::UnboundedReceiver<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StanSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StanSubscription")
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

impl StanSubscription {
    /// The next message; `None` once the subscription or connection has ended.
    pub async fn next(&mut self) -> Option<Msg> {
        self.rx.recv().await
    }

    /// Acknowledges `sequence` (manual-ack subscriptions only).
    pub async fn ack(&self, sequence: u64) -> Result<(), StanError> {
        let sub = self.sub;
        self.shared
            .call(|done| Command::Ack {
                sub,
                sequence,
                done,
            })
            .await
    }

    /// Removes the subscription on the server (a durable is forgotten).
    pub async fn unsubscribe(self) -> Result<(), StanError> {
        let sub = self.sub;
        self.shared
            .call(|done| Command::Unsubscribe {
                sub,
                close: false,
                done,
            })
            .await
    }

    /// Closes the subscription on the server (a durable can be resumed).
    pub async fn close(self) -> Result<(), StanError> {
        let sub = self.sub;
        self.shared
            .call(|done| Command::Unsubscribe {
                sub,
                close: true,
                done,
            })
            .await
    }
}

/// The connection task's state: the core client and who waits for what.
struct Task {
    origin: tokio::time::Instant,
    wall: WallClock,
    connected: Option<Reply<()>>,
    pubs: HashMap<Guid, (Reply<()>, OwnedSemaphorePermit)>,
    subs: HashMap<SubHandle, mpsc::UnboundedSender<Msg>>,
    subscribing: HashMap<SubHandle, Reply<SubHandle>>,
    unsubscribing: HashMap<SubHandle, Reply<()>>,
    closing: Option<Reply<()>>,
    ended: Arc<Mutex<Option<StanError>>>,
}

const READ_BUF: usize = 64 * 1024;

impl Task {
    fn now(&self) -> Now {
        Now {
            mono: Instant::from_nanos(self.origin.elapsed().as_nanos() as u64),
            wall_ns: (self.wall)(),
        }
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_nanos(at.as_nanos())
    }

    async fn run<S>(
        mut self,
        cfg: ClientConfig,
        stream: S,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut client = Client::new(cfg, self.now());
        let mut buf = vec![0u8; READ_BUF];
        // Bytes not yet written, from `wpos`. Writing is one more branch of the loop
        // rather than a blocking step, so reading goes on while a large batch drains
        // and the server never waits on us to take its deliveries.
        let mut wbuf: Vec<u8> = Vec::new();
        let mut wpos = 0;
        let mut handles_gone = false;
        loop {
            while let Some(bytes) = client.poll_transmit() {
                if wpos == wbuf.len() {
                    wbuf = bytes;
                    wpos = 0;
                } else {
                    wbuf.extend_from_slice(&bytes);
                }
            }
            self.dispatch_events(&mut client);
            if client.is_ended() {
                break;
            }
            let timer = client.poll_timeout().map(|at| self.deadline(at));
            tokio::select! {
                written = wr.write(&wbuf[wpos..]), if wpos < wbuf.len() => {
                    match written {
                        Ok(0) | Err(_) => client.handle_disconnect(),
                        Ok(n) => wpos += n,
                    }
                }
                read = rd.read(&mut buf) => {
                    match read {
                        Ok(0) | Err(_) => client.handle_disconnect(),
                        Ok(n) => client.handle_input(self.now(), &buf[..n]),
                    }
                }
                cmd = commands.recv(), if !handles_gone => {
                    match cmd {
                        Some(cmd) => {
                            let now = self.now();
                            self.apply(&mut client, now, cmd);
                            // Take every command already queued, so a burst of
                            // publishes leaves in one write.
                            while let Ok(cmd) = commands.try_recv() {
                                self.apply(&mut client, now, cmd);
                            }
                        }
                        None => {
                            handles_gone = true;
                            let _ = client.close(self.now());
                        }
                    }
                }
                _ = sleep_until(timer), if timer.is_some() => client.handle_timeout(self.now()),
            }
        }
        // The last bytes (a close request's answer may not be needed, but acks are).
        let _ = wr.write_all(&wbuf[wpos..]).await;
        let _ = wr.shutdown().await;
    }

    fn apply(&mut self, client: &mut Client, now: Now, cmd: Command) {
        match cmd {
            Command::Publish {
                channel,
                data,
                done,
                permit,
            } => match client.publish(now, &channel, &data) {
                Ok(guid) => {
                    self.pubs.insert(guid, (done, permit));
                }
                Err(e) => {
                    let _ = done.send(Err(e.into()));
                }
            },
            Command::Subscribe {
                channel,
                opts,
                msgs,
                done,
            } => match client.subscribe(now, &channel, opts) {
                Ok(sub) => {
                    // Registered before any event of this subscription is handled.
                    self.subs.insert(sub, msgs);
                    self.subscribing.insert(sub, done);
                }
                Err(e) => {
                    let _ = done.send(Err(e.into()));
                }
            },
            Command::Ack {
                sub,
                sequence,
                done,
            } => {
                let _ = done.send(client.ack(sub, sequence).map_err(Into::into));
            }
            Command::Unsubscribe { sub, close, done } => {
                let r = if close {
                    client.close_subscription(now, sub)
                } else {
                    client.unsubscribe(now, sub)
                };
                match r {
                    Ok(()) => {
                        self.unsubscribing.insert(sub, done);
                    }
                    Err(e) => {
                        let _ = done.send(Err(e.into()));
                    }
                }
            }
            Command::Close { done } => match client.close(now) {
                Ok(()) => self.closing = Some(done),
                Err(e) => {
                    let _ = done.send(Err(e.into()));
                }
            },
        }
    }

    fn dispatch_events(&mut self, client: &mut Client) {
        while let Some(event) = client.poll_event() {
            match event {
                Event::Connected => {
                    if let Some(tx) = self.connected.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Event::ConnectFailed(e) => self.end(StanError::Protocol(e)),
                Event::PubAck { guid, error } => {
                    if let Some((done, _permit)) = self.pubs.remove(&guid) {
                        let _ = done.send(match error {
                            None => Ok(()),
                            Some(e) => Err(StanError::Protocol(e)),
                        });
                    }
                }
                Event::Msg { sub, msg } => {
                    if let Some(tx) = self.subs.get(&sub) {
                        let _ = tx.send(msg);
                    }
                }
                Event::Subscribed { sub } => {
                    if let Some(done) = self.subscribing.remove(&sub) {
                        let _ = done.send(Ok(sub));
                    }
                }
                Event::SubscribeFailed { sub, error } => {
                    self.subs.remove(&sub);
                    if let Some(done) = self.subscribing.remove(&sub) {
                        let _ = done.send(Err(StanError::Protocol(error)));
                    }
                }
                Event::Unsubscribed { sub, error } => {
                    self.subs.remove(&sub);
                    if let Some(done) = self.unsubscribing.remove(&sub) {
                        let _ = done.send(error.map_or(Ok(()), |e| Err(StanError::Protocol(e))));
                    }
                }
                Event::Closed { error } => {
                    if let Some(done) = self.closing.take() {
                        let _ = done.send(
                            error
                                .clone()
                                .map_or(Ok(()), |e| Err(StanError::Protocol(e))),
                        );
                    }
                    self.end(StanError::Protocol(
                        error.unwrap_or_else(|| ClientError::ConnectionClosed.to_string()),
                    ));
                }
                Event::ConnectionLost(e) => self.end(StanError::Protocol(e)),
            }
        }
    }

    /// Records why the connection ended and releases every waiter with that reason.
    fn end(&mut self, reason: StanError) {
        if let Ok(mut e) = self.ended.lock() {
            e.get_or_insert(reason.clone());
        }
        if let Some(tx) = self.connected.take() {
            let _ = tx.send(Err(reason.clone()));
        }
        for (_, (done, _)) in self.pubs.drain() {
            let _ = done.send(Err(reason.clone()));
        }
        for (_, done) in self.subscribing.drain() {
            let _ = done.send(Err(reason.clone()));
        }
        for (_, done) in self.unsubscribing.drain() {
            let _ = done.send(Err(reason.clone()));
        }
        if let Some(done) = self.closing.take() {
            let _ = done.send(Err(reason));
        }
        // Ends every subscription's stream.
        self.subs.clear();
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stan_core::node::{Node, NodeConfig};
    use stan_core::store::MemStore;

    use crate::driver::Driver;

    /// A streaming server on an ephemeral port, running until the test ends.
    async fn server() -> String {
        let cfg = NodeConfig {
            streaming: Some(stan_core::streaming::Config::default()),
            ..NodeConfig::default()
        };
        let node = Node::with_streaming(cfg, Box::new(MemStore::new())).unwrap();
        let mut driver = Driver::new(node, system_wall_clock(), Box::new(|_| {}));
        driver.start().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        driver.serve(listener);
        tokio::spawn(driver.run(std::future::pending()));
        addr
    }

    async fn connect(addr: &str, id: &str) -> StanConn {
        StanConn::connect(addr, "test-cluster", id, StanOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_subscribe_round_trip() {
        let addr = server().await;
        let conn = connect(&addr, "me").await;
        for i in 0..10u8 {
            conn.publish("foo", &[i]).await.unwrap();
        }
        let opts = SubscribeOptions {
            start: StartAt::First,
            ..SubscribeOptions::default()
        };
        let mut sub = conn.subscribe("foo", opts).await.unwrap();
        let mut waiters = Vec::new();
        for i in 10..110u8 {
            waiters.push(conn.publish_async("foo", &[i]).await.unwrap());
        }
        for w in waiters {
            w.await.unwrap();
        }
        for seq in 1..=110u64 {
            let m = sub.next().await.unwrap();
            assert_eq!((m.sequence, m.subject.as_str()), (seq, "foo"));
            assert_eq!(m.data, vec![(seq - 1) as u8]);
        }
        assert_eq!(
            sub.ack(1).await.unwrap_err().to_string(),
            "stan: cannot manually ack in auto-ack mode"
        );
        sub.unsubscribe().await.unwrap();
        conn.close().await.unwrap();
        assert_eq!(
            conn.publish("foo", b"x").await.unwrap_err().to_string(),
            "stan: connection closed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manual_ack_and_durable_close() {
        let addr = server().await;
        let conn = connect(&addr, "me").await;
        let opts = SubscribeOptions {
            durable_name: Some("dur".into()),
            manual_ack: true,
            max_in_flight: 1,
            ..SubscribeOptions::default()
        };
        let mut sub = conn.subscribe("foo", opts.clone()).await.unwrap();
        conn.publish("foo", b"a").await.unwrap();
        conn.publish("foo", b"b").await.unwrap();
        let m = sub.next().await.unwrap();
        assert_eq!(m.sequence, 1);
        // MaxInFlight 1: the second message waits for the ack.
        let early = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
        assert!(early.is_err(), "{early:?}");
        sub.ack(1).await.unwrap();
        assert_eq!(sub.next().await.unwrap().sequence, 2);
        sub.close().await.unwrap();
        // The durable resumes where it stopped: message 2 is still unacknowledged.
        let mut sub = conn.subscribe("foo", opts).await.unwrap();
        let m = sub.next().await.unwrap();
        assert_eq!((m.sequence, m.redelivered), (2, true));
        conn.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_errors_are_verbatim() {
        let addr = server().await;
        let conn = connect(&addr, "me").await;
        let dup = StanConn::connect(&addr, "test-cluster", "me", StanOptions::default()).await;
        assert_eq!(
            dup.unwrap_err().to_string(),
            "stan: clientID already registered"
        );
        let bad = conn
            .subscribe("foo.*", SubscribeOptions::default())
            .await
            .unwrap_err();
        assert_eq!(bad.to_string(), "stan: invalid subject");
        let started = tokio::time::Instant::now();
        let wrong = StanConn::connect(&addr, "other-cluster", "x", StanOptions::default()).await;
        assert_eq!(
            wrong.unwrap_err().to_string(),
            "stan: connect request timeout (possibly wrong cluster ID?)"
        );
        // No responders: no need to wait for the connect timeout.
        assert!(started.elapsed() < Duration::from_secs(1));
        conn.close().await.unwrap();
    }
}

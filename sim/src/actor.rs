//! A client host: the core STAN client over turmoil TCP, run by a timed script.
//!
//! The loop is the usual sans-IO shell: bytes and timers go in, transmits go to a writer
//! task, events come out and are journaled. The script adds the application's side:
//! publishing, wanting subscriptions, acknowledging (or not), closing, freezing and
//! reconnecting with the same client ID.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use stan_core::client::{Client, ClientConfig, Event, Guid, SubHandle, SubscribeOptions};
use stan_core::{Instant, Now, Rng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::journal::{Ev, Inc, Journal, Silence, SubKind};
use crate::plan::{AckPolicy, ActorPlan, Plan, Step, SubSpec, TIMING};
use crate::server::{sim_now, virtual_wall_clock, CLUSTER_ID, PORT, SERVER_HOST};

/// How long to wait before asking again after a refusal that may pass (a durable still
/// attached to a dead connection, a subscribe that timed out).
const RETRY: Duration = Duration::from_secs(1);

fn now() -> Now {
    let t = sim_now();
    Now {
        mono: Instant::from_nanos(t.as_nanos() as u64),
        wall_ns: virtual_wall_clock()(),
    }
}

/// The tokio instant at which simulated time reaches `at`.
fn tokio_deadline(at: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.saturating_sub(sim_now())
}

/// A subscription the script wants, and what the current connection did about it.
struct Wanted {
    spec: SubSpec,
    /// False once the script ended it; a later `Resume` wants it again.
    wanted: bool,
    /// The journal's name for the current attempt, with its handle, on this connection.
    current: Option<(u32, SubHandle)>,
    /// Times each sequence was left unacknowledged, across connections: a durable that
    /// resumes still gets its acknowledgement eventually.
    skips: BTreeMap<u64, u8>,
}

/// Deadlines the script keeps besides the client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    Reconnect,
    Resubscribe(usize),
    /// A delayed ack: wanted subscription, journal sub id, sequence.
    Ack(usize, u32, u64),
    /// Ending a subscription whose subscribe was still unanswered (close or unsubscribe).
    EndSub(usize, bool),
}

struct Session {
    inc: Inc,
    client: Client,
    reader: turmoil::net::tcp::OwnedReadHalf,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    /// Journal sub id → wanted index, for this connection's subscriptions.
    subs: BTreeMap<u32, usize>,
    handles: BTreeMap<SubHandle, u32>,
    /// Payloads of publishes awaiting their PubAck.
    pubs: BTreeMap<Guid, String>,
}

pub struct Actor {
    plan: ActorPlan,
    workload_end: Duration,
    end: Duration,
    journal: Journal,
    rng: Rng,
    next_inc: u32,
    next_sub: u32,
    published: u64,
    session: Option<Session>,
    wanted: Vec<Wanted>,
    wakes: BTreeSet<(Duration, Wake)>,
    step: usize,
}

impl Actor {
    pub fn new(plan: ActorPlan, whole: &Plan, journal: Journal) -> Self {
        let rng = Rng::new(plan.seed);
        Actor {
            plan,
            workload_end: whole.workload_end,
            end: whole.end,
            journal,
            rng,
            next_inc: 1,
            next_sub: 1,
            published: 0,
            session: None,
            wanted: Vec::new(),
            wakes: BTreeSet::new(),
            step: 0,
        }
    }

    fn record(&self, ev: Ev) {
        self.journal.record(sim_now(), ev);
    }

    pub async fn run(mut self) -> turmoil::Result {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let t = sim_now();
            if t >= self.end {
                // Leaving without a close: the server may still hold the registration,
                // which the oracle reads at the end.
                self.session = None;
                return Ok(());
            }
            let mut deadline = self.end;
            if let Some((at, _)) = self.plan.steps.get(self.step) {
                deadline = deadline.min(*at);
            }
            if let Some((at, _)) = self.wakes.first() {
                deadline = deadline.min(*at);
            }
            if let Some(at) = self.session.as_ref().and_then(|s| s.client.poll_timeout()) {
                deadline = deadline.min(Duration::from_nanos(at.as_nanos()));
            }
            let sleep = tokio::time::sleep_until(tokio_deadline(deadline));
            match self.session.as_mut() {
                Some(s) => {
                    tokio::select! {
                        biased;
                        r = s.reader.read(&mut buf) => match r {
                            Ok(0) | Err(_) => s.client.handle_disconnect(),
                            Ok(n) => s.client.handle_input(now(), &buf[..n]),
                        },
                        _ = sleep => {}
                    }
                }
                None => sleep.await,
            }
            self.fire_due().await?;
            self.pump();
        }
    }

    async fn fire_due(&mut self) -> turmoil::Result {
        let t = sim_now();
        if let Some(s) = self.session.as_mut() {
            if s.client
                .poll_timeout()
                .is_some_and(|at| at.as_nanos() <= t.as_nanos() as u64)
            {
                s.client.handle_timeout(now());
            }
        }
        while let Some((at, step)) = self.plan.steps.get(self.step).cloned() {
            if at > t {
                break;
            }
            self.step += 1;
            self.pump();
            self.run_step(step).await?;
        }
        while let Some(&(at, wake)) = self.wakes.first() {
            if at > sim_now() {
                break;
            }
            self.wakes.pop_first();
            self.pump();
            self.run_wake(wake).await?;
        }
        Ok(())
    }

    async fn run_step(&mut self, step: Step) -> turmoil::Result {
        match step {
            Step::Connect => self.connect().await,
            Step::Publish { channel } => {
                let Some(s) = self.session.as_mut() else {
                    return Ok(());
                };
                if !s.client.is_connected() || !s.client.can_publish() {
                    return Ok(());
                }
                self.published += 1;
                let payload = format!("p{}.{}", self.plan.id, self.published);
                let inc = s.inc;
                if let Ok(guid) = s.client.publish(now(), &channel, payload.as_bytes()) {
                    s.pubs.insert(guid, payload.clone());
                    self.record(Ev::Published {
                        inc,
                        channel,
                        payload,
                    });
                }
                Ok(())
            }
            Step::Subscribe(spec) => {
                self.wanted.push(Wanted {
                    spec,
                    wanted: true,
                    current: None,
                    skips: BTreeMap::new(),
                });
                self.subscribe(self.wanted.len() - 1);
                Ok(())
            }
            Step::EndSub { n, unsubscribe } => {
                if let Some(w) = self.wanted.get_mut(n) {
                    w.wanted = false;
                    self.end_sub(n, unsubscribe);
                }
                Ok(())
            }
            Step::Resume { n } => {
                if let Some(w) = self.wanted.get_mut(n) {
                    if !w.wanted {
                        w.wanted = true;
                        self.subscribe(n);
                    }
                }
                Ok(())
            }
            Step::Close => {
                if let Some(s) = self.session.as_mut() {
                    if s.client.close(now()).is_ok() {
                        let inc = s.inc;
                        self.record(Ev::CloseSent { inc });
                    }
                }
                Ok(())
            }
            Step::Drop => {
                if let Some(s) = self.session.take() {
                    self.record(Ev::Dropped { inc: s.inc });
                    self.forget_session();
                }
                Ok(())
            }
            Step::Freeze(d) => {
                let actor = self.plan.id;
                self.record(Ev::SilenceStart {
                    actor,
                    cause: Silence::Freeze,
                });
                tokio::time::sleep(d).await;
                self.record(Ev::SilenceEnd {
                    actor,
                    cause: Silence::Freeze,
                });
                Ok(())
            }
        }
    }

    async fn run_wake(&mut self, wake: Wake) -> turmoil::Result {
        match wake {
            Wake::Reconnect => {
                if self.session.is_none() && sim_now() < self.workload_end {
                    self.connect().await?;
                }
            }
            Wake::Resubscribe(n) => {
                if self.wanted[n].wanted
                    && self.wanted[n].current.is_none()
                    && sim_now() < self.workload_end
                {
                    self.subscribe(n);
                }
            }
            Wake::Ack(n, sub, seq) => self.ack(n, sub, seq),
            Wake::EndSub(n, unsubscribe) => {
                if !self.wanted[n].wanted {
                    self.end_sub(n, unsubscribe);
                }
            }
        }
        Ok(())
    }

    async fn connect(&mut self) -> turmoil::Result {
        if self.session.is_some() {
            return Ok(());
        }
        let inc = Inc {
            actor: self.plan.id,
            n: self.next_inc,
        };
        self.next_inc += 1;
        self.record(Ev::Connecting {
            inc,
            client_id: self.plan.client_id.clone(),
        });
        let stream = match turmoil::net::TcpStream::connect((SERVER_HOST, PORT)).await {
            Ok(s) => s,
            Err(e) => {
                self.record(Ev::ConnectFailed {
                    inc,
                    error: format!("tcp: {}", e.kind()),
                });
                self.schedule_reconnect();
                return Ok(());
            }
        };
        let (reader, mut write_half) = stream.into_split();
        let (writer, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(bytes) = queue.recv().await {
                if write_half.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut cfg =
            ClientConfig::new(CLUSTER_ID, self.plan.client_id.clone(), self.rng.next_u64());
        cfg.ping_interval_secs = -(TIMING.ping_interval.as_millis() as i32);
        cfg.ping_max_out = TIMING.ping_max_out;
        cfg.connect_wait = TIMING.connect_wait;
        cfg.pub_ack_wait = TIMING.pub_ack_wait;
        let client = Client::new(cfg, now());
        self.session = Some(Session {
            inc,
            client,
            reader,
            writer,
            subs: BTreeMap::new(),
            handles: BTreeMap::new(),
            pubs: BTreeMap::new(),
        });
        Ok(())
    }

    fn schedule_reconnect(&mut self) {
        if let Some(d) = self.plan.reconnect {
            if sim_now() + d < self.workload_end {
                self.wakes.insert((sim_now() + d, Wake::Reconnect));
            }
        }
    }

    /// Subscribes wanted entry `n` on the current connection if it is up.
    fn subscribe(&mut self, n: usize) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.client.is_connected() || self.wanted[n].current.is_some() {
            return;
        }
        let spec = self.wanted[n].spec.clone();
        let (durable_name, queue_group) = match &spec.kind {
            SubKind::Plain => (None, None),
            SubKind::Durable(d) => (Some(d.clone()), None),
            SubKind::Queue(g) => (None, Some(g.clone())),
            SubKind::DurableQueue { durable, group } => {
                (Some(durable.clone()), Some(group.clone()))
            }
        };
        let opts = SubscribeOptions {
            queue_group,
            durable_name,
            max_in_flight: spec.max_in_flight,
            ack_wait_secs: spec.ack_wait_secs,
            start: spec.start,
            manual_ack: spec.ack != AckPolicy::Auto,
        };
        let Ok(handle) = s.client.subscribe(now(), &spec.channel, opts) else {
            return;
        };
        let sub = self.next_sub;
        self.next_sub += 1;
        s.subs.insert(sub, n);
        s.handles.insert(handle, sub);
        let inc = s.inc;
        self.wanted[n].current = Some((sub, handle));
        self.record(Ev::SubRequested {
            inc,
            sub,
            channel: spec.channel,
            kind: spec.kind,
            start: spec.start,
            max_in_flight: spec.max_in_flight,
            manual: spec.ack != AckPolicy::Auto,
        });
    }

    /// Asks the server to end wanted subscription `n`'s current attempt. One whose
    /// subscribe is still unanswered cannot be ended yet, and left alone it would live on
    /// unwanted, so the request is tried again shortly.
    fn end_sub(&mut self, n: usize, unsubscribe: bool) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some((sub, handle)) = self.wanted[n].current else {
            return;
        };
        let r = if unsubscribe {
            s.client.unsubscribe(now(), handle)
        } else {
            s.client.close_subscription(now(), handle)
        };
        let inc = s.inc;
        match r {
            Ok(()) => {
                self.wanted[n].current = None;
                self.record(Ev::SubEnding {
                    inc,
                    sub,
                    unsubscribe,
                });
            }
            Err(_) => {
                self.wakes.insert((
                    sim_now() + Duration::from_millis(100),
                    Wake::EndSub(n, unsubscribe),
                ));
            }
        }
    }

    fn ack(&mut self, n: usize, sub: u32, seq: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        // The subscription may have ended or been replaced since the delivery.
        if self.wanted[n].current.map(|c| c.0) != Some(sub) {
            return;
        }
        let handle = self.wanted[n].current.expect("checked above").1;
        if s.client.ack(handle, seq).is_ok() {
            let inc = s.inc;
            self.record(Ev::Ack { inc, sub, seq });
        }
    }

    /// Moves bytes to the writer and handles events until the client has nothing more.
    fn pump(&mut self) {
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            while let Some(bytes) = s.client.poll_transmit() {
                let _ = s.writer.send(bytes);
            }
            let Some(event) = s.client.poll_event() else {
                if s.client.is_ended() {
                    self.forget_session();
                }
                return;
            };
            self.on_event(event);
        }
    }

    /// Drops the connection (the writer finishes what is queued, then the socket
    /// closes) and everything tied to it.
    fn forget_session(&mut self) {
        self.session = None;
        for w in &mut self.wanted {
            w.current = None;
        }
        self.wakes.retain(|(_, w)| matches!(w, Wake::Reconnect));
    }

    fn on_event(&mut self, event: Event) {
        let s = self.session.as_mut().expect("events come from a session");
        let inc = s.inc;
        match event {
            Event::Connected => {
                self.record(Ev::Connected { inc });
                for n in 0..self.wanted.len() {
                    if self.wanted[n].wanted {
                        self.subscribe(n);
                    }
                }
            }
            Event::ConnectFailed(error) => {
                self.record(Ev::ConnectFailed { inc, error });
                self.schedule_reconnect();
            }
            Event::ConnectionLost(error) => {
                self.record(Ev::Lost { inc, error });
                self.schedule_reconnect();
            }
            Event::Closed { error } => self.record(Ev::Closed { inc, error }),
            Event::PubAck { guid, error } => {
                if let Some(payload) = s.pubs.remove(&guid) {
                    self.record(Ev::PubAck {
                        inc,
                        payload,
                        error,
                    });
                }
            }
            Event::Subscribed { sub } => {
                if let Some(&id) = s.handles.get(&sub) {
                    self.record(Ev::Subscribed { inc, sub: id });
                }
            }
            Event::SubscribeFailed { sub, error } => {
                let Some(id) = s.handles.remove(&sub) else {
                    return;
                };
                let n = s.subs.remove(&id).expect("indexed together");
                self.record(Ev::SubFailed {
                    inc,
                    sub: id,
                    error,
                });
                if self.wanted[n].current.map(|c| c.0) == Some(id) {
                    self.wanted[n].current = None;
                    if self.wanted[n].wanted && sim_now() + RETRY < self.workload_end {
                        self.wakes.insert((sim_now() + RETRY, Wake::Resubscribe(n)));
                    }
                }
            }
            Event::Unsubscribed { sub, error } => {
                let Some(id) = s.handles.remove(&sub) else {
                    return;
                };
                s.subs.remove(&id);
                self.record(Ev::SubEnded {
                    inc,
                    sub: id,
                    error,
                });
            }
            Event::Msg { sub, msg } => {
                let Some(&id) = s.handles.get(&sub) else {
                    return;
                };
                let n = s.subs[&id];
                let payload = String::from_utf8_lossy(&msg.data).into_owned();
                self.record(Ev::Msg {
                    inc,
                    sub: id,
                    seq: msg.sequence,
                    redelivered: msg.redelivered,
                    count: msg.redelivery_count,
                    payload,
                    timestamp: msg.timestamp,
                });
                self.after_delivery(n, id, msg.sequence);
            }
        }
    }

    fn after_delivery(&mut self, n: usize, sub: u32, seq: u64) {
        let AckPolicy::Manual {
            skip_percent,
            max_skips,
            delay,
        } = self.wanted[n].spec.ack
        else {
            return;
        };
        let skipped = self.wanted[n].skips.get(&seq).copied().unwrap_or(0);
        if skipped < max_skips && (self.rng.below(100) as u8) < skip_percent {
            self.wanted[n].skips.insert(seq, skipped + 1);
            let inc = self.session.as_ref().expect("delivery on a session").inc;
            self.record(Ev::AckSkipped { inc, sub, seq });
            return;
        }
        if delay.is_zero() {
            self.ack(n, sub, seq);
        } else {
            self.wakes
                .insert((sim_now() + delay, Wake::Ack(n, sub, seq)));
        }
    }
}

//! Random sequences of client operations and time jumps against the streaming core,
//! with the protocol's invariants checked after every step.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::stan::{stan_config, sub_req, ClientSub, StanWorld};
use proptest::prelude::*;
use stan_core::streaming::pb::{StartPosition, SubscriptionRequest};
use stan_core::streaming::Config;

const IDS: [&str; 3] = ["a", "b", "c"];
const CHANNELS: [&str; 2] = ["x", "y"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        client: usize,
        channel: usize,
    },
    Subscribe {
        client: usize,
        channel: usize,
        kind: u8,
        start: u8,
        mif: usize,
        ack_wait: i32,
    },
    AckAll {
        client: usize,
    },
    Advance {
        ms: u64,
    },
    Freeze {
        client: usize,
    },
    CloseSub {
        client: usize,
        unsubscribe: bool,
    },
    CloseClient {
        client: usize,
    },
    Reconnect {
        client: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..2usize).prop_map(|(client, channel)| Op::Publish { client, channel }),
        2 => (0..3usize, 0..2usize, 0..4u8, 0..5u8, 1..5usize, 1..3i32)
            .prop_map(|(client, channel, kind, start, mif, ack_wait)| Op::Subscribe { client, channel, kind, start, mif, ack_wait }),
        3 => (0..3usize).prop_map(|client| Op::AckAll { client }),
        3 => (0..2500u64).prop_map(|ms| Op::Advance { ms }),
        1 => (0..3usize).prop_map(|client| Op::Freeze { client }),
        1 => (0..3usize, any::<bool>()).prop_map(|(client, unsubscribe)| Op::CloseSub { client, unsubscribe }),
        1 => (0..3usize).prop_map(|client| Op::CloseClient { client }),
        1 => (0..3usize).prop_map(|client| Op::Reconnect { client }),
    ]
}

/// What the checker knows about one subscription, as its client sees it.
struct Tracked {
    client: usize,
    sub: ClientSub,
    plain: bool,
    mif: usize,
    /// Sequences received and not yet acked by the client.
    unacked: BTreeSet<u64>,
    /// Every sequence received on this inbox.
    seen: BTreeSet<u64>,
    last_first_delivery: u64,
    /// Channel's last sequence when the subscription started (NewOnly start).
    start_after: u64,
    alive: bool,
}

struct Checker {
    w: StanWorld,
    conn_of: BTreeMap<usize, usize>,
    frozen_at: BTreeMap<usize, Duration>,
    subs: Vec<Tracked>,
    /// PubAck-ed sequences per channel.
    acked: BTreeMap<&'static str, u64>,
    cfg: Config,
    closed_by_us: BTreeSet<usize>,
}

impl Checker {
    fn new() -> Self {
        let cfg = Config {
            hb_interval: Duration::from_secs(1),
            hb_timeout: Duration::from_millis(500),
            hb_fail_count: 2,
            ..stan_config()
        };
        let mut w = StanWorld::new(cfg.clone());
        w.quiet = true;
        Checker {
            w,
            conn_of: BTreeMap::new(),
            frozen_at: BTreeMap::new(),
            subs: Vec::new(),
            acked: BTreeMap::new(),
            cfg,
            closed_by_us: BTreeSet::new(),
        }
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.w.now.mono.as_nanos())
    }

    fn registered(&self, id: &str) -> bool {
        self.w
            .node
            .streaming()
            .unwrap()
            .client_ids()
            .any(|c| c == id)
    }

    fn connected(&mut self, client: usize) -> Option<usize> {
        let c = *self.conn_of.get(&client)?;
        self.registered(IDS[client]).then_some(c)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Publish { client, channel } => {
                let Some(c) = self.connected(client) else {
                    return;
                };
                let ch = CHANNELS[channel];
                self.w.publish_msg(c, ch, "m");
                for (_, err) in self.w.pub_acks(c) {
                    assert_eq!(err, "", "publish from a registered client is accepted");
                    *self.acked.entry(ch).or_insert(0) += 1;
                }
            }
            Op::Subscribe {
                client,
                channel,
                kind,
                start,
                mif,
                ack_wait,
            } => {
                let Some(c) = self.connected(client) else {
                    return;
                };
                let ch = CHANNELS[channel];
                let start = if kind == 0 { 0 } else { start };
                let req = SubscriptionRequest {
                    max_in_flight: mif as i32,
                    ack_wait_in_secs: ack_wait,
                    start_position: StartPosition::try_from(start as i32).unwrap() as i32,
                    start_sequence: 1,
                    durable_name: if kind == 1 || kind == 3 {
                        "d".into()
                    } else {
                        String::new()
                    },
                    q_group: if kind >= 2 { "q".into() } else { String::new() },
                    ..sub_req(ch)
                };
                let start_after = self.acked.get(ch).copied().unwrap_or(0);
                let sub = self.w.subscribe(c, req);
                if sub.error.is_empty() {
                    self.subs.push(Tracked {
                        client,
                        sub,
                        plain: kind == 0,
                        mif,
                        unacked: BTreeSet::new(),
                        seen: BTreeSet::new(),
                        last_first_delivery: 0,
                        start_after,
                        alive: true,
                    });
                }
            }
            Op::AckAll { client } => {
                let Some(c) = self.conn_of.get(&client).copied() else {
                    return;
                };
                for i in 0..self.subs.len() {
                    if self.subs[i].client != client || !self.subs[i].alive {
                        continue;
                    }
                    let seqs: Vec<u64> = self.subs[i].unacked.iter().copied().collect();
                    let sub = self.subs[i].sub.clone();
                    for s in seqs {
                        self.w.ack(c, &sub, s);
                    }
                    self.subs[i].unacked.clear();
                }
            }
            Op::Advance { ms } => self.w.advance(Duration::from_millis(ms)),
            Op::Freeze { client } => {
                if let Some(&c) = self.conn_of.get(&client) {
                    if self.w.clients[c].answer_heartbeats && self.registered(IDS[client]) {
                        self.w.clients[c].answer_heartbeats = false;
                        self.frozen_at.insert(client, self.now());
                    }
                }
            }
            Op::CloseSub {
                client,
                unsubscribe,
            } => {
                let Some(c) = self.connected(client) else {
                    return;
                };
                if let Some(i) = self
                    .subs
                    .iter()
                    .rposition(|t| t.client == client && t.alive)
                {
                    let sub = self.subs[i].sub.clone();
                    assert_eq!(self.w.unsubscribe(c, &sub, !unsubscribe), "");
                    self.subs[i].alive = false;
                }
            }
            Op::CloseClient { client } => {
                let Some(c) = self.connected(client) else {
                    return;
                };
                if self.frozen_at.contains_key(&client) {
                    return;
                }
                assert_eq!(self.w.close(c), "");
                self.closed_by_us.insert(client);
                self.retire(client);
            }
            Op::Reconnect { client } => {
                if self.registered(IDS[client]) && !self.frozen_at.contains_key(&client) {
                    return;
                }
                let c = self.w.connect(IDS[client]);
                // A frozen holder is replaced once the probe times out.
                self.w.advance(Duration::from_millis(600));
                assert!(
                    self.w.connect_done(c),
                    "a connect is answered within the probe timeout"
                );
                let err = self.w.clients[c].resp.error.clone();
                if err.is_empty() {
                    self.retire(client);
                    self.frozen_at.remove(&client);
                    self.conn_of.insert(client, c);
                } else {
                    assert_eq!(err, "stan: clientID already registered");
                }
            }
        }
        self.collect();
        self.check();
    }

    fn retire(&mut self, client: usize) {
        for t in self.subs.iter_mut().filter(|t| t.client == client) {
            t.alive = false;
        }
    }

    /// Reads deliveries and checks order, redelivered flags and MaxInFlight.
    fn collect(&mut self) {
        for i in 0..self.subs.len() {
            if !self.subs[i].alive {
                continue;
            }
            let Some(&c) = self.conn_of.get(&self.subs[i].client) else {
                continue;
            };
            let sub = self.subs[i].sub.clone();
            let msgs = self.w.msgs(c, &sub);
            let t = &mut self.subs[i];
            for m in msgs {
                if t.plain {
                    if m.redelivered {
                        assert!(
                            t.seen.contains(&m.sequence),
                            "redelivered flag on a first delivery of {}",
                            m.sequence
                        );
                    } else {
                        assert!(
                            !t.seen.contains(&m.sequence),
                            "sequence {} delivered twice without the redelivered flag",
                            m.sequence
                        );
                        assert!(
                            m.sequence > t.last_first_delivery,
                            "first deliveries out of order"
                        );
                        t.last_first_delivery = m.sequence;
                    }
                }
                t.seen.insert(m.sequence);
                t.unacked.insert(m.sequence);
                if t.plain {
                    assert!(
                        t.unacked.len() <= t.mif,
                        "more than MaxInFlight ({}) unacknowledged: {:?}",
                        t.mif,
                        t.unacked
                    );
                }
            }
        }
    }

    fn check(&mut self) {
        let now = self.now();
        let per_try = self.cfg.hb_interval + self.cfg.hb_timeout;
        let bound = per_try * (self.cfg.hb_fail_count + 1) + self.cfg.hb_interval;
        for (&client, &at) in &self.frozen_at {
            let alive = self.registered(IDS[client]);
            if alive {
                assert!(
                    now <= at + bound,
                    "silent client {} still registered {:?} after it froze (bound {:?})",
                    IDS[client],
                    now - at,
                    bound
                );
            } else {
                // Never closed before it could even have missed a heartbeat.
                assert!(
                    now - at >= self.cfg.hb_timeout,
                    "silent client {} closed {:?} after it froze",
                    IDS[client],
                    now - at
                );
            }
        }
        for (client, &c) in &self.conn_of {
            let answers = self.w.clients[c].answer_heartbeats;
            if answers
                && !self.closed_by_us.contains(client)
                && !self.frozen_at.contains_key(client)
            {
                assert!(
                    self.registered(IDS[*client]),
                    "client {} answers heartbeats but was closed",
                    IDS[*client]
                );
            }
        }
    }

    /// After quiet time with everything acked, every PubAck-ed message reached every
    /// plain subscription that was alive throughout.
    fn finish(&mut self) {
        // Ack until nothing new arrives: a small MaxInFlight releases one message per ack.
        for _ in 0..1000 {
            let seen_before: usize = self.subs.iter().map(|t| t.seen.len()).sum();
            for client in 0..IDS.len() {
                self.apply(&Op::AckAll { client });
            }
            self.apply(&Op::Advance { ms: 2000 });
            let seen_after: usize = self.subs.iter().map(|t| t.seen.len()).sum();
            if seen_after == seen_before {
                break;
            }
        }
        for t in &self.subs {
            if !t.plain || !t.alive || !self.registered(IDS[t.client]) {
                continue;
            }
            let last = self.acked.get(t.sub.channel.as_str()).copied().unwrap_or(0);
            for seq in t.start_after + 1..=last {
                assert!(
                    t.seen.contains(&seq),
                    "PubAck-ed message {seq} of {} never reached a live subscription",
                    t.sub.channel
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..60)) {
        let mut k = Checker::new();
        for (client, id) in IDS.iter().enumerate() {
            let c = k.w.connect(id);
            k.conn_of.insert(client, c);
        }
        for op in &ops {
            k.apply(op);
        }
        k.finish();
    }
}

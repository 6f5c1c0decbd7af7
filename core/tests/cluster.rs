//! Clustered mode on virtual time (BEHAVIOUR §13): member `a` is the node under test,
//! member `b` is played by the test over a plain NATS connection, answering (or not)
//! the Raft messages `a` sends it. Nothing `a` sends a client leaves before `b` has
//! stored the writes it depends on.

mod common;

use std::time::Duration;

use common::stan::{sub_req, Carries, StanWorld};
use stan_core::nats::ConnId;
use stan_core::raft::{Entry, Message};
use stan_core::store::MemStore;
use stan_core::streaming::cluster::{raft_subject, ClusterConfig};
use stan_core::streaming::{self};

const TO_A: &str = "_STAN.raft.test-cluster.peer.a";

struct Two {
    w: StanWorld,
    b: ConnId,
    /// `b`'s copy of the log.
    log: Vec<Entry>,
    term: u64,
}

impl Two {
    fn new() -> Two {
        let cfg = streaming::Config {
            rng_seed: 7,
            cluster: Some(ClusterConfig {
                node_id: "a".into(),
                peers: vec!["b".into()],
                ..ClusterConfig::default()
            }),
            ..common::stan::stan_config()
        };
        let mut w = StanWorld::unstarted(cfg, Box::new(MemStore::new()));
        let b = w.nats_peer(&[&raft_subject("test-cluster", "b")], Carries::Raw);
        w.node.start(w.now).expect("starts");
        w.drain();
        Two {
            w,
            b,
            log: Vec::new(),
            term: 0,
        }
    }

    fn send(&mut self, msg: Message) {
        let payload = msg.encode("b");
        let b = self.b;
        self.w.raw_publish(b, TO_A, None, &payload, "raft");
    }

    /// What `a` sent `b`, decoded.
    fn received(&mut self) -> Vec<Message> {
        let b = self.b;
        self.w
            .take_raw(b)
            .into_iter()
            .map(|m| {
                let (from, msg) = Message::decode(&m.payload).expect("decodes");
                assert_eq!(from, "a");
                msg
            })
            .collect()
    }

    /// Answers what `a` sent: votes granted, appends stored. Returns how many
    /// appends carried entries.
    fn answer(&mut self) -> usize {
        let mut stored = 0;
        for msg in self.received() {
            match msg {
                Message::RequestVote { term, .. } => {
                    self.term = term;
                    self.send(Message::Vote {
                        term,
                        granted: true,
                    });
                }
                Message::Append {
                    term,
                    prev_index,
                    entries,
                    ..
                } => {
                    self.term = term;
                    self.log.truncate(prev_index as usize);
                    stored += usize::from(!entries.is_empty());
                    self.log.extend(entries);
                    let last_index = self.log.len() as u64;
                    self.send(Message::AppendResult {
                        term,
                        success: true,
                        last_index,
                    });
                }
                _ => {}
            }
        }
        stored
    }

    /// Lets time pass in small steps, answering `a` throughout.
    fn run(&mut self, d: Duration) {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() {
            let s = step.min(left);
            self.w.advance(s);
            self.answer();
            left -= s;
        }
    }
}

#[test]
fn the_leader_answers_clients_only_once_the_other_member_stored_the_writes() {
    let mut t = Two::new();
    assert_eq!(t.w.node.streaming().unwrap().state(), "CLUSTERED");
    // Elected with b's vote; ready once its first entry is stored by b.
    t.run(Duration::from_secs(6));
    assert!(
        t.w.transcript.contains("Streaming Server is ready"),
        "{}",
        t.w.transcript
    );
    let s = t.w.node.streaming().unwrap();
    assert_eq!(s.raft_role().unwrap().to_string(), "Leader");
    assert_eq!(s.node_id(), Some("a"));
    assert_eq!(s.store_kind(), "RAFT_FILE");

    let c = t.w.connect("pub");
    assert!(!t.w.connect_done(c), "connected before b stored the client");
    assert_eq!(t.answer(), 1);
    assert!(t.w.connect_done(c));

    t.w.publish_msg(c, "foo", "hello");
    assert!(
        t.w.pub_acks(c).is_empty(),
        "PubAck before b stored the message"
    );
    // b stays silent a while: still no PubAck.
    t.w.advance(Duration::from_millis(300));
    let silent = t.received();
    assert!(
        silent.iter().all(|m| matches!(m, Message::Append { .. })),
        "{silent:?}"
    );
    assert!(t.w.pub_acks(c).is_empty());
    // Answering the latest append (it carries the whole unacknowledged tail).
    let last = silent
        .into_iter()
        .rev()
        .find_map(|m| match m {
            Message::Append {
                term,
                prev_index,
                entries,
                ..
            } if !entries.is_empty() => Some((term, prev_index, entries)),
            _ => None,
        })
        .expect("the message's entry was sent");
    t.log.truncate(last.1 as usize);
    t.log.extend(last.2);
    let last_index = t.log.len() as u64;
    t.send(Message::AppendResult {
        term: last.0,
        success: true,
        last_index,
    });
    let acks = t.w.pub_acks(c);
    assert_eq!(acks.len(), 1, "{}", t.w.transcript);
    assert_eq!(acks[0].1, "");
    assert!(
        t.log
            .iter()
            .any(|e| !e.data.is_empty() && e.data.windows(5).any(|w| w == b"hello")),
        "b holds the message"
    );

    // A subscription sees the message, its delivery held like the rest.
    let sub = t.w.subscribe(c, {
        let mut r = sub_req("foo");
        r.start_position = stan_core::streaming::pb::StartPosition::First as i32;
        r
    });
    t.run(Duration::from_millis(200));
    let msgs = t.w.msgs(c, &sub);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].data, b"hello");
}

#[test]
fn a_member_that_loses_the_other_stops_serving_and_follows() {
    let mut t = Two::new();
    t.run(Duration::from_secs(6));
    assert!(t.w.transcript.contains("Streaming Server is ready"));
    let c = t.w.connect("pub");
    t.answer();
    assert!(t.w.connect_done(c));
    // b goes quiet: the lease runs out and a steps down.
    t.w.advance(Duration::from_secs(3));
    let s = t.w.node.streaming().unwrap();
    assert_ne!(s.raft_role().unwrap().to_string(), "Leader");
    assert!(
        s.client_ids().next().is_none(),
        "a deposed leader forgets its clients"
    );
    // Nobody takes requests now: the publisher hears that no one responds.
    let before = t.w.transcript.len();
    t.w.publish_msg(c, "foo", "lost");
    t.w.advance(Duration::from_millis(100));
    let after = &t.w.transcript[before..];
    assert!(after.contains("status NATS/1.0 503"), "{after}");

    // b, now leader of a higher term, sends a its log: a applies it.
    let term = 100;
    t.received();
    t.send(Message::Append {
        term,
        prev_index: t.log.len() as u64,
        prev_term: t.log.last().map_or(0, |e| e.term),
        entries: vec![Entry {
            term,
            index: t.log.len() as u64 + 1,
            data: Vec::new(),
        }],
        commit: t.log.len() as u64 + 1,
    });
    let answers = t.received();
    assert!(
        answers
            .iter()
            .any(|m| matches!(m, Message::AppendResult { success: true, .. })),
        "{answers:?}"
    );
    let s = t.w.node.streaming().unwrap();
    assert_eq!(s.raft_role().unwrap().to_string(), "Follower");
    assert!(s.failure().is_none(), "{:?}", s.failure());
}

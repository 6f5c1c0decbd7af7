//! Partitioning's wait for late clients under random interleavings of publishes,
//! connects and time jumps (BEHAVIOUR §12): every publish is answered exactly once, in
//! the order sent, accepted when its client registered in time and refused otherwise.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::stan::{stan_config, StanWorld};
use proptest::prelude::*;
use prost::Message;
use stan_core::store::MemStore;
use stan_core::streaming::limits::ChannelLimits;
use stan_core::streaming::pb::PubMsg;

const IDS: [&str; 3] = ["a", "b", "c"];
const INVALID: &str = "stan: invalid publish request";

#[derive(Debug, Clone)]
enum Op {
    Publish(usize),
    Connect(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..IDS.len()).prop_map(Op::Publish),
        1 => (0..IDS.len()).prop_map(Op::Connect),
        3 => (0u64..1500).prop_map(Op::Advance),
    ]
}

/// A started partitioning server and a connected client whose connection carries
/// the publishes of the others, as a peer server's clients' would reach it early.
fn world() -> (StanWorld, usize) {
    let mut cfg = stan_config();
    cfg.partitioning = true;
    cfg.limits
        .per_channel
        .insert("orders.>".into(), ChannelLimits::default());
    let mut w = StanWorld::unstarted(cfg, Box::new(MemStore::new()));
    w.quiet = true;
    w.node.start(w.now).expect("starts");
    w.drain();
    w.advance(Duration::from_secs(1));
    let carrier = w.connect("carrier");
    (w, carrier)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn publishes_are_answered_once_in_order(ops in proptest::collection::vec(op(), 1..50)) {
        let (mut w, carrier) = world();
        let acks = w.clients[carrier].acks.clone();
        let conn = w.clients[carrier].conn;
        let mut connected = BTreeSet::new();
        // guid, client, whether the client was registered when it was sent.
        let mut sent: Vec<(String, usize, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Publish(c) => {
                    let guid = format!("p{}", sent.len());
                    let m = PubMsg {
                        client_id: IDS[c].into(),
                        guid: guid.clone(),
                        subject: "orders.eu".into(),
                        data: b"x".to_vec(),
                        ..PubMsg::default()
                    };
                    w.raw_publish(
                        conn,
                        "_STAN.pub.test-cluster.orders.eu",
                        Some(&acks),
                        &m.encode_to_vec(),
                        "",
                    );
                    sent.push((guid, c, connected.contains(&c)));
                }
                Op::Connect(c) => {
                    if connected.insert(c) {
                        w.connect(IDS[c]);
                    }
                }
                Op::Advance(ms) => w.advance(Duration::from_millis(ms)),
            }
        }
        // Long enough for every parked publish to have its second.
        w.advance(Duration::from_secs(sent.len() as u64 + 2));
        let got = w.pub_acks(carrier);
        let order: Vec<&str> = got.iter().map(|(g, _)| g.as_str()).collect();
        let want: Vec<&str> = sent.iter().map(|(g, ..)| g.as_str()).collect();
        prop_assert_eq!(order, want, "one PubAck per publish, in the order sent");
        for ((guid, c, was_connected), (_, error)) in sent.iter().zip(&got) {
            if *was_connected {
                prop_assert_eq!(error.as_str(), "", "{} from a registered client", guid);
            }
            if !connected.contains(c) {
                prop_assert_eq!(error.as_str(), INVALID, "{} from a client never registered", guid);
            }
        }
    }
}

//! Restart semantics over a store that hands back state (BEHAVIOUR §5.4, PROTOCOL §3.6.3).

mod common;

use std::time::Duration;

use common::stan::{stan_config, ClientSub, StanWorld};
use common::START_WALL_NS;
use stan_core::store::{MemStore, Recovered, RecoveredChannel, RecoveredSub, Result, Store};
use stan_core::streaming::pb::*;

/// A memory store that reports prepared state as if recovered from disk.
struct Recovering {
    inner: MemStore,
    recovered: Option<Recovered>,
    /// IDs of the subscriptions created since the start.
    created: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Store for Recovering {
    fn kind(&self) -> &'static str {
        "FILE"
    }
    fn recover(&mut self) -> Result<Recovered> {
        Ok(self.recovered.take().unwrap_or_default())
    }
    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()> {
        self.inner.init_server_info(info)
    }
    fn add_client(&mut self, info: &ClientInfo) -> Result<()> {
        self.inner.add_client(info)
    }
    fn delete_client(&mut self, id: &str) -> Result<()> {
        self.inner.delete_client(id)
    }
    fn create_channel(&mut self, name: &str) -> Result<()> {
        self.inner.create_channel(name)
    }
    fn delete_channel(&mut self, name: &str) -> Result<()> {
        self.inner.delete_channel(name)
    }
    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64> {
        self.inner.store_msg(channel, msg)
    }
    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>> {
        self.inner.lookup(channel, seq)
    }
    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>> {
        self.inner.timestamp(channel, seq)
    }
    fn msgs_state(&self, channel: &str) -> stan_core::store::MsgsState {
        self.inner.msgs_state(channel)
    }
    fn remove_oldest(&mut self, channel: &str) -> Result<()> {
        self.inner.remove_oldest(channel)
    }
    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.created.lock().unwrap().push(state.id);
        self.inner.create_sub(channel, state)
    }
    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.inner.update_sub(channel, state)
    }
    fn delete_sub(&mut self, channel: &str, id: u64) -> Result<()> {
        self.inner.delete_sub(channel, id)
    }
    fn add_pending(&mut self, channel: &str, id: u64, seq: u64) -> Result<()> {
        self.inner.add_pending(channel, id, seq)
    }
    fn ack_pending(&mut self, channel: &str, id: u64, seq: u64) -> Result<()> {
        self.inner.ack_pending(channel, id, seq)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

fn sub_state(id: u64, client: &str, inbox: &str, ack: &str) -> SubState {
    SubState {
        id,
        client_id: client.into(),
        inbox: inbox.into(),
        ack_inbox: ack.into(),
        max_in_flight: 10,
        ack_wait_in_secs: 30,
        ..Default::default()
    }
}

#[test]
fn recovered_subscriptions_redeliver_pending_then_resume() {
    let mut inner = MemStore::new();
    inner.create_channel("foo").unwrap();
    for seq in 1..=3u64 {
        let m = MsgProto {
            sequence: seq,
            subject: "foo".into(),
            data: format!("m{seq}").into_bytes(),
            timestamp: START_WALL_NS - 60_000_000_000,
            ..Default::default()
        };
        inner.store_msg("foo", &m).unwrap();
    }
    let me = ClientInfo {
        id: "me".into(),
        hb_inbox: "_INBOX.hb.old".into(),
        conn_id: b"old-conn".to_vec(),
        protocol: 1,
        ..Default::default()
    };
    let plain = sub_state(1, "me", "_INBOX.live", "_INBOX.ack.live");
    let offline = SubState {
        is_durable: true,
        durable_name: "d".into(),
        is_closed: true,
        last_sent: 1,
        ..sub_state(2, "me", "_INBOX.old", "_INBOX.ack.old")
    };
    let ghost = sub_state(3, "gone", "_INBOX.ghost", "_INBOX.ack.ghost");
    for st in [&plain, &offline, &ghost] {
        inner.create_sub("foo", st).unwrap();
    }
    let recovered = Recovered {
        server_info: Some(ServerInfo {
            cluster_id: "test-cluster".into(),
            discovery: "_STAN.discover.test-cluster".into(),
            publish: "_STAN.pub.OLDNUID".into(),
            subscribe: "_STAN.sub.OLDNUID".into(),
            unsubscribe: "_STAN.unsub.OLDNUID".into(),
            close: "_STAN.close.OLDNUID".into(),
            sub_close: String::new(),
            acks_subs: "_STAN.ack.OLDNUID".into(),
            node_id: String::new(),
        }),
        clients: vec![me],
        channels: vec![RecoveredChannel {
            name: "foo".into(),
            msgs: inner.msgs_state("foo"),
            max_sub_id: 9,
            subs: vec![
                RecoveredSub {
                    state: SubState {
                        last_sent: 2,
                        ..plain
                    },
                    pending: vec![2],
                },
                RecoveredSub {
                    state: offline,
                    pending: vec![],
                },
                RecoveredSub {
                    state: ghost,
                    pending: vec![],
                },
            ],
        }],
    };
    let mut w = StanWorld::with_store(
        stan_config(),
        Box::new(Recovering {
            inner,
            recovered: Some(recovered),
            created: Default::default(),
        }),
    );
    let info = w.node.streaming().unwrap().server_info().clone();
    assert_eq!(
        info.publish, "_STAN.pub.OLDNUID",
        "recovered subjects are reused, not rebuilt"
    );
    assert_eq!(
        info.sub_close, "_STAN.subclose.test-cluster",
        "an empty SubClose is repaired"
    );
    assert_eq!(
        w.node.streaming().unwrap().client_ids().collect::<Vec<_>>(),
        vec!["me"]
    );
    w.note("the client kept its NATS connection: it is still subscribed to its inbox");
    let c = w.adopt("me", b"old-conn", "_INBOX.hb.old", &["_INBOX.live"]);
    let live = ClientSub {
        inbox: "_INBOX.live".into(),
        ack_inbox: "_INBOX.ack.live".into(),
        channel: "foo".into(),
        error: String::new(),
    };
    w.advance(Duration::from_secs(31));
    let got: Vec<(u64, bool)> = w
        .msgs(c, &live)
        .iter()
        .map(|m| (m.sequence, m.redelivered))
        .collect();
    assert_eq!(
        got,
        vec![(2, true), (3, true)],
        "pending 2 and 3 (sent at startup, unseen) come back after their ack wait"
    );
    w.ack(c, &live, 2);
    w.ack(c, &live, 3);
    let g = w.publish_msg(c, "foo", "m4");
    assert_eq!(w.pub_acks(c), vec![(g, String::new())]);
    assert_eq!(
        w.msgs(c, &live)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![4]
    );
    w.note("the offline durable resumes from its recovered cursor");
    let d = w.subscribe(
        c,
        SubscriptionRequest {
            durable_name: "d".into(),
            ..common::stan::sub_req("foo")
        },
    );
    assert_eq!(d.error, "");
    assert_eq!(
        w.msgs(c, &d).iter().map(|m| m.sequence).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
}

/// A subscription deleted before the restart left only its ID behind: new
/// subscriptions must not take it again.
#[test]
fn new_subscriptions_never_reuse_a_stored_id() {
    let mut inner = MemStore::new();
    inner.create_channel("foo").unwrap();
    let recovered = Recovered {
        server_info: None,
        clients: vec![],
        channels: vec![RecoveredChannel {
            name: "foo".into(),
            msgs: inner.msgs_state("foo"),
            subs: vec![],
            max_sub_id: 9,
        }],
    };
    let created = std::sync::Arc::default();
    let mut w = StanWorld::with_store(
        stan_config(),
        Box::new(Recovering {
            inner,
            recovered: Some(recovered),
            created: std::sync::Arc::clone(&created),
        }),
    );
    let c = w.connect("me");
    let s = w.subscribe(c, common::stan::sub_req("foo"));
    assert_eq!(s.error, "");
    assert_eq!(*created.lock().unwrap(), vec![10]);
}

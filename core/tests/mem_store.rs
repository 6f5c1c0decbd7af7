//! The MEMORY store through the `Store` port, as the streaming server uses it.

use std::collections::VecDeque;

use proptest::prelude::*;
use prost::Message;
use stan_core::store::{MemStore, MsgsState, Recovered, RecoveredSub, Store};
use stan_core::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};

fn msg(channel: &str, seq: u64, reply: &str, data: &[u8], timestamp: i64) -> MsgProto {
    MsgProto {
        sequence: seq,
        subject: channel.into(),
        reply: reply.into(),
        data: data.to_vec(),
        timestamp,
        ..MsgProto::default()
    }
}

fn store_with(channel: &str) -> MemStore {
    let mut store = MemStore::new();
    store.create_channel(channel).unwrap();
    store
}

fn sub(id: u64, client: &str) -> SubState {
    SubState {
        id,
        client_id: client.into(),
        inbox: format!("_INBOX.{id}"),
        ack_inbox: format!("_STAN.ack.{id}"),
        max_in_flight: 1024,
        ack_wait_in_secs: 30,
        ..SubState::default()
    }
}

#[test]
fn kind_and_empty_recovery() {
    let mut store = MemStore::default();
    assert_eq!(store.kind(), "MEMORY");
    store.init_server_info(&ServerInfo::default()).unwrap();
    store.create_channel("foo").unwrap();
    assert_eq!(store.recover().unwrap(), Recovered::default());
    store.flush().unwrap();
}

#[test]
fn lookup_returns_what_was_stored() {
    let mut store = store_with("foo.bar");
    let first = msg("foo.bar", 1, "", b"hello", 1_700_000_000_123_456_789);
    let second = msg("foo.bar", 2, "_INBOX.reply", &[0, 255, 1], -5);
    let third = msg("foo.bar", 3, "", b"", 0);
    for m in [&first, &second, &third] {
        assert_eq!(
            store.store_msg("foo.bar", m).unwrap(),
            m.encoded_len() as u64
        );
    }
    assert_eq!(store.lookup("foo.bar", 1).unwrap(), Some(first.clone()));
    assert_eq!(store.lookup("foo.bar", 2).unwrap(), Some(second.clone()));
    assert_eq!(store.lookup("foo.bar", 3).unwrap(), Some(third.clone()));
    assert_eq!(store.lookup("foo.bar", 0).unwrap(), None);
    assert_eq!(store.lookup("foo.bar", 4).unwrap(), None);
    assert_eq!(
        store.timestamp("foo.bar", 1).unwrap(),
        Some(1_700_000_000_123_456_789)
    );
    assert_eq!(store.timestamp("foo.bar", 2).unwrap(), Some(-5));
    assert_eq!(store.timestamp("foo.bar", 4).unwrap(), None);
}

#[test]
fn redelivery_fields_are_not_stored() {
    let mut store = store_with("foo");
    let mut m = msg("foo", 1, "", b"x", 7);
    let plain = m.clone();
    m.redelivered = true;
    m.redelivery_count = 3;
    m.crc32 = 99;
    assert_eq!(
        store.store_msg("foo", &m).unwrap(),
        plain.encoded_len() as u64
    );
    assert_eq!(store.lookup("foo", 1).unwrap(), Some(plain));
}

#[test]
fn msgs_state_follows_first_last_conventions() {
    let mut store = store_with("foo");
    assert_eq!(store.msgs_state("foo"), MsgsState::default());
    let mut sizes = Vec::new();
    for seq in 1..=5 {
        let m = msg("foo", seq, "", &vec![b'a'; seq as usize * 10], seq as i64);
        sizes.push(store.store_msg("foo", &m).unwrap());
        assert_eq!(sizes[sizes.len() - 1], m.encoded_len() as u64);
    }
    let total: u64 = sizes.iter().sum();
    assert_eq!(
        store.msgs_state("foo"),
        MsgsState {
            count: 5,
            bytes: total,
            first: 1,
            last: 5
        }
    );
    for removed in 1..=5u64 {
        store.remove_oldest("foo").unwrap();
        let left: u64 = sizes[removed as usize..].iter().sum();
        assert_eq!(
            store.msgs_state("foo"),
            MsgsState {
                count: 5 - removed,
                bytes: left,
                first: removed + 1,
                last: 5
            }
        );
        assert_eq!(store.lookup("foo", removed).unwrap(), None);
        assert_eq!(store.timestamp("foo", removed).unwrap(), None);
    }
    assert!(store.remove_oldest("foo").is_err());
    // `last` survives the removals: the next message continues the sequence.
    assert!(store.store_msg("foo", &msg("foo", 1, "", b"", 1)).is_err());
    store.store_msg("foo", &msg("foo", 6, "", b"z", 9)).unwrap();
    let state = store.msgs_state("foo");
    assert_eq!((state.count, state.first, state.last), (1, 6, 6));
    assert_eq!(store.lookup("foo", 6).unwrap().unwrap().data, b"z");
}

#[test]
fn wrong_sequence_or_subject_is_refused() {
    let mut store = store_with("foo");
    assert!(store.store_msg("foo", &msg("foo", 0, "", b"", 1)).is_err());
    assert!(store.store_msg("foo", &msg("foo", 2, "", b"", 1)).is_err());
    store.store_msg("foo", &msg("foo", 1, "", b"", 1)).unwrap();
    assert!(store.store_msg("foo", &msg("foo", 1, "", b"", 1)).is_err());
    assert!(store.store_msg("foo", &msg("bar", 2, "", b"", 1)).is_err());
    assert_eq!(store.msgs_state("foo").last, 1);
    assert_eq!(store.msgs_state("foo").count, 1);
}

#[test]
fn unknown_channel_is_an_error() {
    let mut store = MemStore::new();
    let m = msg("nope", 1, "", b"", 1);
    assert!(store.store_msg("nope", &m).is_err());
    assert!(store.lookup("nope", 1).is_err());
    assert!(store.timestamp("nope", 1).is_err());
    assert!(store.remove_oldest("nope").is_err());
    assert!(store.delete_channel("nope").is_err());
    assert!(store.create_sub("nope", &sub(1, "c")).is_err());
    assert!(store.update_sub("nope", &sub(1, "c")).is_err());
    assert!(store.delete_sub("nope", 1).is_err());
    assert!(store.add_pending("nope", 1, 1).is_err());
    assert!(store.ack_pending("nope", 1, 1).is_err());
    assert_eq!(store.msgs_state("nope"), MsgsState::default());
    assert!(store.subs("nope").is_empty());
}

#[test]
fn channels_are_created_once_and_deleted_with_their_contents() {
    let mut store = store_with("foo");
    assert!(store.create_channel("foo").is_err());
    store.create_channel("bar").unwrap();
    store.store_msg("foo", &msg("foo", 1, "", b"a", 1)).unwrap();
    store.store_msg("bar", &msg("bar", 1, "", b"b", 1)).unwrap();
    store.create_sub("foo", &sub(1, "c")).unwrap();
    store.add_pending("foo", 1, 1).unwrap();

    store.delete_channel("foo").unwrap();
    assert!(store.lookup("foo", 1).is_err());
    assert_eq!(store.msgs_state("foo"), MsgsState::default());
    assert!(store.subs("foo").is_empty());
    assert_eq!(store.lookup("bar", 1).unwrap().unwrap().data, b"b");

    // A re-created channel starts again at sequence 1, without subscriptions.
    store.create_channel("foo").unwrap();
    assert_eq!(store.msgs_state("foo"), MsgsState::default());
    assert!(store.subs("foo").is_empty());
    store.store_msg("foo", &msg("foo", 1, "", b"c", 2)).unwrap();
    assert_eq!(store.lookup("foo", 1).unwrap().unwrap().data, b"c");
}

#[test]
fn subscriptions_keep_their_pending_sequences() {
    let mut store = store_with("foo");
    store.create_sub("foo", &sub(2, "b")).unwrap();
    store.create_sub("foo", &sub(1, "a")).unwrap();
    assert!(store.create_sub("foo", &sub(1, "a")).is_err());

    for seq in [5, 3, 4, 3] {
        store.add_pending("foo", 1, seq).unwrap();
    }
    store.add_pending("foo", 2, 9).unwrap();
    store.ack_pending("foo", 1, 4).unwrap();
    // Acking twice, or a sequence never sent, changes nothing.
    store.ack_pending("foo", 1, 4).unwrap();
    store.ack_pending("foo", 1, 100).unwrap();
    assert!(store.add_pending("foo", 3, 1).is_err());
    assert!(store.ack_pending("foo", 3, 1).is_err());

    let mut updated = sub(1, "a");
    updated.last_sent = 5;
    updated.is_durable = true;
    updated.durable_name = "dur".into();
    store.update_sub("foo", &updated).unwrap();
    assert!(store.update_sub("foo", &sub(3, "c")).is_err());

    assert_eq!(
        store.subs("foo"),
        vec![
            RecoveredSub {
                state: updated.clone(),
                pending: vec![3, 5]
            },
            RecoveredSub {
                state: sub(2, "b"),
                pending: vec![9]
            },
        ]
    );

    store.delete_sub("foo", 2).unwrap();
    store.delete_sub("foo", 2).unwrap();
    assert_eq!(store.subs("foo").len(), 1);
    assert_eq!(store.subs("foo")[0].state, updated);
    // Nothing of this is recovered by a memory store.
    assert_eq!(store.recover().unwrap(), Recovered::default());
}

#[test]
fn clients_and_server_info_are_kept() {
    let mut store = MemStore::new();
    assert_eq!(store.server_info(), None);
    let info = ServerInfo {
        cluster_id: "test-cluster".into(),
        discovery: "_STAN.discover.test-cluster".into(),
        ..ServerInfo::default()
    };
    store.init_server_info(&info).unwrap();
    assert_eq!(store.server_info(), Some(&info));

    let client = |id: &str, hb: &str| ClientInfo {
        id: id.into(),
        hb_inbox: hb.into(),
        protocol: 1,
        ..ClientInfo::default()
    };
    store.add_client(&client("me", "hb.1")).unwrap();
    store.add_client(&client("another", "hb.2")).unwrap();
    store.add_client(&client("me", "hb.3")).unwrap();
    assert_eq!(
        store.clients(),
        vec![client("another", "hb.2"), client("me", "hb.3")]
    );
    store.delete_client("me").unwrap();
    store.delete_client("me").unwrap();
    assert_eq!(store.clients(), vec![client("another", "hb.2")]);
}

#[test]
fn large_payloads_round_trip() {
    let mut store = store_with("foo");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    store
        .store_msg("foo", &msg("foo", 1, "", b"small", 1))
        .unwrap();
    store
        .store_msg("foo", &msg("foo", 2, "r", &big, 2))
        .unwrap();
    store
        .store_msg("foo", &msg("foo", 3, "", b"after", 3))
        .unwrap();
    assert_eq!(store.lookup("foo", 2).unwrap().unwrap().data, big);
    store.remove_oldest("foo").unwrap();
    store.remove_oldest("foo").unwrap();
    assert_eq!(store.lookup("foo", 3).unwrap().unwrap().data, b"after");
}

#[derive(Debug, Clone)]
enum Op {
    Append { reply: bool, len: usize, ts: i64 },
    RemoveOldest,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            any::<bool>(),
            prop_oneof![8 => 0usize..300, 1 => 30_000usize..70_000],
            any::<i64>()
        )
            .prop_map(|(reply, len, ts)| Op::Append { reply, len, ts }),
        2 => Just(Op::RemoveOldest),
    ]
}

proptest! {
    #[test]
    fn behaves_like_a_queue(ops in prop::collection::vec(op(), 0..200)) {
        let mut store = store_with("chan");
        let mut model: VecDeque<MsgProto> = VecDeque::new();
        let mut last = 0u64;
        for op in ops {
            match op {
                Op::Append { reply, len, ts } => {
                    last += 1;
                    let reply = if reply { format!("_INBOX.{last}") } else { String::new() };
                    let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ last) as u8).collect();
                    let m = msg("chan", last, &reply, &data, ts);
                    prop_assert_eq!(store.store_msg("chan", &m).unwrap(), m.encoded_len() as u64);
                    model.push_back(m);
                }
                Op::RemoveOldest => {
                    let removed = model.pop_front();
                    prop_assert_eq!(store.remove_oldest("chan").is_ok(), removed.is_some());
                }
            }
            let state = store.msgs_state("chan");
            let first = match (last, model.front()) {
                (0, _) => 0,
                (_, Some(m)) => m.sequence,
                (_, None) => last + 1,
            };
            let bytes = model.iter().map(|m| m.encoded_len() as u64).sum();
            prop_assert_eq!(
                state,
                MsgsState { count: model.len() as u64, bytes, first, last }
            );
            if let Some(oldest) = model.front() {
                let got = store.lookup("chan", oldest.sequence).unwrap();
                prop_assert_eq!(got.as_ref(), Some(oldest));
            }
        }
        for seq in 0..=last + 1 {
            let want = model.iter().find(|m| m.sequence == seq);
            let got = store.lookup("chan", seq).unwrap();
            prop_assert_eq!(got.as_ref(), want);
            prop_assert_eq!(store.timestamp("chan", seq).unwrap(), want.map(|m| m.timestamp));
        }
    }
}

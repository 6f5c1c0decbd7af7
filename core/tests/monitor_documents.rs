//! The streaming monitoring documents for one fixed scenario on virtual time, as the HTTP
//! layer would serve them (same JSON writer), so that any change of field, order,
//! omission or escaping shows up as a snapshot diff.

mod common;

use std::time::Duration;

use common::stan::{stan_config, sub_req, StanWorld};
use common::START_WALL_NS;
use stan_core::nats::monitor::Context as NatsContext;
use stan_core::streaming::limits::ChannelLimits;
use stan_core::streaming::monitor::{
    self, ChannelsReply, ChannelszQuery, ClientsReply, ClientszQuery, Context, NotFound, Page,
};
use stan_core::streaming::pb::SubscriptionRequest;

/// A server with a per-channel limit on `foo.>`, four clients and every kind of
/// subscription on `orders`:
/// * alice: a plain subscription stalled at MaxInFlight 2, the online durable `audit`,
///   and a member of queue `workers`;
/// * bob: the durable `archive`, closed after three deliveries (offline, pending kept),
///   and the other member of `workers`;
/// * carol: the only member of durable queue `dq:grp`, gone by connection close, which
///   leaves the group's shadow;
/// * dave: no subscription.
fn scenario() -> StanWorld {
    let mut cfg = stan_config();
    cfg.limits.per_channel.insert(
        "foo.>".into(),
        ChannelLimits {
            max_msgs: 500,
            ..ChannelLimits::default()
        },
    );
    let mut w = StanWorld::new(cfg);
    let alice = w.connect("alice");
    let bob = w.connect("bob");
    let carol = w.connect("carol");
    let dave = w.connect("dave");
    w.subscribe(
        alice,
        SubscriptionRequest {
            max_in_flight: 2,
            ..sub_req("orders")
        },
    );
    let audit = w.subscribe(
        alice,
        SubscriptionRequest {
            durable_name: "audit".into(),
            ack_wait_in_secs: 5,
            ..sub_req("orders")
        },
    );
    let archive = w.subscribe(
        bob,
        SubscriptionRequest {
            durable_name: "archive".into(),
            ..sub_req("orders")
        },
    );
    let worker_a = w.subscribe(
        alice,
        SubscriptionRequest {
            q_group: "workers".into(),
            ..sub_req("orders")
        },
    );
    w.subscribe(
        bob,
        SubscriptionRequest {
            q_group: "workers".into(),
            ..sub_req("orders")
        },
    );
    w.subscribe(
        carol,
        SubscriptionRequest {
            q_group: "grp".into(),
            durable_name: "dq".into(),
            ..sub_req("orders")
        },
    );
    for i in 1..=3 {
        w.publish_msg(dave, "orders", &format!("order {i}"));
    }
    w.publish_msg(dave, "foo.bar", "<b>&</b>");
    w.publish_msg(dave, "zeta", "z");
    w.advance(Duration::from_millis(10));
    for m in w.msgs(alice, &audit) {
        if m.sequence < 3 {
            w.ack(alice, &audit, m.sequence);
        }
    }
    for m in w.msgs(alice, &worker_a) {
        w.ack(alice, &worker_a, m.sequence);
    }
    assert_eq!(w.unsubscribe(bob, &archive, true), "");
    assert_eq!(w.close(carol), "");
    w.advance(Duration::from_secs(5));
    w
}

/// Fixed process facts and UTC, so the documents are the same on every machine.
fn context(w: &StanWorld) -> Context {
    Context {
        nats: NatsContext {
            now: w.now,
            utc_offset_secs: 0,
            // A start time with a fraction, to show Go's trimmed nanoseconds.
            start_wall_ns: START_WALL_NS - 1_500_000,
            ..NatsContext::default()
        },
        open_fds: 23,
        max_fds: 1_048_576,
    }
}

fn text<T: serde::Serialize>(doc: &T) -> String {
    String::from_utf8(monitor::to_json(doc)).expect("utf-8")
}

fn clients(w: &StanWorld, q: ClientszQuery) -> Result<String, NotFound> {
    let s = w.node.streaming().expect("streaming node");
    monitor::clientsz(s, &context(w), &q).map(|r| text(&r))
}

fn channels(w: &StanWorld, q: ChannelszQuery) -> Result<String, NotFound> {
    let s = w.node.streaming().expect("streaming node");
    monitor::channelsz(s, &context(w), &q).map(|r| text(&r))
}

#[test]
fn serverz() {
    let w = scenario();
    let s = w.node.streaming().unwrap();
    let doc = monitor::serverz(s, &context(&w));
    // plain + audit + archive (offline) + 2 workers + the dq:grp shadow.
    assert_eq!(doc.subscriptions, 6);
    assert_eq!(doc.clients, 3);
    assert_eq!(doc.channels, 3);
    assert_eq!(doc.total_msgs, 5);
    assert_eq!(doc.in_msgs, 5);
    crate::snapshot!("monitor_serverz", text(&doc));
}

#[test]
fn serverz_without_process_facts() {
    let w = scenario();
    let s = w.node.streaming().unwrap();
    let mut ctx = context(&w);
    ctx.open_fds = 0;
    ctx.max_fds = 0;
    let json = text(&monitor::serverz(s, &ctx));
    assert!(!json.contains("open_fds") && !json.contains("max_fds"));
    assert!(json.contains("\"out_bytes\""));
}

#[test]
fn storez() {
    let w = scenario();
    let s = w.node.streaming().unwrap();
    let json = text(&monitor::storez(s, &context(&w)));
    assert!(json.contains(r#""foo.\u003e": {"#));
    crate::snapshot!("monitor_storez", json);
}

#[test]
fn clientsz_list() {
    let w = scenario();
    crate::snapshot!(
        "monitor_clientsz",
        clients(&w, ClientszQuery::default()).unwrap()
    );
}

#[test]
fn clientsz_with_subscriptions() {
    let w = scenario();
    let q = ClientszQuery {
        subs: true,
        ..ClientszQuery::default()
    };
    crate::snapshot!("monitor_clientsz_subs", clients(&w, q).unwrap());
}

#[test]
fn clientsz_single_client() {
    let w = scenario();
    let with_subs = ClientszQuery {
        client: "alice".into(),
        subs: true,
        ..ClientszQuery::default()
    };
    let plain = ClientszQuery {
        client: "bob".into(),
        ..ClientszQuery::default()
    };
    let both = format!(
        "{}\n{}",
        clients(&w, with_subs).unwrap(),
        clients(&w, plain).unwrap()
    );
    crate::snapshot!("monitor_clientsz_single", both);
}

#[test]
fn clientsz_unknown_client() {
    let w = scenario();
    let q = ClientszQuery {
        client: "carol".into(),
        ..ClientszQuery::default()
    };
    assert_eq!(
        clients(&w, q).unwrap_err().to_string(),
        "Client carol not found"
    );
}

#[test]
fn clientsz_pages() {
    let w = scenario();
    let s = w.node.streaming().unwrap();
    let page = |offset, limit| {
        let q = ClientszQuery {
            page: Page::new(offset, limit),
            ..ClientszQuery::default()
        };
        match monitor::clientsz(s, &context(&w), &q).unwrap() {
            ClientsReply::List(l) => (
                l.offset,
                l.limit,
                l.count,
                l.total,
                l.clients.into_iter().map(|c| c.id).collect::<Vec<_>>(),
            ),
            ClientsReply::One(_) => panic!("list expected"),
        }
    };
    assert_eq!(page(1, 1), (1, 1, 1, 3, vec!["bob".to_string()]));
    assert_eq!(
        page(-4, 0),
        (
            0,
            1024,
            3,
            3,
            vec!["alice".into(), "bob".into(), "dave".into()]
        )
    );
    assert_eq!(page(2, 5), (2, 5, 1, 3, vec!["dave".into()]));
    // Past the end: the requested offset is reported, the list is empty but present.
    assert_eq!(page(7, 2), (7, 2, 0, 3, vec![]));
    let q = ClientszQuery {
        page: Page::new(7, 2),
        ..ClientszQuery::default()
    };
    assert!(clients(&w, q).unwrap().contains("\"clients\": []"));
}

#[test]
fn channelsz_names() {
    let w = scenario();
    crate::snapshot!(
        "monitor_channelsz",
        channels(&w, ChannelszQuery::default()).unwrap()
    );
}

#[test]
fn channelsz_with_subscriptions() {
    let w = scenario();
    let s = w.node.streaming().unwrap();
    let q = ChannelszQuery {
        subs: true,
        ..ChannelszQuery::default()
    };
    let ChannelsReply::List(list) = monitor::channelsz(s, &context(&w), &q).unwrap() else {
        panic!("list expected");
    };
    let orders = list.channels.iter().find(|c| c.name == "orders").unwrap();
    let kinds: Vec<(String, String, String, bool)> = orders
        .subscriptions
        .iter()
        .map(|s| {
            (
                s.client_id.clone(),
                s.durable_name.clone(),
                s.queue_name.clone(),
                s.is_offline,
            )
        })
        .collect();
    let k = |c: &str, d: &str, q: &str, off| (c.to_string(), d.to_string(), q.to_string(), off);
    // Plain (online durables included) in creation order, offline durables, then each
    // group by name: its members in delivery rotation order (alice took the last message,
    // so she is at the back), then its shadow, shown with its last owner.
    assert_eq!(
        kinds,
        [
            k("alice", "", "", false),
            k("alice", "audit", "", false),
            k("bob", "archive", "", true),
            k("carol", "", "dq:grp", true),
            k("bob", "", "workers", false),
            k("alice", "", "workers", false),
        ]
    );
    assert_eq!(orders.subs_count, 6);
    crate::snapshot!("monitor_channelsz_subs", text(&list));
}

#[test]
fn channelsz_single_channel() {
    let w = scenario();
    let with_subs = ChannelszQuery {
        channel: "orders".into(),
        subs: true,
        ..ChannelszQuery::default()
    };
    let plain = ChannelszQuery {
        channel: "foo.bar".into(),
        ..ChannelszQuery::default()
    };
    let both = format!(
        "{}\n{}",
        channels(&w, with_subs).unwrap(),
        channels(&w, plain).unwrap()
    );
    crate::snapshot!("monitor_channelsz_single", both);
}

#[test]
fn channelsz_unknown_channel() {
    let w = scenario();
    let q = ChannelszQuery {
        channel: "nope".into(),
        subs: true,
        ..ChannelszQuery::default()
    };
    assert_eq!(
        channels(&w, q).unwrap_err().to_string(),
        "Channel nope not found"
    );
}

#[test]
fn channelsz_pages() {
    let w = scenario();
    let names = ChannelszQuery {
        page: Page::new(1, 1),
        ..ChannelszQuery::default()
    };
    let docs = ChannelszQuery {
        subs: true,
        page: Page::new(2, 10),
        ..ChannelszQuery::default()
    };
    let past_end = ChannelszQuery {
        page: Page::new(10, 0),
        ..ChannelszQuery::default()
    };
    let all = format!(
        "{}\n{}\n{}",
        channels(&w, names).unwrap(),
        channels(&w, docs).unwrap(),
        channels(&w, past_end).unwrap()
    );
    crate::snapshot!("monitor_channelsz_pages", all);
}

#[test]
fn counters_agree_with_documents() {
    let w = scenario();
    let s = w.node.streaming().unwrap();
    let c = monitor::counters(s);
    let doc = monitor::serverz(s, &context(&w));
    assert_eq!(c.clients, doc.clients);
    assert_eq!(c.subscriptions, doc.subscriptions);
    assert_eq!(
        c.channels
            .iter()
            .map(|ch| ch.name.as_str())
            .collect::<Vec<_>>(),
        ["foo.bar", "orders", "zeta"]
    );
    let orders = &c.channels[1];
    assert_eq!((orders.msgs, orders.first_seq, orders.last_seq), (3, 1, 3));
    assert_eq!(orders.subscriptions, 6);
    let ChannelsReply::One(doc) = monitor::channelsz(
        s,
        &context(&w),
        &ChannelszQuery {
            channel: "orders".into(),
            subs: true,
            ..ChannelszQuery::default()
        },
    )
    .unwrap() else {
        panic!("one channel expected");
    };
    let pending: usize = doc.subscriptions.iter().map(|s| s.pending_count).sum();
    assert_eq!(orders.pending, pending);
    assert_eq!(orders.bytes, doc.bytes);
}

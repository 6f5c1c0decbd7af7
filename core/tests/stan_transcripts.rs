//! Transcripts of the streaming server on virtual time, one per protocol flow.

mod common;

use std::time::Duration;

use common::stan::{stan_config, sub_req, Carries, StanWorld};
use stan_core::streaming::pb::*;
use stan_core::streaming::Config;

fn world() -> StanWorld {
    StanWorld::new(stan_config())
}

#[test]
fn connect_publish_subscribe_ack() {
    let mut w = world();
    let c = w.connect("me");
    assert!(w.clients[c].resp.error.is_empty());
    assert_eq!(w.clients[c].resp.pub_prefix, "_STAN.pub.test-cluster");
    assert_eq!(
        w.clients[c].resp.ping_requests,
        "_STAN.discover.test-cluster.pings"
    );
    let sub = w.subscribe(c, sub_req("foo"));
    assert!(sub.error.is_empty());
    let g1 = w.publish_msg(c, "foo", "one");
    let g2 = w.publish_msg(c, "foo", "two");
    assert_eq!(
        w.pub_acks(c),
        vec![(g1, String::new()), (g2, String::new())]
    );
    let msgs = w.msgs(c, &sub);
    assert_eq!(
        msgs.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(msgs.iter().all(|m| !m.redelivered && m.subject == "foo"));
    w.ack(c, &sub, 1);
    w.ack(c, &sub, 2);
    assert_eq!(w.close(c), "");
    snapshot!("stan_connect_publish_subscribe_ack", w.transcript);
}

#[test]
fn connect_errors() {
    let mut w = world();
    let c = w.connect("ok");
    w.note("an invalid client ID, an empty heartbeat inbox, garbage");
    let bad = ConnectRequest {
        client_id: "bad id!".into(),
        heartbeat_inbox: "_INBOX.x".into(),
        ..Default::default()
    };
    let r = w
        .request(
            c,
            "_STAN.discover.test-cluster",
            &bad,
            Carries::ConnectResponse,
        )
        .unwrap();
    assert_eq!(
        ConnectResponse::decode_err(&r),
        "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed"
    );
    let no_inbox = ConnectRequest {
        client_id: "x".into(),
        ..Default::default()
    };
    let r = w
        .request(
            c,
            "_STAN.discover.test-cluster",
            &no_inbox,
            Carries::ConnectResponse,
        )
        .unwrap();
    assert_eq!(
        ConnectResponse::decode_err(&r),
        "stan: invalid connection request"
    );
    snapshot!("stan_connect_errors", w.transcript);
}

trait ErrText {
    fn decode_err(b: &[u8]) -> String;
}
impl ErrText for ConnectResponse {
    fn decode_err(b: &[u8]) -> String {
        <ConnectResponse as prost::Message>::decode(b)
            .unwrap()
            .error
    }
}

#[test]
fn duplicate_client_id_alive_then_dead() {
    let mut w = world();
    let a = w.connect("dup");
    w.note("the old holder answers its heartbeat probe: the new connect is refused");
    let b = w.connect("dup");
    w.advance(Duration::from_millis(1));
    assert_eq!(w.clients[b].resp.error, "stan: clientID already registered");
    w.note("the old holder stops answering: after the 500ms probe the new one replaces it");
    w.clients[a].answer_heartbeats = false;
    let c = w.connect("dup");
    assert!(!w.connect_done(c), "no answer while the probe waits");
    w.advance(Duration::from_millis(600));
    assert!(w.connect_done(c));
    assert_eq!(w.clients[c].resp.error, "");
    assert_eq!(w.ping(c).as_deref(), Some(""));
    assert_eq!(
        w.ping(a).as_deref(),
        Some("client has been replaced or is no longer registered")
    );
    snapshot!("stan_duplicate_client_id", w.transcript);
}

#[test]
fn duplicate_client_id_old_inbox_gone_is_replaced_at_once() {
    let mut w = world();
    let a = w.connect("dup");
    w.hang_up(a);
    let b = w.connect("dup");
    assert_eq!(
        w.clients[b].resp.error, "",
        "no responders means the old client is gone"
    );
    assert_eq!(w.ping(b).as_deref(), Some(""));
}

#[test]
fn every_start_position() {
    let mut w = world();
    let c = w.connect("me");
    for i in 1..=5 {
        w.publish_msg(c, "foo", &format!("m{i}"));
        w.advance(Duration::from_secs(10));
    }
    let cases = [
        (StartPosition::NewOnly, 0, 0, vec![]),
        (StartPosition::LastReceived, 0, 0, vec![5]),
        (StartPosition::First, 0, 0, vec![1, 2, 3, 4, 5]),
        (StartPosition::SequenceStart, 3, 0, vec![3, 4, 5]),
        (StartPosition::SequenceStart, 99, 0, vec![]),
        (StartPosition::TimeDeltaStart, 0, 25_000_000_000, vec![4, 5]),
    ];
    for (pos, seq, delta, want) in cases {
        let req = SubscriptionRequest {
            start_position: pos as i32,
            start_sequence: seq,
            start_time_delta: delta,
            ..sub_req("foo")
        };
        let sub = w.subscribe(c, req);
        let got: Vec<u64> = w.msgs(c, &sub).iter().map(|m| m.sequence).collect();
        assert_eq!(got, want, "{pos:?} {seq} {delta}");
    }
    snapshot!("stan_start_positions", w.transcript);
}

#[test]
fn ack_wait_expires_twice_then_the_ack_arrives() {
    let mut w = world();
    let c = w.connect("me");
    let sub = w.subscribe(
        c,
        SubscriptionRequest {
            ack_wait_in_secs: 1,
            ..sub_req("foo")
        },
    );
    w.publish_msg(c, "foo", "x");
    w.advance(Duration::from_millis(2500));
    let got = w.msgs(c, &sub);
    assert_eq!(
        got.iter()
            .map(|m| (m.redelivered, m.redelivery_count))
            .collect::<Vec<_>>(),
        vec![(false, 0), (true, 1), (true, 2)]
    );
    w.ack(c, &sub, 1);
    w.advance(Duration::from_secs(5));
    assert!(w.msgs(c, &sub).is_empty());
    snapshot!("stan_ack_wait_redelivery", w.transcript);
}

#[test]
fn max_in_flight_stalls_until_acks() {
    let mut w = world();
    let c = w.connect("me");
    let sub = w.subscribe(
        c,
        SubscriptionRequest {
            max_in_flight: 2,
            ..sub_req("foo")
        },
    );
    for i in 0..5 {
        w.publish_msg(c, "foo", &i.to_string());
    }
    assert_eq!(w.msgs(c, &sub).len(), 2);
    w.ack(c, &sub, 1);
    assert_eq!(
        w.msgs(c, &sub)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![3]
    );
    w.ack(c, &sub, 2);
    w.ack(c, &sub, 3);
    assert_eq!(
        w.msgs(c, &sub)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![4, 5]
    );
    snapshot!("stan_max_in_flight", w.transcript);
}

#[test]
fn durable_resume_redelivers_pending_first() {
    let mut w = world();
    let c = w.connect("me");
    let req = SubscriptionRequest {
        durable_name: "dur".into(),
        start_position: StartPosition::First as i32,
        ..sub_req("foo")
    };
    let sub = w.subscribe(c, req.clone());
    w.publish_msg(c, "foo", "a");
    w.publish_msg(c, "foo", "b");
    w.msgs(c, &sub);
    w.ack(c, &sub, 1);
    w.note("duplicate durable while online");
    assert_eq!(
        w.subscribe(c, req.clone()).error,
        "stan: duplicate durable registration"
    );
    w.note("close the durable (offline), publish more, resume");
    assert_eq!(w.unsubscribe(c, &sub, true), "");
    w.publish_msg(c, "foo", "c");
    let again = w.subscribe(c, req.clone());
    let got: Vec<(u64, bool)> = w
        .msgs(c, &again)
        .iter()
        .map(|m| (m.sequence, m.redelivered))
        .collect();
    assert_eq!(got, vec![(2, true), (3, false)]);
    w.note("unsubscribe forgets the durable: a new one starts from its start position");
    assert_eq!(w.unsubscribe(c, &again, false), "");
    let fresh = w.subscribe(
        c,
        SubscriptionRequest {
            start_position: StartPosition::NewOnly as i32,
            ..req
        },
    );
    assert!(w.msgs(c, &fresh).is_empty());
    snapshot!("stan_durable_resume", w.transcript);
}

#[test]
fn durable_survives_client_close() {
    let mut w = world();
    let c = w.connect("me");
    let req = SubscriptionRequest {
        durable_name: "dur".into(),
        ..sub_req("foo")
    };
    let sub = w.subscribe(c, req.clone());
    w.publish_msg(c, "foo", "a");
    w.msgs(c, &sub);
    assert_eq!(w.close(c), "");
    let c2 = w.connect("me");
    w.publish_msg(c2, "foo", "b");
    let again = w.subscribe(c2, req);
    let got: Vec<(u64, bool)> = w
        .msgs(c2, &again)
        .iter()
        .map(|m| (m.sequence, m.redelivered))
        .collect();
    assert_eq!(got, vec![(1, true), (2, false)]);
}

#[test]
fn queue_group_shares_and_redelivers_to_remaining_members() {
    let mut w = world();
    let a = w.connect("a");
    let b = w.connect("b");
    let p = w.connect("p");
    let qa = w.subscribe(
        a,
        SubscriptionRequest {
            q_group: "workers".into(),
            ack_wait_in_secs: 1,
            ..sub_req("jobs")
        },
    );
    let qb = w.subscribe(
        b,
        SubscriptionRequest {
            q_group: "workers".into(),
            ack_wait_in_secs: 1,
            ..sub_req("jobs")
        },
    );
    for i in 0..4 {
        w.publish_msg(p, "jobs", &i.to_string());
    }
    let got_a = w.msgs(a, &qa);
    let got_b = w.msgs(b, &qb);
    assert_eq!(got_a.len() + got_b.len(), 4, "each message to one member");
    assert!(!got_a.is_empty() && !got_b.is_empty());
    for m in &got_b {
        w.ack(b, &qb, m.sequence);
    }
    w.note("member a leaves without acking: its messages go to b, redelivered");
    assert_eq!(w.close(a), "");
    w.advance(Duration::from_millis(200));
    let moved = w.msgs(b, &qb);
    assert_eq!(moved.len(), got_a.len());
    assert!(moved.iter().all(|m| m.redelivered));
    snapshot!("stan_queue_group", w.transcript);
}

#[test]
fn durable_queue_group_shadow() {
    let mut w = world();
    let a = w.connect("a");
    let req = SubscriptionRequest {
        q_group: "g".into(),
        durable_name: "d".into(),
        start_position: StartPosition::First as i32,
        ..sub_req("foo")
    };
    let s = w.subscribe(a, req.clone());
    w.publish_msg(a, "foo", "1");
    w.msgs(a, &s);
    assert_eq!(
        w.close(a),
        "",
        "last member leaves by close: a shadow keeps the group"
    );
    let p = w_pub(&mut w);
    w.publish_msg(p, "foo", "2");
    let b = w.connect("b");
    let s2 = w.subscribe(b, req.clone());
    let got: Vec<(u64, bool)> = w
        .msgs(b, &s2)
        .iter()
        .map(|m| (m.sequence, m.redelivered))
        .collect();
    assert_eq!(got, vec![(1, true), (2, false)]);
    assert_eq!(
        w.subscribe(
            b,
            SubscriptionRequest {
                durable_name: "x:y".into(),
                ..req
            }
        )
        .error,
        "stan: durable name of a durable queue subscriber can't contain the character ':'"
    );
}

fn w_pub(w: &mut StanWorld) -> usize {
    w.connect("pub")
}

#[test]
fn client_misses_heartbeats_and_is_closed() {
    let cfg = Config {
        hb_interval: Duration::from_secs(1),
        hb_timeout: Duration::from_millis(500),
        hb_fail_count: 2,
        ..stan_config()
    };
    let mut w = StanWorld::new(cfg);
    let c = w.connect("sleepy");
    w.advance(Duration::from_millis(1100));
    w.note("the client stops answering heartbeats");
    w.clients[c].answer_heartbeats = false;
    w.advance(Duration::from_secs(6));
    assert_eq!(
        w.ping(c).as_deref(),
        Some("client has been replaced or is no longer registered")
    );
    snapshot!("stan_heartbeat_timeout", w.transcript);
}

#[test]
fn subscription_errors() {
    let mut w = world();
    let c = w.connect("me");
    let cases = [
        (
            SubscriptionRequest {
                ack_wait_in_secs: 0,
                ..sub_req("foo")
            },
            "stan: invalid ack wait time, should be >= 1s",
        ),
        (
            SubscriptionRequest {
                max_in_flight: 0,
                ..sub_req("foo")
            },
            "stan: invalid MaxInflight, should be >= 1",
        ),
        (
            SubscriptionRequest {
                start_position: 9,
                ..sub_req("foo")
            },
            "stan: invalid start position",
        ),
        (sub_req("foo.*"), "stan: invalid subject"),
        (sub_req("foo..bar"), "stan: invalid subject"),
    ];
    for (req, err) in cases {
        assert_eq!(w.subscribe(c, req).error, err);
    }
    let stranger = SubscriptionRequest {
        client_id: "nobody".into(),
        ..sub_req("foo")
    };
    let subject = w.clients[c].resp.sub_requests.clone();
    let r = w
        .request(c, &subject, &stranger, Carries::SubscriptionResponse)
        .unwrap();
    let _ = r;
    snapshot!("stan_subscription_errors", w.transcript);
}

#[test]
fn publish_errors() {
    let mut w = world();
    let c = w.connect("me");
    w.publish_msg(c, "foo.*", "x");
    w.publish_msg(c, "Foo", "x");
    w.publish_msg(c, "foo", "x");
    let acks = w.pub_acks(c);
    assert_eq!(acks[0].1, "stan: invalid publish request");
    assert_eq!(acks[1].1, "");
    assert_eq!(acks[2].1, "rejecting channel \"foo\" because channel \"Foo\" alreay exists (different cases not allowed)");
    w.note("garbage on the publish subject");
    let conn = w.clients[c].conn;
    w.raw(
        conn,
        b"PUB _STAN.pub.test-cluster.foo _STAN.acks.me.0 3\r\n\xff\xff\xff\r\n",
    );
    assert_eq!(w.pub_acks(c)[0].1, "stan: invalid publish request");
    snapshot!("stan_publish_errors", w.transcript);
}

#[test]
fn limits_max_msgs_and_channels() {
    let mut cfg = stan_config();
    cfg.limits.max_channels = 2;
    cfg.limits.channel.max_msgs = 3;
    cfg.limits.channel.max_subscriptions = 1;
    let mut w = StanWorld::new(cfg);
    let c = w.connect("me");
    for i in 0..5 {
        w.publish_msg(c, "a", &i.to_string());
    }
    w.publish_msg(c, "b", "x");
    w.publish_msg(c, "c", "x");
    let acks = w.pub_acks(c);
    assert!(acks[..6].iter().all(|a| a.1.is_empty()));
    assert_eq!(acks[6].1, "too many channels");
    let sub = w.subscribe(
        c,
        SubscriptionRequest {
            start_position: StartPosition::First as i32,
            ..sub_req("a")
        },
    );
    assert_eq!(
        w.msgs(c, &sub)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(
        w.subscribe(c, sub_req("a")).error,
        "too many subscriptions per channel"
    );
    snapshot!("stan_limits", w.transcript);
}

#[test]
fn max_age_removes_old_messages() {
    let mut cfg = stan_config();
    cfg.limits.channel.max_age = 10_000_000_000;
    let mut w = StanWorld::new(cfg);
    let c = w.connect("me");
    w.publish_msg(c, "a", "old");
    w.advance(Duration::from_secs(6));
    w.publish_msg(c, "a", "new");
    w.advance(Duration::from_secs(5));
    let sub = w.subscribe(
        c,
        SubscriptionRequest {
            start_position: StartPosition::First as i32,
            ..sub_req("a")
        },
    );
    assert_eq!(
        w.msgs(c, &sub)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn max_inactivity_deletes_the_channel() {
    let mut cfg = stan_config();
    cfg.limits.channel.max_inactivity = 5_000_000_000;
    let mut w = StanWorld::new(cfg);
    let c = w.connect("me");
    w.publish_msg(c, "idle", "x");
    w.advance(Duration::from_secs(6));
    w.note("the channel was deleted: a new publish starts again at 1");
    w.publish_msg(c, "idle", "y");
    let sub = w.subscribe(
        c,
        SubscriptionRequest {
            start_position: StartPosition::First as i32,
            ..sub_req("idle")
        },
    );
    assert_eq!(
        w.msgs(c, &sub)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![1]
    );
    snapshot!("stan_max_inactivity", w.transcript);
}

#[test]
fn unsubscribe_errors_and_unknown_close() {
    let mut w = world();
    let c = w.connect("me");
    let sub = w.subscribe(c, sub_req("foo"));
    let ghost = common::stan::ClientSub {
        ack_inbox: "_INBOX.nope".into(),
        ..sub.clone()
    };
    assert_eq!(
        w.unsubscribe(c, &ghost, false),
        "stan: invalid subscription"
    );
    let other = common::stan::ClientSub {
        channel: "nochannel".into(),
        ..sub.clone()
    };
    assert_eq!(w.unsubscribe(c, &other, false), "stan: unknown channel");
    assert_eq!(w.unsubscribe(c, &sub, false), "");
    assert_eq!(w.close(c), "");
    assert_eq!(w.close(c), "stan: unknown clientID");
}

#[test]
fn replace_durable_closes_the_active_one() {
    let mut w = StanWorld::new(Config {
        replace_durable: true,
        ..stan_config()
    });
    let c = w.connect("me");
    let req = SubscriptionRequest {
        durable_name: "dur".into(),
        ..sub_req("foo")
    };
    let first = w.subscribe(c, req.clone());
    w.publish_msg(c, "foo", "a");
    assert_eq!(w.msgs(c, &first).len(), 1);
    let second = w.subscribe(c, req);
    assert_eq!(
        second.error, "",
        "the duplicate replaces the active durable"
    );
    w.publish_msg(c, "foo", "b");
    assert!(
        w.msgs(c, &first).is_empty(),
        "the replaced subscription gets nothing more"
    );
    let got: Vec<(u64, bool)> = w
        .msgs(c, &second)
        .iter()
        .map(|m| (m.sequence, m.redelivered))
        .collect();
    assert_eq!(
        got,
        vec![(1, true), (2, false)],
        "its pending message comes back first"
    );
}

#[test]
fn per_channel_limits_follow_wildcard_inheritance() {
    use stan_core::streaming::limits::ChannelLimits;
    let mut cfg = stan_config();
    cfg.limits.per_channel.insert(
        "orders.>".into(),
        ChannelLimits {
            max_msgs: 2,
            ..Default::default()
        },
    );
    cfg.limits.per_channel.insert(
        "orders.eu".into(),
        ChannelLimits {
            max_bytes: 1,
            ..Default::default()
        },
    );
    let mut w = StanWorld::new(cfg);
    let c = w.connect("me");
    for ch in ["orders.us", "orders.eu", "other"] {
        for i in 0..4 {
            w.publish_msg(c, ch, &format!("{i}"));
        }
    }
    let mut kept = Vec::new();
    for ch in ["orders.us", "orders.eu", "other"] {
        let sub = w.subscribe(
            c,
            SubscriptionRequest {
                start_position: StartPosition::First as i32,
                ..sub_req(ch)
            },
        );
        kept.push(
            w.msgs(c, &sub)
                .iter()
                .map(|m| m.sequence)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        kept,
        vec![vec![3, 4], vec![4], vec![1, 2, 3, 4]],
        "max_bytes keeps only the newest; max_msgs is inherited"
    );
}

#[test]
fn bad_input_is_refused_or_ignored_and_nothing_is_lost() {
    let mut w = world();
    let c = w.connect("me");
    let sub = w.subscribe(
        c,
        SubscriptionRequest {
            max_in_flight: i32::MAX,
            ack_wait_in_secs: i32::MAX,
            ..sub_req("foo")
        },
    );
    assert_eq!(sub.error, "", "huge MaxInFlight and AckWait are accepted");
    let conn = w.clients[c].conn;
    w.note("requests without a reply subject get no answer, garbage in every request subject");
    for subject in [
        "_STAN.discover.test-cluster",
        "_STAN.sub.test-cluster",
        "_STAN.unsub.test-cluster",
        "_STAN.close.test-cluster",
        "_STAN.discover.test-cluster.pings",
    ] {
        let mut out = Vec::new();
        stan_core::nats::proto::write_pub(
            &mut out,
            subject.as_bytes(),
            None,
            None,
            b"\xff\xfe garbage",
        );
        w.raw(conn, &out);
    }
    w.note("an undecodable subscription request with a reply gets the Go server's error");
    let subject = w.clients[c].resp.sub_requests.clone();
    let r = w
        .request_raw(c, &subject, b"\xff\xff", Carries::SubscriptionResponse)
        .unwrap();
    assert_eq!(
        <SubscriptionResponse as prost::Message>::decode(&*r)
            .unwrap()
            .error,
        "stan: invalid subscription request"
    );
    let subject = w.clients[c].resp.close_requests.clone();
    let r = w
        .request_raw(c, &subject, b"\xff\xff", Carries::CloseResponse)
        .unwrap();
    assert_eq!(
        <CloseResponse as prost::Message>::decode(&*r)
            .unwrap()
            .error,
        "stan: invalid close request"
    );
    w.note("acks for unknown sequences and garbage acks are ignored");
    w.ack(c, &sub, 999);
    let mut out = Vec::new();
    stan_core::nats::proto::write_pub(&mut out, sub.ack_inbox.as_bytes(), None, None, b"\x0a\xff");
    w.raw(conn, &out);
    w.note("unknown client IDs");
    let stranger = PubMsg {
        client_id: "nobody".into(),
        guid: "g".into(),
        subject: "foo".into(),
        data: b"x".to_vec(),
        ..Default::default()
    };
    let mut out = Vec::new();
    stan_core::nats::proto::write_pub(
        &mut out,
        b"_STAN.pub.test-cluster.foo",
        Some(w.clients[c].acks.as_bytes()),
        None,
        &prost::Message::encode_to_vec(&stranger),
    );
    w.raw(conn, &out);
    assert_eq!(
        w.pub_acks(c),
        vec![("g".to_string(), "stan: invalid publish request".to_string())]
    );
    w.note("the server still serves: a valid publish is stored and delivered");
    let g = w.publish_msg(c, "foo", "ok");
    assert_eq!(w.pub_acks(c), vec![(g, String::new())]);
    assert_eq!(
        w.msgs(c, &sub)
            .iter()
            .map(|m| m.sequence)
            .collect::<Vec<_>>(),
        vec![1]
    );
    snapshot!("stan_bad_input", w.transcript);
}

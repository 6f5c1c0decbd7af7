//! The client against hand-written server byte streams on virtual time.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;

use super::errors::*;
use super::*;
use crate::nats::proto::{self, ClientOp, Limits};
use crate::streaming::pb;
use crate::time::{Instant, Now};

const INFO: &[u8] = b"INFO {\"server_id\":\"S\",\"version\":\"2.9.24\",\"proto\":1,\"headers\":true,\"max_payload\":1048576}\r\n";

/// One operation the client wrote, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    Connect(serde_json::Value),
    Sub {
        subject: String,
        sid: String,
    },
    Unsub {
        sid: String,
    },
    Pub {
        subject: String,
        reply: Option<String>,
        payload: Vec<u8>,
    },
    Ping,
    Pong,
}

/// A client, its virtual clock, and the server's view of its subscriptions.
struct World {
    client: Client,
    now: Now,
    /// subject → sid, as the client subscribed them.
    sids: BTreeMap<String, String>,
}

fn start() -> Now {
    Now {
        mono: Instant::from_nanos(1_000_000_000),
        wall_ns: 1_700_000_000_000_000_000,
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

impl World {
    fn new() -> Self {
        Self::with(ClientConfig::new("test-cluster", "me", 7))
    }

    fn with(cfg: ClientConfig) -> Self {
        let now = start();
        World {
            client: Client::new(cfg, now),
            now,
            sids: BTreeMap::new(),
        }
    }

    /// Everything the client wants to write, parsed.
    fn sent(&mut self) -> Vec<Wire> {
        let mut bytes = Vec::new();
        while let Some(b) = self.client.poll_transmit() {
            bytes.extend_from_slice(&b);
        }
        let mut ops = Vec::new();
        let mut pos = 0;
        while let Some((op, used)) =
            proto::parse_client_op(&bytes[pos..], &Limits::default()).unwrap()
        {
            pos += used;
            ops.push(match op {
                ClientOp::Connect(j) => Wire::Connect(serde_json::from_slice(j).unwrap()),
                ClientOp::Sub { subject, sid, .. } => {
                    self.sids.insert(s(subject), s(sid));
                    Wire::Sub {
                        subject: s(subject),
                        sid: s(sid),
                    }
                }
                ClientOp::Unsub { sid, .. } => Wire::Unsub { sid: s(sid) },
                ClientOp::Pub {
                    subject,
                    reply,
                    payload,
                    ..
                } => Wire::Pub {
                    subject: s(subject),
                    reply: reply.map(s),
                    payload: payload.to_vec(),
                },
                ClientOp::Ping => Wire::Ping,
                ClientOp::Pong => Wire::Pong,
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(pos, bytes.len(), "client wrote a partial operation");
        ops
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.client.handle_input(self.now, bytes);
    }

    /// The sid the client used for a subscription matching `subject`.
    fn sid_for(&self, subject: &str) -> String {
        if let Some(sid) = self.sids.get(subject) {
            return sid.clone();
        }
        // Replies to requests arrive on the wildcard inbox.
        let (prefix, _) = subject.rsplit_once('.').unwrap();
        self.sids[&format!("{prefix}.*")].clone()
    }

    /// Delivers `payload` to the client on `subject`, as the server would.
    fn deliver(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let sid = self.sid_for(subject);
        let mut b = Vec::new();
        proto::write_msg(
            &mut b,
            subject.as_bytes(),
            sid.as_bytes(),
            reply.map(str::as_bytes),
            None,
            payload,
        );
        self.feed(&b);
    }

    fn no_responders(&mut self, subject: &str) {
        let sid = self.sid_for(subject);
        let mut b = Vec::new();
        let h = proto::NO_RESPONDERS_HEADER;
        proto::write_msg(
            &mut b,
            subject.as_bytes(),
            sid.as_bytes(),
            None,
            Some(h.len()),
            h,
        );
        self.feed(&b);
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.advanced(d);
        self.client.handle_timeout(self.now);
    }

    /// Runs the handshake and returns the connect request and its reply subject.
    fn handshake(&mut self) -> (pb::ConnectRequest, String) {
        self.feed(INFO);
        let ops = self.sent();
        let Some(Wire::Pub {
            subject,
            reply: Some(reply),
            payload,
        }) = ops.last().cloned()
        else {
            panic!("no connect request in {ops:?}");
        };
        assert_eq!(subject, "_STAN.discover.test-cluster");
        (pb::ConnectRequest::decode(&payload[..]).unwrap(), reply)
    }

    fn connect_response() -> pb::ConnectResponse {
        pb::ConnectResponse {
            pub_prefix: "_STAN.pub.test-cluster".into(),
            sub_requests: "_STAN.sub.test-cluster".into(),
            unsub_requests: "_STAN.unsub.test-cluster".into(),
            close_requests: "_STAN.close.test-cluster".into(),
            sub_close_requests: "_STAN.subclose.test-cluster".into(),
            ping_requests: "_STAN.discover.test-cluster.pings".into(),
            ping_interval: 5,
            ping_max_out: 3,
            protocol: 1,
            ..Default::default()
        }
    }

    fn connected() -> Self {
        Self::connected_with(Self::connect_response())
    }

    fn connected_with(resp: pb::ConnectResponse) -> Self {
        let mut w = World::new();
        let (_, reply) = w.handshake();
        w.deliver(&reply, None, &resp.encode_to_vec());
        assert_eq!(w.events(), vec![Event::Connected]);
        w
    }

    /// The single request the client just sent: subject, reply, payload.
    fn request(&mut self) -> (String, String, Vec<u8>) {
        let ops = self.sent();
        match ops.as_slice() {
            [.., Wire::Pub {
                subject,
                reply: Some(reply),
                payload,
            }] => (subject.clone(), reply.clone(), payload.clone()),
            _ => panic!("no request in {ops:?}"),
        }
    }

    /// Subscribes and answers with `ack_inbox`; returns the handle and delivery inbox.
    fn subscribed(&mut self, opts: SubscribeOptions) -> (SubHandle, String) {
        let sub = self.client.subscribe(self.now, "foo", opts).unwrap();
        let (_, reply, payload) = self.request();
        let req = pb::SubscriptionRequest::decode(&payload[..]).unwrap();
        let resp = pb::SubscriptionResponse {
            ack_inbox: "_INBOX.ACKS".into(),
            error: String::new(),
        };
        self.deliver(&reply, None, &resp.encode_to_vec());
        assert_eq!(self.events(), vec![Event::Subscribed { sub }]);
        (sub, req.inbox)
    }
}

fn msg(seq: u64, data: &[u8]) -> Vec<u8> {
    pb::MsgProto {
        sequence: seq,
        subject: "foo".into(),
        data: data.to_vec(),
        timestamp: 5,
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn connect_sends_connect_subs_and_request() {
    let mut w = World::new();
    assert!(w.sent().is_empty(), "nothing is written before INFO");
    w.feed(INFO);
    let ops = w.sent();
    let Wire::Connect(json) = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(json["name"], "me");
    assert_eq!(json["verbose"], false);
    assert_eq!(json["pedantic"], false);
    assert_eq!(json["headers"], true);
    assert_eq!(json["no_responders"], true);
    assert_eq!(json["protocol"], 1);
    let subjects: Vec<&str> = ops[1..4]
        .iter()
        .map(|o| match o {
            Wire::Sub { subject, .. } => subject.as_str(),
            o => panic!("{o:?}"),
        })
        .collect();
    assert!(subjects[0].starts_with("_INBOX.") && subjects[0].len() == 7 + 22);
    assert!(subjects[1].starts_with("_STAN.acks.") && subjects[1].len() == 11 + 22);
    assert!(subjects[2].starts_with("_INBOX.") && subjects[2].ends_with(".*"));
    let Wire::Pub {
        subject,
        reply: Some(reply),
        payload,
    } = &ops[4]
    else {
        panic!("{ops:?}")
    };
    assert_eq!(subject, "_STAN.discover.test-cluster");
    assert!(reply.starts_with(subjects[2].trim_end_matches('*')));
    let req = pb::ConnectRequest::decode(&payload[..]).unwrap();
    assert_eq!(req.client_id, "me");
    assert_eq!(req.heartbeat_inbox, subjects[0]);
    assert_eq!(req.protocol, 1);
    assert_eq!(req.conn_id.len(), 22);
    assert_eq!((req.ping_interval, req.ping_max_out), (5, 3));
    assert_eq!(ops.len(), 5);
}

#[test]
fn connect_success_arms_pings() {
    let w = World::connected();
    assert!(w.client.is_connected());
    assert_eq!(
        w.client.poll_timeout(),
        Some(w.now.mono + Duration::from_secs(5))
    );
}

#[test]
fn connect_error_is_verbatim_and_final() {
    let mut w = World::new();
    let (_, reply) = w.handshake();
    let resp = pb::ConnectResponse {
        error: "stan: clientID already registered".into(),
        ..Default::default()
    };
    w.deliver(&reply, None, &resp.encode_to_vec());
    assert_eq!(
        w.events(),
        vec![Event::ConnectFailed(
            "stan: clientID already registered".into()
        )]
    );
    assert!(w.client.is_ended());
    assert_eq!(w.client.poll_timeout(), None);
    assert_eq!(
        w.client.publish(w.now, "foo", b"x"),
        Err(ClientError::ConnectionClosed)
    );
}

#[test]
fn connect_timeout() {
    let mut w = World::new();
    w.handshake();
    w.advance(Duration::from_millis(1999));
    assert!(w.events().is_empty());
    w.advance(Duration::from_millis(1));
    assert_eq!(
        w.events(),
        vec![Event::ConnectFailed(CONNECT_TIMEOUT.into())]
    );
}

#[test]
fn no_info_times_out() {
    let mut w = World::new();
    w.advance(Duration::from_secs(2));
    assert_eq!(w.events(), vec![Event::ConnectFailed(NATS_TIMEOUT.into())]);
}

#[test]
fn connect_without_server_fails_at_once() {
    let mut w = World::new();
    let (_, reply) = w.handshake();
    w.no_responders(&reply);
    assert_eq!(
        w.events(),
        vec![Event::ConnectFailed(CONNECT_TIMEOUT.into())]
    );
}

#[test]
fn nats_error_during_connect() {
    let mut w = World::new();
    w.feed(b"-ERR 'Authorization Violation'\r\n");
    assert_eq!(
        w.events(),
        vec![Event::ConnectFailed("Authorization Violation".into())]
    );
}

#[test]
fn publish_and_pub_ack() {
    let mut w = World::connected();
    assert_eq!(w.client.pub_acks_in_flight(), 0);
    let guid = w.client.publish(w.now, "foo", b"hello").unwrap();
    assert_eq!(guid.as_str().len(), 22);
    let ops = w.sent();
    let [Wire::Pub {
        subject,
        reply: Some(reply),
        payload,
    }] = ops.as_slice()
    else {
        panic!("{ops:?}")
    };
    assert_eq!(subject, "_STAN.pub.test-cluster.foo");
    assert!(reply.starts_with("_STAN.acks."));
    let m = pb::PubMsg::decode(&payload[..]).unwrap();
    assert_eq!(m.client_id, "me");
    assert_eq!(m.guid, guid.as_str());
    assert_eq!(m.subject, "foo");
    assert_eq!(m.data, b"hello");
    assert_eq!(m.conn_id.len(), 22);
    assert_eq!(w.client.pub_acks_in_flight(), 1);

    // A PubAck for some other message is not ours.
    let other = pb::PubAck {
        guid: "unknown".into(),
        error: String::new(),
    };
    w.deliver(reply, None, &other.encode_to_vec());
    assert!(w.events().is_empty());

    let ack = pb::PubAck {
        guid: guid.as_str().into(),
        error: String::new(),
    };
    w.deliver(reply, None, &ack.encode_to_vec());
    assert_eq!(w.events(), vec![Event::PubAck { guid, error: None }]);
    assert_eq!(w.client.pub_acks_in_flight(), 0);
    // Only the ping timer is left.
    assert_eq!(
        w.client.poll_timeout(),
        Some(w.now.mono + Duration::from_secs(5))
    );
}

#[test]
fn pub_ack_error_is_verbatim() {
    let mut w = World::connected();
    let guid = w.client.publish(w.now, "foo", b"").unwrap();
    let ops = w.sent();
    let Wire::Pub {
        reply: Some(reply), ..
    } = &ops[0]
    else {
        panic!()
    };
    let ack = pb::PubAck {
        guid: guid.as_str().into(),
        error: "stan: invalid publish request".into(),
    };
    w.deliver(reply, None, &ack.encode_to_vec());
    assert_eq!(
        w.events(),
        vec![Event::PubAck {
            guid,
            error: Some("stan: invalid publish request".into())
        }]
    );
}

#[test]
fn pub_ack_timeout() {
    let mut cfg = ClientConfig::new("test-cluster", "me", 7);
    // No pings in the way.
    cfg.ping_interval_secs = 0;
    let mut w = World::with(cfg);
    let (_, reply) = w.handshake();
    let mut resp = World::connect_response();
    resp.ping_interval = 0;
    w.deliver(&reply, None, &resp.encode_to_vec());
    w.events();
    let g1 = w.client.publish(w.now, "foo", b"a").unwrap();
    w.advance(Duration::from_secs(10));
    let g2 = w.client.publish(w.now, "foo", b"b").unwrap();
    assert_eq!(
        w.client.poll_timeout(),
        Some(w.now.mono + Duration::from_secs(20))
    );
    w.advance(Duration::from_secs(20));
    assert_eq!(
        w.events(),
        vec![Event::PubAck {
            guid: g1,
            error: Some(PUB_ACK_TIMEOUT.into())
        }]
    );
    assert_eq!(w.client.pub_acks_in_flight(), 1);
    w.advance(Duration::from_secs(10));
    assert_eq!(
        w.events(),
        vec![Event::PubAck {
            guid: g2,
            error: Some(PUB_ACK_TIMEOUT.into())
        }]
    );
    assert_eq!(w.client.poll_timeout(), None);
}

#[test]
fn max_pub_acks_in_flight_is_reported() {
    let mut cfg = ClientConfig::new("test-cluster", "me", 7);
    cfg.max_pub_acks_inflight = 2;
    let mut w = World::with(cfg);
    let (_, reply) = w.handshake();
    w.deliver(&reply, None, &World::connect_response().encode_to_vec());
    w.client.publish(w.now, "foo", b"a").unwrap();
    assert!(w.client.can_publish());
    w.client.publish(w.now, "foo", b"b").unwrap();
    assert!(!w.client.can_publish());
}

#[test]
fn publish_over_max_payload_is_refused() {
    let mut w = World::connected();
    assert_eq!(
        w.client.publish(w.now, "foo", &vec![0; 1 << 20]),
        Err(ClientError::MaxPayload)
    );
    assert!(w.sent().is_empty());
}

#[test]
fn pub_msg_encoding_matches_prost() {
    let mut ours = Vec::new();
    wire::encode_pub_msg(&mut ours, "me", "GUID", "foo", b"data", b"conn");
    let theirs = pb::PubMsg {
        client_id: "me".into(),
        guid: "GUID".into(),
        subject: "foo".into(),
        data: b"data".to_vec(),
        conn_id: b"conn".to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(ours, theirs);
    let mut empty = Vec::new();
    wire::encode_pub_msg(&mut empty, "", "G", "c", &[0; 300], b"");
    assert_eq!(
        pb::PubMsg::decode(&empty[..]).unwrap().data,
        vec![0; 300],
        "multi-byte length prefix"
    );
}

#[test]
fn subscribe_sends_sub_before_request_with_defaults() {
    let mut w = World::connected();
    let sub = w
        .client
        .subscribe(w.now, "foo", SubscribeOptions::default())
        .unwrap();
    let ops = w.sent();
    let [Wire::Sub { subject: inbox, .. }, Wire::Pub {
        subject,
        reply: Some(_),
        payload,
    }] = ops.as_slice()
    else {
        panic!("{ops:?}")
    };
    assert_eq!(subject, "_STAN.sub.test-cluster");
    let req = pb::SubscriptionRequest::decode(&payload[..]).unwrap();
    assert_eq!(req.client_id, "me");
    assert_eq!(req.subject, "foo");
    assert_eq!(&req.inbox, inbox);
    assert_eq!(req.max_in_flight, 1024);
    assert_eq!(req.ack_wait_in_secs, 30);
    assert_eq!(req.start_position, pb::StartPosition::NewOnly as i32);
    assert_eq!((req.q_group.as_str(), req.durable_name.as_str()), ("", ""));
    assert!(w.events().is_empty(), "{sub:?} waits for the response");
}

#[test]
fn subscribe_start_positions() {
    let mut w = World::connected();
    let cases = [
        (StartAt::First, 4, 0, 0),
        (StartAt::LastReceived, 1, 0, 0),
        (StartAt::Sequence(42), 3, 42, 0),
        (
            StartAt::TimeDelta(Duration::from_secs(3)),
            2,
            0,
            3_000_000_000,
        ),
        (StartAt::Time(w.now.wall_ns - 7), 2, 0, 7),
    ];
    for (start, pos, seq, delta) in cases {
        let opts = SubscribeOptions {
            start,
            queue_group: Some("q".into()),
            durable_name: Some("d".into()),
            max_in_flight: 5,
            ack_wait_secs: 2,
            manual_ack: false,
        };
        w.client.subscribe(w.now, "foo", opts).unwrap();
        let (_, _, payload) = w.request();
        let req = pb::SubscriptionRequest::decode(&payload[..]).unwrap();
        assert_eq!(
            (req.start_position, req.start_sequence, req.start_time_delta),
            (pos, seq, delta),
            "{start:?}"
        );
        assert_eq!(
            (req.q_group.as_str(), req.durable_name.as_str()),
            ("q", "d")
        );
        assert_eq!((req.max_in_flight, req.ack_wait_in_secs), (5, 2));
    }
}

#[test]
fn delivery_is_auto_acked() {
    let mut w = World::connected();
    let (sub, inbox) = w.subscribed(SubscribeOptions::default());
    w.sent();
    w.deliver(&inbox, None, &msg(1, b"one"));
    let events = w.events();
    let [Event::Msg { sub: got, msg: m }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!((*got, m.sequence, m.data.as_slice()), (sub, 1, &b"one"[..]));
    let ops = w.sent();
    let [Wire::Pub {
        subject,
        reply: None,
        payload,
    }] = ops.as_slice()
    else {
        panic!("{ops:?}")
    };
    assert_eq!(subject, "_INBOX.ACKS");
    assert_eq!(
        pb::Ack::decode(&payload[..]).unwrap(),
        pb::Ack {
            subject: "foo".into(),
            sequence: 1
        }
    );
    assert_eq!(w.client.ack(sub, 1), Err(ClientError::ManualAckInAutoMode));
}

#[test]
fn manual_ack() {
    let mut w = World::connected();
    let (sub, inbox) = w.subscribed(SubscribeOptions {
        manual_ack: true,
        ..Default::default()
    });
    w.sent();
    w.deliver(&inbox, None, &msg(3, b"x"));
    assert_eq!(w.events().len(), 1);
    assert!(w.sent().is_empty(), "no automatic ack");
    w.client.ack(sub, 3).unwrap();
    let ops = w.sent();
    let [Wire::Pub {
        subject, payload, ..
    }] = ops.as_slice()
    else {
        panic!("{ops:?}")
    };
    assert_eq!(subject, "_INBOX.ACKS");
    assert_eq!(pb::Ack::decode(&payload[..]).unwrap().sequence, 3);
    assert_eq!(
        w.client.ack(SubHandle(999), 3),
        Err(ClientError::InvalidSubscription)
    );
}

#[test]
fn subscribe_error_unsubscribes_inbox() {
    let mut w = World::connected();
    let sub = w
        .client
        .subscribe(w.now, "foo", SubscribeOptions::default())
        .unwrap();
    let (_, reply, payload) = w.request();
    let inbox = pb::SubscriptionRequest::decode(&payload[..]).unwrap().inbox;
    let sid = w.sids[&inbox].clone();
    let resp = pb::SubscriptionResponse {
        ack_inbox: String::new(),
        error: "stan: invalid subject".into(),
    };
    w.deliver(&reply, None, &resp.encode_to_vec());
    assert_eq!(
        w.events(),
        vec![Event::SubscribeFailed {
            sub,
            error: "stan: invalid subject".into()
        }]
    );
    assert_eq!(w.sent(), vec![Wire::Unsub { sid }]);
}

#[test]
fn subscribe_timeout_closes_the_server_side() {
    let mut w = World::connected();
    let sub = w
        .client
        .subscribe(w.now, "foo", SubscribeOptions::default())
        .unwrap();
    let (_, _, payload) = w.request();
    let inbox = pb::SubscriptionRequest::decode(&payload[..]).unwrap().inbox;
    w.advance(Duration::from_secs(2));
    assert_eq!(
        w.events(),
        vec![Event::SubscribeFailed {
            sub,
            error: SUBSCRIBE_TIMEOUT.into()
        }]
    );
    let ops = w.sent();
    let [Wire::Pub {
        subject,
        reply: None,
        payload,
    }, Wire::Unsub { .. }] = ops.as_slice()
    else {
        panic!("{ops:?}")
    };
    assert_eq!(subject, "_STAN.subclose.test-cluster");
    let req = pb::UnsubscribeRequest::decode(&payload[..]).unwrap();
    assert_eq!(
        (req.client_id.as_str(), req.subject.as_str()),
        ("me", "foo")
    );
    assert_eq!(req.inbox, inbox);
}

#[test]
fn unsubscribe_and_close_subscription() {
    for close in [false, true] {
        let mut w = World::connected();
        let (sub, inbox) = w.subscribed(SubscribeOptions::default());
        let sid = w.sids[&inbox].clone();
        if close {
            w.client.close_subscription(w.now, sub).unwrap();
        } else {
            w.client.unsubscribe(w.now, sub).unwrap();
        }
        let ops = w.sent();
        assert_eq!(ops[0], Wire::Unsub { sid });
        let Wire::Pub {
            subject,
            reply: Some(reply),
            payload,
        } = &ops[1]
        else {
            panic!("{ops:?}")
        };
        let want = if close {
            "_STAN.subclose.test-cluster"
        } else {
            "_STAN.unsub.test-cluster"
        };
        assert_eq!(subject, want);
        let req = pb::UnsubscribeRequest::decode(&payload[..]).unwrap();
        assert_eq!(
            (
                req.client_id.as_str(),
                req.subject.as_str(),
                req.inbox.as_str()
            ),
            ("me", "foo", "_INBOX.ACKS")
        );
        assert_eq!(
            w.client.unsubscribe(w.now, sub),
            Err(ClientError::InvalidSubscription)
        );
        // Successful responses are empty payloads (§4).
        w.deliver(reply, None, b"");
        assert_eq!(w.events(), vec![Event::Unsubscribed { sub, error: None }]);
    }
}

#[test]
fn unsubscribe_error_and_timeout() {
    let mut w = World::connected();
    let (a, _) = w.subscribed(SubscribeOptions::default());
    let (b, _) = w.subscribed(SubscribeOptions::default());
    w.sent();
    w.client.unsubscribe(w.now, a).unwrap();
    let (_, reply, _) = w.request();
    let resp = pb::SubscriptionResponse {
        ack_inbox: String::new(),
        error: "stan: invalid subscription".into(),
    };
    w.deliver(&reply, None, &resp.encode_to_vec());
    w.client.close_subscription(w.now, b).unwrap();
    w.advance(Duration::from_secs(2));
    assert_eq!(
        w.events(),
        vec![
            Event::Unsubscribed {
                sub: a,
                error: Some("stan: invalid subscription".into())
            },
            Event::Unsubscribed {
                sub: b,
                error: Some(CLOSE_TIMEOUT.into())
            },
        ]
    );
}

#[test]
fn close_subscription_needs_server_support() {
    let mut resp = World::connect_response();
    resp.sub_close_requests.clear();
    let mut w = World::connected_with(resp);
    let (sub, _) = w.subscribed(SubscribeOptions::default());
    let err = w.client.close_subscription(w.now, sub).unwrap_err();
    assert_eq!(err.to_string(), "stan: not supported by server");
    // Still usable.
    w.client.unsubscribe(w.now, sub).unwrap();
}

#[test]
fn heartbeat_is_answered() {
    let mut w = World::connected();
    let (req, _) = {
        let mut w2 = World::new();
        w2.handshake()
    };
    // Same seed, same heartbeat inbox.
    w.deliver(&req.heartbeat_inbox, Some("_INBOX.hb.reply"), b"");
    assert_eq!(
        w.sent(),
        vec![Wire::Pub {
            subject: "_INBOX.hb.reply".into(),
            reply: None,
            payload: vec![]
        }]
    );
    assert!(w.events().is_empty());
}

#[test]
fn server_ping_gets_pong() {
    let mut w = World::connected();
    w.feed(b"PING\r\n");
    assert_eq!(w.sent(), vec![Wire::Pong]);
}

#[test]
fn pings_and_ping_failure() {
    let mut w = World::connected();
    w.advance(Duration::from_secs(5));
    let (subject, reply, payload) = w.request();
    assert_eq!(subject, "_STAN.discover.test-cluster.pings");
    let (creq, _) = World::new().handshake();
    assert_eq!(
        pb::Ping::decode(&payload[..]).unwrap().conn_id,
        creq.conn_id
    );
    // An empty answer resets the count.
    w.deliver(&reply, None, b"");
    for _ in 0..3 {
        w.advance(Duration::from_secs(5));
        w.request();
        // A 503 is no answer.
        w.no_responders(&reply);
    }
    assert!(w.events().is_empty());
    w.advance(Duration::from_secs(5));
    assert_eq!(w.events(), vec![Event::ConnectionLost(PING_FAILURE.into())]);
    assert!(w.client.is_ended());
}

#[test]
fn ping_error_loses_connection_and_fails_publishes() {
    let mut w = World::connected();
    let guid = w.client.publish(w.now, "foo", b"x").unwrap();
    w.advance(Duration::from_secs(5));
    let (_, reply, _) = w.request();
    let resp = pb::PingResponse {
        error: "client has been replaced or is no longer registered".into(),
    };
    w.deliver(&reply, None, &resp.encode_to_vec());
    let text = "client has been replaced or is no longer registered".to_string();
    assert_eq!(
        w.events(),
        vec![
            Event::PubAck {
                guid,
                error: Some(text.clone())
            },
            Event::ConnectionLost(text)
        ]
    );
}

#[test]
fn negative_ping_interval_is_milliseconds() {
    let mut resp = World::connect_response();
    resp.ping_interval = -250;
    let w = World::connected_with(resp);
    assert_eq!(
        w.client.poll_timeout(),
        Some(w.now.mono + Duration::from_millis(250))
    );
}

#[test]
fn close_flow() {
    let mut w = World::connected();
    let guid = w.client.publish(w.now, "foo", b"x").unwrap();
    w.sent();
    w.client.close(w.now).unwrap();
    let (subject, reply, payload) = w.request();
    assert_eq!(subject, "_STAN.close.test-cluster");
    assert_eq!(
        pb::CloseRequest::decode(&payload[..]).unwrap().client_id,
        "me"
    );
    assert_eq!(
        w.events(),
        vec![Event::PubAck {
            guid,
            error: Some(CONNECTION_CLOSED.into())
        }]
    );
    assert_eq!(
        w.client.publish(w.now, "foo", b"x"),
        Err(ClientError::ConnectionClosed)
    );
    assert_eq!(w.client.close(w.now), Err(ClientError::ConnectionClosed));
    w.deliver(&reply, None, b"");
    assert_eq!(w.events(), vec![Event::Closed { error: None }]);
    assert!(w.client.is_ended());
}

#[test]
fn close_error_and_timeout() {
    let mut w = World::connected();
    w.client.close(w.now).unwrap();
    let (_, reply, _) = w.request();
    let resp = pb::CloseResponse {
        error: "stan: unknown clientID".into(),
    };
    w.deliver(&reply, None, &resp.encode_to_vec());
    assert_eq!(
        w.events(),
        vec![Event::Closed {
            error: Some("stan: unknown clientID".into())
        }]
    );

    let mut w = World::connected();
    w.client.close(w.now).unwrap();
    w.advance(Duration::from_secs(2));
    assert_eq!(
        w.events(),
        vec![Event::Closed {
            error: Some(CLOSE_TIMEOUT.into())
        }]
    );
}

#[test]
fn disconnect_ends_pending_operations() {
    let mut w = World::connected();
    let sub = w
        .client
        .subscribe(w.now, "foo", SubscribeOptions::default())
        .unwrap();
    w.client.handle_disconnect();
    assert_eq!(
        w.events(),
        vec![
            Event::SubscribeFailed {
                sub,
                error: NATS_CONNECTION_CLOSED.into()
            },
            Event::ConnectionLost(NATS_CONNECTION_CLOSED.into())
        ]
    );
}

#[test]
fn any_split_of_the_input_gives_the_same_events() {
    let mut whole = World::connected();
    let (_, inbox) = whole.subscribed(SubscribeOptions::default());
    let sid = whole.sids[&inbox].clone();
    let mut stream = Vec::new();
    for seq in 1..=3 {
        proto::write_msg(
            &mut stream,
            inbox.as_bytes(),
            sid.as_bytes(),
            None,
            None,
            &msg(seq, b"abc"),
        );
    }
    stream.extend_from_slice(b"PING\r\n");
    whole.sent();
    let mut split = World::connected();
    split.subscribed(SubscribeOptions::default());
    split.sent();
    whole.feed(&stream);
    for b in &stream {
        split.feed(std::slice::from_ref(b));
    }
    let events = whole.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events, split.events());
    assert_eq!(whole.sent(), split.sent());
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let mut w = World::connected();
        w.client.publish(w.now, "foo", b"x").unwrap();
        w.client
            .subscribe(w.now, "foo", SubscribeOptions::default())
            .unwrap();
        w.sent()
    };
    assert_eq!(run(), run());
}

//! Transcripts of the streaming server behind its connections to an external NATS
//! server (`-ns`): the handshake with credentials, requests and their answers on the
//! connections of their roles, a lost connection (nothing buffered) and the
//! reconnection that restores its subscriptions, and a server sending garbage.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::World;
use prost::Message;
use stan_core::nats::link::{Credentials, LinkConfig, Signer};
use stan_core::nats::ConnId;
use stan_core::node::{Node, NodeConfig, EXTERNAL_ROLES};
use stan_core::store::MemStore;
use stan_core::streaming::pb::{ConnectRequest, ConnectResponse, PubAck, PubMsg};
use stan_core::streaming::Config;

const GENERAL: usize = 0;
const SEND: usize = 1;
const HB: usize = 2;

fn external_world(credentials: Credentials) -> World {
    let cfg = NodeConfig {
        streaming: Some(Config {
            rng_seed: 7,
            hb_interval: Duration::from_secs(1),
            hb_timeout: Duration::from_secs(1),
            ..Config::default()
        }),
        ..NodeConfig::default()
    };
    let link = LinkConfig {
        credentials,
        ..LinkConfig::default()
    };
    let node = Node::with_external(cfg, Box::new(MemStore::new()), link).unwrap();
    World::with_node(node)
}

/// Sockets for every connection, each through its handshake, then the start as the
/// runtime makes it; what each connection sent since its handshake.
fn connect_and_start(w: &mut World) -> (Vec<ConnId>, Vec<String>) {
    let mut conns = Vec::new();
    for (role, name) in EXTERNAL_ROLES.iter().enumerate() {
        w.note(&format!("connection {name}"));
        let c = w
            .node
            .attach_external(role, "nats://127.0.0.1:4222", None)
            .unwrap();
        w.send(
            c,
            b"INFO {\"server_id\":\"NS\",\"max_payload\":1048576,\"nonce\":\"n0nce\"}\r\n",
        );
        assert!(!w.node.external_up(role));
        w.send(c, b"PONG\r\n");
        assert!(w.node.external_up(role));
        w.take(c);
        conns.push(c);
    }
    w.note("the runtime starts the node once every connection is up");
    w.node.start(w.now).unwrap();
    w.drain();
    let sent = conns.iter().map(|&c| w.take(c)).collect();
    (conns, sent)
}

/// [`connect_and_start`] through to "ready": nobody else serves the cluster ID and
/// every ping is answered.
fn connect_all(w: &mut World) -> Vec<ConnId> {
    let (conns, mut sent) = connect_and_start(w);
    let reply = check_reply(&sent[HB]);
    w.note("nobody else serves this cluster ID: the NATS server says no responders");
    w.send(
        conns[HB],
        format!("HMSG {reply} 8 16 16\r\nNATS/1.0 503\r\n\r\n\r\n").as_bytes(),
    );
    w.note("every ping of the start is answered: the server is ready");
    for (i, &c) in conns.iter().enumerate() {
        sent[i].push_str(&w.take(c));
        for _ in 0..sent[i].matches("PING\r\n").count() {
            w.send(c, b"PONG\r\n");
        }
    }
    assert!(w.transcript.contains("Streaming Server is ready"));
    conns
}

fn msg(subject: &str, sid: u64, reply: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("MSG {subject} {sid} {reply} {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// The payload of the one `PUB` in `sent`.
fn pub_payload(sent: &str) -> Vec<u8> {
    let (head, rest) = sent.split_once("\r\n").unwrap();
    let len: usize = head.rsplit(' ').next().unwrap().parse().unwrap();
    rest.as_bytes()[..len].to_vec()
}

#[test]
fn handshake_requests_reconnection() {
    let signer: Signer =
        Arc::new(|nonce: &[u8]| format!("sig-of-{}", String::from_utf8_lossy(nonce)));
    let mut w = external_world(Credentials {
        user: Some("stan".into()),
        pass: Some("s3cret".into()),
        nkey: Some("UEXAMPLE".into()),
        signer: Some(signer),
        ..Credentials::default()
    });
    assert!(w.node.external_down(GENERAL));
    w.note("the runtime dials each connection; the server's INFO opens its session");
    let conns = connect_all(&mut w);
    let (general, send, hb) = (conns[GENERAL], conns[SEND], conns[HB]);

    w.note("a client connects and publishes through the external server");
    let req = ConnectRequest {
        client_id: "me".into(),
        heartbeat_inbox: "_INBOX.hb".into(),
        protocol: 1,
        conn_id: b"cid".to_vec(),
        ping_interval: 5,
        ping_max_out: 3,
    };
    w.send(
        general,
        &msg(
            "_STAN.discover.test-cluster",
            1,
            "_INBOX.r1",
            &req.encode_to_vec(),
        ),
    );
    let resp = ConnectResponse::decode(&pub_payload(&w.take(send))[..]).unwrap();
    assert_eq!(resp.error, "");
    let publish = PubMsg {
        client_id: "me".into(),
        guid: "g1".into(),
        subject: "foo".into(),
        data: b"hello".to_vec(),
        conn_id: b"cid".to_vec(),
        ..PubMsg::default()
    };
    w.send(
        general,
        &msg(
            &format!("{}.foo", resp.pub_prefix),
            2,
            "_STAN.acks.x",
            &publish.encode_to_vec(),
        ),
    );
    let ack = PubAck::decode(&pub_payload(&w.take(send))[..]).unwrap();
    assert_eq!((ack.guid.as_str(), ack.error.as_str()), ("g1", ""));

    w.note("the server pings; the link answers");
    w.send(general, b"PING\r\n");
    assert_eq!(w.take(general), "PONG\r\n");

    w.note("the hb connection is lost: the heartbeat due meanwhile is dropped, not buffered");
    w.hang_up(hb);
    assert!(w.node.external_down(HB));
    w.advance(Duration::from_millis(1500));
    assert_eq!(w.take(hb), "");

    w.note("a new socket: CONNECT again with the URL's token, its subscriptions restored");
    let c2 = w
        .node
        .attach_external(
            HB,
            "nats://[REDACTED]@127.0.0.1:4222",
            Some(("t0k".into(), None)),
        )
        .unwrap();
    w.send(c2, b"INFO {\"server_id\":\"NS\",\"nonce\":\"again\"}\r\n");
    let sent = w.take(c2);
    assert!(sent.contains("\"name\":\"_NSS-test-cluster-hb\""), "{sent}");
    assert!(sent.contains("\"auth_token\":\"t0k\""), "{sent}");
    assert!(sent.contains("\r\nSUB _INBOX."), "{sent}");
    assert!(!sent.contains("_STAN.discover"), "{sent}");
    assert!(sent.ends_with("PING\r\n"), "{sent}");
    w.send(c2, b"PONG\r\n");
    w.note("the next heartbeat goes out on the new socket");
    w.advance(Duration::from_secs(2));
    let sent = w.take(c2);
    assert!(sent.starts_with("PUB _INBOX.hb _INBOX."), "{sent}");

    w.note("garbage from the server closes the socket");
    w.send(c2, b"BOGUS\r\n");
    assert_eq!(w.closed, vec![c2]);
    assert_eq!(
        w.node.external_error(HB),
        Some("nats: unknown protocol operation")
    );
    assert!(w.node.external_down(HB));
    assert!(w.node.external_up(GENERAL));
    snapshot!("external_handshake_requests_reconnection", w.transcript);
}

#[test]
fn refused_credentials() {
    let mut w = external_world(Credentials {
        token: Some("wrong".into()),
        ..Credentials::default()
    });
    let c = w
        .node
        .attach_external(GENERAL, "nats://127.0.0.1:4222", None)
        .unwrap();
    w.send(c, b"INFO {\"server_id\":\"NS\",\"auth_required\":true}\r\n");
    w.send(c, b"-ERR 'Authorization Violation'\r\n");
    assert!(!w.node.external_up(GENERAL));
    assert_eq!(w.closed, vec![c]);
    assert_eq!(
        w.node.external_error(GENERAL),
        Some("nats: authorization violation")
    );
    w.note("permission errors leave the connection up");
    let c2 = w
        .node
        .attach_external(GENERAL, "nats://127.0.0.1:4222", None)
        .unwrap();
    w.send(c2, b"INFO {}\r\nPONG\r\n");
    w.send(c2, b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n");
    assert!(w.node.external_up(GENERAL));
    snapshot!("external_refused_credentials", w.transcript);
}

#[test]
fn keepalive_and_stale_connections() {
    let mut w = external_world(Credentials::default());
    let conns = connect_all(&mut w);
    w.note("two minutes on, every connection pings the server");
    w.advance(Duration::from_secs(121));
    for &c in &conns {
        assert_eq!(w.take(c), "PING\r\n");
    }
    w.note("only general hears back; the others are stale after two unanswered pings");
    w.send(conns[GENERAL], b"PONG\r\n");
    w.advance(Duration::from_secs(120));
    w.send(conns[GENERAL], b"PONG\r\n");
    w.advance(Duration::from_secs(120));
    w.closed.sort();
    assert_eq!(w.closed, vec![conns[SEND], conns[HB]]);
    assert!(w.node.external_up(GENERAL));
    assert!(w.node.external_down(SEND) && w.node.external_down(HB));
    assert_eq!(w.node.external_error(SEND), Some("nats: stale connection"));
    snapshot!("external_keepalive_and_stale_connections", w.transcript);
}

/// A message without a reply subject to the server's reply inbox (sid 8).
fn answer_to(inbox: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("MSG {inbox} 8 {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// The reply inbox of the competitor check in what the hb connection sent.
fn check_reply(hb: &str) -> String {
    hb.lines()
        .find_map(|l| l.strip_prefix("PUB _STAN.discover.test-cluster "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no competitor check in {hb:?}"))
        .to_string()
}

/// Another server that answers on this cluster ID's discovery subject stops the
/// start, after it is asked to forget the probe's client (PROTOCOL §3.12); a reply
/// that does not decode stops it too; silence for 250 ms lets it go on.
#[test]
fn another_server_with_the_cluster_id_stops_the_start() {
    let mut w = external_world(Credentials::default());
    let (conns, sent) = connect_and_start(&mut w);
    let reply = check_reply(&sent[HB]);
    w.note("a server already serving test-cluster answers the check");
    let answer = ConnectResponse {
        close_requests: "_STAN.close.other".into(),
        ..ConnectResponse::default()
    };
    w.send(conns[HB], &answer_to(&reply, &answer.encode_to_vec()));
    assert_eq!(
        w.node.failure(),
        Some(
            "Failed to start: discovered another streaming server with cluster ID \"test-cluster\""
        )
    );
    let sent = w.take(conns[HB]);
    assert!(sent.contains("PUB _STAN.close.other "), "{sent:?}");
    assert!(!w.transcript.contains("Streaming Server is ready"));
    assert!(w
        .transcript
        .contains("[FTL] Failed to start: discovered another"));
    snapshot!("external_competitor_detected", w.transcript);

    let mut w = external_world(Credentials::default());
    let (conns, sent) = connect_and_start(&mut w);
    let reply = check_reply(&sent[HB]);
    w.send(conns[HB], &answer_to(&reply, b"\xff\xff\xff"));
    let failure = w.node.failure().unwrap_or_default().to_string();
    assert!(
        failure.starts_with(
            "Failed to start: unmarshall error while detecting another server instance: "
        ),
        "{failure}"
    );

    let mut w = external_world(Credentials::default());
    let (conns, _) = connect_and_start(&mut w);
    w.advance(Duration::from_millis(249));
    assert!(!w
        .take(conns[GENERAL])
        .contains("SUB _STAN.sub.test-cluster"));
    w.advance(Duration::from_millis(1));
    assert!(w
        .take(conns[GENERAL])
        .contains("SUB _STAN.sub.test-cluster 3"));
    assert_eq!(w.node.failure(), None);
}

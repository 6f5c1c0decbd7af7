//! Channel partitioning on virtual time (BEHAVIOUR §12, PROTOCOL §7.2): the startup
//! announcement and its replies, answers to other servers' announcements, requests
//! for channels another server owns, and clients whose connect comes late.

mod common;

use std::time::Duration;

use common::stan::{stan_config, sub_req, Carries, ClientSub, StanWorld};
use prost::Message;
use stan_core::store::MemStore;
use stan_core::streaming::limits::ChannelLimits;
use stan_core::streaming::partition::encode_channel_lists;
use stan_core::streaming::pb::*;

const PART: &str = "_STAN.part.test-cluster";

/// A server owning `orders.>` and `audit`, not started yet.
fn world(channels: &[&str]) -> StanWorld {
    let mut cfg = stan_config();
    cfg.partitioning = true;
    cfg.verbosity.debug = true;
    for c in channels {
        cfg.limits
            .per_channel
            .insert(c.to_string(), ChannelLimits::default());
    }
    StanWorld::unstarted(cfg, Box::new(MemStore::new()))
}

fn reply(server_id: &str, data: &str) -> Vec<u8> {
    CtrlMsg {
        msg_type: CtrlMsgType::Partitioning as i32,
        server_id: server_id.into(),
        data: data.as_bytes().to_vec(),
        ref_id: String::new(),
    }
    .encode_to_vec()
}

fn ready(w: &StanWorld) -> bool {
    w.transcript.contains("Streaming Server is ready")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Starts `w`, a peer answering nothing, and waits out the announcement.
fn started(mut w: StanWorld) -> StanWorld {
    w.node.start(w.now).expect("starts");
    w.drain();
    w.advance(ms(1000));
    assert!(ready(&w));
    w
}

#[test]
fn announcement_then_only_configured_channels_are_served() {
    let mut w = world(&["orders.>", "audit"]);
    let peer = w.nats_peer(&[PART], Carries::ChannelList);
    w.note("the server announces its channels, then waits for a second without a reply");
    w.node.start(w.now).expect("starts");
    w.drain();
    let announced = w.take_raw(peer);
    assert_eq!(announced.len(), 1);
    let inbox = announced[0].reply.clone().expect("a reply inbox");
    w.advance(ms(600));
    w.note("a peer without any of these channels answers with empty data: the wait starts over");
    w.raw_publish(peer, &inbox, None, &reply("PEER", ""), "CtrlMsg data=\"\"");
    w.advance(ms(900));
    assert!(!ready(&w));
    w.advance(ms(200));
    assert!(ready(&w));
    assert!(w.node.streaming().unwrap().failure().is_none());

    w.note("a channel under orders.> is served");
    let c = w.connect("app");
    assert!(w.clients[c].resp.error.is_empty());
    let sub = w.subscribe(c, sub_req("orders.eu"));
    assert!(sub.error.is_empty() && !sub.ack_inbox.is_empty());
    let g = w.publish_msg(c, "orders.eu", "one");
    assert_eq!(w.pub_acks(c), vec![(g, String::new())]);
    assert_eq!(w.msgs(c, &sub).len(), 1);

    w.note("nothing subscribes to the publish subject of another channel: no PubAck");
    w.publish_msg(c, "other", "lost");
    let got = w.take_raw(w.clients[c].conn);
    assert!(got.iter().all(|m| PubAck::decode(&*m.payload).is_err()));

    w.note("requests for a channel this server does not own get no reply at all");
    let other = w.subscribe(c, sub_req("other"));
    assert!(other.ack_inbox.is_empty() && other.error.is_empty());
    let foreign = ClientSub {
        inbox: "_INBOX.x".into(),
        ack_inbox: "_INBOX.acks.x".into(),
        channel: "other".into(),
        error: String::new(),
    };
    assert_eq!(w.unsubscribe(c, &foreign, false), "<no reply>");
    assert_eq!(w.unsubscribe(c, &foreign, true), "<no reply>");

    w.note("owned channels still answer, and so do pings and closes");
    assert_eq!(w.unsubscribe(c, &sub, true), "");
    assert_eq!(w.ping(c), Some(String::new()));
    assert_eq!(w.close(c), "");
    crate::snapshot!("partition_announce_and_serve", w.transcript);
}

#[test]
fn a_peer_owning_one_of_the_channels_stops_the_start() {
    let mut w = world(&["orders.>", "audit"]);
    let peer = w.nats_peer(&[PART], Carries::ChannelList);
    w.node.start(w.now).expect("starts");
    w.drain();
    let inbox = w.take_raw(peer)[0].reply.clone().unwrap();
    w.advance(ms(300));
    w.note("a peer owning orders.eu objects");
    w.raw_publish(
        peer,
        &inbox,
        None,
        &reply("PEER", "orders.eu"),
        "CtrlMsg server_id=PEER data=\"orders.eu\"",
    );
    let failure = w.node.failure().map(str::to_string);
    assert_eq!(
        failure.as_deref(),
        Some("Failed to start: channel \"orders.eu\" causes conflict with channels on server \"PEER\"")
    );
    assert_eq!(w.node.streaming().unwrap().state(), "FAILED");
    w.advance(ms(3000));
    assert!(!ready(&w));
    crate::snapshot!("partition_conflict_at_startup", w.transcript);
}

#[test]
fn peers_announcements_are_answered_with_the_first_shared_channel() {
    let mut w = started(world(&["orders.>", "audit"]));
    let own_id = w.node.streaming().unwrap().server_id().to_string();
    let peer = w.nats_peer(&["_INBOX.peer"], Carries::CtrlMsg);
    let ask = |w: &mut StanWorld, server: &str, names: &[&str]| {
        let list: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let payload = &encode_channel_lists(server, &list, 1 << 20)[0];
        w.raw_publish(
            peer,
            PART,
            Some("_INBOX.peer"),
            payload,
            &format!("announcement of {server}: {names:?}"),
        );
        w.take_raw(peer)
            .into_iter()
            .map(|m| String::from_utf8(CtrlMsg::decode(&*m.payload).unwrap().data).unwrap())
            .collect::<Vec<_>>()
    };
    w.note("their first name that one of ours covers");
    assert_eq!(
        ask(&mut w, "B", &["billing", "orders.us", "audit"]),
        ["orders.us"]
    );
    w.note("else our first name that one of theirs covers");
    assert_eq!(ask(&mut w, "B", &["billing", "*"]), ["audit"]);
    w.note("else empty data: no conflict");
    assert_eq!(ask(&mut w, "B", &["billing", "orders"]), [""]);
    w.note("this server's own announcement is not answered");
    assert!(ask(&mut w, &own_id, &["orders.us"]).is_empty());
    w.note("nor are empty or undecodable requests");
    w.raw_publish(peer, PART, Some("_INBOX.peer"), b"", "empty");
    w.raw_publish(peer, PART, Some("_INBOX.peer"), b"\xff\xff", "garbage");
    assert!(w.take_raw(peer).is_empty());
    crate::snapshot!("partition_answer_peers", w.transcript);
}

#[test]
fn requests_of_a_client_not_registered_yet_wait_a_second_for_it() {
    let mut w = started(world(&["orders.>"]));
    let helper = w.connect("helper");
    let acks = w.clients[helper].acks.clone();
    let publish_as = |w: &mut StanWorld, client: &str, conn_id: &str, guid: &str| {
        let m = PubMsg {
            client_id: client.into(),
            guid: guid.into(),
            subject: "orders.eu".into(),
            data: b"x".to_vec(),
            conn_id: conn_id.as_bytes().to_vec(),
            ..PubMsg::default()
        };
        let conn = w.clients[helper].conn;
        w.raw_publish(
            conn,
            "_STAN.pub.test-cluster.orders.eu",
            Some(&acks),
            &m.encode_to_vec(),
            &format!("PubMsg client={client} guid={guid}"),
        );
    };
    w.note("a publish seen before its client's connect waits for it");
    publish_as(&mut w, "late", "conn-late-1", "early");
    w.advance(ms(400));
    assert!(w.pub_acks(helper).is_empty());
    let late = w.connect("late");
    assert_eq!(w.clients[late].conn_id, b"conn-late-1");
    assert_eq!(w.pub_acks(helper), [("early".to_string(), String::new())]);

    w.note(
        "a client that never connects: refused after a second, and its later messages wait behind",
    );
    publish_as(&mut w, "ghost", "conn-ghost", "g1");
    w.advance(ms(500));
    publish_as(&mut w, "helper", "conn-helper-0", "h1");
    assert!(w.pub_acks(helper).is_empty());
    w.advance(ms(500));
    assert_eq!(
        w.pub_acks(helper),
        [
            (
                "g1".to_string(),
                "stan: invalid publish request".to_string()
            ),
            ("h1".to_string(), String::new())
        ]
    );
    w.note("the refused pair is remembered: refused at once next time");
    publish_as(&mut w, "ghost", "conn-ghost", "g2");
    assert_eq!(
        w.pub_acks(helper),
        [(
            "g2".to_string(),
            "stan: invalid publish request".to_string()
        )]
    );

    w.note("a subscription request waits the same way");
    let req = SubscriptionRequest {
        client_id: "nobody".into(),
        inbox: "_INBOX.nobody".into(),
        ..sub_req("orders.eu")
    };
    assert!(w
        .request(
            helper,
            "_STAN.sub.test-cluster",
            &req,
            Carries::SubscriptionResponse
        )
        .is_none());
    w.advance(ms(999));
    assert!(!w.transcript.contains("stan: invalid subscription request"));
    w.advance(ms(1));
    assert!(w.transcript.contains("stan: invalid subscription request"));
    crate::snapshot!("partition_late_client", w.transcript);
}

#[test]
fn partitioning_needs_a_configured_channel() {
    let mut w = world(&[]);
    assert_eq!(
        w.node.start(w.now).unwrap_err(),
        "stan: no configured channel"
    );
}

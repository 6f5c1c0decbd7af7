//! Route connections of the embedded NATS server on virtual time: the handshake,
//! interest propagation, routed messages, queue groups across servers, duplicate
//! routes, cluster names and dial timing.

mod common;

use std::time::Duration;

use common::World;
use stan_core::nats::{self, ClusterConfig, ConnId, RouteUrl};
use stan_core::node::NodeConfig;

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"headers\":true,\"lang\":\"rust\"}\r\n";

fn url(port: u16) -> RouteUrl {
    RouteUrl::parse(&format!("nats-route://127.0.0.1:{port}")).unwrap()
}

fn clustered(name: Option<&str>, routes: Vec<RouteUrl>, debug: bool) -> World {
    clustered_with(name, routes, debug, 64 * 1024 * 1024)
}

fn clustered_with(
    name: Option<&str>,
    routes: Vec<RouteUrl>,
    debug: bool,
    max_pending: usize,
) -> World {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            max_pending,
            rng_seed: 1,
            server_id: Some("NSELF".into()),
            server_name: Some("self".into()),
            port: 4222,
            verbosity: stan_core::log::Verbosity {
                debug,
                trace: false,
            },
            cluster: Some(ClusterConfig {
                name: name.map(Into::into),
                host: "127.0.0.1".into(),
                port: 6222,
                routes,
                ..ClusterConfig::default()
            }),
            ..nats::Config::default()
        },
        streaming: None,
    });
    let now = w.now;
    w.node.start_routes(now, 6222);
    w.drain();
    // The first dials are due at once.
    w.advance(Duration::ZERO);
    w
}

fn info(id: &str, cluster: &str) -> Vec<u8> {
    format!(
        "INFO {{\"server_id\":\"{id}\",\"server_name\":\"{id}-name\",\"host\":\"127.0.0.1\",\
         \"port\":7000,\"headers\":true,\"cluster\":\"{cluster}\"}}\r\n"
    )
    .into_bytes()
}

/// A route accepted from server `id` of cluster `c1`, registered.
fn peer(w: &mut World, id: &str) -> ConnId {
    let r = w.route(None);
    w.send(
        r,
        format!("CONNECT {{\"name\":\"{id}\",\"cluster\":\"c1\",\"headers\":true}}\r\n").as_bytes(),
    );
    w.send(r, &info(id, "c1"));
    w.take(r);
    r
}

fn client(w: &mut World) -> ConnId {
    let c = w.accept();
    w.send(c, CONNECT);
    w.take(c);
    c
}

#[test]
fn handshake_interest_and_messages() {
    let mut w = clustered(Some("c1"), vec![url(6223)], false);
    assert_eq!(w.dials, vec![url(6223)]);
    let c = client(&mut w);
    w.send(c, b"SUB foo 1\r\nSUB work q 2\r\nSUB work q 3\r\n");
    let r = w.route(Some(url(6223)));
    let hello = w.take(r);
    assert!(hello.starts_with("CONNECT {"), "{hello}");
    assert!(hello.contains("\"name\":\"NSELF\",\"cluster\":\"c1\""));
    assert!(hello.contains("\r\nINFO {\"server_id\":\"NSELF\""));
    w.send(r, &info("NPEER", "c1"));
    let subs = w.take(r);
    assert_eq!(subs, "RS+ $G foo\r\nRS+ $G work q 2\r\n");

    // Interest comes and goes with the first and last local subscription.
    w.send(c, b"SUB foo 4\r\nUNSUB 4\r\nUNSUB 1\r\nUNSUB 3\r\n");
    assert_eq!(w.take(r), "RS- $G foo\r\nRS+ $G work q 1\r\n");

    // The peer's interest draws messages from local publishers.
    w.send(r, b"RS+ $G bar\r\nRS+ $G hdr\r\n");
    w.send(
        c,
        b"PUB bar reply.1 2\r\nhi\r\nHPUB hdr 12 14\r\nNATS/1.0\r\n\r\nok\r\n",
    );
    assert_eq!(
        w.take(r),
        "RMSG $G bar reply.1 2\r\nhi\r\nHMSG $G hdr 12 14\r\nNATS/1.0\r\n\r\nok\r\n"
    );
    w.send(r, b"RS- $G bar\r\n");
    w.send(c, b"PUB bar 1\r\nx\r\n");
    assert_eq!(w.take(r), "");

    // Routed messages reach local subscribers.
    w.send(c, b"SUB foo 5\r\n");
    w.take(r);
    w.send(r, b"RMSG $G foo _INBOX.x 5\r\nhello\r\n");
    assert_eq!(w.take(c), "MSG foo 5 _INBOX.x 5\r\nhello\r\n");

    w.send(r, b"PING\r\n");
    assert_eq!(w.take(r), "PONG\r\n");
    snapshot!("route_handshake", w.transcript);
}

#[test]
fn routed_messages_go_one_hop() {
    let mut w = clustered(Some("c1"), vec![], false);
    let a = peer(&mut w, "NA");
    let b = peer(&mut w, "NB");
    // The first route hears of the second server, to route to it too.
    let gossip = w.take(a);
    assert!(gossip.starts_with("INFO {\"server_id\":\"NB\""), "{gossip}");
    assert!(
        gossip.contains("\"ip\":\"nats-route://127.0.0.1:7000/\""),
        "{gossip}"
    );
    let c = client(&mut w);
    w.send(c, b"SUB x 1\r\n");
    assert_eq!(w.take(a), "RS+ $G x\r\n");
    assert_eq!(w.take(b), "RS+ $G x\r\n");
    w.send(a, b"RS+ $G x\r\n");
    w.send(b, b"RS+ $G x\r\nRS+ $G x.>\r\nRS+ $G *\r\n");
    w.send(a, b"RMSG $G x 3\r\none\r\n");
    assert_eq!(w.take(c), "MSG x 1 3\r\none\r\n");
    assert_eq!(w.take(b), "", "not forwarded to another route");
    // A local publish reaches each interested route once.
    w.send(c, b"PUB x 3\r\ntwo\r\n");
    assert_eq!(w.take(a), "RMSG $G x 3\r\ntwo\r\n");
    assert_eq!(w.take(b), "RMSG $G x 3\r\ntwo\r\n");
}

#[test]
fn queue_groups_span_routes_once() {
    let mut w = clustered(Some("c1"), vec![], false);
    let r = peer(&mut w, "NA");
    let c = client(&mut w);
    let publisher = client(&mut w);
    w.send(r, b"RS+ $G work q 1\r\n");
    w.send(c, b"SUB work q 1\r\nSUB plain 2\r\n");
    w.take(r);
    // A local member takes the messages of local publishers.
    for _ in 0..5 {
        w.send(publisher, b"PUB work 1\r\nx\r\n");
    }
    assert_eq!(w.take(c).matches("MSG work 1 1").count(), 5);
    assert_eq!(w.take(r), "");
    // Without one they go to the route, naming the group.
    w.send(c, b"UNSUB 1\r\n");
    assert_eq!(w.take(r), "RS- $G work q\r\n");
    w.send(publisher, b"PUB work reply 1\r\ny\r\nPUB work 1\r\nz\r\n");
    assert_eq!(
        w.take(r),
        "RMSG $G work + reply q 1\r\ny\r\nRMSG $G work | q 1\r\nz\r\n"
    );
    // From a route: a local member of a named group gets it; without the name it
    // was meant for plain subscribers only.
    w.send(c, b"SUB work q 3\r\nSUB work 4\r\n");
    w.send(r, b"RMSG $G work | q 1\r\na\r\nRMSG $G work 1\r\nb\r\n");
    let got = w.take(c);
    assert_eq!(got.matches("MSG work 3 1\r\na").count(), 1, "{got}");
    assert_eq!(got.matches("MSG work 3 ").count(), 1, "{got}");
    assert_eq!(got.matches("MSG work 4 ").count(), 2, "{got}");
}

#[test]
fn duplicate_routes_keep_one_connection_and_its_url() {
    let mut w = clustered(Some("c1"), vec![url(6223)], true);
    let accepted = peer(&mut w, "NPEER");
    let dialed = w.route(Some(url(6223)));
    w.send(dialed, &info("NPEER", "c1"));
    assert!(w.closed.contains(&dialed));
    assert!(!w.closed.contains(&accepted));
    assert!(w.transcript.contains(&format!(
        "rid:{} - Router connection closed: Duplicate Route",
        dialed.0
    )));
    assert!(w
        .transcript
        .contains("Not attempting reconnect for solicited route, already connected to \"NPEER\""));
    let dials = w.dials.len();
    w.advance(Duration::from_secs(5));
    assert_eq!(w.dials.len(), dials, "no redial while routed");
    // The connection kept took over the dialed URL: it is redialed once it closes.
    w.hang_up(accepted);
    w.advance(Duration::from_millis(999));
    assert_eq!(w.dials.len(), dials);
    // A second, and up to 100ms more at random.
    w.advance(Duration::from_millis(101));
    assert_eq!(w.dials.len(), dials + 1);
    assert_eq!(w.node.nats().num_routes(), 0);
}

#[test]
fn failed_dials_are_retried_every_second() {
    let mut w = clustered(Some("c1"), vec![url(6223)], false);
    assert_eq!(w.dials.len(), 1);
    let now = w.now;
    w.node.route_dial_failed(
        now,
        &url(6223),
        "dial tcp 127.0.0.1:6223: connect: connection refused",
    );
    w.drain();
    assert!(w.transcript.contains(
        "[ERR] Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:6223: connect: connection refused"
    ));
    w.advance(Duration::from_millis(999));
    assert_eq!(w.dials.len(), 1);
    w.advance(Duration::from_millis(1));
    assert_eq!(w.dials.len(), 2);
    // Later failures of a first connection are not errors.
    let now = w.now;
    w.node.route_dial_failed(now, &url(6223), "refused");
    w.drain();
    assert!(!w.transcript.contains("(attempt 2)"));
    w.advance(Duration::from_secs(1));
    assert_eq!(w.dials.len(), 3);
    snapshot!("route_dial_retries", w.transcript);
}

#[test]
fn cluster_names_must_match_unless_generated() {
    let mut w = clustered(Some("c1"), vec![], false);
    let r = w.route(None);
    w.send(r, b"CONNECT {\"name\":\"NX\",\"cluster\":\"other\"}\r\n");
    assert!(w.take(r).ends_with(
        "-ERR 'Rejecting connection, cluster name \"other\" does not match \"c1\"'\r\n"
    ));
    assert!(w.closed.contains(&r));
    assert!(w
        .transcript
        .contains("Router connection closed: Cluster Name Conflict"));

    // A generated name gives way to a configured one.
    let mut w = clustered(None, vec![], false);
    assert!(w
        .transcript
        .contains("[WRN] Cluster name was dynamically generated, consider setting one"));
    let r = w.route(None);
    w.send(r, b"CONNECT {\"name\":\"NX\",\"cluster\":\"c9\"}\r\n");
    w.send(r, &info("NX", "c9"));
    assert_eq!(w.node.nats().cluster_name(), "c9");
    assert_eq!(w.node.nats().num_routes(), 1);
    assert!(w.transcript.contains("Cluster name updated to c9"));
}

#[test]
fn bad_input_closes_only_the_route() {
    let mut w = clustered(Some("c1"), vec![], false);
    let c = client(&mut w);
    let r = peer(&mut w, "NA");
    w.send(r, b"RS+ $G ok\r\nBOGUS stuff\r\n");
    assert_eq!(w.take(r), "-ERR 'Unknown Protocol Operation'\r\n");
    assert!(w.closed.contains(&r));
    assert!(w.transcript.contains("Router parser ERROR"));
    assert_eq!(w.node.nats().num_routes(), 0);
    let r = peer(&mut w, "NB");
    w.send(r, b"RMSG $G x 99999999\r\n");
    assert!(w.closed.contains(&r));
    assert!(w
        .transcript
        .contains("maximum payload exceeded: 99999999 vs 1048576"));
    let r = peer(&mut w, "NC");
    w.send(r, b"RS+ $G\r\n");
    assert!(w.closed.contains(&r));
    assert!(w.transcript.contains("processRemoteSub Parse Error"));
    // Clients go on as before.
    w.send(c, b"PING\r\n");
    assert_eq!(w.take(c), "PONG\r\n");
    assert!(!w.closed.contains(&c));
}

#[test]
fn a_route_to_itself_is_dropped_for_good() {
    let mut w = clustered(Some("c1"), vec![url(6222)], true);
    let r = w.route(Some(url(6222)));
    w.send(r, &info("NSELF", "c1"));
    assert!(w.closed.contains(&r));
    assert!(w.transcript.contains("Detected route to self, ignoring"));
    w.advance(Duration::from_secs(10));
    assert_eq!(w.dials.len(), 1);
}

#[test]
fn monitoring_counts_routes_apart_from_clients() {
    let mut w = clustered(Some("c1"), vec![], false);
    let _c = client(&mut w);
    let r = peer(&mut w, "NA");
    w.send(r, b"RS+ $G a\r\nRS+ $G b q 2\r\n");
    let nats = w.node.nats();
    assert_eq!(nats.num_connections(), 1);
    assert_eq!(nats.num_routes(), 1);
    let routes = nats.routes_view(true);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].remote_id, "NA");
    assert_eq!(routes[0].remote_name, "NA-name");
    assert!(!routes[0].did_solicit);
    assert_eq!(routes[0].subscriptions, vec!["a", "b"]);
}

#[test]
fn a_route_far_behind_is_closed_as_a_slow_consumer() {
    let mut w = clustered_with(Some("c1"), vec![], false, 4096);
    let r = peer(&mut w, "NA");
    let c = client(&mut w);
    w.send(r, b"RS+ $G big\r\n");
    let payload = vec![b'x'; 1000];
    let mut msg = b"PUB big 1000\r\n".to_vec();
    msg.extend_from_slice(&payload);
    msg.extend_from_slice(b"\r\n");
    // The harness writes everything it is given between two inputs, so what
    // waits is what one input produced.
    for _ in 0..3 {
        w.send(c, &msg);
    }
    assert!(!w.closed.contains(&r), "under the limit");
    assert_eq!(w.node.nats().stats().slow_consumers, 0);
    let mut big = Vec::new();
    for _ in 0..5 {
        big.extend_from_slice(&msg);
    }
    w.send(c, &big);
    assert!(w.closed.contains(&r));
    assert!(w
        .transcript
        .contains("Slow Consumer Detected: MaxPending of 4096 Exceeded"));
    assert!(w
        .transcript
        .contains("Router connection closed: Slow Consumer (Pending Bytes)"));
    assert!(!w.closed.contains(&c));
}

#[test]
fn reload_adds_and_removes_routes_but_keeps_the_port() {
    let mut w = clustered(Some("c1"), vec![url(6223)], false);
    let r = w.route(Some(url(6223)));
    w.send(r, &info("NPEER", "c1"));
    let cfg = |routes: Vec<RouteUrl>, port: u16| nats::Config {
        rng_seed: 1,
        server_id: Some("NSELF".into()),
        server_name: Some("self".into()),
        port: 4222,
        cluster: Some(ClusterConfig {
            name: Some("c1".into()),
            host: "127.0.0.1".into(),
            port,
            routes,
            ..ClusterConfig::default()
        }),
        ..nats::Config::default()
    };
    let now = w.now;
    assert_eq!(
        w.node.reload_nats(now, cfg(vec![url(6223)], 6999)),
        Err("config reload not supported for cluster port: old=6222, new=6999".into())
    );
    assert!(!w.closed.contains(&r));
    let lines = w.node.reload_nats(now, cfg(vec![url(6224)], 6222)).unwrap();
    assert_eq!(lines, vec!["Reloaded: cluster routes".to_string()]);
    w.drain();
    assert!(w.closed.contains(&r));
    assert!(w
        .transcript
        .contains("Router connection closed: Route Removed"));
    assert!(w
        .transcript
        .contains("Removed route nats-route://127.0.0.1:6223"));
    w.advance(Duration::from_secs(5));
    assert_eq!(
        w.dials,
        vec![url(6223), url(6224)],
        "only the new route is dialed"
    );
}

#[test]
fn clients_learn_the_client_addresses_of_routed_servers() {
    let mut w = clustered(Some("c1"), vec![], false);
    let old = w.accept();
    w.send(old, b"CONNECT {\"verbose\":false,\"protocol\":1}\r\n");
    let first = w.take(old);
    assert!(!first.contains("connect_urls"), "{first}");
    let r = w.route(None);
    w.send(
        r,
        b"INFO {\"server_id\":\"NA\",\"server_name\":\"a\",\"port\":7000,\"cluster\":\"c1\",\
          \"connect_urls\":[\"10.0.0.2:4222\"]}\r\n",
    );
    let update = w.take(old);
    assert!(update.starts_with("INFO {"), "{update}");
    assert!(
        update.contains("\"connect_urls\":[\"10.0.0.2:4222\"]"),
        "{update}"
    );
    let new = w.accept();
    assert!(w.take(new).contains("\"connect_urls\":[\"10.0.0.2:4222\"]"));
    // A later INFO from the same server updates its addresses.
    w.send(
        r,
        b"INFO {\"server_id\":\"NA\",\"cluster\":\"c1\",\"connect_urls\":[\"10.0.0.3:4222\"]}\r\n",
    );
    assert!(w.take(old).contains("\"connect_urls\":[\"10.0.0.3:4222\"]"));
    w.hang_up(r);
    let update = w.take(old);
    assert!(
        update.starts_with("INFO {") && !update.contains("connect_urls"),
        "{update}"
    );
}

/// Bytes from a route, cut anywhere: garbage may close that route, never the
/// server or its clients.
#[test]
fn random_route_input_never_harms_clients() {
    let pieces: &[&[u8]] = &[
        b"RS+ $G a\r\n",
        b"RS+ $G a q 3\r\n",
        b"RS- $G a\r\n",
        b"RMSG $G a 2\r\nhi\r\n",
        b"RMSG $G a | q 1\r\nx\r\n",
        b"RMSG $G a + r q 1\r\nx\r\n",
        b"HMSG $G a 12 14\r\nNATS/1.0\r\n\r\nok\r\n",
        b"HMSG $G a 20 14\r\n",
        b"PING\r\n",
        b"PONG\r\n",
        b"RMSG $G\r\n",
        b"RS+\r\n",
        b"-ERR 'x'\r\n",
        b"INFO {\"server_id\":\"NZ\"}\r\n",
        b"\x00\xff",
        b"RMSG $G a 3\r\nabcd\r\n",
        b"rmsg $g a 1\r\n",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let mut w = clustered(Some("c1"), vec![], false);
        let c = client(&mut w);
        w.send(c, b"SUB a 1\r\nSUB a q 2\r\n");
        let r = peer(&mut w, "NA");
        let mut stream = Vec::new();
        for _ in 0..(next() % 8 + 1) {
            stream.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let mut at = 0;
        while at < stream.len() && !w.closed.contains(&r) {
            let n = ((next() % 16) as usize + 1).min(stream.len() - at);
            w.send(r, &stream[at..at + n]);
            at += n;
        }
        w.take(c);
        w.send(c, b"PING\r\n");
        assert!(w.take(c).ends_with("PONG\r\n"), "round {round}");
        assert!(!w.closed.contains(&c), "round {round}");
    }
}

#[test]
fn routes_do_not_count_against_max_connections() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            max_connections: 1,
            cluster: Some(ClusterConfig {
                name: Some("c1".into()),
                host: "127.0.0.1".into(),
                port: 6222,
                ..ClusterConfig::default()
            }),
            ..nats::Config::default()
        },
        streaming: None,
    });
    let now = w.now;
    w.node.start_routes(now, 6222);
    let _r = peer(&mut w, "NA");
    let c = w.accept();
    assert!(!w.take(c).contains("maximum connections exceeded"));
    let d = w.accept();
    assert!(w.take(d).contains("maximum connections exceeded"));
}

#[test]
fn a_silent_route_is_pinged_then_closed_as_stale() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            ping_interval: Duration::from_secs(10),
            ping_max: 2,
            cluster: Some(ClusterConfig {
                name: Some("c1".into()),
                host: "127.0.0.1".into(),
                port: 6222,
                ..ClusterConfig::default()
            }),
            ..nats::Config::default()
        },
        streaming: None,
    });
    let r = peer(&mut w, "NA");
    w.advance(Duration::from_secs(10));
    assert_eq!(w.take(r), "PING\r\n");
    w.send(r, b"PONG\r\n");
    w.advance(Duration::from_secs(20));
    assert_eq!(w.take(r), "PING\r\nPING\r\n");
    assert!(!w.closed.contains(&r));
    w.advance(Duration::from_secs(10));
    assert!(w.take(r).ends_with("-ERR 'Stale Connection'\r\n"));
    assert!(w.closed.contains(&r));
    assert!(w
        .transcript
        .contains("Router connection closed: Stale Connection"));
}

#[test]
fn no_advertise_keeps_the_cluster_from_clients() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            host: "10.0.0.1".into(),
            cluster: Some(ClusterConfig {
                name: Some("c1".into()),
                host: "127.0.0.1".into(),
                port: 6222,
                no_advertise: true,
                ..ClusterConfig::default()
            }),
            ..nats::Config::default()
        },
        streaming: None,
    });
    let old = w.accept();
    w.send(old, b"CONNECT {\"protocol\":1}\r\n");
    w.take(old);
    let r = w.route(None);
    let hello = w.take(r);
    assert!(!hello.contains("connect_urls"), "{hello}");
    w.send(
        r,
        b"INFO {\"server_id\":\"NA\",\"cluster\":\"c1\",\"connect_urls\":[\"10.0.0.2:4222\"]}\r\n",
    );
    assert!(!w.take(old).contains("INFO"));
    let new = w.accept();
    assert!(!w.take(new).contains("connect_urls"));
}

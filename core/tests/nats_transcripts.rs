//! Transcripts of the embedded NATS server on virtual time, one per protocol flow.

mod common;

use std::time::Duration;

use common::World;
use stan_core::nats::{self, Auth};
use stan_core::node::NodeConfig;

fn world() -> World {
    World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            port: 4222,
            ..nats::Config::default()
        },
        streaming: None,
    })
}

fn with_auth(auth: Auth) -> World {
    World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            auth,
            ..nats::Config::default()
        },
        streaming: None,
    })
}

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"name\":\"t\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}\r\n";

#[test]
fn connect() {
    let mut w = world();
    let c = w.accept();
    w.send(
        c,
        b"CONNECT {\"verbose\":true,\"pedantic\":false,\"name\":\"me\"}\r\nPING\r\n",
    );
    assert!(w.take(c).ends_with("+OK\r\nPONG\r\n"));
    snapshot!("nats_connect", w.transcript);
}

#[test]
fn pub_sub() {
    let mut w = world();
    let sub = w.accept();
    let publisher = w.accept();
    w.send(sub, CONNECT);
    w.send(publisher, CONNECT);
    w.send(sub, b"SUB foo 1\r\nPING\r\n");
    w.send(
        publisher,
        b"PUB foo 5\r\nhello\r\nPUB foo reply.x 2\r\nhi\r\nPUB bar 1\r\nx\r\n",
    );
    w.send(sub, b"UNSUB 1\r\n");
    w.send(publisher, b"PUB foo 3\r\nbye\r\n");
    let got = w.take(sub);
    assert!(got.contains("MSG foo 1 5\r\nhello\r\n"));
    assert!(got.contains("MSG foo 1 reply.x 2\r\nhi\r\n"));
    assert!(!got.contains("bar") && !got.contains("bye"));
    snapshot!("nats_pub_sub", w.transcript);
}

#[test]
fn wildcards() {
    let mut w = world();
    let sub = w.accept();
    let publisher = w.accept();
    w.send(sub, CONNECT);
    w.send(publisher, CONNECT);
    w.send(sub, b"SUB foo.* 1\r\nSUB foo.> 2\r\nSUB > 3\r\n");
    w.send(
        publisher,
        b"PUB foo.bar 1\r\na\r\nPUB foo.bar.baz 1\r\nb\r\nPUB other 1\r\nc\r\n",
    );
    let got = w.take(sub);
    assert_eq!(got.matches("MSG foo.bar ").count(), 3);
    assert_eq!(got.matches("MSG foo.bar.baz ").count(), 2);
    assert_eq!(got.matches("MSG other 3 ").count(), 1);
    snapshot!("nats_wildcards", w.transcript);
}

#[test]
fn queue_groups() {
    let mut w = world();
    let members: Vec<_> = (0..3).map(|_| w.accept()).collect();
    let watcher = w.accept();
    let publisher = w.accept();
    for &m in &members {
        w.send(m, CONNECT);
        w.send(m, b"SUB work workers 1\r\n");
    }
    w.send(watcher, CONNECT);
    w.send(watcher, b"SUB work 9\r\n");
    w.send(publisher, CONNECT);
    for i in 0..12 {
        w.send(publisher, format!("PUB work 2\r\n{i:02}\r\n").as_bytes());
    }
    let per_member: Vec<usize> = members
        .iter()
        .map(|&m| w.take(m).matches("MSG work").count())
        .collect();
    assert_eq!(
        per_member.iter().sum::<usize>(),
        12,
        "each message goes to exactly one member"
    );
    assert_eq!(w.take(watcher).matches("MSG work").count(), 12);
    snapshot!("nats_queue_groups", w.transcript);
}

#[test]
fn request_reply_and_no_responders() {
    let mut w = world();
    let responder = w.accept();
    let requester = w.accept();
    w.send(responder, CONNECT);
    w.send(requester, CONNECT);
    w.send(responder, b"SUB service 1\r\n");
    w.send(
        requester,
        b"SUB _INBOX.abc.* 7\r\nPUB service _INBOX.abc.1 4\r\nping\r\n",
    );
    assert!(w
        .take(responder)
        .contains("MSG service 1 _INBOX.abc.1 4\r\nping\r\n"));
    w.send(responder, b"PUB _INBOX.abc.1 4\r\npong\r\n");
    assert!(w
        .take(requester)
        .contains("MSG _INBOX.abc.1 7 4\r\npong\r\n"));
    w.note("a request nobody listens to is answered at once with status 503");
    w.send(requester, b"PUB nobody.home _INBOX.abc.2 1\r\n?\r\n");
    assert_eq!(
        w.take(requester),
        "HMSG _INBOX.abc.2 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    );
    snapshot!("nats_request_no_responders", w.transcript);
}

#[test]
fn headers_reach_header_aware_clients_only() {
    let mut w = world();
    let modern = w.accept();
    let legacy = w.accept();
    let publisher = w.accept();
    w.send(modern, CONNECT);
    w.send(legacy, b"CONNECT {}\r\n");
    w.send(publisher, CONNECT);
    w.send(modern, b"SUB h 1\r\n");
    w.send(legacy, b"SUB h 1\r\n");
    w.send(
        publisher,
        b"HPUB h 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n",
    );
    assert!(w
        .take(modern)
        .ends_with("HMSG h 1 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n"));
    assert!(w.take(legacy).ends_with("MSG h 1 5\r\nhello\r\n"));
}

#[test]
fn auth_failure() {
    let mut w = with_auth(Auth::UserPass {
        user: "alice".into(),
        pass: "s3cret".into(),
    });
    let good = w.accept();
    let bad = w.accept();
    let rude = w.accept();
    w.send(
        good,
        b"CONNECT {\"user\":\"alice\",\"pass\":\"s3cret\"}\r\nPING\r\n",
    );
    assert!(w.take(good).ends_with("PONG\r\n"));
    w.send(bad, b"CONNECT {\"user\":\"alice\",\"pass\":\"nope\"}\r\n");
    assert!(w.take(bad).ends_with("-ERR 'Authorization Violation'\r\n"));
    w.note("an operation before CONNECT is refused when authentication is required");
    w.send(rude, b"PING\r\n");
    assert!(w.closed.contains(&bad) && w.closed.contains(&rude));
    snapshot!("nats_auth_failure", w.transcript);
}

#[test]
fn token_auth_and_timeout() {
    let mut w = with_auth(Auth::Token("tok".into()));
    let good = w.accept();
    let silent = w.accept();
    w.send(good, b"CONNECT {\"auth_token\":\"tok\"}\r\nPING\r\n");
    assert!(w.take(good).ends_with("PONG\r\n"));
    w.advance(Duration::from_secs(3));
    assert!(w
        .take(silent)
        .ends_with("-ERR 'Authentication Timeout'\r\n"));
    assert_eq!(w.closed, vec![silent]);
}

#[test]
fn max_payload() {
    let mut w = world();
    let c = w.accept();
    let other = w.accept();
    w.send(c, CONNECT);
    w.send(other, CONNECT);
    w.send(other, b"SUB x 1\r\n");
    w.send(c, b"PUB x 1048577\r\n");
    assert!(w.take(c).ends_with("-ERR 'Maximum Payload Violation'\r\n"));
    w.send(other, b"PUB x 2\r\nok\r\n");
    assert!(
        w.take(other).ends_with("MSG x 1 2\r\nok\r\n"),
        "the other client is unaffected"
    );
    snapshot!("nats_max_payload", w.transcript);
}

#[test]
fn unknown_op() {
    let mut w = world();
    let c = w.accept();
    let other = w.accept();
    w.send(other, CONNECT);
    w.send(c, CONNECT);
    w.send(c, b"HELLO world\r\n");
    assert!(w.take(c).ends_with("-ERR 'Unknown Protocol Operation'\r\n"));
    assert_eq!(w.closed, vec![c]);
    w.send(other, b"PING\r\n");
    assert!(w.take(other).ends_with("PONG\r\n"));
    snapshot!("nats_unknown_op", w.transcript);
}

#[test]
fn stale_connection() {
    let mut w = world();
    let c = w.accept();
    let alive = w.accept();
    w.send(c, CONNECT);
    w.send(alive, CONNECT);
    w.advance(Duration::from_secs(120));
    w.send(alive, b"PONG\r\n");
    w.advance(Duration::from_secs(120));
    w.send(alive, b"PONG\r\n");
    w.advance(Duration::from_secs(120));
    let got = w.take(c);
    assert_eq!(got.matches("PING\r\n").count(), 2);
    assert!(got.ends_with("-ERR 'Stale Connection'\r\n"));
    assert_eq!(w.closed, vec![c], "the client that answers stays");
    snapshot!("nats_stale_connection", w.transcript);
}

#[test]
fn bad_input_closes_only_the_offender() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "garbage",
            b"\x00\x01\x02garbage\r\n",
            "-ERR 'Unknown Protocol Operation'",
        ),
        (
            "control line over 4096 bytes",
            &[b'S', b'U', b'B', b' ', b'a'].repeat(1000),
            "-ERR 'Maximum Control Line Exceeded'",
        ),
        (
            "byte count does not match",
            b"PUB foo 3\r\nhello\r\n",
            "-ERR 'Unknown Protocol Operation'",
        ),
    ];
    for (what, bytes, err) in cases {
        let mut w = world();
        let bad = w.accept();
        let good = w.accept();
        w.send(bad, CONNECT);
        w.send(good, CONNECT);
        w.send(good, b"SUB foo 1\r\n");
        w.send(bad, bytes);
        let got = w.take(bad);
        assert!(got.ends_with(&format!("{err}\r\n")), "{what}: {got:?}");
        assert_eq!(w.closed, vec![bad], "{what}");
        w.send(good, b"PUB foo 2\r\nok\r\n");
        assert!(
            w.take(good).ends_with("MSG foo 1 2\r\nok\r\n"),
            "{what}: others keep working"
        );
    }
}

#[test]
fn invalid_subject_keeps_the_connection() {
    let mut w = world();
    let c = w.accept();
    w.send(c, CONNECT);
    w.send(c, b"SUB foo..bar 1\r\nSUB foo.>.bar 2\r\nPING\r\n");
    let got = w.take(c);
    assert_eq!(got.matches("-ERR 'Invalid Subject'\r\n").count(), 2);
    assert!(got.ends_with("PONG\r\n"));
    assert!(w.closed.is_empty());
    w.note("a pedantic client publishing to a wildcard subject gets an error, nothing is routed");
    let p = w.accept();
    w.send(p, b"CONNECT {\"pedantic\":true}\r\nPUB foo.* 1\r\nx\r\n");
    assert!(w.take(p).ends_with("-ERR 'Invalid Publish Subject'\r\n"));
    snapshot!("nats_invalid_subject", w.transcript);
}

#[test]
fn half_written_op_waits_then_goes_stale() {
    let mut w = world();
    let c = w.accept();
    let good = w.accept();
    w.send(c, CONNECT);
    w.send(good, CONNECT);
    w.send(c, b"PUB foo 100\r\nonly part of it");
    w.send(good, b"PING\r\n");
    assert!(w.take(good).ends_with("PONG\r\n"));
    w.advance(Duration::from_secs(361));
    assert!(w.take(c).ends_with("-ERR 'Stale Connection'\r\n"));
}

#[test]
fn auto_unsubscribe_after_max() {
    let mut w = world();
    let c = w.accept();
    w.send(c, CONNECT);
    w.send(c, b"SUB foo 1\r\nUNSUB 1 2\r\n");
    w.send(c, b"PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n");
    let got = w.take(c);
    assert_eq!(got.matches("MSG foo 1").count(), 2);
}

#[test]
fn echo_off() {
    let mut w = world();
    let c = w.accept();
    w.send(
        c,
        b"CONNECT {\"echo\":false}\r\nSUB foo 1\r\nPUB foo 1\r\na\r\nPING\r\n",
    );
    assert!(!w.take(c).contains("MSG"));
}

#[test]
fn slow_consumer_is_closed() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            max_pending: 10_000,
            ..nats::Config::default()
        },
        streaming: None,
    });
    let slow = w.accept();
    let publisher = w.accept();
    w.send(slow, CONNECT);
    w.send(slow, b"SUB foo 1\r\n");
    w.send(publisher, CONNECT);
    // The slow client's writes are never confirmed, so its pending bytes grow.
    let mut out = Vec::new();
    for _ in 0..200 {
        stan_core::nats::proto::write_pub(&mut out, b"foo", None, None, &[b'x'; 100]);
    }
    w.node.handle_input(
        w.now,
        stan_core::nats::Input::Received {
            conn: publisher,
            bytes: &out,
        },
    );
    let mut closed = false;
    while let Some(o) = w.node.poll_output() {
        closed |= o == stan_core::nats::Output::Close { conn: slow };
    }
    assert!(closed);
    assert_eq!(w.node.nats().stats().slow_consumers, 1);
}

/// SIGHUP: a new authorization closes the clients it refuses, a lower connection
/// limit closes the newest clients, and the listening address cannot change.
#[test]
fn reload() {
    let mut w = with_auth(Auth::UserPass {
        user: "alice".into(),
        pass: "old".into(),
    });
    let alice = w.accept();
    let bob = w.accept();
    let carol = w.accept();
    w.send(alice, b"CONNECT {\"user\":\"alice\",\"pass\":\"old\"}\r\n");
    w.send(bob, b"CONNECT {\"user\":\"bob\",\"pass\":\"new\"}\r\n");
    w.send(carol, b"CONNECT {\"user\":\"alice\",\"pass\":\"new\"}\r\n");
    assert_eq!(w.closed, vec![bob, carol]);
    w.closed.clear();
    let carol = w.accept();
    w.send(carol, b"CONNECT {\"user\":\"alice\",\"pass\":\"old\"}\r\n");
    let dave = w.accept();
    w.send(dave, b"CONNECT {\"user\":\"alice\",\"pass\":\"old\"}\r\n");

    let current = w.node.nats().config().clone();
    let moved = nats::Config {
        port: 5222,
        ..current.clone()
    };
    assert_eq!(
        w.node.reload_nats(w.now, moved),
        Err("config reload not supported for Port: old=4222, new=5222".into())
    );
    let rebased = nats::Config {
        http_base_path: "/nats".into(),
        ..current.clone()
    };
    assert_eq!(
        w.node.reload_nats(w.now, rebased),
        Err("config reload not supported for HTTPBasePath: old=, new=/nats".into())
    );
    assert!(w.closed.is_empty());

    w.note("the password changes and only one connection is allowed");
    let new = nats::Config {
        auth: Auth::UserPass {
            user: "alice".into(),
            pass: "new".into(),
        },
        max_connections: 1,
        max_payload: 512,
        verbosity: stan_core::log::Verbosity {
            debug: true,
            trace: false,
        },
        ..current
    };
    let lines = w.node.reload_nats(w.now, new).unwrap();
    w.drain();
    assert_eq!(
        lines,
        [
            "Reloaded: debug = true",
            "Reloaded: authorization password",
            "Reloaded: max_connections = 1",
            "Reloaded: max_payload = 512",
        ]
    );
    // Everyone held the old password: all three are closed as unauthorized.
    assert_eq!(w.closed.len(), 3);
    for c in [alice, carol, dave] {
        assert!(w.take(c).ends_with("-ERR 'Authorization Violation'\r\n"));
    }
    w.note("a client with the new password gets the new limits");
    let eve = w.accept();
    let info = w.take(eve);
    assert!(info.contains("\"max_payload\":512"), "{info}");
    w.send(
        eve,
        b"CONNECT {\"user\":\"alice\",\"pass\":\"new\"}\r\nPING\r\n",
    );
    assert!(w.take(eve).ends_with("PONG\r\n"));
    let frank = w.accept();
    assert!(w
        .take(frank)
        .ends_with("-ERR 'maximum connections exceeded'\r\n"));
    snapshot!("nats_reload", w.transcript);

    let current = w.node.nats().config().clone();
    let advertised = nats::Config {
        client_advertise: Some(("edge.example.com".into(), 4333)),
        max_traced_msg_len: 32,
        max_connections: 10,
        ..current
    };
    let lines = w.node.reload_nats(w.now, advertised).unwrap();
    assert_eq!(
        lines[..2],
        [
            "Reloaded: client_advertise = edge.example.com:4333",
            "Reloaded: max_traced_msg_len = 32",
        ]
    );
    let grace = w.accept();
    assert!(w
        .take(grace)
        .contains("\"host\":\"edge.example.com\",\"port\":4333,"));
}

#[test]
fn reload_lowering_max_connections_closes_the_newest() {
    let mut w = world();
    let conns: Vec<_> = (0..4).map(|_| w.accept()).collect();
    for &c in &conns {
        w.send(c, CONNECT);
    }
    let new = nats::Config {
        max_connections: 2,
        ..w.node.nats().config().clone()
    };
    let lines = w.node.reload_nats(w.now, new).unwrap();
    w.drain();
    assert_eq!(
        lines,
        [
            "Closed 2 connections to fall within max_connections",
            "Reloaded: max_connections = 2"
        ]
    );
    w.closed.sort();
    assert_eq!(w.closed, conns[2..].to_vec());
    assert!(w
        .take(conns[3])
        .ends_with("-ERR 'maximum connections exceeded'\r\n"));
}

#[test]
fn max_subscriptions_refuses_the_extra_one_and_keeps_the_client() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            max_subscriptions: 2,
            ..nats::Config::default()
        },
        streaming: None,
    });
    let c = w.accept();
    let p = w.accept();
    w.send(c, CONNECT);
    w.send(p, CONNECT);
    w.send(c, b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB a 1\r\nPING\r\n");
    assert!(w
        .take(c)
        .ends_with("-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n"));
    w.send(p, b"PUB b 1\r\nx\r\nPUB c 1\r\ny\r\n");
    assert_eq!(w.take(c), "MSG b 2 1\r\nx\r\n");
    assert!(w.closed.is_empty());
    w.send(c, b"UNSUB 1\r\nSUB c 3\r\nPING\r\n");
    assert_eq!(w.take(c), "PONG\r\n");
}

/// With TLS, INFO announces it (the driver then runs the handshake); a failed
/// handshake is logged with the connection and closes it, and nobody else notices.
#[test]
fn tls_required() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            tls_required: true,
            tls_verify: true,
            tls_timeout: Duration::from_millis(500),
            verbosity: stan_core::log::Verbosity {
                debug: true,
                trace: false,
            },
            ..nats::Config::default()
        },
        streaming: None,
    });
    let refused = w.accept();
    let served = w.accept();
    let info = w.take(refused);
    assert!(
        info.contains("\"headers\":true,\"tls_required\":true,\"tls_verify\":true,\"max_payload\""),
        "{info}"
    );
    w.tls_fails(
        refused,
        "TLS handshake error: tls: client didn't provide a certificate",
    );
    assert!(w
        .transcript
        .contains("Client connection closed: TLS Handshake Failure"));
    let peer = "127.0.0.1:50002".parse().unwrap();
    w.node
        .tls_established(w.now, peer, "1.3", "TLS_AES_128_GCM_SHA256");
    w.drain();
    w.send(served, CONNECT);
    w.send(served, b"PING\r\n");
    assert!(w.take(served).ends_with("PONG\r\n"));
    let connz =
        stan_core::nats::monitor::connz(w.node.nats(), &Default::default(), &Default::default());
    let shown = serde_json::to_string(&connz).unwrap();
    assert!(
        shown.contains("\"tls_version\":\"1.3\",\"tls_cipher_suite\":\"TLS_AES_128_GCM_SHA256\""),
        "{shown}"
    );
    let varz = stan_core::nats::monitor::varz(w.node.nats(), &Default::default());
    assert!(varz.tls_required && varz.tls_verify);
    assert_eq!(varz.tls_timeout, 0.5);
    snapshot!("nats_tls_required", w.transcript);
}

/// With `trace`, every operation in and out is logged as the NATS server logs it with
/// `-V`: secrets of a CONNECT redacted, payloads quoted and cut after
/// `max_traced_msg_len` bytes. `client_advertise` replaces the address in INFO.
#[test]
fn trace() {
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            rng_seed: 1,
            max_traced_msg_len: 5,
            client_advertise: Some(("nats.example.com".into(), 4333)),
            verbosity: stan_core::log::Verbosity {
                debug: false,
                trace: true,
            },
            ..nats::Config::default()
        },
        streaming: None,
    });
    let sub = w.accept();
    let publisher = w.accept();
    assert!(w
        .take(sub)
        .contains("\"host\":\"nats.example.com\",\"port\":4333,"));
    w.send(
        sub,
        b"CONNECT {\"verbose\":true,\"pedantic\":false,\"headers\":true,\"user\":\"u\",\"pass\":\"p\\\"w\",\"auth_token\" : \"tok3n\"}\r\n",
    );
    w.send(sub, b"sub foo  1\r\nPING\r\n");
    w.send(publisher, CONNECT);
    w.send(
        publisher,
        b"PUB foo 2\r\nhi\r\nPUB foo r.1 12\r\nl\xc3\xa9on\x07\tbien!\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nok\r\nPUB foo 7\r\na\x01bcdef\r\n",
    );
    w.send(sub, b"UNSUB 1\r\nNOPE\r\n");
    let log = &w.transcript;
    for line in [
        "<<- [CONNECT {\"verbose\":true,\"pedantic\":false,\"headers\":true,\"user\":\"u\",\"pass\":\"[REDACTED]\",\"auth_token\" : \"[REDACTED]\"}]",
        "<<- [SUB foo  1]",
        "->> [OK]",
        "<<- [PING]",
        "->> [PONG]",
        "<<- MSG_PAYLOAD: [\"hi\"]",
        "->> [MSG foo 1 2]",
        "<<- [PUB foo r.1 12]",
        "<<- MSG_PAYLOAD: [\"léon...\"]",
        "<<- MSG_PAYLOAD: [\"a\\x01...\"]",
        "->> [MSG foo 1 r.1 12]",
        "<<- [HPUB foo 12 14]",
        "->> [HMSG foo 1 12 14]",
        "<<- [UNSUB 1]",
        "->> [-ERR Unknown Protocol Operation]",
    ] {
        assert!(log.contains(line), "{line} missing from\n{log}");
    }
    let traced: Vec<&str> = log.lines().filter(|l| l.contains("[TRC]")).collect();
    assert!(
        traced
            .iter()
            .all(|l| !l.contains("p\\\"w") && !l.contains("tok3n")),
        "a secret was traced:\n{log}"
    );
    snapshot!("nats_trace", w.transcript);
}

#[test]
fn client_advertise_is_read_as_the_nats_server_reads_it() {
    let parse = |s| nats::parse_host_port(s, 4222);
    assert_eq!(parse("example.com"), Ok(("example.com".into(), 4222)));
    assert_eq!(parse("example.com:1234"), Ok(("example.com".into(), 1234)));
    assert_eq!(parse("example.com:-1"), Ok(("example.com".into(), 4222)));
    assert_eq!(parse("[::1]:5000"), Ok(("::1".into(), 5000)));
    assert_eq!(parse("[::1]"), Ok(("::1".into(), 4222)));
    assert_eq!(
        parse("a:b:c"),
        Err("address a:b:c: too many colons in address".into())
    );
    assert_eq!(
        parse("host:port"),
        Err("strconv.Atoi: parsing \"port\": invalid syntax".into())
    );
    assert_eq!(parse(""), Err("no hostport specified".into()));
}

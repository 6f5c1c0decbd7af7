//! Entry points shared by the fuzz targets in `fuzz/` and the tests that replay their
//! corpora on the stable toolchain. Each takes arbitrary bytes and must never panic.

use core::net::SocketAddr;
use std::time::Duration;

use crate::nats::proto::{self, Limits};
use crate::nats::{self, Input};
use crate::node::{Node, NodeConfig};
use crate::time::{Instant, Now};

/// Splits `data` at offsets taken from its first byte and parses the pieces as a client
/// stream would arrive, checking that the split does not change the result.
pub fn nats_client_codec(data: &[u8]) {
    let limits = Limits {
        max_control_line: 256,
        max_payload: 1024,
    };
    let whole = parse_all(data, &limits, proto::parse_client_op);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut buf = Vec::new();
    let mut ops = 0;
    let mut failed = false;
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match proto::parse_client_op(&buf, &limits) {
                Ok(Some((_, used))) => {
                    buf.drain(..used);
                    ops += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    // An early error on a split stream can only come from a byte the whole stream also
    // rejects, so the op counts agree whenever neither failed.
    if !failed && whole.1.is_none() {
        assert_eq!(ops, whole.0, "split parsing disagrees with whole parsing");
    }
}

/// Parses `data` as the server's side of a connection (what a client reads).
pub fn nats_server_codec(data: &[u8]) {
    let limits = Limits {
        max_control_line: 256,
        max_payload: 1024,
    };
    let _ = parse_all(data, &limits, proto::parse_server_op);
}

fn parse_all<'a, T>(
    data: &'a [u8],
    limits: &Limits,
    parse: impl Fn(&'a [u8], &Limits) -> Result<Option<(T, usize)>, proto::ParseError>,
) -> (usize, Option<proto::ParseError>) {
    let mut pos = 0;
    let mut n = 0;
    loop {
        match parse(&data[pos..], limits) {
            Ok(Some((_, used))) => {
                assert!(used > 0, "an operation consumed no bytes");
                pos += used;
                n += 1;
            }
            Ok(None) => return (n, None),
            Err(e) => return (n, Some(e)),
        }
    }
}

/// Drives a streaming node with an arbitrary sequence of connection events, bytes and
/// time jumps. The first byte of each step chooses the event.
pub fn nats_node(data: &[u8]) {
    let cfg = NodeConfig {
        nats: nats::Config {
            max_payload: 4096,
            max_pending: 64 * 1024,
            rng_seed: 1,
            // Tracing reads every operation a second time, secrets and payloads
            // included; short payloads are traced whole, longer ones cut.
            verbosity: crate::log::Verbosity {
                debug: true,
                trace: true,
            },
            max_traced_msg_len: 7,
            ..nats::Config::default()
        },
        streaming: Some(crate::streaming::Config::default()),
    };
    let Ok(mut node) = Node::with_streaming(cfg, Box::new(crate::store::MemStore::new())) else {
        return;
    };
    let mut now = Now {
        mono: Instant::from_nanos(0),
        wall_ns: 1_700_000_000_000_000_000,
    };
    let _ = node.start(now);
    let mut conns = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 5 {
            0 => {
                let peer = SocketAddr::from(([127, 0, 0, 1], 1000 + conns.len() as u16));
                conns.push(node.accept(now, peer));
            }
            1 | 2 => {
                let len = usize::from(rest.first().copied().unwrap_or(0))
                    .min(rest.len().saturating_sub(1));
                let bytes = rest.get(1..1 + len).unwrap_or(&[]);
                rest = rest.get(1 + len..).unwrap_or(&[]);
                if let Some(&c) = conns.get(usize::from(op / 5) % conns.len().max(1)) {
                    node.handle_input(now, Input::Received { conn: c, bytes });
                }
            }
            3 => {
                if let Some(&c) = conns.get(usize::from(op / 5) % conns.len().max(1)) {
                    node.handle_input(now, Input::Closed { conn: c });
                }
            }
            _ => {
                now = now.advanced(Duration::from_millis(u64::from(op) * 97));
                node.handle_timeout(now);
            }
        }
        while let Some(out) = node.poll_output() {
            if let nats::Output::Send { conn, data } = out {
                node.handle_input(
                    now,
                    Input::Flushed {
                        conn,
                        bytes: data.len(),
                    },
                );
            }
        }
    }
}

/// Sends arbitrary payloads, with and without reply subjects, to every subject the
/// streaming server listens on, between valid client operations.
pub fn stan_requests(data: &[u8]) {
    use crate::streaming::pb::{ConnectRequest, SubscriptionRequest};
    use prost::Message;
    let cfg = NodeConfig {
        nats: nats::Config {
            rng_seed: 2,
            ..nats::Config::default()
        },
        streaming: Some(crate::streaming::Config::default()),
    };
    let Ok(mut node) = Node::with_streaming(cfg, Box::new(crate::store::MemStore::new())) else {
        return;
    };
    let mut now = Now {
        mono: Instant::from_nanos(0),
        wall_ns: 1_700_000_000_000_000_000,
    };
    let _ = node.start(now);
    let conn = node.accept(now, SocketAddr::from(([127, 0, 0, 1], 1)));
    let send = |node: &mut Node, now: Now, subject: &str, reply: Option<&str>, payload: &[u8]| {
        let mut out = b"CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB > 1\r\n".to_vec();
        proto::write_pub(
            &mut out,
            subject.as_bytes(),
            reply.map(str::as_bytes),
            None,
            payload,
        );
        node.handle_input(now, Input::Received { conn, bytes: &out });
        while let Some(o) = node.poll_output() {
            if let nats::Output::Send { conn, data } = o {
                node.handle_input(
                    now,
                    Input::Flushed {
                        conn,
                        bytes: data.len(),
                    },
                );
            }
        }
    };
    let hello = ConnectRequest {
        client_id: "fz".into(),
        heartbeat_inbox: "_INBOX.hb".into(),
        protocol: 1,
        ..Default::default()
    };
    send(
        &mut node,
        now,
        "_STAN.discover.test-cluster",
        Some("_INBOX.r"),
        &hello.encode_to_vec(),
    );
    let sub = SubscriptionRequest {
        client_id: "fz".into(),
        subject: "c".into(),
        inbox: "_INBOX.s".into(),
        max_in_flight: 2,
        ack_wait_in_secs: 1,
        start_position: 4,
        ..Default::default()
    };
    send(
        &mut node,
        now,
        "_STAN.sub.test-cluster",
        Some("_INBOX.r"),
        &sub.encode_to_vec(),
    );
    const SUBJECTS: [&str; 8] = [
        "_STAN.discover.test-cluster",
        "_STAN.pub.test-cluster.c",
        "_STAN.sub.test-cluster",
        "_STAN.unsub.test-cluster",
        "_STAN.subclose.test-cluster",
        "_STAN.close.test-cluster",
        "_STAN.discover.test-cluster.pings",
        "_INBOX.hb",
    ];
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let len = usize::from(tail.first().copied().unwrap_or(0)).min(tail.len().saturating_sub(1));
        let payload = tail.get(1..1 + len).unwrap_or(&[]);
        rest = tail.get(1 + len..).unwrap_or(&[]);
        let reply = (op & 8 != 0).then_some("_INBOX.r");
        send(
            &mut node,
            now,
            SUBJECTS[usize::from(op & 7)],
            reply,
            payload,
        );
        if op & 16 != 0 {
            now = now.advanced(Duration::from_millis(u64::from(op) * 40));
            node.handle_timeout(now);
        }
    }
}

/// Parses `data` as a configuration file and reads the NATS and streaming options
/// from what it parsed. `data` holds several files separated by NUL bytes: the first
/// is `main.conf`, the n-th (from 1) is `i<n>.conf` for `include` and also the value
/// of the environment variable `E<n>`; any other include or variable is missing.
pub fn config_parser(data: &[u8]) {
    use crate::config::{self, Included, Map, NatsFileOptions, StreamingFileOptions, Value};
    let text = String::from_utf8_lossy(data);
    let files: Vec<&str> = text.split('\0').collect();
    let numbered = |name: &str| -> Option<usize> {
        let n: usize = name.parse().ok()?;
        (n > 0 && n < files.len() && name == n.to_string()).then_some(n)
    };
    let mut include = |_: &str, path: &str| -> Result<Included, String> {
        match path
            .strip_prefix('i')
            .and_then(|p| p.strip_suffix(".conf"))
            .and_then(numbered)
        {
            Some(n) => Ok(Included {
                name: path.to_owned(),
                text: files[n].to_owned(),
            }),
            None => Err(format!(
                "error opening config file: open {path}: no such file or directory"
            )),
        }
    };
    let env = |name: &str| {
        name.strip_prefix('E')
            .and_then(numbered)
            .map(|n| files[n].to_owned())
    };
    fn read_all(map: &Map) {
        let _ = StreamingFileOptions::from_map(map);
        let _ = NatsFileOptions::from_map(map);
        for entry in map {
            let _ = entry.value.to_string();
            if let Value::Map(inner) = &entry.value {
                read_all(inner);
            }
        }
    }
    match config::parse("main.conf", files[0], &mut include, &env) {
        Ok(map) => read_all(&map),
        Err(e) => {
            // An error names the file and line to fix: one of the files given, and a
            // line that file has.
            let lines = match e.file.as_str() {
                "main.conf" => Some(files[0]),
                other => other
                    .strip_prefix('i')
                    .and_then(|p| p.strip_suffix(".conf"))
                    .and_then(numbered)
                    .map(|n| files[n]),
            }
            .map(|f| f.matches('\n').count() + 1);
            let Some(lines) = lines else {
                panic!("error names an unknown file: {e}");
            };
            assert!(
                e.line >= 1 && e.line as usize <= lines,
                "error names line {} of a file of {lines} lines: {e}",
                e.line
            );
        }
    }
}

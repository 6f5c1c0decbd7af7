//! Entry points shared by the fuzz targets in `fuzz/` and the tests that replay their
//! corpora on the stable toolchain. Each takes arbitrary bytes and must never panic.

use std::net::SocketAddr;
use std::time::Duration;

use crate::nats::proto::{self, Limits};
use crate::nats::{self, Input};
use crate::node::{Node, NodeConfig};
use crate::time::{Instant, Now};

/// Splits `data` at offsets taken from its first byte and parses the pieces as a client
/// stream would arrive, checking that the split does not change the result.
pub fn nats_client_codec(data: &[u8]) {
    let limits = Limits { max_control_line: 256, max_payload: 1024 };
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
    let limits = Limits { max_control_line: 256, max_payload: 1024 };
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
        nats: nats::Config { max_payload: 4096, max_pending: 64 * 1024, rng_seed: 1, ..nats::Config::default() },
        streaming: Some(crate::streaming::Config::default()),
    };
    let Ok(mut node) = Node::with_streaming(cfg, Box::new(crate::store::MemStore::new())) else { return };
    let mut now = Now { mono: Instant::from_nanos(0), wall_ns: 1_700_000_000_000_000_000 };
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
                let len = usize::from(rest.first().copied().unwrap_or(0)).min(rest.len().saturating_sub(1));
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
                node.handle_input(now, Input::Flushed { conn, bytes: data.len() });
            }
        }
    }
}

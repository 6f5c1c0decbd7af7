//! Entry points shared by the fuzz targets over the runtime in `fuzz/` and by
//! runtime/tests/fuzz_corpus.rs, which replays their corpora on the stable toolchain.
//! Each takes arbitrary bytes and must never panic.

use core::net::SocketAddr;
use std::alloc::{GlobalAlloc, Layout, System};

use stan_core::nats::{self, proto, ConnId, Input};
use stan_core::node::{Node, NodeConfig};
use stan_core::streaming::pb::{encode, CloseRequest, ConnectRequest, PubMsg, SubscriptionRequest};
use stan_core::time::{Instant, Now};

use crate::http::routes::{self, Env, Reply, Route};

/// The global allocator of the fuzz targets and of the tests replaying their corpora:
/// any single allocation above [`CappedAlloc::MAX`] aborts the process, so that memory
/// sized by a length field read from the input is reported even where it would never
/// be touched (a zeroed allocation is not, until written).
pub struct CappedAlloc;

impl CappedAlloc {
    /// Far above what any input of a few kilobytes needs.
    pub const MAX: usize = 64 << 20;

    fn check(size: usize) {
        if size > Self::MAX {
            // Formatting would allocate: write a fixed message.
            let msg = b"allocation above CappedAlloc::MAX\n";
            // SAFETY: writes a static buffer to standard error.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            std::process::abort();
        }
    }
}

// SAFETY: every call goes to the system allocator unchanged, after a size check.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// The paths a leading byte below 0x20 selects; any other input names its own path.
const PATHS: [&str; 14] = [
    "/",
    "/varz",
    "/connz",
    "/routez",
    "/subsz",
    "/subscriptionsz",
    "/healthz",
    "/metrics",
    "/streaming",
    "/streaming/serverz",
    "/streaming/storez",
    "/streaming/clientsz",
    "/streaming/channelsz",
    "/streaming/isFTActive",
];

/// Answers one monitoring request against a node with NATS connections and
/// subscriptions, streaming clients, channels, plain, durable and queue
/// subscriptions. `data` is `path?query`, or a byte below 0x20 choosing a known path
/// followed by the query. Every JSON document must parse as JSON.
pub fn monitoring_query(data: &[u8]) {
    let (path, query) = match data.split_first() {
        Some((&b, rest)) if b < 0x20 => (
            PATHS[usize::from(b) % PATHS.len()].to_owned(),
            String::from_utf8_lossy(rest).into_owned(),
        ),
        _ => {
            let text = String::from_utf8_lossy(data);
            match text.split_once('?') {
                Some((p, q)) => (p.to_owned(), q.to_owned()),
                None => (text.into_owned(), String::new()),
            }
        }
    };
    // The same request under a base path, where it names another endpoint or none.
    let _ = routes::route(&routes::normalize_base_path("nats/"), &path, &query);
    let reply = match routes::route("/", &path, &query) {
        Route::Done(reply) => reply,
        Route::Node(request) => MONITORED.with(|(node, now)| {
            let env = Env {
                nats: nats::monitor::Context {
                    mem: 1 << 20,
                    cpu: 1.5,
                    cores: 2,
                    http_host: "127.0.0.1".into(),
                    http_port: 8222,
                    http_req_stats: [("/varz".to_owned(), 3)].into_iter().collect(),
                    start_wall_ns: START_WALL_NS,
                    config_load_wall_ns: START_WALL_NS,
                    ..Default::default()
                },
                utc_offset_secs: 3600,
                start_wall_ns: START_WALL_NS,
                fds: if query.contains("nofds") {
                    Err("Error getting file descriptors len: no /proc".into())
                } else {
                    Ok((12, 1024))
                },
            };
            request.answer(node, *now, &env)
        }),
    };
    match reply {
        Reply::Json { body, .. } => {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
                panic!(
                    "{path}?{query} answered invalid JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        Reply::Error(status, _) | Reply::Plain(status, _) => {
            assert!((400..600).contains(&status), "error status {status}");
        }
        Reply::Empty(status) => assert!(status == 200 || status == 204, "status {status}"),
        Reply::Html(_) | Reply::Metrics(_) => {}
    }
}

/// Recovers a FILE store from a data directory the input describes (mostly well
/// formed files, some damaged or arbitrary), with and without
/// `--file_truncate_bad_eof`; what recovers must read back, take writes and recover
/// again. See store/fuzzing.rs for how the input is read.
pub fn file_store_recovery(data: &[u8]) {
    crate::store::fuzzing::file_store_recovery(data);
}

const START_WALL_NS: i64 = 1_700_000_000_000_000_000;

thread_local! {
    /// Built once: documents only read the node.
    static MONITORED: (Node, Now) = monitored_node();
}

/// A streaming node with some of everything the monitoring documents list.
fn monitored_node() -> (Node, Now) {
    let cfg = NodeConfig {
        nats: nats::Config {
            rng_seed: 3,
            ..nats::Config::default()
        },
        streaming: Some(stan_core::streaming::Config::default()),
    };
    let mut node = Node::with_streaming(cfg, Box::new(stan_core::store::MemStore::new()))
        .expect("default limits are valid");
    let mut now = Now {
        mono: Instant::from_nanos(0),
        wall_ns: START_WALL_NS,
    };
    node.start(now).expect("a memory store starts");
    let mut wire = Wire {
        node: &mut node,
        now,
    };
    // Plain NATS clients with wildcard and queue subscriptions.
    let a = wire.connect(1, r#"{"name":"watcher","lang":"go","version":"1.11"}"#);
    wire.send(
        a,
        b"SUB foo.* 1\r\nSUB foo.bar workers 2\r\nSUB > 3\r\nUNSUB 3 5\r\n",
    );
    let b = wire.connect(2, r#"{"verbose":false,"pedantic":true}"#);
    wire.send(b, b"SUB _INBOX.b.* 1\r\nPUB foo.bar 5\r\nhello\r\n");
    // Streaming clients: plain, durable and queue subscriptions on two channels, and
    // a durable whose client has gone.
    let c = wire.connect(3, r#"{"name":"stan"}"#);
    wire.send(c, b"SUB _INBOX.> 1\r\n");
    for client in ["c1", "c2", "gone"] {
        let hello = ConnectRequest {
            client_id: client.into(),
            heartbeat_inbox: format!("_INBOX.hb.{client}"),
            protocol: 1,
            ping_interval: 5,
            ping_max_out: 3,
            ..Default::default()
        };
        wire.publish(c, "_STAN.discover.test-cluster", &encode(&hello));
    }
    let subs: [(&str, &str, &str, &str, i32); 5] = [
        ("c1", "foo", "", "", 0),
        ("c1", "bar", "", "dur", 4),
        ("c2", "foo", "q", "", 1),
        ("c2", "foo", "q", "dq", 1),
        ("gone", "baz.qux", "", "left", 4),
    ];
    for (i, (client, subject, q_group, durable, start)) in subs.into_iter().enumerate() {
        let sub = SubscriptionRequest {
            client_id: client.into(),
            subject: subject.into(),
            q_group: q_group.into(),
            inbox: format!("_INBOX.s.{i}"),
            max_in_flight: 2,
            ack_wait_in_secs: 30,
            durable_name: durable.into(),
            start_position: start,
            ..Default::default()
        };
        wire.publish(c, "_STAN.sub.test-cluster", &encode(&sub));
    }
    for (i, channel) in [
        "foo",
        "foo",
        "foo",
        "bar",
        "baz.qux",
        "\"quoted\\\u{e9}\u{1}\"",
    ]
    .into_iter()
    .enumerate()
    {
        let msg = PubMsg {
            client_id: "c1".into(),
            guid: format!("g{i}"),
            subject: channel.into(),
            data: vec![b'x'; i * 10],
            ..Default::default()
        };
        wire.publish(
            c,
            &format!("_STAN.pub.test-cluster.{channel}"),
            &encode(&msg),
        );
    }
    let close = CloseRequest {
        client_id: "gone".into(),
    };
    wire.publish(c, "_STAN.close.test-cluster", &encode(&close));
    now = now.advanced(std::time::Duration::from_secs(2));
    node.handle_timeout(now);
    drain(&mut node, now);
    (node, now)
}

struct Wire<'n> {
    node: &'n mut Node,
    now: Now,
}

impl Wire<'_> {
    fn connect(&mut self, port: u16, options: &str) -> ConnId {
        let conn = self
            .node
            .accept(self.now, SocketAddr::from(([127, 0, 0, 1], port)));
        self.send(conn, format!("CONNECT {options}\r\n").as_bytes());
        conn
    }

    fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.node
            .handle_input(self.now, Input::Received { conn, bytes });
        drain(self.node, self.now);
    }

    fn publish(&mut self, conn: ConnId, subject: &str, payload: &[u8]) {
        let mut out = Vec::new();
        proto::write_pub(
            &mut out,
            subject.as_bytes(),
            Some(b"_INBOX.reply"),
            None,
            payload,
        );
        self.send(conn, &out);
    }
}

/// Takes every output, as the driver does once it has written it.
fn drain(node: &mut Node, now: Now) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn document(path: &str, query: &str) -> serde_json::Value {
        let Route::Node(request) = routes::route("/", path, query) else {
            panic!("{path} needs the node");
        };
        let env = Env {
            nats: Default::default(),
            utc_offset_secs: 0,
            start_wall_ns: START_WALL_NS,
            fds: Ok((0, 0)),
        };
        match MONITORED.with(|(node, now)| request.answer(node, *now, &env)) {
            Reply::Json { body, .. } => serde_json::from_slice(&body).unwrap(),
            other => panic!("{path}: {other:?}"),
        }
    }

    /// The documents the target fuzzes have entries to list, page and filter.
    #[test]
    fn monitored_node_lists_something() {
        assert_eq!(document("/connz", "")["num_connections"], 4);
        let channels = document("/streaming/channelsz", "subs=1");
        assert_eq!(channels["count"], 4);
        let clients = document("/streaming/clientsz", "subs=1");
        assert_eq!(clients["count"], 2);
        let store = document("/streaming/storez", "");
        assert_eq!(store["total_msgs"], 6);
        assert!(document("/subsz", "subs=1")["num_subscriptions"].as_u64() > Some(5));
    }
}

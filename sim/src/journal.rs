//! The ordered record of one run: what every client saw, what the server logged and
//! which faults were applied, each stamped with simulated time.
//!
//! The oracle reads it and the trace hash is taken over it, so everything written here
//! must be a function of the seed alone: no addresses, no host-side wall clock.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stan_core::client::StartAt;

/// A client incarnation: the actor (host) and the how-many-th connection it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Inc {
    pub actor: u32,
    pub n: u32,
}

impl fmt::Display for Inc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{}", self.actor, self.n)
    }
}

/// How a subscription attaches on the server; decides which deliveries share history.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubKind {
    Plain,
    Durable(String),
    Queue(String),
    DurableQueue { durable: String, group: String },
}

impl SubKind {
    pub fn is_queue(&self) -> bool {
        matches!(self, SubKind::Queue(_) | SubKind::DurableQueue { .. })
    }
}

impl fmt::Display for SubKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubKind::Plain => f.write_str("plain"),
            SubKind::Durable(d) => write!(f, "durable={d}"),
            SubKind::Queue(g) => write!(f, "queue={g}"),
            SubKind::DurableQueue { durable, group } => {
                write!(f, "durable={durable},queue={group}")
            }
        }
    }
}

/// Why a client stopped answering heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// The process stopped running (it reads nothing and answers nothing).
    Freeze,
    /// The network holds its packets and delivers them later.
    Hold,
    /// The network drops its packets; the TCP connection never recovers.
    Partition,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    /// A client opens a TCP connection to start a new STAN connection.
    Connecting {
        inc: Inc,
        client_id: String,
    },
    Connected {
        inc: Inc,
    },
    ConnectFailed {
        inc: Inc,
        error: String,
    },
    /// The connection ended without a close: ping failure, server gone, socket error.
    Lost {
        inc: Inc,
        error: String,
    },
    CloseSent {
        inc: Inc,
    },
    Closed {
        inc: Inc,
        error: Option<String>,
    },
    /// The client dropped its socket without closing, as a killed process does.
    Dropped {
        inc: Inc,
    },
    Published {
        inc: Inc,
        channel: String,
        payload: String,
    },
    PubAck {
        inc: Inc,
        payload: String,
        error: Option<String>,
    },
    SubRequested {
        inc: Inc,
        sub: u32,
        channel: String,
        kind: SubKind,
        start: StartAt,
        max_in_flight: i32,
        manual: bool,
    },
    Subscribed {
        inc: Inc,
        sub: u32,
    },
    SubFailed {
        inc: Inc,
        sub: u32,
        error: String,
    },
    /// The client asked to end a subscription: unsubscribe (forget) or close (keep durable).
    SubEnding {
        inc: Inc,
        sub: u32,
        unsubscribe: bool,
    },
    SubEnded {
        inc: Inc,
        sub: u32,
        error: Option<String>,
    },
    Msg {
        inc: Inc,
        sub: u32,
        seq: u64,
        redelivered: bool,
        count: u32,
        payload: String,
        timestamp: i64,
    },
    Ack {
        inc: Inc,
        sub: u32,
        seq: u64,
    },
    /// The client chose not to acknowledge this delivery.
    AckSkipped {
        inc: Inc,
        sub: u32,
        seq: u64,
    },
    SilenceStart {
        actor: u32,
        cause: Silence,
    },
    SilenceEnd {
        actor: u32,
        cause: Silence,
    },
    /// The streaming server registered a client (connect accepted).
    Registered {
        client_id: String,
    },
    /// The streaming server dropped a client's registration.
    Unregistered {
        client_id: String,
        reason: Unregister,
    },
    /// Client IDs registered on the server when the run ended.
    ServerFinal {
        client_ids: Vec<String>,
    },
    /// The server process died; its memory store went with it, and with the FILE store
    /// whatever was not synced to disk.
    ServerDown,
    /// The server process started again.
    ServerUp,
    /// A crash left `kept` of the `unsynced` bytes last appended to `file` (under the
    /// data directory) on disk.
    Torn {
        file: String,
        kept: u64,
        unsynced: u64,
    },
    /// The FILE store synced the disk (journaled only without `--file_sync`, where it
    /// bounds what a crash may lose).
    DiskSynced,
    /// The FILE store refused to start.
    StoreRefused {
        error: String,
    },
    /// What the FILE store recovered of one channel at a start: its sequence range and
    /// the payload of every message it could read back (`None`: the lookup failed).
    StoreRecovered {
        channel: String,
        first: u64,
        last: u64,
        msgs: Vec<(u64, Option<String>)>,
    },
    /// A warning or error line of the server.
    ServerLog {
        line: String,
    },
    Panic {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unregister {
    /// The client asked to close.
    Closed,
    /// Heartbeats failed too often.
    HeartbeatTimeout,
    /// A connect with the same client ID replaced it.
    Replaced,
    /// The server went down (never logged; the oracle infers it from `ServerDown`).
    ServerDown,
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Connecting { inc, client_id } => write!(f, "{inc} connecting id={client_id}"),
            Ev::Connected { inc } => write!(f, "{inc} connected"),
            Ev::ConnectFailed { inc, error } => write!(f, "{inc} connect-failed {error:?}"),
            Ev::Lost { inc, error } => write!(f, "{inc} lost {error:?}"),
            Ev::CloseSent { inc } => write!(f, "{inc} close-sent"),
            Ev::Closed { inc, error } => write!(f, "{inc} closed {error:?}"),
            Ev::Dropped { inc } => write!(f, "{inc} dropped-socket"),
            Ev::Published { inc, channel, payload } => write!(f, "{inc} publish {channel} {payload}"),
            Ev::PubAck { inc, payload, error } => write!(f, "{inc} puback {payload} {error:?}"),
            Ev::SubRequested { inc, sub, channel, kind, start, max_in_flight, manual } => write!(
                f,
                "{inc} subscribe s{sub} {channel} {kind} start={start:?} mif={max_in_flight} manual={manual}"
            ),
            Ev::Subscribed { inc, sub } => write!(f, "{inc} subscribed s{sub}"),
            Ev::SubFailed { inc, sub, error } => write!(f, "{inc} subscribe-failed s{sub} {error:?}"),
            Ev::SubEnding { inc, sub, unsubscribe } => {
                let what = if *unsubscribe { "unsubscribe" } else { "close-sub" };
                write!(f, "{inc} {what} s{sub}")
            }
            Ev::SubEnded { inc, sub, error } => write!(f, "{inc} sub-ended s{sub} {error:?}"),
            Ev::Msg { inc, sub, seq, redelivered, count, payload, timestamp } => write!(
                f,
                "{inc} msg s{sub} seq={seq} redelivered={redelivered} count={count} {payload} ts={timestamp}"
            ),
            Ev::Ack { inc, sub, seq } => write!(f, "{inc} ack s{sub} seq={seq}"),
            Ev::AckSkipped { inc, sub, seq } => write!(f, "{inc} skip-ack s{sub} seq={seq}"),
            Ev::SilenceStart { actor, cause } => write!(f, "c{actor} silent {cause:?}"),
            Ev::SilenceEnd { actor, cause } => write!(f, "c{actor} answers again after {cause:?}"),
            Ev::Registered { client_id } => write!(f, "server registered {client_id}"),
            Ev::Unregistered { client_id, reason } => write!(f, "server unregistered {client_id} {reason:?}"),
            Ev::ServerFinal { client_ids } => write!(f, "server final clients {client_ids:?}"),
            Ev::ServerDown => f.write_str("server down"),
            Ev::ServerUp => f.write_str("server up"),
            Ev::Torn { file, kept, unsynced } => {
                write!(f, "disk kept {kept} of {unsynced} unsynced bytes of {file}")
            }
            Ev::DiskSynced => f.write_str("disk synced"),
            Ev::StoreRefused { error } => write!(f, "store refused to start: {error}"),
            Ev::StoreRecovered { channel, first, last, msgs } => {
                write!(f, "store recovered {channel} first={first} last={last}:")?;
                for (seq, payload) in msgs {
                    match payload {
                        Some(p) => write!(f, " {seq}={p}")?,
                        None => write!(f, " {seq}=?")?,
                    }
                }
                Ok(())
            }
            Ev::ServerLog { line } => write!(f, "server log {line}"),
            Ev::Panic { message } => write!(f, "PANIC {message}"),
        }
    }
}

/// One event with its simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub at: Duration,
    pub ev: Ev,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>4}.{:06}] {}",
            self.at.as_secs(),
            self.at.subsec_micros(),
            self.ev
        )
    }
}

/// Shared by every host of one run. All hosts of a simulation run on one thread, one
/// after the other, so the order of appends is itself deterministic.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<Entry>>>);

impl Journal {
    pub fn record(&self, at: Duration, ev: Ev) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry { at, ev });
    }

    /// The entries in time order; entries of equal time keep the order they were made in.
    pub fn sorted(&self) -> Vec<Entry> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by_key(|e| e.at);
        v
    }
}

/// FNV-1a (64 bit) over the rendered entries, one line each: stable across processes,
/// machines and Rust versions, unlike the standard library's hashers.
pub fn trace_hash(entries: &[Entry]) -> u64 {
    let mut h = Fnv1a::default();
    for e in entries {
        h.write(e.to_string().as_bytes());
        h.write(b"\n");
    }
    h.0
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv(bytes: &[u8]) -> u64 {
        let mut h = Fnv1a::default();
        h.write(bytes);
        h.0
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_covers_time_and_content() {
        let e = |ms, m: &str| Entry {
            at: Duration::from_millis(ms),
            ev: Ev::Panic { message: m.into() },
        };
        let base = trace_hash(&[e(1, "a"), e(2, "b")]);
        assert_eq!(
            base,
            fnv(format!("{}\n{}\n", e(1, "a"), e(2, "b")).as_bytes())
        );
        assert_ne!(base, trace_hash(&[e(1, "a"), e(3, "b")]));
        assert_ne!(base, trace_hash(&[e(1, "a"), e(2, "c")]));
        assert_ne!(base, trace_hash(&[e(2, "b"), e(1, "a")]));
    }

    #[test]
    fn sorting_keeps_append_order_for_equal_times() {
        let j = Journal::default();
        j.record(
            Duration::from_millis(2),
            Ev::Panic {
                message: "b".into(),
            },
        );
        j.record(
            Duration::from_millis(1),
            Ev::Panic {
                message: "a".into(),
            },
        );
        j.record(
            Duration::from_millis(2),
            Ev::Panic {
                message: "c".into(),
            },
        );
        let order: Vec<String> = j.sorted().iter().map(|e| e.ev.to_string()).collect();
        assert_eq!(order, ["PANIC a", "PANIC b", "PANIC c"]);
    }
}

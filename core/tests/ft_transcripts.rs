//! Fault-tolerance mode on virtual time (BEHAVIOUR §11): a standby waiting on the
//! FT subject, its attempts at the store's lock and their outcomes, activation, the
//! active server's heartbeats, and heartbeats of another active server.

mod common;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use common::{show, START_WALL_NS};
use prost::Message;
use stan_core::log::Level;
use stan_core::nats::proto::{self, Limits, ServerOp};
use stan_core::nats::{ConnId, Input, Output};
use stan_core::node::{Node, NodeConfig};
use stan_core::store::{MemStore, Unopened};
use stan_core::streaming::ft::{GoTime, StoreLock};
use stan_core::streaming::pb::{ConnectRequest, ConnectResponse, CtrlMsg, CtrlMsgType};
use stan_core::streaming::{self};
use stan_core::timefmt::rfc3339_nanos;
use stan_core::{Instant, Now};

const FT_SUBJECT: &str = "_STAN.ft.test-cluster.grp";

/// What the next attempt at the lock finds.
#[derive(Clone, Copy, Debug)]
enum Lock {
    Busy,
    Failed,
    Taken,
}

/// One FT group member and a plain NATS connection standing for the rest of the
/// group: it listens on the FT subject and can publish there.
struct FtWorld {
    node: Node,
    now: Now,
    transcript: String,
    peer: ConnId,
    /// Outcomes of the coming attempts at the lock; `Busy` once they run out.
    script: VecDeque<Lock>,
    /// When each attempt was asked for.
    attempts: Vec<Instant>,
    /// Log lines with their time.
    logs: Vec<(Instant, Level, String)>,
    /// Heartbeats the peer received: time, server ID, activation time.
    heartbeats: Vec<(Instant, String, GoTime)>,
    /// Bytes a connection received and nobody looked at yet.
    inbox: std::collections::BTreeMap<ConnId, Vec<u8>>,
    next_port: u16,
}

impl FtWorld {
    fn new(seed: u64, script: &[Lock]) -> FtWorld {
        let cfg = NodeConfig {
            nats: stan_core::nats::Config {
                rng_seed: 3,
                ..Default::default()
            },
            streaming: Some(streaming::Config {
                rng_seed: seed,
                ft_group: Some("grp".into()),
                ..streaming::Config::default()
            }),
        };
        let node = Node::with_streaming(cfg, Box::new(Unopened::new("FILE"))).unwrap();
        let mut w = FtWorld {
            node,
            now: Now {
                mono: Instant::from_nanos(0),
                wall_ns: START_WALL_NS,
            },
            transcript: String::new(),
            peer: ConnId(0),
            script: script.iter().copied().collect(),
            attempts: Vec::new(),
            logs: Vec::new(),
            heartbeats: Vec::new(),
            inbox: Default::default(),
            next_port: 40000,
        };
        w.node.start(w.now).unwrap();
        w.drain();
        // The peer does not hear its own messages back.
        w.peer = w.nats_client(b"CONNECT {\"echo\":false}\r\n");
        w.raw(w.peer, format!("SUB {FT_SUBJECT} 1\r\nPING\r\n").as_bytes());
        w.inbox.remove(&w.peer);
        w
    }

    fn stamp(&self) -> String {
        let ms = self.now.mono.as_nanos() / 1_000_000;
        format!("[{}.{:03}s]", ms / 1000, ms % 1000)
    }

    fn line(&mut self, text: String) {
        let stamp = self.stamp();
        let _ = writeln!(self.transcript, "{stamp} {text}");
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.transcript, "# {text}");
    }

    fn nats_client(&mut self, connect: &[u8]) -> ConnId {
        self.next_port += 1;
        let peer = format!("127.0.0.1:{}", self.next_port).parse().unwrap();
        let conn = self.node.accept(self.now, peer);
        self.raw(conn, connect);
        self.inbox.remove(&conn);
        conn
    }

    fn raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.node
            .handle_input(self.now, Input::Received { conn, bytes });
        self.drain();
    }

    /// The peer publishes on the FT subject.
    fn peer_publishes(&mut self, what: &str, payload: &[u8]) {
        self.line(format!("peer -> {FT_SUBJECT}: {what}"));
        let mut out = Vec::new();
        proto::write_pub(&mut out, FT_SUBJECT.as_bytes(), None, None, payload);
        self.raw(self.peer, &out);
    }

    /// A heartbeat of another active server.
    fn peer_heartbeat(&mut self, server_id: &str, activated: GoTime) {
        let hb = CtrlMsg {
            msg_type: CtrlMsgType::FtHeartbeat as i32,
            server_id: server_id.into(),
            data: activated.marshal(),
            ref_id: String::new(),
        };
        let when = rfc3339_nanos(activated.unix_nanos() as i64, 0);
        self.peer_publishes(
            &format!("FTHeartbeat server_id={server_id} activated={when}"),
            &hb.encode_to_vec(),
        );
    }

    /// A STAN connect request on a connection of its own: its reply, as received.
    fn stan_connect(&mut self, client_id: &str) -> String {
        let conn = self
            .nats_client(b"CONNECT {\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n");
        let req = ConnectRequest {
            client_id: client_id.into(),
            heartbeat_inbox: format!("_INBOX.hb.{client_id}"),
            protocol: 1,
            conn_id: client_id.as_bytes().to_vec(),
            ping_interval: 5,
            ping_max_out: 3,
        };
        let mut out = b"SUB _INBOX.reply 1\r\n".to_vec();
        proto::write_pub(
            &mut out,
            b"_STAN.discover.test-cluster",
            Some(b"_INBOX.reply"),
            None,
            &req.encode_to_vec(),
        );
        self.line(format!(
            "{client_id} -> _STAN.discover.test-cluster: connect"
        ));
        self.raw(conn, &out);
        let got = self.inbox.remove(&conn).unwrap_or_default();
        let answer = match proto::parse_server_op(&got, &Limits::default()) {
            Ok(Some((
                ServerOp::Msg {
                    header_len: Some(n),
                    payload,
                    ..
                },
                _,
            ))) => format!("status {}", String::from_utf8_lossy(&payload[..n]).trim()),
            Ok(Some((ServerOp::Msg { payload, .. }, _))) => {
                let r = ConnectResponse::decode(payload).unwrap();
                format!(
                    "ConnectResponse pub_prefix={} error={:?}",
                    r.pub_prefix, r.error
                )
            }
            _ => format!("nothing ({})", show(&got)),
        };
        self.line(format!("{client_id} <- {answer}"));
        answer
    }

    /// Advances virtual time by `d`, firing timers and answering lock attempts.
    fn advance(&mut self, d: Duration) {
        let end = self.now.advanced(d);
        while let Some(at) = self.node.poll_timeout() {
            if at > end.mono {
                break;
            }
            self.now = self.now.advanced(at.saturating_since(self.now.mono));
            self.node.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn drain(&mut self) {
        loop {
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Send { conn, data } => {
                        self.node.handle_input(
                            self.now,
                            Input::Flushed {
                                conn,
                                bytes: data.len(),
                            },
                        );
                        if conn == self.peer {
                            self.peer_received(&data);
                        } else {
                            self.inbox.entry(conn).or_default().extend_from_slice(&data);
                        }
                    }
                    Output::Close { conn } => self.line(format!("close c{}", conn.0)),
                    Output::Log(l) => {
                        self.logs.push((self.now.mono, l.level, l.text.clone()));
                        self.line(format!("log [{}] {}", l.level.tag(), l.text));
                    }
                    // These servers have no cluster port.
                    Output::Dial { url } => panic!("unexpected dial of {}", url.url),
                }
            }
            if !self.node.poll_store_lock() {
                break;
            }
            self.attempts.push(self.now.mono);
            let next = self.script.pop_front().unwrap_or(Lock::Busy);
            self.line(format!("lock attempt: {next:?}"));
            let outcome = match next {
                Lock::Busy => StoreLock::Busy,
                Lock::Failed => {
                    StoreLock::Failed("open /data/.rootdir.lck: no such file or directory".into())
                }
                Lock::Taken => StoreLock::Taken(Box::new(MemStore::new())),
            };
            self.node.handle_store_lock(self.now, outcome);
        }
    }

    fn peer_received(&mut self, data: &[u8]) {
        let mut pos = 0;
        while let Ok(Some((op, used))) = proto::parse_server_op(&data[pos..], &Limits::default()) {
            pos += used;
            let ServerOp::Msg { payload, .. } = op else {
                continue;
            };
            let hb = CtrlMsg::decode(payload).unwrap();
            let at = GoTime::unmarshal(&hb.data).unwrap();
            let text = format!(
                "peer <- {FT_SUBJECT}: {:?} server_id={} activated={}",
                CtrlMsgType::try_from(hb.msg_type).unwrap(),
                hb.server_id,
                rfc3339_nanos(at.unix_nanos() as i64, 0)
            );
            self.heartbeats.push((self.now.mono, hb.server_id, at));
            self.line(text);
        }
    }

    fn state(&self) -> &'static str {
        self.node.streaming().unwrap().state()
    }

    fn intervals(&self) -> (Duration, Duration) {
        self.node.streaming().unwrap().ft_intervals().unwrap()
    }

    fn server_id(&self) -> String {
        self.node.streaming().unwrap().server_id().to_string()
    }
}

fn secs(d: f64) -> Duration {
    Duration::from_secs_f64(d)
}

#[test]
fn standby_waits_while_heartbeats_come_then_takes_the_lock_and_serves() {
    let mut w = FtWorld::new(11, &[Lock::Busy, Lock::Busy, Lock::Taken]);
    let (hb, missed) = w.intervals();
    assert_eq!(w.state(), "FT_STANDBY");
    assert!(w.logs.iter().any(|l| l.2 == "Starting in standby mode"));
    assert!(!w.node.streaming().unwrap().is_ft_active());

    w.note("a standby serves no STAN request: connects find no responders");
    assert_eq!(w.stan_connect("early"), "status NATS/1.0 503");

    w.note("the active server's heartbeats (any message, even garbage) keep it waiting");
    for i in 0..5 {
        w.advance(missed.mul_f64(0.9));
        if i == 2 {
            w.peer_publishes("garbage", b"not a control message");
        } else {
            w.peer_heartbeat("ACTIVE", GoTime::from_unix_nanos(START_WALL_NS - 1));
        }
    }
    assert!(w.attempts.is_empty(), "no attempt while heartbeats come");
    assert_eq!(w.state(), "FT_STANDBY");

    w.note("the heartbeats stop: it tries the lock after each missed interval");
    let silent_from = w.now.mono;
    w.advance(secs(10.0));
    assert_eq!(w.attempts.len(), 3);
    assert_eq!(w.attempts[0] - silent_from, missed);
    assert_eq!(w.attempts[1] - w.attempts[0], missed);
    assert_eq!(w.attempts[2] - w.attempts[1], missed);
    let busy_logs = w
        .logs
        .iter()
        .filter(|l| l.2 == "ft: unable to get store lock at this time, going back to standby")
        .count();
    assert_eq!(
        busy_logs, 2,
        "both busy attempts are logged (1 s apart at least)"
    );

    let activated_at = w.attempts[2];
    assert_eq!(w.state(), "FT_ACTIVE");
    assert!(w.node.streaming().unwrap().is_ft_active());
    let order: Vec<&str> = w
        .logs
        .iter()
        .filter(|l| l.0 == activated_at)
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(
        &order[..3],
        &[
            "Server is active",
            "Recovering the state...",
            "No recovered state"
        ]
    );
    assert!(order.contains(&"Streaming Server is ready"));
    let me = w.server_id();
    let times: Vec<Instant> = w.heartbeats.iter().map(|h| h.0).collect();
    assert_eq!(times[0], activated_at, "the first heartbeat leaves at once");
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], hb);
    }
    assert!(times.len() >= 5);
    let activated = GoTime::from_unix_nanos(START_WALL_NS + (activated_at.as_nanos() as i64));
    assert!(w.heartbeats.iter().all(|h| h.1 == me && h.2 == activated));
    w.note("the active server serves STAN clients");
    let r = w.stan_connect("late");
    assert!(r.starts_with("ConnectResponse pub_prefix=_STAN.pub.test-cluster error=\"\""));
    snapshot!("ft_standby_to_active", w.transcript);
}

#[test]
fn busy_lock_is_logged_at_growing_intervals() {
    let mut w = FtWorld::new(5, &[]);
    let (_, missed) = w.intervals();
    w.advance(secs(240.0));
    let busy: Vec<Instant> = w
        .logs
        .iter()
        .filter(|l| l.2 == "ft: unable to get store lock at this time, going back to standby")
        .map(|l| l.0)
        .collect();
    // Every attempt is busy; the line is logged the first time, then once at least 1 s,
    // 2 s, 4 s ... (capped at 1 min) have passed since the previous one.
    assert_eq!(w.attempts[0], Instant::from_nanos(0) + missed);
    for pair in w.attempts.windows(2) {
        assert_eq!(pair[1] - pair[0], missed);
    }
    assert_eq!(busy[0], w.attempts[0]);
    let mut period = Duration::from_secs(1);
    for pair in busy.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= period, "{gap:?} >= {period:?}");
        assert!(gap < period + missed, "{gap:?} < {period:?} + one attempt");
        period = (period * 2).min(Duration::from_secs(60));
    }
    assert!(busy.len() >= 8, "{busy:?}");
    assert_eq!(w.state(), "FT_STANDBY");
    // The transcript of the first minute and a half.
    let cut: String = w
        .transcript
        .lines()
        .filter(|l| {
            l.starts_with("[") && l[1..].split('.').next().unwrap().parse::<u32>().unwrap() < 90
        })
        .filter(|l| l.contains("log ["))
        .map(|l| format!("{l}\n"))
        .collect();
    snapshot!("ft_lock_busy_log_backoff", cut);
}

#[test]
fn lock_errors_are_logged_and_retried() {
    let mut w = FtWorld::new(7, &[Lock::Failed, Lock::Failed, Lock::Taken]);
    let (_, missed) = w.intervals();
    w.advance(missed * 3);
    let errors: Vec<&(Instant, Level, String)> =
        w.logs.iter().filter(|l| l.1 == Level::Error).collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0].2,
        "ft: error attempting to get the store lock: ft: fatal error getting the store lock: open /data/.rootdir.lck: no such file or directory"
    );
    assert_eq!(w.attempts.len(), 3);
    assert_eq!(w.state(), "FT_ACTIVE");
    assert!(w.node.failure().is_none());
}

#[test]
fn another_active_server_activated_later_is_logged_earlier_aborts() {
    let mut w = FtWorld::new(13, &[Lock::Taken]);
    let (hb, missed) = w.intervals();
    w.advance(missed);
    assert_eq!(w.state(), "FT_ACTIVE");
    let activated = w.heartbeats[0].2;
    w.advance(hb.mul_f64(1.5));

    w.note("a message that is not another server's heartbeat changes nothing");
    let sent = w.heartbeats.len();
    w.peer_publishes("garbage", b"\xff\xff");

    w.note("a server that activated later: logged, and a heartbeat goes out at once");
    let later = GoTime::from_unix_nanos(activated.unix_nanos() as i64 + 1);
    w.peer_heartbeat("LATER", later);
    assert_eq!(w.heartbeats.len(), sent + 1);
    assert_eq!(w.heartbeats.last().unwrap().0, w.now.mono);
    assert_eq!(
        w.logs.last().unwrap().2,
        "ft: serverID \"LATER\" claims to be active"
    );
    assert_eq!(w.logs.last().unwrap().1, Level::Error);
    w.note("same activation time: not earlier, so logged too");
    w.peer_heartbeat("SAME", activated);
    w.note("an activation time that does not decode");
    let bad = CtrlMsg {
        msg_type: CtrlMsgType::FtHeartbeat as i32,
        server_id: "BAD".into(),
        data: vec![9],
        ref_id: String::new(),
    };
    w.peer_publishes("FTHeartbeat server_id=BAD data=[9]", &bad.encode_to_vec());
    assert_eq!(
        w.logs.last().unwrap().2,
        "Error decoding activation time: Time.UnmarshalBinary: unsupported version"
    );
    assert!(w.node.failure().is_none());
    assert_eq!(w.state(), "FT_ACTIVE");

    w.note("the wait for the next heartbeat restarts with every message");
    let last = w.now.mono;
    w.advance(hb.mul_f64(0.5));
    w.peer_publishes("garbage", b"x");
    let restart = w.now.mono;
    w.advance(hb.mul_f64(0.9));
    assert_eq!(w.heartbeats.last().unwrap().0, last);
    w.advance(hb.mul_f64(0.2));
    assert_eq!(w.heartbeats.last().unwrap().0, restart + hb);

    w.note("a server that activated earlier: this one aborts");
    let earlier = GoTime::from_unix_nanos(activated.unix_nanos() as i64 - 1);
    w.peer_heartbeat("EARLIER", earlier);
    assert_eq!(
        w.node.failure(),
        Some("ft: serverID \"EARLIER\" claims to be active, aborting")
    );
    assert_eq!(w.logs.last().unwrap().1, Level::Fatal);
    assert_eq!(w.state(), "FAILED");
    let sent = w.heartbeats.len();
    w.advance(hb * 5);
    assert_eq!(w.heartbeats.len(), sent, "no heartbeat after aborting");
    snapshot!("ft_active_conflicts", w.transcript);
}

#[test]
fn the_same_seed_draws_the_same_intervals_and_runs_the_same() {
    let run = |seed| {
        let mut w = FtWorld::new(seed, &[Lock::Busy, Lock::Taken]);
        w.advance(secs(8.0));
        w.transcript
    };
    assert_eq!(run(21), run(21));
    assert_ne!(run(21), run(22));
}

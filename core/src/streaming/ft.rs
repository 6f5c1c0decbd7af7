//! Fault-tolerance mode (BEHAVIOUR §11, PROTOCOL §7.1).
//!
//! The servers of an FT group share one store. The one holding the store's exclusive
//! lock serves clients and publishes heartbeats on the group's FT subject; the others
//! stand by with no client-facing subscription and no store read. A standby that hears
//! nothing on the FT subject for the missed-heartbeat interval asks for an attempt at
//! the lock. Taking the lock is the runtime's IO, so the attempt is an output
//! ([`Streaming::poll_store_lock`]) and its outcome an input
//! ([`Streaming::handle_store_lock`]).

use std::fmt;
use std::time::Duration;

use prost::Message;

use super::pb::{CtrlMsg, CtrlMsgType};
use super::server::{sid, Action, Streaming};
use crate::gofmt::go_quote;
use crate::log::Level;
use crate::rng::Rng;
use crate::store::Store;
use crate::time::{Instant, Now};

/// The active server's heartbeat period and a standby's wait before it tries the lock,
/// before the per-process variation.
const HB_INTERVAL: Duration = Duration::from_secs(1);
const MISSED_INTERVAL: Duration = Duration::from_millis(1250);

/// What the runtime found when it tried the store's exclusive lock.
pub enum StoreLock {
    /// The lock is held; the store, opened under it, is what the server recovers and
    /// serves from now on.
    Taken(Box<dyn Store>),
    /// Another process holds the lock.
    Busy,
    /// The attempt failed for another reason (the text of the error); the standby
    /// tries again after its next wait.
    Failed(String),
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLock::Taken(store) => write!(f, "Taken({})", store.kind()),
            StoreLock::Busy => f.write_str("Busy"),
            StoreLock::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

/// An instant in the binary form of Go's `time.Time` (PROTOCOL §7.1): seconds since
/// 0001-01-01T00:00:00Z and nanoseconds. Heartbeats carry the sender's activation time
/// this way, and Go servers of the same group read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoTime {
    pub secs: i64,
    pub nanos: i32,
}

/// Seconds from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_SECS: i64 = 62_135_596_800;

impl GoTime {
    pub fn from_unix_nanos(ns: i64) -> GoTime {
        GoTime {
            secs: ns.div_euclid(1_000_000_000) + UNIX_EPOCH_SECS,
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Unix nanoseconds (wide enough for every value the binary form holds).
    pub fn unix_nanos(self) -> i128 {
        i128::from(self.secs - UNIX_EPOCH_SECS) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// Version 1 of the encoding, in UTC (zone offset -1): the zone does not change
    /// which of two instants is earlier, the only question a peer asks.
    pub fn marshal(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(15);
        out.push(1);
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.nanos.to_be_bytes());
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Reads versions 1 and 2; the errors are Go's texts.
    pub fn unmarshal(b: &[u8]) -> Result<GoTime, &'static str> {
        let Some(&version) = b.first() else {
            return Err("Time.UnmarshalBinary: no data");
        };
        let want = match version {
            1 => 15,
            2 => 16,
            _ => return Err("Time.UnmarshalBinary: unsupported version"),
        };
        if b.len() != want {
            return Err("Time.UnmarshalBinary: invalid length");
        }
        Ok(GoTime {
            secs: i64::from_be_bytes(b[1..9].try_into().expect("8 bytes")),
            nanos: i32::from_be_bytes(b[9..13].try_into().expect("4 bytes")),
        })
    }
}

/// Go's rate limit for repeated log lines: yes the first time, then not before 1 s,
/// 2 s, 4 s … (at most 1 min) have passed since the previous yes; at the cap, a call
/// more than two periods late starts over.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Option<Instant>,
    period: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    pub(crate) fn new() -> Backoff {
        Backoff {
            next: None,
            period: Self::MIN,
        }
    }

    pub(crate) fn ok(&mut self, now: Instant) -> bool {
        let Some(next) = self.next else {
            self.next = Some(now + Self::MIN);
            return true;
        };
        if now < next {
            return false;
        }
        if self.period == Self::MAX && now - next >= 2 * Self::MAX {
            // Like Go's reset: the call after this one says yes again at once.
            *self = Backoff::new();
            return true;
        }
        self.period = (self.period * 2).min(Self::MAX);
        self.next = Some(now + self.period);
        true
    }
}

/// Where a member of an FT group stands.
#[derive(Debug)]
enum FtState {
    /// The node has not started.
    Idle,
    /// Waiting for the active server's heartbeats; the lock is tried at `try_at`
    /// unless a message on the FT subject comes first.
    Standby { try_at: Instant },
    /// An attempt at the lock is due and the runtime has not taken it up.
    LockDue,
    /// The runtime is trying the lock.
    Locking,
    /// Holding the lock and serving; the next heartbeat leaves at `next`.
    Active {
        activated: GoTime,
        heartbeat: Vec<u8>,
        next: Instant,
    },
    /// Failed for good; the process is expected to exit.
    Stopped,
}

/// The FT part of a streaming server.
#[derive(Debug)]
pub(crate) struct Ft {
    subject: String,
    hb_interval: Duration,
    missed_interval: Duration,
    state: FtState,
    busy_log: Backoff,
}

impl Ft {
    /// The group's member; its two intervals are drawn once, here, from `seed`, so that
    /// standbys started together do not try the lock in step.
    pub(crate) fn new(cluster_id: &str, group: &str, seed: u64) -> Ft {
        let mut rng = Rng::new(seed ^ 0x4654_5f67_726f_7570);
        Ft {
            subject: format!("_STAN.ft.{cluster_id}.{group}"),
            hb_interval: vary(HB_INTERVAL, &mut rng),
            missed_interval: vary(MISSED_INTERVAL, &mut rng),
            state: FtState::Idle,
            busy_log: Backoff::new(),
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            FtState::Standby { try_at } => Some(try_at),
            FtState::Active { next, .. } => Some(next),
            _ => None,
        }
    }
}

/// `interval` plus or minus a random amount below 10 % of it, as the Go server draws it.
fn vary(interval: Duration, rng: &mut Rng) -> Duration {
    let tenth = (interval.as_nanos() / 10) as usize;
    let delta = Duration::from_nanos(rng.below(tenth) as u64);
    if rng.below(2) == 1 {
        interval + delta
    } else {
        interval - delta
    }
}

/// What a message on the FT subject means to an active server.
enum Claim {
    /// Not a heartbeat of another server (its own echo, garbage, another type).
    None,
    Undecodable(&'static str),
    Earlier(String),
    NotEarlier(String),
}

impl Streaming {
    /// True once for every attempt at the store's lock the server wants; answer it
    /// with [`Streaming::handle_store_lock`].
    pub fn poll_store_lock(&mut self) -> bool {
        match self.ft.as_mut() {
            Some(ft) if matches!(ft.state, FtState::LockDue) => {
                ft.state = FtState::Locking;
                true
            }
            _ => false,
        }
    }

    /// The outcome of an attempt at the store's lock. Taken: the server becomes active
    /// and recovers and serves the given store. Otherwise it goes back to waiting.
    pub fn handle_store_lock(&mut self, now: Now, lock: StoreLock) {
        let Some(ft) = self.ft.as_mut() else {
            return;
        };
        if !matches!(ft.state, FtState::LockDue | FtState::Locking) {
            return;
        }
        let retry_at = now.mono + ft.missed_interval;
        match lock {
            StoreLock::Busy => {
                let log = ft.busy_log.ok(now.mono);
                ft.state = FtState::Standby { try_at: retry_at };
                if log {
                    self.log(
                        Level::Info,
                        "ft: unable to get store lock at this time, going back to standby".into(),
                    );
                }
            }
            StoreLock::Failed(e) => {
                ft.state = FtState::Standby { try_at: retry_at };
                self.log(
                    Level::Error,
                    format!("ft: error attempting to get the store lock: ft: fatal error getting the store lock: {e}"),
                );
            }
            StoreLock::Taken(store) => self.activate(now, store),
        }
    }

    /// The fatal error that stopped this server (an FT conflict, or a failed start
    /// after activation); the process should exit.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The `state` of `/streaming/serverz` (BEHAVIOUR §1).
    pub fn state(&self) -> &'static str {
        if self.failure.is_some() {
            return "FAILED";
        }
        if self.cluster.is_some() {
            return "CLUSTERED";
        }
        match self.ft.as_ref().map(|ft| &ft.state) {
            None => "STANDALONE",
            Some(FtState::Active { .. }) => "FT_ACTIVE",
            Some(_) => "FT_STANDBY",
        }
    }

    /// True for the active server of an FT group (`/streaming/isFTActive`).
    pub fn is_ft_active(&self) -> bool {
        self.state() == "FT_ACTIVE"
    }

    /// The heartbeat and missed-heartbeat intervals this FT group member drew at
    /// startup; `None` outside FT mode.
    pub fn ft_intervals(&self) -> Option<(Duration, Duration)> {
        self.ft
            .as_ref()
            .map(|ft| (ft.hb_interval, ft.missed_interval))
    }

    /// Starts waiting for the active server's heartbeats (the FT subject is watched
    /// from now on, whatever the role).
    pub(crate) fn enter_standby(&mut self, now: Now) {
        let Some(ft) = self.ft.as_mut() else {
            return;
        };
        if !matches!(ft.state, FtState::Idle) {
            return;
        }
        ft.state = FtState::Standby {
            try_at: now.mono + ft.missed_interval,
        };
        let subject = ft.subject.clone();
        self.actions.push_back(Action::Subscribe {
            sid: sid::FT,
            subject,
        });
        self.log(Level::Info, "Starting in standby mode".into());
    }

    pub(crate) fn ft_deadline(&self) -> Option<Instant> {
        self.ft.as_ref().and_then(Ft::deadline)
    }

    pub(crate) fn ft_timeout(&mut self, now: Now) {
        let Some(ft) = self.ft.as_mut() else {
            return;
        };
        match ft.state {
            FtState::Standby { try_at } if try_at <= now.mono => ft.state = FtState::LockDue,
            FtState::Active { next, .. } if next <= now.mono => self.send_ft_heartbeat(now),
            _ => {}
        }
    }

    /// A message on the FT subject.
    pub(crate) fn on_ft_msg(&mut self, now: Now, payload: &[u8]) {
        let server_id = &self.server_id;
        let Some(ft) = self.ft.as_mut() else {
            return;
        };
        let claim = match &mut ft.state {
            // Any message at all shows the group is alive: wait again.
            FtState::Standby { try_at } => {
                *try_at = now.mono + ft.missed_interval;
                return;
            }
            FtState::Active {
                activated, next, ..
            } => {
                // Every message restarts the wait for the next heartbeat, this
                // server's own echo included, as in the Go server.
                *next = now.mono + ft.hb_interval;
                claim_of(payload, server_id, *activated)
            }
            _ => return,
        };
        match claim {
            Claim::None => {}
            Claim::Undecodable(e) => {
                self.log(Level::Error, format!("Error decoding activation time: {e}"));
                self.send_ft_heartbeat(now);
            }
            Claim::NotEarlier(id) => {
                self.log(
                    Level::Error,
                    format!("ft: serverID {} claims to be active", go_quote(&id)),
                );
                self.send_ft_heartbeat(now);
            }
            // Two servers hold the lock (a broken shared file system, say): the one
            // that activated later steps down before it corrupts the store.
            Claim::Earlier(id) => self.fail(format!(
                "ft: serverID {} claims to be active, aborting",
                go_quote(&id)
            )),
        }
    }

    fn activate(&mut self, now: Now, store: Box<dyn Store>) {
        let server_id = self.server_id.clone();
        let Some(ft) = self.ft.as_mut() else {
            return;
        };
        let activated = GoTime::from_unix_nanos(now.wall_ns);
        let heartbeat = CtrlMsg {
            msg_type: CtrlMsgType::FtHeartbeat as i32,
            server_id,
            data: activated.marshal(),
            ref_id: String::new(),
        }
        .encode_to_vec();
        ft.state = FtState::Active {
            activated,
            heartbeat,
            next: now.mono,
        };
        self.store = store;
        self.log(Level::Info, "Server is active".into());
        self.send_ft_heartbeat(now);
        if let Err(e) = self.begin_serving(now) {
            self.fail(e);
        }
    }

    fn send_ft_heartbeat(&mut self, now: Now) {
        let Some(ft) = self.ft.as_mut() else {
            return;
        };
        let FtState::Active {
            heartbeat, next, ..
        } = &mut ft.state
        else {
            return;
        };
        *next = now.mono + ft.hb_interval;
        let payload = heartbeat.clone();
        let subject = ft.subject.clone();
        self.publish(subject, payload);
    }

    /// Stops this server for good: the line is logged as fatal and the runtime exits.
    pub(crate) fn fail(&mut self, error: String) {
        if let Some(ft) = self.ft.as_mut() {
            ft.state = FtState::Stopped;
        }
        self.log(Level::Fatal, error.clone());
        self.failure = Some(error);
    }
}

fn claim_of(payload: &[u8], own_id: &str, activated: GoTime) -> Claim {
    let Ok(hb) = CtrlMsg::decode(payload) else {
        return Claim::None;
    };
    if hb.msg_type != CtrlMsgType::FtHeartbeat as i32 || hb.server_id == own_id {
        return Claim::None;
    }
    match GoTime::unmarshal(&hb.data) {
        Err(e) => Claim::Undecodable(e),
        Ok(peer) if peer < activated => Claim::Earlier(hb.server_id),
        Ok(_) => Claim::NotEarlier(hb.server_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_binary_form() {
        // 2020-09-13T12:26:40Z (PROTOCOL §7.1).
        let t = GoTime::from_unix_nanos(1_600_000_000_000_000_000);
        let hex: String = t.marshal().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "010000000ed6f0070000000000ffff");
        assert_eq!(GoTime::unmarshal(&t.marshal()), Ok(t));
        assert_eq!(t.unix_nanos(), 1_600_000_000_000_000_000);
        let before = GoTime::from_unix_nanos(-1);
        assert_eq!(
            (before.secs, before.nanos),
            (UNIX_EPOCH_SECS - 1, 999_999_999)
        );
        assert!(before < GoTime::from_unix_nanos(0));
    }

    #[test]
    fn go_time_accepts_version_2_and_refuses_the_rest() {
        let mut v2 = GoTime::from_unix_nanos(5).marshal();
        v2[0] = 2;
        v2.push(30);
        assert_eq!(GoTime::unmarshal(&v2), Ok(GoTime::from_unix_nanos(5)));
        assert_eq!(GoTime::unmarshal(&[]), Err("Time.UnmarshalBinary: no data"));
        assert_eq!(
            GoTime::unmarshal(&[3, 0]),
            Err("Time.UnmarshalBinary: unsupported version")
        );
        assert_eq!(
            GoTime::unmarshal(&v2[..15]),
            Err("Time.UnmarshalBinary: invalid length")
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute_then_resets_after_a_long_silence() {
        let at = |ms: u64| Instant::from_nanos(ms * 1_000_000);
        let mut b = Backoff::new();
        let yes: Vec<u64> = (0..200_000)
            .step_by(250)
            .filter(|&ms| b.ok(at(ms)))
            .collect();
        // 1 s after the first, then 2 s, 4 s, ... 32 s, then a minute each time.
        assert_eq!(
            yes,
            vec![0, 1000, 3000, 7000, 15000, 31000, 63000, 123000, 183000]
        );
        let mut b = Backoff::new();
        for ms in [0, 1000, 3000, 7000, 15000, 31000, 63000] {
            assert!(b.ok(at(ms)));
        }
        // At the cap: due at 123 s; a call two minutes past that starts over, and the
        // call after it says yes at once too.
        assert!(!b.ok(at(122_999)));
        assert!(b.ok(at(243_000)));
        assert!(b.ok(at(243_001)));
        assert!(!b.ok(at(243_500)));
        assert!(b.ok(at(244_001)));
    }

    #[test]
    fn intervals_vary_by_less_than_a_tenth() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let ft = Ft::new("c", "g", seed);
            assert_eq!(ft.subject, "_STAN.ft.c.g");
            let hb = ft.hb_interval.as_nanos() as i128 - 1_000_000_000;
            let missed = ft.missed_interval.as_nanos() as i128 - 1_250_000_000;
            assert!(hb.abs() < 100_000_000, "{hb}");
            assert!(missed.abs() < 125_000_000, "{missed}");
            seen.insert((hb > 0, missed > 0));
            assert_eq!(
                (ft.hb_interval, ft.missed_interval),
                (
                    Ft::new("c", "g", seed).hb_interval,
                    Ft::new("c", "g", seed).missed_interval
                ),
                "the same seed draws the same intervals"
            );
        }
        assert_eq!(seen.len(), 4, "both signs for both intervals");
    }
}

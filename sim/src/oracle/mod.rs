//! Judges one run from its journal alone.
//!
//! The model here is rebuilt from the events: client incarnations and how they ended,
//! the periods each one could not answer, the server's registrations, and every
//! subscription with its deliveries and acks. `heartbeat` checks registrations against
//! the silences; `delivery` checks what each subscription received.

mod delivery;
mod heartbeat;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::journal::{Entry, Ev, Inc, Silence, Unregister};
use crate::plan::{Plan, StoreKind, TIMING};

/// How an incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncEnd {
    Closed,
    /// Ended without a close (lost, dropped, close timed out): the server learns of it
    /// only through heartbeats.
    Gone,
    ConnectFailed,
}

#[derive(Debug, Clone)]
pub(crate) struct Incarnation {
    pub inc: Inc,
    pub client_id: String,
    pub connecting: Duration,
    pub connected: Option<Duration>,
    pub close_sent: Option<Duration>,
    pub end: Option<(Duration, IncEnd)>,
    pub connect_error: Option<String>,
}

/// A stretch during which an incarnation could not answer; `end: None` lasts for good.
/// Stretches closer than [`crate::plan::Timing::blip_gap`] are merged, since heartbeat
/// failures of one can carry over into the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quiet {
    pub start: Duration,
    pub end: Option<Duration>,
    /// Part of it may still let the client's pings through (a connection that is gone,
    /// or one whose packets toward the client were lost while its own still arrive),
    /// and each such ping makes the server check again at once: closes come sooner.
    pub fast: bool,
}

impl Quiet {
    pub fn covers(&self, from: Duration, to: Duration) -> bool {
        self.start <= from && self.end.is_none_or(|e| e >= to)
    }

    pub fn meets(&self, from: Duration, to: Duration) -> bool {
        self.start <= to && self.end.is_none_or(|e| e >= from)
    }
}

/// One registration of a client ID on the server, from its log.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub client_id: String,
    pub start: Duration,
    pub end: Option<(Duration, Unregister)>,
    /// The incarnation whose connect created it, if one saw `Connected`.
    pub owner: Option<Inc>,
}

pub(crate) struct Model<'a> {
    pub plan: &'a Plan,
    pub entries: &'a [Entry],
    pub incs: BTreeMap<Inc, Incarnation>,
    pub quiet: BTreeMap<Inc, Vec<Quiet>>,
    pub regs: Vec<Registration>,
    /// When the server's own list of registered clients was read, and what it held.
    pub final_read: Option<(Duration, Vec<String>)>,
    /// When the server went down and came back.
    pub downs: Vec<Duration>,
    pub ups: Vec<Duration>,
    /// What the FILE store recovered at the start of each server process (by epoch),
    /// per channel.
    pub recovered: BTreeMap<usize, BTreeMap<String, Recovery>>,
    pub violations: Vec<String>,
}

/// One channel as a FILE store recovered it.
#[derive(Debug, Clone)]
pub(crate) struct Recovery {
    pub at: Duration,
    pub last: u64,
    pub msgs: Vec<(u64, Option<String>)>,
}

/// Checks every invariant; returns one line per violation, empty when the run is good.
pub fn check(plan: &Plan, entries: &[Entry]) -> Vec<String> {
    let mut m = Model::build(plan, entries);
    for e in entries {
        if let Ev::Panic { message } = &e.ev {
            m.violation(e.at, format!("panic: {message}"));
        }
    }
    heartbeat::check(&mut m);
    delivery::check(&mut m);
    store::check(&mut m);
    m.violations
}

fn fmt_t(t: Duration) -> String {
    format!("{}.{:03}s", t.as_secs(), t.subsec_millis())
}

impl<'a> Model<'a> {
    pub fn violation(&mut self, at: Duration, text: String) {
        self.violations.push(format!("[{}] {text}", fmt_t(at)));
    }

    fn build(plan: &'a Plan, entries: &'a [Entry]) -> Self {
        let mut incs: BTreeMap<Inc, Incarnation> = BTreeMap::new();
        let mut regs: Vec<Registration> = Vec::new();
        let mut final_read = None;
        let (mut downs, mut ups) = (Vec::new(), Vec::new());
        let mut recovered: BTreeMap<usize, BTreeMap<String, Recovery>> = BTreeMap::new();
        // Host-level silences: (actor, cause) → open since.
        let mut open: BTreeMap<(u32, u8), Duration> = BTreeMap::new();
        let mut host_quiet: BTreeMap<u32, Vec<(Duration, Option<Duration>, Silence)>> =
            BTreeMap::new();
        let cause_key = |c: Silence| match c {
            Silence::Freeze => 0u8,
            Silence::Hold => 1,
            Silence::Partition => 2,
        };
        for e in entries {
            let t = e.at;
            match &e.ev {
                Ev::Connecting { inc, client_id } => {
                    incs.insert(
                        *inc,
                        Incarnation {
                            inc: *inc,
                            client_id: client_id.clone(),
                            connecting: t,
                            connected: None,
                            close_sent: None,
                            end: None,
                            connect_error: None,
                        },
                    );
                }
                Ev::Connected { inc } => {
                    if let Some(i) = incs.get_mut(inc) {
                        i.connected = Some(t);
                        let owner = regs
                            .iter_mut()
                            .rev()
                            .find(|r| r.client_id == i.client_id && r.start <= t);
                        if let Some(r) = owner {
                            r.owner = Some(*inc);
                        }
                    }
                }
                Ev::ConnectFailed { inc, error } => {
                    if let Some(i) = incs.get_mut(inc) {
                        i.end = Some((t, IncEnd::ConnectFailed));
                        i.connect_error = Some(error.clone());
                    }
                }
                Ev::Lost { inc, .. } | Ev::Dropped { inc } => {
                    if let Some(i) = incs.get_mut(inc) {
                        i.end.get_or_insert((t, IncEnd::Gone));
                    }
                }
                Ev::CloseSent { inc } => {
                    if let Some(i) = incs.get_mut(inc) {
                        i.close_sent = Some(t);
                    }
                }
                Ev::Closed { inc, error } => {
                    if let Some(i) = incs.get_mut(inc) {
                        let how = if error.is_none() {
                            IncEnd::Closed
                        } else {
                            IncEnd::Gone
                        };
                        i.end.get_or_insert((t, how));
                    }
                }
                Ev::SilenceStart { actor, cause } => {
                    open.insert((*actor, cause_key(*cause)), t);
                }
                Ev::SilenceEnd { actor, cause } => {
                    if let Some(s) = open.remove(&(*actor, cause_key(*cause))) {
                        host_quiet
                            .entry(*actor)
                            .or_default()
                            .push((s, Some(t), *cause));
                    }
                }
                Ev::Registered { client_id } => regs.push(Registration {
                    client_id: client_id.clone(),
                    start: t,
                    end: None,
                    owner: None,
                }),
                Ev::Unregistered { client_id, reason } => {
                    if let Some(r) = regs
                        .iter_mut()
                        .rev()
                        .find(|r| &r.client_id == client_id && r.end.is_none())
                    {
                        r.end = Some((t, *reason));
                    }
                }
                Ev::ServerFinal { client_ids } => final_read = Some((t, client_ids.clone())),
                Ev::ServerDown => {
                    downs.push(t);
                    for r in regs.iter_mut().filter(|r| r.end.is_none()) {
                        r.end = Some((t, Unregister::ServerDown));
                    }
                }
                Ev::ServerUp => ups.push(t),
                Ev::StoreRecovered {
                    channel,
                    last,
                    msgs,
                    ..
                } => {
                    // A start that failed after recovering is followed by another
                    // recovery; the last one is what the server ran with.
                    recovered.entry(downs.len()).or_default().insert(
                        channel.clone(),
                        Recovery {
                            at: t,
                            last: *last,
                            msgs: msgs.clone(),
                        },
                    );
                }
                _ => {}
            }
        }
        for ((actor, cause), s) in open {
            let cause = [Silence::Freeze, Silence::Hold, Silence::Partition][cause as usize];
            host_quiet.entry(actor).or_default().push((s, None, cause));
        }
        let mut quiet = BTreeMap::new();
        for (inc, i) in &incs {
            let mut q: Vec<Quiet> = Vec::new();
            let life_end = i.end.map(|e| e.0);
            for &(s, e, cause) in host_quiet.get(&inc.actor).map(Vec::as_slice).unwrap_or(&[]) {
                if life_end.is_some_and(|le| s >= le) || e.is_some_and(|e| e <= i.connecting) {
                    continue;
                }
                let (end, fast) = match cause {
                    // Dropped packets break the TCP stream for good, in the direction
                    // they were lost; after a repair the other direction may still work.
                    Silence::Partition if s >= i.connecting => (None, e.is_some()),
                    // Connects during a partition fail at once.
                    Silence::Partition => continue,
                    _ => (e, false),
                };
                q.push(Quiet {
                    start: s.max(i.connecting),
                    end,
                    fast,
                });
            }
            if let Some((t, IncEnd::Gone)) = i.end {
                q.push(Quiet {
                    start: t,
                    end: None,
                    fast: true,
                });
            }
            q.sort_by_key(|q| q.start);
            quiet.insert(*inc, merge(q, TIMING.blip_gap()));
        }
        Model {
            plan,
            entries,
            incs,
            quiet,
            regs,
            final_read,
            downs,
            ups,
            recovered,
            violations: Vec::new(),
        }
    }

    /// The FILE store without `--file_sync`: a crash may lose what was not synced.
    pub fn lossy(&self) -> bool {
        self.plan.store == (StoreKind::File { sync: false })
    }

    /// The name under which the oracle tracks a channel's messages and lineages at `t`.
    /// A memory store starts empty after a restart, and a FILE store without
    /// `--file_sync` may lose a tail whose sequences are then given again, so each
    /// server process has a channel of its own there; with `--file_sync` the channel
    /// lives on across restarts.
    pub fn stored_channel(&self, channel: &str, t: Duration) -> String {
        match (self.plan.store, self.epoch_at(t)) {
            (StoreKind::File { sync: true }, _) | (_, 0) => channel.to_string(),
            (_, n) => format!("{channel}@{n}"),
        }
    }

    /// The server process that stored `seq` of `channel`, as seen by process `epoch`:
    /// the latest one at whose start the store did not already hold that sequence.
    pub fn era(&self, channel: &str, epoch: usize, seq: u64) -> usize {
        let mut e = epoch;
        while e > 0 && self.recovered_last(e, channel) >= seq {
            e -= 1;
        }
        e
    }

    /// The newest sequence of `channel` the store recovered at the start of `epoch`.
    pub fn recovered_last(&self, epoch: usize, channel: &str) -> u64 {
        self.recovered
            .get(&epoch)
            .and_then(|m| m.get(channel))
            .map_or(0, |r| r.last)
    }

    /// The merged silences of an incarnation.
    pub fn quiet_of(&self, inc: Inc) -> &[Quiet] {
        self.quiet.get(&inc).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when the incarnation could not answer at some point of `from..=to`.
    pub fn quiet_during(&self, inc: Inc, from: Duration, to: Duration) -> bool {
        self.quiet_of(inc).iter().any(|q| q.meets(from, to))
    }

    /// The registration an incarnation's connect created.
    pub fn registration_of(&self, inc: Inc) -> Option<&Registration> {
        self.regs.iter().find(|r| r.owner == Some(inc))
    }

    /// When the server's list was read; registrations are judged up to this point.
    pub fn horizon(&self) -> Duration {
        self.final_read.as_ref().map_or(self.plan.end, |f| f.0)
    }

    /// Which server process (counting restarts) was up at `t`; everything it stored
    /// died with it.
    pub fn epoch_at(&self, t: Duration) -> usize {
        self.downs.iter().filter(|d| **d <= t).count()
    }

    /// True when the server went down or came up within `from..=to`.
    pub fn server_changed_during(&self, from: Duration, to: Duration) -> bool {
        self.downs
            .iter()
            .chain(&self.ups)
            .any(|t| *t >= from && *t <= to)
    }
}

/// Merges stretches that lie closer than `gap`.
fn merge(sorted: Vec<Quiet>, gap: Duration) -> Vec<Quiet> {
    let mut out: Vec<Quiet> = Vec::new();
    for q in sorted {
        if let Some(last) = out.last_mut() {
            let joins = match last.end {
                None => true,
                Some(e) => q.start <= e + gap,
            };
            if joins {
                last.end = match (last.end, q.end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                last.fast |= q.fast;
                continue;
            }
        }
        out.push(q);
    }
    out
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn q(s: u64, e: Option<u64>) -> Quiet {
        Quiet {
            start: Duration::from_millis(s),
            end: e.map(Duration::from_millis),
            fast: false,
        }
    }

    #[test]
    fn close_silences_merge_and_far_ones_do_not() {
        let gap = Duration::from_millis(1000);
        let m = merge(
            vec![q(0, Some(100)), q(900, Some(1000)), q(3000, Some(3100))],
            gap,
        );
        assert_eq!(m, vec![q(0, Some(1000)), q(3000, Some(3100))]);
        let m = merge(vec![q(0, None), q(5000, Some(6000))], gap);
        assert_eq!(m, vec![q(0, None)]);
    }

    #[test]
    fn covers_and_meets() {
        let x = q(100, Some(200));
        assert!(x.covers(Duration::from_millis(100), Duration::from_millis(200)));
        assert!(!x.covers(Duration::from_millis(99), Duration::from_millis(150)));
        assert!(x.meets(Duration::from_millis(0), Duration::from_millis(100)));
        assert!(!x.meets(Duration::from_millis(201), Duration::from_millis(300)));
        assert!(q(100, None).covers(Duration::from_millis(100), Duration::from_secs(100)));
    }
}

//! One Raft member as a pure state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use super::log::{Entry, HardState, LogError, RaftLog};
use super::msg::Message;
use crate::rng::Rng;
use crate::time::Instant;

/// What a member currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
    /// Stopped for good after a log error (see [`Raft::failure`]).
    Shutdown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Follower => "Follower",
            Role::Candidate => "Candidate",
            Role::Leader => "Leader",
            Role::Shutdown => "Shutdown",
        })
    }
}

/// Settings of one member.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's id, as the others know it.
    pub id: String,
    /// Every voting member, this one included (order irrelevant, duplicates ignored).
    pub peers: Vec<String>,
    /// A follower that hears no leader for a random time in `[T, 2T)` becomes candidate.
    pub heartbeat_timeout: Duration,
    /// A candidate without a result in a random time in `[T, 2T)` starts a new election.
    pub election_timeout: Duration,
    /// A leader that has not heard from a majority for this long steps down.
    pub lease_timeout: Duration,
    /// The leader's idle heartbeat period.
    pub commit_timeout: Duration,
    /// Cap of entry data per `Append` message; one entry is always sent.
    pub max_append_bytes: usize,
    /// Seed of every random draw (election timeouts).
    pub seed: u64,
}

impl RaftConfig {
    /// A configuration with the default timeouts.
    pub fn new(id: impl Into<String>, peers: Vec<String>, seed: u64) -> RaftConfig {
        RaftConfig {
            id: id.into(),
            peers,
            heartbeat_timeout: Duration::from_secs(2),
            election_timeout: Duration::from_secs(2),
            lease_timeout: Duration::from_secs(1),
            commit_timeout: Duration::from_millis(100),
            max_append_bytes: 1 << 20,
            seed,
        }
    }
}

/// A proposal reached a member that is not the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node is not the leader")]
pub struct NotLeader {
    /// The leader this member knows of, if any.
    pub leader: Option<String>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Deliver `msg` to member `to`.
    Send { to: String, msg: Message },
    /// A committed entry, in index order, each exactly once per [`Raft`] instance
    /// (no-ops included).
    Committed(Entry),
    /// The role changed.
    Role(Role),
}

/// Appends in flight to one follower while its log is known to match (pipelining);
/// beyond this the leader waits for acknowledgements, so a slow follower does not
/// queue an unbounded backlog.
const MAX_INFLIGHT: usize = 8;

/// How far back a follower looks for the leader's term when an `Append` does not
/// match; the scan only speeds up the leader's back-off, so it may stop early.
const MAX_HINT_SCAN: u64 = 1024;

/// What the leader knows about one follower's log.
#[derive(Debug, Clone)]
struct Progress {
    /// The next index to send.
    next: u64,
    /// The highest index known to be durable on the follower and equal to ours.
    matched: u64,
    /// The follower's log is not known to match at `next - 1`: send one `Append` at a
    /// time, without advancing `next`, until one succeeds.
    probing: bool,
    /// `Append`s with entries sent and not yet acknowledged (approximate; a lost one is
    /// found by the next heartbeat).
    inflight: usize,
    /// When the follower last answered in this term; the lease counts these.
    contact: Instant,
}

/// Role-specific state; each role waits for something different.
#[derive(Debug)]
enum State {
    /// Waits for the leader's appends; campaigns at `election_at`.
    Follower,
    /// Waits for votes; campaigns again at `election_at`.
    Candidate { votes: BTreeSet<String> },
    /// Replicates to every follower; sends heartbeats at `heartbeat_at`.
    Leader {
        progress: BTreeMap<String, Progress>,
        heartbeat_at: Instant,
    },
    /// A log error happened; nothing is done any more.
    Shutdown,
}

/// One member of a Raft group.
pub struct Raft {
    cfg: RaftConfig,
    log: Box<dyn RaftLog>,
    rng: Rng,
    /// The other voting members, sorted, so that sends come out in a fixed order.
    others: Vec<String>,
    /// Whether this member is in its own peer list (only then does it campaign).
    voter: bool,
    /// Votes or acknowledgements needed, this member's own included.
    quorum: usize,
    /// Term, vote and commit index as last written to the log.
    hs: HardState,
    state: State,
    leader: Option<String>,
    /// When a follower or candidate campaigns next.
    election_at: Instant,
    /// When a follower last heard from the leader of its term.
    leader_contact: Option<Instant>,
    /// Entries up to here were in the log at the last flush and not cut since.
    durable: u64,
    /// Entries up to here were emitted as `Committed`.
    applied: u64,
    /// Committed entries read from the log and not emitted yet.
    apply_buf: VecDeque<Entry>,
    /// Sends waiting for the next flush.
    held: Vec<Output>,
    ready: VecDeque<Output>,
    failure: Option<LogError>,
}

impl Raft {
    /// Restores term, vote and commit index and the log from `log`. Every entry up to
    /// the saved commit index is then emitted again as `Committed`, since the caller
    /// rebuilds its state from scratch on every start; they are read from the log a
    /// bounded batch at a time as the caller polls.
    pub fn new(cfg: RaftConfig, log: Box<dyn RaftLog>, now: Instant) -> Result<Raft, LogError> {
        let mut hs = log.hard_state();
        let last = log.last_index();
        // The saved commit index is a lower bound written with the log, so it never
        // passes the log; clamp anyway so that a damaged one cannot emit missing entries.
        hs.commit = hs.commit.min(last);
        let mut others: Vec<String> = cfg
            .peers
            .iter()
            .filter(|p| **p != cfg.id)
            .cloned()
            .collect();
        others.sort();
        others.dedup();
        let voter = cfg.peers.contains(&cfg.id);
        let quorum = (others.len() + usize::from(voter)) / 2 + 1;
        let mut rng = Rng::new(cfg.seed);
        let election_at = now + jitter(&mut rng, cfg.heartbeat_timeout);
        Ok(Raft {
            cfg,
            log,
            rng,
            others,
            voter,
            quorum,
            hs,
            state: State::Follower,
            leader: None,
            election_at,
            leader_contact: None,
            durable: last,
            applied: 0,
            apply_buf: VecDeque::new(),
            held: Vec::new(),
            ready: VecDeque::new(),
            failure: None,
        })
    }

    /// A message from member `from` arrived. Messages from ids that are not peers are
    /// ignored.
    pub fn handle_message(&mut self, now: Instant, from: &str, msg: Message) {
        if matches!(self.state, State::Shutdown) || !self.others.iter().any(|p| p == from) {
            return;
        }
        let r = self.on_message(now, from, msg);
        self.check(r);
    }

    /// Time passed; call at or after [`Raft::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let r = self.on_timeout(now);
        self.check(r);
    }

    /// When [`Raft::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Shutdown => None,
            State::Follower | State::Candidate { .. } => self.voter.then_some(self.election_at),
            State::Leader {
                progress,
                heartbeat_at,
            } => Some(match self.lease_expiry(progress) {
                Some(expiry) => expiry.min(*heartbeat_at),
                None => *heartbeat_at,
            }),
        }
    }

    /// Leader only: appends an entry of the current term and returns its index. It is
    /// sent to the followers at the next [`Raft::flush`], batched with the others.
    pub fn propose(&mut self, _now: Instant, data: Vec<u8>) -> Result<u64, NotLeader> {
        if !matches!(self.state, State::Leader { .. }) {
            return Err(NotLeader {
                leader: self.leader.clone(),
            });
        }
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.hs.term,
            index,
            data,
        };
        match self.log.append(std::slice::from_ref(&entry)) {
            Ok(()) => Ok(index),
            Err(e) => {
                self.fail(e);
                Err(NotLeader { leader: None })
            }
        }
    }

    /// Makes the log and hard state durable; messages held until then may now leave.
    /// The caller flushes once after every batch of inputs.
    pub fn flush(&mut self) -> Result<(), LogError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        let r = self.on_flush();
        self.check(r.clone());
        r
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.ready.pop_front() {
            return Some(out);
        }
        if matches!(self.state, State::Shutdown) {
            return None;
        }
        match self.next_committed() {
            Ok(entry) => entry.map(Output::Committed),
            Err(e) => {
                self.fail(e);
                self.ready.pop_front()
            }
        }
    }

    pub fn role(&self) -> Role {
        match self.state {
            State::Follower => Role::Follower,
            State::Candidate { .. } => Role::Candidate,
            State::Leader { .. } => Role::Leader,
            State::Shutdown => Role::Shutdown,
        }
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn term(&self) -> u64 {
        self.hs.term
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.hs.commit
    }

    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// The log error that stopped this member, if one did.
    pub fn failure(&self) -> Option<&LogError> {
        self.failure.as_ref()
    }

    fn check(&mut self, r: Result<(), LogError>) {
        if let Err(e) = r {
            self.fail(e);
        }
    }

    /// A log that failed may have lost or half-written anything, so the member stops
    /// for good, and what it held back for the failed flush never leaves.
    fn fail(&mut self, e: LogError) {
        if matches!(self.state, State::Shutdown) {
            return;
        }
        self.failure = Some(e);
        self.held.clear();
        self.apply_buf.clear();
        self.leader = None;
        self.set_state(State::Shutdown);
    }

    fn set_state(&mut self, state: State) {
        let before = self.role();
        self.state = state;
        if self.role() != before {
            self.ready.push_back(Output::Role(self.role()));
        }
    }

    fn save_hard_state(&mut self) -> Result<(), LogError> {
        self.log.set_hard_state(&self.hs)
    }

    fn send(&mut self, to: &str, msg: Message) {
        self.held.push(Output::Send {
            to: to.to_owned(),
            msg,
        });
    }

    fn last_term(&self) -> Result<u64, LogError> {
        self.term_at(self.log.last_index())
    }

    fn term_at(&self, index: u64) -> Result<u64, LogError> {
        self.log
            .term(index)?
            .ok_or_else(|| LogError(format!("raft log has no entry at index {index}")))
    }

    fn on_timeout(&mut self, now: Instant) -> Result<(), LogError> {
        match &self.state {
            State::Shutdown => Ok(()),
            State::Follower | State::Candidate { .. } => {
                if self.voter && now >= self.election_at {
                    self.campaign(now)?;
                }
                Ok(())
            }
            State::Leader {
                progress,
                heartbeat_at,
            } => {
                if self.lease_expiry(progress).is_some_and(|t| now >= t) {
                    // A leader cut off from a majority cannot commit anything; giving
                    // up lets the caller stop accepting work it cannot replicate.
                    self.become_follower(now, self.hs.term, None)
                } else if now >= *heartbeat_at {
                    self.heartbeat(now)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// When the leader stops hearing from a majority: the quorum-th most recent
    /// answer plus the lease. `None` when this member is a majority alone.
    fn lease_expiry(&self, progress: &BTreeMap<String, Progress>) -> Option<Instant> {
        let needed = self.quorum.checked_sub(2)?;
        let mut contacts: Vec<Instant> = progress.values().map(|p| p.contact).collect();
        contacts.sort_unstable_by(|a, b| b.cmp(a));
        contacts.get(needed).map(|t| *t + self.cfg.lease_timeout)
    }

    fn campaign(&mut self, now: Instant) -> Result<(), LogError> {
        self.hs.term += 1;
        self.hs.vote = self.cfg.id.clone();
        self.save_hard_state()?;
        self.leader = None;
        self.leader_contact = None;
        self.election_at = now + jitter(&mut self.rng, self.cfg.election_timeout);
        let votes = BTreeSet::from([self.cfg.id.clone()]);
        if votes.len() >= self.quorum {
            return self.become_leader(now);
        }
        self.set_state(State::Candidate { votes });
        let msg = Message::RequestVote {
            term: self.hs.term,
            last_index: self.log.last_index(),
            last_term: self.last_term()?,
        };
        // Held until the next flush like every send, which also makes this member's
        // vote for itself durable before any vote for it can be counted.
        for to in self.others.clone() {
            self.send(&to, msg.clone());
        }
        Ok(())
    }

    fn become_leader(&mut self, now: Instant) -> Result<(), LogError> {
        let next = self.log.last_index() + 1;
        let progress = self
            .others
            .iter()
            .map(|p| {
                let progress = Progress {
                    next,
                    matched: 0,
                    probing: true,
                    inflight: 0,
                    // The lease starts in full: nobody could have answered yet.
                    contact: now,
                };
                (p.clone(), progress)
            })
            .collect();
        self.leader = Some(self.cfg.id.clone());
        self.set_state(State::Leader {
            progress,
            heartbeat_at: now,
        });
        // Entries of earlier terms only commit under an entry of this term (§5.4.2);
        // the no-op gets them committed without waiting for a proposal.
        let noop = Entry {
            term: self.hs.term,
            index: next,
            data: Vec::new(),
        };
        self.log.append(&[noop])?;
        self.heartbeat(now)
    }

    fn become_follower(
        &mut self,
        now: Instant,
        term: u64,
        leader: Option<String>,
    ) -> Result<(), LogError> {
        if term > self.hs.term {
            self.hs.term = term;
            self.hs.vote.clear();
            self.save_hard_state()?;
        }
        self.leader = leader;
        // A follower keeps its deadline: were it pushed back by every higher term seen,
        // a candidate that cannot win would keep the members that could from trying.
        if !matches!(self.state, State::Follower) {
            self.election_at = now + jitter(&mut self.rng, self.cfg.heartbeat_timeout);
        }
        self.set_state(State::Follower);
        Ok(())
    }

    /// Whether this member believes a leader of its term is alive; it then ignores
    /// requests to vote in a higher term, so that a member that was cut off and comes
    /// back with an inflated term cannot depose a healthy leader by itself.
    fn in_lease(&self, now: Instant) -> bool {
        match self.state {
            State::Leader { .. } => true,
            State::Follower => self
                .leader_contact
                .is_some_and(|t| self.leader.is_some() && now < t + self.cfg.heartbeat_timeout),
            State::Candidate { .. } | State::Shutdown => false,
        }
    }

    fn on_message(&mut self, now: Instant, from: &str, msg: Message) -> Result<(), LogError> {
        let term = msg.term();
        if term > self.hs.term {
            if matches!(msg, Message::RequestVote { .. }) && self.in_lease(now) {
                return Ok(());
            }
            let leader = matches!(msg, Message::Append { .. }).then(|| from.to_owned());
            self.become_follower(now, term, leader)?;
        }
        if term < self.hs.term {
            // Answer stale requests so that their sender learns the new term.
            let reply = match msg {
                Message::RequestVote { .. } => Message::Vote {
                    term: self.hs.term,
                    granted: false,
                },
                Message::Append { .. } => Message::AppendResult {
                    term: self.hs.term,
                    success: false,
                    last_index: self.log.last_index(),
                },
                Message::Vote { .. } | Message::AppendResult { .. } => return Ok(()),
            };
            self.send(from, reply);
            return Ok(());
        }
        match msg {
            Message::RequestVote {
                last_index,
                last_term,
                ..
            } => self.on_request_vote(now, from, last_index, last_term),
            Message::Vote { granted, .. } => self.on_vote(now, from, granted),
            Message::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                ..
            } => self.on_append(now, from, prev_index, prev_term, entries, commit),
            Message::AppendResult {
                success,
                last_index,
                ..
            } => self.on_append_result(now, from, success, last_index),
        }
    }

    fn on_request_vote(
        &mut self,
        now: Instant,
        from: &str,
        last_index: u64,
        last_term: u64,
    ) -> Result<(), LogError> {
        let free = self.hs.vote.is_empty() || self.hs.vote == from;
        let my_last_term = self.last_term()?;
        let up_to_date = last_term > my_last_term
            || (last_term == my_last_term && last_index >= self.log.last_index());
        let granted = matches!(self.state, State::Follower) && free && up_to_date;
        if granted {
            if self.hs.vote.is_empty() {
                self.hs.vote = from.to_owned();
                self.save_hard_state()?;
            }
            self.election_at = now + jitter(&mut self.rng, self.cfg.heartbeat_timeout);
        }
        let term = self.hs.term;
        self.send(from, Message::Vote { term, granted });
        Ok(())
    }

    fn on_vote(&mut self, now: Instant, from: &str, granted: bool) -> Result<(), LogError> {
        let State::Candidate { votes } = &mut self.state else {
            return Ok(());
        };
        if granted {
            votes.insert(from.to_owned());
            if votes.len() >= self.quorum {
                return self.become_leader(now);
            }
        }
        Ok(())
    }

    fn on_append(
        &mut self,
        now: Instant,
        from: &str,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Result<(), LogError> {
        if matches!(self.state, State::Leader { .. }) {
            // Two leaders in one term cannot happen (each member votes once per term);
            // a message claiming so is not acted on.
            return Ok(());
        }
        let term = self.hs.term;
        let consecutive = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == prev_index + 1 + i as u64 && e.term <= term);
        if !consecutive {
            return Ok(());
        }
        self.leader = Some(from.to_owned());
        self.leader_contact = Some(now);
        self.election_at = now + jitter(&mut self.rng, self.cfg.heartbeat_timeout);
        self.set_state(State::Follower);

        let last = self.log.last_index();
        let matches = prev_index <= last && self.log.term(prev_index)? == Some(prev_term);
        if !matches {
            let hint = if prev_index > last {
                last
            } else {
                self.conflict_hint(prev_index, prev_term)?
            };
            self.send(
                from,
                Message::AppendResult {
                    term,
                    success: false,
                    last_index: hint,
                },
            );
            return Ok(());
        }

        // Entries already present are skipped rather than rewritten: a delayed or
        // duplicated Append must not cut entries that a later one added.
        let mut first_new = entries.len();
        for (i, e) in entries.iter().enumerate() {
            if self.log.term(e.index)? != Some(e.term) {
                first_new = i;
                break;
            }
        }
        if let Some(first) = entries.get(first_new) {
            if first.index <= self.hs.commit {
                // Only a leader with a different committed history could ask this.
                return Ok(());
            }
            self.durable = self.durable.min(first.index - 1);
            self.log.append(&entries[first_new..])?;
        }

        let matched = prev_index + entries.len() as u64;
        let commit = commit.min(matched);
        if commit > self.hs.commit {
            self.hs.commit = commit;
            self.save_hard_state()?;
        }
        self.send(
            from,
            Message::AppendResult {
                term,
                success: true,
                last_index: matched,
            },
        );
        Ok(())
    }

    /// Where the leader should try next after our entry at `prev_index` did not have
    /// `prev_term`: entries of later terms than `prev_term` cannot be in the leader's
    /// log before `prev_index`, so whole runs of them are skipped at once.
    fn conflict_hint(&self, prev_index: u64, prev_term: u64) -> Result<u64, LogError> {
        let mut hint = prev_index.saturating_sub(1).min(self.log.last_index());
        let floor = hint.saturating_sub(MAX_HINT_SCAN).max(self.hs.commit);
        while hint > floor && self.term_at(hint)? > prev_term {
            hint -= 1;
        }
        Ok(hint)
    }

    fn on_append_result(
        &mut self,
        now: Instant,
        from: &str,
        success: bool,
        last_index: u64,
    ) -> Result<(), LogError> {
        let last = self.log.last_index();
        let State::Leader { progress, .. } = &mut self.state else {
            return Ok(());
        };
        let Some(p) = progress.get_mut(from) else {
            return Ok(());
        };
        p.contact = now;
        if success {
            if last_index > p.matched {
                p.matched = last_index.min(last);
            }
            p.next = p.next.max(p.matched + 1);
            if p.probing {
                p.probing = false;
                p.inflight = 0;
            } else if p.next == p.matched + 1 {
                p.inflight = 0;
            } else {
                p.inflight = p.inflight.saturating_sub(1);
            }
            self.advance_commit()?;
        } else {
            if last_index < p.matched {
                // A late answer to an append that was overtaken by a successful one.
                return Ok(());
            }
            p.next = p.next.min(last_index + 1).max(p.matched + 1);
            p.probing = true;
            p.inflight = 0;
        }
        self.replicate(from)
    }

    /// Commits the highest index that a majority holds durably, if it is of the
    /// current term (§5.4.2); everything before it commits with it.
    fn advance_commit(&mut self) -> Result<(), LogError> {
        let State::Leader { progress, .. } = &self.state else {
            return Ok(());
        };
        let mut matched: Vec<u64> = progress.values().map(|p| p.matched).collect();
        if self.voter {
            matched.push(self.durable);
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&index) = matched.get(self.quorum - 1) else {
            return Ok(());
        };
        if index > self.hs.commit && self.log.term(index)? == Some(self.hs.term) {
            self.hs.commit = index;
            self.save_hard_state()?;
        }
        Ok(())
    }

    fn heartbeat(&mut self, now: Instant) -> Result<(), LogError> {
        let State::Leader {
            progress,
            heartbeat_at,
        } = &mut self.state
        else {
            return Ok(());
        };
        *heartbeat_at = now + self.cfg.commit_timeout;
        let last = self.log.last_index();
        let mut empty = Vec::new();
        for (to, p) in progress.iter_mut() {
            if p.probing {
                // The last probe or its answer may have been lost: probe again.
                p.inflight = 0;
            }
            let can_send = p.next <= last && p.inflight < window(p);
            if !can_send {
                empty.push(to.clone());
            }
        }
        for to in self.others.clone() {
            if empty.contains(&to) {
                // With prev_index at the end of what was sent, the answer also tells
                // whether an append in flight was lost.
                self.send_append(&to, false)?;
            } else {
                self.replicate(&to)?;
            }
        }
        Ok(())
    }

    /// Sends `to` what it has not been sent yet, as far as its window allows.
    fn replicate(&mut self, to: &str) -> Result<(), LogError> {
        loop {
            let last = self.log.last_index();
            let State::Leader { progress, .. } = &self.state else {
                return Ok(());
            };
            let Some(p) = progress.get(to) else {
                return Ok(());
            };
            if p.next > last || p.inflight >= window(p) {
                return Ok(());
            }
            self.send_append(to, true)?;
        }
    }

    fn send_append(&mut self, to: &str, with_entries: bool) -> Result<(), LogError> {
        let last = self.log.last_index();
        let State::Leader { progress, .. } = &mut self.state else {
            return Ok(());
        };
        let Some(p) = progress.get_mut(to) else {
            return Ok(());
        };
        p.next = p.next.clamp(1, last + 1);
        let (from, probing) = (p.next, p.probing);
        let prev_index = from - 1;
        let prev_term = self.term_at(prev_index)?;
        let entries = if with_entries && from <= last {
            self.log.entries(from, self.cfg.max_append_bytes)?
        } else {
            Vec::new()
        };
        if let Some(end) = entries.last().map(|e| e.index) {
            let State::Leader { progress, .. } = &mut self.state else {
                return Ok(());
            };
            if let Some(p) = progress.get_mut(to) {
                p.inflight += 1;
                if !probing {
                    p.next = end + 1;
                }
            }
        }
        let msg = Message::Append {
            term: self.hs.term,
            prev_index,
            prev_term,
            entries,
            commit: self.hs.commit,
        };
        self.send(to, msg);
        Ok(())
    }

    fn on_flush(&mut self) -> Result<(), LogError> {
        self.log.flush()?;
        self.durable = self.log.last_index();
        if matches!(self.state, State::Leader { .. }) {
            self.advance_commit()?;
            // Proposals since the last flush go out now, batched per follower.
            for to in self.others.clone() {
                self.replicate(&to)?;
            }
        }
        self.ready.extend(self.held.drain(..));
        Ok(())
    }

    fn next_committed(&mut self) -> Result<Option<Entry>, LogError> {
        let upto = self.hs.commit.min(self.log.last_index());
        if self.applied >= upto {
            return Ok(None);
        }
        if self.apply_buf.is_empty() {
            let batch = self
                .log
                .entries(self.applied + 1, self.cfg.max_append_bytes)?;
            self.apply_buf
                .extend(batch.into_iter().take_while(|e| e.index <= upto));
        }
        let Some(entry) = self.apply_buf.pop_front() else {
            return Err(LogError(format!(
                "raft log has no entry at committed index {}",
                self.applied + 1
            )));
        };
        if entry.index != self.applied + 1 {
            return Err(LogError(format!(
                "raft log returned index {} for {}",
                entry.index,
                self.applied + 1
            )));
        }
        self.applied = entry.index;
        Ok(Some(entry))
    }
}

/// Appends a follower may have in flight: one while probing for where its log
/// matches, a pipeline once it does.
fn window(p: &Progress) -> usize {
    if p.probing {
        1
    } else {
        MAX_INFLIGHT
    }
}

/// A random duration in `[base, 2 * base)`.
fn jitter(rng: &mut Rng, base: Duration) -> Duration {
    let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return base;
    }
    base + Duration::from_nanos(rng.next_u64() % nanos)
}

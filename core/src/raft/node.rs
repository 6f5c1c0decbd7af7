//! One Raft member as a pure state machine.

use std::fmt;
use std::time::Duration;

use super::log::{Entry, LogError, RaftLog};
use super::msg::Message;
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

/// One member of a Raft group.
pub struct Raft {
    cfg: RaftConfig,
    log: Box<dyn RaftLog>,
}

impl Raft {
    /// Restores term, vote and commit index and the log from `log`. Every entry up to
    /// the saved commit index is then emitted again as `Committed`, since the caller
    /// rebuilds its state from scratch on every start.
    pub fn new(cfg: RaftConfig, log: Box<dyn RaftLog>, now: Instant) -> Result<Raft, LogError> {
        let _ = now;
        Ok(Raft { cfg, log })
    }

    /// A message from member `from` arrived.
    pub fn handle_message(&mut self, now: Instant, from: &str, msg: Message) {
        let _ = (now, from, msg, &self.log);
        todo!()
    }

    /// Time passed; call at or after [`Raft::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When [`Raft::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Leader only: appends an entry of the current term and returns its index.
    pub fn propose(&mut self, now: Instant, data: Vec<u8>) -> Result<u64, NotLeader> {
        let _ = (now, data);
        todo!()
    }

    /// Makes the log and hard state durable; messages held until then may now leave.
    pub fn flush(&mut self) -> Result<(), LogError> {
        todo!()
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    pub fn role(&self) -> Role {
        todo!()
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    pub fn leader(&self) -> Option<&str> {
        todo!()
    }

    pub fn term(&self) -> u64 {
        todo!()
    }

    pub fn commit_index(&self) -> u64 {
        todo!()
    }

    pub fn last_index(&self) -> u64 {
        todo!()
    }

    /// The log error that stopped this member, if one did.
    pub fn failure(&self) -> Option<&LogError> {
        todo!()
    }
}

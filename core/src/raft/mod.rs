//! Raft consensus for clustered mode (BEHAVIOUR §13), as a pure state machine.
//!
//! The streaming server replicates its store writes through it: the leader proposes
//! each batch of writes as one log entry and releases what the batch acknowledges
//! once the entry is committed; every other member applies committed entries to its
//! own store. Messages between members are values ([`Message`]) that the caller
//! carries (over NATS); the log is behind the synchronous [`RaftLog`] port, so that
//! the runtime keeps it on disk and tests keep it in memory.
//!
//! Driving it:
//!
//! ```text
//! raft.handle_message(now, from, msg);   // a peer's message arrived
//! raft.handle_timeout(now);              // time passed
//! raft.propose(data)?;                   // leader only: a new entry
//! raft.flush()?;                         // the log is durable; held messages may leave
//! while let Some(out) = raft.poll_output() { ... }
//! ```
//!
//! Messages that promise something about the log (votes, append acknowledgements)
//! only come out of [`Raft::poll_output`] after a [`Raft::flush`] made the log
//! durable.

mod log;
mod msg;
mod node;

pub use log::{Entry, HardState, LogError, MemLog, RaftLog};
pub use msg::{DecodeError, Message};
pub use node::{NotLeader, Output, Raft, RaftConfig, Role};

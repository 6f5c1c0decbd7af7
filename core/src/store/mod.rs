//! The storage port of the streaming server.
//!
//! Core decides every rule (which message a limit removes, which channel inactivity
//! deletes, what a subscription's cursor is); a store only does as told and answers
//! lookups. Calls are synchronous: the driver makes a batch durable with one
//! [`Store::flush`] before releasing the outputs that acknowledge it.

pub mod crypto;
mod encrypted;
mod mem;
mod unopened;

pub use encrypted::{EncryptedStore, NonceRandom};
pub use mem::MemStore;
pub use unopened::Unopened;

use crate::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};

/// A store failure; its text is what clients see in error responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

pub type Result<T> = std::result::Result<T, StoreError>;

/// Counters of one channel's messages, in the store's own byte accounting
/// (BEHAVIOUR §4.4.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgsState {
    pub count: u64,
    pub bytes: u64,
    /// Oldest stored sequence; `last + 1` once every message was removed, 0 if none ever.
    pub first: u64,
    /// Newest sequence ever stored in this channel; 0 if none.
    pub last: u64,
}

/// A subscription as recovered from a store, with its unacknowledged sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredSub {
    pub state: SubState,
    pub pending: Vec<u64>,
}

/// One channel as recovered from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredChannel {
    pub name: String,
    pub msgs: MsgsState,
    pub subs: Vec<RecoveredSub>,
    /// The highest subscription ID the channel ever stored, deleted subscriptions
    /// included, so that a new subscription never takes the ID of an old one whose
    /// records may still be in the store.
    pub max_sub_id: u64,
}

/// Everything a store held at startup.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recovered {
    pub server_info: Option<ServerInfo>,
    pub clients: Vec<ClientInfo>,
    pub channels: Vec<RecoveredChannel>,
}

/// What the streaming server needs from a store.
pub trait Store: Send {
    /// The store type shown in logs and monitoring: `MEMORY`, `FILE`, `SQL`.
    fn kind(&self) -> &'static str;

    /// State left by a previous run (nothing for a fresh or memory store).
    fn recover(&mut self) -> Result<Recovered>;

    /// Persists the server's subjects (first start, or repair).
    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()>;

    fn add_client(&mut self, info: &ClientInfo) -> Result<()>;
    fn delete_client(&mut self, client_id: &str) -> Result<()>;

    fn create_channel(&mut self, name: &str) -> Result<()>;
    /// Removes a channel with all its messages and subscriptions.
    fn delete_channel(&mut self, name: &str) -> Result<()>;

    /// Appends the channel's next message (`msg.sequence` is `last + 1`) and returns the
    /// bytes it counts for in [`MsgsState::bytes`].
    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64>;
    /// The message with this sequence, if still stored.
    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>>;
    /// The timestamp of a stored message, cheaper than a full lookup.
    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>>;
    fn msgs_state(&self, channel: &str) -> MsgsState;
    /// Removes the oldest stored message (limits enforcement).
    fn remove_oldest(&mut self, channel: &str) -> Result<()>;

    /// Stores a new subscription; `state.id` was assigned by the caller.
    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()>;
    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()>;
    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> Result<()>;
    /// Records that `seq` was sent to the subscription and awaits its ack.
    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()>;
    /// Records the ack of `seq` by the subscription.
    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()>;

    /// Makes everything written so far durable (as configured); called once per batch.
    fn flush(&mut self) -> Result<()>;
}

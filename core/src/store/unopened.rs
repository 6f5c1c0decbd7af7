//! The store of an FT standby: a server that does not hold the store's lock must not
//! read or write it, yet monitoring still names its type.

use super::{MsgsState, Recovered, Result, Store, StoreError};
use crate::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};

/// Stands in for a store that is not open yet: empty, and refusing every write. A
/// standby serves no client request, so nothing reaches it but monitoring.
#[derive(Debug, Clone, Copy)]
pub struct Unopened {
    kind: &'static str,
}

impl Unopened {
    /// A stand-in for a store of type `kind` (`FILE`, `SQL`).
    pub fn new(kind: &'static str) -> Unopened {
        Unopened { kind }
    }
}

fn not_open<T>() -> Result<T> {
    Err(StoreError("store is not open".into()))
}

impl Store for Unopened {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn recover(&mut self) -> Result<Recovered> {
        not_open()
    }
    fn init_server_info(&mut self, _: &ServerInfo) -> Result<()> {
        not_open()
    }
    fn add_client(&mut self, _: &ClientInfo) -> Result<()> {
        not_open()
    }
    fn delete_client(&mut self, _: &str) -> Result<()> {
        not_open()
    }
    fn create_channel(&mut self, _: &str) -> Result<()> {
        not_open()
    }
    fn delete_channel(&mut self, _: &str) -> Result<()> {
        not_open()
    }
    fn store_msg(&mut self, _: &str, _: &MsgProto) -> Result<u64> {
        not_open()
    }
    fn lookup(&mut self, _: &str, _: u64) -> Result<Option<MsgProto>> {
        Ok(None)
    }
    fn timestamp(&mut self, _: &str, _: u64) -> Result<Option<i64>> {
        Ok(None)
    }
    fn msgs_state(&self, _: &str) -> MsgsState {
        MsgsState::default()
    }
    fn remove_oldest(&mut self, _: &str) -> Result<()> {
        not_open()
    }
    fn create_sub(&mut self, _: &str, _: &SubState) -> Result<()> {
        not_open()
    }
    fn update_sub(&mut self, _: &str, _: &SubState) -> Result<()> {
        not_open()
    }
    fn delete_sub(&mut self, _: &str, _: u64) -> Result<()> {
        not_open()
    }
    fn add_pending(&mut self, _: &str, _: u64, _: u64) -> Result<()> {
        not_open()
    }
    fn ack_pending(&mut self, _: &str, _: u64, _: u64) -> Result<()> {
        not_open()
    }
    /// Nothing was written: the driver's flush after every batch has nothing to do.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

//! The server's FILE store on the simulated disk, opened on every start the way the
//! production server opens it, and a thin wrapper that journals what each recovery
//! brought back so that the oracle can compare it with what was acknowledged.

use std::sync::Arc;
use std::time::Duration;

use stan_core::log::Level;
use stan_core::node::NodeConfig;
use stan_core::store::{MsgsState, Recovered, Result, Store};
use stan_core::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};
use stan_runtime::store::{ChannelLimits, FileStore, FileStoreOptions, Fs};

use crate::journal::{Ev, Journal};
use crate::plan::AUTO_SYNC;
use crate::server::sim_now;
use crate::simfs::DATA_DIR;

/// Opens the store at [`DATA_DIR`] with `--file_sync` as asked, a log sink into the
/// journal, simulated time as its clock and the node's channel limits; nothing is read
/// before the node starts and recovers it.
pub fn open(
    fs: Arc<dyn Fs>,
    sync: bool,
    truncate_bad_eof: bool,
    cfg: &NodeConfig,
    journal: &Journal,
) -> std::result::Result<Box<dyn Store>, String> {
    let opts = FileStoreOptions {
        sync,
        auto_sync: if sync { Duration::ZERO } else { AUTO_SYNC },
        truncate_bad_eof,
        // Recovery stays on the host's thread, where the simulated disk is reachable.
        parallel_recovery: 1,
        ..FileStoreOptions::default()
    };
    let mut store = FileStore::open_with(fs, DATA_DIR, opts).map_err(|e| e.to_string())?;
    let sink = journal.clone();
    store.set_log_sink(Arc::new(move |level, text: &str| {
        if level <= Level::Warn {
            sink.record(
                sim_now(),
                Ev::ServerLog {
                    line: text.to_string(),
                },
            );
        }
    }));
    store.set_clock(Arc::new(sim_now));
    if let Some(limits) = cfg.streaming.as_ref().and_then(|s| s.limits.resolve().ok()) {
        store.set_channel_limits(Arc::new(move |channel: &str| {
            let l = limits.for_channel(channel);
            ChannelLimits {
                max_msgs: l.max_msgs,
                max_bytes: l.max_bytes,
                max_age: Duration::from_nanos(u64::try_from(l.max_age).unwrap_or(0)),
            }
        }));
    }
    Ok(Box::new(Journaled {
        inner: Box::new(store),
        journal: journal.clone(),
    }))
}

/// Passes every call through; after a recovery, reads every recovered message back and
/// journals it.
struct Journaled {
    inner: Box<dyn Store>,
    journal: Journal,
}

impl Store for Journaled {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn recover(&mut self) -> Result<Recovered> {
        let recovered = self.inner.recover()?;
        for ch in &recovered.channels {
            let MsgsState { first, last, .. } = ch.msgs;
            let mut msgs = Vec::new();
            for seq in first.max(1)..=last {
                let payload = match self.inner.lookup(&ch.name, seq) {
                    Ok(Some(m)) => Some(String::from_utf8_lossy(&m.data).into_owned()),
                    _ => None,
                };
                msgs.push((seq, payload));
            }
            self.journal.record(
                sim_now(),
                Ev::StoreRecovered {
                    channel: ch.name.clone(),
                    first,
                    last,
                    msgs,
                },
            );
        }
        Ok(recovered)
    }

    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()> {
        self.inner.init_server_info(info)
    }

    fn add_client(&mut self, info: &ClientInfo) -> Result<()> {
        self.inner.add_client(info)
    }

    fn delete_client(&mut self, client_id: &str) -> Result<()> {
        self.inner.delete_client(client_id)
    }

    fn create_channel(&mut self, name: &str) -> Result<()> {
        self.inner.create_channel(name)
    }

    fn delete_channel(&mut self, name: &str) -> Result<()> {
        self.inner.delete_channel(name)
    }

    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64> {
        self.inner.store_msg(channel, msg)
    }

    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>> {
        self.inner.lookup(channel, seq)
    }

    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>> {
        self.inner.timestamp(channel, seq)
    }

    fn msgs_state(&self, channel: &str) -> MsgsState {
        self.inner.msgs_state(channel)
    }

    fn remove_oldest(&mut self, channel: &str) -> Result<()> {
        self.inner.remove_oldest(channel)
    }

    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.inner.create_sub(channel, state)
    }

    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.inner.update_sub(channel, state)
    }

    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> Result<()> {
        self.inner.delete_sub(channel, sub_id)
    }

    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        self.inner.add_pending(channel, sub_id, seq)
    }

    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        self.inner.ack_pending(channel, sub_id, seq)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

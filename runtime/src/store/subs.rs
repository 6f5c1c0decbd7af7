//! `<channel>/subs.dat`: the subscriptions of one channel as a log of typed records
//! (STORES §1.6), replayed at startup and compacted when mostly obsolete.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use stan_core::log::Level;
use stan_core::store::RecoveredSub;
use stan_core::streaming::pb::{encode, SubState};

use super::env::{os_error, Shared};
use super::proto;
use super::record::{
    bad_record, next_record, open_versioned, push_record, Appender, Rec, SeqReader, HEADER_LEN,
};
use super::tempfile;

pub const SUBS_FILE: &str = "subs.dat";

const REC_NEW: u8 = 1;
const REC_UPDATE: u8 = 2;
const REC_DELETE: u8 = 3;
const REC_ACK: u8 = 4;
const REC_MSG: u8 = 5;

/// Initial write buffer of a subscription file.
const MIN_BUFFER: usize = 128;

struct Sub {
    state: SubState,
    pending: BTreeSet<u64>,
}

/// What the records of a `subs.dat` amount to.
#[derive(Default)]
struct Log {
    subs: BTreeMap<u64, Sub>,
    /// Records that still describe something (new, update, msg) ...
    num_recs: u64,
    /// ... and records made obsolete (ack, update, delete, a deleted sub's pending).
    del_recs: u64,
    /// Bytes of records in the file, header excluded.
    file_size: u64,
    /// Highest subscription ID seen in create, update and delete records.
    max_id: u64,
}

pub(crate) struct SubStore {
    out: Appender,
    log: Log,
    compacted_at: Option<std::time::Duration>,
    /// Written since the last flush.
    activity: bool,
    scratch: Vec<u8>,
}

impl Log {
    fn apply(&mut self, rtype: u8, payload: &[u8]) -> Result<(), String> {
        let dec = |e: proto::DecodeError| e.0;
        match rtype {
            REC_NEW => {
                let state = proto::decode_sub_state(payload).map_err(dec)?;
                self.max_id = self.max_id.max(state.id);
                self.subs.insert(
                    state.id,
                    Sub {
                        state,
                        pending: BTreeSet::new(),
                    },
                );
                self.num_recs += 1;
            }
            REC_UPDATE => {
                let state = proto::decode_sub_state(payload).map_err(dec)?;
                self.max_id = self.max_id.max(state.id);
                match self.subs.get_mut(&state.id) {
                    Some(sub) => {
                        sub.state = state;
                        self.del_recs += 1;
                    }
                    None => {
                        self.subs.insert(
                            state.id,
                            Sub {
                                state,
                                pending: BTreeSet::new(),
                            },
                        );
                    }
                }
                self.num_recs += 1;
            }
            REC_DELETE => {
                let del = proto::decode_sub_delete(payload).map_err(dec)?;
                if let Some(sub) = self.subs.remove(&del.id) {
                    self.del_recs += 1 + sub.pending.len() as u64;
                }
                self.max_id = self.max_id.max(del.id);
            }
            REC_MSG => {
                let upd = proto::decode_sub_update(payload).map_err(dec)?;
                if let Some(sub) = self.subs.get_mut(&upd.id) {
                    // A queue redelivery repeats the sequence: a set, not a list.
                    sub.state.last_sent = sub.state.last_sent.max(upd.seqno);
                    sub.pending.insert(upd.seqno);
                    self.num_recs += 1;
                }
            }
            REC_ACK => {
                let upd = proto::decode_sub_update(payload).map_err(dec)?;
                if let Some(sub) = self.subs.get_mut(&upd.id) {
                    sub.pending.remove(&upd.seqno);
                    self.del_recs += 1;
                }
            }
            t => return Err(format!("unexpected record type: {t}")),
        }
        Ok(())
    }
}

impl SubStore {
    /// A new, empty `subs.dat` in the channel's directory.
    pub fn create(sh: &Shared, channel: &str, dir: &Path) -> Result<SubStore, String> {
        let path = dir.join(SUBS_FILE);
        let file = open_versioned(&*sh.fs, &path)
            .map_err(|e| format!("unable to create subscription store for [{channel}]: {e}"))?;
        let len = file.size().map_err(|e| os_error("stat", &path, &e))?;
        let out = Appender::new(path, file, len, MIN_BUFFER, sh.opts.buffer_max());
        Ok(SubStore::new(out, Log::default()))
    }

    fn new(out: Appender, log: Log) -> SubStore {
        SubStore {
            out,
            log,
            compacted_at: None,
            activity: false,
            scratch: Vec::new(),
        }
    }

    /// Replays the channel's `subs.dat` (created if missing).
    pub fn recover(sh: &Shared, channel: &str, dir: &Path) -> Result<SubStore, String> {
        Self::replay(sh, dir)
            .map_err(|e| format!("unable to recover subscription store for [{channel}]: {e}"))
    }

    fn replay(sh: &Shared, dir: &Path) -> Result<SubStore, String> {
        let path = dir.join(SUBS_FILE);
        let mut file = open_versioned(&*sh.fs, &path)?;
        let mut log = Log::default();
        let mut cut = None;
        {
            let mut r = SeqReader::new(&*file, 4).map_err(|e| os_error("read", &path, &e))?;
            loop {
                let offset = r.offset();
                match next_record(&mut r, true, sh.verify_crc()) {
                    Ok(Rec::Eof) => break,
                    Ok(Rec::Zero) => {
                        cut = Some((offset, None));
                        break;
                    }
                    Err(e) => {
                        cut = Some((offset, Some(e)));
                        break;
                    }
                    Ok(Rec::Record { rtype, payload }) => {
                        log.file_size += (payload.len() + HEADER_LEN) as u64;
                        log.apply(rtype, payload)?;
                    }
                }
            }
        }
        match cut {
            None => {}
            Some((offset, None)) => file
                .truncate(offset)
                .map_err(|e| os_error("truncate", &path, &e))?,
            Some((offset, Some(e))) => bad_record(sh, &mut *file, &path, offset, true, &e)?,
        }
        let len = file.size().map_err(|e| os_error("stat", &path, &e))?;
        let out = Appender::new(path, file, len, MIN_BUFFER, sh.opts.buffer_max());
        Ok(SubStore::new(out, log))
    }

    pub fn recovered(&self) -> Vec<RecoveredSub> {
        self.log
            .subs
            .values()
            .map(|s| RecoveredSub {
                state: s.state.clone(),
                pending: s.pending.iter().copied().collect(),
            })
            .collect()
    }

    pub fn max_id(&self) -> u64 {
        self.log.max_id
    }
    fn write(
        &mut self,
        sh: &Shared,
        rtype: u8,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), String> {
        self.scratch.clear();
        push_record(&mut self.scratch, &sh.crc, rtype, encode)?;
        self.out.write(&*sh.fs, &self.scratch)?;
        self.log.file_size += self.scratch.len() as u64;
        self.activity = true;
        Ok(())
    }

    pub fn contains(&self, id: u64) -> bool {
        self.log.subs.contains_key(&id)
    }

    pub fn create_sub(&mut self, sh: &Shared, state: &SubState) -> Result<(), String> {
        self.write(sh, REC_NEW, |out| out.extend_from_slice(&encode(state)))?;
        self.log.num_recs += 1;
        self.log.max_id = self.log.max_id.max(state.id);
        self.log.subs.insert(
            state.id,
            Sub {
                state: state.clone(),
                pending: BTreeSet::new(),
            },
        );
        Ok(())
    }

    pub fn update_sub(&mut self, sh: &Shared, state: &SubState) -> Result<(), String> {
        self.write(sh, REC_UPDATE, |out| out.extend_from_slice(&encode(state)))?;
        self.log.num_recs += 1;
        self.log.del_recs += 1;
        self.log.max_id = self.log.max_id.max(state.id);
        if let Some(sub) = self.log.subs.get_mut(&state.id) {
            sub.state = state.clone();
        }
        Ok(())
    }

    pub fn delete_sub(&mut self, sh: &Shared, id: u64) -> Result<(), String> {
        self.write(sh, REC_DELETE, |out| proto::encode_ids(out, id, None))?;
        self.log.del_recs += 1;
        if let Some(sub) = self.log.subs.remove(&id) {
            self.log.del_recs += sub.pending.len() as u64;
            self.maybe_compact(sh);
        }
        Ok(())
    }

    pub fn add_pending(&mut self, sh: &Shared, id: u64, seq: u64) -> Result<(), String> {
        self.write(sh, REC_MSG, |out| proto::encode_ids(out, id, Some(seq)))?;
        self.log.num_recs += 1;
        if let Some(sub) = self.log.subs.get_mut(&id) {
            sub.state.last_sent = sub.state.last_sent.max(seq);
            sub.pending.insert(seq);
        }
        Ok(())
    }

    pub fn ack_pending(&mut self, sh: &Shared, id: u64, seq: u64) -> Result<(), String> {
        self.write(sh, REC_ACK, |out| proto::encode_ids(out, id, Some(seq)))?;
        self.log.del_recs += 1;
        if let Some(sub) = self.log.subs.get_mut(&id) {
            sub.pending.remove(&seq);
            self.maybe_compact(sh);
        }
        Ok(())
    }

    /// Writes the buffer out, and fsyncs when `--file_sync` is on or `force_sync`.
    pub fn flush(&mut self, sh: &Shared, force_sync: bool) -> Result<(), String> {
        if self.activity {
            self.out.flush(&*sh.fs)?;
            self.activity = false;
        }
        if sh.file_sync() || force_sync {
            self.out.sync(&*sh.fs)?;
        }
        Ok(())
    }

    pub fn unsynced(&self) -> bool {
        self.activity || self.out.unsynced
    }

    pub fn shrink_buffer(&mut self) {
        self.out.shrink();
    }

    fn should_compact(&self, sh: &Shared) -> bool {
        let o = &sh.opts;
        if !o.compact_enabled {
            return false;
        }
        if o.compact_min_size > 0 && (self.log.file_size as i64) < o.compact_min_size {
            return false;
        }
        let frag = (self.log.del_recs * 100)
            .checked_div(self.log.num_recs)
            .unwrap_or(100);
        if (frag as i64) < o.compact_frag {
            return false;
        }
        match self.compacted_at {
            None => true,
            Some(at) => sh.now().saturating_sub(at).as_secs() as i64 >= o.compact_interval,
        }
    }

    /// A failed compaction leaves the current file in use, so it only costs space;
    /// it is logged rather than failing the delete or ack that triggered it.
    fn maybe_compact(&mut self, sh: &Shared) {
        if !self.should_compact(sh) {
            return;
        }
        if let Err(e) = self.compact(sh) {
            sh.log(
                Level::Error,
                &format!(
                    "Unable to compact subscriptions file {:?}: {e}",
                    self.out.path.display().to_string()
                ),
            );
        }
    }

    /// Rewrites the live subscriptions with their pending sequences to a temporary
    /// file in the root directory and renames it over `subs.dat`.
    fn compact(&mut self, sh: &Shared) -> Result<(), String> {
        self.out.flush(&*sh.fs)?;
        let mut data = super::record::FILE_VERSION.to_le_bytes().to_vec();
        let (mut num_recs, mut size) = (0u64, 0u64);
        for sub in self.log.subs.values() {
            let before = data.len();
            push_record(&mut data, &sh.crc, REC_NEW, |out| {
                out.extend_from_slice(&encode(&sub.state))
            })?;
            for &seq in &sub.pending {
                push_record(&mut data, &sh.crc, REC_MSG, |out| {
                    proto::encode_ids(out, sub.state.id, Some(seq))
                })?;
            }
            num_recs += 1 + sub.pending.len() as u64;
            size += (data.len() - before) as u64;
        }
        let file = tempfile::replace(sh, "subs", &data, &self.out.path)?;
        self.out.reset(file, data.len() as u64);
        self.log.num_recs = num_recs;
        self.log.del_recs = 0;
        self.log.file_size = size;
        self.compacted_at = Some(sh.now());
        Ok(())
    }

    /// Writes everything out and lets go of the file.
    pub fn close(&mut self, sh: &Shared) -> Result<(), String> {
        self.activity = false;
        self.out.close(&*sh.fs, true)
    }
}

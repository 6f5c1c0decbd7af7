//! A channel's messages: numbered slices of `msgs.<N>.dat` records with their fixed
//! size `msgs.<N>.idx` index records (STORES §1.7), appended through a write buffer
//! whose index records stay in memory until the buffer is written out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stan_core::store::MsgsState;
use stan_core::streaming::pb::MsgProto;
use stan_core::streaming::wire;

use super::archive;
use super::crc::Crc;
use super::env::{os_error, Shared};
use super::fs::FsFile;
use super::options::SliceLimits;
use super::record::{crc_mismatch, open_versioned, push_record, HEADER_LEN};

mod read;
mod recover;

/// What a message counts for beyond its encoded size: its record header and its index
/// record (BEHAVIOUR §4.4.3).
pub const MSG_OVERHEAD: u64 = (HEADER_LEN + INDEX_LEN) as u64;
pub const INDEX_LEN: usize = 32;
/// Initial write buffer of a message file.
const MIN_BUFFER: usize = 512;
/// Index records read at once for removals and timestamp lookups.
const INDEX_BLOCK: u64 = 256;
const ZERO_PADDED: &str = "end of file padded with zeros";

/// One `msgs.<N>.idx` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRec {
    pub seq: u64,
    /// Offset of the message's record header in the `.dat` file.
    pub offset: u64,
    pub timestamp: i64,
    /// Encoded `MsgProto` length.
    pub size: u32,
}

impl IndexRec {
    pub fn encode(&self, crc: &Crc) -> [u8; INDEX_LEN] {
        let mut b = [0u8; INDEX_LEN];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.timestamp.to_le_bytes());
        b[24..28].copy_from_slice(&self.size.to_le_bytes());
        let sum = crc.checksum(&b[..28]);
        b[28..32].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// `None` for an all-zero record, the end of valid data.
    pub fn decode(b: &[u8], crc: Option<&Crc>) -> Result<Option<IndexRec>, String> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let rec = IndexRec {
            seq: u64_at(0),
            offset: u64_at(8),
            timestamp: u64_at(16) as i64,
            size: u32_at(24),
        };
        let stored = u32_at(28);
        if b[..32].iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if let Some(crc) = crc {
            let computed = crc.checksum(&b[..28]);
            if computed != stored {
                return Err(crc_mismatch(stored, computed));
            }
        }
        Ok(Some(rec))
    }
}

struct Slice {
    dat_path: PathBuf,
    idx_path: PathBuf,
    dat: Option<Box<dyn FsFile>>,
    idx: Option<Box<dyn FsFile>>,
    /// Bytes of each file on disk (buffered records excluded).
    dat_len: u64,
    idx_len: u64,
    /// Sequence of the slice's first index record: index records are positioned
    /// from it, whatever was removed since.
    base_seq: u64,
    /// First message not removed, and last message.
    first_seq: u64,
    last_seq: u64,
    /// Messages written to the slice, removed ones included (they still take room).
    msgs: u64,
    removed: u64,
    bytes: u64,
    /// Timestamp of the slice's first message, for `--file_slice_max_age`.
    first_ts: i64,
    last_used: Duration,
    /// The store-wide count of open message files.
    open_files: Arc<AtomicUsize>,
}

impl Drop for Slice {
    fn drop(&mut self) {
        self.release();
    }
}

impl Slice {
    fn new(sh: &Shared, dat_path: PathBuf, idx_path: PathBuf) -> Slice {
        Slice {
            open_files: sh.open_files.clone(),
            dat_path,
            idx_path,
            dat: None,
            idx: None,
            dat_len: 4,
            idx_len: 4,
            base_seq: 0,
            first_seq: 0,
            last_seq: 0,
            msgs: 0,
            removed: 0,
            bytes: 0,
            first_ts: 0,
            last_used: Duration::ZERO,
        }
    }

    fn open(&mut self, sh: &Shared) -> Result<Files<'_>, String> {
        if self.dat.is_none() {
            let f = sh
                .fs
                .open(&self.dat_path)
                .map_err(|e| os_error("open", &self.dat_path, &e))?;
            self.dat = Some(f);
            sh.opened(1);
        }
        if self.idx.is_none() {
            let f = sh
                .fs
                .open(&self.idx_path)
                .map_err(|e| os_error("open", &self.idx_path, &e))?;
            self.idx = Some(f);
            sh.opened(1);
        }
        self.last_used = sh.now();
        Ok(Files {
            dat: &mut **self.dat.as_mut().expect("opened"),
            idx: &mut **self.idx.as_mut().expect("opened"),
            dat_path: &self.dat_path,
            idx_path: &self.idx_path,
        })
    }

    fn close(&mut self, _sh: &Shared) {
        self.release();
    }

    fn release(&mut self) {
        let n = usize::from(self.dat.take().is_some()) + usize::from(self.idx.take().is_some());
        self.open_files.fetch_sub(n, Ordering::Relaxed);
    }

    fn is_open(&self) -> bool {
        self.dat.is_some() || self.idx.is_some()
    }

    fn contains(&self, seq: u64) -> bool {
        self.first_seq <= seq && seq <= self.last_seq
    }

    /// Index records on disk.
    fn indexed(&self) -> u64 {
        (self.idx_len.saturating_sub(4)) / INDEX_LEN as u64
    }
}

/// A slice's open files with their paths, for error messages.
struct Files<'a> {
    dat: &'a mut dyn FsFile,
    idx: &'a mut dyn FsFile,
    dat_path: &'a Path,
    idx_path: &'a Path,
}

/// Records of the write slice not yet written to its files.
#[derive(Default)]
struct WriteBuffer {
    buf: Vec<u8>,
    cap: usize,
    /// Index records of the messages in `buf` (or written out while their index
    /// write failed), in sequence order.
    pending: Vec<IndexRec>,
    /// Written since the last fsync.
    unsynced: bool,
}

/// A block of consecutive messages read ahead of a catch-up subscriber.
struct ReadAhead {
    slice: i64,
    first_seq: u64,
    data: Vec<u8>,
    /// Payload position and length of each message.
    spans: Vec<(usize, usize)>,
    last_used: Duration,
}

/// Raw index records read ahead of removals and timestamp lookups.
struct IndexBlock {
    slice: i64,
    /// Position (record number) of the first record in `raw`.
    first: u64,
    raw: Vec<u8>,
}

pub(crate) struct MsgStore {
    channel: String,
    dir: PathBuf,
    slices: BTreeMap<i64, Slice>,
    write: WriteBuffer,
    next_slice: i64,
    first: u64,
    last: u64,
    count: u64,
    bytes: u64,
    limits: SliceLimits,
    scratch: Vec<u8>,
    read_ahead: Option<ReadAhead>,
    index_block: Option<IndexBlock>,
}

fn dat_name(n: i64) -> String {
    format!("msgs.{n}.dat")
}

fn idx_name(n: i64) -> String {
    format!("msgs.{n}.idx")
}

impl MsgStore {
    /// A channel without messages yet; its first slice is created by the first store.
    pub fn new(sh: &Shared, channel: &str, dir: &Path) -> MsgStore {
        MsgStore {
            channel: channel.to_owned(),
            dir: dir.to_owned(),
            slices: BTreeMap::new(),
            write: WriteBuffer {
                cap: MIN_BUFFER.min(sh.opts.buffer_max()),
                ..WriteBuffer::default()
            },
            next_slice: 1,
            first: 0,
            last: 0,
            count: 0,
            bytes: 0,
            limits: SliceLimits::new(&sh.opts, sh.channel_limits(channel)),
            scratch: Vec::new(),
            read_ahead: None,
            index_block: None,
        }
    }

    pub fn set_limits(&mut self, limits: SliceLimits) {
        self.limits = limits;
    }

    pub fn state(&self) -> MsgsState {
        MsgsState {
            count: self.count,
            bytes: self.bytes,
            first: self.first,
            last: self.last,
        }
    }

    fn write_num(&self) -> Option<i64> {
        self.slices.keys().next_back().copied()
    }

    // ---- appending ----

    /// Appends the message and returns what it counts for in the channel's bytes.
    pub fn store(&mut self, sh: &Shared, msg: &MsgProto) -> Result<u64, String> {
        let seq = msg.sequence;
        if seq == 0 || seq <= self.last {
            return Err(format!(
                "channel {:?}: expected sequence {}, got {seq}",
                self.channel,
                self.last + 1
            ));
        }
        if self.last > 0 && seq > self.last + 1 {
            self.fill_gaps(sh, seq, msg.timestamp)?;
        }
        self.maybe_rotate(sh, msg.timestamp)?;
        let size = self.append(sh, seq, &msg.subject, &msg.reply, &msg.data, msg.timestamp)?;
        Ok(size + MSG_OVERHEAD)
    }

    /// Placeholders for the sequences a clustered catch-up skipped, so that slices
    /// stay contiguous.
    fn fill_gaps(&mut self, sh: &Shared, upto: u64, timestamp: i64) -> Result<(), String> {
        if self.slices.is_empty() {
            self.start_slice(sh)?;
        }
        let channel = self.channel.clone();
        for seq in self.last + 1..upto {
            self.append(sh, seq, &channel, "", &[], timestamp)?;
        }
        Ok(())
    }

    fn maybe_rotate(&mut self, sh: &Shared, now_ns: i64) -> Result<(), String> {
        let l = self.limits;
        let full = match self.slices.values().next_back() {
            None => true,
            Some(s) => {
                l.any()
                    && ((l.bytes > 0 && s.bytes >= l.bytes)
                        || (l.msgs > 0 && s.msgs >= l.msgs)
                        || (l.age > 0 && s.msgs > 0 && now_ns.saturating_sub(s.first_ts) >= l.age))
            }
        };
        if full {
            self.start_slice(sh)?;
        }
        Ok(())
    }

    /// Closes the write slice (its records made durable as `--file_sync` says) and
    /// starts the next one.
    fn start_slice(&mut self, sh: &Shared) -> Result<(), String> {
        if let Some(num) = self.write_num() {
            self.flush(sh, false)?;
            self.slices.get_mut(&num).expect("write slice").close(sh);
        }
        let mut num = self.next_slice;
        let slice = loop {
            let mut s = Slice::new(
                sh,
                self.dir.join(dat_name(num)),
                self.dir.join(idx_name(num)),
            );
            let dat = open_versioned(&*sh.fs, &s.dat_path)?;
            let idx = open_versioned(&*sh.fs, &s.idx_path)?;
            s.dat_len = dat.size().map_err(|e| os_error("stat", &s.dat_path, &e))?;
            s.idx_len = idx.size().map_err(|e| os_error("stat", &s.idx_path, &e))?;
            s.dat = Some(dat);
            s.idx = Some(idx);
            sh.opened(2);
            s.last_used = sh.now();
            // An empty leftover slice (ignored by recovery) is reused; one with
            // content is never written over.
            if s.dat_len <= 4 && s.idx_len <= 4 {
                break s;
            }
            s.close(sh);
            num += 1;
        };
        self.slices.insert(num, slice);
        self.next_slice = num + 1;
        if self.slices.len() == 2 {
            let first = self.slices.values().next().expect("two slices");
            if first.msgs == first.removed {
                self.remove_first_slice(sh);
            }
        }
        Ok(())
    }

    /// Appends one message record to the write slice; returns its payload size.
    fn append(
        &mut self,
        sh: &Shared,
        seq: u64,
        subject: &str,
        reply: &str,
        data: &[u8],
        timestamp: i64,
    ) -> Result<u64, String> {
        self.scratch.clear();
        let size = push_record(&mut self.scratch, &sh.crc, 0, |out| {
            wire::encode_msg(out, seq, subject, reply, data, timestamp, false, 0)
        })?;
        let num = self.write_num().expect("a write slice exists");
        let slice = self.slices.get_mut(&num).expect("write slice");
        let w = &mut self.write;
        let rec = IndexRec {
            seq,
            offset: slice.dat_len + w.buf.len() as u64,
            timestamp,
            size: size as u32,
        };
        let max = sh.opts.buffer_max();
        let mut buffered = false;
        if max > 0 {
            if self.scratch.len() > w.cap - w.buf.len() {
                write_out(sh, slice, w)?;
                w.cap = (w.cap * 2).max(self.scratch.len()).min(max);
            }
            buffered = self.scratch.len() <= w.cap - w.buf.len();
        }
        if buffered {
            w.buf.extend_from_slice(&self.scratch);
            w.pending.push(rec);
        } else {
            write_out(sh, slice, w)?;
            let (dat_len, idx_len) = (slice.dat_len, slice.idx_len);
            let f = slice.open(sh)?;
            if let Err(e) = f.dat.append(&self.scratch) {
                let _ = f.dat.truncate(dat_len);
                return Err(os_error("write", f.dat_path, &e));
            }
            if let Err(e) = f.idx.append(&rec.encode(&sh.crc)) {
                let _ = f.idx.truncate(idx_len);
                let _ = f.dat.truncate(dat_len);
                return Err(os_error("write", f.idx_path, &e));
            }
            slice.dat_len += self.scratch.len() as u64;
            slice.idx_len += INDEX_LEN as u64;
            w.unsynced = true;
        }
        let bytes = size as u64 + MSG_OVERHEAD;
        if self.first == 0 || self.first == seq {
            self.first = seq;
        }
        self.last = seq;
        self.count += 1;
        self.bytes += bytes;
        if slice.msgs == 0 {
            slice.base_seq = seq;
            slice.first_seq = seq;
            slice.first_ts = timestamp;
        }
        if slice.first_seq == 0 {
            slice.first_seq = seq;
        }
        slice.msgs += 1;
        slice.bytes += bytes;
        slice.last_seq = seq;
        Ok(size as u64)
    }

    /// Writes buffered records and pending index records, then fsyncs both files
    /// when `--file_sync` is on (or `force_sync`) and something was written.
    pub fn flush(&mut self, sh: &Shared, force_sync: bool) -> Result<(), String> {
        let Some(num) = self.write_num() else {
            return Ok(());
        };
        let slice = self.slices.get_mut(&num).expect("write slice");
        write_out(sh, slice, &mut self.write)?;
        if (sh.file_sync() || force_sync) && self.write.unsynced {
            let f = slice.open(sh)?;
            f.dat.sync().map_err(|e| os_error("sync", f.dat_path, &e))?;
            f.idx.sync().map_err(|e| os_error("sync", f.idx_path, &e))?;
            self.write.unsynced = false;
        }
        Ok(())
    }

    pub fn unsynced(&self) -> bool {
        self.write.unsynced || !self.write.buf.is_empty() || !self.write.pending.is_empty()
    }

    // ---- removal ----

    /// Removes the oldest message. Removal is logical; a slice whose messages are all
    /// gone is deleted (or archived) unless it is the last one.
    pub fn remove_oldest(&mut self, sh: &Shared) -> Result<(), String> {
        if self.count == 0 {
            return Err(format!("channel {:?}: no message to remove", self.channel));
        }
        loop {
            let Some((&num, slice)) = self.slices.iter().next() else {
                return Err(format!("channel {:?}: no message to remove", self.channel));
            };
            let seq = slice.first_seq;
            if seq > slice.last_seq {
                // Only holes were left in this slice.
                if self.slices.len() > 1 {
                    self.remove_first_slice(sh);
                    continue;
                }
                self.count = 0;
                self.bytes = 0;
                self.first = self.last + 1;
                return Ok(());
            }
            self.first = seq;
            let rec = match self.pending_index(seq) {
                Some(r) if Some(num) == self.write_num() => Some(r),
                _ => self.read_index(sh, num, seq)?,
            };
            let single = self.slices.len() == 1;
            let slice = self.slices.get_mut(&num).expect("first slice");
            self.first = seq + 1;
            let Some(rec) = rec else {
                // A hole in an old store: skip the sequence, nothing to count.
                slice.first_seq = seq + 1;
                continue;
            };
            slice.removed += 1;
            self.count -= 1;
            self.bytes = self
                .bytes
                .saturating_sub(u64::from(rec.size) + MSG_OVERHEAD);
            if slice.removed >= slice.msgs && !single {
                self.remove_first_slice(sh);
                if let Some(next) = self.slices.values().next() {
                    if next.msgs > next.removed {
                        self.first = self.first.max(next.first_seq);
                    }
                }
            } else {
                slice.first_seq = self.first;
            }
            return Ok(());
        }
    }

    fn remove_first_slice(&mut self, sh: &Shared) {
        let Some((num, mut slice)) = self.slices.pop_first() else {
            return;
        };
        slice.close(sh);
        if self.read_ahead.as_ref().is_some_and(|r| r.slice == num) {
            self.read_ahead = None;
        }
        if self.index_block.as_ref().is_some_and(|b| b.slice == num) {
            self.index_block = None;
        }
        let script = &sh.opts.slice_archive_script;
        if !script.is_empty() {
            let dat_bak = bak(&slice.dat_path);
            let idx_bak = bak(&slice.idx_path);
            let renamed = match sh.fs.rename(&slice.dat_path, &dat_bak) {
                Ok(()) => match sh.fs.rename(&slice.idx_path, &idx_bak) {
                    Ok(()) => true,
                    Err(_) => {
                        let _ = sh.fs.remove_file(&dat_bak);
                        false
                    }
                },
                Err(_) => false,
            };
            if renamed {
                archive::spawn(
                    sh.log.clone(),
                    script.clone(),
                    self.channel.clone(),
                    dat_bak,
                    idx_bak,
                );
                return;
            }
        }
        let _ = sh.fs.remove_file(&slice.dat_path);
        let _ = sh.fs.remove_file(&slice.idx_path);
    }

    // ---- housekeeping ----

    /// Closes slices (other than the write slice) and drops read-ahead data unused
    /// for `idle`.
    pub fn close_idle(&mut self, sh: &Shared, now: Duration, idle: Duration) {
        let write = self.write_num();
        for (&num, s) in self.slices.iter_mut() {
            if Some(num) != write && s.is_open() && now.saturating_sub(s.last_used) >= idle {
                s.close(sh);
            }
        }
        if self
            .read_ahead
            .as_ref()
            .is_some_and(|r| now.saturating_sub(r.last_used) >= idle)
        {
            self.read_ahead = None;
        }
    }

    /// Writes everything out (fsync as `--file_sync` says, or when `sync`) and closes
    /// every file; they reopen on demand.
    pub fn close_files(&mut self, sh: &Shared, sync: bool) -> Result<(), String> {
        self.flush(sh, sync)?;
        for s in self.slices.values_mut() {
            s.close(sh);
        }
        self.read_ahead = None;
        self.index_block = None;
        Ok(())
    }

    pub fn shrink_buffer(&mut self, sh: &Shared) {
        let w = &mut self.write;
        let min = MIN_BUFFER.min(sh.opts.buffer_max());
        if w.cap > min && w.buf.len() * 2 <= w.cap {
            w.cap = (w.cap / 2).max(min);
            w.buf.shrink_to(w.cap);
        }
    }
}

fn bak(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

/// Writes the write slice's buffered records, then their index records.
fn write_out(sh: &Shared, slice: &mut Slice, w: &mut WriteBuffer) -> Result<(), String> {
    if w.buf.is_empty() && w.pending.is_empty() {
        return Ok(());
    }
    let (dat_len, idx_len) = (slice.dat_len, slice.idx_len);
    let (mut written, mut indexed) = (0, 0);
    let f = slice.open(sh)?;
    if !w.buf.is_empty() {
        if let Err(e) = f.dat.append(&w.buf) {
            let _ = f.dat.truncate(dat_len);
            return Err(os_error("write", f.dat_path, &e));
        }
        written = w.buf.len() as u64;
        w.buf.clear();
        w.unsynced = true;
    }
    let mut result = Ok(());
    if !w.pending.is_empty() {
        let mut raw = Vec::with_capacity(w.pending.len() * INDEX_LEN);
        for r in &w.pending {
            raw.extend_from_slice(&r.encode(&sh.crc));
        }
        // Only the index is retried next time: the records it points to are written.
        match f.idx.append(&raw) {
            Ok(()) => {
                indexed = raw.len() as u64;
                w.pending.clear();
                w.unsynced = true;
            }
            Err(e) => {
                let _ = f.idx.truncate(idx_len);
                result = Err(os_error("write", f.idx_path, &e));
            }
        }
    }
    slice.dat_len += written;
    slice.idx_len += indexed;
    result
}

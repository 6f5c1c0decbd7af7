//! The Raft log of clustered mode on disk, behind stan-core's [`RaftLog`] port.
//!
//! A log directory holds two files, each opening with a magic text that names stan-rs
//! and a format version, so that a file of any other origin is refused rather than
//! misread:
//!
//! - `entries.dat`: `stan-rs raft entries` and a `u32` version, then one record per
//!   entry, in index order from 1: `[data length u32][crc32 u32][term u64][index u64]
//!   [data]`, little-endian, the CRC (IEEE) covering term, index and data. Only each
//!   record's offset and term are kept in memory; data is read back on demand.
//! - `state.dat`: `stan-rs raft state` and a `u32` version, then `[payload length u32]
//!   [crc32 u32][term u64][commit u64][vote]`. It is replaced whole (written to
//!   `state.dat.tmp`, then renamed over), so it is always either the old or the new
//!   hard state.
//!
//! Recovery on open keeps every record that checks out. A damaged or short record
//! with nothing valid after it is the torn tail of writes that were never made
//! durable, and is cut off. Damage followed by valid records cannot come from a torn
//! append, and cutting there could drop committed entries, so it is refused; so is a
//! hard state whose commit index lies past the recovered entries.
//!
//! `state.dat` is written when the directory is first opened, before any entry can
//! be appended. A missing `state.dat` next to an `entries.dat` that holds no entry is
//! a first open interrupted by a crash, and is completed; next to one that holds
//! entries it means the term and vote were lost, which could make this member vote
//! twice in a term, so it is refused.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stan_core::raft::{Entry, HardState, LogError, RaftLog};

use crate::store::crc::{Crc, IEEE};
use crate::store::os_error;
use crate::store::{Fs, FsFile};

const ENTRIES_FILE: &str = "entries.dat";
const STATE_FILE: &str = "state.dat";
const STATE_TMP: &str = "state.dat.tmp";
/// The Go server's Raft log (BoltDB), kept in the same kind of directory.
const FOREIGN_LOG: &str = "raft.log";

const ENTRIES_MAGIC: &[u8] = b"stan-rs raft entries";
const STATE_MAGIC: &[u8] = b"stan-rs raft state";
const VERSION: u32 = 1;
const ENTRIES_HEADER: u64 = ENTRIES_MAGIC.len() as u64 + 4;
const RECORD_HEADER: usize = 24;

/// Appends collect in memory up to this many bytes before reaching the file, so that
/// a batch of small entries costs one write.
const WRITE_BUFFER: usize = 1 << 20;
/// Recovery and damage searches read the file in pieces of this size, so that a
/// large log opens without holding its data in memory.
const READ_CHUNK: usize = 256 << 10;
/// Far more than any hard state; a larger `state.dat` is not one of ours.
const MAX_STATE_FILE: u64 = 1 << 16;

/// A Raft log in a directory of its own. Writes are durable once
/// [`RaftLog::flush`] returns; dropping the log without flushing loses what was
/// appended since, as a crash would.
///
/// An append that cuts the log back truncates the file at once, so entries cut and
/// appended again are durable only after the next flush: appending from the first
/// entry that differs, as Raft does, never puts committed entries at risk. After a
/// failed write every further change is refused; reopening recovers.
pub struct FileRaftLog {
    fs: Arc<dyn Fs>,
    entries_path: PathBuf,
    state_path: PathBuf,
    tmp_path: PathBuf,
    file: Box<dyn FsFile>,
    sync: bool,
    crc: Crc,
    /// Offset and term of the record of entry `i + 1`.
    records: Vec<(u64, u64)>,
    /// Bytes handed to the file; `pending` holds the records after them.
    file_len: u64,
    pending: Vec<u8>,
    /// Whether the file changed since its last fsync.
    unsynced: bool,
    hs: HardState,
    saved_hs: HardState,
    /// Set by a failed write: the file may then hold an unknown part of it, and any
    /// further append would land after garbage, so the log refuses to go on.
    broken: Option<LogError>,
}

impl std::fmt::Debug for FileRaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRaftLog")
            .field("entries_path", &self.entries_path)
            .field("last_index", &self.last_index())
            .field("hard_state", &self.hs)
            .finish_non_exhaustive()
    }
}

fn err(text: String) -> LogError {
    LogError(text)
}

fn io_err<'a>(op: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |e| err(os_error(op, path, &e))
}

impl FileRaftLog {
    /// Opens or creates the log in `dir` (created if missing). With `sync` (the
    /// `cluster_sync` option), [`RaftLog::flush`] fsyncs; otherwise it only hands the
    /// writes to the operating system, which survives the process but not the
    /// machine.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path, sync: bool) -> Result<FileRaftLog, LogError> {
        fs.create_dir_all(dir).map_err(io_err("mkdir", dir))?;
        let foreign = dir.join(FOREIGN_LOG);
        if fs.exists(&foreign).map_err(io_err("stat", &foreign))? {
            return Err(err(format!(
                "{}: the directory holds a Raft log of another format ({FOREIGN_LOG}); \
                 this server keeps its Raft log in {ENTRIES_FILE} and {STATE_FILE} and \
                 cannot read that one",
                dir.display()
            )));
        }
        let entries_path = dir.join(ENTRIES_FILE);
        let state_path = dir.join(STATE_FILE);
        let tmp_path = dir.join(STATE_TMP);
        // A leftover temporary file is a replacement that never happened.
        if fs.exists(&tmp_path).map_err(io_err("stat", &tmp_path))? {
            fs.remove_file(&tmp_path)
                .map_err(io_err("remove", &tmp_path))?;
        }

        let crc = Crc::new(IEEE);
        let hs = if fs
            .exists(&state_path)
            .map_err(io_err("stat", &state_path))?
        {
            Some(read_state(&*fs, &state_path, &crc)?)
        } else {
            None
        };

        let entries_exist = fs
            .exists(&entries_path)
            .map_err(io_err("stat", &entries_path))?;
        let (file, records, file_len) = if entries_exist {
            let mut file = fs
                .open(&entries_path)
                .map_err(io_err("open", &entries_path))?;
            let (records, end) = recover(&mut *file, &entries_path, &crc)?;
            (Some(file), records, end)
        } else {
            (None, Vec::new(), ENTRIES_HEADER)
        };

        let hs = match hs {
            Some(hs) => hs,
            None if records.is_empty() => {
                let hs = HardState::default();
                write_state(&*fs, &tmp_path, &state_path, &hs, &crc, sync)?;
                hs
            }
            None => {
                return Err(err(format!(
                    "{}: missing while {} holds {} entries; the term and vote cannot be \
                     recovered",
                    state_path.display(),
                    entries_path.display(),
                    records.len()
                )))
            }
        };
        if hs.commit > records.len() as u64 {
            return Err(err(format!(
                "{}: commit index {} is past the last entry {} of {}: committed entries \
                 are missing",
                state_path.display(),
                hs.commit,
                records.len(),
                entries_path.display()
            )));
        }
        // Created after the state file, so that entries never exist without one.
        let file = match file {
            Some(file) => file,
            None => {
                let path = &entries_path;
                let mut file = fs.create(path).map_err(io_err("open", path))?;
                file.append(&entries_header())
                    .map_err(io_err("write", path))?;
                if sync {
                    file.sync().map_err(io_err("sync", path))?;
                }
                file
            }
        };
        Ok(FileRaftLog {
            fs,
            entries_path,
            state_path,
            tmp_path,
            file,
            sync,
            crc,
            records,
            file_len,
            pending: Vec::new(),
            unsynced: false,
            hs: hs.clone(),
            saved_hs: hs,
            broken: None,
        })
    }

    fn check(&self) -> Result<(), LogError> {
        match &self.broken {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Remembers the first write failure, which every later call then reports.
    fn fail(&mut self, e: LogError) -> LogError {
        self.broken = Some(e.clone());
        e
    }

    fn end(&self) -> u64 {
        self.file_len + self.pending.len() as u64
    }

    /// The offset where entry `index`'s record ends.
    fn record_end(&self, index: u64) -> u64 {
        self.records
            .get(index as usize)
            .map_or_else(|| self.end(), |r| r.0)
    }

    fn write_pending(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.append(&self.pending) {
            let e = err(os_error("write", &self.entries_path, &e));
            return Err(self.fail(e));
        }
        self.file_len += self.pending.len() as u64;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Removes entries from `index` on.
    fn cut_back(&mut self, index: u64) -> Result<(), LogError> {
        let at = self.records[index as usize - 1].0;
        self.records.truncate(index as usize - 1);
        if at >= self.file_len {
            self.pending.truncate((at - self.file_len) as usize);
            return Ok(());
        }
        self.pending.clear();
        if let Err(e) = self.file.truncate(at) {
            let e = err(os_error("truncate", &self.entries_path, &e));
            return Err(self.fail(e));
        }
        self.file_len = at;
        self.unsynced = true;
        Ok(())
    }

    /// Reads and verifies the records of entries `first..=last`.
    fn read_entries(&self, first: u64, last: u64) -> Result<Vec<Entry>, LogError> {
        let start = self.records[first as usize - 1].0;
        let end = self.record_end(last);
        let mut span = vec![0u8; (end - start) as usize];
        // Bytes before `split` are in the file, the rest still in `pending`.
        let split = self.file_len.clamp(start, end);
        let in_file = (split - start) as usize;
        if in_file > 0 {
            let n = self
                .file
                .read_at(&mut span[..in_file], start)
                .map_err(io_err("read", &self.entries_path))?;
            if n < in_file {
                return Err(err(format!(
                    "{}: file ends at offset {} inside entry records",
                    self.entries_path.display(),
                    start + n as u64
                )));
            }
        }
        if split < end {
            let from = (split - self.file_len) as usize;
            span[in_file..].copy_from_slice(&self.pending[from..from + (end - split) as usize]);
        }

        let mut out = Vec::with_capacity((last - first + 1) as usize);
        let mut at = 0usize;
        for index in first..=last {
            let offset = start + at as u64;
            let rec = &span[at..];
            let size = self.record_end(index) - self.records[index as usize - 1].0;
            let parsed = parse_record(&self.crc, rec, rec.len() as u64).filter(|r| {
                r.index == index
                    && r.term == self.records[index as usize - 1].1
                    && (RECORD_HEADER + r.len) as u64 == size
            });
            let Some(r) = parsed else {
                return Err(err(format!(
                    "{}: damaged record of entry {index} at offset {offset}",
                    self.entries_path.display()
                )));
            };
            out.push(Entry {
                term: r.term,
                index,
                data: rec[RECORD_HEADER..RECORD_HEADER + r.len].to_vec(),
            });
            at += RECORD_HEADER + r.len;
        }
        Ok(out)
    }
}

impl RaftLog for FileRaftLog {
    fn hard_state(&self) -> HardState {
        self.hs.clone()
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.check()?;
        self.hs = hs.clone();
        Ok(())
    }

    fn last_index(&self) -> u64 {
        self.records.len() as u64
    }

    fn term(&self, index: u64) -> Result<Option<u64>, LogError> {
        if index == 0 {
            return Ok(Some(0));
        }
        Ok(self.records.get(index as usize - 1).map(|r| r.1))
    }

    fn entries(&mut self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        let first = from.max(1);
        let last_index = self.last_index();
        if first > last_index {
            return Ok(Vec::new());
        }
        // Sizes come from the offsets alone, so only the records returned are read.
        let mut last = first;
        let mut bytes = 0usize;
        for index in first..=last_index {
            let len = self.record_end(index) - self.records[index as usize - 1].0;
            bytes = bytes.saturating_add(len as usize - RECORD_HEADER);
            if index > first && bytes > max_bytes {
                break;
            }
            last = index;
        }
        self.read_entries(first, last)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        self.check()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index == 0 || first.index > self.last_index() + 1 {
            return Err(err(format!(
                "append at index {} after last index {}",
                first.index,
                self.last_index()
            )));
        }
        // Checked before anything changes: a record out of order would make the
        // file refuse to open.
        let mut prev_term = self.term(first.index - 1)?.unwrap_or(0);
        for (k, e) in entries.iter().enumerate() {
            if e.index != first.index + k as u64 {
                return Err(err(format!(
                    "append: entry index {} where {} was expected",
                    e.index,
                    first.index + k as u64
                )));
            }
            if e.term < prev_term {
                return Err(err(format!(
                    "append: entry {} has term {} below the previous term {prev_term}",
                    e.index, e.term
                )));
            }
            if u32::try_from(e.data.len()).is_err() {
                return Err(err(format!(
                    "append: entry {} holds {} bytes, more than a record can",
                    e.index,
                    e.data.len()
                )));
            }
            prev_term = e.term;
        }
        if first.index <= self.last_index() {
            self.cut_back(first.index)?;
        }
        for e in entries {
            self.records.push((self.end(), e.term));
            encode_record(&self.crc, e, &mut self.pending);
            if self.pending.len() >= WRITE_BUFFER {
                self.write_pending()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        self.check()?;
        self.write_pending()?;
        if self.sync && self.unsynced {
            if let Err(e) = self.file.sync() {
                let e = err(os_error("sync", &self.entries_path, &e));
                return Err(self.fail(e));
            }
            self.unsynced = false;
        }
        // After the entries: a saved commit index must never point past durable ones.
        if self.hs != self.saved_hs {
            // On failure the old state file is intact, so a later flush may retry.
            write_state(
                &*self.fs,
                &self.tmp_path,
                &self.state_path,
                &self.hs,
                &self.crc,
                self.sync,
            )?;
            self.saved_hs = self.hs.clone();
        }
        Ok(())
    }
}

fn entries_header() -> Vec<u8> {
    let mut h = ENTRIES_MAGIC.to_vec();
    h.extend_from_slice(&VERSION.to_le_bytes());
    h
}

fn encode_record(crc: &Crc, e: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&e.term.to_le_bytes());
    out.extend_from_slice(&e.index.to_le_bytes());
    out.extend_from_slice(&e.data);
    let sum = crc.checksum(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
}

struct Record {
    term: u64,
    index: u64,
    len: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// The fixed part of the record at the start of `b`, if `b` is long enough for it.
fn record_header(b: &[u8]) -> Option<(usize, u32, u64, u64)> {
    if b.len() < RECORD_HEADER {
        return None;
    }
    Some((
        u32_at(b, 0) as usize,
        u32_at(b, 4),
        u64_at(b, 8),
        u64_at(b, 16),
    ))
}

/// The record at the start of `b` if it is whole (within `b` and `room` bytes) and
/// its checksum matches.
fn parse_record(crc: &Crc, b: &[u8], room: u64) -> Option<Record> {
    let (len, sum, term, index) = record_header(b)?;
    let size = RECORD_HEADER + len;
    if size as u64 > room || size > b.len() || crc.checksum(&b[8..size]) != sum {
        return None;
    }
    Some(Record { term, index, len })
}

/// Sequential reads of a file through one buffer.
struct Reader<'a> {
    file: &'a dyn FsFile,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Reader<'a> {
    fn new(file: &'a dyn FsFile) -> Reader<'a> {
        Reader {
            file,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Up to `len` bytes at `offset`, fewer only at the end of the file.
    fn get(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let have = self.start + self.buf.len() as u64;
        if offset < self.start || offset + len as u64 > have {
            self.buf.resize(len.max(READ_CHUNK), 0);
            let n = self.file.read_at(&mut self.buf, offset)?;
            self.buf.truncate(n);
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        let to = (from + len).min(self.buf.len());
        Ok(&self.buf[from..to])
    }
}

/// Checks the entries file and cuts off a torn tail; returns the offset and term of
/// every record and the offset where they end.
fn recover(
    file: &mut dyn FsFile,
    path: &Path,
    crc: &Crc,
) -> Result<(Vec<(u64, u64)>, u64), LogError> {
    let size = file.size().map_err(io_err("stat", path))?;
    let header = entries_header();
    let mut head = vec![0u8; header.len()];
    let n = file.read_at(&mut head, 0).map_err(io_err("read", path))?;
    head.truncate(n);
    if (n as u64) < ENTRIES_HEADER && header.starts_with(&head) {
        // The creation of the file was cut short: nothing was ever in it.
        file.truncate(0).map_err(io_err("truncate", path))?;
        file.append(&header).map_err(io_err("write", path))?;
        file.sync().map_err(io_err("sync", path))?;
        return Ok((Vec::new(), ENTRIES_HEADER));
    }
    check_header(path, &head, ENTRIES_MAGIC)?;

    let mut records = Vec::new();
    let mut reader = Reader::new(&*file);
    let mut at = ENTRIES_HEADER;
    let mut last_term = 0;
    let mut torn = false;
    while at < size {
        let room = size - at;
        let (len, ..) = match record_header(
            reader
                .get(at, RECORD_HEADER)
                .map_err(io_err("read", path))?,
        ) {
            Some(h) => h,
            None => {
                torn = true;
                break;
            }
        };
        // A length running past the end is a torn record; its data is not read.
        if (RECORD_HEADER + len) as u64 > room {
            torn = true;
            break;
        }
        let bytes = reader
            .get(at, RECORD_HEADER + len)
            .map_err(io_err("read", path))?;
        let Some(r) = parse_record(crc, bytes, room) else {
            torn = true;
            break;
        };
        let expected = records.len() as u64 + 1;
        if r.index != expected {
            return Err(err(format!(
                "{}: record at offset {at} has index {}, expected {expected}",
                path.display(),
                r.index
            )));
        }
        if r.term < last_term {
            return Err(err(format!(
                "{}: record at offset {at} has term {} below the previous term {last_term}",
                path.display(),
                r.term
            )));
        }
        records.push((at, r.term));
        last_term = r.term;
        at += (RECORD_HEADER + r.len) as u64;
    }
    drop(reader);
    if torn {
        let next = records.len() as u64 + 1;
        if let Some(found) = valid_record_after(&*file, crc, at, size, next, last_term)
            .map_err(io_err("read", path))?
        {
            return Err(err(format!(
                "{}: damaged record at offset {at} followed by a valid record at offset \
                 {found}; refusing to drop entries that may be committed",
                path.display()
            )));
        }
        file.truncate(at).map_err(io_err("truncate", path))?;
        file.sync().map_err(io_err("sync", path))?;
    }
    Ok((records, at))
}

/// The offset of a record after the damaged one at `damaged` that could belong to
/// this log (index `next` or later, term not below `last_term`, checksum right).
fn valid_record_after(
    file: &dyn FsFile,
    crc: &Crc,
    damaged: u64,
    size: u64,
    next: u64,
    last_term: u64,
) -> io::Result<Option<u64>> {
    let mut reader = Reader::new(file);
    let mut at = damaged + 1;
    while at + RECORD_HEADER as u64 <= size {
        let room = size - at;
        // Cheap tests first: a candidate's index must fit in the bytes left.
        let max_index = next + room / RECORD_HEADER as u64;
        let fits = match record_header(reader.get(at, RECORD_HEADER)?) {
            Some((len, _, term, index)) => {
                (next..=max_index).contains(&index)
                    && term >= last_term
                    && (RECORD_HEADER + len) as u64 <= room
            }
            None => false,
        };
        if fits {
            let (len, ..) = record_header(reader.get(at, RECORD_HEADER)?).unwrap_or_default();
            let bytes = reader.get(at, RECORD_HEADER + len)?;
            if parse_record(crc, bytes, room).is_some() {
                return Ok(Some(at));
            }
        }
        at += 1;
    }
    Ok(None)
}

fn check_header(path: &Path, head: &[u8], magic: &[u8]) -> Result<(), LogError> {
    if head.len() < magic.len() + 4 || !head.starts_with(magic) {
        return Err(err(format!(
            "{}: not a stan-rs Raft log file (unknown header)",
            path.display()
        )));
    }
    let version = u32_at(head, magic.len());
    if version != VERSION {
        return Err(err(format!(
            "{}: Raft log format version {version} is not supported (this server reads \
             version {VERSION})",
            path.display()
        )));
    }
    Ok(())
}

/// Replaces the state file whole: a crash leaves either the old or the new one.
fn write_state(
    fs: &dyn Fs,
    tmp: &Path,
    target: &Path,
    hs: &HardState,
    crc: &Crc,
    sync: bool,
) -> Result<(), LogError> {
    let mut file = fs.create(tmp).map_err(io_err("open", tmp))?;
    file.truncate(0).map_err(io_err("truncate", tmp))?;
    file.append(&encode_state(hs, crc))
        .map_err(io_err("write", tmp))?;
    if sync {
        file.sync().map_err(io_err("sync", tmp))?;
    }
    drop(file);
    let op = format!("rename {}", tmp.display());
    fs.rename(tmp, target).map_err(io_err(&op, target))
}

fn encode_state(hs: &HardState, crc: &Crc) -> Vec<u8> {
    let mut payload = Vec::with_capacity(16 + hs.vote.len());
    payload.extend_from_slice(&hs.term.to_le_bytes());
    payload.extend_from_slice(&hs.commit.to_le_bytes());
    payload.extend_from_slice(hs.vote.as_bytes());
    let mut out = STATE_MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.checksum(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn read_state(fs: &dyn Fs, path: &Path, crc: &Crc) -> Result<HardState, LogError> {
    let file = fs.open(path).map_err(io_err("open", path))?;
    let size = file.size().map_err(io_err("stat", path))?;
    let mut bytes = vec![0u8; size.min(MAX_STATE_FILE) as usize];
    let n = file.read_at(&mut bytes, 0).map_err(io_err("read", path))?;
    bytes.truncate(n);
    check_header(path, &bytes, STATE_MAGIC)?;
    if size > MAX_STATE_FILE {
        return Err(err(format!(
            "{}: damaged hard state ({size} bytes)",
            path.display()
        )));
    }
    decode_state(&bytes[STATE_MAGIC.len() + 4..], crc)
        .ok_or_else(|| err(format!("{}: damaged hard state", path.display())))
}

fn decode_state(b: &[u8], crc: &Crc) -> Option<HardState> {
    if b.len() < 8 {
        return None;
    }
    let len = u32_at(b, 0) as usize;
    let payload = &b[8..];
    if payload.len() != len || len < 16 || crc.checksum(payload) != u32_at(b, 4) {
        return None;
    }
    Some(HardState {
        term: u64_at(payload, 0),
        commit: u64_at(payload, 8),
        vote: String::from_utf8(payload[16..].to_vec()).ok()?,
    })
}

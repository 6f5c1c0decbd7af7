//! Record framing shared by every `.dat` file (STORES §1.2–1.3), the version header,
//! buffered appending, and the recovery rules for a record that cannot be read
//! (STORES §1.9).

use std::io;
use std::path::{Path, PathBuf};

use stan_core::log::Level;

use super::crc::Crc;
use super::env::{os_error, reason, Shared};
use super::fs::{Fs, FsFile};

/// The only file version there is; written as the first 4 bytes of every file.
pub const FILE_VERSION: u32 = 1;
/// Header word + CRC.
pub const HEADER_LEN: usize = 8;
/// A typed record keeps its size in the low 24 bits of the header word.
pub const MAX_TYPED_SIZE: usize = 0xFF_FFFF;

/// `%q` of a path, as the Go server quotes file names in its messages.
pub fn q(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Appends one framed record: header word (`type << 24 | size`, or the bare size
/// when `rtype` is 0), CRC of the payload, then the payload `encode` writes.
pub fn push_record(
    out: &mut Vec<u8>,
    crc: &Crc,
    rtype: u8,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<usize, String> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    encode(out);
    let size = out.len() - start - HEADER_LEN;
    let word = if rtype == 0 {
        u32::try_from(size).ok()
    } else if size <= MAX_TYPED_SIZE {
        Some(u32::from(rtype) << 24 | size as u32)
    } else {
        None
    };
    let Some(word) = word else {
        out.truncate(start);
        return Err("record size too big".into());
    };
    let sum = crc.checksum(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&word.to_le_bytes());
    out[start + 4..start + HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    Ok(size)
}

/// Reads and checks the version header of an existing file.
pub fn check_version(file: &dyn FsFile, path: &Path) -> Result<(), String> {
    let mut v = [0u8; 4];
    let n = file.read_at(&mut v, 0).map_err(|e| {
        format!(
            "unable to verify file version: {}",
            os_error("read", path, &e)
        )
    })?;
    if n < 4 {
        let what = if n == 0 { "EOF" } else { "unexpected EOF" };
        return Err(format!("unable to verify file version: {what}"));
    }
    let v = u32::from_le_bytes(v);
    if v == 0 || v > FILE_VERSION {
        return Err(format!(
            "unsupported file version: {v} (supports [1..{FILE_VERSION}])"
        ));
    }
    Ok(())
}

/// Opens `path` for appending, creating it with the version header if it does not
/// exist, checking the header if it does.
pub fn open_versioned(fs: &dyn Fs, path: &Path) -> Result<Box<dyn FsFile>, String> {
    let existed = fs.exists(path).unwrap_or(false);
    let mut file = fs.create(path).map_err(|e| os_error("open", path, &e))?;
    if existed {
        check_version(&*file, path)?;
    } else {
        file.append(&FILE_VERSION.to_le_bytes())
            .map_err(|e| os_error("write", path, &e))?;
    }
    Ok(file)
}

/// Reads a file front to back in large chunks.
pub struct SeqReader<'f> {
    file: &'f dyn FsFile,
    len: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[end]`.
    next: u64,
}

const READ_CHUNK: usize = 1 << 20;

impl<'f> SeqReader<'f> {
    pub fn new(file: &'f dyn FsFile, from: u64) -> io::Result<SeqReader<'f>> {
        let len = file.size()?;
        Ok(SeqReader {
            file,
            len,
            buf: Vec::new(),
            start: 0,
            end: 0,
            next: from.min(len),
        })
    }

    /// File offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.next - (self.end - self.start) as u64
    }

    pub fn remaining(&self) -> u64 {
        self.len - self.offset()
    }

    /// The next `n` bytes, fewer only at end of file.
    pub fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.start < n && self.next < self.len {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let read_len = (n - self.end)
                .max(READ_CHUNK)
                .min((self.len - self.next) as usize);
            let want = self.end + read_len;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            let got = self
                .file
                .read_at(&mut self.buf[self.end..want], self.next)?;
            self.end += got;
            self.next += got as u64;
            if got < read_len {
                // The file shrank under us: treat what was read as its end.
                self.len = self.next;
            }
        }
        let k = n.min(self.end - self.start);
        let out = &self.buf[self.start..self.start + k];
        self.start += k;
        Ok(out)
    }
}

/// One step of reading a `.dat` file during recovery.
pub enum Rec<'a> {
    /// Clean end of file.
    Eof,
    /// An all-zero header: the rest is a zero-filled tail to cut off.
    Zero,
    Record {
        rtype: u8,
        payload: &'a [u8],
    },
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecErr {
    /// The file ends inside the record.
    UnexpectedEof,
    /// A checksum mismatch or an I/O error.
    Corrupt(String),
}

impl std::fmt::Display for RecErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecErr::UnexpectedEof => f.write_str("unexpected EOF"),
            RecErr::Corrupt(s) => f.write_str(s),
        }
    }
}

pub fn crc_mismatch(stored: u32, computed: u32) -> String {
    format!("corrupted data, expected crc to be 0x{stored:08x}, got 0x{computed:08x}")
}

/// Reads the record at the reader's position, checking its CRC when `crc` is given.
pub fn next_record<'a>(
    r: &'a mut SeqReader<'_>,
    typed: bool,
    crc: Option<&Crc>,
) -> Result<Rec<'a>, RecErr> {
    let rem = r.remaining();
    if rem == 0 {
        return Ok(Rec::Eof);
    }
    if rem < HEADER_LEN as u64 {
        return Err(RecErr::UnexpectedEof);
    }
    let h = r
        .take(HEADER_LEN)
        .map_err(|e| RecErr::Corrupt(reason(&e)))?;
    let word = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let stored = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if word == 0 && stored == 0 {
        return Ok(Rec::Zero);
    }
    let (rtype, size) = if typed {
        ((word >> 24) as u8, (word & 0xFF_FFFF) as usize)
    } else {
        (0, word as usize)
    };
    // A partial payload is detected before reading, so that a torn header announcing
    // gigabytes allocates nothing.
    if size as u64 > r.remaining() {
        return Err(RecErr::UnexpectedEof);
    }
    let payload = r.take(size).map_err(|e| RecErr::Corrupt(reason(&e)))?;
    if let Some(crc) = crc {
        let computed = crc.checksum(payload);
        if computed != stored {
            return Err(RecErr::Corrupt(crc_mismatch(stored, computed)));
        }
    }
    Ok(Rec::Record { rtype, payload })
}

/// Reports a record that failed to read at `offset` the way the Go server does (dump
/// of its header and payload) and, for a partial last record with
/// `--file_truncate_bad_eof`, cuts the file there so that recovery can go on
/// (`Ok`). Anything else is returned as the recovery error.
pub fn bad_record(
    sh: &Shared,
    file: &mut dyn FsFile,
    path: &Path,
    offset: u64,
    typed: bool,
    err: &RecErr,
) -> Result<(), String> {
    let eof = *err == RecErr::UnexpectedEof;
    let truncate = sh.opts.truncate_bad_eof;
    if eof {
        sh.log(
            Level::Error,
            &format!("Unexpected EOF for file {}", q(path)),
        );
        if !truncate {
            // "datatstore" (sic): operators' log searches match the Go server's text.
            sh.log(
                Level::Error,
                &format!(
                    "It is recommended that you make a copy of the whole datatstore {}.",
                    q(&sh.root)
                ),
            );
            sh.log(
                Level::Error,
                &format!(
                    "Restart with the ContinueOnUnexpectedEOF flag to truncate this file to this offset: {offset}."
                ),
            );
            sh.log(
                Level::Error,
                "Dataloss may occur. Details about the first corrupted record follows...",
            );
        }
    } else {
        sh.log(
            Level::Error,
            &format!("Corrupted record in file {}: {err}", q(path)),
        );
    }
    sh.log(Level::Error, "Record header:");
    let mut header = [0u8; HEADER_LEN];
    let mut read = file.read_at(&mut header, offset).unwrap_or(0);
    let mut part = "record header";
    let mut expected = HEADER_LEN;
    sh.log(Level::Error, " Bytes:");
    dump(sh, &header[..read], false);
    if read >= HEADER_LEN {
        let word = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let size = if typed {
            sh.log(Level::Error, &format!(" Type: {}", word >> 24));
            (word & 0xFF_FFFF) as usize
        } else {
            word as usize
        };
        let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        sh.log(Level::Error, &format!(" Size: {size}"));
        sh.log(Level::Error, &format!(" CRC : 0x{stored:08x}"));
        sh.log(Level::Error, "Record payload:");
        part = "record payload";
        expected = size;
        let start = offset + HEADER_LEN as u64;
        let available = file.size().unwrap_or(start).saturating_sub(start);
        let mut payload = vec![0u8; (size as u64).min(available) as usize];
        read = file.read_at(&mut payload, start).unwrap_or(0);
        dump(sh, &payload[..read], true);
    }
    if eof {
        if truncate {
            file.truncate(offset).map_err(|e| {
                format!(
                    "unable to repair file {} by truncating at offset {offset}: {}",
                    q(path),
                    reason(&e)
                )
            })?;
            sh.log(
                Level::Info,
                &format!("File {} has been truncated to offset: {offset}", q(path)),
            );
            sh.log(Level::Info, "Recovery resumes...");
            return Ok(());
        }
        sh.log(
            Level::Error,
            &format!("{part} expected to be {expected} bytes, only read {read}"),
        );
    }
    Err(err.to_string())
}

/// Hex dump, 20 bytes a line, optionally followed by the printable characters.
fn dump(sh: &Shared, buf: &[u8], text: bool) {
    for line in buf.chunks(20) {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = hex.join(" ");
        if text {
            let pad = 3 * (20 - line.len());
            s.push_str(&" ".repeat(pad));
            s.push_str(" - ");
            s.extend(line.iter().map(|&c| {
                if !(32..=128).contains(&c) {
                    '.'
                } else {
                    char::from(c)
                }
            }));
        }
        sh.log(Level::Error, &s);
    }
}

/// An append-only file with an optional write buffer that grows from `min` to `max`
/// bytes and is written out when a record does not fit (STORES §1.10).
pub struct Appender {
    pub path: PathBuf,
    file: Option<Box<dyn FsFile>>,
    /// Bytes on disk.
    pub len: u64,
    buf: Vec<u8>,
    cap: usize,
    min: usize,
    max: usize,
    /// Bytes were written since the last fsync.
    pub unsynced: bool,
}

impl Appender {
    pub fn new(path: PathBuf, file: Box<dyn FsFile>, len: u64, min: usize, max: usize) -> Appender {
        Appender {
            path,
            file: Some(file),
            len,
            buf: Vec::new(),
            cap: min.min(max),
            min: min.min(max),
            max,
            unsynced: false,
        }
    }

    fn file(&mut self, fs: &dyn Fs) -> Result<&mut Box<dyn FsFile>, String> {
        if self.file.is_none() {
            let f = fs
                .open(&self.path)
                .map_err(|e| os_error("open", &self.path, &e))?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    /// Replaces the file (after a compaction renamed another one over it).
    pub fn reset(&mut self, file: Box<dyn FsFile>, len: u64) {
        self.file = Some(file);
        self.len = len;
        self.buf.clear();
        self.unsynced = true;
    }

    pub fn write(&mut self, fs: &dyn Fs, rec: &[u8]) -> Result<(), String> {
        if self.max > 0 {
            if rec.len() > self.cap - self.buf.len() {
                self.flush(fs)?;
                self.cap = (self.cap * 2).max(rec.len()).min(self.max);
            }
            if rec.len() <= self.cap - self.buf.len() {
                self.buf.extend_from_slice(rec);
                return Ok(());
            }
        }
        self.flush(fs)?;
        self.append(fs, rec)
    }

    fn append(&mut self, fs: &dyn Fs, data: &[u8]) -> Result<(), String> {
        let len = self.len;
        let path = self.path.clone();
        let file = self.file(fs)?;
        if let Err(e) = file.append(data) {
            // Whatever part reached the file would be read back as a torn record.
            let _ = file.truncate(len);
            return Err(os_error("write", &path, &e));
        }
        self.len += data.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Writes the buffer out (no fsync).
    pub fn flush(&mut self, fs: &dyn Fs) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.append(fs, &buf);
        self.buf = buf;
        if r.is_ok() {
            self.buf.clear();
        }
        r
    }

    pub fn sync(&mut self, fs: &dyn Fs) -> Result<(), String> {
        if !self.unsynced {
            return Ok(());
        }
        let path = self.path.clone();
        self.file(fs)?
            .sync()
            .map_err(|e| os_error("sync", &path, &e))?;
        self.unsynced = false;
        Ok(())
    }

    /// Halves an oversized buffer that is at most half used.
    pub fn shrink(&mut self) {
        if self.cap > self.min && self.buf.len() * 2 <= self.cap {
            self.cap = (self.cap / 2).max(self.min);
            self.buf.shrink_to(self.cap);
        }
    }

    /// Writes the buffer out and lets go of the file handle.
    pub fn close(&mut self, fs: &dyn Fs, sync: bool) -> Result<(), String> {
        self.flush(fs)?;
        if sync {
            self.sync(fs)?;
        }
        self.file = None;
        Ok(())
    }
}

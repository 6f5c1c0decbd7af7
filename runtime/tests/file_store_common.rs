//! Helpers shared by the FILE store tests (included with `#[path]`): scratch
//! directories, an independent reader and writer of the on-disk format built only
//! from shared/spec/STORES.md §1, a file system that counts fsyncs and open files and
//! can tear writes, and a log capture.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use stan_core::log::Level;
use stan_core::streaming::pb::{MsgProto, SubState};
use stan_runtime::store::{DirEntry, Fs, FsFile, FsLock, LogSink, StdFs};

pub const IEEE: u32 = 0xEDB8_8320;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "stan-file-store-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CRC-32, reflected, one bit at a time: the definition, not the store's tables.
pub fn crc32(poly: u32, data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One framed record: `type << 24 | size` (or the bare size), CRC, payload.
pub fn record(rtype: u8, payload: &[u8], poly: u32) -> Vec<u8> {
    let word = (u32::from(rtype) << 24) | payload.len() as u32;
    let mut out = word.to_le_bytes().to_vec();
    out.extend_from_slice(&crc32(poly, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub const VERSION: [u8; 4] = [1, 0, 0, 0];

/// A whole `.dat` file: version header then the records.
pub fn dat_file(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = VERSION.to_vec();
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

pub fn idx_record(seq: u64, offset: u64, ts: i64, size: u32, poly: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    let c = crc32(poly, &out);
    out.extend_from_slice(&c.to_le_bytes());
    out
}

/// Parses a `.dat` file, checking its header and every CRC; returns (type, payload)
/// per record (type 0 for untyped files).
pub fn parse_dat(bytes: &[u8], typed: bool, poly: u32) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&bytes[..4], &VERSION, "file version header");
    let mut out = Vec::new();
    let mut i = 4;
    while i < bytes.len() {
        assert!(i + 8 <= bytes.len(), "partial header at {i}");
        let word = u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let crc = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap());
        let (t, size) = if typed {
            ((word >> 24) as u8, (word & 0xFF_FFFF) as usize)
        } else {
            (0, word as usize)
        };
        let payload = &bytes[i + 8..i + 8 + size];
        assert_eq!(crc, crc32(poly, payload), "crc of record at {i}");
        out.push((t, payload.to_vec()));
        i += 8 + size;
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idx {
    pub seq: u64,
    pub offset: u64,
    pub ts: i64,
    pub size: u32,
}

pub fn parse_idx(bytes: &[u8], poly: u32) -> Vec<Idx> {
    assert_eq!(&bytes[..4], &VERSION, "file version header");
    assert_eq!((bytes.len() - 4) % 32, 0, "whole index records");
    bytes[4..]
        .chunks(32)
        .map(|r| {
            let crc = u32::from_le_bytes(r[28..32].try_into().unwrap());
            assert_eq!(crc, crc32(poly, &r[..28]));
            Idx {
                seq: u64::from_le_bytes(r[0..8].try_into().unwrap()),
                offset: u64::from_le_bytes(r[8..16].try_into().unwrap()),
                ts: i64::from_le_bytes(r[16..24].try_into().unwrap()),
                size: u32::from_le_bytes(r[24..28].try_into().unwrap()),
            }
        })
        .collect()
}

pub fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

pub fn msg(channel: &str, seq: u64, data: &[u8], ts: i64) -> MsgProto {
    MsgProto {
        sequence: seq,
        subject: channel.into(),
        data: data.to_vec(),
        timestamp: ts,
        ..MsgProto::default()
    }
}

pub fn sub(id: u64, client: &str) -> SubState {
    SubState {
        id,
        client_id: client.into(),
        inbox: format!("_INBOX.{id}"),
        ack_inbox: format!("_STAN.ack.{id}"),
        max_in_flight: 1024,
        ack_wait_in_secs: 30,
        ..SubState::default()
    }
}

/// Captured log lines.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<(Level, String)>>>);

impl Logs {
    pub fn sink(&self) -> LogSink {
        let lines = self.0.clone();
        Arc::new(move |level, text: &str| lines.lock().unwrap().push((level, text.to_owned())))
    }

    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    pub fn contains(&self, text: &str) -> bool {
        self.lines().iter().any(|l| l == text)
    }
}

/// A write that fails once after writing only `keep` bytes of it.
#[derive(Clone, Debug)]
pub struct Tear {
    pub path_suffix: String,
    pub keep: usize,
}

/// The real file system, counting fsyncs and open files, able to tear one write.
#[derive(Clone, Default)]
pub struct TestFs {
    pub syncs: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    pub synced_paths: Arc<Mutex<Vec<PathBuf>>>,
    pub tear: Arc<Mutex<Option<Tear>>>,
}

struct TestFile {
    inner: Box<dyn FsFile>,
    path: PathBuf,
    fs: TestFs,
}

impl Drop for TestFile {
    fn drop(&mut self) {
        self.fs.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FsFile for TestFile {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let tear = {
            let mut t = self.fs.tear.lock().unwrap();
            match t.as_ref() {
                Some(x) if self.path.to_string_lossy().ends_with(&x.path_suffix) => t.take(),
                _ => None,
            }
        };
        if let Some(t) = tear {
            self.inner.append(&data[..t.keep.min(data.len())])?;
            return Err(io::Error::other("injected torn write"));
        }
        self.inner.append(data)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.fs.syncs.fetch_add(1, Ordering::SeqCst);
        self.fs.synced_paths.lock().unwrap().push(self.path.clone());
        self.inner.sync()
    }
}

impl TestFs {
    fn wrap(&self, path: &Path, f: io::Result<Box<dyn FsFile>>) -> io::Result<Box<dyn FsFile>> {
        let inner = f?;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(TestFile {
            inner,
            path: path.to_owned(),
            fs: self.clone(),
        }))
    }

    pub fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }

    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn tear_next(&self, path_suffix: &str, keep: usize) {
        *self.tear.lock().unwrap() = Some(Tear {
            path_suffix: path_suffix.into(),
            keep,
        });
    }
}

impl Fs for TestFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.wrap(path, StdFs.open(path))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.wrap(path, StdFs.create(path))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.wrap(path, StdFs.create_new(path))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFs.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        StdFs.list_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        StdFs.lock(path)
    }
}

/// Names of the entries of a directory, sorted.
pub fn ls(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

//! The FILE store's file system in the simulator: turmoil's per-host simulated disk
//! (feature `unstable-fs`) behind the runtime's [`Fs`] port, with a power switch.
//!
//! Durability follows a journaling file system in ordered mode (ext4's default): an
//! fsync of any file commits every write and every directory change made before it,
//! because the store never fsyncs directories and relies on that. What was written
//! since the last fsync lives in turmoil's pending state and is lost when the host
//! crashes, except that the unsynced appends to one of a channel's message, index or
//! subscription files may survive in part: a seeded choice picks the file and keeps a
//! prefix of its unsynced bytes, which usually ends inside a record (a torn write).
//!
//! A crash must not run the store's shutdown path (`Drop` flushes and fsyncs), so the
//! power is cut first: every operation of the dead process fails from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use stan_core::Rng;
use stan_runtime::store::{DirEntry, Fs, FsFile, FsLock};
use turmoil::fs::shim::std::fs as sim;
use turmoil::fs::FsHandle;

/// Where the server keeps its data directory on the simulated disk.
pub const DATA_DIR: &str = "/data";

/// What the disk knows about one file of the running process.
#[derive(Debug, Clone, Copy)]
struct Tail {
    len: u64,
    /// Bytes that survive a crash.
    durable: u64,
    /// The directory entry survives a crash.
    entry_durable: bool,
}

#[derive(Default)]
struct State {
    /// The running process's power; `None` while the host is down.
    power: Option<Arc<AtomicBool>>,
    /// The server host's disk, reachable from outside the host (for the tear).
    handle: Option<FsHandle>,
    files: BTreeMap<PathBuf, Tail>,
    dirs: BTreeSet<PathBuf>,
    /// Something changed since the last fsync.
    dirty: bool,
    /// Called after every fsync (the simulator journals them when they matter).
    on_sync: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The server host's disk, shared by the simulation (which cuts the power) and every
/// process the host runs.
#[derive(Clone, Default)]
pub struct Disk(Arc<Mutex<State>>);

/// What a crash left of a file's unsynced appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    pub file: String,
    /// Unsynced bytes kept out of `unsynced`.
    pub kept: u64,
    pub unsynced: u64,
}

impl Disk {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called after every fsync of the disk.
    pub fn on_sync(&self, f: Arc<dyn Fn() + Send + Sync>) {
        self.state().on_sync = Some(f);
    }

    /// A process starts on the host: must run inside the host. Whatever is on the disk
    /// now is durable.
    pub fn power_on(&self) -> Arc<dyn Fs> {
        let alive = Arc::new(AtomicBool::new(true));
        let mut st = self.state();
        st.power = Some(alive.clone());
        st.handle = Some(FsHandle::current());
        st.files.clear();
        st.dirs.clear();
        st.dirs.insert(PathBuf::from("/"));
        st.dirty = false;
        Arc::new(SimFs {
            disk: self.clone(),
            alive,
        })
    }

    /// The power goes out: the running process can do nothing more, and with a chance
    /// of `tear_percent` a prefix of one channel file's unsynced appends reaches the
    /// disk. Call just before crashing the host, outside of it.
    pub fn power_cut(&self, rng: &mut Rng, tear_percent: usize) -> Option<Torn> {
        let mut st = self.state();
        if let Some(p) = st.power.take() {
            p.store(false, Ordering::SeqCst);
        }
        // Only files inside a channel directory whose entry is already durable: the
        // root files are never fsynced on their own, and a new file would need its
        // whole directory committed.
        let candidates: Vec<(PathBuf, Tail)> = st
            .files
            .iter()
            .filter(|(p, t)| {
                t.len > t.durable
                    && t.entry_durable
                    && p.parent().and_then(Path::parent) == Some(Path::new(DATA_DIR))
            })
            .map(|(p, t)| (p.clone(), *t))
            .collect();
        if candidates.is_empty() || rng.below(100) >= tear_percent {
            return None;
        }
        let (path, tail) = candidates[rng.below(candidates.len())].clone();
        let unsynced = tail.len - tail.durable;
        let kept = 1 + rng.below(unsynced as usize) as u64;
        let handle = st.handle.as_ref()?;
        let _enter = handle.enter();
        let file = sim::OpenOptions::new().write(true).open(&path).ok()?;
        file.set_len(tail.durable + kept).ok()?;
        file.sync_all().ok()?;
        let name = path.strip_prefix(DATA_DIR).unwrap_or(&path);
        Some(Torn {
            file: name.display().to_string(),
            kept,
            unsynced,
        })
    }

    /// The simulation ends: the running process can do nothing more.
    pub fn power_off(&self) {
        if let Some(p) = self.state().power.take() {
            p.store(false, Ordering::SeqCst);
        }
    }

    /// The ordered-mode commit: every file's data and every directory's entries.
    fn sync_everything(&self) -> io::Result<()> {
        let (files, dirs, on_sync) = {
            let mut st = self.state();
            if !std::mem::take(&mut st.dirty) {
                return Ok(());
            }
            (
                st.files.keys().cloned().collect::<Vec<_>>(),
                st.dirs.iter().cloned().collect::<Vec<_>>(),
                st.on_sync.clone(),
            )
        };
        for path in &files {
            if let Ok(f) = sim::OpenOptions::new().write(true).open(path) {
                f.sync_all()?;
            }
        }
        // Parents before children (the set is sorted), so that a new directory's own
        // entry is committed with its contents.
        for dir in &dirs {
            if sim::exists(dir) {
                sim::sync_dir(dir)?;
            }
        }
        {
            let mut st = self.state();
            for t in st.files.values_mut() {
                t.durable = t.len;
                t.entry_durable = true;
            }
        }
        if let Some(f) = on_sync {
            f();
        }
        Ok(())
    }

    fn changed(&self) {
        self.state().dirty = true;
    }

    fn track(&self, path: &Path, len: u64, existed: bool) {
        let mut st = self.state();
        st.dirty |= !existed;
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d.as_os_str().is_empty() || !st.dirs.insert(d.to_path_buf()) {
                break;
            }
            dir = d.parent();
        }
        st.files.entry(path.to_path_buf()).or_insert(Tail {
            len,
            durable: if existed { len } else { 0 },
            entry_durable: existed,
        });
    }
}

/// One process's view of the disk.
struct SimFs {
    disk: Disk,
    alive: Arc<AtomicBool>,
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimFs {
    fn check(&self) -> io::Result<()> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(power_lost())
        }
    }

    fn open_file(&self, path: &Path, opts: &sim::OpenOptions) -> io::Result<Box<dyn FsFile>> {
        self.check()?;
        let existed = sim::exists(path);
        let file = opts.open(path)?;
        let len = file.metadata()?.len();
        self.disk.track(path, len, existed);
        Ok(Box::new(SimFile {
            disk: self.disk.clone(),
            alive: self.alive.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }
}

fn options() -> sim::OpenOptions {
    let mut o = sim::OpenOptions::new();
    o.read(true).append(true);
    o
}

impl Fs for SimFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_file(path, &options())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_file(path, options().create(true))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_file(path, options().create_new(true))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.check()?;
        Ok(sim::exists(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check()?;
        sim::rename(from, to)?;
        let mut st = self.disk.state();
        st.dirty = true;
        if let Some(t) = st.files.remove(from) {
            st.files.insert(to.to_path_buf(), t);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        sim::remove_file(path)?;
        let mut st = self.disk.state();
        st.dirty = true;
        st.files.remove(path);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        sim::create_dir_all(path)?;
        let mut st = self.disk.state();
        st.dirty = true;
        let mut dir = Some(path);
        while let Some(d) = dir {
            if d.as_os_str().is_empty() || !st.dirs.insert(d.to_path_buf()) {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        match sim::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r?,
        }
        let mut st = self.disk.state();
        st.dirty = true;
        st.files.retain(|p, _| !p.starts_with(path));
        // The parent keeps its place: the removal is committed through it.
        st.dirs.retain(|d| !d.starts_with(path));
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.check()?;
        let mut out = Vec::new();
        for entry in sim::read_dir(path)? {
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One process per host: the lock is a plain file and always granted.
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        self.check()?;
        let mut o = sim::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        drop(o.open(path)?);
        self.disk.changed();
        Ok(Some(Box::new(HostLock)))
    }
}

struct HostLock;

impl FsLock for HostLock {}

struct SimFile {
    disk: Disk,
    alive: Arc<AtomicBool>,
    path: PathBuf,
    file: sim::File,
}

impl SimFile {
    fn check(&self) -> io::Result<()> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(power_lost())
        }
    }
}

impl FsFile for SimFile {
    fn size(&self) -> io::Result<u64> {
        self.check()?;
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.check()?;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file.write_all(data)?;
        let mut st = self.disk.state();
        if let Some(t) = st.files.get_mut(&self.path) {
            t.len += data.len() as u64;
        }
        st.dirty = true;
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.set_len(len)?;
        let mut st = self.disk.state();
        st.dirty = true;
        if let Some(t) = st.files.get_mut(&self.path) {
            t.len = len;
            t.durable = t.durable.min(len);
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.check()?;
        self.disk.sync_everything()
    }
}

//! The FILE store: the Go server's data directory, opened in place (STORES §1).
//! `server.dat` and `clients.dat` live in the root; every sub-directory is a channel
//! with its `subs.dat` and message slices.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stan_core::log::Level;
use stan_core::store::{MsgsState, Recovered, RecoveredChannel, Result, Store, StoreError};
use stan_core::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};

use super::crc::Crc;
use super::env::{
    clean_path, discard_logs, os_error, system_clock, ChannelLimitsFn, Clock, LogSink, Shared,
};
use super::fs::{Fs, FsLock, StdFs};
use super::msgs::MsgStore;
use super::options::{FileStoreOptions, SliceLimits};
use super::root_files::{ClientsFile, ServerFile};
use super::subs::SubStore;

/// FT exclusive lock file.
const LOCK_FILE: &str = ".rootdir.lck";
/// Witness that the previous start ran with `--file_truncate_bad_eof`.
const TRUNCATE_WITNESS: &str = ".truncate.lck";

/// How long an unused read slice stays open, and how often housekeeping runs.
const IDLE: Duration = Duration::from_secs(1);
/// How often write buffers are offered to shrink.
const SHRINK_EVERY: Duration = Duration::from_secs(5);

struct Channel {
    msgs: MsgStore,
    subs: SubStore,
    /// Written since the last flush (listed in `FileStore::dirty`).
    dirty: bool,
}

/// The Go server's FILE store over a [`Fs`].
pub struct FileStore {
    sh: Shared,
    server: ServerFile,
    clients: ClientsFile,
    channels: BTreeMap<String, Channel>,
    dirty: Vec<String>,
    /// `recover` ran: every channel directory on disk is known.
    recovered: bool,
    root_lock: Option<Box<dyn FsLock>>,
    last_housekeeping: Duration,
    last_shrink: Duration,
    last_auto_sync: Duration,
    closed: bool,
}

/// The store's exclusive lock, held; dropping it releases the lock.
pub struct RootLock(Box<dyn FsLock>);

impl std::fmt::Debug for RootLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootLock")
    }
}

/// What one attempt at the store's exclusive lock found.
#[derive(Debug)]
pub enum LockAttempt {
    Taken(RootLock),
    /// Another process holds it.
    Busy,
    /// The lock file could not be made (the text says why).
    Failed(String),
}

/// Checks the directory and the options, and creates the directory.
fn create_root(fs: &dyn Fs, dir: &Path, opts: &FileStoreOptions) -> Result<PathBuf> {
    if dir.as_os_str().is_empty() {
        return err("for FILE stores, root directory must be specified".into());
    }
    opts.validate()?;
    let root = clean_path(dir);
    if let Err(e) = fs.create_dir_all(&root) {
        return err(format!(
            "unable to create the root directory [{}]: {}",
            dir.display(),
            os_error("mkdir", &root, &e)
        ));
    }
    Ok(root)
}

/// Refusing a second start with `--file_truncate_bad_eof` forces the operator to look
/// at what the first one truncated.
fn check_truncate_witness(fs: &dyn Fs, root: &Path, opts: &FileStoreOptions) -> Result<()> {
    let witness = root.join(TRUNCATE_WITNESS);
    if opts.truncate_bad_eof {
        if fs.create_new(&witness).is_err() {
            return err("file store should not be opened consecutively with the TruncateUnexpectedEOF option set to true".into());
        }
    } else {
        let _ = fs.remove_file(&witness);
    }
    Ok(())
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.sh.root)
            .field("channels", &self.channels.len())
            .finish()
    }
}

fn err<T>(e: String) -> Result<T> {
    Err(StoreError(e))
}

impl FileStore {
    /// Opens (creating it if needed) the store rooted at `dir` on the real file
    /// system. Nothing is read before [`Store::recover`].
    pub fn open(dir: impl AsRef<Path>, opts: FileStoreOptions) -> Result<FileStore> {
        FileStore::open_with(Arc::new(StdFs), dir, opts)
    }

    /// Same as [`FileStore::open`] over another file system (the simulator's).
    pub fn open_with(
        fs: Arc<dyn Fs>,
        dir: impl AsRef<Path>,
        opts: FileStoreOptions,
    ) -> Result<FileStore> {
        let dir = dir.as_ref();
        let root = create_root(&*fs, dir, &opts)?;
        // Two servers appending to the same files would corrupt them, so the lock a
        // fault-tolerant group uses is taken by every server, before anything on
        // disk is touched.
        let lock_path = root.join(LOCK_FILE);
        let root_lock = match fs.lock(&lock_path) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return err(format!(
                    "the store in {:?} is in use by another server (lock on {:?} is held)",
                    dir.display().to_string(),
                    lock_path.display().to_string()
                ))
            }
            Err(e) => return err(os_error("open", &lock_path, &e)),
        };
        check_truncate_witness(&*fs, &root, &opts)?;
        Ok(FileStore::build(fs, root, opts, root_lock))
    }

    /// FT mode's part of opening that comes before the lock, as the Go server does it
    /// at startup: the checks, the root directory and the truncation witness. Returns
    /// the root to pass to [`FileStore::try_lock`] and [`FileStore::open_locked`].
    pub fn prepare(fs: &dyn Fs, dir: impl AsRef<Path>, opts: &FileStoreOptions) -> Result<PathBuf> {
        let root = create_root(fs, dir.as_ref(), opts)?;
        check_truncate_witness(fs, &root, opts)?;
        Ok(root)
    }

    /// One attempt at the store's exclusive lock (STORES §1.11), without waiting.
    pub fn try_lock(fs: &dyn Fs, root: &Path) -> LockAttempt {
        let path = root.join(LOCK_FILE);
        match fs.lock(&path) {
            Ok(Some(lock)) => LockAttempt::Taken(RootLock(lock)),
            Ok(None) => LockAttempt::Busy,
            // The Go server's split: the directory gone or not writable is an error;
            // an interrupted call or a lack of lock records only means "not now".
            Err(e) => match (e.kind(), e.raw_os_error()) {
                (io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied, _) => {
                    LockAttempt::Failed(os_error("open", &path, &e))
                }
                (_, Some(libc::EINTR | libc::ENOLCK | libc::EAGAIN | libc::EACCES)) => {
                    LockAttempt::Busy
                }
                _ => LockAttempt::Failed(os_error("open", &path, &e)),
            },
        }
    }

    /// Opens a store [`FileStore::prepare`]d in `root`, holding `lock` until closed.
    pub fn open_locked(
        fs: Arc<dyn Fs>,
        root: PathBuf,
        opts: FileStoreOptions,
        lock: RootLock,
    ) -> FileStore {
        FileStore::build(fs, root, opts, lock.0)
    }

    fn build(
        fs: Arc<dyn Fs>,
        root: PathBuf,
        opts: FileStoreOptions,
        root_lock: Box<dyn FsLock>,
    ) -> FileStore {
        let crc = Crc::new(opts.crc_poly as u32);
        let clock = system_clock();
        let now = clock();
        FileStore {
            sh: Shared {
                fs,
                root,
                opts,
                crc,
                log: discard_logs(),
                clock,
                limits: None,
                open_files: Arc::new(AtomicUsize::new(0)),
            },
            server: ServerFile::default(),
            clients: ClientsFile::default(),
            channels: BTreeMap::new(),
            dirty: Vec::new(),
            recovered: false,
            root_lock: Some(root_lock),
            last_housekeeping: now,
            last_shrink: now,
            last_auto_sync: now,
            closed: false,
        }
    }

    /// Where the store's log lines go (discarded until set).
    pub fn set_log_sink(&mut self, sink: LogSink) {
        self.sh.log = sink;
    }

    /// The monotonic clock pacing housekeeping (compaction interval, idle files,
    /// buffer shrinking, auto sync); the system clock by default.
    pub fn set_clock(&mut self, clock: Clock) {
        let now = clock();
        self.sh.clock = clock;
        self.last_housekeeping = now;
        self.last_shrink = now;
        self.last_auto_sync = now;
    }

    /// The limits of each channel, used for slice limits when no `--file_slice_*`
    /// limit is set (STORES §1.7).
    pub fn set_channel_limits(&mut self, limits: ChannelLimitsFn) {
        self.sh.limits = Some(limits);
        for (name, ch) in &mut self.channels {
            ch.msgs.set_limits(SliceLimits::new(
                &self.sh.opts,
                self.sh.channel_limits(name),
            ));
        }
    }

    pub fn root(&self) -> &Path {
        &self.sh.root
    }

    pub fn options(&self) -> &FileStoreOptions {
        &self.sh.opts
    }

    /// Writes out and fsyncs every channel with unsynced writes, whatever
    /// `--file_sync` says; the driver calls it every `--file_auto_sync` (flushes also
    /// run it when that much time has passed).
    pub fn auto_sync(&mut self) -> Result<()> {
        self.last_auto_sync = self.sh.now();
        let mut first = None;
        for ch in self.channels.values_mut() {
            if ch.msgs.unsynced() || ch.subs.unsynced() {
                let r = ch
                    .msgs
                    .flush(&self.sh, true)
                    .and_then(|()| ch.subs.flush(&self.sh, true));
                if let Err(e) = r {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), err)
    }

    /// Writes everything out, fsyncs it and closes every file.
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.dirty.clear();
        let mut first = None;
        for ch in self.channels.values_mut() {
            ch.dirty = false;
            let r = ch
                .msgs
                .close_files(&self.sh, true)
                .and_then(|()| ch.subs.close(&self.sh));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        self.channels.clear();
        self.server.close();
        self.clients.close();
        self.root_lock = None;
        first.map_or(Ok(()), err)
    }

    // ---- channels ----

    fn channel_dirs(&self) -> std::result::Result<Vec<String>, String> {
        let entries = self
            .sh
            .fs
            .list_dir(&self.sh.root)
            .map_err(|e| os_error("open", &self.sh.root, &e))?;
        let mut names = Vec::new();
        for e in entries.into_iter().filter(|e| e.is_dir) {
            match e.name.into_string() {
                Ok(name) => names.push(name),
                Err(raw) => self.sh.log(
                    Level::Warn,
                    &format!("Ignoring directory {raw:?}: its name is not a valid channel name"),
                ),
            }
        }
        names.sort();
        Ok(names)
    }

    /// Recovers the channels, `--file_parallel_recovery` at a time.
    fn recover_channels(&self, names: &[String]) -> std::result::Result<Vec<Channel>, String> {
        let sh = &self.sh;
        let workers = (sh.opts.parallel_recovery.max(1) as usize).min(names.len());
        if workers <= 1 {
            return names.iter().map(|n| recover_channel(sh, n)).collect();
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<std::result::Result<Channel, String>>>> =
            names.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(i) else {
                            break;
                        };
                        let r = recover_channel(sh, name);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        *results[i].lock().expect("not poisoned") = Some(r);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(names.len());
        for r in results {
            match r.into_inner().expect("not poisoned") {
                Some(Ok(ch)) => out.push(ch),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(out)
    }

    /// Under `--file_fds_limit`, closes files of other channels: idle read slices
    /// first, then whole channels (written out first).
    fn enforce_fds_limit(&mut self, keep: &str) {
        let limit = self.sh.opts.fds_limit;
        if limit <= 0 || (self.sh.open_files() as i64) < limit {
            return;
        }
        let now = self.sh.now();
        for (name, ch) in self.channels.iter_mut() {
            if name != keep {
                ch.msgs.close_idle(&self.sh, now, Duration::ZERO);
            }
        }
        for (name, ch) in self.channels.iter_mut() {
            if (self.sh.open_files() as i64) < limit {
                break;
            }
            if name != keep {
                if let Err(e) = ch.msgs.close_files(&self.sh, false) {
                    self.sh.log(
                        Level::Error,
                        &format!("Unable to close files of channel {name:?}: {e}"),
                    );
                }
            }
        }
    }

    /// Periodic work piggybacked on flushes: closing idle files, shrinking write
    /// buffers, auto sync.
    fn housekeeping(&mut self) {
        let now = self.sh.now();
        if now.saturating_sub(self.last_housekeeping) >= IDLE {
            self.last_housekeeping = now;
            for ch in self.channels.values_mut() {
                ch.msgs.close_idle(&self.sh, now, IDLE);
            }
        }
        if now.saturating_sub(self.last_shrink) >= SHRINK_EVERY {
            self.last_shrink = now;
            for ch in self.channels.values_mut() {
                ch.msgs.shrink_buffer(&self.sh);
                ch.subs.shrink_buffer();
            }
        }
        let every = self.sh.opts.auto_sync;
        if !every.is_zero() && now.saturating_sub(self.last_auto_sync) >= every {
            if let Err(e) = self.auto_sync() {
                self.sh
                    .log(Level::Error, &format!("Error during auto sync: {e}"));
            }
        }
    }
}

fn recover_channel(sh: &Shared, name: &str) -> std::result::Result<Channel, String> {
    let dir = sh.root.join(name);
    let msgs = MsgStore::recover(sh, name, &dir)?;
    let subs = SubStore::recover(sh, name, &dir)?;
    Ok(Channel {
        msgs,
        subs,
        dirty: false,
    })
}

/// A channel name must name exactly one directory directly under the root.
fn check_channel_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return err(format!(
            "channel name {name:?} cannot be stored as a directory"
        ));
    }
    Ok(())
}

impl Store for FileStore {
    fn kind(&self) -> &'static str {
        "FILE"
    }

    fn recover(&mut self) -> Result<Recovered> {
        // A second recovery starts over from what is on disk.
        let _ = self.flush();
        self.channels.clear();
        self.dirty.clear();
        let info = self.server.recover(&self.sh).map_err(StoreError)?;
        let names = self.channel_dirs().map_err(StoreError)?;
        let has_state = info.is_some() || !names.is_empty();
        self.clients
            .recover(&self.sh, has_state)
            .map_err(StoreError)?;
        let channels = self.recover_channels(&names).map_err(StoreError)?;
        self.recovered = true;
        let mut out = Recovered {
            server_info: info,
            clients: if has_state {
                self.clients.list()
            } else {
                Vec::new()
            },
            channels: Vec::with_capacity(names.len()),
        };
        for (name, ch) in names.into_iter().zip(channels) {
            out.channels.push(RecoveredChannel {
                name: name.clone(),
                msgs: ch.msgs.state(),
                subs: ch.subs.recovered(),
                max_sub_id: ch.subs.max_id(),
            });
            self.channels.insert(name, ch);
        }
        Ok(out)
    }

    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()> {
        self.server.init(&self.sh, info).map_err(StoreError)
    }

    fn add_client(&mut self, info: &ClientInfo) -> Result<()> {
        self.clients.add(&self.sh, info).map_err(StoreError)
    }

    fn delete_client(&mut self, client_id: &str) -> Result<()> {
        self.clients.delete(&self.sh, client_id).map_err(StoreError)
    }

    fn create_channel(&mut self, name: &str) -> Result<()> {
        check_channel_name(name)?;
        if self.channels.contains_key(name) {
            return err(format!("channel {name:?} already exists"));
        }
        let dir = self.sh.root.join(name);
        if self.sh.fs.exists(&dir).unwrap_or(false) {
            if !self.recovered {
                return err(format!(
                    "channel {name:?} has a directory in {} that was not recovered",
                    self.sh.root.display()
                ));
            }
            // Left over by a channel deletion that failed half-way.
            self.sh
                .fs
                .remove_dir_all(&dir)
                .map_err(|e| StoreError(os_error("unlinkat", &dir, &e)))?;
        }
        self.sh
            .fs
            .create_dir_all(&dir)
            .map_err(|e| StoreError(os_error("mkdir", &dir, &e)))?;
        let subs = SubStore::create(&self.sh, name, &dir).map_err(StoreError)?;
        let msgs = MsgStore::new(&self.sh, name, &dir);
        self.channels.insert(
            name.to_owned(),
            Channel {
                msgs,
                subs,
                dirty: false,
            },
        );
        Ok(())
    }

    fn delete_channel(&mut self, name: &str) -> Result<()> {
        if self.channels.remove(name).is_none() {
            return err(format!("channel {name:?} does not exist"));
        }
        let dir = self.sh.root.join(name);
        self.sh
            .fs
            .remove_dir_all(&dir)
            .map_err(|e| StoreError(os_error("unlinkat", &dir, &e)))
    }

    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64> {
        self.enforce_fds_limit(channel);
        let (sh, ch) = self.parts(channel)?;
        ch.msgs.store(sh, msg).map_err(StoreError)
    }

    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>> {
        self.enforce_fds_limit(channel);
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| StoreError(format!("channel {channel:?} does not exist")))?;
        ch.msgs.lookup(&self.sh, seq).map_err(StoreError)
    }

    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>> {
        self.enforce_fds_limit(channel);
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| StoreError(format!("channel {channel:?} does not exist")))?;
        ch.msgs.timestamp(&self.sh, seq).map_err(StoreError)
    }

    fn msgs_state(&self, channel: &str) -> MsgsState {
        self.channels
            .get(channel)
            .map(|c| c.msgs.state())
            .unwrap_or_default()
    }

    fn remove_oldest(&mut self, channel: &str) -> Result<()> {
        self.enforce_fds_limit(channel);
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| StoreError(format!("channel {channel:?} does not exist")))?;
        ch.msgs.remove_oldest(&self.sh).map_err(StoreError)
    }

    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        let (sh, ch) = self.parts(channel)?;
        if ch.subs.contains(state.id) {
            return err(format!(
                "channel {channel:?}: subscription {} already exists",
                state.id
            ));
        }
        ch.subs.create_sub(sh, state).map_err(StoreError)
    }

    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        let (sh, ch) = self.parts(channel)?;
        if !ch.subs.contains(state.id) {
            return err(no_sub(channel, state.id));
        }
        ch.subs.update_sub(sh, state).map_err(StoreError)
    }

    /// Deleting a subscription that is already gone succeeds, as for the memory
    /// store, and writes nothing.
    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> Result<()> {
        let (sh, ch) = self.parts(channel)?;
        if !ch.subs.contains(sub_id) {
            return Ok(());
        }
        ch.subs.delete_sub(sh, sub_id).map_err(StoreError)
    }

    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        let (sh, ch) = self.parts(channel)?;
        if !ch.subs.contains(sub_id) {
            return err(no_sub(channel, sub_id));
        }
        ch.subs.add_pending(sh, sub_id, seq).map_err(StoreError)
    }

    /// An ack of a sequence that is not pending is still written, as the Go server
    /// does; replay ignores it.
    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        let (sh, ch) = self.parts(channel)?;
        if !ch.subs.contains(sub_id) {
            return err(no_sub(channel, sub_id));
        }
        ch.subs.ack_pending(sh, sub_id, seq).map_err(StoreError)
    }

    /// The group commit: every channel written since the last flush gets its
    /// buffered records and index records written, then fsynced once when
    /// `--file_sync` is on.
    fn flush(&mut self) -> Result<()> {
        let mut first = None;
        let mut again = Vec::new();
        for name in std::mem::take(&mut self.dirty) {
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            ch.dirty = false;
            let r = ch
                .msgs
                .flush(&self.sh, false)
                .and_then(|()| ch.subs.flush(&self.sh, false));
            if let Err(e) = r {
                ch.dirty = true;
                again.push(name);
                first.get_or_insert(e);
            }
        }
        self.dirty = again;
        self.housekeeping();
        first.map_or(Ok(()), err)
    }
}

impl FileStore {
    /// The shared context and a channel marked as written.
    fn parts(&mut self, channel: &str) -> Result<(&Shared, &mut Channel)> {
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| StoreError(format!("channel {channel:?} does not exist")))?;
        if !ch.dirty {
            ch.dirty = true;
            self.dirty.push(channel.to_owned());
        }
        Ok((&self.sh, ch))
    }
}

fn no_sub(channel: &str, id: u64) -> String {
    format!("channel {channel:?}: subscription {id} does not exist")
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

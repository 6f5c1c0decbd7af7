//! The `StoreLock` row: which server of an FT group owns the SQL store (STORES §3.7).
//! The owner renews it every second; a contender takes it when it is free, or steals
//! it once it has stopped changing for long enough.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Db, LockSeen, Val};
use super::stmts::LOCK_UPDATE;
use super::SqlStoreOptions;

/// How often the owner renews the row.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long an owner's row must stay unchanged before a contender steals it: three
/// more readings, 1.5 s apart, after the first.
const STALE_AFTER: Duration = Duration::from_millis(4_500);
/// Renewals that may fail in a row before the owner gives up.
const MAX_RENEW_FAILURES: u32 = 3;

/// A contender for the lock, with its own connection.
pub struct SqlLock {
    db: Arc<Db>,
    id: String,
    /// The other owner's row as first seen unchanged, and when.
    seen: Option<((String, i64), Instant)>,
}

impl std::fmt::Debug for SqlLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLock").field("id", &self.id).finish()
    }
}

/// What losing the lock makes the owner do (the Go server aborts).
pub type OnLost = Box<dyn Fn(&str) + Send>;

/// The lock, held: renewed by a thread of its own until dropped, which frees it.
pub struct HeldLock {
    db: Arc<Db>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldLock")
    }
}

/// A random owner ID that fits `StoreLock.id` (VARCHAR(30)).
fn owner_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}{:08x}", h.finish(), std::process::id())
}

impl SqlLock {
    /// Connects for the lock alone, so that renewals never wait behind the store.
    pub fn connect(opts: &SqlStoreOptions) -> Result<SqlLock, String> {
        let db = Db::connect(&opts.driver, &opts.source)?;
        Ok(SqlLock {
            db: Arc::new(db),
            id: owner_id(),
            seen: None,
        })
    }

    /// One attempt, without waiting: true once the lock is ours.
    pub fn try_lock(&mut self) -> Result<bool, String> {
        let now = Instant::now();
        let steal = match &self.seen {
            Some((row, since)) if now.duration_since(*since) >= STALE_AFTER => Some(row.clone()),
            _ => None,
        };
        match self.db.lock_step(&self.id, steal)? {
            LockSeen::Ours => {
                self.seen = None;
                Ok(true)
            }
            LockSeen::Held { id, tick } => {
                let row = (id, tick);
                if self.seen.as_ref().is_none_or(|(r, _)| *r != row) {
                    self.seen = Some((row, now));
                }
                Ok(false)
            }
        }
    }

    /// Keeps the lock taken by [`SqlLock::try_lock`], renewing it every second;
    /// `on_lost` runs if another server took it or renewals kept failing.
    pub fn hold(self, on_lost: OnLost) -> HeldLock {
        let stop = Arc::new(AtomicBool::new(false));
        let (db, id, flag) = (self.db.clone(), self.id, stop.clone());
        let thread = std::thread::Builder::new()
            .name("sql-store-lock".into())
            .spawn(move || {
                let mut failures = 0;
                loop {
                    std::thread::sleep(RENEW_EVERY);
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    match db.lock_step(&id, None) {
                        Ok(LockSeen::Ours) => failures = 0,
                        Ok(LockSeen::Held { .. }) => {
                            on_lost("lost store lock, aborting");
                            return;
                        }
                        Err(_) => {
                            failures += 1;
                            if failures >= MAX_RENEW_FAILURES {
                                on_lost("lost store lock, aborting");
                                return;
                            }
                        }
                    }
                }
            })
            .ok();
        HeldLock {
            db: self.db,
            stop,
            thread,
        }
    }
}

impl Drop for HeldLock {
    /// Frees the row for the next server at once.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self
            .db
            .exec(LOCK_UPDATE, vec![Val::Text(String::new()), Val::Int(0)]);
    }
}

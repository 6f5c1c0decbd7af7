//! Persistent stores behind stan-core's [`Store`](stan_core::store::Store) port.
//!
//! [`FileStore`] reads and writes the Go server's FILE store format
//! (shared/spec/STORES.md §1) so that an existing data directory opens in place and a
//! directory written here opens in the Go server. All of its I/O goes through the
//! [`Fs`] trait: [`StdFs`] in production, [`MemFs`] in tests and fuzzing, a
//! fault-injecting file system in the simulator.
//!
//! [`SqlStore`] reads and writes the Go server's SQL tables (STORES §3) in
//! PostgreSQL or MySQL/MariaDB.

mod archive;
pub mod crc;
mod env;
mod file;
pub mod fs;
pub(crate) mod fuzzing;
mod memfs;
mod msgs;
mod options;
mod proto;
mod record;
mod root_files;
mod sql;
mod subs;
mod tempfile;

pub(crate) use env::os_error;
pub use env::{ChannelLimitsFn, Clock, LogSink};
pub use file::{FileStore, LockAttempt, RootLock};
pub use fs::{DirEntry, Fs, FsFile, FsLock, StdFs};
pub use memfs::MemFs;
pub use options::{ChannelLimits, FileStoreOptions};
pub use sql::{HeldLock, OnLost, SqlLock, SqlStore, SqlStoreOptions};
pub use subs::SUBS_FILE;

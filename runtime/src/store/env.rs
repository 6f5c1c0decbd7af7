//! What every part of the FILE store shares: the file system, the root directory, the
//! options, the CRC table, where log lines go and the clock.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stan_core::log::Level;

use super::crc::Crc;
use super::fs::Fs;
use super::options::{ChannelLimits, FileStoreOptions};

/// Receives the store's log lines (the Go server's texts, without the `STREAM: `
/// prefix). Called from the store's thread, from recovery threads when
/// `--file_parallel_recovery` > 1 and from archive-script threads.
pub type LogSink = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// A monotonic clock: time since an arbitrary origin. Only paces housekeeping
/// (compaction intervals, closing idle files, auto sync), never what is written.
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The limits of a channel, by name, for slice limits derived from channel limits.
pub type ChannelLimitsFn = Arc<dyn Fn(&str) -> ChannelLimits + Send + Sync>;

pub(crate) struct Shared {
    pub fs: Arc<dyn Fs>,
    pub root: PathBuf,
    pub opts: FileStoreOptions,
    pub crc: Crc,
    pub log: LogSink,
    pub clock: Clock,
    pub limits: Option<ChannelLimitsFn>,
    /// Message files currently open, for `--file_fds_limit`.
    pub open_files: Arc<AtomicUsize>,
}

impl Shared {
    pub fn log(&self, level: Level, text: &str) {
        (self.log)(level, text)
    }

    pub fn now(&self) -> Duration {
        (self.clock)()
    }

    pub fn opened(&self, n: usize) {
        self.open_files.fetch_add(n, Ordering::Relaxed);
    }

    pub fn open_files(&self) -> usize {
        self.open_files.load(Ordering::Relaxed)
    }

    pub fn channel_limits(&self, channel: &str) -> ChannelLimits {
        self.limits.as_ref().map(|f| f(channel)).unwrap_or_default()
    }

    /// `--file_sync`: whether every flush ends with an fsync.
    pub fn file_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        if stan_core::streaming::planted(stan_core::streaming::PlantedBug::FileSyncSkipped) {
            return false;
        }
        self.opts.sync
    }

    /// The CRC to verify reads with, when `--file_crc` asks for it.
    pub fn verify_crc(&self) -> Option<&Crc> {
        self.opts.crc.then_some(&self.crc)
    }
}

pub(crate) fn system_clock() -> Clock {
    let origin = Instant::now();
    Arc::new(move || origin.elapsed())
}

pub(crate) fn discard_logs() -> LogSink {
    Arc::new(|_, _| {})
}

/// The root as the Go server spells paths in its messages (`filepath.Clean`): no
/// trailing or doubled separators, no `.` components, `..` folded lexically.
pub(crate) fn clean_path(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// An OS error as the Go server prints one: `<op> <path>: <lower-case reason>`.
pub(crate) fn os_error(op: &str, path: &Path, e: &io::Error) -> String {
    format!("{op} {}: {}", path.display(), reason(e))
}

/// The reason alone, without Rust's ` (os error N)` suffix and with Go's lower case.
pub(crate) fn reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_like_go() {
        for (raw, clean) in [
            ("data", "data"),
            ("./data/", "data"),
            ("a//b/./c/", "a/b/c"),
            ("a/b/../c", "a/c"),
            ("../x", "../x"),
            ("/", "/"),
            ("/../a", "/a"),
            (".", "."),
            ("", "."),
        ] {
            assert_eq!(clean_path(Path::new(raw)), PathBuf::from(clean), "{raw}");
        }
    }

    #[test]
    fn os_errors_read_like_go() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            os_error("open", Path::new("/x/y"), &e),
            "open /x/y: no such file or directory"
        );
    }
}

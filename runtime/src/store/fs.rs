//! The file-system port of the FILE store. Every byte the store reads or writes goes
//! through [`Fs`] and [`FsFile`], so that a simulated file system can tear, lose or
//! fail writes and the store's recovery rules can be exercised deterministically.
//! [`StdFs`] is the real one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: std::ffi::OsString,
    pub is_dir: bool,
}

/// An open file. Writes only ever go to the end of the file: the on-disk format is
/// append-only, apart from truncations during recovery and the rewrite of
/// `server.dat`.
pub trait FsFile: Send {
    fn size(&self) -> io::Result<u64>;
    /// Reads from `offset` until `buf` is full or the file ends; returns the count
    /// read, which is short only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Appends all of `data` at the end of the file. On error an unknown prefix of
    /// `data` may have been written.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Flushes the file's data and metadata to stable storage (fsync).
    fn sync(&mut self) -> io::Result<()>;
}

/// A held exclusive lock; dropping it releases the lock.
pub trait FsLock: Send {}

/// The directory operations the store needs.
pub trait Fs: Send + Sync {
    /// Opens an existing file for reading and appending.
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens a file for reading and appending, creating it empty if missing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Creates a file that must not exist yet (`AlreadyExists` otherwise).
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Creates (truncating) `path` and takes an exclusive lock on it without
    /// waiting; `None` when another process holds it.
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl FsFile for StdFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Opened in append mode so that every write lands at the current end, also after a
/// truncation.
fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).append(true);
    o
}

struct StdLock(#[allow(dead_code)] File);

impl FsLock for StdLock {}

impl Fs for StdFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(StdFile(options().open(path)?)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(StdFile(options().create(true).open(path)?)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(StdFile(options().create_new(true).open(path)?)))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        match fs::metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        use std::os::unix::io::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        // A POSIX record lock (not flock) over the whole file, like the Go server's,
        // so that both servers exclude each other on the same directory.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        fl.l_start = 0;
        fl.l_len = 0;
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } == -1 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(Box::new(StdLock(file))))
    }
}

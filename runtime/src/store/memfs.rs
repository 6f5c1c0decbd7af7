//! A file system held in memory: deterministic, with POSIX semantics where the store
//! relies on them (an open file outlives its unlinking or renaming; renaming over a
//! file replaces it), for tests and the fuzz targets of store recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{DirEntry, Fs, FsFile, FsLock};

type Data = Arc<Mutex<Vec<u8>>>;

#[derive(Default)]
struct Tree {
    files: BTreeMap<PathBuf, Data>,
    dirs: BTreeSet<PathBuf>,
    locked: BTreeSet<PathBuf>,
}

/// An in-memory [`Fs`]. Clones share the same files; [`MemFs::snapshot`] copies them.
#[derive(Clone, Default)]
pub struct MemFs {
    tree: Arc<Mutex<Tree>>,
}

impl std::fmt::Debug for MemFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tree = self.tree();
        f.debug_struct("MemFs")
            .field("dirs", &tree.dirs)
            .field("files", &tree.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

fn lock_data(data: &Data) -> MutexGuard<'_, Vec<u8>> {
    data.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemFs {
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An independent copy of every directory and file (locks are not copied).
    pub fn snapshot(&self) -> MemFs {
        let tree = self.tree();
        let copy = Tree {
            files: tree
                .files
                .iter()
                .map(|(p, d)| (p.clone(), Arc::new(Mutex::new(lock_data(d).clone()))))
                .collect(),
            dirs: tree.dirs.clone(),
            locked: BTreeSet::new(),
        };
        MemFs {
            tree: Arc::new(Mutex::new(copy)),
        }
    }

    /// Writes a whole file, creating its directories.
    pub fn write_file(&self, path: impl AsRef<Path>, content: &[u8]) {
        let path = path.as_ref();
        let mut tree = self.tree();
        if let Some(parent) = path.parent() {
            add_dirs(&mut tree, parent);
        }
        tree.files
            .insert(path.to_owned(), Arc::new(Mutex::new(content.to_vec())));
    }

    /// The content of a file, if there is one at `path`.
    pub fn read_file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        self.tree()
            .files
            .get(path.as_ref())
            .map(|d| lock_data(d).clone())
    }

    /// Every file, by path.
    pub fn files(&self) -> Vec<PathBuf> {
        self.tree().files.keys().cloned().collect()
    }

    fn open_file(&self, path: &Path, create: bool, exclusive: bool) -> io::Result<Box<dyn FsFile>> {
        let mut tree = self.tree();
        if let Some(data) = tree.files.get(path) {
            if exclusive {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            return Ok(Box::new(MemFile(data.clone())));
        }
        if !create {
            return Err(not_found());
        }
        check_parent(&tree, path)?;
        if tree.dirs.contains(path) {
            return Err(io::Error::other("is a directory"));
        }
        let data = Data::default();
        tree.files.insert(path.to_owned(), data.clone());
        Ok(Box::new(MemFile(data)))
    }
}

fn add_dirs(tree: &mut Tree, dir: &Path) {
    for d in dir.ancestors() {
        if !d.as_os_str().is_empty() {
            tree.dirs.insert(d.to_owned());
        }
    }
}

fn check_parent(tree: &Tree, path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() && !tree.dirs.contains(p) => Err(not_found()),
        _ => Ok(()),
    }
}

struct MemFile(Data);

impl FsFile for MemFile {
    fn size(&self) -> io::Result<u64> {
        Ok(lock_data(&self.0).len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = lock_data(&self.0);
        let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        lock_data(&self.0).extend_from_slice(data);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
        lock_data(&self.0).resize(len, 0);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct MemLock {
    fs: MemFs,
    path: PathBuf,
}

impl FsLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.fs.tree().locked.remove(&self.path);
    }
}

impl Fs for MemFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_file(path, false, false)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_file(path, true, false)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_file(path, true, true)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let tree = self.tree();
        Ok(tree.files.contains_key(path) || tree.dirs.contains(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut tree = self.tree();
        if tree.dirs.contains(from) {
            return Err(io::Error::other("renaming directories is not supported"));
        }
        check_parent(&tree, to)?;
        if tree.dirs.contains(to) {
            return Err(io::Error::other("is a directory"));
        }
        let data = tree.files.remove(from).ok_or_else(not_found)?;
        tree.files.insert(to.to_owned(), data);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.tree()
            .files
            .remove(path)
            .map(drop)
            .ok_or_else(not_found)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut tree = self.tree();
        if path.ancestors().any(|a| tree.files.contains_key(a)) {
            return Err(io::Error::other("not a directory"));
        }
        add_dirs(&mut tree, path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut tree = self.tree();
        tree.files.retain(|p, _| !p.starts_with(path));
        tree.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let tree = self.tree();
        if !tree.dirs.contains(path) {
            return Err(not_found());
        }
        let child = |p: &Path| p.parent() == Some(path);
        let mut out: Vec<DirEntry> = tree
            .dirs
            .iter()
            .filter(|p| child(p))
            .map(|p| (p, true))
            .chain(tree.files.keys().filter(|p| child(p)).map(|p| (p, false)))
            .filter_map(|(p, is_dir)| {
                Some(DirEntry {
                    name: p.file_name()?.to_owned(),
                    is_dir,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let mut file = self.create(path)?;
        file.truncate(0)?;
        let mut tree = self.tree();
        if !tree.locked.insert(path.to_owned()) {
            return Ok(None);
        }
        Ok(Some(Box::new(MemLock {
            fs: self.clone(),
            path: path.to_owned(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories() {
        let fs = MemFs::new();
        assert_eq!(
            fs.create(Path::new("/a/f")).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        fs.create_dir_all(Path::new("/a/b")).unwrap();
        let mut f = fs.create(Path::new("/a/f")).unwrap();
        f.append(b"hello").unwrap();
        assert!(fs.create_new(Path::new("/a/f")).is_err());
        let mut buf = [0u8; 8];
        assert_eq!(f.read_at(&mut buf, 1).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert_eq!(f.read_at(&mut buf, 99).unwrap(), 0);
        // An open file outlives its renaming; renaming over a file replaces it.
        fs.write_file("/a/g", b"old");
        fs.rename(Path::new("/a/f"), Path::new("/a/g")).unwrap();
        f.append(b"!").unwrap();
        assert_eq!(fs.read_file("/a/g").unwrap(), b"hello!");
        assert!(!fs.exists(Path::new("/a/f")).unwrap());
        let names: Vec<_> = fs
            .list_dir(Path::new("/a"))
            .unwrap()
            .into_iter()
            .map(|e| (e.name.into_string().unwrap(), e.is_dir))
            .collect();
        assert_eq!(names, [("b".to_string(), true), ("g".to_string(), false)]);
        let copy = fs.snapshot();
        fs.remove_dir_all(Path::new("/a")).unwrap();
        assert!(fs.list_dir(Path::new("/a")).is_err());
        assert_eq!(copy.read_file("/a/g").unwrap(), b"hello!");
        let lock = fs.lock(Path::new("/l")).unwrap();
        assert!(lock.is_some());
        assert!(fs.lock(Path::new("/l")).unwrap().is_none());
        drop(lock);
        assert!(fs.lock(Path::new("/l")).unwrap().is_some());
    }
}

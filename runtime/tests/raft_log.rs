//! The file-backed Raft log: it answers exactly like the in-memory reference, keeps
//! what was flushed across crashes, cuts torn tails and refuses damage it cannot
//! explain and files it did not write.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use stan_core::raft::{Entry, HardState, MemLog, RaftLog};
use stan_runtime::raft_log::FileRaftLog;
use stan_runtime::store::{DirEntry, Fs, FsFile, FsLock, MemFs, StdFs};

const DIR: &str = "/data/raft/ch";
const HEADER: usize = 24;
const RECORD_HEADER: usize = 24;

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn entries_path() -> PathBuf {
    dir().join("entries.dat")
}

fn state_path() -> PathBuf {
    dir().join("state.dat")
}

fn data_for(index: u64, term: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ index.wrapping_mul(31) ^ term.wrapping_mul(7)) as u8)
        .collect()
}

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        term,
        index,
        data: data_for(index, term, len),
    }
}

fn all_entries(log: &mut dyn RaftLog) -> Vec<Entry> {
    log.entries(1, usize::MAX).unwrap()
}

fn open(fs: &Arc<dyn Fs>, sync: bool) -> FileRaftLog {
    FileRaftLog::open(fs.clone(), dir(), sync).unwrap()
}

fn open_err(fs: &Arc<dyn Fs>) -> String {
    FileRaftLog::open(fs.clone(), dir(), true).unwrap_err().0
}

/// A log of `sizes.len()` entries in terms 1, 1, 2, 2, ... with the given data
/// sizes, flushed, with `commit` saved.
fn written(fs: &Arc<dyn Fs>, sizes: &[usize], commit: u64) -> Vec<Entry> {
    let mut log = open(fs, true);
    let entries: Vec<Entry> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| entry(i as u64 + 1, i as u64 / 2 + 1, len))
        .collect();
    log.append(&entries).unwrap();
    log.set_hard_state(&HardState {
        term: 9,
        vote: "b".into(),
        commit,
    })
    .unwrap();
    log.flush().unwrap();
    entries
}

/// The offset of entry `index`'s record in a log written by [`written`].
fn offset_of(sizes: &[usize], index: u64) -> usize {
    HEADER
        + sizes[..index as usize - 1]
            .iter()
            .map(|l| RECORD_HEADER + l)
            .sum::<usize>()
}

// ---------------------------------------------------------------------------------
// Differential test against MemLog.

#[derive(Debug, Clone)]
enum Op {
    /// Appends `sizes.len()` entries starting `back` entries before the end (never
    /// cutting committed ones), terms rising by `bumps`.
    Append {
        back: u64,
        sizes: Vec<usize>,
        bumps: Vec<u8>,
    },
    /// An append that leaves a gap, which both must refuse.
    AppendPastEnd {
        gap: u64,
    },
    SetHardState {
        term_bump: u8,
        vote: u8,
        commit: u64,
    },
    Flush,
    /// Flushes, drops the file log and opens it again.
    Reopen,
    Entries {
        from: u64,
        max_bytes: usize,
    },
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![30 => 0..80usize, 1 => 200_000..400_000usize]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4u64, prop::collection::vec(size(), 1..6), prop::collection::vec(0..3u8, 6))
            .prop_map(|(back, sizes, bumps)| Op::Append { back, sizes, bumps }),
        1 => (2..5u64).prop_map(|gap| Op::AppendPastEnd { gap }),
        2 => (0..2u8, 0..3u8, 0..50u64)
            .prop_map(|(term_bump, vote, commit)| Op::SetHardState { term_bump, vote, commit }),
        2 => Just(Op::Flush),
        2 => Just(Op::Reopen),
        3 => (0..30u64, prop_oneof![Just(0usize), 0..200usize, Just(usize::MAX)])
            .prop_map(|(from, max_bytes)| Op::Entries { from, max_bytes }),
    ]
}

/// The entries `op` appends to a log like `model`, or `None` for other ops.
fn batch(model: &MemLog, op: &Op) -> Option<Vec<Entry>> {
    let last = model.last_index();
    let commit = model.hard_state().commit;
    match op {
        Op::Append { back, sizes, bumps } => {
            let first = last + 1 - (*back).min(last - commit);
            let mut term = model.term(first - 1).unwrap().unwrap();
            Some(
                sizes
                    .iter()
                    .zip(bumps)
                    .enumerate()
                    .map(|(k, (&len, &bump))| {
                        term += u64::from(bump);
                        entry(first + k as u64, term.max(1), len)
                    })
                    .collect(),
            )
        }
        Op::AppendPastEnd { gap } => Some(vec![entry(last + gap, 50, 3)]),
        _ => None,
    }
}

/// A commit index that, as in Raft, never goes back nor past the last entry.
fn next_commit(model: &MemLog, wanted: u64) -> u64 {
    model
        .hard_state()
        .commit
        .max(wanted.min(model.last_index()))
}

fn compare(file: &mut FileRaftLog, model: &mut MemLog) {
    assert_eq!(file.last_index(), model.last_index());
    assert_eq!(file.hard_state(), model.hard_state());
    for i in 0..=model.last_index() + 2 {
        assert_eq!(file.term(i).unwrap(), model.term(i).unwrap(), "term({i})");
    }
    assert_eq!(all_entries(file), all_entries(model));
}

fn run_differential(fs: Arc<dyn Fs>, ops: &[Op]) {
    let mut file = open(&fs, true);
    let mut model = MemLog::default();
    for op in ops {
        if let Some(entries) = batch(&model, op) {
            let want = model.append(&entries);
            assert_eq!(file.append(&entries), want, "{op:?}");
        }
        match op {
            Op::SetHardState {
                term_bump,
                vote,
                commit,
            } => {
                let hs = HardState {
                    term: model.hard_state().term + u64::from(*term_bump),
                    vote: ["", "a", "node-b"][*vote as usize].into(),
                    commit: next_commit(&model, *commit),
                };
                assert_eq!(file.set_hard_state(&hs), model.set_hard_state(&hs));
            }
            Op::Flush => assert_eq!(file.flush(), model.flush()),
            Op::Reopen => {
                file.flush().unwrap();
                drop(file);
                file = open(&fs, true);
            }
            Op::Entries { from, max_bytes } => {
                assert_eq!(
                    file.entries(*from, *max_bytes).unwrap(),
                    model.entries(*from, *max_bytes).unwrap(),
                    "{op:?}"
                );
            }
            Op::Append { .. } | Op::AppendPastEnd { .. } => {}
        }
        assert_eq!(file.last_index(), model.last_index(), "{op:?}");
        assert_eq!(file.hard_state(), model.hard_state(), "{op:?}");
    }
    compare(&mut file, &mut model);
    file.flush().unwrap();
    drop(file);
    compare(&mut open(&fs, true), &mut model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn answers_like_the_memory_log(ops in prop::collection::vec(op(), 1..40)) {
        run_differential(Arc::new(MemFs::new()), &ops);
    }
}

#[test]
fn answers_like_the_memory_log_on_the_real_file_system() {
    let tmp = std::env::temp_dir().join(format!("stan-raft-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // The real file system's append mode must also land writes at the end after a
    // truncation.
    let fs: Arc<dyn Fs> = Arc::new(Rooted(tmp.clone()));
    let ops = [
        Op::Append {
            back: 0,
            sizes: vec![5, 0, 70, 3],
            bumps: vec![1, 0, 1, 0],
        },
        Op::Flush,
        Op::Append {
            back: 2,
            sizes: vec![9, 9],
            bumps: vec![1, 0],
        },
        Op::SetHardState {
            term_bump: 1,
            vote: 2,
            commit: 2,
        },
        Op::Reopen,
        Op::Append {
            back: 1,
            sizes: vec![300_000, 1],
            bumps: vec![0, 1],
        },
        Op::Entries {
            from: 2,
            max_bytes: 10,
        },
        Op::Reopen,
    ];
    run_differential(fs, &ops);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// [`StdFs`] with [`DIR`] placed under a scratch directory.
struct Rooted(PathBuf);

impl Rooted {
    fn at(&self, p: &Path) -> PathBuf {
        self.0.join(p.strip_prefix("/").unwrap_or(p))
    }
}

impl Fs for Rooted {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        StdFs.open(&self.at(path))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        StdFs.create(&self.at(path))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        StdFs.create_new(&self.at(path))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFs.exists(&self.at(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(&self.at(from), &self.at(to))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(&self.at(path))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(&self.at(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_dir_all(&self.at(path))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        StdFs.list_dir(&self.at(path))
    }
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        StdFs.lock(&self.at(path))
    }
}

// ---------------------------------------------------------------------------------
// Crashes.

/// A file's bytes as the process sees them and as they would survive power loss.
#[derive(Default)]
struct Disk {
    durable: Vec<u8>,
    current: Vec<u8>,
}

type Node = Arc<Mutex<Disk>>;

/// An in-memory file system that remembers which bytes were fsynced, so that a
/// crash can lose or tear the rest. Renames and creations count as durable at once.
/// With a budget, every change after that many fails, as if the process had died
/// there.
#[derive(Clone, Default)]
struct CrashFs {
    files: Arc<Mutex<BTreeMap<PathBuf, Node>>>,
    dirs: Arc<Mutex<BTreeSet<PathBuf>>>,
    renames: Arc<AtomicUsize>,
    budget: Budget,
}

#[derive(Clone, Default)]
struct Budget(Arc<Mutex<Option<u64>>>);

impl Budget {
    fn spend(&self) -> io::Result<()> {
        let mut left = self.0.lock().unwrap();
        match *left {
            Some(0) => Err(io::Error::other("the process died here")),
            Some(n) => {
                *left = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

struct CrashFile(Node, Budget);

impl FsFile for CrashFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().current.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let disk = self.0.lock().unwrap();
        let start = (offset as usize).min(disk.current.len());
        let n = buf.len().min(disk.current.len() - start);
        buf[..n].copy_from_slice(&disk.current[start..start + n]);
        Ok(n)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.1.spend()?;
        self.0.lock().unwrap().current.extend_from_slice(data);
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.1.spend()?;
        self.0.lock().unwrap().current.resize(len as usize, 0);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.1.spend()?;
        let mut disk = self.0.lock().unwrap();
        disk.durable = disk.current.clone();
        Ok(())
    }
}

/// A small deterministic generator for the crash outcomes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

impl CrashFs {
    /// What a power loss could leave: for each file its durable bytes, or its
    /// current bytes cut anywhere after what they share with the durable ones,
    /// possibly followed by garbage where a write was torn.
    fn crash(&self, rng: &mut Rng) -> CrashFs {
        let files = self.files.lock().unwrap();
        let mut out = BTreeMap::new();
        for (path, node) in files.iter() {
            let disk = node.lock().unwrap();
            let (d, c) = (&disk.durable, &disk.current);
            let shared = d.iter().zip(c).take_while(|(a, b)| a == b).count();
            let mut kept = if d.len() > shared && rng.below(3) == 0 {
                d.clone()
            } else {
                let k = shared + rng.below((c.len() - shared) as u64 + 1) as usize;
                c[..k].to_vec()
            };
            if kept.len() < c.len() && rng.below(3) == 0 {
                let n = 1 + rng.below(40) as usize;
                let zeros = rng.below(2) == 0;
                kept.extend((0..n).map(|_| if zeros { 0 } else { rng.below(256) as u8 }));
            }
            let node = Disk {
                durable: kept.clone(),
                current: kept,
            };
            out.insert(path.clone(), Arc::new(Mutex::new(node)));
        }
        CrashFs {
            files: Arc::new(Mutex::new(out)),
            dirs: Arc::new(Mutex::new(self.dirs.lock().unwrap().clone())),
            renames: Arc::default(),
            budget: Budget::default(),
        }
    }

    fn content(&self, path: &Path) -> Vec<u8> {
        self.files.lock().unwrap()[path]
            .lock()
            .unwrap()
            .current
            .clone()
    }
}

impl Fs for CrashFs {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        match self.files.lock().unwrap().get(path) {
            Some(node) => Ok(Box::new(CrashFile(node.clone(), self.budget.clone()))),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.budget.spend()?;
        let mut files = self.files.lock().unwrap();
        let node = files.entry(path.to_owned()).or_default().clone();
        Ok(Box::new(CrashFile(node, self.budget.clone())))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        if self.exists(path)? {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        self.create(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.files.lock().unwrap().contains_key(path)
            || self.dirs.lock().unwrap().contains(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.budget.spend()?;
        let mut files = self.files.lock().unwrap();
        let node = files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        files.insert(to.to_owned(), node);
        self.renames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.budget.spend()?;
        let removed = self.files.lock().unwrap().remove(path);
        removed.map(drop).ok_or(io::ErrorKind::NotFound.into())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut dirs = self.dirs.lock().unwrap();
        dirs.extend(path.ancestors().map(Path::to_owned));
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.files
            .lock()
            .unwrap()
            .retain(|p, _| !p.starts_with(path));
        self.dirs.lock().unwrap().retain(|p| !p.starts_with(path));
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let files = self.files.lock().unwrap();
        Ok(files
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| {
                Some(DirEntry {
                    name: p.file_name()?.to_owned(),
                    is_dir: false,
                })
            })
            .collect())
    }
    fn lock(&self, _: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        Err(io::Error::other("the Raft log takes no lock"))
    }
}

/// Whether `got` is a possible recovery after a crash at `now`: the log as of the last flush,
/// or a prefix of the log as of the crash that keeps everything both share and no
/// append cut back since (`kept`: the fewest entries left by such a cut).
fn recovered_from(got: &[Entry], flushed: &[Entry], now: &[Entry], kept: usize) -> bool {
    if got == flushed {
        return true;
    }
    let shared = flushed
        .iter()
        .zip(now)
        .take_while(|(a, b)| a == b)
        .count()
        .min(kept);
    got.len() >= shared && got.len() <= now.len() && got == &now[..got.len()]
}

/// Runs `ops`, the process dying after `budget` file-system changes if given, then
/// a power loss, and checks what reopens.
fn crash_run(seed: u64, budget: Option<u64>, ops: &[Op]) {
    let fs = CrashFs::default();
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let mut file = open(&shared, true);
    *fs.budget.0.lock().unwrap() = budget;
    let mut model = MemLog::default();
    let mut flushed = MemLog::default();
    let mut kept = 0;
    // The log before an operation the process died in, which may not have begun.
    let mut before = None;
    for op in ops {
        let (model_before, kept_before) = (model.clone(), kept);
        let done = match op {
            Op::Append { .. } | Op::AppendPastEnd { .. } => match batch(&model, op) {
                Some(entries) if model.append(&entries).is_ok() => {
                    kept = kept.min(entries[0].index as usize - 1);
                    file.append(&entries)
                }
                _ => Ok(()),
            },
            Op::SetHardState {
                term_bump, commit, ..
            } => {
                let hs = HardState {
                    term: model.hard_state().term + u64::from(*term_bump),
                    vote: "v".into(),
                    commit: next_commit(&model, *commit),
                };
                model.set_hard_state(&hs).unwrap();
                file.set_hard_state(&hs)
            }
            Op::Flush | Op::Reopen => file.flush().map(|()| {
                flushed = model.clone();
                kept = flushed.last_index() as usize;
            }),
            Op::Entries { .. } => Ok(()),
        };
        if done.is_err() {
            assert!(budget.is_some(), "{done:?}");
            // Nothing goes on after a failed write.
            assert!(file.flush().is_err());
            before = Some((model_before, kept_before));
            break;
        }
    }
    let mut rng = Rng(seed);
    let crashed = fs.crash(&mut rng);
    let crashed_dyn: Arc<dyn Fs> = Arc::new(crashed.clone());
    let mut log = FileRaftLog::open(crashed_dyn.clone(), dir(), true)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(log.hard_state(), flushed.hard_state(), "seed {seed}");
    let got = all_entries(&mut log);
    let flushed_entries = all_entries(&mut flushed);
    let outcomes = std::iter::once((model, kept)).chain(before);
    assert!(
        outcomes.into_iter().any(|(mut now, kept)| recovered_from(
            &got,
            &flushed_entries,
            &all_entries(&mut now),
            kept
        )),
        "seed {seed}: recovered {} entries, flushed {}",
        got.len(),
        flushed_entries.len()
    );
    // A torn tail is gone from the file, not just skipped.
    let size: usize = HEADER
        + got
            .iter()
            .map(|e| RECORD_HEADER + e.data.len())
            .sum::<usize>();
    assert_eq!(crashed.content(&entries_path()).len(), size, "seed {seed}");
    // The recovered log takes new entries and keeps them.
    let next = entry(log.last_index() + 1, 100, 7);
    log.append(std::slice::from_ref(&next)).unwrap();
    log.flush().unwrap();
    drop(log);
    let mut again = open(&crashed_dyn, true);
    let mut want = got;
    want.push(next);
    assert_eq!(all_entries(&mut again), want, "seed {seed}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn flushed_entries_survive_a_crash(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..30)) {
        crash_run(seed, None, &ops);
    }

    #[test]
    fn flushed_entries_survive_dying_mid_write(
        seed in any::<u64>(),
        budget in 0..40u64,
        ops in prop::collection::vec(op(), 1..30),
    ) {
        crash_run(seed, Some(budget), &ops);
    }
}

#[test]
fn without_sync_a_flush_still_survives_the_process() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let mut log = open(&fs, false);
    let first: Vec<Entry> = (1..=3).map(|i| entry(i, 1, 10)).collect();
    log.append(&first).unwrap();
    log.flush().unwrap();
    log.append(&[entry(4, 1, 10)]).unwrap();
    // Dropped without a flush, as a killed process would be.
    drop(log);
    assert_eq!(all_entries(&mut open(&fs, false)), first);
}

#[test]
fn a_torn_tail_is_cut() {
    let sizes = [10, 20, 30, 40];
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    let entries = written(&fs, &sizes, 2);
    let full = memfs.read_file(entries_path()).unwrap();
    let last = offset_of(&sizes, 4);
    for cut in [
        last + 1,
        last + RECORD_HEADER - 1,
        last + RECORD_HEADER,
        full.len() - 1,
    ] {
        memfs.write_file(entries_path(), &full[..cut]);
        let mut log = open(&fs, true);
        assert_eq!(all_entries(&mut log), entries[..3], "cut at {cut}");
        assert_eq!(memfs.read_file(entries_path()).unwrap().len(), last);
    }
    // Zeros where the file grew but its data never arrived.
    let mut zeros = full.clone();
    zeros.extend_from_slice(&[0; 100]);
    memfs.write_file(entries_path(), &zeros);
    assert_eq!(all_entries(&mut open(&fs, true)), entries);
    assert_eq!(memfs.read_file(entries_path()).unwrap(), full);
    // A damaged last record with nothing after it is a torn write too.
    let mut flipped = full.clone();
    flipped[full.len() - 5] ^= 0x40;
    memfs.write_file(entries_path(), &flipped);
    assert_eq!(all_entries(&mut open(&fs, true)), entries[..3]);
}

#[test]
fn damage_before_valid_records_is_refused() {
    let sizes = [10, 20, 30, 40, 50];
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    written(&fs, &sizes, 1);
    let full = memfs.read_file(entries_path()).unwrap();
    let second = offset_of(&sizes, 2);
    // In the data, in the length, and the whole record zeroed.
    let mut cases = Vec::new();
    let mut data = full.clone();
    data[second + RECORD_HEADER + 3] ^= 1;
    cases.push(data);
    let mut length = full.clone();
    length[second] = 0xff;
    cases.push(length);
    let mut zeroed = full.clone();
    zeroed[second..second + RECORD_HEADER + 20].fill(0);
    cases.push(zeroed);
    for damaged in cases {
        memfs.write_file(entries_path(), &damaged);
        let e = open_err(&fs);
        assert!(
            e.contains(&entries_path().display().to_string())
                && e.contains(&format!("damaged record at offset {second}")),
            "{e}"
        );
        // Nothing was cut.
        assert_eq!(memfs.read_file(entries_path()).unwrap(), damaged);
    }
}

#[test]
fn a_tail_holding_committed_entries_is_not_cut() {
    let sizes = [10, 20, 30];
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    written(&fs, &sizes, 3);
    let full = memfs.read_file(entries_path()).unwrap();
    memfs.write_file(entries_path(), &full[..full.len() - 1]);
    let e = open_err(&fs);
    assert!(
        e.contains("commit index 3 is past the last entry 2") && e.contains("state.dat"),
        "{e}"
    );
}

#[test]
fn records_out_of_order_are_refused() {
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    let mut log = open(&fs, true);
    // Appends refuse to write what the file could not reopen.
    assert!(log.append(&[entry(1, 2, 1), entry(2, 1, 1)]).is_err());
    assert!(log.append(&[entry(1, 1, 1), entry(3, 1, 1)]).is_err());
    assert_eq!(log.last_index(), 0);
    drop(log);
    // Valid records in the wrong place: written as two separate logs, spliced.
    let other = MemFs::new();
    let other_fs: Arc<dyn Fs> = Arc::new(other.clone());
    let mut log = open(&other_fs, true);
    log.append(&[entry(1, 3, 4), entry(2, 3, 4)]).unwrap();
    log.flush().unwrap();
    let two = other.read_file(entries_path()).unwrap();
    let second = two[HEADER + RECORD_HEADER + 4..].to_vec();
    let mut spliced = two[..HEADER + RECORD_HEADER + 4].to_vec();
    spliced.extend_from_slice(&second);
    spliced.extend_from_slice(&second);
    memfs.write_file(entries_path(), &spliced);
    let e = open_err(&fs);
    assert!(e.contains("has index 2, expected 3"), "{e}");
    // A later index with a lower term: the first record of the term-3 log, then the
    // second of a term-1 log.
    let low = MemFs::new();
    let low_fs: Arc<dyn Fs> = Arc::new(low.clone());
    let mut log = open(&low_fs, true);
    log.append(&[entry(1, 1, 4), entry(2, 1, 4)]).unwrap();
    log.flush().unwrap();
    let mut spliced = two[..HEADER + RECORD_HEADER + 4].to_vec();
    spliced
        .extend_from_slice(&low.read_file(entries_path()).unwrap()[HEADER + RECORD_HEADER + 4..]);
    memfs.write_file(entries_path(), &spliced);
    let e = open_err(&fs);
    assert!(
        e.contains(&format!(
            "offset {} has term 1 below the previous term 3",
            HEADER + RECORD_HEADER + 4
        )),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------
// Foreign files.

#[test]
fn a_raft_log_of_another_format_is_refused() {
    let memfs = MemFs::new();
    memfs.write_file(dir().join("raft.log"), b"bolt");
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    let e = open_err(&fs);
    assert!(
        e.starts_with(DIR) && e.contains("Raft log of another format (raft.log)"),
        "{e}"
    );
    assert_eq!(memfs.files(), [dir().join("raft.log")]);
}

#[test]
fn foreign_or_newer_files_are_refused() {
    for (name, content) in [
        ("entries.dat", b"SQLite format 3\0 and more".to_vec()),
        ("state.dat", b"{\"term\": 3}".to_vec()),
        ("entries.dat", b"stan-rs raft entries\x02\0\0\0".to_vec()),
        (
            "state.dat",
            b"stan-rs raft state\x07\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
        ),
    ] {
        let memfs = MemFs::new();
        let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
        drop(open(&fs, true));
        memfs.write_file(dir().join(name), &content);
        let e = open_err(&fs);
        let path = dir().join(name).display().to_string();
        let reason = if content.starts_with(b"stan-rs") {
            "format version"
        } else {
            "not a stan-rs Raft log file"
        };
        assert!(e.starts_with(&path) && e.contains(reason), "{e}");
        assert_eq!(memfs.read_file(dir().join(name)).unwrap(), content);
    }
}

#[test]
fn a_damaged_state_file_is_refused() {
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    written(&fs, &[1], 1);
    let mut state = memfs.read_file(state_path()).unwrap();
    let last = state.len() - 1;
    state[last] ^= 1;
    memfs.write_file(state_path(), &state);
    let e = open_err(&fs);
    assert!(e.contains("state.dat: damaged hard state"), "{e}");
}

#[test]
fn a_missing_state_file_is_refused_only_when_entries_exist() {
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    drop(open(&fs, true));
    memfs.remove_file(&state_path()).unwrap();
    // Nothing lost: a first open cut short.
    let mut log = open(&fs, true);
    assert_eq!(log.hard_state(), HardState::default());
    log.append(&[entry(1, 1, 3)]).unwrap();
    log.flush().unwrap();
    drop(log);
    memfs.remove_file(&state_path()).unwrap();
    let e = open_err(&fs);
    assert!(
        e.contains("state.dat: missing while") && e.contains("holds 1 entries"),
        "{e}"
    );
}

#[test]
fn an_interrupted_first_open_is_completed() {
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    drop(open(&fs, true));
    let header = memfs.read_file(entries_path()).unwrap();
    assert_eq!(header.len(), HEADER);
    assert!(header.starts_with(b"stan-rs raft entries"));
    for cut in [0, 5, HEADER - 1] {
        memfs.write_file(entries_path(), &header[..cut]);
        memfs.write_file(dir().join("state.dat.tmp"), b"half");
        let mut log = open(&fs, true);
        assert_eq!(log.last_index(), 0);
        assert_eq!(memfs.read_file(entries_path()).unwrap(), header);
        assert!(memfs.read_file(dir().join("state.dat.tmp")).is_none());
        log.append(&[entry(1, 1, 2)]).unwrap();
        log.flush().unwrap();
        drop(log);
        assert_eq!(open(&fs, true).last_index(), 1);
        drop(open(&fs, true));
        memfs.write_file(entries_path(), &header);
    }
}

// ---------------------------------------------------------------------------------
// Behaviour.

#[test]
fn truncation_then_append_then_reopen() {
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    let mut log = open(&fs, true);
    let a: Vec<Entry> = (1..=6).map(|i| entry(i, 1, 10)).collect();
    log.append(&a).unwrap();
    log.flush().unwrap();
    // Cut inside the file.
    let b = vec![entry(4, 2, 3), entry(5, 2, 3)];
    log.append(&b).unwrap();
    // Cut inside what is not yet written out.
    let c = vec![entry(5, 3, 8), entry(6, 3, 8), entry(7, 3, 8)];
    log.append(&c).unwrap();
    let want: Vec<Entry> = a[..3].iter().chain(&b[..1]).chain(&c).cloned().collect();
    assert_eq!(all_entries(&mut log), want);
    assert_eq!(log.term(7).unwrap(), Some(3));
    assert_eq!(log.term(8).unwrap(), None);
    log.flush().unwrap();
    drop(log);
    let mut log = open(&fs, true);
    assert_eq!(all_entries(&mut log), want);
    let size = memfs.read_file(entries_path()).unwrap().len();
    assert_eq!(size, offset_of(&[10, 10, 10, 3, 8, 8, 8], 8));
    // Cut back to nothing.
    log.append(&[entry(1, 4, 1)]).unwrap();
    log.flush().unwrap();
    drop(log);
    assert_eq!(all_entries(&mut open(&fs, true)), [entry(1, 4, 1)]);
}

#[test]
fn entries_stop_at_the_byte_cap() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let mut log = open(&fs, true);
    let all: Vec<Entry> = [5, 0, 7, 300_000, 2]
        .iter()
        .enumerate()
        .map(|(i, &len)| entry(i as u64 + 1, 1, len))
        .collect();
    log.append(&all).unwrap();
    for round in 0..2 {
        assert_eq!(log.entries(1, 0).unwrap(), all[..1], "round {round}");
        assert_eq!(log.entries(1, 4).unwrap(), all[..1]);
        assert_eq!(log.entries(1, 5).unwrap(), all[..2]);
        assert_eq!(log.entries(1, 12).unwrap(), all[..3]);
        assert_eq!(log.entries(1, 300_011).unwrap(), all[..3]);
        assert_eq!(log.entries(1, 300_012).unwrap(), all[..4]);
        assert_eq!(log.entries(0, 5).unwrap(), all[..2]);
        assert_eq!(log.entries(4, 0).unwrap(), all[3..4]);
        assert_eq!(log.entries(4, 300_002).unwrap(), all[3..]);
        assert_eq!(log.entries(5, 0).unwrap(), all[4..]);
        assert!(log.entries(6, usize::MAX).unwrap().is_empty());
        log.flush().unwrap();
    }
}

#[test]
fn the_state_file_is_rewritten_only_when_changed() {
    let fs = CrashFs::default();
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let mut log = open(&shared, true);
    let created = fs.renames.load(Ordering::Relaxed);
    assert_eq!(created, 1);
    let hs = HardState {
        term: 2,
        vote: "x".into(),
        commit: 0,
    };
    log.set_hard_state(&hs).unwrap();
    log.flush().unwrap();
    log.set_hard_state(&hs).unwrap();
    log.flush().unwrap();
    log.append(&[entry(1, 2, 1)]).unwrap();
    log.flush().unwrap();
    assert_eq!(fs.renames.load(Ordering::Relaxed), 2);
    drop(log);
    assert_eq!(open(&shared, true).hard_state(), hs);
}

#[test]
fn corruption_after_open_is_reported_by_reads() {
    let memfs = MemFs::new();
    let fs: Arc<dyn Fs> = Arc::new(memfs.clone());
    let mut log = open(&fs, true);
    log.append(&[entry(1, 1, 10), entry(2, 1, 10)]).unwrap();
    log.flush().unwrap();
    // The open file is shared with MemFs, so damage it through a second handle.
    let mut other = fs.open(&entries_path()).unwrap();
    let len = other.size().unwrap();
    other.truncate(len - 3).unwrap();
    other.append(b"zzz").unwrap();
    let e = log.entries(1, usize::MAX).unwrap_err().0;
    let offset = offset_of(&[10, 10], 2);
    assert!(
        e.contains("entries.dat") && e.contains(&format!("entry 2 at offset {offset}")),
        "{e}"
    );
    assert_eq!(log.entries(1, 0).unwrap(), [entry(1, 1, 10)]);
}

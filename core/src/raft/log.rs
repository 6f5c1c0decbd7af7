//! The Raft log port.

/// A log failure; fatal for the member (its text is logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LogError(pub String);

/// One log entry. An empty `data` is the no-op a new leader appends to commit the
/// entries of earlier terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub data: Vec<u8>,
}

/// What a member must remember across restarts besides the entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    /// The member voted for in `term`; empty if none.
    pub vote: String,
    /// The highest index known committed when this was saved (a lower bound).
    pub commit: u64,
}

/// Storage of the log and the hard state. Writes need only be durable after
/// [`RaftLog::flush`].
pub trait RaftLog: Send {
    fn hard_state(&self) -> HardState;
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError>;
    /// Index of the last entry; 0 when the log is empty.
    fn last_index(&self) -> u64;
    /// Term of the entry at `index`; 0 for index 0; `None` past the end.
    fn term(&self, index: u64) -> Result<Option<u64>, LogError>;
    /// Entries from `from` on (inclusive), at least one if any exists, stopping before
    /// their data would pass `max_bytes`.
    fn entries(&mut self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, LogError>;
    /// Appends `entries` (consecutive indexes). The first may be at or below
    /// `last_index()`: the log is first cut back to just before it.
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError>;
    /// Makes every write so far durable.
    fn flush(&mut self) -> Result<(), LogError>;
}

/// A log in memory, for tests and the simulator. It also remembers what the last
/// [`RaftLog::flush`] made durable, so that [`MemLog::crash`] can lose the rest as a
/// power failure would.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    hs: HardState,
    entries: Vec<Entry>,
    /// The hard state as of the last flush.
    durable_hs: HardState,
    /// How many leading `entries` are unchanged since the last flush.
    durable_len: usize,
    /// Entries that were durable at the last flush and have been cut since; the
    /// durable log is `entries[..durable_len]` followed by these.
    cut: Vec<Entry>,
}

impl MemLog {
    /// Every entry as it is now, flushed or not.
    pub fn stored(&self) -> &[Entry] {
        &self.entries
    }

    /// Forgets every write since the last flush, as a crash of the machine would.
    pub fn crash(&mut self) {
        self.hs = self.durable_hs.clone();
        self.entries.truncate(self.durable_len);
        self.entries.append(&mut self.cut);
        self.durable_len = self.entries.len();
    }
}

impl RaftLog for MemLog {
    fn hard_state(&self) -> HardState {
        self.hs.clone()
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.hs = hs.clone();
        Ok(())
    }

    fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Result<Option<u64>, LogError> {
        if index == 0 {
            return Ok(Some(0));
        }
        Ok(self.entries.get(index as usize - 1).map(|e| e.term))
    }

    fn entries(&mut self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.iter().skip(from.saturating_sub(1) as usize) {
            bytes += e.data.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index == 0 || first.index > self.last_index() + 1 {
            return Err(LogError(format!(
                "append at index {} after last index {}",
                first.index,
                self.last_index()
            )));
        }
        let keep = first.index as usize - 1;
        if keep < self.durable_len {
            let lost: Vec<Entry> = self.entries.drain(keep..self.durable_len).collect();
            self.cut.splice(0..0, lost);
            self.durable_len = keep;
        }
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        self.durable_hs = self.hs.clone();
        self.durable_len = self.entries.len();
        self.cut.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            data: vec![index as u8],
        }
    }

    fn terms(log: &MemLog) -> Vec<u64> {
        log.entries.iter().map(|e| e.term).collect()
    }

    #[test]
    fn crash_loses_only_unflushed_writes() {
        let mut log = MemLog::default();
        log.append(&[entry(1, 1), entry(1, 2), entry(1, 3)])
            .unwrap();
        let hs = HardState {
            term: 1,
            vote: "a".into(),
            commit: 2,
        };
        log.set_hard_state(&hs).unwrap();
        log.flush().unwrap();
        // Cut twice below the durable end and append again, then crash.
        log.append(&[entry(2, 3)]).unwrap();
        log.append(&[entry(3, 2), entry(3, 3), entry(3, 4)])
            .unwrap();
        log.set_hard_state(&HardState {
            term: 3,
            ..HardState::default()
        })
        .unwrap();
        log.crash();
        assert_eq!(terms(&log), [1, 1, 1]);
        assert_eq!(log.entries, [entry(1, 1), entry(1, 2), entry(1, 3)]);
        assert_eq!(log.hard_state(), hs);

        log.append(&[entry(4, 4)]).unwrap();
        log.flush().unwrap();
        log.append(&[entry(5, 2)]).unwrap();
        log.crash();
        assert_eq!(terms(&log), [1, 1, 1, 4]);
    }
}

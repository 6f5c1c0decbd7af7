//! Caching mode's pending rows (STORES §3.5): each flush writes, per subscription
//! with changes, one `SubsPending` row listing the sequences sent and acknowledged
//! since the last one, as JSON arrays; rows are counted and removed once nothing in
//! them is needed any more.

use std::collections::{BTreeSet, HashMap};

use stan_core::store::{Result, StoreError};

use super::conn::Val;

/// A `SubsPending` row of caching mode, reference-counted: it goes once every
/// sequence it lists as pending is acknowledged and every ack it lists no longer
/// has a row to cancel.
#[derive(Default)]
pub(super) struct PendingRow {
    pub(super) unacked: usize,
    pub(super) live_acks: usize,
    /// Rows whose acks cancel pending sequences of this one.
    pub(super) ack_holders: Vec<u64>,
}

#[derive(Default)]
pub(super) struct Sub {
    /// The row's `subid`.
    pub(super) subid: u64,
    pub(super) next_row: u64,
    /// Highest sequence sent, and what the tables know of it.
    pub(super) last_sent: u64,
    pub(super) written_last_sent: u64,
    /// `Subscriptions.lastsent`: once the pending rows that carried the last sent
    /// are gone, only this column remembers it.
    pub(super) column_last_sent: u64,
    // Caching mode: changes since the last flush, and the rows written.
    pub(super) new_pending: BTreeSet<u64>,
    pub(super) new_acks: Vec<u64>,
    pub(super) rows: HashMap<u64, PendingRow>,
    /// Pending sequence → the row that lists it.
    pub(super) seq_row: HashMap<u64, u64>,
}

/// A JSON array of sequences, as the `pending` and `acks` columns hold them.
pub(super) fn json_seqs(seqs: impl Iterator<Item = u64>) -> Val {
    let items: Vec<String> = seqs.map(|s| s.to_string()).collect();
    if items.is_empty() {
        Val::Null
    } else {
        Val::Bytes(format!("[{}]", items.join(",")).into_bytes())
    }
}

pub(super) fn parse_seqs(v: &Val, subid: u64, what: &str) -> Result<Vec<u64>> {
    match v.bytes() {
        None | Some([]) => Ok(Vec::new()),
        Some(b) => serde_json::from_slice::<Vec<u64>>(b).map_err(|e| {
            StoreError(format!(
                "sql: unable to decode {what} of subscription {subid}: {e}"
            ))
        }),
    }
}

impl Sub {
    /// Records that the ack of `seq`, written in row `holder`, cancels it; the rows
    /// that may go as a result.
    pub(super) fn apply_ack(&mut self, holder: u64, seq: u64) -> Vec<u64> {
        let Some(target) = self.seq_row.remove(&seq) else {
            return Vec::new();
        };
        if let Some(h) = self.rows.get_mut(&holder) {
            h.live_acks += 1;
        }
        if let Some(t) = self.rows.get_mut(&target) {
            t.unacked = t.unacked.saturating_sub(1);
            t.ack_holders.push(holder);
        }
        self.release(target)
    }

    /// Removes `row` if nothing refers to it any more, and with it the references
    /// its removal drops; the rows removed.
    pub(super) fn release(&mut self, row: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        let mut work = vec![row];
        while let Some(r) = work.pop() {
            let done = matches!(self.rows.get(&r), Some(p) if p.unacked == 0 && p.live_acks == 0);
            if !done {
                continue;
            }
            let p = self.rows.remove(&r).expect("checked above");
            gone.push(r);
            for h in p.ack_holders {
                if let Some(hr) = self.rows.get_mut(&h) {
                    hr.live_acks = hr.live_acks.saturating_sub(1);
                    work.push(h);
                }
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> Sub {
        Sub {
            subid: 1,
            next_row: 1,
            ..Sub::default()
        }
    }

    #[test]
    fn a_row_goes_once_its_sends_are_acked_and_its_acks_are_moot() {
        let mut s = sub();
        // Row 1 lists 10 and 11 as pending.
        s.rows.insert(
            1,
            PendingRow {
                unacked: 2,
                ..PendingRow::default()
            },
        );
        s.seq_row.insert(10, 1);
        s.seq_row.insert(11, 1);
        // Row 2 acks 10 and sends 12.
        s.rows.insert(
            2,
            PendingRow {
                unacked: 1,
                ..PendingRow::default()
            },
        );
        s.seq_row.insert(12, 2);
        assert!(s.apply_ack(2, 10).is_empty());
        // Row 3 acks 11 and 12: row 1 has nothing pending and goes; row 2's ack
        // then cancels nothing live, and its own send is acked, so it goes too; row
        // 3 is left with no live ack.
        s.rows.insert(3, PendingRow::default());
        let mut gone = s.apply_ack(3, 11);
        gone.extend(s.apply_ack(3, 12));
        gone.extend(s.release(3));
        gone.sort();
        assert_eq!(gone, vec![1, 2, 3]);
        assert!(s.rows.is_empty());
    }

    #[test]
    fn json_arrays_read_back() {
        assert_eq!(
            json_seqs([12, 10, 11].into_iter()),
            Val::Bytes(b"[12,10,11]".to_vec())
        );
        assert_eq!(json_seqs(std::iter::empty()), Val::Null);
        assert_eq!(
            parse_seqs(&Val::Bytes(b"[3,1]".to_vec()), 1, "acks").unwrap(),
            vec![3, 1]
        );
        assert!(parse_seqs(&Val::Bytes(b"[x".to_vec()), 1, "acks").is_err());
        assert!(parse_seqs(&Val::Null, 1, "acks").unwrap().is_empty());
    }
}

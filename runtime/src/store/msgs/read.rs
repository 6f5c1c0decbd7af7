//! Lookups: index records from memory or the index file (walking back over holes),
//! message records from the write buffer or the data file, and read-ahead of runs of
//! consecutive messages for catch-up subscribers.

use stan_core::streaming::pb::MsgProto;

use super::super::crc::Crc;
use super::super::env::{os_error, Shared};
use super::super::proto;
use super::super::record::{crc_mismatch, HEADER_LEN};
use super::{IndexBlock, IndexRec, MsgStore, ReadAhead, INDEX_BLOCK, INDEX_LEN, ZERO_PADDED};

impl MsgStore {
    pub fn lookup(&mut self, sh: &Shared, seq: u64) -> Result<Option<MsgProto>, String> {
        if self.count == 0 || seq < self.first || seq > self.last {
            return Ok(None);
        }
        if let Some(m) = self.read_ahead_get(sh, seq)? {
            return Ok(Some(m));
        }
        let Some((num, rec)) = self.index_of(sh, seq)? else {
            return Ok(None);
        };
        let slice = &self.slices[&num];
        let buffered = Some(num) == self.write_num() && rec.offset >= slice.dat_len;
        if !buffered && sh.opts.read_buffer() > 0 && seq != slice.last_seq {
            // A failed read-ahead falls back to reading the one record.
            if let Ok(true) = self.fill_read_ahead(sh, num, seq) {
                if let Some(m) = self.read_ahead_get(sh, seq)? {
                    return Ok(Some(m));
                }
            }
        }
        self.read_msg(sh, num, &rec).map(Some)
    }

    pub fn timestamp(&mut self, sh: &Shared, seq: u64) -> Result<Option<i64>, String> {
        Ok(self.index_of(sh, seq)?.map(|(_, rec)| rec.timestamp))
    }

    fn slice_for(&self, seq: u64) -> Option<i64> {
        if let Some((&num, s)) = self.slices.iter().next_back() {
            if s.contains(seq) {
                return Some(num);
            }
        }
        self.slices
            .iter()
            .find(|(_, s)| s.contains(seq))
            .map(|(&n, _)| n)
    }

    /// The index record of a stored message: from memory while its record is
    /// buffered, else from the slice's index file.
    fn index_of(&mut self, sh: &Shared, seq: u64) -> Result<Option<(i64, IndexRec)>, String> {
        if self.count == 0 || seq < self.first || seq > self.last {
            return Ok(None);
        }
        if let Some(rec) = self.pending_index(seq) {
            return Ok(Some((
                self.write_num().expect("pending needs a slice"),
                rec,
            )));
        }
        let Some(num) = self.slice_for(seq) else {
            return Ok(None);
        };
        Ok(self.read_index(sh, num, seq)?.map(|r| (num, r)))
    }

    pub(super) fn pending_index(&self, seq: u64) -> Option<IndexRec> {
        let p = &self.write.pending;
        let first = p.first()?;
        if seq < first.seq {
            return None;
        }
        match p.get((seq - first.seq) as usize) {
            Some(r) if r.seq == seq => Some(*r),
            _ => p.iter().find(|r| r.seq == seq).copied(),
        }
    }

    /// The raw index record at `pos` of slice `num`, `None` past the end of the file.
    fn raw_index(
        &mut self,
        sh: &Shared,
        num: i64,
        pos: u64,
    ) -> Result<Option<[u8; INDEX_LEN]>, String> {
        if let Some(b) = &self.index_block {
            if b.slice == num && pos >= b.first {
                let i = ((pos - b.first) as usize) * INDEX_LEN;
                if i + INDEX_LEN <= b.raw.len() {
                    return Ok(Some(b.raw[i..i + INDEX_LEN].try_into().expect("32 bytes")));
                }
            }
        }
        let slice = self.slices.get_mut(&num).expect("known slice");
        let indexed = slice.indexed();
        if pos >= indexed {
            return Ok(None);
        }
        let n = INDEX_BLOCK.min(indexed - pos) as usize;
        let mut raw = vec![0u8; n * INDEX_LEN];
        let f = slice.open(sh)?;
        let got = f
            .idx
            .read_at(&mut raw, 4 + pos * INDEX_LEN as u64)
            .map_err(|e| os_error("read", f.idx_path, &e))?;
        raw.truncate(got - got % INDEX_LEN);
        if raw.is_empty() {
            return Ok(None);
        }
        let first: [u8; INDEX_LEN] = raw[..INDEX_LEN].try_into().expect("32 bytes");
        self.index_block = Some(IndexBlock {
            slice: num,
            first: pos,
            raw,
        });
        Ok(Some(first))
    }

    /// Reads the index record of `seq` at its computed position; if another
    /// sequence is there (a store with holes), walks back looking for it.
    pub(super) fn read_index(
        &mut self,
        sh: &Shared,
        num: i64,
        seq: u64,
    ) -> Result<Option<IndexRec>, String> {
        let base = self.slices[&num].base_seq;
        if seq < base {
            return Ok(None);
        }
        let pos = seq - base;
        let crc = sh.verify_crc();
        if let Some(raw) = self.raw_index(sh, num, pos)? {
            match IndexRec::decode(&raw, crc)? {
                None => return Err(ZERO_PADDED.into()),
                Some(r) if r.seq == seq => return Ok(Some(r)),
                Some(_) => {}
            }
        }
        let indexed = self.slices[&num].indexed();
        for p in (0..pos.min(indexed)).rev() {
            let Some(raw) = self.raw_index(sh, num, p)? else {
                continue;
            };
            match IndexRec::decode(&raw, crc) {
                Ok(Some(r)) if r.seq == seq => return Ok(Some(r)),
                Ok(Some(r)) if r.seq > seq => continue,
                _ => break,
            }
        }
        Ok(None)
    }

    /// Reads and decodes the message record `rec` points to.
    fn read_msg(&mut self, sh: &Shared, num: i64, rec: &IndexRec) -> Result<MsgProto, String> {
        let total = HEADER_LEN + rec.size as usize;
        let is_write = Some(num) == self.write_num();
        let slice = self.slices.get_mut(&num).expect("known slice");
        let owned;
        let bytes: &[u8] = if is_write && rec.offset >= slice.dat_len {
            let start = (rec.offset - slice.dat_len) as usize;
            self.write
                .buf
                .get(start..start + total)
                .ok_or_else(|| "unexpected EOF".to_owned())?
        } else {
            let f = slice.open(sh)?;
            // The size comes from the index: read no more than the file holds.
            let available = f
                .dat
                .size()
                .map_err(|e| os_error("stat", f.dat_path, &e))?
                .saturating_sub(rec.offset);
            let mut buf = vec![0u8; (total as u64).min(available) as usize];
            let got = f
                .dat
                .read_at(&mut buf, rec.offset)
                .map_err(|e| os_error("read", f.dat_path, &e))?;
            if got < total {
                return Err(if got == 0 { "EOF" } else { "unexpected EOF" }.into());
            }
            owned = buf;
            &owned
        };
        check_msg_record(bytes, rec.size, sh.verify_crc())?;
        proto::decode_msg(&bytes[HEADER_LEN..]).map_err(|e| e.0)
    }

    /// Reads, in one I/O each, a run of index records and the message records they
    /// point to, starting at `seq` and up to `--file_read_buffer_size` bytes.
    fn fill_read_ahead(&mut self, sh: &Shared, num: i64, seq: u64) -> Result<bool, String> {
        let limit = sh.opts.read_buffer();
        let crc = sh.verify_crc();
        let slice = self.slices.get_mut(&num).expect("known slice");
        if seq < slice.base_seq {
            return Ok(false);
        }
        let pos = seq - slice.base_seq;
        let indexed = slice.indexed();
        if pos >= indexed {
            return Ok(false);
        }
        let n = ((limit / INDEX_LEN).max(1) as u64)
            .min(slice.last_seq - seq + 1)
            .min(indexed - pos) as usize;
        let mut raw = vec![0u8; n * INDEX_LEN];
        let dat_len = slice.dat_len;
        let f = slice.open(sh)?;
        let got = f
            .idx
            .read_at(&mut raw, 4 + pos * INDEX_LEN as u64)
            .map_err(|e| os_error("read", f.idx_path, &e))?;
        if got < raw.len() {
            return Err("unexpected EOF".into());
        }
        let mut spans = Vec::new();
        let (mut first_off, mut total) = (0u64, 0usize);
        for (i, chunk) in raw.chunks_exact(INDEX_LEN).enumerate() {
            let want = seq + i as u64;
            let Some(r) = IndexRec::decode(chunk, crc)? else {
                return Err(ZERO_PADDED.into());
            };
            if r.seq != want {
                return Err(format!("wrong sequence, wanted {want} got {}", r.seq));
            }
            let rec_len = HEADER_LEN + r.size as usize;
            if i > 0 && total + rec_len > limit {
                break;
            }
            if i == 0 {
                first_off = r.offset;
            } else if r.offset != first_off + total as u64 {
                // Records are read as one block only while they are adjacent.
                break;
            }
            if r.offset + rec_len as u64 > dat_len {
                break;
            }
            spans.push((total + HEADER_LEN, r.size as usize));
            total += rec_len;
        }
        if spans.is_empty() {
            return Ok(false);
        }
        let mut data = vec![0u8; total];
        let got = f
            .dat
            .read_at(&mut data, first_off)
            .map_err(|e| os_error("read", f.dat_path, &e))?;
        if got < total {
            return Err("unexpected EOF".into());
        }
        for &(start, size) in &spans {
            check_msg_record(&data[start - HEADER_LEN..start + size], size as u32, crc)?;
        }
        self.read_ahead = Some(ReadAhead {
            slice: num,
            first_seq: seq,
            data,
            spans,
            last_used: sh.now(),
        });
        Ok(true)
    }

    fn read_ahead_get(&mut self, sh: &Shared, seq: u64) -> Result<Option<MsgProto>, String> {
        let Some(ra) = &mut self.read_ahead else {
            return Ok(None);
        };
        if !self.slices.contains_key(&ra.slice) {
            self.read_ahead = None;
            return Ok(None);
        }
        if seq < ra.first_seq {
            return Ok(None);
        }
        let Some(&(start, size)) = ra.spans.get((seq - ra.first_seq) as usize) else {
            return Ok(None);
        };
        ra.last_used = sh.now();
        proto::decode_msg(&ra.data[start..start + size])
            .map(Some)
            .map_err(|e| e.0)
    }
}

/// Checks a message record read back: its header must announce the indexed size and,
/// when asked, carry the payload's CRC.
fn check_msg_record(bytes: &[u8], size: u32, crc: Option<&Crc>) -> Result<(), String> {
    let word = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if word == 0 && stored == 0 {
        return Err(ZERO_PADDED.into());
    }
    if word != size {
        return Err(format!("expected size to be {size}, got {word}"));
    }
    if let Some(crc) = crc {
        let computed = crc.checksum(&bytes[HEADER_LEN..HEADER_LEN + size as usize]);
        if computed != stored {
            return Err(crc_mismatch(stored, computed));
        }
    }
    Ok(())
}

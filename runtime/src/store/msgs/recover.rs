//! Recovery of a channel's message slices (STORES §1.8): the index is trusted when
//! its last record matches the data file, else rebuilt from the data file.

use std::path::Path;

use stan_core::log::Level;

use super::super::env::{os_error, reason, Shared};
use super::super::fs::FsFile;
use super::super::proto;
use super::super::record::{
    bad_record, crc_mismatch, next_record, open_versioned, q, Rec, SeqReader, HEADER_LEN,
};
use super::{idx_name, IndexRec, MsgStore, Slice, INDEX_LEN, MSG_OVERHEAD, ZERO_PADDED};

impl MsgStore {
    /// Recovers the channel's slices (STORES §1.8).
    pub fn recover(sh: &Shared, channel: &str, dir: &Path) -> Result<MsgStore, String> {
        let mut ms = MsgStore::new(sh, channel, dir);
        let mut fname = String::new();
        let fail = |fname: &str, e: String| {
            format!("unable to recover message store for [{channel}](file: {fname:?}): {e}")
        };
        let entries = sh
            .fs
            .list_dir(dir)
            .map_err(|e| fail("", os_error("open", dir, &e)))?;
        for entry in entries {
            if entry.is_dir {
                continue;
            }
            let Some(name) = entry.name.to_str() else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".dat") else {
                continue;
            };
            if !name.starts_with("msgs.") {
                continue;
            }
            let num_text = stem.strip_prefix("msgs.").unwrap_or(stem);
            let Ok(num) = num_text.parse::<i64>() else {
                return Err(fail(
                    &fname,
                    format!("message log has an invalid name: {name}"),
                ));
            };
            let idx = idx_name(num);
            let dat_path = dir.join(name);
            let idx_path = dir.join(&idx);
            let use_index = sh.fs.exists(&idx_path).unwrap_or(false);
            fname = format!("{channel}/{name}");
            let mut dat_file = open_versioned(&*sh.fs, &dat_path).map_err(|e| fail(&fname, e))?;
            fname = format!("{channel}/{idx}");
            let mut idx_file = open_versioned(&*sh.fs, &idx_path).map_err(|e| fail(&fname, e))?;
            let mut slice = Slice::new(sh, dat_path, idx_path);
            recover_slice(sh, &mut slice, &mut *dat_file, &mut *idx_file, use_index)
                .map_err(|e| fail(&fname, e))?;
            if slice.msgs == 0 {
                continue;
            }
            slice.dat_len = dat_file
                .size()
                .map_err(|e| fail(&fname, os_error("stat", &slice.dat_path, &e)))?;
            slice.idx_len = idx_file
                .size()
                .map_err(|e| fail(&fname, os_error("stat", &slice.idx_path, &e)))?;
            if ms.first == 0 || slice.first_seq < ms.first {
                ms.first = slice.first_seq;
            }
            ms.last = ms.last.max(slice.last_seq);
            ms.count += slice.msgs;
            ms.bytes += slice.bytes;
            ms.next_slice = ms.next_slice.max(num + 1);
            ms.slices.insert(num, slice);
        }
        // Each slice continues where the one before it ends.
        let mut before: Option<(i64, u64)> = None;
        for (&num, slice) in &ms.slices {
            if let Some((prev, last)) = before {
                if slice.first_seq <= last {
                    return Err(fail(
                        &format!("{channel}/{}", super::dat_name(num)),
                        format!(
                            "slice {num} starts at sequence {} but slice {prev} ends at sequence {last}",
                            slice.first_seq
                        ),
                    ));
                }
            }
            before = Some((num, slice.last_seq));
        }
        // Appends continue at the end of the last slice: keep its files open.
        if let Some(num) = ms.write_num() {
            ms.slices
                .get_mut(&num)
                .expect("write slice")
                .open(sh)
                .map_err(|e| fail(&fname, e))?;
        }
        Ok(ms)
    }
}

/// Recovers one slice from its index, or rebuilds the index from the data file when
/// the index is missing, empty or does not match (STORES §1.8 steps 3–4).
fn recover_slice(
    sh: &Shared,
    slice: &mut Slice,
    dat: &mut dyn FsFile,
    idx: &mut dyn FsFile,
    use_index: bool,
) -> Result<(), String> {
    if use_index {
        match read_index_file(sh, slice, dat, idx) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                sh.log(
                    Level::Error,
                    &format!(
                        "Error with index file {}: {e}. Truncating and recovering from data file",
                        q(&slice.idx_path)
                    ),
                );
                if let Err(te) = idx.truncate(4) {
                    return Err(format!(
                        "error during recovery of file {}: {e}, you need to manually remove index file {} (truncate failed with err: {})",
                        q(&slice.dat_path),
                        q(&slice.idx_path),
                        reason(&te)
                    ));
                }
                reset_stats(slice);
            }
        }
    }
    if let Err(e) = rebuild_index(sh, slice, dat, idx) {
        // The next start rebuilds it again from the data file.
        if let Err(re) = sh.fs.remove_file(&slice.idx_path) {
            return Err(format!(
                "error during recovery of file {}: {e}, you need to manually remove index file {} (remove failed with err: {})",
                q(&slice.dat_path),
                q(&slice.idx_path),
                reason(&re)
            ));
        }
        return Err(e);
    }
    Ok(())
}

fn reset_stats(slice: &mut Slice) {
    slice.base_seq = 0;
    slice.first_seq = 0;
    slice.last_seq = 0;
    slice.msgs = 0;
    slice.bytes = 0;
    slice.first_ts = 0;
}

/// Counts the next message of the slice. Sequences only grow within a slice: a file
/// that says otherwise was not written by a server, and accepting it would leave the
/// channel with a first sequence above its last.
fn count(slice: &mut Slice, seq: u64, size: u64, timestamp: i64) -> Result<(), String> {
    let after = if slice.msgs == 0 { 0 } else { slice.last_seq };
    if seq <= after {
        return Err(format!(
            "message sequence {seq} found after sequence {after}"
        ));
    }
    if slice.msgs == 0 {
        slice.base_seq = seq;
        slice.first_seq = seq;
        slice.first_ts = timestamp;
    }
    slice.last_seq = seq;
    slice.msgs += 1;
    slice.bytes += size + MSG_OVERHEAD;
    Ok(())
}

/// Reads the index file; `Ok(false)` when it holds no record. The last record is
/// checked against the data file, and data past it (written but never indexed, so
/// never acknowledged) is cut off so that appends continue right after it.
fn read_index_file(
    sh: &Shared,
    slice: &mut Slice,
    dat: &mut dyn FsFile,
    idx: &mut dyn FsFile,
) -> Result<bool, String> {
    let mut last = None;
    let mut cut = None;
    {
        let mut r = SeqReader::new(idx, 4).map_err(|e| reason(&e))?;
        loop {
            let offset = r.offset();
            let rem = r.remaining();
            if rem == 0 {
                break;
            }
            if rem < INDEX_LEN as u64 {
                return Err("unexpected EOF".into());
            }
            let raw = r.take(INDEX_LEN).map_err(|e| reason(&e))?;
            match IndexRec::decode(raw, sh.verify_crc())? {
                None => {
                    cut = Some(offset);
                    break;
                }
                Some(rec) => {
                    count(slice, rec.seq, u64::from(rec.size), rec.timestamp)?;
                    last = Some(rec);
                }
            }
        }
    }
    if let Some(offset) = cut {
        idx.truncate(offset).map_err(|e| reason(&e))?;
    }
    let Some(last) = last else {
        return Ok(false);
    };
    if let Err(e) = verify_last(sh, &slice.dat_path, dat, &last) {
        sh.log(Level::Error, &e);
        return Err(e);
    }
    let end = last.offset + HEADER_LEN as u64 + u64::from(last.size);
    index_tail(sh, slice, dat, idx, end, last.seq)?;
    Ok(true)
}

/// Data past the last index record was written by a flush that did not complete, so
/// it was never acknowledged. Complete, valid records that continue the sequence are
/// indexed (as a rebuild from the data file would find them); anything after them is
/// a torn write and is cut off, so that new records follow valid ones and a later
/// rebuild of the index reads the whole file.
fn index_tail(
    sh: &Shared,
    slice: &mut Slice,
    dat: &mut dyn FsFile,
    idx: &mut dyn FsFile,
    end: u64,
    last_seq: u64,
) -> Result<(), String> {
    let len = dat.size().map_err(|e| reason(&e))?;
    if len <= end {
        return Ok(());
    }
    let mut raw = Vec::new();
    let mut next = last_seq.checked_add(1);
    let mut valid_end = end;
    {
        let mut r = SeqReader::new(dat, end).map_err(|e| reason(&e))?;
        loop {
            let offset = r.offset();
            let Ok(Rec::Record { payload, .. }) = next_record(&mut r, false, Some(&sh.crc)) else {
                break;
            };
            let size = payload.len() as u32;
            match proto::decode_msg_meta(payload) {
                Ok((seq, timestamp)) if Some(seq) == next => {
                    count(slice, seq, u64::from(size), timestamp)?;
                    raw.extend_from_slice(
                        &IndexRec {
                            seq,
                            offset,
                            timestamp,
                            size,
                        }
                        .encode(&sh.crc),
                    );
                    next = seq.checked_add(1);
                    valid_end = r.offset();
                }
                _ => break,
            }
        }
    }
    if !raw.is_empty() {
        idx.append(&raw).map_err(|e| reason(&e))?;
    }
    if valid_end < len {
        dat.truncate(valid_end).map_err(|e| reason(&e))?;
        sh.log(
            Level::Warn,
            &format!(
                "File {}: removed {} bytes of an incomplete write after offset {valid_end}",
                q(&slice.dat_path),
                len - valid_end
            ),
        );
    }
    Ok(())
}

/// The data file must hold, at the last index record's offset, a valid record of that
/// message (CRC always checked).
fn verify_last(
    sh: &Shared,
    dat_path: &Path,
    dat: &dyn FsFile,
    last: &IndexRec,
) -> Result<(), String> {
    let prefix = format!(
        "Verification of last message for file {} failed",
        q(dat_path)
    );
    let total = HEADER_LEN + last.size as usize;
    let read_err = |e: &str| format!("{prefix}: unable to read last record: {e}");
    // The size comes from the index: read no more than the file holds.
    let available = dat
        .size()
        .map_err(|e| read_err(&reason(&e)))?
        .saturating_sub(last.offset);
    let mut buf = vec![0u8; (total as u64).min(available) as usize];
    let got = dat
        .read_at(&mut buf, last.offset)
        .map_err(|e| read_err(&reason(&e)))?;
    if got < HEADER_LEN {
        return Err(read_err(if got == 0 { "EOF" } else { "unexpected EOF" }));
    }
    let word = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if word == 0 && stored == 0 {
        return Err(read_err(ZERO_PADDED));
    }
    if word != last.size {
        return Err(read_err(&format!(
            "expected record size to be {} bytes, got {word} bytes",
            last.size
        )));
    }
    if got < total {
        return Err(read_err(if got == HEADER_LEN {
            "EOF"
        } else {
            "unexpected EOF"
        }));
    }
    let computed = sh.crc.checksum(&buf[HEADER_LEN..]);
    if computed != stored {
        return Err(read_err(&crc_mismatch(stored, computed)));
    }
    let (seq, _) = proto::decode_msg_meta(&buf[HEADER_LEN..])
        .map_err(|e| format!("{prefix}: error decoding message: {e}"))?;
    if seq != last.seq {
        return Err(format!(
            "{prefix}: last message sequence in index is {}, data file is {seq}",
            last.seq
        ));
    }
    Ok(())
}

/// Scans the data file and writes an index record per message.
fn rebuild_index(
    sh: &Shared,
    slice: &mut Slice,
    dat: &mut dyn FsFile,
    idx: &mut dyn FsFile,
) -> Result<(), String> {
    let mut raw = Vec::new();
    let mut cut = None;
    {
        let mut r = SeqReader::new(dat, 4).map_err(|e| reason(&e))?;
        loop {
            let offset = r.offset();
            match next_record(&mut r, false, sh.verify_crc()) {
                Ok(Rec::Eof) => break,
                Ok(Rec::Zero) => {
                    cut = Some((offset, None));
                    break;
                }
                Err(e) => {
                    cut = Some((offset, Some(e)));
                    break;
                }
                Ok(Rec::Record { payload, .. }) => {
                    let (seq, timestamp) = proto::decode_msg_meta(payload).map_err(|e| e.0)?;
                    let size = payload.len() as u32;
                    count(slice, seq, u64::from(size), timestamp)?;
                    let rec = IndexRec {
                        seq,
                        offset,
                        timestamp,
                        size,
                    };
                    raw.extend_from_slice(&rec.encode(&sh.crc));
                    if raw.len() >= INDEX_LEN * 1000 {
                        idx.append(&raw).map_err(|e| reason(&e))?;
                        raw.clear();
                    }
                }
            }
        }
    }
    match cut {
        None => {}
        Some((offset, None)) => dat.truncate(offset).map_err(|e| reason(&e))?,
        Some((offset, Some(e))) => bad_record(sh, dat, &slice.dat_path, offset, false, &e)?,
    }
    idx.append(&raw).map_err(|e| reason(&e))?;
    idx.sync().map_err(|e| reason(&e))?;
    Ok(())
}

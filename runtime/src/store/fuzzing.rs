//! The fuzz entry point over FILE store recovery. The input describes a data directory
//! in memory: for each of its files whether it is absent, well formed, well formed then
//! damaged, or arbitrary bytes, and what the well-formed files hold. The store opens
//! and recovers it (with and without `--file_truncate_bad_eof`); whatever it accepts
//! must read back, take new writes, and recover again after a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stan_core::store::{MsgsState, Recovered, Store};
use stan_core::streaming::pb::{encode, ClientInfo, MsgProto, ServerInfo, SubState};
use stan_core::streaming::wire;

use super::crc::{Crc, IEEE};
use super::fs::Fs;
use super::memfs::MemFs;
use super::msgs::{IndexRec, INDEX_LEN};
use super::options::FileStoreOptions;
use super::proto;
use super::record::{push_record, FILE_VERSION};
use super::FileStore;

const ROOT: &str = "/data";

/// Reads the input front to back; past its end every read is zero.
struct Src<'a>(&'a [u8]);

impl Src<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// True about once in `n` reads.
    fn one_in(&mut self, n: u8) -> bool {
        self.byte().is_multiple_of(n)
    }

    /// A number below `max`.
    fn below(&mut self, max: u8) -> usize {
        usize::from(self.byte() % max)
    }
}

/// What the input makes of one file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Valid,
    Damaged,
    Raw,
    Absent,
}

/// The files of the directory, in the order their modes are read.
const FILES: [&str; 10] = [
    "server.dat",
    "clients.dat",
    "foo/subs.dat",
    "foo/msgs.1.dat",
    "foo/msgs.1.idx",
    "foo/msgs.2.dat",
    "foo/msgs.2.idx",
    "bar/subs.dat",
    "bar/msgs.1.dat",
    "bar/msgs.1.idx",
];

/// One more entry, sometimes: names that recovery must refuse or skip.
const EXTRAS: [&str; 6] = [
    "foo/msgs.x.dat",
    "foo/msgs.0.dat",
    "foo/msgs.-1.dat",
    "foo/msgs.9223372036854775807.dat",
    "foo/msgs.3.idx",
    "empty/",
];

/// A `.dat` file as records (type, payload), framed and checksummed when written out.
struct Records {
    typed: bool,
    records: Vec<(u8, Vec<u8>)>,
}

impl Records {
    fn new(typed: bool) -> Records {
        Records {
            typed,
            records: Vec::new(),
        }
    }

    fn push(&mut self, rtype: u8, payload: Vec<u8>) {
        self.records.push((rtype, payload));
    }

    /// Damage that keeps every checksum valid: a changed payload byte or record type.
    fn reseal(&mut self, src: &mut Src) {
        let n = self.records.len();
        if n == 0 {
            return;
        }
        let (rtype, payload) = &mut self.records[src.below(255) % n];
        if self.typed && src.one_in(2) {
            *rtype = src.byte();
        } else if !payload.is_empty() {
            let i = src.below(255) % payload.len();
            payload[i] ^= src.byte().max(1);
        } else {
            payload.push(src.byte());
        }
    }

    fn write(&self, crc: &Crc) -> Vec<u8> {
        let mut out = FILE_VERSION.to_le_bytes().to_vec();
        for (rtype, payload) in &self.records {
            let rtype = if self.typed { *rtype } else { 0 };
            let _ = push_record(&mut out, crc, rtype, |o| o.extend_from_slice(payload));
        }
        out
    }
}

/// A message slice: its data file and index, kept consistent until damaged.
struct Slice {
    dat: Records,
    index: Vec<IndexRec>,
}

impl Slice {
    fn new(channel: &str, first: u64, count: usize, src: &mut Src) -> Slice {
        let mut dat = Records::new(false);
        let mut index = Vec::new();
        let mut offset = 4u64;
        for i in 0..count as u64 {
            let seq = first + i;
            let timestamp = 1_700_000_000_000_000_000 + seq as i64;
            let len = src.below(24);
            let data = src.bytes(len);
            let mut payload = Vec::new();
            wire::encode_msg(&mut payload, seq, channel, "", &data, timestamp, false, 0);
            index.push(IndexRec {
                seq,
                offset,
                timestamp,
                size: payload.len() as u32,
            });
            offset += 8 + payload.len() as u64;
            dat.push(0, payload);
        }
        Slice { dat, index }
    }

    /// Damage to the index that keeps its checksums valid: any field of one record.
    fn reseal_index(&mut self, src: &mut Src) {
        let n = self.index.len();
        if n == 0 {
            return;
        }
        let rec = &mut self.index[src.below(255) % n];
        let value = src.u64();
        match src.byte() % 4 {
            0 => rec.seq = value,
            1 => rec.offset = value,
            2 => rec.timestamp = value as i64,
            _ => rec.size = value as u32,
        }
    }

    fn write_index(&self, crc: &Crc) -> Vec<u8> {
        let mut out = FILE_VERSION.to_le_bytes().to_vec();
        for rec in &self.index {
            out.extend_from_slice(&rec.encode(crc));
        }
        debug_assert_eq!((out.len() - 4) % INDEX_LEN, 0);
        out
    }
}

fn server_file(src: &mut Src) -> Records {
    let cid = ["test-cluster", "", "other"][src.below(3)];
    let info = ServerInfo {
        cluster_id: cid.into(),
        discovery: format!("_STAN.discover.{cid}"),
        publish: format!("_STAN.pub.{cid}"),
        subscribe: format!("_STAN.sub.{cid}"),
        unsubscribe: format!("_STAN.unsub.{cid}"),
        close: format!("_STAN.close.{cid}"),
        sub_close: format!("_STAN.subclose.{cid}"),
        ..ServerInfo::default()
    };
    let mut r = Records::new(false);
    r.push(0, encode(&info));
    r
}

/// Client additions (type 1) and deletions (type 2), STORES §1.5.
fn clients_file(src: &mut Src) -> Records {
    let mut r = Records::new(true);
    for _ in 0..src.below(6) {
        let id = format!("c{}", src.below(4));
        if src.one_in(3) {
            let mut payload = Vec::new();
            proto::encode_client_delete(&mut payload, &id);
            r.push(2, payload);
        } else {
            let info = ClientInfo {
                hb_inbox: format!("_INBOX.{id}"),
                id,
                protocol: 1,
                ping_interval: i32::from(src.byte()),
                ping_max_out: 3,
                ..ClientInfo::default()
            };
            r.push(1, encode(&info));
        }
    }
    r
}

/// Subscription records (STORES §1.6): 1 new, 2 update, 3 delete, 4 ack, 5 delivered.
fn subs_file(src: &mut Src) -> Records {
    let mut r = Records::new(true);
    for _ in 0..src.below(10) {
        let id = src.below(5) as u64;
        let rtype = 1 + src.below(5) as u8;
        let payload = match rtype {
            1 | 2 => {
                let durable = src.one_in(2);
                encode(&SubState {
                    id,
                    client_id: format!("c{}", src.below(4)),
                    q_group: if src.one_in(3) {
                        "q".into()
                    } else {
                        String::new()
                    },
                    inbox: format!("_INBOX.{id}"),
                    ack_inbox: format!("_STAN.ack.{id}"),
                    max_in_flight: i32::from(src.byte()),
                    ack_wait_in_secs: 30,
                    durable_name: if durable { "dur".into() } else { String::new() },
                    last_sent: src.below(16) as u64,
                    is_durable: durable,
                    is_closed: src.one_in(4),
                })
            }
            3 => {
                let mut p = Vec::new();
                proto::encode_ids(&mut p, id, None);
                p
            }
            _ => {
                let mut p = Vec::new();
                proto::encode_ids(&mut p, id, Some(src.below(16) as u64));
                p
            }
        };
        r.push(rtype, payload);
    }
    r
}

/// Byte-level damage: flipped bytes, a cut, appended bytes.
fn damage_bytes(mut bytes: Vec<u8>, src: &mut Src) -> Vec<u8> {
    match src.byte() % 4 {
        0 if !bytes.is_empty() => {
            let i = (src.byte() as usize * 257 + src.byte() as usize) % bytes.len();
            bytes[i] ^= src.byte().max(1);
        }
        1 => {
            let cut = (src.byte() as usize * 257 + src.byte() as usize) % (bytes.len() + 1);
            bytes.truncate(cut);
        }
        2 => {
            let n = src.below(40);
            bytes.extend(src.bytes(n));
        }
        _ => {
            // Zeros, as left by a crash on some file systems.
            let n = src.below(64);
            bytes.resize(bytes.len() + n, 0);
        }
    }
    bytes
}

/// The data directory the input describes, and the options to open it with.
fn build(data: &[u8]) -> (MemFs, FileStoreOptions) {
    let mut src = Src(data);
    let flags = src.byte();
    let mut opts = FileStoreOptions {
        crc: flags & 1 == 0,
        buffer_size: if flags & 2 == 0 { 2 * 1024 * 1024 } else { 0 },
        read_buffer_size: if flags & 4 == 0 { 2 * 1024 * 1024 } else { 0 },
        slice_max_msgs: if flags & 8 == 0 { 0 } else { 2 },
        sync: false,
        auto_sync: Duration::ZERO,
        ..FileStoreOptions::default()
    };
    if flags & 16 != 0 {
        opts.compact_min_size = 0;
        opts.compact_interval = 1;
    }
    let crc = Crc::new(IEEE);
    let mode_bits = u32::from_le_bytes([src.byte(), src.byte(), src.byte(), 0]);
    let mode = |i: usize| match (mode_bits >> (2 * i)) & 3 {
        0 => Mode::Valid,
        1 => Mode::Damaged,
        2 => Mode::Raw,
        _ => Mode::Absent,
    };
    let extra = src.byte();
    let fs = MemFs::new();
    fs.create_dir_all(Path::new(ROOT)).expect("memory");
    let foo_first = 1 + src.below(4) as u64;
    let foo1 = src.below(6);
    let foo2 = src.below(6);
    let bar1 = src.below(6);
    let mut slices = [
        Slice::new("foo", foo_first, foo1, &mut src),
        Slice::new("foo", foo_first + foo1 as u64, foo2, &mut src),
        Slice::new("bar", 1, bar1, &mut src),
    ];
    for (i, name) in FILES.iter().enumerate() {
        let mode = mode(i);
        let mut records = match i {
            0 => Some(server_file(&mut src)),
            1 => Some(clients_file(&mut src)),
            2 | 7 => Some(subs_file(&mut src)),
            _ => None,
        };
        let slice = match i {
            3 | 4 => Some(0),
            5 | 6 => Some(1),
            8 | 9 => Some(2),
            _ => None,
        };
        let is_index = name.ends_with(".idx");
        if mode == Mode::Damaged && src.one_in(2) {
            match (&mut records, slice) {
                (Some(r), _) => r.reseal(&mut src),
                (None, Some(s)) if is_index => slices[s].reseal_index(&mut src),
                (None, Some(s)) => slices[s].dat.reseal(&mut src),
                _ => {}
            }
        }
        let mut bytes = match (&records, slice) {
            (Some(r), _) => r.write(&crc),
            (None, Some(s)) if is_index => slices[s].write_index(&crc),
            (None, Some(s)) => slices[s].dat.write(&crc),
            _ => Vec::new(),
        };
        match mode {
            Mode::Valid => {}
            Mode::Damaged => bytes = damage_bytes(bytes, &mut src),
            Mode::Raw => {
                let n = src.below(255);
                bytes = src.bytes(n);
            }
            Mode::Absent => {
                // The channel's directory stays, as it would without the file.
                if let Some(dir) = Path::new(name).parent() {
                    let _ = fs.create_dir_all(&Path::new(ROOT).join(dir));
                }
                continue;
            }
        }
        fs.write_file(Path::new(ROOT).join(name), &bytes);
    }
    if let Some(name) = EXTRAS.get(usize::from(extra)) {
        let path = Path::new(ROOT).join(name);
        if name.ends_with('/') {
            let _ = fs.create_dir_all(&path);
        } else {
            fs.write_file(path, &FILE_VERSION.to_le_bytes());
        }
    }
    (fs, opts)
}

fn open(fs: &MemFs, opts: FileStoreOptions) -> Option<FileStore> {
    let mut store = FileStore::open_with(Arc::new(fs.clone()), ROOT, opts).ok()?;
    store.set_clock(Arc::new(|| Duration::from_secs(3600)));
    Some(store)
}

/// Recovers the directory `data` describes, with and without
/// `--file_truncate_bad_eof`, and checks what is recovered.
pub fn file_store_recovery(data: &[u8]) {
    let (fs, opts) = build(data);
    for truncate_bad_eof in [false, true] {
        let fs = fs.snapshot();
        let opts = FileStoreOptions {
            truncate_bad_eof,
            ..opts.clone()
        };
        let Some(mut store) = open(&fs, opts.clone()) else {
            continue;
        };
        let Ok(recovered) = store.recover() else {
            continue;
        };
        check_recovered(&fs, opts, store, &recovered);
    }
}

/// Everything recovered reads back; the store takes new messages and subscription
/// records; a restart recovers them.
fn check_recovered(fs: &MemFs, opts: FileStoreOptions, mut store: FileStore, rec: &Recovered) {
    for ch in &rec.channels {
        assert_eq!(store.msgs_state(&ch.name), ch.msgs, "{}", ch.name);
        let MsgsState {
            count, first, last, ..
        } = ch.msgs;
        if count > 0 {
            assert!(
                first <= last && count <= last - first + 1,
                "{}: inconsistent {:?}",
                ch.name,
                ch.msgs
            );
        }
        for seq in first..=last.min(first.saturating_add(64)) {
            let _ = store.lookup(&ch.name, seq);
            let _ = store.timestamp(&ch.name, seq);
        }
    }
    let Some(ch) = rec.channels.first() else {
        return;
    };
    let Some(seq) = ch.msgs.last.checked_add(1) else {
        return;
    };
    let msg = MsgProto {
        sequence: seq,
        subject: ch.name.clone(),
        data: b"appended".to_vec(),
        timestamp: 1_800_000_000_000_000_000,
        ..MsgProto::default()
    };
    if store.store_msg(&ch.name, &msg).is_err() {
        return;
    }
    for sub in &ch.subs {
        let _ = store.add_pending(&ch.name, sub.state.id, seq);
        let _ = store.ack_pending(&ch.name, sub.state.id, seq);
    }
    if store.flush().is_err() {
        return;
    }
    let state = store.msgs_state(&ch.name);
    assert_eq!(state.last, seq);
    if store.close().is_err() {
        return;
    }
    drop(store);
    let reopened = FileStoreOptions {
        truncate_bad_eof: false,
        ..opts
    };
    let mut store = open(fs, reopened).expect("the store opens again");
    let again = match store.recover() {
        Ok(r) => r,
        Err(e) => panic!("a store that recovered and took writes does not recover again: {e}"),
    };
    let ch2 = again
        .channels
        .iter()
        .find(|c| c.name == ch.name)
        .expect("the channel is still there");
    assert_eq!(ch2.msgs, state, "{}: state after a restart", ch.name);
    assert_eq!(
        again.server_info, rec.server_info,
        "server info after a restart"
    );
    assert_eq!(again.clients, rec.clients, "clients after a restart");
    // Each subscription was sent the new message and acked it. A compaction raises
    // `last_sent` to the highest pending sequence (STORES §1.6), which an update
    // record may have left below it.
    assert_eq!(
        ch2.subs.len(),
        ch.subs.len(),
        "{}: subscriptions after a restart",
        ch.name
    );
    for (after, before) in ch2.subs.iter().zip(&ch.subs) {
        let sent = before.state.last_sent.max(seq);
        let highest = before.pending.iter().copied().fold(sent, u64::max);
        assert!(
            (sent..=highest).contains(&after.state.last_sent),
            "{}: subscription {} sent up to {} after a restart, was {}",
            ch.name,
            before.state.id,
            after.state.last_sent,
            before.state.last_sent
        );
        let mut expected = before.clone();
        expected.state.last_sent = after.state.last_sent;
        expected.pending.retain(|&p| p != seq);
        assert_eq!(
            after, &expected,
            "{}: subscription after a restart",
            ch.name
        );
    }
    match store.lookup(&ch.name, seq) {
        Ok(Some(m)) => assert_eq!(m, msg, "the appended message reads back"),
        other => panic!("the appended message does not read back: {other:?}"),
    }
}

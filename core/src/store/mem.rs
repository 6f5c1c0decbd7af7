//! The MEMORY store (shared/spec/STORES.md §2): nothing survives a restart, so all
//! that matters is that it answers quickly and stays small.
//!
//! A channel may hold millions of messages, so a message is not kept as a `MsgProto`
//! (two heap blocks and ~100 bytes of struct per message). Its timestamp, reply and
//! payload are appended as one record to a byte chunk shared with its neighbours, and
//! a dense index of 8-byte locations, positioned by `seq - first`, finds it again.
//! The subject is the channel name, so it is not stored at all.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{MsgsState, Recovered, RecoveredSub, Result, Store, StoreError};
use crate::streaming::pb::{ClientInfo, MsgProto, ServerInfo, SubState};

/// Largest shared chunk. Big enough that a busy channel makes few allocations, small
/// enough that removing old messages soon gives a whole chunk back.
const CHUNK_SIZE: usize = 256 * 1024;
/// Capacity a channel's first chunk starts from: most channels hold a handful of
/// messages, and a full chunk for each of them would dwarf what they store.
const MIN_CHUNK_CAPACITY: usize = 1024;
/// Bytes of the fixed record header (the timestamp) before the two length varints.
const TIMESTAMP_LEN: usize = 8;

/// The in-process store: messages, subscriptions and clients live until the process
/// exits or the channel is deleted.
pub struct MemStore {
    server_info: Option<ServerInfo>,
    clients: BTreeMap<String, ClientInfo>,
    channels: BTreeMap<String, Channel>,
    chunk_size: usize,
}

struct Channel {
    log: MsgLog,
    subs: BTreeMap<u64, SubRecord>,
}

struct SubRecord {
    state: SubState,
    pending: BTreeSet<u64>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::with_chunk_size(CHUNK_SIZE)
    }

    fn with_chunk_size(chunk_size: usize) -> Self {
        // Shared-chunk offsets are stored as u32.
        debug_assert!((8..=u32::MAX as usize).contains(&chunk_size));
        MemStore {
            server_info: None,
            clients: BTreeMap::new(),
            channels: BTreeMap::new(),
            chunk_size,
        }
    }

    /// The channel's subscriptions with their pending sequences, by id; empty for an
    /// unknown channel.
    pub fn subs(&self, channel: &str) -> Vec<RecoveredSub> {
        let Some(ch) = self.channels.get(channel) else {
            return Vec::new();
        };
        ch.subs
            .values()
            .map(|sub| RecoveredSub {
                state: sub.state.clone(),
                pending: sub.pending.iter().copied().collect(),
            })
            .collect()
    }

    /// The stored clients, by id.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.clients.values().cloned().collect()
    }

    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.server_info.as_ref()
    }

    fn channel_mut(&mut self, name: &str) -> Result<&mut Channel> {
        self.channels
            .get_mut(name)
            .ok_or_else(|| StoreError(format!("channel {name:?} does not exist")))
    }

    fn sub_mut(&mut self, channel: &str, sub_id: u64) -> Result<&mut SubRecord> {
        self.channel_mut(channel)?
            .subs
            .get_mut(&sub_id)
            .ok_or_else(|| {
                StoreError(format!(
                    "channel {channel:?}: subscription {sub_id} does not exist"
                ))
            })
    }

    #[cfg(test)]
    fn log(&self, channel: &str) -> &MsgLog {
        &self.channels[channel].log
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Store for MemStore {
    fn kind(&self) -> &'static str {
        "MEMORY"
    }

    fn recover(&mut self) -> Result<Recovered> {
        Ok(Recovered::default())
    }

    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()> {
        self.server_info = Some(info.clone());
        Ok(())
    }

    fn add_client(&mut self, info: &ClientInfo) -> Result<()> {
        self.clients.insert(info.id.clone(), info.clone());
        Ok(())
    }

    fn delete_client(&mut self, client_id: &str) -> Result<()> {
        self.clients.remove(client_id);
        Ok(())
    }

    fn create_channel(&mut self, name: &str) -> Result<()> {
        if self.channels.contains_key(name) {
            return Err(StoreError(format!("channel {name:?} already exists")));
        }
        let channel = Channel {
            log: MsgLog::new(name.len(), self.chunk_size),
            subs: BTreeMap::new(),
        };
        self.channels.insert(name.to_owned(), channel);
        Ok(())
    }

    fn delete_channel(&mut self, name: &str) -> Result<()> {
        match self.channels.remove(name) {
            Some(_) => Ok(()),
            None => Err(StoreError(format!("channel {name:?} does not exist"))),
        }
    }

    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64> {
        let log = &mut self.channel_mut(channel)?.log;
        let expected = log.last.checked_add(1);
        if Some(msg.sequence) != expected {
            return Err(StoreError(format!(
                "channel {channel:?}: expected sequence {}, got {}",
                log.last.wrapping_add(1),
                msg.sequence
            )));
        }
        // The subject is rebuilt from the channel name on lookup, so any other value
        // would be silently lost.
        if msg.subject != channel {
            return Err(StoreError(format!(
                "channel {channel:?}: message subject {:?} is not the channel name",
                msg.subject
            )));
        }
        Ok(log.append(msg.timestamp, msg.reply.as_bytes(), &msg.data))
    }

    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>> {
        let log = &self.channel_mut(channel)?.log;
        Ok(log.record(seq).map(|rec| MsgProto {
            sequence: seq,
            subject: channel.to_owned(),
            // Stored from a `String`, so always valid UTF-8 and copied once.
            reply: String::from_utf8_lossy(rec.reply).into_owned(),
            data: rec.data.to_vec(),
            timestamp: rec.timestamp,
            ..MsgProto::default()
        }))
    }

    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>> {
        let log = &self.channel_mut(channel)?.log;
        Ok(log.loc(seq).map(|loc| log.timestamp_at(loc)))
    }

    fn msgs_state(&self, channel: &str) -> MsgsState {
        self.channels
            .get(channel)
            .map(|ch| ch.log.state())
            .unwrap_or_default()
    }

    fn remove_oldest(&mut self, channel: &str) -> Result<()> {
        let log = &mut self.channel_mut(channel)?.log;
        if !log.remove_oldest() {
            return Err(StoreError(format!(
                "channel {channel:?}: no message to remove"
            )));
        }
        Ok(())
    }

    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        let subs = &mut self.channel_mut(channel)?.subs;
        if subs.contains_key(&state.id) {
            return Err(StoreError(format!(
                "channel {channel:?}: subscription {} already exists",
                state.id
            )));
        }
        let sub = SubRecord {
            state: state.clone(),
            pending: BTreeSet::new(),
        };
        subs.insert(state.id, sub);
        Ok(())
    }

    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        self.sub_mut(channel, state.id)?.state = state.clone();
        Ok(())
    }

    /// Deleting a subscription that is already gone succeeds: the outcome asked for
    /// holds either way.
    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> Result<()> {
        self.channel_mut(channel)?.subs.remove(&sub_id);
        Ok(())
    }

    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        self.sub_mut(channel, sub_id)?.pending.insert(seq);
        Ok(())
    }

    /// An ack for a sequence not pending succeeds: clients may ack twice, and a
    /// redelivered message can be acked after its first ack was recorded.
    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        self.sub_mut(channel, sub_id)?.pending.remove(&seq);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Where one message's record starts.
#[derive(Clone, Copy)]
struct Loc {
    chunk: u32,
    offset: u32,
}

struct Chunk {
    /// Records `[timestamp i64 LE][reply len varint][data len varint][reply][data]`;
    /// emptied without reallocation once `live` drops to zero.
    buf: Vec<u8>,
    /// Records still referenced from the index.
    live: u32,
}

struct Record<'a> {
    timestamp: i64,
    reply: &'a [u8],
    data: &'a [u8],
}

/// One channel's messages.
struct MsgLog {
    /// Chunks in opening order. A dedicated chunk can empty while an older shared one
    /// still holds records; it then stays as an empty `Vec` until the front reaches it.
    chunks: VecDeque<Chunk>,
    /// Id of `chunks[0]`; ids count up (wrapping) as chunks are opened.
    base: u32,
    /// The chunk small records are appended to; records too large to share a chunk
    /// get a dedicated one so that they never strand the rest of a shared chunk.
    open: Option<u32>,
    /// Location of every stored message, oldest first.
    index: VecDeque<Loc>,
    last: u64,
    bytes: u64,
    subject_len: usize,
    chunk_size: usize,
}

impl MsgLog {
    fn new(subject_len: usize, chunk_size: usize) -> Self {
        MsgLog {
            chunks: VecDeque::new(),
            base: 0,
            open: None,
            index: VecDeque::new(),
            last: 0,
            bytes: 0,
            subject_len,
            chunk_size,
        }
    }

    fn state(&self) -> MsgsState {
        let count = self.index.len() as u64;
        MsgsState {
            count,
            bytes: self.bytes,
            first: if self.last == 0 {
                0
            } else {
                self.last + 1 - count
            },
            last: self.last,
        }
    }

    /// Appends the message numbered `last + 1` and returns its byte count.
    fn append(&mut self, timestamp: i64, reply: &[u8], data: &[u8]) -> u64 {
        let rec_len = TIMESTAMP_LEN
            + varint_len(reply.len() as u64)
            + varint_len(data.len() as u64)
            + reply.len()
            + data.len();
        let id = if rec_len > self.chunk_size / 8 {
            self.push_chunk(rec_len)
        } else {
            self.open_chunk_for(rec_len)
        };
        let chunk = self.chunk_mut(id);
        let offset = chunk.buf.len() as u32;
        chunk.buf.extend_from_slice(&timestamp.to_le_bytes());
        put_varint(&mut chunk.buf, reply.len() as u64);
        put_varint(&mut chunk.buf, data.len() as u64);
        chunk.buf.extend_from_slice(reply);
        chunk.buf.extend_from_slice(data);
        chunk.live += 1;
        self.index.push_back(Loc { chunk: id, offset });
        self.last += 1;
        let size = stored_len(
            self.last,
            self.subject_len,
            reply.len(),
            data.len(),
            timestamp,
        );
        self.bytes += size;
        size
    }

    /// The open chunk, grown or replaced so that `rec_len` more bytes fit.
    fn open_chunk_for(&mut self, rec_len: usize) -> u32 {
        let chunk_size = self.chunk_size;
        let Some(id) = self.open else {
            let id = self.push_chunk(MIN_CHUNK_CAPACITY.max(rec_len).min(chunk_size));
            self.open = Some(id);
            return id;
        };
        let buf = &mut self.chunk_mut(id).buf;
        let len = buf.len();
        if len + rec_len > chunk_size {
            // The channel filled a whole chunk, so it is busy: skip the doubling.
            let id = self.push_chunk(chunk_size);
            self.open = Some(id);
            return id;
        }
        if buf.capacity() - len < rec_len {
            // Doubling by hand because `Vec` growth would overshoot the chunk size.
            let cap = (buf.capacity() * 2).max(len + rec_len).min(chunk_size);
            buf.reserve_exact(cap - len);
        }
        id
    }

    fn push_chunk(&mut self, capacity: usize) -> u32 {
        let id = self.base.wrapping_add(self.chunks.len() as u32);
        self.chunks.push_back(Chunk {
            buf: Vec::with_capacity(capacity),
            live: 0,
        });
        id
    }

    fn chunk_mut(&mut self, id: u32) -> &mut Chunk {
        &mut self.chunks[id.wrapping_sub(self.base) as usize]
    }

    fn loc(&self, seq: u64) -> Option<Loc> {
        let first = self.last + 1 - self.index.len() as u64;
        let pos = seq.checked_sub(first)?;
        self.index.get(usize::try_from(pos).ok()?).copied()
    }

    fn bytes_at(&self, loc: Loc) -> &[u8] {
        let chunk = &self.chunks[loc.chunk.wrapping_sub(self.base) as usize];
        &chunk.buf[loc.offset as usize..]
    }

    fn timestamp_at(&self, loc: Loc) -> i64 {
        let mut ts = [0; TIMESTAMP_LEN];
        ts.copy_from_slice(&self.bytes_at(loc)[..TIMESTAMP_LEN]);
        i64::from_le_bytes(ts)
    }

    fn record_at(&self, loc: Loc) -> Record<'_> {
        let buf = self.bytes_at(loc);
        let mut ts = [0; TIMESTAMP_LEN];
        ts.copy_from_slice(&buf[..TIMESTAMP_LEN]);
        let rest = &buf[TIMESTAMP_LEN..];
        let (reply_len, rest) = take_varint(rest);
        let (data_len, rest) = take_varint(rest);
        let (reply, rest) = rest.split_at(reply_len as usize);
        Record {
            timestamp: i64::from_le_bytes(ts),
            reply,
            data: &rest[..data_len as usize],
        }
    }

    fn record(&self, seq: u64) -> Option<Record<'_>> {
        self.loc(seq).map(|loc| self.record_at(loc))
    }

    /// Drops the oldest message; false if there is none.
    fn remove_oldest(&mut self) -> bool {
        let first = self.last + 1 - self.index.len() as u64;
        let Some(loc) = self.index.front().copied() else {
            return false;
        };
        let rec = self.record_at(loc);
        self.bytes -= stored_len(
            first,
            self.subject_len,
            rec.reply.len(),
            rec.data.len(),
            rec.timestamp,
        );
        self.index.pop_front();
        if self.index.is_empty() {
            // An idle channel should not keep a chunk or a large index alive.
            self.chunks = VecDeque::new();
            self.open = None;
            self.index = VecDeque::new();
            return true;
        }
        let is_open = self.open == Some(loc.chunk);
        let chunk = self.chunk_mut(loc.chunk);
        chunk.live -= 1;
        if chunk.live == 0 {
            if is_open {
                chunk.buf.clear();
            } else {
                chunk.buf = Vec::new();
            }
        }
        while let Some(front) = self.chunks.front() {
            if front.live != 0 || self.open == Some(self.base) {
                break;
            }
            self.chunks.pop_front();
            self.base = self.base.wrapping_add(1);
        }
        // Give back index space after a large backlog drained; shrinking only at a
        // quarter keeps the copy amortised.
        if self.index.capacity() > 1024 && self.index.len() < self.index.capacity() / 4 {
            self.index.shrink_to(self.index.len() * 2);
        }
        true
    }

    #[cfg(test)]
    fn chunks_held(&self) -> usize {
        self.chunks.iter().filter(|c| c.buf.capacity() > 0).count()
    }

    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let chunks: usize = self.chunks.iter().map(|c| c.buf.capacity()).sum();
        chunks
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.index.capacity() * std::mem::size_of::<Loc>()
    }
}

/// Protobuf-encoded size of the `MsgProto` that `lookup` rebuilds (proto3 omits
/// default-valued fields; every field number is below 16, so each key is one byte).
fn stored_len(seq: u64, subject_len: usize, reply_len: usize, data_len: usize, ts: i64) -> u64 {
    let scalar = |v: u64| if v == 0 { 0 } else { 1 + varint_len(v) };
    let delimited = |n: usize| {
        if n == 0 {
            0
        } else {
            1 + varint_len(n as u64) + n
        }
    };
    (scalar(seq)
        + delimited(subject_len)
        + delimited(reply_len)
        + delimited(data_len)
        + scalar(ts as u64)) as u64
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a varint this module wrote.
fn take_varint(buf: &[u8]) -> (u64, &[u8]) {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (v, &buf[i + 1..]);
        }
    }
    unreachable!("record length varint runs past its chunk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn msg(seq: u64, reply: &str, data: Vec<u8>, timestamp: i64) -> MsgProto {
        MsgProto {
            sequence: seq,
            subject: "foo".into(),
            reply: reply.into(),
            data,
            timestamp,
            ..MsgProto::default()
        }
    }

    #[test]
    fn varints_match_protobuf() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(take_varint(&[0, 9]), (0, &[9][..]));
        for v in [1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
            let proto = MsgProto {
                sequence: v,
                ..MsgProto::default()
            };
            assert_eq!(buf.len(), proto.encoded_len() - 1, "{v}");
            buf.push(0xaa);
            assert_eq!(take_varint(&buf), (v, &[0xaa][..]));
        }
    }

    #[test]
    fn stored_len_matches_encoded_len() {
        for ts in [0, 1, -1, 1_700_000_000_000_000_000, i64::MIN] {
            for (seq, reply, len) in [(1, "", 0), (300, "r", 1), (u64::MAX, "_INBOX.x", 200_000)] {
                let m = msg(seq, reply, vec![7; len], ts);
                assert_eq!(
                    stored_len(seq, 3, reply.len(), len, ts),
                    m.encoded_len() as u64
                );
            }
        }
    }

    #[test]
    fn removing_old_messages_frees_chunks() {
        let mut store = MemStore::new();
        store.create_channel("foo").unwrap();
        for seq in 1..=20_000 {
            store
                .store_msg("foo", &msg(seq, "", vec![1; 128], 5))
                .unwrap();
        }
        let held = store.log("foo").chunks_held();
        assert!(held >= 10, "{held}");
        for _ in 0..15_000 {
            store.remove_oldest("foo").unwrap();
        }
        let after = store.log("foo").chunks_held();
        assert!(after < held / 2, "{after} of {held}");
        assert_eq!(
            store.lookup("foo", 15_001).unwrap().unwrap().data,
            vec![1; 128]
        );
        for _ in 0..5_000 {
            store.remove_oldest("foo").unwrap();
        }
        assert_eq!(store.log("foo").chunks_held(), 0);
        assert_eq!(store.log("foo").heap_bytes(), 0);
    }

    #[test]
    fn large_records_get_dedicated_chunks() {
        let mut store = MemStore::with_chunk_size(1024);
        store.create_channel("foo").unwrap();
        store.store_msg("foo", &msg(1, "", vec![1; 10], 1)).unwrap();
        store
            .store_msg("foo", &msg(2, "", vec![2; 500], 2))
            .unwrap();
        store.store_msg("foo", &msg(3, "", vec![3; 10], 3)).unwrap();
        assert_eq!(store.log("foo").chunks_held(), 2);
        // The shared chunk holds 1 and 3; removing 1 and 2 frees only the dedicated one.
        store.remove_oldest("foo").unwrap();
        store.remove_oldest("foo").unwrap();
        assert_eq!(store.log("foo").chunks_held(), 1);
        assert_eq!(store.lookup("foo", 3).unwrap().unwrap().data, vec![3; 10]);
    }

    /// Heap bytes of a channel holding many 128-byte messages, per message.
    #[test]
    fn memory_per_128_byte_message() {
        let mut store = MemStore::new();
        store.create_channel("foo").unwrap();
        let n = 1 << 17;
        for seq in 1..=n {
            let m = msg(seq, "", vec![0; 128], 1_700_000_000_000_000_000);
            store.store_msg("foo", &m).unwrap();
        }
        let per_msg = store.log("foo").heap_bytes() as f64 / n as f64;
        // 139-byte record + 8-byte location, plus the unused tail of the open chunk.
        assert!(per_msg < 150.0, "{per_msg}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append { reply: bool, len: usize, ts: i64 },
        RemoveOldest,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (any::<bool>(), prop_oneof![4 => 0usize..40, 1 => 100usize..600], any::<i64>())
                .prop_map(|(reply, len, ts)| Op::Append { reply, len, ts }),
            2 => Just(Op::RemoveOldest),
        ]
    }

    proptest! {
        /// Small chunks so that sealing, dedicated chunks and freeing all happen often.
        #[test]
        fn matches_a_queue_with_small_chunks(ops in prop::collection::vec(op(), 0..300)) {
            let mut store = MemStore::with_chunk_size(512);
            store.create_channel("foo").unwrap();
            let mut model: VecDeque<MsgProto> = VecDeque::new();
            let mut last = 0u64;
            for op in ops {
                match op {
                    Op::Append { reply, len, ts } => {
                        last += 1;
                        let reply = if reply { format!("_INBOX.{last}") } else { String::new() };
                        let data = (0..len).map(|i| (i as u64 + last) as u8).collect();
                        let m = msg(last, &reply, data, ts);
                        let size = store.store_msg("foo", &m).unwrap();
                        prop_assert_eq!(size, m.encoded_len() as u64);
                        model.push_back(m);
                    }
                    Op::RemoveOldest => {
                        prop_assert_eq!(store.remove_oldest("foo").is_ok(), model.pop_front().is_some());
                    }
                }
                let log = store.log("foo");
                // Every held chunk but the open one still has a stored message.
                prop_assert!(log.chunks_held() <= model.len() + 1);
                if model.is_empty() {
                    prop_assert_eq!(log.chunks_held(), 0);
                }
                let state = store.msgs_state("foo");
                prop_assert_eq!(state.count, model.len() as u64);
                prop_assert_eq!(state.last, last);
                prop_assert_eq!(
                    state.bytes,
                    model.iter().map(|m| m.encoded_len() as u64).sum::<u64>()
                );
            }
            let first = store.msgs_state("foo").first;
            for seq in first.saturating_sub(1)..=last + 1 {
                let want = seq.checked_sub(first).and_then(|i| model.get(i as usize));
                let got = store.lookup("foo", seq).unwrap();
                prop_assert_eq!(got.as_ref(), want);
                prop_assert_eq!(store.timestamp("foo", seq).unwrap(), want.map(|m| m.timestamp));
            }
        }
    }
}

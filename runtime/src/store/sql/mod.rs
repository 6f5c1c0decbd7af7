//! The SQL store: the Go server's tables in PostgreSQL or MySQL/MariaDB, read and
//! written in place (shared/spec/STORES.md §3), so that a database filled by the Go
//! server is served here and the other way round.
//!
//! Subscription IDs are global in these tables (`SubsPending` is keyed by `subid`
//! alone) while the core numbers subscriptions per channel, so the store keeps its
//! own map from the core's ID to the row's.

mod conn;
mod lock;
mod my;
mod pending;
mod pg;
mod recovery;
mod stmts;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use stan_core::store::{MsgsState, Recovered, Result, Store, StoreError};
use stan_core::streaming::pb::{encode, ClientInfo, MsgProto, ServerInfo, SubState};

use super::env::ChannelLimitsFn;
use super::options::ChannelLimits;
use super::proto;
use conn::{Db, Sql, Val};
use pending::{json_seqs, PendingRow, Sub};
use stmts::*;

pub use lock::{HeldLock, OnLost, SqlLock};

/// The schema version this store reads and writes (`ServerInfo.version`).
const SQL_VERSION: i64 = 1;
/// Messages kept in the write cache before it is written out on its own.
const MAX_CACHED_MSGS: usize = 1024;
/// Written messages kept in memory for the lookups of live subscribers, which ask
/// for what was just published: at most this many, and this many bytes, per channel.
const READ_CACHE_MSGS: usize = 1024;
const READ_CACHE_BYTES: u64 = 4 << 20;
/// Multi-row inserts are used from this `bulk_insert_limit` on.
const MIN_BULK_INSERT: i64 = 5;

/// `--sql_*` options (OPERATIONS §1.2, §2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlStoreOptions {
    /// `mysql` or `postgres`.
    pub driver: String,
    /// The data source name, in the syntax of the Go driver of that name.
    pub source: String,
    /// Writes every message, send and ack as it happens instead of at flushes.
    pub no_caching: bool,
    /// Accepted for compatibility: the store uses one connection.
    pub max_open_conns: i64,
    /// Rows per multi-row message insert, used from 5 on.
    pub bulk_insert_limit: i64,
}

/// A message of the channel's newest, kept in memory: not yet written (caching
/// mode), or written and kept for lookups.
struct Cached {
    seq: u64,
    timestamp: i64,
    data: Vec<u8>,
    written: bool,
}

/// A channel: its row's ID, counters, write cache and subscriptions.
struct Chan {
    id: i64,
    state: MsgsState,
    /// The newest messages, consecutive, the unwritten ones last.
    cache: VecDeque<Cached>,
    unwritten: usize,
    cached_bytes: u64,
    /// The core's subscription ID → the subscription.
    subs: HashMap<u64, Sub>,
    /// Rows marked deleted may exist, to purge at the next subscription created.
    marked_deleted: bool,
}

/// The SQL store over one database connection.
pub struct SqlStore {
    db: Db,
    opts: SqlStoreOptions,
    limits: Option<ChannelLimitsFn>,
    channels: BTreeMap<String, Chan>,
    max_channel_id: i64,
    max_sub_id: u64,
    /// Subscriptions with unwritten sends or acks (caching mode).
    dirty_subs: BTreeSet<(String, u64)>,
    /// FT mode's lock, freed once the store is closed (fields drop after the final
    /// flush, this one last).
    lock: Option<HeldLock>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("driver", &self.opts.driver)
            .field("channels", &self.channels.len())
            .finish()
    }
}

fn err<T>(e: String) -> Result<T> {
    Err(StoreError(e))
}

fn no_channel(channel: &str) -> StoreError {
    StoreError(format!("channel {channel:?} does not exist"))
}

fn no_sub(channel: &str, id: u64) -> StoreError {
    StoreError(format!(
        "channel {channel:?}: subscription {id} does not exist"
    ))
}

impl Chan {
    pub(super) fn new(id: i64, state: MsgsState, marked_deleted: bool) -> Chan {
        Chan {
            id,
            state,
            cache: VecDeque::new(),
            unwritten: 0,
            cached_bytes: 0,
            subs: HashMap::new(),
            marked_deleted,
        }
    }

    fn cached(&self, seq: u64) -> Option<&Cached> {
        let first = self.cache.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.cache.get(i)
    }

    fn push(&mut self, m: Cached) {
        self.cached_bytes += m.data.len() as u64;
        if !m.written {
            self.unwritten += 1;
        }
        self.cache.push_back(m);
        self.trim();
    }

    /// Lets written messages go beyond the read cache's bounds.
    fn trim(&mut self) {
        while self.cache.front().is_some_and(|m| m.written)
            && (self.cache.len() > READ_CACHE_MSGS || self.cached_bytes > READ_CACHE_BYTES)
        {
            if let Some(m) = self.cache.pop_front() {
                self.cached_bytes -= m.data.len() as u64;
            }
        }
    }
}

impl SqlStore {
    /// Connects, checks that the database answers and prepares every statement.
    pub fn open(opts: SqlStoreOptions) -> Result<SqlStore> {
        let db = Db::connect(&opts.driver, &opts.source).map_err(StoreError)?;
        for stmt in ALL {
            db.prepare(*stmt).map_err(StoreError)?;
        }
        Ok(SqlStore {
            db,
            opts,
            limits: None,
            channels: BTreeMap::new(),
            max_channel_id: 0,
            max_sub_id: 0,
            dirty_subs: BTreeSet::new(),
            lock: None,
        })
    }

    /// Keeps FT mode's lock for as long as the store is open.
    pub fn hold_lock(&mut self, lock: HeldLock) {
        self.lock = Some(lock);
    }

    /// The limits recorded for each new channel (`Channels.maxmsgs` etc.).
    pub fn set_channel_limits(&mut self, limits: ChannelLimitsFn) {
        self.limits = Some(limits);
    }

    fn channel_limits(&self, name: &str) -> ChannelLimits {
        self.limits.as_ref().map(|f| f(name)).unwrap_or_default()
    }

    fn caching(&self) -> bool {
        !self.opts.no_caching
    }

    fn exec(&self, sql: impl Into<Sql>, params: Vec<Val>) -> Result<u64> {
        self.db.exec(sql, params).map_err(StoreError)
    }

    fn query(&self, sql: impl Into<Sql>, params: Vec<Val>) -> Result<Vec<conn::Row>> {
        self.db.query(sql, params).map_err(StoreError)
    }

    fn query_int(&self, sql: impl Into<Sql>, params: Vec<Val>) -> Result<i64> {
        self.db.query_int(sql, params).map_err(StoreError)
    }

    fn chan(&mut self, channel: &str) -> Result<&mut Chan> {
        self.channels
            .get_mut(channel)
            .ok_or_else(|| no_channel(channel))
    }

    /// The inserts of the channel's unwritten messages.
    fn msg_stmts(&self, channel: &str) -> Vec<(Sql, Vec<Val>)> {
        let bulk = self.opts.bulk_insert_limit;
        let Some(ch) = self.channels.get(channel) else {
            return Vec::new();
        };
        let id = ch.id;
        let row = |m: &Cached| {
            [
                Val::Int(id),
                Val::u64(m.seq),
                Val::Int(m.timestamp),
                Val::Int(m.data.len() as i64),
                Val::Bytes(m.data.clone()),
            ]
        };
        let mut stmts: Vec<(Sql, Vec<Val>)> = Vec::new();
        if bulk >= MIN_BULK_INSERT {
            let msgs: Vec<&Cached> = ch.cache.iter().filter(|m| !m.written).collect();
            for chunk in msgs.chunks(bulk as usize) {
                let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(",");
                let sql = format!(
                    "INSERT INTO Messages (id, seq, timestamp, size, data) VALUES {values}"
                );
                stmts.push((Sql::Owned(sql), chunk.iter().flat_map(|m| row(m)).collect()));
            }
        } else {
            stmts.extend(
                ch.cache
                    .iter()
                    .filter(|m| !m.written)
                    .map(|m| (Sql::Borrowed(STORE_MSG), row(m).to_vec())),
            );
        }
        stmts
    }

    /// The channel's messages were committed.
    fn msgs_written(&mut self, channel: &str) {
        if let Some(ch) = self.channels.get_mut(channel) {
            for m in ch.cache.iter_mut() {
                m.written = true;
            }
            ch.unwritten = 0;
            ch.trim();
        }
    }

    /// Writes the channel's unwritten messages in one transaction.
    fn flush_msgs(&mut self, channel: &str) -> Result<()> {
        let stmts = self.msg_stmts(channel);
        self.db.tx(stmts).map_err(StoreError)?;
        self.msgs_written(channel);
        Ok(())
    }

    /// Caching mode: one `SubsPending` row per subscription with new sends or acks,
    /// all in one transaction, then the rows no longer needed are removed.
    /// Caching mode: one `SubsPending` row per subscription with new sends or acks.
    fn sub_stmts(&self) -> Vec<(Sql, Vec<Val>)> {
        let mut stmts: Vec<(Sql, Vec<Val>)> = Vec::new();
        for (name, core_id) in &self.dirty_subs {
            let Some(ch) = self.channels.get(name) else {
                continue;
            };
            let Some(sub) = ch.subs.get(core_id) else {
                continue;
            };
            if sub.new_pending.is_empty() && sub.new_acks.is_empty() {
                if sub.last_sent != sub.written_last_sent && sub.last_sent > sub.column_last_sent {
                    stmts.push((
                        SUB_UPDATE_LAST_SENT.into(),
                        vec![
                            Val::u64(sub.last_sent),
                            Val::Int(ch.id),
                            Val::u64(sub.subid),
                        ],
                    ));
                }
                continue;
            }
            stmts.push((
                SUB_ADD_PENDING_ROW.into(),
                vec![
                    Val::u64(sub.subid),
                    Val::u64(sub.next_row),
                    Val::u64(sub.last_sent),
                    json_seqs(sub.new_pending.iter().copied()),
                    json_seqs(sub.new_acks.iter().copied()),
                ],
            ));
            // Acks of sequences listed only by a write-through row (left by a run
            // without caching) remove that row instead.
            for seq in &sub.new_acks {
                if !sub.seq_row.contains_key(seq) {
                    stmts.push((
                        SUB_DELETE_PENDING.into(),
                        vec![Val::u64(sub.subid), Val::u64(*seq)],
                    ));
                }
            }
        }
        stmts
    }

    /// The subscriptions' rows were committed: counts them, and returns the
    /// statements removing those no longer needed.
    fn subs_written(&mut self) -> Vec<(Sql, Vec<Val>)> {
        let mut deletes: Vec<(Sql, Vec<Val>)> = Vec::new();
        for (name, core_id) in std::mem::take(&mut self.dirty_subs) {
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            let channel_id = ch.id;
            let Some(sub) = ch.subs.get_mut(&core_id) else {
                continue;
            };
            sub.written_last_sent = sub.last_sent;
            if sub.new_pending.is_empty() && sub.new_acks.is_empty() {
                sub.column_last_sent = sub.column_last_sent.max(sub.last_sent);
                continue;
            }
            let row = sub.next_row;
            sub.next_row += 1;
            let pending = std::mem::take(&mut sub.new_pending);
            let acks = std::mem::take(&mut sub.new_acks);
            let mut gone = Vec::new();
            sub.rows.insert(
                row,
                PendingRow {
                    unacked: pending.len(),
                    ..PendingRow::default()
                },
            );
            for seq in pending {
                sub.seq_row.insert(seq, row);
            }
            for seq in acks {
                gone.extend(sub.apply_ack(row, seq));
            }
            gone.extend(sub.release(row));
            if !gone.is_empty() && sub.column_last_sent < sub.last_sent {
                sub.column_last_sent = sub.last_sent;
                deletes.push((
                    SUB_UPDATE_LAST_SENT.into(),
                    vec![
                        Val::u64(sub.last_sent),
                        Val::Int(channel_id),
                        Val::u64(sub.subid),
                    ],
                ));
            }
            for r in gone {
                deletes.push((
                    SUB_DELETE_PENDING_ROW.into(),
                    vec![Val::u64(sub.subid), Val::u64(r)],
                ));
            }
        }
        deletes
    }
}

impl Store for SqlStore {
    fn kind(&self) -> &'static str {
        "SQL"
    }

    fn recover(&mut self) -> Result<Recovered> {
        self.recover_all()
    }

    fn init_server_info(&mut self, info: &ServerInfo) -> Result<()> {
        let count = self.query_int(HAS_SERVER_INFO, vec![])?;
        let params = vec![
            Val::Text(info.cluster_id.clone()),
            Val::Bytes(encode(info)),
            Val::Int(SQL_VERSION),
        ];
        let stmt = if count == 0 {
            ADD_SERVER_INFO
        } else {
            UPDATE_SERVER_INFO
        };
        self.exec(stmt, params).map(|_| ())
    }

    /// A row left behind by a client that did not close is replaced.
    fn add_client(&mut self, info: &ClientInfo) -> Result<()> {
        let params = || {
            vec![
                Val::Text(info.id.clone()),
                Val::Text(info.hb_inbox.clone()),
                Val::Bytes(encode(info)),
            ]
        };
        if self.exec(ADD_CLIENT, params()).is_ok() {
            return Ok(());
        }
        self.exec(DELETE_CLIENT, vec![Val::Text(info.id.clone())])?;
        self.exec(ADD_CLIENT, params()).map(|_| ())
    }

    fn delete_client(&mut self, client_id: &str) -> Result<()> {
        self.exec(DELETE_CLIENT, vec![Val::Text(client_id.to_owned())])
            .map(|_| ())
    }

    fn create_channel(&mut self, name: &str) -> Result<()> {
        if self.channels.contains_key(name) {
            return err(format!("channel {name:?} already exists"));
        }
        let limits = self.channel_limits(name);
        let id = self.max_channel_id + 1;
        self.exec(
            ADD_CHANNEL,
            vec![
                Val::Int(id),
                Val::Text(name.to_owned()),
                Val::Int(limits.max_msgs),
                Val::Int(limits.max_bytes),
                Val::Int(limits.max_age.as_nanos() as i64),
            ],
        )?;
        self.max_channel_id = id;
        self.channels
            .insert(name.to_owned(), Chan::new(id, MsgsState::default(), false));
        Ok(())
    }

    /// The channel is marked deleted first, so that a crash half-way leaves nothing
    /// that a restart would recover; its rows go after.
    fn delete_channel(&mut self, name: &str) -> Result<()> {
        let id = self.chan(name)?.id;
        self.exec(DELETE_CHANNEL_FAST, vec![Val::Int(id)])?;
        self.channels.remove(name);
        self.dirty_subs.retain(|(c, _)| c != name);
        for row in self.query(DELETE_CHANNEL_SUB_IDS, vec![Val::Int(id)])? {
            self.exec(DELETE_SUB_PENDING, vec![row[0].clone()])?;
        }
        self.exec(DELETE_CHANNEL_MSGS, vec![Val::Int(id)])?;
        self.exec(DELETE_CHANNEL_SUBS, vec![Val::Int(id)])?;
        self.exec(DELETE_CHANNEL_ROW, vec![Val::Int(id)])?;
        Ok(())
    }

    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> Result<u64> {
        let caching = self.caching();
        let data = encode(msg);
        let size = data.len() as u64;
        let id = self.chan(channel)?.id;
        if !caching {
            self.exec(
                STORE_MSG,
                vec![
                    Val::Int(id),
                    Val::u64(msg.sequence),
                    Val::Int(msg.timestamp),
                    Val::Int(size as i64),
                    Val::Bytes(data.clone()),
                ],
            )?;
        }
        let ch = self.chan(channel)?;
        ch.push(Cached {
            seq: msg.sequence,
            timestamp: msg.timestamp,
            data,
            written: !caching,
        });
        if ch.state.count == 0 {
            ch.state.first = msg.sequence;
        }
        ch.state.count += 1;
        ch.state.bytes += size;
        ch.state.last = msg.sequence;
        if ch.unwritten >= MAX_CACHED_MSGS {
            self.flush_msgs(channel)?;
        }
        Ok(size)
    }

    fn lookup(&mut self, channel: &str, seq: u64) -> Result<Option<MsgProto>> {
        let ch = self.chan(channel)?;
        if ch.state.count == 0 || seq < ch.state.first || seq > ch.state.last {
            return Ok(None);
        }
        if let Some(m) = ch.cached(seq) {
            return proto::decode_msg(&m.data)
                .map(Some)
                .map_err(|e| StoreError(e.0));
        }
        let id = ch.id;
        let rows = self.query(LOOKUP_MSG, vec![Val::Int(id), Val::u64(seq)])?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        proto::decode_msg(row[1].bytes().unwrap_or_default())
            .map(Some)
            .map_err(|e| {
                StoreError(format!(
                    "sql: unable to decode message {seq} of channel {channel:?}: {e}"
                ))
            })
    }

    fn timestamp(&mut self, channel: &str, seq: u64) -> Result<Option<i64>> {
        let ch = self.chan(channel)?;
        if let Some(m) = ch.cached(seq) {
            return Ok(Some(m.timestamp));
        }
        if ch.state.count == 0 || seq < ch.state.first || seq > ch.state.last {
            return Ok(None);
        }
        let id = ch.id;
        let rows = self.query(LOOKUP_MSG, vec![Val::Int(id), Val::u64(seq)])?;
        match rows.first() {
            Some(row) => Ok(Some(row[0].int().map_err(StoreError)?)),
            None => Ok(None),
        }
    }

    fn msgs_state(&self, channel: &str) -> MsgsState {
        self.channels
            .get(channel)
            .map(|c| c.state)
            .unwrap_or_default()
    }

    /// Removing the last message records the channel's last sequence in
    /// `Channels.maxseq`, or a restart would number messages from 1 again.
    fn remove_oldest(&mut self, channel: &str) -> Result<()> {
        let ch = self.chan(channel)?;
        if ch.state.count == 0 {
            return Ok(());
        }
        let seq = ch.state.first;
        let id = ch.id;
        let popped = match ch.cache.front() {
            Some(m) if m.seq == seq => ch.cache.pop_front(),
            _ => None,
        };
        let size = if let Some(m) = popped {
            let size = m.data.len() as u64;
            ch.cached_bytes -= size;
            if m.written {
                self.exec(DELETE_MSG, vec![Val::Int(id), Val::u64(seq)])?;
            } else {
                ch.unwritten -= 1;
            }
            size
        } else {
            let size = self.query_int(GET_SIZE_OF_MSG, vec![Val::Int(id), Val::u64(seq)])?;
            self.exec(DELETE_MSG, vec![Val::Int(id), Val::u64(seq)])?;
            size as u64
        };
        let ch = self.chan(channel)?;
        ch.state.count -= 1;
        ch.state.bytes = ch.state.bytes.saturating_sub(size);
        ch.state.first = seq + 1;
        if ch.state.count == 0 {
            let last = ch.state.last;
            self.exec(UPDATE_CHANNEL_MAX_SEQ, vec![Val::u64(last), Val::Int(id)])?;
        }
        Ok(())
    }

    fn create_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        let subid = self.max_sub_id + 1;
        let ch = self.chan(channel)?;
        if ch.subs.contains_key(&state.id) {
            return err(format!(
                "channel {channel:?}: subscription {} already exists",
                state.id
            ));
        }
        let id = ch.id;
        let purge = ch.marked_deleted;
        let mut stored = state.clone();
        stored.id = subid;
        self.exec(
            CREATE_SUB,
            vec![Val::Int(id), Val::u64(subid), Val::Bytes(encode(&stored))],
        )?;
        self.max_sub_id = subid;
        if purge {
            self.exec(DELETE_SUBS_MARKED, vec![Val::Int(id)])?;
        }
        let ch = self.chan(channel)?;
        ch.marked_deleted = false;
        ch.subs.insert(
            state.id,
            Sub {
                subid,
                next_row: 1,
                last_sent: state.last_sent,
                written_last_sent: state.last_sent,
                ..Sub::default()
            },
        );
        Ok(())
    }

    fn update_sub(&mut self, channel: &str, state: &SubState) -> Result<()> {
        let ch = self.chan(channel)?;
        let id = ch.id;
        let sub = ch
            .subs
            .get(&state.id)
            .ok_or_else(|| no_sub(channel, state.id))?;
        let mut stored = state.clone();
        stored.id = sub.subid;
        let data = encode(&stored);
        let n = self.exec(
            UPDATE_SUB,
            vec![Val::Bytes(data.clone()), Val::Int(id), Val::u64(stored.id)],
        )?;
        if n == 0 {
            self.exec(
                CREATE_SUB,
                vec![Val::Int(id), Val::u64(stored.id), Val::Bytes(data)],
            )?;
        }
        Ok(())
    }

    /// The subscription holding the highest ID is only marked deleted, so that the
    /// next start still numbers new subscriptions above it.
    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> Result<()> {
        let max = self.max_sub_id;
        let ch = self.chan(channel)?;
        let id = ch.id;
        let Some(sub) = ch.subs.remove(&sub_id) else {
            return Ok(());
        };
        if sub.subid == max {
            ch.marked_deleted = true;
        }
        self.dirty_subs.remove(&(channel.to_owned(), sub_id));
        let stmt = if sub.subid == max {
            MARK_SUB_DELETED
        } else {
            DELETE_SUB
        };
        self.exec(stmt, vec![Val::Int(id), Val::u64(sub.subid)])?;
        self.exec(DELETE_SUB_PENDING, vec![Val::u64(sub.subid)])?;
        Ok(())
    }

    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        let caching = self.caching();
        let ch = self.chan(channel)?;
        let sub = ch
            .subs
            .get_mut(&sub_id)
            .ok_or_else(|| no_sub(channel, sub_id))?;
        sub.last_sent = sub.last_sent.max(seq);
        if caching {
            // A sequence already written as pending stays in its row.
            if !sub.seq_row.contains_key(&seq) {
                sub.new_pending.insert(seq);
            }
            self.dirty_subs.insert((channel.to_owned(), sub_id));
            return Ok(());
        }
        let row = sub.next_row;
        sub.next_row += 1;
        let subid = sub.subid;
        self.exec(
            SUB_ADD_PENDING,
            vec![Val::u64(subid), Val::u64(row), Val::u64(seq)],
        )?;
        Ok(())
    }

    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> Result<()> {
        let caching = self.caching();
        let ch = self.chan(channel)?;
        let id = ch.id;
        let sub = ch
            .subs
            .get_mut(&sub_id)
            .ok_or_else(|| no_sub(channel, sub_id))?;
        if caching {
            // Sent and acknowledged between two flushes: nothing to write.
            if !sub.new_pending.remove(&seq) {
                sub.new_acks.push(seq);
            }
            self.dirty_subs.insert((channel.to_owned(), sub_id));
            return Ok(());
        }
        let subid = sub.subid;
        // Once its row is gone, only the subscription's row remembers the last
        // sequence sent.
        if seq >= sub.last_sent && sub.column_last_sent < sub.last_sent {
            let last = sub.last_sent;
            sub.written_last_sent = last;
            sub.column_last_sent = last;
            self.exec(
                SUB_UPDATE_LAST_SENT,
                vec![Val::u64(last), Val::Int(id), Val::u64(subid)],
            )?;
        }
        self.exec(SUB_DELETE_PENDING, vec![Val::u64(subid), Val::u64(seq)])?;
        Ok(())
    }

    /// One transaction for every channel's new messages and every subscription's
    /// new pending row, messages first; then the rows no longer needed go (what a
    /// crash leaves of those is only work for the next recovery).
    fn flush(&mut self) -> Result<()> {
        if !self.caching() {
            return Ok(());
        }
        let names: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.unwritten > 0)
            .map(|(n, _)| n.clone())
            .collect();
        let mut stmts = Vec::new();
        for name in &names {
            stmts.extend(self.msg_stmts(name));
        }
        stmts.extend(self.sub_stmts());
        self.db.tx(stmts).map_err(StoreError)?;
        for name in &names {
            self.msgs_written(name);
        }
        let deletes = self.subs_written();
        self.db.tx(deletes).map_err(StoreError)
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

//! Clustered mode (BEHAVIOUR §13): the members replicate the store through Raft.
//!
//! The leader serves clients as a standalone server does; every write it makes to its
//! store in a batch is recorded and, at the batch's flush, proposed as one Raft entry.
//! What the batch sends to clients (PubAcks, deliveries, responses) is held until that
//! entry is committed, so nothing is acknowledged that a majority has not stored.
//! The other members apply committed entries to their own stores and serve nobody.
//! A member that wins an election waits until its first entry commits (by then it has
//! applied everything committed before it), then recovers from its store as a server
//! does at startup and opens the client-facing subscriptions.
//!
//! Every member rebuilds its store from the log at startup (the runtime hands it an
//! empty one), so a store never holds writes that the cluster did not commit, except
//! a leader's own not yet committed ones. A leader deposed before those commit finds
//! out when the new leader's log disagrees; its store can then not be trusted and it
//! stops, to be rebuilt by a restart.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message as _;

use super::pb::{ClientInfo, MsgProto, ServerInfo, SubState};
use super::server::{sid, Action, Streaming};
use crate::log::Level;
use crate::raft::{self, Entry, MemLog, Output, Raft, RaftConfig, RaftLog, Role};
use crate::store::{self, MsgsState, Recovered, Store};
use crate::time::{Instant, Now};

/// The `cluster { }` settings the core uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This member's ID; also a subject token.
    pub node_id: String,
    /// The other members (this one may be listed too).
    pub peers: Vec<String>,
    pub heartbeat_timeout: Duration,
    pub election_timeout: Duration,
    pub lease_timeout: Duration,
    pub commit_timeout: Duration,
    /// Where the log is kept, for the startup lines.
    pub log_path: String,
    /// `cluster_raft_logging`: log elections and role changes.
    pub raft_logging: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            peers: Vec::new(),
            heartbeat_timeout: Duration::from_secs(2),
            election_timeout: Duration::from_secs(2),
            lease_timeout: Duration::from_secs(1),
            commit_timeout: Duration::from_millis(100),
            log_path: String::new(),
            raft_logging: false,
        }
    }
}

/// The subject on which member `node` receives Raft messages.
pub fn raft_subject(cluster_id: &str, node: &str) -> String {
    format!("_STAN.raft.{cluster_id}.peer.{node}")
}

// ---- the replicated writes ----

/// One store write, as replicated.
#[derive(Clone, PartialEq, prost::Message)]
struct Op {
    #[prost(oneof = "Write", tags = "1,2,3,4,5,6,7,8,9,10,11,12")]
    write: Option<Write>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Write {
    #[prost(message, tag = "1")]
    ServerInfo(ServerInfo),
    #[prost(message, tag = "2")]
    AddClient(ClientInfo),
    #[prost(string, tag = "3")]
    DeleteClient(String),
    #[prost(string, tag = "4")]
    CreateChannel(String),
    #[prost(string, tag = "5")]
    DeleteChannel(String),
    #[prost(message, tag = "6")]
    StoreMsg(ChannelMsg),
    #[prost(string, tag = "7")]
    RemoveOldest(String),
    #[prost(message, tag = "8")]
    CreateSub(ChannelSub),
    #[prost(message, tag = "9")]
    UpdateSub(ChannelSub),
    #[prost(message, tag = "10")]
    DeleteSub(SubSeq),
    #[prost(message, tag = "11")]
    AddPending(SubSeq),
    #[prost(message, tag = "12")]
    AckPending(SubSeq),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ChannelMsg {
    #[prost(string, tag = "1")]
    channel: String,
    #[prost(message, optional, tag = "2")]
    msg: Option<MsgProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ChannelSub {
    #[prost(string, tag = "1")]
    channel: String,
    #[prost(message, optional, tag = "2")]
    state: Option<SubState>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SubSeq {
    #[prost(string, tag = "1")]
    channel: String,
    #[prost(uint64, tag = "2")]
    sub_id: u64,
    #[prost(uint64, tag = "3")]
    seq: u64,
}

/// The writes of one batch: the data of one log entry.
#[derive(Clone, PartialEq, prost::Message)]
struct Batch {
    #[prost(message, repeated, tag = "1")]
    ops: Vec<Op>,
}

/// Writes recorded since the last flush; off while committed entries are applied.
#[derive(Debug, Default)]
struct Recorder {
    on: bool,
    ops: Vec<Op>,
}

type Shared = Arc<Mutex<Recorder>>;

fn record(rec: &Shared, write: impl FnOnce() -> Write) {
    let mut r = rec.lock().unwrap_or_else(PoisonError::into_inner);
    if r.on {
        r.ops.push(Op {
            write: Some(write()),
        });
    }
}

/// The member's store: every successful write is also recorded for replication.
struct Replicated {
    inner: Box<dyn Store>,
    rec: Shared,
}

impl Store for Replicated {
    fn kind(&self) -> &'static str {
        match self.inner.kind() {
            "SQL" => "RAFT_SQL",
            _ => "RAFT_FILE",
        }
    }

    fn recover(&mut self) -> store::Result<Recovered> {
        self.inner.recover()
    }

    fn init_server_info(&mut self, info: &ServerInfo) -> store::Result<()> {
        self.inner.init_server_info(info)?;
        record(&self.rec, || Write::ServerInfo(info.clone()));
        Ok(())
    }

    fn add_client(&mut self, info: &ClientInfo) -> store::Result<()> {
        self.inner.add_client(info)?;
        record(&self.rec, || Write::AddClient(info.clone()));
        Ok(())
    }

    fn delete_client(&mut self, client_id: &str) -> store::Result<()> {
        self.inner.delete_client(client_id)?;
        record(&self.rec, || Write::DeleteClient(client_id.into()));
        Ok(())
    }

    fn create_channel(&mut self, name: &str) -> store::Result<()> {
        self.inner.create_channel(name)?;
        record(&self.rec, || Write::CreateChannel(name.into()));
        Ok(())
    }

    fn delete_channel(&mut self, name: &str) -> store::Result<()> {
        self.inner.delete_channel(name)?;
        record(&self.rec, || Write::DeleteChannel(name.into()));
        Ok(())
    }

    fn store_msg(&mut self, channel: &str, msg: &MsgProto) -> store::Result<u64> {
        let size = self.inner.store_msg(channel, msg)?;
        record(&self.rec, || {
            Write::StoreMsg(ChannelMsg {
                channel: channel.into(),
                msg: Some(msg.clone()),
            })
        });
        Ok(size)
    }

    fn lookup(&mut self, channel: &str, seq: u64) -> store::Result<Option<MsgProto>> {
        self.inner.lookup(channel, seq)
    }

    fn timestamp(&mut self, channel: &str, seq: u64) -> store::Result<Option<i64>> {
        self.inner.timestamp(channel, seq)
    }

    fn msgs_state(&self, channel: &str) -> MsgsState {
        self.inner.msgs_state(channel)
    }

    fn remove_oldest(&mut self, channel: &str) -> store::Result<()> {
        self.inner.remove_oldest(channel)?;
        record(&self.rec, || Write::RemoveOldest(channel.into()));
        Ok(())
    }

    fn create_sub(&mut self, channel: &str, state: &SubState) -> store::Result<()> {
        self.inner.create_sub(channel, state)?;
        record(&self.rec, || {
            Write::CreateSub(ChannelSub {
                channel: channel.into(),
                state: Some(state.clone()),
            })
        });
        Ok(())
    }

    fn update_sub(&mut self, channel: &str, state: &SubState) -> store::Result<()> {
        self.inner.update_sub(channel, state)?;
        record(&self.rec, || {
            Write::UpdateSub(ChannelSub {
                channel: channel.into(),
                state: Some(state.clone()),
            })
        });
        Ok(())
    }

    fn delete_sub(&mut self, channel: &str, sub_id: u64) -> store::Result<()> {
        self.inner.delete_sub(channel, sub_id)?;
        record(&self.rec, || Write::DeleteSub(sub_seq(channel, sub_id, 0)));
        Ok(())
    }

    fn add_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> store::Result<()> {
        self.inner.add_pending(channel, sub_id, seq)?;
        record(&self.rec, || {
            Write::AddPending(sub_seq(channel, sub_id, seq))
        });
        Ok(())
    }

    fn ack_pending(&mut self, channel: &str, sub_id: u64, seq: u64) -> store::Result<()> {
        self.inner.ack_pending(channel, sub_id, seq)?;
        record(&self.rec, || {
            Write::AckPending(sub_seq(channel, sub_id, seq))
        });
        Ok(())
    }

    fn flush(&mut self) -> store::Result<()> {
        self.inner.flush()
    }
}

fn sub_seq(channel: &str, sub_id: u64, seq: u64) -> SubSeq {
    SubSeq {
        channel: channel.into(),
        sub_id,
        seq,
    }
}

// ---- the member ----

/// Where this member stands as the streaming server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Applying what the leader commits; serving nobody.
    Following,
    /// Elected; serving once the entry at this index (its first) is committed.
    Promoting(u64),
    /// The leader, serving clients.
    Serving,
}

/// The clustered part of a streaming server.
pub(crate) struct Cluster {
    cfg: ClusterConfig,
    raft_cfg: RaftConfig,
    /// The log until the member starts.
    log: Option<Box<dyn RaftLog>>,
    raft: Option<Raft>,
    rec: Shared,
    stage: Stage,
    /// Highest index whose writes are in the store.
    applied: u64,
    /// Entries this member wrote to its store as leader and that are not yet known
    /// committed: index to term.
    unconfirmed: BTreeMap<u64, u64>,
    /// What the batches sent to clients, each waiting for the index that must be
    /// committed first (`None`: the batch has not been flushed yet).
    held: VecDeque<(Option<u64>, Action)>,
    /// Raft messages to other members; never held.
    outbox: VecDeque<Action>,
}

impl Cluster {
    /// The member; `store` is wrapped so that its writes are recorded. Returns the
    /// wrapped store for the server to use.
    pub(crate) fn new(
        cfg: ClusterConfig,
        seed: u64,
        store: Box<dyn Store>,
    ) -> (Cluster, Box<dyn Store>) {
        let mut peers = cfg.peers.clone();
        peers.push(cfg.node_id.clone());
        peers.sort();
        peers.dedup();
        let mut raft_cfg = RaftConfig::new(cfg.node_id.clone(), peers, seed ^ 0x5241_4654);
        raft_cfg.heartbeat_timeout = cfg.heartbeat_timeout;
        raft_cfg.election_timeout = cfg.election_timeout;
        raft_cfg.lease_timeout = cfg.lease_timeout;
        raft_cfg.commit_timeout = cfg.commit_timeout;
        let rec: Shared = Arc::default();
        let store = Box::new(Replicated {
            inner: store,
            rec: rec.clone(),
        });
        let cluster = Cluster {
            cfg,
            raft_cfg,
            log: Some(Box::new(MemLog::default())),
            raft: None,
            rec,
            stage: Stage::Following,
            applied: 0,
            unconfirmed: BTreeMap::new(),
            held: VecDeque::new(),
            outbox: VecDeque::new(),
        };
        (cluster, store)
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.cfg.node_id
    }

    fn commit(&self) -> u64 {
        self.raft.as_ref().map_or(0, Raft::commit_index)
    }
}

impl Streaming {
    /// Keeps the Raft log in `log` (the runtime's file log) instead of memory; call
    /// before [`Streaming::start`].
    pub fn set_raft_log(&mut self, log: Box<dyn RaftLog>) {
        if let Some(c) = self.cluster.as_mut() {
            c.log = Some(log);
        }
    }

    /// The Raft role shown in `/streaming/serverz`; `None` unless clustered.
    pub fn raft_role(&self) -> Option<Role> {
        let c = self.cluster.as_ref()?;
        Some(c.raft.as_ref().map_or(Role::Follower, Raft::role))
    }

    /// This member's node ID; `None` unless clustered.
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_ref().map(Cluster::node_id)
    }

    /// Starts the member: its log is read back and replayed into the (empty) store,
    /// then it follows until elected.
    pub(crate) fn start_clustered(&mut self, now: Now) -> Result<(), String> {
        let cid = self.cfg.cluster_id.clone();
        let Some(c) = self.cluster.as_mut() else {
            return Ok(());
        };
        let log = c.log.take().unwrap_or_else(|| Box::new(MemLog::default()));
        let raft = Raft::new(c.raft_cfg.clone(), log, now.mono).map_err(|e| e.to_string())?;
        c.raft = Some(raft);
        let subject = raft_subject(&cid, &c.cfg.node_id);
        let lines = {
            let mut lines = vec![
                format!("Cluster Node ID : {}", c.cfg.node_id),
                format!("Cluster Log Path: {}", c.cfg.log_path),
            ];
            if !c.cfg.peers.is_empty() {
                lines.push("Cluster known peers:".into());
                for (i, p) in c.cfg.peers.iter().enumerate() {
                    lines.push(format!("peer {}: {p:?}", i + 1));
                }
            }
            lines
        };
        self.actions.push_back(Action::Subscribe {
            sid: sid::RAFT,
            subject,
        });
        for line in lines {
            self.log(Level::Info, line);
        }
        self.pump_raft(now);
        Ok(())
    }

    /// A Raft message from another member.
    pub(crate) fn on_raft_msg(&mut self, now: Now, payload: &[u8]) {
        let Some(raft) = self.cluster.as_mut().and_then(|c| c.raft.as_mut()) else {
            return;
        };
        match raft::Message::decode(payload) {
            Ok((from, msg)) => raft.handle_message(now.mono, &from, msg),
            Err(e) => {
                return self.debug(|| format!("Dropping undecodable Raft message: {e}"));
            }
        }
        self.pump_raft(now);
    }

    pub(crate) fn cluster_deadline(&self) -> Option<Instant> {
        self.cluster.as_ref()?.raft.as_ref()?.poll_timeout()
    }

    pub(crate) fn cluster_timeout(&mut self, now: Now) {
        let Some(raft) = self.cluster.as_mut().and_then(|c| c.raft.as_mut()) else {
            return;
        };
        raft.handle_timeout(now.mono);
        self.pump_raft(now);
    }

    /// The batch's end: its writes become one entry, what it sends waits for that
    /// entry, and the log is made durable.
    pub(crate) fn flush_clustered(&mut self, now: Now) -> Result<(), String> {
        // Whatever the batch sends is held, even what was not polled yet.
        let rest = self.hold_publishes();
        self.actions = rest;
        let Some(c) = self.cluster.as_mut() else {
            return Ok(());
        };
        let ops = std::mem::take(&mut c.rec.lock().unwrap_or_else(PoisonError::into_inner).ops);
        if !ops.is_empty() {
            let Some(raft) = c.raft.as_mut() else {
                return Ok(());
            };
            let data = Batch { ops }.encode_to_vec();
            match raft.propose(now.mono, data) {
                Ok(index) => {
                    c.unconfirmed.insert(index, raft.term());
                    c.applied = index;
                }
                Err(_) => {
                    // Written to this store, yet in no log: the store no longer
                    // matches the cluster's.
                    self.fail("stan: leadership lost with writes not replicated".into());
                    return Ok(());
                }
            }
        }
        let tag = c.applied;
        for (wait, _) in c.held.iter_mut().rev() {
            if wait.is_some() {
                break;
            }
            *wait = Some(tag);
        }
        if let Some(raft) = c.raft.as_mut() {
            raft.flush().map_err(|e| e.to_string())?;
        }
        self.pump_raft(now);
        Ok(())
    }

    /// The next action of a clustered server: Raft messages at once, what clients
    /// are sent only once the writes it depends on are committed.
    pub(crate) fn poll_clustered(&mut self) -> Option<Action> {
        if let Some(a) = self.cluster.as_mut()?.outbox.pop_front() {
            return Some(a);
        }
        let mut rest = self.hold_publishes();
        if let Some(a) = rest.pop_front() {
            self.actions = rest;
            return Some(a);
        }
        let c = self.cluster.as_mut()?;
        let commit = c.commit();
        match c.held.front() {
            Some((Some(wait), _)) if *wait <= commit => c.held.pop_front().map(|(_, a)| a),
            _ => None,
        }
    }

    /// Moves the publishes waiting in the action queue to the held ones, in order;
    /// returns the other actions, which leave at once.
    fn hold_publishes(&mut self) -> VecDeque<Action> {
        let mut rest = VecDeque::new();
        let Some(c) = self.cluster.as_mut() else {
            return std::mem::take(&mut self.actions);
        };
        for a in self.actions.drain(..) {
            match a {
                Action::Publish { .. } => c.held.push_back((None, a)),
                other => rest.push_back(other),
            }
        }
        rest
    }

    /// Takes what Raft produced: messages to send, committed entries to apply, role
    /// changes.
    fn pump_raft(&mut self, now: Now) {
        let cid = self.cfg.cluster_id.clone();
        while let Some(out) = self
            .cluster
            .as_mut()
            .and_then(|c| c.raft.as_mut())
            .and_then(Raft::poll_output)
        {
            match out {
                Output::Send { to, msg } => {
                    let c = self.cluster.as_mut().expect("checked above");
                    let payload = msg.encode(&c.cfg.node_id);
                    c.outbox.push_back(Action::Publish {
                        subject: raft_subject(&cid, &to).into(),
                        reply: None,
                        payload,
                    });
                }
                Output::Committed(entry) => self.committed(entry),
                Output::Role(role) => self.role_changed(role),
            }
            if self.failure.is_some() {
                return;
            }
        }
        self.maybe_promote(now);
    }

    fn committed(&mut self, entry: Entry) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if let Some(term) = c.unconfirmed.remove(&entry.index) {
            if term != entry.term {
                return self.fail(format!(
                    "stan: entry {} was replaced by the cluster after this server stored it; restart to rebuild the store",
                    entry.index
                ));
            }
            return;
        }
        if entry.index <= c.applied {
            return;
        }
        c.applied = entry.index;
        if entry.data.is_empty() {
            return;
        }
        let batch = match Batch::decode(entry.data.as_slice()) {
            Ok(b) => b,
            Err(e) => {
                return self.fail(format!("stan: undecodable Raft entry {}: {e}", entry.index))
            }
        };
        if let Err(e) = self.apply(batch) {
            self.fail(format!(
                "stan: unable to apply Raft entry {}: {e}",
                entry.index
            ));
        }
    }

    /// Applies a committed batch of another member to this store, unrecorded.
    fn apply(&mut self, batch: Batch) -> store::Result<()> {
        let node_id = self.node_id().unwrap_or_default().to_string();
        let rec = self.cluster.as_ref().map(|c| c.rec.clone());
        if let Some(rec) = &rec {
            rec.lock().unwrap_or_else(PoisonError::into_inner).on = false;
        }
        let s = &mut self.store;
        let result = batch.ops.into_iter().try_for_each(|op| {
            let Some(w) = op.write else {
                return Ok(());
            };
            match w {
                Write::ServerInfo(mut info) => {
                    info.node_id = node_id.clone();
                    s.init_server_info(&info)
                }
                Write::AddClient(info) => s.add_client(&info),
                Write::DeleteClient(id) => s.delete_client(&id),
                Write::CreateChannel(name) => s.create_channel(&name),
                Write::DeleteChannel(name) => s.delete_channel(&name),
                Write::StoreMsg(m) => s
                    .store_msg(&m.channel, &m.msg.unwrap_or_default())
                    .map(drop),
                Write::RemoveOldest(channel) => s.remove_oldest(&channel),
                Write::CreateSub(cs) => s.create_sub(&cs.channel, &cs.state.unwrap_or_default()),
                Write::UpdateSub(cs) => s.update_sub(&cs.channel, &cs.state.unwrap_or_default()),
                Write::DeleteSub(x) => s.delete_sub(&x.channel, x.sub_id),
                Write::AddPending(x) => s.add_pending(&x.channel, x.sub_id, x.seq),
                Write::AckPending(x) => s.ack_pending(&x.channel, x.sub_id, x.seq),
            }
        });
        if let Some(rec) = &rec {
            rec.lock().unwrap_or_else(PoisonError::into_inner).on = self
                .cluster
                .as_ref()
                .is_some_and(|c| c.stage == Stage::Serving);
        }
        result
    }

    fn role_changed(&mut self, role: Role) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.cfg.raft_logging {
            let term = c.raft.as_ref().map_or(0, Raft::term);
            let line = format!("raft: {} is {role} in term {term}", c.cfg.node_id);
            self.log(Level::Info, line);
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match role {
            Role::Leader => {
                let first = c.raft.as_ref().map_or(0, Raft::last_index);
                c.stage = Stage::Promoting(first);
            }
            _ => {
                let was = std::mem::replace(&mut c.stage, Stage::Following);
                if was == Stage::Serving {
                    self.stop_serving();
                }
            }
        }
    }

    fn maybe_promote(&mut self, now: Now) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Stage::Promoting(first) = c.stage else {
            return;
        };
        if c.commit() < first || c.applied < first {
            return;
        }
        c.stage = Stage::Serving;
        c.rec.lock().unwrap_or_else(PoisonError::into_inner).on = true;
        self.log(
            Level::Info,
            "server became leader, performing leader promotion actions".into(),
        );
        if let Err(e) = self.recover_and_serve(now) {
            return self.fail(format!("Failed to start: {e}"));
        }
        self.log(Level::Info, "finished leader promotion actions".into());
    }

    /// Deposed: what the server knew of clients and subscriptions belongs to the new
    /// leader now; this member only applies from here on.
    fn stop_serving(&mut self) {
        let pending_writes = {
            let c = self.cluster.as_mut().expect("clustered");
            c.held.clear();
            let mut r = c.rec.lock().unwrap_or_else(PoisonError::into_inner);
            r.on = false;
            !std::mem::take(&mut r.ops).is_empty()
        };
        if pending_writes {
            return self.fail("stan: leadership lost with writes not replicated".into());
        }
        self.log(
            Level::Info,
            "server lost leadership, stopping leader actions".into(),
        );
        self.reset_serving();
    }
}

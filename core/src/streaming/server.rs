//! The streaming server: its inputs are NATS messages on the subjects it subscribed to
//! and time; its outputs are NATS publishes and (un)subscriptions. It does not know
//! whether NATS is embedded or external.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rustc_hash::FxHashMap;

use super::cluster::Cluster;
use super::ft::Ft;
use super::limits::{ResolvedLimits, StoreLimits};
use super::partition::Partitions;
use super::pb::{
    self, ClientInfo, CloseRequest, ConnectRequest, ConnectResponse, CtrlMsg, ServerInfo,
};
use super::state::{Channel, Client, SubId};
use super::Config;
use crate::gofmt::go_quote;
use crate::log::{Level, LogLine, Origin};
use crate::rng::Rng;
use crate::store::Store;
use crate::time::{Instant, Now};

/// What the streaming server asks of its NATS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Subscribe {
        sid: u64,
        subject: String,
    },
    Unsubscribe {
        sid: u64,
    },
    /// A publish; when `reply` is set and nobody receives it, the caller reports it back
    /// with [`Streaming::handle_no_responders`].
    Publish {
        subject: Arc<str>,
        reply: Option<String>,
        payload: Vec<u8>,
    },
    Log(LogLine),
}

/// Internal subscriptions with fixed ids; ack inboxes take ids from `FIRST_ACK_SID` on.
pub(crate) mod sid {
    pub const DISCOVER: u64 = 1;
    pub const PUBLISH: u64 = 2;
    pub const SUBSCRIBE: u64 = 3;
    pub const UNSUBSCRIBE: u64 = 4;
    pub const SUB_CLOSE: u64 = 5;
    pub const CLOSE: u64 = 6;
    pub const PINGS: u64 = 7;
    pub const REPLIES: u64 = 8;
    pub const FT: u64 = 9;
    pub const PARTITIONS: u64 = 10;
    pub const PARTITIONS_INBOX: u64 = 11;
    /// Clustered mode: this member's Raft messages.
    pub const RAFT: u64 = 12;
    pub const FIRST_ACK: u64 = 1000;
    /// Partitioning: the publish subscriptions after the first (which is `PUBLISH`), far
    /// above any ack inbox's id.
    pub const MORE_PUBLISH: u64 = 1 << 48;
}

/// Timers, keyed by what they are for; a firing timer whose record no longer expects it
/// is ignored, so timers never need to be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Heartbeat(String),
    HeartbeatTimeout(String, u64),
    Probe(u64),
    AckWait(String, SubId),
    MaxAge(String),
    Inactivity(String),
}

/// A request this server sent and whose answer it waits for.
#[derive(Debug)]
pub(crate) enum Outstanding {
    Heartbeat {
        client_id: String,
    },
    /// A connect for an ID already in use: the old holder's heartbeat inbox was asked
    /// whether it is still alive.
    Probe {
        old_client: String,
        request: ConnectRequest,
        reply: String,
    },
    /// The startup check for another server with this cluster ID (PROTOCOL §3.12).
    Competitor,
    /// A request whose answer does not matter.
    Ignored,
}

/// The last stored message in its delivery encoding.
#[derive(Debug, Default)]
pub(crate) struct Fresh {
    pub channel: String,
    pub seq: u64,
    pub bytes: Vec<u8>,
}

/// Counters shown by monitoring (BEHAVIOUR §15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub redeliveries: u64,
    pub heartbeat_closes: u64,
}

/// The NATS Streaming server state machine.
pub struct Streaming {
    pub(crate) cfg: Config,
    pub(crate) limits: ResolvedLimits,
    pub(crate) rng: Rng,
    pub(crate) server_id: String,
    pub(crate) info: ServerInfo,
    pub(crate) store: Box<dyn Store>,
    pub(crate) clients: BTreeMap<String, Client>,
    pub(crate) conn_ids: FxHashMap<Vec<u8>, String>,
    pub(crate) channels: BTreeMap<String, Channel>,
    pub(crate) ack_sids: FxHashMap<u64, (Arc<str>, SubId)>,
    /// The message stored last, already encoded: first deliveries of a new message (the
    /// common case) need no store lookup.
    pub(crate) fresh: Fresh,
    /// Reused to build stored messages without allocating each time.
    pub(crate) scratch: pb::MsgProto,
    pub(crate) next_ack_sid: u64,
    pub(crate) reply_prefix: String,
    pub(crate) next_token: u64,
    pub(crate) outstanding: BTreeMap<u64, Outstanding>,
    /// Client IDs whose replacement probe is in progress.
    pub(crate) probing: BTreeSet<String>,
    pub(crate) timers: BTreeSet<(Instant, Timer)>,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) stats: Stats,
    pub(crate) started: bool,
    /// Fault-tolerance mode's state, when the server belongs to an FT group.
    pub(crate) ft: Option<Ft>,
    /// Partitioning mode's state, when the server owns only its configured channels.
    pub(crate) partitions: Option<Partitions>,
    /// Clustered mode's state, when the store is replicated by Raft.
    pub(crate) cluster: Option<Cluster>,
    /// The fatal error that stopped the server, if one did.
    pub(crate) failure: Option<String>,
}

/// Protocol version of the Go server this one presents itself as.
pub const VERSION: &str = "0.25.6";

const INVALID_CLIENT_ID: &str =
    "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed";
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the startup check waits for another server to answer.
const COMPETITOR_WAIT: Duration = Duration::from_millis(250);
/// The NATS default, for splitting the partitioning announcement until the node says.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

impl Streaming {
    /// A server with the given configuration and store; call [`Streaming::start`] next.
    pub fn new(cfg: Config, store: Box<dyn Store>) -> Result<Self, String> {
        let limits = cfg.limits.resolve().map_err(|e| e.to_string())?;
        let mut rng = Rng::new(cfg.rng_seed ^ 0x5354_414e);
        let server_id = rng.nuid();
        let reply_prefix = format!("_INBOX.{}", rng.nuid());
        let ft = cfg
            .ft_group
            .as_deref()
            .map(|group| Ft::new(&cfg.cluster_id, group, cfg.rng_seed));
        let partitions = cfg.partitioning.then(|| {
            let mut inbox = String::from("_INBOX.");
            rng.push_nuid(&mut inbox);
            let channels = cfg.limits.per_channel.keys().cloned().collect();
            Partitions::new(&cfg.cluster_id, channels, inbox, DEFAULT_MAX_PAYLOAD)
        });
        let (cluster, store) = match cfg.cluster.clone() {
            Some(cc) => {
                let (c, store) = Cluster::new(cc, cfg.rng_seed, store);
                (Some(c), store)
            }
            None => (None, store),
        };
        Ok(Streaming {
            info: ServerInfo::default(),
            limits,
            rng,
            server_id,
            store,
            clients: BTreeMap::new(),
            conn_ids: FxHashMap::default(),
            channels: BTreeMap::new(),
            ack_sids: FxHashMap::default(),
            fresh: Fresh::default(),
            scratch: pb::MsgProto::default(),
            next_ack_sid: sid::FIRST_ACK,
            reply_prefix,
            next_token: 1,
            outstanding: BTreeMap::new(),
            probing: BTreeSet::new(),
            timers: BTreeSet::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
            started: false,
            ft,
            partitions,
            cluster,
            failure: None,
            cfg,
        })
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn cluster_id(&self) -> &str {
        &self.cfg.cluster_id
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// The configured limits, before resolution.
    pub fn store_limits(&self) -> &StoreLimits {
        &self.cfg.limits
    }

    /// IDs of the registered clients, in order.
    pub fn client_ids(&self) -> impl Iterator<Item = &str> {
        self.clients.keys().map(String::as_str)
    }

    /// The subjects in use (recovered or built at first start).
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// The lines logged before the NATS server's banner.
    pub fn banner(&self) -> Vec<String> {
        vec![
            format!(
                "Starting nats-streaming-server[{}] version {VERSION}",
                self.cfg.cluster_id
            ),
            format!("ServerID: {}", self.server_id),
            "Go version: rust".to_string(),
            "Git commit: [not set]".to_string(),
        ]
    }

    /// Recovers state, opens the client-facing subscriptions and logs the startup
    /// block. A member of an FT group enters standby instead; it does all this once it
    /// holds the store's lock (see [`Streaming::handle_store_lock`]). In partitioning
    /// mode it first announces its channels and waits for objections: the start then
    /// finishes on a later [`Streaming::handle_timeout`], or fails (see
    /// [`Streaming::failure`]).
    pub fn start(&mut self, now: Now) -> Result<(), String> {
        if self.ft.is_some() {
            self.enter_standby(now);
            return Ok(());
        }
        if self.cluster.is_some() {
            return self.start_clustered(now);
        }
        self.begin_serving(now)
    }

    /// The largest payload NATS accepts, which the partitioning announcement respects.
    pub fn set_max_payload(&mut self, max_payload: usize) {
        if let Some(p) = self.partitions.as_mut() {
            p.set_max_payload(max_payload);
        }
    }

    /// The start proper (BEHAVIOUR §10 from step 4), once any FT standby is over.
    pub(crate) fn begin_serving(&mut self, now: Now) -> Result<(), String> {
        if self.partitions.is_some() {
            return self.announce_partitions(now);
        }
        self.recover_and_serve(now)
    }

    pub(crate) fn recover_and_serve(&mut self, now: Now) -> Result<(), String> {
        self.log(Level::Info, "Recovering the state...".into());
        let recovered = self.store.recover().map_err(|e| e.to_string())?;
        let cid = self.cfg.cluster_id.clone();
        let had_state = recovered.server_info.is_some() || !recovered.channels.is_empty();
        match recovered.server_info {
            Some(info) => {
                if info.cluster_id != cid {
                    return Err(format!(
                        "cluster ID {cid:?} does not match recovered value of {:?}",
                        info.cluster_id
                    ));
                }
                self.info = info;
                if self.info.sub_close.is_empty() {
                    self.info.sub_close = format!("_STAN.subclose.{cid}");
                    self.store
                        .init_server_info(&self.info)
                        .map_err(|e| e.to_string())?;
                }
            }
            None => {
                if !recovered.channels.is_empty() {
                    self.log(
                        Level::Warn,
                        "Server information was not recovered, however channels are present. Will initialize server and restart recovery!".into(),
                    );
                }
                self.info = ServerInfo {
                    cluster_id: cid.clone(),
                    discovery: format!("{}.{cid}", self.cfg.discover_prefix),
                    publish: format!("_STAN.pub.{cid}"),
                    subscribe: format!("_STAN.sub.{cid}"),
                    unsubscribe: format!("_STAN.unsub.{cid}"),
                    close: format!("_STAN.close.{cid}"),
                    sub_close: format!("_STAN.subclose.{cid}"),
                    acks_subs: format!("_STAN.ack.{cid}"),
                    node_id: self.node_id().unwrap_or_default().to_string(),
                };
                self.store
                    .init_server_info(&self.info)
                    .map_err(|e| e.to_string())?;
            }
        }
        if had_state {
            self.log(
                Level::Info,
                format!("Recovered {} channel(s)", recovered.channels.len()),
            );
        } else {
            self.log(Level::Info, "No recovered state".into());
        }
        self.restore(now, recovered.clients, recovered.channels);
        if self.ft.is_none() && self.partitions.is_none() && self.cluster.is_none() {
            self.check_for_competitor(now);
            return Ok(());
        }
        self.open_for_clients(now);
        Ok(())
    }

    /// Asks, on this cluster ID's discovery subject, whether another server already
    /// serves it, as the Go server does before it opens its own subscriptions: two
    /// servers answering the same clients would split their state between them. A
    /// member of an FT group or a partition has its own checks instead.
    fn check_for_competitor(&mut self, now: Now) {
        self.actions.push_back(Action::Subscribe {
            sid: sid::REPLIES,
            subject: format!("{}.*", self.reply_prefix),
        });
        let request = ConnectRequest {
            client_id: self.cfg.cluster_id.clone(),
            heartbeat_inbox: self.new_inbox(),
            ..Default::default()
        };
        let discovery = self.info.discovery.clone();
        let token = self.request(&discovery, request.encode_to_vec(), Outstanding::Competitor);
        self.arm(now.mono + COMPETITOR_WAIT, Timer::Probe(token));
    }

    /// Any answer that decodes is another server (even one refusing the cluster ID
    /// as a client ID): it is told to forget the probe's client, and this start fails.
    fn competitor_answered(&mut self, payload: &[u8]) {
        let cid = self.cfg.cluster_id.clone();
        match ConnectResponse::decode(payload) {
            Ok(response) => {
                if !response.close_requests.is_empty() {
                    let close = CloseRequest {
                        client_id: cid.clone(),
                    };
                    self.request(
                        &response.close_requests,
                        close.encode_to_vec(),
                        Outstanding::Ignored,
                    );
                }
                self.fail(format!(
                    "Failed to start: discovered another streaming server with cluster ID {}",
                    go_quote(&cid)
                ));
            }
            Err(e) => self.fail(format!(
                "Failed to start: unmarshall error while detecting another server instance: {e}"
            )),
        }
    }

    /// Opens the client-facing subscriptions and logs the end of the startup block.
    fn open_for_clients(&mut self, now: Now) {
        if self.started || self.failure.is_some() {
            return;
        }
        let publish = match &self.partitions {
            // One subscription per owned entry instead of the whole publish tree.
            Some(p) => p
                .channels()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let sid = if i == 0 {
                        sid::PUBLISH
                    } else {
                        sid::MORE_PUBLISH + i as u64
                    };
                    (sid, format!("{}.{c}", self.info.publish))
                })
                .collect(),
            None => vec![(sid::PUBLISH, format!("{}.>", self.info.publish))],
        };
        for (sid, subject) in publish {
            self.actions.push_back(Action::Subscribe { sid, subject });
        }
        let subjects = [
            (sid::DISCOVER, self.info.discovery.clone()),
            (sid::SUBSCRIBE, self.info.subscribe.clone()),
            (sid::UNSUBSCRIBE, self.info.unsubscribe.clone()),
            (sid::SUB_CLOSE, self.info.sub_close.clone()),
            (sid::CLOSE, self.info.close.clone()),
            (sid::PINGS, format!("{}.pings", self.info.discovery)),
        ];
        let replies_open = self.ft.is_none() && self.partitions.is_none() && self.cluster.is_none();
        let replies = (!replies_open).then(|| (sid::REPLIES, format!("{}.*", self.reply_prefix)));
        for (sid, subject) in subjects.into_iter().chain(replies) {
            self.actions.push_back(Action::Subscribe { sid, subject });
        }
        let info = self.info.clone();
        self.debug(|| format!("Discover subject:           {}", info.discovery));
        if self.partitions.is_some() {
            self.debug(|| format!("Publish subjects root:      {}", info.publish));
        } else {
            self.debug(|| format!("Publish subject:            {}.>", info.publish));
        }
        self.debug(|| format!("Subscribe subject:          {}", info.subscribe));
        self.debug(|| format!("Subscription Close subject: {}", info.sub_close));
        self.debug(|| format!("Unsubscribe subject:        {}", info.unsubscribe));
        self.debug(|| format!("Close subject:              {}", info.close));
        self.log(
            Level::Info,
            format!("Message store is {}", self.store.kind()),
        );
        if let Some(dir) = &self.cfg.store_location {
            self.log(Level::Info, format!("Store location: {dir}"));
        }
        for line in self.limits.table() {
            self.log(Level::Info, line);
        }
        self.log(Level::Info, "Streaming Server is ready".into());
        self.started = true;
        self.startup_redelivery(now);
    }

    /// A message arrived on one of this server's subscriptions.
    pub fn handle_msg(
        &mut self,
        now: Now,
        sid: u64,
        subject: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
    ) {
        // Publishes and acks are the hot path: they borrow, everything else owns.
        match sid {
            sid::PUBLISH => {
                return self.on_publish(
                    now,
                    reply.and_then(|r| std::str::from_utf8(r).ok()),
                    payload,
                )
            }
            sid::REPLIES => return self.on_reply(now, subject, payload),
            sid::FT => return self.on_ft_msg(now, payload),
            sid::PARTITIONS_INBOX => return self.on_partitions_reply(now, payload),
            sid::RAFT => return self.on_raft_msg(now, payload),
            sid::MORE_PUBLISH.. => {
                return self.on_publish(
                    now,
                    reply.and_then(|r| std::str::from_utf8(r).ok()),
                    payload,
                )
            }
            sid::DISCOVER..=sid::PINGS | sid::PARTITIONS => {}
            ack => return self.on_ack(now, ack, payload),
        }
        let reply = reply.map(|r| String::from_utf8_lossy(r).into_owned());
        match sid {
            sid::DISCOVER => self.on_connect(now, reply, payload),
            sid::SUBSCRIBE => self.on_subscribe(now, reply, payload),
            sid::UNSUBSCRIBE => self.on_unsubscribe(now, reply, payload, false),
            sid::SUB_CLOSE => self.on_unsubscribe(now, reply, payload, true),
            sid::CLOSE => self.on_close(now, reply, payload),
            sid::PINGS => self.on_ping(now, reply, payload),
            sid::PARTITIONS => self.on_partitions_request(reply, payload),
            _ => {}
        }
    }

    /// A request this server published had no subscriber at all.
    pub fn handle_no_responders(&mut self, now: Now, reply: &str) {
        if let Some(token) = self.token_of(reply.as_bytes()) {
            self.request_failed(now, token);
        }
    }

    pub fn handle_timeout(&mut self, now: Now) {
        while let Some((at, _)) = self.timers.first() {
            if *at > now.mono {
                break;
            }
            let (at, timer) = self.timers.pop_first().expect("checked above");
            match timer {
                Timer::Heartbeat(client) => self.send_heartbeat(now, at, &client),
                Timer::HeartbeatTimeout(_, token) | Timer::Probe(token) => {
                    self.request_failed(now, token)
                }
                Timer::AckWait(channel, sub) => self.ack_timer_fired(now, at, &channel, sub),
                Timer::MaxAge(channel) => self.max_age_fired(now, at, &channel),
                Timer::Inactivity(channel) => self.inactivity_fired(now, at, &channel),
            }
        }
        self.ft_timeout(now);
        self.partition_timeout(now);
        self.cluster_timeout(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|t| t.0);
        [
            timer,
            self.ft_deadline(),
            self.partition_deadline(),
            self.cluster_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        if self.cluster.is_some() {
            return self.poll_clustered();
        }
        self.actions.pop_front()
    }

    /// Makes the batch's writes durable (see [`Store::flush`]); clustered, also
    /// replicates them.
    pub fn flush(&mut self, now: Now) -> Result<(), String> {
        self.store.flush().map_err(|e| e.to_string())?;
        self.flush_clustered(now)
    }

    /// Forgets every client, channel and timer and closes the client-facing
    /// subscriptions: a deposed Raft leader serves nobody.
    pub(crate) fn reset_serving(&mut self) {
        let mut sids: Vec<u64> = vec![
            sid::DISCOVER,
            sid::PUBLISH,
            sid::SUBSCRIBE,
            sid::UNSUBSCRIBE,
            sid::SUB_CLOSE,
            sid::CLOSE,
            sid::PINGS,
            sid::REPLIES,
        ];
        sids.extend(self.ack_sids.keys().copied());
        for sid in sids {
            self.actions.push_back(Action::Unsubscribe { sid });
        }
        self.clients.clear();
        self.conn_ids.clear();
        self.channels.clear();
        self.ack_sids.clear();
        self.fresh = Fresh::default();
        self.outstanding.clear();
        self.probing.clear();
        self.timers.clear();
        self.started = false;
    }

    // ---- helpers shared by the request handlers ----

    pub(crate) fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.insert((at, timer));
    }

    pub(crate) fn publish(&mut self, subject: impl Into<Arc<str>>, payload: Vec<u8>) {
        self.actions.push_back(Action::Publish {
            subject: subject.into(),
            reply: None,
            payload,
        });
    }

    /// Answers a request; requests without a reply subject get no answer.
    pub(crate) fn respond<M: Message>(&mut self, reply: &Option<String>, msg: &M) {
        if let Some(r) = reply {
            self.publish(r.as_str(), msg.encode_to_vec());
        }
    }

    pub(crate) fn new_inbox(&mut self) -> String {
        let mut s = String::with_capacity(29);
        s.push_str("_INBOX.");
        self.rng.push_nuid(&mut s);
        s
    }

    /// Sends a request whose answer comes back on this server's reply inbox.
    pub(crate) fn request(&mut self, subject: &str, payload: Vec<u8>, what: Outstanding) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.outstanding.insert(token, what);
        let reply = format!("{}.{token}", self.reply_prefix);
        self.actions.push_back(Action::Publish {
            subject: subject.into(),
            reply: Some(reply),
            payload,
        });
        token
    }

    fn token_of(&self, reply: &[u8]) -> Option<u64> {
        let rest = reply
            .strip_prefix(self.reply_prefix.as_bytes())?
            .strip_prefix(b".")?;
        std::str::from_utf8(rest).ok()?.parse().ok()
    }

    pub(crate) fn log(&mut self, level: Level, text: String) {
        self.actions.push_back(Action::Log(LogLine {
            origin: Origin::Stream,
            level,
            text,
        }));
    }

    pub(crate) fn debug(&mut self, text: impl FnOnce() -> String) {
        if self.cfg.verbosity.debug {
            self.log(Level::Debug, text());
        }
    }

    pub(crate) fn trace(&mut self, text: impl FnOnce() -> String) {
        if self.cfg.verbosity.trace {
            self.log(Level::Trace, text());
        }
    }

    // ---- connect, close, ping, heartbeats ----

    fn on_connect(&mut self, now: Now, reply: Option<String>, payload: &[u8]) {
        let req = match ConnectRequest::decode(payload) {
            Ok(r) if !r.heartbeat_inbox.is_empty() => r,
            _ => return self.respond(&reply, &connect_error("stan: invalid connection request")),
        };
        if !is_valid_client_id(&req.client_id) {
            return self.respond(&reply, &connect_error(INVALID_CLIENT_ID));
        }
        let Some(old) = self.clients.get(&req.client_id) else {
            return self.register(now, req, reply);
        };
        if self.probing.contains(&req.client_id) {
            return self.respond(&reply, &connect_error("stan: clientID already registered"));
        }
        // Ask the holder of this ID whether it is still alive before replacing it.
        let hb_inbox = old.info.hb_inbox.clone();
        let old_client = req.client_id.clone();
        self.probing.insert(old_client.clone());
        let Some(reply) = reply else { return };
        let token = self.request(
            &hb_inbox,
            Vec::new(),
            Outstanding::Probe {
                old_client,
                request: req,
                reply,
            },
        );
        self.arm(now.mono + PROBE_TIMEOUT, Timer::Probe(token));
    }

    fn register(&mut self, now: Now, req: ConnectRequest, reply: Option<String>) {
        let info = ClientInfo {
            id: req.client_id.clone(),
            hb_inbox: req.heartbeat_inbox.clone(),
            conn_id: req.conn_id.clone(),
            protocol: req.protocol,
            ping_interval: req.ping_interval,
            ping_max_out: req.ping_max_out,
        };
        if let Err(e) = self.store.add_client(&info) {
            return self.respond(&reply, &connect_error(&e.to_string()));
        }
        let id = info.id.clone();
        self.add_client(now, info);
        self.debug(|| format!("[Client:{id}] Connected (Inbox={})", req.heartbeat_inbox));
        let mut resp = ConnectResponse {
            pub_prefix: self.info.publish.clone(),
            sub_requests: self.info.subscribe.clone(),
            unsub_requests: self.info.unsubscribe.clone(),
            close_requests: self.info.close.clone(),
            sub_close_requests: self.info.sub_close.clone(),
            protocol: 1,
            ..ConnectResponse::default()
        };
        if req.protocol >= 1 {
            resp.ping_requests = format!("{}.pings", self.info.discovery);
            resp.ping_interval = req.ping_interval;
            resp.ping_max_out = req.ping_max_out;
        }
        self.respond(&reply, &resp);
        self.client_registered(now);
    }

    /// Registers a client (new or recovered) and arms its first heartbeat.
    pub(crate) fn add_client(&mut self, now: Now, info: ClientInfo) {
        if !info.conn_id.is_empty() {
            self.conn_ids.insert(info.conn_id.clone(), info.id.clone());
        }
        let id = info.id.clone();
        let hb_at = now.mono + self.cfg.hb_interval;
        let client = Client {
            info,
            subs: Vec::new(),
            hb_fails: 0,
            hb_at: Some(hb_at),
            hb_wait: None,
        };
        self.clients.insert(id.clone(), client);
        self.arm(hb_at, Timer::Heartbeat(id));
    }

    fn on_close(&mut self, now: Now, reply: Option<String>, payload: &[u8]) {
        let Ok(req) = pb::CloseRequest::decode(payload) else {
            return self.respond(
                &reply,
                &pb::CloseResponse {
                    error: "stan: invalid close request".into(),
                },
            );
        };
        if !self.clients.contains_key(&req.client_id) {
            self.log(
                Level::Error,
                format!("Unknown client {:?} in close request", req.client_id),
            );
            return self.respond(
                &reply,
                &pb::CloseResponse {
                    error: "stan: unknown clientID".into(),
                },
            );
        }
        let id = req.client_id.clone();
        let inbox = self.clients[&id].info.hb_inbox.clone();
        self.close_client(now, &req.client_id);
        self.debug(|| format!("[Client:{id}] Closed (Inbox={inbox})"));
        self.respond(&reply, &pb::CloseResponse::default());
    }

    /// Unregisters a client; each subscription goes as by a sub-close.
    pub(crate) fn close_client(&mut self, now: Now, client_id: &str) {
        let Some(client) = self.clients.remove(client_id) else {
            return;
        };
        if let Err(e) = self.store.delete_client(client_id) {
            self.log(
                Level::Error,
                format!("[Client:{client_id}] Error deleting client: {e}"),
            );
        }
        if !client.info.conn_id.is_empty() {
            self.conn_ids.remove(&client.info.conn_id);
        }
        for (channel, sub) in client.subs {
            self.remove_sub(now, &channel, sub, false);
        }
    }

    fn on_ping(&mut self, now: Now, reply: Option<String>, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let Ok(ping) = pb::Ping::decode(payload) else {
            return;
        };
        let Some(client_id) = self.conn_ids.get(&ping.conn_id).cloned() else {
            let err = "client has been replaced or is no longer registered";
            return self.respond(&reply, &pb::PingResponse { error: err.into() });
        };
        // A client that pings is alive: re-check a failing heartbeat right away.
        if let Some(c) = self.clients.get_mut(&client_id) {
            if c.hb_fails > 0 && c.hb_wait.is_none() {
                let at = now.mono + Duration::from_millis(1);
                c.hb_at = Some(at);
                self.arm(at, Timer::Heartbeat(client_id));
            }
        }
        self.respond(&reply, &pb::PingResponse::default());
    }

    fn send_heartbeat(&mut self, now: Now, at: Instant, client_id: &str) {
        let Some(c) = self.clients.get_mut(client_id) else {
            return;
        };
        if c.hb_at != Some(at) || c.hb_wait.is_some() {
            return;
        }
        c.hb_at = None;
        let inbox = c.info.hb_inbox.clone();
        let token = self.request(
            &inbox,
            Vec::new(),
            Outstanding::Heartbeat {
                client_id: client_id.to_string(),
            },
        );
        let deadline = now.mono + self.cfg.hb_timeout;
        if let Some(c) = self.clients.get_mut(client_id) {
            c.hb_wait = Some((token, deadline));
        }
        self.arm(
            deadline,
            Timer::HeartbeatTimeout(client_id.to_string(), token),
        );
    }

    /// An answer arrived on the reply inbox.
    fn on_reply(&mut self, now: Now, subject: &[u8], payload: &[u8]) {
        let Some(token) = self.token_of(subject) else {
            return;
        };
        match self.outstanding.remove(&token) {
            Some(Outstanding::Heartbeat { client_id }) => {
                self.heartbeat_answered(now, &client_id, token)
            }
            Some(Outstanding::Probe {
                old_client, reply, ..
            }) => {
                self.probing.remove(&old_client);
                self.debug(|| format!("[Client:{old_client}] Connect failed; already connected"));
                self.respond(
                    &Some(reply),
                    &connect_error("stan: clientID already registered"),
                );
            }
            Some(Outstanding::Competitor) => self.competitor_answered(payload),
            Some(Outstanding::Ignored) | None => {}
        }
    }

    fn heartbeat_answered(&mut self, now: Now, client_id: &str, token: u64) {
        let Some(c) = self.clients.get_mut(client_id) else {
            return;
        };
        if c.hb_wait.map(|w| w.0) != Some(token) {
            return;
        }
        c.hb_wait = None;
        let recovered = c.hb_fails > 0;
        c.hb_fails = 0;
        let at = now.mono + self.cfg.hb_interval;
        c.hb_at = Some(at);
        self.arm(at, Timer::Heartbeat(client_id.to_string()));
        if recovered {
            self.set_failed_heartbeat(now, client_id, false);
        }
    }

    /// A request timed out or had no responders.
    fn request_failed(&mut self, now: Now, token: u64) {
        match self.outstanding.remove(&token) {
            Some(Outstanding::Heartbeat { client_id }) => {
                self.heartbeat_missed(now, &client_id, token)
            }
            Some(Outstanding::Probe {
                old_client,
                request,
                reply,
            }) => {
                self.probing.remove(&old_client);
                let id = request.client_id.clone();
                let inbox = request.heartbeat_inbox.clone();
                self.close_client(now, &old_client);
                self.debug(|| format!("[Client:{id}] Replaced old client (Inbox={inbox})"));
                self.register(now, request, Some(reply));
            }
            // Nobody answered for this cluster ID: the start goes on.
            Some(Outstanding::Competitor) => self.open_for_clients(now),
            Some(Outstanding::Ignored) | None => {}
        }
    }

    fn heartbeat_missed(&mut self, now: Now, client_id: &str, token: u64) {
        let Some(c) = self.clients.get_mut(client_id) else {
            return;
        };
        if c.hb_wait.map(|w| w.0) != Some(token) {
            return;
        }
        c.hb_wait = None;
        c.hb_fails += 1;
        #[cfg(feature = "planted-bugs")]
        if super::planted(super::PlantedBug::HeartbeatCount) && c.hb_fails == self.cfg.hb_fail_count
        {
            c.hb_fails += 1;
        }
        let fails = c.hb_fails;
        if fails > self.cfg.hb_fail_count {
            self.log(
                Level::Error,
                format!("[Client:{client_id}] Timed out on heartbeats"),
            );
            self.stats.heartbeat_closes += 1;
            self.close_client(now, client_id);
            return;
        }
        let at = now.mono + self.cfg.hb_interval;
        if let Some(c) = self.clients.get_mut(client_id) {
            c.hb_at = Some(at);
        }
        self.arm(at, Timer::Heartbeat(client_id.to_string()));
        if fails == 1 {
            self.set_failed_heartbeat(now, client_id, true);
        }
    }

    fn set_failed_heartbeat(&mut self, now: Now, client_id: &str, failed: bool) {
        let Some(c) = self.clients.get(client_id) else {
            return;
        };
        let subs = c.subs.clone();
        for (channel, id) in subs {
            if let Some(sub) = self
                .channels
                .get_mut(&channel)
                .and_then(|ch| ch.subs.get_mut(&id))
            {
                sub.failed_hb = failed;
            }
        }
        if !failed {
            // Queue members that were skipped may now take messages again.
            let channels: BTreeSet<String> = self.clients[client_id]
                .subs
                .iter()
                .map(|s| s.0.clone())
                .collect();
            for ch in channels {
                self.deliver_channel(now, &ch);
            }
        }
    }

    /// Decodes a control message sent on a client subject (ignored by design).
    pub(crate) fn is_ctrl_msg(payload: &[u8]) -> bool {
        CtrlMsg::decode(payload).is_ok()
    }
}

fn connect_error(text: &str) -> ConnectResponse {
    ConnectResponse {
        error: text.to_string(),
        ..ConnectResponse::default()
    }
}

/// Client IDs must match `^[a-zA-Z0-9_-]+$`.
pub(crate) fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

//! The embedded NATS server as a state machine: client connections, authentication,
//! keepalive, routing, and the limits that protect other clients from a bad one.

use core::net::SocketAddr;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::account::{AccountConfig, AccountId, User};
use super::conn::{
    CloseReason, Conn, ConnId, ConnectOptions, Info, InternalMsg, InternalQueue, Phase,
    Subscription, Traffic,
};
use super::proto::{self, ClientOp, Limits, ParseError};
use super::subject::is_valid_literal_subject;
use super::sublist::{SubKey, Sublist};
use crate::gofmt::{go_quote, go_quote_bytes};
use crate::log::{Level, LogLine, Origin, Verbosity};
use crate::rng::Rng;
use crate::time::{Instant, Now};

#[path = "route.rs"]
pub mod route;

#[path = "accounts.rs"]
mod accounts;
pub(crate) use accounts::AccountState;

/// How clients must authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    UserPass {
        user: String,
        pass: String,
    },
    Token(String),
    /// Users by name, each in its account (`authorization { users }` and the
    /// users of `accounts`).
    Users {
        users: Vec<User>,
        /// Clients that send no credentials log in as this user.
        no_auth_user: Option<String>,
    },
}

/// Settings of the embedded NATS server, with the NATS server's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server ID; generated from the seed when `None`.
    pub server_id: Option<String>,
    /// The server name; the server ID when `None`.
    pub server_name: Option<String>,
    pub host: String,
    pub port: u16,
    pub max_payload: usize,
    pub max_control_line: usize,
    /// Bytes that may wait toward one client before it is closed as a slow consumer.
    pub max_pending: usize,
    pub max_connections: usize,
    /// Subscriptions one client may hold; 0 = unlimited.
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub auth: Auth,
    pub auth_timeout: Duration,
    pub verbosity: Verbosity,
    pub rng_seed: u64,
    /// `http_base_path` as written; `/varz` shows it and a reload cannot change it.
    pub http_base_path: String,
    /// Clients must speak TLS: INFO says so, and the driver expects a TLS handshake
    /// right after it (shared/spec/PROTOCOL.md, INFO).
    pub tls_required: bool,
    /// Clients must present a verified certificate.
    pub tls_verify: bool,
    /// How long a client has to complete the TLS handshake; shown by `/varz`.
    pub tls_timeout: Duration,
    /// Payload bytes a trace line shows before `...`; 0 shows all.
    pub max_traced_msg_len: usize,
    /// The host and port INFO tells clients (`client_advertise`), when not the
    /// listen address: the address clients reach through a proxy or NAT.
    pub client_advertise: Option<(String, u16)>,
    /// Routes to other NATS servers (`cluster { }`); `None` without a cluster port.
    pub cluster: Option<route::ClusterConfig>,
    /// Accounts besides `$G`, checked with [`super::account::validate`].
    pub accounts: Vec<AccountConfig>,
    /// What the in-process client (the streaming server) logs in with; its
    /// account is the one these credentials lead to.
    pub internal_login: Login,
}

/// Credentials of an in-process client; all `None` logs into `$G`, or the account
/// of `no_auth_user`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_id: None,
            server_name: None,
            host: "0.0.0.0".into(),
            port: 4222,
            max_payload: 1024 * 1024,
            max_control_line: proto::MAX_CONTROL_LINE,
            max_pending: 64 * 1024 * 1024,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            auth: Auth::None,
            auth_timeout: Duration::from_secs(2),
            verbosity: Verbosity::default(),
            rng_seed: 0,
            http_base_path: String::new(),
            tls_required: false,
            tls_verify: false,
            tls_timeout: Duration::from_secs(2),
            max_traced_msg_len: 0,
            client_advertise: None,
            cluster: None,
            accounts: Vec::new(),
            internal_login: Login::default(),
        }
    }
}

/// The user, password and token of an authorization, for naming what a reload changed.
fn auth_parts(auth: &Auth) -> (Option<&str>, Option<&str>, Option<&str>) {
    match auth {
        Auth::None | Auth::Users { .. } => (None, None, None),
        Auth::UserPass { user, pass } => (Some(user), Some(pass), None),
        Auth::Token(t) => (None, None, Some(t)),
    }
}

/// The NATS server version this server presents itself as.
pub const NATS_VERSION: &str = "2.9.24";

/// What the server asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the connection, in order.
    Send { conn: ConnId, data: Vec<u8> },
    /// Close the connection once the bytes sent before have been written.
    Close { conn: ConnId },
    /// Print a log line.
    Log(LogLine),
    /// Open a route to `url`, then report the outcome with
    /// [`Server::accept_route`] or [`Server::route_dial_failed`].
    Dial { url: route::RouteUrl },
}

/// What the driver tells the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// Bytes read from a connection.
    Received { conn: ConnId, bytes: &'a [u8] },
    /// The driver wrote this many bytes of earlier `Send` outputs.
    Flushed { conn: ConnId, bytes: usize },
    /// The peer closed the connection or it failed.
    Closed { conn: ConnId },
    /// The client's TLS handshake failed, for the reason `error` gives in the NATS
    /// server's words; the connection is gone.
    TlsFailed { conn: ConnId, error: &'a str },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Ping,
    Auth,
}

/// Server-wide counters shown by `/varz`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub traffic: Traffic,
    pub total_connections: u64,
    pub slow_consumers: u64,
}

/// The embedded NATS server.
pub struct Server {
    cfg: Config,
    server_id: String,
    server_name: String,
    rng: Rng,
    next_conn: u64,
    conns: FxHashMap<ConnId, Conn>,
    subs: Vec<Option<Subscription>>,
    free_subs: Vec<u32>,
    /// `$G` first, then the configured accounts; never shrinks, so that an id
    /// stays valid across reloads.
    accounts: Vec<AccountState>,
    /// Where answers to forwarded service requests go back to.
    responses: accounts::Responses,
    timers: BTreeSet<(Instant, ConnId, TimerKind)>,
    dirty: VecDeque<ConnId>,
    ready: VecDeque<Output>,
    stats: ServerStats,
    /// Connections whose pending bytes passed the stall mark; while any exist the driver
    /// should stop reading new input so fast publishers wait for slow readers.
    stalled: BTreeSet<ConnId>,
    /// Connections that published to a reader in `stalled`: their input is what the
    /// driver holds back, so that everybody else goes on at full speed.
    throttled: BTreeSet<ConnId>,
    internal: InternalQueue,
    routing: route::Routing,
}

impl Server {
    pub fn new(cfg: Config) -> Self {
        let mut rng = Rng::new(cfg.rng_seed);
        let server_id = cfg
            .server_id
            .clone()
            .unwrap_or_else(|| format!("N{}", &rng.nuid()[..21]).to_uppercase());
        let server_name = cfg.server_name.clone().unwrap_or_else(|| server_id.clone());
        // Drawn only when needed, so that servers without a cluster draw as before.
        let dynamic_name = match &cfg.cluster {
            Some(c) if c.name.is_none() => rng.nuid(),
            _ => String::new(),
        };
        let routing = route::Routing::new(cfg.cluster.clone(), dynamic_name);
        let mut server = Server {
            cfg,
            server_id,
            server_name,
            rng,
            next_conn: 0,
            conns: FxHashMap::default(),
            subs: Vec::new(),
            free_subs: Vec::new(),
            accounts: vec![AccountState::new(super::account::GLOBAL)],
            responses: accounts::Responses::default(),
            timers: BTreeSet::new(),
            dirty: VecDeque::new(),
            ready: VecDeque::new(),
            stats: ServerStats::default(),
            stalled: BTreeSet::new(),
            throttled: BTreeSet::new(),
            internal: InternalQueue::default(),
            routing,
        };
        server.setup_accounts();
        server
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Applies a reloaded configuration (SIGHUP), as the NATS server does: the
    /// listening address and the name cannot change; everything else takes effect
    /// now. Clients the new authorization refuses and clients above a lowered
    /// connection limit are closed. Returns the `Reloaded: ...` lines, in the NATS
    /// server's order, for the caller to log with its own.
    pub fn reload(&mut self, new: Config) -> Result<Vec<String>, String> {
        fn fixed<T: std::fmt::Display + PartialEq>(
            name: &str,
            old: &T,
            new: &T,
        ) -> Result<(), String> {
            if old == new {
                Ok(())
            } else {
                Err(format!(
                    "config reload not supported for {name}: old={old}, new={new}"
                ))
            }
        }
        let old = &self.cfg;
        fixed(
            "ServerName",
            &old.server_name.clone().unwrap_or_default(),
            &new.server_name.clone().unwrap_or_default(),
        )?;
        fixed("Host", &old.host, &new.host)?;
        fixed("Port", &old.port, &new.port)?;
        fixed("MaxSubs", &old.max_subscriptions, &new.max_subscriptions)?;
        fixed("HTTPBasePath", &old.http_base_path, &new.http_base_path)?;
        self.check_cluster_reload(new.cluster.as_ref())?;
        let mut lines = Vec::new();
        if old.client_advertise != new.client_advertise {
            let shown = new
                .client_advertise
                .as_ref()
                .map(|(h, p)| format!("{h}:{p}"))
                .unwrap_or_default();
            lines.push(format!("Reloaded: client_advertise = {shown}"));
        }
        if old.max_traced_msg_len != new.max_traced_msg_len {
            lines.push(format!(
                "Reloaded: max_traced_msg_len = {}",
                new.max_traced_msg_len
            ));
        }
        if old.verbosity.trace != new.verbosity.trace {
            lines.push(format!("Reloaded: trace = {}", new.verbosity.trace));
        }
        if old.verbosity.debug != new.verbosity.debug {
            lines.push(format!("Reloaded: debug = {}", new.verbosity.debug));
        }
        let (old_user, old_pass, old_token) = auth_parts(&old.auth);
        let (new_user, new_pass, new_token) = auth_parts(&new.auth);
        if old_user != new_user {
            lines.push("Reloaded: authorization username".into());
        }
        if old_pass != new_pass {
            lines.push("Reloaded: authorization password".into());
        }
        if old_token != new_token {
            lines.push("Reloaded: authorization token".into());
        }
        if old.auth_timeout != new.auth_timeout {
            lines.push(format!(
                "Reloaded: authorization timeout = {}",
                // Go's `%v` of the seconds as a float64, which Rust's `{}` matches.
                new.auth_timeout.as_secs_f64()
            ));
        }
        if old.max_connections != new.max_connections {
            lines.push(format!(
                "Reloaded: max_connections = {}",
                new.max_connections
            ));
        }
        if old.ping_interval != new.ping_interval {
            lines.push(format!(
                "Reloaded: ping_interval = {}",
                crate::timefmt::go_duration(
                    i64::try_from(new.ping_interval.as_nanos()).unwrap_or(i64::MAX)
                )
            ));
        }
        if old.ping_max != new.ping_max {
            lines.push(format!("Reloaded: ping_max = {}", new.ping_max));
        }
        if old.max_control_line != new.max_control_line {
            lines.push(format!(
                "Reloaded: max_control_line = {}",
                new.max_control_line
            ));
        }
        if old.max_payload != new.max_payload {
            lines.push(format!("Reloaded: max_payload = {}", new.max_payload));
        }
        if old.max_pending != new.max_pending {
            lines.push(format!("Reloaded: max_pending = {}", new.max_pending));
        }
        if old.tls_timeout != new.tls_timeout {
            lines.push(format!(
                "Reloaded: tls timeout = {}",
                new.tls_timeout.as_secs_f64()
            ));
        }
        if let (
            Auth::Users {
                no_auth_user: Some(was),
                ..
            },
            Auth::Users {
                users,
                no_auth_user: None,
            },
        ) = (&old.auth, &new.auth)
        {
            if users.iter().any(|u| &u.name == was) {
                return Err(format!(
                    "config reload not supported for NoAuthUser: old={was}, new="
                ));
            }
        }
        let users = |a: &Auth| match a {
            Auth::Users { users, .. } => Some(users.clone()),
            _ => None,
        };
        if users(&old.auth) != users(&new.auth) {
            lines.push("Reloaded: authorization users".into());
        }
        let accounts_changed = old.accounts != new.accounts;
        if accounts_changed {
            lines.push("Reloaded: accounts".into());
        }
        let auth_changed = old.auth != new.auth || accounts_changed;
        let old_auth = old.auth.clone();
        let keep = (self.cfg.server_id.clone(), self.cfg.rng_seed);
        lines.extend(self.apply_cluster_reload(new.cluster.clone()));
        self.cfg = Config {
            server_id: keep.0,
            rng_seed: keep.1,
            ..new
        };
        let mut clients: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| !c.internal && c.phase != Phase::Closing && !self.is_route(c.id))
            .map(|c| c.id)
            .collect();
        clients.sort_unstable();
        if accounts_changed {
            self.setup_accounts();
        }
        if auth_changed {
            for &id in &clients {
                let c = &self.conns[&id];
                if !c.connect_received {
                    continue;
                }
                // Checking a bcrypt hash takes time: clients whose user entry did
                // not change keep their login without a second check.
                let unchanged = !accounts_changed
                    && c.user
                        .as_deref()
                        .is_some_and(|u| Self::same_user(&old_auth, &self.cfg.auth, u));
                if unchanged {
                    continue;
                }
                match self.authenticate(&c.opts) {
                    Some((account, user)) if account == c.account => {
                        self.conns.get_mut(&id).expect("listed above").user = user;
                    }
                    _ => self.auth_violation(id),
                }
            }
            clients.retain(|id| {
                self.conns
                    .get(id)
                    .is_some_and(|c| c.phase != Phase::Closing)
            });
        }
        if clients.len() > self.cfg.max_connections {
            // The most recent connections go, so long-lived clients keep working.
            let excess = clients.len() - self.cfg.max_connections;
            for &id in clients.iter().rev().take(excess) {
                self.send_err(id, "maximum connections exceeded");
                self.close(id, CloseReason::MaxConnectionsExceeded);
            }
            lines.insert(
                lines
                    .iter()
                    .position(|l| l.starts_with("Reloaded: max_connections"))
                    .unwrap_or(lines.len()),
                format!("Closed {excess} connections to fall within max_connections"),
            );
        }
        Ok(lines)
    }

    /// Registers a newly accepted connection and queues its `INFO`.
    pub fn accept(&mut self, now: Now, peer: SocketAddr) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        self.stats.total_connections += 1;
        let auth_required = self.cfg.auth != Auth::None;
        let phase = if auth_required {
            Phase::AwaitingConnect
        } else {
            Phase::Open
        };
        let mut conn = Conn::new(id, peer, phase, now, now.mono + self.cfg.ping_interval);
        conn.auth_deadline = auth_required.then(|| now.mono + self.cfg.auth_timeout);
        let json = self.client_info_json(id, peer, self.info_auth_required());
        proto::write_json_op(&mut conn.out, "INFO", &json);
        self.timers.insert((conn.ping_at, id, TimerKind::Ping));
        if let Some(d) = conn.auth_deadline {
            self.timers.insert((d, id, TimerKind::Auth));
        }
        // Routes do not count against the clients' limit.
        let over_limit = self.num_connections() >= self.cfg.max_connections;
        self.conns.insert(id, conn);
        self.mark_dirty(id);
        self.debug(|| format!("{peer} - cid:{} - Client connection created", id.0));
        if over_limit {
            self.send_err(id, "maximum connections exceeded");
            self.close(id, CloseReason::MaxConnectionsExceeded);
        }
        id
    }

    /// What INFO tells clients: a `no_auth_user` lets them in without credentials,
    /// though they still go through the check.
    pub(crate) fn info_auth_required(&self) -> bool {
        match &self.cfg.auth {
            Auth::None => false,
            Auth::Users { no_auth_user, .. } => no_auth_user.is_none(),
            _ => true,
        }
    }

    /// The INFO a client gets, on connect and when the servers of the cluster change.
    fn client_info_json(&self, id: ConnId, peer: SocketAddr, auth_required: bool) -> Vec<u8> {
        let info = Info {
            server_id: &self.server_id,
            server_name: &self.server_name,
            version: NATS_VERSION,
            proto: 1,
            git_commit: "",
            go: "rust",
            host: self
                .cfg
                .client_advertise
                .as_ref()
                .map_or(&self.cfg.host, |(h, _)| h),
            port: self
                .cfg
                .client_advertise
                .as_ref()
                .map_or(self.cfg.port, |a| a.1),
            headers: true,
            auth_required,
            tls_required: self.cfg.tls_required,
            tls_verify: self.cfg.tls_required && self.cfg.tls_verify,
            max_payload: self.cfg.max_payload,
            client_id: id.0,
            client_ip: peer.ip().to_string(),
            connect_urls: self.client_connect_urls(),
        };
        serde_json::to_vec(&info).expect("INFO serializes")
    }

    pub fn handle_input(&mut self, now: Now, input: Input<'_>) {
        self.routing.now = now.mono;
        match input {
            Input::Received { conn, bytes } => self.received(now, conn, bytes),
            Input::Flushed { conn, bytes } => {
                let mark = self.stall_mark();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.unflushed = c.unflushed.saturating_sub(bytes);
                    if c.pending_bytes() <= mark {
                        self.unstall(conn);
                    }
                }
            }
            Input::Closed { conn } => {
                if self.conns.contains_key(&conn) {
                    self.remove_conn(conn, CloseReason::ClientClosed);
                }
            }
            Input::TlsFailed { conn, error } => {
                if self.conns.contains_key(&conn) {
                    self.error(conn, format_args!("{error}"));
                    self.remove_conn(conn, CloseReason::TlsHandshakeError);
                }
            }
        }
    }

    /// The TLS handshake of the client at `peer` completed with TLS `version`
    /// (`1.3`) and `cipher` (its name in Go's TLS library): `/connz` shows them and the
    /// debug log says so.
    pub fn tls_established(&mut self, peer: SocketAddr, version: &str, cipher: &str) {
        let Some(c) = self
            .conns
            .values_mut()
            .find(|c| !c.internal && c.peer == peer)
        else {
            return;
        };
        c.tls = Some((version.to_string(), cipher.to_string()));
        let id = c.id.0;
        self.debug(|| format!("{peer} - cid:{id} - TLS handshake complete"));
        self.debug(|| format!("{peer} - cid:{id} - TLS version {version}, cipher suite {cipher}"));
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.routing.now = now.mono;
        self.route_timers(now);
        while let Some(&(at, id, kind)) = self.timers.first() {
            if at > now.mono {
                break;
            }
            self.timers.pop_first();
            match kind {
                TimerKind::Auth => {
                    self.send_err(id, "Authentication Timeout");
                    self.close(id, CloseReason::AuthenticationTimeout);
                }
                TimerKind::Ping => self.ping_timer(now, id),
            }
        }
    }

    /// The next instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.timers.first().map(|t| t.0);
        match (conns, self.route_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(o) = self.ready.pop_front() {
                return Some(o);
            }
            let id = self.dirty.pop_front()?;
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            c.dirty = false;
            if !c.out.is_empty() {
                let data = std::mem::take(&mut c.out);
                c.unflushed += data.len();
                self.ready.push_back(Output::Send { conn: id, data });
            }
            if c.phase == Phase::Closing {
                let reason = c.close_reason.unwrap_or(CloseReason::ServerShutdown);
                self.remove_conn(id, reason);
                self.ready.push_back(Output::Close { conn: id });
            }
        }
    }

    fn received(&mut self, now: Now, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.last_in = now.mono;
        c.last_activity_wall_ns = now.wall_ns;
        if self.routing.routes.contains_key(&id) {
            self.route_bytes(now, id, bytes);
            return;
        }
        let limits = Limits {
            max_control_line: self.cfg.max_control_line,
            max_payload: self.cfg.max_payload,
        };
        let mut held = std::mem::take(&mut c.inbuf);
        let from_held = !held.is_empty();
        if from_held {
            held.extend_from_slice(bytes);
        }
        let buf: &[u8] = if from_held { &held } else { bytes };
        let mut pos = 0;
        let result = loop {
            match proto::parse_client_op(&buf[pos..], &limits) {
                Ok(Some((op, used))) => {
                    if self.cfg.verbosity.trace {
                        self.trace_in(id, &buf[pos..pos + used], &op);
                    }
                    pos += used;
                    if !self.process(now, id, op) {
                        return;
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            self.parse_failed(id, e);
            return;
        }
        if pos == buf.len() {
            return;
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        // Keep the incomplete operation for the next read, reusing the held buffer.
        c.inbuf = if from_held {
            held.drain(..pos);
            held
        } else {
            bytes[pos..].to_vec()
        };
    }

    fn parse_failed(&mut self, id: ConnId, e: ParseError) {
        let reason = match e {
            ParseError::UnknownOp => {
                self.send_err(id, "Unknown Protocol Operation");
                CloseReason::ParseError
            }
            ParseError::ControlLineTooLong => {
                self.send_err(id, "Maximum Control Line Exceeded");
                CloseReason::MaxControlLineExceeded
            }
            ParseError::MaxPayload { size, max } => {
                self.error(
                    id,
                    format_args!("maximum payload exceeded: {size} vs {max}"),
                );
                self.send_err(id, "Maximum Payload Violation");
                CloseReason::MaxPayloadExceeded
            }
            ParseError::BadArgs(what) => {
                self.error(id, format_args!("{what} Parse Error"));
                CloseReason::ProtocolViolation
            }
        };
        self.close(id, reason);
    }

    /// Applies one operation; false when the connection is being closed.
    fn process(&mut self, now: Now, id: ConnId, op: ClientOp<'_>) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if c.phase == Phase::AwaitingConnect && !matches!(op, ClientOp::Connect(_)) {
            self.auth_violation(id);
            return false;
        }
        match op {
            ClientOp::Connect(json) => return self.connect(id, json),
            ClientOp::Ping => {
                c.out.extend_from_slice(proto::PONG);
                self.trace_out(id, || "PONG".into());
            }
            ClientOp::Pong => c.pings_out = 0,
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(id, subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.unsubscribe(id, sid, max),
            ClientOp::Pub {
                subject,
                reply,
                header_len,
                payload,
            } => {
                self.publish(now, id, subject, reply, header_len, payload);
            }
            ClientOp::Info(_) | ClientOp::Ok | ClientOp::Err(_) => {}
        }
        self.mark_dirty(id);
        true
    }

    fn connect(&mut self, id: ConnId, json: &[u8]) -> bool {
        let opts: ConnectOptions = match serde_json::from_slice(json) {
            Ok(o) => o,
            Err(e) => {
                self.error(id, format_args!("{e}"));
                self.close(id, CloseReason::ProtocolViolation);
                return false;
            }
        };
        let Some((account, user)) = self.authenticate(&opts) else {
            // The NATS server names the user only when it has a list of them.
            if let (Some(c), Auth::Users { .. }) = (self.conns.get_mut(&id), &self.cfg.auth) {
                c.opts.user = opts.user.clone();
            }
            self.auth_violation(id);
            return false;
        };
        if opts.no_responders && !opts.headers {
            self.send_err(id, "no responders requires headers support");
            self.close(id, CloseReason::NoRespondersRequiresHeaders);
            return false;
        }
        let c = self.conns.get_mut(&id).expect("caller checked");
        if let Some(d) = c.auth_deadline.take() {
            self.timers.remove(&(d, id, TimerKind::Auth));
        }
        c.phase = Phase::Open;
        c.connect_received = true;
        c.account = account;
        c.user = user;
        let verbose = opts.verbose;
        c.opts = opts;
        if verbose {
            c.out.extend_from_slice(proto::OK);
            self.trace_out(id, || "OK".into());
        }
        self.mark_dirty(id);
        true
    }

    /// The account and user a client's credentials log it into; `None` when they
    /// are refused. Secrets are compared as the NATS server compares them (bcrypt
    /// hashes included).
    pub(crate) fn authenticate(
        &self,
        opts: &ConnectOptions,
    ) -> Option<(AccountId, Option<String>)> {
        use super::account::secret_matches;
        let given = |s: &Option<String>| s.clone().unwrap_or_default();
        let ok = match &self.cfg.auth {
            Auth::None => true,
            Auth::UserPass { user, pass } => {
                opts.user.as_deref() == Some(user) && secret_matches(pass, &given(&opts.pass))
            }
            Auth::Token(t) => secret_matches(t, &given(&opts.auth_token)),
            Auth::Users {
                users,
                no_auth_user,
            } => {
                let (name, pass) = (given(&opts.user), given(&opts.pass));
                let anonymous =
                    name.is_empty() && pass.is_empty() && given(&opts.auth_token).is_empty();
                let user = match no_auth_user {
                    Some(n) if anonymous => users.iter().find(|u| &u.name == n)?,
                    _ => {
                        let u = users.iter().find(|u| !name.is_empty() && u.name == name)?;
                        if !secret_matches(&u.pass, &pass) {
                            return None;
                        }
                        u
                    }
                };
                return Some((self.account_id(&user.account)?, Some(user.name.clone())));
            }
        };
        ok.then_some((AccountId::GLOBAL, None))
    }

    fn auth_violation(&mut self, id: ConnId) {
        let user = self.conns.get(&id).and_then(|c| c.opts.user.clone());
        match (&self.cfg.auth, user) {
            (Auth::UserPass { .. } | Auth::Users { .. }, Some(u)) => {
                self.error(id, format_args!("authentication error - User {u:?}"))
            }
            _ => self.error(id, format_args!("authentication error")),
        }
        self.send_err(id, "Authorization Violation");
        self.close(id, CloseReason::AuthenticationViolation);
    }

    fn subscribe(&mut self, id: ConnId, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        let c = self.conns.get_mut(&id).expect("caller checked");
        let verbose = c.opts.verbose;
        let limit = self.cfg.max_subscriptions;
        if limit > 0 && !c.internal && c.subs.len() >= limit && !c.subs.contains_key(sid) {
            // The client keeps its connection and the subscriptions it has.
            self.error(id, format_args!("maximum subscriptions exceeded"));
            self.send_err(id, "maximum subscriptions exceeded");
            return;
        }
        let c = self.conns.get_mut(&id).expect("caller checked");
        // A second SUB with a known sid keeps the first, as the NATS server does.
        if !c.subs.contains_key(sid) {
            let key = match self.free_subs.pop() {
                Some(k) => SubKey(k),
                None => {
                    self.subs.push(None);
                    SubKey((self.subs.len() - 1) as u32)
                }
            };
            let account = c.account;
            if self.accounts[account.0 as usize]
                .sublist
                .insert(subject, queue, key)
                .is_err()
            {
                self.free_subs.push(key.0);
                self.send_err(id, "Invalid Subject");
                return;
            }
            let c = self.conns.get_mut(&id).expect("caller checked");
            self.subs[key.0 as usize] = Some(Subscription {
                conn: id,
                account,
                forward: None,
                sid: sid.into(),
                subject: subject.into(),
                queue: queue.map(Into::into),
                max: None,
                delivered: 0,
            });
            c.subs.insert(sid.into(), key);
            self.local_interest(account, subject, queue, true);
        }
        let c = self.conns.get_mut(&id).expect("caller checked");
        if verbose {
            c.out.extend_from_slice(proto::OK);
            self.trace_out(id, || "OK".into());
        }
    }

    fn unsubscribe(&mut self, id: ConnId, sid: &[u8], max: Option<u64>) {
        let c = self.conns.get_mut(&id).expect("caller checked");
        if c.opts.verbose {
            c.out.extend_from_slice(proto::OK);
            self.trace_out(id, || "OK".into());
        }
        let c = self.conns.get_mut(&id).expect("caller checked");
        let Some(&key) = c.subs.get(sid) else { return };
        let sub = self.subs[key.0 as usize]
            .as_mut()
            .expect("indexed subscription exists");
        match max {
            Some(m) if m > sub.delivered => sub.max = Some(m),
            _ => self.remove_sub(key),
        }
    }

    fn remove_sub(&mut self, key: SubKey) {
        let Some(sub) = self.subs[key.0 as usize].take() else {
            return;
        };
        self.accounts[sub.account.0 as usize].sublist.remove(
            &sub.subject,
            sub.queue.as_deref(),
            key,
        );
        let interest = match &sub.forward {
            Some(f) => f.is_interest(),
            None => !self.is_route(sub.conn),
        };
        if interest {
            self.local_interest(sub.account, &sub.subject, sub.queue.as_deref(), false);
        }
        if let Some(c) = self.conns.get_mut(&sub.conn) {
            c.subs.remove(&sub.sid);
        }
        self.free_subs.push(key.0);
    }

    fn publish(
        &mut self,
        now: Now,
        id: ConnId,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> bool {
        let c = self.conns.get_mut(&id).expect("caller checked");
        c.traffic.in_msgs += 1;
        c.traffic.in_bytes += payload.len() as u64;
        self.stats.traffic.in_msgs += 1;
        self.stats.traffic.in_bytes += payload.len() as u64;
        let (verbose, pedantic) = (c.opts.verbose, c.opts.pedantic);
        let account = c.account;
        if verbose {
            c.out.extend_from_slice(proto::OK);
            self.trace_out(id, || "OK".into());
        }
        if pedantic && !is_valid_literal_subject(subject) {
            self.send_err(id, "Invalid Publish Subject");
            return false;
        }
        let delivered = self.fan_out(
            now,
            id,
            account,
            subject,
            reply,
            header_len,
            payload,
            accounts::Origin::Client,
        );
        if !delivered {
            if let Some(reply) = reply {
                self.no_responders(id, reply);
            }
        }
        delivered
    }

    /// Delivers a message from `id` in `account` to the local subscribers and, when
    /// it did not come from a route, to the routes with interest; what crosses into
    /// other accounts follows (see [`accounts::Origin`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fan_out(
        &mut self,
        now: Now,
        id: ConnId,
        account: AccountId,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
        origin: accounts::Origin<'_>,
    ) -> bool {
        let echo = self.conns.get(&id).is_none_or(|c| c.opts.echo);
        let matches = self.accounts[account.0 as usize].sublist.matches(subject);
        let mut delivered = false;
        let mut targets = route::RouteTargets::default();
        let mut forwards = Vec::new();
        let to_routes = matches!(origin, accounts::Origin::Client);
        let route_of = |s: &Server, key: SubKey| {
            s.subs[key.0 as usize]
                .as_ref()
                .map(|sub| sub.conn)
                .filter(|&c| s.is_route(c))
        };
        for &key in &matches.plain {
            if let Some(f) = self.subs[key.0 as usize]
                .as_ref()
                .and_then(|s| s.forward.clone())
            {
                forwards.push(f);
                continue;
            }
            match route_of(self, key) {
                Some(r) if to_routes && self.route_open(r) => targets.add(r, None),
                Some(_) => {}
                None => {
                    delivered |= self.deliver(key, id, echo, subject, reply, header_len, payload)
                }
            }
        }
        for (queue, members) in &matches.groups {
            if let accounts::Origin::Route(chosen) = origin {
                if !chosen.contains(&&**queue) {
                    continue;
                }
            }
            let local: Vec<SubKey> = members
                .iter()
                .copied()
                .filter(|&k| route_of(self, k).is_none())
                .collect();
            if !local.is_empty() {
                // Local members first: a message stays on this server when it can.
                let key = local[self.rng.below(local.len())];
                delivered |= self.deliver(key, id, true, subject, reply, header_len, payload);
            } else if to_routes {
                let remote: Vec<ConnId> = members
                    .iter()
                    .filter_map(|&k| route_of(self, k))
                    .filter(|&r| self.route_open(r))
                    .collect();
                if !remote.is_empty() {
                    let r = remote[self.rng.below(remote.len())];
                    targets.add(r, Some(queue));
                }
            }
        }
        if !targets.targets.is_empty() {
            let name = self.accounts[account.0 as usize].name.clone();
            delivered |= self.send_to_routes(&name, targets, subject, reply, header_len, payload);
        }
        for f in forwards {
            delivered |= self.forward(now, id, f, subject, reply, header_len, payload, origin);
        }
        delivered
    }

    /// Writes one message to a subscriber; false if it was not delivered.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        key: SubKey,
        from: ConnId,
        echo: bool,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> bool {
        let mark = self.stall_mark();
        let Some(sub) = self.subs[key.0 as usize].as_mut() else {
            return false;
        };
        if !echo && sub.conn == from {
            return false;
        }
        let Some(c) = self.conns.get_mut(&sub.conn) else {
            return false;
        };
        if c.phase == Phase::Closing {
            return false;
        }
        if c.internal {
            let sid = sub
                .sid
                .iter()
                .try_fold(0u64, |v, d| {
                    d.is_ascii_digit().then(|| v * 10 + u64::from(d - b'0'))
                })
                .unwrap_or(0);
            let body = &payload[header_len.unwrap_or(0)..];
            self.internal.push(sub.conn, sid, subject, reply, body);
            c.traffic.out_msgs += 1;
            c.traffic.out_bytes += payload.len() as u64;
            sub.delivered += 1;
            return true;
        }
        // Clients that did not ask for headers get the message without them.
        let (header_len, payload) = match header_len {
            Some(h) if !c.opts.headers => (None, &payload[h..]),
            other => (other, payload),
        };
        proto::write_msg(&mut c.out, subject, &sub.sid, reply, header_len, payload);
        if self.cfg.verbosity.trace {
            let line = msg_line(subject, &sub.sid, reply, header_len, payload.len());
            self.ready
                .push_back(trace_line(c.peer, sub.conn, format!("->> [{line}]")));
        }
        c.traffic.out_msgs += 1;
        c.traffic.out_bytes += payload.len() as u64;
        self.stats.traffic.out_msgs += 1;
        self.stats.traffic.out_bytes += payload.len() as u64;
        sub.delivered += 1;
        let done = sub.max.is_some_and(|m| sub.delivered >= m);
        let conn = sub.conn;
        let pending = c.pending_bytes();
        let over = pending > self.cfg.max_pending;
        if pending > mark {
            self.stalled.insert(conn);
        }
        if self.stalled.contains(&conn) && self.conns.get(&from).is_some_and(|p| !p.internal) {
            self.throttled.insert(from);
        }
        self.mark_dirty(conn);
        if done {
            self.remove_sub(key);
        }
        if over {
            self.slow_consumer(conn);
        }
        true
    }

    /// Tells a requester at once that nobody can answer (status 503), if it asked to know.
    fn no_responders(&mut self, id: ConnId, reply: &[u8]) {
        let c = &self.conns[&id];
        if !c.opts.no_responders {
            return;
        }
        let matches = self.accounts[c.account.0 as usize].sublist.matches(reply);
        let own = matches
            .plain
            .iter()
            .find_map(|k| self.subs[k.0 as usize].as_ref().filter(|s| s.conn == id));
        if let Some(sub) = own {
            let sid = sub.sid.clone();
            let c = self.conns.get_mut(&id).expect("checked above");
            proto::write_msg(
                &mut c.out,
                reply,
                &sid,
                None,
                Some(proto::NO_RESPONDERS_HEADER.len()),
                proto::NO_RESPONDERS_HEADER,
            );
        }
    }

    fn slow_consumer(&mut self, id: ConnId) {
        let max = self.cfg.max_pending;
        self.stats.slow_consumers += 1;
        self.error_level(
            id,
            Level::Info,
            format_args!("Slow Consumer Detected: MaxPending of {max} Exceeded"),
        );
        // Pending output is dropped: it is what made the client slow.
        if let Some(c) = self.conns.get_mut(&id) {
            c.out.clear();
        }
        self.close(id, CloseReason::SlowConsumerPendingBytes);
    }

    fn ping_timer(&mut self, now: Now, id: ConnId) {
        let interval = self.cfg.ping_interval;
        let max = self.cfg.ping_max;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        // A client that sent something within the interval is alive; no need to ask.
        if now.mono.saturating_since(c.last_in) >= interval || c.pings_out > 0 {
            if c.pings_out + 1 > max {
                self.debug(|| "Stale Client Connection - Closing".to_string());
                self.send_err(id, "Stale Connection");
                self.close(id, CloseReason::StaleConnection);
                return;
            }
            c.pings_out += 1;
            c.out.extend_from_slice(proto::PING);
            self.trace_out(id, || "PING".into());
            self.mark_dirty(id);
        }
        let c = self.conns.get_mut(&id).expect("still open");
        c.ping_at = now.mono + interval;
        self.timers.insert((c.ping_at, id, TimerKind::Ping));
    }

    fn send_err(&mut self, id: ConnId, text: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            proto::write_err(&mut c.out, text);
            self.trace_out(id, || format!("-ERR {text}"));
            self.mark_dirty(id);
        }
    }

    /// Starts closing: subscriptions go now, queued bytes are still written.
    fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.phase = Phase::Closing;
        c.close_reason = Some(reason);
        let keys: Vec<SubKey> = c.subs.values().copied().collect();
        for k in keys {
            self.remove_sub(k);
        }
        self.mark_dirty(id);
    }

    fn remove_conn(&mut self, id: ConnId, reason: CloseReason) {
        self.unstall(id);
        self.throttled.remove(&id);
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        self.timers.remove(&(c.ping_at, id, TimerKind::Ping));
        if let Some(d) = c.auth_deadline {
            self.timers.remove(&(d, id, TimerKind::Auth));
        }
        let mut keys: Vec<SubKey> = c.subs.drain().map(|(_, k)| k).collect();
        keys.sort_unstable();
        let route = self.is_route(id);
        for k in keys {
            if let Some(sub) = self.subs[k.0 as usize].take() {
                self.accounts[sub.account.0 as usize].sublist.remove(
                    &sub.subject,
                    sub.queue.as_deref(),
                    k,
                );
                self.free_subs.push(k.0);
                if !route {
                    self.local_interest(sub.account, &sub.subject, sub.queue.as_deref(), false);
                }
            }
        }
        let peer = c.peer;
        if route {
            self.ready.push_back(Output::Log(LogLine {
                origin: Origin::Nats,
                level: Level::Info,
                text: format!(
                    "{peer} - rid:{} - Router connection closed: {}",
                    id.0,
                    reason.text()
                ),
            }));
            self.route_removed(id, reason);
            return;
        }
        self.debug(|| {
            format!(
                "{peer} - cid:{} - Client connection closed: {}",
                id.0,
                reason.text()
            )
        });
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push_back(id);
            }
        }
    }

    /// Traces an operation received from a client as the NATS server does with `-V`:
    /// its control line, a `CONNECT` without its secrets, a message's payload.
    fn trace_in(&mut self, id: ConnId, raw: &[u8], op: &ClientOp<'_>) {
        let Some(peer) = self.conns.get(&id).map(|c| c.peer) else {
            return;
        };
        let line = &raw[..memchr::memchr(b'\n', raw).unwrap_or(raw.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name_end = line
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(line.len());
        let name = String::from_utf8_lossy(&line[..name_end]).to_ascii_uppercase();
        let arg = match op {
            ClientOp::Connect(json) => redact_secrets(json),
            _ => String::from_utf8_lossy(line[name_end..].trim_ascii_start()).into_owned(),
        };
        let text = if arg.is_empty() {
            format!("<<- [{name}]")
        } else {
            format!("<<- [{name} {arg}]")
        };
        self.ready.push_back(trace_line(peer, id, text));
        if let ClientOp::Pub { payload, .. } = op {
            let text = payload_trace(payload, self.cfg.max_traced_msg_len);
            self.ready.push_back(trace_line(peer, id, text));
        }
    }

    /// Traces an operation sent to a client (`->> [PONG]`).
    fn trace_out(&mut self, id: ConnId, op: impl FnOnce() -> String) {
        if !self.cfg.verbosity.trace {
            return;
        }
        if let Some(c) = self.conns.get(&id).filter(|c| !c.internal) {
            let text = format!("->> [{}]", op());
            self.ready.push_back(trace_line(c.peer, id, text));
        }
    }

    fn debug(&mut self, text: impl FnOnce() -> String) {
        if self.cfg.verbosity.debug {
            self.ready.push_back(Output::Log(LogLine {
                origin: Origin::Nats,
                level: Level::Debug,
                text: text(),
            }));
        }
    }

    fn error(&mut self, id: ConnId, args: std::fmt::Arguments<'_>) {
        self.error_level(id, Level::Error, args);
    }

    fn error_level(&mut self, id: ConnId, level: Level, args: std::fmt::Arguments<'_>) {
        let peer = self
            .conns
            .get(&id)
            .map(|c| c.peer.to_string())
            .unwrap_or_default();
        let text = format!("{peer} - cid:{} - {args}", id.0);
        self.ready.push_back(Output::Log(LogLine {
            origin: Origin::Nats,
            level,
            text,
        }));
    }

    /// Adds an in-process client (the streaming server) that subscribes and publishes
    /// through the same routing as socket clients, in the account the configured
    /// [`Login`] leads to; Err with the NATS client's words when the credentials
    /// are refused.
    pub fn add_internal_client(&mut self, now: Now, name: &str) -> Result<ConnId, String> {
        let login = self.cfg.internal_login.clone();
        let account = if login == Login::default() {
            // Without credentials a single user or token of the server is what it
            // would log in with; users need a `no_auth_user` to let it in.
            match &self.cfg.auth {
                Auth::Users { .. } => match self.authenticate(&ConnectOptions::default()) {
                    Some((a, _)) => a,
                    None => return Err("nats: authorization violation".into()),
                },
                _ => AccountId::GLOBAL,
            }
        } else {
            let opts = ConnectOptions {
                user: login.user.clone(),
                pass: login.pass.clone(),
                auth_token: login.token.clone(),
                ..ConnectOptions::default()
            };
            match self.authenticate(&opts) {
                Some((a, _)) => a,
                None => return Err("nats: authorization violation".into()),
            }
        };
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut conn = Conn::new(id, peer, Phase::Open, now, now.mono);
        conn.internal = true;
        conn.connect_received = true;
        conn.opts = ConnectOptions {
            name: name.to_string(),
            lang: "rust".into(),
            user: login.user,
            ..ConnectOptions::default()
        };
        conn.account = account;
        self.conns.insert(id, conn);
        Ok(id)
    }

    /// The account of an in-process client, by name.
    pub fn account_of(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).map(|c| self.account_name(c.account))
    }

    /// Subscribes an in-process client; `sid` comes back in each [`InternalMsg`].
    pub fn internal_subscribe(
        &mut self,
        conn: ConnId,
        subject: &str,
        sid: u64,
    ) -> Result<(), super::sublist::InvalidSubject> {
        let sid_text = sid.to_string();
        let before = self.num_subscriptions();
        self.subscribe(conn, subject.as_bytes(), None, sid_text.as_bytes());
        if self.num_subscriptions() == before {
            // The generic path reports an invalid subject to the client as -ERR; an
            // in-process client has no socket, so drop those bytes and say it here.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.out.clear();
            }
            return Err(super::sublist::InvalidSubject);
        }
        Ok(())
    }

    pub fn internal_unsubscribe(&mut self, conn: ConnId, sid: u64) {
        self.unsubscribe(conn, sid.to_string().as_bytes(), None);
    }

    /// Publishes from an in-process client; false when no subscriber received it.
    pub fn internal_publish(
        &mut self,
        now: Now,
        conn: ConnId,
        subject: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        self.publish(now, conn, subject, reply, None, payload)
    }

    /// The next message delivered to an in-process subscriber.
    pub fn take_internal(&mut self) -> Option<InternalMsg> {
        self.internal.pop()
    }

    /// Subject, reply and payload of a message from [`Server::take_internal`]; valid
    /// until the next call to it.
    pub fn internal_parts(&self, m: &InternalMsg) -> (&[u8], Option<&[u8]>, &[u8]) {
        self.internal.parts(m)
    }

    /// Pending bytes past which a reader is considered behind (three quarters of the
    /// slow-consumer limit, as the NATS server stalls producers).
    fn stall_mark(&self) -> usize {
        self.cfg.max_pending / 4 * 3
    }

    /// True while some client is far behind: the driver should hold back the input of
    /// the connections feeding it (for a bounded time), see [`Server::holds_input`].
    pub fn wants_backpressure(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// True for a connection that published to a reader that is far behind: its input
    /// waits, so the producer slows down instead of the reader being dropped, and
    /// nobody else waits with it.
    pub fn holds_input(&self, conn: ConnId) -> bool {
        self.throttled.contains(&conn)
    }

    /// True while `conn` is far behind in reading what it was sent.
    pub fn is_behind(&self, conn: ConnId) -> bool {
        self.stalled.contains(&conn)
    }

    fn unstall(&mut self, conn: ConnId) {
        self.stalled.remove(&conn);
        if self.stalled.is_empty() {
            self.throttled.clear();
        }
    }

    /// Server-wide counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Number of open client connections.
    pub fn num_connections(&self) -> usize {
        self.conns.len().saturating_sub(self.routing.routes.len())
    }

    /// Client connections (routes are shown by `/routez`).
    pub(crate) fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.conns.values().filter(|c| !self.is_route(c.id))
    }

    /// The subscription indexes of all accounts, `$G` first.
    pub(crate) fn sublists(&self) -> impl Iterator<Item = &Sublist> {
        self.accounts.iter().map(|a| &a.sublist)
    }

    /// Subscriptions of all accounts, the server's own included.
    pub fn num_subscriptions(&self) -> usize {
        self.sublists().map(Sublist::len).sum()
    }

    /// The name of the account `conn` lives in.
    pub(crate) fn account_name(&self, account: AccountId) -> &str {
        &self.accounts[account.0 as usize].name
    }

    pub(crate) fn subscription(&self, key: SubKey) -> Option<&Subscription> {
        self.subs.get(key.0 as usize).and_then(Option::as_ref)
    }
}

fn trace_line(peer: SocketAddr, id: ConnId, text: String) -> Output {
    Output::Log(LogLine {
        origin: Origin::Nats,
        level: Level::Trace,
        text: format!("{peer} - cid:{} - {text}", id.0),
    })
}

/// The control line of a delivery, as written, for its trace.
fn msg_line(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    header_len: Option<usize>,
    len: usize,
) -> String {
    let mut line = String::from(if header_len.is_some() {
        "HMSG "
    } else {
        "MSG "
    });
    line.push_str(&String::from_utf8_lossy(subject));
    line.push(' ');
    line.push_str(&String::from_utf8_lossy(sid));
    if let Some(reply) = reply {
        line.push(' ');
        line.push_str(&String::from_utf8_lossy(reply));
    }
    if let Some(h) = header_len {
        line.push_str(&format!(" {h}"));
    }
    line.push_str(&format!(" {len}"));
    line
}

/// `<<- MSG_PAYLOAD: ["..."]`, cut after `max` bytes when `max` is not 0.
fn payload_trace(payload: &[u8], max: usize) -> String {
    if max > 0 && payload.len() > max {
        // The NATS server cuts the quoted text, not the payload, at `max` bytes, so an
        // escape sequence may be cut short.
        let quoted = go_quote_bytes(&payload[..max]);
        let shown = String::from_utf8_lossy(&quoted.as_bytes()[1..=max]);
        format!("<<- MSG_PAYLOAD: [\"{shown}...\"]")
    } else {
        format!("<<- MSG_PAYLOAD: [{}]", go_quote_bytes(payload))
    }
}

/// A `CONNECT` document with the values of `pass` and `auth_token` replaced by
/// `[REDACTED]`, so that traces can be shared without the credentials in them.
fn redact_secrets(json: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(json).into_owned();
    for key in ["\"pass\"", "\"auth_token\""] {
        let mut from = 0;
        while let Some(found) = text[from..].find(key) {
            let after_key = from + found + key.len();
            let ws = |c: char| c.is_ascii_whitespace();
            let value = text[after_key..]
                .trim_start_matches(ws)
                .strip_prefix(':')
                .map(|v| v.trim_start_matches(ws))
                .filter(|v| v.starts_with('"'));
            match value {
                Some(value) => {
                    let start = text.len() - value.len() + 1;
                    let end = string_end(&text, start);
                    text.replace_range(start..end, "[REDACTED]");
                    from = start + "[REDACTED]".len();
                }
                None => from = after_key,
            }
        }
    }
    text
}

/// Where the JSON string whose content starts at `from` ends (its closing quote).
fn string_end(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Reads a `client_advertise` value as the NATS server does: `host:port`, `host`
/// alone or with port 0 or -1 taking `default_port`; errors in Go's words.
pub fn parse_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    if text.is_empty() {
        return Err("no hostport specified".into());
    }
    let (host, port) = match split_host_port(text) {
        Err(e) if e.ends_with("missing port in address") => {
            split_host_port(&format!("{text}:{default_port}"))?
        }
        other => other?,
    };
    let port = port.trim();
    let port: i64 = port
        .parse()
        .map_err(|_| format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(port)))?;
    let port = match port {
        0 | -1 => default_port,
        p => u16::try_from(p)
            .map_err(|_| format!("strconv.Atoi: parsing \"{p}\": value out of range"))?,
    };
    Ok((host.trim().to_string(), port))
}

/// Go's `net.SplitHostPort`.
fn split_host_port(text: &str) -> Result<(String, String), String> {
    let fail = |why: &str| Err(format!("address {text}: {why}"));
    let (host, rest) = if let Some(inner) = text.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return fail("missing ']' in address");
        };
        let rest = &inner[end + 1..];
        if rest.is_empty() {
            return fail("missing port in address");
        }
        let Some(port) = rest.strip_prefix(':') else {
            return fail(if rest.contains(']') {
                "unexpected ']' in address"
            } else {
                "missing port in address"
            });
        };
        (&inner[..end], port)
    } else {
        let Some(colon) = text.rfind(':') else {
            return fail("missing port in address");
        };
        let host = &text[..colon];
        if host.contains(':') {
            return fail("too many colons in address");
        }
        (host, &text[colon + 1..])
    };
    if host.contains('[') || rest.contains('[') {
        return fail("unexpected '[' in address");
    }
    if host.contains(']') || rest.contains(']') {
        return fail("unexpected ']' in address");
    }
    Ok((host.to_string(), rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_whatever_surrounds_them() {
        let cases: &[(&str, &str)] = &[
            (r#"{"pass":"x"}"#, r#"{"pass":"[REDACTED]"}"#),
            (
                r#"{"pass" :  "a\"b","auth_token":"t"}"#,
                r#"{"pass" :  "[REDACTED]","auth_token":"[REDACTED]"}"#,
            ),
            (r#"{"pass":"unterminated"#, r#"{"pass":"[REDACTED]"#),
            (r#"{"pass"é:"x"}"#, r#"{"pass"é:"x"}"#),
            (r#"{"pass":é"x"}"#, r#"{"pass":é"x"}"#),
            (
                r#"{"pass":1,"pass":"y"}"#,
                r#"{"pass":1,"pass":"[REDACTED]"}"#,
            ),
            (r#"{"pass""#, r#"{"pass""#),
            (r#"{"pass":"\"#, r#"{"pass":"[REDACTED]"#),
        ];
        for (connect, shown) in cases {
            assert_eq!(redact_secrets(connect.as_bytes()), *shown, "{connect}");
        }
    }
}

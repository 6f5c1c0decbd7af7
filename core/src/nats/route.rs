//! NATS clustering: route connections between servers.
//!
//! A route carries the interest of one server's clients to another (`RS+`/`RS-`,
//! each naming its account) and the messages that match it (`RMSG`/`HMSG`). Messages
//! travel one hop: what arrives from a route goes only to local clients, so every
//! server of a cluster must be routed to every other. Dial timing lives here too (on
//! the caller's clock): the driver only opens the sockets the server asks for.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use memchr::memchr;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{Output, Server, NATS_VERSION};
use crate::log::{Level, LogLine, Origin};
use crate::nats::account::AccountId;
use crate::nats::conn::{CloseReason, Conn, ConnId, Phase, Subscription};
use crate::nats::proto::{self, Limits, ParseError};
use crate::nats::sublist::SubKey;
use crate::time::{Instant, Now};

/// Wait between two attempts to open a configured route, and before reconnecting one
/// that closed, as the NATS server waits.
pub const ROUTE_CONNECT_DELAY: Duration = Duration::from_secs(1);

/// After the first attempt, failures of a first connection are logged as errors
/// only this often (the NATS server's `connect_error_reports` default).
const CONNECT_ERROR_REPORTS: u32 = 3600;

/// The `cluster { }` settings of the embedded NATS server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    /// The cluster name; without one a name is generated and the first configured
    /// one met on a route (or the greater of two generated ones) is adopted.
    pub name: Option<String>,
    pub host: String,
    /// 0 picks a free port; the driver reports the bound one in [`Server::start_routes`].
    pub port: u16,
    /// `host:port` other servers should use to reach this one (`cluster_advertise`).
    pub advertise: Option<(String, u16)>,
    /// Do not tell clients about the other servers of the cluster.
    pub no_advertise: bool,
    /// Routes to open and keep open (`routes`), tried forever.
    pub routes: Vec<RouteUrl>,
    /// Attempts for routes learned from other servers (`connect_retries`).
    pub connect_retries: u32,
}

/// A route URL: `nats-route://host:port` as written, and where it points.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteUrl {
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl RouteUrl {
    /// Reads `nats-route://[user:pass@]host:port[/]` (any scheme is accepted, as the
    /// NATS server does). A URL without a scheme, host or port is refused with the
    /// NATS server's words for a route URL it cannot read.
    pub fn parse(text: &str) -> Result<RouteUrl, String> {
        let text = text.trim();
        let bad = || format!("error parsing route url [{}]", go_quote(text));
        let Some((_, rest)) = text.split_once("://") else {
            return Err(bad());
        };
        let rest = rest.split('/').next().unwrap_or_default();
        let hostport = rest.rsplit_once('@').map_or(rest, |(_, hp)| hp);
        let (host, port) = super::parse_host_port(hostport, 0).map_err(|_| bad())?;
        if port == 0 || host.is_empty() {
            return Err(bad());
        }
        Ok(RouteUrl {
            url: text.to_string(),
            host,
            port,
        })
    }
}

fn go_quote(text: &str) -> String {
    crate::gofmt::go_quote(text)
}

/// What a route sends, as this server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp<'a> {
    Info(&'a [u8]),
    Connect(&'a [u8]),
    Ping,
    Pong,
    Ok,
    Err(&'a [u8]),
    /// `RS+ <account> <subject> [<queue> <weight>]`.
    Sub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<(&'a [u8], u32)>,
    },
    /// `RS- <account> <subject> [<queue>]`.
    Unsub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
    },
    /// `RMSG`/`HMSG <account> <subject> [reply | + reply queues.. | | queues..] ...`.
    Msg {
        account: &'a [u8],
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        queues: Vec<&'a [u8]>,
        header_len: Option<usize>,
        payload: &'a [u8],
    },
}

const ROUTE_OPS: &[&[u8]] = &[
    b"INFO", b"CONNECT", b"PING", b"PONG", b"+OK", b"-ERR", b"RS+", b"RS-", b"RMSG", b"HMSG",
];

/// Parses the first route operation in `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_route_op<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(RouteOp<'a>, usize)>, ParseError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let name_end = buf
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let word = &buf[..name_end];
    let complete = name_end < buf.len();
    let known = ROUTE_OPS
        .iter()
        .find(|n| complete && word.eq_ignore_ascii_case(n));
    let Some(&name) = known else {
        let prefix = ROUTE_OPS
            .iter()
            .any(|n| word.len() <= n.len() && word.eq_ignore_ascii_case(&n[..word.len()]));
        return if !complete && prefix && buf.len() <= limits.max_control_line {
            Ok(None)
        } else if !complete && prefix {
            Err(ParseError::ControlLineTooLong)
        } else {
            Err(ParseError::UnknownOp)
        };
    };
    let window = &buf[..buf.len().min(limits.max_control_line + 2)];
    let Some(nl) = memchr(b'\n', window) else {
        return if buf.len() > limits.max_control_line {
            Err(ParseError::ControlLineTooLong)
        } else {
            Ok(None)
        };
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    if line_end > limits.max_control_line {
        return Err(ParseError::ControlLineTooLong);
    }
    let body = nl + 1;
    let arg = buf[name_end.min(line_end)..line_end].trim_ascii();
    let args: Vec<&[u8]> = arg
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|t| !t.is_empty())
        .collect();
    let op = match name.to_ascii_uppercase().as_slice() {
        b"INFO" => RouteOp::Info(arg),
        b"CONNECT" => RouteOp::Connect(arg),
        b"PING" => RouteOp::Ping,
        b"PONG" => RouteOp::Pong,
        b"+OK" => RouteOp::Ok,
        b"-ERR" => RouteOp::Err(arg),
        b"RS+" => match args[..] {
            [account, subject] => RouteOp::Sub {
                account,
                subject,
                queue: None,
            },
            [account, subject, queue, weight] => RouteOp::Sub {
                account,
                subject,
                queue: Some((queue, size(weight).unwrap_or(1) as u32)),
            },
            _ => return Err(ParseError::BadArgs("processRemoteSub")),
        },
        b"RS-" => match args[..] {
            [account, subject] => RouteOp::Unsub {
                account,
                subject,
                queue: None,
            },
            [account, subject, queue] => RouteOp::Unsub {
                account,
                subject,
                queue: Some(queue),
            },
            _ => return Err(ParseError::BadArgs("processRemoteUnsub")),
        },
        name => {
            let header = name == b"HMSG";
            let what = if header {
                "processRoutedHeaderMsgArgs"
            } else {
                "processRoutedMsgArgs"
            };
            let sizes = if header { 2 } else { 1 };
            if args.len() < 2 + sizes {
                return Err(ParseError::BadArgs(what));
            }
            let (account, subject) = (args[0], args[1]);
            let middle = &args[2..args.len() - sizes];
            let (reply, queues) = match middle {
                [] => (None, Vec::new()),
                [reply] => (Some(*reply), Vec::new()),
                [b"+", reply, queues @ ..] => (Some(*reply), queues.to_vec()),
                [b"|", queues @ ..] => (None, queues.to_vec()),
                _ => return Err(ParseError::BadArgs(what)),
            };
            let total = size(args[args.len() - 1]).ok_or(ParseError::BadArgs(what))?;
            let header_len = if header {
                let h = size(args[args.len() - 2]).ok_or(ParseError::BadArgs(what))?;
                if h > total {
                    return Err(ParseError::BadArgs(what));
                }
                Some(h as usize)
            } else {
                None
            };
            if total > limits.max_payload as u64 {
                return Err(ParseError::MaxPayload {
                    size: total,
                    max: limits.max_payload,
                });
            }
            let end = body + total as usize;
            if buf.len() < end + 2 {
                if buf.len() > end && buf[end] != b'\r' {
                    return Err(ParseError::UnknownOp);
                }
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::UnknownOp);
            }
            let op = RouteOp::Msg {
                account,
                subject,
                reply,
                queues,
                header_len,
                payload: &buf[body..end],
            };
            return Ok(Some((op, end + 2)));
        }
    };
    Ok(Some((op, body)))
}

fn size(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |v, d| v * 10 + u64::from(d - b'0')))
}

/// The INFO a server sends on a route.
#[derive(Debug, Serialize)]
struct RouteInfoOut<'a> {
    server_id: &'a str,
    server_name: &'a str,
    version: &'a str,
    proto: u8,
    go: &'a str,
    host: &'a str,
    port: u16,
    headers: bool,
    max_payload: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    cluster: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cluster_dynamic: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    connect_urls: Vec<String>,
}

/// The fields of a route's INFO this server uses; others are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteInfoIn {
    server_id: String,
    server_name: String,
    host: String,
    port: u16,
    headers: bool,
    cluster: String,
    cluster_dynamic: bool,
    ip: String,
    gateway: String,
    connect_urls: Vec<String>,
}

/// The CONNECT a soliciting server sends.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct RouteConnect {
    echo: bool,
    verbose: bool,
    pedantic: bool,
    tls_required: bool,
    headers: bool,
    name: String,
    cluster: String,
    dynamic: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    gateway: String,
}

/// One route connection.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The URL this server dialed; `None` for a route the peer opened.
    pub url: Option<RouteUrl>,
    /// A configured route (`routes`), as opposed to one learned from a peer.
    pub configured: bool,
    pub remote_id: String,
    pub remote_name: String,
    /// The peer's INFO arrived: it is registered and interest flows.
    pub registered: bool,
    /// The peer reads `HMSG`.
    pub headers: bool,
}

/// A route this server dials, and how its attempts went.
#[derive(Debug, Clone)]
struct Dial {
    url: RouteUrl,
    configured: bool,
    attempts: u32,
    first: bool,
    /// An attempt is out: the driver was asked and has not answered.
    in_flight: bool,
}

/// Account, subject and queue of local interest.
type InterestKey = (AccountId, Box<[u8]>, Option<Box<[u8]>>);

/// Cluster state of the embedded server.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    pub cluster: Option<ClusterConfig>,
    pub name: String,
    pub dynamic: bool,
    pub started: bool,
    /// The port the cluster listener got.
    pub port: u16,
    pub routes: BTreeMap<ConnId, Route>,
    /// Registered routes by the peer's server ID.
    remotes: FxHashMap<String, ConnId>,
    /// Local interest by subject and queue: subscriptions (queue members) that
    /// share it, so that routes hear of a change only when it matters.
    interest: BTreeMap<InterestKey, u32>,
    dials: BTreeMap<String, Dial>,
    /// When each dial is next due.
    due: BTreeSet<(Instant, String)>,
    /// The time of the latest input, for what happens when output is polled.
    pub now: Instant,
    /// Client addresses each registered route's server advertised.
    remote_urls: BTreeMap<ConnId, Vec<String>>,
}

/// Where one message goes over routes: each route once, with the queue groups it
/// was chosen for.
#[derive(Default)]
pub(crate) struct RouteTargets {
    pub targets: BTreeMap<ConnId, Vec<Box<[u8]>>>,
}

impl RouteTargets {
    pub fn add(&mut self, route: ConnId, queue: Option<&[u8]>) {
        let qs = self.targets.entry(route).or_default();
        if let Some(q) = queue {
            qs.push(q.into());
        }
    }
}

impl Routing {
    pub fn new(cluster: Option<ClusterConfig>, dynamic_name: String) -> Routing {
        let (name, dynamic) = match cluster.as_ref().and_then(|c| c.name.clone()) {
            Some(n) => (n, false),
            None => (dynamic_name, true),
        };
        Routing {
            cluster,
            name,
            dynamic,
            ..Routing::default()
        }
    }
}

/// A route's view for `/routez`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    pub rid: u64,
    pub remote_id: String,
    pub remote_name: String,
    pub did_solicit: bool,
    pub is_configured: bool,
    pub peer: SocketAddr,
    pub start_wall_ns: i64,
    pub last_activity_wall_ns: i64,
    pub pending: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: Vec<String>,
}

impl Server {
    /// True when clustering is configured (`cluster { listen }` or `--cluster`).
    pub fn clustered(&self) -> bool {
        self.routing.cluster.is_some()
    }

    /// The port of the cluster listener, once it is up.
    pub fn cluster_port(&self) -> u16 {
        self.routing.port
    }

    /// The cluster name in use: configured, generated, or adopted from a peer.
    pub fn cluster_name(&self) -> &str {
        &self.routing.name
    }

    /// The cluster listener is up on `port`: logs as the NATS server does and starts
    /// dialing the configured routes at once.
    pub fn start_routes(&mut self, now: Now, port: u16) {
        let Some(cluster) = self.routing.cluster.clone() else {
            return;
        };
        self.routing.started = true;
        self.routing.port = port;
        let name = self.routing.name.clone();
        self.log(Level::Info, format!("Cluster name is {name}"));
        if self.routing.dynamic {
            self.log(
                Level::Warn,
                "Cluster name was dynamically generated, consider setting one".into(),
            );
        }
        self.log(
            Level::Info,
            format!(
                "Listening for route connections on {}",
                join_host_port(&cluster.host, port)
            ),
        );
        for url in cluster.routes {
            self.schedule_dial(now.mono, url, true);
        }
    }

    fn schedule_dial(&mut self, at: Instant, url: RouteUrl, configured: bool) {
        let key = url.url.clone();
        let dial = self.routing.dials.entry(key.clone()).or_insert(Dial {
            url,
            configured,
            attempts: 0,
            first: true,
            in_flight: false,
        });
        if dial.in_flight {
            return;
        }
        self.routing.due.retain(|(_, k)| *k != key);
        self.routing.due.insert((at, key));
    }

    /// The next instant a route dial is due.
    pub(crate) fn route_timeout(&self) -> Option<Instant> {
        self.routing.due.first().map(|d| d.0)
    }

    /// Asks the driver for the dials that are due.
    pub(crate) fn route_timers(&mut self, now: Now) {
        while let Some((at, key)) = self.routing.due.first().cloned() {
            if at > now.mono {
                break;
            }
            self.routing.due.pop_first();
            let Some(d) = self.routing.dials.get_mut(&key) else {
                continue;
            };
            d.in_flight = true;
            let url = d.url.clone();
            self.debug_line(format!(
                "Trying to connect to route on {}",
                join_host_port(&url.host, url.port)
            ));
            self.push_output(Output::Dial { url });
        }
    }

    /// The dial of `url` failed with `error` (Go's words): logged, and tried again
    /// after [`ROUTE_CONNECT_DELAY`] for a configured route or while retries remain.
    pub fn route_dial_failed(&mut self, now: Now, url: &RouteUrl, error: &str) {
        let retries = self
            .routing
            .cluster
            .as_ref()
            .map_or(0, |c| c.connect_retries);
        let Some(d) = self.routing.dials.get_mut(&url.url) else {
            return;
        };
        d.in_flight = false;
        d.attempts += 1;
        let attempts = d.attempts;
        // Reconnections report every failure; a first connection the first and
        // then one in CONNECT_ERROR_REPORTS.
        let report = !d.first || attempts == 1 || attempts % CONNECT_ERROR_REPORTS == 0;
        let again = d.configured || attempts <= retries;
        let text = format!("Error trying to connect to route (attempt {attempts}): {error}");
        if report {
            self.log(Level::Error, text);
        } else {
            self.debug_line(text);
        }
        if again {
            self.schedule_dial(now.mono + ROUTE_CONNECT_DELAY, url.clone(), true);
        } else {
            self.routing.dials.remove(&url.url);
        }
    }

    /// Registers a route connection: `url` is what this server dialed, `None` for
    /// one accepted on the cluster port. Queues CONNECT (when dialing) and INFO.
    pub fn accept_route(&mut self, now: Now, peer: SocketAddr, url: Option<RouteUrl>) -> ConnId {
        let configured = url
            .as_ref()
            .is_some_and(|u| self.routing.dials.get(&u.url).is_some_and(|d| d.configured));
        if let Some(u) = &url {
            if let Some(d) = self.routing.dials.get_mut(&u.url) {
                d.in_flight = false;
                d.attempts = 0;
            }
        }
        let id = self.new_conn(now, peer);
        let mut out = Vec::new();
        if url.is_some() {
            let connect = RouteConnect {
                echo: true,
                headers: true,
                name: self.server_id().to_string(),
                cluster: self.routing.name.clone(),
                dynamic: self.routing.dynamic,
                ..RouteConnect::default()
            };
            let json = serde_json::to_vec(&connect).expect("plain struct serializes");
            proto::write_json_op(&mut out, "CONNECT", &json);
        }
        let info = self.route_info_json();
        proto::write_json_op(&mut out, "INFO", &info);
        self.routing.routes.insert(
            id,
            Route {
                configured,
                url,
                remote_id: String::new(),
                remote_name: String::new(),
                registered: false,
                headers: false,
            },
        );
        if self.routing.routes[&id].url.is_some() {
            self.route_debug(id, "Route connect msg sent".into());
        }
        self.queue_bytes(id, &out);
        self.route_log(id, Level::Info, "Route connection created".into());
        id
    }

    fn route_info_json(&self) -> Vec<u8> {
        let cfg = self.config();
        let cluster = self.routing.cluster.as_ref();
        let (host, port) = match cluster.and_then(|c| c.advertise.as_ref()) {
            Some((h, p)) => (h.as_str(), *p),
            None => (cluster.map_or("", |c| c.host.as_str()), self.routing.port),
        };
        let no_advertise = cluster.is_some_and(|c| c.no_advertise);
        let info = RouteInfoOut {
            server_id: self.server_id(),
            server_name: self.server_name(),
            version: NATS_VERSION,
            proto: 1,
            go: "rust",
            host,
            port,
            headers: true,
            max_payload: cfg.max_payload,
            ip: cluster
                .and_then(|c| c.advertise.as_ref())
                .map(|(h, p)| format!("nats-route://{}/", join_host_port(h, *p))),
            cluster: &self.routing.name,
            cluster_dynamic: self.routing.dynamic,
            connect_urls: if no_advertise {
                Vec::new()
            } else {
                self.own_client_url().into_iter().collect()
            },
        };
        serde_json::to_vec(&info).expect("plain struct serializes")
    }

    /// The client address this server advertises to the cluster: `client_advertise`,
    /// else the listen address unless it is every interface, which tells a client
    /// elsewhere nothing.
    fn own_client_url(&self) -> Option<String> {
        let cfg = self.config();
        match &cfg.client_advertise {
            Some((host, port)) => Some(join_host_port(host, *port)),
            None if matches!(cfg.host.as_str(), "0.0.0.0" | "::" | "") => None,
            None => Some(join_host_port(&cfg.host, cfg.port)),
        }
    }

    /// The `connect_urls` clients are given: this server's address and those of the
    /// routed servers; none without a cluster or with `no_advertise`.
    pub(crate) fn client_connect_urls(&self) -> Vec<String> {
        if self.routing.cluster.as_ref().is_none_or(|c| c.no_advertise) {
            return Vec::new();
        }
        let mut urls: Vec<String> = self.own_client_url().into_iter().collect();
        for u in self.routing.remote_urls.values().flatten() {
            if !urls.contains(u) {
                urls.push(u.clone());
            }
        }
        urls
    }

    /// The routed servers changed their client addresses: clients that read
    /// asynchronous INFO (protocol 1) get the new list.
    fn remote_urls_changed(&mut self) {
        if self.routing.cluster.as_ref().is_none_or(|c| c.no_advertise) {
            return;
        }
        let mut clients: Vec<(ConnId, SocketAddr)> = self
            .conns
            .values()
            .filter(|c| {
                !c.internal
                    && c.connect_received
                    && c.opts.protocol >= 1
                    && c.phase == Phase::Open
                    && !self.routing.routes.contains_key(&c.id)
            })
            .map(|c| (c.id, c.peer))
            .collect();
        clients.sort_unstable();
        let auth_required = self.info_auth_required();
        for (id, peer) in clients {
            let json = self.client_info_json(id, peer, auth_required);
            let mut out = Vec::new();
            proto::write_json_op(&mut out, "INFO", &json);
            self.queue_bytes(id, &out);
        }
    }

    /// Reads and applies what a route sent.
    pub(crate) fn route_received(&mut self, now: Now, id: ConnId, buf: &[u8]) -> usize {
        let limits = Limits {
            max_control_line: self.config().max_control_line,
            max_payload: self.config().max_payload,
        };
        let mut pos = 0;
        loop {
            match parse_route_op(&buf[pos..], &limits) {
                Ok(Some((op, used))) => {
                    if self.config().verbosity.trace {
                        self.route_trace_in(id, &buf[pos..pos + used]);
                    }
                    pos += used;
                    if !self.route_op(now, id, op) {
                        return buf.len();
                    }
                }
                Ok(None) => return pos,
                Err(ParseError::UnknownOp) => {
                    let snip = crate::gofmt::go_quote_bytes(&buf[pos..buf.len().min(pos + 32)]);
                    self.route_err(id, "Unknown Protocol Operation");
                    self.route_log(
                        id,
                        Level::Error,
                        format!("Router parser ERROR, state=0, i={pos}: proto='{snip}...'"),
                    );
                    self.close(id, CloseReason::ParseError);
                    return buf.len();
                }
                Err(e) => {
                    let text = match e {
                        ParseError::UnknownOp => "Unknown Protocol Operation".to_string(),
                        ParseError::ControlLineTooLong => {
                            "Maximum Control Line Exceeded".to_string()
                        }
                        ParseError::MaxPayload { size, max } => {
                            format!("maximum payload exceeded: {size} vs {max}")
                        }
                        ParseError::BadArgs(what) => format!("{what} Parse Error"),
                    };
                    self.route_log(id, Level::Error, format!("Route Error {text}"));
                    let reason = match e {
                        ParseError::MaxPayload { .. } => CloseReason::MaxPayloadExceeded,
                        ParseError::ControlLineTooLong => CloseReason::MaxControlLineExceeded,
                        _ => CloseReason::ParseError,
                    };
                    self.close_conn(id, reason);
                    return buf.len();
                }
            }
        }
    }

    fn route_trace_in(&mut self, id: ConnId, raw: &[u8]) {
        let line = &raw[..memchr(b'\n', raw).unwrap_or(raw.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = format!("<<- [{}]", String::from_utf8_lossy(line));
        self.route_log(id, Level::Trace, text);
    }

    /// Applies one route operation; false once the route is closing.
    fn route_op(&mut self, now: Now, id: ConnId, op: RouteOp<'_>) -> bool {
        let registered = self.routing.routes.get(&id).is_some_and(|r| r.registered);
        match op {
            RouteOp::Connect(json) => return self.route_connect(id, json),
            RouteOp::Info(json) => return self.route_info(now, id, json),
            RouteOp::Ping => {
                self.queue_bytes(id, proto::PONG);
            }
            RouteOp::Pong => self.pong_received(id),
            RouteOp::Ok => {}
            RouteOp::Err(text) => {
                let text = String::from_utf8_lossy(text).into_owned();
                self.route_log(id, Level::Error, format!("Route Error {text}"));
                self.close(id, CloseReason::ParseError);
                return false;
            }
            RouteOp::Sub {
                account,
                subject,
                queue,
            } => match self.account_by_bytes(account) {
                None => self.route_unknown_account(id, account, subject),
                Some(acc) if registered => self.remote_sub(id, acc, subject, queue.map(|q| q.0)),
                Some(_) => {}
            },
            RouteOp::Unsub {
                account,
                subject,
                queue,
            } => {
                if let Some(acc) = self.account_by_bytes(account) {
                    self.remote_unsub(id, acc, subject, queue);
                }
            }
            RouteOp::Msg {
                account,
                subject,
                reply,
                queues,
                header_len,
                payload,
            } => {
                if let Some(acc) = self.account_by_bytes(account) {
                    self.routed_msg(now, id, acc, subject, reply, &queues, header_len, payload);
                } else {
                    let (a, s) = (
                        String::from_utf8_lossy(account).into_owned(),
                        String::from_utf8_lossy(subject).into_owned(),
                    );
                    self.route_debug(
                        id,
                        format!(
                            "Unknown account {} for routed message on subject: {}",
                            go_quote(&a),
                            go_quote(&s)
                        ),
                    );
                }
            }
        }
        true
    }

    fn route_unknown_account(&mut self, id: ConnId, account: &[u8], subject: &[u8]) {
        let a = String::from_utf8_lossy(account).into_owned();
        let s = String::from_utf8_lossy(subject).into_owned();
        // Peers announce interest of their system account, which this server does
        // not have: worth a debug line, not an error per subscription.
        self.route_log(
            id,
            Level::Debug,
            format!(
                "Unknown account {} for remote subject {}",
                go_quote(&a),
                go_quote(&s)
            ),
        );
    }

    /// CONNECT on an accepted route: the peer's server ID and cluster name.
    fn route_connect(&mut self, id: ConnId, json: &[u8]) -> bool {
        let connect: RouteConnect = match serde_json::from_slice(json) {
            Ok(c) => c,
            Err(e) => {
                self.route_log(id, Level::Error, format!("Route Error {e}"));
                self.close_conn(id, CloseReason::ProtocolViolation);
                return false;
            }
        };
        if !connect.lang.is_empty() {
            // Clients say which language they are written in; servers do not.
            let text = "attempted to connect to route port";
            self.route_log(id, Level::Error, text.into());
            self.route_err(id, text);
            self.close_conn(id, CloseReason::WrongPort);
            return false;
        }
        if !connect.gateway.is_empty() {
            let text = format!(
                "Rejecting connection from gateway {} on the Route port",
                go_quote(&connect.gateway)
            );
            self.route_log(id, Level::Error, text.clone());
            self.route_err(id, &text);
            self.close_conn(id, CloseReason::WrongGateway);
            return false;
        }
        if connect.cluster != self.routing.name {
            if self.routing.dynamic
                && (!connect.dynamic || self.routing.name.as_str() < connect.cluster.as_str())
            {
                self.adopt_cluster_name(id, &connect.cluster, !connect.dynamic);
            } else {
                let text = format!(
                    "Rejecting connection, cluster name {} does not match {}",
                    go_quote(&connect.cluster),
                    go_quote(&self.routing.name)
                );
                self.route_log(id, Level::Error, text.clone());
                self.route_err(id, &text);
                self.close_conn(id, CloseReason::ClusterNameConflict);
                return false;
            }
        }
        if let Some(r) = self.routing.routes.get_mut(&id) {
            r.remote_id = connect.name;
            r.headers = connect.headers;
        }
        true
    }

    /// Takes `name` as the cluster name and drops the routes made under the old one.
    fn adopt_cluster_name(&mut self, keep: ConnId, name: &str, configured: bool) {
        self.routing.name = name.to_string();
        if configured {
            self.routing.dynamic = false;
        }
        self.log(Level::Info, format!("Cluster name updated to {name}"));
        let others: Vec<ConnId> = self
            .routing
            .routes
            .keys()
            .copied()
            .filter(|&r| r != keep)
            .collect();
        for r in others {
            self.close_conn(r, CloseReason::ClusterNameConflict);
        }
    }

    fn route_info(&mut self, now: Now, id: ConnId, json: &[u8]) -> bool {
        let info: RouteInfoIn = match serde_json::from_slice(json) {
            Ok(i) => i,
            Err(e) => {
                self.route_log(id, Level::Error, format!("Route Error {e}"));
                self.close_conn(id, CloseReason::ProtocolViolation);
                return false;
            }
        };
        if info.server_id == self.server_id() {
            if let Some(r) = self.routing.routes.get_mut(&id) {
                r.remote_id = info.server_id;
            }
            self.close_conn(id, CloseReason::DuplicateRoute);
            return false;
        }
        if !info.cluster.is_empty() && info.cluster != self.routing.name {
            if self.routing.dynamic
                && (!info.cluster_dynamic || self.routing.name.as_str() < info.cluster.as_str())
            {
                self.adopt_cluster_name(id, &info.cluster, !info.cluster_dynamic);
            } else {
                self.close_conn(id, CloseReason::ClusterNameConflict);
                return false;
            }
        }
        let Some(route) = self.routing.routes.get(&id) else {
            return false;
        };
        if route.registered {
            if !info.gateway.is_empty() {
                let from = route.remote_id.clone();
                self.log(
                    Level::Error,
                    format!(
                        "Received information about gateway {} from {from}, but gateway is not configured",
                        go_quote(&info.gateway)
                    ),
                );
            } else if info.server_id != route.remote_id {
                self.implicit_route(now, &info);
            } else if self
                .routing
                .remote_urls
                .get(&id)
                .map_or(&[][..], Vec::as_slice)
                != info.connect_urls.as_slice()
            {
                // The peer's client addresses changed (a reload, say).
                if info.connect_urls.is_empty() {
                    self.routing.remote_urls.remove(&id);
                } else {
                    self.routing.remote_urls.insert(id, info.connect_urls);
                }
                self.remote_urls_changed();
            }
            return true;
        }
        if route.url.is_none() && info.server_name == self.server_name() {
            self.route_log(
                id,
                Level::Error,
                format!(
                    "Remote server has a duplicate name: {}",
                    go_quote(&info.server_name)
                ),
            );
            self.close_conn(id, CloseReason::DuplicateServerName);
            return false;
        }
        if let Some(&existing) = self.routing.remotes.get(&info.server_id) {
            self.route_debug(
                id,
                format!(
                    "Detected duplicate remote route {}",
                    go_quote(&info.server_id)
                ),
            );
            // The connection kept takes over the dialed URL, so that it is the one
            // redialed when it closes, and shows as dialed.
            let dup = self.routing.routes.get(&id).cloned();
            if let (Some(dup), Some(kept)) = (dup, self.routing.routes.get_mut(&existing)) {
                if kept.url.is_none() && dup.url.is_some() {
                    kept.url = dup.url;
                    kept.configured = dup.configured;
                }
            }
            if let Some(r) = self.routing.routes.get_mut(&id) {
                r.remote_id = info.server_id;
            }
            self.close_conn(id, CloseReason::DuplicateRoute);
            return false;
        }
        let route = self.routing.routes.get_mut(&id).expect("checked above");
        route.remote_id = info.server_id.clone();
        route.remote_name = info.server_name.clone();
        route.headers = info.headers;
        route.registered = true;
        self.routing.remotes.insert(info.server_id.clone(), id);
        if !info.connect_urls.is_empty() {
            self.routing
                .remote_urls
                .insert(id, info.connect_urls.clone());
            self.remote_urls_changed();
        }
        self.route_debug(
            id,
            format!("Registering remote route {}", go_quote(&info.server_id)),
        );
        let mut out = Vec::new();
        for ((acc, subject, queue), &n) in &self.routing.interest {
            let name = self.account_name(*acc).as_bytes();
            write_rs(&mut out, true, name, subject, queue.as_deref(), n);
        }
        self.queue_bytes(id, &out);
        self.route_debug(id, "Sent local subscriptions to route".into());
        if self.routing.routes.len() > 1 {
            self.forward_route_info(id, &info);
        }
        true
    }

    /// Tells the other routes about a new peer so that they route to it too.
    fn forward_route_info(&mut self, new: ConnId, info: &RouteInfoIn) {
        let peer = self.conn_peer(new);
        let ip = if info.ip.is_empty() {
            peer.map(|p| {
                format!(
                    "nats-route://{}/",
                    join_host_port(&p.ip().to_string(), info.port)
                )
            })
            .unwrap_or_default()
        } else {
            info.ip.clone()
        };
        let doc = RouteInfoOut {
            server_id: &info.server_id,
            server_name: &info.server_name,
            version: NATS_VERSION,
            proto: 1,
            go: "rust",
            host: &info.host,
            port: info.port,
            headers: info.headers,
            max_payload: self.config().max_payload,
            ip: Some(ip),
            cluster: &self.routing.name,
            cluster_dynamic: false,
            connect_urls: Vec::new(),
        };
        let json = serde_json::to_vec(&doc).expect("plain struct serializes");
        let mut out = Vec::new();
        proto::write_json_op(&mut out, "INFO", &json);
        let others: Vec<ConnId> = self
            .routing
            .routes
            .iter()
            .filter(|(&r, route)| r != new && route.registered)
            .map(|(&r, _)| r)
            .collect();
        for r in others {
            self.queue_bytes(r, &out);
        }
    }

    /// A peer told of another server of the cluster: route to it unless already
    /// routed, using `connect_retries` for its attempts.
    fn implicit_route(&mut self, now: Now, info: &RouteInfoIn) {
        if self.routing.remotes.contains_key(&info.server_id) || info.server_id == self.server_id()
        {
            return;
        }
        let Ok(url) = RouteUrl::parse(&info.ip) else {
            return;
        };
        let configured = self.routing.cluster.as_ref().is_some_and(|c| {
            c.routes
                .iter()
                .any(|r| r.host == url.host && r.port == url.port)
        });
        if configured || self.routing.dials.contains_key(&url.url) {
            return;
        }
        self.schedule_dial(now.mono, url, false);
    }

    /// The account a route names, if this server has it.
    fn account_by_bytes(&self, name: &[u8]) -> Option<AccountId> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.account_id(n))
    }

    fn remote_sub(&mut self, id: ConnId, acc: AccountId, subject: &[u8], queue: Option<&[u8]>) {
        let sid = route_sid(self.account_name(acc).as_bytes(), subject, queue);
        let exists = self.conn_has_sid(id, &sid);
        if exists {
            return;
        }
        if self.insert_sub(id, acc, subject, queue, &sid).is_none() {
            let s = String::from_utf8_lossy(subject).into_owned();
            self.route_log(
                id,
                Level::Error,
                format!(
                    "Could not insert subscription: invalid subject {}",
                    go_quote(&s)
                ),
            );
        }
    }

    fn remote_unsub(&mut self, id: ConnId, acc: AccountId, subject: &[u8], queue: Option<&[u8]>) {
        let sid = route_sid(self.account_name(acc).as_bytes(), subject, queue);
        if let Some(key) = self.conn_sub_key(id, &sid) {
            self.drop_sub(key);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn routed_msg(
        &mut self,
        now: Now,
        id: ConnId,
        acc: AccountId,
        subject: &[u8],
        reply: Option<&[u8]>,
        queues: &[&[u8]],
        header_len: Option<usize>,
        payload: &[u8],
    ) {
        self.count_in(id, payload.len());
        self.fan_out(
            now,
            id,
            acc,
            subject,
            reply,
            header_len,
            payload,
            super::accounts::Origin::Route(queues),
        );
    }

    /// Writes one message to each route in `targets`.
    pub(crate) fn send_to_routes(
        &mut self,
        account: &str,
        targets: RouteTargets,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) -> bool {
        let mut sent = false;
        for (route, queues) in targets.targets {
            let headers = self.routing.routes.get(&route).is_some_and(|r| r.headers);
            let (header_len, payload) = match header_len {
                Some(h) if !headers => (None, &payload[h..]),
                other => (other, payload),
            };
            let mut out = Vec::with_capacity(subject.len() + payload.len() + 64);
            out.extend_from_slice(if header_len.is_some() {
                b"HMSG "
            } else {
                b"RMSG "
            });
            out.extend_from_slice(account.as_bytes());
            out.push(b' ');
            out.extend_from_slice(subject);
            out.push(b' ');
            if !queues.is_empty() {
                match reply {
                    Some(r) => {
                        out.extend_from_slice(b"+ ");
                        out.extend_from_slice(r);
                        out.push(b' ');
                    }
                    None => out.extend_from_slice(b"| "),
                }
                for q in &queues {
                    out.extend_from_slice(q);
                    out.push(b' ');
                }
            } else if let Some(r) = reply {
                out.extend_from_slice(r);
                out.push(b' ');
            }
            if let Some(h) = header_len {
                out.extend_from_slice(h.to_string().as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(payload.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
            if self.config().verbosity.trace {
                let line =
                    String::from_utf8_lossy(&out[..out.len() - payload.len() - 4]).into_owned();
                self.route_log(route, Level::Trace, format!("->> [{line}]"));
            }
            self.count_out(route, payload.len());
            self.queue_bytes(route, &out);
            sent = true;
            self.check_route_pending(route);
        }
        sent
    }

    /// A local subscription (or queue member) appeared or went: routes hear of the
    /// first and the last, and of every change of a queue's weight.
    pub(crate) fn local_interest(
        &mut self,
        acc: AccountId,
        subject: &[u8],
        queue: Option<&[u8]>,
        added: bool,
    ) {
        if self.routing.cluster.is_none() {
            return;
        }
        let key = (
            acc,
            Box::<[u8]>::from(subject),
            queue.map(Box::<[u8]>::from),
        );
        let n = self.routing.interest.entry(key.clone()).or_insert(0);
        if added {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
        let n = *n;
        if n == 0 {
            self.routing.interest.remove(&key);
        }
        let notify = queue.is_some() || (added && n == 1) || (!added && n == 0);
        if !notify {
            return;
        }
        let mut out = Vec::new();
        let name = self.account_name(acc).as_bytes();
        write_rs(&mut out, n > 0, name, subject, queue, n);
        let routes: Vec<ConnId> = self
            .routing
            .routes
            .iter()
            .filter(|(_, r)| r.registered)
            .map(|(&id, _)| id)
            .collect();
        for r in routes {
            self.queue_bytes(r, &out);
        }
    }

    /// Checks a reloaded cluster configuration before anything changes: the cluster
    /// listener stays where it is.
    pub(crate) fn check_cluster_reload(&self, new: Option<&ClusterConfig>) -> Result<(), String> {
        let old = self.routing.cluster.as_ref();
        let (old_host, old_port) = old.map_or(("", 0), |c| (c.host.as_str(), c.port));
        let (new_host, new_port) = new.map_or(("", 0), |c| (c.host.as_str(), c.port));
        if old_host != new_host {
            return Err(format!(
                "config reload not supported for cluster host: old={old_host}, new={new_host}"
            ));
        }
        if old_port != new_port {
            return Err(format!(
                "config reload not supported for cluster port: old={old_port}, new={new_port}"
            ));
        }
        Ok(())
    }

    /// Applies a reloaded cluster configuration checked by
    /// [`Server::check_cluster_reload`]: a new name is taken, removed routes are
    /// closed for good and added ones dialed. Returns the `Reloaded: ...` lines.
    pub(crate) fn apply_cluster_reload(&mut self, new: Option<ClusterConfig>) -> Vec<String> {
        let (Some(old), Some(new)) = (self.routing.cluster.clone(), new) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        let without_routes = |c: &ClusterConfig| ClusterConfig {
            routes: Vec::new(),
            ..c.clone()
        };
        if without_routes(&old) != without_routes(&new) {
            if let Some(name) = new.name.clone().filter(|n| *n != self.routing.name) {
                self.log(Level::Info, format!("Cluster name updated to {name}"));
                self.routing.name = name;
                self.routing.dynamic = false;
            }
            lines.push("Reloaded: cluster".to_string());
        }
        self.routing.cluster = Some(new.clone());
        if old.routes != new.routes {
            for gone in old.routes.iter().filter(|r| !new.routes.contains(r)) {
                self.routing.dials.remove(&gone.url);
                self.routing.due.retain(|(_, k)| *k != gone.url);
                let conns: Vec<ConnId> = self
                    .routing
                    .routes
                    .iter()
                    .filter(|(_, r)| r.url.as_ref() == Some(gone))
                    .map(|(&id, _)| id)
                    .collect();
                for id in conns {
                    // Forgetting the URL first keeps the route from being redialed.
                    if let Some(r) = self.routing.routes.get_mut(&id) {
                        r.url = None;
                    }
                    self.close(id, CloseReason::RouteRemoved);
                    self.log(Level::Info, format!("Removed route {}", gone.url));
                }
            }
            let now = self.routing.now;
            for added in new.routes.iter().filter(|r| !old.routes.contains(r)) {
                self.schedule_dial(now, added.clone(), true);
            }
            lines.push("Reloaded: cluster routes".to_string());
        }
        lines
    }

    /// A route that lets more than `max_pending` bytes wait is closed as a slow
    /// consumer, as a client is, so that a stuck peer cannot grow this server.
    fn check_route_pending(&mut self, route: ConnId) {
        let max = self.cfg.max_pending;
        let Some(c) = self.conns.get_mut(&route) else {
            return;
        };
        if c.pending_bytes() <= max {
            return;
        }
        c.out.clear();
        self.stats.slow_consumers += 1;
        self.route_log(
            route,
            Level::Info,
            format!("Slow Consumer Detected: MaxPending of {max} Exceeded"),
        );
        self.close(route, CloseReason::SlowConsumerPendingBytes);
    }

    /// True for a route connection.
    pub(crate) fn is_route(&self, id: ConnId) -> bool {
        self.routing.routes.contains_key(&id)
    }

    /// A route connection is gone: forget it and redial it if this server dialed it
    /// and is not routed to that server by another connection.
    pub(crate) fn route_removed(&mut self, id: ConnId, reason: CloseReason) {
        let now = self.routing.now;
        let Some(route) = self.routing.routes.remove(&id) else {
            return;
        };
        if self.routing.remotes.get(&route.remote_id) == Some(&id) {
            self.routing.remotes.remove(&route.remote_id);
        }
        if self.routing.remote_urls.remove(&id).is_some() {
            self.remote_urls_changed();
        }
        let Some(url) = route.url.clone() else {
            return;
        };
        if !route.remote_id.is_empty() && self.routing.remotes.contains_key(&route.remote_id) {
            self.debug_line(format!(
                "Not attempting reconnect for solicited route, already connected to \"{}\"",
                route.remote_id
            ));
            self.routing.dials.remove(&url.url);
            return;
        }
        if route.remote_id == self.server_id() {
            self.debug_line(format!(
                "Detected route to self, ignoring {}",
                go_quote(&url.url)
            ));
            self.routing.dials.remove(&url.url);
            return;
        }
        if reason == CloseReason::ServerShutdown {
            return;
        }
        self.debug_line(format!(
            "Attempting reconnect for solicited route \"{}\"",
            url.url
        ));
        let configured = route.configured
            || self
                .routing
                .dials
                .get(&url.url)
                .is_some_and(|d| d.configured);
        // Up to 100ms at random, so that two servers that dropped each other's
        // connection as duplicates do not dial at the same moment again.
        let jitter = Duration::from_millis(self.rng.below(100) as u64);
        let delay = if configured {
            ROUTE_CONNECT_DELAY + jitter
        } else {
            jitter
        };
        let d = self.routing.dials.entry(url.url.clone()).or_insert(Dial {
            url: url.clone(),
            configured,
            attempts: 0,
            first: false,
            in_flight: false,
        });
        d.first = false;
        d.in_flight = false;
        self.schedule_dial(now + delay, url, configured);
    }

    /// Routes for `/routez`, by route ID.
    pub fn routes_view(&self, subs: bool) -> Vec<RouteView> {
        self.routing
            .routes
            .iter()
            .filter(|(_, r)| r.registered)
            .filter_map(|(&id, r)| {
                let c = self.conn_ref(id)?;
                // Subjects only, queue names left out, as the NATS server lists them.
                let mut list: Vec<String> = if subs {
                    c.subs
                        .keys()
                        .map(|k| {
                            let subject = k.split(|&b| b == b' ').nth(1).unwrap_or_default();
                            String::from_utf8_lossy(subject).into_owned()
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                list.sort();
                Some(RouteView {
                    rid: id.0,
                    remote_id: r.remote_id.clone(),
                    remote_name: r.remote_name.clone(),
                    did_solicit: r.url.is_some(),
                    is_configured: r.configured,
                    peer: c.peer,
                    start_wall_ns: c.start_wall_ns,
                    last_activity_wall_ns: c.last_activity_wall_ns,
                    pending: c.pending_bytes(),
                    in_msgs: c.traffic.in_msgs,
                    out_msgs: c.traffic.out_msgs,
                    in_bytes: c.traffic.in_bytes,
                    out_bytes: c.traffic.out_bytes,
                    subscriptions: list,
                })
            })
            .collect()
    }

    /// Registered routes, as `/varz` counts them.
    pub fn num_routes(&self) -> usize {
        self.routing
            .routes
            .values()
            .filter(|r| r.registered)
            .count()
    }

    fn route_err(&mut self, id: ConnId, text: &str) {
        let mut out = Vec::new();
        proto::write_err(&mut out, text);
        self.queue_bytes(id, &out);
    }

    /// A log line about route `id`, prefixed as the NATS server prefixes them.
    pub(crate) fn route_log(&mut self, id: ConnId, level: Level, text: String) {
        let v = &self.config().verbosity;
        if (level == Level::Debug && !v.debug) || (level == Level::Trace && !v.trace) {
            return;
        }
        let peer = self
            .conn_peer(id)
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.push_output(Output::Log(LogLine {
            origin: Origin::Nats,
            level,
            text: format!("{peer} - rid:{} - {text}", id.0),
        }));
    }

    fn route_debug(&mut self, id: ConnId, text: String) {
        self.route_log(id, Level::Debug, text);
    }

    fn debug_line(&mut self, text: String) {
        if self.config().verbosity.debug {
            self.log(Level::Debug, text);
        }
    }

    fn log(&mut self, level: Level, text: String) {
        self.push_output(Output::Log(LogLine {
            origin: Origin::Nats,
            level,
            text,
        }));
    }

    /// True while the route is not closing.
    pub(crate) fn route_open(&self, id: ConnId) -> bool {
        self.conn_ref(id).is_some_and(|c| c.phase != Phase::Closing)
    }
}

/// The key of a remote subscription on its route: `account subject [queue]`.
fn route_sid(account: &[u8], subject: &[u8], queue: Option<&[u8]>) -> Vec<u8> {
    let mut sid = [account, b" ", subject].concat();
    if let Some(q) = queue {
        sid.push(b' ');
        sid.extend_from_slice(q);
    }
    sid
}

/// Appends `RS+ account subject [queue weight]` or `RS- account subject [queue]`.
fn write_rs(
    out: &mut Vec<u8>,
    sub: bool,
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
    weight: u32,
) {
    out.extend_from_slice(if sub { b"RS+ " } else { b"RS- " });
    out.extend_from_slice(account);
    out.push(b' ');
    out.extend_from_slice(subject);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        if sub {
            out.push(b' ');
            out.extend_from_slice(weight.to_string().as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Go's `net.JoinHostPort`.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connection plumbing shared with client connections.
impl Server {
    fn new_conn(&mut self, now: Now, peer: SocketAddr) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let conn = Conn::new(
            id,
            peer,
            Phase::Open,
            now,
            now.mono + self.cfg.ping_interval,
        );
        self.timers
            .insert((conn.ping_at, id, super::TimerKind::Ping));
        self.conns.insert(id, conn);
        id
    }

    fn queue_bytes(&mut self, id: ConnId, bytes: &[u8]) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.out.extend_from_slice(bytes);
            self.mark_dirty(id);
        }
    }

    fn pong_received(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.pings_out = 0;
        }
    }

    fn close_conn(&mut self, id: ConnId, reason: CloseReason) {
        self.close(id, reason);
    }

    fn conn_peer(&self, id: ConnId) -> Option<SocketAddr> {
        self.conns.get(&id).map(|c| c.peer)
    }

    fn conn_ref(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    fn conn_has_sid(&self, id: ConnId, sid: &[u8]) -> bool {
        self.conn_sub_key(id, sid).is_some()
    }

    fn conn_sub_key(&self, id: ConnId, sid: &[u8]) -> Option<SubKey> {
        self.conns.get(&id).and_then(|c| c.subs.get(sid).copied())
    }

    /// Adds a remote subscription of route `id`; `None` for an invalid subject.
    fn insert_sub(
        &mut self,
        id: ConnId,
        acc: AccountId,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) -> Option<SubKey> {
        let key = match self.free_subs.pop() {
            Some(k) => SubKey(k),
            None => {
                self.subs.push(None);
                SubKey((self.subs.len() - 1) as u32)
            }
        };
        if self.accounts[acc.0 as usize]
            .sublist
            .insert(subject, queue, key)
            .is_err()
        {
            self.free_subs.push(key.0);
            return None;
        }
        self.subs[key.0 as usize] = Some(Subscription {
            conn: id,
            account: acc,
            forward: None,
            sid: sid.into(),
            subject: subject.into(),
            queue: queue.map(Into::into),
            max: None,
            delivered: 0,
        });
        self.conns.get_mut(&id)?.subs.insert(sid.into(), key);
        Some(key)
    }

    fn drop_sub(&mut self, key: SubKey) {
        self.remove_sub(key);
    }

    fn count_in(&mut self, id: ConnId, bytes: usize) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.traffic.in_msgs += 1;
            c.traffic.in_bytes += bytes as u64;
        }
        self.stats.traffic.in_msgs += 1;
        self.stats.traffic.in_bytes += bytes as u64;
    }

    fn count_out(&mut self, id: ConnId, bytes: usize) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.traffic.out_msgs += 1;
            c.traffic.out_bytes += bytes as u64;
        }
        self.stats.traffic.out_msgs += 1;
        self.stats.traffic.out_bytes += bytes as u64;
    }

    fn push_output(&mut self, o: Output) {
        self.ready.push_back(o);
    }
}

impl Server {
    /// Bytes from a route: complete operations are applied, the rest waits.
    pub(crate) fn route_bytes(&mut self, now: Now, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut held = std::mem::take(&mut c.inbuf);
        held.extend_from_slice(bytes);
        let used = self.route_received(now, id, &held);
        if let Some(c) = self.conns.get_mut(&id) {
            if c.phase != Phase::Closing {
                held.drain(..used);
                c.inbuf = held;
            }
        }
    }
}

//! The documents of the NATS monitoring endpoints (`/varz`, `/connz`, `/subsz`), built
//! from the server state. Field names and order follow the NATS server, because
//! dashboards and client test harnesses read them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::conn::Conn;
use super::server::{Server, NATS_VERSION};
use crate::time::Now;
use crate::timefmt::{rfc3339_nanos, uptime};

/// Facts only the driver knows: process resources, listener addresses, wall clock offset.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub now: Now,
    /// The local time zone's offset from UTC, for Go-style local timestamps.
    pub utc_offset_secs: i32,
    pub start_wall_ns: i64,
    pub mem: u64,
    pub cpu: f64,
    pub cores: usize,
    pub http_host: String,
    pub http_port: u16,
    pub https_port: u16,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_wall_ns: i64,
}

impl Context {
    fn time(&self, ns: i64) -> String {
        rfc3339_nanos(ns, self.utc_offset_secs)
    }
}

#[derive(Debug, Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: &'static str,
    pub proto: u8,
    pub go: &'static str,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_connections: usize,
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: String,
    pub https_port: u16,
    pub auth_timeout: f64,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: serde_json::Value,
    pub gateway: serde_json::Value,
    pub leaf: serde_json::Value,
    pub mqtt: serde_json::Value,
    pub websocket: serde_json::Value,
    pub jetstream: serde_json::Value,
    pub tls_timeout: f64,
    pub write_deadline: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: usize,
    pub remotes: usize,
    pub leafnodes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
}

/// `/varz`.
pub fn varz(s: &Server, ctx: &Context) -> Varz {
    let cfg = s.config();
    let stats = s.stats();
    let empty = || serde_json::json!({});
    Varz {
        server_id: s.server_id().to_string(),
        server_name: s.server_name().to_string(),
        version: NATS_VERSION,
        proto: 1,
        go: "rust",
        host: cfg.host.clone(),
        port: cfg.port,
        auth_required: cfg.auth != super::Auth::None,
        tls_required: cfg.tls_required,
        tls_verify: cfg.tls_required && cfg.tls_verify,
        max_connections: cfg.max_connections,
        ping_interval: cfg.ping_interval.as_nanos() as u64,
        ping_max: cfg.ping_max,
        http_host: ctx.http_host.clone(),
        http_port: ctx.http_port,
        http_base_path: cfg.http_base_path.clone(),
        https_port: ctx.https_port,
        auth_timeout: cfg.auth_timeout.as_secs_f64(),
        max_control_line: cfg.max_control_line,
        max_payload: cfg.max_payload,
        max_pending: cfg.max_pending,
        cluster: cluster_varz(s),
        gateway: empty(),
        leaf: empty(),
        mqtt: empty(),
        websocket: empty(),
        jetstream: empty(),
        tls_timeout: cfg.tls_timeout.as_secs_f64(),
        write_deadline: 10_000_000_000,
        start: ctx.time(ctx.start_wall_ns),
        now: ctx.time(ctx.now.wall_ns),
        uptime: uptime(secs_between(ctx.start_wall_ns, ctx.now.wall_ns)),
        mem: ctx.mem,
        cores: ctx.cores,
        gomaxprocs: ctx.cores,
        cpu: ctx.cpu,
        connections: s.num_connections(),
        total_connections: stats.total_connections,
        routes: s.num_routes(),
        remotes: 0,
        leafnodes: 0,
        in_msgs: stats.traffic.in_msgs,
        out_msgs: stats.traffic.out_msgs,
        in_bytes: stats.traffic.in_bytes,
        out_bytes: stats.traffic.out_bytes,
        slow_consumers: stats.slow_consumers,
        subscriptions: s.num_subscriptions(),
        http_req_stats: ctx.http_req_stats.clone(),
        config_load_time: ctx.time(ctx.config_load_wall_ns),
    }
}

fn secs_between(from_ns: i64, to_ns: i64) -> u64 {
    u64::try_from((to_ns - from_ns) / 1_000_000_000).unwrap_or(0)
}

/// Query parameters of `/connz` that change the document.
#[derive(Debug, Clone, Default)]
pub struct ConnzQuery {
    pub sort: String,
    pub subs: bool,
    pub offset: usize,
    pub limit: usize,
    pub cid: Option<u64>,
    /// `auth`: show who each client logged in as, and its account.
    pub auth: bool,
}

#[derive(Debug, Serialize)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnInfo>,
}

#[derive(Debug, Serialize)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    pub rtt: &'static str,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suite: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authorized_user: String,
    /// Shown for accounts other than `$G`, as the NATS server does.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
}

/// `/connz`, sorted by connection ID unless another supported order is asked for.
pub fn connz(s: &Server, ctx: &Context, q: &ConnzQuery) -> Connz {
    let limit = if q.limit == 0 { 1024 } else { q.limit };
    let mut conns: Vec<&Conn> = s
        .conns()
        .filter(|c| q.cid.is_none_or(|id| c.id.0 == id))
        .collect();
    conns.sort_by_key(|c| c.id);
    match q.sort.as_str() {
        "subs" => conns.sort_by_key(|c| std::cmp::Reverse(c.subs.len())),
        "pending" => conns.sort_by_key(|c| std::cmp::Reverse(c.pending_bytes())),
        "msgs_to" => conns.sort_by_key(|c| std::cmp::Reverse(c.traffic.out_msgs)),
        "msgs_from" => conns.sort_by_key(|c| std::cmp::Reverse(c.traffic.in_msgs)),
        "bytes_to" => conns.sort_by_key(|c| std::cmp::Reverse(c.traffic.out_bytes)),
        "bytes_from" => conns.sort_by_key(|c| std::cmp::Reverse(c.traffic.in_bytes)),
        "last" => conns.sort_by_key(|c| std::cmp::Reverse(c.last_activity_wall_ns)),
        "idle" => conns.sort_by_key(|c| c.last_activity_wall_ns),
        "start" | "uptime" => conns.sort_by_key(|c| c.start_wall_ns),
        _ => {}
    }
    let total = conns.len();
    let offset = q.offset.min(total);
    let page = &conns[offset..(offset + limit).min(total)];
    let connections = page
        .iter()
        .map(|c| ConnInfo {
            cid: c.id.0,
            kind: "Client",
            kind_type: "nats",
            ip: c.peer.ip().to_string(),
            port: c.peer.port(),
            start: ctx.time(c.start_wall_ns),
            last_activity: ctx.time(c.last_activity_wall_ns),
            rtt: "0s",
            uptime: uptime(secs_between(c.start_wall_ns, ctx.now.wall_ns)),
            idle: uptime(secs_between(c.last_activity_wall_ns, ctx.now.wall_ns)),
            pending_bytes: c.pending_bytes(),
            in_msgs: c.traffic.in_msgs,
            out_msgs: c.traffic.out_msgs,
            in_bytes: c.traffic.in_bytes,
            out_bytes: c.traffic.out_bytes,
            subscriptions: c.subs.len(),
            name: c.opts.name.clone(),
            lang: c.opts.lang.clone(),
            version: c.opts.version.clone(),
            tls_version: c.tls.as_ref().map(|t| t.0.clone()),
            tls_cipher_suite: c.tls.as_ref().map(|t| t.1.clone()),
            authorized_user: if q.auth {
                c.user
                    .clone()
                    .or_else(|| c.opts.user.clone())
                    .filter(|u| !u.is_empty())
                    .or_else(|| c.opts.auth_token.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            },
            account: match s.account_name(c.account) {
                name if q.auth && name != super::account::GLOBAL => name.to_string(),
                _ => String::new(),
            },
            subscriptions_list: q.subs.then(|| {
                let mut subs: Vec<String> = c
                    .subs
                    .values()
                    .filter_map(|k| s.subscription(*k))
                    .map(|sub| String::from_utf8_lossy(&sub.subject).into_owned())
                    .collect();
                subs.sort();
                subs
            }),
        })
        .collect();
    Connz {
        server_id: s.server_id().to_string(),
        now: ctx.time(ctx.now.wall_ns),
        num_connections: page.len(),
        total,
        offset,
        limit,
        connections,
    }
}

/// Query parameters of `/subsz`.
#[derive(Debug, Clone, Default)]
pub struct SubszQuery {
    pub subs: bool,
    pub offset: usize,
    pub limit: usize,
    /// Only subscriptions that a publish on this literal subject would reach.
    pub test: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Subsz {
    pub server_id: String,
    pub now: String,
    pub num_subscriptions: usize,
    pub num_cache: usize,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    pub cache_hit_rate: f64,
    pub max_fanout: usize,
    pub avg_fanout: f64,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<SubDetail>>,
}

#[derive(Debug, Serialize)]
pub struct SubDetail {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    pub cid: u64,
}

/// `/subsz`.
pub fn subsz(s: &Server, ctx: &Context, q: &SubszQuery) -> Subsz {
    let limit = if q.limit == 0 { 1024 } else { q.limit };
    let stats = sublist_stats(s);
    let mut all: Vec<SubDetail> = Vec::new();
    if q.subs {
        let mut conns: Vec<&Conn> = s.conns().collect();
        conns.sort_by_key(|c| c.id);
        for c in conns {
            let mut keys: Vec<_> = c.subs.values().copied().collect();
            keys.sort_unstable();
            for sub in keys.into_iter().filter_map(|k| s.subscription(k)) {
                if let Some(t) = &q.test {
                    if !super::subject::matches(&sub.subject, t.as_bytes()) {
                        continue;
                    }
                }
                all.push(SubDetail {
                    subject: String::from_utf8_lossy(&sub.subject).into_owned(),
                    qgroup: sub
                        .queue
                        .as_ref()
                        .map(|q| String::from_utf8_lossy(q).into_owned()),
                    sid: String::from_utf8_lossy(&sub.sid).into_owned(),
                    msgs: sub.delivered,
                    max: sub.max,
                    cid: c.id.0,
                });
            }
        }
    }
    let total = if q.subs {
        all.len()
    } else {
        s.num_subscriptions()
    };
    let offset = q.offset.min(all.len());
    let list = q
        .subs
        .then(|| all.into_iter().skip(offset).take(limit).collect());
    Subsz {
        server_id: s.server_id().to_string(),
        now: ctx.time(ctx.now.wall_ns),
        num_subscriptions: s.num_subscriptions(),
        num_cache: s.sublists().map(|l| l.cache_len()).sum(),
        num_inserts: stats.inserts,
        num_removes: stats.removes,
        num_matches: stats.matches,
        cache_hit_rate: if stats.matches == 0 {
            0.0
        } else {
            stats.cache_hits as f64 / stats.matches as f64
        },
        max_fanout: stats.max_fanout,
        avg_fanout: if stats.computed == 0 {
            0.0
        } else {
            stats.fanout_sum as f64 / stats.computed as f64
        },
        total,
        offset,
        limit,
        subscriptions_list: list,
    }
}

/// The counters of all accounts' subscription indexes, added up.
fn sublist_stats(s: &Server) -> super::sublist::SublistStats {
    s.sublists()
        .map(|l| l.stats())
        .fold(Default::default(), |a, b| super::sublist::SublistStats {
            inserts: a.inserts + b.inserts,
            removes: a.removes + b.removes,
            matches: a.matches + b.matches,
            cache_hits: a.cache_hits + b.cache_hits,
            max_fanout: a.max_fanout.max(b.max_fanout),
            fanout_sum: a.fanout_sum + b.fanout_sum,
            computed: a.computed + b.computed,
        })
}

/// `/routez`: the routes to other servers of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Routez {
    pub server_id: String,
    /// Only a configured name; the generated default is not shown here.
    pub server_name: String,
    pub now: String,
    pub num_routes: usize,
    pub routes: Vec<RouteInfo>,
}

/// One route of `/routez`, with the NATS server's fields.
#[derive(Debug, Clone, Serialize)]
pub struct RouteInfo {
    pub rid: u64,
    pub remote_id: String,
    pub remote_name: String,
    pub did_solicit: bool,
    pub is_configured: bool,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    pub rtt: &'static str,
    pub uptime: String,
    pub idle: String,
    pub pending_size: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
}

/// `/routez`; `subs` adds each route's subscriptions (`subject` or `subject queue`).
pub fn routez(s: &Server, ctx: &Context, subs: bool) -> Routez {
    let routes: Vec<RouteInfo> = s
        .routes_view(true)
        .into_iter()
        .map(|r| RouteInfo {
            rid: r.rid,
            remote_id: r.remote_id,
            remote_name: r.remote_name,
            did_solicit: r.did_solicit,
            is_configured: r.is_configured,
            ip: r.peer.ip().to_string(),
            port: r.peer.port(),
            // The NATS server stamps this document in UTC.
            start: rfc3339_nanos(r.start_wall_ns, 0),
            last_activity: rfc3339_nanos(r.last_activity_wall_ns, 0),
            rtt: "0s",
            uptime: uptime(secs_between(r.start_wall_ns, ctx.now.wall_ns)),
            idle: uptime(secs_between(r.last_activity_wall_ns, ctx.now.wall_ns)),
            pending_size: r.pending,
            in_msgs: r.in_msgs,
            out_msgs: r.out_msgs,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            subscriptions: r.subscriptions.len(),
            subscriptions_list: (subs && !r.subscriptions.is_empty()).then_some(r.subscriptions),
        })
        .collect();
    Routez {
        server_id: s.server_id().to_string(),
        server_name: s.config().server_name.clone().unwrap_or_default(),
        now: rfc3339_nanos(ctx.now.wall_ns, 0),
        num_routes: routes.len(),
        routes,
    }
}

/// The `cluster` section of `/varz`: empty without a cluster port.
fn cluster_varz(s: &Server) -> serde_json::Value {
    let Some(c) = s.config().cluster.as_ref() else {
        return serde_json::json!({});
    };
    let mut doc = serde_json::Map::new();
    doc.insert("name".into(), s.cluster_name().into());
    doc.insert("addr".into(), c.host.clone().into());
    let port = s.cluster_port();
    if port != 0 {
        doc.insert("cluster_port".into(), port.into());
    }
    // Route authorization and TLS are not built; these are their defaults, which the
    // NATS server shows all the same.
    doc.insert("auth_timeout".into(), 2.into());
    if !c.routes.is_empty() {
        let urls: Vec<String> = c
            .routes
            .iter()
            .map(|r| super::route::join_host_port(&r.host, r.port))
            .collect();
        doc.insert("urls".into(), urls.into());
    }
    doc.insert("tls_timeout".into(), 2.into());
    serde_json::Value::Object(doc)
}

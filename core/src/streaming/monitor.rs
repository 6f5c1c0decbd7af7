//! The documents of the streaming monitoring endpoints (`/streaming/serverz`, `storez`,
//! `clientsz`, `channelsz`; OPERATIONS §4), built from the streaming server's state.
//!
//! Field names, types, order and omission rules are those of the Go server, because
//! dashboards, the Prometheus exporter and operators' scripts parse these documents;
//! [`to_json`] writes them the way Go's encoder does.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};

use super::limits::ResolvedLimits;
use super::server::{Stats, Streaming, VERSION};
use super::state::{Channel, Sub};
use crate::nats::monitor::Context as NatsContext;
use crate::timefmt::{rfc3339_nanos, uptime};

/// Page size when the query gives none (or a non-positive one).
pub const DEFAULT_LIST_LIMIT: i64 = 1024;

/// What the documents need beyond the server state: the clock, the process start and
/// the UTC offset (shared with the NATS documents), and the process's file descriptors,
/// which only the runtime can read.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub nats: NatsContext,
    /// Open file descriptors; 0 leaves the field out (no `/proc`).
    pub open_fds: i64,
    /// Soft limit on open files; 0 leaves the field out, -1 is "unlimited".
    pub max_fds: i64,
}

impl Context {
    fn time(&self, wall_ns: i64) -> String {
        rfc3339_nanos(wall_ns, self.nats.utc_offset_secs)
    }

    fn now(&self) -> String {
        self.time(self.nats.now.wall_ns)
    }
}

/// Go's `strconv.Atoi` with the error ignored, as the Go server reads `offset`, `limit`
/// and `subs`: unparsable is 0, out of range saturates.
pub fn lenient_int(value: &str) -> i64 {
    match value.parse::<i64>() {
        Ok(v) => v,
        Err(e) => match e.kind() {
            std::num::IntErrorKind::PosOverflow => i64::MAX,
            std::num::IntErrorKind::NegOverflow => i64::MIN,
            _ => 0,
        },
    }
}

/// `offset` and `limit` after the defaults: these are the values the list documents
/// report, even when the offset lies past the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: DEFAULT_LIST_LIMIT,
        }
    }
}

impl Page {
    /// From the raw query values (already read leniently).
    pub fn new(offset: i64, limit: i64) -> Page {
        Page {
            offset: offset.max(0),
            limit: if limit <= 0 {
                DEFAULT_LIST_LIMIT
            } else {
                limit
            },
        }
    }

    /// The slice of a sorted list of `total` entries this page shows. Saturating, so a
    /// huge offset or limit gives an empty or whole page instead of wrapping around.
    fn range(self, total: usize) -> Range<usize> {
        let clamp = |v: i64| usize::try_from(v).unwrap_or(usize::MAX).min(total);
        clamp(self.offset)..clamp(self.offset.saturating_add(self.limit))
    }
}

/// Query of `/streaming/clientsz`.
#[derive(Debug, Clone, Default)]
pub struct ClientszQuery {
    /// A single client by ID; empty lists them all.
    pub client: String,
    /// `subs=1`: include each client's subscriptions.
    pub subs: bool,
    pub page: Page,
}

/// Query of `/streaming/channelsz`.
#[derive(Debug, Clone, Default)]
pub struct ChannelszQuery {
    /// A single channel by name; empty lists them all.
    pub channel: String,
    /// `subs=1`: full channel documents with their subscriptions instead of names.
    pub subs: bool,
    pub page: Page,
}

/// A single client or channel that does not exist; the text is the 404 body (without
/// the trailing newline the HTTP layer adds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

#[derive(Debug, Clone, Serialize)]
pub struct Serverz {
    pub cluster_id: String,
    pub server_id: String,
    pub version: &'static str,
    pub go: &'static str,
    pub state: &'static str,
    /// Raft role; only clustered servers have one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Raft node ID; only clustered servers have one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    pub now: String,
    pub start_time: String,
    pub uptime: String,
    pub clients: usize,
    pub subscriptions: usize,
    pub channels: usize,
    pub total_msgs: u64,
    pub total_bytes: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub open_fds: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_fds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storez {
    pub cluster_id: String,
    pub server_id: String,
    pub now: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub limits: ResolvedLimits,
    pub total_msgs: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Clientsz {
    pub cluster_id: String,
    pub server_id: String,
    pub now: String,
    pub offset: i64,
    pub limit: i64,
    pub count: usize,
    pub total: usize,
    /// Always present, `[]` when the page is empty.
    pub clients: Vec<Clientz>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Clientz {
    pub id: String,
    pub hb_inbox: String,
    pub subs_count: usize,
    /// Channel name → the client's subscriptions on it (with `subs=1` only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, Vec<Subscriptionz>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channelsz {
    pub cluster_id: String,
    pub server_id: String,
    pub now: String,
    pub offset: i64,
    pub limit: i64,
    pub count: usize,
    pub total: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channelz>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channelz {
    pub name: String,
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub subs_count: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscriptionz>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscriptionz {
    pub client_id: String,
    pub inbox: String,
    pub ack_inbox: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub durable_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub queue_name: String,
    pub is_durable: bool,
    pub is_offline: bool,
    pub max_inflight: usize,
    pub ack_wait: i32,
    pub last_sent: u64,
    pub pending_count: usize,
    pub is_stalled: bool,
}

/// The answer of `/streaming/clientsz`: the list, or one client with `client=`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ClientsReply {
    List(Clientsz),
    One(Clientz),
}

/// The answer of `/streaming/channelsz`: the list, or one channel with `channel=`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ChannelsReply {
    List(Channelsz),
    One(Channelz),
}

/// Per-channel numbers for metrics exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCounters {
    pub name: String,
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// As `subs_count` of the channel document.
    pub subscriptions: usize,
    /// Unacknowledged messages summed over the channel's subscriptions.
    pub pending: usize,
}

/// Everything a metrics scrape reads from the streaming server, taken in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub cluster_id: String,
    pub server_id: String,
    pub clients: usize,
    pub subscriptions: usize,
    pub stats: Stats,
    /// By channel name.
    pub channels: Vec<ChannelCounters>,
}

/// `/streaming/serverz`.
pub fn serverz(s: &Streaming, ctx: &Context) -> Serverz {
    let (total_msgs, total_bytes) = s.monitor_totals();
    let stats = s.stats();
    let start = ctx.nats.start_wall_ns;
    let now = ctx.nats.now.wall_ns;
    Serverz {
        cluster_id: s.cluster_id().to_string(),
        server_id: s.server_id().to_string(),
        version: VERSION,
        go: "rust",
        state: s.state(),
        role: s.raft_role().map(|r| r.to_string()).unwrap_or_default(),
        node_id: s.node_id().unwrap_or_default().to_string(),
        now: ctx.now(),
        start_time: ctx.time(start),
        uptime: uptime(u64::try_from((now - start) / 1_000_000_000).unwrap_or(0)),
        clients: s.clients.len(),
        subscriptions: s.channels.values().map(|ch| listed_subs(ch).len()).sum(),
        channels: s.channels.len(),
        total_msgs,
        total_bytes,
        in_msgs: stats.in_msgs,
        in_bytes: stats.in_bytes,
        out_msgs: stats.out_msgs,
        out_bytes: stats.out_bytes,
        open_fds: ctx.open_fds,
        max_fds: ctx.max_fds,
    }
}

/// `/streaming/storez`.
pub fn storez(s: &Streaming, ctx: &Context) -> Storez {
    let (total_msgs, total_bytes) = s.monitor_totals();
    Storez {
        cluster_id: s.cluster_id().to_string(),
        server_id: s.server_id().to_string(),
        now: ctx.now(),
        kind: s.store_kind(),
        limits: s.limits.clone(),
        total_msgs,
        total_bytes,
    }
}

/// `/streaming/clientsz`.
pub fn clientsz(s: &Streaming, ctx: &Context, q: &ClientszQuery) -> Result<ClientsReply, NotFound> {
    if !q.client.is_empty() {
        return s
            .clients
            .contains_key(&q.client)
            .then(|| ClientsReply::One(clientz(s, &q.client, q.subs)))
            .ok_or_else(|| NotFound(format!("Client {} not found", q.client)));
    }
    // The map is ordered by ID bytes, which is the documented sort order.
    let ids: Vec<&String> = s.clients.keys().collect();
    let clients: Vec<Clientz> = ids[q.page.range(ids.len())]
        .iter()
        .map(|id| clientz(s, id, q.subs))
        .collect();
    Ok(ClientsReply::List(Clientsz {
        cluster_id: s.cluster_id().to_string(),
        server_id: s.server_id().to_string(),
        now: ctx.now(),
        offset: q.page.offset,
        limit: q.page.limit,
        count: clients.len(),
        total: ids.len(),
        clients,
    }))
}

fn clientz(s: &Streaming, id: &str, with_subs: bool) -> Clientz {
    let client = &s.clients[id];
    let mut subscriptions: BTreeMap<String, Vec<Subscriptionz>> = BTreeMap::new();
    if with_subs {
        // The client's own list keeps subscription order within each channel.
        for (channel, sub_id) in &client.subs {
            if let Some(sub) = s.channels.get(channel).and_then(|ch| ch.subs.get(sub_id)) {
                subscriptions
                    .entry(channel.clone())
                    .or_default()
                    .push(subscriptionz(sub));
            }
        }
    }
    Clientz {
        id: client.info.id.clone(),
        hb_inbox: client.info.hb_inbox.clone(),
        subs_count: client.subs.len(),
        subscriptions,
    }
}

/// `/streaming/channelsz`.
pub fn channelsz(
    s: &Streaming,
    ctx: &Context,
    q: &ChannelszQuery,
) -> Result<ChannelsReply, NotFound> {
    if !q.channel.is_empty() {
        return s
            .channels
            .get(&q.channel)
            .map(|ch| ChannelsReply::One(channelz(s, &q.channel, ch, q.subs)))
            .ok_or_else(|| NotFound(format!("Channel {} not found", q.channel)));
    }
    let all: Vec<(&String, &Channel)> = s.channels.iter().collect();
    let page = &all[q.page.range(all.len())];
    let (names, channels): (Vec<String>, Vec<Channelz>) = if q.subs {
        let docs = page
            .iter()
            .map(|(name, ch)| channelz(s, name, ch, true))
            .collect();
        (Vec::new(), docs)
    } else {
        (
            page.iter().map(|(name, _)| (*name).clone()).collect(),
            Vec::new(),
        )
    };
    Ok(ChannelsReply::List(Channelsz {
        cluster_id: s.cluster_id().to_string(),
        server_id: s.server_id().to_string(),
        now: ctx.now(),
        offset: q.page.offset,
        limit: q.page.limit,
        count: page.len(),
        total: all.len(),
        names,
        channels,
    }))
}

fn channelz(s: &Streaming, name: &str, ch: &Channel, with_subs: bool) -> Channelz {
    let state = s.store.msgs_state(name);
    let listed = listed_subs(ch);
    Channelz {
        name: name.to_string(),
        msgs: state.count,
        bytes: state.bytes,
        first_seq: state.first,
        last_seq: state.last,
        subs_count: listed.len(),
        subscriptions: if with_subs {
            listed.into_iter().map(subscriptionz).collect()
        } else {
            Vec::new()
        },
    }
}

/// Every subscription record of a channel in the order the channel document lists them:
/// plain ones (online durables included), then offline durables, then each queue
/// group's members followed by its shadow. Its length is the channel's `subs_count`.
fn listed_subs(ch: &Channel) -> Vec<&Sub> {
    let plain = ch.subs.values().filter(|s| !s.is_queue());
    let mut out: Vec<&Sub> = plain.clone().filter(|s| !s.is_offline).collect();
    out.extend(plain.filter(|s| s.is_offline));
    for g in ch.groups.values() {
        out.extend(g.members.iter().filter_map(|id| ch.subs.get(id)));
        out.extend(g.shadow.and_then(|id| ch.subs.get(&id)));
    }
    out
}

fn subscriptionz(sub: &Sub) -> Subscriptionz {
    Subscriptionz {
        client_id: sub.client_id.clone(),
        inbox: sub.inbox.to_string(),
        ack_inbox: sub.ack_inbox.clone(),
        durable_name: sub.durable_name.clone(),
        queue_name: sub.q_group.clone(),
        is_durable: sub.is_durable,
        is_offline: sub.is_offline,
        max_inflight: sub.max_in_flight,
        ack_wait: sub.ack_wait_secs,
        last_sent: sub.last_sent,
        pending_count: sub.pending.len(),
        is_stalled: sub.stalled,
    }
}

/// The numbers a metrics scrape needs, in one pass over the state.
pub fn counters(s: &Streaming) -> Counters {
    let channels: Vec<ChannelCounters> = s
        .channels
        .iter()
        .map(|(name, ch)| {
            let state = s.store.msgs_state(name);
            let listed = listed_subs(ch);
            ChannelCounters {
                name: name.clone(),
                msgs: state.count,
                bytes: state.bytes,
                first_seq: state.first,
                last_seq: state.last,
                subscriptions: listed.len(),
                pending: listed.iter().map(|sub| sub.pending.len()).sum(),
            }
        })
        .collect();
    Counters {
        cluster_id: s.cluster_id().to_string(),
        server_id: s.server_id().to_string(),
        clients: s.clients.len(),
        subscriptions: channels.iter().map(|c| c.subscriptions).sum(),
        stats: s.stats(),
        channels,
    }
}

impl Streaming {
    /// Messages and bytes stored over all channels, in the store's byte accounting.
    fn monitor_totals(&self) -> (u64, u64) {
        self.channels.keys().fold((0, 0), |(msgs, bytes), name| {
            let st = self.store.msgs_state(name);
            (msgs + st.count, bytes + st.bytes)
        })
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A monitoring document as the Go server writes it: two-space indentation, and
/// strings escaped like Go's encoder (`<`, `>`, `&`, U+2028, U+2029 as `\uXXXX`;
/// backspace and form feed as `\u0008`, `\u000c`), so that byte-comparing clients and
/// snapshot diffs agree with it.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter::new());
    // Writing into a Vec cannot fail and every document is plain data.
    value
        .serialize(&mut ser)
        .expect("monitoring documents serialize");
    out
}

struct GoFormatter {
    pretty: PrettyFormatter<'static>,
}

impl GoFormatter {
    fn new() -> Self {
        GoFormatter {
            pretty: PrettyFormatter::with_indent(b"  "),
        }
    }
}

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::Backspace => b"\\u0008",
            CharEscape::FormFeed => b"\\u000c",
            CharEscape::AsciiControl(b) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let buf = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ];
                return w.write_all(&buf);
            }
        };
        w.write_all(text)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_string_escaping() {
        let text = String::from_utf8(to_json(
            &"foo.> <a&b> \u{2028}\u{2029} \u{8}\u{c}\u{1}\u{1f}\"\\/\n\r\t é",
        ))
        .unwrap();
        assert_eq!(
            text,
            r#""foo.\u003e \u003ca\u0026b\u003e \u2028\u2029 \u0008\u000c\u0001\u001f\"\\/\n\r\t é""#
        );
    }

    #[test]
    fn go_indentation() {
        #[derive(Serialize)]
        struct Doc {
            a: Vec<u32>,
            b: Vec<u32>,
            c: BTreeMap<String, u32>,
        }
        let doc = Doc {
            a: vec![],
            b: vec![1, 2],
            c: [("x>".to_string(), 1)].into_iter().collect(),
        };
        let text = String::from_utf8(to_json(&doc)).unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": [],\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": {\n    \"x\\u003e\": 1\n  }\n}"
        );
    }

    #[test]
    fn lenient_integers() {
        assert_eq!(lenient_int("12"), 12);
        assert_eq!(lenient_int("+1"), 1);
        assert_eq!(lenient_int("01"), 1);
        assert_eq!(lenient_int("-3"), -3);
        for bad in ["", "abc", " 1", "1 ", "1.5", "0x10", "1_000"] {
            assert_eq!(lenient_int(bad), 0, "{bad:?}");
        }
        assert_eq!(lenient_int("99999999999999999999"), i64::MAX);
        assert_eq!(lenient_int("-99999999999999999999"), i64::MIN);
    }

    #[test]
    fn pages() {
        assert_eq!(
            Page::new(-5, 0),
            Page {
                offset: 0,
                limit: 1024
            }
        );
        assert_eq!(
            Page::new(3, -1),
            Page {
                offset: 3,
                limit: 1024
            }
        );
        assert_eq!(Page::new(1, 2).range(5), 1..3);
        assert_eq!(Page::new(4, 2).range(5), 4..5);
        assert_eq!(Page::new(9, 2).range(5), 5..5);
        assert_eq!(Page::new(i64::MAX, i64::MAX).range(5), 5..5);
        assert_eq!(Page::new(1, i64::MAX).range(5), 1..5);
        assert_eq!(Page::new(0, 0).range(0), 0..0);
    }
}

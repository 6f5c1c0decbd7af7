//! What subscriptions received: every acknowledged publish reaches every subscription
//! that must have it, first deliveries come in order and once, the redelivered flag
//! marks exactly the redeliveries, and no plain subscription holds more than its
//! MaxInFlight unacknowledged messages.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use stan_core::client::StartAt;

use super::{fmt_t, Model};
use crate::journal::{Ev, Inc, SubKind};
use crate::plan::TIMING;
use crate::server::EPOCH_NS;

/// Subscriptions that share delivery history on the server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Lineage {
    /// One subscribe request of one connection.
    Plain(Inc, u32),
    /// A durable lives from its first subscribe to its unsubscribe, across connections;
    /// `generation` counts the unsubscribes before it.
    Durable {
        client_id: String,
        channel: String,
        name: String,
        generation: u32,
    },
    /// A queue group by channel and group key.
    Queue { channel: String, group: String },
}

impl std::fmt::Display for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lineage::Plain(inc, sub) => write!(f, "{inc}/s{sub}"),
            Lineage::Durable {
                client_id,
                channel,
                name,
                generation,
            } => {
                write!(f, "durable {client_id}/{channel}/{name}#{generation}")
            }
            Lineage::Queue { channel, group } => write!(f, "queue {channel}/{group}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Item {
    /// `order` is the position in the journal, which breaks ties between equal times.
    Msg {
        at: Duration,
        order: usize,
        seq: u64,
        redelivered: bool,
        count: u32,
        payload: String,
        timestamp: i64,
    },
    Ack {
        at: Duration,
        seq: u64,
    },
}

#[derive(Debug, Clone)]
struct SubRec {
    inc: Inc,
    sub: u32,
    client_id: String,
    /// The tracking name (see [`Model::stored_channel`]).
    channel: String,
    /// The channel's own name.
    base: String,
    /// The server process it was made on; its deliveries come from that process.
    epoch: usize,
    kind: SubKind,
    start: StartAt,
    max_in_flight: i32,
    manual: bool,
    requested: Duration,
    subscribed: Option<Duration>,
    ended: Option<Duration>,
    lineage: Lineage,
    items: Vec<Item>,
}

impl SubRec {
    fn name(&self) -> String {
        format!(
            "{}/s{} ({} {})",
            self.inc, self.sub, self.channel, self.kind
        )
    }

    fn msgs(&self) -> impl Iterator<Item = Delivery<'_>> + '_ {
        self.items.iter().filter_map(|i| match i {
            Item::Msg {
                at,
                order,
                seq,
                redelivered,
                payload,
                timestamp,
                ..
            } => Some(Delivery {
                at: *at,
                order: *order,
                seq: *seq,
                redelivered: *redelivered,
                payload: payload.as_str(),
                timestamp: *timestamp,
            }),
            Item::Ack { .. } => None,
        })
    }
}

struct Delivery<'a> {
    at: Duration,
    order: usize,
    seq: u64,
    redelivered: bool,
    payload: &'a str,
    timestamp: i64,
}

struct Publish {
    channel: String,
    base: String,
    epoch: usize,
    sent: Duration,
    acked: bool,
}

pub(super) fn check(m: &mut Model<'_>) {
    let (subs, pubs) = collect(m);
    let mut found: Vec<(Duration, String)> = Vec::new();
    let stored = stored_messages(m, &subs, &pubs, &mut found);
    let floor = EvictionFloor::new(m.plan.limits.max_msgs, &subs);
    for s in &subs {
        per_subscription(
            s,
            &floor,
            |inc, from, to| m.quiet_during(inc, from, to),
            &mut found,
        );
    }
    let mut lineages: BTreeMap<&Lineage, Vec<&SubRec>> = BTreeMap::new();
    for s in &subs {
        lineages.entry(&s.lineage).or_default().push(s);
    }
    for (lineage, members) in &lineages {
        let anchor = match lineage {
            Lineage::Queue { .. } => queue_anchor(m, members),
            _ => None,
        };
        shared_history(lineage, members, anchor, &mut found);
        required(m, lineage, members, anchor, &pubs, &stored, &mut found);
    }
    if m.plan.limits.max_msgs > 0 {
        audit(m, &subs, &stored, &mut found);
    }
    found.sort_by_key(|(t, _)| *t);
    for (t, v) in found {
        m.violation(t, v);
    }
}

/// Under `max_msgs`, a pending message that limits removed counts as acknowledged
/// (BEHAVIOUR §4.4.3), so it stops counting toward MaxInFlight. The server's newest
/// sequence at a time is bounded by what subscribers saw shortly after; everything
/// `max_msgs` below it may be gone.
struct EvictionFloor {
    max_msgs: u64,
    /// Per channel: (time, highest sequence delivered up to then), in time order.
    seen: BTreeMap<String, Vec<(Duration, u64)>>,
}

impl EvictionFloor {
    fn new(max_msgs: i64, subs: &[SubRec]) -> Self {
        let mut seen: BTreeMap<String, Vec<(Duration, u64)>> = BTreeMap::new();
        if max_msgs > 0 {
            for s in subs {
                seen.entry(s.channel.clone())
                    .or_default()
                    .extend(s.msgs().map(|d| (d.at, d.seq)));
            }
            for v in seen.values_mut() {
                v.sort();
                let mut high = 0;
                for e in v.iter_mut() {
                    high = high.max(e.1);
                    e.1 = high;
                }
            }
        }
        EvictionFloor {
            max_msgs: max_msgs.max(0) as u64,
            seen,
        }
    }

    /// Sequences at or below this may have been removed by `at`.
    fn at(&self, channel: &str, at: Duration) -> u64 {
        let Some(v) = self.seen.get(channel) else {
            return 0;
        };
        let until = at + 2 * TIMING.latency_bound();
        let i = v.partition_point(|(t, _)| *t <= until);
        if i == 0 {
            return 0;
        }
        v[i - 1].1.saturating_sub(self.max_msgs)
    }
}

/// The earliest subscribe of a member that stayed healthy from then to the end: from
/// that moment the group provably existed without interruption.
fn queue_anchor(m: &Model<'_>, members: &[&SubRec]) -> Option<Duration> {
    let horizon = m.horizon();
    members
        .iter()
        .filter(|s| {
            healthy_at_end(m, s) && !m.quiet_during(s.inc, s.subscribed.expect("healthy"), horizon)
        })
        .filter_map(|s| s.subscribed)
        .min()
}

fn collect(m: &Model<'_>) -> (Vec<SubRec>, BTreeMap<String, Publish>) {
    let mut subs: Vec<SubRec> = Vec::new();
    let mut index: BTreeMap<(Inc, u32), usize> = BTreeMap::new();
    let mut generation: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    let mut pubs: BTreeMap<String, Publish> = BTreeMap::new();
    for (order, e) in m.entries.iter().enumerate() {
        let t = e.at;
        match &e.ev {
            Ev::Published {
                channel, payload, ..
            } => {
                pubs.insert(
                    payload.clone(),
                    Publish {
                        channel: m.stored_channel(channel, t),
                        base: channel.clone(),
                        epoch: m.epoch_at(t),
                        sent: t,
                        acked: false,
                    },
                );
            }
            Ev::PubAck {
                payload,
                error: None,
                ..
            } => {
                if let Some(p) = pubs.get_mut(payload) {
                    p.acked = true;
                }
            }
            Ev::SubRequested {
                inc,
                sub,
                channel,
                kind,
                start,
                max_in_flight,
                manual,
            } => {
                let client_id = m
                    .incs
                    .get(inc)
                    .map(|i| i.client_id.clone())
                    .unwrap_or_default();
                let base = channel.clone();
                let channel = &m.stored_channel(channel, t);
                let lineage = match kind {
                    SubKind::Plain => Lineage::Plain(*inc, *sub),
                    SubKind::Durable(name) => {
                        let g = generation
                            .get(&(client_id.clone(), channel.clone(), name.clone()))
                            .copied()
                            .unwrap_or(0);
                        Lineage::Durable {
                            client_id: client_id.clone(),
                            channel: channel.clone(),
                            name: name.clone(),
                            generation: g,
                        }
                    }
                    SubKind::Queue(group) => Lineage::Queue {
                        channel: channel.clone(),
                        group: group.clone(),
                    },
                    SubKind::DurableQueue { durable, group } => Lineage::Queue {
                        channel: channel.clone(),
                        group: format!("{durable}:{group}"),
                    },
                };
                index.insert((*inc, *sub), subs.len());
                subs.push(SubRec {
                    inc: *inc,
                    sub: *sub,
                    client_id,
                    channel: channel.clone(),
                    base,
                    epoch: m.epoch_at(t),
                    kind: kind.clone(),
                    start: *start,
                    max_in_flight: *max_in_flight,
                    manual: *manual,
                    requested: t,
                    subscribed: None,
                    ended: None,
                    lineage,
                    items: Vec::new(),
                });
            }
            Ev::Subscribed { inc, sub } => {
                if let Some(&i) = index.get(&(*inc, *sub)) {
                    subs[i].subscribed = Some(t);
                }
            }
            Ev::SubFailed { inc, sub, .. } | Ev::SubEnded { inc, sub, .. } => {
                if let Some(&i) = index.get(&(*inc, *sub)) {
                    subs[i].ended.get_or_insert(t);
                }
            }
            Ev::SubEnding {
                inc,
                sub,
                unsubscribe,
            } => {
                if let Some(&i) = index.get(&(*inc, *sub)) {
                    let s = &mut subs[i];
                    s.ended.get_or_insert(t);
                    if let (true, SubKind::Durable(name)) = (*unsubscribe, &s.kind) {
                        *generation
                            .entry((s.client_id.clone(), s.channel.clone(), name.clone()))
                            .or_insert(0) += 1;
                    }
                }
            }
            Ev::Msg {
                inc,
                sub,
                seq,
                redelivered,
                count,
                payload,
                timestamp,
            } => {
                if let Some(&i) = index.get(&(*inc, *sub)) {
                    subs[i].items.push(Item::Msg {
                        at: t,
                        order,
                        seq: *seq,
                        redelivered: *redelivered,
                        count: *count,
                        payload: payload.clone(),
                        timestamp: *timestamp,
                    });
                }
            }
            Ev::Ack { inc, sub, seq } => {
                if let Some(&i) = index.get(&(*inc, *sub)) {
                    subs[i].items.push(Item::Ack { at: t, seq: *seq });
                }
            }
            _ => {}
        }
    }
    (subs, pubs)
}

/// What the deliveries and the recoveries tell about the store: each channel's
/// sequence → payload per storing process, checked to be one-to-one and to hold only
/// messages published on that channel to that process.
struct Stored {
    by_seq: BTreeMap<(String, usize, u64), String>,
    /// Payload → sequence, and the timestamp when a delivery showed it.
    by_payload: BTreeMap<String, (u64, Option<i64>)>,
    last: BTreeMap<String, u64>,
}

/// One sighting of a stored message.
struct Seen<'a> {
    at: Duration,
    who: String,
    channel: &'a str,
    base: &'a str,
    epoch: usize,
    seq: u64,
    payload: &'a str,
    timestamp: Option<i64>,
}

fn stored_messages(
    m: &Model<'_>,
    subs: &[SubRec],
    pubs: &BTreeMap<String, Publish>,
    found: &mut Vec<(Duration, String)>,
) -> Stored {
    let mut st = Stored {
        by_seq: BTreeMap::new(),
        by_payload: BTreeMap::new(),
        last: BTreeMap::new(),
    };
    let mut sightings = Vec::new();
    for s in subs {
        for d in s.msgs() {
            sightings.push(Seen {
                at: d.at,
                who: s.name(),
                channel: &s.channel,
                base: &s.base,
                epoch: s.epoch,
                seq: d.seq,
                payload: d.payload,
                timestamp: Some(d.timestamp),
            });
        }
    }
    for (epoch, channels) in &m.recovered {
        for (base, r) in channels {
            for (seq, payload) in &r.msgs {
                let Some(payload) = payload else { continue };
                sightings.push(Seen {
                    at: r.at,
                    who: format!("the store's recovery of {base}"),
                    channel: base,
                    base,
                    epoch: *epoch,
                    seq: *seq,
                    payload,
                    timestamp: None,
                });
            }
        }
    }
    let mut reported = BTreeSet::new();
    for v in sightings {
        let (at, seq, payload) = (v.at, v.seq, v.payload);
        let era = m.era(v.base, v.epoch, seq);
        match pubs.get(payload) {
            None if reported.insert(payload.to_string()) => {
                found.push((
                    at,
                    format!(
                        "{} got {payload:?} (seq {seq}), which nobody published",
                        v.who
                    ),
                ));
            }
            Some(p) if p.base != v.base && reported.insert(payload.to_string()) => {
                found.push((
                    at,
                    format!(
                        "{} got {payload} (seq {seq}) published on {}",
                        v.who, p.base
                    ),
                ));
            }
            Some(p) if p.epoch != era && reported.insert(payload.to_string()) => {
                found.push((
                    at,
                    format!(
                        "{} got {payload} (seq {seq}) as stored by server process {era}, but it was published to process {}",
                        v.who, p.epoch
                    ),
                ));
            }
            _ => {}
        }
        let key = (v.base.to_string(), era, seq);
        match st.by_seq.get(&key) {
            Some(p) if p != payload => {
                if reported.insert(format!("{}#{era}#{seq}", v.base)) {
                    found.push((
                        at,
                        format!(
                            "{} seq {seq} carries {payload} but was {p} elsewhere",
                            v.base
                        ),
                    ));
                }
            }
            Some(_) => {}
            None => {
                st.by_seq.insert(key, payload.to_string());
            }
        }
        match st.by_payload.get_mut(payload) {
            Some((other, _)) if *other != seq => {
                if reported.insert(format!("{payload}@")) {
                    found.push((
                        at,
                        format!("{payload} stored twice, as seq {other} and {seq}"),
                    ));
                }
            }
            Some((_, ts)) => {
                if ts.is_none() {
                    *ts = v.timestamp;
                }
            }
            None => {
                st.by_payload
                    .insert(payload.to_string(), (seq, v.timestamp));
            }
        }
        let last = st.last.entry(v.channel.to_string()).or_insert(0);
        *last = (*last).max(seq);
    }
    st
}

/// Checks that need one subscription's deliveries only.
fn per_subscription(
    s: &SubRec,
    floor: &EvictionFloor,
    quiet: impl Fn(Inc, Duration, Duration) -> bool,
    found: &mut Vec<(Duration, String)>,
) {
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut last_first: Option<u64> = None;
    let mut unacked: BTreeSet<u64> = BTreeSet::new();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut reported_mif = false;
    let plain = matches!(s.lineage, Lineage::Plain(..));
    let mut acked_at: BTreeMap<u64, Duration> = BTreeMap::new();
    for item in &s.items {
        match item {
            Item::Ack { at, seq } => {
                unacked.remove(seq);
                acked.insert(*seq);
                acked_at.entry(*seq).or_insert(*at);
            }
            Item::Msg {
                at,
                seq,
                redelivered,
                count,
                ..
            } => {
                let (at, seq) = (*at, *seq);
                if let Some(&t) = acked_at.get(&seq) {
                    // Sent after the ack arrived: the server dropped or ignored it.
                    if at > t + 2 * TIMING.latency_bound() && !quiet(s.inc, t, at) {
                        found.push((
                            at,
                            format!(
                                "{} got seq {seq} again although it acknowledged it at {}",
                                s.name(),
                                fmt_t(t)
                            ),
                        ));
                        acked_at.remove(&seq);
                    }
                }
                if *redelivered != (*count > 0) {
                    found.push((
                        at,
                        format!(
                            "{} seq {seq}: redelivered={redelivered} with redelivery count {count}",
                            s.name()
                        ),
                    ));
                }
                if !redelivered {
                    if seen.contains(&seq) {
                        found.push((
                            at,
                            format!(
                                "{} got seq {seq} again without the redelivered flag",
                                s.name()
                            ),
                        ));
                    }
                    if let Some(prev) = last_first.filter(|p| *p >= seq) {
                        found.push((
                            at,
                            format!(
                                "{} first deliveries out of order: {seq} after {prev}",
                                s.name()
                            ),
                        ));
                    }
                    last_first = Some(last_first.map_or(seq, |p| p.max(seq)));
                } else if plain && !seen.contains(&seq) {
                    found.push((at, format!("{} got seq {seq} flagged redelivered, but it was never delivered before", s.name())));
                }
                seen.insert(seq);
                if s.manual && !s.kind.is_queue() && !acked.contains(&seq) {
                    let gone = floor.at(&s.channel, at);
                    unacked.retain(|u| *u > gone);
                    unacked.insert(seq);
                    if unacked.len() > s.max_in_flight.max(0) as usize && !reported_mif {
                        reported_mif = true;
                        found.push((
                            at,
                            format!(
                                "{} holds {} unacknowledged messages, more than MaxInFlight {}",
                                s.name(),
                                unacked.len(),
                                s.max_in_flight
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// A message is first-delivered to one subscription of a durable or of a queue group
/// that provably lived on since `anchor`, and a durable's first deliveries keep their
/// order across connections.
///
/// Receipt order is not send order across subscriptions (a frozen client reads its
/// backlog late), so uniqueness ignores order, and a durable's order is taken
/// connection by connection: the server only attaches a durable again once the previous
/// connection's subscription is gone, so every send to the older came first.
fn shared_history(
    lineage: &Lineage,
    members: &[&SubRec],
    anchor: Option<Duration>,
    found: &mut Vec<(Duration, String)>,
) {
    let since = match lineage {
        Lineage::Plain(..) => return,
        Lineage::Durable { .. } => Duration::ZERO,
        Lineage::Queue { .. } => match anchor {
            Some(t) => t,
            None => return,
        },
    };
    let mut msgs: Vec<(Delivery<'_>, &SubRec)> = Vec::new();
    // Only members that joined once the group provably lived on: one that joined
    // earlier may have belonged to a group that ended before, and a frozen member reads
    // what that group sent long after.
    for s in members
        .iter()
        .filter(|s| s.subscribed.is_some_and(|t| t >= since))
    {
        msgs.extend(s.msgs().filter(|d| !d.redelivered).map(|d| (d, *s)));
    }
    msgs.sort_by_key(|(d, s)| (s.requested, d.order));
    let mut first_to: BTreeMap<u64, (Inc, u32, String)> = BTreeMap::new();
    let mut last_first: Option<u64> = None;
    for (d, s) in msgs {
        let (at, seq) = (d.at, d.seq);
        match first_to.get(&seq) {
            Some((inc, sub, who)) if (*inc, *sub) != (s.inc, s.sub) => {
                found.push((
                    at,
                    format!(
                        "{lineage}: seq {seq} first-delivered to both {who} and {}",
                        s.name()
                    ),
                ));
            }
            Some(_) => {}
            None => {
                first_to.insert(seq, (s.inc, s.sub, s.name()));
            }
        }
        if let Lineage::Durable { .. } = lineage {
            if let Some(prev) = last_first.filter(|p| *p >= seq) {
                found.push((at, format!("{lineage}: first deliveries out of order across connections: {seq} after {prev}")));
            }
            last_first = Some(last_first.map_or(seq, |p| p.max(seq)));
        }
    }
}

/// How long a lineage must have received nothing before the end for its completeness
/// to be judged: longer than any ack wait of the workloads, plus the ack delays.
const QUIESCENT: Duration = Duration::from_secs(3);

/// True when the subscription is up at the end on a connection the server still holds,
/// and nothing kept it from answering since the workload ended.
fn healthy_at_end(m: &Model<'_>, s: &SubRec) -> bool {
    let horizon = m.horizon();
    let Some(inc) = m.incs.get(&s.inc) else {
        return false;
    };
    s.subscribed.is_some()
        && s.ended.is_none()
        && inc.end.is_none()
        && m.registration_of(s.inc)
            .is_some_and(|r| r.end.is_none_or(|(t, _)| t > horizon))
        && !m.quiet_during(s.inc, m.plan.workload_end, horizon)
}

fn wall(t: Duration) -> i64 {
    EPOCH_NS + t.as_nanos() as i64
}

/// Every publish the server acknowledged reaches the lineage when the lineage must have
/// it; manual subscriptions must also have acknowledged it, which only redelivery
/// guarantees for messages whose acks were skipped or lost.
fn required(
    m: &Model<'_>,
    lineage: &Lineage,
    members: &[&SubRec],
    anchor: Option<Duration>,
    pubs: &BTreeMap<String, Publish>,
    stored: &Stored,
    found: &mut Vec<(Duration, String)>,
) {
    let horizon = m.horizon();
    let Some(first) = members
        .iter()
        .filter(|s| s.subscribed.is_some())
        .min_by_key(|s| s.subscribed)
    else {
        return;
    };
    let first_at = first.subscribed.expect("filtered");
    // Without --file_sync a lossy recovery may leave a durable's or a group's cursor
    // past the channel's new end, so that sequences given again are skipped; only the
    // store's own promises are judged there (oracle::store).
    if m.lossy() && first.epoch > 0 && !matches!(lineage, Lineage::Plain(..)) {
        return;
    }
    let since = match lineage {
        Lineage::Queue { .. } => match anchor {
            Some(t) => t,
            None => return,
        },
        _ => {
            let last = members
                .iter()
                .max_by_key(|s| s.requested)
                .expect("non-empty");
            if !healthy_at_end(m, last) {
                return;
            }
            first_at
        }
    };
    let channel = &first.channel;
    let manual = first.manual;
    // Handled: received by a member that acknowledges automatically, or acknowledged by
    // one that does it by hand (queue members may differ).
    let mut handled: BTreeMap<u64, Duration> = BTreeMap::new();
    for s in members {
        for item in &s.items {
            let (seq, at) = match item {
                Item::Msg { seq, at, .. } if !s.manual => (*seq, *at),
                Item::Ack { seq, at } => (*seq, *at),
                Item::Msg { .. } => continue,
            };
            handled.entry(seq).or_insert(at);
        }
    }
    let published_here = pubs.values().filter(|p| &p.channel == channel).count();
    let max_msgs = m.plan.limits.max_msgs;
    // A subscriber that takes everything at once gets each new message as it is stored,
    // before any limit can remove it.
    let keeps_up = first.max_in_flight as usize >= published_here && !manual;
    let floor = stored
        .last
        .get(channel)
        .copied()
        .unwrap_or(0)
        .saturating_sub(max_msgs.max(0) as u64);
    let mut missing = Vec::new();
    let mut complete_at = Duration::ZERO;
    for (payload, p) in pubs {
        if &p.channel != channel || !p.acked || p.sent >= horizon {
            continue;
        }
        let seq = stored.by_payload.get(payload).map(|(s, _)| *s);
        let ts = stored.by_payload.get(payload).and_then(|(_, ts)| *ts);
        let by_start = !matches!(lineage, Lineage::Queue { .. })
            && match first.start {
                StartAt::First => true,
                StartAt::Sequence(k) => seq.is_some_and(|s| s >= k),
                StartAt::TimeDelta(d) => {
                    ts.is_some_and(|ts| ts >= wall(first_at) - d.as_nanos() as i64)
                }
                StartAt::Time(t) => {
                    ts.is_some_and(|ts| ts >= t + (first_at - first.requested).as_nanos() as i64)
                }
                StartAt::NewOnly | StartAt::LastReceived => false,
            };
        if !(p.sent > since || by_start) {
            continue;
        }
        let may_be_evicted = max_msgs > 0 && !(keeps_up && p.sent > since);
        if may_be_evicted && seq.is_none_or(|s| s <= floor) {
            continue;
        }
        match seq.and_then(|s| handled.get(&s)) {
            Some(at) => complete_at = complete_at.max(*at),
            None => missing.push(format!(
                "{payload}{}@{}",
                seq.map_or(String::new(), |s| format!("#{s}")),
                fmt_t(p.sent)
            )),
        }
    }
    let owed_until = if missing.is_empty() {
        complete_at
    } else {
        horizon
    };
    if !matches!(lineage, Lineage::Queue { .. }) {
        stalls(m, lineage, members, owed_until, found);
    }
    // A lineage still receiving near the end may simply be slow (a resumed durable
    // draining its backlog, say); one that stopped receiving must be complete. A lost
    // redelivery stops the lineage, so it is still caught.
    let last_delivery = members.iter().flat_map(|s| s.msgs().map(|d| d.at)).max();
    if missing.is_empty() || last_delivery.is_some_and(|t| t + QUIESCENT > horizon) {
        return;
    }
    let what = if manual { "acknowledged" } else { "received" };
    let shown: Vec<&str> = missing.iter().take(4).map(String::as_str).collect();
    let more = if missing.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    found.push((
        horizon,
        format!(
            "{lineage} ({} {}) never {what} {} message(s) it must have: {}{more}",
            channel,
            first.kind,
            missing.len(),
            shown.join(", "),
        ),
    ));
}

/// Once the workload is over, a healthy plain or durable subscription that is still owed
/// messages receives something at least every [`QUIESCENT`]: a redelivery within its ack
/// wait, or a new message once an ack frees room. A longer silence is a subscription
/// the server forgot to feed, even if something later wakes it up again.
fn stalls(
    m: &Model<'_>,
    lineage: &Lineage,
    members: &[&SubRec],
    owed_until: Duration,
    found: &mut Vec<(Duration, String)>,
) {
    let Some(last) = members.iter().max_by_key(|s| s.requested) else {
        return;
    };
    let Some(from) = last.subscribed.map(|t| t.max(m.plan.workload_end)) else {
        return;
    };
    let mut times: Vec<Duration> = last
        .msgs()
        .map(|d| d.at)
        .filter(|t| *t >= from && *t <= owed_until)
        .collect();
    times.insert(0, from);
    times.push(owed_until);
    if let Some(w) = times.windows(2).find(|w| w[1] > w[0] + QUIESCENT) {
        found.push((
            w[1],
            format!(
                "{lineage}: received nothing from {} to {} while still owed messages",
                fmt_t(w[0]),
                fmt_t(w[1])
            ),
        ));
    }
}

/// A subscriber from the first message, after publishing stopped, sees exactly the
/// newest `max_msgs` messages.
fn audit(m: &Model<'_>, subs: &[SubRec], stored: &Stored, found: &mut Vec<(Duration, String)>) {
    let max = m.plan.limits.max_msgs as u64;
    for s in subs
        .iter()
        .filter(|s| s.client_id == "audit" && healthy_at_end(m, s))
    {
        let last = stored.last.get(&s.channel).copied().unwrap_or(0);
        let expect: Vec<u64> = (last.saturating_sub(max) + 1..=last).collect();
        let got: Vec<u64> = s.msgs().filter(|d| !d.redelivered).map(|d| d.seq).collect();
        if got != expect {
            let at = s.subscribed.unwrap_or_default();
            found.push((
                at,
                format!(
                    "{} with max_msgs {max} got seqs {got:?}, expected {expect:?}",
                    s.name()
                ),
            ));
        }
    }
}

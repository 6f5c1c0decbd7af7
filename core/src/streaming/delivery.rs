//! Publish, delivery, acks and redelivery (PROTOCOL §3.2, §3.4–3.7).

use std::time::Duration;

use prost::Message;

use super::limits::is_valid_channel;
use std::sync::Arc;

use super::pb::MsgProto;
use super::server::{Streaming, Timer};
use super::state::SubId;
use super::wire::{encode_msg, encode_pub_ack, AckRef, PubMsgRef};
use crate::log::Level;
use crate::time::{Instant, Now};

/// Redelivery treats entries expiring this soon as expired (PROTOCOL §3.6.1).
const EXPIRY_SLACK: Duration = Duration::from_millis(15);

impl Streaming {
    pub(crate) fn on_publish(&mut self, now: Now, reply: Option<&str>, payload: &[u8]) {
        let msg = match PubMsgRef::decode(payload) {
            Ok(m) => m,
            Err(_) if Self::is_ctrl_msg(payload) => return,
            Err(_) => return self.pub_ack(reply, "", "stan: invalid publish request"),
        };
        self.stats.in_msgs += 1;
        self.stats.in_bytes += payload.len() as u64;
        let publisher_known = if msg.conn_id.is_empty() {
            self.clients.contains_key(msg.client_id)
        } else {
            self.conn_ids.contains_key(msg.conn_id)
        };
        if msg.guid.is_empty() || !is_valid_channel(msg.subject) {
            return self.pub_ack(reply, msg.guid, "stan: invalid publish request");
        }
        // Partitioning: the publisher's connect may still be on its way (BEHAVIOUR §12).
        if self.partitions.is_some()
            && self.park_publish(
                now,
                reply,
                payload,
                msg.client_id,
                msg.conn_id,
                publisher_known,
            )
        {
            return;
        }
        if !publisher_known {
            return self.pub_ack(reply, msg.guid, "stan: invalid publish request");
        }
        self.accept_publish(now, reply, &msg);
    }

    /// A parked publish whose publisher has registered since.
    pub(crate) fn publish_validated(&mut self, now: Now, reply: Option<&str>, payload: &[u8]) {
        if let Ok(msg) = PubMsgRef::decode(payload) {
            self.accept_publish(now, reply, &msg);
        }
    }

    /// A parked publish whose publisher never registered.
    pub(crate) fn refuse_publish(&mut self, reply: Option<&str>, payload: &[u8]) {
        let guid = PubMsgRef::decode(payload).map_or("", |m| m.guid);
        self.pub_ack(reply, guid, "stan: invalid publish request");
    }

    /// Stores a validated publish and acknowledges it.
    fn accept_publish(&mut self, now: Now, reply: Option<&str>, msg: &PubMsgRef<'_>) {
        self.trace(|| {
            format!(
                "[Client:{}] Received message from publisher subj={} guid={}",
                msg.client_id, msg.subject, msg.guid
            )
        });
        if let Err(e) = self.lookup_or_create_channel(now, msg.subject) {
            return self.pub_ack(reply, msg.guid, &e);
        }
        if let Err(e) = self.store_message(now, msg) {
            return self.pub_ack(reply, msg.guid, &e);
        }
        self.deliver_channel(now, msg.subject);
        self.trace(|| {
            format!(
                "[Client:{}] Acking Publisher subj={} guid={}",
                msg.client_id, msg.subject, msg.guid
            )
        });
        self.pub_ack(reply, msg.guid, "");
    }

    fn pub_ack(&mut self, reply: Option<&str>, guid: &str, error: &str) {
        if let Some(r) = reply {
            let mut payload = Vec::with_capacity(guid.len() + error.len() + 4);
            encode_pub_ack(&mut payload, guid, error);
            self.publish(r, payload);
        }
    }

    /// Appends to the channel and applies `max_msgs`/`max_bytes` (BEHAVIOUR §4.4.3).
    fn store_message(&mut self, now: Now, m: &PubMsgRef<'_>) -> Result<(), String> {
        let name = m.subject;
        let st = self.store.msgs_state(name);
        let ch = self.channels.get_mut(name).expect("created by the caller");
        let timestamp = now.wall_ns.max(ch.last_timestamp);
        ch.last_timestamp = timestamp;
        ch.last_activity_ns = timestamp;
        let seq = st.last + 1;
        let stored = &mut self.scratch;
        stored.sequence = seq;
        stored.timestamp = timestamp;
        stored.subject.clear();
        stored.subject.push_str(name);
        stored.reply.clear();
        stored.reply.push_str(m.reply);
        stored.data.clear();
        stored.data.extend_from_slice(m.data);
        self.store
            .store_msg(name, &self.scratch)
            .map_err(|e| e.to_string())?;
        let fresh = &mut self.fresh;
        fresh.channel.clear();
        fresh.channel.push_str(name);
        fresh.seq = seq;
        fresh.bytes.clear();
        encode_msg(
            &mut fresh.bytes,
            seq,
            name,
            m.reply,
            m.data,
            timestamp,
            false,
            0,
        );
        self.enforce_count_limits(name);
        self.arm_max_age(now, name);
        Ok(())
    }

    fn enforce_count_limits(&mut self, name: &str) {
        let limits = self.channels[name].limits;
        let over = |st: crate::store::MsgsState| {
            st.count > 1
                && ((limits.max_msgs > 0 && st.count as i64 > limits.max_msgs)
                    || (limits.max_bytes > 0 && st.bytes as i64 > limits.max_bytes))
        };
        let mut st = self.store.msgs_state(name);
        if !over(st) {
            return;
        }
        if !self.channels[name].limits_warned {
            self.channels.get_mut(name).expect("exists").limits_warned = true;
            self.log(
                Level::Warn,
                format!(
                    "Reached limits for store {name:?} (msgs={}/{} bytes={}/{}), dropping old messages to make room for new ones",
                    st.count,
                    limits.max_msgs,
                    super::limits::friendly_bytes(st.bytes as i64),
                    super::limits::friendly_bytes(limits.max_bytes)
                ),
            );
        }
        while over(st) {
            if let Err(e) = self.store.remove_oldest(name) {
                self.log(
                    Level::Error,
                    format!("Unable to remove message from {name:?}: {e}"),
                );
                return;
            }
            st = self.store.msgs_state(name);
        }
    }

    /// Sends what each subscription of the channel may receive now.
    pub(crate) fn deliver_channel(&mut self, now: Now, channel: &str) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        let has_groups = !ch.groups.is_empty();
        let mut next = ch.subs.keys().next().copied();
        while let Some(id) = next {
            if !self.channels[channel].subs[&id].is_queue() {
                self.deliver_plain(now, channel, id);
            }
            next = self.channels[channel]
                .subs
                .range(id + 1..)
                .next()
                .map(|(k, _)| *k);
        }
        if has_groups {
            let groups: Vec<String> = self.channels[channel].groups.keys().cloned().collect();
            for g in groups {
                self.deliver_group(now, channel, &g);
            }
        }
    }

    fn deliver_plain(&mut self, now: Now, channel: &str, id: SubId) {
        loop {
            let ch = &self.channels[channel];
            let Some(sub) = ch.subs.get(&id) else { return };
            if sub.is_offline || !sub.initialized || sub.hold_new {
                return;
            }
            if sub.pending.len() >= sub.max_in_flight {
                self.channels
                    .get_mut(channel)
                    .expect("exists")
                    .subs
                    .get_mut(&id)
                    .expect("exists")
                    .stalled = true;
                return;
            }
            let Some((seq, bytes)) = self.next_message(channel, sub.last_sent) else {
                return;
            };
            self.send_new(now, channel, id, seq, bytes);
        }
    }

    fn deliver_group(&mut self, now: Now, channel: &str, key: &str) {
        loop {
            let ch = &self.channels[channel];
            let Some(g) = ch.groups.get(key) else { return };
            if g.hold_new || g.members.is_empty() {
                return;
            }
            let cursor = g.last_sent;
            if self.store.msgs_state(channel).last <= cursor {
                return;
            }
            let Some(member) = self.choose_member(channel, key) else {
                return;
            };
            let sub = &self.channels[channel].subs[&member];
            if !sub.initialized {
                return;
            }
            if sub.pending.len() >= sub.max_in_flight {
                self.channels
                    .get_mut(channel)
                    .expect("exists")
                    .subs
                    .get_mut(&member)
                    .expect("exists")
                    .stalled = true;
                return;
            }
            let Some((seq, bytes)) = self.next_message(channel, cursor) else {
                return;
            };
            self.channels
                .get_mut(channel)
                .expect("exists")
                .groups
                .get_mut(key)
                .expect("exists")
                .last_sent = seq;
            self.send_new(now, channel, member, seq, bytes);
        }
    }

    /// The member that gets the group's next message (PROTOCOL §3.4): fewest pending
    /// among those neither stalled nor missing heartbeats, else the first; a chosen first
    /// member rotates to the end.
    fn choose_member(&mut self, channel: &str, key: &str) -> Option<SubId> {
        let ch = self.channels.get_mut(channel)?;
        let g = ch.groups.get(key)?;
        let subs = &ch.subs;
        let best = g
            .members
            .iter()
            .filter(|m| subs.get(m).is_some_and(|s| !s.stalled && !s.failed_hb))
            .min_by_key(|m| subs[m].pending.len())
            .or(g.members.first())
            .copied()?;
        let g = ch.groups.get_mut(key).expect("checked above");
        if g.members.len() > 1 && g.members[0] == best {
            g.members.remove(0);
            g.members.push(best);
        }
        Some(best)
    }

    /// The first stored message after `cursor`, skipping what limits removed, as its
    /// sequence and first-delivery encoding.
    fn next_message(&mut self, channel: &str, cursor: u64) -> Option<(u64, Vec<u8>)> {
        let st = self.store.msgs_state(channel);
        let mut seq = cursor + 1;
        if seq < st.first {
            seq = st.first;
        }
        if seq == self.fresh.seq && self.fresh.channel == channel && seq <= st.last {
            return Some((seq, self.fresh.bytes.clone()));
        }
        while seq <= st.last {
            match self.store.lookup(channel, seq) {
                Ok(Some(m)) => return Some((seq, m.encode_to_vec())),
                Ok(None) => seq += 1,
                Err(e) => {
                    self.log(
                        Level::Error,
                        format!("Unable to lookup message {seq} of {channel:?}: {e}"),
                    );
                    return None;
                }
            }
        }
        None
    }

    /// First delivery of a message to a subscription.
    fn send_new(&mut self, now: Now, channel: &str, id: SubId, seq: u64, payload: Vec<u8>) {
        let ch = self.channels.get_mut(channel).expect("exists");
        let sub = ch.subs.get_mut(&id).expect("exists");
        sub.last_sent = seq;
        let expires = now.mono + sub.ack_wait();
        sub.pending.insert(seq, Some(expires));
        if sub.pending.len() >= sub.max_in_flight {
            sub.stalled = true;
        }
        let arm = sub.ack_timer.is_none().then_some(expires);
        if arm.is_some() {
            sub.ack_timer = arm;
        }
        let inbox = sub.inbox.clone();
        let client = if self.cfg.verbosity.trace {
            sub.client_id.clone()
        } else {
            String::new()
        };
        if let Err(e) = self.store.add_pending(channel, id, seq) {
            self.log(
                Level::Error,
                format!("Unable to store pending message: {e}"),
            );
        }
        if let Some(at) = arm {
            self.arm(at, Timer::AckWait(channel.to_string(), id));
        }
        self.trace(|| {
            format!("[Client:{client}] Delivering msg to subid={id}, subject={channel}, seq={seq}")
        });
        self.send(inbox, payload);
    }

    fn send(&mut self, inbox: Arc<str>, payload: Vec<u8>) {
        self.stats.out_msgs += 1;
        self.stats.out_bytes += payload.len() as u64;
        self.publish(inbox, payload);
    }

    /// Sends a pending message again, counting the redelivery.
    pub(crate) fn redeliver(&mut self, channel: &str, id: SubId, seq: u64) -> bool {
        let msg = match self.store.lookup(channel, seq) {
            Ok(Some(m)) => m,
            _ => return false,
        };
        let ch = self.channels.get_mut(channel).expect("exists");
        let sub = ch.subs.get(&id).expect("exists");
        let counts = if sub.is_queue() {
            let key = sub.q_group.clone();
            &mut ch
                .groups
                .get_mut(&key)
                .expect("member's group")
                .redeliveries
        } else {
            &mut ch.subs.get_mut(&id).expect("exists").redeliveries
        };
        let count = counts.entry(seq).or_insert(0);
        *count += 1;
        let count = *count;
        let sub = &ch.subs[&id];
        let (inbox, client) = (sub.inbox.clone(), sub.client_id.clone());
        self.stats.redeliveries += 1;
        self.trace(|| {
            format!(
                "[Client:{client}] Redelivering msg to subid={id}, subject={channel}, seq={seq}"
            )
        });
        let redelivery = MsgProto {
            redelivered: true,
            redelivery_count: count,
            ..msg
        };
        self.send(inbox, redelivery.encode_to_vec());
        true
    }

    /// A resumed durable gets every pending message again, in order, before new ones.
    pub(crate) fn redeliver_all_pending(&mut self, now: Now, channel: &str, id: SubId) {
        let sub = &self.channels[channel].subs[&id];
        let seqs: Vec<u64> = sub.pending.keys().copied().collect();
        let (client, durable) = (sub.client_id.clone(), sub.durable_name.clone());
        let ack_wait = sub.ack_wait();
        self.debug(|| format!("[Client:{client}] Redelivering to subid={id}, durable={durable}"));
        for seq in seqs {
            if !self.redeliver(channel, id, seq) {
                self.ack_gone(channel, id, seq);
                continue;
            }
            let sub = self
                .channels
                .get_mut(channel)
                .expect("exists")
                .subs
                .get_mut(&id)
                .expect("exists");
            sub.pending.insert(seq, Some(now.mono + ack_wait));
        }
        let ch = self.channels.get_mut(channel).expect("exists");
        let sub = ch.subs.get_mut(&id).expect("exists");
        sub.hold_new = false;
        if !sub.pending.is_empty() {
            let at = now.mono + ack_wait;
            sub.ack_timer = Some(at);
            self.arm(at, Timer::AckWait(channel.to_string(), id));
        }
    }

    /// A pending message that limits removed counts as acknowledged.
    pub(crate) fn ack_gone(&mut self, channel: &str, id: SubId, seq: u64) {
        if let Some(sub) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.subs.get_mut(&id))
        {
            sub.pending.remove(&seq);
            sub.redeliveries.remove(&seq);
        }
        if let Err(e) = self.store.ack_pending(channel, id, seq) {
            self.log(Level::Error, format!("Unable to persist ack: {e}"));
        }
    }

    pub(crate) fn on_ack(&mut self, now: Now, ack_sid: u64, payload: &[u8]) {
        let Ok(ack) = AckRef::decode(payload) else {
            return;
        };
        let Some((channel, id)) = self.ack_sids.get(&ack_sid).cloned() else {
            return;
        };
        if ack.subject != &*channel {
            return;
        }
        let channel: &str = &channel;
        let seq = ack.sequence;
        let ch = self
            .channels
            .get_mut(channel)
            .expect("indexed channel exists");
        let Some(sub) = ch.subs.get(&id) else { return };
        if self.cfg.verbosity.trace {
            let client = sub.client_id.clone();
            self.trace(|| {
                format!(
                    "[Client:{client}] Processing ack for subid={id}, subject={channel}, seq={seq}"
                )
            });
        }
        let ch = self.channels.get_mut(channel).expect("exists");
        let sub = ch.subs.get(&id).expect("exists");
        let target = if sub.pending.contains_key(&seq) {
            Some(id)
        } else if sub.is_queue() {
            // An ack from any member is accepted for a message pending on another.
            let key = sub.q_group.clone();
            ch.groups[&key]
                .members
                .iter()
                .copied()
                .find(|m| ch.subs[m].pending.contains_key(&seq))
        } else {
            None
        };
        let Some(target) = target else { return };
        let sub = ch.subs.get_mut(&target).expect("exists");
        sub.pending.remove(&seq);
        let unstall = sub.stalled && sub.pending.len() < sub.max_in_flight;
        if unstall {
            sub.stalled = false;
        }
        if sub.is_queue() {
            let key = sub.q_group.clone();
            ch.groups
                .get_mut(&key)
                .expect("member's group")
                .redeliveries
                .remove(&seq);
        } else {
            sub.redeliveries.remove(&seq);
        }
        if let Err(e) = self.store.ack_pending(channel, target, seq) {
            self.log(Level::Error, format!("Unable to persist ack: {e}"));
        }
        if unstall {
            self.deliver_channel(now, channel);
        }
    }

    /// The ack-wait timer of a subscription fired (PROTOCOL §3.6.1).
    pub(crate) fn ack_timer_fired(&mut self, now: Now, at: Instant, channel: &str, id: SubId) {
        let Some(sub) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.subs.get_mut(&id))
        else {
            return;
        };
        if sub.ack_timer != Some(at) {
            return;
        }
        sub.ack_timer = None;
        if sub.pending.is_empty() || sub.is_offline {
            return;
        }
        let ack_wait = sub.ack_wait();
        if !sub.is_queue() && sub.failed_hb {
            let client = sub.client_id.clone();
            let next = now.mono + ack_wait;
            sub.ack_timer = Some(next);
            self.debug(|| format!("[Client:{client}] Skipping redelivery to subid={id} due to missed client heartbeat"));
            self.arm(next, Timer::AckWait(channel.to_string(), id));
            return;
        }
        let mut order: Vec<(Instant, u64)> = sub
            .pending
            .iter()
            .map(|(seq, exp)| (exp.unwrap_or_default(), *seq))
            .collect();
        order.sort();
        let horizon = now.mono + EXPIRY_SLACK;
        let mut next_expiration = None;
        for (exp, seq) in order {
            if exp > horizon {
                next_expiration = Some(exp);
                break;
            }
            let is_queue = !self.channels[channel].subs[&id].q_group.is_empty();
            #[cfg(feature = "planted-bugs")]
            if super::planted(super::PlantedBug::AckWaitRedelivery)
                && !is_queue
                && self.channels[channel].subs[&id]
                    .redeliveries
                    .contains_key(&seq)
            {
                continue;
            }
            if is_queue {
                self.redeliver_queue(now, channel, id, seq, exp);
            } else if self.redeliver(channel, id, seq) {
                let sub = self
                    .channels
                    .get_mut(channel)
                    .expect("exists")
                    .subs
                    .get_mut(&id)
                    .expect("exists");
                sub.pending.insert(seq, Some(exp + ack_wait));
            } else {
                self.ack_gone(channel, id, seq);
            }
        }
        let Some(sub) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.subs.get_mut(&id))
        else {
            return;
        };
        // Messages that limits removed, or that moved to another member, count as acked:
        // like an ack, that may free a stalled subscription (PROTOCOL §3.5 step 6).
        if sub.stalled && sub.pending.len() < sub.max_in_flight {
            sub.stalled = false;
            self.deliver_channel(now, channel);
        }
        let Some(sub) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.subs.get_mut(&id))
        else {
            return;
        };
        if sub.pending.is_empty() {
            return;
        }
        let next = match next_expiration {
            Some(e) if e > now.mono => e,
            _ => now.mono + ack_wait,
        };
        sub.ack_timer = Some(next);
        self.arm(next, Timer::AckWait(channel.to_string(), id));
    }

    /// Redelivers a queue member's expired message to the group's best member; when that
    /// is another member the message moves to it (PROTOCOL §3.6.1).
    fn redeliver_queue(&mut self, now: Now, channel: &str, from: SubId, seq: u64, exp: Instant) {
        let key = self.channels[channel].subs[&from].q_group.clone();
        let to = self.choose_member(channel, &key).unwrap_or(from);
        if !self.redeliver(channel, to, seq) {
            self.ack_gone(channel, from, seq);
            return;
        }
        let ch = self.channels.get_mut(channel).expect("exists");
        if to == from {
            let ack_wait = ch.subs[&from].ack_wait();
            ch.subs
                .get_mut(&from)
                .expect("exists")
                .pending
                .insert(seq, Some(exp + ack_wait));
            return;
        }
        let src = ch.subs.get_mut(&from).expect("exists");
        src.pending.remove(&seq);
        if src.stalled && src.pending.len() < src.max_in_flight {
            src.stalled = false;
        }
        let dst = ch.subs.get_mut(&to).expect("exists");
        let expires = now.mono + dst.ack_wait();
        dst.pending.insert(seq, Some(expires));
        dst.last_sent = dst.last_sent.max(seq);
        if dst.pending.len() >= dst.max_in_flight {
            dst.stalled = true;
        }
        let arm = dst.ack_timer.is_none().then_some(expires);
        if arm.is_some() {
            dst.ack_timer = arm;
        }
        if let Err(e) = self
            .store
            .add_pending(channel, to, seq)
            .and_then(|_| self.store.ack_pending(channel, from, seq))
        {
            self.log(Level::Error, format!("Unable to move pending message: {e}"));
        }
        if let Some(at) = arm {
            self.arm(at, Timer::AckWait(channel.to_string(), to));
        }
    }
}

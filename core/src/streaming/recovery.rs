//! Bringing back the state a store recovered at startup (BEHAVIOUR §5.4) and the first
//! redelivery pass over recovered pending messages (PROTOCOL §3.6.3).

use std::collections::BTreeMap;
use std::time::Duration;

use super::server::{Action, Streaming, Timer};
use super::state::{durable_key, Channel, QueueGroup, Sub};
use crate::log::Level;
use crate::store::RecoveredChannel;
use crate::streaming::pb::ClientInfo;
use crate::time::{Instant, Now};

impl Streaming {
    /// Re-registers recovered clients and re-attaches their subscriptions.
    pub(crate) fn restore(
        &mut self,
        now: Now,
        clients: Vec<ClientInfo>,
        channels: Vec<RecoveredChannel>,
    ) {
        for info in clients {
            self.add_client(now, info);
        }
        for rc in channels {
            self.restore_channel(now, rc);
        }
    }

    fn restore_channel(&mut self, now: Now, rc: RecoveredChannel) {
        let name = rc.name.clone();
        let mut ch = Channel::new(self.limits.for_channel(&name));
        ch.last_activity_ns = now.wall_ns;
        if rc.msgs.last > 0 {
            if let Ok(Some(ts)) = self.store.timestamp(&name, rc.msgs.last) {
                ch.last_timestamp = ts;
            }
        }
        self.channels.insert(name.clone(), ch);
        // Limits apply to what was recovered, silently (no "reached limits" warning).
        self.channels
            .get_mut(&name)
            .expect("just inserted")
            .limits_warned = true;
        self.enforce_recovered_limits(now, &name);
        self.channels
            .get_mut(&name)
            .expect("just inserted")
            .limits_warned = false;

        let ch = self.channels.get_mut(&name).expect("just inserted");
        ch.next_sub_id = ch.next_sub_id.max(rc.max_sub_id + 1);
        let mut subs = rc.subs;
        subs.sort_by_key(|s| s.state.id);
        let mut shadows: BTreeMap<String, u64> = BTreeMap::new();
        for r in subs {
            let st = r.state;
            let ch = self.channels.get_mut(&name).expect("just inserted");
            ch.next_sub_id = ch.next_sub_id.max(st.id + 1);
            let is_queue = !st.q_group.is_empty();
            let client_known = self.clients.contains_key(&st.client_id);
            let is_shadow = is_queue && st.is_durable && st.client_id.is_empty();
            if !client_known && !st.is_durable {
                // Non-durable subscriptions of clients that are gone are not loaded.
                continue;
            }
            if is_queue && st.is_durable && !client_known && !is_shadow {
                self.log(
                    Level::Warn,
                    format!(
                        "Not recovering ghost durable queue subscriber: [{}]:[{}] subject={name} inbox={}",
                        st.client_id, st.q_group, st.inbox
                    ),
                );
                if let Err(e) = self.store.delete_sub(&name, st.id) {
                    self.log(Level::Error, format!("Unable to delete subscription: {e}"));
                }
                continue;
            }
            let offline = is_shadow || (!is_queue && (st.is_closed || !client_known));
            let mut sub = Sub {
                id: st.id,
                client_id: st.client_id.clone(),
                inbox: st.inbox.as_str().into(),
                ack_inbox: st.ack_inbox.clone(),
                ack_sid: 0,
                durable_name: st.durable_name.clone(),
                q_group: st.q_group.clone(),
                is_durable: st.is_durable,
                is_offline: offline,
                max_in_flight: st.max_in_flight.max(1) as usize,
                ack_wait_secs: st.ack_wait_in_secs.max(1),
                last_sent: st.last_sent,
                pending: r.pending.iter().map(|s| (*s, None)).collect(),
                stalled: false,
                hold_new: !r.pending.is_empty(),
                failed_hb: false,
                initialized: !offline,
                redeliveries: BTreeMap::new(),
                ack_timer: None,
            };
            // The stored cursor may be stale; it is at least the highest pending sequence.
            if let Some(&max) = r.pending.iter().max() {
                sub.last_sent = sub.last_sent.max(max);
            }
            sub.stalled = sub.pending.len() >= sub.max_in_flight;
            let id = sub.id;
            let ch = self.channels.get_mut(&name).expect("just inserted");
            if is_queue {
                let g = ch
                    .groups
                    .entry(st.q_group.clone())
                    .or_insert_with(|| QueueGroup {
                        is_durable: st.is_durable,
                        ..QueueGroup::default()
                    });
                g.last_sent = g.last_sent.max(sub.last_sent);
                g.hold_new |= sub.hold_new;
                if is_shadow {
                    if let Some(&prev) = shadows.get(&st.q_group) {
                        let prev_sent = ch.subs.get(&prev).map_or(0, |s| s.last_sent);
                        self.log(Level::Warn, format!("Duplicate shadow durable queue consumer (subid={id}) for group {:?}", st.q_group));
                        if prev_sent >= sub.last_sent {
                            continue;
                        }
                        let ch = self.channels.get_mut(&name).expect("just inserted");
                        ch.subs.remove(&prev);
                    }
                    let ch = self.channels.get_mut(&name).expect("just inserted");
                    ch.groups
                        .get_mut(&st.q_group)
                        .expect("created above")
                        .shadow = Some(id);
                    shadows.insert(st.q_group.clone(), id);
                } else {
                    g.members.push(id);
                }
            } else if st.is_durable {
                ch.durables
                    .insert(durable_key(&st.client_id, &name, &st.durable_name), id);
            }
            let ch = self.channels.get_mut(&name).expect("just inserted");
            ch.subs.insert(id, sub);
            if !offline {
                let ack_sid = self.next_ack_sid;
                self.next_ack_sid += 1;
                let ch = self.channels.get_mut(&name).expect("just inserted");
                let sub = ch.subs.get_mut(&id).expect("just inserted");
                sub.ack_sid = ack_sid;
                let subject = sub.ack_inbox.clone();
                self.ack_sids.insert(ack_sid, (name.as_str().into(), id));
                self.actions.push_back(Action::Subscribe {
                    sid: ack_sid,
                    subject,
                });
                if let Some(c) = self.clients.get_mut(&st.client_id) {
                    c.subs.push((name.clone(), id));
                }
            }
        }
        let ch = &self.channels[&name];
        if ch.limits.max_inactivity > 0 && !ch.has_active_subs() {
            self.channel_idle_check(now, &name);
        }
    }

    /// Re-applies `max_msgs`, `max_bytes` and `max_age` to recovered messages.
    fn enforce_recovered_limits(&mut self, now: Now, name: &str) {
        let limits = self.channels[name].limits;
        loop {
            let st = self.store.msgs_state(name);
            let over = st.count > 1
                && ((limits.max_msgs > 0 && st.count as i64 > limits.max_msgs)
                    || (limits.max_bytes > 0 && st.bytes as i64 > limits.max_bytes));
            let expired = limits.max_age > 0
                && st.count > 0
                && matches!(self.store.timestamp(name, st.first), Ok(Some(ts)) if now.wall_ns.saturating_sub(ts) >= limits.max_age);
            if !(over || expired) {
                break;
            }
            if let Err(e) = self.store.remove_oldest(name) {
                self.log(
                    Level::Error,
                    format!("Unable to apply limits to {name:?}: {e}"),
                );
                break;
            }
        }
        self.arm_max_age(now, name);
    }

    /// Gives recovered pending messages their expiration (message timestamp + ack wait),
    /// redelivers the expired ones to the subscription that had them, then lets new
    /// messages flow (PROTOCOL §3.6.3).
    pub(crate) fn startup_redelivery(&mut self, now: Now) {
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            let ids: Vec<u64> = self.channels[&name]
                .subs
                .iter()
                .filter(|(_, s)| !s.is_offline && !s.pending.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let (seqs, ack_wait) = {
                    let sub = &self.channels[&name].subs[&id];
                    (
                        sub.pending.keys().copied().collect::<Vec<_>>(),
                        sub.ack_wait(),
                    )
                };
                let mut next: Option<Instant> = None;
                for seq in seqs {
                    let Ok(Some(ts)) = self.store.timestamp(&name, seq) else {
                        self.ack_gone(&name, id, seq);
                        continue;
                    };
                    let wait = u64::try_from(
                        ts.saturating_add(ack_wait.as_nanos() as i64)
                            .saturating_sub(now.wall_ns),
                    )
                    .unwrap_or(0);
                    let exp = now.mono + Duration::from_nanos(wait);
                    if exp <= now.mono + Duration::from_millis(15) {
                        if !self.redeliver(&name, id, seq) {
                            self.ack_gone(&name, id, seq);
                            continue;
                        }
                        let sub = self
                            .channels
                            .get_mut(&name)
                            .expect("exists")
                            .subs
                            .get_mut(&id)
                            .expect("exists");
                        sub.pending.insert(seq, Some(exp + ack_wait));
                        next =
                            Some(next.map_or(exp + ack_wait, |n: Instant| n.min(exp + ack_wait)));
                    } else {
                        let sub = self
                            .channels
                            .get_mut(&name)
                            .expect("exists")
                            .subs
                            .get_mut(&id)
                            .expect("exists");
                        sub.pending.insert(seq, Some(exp));
                        next = Some(next.map_or(exp, |n: Instant| n.min(exp)));
                    }
                }
                let sub = self
                    .channels
                    .get_mut(&name)
                    .expect("exists")
                    .subs
                    .get_mut(&id)
                    .expect("exists");
                sub.hold_new = false;
                if let (Some(at), false) = (next, sub.pending.is_empty()) {
                    sub.ack_timer = Some(at);
                    self.arm(at, Timer::AckWait(name.clone(), id));
                }
            }
            for g in self
                .channels
                .get_mut(&name)
                .expect("exists")
                .groups
                .values_mut()
            {
                g.hold_new = false;
            }
            self.deliver_channel(now, &name);
        }
    }
}

//! Subscribe, unsubscribe and subscription close (PROTOCOL §3.3, §3.8; BEHAVIOUR §5).

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;

use super::limits::is_valid_channel;
use super::pb::{StartPosition, SubscriptionRequest, SubscriptionResponse, UnsubscribeRequest};
use super::server::{Streaming, Timer};
use super::state::{durable_key, QueueGroup, Sub, SubId};
use crate::log::Level;
use crate::time::Now;

fn sub_error(text: &str) -> SubscriptionResponse {
    SubscriptionResponse {
        ack_inbox: String::new(),
        error: text.to_string(),
    }
}

/// How a subscribe request attaches to the channel.
enum Attach {
    /// A new record; the start position decides the cursor.
    New,
    /// An offline plain durable comes back.
    ResumeDurable(SubId),
    /// A new member of an existing queue group (start position ignored).
    JoinGroup,
    /// The shadow of a durable queue group becomes its first member again.
    ResumeShadow(SubId),
}

impl Streaming {
    pub(crate) fn on_subscribe(&mut self, now: Now, reply: Option<String>, payload: &[u8]) {
        let req = match SubscriptionRequest::decode(payload) {
            Ok(r) => r,
            Err(_) => {
                return self.respond(&reply, &sub_error("stan: invalid subscription request"))
            }
        };
        let check = if req.client_id.is_empty() {
            Some("stan: clientID missing")
        } else if req.ack_wait_in_secs <= 0 {
            Some("stan: invalid ack wait time, should be >= 1s")
        } else if req.max_in_flight <= 0 {
            Some("stan: invalid MaxInflight, should be >= 1")
        } else if StartPosition::try_from(req.start_position).is_err() {
            Some("stan: invalid start position")
        } else if !is_valid_channel(&req.subject) {
            Some("stan: invalid subject")
        } else {
            None
        };
        if let Some(err) = check {
            return self.respond(&reply, &sub_error(err));
        }
        // Partitioning: another server may own the channel, and the client's connect
        // may still be on its way (BEHAVIOUR §12).
        if self.partitions.is_some()
            && (self.not_owned(&req.subject) || self.park_subscription(now, &reply, &req))
        {
            return;
        }
        self.subscribe_validated(now, req, reply);
    }

    /// A parked subscription request whose client never registered.
    pub(crate) fn refuse_subscription(&mut self, reply: &Option<String>) {
        self.respond(reply, &sub_error("stan: invalid subscription request"));
    }

    /// Goes on with a request that passed the checks up to the client's registration.
    pub(crate) fn subscribe_validated(
        &mut self,
        now: Now,
        req: SubscriptionRequest,
        reply: Option<String>,
    ) {
        if !self.clients.contains_key(&req.client_id) {
            return self.respond(&reply, &sub_error("stan: unknown clientID"));
        }
        if let Err(e) = self.lookup_or_create_channel(now, &req.subject) {
            return self.respond(&reply, &sub_error(&e));
        }
        match self.attach(now, &req) {
            Ok(id) => self.subscribed(now, &req.subject, id, reply),
            Err(e) => {
                self.channel_idle_check(now, &req.subject);
                self.respond(&reply, &sub_error(&e));
            }
        }
    }

    /// Creates or resumes the subscription record; returns its id.
    fn attach(&mut self, now: Now, req: &SubscriptionRequest) -> Result<SubId, String> {
        let channel = req.subject.clone();
        let is_queue = !req.q_group.is_empty();
        let is_durable = !req.durable_name.is_empty();
        let dkey = durable_key(&req.client_id, &channel, &req.durable_name);
        if is_durable && !is_queue && self.cfg.replace_durable {
            let active = self.channels[&channel].durables.get(&dkey).copied();
            if let Some(id) = active.filter(|id| !self.channels[&channel].subs[id].is_offline) {
                self.remove_sub(now, &channel, id, false);
            }
        }
        if is_durable && is_queue && req.durable_name.contains(':') {
            return Err(
                "stan: durable name of a durable queue subscriber can't contain the character ':'"
                    .into(),
            );
        }
        let group_key = match (is_queue, is_durable) {
            (true, true) => format!("{}:{}", req.durable_name, req.q_group),
            (true, false) => req.q_group.clone(),
            _ => String::new(),
        };
        let ch = &self.channels[&channel];
        let attach = if is_queue {
            match ch.groups.get(&group_key) {
                Some(g) if !g.members.is_empty() => Attach::JoinGroup,
                Some(g) => g.shadow.map_or(Attach::New, Attach::ResumeShadow),
                None => Attach::New,
            }
        } else if is_durable {
            match ch.durables.get(&dkey) {
                Some(id) if !ch.subs[id].is_offline => {
                    return Err("stan: duplicate durable registration".into())
                }
                Some(id) => Attach::ResumeDurable(*id),
                None => Attach::New,
            }
        } else {
            Attach::New
        };
        if !self.clients.contains_key(&req.client_id) {
            return Err("stan: unknown clientID".into());
        }
        let ack_inbox = self.new_inbox();
        let ack_sid = self.next_ack_sid;
        self.next_ack_sid += 1;
        let max_subs = self.channels[&channel].limits.max_subscriptions;
        let ch = self.channels.get_mut(&channel).expect("created above");
        let id = match attach {
            Attach::ResumeDurable(id) | Attach::ResumeShadow(id) => {
                let sub = ch.subs.get_mut(&id).expect("indexed subscription exists");
                sub.client_id = req.client_id.clone();
                sub.inbox = req.inbox.as_str().into();
                sub.ack_inbox = ack_inbox;
                sub.ack_sid = ack_sid;
                sub.max_in_flight = req.max_in_flight as usize;
                sub.ack_wait_secs = req.ack_wait_in_secs;
                sub.is_offline = false;
                sub.hold_new = !sub.pending.is_empty();
                sub.stalled = sub.pending.len() >= sub.max_in_flight;
                if let Some(g) = ch.groups.get_mut(&group_key) {
                    g.shadow = None;
                    g.members.push(id);
                }
                let state = sub.state();
                self.store
                    .update_sub(&channel, &state)
                    .map_err(|e| e.to_string())?;
                id
            }
            Attach::New | Attach::JoinGroup => {
                if max_subs > 0 && ch.subs.len() as i64 >= max_subs {
                    return Err("too many subscriptions per channel".into());
                }
                let (cursor, how) = match attach {
                    Attach::JoinGroup => (ch.groups[&group_key].last_sent, None),
                    _ => {
                        let (c, how) = self.start_cursor(now, &channel, req);
                        (c, Some(how))
                    }
                };
                let ch = self.channels.get_mut(&channel).expect("created above");
                let id = ch.next_sub_id;
                ch.next_sub_id += 1;
                let sub = Sub {
                    id,
                    client_id: req.client_id.clone(),
                    inbox: req.inbox.as_str().into(),
                    ack_inbox,
                    ack_sid,
                    durable_name: if is_queue {
                        String::new()
                    } else {
                        req.durable_name.clone()
                    },
                    q_group: group_key.clone(),
                    is_durable,
                    is_offline: false,
                    max_in_flight: req.max_in_flight as usize,
                    ack_wait_secs: req.ack_wait_in_secs,
                    last_sent: cursor,
                    pending: BTreeMap::new(),
                    stalled: false,
                    hold_new: false,
                    failed_hb: false,
                    initialized: false,
                    redeliveries: BTreeMap::new(),
                    ack_timer: None,
                };
                let state = sub.state();
                self.store
                    .create_sub(&channel, &state)
                    .map_err(|e| e.to_string())?;
                let ch = self.channels.get_mut(&channel).expect("created above");
                ch.subs.insert(id, sub);
                if is_queue {
                    let g = ch
                        .groups
                        .entry(group_key.clone())
                        .or_insert_with(|| QueueGroup {
                            last_sent: cursor,
                            is_durable,
                            ..QueueGroup::default()
                        });
                    g.members.push(id);
                } else if is_durable {
                    ch.durables.insert(dkey, id);
                }
                if let Some(how) = how {
                    self.sub_log(&channel, id, "Started new", Some(how));
                } else {
                    self.sub_log(&channel, id, "Added member to", None);
                }
                id
            }
        };
        if matches!(attach, Attach::ResumeDurable(_) | Attach::ResumeShadow(_)) {
            self.sub_log(&channel, id, "Resumed", None);
        }
        self.ack_sids.insert(ack_sid, (channel.as_str().into(), id));
        let ack_subject = self.channels[&channel].subs[&id].ack_inbox.clone();
        self.actions.push_back(super::server::Action::Subscribe {
            sid: ack_sid,
            subject: ack_subject,
        });
        if let Some(c) = self.clients.get_mut(&req.client_id) {
            c.subs.push((channel.clone(), id));
        }
        Ok(id)
    }

    /// The reply is sent, then the subscription becomes eligible for delivery: pending
    /// messages of a resumed durable first, then new ones (PROTOCOL §3.3.3).
    fn subscribed(&mut self, now: Now, channel: &str, id: SubId, reply: Option<String>) {
        let (ack_inbox, failed_hb) = {
            let sub = &self.channels[channel].subs[&id];
            let failed = self
                .clients
                .get(&sub.client_id)
                .is_some_and(|c| c.hb_fails > 0);
            (sub.ack_inbox.clone(), failed)
        };
        self.respond(
            &reply,
            &SubscriptionResponse {
                ack_inbox,
                error: String::new(),
            },
        );
        let ch = self
            .channels
            .get_mut(channel)
            .expect("subscribed channel exists");
        ch.inactivity_at = None;
        let sub = ch.subs.get_mut(&id).expect("just attached");
        sub.initialized = true;
        sub.failed_hb = failed_hb;
        if sub.is_durable && !sub.pending.is_empty() {
            self.redeliver_all_pending(now, channel, id);
        }
        self.deliver_channel(now, channel);
    }

    /// The cursor of a new subscription (or group) from its start position (§3.3.2), and
    /// the words of the "sending ..." part of its log line.
    fn start_cursor(
        &mut self,
        now: Now,
        channel: &str,
        req: &SubscriptionRequest,
    ) -> (u64, String) {
        let st = self.store.msgs_state(channel);
        let (first, last) = (st.first, st.last);
        match StartPosition::try_from(req.start_position).unwrap_or(StartPosition::NewOnly) {
            StartPosition::NewOnly => (last, format!("new-only, seq={}", last + 1)),
            StartPosition::LastReceived => {
                let c = last.saturating_sub(1);
                (c, format!("last message, seq={}", c + 1))
            }
            StartPosition::TimeDeltaStart => {
                let t = now.wall_ns.saturating_sub(req.start_time_delta);
                let s = if last == 0 {
                    0
                } else {
                    self.first_seq_at_or_after(channel, first.max(1), last, t)
                };
                let c = s.saturating_sub(1);
                (
                    c,
                    format!(
                        "from time time='{}' seq={}",
                        crate::timefmt::rfc3339_nanos(t, 0),
                        c + 1
                    ),
                )
            }
            StartPosition::SequenceStart => {
                let asked = req.start_sequence;
                let c = if asked < first {
                    first.saturating_sub(1)
                } else if asked > last {
                    last
                } else if asked > 0 {
                    asked - 1
                } else {
                    0
                };
                (
                    c,
                    format!("from sequence, asked_seq={asked} actual_seq={}", c + 1),
                )
            }
            StartPosition::First => {
                let c = first.saturating_sub(1);
                (c, format!("from beginning, seq={}", c + 1))
            }
        }
    }

    /// The first stored sequence whose timestamp is at or after `t` (`last + 1` if none).
    fn first_seq_at_or_after(&mut self, channel: &str, first: u64, last: u64, t: i64) -> u64 {
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.store.timestamp(channel, mid) {
                Ok(Some(ts)) if ts >= t => hi = mid,
                _ => lo = mid + 1,
            }
        }
        lo
    }

    pub(crate) fn on_unsubscribe(
        &mut self,
        now: Now,
        reply: Option<String>,
        payload: &[u8],
        close: bool,
    ) {
        let Ok(req) = UnsubscribeRequest::decode(payload) else {
            return self.respond(&reply, &sub_error("stan: invalid unsubscribe request"));
        };
        if self.not_owned(&req.subject) {
            return;
        }
        let Some(ch) = self.channels.get(&req.subject) else {
            return self.respond(&reply, &sub_error("stan: unknown channel"));
        };
        // Offline durables and shadows have no indexed inboxes.
        let online = || ch.subs.values().filter(|s| !s.is_offline);
        let found = online()
            .find(|s| s.ack_inbox == req.inbox)
            .or_else(|| online().find(|s| *s.inbox == *req.inbox));
        let Some(sub) = found else {
            return self.respond(&reply, &sub_error("stan: invalid subscription"));
        };
        let id = sub.id;
        let owned = self
            .clients
            .get(&req.client_id)
            .is_some_and(|c| c.subs.iter().any(|(n, s)| n == &req.subject && *s == id));
        if !owned {
            return self.respond(&reply, &sub_error("stan: unknown clientID"));
        }
        if let Some(c) = self.clients.get_mut(&req.client_id) {
            c.subs.retain(|(n, s)| !(n == &req.subject && *s == id));
        }
        self.remove_sub(now, &req.subject, id, !close);
        self.respond(&reply, &SubscriptionResponse::default());
    }

    /// Removes a subscription from service: `unsubscribe` forgets durable state, a close
    /// (or the client going away) keeps it offline (BEHAVIOUR §5.2).
    pub(crate) fn remove_sub(&mut self, now: Now, channel: &str, id: SubId, unsubscribe: bool) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(sub) = ch.subs.get_mut(&id) else {
            return;
        };
        if sub.ack_sid != 0 {
            self.ack_sids.remove(&sub.ack_sid);
            self.actions
                .push_back(super::server::Action::Unsubscribe { sid: sub.ack_sid });
            sub.ack_sid = 0;
        }
        if let Some(c) = self.clients.get_mut(&sub.client_id) {
            c.subs.retain(|(n, s)| !(n == channel && *s == id));
        }
        let ch = self.channels.get_mut(channel).expect("checked above");
        let sub = ch.subs.get(&id).expect("checked above");
        if sub.is_queue() {
            self.leave_group(now, channel, id, unsubscribe);
        } else if sub.is_durable && !unsubscribe {
            let sub = ch.subs.get_mut(&id).expect("checked above");
            sub.is_offline = true;
            sub.stalled = false;
            sub.initialized = false;
            sub.ack_timer = None;
            let state = sub.state();
            self.sub_log(channel, id, "Suspended", None);
            if let Err(e) = self.store.update_sub(channel, &state) {
                self.log(Level::Error, format!("Unable to update subscription: {e}"));
            }
        } else {
            let sub = ch.subs.remove(&id).expect("checked above");
            if sub.is_durable {
                ch.durables.retain(|_, v| *v != id);
            }
            self.removed_log(channel, &sub);
            if let Err(e) = self.store.delete_sub(channel, id) {
                self.log(Level::Error, format!("Unable to delete subscription: {e}"));
            }
        }
        self.channel_idle_check(now, channel);
    }

    /// A queue member leaves: its pending messages move to the remaining members; the last
    /// member of a durable group leaving by close leaves a shadow (PROTOCOL §3.6.4).
    fn leave_group(&mut self, now: Now, channel: &str, id: SubId, unsubscribe: bool) {
        let ch = self.channels.get_mut(channel).expect("caller checked");
        let key = ch.subs[&id].q_group.clone();
        let g = ch.groups.get_mut(&key).expect("member's group exists");
        g.members.retain(|m| *m != id);
        let group_cursor = g.last_sent;
        if g.members.is_empty() {
            let keep_shadow = g.is_durable && !unsubscribe;
            if keep_shadow {
                g.shadow = Some(id);
                let sub = ch.subs.get_mut(&id).expect("member exists");
                sub.last_sent = group_cursor;
                sub.is_offline = true;
                sub.stalled = false;
                sub.initialized = false;
                sub.ack_timer = None;
                let state = sub.state();
                if let Err(e) = self.store.update_sub(channel, &state) {
                    self.log(Level::Error, format!("Unable to update subscription: {e}"));
                }
            } else {
                ch.groups.remove(&key);
                let sub = ch.subs.remove(&id).expect("member exists");
                self.removed_log(channel, &sub);
                if let Err(e) = self.store.delete_sub(channel, id) {
                    self.log(Level::Error, format!("Unable to delete subscription: {e}"));
                }
            }
            return;
        }
        let members = g.members.clone();
        let sub = ch.subs.remove(&id).expect("member exists");
        self.removed_log(channel, &sub);
        if let Err(e) = self.store.delete_sub(channel, id) {
            self.log(Level::Error, format!("Unable to delete subscription: {e}"));
        }
        // Pending messages go round-robin to the others, already expired, so that they
        // are redelivered shortly.
        let mut order: Vec<(Option<crate::Instant>, u64)> =
            sub.pending.iter().map(|(s, e)| (*e, *s)).collect();
        order.sort();
        #[cfg(feature = "planted-bugs")]
        if super::planted(super::PlantedBug::QueueRedelivery) {
            order.clear();
        }
        let expired = crate::Instant::from_nanos(now.mono.as_nanos().saturating_sub(1_000_000_000));
        let soon = now.mono + Duration::from_millis(100);
        let mut touched = Vec::new();
        for (i, (_, seq)) in order.into_iter().enumerate() {
            let target = members[i % members.len()];
            let ch = self.channels.get_mut(channel).expect("caller checked");
            let t = ch.subs.get_mut(&target).expect("member exists");
            t.pending.insert(seq, Some(expired));
            t.last_sent = t.last_sent.max(seq);
            if t.pending.len() >= t.max_in_flight {
                t.stalled = true;
            }
            if let Err(e) = self.store.add_pending(channel, target, seq) {
                self.log(
                    Level::Error,
                    format!("Unable to store pending message: {e}"),
                );
            }
            if !touched.contains(&target) {
                touched.push(target);
            }
        }
        for target in touched {
            let ch = self.channels.get_mut(channel).expect("caller checked");
            let t = ch.subs.get_mut(&target).expect("member exists");
            t.ack_timer = Some(soon);
            self.arm(soon, Timer::AckWait(channel.to_string(), target));
        }
        // The group's cursor must survive in some record if the leaver held it.
        if sub.is_durable && sub.last_sent == group_cursor {
            let ch = self.channels.get_mut(channel).expect("caller checked");
            if let Some(t) = ch.subs.get_mut(&members[0]) {
                if t.last_sent < group_cursor {
                    t.last_sent = group_cursor;
                    let state = t.state();
                    if let Err(e) = self.store.update_sub(channel, &state) {
                        self.log(Level::Error, format!("Unable to update subscription: {e}"));
                    }
                }
            }
        }
    }

    fn removed_log(&mut self, channel: &str, sub: &Sub) {
        if !self.cfg.verbosity.debug {
            return;
        }
        let action = if sub.is_queue() {
            "Removed member from"
        } else {
            "Removed"
        };
        let line = sub_line(channel, sub, action, None);
        self.log(Level::Debug, line);
    }

    fn sub_log(&mut self, channel: &str, id: SubId, action: &str, sending: Option<String>) {
        if !self.cfg.verbosity.debug {
            return;
        }
        let line = sub_line(channel, &self.channels[channel].subs[&id], action, sending);
        self.log(Level::Debug, line);
    }
}

/// A subscription lifecycle line in the Go server's shape (OPERATIONS §6.4).
fn sub_line(channel: &str, sub: &Sub, action: &str, sending: Option<String>) -> String {
    let extra = if sub.is_queue() {
        format!(" queue={},", sub.q_group)
    } else if sub.is_durable {
        format!(" durable={},", sub.durable_name)
    } else {
        String::new()
    };
    let sending = sending
        .map(|s| format!(", sending {s}"))
        .unwrap_or_default();
    format!(
        "[Client:{}] {action} {}subscription, subject={channel}, inbox={},{extra} subid={}{sending}",
        sub.client_id,
        sub.kind_words(),
        sub.inbox,
        sub.id
    )
}

//! The streaming server's records: clients, channels, subscriptions, queue groups.

use std::collections::BTreeMap;
use std::time::Duration;

use super::limits::ChannelLimits;
use super::pb::{ClientInfo, SubState};
use crate::time::Instant;

pub(crate) type SubId = u64;

/// A registered STAN client.
#[derive(Debug)]
pub(crate) struct Client {
    pub info: ClientInfo,
    /// Subscriptions the client owns, as (channel, id), in creation order.
    pub subs: Vec<(String, SubId)>,
    /// Consecutive heartbeats that got no answer.
    pub hb_fails: u32,
    /// When the next heartbeat goes out (`None` while one awaits its answer).
    pub hb_at: Option<Instant>,
    /// The heartbeat awaiting an answer: request token and when it times out.
    pub hb_wait: Option<(u64, Instant)>,
}

/// One STAN subscription, online or offline (offline durable, durable queue shadow).
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    pub id: SubId,
    /// Owning client; for an offline durable or a queue group's shadow, the last owner
    /// (a shadow is persisted with an empty client ID).
    pub client_id: String,
    pub inbox: std::sync::Arc<str>,
    pub ack_inbox: String,
    /// The internal NATS subscription of the ack inbox; 0 while offline.
    pub ack_sid: u64,
    /// Durable name of a plain durable (empty for queue members).
    pub durable_name: String,
    /// Queue group key: the group name, or `<durable>:<group>` for durable groups.
    pub q_group: String,
    pub is_durable: bool,
    /// A plain durable whose client closed it or went away, or a queue group shadow.
    pub is_offline: bool,
    pub max_in_flight: usize,
    pub ack_wait_secs: i32,
    /// Highest sequence sent (for queue members, also raised on transfers).
    pub last_sent: u64,
    /// Unacknowledged sequences and when each expires (`None`: recovered, not yet
    /// given an expiration).
    pub pending: BTreeMap<u64, Option<Instant>>,
    pub stalled: bool,
    /// New messages wait until pending ones are redelivered (resume, restart).
    pub hold_new: bool,
    /// The owning client is missing heartbeats.
    pub failed_hb: bool,
    /// False until the subscribe response has been sent.
    pub initialized: bool,
    /// Redelivery counts of a non-queue subscription (queue groups keep their own).
    pub redeliveries: BTreeMap<u64, u32>,
    /// When the ack-wait timer fires next, if armed.
    pub ack_timer: Option<Instant>,
}

impl Sub {
    pub fn is_queue(&self) -> bool {
        !self.q_group.is_empty()
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs.max(1) as u64)
    }

    /// The persisted form.
    pub fn state(&self) -> SubState {
        SubState {
            id: self.id,
            client_id: if self.is_queue() && self.is_offline {
                String::new()
            } else {
                self.client_id.clone()
            },
            q_group: self.q_group.clone(),
            inbox: self.inbox.to_string(),
            ack_inbox: self.ack_inbox.clone(),
            max_in_flight: self.max_in_flight.min(i32::MAX as usize) as i32,
            ack_wait_in_secs: self.ack_wait_secs,
            durable_name: self.durable_name.clone(),
            last_sent: self.last_sent,
            is_durable: self.is_durable,
            is_closed: self.is_offline && !self.is_queue(),
        }
    }

    /// The kind words of the Go server's subscription log lines.
    pub fn kind_words(&self) -> String {
        let mut k = String::new();
        if self.is_durable {
            k.push_str("durable ");
        }
        if self.is_queue() {
            k.push_str("queue ");
        }
        k
    }
}

/// Members of a queue group share one cursor; each message goes to one member.
#[derive(Debug, Default)]
pub(crate) struct QueueGroup {
    /// Members in rotation order.
    pub members: Vec<SubId>,
    /// Highest sequence sent to any member.
    pub last_sent: u64,
    /// Redelivery counts, shared so that moving a message between members keeps counting.
    pub redeliveries: BTreeMap<u64, u32>,
    /// The record kept when the last member of a durable group left by close.
    pub shadow: Option<SubId>,
    pub hold_new: bool,
    pub is_durable: bool,
}

/// A channel and its subscriptions (messages live in the store).
#[derive(Debug)]
pub(crate) struct Channel {
    pub limits: ChannelLimits,
    pub subs: BTreeMap<SubId, Sub>,
    pub groups: BTreeMap<String, QueueGroup>,
    /// Plain durables by `<clientID>-<channel>-<durableName>`.
    pub durables: BTreeMap<String, SubId>,
    pub next_sub_id: SubId,
    /// Timestamps never go backwards within a channel.
    pub last_timestamp: i64,
    /// Being removed for inactivity.
    pub deleting: bool,
    /// Wall time of the last activity, for `max_inactivity`.
    pub last_activity_ns: i64,
    pub inactivity_at: Option<Instant>,
    pub age_at: Option<Instant>,
    /// The "Reached limits" warning is logged once per channel and process.
    pub limits_warned: bool,
}

impl Channel {
    pub fn new(limits: ChannelLimits) -> Self {
        Channel {
            limits,
            subs: BTreeMap::new(),
            groups: BTreeMap::new(),
            durables: BTreeMap::new(),
            next_sub_id: 1,
            last_timestamp: 0,
            deleting: false,
            last_activity_ns: 0,
            inactivity_at: None,
            age_at: None,
            limits_warned: false,
        }
    }

    /// Subscriptions that keep a channel alive: online plain subscriptions and queue
    /// members (not offline durables or shadows).
    pub fn has_active_subs(&self) -> bool {
        self.subs.values().any(|s| !s.is_offline)
    }
}

/// Key of a plain durable.
pub(crate) fn durable_key(client_id: &str, channel: &str, durable: &str) -> String {
    format!("{client_id}-{channel}-{durable}")
}

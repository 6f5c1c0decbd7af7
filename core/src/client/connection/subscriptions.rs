//! Subscriptions: subscribe, deliveries with their acks, unsubscribe and close (§3.3–3.5,
//! §3.8).

use prost::Message;

use super::{Client, Request, State};
use crate::client::{ClientError, Event, StartAt, SubHandle, SubscribeOptions};
use crate::nats::proto;
use crate::streaming::pb;
use crate::time::Now;

/// What a subscription waits for next.
#[derive(Debug)]
pub(super) enum SubState {
    /// Deliveries cannot overtake the response on the server (§3.3.3); a message that
    /// arrives first anyway still gets its automatic ack once the ack inbox is known.
    AwaitingResponse {
        early_acks: Vec<u64>,
    },
    Active {
        ack_inbox: String,
    },
    AwaitingUnsubResponse,
}

/// One STAN subscription as this client knows it.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) channel: String,
    /// The delivery inbox, subscribed on the NATS connection under the handle's number.
    pub(super) inbox: String,
    pub(super) manual_ack: bool,
    pub(super) state: SubState,
}

impl Client {
    /// Subscribes to `channel`: the delivery inbox is subscribed first, so no message
    /// can be missed, then the request is sent (§3.3).
    pub fn subscribe(
        &mut self,
        now: Now,
        channel: &str,
        opts: SubscribeOptions,
    ) -> Result<SubHandle, ClientError> {
        self.check_connected()?;
        let sub = SubHandle(self.next_sid);
        self.next_sid += 1;
        let inbox = format!("_INBOX.{}", self.rng.nuid());
        self.write_sub(&inbox, sub.0);
        let (start_position, start_sequence, start_time_delta) = match opts.start {
            StartAt::NewOnly => (pb::StartPosition::NewOnly, 0, 0),
            StartAt::LastReceived => (pb::StartPosition::LastReceived, 0, 0),
            StartAt::First => (pb::StartPosition::First, 0, 0),
            StartAt::Sequence(seq) => (pb::StartPosition::SequenceStart, seq, 0),
            StartAt::TimeDelta(d) => (
                pb::StartPosition::TimeDeltaStart,
                0,
                i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            ),
            StartAt::Time(t) => (
                pb::StartPosition::TimeDeltaStart,
                0,
                now.wall_ns.saturating_sub(t),
            ),
        };
        let req = pb::SubscriptionRequest {
            client_id: self.cfg.client_id.clone(),
            subject: channel.to_string(),
            q_group: opts.queue_group.unwrap_or_default(),
            inbox: inbox.clone(),
            max_in_flight: opts.max_in_flight,
            ack_wait_in_secs: opts.ack_wait_secs,
            durable_name: opts.durable_name.unwrap_or_default(),
            start_position: start_position as i32,
            start_sequence,
            start_time_delta,
        };
        let subject = self.subjects.sub_requests.clone();
        self.request(now, &subject, &req.encode_to_vec(), Request::Subscribe(sub));
        self.subs.insert(
            sub,
            Subscription {
                channel: channel.to_string(),
                inbox,
                manual_ack: opts.manual_ack,
                state: SubState::AwaitingResponse {
                    early_acks: Vec::new(),
                },
            },
        );
        Ok(sub)
    }

    /// Acknowledges `sequence` on a manual-ack subscription.
    pub fn ack(&mut self, sub: SubHandle, sequence: u64) -> Result<(), ClientError> {
        self.check_connected()?;
        let s = self
            .subs
            .get_mut(&sub)
            .ok_or(ClientError::InvalidSubscription)?;
        if !s.manual_ack {
            return Err(ClientError::ManualAckInAutoMode);
        }
        match &mut s.state {
            SubState::Active { ack_inbox } => {
                let ack_inbox = ack_inbox.clone();
                let channel = s.channel.clone();
                self.write_ack(&ack_inbox, &channel, sequence);
                Ok(())
            }
            SubState::AwaitingResponse { early_acks } => {
                early_acks.push(sequence);
                Ok(())
            }
            SubState::AwaitingUnsubResponse => Err(ClientError::InvalidSubscription),
        }
    }

    /// Removes the subscription on the server; a durable is forgotten (§3.8).
    pub fn unsubscribe(&mut self, now: Now, sub: SubHandle) -> Result<(), ClientError> {
        self.end_subscription(now, sub, false)
    }

    /// Closes the subscription on the server; a durable keeps its position for a later
    /// resume (§3.8).
    pub fn close_subscription(&mut self, now: Now, sub: SubHandle) -> Result<(), ClientError> {
        self.end_subscription(now, sub, true)
    }

    fn end_subscription(
        &mut self,
        now: Now,
        sub: SubHandle,
        close: bool,
    ) -> Result<(), ClientError> {
        self.check_connected()?;
        let s = self
            .subs
            .get_mut(&sub)
            .ok_or(ClientError::InvalidSubscription)?;
        let SubState::Active { ack_inbox } = &s.state else {
            return Err(ClientError::InvalidSubscription);
        };
        let subject = if close {
            if self.subjects.sub_close_requests.is_empty() {
                return Err(ClientError::NotSupported);
            }
            self.subjects.sub_close_requests.clone()
        } else {
            self.subjects.unsub_requests.clone()
        };
        let req = pb::UnsubscribeRequest {
            client_id: self.cfg.client_id.clone(),
            subject: s.channel.clone(),
            inbox: ack_inbox.clone(),
            durable_name: String::new(),
        };
        s.state = SubState::AwaitingUnsubResponse;
        // Deliveries stop here rather than after the answer, so none reaches the
        // application after it asked to stop.
        proto::write_unsub(&mut self.out, sub.0.to_string().as_bytes(), None);
        self.request(
            now,
            &subject,
            &req.encode_to_vec(),
            Request::Unsubscribe { sub, close },
        );
        Ok(())
    }

    pub(super) fn deliver(&mut self, sub: SubHandle, payload: &[u8], header_len: Option<usize>) {
        if self.state != State::Connected || header_len.is_some() {
            return;
        }
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let Ok(msg) = pb::MsgProto::decode(payload) else {
            return;
        };
        if !s.manual_ack {
            match &mut s.state {
                SubState::Active { ack_inbox } => {
                    let ack_inbox = ack_inbox.clone();
                    let channel = s.channel.clone();
                    self.write_ack(&ack_inbox, &channel, msg.sequence);
                }
                SubState::AwaitingResponse { early_acks } => early_acks.push(msg.sequence),
                SubState::AwaitingUnsubResponse => return,
            }
        } else if matches!(s.state, SubState::AwaitingUnsubResponse) {
            return;
        }
        self.events.push_back(Event::Msg { sub, msg });
    }

    pub(super) fn subscribed(&mut self, sub: SubHandle, ack_inbox: String) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let early = match std::mem::replace(
            &mut s.state,
            SubState::Active {
                ack_inbox: ack_inbox.clone(),
            },
        ) {
            SubState::AwaitingResponse { early_acks } => early_acks,
            _ => Vec::new(),
        };
        let channel = s.channel.clone();
        for seq in early {
            self.write_ack(&ack_inbox, &channel, seq);
        }
        self.events.push_back(Event::Subscribed { sub });
    }

    pub(super) fn drop_subscription(&mut self, sub: SubHandle) {
        if self.subs.remove(&sub).is_some() {
            proto::write_unsub(&mut self.out, sub.0.to_string().as_bytes(), None);
        }
    }

    fn write_ack(&mut self, ack_inbox: &str, channel: &str, sequence: u64) {
        let ack = pb::Ack {
            subject: channel.to_string(),
            sequence,
        };
        self.scratch.clear();
        ack.encode(&mut self.scratch).expect("Vec grows as needed");
        proto::write_pub(
            &mut self.out,
            ack_inbox.as_bytes(),
            None,
            None,
            &self.scratch,
        );
    }
}

//! The client state machine: one NATS connection, one STAN connection on it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use prost::Message;
use rustc_hash::FxHashSet;

use super::errors::{
    CLOSE_TIMEOUT, CONNECTION_CLOSED, CONNECT_TIMEOUT, NATS_CONNECTION_CLOSED, NATS_TIMEOUT,
    PING_FAILURE, PUB_ACK_TIMEOUT, SUBSCRIBE_TIMEOUT, UNSUBSCRIBE_TIMEOUT,
};
use super::{wire, ClientConfig, ClientError, Event, Guid, SubHandle};
use crate::nats::proto::{self, Limits, ServerOp};
use crate::rng::Rng;
use crate::streaming::pb;
use crate::time::{Instant, Now};

mod subscriptions;

use subscriptions::Subscription;

/// NATS subscription IDs of the connection-wide inboxes; delivery inboxes follow.
const HEARTBEAT_SID: u64 = 1;
const PUB_ACK_SID: u64 = 2;
const REPLY_SID: u64 = 3;
const FIRST_SUB_SID: u64 = 4;

/// Reply token of pings on the request inbox; request tokens are decimal numbers.
const PING_TOKEN: &str = "ping";

/// The parser only guards against garbage here: the server already enforces its own
/// `max_payload` on everything it delivers.
const READ_LIMITS: Limits = Limits {
    max_control_line: 64 * 1024,
    max_payload: 1 << 30,
};

/// What the connection waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The NATS server's INFO, which opens every NATS connection.
    AwaitingInfo,
    AwaitingConnectResponse,
    Connected,
    AwaitingCloseResponse,
    /// Nothing more: connect failed, the connection was lost or closed.
    Ended,
}

/// Subjects from the ConnectResponse; clients never build these themselves (§1.1).
#[derive(Debug, Default)]
struct ServerSubjects {
    pub_prefix: String,
    sub_requests: String,
    unsub_requests: String,
    sub_close_requests: String,
    close_requests: String,
}

/// An outstanding request on the reply inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Connect,
    Subscribe(SubHandle),
    Unsubscribe { sub: SubHandle, close: bool },
    Close,
}

/// Connection-level deadlines, kept as data in one ordered set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Info,
    Request(u64),
    Ping,
}

/// Client→server pings (§3.9), on once the server echoes a non-zero interval.
#[derive(Debug)]
struct Pinger {
    interval: Duration,
    max_out: i32,
    out: i32,
    next: Instant,
    payload: Vec<u8>,
}

/// A sans-IO STAN client; see the module documentation for how to drive it.
pub struct Client {
    cfg: ClientConfig,
    rng: Rng,
    state: State,
    conn_id: Vec<u8>,
    heartbeat_inbox: String,
    pub_ack_inbox: String,
    reply_prefix: String,
    subjects: ServerSubjects,
    max_payload: usize,
    next_token: u64,
    requests: BTreeMap<u64, (Request, Instant)>,
    timers: BTreeSet<(Instant, Timer)>,
    pinger: Option<Pinger>,
    /// GUIDs awaiting their PubAck.
    pubs: FxHashSet<Guid>,
    /// PubAck deadlines in publish order (all share one wait, so they are sorted);
    /// acknowledged entries are dropped from the front as they surface.
    pub_deadlines: VecDeque<(Instant, Guid)>,
    subs: BTreeMap<SubHandle, Subscription>,
    next_sid: u64,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    events: VecDeque<Event>,
}

impl Client {
    /// A client about to connect: it waits for the server's INFO, then sends CONNECT
    /// and the STAN connect request.
    pub fn new(cfg: ClientConfig, now: Now) -> Self {
        let mut rng = Rng::new(cfg.rng_seed);
        let conn_id = rng.nuid().into_bytes();
        let heartbeat_inbox = format!("_INBOX.{}", rng.nuid());
        let pub_ack_inbox = format!("_STAN.acks.{}", rng.nuid());
        let reply_prefix = format!("_INBOX.{}", rng.nuid());
        let mut timers = BTreeSet::new();
        timers.insert((now.mono + cfg.connect_wait, Timer::Info));
        Client {
            cfg,
            rng,
            state: State::AwaitingInfo,
            conn_id,
            heartbeat_inbox,
            pub_ack_inbox,
            reply_prefix,
            subjects: ServerSubjects::default(),
            max_payload: Limits::default().max_payload,
            next_token: 1,
            requests: BTreeMap::new(),
            timers,
            pinger: None,
            pubs: FxHashSet::default(),
            pub_deadlines: VecDeque::new(),
            subs: BTreeMap::new(),
            next_sid: FIRST_SUB_SID,
            rbuf: Vec::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            events: VecDeque::new(),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.cfg.client_id
    }

    /// True between `Connected` and the start of close or loss.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// True once the final event is queued; the driver writes what is left to transmit
    /// and drops the NATS connection.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Publishes awaiting their PubAck.
    pub fn pub_acks_in_flight(&self) -> usize {
        self.pubs.len()
    }

    /// False while `max_pub_acks_inflight` PubAcks are awaited; callers that respect it
    /// hold further publishes until a `PubAck` event, as the Go client blocks.
    pub fn can_publish(&self) -> bool {
        self.pubs.len() < self.cfg.max_pub_acks_inflight
    }

    /// Bytes that arrived from the NATS server, in any split.
    pub fn handle_input(&mut self, now: Now, bytes: &[u8]) {
        if self.state == State::Ended {
            return;
        }
        if self.rbuf.is_empty() {
            let used = self.parse(now, bytes);
            if self.state != State::Ended {
                self.rbuf.extend_from_slice(&bytes[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.extend_from_slice(bytes);
            let used = self.parse(now, &buf);
            if self.state != State::Ended {
                buf.drain(..used);
                self.rbuf = buf;
            }
        }
    }

    /// The NATS connection broke or the server closed it.
    pub fn handle_disconnect(&mut self) {
        self.end(NATS_CONNECTION_CLOSED.to_string());
    }

    /// Fires every deadline that is due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now.mono {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Info => self.end(NATS_TIMEOUT.to_string()),
                Timer::Request(token) => {
                    if let Some((req, _)) = self.requests.remove(&token) {
                        self.request_timed_out(req);
                    }
                }
                Timer::Ping => self.ping_due(now),
            }
        }
        while let Some((at, _)) = self.pub_deadlines.front() {
            if *at > now.mono {
                break;
            }
            let (_, guid) = self.pub_deadlines.pop_front().expect("front exists");
            if self.pubs.remove(&guid) {
                self.events.push_back(Event::PubAck {
                    guid,
                    error: Some(PUB_ACK_TIMEOUT.to_string()),
                });
            }
        }
    }

    /// Bytes to write to the server, batched since the last call.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|(at, _)| *at);
        let pub_ack = self.pub_deadlines.front().map(|(at, _)| *at);
        match (timer, pub_ack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Publishes `data` on `channel`; its `PubAck` event names the returned GUID.
    pub fn publish(&mut self, now: Now, channel: &str, data: &[u8]) -> Result<Guid, ClientError> {
        self.check_connected()?;
        let guid = Guid(self.rng.nuid());
        self.scratch.clear();
        wire::encode_pub_msg(
            &mut self.scratch,
            &self.cfg.client_id,
            &guid.0,
            channel,
            data,
            &self.conn_id,
        );
        if self.scratch.len() > self.max_payload {
            return Err(ClientError::MaxPayload);
        }
        let mut subject = String::with_capacity(self.subjects.pub_prefix.len() + 1 + channel.len());
        subject.push_str(&self.subjects.pub_prefix);
        subject.push('.');
        subject.push_str(channel);
        proto::write_pub(
            &mut self.out,
            subject.as_bytes(),
            Some(self.pub_ack_inbox.as_bytes()),
            None,
            &self.scratch,
        );
        self.pubs.insert(guid.clone());
        self.pub_deadlines
            .push_back((now.mono + self.cfg.pub_ack_wait, guid.clone()));
        Ok(guid)
    }

    /// Closes the STAN connection. Publishes still awaiting a PubAck end at once with
    /// `stan: connection closed`, as do subscribe and unsubscribe requests; the `Closed`
    /// event follows the server's answer. Before `Connected` it just ends the attempt.
    pub fn close(&mut self, now: Now) -> Result<(), ClientError> {
        match self.state {
            State::AwaitingInfo | State::AwaitingConnectResponse => {
                self.fail_operations(CONNECTION_CLOSED);
                self.finish(Event::Closed { error: None });
                Ok(())
            }
            State::Connected => {
                self.fail_operations(CONNECTION_CLOSED);
                self.stop_pinger();
                self.state = State::AwaitingCloseResponse;
                let req = pb::CloseRequest {
                    client_id: self.cfg.client_id.clone(),
                };
                let subject = self.subjects.close_requests.clone();
                self.request(now, &subject, &req.encode_to_vec(), Request::Close);
                Ok(())
            }
            State::AwaitingCloseResponse | State::Ended => Err(ClientError::ConnectionClosed),
        }
    }

    fn check_connected(&self) -> Result<(), ClientError> {
        match self.state {
            State::Connected => Ok(()),
            State::AwaitingInfo | State::AwaitingConnectResponse => Err(ClientError::NotConnected),
            State::AwaitingCloseResponse | State::Ended => Err(ClientError::ConnectionClosed),
        }
    }

    fn parse(&mut self, now: Now, buf: &[u8]) -> usize {
        let mut pos = 0;
        while self.state != State::Ended {
            match proto::parse_server_op(&buf[pos..], &READ_LIMITS) {
                Ok(Some((op, used))) => {
                    pos += used;
                    self.handle_op(now, op);
                }
                Ok(None) => return pos,
                Err(e) => {
                    self.end(format!("nats: {e}"));
                    break;
                }
            }
        }
        buf.len()
    }

    fn handle_op(&mut self, now: Now, op: ServerOp<'_>) {
        match op {
            ServerOp::Info(json) => {
                if let Some(max) = wire::info_max_payload(json) {
                    self.max_payload = max;
                }
                if self.state == State::AwaitingInfo {
                    self.send_connect(now);
                }
            }
            ServerOp::Ping => self.out.extend_from_slice(proto::PONG),
            ServerOp::Pong | ServerOp::Ok => {}
            ServerOp::Err(text) => {
                let text = String::from_utf8_lossy(text).into_owned();
                // The NATS server keeps the connection open after a permissions error.
                if !text.starts_with("Permissions Violation") {
                    self.end(text);
                }
            }
            ServerOp::Msg {
                subject,
                sid,
                reply,
                header_len,
                payload,
            } => {
                let Some(sid) = std::str::from_utf8(sid).ok().and_then(|s| s.parse().ok()) else {
                    return;
                };
                self.handle_msg(now, subject, sid, reply, header_len, payload);
            }
        }
    }

    fn handle_msg(
        &mut self,
        now: Now,
        subject: &[u8],
        sid: u64,
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        payload: &[u8],
    ) {
        match sid {
            HEARTBEAT_SID => {
                // The server's heartbeat is a request; any answer proves we are alive.
                if let Some(reply) = reply {
                    proto::write_pub(&mut self.out, reply, None, None, b"");
                }
            }
            PUB_ACK_SID => {
                if header_len.is_some() {
                    return;
                }
                let Ok(ack) = pb::PubAck::decode(payload) else {
                    return;
                };
                let guid = Guid(ack.guid);
                if self.pubs.remove(&guid) {
                    self.events.push_back(Event::PubAck {
                        guid,
                        error: (!ack.error.is_empty()).then_some(ack.error),
                    });
                    while let Some((_, front)) = self.pub_deadlines.front() {
                        if self.pubs.contains(front) {
                            break;
                        }
                        self.pub_deadlines.pop_front();
                    }
                }
            }
            REPLY_SID => {
                let token = subject
                    .strip_prefix(self.reply_prefix.as_bytes())
                    .and_then(|t| t.strip_prefix(b"."));
                let Some(token) = token.and_then(|t| std::str::from_utf8(t).ok()) else {
                    return;
                };
                let answer = if wire::is_no_responders(header_len, payload) {
                    None
                } else {
                    Some(wire::body(header_len, payload))
                };
                if token == PING_TOKEN {
                    self.ping_answered(answer);
                } else if let Ok(id) = token.parse() {
                    if let Some((req, deadline)) = self.requests.remove(&id) {
                        self.timers.remove(&(deadline, Timer::Request(id)));
                        match answer {
                            Some(body) => self.request_answered(now, req, body),
                            // Nobody serves the subject: fail now rather than at the
                            // deadline, with the same text.
                            None => self.request_timed_out(req),
                        }
                    }
                }
            }
            _ => self.deliver(SubHandle(sid), payload, header_len),
        }
    }

    fn send_connect(&mut self, now: Now) {
        self.timers.retain(|(_, t)| *t != Timer::Info);
        proto::write_json_op(
            &mut self.out,
            "CONNECT",
            &wire::connect_json(&self.cfg.client_id),
        );
        let hb = self.heartbeat_inbox.clone();
        let acks = self.pub_ack_inbox.clone();
        let replies = format!("{}.*", self.reply_prefix);
        self.write_sub(&hb, HEARTBEAT_SID);
        self.write_sub(&acks, PUB_ACK_SID);
        self.write_sub(&replies, REPLY_SID);
        let req = pb::ConnectRequest {
            client_id: self.cfg.client_id.clone(),
            heartbeat_inbox: hb,
            protocol: 1,
            conn_id: self.conn_id.clone(),
            ping_interval: self.cfg.ping_interval_secs,
            ping_max_out: self.cfg.ping_max_out,
        };
        let subject = format!("{}.{}", self.cfg.discover_prefix, self.cfg.cluster_id);
        self.state = State::AwaitingConnectResponse;
        self.request(now, &subject, &req.encode_to_vec(), Request::Connect);
    }

    fn request(&mut self, now: Now, subject: &str, payload: &[u8], req: Request) {
        let token = self.next_token;
        self.next_token += 1;
        let reply = format!("{}.{}", self.reply_prefix, token);
        proto::write_pub(
            &mut self.out,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            None,
            payload,
        );
        let deadline = now.mono + self.cfg.connect_wait;
        self.requests.insert(token, (req, deadline));
        self.timers.insert((deadline, Timer::Request(token)));
    }

    fn request_answered(&mut self, now: Now, req: Request, body: &[u8]) {
        match req {
            Request::Connect => match pb::ConnectResponse::decode(body) {
                Err(e) => self.end(format!("stan: {e}")),
                Ok(r) if !r.error.is_empty() => self.end(r.error),
                Ok(r) => self.connected(now, r),
            },
            Request::Subscribe(sub) => {
                let (ack_inbox, error) = match pb::SubscriptionResponse::decode(body) {
                    Ok(r) => (r.ack_inbox, r.error),
                    Err(e) => (String::new(), format!("stan: {e}")),
                };
                if error.is_empty() {
                    self.subscribed(sub, ack_inbox);
                } else {
                    self.drop_subscription(sub);
                    self.events.push_back(Event::SubscribeFailed { sub, error });
                }
            }
            Request::Unsubscribe { sub, .. } => {
                let error = match pb::SubscriptionResponse::decode(body) {
                    Ok(r) => (!r.error.is_empty()).then_some(r.error),
                    Err(e) => Some(format!("stan: {e}")),
                };
                self.subs.remove(&sub);
                self.events.push_back(Event::Unsubscribed { sub, error });
            }
            Request::Close => {
                let error = match pb::CloseResponse::decode(body) {
                    Ok(r) => (!r.error.is_empty()).then_some(r.error),
                    Err(e) => Some(format!("stan: {e}")),
                };
                self.finish(Event::Closed { error });
            }
        }
    }

    fn request_timed_out(&mut self, req: Request) {
        match req {
            Request::Connect => self.end(CONNECT_TIMEOUT.to_string()),
            Request::Subscribe(sub) => {
                if let Some(s) = self.subs.get(&sub) {
                    // The server may still create the subscription after we gave up:
                    // ask it to close whatever it made for this delivery inbox (§3.3).
                    if !self.subjects.sub_close_requests.is_empty() {
                        let req = pb::UnsubscribeRequest {
                            client_id: self.cfg.client_id.clone(),
                            subject: s.channel.clone(),
                            inbox: s.inbox.clone(),
                            durable_name: String::new(),
                        };
                        proto::write_pub(
                            &mut self.out,
                            self.subjects.sub_close_requests.as_bytes(),
                            None,
                            None,
                            &req.encode_to_vec(),
                        );
                    }
                }
                self.drop_subscription(sub);
                self.events.push_back(Event::SubscribeFailed {
                    sub,
                    error: SUBSCRIBE_TIMEOUT.to_string(),
                });
            }
            Request::Unsubscribe { sub, close } => {
                self.subs.remove(&sub);
                let text = if close {
                    CLOSE_TIMEOUT
                } else {
                    UNSUBSCRIBE_TIMEOUT
                };
                self.events.push_back(Event::Unsubscribed {
                    sub,
                    error: Some(text.to_string()),
                });
            }
            Request::Close => self.finish(Event::Closed {
                error: Some(CLOSE_TIMEOUT.to_string()),
            }),
        }
    }

    fn connected(&mut self, now: Now, r: pb::ConnectResponse) {
        self.subjects = ServerSubjects {
            pub_prefix: r.pub_prefix,
            sub_requests: r.sub_requests,
            unsub_requests: r.unsub_requests,
            sub_close_requests: r.sub_close_requests,
            close_requests: r.close_requests,
        };
        // Pings only against a protocol-1 server that echoed an interval (§4).
        if r.protocol >= 1 && r.ping_interval != 0 && !r.ping_requests.is_empty() {
            let interval = if r.ping_interval < 0 {
                Duration::from_millis(u64::from(r.ping_interval.unsigned_abs()))
            } else {
                Duration::from_secs(u64::from(r.ping_interval.unsigned_abs()))
            };
            let ping = pb::Ping {
                conn_id: self.conn_id.clone(),
            };
            let mut payload = Vec::new();
            proto::write_pub(
                &mut payload,
                r.ping_requests.as_bytes(),
                Some(format!("{}.{}", self.reply_prefix, PING_TOKEN).as_bytes()),
                None,
                &ping.encode_to_vec(),
            );
            let next = now.mono + interval;
            self.timers.insert((next, Timer::Ping));
            self.pinger = Some(Pinger {
                interval,
                max_out: r.ping_max_out,
                out: 0,
                next,
                payload,
            });
        }
        self.state = State::Connected;
        self.events.push_back(Event::Connected);
    }

    /// A ping period elapsed: count the ping still unanswered, give up past
    /// `pingMaxOut`, else send the next one (§3.9).
    fn ping_due(&mut self, now: Now) {
        let Some(p) = self.pinger.as_mut() else {
            return;
        };
        p.out += 1;
        if p.out > p.max_out {
            self.end(PING_FAILURE.to_string());
            return;
        }
        p.next = now.mono + p.interval;
        self.timers.insert((p.next, Timer::Ping));
        self.out.extend_from_slice(&p.payload);
    }

    fn ping_answered(&mut self, answer: Option<&[u8]>) {
        // A 503 means the server is not there: no answer, the count stands.
        let Some(body) = answer else {
            return;
        };
        if self.state != State::Connected {
            return;
        }
        match pb::PingResponse::decode(body) {
            Ok(r) if !r.error.is_empty() => self.end(r.error),
            _ => {
                if let Some(p) = self.pinger.as_mut() {
                    p.out = 0;
                }
            }
        }
    }

    fn stop_pinger(&mut self) {
        if let Some(p) = self.pinger.take() {
            self.timers.remove(&(p.next, Timer::Ping));
        }
    }

    fn write_sub(&mut self, subject: &str, sid: u64) {
        proto::write_sub(
            &mut self.out,
            subject.as_bytes(),
            None,
            sid.to_string().as_bytes(),
        );
    }

    /// Ends the connection with `error`, reported as the event that fits the state.
    fn end(&mut self, error: String) {
        let event = match self.state {
            State::Ended => return,
            State::AwaitingInfo | State::AwaitingConnectResponse => {
                Event::ConnectFailed(error.clone())
            }
            State::Connected => Event::ConnectionLost(error.clone()),
            State::AwaitingCloseResponse => Event::Closed {
                error: Some(error.clone()),
            },
        };
        self.fail_operations(&error);
        self.finish(event);
    }

    /// Ends every publish, subscribe and unsubscribe still under way with `error`.
    fn fail_operations(&mut self, error: &str) {
        for (_, guid) in std::mem::take(&mut self.pub_deadlines) {
            if self.pubs.remove(&guid) {
                self.events.push_back(Event::PubAck {
                    guid,
                    error: Some(error.to_string()),
                });
            }
        }
        self.pubs.clear();
        let pending: Vec<(u64, Request, Instant)> = self
            .requests
            .iter()
            .map(|(t, (r, d))| (*t, *r, *d))
            .collect();
        for (token, req, deadline) in pending {
            let event = match req {
                Request::Subscribe(sub) => Event::SubscribeFailed {
                    sub,
                    error: error.to_string(),
                },
                Request::Unsubscribe { sub, .. } => Event::Unsubscribed {
                    sub,
                    error: Some(error.to_string()),
                },
                Request::Connect | Request::Close => continue,
            };
            self.requests.remove(&token);
            self.timers.remove(&(deadline, Timer::Request(token)));
            if let Event::SubscribeFailed { sub, .. } | Event::Unsubscribed { sub, .. } = &event {
                self.subs.remove(sub);
            }
            self.events.push_back(event);
        }
    }

    /// Queues the final event and forgets every timer.
    fn finish(&mut self, event: Event) {
        self.state = State::Ended;
        self.pinger = None;
        self.timers.clear();
        self.requests.clear();
        self.pub_deadlines.clear();
        self.pubs.clear();
        self.subs.clear();
        self.rbuf = Vec::new();
        self.events.push_back(event);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.cfg.client_id)
            .field("state", &self.state)
            .field("pub_acks_in_flight", &self.pubs.len())
            .field("subscriptions", &self.subs.len())
            .finish_non_exhaustive()
    }
}

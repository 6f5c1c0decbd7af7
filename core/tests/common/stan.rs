//! STAN clients for transcripts: each speaks NATS on its own connection to the node and
//! records what it sends and receives with the protobufs decoded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use prost::Message;
use stan_core::nats::proto::{self, Limits, ServerOp};
use stan_core::nats::{ConnId, Input, Output};
use stan_core::node::{Node, NodeConfig};
use stan_core::store::MemStore;
use stan_core::streaming::pb::*;
use stan_core::streaming::{self};
use stan_core::Now;

use super::{show, START_WALL_NS};

/// What a subject carries, so the transcript can decode it.
#[derive(Clone, Copy, Debug)]
pub enum Carries {
    ConnectResponse,
    PubAck,
    MsgProto,
    SubscriptionResponse,
    CloseResponse,
    PingResponse,
    Heartbeat,
    /// Partitioning announcements, their data a channel list.
    ChannelList,
    /// Replies to partitioning announcements, their data a channel name.
    CtrlMsg,
    /// Anything shown by its size only (Raft messages).
    Raw,
}

/// A message received by a client.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub reply: Option<String>,
    pub payload: Vec<u8>,
}

pub struct Client {
    pub conn: ConnId,
    pub id: String,
    pub conn_id: Vec<u8>,
    pub hb_inbox: String,
    pub acks: String,
    pub resp: ConnectResponse,
    /// Answer heartbeats automatically.
    pub answer_heartbeats: bool,
    /// Reply subject of a connect whose response has not arrived yet.
    pub pending_connect: Option<String>,
    next_sid: u64,
    next_req: u64,
}

/// A subscription seen from the client side.
#[derive(Debug, Clone)]
pub struct ClientSub {
    pub inbox: String,
    pub ack_inbox: String,
    pub channel: String,
    pub error: String,
}

pub struct StanWorld {
    pub node: Node,
    pub now: Now,
    pub transcript: String,
    pub clients: Vec<Client>,
    carries: BTreeMap<String, Carries>,
    inbox: BTreeMap<ConnId, Vec<Received>>,
    pub closed: Vec<ConnId>,
    next_port: u16,
    pub quiet: bool,
}

pub fn stan_config() -> streaming::Config {
    streaming::Config {
        rng_seed: 7,
        ..streaming::Config::default()
    }
}

impl StanWorld {
    pub fn new(cfg: streaming::Config) -> Self {
        Self::with_store(cfg, Box::new(MemStore::new()))
    }

    pub fn with_store(cfg: streaming::Config, store: Box<dyn stan_core::store::Store>) -> Self {
        let mut w = Self::unstarted(cfg, store);
        w.node.start(w.now).expect("starts");
        while w.node.poll_output().is_some() {}
        w
    }

    /// A world whose node is not started yet: connections made now see the start.
    pub fn unstarted(cfg: streaming::Config, store: Box<dyn stan_core::store::Store>) -> Self {
        let node_cfg = NodeConfig {
            nats: stan_core::nats::Config {
                rng_seed: 3,
                ..Default::default()
            },
            streaming: Some(cfg),
        };
        let node = Node::with_streaming(node_cfg, store).expect("valid config");
        let now = Now {
            mono: stan_core::Instant::from_nanos(0),
            wall_ns: START_WALL_NS,
        };
        StanWorld {
            node,
            now,
            transcript: String::new(),
            clients: Vec::new(),
            carries: BTreeMap::new(),
            inbox: BTreeMap::new(),
            closed: Vec::new(),
            next_port: 40000,
            quiet: false,
        }
    }

    fn stamp(&self) -> String {
        let ms = self.now.mono.as_nanos() / 1_000_000;
        format!("[{}.{:03}s]", ms / 1000, ms % 1000)
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.transcript, "# {text}");
    }

    fn line(&mut self, text: String) {
        if !self.quiet {
            let stamp = self.stamp();
            let _ = writeln!(self.transcript, "{stamp} {text}");
        }
    }

    /// A plain NATS connection (no STAN client on it) subscribed to `subjects`, whose
    /// messages carry `carries`; read what it gets with [`StanWorld::take_raw`].
    pub fn nats_peer(&mut self, subjects: &[&str], carries: Carries) -> ConnId {
        self.next_port += 1;
        let peer = format!("127.0.0.1:{}", self.next_port).parse().unwrap();
        let conn = self.node.accept(self.now, peer);
        self.drain();
        self.inbox.remove(&conn);
        let mut out = b"CONNECT {\"echo\":false,\"protocol\":1}\r\n".to_vec();
        for (i, subject) in subjects.iter().enumerate() {
            self.carries.insert(subject.to_string(), carries);
            let sid = (i + 1).to_string();
            proto::write_sub(&mut out, subject.as_bytes(), None, sid.as_bytes());
        }
        self.raw(conn, &out);
        conn
    }

    /// Publishes from a plain NATS connection; `what` is the transcript's description.
    pub fn raw_publish(
        &mut self,
        conn: ConnId,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
        what: &str,
    ) {
        let who = self.clients.iter().find(|c| c.conn == conn);
        let name = who.map_or_else(|| format!("c{}", conn.0), |c| c.id.clone());
        self.line(format!("{name} -> {subject}: {what}"));
        let mut out = Vec::new();
        proto::write_pub(
            &mut out,
            subject.as_bytes(),
            reply.map(str::as_bytes),
            None,
            payload,
        );
        self.raw(conn, &out);
    }

    /// Messages a connection received so far, taken.
    pub fn take_raw(&mut self, conn: ConnId) -> Vec<Received> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// Records a line in the transcript at the current time.
    pub fn say(&mut self, text: &str) {
        self.line(text.to_string());
    }

    /// Writes raw protocol bytes from a client connection.
    pub fn raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.node
            .handle_input(self.now, Input::Received { conn, bytes });
        self.drain();
    }

    fn publish(
        &mut self,
        c: usize,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
        what: String,
    ) {
        let conn = self.clients[c].conn;
        let id = self.clients[c].id.clone();
        self.line(format!("{id} -> {subject}: {what}"));
        let mut out = Vec::new();
        proto::write_pub(
            &mut out,
            subject.as_bytes(),
            reply.map(str::as_bytes),
            None,
            payload,
        );
        self.raw(conn, &out);
    }

    fn subscribe_raw(&mut self, c: usize, subject: &str, carries: Carries) {
        let conn = self.clients[c].conn;
        self.clients[c].next_sid += 1;
        let sid = self.clients[c].next_sid.to_string();
        self.carries.insert(subject.to_string(), carries);
        let mut out = Vec::new();
        proto::write_sub(&mut out, subject.as_bytes(), None, sid.as_bytes());
        self.raw(conn, &out);
    }

    /// Opens a NATS connection and sends a STAN connect; returns the client index.
    pub fn connect(&mut self, client_id: &str) -> usize {
        self.next_port += 1;
        let peer = format!("127.0.0.1:{}", self.next_port).parse().unwrap();
        let conn = self.node.accept(self.now, peer);
        let n = self.clients.len();
        self.clients.push(Client {
            conn,
            id: client_id.to_string(),
            conn_id: format!("conn-{client_id}-{n}").into_bytes(),
            hb_inbox: format!("_INBOX.hb.{client_id}.{n}"),
            acks: format!("_STAN.acks.{client_id}.{n}"),
            resp: ConnectResponse::default(),
            answer_heartbeats: true,
            pending_connect: None,
            next_sid: 0,
            next_req: 0,
        });
        self.drain();
        self.inbox.remove(&conn);
        self.raw(
            conn,
            b"CONNECT {\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n",
        );
        let hb = self.clients[n].hb_inbox.clone();
        let acks = self.clients[n].acks.clone();
        self.subscribe_raw(n, &hb, Carries::Heartbeat);
        self.subscribe_raw(n, &acks, Carries::PubAck);
        let req = ConnectRequest {
            client_id: client_id.to_string(),
            heartbeat_inbox: hb,
            protocol: 1,
            conn_id: self.clients[n].conn_id.clone(),
            ping_interval: 5,
            ping_max_out: 3,
        };
        match self.request(
            n,
            "_STAN.discover.test-cluster",
            &req,
            Carries::ConnectResponse,
        ) {
            Some(resp) => self.clients[n].resp = ConnectResponse::decode(&*resp).unwrap(),
            None => {
                self.clients[n].pending_connect = Some(format!(
                    "_INBOX.req.{client_id}.{n}.{}",
                    self.clients[n].next_req
                ))
            }
        }
        n
    }

    /// Completes a connect whose response came later (after a replacement probe); false
    /// while it is still outstanding.
    pub fn connect_done(&mut self, c: usize) -> bool {
        let Some(reply) = self.clients[c].pending_connect.clone() else {
            return true;
        };
        let got = self.take_on(c, |s| s == reply);
        match got.first() {
            Some(m) => {
                self.clients[c].resp = ConnectResponse::decode(&*m.payload).unwrap();
                self.clients[c].pending_connect = None;
                true
            }
            None => false,
        }
    }

    /// Sends a request and returns the reply payload, if one came.
    pub fn request<M: Message + std::fmt::Debug>(
        &mut self,
        c: usize,
        subject: &str,
        msg: &M,
        carries: Carries,
    ) -> Option<Vec<u8>> {
        self.clients[c].next_req += 1;
        let reply = format!(
            "_INBOX.req.{}.{c}.{}",
            self.clients[c].id, self.clients[c].next_req
        );
        self.subscribe_raw(c, &reply, carries);
        self.publish(
            c,
            subject,
            Some(&reply),
            &msg.encode_to_vec(),
            format!("{msg:?}"),
        );
        let conn = self.clients[c].conn;
        let got = self.inbox.get_mut(&conn)?;
        let i = got.iter().position(|m| m.subject == reply)?;
        Some(got.remove(i).payload)
    }

    /// A NATS connection for a client the server already knows (recovered from a store):
    /// it answers heartbeats on `hb_inbox` and listens on the given delivery inboxes.
    pub fn adopt(
        &mut self,
        client_id: &str,
        conn_id: &[u8],
        hb_inbox: &str,
        inboxes: &[&str],
    ) -> usize {
        self.next_port += 1;
        let peer = format!("127.0.0.1:{}", self.next_port).parse().unwrap();
        let conn = self.node.accept(self.now, peer);
        let n = self.clients.len();
        let info = self.node.streaming().unwrap().server_info().clone();
        self.clients.push(Client {
            conn,
            id: client_id.to_string(),
            conn_id: conn_id.to_vec(),
            hb_inbox: hb_inbox.to_string(),
            acks: format!("_STAN.acks.{client_id}.{n}"),
            resp: ConnectResponse {
                pub_prefix: info.publish,
                sub_requests: info.subscribe,
                unsub_requests: info.unsubscribe,
                close_requests: info.close,
                sub_close_requests: info.sub_close,
                ping_requests: format!("{}.pings", info.discovery),
                ..Default::default()
            },
            answer_heartbeats: true,
            pending_connect: None,
            next_sid: 0,
            next_req: 0,
        });
        self.drain();
        self.inbox.remove(&conn);
        self.raw(
            conn,
            b"CONNECT {\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n",
        );
        self.subscribe_raw(n, hb_inbox, Carries::Heartbeat);
        let acks = self.clients[n].acks.clone();
        self.subscribe_raw(n, &acks, Carries::PubAck);
        for inbox in inboxes {
            self.subscribe_raw(n, inbox, Carries::MsgProto);
        }
        n
    }

    /// Sends raw bytes as a request and returns the reply payload, if one came.
    pub fn request_raw(
        &mut self,
        c: usize,
        subject: &str,
        payload: &[u8],
        carries: Carries,
    ) -> Option<Vec<u8>> {
        self.clients[c].next_req += 1;
        let reply = format!(
            "_INBOX.req.{}.{c}.{}",
            self.clients[c].id, self.clients[c].next_req
        );
        self.subscribe_raw(c, &reply, carries);
        self.publish(
            c,
            subject,
            Some(&reply),
            payload,
            format!("{} raw bytes", payload.len()),
        );
        let conn = self.clients[c].conn;
        let got = self.inbox.get_mut(&conn)?;
        let i = got.iter().position(|m| m.subject == reply)?;
        Some(got.remove(i).payload)
    }

    pub fn publish_msg(&mut self, c: usize, channel: &str, data: &str) -> String {
        let guid = format!("g{}", self.transcript.len());
        let m = PubMsg {
            client_id: self.clients[c].id.clone(),
            guid: guid.clone(),
            subject: channel.to_string(),
            data: data.as_bytes().to_vec(),
            conn_id: self.clients[c].conn_id.clone(),
            ..PubMsg::default()
        };
        let subject = format!("{}.{channel}", self.clients[c].resp.pub_prefix);
        let acks = self.clients[c].acks.clone();
        self.publish(
            c,
            &subject,
            Some(&acks),
            &m.encode_to_vec(),
            format!("PubMsg guid={guid} data={data:?}"),
        );
        guid
    }

    /// PubAcks received by the client so far (guid, error), taken.
    pub fn pub_acks(&mut self, c: usize) -> Vec<(String, String)> {
        let acks = self.clients[c].acks.clone();
        self.take_on(c, |s| s == acks)
            .into_iter()
            .map(|m| {
                let a = PubAck::decode(&*m.payload)
                    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}", m.subject, m.payload));
                (a.guid, a.error)
            })
            .collect()
    }

    pub fn subscribe(&mut self, c: usize, req: SubscriptionRequest) -> ClientSub {
        let inbox = format!(
            "_INBOX.sub.{}.{c}.{}",
            self.clients[c].id,
            self.clients[c].next_sid + 1
        );
        self.subscribe_raw(c, &inbox, Carries::MsgProto);
        let req = SubscriptionRequest {
            client_id: self.clients[c].id.clone(),
            inbox: inbox.clone(),
            ..req
        };
        let subject = self.clients[c].resp.sub_requests.clone();
        let resp = self
            .request(c, &subject, &req, Carries::SubscriptionResponse)
            .map(|p| SubscriptionResponse::decode(&*p).unwrap())
            .unwrap_or_default();
        ClientSub {
            inbox,
            ack_inbox: resp.ack_inbox,
            channel: req.subject,
            error: resp.error,
        }
    }

    /// Messages delivered to a subscription so far, taken.
    pub fn msgs(&mut self, c: usize, sub: &ClientSub) -> Vec<MsgProto> {
        let inbox = sub.inbox.clone();
        self.take_on(c, |s| s == inbox)
            .into_iter()
            .map(|m| MsgProto::decode(&*m.payload).unwrap())
            .collect()
    }

    pub fn ack(&mut self, c: usize, sub: &ClientSub, seq: u64) {
        let a = Ack {
            subject: sub.channel.clone(),
            sequence: seq,
        };
        let subject = sub.ack_inbox.clone();
        self.publish(
            c,
            &subject,
            None,
            &a.encode_to_vec(),
            format!("Ack seq={seq}"),
        );
    }

    pub fn unsubscribe(&mut self, c: usize, sub: &ClientSub, close: bool) -> String {
        let req = UnsubscribeRequest {
            client_id: self.clients[c].id.clone(),
            subject: sub.channel.clone(),
            inbox: sub.ack_inbox.clone(),
            ..Default::default()
        };
        let subject = if close {
            self.clients[c].resp.sub_close_requests.clone()
        } else {
            self.clients[c].resp.unsub_requests.clone()
        };
        self.request(c, &subject, &req, Carries::SubscriptionResponse)
            .map(|p| SubscriptionResponse::decode(&*p).unwrap().error)
            .unwrap_or_else(|| "<no reply>".into())
    }

    pub fn close(&mut self, c: usize) -> String {
        let req = CloseRequest {
            client_id: self.clients[c].id.clone(),
        };
        let subject = self.clients[c].resp.close_requests.clone();
        self.request(c, &subject, &req, Carries::CloseResponse)
            .map(|p| CloseResponse::decode(&*p).unwrap().error)
            .unwrap_or_else(|| "<no reply>".into())
    }

    pub fn ping(&mut self, c: usize) -> Option<String> {
        let req = Ping {
            conn_id: self.clients[c].conn_id.clone(),
        };
        let subject = self.clients[c].resp.ping_requests.clone();
        self.request(c, &subject, &req, Carries::PingResponse)
            .map(|p| PingResponse::decode(&*p).unwrap().error)
    }

    /// The client's NATS connection drops (no STAN close).
    pub fn hang_up(&mut self, c: usize) {
        let conn = self.clients[c].conn;
        let id = self.clients[c].id.clone();
        self.line(format!("{id} connection lost"));
        self.node.handle_input(self.now, Input::Closed { conn });
        self.drain();
    }

    fn take_on(&mut self, c: usize, f: impl Fn(&str) -> bool) -> Vec<Received> {
        let conn = self.clients[c].conn;
        let all = self.inbox.remove(&conn).unwrap_or_default();
        let (mine, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|m| f(&m.subject));
        self.inbox.insert(conn, rest);
        mine
    }

    pub fn advance(&mut self, d: std::time::Duration) {
        let end = self.now.advanced(d);
        while let Some(at) = self.node.poll_timeout() {
            if at > end.mono {
                break;
            }
            let step = at.saturating_since(self.now.mono);
            self.now = self.now.advanced(step);
            self.node.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    pub fn drain(&mut self) {
        // Each drain ends a batch, as the runtime's driver ends one: clustered, the
        // flush is what proposes the batch's writes.
        let _ = self.node.flush_store(self.now);
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { conn, data } => {
                    self.node.handle_input(
                        self.now,
                        Input::Flushed {
                            conn,
                            bytes: data.len(),
                        },
                    );
                    self.received(conn, &data);
                }
                Output::Close { conn } => {
                    self.closed.push(conn);
                    self.line(format!("connection c{} closed by the server", conn.0));
                }
                Output::Log(l) => {
                    if matches!(
                        l.level,
                        stan_core::log::Level::Error
                            | stan_core::log::Level::Warn
                            | stan_core::log::Level::Fatal
                    ) || l.text.contains("Channel")
                        || l.text == "Streaming Server is ready"
                    {
                        self.line(format!("log [{}] {}", l.level.tag(), l.text));
                    }
                }
                // These worlds have no cluster port.
                Output::Dial { url } => panic!("unexpected dial of {}", url.url),
            }
        }
    }

    fn received(&mut self, conn: ConnId, data: &[u8]) {
        let who = self.clients.iter().position(|c| c.conn == conn);
        let name = who.map_or_else(|| format!("c{}", conn.0), |i| self.clients[i].id.clone());
        let mut pos = 0;
        let limits = Limits::default();
        while let Ok(Some((op, used))) = proto::parse_server_op(&data[pos..], &limits) {
            pos += used;
            match op {
                ServerOp::Msg {
                    subject,
                    reply,
                    header_len,
                    payload,
                    ..
                } => {
                    let subject = String::from_utf8_lossy(subject).into_owned();
                    let reply = reply.map(|r| String::from_utf8_lossy(r).into_owned());
                    let body = if header_len.is_some() {
                        format!(
                            "status {}",
                            String::from_utf8_lossy(&payload[..header_len.unwrap_or(0)]).trim()
                        )
                    } else {
                        self.decode(&subject, payload)
                    };
                    let r = reply
                        .as_deref()
                        .map(|r| format!(" (reply {r})"))
                        .unwrap_or_default();
                    self.line(format!("{name} <- {subject}{r}: {body}"));
                    let is_hb = matches!(self.carries.get(&subject), Some(Carries::Heartbeat));
                    let answer = who.is_some_and(|i| self.clients[i].answer_heartbeats);
                    if let (true, true, Some(r)) = (is_hb, answer, reply.clone()) {
                        let mut out = Vec::new();
                        proto::write_pub(&mut out, r.as_bytes(), None, None, b"");
                        self.line(format!("{name} -> {r}: heartbeat answer"));
                        self.node
                            .handle_input(self.now, Input::Received { conn, bytes: &out });
                        continue;
                    }
                    self.inbox.entry(conn).or_default().push(Received {
                        subject,
                        reply,
                        payload: payload.to_vec(),
                    });
                }
                ServerOp::Err(e) => {
                    self.line(format!("{name} <- -ERR {}", String::from_utf8_lossy(e)))
                }
                ServerOp::Info(_) | ServerOp::Ok | ServerOp::Pong => {}
                ServerOp::Ping => self.line(format!("{name} <- PING")),
            }
        }
        let _ = show;
    }

    fn decode(&self, subject: &str, payload: &[u8]) -> String {
        let kind = self.carries.get(subject).copied();
        let text = match kind {
            Some(Carries::ConnectResponse) => {
                ConnectResponse::decode(payload).map(|m| format!("{m:?}"))
            }
            Some(Carries::PubAck) => PubAck::decode(payload).map(|m| format!("{m:?}")),
            Some(Carries::MsgProto) => MsgProto::decode(payload).map(|m| {
                format!(
                    "MsgProto seq={} data={:?} redelivered={} count={}",
                    m.sequence,
                    String::from_utf8_lossy(&m.data),
                    m.redelivered,
                    m.redelivery_count
                )
            }),
            Some(Carries::SubscriptionResponse) => {
                SubscriptionResponse::decode(payload).map(|m| format!("{m:?}"))
            }
            Some(Carries::CloseResponse) => {
                CloseResponse::decode(payload).map(|m| format!("{m:?}"))
            }
            Some(Carries::PingResponse) => PingResponse::decode(payload).map(|m| format!("{m:?}")),
            Some(Carries::Heartbeat) => Ok("heartbeat".into()),
            Some(Carries::CtrlMsg) => CtrlMsg::decode(payload).map(|m| {
                format!(
                    "CtrlMsg type={:?} server_id={} data={:?}",
                    CtrlMsgType::try_from(m.msg_type),
                    m.server_id,
                    String::from_utf8_lossy(&m.data),
                )
            }),
            Some(Carries::ChannelList) => CtrlMsg::decode(payload).map(|m| {
                let channels = stan_core::streaming::partition::decode_channel_list(&m.data)
                    .map_or_else(|e| e, |c| format!("{c:?}"));
                format!(
                    "CtrlMsg type={:?} server_id={} channels={channels}",
                    CtrlMsgType::try_from(m.msg_type),
                    m.server_id,
                )
            }),
            Some(Carries::Raw) | None => Ok(format!("{} bytes", payload.len())),
        };
        text.unwrap_or_else(|e| format!("undecodable: {e}"))
    }
}

/// A subscription request with the Go client's defaults.
pub fn sub_req(channel: &str) -> SubscriptionRequest {
    SubscriptionRequest {
        subject: channel.to_string(),
        max_in_flight: 1024,
        ack_wait_in_secs: 30,
        ..Default::default()
    }
}

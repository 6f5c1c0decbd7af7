//! The STAN protobuf messages (proto3), with the field numbers of the Go server's
//! `pb` (client protocol) and `spb` (persistence) packages: shared/spec/PROTOCOL.md §2.
//! Names follow this crate's style; only numbers and types reach the wire.

use prost::Message;

/// A message published by a client on `<pubPrefix>.<channel>`.
#[derive(Clone, PartialEq, Message)]
pub struct PubMsg {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub guid: String,
    #[prost(string, tag = "3")]
    pub subject: String,
    #[prost(string, tag = "4")]
    pub reply: String,
    #[prost(bytes = "vec", tag = "5")]
    pub data: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub conn_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub sha256: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PubAck {
    #[prost(string, tag = "1")]
    pub guid: String,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// A stored message, and what subscribers receive.
#[derive(Clone, PartialEq, Message)]
pub struct MsgProto {
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(string, tag = "3")]
    pub reply: String,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
    #[prost(int64, tag = "5")]
    pub timestamp: i64,
    #[prost(bool, tag = "6")]
    pub redelivered: bool,
    #[prost(uint32, tag = "7")]
    pub redelivery_count: u32,
    #[prost(uint32, tag = "10")]
    pub crc32: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Ack {
    #[prost(string, tag = "1")]
    pub subject: String,
    #[prost(uint64, tag = "2")]
    pub sequence: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnectRequest {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub heartbeat_inbox: String,
    #[prost(int32, tag = "3")]
    pub protocol: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub conn_id: Vec<u8>,
    #[prost(int32, tag = "5")]
    pub ping_interval: i32,
    #[prost(int32, tag = "6")]
    pub ping_max_out: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ConnectResponse {
    #[prost(string, tag = "1")]
    pub pub_prefix: String,
    #[prost(string, tag = "2")]
    pub sub_requests: String,
    #[prost(string, tag = "3")]
    pub unsub_requests: String,
    #[prost(string, tag = "4")]
    pub close_requests: String,
    #[prost(string, tag = "5")]
    pub error: String,
    #[prost(string, tag = "6")]
    pub sub_close_requests: String,
    #[prost(string, tag = "7")]
    pub ping_requests: String,
    #[prost(int32, tag = "8")]
    pub ping_interval: i32,
    #[prost(int32, tag = "9")]
    pub ping_max_out: i32,
    #[prost(int32, tag = "10")]
    pub protocol: i32,
    #[prost(string, tag = "100")]
    pub public_key: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Ping {
    #[prost(bytes = "vec", tag = "1")]
    pub conn_id: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PingResponse {
    #[prost(string, tag = "1")]
    pub error: String,
}

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StartPosition {
    NewOnly = 0,
    LastReceived = 1,
    TimeDeltaStart = 2,
    SequenceStart = 3,
    First = 4,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubscriptionRequest {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(string, tag = "3")]
    pub q_group: String,
    #[prost(string, tag = "4")]
    pub inbox: String,
    #[prost(int32, tag = "5")]
    pub max_in_flight: i32,
    #[prost(int32, tag = "6")]
    pub ack_wait_in_secs: i32,
    #[prost(string, tag = "7")]
    pub durable_name: String,
    /// A [`StartPosition`]; kept as the raw number so out-of-range values can be refused
    /// with the Go server's error rather than failing to decode.
    #[prost(int32, tag = "10")]
    pub start_position: i32,
    #[prost(uint64, tag = "11")]
    pub start_sequence: u64,
    #[prost(int64, tag = "12")]
    pub start_time_delta: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubscriptionResponse {
    #[prost(string, tag = "2")]
    pub ack_inbox: String,
    #[prost(string, tag = "3")]
    pub error: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct UnsubscribeRequest {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(string, tag = "3")]
    pub inbox: String,
    #[prost(string, tag = "4")]
    pub durable_name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CloseRequest {
    #[prost(string, tag = "1")]
    pub client_id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CloseResponse {
    #[prost(string, tag = "1")]
    pub error: String,
}

/// A stored subscription.
#[derive(Clone, PartialEq, Message)]
pub struct SubState {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub client_id: String,
    #[prost(string, tag = "3")]
    pub q_group: String,
    #[prost(string, tag = "4")]
    pub inbox: String,
    #[prost(string, tag = "5")]
    pub ack_inbox: String,
    #[prost(int32, tag = "6")]
    pub max_in_flight: i32,
    #[prost(int32, tag = "7")]
    pub ack_wait_in_secs: i32,
    #[prost(string, tag = "8")]
    pub durable_name: String,
    #[prost(uint64, tag = "9")]
    pub last_sent: u64,
    #[prost(bool, tag = "10")]
    pub is_durable: bool,
    #[prost(bool, tag = "11")]
    pub is_closed: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubStateDelete {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubStateUpdate {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub seqno: u64,
}

/// The subjects a server uses, persisted at first start.
#[derive(Clone, PartialEq, Message)]
pub struct ServerInfo {
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    #[prost(string, tag = "2")]
    pub discovery: String,
    #[prost(string, tag = "3")]
    pub publish: String,
    #[prost(string, tag = "4")]
    pub subscribe: String,
    #[prost(string, tag = "5")]
    pub unsubscribe: String,
    #[prost(string, tag = "6")]
    pub close: String,
    #[prost(string, tag = "7")]
    pub sub_close: String,
    #[prost(string, tag = "8")]
    pub acks_subs: String,
    #[prost(string, tag = "9")]
    pub node_id: String,
}

/// A stored client.
#[derive(Clone, PartialEq, Message)]
pub struct ClientInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub hb_inbox: String,
    #[prost(bytes = "vec", tag = "3")]
    pub conn_id: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub protocol: i32,
    #[prost(int32, tag = "5")]
    pub ping_interval: i32,
    #[prost(int32, tag = "6")]
    pub ping_max_out: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClientDelete {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CtrlMsgType {
    SubUnsubscribe = 0,
    SubClose = 1,
    ConnClose = 2,
    FtHeartbeat = 3,
    Partitioning = 4,
}

/// Server-to-server control message; also recognised (and ignored) on client subjects.
#[derive(Clone, PartialEq, Message)]
pub struct CtrlMsg {
    #[prost(enumeration = "CtrlMsgType", tag = "1")]
    pub msg_type: i32,
    #[prost(string, tag = "2")]
    pub server_id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    #[prost(string, tag = "4")]
    pub ref_id: String,
}

/// Encodes a message to a fresh buffer.
pub fn encode<M: Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

//! Protobuf reading and writing of the records the FILE store persists. Encoding goes
//! through stan-core (prost for the rare records, the allocation-free writer for
//! messages); decoding is done here because a record read from disk must fail with a
//! message, never panic, whatever bytes a crash or a foreign tool left behind.
//! Unknown fields are skipped, as protobuf readers do.

use stan_core::streaming::pb::{
    ClientDelete, ClientInfo, MsgProto, ServerInfo, SubState, SubStateDelete, SubStateUpdate,
};

/// Why a payload is not the expected message; the text is reported as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

fn unexpected_eof() -> DecodeError {
    DecodeError("unexpected EOF".into())
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl Value<'_> {
    fn wire_type(&self) -> u64 {
        match self {
            Value::Varint(_) => 0,
            Value::Bytes(_) => 2,
            Value::Fixed => 1,
        }
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or_else(unexpected_eof)?;
        *buf = rest;
        if i == 9 && b > 1 {
            break;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("proto: integer overflow".into()))
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8]> {
    if (buf.len() as u64) < n {
        return Err(unexpected_eof());
    }
    let (head, rest) = buf.split_at(n as usize);
    *buf = rest;
    Ok(head)
}

/// Calls `f` with every field of `buf`; `msg` names the message in errors.
fn for_each_field<'a>(
    msg: &str,
    mut buf: &'a [u8],
    mut f: impl FnMut(u64, Value<'a>) -> Result<()>,
) -> Result<()> {
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(DecodeError(format!(
                "proto: {msg}: illegal tag 0 (wire type {wire})"
            )));
        }
        let value = match wire {
            0 => Value::Varint(varint(&mut buf)?),
            1 => {
                take(&mut buf, 8)?;
                Value::Fixed
            }
            2 => {
                let n = varint(&mut buf)?;
                Value::Bytes(take(&mut buf, n)?)
            }
            5 => {
                take(&mut buf, 4)?;
                Value::Fixed
            }
            4 => {
                return Err(DecodeError(format!(
                    "proto: {msg}: wiretype end group for non-group"
                )))
            }
            w => return Err(DecodeError(format!("proto: illegal wireType {w}"))),
        };
        f(field, value)?;
    }
    Ok(())
}

fn wrong(name: &str, v: &Value) -> DecodeError {
    DecodeError(format!(
        "proto: wrong wireType = {} for field {name}",
        v.wire_type()
    ))
}

fn u64_of(name: &str, v: Value) -> Result<u64> {
    match v {
        Value::Varint(x) => Ok(x),
        other => Err(wrong(name, &other)),
    }
}

fn i32_of(name: &str, v: Value) -> Result<i32> {
    u64_of(name, v).map(|x| x as i32)
}

fn bool_of(name: &str, v: Value) -> Result<bool> {
    u64_of(name, v).map(|x| x != 0)
}

fn bytes_of<'a>(name: &str, v: Value<'a>) -> Result<&'a [u8]> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(wrong(name, &other)),
    }
}

/// Strings written by the Go server are not checked for UTF-8; keep what can be kept
/// rather than refusing a whole store over one odd byte.
fn string_of(name: &str, v: Value) -> Result<String> {
    bytes_of(name, v).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Only the fields a store keeps: the redelivery fields are per delivery.
pub fn decode_msg(buf: &[u8]) -> Result<MsgProto> {
    let mut m = MsgProto::default();
    for_each_field("MsgProto", buf, |field, v| {
        match field {
            1 => m.sequence = u64_of("Sequence", v)?,
            2 => m.subject = string_of("Subject", v)?,
            3 => m.reply = string_of("Reply", v)?,
            4 => m.data = bytes_of("Data", v)?.to_vec(),
            5 => m.timestamp = u64_of("Timestamp", v)? as i64,
            6 => {
                bool_of("Redelivered", v)?;
            }
            7 => {
                u64_of("RedeliveryCount", v)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

/// The sequence and timestamp of an encoded `MsgProto`, without copying its payload.
pub fn decode_msg_meta(buf: &[u8]) -> Result<(u64, i64)> {
    let (mut seq, mut ts) = (0, 0);
    for_each_field("MsgProto", buf, |field, v| {
        match field {
            1 => seq = u64_of("Sequence", v)?,
            2 => {
                bytes_of("Subject", v)?;
            }
            3 => {
                bytes_of("Reply", v)?;
            }
            4 => {
                bytes_of("Data", v)?;
            }
            5 => ts = u64_of("Timestamp", v)? as i64,
            _ => {}
        }
        Ok(())
    })?;
    Ok((seq, ts))
}

pub fn decode_server_info(buf: &[u8]) -> Result<ServerInfo> {
    let mut m = ServerInfo::default();
    for_each_field("ServerInfo", buf, |field, v| {
        match field {
            1 => m.cluster_id = string_of("ClusterID", v)?,
            2 => m.discovery = string_of("Discovery", v)?,
            3 => m.publish = string_of("Publish", v)?,
            4 => m.subscribe = string_of("Subscribe", v)?,
            5 => m.unsubscribe = string_of("Unsubscribe", v)?,
            6 => m.close = string_of("Close", v)?,
            7 => m.sub_close = string_of("SubClose", v)?,
            8 => m.acks_subs = string_of("AcksSubs", v)?,
            9 => m.node_id = string_of("NodeID", v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

pub fn decode_client_info(buf: &[u8]) -> Result<ClientInfo> {
    let mut m = ClientInfo::default();
    for_each_field("ClientInfo", buf, |field, v| {
        match field {
            1 => m.id = string_of("ID", v)?,
            2 => m.hb_inbox = string_of("HbInbox", v)?,
            3 => m.conn_id = bytes_of("ConnID", v)?.to_vec(),
            4 => m.protocol = i32_of("Protocol", v)?,
            5 => m.ping_interval = i32_of("PingInterval", v)?,
            6 => m.ping_max_out = i32_of("PingMaxOut", v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

pub fn decode_client_delete(buf: &[u8]) -> Result<ClientDelete> {
    let mut m = ClientDelete::default();
    for_each_field("ClientDelete", buf, |field, v| {
        if field == 1 {
            m.id = string_of("ID", v)?;
        }
        Ok(())
    })?;
    Ok(m)
}

pub fn decode_sub_state(buf: &[u8]) -> Result<SubState> {
    let mut m = SubState::default();
    for_each_field("SubState", buf, |field, v| {
        match field {
            1 => m.id = u64_of("ID", v)?,
            2 => m.client_id = string_of("ClientID", v)?,
            3 => m.q_group = string_of("QGroup", v)?,
            4 => m.inbox = string_of("Inbox", v)?,
            5 => m.ack_inbox = string_of("AckInbox", v)?,
            6 => m.max_in_flight = i32_of("MaxInFlight", v)?,
            7 => m.ack_wait_in_secs = i32_of("AckWaitInSecs", v)?,
            8 => m.durable_name = string_of("DurableName", v)?,
            9 => m.last_sent = u64_of("LastSent", v)?,
            10 => m.is_durable = bool_of("IsDurable", v)?,
            11 => m.is_closed = bool_of("IsClosed", v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

pub fn decode_sub_delete(buf: &[u8]) -> Result<SubStateDelete> {
    let mut m = SubStateDelete::default();
    for_each_field("SubStateDelete", buf, |field, v| {
        if field == 1 {
            m.id = u64_of("ID", v)?;
        }
        Ok(())
    })?;
    Ok(m)
}

pub fn decode_sub_update(buf: &[u8]) -> Result<SubStateUpdate> {
    let mut m = SubStateUpdate::default();
    for_each_field("SubStateUpdate", buf, |field, v| {
        match field {
            1 => m.id = u64_of("ID", v)?,
            2 => m.seqno = u64_of("Seqno", v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `SubStateUpdate {ID, Seqno}` and `SubStateDelete {ID}`: written once per delivery
/// and per ack, so encoded without allocating.
pub fn encode_ids(out: &mut Vec<u8>, id: u64, seqno: Option<u64>) {
    if id != 0 {
        out.push(1 << 3);
        put_varint(out, id);
    }
    if let Some(seqno) = seqno.filter(|s| *s != 0) {
        out.push(2 << 3);
        put_varint(out, seqno);
    }
}

/// `ClientDelete {ID}`.
pub fn encode_client_delete(out: &mut Vec<u8>, id: &str) {
    if !id.is_empty() {
        out.push(1 << 3 | 2);
        put_varint(out, id.len() as u64);
        out.extend_from_slice(id.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stan_core::streaming::pb::encode;

    #[test]
    fn decoders_read_what_prost_writes() {
        let info = ServerInfo {
            cluster_id: "c".into(),
            discovery: "_STAN.discover.c".into(),
            publish: "p".into(),
            subscribe: "s".into(),
            unsubscribe: "u".into(),
            close: "x".into(),
            sub_close: "sc".into(),
            acks_subs: "a".into(),
            node_id: "n".into(),
        };
        assert_eq!(decode_server_info(&encode(&info)).unwrap(), info);
        let client = ClientInfo {
            id: "me".into(),
            hb_inbox: "_INBOX.hb".into(),
            conn_id: vec![1, 2, 3],
            protocol: 1,
            ping_interval: -5,
            ping_max_out: 3,
        };
        assert_eq!(decode_client_info(&encode(&client)).unwrap(), client);
        let sub = SubState {
            id: 300,
            client_id: "me".into(),
            q_group: "q".into(),
            inbox: "i".into(),
            ack_inbox: "a".into(),
            max_in_flight: 1024,
            ack_wait_in_secs: 30,
            durable_name: "d".into(),
            last_sent: u64::MAX,
            is_durable: true,
            is_closed: true,
        };
        assert_eq!(decode_sub_state(&encode(&sub)).unwrap(), sub);
        let msg = MsgProto {
            sequence: 7,
            subject: "foo".into(),
            reply: "r".into(),
            data: vec![0; 300],
            timestamp: -1,
            ..MsgProto::default()
        };
        assert_eq!(decode_msg(&encode(&msg)).unwrap(), msg);
        assert_eq!(decode_msg_meta(&encode(&msg)).unwrap(), (7, -1));
    }

    #[test]
    fn small_encoders_match_prost() {
        for (id, seq) in [(0, 0), (1, 1), (300, 1 << 40), (u64::MAX, 5)] {
            let mut out = Vec::new();
            encode_ids(&mut out, id, Some(seq));
            assert_eq!(out, encode(&SubStateUpdate { id, seqno: seq }));
            out.clear();
            encode_ids(&mut out, id, None);
            assert_eq!(out, encode(&SubStateDelete { id }));
        }
        let mut out = Vec::new();
        encode_client_delete(&mut out, "client");
        assert_eq!(
            out,
            encode(&ClientDelete {
                id: "client".into()
            })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode_msg(&[0x0a]).unwrap_err().0, "unexpected EOF");
        assert_eq!(decode_msg(&[0x08; 11]).unwrap_err().0, "unexpected EOF");
        assert_eq!(
            decode_msg(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .unwrap_err()
                .0,
            "proto: integer overflow"
        );
        assert_eq!(
            decode_sub_state(&[0x00]).unwrap_err().0,
            "proto: SubState: illegal tag 0 (wire type 0)"
        );
        assert_eq!(
            decode_sub_state(&[0x0a, 0x00]).unwrap_err().0,
            "proto: wrong wireType = 2 for field ID"
        );
        assert_eq!(
            decode_client_info(&[0x0c]).unwrap_err().0,
            "proto: ClientInfo: wiretype end group for non-group"
        );
        // Unknown fields of every plain wire type are skipped.
        let mut buf = vec![0xf8, 0x01, 0x05, 0xf9, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        buf.extend_from_slice(&[0xfd, 0x01, 0, 0, 0, 0, 0xfa, 0x01, 0x01, 0xaa, 0x08, 0x02]);
        assert_eq!(decode_sub_update(&buf).unwrap().id, 2);
    }
}

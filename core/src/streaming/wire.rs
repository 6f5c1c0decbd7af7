//! Allocation-free protobuf reading and writing for the messages on the hot path
//! (`PubMsg` and `Ack` in, `MsgProto` out). They accept and produce exactly what the
//! prost definitions in [`super::pb`] do; tests check both against each other.

/// A borrowed view of a `PubMsg`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PubMsgRef<'a> {
    pub client_id: &'a str,
    pub guid: &'a str,
    pub subject: &'a str,
    pub reply: &'a str,
    pub data: &'a [u8],
    pub conn_id: &'a [u8],
}

/// A borrowed view of an `Ack`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AckRef<'a> {
    pub subject: &'a str,
    pub sequence: u64,
}

/// The payload was not a valid encoding of the expected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width value or a group: valid only where the field is unknown.
    Other,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(Malformed)?;
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err(Malformed);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and value.
    fn next(&mut self) -> Option<Result<(u32, Field<'a>), Malformed>> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.field())
    }

    fn field(&mut self) -> Result<(u32, Field<'a>), Malformed> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| Malformed)?;
        if number == 0 {
            return Err(Malformed);
        }
        if number > (1 << 29) - 1 {
            return Err(Malformed);
        }
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Other
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Field::Bytes(self.take(n)?)
            }
            3 => {
                self.skip_group(number, 0)?;
                Field::Other
            }
            5 => {
                self.take(4)?;
                Field::Other
            }
            _ => return Err(Malformed),
        };
        Ok((number, value))
    }

    /// Skips the fields of a group up to its end marker.
    fn skip_group(&mut self, number: u32, depth: u32) -> Result<(), Malformed> {
        if depth > 100 {
            return Err(Malformed);
        }
        loop {
            let key = self.varint()?;
            let inner = u32::try_from(key >> 3).map_err(|_| Malformed)?;
            if inner == 0 || inner > (1 << 29) - 1 {
                return Err(Malformed);
            }
            match key & 7 {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                    self.take(n)?;
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == number => return Ok(()),
                5 => {
                    self.take(4)?;
                }
                _ => return Err(Malformed),
            }
        }
    }
}

fn len_field(f: Field<'_>) -> Result<&[u8], Malformed> {
    match f {
        Field::Bytes(b) => Ok(b),
        Field::Varint(_) | Field::Other => Err(Malformed),
    }
}

fn str_field(f: Field<'_>) -> Result<&str, Malformed> {
    std::str::from_utf8(len_field(f)?).map_err(|_| Malformed)
}

impl<'a> PubMsgRef<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, Malformed> {
        let mut m = PubMsgRef::default();
        let mut r = Reader { buf };
        while let Some(f) = r.next() {
            let (number, value) = f?;
            match number {
                1 => m.client_id = str_field(value)?,
                2 => m.guid = str_field(value)?,
                3 => m.subject = str_field(value)?,
                4 => m.reply = str_field(value)?,
                5 => m.data = len_field(value)?,
                6 => m.conn_id = len_field(value)?,
                10 => {
                    len_field(value)?;
                }
                _ => {}
            }
        }
        Ok(m)
    }
}

impl<'a> AckRef<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, Malformed> {
        let mut m = AckRef::default();
        let mut r = Reader { buf };
        while let Some(f) = r.next() {
            match f? {
                (1, v) => m.subject = str_field(v)?,
                (2, Field::Varint(v)) => m.sequence = v,
                (2, _) => return Err(Malformed),
                _ => {}
            }
        }
        Ok(m)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u8, b: &[u8]) {
    if !b.is_empty() {
        out.push(number << 3 | 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// Appends the `MsgProto` encoding of a message (proto3: defaults omitted).
#[allow(clippy::too_many_arguments)]
pub fn encode_msg(
    out: &mut Vec<u8>,
    sequence: u64,
    subject: &str,
    reply: &str,
    data: &[u8],
    timestamp: i64,
    redelivered: bool,
    redelivery_count: u32,
) {
    out.reserve(subject.len() + reply.len() + data.len() + 32);
    if sequence != 0 {
        out.push(1 << 3);
        put_varint(out, sequence);
    }
    put_bytes(out, 2, subject.as_bytes());
    put_bytes(out, 3, reply.as_bytes());
    put_bytes(out, 4, data);
    if timestamp != 0 {
        out.push(5 << 3);
        put_varint(out, timestamp as u64);
    }
    if redelivered {
        out.push(6 << 3);
        out.push(1);
    }
    if redelivery_count != 0 {
        out.push(7 << 3);
        put_varint(out, u64::from(redelivery_count));
    }
}

/// Appends the `PubAck` encoding.
pub fn encode_pub_ack(out: &mut Vec<u8>, guid: &str, error: &str) {
    put_bytes(out, 1, guid.as_bytes());
    put_bytes(out, 2, error.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::pb::{Ack, MsgProto, PubAck, PubMsg};
    use proptest::prelude::*;
    use prost::Message;

    proptest! {
        #[test]
        fn pub_msg_agrees_with_prost(client in ".{0,8}", guid in ".{0,8}", subject in ".{0,8}", reply in ".{0,4}", data in proptest::collection::vec(any::<u8>(), 0..64), conn in proptest::collection::vec(any::<u8>(), 0..8)) {
            let m = PubMsg { client_id: client, guid, subject, reply, data, conn_id: conn, sha256: vec![1, 2] };
            let bytes = m.encode_to_vec();
            let r = PubMsgRef::decode(&bytes).unwrap();
            prop_assert_eq!((r.client_id, r.guid, r.subject, r.reply, r.data, r.conn_id), (&*m.client_id, &*m.guid, &*m.subject, &*m.reply, &*m.data, &*m.conn_id));
        }

        #[test]
        fn garbage_decodes_the_same_way(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(PubMsgRef::decode(&bytes).is_ok(), PubMsg::decode(&*bytes).is_ok());
            prop_assert_eq!(AckRef::decode(&bytes).is_ok(), Ack::decode(&*bytes).is_ok());
            if let (Ok(a), Ok(b)) = (AckRef::decode(&bytes), Ack::decode(&*bytes)) {
                prop_assert_eq!((a.subject, a.sequence), (&*b.subject, b.sequence));
            }
        }

        #[test]
        fn msg_proto_encoding_is_prost_encoding(seq in any::<u64>(), subject in ".{0,8}", reply in ".{0,4}", data in proptest::collection::vec(any::<u8>(), 0..64), ts in any::<i64>(), redelivered in any::<bool>(), count in any::<u32>()) {
            let m = MsgProto { sequence: seq, subject: subject.clone(), reply: reply.clone(), data: data.clone(), timestamp: ts, redelivered, redelivery_count: count, crc32: 0 };
            let mut out = Vec::new();
            encode_msg(&mut out, seq, &subject, &reply, &data, ts, redelivered, count);
            prop_assert_eq!(out, m.encode_to_vec());
        }

        #[test]
        fn pub_ack_encoding_is_prost_encoding(guid in ".{0,8}", error in ".{0,8}") {
            let mut out = Vec::new();
            encode_pub_ack(&mut out, &guid, &error);
            prop_assert_eq!(out, PubAck { guid, error }.encode_to_vec());
        }
    }
}

//! Messages between members and their wire form.
//!
//! The transport (NATS) does not say who sent a message, so the sender's id travels
//! inside the bytes. The format is a small length-checked binary one: a version byte,
//! the sender, a kind byte, then the fields as big-endian integers. Every length is
//! checked against what is left of the input before anything is allocated, so a
//! hostile peer cannot make a member allocate more than it sent.

use std::fmt;

use super::log::Entry;

/// A message between two members (Raft §5).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A candidate asks for a vote in `term`; `last_index`/`last_term` describe its log.
    RequestVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    /// The answer to a `RequestVote`.
    Vote { term: u64, granted: bool },
    /// The leader's entries after `prev_index` (empty for a heartbeat) and its commit
    /// index.
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// The answer to an `Append`. On success `last_index` is the highest index known to
    /// match the leader's log; on failure it is where the leader should try next.
    AppendResult {
        term: u64,
        success: bool,
        last_index: u64,
    },
}

/// Bytes that are not a message of this version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Changes whenever the layout below changes, so that mixed versions refuse each other
/// instead of misreading fields.
const VERSION: u8 = 1;

const REQUEST_VOTE: u8 = 1;
const VOTE: u8 = 2;
const APPEND: u8 = 3;
const APPEND_RESULT: u8 = 4;

/// Bytes an entry takes besides its data: term, index and data length.
const ENTRY_HEADER: usize = 8 + 8 + 4;

impl Message {
    /// The term this message was sent in.
    pub fn term(&self) -> u64 {
        match self {
            Message::RequestVote { term, .. }
            | Message::Vote { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResult { term, .. } => *term,
        }
    }

    /// The bytes of this message as sent by `from` (the sender's id travels in them:
    /// the transport has no notion of a sender).
    pub fn encode(&self, from: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        // An id longer than a u16 length cannot be a member's; it is cut rather than
        // refused so that encoding stays infallible, and the receiver then ignores it.
        let from = &from.as_bytes()[..from.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(from.len() as u16).to_be_bytes());
        out.extend_from_slice(from);
        match self {
            Message::RequestVote {
                term,
                last_index,
                last_term,
            } => {
                out.push(REQUEST_VOTE);
                put_u64s(&mut out, &[*term, *last_index, *last_term]);
            }
            Message::Vote { term, granted } => {
                out.push(VOTE);
                put_u64s(&mut out, &[*term]);
                out.push(u8::from(*granted));
            }
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                out.push(APPEND);
                put_u64s(&mut out, &[*term, *prev_index, *prev_term, *commit]);
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for e in entries {
                    put_u64s(&mut out, &[e.term, e.index]);
                    out.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
                    out.extend_from_slice(&e.data);
                }
            }
            Message::AppendResult {
                term,
                success,
                last_index,
            } => {
                out.push(APPEND_RESULT);
                put_u64s(&mut out, &[*term, *last_index]);
                out.push(u8::from(*success));
            }
        }
        out
    }

    /// Reads a message and its sender from `bytes`. Never panics: anything that is not
    /// exactly one well-formed message is a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<(String, Message), DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let from_len = r.u16()? as usize;
        let from = std::str::from_utf8(r.take(from_len)?)
            .map_err(|_| DecodeError("sender is not UTF-8"))?
            .to_owned();
        let msg = match r.u8()? {
            REQUEST_VOTE => Message::RequestVote {
                term: r.u64()?,
                last_index: r.u64()?,
                last_term: r.u64()?,
            },
            VOTE => Message::Vote {
                term: r.u64()?,
                granted: r.bool()?,
            },
            APPEND => {
                let term = r.u64()?;
                let prev_index = r.u64()?;
                let prev_term = r.u64()?;
                let commit = r.u64()?;
                let count = r.u32()? as usize;
                if count > r.0.len() / ENTRY_HEADER {
                    return Err(DecodeError("more entries than bytes"));
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let term = r.u64()?;
                    let index = r.u64()?;
                    let len = r.u32()? as usize;
                    let data = r.take(len)?.to_vec();
                    entries.push(Entry { term, index, data });
                }
                Message::Append {
                    term,
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                }
            }
            APPEND_RESULT => {
                let term = r.u64()?;
                let last_index = r.u64()?;
                let success = r.bool()?;
                Message::AppendResult {
                    term,
                    success,
                    last_index,
                }
            }
            _ => return Err(DecodeError("unknown message kind")),
        };
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok((from, msg))
    }
}

fn put_u64s(out: &mut Vec<u8>, values: &[u64]) {
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The unread rest of the input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("invalid boolean")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::RequestVote {
                term: 3,
                last_index: u64::MAX,
                last_term: 2,
            },
            Message::Vote {
                term: 3,
                granted: true,
            },
            Message::Vote {
                term: 0,
                granted: false,
            },
            Message::Append {
                term: 4,
                prev_index: 10,
                prev_term: 3,
                entries: vec![
                    Entry {
                        term: 4,
                        index: 11,
                        data: Vec::new(),
                    },
                    Entry {
                        term: 4,
                        index: 12,
                        data: b"batch".to_vec(),
                    },
                ],
                commit: 9,
            },
            Message::Append {
                term: 1,
                prev_index: 0,
                prev_term: 0,
                entries: Vec::new(),
                commit: 0,
            },
            Message::AppendResult {
                term: 4,
                success: false,
                last_index: 7,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_with_its_sender() {
        for msg in samples() {
            for from in ["n1", "", "ünïcode"] {
                let bytes = msg.encode(from);
                assert_eq!(Message::decode(&bytes), Ok((from.to_owned(), msg.clone())));
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for msg in samples() {
            let bytes = msg.encode("n1");
            for len in 0..bytes.len() {
                assert!(
                    Message::decode(&bytes[..len]).is_err(),
                    "{msg:?} cut at {len}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Message::decode(&longer), Err(DecodeError("trailing bytes")));
        }
    }

    #[test]
    fn malformed_fields_have_clear_errors() {
        let mut vote = Message::Vote {
            term: 1,
            granted: true,
        }
        .encode("a");
        *vote.last_mut().unwrap() = 2;
        let err = Message::decode(&vote).unwrap_err();
        assert_eq!(err.to_string(), "invalid raft message: invalid boolean");

        let mut version = vote.clone();
        version[0] = 9;
        assert_eq!(
            Message::decode(&version),
            Err(DecodeError("unknown version"))
        );

        let mut sender = Message::Vote {
            term: 1,
            granted: true,
        }
        .encode("a");
        sender[3] = 0xff;
        assert_eq!(
            Message::decode(&sender),
            Err(DecodeError("sender is not UTF-8"))
        );
    }

    #[test]
    fn a_huge_entry_count_is_refused_before_allocating() {
        let mut bytes = Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
        }
        .encode("a");
        let count = bytes.len() - 4;
        bytes[count..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError("more entries than bytes"))
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(index in any::<prop::sample::Index>(), value: u8) {
            for msg in samples() {
                let mut bytes = msg.encode("n1");
                let at = index.index(bytes.len());
                bytes[at] = value;
                if let Ok((_, decoded)) = Message::decode(&bytes) {
                    // A changed byte that still decodes re-encodes to the same bytes.
                    prop_assert_eq!(decoded.encode("n1").len(), bytes.len());
                }
            }
        }
    }
}

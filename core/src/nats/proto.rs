//! The NATS text protocol, both directions.
//!
//! Parsing is a pure function over a byte slice: it returns the first complete operation
//! and how many bytes it used, or `None` when more bytes are needed. Callers keep
//! unconsumed bytes and call again when more arrive, so any split of a stream parses to
//! the same operations. Operation names are matched case-insensitively, as the NATS
//! server does.

use memchr::memchr;

/// The NATS server's default longest control line (the operation line before a payload).
pub const MAX_CONTROL_LINE: usize = 4096;

/// The 16-byte header block of a "no responders" status message.
pub const NO_RESPONDERS_HEADER: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// An operation sent by a client to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    Connect(&'a [u8]),
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        /// Length of the header block at the start of `payload`; `None` for `PUB`.
        header_len: Option<usize>,
        payload: &'a [u8],
    },
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
    Info(&'a [u8]),
    Ok,
    Err(&'a [u8]),
}

/// An operation sent by the server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp<'a> {
    Info(&'a [u8]),
    Msg {
        subject: &'a [u8],
        sid: &'a [u8],
        reply: Option<&'a [u8]>,
        /// Length of the header block at the start of `payload`; `None` for `MSG`.
        header_len: Option<usize>,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    Err(&'a [u8]),
}

/// Why a byte stream is not valid protocol. Each maps to what the NATS server does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a known operation, or a payload not followed by CRLF:
    /// `-ERR 'Unknown Protocol Operation'`, then close.
    #[error("Unknown Protocol Operation")]
    UnknownOp,
    /// The control line is longer than allowed: `-ERR 'Maximum Control Line Exceeded'`.
    #[error("Maximum Control Line Exceeded")]
    ControlLineTooLong,
    /// A payload larger than `max_payload`: `-ERR 'Maximum Payload Violation'`, then close.
    #[error("Maximum Payload Violation")]
    MaxPayload { size: u64, max: usize },
    /// Arguments of a known operation are malformed; the NATS server closes without -ERR.
    #[error("{0} Parse Error")]
    BadArgs(&'static str),
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_line: MAX_CONTROL_LINE,
            max_payload: 1024 * 1024,
        }
    }
}

type Parsed<T> = Result<Option<(T, usize)>, ParseError>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Connect,
    Pub,
    Hpub,
    Sub,
    Unsub,
    Ping,
    Pong,
    Info,
    Ok,
    Err,
    Msg,
    Hmsg,
}

const CLIENT_OPS: &[(&[u8], Op)] = &[
    (b"PUB", Op::Pub),
    (b"HPUB", Op::Hpub),
    (b"SUB", Op::Sub),
    (b"UNSUB", Op::Unsub),
    (b"PING", Op::Ping),
    (b"PONG", Op::Pong),
    (b"CONNECT", Op::Connect),
    (b"INFO", Op::Info),
    (b"+OK", Op::Ok),
    (b"-ERR", Op::Err),
];

const SERVER_OPS: &[(&[u8], Op)] = &[
    (b"MSG", Op::Msg),
    (b"HMSG", Op::Hmsg),
    (b"PING", Op::Ping),
    (b"PONG", Op::Pong),
    (b"INFO", Op::Info),
    (b"+OK", Op::Ok),
    (b"-ERR", Op::Err),
];

/// Reads the operation name at the start of `buf`. `Ok(None)` means the name is a prefix
/// of a known one and more bytes are needed; garbage is refused on its first byte.
fn op_name(buf: &[u8], table: &[(&[u8], Op)]) -> Result<Option<(Op, usize)>, ParseError> {
    let end = buf
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let word = &buf[..end];
    let complete = end < buf.len();
    for (name, op) in table {
        if complete && word.eq_ignore_ascii_case(name) {
            return Ok(Some((*op, end)));
        }
        if !complete && word.len() <= name.len() && word.eq_ignore_ascii_case(&name[..word.len()]) {
            return Ok(None);
        }
    }
    Err(ParseError::UnknownOp)
}

/// Splits the control line after the operation name into at most `N` whitespace-separated
/// arguments; `None` if there are more.
fn split_args<const N: usize>(line: &[u8]) -> Option<([&[u8]; N], usize)> {
    let mut args: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for tok in line
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|t| !t.is_empty())
    {
        if n == N {
            return None;
        }
        args[n] = tok;
        n += 1;
    }
    Some((args, n))
}

/// Parses a decimal size the way the NATS server does: digits only, no sign.
fn parse_size(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

/// Finds the end of the control line; `Ok(None)` if it is incomplete but may still be valid.
fn control_line(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, ParseError> {
    let window = &buf[..buf.len().min(limits.max_control_line + 2)];
    match memchr(b'\n', window) {
        Some(nl) => {
            let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if line_end > limits.max_control_line {
                return Err(ParseError::ControlLineTooLong);
            }
            Ok(Some((line_end, nl + 1)))
        }
        None if buf.len() > limits.max_control_line => Err(ParseError::ControlLineTooLong),
        None => Ok(None),
    }
}

/// Takes `size` payload bytes followed by CRLF starting at `start`.
fn payload(buf: &[u8], start: usize, size: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let end = start + size;
    if buf.len() < end + 2 {
        // A byte that cannot begin the CRLF can be refused before the rest arrives.
        if buf.len() > end && buf[end] != b'\r' {
            return Err(ParseError::UnknownOp);
        }
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::UnknownOp);
    }
    Ok(Some((&buf[start..end], end + 2)))
}

fn check_payload(size: u64, limits: &Limits) -> Result<usize, ParseError> {
    if size > limits.max_payload as u64 {
        return Err(ParseError::MaxPayload {
            size,
            max: limits.max_payload,
        });
    }
    Ok(size as usize)
}

/// Header and total sizes of an `HPUB`/`HMSG`.
fn header_sizes(
    h: &[u8],
    t: &[u8],
    op: &'static str,
    limits: &Limits,
) -> Result<(usize, usize), ParseError> {
    let (h, t) = match (parse_size(h), parse_size(t)) {
        (Some(h), Some(t)) if h <= t => (h, t),
        _ => return Err(ParseError::BadArgs(op)),
    };
    let total = check_payload(t, limits)?;
    Ok((h as usize, total))
}

/// An operation, its argument text and where its body starts.
type Head<'a> = (Op, &'a [u8], usize);

/// The operation, its argument text and where its body starts, once the whole control
/// line is there.
fn head<'a>(
    buf: &'a [u8],
    limits: &Limits,
    table: &[(&[u8], Op)],
) -> Result<Option<Head<'a>>, ParseError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((op, name_len)) = op_name(buf, table)? else {
        return if buf.len() > limits.max_control_line {
            Err(ParseError::ControlLineTooLong)
        } else {
            Ok(None)
        };
    };
    let Some((line_end, body)) = control_line(buf, limits)? else {
        return Ok(None);
    };
    Ok(Some((op, &buf[name_len.min(line_end)..line_end], body)))
}

/// Parses the first client operation in `buf` (server side of a connection).
pub fn parse_client_op<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<ClientOp<'a>> {
    let Some((op, args, body)) = head(buf, limits, CLIENT_OPS)? else {
        return Ok(None);
    };
    let done = |op| Ok(Some((op, body)));
    match op {
        Op::Pub => {
            let (a, n) = split_args::<3>(args).ok_or(ParseError::BadArgs("processPub"))?;
            let (subject, reply, size) = match n {
                2 => (a[0], None, a[1]),
                3 => (a[0], Some(a[1]), a[2]),
                _ => return Err(ParseError::BadArgs("processPub")),
            };
            let size = check_payload(
                parse_size(size).ok_or(ParseError::BadArgs("processPub"))?,
                limits,
            )?;
            let Some((payload, used)) = payload(buf, body, size)? else {
                return Ok(None);
            };
            Ok(Some((
                ClientOp::Pub {
                    subject,
                    reply,
                    header_len: None,
                    payload,
                },
                used,
            )))
        }
        Op::Hpub => {
            let (a, n) = split_args::<4>(args).ok_or(ParseError::BadArgs("processHeaderPub"))?;
            let (subject, reply, h, t) = match n {
                3 => (a[0], None, a[1], a[2]),
                4 => (a[0], Some(a[1]), a[2], a[3]),
                _ => return Err(ParseError::BadArgs("processHeaderPub")),
            };
            let (header_len, total) = header_sizes(h, t, "processHeaderPub", limits)?;
            let Some((payload, used)) = payload(buf, body, total)? else {
                return Ok(None);
            };
            Ok(Some((
                ClientOp::Pub {
                    subject,
                    reply,
                    header_len: Some(header_len),
                    payload,
                },
                used,
            )))
        }
        Op::Sub => {
            let (a, n) = split_args::<3>(args).ok_or(ParseError::BadArgs("processSub"))?;
            match n {
                2 => done(ClientOp::Sub {
                    subject: a[0],
                    queue: None,
                    sid: a[1],
                }),
                3 => done(ClientOp::Sub {
                    subject: a[0],
                    queue: Some(a[1]),
                    sid: a[2],
                }),
                _ => Err(ParseError::BadArgs("processSub")),
            }
        }
        Op::Unsub => {
            let (a, n) = split_args::<2>(args).ok_or(ParseError::BadArgs("processUnsub"))?;
            match n {
                1 => done(ClientOp::Unsub {
                    sid: a[0],
                    max: None,
                }),
                // An unparsable count means "no limit" to the NATS server.
                2 => done(ClientOp::Unsub {
                    sid: a[0],
                    max: parse_size(a[1]),
                }),
                _ => Err(ParseError::BadArgs("processUnsub")),
            }
        }
        Op::Connect => done(ClientOp::Connect(trim(args))),
        Op::Info => done(ClientOp::Info(trim(args))),
        Op::Ping => done(ClientOp::Ping),
        Op::Pong => done(ClientOp::Pong),
        Op::Ok => done(ClientOp::Ok),
        Op::Err => done(ClientOp::Err(trim_quotes(trim(args)))),
        Op::Msg | Op::Hmsg => Err(ParseError::UnknownOp),
    }
}

/// Parses the first server operation in `buf` (client side of a connection).
pub fn parse_server_op<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<ServerOp<'a>> {
    let Some((op, args, body)) = head(buf, limits, SERVER_OPS)? else {
        return Ok(None);
    };
    let done = |op| Ok(Some((op, body)));
    match op {
        Op::Msg => {
            let (a, n) = split_args::<4>(args).ok_or(ParseError::BadArgs("processMsg"))?;
            let (subject, sid, reply, size) = match n {
                3 => (a[0], a[1], None, a[2]),
                4 => (a[0], a[1], Some(a[2]), a[3]),
                _ => return Err(ParseError::BadArgs("processMsg")),
            };
            let size = check_payload(
                parse_size(size).ok_or(ParseError::BadArgs("processMsg"))?,
                limits,
            )?;
            let Some((payload, used)) = payload(buf, body, size)? else {
                return Ok(None);
            };
            Ok(Some((
                ServerOp::Msg {
                    subject,
                    sid,
                    reply,
                    header_len: None,
                    payload,
                },
                used,
            )))
        }
        Op::Hmsg => {
            let (a, n) = split_args::<5>(args).ok_or(ParseError::BadArgs("processHeaderMsg"))?;
            let (subject, sid, reply, h, t) = match n {
                4 => (a[0], a[1], None, a[2], a[3]),
                5 => (a[0], a[1], Some(a[2]), a[3], a[4]),
                _ => return Err(ParseError::BadArgs("processHeaderMsg")),
            };
            let (header_len, total) = header_sizes(h, t, "processHeaderMsg", limits)?;
            let Some((payload, used)) = payload(buf, body, total)? else {
                return Ok(None);
            };
            Ok(Some((
                ServerOp::Msg {
                    subject,
                    sid,
                    reply,
                    header_len: Some(header_len),
                    payload,
                },
                used,
            )))
        }
        Op::Info => done(ServerOp::Info(trim(args))),
        Op::Ping => done(ServerOp::Ping),
        Op::Pong => done(ServerOp::Pong),
        Op::Ok => done(ServerOp::Ok),
        Op::Err => done(ServerOp::Err(trim_quotes(trim(args)))),
        _ => Err(ParseError::UnknownOp),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn trim_quotes(b: &[u8]) -> &[u8] {
    match b {
        [b'\'', inner @ .., b'\''] => inner,
        _ => b,
    }
}

/// Appends the decimal form of `n`.
pub fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `MSG`/`HMSG` for a delivery to subscription `sid`.
pub fn write_msg(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    header_len: Option<usize>,
    payload: &[u8],
) {
    out.reserve(subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + payload.len() + 40);
    out.extend_from_slice(if header_len.is_some() {
        b"HMSG "
    } else {
        b"MSG "
    });
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if let Some(r) = reply {
        out.extend_from_slice(r);
        out.push(b' ');
    }
    if let Some(h) = header_len {
        push_num(out, h as u64);
        out.push(b' ');
    }
    push_num(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends `PUB`/`HPUB`.
pub fn write_pub(
    out: &mut Vec<u8>,
    subject: &[u8],
    reply: Option<&[u8]>,
    header_len: Option<usize>,
    payload: &[u8],
) {
    out.reserve(subject.len() + reply.map_or(0, <[u8]>::len) + payload.len() + 32);
    out.extend_from_slice(if header_len.is_some() {
        b"HPUB "
    } else {
        b"PUB "
    });
    out.extend_from_slice(subject);
    out.push(b' ');
    if let Some(r) = reply {
        out.extend_from_slice(r);
        out.push(b' ');
    }
    if let Some(h) = header_len {
        push_num(out, h as u64);
        out.push(b' ');
    }
    push_num(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends `SUB`.
pub fn write_sub(out: &mut Vec<u8>, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    if let Some(q) = queue {
        out.extend_from_slice(q);
        out.push(b' ');
    }
    out.extend_from_slice(sid);
    out.extend_from_slice(b"\r\n");
}

/// Appends `UNSUB`.
pub fn write_unsub(out: &mut Vec<u8>, sid: &[u8], max: Option<u64>) {
    out.extend_from_slice(b"UNSUB ");
    out.extend_from_slice(sid);
    if let Some(m) = max {
        out.push(b' ');
        push_num(out, m);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends an operation whose argument is a JSON document (`INFO`, `CONNECT`).
pub fn write_json_op(out: &mut Vec<u8>, op: &str, json: &[u8]) {
    out.extend_from_slice(op.as_bytes());
    out.push(b' ');
    out.extend_from_slice(json);
    out.extend_from_slice(b"\r\n");
}

/// Appends `-ERR '<text>'`.
pub fn write_err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";
pub const OK: &[u8] = b"+OK\r\n";

#[cfg(test)]
mod tests;

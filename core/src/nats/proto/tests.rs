use super::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::default()
}

/// Owned form of a client op so that parsed ops can be compared across buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Pub(Vec<u8>, Option<Vec<u8>>, Option<usize>, Vec<u8>),
    Sub(Vec<u8>, Option<Vec<u8>>, Vec<u8>),
    Unsub(Vec<u8>, Option<u64>),
    Connect(Vec<u8>),
    Ping,
    Pong,
}

fn own(op: ClientOp<'_>) -> Owned {
    match op {
        ClientOp::Pub {
            subject,
            reply,
            header_len,
            payload,
        } => Owned::Pub(
            subject.to_vec(),
            reply.map(<[u8]>::to_vec),
            header_len,
            payload.to_vec(),
        ),
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => Owned::Sub(subject.to_vec(), queue.map(<[u8]>::to_vec), sid.to_vec()),
        ClientOp::Unsub { sid, max } => Owned::Unsub(sid.to_vec(), max),
        ClientOp::Connect(j) => Owned::Connect(j.to_vec()),
        ClientOp::Ping => Owned::Ping,
        ClientOp::Pong => Owned::Pong,
        other => panic!("unexpected {other:?}"),
    }
}

fn encode(op: &Owned, out: &mut Vec<u8>) {
    match op {
        Owned::Pub(s, r, h, p) => write_pub(out, s, r.as_deref(), *h, p),
        Owned::Sub(s, q, sid) => write_sub(out, s, q.as_deref(), sid),
        Owned::Unsub(sid, m) => write_unsub(out, sid, *m),
        Owned::Connect(j) => write_json_op(out, "CONNECT", j),
        Owned::Ping => out.extend_from_slice(PING),
        Owned::Pong => out.extend_from_slice(PONG),
    }
}

/// Feeds `chunks` one at a time, keeping unconsumed bytes, as a connection does.
fn parse_chunks(chunks: &[&[u8]]) -> Result<Vec<Owned>, ParseError> {
    let mut buf = Vec::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some((op, used)) = parse_client_op(&buf[pos..], &limits())? {
            ops.push(own(op));
            pos += used;
        }
        buf.drain(..pos);
    }
    assert!(
        buf.is_empty(),
        "left over: {:?}",
        String::from_utf8_lossy(&buf)
    );
    Ok(ops)
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    proptest::string::string_regex("[A-Za-z0-9_\\-]{1,8}")
        .unwrap()
        .prop_map(String::into_bytes)
}

fn subject() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(token(), 1..4).prop_map(|t| t.join(&b'.'))
}

fn op() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (
            subject(),
            proptest::option::of(subject()),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(s, r, p)| Owned::Pub(s, r, None, p)),
        (
            subject(),
            proptest::option::of(subject()),
            0usize..40,
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(s, r, h, mut p)| {
                p.resize(p.len().max(h), b'x');
                Owned::Pub(s, r, Some(h), p)
            }),
        (subject(), proptest::option::of(token()), token())
            .prop_map(|(s, q, sid)| Owned::Sub(s, q, sid)),
        (token(), proptest::option::of(0u64..1_000_000)).prop_map(|(sid, m)| Owned::Unsub(sid, m)),
        Just(Owned::Ping),
        Just(Owned::Pong),
        Just(Owned::Connect(
            br#"{"verbose":false,"pedantic":false}"#.to_vec()
        )),
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(ops in proptest::collection::vec(op(), 1..20)) {
        let mut wire = Vec::new();
        for op in &ops {
            encode(op, &mut wire);
        }
        prop_assert_eq!(parse_chunks(&[&wire]).unwrap(), ops);
    }

    #[test]
    fn any_split_parses_to_the_same_ops(ops in proptest::collection::vec(op(), 1..12), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut wire = Vec::new();
        for op in &ops {
            encode(op, &mut wire);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&wire[last..p]);
            last = p;
        }
        chunks.push(&wire[last..]);
        prop_assert_eq!(parse_chunks(&chunks).unwrap(), ops);
    }

    #[test]
    fn server_ops_round_trip(subject in subject(), sid in token(), reply in proptest::option::of(subject()), payload in proptest::collection::vec(any::<u8>(), 0..300), split in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        write_msg(&mut wire, &subject, &sid, reply.as_deref(), None, &payload);
        let cut = split.index(wire.len());
        prop_assert_eq!(parse_server_op(&wire[..cut], &limits()).unwrap(), None);
        let (op, used) = parse_server_op(&wire, &limits()).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(op, ServerOp::Msg { subject: &subject, sid: &sid, reply: reply.as_deref(), header_len: None, payload: &payload });
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_client_op(&bytes, &limits());
        let _ = parse_server_op(&bytes, &limits());
    }
}

#[test]
fn lowercase_ops_are_accepted() {
    let (op, n) = parse_client_op(b"pub foo 2\r\nhi\r\n", &limits())
        .unwrap()
        .unwrap();
    assert_eq!(n, 15);
    assert_eq!(
        op,
        ClientOp::Pub {
            subject: b"foo",
            reply: None,
            header_len: None,
            payload: b"hi"
        }
    );
    assert_eq!(
        parse_client_op(b"ping\r\n", &limits()).unwrap().unwrap().0,
        ClientOp::Ping
    );
}

#[test]
fn garbage_is_refused_on_its_first_byte() {
    assert_eq!(parse_client_op(b"X", &limits()), Err(ParseError::UnknownOp));
    assert_eq!(
        parse_client_op(b"PX", &limits()),
        Err(ParseError::UnknownOp)
    );
    assert_eq!(parse_client_op(b"PU", &limits()), Ok(None));
    assert_eq!(
        parse_client_op(b"MSG foo 1 2\r\nhi\r\n", &limits()),
        Err(ParseError::UnknownOp)
    );
}

#[test]
fn payload_longer_than_announced_is_refused() {
    assert_eq!(
        parse_client_op(b"PUB foo 2\r\nhello\r\n", &limits()),
        Err(ParseError::UnknownOp)
    );
    // Refused as soon as the byte after the payload is not CR.
    assert_eq!(
        parse_client_op(b"PUB foo 2\r\nhel", &limits()),
        Err(ParseError::UnknownOp)
    );
}

#[test]
fn control_line_limit() {
    let mut long = b"SUB ".to_vec();
    long.resize(5000, b'a');
    assert_eq!(
        parse_client_op(&long, &limits()),
        Err(ParseError::ControlLineTooLong)
    );
    let mut ok = b"SUB ".to_vec();
    ok.resize(4000, b'a');
    assert_eq!(parse_client_op(&ok, &limits()), Ok(None));
}

#[test]
fn max_payload_is_checked_before_the_payload_arrives() {
    assert_eq!(
        parse_client_op(b"PUB foo 1073741824\r\n", &limits()),
        Err(ParseError::MaxPayload {
            size: 1 << 30,
            max: 1 << 20
        })
    );
}

#[test]
fn bad_arguments() {
    assert_eq!(
        parse_client_op(b"PUB foo\r\n", &limits()),
        Err(ParseError::BadArgs("processPub"))
    );
    assert_eq!(
        parse_client_op(b"PUB foo -1\r\n", &limits()),
        Err(ParseError::BadArgs("processPub"))
    );
    assert_eq!(
        parse_client_op(b"SUB foo\r\n", &limits()).unwrap_err(),
        ParseError::BadArgs("processSub")
    );
    assert_eq!(
        parse_client_op(b"HPUB foo 10 5\r\n", &limits()).unwrap_err(),
        ParseError::BadArgs("processHeaderPub")
    );
}

#[test]
fn err_text_is_unquoted() {
    let (op, _) = parse_server_op(b"-ERR 'Authorization Violation'\r\n", &limits())
        .unwrap()
        .unwrap();
    assert_eq!(op, ServerOp::Err(b"Authorization Violation"));
}

//! The client side of the streaming server's connection to an external NATS server
//! (`-ns`): INFO → CONNECT with the configured credentials, subscriptions kept so
//! that every reconnection restores them, keepalive answers, and nothing buffered
//! while no connection is up (OPERATIONS §5).
//!
//! The runtime dials, and hands each new socket to [`Link::attach`]; bytes read go to
//! [`Link::received`], messages come out of [`Link::poll_msg`], bytes to write out of
//! [`Link::take_output`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use crate::log::{Level, LogLine, Origin};
use crate::nats::proto::{self, Limits, ServerOp};
use crate::time::Instant;

/// Keepalive of an established connection, as NATS clients do it: a PING every two
/// minutes, the connection stale when two are left unanswered.
const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(120);
const MAX_PINGS_OUT: u32 = 2;

/// Signs the server's nonce with the NKey of the credentials; returns the signature
/// in URL-safe base64 without padding, as CONNECT carries it.
pub type Signer = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// How the connection authenticates. URL credentials (`nats://user:pass@host`) are
/// resolved by the runtime into `user`/`pass` or `token` before they get here.
#[derive(Clone, Default)]
pub struct Credentials {
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
    /// The user JWT of a credentials file.
    pub jwt: Option<String>,
    /// The public NKey (`U...`), sent unless a JWT is.
    pub nkey: Option<String>,
    /// Signs the nonce when the server sends one and `jwt` or `nkey` is set.
    pub signer: Option<Signer>,
}

impl fmt::Debug for Credentials {
    // Secrets never reach a log through a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("pass", &self.pass.as_ref().map(|_| "[REDACTED]"))
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("jwt", &self.jwt.is_some())
            .field("nkey", &self.nkey)
            .finish()
    }
}

/// Everything a link needs besides its sockets.
#[derive(Clone, Debug, Default)]
pub struct LinkConfig {
    /// The connection name shown by the NATS server (`_NSS-<cid>-general`).
    pub name: String,
    pub credentials: Credentials,
    /// The runtime speaks TLS on this connection.
    pub tls: bool,
}

/// A message on one of the link's subscriptions, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    pub sid: u64,
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// Length of the header block at the start of `payload`; `None` for `MSG`.
    pub header_len: Option<usize>,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket.
    Down,
    /// A socket; the server's INFO has not come yet.
    AwaitingInfo,
    /// CONNECT and PING sent; the PONG confirms the credentials were accepted.
    AwaitingPong,
    Up,
}

/// The parser guards only against garbage: the server enforces its own limits.
const READ_LIMITS: Limits = Limits {
    max_control_line: 64 * 1024,
    max_payload: 1 << 30,
};

/// One client connection to a NATS server, across reconnections.
pub struct Link {
    cfg: LinkConfig,
    state: State,
    /// Subscriptions by sid, restored on every (re)connection.
    subs: BTreeMap<u64, String>,
    rbuf: Vec<u8>,
    rpos: usize,
    /// Bytes of the message last returned by `poll_msg`, consumed on the next call.
    pending: usize,
    out: Vec<u8>,
    /// The socket must be closed (garbage or an error the server closes on).
    close: bool,
    url: String,
    userinfo: Option<(String, Option<String>)>,
    /// PINGs sent on an established connection whose PONG has not come back, in
    /// order: true for those of [`Link::ping`], false for keepalives.
    pings: VecDeque<bool>,
    /// When the next keepalive PING is due, once the connection is up.
    keepalive: Option<Instant>,
    was_up: bool,
    max_payload: Option<usize>,
    /// Why the current or last socket failed, in the NATS client's words.
    error: Option<String>,
    logs: VecDeque<LogLine>,
}

impl Link {
    /// A link without a socket yet.
    pub fn new(cfg: LinkConfig) -> Self {
        Link {
            cfg,
            state: State::Down,
            subs: BTreeMap::new(),
            rbuf: Vec::new(),
            rpos: 0,
            pending: 0,
            out: Vec::new(),
            close: false,
            url: String::new(),
            userinfo: None,
            pings: VecDeque::new(),
            keepalive: None,
            was_up: false,
            max_payload: None,
            error: None,
            logs: VecDeque::new(),
        }
    }

    /// A new socket to the server at `url` (credentials already redacted, for logs).
    /// `userinfo` from the URL (`user:pass@`, or `token@`) replaces the configured
    /// user, password and token on this socket.
    pub fn attach(&mut self, url: &str, userinfo: Option<(String, Option<String>)>) {
        self.userinfo = userinfo;
        self.state = State::AwaitingInfo;
        self.rbuf.clear();
        self.rpos = 0;
        self.pending = 0;
        self.out.clear();
        self.close = false;
        self.error = None;
        self.url = url.to_string();
    }

    /// The socket is gone; what was not written is lost, as the link does not buffer.
    pub fn detach(&mut self) {
        if self.state == State::Up {
            let err = self.error.clone().unwrap_or_else(|| "EOF".into());
            self.log(
                Level::Error,
                format!(
                    "connection {:?} has been disconnected: {err}",
                    self.cfg.name
                ),
            );
        }
        self.state = State::Down;
        self.out.clear();
        self.close = false;
        // The next handshake restores every subscription and ends with its own PING.
        self.pings.clear();
        self.keepalive = None;
    }

    /// Asks the server to confirm everything sent so far (subscriptions in
    /// particular): [`Link::synced`] turns true once it has.
    pub fn ping(&mut self) {
        if self.state == State::Up {
            self.out.extend_from_slice(proto::PING);
            self.pings.push_back(true);
        }
    }

    /// True when the server has processed everything sent before the last
    /// [`Link::ping`] (or the handshake) on the current socket.
    pub fn synced(&self) -> bool {
        self.state == State::Up && !self.pings.contains(&true)
    }

    /// When [`Link::handle_timeout`] is due; at once when a connection just came up
    /// (its keepalive starts counting then).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.state, self.keepalive) {
            (State::Up, None) if !self.close => Some(Instant::from_nanos(0)),
            (_, at) => at,
        }
    }

    /// Time passed: keepalive PINGs go out on an established connection, and one that
    /// leaves too many unanswered is closed as stale.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != State::Up || self.close {
            return;
        }
        match self.keepalive {
            None => self.keepalive = Some(now + PING_INTERVAL),
            Some(at) if at <= now => {
                let out = self.pings.iter().filter(|sync| !**sync).count() as u32;
                if out >= MAX_PINGS_OUT {
                    return self.fail("nats: stale connection".into());
                }
                self.out.extend_from_slice(proto::PING);
                self.pings.push_back(false);
                self.keepalive = Some(now + PING_INTERVAL);
            }
            Some(_) => {}
        }
    }

    /// True once the server accepted CONNECT on the current socket.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// Why the current socket failed before or after the handshake, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// `max_payload` announced by the server's last INFO.
    pub fn max_payload(&self) -> Option<usize> {
        self.max_payload
    }

    /// Subscribes now if connected, and on every later connection.
    pub fn subscribe(&mut self, sid: u64, subject: &str) {
        if self.sent_connect() {
            write_sub(&mut self.out, sid, subject);
        }
        self.subs.insert(sid, subject.to_string());
    }

    /// Forgets subscription `sid`, and tells the server if connected.
    pub fn unsubscribe(&mut self, sid: u64) {
        if self.subs.remove(&sid).is_some() && self.sent_connect() {
            let mut num = Vec::new();
            proto::push_num(&mut num, sid);
            proto::write_unsub(&mut self.out, &num, None);
        }
    }

    /// Queues a publish; returns false when it was dropped for want of a connection.
    pub fn publish(&mut self, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) -> bool {
        if !self.sent_connect() {
            return false;
        }
        proto::write_pub(&mut self.out, subject, reply, None, payload);
        true
    }

    /// Bytes to write to the current socket.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.out))
    }

    /// True once, when the socket must be closed after what was output.
    pub fn take_close(&mut self) -> bool {
        std::mem::take(&mut self.close)
    }

    /// The next line to log (disconnections, reconnections, asynchronous errors).
    pub fn poll_log(&mut self) -> Option<LogLine> {
        self.logs.pop_front()
    }

    /// Bytes read from the socket.
    pub fn received(&mut self, bytes: &[u8]) {
        if self.state == State::Down || self.close {
            return;
        }
        self.rbuf.extend_from_slice(bytes);
    }

    /// The next message on a subscription; protocol operations in between are
    /// handled on the way.
    pub fn poll_msg(&mut self) -> Option<Msg<'_>> {
        self.rpos += std::mem::take(&mut self.pending);
        let at = self.next_msg()?;
        self.pending = at.len;
        let buf = &self.rbuf[self.rpos..];
        Some(Msg {
            sid: at.sid,
            subject: &buf[at.subject.clone()],
            reply: at.reply.clone().map(|r| &buf[r]),
            header_len: at.header_len,
            payload: &buf[at.payload.clone()],
        })
    }

    /// Handles the protocol operations ahead of the next message and returns where
    /// that message lies in the read buffer, or `None` until one is complete.
    fn next_msg(&mut self) -> Option<MsgAt> {
        loop {
            if self.state == State::Down || self.close {
                return None;
            }
            let parsed = proto::parse_server_op(&self.rbuf[self.rpos..], &READ_LIMITS);
            let (op, n) = match parsed {
                Ok(Some(found)) => found,
                Ok(None) => {
                    self.rbuf.drain(..self.rpos);
                    self.rpos = 0;
                    return None;
                }
                Err(e) => {
                    self.fail(format!("nats: {}", e.to_string().to_lowercase()));
                    return None;
                }
            };
            match op {
                ServerOp::Msg {
                    subject,
                    sid,
                    reply,
                    header_len,
                    payload,
                } => {
                    let Some(sid) = parse_sid(sid) else {
                        // Not a sid this link gave out: skipped.
                        self.rpos += n;
                        continue;
                    };
                    // The parts borrow the buffer; their places in it are kept. An
                    // empty part need not point into it, and has no place to keep.
                    let buf = &self.rbuf[self.rpos..];
                    let base = buf.as_ptr() as usize;
                    let range = |part: &[u8]| {
                        (part.as_ptr() as usize)
                            .checked_sub(base)
                            .filter(|start| !part.is_empty() && start + part.len() <= buf.len())
                            .map_or(0..0, |start| start..start + part.len())
                    };
                    return Some(MsgAt {
                        len: n,
                        sid,
                        subject: range(subject),
                        reply: reply.map(range),
                        header_len,
                        payload: range(payload),
                    });
                }
                ServerOp::Info(json) => {
                    let json = json.to_vec();
                    self.rpos += n;
                    self.on_info(&json);
                }
                ServerOp::Ping => {
                    self.rpos += n;
                    self.out.extend_from_slice(proto::PONG);
                }
                ServerOp::Pong => {
                    self.rpos += n;
                    self.on_pong();
                }
                ServerOp::Ok => self.rpos += n,
                ServerOp::Err(text) => {
                    let text = String::from_utf8_lossy(text).into_owned();
                    self.rpos += n;
                    self.on_err(&text);
                }
            }
        }
    }

    fn sent_connect(&self) -> bool {
        matches!(self.state, State::AwaitingPong | State::Up)
    }

    fn on_info(&mut self, json: &[u8]) {
        let info: serde_json::Value = match serde_json::from_slice(json) {
            Ok(v) => v,
            Err(_) => return self.fail("nats: invalid INFO from the server".into()),
        };
        if let Some(mp) = info
            .get("max_payload")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
        {
            self.max_payload = Some(mp);
        }
        // A later INFO announces topology changes; only the first opens the session.
        if self.state != State::AwaitingInfo {
            return;
        }
        let nonce = info.get("nonce").and_then(serde_json::Value::as_str);
        let connect = self.connect_json(nonce);
        proto::write_json_op(&mut self.out, "CONNECT", connect.as_bytes());
        for (sid, subject) in &self.subs {
            write_sub(&mut self.out, *sid, subject);
        }
        self.out.extend_from_slice(proto::PING);
        self.state = State::AwaitingPong;
    }

    fn connect_json(&self, nonce: Option<&str>) -> String {
        let c = &self.cfg.credentials;
        let mut doc = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "tls_required": self.cfg.tls,
            "name": self.cfg.name,
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1,
            "echo": true,
            "headers": true,
            "no_responders": true,
        });
        let obj = doc.as_object_mut().expect("built as an object");
        let mut set = |k: &str, v: &str| {
            obj.insert(k.into(), serde_json::Value::String(v.into()));
        };
        if let Some(jwt) = &c.jwt {
            set("jwt", jwt);
        } else if let Some(nkey) = &c.nkey {
            set("nkey", nkey);
        }
        if let (Some(nonce), Some(sign), true) =
            (nonce, &c.signer, c.jwt.is_some() || c.nkey.is_some())
        {
            set("sig", &sign(nonce.as_bytes()));
        }
        match &self.userinfo {
            Some((user, Some(pass))) => {
                set("user", user);
                set("pass", pass);
            }
            Some((token, None)) => set("auth_token", token),
            None => {
                if let Some(user) = &c.user {
                    set("user", user);
                    set("pass", c.pass.as_deref().unwrap_or_default());
                } else if let Some(token) = &c.token {
                    set("auth_token", token);
                }
            }
        }
        doc.to_string()
    }

    fn on_pong(&mut self) {
        if self.state == State::Up {
            self.pings.pop_front();
            return;
        }
        if self.state != State::AwaitingPong {
            return;
        }
        self.state = State::Up;
        if self.was_up {
            self.log(
                Level::Info,
                format!(
                    "connection {:?} reconnected to NATS Server at {:?}",
                    self.cfg.name, self.url
                ),
            );
        }
        self.was_up = true;
    }

    /// `-ERR` from the server. Permission errors leave the connection up; the
    /// others are followed by the server closing it.
    fn on_err(&mut self, text: &str) {
        let lower = text.to_lowercase();
        if lower.starts_with("permissions violation") {
            self.log(
                Level::Error,
                format!(
                    "Asynchronous error on connection {}, subject : nats: permissions violation: {text}",
                    self.cfg.name
                ),
            );
            return;
        }
        let err = if lower.starts_with("authorization violation")
            || lower.starts_with("user authentication")
        {
            "nats: authorization violation".to_string()
        } else {
            format!("nats: {lower}")
        };
        self.fail(err);
    }

    fn fail(&mut self, err: String) {
        self.error = Some(err);
        self.close = true;
    }

    fn log(&mut self, level: Level, text: String) {
        self.logs.push_back(LogLine {
            origin: Origin::Stream,
            level,
            text,
        });
    }
}

/// Where a parsed message lies, relative to the read position.
struct MsgAt {
    len: usize,
    sid: u64,
    subject: std::ops::Range<usize>,
    reply: Option<std::ops::Range<usize>>,
    header_len: Option<usize>,
    payload: std::ops::Range<usize>,
}

fn parse_sid(sid: &[u8]) -> Option<u64> {
    std::str::from_utf8(sid).ok()?.parse().ok()
}

fn write_sub(out: &mut Vec<u8>, sid: u64, subject: &str) {
    let mut num = Vec::new();
    proto::push_num(&mut num, sid);
    proto::write_sub(out, subject.as_bytes(), None, &num);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a server sends, in whatever pieces: no panic, and either the
        /// link keeps parsing or it asks for the socket to be closed with a reason.
        #[test]
        fn any_bytes_from_the_server(
            chunks in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..64),
                    Just(b"MSG a 1 5\r\nhello\r\n".to_vec()),
                    Just(b"HMSG a 1 _R 12 14\r\nNATS/1.0\r\n\r\nhi\r\n".to_vec()),
                    Just(b"PING\r\n".to_vec()),
                    Just(b"INFO {\"nonce\":\"x\"}\r\n".to_vec()),
                    Just(b"-ERR 'x'\r\n".to_vec()),
                ],
                0..12,
            )
        ) {
            let mut link = Link::new(LinkConfig::default());
            link.subscribe(1, "a");
            link.attach("nats://h:1", None);
            for chunk in chunks {
                link.received(&chunk);
                while let Some(m) = link.poll_msg() {
                    prop_assert!(m.payload.len() <= READ_LIMITS.max_payload);
                }
                if link.take_close() {
                    prop_assert!(link.error().is_some());
                    break;
                }
                link.take_output();
            }
        }
    }

    fn up(link: &mut Link) {
        link.attach("nats://127.0.0.1:4222", None);
        link.received(b"INFO {\"server_id\":\"S\",\"max_payload\":2048}\r\n");
        assert!(link.poll_msg().is_none());
        link.take_output();
        link.received(b"PONG\r\n");
        assert!(link.poll_msg().is_none());
        assert!(link.is_up());
    }

    fn text(link: &mut Link) -> String {
        String::from_utf8(link.take_output().unwrap_or_default()).unwrap()
    }

    #[test]
    fn nothing_is_buffered_while_down() {
        let mut link = Link::new(LinkConfig {
            name: "_NSS-c-general".into(),
            ..Default::default()
        });
        link.subscribe(1, "a");
        assert!(!link.publish(b"x", None, b"lost"));
        assert_eq!(link.take_output(), None);
        up(&mut link);
        assert_eq!(link.max_payload(), Some(2048));
        assert!(link.publish(b"x", None, b"kept"));
        assert_eq!(text(&mut link), "PUB x 4\r\nkept\r\n");
    }

    #[test]
    fn ping_confirms_what_was_sent() {
        let mut link = Link::new(LinkConfig::default());
        link.ping();
        assert!(!link.synced(), "nothing to confirm without a connection");
        up(&mut link);
        assert!(link.synced());
        link.subscribe(1, "a");
        link.ping();
        assert_eq!(text(&mut link), "SUB a 1\r\nPING\r\n");
        assert!(!link.synced());
        link.received(b"PONG\r\n");
        assert!(link.poll_msg().is_none());
        assert!(link.synced());
    }

    #[test]
    fn unanswered_keepalives_make_the_connection_stale() {
        let mut link = Link::new(LinkConfig::default());
        up(&mut link);
        let t0 = Instant::from_nanos(0);
        assert_eq!(link.poll_timeout(), Some(t0));
        link.handle_timeout(t0);
        assert_eq!(link.poll_timeout(), Some(t0 + PING_INTERVAL));
        link.handle_timeout(t0 + PING_INTERVAL);
        assert_eq!(text(&mut link), "PING\r\n");
        // An answer keeps it alive.
        link.received(b"PONG\r\n");
        assert!(link.poll_msg().is_none());
        for n in 2..=3 {
            link.handle_timeout(t0 + PING_INTERVAL * n);
            assert_eq!(text(&mut link), "PING\r\n");
        }
        assert!(!link.take_close());
        link.handle_timeout(t0 + PING_INTERVAL * 4);
        assert!(link.take_close());
        assert_eq!(link.error(), Some("nats: stale connection"));
    }

    #[test]
    fn messages_and_pings_split_anywhere() {
        let mut link = Link::new(LinkConfig::default());
        link.subscribe(7, "a.>");
        up(&mut link);
        let stream =
            b"MSG a.b 7 _INBOX.r 3\r\nabc\r\nPING\r\nHMSG a.c 7 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let mut got = Vec::new();
        for chunk in stream.chunks(5) {
            link.received(chunk);
            while let Some(m) = link.poll_msg() {
                got.push((
                    m.sid,
                    String::from_utf8_lossy(m.subject).into_owned(),
                    m.reply.map(|r| String::from_utf8_lossy(r).into_owned()),
                    m.header_len,
                    m.payload.len(),
                ));
            }
        }
        assert_eq!(
            got,
            vec![
                (7, "a.b".into(), Some("_INBOX.r".into()), None, 3),
                (7, "a.c".into(), None, Some(12), 14),
            ]
        );
        assert_eq!(text(&mut link), "PONG\r\n");
    }

    #[test]
    fn garbage_closes_with_an_error_and_reconnects_resubscribe() {
        let mut link = Link::new(LinkConfig {
            name: "n".into(),
            ..Default::default()
        });
        link.subscribe(1, "a");
        link.subscribe(2, "b");
        up(&mut link);
        link.unsubscribe(1);
        assert_eq!(text(&mut link), "UNSUB 1\r\n");
        link.received(b"HELLO\r\n");
        assert!(link.poll_msg().is_none());
        assert!(link.take_close());
        assert_eq!(link.error(), Some("nats: unknown protocol operation"));
        link.detach();
        let line = link.poll_log().unwrap();
        assert_eq!(
            line.text,
            "connection \"n\" has been disconnected: nats: unknown protocol operation"
        );
        link.attach("nats://[REDACTED]@h:1", Some(("tok".into(), None)));
        link.received(b"INFO {}\r\n");
        assert!(link.poll_msg().is_none());
        let sent = text(&mut link);
        assert!(sent.ends_with("\r\nSUB b 2\r\nPING\r\n"), "{sent}");
        assert!(sent.contains("\"auth_token\":\"tok\""), "{sent}");
        link.received(b"PONG\r\n");
        assert!(link.poll_msg().is_none());
        assert_eq!(
            link.poll_log().unwrap().text,
            "connection \"n\" reconnected to NATS Server at \"nats://[REDACTED]@h:1\""
        );
    }

    #[test]
    fn connect_carries_the_credentials() {
        let signer: Signer = Arc::new(|nonce: &[u8]| format!("signed-{}", nonce.len()));
        let mut link = Link::new(LinkConfig {
            name: "n".into(),
            credentials: Credentials {
                user: Some("u".into()),
                pass: Some("p".into()),
                nkey: Some("UABC".into()),
                signer: Some(signer),
                ..Default::default()
            },
            tls: true,
        });
        link.attach("u", None);
        link.received(b"INFO {\"nonce\":\"abcd\"}\r\n");
        assert!(link.poll_msg().is_none());
        let sent = text(&mut link);
        let json: serde_json::Value = serde_json::from_str(
            sent.lines()
                .next()
                .unwrap()
                .strip_prefix("CONNECT ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["name"], "n");
        assert_eq!(json["user"], "u");
        assert_eq!(json["pass"], "p");
        assert_eq!(json["nkey"], "UABC");
        assert_eq!(json["sig"], "signed-4");
        assert_eq!(json["tls_required"], true);
        assert_eq!(json["verbose"], false);
        assert!(json.get("auth_token").is_none());
        link.received(b"-ERR 'Authorization Violation'\r\n");
        assert!(link.poll_msg().is_none());
        assert!(link.take_close());
        assert!(!link.is_up());
        assert_eq!(link.error(), Some("nats: authorization violation"));
    }
}

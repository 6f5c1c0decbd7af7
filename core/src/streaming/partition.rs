//! Channel partitioning (BEHAVIOUR §12, PROTOCOL §7.2).
//!
//! Several servers with the same cluster ID share the load, each owning the channels
//! named by its per-channel limits entries. At startup a server announces its list on
//! `_STAN.part.<cid>` and waits until a second passes without a reply; any peer that
//! owns one of those channels answers with its name, and the start fails. Publishes
//! and subscriptions reach every server, so requests for channels a server does not
//! own are left to the owner, and a server may see a client's publish or subscription
//! before that client's connect: it waits a little for the connect before refusing.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use prost::Message;

use super::pb::{CtrlMsg, CtrlMsgType, SubscriptionRequest};
use super::server::{sid, Action, Streaming};
use crate::gofmt::go_quote;
use crate::log::Level;
use crate::time::{Instant, Now};

/// Silence after the last reply that ends the startup announcement, and the wait for a
/// client's connect before its publish or subscription is refused.
const QUIET: Duration = Duration::from_secs(1);
const CLIENT_WAIT: Duration = Duration::from_secs(1);
/// Size of the cache of refused client ID / connection ID pairs, and how many of the
/// oldest go when it is full.
const KNOWN_INVALID_MAX: usize = 256;
const KNOWN_INVALID_PRUNE: usize = 33;

/// The error of `partitioning: true` without any per-channel entry.
pub const NO_CONFIGURED_CHANNEL: &str = "stan: no configured channel";

#[derive(Debug)]
enum Announce {
    Idle,
    /// The list went out; the start goes on once no reply came before `quiet_until`.
    Waiting {
        quiet_until: Instant,
    },
    Done,
}

/// A request parked until its client registers or the wait ends.
#[derive(Debug)]
struct Parked {
    client_id: String,
    conn_id: Vec<u8>,
    reply: Option<String>,
    payload: Vec<u8>,
    /// Set when the entry reaches the head of its queue: entries wait one at a time,
    /// in arrival order, so that a client's messages keep their order.
    until: Option<Instant>,
}

/// The partitioning part of a streaming server.
#[derive(Debug)]
pub(crate) struct Partitions {
    /// The per-channel entry names (literal or wildcard), in name order.
    channels: Vec<String>,
    subject: String,
    inbox: String,
    max_payload: usize,
    announce: Announce,
    publishes: VecDeque<Parked>,
    subscriptions: VecDeque<Parked>,
    known_invalid: KnownInvalid,
}

impl Partitions {
    pub(crate) fn new(
        cluster_id: &str,
        channels: Vec<String>,
        inbox: String,
        max_payload: usize,
    ) -> Partitions {
        Partitions {
            channels,
            subject: format!("_STAN.part.{cluster_id}"),
            inbox,
            max_payload,
            announce: Announce::Idle,
            publishes: VecDeque::new(),
            subscriptions: VecDeque::new(),
            known_invalid: KnownInvalid::default(),
        }
    }

    pub(crate) fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload;
    }

    /// The configured entries, each the suffix of one publish subscription.
    pub(crate) fn channels(&self) -> &[String] {
        &self.channels
    }

    /// True when one of this server's entries covers `channel`.
    pub(crate) fn owns(&self, channel: &str) -> bool {
        self.channels.iter().any(|p| pattern_matches(p, channel))
    }

    pub(crate) fn is_announcing(&self) -> bool {
        matches!(self.announce, Announce::Waiting { .. })
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        let announce = match self.announce {
            Announce::Waiting { quiet_until } => Some(quiet_until),
            _ => None,
        };
        [
            announce,
            self.publishes.front().and_then(|p| p.until),
            self.subscriptions.front().and_then(|p| p.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Encodes `channels` as announcement payloads (PROTOCOL §7.2): each name as a 2-byte
/// little-endian length and its bytes, as many names per request as fit in
/// `max_payload` together with the rest of the message (counted generously, as the Go
/// server does, so that both split a list the same way).
pub fn encode_channel_lists(
    server_id: &str,
    channels: &[String],
    max_payload: usize,
) -> Vec<Vec<u8>> {
    let mut msg = CtrlMsg {
        msg_type: CtrlMsgType::Partitioning as i32,
        server_id: server_id.to_string(),
        data: Vec::new(),
        ref_id: String::new(),
    };
    let header = msg.encoded_len() + 1 + 8;
    let mut out = Vec::new();
    let mut rest = channels;
    while !rest.is_empty() {
        let mut size = header;
        let mut data = Vec::new();
        let mut count = 0;
        for c in rest {
            let needed = 2 + c.len();
            // A name too long for any request still goes, alone, rather than never.
            if size + needed > max_payload && count > 0 {
                break;
            }
            data.extend_from_slice(&(c.len() as u16).to_le_bytes());
            data.extend_from_slice(c.as_bytes());
            size += needed;
            count += 1;
        }
        rest = &rest[count..];
        msg.data = data;
        out.push(msg.encode_to_vec());
    }
    out
}

/// Decodes an announcement's channel list; the errors are the Go server's texts.
pub fn decode_channel_list(data: &[u8]) -> Result<Vec<String>, String> {
    let mut channels = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if pos + 2 > data.len() {
            return Err(format!(
                "unable to decode size, pos={pos} len={}",
                data.len()
            ));
        }
        let len = usize::from(u16::from_le_bytes([data[pos], data[pos + 1]]));
        pos += 2;
        let end = pos + len;
        if end > data.len() {
            return Err(format!(
                "unable to decode channel, pos={pos} len={len} max={} (string={})",
                data.len(),
                String::from_utf8_lossy(&data[pos..])
            ));
        }
        channels.push(String::from_utf8_lossy(&data[pos..end]).into_owned());
        pos = end;
    }
    Ok(channels)
}

/// Whether subject-tree `pattern` covers `name`. Wildcards count only in the pattern:
/// a `*` or `>` token in `name` is an ordinary token, as a peer's wildcard entry is
/// when checked against this server's entries.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut names = name.split('.');
    for p in pattern.split('.') {
        match (p, names.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(n)) if p == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

/// The first name that makes two servers' channel sets overlap: first one of
/// `theirs` that one of `ours` covers, else one of `ours` that one of `theirs` covers.
pub fn first_conflict<'a>(ours: &'a [String], theirs: &'a [String]) -> Option<&'a str> {
    let covered = |by: &[String], name: &str| by.iter().any(|p| pattern_matches(p, name));
    theirs
        .iter()
        .find(|c| covered(ours, c))
        .or_else(|| ours.iter().find(|c| covered(theirs, c)))
        .map(String::as_str)
}

/// Client ID / connection ID pairs already refused after a wait: refused at once
/// next time rather than each costing another wait.
#[derive(Debug, Default)]
struct KnownInvalid {
    order: VecDeque<(String, Vec<u8>)>,
    set: BTreeSet<(String, Vec<u8>)>,
}

impl KnownInvalid {
    fn contains(&self, key: &(String, Vec<u8>)) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: (String, Vec<u8>)) {
        if self.set.contains(&key) {
            return;
        }
        if self.set.len() >= KNOWN_INVALID_MAX {
            for _ in 0..KNOWN_INVALID_PRUNE {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
    }
}

/// Which parked queue.
#[derive(Clone, Copy)]
enum Queue {
    Publishes,
    Subscriptions,
}

impl Streaming {
    /// Sends the channel list and starts waiting for objections; the start goes on in
    /// [`Streaming::partition_timeout`] once they stop coming.
    pub(crate) fn announce_partitions(&mut self, now: Now) -> Result<(), String> {
        let server_id = self.server_id.clone();
        let Some(p) = self.partitions.as_mut() else {
            return Ok(());
        };
        if p.channels.is_empty() {
            return Err(NO_CONFIGURED_CHANNEL.into());
        }
        p.announce = Announce::Waiting {
            quiet_until: now.mono + QUIET,
        };
        let (subject, inbox) = (p.subject.clone(), p.inbox.clone());
        let requests = encode_channel_lists(&server_id, &p.channels, p.max_payload);
        self.actions.push_back(Action::Subscribe {
            sid: sid::PARTITIONS,
            subject: subject.clone(),
        });
        self.actions.push_back(Action::Subscribe {
            sid: sid::PARTITIONS_INBOX,
            subject: inbox.clone(),
        });
        for payload in requests {
            self.actions.push_back(Action::Publish {
                subject: subject.as_str().into(),
                reply: Some(inbox.clone()),
                payload,
            });
        }
        Ok(())
    }

    /// A reply to this server's announcement: an objection stops the start.
    pub(crate) fn on_partitions_reply(&mut self, now: Now, payload: &[u8]) {
        let Some(p) = self.partitions.as_mut() else {
            return;
        };
        if !p.is_announcing() {
            return;
        }
        p.announce = Announce::Waiting {
            quiet_until: now.mono + QUIET,
        };
        match CtrlMsg::decode(payload) {
            Err(e) => self.partitions_failed(format!("unable to decode partitioning reply: {e}")),
            Ok(reply) if !reply.data.is_empty() => self.partitions_failed(format!(
                "channel {} causes conflict with channels on server {}",
                go_quote(&String::from_utf8_lossy(&reply.data)),
                go_quote(&reply.server_id)
            )),
            Ok(_) => {}
        }
    }

    fn partitions_failed(&mut self, error: String) {
        if let Some(p) = self.partitions.as_mut() {
            p.announce = Announce::Done;
        }
        self.fail(format!("Failed to start: {error}"));
    }

    /// Another server's announcement: answer with the first channel both would own.
    pub(crate) fn on_partitions_request(&mut self, reply: Option<String>, payload: &[u8]) {
        let Some(p) = self.partitions.as_ref() else {
            return;
        };
        if payload.is_empty() {
            return;
        }
        let req = match CtrlMsg::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                return self.log(
                    Level::Error,
                    format!("Error processing partitioning request: {e}"),
                )
            }
        };
        if req.server_id == self.server_id {
            return;
        }
        let theirs = match decode_channel_list(&req.data) {
            Ok(c) => c,
            Err(e) => {
                return self.log(
                    Level::Error,
                    format!("Error processing partitioning request: {e}"),
                )
            }
        };
        let conflict = first_conflict(&p.channels, &theirs).unwrap_or("");
        let answer = CtrlMsg {
            msg_type: CtrlMsgType::Partitioning as i32,
            server_id: self.server_id.clone(),
            data: conflict.as_bytes().to_vec(),
            ref_id: String::new(),
        };
        self.respond(&reply, &answer);
    }

    pub(crate) fn partition_deadline(&self) -> Option<Instant> {
        self.partitions.as_ref().and_then(Partitions::deadline)
    }

    pub(crate) fn partition_timeout(&mut self, now: Now) {
        let Some(p) = self.partitions.as_mut() else {
            return;
        };
        if let Announce::Waiting { quiet_until } = p.announce {
            if quiet_until <= now.mono {
                p.announce = Announce::Done;
                if let Err(e) = self.recover_and_serve(now) {
                    self.fail(format!("Failed to start: {e}"));
                }
            }
        }
        self.drain_parked(now, Queue::Publishes);
        self.drain_parked(now, Queue::Subscriptions);
    }

    /// True when the server owns no entry covering `channel` and must leave the
    /// request to the server that does.
    pub(crate) fn not_owned(&self, channel: &str) -> bool {
        self.partitions.as_ref().is_some_and(|p| !p.owns(channel))
    }

    /// Partitioning mode only: parks a publish from an unknown publisher, or one that
    /// arrives while others wait. False outside partitioning mode, or when the
    /// publish can go on now.
    pub(crate) fn park_publish(
        &mut self,
        now: Now,
        reply: Option<&str>,
        payload: &[u8],
        client_id: &str,
        conn_id: &[u8],
        known: bool,
    ) -> bool {
        let Some(p) = self.partitions.as_mut() else {
            return false;
        };
        if known && p.publishes.is_empty() {
            return false;
        }
        p.publishes.push_back(Parked {
            client_id: client_id.to_string(),
            conn_id: conn_id.to_vec(),
            reply: reply.map(str::to_string),
            payload: payload.to_vec(),
            until: None,
        });
        self.drain_parked(now, Queue::Publishes);
        true
    }

    /// Partitioning mode only: parks a subscription request of an unknown client (or
    /// one arriving while others wait); see [`Streaming::park_publish`].
    pub(crate) fn park_subscription(
        &mut self,
        now: Now,
        reply: &Option<String>,
        req: &SubscriptionRequest,
    ) -> bool {
        let known = self.clients.contains_key(&req.client_id);
        let Some(p) = self.partitions.as_mut() else {
            return false;
        };
        if known && p.subscriptions.is_empty() {
            return false;
        }
        p.subscriptions.push_back(Parked {
            client_id: req.client_id.clone(),
            conn_id: Vec::new(),
            reply: reply.clone(),
            payload: req.encode_to_vec(),
            until: None,
        });
        self.drain_parked(now, Queue::Subscriptions);
        true
    }

    /// A client registered: requests waiting for it go on.
    pub(crate) fn client_registered(&mut self, now: Now) {
        if self.partitions.is_some() {
            self.drain_parked(now, Queue::Publishes);
            self.drain_parked(now, Queue::Subscriptions);
        }
    }

    fn drain_parked(&mut self, now: Now, queue: Queue) {
        loop {
            let Some(p) = self.partitions.as_mut() else {
                return;
            };
            let q = match queue {
                Queue::Publishes => &mut p.publishes,
                Queue::Subscriptions => &mut p.subscriptions,
            };
            let Some(head) = q.front_mut() else {
                return;
            };
            let known = match queue {
                Queue::Publishes if !head.conn_id.is_empty() => {
                    self.conn_ids.contains_key(&head.conn_id)
                }
                _ => self.clients.contains_key(&head.client_id),
            };
            let key = (head.client_id.clone(), head.conn_id.clone());
            let refused = !known && p.known_invalid.contains(&key);
            if !known && !refused {
                match head.until {
                    None => {
                        head.until = Some(now.mono + CLIENT_WAIT);
                        return;
                    }
                    Some(until) if until > now.mono => return,
                    Some(_) => p.known_invalid.insert(key),
                }
            }
            let entry = q.pop_front().expect("head checked above");
            match queue {
                Queue::Publishes if known => {
                    self.publish_validated(now, entry.reply.as_deref(), &entry.payload)
                }
                Queue::Publishes => self.refuse_publish(entry.reply.as_deref(), &entry.payload),
                Queue::Subscriptions => {
                    let req = SubscriptionRequest::decode(entry.payload.as_slice())
                        .expect("encoded when parked");
                    if known {
                        self.subscribe_validated(now, req, entry.reply);
                    } else {
                        self.log(
                            Level::Error,
                            format!(
                                "[Client:{}] Rejecting subscription on {}: connection not created yet",
                                req.client_id,
                                go_quote(&req.subject)
                            ),
                        );
                        self.refuse_subscription(&entry.reply);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_match_as_subject_trees() {
        assert!(pattern_matches("orders.>", "orders.eu"));
        assert!(pattern_matches("orders.>", "orders.eu.paris"));
        assert!(!pattern_matches("orders.>", "orders"));
        assert!(pattern_matches("*.eu", "orders.eu"));
        assert!(!pattern_matches("*.eu", "orders.us"));
        assert!(pattern_matches("foo", "foo"));
        assert!(!pattern_matches("foo", "foo.bar"));
        assert!(!pattern_matches("foo.bar", "foo"));
        // A peer's wildcard entry is checked as plain tokens.
        assert!(pattern_matches("orders.>", "orders.*"));
        assert!(!pattern_matches("orders.eu", "orders.*"));
    }

    #[test]
    fn conflicts_look_at_their_names_first_then_ours() {
        let ours = names(&["a", "orders.>"]);
        assert_eq!(
            first_conflict(&ours, &names(&["b", "orders.eu"])),
            Some("orders.eu")
        );
        // Their wildcard covers one of our literal names.
        assert_eq!(
            first_conflict(&names(&["x.y"]), &names(&["x.*"])),
            Some("x.y")
        );
        assert_eq!(first_conflict(&ours, &names(&["b", "c.>"])), None);
    }

    #[test]
    fn lists_round_trip_and_split_on_max_payload() {
        let list = names(&["foo", "bar.>", "baz"]);
        let one = encode_channel_lists("SRV", &list, 1024 * 1024);
        assert_eq!(one.len(), 1);
        let msg = CtrlMsg::decode(one[0].as_slice()).unwrap();
        assert_eq!(msg.msg_type, CtrlMsgType::Partitioning as i32);
        assert_eq!(msg.server_id, "SRV");
        assert_eq!(&msg.data[..5], &[3, 0, b'f', b'o', b'o']);
        assert_eq!(decode_channel_list(&msg.data).unwrap(), list);
        // Header: 7 bytes of CtrlMsg plus 9; then room for 12 bytes of names.
        let split = encode_channel_lists("SRV", &list, 16 + 12);
        let decoded: Vec<Vec<String>> = split
            .iter()
            .map(|m| decode_channel_list(&CtrlMsg::decode(m.as_slice()).unwrap().data).unwrap())
            .collect();
        assert_eq!(decoded, vec![names(&["foo", "bar.>"]), names(&["baz"])]);
        assert_eq!(
            decode_channel_list(&[5, 0, b'a']).unwrap_err(),
            "unable to decode channel, pos=2 len=5 max=3 (string=a)"
        );
        assert_eq!(
            decode_channel_list(&[1, 0, b'a', 1]).unwrap_err(),
            "unable to decode size, pos=3 len=4"
        );
    }

    #[test]
    fn refused_pairs_are_cached_and_pruned_oldest_first() {
        let mut k = KnownInvalid::default();
        for i in 0..KNOWN_INVALID_MAX {
            k.insert((format!("c{i}"), Vec::new()));
        }
        assert!(k.contains(&("c0".into(), Vec::new())));
        k.insert(("new".into(), Vec::new()));
        assert_eq!(k.set.len(), KNOWN_INVALID_MAX - KNOWN_INVALID_PRUNE + 1);
        assert!(!k.contains(&("c32".into(), Vec::new())));
        assert!(k.contains(&("c33".into(), Vec::new())));
        assert!(k.contains(&("new".into(), Vec::new())));
    }
}

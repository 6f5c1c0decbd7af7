//! What the FILE store brought back after each crash, against what it acknowledged.
//!
//! - With `--file_sync` nothing acknowledged is lost: every message whose PubAck a
//!   client received before the crash is recovered, and the store never refuses to
//!   start.
//! - Without it a crash may lose what was written since the last sync of the disk, but
//!   nothing that was acknowledged before that sync, nor anything an earlier recovery
//!   brought back; a torn last record may make the store refuse once, after which it
//!   starts with `--file_truncate_bad_eof`.
//! - Either way a channel comes back as a run of readable sequences, each publisher's
//!   messages in the order it sent them (what each sequence holds is checked with the
//!   deliveries, in `delivery`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{fmt_t, Model};
use crate::journal::{Ev, Inc};
use crate::plan::StoreKind;

struct Pub {
    channel: String,
    epoch: usize,
    inc: Inc,
    /// Journal position of the publish.
    sent: usize,
    /// Journal position of its PubAck, if one came back without error.
    acked: Option<usize>,
}

pub(super) fn check(m: &mut Model<'_>) {
    let StoreKind::File { sync } = m.plan.store else {
        return;
    };
    let mut found: Vec<(Duration, String)> = Vec::new();
    let mut pubs: BTreeMap<&str, Pub> = BTreeMap::new();
    // Journal positions of disk syncs, per server process.
    let mut syncs: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut epoch = 0;
    for (i, e) in m.entries.iter().enumerate() {
        match &e.ev {
            Ev::ServerDown => epoch += 1,
            Ev::Published {
                inc,
                channel,
                payload,
            } => {
                pubs.insert(
                    payload,
                    Pub {
                        channel: channel.clone(),
                        epoch,
                        inc: *inc,
                        sent: i,
                        acked: None,
                    },
                );
            }
            Ev::PubAck {
                payload,
                error: None,
                ..
            } => {
                if let Some(p) = pubs.get_mut(payload.as_str()) {
                    p.acked = Some(i);
                }
            }
            Ev::DiskSynced => syncs.entry(epoch).or_default().push(i),
            // Without --file_sync the server starts again with truncation; should that
            // fail too, the server host fails and with it the run.
            Ev::StoreRefused { error } if sync => {
                found.push((
                    e.at,
                    format!("the store refused to start with --file_sync: {error}"),
                ));
            }
            _ => {}
        }
    }
    let epochs = m.downs.len();
    for e in 1..=epochs {
        let Some(up) = m.ups.get(e - 1).copied() else {
            continue;
        };
        let empty = BTreeMap::new();
        let now = m.recovered.get(&e).unwrap_or(&empty);
        let before = m.recovered.get(&(e - 1)).unwrap_or(&empty);
        let at = now.values().map(|r| r.at).min().unwrap_or(up);
        // Readable and gapless.
        for (channel, r) in now {
            let mut expect = r.msgs.first().map_or(1, |(s, _)| *s);
            for (seq, payload) in &r.msgs {
                if *seq != expect || payload.is_none() {
                    found.push((
                        r.at,
                        format!("the store recovered {channel} with sequence {seq} missing or unreadable"),
                    ));
                    break;
                }
                expect += 1;
            }
            if expect != r.last + 1 && r.last > 0 && !r.msgs.is_empty() {
                found.push((
                    r.at,
                    format!(
                        "the store recovered {channel} up to {} but claims {}",
                        expect - 1,
                        r.last
                    ),
                ));
            }
        }
        let recovered: BTreeSet<(&str, &str)> = now
            .iter()
            .flat_map(|(c, r)| {
                r.msgs
                    .iter()
                    .filter_map(move |(_, p)| p.as_deref().map(|p| (c.as_str(), p)))
            })
            .collect();
        let kept_before: BTreeSet<(&str, &str)> = before
            .iter()
            .flat_map(|(c, r)| {
                r.msgs
                    .iter()
                    .filter_map(move |(_, p)| p.as_deref().map(|p| (c.as_str(), p)))
            })
            .collect();
        // Nothing the store promised is gone.
        let last_sync = syncs.get(&(e - 1)).and_then(|v| v.last().copied());
        let mut lost: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (payload, p) in &pubs {
            let Some(acked) = p.acked else { continue };
            if p.epoch >= e || recovered.contains(&(p.channel.as_str(), payload)) {
                continue;
            }
            let owed = if sync {
                true
            } else {
                kept_before.contains(&(p.channel.as_str(), payload))
                    || (p.epoch == e - 1 && last_sync.is_some_and(|s| s > acked))
            };
            if owed {
                lost.entry(&p.channel).or_default().push(payload);
            }
        }
        for (channel, payloads) in lost {
            let why = if sync {
                "acknowledged with --file_sync"
            } else {
                "acknowledged before a sync"
            };
            let shown: Vec<&str> = payloads.iter().take(4).copied().collect();
            found.push((
                at,
                format!(
                    "the store lost {} message(s) of {channel} {why} when the server crashed at {}: {}{}",
                    payloads.len(),
                    fmt_t(m.downs[e - 1]),
                    shown.join(", "),
                    if payloads.len() > shown.len() { ", ..." } else { "" }
                ),
            ));
        }
        // Each publisher's messages in the order it sent them.
        for (channel, r) in now {
            let mut last_of: BTreeMap<Inc, (u64, &str, usize)> = BTreeMap::new();
            for (seq, payload) in &r.msgs {
                let Some(payload) = payload.as_deref() else {
                    continue;
                };
                let Some(p) = pubs.get(payload) else { continue };
                if let Some((prev_seq, prev, prev_sent)) = last_of.get(&p.inc) {
                    if *prev_sent > p.sent {
                        found.push((
                            r.at,
                            format!(
                                "the store recovered {channel} with {payload} (seq {seq}) after {prev} (seq {prev_seq}), which {} published later",
                                p.inc
                            ),
                        ));
                        break;
                    }
                }
                last_of.insert(p.inc, (*seq, payload, p.sent));
            }
        }
    }
    found.sort_by_key(|(t, _)| *t);
    for (t, v) in found {
        m.violation(t, v);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::check;
    use crate::journal::{Entry, Ev, Inc};
    use crate::plan::{Limits, Plan, StoreKind};

    const P: Inc = Inc { actor: 1, n: 1 };

    fn at(ms: u64, ev: Ev) -> Entry {
        Entry {
            at: Duration::from_millis(ms),
            ev,
        }
    }

    fn acked(t: u64, payload: &str) -> Vec<Entry> {
        vec![
            at(
                t,
                Ev::Published {
                    inc: P,
                    channel: "ch".into(),
                    payload: payload.into(),
                },
            ),
            at(
                t + 5,
                Ev::PubAck {
                    inc: P,
                    payload: payload.into(),
                    error: None,
                },
            ),
        ]
    }

    fn recovered(t: u64, msgs: &[&str]) -> Entry {
        at(
            t,
            Ev::StoreRecovered {
                channel: "ch".into(),
                first: 1,
                last: msgs.len() as u64,
                msgs: msgs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i as u64 + 1, Some(p.to_string())))
                    .collect(),
            },
        )
    }

    /// Judges a journal of a run with the FILE store.
    fn judge(sync: bool, mut j: Vec<Entry>) -> Vec<String> {
        j.push(at(
            19_950,
            Ev::ServerFinal {
                client_ids: Vec::new(),
            },
        ));
        let plan = Plan {
            scenario: "test",
            seed: 0,
            store: StoreKind::File { sync },
            limits: Limits::default(),
            actors: Vec::new(),
            faults: Vec::new(),
            workload_end: Duration::from_secs(10),
            end: Duration::from_secs(20),
            options: Default::default(),
        };
        check(&plan, &j)
    }

    /// p1 and p2 acknowledged, a sync between them when asked, a crash at 3 s and a
    /// restart at 4 s that recovers `msgs`.
    fn crash_run(sync: bool, synced_between: bool, msgs: &[&str]) -> Vec<String> {
        let mut j = acked(1000, "p1");
        if synced_between {
            j.push(at(1500, Ev::DiskSynced));
        }
        j.extend(acked(2000, "p2"));
        j.push(at(3000, Ev::ServerDown));
        j.push(at(4000, Ev::ServerUp));
        j.push(recovered(4000, msgs));
        judge(sync, j)
    }

    #[test]
    fn with_file_sync_every_acknowledged_message_survives() {
        assert_eq!(crash_run(true, false, &["p1", "p2"]), Vec::<String>::new());
        let v = crash_run(true, false, &["p1"]);
        assert!(
            v.iter()
                .any(|v| v.contains("the store lost 1 message(s) of ch")),
            "{v:?}"
        );
    }

    #[test]
    fn without_file_sync_only_what_was_synced_must_survive() {
        assert_eq!(crash_run(false, false, &[]), Vec::<String>::new());
        assert_eq!(crash_run(false, true, &["p1"]), Vec::<String>::new());
        let v = crash_run(false, true, &[]);
        assert!(v.iter().any(|v| v.contains("the store lost 1")), "{v:?}");
    }

    #[test]
    fn a_recovered_channel_is_gapless_and_in_publish_order() {
        let v = crash_run(true, false, &["p2", "p1"]);
        assert!(
            v.iter().any(|v| v.contains("which c1#1 published later")),
            "{v:?}"
        );
    }

    #[test]
    fn recovered_messages_must_have_been_published_there() {
        let v = crash_run(true, false, &["p1", "p2", "p9"]);
        assert!(v.iter().any(|v| v.contains("nobody published")), "{v:?}");
    }

    #[test]
    fn a_refusal_fails_only_with_file_sync() {
        let mut j = acked(1000, "p1");
        j.push(at(3000, Ev::ServerDown));
        j.push(at(4000, Ev::ServerUp));
        j.push(at(
            4000,
            Ev::StoreRefused {
                error: "unexpected EOF".into(),
            },
        ));
        j.push(recovered(4000, &["p1"]));
        for (sync, fails) in [(true, true), (false, false)] {
            let v = judge(sync, j.clone());
            assert_eq!(v.iter().any(|v| v.contains("refused")), fails, "{v:?}");
        }
    }
}

//! One Raft member's rules, each driven by hand: elections, votes, replication,
//! conflict truncation, term rules, the lease, restarts and log failures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stan_core::raft::{
    Entry, HardState, LogError, MemLog, Message, NotLeader, Output, Raft, RaftConfig, RaftLog, Role,
};
use stan_core::Instant;

/// A log the test can inspect while a member owns it, and make fail.
#[derive(Clone, Default)]
struct Shared {
    log: Arc<Mutex<MemLog>>,
    fail_flush: Arc<Mutex<bool>>,
    /// The most entries one `entries` call returned.
    widest_read: Arc<Mutex<usize>>,
}

impl Shared {
    fn with(entries: &[(u64, &str)], hs: HardState) -> Shared {
        let shared = Shared::default();
        {
            let mut log = shared.log.lock().unwrap();
            let entries: Vec<Entry> = entries
                .iter()
                .enumerate()
                .map(|(i, (term, data))| entry(*term, i as u64 + 1, data))
                .collect();
            log.append(&entries).unwrap();
            log.set_hard_state(&hs).unwrap();
            log.flush().unwrap();
        }
        shared
    }

    fn hard_state(&self) -> HardState {
        self.log.lock().unwrap().hard_state()
    }

    fn terms(&self) -> Vec<u64> {
        self.log
            .lock()
            .unwrap()
            .stored()
            .iter()
            .map(|e| e.term)
            .collect()
    }
}

impl RaftLog for Shared {
    fn hard_state(&self) -> HardState {
        self.log.lock().unwrap().hard_state()
    }
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.log.lock().unwrap().set_hard_state(hs)
    }
    fn last_index(&self) -> u64 {
        self.log.lock().unwrap().last_index()
    }
    fn term(&self, index: u64) -> Result<Option<u64>, LogError> {
        self.log.lock().unwrap().term(index)
    }
    fn entries(&mut self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        let out = self.log.lock().unwrap().entries(from, max_bytes)?;
        let mut widest = self.widest_read.lock().unwrap();
        *widest = (*widest).max(out.len());
        Ok(out)
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        self.log.lock().unwrap().append(entries)
    }
    fn flush(&mut self) -> Result<(), LogError> {
        if *self.fail_flush.lock().unwrap() {
            return Err(LogError("disk full".into()));
        }
        self.log.lock().unwrap().flush()
    }
}

fn entry(term: u64, index: u64, data: &str) -> Entry {
    Entry {
        term,
        index,
        data: data.as_bytes().to_vec(),
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

const HEARTBEAT: Duration = Duration::from_millis(100);
const LEASE: Duration = Duration::from_millis(50);
const COMMIT: Duration = Duration::from_millis(10);

fn config(id: &str, peers: &[&str]) -> RaftConfig {
    let mut cfg = RaftConfig::new(id, peers.iter().map(|p| p.to_string()).collect(), 1);
    cfg.heartbeat_timeout = HEARTBEAT;
    cfg.election_timeout = HEARTBEAT;
    cfg.lease_timeout = LEASE;
    cfg.commit_timeout = COMMIT;
    cfg
}

fn member(id: &str, peers: &[&str], log: &Shared) -> Raft {
    Raft::new(config(id, peers), Box::new(log.clone()), ms(0)).unwrap()
}

fn outputs(raft: &mut Raft) -> Vec<Output> {
    std::iter::from_fn(|| raft.poll_output()).collect()
}

fn sends(outputs: &[Output]) -> Vec<(String, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } => Some((to.clone(), msg.clone())),
            _ => None,
        })
        .collect()
}

fn committed(outputs: &[Output]) -> Vec<Entry> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Committed(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn flushed(raft: &mut Raft) -> Vec<Output> {
    raft.flush().unwrap();
    outputs(raft)
}

/// Members wired together; `settle` carries messages until none is left.
struct Group {
    members: Vec<Raft>,
    logs: Vec<Shared>,
    committed: Vec<Vec<Entry>>,
}

const ABC: [&str; 3] = ["a", "b", "c"];

impl Group {
    fn new() -> Group {
        let logs: Vec<Shared> = ABC.iter().map(|_| Shared::default()).collect();
        Group {
            members: ABC
                .iter()
                .zip(&logs)
                .map(|(id, log)| member(id, &ABC, log))
                .collect(),
            logs,
            committed: vec![Vec::new(); ABC.len()],
        }
    }

    fn index(id: &str) -> usize {
        ABC.iter().position(|m| *m == id).unwrap()
    }

    /// Flushes every member and delivers what they send, until nothing moves.
    fn settle(&mut self, now: Instant) {
        loop {
            let mut wire = Vec::new();
            for (i, m) in self.members.iter_mut().enumerate() {
                let outs = flushed(m);
                self.committed[i].extend(committed(&outs));
                wire.extend(sends(&outs).into_iter().map(|(to, msg)| (i, to, msg)));
            }
            if wire.is_empty() {
                return;
            }
            for (from, to, msg) in wire {
                self.members[Group::index(&to)].handle_message(now, ABC[from], msg);
            }
        }
    }

    /// Makes `a` leader of term 1 and lets it replicate its no-op.
    fn elect_a(&mut self) {
        self.members[0].handle_timeout(ms(250));
        assert_eq!(self.members[0].role(), Role::Candidate);
        self.settle(ms(250));
        assert_eq!(self.members[0].role(), Role::Leader);
    }
}

#[test]
fn roles_read_as_in_monitoring() {
    let shown: Vec<String> = [
        Role::Follower,
        Role::Candidate,
        Role::Leader,
        Role::Shutdown,
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    assert_eq!(shown, ["Follower", "Candidate", "Leader", "Shutdown"]);
    assert_eq!(
        NotLeader { leader: None }.to_string(),
        "node is not the leader"
    );
}

#[test]
fn a_single_member_elects_itself_and_commits_what_it_flushed() {
    let log = Shared::default();
    let mut a = member("a", &["a"], &log);
    let due = a.poll_timeout().unwrap();
    assert!(due >= ms(100) && due < ms(200), "{due:?}");
    a.handle_timeout(due);
    assert_eq!(a.role(), Role::Leader);
    assert_eq!(a.leader(), Some("a"));
    assert_eq!(a.term(), 1);
    assert_eq!(outputs(&mut a), [Output::Role(Role::Leader)]);

    let index = a.propose(due, b"x".to_vec()).unwrap();
    assert_eq!(index, 2);
    // Not durable yet, so not committed, even though this member is a majority.
    assert_eq!(a.commit_index(), 0);
    assert_eq!(outputs(&mut a), []);
    let outs = flushed(&mut a);
    assert_eq!(a.commit_index(), 2);
    assert_eq!(committed(&outs), [entry(1, 1, ""), entry(1, 2, "x")]);
}

#[test]
fn a_member_outside_its_peer_list_never_campaigns() {
    let mut a = member("a", &["b", "c"], &Shared::default());
    assert_eq!(a.poll_timeout(), None);
    a.handle_timeout(ms(10_000));
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(a.term(), 0);
}

#[test]
fn election_holds_votes_until_they_are_durable() {
    let (la, lb) = (Shared::default(), Shared::default());
    let mut a = member("a", &ABC, &la);
    let mut b = member("b", &ABC, &lb);

    a.handle_timeout(a.poll_timeout().unwrap());
    assert_eq!(a.role(), Role::Candidate);
    assert_eq!(outputs(&mut a), [Output::Role(Role::Candidate)]);
    let requests = sends(&flushed(&mut a));
    let expected = Message::RequestVote {
        term: 1,
        last_index: 0,
        last_term: 0,
    };
    assert_eq!(
        requests,
        [
            ("b".into(), expected.clone()),
            ("c".into(), expected.clone())
        ]
    );
    assert_eq!(la.hard_state().vote, "a");

    b.handle_message(ms(150), "a", expected);
    assert_eq!(
        sends(&outputs(&mut b)),
        [],
        "a vote leaves only after a flush"
    );
    assert_eq!(lb.hard_state().vote, "a");
    let vote = sends(&flushed(&mut b));
    let granted = Message::Vote {
        term: 1,
        granted: true,
    };
    assert_eq!(vote, [("a".into(), granted.clone())]);

    a.handle_message(ms(160), "b", granted);
    assert_eq!(a.role(), Role::Leader);
    // The new leader's no-op goes to everyone at once.
    let appends = sends(&flushed(&mut a));
    assert_eq!(appends.len(), 2);
    for (_, msg) in appends {
        let Message::Append { entries, term, .. } = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(term, 1);
        assert_eq!(entries, [entry(1, 1, "")]);
    }
}

#[test]
fn one_vote_per_term_and_only_for_an_up_to_date_log() {
    let log = Shared::with(&[(1, ""), (2, "x")], HardState::default());
    let mut b = member("b", &ABC, &log);
    let ask = |term, last_index, last_term| Message::RequestVote {
        term,
        last_index,
        last_term,
    };
    let answer = |b: &mut Raft| match &sends(&flushed(b))[..] {
        [(_, Message::Vote { granted, .. })] => *granted,
        other => panic!("{other:?}"),
    };
    // A later last term wins over a longer log; a shorter log of the same term loses.
    b.handle_message(ms(1), "a", ask(3, 5, 1));
    assert!(!answer(&mut b));
    b.handle_message(ms(1), "a", ask(3, 1, 2));
    assert!(!answer(&mut b));
    assert_eq!(
        b.term(),
        3,
        "a higher term is adopted even when the vote is denied"
    );
    b.handle_message(ms(1), "c", ask(3, 2, 2));
    assert!(answer(&mut b));
    b.handle_message(ms(1), "a", ask(3, 9, 3));
    assert!(!answer(&mut b), "already voted for c in term 3");
    b.handle_message(ms(1), "c", ask(3, 2, 2));
    assert!(answer(&mut b), "the same candidate may ask again");
}

#[test]
fn entries_commit_on_a_majority_and_followers_learn_it() {
    let mut g = Group::new();
    g.elect_a();
    assert_eq!(g.committed[0], [entry(1, 1, "")]);

    let now = ms(260);
    assert_eq!(g.members[0].propose(now, b"x".to_vec()), Ok(2));
    assert_eq!(g.members[0].propose(now, b"y".to_vec()), Ok(3));
    assert_eq!(
        g.members[1].propose(now, b"z".to_vec()),
        Err(NotLeader {
            leader: Some("a".into())
        })
    );
    g.settle(now);
    assert_eq!(g.members[0].commit_index(), 3);
    let all = [entry(1, 1, ""), entry(1, 2, "x"), entry(1, 3, "y")];
    assert_eq!(g.committed[0], all);
    // Followers hear of the commit with the next heartbeat.
    assert_eq!(g.members[1].commit_index(), 1);
    let beat = g.members[0].poll_timeout().unwrap();
    assert_eq!(beat, ms(250) + COMMIT);
    g.members[0].handle_timeout(beat);
    g.settle(beat);
    assert_eq!(g.committed[1], all);
    assert_eq!(g.committed[2], all);
}

#[test]
fn appends_are_bounded_and_the_backlog_is_not_resent() {
    let mut g = Group::new();
    g.members[0] = {
        let mut cfg = config("a", &ABC);
        cfg.max_append_bytes = 25;
        Raft::new(cfg, Box::new(g.logs[0].clone()), ms(0)).unwrap()
    };
    g.elect_a();
    let now = ms(300);
    for _ in 0..10 {
        g.members[0].propose(now, vec![7; 10]).unwrap();
    }
    let outs = flushed(&mut g.members[0]);
    let to_b: Vec<Message> = sends(&outs)
        .into_iter()
        .filter(|(to, _)| to == "b")
        .map(|(_, m)| m)
        .collect();
    assert!(to_b.len() > 1, "the backlog is split: {}", to_b.len());
    let mut next = 2;
    for msg in &to_b {
        let Message::Append { entries, .. } = msg else {
            panic!("{msg:?}")
        };
        let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
        assert!(bytes <= 25, "{bytes} bytes");
        for e in entries {
            assert_eq!(e.index, next, "pipelined appends continue each other");
            next += 1;
        }
    }
    for msg in to_b {
        g.members[1].handle_message(now, "a", msg);
    }
    g.settle(now);
    assert_eq!(g.members[0].commit_index(), 11);
    // Once acknowledged, a heartbeat carries no entries.
    let beat = g.members[0].poll_timeout().unwrap();
    g.members[0].handle_timeout(beat);
    for (_, msg) in sends(&flushed(&mut g.members[0])) {
        let Message::Append { entries, .. } = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(entries, []);
    }
}

#[test]
fn a_follower_cuts_a_conflicting_suffix_and_hints_where_to_retry() {
    // b led term 3 for a while; the leader of term 4 has index 2 and 3 from term 2.
    let log = Shared::with(
        &[(1, ""), (3, "x"), (3, "y"), (3, "z")],
        HardState {
            term: 3,
            vote: String::new(),
            commit: 1,
        },
    );
    let mut b = member("b", &ABC, &log);
    let _ = outputs(&mut b);

    // Entries of terms after 2 cannot be in the leader's log before index 3: the
    // whole run of them is skipped in one answer.
    b.handle_message(
        ms(1),
        "a",
        Message::Append {
            term: 4,
            prev_index: 3,
            prev_term: 2,
            entries: vec![],
            commit: 1,
        },
    );
    let reply = sends(&flushed(&mut b));
    let failed = Message::AppendResult {
        term: 4,
        success: false,
        last_index: 1,
    };
    assert_eq!(reply, [("a".into(), failed)]);
    assert_eq!(b.leader(), Some("a"));
    assert_eq!(log.terms(), [1, 3, 3, 3]);

    b.handle_message(
        ms(2),
        "a",
        Message::Append {
            term: 4,
            prev_index: 1,
            prev_term: 1,
            entries: vec![entry(2, 2, "p")],
            commit: 4,
        },
    );
    assert_eq!(log.terms(), [1, 2]);
    // The commit index follows the leader's, but only as far as this append vouches
    // for the log.
    assert_eq!(b.commit_index(), 2);
    let outs = flushed(&mut b);
    assert_eq!(committed(&outs), [entry(2, 2, "p")]);
    let ok = Message::AppendResult {
        term: 4,
        success: true,
        last_index: 2,
    };
    assert_eq!(sends(&outs), [("a".into(), ok)]);
}

#[test]
fn a_follower_commits_only_what_the_leader_vouched_for() {
    let log = Shared::with(&[(1, ""), (1, "x"), (1, "y")], HardState::default());
    let mut b = member("b", &ABC, &log);
    // A heartbeat that matches at index 1 says nothing about entries 2 and 3, which
    // the leader of term 2 may not have.
    b.handle_message(
        ms(1),
        "a",
        Message::Append {
            term: 2,
            prev_index: 1,
            prev_term: 1,
            entries: vec![],
            commit: 3,
        },
    );
    assert_eq!(b.commit_index(), 1);
    assert_eq!(committed(&flushed(&mut b)), [entry(1, 1, "")]);
}

#[test]
fn a_late_duplicate_append_does_not_cut_newer_entries() {
    let mut b = member("b", &ABC, &Shared::default());
    let append = |prev_index, prev_term, entries: Vec<Entry>| Message::Append {
        term: 1,
        prev_index,
        prev_term,
        entries,
        commit: 0,
    };
    let first = append(0, 0, vec![entry(1, 1, "")]);
    b.handle_message(ms(1), "a", first.clone());
    b.handle_message(ms(1), "a", append(1, 1, vec![entry(1, 2, "x")]));
    b.handle_message(ms(2), "a", first);
    assert_eq!(b.last_index(), 2);
    let acks: Vec<u64> = sends(&flushed(&mut b))
        .into_iter()
        .map(|(_, m)| match m {
            Message::AppendResult {
                success: true,
                last_index,
                ..
            } => last_index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acks, [1, 2, 1]);
}

#[test]
fn an_entry_of_an_earlier_term_commits_only_under_one_of_the_current_term() {
    // Raft §5.4.2: "a" carries index 2 from term 2, never committed. Once it leads
    // term 4, a majority holding index 2 is not enough; its own no-op must get there.
    let la = Shared::with(
        &[(1, ""), (2, "old")],
        HardState {
            term: 3,
            vote: String::new(),
            commit: 1,
        },
    );
    let lb = Shared::with(
        &[(1, "")],
        HardState {
            term: 3,
            vote: String::new(),
            commit: 1,
        },
    );
    let mut a = Raft::new(
        RaftConfig {
            // One entry per append, so that index 2 is acknowledged on its own.
            max_append_bytes: 0,
            ..config("a", &ABC)
        },
        Box::new(la.clone()),
        ms(0),
    )
    .unwrap();
    let mut b = member("b", &ABC, &lb);
    let _ = outputs(&mut a);
    let _ = outputs(&mut b);

    a.handle_timeout(a.poll_timeout().unwrap());
    let mut wire: Vec<(String, Message)> = sends(&flushed(&mut a));
    let mut acked = Vec::new();
    // Carry messages between a and b only; c is away.
    while let Some((to, msg)) = wire.pop() {
        if to != "b" {
            continue;
        }
        b.handle_message(ms(200), "a", msg);
        for (_, reply) in sends(&flushed(&mut b)) {
            let ack = match reply {
                Message::AppendResult {
                    success: true,
                    last_index,
                    ..
                } => Some(last_index),
                _ => None,
            };
            a.handle_message(ms(200), "b", reply);
            if let Some(index) = ack {
                acked.push((index, a.commit_index()));
            }
        }
        wire.extend(sends(&flushed(&mut a)));
    }
    assert_eq!(a.role(), Role::Leader);
    assert_eq!(a.term(), 4);
    // (acknowledged index, commit index after it)
    assert_eq!(acked, [(2, 1), (3, 3)]);
}

#[test]
fn any_higher_term_turns_a_leader_into_a_follower() {
    let mut g = Group::new();
    g.elect_a();
    let a = &mut g.members[0];
    a.handle_message(
        ms(300),
        "b",
        Message::AppendResult {
            term: 7,
            success: false,
            last_index: 0,
        },
    );
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(a.term(), 7);
    assert_eq!(a.leader(), None);
    assert_eq!(outputs(a), [Output::Role(Role::Follower)]);
    let hs = g.logs[0].hard_state();
    assert_eq!((hs.term, hs.vote.as_str()), (7, ""));
}

#[test]
fn stale_requests_are_answered_with_the_current_term() {
    let mut b = member(
        "b",
        &ABC,
        &Shared::with(
            &[],
            HardState {
                term: 5,
                vote: String::new(),
                commit: 0,
            },
        ),
    );
    b.handle_message(
        ms(1),
        "a",
        Message::Append {
            term: 4,
            prev_index: 0,
            prev_term: 0,
            entries: vec![entry(4, 1, "x")],
            commit: 1,
        },
    );
    b.handle_message(
        ms(1),
        "c",
        Message::RequestVote {
            term: 3,
            last_index: 9,
            last_term: 3,
        },
    );
    assert_eq!(b.last_index(), 0);
    assert_eq!(b.leader(), None);
    assert_eq!(
        sends(&flushed(&mut b)),
        [
            (
                "a".into(),
                Message::AppendResult {
                    term: 5,
                    success: false,
                    last_index: 0
                }
            ),
            (
                "c".into(),
                Message::Vote {
                    term: 5,
                    granted: false
                }
            ),
        ]
    );
}

#[test]
fn strangers_are_ignored() {
    let mut b = member("b", &ABC, &Shared::default());
    b.handle_message(
        ms(1),
        "z",
        Message::RequestVote {
            term: 9,
            last_index: 9,
            last_term: 9,
        },
    );
    assert_eq!(b.term(), 0);
    assert_eq!(flushed(&mut b), []);
}

#[test]
fn a_follower_that_hears_its_leader_ignores_a_disruptive_candidate() {
    let mut g = Group::new();
    g.elect_a();
    let b = &mut g.members[1];
    let ask = Message::RequestVote {
        term: 9,
        last_index: 9,
        last_term: 9,
    };
    b.handle_message(ms(260), "c", ask.clone());
    assert_eq!(b.term(), 1);
    assert_eq!(sends(&flushed(b)), []);
    // Once the leader has been silent for a heartbeat timeout, the candidate is heard.
    b.handle_message(ms(400), "c", ask);
    assert_eq!(b.term(), 9);
    assert_eq!(
        sends(&flushed(b)),
        [(
            "c".into(),
            Message::Vote {
                term: 9,
                granted: true
            }
        )]
    );
}

#[test]
fn a_leader_without_a_majority_steps_down_after_the_lease() {
    let mut g = Group::new();
    g.elect_a();
    // b keeps answering, c is gone: b and a are a majority, so a stays.
    let mut now = ms(250);
    while now < ms(400) {
        now = g.members[0].poll_timeout().unwrap();
        g.members[0].handle_timeout(now);
        for (to, msg) in sends(&flushed(&mut g.members[0])) {
            if to == "b" {
                g.members[1].handle_message(now, "a", msg);
            }
        }
        for (_, msg) in sends(&flushed(&mut g.members[1])) {
            g.members[0].handle_message(now, "b", msg);
        }
        assert_eq!(g.members[0].role(), Role::Leader, "at {now:?}");
    }
    // Now b is gone too: the lease runs out LEASE after b's last answer.
    let last_answer = now;
    loop {
        now = g.members[0].poll_timeout().unwrap();
        g.members[0].handle_timeout(now);
        let _ = flushed(&mut g.members[0]);
        if g.members[0].role() != Role::Leader {
            break;
        }
    }
    assert_eq!(now, last_answer + LEASE);
    assert_eq!(g.members[0].role(), Role::Follower);
    assert_eq!(g.members[0].term(), 1);
    assert_eq!(
        g.members[0].propose(now, vec![1]),
        Err(NotLeader { leader: None })
    );
}

#[test]
fn a_restart_replays_the_committed_entries_lazily_and_keeps_its_vote() {
    let entries: Vec<(u64, &str)> = (0..50).map(|_| (2, "0123456789")).collect();
    let log = Shared::with(
        &entries,
        HardState {
            term: 5,
            vote: "b".into(),
            commit: 40,
        },
    );
    let mut cfg = config("a", &ABC);
    cfg.max_append_bytes = 30;
    let mut a = Raft::new(cfg, Box::new(log.clone()), ms(0)).unwrap();
    assert_eq!(*log.widest_read.lock().unwrap(), 0, "nothing read at start");
    assert_eq!((a.term(), a.commit_index(), a.last_index()), (5, 40, 50));
    let replayed = committed(&outputs(&mut a));
    assert_eq!(replayed.len(), 40);
    assert!(replayed
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == i as u64 + 1));
    assert_eq!(
        *log.widest_read.lock().unwrap(),
        3,
        "read in bounded batches"
    );

    a.handle_message(
        ms(1),
        "c",
        Message::RequestVote {
            term: 5,
            last_index: 60,
            last_term: 5,
        },
    );
    assert_eq!(
        sends(&flushed(&mut a)),
        [(
            "c".into(),
            Message::Vote {
                term: 5,
                granted: false
            }
        )]
    );
}

#[test]
fn a_crash_before_flush_loses_the_vote_and_its_message_together() {
    let log = Shared::default();
    let mut b = member("b", &ABC, &log);
    b.handle_message(
        ms(1),
        "a",
        Message::RequestVote {
            term: 1,
            last_index: 0,
            last_term: 0,
        },
    );
    assert_eq!(sends(&outputs(&mut b)), []);
    drop(b);
    log.log.lock().unwrap().crash();
    assert_eq!(log.hard_state(), HardState::default());
}

#[test]
fn a_log_error_stops_the_member_for_good() {
    let log = Shared::default();
    let mut a = member("a", &["a", "b"], &log);
    a.handle_timeout(ms(500));
    assert_eq!(a.role(), Role::Candidate);
    *log.fail_flush.lock().unwrap() = true;
    assert_eq!(a.flush(), Err(LogError("disk full".into())));
    assert_eq!(a.role(), Role::Shutdown);
    assert_eq!(
        a.failure().map(|e| e.to_string()).as_deref(),
        Some("disk full")
    );
    // The vote request waited for the failed flush: it never leaves.
    assert_eq!(
        outputs(&mut a),
        [Output::Role(Role::Candidate), Output::Role(Role::Shutdown)]
    );
    assert_eq!(a.poll_timeout(), None);
    a.handle_message(
        ms(501),
        "b",
        Message::Vote {
            term: 1,
            granted: true,
        },
    );
    assert_eq!(a.role(), Role::Shutdown);
    assert!(a.flush().is_err());
}

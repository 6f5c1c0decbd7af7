//! Raft under faults: groups of 3 and 5 members over `MemLog`, on virtual time, with a
//! network that loses, delays, reorders and duplicates messages, partitions that heal,
//! and members that crash (losing what they had not flushed) and restart. One seed
//! fixes the whole run.
//!
//! After every event the safety properties of Raft §5 are checked: at most one leader
//! per term, every member's `Committed` stream is a prefix of one common sequence, logs
//! that share an entry share everything before it, and a leader holds every entry
//! committed before its term. After the faults stop, a leader must commit a new
//! proposal and every member must catch up.
//!
//! Replay one run with `RAFT_SEED=<seed> RAFT_MEMBERS=<3|5> cargo test -p stan-core
//! --test raft_props -- --nocapture`; it prints the trace's last events.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stan_core::raft::{
    Entry, HardState, LogError, MemLog, Message, Output, Raft, RaftConfig, RaftLog, Role,
};
use stan_core::{Instant, Rng};

const MS: Duration = Duration::from_millis(1);

/// How long the faults last, then how long a healthy network has to recover.
const CHAOS: Duration = Duration::from_secs(4);
const RECOVERY: Duration = Duration::from_secs(15);

/// A log the test can still reach after the member owning it crashed.
struct SharedLog(Arc<Mutex<MemLog>>);

impl RaftLog for SharedLog {
    fn hard_state(&self) -> HardState {
        self.0.lock().unwrap().hard_state()
    }
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.0.lock().unwrap().set_hard_state(hs)
    }
    fn last_index(&self) -> u64 {
        self.0.lock().unwrap().last_index()
    }
    fn term(&self, index: u64) -> Result<Option<u64>, LogError> {
        self.0.lock().unwrap().term(index)
    }
    fn entries(&mut self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        self.0.lock().unwrap().entries(from, max_bytes)
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        self.0.lock().unwrap().append(entries)
    }
    fn flush(&mut self) -> Result<(), LogError> {
        self.0.lock().unwrap().flush()
    }
}

struct Member {
    id: String,
    log: Arc<Mutex<MemLog>>,
    /// `None` while crashed.
    raft: Option<Raft>,
    /// What the current instance emitted as `Committed`.
    committed: Vec<Entry>,
    /// Inputs since the last flush are made durable at this time, unless the member
    /// crashes first.
    flush_at: Option<Instant>,
    starts: u64,
    /// The partition side this member is on; members on different sides cannot talk.
    side: u8,
}

struct Packet {
    to: usize,
    bytes: Vec<u8>,
}

/// Fault rates in per mille, and the spread of delivery delays.
#[derive(Debug, Clone, Copy)]
struct Faults {
    loss: usize,
    duplicate: usize,
    max_delay_ms: u64,
    /// How long a member may take to flush after an input (crashes fall in between).
    max_flush_ms: usize,
    /// Entry bytes per append; 1 sends one entry at a time, so that acknowledgements
    /// cover parts of a new leader's backlog.
    max_append_bytes: usize,
}

const HEALTHY: Faults = Faults {
    loss: 0,
    duplicate: 0,
    max_delay_ms: 5,
    max_flush_ms: 3,
    max_append_bytes: 16,
};

struct World {
    seed: u64,
    rng: Rng,
    now: Instant,
    members: Vec<Member>,
    /// Messages in flight by delivery time; the sequence number breaks ties.
    wire: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    faults: Faults,
    /// The leader seen in each term.
    leaders: BTreeMap<u64, String>,
    /// The one sequence every member's `Committed` stream must be a prefix of.
    committed: Vec<Entry>,
    /// For each committed entry, the lowest term a member had when it saw it
    /// committed: every leader of this term or later must hold it.
    committed_by_term: Vec<u64>,
    proposals: u64,
    trace: VecDeque<String>,
    trace_hash: u64,
}

fn config(id: &str, peers: &[String], seed: u64, max_append_bytes: usize) -> RaftConfig {
    let mut cfg = RaftConfig::new(id, peers.to_vec(), seed);
    cfg.heartbeat_timeout = 150 * MS;
    cfg.election_timeout = 150 * MS;
    cfg.lease_timeout = 120 * MS;
    cfg.commit_timeout = 30 * MS;
    cfg.max_append_bytes = max_append_bytes;
    cfg
}

impl World {
    fn new(seed: u64, size: usize) -> World {
        let mut rng = Rng::new(seed);
        let faults = Faults {
            loss: rng.below(200),
            duplicate: rng.below(100),
            max_delay_ms: 1 + rng.below(60) as u64,
            max_flush_ms: 1 + rng.below(20),
            max_append_bytes: [1, 8, 64][rng.below(3)],
        };
        let mut world = World {
            seed,
            rng,
            now: Instant::from_nanos(0),
            members: Vec::new(),
            wire: BTreeMap::new(),
            seq: 0,
            faults,
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            committed_by_term: Vec::new(),
            proposals: 0,
            trace: VecDeque::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
        };
        for i in 0..size {
            world.members.push(Member {
                id: format!("n{i}"),
                log: Arc::new(Mutex::new(MemLog::default())),
                raft: None,
                committed: Vec::new(),
                flush_at: None,
                starts: 0,
                side: 0,
            });
        }
        for i in 0..size {
            world.start(i);
        }
        world.note(format!("faults {faults:?}"));
        world
    }

    fn note(&mut self, event: String) {
        for b in event.bytes().chain([b'\n']) {
            self.trace_hash = (self.trace_hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        if self.trace.len() == 400 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!(
            "{:>8.3}ms {event}",
            self.now.as_nanos() as f64 / 1e6
        ));
    }

    fn peers(&self) -> Vec<String> {
        self.members.iter().map(|m| m.id.clone()).collect()
    }

    fn start(&mut self, i: usize) {
        let peers = self.peers();
        let m = &mut self.members[i];
        m.starts += 1;
        let seed = self.seed ^ (i as u64) << 32 ^ m.starts;
        let cfg = config(&m.id, &peers, seed, self.faults.max_append_bytes);
        let raft = Raft::new(cfg, Box::new(SharedLog(m.log.clone())), self.now).unwrap();
        m.raft = Some(raft);
        m.committed.clear();
        m.flush_at = None;
        self.note(format!("start {}", self.members[i].id));
        self.drain(i);
    }

    fn crash(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.raft = None;
        m.flush_at = None;
        m.log.lock().unwrap().crash();
        self.note(format!("crash {}", self.members[i].id));
    }

    /// Pulls every output of member `i`: sends go on the wire, commits are checked.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.members[i].raft.as_mut().and_then(|r| r.poll_output()) {
            match out {
                Output::Send { to, msg } => self.transmit(i, &to, &msg),
                Output::Committed(entry) => self.on_committed(i, entry),
                Output::Role(role) => {
                    let term = self.members[i].raft.as_ref().unwrap().term();
                    self.note(format!("{} is {role} in term {term}", self.members[i].id));
                }
            }
        }
    }

    fn transmit(&mut self, from: usize, to: &str, msg: &Message) {
        let to = self
            .members
            .iter()
            .position(|m| m.id == to)
            .unwrap_or_else(|| panic!("send to unknown member {to}"));
        let bytes = msg.encode(&self.members[from].id);
        let copies = if self.rng.below(1000) < self.faults.loss {
            0
        } else if self.rng.below(1000) < self.faults.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = MS * (1 + self.rng.below(self.faults.max_delay_ms as usize) as u32);
            self.seq += 1;
            self.wire.insert(
                (self.now + delay, self.seq),
                Packet {
                    to,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn on_committed(&mut self, i: usize, entry: Entry) {
        let term = self.members[i].raft.as_ref().unwrap().term();
        let m = &mut self.members[i];
        let position = m.committed.len();
        assert_eq!(
            entry.index,
            position as u64 + 1,
            "{} committed out of order",
            m.id
        );
        match self.committed.get(position) {
            Some(known) => assert_eq!(
                known, &entry,
                "{} committed a different entry at index {}",
                m.id, entry.index
            ),
            None => {
                self.committed.push(entry.clone());
                self.committed_by_term.push(term);
            }
        }
        let by_term = &mut self.committed_by_term[position];
        *by_term = (*by_term).min(term);
        m.committed.push(entry);
    }

    /// The members' next event, the soonest first.
    fn next_event(&self) -> Option<(Instant, Event)> {
        let mut best: Option<(Instant, Event)> = None;
        let mut consider = |at: Instant, ev: Event| {
            if best.as_ref().is_none_or(|(t, _)| at < *t) {
                best = Some((at, ev));
            }
        };
        for (i, m) in self.members.iter().enumerate() {
            if let Some(at) = m.flush_at {
                consider(at, Event::Flush(i));
            }
        }
        if let Some((&(at, seq), _)) = self.wire.first_key_value() {
            consider(at, Event::Deliver(seq));
        }
        for (i, m) in self.members.iter().enumerate() {
            if let Some(at) = m.raft.as_ref().and_then(Raft::poll_timeout) {
                consider(at, Event::Timeout(i));
            }
        }
        best
    }

    fn step(&mut self, ev: Event) {
        let i = match ev {
            Event::Flush(i) => {
                self.members[i].flush_at = None;
                self.members[i].raft.as_mut().unwrap().flush().unwrap();
                self.drain(i);
                self.check_safety();
                return;
            }
            Event::Timeout(i) => {
                let now = self.now;
                self.members[i].raft.as_mut().unwrap().handle_timeout(now);
                i
            }
            Event::Deliver(seq) => {
                let key = *self.wire.keys().next().unwrap();
                debug_assert_eq!(key.1, seq);
                let packet = self.wire.remove(&key).unwrap();
                let to = packet.to;
                let (from, msg) = Message::decode(&packet.bytes).expect("a sent message decodes");
                let sender = self.members.iter().position(|m| m.id == from).unwrap();
                if self.members[to].raft.is_none()
                    || self.members[sender].side != self.members[to].side
                {
                    return;
                }
                self.note(format!(
                    "{from} -> {}: {}",
                    self.members[to].id,
                    brief(&msg)
                ));
                let now = self.now;
                self.members[to]
                    .raft
                    .as_mut()
                    .unwrap()
                    .handle_message(now, &from, msg);
                to
            }
        };
        self.after_input(i);
    }

    /// The caller's part of the contract: flush after a batch of inputs. The batch ends
    /// a little later, so that crashes can fall between input and flush.
    fn after_input(&mut self, i: usize) {
        if self.members[i].raft.is_some() && self.members[i].flush_at.is_none() {
            let delay = MS * self.rng.below(self.faults.max_flush_ms) as u32;
            self.members[i].flush_at = Some(self.now + delay);
        }
        self.drain(i);
        self.check_safety();
    }

    /// Runs member events until `until`.
    fn run(&mut self, until: Instant) {
        let mut same_instant = 0;
        while let Some((at, ev)) = self.next_event() {
            if at > until {
                break;
            }
            same_instant = if at > self.now { 0 } else { same_instant + 1 };
            assert!(same_instant < 10_000, "livelock: time does not advance");
            self.now = self.now.max(at);
            self.step(ev);
        }
        self.now = self.now.max(until);
    }

    fn propose(&mut self, data: Vec<u8>) {
        let now = self.now;
        for i in 0..self.members.len() {
            let Some(raft) = self.members[i].raft.as_mut() else {
                continue;
            };
            if raft.role() == Role::Leader {
                let index = raft.propose(now, data.clone()).unwrap();
                let text = String::from_utf8_lossy(&data).into_owned();
                self.note(format!("{} proposes {text} at {index}", self.members[i].id));
                self.after_input(i);
            }
        }
    }

    /// One random fault or proposal.
    fn chaos(&mut self) {
        let n = self.members.len();
        match self.rng.below(100) {
            0..=44 => {
                self.proposals += 1;
                self.propose(format!("p{}", self.proposals).into_bytes());
            }
            45..=49 => {
                for m in &mut self.members {
                    m.side = self.rng.below(2) as u8;
                }
                let sides: Vec<u8> = self.members.iter().map(|m| m.side).collect();
                self.note(format!("partition {sides:?}"));
            }
            50..=54 => {
                let alone = self.pick_target();
                for (i, m) in self.members.iter_mut().enumerate() {
                    m.side = u8::from(i == alone);
                }
                let sides: Vec<u8> = self.members.iter().map(|m| m.side).collect();
                self.note(format!("partition {sides:?}"));
            }
            55..=62 => {
                for m in &mut self.members {
                    m.side = 0;
                }
                self.note("heal".into());
            }
            63..=71 => {
                let i = self.pick_target();
                if self.members[i].raft.is_some() {
                    self.crash(i);
                }
            }
            72..=84 => {
                let i = self.rng.below(n);
                if self.members[i].raft.is_none() {
                    self.start(i);
                }
            }
            _ => {}
        }
        self.check_safety();
    }

    /// A member to hurt: often a leader, since losing one mid-replication is what
    /// the election and commit rules are there for.
    fn pick_target(&mut self) -> usize {
        let leaders: Vec<usize> = (0..self.members.len())
            .filter(|&i| {
                self.members[i]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader)
            })
            .collect();
        if !leaders.is_empty() && self.rng.below(2) == 0 {
            leaders[self.rng.below(leaders.len())]
        } else {
            self.rng.below(self.members.len())
        }
    }

    fn check_safety(&mut self) {
        for m in &self.members {
            let Some(raft) = &m.raft else { continue };
            if raft.role() != Role::Leader {
                continue;
            }
            let leader = self.leaders.entry(raft.term()).or_insert(m.id.clone());
            assert_eq!(
                *leader,
                m.id,
                "two leaders in term {}: {leader} and {}",
                raft.term(),
                m.id
            );
            // Leader completeness (§5.4): entries committed before this term are here.
            let log = m.log.lock().unwrap();
            for (k, entry) in self.committed.iter().enumerate() {
                if self.committed_by_term[k] <= raft.term() {
                    assert_eq!(
                        log.stored().get(k),
                        Some(entry),
                        "leader {} of term {} lacks committed index {}",
                        m.id,
                        raft.term(),
                        k + 1
                    );
                }
            }
        }
        // Log matching (§5.3): an entry in common means a common prefix up to it.
        let logs: Vec<_> = self.members.iter().map(|m| m.log.lock().unwrap()).collect();
        for a in 0..logs.len() {
            for b in a + 1..logs.len() {
                let (x, y) = (logs[a].stored(), logs[b].stored());
                let common = x.len().min(y.len());
                if let Some(top) = (0..common).rev().find(|&k| x[k].term == y[k].term) {
                    assert_eq!(
                        x[..=top],
                        y[..=top],
                        "logs of {} and {} share index {} but differ before it",
                        self.members[a].id,
                        self.members[b].id,
                        top + 1
                    );
                }
            }
        }
    }

    fn heal(&mut self) {
        self.faults = Faults {
            max_append_bytes: self.faults.max_append_bytes,
            ..HEALTHY
        };
        for m in &mut self.members {
            m.side = 0;
        }
        for i in 0..self.members.len() {
            if self.members[i].raft.is_none() {
                self.start(i);
            }
        }
        self.note("network healthy, every member up".into());
    }

    /// After the faults: some leader commits a new proposal and every member's
    /// `Committed` stream reaches the end of the common sequence.
    fn check_liveness(&mut self) {
        let deadline = self.now + RECOVERY;
        let marker = b"marker".to_vec();
        loop {
            let committed = self.committed.iter().any(|e| e.data == marker);
            let caught_up = self
                .members
                .iter()
                .all(|m| m.committed.len() == self.committed.len());
            if committed && caught_up {
                return;
            }
            assert!(
                self.now < deadline,
                "no progress {RECOVERY:?} after healing: marker committed {committed}, \
                 streams {:?} of {}",
                self.members
                    .iter()
                    .map(|m| m.committed.len())
                    .collect::<Vec<_>>(),
                self.committed.len()
            );
            if !committed && !self.pending_marker(&marker) {
                self.propose(marker.clone());
            }
            let until = self.now + 50 * MS;
            self.run(until);
        }
    }

    /// Whether a current leader already holds an uncommitted copy of the marker.
    fn pending_marker(&self, marker: &[u8]) -> bool {
        self.members.iter().any(|m| {
            m.raft.as_ref().is_some_and(|r| r.role() == Role::Leader)
                && m.log
                    .lock()
                    .unwrap()
                    .stored()
                    .iter()
                    .any(|e| e.data == marker)
        })
    }

    fn run_all(&mut self) {
        let end = self.now + CHAOS;
        while self.now < end {
            let gap = MS * (1 + self.rng.below(25) as u32);
            let until = self.now + gap;
            self.run(until);
            self.chaos();
        }
        self.heal();
        self.check_liveness();
    }
}

enum Event {
    Flush(usize),
    Deliver(u64),
    Timeout(usize),
}

fn brief(msg: &Message) -> String {
    match msg {
        Message::Append {
            term,
            prev_index,
            prev_term,
            entries,
            commit,
        } => format!(
            "Append t{term} prev {prev_index}/t{prev_term} +{} commit {commit}",
            entries.len()
        ),
        other => format!("{other:?}"),
    }
}

/// Runs one seed; on failure returns the message and the trace's last events.
fn run_seed(seed: u64, size: usize) -> Result<u64, String> {
    let mut world = None;
    let r = catch_unwind(AssertUnwindSafe(|| {
        let w = world.insert(World::new(seed, size));
        w.run_all();
        w.trace_hash
    }));
    r.map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let trace = world
            .map(|w| w.trace.into_iter().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        format!("{text}\n--- last events ---\n{trace}")
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

fn run_seeds(size: usize, count: u64) {
    if let Some(members) = env_u64("RAFT_MEMBERS") {
        if members as usize != size {
            return;
        }
    }
    let seeds: Vec<u64> = match env_u64("RAFT_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("RAFT_SEEDS").unwrap_or(count)).collect(),
    };
    let mut failed = Vec::new();
    for seed in seeds {
        if let Err(e) = run_seed(seed, size) {
            eprintln!(
                "seed {seed} with {size} members failed: {e}\nreplay: RAFT_SEED={seed} \
                 RAFT_MEMBERS={size} cargo test -p stan-core --test raft_props -- --nocapture"
            );
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "failing seeds with {size} members: {failed:?}"
    );
}

#[test]
fn three_members_stay_safe_and_recover() {
    run_seeds(3, 300);
}

#[test]
fn five_members_stay_safe_and_recover() {
    run_seeds(5, 200);
}

#[test]
fn a_seed_replays_identically() {
    let a = run_seed(7, 5).unwrap();
    let b = run_seed(7, 5).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, run_seed(8, 5).unwrap());
}

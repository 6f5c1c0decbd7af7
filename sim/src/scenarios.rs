//! Workload and fault generators, one per scenario; a seed picks every number.

use std::time::Duration;

use stan_core::client::StartAt;
use stan_core::Rng;

use crate::journal::SubKind;
use crate::plan::{
    AckPolicy, ActorPlan, Fault, FaultKind, Limits, Plan, Step, StoreKind, SubSpec, TIMING,
};

/// The scenarios, by the name the command line takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    HeartbeatTimeout,
    DuplicateClientId,
    AckRedelivery,
    QueueMemberDeath,
    DurableResume,
    Limits,
    Mixed,
    ServerRestart,
    FileRestart,
    FileRestartNoSync,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::HeartbeatTimeout,
        Scenario::DuplicateClientId,
        Scenario::AckRedelivery,
        Scenario::QueueMemberDeath,
        Scenario::DurableResume,
        Scenario::Limits,
        Scenario::Mixed,
        Scenario::ServerRestart,
        Scenario::FileRestart,
        Scenario::FileRestartNoSync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::HeartbeatTimeout => "heartbeat-timeout",
            Scenario::DuplicateClientId => "duplicate-client-id",
            Scenario::AckRedelivery => "ack-redelivery",
            Scenario::QueueMemberDeath => "queue-member-death",
            Scenario::DurableResume => "durable-resume",
            Scenario::Limits => "limits",
            Scenario::Mixed => "mixed",
            Scenario::ServerRestart => "server-restart",
            Scenario::FileRestart => "file-restart",
            Scenario::FileRestartNoSync => "file-restart-nosync",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scenario a soak run gives to `seed` when none is named.
    pub fn for_seed(seed: u64) -> Scenario {
        Scenario::ALL[(seed % Scenario::ALL.len() as u64) as usize]
    }

    pub fn plan(self, seed: u64) -> Plan {
        let mut g = Gen::new(self, seed);
        match self {
            Scenario::HeartbeatTimeout => heartbeat_timeout(&mut g),
            Scenario::DuplicateClientId => duplicate_client_id(&mut g),
            Scenario::AckRedelivery => ack_redelivery(&mut g),
            Scenario::QueueMemberDeath => queue_member_death(&mut g),
            Scenario::DurableResume => durable_resume(&mut g),
            Scenario::Limits => limits(&mut g),
            Scenario::Mixed => mixed(&mut g),
            Scenario::ServerRestart => server_restart(&mut g),
            Scenario::FileRestart => file_restart(&mut g, true),
            Scenario::FileRestartNoSync => file_restart(&mut g, false),
        }
        g.finish()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The seed's random choices.
struct Dice(Rng);

impl Dice {
    /// A value in `lo..hi` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.0.below((hi - lo) as usize) as u64
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        ms(self.range(lo, hi))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.range(0, xs.len() as u64) as usize]
    }
}

struct Gen {
    dice: Dice,
    plan: Plan,
}

/// Ways a client can stop answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    Freeze,
    Partition,
    Drop,
    Close,
}

impl Gen {
    fn new(scenario: Scenario, seed: u64) -> Self {
        let dice = Dice(Rng::new(seed ^ 0x005e_ed0f_5ce9));
        Gen {
            dice,
            plan: Plan {
                scenario: scenario.name(),
                seed,
                store: Default::default(),
                limits: Limits::default(),
                actors: Vec::new(),
                faults: Vec::new(),
                workload_end: Duration::ZERO,
                end: Duration::ZERO,
                options: Default::default(),
            },
        }
    }

    fn window(&mut self, workload_end: Duration, end: Duration) {
        self.plan.workload_end = workload_end;
        self.plan.end = end;
    }

    /// A new client host with its own client ID (or the given one), connecting at `at`.
    fn actor(&mut self, client_id: Option<&str>, at: Duration) -> usize {
        let id = self.plan.actors.len() as u32 + 1;
        let seed = self.dice.0.next_u64();
        self.plan.actors.push(ActorPlan {
            id,
            client_id: client_id.map_or_else(|| format!("client-{id}"), str::to_string),
            seed,
            steps: vec![(at, Step::Connect)],
            reconnect: None,
        });
        self.plan.actors.len() - 1
    }

    fn step(&mut self, actor: usize, at: Duration, step: Step) {
        self.plan.actors[actor].steps.push((at, step));
    }

    fn fault(&mut self, actor: usize, at: Duration, kind: FaultKind) {
        let actor = self.plan.actors[actor].id;
        self.plan.faults.push(Fault { at, actor, kind });
    }

    /// Publishes on `channel` every `gap_lo..gap_hi` ms from `from` to `to`.
    fn publishes(
        &mut self,
        actor: usize,
        channel: &str,
        from: Duration,
        to: Duration,
        gap: (u64, u64),
    ) {
        let mut t = from;
        while t < to {
            self.step(
                actor,
                t,
                Step::Publish {
                    channel: channel.to_string(),
                },
            );
            t += self.dice.ms(gap.0, gap.1);
        }
    }

    /// A client that only publishes, and never fails.
    fn publisher(&mut self, channel: &str, from: Duration, to: Duration, gap: (u64, u64)) -> usize {
        let at = self.dice.ms(0, 200);
        let a = self.actor(None, at);
        self.publishes(a, channel, from, to, gap);
        a
    }

    fn manual(&mut self, skip: (u64, u64), max_skips: (u64, u64), delay: (u64, u64)) -> AckPolicy {
        AckPolicy::Manual {
            skip_percent: self.dice.range(skip.0, skip.1) as u8,
            max_skips: self.dice.range(max_skips.0, max_skips.1) as u8,
            delay: self.dice.ms(delay.0, delay.1),
        }
    }

    fn start(&mut self) -> StartAt {
        match self.dice.range(0, 6) {
            0 => StartAt::NewOnly,
            1 => StartAt::LastReceived,
            2 => StartAt::First,
            3 => StartAt::Sequence(self.dice.range(1, 20)),
            4 => StartAt::TimeDelta(self.dice.ms(100, 5000)),
            _ => StartAt::Time(crate::server::EPOCH_NS + self.dice.ms(0, 3000).as_nanos() as i64),
        }
    }

    /// Short silences that must not cost the client its registration, each followed by
    /// a long enough answering stretch; returns when the last one ends.
    fn blips(
        &mut self,
        actor: usize,
        mut t: Duration,
        until: Duration,
        freeze_ok: bool,
    ) -> Duration {
        let count = self.dice.range(1, 4);
        for _ in 0..count {
            let d = self.dice.ms(100, 1500);
            if t + d >= until {
                break;
            }
            if freeze_ok && self.dice.chance(40) {
                self.step(actor, t, Step::Freeze(d));
            } else {
                self.fault(actor, t, FaultKind::Hold);
                self.fault(actor, t + d, FaultKind::Release);
            }
            t += d + TIMING.blip_gap() + self.dice.ms(500, 1500);
        }
        t
    }

    /// The client stops answering at `at` in the given way, for good.
    fn death(&mut self, actor: usize, at: Duration, how: Death) {
        match how {
            Death::Freeze => {
                let rest = self.plan.end.saturating_sub(at) + ms(1000);
                self.step(actor, at, Step::Freeze(rest));
            }
            Death::Partition => self.fault(actor, at, FaultKind::Partition),
            Death::Drop => self.step(actor, at, Step::Drop),
            Death::Close => self.step(actor, at, Step::Close),
        }
    }

    fn finish(mut self) -> Plan {
        for a in &mut self.plan.actors {
            a.steps.sort_by_key(|(at, _)| *at);
        }
        self.plan.faults.sort_by_key(|f| f.at);
        self.plan
    }
}

fn spec(
    channel: &str,
    kind: SubKind,
    start: StartAt,
    max_in_flight: i32,
    ack_wait_secs: i32,
    ack: AckPolicy,
) -> SubSpec {
    SubSpec {
        channel: channel.to_string(),
        kind,
        start,
        max_in_flight,
        ack_wait_secs,
        ack,
    }
}

/// Clients that freeze, are partitioned, drop their socket or stay frozen a long while
/// must be closed within the bound; clients with short blips must not be.
fn heartbeat_timeout(g: &mut Gen) {
    g.window(ms(6000), ms(13_000));
    let w = g.plan.workload_end;
    g.publisher("hb", ms(500), w, (100, 400));
    let victims = g.dice.range(3, 5);
    for _ in 0..victims {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        let s = spec(
            "hb",
            SubKind::Plain,
            StartAt::NewOnly,
            64,
            30,
            AckPolicy::Auto,
        );
        g.step(a, ms(400), Step::Subscribe(s));
        let t0 = g.dice.ms(1000, w.as_millis() as u64);
        match g.dice.range(0, 5) {
            0 => g.death(a, t0, Death::Freeze),
            1 => g.death(a, t0, Death::Partition),
            2 => {
                g.death(a, t0, Death::Drop);
                if g.dice.chance(50) {
                    g.plan.actors[a].reconnect = Some(g.dice.ms(300, 1500));
                }
            }
            3 => {
                let start = g.dice.ms(800, 2000);
                g.blips(a, start, w, true);
            }
            _ => {
                // Long enough to be closed, then the client runs again and learns it.
                let d = TIMING.close_upper_bound() + g.dice.ms(200, 1500);
                let at = g.dice.ms(800, 1500);
                g.step(a, at, Step::Freeze(d));
            }
        }
    }
}

/// A second client connects with an ID in use: accepted once the holder is silent,
/// refused while it answers.
fn duplicate_client_id(g: &mut Gen) {
    g.window(ms(8000), ms(14_000));
    let w = g.plan.workload_end.as_millis() as u64;
    g.publisher("dup", ms(500), ms(w), (150, 400));
    let pairs = g.dice.range(2, 4);
    for p in 0..pairs {
        let id = format!("dup-{p}");
        let at = g.dice.ms(0, 200);
        let a = g.actor(Some(&id), at);
        let s = spec(
            "dup",
            SubKind::Plain,
            StartAt::NewOnly,
            64,
            30,
            AckPolicy::Auto,
        );
        g.step(a, ms(300), Step::Subscribe(s.clone()));
        let tb = g.dice.range(1000, 3000);
        let connect_b = match g.dice.range(0, 5) {
            0 => g.dice.range(1000, w - 2000),
            1 => {
                let d = g.dice.range(1000, 1500);
                if g.dice.chance(50) {
                    g.fault(a, ms(tb), FaultKind::Hold);
                    g.fault(a, ms(tb + d), FaultKind::Release);
                } else {
                    g.step(a, ms(tb), Step::Freeze(ms(d)));
                }
                tb + g.dice.range(50, d - 800)
            }
            2 => {
                g.death(a, ms(tb), Death::Freeze);
                tb + g.dice.range(100, 3000)
            }
            3 => {
                g.death(a, ms(tb), Death::Partition);
                tb + g.dice.range(100, 3000)
            }
            _ => {
                g.death(a, ms(tb), Death::Drop);
                tb + g.dice.range(50, 2000)
            }
        };
        let b = g.actor(Some(&id), ms(connect_b));
        g.plan.actors[b].reconnect = Some(g.dice.ms(500, 1000));
        g.step(b, ms(connect_b), Step::Subscribe(s));
    }
}

/// Manual acks that are skipped or cut off by a lost connection must be made good by
/// redelivery.
fn ack_redelivery(g: &mut Gen) {
    g.window(ms(8000), ms(16_000));
    let w = g.plan.workload_end;
    let channels: &[&str] = if g.dice.chance(50) {
        &["work", "work2"]
    } else {
        &["work"]
    };
    for ch in channels {
        g.publisher(ch, ms(500), w - ms(1000), (100, 300));
    }
    let subscribers = g.dice.range(2, 5);
    for k in 0..subscribers {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        g.plan.actors[a].reconnect = Some(g.dice.ms(300, 800));
        for (i, ch) in channels.iter().enumerate() {
            let kind = if g.dice.chance(50) {
                SubKind::Durable(format!("d{k}-{i}"))
            } else {
                SubKind::Plain
            };
            let start = g.dice.pick(&[StartAt::NewOnly, StartAt::First]);
            let ack = g.manual((10, 40), (1, 3), (0, 200));
            let mif = g.dice.range(4, 33) as i32;
            let s = spec(ch, kind, start, mif, g.dice.range(1, 3) as i32, ack);
            g.step(a, ms(400), Step::Subscribe(s));
        }
        match g.dice.range(0, 3) {
            0 => {
                let at = g.dice.ms(1000, 2500);
                g.blips(a, at, w, false);
            }
            1 => {
                let at = g.dice.ms(2000, w.as_millis() as u64 - 3000);
                g.fault(a, at, FaultKind::Partition);
                let back = at + g.dice.ms(1000, 2500);
                g.fault(a, back, FaultKind::Repair);
            }
            _ => {}
        }
    }
}

/// Queue members die with messages pending; the group's other members must get them.
fn queue_member_death(g: &mut Gen) {
    g.window(ms(8000), ms(16_000));
    let w = g.plan.workload_end.as_millis() as u64;
    g.publisher("q", ms(1000), ms(w - 1000), (50, 200));
    let kind = if g.dice.chance(50) {
        SubKind::Queue("workers".into())
    } else {
        SubKind::DurableQueue {
            durable: "dq".into(),
            group: "workers".into(),
        }
    };
    // The anchor stays healthy, so the group lives through the whole run.
    let at = g.dice.ms(0, 300);
    let anchor = g.actor(None, at);
    let ack = g.manual((0, 20), (1, 2), (0, 100));
    let s = spec(
        "q",
        kind.clone(),
        StartAt::NewOnly,
        g.dice.range(4, 17) as i32,
        1,
        ack,
    );
    g.step(anchor, ms(400), Step::Subscribe(s));
    let members = g.dice.range(2, 4);
    let victims = g.dice.range(1, members.min(2) + 1);
    for m in 0..members {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        let ack = g.manual((0, 30), (1, 2), (100, 500));
        let s = spec(
            "q",
            kind.clone(),
            StartAt::NewOnly,
            g.dice.range(2, 9) as i32,
            g.dice.range(1, 3) as i32,
            ack,
        );
        g.step(a, ms(500), Step::Subscribe(s));
        if m < victims {
            let at = g.dice.ms(2000, w - 1500);
            match g.dice.range(0, 6) {
                0 => g.death(a, at, Death::Freeze),
                1 => g.death(a, at, Death::Partition),
                2 => g.death(a, at, Death::Drop),
                3 => g.death(a, at, Death::Close),
                4 => g.step(
                    a,
                    at,
                    Step::EndSub {
                        n: 0,
                        unsubscribe: false,
                    },
                ),
                _ => g.step(
                    a,
                    at,
                    Step::EndSub {
                        n: 0,
                        unsubscribe: true,
                    },
                ),
            }
        }
    }
}

/// Durables survive closes, lost connections and partitions, and resume where they were.
fn durable_resume(g: &mut Gen) {
    g.window(ms(9000), ms(16_000));
    let w = g.plan.workload_end.as_millis() as u64;
    g.publisher("d", ms(500), ms(w - 500), (80, 250));
    let subscribers = g.dice.range(2, 4);
    for _ in 0..subscribers {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        g.plan.actors[a].reconnect = Some(g.dice.ms(300, 800));
        let start = g.dice.pick(&[
            StartAt::First,
            StartAt::NewOnly,
            StartAt::LastReceived,
            StartAt::Sequence(3),
        ]);
        let ack = if g.dice.chance(60) {
            g.manual((0, 30), (1, 3), (0, 150))
        } else {
            AckPolicy::Auto
        };
        let s = spec(
            "d",
            SubKind::Durable("dur".into()),
            start,
            g.dice.range(4, 65) as i32,
            g.dice.range(1, 3) as i32,
            ack,
        );
        g.step(a, ms(400), Step::Subscribe(s));
        let mut t = g.dice.range(1200, 2500);
        let interruptions = g.dice.range(1, 4);
        for _ in 0..interruptions {
            if t + 2000 > w {
                break;
            }
            let pause = g.dice.range(300, 1500);
            match g.dice.range(0, 4) {
                0 => {
                    g.step(
                        a,
                        ms(t),
                        Step::EndSub {
                            n: 0,
                            unsubscribe: false,
                        },
                    );
                    g.step(a, ms(t + pause), Step::Resume { n: 0 });
                }
                1 => {
                    g.step(a, ms(t), Step::Close);
                    g.step(a, ms(t + pause), Step::Connect);
                }
                2 => g.step(a, ms(t), Step::Drop),
                _ => {
                    g.fault(a, ms(t), FaultKind::Partition);
                    g.fault(a, ms(t + pause + 500), FaultKind::Repair);
                    // The client learns of the loss from its pings, then reconnects.
                    t += 4000;
                }
            }
            t += pause + g.dice.range(1500, 3000);
        }
    }
}

/// A channel at its message limit keeps the newest messages, in order, for every kind
/// of subscriber.
fn limits(g: &mut Gen) {
    g.window(ms(6000), ms(14_000));
    let w = g.plan.workload_end.as_millis() as u64;
    g.plan.limits.max_msgs = g.dice.range(5, 31) as i64;
    for _ in 0..2 {
        g.publisher("lim", ms(600), ms(w - 500), (20, 80));
    }
    let fast = g.actor(None, ms(0));
    g.step(
        fast,
        ms(100),
        Step::Subscribe(spec(
            "lim",
            SubKind::Plain,
            StartAt::NewOnly,
            100_000,
            30,
            AckPolicy::Auto,
        )),
    );
    let slow = g.dice.range(1, 3);
    for k in 0..slow {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        let kind = if g.dice.chance(50) {
            SubKind::Durable(format!("slow{k}"))
        } else {
            SubKind::Plain
        };
        let start = g
            .dice
            .pick(&[StartAt::First, StartAt::NewOnly, StartAt::LastReceived]);
        // Slow, but able to drain what the limit keeps within the run's last seconds;
        // or one that leaves every message unacknowledged once, so that its pending
        // messages age out of the channel before their redelivery.
        let (ack, mif) = if g.dice.chance(30) {
            let delay = g.dice.ms(0, 50);
            let skip_all = AckPolicy::Manual {
                skip_percent: 100,
                max_skips: 1,
                delay,
            };
            (skip_all, g.dice.range(1, 3))
        } else {
            (g.manual((0, 15), (1, 2), (20, 100)), g.dice.range(2, 6))
        };
        let s = spec("lim", kind, start, mif as i32, 1, ack);
        g.step(a, ms(400), Step::Subscribe(s));
        if g.dice.chance(50) {
            let at = g.dice.ms(1000, 2000);
            g.blips(a, at, ms(w), true);
        }
    }
    // Well after publishing stopped (a new subscription makes the server look at every
    // subscription of the channel again, which must not be what unblocks the others):
    // must see exactly the newest `max_msgs` messages.
    let audit = g.actor(Some("audit"), ms(w + 4000));
    g.step(
        audit,
        ms(w + 4100),
        Step::Subscribe(spec(
            "lim",
            SubKind::Plain,
            StartAt::First,
            100_000,
            30,
            AckPolicy::Auto,
        )),
    );
}

/// Everything at once: every subscription kind and start position, manual and automatic
/// acks, closes, resumes, reconnects that reuse client IDs, and every kind of fault.
fn mixed(g: &mut Gen) {
    g.window(ms(10_000), ms(20_000));
    let w = g.plan.workload_end.as_millis() as u64;
    let channels = ["m1", "m2"];
    for ch in channels {
        g.publisher(ch, ms(300), ms(w - 1000), (150, 500));
    }
    let actors = g.dice.range(3, 6);
    for k in 0..actors {
        let shared =
            (k > 0 && g.dice.chance(15)).then(|| format!("client-{}", g.plan.actors.len()));
        let at = g.dice.ms(0, 500);
        let a = g.actor(shared.as_deref(), at);
        if g.dice.chance(70) {
            g.plan.actors[a].reconnect = Some(g.dice.ms(300, 1000));
        }
        if g.dice.chance(40) {
            let ch = g.dice.pick(&channels);
            let from = g.dice.ms(500, 3000);
            g.publishes(a, ch, from, ms(w - 1000), (200, 600));
        }
        let subs = g.dice.range(1, 3);
        for i in 0..subs {
            let ch = g.dice.pick(&channels);
            let kind = match g.dice.range(0, 4) {
                0 => SubKind::Plain,
                1 => SubKind::Durable(format!("md{k}-{i}")),
                2 => SubKind::Queue("mq".into()),
                _ => SubKind::DurableQueue {
                    durable: "mdq".into(),
                    group: "mq2".into(),
                },
            };
            let start = g.start();
            // Manual subscribers get room enough to drain a resumed backlog before the
            // run ends, skipped acks included.
            let (ack, mif) = if g.dice.chance(60) {
                (g.manual((0, 15), (1, 3), (0, 150)), g.dice.range(3, 65))
            } else {
                (AckPolicy::Auto, g.dice.range(1, 65))
            };
            let s = spec(ch, kind, start, mif as i32, g.dice.range(1, 3) as i32, ack);
            let at = g.dice.ms(300, 2000);
            g.step(a, at, Step::Subscribe(s));
        }
        let t = g.dice.range(2500, w - 1500);
        match g.dice.range(0, 9) {
            0 => {
                let unsubscribe = g.dice.chance(50);
                g.step(a, ms(t), Step::EndSub { n: 0, unsubscribe });
            }
            1 => {
                g.step(
                    a,
                    ms(t),
                    Step::EndSub {
                        n: 0,
                        unsubscribe: false,
                    },
                );
                let back = ms(t + g.dice.range(300, 2000));
                g.step(a, back, Step::Resume { n: 0 });
            }
            2 => {
                g.step(a, ms(t), Step::Close);
                if g.dice.chance(70) {
                    let back = ms(t + g.dice.range(300, 2000));
                    g.step(a, back, Step::Connect);
                }
            }
            3 => g.death(a, ms(t), Death::Drop),
            4 => g.death(a, ms(t), Death::Freeze),
            5 => {
                g.fault(a, ms(t), FaultKind::Partition);
                let back = ms(t + g.dice.range(500, 3000));
                g.fault(a, back, FaultKind::Repair);
            }
            6 => {
                g.blips(a, ms(t.min(w - 3000)), ms(w), true);
            }
            7 => {
                let d = g.dice.ms(1500, 6000);
                g.step(a, ms(t), Step::Freeze(d));
            }
            _ => {}
        }
    }
}

/// The server dies and starts again with an empty memory store: clients notice, come
/// back under the same IDs, subscribe again, and the new process serves them as fully as
/// the first; nothing from before is owed.
fn server_restart(g: &mut Gen) {
    g.window(ms(10_000), ms(18_000));
    let w = g.plan.workload_end.as_millis() as u64;
    let publishers = g.dice.range(1, 3);
    for _ in 0..publishers {
        let p = g.publisher("r", ms(500), ms(w - 1000), (100, 300));
        g.plan.actors[p].reconnect = Some(g.dice.ms(300, 800));
    }
    let subscribers = g.dice.range(2, 5);
    for k in 0..subscribers {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        g.plan.actors[a].reconnect = Some(g.dice.ms(300, 800));
        let kind = match g.dice.range(0, 3) {
            0 => SubKind::Plain,
            1 => SubKind::Durable(format!("rd{k}")),
            _ => SubKind::Queue("rq".into()),
        };
        let start = g.dice.pick(&[StartAt::NewOnly, StartAt::First]);
        let ack = if g.dice.chance(50) {
            g.manual((0, 20), (1, 2), (0, 150))
        } else {
            AckPolicy::Auto
        };
        let s = spec("r", kind, start, g.dice.range(4, 65) as i32, 1, ack);
        g.step(a, ms(400), Step::Subscribe(s));
    }
    crashes(g, w);
}

/// One or two crashes, each followed by a restart; returns when the last restart is.
fn crashes(g: &mut Gen, w: u64) -> Option<u64> {
    let mut t = g.dice.range(2000, 4000);
    let mut last = None;
    let crashes = g.dice.range(1, 3);
    for _ in 0..crashes {
        if t + 4000 > w {
            break;
        }
        let down = g.dice.range(200, 2000);
        g.plan.faults.push(Fault {
            at: ms(t),
            actor: 0,
            kind: FaultKind::Crash,
        });
        g.plan.faults.push(Fault {
            at: ms(t + down),
            actor: 0,
            kind: FaultKind::Restart,
        });
        last = Some(t + down);
        t += down + g.dice.range(3000, 5000);
    }
    last
}

/// The server loses power and recovers its FILE store from disk. With `--file_sync`
/// nothing acknowledged may be lost: durables resume where they were and a subscriber
/// from the first message after the last restart sees every acknowledged message.
/// Without it the store may lose what came after its last sync, and a torn last record
/// must not keep it from starting.
fn file_restart(g: &mut Gen, sync: bool) {
    g.plan.store = StoreKind::File { sync };
    g.window(ms(10_000), ms(18_000));
    let w = g.plan.workload_end.as_millis() as u64;
    let channels: &[&str] = if g.dice.chance(40) {
        &["f", "f2"]
    } else {
        &["f"]
    };
    for ch in channels {
        let p = g.publisher(ch, ms(500), ms(w - 1000), (80, 300));
        g.plan.actors[p].reconnect = Some(g.dice.ms(300, 800));
    }
    let subscribers = g.dice.range(2, 5);
    for k in 0..subscribers {
        let at = g.dice.ms(0, 300);
        let a = g.actor(None, at);
        g.plan.actors[a].reconnect = Some(g.dice.ms(300, 800));
        let ch = g.dice.pick(channels);
        let kind = match g.dice.range(0, 5) {
            0 => SubKind::Plain,
            1 => SubKind::DurableQueue {
                durable: "fdq".into(),
                group: "fq".into(),
            },
            _ => SubKind::Durable(format!("fd{k}")),
        };
        let start = g
            .dice
            .pick(&[StartAt::First, StartAt::First, StartAt::NewOnly]);
        let ack = if g.dice.chance(50) {
            g.manual((0, 20), (1, 2), (0, 150))
        } else {
            AckPolicy::Auto
        };
        let s = spec(ch, kind, start, g.dice.range(4, 65) as i32, 1, ack);
        g.step(a, ms(400), Step::Subscribe(s));
    }
    let last_restart = crashes(g, w);
    // Joins once the server is back for good and reads each channel from the start.
    let at = last_restart.map_or(w / 2, |t| t + 500).min(w - 500);
    let reader = g.actor(Some("reader"), ms(at));
    g.plan.actors[reader].reconnect = Some(g.dice.ms(300, 800));
    for ch in channels {
        let s = spec(
            ch,
            SubKind::Plain,
            StartAt::First,
            100_000,
            30,
            AckPolicy::Auto,
        );
        g.step(reader, ms(at + 100), Step::Subscribe(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()), Some(s));
        }
        assert_eq!(Scenario::from_name("nope"), None);
    }

    #[test]
    fn a_seed_fixes_the_plan_and_seeds_differ() {
        for s in Scenario::ALL {
            let a = format!("{:?}", s.plan(7));
            assert_eq!(a, format!("{:?}", s.plan(7)));
            assert_ne!(a, format!("{:?}", s.plan(8)));
        }
    }

    #[test]
    fn steps_and_faults_stay_inside_the_run() {
        for s in Scenario::ALL {
            for seed in 0..50 {
                let p = s.plan(seed);
                assert!(p.workload_end < p.end);
                for a in &p.actors {
                    assert!(a.steps.windows(2).all(|w| w[0].0 <= w[1].0));
                    assert!(
                        a.steps.iter().all(|(at, _)| *at < p.end),
                        "{} {seed}",
                        s.name()
                    );
                }
                assert!(p.faults.iter().all(|f| f.at < p.end));
            }
        }
    }
}

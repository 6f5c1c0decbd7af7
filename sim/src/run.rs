//! One run: build the simulated network from the plan, step it while applying the
//! faults on schedule, then hand the journal to the oracle.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once};
use std::time::{Duration, UNIX_EPOCH};

use crate::actor::Actor;
use crate::journal::{trace_hash, Entry, Ev, Journal, Silence};
use crate::oracle;
use crate::plan::{FaultKind, Options, Plan, StoreKind, TEAR_PERCENT, TIMING};
use crate::scenarios::Scenario;
use crate::server::{self, sim_now, EPOCH_NS, SERVER_HOST};
use crate::simfs::Disk;

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    pub seed: u64,
    pub options: Options,
    pub entries: Vec<Entry>,
    pub hash: u64,
    pub violations: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let features = if cfg!(feature = "planted-bugs") {
            " --features planted-bugs"
        } else {
            ""
        };
        format!(
            "cargo run -p stan-sim{features} -- --seed {} --scenario {} --trace{}",
            self.seed,
            self.scenario.name(),
            self.options.flags()
        )
    }
}

thread_local! {
    /// Panics seen on this thread during the current run, including those tokio
    /// catches in spawned tasks (a connection task of the driver, say).
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn install_panic_recorder() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
}

/// Runs `scenario` with `seed` and judges it.
pub fn run(scenario: Scenario, seed: u64) -> Report {
    run_with(scenario, seed, Options::default())
}

/// [`run`] with options beyond the seed.
pub fn run_with(scenario: Scenario, seed: u64, options: Options) -> Report {
    install_panic_recorder();
    PANICS.with(|p| p.borrow_mut().clear());
    let mut plan = scenario.plan(seed);
    plan.options = options;
    let plan = Arc::new(plan);
    #[cfg(feature = "planted-bugs")]
    stan_core::streaming::plant(options.planted);
    let journal = Journal::default();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| simulate(&plan, &journal)));
    #[cfg(feature = "planted-bugs")]
    stan_core::streaming::plant(None);
    let end = plan.end;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => journal.record(
            end,
            Ev::Panic {
                message: format!("simulation failed: {e}"),
            },
        ),
        Err(_) => journal.record(
            end,
            Ev::Panic {
                message: "the simulation itself panicked".into(),
            },
        ),
    }
    for message in PANICS.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        journal.record(end, Ev::Panic { message });
    }
    let entries = journal.sorted();
    let hash = trace_hash(&entries);
    let violations = oracle::check(&plan, &entries);
    Report {
        scenario,
        seed,
        options,
        entries,
        hash,
        violations,
    }
}

fn simulate(plan: &Arc<Plan>, journal: &Journal) -> turmoil::Result {
    let mut sim = turmoil::Builder::new()
        .rng_seed(plan.seed)
        .epoch(UNIX_EPOCH + Duration::from_nanos(EPOCH_NS as u64))
        .tick_duration(TIMING.tick)
        .min_message_latency(TIMING.min_latency)
        .max_message_latency(TIMING.max_latency)
        .simulation_duration(plan.end + Duration::from_secs(10))
        .build();
    // The server's list is read a little before the clients leave, so that their
    // departure cannot blur it.
    let final_at = plan.end.saturating_sub(Duration::from_millis(50));
    let disk = Disk::default();
    if plan.store == (StoreKind::File { sync: false }) {
        let journal = journal.clone();
        disk.on_sync(Arc::new(move || journal.record(sim_now(), Ev::DiskSynced)));
    }
    // Which crashes tear a write, and where.
    let mut tears = stan_core::Rng::new(plan.seed ^ 0x7465_6172);
    {
        let (plan, journal, disk) = (plan.clone(), journal.clone(), disk.clone());
        let starts = std::cell::Cell::new(0);
        sim.host(SERVER_HOST, move || {
            let process = starts.replace(starts.get() + 1);
            server::serve(
                plan.clone(),
                process,
                journal.clone(),
                disk.clone(),
                final_at,
            )
        });
    }
    for a in &plan.actors {
        let actor = Actor::new(a.clone(), plan, journal.clone());
        sim.client(host_name(a.id), actor.run());
    }
    let mut faults = plan.faults.iter().peekable();
    loop {
        while let Some(f) = faults.next_if(|f| f.at <= sim.elapsed()) {
            let host = host_name(f.actor);
            let at = sim.elapsed();
            let ev = match f.kind {
                FaultKind::Hold => {
                    sim.hold(SERVER_HOST, host.as_str());
                    Ev::SilenceStart {
                        actor: f.actor,
                        cause: Silence::Hold,
                    }
                }
                FaultKind::Release => {
                    sim.release(SERVER_HOST, host.as_str());
                    Ev::SilenceEnd {
                        actor: f.actor,
                        cause: Silence::Hold,
                    }
                }
                FaultKind::Partition => {
                    sim.partition(SERVER_HOST, host.as_str());
                    Ev::SilenceStart {
                        actor: f.actor,
                        cause: Silence::Partition,
                    }
                }
                FaultKind::Repair => {
                    sim.repair(SERVER_HOST, host.as_str());
                    Ev::SilenceEnd {
                        actor: f.actor,
                        cause: Silence::Partition,
                    }
                }
                FaultKind::Crash => {
                    // The host vanishes as in a power loss: the packets its dying sockets
                    // would send are lost. Otherwise they would leave in the order tokio
                    // drops its tasks, which follows process-wide task IDs, and each
                    // would draw its latency from the shared generator in that order:
                    // a second run in the same process would differ.
                    for a in &plan.actors {
                        sim.partition(SERVER_HOST, host_name(a.id).as_str());
                    }
                    if let Some(t) = disk.power_cut(&mut tears, TEAR_PERCENT) {
                        journal.record(
                            at,
                            Ev::Torn {
                                file: t.file,
                                kept: t.kept,
                                unsynced: t.unsynced,
                            },
                        );
                    }
                    sim.crash(SERVER_HOST);
                    for a in &plan.actors {
                        sim.repair(SERVER_HOST, host_name(a.id).as_str());
                    }
                    Ev::ServerDown
                }
                FaultKind::Restart => {
                    sim.bounce(SERVER_HOST);
                    Ev::ServerUp
                }
            };
            journal.record(at, ev);
        }
        let done = sim.step();
        if !matches!(done, Ok(false)) {
            // The simulation is over and about to drop the host: the store's shutdown
            // path must not run on a disk that is no longer reachable.
            disk.power_off();
            return done.map(|_| ());
        }
    }
}

fn host_name(actor: u32) -> String {
    format!("c{actor}")
}

/// Runs every seed of `seeds` (each with `scenario`, or with the scenario the seed
/// picks) and returns the failing reports.
pub fn soak(
    seeds: std::ops::Range<u64>,
    scenario: Option<Scenario>,
    options: Options,
    mut each: impl FnMut(&Report),
) -> Vec<Report> {
    let mut failed = Vec::new();
    for seed in seeds {
        let report = run_with(
            scenario.unwrap_or_else(|| Scenario::for_seed(seed)),
            seed,
            options,
        );
        each(&report);
        if !report.passed() {
            failed.push(report);
        }
    }
    failed
}

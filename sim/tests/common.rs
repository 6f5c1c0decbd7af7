//! Running many seeds on every core: each run is single-threaded and independent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use stan_sim::{run_with, Options, Report, Scenario};

/// Runs `seeds` (each with the scenario it picks, or `scenario`) on all cores and
/// returns the reports in seed order.
pub fn run_all(
    seeds: std::ops::Range<u64>,
    scenario: Option<Scenario>,
    options: Options,
) -> Vec<Report> {
    let next = AtomicU64::new(seeds.start);
    let out = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let report = run_with(
                    scenario.unwrap_or_else(|| Scenario::for_seed(seed)),
                    seed,
                    options,
                );
                out.lock().unwrap().push(report);
            });
        }
    });
    let mut reports = out.into_inner().unwrap();
    reports.sort_by_key(|r| r.seed);
    reports
}

#[allow(dead_code)]
/// One line per failing run: its first violations and the command that replays it.
pub fn describe_failures(reports: &[Report]) -> String {
    let mut text = String::new();
    for r in reports.iter().filter(|r| !r.passed()) {
        text.push_str(&format!(
            "seed {} ({}) failed:\n",
            r.seed,
            r.scenario.name()
        ));
        for v in r.violations.iter().take(3) {
            text.push_str(&format!("    {v}\n"));
        }
        text.push_str(&format!("  replay: {}\n", r.replay_command()));
    }
    text
}

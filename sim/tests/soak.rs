//! Many seeds across every scenario, judged by the oracle.

mod common;

use std::time::Instant;

use stan_sim::{Options, Scenario};

/// 630 seeds: 63 per scenario.
const SEEDS: u64 = 630;

#[test]
fn every_seed_passes_the_oracle() {
    let started = Instant::now();
    let reports = common::run_all(0..SEEDS, None, Options::default());
    let failed = common::describe_failures(&reports);
    let events: usize = reports.iter().map(|r| r.entries.len()).sum();
    println!(
        "{} seeds, {events} events, in {:.1?}",
        reports.len(),
        started.elapsed()
    );
    for s in Scenario::ALL {
        let n = reports.iter().filter(|r| r.scenario == s).count();
        assert!(n >= 60, "{} ran only {n} seeds", s.name());
    }
    assert!(failed.is_empty(), "failing seeds:\n{failed}");
}

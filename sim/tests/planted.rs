//! The oracle catches each deliberate fault of the core and of the FILE store (feature
//! `planted-bugs`), and the failing seed passes once the fault is gone: the simulator
//! finds real mistakes in heartbeat counting, ack-wait redelivery, queue-group
//! redelivery and the store's fsync.
//!
//! cargo test -p stan-sim --features planted-bugs --test planted
#![cfg(feature = "planted-bugs")]

mod common;

use stan_core::streaming::PlantedBug;
use stan_sim::{run_with, Options, Scenario};

fn caught(bug: PlantedBug, scenario: Scenario, expect: &str) {
    let planted = Options {
        planted: Some(bug),
        ..Options::default()
    };
    let reports = common::run_all(0..24, Some(scenario), planted);
    let failing: Vec<_> = reports
        .iter()
        .filter(|r| r.violations.iter().any(|v| v.contains(expect)))
        .collect();
    assert!(
        !failing.is_empty(),
        "{bug:?} went unnoticed in 24 seeds of {}; other failures:\n{}",
        scenario.name(),
        common::describe_failures(&reports)
    );
    let first = failing[0];
    println!(
        "{bug:?} caught by {} seed(s), first: {}",
        failing.len(),
        first.replay_command()
    );
    let clean = run_with(scenario, first.seed, Options::default());
    assert!(
        clean.passed(),
        "seed {} fails without {bug:?} too: {:?}",
        first.seed,
        clean.violations
    );
}

#[test]
fn closing_one_heartbeat_early_is_caught() {
    caught(
        PlantedBug::HeartbeatCount,
        Scenario::HeartbeatTimeout,
        "without cause",
    );
}

#[test]
fn redelivering_only_once_is_caught() {
    caught(
        PlantedBug::AckWaitRedelivery,
        Scenario::AckRedelivery,
        "never acknowledged",
    );
}

#[test]
fn dropping_a_dead_members_pending_messages_is_caught() {
    caught(
        PlantedBug::QueueRedelivery,
        Scenario::QueueMemberDeath,
        "never acknowledged",
    );
}

#[test]
fn acknowledging_without_fsync_is_caught() {
    caught(
        PlantedBug::FileSyncSkipped,
        Scenario::FileRestart,
        "the store lost",
    );
}

//! The streaming server behind a plain NATS server on its host (`-ns`): the scenarios'
//! invariants hold with every message crossing the streaming server's own
//! connections, through restarts of the host.
//!
//! `limits` is left out: its oracle dates a channel's evictions by the PubAcks
//! clients see, within two network latencies, and the extra hop of every PubAck here
//! puts the eviction further back than that.

mod common;

use stan_sim::{Options, Scenario};

#[test]
fn scenarios_hold_behind_an_external_nats_server() {
    let options = Options {
        external_nats: true,
        ..Options::default()
    };
    for scenario in Scenario::ALL {
        if scenario == Scenario::Limits {
            continue;
        }
        let reports = common::run_all(0..4, Some(scenario), options);
        assert!(
            reports.iter().all(|r| r.passed()),
            "{}:\n{}",
            scenario.name(),
            common::describe_failures(&reports)
        );
    }
}

//! Hostile clients against the real binary on loopback. Each test starts a server, runs
//! a well-behaved streaming client on its own channel throughout, does one kind of harm,
//! and checks functional outcomes only: the error and close the NATS server gives that
//! harm, the server still up and serving, its memory back within 10 % of its value
//! before the harm, and every message the well-behaved client had acknowledged
//! delivered to it once and in order. Timeouts are generous and only turn hangs into
//! failures; latency is measured by `stan-hostile`, never asserted here.

use std::path::PathBuf;
use std::time::Duration;

use stan_runtime::harness::hostile::{self, Limits, Outcome};
use stan_runtime::harness::session::{PhaseReport, Session};
use stan_runtime::harness::{mib, nofile_limit_of, raise_nofile_limit};

const LIMITS: Limits = Limits {
    max_control_line: 512,
    max_pending: 16 * 1024 * 1024,
};

fn server_bin() -> PathBuf {
    std::env::var_os("STAN_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stan-server")))
}

/// Starts a session, runs `attack` once as a rehearsal (the warm-up after which the
/// memory baseline is taken: the allocator's arenas reach their working size the first
/// time a burst goes through them), then once more as the measured phase, and checks
/// everything after both.
async fn under_attack<F, Fut>(name: &str, attack: F)
where
    F: Fn(hostile::Target) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, String>>,
{
    raise_nofile_limit();
    let mut s = Session::start(&server_bin(), LIMITS, Duration::from_millis(5))
        .await
        .expect("server and well-behaved client start");
    let rehearsal: PhaseReport = s.phase(name, attack(s.target.clone())).await;
    if let Err(e) = &rehearsal.outcome {
        panic!("{name} (rehearsal): {e}");
    }
    assert!(
        rehearsal.server_alive && rehearsal.probe_alive,
        "{rehearsal:?}"
    );
    let r: PhaseReport = s.phase(name, attack(s.target.clone())).await;
    eprintln!(
        "{name}: {:?}; RSS {} -> {}",
        r.outcome,
        mib(r.rss_before),
        mib(r.rss_after)
    );
    assert!(r.server_alive, "{name}: the server died");
    if let Err(e) = &r.outcome {
        panic!("{name}: {e}");
    }
    assert!(
        r.probe_alive,
        "{name}: the well-behaved client stopped getting messages"
    );
    assert!(
        r.rss_recovered(),
        "{name}: RSS {} before, {} after settling (more than 10 % above)",
        mib(r.rss_before),
        mib(r.rss_after)
    );
    let report = s.finish().await;
    assert!(
        report.is_clean(),
        "{name}: the well-behaved client lost or reordered messages: {report:?}"
    );
    assert!(
        report.acked > 0 && report.received >= report.acked,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_as_nats_closes_them() {
    under_attack("slowloris", |t| async move {
        hostile::slowloris(&t, LIMITS, 100, 50, Duration::from_millis(10)).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_closed_as_a_slow_consumer() {
    under_attack("slow consumer", |t| async move {
        hostile::slow_consumer(&t, LIMITS, 1024).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gigabyte_payload_claim_is_refused_without_allocating_it() {
    under_attack("1 GB payload claims", |t| async move {
        hostile::huge_payload(&t, 200).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_opened_and_dropped() {
    let limit = raise_nofile_limit();
    // Waves small enough for both processes' descriptor limits, with room to spare.
    let wave = ((limit / 4) as usize).clamp(100, 1000);
    under_attack("connection churn", |t| async move {
        hostile::churn(&t, 10_000, wave).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_protobufs_on_every_streaming_subject() {
    under_attack("garbage protobufs", |t| async move {
        hostile::garbage_protobufs(&t, 50_000, 7).await
    })
    .await;
}

#[tokio::test]
async fn the_server_inherits_the_raised_descriptor_limit() {
    let limit = raise_nofile_limit();
    let server = stan_runtime::harness::ServerProcess::start(&server_bin(), None, &[]).unwrap();
    let mut tries = 0;
    let theirs = loop {
        if let Some(l) = nofile_limit_of(server.pid()) {
            break l;
        }
        tries += 1;
        assert!(tries < 100, "no /proc limits for the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(theirs, limit);
}

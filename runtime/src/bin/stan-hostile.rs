//! `stan-hostile`: the well-behaved client's publish-to-delivery latency on an idle
//! server and during each kind of hostile traffic, as ratios to idle measured in the
//! same run, with the server's memory before and after each phase.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use stan_runtime::harness::hostile::{self, Limits, Outcome, Target};
use stan_runtime::harness::session::{PhaseReport, Session};
use stan_runtime::harness::{mib, raise_nofile_limit};

const USAGE: &str = "Usage: stan-hostile [-server_bin <path>] [-phase <seconds>] [-only <names>]

Starts the server (default $STAN_SERVER_BIN), runs a well-behaved streaming client
throughout, and measures its latency idle and during each hostile phase (each repeated
for at least -phase seconds, default 5). -only runs the listed phases (comma separated:
slowloris, slow-consumer, huge-payload, churn, garbage) between the two idle ones.
";

const PHASES: &[&str] = &[
    "slowloris",
    "slow-consumer",
    "huge-payload",
    "churn",
    "garbage",
];

const LIMITS: Limits = Limits {
    max_control_line: 512,
    max_pending: 16 * 1024 * 1024,
};

/// Repeats `attack` until `min` has passed; earlier outcomes are released at once, the
/// last one is left to the caller's memory check.
async fn repeat<F, Fut>(min: Duration, attack: F) -> Result<Outcome, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Outcome, String>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let o = attack().await?;
        if start.elapsed() >= min {
            return Ok(o);
        }
        o.release().await?;
    }
}

fn main() {
    let mut bin = std::env::var_os("STAN_SERVER_BIN").map(PathBuf::from);
    let mut phase = Duration::from_secs(5);
    let mut only: Vec<String> = PHASES.iter().map(|p| p.to_string()).collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.trim_start_matches('-') {
            "server_bin" => bin = it.next().map(PathBuf::from),
            "only" => {
                only = it
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                if only.is_empty() || only.iter().any(|p| !PHASES.contains(&p.as_str())) {
                    eprint!("{USAGE}");
                    std::process::exit(2);
                }
            }
            "phase" => {
                phase = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs)
                    .unwrap_or_else(|| {
                        eprint!("{USAGE}");
                        std::process::exit(2)
                    })
            }
            _ => {
                eprint!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let Some(bin) = bin else {
        eprint!("no server binary\n{USAGE}");
        std::process::exit(2);
    };
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let ok = rt.block_on(async move {
        let mut s = match Session::start(&bin, LIMITS, Duration::from_millis(5)).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("stan-hostile: {e}");
                return false;
            }
        };
        let t: Target = s.target.clone();
        let mut reports: Vec<PhaseReport> = Vec::new();
        reports.push(s.idle(phase).await);
        let t1 = t.clone();
        if only.iter().any(|p| p == "slowloris") {
            reports.push(
                s.phase(
                    "slowloris",
                    repeat(phase, || {
                        hostile::slowloris(&t1, LIMITS, 100, 50, Duration::from_millis(10))
                    }),
                )
                .await,
            );
        }
        if only.iter().any(|p| p == "slow-consumer") {
            reports.push(
                s.phase(
                    "slow consumer",
                    repeat(phase, || hostile::slow_consumer(&t, LIMITS, 1024)),
                )
                .await,
            );
        }
        if only.iter().any(|p| p == "huge-payload") {
            reports.push(
                s.phase(
                    "1 GB payload claims",
                    repeat(phase, || hostile::huge_payload(&t, 200)),
                )
                .await,
            );
        }
        if only.iter().any(|p| p == "churn") {
            reports.push(
                s.phase(
                    "10,000 connections",
                    repeat(phase, || hostile::churn(&t, 10_000, 1000)),
                )
                .await,
            );
        }
        let seed = std::sync::atomic::AtomicU64::new(1);
        if only.iter().any(|p| p == "garbage") {
            reports.push(
                s.phase(
                    "garbage protobufs",
                    repeat(phase, || {
                        let n = seed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        hostile::garbage_protobufs(&t, 50_000, n)
                    }),
                )
                .await,
            );
        }
        reports.push(s.idle(phase).await);
        let probe = s.finish().await;

        let idle = reports[0].latency;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!(
            "{:<22} {:>7} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}  result",
            "phase", "samples", "p50", "p99", "p50/idle", "p99/idle", "RSS before", "RSS after"
        );
        let mut ok = probe.is_clean();
        for r in &reports {
            ok &= r.passed();
            println!(
                "{:<22} {:>7} {:>10.2?} {:>10.2?} {:>8.2}x {:>8.2}x {:>10} {:>10}  {}",
                r.name,
                r.latency.count,
                r.latency.p50,
                r.latency.p99,
                ratio(r.latency.p50, idle.p50),
                ratio(r.latency.p99, idle.p99),
                mib(r.rss_before),
                mib(r.rss_after),
                match &r.outcome {
                    Ok(_) if r.passed() => "ok".to_string(),
                    Ok(_) => format!(
                        "memory {} / client alive {} / server alive {}",
                        r.rss_recovered(),
                        r.probe_alive,
                        r.server_alive
                    ),
                    Err(e) => e.clone(),
                }
            );
        }
        println!(
            "well-behaved client: published {}, acknowledged {}, received {}, missing {}, out of order {}, errors {}",
            probe.published,
            probe.acked,
            probe.received,
            probe.missing,
            probe.out_of_order,
            probe.publish_errors.len()
        );
        ok
    });
    std::process::exit(if ok { 0 } else { 1 });
}

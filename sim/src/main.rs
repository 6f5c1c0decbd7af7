//! `stan-sim --seed N [--scenario NAME] [--trace] [--server-log] [--external-nats]`
//! replays one run (`--server-log` adds every server log line to the trace, which
//! changes its hash; `--external-nats` runs the streaming server behind a plain NATS
//! server, as `-ns` does);
//! `stan-sim --seeds A..B [--scenario NAME]` soaks a range and prints every failing seed
//! with the command that replays it.

use std::process::ExitCode;

use stan_sim::{run_with, soak, Options, Scenario};

const USAGE: &str =
    "usage: stan-sim --seed N [--scenario NAME] [--trace] [--server-log] [--external-nats]
       stan-sim --seeds A..B [--scenario NAME]
       (built with --features planted-bugs, both take
        --plant heartbeat-count|ack-wait|queue-redelivery|file-sync)
scenarios: heartbeat-timeout duplicate-client-id ack-redelivery queue-member-death
           durable-resume limits mixed server-restart file-restart file-restart-nosync
           (a soak without --scenario gives each seed one)";

struct Args {
    seed: Option<u64>,
    seeds: Option<std::ops::Range<u64>>,
    scenario: Option<Scenario>,
    trace: bool,
    options: Options,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        seed: None,
        seeds: None,
        scenario: None,
        trace: false,
        options: Options::default(),
    };
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--seed" => a.seed = Some(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--seeds" => {
                let v = value()?;
                let (lo, hi) = v.split_once("..").ok_or("--seeds takes A..B")?;
                let lo: u64 = lo.parse().map_err(|e| format!("--seeds: {e}"))?;
                let hi: u64 = hi.parse().map_err(|e| format!("--seeds: {e}"))?;
                a.seeds = Some(lo..hi);
            }
            "--scenario" => {
                let v = value()?;
                a.scenario =
                    Some(Scenario::from_name(&v).ok_or(format!("unknown scenario {v:?}"))?);
            }
            "--trace" => a.trace = true,
            "--server-log" => a.options.server_log = true,
            "--external-nats" => a.options.external_nats = true,
            #[cfg(feature = "planted-bugs")]
            "--plant" => {
                let v = value()?;
                let bug = stan_sim::plan::PLANTED
                    .iter()
                    .find(|(n, _)| *n == v)
                    .ok_or(format!("unknown planted bug {v:?}"))?;
                a.options.planted = Some(bug.1);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.seed.is_some() == a.seeds.is_some() {
        return Err("give exactly one of --seed and --seeds".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("stan-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.seed {
        let scenario = args.scenario.unwrap_or_else(|| Scenario::for_seed(seed));
        let report = run_with(scenario, seed, args.options);
        if args.trace {
            for e in &report.entries {
                println!("{e}");
            }
        }
        println!(
            "scenario {} seed {} events {} trace hash {:016x}",
            scenario.name(),
            seed,
            report.entries.len(),
            report.hash
        );
        for v in &report.violations {
            println!("VIOLATION {v}");
        }
        return if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let seeds = args.seeds.expect("checked in parse");
    let total = seeds.end.saturating_sub(seeds.start);
    let failed = soak(seeds, args.scenario, args.options, |r| {
        if !r.passed() {
            println!(
                "FAIL seed {} ({}): {}",
                r.seed,
                r.scenario.name(),
                r.violations[0]
            );
            println!("  replay: {}", r.replay_command());
        }
    });
    println!(
        "{} passed, {} failed",
        total - failed.len() as u64,
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn one_seed_or_a_range() {
        let a = args("--seed 7 --scenario limits --trace").unwrap();
        assert_eq!(
            (a.seed, a.scenario, a.trace),
            (Some(7), Some(Scenario::Limits), true)
        );
        let a = args("--seeds=10..20").unwrap();
        assert_eq!(a.seeds, Some(10..20));
        assert!(args("--seed 1 --seeds 1..2").is_err());
        assert!(args("").is_err());
        assert!(args("--seed x").is_err());
        assert!(args("--seed 1 --scenario nope").is_err());
        assert!(args("--seeds 5").is_err());
    }
}

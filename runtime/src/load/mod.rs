//! `stan-load`: many streaming clients with many subscriptions over a long run of mixed
//! traffic, checking that every acknowledged message reaches every subscription
//! entitled to it and that the server's memory stays flat.

pub mod check;
pub mod run;

use std::path::PathBuf;
use std::time::Duration;

use stan_core::config::parse_go_duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` of a running server; `None` starts one from `server_bin`.
    pub server: Option<String>,
    pub server_bin: Option<PathBuf>,
    /// Process whose memory is sampled when the server is not ours.
    pub pid: Option<u32>,
    pub cluster_id: String,
    pub clients: usize,
    pub subscriptions: usize,
    pub channels: usize,
    pub duration: Duration,
    /// Time at the start during which memory is not judged (stores fill to their
    /// limits, buffers reach their size); `None` is a fifth of the duration, at least 20 s.
    pub warmup: Option<Duration>,
    /// Between report lines.
    pub interval: Duration,
    /// Publishes per second over all clients.
    pub rate: u64,
    pub size: usize,
    /// Messages kept per channel by the server we start (`-mm`); 0 picks what the
    /// channels fill within the first half of the warm-up.
    pub max_msgs: u64,
    /// Growth of memory, last third of the judged time over its first third, beyond
    /// which the run fails, in percent.
    pub rss_growth_pct: f64,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: None,
            server_bin: None,
            pid: None,
            cluster_id: "test-cluster".into(),
            clients: 1000,
            subscriptions: 5000,
            channels: 20,
            duration: Duration::from_secs(600),
            warmup: None,
            interval: Duration::from_secs(10),
            rate: 200,
            size: 128,
            max_msgs: 0,
            rss_growth_pct: 20.0,
            seed: 1,
        }
    }
}

impl Settings {
    pub fn warmup(&self) -> Duration {
        self.warmup
            .unwrap_or_else(|| (self.duration / 5).max(Duration::from_secs(20)))
            .min(self.duration / 2)
    }
}

pub const USAGE: &str = "Usage: stan-load [options]

Runs many streaming clients with many subscriptions (plain, durable and queue, over
several channels) for a while, publishing mixed traffic. Prints a line per interval and
a summary; exits non-zero on any error, on any acknowledged message not delivered to a
subscription entitled to it, or when the server's memory grows after the warm-up.

Options:
  -s <host:port>     server to load (default: start one; see -server_bin)
  -server_bin <path> stan-server to start (default: $STAN_SERVER_BIN)
  -pid <int>         process whose memory to sample, with -s
  -cid <id>          cluster ID (default test-cluster)
  -clients <int>     streaming clients (default 1000)
  -subs <int>        subscriptions over all clients (default 5000)
  -channels <int>    channels (default 20)
  -duration <dur>    how long to publish, Go duration (default 10m)
  -warmup <dur>      time not judged for memory (default a fifth of -duration, at least 20s)
  -interval <dur>    between report lines (default 10s)
  -rate <int>        publishes per second over all clients (default 200)
  -size <int>        message size in bytes (default 128)
  -mm <int>          messages kept per channel by the server started here
                     (default: what the channels fill in half the warm-up)
  -rss_growth <pct>  memory growth that fails the run (default 20)
  -seed <int>        seed of the traffic's random choices (default 1)
";

/// Parses Go-style flags (`-name value`, `-name=value`, `--name`).
pub fn parse_args(args: &[String]) -> Result<Settings, String> {
    let mut st = Settings {
        server_bin: std::env::var_os("STAN_SERVER_BIN").map(PathBuf::from),
        ..Settings::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') || arg == "-" {
            return Err(format!("unexpected argument {arg:?}\n{USAGE}"));
        }
        let flag = arg.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if matches!(name, "h" | "help") {
            return Err(USAGE.to_string());
        }
        let value = inline
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
        let bad = |_: std::num::ParseIntError| format!("invalid value {value:?} for flag -{name}");
        let num = |v: &str| v.parse::<u64>().map_err(bad);
        let dur = |v: &str| {
            parse_go_duration(v)
                .ok()
                .filter(|n| *n > 0)
                .map(|n| Duration::from_nanos(n as u64))
                .ok_or_else(|| format!("invalid value {v:?} for flag -{name}"))
        };
        match name {
            "s" => st.server = Some(value.clone()),
            "server_bin" => st.server_bin = Some(PathBuf::from(&value)),
            "pid" => st.pid = Some(num(&value)? as u32),
            "cid" => st.cluster_id = value.clone(),
            "clients" => st.clients = num(&value)?.max(1) as usize,
            "subs" => st.subscriptions = num(&value)? as usize,
            "channels" => st.channels = num(&value)?.max(1) as usize,
            "duration" => st.duration = dur(&value)?,
            "warmup" => st.warmup = Some(dur(&value)?),
            "interval" => st.interval = dur(&value)?,
            "rate" => st.rate = num(&value)?.max(1),
            "size" => st.size = num(&value)?.max(16) as usize,
            "mm" => st.max_msgs = num(&value)?,
            "rss_growth" => {
                st.rss_growth_pct = value
                    .parse::<f64>()
                    .map_err(|_| format!("invalid value {value:?} for flag -{name}"))?
            }
            "seed" => st.seed = num(&value)?,
            _ => return Err(format!("flag provided but not defined: -{name}\n{USAGE}")),
        }
    }
    if st.server.is_none() && st.server_bin.is_none() {
        return Err(format!(
            "no server: give -s <host:port> or -server_bin (or set STAN_SERVER_BIN)\n{USAGE}"
        ));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_style_flags() {
        let st = parse_args(&args(&[
            "-s",
            "127.0.0.1:4222",
            "-duration=60s",
            "--clients",
            "10",
            "-subs",
            "50",
            "-interval",
            "1m30s",
        ]))
        .unwrap();
        assert_eq!(st.server.as_deref(), Some("127.0.0.1:4222"));
        assert_eq!(st.duration, Duration::from_secs(60));
        assert_eq!((st.clients, st.subscriptions), (10, 50));
        assert_eq!(st.interval, Duration::from_secs(90));
        assert_eq!(st.warmup(), Duration::from_secs(20));
        assert!(parse_args(&args(&["-s", "x", "-nope", "1"])).is_err());
        assert!(parse_args(&args(&["-s", "x", "-duration", "soon"])).is_err());
    }
}

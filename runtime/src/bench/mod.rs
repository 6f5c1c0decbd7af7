//! `stan-bench`: load generators for core NATS and for NATS Streaming, with flags in
//! the manner of the Go benchmark tools.

pub mod core;
pub mod stan;

use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Server URL (`nats://host:port`) or `host:port`.
    pub server: String,
    pub cluster_id: String,
    pub client_id: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub msgs: u64,
    pub size: usize,
    /// Publish without waiting for each PubAck.
    pub async_pub: bool,
    /// Most PubAcks awaited at once in async mode.
    pub max_pub_acks_inflight: usize,
    /// Subscribers start with new messages only.
    pub ignore_old: bool,
    /// Measure plain NATS publish/subscribe instead of streaming.
    pub core: bool,
    /// The channel of the streaming benchmark.
    pub subject: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: "nats://127.0.0.1:4222".into(),
            cluster_id: "test-cluster".into(),
            client_id: "benchmark".into(),
            publishers: 1,
            subscribers: 0,
            msgs: 100_000,
            size: 128,
            async_pub: false,
            max_pub_acks_inflight: 16384,
            ignore_old: false,
            core: false,
            subject: "foo".into(),
        }
    }
}

impl Settings {
    /// `host:port` from the server URL.
    pub fn addr(&self) -> String {
        let s = self.server.split(',').next().unwrap_or_default();
        let s = s.split_once("://").map_or(s, |(_, rest)| rest);
        s.rsplit_once('@').map_or(s, |(_, host)| host).to_string()
    }
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub msgs: u64,
    pub size: usize,
    pub publish_elapsed: Duration,
    pub elapsed: Duration,
    pub subscribers: usize,
}

impl Report {
    pub fn publish_rate(&self) -> f64 {
        self.msgs as f64 / self.publish_elapsed.as_secs_f64().max(1e-9)
    }

    /// Messages per second through the whole pipeline (publish to last delivery).
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |rate: f64| rate * self.size as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "Pub stats: {:.0} msgs/sec ~ {:.2} MB/sec",
            self.publish_rate(),
            mb(self.publish_rate())
        )?;
        if self.subscribers > 0 {
            writeln!(
                f,
                "Sub stats: {:.0} msgs/sec ~ {:.2} MB/sec",
                self.rate(),
                mb(self.rate())
            )?;
        }
        write!(
            f,
            "Total: {} msgs of {} B in {:.3}s",
            self.msgs,
            self.size,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Parses the Go-style flags of `stan-bench`.
pub fn parse_args(args: &[String]) -> Result<Settings, String> {
    let mut st = Settings::default();
    let mut it = args.iter();
    let mut positional: Vec<&String> = Vec::new();
    let mut flags_done = false;
    while let Some(arg) = it.next() {
        // As with Go's flag package, flags end at `--` or at the first argument that
        // is not a flag.
        if !flags_done && arg == "--" {
            flags_done = true;
            continue;
        }
        if flags_done || !arg.starts_with('-') || arg == "-" {
            flags_done = true;
            positional.push(arg);
            continue;
        }
        let flag = arg.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("flag needs an argument: -{name}"))
        };
        let num = |v: String, name: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("invalid value {v:?} for flag -{name}: parse error"))
        };
        let boolean = |name: &str| match inline.as_deref() {
            None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(format!(
                "invalid boolean value {v:?} for -{name}: parse error"
            )),
        };
        match name {
            "s" => st.server = value(name)?,
            "c" => st.cluster_id = value(name)?,
            "id" => st.client_id = value(name)?,
            "np" => st.publishers = num(value(name)?, name)? as usize,
            "ns" => st.subscribers = num(value(name)?, name)? as usize,
            "n" => st.msgs = num(value(name)?, name)?,
            "ms" => st.size = num(value(name)?, name)? as usize,
            "mpa" => st.max_pub_acks_inflight = num(value(name)?, name)?.max(1) as usize,
            "a" => st.async_pub = boolean(name)?,
            "io" => st.ignore_old = boolean(name)?,
            "core" => st.core = boolean(name)?,
            "h" | "help" => return Err(USAGE.to_string()),
            _ => return Err(format!("flag provided but not defined: -{name}\n{USAGE}")),
        }
    }
    match positional.as_slice() {
        [] => {}
        [subject] => st.subject = subject.to_string(),
        _ => return Err(format!("too many arguments\n{USAGE}")),
    }
    Ok(st)
}

pub const USAGE: &str = "Usage: stan-bench [options] [subject]

The subject is the channel of the streaming benchmark (default foo).

Options:
  -s <url>       NATS server URL(s) (default nats://127.0.0.1:4222)
  -c <id>        NATS Streaming cluster ID (default test-cluster)
  -id <id>       client ID prefix (default benchmark)
  -np <int>      number of concurrent publishers (default 1)
  -ns <int>      number of concurrent subscribers (default 0)
  -n <int>       number of messages to publish (default 100000)
  -ms <int>      size of each message in bytes (default 128)
  -a             publish asynchronously
  -mpa <int>     most publish acks awaited at once in async mode (default 16384, the Go client's default)
  -io            subscribers ignore old messages
  -core          measure core NATS publish/subscribe instead of streaming
";

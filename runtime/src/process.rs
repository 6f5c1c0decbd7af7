//! Facts about this process for monitoring: resident memory, CPU use, cores.

use std::sync::OnceLock;
use std::time::Instant;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub rss_bytes: u64,
    /// Average CPU use since start, in percent of one core (as `ps` reports it).
    pub cpu_percent: f64,
    pub cores: usize,
}

fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Marks the process start; call once early so CPU averages cover the whole run.
pub fn mark_start() {
    started();
}

pub fn sample() -> Sample {
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page);
    let cpu_secs = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0);
    let elapsed = started().elapsed().as_secs_f64().max(1e-3);
    Sample {
        rss_bytes,
        cpu_percent: (cpu_secs / elapsed * 100.0 * 100.0).round() / 100.0,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The local time zone's offset from UTC, in seconds.
pub fn utc_offset_secs() -> i32 {
    chrono::Local::now().offset().local_minus_utc()
}

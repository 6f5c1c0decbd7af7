//! Tools that drive a real `stan-server` process from outside: start it, read its
//! resident memory and monitoring counters, run a well-behaved client next to hostile
//! ones. Shared by the hostile-client tests, `stan-hostile` and `stan-load`, so that the
//! pass/fail tests and the measuring tools exercise the very same behaviour.

pub mod hostile;
pub mod probe;
pub mod raw;
pub mod session;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// Raises this process's open-file soft limit to its hard limit, so that thousands of
/// sockets fit; child processes started afterwards inherit it. Returns the soft limit
/// now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

/// The open-file soft limit of a process, from `/proc/<pid>/limits`.
pub fn nofile_limit_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Resident memory of a process in bytes, from `VmRSS` in `/proc/<pid>/status`.
pub fn rss_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes as mebibytes with one decimal, for reports.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A `stan-server` started by us, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub http_port: u16,
    pub cluster_id: String,
    config: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts `bin` on loopback with a monitoring port, the given configuration file
    /// text (NATS keys such as `ping_interval`) and extra command-line arguments.
    pub fn start(bin: &Path, config: Option<&str>, args: &[&str]) -> io::Result<Self> {
        let (port, http_port) = (free_port()?, free_port()?);
        let config = match config {
            Some(text) => {
                let path = std::env::temp_dir()
                    .join(format!("stan-harness-{}-{port}.conf", std::process::id()));
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &http_port.to_string()]);
        if let Some(path) = &config {
            cmd.arg("-c").arg(path);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // STAN_HARNESS_LOG=<file> keeps the server's log, with NATS debug lines,
            // for looking into a failing run.
            .stderr(match std::env::var_os("STAN_HARNESS_LOG") {
                Some(p) => Stdio::from(std::fs::File::create(p)?),
                None => Stdio::null(),
            });
        if std::env::var_os("STAN_HARNESS_LOG").is_some() {
            cmd.arg("-D");
        }
        let child = cmd.spawn()?;
        let cluster_id = args
            .iter()
            .position(|a| *a == "-cid" || *a == "--cluster_id")
            .and_then(|i| args.get(i + 1))
            .map_or("test-cluster", |s| s)
            .to_string();
        Ok(ServerProcess {
            child,
            port,
            http_port,
            cluster_id,
            config,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Resident memory now.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid()).unwrap_or(0)
    }

    /// False once the process has exited (crashed, say).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until both ports answer.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let nats = tokio::net::TcpStream::connect(self.addr()).await.is_ok();
            if nats && varz(self.http_port).await.is_ok() {
                return Ok(());
            }
            if !self.alive() {
                return Err("stan-server exited during startup".into());
            }
            if Instant::now() > deadline {
                return Err("stan-server did not open its ports".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(p) = &self.config {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// GET on the monitoring port; the body parsed as JSON.
pub async fn monitor_json(http_port: u16, target: &str) -> Result<serde_json::Value, String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let (_, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP body in {text:?}"))?;
        serde_json::from_str(body).map_err(|e| format!("{e} in {body:?}"))
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| format!("{target} did not answer"))?
}

/// `/varz` of the server.
pub async fn varz(http_port: u16) -> Result<serde_json::Value, String> {
    monitor_json(http_port, "/varz").await
}

/// An unsigned counter of `/varz` (`connections`, `slow_consumers`, ...).
pub async fn varz_count(http_port: u16, key: &str) -> Result<u64, String> {
    varz(http_port)
        .await?
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("/varz has no {key}"))
}

/// Waits (a short settle, then up to `tries` one-second retries) for the resident
/// memory of `pid` to come back to at most `limit` bytes; returns the last reading.
pub async fn settle_rss(pid: u32, limit: u64, tries: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rss = rss_of(pid).unwrap_or(0);
    for _ in 0..tries {
        if rss <= limit {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = rss_of(pid).unwrap_or(0);
    }
    rss
}

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: *samples.last().expect("not empty"),
        }
    }
}

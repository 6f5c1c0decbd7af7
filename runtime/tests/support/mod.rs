//! What the tests running the real `stan-server` binary share: a free port, and a
//! child process whose standard error is read line by line and which is killed when
//! dropped, so that a failing test leaves no server behind.

// Each test crate uses its own part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a wait for a log line may take before the test fails: generous, since
/// nothing asserted depends on how long a step took.
const PATIENCE: Duration = Duration::from_secs(60);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    stan_runtime::harness::free_port().expect("a free loopback port")
}

/// A running process whose log lines are collected as they come.
pub struct Logged {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, in order.
    pub log: Vec<String>,
}

impl Logged {
    /// Starts `cmd` with standard output discarded and standard error read here.
    pub fn spawn(cmd: &mut Command) -> Logged {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the process starts");
        let stderr = child.stderr.take().expect("standard error is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Logged {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Starts the `stan-server` binary of this build with `args`.
    pub fn server(args: &[&str]) -> Logged {
        Logged::spawn(Command::new(env!("CARGO_BIN_EXE_stan-server")).args(args))
    }

    /// Waits for a new line containing `text`; returns the lines read while waiting,
    /// that one included.
    pub fn wait_for(&mut self, text: &str) -> Vec<String> {
        let first = self.log.len();
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(text);
                    self.log.push(line);
                    if done {
                        return self.log[first..].to_vec();
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {text:?} in:\n{}", self.log.join("\n"));
    }

    /// A line written since the last read, if there is one, without waiting.
    pub fn try_line(&mut self) -> Option<String> {
        let line = self.lines.try_recv().ok()?;
        self.log.push(line.clone());
        Some(line)
    }

    /// Every line until the process closes its standard error (it exited).
    pub fn wait_for_exit(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.log.push(line);
        }
        self.log.clone()
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd`, a start that must fail, to its end; its output. A process still running
/// after a while is killed, so that a server that did not refuse fails the test
/// instead of hanging it.
pub fn run_refused(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(PATIENCE / 2);
        // SAFETY: a signal to our own child process (or to nothing, once it exited).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("the process ends");
    drop(killer);
    out
}

/// The text after `[FTL] ` of the first fatal line in `out`'s standard error.
pub fn fatal_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.split_once("[FTL] "))
        .unwrap_or_else(|| panic!("no fatal line in:\n{text}"))
        .1
        .to_owned()
}

/// Waits until `child` accepts connections on loopback `port`; fails the test if it
/// exits first.
pub fn wait_for_port(child: &mut Child, port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the server did not open its port"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A subscription to `channel` from its first message; a durable one (named
/// `durable`) acknowledges by hand.
pub async fn from_first(
    conn: &stan_runtime::stan_client::StanConn,
    channel: &str,
    durable: Option<&str>,
) -> stan_runtime::stan_client::StanSubscription {
    use stan_runtime::stan_client::{StartAt, SubscribeOptions};
    conn.subscribe(
        channel,
        SubscribeOptions {
            durable_name: durable.map(Into::into),
            manual_ack: durable.is_some(),
            start: StartAt::First,
            ..SubscribeOptions::default()
        },
    )
    .await
    .unwrap()
}

/// The subscription's next message; the test fails if none comes in time.
pub async fn next_msg(
    sub: &mut stan_runtime::stan_client::StanSubscription,
) -> stan_runtime::stan_client::Msg {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

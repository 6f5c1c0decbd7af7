//! `-r`/`remote_syslog` on the real binary: log lines reach a syslog server over UDP
//! with the NATS server's priorities and header, a SIGHUP moves logging to and from
//! it, and an unusable URL stops the start as the NATS server stops it.

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, Logged};

/// Generous: only there so that a server that never logs fails the test instead of
/// hanging it.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(20);

/// A syslog server on a UDP port of its own.
struct Collector(UdpSocket);

impl Collector {
    fn new() -> Collector {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Collector(socket)
    }

    fn url(&self) -> String {
        format!("udp://{}", self.0.local_addr().unwrap())
    }

    /// Waits for a message containing `text`; the messages before it are returned.
    fn wait_for(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + SAFETY_TIMEOUT;
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            let Ok(n) = self.0.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message.contains(text);
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("no syslog message with {text:?} in:\n{}", seen.concat());
    }
}

/// The priority and the text after the `tag[pid]: ` header of one message.
fn priority_and_text(message: &str, pid: u32) -> (&str, &str) {
    let header_end = format!(" stan-server[{pid}]: ");
    let at = message
        .find(&header_end)
        .unwrap_or_else(|| panic!("no header in {message:?}"));
    let priority = &message[..message.find('>').unwrap() + 1];
    (priority, &message[at + header_end.len()..])
}

#[test]
fn remote_syslog_receives_the_log_lines() {
    let collector = Collector::new();
    let port = free_port().to_string();
    let url = collector.url();
    let mut server = Logged::server(&["-a", "127.0.0.1", "-p", &port, "-SD", "-r", &url]);
    let pid = server.child.id();
    let messages = collector.wait_for("Streaming Server is ready");
    let lines: Vec<(&str, &str)> = messages.iter().map(|m| priority_and_text(m, pid)).collect();
    for want in [
        ("<5>", "Starting nats-server\n"),
        ("<5>", "Server is ready\n"),
        (
            "<7>",
            "STREAM: Discover subject:           _STAN.discover.test-cluster\n",
        ),
        ("<5>", "STREAM: Message store is MEMORY\n"),
        ("<5>", "STREAM: Streaming Server is ready\n"),
    ] {
        assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
    }
    // NATS debug lines stay off without -D.
    assert!(lines
        .iter()
        .all(|(p, t)| *p != "<7>" || t.starts_with("STREAM: ")));
    // The network header: an RFC 3339 time to the second, then the host name.
    let first = &messages[0];
    let stamp = &first[first.find('>').unwrap() + 1..first.find(' ').unwrap()];
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && !stamp.contains('.'),
        "{first:?}"
    );
    let host = first.split(' ').nth(1).unwrap();
    assert!(!host.is_empty() && !host.contains('['), "{first:?}");
    // Nothing is written to stderr meanwhile.
    assert_eq!(server.try_line(), None);
}

fn write_config(path: &Path, port: &str, extra: &str) {
    std::fs::write(
        path,
        format!("listen: 127.0.0.1:{port}\nlogtime: false\n{extra}"),
    )
    .unwrap();
}

#[test]
fn sighup_moves_logging_to_and_from_remote_syslog() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("stan-rs-syslog-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("server.conf");
    let port = free_port().to_string();
    write_config(&conf, &port, "");
    let mut server = Logged::server(&["-c", conf.to_str().unwrap()]);
    let pid = server.child.id();
    server.wait_for("Streaming Server is ready");

    let collector = Collector::new();
    let url = collector.url();
    write_config(&conf, &port, &format!("remote_syslog: \"{url}\"\n"));
    server.signal(libc::SIGHUP);
    let lines = server.wait_for("Reloaded: remote_syslog");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(&format!("[INF] Reloaded: remote_syslog = {url}")),
        "{lines:?}"
    );
    let messages = collector.wait_for("Reloaded server configuration");
    assert_eq!(
        priority_and_text(messages.last().unwrap(), pid),
        ("<5>", "Reloaded server configuration\n")
    );

    // The base path cannot change on a reload; the refusal goes to syslog too.
    write_config(
        &conf,
        &port,
        &format!("remote_syslog: \"{url}\"\nhttp_base_path: /mon\n"),
    );
    server.signal(libc::SIGHUP);
    let messages = collector.wait_for("Reload:");
    assert_eq!(
        priority_and_text(messages.last().unwrap(), pid),
        (
            "<3>",
            "STREAM: Reload: config reload not supported for HTTPBasePath: old=, new=/mon\n"
        )
    );

    // Back to stderr.
    write_config(&conf, &port, "");
    server.signal(libc::SIGHUP);
    let messages = collector.wait_for("Reloaded: remote_syslog");
    assert_eq!(
        priority_and_text(messages.last().unwrap(), pid),
        ("<5>", "Reloaded: remote_syslog = \n")
    );
    let lines = server.wait_for("Reloaded server configuration");
    assert!(lines
        .last()
        .unwrap()
        .ends_with("] [INF] Reloaded server configuration"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_remote_syslog_stops_the_start() {
    for (url, want) in [
        (
            "http://127.0.0.1:514",
            "error invalid network type: \"http\"",
        ),
        (
            "udp://127.0.0.1",
            "error connecting to syslog: \"dial udp: address 127.0.0.1: missing port in address\"",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stan-server"))
            .args(["-a", "127.0.0.1", "-p", &free_port().to_string(), "-r", url])
            .stdin(Stdio::null())
            .output()
            .expect("stan-server runs");
        assert_eq!(out.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        // `2006/01/02 15:04:05 ` and the NATS server's message.
        assert_eq!(stderr.len(), 20 + want.len() + 1, "{stderr:?}");
        assert!(stderr.ends_with(&format!(" {want}\n")), "{stderr:?}");
    }
}

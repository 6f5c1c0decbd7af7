//! Log lines sent to syslog (`-s`, `-r`), as the NATS server sends them
//! (shared/spec/OPERATIONS.md §6.1), so that syslog filters and parsers written for
//! the Go server keep matching:
//!
//! - the local daemon is reached on the first of `/dev/log`, `/var/run/syslog`,
//!   `/var/run/log` that accepts a datagram socket, else a stream socket, with the
//!   facility `daemon`;
//! - a remote server is named `udp://host:port`, `tcp://host:port` or
//!   `unix:///path` (a stream socket), and gets the facility `kern`, because the NATS
//!   server opens it with the priority `LOG_DEBUG`, whose facility bits are 0;
//! - severities: info and trace lines are `notice`, debug `debug`, warnings
//!   `warning`, errors `err`, fatal lines `crit`;
//! - a message is the line's text alone (with `STREAM: ` for the streaming layer's
//!   lines): no pid, timestamp or `[INF]` tag, which the syslog header carries;
//! - the header is `<PRI>Jan _2 15:04:05 tag[pid]: ` on local sockets and
//!   `<PRI>2006-01-02T15:04:05-07:00 hostname tag[pid]: ` over the network, in local
//!   time; the tag is the program's name; every message ends with a newline.
//!
//! A write that fails is tried once more on a new connection; one that fails again
//! is dropped, as the NATS server drops it.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;

use chrono::{DateTime, Local, Offset};
use stan_core::gofmt::go_quote;

use super::{Level, Origin};

/// The sockets a local syslog daemon listens on, in the order they are tried.
const LOCAL_PATHS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

const FACILITY_KERN: u8 = 0;
const FACILITY_DAEMON: u8 = 3 << 3;

/// A connection to syslog, reopened when a write fails.
pub(super) struct Writer {
    target: Target,
    conn: Conn,
    /// Facility bits of every message's priority.
    facility: u8,
    tag: String,
    hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The local daemon, on the first of these sockets that accepts a connection.
    Local(Vec<PathBuf>),
    Udp(String),
    Tcp(String),
    Unix(PathBuf),
}

enum Conn {
    Datagram(UnixDatagram),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Writer {
    /// Connects to the local syslog daemon. The error is the line the NATS server
    /// prints before it exits (`error connecting to syslog: "..."`).
    pub(super) fn local() -> Result<Writer, String> {
        Writer::local_at(LOCAL_PATHS.iter().map(PathBuf::from).collect())
    }

    fn local_at(paths: Vec<PathBuf>) -> Result<Writer, String> {
        Writer::open(Target::Local(paths), FACILITY_DAEMON)
    }

    /// Connects to the syslog server at `url`. The error is the line the NATS server
    /// prints before it exits.
    pub(super) fn remote(url: &str) -> Result<Writer, String> {
        Writer::open(parse_remote(url)?, FACILITY_KERN)
    }

    fn open(target: Target, facility: u8) -> Result<Writer, String> {
        let conn = connect(&target)
            .map_err(|e| format!("error connecting to syslog: {}", go_quote(&e)))?;
        let hostname = match host_name() {
            Some(name) => name,
            None => conn.local_addr(),
        };
        Ok(Writer {
            target,
            conn,
            facility,
            tag: program_name(),
            hostname,
        })
    }

    /// Sends one log line.
    pub(super) fn send(&mut self, origin: Origin, level: Level, message: &str) {
        let packet = self.packet(Local::now(), origin, level, message);
        if self.conn.send(packet.as_bytes()).is_ok() {
            return;
        }
        if let Ok(conn) = connect(&self.target) {
            self.conn = conn;
            let _ = self.conn.send(packet.as_bytes());
        }
    }

    fn packet(&self, now: DateTime<Local>, origin: Origin, level: Level, message: &str) -> String {
        let priority = self.facility | severity(level);
        let mut out = String::with_capacity(message.len() + 64);
        let _ = write!(out, "<{priority}>");
        if self.conn.is_local() {
            let _ = write!(out, "{}", now.format("%b %e %H:%M:%S"));
        } else {
            let _ = write!(
                out,
                "{}{} {}",
                now.format("%Y-%m-%dT%H:%M:%S"),
                zone(now),
                self.hostname
            );
        }
        let _ = write!(out, " {}[{}]: ", self.tag, std::process::id());
        if origin == Origin::Stream {
            out.push_str("STREAM: ");
        }
        out.push_str(message);
        if !message.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// The syslog severity of a line of this level.
fn severity(level: Level) -> u8 {
    match level {
        Level::Fatal => 2,
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info | Level::Trace => 5,
        Level::Debug => 7,
    }
}

/// The offset of an RFC 3339 timestamp: `Z` when it is zero, as Go writes it.
fn zone(now: DateTime<Local>) -> String {
    let secs = now.offset().fix().local_minus_utc();
    if secs == 0 {
        return "Z".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let minutes = secs.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The last element of the program's path, which the NATS server uses as its tag.
fn program_name() -> String {
    let arg0 = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    arg0.rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or(&arg0)
        .to_string()
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned()).filter(|h| !h.is_empty())
}

impl Conn {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        match self {
            Conn::Datagram(s) => s.send(packet).map(drop),
            Conn::Udp(s) => s.send(packet).map(drop),
            Conn::UnixStream(s) => s.write_all(packet),
            Conn::Tcp(s) => s.write_all(packet),
        }
    }

    /// Local sockets get the short header, without the host name.
    fn is_local(&self) -> bool {
        matches!(self, Conn::Datagram(_) | Conn::UnixStream(_))
    }

    fn local_addr(&self) -> String {
        let shown = |a: io::Result<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        match self {
            Conn::Udp(s) => shown(s.local_addr()),
            Conn::Tcp(s) => shown(s.local_addr()),
            Conn::Datagram(_) | Conn::UnixStream(_) => "localhost".into(),
        }
    }
}

/// Opens a connection; the error is worded as Go's dialer words it.
fn connect(target: &Target) -> Result<Conn, String> {
    match target {
        Target::Local(paths) => {
            for path in paths {
                if let Ok(s) = UnixDatagram::unbound().and_then(|s| s.connect(path).map(|()| s)) {
                    return Ok(Conn::Datagram(s));
                }
            }
            for path in paths {
                if let Ok(s) = UnixStream::connect(path) {
                    return Ok(Conn::UnixStream(s));
                }
            }
            Err("Unix syslog delivery error".into())
        }
        Target::Unix(path) => {
            if path.as_os_str().is_empty() {
                return Err("dial unix: missing address".into());
            }
            UnixStream::connect(path)
                .map(Conn::UnixStream)
                .map_err(|e| dial_error("unix", &path.display().to_string(), &e))
        }
        Target::Udp(addr) => {
            let addrs = resolve("udp", addr)?;
            let mut last = None;
            for a in addrs {
                let any: SocketAddr = if a.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                match UdpSocket::bind(any).and_then(|s| s.connect(a).map(|()| s)) {
                    Ok(s) => return Ok(Conn::Udp(s)),
                    Err(e) => last = Some(dial_error("udp", &a.to_string(), &e)),
                }
            }
            Err(last.unwrap_or_else(|| format!("dial udp {addr}: no address")))
        }
        Target::Tcp(addr) => {
            let addrs = resolve("tcp", addr)?;
            let mut last = None;
            for a in addrs {
                match TcpStream::connect(a) {
                    Ok(s) => return Ok(Conn::Tcp(s)),
                    Err(e) => last = Some(dial_error("tcp", &a.to_string(), &e)),
                }
            }
            Err(last.unwrap_or_else(|| format!("dial tcp {addr}: no address")))
        }
    }
}

fn dial_error(network: &str, addr: &str, e: &io::Error) -> String {
    format!(
        "dial {network} {addr}: connect: {}",
        crate::config_file::os_reason(e)
    )
}

/// The addresses of `host:port`, refused as Go's dialer refuses them.
fn resolve(network: &str, addr: &str) -> Result<Vec<SocketAddr>, String> {
    if addr.is_empty() {
        return Err(format!("dial {network}: missing address"));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!(
            "dial {network}: address {addr}: missing port in address"
        ));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port
        .parse()
        .map_err(|_| format!("dial {network}: address {port}: invalid port"))?;
    // An empty host is the local system, as with Go's dialer.
    let host = if host.is_empty() { "localhost" } else { host };
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| format!("dial {network}: lookup {host}: {e}"))
}

/// Where `-r`/`remote_syslog` points, read the way Go's URL parser and the NATS
/// server read it: the scheme picks the network, the host (or for `unix`, the path)
/// the address.
fn parse_remote(url: &str) -> Result<Target, String> {
    let parse_error = |why: &str| format!("parse {}: {why}", go_quote(url));
    let (scheme, rest) = split_scheme(url).map_err(parse_error)?;
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    if scheme.is_empty() {
        let first_segment = rest.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err(parse_error(
                "first path segment in URL cannot contain colon",
            ));
        }
    }
    let (host, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            let authority = &after[..end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (host, &after[end..])
        }
        // `scheme:path` without `//`: only a path starting with `/` is one.
        None if rest.starts_with('/') => ("", rest),
        None => ("", ""),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "udp" => Ok(Target::Udp(host.to_string())),
        "tcp" => Ok(Target::Tcp(host.to_string())),
        "unix" => Ok(Target::Unix(PathBuf::from(path))),
        other => Err(format!("error invalid network type: {}", go_quote(other))),
    }
}

/// `scheme:` and what follows, or an empty scheme when the text has none.
fn split_scheme(url: &str) -> Result<(&str, &str), &'static str> {
    for (i, c) in url.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme"),
            ':' => return Ok((&url[..i], &url[i + 1..])),
            _ => return Ok(("", url)),
        }
    }
    Ok(("", url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "stan-syslog-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ))
    }

    fn received(socket: &UdpSocket) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// `<PRI>` and what follows the header, for lines whose time is not known.
    fn without_header(packet: &str) -> (String, String) {
        let pri = packet[..packet.find('>').unwrap() + 1].to_string();
        let tail = packet[packet.find("]: ").unwrap() + 3..].to_string();
        (pri, tail)
    }

    #[test]
    fn remote_udp_lines_with_priorities_and_header() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}", server.local_addr().unwrap());
        let mut w = Writer::remote(&url).unwrap();
        let cases = [
            (
                Origin::Nats,
                Level::Info,
                "Server is ready",
                "<5>",
                "Server is ready\n",
            ),
            (Origin::Stream, Level::Trace, "t", "<5>", "STREAM: t\n"),
            (Origin::Nats, Level::Debug, "d\n", "<7>", "d\n"),
            (Origin::Stream, Level::Warn, "w", "<4>", "STREAM: w\n"),
            (Origin::Nats, Level::Error, "e", "<3>", "e\n"),
            (Origin::Stream, Level::Fatal, "f", "<2>", "STREAM: f\n"),
        ];
        for (origin, level, message, pri, tail) in cases {
            w.send(origin, level, message);
            let got = received(&server);
            assert_eq!(without_header(&got), (pri.into(), tail.into()), "{got:?}");
        }
        // The whole network header, at a known time.
        let at = Local.with_ymd_and_hms(2024, 4, 1, 9, 5, 7).unwrap();
        let packet = w.packet(at, Origin::Stream, Level::Info, "hello");
        let want = format!(
            "<5>2024-04-01T09:05:07{} {} {}[{}]: STREAM: hello\n",
            zone(at),
            w.hostname,
            program_name(),
            std::process::id()
        );
        assert_eq!(packet, want);
        assert!(!w.hostname.is_empty());
    }

    #[test]
    fn local_daemon_gets_the_short_header_and_the_daemon_facility() {
        let path = temp_path("dev-log");
        let _ = std::fs::remove_file(&path);
        let daemon = UnixDatagram::bind(&path).unwrap();
        let missing = temp_path("missing");
        let mut w = Writer::local_at(vec![missing, path.clone()]).unwrap();
        w.send(Origin::Stream, Level::Info, "Streaming Server is ready");
        w.send(Origin::Nats, Level::Debug, "dbg");
        w.send(Origin::Nats, Level::Error, "err");
        daemon
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = daemon.recv(&mut buf).unwrap();
            got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        let header = format!(" {}[{}]: ", program_name(), std::process::id());
        for (packet, (pri, tail)) in got.iter().zip([
            ("<29>", "STREAM: Streaming Server is ready\n"),
            ("<31>", "dbg\n"),
            ("<27>", "err\n"),
        ]) {
            assert_eq!(without_header(packet), (pri.into(), tail.into()));
            // `Jan _2 15:04:05`, then the tag.
            let stamp = &packet[pri.len()..pri.len() + 15];
            assert!(
                chrono::NaiveDateTime::parse_from_str(
                    &format!("2024 {stamp}"),
                    "%Y %b %e %H:%M:%S"
                )
                .is_ok(),
                "{packet:?}"
            );
            assert_eq!(
                &packet[pri.len() + 15..pri.len() + 15 + header.len()],
                header
            );
        }
        let at = Local.with_ymd_and_hms(2024, 4, 1, 9, 5, 7).unwrap();
        assert!(w
            .packet(at, Origin::Nats, Level::Warn, "m")
            .starts_with("<28>Apr  1 09:05:07 "));
        drop(daemon);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn remote_stream_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("TCP://{}", listener.local_addr().unwrap());
        let mut w = Writer::remote(&url).unwrap();
        w.send(Origin::Nats, Level::Info, "one");
        w.send(Origin::Nats, Level::Warn, "two");
        let (mut conn, _) = listener.accept().unwrap();
        drop(w);
        let mut text = String::new();
        io::Read::read_to_string(&mut conn, &mut text).unwrap();
        let lines: Vec<(String, String)> = text.split_inclusive('\n').map(without_header).collect();
        assert_eq!(
            lines,
            [
                ("<5>".to_string(), "one\n".to_string()),
                ("<4>".to_string(), "two\n".to_string())
            ]
        );

        let path = temp_path("unix-stream");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut w = Writer::remote(&format!("unix://{}", path.display())).unwrap();
        w.send(Origin::Stream, Level::Info, "three");
        let (mut conn, _) = listener.accept().unwrap();
        drop(w);
        let mut text = String::new();
        io::Read::read_to_string(&mut conn, &mut text).unwrap();
        // A unix socket is local: the short header, but still the `kern` facility.
        assert_eq!(
            without_header(&text),
            ("<5>".into(), "STREAM: three\n".into())
        );
        let header = format!(" {}[{}]: ", program_name(), std::process::id());
        assert_eq!(&text[3 + 15..3 + 15 + header.len()], header, "{text:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn failed_writes_reconnect_once() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let mut w = Writer::remote(&format!("udp://{addr}")).unwrap();
        // A connection that can no longer send: the line goes out on a new one.
        w.conn = Conn::Datagram(UnixDatagram::unbound().unwrap());
        w.send(Origin::Nats, Level::Info, "after reconnect");
        assert_eq!(
            without_header(&received(&server)),
            ("<5>".into(), "after reconnect\n".into())
        );
        assert!(matches!(w.conn, Conn::Udp(_)));
    }

    #[test]
    fn remote_urls() {
        assert_eq!(
            parse_remote("udp://127.0.0.1:514"),
            Ok(Target::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            parse_remote("tcp://user@logs.example:6514/ignored?x=1"),
            Ok(Target::Tcp("logs.example:6514".into()))
        );
        assert_eq!(
            parse_remote("unix:///var/run/syslog.sock"),
            Ok(Target::Unix("/var/run/syslog.sock".into()))
        );
        assert_eq!(parse_remote("unix:/a/b"), Ok(Target::Unix("/a/b".into())));
        assert_eq!(
            parse_remote("http://h:1"),
            Err("error invalid network type: \"http\"".into())
        );
        assert_eq!(
            parse_remote("localhost:514"),
            Err("error invalid network type: \"localhost\"".into())
        );
        assert_eq!(
            parse_remote("127.0.0.1:514"),
            Err("parse \"127.0.0.1:514\": first path segment in URL cannot contain colon".into())
        );
        assert_eq!(
            parse_remote(":514"),
            Err("parse \":514\": missing protocol scheme".into())
        );
        assert_eq!(
            parse_remote("syslog-host"),
            Err("error invalid network type: \"\"".into())
        );
    }

    #[test]
    fn connection_errors_in_go_words() {
        let err = |url: &str| Writer::remote(url).err().unwrap();
        assert_eq!(
            err("udp://localhost"),
            "error connecting to syslog: \"dial udp: address localhost: missing port in address\""
        );
        assert_eq!(
            err("udp://"),
            "error connecting to syslog: \"dial udp: missing address\""
        );
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert_eq!(
            err(&format!("tcp://{addr}")),
            format!("error connecting to syslog: \"dial tcp {addr}: connect: connection refused\"")
        );
        let path = temp_path("nobody");
        assert_eq!(
            err(&format!("unix://{}", path.display())),
            format!(
                "error connecting to syslog: \"dial unix {}: connect: no such file or directory\"",
                path.display()
            )
        );
        assert_eq!(
            Writer::local_at(vec![temp_path("none")]).err().unwrap(),
            "error connecting to syslog: \"Unix syslog delivery error\""
        );
    }
}

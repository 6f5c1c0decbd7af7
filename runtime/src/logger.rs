//! Log lines in the Go server's layout (shared/spec/OPERATIONS.md §6.1).
//!
//! Operators grep these logs and log shippers parse them, so the layout is kept exact:
//! `[<pid>] <date> <time.micro> [<LVL>] <message>`, with `STREAM: ` after the level for
//! lines of the streaming layer. The embedded NATS server and the streaming layer share
//! one [`Logger`] but are gated by their own debug and trace switches.
//!
//! Lines go to one place, chosen as the NATS server chooses: the log file if there is
//! one, else a remote syslog server, else the local syslog daemon, else stderr.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{Datelike, Local, NaiveDateTime, Timelike, Utc};
use stan_core::gofmt::go_quote;

pub use stan_core::log::{Level, Origin};

mod syslog;

/// ANSI SGR parameters of a level's tag on a terminal.
fn color(level: Level) -> &'static str {
    match level {
        Level::Fatal | Level::Error => "31",
        Level::Warn => "0;93",
        Level::Info => "32",
        Level::Debug => "36",
        Level::Trace => "33",
    }
}

/// Where and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `-l`: append to this file instead of writing to stderr.
    pub file: Option<PathBuf>,
    /// `--log_size_limit`: once the file grows past this many bytes it is renamed
    /// with a timestamp suffix and a new one started (0 = never).
    pub size_limit: u64,
    /// `-s`: to the local syslog daemon, when there is no log file.
    pub syslog: bool,
    /// `-r`: to the syslog server at this URL, when there is no log file.
    pub remote_syslog: Option<String>,
    /// `-T`: timestamps on each line.
    pub logtime: bool,
    /// `--logtime_utc`: timestamps in UTC rather than local time.
    pub logtime_utc: bool,
    /// `-D`: NATS debug lines.
    pub debug: bool,
    /// `-V`: NATS trace lines.
    pub trace: bool,
    /// `-SD`: streaming debug lines.
    pub stan_debug: bool,
    /// `-SV`: streaming trace lines.
    pub stan_trace: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            file: None,
            size_limit: 0,
            syslog: false,
            remote_syslog: None,
            logtime: true,
            logtime_utc: false,
            debug: false,
            trace: false,
            stan_debug: false,
            stan_trace: false,
        }
    }
}

/// A thread-safe logger; clones share the same output.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read on every line, replaced on a configuration reload.
    config: std::sync::RwLock<LogConfig>,
    colored: std::sync::atomic::AtomicBool,
    pid: u32,
    sink: Mutex<Sink>,
}

enum Sink {
    Stderr,
    File {
        path: PathBuf,
        file: File,
        /// Bytes in the file, for the size limit.
        size: u64,
    },
    Writer(Box<dyn Write + Send>),
    Syslog(syslog::Writer),
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    File(PathBuf),
    RemoteSyslog(String),
    Syslog,
    Stderr,
}

impl LogConfig {
    fn destination(&self) -> Destination {
        match (&self.file, &self.remote_syslog) {
            (Some(path), _) => Destination::File(path.clone()),
            (None, Some(url)) => Destination::RemoteSyslog(url.clone()),
            (None, None) if self.syslog => Destination::Syslog,
            (None, None) => Destination::Stderr,
        }
    }
}

/// Why the log destination could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The log file.
    #[error("{0}")]
    File(#[from] io::Error),
    /// Syslog, in the NATS server's words (`error connecting to syslog: "..."`).
    #[error("{0}")]
    Syslog(String),
}

/// The sink for `destination`, and whether its lines are colored.
fn open_sink(destination: &Destination) -> Result<(Sink, bool), OpenError> {
    Ok(match destination {
        Destination::File(path) => (file_sink(path)?, false),
        Destination::RemoteSyslog(url) => (
            Sink::Syslog(syslog::Writer::remote(url).map_err(OpenError::Syslog)?),
            false,
        ),
        Destination::Syslog => (
            Sink::Syslog(syslog::Writer::local().map_err(OpenError::Syslog)?),
            false,
        ),
        Destination::Stderr => (Sink::Stderr, stderr_is_terminal()),
    })
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("config", &*self.config())
            .field("colored", &self.inner.colored.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Logger {
    /// Logs to the configured file (created if missing, appended to), to syslog or
    /// to stderr. Stderr output is colored when it is a terminal.
    pub fn new(config: LogConfig) -> Result<Logger, OpenError> {
        let (sink, colored) = open_sink(&config.destination())?;
        Ok(Logger::with_sink(config, sink, colored))
    }

    /// Logs to `writer`, without colors, whatever destination `config` names. Lets
    /// tests and embedders capture the exact output.
    pub fn with_writer(config: LogConfig, writer: Box<dyn Write + Send>) -> Logger {
        Logger::with_sink(config, Sink::Writer(writer), false)
    }

    fn with_sink(config: LogConfig, sink: Sink, colored: bool) -> Logger {
        Logger {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(config),
                colored: colored.into(),
                pid: std::process::id(),
                sink: Mutex::new(sink),
            }),
        }
    }

    /// Whether a line would be written; lets callers skip building costly messages.
    pub fn enabled(&self, origin: Origin, level: Level) -> bool {
        let c = self.config();
        match (origin, level) {
            (Origin::Nats, Level::Debug) => c.debug,
            (Origin::Nats, Level::Trace) => c.trace,
            (Origin::Stream, Level::Debug) => c.stan_debug,
            (Origin::Stream, Level::Trace) => c.stan_trace,
            _ => true,
        }
    }

    /// Writes one line if its origin and level are enabled. The line goes out in a
    /// single write so that lines from different threads never interleave.
    pub fn log(&self, origin: Origin, level: Level, message: &str) {
        if !self.enabled(origin, level) {
            return;
        }
        let inner = &*self.inner;
        let mut sink = inner.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Sink::Syslog(writer) = &mut *sink {
            writer.send(origin, level, message);
            return;
        }
        let config = self.config();
        let time = config.logtime.then(|| {
            if config.logtime_utc {
                Utc::now().naive_utc()
            } else {
                Local::now().naive_local()
            }
        });
        let colored = inner.colored.load(Ordering::Relaxed);
        let line = format_line(inner.pid, time, colored, origin, level, message);
        let size_limit = config.size_limit;
        drop(config);
        // A log line that cannot be written has nowhere else to be reported.
        let _ = match &mut *sink {
            Sink::Stderr => io::stderr().write_all(line.as_bytes()),
            Sink::File { file, size, path } => {
                let written = file.write_all(line.as_bytes());
                *size += line.len() as u64;
                if size_limit > 0 && *size > size_limit {
                    self.rotate(path, file, size, time.is_some());
                }
                written
            }
            Sink::Writer(writer) => writer
                .write_all(line.as_bytes())
                .and_then(|()| writer.flush()),
            Sink::Syslog(_) => Ok(()),
        };
    }

    fn config(&self) -> std::sync::RwLockReadGuard<'_, LogConfig> {
        self.inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Switches to a reloaded configuration: levels and timestamps at once, and the
    /// destination (log file, syslog) when it changed. On error nothing changes.
    pub fn reconfigure(&self, new: LogConfig) -> Result<(), OpenError> {
        let destination = new.destination();
        if destination != self.config().destination() {
            let (sink, colored) = open_sink(&destination)?;
            *self
                .inner
                .sink
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = sink;
            self.inner.colored.store(colored, Ordering::Relaxed);
        }
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    /// Logs at `FTL` and ends the process with exit code 1, as the Go server does.
    pub fn fatal(&self, origin: Origin, message: &str) -> ! {
        self.log(origin, Level::Fatal, message);
        std::process::exit(1)
    }

    /// Reopens the log file at its path, for log rotation (`SIGUSR1`). Returns
    /// `Ok(false)` when not logging to a file. On error the old file stays in use.
    pub fn reopen(&self) -> io::Result<bool> {
        let mut sink = self
            .inner
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &mut *sink {
            Sink::File { path, file, size } => {
                *file = open_log_file(path)?;
                *size = file.metadata().map_or(0, |m| m.len());
                Ok(true)
            }
            Sink::Stderr | Sink::Writer(_) | Sink::Syslog(_) => Ok(false),
        }
    }
}

impl Logger {
    /// Renames the full log file to `<file>.<local time to the nanosecond>` and
    /// starts a new one whose first line names the backup, as the NATS server does.
    /// On failure the current file stays in use.
    fn rotate(&self, path: &std::path::Path, file: &mut File, size: &mut u64, stamped: bool) {
        let now = Local::now();
        let backup = format!(
            "{}.{}.{:09}",
            path.display(),
            now.format("%Y.%m.%d.%H.%M.%S"),
            now.nanosecond() % 1_000_000_000
        );
        if std::fs::rename(path, &backup).is_err() {
            return;
        }
        let Ok(fresh) = open_log_file(path) else {
            return;
        };
        *file = fresh;
        let line = format_line(
            self.inner.pid,
            stamped.then(|| now.naive_local()),
            false,
            Origin::Nats,
            Level::Info,
            &format!("Rotated log, backup saved as {}", go_quote(&backup)),
        );
        let _ = file.write_all(line.as_bytes());
        *size = line.len() as u64;
    }
}

fn file_sink(path: &std::path::Path) -> io::Result<Sink> {
    let file = open_log_file(path)?;
    let size = file.metadata().map_or(0, |m| m.len());
    Ok(Sink::File {
        path: path.to_path_buf(),
        file,
        size,
    })
}

fn stderr_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor and has no memory effects.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

fn open_log_file(path: &std::path::Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o660);
    options.open(path)
}

/// One complete log line, newline included. `time` is already in the wanted time zone;
/// `None` leaves the timestamp out.
pub fn format_line(
    pid: u32,
    time: Option<NaiveDateTime>,
    colored: bool,
    origin: Origin,
    level: Level,
    message: &str,
) -> String {
    let mut line = String::with_capacity(message.len() + 64);
    // Writing to a String cannot fail.
    let _ = write!(line, "[{pid}] ");
    if let Some(t) = time {
        // A leap second shows as nanosecond ≥ 1e9; keep the field six digits wide.
        let micros = (t.nanosecond() / 1000).min(999_999);
        let _ = write!(
            line,
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06} ",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            micros
        );
    }
    if colored {
        let _ = write!(line, "[\x1b[{}m{}\x1b[0m] ", color(level), level.tag());
    } else {
        let _ = write!(line, "[{}] ", level.tag());
    }
    if origin == Origin::Stream {
        line.push_str("STREAM: ");
    }
    line.push_str(message);
    if !message.ends_with('\n') {
        line.push('\n');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(micros: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 4, 1)
            .unwrap()
            .and_hms_micro_opt(9, 5, 7, micros)
            .unwrap()
    }

    #[test]
    fn line_with_time() {
        assert_eq!(
            format_line(
                42,
                Some(at(1234)),
                false,
                Origin::Nats,
                Level::Info,
                "Server is ready"
            ),
            "[42] 2024/04/01 09:05:07.001234 [INF] Server is ready\n"
        );
        assert_eq!(
            format_line(7, Some(at(0)), false, Origin::Stream, Level::Debug, "x"),
            "[7] 2024/04/01 09:05:07.000000 [DBG] STREAM: x\n"
        );
    }

    #[test]
    fn line_without_time() {
        assert_eq!(
            format_line(1, None, false, Origin::Stream, Level::Warn, "careful"),
            "[1] [WRN] STREAM: careful\n"
        );
        // A message ending with a newline gets no second one.
        assert_eq!(
            format_line(1, None, false, Origin::Nats, Level::Error, "bad\n"),
            "[1] [ERR] bad\n"
        );
    }

    #[test]
    fn labels_and_colors() {
        let cases = [
            (Level::Info, "INF", "32"),
            (Level::Debug, "DBG", "36"),
            (Level::Warn, "WRN", "0;93"),
            (Level::Error, "ERR", "31"),
            (Level::Fatal, "FTL", "31"),
            (Level::Trace, "TRC", "33"),
        ];
        for (level, label, color) in cases {
            assert_eq!(
                format_line(9, None, false, Origin::Nats, level, "m"),
                format!("[9] [{label}] m\n")
            );
            assert_eq!(
                format_line(9, Some(at(5)), true, Origin::Stream, level, "m"),
                format!("[9] 2024/04/01 09:05:07.000005 [\x1b[{color}m{label}\x1b[0m] STREAM: m\n")
            );
        }
    }

    #[test]
    fn leap_second_keeps_six_digits() {
        let t = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap();
        assert_eq!(
            format_line(1, Some(t), false, Origin::Nats, Level::Info, "m"),
            "[1] 2016/12/31 23:59:59.999999 [INF] m\n"
        );
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(config: LogConfig) -> (Logger, Captured) {
        let out = Captured::default();
        (Logger::with_writer(config, Box::new(out.clone())), out)
    }

    #[test]
    fn debug_and_trace_are_gated_per_origin() {
        let (log, out) = capture(LogConfig {
            logtime: false,
            debug: true,
            stan_trace: true,
            ..LogConfig::default()
        });
        log.log(Origin::Nats, Level::Debug, "nats debug");
        log.log(Origin::Nats, Level::Trace, "nats trace");
        log.log(Origin::Stream, Level::Debug, "stan debug");
        log.log(Origin::Stream, Level::Trace, "stan trace");
        log.log(Origin::Stream, Level::Info, "stan info");
        log.log(Origin::Nats, Level::Error, "nats error");
        let pid = std::process::id();
        assert_eq!(
            out.text(),
            format!(
                "[{pid}] [DBG] nats debug\n[{pid}] [TRC] STREAM: stan trace\n\
                 [{pid}] [INF] STREAM: stan info\n[{pid}] [ERR] nats error\n"
            )
        );
        assert!(log.enabled(Origin::Nats, Level::Debug));
        assert!(!log.enabled(Origin::Stream, Level::Debug));
        assert!(log.enabled(Origin::Stream, Level::Fatal));
    }

    #[test]
    fn default_lines_carry_a_timestamp() {
        let (log, out) = capture(LogConfig::default());
        log.log(Origin::Stream, Level::Info, "hello");
        let text = out.text();
        let prefix = format!("[{}] ", std::process::id());
        let rest = text.strip_prefix(&prefix).unwrap();
        // `YYYY/MM/DD hh:mm:ss.uuuuuu ` is 27 bytes.
        let (stamp, tail) = rest.split_at(27);
        assert_eq!(tail, "[INF] STREAM: hello\n");
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999/99/99 99:99:99.999999 ");
    }

    #[test]
    fn utc_timestamps() {
        let (log, out) = capture(LogConfig {
            logtime_utc: true,
            ..LogConfig::default()
        });
        let before = Utc::now().naive_utc();
        log.log(Origin::Nats, Level::Info, "m");
        let after = Utc::now().naive_utc();
        let text = out.text();
        let stamp = &text[text.find("] ").unwrap() + 2..][..26];
        let logged = NaiveDateTime::parse_from_str(stamp, "%Y/%m/%d %H:%M:%S%.f").unwrap();
        let floor = |t: NaiveDateTime| t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap();
        assert!(floor(before) <= logged && logged <= after, "{stamp}");
    }

    #[test]
    fn clones_share_the_output_and_lines_stay_whole() {
        let (log, out) = capture(LogConfig {
            logtime: false,
            ..LogConfig::default()
        });
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.log(Origin::Stream, Level::Info, &format!("thread {n} line {i}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = out.text();
        assert_eq!(text.lines().count(), 1600);
        let prefix = format!("[{}] [INF] STREAM: thread ", std::process::id());
        assert!(text.lines().all(|l| l.starts_with(&prefix)));
    }

    #[test]
    fn file_logger_rotates_past_its_size_limit() {
        let dir = std::env::temp_dir().join(format!(
            "stan-logger-rotate-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.log");
        std::fs::write(&path, "x".repeat(350)).unwrap();
        let log = Logger::new(LogConfig {
            file: Some(path.clone()),
            logtime: false,
            size_limit: 400,
            ..LogConfig::default()
        })
        .unwrap();
        let pid = std::process::id();
        // 350 bytes already there: the first line stays, the second passes 400.
        log.log(Origin::Nats, Level::Info, "one");
        log.log(Origin::Nats, Level::Info, "two, a little longer than one");
        log.log(Origin::Nats, Level::Info, "three");
        let mut backups: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n != "server.log")
            .collect();
        backups.sort();
        assert_eq!(backups.len(), 1, "{backups:?}");
        let backup = &backups[0];
        let suffix = backup.strip_prefix("server.log.").unwrap();
        let shape: String = suffix
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999.99.99.99.99.99.999999999");
        assert_eq!(
            std::fs::read_to_string(dir.join(backup)).unwrap(),
            format!(
                "{}[{pid}] [INF] one\n[{pid}] [INF] two, a little longer than one\n",
                "x".repeat(350)
            )
        );
        let full = dir.join(backup).display().to_string();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("[{pid}] [INF] Rotated log, backup saved as {full:?}\n[{pid}] [INF] three\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_logger_appends_and_reopens() {
        let dir = std::env::temp_dir().join(format!(
            "stan-logger-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = Logger::new(LogConfig {
            file: Some(path.clone()),
            logtime: false,
            ..LogConfig::default()
        })
        .unwrap();
        log.log(Origin::Nats, Level::Info, "one");
        // Rotation: the file is moved away, then the logger reopens the path.
        let rotated = dir.join("server.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.log(Origin::Nats, Level::Info, "two");
        assert!(log.reopen().unwrap());
        log.log(Origin::Stream, Level::Warn, "three");
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            format!("earlier\n[{pid}] [INF] one\n[{pid}] [INF] two\n")
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("[{pid}] [WRN] STREAM: three\n")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            // The umask may only remove bits.
            assert_eq!(mode & !0o660, 0, "{mode:o}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn destination_precedence() {
        let file = Some(PathBuf::from("x.log"));
        let remote = Some("udp://h:514".to_string());
        let config = |file: &Option<PathBuf>, remote: &Option<String>, syslog| LogConfig {
            file: file.clone(),
            remote_syslog: remote.clone(),
            syslog,
            ..LogConfig::default()
        };
        assert_eq!(
            config(&file, &remote, true).destination(),
            Destination::File("x.log".into())
        );
        assert_eq!(
            config(&None, &remote, true).destination(),
            Destination::RemoteSyslog("udp://h:514".into())
        );
        assert_eq!(
            config(&None, &None, true).destination(),
            Destination::Syslog
        );
        assert_eq!(
            config(&None, &None, false).destination(),
            Destination::Stderr
        );
    }

    #[test]
    fn remote_syslog_lines_are_gated_like_the_others() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let url = format!("udp://{}", server.local_addr().unwrap());
        let log = Logger::new(LogConfig {
            remote_syslog: Some(url),
            stan_debug: true,
            ..LogConfig::default()
        })
        .unwrap();
        log.log(Origin::Nats, Level::Debug, "nats debug");
        log.log(Origin::Stream, Level::Trace, "stan trace");
        log.log(Origin::Stream, Level::Debug, "stan debug");
        log.log(Origin::Nats, Level::Info, "Server is ready");
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        for _ in 0..2 {
            let n = server.recv(&mut buf).unwrap();
            let packet = String::from_utf8(buf[..n].to_vec()).unwrap();
            let pri = packet[..packet.find('>').unwrap() + 1].to_string();
            got.push((pri, packet[packet.find("]: ").unwrap() + 3..].to_string()));
        }
        assert_eq!(
            got,
            [
                ("<7>".to_string(), "STREAM: stan debug\n".to_string()),
                ("<5>".to_string(), "Server is ready\n".to_string()),
            ]
        );
        // Nothing to reopen: not a file.
        assert!(!log.reopen().unwrap());
        // A reload back to stderr switches over; a broken destination changes nothing.
        assert!(matches!(
            log.reconfigure(LogConfig {
                remote_syslog: Some("http://h".into()),
                ..LogConfig::default()
            }),
            Err(OpenError::Syslog(e)) if e == "error invalid network type: \"http\""
        ));
        log.reconfigure(LogConfig::default()).unwrap();
        assert!(matches!(*log.inner.sink.lock().unwrap(), Sink::Stderr));
    }

    #[test]
    fn reopen_without_a_file_is_refused() {
        let (log, _) = capture(LogConfig::default());
        assert!(!log.reopen().unwrap());
        let log = Logger::new(LogConfig::default()).unwrap();
        assert!(!log.reopen().unwrap());
    }

    #[test]
    fn missing_log_directory_is_an_error() {
        let result = Logger::new(LogConfig {
            file: Some(PathBuf::from("/nonexistent-stan-dir/x.log")),
            ..LogConfig::default()
        });
        assert!(result.is_err());
    }
}

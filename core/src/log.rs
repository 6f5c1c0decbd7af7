//! Log lines decided by the core; the driver prints them in the Go server's format.

/// Severity, in the Go server's vocabulary (`[INF]`, `[DBG]`, ...).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Fatal,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// The three-letter tag printed between brackets.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Fatal => "FTL",
            Level::Error => "ERR",
            Level::Warn => "WRN",
            Level::Info => "INF",
            Level::Debug => "DBG",
            Level::Trace => "TRC",
        }
    }
}

/// Which layer a line comes from: streaming lines carry the `STREAM: ` prefix.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    Nats,
    Stream,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub origin: Origin,
    pub level: Level,
    pub text: String,
}

/// Which optional levels are wanted, so the core formats debug and trace text only when
/// it will be printed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Verbosity {
    pub debug: bool,
    pub trace: bool,
}

impl Verbosity {
    pub fn wants(self, level: Level) -> bool {
        match level {
            Level::Debug => self.debug,
            Level::Trace => self.trace,
            _ => true,
        }
    }
}

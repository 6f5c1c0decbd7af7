//! Configuration files: the NATS configuration language and the options stan-server
//! takes from it (shared/spec/OPERATIONS.md §2).
//!
//! Everything here is pure. [`parse`] takes the text of a file plus two callbacks, one
//! returning the text of `include`d files and one looking up environment variables
//! for `$name`, so the runtime does the reading and the parser can be fuzzed on any
//! input. [`StreamingFileOptions`] and [`NatsFileOptions`] then pick the keys each
//! half of the server reads, holding only what the file set: the caller decides what
//! the command line overrides.

mod accounts;
mod duration;
mod nats;
mod parse;
mod scalars;
mod streaming;
mod value;

pub use duration::parse_go_duration;
pub use nats::{ClusterFileOptions, NatsFileOptions, TlsFileOptions};
pub use parse::{parse, parse_str, EnvFn, IncludeFn, Included};
pub use streaming::{FileSetting, StreamingFileOptions};
pub use value::{Datetime, Entry, Map, Pos, Value};

pub(crate) use crate::gofmt::go_quote;
use std::fmt;

/// Why a configuration file is refused: `<file>:<line>: <reason>`, the way operators
/// find the line to fix. `reason` keeps the Go server's wording where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    /// The key concerned, as written, when the error is about one.
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn at(entry: &Entry, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: entry.pos.file.to_string(),
            line: entry.pos.line,
            key: Some(entry.key.clone()),
            reason: reason.into(),
        }
    }
}

/// What stan-server says of a key whose feature it does not have yet. Such keys are
/// refused rather than ignored: running without a setting the operator asked for
/// (TLS, a file store, clustering) would be worse than not starting.
fn not_supported(entry: &Entry, path: &str) -> ConfigError {
    ConfigError::at(
        entry,
        format!("parameter \"{path}\" is not supported yet by stan-server"),
    )
}

//! stan-core: every protocol decision of stan-rs as pure, IO-free state machines.
//!
//! Nothing in this crate touches a socket, a file, a thread, the system clock or an
//! unseeded random source. Drivers feed inputs and time in and pull outputs out:
//!
//! ```text
//! node.handle_input(now, input);
//! node.handle_timeout(now);
//! while let Some(out) = node.poll_output() { /* write bytes, close connections */ }
//! let next = node.poll_timeout();
//! ```

pub mod client;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod gofmt;
pub mod log;
pub mod nats;
pub mod node;
pub mod raft;
pub mod rng;
pub mod store;
pub mod streaming;
pub mod time;
pub mod timefmt;

pub use rng::Rng;
pub use time::{Instant, Now};

//! stan-sim: deterministic simulation of stan-rs.
//!
//! The production runtime driver runs the node (embedded NATS plus the streaming
//! server over the memory store, or over the FILE store on the host's simulated disk)
//! as a turmoil host, on turmoil's listener and a virtual wall clock; clients built on
//! the core's sans-IO STAN client run as other hosts over simulated TCP. A seed fixes the workload (clients, channels, every subscription kind
//! and start position, acks and skipped acks, closes, resumes, reconnects that reuse a
//! client ID), the faults (held and partitioned links, frozen clients, dropped sockets,
//! server crash and restart) and the network's latencies, so a run replays exactly: same
//! seed, same event trace, same trace hash, on any machine.
//!
//! Each run is judged from its journal by [`oracle::check`]:
//! - every publish the server acknowledged reaches every subscription that must have it
//!   (by start position, durable history or queue group), and manual subscribers end up
//!   acknowledging it, which only redelivery guarantees for skipped or lost acks;
//! - a healthy subscription still owed messages after the workload is never left
//!   without deliveries for long;
//! - first deliveries come once and in order; `redelivered` marks exactly the
//!   redeliveries; an acknowledged message is not sent again; a plain subscription never
//!   holds more than MaxInFlight unacknowledged messages; sequences and payloads match
//!   one to one per server process;
//! - a silent client (frozen, held, partitioned, gone) is closed within
//!   (hb_fail_count + 1) × (hb_interval + hb_timeout) + hb_interval after it went silent
//!   and not before the heartbeat rule allows; a client that answers is never closed or
//!   replaced; a connect with an ID in use is refused while the holder answers and
//!   accepted once it is silent;
//! - the server's own client list agrees with its log, and nothing panics;
//! - with the FILE store, each recovery brings back every message acknowledged with
//!   `--file_sync` (without it, everything acknowledged before the last sync), as a
//!   gapless run in each publisher's order, and the store starts again after a torn
//!   write (see [`simfs`] for the disk's durability model).
//!
//! `cargo run -p stan-sim -- --seed N --trace` replays a run; `--seeds A..B` soaks.

mod actor;
mod filestore;
pub mod journal;
pub mod oracle;
pub mod plan;
mod run;
pub mod scenarios;
pub mod server;
pub mod simfs;

pub use plan::Options;
pub use run::{run, run_with, soak, Report};
pub use scenarios::Scenario;

//! The NATS Streaming server: connect, publish, subscribe, ack, redelivery, heartbeats
//! and limits, as a state machine over NATS messages and time.

mod channels;
mod delivery;
pub mod limits;
pub mod monitor;
pub mod pb;
mod recovery;
mod server;
mod state;
mod subscribe;
pub mod wire;

use std::time::Duration;

pub use server::{Action, Stats, Streaming, VERSION};

use crate::log::Verbosity;
use limits::StoreLimits;

/// Settings of the streaming server, with the Go server's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster_id: String,
    pub discover_prefix: String,
    pub hb_interval: Duration,
    pub hb_timeout: Duration,
    /// Failed heartbeats tolerated; the client is closed on the next failure.
    pub hb_fail_count: u32,
    pub limits: StoreLimits,
    pub replace_durable: bool,
    pub verbosity: Verbosity,
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_id: "test-cluster".into(),
            discover_prefix: "_STAN.discover".into(),
            hb_interval: Duration::from_secs(30),
            hb_timeout: Duration::from_secs(10),
            hb_fail_count: 10,
            limits: StoreLimits::default(),
            replace_durable: false,
            verbosity: Verbosity::default(),
            rng_seed: 0,
        }
    }
}

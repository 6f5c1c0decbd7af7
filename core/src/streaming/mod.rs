//! The NATS Streaming server: connect, publish, subscribe, ack, redelivery, heartbeats
//! and limits, as a state machine over NATS messages and time.

mod channels;
pub mod cluster;
mod delivery;
pub mod ft;
pub mod limits;
pub mod monitor;
pub mod partition;
pub mod pb;
mod recovery;
mod server;
mod state;
mod subscribe;
pub mod wire;

use std::time::Duration;

pub(crate) use server::sid;
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
    /// `--dir` as given, for the startup line naming it (printed whatever the store).
    pub store_location: Option<String>,
    /// `--ft_group`: the fault-tolerance group this server belongs to, if any.
    pub ft_group: Option<String>,
    /// `partitioning`: serve only the channels of the per-channel limits entries,
    /// sharing the cluster ID with other servers (BEHAVIOUR §12).
    pub partitioning: bool,
    /// `cluster { }` / `--clustered`: the store is replicated by Raft (BEHAVIOUR §13).
    pub cluster: Option<cluster::ClusterConfig>,
}

#[cfg(all(feature = "planted-bugs", not(debug_assertions)))]
compile_error!(
    "the planted-bugs feature is a simulator self-test and must not reach a release build"
);

/// Faults the simulator must catch; see the `planted-bugs` feature.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// A client is closed one failed heartbeat early.
    HeartbeatCount,
    /// A plain subscription's message is redelivered once at most.
    AckWaitRedelivery,
    /// A leaving queue member's pending messages are not handed to the others.
    QueueRedelivery,
    /// The FILE store (in the runtime) writes each batch out but never fsyncs it, even
    /// with `--file_sync`: acknowledged messages live only in the page cache.
    FileSyncSkipped,
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    /// Per thread, because the simulator runs each whole simulation on one thread and
    /// several simulations side by side; configuration structs stay untouched.
    static PLANTED: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Makes servers on this thread run with `bug` (or none).
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.with(|p| p.set(bug));
}

/// True when servers on this thread run with `bug`; the runtime's stores ask too.
#[cfg(feature = "planted-bugs")]
pub fn planted(bug: PlantedBug) -> bool {
    PLANTED.with(|p| p.get()) == Some(bug)
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
            store_location: None,
            ft_group: None,
            partitioning: false,
            cluster: None,
        }
    }
}

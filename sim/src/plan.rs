//! What one run does, fixed entirely by its seed before the simulation starts: the
//! server's settings, every client's timed script and every network fault.

use std::time::Duration;

use stan_core::client::StartAt;

use crate::journal::SubKind;

/// Timing shared by the server, the clients and the oracle's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Simulation step; network delivery happens on step boundaries.
    pub tick: Duration,
    /// At least one tick, so that nothing arrives in the step it was sent in and the
    /// journal's timestamps respect causality.
    pub min_latency: Duration,
    pub max_latency: Duration,
    pub hb_interval: Duration,
    pub hb_timeout: Duration,
    pub hb_fail_count: u32,
    /// Client pings (§3.9): the client gives up after `ping_max_out` unanswered ones.
    pub ping_interval: Duration,
    pub ping_max_out: i32,
    pub connect_wait: Duration,
    pub pub_ack_wait: Duration,
    /// How long the server waits for the old holder of a client ID to answer.
    pub probe_timeout: Duration,
}

/// Short heartbeats, so that a run covers several detection cycles in little simulated
/// time.
pub const TIMING: Timing = Timing {
    tick: Duration::from_millis(5),
    min_latency: Duration::from_millis(5),
    max_latency: Duration::from_millis(20),
    hb_interval: Duration::from_secs(1),
    hb_timeout: Duration::from_millis(500),
    hb_fail_count: 2,
    ping_interval: Duration::from_secs(1),
    ping_max_out: 3,
    connect_wait: Duration::from_secs(2),
    pub_ack_wait: Duration::from_secs(5),
    probe_timeout: Duration::from_millis(500),
};

impl Timing {
    /// One-way delay of a packet at most, including the wait for the next step.
    pub fn latency_bound(&self) -> Duration {
        self.max_latency + 2 * self.tick
    }

    /// A silent client must be closed by this long after it went silent.
    pub fn close_upper_bound(&self) -> Duration {
        let cycle = self.hb_interval + self.hb_timeout;
        cycle * (self.hb_fail_count + 1) + self.hb_interval + 2 * self.latency_bound()
    }

    /// A client that stopped answering (frozen, held, partitioned) cannot be closed
    /// sooner than this: its first missed heartbeat times out, then `hb_fail_count`
    /// more full cycles run.
    pub fn close_lower_bound_silent(&self) -> Duration {
        let cycle = self.hb_interval + self.hb_timeout;
        (self.hb_timeout + cycle * self.hb_fail_count).saturating_sub(2 * self.latency_bound())
    }

    /// A client whose connection is gone fails each heartbeat at once (no responders),
    /// and one ping still on its way may bring one check forward; a client whose pings
    /// still arrive while the heartbeats to it are lost brings every check forward, but
    /// each still waits `hb_timeout`, which `hb_interval` exceeds here.
    pub fn close_lower_bound_fast(&self) -> Duration {
        let gone =
            (self.hb_interval * self.hb_fail_count.saturating_sub(1)).saturating_sub(2 * self.tick);
        let half_open =
            (self.hb_timeout * (self.hb_fail_count + 1)).saturating_sub(2 * self.latency_bound());
        gone.min(half_open)
    }

    /// Silences shorter than this cannot add up to a close, provided they are
    /// [`Timing::blip_gap`] apart (see the oracle).
    pub fn blip_max(&self) -> Duration {
        let cycle = self.hb_interval + self.hb_timeout;
        (cycle * self.hb_fail_count + self.hb_timeout).saturating_sub(4 * self.latency_bound())
    }

    /// Between two silences at least this much answering time lets one heartbeat be
    /// answered, which resets the failure count.
    pub fn blip_gap(&self) -> Duration {
        self.hb_interval + self.hb_timeout + 4 * self.latency_bound()
    }
}

/// When an acknowledgement is sent for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    /// The client state machine acknowledges each delivery as it arrives.
    Auto,
    /// The script acknowledges, `delay` after the delivery, except that it skips a
    /// delivery with `skip_percent` chance while that sequence was skipped fewer than
    /// `max_skips` times.
    Manual {
        skip_percent: u8,
        max_skips: u8,
        delay: Duration,
    },
}

/// One subscription a client wants.
#[derive(Debug, Clone, PartialEq)]
pub struct SubSpec {
    pub channel: String,
    pub kind: SubKind,
    pub start: StartAt,
    pub max_in_flight: i32,
    pub ack_wait_secs: i32,
    pub ack: AckPolicy,
}

/// A timed action of a client script.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Open a new connection (an incarnation) with the actor's client ID.
    Connect,
    Publish {
        channel: String,
    },
    /// Want this subscription from now on, on this and every later connection.
    Subscribe(SubSpec),
    /// Stop wanting subscription `n` (by order of `Subscribe` steps): close keeps a
    /// durable for a later resume, unsubscribe forgets it.
    EndSub {
        n: usize,
        unsubscribe: bool,
    },
    /// Want subscription `n` again (a durable resumes where it was).
    Resume {
        n: usize,
    },
    Close,
    /// Drop the socket without closing, as a killed process does.
    Drop,
    /// Stop running for a while: read nothing, answer nothing, fire no timer.
    Freeze(Duration),
}

/// One client host and its script.
#[derive(Debug, Clone)]
pub struct ActorPlan {
    pub id: u32,
    pub client_id: String,
    pub seed: u64,
    /// Sorted by time.
    pub steps: Vec<(Duration, Step)>,
    /// After a lost connection or a refused connect, connect again this much later
    /// (until the workload ends).
    pub reconnect: Option<Duration>,
}

/// A network fault between one client host and the server, or the server's crash and
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Hold,
    Release,
    Partition,
    Repair,
    /// The server host dies as in a power loss (`actor` unused).
    Crash,
    /// The server host starts again (`actor` unused): with an empty memory store, or
    /// recovering its FILE store from the simulated disk.
    Restart,
}

#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub at: Duration,
    pub actor: u32,
    pub kind: FaultKind,
}

/// Channel limits the scenario sets on the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_msgs: i64,
}

/// Where the server keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// The core's memory store: a restart starts empty.
    #[default]
    Memory,
    /// The FILE store on the server host's simulated disk, with or without
    /// `--file_sync`; a restart recovers it.
    File { sync: bool },
}

/// How often the FILE store syncs on its own without `--file_sync`
/// (`--file_auto_sync`), short enough that runs see several syncs.
pub const AUTO_SYNC: Duration = Duration::from_millis(1500);

/// Chance in percent that a crash leaves part of the last unsynced append on disk.
pub const TEAR_PERCENT: usize = 60;

#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    pub seed: u64,
    pub store: StoreKind,
    pub limits: Limits,
    pub actors: Vec<ActorPlan>,
    /// Sorted by time.
    pub faults: Vec<Fault>,
    /// No publish, subscribe or fault after this; clients reconnect no more.
    pub workload_end: Duration,
    /// Every client stops here; the oracle judges the state at this point.
    pub end: Duration,
    pub options: Options,
}

/// How to run a plan, beyond what the seed decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Journal every server log line, trace level included (for reading a replay; the
    /// trace hash then differs from the plain run's).
    pub server_log: bool,
    /// The server host runs a plain NATS server for the clients, and the streaming
    /// server behind its connections to it (`-ns`).
    pub external_nats: bool,
    /// Run the server with this deliberate fault.
    #[cfg(feature = "planted-bugs")]
    pub planted: Option<stan_core::streaming::PlantedBug>,
}

impl Options {
    /// The command-line flags that select these options.
    pub fn flags(&self) -> String {
        let mut f = String::new();
        if self.server_log {
            f.push_str(" --server-log");
        }
        if self.external_nats {
            f.push_str(" --external-nats");
        }
        #[cfg(feature = "planted-bugs")]
        if let Some(bug) = self.planted {
            f.push_str(" --plant ");
            f.push_str(planted_name(bug));
        }
        f
    }
}

/// The deliberate faults by the name the command line takes.
#[cfg(feature = "planted-bugs")]
pub const PLANTED: [(&str, stan_core::streaming::PlantedBug); 4] = [
    (
        "heartbeat-count",
        stan_core::streaming::PlantedBug::HeartbeatCount,
    ),
    (
        "ack-wait",
        stan_core::streaming::PlantedBug::AckWaitRedelivery,
    ),
    (
        "queue-redelivery",
        stan_core::streaming::PlantedBug::QueueRedelivery,
    ),
    (
        "file-sync",
        stan_core::streaming::PlantedBug::FileSyncSkipped,
    ),
];

#[cfg(feature = "planted-bugs")]
pub fn planted_name(bug: stan_core::streaming::PlantedBug) -> &'static str {
    PLANTED
        .iter()
        .find(|(_, b)| *b == bug)
        .map_or("?", |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_leave_room_between_safe_blips_and_closes() {
        let t = TIMING;
        assert!(t.blip_max() < t.close_lower_bound_silent());
        assert!(t.close_lower_bound_silent() < t.close_upper_bound());
        assert!(t.close_lower_bound_fast() >= t.hb_timeout);
        // A silence can only be told apart from a blip when heartbeat answers outlive
        // the network's delays.
        assert!(t.hb_timeout > 2 * t.latency_bound());
    }
}

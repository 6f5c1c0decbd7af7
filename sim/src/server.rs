//! The server host: the production driver and node, on a simulated listener and a
//! virtual wall clock, over the memory store or the FILE store on the host's simulated
//! disk.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stan_core::log::{Level, LogLine, Verbosity};
use stan_core::nats;
use stan_core::nats::link::LinkConfig;
use stan_core::node::{Node, NodeConfig, EXTERNAL_ROLES};
use stan_core::store::{MemStore, Store};
use stan_core::streaming::{self, limits::ChannelLimits, limits::StoreLimits};
use stan_runtime::driver::{Driver, DriverHandle, Listener, WallClock};

use crate::filestore;
use crate::journal::{Ev, Journal, Unregister};
use crate::plan::{Plan, StoreKind, TIMING};
use crate::simfs::Disk;

pub const SERVER_HOST: &str = "server";
pub const PORT: u16 = 4222;
pub const CLUSTER_ID: &str = "sim-cluster";

/// 2023-01-01T00:00:00Z: a fixed origin, so that message timestamps and `max_age` do not
/// depend on when the simulation runs.
pub const EPOCH_NS: i64 = 1_672_531_200_000_000_000;

/// Simulated time since the run started, as seen from inside a host.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The wall clock every host shares: the fixed epoch plus simulated time.
pub fn virtual_wall_clock() -> WallClock {
    Arc::new(|| EPOCH_NS + sim_now().as_nanos() as i64)
}

/// turmoil's listener under the driver's [`Listener`] trait.
pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        self.0.accept()
    }
}

/// The node's settings for the `process`-th start of the server host (from 0). Each
/// process draws its IDs and inboxes from a generator of its own, as a real restart
/// does: a recovered subscription keeps the inboxes of the process that made it, which
/// a new subscription must not be given again.
fn node_config(plan: &Plan, process: u64) -> NodeConfig {
    let reseed = process.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let streaming = streaming::Config {
        cluster_id: CLUSTER_ID.into(),
        hb_interval: TIMING.hb_interval,
        hb_timeout: TIMING.hb_timeout,
        hb_fail_count: TIMING.hb_fail_count,
        limits: StoreLimits {
            channel: ChannelLimits {
                max_msgs: plan.limits.max_msgs,
                ..StoreLimits::default().channel
            },
            ..StoreLimits::default()
        },
        // Connect, close and replace lines are how the oracle learns when the server
        // registered and dropped each client, to the exact instant.
        verbosity: Verbosity {
            debug: true,
            trace: plan.options.server_log,
        },
        rng_seed: plan.seed ^ 0x7374_616e ^ reseed,
        ..streaming::Config::default()
    };
    NodeConfig {
        nats: nats::Config {
            port: PORT,
            rng_seed: plan.seed ^ 0x6e61_7473 ^ reseed,
            ..nats::Config::default()
        },
        streaming: Some(streaming),
    }
}

/// Turns the server's log into journal events: registrations from the connect, close,
/// replace and heartbeat lines, and every warning or error (or every line) verbatim.
fn log_sink(journal: Journal, everything: bool) -> Box<dyn FnMut(LogLine) + Send> {
    Box::new(move |line: LogLine| {
        let at = sim_now();
        if let Some(ev) = registration_event(&line.text) {
            journal.record(at, ev);
        }
        if everything || line.level <= Level::Warn {
            journal.record(at, Ev::ServerLog { line: line.text });
        }
    })
}

/// `[Client:<id>] <what>` lines about a client's registration.
fn registration_event(text: &str) -> Option<Ev> {
    let rest = text.strip_prefix("[Client:")?;
    let (id, what) = rest.split_once("] ")?;
    let client_id = id.to_string();
    if what.starts_with("Connected (Inbox=") {
        Some(Ev::Registered { client_id })
    } else if what.starts_with("Closed (Inbox=") {
        Some(Ev::Unregistered {
            client_id,
            reason: Unregister::Closed,
        })
    } else if what == "Timed out on heartbeats" {
        Some(Ev::Unregistered {
            client_id,
            reason: Unregister::HeartbeatTimeout,
        })
    } else if what.starts_with("Replaced old client") {
        Some(Ev::Unregistered {
            client_id,
            reason: Unregister::Replaced,
        })
    } else {
        None
    }
}

/// Builds the node over the plan's store and starts it, which recovers a FILE store.
/// A FILE store that refuses to start without `--file_sync` is opened again with
/// `--file_truncate_bad_eof`, as its log tells an operator to do after a torn write;
/// with `--file_sync` a refusal ends the server (and fails the run).
fn start(plan: &Plan, process: u64, journal: &Journal, disk: &Disk) -> Result<Driver, String> {
    let fs = matches!(plan.store, StoreKind::File { .. }).then(|| disk.power_on());
    let mut truncate_bad_eof = false;
    loop {
        let cfg = node_config(plan, process);
        let store: Box<dyn Store> = match (plan.store, &fs) {
            (StoreKind::File { sync }, Some(fs)) => {
                filestore::open(fs.clone(), sync, truncate_bad_eof, &cfg, journal)?
            }
            _ => Box::new(MemStore::new()),
        };
        let node = match plan.options.external_nats {
            true => Node::with_external(cfg, store, LinkConfig::default())?,
            false => Node::with_streaming(cfg, store)?,
        };
        let mut driver = Driver::new(
            node,
            virtual_wall_clock(),
            log_sink(journal.clone(), plan.options.server_log),
        );
        match driver.start() {
            Ok(()) => return Ok(driver),
            Err(error) => {
                journal.record(
                    sim_now(),
                    Ev::StoreRefused {
                        error: error.clone(),
                    },
                );
                if plan.store == (StoreKind::File { sync: false }) && !truncate_bad_eof {
                    truncate_bad_eof = true;
                    continue;
                }
                return Err(error);
            }
        }
    }
}

/// The server host's software: bind, start the node, serve until the host stops. At
/// `final_at` it records the registered client IDs, read from the node itself, so the
/// oracle can cross-check what it learned from the log.
pub async fn serve(
    plan: Arc<Plan>,
    process: u64,
    journal: Journal,
    disk: Disk,
    final_at: Duration,
) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let driver = start(&plan, process, &journal, &disk)?;
    let handle = driver.handle();
    if plan.options.external_nats {
        // A plain NATS server takes the clients; the streaming server is one of them.
        let nats = Node::new(node_config(&plan, process));
        let nats = Driver::new(nats, virtual_wall_clock(), Box::new(|_| {}));
        let _accept = nats.serve(SimListener(listener));
        tokio::spawn(nats.run(std::future::pending::<()>()));
        for role in 0..EXTERNAL_ROLES.len() {
            tokio::spawn(keep_connected(role, handle.clone()));
        }
    } else {
        let _accept = driver.serve(SimListener(listener));
    }
    tokio::spawn(async move {
        tokio::time::sleep(final_at.saturating_sub(sim_now())).await;
        let ids = handle
            .inspect(|node, _| {
                node.streaming()
                    .map(|s| s.client_ids().map(String::from).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .await
            .unwrap_or_default();
        journal.record(sim_now(), Ev::ServerFinal { client_ids: ids });
    });
    driver.run(std::future::pending::<()>()).await;
    Ok(())
}

/// The streaming server's connection `role` to the NATS server on its own host,
/// dialed again a moment after each loss, as the runtime does.
async fn keep_connected(role: usize, driver: DriverHandle) {
    loop {
        let Ok(stream) = turmoil::net::TcpStream::connect((SERVER_HOST, PORT)).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], PORT)));
        let url = format!("nats://{SERVER_HOST}:{PORT}");
        let Some(closed) = driver.attach_external(role, stream, peer, url, None, Vec::new()) else {
            return;
        };
        let _ = closed.await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lines_are_recognised() {
        let ev = |t: &str| registration_event(t);
        assert_eq!(
            ev("[Client:c1] Connected (Inbox=_INBOX.x)"),
            Some(Ev::Registered {
                client_id: "c1".into()
            })
        );
        assert_eq!(
            ev("[Client:c-2] Timed out on heartbeats"),
            Some(Ev::Unregistered {
                client_id: "c-2".into(),
                reason: Unregister::HeartbeatTimeout
            })
        );
        assert_eq!(
            ev("[Client:c1] Replaced old client (Inbox=_INBOX.y)"),
            Some(Ev::Unregistered {
                client_id: "c1".into(),
                reason: Unregister::Replaced
            })
        );
        assert_eq!(
            ev("[Client:c1] Closed (Inbox=_INBOX.x)"),
            Some(Ev::Unregistered {
                client_id: "c1".into(),
                reason: Unregister::Closed
            })
        );
        assert_eq!(ev("[Client:c1] Connect failed; already connected"), None);
        assert_eq!(ev("Channel \"a\" has been created"), None);
    }
}

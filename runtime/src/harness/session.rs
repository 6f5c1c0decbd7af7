//! A server under attack with a well-behaved client running throughout: phases of
//! hostile traffic are run one after another, and for each the server's resident memory
//! before and after and the client's latencies during it are recorded.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::hostile::{server_config, Limits, Outcome, Target};
use super::probe::{Probe, ProbeReport};
use super::{settle_rss, Latency, ServerProcess};

/// Messages a channel keeps (`-mm`): the probe's channel stops growing once full, so
/// the memory the probe's traffic needs is reached during the warm-up.
const CHANNEL_MAX_MSGS: u64 = 1000;

/// How far memory may stay above its value before a phase (10 %).
pub const RSS_TOLERANCE: f64 = 1.10;

pub struct Session {
    pub server: ServerProcess,
    pub target: Target,
    pub limits: Limits,
    probe: Option<Probe>,
}

/// What one phase did to the server and to the well-behaved client.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub name: String,
    pub outcome: Result<String, String>,
    pub rss_before: u64,
    pub rss_after: u64,
    /// Publish-to-delivery latency of the well-behaved client during the phase.
    pub latency: Latency,
    /// Whether the well-behaved client still got messages after the phase.
    pub probe_alive: bool,
    pub server_alive: bool,
}

impl PhaseReport {
    pub fn rss_recovered(&self) -> bool {
        self.rss_after as f64 <= self.rss_before as f64 * RSS_TOLERANCE
    }

    /// Every functional expectation met.
    pub fn passed(&self) -> bool {
        self.outcome.is_ok() && self.rss_recovered() && self.probe_alive && self.server_alive
    }
}

impl Session {
    /// Starts `bin` with the limits the phases expect and the well-behaved client, and
    /// warms up until the client's channel is full.
    pub async fn start(
        bin: &Path,
        limits: Limits,
        probe_every: Duration,
    ) -> Result<Session, String> {
        let config = server_config(limits);
        let mm = CHANNEL_MAX_MSGS.to_string();
        let mut server = ServerProcess::start(bin, Some(&config), &["-mm", &mm])
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        server.wait_ready(Duration::from_secs(30)).await?;
        let target = Target {
            addr: server.addr(),
            http_port: server.http_port,
            cluster_id: server.cluster_id.clone(),
        };
        let probe = Probe::start(
            &target.addr,
            &target.cluster_id,
            "well-behaved",
            "probe",
            probe_every,
            128,
        )
        .await?;
        // Warm-up: the channel fills to its limit and every buffer reaches its size.
        if !probe
            .wait_for_more(CHANNEL_MAX_MSGS * 3 / 2, Duration::from_secs(120))
            .await
        {
            return Err("the well-behaved client did not warm up".into());
        }
        Ok(Session {
            server,
            target,
            limits,
            probe: Some(probe),
        })
    }

    fn probe(&self) -> &Probe {
        self.probe.as_ref().expect("probe runs until finish")
    }

    /// Runs one hostile phase while the well-behaved client goes on; then waits for the
    /// server's memory to come back (the phase's held connections still open), releases
    /// them, and checks the well-behaved client still gets messages.
    pub async fn phase<F>(&mut self, name: &str, attack: F) -> PhaseReport
    where
        F: Future<Output = Result<Outcome, String>>,
    {
        let rss_before = self.server.rss();
        self.probe().take_latencies();
        let result = attack.await;
        let latency = Latency::of(self.probe().take_latencies());
        let limit = (rss_before as f64 * RSS_TOLERANCE) as u64;
        let rss_after = settle_rss(self.server.pid(), limit, 30).await;
        let outcome = match result {
            Ok(o) => {
                let summary = o.summary.clone();
                o.release().await.map(|()| summary)
            }
            Err(e) => Err(e),
        };
        let probe_alive = self
            .probe()
            .wait_for_more(20, Duration::from_secs(60))
            .await;
        PhaseReport {
            name: name.to_string(),
            outcome,
            rss_before,
            rss_after,
            latency,
            probe_alive,
            server_alive: self.server.alive(),
        }
    }

    /// Only the well-behaved client, for `for_time`: the idle reference.
    pub async fn idle(&mut self, for_time: Duration) -> PhaseReport {
        self.phase("idle", async move {
            tokio::time::sleep(for_time).await;
            Ok(Outcome {
                summary: "nothing but the well-behaved client".into(),
                held: Vec::new(),
                held_must_be_closed: false,
            })
        })
        .await
    }

    /// Stops the well-behaved client and returns what it saw over the whole session.
    pub async fn finish(mut self) -> ProbeReport {
        let probe = self.probe.take().expect("finish once");
        probe.stop().await
    }
}

//! The well-behaved client: publishes on its own channel at a steady pace, receives on
//! it, and checks that everything the server acknowledged arrives, once and in order.
//! Each delivery's publish-to-delivery latency is kept for whoever measures it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::stan_client::{PubAckWaiter, StanConn, StanOptions, SubscribeOptions};

/// What the probe saw over its whole life.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    pub published: u64,
    pub acked: u64,
    pub received: u64,
    /// Publishes that failed (no PubAck, or an error in it).
    pub publish_errors: Vec<String>,
    /// Acknowledged messages that never arrived.
    pub missing: u64,
    /// Deliveries that were not the next sequence after the previous one (a gap is
    /// allowed only for publishes that were not acknowledged).
    pub out_of_order: u64,
    pub duplicates: u64,
    /// Something else went wrong (subscription ended early, connection lost).
    pub failure: Option<String>,
}

impl ProbeReport {
    /// Every acknowledged message delivered once, in order, and no error.
    pub fn is_clean(&self) -> bool {
        self.publish_errors.is_empty()
            && self.missing == 0
            && self.out_of_order == 0
            && self.duplicates == 0
            && self.failure.is_none()
    }
}

/// A running probe; [`Probe::stop`] ends it and returns its report.
pub struct Probe {
    /// The probe's own runtime, so that attackers sharing the caller's runtime cannot
    /// delay it: its latencies are the server's doing, as for a client in another
    /// process.
    rt: Option<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    received: Arc<AtomicU64>,
    task: JoinHandle<ProbeReport>,
}

/// Payload: the probe's sequence number and the send time in nanoseconds since the
/// probe's origin, both little-endian, padded to `size`.
fn payload(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(16));
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&sent_ns.to_le_bytes());
    p.resize(size.max(16), b'p');
    p
}

fn decode(p: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

impl Probe {
    /// Connects as `client_id`, subscribes to `channel` (new messages only) and starts
    /// publishing one `size`-byte message every `every`, on a runtime of its own.
    pub async fn start(
        addr: &str,
        cluster_id: &str,
        client_id: &str,
        channel: &str,
        every: Duration,
        size: usize,
    ) -> Result<Probe, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("probe")
            .enable_all()
            .build()
            .map_err(|e| format!("probe runtime: {e}"))?;
        let (addr, cluster_id, client_id, channel) = (
            addr.to_string(),
            cluster_id.to_string(),
            client_id.to_string(),
            channel.to_string(),
        );
        let started = rt.spawn(async move {
            Probe::start_here(&addr, &cluster_id, &client_id, &channel, every, size).await
        });
        let mut probe = match started.await {
            Ok(r) => r?,
            Err(e) => return Err(format!("probe start failed: {e}")),
        };
        probe.rt = Some(rt);
        Ok(probe)
    }

    async fn start_here(
        addr: &str,
        cluster_id: &str,
        client_id: &str,
        channel: &str,
        every: Duration,
        size: usize,
    ) -> Result<Probe, String> {
        let conn = StanConn::connect(addr, cluster_id, client_id, StanOptions::default())
            .await
            .map_err(|e| format!("probe connect: {e}"))?;
        let mut sub = conn
            .subscribe(channel, SubscribeOptions::default())
            .await
            .map_err(|e| format!("probe subscribe: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(AtomicU64::new(0));
        let origin = tokio::time::Instant::now();

        // Acknowledgements are awaited in publish order by a task of their own, so a
        // slow PubAck never delays the next publish.
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, PubAckWaiter)>();
        let acks = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut errors = Vec::new();
            while let Some((seq, waiter)) = ack_rx.recv().await {
                match waiter.await {
                    Ok(()) => acked.push(seq),
                    Err(e) => errors.push(format!("publish {seq}: {e}")),
                }
            }
            (acked, errors)
        });

        let (lat, rcv) = (latencies.clone(), received.clone());
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(u64::MAX);
        let receiver = tokio::spawn(async move {
            // Sequence numbers received, in arrival order.
            let mut seqs: Vec<u64> = Vec::new();
            let mut failure = None;
            loop {
                let target = *done_rx.borrow();
                if seqs.len() as u64 >= target {
                    break;
                }
                tokio::select! {
                    m = sub.next() => match m {
                        Some(m) => {
                            let Some((seq, sent)) = decode(&m.data) else {
                                failure = Some(format!("undecodable delivery {:?}", m.data));
                                break;
                            };
                            let now = origin.elapsed().as_nanos() as u64;
                            if let Ok(mut l) = lat.lock() {
                                l.push(Duration::from_nanos(now.saturating_sub(sent)));
                            }
                            seqs.push(seq);
                            rcv.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            failure = Some("the subscription ended".into());
                            break;
                        }
                    },
                    changed = done_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
            (seqs, failure, sub)
        });

        let stop2 = stop.clone();
        let channel = channel.to_string();
        let task = tokio::spawn(async move {
            let mut report = ProbeReport::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let sent = origin.elapsed().as_nanos() as u64;
                match conn
                    .publish_async(&channel, &payload(seq, sent, size))
                    .await
                {
                    Ok(w) => {
                        let _ = ack_tx.send((seq, w));
                    }
                    Err(e) => report.publish_errors.push(format!("publish {seq}: {e}")),
                }
                seq += 1;
            }
            report.published = seq;
            drop(ack_tx);
            let (acked, errors) = acks.await.unwrap_or_default();
            report.acked = acked.len() as u64;
            report.publish_errors.extend(errors);
            // Wait for as many deliveries as there were publishes (bounded, should some
            // unacknowledged ones never come).
            let _ = done_tx.send(seq);
            let (seqs, failure, sub) =
                match tokio::time::timeout(Duration::from_secs(30), receiver).await {
                    Ok(Ok(r)) => r,
                    _ => {
                        report.failure = Some("deliveries still missing after 30s".into());
                        let _ = conn.close().await;
                        return report;
                    }
                };
            report.failure = report.failure.or(failure);
            report.received = seqs.len() as u64;
            let mut seen = vec![false; seq as usize];
            let mut last: Option<u64> = None;
            for &s in &seqs {
                match seen.get_mut(s as usize) {
                    Some(true) => report.duplicates += 1,
                    Some(slot) => *slot = true,
                    None => report.out_of_order += 1,
                }
                if last.is_some_and(|l| s <= l) {
                    report.out_of_order += 1;
                }
                last = Some(s);
            }
            report.missing = acked.iter().filter(|&&s| !seen[s as usize]).count() as u64;
            let _ = sub.close().await;
            let _ = conn.close().await;
            report
        });
        Ok(Probe {
            rt: None,
            stop,
            latencies,
            received,
            task,
        })
    }

    /// Latencies recorded since the last call.
    pub fn take_latencies(&self) -> Vec<Duration> {
        self.latencies
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Deliveries so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more messages have been delivered (or `within` passed).
    pub async fn wait_for_more(&self, n: u64, within: Duration) -> bool {
        let target = self.received() + n;
        let deadline = tokio::time::Instant::now() + within;
        while self.received() < target {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops publishing, waits for the last acknowledgements and deliveries, closes.
    pub async fn stop(mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => ProbeReport {
                failure: Some(format!("probe task failed: {e}")),
                ..ProbeReport::default()
            },
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // A runtime dropped inside another one's context would panic.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

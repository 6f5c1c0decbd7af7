//! One load run: connect, subscribe, publish for the duration, drain, judge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stan_core::rng::Rng;
use tokio::sync::watch;

use super::check::{verdict, Bits, Kind, SubRecord, Verdict};
use super::Settings;
use crate::harness::{mib, raise_nofile_limit, rss_of, ServerProcess};
use crate::stan_client::{StanConn, StanOptions, StanSubscription, SubscribeOptions};

/// Operations started at once while connecting and subscribing.
const SETUP_CONCURRENCY: usize = 50;
/// How long deliveries may keep trickling in after publishing stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub clients: usize,
    pub subscriptions: usize,
    pub published: u64,
    pub acked: u64,
    pub errors: Vec<String>,
    pub verdict: Verdict,
    /// (seconds since publishing began, resident bytes).
    pub rss: Vec<(f64, u64)>,
    /// Mean memory over the first and last thirds of the judged time.
    pub rss_first_third: u64,
    pub rss_last_third: u64,
    pub rss_growth_pct: f64,
    /// Memory once every delivery was made and the server had been quiet for a few
    /// seconds, and its growth over the first third.
    pub rss_drained: Option<u64>,
    pub rss_drained_growth_pct: f64,
    /// Growth within the limit, either while publishing or once drained: memory held
    /// by a backlog the server worked off (a busy machine slows it) is not kept.
    pub rss_flat: bool,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.verdict.lost == 0 && self.rss_flat
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "clients {}  subscriptions {}  published {}  acked {}",
            self.clients, self.subscriptions, self.published, self.acked
        )?;
        writeln!(
            f,
            "delivered {} (entitled, once each)  lost {}  duplicates {}  redelivered {}  errors {}",
            self.verdict.delivered,
            self.verdict.lost,
            self.verdict.duplicates,
            self.verdict.redelivered,
            self.errors.len()
        )?;
        for e in self.errors.iter().take(10) {
            writeln!(f, "  error: {e}")?;
        }
        write!(
            f,
            "server RSS after warm-up: first third {}, last third {}, growth {:+.1} %",
            mib(self.rss_first_third),
            mib(self.rss_last_third),
            self.rss_growth_pct,
        )?;
        if let Some(drained) = self.rss_drained {
            write!(
                f,
                "; once drained {}, {:+.1} %",
                mib(drained),
                self.rss_drained_growth_pct
            )?;
        }
        write!(f, " ({})", if self.rss_flat { "flat" } else { "NOT FLAT" })
    }
}

struct Counters {
    published: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        if let Ok(mut v) = self.errors.lock() {
            v.push(e);
        }
    }
}

/// One planned subscription.
struct Plan {
    client: usize,
    channel: usize,
    kind: Kind,
    durable: Option<String>,
}

fn plan(st: &Settings, rng: &mut Rng) -> Vec<Plan> {
    (0..st.subscriptions)
        .map(|j| {
            let channel = rng.below(st.channels);
            // Half plain, a quarter durable, a quarter queue members (three groups per
            // channel, every other member durable).
            let (kind, durable) = match j % 4 {
                0 | 1 => (Kind::Plain, None),
                2 => (Kind::Durable, Some(format!("dur{j}"))),
                _ => {
                    let group = format!("q{}", rng.below(3));
                    let durable = (j / 4 % 2 == 0).then(|| "qdur".to_string());
                    // A durable queue group is a group of its own, apart from the
                    // plain group of the same name.
                    let key = match &durable {
                        Some(d) => format!("{d}:{group}"),
                        None => group.clone(),
                    };
                    (Kind::Queue { key, group }, durable)
                }
            };
            Plan {
                client: j % st.clients,
                channel,
                kind,
                durable,
            }
        })
        .collect()
}

fn channel_name(c: usize) -> String {
    format!("load.{c}")
}

/// Runs the load described by `st`, printing a line per interval; returns the summary.
pub async fn run(st: &Settings) -> Result<Summary, String> {
    raise_nofile_limit();
    let warmup = st.warmup();
    // Channels of a server we start keep a bounded number of messages, reached within
    // the first half of the warm-up, so that memory is judged on a steady state.
    let max_msgs = if st.max_msgs > 0 {
        st.max_msgs
    } else {
        (st.rate * warmup.as_secs() / 2 / st.channels as u64).max(10)
    };
    let mut own = None;
    let (addr, pid) = match (&st.server, &st.server_bin) {
        (Some(addr), _) => (addr.clone(), st.pid),
        (None, Some(bin)) => {
            let mm = max_msgs.to_string();
            let mut server = ServerProcess::start(bin, None, &["-cid", &st.cluster_id, "-mm", &mm])
                .map_err(|e| format!("starting {}: {e}", bin.display()))?;
            server.wait_ready(Duration::from_secs(30)).await?;
            let a = (server.addr(), Some(server.pid()));
            own = Some(server);
            a
        }
        (None, None) => return Err("no server given".into()),
    };
    println!(
        "stan-load: {} clients, {} subscriptions, {} channels, {} msgs/s of ~{} B for {:?} (warm-up {:?}){}",
        st.clients,
        st.subscriptions,
        st.channels,
        st.rate,
        st.size,
        st.duration,
        warmup,
        if own.is_some() { format!("; server started here with -mm {max_msgs}") } else { String::new() }
    );
    let counters = Arc::new(Counters {
        published: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
    });
    let opts = StanOptions {
        connect_wait: Duration::from_secs(30),
        pub_ack_wait: Duration::from_secs(60),
        ..StanOptions::default()
    };

    // Connect.
    let setup = std::time::Instant::now();
    let mut conns: Vec<StanConn> = Vec::with_capacity(st.clients);
    for start in (0..st.clients).step_by(SETUP_CONCURRENCY) {
        let mut batch = Vec::new();
        for i in start..(start + SETUP_CONCURRENCY).min(st.clients) {
            let (addr, cid, opts) = (addr.clone(), st.cluster_id.clone(), opts.clone());
            batch.push(tokio::spawn(async move {
                StanConn::connect(&addr, &cid, &format!("load-{i}"), opts).await
            }));
        }
        for b in batch {
            conns.push(
                b.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("connect: {e}"))?,
            );
        }
    }

    // Subscribe; each subscription's task records what it receives until told to stop.
    let mut rng = Rng::new(st.seed);
    let plans = plan(st, &mut rng);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sub_tasks = Vec::with_capacity(plans.len());
    for chunk in plans.chunks(SETUP_CONCURRENCY) {
        let mut batch = Vec::new();
        for p in chunk {
            let conn = conns[p.client].clone();
            let opts = SubscribeOptions {
                durable_name: p.durable.clone(),
                queue_group: match &p.kind {
                    Kind::Queue { group, .. } => Some(group.clone()),
                    _ => None,
                },
                ..SubscribeOptions::default()
            };
            let channel = channel_name(p.channel);
            batch.push(tokio::spawn(
                async move { conn.subscribe(&channel, opts).await },
            ));
        }
        for (b, p) in batch.into_iter().zip(chunk) {
            let sub = b
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("subscribe: {e}"))?;
            sub_tasks.push(tokio::spawn(receive(
                sub,
                p.channel,
                p.kind.clone(),
                stop_rx.clone(),
                counters.clone(),
            )));
        }
    }
    println!(
        "connected {} clients and {} subscriptions in {:.1}s",
        conns.len(),
        sub_tasks.len(),
        setup.elapsed().as_secs_f64()
    );

    // Publish at the rate for the duration, sampling memory each second.
    let acked: Arc<Vec<Mutex<Bits>>> = Arc::new(
        (0..st.channels)
            .map(|_| Mutex::new(Bits::default()))
            .collect(),
    );
    let next_number: Vec<AtomicU64> = (0..st.channels).map(|_| AtomicU64::new(0)).collect();
    let outstanding = Arc::new(AtomicU64::new(0));
    let begin = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut next_line = st.interval;
    let mut sent = 0u64;
    let mut last = (0u64, 0u64, 0u64);
    println!(
        "{:>7} {:>10} {:>10} {:>12} {:>7} {:>11}",
        "time", "published", "acked", "delivered", "errors", "server RSS"
    );
    while begin.elapsed() < st.duration {
        tick.tick().await;
        let t = begin.elapsed();
        // Owed from the time passed, so late ticks do not lower the rate.
        let due = (st.rate as f64 * t.as_secs_f64()) as u64;
        while sent < due {
            sent += 1;
            let client = rng.below(conns.len());
            let channel = rng.below(st.channels);
            let n = next_number[channel].fetch_add(1, Ordering::Relaxed);
            // Mixed sizes: a quarter to twice the nominal size.
            let size = (st.size / 4 + rng.below(st.size * 7 / 4 + 1)).max(16);
            let mut data = Vec::with_capacity(size);
            data.extend_from_slice(&(channel as u64).to_le_bytes());
            data.extend_from_slice(&n.to_le_bytes());
            data.resize(size, b'l');
            counters.published.fetch_add(1, Ordering::Relaxed);
            match conns[client]
                .publish_async(&channel_name(channel), &data)
                .await
            {
                Ok(waiter) => {
                    outstanding.fetch_add(1, Ordering::Relaxed);
                    let (acked, counters, outstanding) =
                        (acked.clone(), counters.clone(), outstanding.clone());
                    tokio::spawn(async move {
                        match waiter.await {
                            Ok(()) => {
                                if let Ok(mut b) = acked[channel].lock() {
                                    b.insert(n);
                                }
                                counters.acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => counters.error(format!("publish load.{channel} #{n}: {e}")),
                        }
                        outstanding.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => counters.error(format!("publish load.{channel} #{n}: {e}")),
            }
        }
        if t >= next_sample {
            next_sample += Duration::from_secs(1);
            if let Some(r) = pid.and_then(rss_of) {
                rss.push((t.as_secs_f64(), r));
            }
        }
        if t >= next_line {
            next_line += st.interval;
            let now = (
                counters.published.load(Ordering::Relaxed),
                counters.acked.load(Ordering::Relaxed),
                counters.delivered.load(Ordering::Relaxed),
            );
            println!(
                "{:>6.0}s {:>10} {:>10} {:>12} {:>7} {:>11}   (+{} pub, +{} del)",
                t.as_secs_f64(),
                now.0,
                now.1,
                now.2,
                counters.errors.lock().map_or(0, |e| e.len()),
                rss.last().map_or("-".into(), |r| mib(r.1)),
                now.0 - last.0,
                now.2 - last.2,
            );
            last = now;
        }
    }

    // Every PubAck in, then deliveries until they stop coming.
    let drain = tokio::time::Instant::now();
    while outstanding.load(Ordering::Relaxed) > 0 && drain.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut quiet_since = tokio::time::Instant::now();
    let mut seen = counters.delivered.load(Ordering::Relaxed);
    while quiet_since.elapsed() < Duration::from_secs(3) && drain.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counters.delivered.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = tokio::time::Instant::now();
        }
    }
    // Quiet for a few seconds: the server's periodic trim has returned what the
    // backlog held.
    let rss_drained = pid.and_then(rss_of);
    let _ = stop_tx.send(true);
    let mut records = Vec::with_capacity(sub_tasks.len());
    for t in sub_tasks {
        let r = t.await.map_err(|e| e.to_string())?;
        if let Some(e) = &r.ended {
            counters.error(format!("subscription on load.{} ended: {e}", r.channel));
        }
        records.push(r);
    }
    for chunk in conns.chunks(SETUP_CONCURRENCY) {
        let closes: Vec<_> = chunk
            .iter()
            .map(|c| {
                let c = c.clone();
                tokio::spawn(async move { c.close().await })
            })
            .collect();
        for c in closes {
            if let Ok(Err(e)) = c.await {
                counters.error(format!("close: {e}"));
            }
        }
    }
    if let Some(server) = own.as_mut() {
        if !server.alive() {
            counters.error("the server exited".into());
        }
    }

    let acked_bits: Vec<Bits> = acked
        .iter()
        .map(|m| m.lock().map(|b| b.clone()).unwrap_or_default())
        .collect();
    let verdict = verdict(&acked_bits, &records);
    let judged: Vec<u64> = rss
        .iter()
        .filter(|(t, _)| *t >= warmup.as_secs_f64())
        .map(|r| r.1)
        .collect();
    let third = (judged.len() / 3).max(1);
    let mean = |v: &[u64]| {
        if v.is_empty() {
            0
        } else {
            v.iter().sum::<u64>() / v.len() as u64
        }
    };
    let first = mean(&judged[..third.min(judged.len())]);
    let last_third = mean(&judged[judged.len().saturating_sub(third)..]);
    let growth_over_first = |r: u64| {
        if first > 0 {
            (r as f64 - first as f64) / first as f64 * 100.0
        } else {
            0.0
        }
    };
    let growth = growth_over_first(last_third);
    let drained_growth = rss_drained.map_or(growth, growth_over_first);
    let errors = counters
        .errors
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    Ok(Summary {
        clients: conns.len(),
        subscriptions: records.len(),
        published: counters.published.load(Ordering::Relaxed),
        acked: counters.acked.load(Ordering::Relaxed),
        errors,
        verdict,
        rss,
        rss_first_third: first,
        rss_last_third: last_third,
        rss_growth_pct: growth,
        rss_drained,
        rss_drained_growth_pct: drained_growth,
        rss_flat: pid.is_none() || growth.min(drained_growth) <= st.rss_growth_pct,
    })
}

/// Receives on one subscription until `stop`, recording each message's number.
async fn receive(
    mut sub: StanSubscription,
    channel: usize,
    kind: Kind,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> SubRecord {
    let mut r = SubRecord {
        channel,
        kind,
        received: Bits::default(),
        deliveries: 0,
        duplicates: 0,
        redelivered: 0,
        ended: None,
    };
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Some(m) => {
                    let number = m.data.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                    let on = m.data.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                    match (on, number) {
                        (Some(c), Some(n)) if c == channel as u64 => {
                            r.deliveries += 1;
                            r.duplicates += u64::from(r.received.insert(n));
                            r.redelivered += u64::from(m.redelivered);
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => counters.error(format!("foreign message on load.{channel}: {:?}", m.data.get(..16))),
                    }
                }
                None => {
                    r.ended = Some("the server or connection ended it".into());
                    return r;
                }
            },
            _ = stop.changed() => return r,
        }
    }
}

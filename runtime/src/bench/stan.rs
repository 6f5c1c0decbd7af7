//! NATS Streaming throughput, measured as the Go stan-bench measures it: subscribers
//! (`<id>-sub-<i>`) subscribe first, from the oldest message unless `-io`; publishers
//! (`<id>-pub-<i>`) then publish `-n` messages between them, each waiting for every
//! PubAck (sync) or keeping up to `-mpa` in flight (`-a`). Publish rate runs from the
//! first publish to the last PubAck; the pipeline rate from the first publish to the
//! moment the last subscriber has received every message.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Report, Settings};
use crate::stan_client::{
    StanConn, StanError, StanOptions, StanSubscription, StartAt, SubscribeOptions,
};

/// A subscriber that receives nothing for this long has lost messages or its server.
const SUBSCRIBER_IDLE: Duration = Duration::from_secs(60);

fn io_err(context: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{context}: {e}"))
}

/// How many of `total` messages publisher `i` of `n` sends: an even split, the
/// remainder going to the first publishers, so exactly `total` are sent.
fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

async fn connect(st: &Settings, client_id: String) -> std::io::Result<StanConn> {
    let opts = StanOptions {
        max_pub_acks_inflight: st.max_pub_acks_inflight,
        ..StanOptions::default()
    };
    StanConn::connect(&st.addr(), &st.cluster_id, &client_id, opts)
        .await
        .map_err(|e| io_err(&format!("{client_id}: connect"), e))
}

/// Counts deliveries until `expect` have arrived; returns when the last one did.
async fn subscriber(
    conn: StanConn,
    mut sub: StanSubscription,
    expect: u64,
) -> std::io::Result<Instant> {
    let mut got = 0u64;
    while got < expect {
        match tokio::time::timeout(SUBSCRIBER_IDLE, sub.next()).await {
            Ok(Some(_)) => got += 1,
            Ok(None) => {
                return Err(io_err(
                    conn.client_id(),
                    format!("subscription ended after {got} of {expect} messages"),
                ))
            }
            Err(_) => {
                return Err(io_err(
                    conn.client_id(),
                    format!("no message for {SUBSCRIBER_IDLE:?} after {got} of {expect}"),
                ))
            }
        }
    }
    let done = Instant::now();
    let _ = conn.close().await;
    Ok(done)
}

/// Publishes `count` messages and returns when the last PubAck arrived.
async fn publisher(
    conn: StanConn,
    subject: String,
    count: u64,
    size: usize,
    async_pub: bool,
) -> std::io::Result<Instant> {
    let payload = vec![0u8; size];
    let fail = |e: StanError| io_err(&format!("{}: publish", conn.client_id()), e);
    if async_pub {
        // PubAcks are awaited in publish order by a second task while publishing goes
        // on; the connection itself holds publishing back at `-mpa` in flight.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let acks = tokio::spawn(async move {
            while let Some(waiter) = rx.recv().await {
                waiter.await?;
            }
            Ok::<_, StanError>(())
        });
        for _ in 0..count {
            let waiter = conn.publish_async(&subject, &payload).await.map_err(fail)?;
            if tx.send(waiter).is_err() {
                break;
            }
        }
        drop(tx);
        acks.await
            .map_err(|e| io_err("ack task", e))?
            .map_err(fail)?;
    } else {
        for _ in 0..count {
            conn.publish(&subject, &payload).await.map_err(fail)?;
        }
    }
    let done = Instant::now();
    let _ = conn.close().await;
    Ok(done)
}

/// Runs the streaming benchmark described by `st`.
pub async fn run(st: &Settings) -> std::io::Result<Report> {
    let publishers = st.publishers.max(1);
    let total = st.msgs;
    let mut subs = Vec::new();
    for i in 0..st.subscribers {
        let conn = connect(st, format!("{}-sub-{i}", st.client_id)).await?;
        let opts = SubscribeOptions {
            start: if st.ignore_old {
                StartAt::NewOnly
            } else {
                StartAt::First
            },
            ..SubscribeOptions::default()
        };
        let sub = conn
            .subscribe(&st.subject, opts)
            .await
            .map_err(|e| io_err(&format!("{}: subscribe", conn.client_id()), e))?;
        subs.push(tokio::spawn(subscriber(conn, sub, total)));
    }
    let mut conns = Vec::new();
    for i in 0..publishers {
        conns.push(connect(st, format!("{}-pub-{i}", st.client_id)).await?);
    }
    let start = Instant::now();
    let pubs: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(publisher(
                conn,
                st.subject.clone(),
                share(total, publishers, i),
                st.size,
                st.async_pub,
            ))
        })
        .collect();
    let mut pub_end = start;
    for h in pubs {
        pub_end = pub_end.max(h.await.map_err(|e| io_err("publisher task", e))??);
    }
    let publish_elapsed = pub_end.duration_since(start);
    let mut last = pub_end;
    for h in subs {
        last = last.max(h.await.map_err(|e| io_err("subscriber task", e))??);
    }
    Ok(Report {
        msgs: total,
        size: st.size,
        publish_elapsed,
        elapsed: last.duration_since(start),
        subscribers: st.subscribers,
    })
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        for (total, n) in [(10, 3), (20_000, 1), (7, 7), (3, 5), (0, 2)] {
            let sum: u64 = (0..n).map(|i| share(total, n, i)).sum();
            assert_eq!(sum, total);
            let max = (0..n).map(|i| share(total, n, i)).max().unwrap();
            let min = (0..n).map(|i| share(total, n, i)).min().unwrap();
            assert!(max - min <= 1);
        }
    }
}

//! Core NATS throughput: publishers stream `PUB`s as fast as the server takes them,
//! subscribers count `MSG`s; the rate is measured from the first publish to the last
//! delivery.

use std::time::{Duration, Instant};

use stan_core::nats::proto::{self, Limits, ServerOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Report, Settings};

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1,\"name\":\"stan-bench\"}\r\n";

async fn connect(addr: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(CONNECT).await?;
    let leftover = ping_pong(&mut s, Vec::new()).await?;
    Ok((s, leftover))
}

/// Sends PING and reads until the PONG, so everything sent before it has been processed.
async fn ping_pong(s: &mut TcpStream, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    s.write_all(proto::PING).await?;
    let limits = Limits {
        max_payload: 64 << 20,
        ..Limits::default()
    };
    loop {
        let mut pos = 0;
        while let Some((op, used)) =
            proto::parse_server_op(&buf[pos..], &limits).map_err(std::io::Error::other)?
        {
            pos += used;
            match op {
                ServerOp::Pong => return Ok(buf[pos..].to_vec()),
                ServerOp::Err(e) => {
                    return Err(std::io::Error::other(
                        String::from_utf8_lossy(e).into_owned(),
                    ))
                }
                ServerOp::Ping => s.write_all(proto::PONG).await?,
                _ => {}
            }
        }
        buf.drain(..pos);
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn subscriber(mut s: TcpStream, mut buf: Vec<u8>, expect: u64) -> std::io::Result<Instant> {
    let limits = Limits {
        max_payload: 64 << 20,
        ..Limits::default()
    };
    let mut got = 0u64;
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let mut pos = 0;
        while let Some((op, used)) =
            proto::parse_server_op(&buf[pos..], &limits).map_err(std::io::Error::other)?
        {
            pos += used;
            match op {
                ServerOp::Msg { .. } => got += 1,
                ServerOp::Ping => s.write_all(proto::PONG).await?,
                _ => {}
            }
        }
        if got >= expect {
            return Ok(Instant::now());
        }
        buf.drain(..pos);
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn publisher(
    mut s: TcpStream,
    subject: String,
    count: u64,
    size: usize,
) -> std::io::Result<()> {
    let payload = vec![b'x'; size];
    let mut one = Vec::new();
    proto::write_pub(&mut one, subject.as_bytes(), None, None, &payload);
    let per_write = (64 * 1024 / one.len()).max(1) as u64;
    let block = one.repeat(per_write as usize);
    let mut sent = 0;
    while sent + per_write <= count {
        s.write_all(&block).await?;
        sent += per_write;
    }
    s.write_all(&one.repeat((count - sent) as usize)).await?;
    ping_pong(&mut s, Vec::new()).await?;
    Ok(())
}

/// Runs the core pub/sub benchmark against the NATS server at `addr`.
pub async fn run(addr: &str, st: &Settings) -> std::io::Result<Report> {
    let subject = "bench.core".to_string();
    let per_pub = st.msgs / st.publishers.max(1) as u64;
    let total = per_pub * st.publishers.max(1) as u64;
    let mut subs = Vec::new();
    for _ in 0..st.subscribers {
        let (mut s, left) = connect(addr).await?;
        let mut cmd = Vec::new();
        proto::write_sub(&mut cmd, subject.as_bytes(), None, b"1");
        s.write_all(&cmd).await?;
        let left = ping_pong(&mut s, left).await?;
        subs.push(tokio::spawn(subscriber(s, left, total)));
    }
    let mut pubs = Vec::new();
    for _ in 0..st.publishers {
        let (s, _) = connect(addr).await?;
        pubs.push(s);
    }
    let start = Instant::now();
    let handles: Vec<_> = pubs
        .into_iter()
        .map(|s| tokio::spawn(publisher(s, subject.clone(), per_pub, st.size)))
        .collect();
    for h in handles {
        h.await.map_err(std::io::Error::other)??;
    }
    let pub_done = start.elapsed();
    let mut last = start;
    for h in subs {
        let end = tokio::time::timeout(Duration::from_secs(120), h)
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)??;
        last = last.max(end);
    }
    let elapsed = last.duration_since(start).max(pub_done);
    Ok(Report {
        msgs: total,
        size: st.size,
        publish_elapsed: pub_done,
        elapsed,
        subscribers: st.subscribers,
    })
}

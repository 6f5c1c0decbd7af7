//! Hostile clients. Each phase does one kind of harm to a running server and checks
//! the functional outcome the NATS server gives that harm (an `-ERR` and a close, a
//! slow-consumer close, nothing at all); none of them looks at a clock to decide.
//!
//! A phase may hand back connections to hold open until its caller has measured the
//! server's memory, so that what the server freed is measured while the hostile peer
//! still sits on its socket.

use std::time::Duration;

use prost::Message;
use stan_core::rng::Rng;
use stan_core::streaming::pb;

use super::raw::{find, parse_msg, tail, RawConn};
use super::varz_count;

/// Where the server under attack listens.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub http_port: u16,
    pub cluster_id: String,
}

/// What a phase did, and the connections it wants kept open a while longer.
pub struct Outcome {
    pub summary: String,
    pub held: Vec<RawConn>,
    /// Checked once the caller is done measuring: the held connections must have been
    /// closed by the server by then.
    pub held_must_be_closed: bool,
}

impl Outcome {
    fn done(summary: String) -> Outcome {
        Outcome {
            summary,
            held: Vec::new(),
            held_must_be_closed: false,
        }
    }

    /// Reads each held connection to its end; fails if the server left one open.
    pub async fn release(self) -> Result<(), String> {
        for mut c in self.held {
            if self.held_must_be_closed {
                c.read_to_close(Duration::from_secs(60))
                    .await
                    .map_err(|e| format!("a connection the server should have closed: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Generous bound for anything a phase waits for; only there to turn a hang into a
/// failure.
const PATIENCE: Duration = Duration::from_secs(60);

/// Settings of the NATS limits the phases rely on; they must match the server's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_pending: usize,
}

/// Configuration file text that sets the limits the phases expect: a one-second ping
/// interval (a silent connection goes stale in about three seconds), a short control
/// line so that a trickled one overflows within seconds, and `max_pending`.
pub fn server_config(limits: Limits) -> String {
    format!(
        "ping_interval: \"1s\"\nping_max: 2\nmax_control_line: {}\nmax_pending: {}\n",
        limits.max_control_line, limits.max_pending
    )
}

/// Slowloris: `holders` connections send a partial operation and then nothing, and
/// `tricklers` send a whole operation one byte every `byte_every`, then an endless
/// control line the same way.
///
/// The NATS server pings a silent connection and closes it as stale after `ping_max`
/// unanswered pings (`-ERR 'Stale Connection'`); bytes that keep arriving count as
/// activity, so a trickled operation is applied when complete (its message is
/// delivered) and an endless control line ends with `-ERR 'Maximum Control Line
/// Exceeded'`.
pub async fn slowloris(
    t: &Target,
    limits: Limits,
    holders: usize,
    tricklers: usize,
    byte_every: Duration,
) -> Result<Outcome, String> {
    let mut watcher = RawConn::handshake(&t.addr).await?;
    watcher.send(b"SUB slow.* 1\r\nPING\r\n").await?;
    watcher.read_until(b"PONG\r\n", PATIENCE).await?;

    let mut tasks = Vec::new();
    for i in 0..holders {
        let addr = t.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::open(&addr).await?;
            c.send(b"CONNECT {}\r\nPUB held 100\r\nonly a part").await?;
            let got = c.read_to_close(PATIENCE).await?;
            if find(&got, b"-ERR 'Stale Connection'\r\n").is_none() {
                return Err(format!(
                    "holder {i}: closed without a stale error: {:?}",
                    tail(&got)
                ));
            }
            Ok::<_, String>(())
        }));
    }
    for i in 0..tricklers {
        let addr = t.addr.clone();
        let overflow = limits.max_control_line + 64;
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::open(&addr).await?;
            let mut bytes = format!("CONNECT {{}}\r\nPUB slow.{i} 5\r\nhello\r\nSUB ").into_bytes();
            bytes.resize(bytes.len() + overflow, b'x');
            for b in &bytes {
                // The server closes the connection part-way: writes then fail.
                if c.send(std::slice::from_ref(b)).await.is_err() {
                    break;
                }
                tokio::time::sleep(byte_every).await;
            }
            let got = c.read_to_close(PATIENCE).await?;
            if find(&got, b"-ERR 'Maximum Control Line Exceeded'\r\n").is_none() {
                return Err(format!(
                    "trickler {i}: closed without the control-line error: {:?}",
                    tail(&got)
                ));
            }
            Ok(())
        }));
    }
    // Every trickled PUB arrives whole.
    let mut hello = vec![false; tricklers];
    let mut buf = Vec::new();
    while hello.iter().any(|h| !h) {
        let more = watcher.read_until(b"\r\n", PATIENCE).await?;
        buf.extend_from_slice(&more);
        while let Some((subject, _, payload, used)) = parse_msg(&buf) {
            buf.drain(..used);
            let i: usize = subject
                .strip_prefix("slow.")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unexpected subject {subject}"))?;
            if payload != b"hello" {
                return Err(format!("trickled PUB {i} arrived as {payload:?}"));
            }
            hello[i] = true;
        }
        if buf.starts_with(b"PING\r\n") {
            buf.drain(..6);
            watcher.send(b"PONG\r\n").await?;
        }
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(Outcome::done(format!(
        "{holders} holders closed as stale, {tricklers} tricklers delivered and closed at the control-line limit"
    )))
}

/// Slow consumer: a subscriber that never reads while a publisher floods its subject.
/// The NATS server closes the subscriber once `max_pending` bytes wait for it and
/// counts it in `/varz` `slow_consumers`; the publisher stays connected.
///
/// The subscriber is held (still unread) for the caller's memory check, then read to
/// its end: the server must have closed it.
pub async fn slow_consumer(t: &Target, limits: Limits, msg_size: usize) -> Result<Outcome, String> {
    let before = varz_count(t.http_port, "slow_consumers").await?;
    let mut lazy = RawConn::handshake(&t.addr).await?;
    lazy.send(b"SUB flood 1\r\nPING\r\n").await?;
    lazy.read_until(b"PONG\r\n", PATIENCE).await?;
    let _ = lazy.stream.set_nodelay(true);

    let mut flooder = RawConn::handshake(&t.addr).await?;
    let mut batch = Vec::new();
    let payload = vec![b'f'; msg_size];
    for _ in 0..(256 * 1024 / (msg_size + 20)).max(1) {
        batch.extend_from_slice(format!("PUB flood {msg_size}\r\n").as_bytes());
        batch.extend_from_slice(&payload);
        batch.extend_from_slice(b"\r\n");
    }
    // Far more than the limit, in case the kernel's socket buffers absorb some of it.
    let budget = limits.max_pending * 4 + (64 << 20);
    let mut sent = 0usize;
    let mut detected = false;
    while sent < budget {
        flooder.send(&batch).await?;
        sent += batch.len();
        if sent % (16 * batch.len()) < batch.len()
            && varz_count(t.http_port, "slow_consumers").await? > before
        {
            detected = true;
            break;
        }
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !detected {
        if varz_count(t.http_port, "slow_consumers").await? > before {
            detected = true;
        } else if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "no slow consumer reported after {} MiB flooded",
                sent >> 20
            ));
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The publisher was throttled, not dropped.
    flooder.send(b"PING\r\n").await?;
    flooder.read_until(b"PONG\r\n", PATIENCE).await?;
    drop(flooder);
    Ok(Outcome {
        summary: format!(
            "subscriber closed as a slow consumer after {} MiB flooded; publisher still served",
            sent >> 20
        ),
        held: vec![lazy],
        held_must_be_closed: true,
    })
}

/// A `PUB` (and an `HPUB`) claiming a 1 GB payload, on `conns` connections: each gets
/// `-ERR 'Maximum Payload Violation'` and is closed, and nothing of that size is
/// allocated (the caller's memory check).
pub async fn huge_payload(t: &Target, conns: usize) -> Result<Outcome, String> {
    let mut tasks = Vec::new();
    for i in 0..conns {
        let addr = t.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::open(&addr).await?;
            let op: &[u8] = if i % 2 == 0 {
                b"CONNECT {}\r\nPUB foo 1073741824\r\n"
            } else {
                b"CONNECT {\"headers\":true}\r\nHPUB foo 12 1073741824\r\n"
            };
            c.send(op).await?;
            // Start on the payload as if the server had taken the claim.
            let _ = c.send(&[b'z'; 4096]).await;
            let got = c.read_to_close(PATIENCE).await?;
            if find(&got, b"-ERR 'Maximum Payload Violation'\r\n").is_none() {
                return Err(format!("connection {i}: {:?}", tail(&got)));
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(Outcome::done(format!(
        "{conns} claims of 1 GB refused with Maximum Payload Violation and closed"
    )))
}

/// Opens and drops `total` connections, `wave` at a time, in four manners: dropped at
/// once, dropped after reading INFO, dropped after a PING's PONG, dropped part-way
/// through a PUB with a reset. The server must end with as many connections as it began
/// with.
pub async fn churn(t: &Target, total: usize, wave: usize) -> Result<Outcome, String> {
    let baseline = varz_count(t.http_port, "connections").await?;
    let mut done = 0;
    let mut failed_connects = 0usize;
    while done < total {
        let n = wave.min(total - done);
        let mut tasks = Vec::with_capacity(n);
        for i in done..done + n {
            let addr = t.addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = match RawConn::open(&addr).await {
                    Ok(c) => c,
                    Err(_) => return false,
                };
                match i % 4 {
                    0 => {}
                    1 => {
                        let _ = c.read_until(b"\r\n", PATIENCE).await;
                    }
                    2 => {
                        let _ = c.send(b"CONNECT {}\r\nPING\r\n").await;
                        let _ = c.read_until(b"PONG\r\n", PATIENCE).await;
                    }
                    _ => {
                        let _ = c.send(b"CONNECT {}\r\nPUB churn 100\r\nabc").await;
                        // A reset instead of an orderly close; a zero linger does not
                        // block on drop, which is what the deprecation warns about.
                        #[allow(deprecated)]
                        let _ = c.stream.set_linger(Some(Duration::ZERO));
                    }
                }
                true
            }));
        }
        for task in tasks {
            if !task.await.unwrap_or(false) {
                failed_connects += 1;
            }
        }
        done += n;
    }
    if failed_connects > 0 {
        return Err(format!("{failed_connects} of {total} connects failed"));
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = varz_count(t.http_port, "connections").await?;
        if now == baseline {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("connections stayed at {now}, baseline {baseline}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Outcome::done(format!(
        "{total} connections opened and dropped in waves of {wave}; back to {baseline} connections"
    )))
}

/// The subjects of a streaming server, learnt as a client learns them.
#[derive(Debug, Clone)]
pub struct StanSubjects {
    pub discover: String,
    pub publish: String,
    pub subscribe: String,
    pub unsubscribe: String,
    pub close: String,
    pub sub_close: String,
    pub ping: String,
    pub ack: String,
}

impl StanSubjects {
    pub fn all(&self) -> [&str; 8] {
        [
            &self.discover,
            &self.publish,
            &self.subscribe,
            &self.unsubscribe,
            &self.close,
            &self.sub_close,
            &self.ping,
            &self.ack,
        ]
    }
}

/// Registers `client_id` by hand over `c` (already handshaken, subscribed to
/// `_INBOX.<client_id>.>` as sid 1) and subscribes it to `channel`, returning every
/// request subject the server handed out.
async fn learn_subjects(
    c: &mut RawConn,
    t: &Target,
    client_id: &str,
    channel: &str,
) -> Result<StanSubjects, String> {
    let inbox = format!("_INBOX.{client_id}");
    let discover = format!("_STAN.discover.{}", t.cluster_id);
    let req = pb::ConnectRequest {
        client_id: client_id.into(),
        heartbeat_inbox: format!("{inbox}.hb"),
        protocol: 1,
        conn_id: client_id.as_bytes().to_vec(),
        ping_interval: 5,
        ping_max_out: 3,
    };
    let resp: pb::ConnectResponse = request(
        c,
        &discover,
        &format!("{inbox}.connect"),
        &req.encode_to_vec(),
    )
    .await?;
    if !resp.error.is_empty() {
        return Err(format!("connect refused: {}", resp.error));
    }
    let sreq = pb::SubscriptionRequest {
        client_id: client_id.into(),
        subject: channel.into(),
        inbox: format!("{inbox}.msgs"),
        max_in_flight: 1024,
        ack_wait_in_secs: 30,
        ..Default::default()
    };
    let sresp: pb::SubscriptionResponse = request(
        c,
        &resp.sub_requests,
        &format!("{inbox}.sub"),
        &sreq.encode_to_vec(),
    )
    .await?;
    if !sresp.error.is_empty() {
        return Err(format!("subscribe refused: {}", sresp.error));
    }
    Ok(StanSubjects {
        discover,
        publish: format!("{}.{channel}", resp.pub_prefix),
        subscribe: resp.sub_requests,
        unsubscribe: resp.unsub_requests,
        close: resp.close_requests,
        sub_close: resp.sub_close_requests,
        ping: resp.ping_requests,
        ack: sresp.ack_inbox,
    })
}

async fn request<M: Message + Default>(
    c: &mut RawConn,
    subject: &str,
    reply: &str,
    payload: &[u8],
) -> Result<M, String> {
    let mut op = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
    op.extend_from_slice(payload);
    op.extend_from_slice(b"\r\n");
    c.send(&op).await?;
    let head = format!("MSG {reply} ");
    c.read_until(head.as_bytes(), PATIENCE).await?;
    let line = c.read_until(b"\r\n", PATIENCE).await?;
    let n: usize = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.trim_end().rsplit(' ').next()?.parse().ok())
        .ok_or_else(|| format!("bad MSG line {:?}", tail(&line)))?;
    let body = c.take(n + 2, PATIENCE).await?;
    M::decode(&body[..n]).map_err(|e| format!("undecodable answer: {e}"))
}

/// One piece of garbage for a protobuf decoder: random bytes, a valid request cut short,
/// a length prefix claiming gigabytes, a wrong wire type, or nothing at all.
pub fn garbage(rng: &mut Rng, client_id: &str) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => {
            let n = rng.below(300);
            (0..n).map(|_| rng.next_u64() as u8).collect()
        }
        2 => {
            // Another client's ID: cut at a field boundary this decodes as a valid
            // request of that client, which must not be the attacker's own (a
            // CloseRequest carries its ID in field 1 too).
            let valid = pb::PubMsg {
                client_id: format!("not-{client_id}"),
                guid: "g".repeat(22),
                subject: "garbage".into(),
                data: vec![7; 64],
                ..Default::default()
            }
            .encode_to_vec();
            let cut = rng.below(valid.len());
            valid[..cut].to_vec()
        }
        // Field 1, length-delimited, length 2^32 - 1.
        3 => vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'],
        // Field 1 as a varint that never ends.
        4 => {
            let mut v = vec![0x08];
            v.extend(std::iter::repeat_n(0xff, 64));
            v
        }
        // A start-group tag with no end, and field number 0.
        _ => vec![0x0b, 0x00, 0x12, 0x01],
    }
}

/// Undecodable protobufs at a high rate on every request subject of the streaming
/// server (learnt from a real ConnectResponse and SubscriptionResponse), with and
/// without reply subjects. Nothing may crash; the hostile connection itself breaks no
/// NATS rule, so it stays connected, and its own registration still closes cleanly.
pub async fn garbage_protobufs(t: &Target, count: usize, seed: u64) -> Result<Outcome, String> {
    let client_id = format!("hostile-{seed}");
    let mut c = RawConn::handshake(&t.addr).await?;
    c.send(format!("SUB _INBOX.{client_id}.> 1\r\n").as_bytes())
        .await?;
    let subjects = learn_subjects(&mut c, t, &client_id, "garbage").await?;
    let all = subjects.all();

    // Answers (error replies, heartbeats) are read and dropped on another connection
    // half, so the hostile client never becomes a slow consumer itself.
    let (mut rd, mut wr) = c.stream.into_split();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = &mut stop_rx => break,
            }
        }
        rd
    });
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(1 << 20);
    for i in 0..count {
        let subject = all[i % all.len()];
        let body = garbage(&mut rng, &client_id);
        if rng.below(2) == 0 {
            out.extend_from_slice(
                format!("PUB {subject} _INBOX.{client_id}.r{i} {}\r\n", body.len()).as_bytes(),
            );
        } else {
            out.extend_from_slice(format!("PUB {subject} {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
        if out.len() >= 256 * 1024 {
            tokio::io::AsyncWriteExt::write_all(&mut wr, &out)
                .await
                .map_err(|e| format!("the hostile connection was dropped: {e}"))?;
            out.clear();
        }
    }
    tokio::io::AsyncWriteExt::write_all(&mut wr, &out)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stop_tx.send(());
    let rd = drain.await.map_err(|e| e.to_string())?;
    let mut c = RawConn {
        stream: rd
            .reunite(wr)
            .map_err(|_| "cannot rejoin the connection".to_string())?,
        seen: Vec::new(),
    };
    c.send(b"PING\r\n").await?;
    c.read_until(b"PONG\r\n", PATIENCE)
        .await
        .map_err(|e| format!("the hostile connection was closed: {e}"))?;
    let close: pb::CloseResponse = request(
        &mut c,
        &subjects.close,
        &format!("_INBOX.{client_id}.close"),
        &pb::CloseRequest {
            client_id: client_id.clone(),
        }
        .encode_to_vec(),
    )
    .await?;
    if !close.error.is_empty() {
        return Err(format!("closing the hostile client: {}", close.error));
    }
    Ok(Outcome::done(format!(
        "{count} undecodable protobufs on {} subjects; hostile client still connected and closed cleanly",
        all.len()
    )))
}

//! kill -9 during asynchronous publishing on the FILE store: after a restart every
//! PubAck-ed message is there, in order, and a durable subscriber resumes without loss.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stan_runtime::stan_client::{StanConn, StanOptions, StartAt, SubscribeOptions};

/// Kills the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-st",
            "FILE",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not open its port");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

async fn connect(addr: &str, id: &str) -> StanConn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match StanConn::connect(addr, "test-cluster", id, StanOptions::default()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("connect: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9() {
    let dir = std::env::temp_dir().join(format!("stan-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = start(&dir, port);

    // A durable subscriber that receives messages but never acks them.
    let sub_conn = connect(&addr, "reader").await;
    let opts = SubscribeOptions {
        durable_name: Some("dur".into()),
        start: StartAt::First,
        manual_ack: true,
        ..SubscribeOptions::default()
    };
    let sub = sub_conn.subscribe("orders", opts.clone()).await.unwrap();

    let publisher = connect(&addr, "writer").await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut waiters = Vec::new();
    for i in 0..200_000u32 {
        let w = publisher
            .publish_async("orders", format!("m{i}").as_bytes())
            .await
            .unwrap();
        let record = acked.clone();
        waiters.push(tokio::spawn(async move {
            if w.await.is_ok() {
                record.lock().unwrap().insert(i);
            }
        }));
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
        if acked.lock().unwrap().len() >= 3_000 {
            // Crash in the middle of the load: acks have come back, more are in flight.
            server.0.kill().unwrap();
            server.0.wait().unwrap();
            break;
        }
    }
    for w in waiters {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "some publishes were acknowledged before the crash"
    );
    drop(sub);

    let server = start(&dir, port);
    let checker = connect(&addr, "checker").await;
    let mut all = checker
        .subscribe(
            "orders",
            SubscribeOptions {
                start: StartAt::First,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    let mut seqs = Vec::new();
    let mut payloads = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while payloads.len() < acked.len() && Instant::now() < deadline {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), all.next()).await {
            seqs.push(m.sequence);
            let text = String::from_utf8(m.data).unwrap();
            payloads.insert(text[1..].parse::<u32>().unwrap());
        } else {
            break;
        }
    }
    eprintln!(
        "acknowledged before kill -9: {}, recovered after restart: {}",
        acked.len(),
        payloads.len()
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequences are contiguous and in order"
    );
    let missing: Vec<_> = acked.difference(&payloads).take(10).collect();
    assert!(
        missing.is_empty(),
        "PubAck-ed messages lost across kill -9: {missing:?} (of {})",
        acked.len()
    );

    // The durable resumes on a new connection of the same client ID (the old one is
    // replaced once its heartbeat inbox turns out to be gone).
    drop(sub_conn);
    let reader = connect(&addr, "reader").await;
    let mut resumed = reader.subscribe("orders", opts).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .expect("durable delivers")
        .unwrap();
    assert_eq!(
        first.sequence, 1,
        "nothing was acked by the durable before the crash, so it starts at 1"
    );
    let second = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .expect("durable delivers")
        .unwrap();
    assert_eq!(second.sequence, 2, "and goes on in order");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

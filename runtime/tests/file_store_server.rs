//! The streaming server over the FILE store, end to end: what a client published and
//! what a durable subscription had not acknowledged survive a server restart.

#[path = "file_store_common.rs"]
mod common;

use std::time::Duration;

use common::TempDir;
use stan_core::client::{StartAt, SubscribeOptions};
use stan_core::node::Node;
use stan_runtime::cli::Options;
use stan_runtime::driver::{system_wall_clock, Driver};
use stan_runtime::server::node_config;
use stan_runtime::stan_client::{StanConn, StanOptions, StanSubscription};
use stan_runtime::store::{FileStore, FileStoreOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    addr: String,
    stop: oneshot::Sender<()>,
    done: JoinHandle<Node>,
}

async fn start(dir: &TempDir, seed: u64) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = node_config(&Options::default(), seed);
    cfg.nats.port = port;
    let store = FileStore::open(dir.path(), FileStoreOptions::default()).unwrap();
    let node = Node::with_streaming(cfg, Box::new(store)).unwrap();
    let mut driver = Driver::new(node, system_wall_clock(), Box::new(|_| {}));
    let accept = driver.serve(listener);
    driver.start().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let node = driver
            .run(async {
                let _ = stopped.await;
            })
            .await;
        accept.abort();
        node
    });
    Running {
        addr: format!("127.0.0.1:{port}"),
        stop,
        done,
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(());
    // Dropping the node closes the store: everything written out and synced.
    drop(r.done.await.unwrap());
}

async fn next(sub: &mut StanSubscription) -> stan_runtime::stan_client::Msg {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

fn durable() -> SubscribeOptions {
    SubscribeOptions {
        durable_name: Some("dur".into()),
        manual_ack: true,
        start: StartAt::First,
        ack_wait_secs: 30,
        ..SubscribeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_durable_state_survive_a_restart() {
    let dir = TempDir::new("server");
    let server = start(&dir, 1).await;
    let conn = StanConn::connect(&server.addr, "test-cluster", "me", StanOptions::default())
        .await
        .unwrap();
    for i in 1..=10u8 {
        conn.publish("foo", &[i]).await.unwrap();
    }
    let mut sub = conn.subscribe("foo", durable()).await.unwrap();
    for seq in 1..=10 {
        let m = next(&mut sub).await;
        assert_eq!((m.sequence, m.data.clone()), (seq, vec![seq as u8]));
        if seq <= 5 {
            sub.ack(seq).await.unwrap();
        }
    }
    // Closing keeps the durable with its unacknowledged messages.
    sub.close().await.unwrap();
    conn.close().await.unwrap();
    stop(server).await;

    let server = start(&dir, 2).await;
    let conn = StanConn::connect(&server.addr, "test-cluster", "me", StanOptions::default())
        .await
        .unwrap();
    let mut sub = conn.subscribe("foo", durable()).await.unwrap();
    for seq in 6..=10 {
        let m = next(&mut sub).await;
        assert_eq!(m.sequence, seq);
        assert!(m.redelivered, "{seq} is a redelivery");
        sub.ack(seq).await.unwrap();
    }
    conn.publish("foo", b"new").await.unwrap();
    let m = next(&mut sub).await;
    assert_eq!(
        (m.sequence, m.data.as_slice(), m.redelivered),
        (11, &b"new"[..], false)
    );
    sub.ack(11).await.unwrap();
    conn.close().await.unwrap();
    stop(server).await;
}

//! Accounts on the real binary: the streaming server lives in the account its
//! `username`/`password` log into; STAN clients of that account are served, and a
//! NATS client of another account sees none of the streaming traffic.

#[path = "file_store_common.rs"]
mod common;
mod support;

use std::time::Duration;

use common::TempDir;
use stan_runtime::harness::monitor_json;
use stan_runtime::harness::raw::RawConn;
use stan_runtime::stan_client::{StanConn, StanOptions};
use support::{free_port, from_first, next_msg, Logged};

const PATIENCE: Duration = Duration::from_secs(30);

/// Accounts STAN (the streaming server's, also that of clients without
/// credentials) and OTHER, which imports nothing.
fn server(dir: &TempDir) -> (Logged, u16, u16) {
    let (port, http) = (free_port(), free_port());
    let conf = dir.join("accounts.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
listen: 127.0.0.1:{port}
http: 127.0.0.1:{http}
accounts {{
  STAN: {{ users: [ {{user: stan, password: s3cret}}, {{user: app, password: app}} ] }}
  OTHER: {{ users: [ {{user: other, password: "$2b$04$ForY2ej0gxejJbVuBpiqQuvqc2hOgE6sZBZNeiSESF8NkA7qLu32S"}} ] }}
}}
no_auth_user: app
streaming {{
  id: test-cluster
  username: stan
  password: s3cret
}}
"#
        ),
    )
    .unwrap();
    let mut proc = Logged::server(&["-c", conf.to_str().unwrap()]);
    proc.wait_for("Server is ready");
    (proc, port, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_is_served_in_its_account_only() {
    let dir = TempDir::new("accounts");
    let (_proc, port, http) = server(&dir);
    let addr = format!("127.0.0.1:{port}");

    // A client of OTHER (bcrypt password "other") watches every subject.
    let mut other = RawConn::open(&addr).await.unwrap();
    other
        .send(b"CONNECT {\"user\":\"other\",\"pass\":\"other\",\"verbose\":false}\r\nSUB > 1\r\nPING\r\n")
        .await
        .unwrap();
    other.read_until(b"PONG\r\n", PATIENCE).await.unwrap();

    // The STAN client logs in as the no_auth_user, in STAN.
    let conn = StanConn::connect(&addr, "test-cluster", "acc-client", StanOptions::default())
        .await
        .expect("the STAN client is served in the streaming server's account");
    conn.publish("orders", b"first").await.unwrap();
    let mut sub = from_first(&conn, "orders", None).await;
    let msg = next_msg(&mut sub).await;
    assert_eq!(msg.data, b"first");

    // OTHER saw nothing, and the streaming server does not answer it.
    other.send(b"PING\r\n").await.unwrap();
    let seen = other.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    assert_eq!(seen, b"PONG\r\n", "{}", String::from_utf8_lossy(&seen));
    other
        .send(b"UNSUB 1\r\nSUB _INBOX.o 2\r\nPUB _STAN.discover.test-cluster _INBOX.o 0\r\n\r\nPING\r\n")
        .await
        .unwrap();
    let seen = other.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    assert_eq!(seen, b"PONG\r\n", "{}", String::from_utf8_lossy(&seen));
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.send(b"PING\r\n").await.unwrap();
    let seen = other.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    assert_eq!(seen, b"PONG\r\n", "{}", String::from_utf8_lossy(&seen));

    // A wrong password is refused as the NATS server refuses it.
    let mut bad = RawConn::open(&addr).await.unwrap();
    bad.send(b"CONNECT {\"user\":\"other\",\"pass\":\"nope\"}\r\n")
        .await
        .unwrap();
    bad.read_until(b"-ERR 'Authorization Violation'\r\n", PATIENCE)
        .await
        .unwrap();

    // /connz?auth=1 names each client's user and account.
    let connz = monitor_json(http, "/connz?auth=1").await.unwrap();
    let conns = connz["connections"].as_array().unwrap();
    let by_user = |u: &str| {
        conns
            .iter()
            .find(|c| c["authorized_user"] == u)
            .unwrap_or_else(|| panic!("{u} in {connz:#}"))
    };
    assert_eq!(by_user("other")["account"], "OTHER");
    assert_eq!(by_user("app")["account"], "STAN");
    conn.close().await.unwrap();
}

//! Partitioning mode on the real binary (BEHAVIOUR §12): a server configured with
//! `partitioning: true` serves the channels of its `store_limits.channels` entries
//! only, answers another server's announcement of one of them, and refuses to start
//! without any.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{free_port, Logged};

use prost::Message;
use stan_core::client::errors::SUBSCRIBE_TIMEOUT;
use stan_core::streaming::partition::encode_channel_lists;
use stan_core::streaming::pb::{CtrlMsg, CtrlMsgType};
use stan_runtime::harness::raw::{parse_msg, RawConn};
use stan_runtime::stan_client::{StanConn, StanOptions, SubscribeOptions};

/// A configuration file of its own, removed when dropped.
struct Conf(std::path::PathBuf);

impl Conf {
    fn new(name: &str, text: &str) -> Conf {
        let path = std::env::temp_dir().join(format!(
            "stan-rs-partitioning-{}-{name}.conf",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Conf(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_its_channels_and_leaves_the_others_unanswered() {
    let conf = Conf::new(
        "orders",
        "partitioning: true\nstore_limits {\n  channels {\n    \"orders.>\": {}\n  }\n}\n",
    );
    let port = free_port();
    let port_text = port.to_string();
    let mut server = Logged::server(&["-a", "127.0.0.1", "-p", &port_text, "-c", conf.path()]);
    server.wait_for("STREAM: Streaming Server is ready");

    let addr = format!("127.0.0.1:{port}");
    let conn = StanConn::connect(&addr, "test-cluster", "app", StanOptions::default())
        .await
        .expect("connect is answered");
    let mut sub = conn
        .subscribe("orders.eu", SubscribeOptions::default())
        .await
        .expect("an owned channel takes subscriptions");
    conn.publish("orders.eu", b"hello")
        .await
        .expect("an owned channel takes publishes");
    let msg = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open");
    assert_eq!(msg.data, b"hello");

    // Another server may own `other`: this one stays silent and the client gives up.
    let refused = match conn.subscribe("other", SubscribeOptions::default()).await {
        Ok(_) => panic!("a channel not owned took a subscription"),
        Err(e) => e,
    };
    assert_eq!(refused.to_string(), SUBSCRIBE_TIMEOUT);

    // Another server announcing a channel under `orders.>` hears about the conflict.
    let mut peer = RawConn::handshake(&addr)
        .await
        .expect("plain NATS connects");
    let list = encode_channel_lists("PEER", &["orders.us".to_string()], 1 << 20);
    let mut out = format!(
        "SUB _INBOX.peer 1\r\nPUB _STAN.part.test-cluster _INBOX.peer {}\r\n",
        list[0].len()
    )
    .into_bytes();
    out.extend_from_slice(&list[0]);
    out.extend_from_slice(b"\r\n");
    peer.send(&out).await.unwrap();
    // The answer is the only message: its MSG line, then its payload.
    let within = Duration::from_secs(20);
    peer.read_until(b"MSG ", within).await.unwrap();
    let mut got = b"MSG ".to_vec();
    got.extend(peer.read_until(b"\r\n", within).await.unwrap());
    let line = String::from_utf8_lossy(&got).into_owned();
    let len: usize = line.split_whitespace().last().unwrap().parse().unwrap();
    got.extend(peer.take(len + 2, within).await.unwrap());
    let (subject, _, payload, _) = parse_msg(&got).expect("a whole MSG");
    assert_eq!(subject, "_INBOX.peer");
    let answer = CtrlMsg::decode(payload.as_slice()).unwrap();
    assert_eq!(answer.msg_type, CtrlMsgType::Partitioning as i32);
    assert_eq!(answer.data, b"orders.us");

    conn.close().await.expect("close is answered");
}

#[test]
fn without_a_configured_channel_the_start_fails() {
    let conf = Conf::new("none", "partitioning: true\n");
    let port = free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(["-a", "127.0.0.1", "-p", &port, "-c", conf.path()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stan-server starts");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.lines().last().is_some_and(
            |l| l.ends_with("[FTL] STREAM: Failed to start: stan: no configured channel")
        ),
        "{err}"
    );
}

//! Clustered mode on the real binary (BEHAVIOUR §13): three members, each with its own
//! embedded NATS server routed to the others and its own FILE store and Raft log. The
//! leader serves; clients may connect to any member. Killing the leader elects another
//! that serves everything acknowledged; a member restarted rebuilds its store from its
//! log and catches up. Waits are generous; nothing asserted depends on how long a step
//! took.

#[path = "file_store_common.rs"]
mod common;
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::TempDir;
use stan_runtime::harness::monitor_json;
use stan_runtime::stan_client::{StanConn, StanOptions};
use support::{fatal_line, free_port, from_first, next_msg, run_refused, Logged};

const READY: &str = "STREAM: Streaming Server is ready";

/// One member's ports and arguments, so that it can be restarted as it was.
struct Member {
    id: &'static str,
    args: Vec<String>,
    port: u16,
    http: u16,
    proc: Option<Logged>,
}

impl Member {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.proc = Some(Logged::server(&args));
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill_9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill_9();
        }
        self.proc = None;
    }

    async fn serverz(&self) -> Option<serde_json::Value> {
        monitor_json(self.http, "/streaming/serverz").await.ok()
    }
}

/// Three members `a`, `b`, `c` of cluster `test-cluster`.
fn members(dir: &TempDir) -> Vec<Member> {
    let ids = ["a", "b", "c"];
    let routes: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let (port, http) = (free_port(), free_port());
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                .collect();
            let data = dir.join(&format!("data-{id}"));
            let log = dir.join(&format!("raft-{id}"));
            let args = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-m".into(),
                http.to_string(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", routes[i]),
                "--routes".into(),
                others.join(","),
                "-st".into(),
                "FILE".into(),
                "--dir".into(),
                data.to_str().unwrap().into(),
                "--clustered".into(),
                "--cluster_node_id".into(),
                id.to_string(),
                "--cluster_peers".into(),
                "a, b, c".into(),
                "--cluster_log_path".into(),
                log.to_str().unwrap().into(),
            ];
            Member {
                id,
                args,
                port,
                http,
                proc: None,
            }
        })
        .collect()
}

/// The index of the member that reports itself leader, once exactly one does among
/// the running ones.
async fn leader(members: &[Member]) -> usize {
    for _ in 0..600 {
        let mut leaders = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if m.proc.is_none() {
                continue;
            }
            if let Some(z) = m.serverz().await {
                assert_eq!(z["state"], "CLUSTERED", "{z}");
                assert_eq!(z["node_id"], m.id, "{z}");
                if z["role"] == "Leader" {
                    leaders.push(i);
                }
            }
        }
        if leaders.len() == 1 {
            return leaders[0];
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no single leader elected");
}

async fn connect(addr: &str, id: &str) -> StanConn {
    // The leader may just have changed: connecting is retried until one answers.
    for _ in 0..30 {
        let opts = StanOptions {
            connect_wait: Duration::from_secs(2),
            ..StanOptions::default()
        };
        if let Ok(c) = StanConn::connect(addr, "test-cluster", id, opts).await {
            return c;
        }
    }
    panic!("{id} could not connect through {addr}");
}

/// Every message of `orders` from the start, checked against `m1..=m<count>`.
async fn check_all(addr: &str, reader: &str, count: u64) {
    let conn = connect(addr, reader).await;
    let mut all = from_first(&conn, "orders", None).await;
    for seq in 1..=count {
        let m = next_msg(&mut all).await;
        assert_eq!(m.sequence, seq);
        assert_eq!(m.data, format!("m{seq}").into_bytes());
    }
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_serves_everything_acknowledged() {
    let dir = TempDir::new("cluster");
    let mut m = members(&dir);
    for member in &mut m {
        member.start();
    }
    let first = leader(&m).await;
    m[first].proc.as_mut().unwrap().wait_for(READY);
    let follower = (first + 1) % 3;
    let z = m[follower].serverz().await.unwrap();
    assert_eq!(z["role"], "Follower");
    let storez = monitor_json(m[first].http, "/streaming/storez")
        .await
        .unwrap();
    assert_eq!(storez["type"], "RAFT_FILE");

    // Through a follower's NATS server: requests travel the routes to the leader.
    let conn = connect(&m[follower].addr(), "reader").await;
    let mut dur = from_first(&conn, "orders", Some("dur")).await;
    for i in 1..=30 {
        conn.publish("orders", format!("m{i}").as_bytes())
            .await
            .unwrap();
    }
    for seq in 1..=30u64 {
        let m = next_msg(&mut dur).await;
        assert_eq!(m.sequence, seq);
        if seq <= 10 {
            dur.ack(seq).await.unwrap();
        }
    }
    // Acks have no answer; an acknowledged publish on the same connection comes after
    // them.
    conn.publish("orders", b"m31").await.unwrap();
    drop(dur);
    drop(conn);

    m[first].kill_9();
    let second = leader(&m).await;
    assert_ne!(second, first);
    m[second].proc.as_mut().unwrap().wait_for(READY);
    let survivor = (0..3).find(|&i| i != first && i != second).unwrap();
    check_all(&m[survivor].addr(), "checker", 31).await;

    // The durable resumes after what it acknowledged.
    let conn = connect(&m[survivor].addr(), "reader").await;
    let mut dur = from_first(&conn, "orders", Some("dur")).await;
    let mut got = BTreeSet::new();
    while got.len() < 21 {
        let msg = next_msg(&mut dur).await;
        assert!(
            msg.sequence > 10,
            "acknowledged message {} again",
            msg.sequence
        );
        got.insert(msg.sequence);
        dur.ack(msg.sequence).await.unwrap();
    }
    assert_eq!(got, (11..=31).collect());
    for i in 32..=40 {
        conn.publish("orders", format!("m{i}").as_bytes())
            .await
            .unwrap();
    }
    drop(dur);
    conn.close().await.unwrap();

    // The first leader comes back as a follower, rebuilds its store from its log and
    // catches up; with it, the cluster survives the loss of the second leader.
    m[first].start();
    for _ in 0..300 {
        if let Some(z) = m[first].serverz().await {
            if z["role"] == "Follower" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Catching up is not observable from outside; a moment for it, then the proof:
    // without the restarted member's copy no majority holds messages 32..40.
    tokio::time::sleep(Duration::from_secs(3)).await;
    m[second].kill_9();
    let third = leader(&m).await;
    assert_ne!(third, second);
    m[third].proc.as_mut().unwrap().wait_for(READY);
    check_all(&m[third].addr(), "checker2", 40).await;
}

fn refusal(args: &[&str]) -> String {
    let port = free_port().to_string();
    let out = run_refused(
        Command::new(env!("CARGO_BIN_EXE_stan-server"))
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(args),
    );
    assert_eq!(out.status.code(), Some(1));
    fatal_line(&out)
}

#[test]
fn what_clustering_cannot_run_with_is_refused() {
    assert!(refusal(&[
        "--clustered",
        "--cluster_node_id",
        "a",
        "--cluster_bootstrap"
    ])
    .ends_with("Failed to start: stan: clustering mode not supported with MEMORY store type"));
    let dir = TempDir::new("cluster-refusals");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let part = dir.join("part.conf");
    std::fs::write(
        &part,
        format!(
            "streaming {{ partitioning: true, store: file, dir: \"{data}\", store_limits {{ channels {{ foo {{}} }} }}, cluster {{ node_id: a, bootstrap: true }} }}\n"
        ),
    )
    .unwrap();
    assert!(refusal(&["-sc", part.to_str().unwrap()]).ends_with(
        "Failed to start: stan: channels partitioning in clustering mode is not supported"
    ));
    assert!(refusal(&[
        "-st",
        "FILE",
        "--dir",
        data,
        "--clustered",
        "--cluster_node_id",
        "a"
    ])
    .contains("joining a running cluster is not supported yet"));

    // A store written by a standalone server is left as it is.
    let mut standalone = Logged::server(&[
        "-a",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-st",
        "FILE",
        "--dir",
        data,
    ]);
    standalone.wait_for(READY);
    standalone.kill_9();
    let before = std::fs::read(dir.join("data").join("server.dat")).unwrap();
    let log = dir.join("raft");
    assert!(refusal(&[
        "-st",
        "FILE",
        "--dir",
        data,
        "--clustered",
        "--cluster_node_id",
        "a",
        "--cluster_bootstrap",
        "--cluster_log_path",
        log.to_str().unwrap(),
    ])
    .ends_with(
        "Failed to start: stan: cannot restart server in clustered mode if it was not previously clustered"
    ));
    assert_eq!(
        std::fs::read(dir.join("data").join("server.dat")).unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_bootstrapped_member_serves_and_recovers_from_its_log() {
    let dir = TempDir::new("cluster-single");
    let data = dir.join("data");
    let log = dir.join("raft");
    let (port, http) = (free_port().to_string(), free_port().to_string());
    let args = [
        "-a",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        &http,
        "-st",
        "FILE",
        "--dir",
        data.to_str().unwrap(),
        "--clustered",
        "--cluster_node_id",
        "solo",
        "--cluster_bootstrap",
        "--cluster_log_path",
        log.to_str().unwrap(),
        "--cluster_raft_logging",
    ];
    let mut server = Logged::server(&args);
    let lines = server.wait_for(READY);
    let text = lines.join("\n");
    assert!(text.contains("STREAM: Cluster Node ID : solo"), "{text}");
    assert!(text.contains("server became leader, performing leader promotion actions"));
    assert!(
        text.contains("STREAM: raft: solo is Leader in term"),
        "{text}"
    );
    assert!(
        text.contains("STREAM: Message store is RAFT_FILE"),
        "{text}"
    );
    let addr = format!("127.0.0.1:{port}");
    let conn = connect(&addr, "writer").await;
    for i in 1..=20 {
        conn.publish("orders", format!("m{i}").as_bytes())
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    server.kill_9();

    let mut server = Logged::server(&args);
    server.wait_for(READY);
    check_all(&addr, "checker", 20).await;
    let z = monitor_json(http.parse().unwrap(), "/streaming/serverz")
        .await
        .unwrap();
    assert_eq!(z["role"], "Leader");
    assert_eq!(z["total_msgs"], 20);
}

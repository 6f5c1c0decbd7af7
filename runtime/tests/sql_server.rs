//! `stan-server -st SQL` end to end, against real PostgreSQL and MariaDB servers:
//! a client is served, the server is killed with SIGKILL after PubAcks, and what
//! was acknowledged comes back after a restart; start failures are fatal and say
//! why.

#[path = "support/sqldb.rs"]
mod sqldb;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use sqldb::{fresh_db, fresh_db_with, Driver, TestDb};
use stan_runtime::stan_client::{
    StanConn, StanOptions, StanSubscription, StartAt, SubscribeOptions,
};
use support::{fatal_line, free_port, run_refused, Logged};

fn server(db: &TestDb, port: u16, extra: &[&str]) -> Logged {
    let port = port.to_string();
    let source = db.source();
    let mut args = vec![
        "-a",
        "127.0.0.1",
        "-p",
        &port,
        "-st",
        "SQL",
        "--sql_driver",
        db.driver.name(),
        "--sql_source",
        &source,
    ];
    args.extend_from_slice(extra);
    let mut s = Logged::server(&args);
    s.wait_for("Streaming Server is ready");
    s
}

async fn connect(addr: &str, id: &str) -> StanConn {
    let deadline = Instant::now() + Duration::from_secs(30);
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

async fn next(sub: &mut StanSubscription) -> stan_runtime::stan_client::Msg {
    tokio::time::timeout(Duration::from_secs(20), sub.next())
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

async fn acknowledged_state_survives_kill_9(driver: Driver, extra: &[&str]) {
    let db = fresh_db(driver);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut srv = server(&db, port, extra);
    assert!(
        srv.log
            .iter()
            .any(|l| l.contains("STREAM: Message store is SQL")),
        "{:?}",
        srv.log
    );
    let conn = connect(&addr, "me").await;
    for i in 1..=20u8 {
        conn.publish("foo", &[i]).await.unwrap();
    }
    let mut sub = conn.subscribe("foo", durable()).await.unwrap();
    for seq in 1..=20 {
        let m = next(&mut sub).await;
        assert_eq!((m.sequence, m.data.clone()), (seq, vec![seq as u8]));
        if seq <= 12 {
            sub.ack(seq).await.unwrap();
        }
    }
    // An ack is written once the server has processed it: a publish after it, once
    // PubAcked, went through the same batches.
    conn.publish("bar", b"marker").await.unwrap();
    srv.kill_9();
    drop(sub);
    drop(conn);

    let srv = server(&db, port, extra);
    assert!(
        srv.log.iter().any(|l| l.contains("Recovered 2 channel(s)")),
        "{:?}",
        srv.log
    );
    // The crashed connection's client was recovered; connecting under its ID
    // replaces it once it does not answer, and the durable resumes.
    let conn = connect(&addr, "me").await;
    let mut sub = conn.subscribe("foo", durable()).await.unwrap();
    for seq in 13..=20 {
        let m = next(&mut sub).await;
        assert_eq!(m.sequence, seq);
        assert!(m.redelivered, "{seq} is a redelivery");
        sub.ack(seq).await.unwrap();
    }
    conn.publish("foo", b"new").await.unwrap();
    let m = next(&mut sub).await;
    assert_eq!((m.sequence, m.data.as_slice()), (21, &b"new"[..]));
    sub.ack(21).await.unwrap();
    conn.close().await.unwrap();
    drop(srv);
}

/// A lowered `max_msgs` trims the recovered channel and is recorded in its row.
async fn lowered_limits_trim_at_restart(driver: Driver) {
    let db = fresh_db(driver);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut srv = server(&db, port, &[]);
    let conn = connect(&addr, "me").await;
    for i in 1..=10u8 {
        conn.publish("foo", &[i]).await.unwrap();
    }
    conn.close().await.unwrap();
    srv.signal(libc::SIGTERM);
    srv.wait_for_exit();
    assert_eq!(db.int("SELECT maxmsgs FROM Channels"), 1_000_000);

    let _srv = server(&db, port, &["-mm", "4"]);
    assert_eq!(db.int("SELECT COUNT(*) FROM Messages"), 4);
    assert_eq!(db.int("SELECT MIN(seq) FROM Messages"), 7);
    assert_eq!(db.int("SELECT maxmsgs FROM Channels"), 4);
    let conn = connect(&addr, "me").await;
    let mut sub = conn
        .subscribe(
            "foo",
            SubscribeOptions {
                start: StartAt::First,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    for seq in 7..=10 {
        assert_eq!(next(&mut sub).await.sequence, seq);
    }
    conn.close().await.unwrap();
}

/// Two servers of an FT group on one database: the first owns the `StoreLock` row
/// and serves; the second stands by while the row is renewed, and takes over once
/// the first is killed and its row stops changing.
async fn ft_standby_takes_over(driver: Driver) {
    let db = fresh_db(driver);
    let source = db.source();
    let ft = |port: u16| {
        let port = port.to_string();
        Logged::server(&[
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-st",
            "SQL",
            "--sql_driver",
            driver.name(),
            "--sql_source",
            &source,
            "--ft_group",
            "grp",
        ])
    };
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = ft(port_a);
    a.wait_for("Server is active");
    a.wait_for("Streaming Server is ready");
    let mut b = ft(port_b);
    b.wait_for("Starting in standby mode");
    b.wait_for("ft: unable to get store lock at this time, going back to standby");
    let conn = connect(&format!("127.0.0.1:{port_a}"), "me").await;
    for i in 1..=5u8 {
        conn.publish("foo", &[i]).await.unwrap();
    }
    let owner = db.rows("SELECT id, tick FROM StoreLock");
    assert_eq!(owner.len(), 1);
    assert!(!owner[0][0].text().unwrap_or_default().is_empty());
    a.kill_9();
    drop(conn);

    b.wait_for("Server is active");
    b.wait_for("Streaming Server is ready");
    let conn = connect(&format!("127.0.0.1:{port_b}"), "other").await;
    let mut sub = conn
        .subscribe(
            "foo",
            SubscribeOptions {
                start: StartAt::First,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    for seq in 1..=5u8 {
        let m = next(&mut sub).await;
        assert_eq!((m.sequence, m.data.clone()), (u64::from(seq), vec![seq]));
    }
    let now = db.rows("SELECT id FROM StoreLock");
    assert_ne!(now[0][0], owner[0][0]);
    conn.close().await.unwrap();
    // A clean stop frees the row.
    b.signal(libc::SIGTERM);
    b.wait_for_exit();
    let row = db.rows("SELECT id, tick FROM StoreLock");
    assert_eq!(
        (row[0][0].text().as_deref(), row[0][1].int()),
        (Some(""), 0)
    );
}

/// Messages that expire are deleted; the channel's last sequence stays in its row,
/// so that numbering goes on after a restart.
async fn expired_messages_keep_the_sequence(driver: Driver) {
    let db = fresh_db(driver);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut srv = server(&db, port, &["-ma", "1s"]);
    let conn = connect(&addr, "me").await;
    for i in 1..=3u8 {
        conn.publish("foo", &[i]).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.int("SELECT COUNT(*) FROM Messages") > 0 {
        assert!(Instant::now() < deadline, "the messages did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.int("SELECT maxseq FROM Channels"), 3);
    conn.close().await.unwrap();
    srv.signal(libc::SIGTERM);
    srv.wait_for_exit();

    let _srv = server(&db, port, &[]);
    let conn = connect(&addr, "me").await;
    conn.publish("foo", b"next").await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(db.int("SELECT MIN(seq) FROM Messages"), 4);
}

fn refused(args: &[&str]) -> String {
    let out = run_refused(Command::new(env!("CARGO_BIN_EXE_stan-server")).args(args));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    fatal_line(&out)
}

fn start_failures_are_fatal(driver: Driver) {
    let port = free_port().to_string();
    let base = ["-a", "127.0.0.1", "-p", &port, "-st", "SQL"];
    // A database without the tables.
    let empty = fresh_db_with(driver, "");
    let source = empty.source();
    let mut args = base.to_vec();
    args.extend(["--sql_driver", driver.name(), "--sql_source", &source]);
    let line = refused(&args);
    assert!(
        line.starts_with(
            "STREAM: Failed to start: unable to prepare statement \"SELECT id, tick from StoreLock FOR UPDATE\": "
        ),
        "{line}"
    );
    // A database server nobody listens on.
    let closed = free_port();
    let bad = match driver {
        Driver::Postgres => format!("host=127.0.0.1 port={closed} user=postgres sslmode=disable"),
        Driver::MySql => format!("root@tcp(127.0.0.1:{closed})/x"),
    };
    let mut args = base.to_vec();
    args.extend(["--sql_driver", driver.name(), "--sql_source", &bad]);
    let line = refused(&args);
    assert!(line.starts_with("STREAM: Failed to start: "), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

#[test]
fn driver_problems_are_fatal() {
    assert_eq!(
        refused(&["-p", "-1", "-st", "SQL"]),
        "STREAM: Failed to start: sql: unknown driver \"\" (forgotten import?)"
    );
    assert_eq!(
        refused(&[
            "-p",
            "-1",
            "-st",
            "sql",
            "--sql_driver",
            "oracle",
            "--sql_source",
            "x"
        ]),
        "STREAM: Failed to start: sql: unknown driver \"oracle\" (forgotten import?)"
    );
    assert_eq!(
        refused(&[
            "-p",
            "-1",
            "-st",
            "SQL",
            "--sql_driver",
            "postgres",
            "--sql_source",
            "host=127.0.0.1 readTimeout=soon"
        ]),
        "STREAM: Failed to start: unable to parse readTimeout: time: invalid duration \"soon\""
    );
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_state_survives_kill_9() {
        super::acknowledged_state_survives_kill_9(Driver::Postgres, &[]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_state_survives_kill_9_without_caching_and_encrypted() {
        super::acknowledged_state_survives_kill_9(
            Driver::Postgres,
            &[
                "--sql_no_caching",
                "--encrypt",
                "--encryption_key",
                "secret",
            ],
        )
        .await
    }

    #[test]
    fn start_failures_are_fatal() {
        super::start_failures_are_fatal(Driver::Postgres)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lowered_limits_trim_at_restart() {
        super::lowered_limits_trim_at_restart(Driver::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ft_standby_takes_over() {
        super::ft_standby_takes_over(Driver::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_messages_keep_the_sequence() {
        super::expired_messages_keep_the_sequence(Driver::Postgres).await
    }
}

mod mysql {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_state_survives_kill_9() {
        super::acknowledged_state_survives_kill_9(Driver::MySql, &["--sql_bulk_insert_limit", "8"])
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_state_survives_kill_9_without_caching_and_encrypted() {
        super::acknowledged_state_survives_kill_9(
            Driver::MySql,
            &[
                "--sql_no_caching",
                "--encrypt",
                "--encryption_key",
                "secret",
            ],
        )
        .await
    }

    #[test]
    fn start_failures_are_fatal() {
        super::start_failures_are_fatal(Driver::MySql)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lowered_limits_trim_at_restart() {
        super::lowered_limits_trim_at_restart(Driver::MySql).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ft_standby_takes_over() {
        super::ft_standby_takes_over(Driver::MySql).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_messages_keep_the_sequence() {
        super::expired_messages_keep_the_sequence(Driver::MySql).await
    }
}

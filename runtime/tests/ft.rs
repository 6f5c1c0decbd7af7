//! Fault-tolerance mode on the real binary (BEHAVIOUR §11): two servers of one FT group
//! on one FILE store directory. The first takes the store's lock and serves; the second
//! stands by, answering plain NATS and monitoring but no STAN request, until the first
//! dies; then it takes the lock, recovers the store and serves everything acknowledged.
//! Waits are generous; nothing asserted depends on how long a step took.

#[path = "file_store_common.rs"]
mod common;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::TempDir;
use stan_core::store::Store;
use stan_runtime::harness::monitor_json;
use stan_runtime::stan_client::{StanConn, StanOptions};
use stan_runtime::store::{FileStore, FileStoreOptions, LockAttempt, MemFs, StdFs};
use support::{free_port, from_first, next_msg, run_refused, Logged};

const READY: &str = "STREAM: Streaming Server is ready";
const STANDBY: &str = "STREAM: Starting in standby mode";
const ACTIVE: &str = "STREAM: Server is active";
const BUSY: &str = "STREAM: ft: unable to get store lock at this time, going back to standby";

/// A `stan-server` on its own ports, its log read line by line.
struct Server {
    proc: Logged,
    port: u16,
    http: u16,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let (port, http) = (free_port(), free_port());
        let (p, h) = (port.to_string(), http.to_string());
        let base = ["-a", "127.0.0.1", "-p", &p, "-m", &h];
        let proc = Logged::server(&[&base[..], args].concat());
        Server { proc, port, http }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits for a log line containing `text`, unless one was read already.
    fn wait_for(&mut self, text: &str) {
        if !self.proc.log.iter().any(|l| l.contains(text)) {
            self.proc.wait_for(text);
        }
    }

    /// Index of the first line read so far that contains `text`.
    fn position(&self, text: &str) -> usize {
        let log = &self.proc.log;
        log.iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?} in:\n{}", log.join("\n")))
    }

    fn kill_9(&mut self) {
        self.proc.kill_9();
    }
}

/// The status code of a GET on the monitoring port.
fn http_status(port: u16, path: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn serverz_state(port: u16) -> String {
    let doc = monitor_json(port, "/streaming/serverz").await.unwrap();
    doc["state"].as_str().unwrap().to_string()
}

async fn connect(addr: &str, id: &str) -> StanConn {
    StanConn::connect(addr, "test-cluster", id, StanOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{id} connects to {addr}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_active_server_dies() {
    let dir = TempDir::new("ft");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let mut a = Server::start(&["-st", "FILE", "--dir", data, "--ft_group", "grp"]);
    a.wait_for(READY);
    assert!(a.position(STANDBY) < a.position(ACTIVE));
    assert!(a.position(ACTIVE) < a.position("STREAM: Recovering the state..."));

    // The second member reads its group from a configuration file.
    let conf = dir.join("b.conf");
    std::fs::write(
        &conf,
        format!("streaming {{\n  ft_group_name: \"grp\"\n  store: file\n  dir: \"{data}\"\n}}\n"),
    )
    .unwrap();
    let mut b = Server::start(&["-sc", conf.to_str().unwrap()]);
    b.wait_for(STANDBY);
    // Its own embedded NATS server does not carry the first one's heartbeats: the lock
    // alone keeps it waiting.
    b.wait_for(BUSY);
    assert!(b.position("Server is ready") < b.position(STANDBY));
    assert!(!b
        .proc
        .log
        .iter()
        .any(|l| l.contains("Recovering the state")));
    assert_eq!(http_status(a.http, "/streaming/isFTActive"), 200);
    assert_eq!(http_status(b.http, "/streaming/isFTActive"), 204);
    assert_eq!(serverz_state(a.http).await, "FT_ACTIVE");
    assert_eq!(serverz_state(b.http).await, "FT_STANDBY");
    let storez = monitor_json(b.http, "/streaming/storez").await.unwrap();
    assert_eq!(storez["type"], "FILE");

    // A standby answers no STAN request.
    let refused = StanConn::connect(
        &b.addr(),
        "test-cluster",
        "too-early",
        StanOptions {
            connect_wait: Duration::from_secs(2),
            ..StanOptions::default()
        },
    )
    .await;
    assert!(refused.is_err(), "a standby does not register clients");

    // On the active server: 50 messages, a durable that acknowledges the first 20.
    let conn = connect(&a.addr(), "reader").await;
    let mut dur = from_first(&conn, "orders", Some("dur")).await;
    for i in 1..=50 {
        conn.publish("orders", format!("m{i}").as_bytes())
            .await
            .unwrap();
    }
    for seq in 1..=50u64 {
        let m = next_msg(&mut dur).await;
        assert_eq!(m.sequence, seq);
        if seq <= 20 {
            dur.ack(seq).await.unwrap();
        }
    }
    // Acks have no answer; a publish on the same connection, acknowledged, comes after
    // them, so they are stored.
    conn.publish("orders", b"m51").await.unwrap();
    drop(dur);
    drop(conn);

    a.kill_9();
    b.wait_for(ACTIVE);
    b.wait_for(READY);
    let active = b.position(ACTIVE);
    assert!(active < b.position("STREAM: Recovering the state..."));
    assert!(b.position("STREAM: Recovered 1 channel(s)") < b.position(READY));
    assert_eq!(http_status(b.http, "/streaming/isFTActive"), 200);
    assert_eq!(serverz_state(b.http).await, "FT_ACTIVE");

    // Every acknowledged message is there.
    let checker = connect(&b.addr(), "checker").await;
    let mut all = from_first(&checker, "orders", None).await;
    for seq in 1..=51u64 {
        let m = next_msg(&mut all).await;
        assert_eq!(m.sequence, seq);
        assert_eq!(m.data, format!("m{seq}").into_bytes());
    }

    // The durable resumes after what it acknowledged.
    let conn = connect(&b.addr(), "reader").await;
    let mut dur = from_first(&conn, "orders", Some("dur")).await;
    let mut got = BTreeSet::new();
    while got.len() < 31 {
        let m = next_msg(&mut dur).await;
        assert!(m.sequence > 20, "acknowledged message {} again", m.sequence);
        got.insert(m.sequence);
        dur.ack(m.sequence).await.unwrap();
    }
    assert_eq!(got, (21..=51).collect());
}

#[test]
fn the_memory_store_is_refused_in_ft_mode() {
    let port = free_port().to_string();
    let out = run_refused(Command::new(env!("CARGO_BIN_EXE_stan-server")).args([
        "-a",
        "127.0.0.1",
        "-p",
        &port,
        "--ft_group",
        "grp",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().collect();
    let ready = lines.iter().position(|l| l.ends_with("] Server is ready"));
    let refused = lines.iter().position(|l| {
        l.ends_with(
            "[FTL] STREAM: Failed to start: ft: only FILE or SQL stores supported in FT mode",
        )
    });
    assert!(
        matches!((ready, refused), (Some(r), Some(f)) if r < f),
        "{log}"
    );
    assert!(!log.contains("Starting in standby mode"), "{log}");
}

#[test]
fn lock_attempts_take_find_busy_or_fail_and_the_locked_store_opens() {
    let fs = std::sync::Arc::new(MemFs::new());
    let opts = FileStoreOptions::default();
    let root = FileStore::prepare(&*fs, "/data", &opts).unwrap();
    let LockAttempt::Taken(lock) = FileStore::try_lock(&*fs, &root) else {
        panic!("the first attempt takes the lock");
    };
    assert!(matches!(
        FileStore::try_lock(&*fs, &root),
        LockAttempt::Busy
    ));
    let mut store = FileStore::open_locked(fs.clone(), root.clone(), opts.clone(), lock);
    assert!(store.recover().unwrap().server_info.is_none());
    store.create_channel("orders").unwrap();
    store.flush().unwrap();
    assert!(matches!(
        FileStore::try_lock(&*fs, &root),
        LockAttempt::Busy
    ));
    // Closing the store releases the lock.
    drop(store);
    assert!(matches!(
        FileStore::try_lock(&*fs, &root),
        LockAttempt::Taken(_)
    ));

    // The directory gone: an error, not "busy".
    let dir = TempDir::new("ft-lock");
    let gone = dir.join("gone");
    match FileStore::try_lock(&StdFs, &gone) {
        LockAttempt::Failed(e) => assert_eq!(
            e,
            format!(
                "open {}/.rootdir.lck: no such file or directory",
                gone.display()
            )
        ),
        other => panic!("{other:?}"),
    }
    // Preparing checks what opening checks.
    assert_eq!(
        FileStore::prepare(&StdFs, "", &opts)
            .unwrap_err()
            .to_string(),
        "for FILE stores, root directory must be specified"
    );
}

/// Every file under `dir`, read whole.
fn all_bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes_under(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

/// An FT member seals payloads as a server outside FT mode does: what it stores once
/// active is not in clear on disk, and reads back as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_member_encrypts_what_it_stores() {
    let dir = TempDir::new("ft-encrypt");
    let data = dir.join("data");
    let mut a = Server::start(&[
        "-st",
        "FILE",
        "--dir",
        data.to_str().unwrap(),
        "--ft_group",
        "grp",
        "--encryption_key",
        "ft-secret",
    ]);
    a.wait_for(READY);
    let conn = connect(&a.addr(), "sealer").await;
    let secret = b"a payload nobody reads on disk";
    conn.publish("foo", secret).await.unwrap();
    let mut sub = from_first(&conn, "foo", None).await;
    let got = next_msg(&mut sub).await;
    assert_eq!(got.data, secret);
    conn.close().await.unwrap();
    let stored = all_bytes_under(&data);
    assert!(!stored.windows(secret.len()).any(|w| w == secret));
}

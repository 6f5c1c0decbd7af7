//! The real binary refusing FILE store directories it must not serve: a directory
//! another server is using, a corrupt record, an unknown file version. Each start
//! fails with `[FTL] STREAM: Failed to start: <reason>` and exit code 1, and leaves
//! every file as it was.

mod support;

#[path = "file_store_common.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{fatal_line, free_port, run_refused, wait_for_port, Logged};

use common::TempDir;

fn command(dir: &Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stan-server"));
    c.args([
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-st",
        "FILE",
        "--dir",
    ])
    .arg(dir);
    c
}

fn serve(dir: &Path) -> Logged {
    let port = free_port();
    let mut server = Logged::spawn(&mut command(dir, port));
    wait_for_port(&mut server.child, port);
    server
}

/// Starts a server that must refuse to start; its output once it exited.
fn refused(dir: &Path) -> Output {
    run_refused(&mut command(dir, free_port()))
}

/// Every file under `dir` with its bytes, the lock file aside (opening it truncates
/// an already empty file).
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != ".rootdir.lck" {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A directory written by the server itself: a channel with messages and a durable.
fn populated(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    let port = free_port();
    let mut server = Logged::spawn(&mut command(dir.path(), port));
    wait_for_port(&mut server.child, port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use stan_runtime::stan_client::{StanConn, StanOptions, StartAt, SubscribeOptions};
        let addr = format!("127.0.0.1:{port}");
        let conn = StanConn::connect(&addr, "test-cluster", "writer", StanOptions::default())
            .await
            .unwrap();
        let _sub = conn
            .subscribe(
                "foo",
                SubscribeOptions {
                    durable_name: Some("dur".into()),
                    start: StartAt::First,
                    ..SubscribeOptions::default()
                },
            )
            .await
            .unwrap();
        for i in 0..10u8 {
            conn.publish("foo", &[i; 32]).await.unwrap();
        }
    });
    server.kill_9();
    let log = server.wait_for_exit();
    let has = |line: &str| log.iter().any(|l| l.ends_with(line));
    assert!(has("[INF] STREAM: Message store is FILE"), "{log:#?}");
    let location = format!("[INF] STREAM: Store location: {}", dir.path().display());
    assert!(has(&location), "{log:#?}");
    dir
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let dir = populated("second-server");
    let _first = serve(dir.path());
    let before = contents(dir.path());
    let out = refused(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        fatal_line(&out),
        format!(
            "STREAM: Failed to start: the store in {:?} is in use by another server (lock on {:?} is held)",
            dir.path().display().to_string(),
            dir.join(".rootdir.lck").display().to_string()
        )
    );
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn a_corrupt_record_is_refused_and_left_alone() {
    let dir = populated("corrupt");
    // Subscription files are read whole at recovery (message slices are checked
    // through their index and their last record).
    let path = dir.join("foo/subs.dat");
    let mut bytes = std::fs::read(&path).unwrap();
    // Past the version and the first record's header: inside its payload.
    bytes[4 + 8 + 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let before = contents(dir.path());
    let out = refused(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let line = fatal_line(&out);
    assert!(line.starts_with("STREAM: Failed to start: "), "{line}");
    assert!(line.contains("corrupted data"), "{line}");
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn an_unknown_file_version_is_refused_and_left_alone() {
    let dir = populated("version");
    let path = dir.join("server.dat");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = 9;
    std::fs::write(&path, &bytes).unwrap();
    let before = contents(dir.path());
    let out = refused(dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        fatal_line(&out),
        "STREAM: Failed to start: unable to recover server file \"server.dat\": unsupported file version: 9 (supports [1..1])"
    );
    assert_eq!(contents(dir.path()), before);
}

//! `stan-server -c <file>` end to end: the limits of the file, a `$VAR` from the
//! environment and a command-line override all show in the startup log.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn store_limits_table_reflects_the_file() {
    let conf = format!("{}/tests/fixtures/e2e.conf", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        // The file says port 4222; the command line wins with a random port.
        .args(["-c", &conf, "-p", "-1"])
        .env("STAN_RS_E2E_MAX_MSGS", "1234")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stan-server starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("Streaming Server is ready");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let done = line.contains("Streaming Server is ready");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");

    // `logtime: false` in the file: no date on the lines.
    assert!(lines.iter().all(|l| l.starts_with('[')), "{log}");
    assert!(
        log.contains("STREAM: Starting nats-streaming-server[e2e] version"),
        "{log}"
    );
    let listening = lines
        .iter()
        .find_map(|l| l.split("Listening for client connections on ").nth(1))
        .unwrap_or_else(|| panic!("no listen line in\n{log}"));
    assert!(!listening.ends_with(":4222"), "{listening}");

    let table: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("STREAM: ").map(|(_, rest)| rest))
        .skip_while(|l| !l.starts_with("---------- Store Limits"))
        .take_while(|l| !l.contains("Streaming Server is ready"))
        .collect();
    let want = [
        "---------- Store Limits ----------",
        "Channels:                   10",
        "--------- Channels Limits --------",
        "  Subscriptions:          1000 *",
        "  Messages     :          1234",
        "  Bytes        :     976.56 MB *",
        "  Age          :       24h0m0s",
        "  Inactivity   :     unlimited *",
        "-------- List of Channels --------",
        "foo.>",
        " |-> Messages                  500",
        " foo.*",
        "  |-> Age                   1h0m0s",
        "  foo.bar",
        "   |-> Bytes               1.00 MB",
        "baz",
        " |-> Subscriptions       unlimited",
        " |-> Inactivity              10m0s",
        "----------------------------------",
    ];
    assert_eq!(table, want, "{log}");
}

#[test]
fn config_errors_exit_1_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("stan-rs-config-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.conf");
    std::fs::write(
        &path,
        "streaming {\n  store_limits {\n    max_age: 1m\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(["-sc", &path.display().to_string()])
        .output()
        .expect("stan-server runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:3: parameter \"max_age\" value is expected to be string, got int64\n",
            path.display()
        )
    );
    assert!(out.stdout.is_empty());
}

//! Options of the embedded NATS server on the real binary, from the command line and
//! from a configuration file: protocol tracing (`-V`, `trace`, `max_traced_msg_len`),
//! `client_advertise`, the ports file and `-t`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::{fatal_line, free_port, run_refused, wait_for_port, Logged};

/// Connects, returns the INFO line and the connection.
fn connect(port: u16) -> (String, TcpStream) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut info = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut info)
        .unwrap();
    (info, stream)
}

#[test]
fn trace_flags_log_every_operation_and_advertise_replaces_the_address() {
    let port = free_port();
    let p = port.to_string();
    let mut server = Logged::server(&[
        "-a",
        "127.0.0.1",
        "-p",
        &p,
        "-V",
        "--max_traced_msg_len",
        "4",
        "--client_advertise",
        "nats.example.com",
    ]);
    wait_for_port(&mut server.child, port);
    let (info, mut c) = connect(port);
    assert!(
        info.contains(&format!("\"host\":\"nats.example.com\",\"port\":{port},")),
        "{info}"
    );
    c.write_all(b"CONNECT {\"verbose\":false,\"pass\":\"secret\"}\r\nSUB a 1\r\nPUB a 10\r\n0123456789\r\nPING\r\n")
        .unwrap();
    let lines = server.wait_for("->> [PONG]");
    let traced: Vec<&String> = lines.iter().filter(|l| l.contains("[TRC]")).collect();
    let expected = [
        "<<- [CONNECT {\"verbose\":false,\"pass\":\"[REDACTED]\"}]",
        "<<- [SUB a 1]",
        "<<- [PUB a 10]",
        "<<- MSG_PAYLOAD: [\"0123...\"]",
        "->> [MSG a 1 10]",
        "<<- [PING]",
        "->> [PONG]",
    ];
    assert_eq!(traced.len(), expected.len(), "{traced:#?}");
    for (line, want) in traced.iter().zip(expected) {
        assert!(
            line.contains(" - cid:") && line.ends_with(want),
            "{line} is not {want}"
        );
    }
    assert!(!lines.iter().any(|l| l.contains("secret")));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[test]
fn configuration_file_keys_set_tracing_and_advertise() {
    let dir = std::env::temp_dir().join(format!("stan-rs-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nats.conf");
    let port = free_port();
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\ntrace: true\nmax_traced_msg_len: 2\nclient_advertise: \"10.1.2.3:4999\"\n"
        ),
    )
    .unwrap();
    let mut server = Logged::server(&["-c", conf.to_str().unwrap()]);
    wait_for_port(&mut server.child, port);
    let (info, mut c) = connect(port);
    assert!(
        info.contains("\"host\":\"10.1.2.3\",\"port\":4999,"),
        "{info}"
    );
    c.write_all(b"CONNECT {}\r\nPUB x 3\r\nabc\r\nPING\r\n")
        .unwrap();
    let lines = server.wait_for("->> [PONG]");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("<<- MSG_PAYLOAD: [\"ab...\"]")),
        "{lines:#?}"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_advertise_address_stops_the_start() {
    let port = free_port().to_string();
    let out = run_refused(Command::new(env!("CARGO_BIN_EXE_stan-server")).args([
        "-p",
        &port,
        "--client_advertise",
        "host:port:x",
    ]));
    assert_eq!(
        fatal_line(&out),
        "Error setting server INFO with ClientAdvertise value of host:port:x, err=address host:port:x: too many colons in address"
    );
}

/// `--ports_file_dir` writes where the server can be reached, as the NATS server
/// does, and removes the file at shutdown.
#[test]
fn ports_file_names_the_listeners_until_shutdown() {
    let dir = std::env::temp_dir().join(format!("stan-rs-ports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, http) = (free_port(), free_port());
    let mut server = Logged::server(&[
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        &http.to_string(),
        "--ports_file_dir",
        dir.to_str().unwrap(),
    ]);
    server.wait_for("Streaming Server is ready");
    let file = dir.join(format!("stan-server_{}.ports", server.child.id()));
    let text = std::fs::read_to_string(&file).expect("the ports file is written");
    assert_eq!(
        text,
        format!(
            r#"{{"nats":["nats://127.0.0.1:{port}"],"monitoring":["http://127.0.0.1:{http}"]}}"#
        )
    );
    server.signal(libc::SIGINT);
    server.wait_for_exit();
    assert!(!file.exists(), "the ports file is removed at shutdown");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `-t` reads everything a start would read, says so and exits without serving.
#[test]
fn check_config_reports_and_exits() {
    let dir = std::env::temp_dir().join(format!("stan-rs-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(&good, "port: 4999\nstreaming { id: checked }\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(["-t", "-c", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "stan-server: configuration file {} is valid\n",
            good.display()
        )
    );
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "port: x\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(["-t", "-c", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(bad.to_str().unwrap()));
    std::fs::remove_dir_all(&dir).unwrap();
}

//! SIGHUP on the real binary: the embedded NATS server's part of the configuration
//! file is read again and applied to running connections; a change it cannot apply,
//! or a broken file, is reported and the server keeps running as it was.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::{free_port, Logged};

fn start(conf: &Path) -> Logged {
    let mut server = Logged::server(&["-c", conf.to_str().unwrap()]);
    server.wait_for("Streaming Server is ready");
    server
}

/// The `INFO` line a new connection receives.
fn info(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before INFO");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

fn config(port: u16, extra: &str) -> String {
    format!("listen: 127.0.0.1:{port}\nlogtime: false\nstreaming {{ id: reload }}\n{extra}")
}

#[test]
fn sighup_reloads_the_nats_configuration() {
    let dir = std::env::temp_dir().join(format!("stan-rs-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("server.conf");
    let port = free_port();
    std::fs::write(&conf, config(port, "")).unwrap();
    let mut server = start(&conf);
    assert!(info(port).contains("\"max_payload\":1048576"));

    // A client that keeps its connection across the reload, then must authenticate.
    let mut old = TcpStream::connect(("127.0.0.1", port)).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    old.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();

    std::fs::write(
        &conf,
        config(
            port,
            "max_payload: 512\nping_interval: \"30s\"\nauthorization { token: s3cret }\n",
        ),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    let lines = server.wait_for("Reloaded server configuration");
    let tail: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once("] ").map_or(l.as_str(), |(_, t)| t))
        .collect();
    assert_eq!(
        tail[tail.len() - 4..],
        [
            "[INF] Reloaded: authorization token",
            "[INF] Reloaded: ping_interval = 30s",
            "[INF] Reloaded: max_payload = 512",
            "[INF] Reloaded server configuration",
        ]
    );
    let fresh = info(port);
    assert!(fresh.contains("\"max_payload\":512"), "{fresh}");
    assert!(fresh.contains("\"auth_required\":true"), "{fresh}");
    // The client without the token is closed as the new authorization requires.
    let mut got = Vec::new();
    let _ = old.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.ends_with("-ERR 'Authorization Violation'\r\n"), "{got}");

    // What cannot change is refused, and the server goes on with what it had.
    std::fs::write(&conf, config(free_port(), "max_payload: 100\n")).unwrap();
    server.signal(libc::SIGHUP);
    let lines = server.wait_for("Reload:");
    let last = lines.last().unwrap();
    assert!(
        last.contains("] [ERR] STREAM: Reload: config reload not supported for Port: old="),
        "{last}"
    );
    assert!(info(port).contains("\"max_payload\":512"));

    // A broken file is reported with its file and line.
    std::fs::write(&conf, "listen: 127.0.0.1:1\nport: x\n").unwrap();
    server.signal(libc::SIGHUP);
    let lines = server.wait_for("Reload:");
    let want = format!(
        "] [ERR] STREAM: Reload: {}:2: interface conversion: interface {{}} is string, not int64",
        conf.display()
    );
    assert!(lines.last().unwrap().ends_with(&want), "{lines:?}");
    assert!(info(port).contains("\"max_payload\":512"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_without_a_configuration_file_is_refused() {
    let port = free_port();
    let mut server = Logged::server(&["-a", "127.0.0.1", "-p", &port.to_string()]);
    server.wait_for("Streaming Server is ready");
    server.signal(libc::SIGHUP);
    let lines = server.wait_for("Reload:");
    assert!(lines.last().unwrap().ends_with(
        "[ERR] STREAM: Reload: Can only reload config when a file is provided using -c or --config"
    ));
    assert!(info(port).starts_with("INFO "));
}

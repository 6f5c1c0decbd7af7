//! Hostile bytes against the real binary: each gets the NATS server's error and loses
//! its connection where the NATS server closes it, and a well-behaved client on the
//! same server keeps working throughout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not open its port");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child, port)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until `want` appears in what arrived (or the peer closes); returns all of it.
fn read_until(s: &mut TcpStream, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True when the server closed the connection (EOF after any pending bytes).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

fn good_client_still_works(good: &mut TcpStream, n: usize) {
    let body = format!("ok{n}");
    write!(good, "PUB check {}\r\n{body}\r\nPING\r\n", body.len()).unwrap();
    let got = read_until(good, &format!("MSG check 1 {}\r\n{body}\r\n", body.len()));
    assert!(
        got.contains(&body),
        "the well-behaved client stopped getting messages: {got:?}"
    );
}

#[test]
fn each_bad_input_gets_its_error_and_others_are_unaffected() {
    let srv = start();
    let mut good = connect(srv.1);
    good.write_all(b"CONNECT {}\r\nSUB check 1\r\nPING\r\n")
        .unwrap();
    read_until(&mut good, "PONG");

    let mut long_line = b"SUB ".to_vec();
    long_line.resize(5000, b'a');
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "garbage bytes",
            b"\x00\x01\x02\x03garbage\r\n".to_vec(),
            "-ERR 'Unknown Protocol Operation'",
            true,
        ),
        (
            "control line over 4096 bytes",
            long_line,
            "-ERR 'Maximum Control Line Exceeded'",
            true,
        ),
        (
            "PUB byte count does not match",
            b"CONNECT {}\r\nPUB foo 3\r\nhello\r\n".to_vec(),
            "-ERR 'Unknown Protocol Operation'",
            true,
        ),
        (
            "payload over max_payload",
            b"CONNECT {}\r\nPUB foo 1073741824\r\n".to_vec(),
            "-ERR 'Maximum Payload Violation'",
            true,
        ),
        (
            "invalid subject",
            b"CONNECT {}\r\nSUB foo..bar 1\r\nPING\r\n".to_vec(),
            "-ERR 'Invalid Subject'",
            false,
        ),
    ];
    for (i, (what, bytes, err, closes)) in cases.into_iter().enumerate() {
        let mut bad = connect(srv.1);
        bad.write_all(&bytes).unwrap();
        let got = read_until(&mut bad, err);
        assert!(got.contains(err), "{what}: expected {err:?}, got {got:?}");
        if closes {
            assert!(closed(&mut bad), "{what}: the connection should be closed");
        } else {
            let more = if got.contains("PONG") {
                got
            } else {
                read_until(&mut bad, "PONG")
            };
            assert!(
                more.contains("PONG"),
                "{what}: the connection should stay open"
            );
        }
        good_client_still_works(&mut good, i);
    }

    // A half-written operation held open does not block anyone else.
    let mut half = connect(srv.1);
    half.write_all(b"CONNECT {}\r\nPUB foo 100\r\nonly part")
        .unwrap();
    good_client_still_works(&mut good, 99);
    drop(half);
    good_client_still_works(&mut good, 100);
}

/// Several clients send a burst at the same moment, then wait for an answer: whatever
/// the server did not take in one batch must still be taken without further input.
#[test]
fn simultaneous_bursts_are_all_answered() {
    let server = start();
    let mut burst = Vec::new();
    for i in 0..2000 {
        burst.extend_from_slice(format!("PUB burst.{i} 100\r\n").as_bytes());
        burst.extend_from_slice(&[b'x'; 100]);
        burst.extend_from_slice(b"\r\n");
    }
    burst.extend_from_slice(b"PING\r\n");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut s = connect(server.1);
            read_until(&mut s, "\r\n");
            s.write_all(b"CONNECT {\"verbose\":false}\r\n").unwrap();
            let burst = burst.clone();
            std::thread::spawn(move || {
                s.write_all(&burst).unwrap();
                read_until(&mut s, "PONG\r\n")
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let got = c.join().unwrap();
        assert!(got.ends_with("PONG\r\n"), "client {i} got {got:?}");
    }
}

//! `write_deadline` on the real binary: a subscriber that stops reading is closed
//! once a write to it blocks that long, even while its backlog is far below
//! `max_pending`, and the server goes on serving the others.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{free_port, Logged};

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "server did not open its port: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn a_blocked_write_past_the_deadline_closes_the_client() {
    let dir = std::env::temp_dir().join(format!("stan-rs-wdl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("server.conf");
    let port = free_port();
    std::fs::write(
        &conf,
        format!("listen: 127.0.0.1:{port}\nwrite_deadline: \"1s\"\nmax_pending: 1GB\n"),
    )
    .unwrap();
    let mut server = Logged::server(&["-c", conf.to_str().unwrap()]);

    let mut stuck = connect(port);
    let stuck_port = stuck.local_addr().unwrap().port();
    stuck
        .write_all(b"CONNECT {}\r\nSUB flood 1\r\nPING\r\n")
        .unwrap();
    // A shrunken receive buffer fills quickly; from then on the server's writes
    // to this client block.
    let mut pong = [0u8; 1024];
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("PONG") {
        let n = stuck.read(&mut pong).unwrap();
        got.extend_from_slice(&pong[..n]);
    }

    let mut publisher = connect(port);
    publisher.write_all(b"CONNECT {}\r\n").unwrap();
    let payload = vec![b'x'; 32 * 1024];
    let mut frame = format!("PUB flood {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    let flood = std::thread::spawn(move || {
        // 64 MB: far more than the socket buffers of the stuck client hold.
        for _ in 0..2048 {
            publisher.write_all(&frame).unwrap();
        }
        publisher.write_all(b"PING\r\n").unwrap();
        publisher
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("PONG") {
            let n = publisher.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let line = server
        .wait_for("Slow Consumer Detected: WriteDeadline of 1s exceeded with")
        .pop()
        .unwrap();
    // The stuck client, not the reader.
    assert!(
        line.contains(&format!("127.0.0.1:{stuck_port} - cid:")),
        "{line}"
    );
    // The publisher was never held up for good, and newcomers are served.
    assert!(flood.join().unwrap().contains("PONG"));
    let mut fresh = connect(port);
    fresh.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("PONG") {
        let n = fresh.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! `stan-server` with encryption at rest, end to end: clients publish and receive in
//! clear while the FILE store holds sealed payloads, across restarts, with the key
//! from a flag, the environment or a configuration file; a missing key or an unknown
//! cipher stops the start with the Go server's error and exit code 1.

mod support;

#[path = "file_store_common.rs"]
mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{fatal_line, free_port, run_refused};

use common::{ls, parse_dat, read, TempDir, IEEE};
use prost::Message;
use stan_core::store::crypto::{Cipher, MasterKey, OVERHEAD};
use stan_core::streaming::pb::MsgProto;
use stan_runtime::encryption::KEY_ENV;
use stan_runtime::stan_client::{StanConn, StanOptions, StartAt, SubscribeOptions};

/// `stan-server` on loopback with `args`, the key variable set to `env_key` or unset.
fn command(port: u16, args: &[&str], env_key: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stan-server"));
    c.args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match env_key {
        Some(k) => c.env(KEY_ENV, k),
        None => c.env_remove(KEY_ENV),
    };
    c
}

/// A running server, its log in a file; killed however the test ends.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(args: &[&str], env_key: Option<&str>) -> Server {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("stan-encryption-{}-{port}.log", std::process::id()));
        let child = command(port, args, env_key)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("server starts");
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited with {status}:\n{}", server.log_text());
            }
            assert!(Instant::now() < deadline, "server did not open its port");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGINT, then the exit code: a clean stop writes everything out.
    fn stop(mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A start that must fail; its output once it exited.
fn refused(args: &[&str], env_key: Option<&str>) -> Output {
    run_refused(&mut command(free_port(), args, env_key))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(server: &Server, client: &str) -> StanConn {
    StanConn::connect(
        &server.addr(),
        "test-cluster",
        client,
        StanOptions::default(),
    )
    .await
    .unwrap()
}

/// Publishes `payloads` to `foo`; each one is acknowledged, so it is stored.
fn publish(server: &Server, client: &str, payloads: &[&[u8]]) {
    runtime().block_on(async {
        let conn = connect(server, client).await;
        for p in payloads {
            conn.publish("foo", p).await.unwrap();
        }
        conn.close().await.unwrap();
    })
}

/// The first `n` messages of `foo`, read by a new subscription from the start, after
/// checking that no more follow them.
fn read_from_start(server: &Server, client: &str, n: usize) -> Vec<Vec<u8>> {
    runtime().block_on(async {
        let conn = connect(server, client).await;
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
        let mut out = Vec::new();
        for seq in 1..=n as u64 {
            let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("a message in time")
                .expect("subscription open");
            assert_eq!(m.sequence, seq);
            out.push(m.data);
        }
        let extra = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
        assert!(extra.is_err(), "one more message: {extra:?}");
        conn.close().await.unwrap();
        out
    })
}

/// The stored payloads of channel `foo` in `dir`, in sequence order.
fn stored_payloads(dir: &Path) -> Vec<Vec<u8>> {
    let chan = dir.join("foo");
    let mut slices: Vec<(u64, String)> = ls(&chan)
        .into_iter()
        .filter_map(|n| {
            let k = n
                .strip_prefix("msgs.")?
                .strip_suffix(".dat")?
                .parse()
                .ok()?;
            Some((k, n))
        })
        .collect();
    slices.sort();
    let mut out = Vec::new();
    for (_, name) in slices {
        for (_, rec) in parse_dat(&read(chan.join(name)), false, IEEE) {
            out.push(MsgProto::decode(rec.as_slice()).unwrap().data);
        }
    }
    out
}

/// The plaintext of a stored payload of `foo`, if `key` sealed it.
fn open_with(key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    MasterKey::new("", key.as_bytes())
        .unwrap()
        .channel_cipher("foo", [0; 4], 0)
        .decrypt(sealed)
        .ok()
        .map(|p| p.into_owned())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn clients_see_plaintext_while_the_file_store_holds_sealed_payloads() {
    let dir = TempDir::new("enc-e2e");
    let d = dir.path().to_str().unwrap();
    let first: Vec<Vec<u8>> = (1..=5)
        .map(|i| format!("secret-payload-{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();

    let server = Server::start(
        &[
            "-st",
            "FILE",
            "--dir",
            d,
            "--encrypt",
            "--encryption_key",
            "k",
        ],
        None,
    );
    publish(&server, "a", &refs);
    assert_eq!(read_from_start(&server, "r", 5), first);
    let log = server.log_text();
    assert_eq!(server.stop(), 0);
    // The startup log is unchanged by encryption.
    assert!(log.contains("STREAM: Message store is FILE"), "{log}");

    let stored = stored_payloads(dir.path());
    assert_eq!(stored.len(), 5);
    for (i, sealed) in stored.iter().enumerate() {
        assert_eq!(sealed[0], Cipher::platform_default().code());
        assert_eq!(open_with("k", sealed).as_ref(), Some(&first[i]));
    }
    for name in ls(dir.join("foo")) {
        let bytes = read(dir.join("foo").join(&name));
        assert!(
            !contains(&bytes, b"secret-payload"),
            "{name} holds plaintext"
        );
    }

    // Restarted with the key in the environment only: the old messages come back in
    // clear and new ones are sealed too.
    let server = Server::start(&["-st", "FILE", "--dir", d, "--encrypt"], Some("k"));
    let mut all = first.clone();
    all.push(b"after restart".to_vec());
    assert_eq!(read_from_start(&server, "r", 5), first);
    publish(&server, "b", &[b"after restart"]);
    assert_eq!(read_from_start(&server, "r", 6), all);
    assert_eq!(server.stop(), 0);
    let stored = stored_payloads(dir.path());
    assert_eq!(
        open_with("k", &stored[5]).as_deref(),
        Some(&b"after restart"[..])
    );
    // The nonce of each message carries its sequence, across the restart.
    for (i, sealed) in stored.iter().enumerate() {
        assert_eq!(&sealed[5..13], &(i as u64 + 1).to_be_bytes(), "{i}");
    }

    // With the wrong key the server starts, delivers nothing it cannot open, and
    // says why.
    let server = Server::start(
        &["-st", "FILE", "--dir", d, "--encryption_key", "wrong"],
        None,
    );
    let text = "Unable to lookup message 1 of \"foo\": cipher: message authentication failed";
    runtime().block_on(async {
        let conn = connect(&server, "c").await;
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.log_text().contains(text) {
            assert!(Instant::now() < deadline, "{}", server.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
        assert!(got.is_err(), "delivered {got:?}");
        conn.close().await.unwrap();
    });
    assert_eq!(server.stop(), 0);
}

#[test]
fn a_missing_key_or_an_unknown_cipher_stops_the_start() {
    let dir = TempDir::new("enc-refusals");
    let d = dir.path().to_str().unwrap();
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["-st", "FILE", "--dir", d, "--encrypt"],
            None,
            "encryption key required",
        ),
        (&["--encrypt"], None, "encryption key required"),
        (&["--encrypt"], Some(""), "encryption key required"),
        (
            &[
                "--encrypt",
                "--encryption_key",
                "k",
                "--encryption_cipher",
                "DES",
            ],
            None,
            "encryption cipher not supported",
        ),
        (
            &[
                "-st",
                "FILE",
                "--dir",
                d,
                "--encrypt",
                "--encryption_cipher",
                "aes-256",
            ],
            None,
            "encryption cipher not supported",
        ),
    ];
    for (args, env, error) in cases {
        let out = refused(args, *env);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            fatal_line(&out),
            format!("STREAM: Failed to start: {error}"),
            "{args:?}"
        );
    }
}

#[test]
fn configuration_file_keys_work_and_flags_win() {
    let dir = TempDir::new("enc-config");
    let conf = dir.join("stan.conf");
    std::fs::write(
        &conf,
        format!(
            "streaming {{\n  store: file\n  dir: {:?}\n  encryption_cipher: chacha\n  encryption_key: \"filekey\"\n}}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let data = dir.join("data");

    let server = Server::start(&["-sc", conf], None);
    publish(&server, "a", &[b"one"]);
    assert_eq!(read_from_start(&server, "r", 1), vec![b"one".to_vec()]);
    assert_eq!(server.stop(), 0);

    // The cipher from the command line seals new messages; the file's key still
    // opens the old ones.
    let server = Server::start(&["-sc", conf, "--encryption_cipher", "AES"], None);
    publish(&server, "b", &[b"two"]);
    assert_eq!(
        read_from_start(&server, "r", 2),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    assert_eq!(server.stop(), 0);

    // The key from the command line replaces the file's.
    let server = Server::start(&["-sc", conf, "--encryption_key", "flagkey"], None);
    publish(&server, "c", &[b"three"]);
    assert_eq!(server.stop(), 0);
    // And the environment's replaces both.
    let server = Server::start(
        &["-sc", conf, "--encryption_key", "flagkey"],
        Some("envkey"),
    );
    publish(&server, "d", &[b"four"]);
    assert_eq!(server.stop(), 0);

    let stored = stored_payloads(&data);
    assert_eq!(stored.len(), 4);
    let codes: Vec<u8> = stored.iter().map(|s| s[0]).collect();
    assert_eq!(codes, [2, 1, 2, 2]);
    assert_eq!(
        open_with("filekey", &stored[0]).as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        open_with("filekey", &stored[1]).as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(open_with("filekey", &stored[2]), None);
    assert_eq!(
        open_with("flagkey", &stored[2]).as_deref(),
        Some(&b"three"[..])
    );
    assert_eq!(open_with("flagkey", &stored[3]), None);
    assert_eq!(
        open_with("envkey", &stored[3]).as_deref(),
        Some(&b"four"[..])
    );
}

/// `bytes` of channel `foo` in `/streaming/channelsz` of a server started with
/// `-m <port>`.
fn channel_bytes(http_port: u16) -> u64 {
    runtime().block_on(async {
        let c = stan_runtime::harness::monitor_json(http_port, "/streaming/channelsz?channel=foo")
            .await
            .unwrap();
        c["bytes"].as_u64().unwrap_or_else(|| panic!("{c}"))
    })
}

#[test]
fn the_memory_store_encrypts_too_and_counts_the_sealed_size() {
    let payloads: Vec<&[u8]> = vec![b"m1", b"", b"m3"];
    let mut bytes = Vec::new();
    for encrypt in [false, true] {
        let http = free_port();
        let http_arg = http.to_string();
        let mut args = vec!["-m", &http_arg];
        if encrypt {
            args.extend(["--encrypt", "--encryption_cipher", "chacha"]);
        }
        let server = Server::start(&args, Some("k"));
        publish(&server, "a", &payloads);
        assert_eq!(
            read_from_start(&server, "r", 3),
            vec![b"m1".to_vec(), Vec::new(), b"m3".to_vec()]
        );
        bytes.push(channel_bytes(http));
        assert_eq!(server.stop(), 0);
    }
    // Both non-empty payloads carry the cipher code, nonce and tag.
    assert_eq!(bytes[1] - bytes[0], 2 * OVERHEAD as u64, "{bytes:?}");
}

//! TLS on client connections, on the real binary: INFO goes out in clear with
//! `tls_required`, then the client's handshake, then NATS over TLS; clients that do
//! not speak TLS, or lack the certificate `verify` asks for, are logged and closed
//! while everybody else carries on; bad certificate files stop the start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

fn cert(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/certs");
    dir.join(name).to_string_lossy().into_owned()
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stan-server starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let server = Server { child, lines };
        server.wait_for("Streaming Server is ready");
        server
    }

    /// Waits for a log line containing `text`; the lines up to it are returned.
    fn wait_for(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(text);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {text:?} in:\n{}", seen.join("\n"));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client_config(identity: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((c, k)) => {
            let chain = CertificateDer::pem_file_iter(cert(c))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(cert(k)).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// Reads the plaintext INFO line the server sends first.
async fn read_info(tcp: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte))
            .await
            .expect("INFO in time")
            .unwrap();
        assert!(n > 0, "closed before INFO");
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// Reads until `want` shows up; `None` if the connection ends or fails first.
async fn read_until<R: tokio::io::AsyncRead + Unpin>(r: &mut R, want: &str) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if String::from_utf8_lossy(&got).contains(want) {
            return Some(String::from_utf8_lossy(&got).into_owned());
        }
        match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => return None,
            Err(_) => panic!(
                "nothing within 10s; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// INFO in clear, then a TLS handshake with `config`, then CONNECT and PING; true
/// when the PONG comes back over TLS.
async fn connect_and_ping(port: u16, config: Arc<ClientConfig>) -> (String, bool) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let info = read_info(&mut tcp).await;
    let name = ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = TlsConnector::from(config).connect(name, tcp).await else {
        return (info, false);
    };
    // With TLS 1.3 a refused client certificate shows only once the server answers.
    if tls.write_all(b"CONNECT {}\r\nPING\r\n").await.is_err() {
        return (info, false);
    }
    let ponged = read_until(&mut tls, "PONG\r\n").await.is_some();
    (info, ponged)
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn nats_over_tls_from_the_configuration_file() {
    let dir = std::env::temp_dir().join(format!("stan-rs-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("tls.conf");
    let (port, http) = (free_port(), free_port());
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 1.5\n}}\n",
            cert("server-cert.pem"),
            cert("server-key.pem")
        ),
    )
    .unwrap();
    let server = Server::start(&["-c", conf.to_str().unwrap()]);
    let rt = runtime();

    // Publish and receive over TLS.
    let _open = rt.block_on(async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let info = read_info(&mut tcp).await;
        assert!(info.starts_with("INFO {"), "{info}");
        assert!(info.contains("\"tls_required\":true"), "{info}");
        assert!(!info.contains("tls_verify"), "{info}");
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client_config(None))
            .connect(name, tcp)
            .await
            .expect("handshake");
        tls.write_all(b"CONNECT {\"verbose\":false}\r\nSUB greetings 1\r\nPUB greetings 5\r\nhello\r\nPING\r\n")
            .await
            .unwrap();
        let got = read_until(&mut tls, "PONG\r\n").await.expect("PONG over TLS");
        assert!(got.contains("MSG greetings 1 5\r\nhello\r\n"), "{got}");
        tls
    });
    // The handshake reaches monitoring on its own path, which may trail the PONG.
    let deadline = Instant::now() + Duration::from_secs(10);
    let connz = loop {
        let connz = http_get(http, "/connz");
        if connz.contains("\"tls_version\": \"1.3\"") || Instant::now() > deadline {
            break connz;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(connz.contains("\"tls_version\": \"1.3\""), "{connz}");
    assert!(
        connz.contains("\"tls_cipher_suite\": \"TLS_AES_"),
        "{connz}"
    );

    // A client that ignores TLS is closed, and the reason logged.
    rt.block_on(async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        read_info(&mut tcp).await;
        tcp.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
        assert_eq!(read_until(&mut tcp, "PONG").await, None);
    });
    server.wait_for("- TLS handshake error: tls: first record does not look like a TLS handshake");

    // A client that says nothing is closed once the TLS timeout passes.
    rt.block_on(async {
        let started = Instant::now();
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        read_info(&mut tcp).await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
        assert!(started.elapsed() >= Duration::from_millis(1400));
    });
    let lines = server.wait_for("TLS handshake timeout");
    let line = lines.last().unwrap();
    assert!(line.contains("[ERR] 127.0.0.1:"), "{line}");
    assert!(line.contains(" - cid:"), "{line}");

    // Everybody else is still served.
    let (_, ponged) = rt.block_on(connect_and_ping(port, client_config(None)));
    assert!(ponged);

    let varz = http_get(http, "/varz");
    assert!(
        varz.contains("\"tls_required\": true") || varz.contains("\"tls_required\":true"),
        "{varz}"
    );
    assert!(
        varz.contains("\"tls_timeout\": 1.5") || varz.contains("\"tls_timeout\":1.5"),
        "{varz}"
    );
    assert!(!varz.contains("tls_verify"), "{varz}");
}

#[test]
fn verify_requires_a_client_certificate_from_the_ca() {
    let port = free_port();
    let server = Server::start(&[
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--tlsverify",
        "--tlscert",
        &cert("server-cert.pem"),
        "--tlskey",
        &cert("server-key.pem"),
        "--tlscacert",
        &cert("ca.pem"),
    ]);
    let rt = runtime();

    let (info, ponged) = rt.block_on(connect_and_ping(
        port,
        client_config(Some(("client-cert.pem", "client-key.pem"))),
    ));
    assert!(
        info.contains("\"tls_required\":true,\"tls_verify\":true"),
        "{info}"
    );
    assert!(ponged, "a client with a certificate from the CA is served");

    let (_, ponged) = rt.block_on(connect_and_ping(port, client_config(None)));
    assert!(!ponged, "a client without a certificate is refused");
    server.wait_for("TLS handshake error: tls: client didn't provide a certificate");

    let (_, ponged) = rt.block_on(connect_and_ping(
        port,
        client_config(Some(("rogue-cert.pem", "rogue-key.pem"))),
    ));
    assert!(!ponged, "a certificate from another CA is refused");
    server.wait_for("certificate signed by unknown authority");
}

#[test]
fn the_startup_log_says_tls_is_required() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(["-a", "127.0.0.1", "-p", &free_port().to_string(), "--tls"])
        .args([
            "--tlscert",
            &cert("server-cert.pem"),
            "--tlskey",
            &cert("server-key.pem"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let ready = line.contains("Streaming Server is ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let at = |text: &str| {
        lines
            .iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no {text:?} in {lines:#?}"))
    };
    assert!(at("Listening for client connections on") < at("TLS required for client connections"));
    assert!(at("TLS required for client connections") < at("Server is ready"));
}

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn bad_certificate_files_stop_the_start() {
    let (cert_file, key_file) = (cert("server-cert.pem"), cert("server-key.pem"));
    assert_eq!(
        refused(&["--tls", "--tlscert", "/nonexistent/cert.pem", "--tlskey", &key_file]),
        "error parsing X509 certificate/key pair: open /nonexistent/cert.pem: no such file or directory\n"
    );
    assert_eq!(
        refused(&[
            "--tls",
            "--tlscert",
            &cert_file,
            "--tlskey",
            &cert("client-key.pem")
        ]),
        "error parsing X509 certificate/key pair: tls: private key does not match public key\n"
    );
    assert_eq!(
        refused(&[
            "--tls",
            "--tlscert",
            &cert_file,
            "--tlskey",
            &cert("README.md")
        ]),
        "error parsing X509 certificate/key pair: tls: failed to find any PEM data in key input\n"
    );
    assert_eq!(
        refused(&[
            "--tlsverify",
            "--tlscert",
            &cert_file,
            "--tlskey",
            &key_file,
            "--tlscacert",
            "/nonexistent/ca.pem"
        ]),
        "open /nonexistent/ca.pem: no such file or directory\n"
    );
    assert_eq!(
        refused(&["--tls", "--tlscert", &cert_file]),
        "TLS Server private key must be present and valid\n"
    );

    let dir = std::env::temp_dir().join(format!("stan-rs-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("bad.conf");
    std::fs::write(
        &conf,
        format!("port: -1\n\ntls {{\n  cert_file: \"{cert_file}\"\n}}\n"),
    )
    .unwrap();
    assert_eq!(
        refused(&["-c", conf.to_str().unwrap()]),
        format!(
            "{}:3: missing 'key_file' in TLS configuration\n",
            conf.display()
        )
    );
}

/// SIGHUP with a new `tls { }`: new connections must speak TLS, the ones already
/// open go on in clear; taking it away again turns TLS off for new connections.
#[test]
fn reload_applies_tls_to_new_connections() {
    let dir = std::env::temp_dir().join(format!("stan-rs-tls-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("reload.conf");
    let port = free_port();
    let base = format!("listen: 127.0.0.1:{port}\n");
    std::fs::write(&conf, &base).unwrap();
    let server = Server::start(&["-c", conf.to_str().unwrap()]);
    let hangup = || unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let rt = runtime();

    let mut old = rt.block_on(async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert!(!read_info(&mut tcp).await.contains("tls_required"));
        tcp.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
        read_until(&mut tcp, "PONG\r\n")
            .await
            .expect("PONG in clear");
        tcp
    });

    std::fs::write(
        &conf,
        format!(
            "{base}tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            cert("server-cert.pem"),
            cert("server-key.pem")
        ),
    )
    .unwrap();
    hangup();
    server.wait_for("Reloaded: tls = enabled");
    server.wait_for("Reloaded server configuration");
    let (info, ponged) = rt.block_on(connect_and_ping(port, client_config(None)));
    assert!(info.contains("\"tls_required\":true"), "{info}");
    assert!(ponged);
    rt.block_on(async {
        old.write_all(b"PING\r\n").await.unwrap();
        read_until(&mut old, "PONG\r\n")
            .await
            .expect("the old connection stays in clear");
    });

    std::fs::write(&conf, &base).unwrap();
    hangup();
    server.wait_for("Reloaded: tls = disabled");
    server.wait_for("Reloaded server configuration");
    rt.block_on(async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert!(!read_info(&mut tcp).await.contains("tls_required"));
        tcp.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
        read_until(&mut tcp, "PONG\r\n")
            .await
            .expect("PONG in clear again");
    });
}

/// GET over TLS, verifying the server against the test CA; the whole response.
async fn https_get(port: u16, path: &str) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(client_config(None))
        .connect(name, tcp)
        .await
        .expect("the HTTPS listener completes the handshake");
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = Vec::new();
    tls.read_to_end(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}

/// `-ms` serves the monitoring endpoints over TLS with the client TLS certificate,
/// without asking for a client certificate even when clients must show one; the
/// HTTP listener runs beside it, and `/varz` names both ports.
#[test]
fn https_monitoring_beside_http() {
    let (port, http, https) = (free_port(), free_port(), free_port());
    let (p, m, ms) = (port.to_string(), http.to_string(), https.to_string());
    let (ca, crt, key) = (
        cert("ca.pem"),
        cert("server-cert.pem"),
        cert("server-key.pem"),
    );
    let _server = Server::start(&[
        "-a",
        "127.0.0.1",
        "-p",
        &p,
        "-m",
        &m,
        "-ms",
        &ms,
        "--tlsverify",
        "--tlscert",
        &crt,
        "--tlskey",
        &key,
        "--tlscacert",
        &ca,
    ]);
    runtime().block_on(async {
        let varz = https_get(https, "/varz").await;
        assert!(varz.starts_with("HTTP/1.0 200 OK"), "{varz}");
        assert!(varz.contains(&format!("\"http_port\": {http},")), "{varz}");
        assert!(
            varz.contains(&format!("\"https_port\": {https},")),
            "{varz}"
        );
        let serverz = https_get(https, "/streaming/serverz").await;
        assert!(
            serverz.contains("\"cluster_id\": \"test-cluster\""),
            "{serverz}"
        );
    });
    assert!(http_get(http, "/streaming/serverz").contains("\"cluster_id\": \"test-cluster\""));
}

#[test]
fn https_monitoring_needs_a_certificate() {
    let (port, https) = (free_port().to_string(), free_port().to_string());
    let stderr = refused(&["-a", "127.0.0.1", "-p", &port, "-ms", &https]);
    assert!(
        stderr.contains("[FTL] TLS cert and key required for HTTPS\n"),
        "{stderr}"
    );
}

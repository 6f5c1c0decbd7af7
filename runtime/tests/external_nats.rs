//! `-ns`: the streaming server without an embedded NATS server, connected to a real
//! external one (Debian's `nats-server`), with the credentials and TLS of its own
//! connections; clients talk to the external server.

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use stan_core::client::{StartAt, SubscribeOptions};
use stan_runtime::nkeys::{base64_url, encode_seed, KeyKind, NKey};
use stan_runtime::stan_client::{StanConn, StanOptions, StanSubscription};
use support::{fatal_line, free_port, run_refused, wait_for_port, Logged};

const NATS_SERVER: &str = "/usr/sbin/nats-server";

fn cert(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/certs");
    dir.join(name).to_string_lossy().into_owned()
}

/// A directory for one test's files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("stan-ns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server` on a free port with `extra` configuration, and its monitoring port.
struct Nats {
    proc: Logged,
    port: u16,
    http: u16,
    conf: String,
}

impl Nats {
    fn start(scratch: &Scratch, extra: &str) -> Nats {
        let (port, http) = (free_port(), free_port());
        let conf = scratch.file(
            "nats.conf",
            &format!("listen: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{http}\"\n{extra}\n"),
        );
        Nats::run(conf, port, http)
    }

    fn run(conf: String, port: u16, http: u16) -> Nats {
        let mut proc = Logged::spawn(Command::new(NATS_SERVER).args(["-c", &conf]));
        wait_for_port(&mut proc.child, port);
        Nats {
            proc,
            port,
            http,
            conf,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Names of the connections the server lists, sorted.
    fn connection_names(&self) -> Vec<String> {
        let body = http_get(self.http, "/connz");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut names: Vec<String> = doc["connections"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The streaming server's connections, as the NATS server lists them.
fn nss_names() -> Vec<String> {
    ["general", "hb", "send"]
        .iter()
        .map(|r| format!("_NSS-test-cluster-{r}"))
        .collect()
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// Starts `stan-server` with `args` and waits until it is ready.
fn streaming(args: &[&str]) -> Logged {
    let mut s = Logged::server(args);
    s.wait_for("Streaming Server is ready");
    s
}

fn refused(args: &[&str]) -> (i32, String) {
    let out = run_refused(Command::new(env!("CARGO_BIN_EXE_stan-server")).args(args));
    (out.status.code().unwrap_or(-1), fatal_line(&out))
}

async fn connect(nats: &Nats, client: &str) -> StanConn {
    StanConn::connect(
        &format!("127.0.0.1:{}", nats.port),
        "test-cluster",
        client,
        StanOptions::default(),
    )
    .await
    .expect("the streaming server answers through the external NATS server")
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
        ..SubscribeOptions::default()
    }
}

/// Publishes `n` messages on `foo` and reads them back on a fresh subscription.
async fn round_trip(nats: &Nats, client: &str, n: u8) {
    let conn = connect(nats, client).await;
    for i in 1..=n {
        conn.publish("foo", &[i]).await.unwrap();
    }
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
    let first = next(&mut sub).await;
    assert_eq!(first.data.len(), 1);
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_clients_of_the_external_server_and_survives_its_restart() {
    let scratch = Scratch::new("restart");
    let mut nats = Nats::start(&scratch, "");
    let http = free_port();
    let dir = scratch.0.join("store");
    let mut stan = streaming(&[
        "-ns",
        &nats.url(),
        "-m",
        &http.to_string(),
        "-st",
        "FILE",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    // No NATS server here: none of its startup lines.
    assert!(
        !stan.log.iter().any(|l| l.contains("Starting nats-server")
            || l.contains("Listening for client connections")
            || l.contains("Server is ready") && !l.contains("Streaming")),
        "{:#?}",
        stan.log
    );
    assert_eq!(nats.connection_names(), nss_names());
    let serverz: serde_json::Value =
        serde_json::from_str(&http_get(http, "/streaming/serverz")).unwrap();
    assert_eq!(serverz["cluster_id"], "test-cluster");
    assert!(
        http_get(http, "/metrics").contains("stan_clients"),
        "metrics served"
    );

    let conn = connect(&nats, "me").await;
    for i in 1..=6u8 {
        conn.publish("foo", &[i]).await.unwrap();
    }
    let mut sub = conn.subscribe("foo", durable()).await.unwrap();
    for seq in 1..=3u64 {
        let m = next(&mut sub).await;
        assert_eq!((m.sequence, m.data.clone()), (seq, vec![seq as u8]));
        sub.ack(seq).await.unwrap();
    }
    sub.close().await.unwrap();
    conn.close().await.unwrap();

    // The external server goes away and comes back on the same port.
    nats.proc.kill_9();
    stan.wait_for("connection \"_NSS-test-cluster-general\" has been disconnected: ");
    let (port, http_nats, conf) = (nats.port, nats.http, nats.conf.clone());
    drop(nats);
    let nats = Nats::run(conf, port, http_nats);
    let mut reconnected = Vec::new();
    while reconnected.len() < 3 {
        let line = stan
            .wait_for("reconnected to NATS Server at")
            .pop()
            .unwrap();
        let (_, text) = line
            .split_once("[INF] STREAM: connection ")
            .expect("an INF line");
        let (name, rest) = text.split_once(' ').unwrap();
        assert_eq!(
            rest,
            format!("reconnected to NATS Server at \"nats://127.0.0.1:{port}\"")
        );
        reconnected.push(name.trim_matches('"').to_string());
    }
    reconnected.sort();
    assert_eq!(reconnected, nss_names());
    assert_eq!(nats.connection_names(), nss_names());
    // Every subscription was restored: the durable resumes where it stopped.
    let conn = connect(&nats, "me").await;
    let mut sub = conn.subscribe("foo", durable()).await.unwrap();
    for seq in 4..=6u64 {
        let m = next(&mut sub).await;
        assert_eq!(m.sequence, seq);
        sub.ack(seq).await.unwrap();
    }
    conn.publish("foo", b"after").await.unwrap();
    assert_eq!(next(&mut sub).await.sequence, 7);
    conn.close().await.unwrap();

    // Reloading concerns an embedded NATS server only.
    stan.signal(libc::SIGHUP);
    stan.wait_for("[WRN] STREAM: Reload supported only for embedded NATS Server's configuration");
    stan.signal(libc::SIGINT);
    let log = stan.wait_for_exit();
    assert!(log.last().unwrap().contains("Shutting down."), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_the_internal_connection() {
    let scratch = Scratch::new("auth");
    let seed = stan_runtime::nkeys::encode_user_seed(&[9u8; 32]);
    let public = stan_runtime::nkeys::NKey::from_seed(&seed)
        .unwrap()
        .public_key()
        .to_string();
    let seed_file = scratch.file("user.nk", &format!("{seed}\n"));
    // Clients without credentials log in as the guest.
    let nats = Nats::start(
        &scratch,
        &format!(
            "authorization {{ users = [\n  {{ user: stan, password: s3cret }}\n  {{ nkey: {public} }}\n  {{ user: guest, password: guest }}\n] }}\nno_auth_user: guest\n"
        ),
    );
    let url = nats.url();

    // User and password from the command line.
    let stan = streaming(&["-ns", &url, "--user", "stan", "--pass", "s3cret"]);
    round_trip(&nats, "a", 2).await;
    drop(stan);

    // From the configuration file, and in the URL.
    let conf = scratch.file(
        "stan.conf",
        &format!("streaming {{\n  ns: \"{url}\"\n  username: stan\n  password: s3cret\n}}\n"),
    );
    drop(streaming(&["-sc", &conf]));
    let in_url = format!("nats://stan:s3cret@127.0.0.1:{}", nats.port);
    drop(streaming(&["-ns", &in_url]));

    // An NKey seed file.
    let conf = scratch.file(
        "nkey.conf",
        &format!("ns: \"{url}\"\nnkey_seed_file: \"{seed_file}\"\n"),
    );
    let stan = streaming(&["-sc", &conf]);
    round_trip(&nats, "b", 1).await;
    drop(stan);

    let missing = scratch.file(
        "missing.conf",
        &format!("ns: \"{url}\"\nnkey_seed_file: \"/nonexistent/x.nk\"\n"),
    );
    assert_eq!(
        refused(&["-sc", &missing]),
        (
            1,
            "STREAM: Failed to start: open /nonexistent/x.nk: no such file or directory".into()
        )
    );
    // The command line wins over the file: a wrong password there is refused.
    let conf = scratch.file(
        "wrong.conf",
        &format!("ns: \"{url}\"\nusername: stan\npassword: s3cret\n"),
    );
    assert_eq!(
        refused(&["-sc", &conf, "--user", "stan", "--pass", "wrong"]),
        (
            1,
            "STREAM: Failed to start: nats: authorization violation".into()
        )
    );
    let bad_seed = scratch.file("bad.nk", "SUAAAAAAAAAAAAAAAA\n");
    let conf = scratch.file(
        "bad.conf",
        &format!("ns: \"{url}\"\nnkey_seed_file: \"{bad_seed}\"\n"),
    );
    let (code, line) = refused(&["-sc", &conf]);
    assert_eq!(code, 1);
    assert!(
        line.starts_with("STREAM: Failed to start: nkeys: "),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_flags_and_url() {
    let scratch = Scratch::new("token");
    let nats = Nats::start(&scratch, "authorization { token: t0ken }\n");
    drop(streaming(&["-ns", &nats.url(), "--auth", "t0ken"]));
    // A list: the first server is not there, the second takes the token of its URL.
    let in_url = format!(
        "nats://127.0.0.1:{},nats://t0ken@127.0.0.1:{}",
        free_port(),
        nats.port
    );
    let stan = streaming(&["-ns", &in_url]);
    assert_eq!(nats.connection_names(), nss_names());
    drop(stan);
    assert_eq!(
        refused(&["-ns", &nats.url(), "--auth", "nope"]).1,
        "STREAM: Failed to start: nats: authorization violation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_external_server() {
    let scratch = Scratch::new("tls");
    // The server wants a client certificate from the test CA.
    let nats = Nats::start(
        &scratch,
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
            cert("server-cert.pem"),
            cert("server-key.pem"),
            cert("ca.pem")
        ),
    );
    let url = nats.url();
    let (ca, client_cert, client_key) = (
        cert("ca.pem"),
        cert("client-cert.pem"),
        cert("client-key.pem"),
    );
    let stan = streaming(&[
        "-ns",
        &url,
        "--tls_client_cert",
        &client_cert,
        "--tls_client_key",
        &client_key,
        "--tls_client_cacert",
        &ca,
    ]);
    assert_eq!(nats.connection_names(), nss_names());
    drop(stan);
    // The same from the configuration file, by another name for the server.
    let conf = scratch.file(
        "tls.conf",
        &format!(
            "streaming {{\nns: \"nats://localhost:{}\"\ntls {{\n  client_cert: \"{client_cert}\"\n  client_key: \"{client_key}\"\n  client_ca: \"{ca}\"\n  server_name: \"127.0.0.1\"\n}}\n}}\n",
            nats.port
        ),
    );
    drop(streaming(&["-sc", &conf]));
    // Without verification of the server, a client certificate is still needed.
    let stan = streaming(&[
        "-ns",
        &url,
        "-secure",
        "--tls_client_cert",
        &client_cert,
        "--tls_client_key",
        &client_key,
    ]);
    drop(stan);
    let conf = scratch.file(
        "skip.conf",
        &format!(
            "streaming {{\nns: \"{url}\"\ntls {{\n  client_cert: \"{client_cert}\"\n  client_key: \"{client_key}\"\n  skip_verify: true\n}}\n}}\n"
        ),
    );
    let stan = streaming(&["-sc", &conf]);
    assert!(
        stan.log.iter().any(|l| l.contains(
            "[WRN] STREAM: TLS certificate chain and hostname will not be verified. DO NOT USE IN PRODUCTION!"
        )),
        "{:#?}",
        stan.log
    );
    drop(stan);
    // A CA that does not vouch for the server, no TLS at all, no client certificate.
    let rogue = cert("rogue-cert.pem");
    let (code, line) = refused(&["-ns", &url, "--tls_client_cacert", &rogue]);
    assert_eq!(code, 1);
    assert!(line.starts_with("STREAM: Failed to start: tls: "), "{line}");
    assert_eq!(
        refused(&["-ns", &url]).1,
        "STREAM: Failed to start: nats: secure connection required"
    );
    let (code, line) = refused(&["-ns", &url, "-secure"]);
    assert_eq!(code, 1);
    assert!(line.starts_with("STREAM: Failed to start: "), "{line}");
}

#[test]
fn bad_values_stop_the_start() {
    for bad in ["localhost:4222", "nats://localhost", "nats//h:1"] {
        assert_eq!(
            refused(&["-ns", bad]),
            (1, format!("STREAM: Failed to start: malformed url: {bad}"))
        );
    }
    let port = free_port();
    assert_eq!(
        refused(&["-ns", &format!("nats://127.0.0.1:{port}")]),
        (
            1,
            "STREAM: Failed to start: nats: no servers available for connection".into()
        )
    );
    let (code, line) = refused(&[
        "-ns",
        &format!("nats://127.0.0.1:{port}"),
        "--tls_client_cacert",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "STREAM: Failed to start: open /nonexistent/ca.pem: no such file or directory"
    );
}

/// Fault tolerance over an external NATS server: the standby takes over the shared
/// FILE store when the active server dies, and serves what was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_tolerance_over_the_external_server() {
    let scratch = Scratch::new("ft");
    let nats = Nats::start(&scratch, "");
    let dir = scratch.0.join("store");
    let url = nats.url();
    let args = [
        "-ns",
        url.as_str(),
        "-st",
        "FILE",
        "--dir",
        dir.to_str().unwrap(),
        "--ft_group",
        "g",
    ];
    let mut active = streaming(&args);
    let mut standby = Logged::server(&args);
    standby.wait_for("Starting in standby mode");
    let conn = connect(&nats, "me").await;
    conn.publish("foo", b"kept").await.unwrap();
    conn.close().await.unwrap();
    active.kill_9();
    standby.wait_for("Server is active");
    standby.wait_for("Streaming Server is ready");
    let conn = connect(&nats, "me").await;
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
    assert_eq!(next(&mut sub).await.data, b"kept");
    conn.close().await.unwrap();
}

/// A JWT as NATS writes them, signed by `issuer`.
fn jwt(issuer: &NKey, claims: serde_json::Value) -> String {
    let header = base64_url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let signed = format!("{header}.{}", base64_url(claims.to_string().as_bytes()));
    let sig = issuer.sign(signed.as_bytes());
    format!("{signed}.{sig}")
}

fn key(kind: KeyKind, byte: u8) -> NKey {
    NKey::from_seed(&encode_seed(kind, &[byte; 32])).unwrap()
}

/// A credentials file (user JWT and seed) against a NATS server in operator mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_in_operator_mode() {
    let scratch = Scratch::new("creds");
    let operator = key(KeyKind::Operator, 1);
    let account = key(KeyKind::Account, 2);
    let op_jwt = jwt(
        &operator,
        serde_json::json!({
            "jti": "OPERATORJTI", "iat": 1_700_000_000, "name": "op",
            "iss": operator.public_key(), "sub": operator.public_key(),
            "nats": { "type": "operator", "version": 2 }
        }),
    );
    let account_jwt = jwt(
        &operator,
        serde_json::json!({
            "jti": "ACCOUNTJTI", "iat": 1_700_000_000, "name": "acc",
            "iss": operator.public_key(), "sub": account.public_key(),
            "nats": {
                "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1,
                            "exports": -1, "wildcards": true, "conn": -1, "leaf": -1 },
                "default_permissions": { "pub": {}, "sub": {} },
                "type": "account", "version": 2
            }
        }),
    );
    let creds = |signer: &NKey, byte: u8| {
        let seed = encode_seed(KeyKind::User, &[byte; 32]);
        let user = NKey::from_seed(&seed).unwrap();
        let user_jwt = jwt(
            signer,
            serde_json::json!({
                "jti": format!("USERJTI{byte}"), "iat": 1_700_000_000, "name": "stan",
                "iss": signer.public_key(), "sub": user.public_key(),
                "nats": { "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                          "type": "user", "version": 2 }
            }),
        );
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
    };
    let nats = Nats::start(
        &scratch,
        &format!(
            "operator: \"{op_jwt}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n}}\n",
            account.public_key()
        ),
    );
    let good = scratch.file("stan.creds", &creds(&account, 3));
    let conf = scratch.file(
        "stan.conf",
        &format!("ns: \"{}\"\ncredentials: \"{good}\"\n", nats.url()),
    );
    let stan = streaming(&["-sc", &conf]);
    assert_eq!(nats.connection_names(), nss_names());
    drop(stan);
    // A user of an account the server does not know.
    let stranger = key(KeyKind::Account, 4);
    let bad = scratch.file("bad.creds", &creds(&stranger, 5));
    let conf = scratch.file(
        "bad.conf",
        &format!("ns: \"{}\"\ncredentials: \"{bad}\"\n", nats.url()),
    );
    assert_eq!(
        refused(&["-sc", &conf]),
        (
            1,
            "STREAM: Failed to start: nats: authorization violation".into()
        )
    );
}

/// Partitioning over an external NATS server: each server serves its channels, and a
/// server claiming a channel already served fails to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioning_over_the_external_server() {
    let scratch = Scratch::new("partitions");
    let nats = Nats::start(&scratch, "");
    let url = nats.url();
    let conf = |name: &str, channel: &str| {
        scratch.file(
            name,
            &format!(
                "streaming {{\n  ns: \"{url}\"\n  partitioning: true\n  store_limits {{ channels {{ \"{channel}\": {{}} }} }}\n}}\n"
            ),
        )
    };
    let (a, b, again) = (
        conf("a.conf", "a"),
        conf("b.conf", "b"),
        conf("a2.conf", "a"),
    );
    let _a = streaming(&["-sc", &a]);
    let _b = streaming(&["-sc", &b]);
    let conn = connect(&nats, "me").await;
    conn.publish("a", b"to a").await.unwrap();
    conn.publish("b", b"to b").await.unwrap();
    let mut sub = conn
        .subscribe(
            "b",
            SubscribeOptions {
                start: StartAt::First,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.data, b"to b");
    conn.close().await.unwrap();
    let (code, line) = refused(&["-sc", &again]);
    assert_eq!(code, 1);
    assert!(
        line.starts_with(
            "STREAM: Failed to start: channel \"a\" causes conflict with channels on server "
        ),
        "{line}"
    );
}

/// A "NATS server" that answers each connection with `reply` and then waits.
fn fake_server(reply: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in listener.incoming().map_while(Result::ok) {
            let _ = s.write_all(reply);
            held.push(s);
        }
    });
    port
}

#[test]
fn a_server_speaking_garbage_stops_the_start() {
    let port = fake_server(b"HELLO THERE\r\n");
    assert_eq!(
        refused(&["-ns", &format!("nats://127.0.0.1:{port}")]),
        (
            1,
            "STREAM: Failed to start: nats: protocol exception, INFO not received".into()
        )
    );
    let port = fake_server(b"INFO {}\r\nGARBAGE\r\n");
    assert_eq!(
        refused(&["-ns", &format!("nats://127.0.0.1:{port}")]),
        (
            1,
            "STREAM: Failed to start: nats: unknown protocol operation".into()
        )
    );
}

/// A second server started with the cluster ID another one already serves on the
/// same NATS server finds it (PROTOCOL §3.12) and stops; the first goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_with_the_same_cluster_id_stops() {
    let scratch = Scratch::new("competitor");
    let nats = Nats::start(&scratch, "");
    let url = nats.url();
    let _first = streaming(&["-ns", url.as_str()]);
    let (code, line) = refused(&["-ns", url.as_str()]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "STREAM: Failed to start: discovered another streaming server with cluster ID \"test-cluster\""
    );
    let _other = streaming(&["-ns", url.as_str(), "-cid", "other-cluster"]);
    round_trip(&nats, "still-served", 3).await;
}

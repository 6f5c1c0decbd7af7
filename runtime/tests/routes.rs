//! NATS clustering on the real binary: stan-servers routed to each other and to the
//! NATS server of the system (`/usr/sbin/nats-server`), messages crossing the routes,
//! queue groups spanning servers, `/routez`, and STAN clients reaching the streaming
//! server through another server of the cluster.

#[path = "file_store_common.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempDir;
use stan_runtime::harness::monitor_json;
use stan_runtime::harness::raw::RawConn;
use stan_runtime::stan_client::{StanConn, StanOptions};
use support::{free_port, from_first, next_msg, run_refused, Logged};

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const PATIENCE: Duration = Duration::from_secs(30);

/// A server of the cluster: its client, monitoring and cluster ports.
struct Node {
    proc: Logged,
    port: u16,
    http: u16,
    cluster: u16,
}

impl Node {
    /// A stan-server with a cluster port, routed to `routes`, plus `args`.
    fn stan(routes: &[u16], args: &[&str]) -> Node {
        let (port, http, cluster) = (free_port(), free_port(), free_port());
        let routes = route_urls(routes);
        let (p, h, c) = (
            port.to_string(),
            http.to_string(),
            format!("nats://127.0.0.1:{cluster}"),
        );
        let mut all = vec!["-a", "127.0.0.1", "-p", &p, "-m", &h, "--cluster", &c];
        if !routes.is_empty() {
            all.extend(["--routes", routes.as_str()]);
        }
        all.extend(args);
        let mut proc = Logged::server(&all);
        proc.wait_for("Server is ready");
        Node {
            proc,
            port,
            http,
            cluster,
        }
    }

    /// The NATS server of the system, configured by a file in `dir`.
    fn nats_server(dir: &Path, routes: &[u16]) -> Node {
        assert!(
            Path::new(NATS_SERVER).exists(),
            "{NATS_SERVER} is missing: install the nats-server package to run these tests"
        );
        let (port, http, cluster) = (free_port(), free_port(), free_port());
        let conf = dir.join(format!("nats-{port}.conf"));
        let routes: Vec<String> = route_urls(routes)
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| format!("\"{r}\""))
            .collect();
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\nserver_name: gnatsd\n\
                 cluster {{\n  name: c1\n  listen: 127.0.0.1:{cluster}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ),
        )
        .unwrap();
        let mut proc =
            Logged::spawn(Command::new(NATS_SERVER).args(["-c", conf.to_str().unwrap()]));
        proc.wait_for("Server is ready");
        Node {
            proc,
            port,
            http,
            cluster,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn client(&self) -> RawConn {
        RawConn::handshake(&self.addr()).await.unwrap()
    }

    async fn routez(&self) -> serde_json::Value {
        monitor_json(self.http, "/routez?subs=1").await.unwrap()
    }

    /// Waits until the route to the server with ID `remote` carries interest in
    /// `sub` (`subject` or `subject queue`), as this server's `/routez` lists it.
    async fn wait_interest(&self, remote: &str, sub: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let doc = self.routez().await;
            let found = doc["routes"].as_array().into_iter().flatten().any(|r| {
                r["remote_id"] == remote
                    && r["subscriptions_list"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s == sub)
            });
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no interest in {sub:?} from {remote} in {doc:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn server_id(&self) -> String {
        let varz = monitor_json(self.http, "/varz").await.unwrap();
        varz["server_id"].as_str().unwrap().to_string()
    }
}

fn route_urls(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Publishes `payload` on `subject` and waits for the server's PONG, so that the
/// message left the publisher's server before the test goes on.
async fn publish(c: &mut RawConn, subject: &str, payload: &str) {
    c.send(format!("PUB {subject} {}\r\n{payload}\r\nPING\r\n", payload.len()).as_bytes())
        .await
        .unwrap();
    c.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
}

/// Reads until `payload` arrives; returns everything read, that message included.
async fn receive(c: &mut RawConn, payload: &str) -> String {
    let got = c
        .read_until(format!("\r\n{payload}\r\n").as_bytes(), PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{payload} not received: {e}"));
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stan_servers_carry_messages_both_ways() {
    let a = Node::stan(&[], &["-cid", "a-cluster", "--cluster_name", "east"]);
    let mut b = Node::stan(
        &[a.cluster],
        &["-cid", "b-cluster", "--cluster_name", "east"],
    );
    b.proc.wait_for("Route connection created");
    let (a_id, b_id) = (a.server_id().await, b.server_id().await);

    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    on_b.send(b"SUB to.b 1\r\nPING\r\n").await.unwrap();
    on_b.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    on_a.send(b"SUB to.a 1\r\nPING\r\n").await.unwrap();
    on_a.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    a.wait_interest(&b_id, "to.b").await;
    b.wait_interest(&a_id, "to.a").await;

    publish(&mut on_a, "to.b", "hello-b").await;
    let got = receive(&mut on_b, "hello-b").await;
    assert!(got.contains("MSG to.b 1 7\r\n"), "{got}");
    publish(&mut on_b, "to.a", "hello-a").await;
    let got = receive(&mut on_a, "hello-a").await;
    assert!(got.contains("MSG to.a 1 7\r\n"), "{got}");

    // Each side shows one route: B dialed it, A accepted it.
    let routez = b.routez().await;
    assert_eq!(routez["num_routes"], 1, "{routez:#}");
    let route = &routez["routes"][0];
    assert_eq!(route["remote_id"], a_id.as_str());
    assert_eq!(route["did_solicit"], true);
    assert_eq!(route["is_configured"], true);
    assert_eq!(route["port"], a.cluster);
    let routez = a.routez().await;
    assert_eq!(routez["routes"][0]["remote_id"], b_id.as_str());
    assert_eq!(routez["routes"][0]["did_solicit"], false);
    assert!(routez["routes"][0]["in_msgs"].as_u64().unwrap() >= 1);
    let varz = monitor_json(a.http, "/varz").await.unwrap();
    assert_eq!(varz["routes"], 1);
    assert_eq!(varz["cluster"]["name"], "east");
    assert_eq!(varz["cluster"]["cluster_port"], a.cluster);
    assert_eq!(varz["cluster"]["addr"], "127.0.0.1");
    assert_eq!(varz["cluster"]["auth_timeout"], 2);
    assert_eq!(varz["cluster"]["tls_timeout"], 2);
    let varz = monitor_json(b.http, "/varz").await.unwrap();
    let url = format!("127.0.0.1:{}", a.cluster);
    assert_eq!(varz["cluster"]["urls"], serde_json::json!([url]));
    // Routes are not clients.
    let connz = monitor_json(a.http, "/connz").await.unwrap();
    assert!(connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["port"] != b.cluster));
    // Logged after `Server is ready`, as the NATS server logs it.
    let mut a = a;
    let listening = format!("Listening for route connections on 127.0.0.1:{}", a.cluster);
    if !a.proc.log.iter().any(|l| l.contains(&listening)) {
        a.proc.wait_for(&listening);
    }
    let at = |text: &str| a.proc.log.iter().position(|l| l.contains(text));
    assert!(at("Server is ready") < at(&listening), "{:#?}", a.proc.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stan_client_on_the_standby_reaches_the_active_server() {
    let dir = TempDir::new("routes-ft");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let ft = [
        "-st",
        "FILE",
        "--dir",
        data,
        "--ft_group",
        "grp",
        "--cluster_name",
        "ft",
    ];
    let mut a = Node::stan(&[], &ft);
    a.proc.wait_for("Server is active");
    let mut b = Node::stan(&[a.cluster], &ft);
    b.proc.wait_for("Route connection created");
    if !b
        .proc
        .log
        .iter()
        .any(|l| l.contains("Starting in standby mode"))
    {
        b.proc.wait_for("Starting in standby mode");
    }

    let a_id = a.server_id().await;
    b.wait_interest(&a_id, "_STAN.discover.test-cluster").await;
    // The STAN client only knows B; its requests cross the route to A and the
    // replies come back the same way.
    let conn = StanConn::connect(&b.addr(), "test-cluster", "via-b", StanOptions::default())
        .await
        .expect("the client connects through the standby");
    conn.publish("orders", b"first").await.unwrap();
    let mut sub = from_first(&conn, "orders", None).await;
    let msg = next_msg(&mut sub).await;
    assert_eq!(msg.data, b"first");
    conn.close().await.unwrap();
    let clients = monitor_json(a.http, "/streaming/serverz").await.unwrap();
    assert_eq!(clients["clients"], 0, "the client closed on A");
    let storez = monitor_json(a.http, "/streaming/channelsz?channel=orders")
        .await
        .unwrap();
    assert_eq!(storez["msgs"], 1, "{storez:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stan_server_and_nats_server_route_to_each_other() {
    let dir = TempDir::new("routes-gnatsd");
    let mut g = Node::nats_server(dir.path(), &[]);
    // Both dial each other: one of the two connections is dropped as a duplicate.
    let s = Node::stan(&[g.cluster], &["--cluster_name", "c1"]);
    g.proc.wait_for("Route connection created");
    let (g_id, s_id) = (g.server_id().await, s.server_id().await);

    let mut on_g = g.client().await;
    let mut on_s = s.client().await;
    // Publishers of their own, so that waiting for their PONGs consumes nothing
    // the subscribers receive.
    let mut pub_g = g.client().await;
    let mut pub_s = s.client().await;
    on_s.send(b"SUB from.g 1\r\nSUB work.* q 2\r\nSUB end 3\r\nPING\r\n")
        .await
        .unwrap();
    on_s.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    on_g.send(b"SUB from.s 1\r\nSUB work.* q 2\r\nSUB end 3\r\nPING\r\n")
        .await
        .unwrap();
    on_g.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    g.wait_interest(&s_id, "from.g").await;
    g.wait_interest(&s_id, "work.*").await;
    g.wait_interest(&s_id, "end").await;
    s.wait_interest(&g_id, "from.s").await;
    s.wait_interest(&g_id, "work.*").await;

    publish(&mut pub_g, "from.g", "g-to-s").await;
    receive(&mut on_s, "g-to-s").await;
    publish(&mut pub_s, "from.s", "s-to-g").await;
    receive(&mut on_g, "s-to-g").await;
    // Headers cross as HMSG; a client that did not ask for them gets the body.
    let with_headers = |addr: String| async move {
        let mut c = RawConn::open(&addr).await.unwrap();
        c.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nPING\r\n")
            .await
            .unwrap();
        c.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
        c
    };
    let mut pub_g = with_headers(g.addr()).await;
    let mut pub_s = with_headers(s.addr()).await;
    let hdr = "NATS/1.0\r\nK: v\r\n\r\n";
    let body = "with-headers";
    pub_g
        .send(
            format!(
                "HPUB from.g {} {}\r\n{hdr}{body}\r\nPING\r\n",
                hdr.len(),
                hdr.len() + body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    pub_g.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    let got = receive(&mut on_s, body).await;
    assert!(got.contains("MSG from.g 1 12\r\n"), "{got}");
    pub_s
        .send(
            format!(
                "HPUB from.s {} {}\r\n{hdr}{body}\r\nPING\r\n",
                hdr.len(),
                hdr.len() + body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    pub_s.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    let got = receive(&mut on_g, body).await;
    assert!(got.contains("MSG from.s 1 12\r\n"), "{got}");

    // A queue group with a member on each server: every message once.
    for (publisher, name) in [(&mut pub_s, "s"), (&mut pub_g, "g")] {
        for i in 0..20 {
            publish(publisher, &format!("work.{i}"), &format!("job-{name}-{i}")).await;
        }
        publish(publisher, "end", &format!("end-{name}")).await;
    }
    let got_s = receive(&mut on_s, "end-g").await;
    let got_g = receive(&mut on_g, "end-g").await;
    for name in ["s", "g"] {
        for i in 0..20 {
            let job = format!("\r\njob-{name}-{i}\r\n");
            let n = got_s.matches(&job).count() + got_g.matches(&job).count();
            assert_eq!(n, 1, "job-{name}-{i} delivered {n} times");
        }
    }
    // This server keeps a message with its local member; the NATS server picks
    // among all members, so only the count is certain there.
    assert_eq!(
        got_s.matches("\r\njob-s-").count(),
        20,
        "local member first"
    );

    let routez = s.routez().await;
    assert_eq!(routez["num_routes"], 1, "{routez:#}");
    assert_eq!(routez["routes"][0]["remote_id"], g_id.as_str());
    assert_eq!(routez["routes"][0]["remote_name"], "gnatsd");
    let theirs = g.routez().await;
    assert_eq!(theirs["num_routes"], 1, "{theirs:#}");
    assert_eq!(theirs["routes"][0]["remote_id"], s_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_from_configuration_files() {
    let dir = TempDir::new("routes-files");
    let (a_cluster, b_cluster) = (free_port(), free_port());
    // One file with the streaming keys in their block.
    let a_conf = dir.join("a.conf");
    std::fs::write(
        &a_conf,
        format!(
            "cluster {{\n  name: files\n  listen: 127.0.0.1:{a_cluster}\n  \
             routes: [\"nats-route://127.0.0.1:{b_cluster}\"]\n}}\n\
             streaming {{\n  cluster_id: one\n}}\n"
        ),
    )
    .unwrap();
    // The NATS and streaming keys in files of their own.
    let b_nats = dir.join("b-nats.conf");
    std::fs::write(
        &b_nats,
        format!("cluster {{\n  name: files\n  host: 127.0.0.1\n  port: {b_cluster}\n}}\n"),
    )
    .unwrap();
    let b_stan = dir.join("b-stan.conf");
    std::fs::write(&b_stan, "cluster_id: two\n").unwrap();

    let start = |args: &[&str]| {
        let (port, http) = (free_port(), free_port());
        let (p, h) = (port.to_string(), http.to_string());
        let base = ["-a", "127.0.0.1", "-p", &p, "-m", &h];
        let mut proc = Logged::server(&[&base[..], args].concat());
        proc.wait_for("Server is ready");
        (proc, http)
    };
    let (mut a, a_http) = start(&["-c", a_conf.to_str().unwrap()]);
    let (mut b, b_http) = start(&[
        "-c",
        b_nats.to_str().unwrap(),
        "-sc",
        b_stan.to_str().unwrap(),
    ]);
    a.wait_for("Route connection created");
    b.wait_for("Route connection created");
    for (proc, port) in [(&a, a_cluster), (&b, b_cluster)] {
        assert!(proc
            .log
            .iter()
            .any(|l| l.ends_with("Cluster name is files")));
        assert!(proc.log.iter().any(|l| l.ends_with(&format!(
            "Listening for route connections on 127.0.0.1:{port}"
        ))));
    }
    let b_id = monitor_json(b_http, "/varz").await.unwrap()["server_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let routez = monitor_json(a_http, "/routez").await.unwrap();
        if routez["num_routes"] == 1 {
            assert_eq!(routez["routes"][0]["remote_id"], b_id.as_str());
            assert_eq!(routez["routes"][0]["did_solicit"], true, "{routez:#}");
            assert_eq!(routez["routes"][0]["is_configured"], true, "{routez:#}");
            break;
        }
        assert!(Instant::now() < deadline, "no route on A: {routez:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_learn_of_each_other_through_a_common_peer() {
    let b = Node::stan(&[], &["-cid", "b", "--cluster_name", "mesh"]);
    let a = Node::stan(&[b.cluster], &["-cid", "a", "--cluster_name", "mesh"]);
    let c = Node::stan(&[b.cluster], &["-cid", "c", "--cluster_name", "mesh"]);
    let (a_id, c_id) = (a.server_id().await, c.server_id().await);
    // Neither A nor C names the other; B tells them, and they route to each other.
    let mut on_c = c.client().await;
    on_c.send(b"SUB mesh 1\r\nPING\r\n").await.unwrap();
    on_c.read_until(b"PONG\r\n", PATIENCE).await.unwrap();
    a.wait_interest(&c_id, "mesh").await;
    let mut on_a = a.client().await;
    publish(&mut on_a, "mesh", "a-to-c").await;
    let got = receive(&mut on_c, "a-to-c").await;
    assert_eq!(got.matches("a-to-c").count(), 1, "one hop, once: {got}");
    let routez = c.routez().await;
    let learned = routez["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["remote_id"] == a_id.as_str())
        .unwrap_or_else(|| panic!("no route to A: {routez:#}"));
    assert_eq!(learned["is_configured"], false);
}

#[test]
fn unreadable_route_urls_are_refused_before_starting() {
    for (args, want) in [
        (
            vec!["--cluster", "nats://127.0.0.1:-1", "--routes", "nowhere"],
            "error parsing route url [\"nowhere\"]",
        ),
        (
            vec![
                "--cluster",
                "nats://127.0.0.1:-1",
                "--routes",
                "nats://host-only",
            ],
            "error parsing route url [\"nats://host-only\"]",
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stan-server"));
        let out = run_refused(cmd.args(&args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim_end(), want);
        // `-t` reports the same.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stan-server"));
        let out = run_refused(cmd.args(&args).arg("-t"));
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), want);
    }
}

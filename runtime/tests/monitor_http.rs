//! The monitoring port of a real `stan-server` process: the streaming endpoints seen by
//! a streaming client's activity, the HTTP conventions (JSONP, CORS, 404 texts) and
//! `/metrics` read by a Prometheus text-format parser.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::free_port;

use prometheus_parse::{Scrape, Value};
use stan_runtime::stan_client::{StanConn, StanOptions, StartAt, SubscribeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: only there so that a server that never answers fails the test instead of
/// hanging it.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(20);

/// Kills the server it started when the test ends, however it ends.
struct Server {
    child: Child,
    port: u16,
    http_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    start_server_with(&[])
}

fn start_server_with(extra: &[&str]) -> Server {
    let (port, http_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_stan-server"))
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &http_port.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stan-server starts");
    Server {
        child,
        port,
        http_port,
    }
}

struct HttpResponse {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A minimal HTTP/1.1 GET, enough for a server that answers with a length-delimited
/// body and closes on `Connection: close`.
async fn get(port: u16, target: &str) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

async fn get_json(port: u16, target: &str) -> serde_json::Value {
    let r = get(port, target).await.expect("request");
    assert_eq!(r.status, 200, "{target}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{target}: {e}: {}", r.body))
}

/// Polls until the monitoring port serves `serverz`, returning how long that took.
async fn wait_for_monitoring(server: &Server, started: Instant) -> Duration {
    loop {
        if let Ok(r) = get(server.http_port, "/streaming/serverz").await {
            if r.status == 200 {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < SAFETY_TIMEOUT,
            "the monitoring port never answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_endpoints_of_a_running_server() {
    let started = Instant::now();
    let server = start_server();
    let answered = wait_for_monitoring(&server, started).await;
    println!(
        "monitoring port answered {} ms after spawning stan-server",
        answered.as_millis()
    );

    let http = server.http_port;
    let conn = StanConn::connect(
        &format!("127.0.0.1:{}", server.port),
        "test-cluster",
        "monitor-client",
        StanOptions::default(),
    )
    .await
    .expect("streaming client connects");
    for i in 0..3 {
        conn.publish("orders", format!("order {i}").as_bytes())
            .await
            .expect("published");
    }
    let mut sub = conn
        .subscribe(
            "orders",
            SubscribeOptions {
                durable_name: Some("audit".into()),
                start: StartAt::First,
                ..SubscribeOptions::default()
            },
        )
        .await
        .expect("subscribed");
    for want in 1..=3 {
        let m = tokio::time::timeout(SAFETY_TIMEOUT, sub.next())
            .await
            .expect("delivery in time")
            .expect("a message");
        assert_eq!(m.sequence, want);
    }

    // serverz: counts, then the HTTP conventions on the raw response.
    let raw = get(http, "/streaming/serverz").await.unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.headers["content-type"], "application/json");
    assert_eq!(raw.headers["access-control-allow-origin"], "*");
    assert!(raw
        .body
        .starts_with("{\n  \"cluster_id\": \"test-cluster\",\n"));
    let serverz: serde_json::Value = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(serverz["state"], "STANDALONE");
    assert_eq!(serverz["version"], "0.25.6");
    assert_eq!(serverz["clients"], 1);
    assert_eq!(serverz["channels"], 1);
    assert_eq!(serverz["subscriptions"], 1);
    assert_eq!(serverz["total_msgs"], 3);
    assert_eq!(serverz["in_msgs"], 3);
    assert!(serverz["out_msgs"].as_u64().unwrap() >= 3);
    assert!(serverz["open_fds"].as_i64().unwrap() > 0);
    assert!(serverz["max_fds"].as_i64().is_some());
    let keys: Vec<&str> = serverz
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(!keys.contains(&"role") && !keys.contains(&"node_id"));

    let client = get_json(http, "/streaming/clientsz?client=monitor-client&subs=1").await;
    assert_eq!(client["subs_count"], 1);
    assert_eq!(
        client["subscriptions"]["orders"][0]["durable_name"],
        "audit"
    );
    let channel = get_json(http, "/streaming/channelsz?channel=orders").await;
    assert_eq!(channel["msgs"], 3);
    assert_eq!(
        (channel["first_seq"].clone(), channel["last_seq"].clone()),
        (1.into(), 3.into())
    );
    assert!(channel.get("subscriptions").is_none());
    let names = get_json(http, "/streaming/channelsz?limit=abc&offset=-3").await;
    assert_eq!(names["names"], serde_json::json!(["orders"]));
    assert_eq!(
        (names["offset"].clone(), names["limit"].clone()),
        (0.into(), 1024.into())
    );
    let storez = get_json(http, "/streaming/storez").await;
    assert_eq!(storez["type"], "MEMORY");
    assert_eq!(storez["total_msgs"], 3);

    // JSONP: the callback wraps the document and the CORS header goes away.
    let jsonp = get(http, "/streaming/serverz?callback=show").await.unwrap();
    assert_eq!(jsonp.status, 200);
    assert_eq!(jsonp.headers["content-type"], "application/javascript");
    assert!(!jsonp.headers.contains_key("access-control-allow-origin"));
    assert!(jsonp.body.starts_with("show({\n") && jsonp.body.ends_with("})"));

    let empty = get(http, "/streaming/serverz?callback=").await.unwrap();
    assert_eq!(empty.headers["content-type"], "application/json");
    // `subs` is read as an integer, so `01` asks for subscriptions too.
    let with_subs = get_json(http, "/streaming/channelsz?subs=01").await;
    assert_eq!(with_subs["channels"][0]["subs_count"], 1);

    // 404s: unknown client and channel, and paths that only nearly match.
    for (target, text) in [
        (
            "/streaming/clientsz?client=nobody",
            "Client nobody not found\n",
        ),
        (
            "/streaming/channelsz?channel=nowhere&subs=1",
            "Channel nowhere not found\n",
        ),
        ("/streaming/serverz/", "404 page not found\n"),
        ("/streaming/nothing", "404 page not found\n"),
    ] {
        let r = get(http, target).await.unwrap();
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.body, text, "{target}");
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    }

    let ft = get(http, "/streaming/isFTActive").await.unwrap();
    assert_eq!((ft.status, ft.body.as_str()), (204, ""));
    let index = get(http, "/streaming").await.unwrap();
    assert_eq!(index.status, 200);
    for link in ["serverz", "storez", "clientsz", "channelsz"] {
        assert!(
            index.body.contains(&format!("./streaming/{link}")),
            "{link}"
        );
    }
    let routez = get_json(http, "/routez").await;
    assert_eq!(routez["num_routes"], 0);
    assert_eq!(routez["routes"], serde_json::json!([]));
    assert!(routez["now"].as_str().unwrap().ends_with('Z'));

    // /metrics through a real text-format parser.
    let metrics = get(http, "/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let scrape = Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let value = |name: &str, channel: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("channel") == channel)
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no sample {name} {channel:?}"))
    };
    assert_eq!(value("stan_clients", None), Value::Gauge(1.0));
    assert_eq!(value("stan_subscriptions", None), Value::Gauge(1.0));
    assert_eq!(value("stan_channels", None), Value::Gauge(1.0));
    assert_eq!(value("stan_in_msgs_total", None), Value::Counter(3.0));
    assert_eq!(
        value("stan_channel_msgs", Some("orders")),
        Value::Gauge(3.0)
    );
    assert_eq!(
        value("stan_channel_subscriptions", Some("orders")),
        Value::Gauge(1.0)
    );
    assert!(matches!(value("stan_channel_pending", Some("orders")), Value::Gauge(p) if p <= 3.0));
    assert!(matches!(value("stan_nats_in_msgs_total", None), Value::Counter(n) if n >= 3.0));
    assert!(matches!(value("stan_connections", None), Value::Gauge(n) if n >= 1.0));
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "stan_info")
        .unwrap();
    assert_eq!(info.labels.get("cluster_id"), Some("test-cluster"));
    for s in &scrape.samples {
        assert!(
            scrape.docs.contains_key(&s.metric),
            "no HELP for {}",
            s.metric
        );
    }

    conn.close().await.expect("closed");
    let after = get_json(http, "/streaming/serverz").await;
    assert_eq!(after["clients"], 0);
    // The durable stays, offline, after its client left.
    assert_eq!(after["subscriptions"], 1);
    let subs = get_json(http, "/streaming/channelsz?subs=1").await;
    assert_eq!(subs["channels"][0]["subscriptions"][0]["is_offline"], true);
    drop(server);
}

/// `http_base_path`: the NATS endpoints and `/metrics` answer under it and nowhere
/// else; the streaming endpoints stay at the root, as the Go server registers them.
#[tokio::test(flavor = "multi_thread")]
async fn endpoints_under_the_http_base_path() {
    let dir = std::env::temp_dir().join(format!("stan-rs-base-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, "http_base_path: \"monitor/\"\n").unwrap();
    let server = start_server_with(&["-c", conf.to_str().unwrap()]);
    wait_for_monitoring(&server, Instant::now()).await;
    let http = server.http_port;

    for path in [
        "/monitor/varz",
        "/monitor/connz",
        "/monitor/subsz",
        "/monitor/subscriptionsz",
        "/monitor/routez",
        "/monitor/healthz",
        "/streaming/serverz",
        "/streaming/storez",
        "/streaming/clientsz",
        "/streaming/channelsz",
    ] {
        get_json(http, path).await;
    }
    for path in [
        "/varz",
        "/connz",
        "/healthz",
        "/metrics",
        "/",
        "/monitor/",
        "/monitor/streaming/serverz",
        "/monitor/streaming",
    ] {
        let r = get(http, path).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "404 page not found\n"),
            "{path}"
        );
    }
    let metrics = get(http, "/monitor/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("stan_"), "{}", metrics.body);
    let index = get(http, "/monitor").await.unwrap();
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains("href=\"./monitor/varz\""),
        "{}",
        index.body
    );
    let streaming = get(http, "/streaming").await.unwrap();
    assert!(streaming.body.contains("href=\"./streaming/serverz\""));

    // `/varz` shows the path as written, and counts requests by endpoint.
    let varz = get_json(http, "/monitor/varz").await;
    assert_eq!(varz["http_base_path"], "monitor/");
    assert_eq!(varz["http_req_stats"]["/varz"], 2);
    assert_eq!(varz["http_req_stats"]["/"], 1);
    assert_eq!(varz["http_req_stats"]["/healthz"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

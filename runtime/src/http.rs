//! The monitoring HTTP listener (`-m/--http_port`): the embedded NATS server's
//! endpoints, the streaming endpoints under `/streaming` (OPERATIONS §4) and `/metrics`.
//!
//! Handlers never touch the node directly: each request asks the driver for a document
//! built on its own task, so monitoring sees a consistent state between batches.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use stan_core::nats::monitor::{self, ConnzQuery, Context, SubszQuery};
use stan_core::node::Node;
use stan_core::streaming::monitor::{
    self as stan_monitor, lenient_int, ChannelszQuery, ClientszQuery, NotFound, Page,
};
use stan_core::streaming::Streaming;
use stan_core::timefmt::rfc3339_nanos;
use stan_core::Now;
use tokio::net::TcpListener;

use crate::driver::DriverHandle;
use crate::{metrics, process};

/// What the HTTP handlers share.
pub struct HttpState {
    pub driver: DriverHandle,
    pub start_wall_ns: i64,
    pub http_host: String,
    pub http_port: u16,
    pub req_stats: Mutex<BTreeMap<String, u64>>,
}

/// Serves monitoring requests until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

/// What a handler run on the driver task produced.
enum Answer {
    Json(Vec<u8>),
    /// A plain-text error body (without its trailing newline) and its status.
    Error(StatusCode, String),
}

async fn route(state: &HttpState, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    // An empty `callback=` means plain JSON, as an absent one does.
    let callback = query.get("callback").filter(|c| !c.is_empty()).cloned();
    let known = matches!(
        path.as_str(),
        "/" | "/varz" | "/connz" | "/routez" | "/subsz" | "/subscriptionsz" | "/healthz"
    );
    if known {
        *state
            .req_stats
            .lock()
            .expect("stats lock")
            .entry(path.clone())
            .or_insert(0) += 1;
    }
    let answer = match path.as_str() {
        "/" => return html(INDEX),
        "/streaming" => return html(STREAMING_INDEX),
        "/healthz" => {
            return json(
                StatusCode::OK,
                br#"{"status":"ok"}"#.to_vec(),
                callback.as_ref(),
            );
        }
        // Fault tolerance is not built: this server is never the FT active one.
        "/streaming/isFTActive" => return empty(StatusCode::NO_CONTENT),
        "/metrics" => {
            let snapshot = state
                .driver
                .inspect(|node, _| metrics::Snapshot::take(node))
                .await;
            return match snapshot {
                Some(s) => plain(StatusCode::OK, metrics::CONTENT_TYPE, metrics::render(&s)),
                None => shutting_down(),
            };
        }
        "/varz" => {
            let ctx = context(state);
            state
                .driver
                .inspect(move |node, now| {
                    Answer::Json(to_json(&monitor::varz(node.nats(), &with_now(ctx, now))))
                })
                .await
        }
        "/connz" => {
            let ctx = context(state);
            let q = ConnzQuery {
                sort: query.get("sort").cloned().unwrap_or_default(),
                subs: matches!(
                    query.get("subs").map(String::as_str),
                    Some("true" | "1" | "detail")
                ),
                offset: int(&query, "offset"),
                limit: int(&query, "limit"),
                cid: query.get("cid").and_then(|c| c.parse().ok()),
            };
            state
                .driver
                .inspect(move |node, now| {
                    Answer::Json(to_json(&monitor::connz(
                        node.nats(),
                        &with_now(ctx, now),
                        &q,
                    )))
                })
                .await
        }
        "/subsz" | "/subscriptionsz" => {
            let ctx = context(state);
            let q = SubszQuery {
                subs: matches!(
                    query.get("subs").map(String::as_str),
                    Some("true" | "1" | "detail")
                ),
                offset: int(&query, "offset"),
                limit: int(&query, "limit"),
                test: query.get("test").cloned(),
            };
            state
                .driver
                .inspect(move |node, now| {
                    Answer::Json(to_json(&monitor::subsz(
                        node.nats(),
                        &with_now(ctx, now),
                        &q,
                    )))
                })
                .await
        }
        "/routez" => {
            if let Err(e) = routez_subs(&query) {
                return plain(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", e);
            }
            state
                .driver
                .inspect(|node, now| document(&routez(node, now)))
                .await
        }
        "/streaming/serverz" => match fds() {
            Ok(fds) => {
                on_streaming(state, fds, |s, ctx| {
                    document(&stan_monitor::serverz(s, ctx))
                })
                .await
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        },
        "/streaming/storez" => {
            on_streaming(state, (0, 0), |s, ctx| {
                document(&stan_monitor::storez(s, ctx))
            })
            .await
        }
        "/streaming/clientsz" => {
            let q = ClientszQuery {
                client: query.get("client").cloned().unwrap_or_default(),
                subs: subs_option(&query),
                page: page(&query),
            };
            on_streaming(state, (0, 0), move |s, ctx| {
                found(stan_monitor::clientsz(s, ctx, &q))
            })
            .await
        }
        "/streaming/channelsz" => {
            let q = ChannelszQuery {
                channel: query.get("channel").cloned().unwrap_or_default(),
                subs: subs_option(&query),
                page: page(&query),
            };
            on_streaming(state, (0, 0), move |s, ctx| {
                found(stan_monitor::channelsz(s, ctx, &q))
            })
            .await
        }
        _ => return page_not_found(),
    };
    match answer {
        Some(Answer::Json(b)) => json(StatusCode::OK, b, callback.as_ref()),
        Some(Answer::Error(status, text)) => error(status, &text),
        None => shutting_down(),
    }
}

/// Builds a streaming document on the driver task, with the process's file descriptors
/// (`(0, 0)` for documents that do not show them). A node without the streaming server
/// has no streaming endpoints.
async fn on_streaming<F>(state: &HttpState, (open_fds, max_fds): (i64, i64), f: F) -> Option<Answer>
where
    F: FnOnce(&Streaming, &stan_monitor::Context) -> Answer + Send + 'static,
{
    let utc_offset_secs = process::utc_offset_secs();
    let start_wall_ns = state.start_wall_ns;
    state
        .driver
        .inspect(move |node, now| match node.streaming() {
            Some(s) => {
                let ctx = stan_monitor::Context {
                    nats: Context {
                        now,
                        utc_offset_secs,
                        start_wall_ns,
                        ..Context::default()
                    },
                    open_fds,
                    max_fds,
                };
                f(s, &ctx)
            }
            None => Answer::Error(StatusCode::NOT_FOUND, "404 page not found".into()),
        })
        .await
}

fn document<T: Serialize>(doc: &T) -> Answer {
    Answer::Json(stan_monitor::to_json(doc))
}

fn found<T: Serialize>(doc: Result<T, NotFound>) -> Answer {
    match doc {
        Ok(doc) => document(&doc),
        Err(NotFound(text)) => Answer::Error(StatusCode::NOT_FOUND, text),
    }
}

/// `subs` counts only when it reads as the integer 1 (`01` and `+1` do too).
fn subs_option(q: &BTreeMap<String, String>) -> bool {
    q.get("subs").is_some_and(|v| lenient_int(v) == 1)
}

fn page(q: &BTreeMap<String, String>) -> Page {
    let get = |k: &str| q.get(k).map_or(0, |v| lenient_int(v));
    Page::new(get("offset"), get("limit"))
}

/// Open file descriptors and their soft limit. Without `/proc` (not Linux) both are 0,
/// which leaves them out of `serverz`; a `/proc` that cannot be read is an error.
fn fds() -> Result<(i64, i64), String> {
    if !std::path::Path::new("/proc/self").exists() {
        return Ok((0, 0));
    }
    let open = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("Error getting file descriptors len: {e}"))?
        .count();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "Error getting process limits: {}",
            std::io::Error::last_os_error()
        ));
    }
    // "unlimited" reads as the largest unsigned value, which a signed int shows as -1.
    let max = if lim.rlim_cur == libc::RLIM_INFINITY {
        -1
    } else {
        i64::try_from(lim.rlim_cur).unwrap_or(-1)
    };
    Ok((i64::try_from(open).unwrap_or(i64::MAX), max))
}

/// `/routez` of a server that has no cluster port and so never has routes.
#[derive(Serialize)]
struct Routez {
    server_id: String,
    /// Only a configured name; the generated default is not shown here.
    server_name: String,
    now: String,
    num_routes: usize,
    routes: Vec<serde_json::Value>,
}

fn routez(node: &Node, now: Now) -> Routez {
    let nats = node.nats();
    Routez {
        server_id: nats.server_id().to_string(),
        server_name: nats.config().server_name.clone().unwrap_or_default(),
        // The NATS server stamps this document in UTC, unlike the streaming ones.
        now: rfc3339_nanos(now.wall_ns, 0),
        num_routes: 0,
        routes: Vec::new(),
    }
}

/// `subs` of `/routez` must be `detail` or a boolean in Go's spellings.
fn routez_subs(q: &BTreeMap<String, String>) -> Result<(), String> {
    match q.get("subs").map(String::as_str) {
        None | Some("") => Ok(()),
        Some(v) if v.eq_ignore_ascii_case("detail") => Ok(()),
        Some(
            "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false"
            | "False",
        ) => Ok(()),
        Some(v) => Err(format!(
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing {}: invalid syntax",
            serde_json::to_string(v).unwrap_or_default()
        )),
    }
}

/// Context of the NATS documents, whose times the NATS server gives in UTC.
fn context(state: &HttpState) -> Context {
    let p = process::sample();
    Context {
        utc_offset_secs: 0,
        start_wall_ns: state.start_wall_ns,
        mem: p.rss_bytes,
        cpu: p.cpu_percent,
        cores: p.cores,
        http_host: state.http_host.clone(),
        http_port: state.http_port,
        http_req_stats: state.req_stats.lock().expect("stats lock").clone(),
        config_load_wall_ns: state.start_wall_ns,
        ..Context::default()
    }
}

fn with_now(mut ctx: Context, now: Now) -> Context {
    ctx.now = now;
    ctx
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("monitoring documents serialize")
}

/// Go's lenient integer parsing of query parameters: anything unparsable is 0.
fn int(q: &BTreeMap<String, String>, key: &str) -> usize {
    q.get(key)
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |v| v.max(0) as usize)
}

/// Query parameters; a repeated key keeps its first value, as Go's `Query().Get` does.
fn parse_query(q: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kv in q.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(status: StatusCode, body: Vec<u8>, callback: Option<&String>) -> Reply {
    let mut resp = match callback {
        Some(cb) => {
            let mut b = format!("{cb}(").into_bytes();
            b.extend_from_slice(&body);
            b.push(b')');
            let mut r = Response::new(Full::new(Bytes::from(b)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/javascript"),
            );
            r
        }
        None => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            r
        }
    };
    *resp.status_mut() = status;
    resp
}

/// An error as Go's `http.Error` writes it: plain text, a trailing newline, and no
/// content sniffing.
fn error(status: StatusCode, text: &str) -> Reply {
    let mut r = plain(status, "text/plain; charset=utf-8", format!("{text}\n"));
    r.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

fn page_not_found() -> Reply {
    error(StatusCode::NOT_FOUND, "404 page not found")
}

fn shutting_down() -> Reply {
    error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down")
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    *r.status_mut() = status;
    r
}

fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn html(body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

const INDEX: &str = r#"<html lang="en">
<head><title>stan-rs monitoring</title></head>
<body>
<a href="./varz">General</a><br/>
<a href="./connz">Connections</a><br/>
<a href="./routez">Routes</a><br/>
<a href="./subsz">Subscriptions</a><br/>
<a href="./healthz">Health</a><br/>
<a href="./streaming">Streaming</a><br/>
<a href="./metrics">Metrics</a><br/>
</body>
</html>
"#;

const STREAMING_INDEX: &str = r#"<html lang="en">
<head><title>stan-rs streaming monitoring</title></head>
<body>
<a href="./streaming/serverz">server</a><br/>
<a href="./streaming/storez">store</a><br/>
<a href="./streaming/clientsz">clients</a><br/>
<a href="./streaming/channelsz">channels</a><br/>
<br/>
<a href="https://docs.nats.io/legacy/stan/intro/monitoring">help</a>
</body>
</html>
"#;

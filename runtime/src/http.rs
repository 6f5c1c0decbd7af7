//! The monitoring HTTP listener (`-m/--http_port`).
//!
//! Handlers never touch the node directly: each request asks the driver for a document
//! built on its own task, so monitoring sees a consistent state between batches.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use stan_core::nats::monitor::{self, ConnzQuery, Context, SubszQuery};
use tokio::net::TcpListener;

use crate::driver::DriverHandle;
use crate::process;

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

async fn route(state: &HttpState, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let known = matches!(
        path.as_str(),
        "/" | "/varz" | "/connz" | "/subsz" | "/subscriptionsz" | "/healthz"
    );
    if known {
        *state
            .req_stats
            .lock()
            .expect("stats lock")
            .entry(path.clone())
            .or_insert(0) += 1;
    }
    let ctx = context(state);
    let body = match path.as_str() {
        "/" => return html(INDEX),
        "/healthz" => {
            return json(
                StatusCode::OK,
                br#"{"status":"ok"}"#.to_vec(),
                query.get("callback"),
            );
        }
        "/varz" => {
            state
                .driver
                .inspect(move |node, now| to_json(&monitor::varz(node.nats(), &with_now(ctx, now))))
                .await
        }
        "/connz" => {
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
                    to_json(&monitor::connz(node.nats(), &with_now(ctx, now), &q))
                })
                .await
        }
        "/subsz" | "/subscriptionsz" => {
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
                    to_json(&monitor::subsz(node.nats(), &with_now(ctx, now), &q))
                })
                .await
        }
        _ => return text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    match body {
        Some(b) => json(StatusCode::OK, b, query.get("callback")),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down\n"),
    }
}

fn context(state: &HttpState) -> Context {
    let p = process::sample();
    Context {
        utc_offset_secs: process::utc_offset_secs(),
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

fn with_now(mut ctx: Context, now: stan_core::Now) -> Context {
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

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
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

fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
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
<a href="./subsz">Subscriptions</a><br/>
<a href="./healthz">Health</a><br/>
</body>
</html>
"#;

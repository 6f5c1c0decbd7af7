//! The monitoring HTTP listener (`-m/--http_port`): the embedded NATS server's
//! endpoints, the streaming endpoints under `/streaming` (OPERATIONS §4) and `/metrics`.
//!
//! Handlers never touch the node directly: each request asks the driver for a document
//! built on its own task, so monitoring sees a consistent state between batches. What
//! each path and query answers is decided in [`routes`], without HTTP types or IO;
//! this file samples the process and speaks HTTP.

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
use stan_core::nats::monitor::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::driver::DriverHandle;
use crate::{metrics, process};

pub(crate) mod routes;

use routes::{Env, Needs, Reply, Route};

/// What the HTTP handlers share.
pub struct HttpState {
    pub driver: DriverHandle,
    pub start_wall_ns: i64,
    pub http_host: String,
    pub http_port: u16,
    pub https_port: u16,
    /// `http_base_path`, normalized ([`routes::normalize_base_path`]).
    pub base_path: String,
    pub req_stats: Mutex<BTreeMap<String, u64>>,
}

/// Serves monitoring requests until the task is dropped; over TLS when `tls` is
/// given (the HTTPS listener).
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                // A failed handshake concerns nobody but that browser or scraper.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve_connection(stream, state).await;
                    }
                }
                None => serve_connection(stream, state).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, state: Arc<HttpState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

type HttpReply = Response<Full<Bytes>>;

async fn route(state: &HttpState, req: Request<Incoming>) -> HttpReply {
    let path = req.uri().path();
    if let Some(endpoint) =
        routes::nats_path(&state.base_path, path).filter(|p| routes::is_counted(p))
    {
        *state
            .req_stats
            .lock()
            .expect("stats lock")
            .entry(endpoint.to_string())
            .or_insert(0) += 1;
    }
    let request = match routes::route(&state.base_path, path, req.uri().query().unwrap_or("")) {
        Route::Done(reply) => return http_reply(reply),
        Route::Node(request) => request,
    };
    let env = sample(state, request.needs());
    let reply = state
        .driver
        .inspect(move |node, now| request.answer(node, now, &env))
        .await;
    match reply {
        Some(reply) => http_reply(reply),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"),
    }
}

/// Samples what the request's document shows of the process, and only that.
fn sample(state: &HttpState, needs: Needs) -> Env {
    Env {
        nats: match needs {
            Needs::Process => context(state),
            _ => Context::default(),
        },
        utc_offset_secs: process::utc_offset_secs(),
        start_wall_ns: state.start_wall_ns,
        fds: match needs {
            Needs::Fds => fds(),
            _ => Ok((0, 0)),
        },
    }
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
        https_port: state.https_port,
        http_req_stats: state.req_stats.lock().expect("stats lock").clone(),
        config_load_wall_ns: state.start_wall_ns,
        ..Context::default()
    }
}

fn http_reply(reply: Reply) -> HttpReply {
    match reply {
        Reply::Html(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Reply::Json { body, callback } => json(body, callback),
        Reply::Metrics(text) => plain(StatusCode::OK, metrics::CONTENT_TYPE, text),
        Reply::Error(status, text) => error(status_code(status), &text),
        Reply::Plain(status, text) => plain(status_code(status), "text/plain; charset=utf-8", text),
        Reply::Empty(status) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = status_code(status);
            r
        }
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON document, or JSONP (without the CORS header) when a callback is asked for.
fn json(body: Vec<u8>, callback: Option<String>) -> HttpReply {
    match callback {
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
    }
}

/// An error as Go's `http.Error` writes it: plain text, a trailing newline, and no
/// content sniffing.
fn error(status: StatusCode, text: &str) -> HttpReply {
    let mut r = plain(status, "text/plain; charset=utf-8", format!("{text}\n"));
    r.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> HttpReply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    *r.status_mut() = status;
    r
}

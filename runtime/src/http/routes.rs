//! The monitoring endpoints as pure functions: a path and a query string become a
//! [`Route`], and a [`Request`] that needs the node becomes a [`Reply`] given the node,
//! the time and the facts about the process sampled for it ([`Env`]). No HTTP types
//! and no IO here, so that the fuzz target runs exactly what the listener runs.

use std::collections::BTreeMap;

use serde::Serialize;
use stan_core::nats::monitor::{self, ConnzQuery, Context, SubszQuery};
use stan_core::node::Node;
use stan_core::streaming::monitor::{
    self as stan_monitor, lenient_int, ChannelszQuery, ClientszQuery, NotFound, Page,
};
use stan_core::streaming::Streaming;
use stan_core::Now;

use crate::metrics;

/// What a monitoring request is answered with, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with an HTML page.
    Html(String),
    /// 200 with a JSON document, wrapped in `callback(...)` when one was asked for.
    Json {
        body: Vec<u8>,
        callback: Option<String>,
    },
    /// 200 with the Prometheus text format.
    Metrics(String),
    /// An error as Go's `http.Error` writes it; the text has no trailing newline.
    Error(u16, String),
    /// A plain-text body, as written, with its status.
    Plain(u16, String),
    /// A status without a body.
    Empty(u16),
}

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// Answered from the request alone.
    Done(Reply),
    /// Answered by [`Request::answer`] on the driver task.
    Node(Request),
}

/// A request for a document built from the node.
#[derive(Debug)]
pub struct Request {
    doc: Doc,
    callback: Option<String>,
}

#[derive(Debug)]
enum Doc {
    Varz,
    Connz(ConnzQuery),
    Subsz(SubszQuery),
    /// With each route's subscriptions when true.
    Routez(bool),
    Metrics,
    Serverz,
    Storez,
    Clientsz(ClientszQuery),
    Channelsz(ChannelszQuery),
    IsFtActive,
}

/// What a document needs from outside the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// The NATS documents show memory, CPU and the request counts.
    Process,
    /// `serverz` shows the open file descriptors.
    Fds,
}

/// Facts about the process, sampled off the driver task for one request.
#[derive(Debug, Clone)]
pub struct Env {
    /// Context of the NATS documents (its `now` is replaced by the driver's).
    pub nats: Context,
    /// The local time zone, for the streaming documents' timestamps.
    pub utc_offset_secs: i32,
    pub start_wall_ns: i64,
    /// Open file descriptors and their soft limit, or why they could not be read.
    pub fds: Result<(i64, i64), String>,
}

/// The streaming server's endpoints. It registers them as they are, without the NATS
/// server's base path, so they stay at the root whatever `http_base_path` says.
const STREAMING_PATHS: [&str; 6] = [
    "/streaming",
    "/streaming/serverz",
    "/streaming/storez",
    "/streaming/clientsz",
    "/streaming/channelsz",
    "/streaming/isFTActive",
];

/// `http_base_path` as the NATS server reads it: `/` when empty, a leading `/` added,
/// then cleaned as Go's `path.Clean` does (no trailing `/`, no `.` or `..` elements).
pub fn normalize_base_path(written: &str) -> String {
    if written.is_empty() {
        return "/".into();
    }
    let rooted = if written.starts_with('/') {
        written.to_string()
    } else {
        format!("/{written}")
    };
    crate::config_file::clean_path(&rooted)
}

/// The NATS endpoint that `path` names under the normalized base path `base`, as the
/// NATS server registers them: `<base>/varz` and so on, and its index at `<base>`
/// itself (not `<base>/`). `/metrics` lives there too.
pub fn nats_path<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    if base == "/" {
        return Some(path);
    }
    if path == base {
        return Some("/");
    }
    path.strip_prefix(base)
        .filter(|rest| rest.starts_with('/') && *rest != "/")
}

/// The path names counted in `/varz`'s `http_req_stats`, as the NATS server counts
/// them: without the base path.
pub fn is_counted(path: &str) -> bool {
    matches!(
        path,
        "/" | "/varz" | "/connz" | "/routez" | "/subsz" | "/subscriptionsz" | "/healthz"
    )
}

/// Reads a request's path and query string; `base` is the normalized
/// `http_base_path` ([`normalize_base_path`]).
pub fn route(base: &str, path: &str, query: &str) -> Route {
    let endpoint = if STREAMING_PATHS.contains(&path) {
        path
    } else {
        match nats_path(base, path) {
            Some(p) if !STREAMING_PATHS.contains(&p) => p,
            _ => return Route::Done(page_not_found()),
        }
    };
    let query = parse_query(query);
    // An empty `callback=` means plain JSON, as an absent one does.
    let callback = query.get("callback").filter(|c| !c.is_empty()).cloned();
    let doc = match endpoint {
        "/" => return Route::Done(Reply::Html(index(base))),
        "/streaming" => return Route::Done(Reply::Html(STREAMING_INDEX.into())),
        "/healthz" => {
            return Route::Done(Reply::Json {
                body: br#"{"status":"ok"}"#.to_vec(),
                callback,
            })
        }
        "/streaming/isFTActive" => Doc::IsFtActive,
        "/metrics" => Doc::Metrics,
        "/varz" => Doc::Varz,
        "/connz" => Doc::Connz(ConnzQuery {
            sort: query.get("sort").cloned().unwrap_or_default(),
            subs: nats_subs(&query),
            offset: int(&query, "offset"),
            limit: int(&query, "limit"),
            cid: query.get("cid").and_then(|c| c.parse().ok()),
            // Go's strconv.ParseBool, as the NATS server reads the flag.
            auth: matches!(
                query.get("auth").map(String::as_str),
                Some("1" | "t" | "T" | "true" | "TRUE" | "True")
            ),
        }),
        "/subsz" | "/subscriptionsz" => Doc::Subsz(SubszQuery {
            subs: nats_subs(&query),
            offset: int(&query, "offset"),
            limit: int(&query, "limit"),
            test: query.get("test").cloned(),
        }),
        "/routez" => match routez_subs(&query) {
            Ok(subs) => Doc::Routez(subs),
            Err(e) => return Route::Done(Reply::Plain(400, e)),
        },
        "/streaming/serverz" => Doc::Serverz,
        "/streaming/storez" => Doc::Storez,
        "/streaming/clientsz" => Doc::Clientsz(ClientszQuery {
            client: query.get("client").cloned().unwrap_or_default(),
            subs: subs_option(&query),
            page: page(&query),
        }),
        "/streaming/channelsz" => Doc::Channelsz(ChannelszQuery {
            channel: query.get("channel").cloned().unwrap_or_default(),
            subs: subs_option(&query),
            page: page(&query),
        }),
        _ => return Route::Done(page_not_found()),
    };
    Route::Node(Request { doc, callback })
}

impl Request {
    pub fn needs(&self) -> Needs {
        match self.doc {
            Doc::Varz | Doc::Connz(_) | Doc::Subsz(_) => Needs::Process,
            Doc::Serverz => Needs::Fds,
            _ => Needs::Nothing,
        }
    }

    /// Builds the document; runs on the driver task, between batches.
    pub fn answer(self, node: &Node, now: Now, env: &Env) -> Reply {
        let nats = || Context {
            now,
            ..env.nats.clone()
        };
        let body = match self.doc {
            Doc::Metrics => return Reply::Metrics(metrics::render(&metrics::Snapshot::take(node))),
            // 204 for a standby and for a server outside FT mode alike.
            Doc::IsFtActive => {
                let active = node.streaming().is_some_and(|s| s.is_ft_active());
                return Reply::Empty(if active { 200 } else { 204 });
            }
            Doc::Varz => Ok(pretty_json(&monitor::varz(node.nats(), &nats()))),
            Doc::Connz(q) => Ok(pretty_json(&monitor::connz(node.nats(), &nats(), &q))),
            Doc::Subsz(q) => Ok(pretty_json(&monitor::subsz(node.nats(), &nats(), &q))),
            Doc::Routez(subs) => Ok(stan_monitor::to_json(&monitor::routez(
                node.nats(),
                &nats(),
                subs,
            ))),
            Doc::Serverz => match &env.fds {
                Ok(fds) => on_streaming(node, now, env, *fds, &|s, ctx| {
                    Ok(stan_monitor::to_json(&stan_monitor::serverz(s, ctx)))
                }),
                Err(e) => Err(Reply::Error(500, e.clone())),
            },
            Doc::Storez => on_streaming(node, now, env, (0, 0), &|s, ctx| {
                Ok(stan_monitor::to_json(&stan_monitor::storez(s, ctx)))
            }),
            Doc::Clientsz(q) => on_streaming(node, now, env, (0, 0), &|s, ctx| {
                stan_monitor::clientsz(s, ctx, &q).map(|d| stan_monitor::to_json(&d))
            }),
            Doc::Channelsz(q) => on_streaming(node, now, env, (0, 0), &|s, ctx| {
                stan_monitor::channelsz(s, ctx, &q).map(|d| stan_monitor::to_json(&d))
            }),
        };
        match body {
            Ok(body) => Reply::Json {
                body,
                callback: self.callback,
            },
            Err(reply) => reply,
        }
    }
}

/// Builds one streaming document as JSON.
type StreamingDoc<'a> =
    dyn Fn(&Streaming, &stan_monitor::Context) -> Result<Vec<u8>, NotFound> + 'a;

/// Builds a streaming document with the process's file descriptors (`(0, 0)` for
/// documents that do not show them). A node without the streaming server has no
/// streaming endpoints.
fn on_streaming(
    node: &Node,
    now: Now,
    env: &Env,
    (open_fds, max_fds): (i64, i64),
    f: &StreamingDoc<'_>,
) -> Result<Vec<u8>, Reply> {
    let Some(s) = node.streaming() else {
        return Err(page_not_found());
    };
    let ctx = stan_monitor::Context {
        nats: Context {
            now,
            utc_offset_secs: env.utc_offset_secs,
            start_wall_ns: env.start_wall_ns,
            ..Context::default()
        },
        open_fds,
        max_fds,
    };
    f(s, &ctx).map_err(|NotFound(text)| Reply::Error(404, text))
}

/// The reply to a path that names no endpoint.
pub fn page_not_found() -> Reply {
    Reply::Error(404, "404 page not found".into())
}

/// `subs` of `/connz` and `/subsz`.
fn nats_subs(q: &BTreeMap<String, String>) -> bool {
    matches!(
        q.get("subs").map(String::as_str),
        Some("true" | "1" | "detail")
    )
}

/// `subs` of the streaming lists counts only when it reads as the integer 1 (`01` and
/// `+1` do too).
fn subs_option(q: &BTreeMap<String, String>) -> bool {
    q.get("subs").is_some_and(|v| lenient_int(v) == 1)
}

fn page(q: &BTreeMap<String, String>) -> Page {
    let get = |k: &str| q.get(k).map_or(0, |v| lenient_int(v));
    Page::new(get("offset"), get("limit"))
}

/// `subs` of `/routez` must be `detail` or a boolean in Go's spellings.
fn routez_subs(q: &BTreeMap<String, String>) -> Result<bool, String> {
    match q.get("subs").map(String::as_str) {
        None | Some("") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("detail") => Ok(true),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(v) => Err(format!(
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing {}: invalid syntax",
            serde_json::to_string(v).unwrap_or_default()
        )),
    }
}

fn pretty_json<T: Serialize>(v: &T) -> Vec<u8> {
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

/// The index of the NATS endpoints. Its links are `.` followed by the endpoint's
/// full path, as the NATS server writes them, which resolve from `<base>` when the
/// base path has one element; the streaming index stays at the root.
fn index(base: &str) -> String {
    let mut page = String::from(
        "<html lang=\"en\">\n<head><title>stan-rs monitoring</title></head>\n<body>\n",
    );
    for (endpoint, label) in [
        ("/varz", "General"),
        ("/connz", "Connections"),
        ("/routez", "Routes"),
        ("/subsz", "Subscriptions"),
        ("/healthz", "Health"),
        ("/streaming", "Streaming"),
        ("/metrics", "Metrics"),
    ] {
        let full = if base == "/" || STREAMING_PATHS.contains(&endpoint) {
            endpoint.to_string()
        } else {
            format!("{base}{endpoint}")
        };
        page.push_str(&format!("<a href=\".{full}\">{label}</a><br/>\n"));
    }
    page.push_str("</body>\n</html>\n");
    page
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_path_is_normalized_as_the_nats_server_does() {
        for (written, want) in [
            ("", "/"),
            ("/", "/"),
            ("nats", "/nats"),
            ("/nats/", "/nats"),
            ("nats//mon/", "/nats/mon"),
            ("/a/./b/../c", "/a/c"),
            ("/..", "/"),
        ] {
            assert_eq!(normalize_base_path(written), want, "{written:?}");
        }
    }

    fn reply(base: &str, path: &str) -> Option<Reply> {
        match route(base, path, "") {
            Route::Done(reply) => Some(reply),
            Route::Node(_) => None,
        }
    }

    #[test]
    fn nats_endpoints_move_under_the_base_path_and_streaming_ones_stay() {
        let not_found = Some(page_not_found());
        for path in ["/nats/varz", "/nats/connz", "/nats/subsz", "/nats/metrics"] {
            assert_eq!(reply("/nats", path), None, "{path}");
        }
        for path in [
            "/varz",
            "/metrics",
            "/nats/",
            "/natsvarz",
            "/nats/streaming",
            "/nats/streaming/serverz",
            "/nats/nats/varz",
        ] {
            assert_eq!(reply("/nats", path), not_found, "{path}");
        }
        assert!(matches!(
            reply("/nats", "/nats/healthz"),
            Some(Reply::Json { .. })
        ));
        assert!(matches!(reply("/nats", "/streaming"), Some(Reply::Html(_))));
        assert_eq!(reply("/nats", "/streaming/serverz"), None);
        assert_eq!(reply("/nats", "/streaming/isFTActive"), None);
        // Without a base path, everything is at the root.
        assert_eq!(reply("/", "/varz"), None);
        assert_eq!(reply("/", "/streaming/storez"), None);
        assert_eq!(reply("/", "/nats/varz"), not_found);
        assert_eq!(nats_path("/a/b", "/a/b/connz"), Some("/connz"));
        assert_eq!(nats_path("/a/b", "/a/b"), Some("/"));
        assert_eq!(nats_path("/a/b", "/a"), None);
    }

    #[test]
    fn index_links_carry_the_base_path() {
        let Some(Reply::Html(page)) = reply("/nats", "/nats") else {
            panic!("no index under the base path");
        };
        assert!(
            page.contains("<a href=\"./nats/varz\">General</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"./nats/metrics\">Metrics</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"./streaming\">Streaming</a>"),
            "{page}"
        );
        let Some(Reply::Html(page)) = reply("/", "/") else {
            panic!("no index");
        };
        assert!(page.contains("<a href=\"./varz\">General</a>"), "{page}");
        assert_eq!(reply("/nats", "/"), Some(page_not_found()));
    }
}

//! `/metrics`: the server's counters in the Prometheus text exposition format (0.0.4),
//! so a Prometheus server can scrape stan-rs directly instead of through an exporter
//! that polls the JSON endpoints.
//!
//! Names are prefixed `stan_`; monotonic counters end in `_total`. The numbers are the
//! same as those of `/streaming/serverz`, `/streaming/channelsz` and `/varz`.

use std::fmt::Write as _;

use stan_core::nats::server::ServerStats;
use stan_core::node::Node;
use stan_core::streaming::monitor::{self, ChannelCounters, Counters};
use stan_core::streaming::VERSION;

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape reports, read on the driver task in one go so the numbers are
/// consistent with each other.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `None` on a node without the streaming server.
    pub streaming: Option<Counters>,
    pub nats: ServerStats,
    pub connections: usize,
}

impl Snapshot {
    pub fn take(node: &Node) -> Snapshot {
        Snapshot {
            streaming: node.streaming().map(monitor::counters),
            nats: node.nats().stats(),
            connections: node.nats().num_connections(),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Name, type, help text and how to read the value.
type Family<T> = (&'static str, Kind, &'static str, fn(&T) -> u64);

const STREAMING: &[Family<Counters>] = &[
    (
        "stan_clients",
        Kind::Gauge,
        "Registered streaming clients.",
        |c| c.clients as u64,
    ),
    (
        "stan_subscriptions",
        Kind::Gauge,
        "Streaming subscriptions: active ones, offline durables and durable queue group shadows.",
        |c| c.subscriptions as u64,
    ),
    ("stan_channels", Kind::Gauge, "Channels.", |c| {
        c.channels.len() as u64
    }),
    (
        "stan_in_msgs_total",
        Kind::Counter,
        "Messages published to the streaming server.",
        |c| c.stats.in_msgs,
    ),
    (
        "stan_in_bytes_total",
        Kind::Counter,
        "Bytes of the publish requests received by the streaming server.",
        |c| c.stats.in_bytes,
    ),
    (
        "stan_out_msgs_total",
        Kind::Counter,
        "Messages sent to subscriptions, redeliveries included.",
        |c| c.stats.out_msgs,
    ),
    (
        "stan_out_bytes_total",
        Kind::Counter,
        "Bytes of the messages sent to subscriptions, redeliveries included.",
        |c| c.stats.out_bytes,
    ),
    (
        "stan_redeliveries_total",
        Kind::Counter,
        "Messages sent again because they were not acknowledged in time.",
        |c| c.stats.redeliveries,
    ),
    (
        "stan_heartbeat_closes_total",
        Kind::Counter,
        "Clients closed by the server because they stopped answering heartbeats.",
        |c| c.stats.heartbeat_closes,
    ),
];

const CHANNEL: &[Family<ChannelCounters>] = &[
    (
        "stan_channel_msgs",
        Kind::Gauge,
        "Messages stored in the channel.",
        |c| c.msgs,
    ),
    (
        "stan_channel_bytes",
        Kind::Gauge,
        "Bytes stored in the channel, as the store counts them.",
        |c| c.bytes,
    ),
    (
        "stan_channel_subscriptions",
        Kind::Gauge,
        "Subscriptions on the channel, offline durables and shadows included.",
        |c| c.subscriptions as u64,
    ),
    (
        "stan_channel_pending",
        Kind::Gauge,
        "Messages sent and not yet acknowledged, summed over the channel's subscriptions.",
        |c| c.pending as u64,
    ),
];

const NATS: &[Family<Snapshot>] = &[
    (
        "stan_connections",
        Kind::Gauge,
        "Open NATS client connections.",
        |s| s.connections as u64,
    ),
    (
        "stan_nats_in_msgs_total",
        Kind::Counter,
        "Messages received by the embedded NATS server.",
        |s| s.nats.traffic.in_msgs,
    ),
    (
        "stan_nats_in_bytes_total",
        Kind::Counter,
        "Payload bytes received by the embedded NATS server.",
        |s| s.nats.traffic.in_bytes,
    ),
    (
        "stan_nats_out_msgs_total",
        Kind::Counter,
        "Messages sent by the embedded NATS server.",
        |s| s.nats.traffic.out_msgs,
    ),
    (
        "stan_nats_out_bytes_total",
        Kind::Counter,
        "Payload bytes sent by the embedded NATS server.",
        |s| s.nats.traffic.out_bytes,
    ),
    (
        "stan_nats_slow_consumers_total",
        Kind::Counter,
        "NATS connections closed for falling too far behind.",
        |s| s.nats.slow_consumers,
    ),
];

/// The scrape body.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    if let Some(c) = &s.streaming {
        header(
            &mut out,
            "stan_info",
            Kind::Gauge,
            "Identity of the streaming server; the value is always 1.",
        );
        sample(
            &mut out,
            "stan_info",
            &[
                ("cluster_id", &c.cluster_id),
                ("server_id", &c.server_id),
                ("version", VERSION),
            ],
            1,
        );
        for (name, kind, help, value) in STREAMING {
            header(&mut out, name, *kind, help);
            sample(&mut out, name, &[], value(c));
        }
        for (name, kind, help, value) in CHANNEL {
            header(&mut out, name, *kind, help);
            for ch in &c.channels {
                sample(&mut out, name, &[("channel", &ch.name)], value(ch));
            }
        }
    }
    for (name, kind, help, value) in NATS {
        header(&mut out, name, *kind, help);
        sample(&mut out, name, &[], value(s));
    }
    out
}

fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values may hold any UTF-8; only `\`, `"` and line feeds need escaping.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Help text escapes `\` and line feeds (quotes are fine there).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use stan_core::nats::conn::Traffic;
    use stan_core::streaming::Stats;

    fn snapshot() -> Snapshot {
        Snapshot {
            streaming: Some(Counters {
                cluster_id: "test-cluster".into(),
                server_id: "SRV".into(),
                clients: 2,
                subscriptions: 3,
                stats: Stats {
                    in_msgs: 10,
                    in_bytes: 650,
                    out_msgs: 20,
                    out_bytes: 560,
                    redeliveries: 4,
                    heartbeat_closes: 1,
                },
                channels: vec![
                    ChannelCounters {
                        name: "foo".into(),
                        msgs: 10,
                        bytes: 640,
                        first_seq: 1,
                        last_seq: 10,
                        subscriptions: 3,
                        pending: 7,
                    },
                    ChannelCounters {
                        name: "odd\"na\\me\nhere é".into(),
                        msgs: 0,
                        bytes: 0,
                        first_seq: 0,
                        last_seq: 0,
                        subscriptions: 0,
                        pending: 0,
                    },
                ],
            }),
            nats: ServerStats {
                traffic: Traffic {
                    in_msgs: 30,
                    in_bytes: 900,
                    out_msgs: 40,
                    out_bytes: 1200,
                },
                total_connections: 5,
                slow_consumers: 0,
            },
            connections: 6,
        }
    }

    #[test]
    fn text_format() {
        let text = render(&snapshot());
        let expected_lines = [
            "# HELP stan_info Identity of the streaming server; the value is always 1.",
            "# TYPE stan_info gauge",
            r#"stan_info{cluster_id="test-cluster",server_id="SRV",version="0.25.6"} 1"#,
            "# TYPE stan_clients gauge",
            "stan_clients 2",
            "stan_subscriptions 3",
            "stan_channels 2",
            "# TYPE stan_in_msgs_total counter",
            "stan_in_msgs_total 10",
            "stan_in_bytes_total 650",
            "stan_out_msgs_total 20",
            "stan_out_bytes_total 560",
            "stan_redeliveries_total 4",
            "stan_heartbeat_closes_total 1",
            r#"stan_channel_msgs{channel="foo"} 10"#,
            r#"stan_channel_bytes{channel="foo"} 640"#,
            r#"stan_channel_subscriptions{channel="foo"} 3"#,
            r#"stan_channel_pending{channel="foo"} 7"#,
            r#"stan_channel_pending{channel="odd\"na\\me\nhere é"} 0"#,
            "stan_connections 6",
            "stan_nats_in_msgs_total 30",
            "stan_nats_in_bytes_total 900",
            "stan_nats_out_msgs_total 40",
            "stan_nats_out_bytes_total 1200",
            "stan_nats_slow_consumers_total 0",
        ];
        for line in expected_lines {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Each family: HELP, then TYPE, then its samples, and nothing else in between.
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                current = rest.split(' ').next().unwrap();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert_eq!(rest.split(' ').next().unwrap(), current);
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn plain_nats_node_has_no_streaming_families() {
        let mut s = snapshot();
        s.streaming = None;
        let text = render(&s);
        assert!(!text.contains("stan_clients") && !text.contains("stan_channel_"));
        assert!(text.contains("stan_connections 6"));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\"c\nd"), "a\\\\b\"c\\nd");
    }
}

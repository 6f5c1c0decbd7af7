//! The options stan-server reads from a parsed configuration file: every streaming
//! key and alias (OPERATIONS.md §2.3), the NATS keys it supports (§2.4), per-channel
//! value semantics (BEHAVIOUR.md §4.2), and the Go servers' error texts.

use std::collections::BTreeMap;

use stan_core::config::{parse_str, FileSetting, NatsFileOptions, StreamingFileOptions};
use stan_core::streaming::limits::ChannelLimits;

const S: i64 = 1_000_000_000;

fn streaming(text: &str) -> StreamingFileOptions {
    let map = parse_str("s.conf", text).unwrap_or_else(|e| panic!("{e}"));
    StreamingFileOptions::from_map(&map).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn streaming_error(text: &str) -> String {
    let map = parse_str("s.conf", text).unwrap_or_else(|e| panic!("{e}"));
    match StreamingFileOptions::from_map(&map) {
        Ok(o) => panic!("{text:?} gave {o:?}"),
        Err(e) => e.to_string(),
    }
}

fn nats(text: &str) -> NatsFileOptions {
    let map = parse_str("n.conf", text).unwrap_or_else(|e| panic!("{e}"));
    NatsFileOptions::from_map(&map).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn nats_error(text: &str) -> String {
    let map = parse_str("n.conf", text).unwrap_or_else(|e| panic!("{e}"));
    match NatsFileOptions::from_map(&map) {
        Ok(o) => panic!("{text:?} gave {o:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn nothing_set_reads_as_nothing() {
    assert_eq!(streaming(""), StreamingFileOptions::default());
    assert_eq!(
        nats("unknown_key: 1\nstreaming { id: x }\n"),
        NatsFileOptions::default()
    );
    assert_eq!(
        streaming("unknown_key: 1\nport: 4222\n"),
        StreamingFileOptions::default()
    );
}

type StringField = fn(&StreamingFileOptions) -> Option<&String>;
type BoolField = fn(&StreamingFileOptions) -> Option<bool>;

#[test]
fn every_streaming_key_and_alias() {
    let string_keys: &[(&[&str], StringField)] = &[
        (&["id", "cid", "cluster_id", "ID", "Cluster_Id"], |o| {
            o.cluster_id.as_ref()
        }),
        (&["discover_prefix"], |o| o.discover_prefix.as_ref()),
        (&["username", "user"], |o| o.username.as_ref()),
        (&["password", "pass"], |o| o.password.as_ref()),
        (&["token"], |o| o.token.as_ref()),
    ];
    for (names, field) in string_keys {
        for name in *names {
            let o = streaming(&format!("{name}: \"v-{name}\"\n"));
            assert_eq!(field(&o), Some(&format!("v-{name}")), "{name}");
        }
    }
    let bool_keys: &[(&[&str], BoolField)] = &[
        (&["sd", "stan_debug"], |o| o.stan_debug),
        (&["sv", "stan_trace"], |o| o.stan_trace),
        (
            &[
                "replace_durable",
                "replace_durables",
                "replace_duplicate_durable",
                "replace_duplicate_durables",
            ],
            |o| o.replace_durable,
        ),
    ];
    for (names, field) in bool_keys {
        for name in *names {
            assert_eq!(
                field(&streaming(&format!("{name}: true\n"))),
                Some(true),
                "{name}"
            );
            assert_eq!(
                field(&streaming(&format!("{name}: off\n"))),
                Some(false),
                "{name}"
            );
        }
    }
    for name in ["st", "store_type", "store", "storetype", "STORE"] {
        for value in ["memory", "MEMORY", "Memory"] {
            assert_eq!(
                streaming(&format!("{name}: {value}\n")).store.as_deref(),
                Some("MEMORY")
            );
        }
    }
    for name in ["hbi", "hb_interval", "server_to_client_hb_interval"] {
        assert_eq!(
            streaming(&format!("{name}: \"1m\"\n")).hb_interval,
            Some(60 * S),
            "{name}"
        );
    }
    for name in ["hbt", "hb_timeout", "server_to_client_hb_timeout"] {
        assert_eq!(
            streaming(&format!("{name}: 2s\n")).hb_timeout,
            Some(2 * S),
            "{name}"
        );
    }
    for name in ["hbf", "hb_fail_count", "server_to_client_hb_fail_count"] {
        assert_eq!(
            streaming(&format!("{name}: 7\n")).hb_fail_count,
            Some(7),
            "{name}"
        );
    }
}

#[test]
fn every_store_limits_key_and_alias() {
    for section in ["limits", "store_limits", "storelimits", "Store_Limits"] {
        for (names, text, want) in [
            (&["mc", "max_channels", "maxchannels"][..], "7", 7),
            (
                &["msu", "max_subs", "max_subscriptions", "maxsubscriptions"],
                "8",
                8,
            ),
            (
                &["mm", "max_msgs", "maxmsgs", "max_count", "maxcount"],
                "1k",
                1000,
            ),
            (&["mb", "max_bytes", "maxbytes"], "1KB", 1024),
            (&["ma", "max_age", "maxage"], "\"1h\"", 3600 * S),
            (
                &["mi", "max_inactivity", "maxinactivity"],
                "\"10m\"",
                600 * S,
            ),
        ] {
            for name in names {
                let o = streaming(&format!("{section} {{ {name}: {text} }}\n"));
                let got = [
                    o.max_channels,
                    o.max_subs,
                    o.max_msgs,
                    o.max_bytes,
                    o.max_age,
                    o.max_inactivity,
                ];
                assert_eq!(
                    got.iter().flatten().collect::<Vec<_>>(),
                    [&want],
                    "{section}.{name}"
                );
            }
        }
    }
    // A global 0 stays 0: unlimited.
    let o = streaming("store_limits { max_msgs: 0, max_age: \"0\" }\n");
    assert_eq!((o.max_msgs, o.max_age), (Some(0), Some(0)));
}

#[test]
fn per_channel_limits() {
    for alias in [
        "channels",
        "channels_limits",
        "channelslimits",
        "per_channel",
        "per_channel_limits",
    ] {
        let o = streaming(&format!(
            "store_limits {{ {alias} {{ \"a.b\": {{ mm: 5 }} }} }}\n"
        ));
        assert_eq!(o.per_channel["a.b"].max_msgs, 5, "{alias}");
    }
    let o = streaming(
        "store_limits {
           channels {
             \"foo.>\":  { max_msgs: 500, msu: 3 }
             foo.*:     { max_age: \"1h\", maxinactivity: \"90s\", mc: 5 }
             foo.bar:   { max_bytes: 1MB, max_inactivity: \"0\" }
             baz:       { max_subs: 0, max_msgs: 0, max_bytes: 0, max_age: \"0s\", mi: \"10m\" }
             neg:       { max_msgs: -1 }
             Baz:       { }
           }
         }\n",
    );
    let want: BTreeMap<String, ChannelLimits> = [
        (
            "foo.>",
            ChannelLimits {
                max_msgs: 500,
                max_subscriptions: 3,
                ..Default::default()
            },
        ),
        (
            "foo.*",
            ChannelLimits {
                max_age: 3600 * S,
                max_inactivity: 90 * S,
                ..Default::default()
            },
        ),
        // Explicit zero: unlimited for this channel, carried as -1.
        (
            "foo.bar",
            ChannelLimits {
                max_bytes: 1 << 20,
                max_inactivity: -1,
                ..Default::default()
            },
        ),
        (
            "baz",
            ChannelLimits {
                max_subscriptions: -1,
                max_msgs: -1,
                max_bytes: -1,
                max_age: -1,
                max_inactivity: 600 * S,
            },
        ),
        (
            "neg",
            ChannelLimits {
                max_msgs: -1,
                ..Default::default()
            },
        ),
        // Channel names keep their case; absent keys inherit (0).
        ("Baz", ChannelLimits::default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(o.per_channel, want);
    // Two sections add up; a channel written twice keeps the later entry.
    let o = streaming("limits { channels { a: { mm: 1 }, b: { mm: 2 } } }\nstore_limits { channels { a: { mm: 3 } } }\n");
    assert_eq!(o.per_channel["a"].max_msgs, 3);
    assert_eq!(o.per_channel["b"].max_msgs, 2);
}

#[test]
fn streaming_block_takes_precedence_over_top_level() {
    let o = streaming("id: top\nhb_fail_count: 1\nSTREAMING { id: inner }\n");
    assert_eq!(o.cluster_id.as_deref(), Some("inner"));
    assert_eq!(o.hb_fail_count, None);
    assert_eq!(
        streaming_error("streaming: 5\n"),
        "s.conf:1: expected streaming section to be a map/struct, got 5"
    );
}

/// OPERATIONS.md §2.5 as written, FILE store included.
#[test]
fn operations_example() {
    let example = r#"# NATS part
listen: 0.0.0.0:4222
http: 8222

streaming {
  id: "prod"
  store: file
  dir: "/data/stan"
  hb_interval: "10s"
  hb_timeout: "2s"
  hb_fail_count: 3
  store_limits {
    max_channels: 1000
    max_msgs: 0            # unlimited
    max_bytes: 10GB
    max_age: "72h"
    channels {
      "orders.>":  { max_msgs: 100000 }
      "orders.eu": { max_age: "24h", max_inactivity: "1h" }
      "audit":     { max_bytes: 0 }   # unlimited for this channel
    }
  }
  file { sync: true, slice_max_bytes: 256MB, auto_sync: "30s" }
}
"#;
    let n = nats(example);
    assert_eq!(n.addr.as_deref(), Some("0.0.0.0"));
    assert_eq!(n.port, Some(4222));
    assert_eq!(n.http_port, Some(8222));
    assert_eq!(n.http_host, None);

    let o = streaming(example);
    let want = StreamingFileOptions {
        cluster_id: Some("prod".into()),
        store: Some("FILE".into()),
        dir: Some("/data/stan".into()),
        file: vec![
            ("file_sync", FileSetting::Bool(true)),
            ("file_slice_max_bytes", FileSetting::Int(256 << 20)),
            ("file_auto_sync", FileSetting::Nanos(30 * S)),
        ],
        hb_interval: Some(10 * S),
        hb_timeout: Some(2 * S),
        hb_fail_count: Some(3),
        max_channels: Some(1000),
        max_msgs: Some(0),
        max_bytes: Some(10 << 30),
        max_age: Some(72 * 3600 * S),
        per_channel: [
            (
                "orders.>",
                ChannelLimits {
                    max_msgs: 100_000,
                    ..Default::default()
                },
            ),
            (
                "orders.eu",
                ChannelLimits {
                    max_age: 24 * 3600 * S,
                    max_inactivity: 3600 * S,
                    ..Default::default()
                },
            ),
            (
                "audit",
                ChannelLimits {
                    max_bytes: -1,
                    ..Default::default()
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..Default::default()
    };
    assert_eq!(o, want);
}

/// Every key of the `file { }` section and its aliases, under the flag it stands for.
#[test]
fn file_section_keys() {
    use FileSetting::{Bool, Int, Nanos, Str};
    let cases: &[(&str, &str, FileSetting)] = &[
        ("compact: false", "file_compact_enabled", Bool(false)),
        ("Compact_Enabled: true", "file_compact_enabled", Bool(true)),
        ("compact_frag: 30", "file_compact_frag", Int(30)),
        ("compact_fragmentation: 40", "file_compact_frag", Int(40)),
        ("compact_interval: 60", "file_compact_interval", Int(60)),
        (
            "compact_min_size: 1MB",
            "file_compact_min_size",
            Int(1 << 20),
        ),
        ("buffer_size: 64KB", "file_buffer_size", Int(64 << 10)),
        ("crc: false", "file_crc", Bool(false)),
        ("do_crc: true", "file_crc", Bool(true)),
        ("crc_poly: 2197175160", "file_crc_poly", Int(0x82f6_3b78)),
        ("sync: false", "file_sync", Bool(false)),
        ("do_sync: true", "file_sync", Bool(true)),
        ("sync_on_flush: false", "file_sync", Bool(false)),
        ("slice_max_msgs: 10", "file_slice_max_msgs", Int(10)),
        ("slice_max_count: 11", "file_slice_max_msgs", Int(11)),
        ("slice_msgs: 12", "file_slice_max_msgs", Int(12)),
        ("slice_count: 13", "file_slice_max_msgs", Int(13)),
        ("slice_max_bytes: 1KB", "file_slice_max_bytes", Int(1024)),
        ("slice_max_size: 2KB", "file_slice_max_bytes", Int(2048)),
        ("slice_bytes: 3", "file_slice_max_bytes", Int(3)),
        ("slice_size: 4", "file_slice_max_bytes", Int(4)),
        (
            "slice_max_age: \"1h\"",
            "file_slice_max_age",
            Nanos(3600 * S),
        ),
        ("slice_age: \"2s\"", "file_slice_max_age", Nanos(2 * S)),
        ("slice_max_time: \"3s\"", "file_slice_max_age", Nanos(3 * S)),
        (
            "slice_time_limit: \"4s\"",
            "file_slice_max_age",
            Nanos(4 * S),
        ),
        (
            "slice_archive_script: \"/bin/a\"",
            "file_slice_archive_script",
            Str("/bin/a".into()),
        ),
        (
            "slice_archive: \"/bin/b\"",
            "file_slice_archive_script",
            Str("/bin/b".into()),
        ),
        (
            "slice_script: \"/bin/c\"",
            "file_slice_archive_script",
            Str("/bin/c".into()),
        ),
        ("file_descriptors_limit: 50", "file_fds_limit", Int(50)),
        ("fds_limit: 60", "file_fds_limit", Int(60)),
        ("parallel_recovery: 4", "file_parallel_recovery", Int(4)),
        (
            "file_read_buffer_size: 1KB",
            "file_read_buffer_size",
            Int(1024),
        ),
        ("read_buffer_size: 0", "file_read_buffer_size", Int(0)),
        ("file_auto_sync: \"5s\"", "file_auto_sync", Nanos(5 * S)),
        ("auto_sync: \"-1s\"", "file_auto_sync", Nanos(-S)),
    ];
    for (line, flag, value) in cases {
        for section in ["file", "file_options", "FILE"] {
            let o = streaming(&format!("{section} {{\n  {line}\n}}\n"));
            assert_eq!(o.file, vec![(*flag, value.clone())], "{section} {line}");
        }
    }
    // Command line only, and an old key that was never read.
    assert_eq!(
        streaming("file { truncate_bad_eof: true, cache: true }\n").file,
        vec![]
    );
    for dir in ["dir", "datastore", "DIR"] {
        assert_eq!(
            streaming(&format!("{dir}: \"/d\"\n")).dir.as_deref(),
            Some("/d")
        );
    }
}

#[test]
fn ft_group_under_both_names() {
    for key in ["ft_group", "ft_group_name", "FT_Group"] {
        assert_eq!(
            streaming(&format!("streaming {{ {key}: \"grp\" }}\n"))
                .ft_group
                .as_deref(),
            Some("grp")
        );
    }
    assert_eq!(
        streaming_error("ft_group: 1\n"),
        r#"s.conf:1: parameter "ft_group" value is expected to be string, got int64"#
    );
}

#[test]
fn file_section_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "file: 5\n",
            "s.conf:1: expected file options to be a map/struct, got 5",
        ),
        (
            "file {\n  sync: 1\n}\n",
            r#"s.conf:2: parameter "sync" value is expected to be bool, got int64"#,
        ),
        (
            "file { compact_frag: \"x\" }\n",
            r#"s.conf:1: parameter "compact_frag" value is expected to be int64, got string"#,
        ),
        (
            "file { slice_max_age: 5 }\n",
            r#"s.conf:1: parameter "slice_max_age" value is expected to be string, got int64"#,
        ),
        (
            "dir: 5\n",
            r#"s.conf:1: parameter "dir" value is expected to be string, got int64"#,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(streaming_error(text), *want, "{text:?}");
    }
    assert!(streaming_error("file { auto_sync: \"1x\" }\n").starts_with("s.conf:1: "));
}

#[test]
fn streaming_type_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "id: 5\n",
            r#"s.conf:1: parameter "id" value is expected to be string, got int64"#,
        ),
        (
            "CID: true\n",
            r#"s.conf:1: parameter "CID" value is expected to be string, got bool"#,
        ),
        (
            "sd: \"yes\"\n",
            r#"s.conf:1: parameter "sd" value is expected to be bool, got string"#,
        ),
        (
            "hbf: 1.5\n",
            r#"s.conf:1: parameter "hbf" value is expected to be int64, got float64"#,
        ),
        (
            "hbf: [1]\n",
            r#"s.conf:1: parameter "hbf" value is expected to be int64, got slice"#,
        ),
        (
            "hbf: {}\n",
            r#"s.conf:1: parameter "hbf" value is expected to be int64, got map"#,
        ),
        (
            "hbi: 2016-05-04T18:53:41Z\n",
            r#"s.conf:1: parameter "hbi" value is expected to be string, got struct"#,
        ),
        (
            "store: 1\n",
            r#"s.conf:1: parameter "store" value is expected to be string, got int64"#,
        ),
        // A bare `1m` is the integer 1000000.
        (
            "\nlimits {\n  max_age: 1m\n}\n",
            r#"s.conf:3: parameter "max_age" value is expected to be string, got int64"#,
        ),
        (
            "limits { mm: \"10\" }\n",
            r#"s.conf:1: parameter "mm" value is expected to be int64, got string"#,
        ),
        (
            "limits { mc: yes }\n",
            r#"s.conf:1: parameter "mc" value is expected to be int64, got bool"#,
        ),
        (
            "limits { channels { a: { mb: \"1KB\" } } }\n",
            r#"s.conf:1: parameter "mb" value is expected to be int64, got string"#,
        ),
        (
            "hb_interval: 10\n",
            r#"s.conf:1: parameter "hb_interval" value is expected to be string, got int64"#,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(streaming_error(text), *want, "{text:?}");
    }
}

#[test]
fn bad_durations() {
    let cases: &[(&str, &str)] = &[
        ("hbi: abc\n", r#"s.conf:1: time: invalid duration "abc""#),
        (
            "hbt: \"10\"\n",
            r#"s.conf:1: time: missing unit in duration "10""#,
        ),
        (
            "limits {\n ma: \"3d\"\n}\n",
            r#"s.conf:2: time: unknown unit "d" in duration "3d""#,
        ),
        (
            "limits { channels { x: { mi: \"\" } } }\n",
            r#"s.conf:1: time: invalid duration """#,
        ),
        (
            "hbi: \"-1s\"\n",
            r#"s.conf:1: parameter "hbi" value "-1s" is out of range: it cannot be negative"#,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(streaming_error(text), *want, "{text:?}");
    }
    // Negative limits are left to the startup checks, which name the limit.
    assert_eq!(streaming("limits { ma: \"-1s\" }\n").max_age, Some(-S));
}

#[test]
fn sections_that_are_not_maps() {
    let cases: &[(&str, &str)] = &[
        (
            "store_limits: 5\n",
            "s.conf:1: expected store limits to be a map/struct, got 5",
        ),
        (
            "limits { channels: [a, b] }\n",
            "s.conf:1: expected per channel limits to be a map/struct, got [a b]",
        ),
        (
            "limits { channels { foo: 1.5 } }\n",
            "s.conf:1: expected channel limits to be a map/struct, got 1.5",
        ),
        (
            "tls: yes\n",
            "s.conf:1: expected TLS to be a map/struct, got true",
        ),
        (
            "cluster: \"nats://h:6222\"\n",
            "s.conf:1: expected cluster to be a map/struct, got nats://h:6222",
        ),
        (
            "file: [1, {a: 2, B: x}]\n",
            "s.conf:1: expected file options to be a map/struct, got [1 map[B:x a:2]]",
        ),
        (
            "sql_options: 1000000000.0\n",
            "s.conf:1: expected SQL options to be a map/struct, got 1e+09",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(streaming_error(text), *want, "{text:?}");
    }
}

#[test]
fn store_types() {
    assert_eq!(streaming("store: File\n").store.as_deref(), Some("FILE"));
    assert_eq!(streaming("st: memory\n").store.as_deref(), Some("MEMORY"));
    assert_eq!(streaming("st: sql\n").store.as_deref(), Some("SQL"));
    assert_eq!(
        streaming_error("store_type: Disk\n"),
        "s.conf:1: unknown store type: Disk"
    );
}

#[test]
fn invalid_channel_names() {
    assert_eq!(
        streaming_error("limits {\n channels {\n  \"foo..bar\": { mm: 1 }\n }\n}\n"),
        "s.conf:3: invalid channel name \"foo..bar\""
    );
    assert_eq!(
        streaming_error("limits { channels { \"a.>.b\": {} } }\n"),
        "s.conf:1: invalid channel name \"a.>.b\""
    );
}

#[test]
fn external_nats_keys_are_read() {
    for key in ["ns", "nats_server", "nats_server_url", "NS"] {
        let o = streaming(&format!("streaming {{\n  {key}: \"nats://h:4222\"\n}}\n"));
        assert_eq!(o.nats_server.as_deref(), Some("nats://h:4222"), "{key}");
    }
    let o = streaming(
        "credentials: /c.creds\nnkey_seed_file: /s.nk\nSecure: yes\nuser: u\npass: p\ntoken: t\n",
    );
    assert_eq!(o.credentials.as_deref(), Some("/c.creds"));
    assert_eq!(o.nkey_seed_file.as_deref(), Some("/s.nk"));
    assert_eq!(o.secure, Some(true));
    assert_eq!(
        (
            o.username.as_deref(),
            o.password.as_deref(),
            o.token.as_deref()
        ),
        (Some("u"), Some("p"), Some("t"))
    );
    // The block alone turns clustering on.
    for key in ["cluster", "Cluster"] {
        let o = streaming(&format!("{key} {{ }}\n"));
        assert_eq!(o.file, vec![("clustered", FileSetting::Bool(true))]);
    }
}

/// Keys are type-checked as the Go server checks them.
#[test]
fn external_nats_keys_are_type_checked() {
    let string_keys = [
        "ns",
        "nats_server",
        "nats_server_url",
        "credentials",
        "nkey_seed_file",
    ];
    for key in string_keys {
        assert_eq!(
            streaming_error(&format!("\n{key}: 5\n")),
            format!("s.conf:2: parameter \"{key}\" value is expected to be string, got int64"),
        );
    }
    for key in ["secure", "partitioning", "Partitioning"] {
        assert_eq!(
            streaming_error(&format!("{key}: \"true\"\n")),
            format!("s.conf:1: parameter \"{key}\" value is expected to be bool, got string"),
        );
    }
}

#[test]
fn partitioning_is_a_bool_in_any_case_inside_or_outside_the_section() {
    assert_eq!(streaming("partitioning: true\n").partitioning, Some(true));
    assert_eq!(
        streaming("streaming {\n  Partitioning: false\n}\n").partitioning,
        Some(false)
    );
    assert_eq!(streaming("x: 1\n").partitioning, None);
    assert_eq!(
        streaming_error("streaming {\n  partitioning: 1\n}\n"),
        "s.conf:2: parameter \"partitioning\" value is expected to be bool, got int64"
    );
}

#[test]
fn syslog_name_is_accepted_and_ignored() {
    assert_eq!(
        streaming("syslog_name: \"NATS-Streaming\"\nSYSLOG_NAME: x\n"),
        StreamingFileOptions::default()
    );
    assert_eq!(
        streaming_error("streaming {\n syslog_name: [a]\n}\n"),
        r#"s.conf:2: parameter "syslog_name" value is expected to be string, got slice"#
    );
}

#[test]
fn tls_section_is_the_client_side_of_the_external_connections() {
    let full = "tls {\n  client_cert: \"c.pem\"\n  client_key: \"k.pem\"\n  client_ca: ca0.pem\n  client_cacert: ca.pem\n  server_name: h0\n  server_hostname: h\n  skip_verify: false\n  insecure: true\n  cert_file: nats.pem\n  other: 1\n}\n";
    let tls = streaming(full).tls;
    assert_eq!(tls.client_cert.as_deref(), Some("c.pem"));
    assert_eq!(tls.client_key.as_deref(), Some("k.pem"));
    assert_eq!(tls.client_ca.as_deref(), Some("ca.pem"));
    assert_eq!(tls.server_name.as_deref(), Some("h"));
    assert!(tls.skip_verify);
    // The NATS server's own keys in a shared file set nothing here.
    assert_eq!(
        streaming("tls { cert_file: a, key_file: b, verify: true }\n").tls,
        Default::default()
    );
    let strings = [
        "client_cert",
        "client_key",
        "client_ca",
        "client_cacert",
        "server_name",
        "server_hostname",
        "Client_Cert",
    ];
    for key in strings {
        assert_eq!(
            streaming_error(&format!("tls {{\n  {key}: true\n}}\n")),
            format!("s.conf:2: parameter \"{key}\" value is expected to be string, got bool"),
        );
    }
    for key in ["skip_verify", "insecure"] {
        assert_eq!(
            streaming_error(&format!("streaming {{ tls {{\n\n  {key}: 1\n}} }}\n")),
            format!("s.conf:3: parameter \"{key}\" value is expected to be bool, got int64"),
        );
    }
}

#[test]
fn sql_section_sets_the_sql_flags() {
    use stan_core::config::FileSetting::{Bool, Int, Str};
    let full = "sql_options {\n  driver: postgres\n  source: \"dbname=stan\"\n  no_caching: true\n  max_open_conns: 5\n  max_conns: 6\n  bulk_insert_limit: 1K\n  other: 1\n}\n";
    assert_eq!(
        streaming(full).file,
        vec![
            ("sql_driver", Str("postgres".into())),
            ("sql_source", Str("dbname=stan".into())),
            ("sql_no_caching", Bool(true)),
            ("sql_max_open_conns", Int(5)),
            ("sql_max_open_conns", Int(6)),
            ("sql_bulk_insert_limit", Int(1000)),
        ]
    );
    let cases: &[(&str, &str, &str)] = &[
        ("driver", "1", "string, got int64"),
        ("source", "[a]", "string, got slice"),
        ("no_caching", "\"yes\"", "bool, got string"),
        ("max_open_conns", "1.5", "int64, got float64"),
        ("max_conns", "{}", "int64, got map"),
        ("bulk_insert_limit", "true", "int64, got bool"),
    ];
    for (key, value, kinds) in cases {
        assert_eq!(
            streaming_error(&format!("sql {{\n  {key}: {value}\n}}\n")),
            format!("s.conf:2: parameter \"{key}\" value is expected to be {kinds}"),
        );
    }
    // The Go server names SQL keys in lower case, whatever their spelling.
    assert_eq!(
        streaming_error("sql { DRIVER: 1 }\n"),
        r#"s.conf:1: parameter "driver" value is expected to be string, got int64"#
    );
}

#[test]
fn cluster_section_keys_are_read_under_their_flag_names() {
    let full = r#"cluster {
  node_id: "a"
  bootstrap: true
  peers: ["b", "c"]
  log_path: "/raft"
  log_cache_size: 1024
  log_snapshots: 3
  trailing_logs: 256
  sync: true
  proceed_on_restore_failure: false
  allow_add_remove_node: true
  raft_logging: false
  raft_heartbeat_timeout: "2s"
  raft_election_timeout: "2s"
  raft_lease_timeout: "1s"
  raft_commit_timeout: "100ms"
  bolt_free_list_sync: true
  bolt_free_list_map: false
  nodes_connections: true
  listen: "0.0.0.0:6222"
}
"#;
    let o = streaming(full);
    let ms = 1_000_000;
    assert_eq!(
        o.file,
        vec![
            ("clustered", FileSetting::Bool(true)),
            ("cluster_node_id", FileSetting::Str("a".into())),
            ("cluster_bootstrap", FileSetting::Bool(true)),
            ("cluster_peers", FileSetting::Str("b,c".into())),
            ("cluster_log_path", FileSetting::Str("/raft".into())),
            ("cluster_log_cache_size", FileSetting::Int(1024)),
            ("cluster_log_snapshots", FileSetting::Int(3)),
            ("cluster_trailing_logs", FileSetting::Int(256)),
            ("cluster_sync", FileSetting::Bool(true)),
            (
                "cluster_proceed_on_restore_failure",
                FileSetting::Bool(false)
            ),
            ("cluster_allow_add_remove_node", FileSetting::Bool(true)),
            ("cluster_raft_logging", FileSetting::Bool(false)),
            ("cluster_raft_heartbeat_timeout", FileSetting::Nanos(2 * S)),
            ("cluster_raft_election_timeout", FileSetting::Nanos(2 * S)),
            ("cluster_raft_lease_timeout", FileSetting::Nanos(S)),
            ("cluster_raft_commit_timeout", FileSetting::Nanos(100 * ms)),
        ]
    );
    let cases: &[(&str, &str, &str)] = &[
        ("node_id", "1", "string, got int64"),
        ("log_path", "true", "string, got bool"),
        ("bootstrap", "b", "bool, got string"),
        ("sync", "1", "bool, got int64"),
        ("proceed_on_restore_failure", "[]", "bool, got slice"),
        ("allow_add_remove_node", "{}", "bool, got map"),
        ("raft_logging", "1.0", "bool, got float64"),
        ("bolt_free_list_sync", "x", "bool, got string"),
        ("bolt_free_list_map", "x", "bool, got string"),
        ("nodes_connections", "x", "bool, got string"),
        ("log_cache_size", "\"512\"", "int64, got string"),
        ("log_snapshots", "true", "int64, got bool"),
        ("trailing_logs", "1.5", "int64, got float64"),
        ("raft_heartbeat_timeout", "2", "string, got int64"),
        ("raft_election_timeout", "true", "string, got bool"),
        ("raft_lease_timeout", "1m", "string, got int64"),
        ("raft_commit_timeout", "[a]", "string, got slice"),
        ("peers", "\"a,b\"", "slice, got string"),
    ];
    for (key, value, kinds) in cases {
        assert_eq!(
            streaming_error(&format!("cluster {{\n  {key}: {value}\n}}\n")),
            format!("s.conf:2: parameter \"{key}\" value is expected to be {kinds}"),
        );
    }
    assert_eq!(
        streaming_error("cluster {\n  raft_lease_timeout: \"1x\"\n}\n"),
        r#"s.conf:2: time: unknown unit "x" in duration "1x""#
    );
    assert_eq!(
        streaming_error("cluster {\n  peers: [a, 2]\n}\n"),
        "s.conf:2: interface conversion: interface {} is int64, not string"
    );
}

#[test]
fn encryption_keys() {
    let o = streaming("Encrypt: true\nencryption_cipher: chacha\n");
    assert_eq!(o.encrypt, Some(true));
    assert_eq!(o.encryption_cipher.as_deref(), Some("chacha"));
    assert_eq!(o.encryption_key, None);
    assert_eq!(streaming("encrypt: false\n").encrypt, Some(false));
    // A key, even an empty one, turns encryption on.
    let o = streaming("streaming { encryption_key: \"s3cret\" }\n");
    assert_eq!(
        (o.encrypt, o.encryption_key.as_deref()),
        (Some(true), Some("s3cret"))
    );
    let o = streaming("encryption_key: \"\"\n");
    assert_eq!(
        (o.encrypt, o.encryption_key.as_deref()),
        (Some(true), Some(""))
    );
    // The file's order decides between the two keys.
    let o = streaming("encryption_key: k\nencrypt: false\n");
    assert_eq!(o.encrypt, Some(false));
    assert_eq!(
        streaming_error("encrypt: \"yes\"\n"),
        "s.conf:1: parameter \"encrypt\" value is expected to be bool, got string"
    );
    assert_eq!(
        streaming_error("encryption_key: 12\n"),
        "s.conf:1: parameter \"encryption_key\" value is expected to be string, got int64"
    );
    assert_eq!(
        streaming_error("encryption_cipher: true\n"),
        "s.conf:1: parameter \"encryption_cipher\" value is expected to be string, got bool"
    );
}

#[test]
fn every_nats_key_and_alias() {
    let o = nats(
        r#"
listen: "127.0.0.1:4333"
server_name: srv
http: 8223
http_base_path: "/nats"
authorization {
  user: alice
  password: "s3cret"
  timeout: 1.5
}
max_payload: 512KB
max_pending: 10MB
max_connections: 50
max_control_line: 2KB
max_subs: 100
ping_interval: "30s"
ping_max: 4
write_deadline: 3
lame_duck_duration: "30s"
lame_duck_grace_period: "5s"
debug: true
trace: false
logtime: false
logtime_utc: true
log_file: "/tmp/stan.log"
logfile_size_limit: 1MB
syslog: true
remote_syslog: "udp://127.0.0.1:514"
pid_file: "/tmp/stan.pid"
client_advertise: "nats.example.com:4333"
max_traced_msg_len: 64
ports_file_dir: "/tmp"
"#,
    );
    let want = NatsFileOptions {
        addr: Some("127.0.0.1".into()),
        port: Some(4333),
        server_name: Some("srv".into()),
        http_host: None,
        http_port: Some(8223),
        https_port: None,
        http_base_path: Some("/nats".into()),
        user: Some("alice".into()),
        pass: Some("s3cret".into()),
        token: Some(String::new()),
        auth_timeout: Some(1_500_000_000),
        max_payload: Some(512 * 1024),
        max_pending: Some(10 << 20),
        max_connections: Some(50),
        max_control_line: Some(2048),
        max_subscriptions: Some(100),
        ping_interval: Some(30 * S),
        ping_max: Some(4),
        write_deadline: Some(3 * S),
        debug: Some(true),
        trace: Some(false),
        logtime: Some(false),
        logtime_utc: Some(true),
        log_file: Some("/tmp/stan.log".into()),
        log_size_limit: Some(1 << 20),
        syslog: Some(true),
        remote_syslog: Some("udp://127.0.0.1:514".into()),
        pid_file: Some("/tmp/stan.pid".into()),
        users: None,
        accounts: None,
        no_auth_user: None,
        client_advertise: Some("nats.example.com:4333".into()),
        max_traced_msg_len: Some(64),
        ports_file_dir: Some("/tmp".into()),
        tls: None,
        cluster: None,
    };
    assert_eq!(o, want);

    let o = nats("port: 4444\nhost: 10.0.0.1\nmonitor_port: 8888\nlogfile: a.log\npidfile: a.pid\nmax_conn: 9\ntrace_verbose: true\nping_interval: 60\n");
    assert_eq!(
        (o.port, o.addr.as_deref(), o.http_port),
        (Some(4444), Some("10.0.0.1"), Some(8888))
    );
    assert_eq!(
        (o.log_file.as_deref(), o.pid_file.as_deref()),
        (Some("a.log"), Some("a.pid"))
    );
    assert_eq!(
        (o.max_connections, o.trace, o.ping_interval),
        (Some(9), Some(true), Some(60 * S))
    );
    let o = nats("HTTP_BASE_PATH: monitor/\nSysLog: yes\nremote_syslog: \"\"\n");
    assert_eq!(o.http_base_path.as_deref(), Some("monitor/"));
    assert_eq!(o.syslog, Some(true));
    assert_eq!(o.remote_syslog.as_deref(), Some(""));
    assert_eq!(nats("net: \"\"\n").addr.as_deref(), Some("0.0.0.0"));
    assert_eq!(nats("http_port: 1\n").http_port, Some(1));
    // The block sets all three credentials, the missing ones to "".
    let o = nats("authorization { token: abc }\n");
    assert_eq!(
        (o.user.as_deref(), o.pass.as_deref(), o.token.as_deref()),
        (Some(""), Some(""), Some("abc"))
    );
    let o = nats("authorization { Username: u, PASS: p }\n");
    assert_eq!(
        (o.user.as_deref(), o.pass.as_deref(), o.token.as_deref()),
        (Some("u"), Some("p"), Some(""))
    );
}

#[test]
fn listen_forms() {
    let cases: &[(&str, Option<&str>, i64)] = &[
        ("4222", None, 4222),
        (":4333", None, 4333),
        ("0.0.0.0:4222", Some("0.0.0.0"), 4222),
        ("localhost:1", Some("localhost"), 1),
        ("\"[::1]:4222\"", Some("::1"), 4222),
        ("\"h:-1\"", Some("h"), -1),
    ];
    for &(text, host, port) in cases {
        let o = nats(&format!("listen: {text}\n"));
        assert_eq!((o.addr.as_deref(), o.port), (host, Some(port)), "{text}");
    }
    let o = nats("http: \"127.0.0.1:8222\"\n");
    assert_eq!(
        o.http_host.map(|(h, p)| (h, p.line)),
        Some(("127.0.0.1".into(), 1))
    );
    assert_eq!(o.http_port, Some(8222));
    for (text, want) in [
        (
            "listen: \"4222\"",
            r#"n.conf:1: could not parse address string "4222""#,
        ),
        (
            "listen: \"::1:4222\"",
            r#"n.conf:1: could not parse address string "::1:4222""#,
        ),
        (
            "listen: \"[::1]4222\"",
            r#"n.conf:1: could not parse address string "[::1]4222""#,
        ),
        (
            "listen: \"h:port\"",
            r#"n.conf:1: could not parse port "port""#,
        ),
        ("listen: h:", r#"n.conf:1: could not parse port """#),
        (
            "listen: true",
            "n.conf:1: expected port or host:port, got bool",
        ),
        (
            "http: [8222]",
            "n.conf:1: expected port or host:port, got []interface {}",
        ),
    ] {
        assert_eq!(nats_error(&format!("{text}\n")), want, "{text}");
    }
}

#[test]
fn nats_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "port: \"4222\"\n",
            "n.conf:1: interface conversion: interface {} is string, not int64",
        ),
        (
            "debug: 1\n",
            "n.conf:1: interface conversion: interface {} is int64, not bool",
        ),
        (
            "server_name: {a: 1}\n",
            "n.conf:1: interface conversion: interface {} is map[string]interface {}, not string",
        ),
        (
            "\nauthorization: \"x\"\n",
            "n.conf:2: interface conversion: interface {} is string, not map[string]interface {}",
        ),
        (
            "authorization {\n  user: 5\n}\n",
            "n.conf:2: interface conversion: interface {} is int64, not string",
        ),
        (
            "authorization {\n  user: a\n  token: t\n}\n",
            "n.conf:1: Cannot have a user/pass and token",
        ),
        (
            "authorization {\n  usr: a\n}\n",
            "n.conf:2: unknown field \"usr\"",
        ),
        (
            "authorization { permissions {} }\n",
            "n.conf:1: parameter \"authorization.permissions\" is not supported yet by stan-server",
        ),
        (
            "max_payload: 3GB\n",
            "n.conf:1: max_payload value is too big",
        ),
        (
            "MAX_CONTROL_LINE: 2147483648\n",
            "n.conf:1: MAX_CONTROL_LINE value is too big",
        ),
        (
            "max_pending: -1\n",
            "n.conf:1: max_pending value can not be negative",
        ),
        (
            "ping_interval: \"2x\"\n",
            "n.conf:1: error parsing ping_interval: time: unknown unit \"x\" in duration \"2x\"",
        ),
        (
            "ping_interval: yes\n",
            "n.conf:1: interface conversion: interface {} is bool, not int64",
        ),
        (
            "ping_interval: \"-1s\"\n",
            "n.conf:1: ping_interval value can not be negative",
        ),
        (
            "http_base_path: 8\n",
            "n.conf:1: interface conversion: interface {} is int64, not string",
        ),
        (
            "syslog: \"true\"\n",
            "n.conf:1: interface conversion: interface {} is string, not bool",
        ),
        (
            "\nremote_syslog: [\"udp://h:514\"]\n",
            "n.conf:2: interface conversion: interface {} is []interface {}, not string",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(nats_error(text), *want, "{text:?}");
    }
    // A key that only serves as a variable is not an unknown field.
    let o = nats("authorization {\n  pw: \"p\"\n  user: u\n  password: $pw\n}\n");
    assert_eq!(o.pass.as_deref(), Some("p"));
}

#[test]
fn unsupported_nats_keys_are_refused_by_name() {
    for key in [
        "mappings",
        "gateway",
        "leafnodes",
        "jetstream",
        "operator",
        "resolver",
        "system_account",
        "no_system_account",
        "trusted_keys",
        "websocket",
        "mqtt",
        "prof_port",
        "Max_Sub_Tokens",
    ] {
        assert_eq!(
            nats_error(&format!("\n{key}: 1\n")),
            format!("n.conf:2: parameter \"{key}\" is not supported yet by stan-server"),
        );
    }
}

#[test]
fn nats_cluster_block() {
    let o = nats(
        "cluster {\n  name: east\n  listen: \"127.0.0.1:6333\"\n  \
         routes: [\"nats-route://a:6222\", \"nats://b:6222\"]\n  advertise: \"pub:7000\"\n  \
         no_advertise: true\n  connect_retries: 5\n}\n",
    );
    let c = o.cluster.expect("the block is read");
    assert_eq!(c.name.as_deref(), Some("east"));
    assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.port, Some(6333));
    assert_eq!(
        c.routes,
        Some(vec![
            "nats-route://a:6222".to_string(),
            "nats://b:6222".to_string()
        ])
    );
    assert_eq!(c.advertise.as_deref(), Some("pub:7000"));
    assert_eq!(c.no_advertise, Some(true));
    assert_eq!(c.connect_retries, Some(5));
    let c = nats("cluster {\n  host: h\n  port: 1\n  cluster_advertise: x\n}\n")
        .cluster
        .unwrap();
    assert_eq!((c.host.as_deref(), c.port), (Some("h"), Some(1)));
    assert_eq!(c.advertise.as_deref(), Some("x"));
}

#[test]
fn nats_cluster_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "cluster: 1\n",
            "n.conf:1: Expected map to define cluster, got int64",
        ),
        (
            "cluster {\n  bogus: 1\n}\n",
            "n.conf:2: unknown field \"bogus\"",
        ),
        (
            "cluster {\n  routes: \"nats://a:1\"\n}\n",
            "n.conf:2: interface conversion: interface {} is string, not []interface {}",
        ),
        (
            "cluster {\n  routes: [1]\n}\n",
            "n.conf:2: interface conversion: interface {} is int64, not string",
        ),
        (
            "cluster {\n  port: \"x\"\n}\n",
            "n.conf:2: interface conversion: interface {} is string, not int64",
        ),
        (
            "cluster {\n  no_advertise: 1\n}\n",
            "n.conf:2: interface conversion: interface {} is int64, not bool",
        ),
        (
            "cluster {\n  authorization { user: a, password: b }\n}\n",
            "n.conf:2: parameter \"cluster.authorization\" is not supported yet by stan-server",
        ),
        (
            "cluster {\n  tls { }\n}\n",
            "n.conf:2: parameter \"cluster.tls\" is not supported yet by stan-server",
        ),
        (
            "cluster {\n  permissions { }\n}\n",
            "n.conf:2: parameter \"cluster.permissions\" is not supported yet by stan-server",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(nats_error(text), *want, "{text:?}");
    }
}

/// The streaming server reads a shared file's `tls { }` too: the NATS server's keys
/// there are no concern of its; the client side configures its own connections.
#[test]
fn streaming_tls_reads_only_the_client_side() {
    let o = streaming("tls {\n  cert_file: \"c.pem\"\n  key_file: \"k.pem\"\n  verify: true\n}\n");
    assert_eq!(o, StreamingFileOptions::default());
    let o = streaming(
        "TLS {\n  client_cert: \"c.pem\"\n  client_ca: \"ca.pem\"\n  skip_verify: true\n}\n",
    );
    assert_eq!(o.tls.client_cert.as_deref(), Some("c.pem"));
    assert_eq!(o.tls.client_ca.as_deref(), Some("ca.pem"));
    assert!(o.tls.skip_verify);
}

#[test]
fn nats_tls_block() {
    let o = nats(
        "tls {\n  cert_file: \"/c.pem\"\n  KEY_FILE: \"/k.pem\"\n  ca_file: \"/ca.pem\"\n  verify: true\n  timeout: 0.5\n  insecure: false\n}\n",
    );
    let tls = o.tls.expect("tls read");
    assert_eq!(tls.cert_file.as_deref(), Some("/c.pem"));
    assert_eq!(tls.key_file.as_deref(), Some("/k.pem"));
    assert_eq!(tls.ca_file.as_deref(), Some("/ca.pem"));
    assert!(tls.verify);
    assert_eq!(tls.timeout, 500_000_000);
    assert_eq!((&*tls.pos.file, tls.pos.line), ("n.conf", 1));
    assert_eq!(
        nats("tls { timeout: 3 }\n").tls.unwrap().timeout,
        3_000_000_000
    );
    assert_eq!(
        nats("tls { timeout: \"250ms\" }\n").tls.unwrap().timeout,
        250_000_000
    );
}

#[test]
fn nats_tls_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "tls: 1\n",
            "n.conf:1: interface conversion: interface {} is int64, not map[string]interface {}",
        ),
        (
            "tls {\n cert_file: 1\n}\n",
            "n.conf:2: error parsing tls config, expected 'cert_file' to be filename",
        ),
        (
            "tls {\n verify: \"yes\"\n}\n",
            "n.conf:2: error parsing tls config, expected 'verify' to be a boolean",
        ),
        (
            "tls {\n timeout: \"x\"\n}\n",
            "n.conf:2: error parsing tls config, 'timeout' time: invalid duration \"x\"",
        ),
        (
            "tls {\n timeout: true\n}\n",
            "n.conf:2: error parsing tls config, 'timeout' wrong type",
        ),
        (
            "tls {\n color: red\n}\n",
            "n.conf:2: error parsing tls config, unknown field [\"color\"]",
        ),
        (
            "tls {\n verify_cert_and_check_known_urls: true\n}\n",
            "n.conf:2: verify_cert_and_check_known_urls not supported in this context",
        ),
        (
            "tls {\n pinned_certs: []\n}\n",
            "n.conf:2: parameter \"tls.pinned_certs\" is not supported yet by stan-server",
        ),
        (
            "tls {\n cipher_suites: [\"TLS_AES_128_GCM_SHA256\"]\n}\n",
            "n.conf:2: parameter \"tls.cipher_suites\" is not supported yet by stan-server",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&nats_error(text), want, "{text:?}");
    }
}

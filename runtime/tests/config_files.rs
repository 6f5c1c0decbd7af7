//! Configuration files on the command line (shared/spec/OPERATIONS.md §1.1, §2.1):
//! which file configures what, command-line flags winning over files, and errors that
//! stop the server with exit code 1 and name the file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stan_core::nats::Auth;
use stan_core::streaming::limits::ChannelLimits;
use stan_runtime::cli::{
    parse, parse_flags, CliExit, Command, NatsClientOptions, Options, RaftOptions,
};
use stan_runtime::config_file::{apply_with, include_path};
use stan_runtime::server::node_config;
use stan_runtime::store::{FileStoreOptions, SqlStoreOptions};

const S: i64 = 1_000_000_000;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The options of a command line whose files are read from disk, with `$VAR` taken
/// from `env`.
fn run_with_env(list: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
    let mut opts = match parse_flags(&args(list)) {
        Ok(Command::Run(opts)) => *opts,
        other => panic!("{list:?} gave {other:?}"),
    };
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |name: &str| env.get(name).cloned();
    apply_with(&mut opts, &mut |path: &Path| std::fs::read(path), &lookup)?;
    Ok(opts)
}

fn run(list: &[&str]) -> Options {
    run_with_env(list, &[("FIXTURE_SECRET", "pw")]).unwrap_or_else(|e| panic!("{list:?}: {e}"))
}

/// What `stan-server` prints and exits with for this command line.
fn exit(list: &[&str]) -> CliExit {
    match parse(&args(list)) {
        Err(exit) => exit,
        other => panic!("{list:?} gave {other:?}"),
    }
}

/// A directory of its own for a test's files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("stan-rs-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn per_channel(entries: &[(&str, ChannelLimits)]) -> BTreeMap<String, ChannelLimits> {
    entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn every_supported_key_reaches_the_options() {
    let o = run(&["-c", &fixture("all_keys.conf")]);
    let want = Options {
        addr: "127.0.0.1".into(),
        port: 4333,
        server_name: Some("fixture-server".into()),
        pid_file: Some("/tmp/stan-rs-fixture.pid".into()),
        client_advertise: Some("nats.example.com:4333".into()),
        max_traced_msg_len: 256,
        ports_file_dir: Some("/tmp".into()),
        cluster_listen: Some("127.0.0.1:6333".into()),
        routes: Some("nats-route://127.0.0.1:6334,nats-route://127.0.0.1:6335".into()),
        cluster_name: Some("fixture-routes".into()),
        cluster_advertise: Some("routes.example.com:6333".into()),
        no_advertise: true,
        connect_retries: 3,
        check_config: false,
        https_port: 8443,
        http_host: None,
        http_port: 8333,
        config_file: Some(fixture("all_keys.conf")),
        log_file: Some("/tmp/stan-rs-fixture.log".into()),
        log_size_limit: 10 << 20,
        syslog: true,
        remote_syslog: Some("udp://127.0.0.1:5514".into()),
        logtime: false,
        logtime_utc: true,
        debug: true,
        trace: true,
        user: Some("alice".into()),
        pass: Some("pw".into()),
        auth: None,
        users: None,
        accounts: Vec::new(),
        no_auth_user: None,
        tls: false,
        tlsverify: false,
        tlscert: None,
        tlskey: None,
        tlscacert: None,
        tls_config: None,
        tls_timeout: Duration::from_secs(2),
        cluster_id: "fixture-cluster".into(),
        store: "FILE".into(),
        stan_config_file: None,
        max_channels: 50,
        max_subs: 20,
        max_msgs: 10_000,
        max_bytes: 64 << 20,
        max_age: 2 * 3600 * S,
        max_inactivity: 30 * 60 * S,
        hb_interval: Duration::from_secs(5),
        hb_timeout: Duration::from_millis(1500),
        hb_fail_count: 4,
        stan_debug: true,
        stan_trace: true,
        replace_durable: true,
        dir: Some("/tmp/stan-rs-fixture-store".into()),
        encrypt: true,
        encryption_cipher: Some("CHACHA".into()),
        encryption_key: Some("pw".into()),
        ft_group: Some("fixture-group".into()),
        raft: RaftOptions {
            clustered: true,
            node_id: Some("fixture-node".into()),
            bootstrap: false,
            peers: vec!["fixture-b".into(), "fixture-c".into()],
            log_path: Some("/tmp/stan-rs-fixture-raft".into()),
            log_cache_size: 1024,
            log_snapshots: 3,
            trailing_logs: 2048,
            sync: true,
            raft_logging: true,
            proceed_on_restore_failure: true,
            allow_add_remove_node: false,
            heartbeat_timeout: Duration::from_secs(3),
            election_timeout: Duration::from_secs(4),
            lease_timeout: Duration::from_millis(1500),
            commit_timeout: Duration::from_millis(50),
        },
        nats_server: Some("nats://127.0.0.1:4999".into()),
        nats_client: NatsClientOptions {
            username: Some("alice".into()),
            password: Some("pw".into()),
            token: Some("fixture-token".into()),
            credentials: Some("/tmp/stan-rs-fixture.creds".into()),
            nkey_seed_file: Some("/tmp/stan-rs-fixture.nk".into()),
            secure: true,
            tls_cert: Some("/tmp/c.pem".into()),
            tls_key: Some("/tmp/k.pem".into()),
            tls_ca: Some("/tmp/ca.pem".into()),
            tls_server_name: Some("nats.fixture".into()),
            tls_skip_verify: true,
        },
        file: FileStoreOptions {
            compact_enabled: false,
            compact_frag: 40,
            compact_interval: 120,
            compact_min_size: 2 << 20,
            buffer_size: 1 << 20,
            crc: true,
            crc_poly: 2_197_175_160,
            sync: false,
            slice_max_msgs: 5000,
            slice_max_bytes: 16 << 20,
            slice_max_age: Duration::from_secs(3600),
            slice_archive_script: "/usr/local/bin/archive.sh".into(),
            fds_limit: 64,
            parallel_recovery: 2,
            truncate_bad_eof: false,
            read_buffer_size: 512 << 10,
            auto_sync: Duration::from_secs(30),
        },
        sql: SqlStoreOptions {
            driver: "mysql".into(),
            source: "nss:pwd@tcp(db:3306)/nss_db".into(),
            no_caching: true,
            max_open_conns: 4,
            bulk_insert_limit: 50,
        },
        http_base_path: "/fixture".into(),
        partitioning: true,
        discover_prefix: "_FIX.discover".into(),
        per_channel: per_channel(&[
            (
                "orders.>",
                ChannelLimits {
                    max_msgs: 500,
                    ..Default::default()
                },
            ),
            (
                "orders.eu",
                ChannelLimits {
                    max_age: 3600 * S,
                    max_inactivity: -1,
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
        ]),
        max_payload: 512 * 1024,
        max_pending: 32 << 20,
        max_connections: 100,
        max_control_line: 8192,
        max_subscriptions: 50,
        ping_interval: Duration::from_secs(45),
        ping_max: 5,
        write_deadline: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(3),
        explicit: ["config_file"].into(),
    };
    assert_eq!(o, want);

    // And on into the core configuration.
    let cfg = node_config(&o, 7);
    let stan = cfg.streaming.unwrap();
    assert_eq!(stan.cluster_id, "fixture-cluster");
    assert_eq!(stan.discover_prefix, "_FIX.discover");
    assert_eq!(stan.limits.max_channels, 50);
    assert_eq!(stan.limits.channel.max_msgs, 10_000);
    assert_eq!(stan.limits.per_channel, want.per_channel);
    assert_eq!(stan.hb_fail_count, 4);
    assert!(stan.replace_durable);
    assert_eq!(cfg.nats.host, "127.0.0.1");
    assert_eq!(cfg.nats.port, 4333);
    assert_eq!(cfg.nats.max_payload, 512 * 1024);
    assert_eq!(cfg.nats.max_pending, 32 << 20);
    assert_eq!(cfg.nats.max_connections, 100);
    assert_eq!(cfg.nats.max_control_line, 8192);
    assert_eq!(cfg.nats.max_subscriptions, 50);
    assert_eq!(cfg.nats.ping_interval, Duration::from_secs(45));
    assert_eq!(cfg.nats.ping_max, 5);
    assert_eq!(cfg.nats.auth_timeout, Duration::from_secs(3));
    assert_eq!(
        cfg.nats.auth,
        Auth::UserPass {
            user: "alice".into(),
            pass: "pw".into()
        }
    );
}

#[test]
fn without_a_streaming_block_every_top_level_key_counts() {
    let o = run(&["-sc", &fixture("aliases.conf")]);
    // `-sc` alone: the NATS half reads the same file.
    assert_eq!(
        (o.addr.as_str(), o.port, o.http_port),
        ("10.1.2.3", 4444, 8444)
    );
    assert_eq!(o.log_file.as_deref(), Some("aliases.log"));
    assert_eq!(o.pid_file.as_deref(), Some("aliases.pid"));
    assert_eq!(o.max_connections, 7);
    assert_eq!(o.cluster_id, "flat");
    assert!(o.stan_debug && !o.stan_trace && o.replace_durable);
    assert_eq!(
        (o.hb_interval, o.hb_timeout, o.hb_fail_count),
        (Duration::from_secs(7), Duration::from_secs(3), 2)
    );
    assert_eq!(
        (o.max_channels, o.max_subs, o.max_msgs, o.max_bytes),
        (3, 4, 5, 1024)
    );
    assert_eq!((o.max_age, o.max_inactivity), (90 * S, 3600 * S));
    assert!(o.per_channel.is_empty());
}

#[test]
fn with_both_files_each_half_reads_its_own() {
    let o = run(&[
        "-c",
        &fixture("aliases.conf"),
        "-sc",
        &fixture("all_keys.conf"),
    ]);
    // NATS from -c.
    assert_eq!((o.addr.as_str(), o.port), ("10.1.2.3", 4444));
    assert_eq!(o.user, None);
    assert!(!o.debug);
    // Streaming from -sc.
    assert_eq!(o.cluster_id, "fixture-cluster");
    assert_eq!(o.max_channels, 50);
    assert_eq!(o.per_channel.len(), 3);
}

#[test]
fn command_line_flags_win_over_files() {
    let o = run(&[
        "-c",
        &fixture("all_keys.conf"),
        "-p",
        "5555",
        "-a",
        "0.0.0.0",
        "--cluster_id",
        "from-flag",
        "-mm",
        "7",
        "-mb",
        "2KB",
        "-ma",
        "5m",
        "-hbi",
        "1s",
        "-SDV=false",
        "-D=false",
        "--user",
        "bob",
    ]);
    assert_eq!(
        (o.port, o.addr.as_str(), o.cluster_id.as_str()),
        (5555, "0.0.0.0", "from-flag")
    );
    assert_eq!((o.max_msgs, o.max_bytes, o.max_age), (7, 2048, 300 * S));
    assert_eq!(o.hb_interval, Duration::from_secs(1));
    assert!(!o.stan_debug && !o.stan_trace && !o.debug);
    assert_eq!(o.user.as_deref(), Some("bob"));
    // What the flags left alone still comes from the file.
    assert_eq!(o.pass.as_deref(), Some("pw"));
    assert_eq!((o.max_channels, o.max_subs), (50, 20));
    assert_eq!(o.hb_timeout, Duration::from_millis(1500));
    assert!(o.trace);
    assert_eq!(o.per_channel.len(), 3);
    // `file { }` settings yield to their `--file_*` flags, and `dir` to `--dir`.
    let o = run(&[
        "-c",
        &fixture("all_keys.conf"),
        "--file_sync=true",
        "--file_slice_max_msgs",
        "9",
        "--dir",
        "/flag/dir",
        "-st",
        "memory",
    ]);
    assert!(o.file.sync);
    assert_eq!(o.file.slice_max_msgs, 9);
    assert_eq!(o.file.fds_limit, 64);
    assert_eq!(o.dir.as_deref(), Some("/flag/dir"));
    assert_eq!(o.store, "MEMORY");
    assert_eq!(o.ft_group.as_deref(), Some("fixture-group"));
    // So do `sql { }` settings to their `--sql_*` flags.
    let o = run(&[
        "-c",
        &fixture("all_keys.conf"),
        "--sql_driver",
        "postgres",
        "--sql_no_caching=false",
        "--sql_bulk_insert_limit",
        "0",
    ]);
    assert_eq!(
        (
            o.sql.driver.as_str(),
            o.sql.no_caching,
            o.sql.bulk_insert_limit
        ),
        ("postgres", false, 0)
    );
    assert_eq!(
        (o.sql.source.as_str(), o.sql.max_open_conns),
        ("nss:pwd@tcp(db:3306)/nss_db", 4)
    );
    let o = run(&["-c", &fixture("all_keys.conf"), "--ft_group", "flag-group"]);
    assert_eq!(o.ft_group.as_deref(), Some("flag-group"));
    assert!(!o.explicit.contains("file_fds_limit"));
    // Logging destinations yield to their flags.
    let o = run(&[
        "-c",
        &fixture("all_keys.conf"),
        "-s=false",
        "-r",
        "tcp://127.0.0.1:6514",
    ]);
    assert!(!o.syslog);
    assert_eq!(o.remote_syslog.as_deref(), Some("tcp://127.0.0.1:6514"));
    assert_eq!(o.http_base_path, "/fixture");
    // Flags set to their default values win too.
    let o = run(&["--max_msgs=1000000", "-c", &fixture("all_keys.conf")]);
    assert_eq!(o.max_msgs, 1_000_000);
}

#[test]
fn encryption_keys_and_their_flags() {
    use stan_runtime::encryption::enabled;
    let dir = Dir::new("encryption");
    let file = dir.file(
        "enc.conf",
        "streaming {\n  encrypt: true\n  encryption_cipher: \"CHACHA\"\n  encryption_key: \"filekey\"\n}\n",
    );
    let o = run(&["-sc", &file]);
    assert!(o.encrypt && enabled(&o));
    assert_eq!(o.encryption_cipher.as_deref(), Some("CHACHA"));
    assert_eq!(o.encryption_key.as_deref(), Some("filekey"));
    let o = run(&[
        "-sc",
        &file,
        "--encryption_cipher",
        "aes",
        "--encryption_key",
        "flagkey",
    ]);
    assert_eq!(o.encryption_cipher.as_deref(), Some("aes"));
    assert_eq!(o.encryption_key.as_deref(), Some("flagkey"));
    // `--encrypt=false` yields to a configured key, which turns encryption on by itself.
    let o = run(&["-sc", &file, "--encrypt=false"]);
    assert!(!o.encrypt && enabled(&o));
    // An empty key in a file still turns encryption on (and the start then fails
    // without a key in the environment).
    let empty = dir.file("empty.conf", "encryption_key: \"\"\n");
    let o = run(&["-sc", &empty]);
    assert!(o.encrypt && o.encryption_key.is_none());
    let o = run(&["-sc", &empty, "--encrypt=false"]);
    assert!(!enabled(&o));
    // A key on the command line turns encryption on over a file that says off.
    let off = dir.file("off.conf", "encrypt: false\n");
    let o = run(&["-sc", &off, "--encryption_key", "k"]);
    assert!(!o.encrypt && enabled(&o));
}

#[test]
fn stan_server_reads_the_files_itself() {
    let dir = Dir::new("parse");
    let file = dir.file(
        "stan.conf",
        "streaming { cid: viaparse, store_limits { channels { a: { mm: 0 } } } }\nport: 4999\n",
    );
    match parse(&args(&["-sc", &file, "-p", "1"])) {
        Ok(Command::Run(o)) => {
            assert_eq!((o.cluster_id.as_str(), o.port), ("viaparse", 1));
            assert_eq!(o.per_channel["a"].max_msgs, -1);
        }
        other => panic!("{other:?}"),
    }
}

fn failure(list: &[&str]) -> String {
    let e = exit(list);
    assert_eq!(e.code, 1, "{list:?}");
    assert!(e.stdout.is_empty());
    e.stderr
}

#[test]
fn missing_file() {
    assert_eq!(
        failure(&["-c", "/nonexistent/stan-rs.conf"]),
        "error opening config file: open /nonexistent/stan-rs.conf: no such file or directory\n"
    );
    let dir = Dir::new("isdir");
    let path = dir.0.display().to_string();
    assert_eq!(
        failure(&["-sc", &path]),
        format!("error opening config file: read {path}: is a directory\n")
    );
}

#[test]
fn malformed_files_name_file_line_and_key() {
    let dir = Dir::new("malformed");
    let cases: &[(&str, &str)] = &[
        ("port: 4222\nstreaming {\n  id: x\n", "4: Unexpected EOF processing map."),
        ("\nstreaming {\n  hb_interval: 10\n}\n", "3: parameter \"hb_interval\" value is expected to be string, got int64"),
        ("store_limits {\n  max_age: 1m\n}\n", "2: parameter \"max_age\" value is expected to be string, got int64"),
        ("store_limits {\n  max_age: \"1d\"\n}\n", "2: time: unknown unit \"d\" in duration \"1d\""),
        ("store_limits {\n  max_age: \"soon\"\n}\n", "2: time: invalid duration \"soon\""),
        ("\n\nstreaming: [1, 2]\n", "3: expected streaming section to be a map/struct, got [1 2]"),
        ("limits: 1\n", "1: expected store limits to be a map/struct, got 1"),
        ("limits { channels: x }\n", "1: expected per channel limits to be a map/struct, got x"),
        ("limits {\n channels {\n  a: 5\n }\n}\n", "3: expected channel limits to be a map/struct, got 5"),
        ("store: disk\n", "1: unknown store type: disk"),
        ("file {\n  sync: \"yes\"\n}\n", "2: parameter \"sync\" value is expected to be bool, got string"),
        ("file: [1]\n", "1: expected file options to be a map/struct, got [1]"),
        ("dir: 1\n", "1: parameter \"dir\" value is expected to be string, got int64"),
        ("x: 1\npartitioning: 1\n", "2: parameter \"partitioning\" value is expected to be bool, got int64"),
        ("ft_group: [1]\n", "1: parameter \"ft_group\" value is expected to be string, got slice"),
        ("tls {\n  cert_file: x\n}\n", "1: missing 'key_file' in TLS configuration"),
        // Both servers read a shared file's `tls { }`; the NATS server goes first.
        ("tls {\n  client_cert: x\n}\n", "2: error parsing tls config, unknown field [\"client_cert\"]"),
        ("streaming { cluster {\n  peers: \"a,b\"\n} }\n", "2: parameter \"peers\" value is expected to be slice, got string"),
        ("streaming {\n  secure: 1\n}\n", "2: parameter \"secure\" value is expected to be bool, got int64"),
        ("\nsyslog: \"yes\"\n", "2: interface conversion: interface {} is string, not bool"),
        ("port: x\n", "1: interface conversion: interface {} is string, not int64"),
        ("a: $STAN_RS_SURELY_UNDEFINED_VARIABLE\n", "1: variable reference for 'STAN_RS_SURELY_UNDEFINED_VARIABLE' on line 1 can not be found"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.file(&format!("bad{i}.conf"), text);
        assert_eq!(
            failure(&["-c", &path]),
            format!("{path}:{want}\n"),
            "{text:?}"
        );
    }
    // An include of a missing file names the including file and line.
    let path = dir.file("includer.conf", "port: 1\ninclude \"missing.conf\"\n");
    let missing = dir.0.join("missing.conf").display().to_string();
    assert_eq!(
        failure(&["-c", &path]),
        format!("{path}:2: error parsing include file 'missing.conf', error opening config file: open {missing}: no such file or directory\n")
    );
    // An error inside an included file names that file.
    let inner = dir.file("inner.conf", "\nmax_payload: \"big\"\n");
    let path = dir.file("outer.conf", "include inner.conf\n");
    assert_eq!(
        failure(&["-c", &path]),
        format!("{inner}:2: interface conversion: interface {{}} is string, not int64\n")
    );
    // The NATS half reads its file first.
    let n = dir.file("n.conf", "port: x\n");
    let s = dir.file("s.conf", "hbi: 1\n");
    assert!(failure(&["-c", &n, "-sc", &s]).starts_with(&n));
    // The monitoring host may differ from the client host.
    let path = dir.file("http.conf", "\nhttp: \"127.0.0.1:8222\"\n");
    let o = run(&["-c", &path]);
    assert_eq!(
        (o.addr.as_str(), o.http_host.as_deref(), o.http_port),
        ("0.0.0.0", Some("127.0.0.1"), 8222)
    );
    let path = dir.file("https.conf", "https: \"localhost:8443\"\n");
    let o = run(&["-c", &path]);
    assert_eq!(
        (o.http_host.as_deref(), o.http_port, o.https_port),
        (Some("localhost"), 0, 8443)
    );
    let path = dir.file("https_port.conf", "https_port: 8443\n");
    assert_eq!(run(&["-c", &path]).https_port, 8443);
    assert_eq!(run(&["-c", &path, "-ms", "9443"]).https_port, 9443);
}

#[test]
fn environment_variables_in_files() {
    let o = run_with_env(
        &["-c", &fixture("e2e.conf")],
        &[("STAN_RS_E2E_MAX_MSGS", "1234")],
    )
    .unwrap();
    assert_eq!(o.max_msgs, 1234);
    let e = run_with_env(&["-c", &fixture("e2e.conf")], &[]).unwrap_err();
    assert_eq!(
        e,
        format!(
            "{}:9: variable reference for 'STAN_RS_E2E_MAX_MSGS' on line 9 can not be found",
            fixture("e2e.conf")
        )
    );
}

#[test]
fn include_paths_are_relative_to_the_including_file() {
    assert_eq!(include_path("nats.conf", "inc.conf"), "inc.conf");
    assert_eq!(
        include_path("/etc/stan/nats.conf", "inc.conf"),
        "/etc/stan/inc.conf"
    );
    assert_eq!(
        include_path("/etc/stan/nats.conf", "../x/inc.conf"),
        "/etc/x/inc.conf"
    );
    assert_eq!(
        include_path("conf/nats.conf", "./a/./b.conf"),
        "conf/a/b.conf"
    );
    assert_eq!(include_path("../nats.conf", "../b.conf"), "../../b.conf");
    // The Go server joins absolute paths to the directory too.
    assert_eq!(
        include_path("/etc/stan/nats.conf", "/abs.conf"),
        "/etc/stan/abs.conf"
    );
    assert_eq!(include_path("", "x.conf"), "x.conf");
}

#[test]
fn partitioning_comes_from_the_file_with_its_channels() {
    let dir = Dir::new("partitioning");
    let conf = dir.file(
        "p.conf",
        "partitioning: true\nstore_limits {\n  channels {\n    \"orders.>\": {}\n    audit: {}\n  }\n}\n",
    );
    let o = run(&["-c", &conf]);
    assert!(o.partitioning);
    let stan = node_config(&o, 1).streaming.unwrap();
    assert!(stan.partitioning);
    let names: Vec<&str> = stan.limits.per_channel.keys().map(String::as_str).collect();
    assert_eq!(names, ["audit", "orders.>"]);
    assert!(!run(&["-c", &dir.file("q.conf", "partitioning: false\n")]).partitioning);
    assert!(!Options::default().partitioning);
}

//! Command line of `stan-server`.
//!
//! Scripts and service files written for the Go server must keep working, so the
//! parser follows the Go `flag` package (shared/spec/OPERATIONS.md §1.1): `-name` and
//! `--name` are the same flag, values go as `-name=value` or `-name value`, booleans
//! only take `-name` or `-name=<bool>`, and parsing stops at the first positional
//! argument. The whole flag table of the Go server is known, so that a flag this server
//! does not implement yet is refused by name instead of being reported as unknown or,
//! worse, silently ignored.
//!
//! [`parse`] never prints or exits; it reads the configuration files named by `-c` and
//! `-sc` and lets explicit flags win over them (OPERATIONS.md §1.1). [`parse_flags`]
//! is the pure part, the flags alone. The caller writes [`CliExit::stdout`] and
//! [`CliExit::stderr`] and exits with [`CliExit::code`], or prints [`USAGE`],
//! [`VERSION_LINE`] or [`TLS_USAGE`] for the informational commands.

use stan_core::config::FileSetting;
use stan_core::gofmt::go_quote;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use stan_core::streaming::limits::ChannelLimits;

/// Version of the streaming server this binary stands in for.
pub const VERSION: &str = "0.25.6";

/// Version of the NATS server that the streaming server embeds.
pub const NATS_SERVER_VERSION: &str = "2.9.24";

/// What `-v`, `--version` and the `version` command print, newline excluded.
pub const VERSION_LINE: &str = "nats-streaming-server version 0.25.6, nats-server: v2.9.24";

/// What `-h`, `--help` and the `help` command print to stdout, byte for byte.
pub const USAGE: &str = include_str!("help.txt");

/// What `--help_tls` prints to stdout.
pub const TLS_USAGE: &str = "
TLS Server Options:
    --tls=<bool>             Enable TLS on client connections without asking for client certificates
    --tlscert <file>         Certificate presented to clients
    --tlskey <file>          Private key of that certificate
    --tlsverify=<bool>       Enable TLS and require clients to present a verified certificate
    --tlscacert <file>       CA certificate that client certificates must chain to

The same settings in a configuration file:

    tls {
      cert_file: \"./certs/server-cert.pem\"
      key_file:  \"./certs/server-key.pem\"
      ca_file:   \"./certs/ca.pem\"
      verify:    true
    }

";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start the server with these options.
    Run(Box<Options>),
    /// Print [`USAGE`] to stdout and exit 0.
    Help,
    /// Print [`VERSION_LINE`] and a newline to stdout and exit 0.
    Version,
    /// Print [`TLS_USAGE`] to stdout and exit 0.
    HelpTls,
    /// `-sl <command>[=<pid>]`: signal a running server instead of starting one.
    /// `pid` is the text after `=` as given, a process ID or the path of a PID file.
    Signal {
        command: String,
        pid: Option<String>,
    },
}

/// The command line cannot start a server: write `stdout` and `stderr` (each already
/// ends with a newline when not empty) and exit with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliExit {
    pub code: i32,
    pub stderr: String,
    pub stdout: String,
}

impl CliExit {
    /// Errors of the flag syntax itself print the usage and exit 0, as the Go server
    /// does: its usage printer exits before the flag library can exit 2.
    fn usage(message: String) -> CliExit {
        CliExit {
            code: 0,
            stderr: message + "\n",
            stdout: USAGE.to_string(),
        }
    }

    fn fail(message: String) -> CliExit {
        CliExit {
            code: 1,
            stderr: message + "\n",
            stdout: String::new(),
        }
    }
}

/// Raft clustering (OPERATIONS §1.2, §2.3), with the Go server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftOptions {
    pub clustered: bool,
    pub node_id: Option<String>,
    pub bootstrap: bool,
    /// The other members' node IDs, spaces trimmed.
    pub peers: Vec<String>,
    /// `None`: `<cluster ID>/<node ID>` under the working directory.
    pub log_path: Option<String>,
    // Tuning of the Go server's Raft library (its log cache and snapshots), accepted
    // and checked, with no counterpart here: this log keeps no cache and no snapshots.
    pub log_cache_size: i64,
    pub log_snapshots: i64,
    pub trailing_logs: i64,
    /// Every flush of the log and the store reaches the disk (replaces `file_sync`).
    pub sync: bool,
    /// Logs elections and role changes.
    pub raft_logging: bool,
    pub proceed_on_restore_failure: bool,
    pub allow_add_remove_node: bool,
    pub heartbeat_timeout: Duration,
    pub election_timeout: Duration,
    pub lease_timeout: Duration,
    pub commit_timeout: Duration,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            clustered: false,
            node_id: None,
            bootstrap: false,
            peers: Vec::new(),
            log_path: None,
            log_cache_size: 512,
            log_snapshots: 2,
            trailing_logs: 10240,
            sync: false,
            raft_logging: false,
            proceed_on_restore_failure: false,
            allow_add_remove_node: false,
            heartbeat_timeout: Duration::from_secs(2),
            election_timeout: Duration::from_secs(2),
            lease_timeout: Duration::from_secs(1),
            commit_timeout: Duration::from_millis(100),
        }
    }
}

/// `--cluster_peers`: comma separated, spaces around names trimmed, empty names
/// dropped.
fn peer_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Options of the supported flags, starting from the Go server's defaults.
///
/// Strings that have no default are `None` when absent or empty (an empty value means
/// "not set" to the Go server too). Integers are `i64` because Go's `int` is 64-bit,
/// so range errors match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-a`, `--addr`, `--net`: client listen host.
    pub addr: String,
    /// `-p`, `--port`: client port; -1 picks a random port.
    pub port: i64,
    /// `-n`, `--name`, `--server_name`: NATS server name (the server ID when `None`).
    pub server_name: Option<String>,
    /// `-P`, `--pid`: file to write the process ID to.
    pub pid_file: Option<String>,
    /// `--client_advertise`: the `host[:port]` INFO gives clients instead of the
    /// listen address.
    pub client_advertise: Option<String>,
    /// `--max_traced_msg_len`: payload bytes a trace line shows (0 = all).
    pub max_traced_msg_len: i64,
    /// `--ports_file_dir`: where to write the ports file.
    pub ports_file_dir: Option<String>,
    /// `--cluster`, `--cluster_listen`: the route listen URL (`nats://host:port`), or
    /// `cluster { listen }` as `host:port`.
    pub cluster_listen: Option<String>,
    /// `--routes`: route URLs, comma separated (`cluster { routes }` joined).
    pub routes: Option<String>,
    /// `--cluster_name`: the cluster name; generated when `None`.
    pub cluster_name: Option<String>,
    /// `--cluster_advertise`: the `host:port` other servers should use.
    pub cluster_advertise: Option<String>,
    /// `--no_advertise`: do not tell clients of other servers.
    pub no_advertise: bool,
    /// `--connect_retries`: attempts for routes learned from other servers.
    pub connect_retries: i64,
    /// `-t`: read the configuration, say whether it is valid, and exit.
    pub check_config: bool,
    /// `-m`, `--http_port`: monitoring port; 0 disables monitoring.
    pub http_port: i64,
    /// `-ms`, `--https_port`: monitoring port over TLS, with the certificate of the
    /// client TLS settings; 0 disables it.
    pub https_port: i64,
    /// The monitoring listeners' host (`http: "host:port"` in a file); the client
    /// host when `None`.
    pub http_host: Option<String>,
    /// `-c`, `--config`: NATS configuration file.
    pub config_file: Option<String>,
    /// `-l`, `--log`: log file instead of stderr.
    pub log_file: Option<String>,
    /// `--log_size_limit`: bytes after which the log file is rotated (≤ 0 = never).
    pub log_size_limit: i64,
    /// `-s`, `--syslog`: log to the local syslog daemon.
    pub syslog: bool,
    /// `-r`, `--remote_syslog`: log to the syslog server at this URL.
    pub remote_syslog: Option<String>,
    /// `-T`, `--logtime`: timestamps in log lines.
    pub logtime: bool,
    /// `--logtime_utc`: timestamps in UTC instead of local time.
    pub logtime_utc: bool,
    /// `-D`, `--debug` (also `-DV`, `-DVV`): NATS debug lines.
    pub debug: bool,
    /// `-V`, `--trace` (also `-DV`, `-VV`, `-DVV`): NATS trace lines.
    pub trace: bool,
    /// `--user`: user required from clients and used by the internal connections.
    pub user: Option<String>,
    /// `--pass`: password that goes with `user`.
    pub pass: Option<String>,
    /// `--auth`: token required from clients and used by the internal connections.
    pub auth: Option<String>,
    /// Users by name, each in its account (`authorization { users }`, `accounts`);
    /// when set, clients log in as one of them.
    pub users: Option<Vec<stan_core::nats::account::User>>,
    /// `accounts`: subject spaces besides `$G`.
    pub accounts: Vec<stan_core::nats::account::AccountConfig>,
    /// `no_auth_user`: clients without credentials log in as this user.
    pub no_auth_user: Option<String>,
    /// `--tls`: `--tls=false` turns off the TLS of a configuration file.
    pub tls: bool,
    /// `--tlsverify`: clients must present a verified certificate.
    pub tlsverify: bool,
    /// `--tlscert`: the server's certificate file.
    pub tlscert: Option<String>,
    /// `--tlskey`: the key file of that certificate.
    pub tlskey: Option<String>,
    /// `--tlscacert`: the CA file client certificates must chain to.
    pub tlscacert: Option<String>,
    /// TLS on client connections, from the `--tls*` flags or else the configuration
    /// file's `tls { }`; `None` without TLS.
    pub tls_config: Option<crate::tls::TlsOptions>,
    /// How long a client has to complete the TLS handshake (`tls { timeout }`).
    pub tls_timeout: Duration,
    /// `-cid`, `--cluster_id`.
    pub cluster_id: String,
    /// `-st`, `--store`: store type, upper-cased.
    pub store: String,
    /// `-sc`, `--stan_config`: streaming configuration file.
    pub stan_config_file: Option<String>,
    /// `-mc`, `--max_channels`; 0 is unlimited.
    pub max_channels: i64,
    /// `-msu`, `--max_subs`: subscriptions per channel; 0 is unlimited.
    pub max_subs: i64,
    /// `-mm`, `--max_msgs`: messages per channel; 0 is unlimited.
    pub max_msgs: i64,
    /// `-mb`, `--max_bytes`: bytes per channel; 0 is unlimited.
    pub max_bytes: i64,
    /// `-ma`, `--max_age` in nanoseconds; 0 is unlimited. Signed because the Go server
    /// accepts a negative value here and refuses it only at startup.
    pub max_age: i64,
    /// `-mi`, `--max_inactivity` in nanoseconds; 0 disables. Signed like `max_age`.
    pub max_inactivity: i64,
    /// `-hbi`, `--hb_interval`: server-to-client heartbeat interval.
    pub hb_interval: Duration,
    /// `-hbt`, `--hb_timeout`: heartbeat response timeout.
    pub hb_timeout: Duration,
    /// `-hbf`, `--hb_fail_count`: heartbeats a client may miss.
    pub hb_fail_count: i64,
    /// `-SD`, `--stan_debug` (also `-SDV`): streaming debug lines.
    pub stan_debug: bool,
    /// `-SV`, `--stan_trace` (also `-SDV`): streaming trace lines.
    pub stan_trace: bool,
    /// `--replace_durable`: a duplicate durable subscription replaces the active one.
    pub replace_durable: bool,
    /// `--dir`: FILE store root directory.
    pub dir: Option<String>,
    /// `--encrypt`: encryption at rest of message payloads.
    pub encrypt: bool,
    /// `--encryption_cipher`: `AES` or `CHACHA`; `None` picks the platform's default.
    pub encryption_cipher: Option<String>,
    /// `--encryption_key`: turns encryption on too. `NATS_STREAMING_ENCRYPTION_KEY`
    /// takes precedence when set.
    pub encryption_key: Option<String>,
    /// `--ft_group`: the fault-tolerance group; FT mode when set.
    pub ft_group: Option<String>,
    /// `--clustered` and the `--cluster_*` flags, or `cluster { }`.
    pub raft: RaftOptions,
    /// `-ns`, `--nats_server`: URL(s) of an external NATS server; none is embedded.
    pub nats_server: Option<String>,
    /// How the connections to an external NATS server authenticate and encrypt.
    pub nats_client: NatsClientOptions,
    /// The `--file_*` options.
    pub file: crate::store::FileStoreOptions,
    /// The `--sql_*` options.
    pub sql: crate::store::SqlStoreOptions,
    // The fields below have no flag: only configuration files set them.
    /// Path prefix of the NATS monitoring endpoints, as written.
    pub http_base_path: String,
    /// Channel partitioning: serve only the channels of `per_channel` (BEHAVIOUR §12).
    pub partitioning: bool,
    /// Discovery subject prefix.
    pub discover_prefix: String,
    /// Per-channel limits as configured: 0 inherits, negative is unlimited.
    pub per_channel: BTreeMap<String, ChannelLimits>,
    /// Largest message payload clients may publish, in bytes.
    pub max_payload: i64,
    /// Bytes that may wait toward one client before it is a slow consumer.
    pub max_pending: i64,
    pub max_connections: i64,
    pub max_control_line: i64,
    /// Subscriptions one client may hold (0 = unlimited); configuration file only.
    pub max_subscriptions: i64,
    pub ping_interval: Duration,
    /// Pings a client may leave unanswered.
    pub ping_max: i64,
    /// How long a write to a client may block before the client is closed as a slow
    /// consumer (zero = no limit); configuration file only.
    pub write_deadline: Duration,
    /// Time a client has to authenticate.
    pub auth_timeout: Duration,
    /// Names of the fields above that the command line set. Configuration files are
    /// applied after the command line is read, and must not override these.
    pub explicit: BTreeSet<&'static str>,
}

/// The streaming server's own connections to an external NATS server (`-ns`):
/// streaming configuration keys and the `-secure`/`-tls_client_*` flags. The
/// `--user`/`--pass`/`--auth` flags, when given, take precedence over `username`,
/// `password` and `token` here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsClientOptions {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// `credentials`: a file with a user JWT and its NKey seed.
    pub credentials: Option<String>,
    /// `nkey_seed_file`: a file with an NKey seed.
    pub nkey_seed_file: Option<String>,
    /// `-secure`, `secure`: TLS without verification of the server.
    pub secure: bool,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_ca: Option<String>,
    /// `tls { server_name }`: the name the server's certificate must carry.
    pub tls_server_name: Option<String>,
    /// `tls { skip_verify }`, `tls { insecure }`.
    pub tls_skip_verify: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            addr: "0.0.0.0".to_string(),
            port: 4222,
            server_name: None,
            pid_file: None,
            client_advertise: None,
            max_traced_msg_len: 0,
            ports_file_dir: None,
            cluster_listen: None,
            routes: None,
            cluster_name: None,
            cluster_advertise: None,
            no_advertise: false,
            connect_retries: 0,
            check_config: false,
            http_port: 0,
            https_port: 0,
            http_host: None,
            config_file: None,
            log_file: None,
            log_size_limit: 0,
            syslog: false,
            remote_syslog: None,
            logtime: true,
            logtime_utc: false,
            debug: false,
            trace: false,
            user: None,
            pass: None,
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
            cluster_id: "test-cluster".to_string(),
            store: "MEMORY".to_string(),
            stan_config_file: None,
            max_channels: 100,
            max_subs: 1000,
            max_msgs: 1_000_000,
            max_bytes: 1_024_000_000,
            max_age: 0,
            max_inactivity: 0,
            hb_interval: Duration::from_secs(30),
            hb_timeout: Duration::from_secs(10),
            hb_fail_count: 10,
            stan_debug: false,
            stan_trace: false,
            replace_durable: false,
            dir: None,
            encrypt: false,
            encryption_cipher: None,
            encryption_key: None,
            ft_group: None,
            raft: RaftOptions::default(),
            nats_server: None,
            nats_client: NatsClientOptions::default(),
            file: crate::store::FileStoreOptions::default(),
            sql: crate::store::SqlStoreOptions::default(),
            http_base_path: String::new(),
            partitioning: false,
            discover_prefix: "_STAN.discover".to_string(),
            per_channel: BTreeMap::new(),
            max_payload: 1024 * 1024,
            max_pending: 64 * 1024 * 1024,
            max_connections: 64 * 1024,
            max_control_line: 4096,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(2),
            explicit: BTreeSet::new(),
        }
    }
}

/// How a flag's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    /// Go `int`/`int64`, base prefixes allowed.
    Int,
    Str,
    /// Go duration, kept as signed nanoseconds.
    Duration,
    /// Go duration that must not be negative.
    Interval,
    /// Integer with an optional size suffix, read after the flag syntax is accepted.
    Size,
}

/// One flag of the Go server, under all its spellings.
// `default` and `hidden` are read only by the tests that keep this table in step with
// `Options::default()` and the usage text.
#[cfg_attr(not(test), allow(dead_code))]
struct Flag {
    names: &'static [&'static str],
    /// The [`Options`] field it sets, or a name of its own when it has no field.
    canonical: &'static str,
    kind: Kind,
    /// Go's default, as it would be written on the command line.
    default: &'static str,
    supported: bool,
    /// Not listed in the usage text.
    hidden: bool,
}

const YES: bool = true;
const NO: bool = false;

const fn f(
    names: &'static [&'static str],
    canonical: &'static str,
    kind: Kind,
    default: &'static str,
    supported: bool,
) -> Flag {
    Flag {
        names,
        canonical,
        kind,
        default,
        supported,
        hidden: false,
    }
}

const fn hidden(flag: Flag) -> Flag {
    Flag {
        hidden: true,
        ..flag
    }
}

use Kind::{Bool, Duration as Dur, Int, Interval, Size, Str};

/// Every flag of the Go server (OPERATIONS.md §1.2 and §1.3). Setting `supported` is
/// what enables a flag, once [`Options`] has a field named after `canonical`.
#[rustfmt::skip]
static FLAGS: &[Flag] = &[
    // Streaming server.
    f(&["cid", "cluster_id"], "cluster_id", Str, "test-cluster", YES),
    f(&["st", "store"], "store", Str, "MEMORY", YES),
    f(&["dir"], "dir", Str, "", YES),
    f(&["mc", "max_channels"], "max_channels", Int, "100", YES),
    f(&["msu", "max_subs"], "max_subs", Int, "1000", YES),
    f(&["mm", "max_msgs"], "max_msgs", Int, "1000000", YES),
    f(&["mb", "max_bytes"], "max_bytes", Size, "1024000000", YES),
    f(&["ma", "max_age"], "max_age", Dur, "0", YES),
    f(&["mi", "max_inactivity"], "max_inactivity", Dur, "0", YES),
    f(&["ns", "nats_server"], "nats_server", Str, "", YES),
    f(&["sc", "stan_config"], "stan_config_file", Str, "", YES),
    f(&["hbi", "hb_interval"], "hb_interval", Interval, "30s", YES),
    f(&["hbt", "hb_timeout"], "hb_timeout", Interval, "10s", YES),
    f(&["hbf", "hb_fail_count"], "hb_fail_count", Int, "10", YES),
    f(&["ft_group"], "ft_group", Str, "", YES),
    f(&["SD", "stan_debug"], "stan_debug", Bool, "false", YES),
    f(&["SV", "stan_trace"], "stan_trace", Bool, "false", YES),
    f(&["SDV"], "SDV", Bool, "false", YES),
    f(&["secure"], "secure", Bool, "false", YES),
    f(&["tls_client_key"], "tls_client_key", Str, "", YES),
    f(&["tls_client_cert"], "tls_client_cert", Str, "", YES),
    f(&["tls_client_cacert"], "tls_client_cacert", Str, "", YES),
    f(&["encrypt"], "encrypt", Bool, "false", YES),
    f(&["encryption_cipher"], "encryption_cipher", Str, "", YES),
    f(&["encryption_key"], "encryption_key", Str, "", YES),
    f(&["replace_durable"], "replace_durable", Bool, "false", YES),
    f(&["syslog_name"], "syslog_name", Str, "", YES),
    hidden(f(&["io_batch_size"], "io_batch_size", Int, "1024", NO)),
    hidden(f(&["io_sleep_time"], "io_sleep_time", Int, "0", NO)),
    // Streaming clustering.
    f(&["clustered"], "clustered", Bool, "false", YES),
    f(&["cluster_node_id"], "cluster_node_id", Str, "", YES),
    f(&["cluster_bootstrap"], "cluster_bootstrap", Bool, "false", YES),
    f(&["cluster_peers"], "cluster_peers", Str, "", YES),
    f(&["cluster_log_path"], "cluster_log_path", Str, "", YES),
    f(&["cluster_log_cache_size"], "cluster_log_cache_size", Int, "512", YES),
    f(&["cluster_log_snapshots"], "cluster_log_snapshots", Int, "2", YES),
    f(&["cluster_trailing_logs"], "cluster_trailing_logs", Int, "10240", YES),
    f(&["cluster_sync"], "cluster_sync", Bool, "false", YES),
    f(&["cluster_raft_logging"], "cluster_raft_logging", Bool, "false", YES),
    hidden(f(&["cluster_proceed_on_restore_failure"], "cluster_proceed_on_restore_failure", Bool, "false", YES)),
    f(&["cluster_allow_add_remove_node"], "cluster_allow_add_remove_node", Bool, "false", YES),
    // File store.
    f(&["file_compact_enabled"], "file_compact_enabled", Bool, "true", YES),
    f(&["file_compact_frag"], "file_compact_frag", Int, "50", YES),
    f(&["file_compact_interval"], "file_compact_interval", Int, "300", YES),
    f(&["file_compact_min_size"], "file_compact_min_size", Size, "1048576", YES),
    f(&["file_buffer_size"], "file_buffer_size", Size, "2097152", YES),
    f(&["file_crc"], "file_crc", Bool, "true", YES),
    f(&["file_crc_poly"], "file_crc_poly", Int, "3988292384", YES),
    f(&["file_sync"], "file_sync", Bool, "true", YES),
    f(&["file_slice_max_msgs"], "file_slice_max_msgs", Int, "0", YES),
    f(&["file_slice_max_bytes"], "file_slice_max_bytes", Size, "67108864", YES),
    f(&["file_slice_max_age"], "file_slice_max_age", Dur, "0", YES),
    f(&["file_slice_archive_script"], "file_slice_archive_script", Str, "", YES),
    f(&["file_fds_limit"], "file_fds_limit", Int, "0", YES),
    f(&["file_parallel_recovery"], "file_parallel_recovery", Int, "1", YES),
    f(&["file_truncate_bad_eof"], "file_truncate_bad_eof", Bool, "false", YES),
    f(&["file_read_buffer_size"], "file_read_buffer_size", Size, "2097152", YES),
    f(&["file_auto_sync"], "file_auto_sync", Dur, "1m", YES),
    // SQL store.
    f(&["sql_driver"], "sql_driver", Str, "", YES),
    f(&["sql_source"], "sql_source", Str, "", YES),
    f(&["sql_no_caching"], "sql_no_caching", Bool, "false", YES),
    f(&["sql_max_open_conns"], "sql_max_open_conns", Int, "0", YES),
    f(&["sql_bulk_insert_limit"], "sql_bulk_insert_limit", Int, "0", YES),
    // Embedded NATS server.
    f(&["a", "addr", "net"], "addr", Str, "0.0.0.0", YES),
    f(&["p", "port"], "port", Int, "4222", YES),
    f(&["n", "name", "server_name"], "server_name", Str, "", YES),
    f(&["client_advertise"], "client_advertise", Str, "", YES),
    f(&["P", "pid"], "pid_file", Str, "", YES),
    f(&["ports_file_dir"], "ports_file_dir", Str, "", YES),
    f(&["m", "http_port"], "http_port", Int, "0", YES),
    f(&["ms", "https_port"], "https_port", Int, "0", YES),
    f(&["c", "config"], "config_file", Str, "", YES),
    hidden(f(&["t"], "t", Bool, "false", YES)),
    f(&["sl", "signal"], "signal", Str, "", YES),
    f(&["profile"], "profile", Int, "0", NO),
    // Logging.
    f(&["l", "log"], "log_file", Str, "", YES),
    f(&["log_size_limit"], "log_size_limit", Int, "0", YES),
    f(&["T", "logtime"], "logtime", Bool, "true", YES),
    f(&["logtime_utc"], "logtime_utc", Bool, "false", YES),
    f(&["s", "syslog"], "syslog", Bool, "false", YES),
    f(&["r", "remote_syslog"], "remote_syslog", Str, "", YES),
    f(&["D", "debug"], "debug", Bool, "false", YES),
    f(&["V", "trace"], "trace", Bool, "false", YES),
    f(&["VV"], "VV", Bool, "false", YES),
    f(&["DV"], "DV", Bool, "false", YES),
    f(&["DVV"], "DVV", Bool, "false", YES),
    f(&["max_traced_msg_len"], "max_traced_msg_len", Int, "0", YES),
    // Authorization.
    f(&["user"], "user", Str, "", YES),
    f(&["pass"], "pass", Str, "", YES),
    f(&["auth"], "auth", Str, "", YES),
    // NATS TLS.
    f(&["tls"], "tls", Bool, "false", YES),
    f(&["tlsverify"], "tlsverify", Bool, "false", YES),
    f(&["tlscert"], "tlscert", Str, "", YES),
    f(&["tlskey"], "tlskey", Str, "", YES),
    f(&["tlscacert"], "tlscacert", Str, "", YES),
    // NATS clustering.
    f(&["routes"], "routes", Str, "", YES),
    f(&["cluster", "cluster_listen"], "cluster", Str, "", YES),
    f(&["cluster_advertise"], "cluster_advertise", Str, "", YES),
    f(&["no_advertise"], "no_advertise", Bool, "false", YES),
    f(&["connect_retries"], "connect_retries", Int, "0", YES),
    f(&["cluster_name"], "cluster_name", Str, "", YES),
    // JetStream has no use next to a streaming server.
    hidden(f(&["js", "jetstream"], "jetstream", Bool, "false", NO)),
    hidden(f(&["sd", "store_dir"], "store_dir", Str, "", NO)),
    // Common.
    f(&["h", "help"], "help", Bool, "false", YES),
    f(&["v", "version"], "version", Bool, "false", YES),
    f(&["help_tls"], "help_tls", Bool, "false", YES),
];

fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|flag| flag.names.contains(&name))
}

/// A typed flag value, as accepted by the flag syntax.
#[derive(Debug, Clone)]
enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
    Nanos(i64),
    /// Converted once the informational flags had their chance, as the Go server
    /// does.
    Size(String),
}

/// One flag as it appeared on the command line.
struct Setting {
    flag: &'static Flag,
    /// The spelling used, for messages.
    name: String,
    value: Value,
}

/// Reads the command line (without the program name), then the configuration files
/// it names; an error in a file exits 1 with the file, line and reason on stderr.
pub fn parse(args: &[String]) -> Result<Command, CliExit> {
    let mut command = parse_flags(args)?;
    if let Command::Run(options) = &mut command {
        crate::config_file::apply(options).map_err(CliExit::fail)?;
        // Route URLs and the cluster address are checked with the rest, so that `-t`
        // reports them too.
        crate::routes::cluster_config(options).map_err(CliExit::fail)?;
        // The NATS server reads the certificate files while reading its options.
        if let Some(tls) = &options.tls_config {
            crate::tls::load(tls).map_err(CliExit::fail)?;
        }
    }
    Ok(command)
}

/// Reads the command line alone, leaving `-c` and `-sc` as names of files to read.
pub fn parse_flags(args: &[String]) -> Result<Command, CliExit> {
    let (settings, positional) = scan(args)?;

    let last_bool = |canonical: &str| {
        settings
            .iter()
            .rev()
            .find(|s| s.flag.canonical == canonical)
            .is_some_and(|s| matches!(s.value, Value::Bool(true)))
    };
    if last_bool("version") {
        return Ok(Command::Version);
    }
    if last_bool("help") {
        return Ok(Command::Help);
    }
    if last_bool("help_tls") {
        return Ok(Command::HelpTls);
    }
    // Only the first positional argument is looked at, and case does not matter.
    if let Some(arg) = positional.first() {
        return match arg.to_lowercase().as_str() {
            "version" => Ok(Command::Version),
            "help" => Ok(Command::Help),
            _ => Err(CliExit::fail(format!(
                "unrecognized command: {}",
                go_quote(arg)
            ))),
        };
    }

    if let Some(s) = settings.iter().find(|s| !s.flag.supported) {
        return Err(CliExit::fail(format!(
            "flag -{} is not supported yet by stan-server",
            s.name
        )));
    }

    let signal = settings.iter().rev().find_map(|s| match &s.value {
        Value::Str(v) if s.flag.canonical == "signal" => Some(v.as_str()),
        _ => None,
    });
    if let Some(signal) = signal.filter(|v| !v.is_empty()) {
        let parts: Vec<&str> = signal.split('=').collect();
        if parts.len() > 2 {
            return Err(CliExit::fail(format!(
                "invalid signal parameters: [{}]",
                parts[2..].join(" ")
            )));
        }
        return Ok(Command::Signal {
            command: parts[0].to_string(),
            pid: parts.get(1).map(|pid| pid.to_string()),
        });
    }

    let mut options = Options::default();
    // Flags that set two options are applied after all the others, in name order:
    // `-SDV=false -SD` leaves streaming debug off, as with the Go server.
    let mut combined: BTreeMap<&'static str, bool> = BTreeMap::new();
    for setting in settings {
        let canonical = setting.flag.canonical;
        match (canonical, setting.value) {
            ("help" | "version" | "help_tls" | "signal", _) => {}
            ("DV" | "DVV" | "VV" | "SDV", Value::Bool(on)) => {
                combined.insert(canonical, on);
            }
            (_, Value::Size(text)) => {
                let bytes = parse_size(&text).ok_or_else(|| {
                    CliExit::fail(format!(
                        "{} should be a size, got '{}'",
                        setting.name,
                        size_shown(&text)
                    ))
                })?;
                options.set(canonical, Value::Int(bytes));
            }
            (_, value) => options.set(canonical, value),
        }
    }
    for (name, on) in combined {
        let targets: &[&'static str] = match name {
            "DV" | "DVV" => &["debug", "trace"],
            "VV" => &["trace"],
            _ => &["stan_debug", "stan_trace"],
        };
        for target in targets {
            options.set(target, Value::Bool(on));
        }
    }

    apply_tls_flags(&mut options)?;

    options.store = options.store.to_uppercase();
    match options.store.as_str() {
        "MEMORY" | "FILE" | "SQL" => {}
        other => {
            return Err(CliExit::fail(format!("unsupported store type: {other}")));
        }
    }
    Ok(Command::Run(Box::new(options)))
}

/// The `--tls*` flags, as the NATS server reads them: `--tls=false` turns TLS off;
/// otherwise any of them replaces the configuration file's TLS with theirs, which
/// must then name a certificate and its key.
fn apply_tls_flags(options: &mut Options) -> Result<(), CliExit> {
    let flags = ["tls", "tlsverify", "tlscert", "tlskey", "tlscacert"];
    if !flags.iter().any(|f| options.explicit.contains(f)) {
        return Ok(());
    }
    // `tls_config` is marked as set by the command line: files do not override it.
    options.explicit.insert("tls_config");
    if options.explicit.contains("tls") && !options.tls {
        options.tls_config = None;
        return Ok(());
    }
    let cert_file = options
        .tlscert
        .clone()
        .ok_or_else(|| CliExit::fail("TLS Server certificate must be present and valid".into()))?;
    let key_file = options
        .tlskey
        .clone()
        .ok_or_else(|| CliExit::fail("TLS Server private key must be present and valid".into()))?;
    options.tls_config = Some(crate::tls::TlsOptions {
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        ca_file: options.tlscacert.clone(),
        verify: options.tlsverify,
        origin: None,
    });
    options.auth_timeout = options.tls_timeout + Duration::from_secs(1);
    Ok(())
}

impl Options {
    /// Where and what these options log.
    pub fn log_config(&self) -> crate::logger::LogConfig {
        crate::logger::LogConfig {
            file: self.log_file.clone().map(Into::into),
            size_limit: u64::try_from(self.log_size_limit).unwrap_or(0),
            syslog: self.syslog,
            remote_syslog: self.remote_syslog.clone(),
            logtime: self.logtime,
            logtime_utc: self.logtime_utc,
            debug: self.debug,
            trace: self.trace,
            stan_debug: self.stan_debug,
            stan_trace: self.stan_trace,
        }
    }

    /// Applies a configuration file's `file { }` setting unless the command line set
    /// that flag; it is not recorded as explicit.
    pub(crate) fn set_from_file(&mut self, canonical: &'static str, setting: FileSetting) {
        if self.explicit.contains(canonical) {
            return;
        }
        let value = match setting {
            FileSetting::Bool(v) => Value::Bool(v),
            FileSetting::Int(v) => Value::Int(v),
            FileSetting::Nanos(v) => Value::Nanos(v),
            FileSetting::Str(v) => Value::Str(v),
        };
        self.set(canonical, value);
        self.explicit.remove(canonical);
    }

    /// Stores a value of a supported flag and records it as explicit.
    fn set(&mut self, canonical: &'static str, value: Value) {
        // An empty string means "not set" to the Go server.
        let text = |v: String| Some(v).filter(|v| !v.is_empty());
        match (canonical, value) {
            ("addr", Value::Str(v)) => self.addr = v,
            ("port", Value::Int(v)) => self.port = v,
            ("server_name", Value::Str(v)) => self.server_name = text(v),
            ("pid_file", Value::Str(v)) => self.pid_file = text(v),
            ("client_advertise", Value::Str(v)) => self.client_advertise = text(v),
            ("max_traced_msg_len", Value::Int(v)) => self.max_traced_msg_len = v,
            ("ports_file_dir", Value::Str(v)) => self.ports_file_dir = text(v),
            ("cluster", Value::Str(v)) => self.cluster_listen = text(v),
            ("routes", Value::Str(v)) => self.routes = text(v),
            ("cluster_name", Value::Str(v)) => self.cluster_name = text(v),
            ("cluster_advertise", Value::Str(v)) => self.cluster_advertise = text(v),
            ("no_advertise", Value::Bool(v)) => self.no_advertise = v,
            ("connect_retries", Value::Int(v)) => self.connect_retries = v,
            ("t", Value::Bool(v)) => self.check_config = v,
            ("http_port", Value::Int(v)) => self.http_port = v,
            ("https_port", Value::Int(v)) => self.https_port = v,
            ("config_file", Value::Str(v)) => self.config_file = text(v),
            ("log_file", Value::Str(v)) => self.log_file = text(v),
            ("log_size_limit", Value::Int(v)) => self.log_size_limit = v,
            ("syslog", Value::Bool(v)) => self.syslog = v,
            ("remote_syslog", Value::Str(v)) => self.remote_syslog = text(v),
            ("logtime", Value::Bool(v)) => self.logtime = v,
            ("logtime_utc", Value::Bool(v)) => self.logtime_utc = v,
            ("debug", Value::Bool(v)) => self.debug = v,
            ("trace", Value::Bool(v)) => self.trace = v,
            ("user", Value::Str(v)) => self.user = text(v),
            ("pass", Value::Str(v)) => self.pass = text(v),
            ("auth", Value::Str(v)) => self.auth = text(v),
            ("tls", Value::Bool(v)) => self.tls = v,
            ("tlsverify", Value::Bool(v)) => self.tlsverify = v,
            ("tlscert", Value::Str(v)) => self.tlscert = text(v),
            ("tlskey", Value::Str(v)) => self.tlskey = text(v),
            ("tlscacert", Value::Str(v)) => self.tlscacert = text(v),
            ("cluster_id", Value::Str(v)) => self.cluster_id = v,
            ("store", Value::Str(v)) => self.store = v,
            ("stan_config_file", Value::Str(v)) => self.stan_config_file = text(v),
            ("max_channels", Value::Int(v)) => self.max_channels = v,
            ("max_subs", Value::Int(v)) => self.max_subs = v,
            ("max_msgs", Value::Int(v)) => self.max_msgs = v,
            ("max_bytes", Value::Int(v)) => self.max_bytes = v,
            ("max_age", Value::Nanos(v)) => self.max_age = v,
            ("max_inactivity", Value::Nanos(v)) => self.max_inactivity = v,
            // `Kind::Interval` refused negative values already.
            ("hb_interval", Value::Nanos(v)) => self.hb_interval = Duration::from_nanos(v as u64),
            ("hb_timeout", Value::Nanos(v)) => self.hb_timeout = Duration::from_nanos(v as u64),
            ("hb_fail_count", Value::Int(v)) => self.hb_fail_count = v,
            ("stan_debug", Value::Bool(v)) => self.stan_debug = v,
            ("stan_trace", Value::Bool(v)) => self.stan_trace = v,
            ("replace_durable", Value::Bool(v)) => self.replace_durable = v,
            // The Windows event-log source: nothing to name elsewhere, as with the Go
            // server.
            ("syslog_name", Value::Str(_)) => {}
            ("dir", Value::Str(v)) => self.dir = text(v),
            ("encrypt", Value::Bool(v)) => self.encrypt = v,
            ("encryption_cipher", Value::Str(v)) => self.encryption_cipher = text(v),
            ("encryption_key", Value::Str(v)) => self.encryption_key = text(v),
            ("ft_group", Value::Str(v)) => self.ft_group = text(v),
            ("clustered", Value::Bool(v)) => self.raft.clustered = v,
            ("cluster_node_id", Value::Str(v)) => self.raft.node_id = text(v),
            ("cluster_bootstrap", Value::Bool(v)) => self.raft.bootstrap = v,
            ("cluster_peers", Value::Str(v)) => self.raft.peers = peer_list(&v),
            ("cluster_log_path", Value::Str(v)) => self.raft.log_path = text(v),
            ("cluster_log_cache_size", Value::Int(v)) => self.raft.log_cache_size = v,
            ("cluster_log_snapshots", Value::Int(v)) => self.raft.log_snapshots = v,
            ("cluster_trailing_logs", Value::Int(v)) => self.raft.trailing_logs = v,
            ("cluster_sync", Value::Bool(v)) => self.raft.sync = v,
            ("cluster_raft_logging", Value::Bool(v)) => self.raft.raft_logging = v,
            ("cluster_proceed_on_restore_failure", Value::Bool(v)) => {
                self.raft.proceed_on_restore_failure = v
            }
            ("cluster_allow_add_remove_node", Value::Bool(v)) => {
                self.raft.allow_add_remove_node = v
            }
            ("cluster_raft_heartbeat_timeout", Value::Nanos(v)) => {
                self.raft.heartbeat_timeout = Duration::from_nanos(v.max(0) as u64)
            }
            ("cluster_raft_election_timeout", Value::Nanos(v)) => {
                self.raft.election_timeout = Duration::from_nanos(v.max(0) as u64)
            }
            ("cluster_raft_lease_timeout", Value::Nanos(v)) => {
                self.raft.lease_timeout = Duration::from_nanos(v.max(0) as u64)
            }
            ("cluster_raft_commit_timeout", Value::Nanos(v)) => {
                self.raft.commit_timeout = Duration::from_nanos(v.max(0) as u64)
            }
            ("nats_server", Value::Str(v)) => self.nats_server = text(v),
            ("secure", Value::Bool(v)) => self.nats_client.secure = v,
            ("tls_client_key", Value::Str(v)) => self.nats_client.tls_key = text(v),
            ("tls_client_cert", Value::Str(v)) => self.nats_client.tls_cert = text(v),
            ("tls_client_cacert", Value::Str(v)) => self.nats_client.tls_ca = text(v),
            ("file_compact_enabled", Value::Bool(v)) => self.file.compact_enabled = v,
            ("file_compact_frag", Value::Int(v)) => self.file.compact_frag = v,
            ("file_compact_interval", Value::Int(v)) => self.file.compact_interval = v,
            ("file_compact_min_size", Value::Int(v)) => self.file.compact_min_size = v,
            ("file_buffer_size", Value::Int(v)) => self.file.buffer_size = v,
            ("file_crc", Value::Bool(v)) => self.file.crc = v,
            ("file_crc_poly", Value::Int(v)) => self.file.crc_poly = v,
            ("file_sync", Value::Bool(v)) => self.file.sync = v,
            ("file_slice_max_msgs", Value::Int(v)) => self.file.slice_max_msgs = v,
            ("file_slice_max_bytes", Value::Int(v)) => self.file.slice_max_bytes = v,
            ("file_slice_max_age", Value::Nanos(v)) => {
                self.file.slice_max_age = Duration::from_nanos(v.max(0) as u64)
            }
            ("file_slice_archive_script", Value::Str(v)) => self.file.slice_archive_script = v,
            ("file_fds_limit", Value::Int(v)) => self.file.fds_limit = v,
            ("file_parallel_recovery", Value::Int(v)) => self.file.parallel_recovery = v,
            ("file_truncate_bad_eof", Value::Bool(v)) => self.file.truncate_bad_eof = v,
            ("file_read_buffer_size", Value::Int(v)) => self.file.read_buffer_size = v,
            ("sql_driver", Value::Str(v)) => self.sql.driver = v,
            ("sql_source", Value::Str(v)) => self.sql.source = v,
            ("sql_no_caching", Value::Bool(v)) => self.sql.no_caching = v,
            ("sql_max_open_conns", Value::Int(v)) => self.sql.max_open_conns = v,
            ("sql_bulk_insert_limit", Value::Int(v)) => self.sql.bulk_insert_limit = v,
            // Go disables automatic syncing for any value at or below zero.
            ("file_auto_sync", Value::Nanos(v)) => {
                self.file.auto_sync = Duration::from_nanos(v.max(0) as u64)
            }
            // A unit test sets every supported flag, so the table and this function
            // cannot drift apart unnoticed.
            (name, value) => {
                unreachable!("flag {name} is supported but Options cannot take {value:?}")
            }
        }
        self.explicit.insert(canonical);
    }
}

/// The Go `flag` package's pass over the arguments: returns the flags in order and the
/// positional arguments after them.
fn scan(args: &[String]) -> Result<(Vec<Setting>, Vec<String>), CliExit> {
    let mut settings = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) else {
            // Not a flag (a lone `-` included): parsing stops here.
            let mut positional = vec![arg.clone()];
            positional.extend(rest.cloned());
            return Ok((settings, positional));
        };
        let body = match body.strip_prefix('-') {
            Some("") => return Ok((settings, rest.cloned().collect())),
            Some(after) => after,
            None => body,
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(CliExit::usage(format!("bad flag syntax: {arg}")));
        }
        // A leading `=` was refused above, so a split here never leaves an empty name.
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(flag) = lookup(name) else {
            return Err(CliExit::usage(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = if flag.kind == Kind::Bool {
            match inline {
                None => Value::Bool(true),
                Some(text) => Value::Bool(parse_bool(text).ok_or_else(|| {
                    CliExit::usage(format!(
                        "invalid boolean value {} for -{name}: parse error",
                        go_quote(text)
                    ))
                })?),
            }
        } else {
            let text = match inline {
                Some(text) => text.to_string(),
                None => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| CliExit::usage(format!("flag needs an argument: -{name}")))?,
            };
            let invalid = |reason: &str| {
                CliExit::usage(format!(
                    "invalid value {} for flag -{name}: {reason}",
                    go_quote(&text)
                ))
            };
            match flag.kind {
                Kind::Int => Value::Int(parse_int(&text).map_err(|e| invalid(e.reason()))?),
                Kind::Duration => {
                    Value::Nanos(parse_duration(&text).ok_or_else(|| invalid("parse error"))?)
                }
                Kind::Interval => match parse_duration(&text) {
                    None => return Err(invalid("parse error")),
                    Some(n) if n < 0 => return Err(invalid("value out of range")),
                    Some(n) => Value::Nanos(n),
                },
                Kind::Size => Value::Size(text),
                Kind::Str | Kind::Bool => Value::Str(text),
            }
        };
        settings.push(Setting {
            flag,
            name: name.to_string(),
            value,
        });
    }
    Ok((settings, Vec::new()))
}

/// The spellings Go's `strconv.ParseBool` accepts.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Why an integer was refused, in the Go flag library's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntError {
    Syntax,
    Range,
}

impl IntError {
    fn reason(self) -> &'static str {
        match self {
            IntError::Syntax => "parse error",
            IntError::Range => "value out of range",
        }
    }
}

/// A 64-bit integer in Go literal syntax: optional sign, `0x`/`0o`/`0b` prefixes or a
/// leading `0` for octal, and `_` between digits.
fn parse_int(text: &str) -> Result<i64, IntError> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = parse_uint(unsigned)?;
    let limit = 1u64 << 63;
    match (negative, magnitude) {
        (false, m) if m >= limit => Err(IntError::Range),
        (true, m) if m > limit => Err(IntError::Range),
        (true, m) => Ok((m as i64).wrapping_neg()),
        (false, m) => Ok(m as i64),
    }
}

fn parse_uint(text: &str) -> Result<u64, IntError> {
    if text.is_empty() {
        return Err(IntError::Syntax);
    }
    let bytes = text.as_bytes();
    let (radix, digits) = match bytes {
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'x') => (16, &bytes[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'o') => (8, &bytes[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'b') => (2, &bytes[2..]),
        [b'0', ..] => (8, &bytes[1..]),
        _ => (10, bytes),
    };
    let mut value: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        if c == b'_' {
            underscores = true;
            continue;
        }
        let digit = match (c as char).to_digit(36) {
            Some(d) if d < radix => u64::from(d),
            _ => return Err(IntError::Syntax),
        };
        // A range error wins over a syntax error further on, as in Go.
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(digit))
            .ok_or(IntError::Range)?;
    }
    if underscores && !underscores_between_digits(text) {
        return Err(IntError::Syntax);
    }
    Ok(value)
}

/// Go accepts `_` only as a separator: after a digit or the base prefix, and before a
/// digit.
fn underscores_between_digits(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (hex, digits) = match bytes {
        [b'0', p, ..] if matches!(p.to_ascii_lowercase(), b'x' | b'o' | b'b') => {
            (p.eq_ignore_ascii_case(&b'x'), &bytes[2..])
        }
        _ => (false, bytes),
    };
    // Whether the previous character allows an underscore to follow.
    let mut after_digit = digits.len() != bytes.len();
    let mut after_underscore = false;
    for &c in digits {
        let is_digit = c.is_ascii_digit() || (hex && c.is_ascii_hexdigit());
        if is_digit {
            after_digit = true;
            after_underscore = false;
        } else if c == b'_' {
            if !after_digit {
                return false;
            }
            after_digit = false;
            after_underscore = true;
        } else {
            if after_underscore {
                return false;
            }
            after_digit = false;
        }
    }
    !after_underscore
}

/// A Go duration (`1h30m`, `1.5s`, `-500ms`, `0`) in nanoseconds; `None` when Go's
/// `time.ParseDuration` would refuse it.
pub fn parse_duration(text: &str) -> Option<i64> {
    stan_core::config::parse_go_duration(text).ok()
}

/// An integer with an optional size suffix, as the NATS configuration language reads
/// it (OPERATIONS.md §2.2): `k` is 1000, `kb`/`ki`/`kib` is 1024, and so on up to `e`.
pub fn parse_size(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits_start = usize::from(text.starts_with('-'));
    let digits_len = text[digits_start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits_len == 0 {
        return None;
    }
    let (number, suffix) = text.split_at(digits_start + digits_len);
    let number: i64 = number.parse().ok()?;
    let suffix = suffix.to_ascii_lowercase();
    let (power, binary) = match suffix.as_bytes() {
        [] => return Some(number),
        [unit] => (size_power(*unit)?, false),
        [unit, b'b' | b'i'] | [unit, b'i', b'b'] => (size_power(*unit)?, true),
        _ => return None,
    };
    let base: i64 = if binary { 1024 } else { 1000 };
    number.checked_mul(base.checked_pow(power)?)
}

fn size_power(unit: u8) -> Option<u32> {
    match unit {
        b'k' => Some(1),
        b'm' => Some(2),
        b'g' => Some(3),
        b't' => Some(4),
        b'p' => Some(5),
        b'e' => Some(6),
        _ => None,
    }
}

/// How the Go server shows a refused size: the value as its configuration language
/// read it.
fn size_shown(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.to_ascii_lowercase().as_str() {
        "" => "<nil>".to_string(),
        "true" | "yes" | "on" => "true".to_string(),
        "false" | "no" | "off" => "false".to_string(),
        _ => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(list: &[&str]) -> Options {
        match parse_flags(&args(list)) {
            Ok(Command::Run(options)) => *options,
            other => panic!("{list:?} gave {other:?}"),
        }
    }

    fn exit(list: &[&str]) -> CliExit {
        match parse_flags(&args(list)) {
            Err(exit) => exit,
            other => panic!("{list:?} gave {other:?}"),
        }
    }

    fn usage_error(list: &[&str]) -> String {
        let e = exit(list);
        assert_eq!(e.code, 0, "{list:?}");
        assert_eq!(e.stdout, USAGE, "{list:?}");
        e.stderr
    }

    fn failure(list: &[&str]) -> String {
        let e = exit(list);
        assert_eq!(e.code, 1, "{list:?}");
        assert!(e.stdout.is_empty(), "{list:?}");
        e.stderr
    }

    #[test]
    fn no_arguments_give_the_go_defaults() {
        let o = run(&[]);
        assert_eq!(o, Options::default());
        assert_eq!(o.addr, "0.0.0.0");
        assert_eq!(o.port, 4222);
        assert_eq!(o.cluster_id, "test-cluster");
        assert_eq!(o.store, "MEMORY");
        assert_eq!(o.max_bytes, 1_024_000_000);
        assert_eq!(o.hb_interval, Duration::from_secs(30));
        assert!(o.logtime);
        assert!(o.explicit.is_empty());
    }

    #[test]
    fn table_defaults_match_options_default() {
        // Any `--tls*` flag but `--tls=false` asks for TLS, which needs a certificate.
        let asks_tls = |f: &Flag| f.canonical.starts_with("tls") && f.canonical != "tls";
        for flag in FLAGS.iter().filter(|f| f.supported && f.kind != Kind::Bool) {
            if flag.canonical == "signal" || asks_tls(flag) {
                continue;
            }
            let arg = format!("--{}={}", flag.names.last().unwrap(), flag.default);
            let mut o = run(&[&arg]);
            assert!(o.explicit.contains(flag.canonical), "{arg}");
            o.explicit.clear();
            assert_eq!(o, Options::default(), "{arg}");
        }
        for flag in FLAGS.iter().filter(|f| f.supported && f.kind == Kind::Bool) {
            if ["help", "version", "help_tls"].contains(&flag.canonical) || asks_tls(flag) {
                continue;
            }
            let arg = format!("-{}={}", flag.names[0], flag.default);
            let mut o = run(&[&arg]);
            o.explicit.clear();
            assert_eq!(o, Options::default(), "{arg}");
        }
    }

    #[test]
    fn every_supported_flag_sets_its_option_under_every_spelling() {
        for flag in FLAGS.iter().filter(|f| f.supported) {
            for name in flag.names {
                let value = match flag.kind {
                    Kind::Bool => None,
                    Kind::Int | Kind::Size => Some("7"),
                    Kind::Duration | Kind::Interval => Some("7s"),
                    Kind::Str if flag.canonical == "store" => Some("memory"),
                    Kind::Str => Some("x"),
                };
                let mut list = vec![format!("-{name}")];
                list.extend(value.map(str::to_string));
                if flag.canonical.starts_with("tls") {
                    list.extend(["-tlscert", "c", "-tlskey", "k"].map(str::to_string));
                }
                match parse_flags(&list) {
                    Ok(Command::Run(o)) => {
                        assert!(!o.explicit.is_empty(), "{list:?}");
                    }
                    Ok(Command::Help | Command::Version | Command::HelpTls) => {}
                    Ok(Command::Signal { command, pid }) => {
                        assert_eq!((command.as_str(), pid), ("x", None));
                    }
                    Err(e) => panic!("{list:?}: {e:?}"),
                }
            }
        }
    }

    #[test]
    fn flag_names_are_unique() {
        let mut seen = BTreeSet::new();
        for flag in FLAGS {
            for name in flag.names {
                assert!(seen.insert(*name), "-{name} listed twice");
            }
        }
    }

    #[test]
    fn value_forms() {
        for list in [
            &["-cid", "abc"][..],
            &["--cid", "abc"],
            &["-cid=abc"],
            &["--cid=abc"],
            &["-cluster_id", "abc"],
            &["--cluster_id=abc"],
        ] {
            let o = run(list);
            assert_eq!(o.cluster_id, "abc", "{list:?}");
            assert_eq!(o.explicit, BTreeSet::from(["cluster_id"]));
        }
        // A value may start with a dash or contain `=`.
        assert_eq!(run(&["-p", "-1"]).port, -1);
        assert_eq!(run(&["--user=a=b"]).user.as_deref(), Some("a=b"));
        // An empty value is accepted and means unset.
        assert_eq!(run(&["-l="]).log_file, None);
        assert_eq!(run(&["-l", ""]).log_file, None);
        assert_eq!(run(&["-a", ""]).addr, "");
        // The last occurrence wins, whatever spelling.
        assert_eq!(run(&["-p", "1", "--port=2", "-p", "3"]).port, 3);
    }

    #[test]
    fn supported_values_land_in_their_fields() {
        let o = run(&[
            "-a",
            "127.0.0.1",
            "-p",
            "4333",
            "-n",
            "srv",
            "-P",
            "/tmp/pid",
            "-m",
            "8222",
            "-c",
            "nats.conf",
            "-l",
            "/tmp/log",
            "-T=false",
            "--logtime_utc",
            "-D",
            "-V",
            "--user",
            "u",
            "--pass",
            "p",
            "--auth",
            "tok",
            "-cid",
            "c1",
            "-st",
            "memory",
            "-sc",
            "stan.conf",
            "-mc",
            "5",
            "-msu",
            "6",
            "-mm",
            "7",
            "-mb",
            "8KB",
            "-ma",
            "1h",
            "-mi",
            "-2m",
            "-hbi",
            "1s",
            "-hbt",
            "2s",
            "-hbf",
            "3",
            "-SD",
            "-SV",
            "--replace_durable",
        ]);
        assert_eq!(o.addr, "127.0.0.1");
        assert_eq!(o.port, 4333);
        assert_eq!(o.server_name.as_deref(), Some("srv"));
        assert_eq!(o.pid_file.as_deref(), Some("/tmp/pid"));
        assert_eq!(o.http_port, 8222);
        assert_eq!(o.config_file.as_deref(), Some("nats.conf"));
        assert_eq!(o.log_file.as_deref(), Some("/tmp/log"));
        assert!(!o.logtime && o.logtime_utc && o.debug && o.trace);
        assert_eq!(o.user.as_deref(), Some("u"));
        assert_eq!(o.pass.as_deref(), Some("p"));
        assert_eq!(o.auth.as_deref(), Some("tok"));
        assert_eq!(o.cluster_id, "c1");
        assert_eq!(o.store, "MEMORY");
        assert_eq!(o.stan_config_file.as_deref(), Some("stan.conf"));
        assert_eq!((o.max_channels, o.max_subs, o.max_msgs), (5, 6, 7));
        assert_eq!(o.max_bytes, 8192);
        assert_eq!(o.max_age, 3_600_000_000_000);
        assert_eq!(o.max_inactivity, -120_000_000_000);
        assert_eq!(o.hb_interval, Duration::from_secs(1));
        assert_eq!(o.hb_timeout, Duration::from_secs(2));
        assert_eq!(o.hb_fail_count, 3);
        assert!(o.stan_debug && o.stan_trace && o.replace_durable);
        assert_eq!(o.explicit.len(), 29);
    }

    #[test]
    fn encryption_flags() {
        let o = run(&[
            "--encrypt",
            "--encryption_cipher",
            "chacha",
            "--encryption_key=k",
        ]);
        assert!(o.encrypt);
        assert_eq!(o.encryption_cipher.as_deref(), Some("chacha"));
        assert_eq!(o.encryption_key.as_deref(), Some("k"));
        let o = run(&["-encrypt=false", "-encryption_key", ""]);
        assert!(!o.encrypt);
        assert_eq!((o.encryption_cipher, o.encryption_key), (None, None));
        // The cipher name is checked when the store opens, as the Go server does.
        assert_eq!(
            run(&["--encryption_cipher", "rot13"])
                .encryption_cipher
                .as_deref(),
            Some("rot13")
        );
    }

    #[test]
    fn syslog_flags() {
        for list in [&["-s"][..], &["--syslog"], &["-syslog=true"]] {
            let o = run(list);
            assert!(o.syslog, "{list:?}");
            assert!(o.log_config().syslog);
        }
        assert!(!run(&["-s=false"]).syslog);
        for list in [
            &["-r", "udp://127.0.0.1:514"][..],
            &["--remote_syslog=udp://127.0.0.1:514"],
        ] {
            let o = run(list);
            assert_eq!(o.remote_syslog.as_deref(), Some("udp://127.0.0.1:514"));
            assert_eq!(o.explicit, BTreeSet::from(["remote_syslog"]));
            assert_eq!(
                o.log_config().remote_syslog.as_deref(),
                Some("udp://127.0.0.1:514")
            );
        }
        assert_eq!(run(&["-r="]).remote_syslog, None);
        // Accepted and without effect, as the Go server does away from Windows.
        let mut o = run(&["--syslog_name", "NATS-Streaming-Server"]);
        o.explicit.clear();
        assert_eq!(o, Options::default());
    }

    #[test]
    fn booleans() {
        assert!(run(&["-D"]).debug);
        assert!(run(&["--debug"]).debug);
        for text in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(run(&[&format!("-D={text}")]).debug, "{text}");
            assert!(!run(&[&format!("-T={text}")]).explicit.is_empty());
        }
        for text in ["0", "f", "F", "false", "FALSE", "False"] {
            let o = run(&[&format!("-D={text}")]);
            assert!(!o.debug, "{text}");
            assert!(o.explicit.contains("debug"));
        }
        assert!(!run(&["-T=false"]).logtime);
        assert_eq!(
            usage_error(&["-D=yes"]),
            "invalid boolean value \"yes\" for -D: parse error\n"
        );
        assert_eq!(
            usage_error(&["--debug="]),
            "invalid boolean value \"\" for -debug: parse error\n"
        );
        // `-b false` is a boolean followed by a positional argument.
        assert_eq!(
            failure(&["-D", "false"]),
            "unrecognized command: \"false\"\n"
        );
    }

    #[test]
    fn combined_logging_flags() {
        let o = run(&["-DV"]);
        assert!(o.debug && o.trace && !o.stan_debug);
        assert_eq!(o.explicit, BTreeSet::from(["debug", "trace"]));
        let o = run(&["-VV"]);
        assert!(!o.debug && o.trace);
        let o = run(&["-DVV"]);
        assert!(o.debug && o.trace);
        let o = run(&["-SDV"]);
        assert!(o.stan_debug && o.stan_trace && !o.debug && !o.trace);
        assert_eq!(o.explicit, BTreeSet::from(["stan_debug", "stan_trace"]));
        // The combined flag wins over the single ones, wherever it is.
        let o = run(&["-SDV=false", "-SD", "-SV"]);
        assert!(!o.stan_debug && !o.stan_trace);
        let o = run(&["-SD", "-SDV=false"]);
        assert!(!o.stan_debug && !o.stan_trace);
        let o = run(&["-D=false", "-DV"]);
        assert!(o.debug && o.trace);
        // `-VV` is applied after `-DVV`.
        let o = run(&["-VV=false", "-DVV"]);
        assert!(o.debug && !o.trace);
    }

    #[test]
    fn go_integer_syntax() {
        let cases = [
            ("0x1f", 31),
            ("0X1F", 31),
            ("0o17", 15),
            ("017", 15),
            ("0b101", 5),
            ("0", 0),
            ("00", 0),
            ("-0x10", -16),
            ("+42", 42),
            ("1_000", 1000),
            ("0x_1f", 31),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (text, want) in cases {
            assert_eq!(parse_int(text), Ok(want), "{text}");
            assert_eq!(run(&["-mm", text]).max_msgs, want, "{text}");
        }
        for text in [
            "", "-", "08", "0x", "1e3", "1.5", "_1", "1_", "1__0", "abc", " 1",
        ] {
            assert_eq!(parse_int(text), Err(IntError::Syntax), "{text:?}");
        }
        for text in [
            "9223372036854775808",
            "-9223372036854775809",
            "0x10000000000000000",
        ] {
            assert_eq!(parse_int(text), Err(IntError::Range), "{text}");
        }
        assert_eq!(
            usage_error(&["-p", "abc"]),
            "invalid value \"abc\" for flag -p: parse error\n"
        );
        assert_eq!(
            usage_error(&["--port=99999999999999999999"]),
            "invalid value \"99999999999999999999\" for flag -port: value out of range\n"
        );
    }

    #[test]
    fn go_durations() {
        let s = 1_000_000_000i64;
        let cases = [
            ("0", 0),
            ("-0", 0),
            ("90s", 90 * s),
            ("1h30m", 5400 * s),
            ("1.5s", 1_500_000_000),
            ("500ms", 500_000_000),
            ("1us", 1_000),
            ("1µs", 1_000),
            ("1μs", 1_000),
            ("7ns", 7),
            ("-1m", -60 * s),
            ("+2h", 7200 * s),
            (".5s", 500_000_000),
            ("1.s", s),
            ("1h1m1s1ms1us1ns", 3_661_001_001_001),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for text in [
            "",
            "1",
            "s",
            "1d",
            "1.5",
            ".",
            ".s",
            "1 s",
            "-",
            "1h-1m",
            "2562047h47m16.854775808s",
            "9999999999999999999h",
        ] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
        assert_eq!(run(&["-ma", "24h"]).max_age, 86_400 * s);
        assert_eq!(run(&["-ma", "-1s"]).max_age, -s);
        assert_eq!(
            run(&["--hb_interval=1.5s"]).hb_interval,
            Duration::from_millis(1500)
        );
        assert_eq!(
            usage_error(&["-hbi", "10"]),
            "invalid value \"10\" for flag -hbi: parse error\n"
        );
        assert_eq!(
            usage_error(&["-hbt=-1s"]),
            "invalid value \"-1s\" for flag -hbt: value out of range\n"
        );
    }

    #[test]
    fn sizes() {
        let cases = [
            ("0", 0),
            ("1024", 1024),
            ("-1", -1),
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1024),
            ("1KB", 1024),
            ("1ki", 1024),
            ("1KiB", 1024),
            ("10m", 10_000_000),
            ("10MB", 10 * 1024 * 1024),
            ("1g", 1_000_000_000),
            ("1gib", 1 << 30),
            ("2t", 2_000_000_000_000),
            ("1tb", 1 << 40),
            ("1p", 1_000_000_000_000_000),
            ("1pb", 1 << 50),
            ("1e", 1_000_000_000_000_000_000),
            ("1eb", 1 << 60),
            (" 5 ", 5),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Some(want), "{text}");
        }
        for text in [
            "", "abc", "1.5", "1x", "1kbb", "kb", "1 kb", "10e", "8eb", "+1", "1bk",
        ] {
            assert_eq!(parse_size(text), None, "{text:?}");
        }
        assert_eq!(run(&["-mb", "10MB"]).max_bytes, 10 << 20);
        assert_eq!(run(&["--max_bytes=1k"]).max_bytes, 1000);
        assert_eq!(failure(&["-mb", "abc"]), "mb should be a size, got 'abc'\n");
        assert_eq!(
            failure(&["--max_bytes=1.5"]),
            "max_bytes should be a size, got '1.5'\n"
        );
        assert_eq!(failure(&["-mb="]), "mb should be a size, got '<nil>'\n");
        assert_eq!(
            failure(&["-mb", "Yes"]),
            "mb should be a size, got 'true'\n"
        );
        // Sizes are checked after the informational flags.
        assert_eq!(parse(&args(&["-mb", "abc", "-h"])), Ok(Command::Help));
    }

    #[test]
    fn tls_flags() {
        let o = run(&[
            "--tlscert",
            "c.pem",
            "--tlskey=k.pem",
            "-tlscacert",
            "ca.pem",
            "-tlsverify",
        ]);
        let tls = o.tls_config.expect("TLS on");
        assert_eq!(
            (
                tls.cert_file.as_deref(),
                tls.key_file.as_deref(),
                tls.ca_file.as_deref()
            ),
            (Some("c.pem"), Some("k.pem"), Some("ca.pem"))
        );
        assert!(tls.verify);
        assert_eq!(tls.origin, None);
        // The NATS server gives clients a second more than the handshake to log in.
        assert_eq!(o.auth_timeout, Duration::from_secs(3));
        assert!(
            !run(&["--tls", "--tlscert", "c", "--tlskey", "k"])
                .tls_config
                .unwrap()
                .verify
        );
        // `--tls=false` wins wherever it stands.
        let off = run(&["--tlscert", "c", "--tlskey", "k", "--tls=false"]);
        assert_eq!(off.tls_config, None);
        assert!(off.explicit.contains("tls_config"));
        assert_eq!(off.auth_timeout, Duration::from_secs(2));
        assert_eq!(
            failure(&["--tls"]),
            "TLS Server certificate must be present and valid\n"
        );
        assert_eq!(
            failure(&["--tlsverify", "--tlscert", "c"]),
            "TLS Server private key must be present and valid\n"
        );
        assert_eq!(run(&[]).tls_config, None);
    }

    #[test]
    fn store_type() {
        assert_eq!(run(&["-st", "Memory"]).store, "MEMORY");
        assert_eq!(run(&["--store=MEMORY"]).store, "MEMORY");
        assert_eq!(run(&["-st", "file", "--dir", "/tmp/x"]).store, "FILE");
        let sql = run(&[
            "-st",
            "Sql",
            "--sql_driver",
            "postgres",
            "--sql_source",
            "dbname=x",
            "--sql_no_caching",
            "--sql_max_open_conns",
            "3",
            "--sql_bulk_insert_limit=10",
        ]);
        assert_eq!(sql.store, "SQL");
        assert_eq!(
            sql.sql,
            crate::store::SqlStoreOptions {
                driver: "postgres".into(),
                source: "dbname=x".into(),
                no_caching: true,
                max_open_conns: 3,
                bulk_insert_limit: 10,
            }
        );
        assert_eq!(failure(&["-st", "disk"]), "unsupported store type: DISK\n");
    }

    #[test]
    fn unknown_and_malformed_flags_print_usage_and_exit_0() {
        assert_eq!(usage_error(&["-x"]), "flag provided but not defined: -x\n");
        assert_eq!(
            usage_error(&["--nope=1"]),
            "flag provided but not defined: -nope\n"
        );
        // Names are case-sensitive.
        assert_eq!(
            usage_error(&["-sdv"]),
            "flag provided but not defined: -sdv\n"
        );
        assert_eq!(usage_error(&["---p"]), "bad flag syntax: ---p\n");
        assert_eq!(usage_error(&["-=1"]), "bad flag syntax: -=1\n");
        assert_eq!(usage_error(&["-p"]), "flag needs an argument: -p\n");
        assert_eq!(usage_error(&["--cid"]), "flag needs an argument: -cid\n");
        assert_eq!(
            usage_error(&["-p", "4\n2"]),
            "invalid value \"4\\n2\" for flag -p: parse error\n"
        );
        // The first error stops parsing, even before a help flag.
        assert_eq!(
            usage_error(&["-x", "-h"]),
            "flag provided but not defined: -x\n"
        );
    }

    #[test]
    fn unsupported_flags_are_refused_by_name() {
        for flag in FLAGS.iter().filter(|f| !f.supported) {
            for name in flag.names {
                let mut list = vec![format!("--{name}")];
                if flag.kind != Kind::Bool {
                    list.push(flag.default.to_string());
                }
                let e = parse(&list).expect_err(name);
                assert_eq!(e.code, 1);
                assert_eq!(
                    e.stderr,
                    format!("flag -{name} is not supported yet by stan-server\n")
                );
            }
        }
        assert_eq!(
            failure(&["-p", "1", "--io_batch_size", "5", "-ns", "nats://h:4222"]),
            "flag -io_batch_size is not supported yet by stan-server\n"
        );
        // A value of an unsupported flag is still checked by the flag syntax first.
        assert_eq!(
            usage_error(&["--file_compact_frag", "x"]),
            "invalid value \"x\" for flag -file_compact_frag: parse error\n"
        );
        // Help and version are answered before the refusal.
        assert_eq!(parse(&args(&["--dir", "/d", "-v"])), Ok(Command::Version));
    }

    #[test]
    fn informational_commands() {
        for list in [
            &["-h"][..],
            &["-help"],
            &["--help"],
            &["help"],
            &["HELP"],
            &["-p", "1", "help"],
        ] {
            assert_eq!(parse(&args(list)), Ok(Command::Help), "{list:?}");
        }
        for list in [
            &["-v"][..],
            &["-version"],
            &["--version"],
            &["version"],
            &["--", "version"],
        ] {
            assert_eq!(parse(&args(list)), Ok(Command::Version), "{list:?}");
        }
        assert_eq!(parse(&args(&["--help_tls"])), Ok(Command::HelpTls));
        // Version is answered before help.
        assert_eq!(parse(&args(&["-h", "-v"])), Ok(Command::Version));
        assert_eq!(
            parse(&args(&["-h=false"])),
            Ok(Command::Run(Box::default()))
        );
        assert_eq!(
            VERSION_LINE,
            format!("nats-streaming-server version {VERSION}, nats-server: v{NATS_SERVER_VERSION}")
        );
    }

    #[test]
    fn positional_arguments() {
        assert_eq!(failure(&["run"]), "unrecognized command: \"run\"\n");
        assert_eq!(failure(&["-"]), "unrecognized command: \"-\"\n");
        assert_eq!(
            failure(&["-p", "1", "foo", "-x"]),
            "unrecognized command: \"foo\"\n"
        );
        assert_eq!(failure(&["--", "-p"]), "unrecognized command: \"-p\"\n");
        assert_eq!(failure(&["a\"b"]), "unrecognized command: \"a\\\"b\"\n");
        // `--` alone ends the flags and leaves nothing to run.
        assert_eq!(run(&["-p", "5", "--"]).port, 5);
    }

    #[test]
    fn signal_command() {
        assert_eq!(
            parse(&args(&["-sl", "reload"])),
            Ok(Command::Signal {
                command: "reload".into(),
                pid: None
            })
        );
        assert_eq!(
            parse(&args(&["--signal=quit=1234"])),
            Ok(Command::Signal {
                command: "quit".into(),
                pid: Some("1234".into())
            })
        );
        assert_eq!(
            parse(&args(&["-sl", "reopen=/var/run/stan.pid", "-p", "1"])),
            Ok(Command::Signal {
                command: "reopen".into(),
                pid: Some("/var/run/stan.pid".into())
            })
        );
        assert_eq!(
            failure(&["-sl", "stop=1=2=3"]),
            "invalid signal parameters: [2 3]\n"
        );
        // An empty signal starts the server.
        assert_eq!(run(&["-sl="]), Options::default());
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("abc"), "\"abc\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("\t\n\u{1}\u{7f}"), "\"\\t\\n\\x01\\x7f\"");
        assert_eq!(go_quote("é\u{a0}"), "\"é\\u00a0\"");
    }

    #[test]
    fn usage_lists_every_flag_with_its_placeholder() {
        let mut listed = BTreeMap::new();
        for line in USAGE.lines() {
            let line = line.trim_start();
            if !line.starts_with('-') {
                continue;
            }
            // The flag column is padded with at least three spaces, and has no run of
            // three spaces inside.
            let column = line.split("   ").next().unwrap();
            let placeholder = column.split([' ', ',']).find_map(|token| {
                if token.starts_with('<') {
                    Some(token.to_string())
                } else {
                    token.split_once('=').map(|(_, form)| form.to_string())
                }
            });
            for token in column.split([',', ' ']).filter(|t| t.starts_with('-')) {
                let name = token.trim_start_matches('-');
                let name = name.split_once('=').map_or(name, |(name, _)| name);
                assert!(
                    listed
                        .insert(name.to_string(), placeholder.clone())
                        .is_none(),
                    "-{name} listed twice in the usage"
                );
            }
        }
        for flag in FLAGS {
            for name in flag.names {
                let entry = listed.remove(*name);
                if flag.hidden {
                    assert!(entry.is_none(), "-{name} must not be in the usage");
                    continue;
                }
                let placeholder = entry.unwrap_or_else(|| panic!("-{name} missing from usage"));
                let want = match (flag.kind, flag.canonical) {
                    (_, "help" | "version" | "help_tls" | "DV" | "VV" | "DVV" | "SDV") => None,
                    (_, "signal") => Some("<signal>[=<pid>]"),
                    (Kind::Bool, _) => Some("<bool>"),
                    (Kind::Int, _) => Some("<int>"),
                    (Kind::Str, _) => Some("<string>"),
                    (Kind::Duration | Kind::Interval, _) => Some("<duration>"),
                    (Kind::Size, _) => Some("<size>"),
                };
                assert_eq!(placeholder.as_deref(), want, "-{name}");
            }
        }
        assert!(listed.is_empty(), "unknown flags in usage: {listed:?}");
    }
}

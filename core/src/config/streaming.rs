//! The streaming server's keys (OPERATIONS §2.3), read the way the Go streaming
//! server reads them: names in any case, every alias, and its error texts
//! (`parameter "max_age" value is expected to be string, got int64`).

use std::collections::BTreeMap;

use super::duration::parse_go_duration;
use super::value::{Entry, Map, Value};
use super::ConfigError;
use crate::streaming::limits::{is_valid_channel_pattern, ChannelLimits, LimitsError};

type Result<T> = std::result::Result<T, ConfigError>;

/// The value of one `file { }` setting, typed as its command-line flag is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSetting {
    Bool(bool),
    Int(i64),
    /// A duration in nanoseconds.
    Nanos(i64),
    Str(String),
}

/// The streaming options a file sets; `None` (or an empty map) where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamingFileOptions {
    pub cluster_id: Option<String>,
    pub discover_prefix: Option<String>,
    /// Upper-cased: `MEMORY`, `FILE` or `SQL`.
    pub store: Option<String>,
    /// `dir`, `datastore`: the FILE store's root directory.
    pub dir: Option<String>,
    /// `ft_group`, `ft_group_name`: the fault-tolerance group.
    pub ft_group: Option<String>,
    /// `partitioning`: serve only the channels named by `store_limits.channels`.
    pub partitioning: Option<bool>,
    /// The `file { }` and `sql { }` sections, in file order, each setting under the
    /// name of the command-line flag it stands for (`sync` → `file_sync`, `driver` →
    /// `sql_driver`), so that one table applies flags and file alike.
    pub file: Vec<(&'static str, FileSetting)>,
    pub stan_debug: Option<bool>,
    pub stan_trace: Option<bool>,
    /// Nanoseconds, never negative.
    pub hb_interval: Option<i64>,
    /// Nanoseconds, never negative.
    pub hb_timeout: Option<i64>,
    pub hb_fail_count: Option<i64>,
    pub replace_durable: Option<bool>,
    /// Encryption at rest; `encryption_key` sets it too, even to an empty key.
    pub encrypt: Option<bool>,
    /// `AES` or `CHACHA`, as written; checked when the store opens.
    pub encryption_cipher: Option<String>,
    pub encryption_key: Option<String>,
    /// Credentials for the server's own connections to an external NATS server
    /// (`ns`). The embedded server's internal connection never authenticates.
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// `ns`, `nats_server`, `nats_server_url`: external NATS server URL(s).
    pub nats_server: Option<String>,
    /// `credentials`: user JWT and NKey seed file for the external connections.
    pub credentials: Option<String>,
    pub nkey_seed_file: Option<String>,
    /// `secure`: TLS without verification on the external connections.
    pub secure: Option<bool>,
    /// `tls { }`: the client side of the external connections.
    pub tls: ClientTls,
    pub max_channels: Option<i64>,
    pub max_subs: Option<i64>,
    pub max_msgs: Option<i64>,
    pub max_bytes: Option<i64>,
    /// Nanoseconds.
    pub max_age: Option<i64>,
    /// Nanoseconds.
    pub max_inactivity: Option<i64>,
    /// Per-channel entries as configured: 0 where the key was absent (inherit), -1
    /// where it was an explicit 0 (unlimited), BEHAVIOUR §4.2.
    pub per_channel: BTreeMap<String, ChannelLimits>,
}

/// `tls { }` of the streaming options: how the external connections speak TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub client_ca: Option<String>,
    pub server_name: Option<String>,
    /// `skip_verify` or `insecure`.
    pub skip_verify: bool,
}

impl StreamingFileOptions {
    /// Reads the `streaming { }` block of `file` (any case) if there is one, else every
    /// top-level key. Unknown keys are ignored, as the Go server does.
    pub fn from_map(file: &Map) -> Result<StreamingFileOptions> {
        let mut section = file;
        for entry in file {
            if entry.key.to_lowercase() == "streaming" {
                section = match &entry.value {
                    Value::Map(map) => map,
                    other => {
                        return Err(ConfigError::at(
                            entry,
                            format!("expected streaming section to be a map/struct, got {other}"),
                        ))
                    }
                };
            }
        }
        let mut opts = StreamingFileOptions::default();
        for entry in section {
            opts.top_level(entry)?;
        }
        Ok(opts)
    }

    fn top_level(&mut self, e: &Entry) -> Result<()> {
        match e.key.to_lowercase().as_str() {
            "id" | "cid" | "cluster_id" => self.cluster_id = Some(string(e)?),
            "discover_prefix" => self.discover_prefix = Some(string(e)?),
            "st" | "store_type" | "store" | "storetype" => {
                let text = string(e)?;
                match text.to_uppercase().as_str() {
                    kind @ ("MEMORY" | "FILE" | "SQL") => self.store = Some(kind.into()),
                    _ => {
                        return Err(ConfigError::at(e, format!("unknown store type: {text}")));
                    }
                }
            }
            "sd" | "stan_debug" => self.stan_debug = Some(boolean(e)?),
            "sv" | "stan_trace" => self.stan_trace = Some(boolean(e)?),
            "hbi" | "hb_interval" | "server_to_client_hb_interval" => {
                self.hb_interval = Some(interval(e)?);
            }
            "hbt" | "hb_timeout" | "server_to_client_hb_timeout" => {
                self.hb_timeout = Some(interval(e)?);
            }
            "hbf" | "hb_fail_count" | "server_to_client_hb_fail_count" => {
                self.hb_fail_count = Some(integer(e)?);
            }
            "replace_durable"
            | "replace_durables"
            | "replace_duplicate_durable"
            | "replace_duplicate_durables" => self.replace_durable = Some(boolean(e)?),
            "username" | "user" => self.username = Some(string(e)?),
            "password" | "pass" => self.password = Some(string(e)?),
            "token" => self.token = Some(string(e)?),
            "limits" | "store_limits" | "storelimits" => self.store_limits(e)?,
            "tls" => self.tls = client_tls(e)?,
            "dir" | "datastore" => self.dir = Some(string(e)?),
            "ft_group" | "ft_group_name" => self.ft_group = Some(string(e)?),
            "file" | "file_options" => self.file_options(e)?,
            "sql" | "sql_options" => self.sql_options(e)?,
            "cluster" => self.cluster(e)?,
            // The Windows event-log source; the Go server ignores it elsewhere too.
            "syslog_name" => {
                string(e)?;
            }
            "ns" | "nats_server" | "nats_server_url" => self.nats_server = Some(string(e)?),
            "credentials" => self.credentials = Some(string(e)?),
            "nkey_seed_file" => self.nkey_seed_file = Some(string(e)?),
            "partitioning" => self.partitioning = Some(boolean(e)?),
            "secure" => self.secure = Some(boolean(e)?),
            "encrypt" => self.encrypt = Some(boolean(e)?),
            "encryption_cipher" => self.encryption_cipher = Some(string(e)?),
            "encryption_key" => {
                self.encryption_key = Some(string(e)?);
                self.encrypt = Some(true);
            }
            _ => {}
        }
        Ok(())
    }

    fn file_options(&mut self, e: &Entry) -> Result<()> {
        use FileSetting::{Bool, Int, Nanos, Str};
        for entry in section(e, "file options")? {
            let setting = match entry.key.to_lowercase().as_str() {
                "compact" | "compact_enabled" => ("file_compact_enabled", Bool(boolean(entry)?)),
                "compact_frag" | "compact_fragmentation" => {
                    ("file_compact_frag", Int(integer(entry)?))
                }
                "compact_interval" => ("file_compact_interval", Int(integer(entry)?)),
                "compact_min_size" => ("file_compact_min_size", Int(integer(entry)?)),
                "buffer_size" => ("file_buffer_size", Int(integer(entry)?)),
                "crc" | "do_crc" => ("file_crc", Bool(boolean(entry)?)),
                "crc_poly" => ("file_crc_poly", Int(integer(entry)?)),
                "sync" | "do_sync" | "sync_on_flush" => ("file_sync", Bool(boolean(entry)?)),
                "slice_max_msgs" | "slice_max_count" | "slice_msgs" | "slice_count" => {
                    ("file_slice_max_msgs", Int(integer(entry)?))
                }
                "slice_max_bytes" | "slice_max_size" | "slice_bytes" | "slice_size" => {
                    ("file_slice_max_bytes", Int(integer(entry)?))
                }
                "slice_max_age" | "slice_age" | "slice_max_time" | "slice_time_limit" => {
                    ("file_slice_max_age", Nanos(duration(entry)?))
                }
                "slice_archive_script" | "slice_archive" | "slice_script" => {
                    ("file_slice_archive_script", Str(string(entry)?))
                }
                "file_descriptors_limit" | "fds_limit" => ("file_fds_limit", Int(integer(entry)?)),
                "parallel_recovery" => ("file_parallel_recovery", Int(integer(entry)?)),
                "file_read_buffer_size" | "read_buffer_size" => {
                    ("file_read_buffer_size", Int(integer(entry)?))
                }
                "file_auto_sync" | "auto_sync" => ("file_auto_sync", Nanos(duration(entry)?)),
                // `truncate_bad_eof` is command-line only; unknown keys are ignored.
                _ => continue,
            };
            self.file.push(setting);
        }
        Ok(())
    }

    /// `sql { }`, into the same list as `file { }` under the flags' names. Its type
    /// errors name the key in lower case, as the Go server's do.
    fn sql_options(&mut self, e: &Entry) -> Result<()> {
        use FileSetting::{Bool, Int, Str};
        for entry in section(e, "SQL options")? {
            let name = entry.key.to_lowercase();
            let lowered = Entry {
                key: name.clone(),
                ..entry.clone()
            };
            let setting = match name.as_str() {
                "driver" => ("sql_driver", Str(string(&lowered)?)),
                "source" => ("sql_source", Str(string(&lowered)?)),
                "no_caching" => ("sql_no_caching", Bool(boolean(&lowered)?)),
                "max_open_conns" | "max_conns" => ("sql_max_open_conns", Int(integer(&lowered)?)),
                "bulk_insert_limit" => ("sql_bulk_insert_limit", Int(integer(&lowered)?)),
                _ => continue,
            };
            self.file.push(setting);
        }
        Ok(())
    }

    fn store_limits(&mut self, e: &Entry) -> Result<()> {
        let map = section(e, "store limits")?;
        for entry in map {
            match entry.key.to_lowercase().as_str() {
                "mc" | "max_channels" | "maxchannels" => {
                    self.max_channels = Some(integer(entry)?);
                }
                "channels" | "channels_limits" | "channelslimits" | "per_channel"
                | "per_channel_limits" => self.per_channel_limits(entry)?,
                name => {
                    let Some((field, value)) = channel_limit(entry, name)? else {
                        continue;
                    };
                    let slot = match field {
                        Field::Subs => &mut self.max_subs,
                        Field::Msgs => &mut self.max_msgs,
                        Field::Bytes => &mut self.max_bytes,
                        Field::Age => &mut self.max_age,
                        Field::Inactivity => &mut self.max_inactivity,
                    };
                    *slot = Some(value);
                }
            }
        }
        Ok(())
    }

    fn per_channel_limits(&mut self, e: &Entry) -> Result<()> {
        let channels = section(e, "per channel limits")?;
        for channel in channels {
            let limits = section(channel, "channel limits")?;
            if !is_valid_channel_pattern(&channel.key) {
                let refused = LimitsError::InvalidChannelName(channel.key.clone());
                return Err(ConfigError::at(channel, refused.to_string()));
            }
            let mut cl = ChannelLimits::default();
            for entry in limits {
                let Some((field, value)) = channel_limit(entry, &entry.key.to_lowercase())? else {
                    continue;
                };
                // An explicit 0 means unlimited for this channel, which -1 carries
                // through inheritance, where 0 would mean "inherit".
                let value = if value == 0 { -1 } else { value };
                match field {
                    Field::Subs => cl.max_subscriptions = value,
                    Field::Msgs => cl.max_msgs = value,
                    Field::Bytes => cl.max_bytes = value,
                    Field::Age => cl.max_age = value,
                    Field::Inactivity => cl.max_inactivity = value,
                }
            }
            self.per_channel.insert(channel.key.clone(), cl);
        }
        Ok(())
    }
}

enum Field {
    Subs,
    Msgs,
    Bytes,
    Age,
    Inactivity,
}

/// A limit key shared by the global section and the per-channel entries; `None` for
/// keys that are not limits.
fn channel_limit(e: &Entry, name: &str) -> Result<Option<(Field, i64)>> {
    Ok(Some(match name {
        "msu" | "max_subs" | "max_subscriptions" | "maxsubscriptions" => (Field::Subs, integer(e)?),
        "mm" | "max_msgs" | "maxmsgs" | "max_count" | "maxcount" => (Field::Msgs, integer(e)?),
        "mb" | "max_bytes" | "maxbytes" => (Field::Bytes, integer(e)?),
        "ma" | "max_age" | "maxage" => (Field::Age, duration(e)?),
        "mi" | "max_inactivity" | "maxinactivity" => (Field::Inactivity, duration(e)?),
        _ => return Ok(None),
    }))
}

fn type_error(e: &Entry, expected: &str) -> ConfigError {
    ConfigError::at(
        e,
        format!(
            "parameter \"{}\" value is expected to be {expected}, got {}",
            e.key,
            e.value.go_kind()
        ),
    )
}

fn string(e: &Entry) -> Result<String> {
    match &e.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(type_error(e, "string")),
    }
}

fn boolean(e: &Entry) -> Result<bool> {
    match e.value {
        Value::Bool(b) => Ok(b),
        _ => Err(type_error(e, "bool")),
    }
}

fn integer(e: &Entry) -> Result<i64> {
    match e.value {
        Value::Integer(n) => Ok(n),
        _ => Err(type_error(e, "int64")),
    }
}

/// Durations are strings in Go duration syntax; a bare `1m` is the integer 1000000
/// and is refused as such (OPERATIONS §2.2).
fn duration(e: &Entry) -> Result<i64> {
    match &e.value {
        Value::String(s) => parse_go_duration(s).map_err(|reason| ConfigError::at(e, reason)),
        _ => Err(type_error(e, "string")),
    }
}

/// A heartbeat setting: a negative one would make timers fire in the past forever,
/// so it is refused like the command line refuses `-hbi=-1s`.
fn interval(e: &Entry) -> Result<i64> {
    let nanos = duration(e)?;
    if nanos < 0 {
        let Value::String(text) = &e.value else {
            return Err(type_error(e, "string"));
        };
        return Err(ConfigError::at(
            e,
            format!(
                "parameter \"{}\" value {text:?} is out of range: it cannot be negative",
                e.key
            ),
        ));
    }
    Ok(nanos)
}

fn section<'m>(e: &'m Entry, what: &str) -> Result<&'m Map> {
    match &e.value {
        Value::Map(map) => Ok(map),
        other => Err(ConfigError::at(
            e,
            format!("expected {what} to be a map/struct, got {other}"),
        )),
    }
}

// Sections of features not built yet are read in full first, so that a malformed
// one gets the Go server's message for it; a well-formed one is then refused by name.

/// `tls { }`, the client side of the server's own NATS connections. A file shared
/// with the NATS server also has the NATS server's `tls { }` here, whose keys
/// (`cert_file`, `verify`, ...) mean nothing to the streaming server.
fn client_tls(e: &Entry) -> Result<ClientTls> {
    let mut tls = ClientTls::default();
    let text = |entry: &Entry| string(entry).map(|v| Some(v).filter(|v| !v.is_empty()));
    for entry in section(e, "TLS")? {
        match entry.key.to_lowercase().as_str() {
            "client_cert" => tls.client_cert = text(entry)?,
            "client_key" => tls.client_key = text(entry)?,
            "client_ca" | "client_cacert" => tls.client_ca = text(entry)?,
            "server_name" | "server_hostname" => tls.server_name = text(entry)?,
            "skip_verify" | "insecure" => tls.skip_verify = boolean(entry)?,
            _ => {}
        }
    }
    Ok(tls)
}

impl StreamingFileOptions {
    /// `cluster { }`: Raft clustering, on by the block's mere presence. Each key is
    /// kept under its command-line flag's name; the Raft timeouts, which have no
    /// flag, under `cluster_raft_*`.
    fn cluster(&mut self, e: &Entry) -> Result<()> {
        let mut out = vec![("clustered", FileSetting::Bool(true))];
        for entry in section(e, "cluster")? {
            let key = entry.key.to_lowercase();
            let setting = match key.as_str() {
                "node_id" => ("cluster_node_id", FileSetting::Str(string(entry)?)),
                "log_path" => ("cluster_log_path", FileSetting::Str(string(entry)?)),
                "bootstrap" => ("cluster_bootstrap", FileSetting::Bool(boolean(entry)?)),
                "sync" => ("cluster_sync", FileSetting::Bool(boolean(entry)?)),
                "proceed_on_restore_failure" => (
                    "cluster_proceed_on_restore_failure",
                    FileSetting::Bool(boolean(entry)?),
                ),
                "allow_add_remove_node" => (
                    "cluster_allow_add_remove_node",
                    FileSetting::Bool(boolean(entry)?),
                ),
                "raft_logging" => ("cluster_raft_logging", FileSetting::Bool(boolean(entry)?)),
                // BoltDB tuning and the per-peer connection choice of the Go server's
                // log and transport, which this server does not have.
                "bolt_free_list_sync" | "bolt_free_list_map" | "nodes_connections" => {
                    boolean(entry)?;
                    continue;
                }
                "log_cache_size" => ("cluster_log_cache_size", FileSetting::Int(integer(entry)?)),
                "log_snapshots" => ("cluster_log_snapshots", FileSetting::Int(integer(entry)?)),
                "trailing_logs" => ("cluster_trailing_logs", FileSetting::Int(integer(entry)?)),
                "raft_heartbeat_timeout" => (
                    "cluster_raft_heartbeat_timeout",
                    FileSetting::Nanos(duration(entry)?),
                ),
                "raft_election_timeout" => (
                    "cluster_raft_election_timeout",
                    FileSetting::Nanos(duration(entry)?),
                ),
                "raft_lease_timeout" => (
                    "cluster_raft_lease_timeout",
                    FileSetting::Nanos(duration(entry)?),
                ),
                "raft_commit_timeout" => (
                    "cluster_raft_commit_timeout",
                    FileSetting::Nanos(duration(entry)?),
                ),
                "peers" => ("cluster_peers", FileSetting::Str(peers(entry)?.join(","))),
                _ => continue,
            };
            out.push(setting);
        }
        self.file.extend(out);
        Ok(())
    }
}

fn peers(e: &Entry) -> Result<Vec<String>> {
    let Value::Array(items) = &e.value else {
        return Err(type_error(e, "slice"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(ConfigError::at(
                e,
                format!(
                    "interface conversion: interface {{}} is {}, not string",
                    other.go_type()
                ),
            )),
        })
        .collect()
}

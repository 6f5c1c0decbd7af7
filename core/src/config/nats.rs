//! The embedded NATS server's keys that stan-server supports (OPERATIONS §2.4), read
//! the way the Go NATS server reads them, error texts included: a value of the wrong
//! type is reported as Go's failed type assertion
//! (`interface conversion: interface {} is string, not int64`).

use super::duration::parse_go_duration;
use super::value::{Entry, Map, Pos, Value};
use super::{go_quote, not_supported, ConfigError};
use crate::nats::account::{AccountConfig, User};

type Result<T> = std::result::Result<T, ConfigError>;

/// The NATS options a file sets; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsFileOptions {
    /// Client listen host (`host`, `net`, or the host of `listen`).
    pub addr: Option<String>,
    pub port: Option<i64>,
    pub server_name: Option<String>,
    /// The host of `http: "host:port"` or `https: "host:port"`, with where it was
    /// written; monitoring listens on the client host without it.
    pub http_host: Option<(String, Pos)>,
    pub http_port: Option<i64>,
    /// Port of the HTTPS monitoring listener (`https`, `https_port`).
    pub https_port: Option<i64>,
    /// The monitoring endpoints' path prefix, as written: `/varz` shows it so and a
    /// reload compares it so; the listener normalizes it.
    pub http_base_path: Option<String>,
    /// `authorization { }` sets all three, to "" for the ones it leaves out, as the
    /// Go server does.
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
    /// Users by name: `authorization { users }` (in `$G`) and the users of
    /// `accounts`; `Some` when either lists any, which makes clients authenticate
    /// as one of them.
    pub users: Option<Vec<User>>,
    /// `accounts`: subject spaces besides `$G`.
    pub accounts: Option<Vec<AccountConfig>>,
    /// Clients without credentials log in as this user.
    pub no_auth_user: Option<String>,
    /// `authorization { timeout }`, in nanoseconds.
    pub auth_timeout: Option<i64>,
    pub max_payload: Option<i64>,
    pub max_pending: Option<i64>,
    pub max_connections: Option<i64>,
    pub max_control_line: Option<i64>,
    pub max_subscriptions: Option<i64>,
    /// Nanoseconds.
    pub ping_interval: Option<i64>,
    pub ping_max: Option<i64>,
    /// Nanoseconds a write to a client may block before it is closed as a slow
    /// consumer.
    pub write_deadline: Option<i64>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub logtime: Option<bool>,
    pub logtime_utc: Option<bool>,
    pub log_file: Option<String>,
    pub log_size_limit: Option<i64>,
    /// Log to the local syslog daemon.
    pub syslog: Option<bool>,
    /// Log to a syslog server at this URL (`udp://host:514`, `tcp://...`,
    /// `unix:///path`); wins over `syslog`, while a log file wins over both.
    pub remote_syslog: Option<String>,
    pub pid_file: Option<String>,
    pub client_advertise: Option<String>,
    pub max_traced_msg_len: Option<i64>,
    pub ports_file_dir: Option<String>,
    /// `tls { }`: TLS on client connections.
    pub tls: Option<TlsFileOptions>,
    /// `cluster { }`: routes to other NATS servers.
    pub cluster: Option<ClusterFileOptions>,
}

/// The `cluster { }` block of the NATS server; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFileOptions {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub routes: Option<Vec<String>>,
    pub advertise: Option<String>,
    pub no_advertise: Option<bool>,
    pub connect_retries: Option<i64>,
}

/// The `tls { }` block of the NATS server: what clients must do to connect. Files
/// are named, not read; the caller loads them and reports their errors at `pos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileOptions {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    /// Clients must present a certificate that chains to `ca_file`.
    pub verify: bool,
    /// Nanoseconds a client has to complete the handshake; 0 keeps the default.
    pub timeout: i64,
    /// Where the block is, for errors about its files.
    pub pos: Pos,
}

/// Keys of NATS server features stan-server does not have; refused by name.
const NOT_SUPPORTED: &[&str] = &[
    "mappings",
    "maps",
    "disable_sublist_cache",
    "no_sublist_cache",
    "gateway",
    "leaf",
    "leafnodes",
    "store_dir",
    "storedir",
    "jetstream",
    "prof_port",
    "max_sub_tokens",
    "max_subscription_tokens",
    "ocsp",
    "ocsp_cache",
    "allow_non_tls",
    "operator",
    "operators",
    "roots",
    "root",
    "root_operators",
    "root_operator",
    "resolver",
    "account_resolver",
    "accounts_resolver",
    "resolver_tls",
    "resolver_preload",
    "resolver_pinned_accounts",
    "system_account",
    "system",
    "no_system_account",
    "no_system",
    "no_sys_acc",
    "no_header_support",
    "trusted",
    "trusted_keys",
    "connect_error_reports",
    "reconnect_error_reports",
    "websocket",
    "ws",
    "mqtt",
    "server_tags",
    "default_js_domain",
];

impl NatsFileOptions {
    /// Reads the top-level NATS keys of `file`; a `streaming { }` block and other
    /// unknown keys are ignored, as the Go server does for the streaming server.
    pub fn from_map(file: &Map) -> Result<NatsFileOptions> {
        let mut opts = NatsFileOptions::default();
        let mut at = Positions::default();
        for entry in file {
            match entry.key.to_lowercase().as_str() {
                "accounts" => at.accounts = Some(entry),
                "authorization" => at.authorization = Some(entry),
                "no_auth_user" => at.no_auth_user = Some(entry),
                _ => {}
            }
            opts.top_level(entry)?;
        }
        opts.check_users(&at)?;
        Ok(opts)
    }

    /// The checks that need the whole file: users are unique and do not mix with a
    /// single user or token, and `no_auth_user` is one of them.
    fn check_users(&self, at: &Positions<'_>) -> Result<()> {
        let users = self.users.as_deref().unwrap_or_default();
        let from_accounts = users
            .iter()
            .any(|u| u.account != crate::nats::account::GLOBAL);
        if let Some(acc) = at.accounts.filter(|_| from_accounts) {
            if self.user.as_deref().is_some_and(|u| !u.is_empty()) {
                return Err(ConfigError::at(
                    acc,
                    "Can not have a single user/pass and accounts",
                ));
            }
            if self.token.as_deref().is_some_and(|t| !t.is_empty()) {
                return Err(ConfigError::at(acc, "Can not have a token and accounts"));
            }
        }
        if let Some(auth) = at.authorization.filter(|_| self.users.is_some()) {
            if self.user.as_deref().is_some_and(|u| !u.is_empty()) {
                return Err(ConfigError::at(
                    auth,
                    "Can not have a single user/pass and a users array",
                ));
            }
            if self.token.as_deref().is_some_and(|t| !t.is_empty()) {
                return Err(ConfigError::at(
                    auth,
                    "Can not have a token and a users array",
                ));
            }
        }
        for (i, u) in users.iter().enumerate() {
            if users[..i].iter().any(|o| o.name == u.name) {
                let e = at
                    .accounts
                    .or(at.authorization)
                    .expect("users come from a block");
                return Err(ConfigError::at(
                    e,
                    format!("Duplicate user {} detected", go_quote(&u.name)),
                ));
            }
        }
        if let (Some(name), Some(e)) = (&self.no_auth_user, at.no_auth_user) {
            if name.is_empty() {
                return Ok(());
            }
            if self.users.is_none() {
                return Err(ConfigError::at(
                    e,
                    format!("no_auth_user: \"{name}\" present, but users are not defined"),
                ));
            }
            if !users.iter().any(|u| &u.name == name) {
                return Err(ConfigError::at(
                    e,
                    format!(
                        "no_auth_user: \"{name}\" not present as user in authorization block or account configuration"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn top_level(&mut self, e: &Entry) -> Result<()> {
        let name = e.key.to_lowercase();
        match name.as_str() {
            "listen" => {
                let (host, port) = listen(e)?;
                if !host.is_empty() {
                    self.addr = Some(host);
                }
                self.port = Some(port);
            }
            "port" => self.port = Some(integer(e)?),
            "host" | "net" => {
                let host = string(e)?;
                // An empty host is the NATS server's default, every interface.
                self.addr = Some(if host.is_empty() {
                    "0.0.0.0".into()
                } else {
                    host
                });
            }
            "server_name" => self.server_name = Some(string(e)?),
            "http" => {
                let (host, port) = listen(e)?;
                if !host.is_empty() {
                    self.http_host = Some((host, e.pos.clone()));
                }
                self.http_port = Some(port);
            }
            "http_port" | "monitor_port" => self.http_port = Some(integer(e)?),
            "https" => {
                let (host, port) = listen(e)?;
                if !host.is_empty() {
                    self.http_host = Some((host, e.pos.clone()));
                }
                self.https_port = Some(port);
            }
            "https_port" => self.https_port = Some(integer(e)?),
            "http_base_path" => self.http_base_path = Some(string(e)?),
            "authorization" => self.authorization(e)?,
            "accounts" => {
                let (accounts, users) = super::accounts::accounts(e)?;
                let mut all: Vec<User> = self
                    .users
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|u| u.account == crate::nats::account::GLOBAL)
                    .collect();
                all.extend(users);
                self.users = (!all.is_empty()).then_some(all);
                self.accounts = Some(accounts);
            }
            "no_auth_user" => self.no_auth_user = Some(string(e)?),
            "max_payload" => self.max_payload = Some(int32(e)?),
            "max_control_line" => self.max_control_line = Some(int32(e)?),
            "max_subscriptions" | "max_subs" => self.max_subscriptions = Some(int32(e)?),
            "max_pending" => self.max_pending = Some(non_negative(e)?),
            "max_connections" | "max_conn" => self.max_connections = Some(non_negative(e)?),
            "ping_max" => self.ping_max = Some(non_negative(e)?),
            "ping_interval" => self.ping_interval = Some(seconds_or_duration(e, "ping_interval")?),
            // Read and checked, then unused: lame duck mode starts on SIGUSR2, which
            // the streaming server leaves unhandled (it ends the process), so with
            // the Go server too these settings never take effect.
            "lame_duck_duration" | "lame_duck_grace_period" => lame_duck(e, &name)?,
            "write_deadline" => {
                self.write_deadline = Some(seconds_or_duration(e, "write_deadline")?);
            }
            "debug" => self.debug = Some(boolean(e)?),
            "trace" => self.trace = Some(boolean(e)?),
            // Verbose tracing is tracing here, as `-VV` is.
            "trace_verbose" => self.trace = Some(boolean(e)?),
            "logtime" => self.logtime = Some(boolean(e)?),
            "logtime_utc" => self.logtime_utc = Some(boolean(e)?),
            "logfile" | "log_file" => self.log_file = Some(string(e)?),
            "logfile_size_limit" | "log_size_limit" => self.log_size_limit = Some(integer(e)?),
            "syslog" => self.syslog = Some(boolean(e)?),
            "remote_syslog" => self.remote_syslog = Some(string(e)?),
            "pidfile" | "pid_file" => self.pid_file = Some(string(e)?),
            "client_advertise" => self.client_advertise = Some(string(e)?),
            "max_traced_msg_len" => self.max_traced_msg_len = Some(integer(e)?),
            "ports_file_dir" => self.ports_file_dir = Some(string(e)?),
            "tls" => self.tls = Some(tls(e)?),
            "cluster" => self.cluster = Some(cluster(e)?),
            n if NOT_SUPPORTED.contains(&n) => return Err(not_supported(e, &e.key)),
            _ => {}
        }
        Ok(())
    }

    fn authorization(&mut self, e: &Entry) -> Result<()> {
        let Value::Map(block) = &e.value else {
            return Err(conversion(e, "map[string]interface {}"));
        };
        let (mut user, mut pass, mut token) = (String::new(), String::new(), String::new());
        for a in block {
            match a.key.to_lowercase().as_str() {
                "user" | "username" => user = string(a)?,
                "pass" | "password" => pass = string(a)?,
                "token" => token = string(a)?,
                "timeout" => {
                    // Anything but a number means one second to the Go server.
                    let seconds = match a.value {
                        Value::Integer(n) => n as f64,
                        Value::Float(x) => x,
                        _ => 1.0,
                    };
                    let nanos = seconds * 1e9;
                    if !(0.0..9.2e18).contains(&nanos) {
                        return Err(ConfigError::at(
                            a,
                            format!(
                                "authorization timeout of {} seconds is out of range",
                                a.value
                            ),
                        ));
                    }
                    self.auth_timeout = Some(nanos as i64);
                }
                "users" => {
                    let users = super::accounts::users(
                        a,
                        crate::nats::account::GLOBAL,
                        &format!("{}.{}", e.key, a.key),
                    )?;
                    let mut all: Vec<User> = self
                        .users
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|u| u.account != crate::nats::account::GLOBAL)
                        .collect();
                    all.extend(users);
                    self.users = (!all.is_empty()).then_some(all);
                }
                "default_permission" | "default_permissions" | "permissions" => {
                    return Err(not_supported(a, &format!("{}.{}", e.key, a.key)));
                }
                _ if a.used_as_variable => {}
                _ => {
                    return Err(ConfigError::at(
                        a,
                        format!("unknown field {}", go_quote(&a.key)),
                    ));
                }
            }
        }
        if (!user.is_empty() || !pass.is_empty()) && !token.is_empty() {
            return Err(ConfigError::at(e, "Cannot have a user/pass and token"));
        }
        self.user = Some(user);
        self.pass = Some(pass);
        self.token = Some(token);
        Ok(())
    }
}

/// Where the entries that the whole-file checks speak of are.
#[derive(Default)]
struct Positions<'a> {
    accounts: Option<&'a Entry>,
    authorization: Option<&'a Entry>,
    no_auth_user: Option<&'a Entry>,
}

/// `cluster { }`: unknown keys are Go's errors; route authorization, TLS and
/// permissions are refused by name.
fn cluster(e: &Entry) -> Result<ClusterFileOptions> {
    let Value::Map(block) = &e.value else {
        return Err(ConfigError::at(
            e,
            format!("Expected map to define cluster, got {}", e.value.go_type()),
        ));
    };
    let mut c = ClusterFileOptions::default();
    for a in block {
        match a.key.to_lowercase().as_str() {
            "name" => c.name = Some(string(a)?),
            "listen" => {
                let (host, port) = listen(a)?;
                c.host = Some(host);
                c.port = Some(port);
            }
            "port" => c.port = Some(integer(a)?),
            "host" | "net" => c.host = Some(string(a)?),
            "routes" => {
                let Value::Array(items) = &a.value else {
                    return Err(conversion(a, "[]interface {}"));
                };
                let mut routes = Vec::new();
                for item in items {
                    let Value::String(url) = item else {
                        return Err(ConfigError::at(
                            a,
                            format!(
                                "interface conversion: interface {{}} is {}, not string",
                                item.go_type()
                            ),
                        ));
                    };
                    routes.push(url.clone());
                }
                c.routes = Some(routes);
            }
            "cluster_advertise" | "advertise" => c.advertise = Some(string(a)?),
            "no_advertise" => c.no_advertise = Some(boolean(a)?),
            "connect_retries" => c.connect_retries = Some(integer(a)?),
            "authorization" | "tls" | "permissions" => {
                return Err(not_supported(a, &format!("{}.{}", e.key, a.key)));
            }
            _ if a.used_as_variable => {}
            _ => {
                return Err(ConfigError::at(
                    a,
                    format!("unknown field {}", go_quote(&a.key)),
                ));
            }
        }
    }
    Ok(c)
}

fn tls(e: &Entry) -> Result<TlsFileOptions> {
    let Value::Map(block) = &e.value else {
        return Err(conversion(e, "map[string]interface {}"));
    };
    let mut t = TlsFileOptions {
        cert_file: None,
        key_file: None,
        ca_file: None,
        verify: false,
        timeout: 0,
        pos: e.pos.clone(),
    };
    let filename = |a: &Entry| match &a.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(ConfigError::at(
            a,
            format!(
                "error parsing tls config, expected '{}' to be filename",
                a.key
            ),
        )),
    };
    let flag = |a: &Entry| match a.value {
        Value::Bool(b) => Ok(b),
        _ => Err(ConfigError::at(
            a,
            format!(
                "error parsing tls config, expected '{}' to be a boolean",
                a.key
            ),
        )),
    };
    for a in block {
        match a.key.to_lowercase().as_str() {
            "cert_file" => t.cert_file = Some(filename(a)?),
            "key_file" => t.key_file = Some(filename(a)?),
            "ca_file" => t.ca_file = Some(filename(a)?),
            "verify" => t.verify = flag(a)?,
            // Skipping verification is a client-side setting; a server never uses it.
            "insecure" => {
                flag(a)?;
            }
            "verify_cert_and_check_known_urls" => {
                if flag(a)? {
                    return Err(ConfigError::at(
                        a,
                        "verify_cert_and_check_known_urls not supported in this context",
                    ));
                }
            }
            "timeout" => t.timeout = tls_timeout(a)?,
            "verify_and_map" => {
                // `verify_and_map: false` asks for nothing.
                if flag(a)? {
                    return Err(not_supported(a, &format!("{}.{}", e.key, a.key)));
                }
            }
            "cipher_suites"
            | "curve_preferences"
            | "connection_rate_limit"
            | "pinned_certs"
            | "cert_store"
            | "cert_match_by"
            | "cert_match"
            | "ocsp_peer" => {
                return Err(not_supported(a, &format!("{}.{}", e.key, a.key)));
            }
            _ => {
                return Err(ConfigError::at(
                    a,
                    format!(
                        "error parsing tls config, unknown field [{}]",
                        go_quote(&a.key)
                    ),
                ));
            }
        }
    }
    Ok(t)
}

/// `tls { timeout }`: seconds as a number, or a duration string; in nanoseconds.
fn tls_timeout(a: &Entry) -> Result<i64> {
    match &a.value {
        Value::Integer(n) => Ok(n.saturating_mul(1_000_000_000)),
        Value::Float(x) => Ok((x * 1e9) as i64),
        Value::String(s) => parse_go_duration(s).map_err(|err| {
            ConfigError::at(a, format!("error parsing tls config, 'timeout' {err}"))
        }),
        _ => Err(ConfigError::at(
            a,
            "error parsing tls config, 'timeout' wrong type",
        )),
    }
}

/// Go's failed type assertion, which the NATS server reports as is.
fn conversion(e: &Entry, wanted: &str) -> ConfigError {
    ConfigError::at(
        e,
        format!(
            "interface conversion: interface {{}} is {}, not {wanted}",
            e.value.go_type()
        ),
    )
}

fn string(e: &Entry) -> Result<String> {
    match &e.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(conversion(e, "string")),
    }
}

fn boolean(e: &Entry) -> Result<bool> {
    match e.value {
        Value::Bool(b) => Ok(b),
        _ => Err(conversion(e, "bool")),
    }
}

fn integer(e: &Entry) -> Result<i64> {
    match e.value {
        Value::Integer(n) => Ok(n),
        _ => Err(conversion(e, "int64")),
    }
}

/// Sizes and counts where a negative value has no meaning.
fn non_negative(e: &Entry) -> Result<i64> {
    let n = integer(e)?;
    if n < 0 {
        return Err(ConfigError::at(
            e,
            format!("{} value can not be negative", e.key),
        ));
    }
    Ok(n)
}

/// Limits the NATS server keeps in 32 bits.
fn int32(e: &Entry) -> Result<i64> {
    let n = non_negative(e)?;
    if n > i64::from(i32::MAX) {
        return Err(ConfigError::at(e, format!("{} value is too big", e.key)));
    }
    Ok(n)
}

/// A duration string, or for older files a number of seconds.
/// Lame duck settings are checked as the NATS server checks them.
fn lame_duck(e: &Entry, name: &str) -> Result<()> {
    let text = string(e)?;
    let nanos = parse_go_duration(&text)
        .map_err(|err| ConfigError::at(e, format!("error parsing {name}: {err}")))?;
    if name == "lame_duck_duration" && nanos < 30_000_000_000 {
        return Err(ConfigError::at(
            e,
            format!("invalid lame_duck_duration of {text}, minimum is 30 seconds"),
        ));
    }
    if nanos < 0 {
        return Err(ConfigError::at(
            e,
            format!("invalid {name}, needs to be positive"),
        ));
    }
    Ok(())
}

fn seconds_or_duration(e: &Entry, name: &str) -> Result<i64> {
    let nanos = match &e.value {
        Value::String(s) => parse_go_duration(s)
            .map_err(|err| ConfigError::at(e, format!("error parsing {name}: {err}")))?,
        _ => integer(e)?.checked_mul(1_000_000_000).ok_or_else(|| {
            ConfigError::at(e, format!("error parsing {name}: value out of range"))
        })?,
    };
    if nanos < 0 {
        return Err(ConfigError::at(
            e,
            format!("{name} value can not be negative"),
        ));
    }
    Ok(nanos)
}

/// `listen` and `http`: a port, or `host:port` split as Go's `net.SplitHostPort` does.
fn listen(e: &Entry) -> Result<(String, i64)> {
    match &e.value {
        Value::Integer(port) => Ok((String::new(), *port)),
        Value::String(text) => {
            let (host, port) = split_host_port(text).ok_or_else(|| {
                ConfigError::at(
                    e,
                    format!("could not parse address string {}", go_quote(text)),
                )
            })?;
            let port = port.parse::<i64>().map_err(|_| {
                ConfigError::at(e, format!("could not parse port {}", go_quote(port)))
            })?;
            Ok((host.to_string(), port))
        }
        other => Err(ConfigError::at(
            e,
            format!("expected port or host:port, got {}", other.go_type()),
        )),
    }
}

fn split_host_port(text: &str) -> Option<(&str, &str)> {
    let colon = text.rfind(':')?;
    let (host, brackets_from) = if let Some(inner) = text.strip_prefix('[') {
        let end = inner.find(']')? + 1;
        // `]` must be followed by the last colon.
        if end + 1 != colon {
            return None;
        }
        (&text[1..end], (1, end + 1))
    } else {
        let host = &text[..colon];
        if host.contains(':') {
            return None;
        }
        (host, (0, 0))
    };
    if text[brackets_from.0..].contains('[') || text[brackets_from.1..].contains(']') {
        return None;
    }
    Some((host, &text[colon + 1..]))
}

//! The configuration files named by `-c` and `-sc`: which half of the server reads
//! which file (OPERATIONS.md §2.1), reading them and their includes from disk, and
//! applying what they set to the options the command line left alone, so that
//! explicit flags win (§1.1).

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::Duration;

use stan_core::config::{self, Included, Map, NatsFileOptions, StreamingFileOptions};

use crate::cli::Options;

/// Reads a file's bytes.
pub type ReadFn<'a> = dyn FnMut(&Path) -> io::Result<Vec<u8>> + 'a;

/// Applies the files `opts` names, read from disk, with `$VAR` taken from the
/// process environment. The error is the line to print before exiting 1.
pub fn apply(opts: &mut Options) -> Result<(), String> {
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    apply_with(opts, &mut |path| std::fs::read(path), &env)
}

/// [`apply`] with the file system and the environment supplied by the caller.
///
/// With `-c` alone both halves read that file, with `-sc` alone both read that one,
/// and with both each half reads its own. The NATS half goes first, as in the Go
/// server, so an error in both shows the NATS one.
pub fn apply_with(
    opts: &mut Options,
    read: &mut ReadFn<'_>,
    env: &config::EnvFn<'_>,
) -> Result<(), String> {
    let nats_file = opts
        .config_file
        .clone()
        .or_else(|| opts.stan_config_file.clone());
    let stan_file = opts
        .stan_config_file
        .clone()
        .or_else(|| opts.config_file.clone());
    let (Some(nats_file), Some(stan_file)) = (nats_file, stan_file) else {
        return Ok(());
    };
    let nats_map = load(&nats_file, read, env)?;
    let nats = NatsFileOptions::from_map(&nats_map).map_err(|e| e.to_string())?;
    let stan_map = if stan_file == nats_file {
        nats_map
    } else {
        load(&stan_file, read, env)?
    };
    let streaming = StreamingFileOptions::from_map(&stan_map).map_err(|e| e.to_string())?;
    apply_nats(opts, nats)?;
    apply_streaming(opts, streaming);
    Ok(())
}

fn load(path: &str, read: &mut ReadFn<'_>, env: &config::EnvFn<'_>) -> Result<Map, String> {
    let text = read_text(read, path)?;
    let mut include = |from: &str, written: &str| -> Result<Included, String> {
        let name = include_path(from, written);
        let text = read_text(read, &name)?;
        Ok(Included { name, text })
    };
    config::parse(path, &text, &mut include, env).map_err(|e| e.to_string())
}

/// The file's text, or the Go server's words for why it cannot be read
/// (`error opening config file: open x.conf: no such file or directory`).
fn read_text(read: &mut ReadFn<'_>, path: &str) -> Result<String, String> {
    match read(Path::new(path)) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            // Opening a directory works; reading it is what fails.
            let op = if e.raw_os_error() == Some(libc::EISDIR) {
                "read"
            } else {
                "open"
            };
            Err(format!(
                "error opening config file: {op} {path}: {}",
                os_reason(&e)
            ))
        }
    }
}

/// An IO error as Go words it: the C library's message, lower-cased, without the
/// error number.
pub(crate) fn os_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => &text[..i],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Where `include written` in the file `from` points: joined to the directory of
/// `from` and cleaned, as Go's `filepath.Join` does; an absolute `written` is joined
/// too, because that is what the Go server does with it.
pub fn include_path(from: &str, written: &str) -> String {
    let dir = match from.rfind('/') {
        Some(i) => &from[..=i],
        None => ".",
    };
    let joined = if written.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{written}")
    };
    clean_path(&joined)
}

/// Go's `path.Clean`: no empty or `.` elements, `..` resolved lexically.
pub(crate) fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// An empty string means "not set" to the Go server, as on the command line.
fn text(value: String) -> Option<String> {
    Some(value).filter(|v| !v.is_empty())
}

fn apply_nats(opts: &mut Options, file: NatsFileOptions) -> Result<(), String> {
    let free = |opts: &Options, name: &str| !opts.explicit.contains(name);
    if let Some(v) = file.addr.filter(|_| free(opts, "addr")) {
        opts.addr = v;
    }
    if let Some(v) = file.port.filter(|_| free(opts, "port")) {
        opts.port = v;
    }
    if let Some(v) = file.server_name.filter(|_| free(opts, "server_name")) {
        opts.server_name = text(v);
    }
    if let Some(v) = file.http_port.filter(|_| free(opts, "http_port")) {
        opts.http_port = v;
    }
    if let Some(v) = file.https_port.filter(|_| free(opts, "https_port")) {
        opts.https_port = v;
    }
    if let Some(v) = file.user.filter(|_| free(opts, "user")) {
        opts.user = text(v);
    }
    if let Some(v) = file.pass.filter(|_| free(opts, "pass")) {
        opts.pass = text(v);
    }
    if let Some(v) = file.token.filter(|_| free(opts, "auth")) {
        opts.auth = text(v);
    }
    if let Some(v) = file.debug.filter(|_| free(opts, "debug")) {
        opts.debug = v;
    }
    if let Some(v) = file.trace.filter(|_| free(opts, "trace")) {
        opts.trace = v;
    }
    if let Some(v) = file.logtime.filter(|_| free(opts, "logtime")) {
        opts.logtime = v;
    }
    if let Some(v) = file.logtime_utc.filter(|_| free(opts, "logtime_utc")) {
        opts.logtime_utc = v;
    }
    if let Some(v) = file.log_file.filter(|_| free(opts, "log_file")) {
        opts.log_file = text(v);
    }
    if let Some(v) = file.log_size_limit.filter(|_| free(opts, "log_size_limit")) {
        opts.log_size_limit = v;
    }
    if let Some(v) = file.syslog.filter(|_| free(opts, "syslog")) {
        opts.syslog = v;
    }
    if let Some(v) = file.remote_syslog.filter(|_| free(opts, "remote_syslog")) {
        opts.remote_syslog = text(v);
    }
    if let Some(v) = file.http_base_path {
        opts.http_base_path = v;
    }
    if let Some(v) = file
        .client_advertise
        .filter(|_| free(opts, "client_advertise"))
    {
        opts.client_advertise = text(v);
    }
    if let Some(v) = file
        .max_traced_msg_len
        .filter(|_| free(opts, "max_traced_msg_len"))
    {
        opts.max_traced_msg_len = v;
    }
    if let Some(v) = file.ports_file_dir.filter(|_| free(opts, "ports_file_dir")) {
        opts.ports_file_dir = text(v);
    }
    if let Some(c) = file.cluster {
        apply_cluster(opts, c);
    }
    opts.users = file.users;
    opts.accounts = file.accounts.unwrap_or_default();
    opts.no_auth_user = file.no_auth_user.and_then(text);
    if let Some(v) = file.pid_file.filter(|_| free(opts, "pid_file")) {
        opts.pid_file = text(v);
    }
    // No flag sets these; 0 keeps the NATS server's default, as it does there.
    let positive = |v: Option<i64>| v.filter(|&n| n > 0);
    if let Some(v) = positive(file.max_payload) {
        opts.max_payload = v;
    }
    if let Some(v) = positive(file.max_pending) {
        opts.max_pending = v;
    }
    if let Some(v) = positive(file.max_connections) {
        opts.max_connections = v;
    }
    if let Some(v) = positive(file.max_control_line) {
        opts.max_control_line = v;
    }
    if let Some(v) = positive(file.max_subscriptions) {
        opts.max_subscriptions = v;
    }
    if let Some(v) = positive(file.write_deadline) {
        opts.write_deadline = Duration::from_nanos(v as u64);
    }
    if let Some(v) = positive(file.ping_max) {
        opts.ping_max = v;
    }
    if let Some(v) = positive(file.ping_interval) {
        opts.ping_interval = Duration::from_nanos(v as u64);
    }
    if let Some(v) = positive(file.tls.as_ref().map(|t| t.timeout)) {
        opts.tls_timeout = Duration::from_nanos(v as u64);
    }
    if let Some(tls) = file.tls.filter(|_| free(opts, "tls_config")) {
        opts.tls_config = Some(crate::tls::TlsOptions {
            cert_file: tls.cert_file,
            key_file: tls.key_file,
            ca_file: tls.ca_file,
            verify: tls.verify,
            origin: Some(format!("{}:{}", tls.pos.file, tls.pos.line)),
        });
    }
    match positive(file.auth_timeout) {
        Some(v) => opts.auth_timeout = Duration::from_nanos(v as u64),
        // With TLS, the NATS server's default leaves a second after the handshake.
        None if opts.tls_config.is_some() => {
            opts.auth_timeout = opts.tls_timeout + Duration::from_secs(1);
        }
        None => {}
    }
    if let Some((host, _)) = file.http_host {
        opts.http_host = Some(host);
    }
    Ok(())
}

fn apply_streaming(opts: &mut Options, file: StreamingFileOptions) {
    let free = |opts: &Options, name: &str| !opts.explicit.contains(name);
    if let Some(v) = file.cluster_id.filter(|_| free(opts, "cluster_id")) {
        opts.cluster_id = v;
    }
    if let Some(v) = file.store.filter(|_| free(opts, "store")) {
        opts.store = v;
    }
    if let Some(v) = file.dir.filter(|_| free(opts, "dir")) {
        opts.dir = Some(v).filter(|d| !d.is_empty());
    }
    if let Some(v) = file.ft_group.filter(|_| free(opts, "ft_group")) {
        opts.ft_group = Some(v).filter(|g| !g.is_empty());
    }
    for (flag, setting) in file.file {
        opts.set_from_file(flag, setting);
    }
    if let Some(v) = file.encrypt.filter(|_| free(opts, "encrypt")) {
        opts.encrypt = v;
    }
    if let Some(v) = file
        .encryption_cipher
        .filter(|_| free(opts, "encryption_cipher"))
    {
        opts.encryption_cipher = text(v);
    }
    if let Some(v) = file.encryption_key.filter(|_| free(opts, "encryption_key")) {
        opts.encryption_key = text(v);
    }
    if let Some(v) = file.stan_debug.filter(|_| free(opts, "stan_debug")) {
        opts.stan_debug = v;
    }
    if let Some(v) = file.stan_trace.filter(|_| free(opts, "stan_trace")) {
        opts.stan_trace = v;
    }
    // Negative heartbeat durations were refused while reading the file.
    if let Some(v) = file.hb_interval.filter(|_| free(opts, "hb_interval")) {
        opts.hb_interval = Duration::from_nanos(v.max(0) as u64);
    }
    if let Some(v) = file.hb_timeout.filter(|_| free(opts, "hb_timeout")) {
        opts.hb_timeout = Duration::from_nanos(v.max(0) as u64);
    }
    if let Some(v) = file.hb_fail_count.filter(|_| free(opts, "hb_fail_count")) {
        opts.hb_fail_count = v;
    }
    if let Some(v) = file
        .replace_durable
        .filter(|_| free(opts, "replace_durable"))
    {
        opts.replace_durable = v;
    }
    if let Some(v) = file.max_channels.filter(|_| free(opts, "max_channels")) {
        opts.max_channels = v;
    }
    if let Some(v) = file.max_subs.filter(|_| free(opts, "max_subs")) {
        opts.max_subs = v;
    }
    if let Some(v) = file.max_msgs.filter(|_| free(opts, "max_msgs")) {
        opts.max_msgs = v;
    }
    if let Some(v) = file.max_bytes.filter(|_| free(opts, "max_bytes")) {
        opts.max_bytes = v;
    }
    if let Some(v) = file.max_age.filter(|_| free(opts, "max_age")) {
        opts.max_age = v;
    }
    if let Some(v) = file.max_inactivity.filter(|_| free(opts, "max_inactivity")) {
        opts.max_inactivity = v;
    }
    if let Some(v) = file.partitioning {
        opts.partitioning = v;
    }
    if let Some(v) = file.discover_prefix {
        opts.discover_prefix = v;
    }
    opts.per_channel.extend(file.per_channel);
    if let Some(v) = file.nats_server.filter(|_| free(opts, "nats_server")) {
        opts.nats_server = text(v);
    }
    if let Some(v) = file.secure.filter(|_| free(opts, "secure")) {
        opts.nats_client.secure = v;
    }
    let c = &mut opts.nats_client;
    c.username = file.username.and_then(text).or(c.username.take());
    c.password = file.password.and_then(text).or(c.password.take());
    c.token = file.token.and_then(text).or(c.token.take());
    c.credentials = file.credentials.and_then(text).or(c.credentials.take());
    c.nkey_seed_file = file
        .nkey_seed_file
        .and_then(text)
        .or(c.nkey_seed_file.take());
    let tls = file.tls;
    let flag = |explicit: &BTreeSet<&str>, name: &str| explicit.contains(name);
    if !flag(&opts.explicit, "tls_client_cert") && tls.client_cert.is_some() {
        opts.nats_client.tls_cert = tls.client_cert;
    }
    if !flag(&opts.explicit, "tls_client_key") && tls.client_key.is_some() {
        opts.nats_client.tls_key = tls.client_key;
    }
    if !flag(&opts.explicit, "tls_client_cacert") && tls.client_ca.is_some() {
        opts.nats_client.tls_ca = tls.client_ca;
    }
    let c = &mut opts.nats_client;
    c.tls_server_name = tls.server_name.or(c.tls_server_name.take());
    c.tls_skip_verify |= tls.skip_verify;
}

/// The `cluster { }` block, under the flags given on the command line.
fn apply_cluster(opts: &mut Options, c: stan_core::config::ClusterFileOptions) {
    let free = |opts: &Options, name: &str| !opts.explicit.contains(name);
    // Without a port there is no cluster listener, as with the NATS server; -1
    // asks for a free one.
    if let Some(port) = c.port.filter(|&p| p != 0 && free(opts, "cluster")) {
        let host = c.host.unwrap_or_default();
        opts.cluster_listen = Some(format!("{host}:{port}"));
    }
    if let Some(v) = c.routes.filter(|_| free(opts, "routes")) {
        opts.routes = Some(v.join(",")).filter(|r| !r.is_empty());
    }
    if let Some(v) = c.name.filter(|_| free(opts, "cluster_name")) {
        opts.cluster_name = Some(v).filter(|n| !n.is_empty());
    }
    if let Some(v) = c.advertise.filter(|_| free(opts, "cluster_advertise")) {
        opts.cluster_advertise = Some(v).filter(|a| !a.is_empty());
    }
    if let Some(v) = c.no_advertise.filter(|_| free(opts, "no_advertise")) {
        opts.no_advertise = v;
    }
    if let Some(v) = c.connect_retries.filter(|_| free(opts, "connect_retries")) {
        opts.connect_retries = v;
    }
}

//! Starting and stopping `stan-server`: listeners, the driver, monitoring, signals,
//! the pid file and the startup log lines.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stan_core::nats::server::NATS_VERSION;
use stan_core::nats::{self, Auth};
use stan_core::node::{Node, NodeConfig};
use stan_core::store::{MemStore, Store, Unopened};
use stan_core::streaming::ft::StoreLock;
use stan_core::Now;

use crate::store::{FileStore, LockAttempt, SqlLock, SqlStore, StdFs};
use stan_core::streaming::cluster::ClusterConfig;
use stan_core::streaming::{self, limits::ChannelLimits, limits::StoreLimits};
use tokio::net::TcpListener;

use crate::cli::Options;
use crate::driver::{system_wall_clock, Driver};
use crate::http::{self, HttpState};
use crate::logger::{Level, Logger, Origin};

/// How the server stopped, as the process exit code.
pub type ExitCode = i32;

/// Builds the core configuration from the command line and configuration files.
pub fn node_config(opts: &Options, seed: u64) -> NodeConfig {
    let limits = StoreLimits {
        max_channels: opts.max_channels,
        channel: ChannelLimits {
            max_subscriptions: opts.max_subs,
            max_msgs: opts.max_msgs,
            max_bytes: opts.max_bytes,
            max_age: opts.max_age,
            max_inactivity: opts.max_inactivity,
        },
        per_channel: opts.per_channel.clone(),
    };
    let streaming = streaming::Config {
        cluster_id: opts.cluster_id.clone(),
        discover_prefix: opts.discover_prefix.clone(),
        hb_interval: opts.hb_interval,
        hb_timeout: opts.hb_timeout,
        hb_fail_count: u32::try_from(opts.hb_fail_count.max(0)).unwrap_or(u32::MAX),
        limits,
        replace_durable: opts.replace_durable,
        verbosity: stan_core::log::Verbosity {
            debug: opts.stan_debug,
            trace: opts.stan_trace,
        },
        rng_seed: seed.rotate_left(17),
        store_location: opts.dir.clone(),
        ft_group: opts.ft_group.clone(),
        partitioning: opts.partitioning,
        cluster: opts.raft.clustered.then(|| ClusterConfig {
            node_id: opts.raft.node_id.clone().unwrap_or_default(),
            peers: opts.raft.peers.clone(),
            heartbeat_timeout: opts.raft.heartbeat_timeout,
            election_timeout: opts.raft.election_timeout,
            lease_timeout: opts.raft.lease_timeout,
            commit_timeout: opts.raft.commit_timeout,
            log_path: crate::cluster::log_path(opts),
            raft_logging: opts.raft.raft_logging,
        }),
    };
    let auth = match (&opts.user, &opts.pass, &opts.auth) {
        // A users list wins over a single user, as with the NATS server.
        _ if opts.users.is_some() => Auth::Users {
            users: opts.users.clone().unwrap_or_default(),
            no_auth_user: opts.no_auth_user.clone(),
        },
        (Some(user), pass, _) => Auth::UserPass {
            user: user.clone(),
            pass: pass.clone().unwrap_or_default(),
        },
        (None, _, Some(token)) => Auth::Token(token.clone()),
        _ => Auth::None,
    };
    NodeConfig {
        nats: nats::Config {
            server_name: opts.server_name.clone(),
            host: opts.addr.clone(),
            port: u16::try_from(opts.port).unwrap_or(0),
            auth,
            max_payload: usize::try_from(opts.max_payload).unwrap_or(usize::MAX),
            max_pending: usize::try_from(opts.max_pending).unwrap_or(usize::MAX),
            max_connections: usize::try_from(opts.max_connections).unwrap_or(usize::MAX),
            max_control_line: usize::try_from(opts.max_control_line).unwrap_or(usize::MAX),
            max_subscriptions: usize::try_from(opts.max_subscriptions).unwrap_or(0),
            ping_interval: opts.ping_interval,
            ping_max: u32::try_from(opts.ping_max).unwrap_or(u32::MAX),
            auth_timeout: opts.auth_timeout,
            verbosity: stan_core::log::Verbosity {
                debug: opts.debug,
                trace: opts.trace,
            },
            rng_seed: seed,
            http_base_path: opts.http_base_path.clone(),
            tls_required: opts.tls_config.is_some(),
            tls_verify: opts.tls_config.as_ref().is_some_and(|t| t.verify),
            tls_timeout: opts.tls_timeout,
            // A negative length shows everything, as 0 does.
            max_traced_msg_len: usize::try_from(opts.max_traced_msg_len).unwrap_or(0),
            accounts: opts.accounts.clone(),
            internal_login: internal_login(opts),
            ..nats::Config::default()
        },
        streaming: Some(streaming),
    }
}

/// The credentials the streaming server logs into its embedded NATS server with,
/// which decide its account: those of the command line, else the streaming
/// configuration's `username`/`password`/`token` (OPERATIONS §5).
fn internal_login(opts: &Options) -> nats::Login {
    let flag = |name: &str, v: &Option<String>| v.clone().filter(|_| opts.explicit.contains(name));
    let from_flags = ["user", "pass", "auth"]
        .iter()
        .any(|f| opts.explicit.contains(f));
    let c = &opts.nats_client;
    if from_flags {
        nats::Login {
            user: flag("user", &opts.user),
            pass: flag("pass", &opts.pass),
            token: flag("auth", &opts.auth),
        }
    } else {
        nats::Login {
            user: c.username.clone(),
            pass: c.password.clone(),
            token: c.token.clone(),
        }
    }
}

/// The monitoring listeners: HTTP (`-m`) and HTTPS (`-ms`, with the certificate of
/// the client TLS settings but never asking for a client's), each logged as it
/// starts. Err once the fatal line is logged.
async fn bind_monitors(
    opts: &Options,
    log: &Logger,
) -> Result<Vec<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>, ()> {
    let host = opts.http_host.as_deref().unwrap_or(&opts.addr);
    let fatal = |text: &str| {
        log.log(Origin::Nats, Level::Fatal, text);
    };
    let mut monitors = Vec::new();
    for (port, secure) in [(opts.http_port, false), (opts.https_port, true)] {
        if port == 0 {
            continue;
        }
        let tls = if secure {
            let Some(tls) = &opts.tls_config else {
                fatal("TLS cert and key required for HTTPS");
                return Err(());
            };
            let no_client_certs = crate::tls::TlsOptions {
                verify: false,
                ..tls.clone()
            };
            match crate::tls::load(&no_client_certs) {
                Ok(config) => Some(tokio_rustls::TlsAcceptor::from(config)),
                Err(e) => {
                    fatal(&e);
                    return Err(());
                }
            }
        } else {
            None
        };
        // -1 asks for any free port, as 0 does to the system.
        let port = u16::try_from(port).unwrap_or(0);
        let listener = match TcpListener::bind((host, port)).await {
            Ok(l) => l,
            Err(e) => {
                fatal(&format!(
                    "Can't listen to the monitor port: listen tcp {host}:{port}: {e}"
                ));
                return Err(());
            }
        };
        let shown = listener
            .local_addr()
            .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
        let scheme = if secure { "https" } else { "http" };
        log.log(
            Origin::Nats,
            Level::Info,
            &format!("Starting {scheme} monitor on {shown}"),
        );
        monitors.push((listener, tls));
    }
    Ok(monitors)
}

/// The `client_advertise` address INFO carries, its port defaulting to the one the
/// server listens on.
fn advertised(opts: &Options, listen_port: u16) -> Result<Option<(String, u16)>, String> {
    let Some(text) = &opts.client_advertise else {
        return Ok(None);
    };
    nats::parse_host_port(text, listen_port)
        .map(Some)
        .map_err(|e| {
            format!("Error setting server INFO with ClientAdvertise value of {text}, err={e}")
        })
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The store chosen by `-st` (memory, the FILE store in `--dir`, or the SQL store),
/// encrypted when asked for (BEHAVIOUR §10 step 1).
fn open_store(opts: &Options, cfg: &NodeConfig, log: &Logger) -> Result<Box<dyn Store>, String> {
    let store = open_plain_store(opts, cfg, log)?;
    crate::encryption::wrap(store, opts)
}

fn open_plain_store(
    opts: &Options,
    cfg: &NodeConfig,
    log: &Logger,
) -> Result<Box<dyn Store>, String> {
    if opts.store == "SQL" {
        let mut store = SqlStore::open(opts.sql.clone()).map_err(|e| e.to_string())?;
        if let Some(limits) = channel_limits(cfg) {
            store.set_channel_limits(limits);
        }
        return Ok(Box::new(store));
    }
    if opts.store != "FILE" {
        return Ok(Box::new(MemStore::new()));
    }
    let dir = file_store_dir(opts)?;
    let store = FileStore::open(dir, opts.file.clone()).map_err(|e| e.to_string())?;
    Ok(Box::new(configure(store, cfg, log)))
}

fn file_store_dir(opts: &Options) -> Result<&str, String> {
    let dir = opts
        .dir
        .as_deref()
        .ok_or("for FILE stores, root directory must be specified")?;
    opts.file.validate().map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Where a FILE store logs, its clock and the channel limits its slices follow.
pub(crate) fn configure(mut store: FileStore, cfg: &NodeConfig, log: &Logger) -> FileStore {
    let sink = log.clone();
    store.set_log_sink(Arc::new(move |level, text: &str| {
        sink.log(Origin::Stream, level, text)
    }));
    let origin = std::time::Instant::now();
    store.set_clock(Arc::new(move || origin.elapsed()));
    if let Some(limits) = channel_limits(cfg) {
        store.set_channel_limits(limits);
    }
    store
}

/// Each channel's limits, as the stores record them.
fn channel_limits(cfg: &NodeConfig) -> Option<crate::store::ChannelLimitsFn> {
    let limits = cfg.streaming.as_ref()?.limits.resolve().ok()?;
    Some(Arc::new(move |channel: &str| {
        let l = limits.for_channel(channel);
        crate::store::ChannelLimits {
            max_msgs: l.max_msgs,
            max_bytes: l.max_bytes,
            max_age: Duration::from_nanos(u64::try_from(l.max_age).unwrap_or(0)),
        }
    }))
}

/// The FT standby's FILE store IO (BEHAVIOUR §11): the FILE store is prepared at startup
/// and opened only once its lock is taken, on the node's request; any attempt that
/// finds the lock held returns at once.
struct FtStore {
    root: std::path::PathBuf,
    cfg: NodeConfig,
    opts: crate::store::FileStoreOptions,
    /// Everything else the store is opened with (its encryption).
    options: Options,
    log: Logger,
}

impl FtStore {
    fn prepare(opts: &Options, cfg: &NodeConfig, log: &Logger) -> Result<FtStore, String> {
        let dir = file_store_dir(opts)?;
        let root = FileStore::prepare(&StdFs, dir, &opts.file).map_err(|e| e.to_string())?;
        // Encryption settings are checked now, as without FT.
        crate::encryption::wrap(Box::new(MemStore::new()), opts)?;
        Ok(FtStore {
            root,
            cfg: cfg.clone(),
            opts: opts.file.clone(),
            options: opts.clone(),
            log: log.clone(),
        })
    }

    /// Answers the node's requests for an attempt at the lock.
    fn serve(&self, node: &mut Node, now: Now) {
        if !node.poll_store_lock() {
            return;
        }
        let lock = match FileStore::try_lock(&StdFs, &self.root) {
            LockAttempt::Taken(lock) => {
                let store = FileStore::open_locked(
                    Arc::new(StdFs),
                    self.root.clone(),
                    self.opts.clone(),
                    lock,
                );
                let store = Box::new(configure(store, &self.cfg, &self.log));
                match crate::encryption::wrap(store, &self.options) {
                    Ok(store) => StoreLock::Taken(store),
                    Err(e) => StoreLock::Failed(e),
                }
            }
            LockAttempt::Busy => StoreLock::Busy,
            LockAttempt::Failed(e) => StoreLock::Failed(e),
        };
        node.handle_store_lock(now, lock);
    }
}

/// The FT standby's SQL store (STORES §3.7): connected and checked at startup,
/// served once this server owns the `StoreLock` row.
struct FtSqlStore {
    store: Option<SqlStore>,
    lock: Option<SqlLock>,
    opts: Options,
    log: Logger,
}

impl FtSqlStore {
    fn prepare(opts: &Options, cfg: &NodeConfig, log: &Logger) -> Result<FtSqlStore, String> {
        let mut store = SqlStore::open(opts.sql.clone()).map_err(|e| e.to_string())?;
        if let Some(limits) = channel_limits(cfg) {
            store.set_channel_limits(limits);
        }
        let lock = SqlLock::connect(&opts.sql)?;
        // Encryption settings are checked now, as without FT.
        crate::encryption::wrap(Box::new(MemStore::new()), opts)?;
        Ok(FtSqlStore {
            store: Some(store),
            lock: Some(lock),
            opts: opts.clone(),
            log: log.clone(),
        })
    }

    fn serve(&mut self, node: &mut Node, now: Now) {
        if !node.poll_store_lock() {
            return;
        }
        let Some(lock) = self.lock.as_mut() else {
            return;
        };
        let outcome = match lock.try_lock() {
            Ok(true) => {
                let (Some(mut store), Some(lock)) = (self.store.take(), self.lock.take()) else {
                    return;
                };
                let log = self.log.clone();
                // Another server owns the store now: going on would corrupt it.
                store.hold_lock(lock.hold(Box::new(move |why: &str| {
                    log.log(Origin::Stream, Level::Fatal, why);
                    std::process::exit(1);
                })));
                match crate::encryption::wrap(Box::new(store), &self.opts) {
                    Ok(store) => StoreLock::Taken(store),
                    Err(e) => StoreLock::Failed(e),
                }
            }
            Ok(false) => StoreLock::Busy,
            Err(e) => StoreLock::Failed(e),
        };
        node.handle_store_lock(now, outcome);
    }
}

/// The store an FT standby waits for.
enum Ft {
    File(Box<FtStore>),
    Sql(Box<FtSqlStore>),
}

impl Ft {
    fn serve(&mut self, node: &mut Node, now: Now) {
        match self {
            Ft::File(ft) => ft.serve(node, now),
            Ft::Sql(ft) => ft.serve(node, now),
        }
    }
}

/// Why the driver stops.
enum Stop {
    /// A signal, with the exit code it means.
    Signal(ExitCode),
    /// A fatal error after startup, logged already (an FT conflict, a partitioning
    /// conflict).
    Fatal,
}

/// Runs the server until SIGINT (exit 0) or SIGTERM (exit 143). `args`, the command
/// line `opts` came from, is parsed again on SIGHUP to reload the configuration.
pub async fn run(opts: Options, log: Logger, args: Vec<String>) -> ExitCode {
    let signals = trap_signals();
    crate::process::mark_start();
    let wall = system_wall_clock();
    let start_wall_ns = wall();
    let mut cfg = node_config(&opts, random_seed());
    // With an external NATS server nothing listens for clients here.
    let external = match opts
        .nats_server
        .as_deref()
        .map(|ns| crate::external::settings(&opts, ns))
    {
        None => None,
        Some(Ok(settings)) => Some(settings),
        Some(Err(e)) => {
            log.log(
                Origin::Stream,
                Level::Fatal,
                &format!("Failed to start: {e}"),
            );
            return 1;
        }
    };
    let listener = match external.is_some() {
        true => Ok(None),
        false => TcpListener::bind((opts.addr.as_str(), u16::try_from(opts.port).unwrap_or(0)))
            .await
            .map(Some),
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            log.log(
                Origin::Nats,
                Level::Fatal,
                &format!(
                    "Error listening on port: {}:{}, {e:?}",
                    opts.addr, opts.port
                ),
            );
            return 1;
        }
    };
    let route_listener = match crate::routes::cluster_config(&opts) {
        Ok(None) => None,
        Ok(Some(cluster)) => match crate::routes::bind(&cluster).await {
            Ok(l) => {
                cfg.nats.cluster = Some(cluster);
                Some(l)
            }
            Err(e) => {
                log.log(Origin::Nats, Level::Fatal, &e);
                return 1;
            }
        },
        Err(e) => {
            log.log(Origin::Nats, Level::Fatal, &e);
            return 1;
        }
    };
    // The files were read once with the options; a failure now is one of the disk.
    let tls: crate::tls::TlsSwitch = match server_tls(&opts) {
        Ok(tls) => Arc::new(Mutex::new(tls)),
        Err(e) => {
            log.log(Origin::Nats, Level::Fatal, &e);
            return 1;
        }
    };
    let (established, mut handshakes) = tokio::sync::mpsc::unbounded_channel();
    let listener = listener.map(|l| crate::tls::TlsListener::new(l, tls.clone(), established));
    let local = listener.as_ref().and_then(|l| l.local_addr().ok());
    cfg.nats.port = local.map_or(cfg.nats.port, |a| a.port());
    match advertised(&opts, cfg.nats.port) {
        Ok(a) => cfg.nats.client_advertise = a,
        Err(e) => {
            log.log(Origin::Nats, Level::Fatal, &e);
            return 1;
        }
    }
    // In FT mode the FILE store is opened once this server holds its lock; only its
    // preparation happens now.
    let mut ft_store = None;
    let mut cluster_log = None;
    let opened = if opts.ft_group.is_some() && opts.store == "SQL" {
        FtSqlStore::prepare(&opts, &cfg, &log).map(|ft| {
            ft_store = Some(Ft::Sql(Box::new(ft)));
            Box::new(Unopened::new("SQL")) as Box<dyn Store>
        })
    } else if opts.ft_group.is_some() && opts.store == "FILE" {
        FtStore::prepare(&opts, &cfg, &log).map(|ft| {
            ft_store = Some(Ft::File(Box::new(ft)));
            Box::new(Unopened::new("FILE")) as Box<dyn Store>
        })
    } else if opts.raft.clustered {
        crate::cluster::open_store(&opts, &cfg, &log).map(|(store, raft_log)| {
            cluster_log = Some(raft_log);
            store
        })
    } else {
        open_store(&opts, &cfg, &log)
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            log.log(
                Origin::Stream,
                Level::Fatal,
                &format!("Failed to start: {e}"),
            );
            return 1;
        }
    };
    let node = match &external {
        Some(ext) => Node::with_external(cfg, store, ext.link.clone()),
        None => Node::with_streaming(cfg, store),
    };
    let mut node = match node {
        Ok(n) => n,
        Err(e) => {
            log.log(
                Origin::Stream,
                Level::Fatal,
                &format!("Failed to start: {e}"),
            );
            return 1;
        }
    };
    if let Some(raft_log) = cluster_log {
        node.set_raft_log(raft_log);
    }
    for line in node.banner() {
        log.log(Origin::Stream, Level::Info, &line);
    }
    let nats_id = node.nats().server_id().to_string();
    let nats_name = node.nats().server_name().to_string();
    let banner = match external {
        Some(_) => vec![],
        None => vec![
            "Starting nats-server".to_string(),
            format!("  Version:  {NATS_VERSION}"),
            "  Git:      [not set]".to_string(),
            format!("  Name:     {nats_name}"),
            format!("  ID:       {nats_id}"),
        ],
    };
    for line in banner {
        log.log(Origin::Nats, Level::Info, &line);
    }
    // The first connection to an external NATS server must succeed for the server
    // to start; the later ones are retried forever.
    let first_link = match &external {
        None => None,
        Some(ext) => {
            if ext.warn_skip_verify {
                log.log(
                    Origin::Stream,
                    Level::Warn,
                    "TLS certificate chain and hostname will not be verified. DO NOT USE IN PRODUCTION!",
                );
            }
            let mut links = Vec::new();
            for role in 0..stan_core::node::EXTERNAL_ROLES.len() {
                match crate::external::first_connection(&mut node, role, ext, &log).await {
                    Ok(link) => links.push(link),
                    Err(e) => {
                        log.log(
                            Origin::Stream,
                            Level::Fatal,
                            &format!("Failed to start: {e}"),
                        );
                        return 1;
                    }
                }
            }
            Some(links)
        }
    };
    if let Some(pid_file) = &opts.pid_file {
        if let Err(e) = std::fs::write(pid_file, std::process::id().to_string()) {
            log.log(
                Origin::Nats,
                Level::Fatal,
                &format!("Could not write pidfile: {e}"),
            );
            return 1;
        }
    }
    let log_for_driver = log.clone();
    let mut driver = Driver::new(
        node,
        wall,
        Box::new(move |line| log_for_driver.log(line.origin, line.level, &line.text)),
    );
    let handle = driver.handle();
    handle.set_write_deadline(opts.write_deadline);
    let mut redial_tasks = Vec::new();
    if let (Some(links), Some(ext)) = (first_link, external) {
        for (role, (id, stream, peer)) in links.into_iter().enumerate() {
            let closed = driver.adopt(id, stream, peer);
            redial_tasks.push(tokio::spawn(crate::external::keep_connected(
                role,
                ext.clone(),
                handle.clone(),
                closed,
            )));
        }
    }
    let Ok(monitors) = bind_monitors(&opts, &log).await else {
        return 1;
    };
    let port_of = |secure: bool| {
        monitors
            .iter()
            .find(|(_, tls)| tls.is_some() == secure)
            .and_then(|(l, _)| l.local_addr().ok())
            .map_or(0, |a| a.port())
    };
    let state = Arc::new(HttpState {
        driver: handle.clone(),
        start_wall_ns,
        http_host: opts.http_host.clone().unwrap_or_else(|| opts.addr.clone()),
        http_port: port_of(false),
        https_port: port_of(true),
        base_path: http::routes::normalize_base_path(&opts.http_base_path),
        req_stats: Mutex::new(Default::default()),
    });
    let ports_file = opts.ports_file_dir.as_deref().map(crate::ports_file::path);
    if let (Some(file), Some(nats)) = (&ports_file, local) {
        // The HTTPS listener, started last, is the one named when both run.
        let monitoring = monitors
            .last()
            .and_then(|(l, tls)| Some((l.local_addr().ok()?, tls.is_some())));
        let text = crate::ports_file::contents(nats, opts.tls_config.is_some(), monitoring);
        if let Err(e) = std::fs::write(file, text) {
            log.log(
                Origin::Nats,
                Level::Error,
                &format!(
                    "Error writing ports file ({}): {}",
                    file.display(),
                    crate::store::os_error("open", file, &e)
                ),
            );
        }
    }
    let http_tasks: Vec<_> = monitors
        .into_iter()
        .map(|(l, tls)| tokio::spawn(http::serve(l, state.clone(), tls)))
        .collect();
    let shown: SocketAddr = local.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    if local.is_some() {
        log.log(
            Origin::Nats,
            Level::Info,
            &format!(
                "Listening for client connections on {}:{}",
                opts.addr,
                shown.port()
            ),
        );
        if opts.tls_config.is_some() {
            log.log(
                Origin::Nats,
                Level::Info,
                "TLS required for client connections",
            );
        }
        log.log(Origin::Nats, Level::Info, "Server is ready");
    }
    // As with the NATS server, the cluster port comes up once clients are served.
    let route_task = route_listener.map(|l| {
        let port = l.local_addr().map_or(0, |a| a.port());
        driver.start_routes(port);
        driver.serve_routes(l)
    });
    if opts.ft_group.is_some() && ft_store.is_none() {
        log.log(
            Origin::Stream,
            Level::Fatal,
            "Failed to start: ft: only FILE or SQL stores supported in FT mode",
        );
        return 1;
    }
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel::<Stop>();
    let stop = stop_tx.clone();
    match ft_store {
        Some(mut ft) => driver.after_turn(move |node, now| {
            ft.serve(node, now);
            if node.failure().is_some() {
                let _ = stop.send(Stop::Fatal);
            }
        }),
        // A start that finishes later (partitioning's announcement) may still fail.
        None => driver.after_turn(move |node, _| {
            if node.failure().is_some() {
                let _ = stop.send(Stop::Fatal);
            }
        }),
    }
    let accept_task = listener.map(|l| driver.serve(l));
    // Ends with the listener, whose streams announce completed handshakes.
    let tls_task = {
        let driver = handle.clone();
        tokio::spawn(async move {
            while let Some((peer, version, cipher)) = handshakes.recv().await {
                driver
                    .update(move |node, now| node.tls_established(now, peer, &version, &cipher))
                    .await;
            }
        })
    };
    if let Err(e) = driver.start() {
        log.log(
            Origin::Stream,
            Level::Fatal,
            &format!("Failed to start: {e}"),
        );
        return 1;
    }
    let signals = {
        let mut reload = Reload {
            args,
            current: opts.clone(),
            port: shown.port(),
            driver: handle.clone(),
            log: log.clone(),
            tls,
        };
        tokio::spawn(async move {
            let code = wait_for_exit_signal(signals, &mut reload).await;
            let _ = stop_tx.send(Stop::Signal(code));
        })
    };
    let mut stop = Stop::Signal(0);
    let shutdown = async {
        if let Some(s) = stop_rx.recv().await {
            stop = s;
        }
    };
    // Dropping the node closes the store (and releases an FT lock).
    drop(driver.run(shutdown).await);
    for task in accept_task
        .into_iter()
        .chain(redial_tasks)
        .chain(route_task)
    {
        task.abort();
    }
    tls_task.abort();
    signals.abort();
    for t in http_tasks {
        t.abort();
    }
    if let Some(pid_file) = &opts.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    if let Some(file) = &ports_file {
        if let Err(e) = std::fs::remove_file(file) {
            log.log(
                Origin::Nats,
                Level::Error,
                &format!(
                    "Error cleaning up ports file {}: {}",
                    file.display(),
                    crate::store::os_error("remove", file, &e)
                ),
            );
        }
    }
    match stop {
        Stop::Signal(code) => {
            log.log(Origin::Stream, Level::Info, "Shutting down.");
            if opts.nats_server.is_none() {
                log.log(Origin::Nats, Level::Info, "Server Exiting..");
            }
            code
        }
        // The fatal line was the last word, as with the Go server.
        Stop::Fatal => 1,
    }
}

/// What SIGHUP needs: the command line to read again, the options in force and the
/// port actually bound (`-p -1` picks one).
struct Reload {
    args: Vec<String>,
    current: Options,
    port: u16,
    driver: crate::driver::DriverHandle,
    log: Logger,
    /// What new client connections get; a reload may change it.
    tls: crate::tls::TlsSwitch,
}

/// The TLS new client connections must speak, from the options.
fn server_tls(opts: &Options) -> Result<Option<crate::tls::ServerTls>, String> {
    let Some(settings) = &opts.tls_config else {
        return Ok(None);
    };
    let config = crate::tls::load(settings)?;
    Ok(Some(crate::tls::ServerTls::new(config, opts.tls_timeout)))
}

impl Reload {
    /// Reloads the embedded NATS server's configuration, as the Go server does on
    /// SIGHUP: the files and flags are read again; the streaming options stay.
    async fn run(&mut self) {
        let log = self.log.clone();
        let fail = |e: &str| log.log(Origin::Stream, Level::Error, &format!("Reload: {e}"));
        if self.current.nats_server.is_some() {
            return log.log(
                Origin::Stream,
                Level::Warn,
                "Reload supported only for embedded NATS Server's configuration",
            );
        }
        if self.current.config_file.is_none() && self.current.stan_config_file.is_none() {
            return fail("Can only reload config when a file is provided using -c or --config");
        }
        let new = match crate::cli::parse(&self.args) {
            Ok(crate::cli::Command::Run(new)) => *new,
            Ok(_) => return fail("the command line no longer starts a server"),
            Err(exit) => return fail(exit.stderr.trim_end()),
        };
        // Connections open keep their TLS; new ones get the reloaded settings, and
        // the files are read again, so that renewed certificates are taken up.
        let new_tls = match server_tls(&new) {
            Ok(tls) => tls,
            Err(e) => return fail(&e),
        };
        let mut nats = node_config(&new, 0).nats;
        if new.port == self.current.port {
            nats.port = self.port;
        }
        nats.cluster = match crate::routes::cluster_config(&new) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        nats.client_advertise = match &new.client_advertise {
            None => None,
            Some(text) => match nats::parse_host_port(text, nats.port) {
                Ok(a) => Some(a),
                Err(e) => {
                    return fail(&format!("invalid ClientAdvertise value of {text}, err={e}"))
                }
            },
        };
        let result = self
            .driver
            .update(move |node, now| node.reload_nats(now, nats))
            .await;
        let mut lines = match result {
            Some(Ok(lines)) => lines,
            Some(Err(e)) => return fail(&e),
            None => return,
        };
        *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = new_tls;
        let old = &self.current;
        if old.tls_config != new.tls_config {
            let state = if new.tls_config.is_some() {
                "enabled"
            } else {
                "disabled"
            };
            lines.push(format!("Reloaded: tls = {state}"));
        }
        if old.write_deadline != new.write_deadline {
            self.driver.set_write_deadline(new.write_deadline);
            lines.push(format!(
                "Reloaded: write_deadline = {}",
                stan_core::timefmt::go_duration(new.write_deadline.as_nanos() as i64)
            ));
        }
        if old.logtime != new.logtime {
            lines.push(format!("Reloaded: logtime = {}", new.logtime));
        }
        if old.log_file != new.log_file {
            lines.push(format!(
                "Reloaded: log_file = {}",
                new.log_file.as_deref().unwrap_or_default()
            ));
        }
        if old.syslog != new.syslog {
            lines.push(format!("Reloaded: syslog = {}", new.syslog));
        }
        if old.remote_syslog != new.remote_syslog {
            lines.push(format!(
                "Reloaded: remote_syslog = {}",
                new.remote_syslog.as_deref().unwrap_or_default()
            ));
        }
        for line in &lines {
            log.log(Origin::Nats, Level::Info, line);
        }
        // Streaming log levels are streaming options: they stay.
        let config = crate::logger::LogConfig {
            stan_debug: old.stan_debug,
            stan_trace: old.stan_trace,
            ..new.log_config()
        };
        match log.reconfigure(config) {
            Ok(()) => {}
            Err(crate::logger::OpenError::Syslog(e)) => log.log(Origin::Nats, Level::Error, &e),
            Err(e) => log.log(
                Origin::Nats,
                Level::Error,
                &format!("Unable to open the new log file: {e}"),
            ),
        }
        log.log(Origin::Nats, Level::Info, "Reloaded server configuration");
        self.current = new;
    }
}

/// The signals the server handles, taken over from their default actions (SIGHUP
/// and SIGUSR1 would end the process) before anything else starts, so that a
/// signal sent as soon as the server logs it is ready is never lost or fatal.
type Signals = Option<[tokio::signal::unix::Signal; 4]>;

fn trap_signals() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    Some([
        signal(SignalKind::interrupt()).ok()?,
        signal(SignalKind::terminate()).ok()?,
        signal(SignalKind::user_defined1()).ok()?,
        signal(SignalKind::hangup()).ok()?,
    ])
}

/// Waits for SIGINT or SIGTERM, reopening the log file on SIGUSR1 and reloading the
/// configuration on SIGHUP meanwhile.
async fn wait_for_exit_signal(signals: Signals, reload: &mut Reload) -> ExitCode {
    let log = reload.log.clone();
    let Some([mut int, mut term, mut usr1, mut hup]) = signals else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {
                log.log(Origin::Nats, Level::Info, "Trapped \"interrupt\" signal");
                return 0;
            }
            _ = term.recv() => {
                log.log(Origin::Nats, Level::Info, "Trapped \"terminated\" signal");
                return 143;
            }
            _ = usr1.recv() => {
                match log.reopen() {
                    Ok(true) => log.log(Origin::Stream, Level::Info, "File log re-opened"),
                    Ok(false) => log.log(Origin::Stream, Level::Info, "File log re-open ignored, not a file logger"),
                    Err(e) => log.log(Origin::Stream, Level::Error, &format!("Unable to re-open log file: {e}")),
                }
            }
            _ = hup.recv() => reload.run().await,
        }
    }
}

/// `-sl <command>[=<pid or pid file>]`: sends the matching signal to a running server.
pub fn send_signal(command: &str, pid: Option<&str>) -> Result<(), String> {
    let sig = match command {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        other => return Err(format!("unknown signal {other:?}")),
    };
    let pid = match pid {
        Some(p) => match p.trim().parse::<i32>() {
            Ok(n) => n,
            Err(_) => std::fs::read_to_string(p)
                .map_err(|e| format!("could not read pid file: {e}"))?
                .trim()
                .parse::<i32>()
                .map_err(|e| format!("invalid pid in file {p:?}: {e}"))?,
        },
        None => find_server_pid()?,
    };
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!(
            "failed to send signal to {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn find_server_pid() -> Result<i32, String> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|c| c.trim() == "stan-server")
        {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [] => Err("no nats-streaming-server processes running".into()),
        [one] => Ok(*one),
        many => Err(format!(
            "multiple nats-streaming-server processes running:\n{}",
            many.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

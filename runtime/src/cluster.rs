//! Clustered mode's IO (BEHAVIOUR §13): the checks the Go server makes of the options,
//! the member's Raft log on disk, and its FILE store, rebuilt from the log at every
//! start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stan_core::node::NodeConfig;
use stan_core::raft::RaftLog;
use stan_core::store::Store;

use crate::cli::Options;
use crate::logger::Logger;
use crate::raft_log::FileRaftLog;
use crate::store::{FileStore, StdFs};

/// The Raft log's directory: `cluster_log_path`, else `<cluster ID>/<node ID>` under
/// the working directory, as the Go server defaults it.
pub fn log_path(opts: &Options) -> String {
    match &opts.raft.log_path {
        Some(p) => p.clone(),
        None => Path::new(&opts.cluster_id)
            .join(opts.raft.node_id.as_deref().unwrap_or_default())
            .display()
            .to_string(),
    }
}

/// Refuses what clustering cannot run with, with the Go server's texts where it has
/// them.
pub fn check(opts: &Options) -> Result<(), String> {
    if opts.partitioning {
        return Err("stan: channels partitioning in clustering mode is not supported".into());
    }
    match opts.store.as_str() {
        "MEMORY" => return Err("stan: clustering mode not supported with MEMORY store type".into()),
        "SQL" => {
            return Err(
                "stan: clustering mode with the SQL store is not supported yet by stan-server"
                    .into(),
            )
        }
        _ => {}
    }
    if opts.ft_group.is_some() {
        return Err("stan: ft_group and clustering mode cannot be used together".into());
    }
    if opts.encrypt || opts.encryption_key.is_some() {
        return Err(
            "stan: encryption in clustering mode is not supported yet by stan-server".into(),
        );
    }
    if opts.raft.allow_add_remove_node {
        return Err(
            "stan: cluster_allow_add_remove_node is not supported yet by stan-server".into(),
        );
    }
    let node_id = opts.raft.node_id.as_deref().unwrap_or_default();
    if node_id.is_empty() {
        return Err(
            "stan: cluster_node_id must be set (stan-server does not generate node IDs)".into(),
        );
    }
    for id in std::iter::once(node_id).chain(opts.raft.peers.iter().map(String::as_str)) {
        if !is_token(id) {
            return Err(format!(
                "stan: invalid node ID {id:?}: it must be one subject token (no '.', '*', '>' or spaces)"
            ));
        }
    }
    if opts.raft.peers.iter().all(|p| p == node_id) && !opts.raft.bootstrap {
        return Err(
            "stan: joining a running cluster is not supported yet by stan-server: list every member in cluster_peers, or start a single member with cluster_bootstrap"
                .into(),
        );
    }
    Ok(())
}

fn is_token(id: &str) -> bool {
    !id.is_empty()
        && !id
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

/// A member's store and its Raft log.
pub type Opened = (Box<dyn Store>, Box<dyn RaftLog>);

/// Opens the member's Raft log and an empty FILE store in `--dir`: what the store
/// held is rebuilt from the log. A store that was not written by a cluster member is
/// left untouched and refused, as the Go server refuses it.
pub fn open_store(opts: &Options, cfg: &NodeConfig, log: &Logger) -> Result<Opened, String> {
    check(opts)?;
    let dir = opts
        .dir
        .as_deref()
        .ok_or("for FILE stores, root directory must be specified")?;
    let mut file_opts = opts.file.clone();
    file_opts.sync = opts.raft.sync;
    file_opts.validate().map_err(|e| e.to_string())?;
    let log_dir = PathBuf::from(log_path(opts)).join(&opts.cluster_id);
    let raft_log =
        FileRaftLog::open(Arc::new(StdFs), &log_dir, opts.raft.sync).map_err(|e| e.to_string())?;
    let root = Path::new(dir);
    if root.join("server.dat").exists() {
        let mut old = FileStore::open(dir, file_opts.clone()).map_err(|e| e.to_string())?;
        let recovered = old.recover().map_err(|e| e.to_string())?;
        let clustered = recovered
            .server_info
            .is_some_and(|info| !info.node_id.is_empty());
        if !clustered {
            return Err(
                "stan: cannot restart server in clustered mode if it was not previously clustered"
                    .into(),
            );
        }
        drop(old);
        wipe(root).map_err(|e| format!("unable to clear the store in {dir:?}: {e}"))?;
    }
    let store = FileStore::open(dir, file_opts).map_err(|e| e.to_string())?;
    let store = crate::server::configure(store, cfg, log);
    Ok((Box::new(store), Box::new(raft_log)))
}

/// Removes a member's FILE store files: the root files and every channel directory
/// (one holding a subscriptions file); anything else is left alone.
fn wipe(root: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.join(crate::store::SUBS_FILE).exists() {
                std::fs::remove_dir_all(&path)?;
            }
        } else if matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("server.dat" | "clients.dat")
        ) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

//! The cluster port of the embedded NATS server: its settings from the options and
//! its listener. Route connections themselves are the driver's and the core's.

use stan_core::nats::{parse_host_port, ClusterConfig, RouteUrl};
use tokio::net::TcpListener;

use crate::cli::Options;

/// The NATS server's default cluster port, for a listen address without one.
const DEFAULT_ROUTE_PORT: u16 = 6222;

/// The cluster settings of `opts`: `None` without a cluster listen address, as the
/// NATS server ignores routes then. Errors name the bad value in Go's words.
pub fn cluster_config(opts: &Options) -> Result<Option<ClusterConfig>, String> {
    let Some(listen) = &opts.cluster_listen else {
        return Ok(None);
    };
    let hostport = listen.split_once("://").map_or(listen.as_str(), |(_, r)| r);
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        // A port of -1 asks for a free one.
        Some((h, "-1")) => (h.to_string(), 0),
        _ => parse_host_port(hostport, DEFAULT_ROUTE_PORT)?,
    };
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    let routes = opts
        .routes
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(RouteUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let advertise = opts
        .cluster_advertise
        .as_deref()
        .map(|a| parse_host_port(a, port))
        .transpose()?;
    Ok(Some(ClusterConfig {
        name: opts.cluster_name.clone(),
        host,
        port,
        advertise,
        no_advertise: opts.no_advertise,
        routes,
        connect_retries: u32::try_from(opts.connect_retries).unwrap_or(0),
    }))
}

/// Binds the cluster port; the error is the NATS server's fatal line.
pub async fn bind(cluster: &ClusterConfig) -> Result<TcpListener, String> {
    TcpListener::bind((cluster.host.as_str(), cluster.port))
        .await
        .map_err(|e| {
            format!(
                "Error listening on router port: {} - listen tcp {}: {e}",
                cluster.port,
                stan_core::nats::route::join_host_port(&cluster.host, cluster.port)
            )
        })
}

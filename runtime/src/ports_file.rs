//! The ports file (`--ports_file_dir`): where a server started with random ports can
//! be reached, for the scripts and test harnesses that start it. Named and written
//! as the NATS server writes it, `<dir>/<program>_<pid>.ports` holding
//! `{"nats":[...],"monitoring":[...]}`, and removed at shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;

#[derive(Serialize)]
struct Ports {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nats: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    monitoring: Vec<String>,
}

/// The ports file of this process in `dir`.
pub fn path(dir: &str) -> PathBuf {
    let program = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "stan-server".into());
    PathBuf::from(dir).join(format!("{program}_{}.ports", std::process::id()))
}

/// The file's contents: every URL of the client listener (`tls://` when clients must
/// use TLS) and of the monitoring listener (`https://` when it is the HTTPS one).
pub fn contents(nats: SocketAddr, tls: bool, monitoring: Option<(SocketAddr, bool)>) -> String {
    let urls = |scheme: &str, addr: SocketAddr| -> Vec<String> {
        host_ports(addr)
            .into_iter()
            .map(|hp| format!("{scheme}://{hp}"))
            .collect()
    };
    let ports = Ports {
        nats: urls(if tls { "tls" } else { "nats" }, nats),
        monitoring: monitoring
            .map(|(addr, secure)| urls(if secure { "https" } else { "http" }, addr))
            .unwrap_or_default(),
    };
    serde_json::to_string(&ports).expect("ports serialize")
}

/// `host:port` for each address a listener on `addr` answers at: every address of
/// every interface when it listens on all of them.
fn host_ports(addr: SocketAddr) -> Vec<String> {
    let ips = if addr.ip().is_unspecified() {
        interface_addresses()
    } else {
        vec![addr.ip()]
    };
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, addr.port()).to_string())
        .collect()
}

/// The addresses of the machine's interfaces, interface by interface in index
/// order, IPv4 before IPv6 within one.
fn interface_addresses() -> Vec<IpAddr> {
    let mut found: Vec<(u32, u8, IpAddr)> = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that is only read below and
    // released with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cur };
        cur = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: the name is a NUL-terminated string owned by the list.
        let index = unsafe { libc::if_nametoindex(entry.ifa_name) };
        // SAFETY: `ifa_addr` points to a sockaddr whose family says which one it is.
        let ip = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    Some((
                        0,
                        IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()),
                    ))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    Some((1, IpAddr::from(sin6.sin6_addr.s6_addr)))
                }
                _ => None,
            }
        };
        if let Some((family, ip)) = ip {
            found.push((index, family, ip));
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found.sort_by_key(|&(index, family, _)| (index, family));
    found.into_iter().map(|(_, _, ip)| ip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_specific_and_wildcard_listeners() {
        let nats: SocketAddr = "127.0.0.1:4222".parse().unwrap();
        let http: SocketAddr = "127.0.0.1:8222".parse().unwrap();
        assert_eq!(
            contents(nats, false, Some((http, false))),
            r#"{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}"#
        );
        assert_eq!(
            contents(nats, true, None),
            r#"{"nats":["tls://127.0.0.1:4222"]}"#
        );
        let any: SocketAddr = "0.0.0.0:4222".parse().unwrap();
        let shown = contents(any, false, Some(("[::1]:8443".parse().unwrap(), true)));
        assert!(shown.contains("\"nats://127.0.0.1:4222\""), "{shown}");
        assert!(
            shown.contains("\"monitoring\":[\"https://[::1]:8443\"]"),
            "{shown}"
        );
    }
}

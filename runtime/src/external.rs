//! The streaming server's connection to an external NATS server (`-ns`): the server
//! URLs, the credentials, TLS, and dialing. The protocol itself is core's
//! [`Link`](stan_core::nats::link::Link); this module gives it sockets, with the INFO
//! line already read so that TLS can start where the NATS server expects it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stan_core::nats::link::{Credentials, LinkConfig, Signer};
use stan_core::nats::{ConnId, Input, Output};
use stan_core::node::Node;
use stan_core::Now;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::cli::Options;
use crate::driver::DriverHandle;
use crate::logger::Logger;
use crate::nkeys::{self, NKey};

/// How often a lost connection is dialed again, forever (OPERATIONS §5).
pub const RECONNECT_WAIT: Duration = Duration::from_millis(250);
/// How long one attempt may take, up to the server's INFO (and the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const INFO_LIMIT: usize = 64 * 1024;

/// A socket to the NATS server, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One server of the `-ns` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
    /// `tls://`: TLS whatever the options say.
    pub tls: bool,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// The URL as logged: credentials replaced by `[REDACTED]`.
    pub redacted: String,
}

impl ServerUrl {
    fn userinfo(&self) -> Option<(String, Option<String>)> {
        self.user.clone().map(|u| (u, self.pass.clone()))
    }
}

/// Reads `-ns`. A value without `@` or `,` must be `scheme://host:port`; otherwise it
/// is a comma-separated list whose entries may omit the scheme (`nats://`) and the
/// port (4222) and may carry `user:pass@` or `token@`.
pub fn parse_urls(ns: &str) -> Result<Vec<ServerUrl>, String> {
    let malformed = || format!("malformed url: {ns}");
    if !ns.contains('@') && !ns.contains(',') {
        let (_, rest) = ns.split_once("://").ok_or_else(malformed)?;
        let hostport = rest.split(['/', '?']).next().unwrap_or_default();
        let (host, port) = hostport.rsplit_once(':').ok_or_else(malformed)?;
        if host.is_empty() || port.is_empty() {
            return Err(malformed());
        }
    }
    let list: Vec<ServerUrl> = ns
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| parse_url(u).ok_or_else(malformed))
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(malformed());
    }
    Ok(list)
}

fn parse_url(url: &str) -> Option<ServerUrl> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_lowercase(), r),
        None => ("nats".to_string(), url),
    };
    let tls = match scheme.as_str() {
        "nats" => false,
        "tls" => true,
        _ => return None,
    };
    let rest = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h, p.parse::<u16>().ok()?)
        }
        _ => (hostport, 4222),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return None;
    }
    let (user, pass) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (Some(user.to_string()), Some(pass.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let redacted = match userinfo {
        Some(_) => format!("{scheme}://[REDACTED]@{shown_host}:{port}"),
        None => format!("{scheme}://{shown_host}:{port}"),
    };
    Some(ServerUrl {
        host: host.to_string(),
        port,
        tls,
        user,
        pass,
        redacted,
    })
}

/// Everything the connections need, read and checked once at startup.
#[derive(Clone)]
pub struct Settings {
    pub servers: Vec<ServerUrl>,
    pub link: LinkConfig,
    /// `None` speaks plain NATS unless a `tls://` URL asks otherwise.
    pub tls: Option<Arc<ClientConfig>>,
    pub server_name: Option<String>,
    /// The `tls { skip_verify }` warning is due.
    pub warn_skip_verify: bool,
}

/// Reads the options: URLs, credentials files, TLS files.
pub fn settings(opts: &Options, ns: &str) -> Result<Settings, String> {
    let servers = parse_urls(ns)?;
    let c = &opts.nats_client;
    // Credentials on the command line replace those of the streaming configuration.
    let from_flags = ["user", "pass", "auth"]
        .iter()
        .any(|f| opts.explicit.contains(f));
    let mut credentials = match from_flags {
        // Only what the flags set: a NATS configuration file's `authorization`
        // fills the same options.
        true => Credentials {
            user: opts.user.clone().filter(|_| opts.explicit.contains("user")),
            pass: opts.pass.clone().filter(|_| opts.explicit.contains("pass")),
            token: opts.auth.clone().filter(|_| opts.explicit.contains("auth")),
            ..Credentials::default()
        },
        false => Credentials {
            user: c.username.clone(),
            pass: c.password.clone(),
            token: c.token.clone(),
            ..Credentials::default()
        },
    };
    if credentials.user.is_none() {
        credentials.pass = None;
    }
    let key = match (&c.credentials, &c.nkey_seed_file) {
        (Some(path), _) => {
            let text = read(path)?;
            credentials.jwt = Some(
                nkeys::jwt_in(&text)
                    .ok_or("nats: no user jwt found in credentials file")?
                    .to_string(),
            );
            Some(NKey::from_seed(
                nkeys::seed_in(&text).ok_or("nats: no nkey seed found")?,
            )?)
        }
        (None, Some(path)) => {
            let text = read(path)?;
            let key = NKey::from_seed(nkeys::seed_in(&text).ok_or("nats: no nkey seed found")?)?;
            credentials.nkey = Some(key.public_key().to_string());
            Some(key)
        }
        (None, None) => None,
    };
    if let Some(key) = key {
        let key = Arc::new(key);
        let signer: Signer = Arc::new(move |nonce: &[u8]| key.sign(nonce));
        credentials.signer = Some(signer);
    }
    let configured = c.secure
        || c.tls_skip_verify
        || c.tls_cert.is_some()
        || c.tls_key.is_some()
        || c.tls_ca.is_some();
    let wants_tls = configured || servers.iter().any(|s| s.tls);
    let tls = if wants_tls {
        Some(client_tls(opts)?)
    } else {
        None
    };
    Ok(Settings {
        servers,
        link: LinkConfig {
            name: String::new(),
            credentials,
            tls: configured,
        },
        tls,
        server_name: c.tls_server_name.clone(),
        warn_skip_verify: c.tls_skip_verify,
    })
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("open {path}: {}", crate::config_file::os_reason(&e)))
}

fn client_tls(opts: &Options) -> Result<Arc<ClientConfig>, String> {
    let c = &opts.nats_client;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if c.secure || c.tls_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let pem = match &c.tls_ca {
            Some(path) => std::fs::read(path)
                .map_err(|e| format!("open {path}: {}", crate::config_file::os_reason(&e)))?,
            None => crate::tls::system_ca_bundle(),
        };
        use rustls::pki_types::pem::PemObject;
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
        if roots.is_empty() && c.tls_ca.is_some() {
            return Err("nats: error parsing root CA certificate".into());
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = crate::tls::read_pair(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("nats: error loading client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("nats: client certificate and key must both be given".into()),
    };
    Ok(Arc::new(config))
}

/// `-secure` and `tls { skip_verify }`: the chain and the host name go unchecked;
/// the handshake signatures still are.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A socket to one server, with the INFO line it opened with (the first bytes the
/// link must read).
pub struct Dialed {
    pub stream: Box<dyn Stream>,
    pub peer: SocketAddr,
    pub info: Vec<u8>,
    /// The URL as logged.
    pub url: String,
    /// Credentials of the URL, which take precedence on this socket.
    pub userinfo: Option<(String, Option<String>)>,
}

/// Tries each server once, in order; the error is the last server's.
pub async fn dial_any(settings: &Settings) -> Result<Dialed, String> {
    let mut last = "nats: no servers available for connection".to_string();
    for server in &settings.servers {
        match tokio::time::timeout(CONNECT_TIMEOUT, dial(settings, server)).await {
            Ok(Ok(d)) => return Ok(d),
            Ok(Err(e)) => last = e,
            Err(_) => last = "nats: timeout".into(),
        }
    }
    Err(last)
}

async fn dial(settings: &Settings, server: &ServerUrl) -> Result<Dialed, String> {
    let addrs: Vec<_> = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .map_err(|_| "nats: no servers available for connection".to_string())?
        .collect();
    let mut tcp = None;
    for addr in addrs {
        if let Ok(s) = TcpStream::connect(addr).await {
            tcp = Some(s);
            break;
        }
    }
    let mut tcp = tcp.ok_or("nats: no servers available for connection")?;
    let _ = tcp.set_nodelay(true);
    let peer = tcp
        .peer_addr()
        .map_err(|_| "nats: no servers available for connection".to_string())?;
    // The INFO line, read byte by byte: nothing after it may be taken from the socket
    // before TLS starts.
    let mut info = Vec::new();
    while !info.ends_with(b"\r\n") {
        if info.len() > INFO_LIMIT {
            return Err("nats: protocol exception, INFO not received".into());
        }
        let mut b = [0u8; 1];
        match tcp.read(&mut b).await {
            Ok(1) => info.push(b[0]),
            _ => return Err("nats: no servers available for connection".into()),
        }
    }
    let json = info
        .strip_prefix(b"INFO ")
        .or_else(|| info.strip_prefix(b"INFO\t"))
        .ok_or("nats: protocol exception, INFO not received")?;
    let doc: serde_json::Value = serde_json::from_slice(json)
        .map_err(|_| "nats: protocol exception, INFO not received".to_string())?;
    let server_tls = doc
        .get("tls_required")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let config = match (&settings.tls, server_tls || server.tls) {
        (Some(c), true) => c.clone(),
        (Some(_), false) => return Err("nats: secure connection not available".into()),
        (None, true) => return Err("nats: secure connection required".into()),
        (None, false) => {
            return Ok(Dialed {
                stream: Box::new(tcp),
                peer,
                info,
                url: server.redacted.clone(),
                userinfo: server.userinfo(),
            })
        }
    };
    let name = settings.server_name.as_deref().unwrap_or(&server.host);
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("nats: invalid server name: {e}"))?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    Ok(Dialed {
        stream: Box::new(stream),
        peer,
        info,
        url: server.redacted.clone(),
        userinfo: server.userinfo(),
    })
}

/// The first socket of connection `role`, made before the driver runs: dialed, and
/// its handshake driven on `node` until the server accepts CONNECT. Returns the
/// socket's id in the node, the socket and its peer, for the driver to adopt.
pub async fn first_connection(
    node: &mut Node,
    role: usize,
    settings: &Settings,
    log: &Logger,
) -> Result<(ConnId, Box<dyn Stream>, SocketAddr), String> {
    let d = dial_any(settings).await?;
    let (mut stream, peer) = (d.stream, d.peer);
    let id = node
        .attach_external(role, &d.url, d.userinfo)
        .ok_or("not an external node")?;
    let wall = crate::driver::system_wall_clock();
    let origin = tokio::time::Instant::now();
    let now = || Now {
        mono: stan_core::Instant::from_nanos(origin.elapsed().as_nanos() as u64),
        wall_ns: wall(),
    };
    node.handle_input(
        now(),
        Input::Received {
            conn: id,
            bytes: &d.info,
        },
    );
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(out) = node.poll_output() {
            match out {
                Output::Send { data, .. } => stream
                    .write_all(&data)
                    .await
                    .map_err(|_| "nats: connection closed".to_string())?,
                Output::Close { .. } => {
                    return Err(node
                        .external_error(role)
                        .unwrap_or("nats: connection closed")
                        .to_string())
                }
                Output::Log(line) => log.log(line.origin, line.level, &line.text),
                // Routes belong to the embedded NATS server, which does not serve here.
                Output::Dial { .. } => {}
            }
        }
        if node.external_up(role) {
            return Ok((id, stream, peer));
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) => {
                node.handle_input(now(), Input::Closed { conn: id });
                return Err(node
                    .external_error(role)
                    .unwrap_or("nats: connection closed")
                    .to_string());
            }
            Err(_) => return Err("nats: timeout".into()),
        };
        node.handle_input(
            now(),
            Input::Received {
                conn: id,
                bytes: &buf[..n],
            },
        );
    }
}

/// Dials again every [`RECONNECT_WAIT`] whenever the socket of connection `role` is
/// gone, forever.
pub async fn keep_connected(
    role: usize,
    settings: Settings,
    driver: DriverHandle,
    mut closed: oneshot::Receiver<()>,
) {
    loop {
        let _ = (&mut closed).await;
        loop {
            tokio::time::sleep(RECONNECT_WAIT).await;
            let Ok(d) = dial_any(&settings).await else {
                continue;
            };
            match driver.attach_external(role, d.stream, d.peer, d.url, d.userinfo, d.info) {
                Some(rx) => {
                    closed = rx;
                    break;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_urls_need_scheme_host_and_port() {
        for bad in [
            "localhost:4222",
            "nats://localhost",
            "nats://:4222",
            "foo",
            "",
        ] {
            assert_eq!(
                parse_urls(bad),
                Err(format!("malformed url: {bad}")),
                "{bad}"
            );
        }
        let u = &parse_urls("nats://127.0.0.1:4333").unwrap()[0];
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 4333, false));
        assert_eq!(u.redacted, "nats://127.0.0.1:4333");
        assert_eq!(parse_urls("tls://[::1]:5").unwrap()[0].host, "::1");
        // A path says nothing to NATS.
        assert_eq!(parse_urls("nats://h:4222/").unwrap()[0].port, 4222);
    }

    #[test]
    fn lists_and_credentials() {
        let list = parse_urls("nats://u:p@h1:1, h2 ,tok@h3:3").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].user.as_deref(), Some("u"));
        assert_eq!(list[0].pass.as_deref(), Some("p"));
        assert_eq!(list[0].redacted, "nats://[REDACTED]@h1:1");
        assert_eq!((list[1].host.as_str(), list[1].port), ("h2", 4222));
        assert_eq!(list[2].user.as_deref(), Some("tok"));
        assert_eq!(list[2].pass, None);
        assert_eq!(
            parse_urls("nats://a:1,ftp://b:2"),
            Err("malformed url: nats://a:1,ftp://b:2".into())
        );
        assert_eq!(parse_urls(","), Err("malformed url: ,".into()));
    }
}

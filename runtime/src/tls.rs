//! TLS on the embedded NATS server's client connections.
//!
//! A NATS server that requires TLS writes its INFO in clear, then expects the client
//! to start a TLS handshake, and speaks TLS from then on (shared/spec/PROTOCOL.md,
//! INFO). The core decides what INFO says; [`TlsListener`] hands the driver streams
//! that let exactly that first line out in clear and then run the handshake under the
//! TLS timeout, so the driver moves bytes as it does for any connection.
//!
//! [`load`] reads the certificate, key and CA files and reports their problems in the
//! NATS server's words.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::driver::Listener;

/// The TLS settings in force for client connections: the `tls { }` block of a
/// configuration file or the `--tls*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    /// Clients must present a certificate that chains to `ca_file`.
    pub verify: bool,
    /// `<file>:<line>` of the `tls { }` block the settings come from, which prefixes
    /// errors about them; `None` for the command line.
    pub origin: Option<String>,
}

/// Where Go looks for the system's CAs on Linux; client certificates are checked
/// against them when `verify` is on without a `ca_file`, as the NATS server does.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Reads the files `opts` names into a server configuration. The error is the line
/// the NATS server prints for the same files.
pub fn load(opts: &TlsOptions) -> Result<Arc<ServerConfig>, String> {
    let located = |reason: String| match &opts.origin {
        Some(at) => format!("{at}: {reason}"),
        None => reason,
    };
    server_config(opts).map_err(located)
}

fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if opts.verify {
        let roots = client_roots(opts.ca_file.as_deref())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("failed to parse root ca certificate: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        // A CA file without `verify` is read (and must be valid) but asks for nothing.
        if let Some(ca) = &opts.ca_file {
            client_roots(Some(ca))?;
        }
        builder.with_no_client_auth()
    };
    let config = match (&opts.cert_file, &opts.key_file) {
        (Some(_), None) => return Err("missing 'key_file' in TLS configuration".into()),
        (None, Some(_)) => return Err("missing 'cert_file' in TLS configuration".into()),
        (Some(cert), Some(key)) => {
            let pair =
                |reason: String| format!("error parsing X509 certificate/key pair: {reason}");
            let chain = read_certs(cert).map_err(pair)?;
            let key = read_key(key).map_err(pair)?;
            builder.with_single_cert(chain, key).map_err(|e| match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    pair("tls: private key does not match public key".into())
                }
                _ => pair("tls: failed to parse private key".into()),
            })?
        }
        // The NATS server accepts a `tls { }` without a certificate; every handshake
        // then fails.
        (None, None) => builder.with_cert_resolver(Arc::new(NoCertificate)),
    };
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct NoCertificate;

impl rustls::server::ResolvesServerCert for NoCertificate {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// `open <path>: <reason>`, as Go words a file that cannot be read.
fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {path}: {}", crate::config_file::os_reason(&e)))
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err("tls: failed to find any PEM data in certificate input".into());
    }
    Ok(chain)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => "tls: failed to find any PEM data in key input".into(),
        _ => "tls: failed to parse private key".into(),
    })
}

/// The system's CA bundle, empty if there is none.
pub(crate) fn system_ca_bundle() -> Vec<u8> {
    SYSTEM_CA_BUNDLES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_default()
}

/// A certificate chain and its key, with the NATS server's words for what is wrong.
pub(crate) fn read_pair(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let pair = |reason: String| format!("error parsing X509 certificate/key pair: {reason}");
    Ok((
        read_certs(cert).map_err(pair)?,
        read_key(key).map_err(pair)?,
    ))
}

fn client_roots(ca_file: Option<&str>) -> Result<RootCertStore, String> {
    let pem = match ca_file {
        Some(path) => read(path)?,
        None => SYSTEM_CA_BUNDLES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .unwrap_or_default(),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() && ca_file.is_some() {
        return Err("failed to parse root ca certificate".into());
    }
    Ok(roots)
}

/// What new client connections must do: the acceptor and how long the handshake may
/// take.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    pub timeout: Duration,
}

impl ServerTls {
    pub fn new(config: Arc<ServerConfig>, timeout: Duration) -> ServerTls {
        ServerTls {
            acceptor: TlsAcceptor::from(config),
            timeout,
        }
    }
}

/// The TLS settings new connections get; a reload swaps them, and connections
/// already open keep what they started with, as with the NATS server.
pub type TlsSwitch = Arc<Mutex<Option<ServerTls>>>;

/// A completed handshake: the client's address, the TLS version (`1.3`) and the
/// cipher suite, named as Go's TLS library names them.
pub type Established = (SocketAddr, String, String);

/// The client listener, with TLS when the switch holds settings. Completed
/// handshakes are announced on `established`, for the node to show them.
pub struct TlsListener {
    inner: TcpListener,
    tls: TlsSwitch,
    established: mpsc::UnboundedSender<Established>,
}

impl TlsListener {
    pub fn new(
        inner: TcpListener,
        tls: TlsSwitch,
        established: mpsc::UnboundedSender<Established>,
    ) -> TlsListener {
        TlsListener {
            inner,
            tls,
            established,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Listener for TlsListener {
    type Stream = ClientStream<TcpStream>;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = Listener::accept(&mut self.inner).await?;
        let tls = self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut stream = ClientStream::new(stream, tls);
        if matches!(stream.state, State::Info(..)) {
            stream.announce = Some((peer, self.established.clone()));
        }
        Ok((stream, peer))
    }
}

/// Why a client's TLS handshake failed: the text of the NATS server's error line
/// for it, after the connection prefix.
#[derive(Debug)]
pub struct HandshakeFailed(pub String);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeFailed {}

enum State<S> {
    /// No TLS on this connection.
    Plain(S),
    /// TLS is required and the INFO line has not fully gone out yet.
    Info(S, ServerTls),
    Handshake {
        accept: Box<tokio_rustls::Accept<S>>,
        deadline: Pin<Box<tokio::time::Sleep>>,
    },
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    /// The handshake failed; the reader reported why.
    Failed,
}

/// A client connection: plain, or INFO in clear then TLS.
///
/// Only reads drive the handshake, so that the socket's readiness is awaited by one
/// task; writes wait for its end. The reader always polls, since it waits for the
/// client's first bytes.
pub struct ClientStream<S> {
    state: State<S>,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// Where to announce the completed handshake.
    announce: Option<(SocketAddr, mpsc::UnboundedSender<Established>)>,
}

impl<S> ClientStream<S> {
    pub fn new(stream: S, tls: Option<ServerTls>) -> ClientStream<S> {
        let state = match tls {
            Some(tls) => State::Info(stream, tls),
            None => State::Plain(stream),
        };
        ClientStream {
            state,
            reader: None,
            writer: None,
            announce: None,
        }
    }
}

/// Go names the TLS 1.3 suites without the `13` and the ChaCha20 suites of TLS 1.2
/// without the hash.
fn go_cipher_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    let name = name.replacen("TLS13_", "TLS_", 1);
    match name.strip_suffix("_CHACHA20_POLY1305_SHA256") {
        Some(head) if head.starts_with("TLS_ECDHE_") => format!("{head}_CHACHA20_POLY1305"),
        _ => name,
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "TLS handshake failed")
}

/// The NATS server's words (Go's crypto/tls) for the failures clients commonly cause.
fn handshake_error(e: &io::Error) -> String {
    use rustls::{CertificateError, Error, InvalidMessage};
    let reason = match e.get_ref().and_then(|r| r.downcast_ref::<Error>()) {
        Some(Error::InvalidMessage(InvalidMessage::InvalidContentType)) => {
            "tls: first record does not look like a TLS handshake".to_string()
        }
        Some(Error::NoCertificatesPresented) => {
            "tls: client didn't provide a certificate".to_string()
        }
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "tls: failed to verify client certificate: x509: certificate signed by unknown authority".to_string()
        }
        Some(other) => other.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => "EOF".to_string(),
        None => e.to_string(),
    };
    format!("TLS handshake error: {reason}")
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientStream<S> {
    /// Moves the handshake on; `Ready(Ok)` once TLS is up.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::Handshake { accept, deadline } = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        let outcome = match Pin::new(&mut **accept).poll(cx) {
            Poll::Ready(Ok(tls)) => Ok(tls),
            Poll::Ready(Err(e)) => Err(handshake_error(&e)),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Err("TLS handshake timeout".to_string()),
                Poll::Pending => return Poll::Pending,
            },
        };
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        match outcome {
            Ok(tls) => {
                if let Some((peer, tx)) = self.announce.take() {
                    let session = tls.get_ref().1;
                    let version = match session.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2".to_string(),
                        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3".to_string(),
                        other => format!("{other:?}"),
                    };
                    let cipher = session
                        .negotiated_cipher_suite()
                        .map(|s| go_cipher_name(s.suite()))
                        .unwrap_or_default();
                    let _ = tx.send((peer, version, cipher));
                }
                self.state = State::Tls(Box::new(tls));
                Poll::Ready(Ok(()))
            }
            Err(reason) => {
                self.state = State::Failed;
                Poll::Ready(Err(io::Error::other(HandshakeFailed(reason))))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Plain(s) => return Pin::new(s).poll_read(cx, buf),
                State::Tls(s) => return Pin::new(s).poll_read(cx, buf),
                // Nothing is read before the INFO is out and the handshake done.
                State::Info(..) => {
                    this.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                State::Handshake { .. } => match this.poll_handshake(cx) {
                    Poll::Ready(Ok(())) => continue,
                    other => return other,
                },
                State::Failed => return Poll::Ready(Err(failed())),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Plain(s) => Pin::new(s).poll_write(cx, buf),
            State::Tls(s) => Pin::new(s).poll_write(cx, buf),
            State::Info(s, _) => {
                // The INFO line is the first thing ever written; it ends at the
                // first newline, and what follows it goes over TLS.
                let line_end = buf.iter().position(|&b| b == b'\n').map(|i| i + 1);
                let clear = &buf[..line_end.unwrap_or(buf.len())];
                let n = match Pin::new(s).poll_write(cx, clear) {
                    Poll::Ready(Ok(n)) => n,
                    other => return other,
                };
                if Some(n) == line_end {
                    let State::Info(stream, tls) =
                        std::mem::replace(&mut this.state, State::Failed)
                    else {
                        unreachable!("state checked above")
                    };
                    this.state = State::Handshake {
                        accept: Box::new(tls.acceptor.accept(stream)),
                        deadline: Box::pin(tokio::time::sleep(tls.timeout)),
                    };
                    if let Some(w) = this.reader.take() {
                        w.wake();
                    }
                }
                Poll::Ready(Ok(n))
            }
            State::Handshake { .. } => {
                this.writer = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Plain(s) | State::Info(s, _) => Pin::new(s).poll_flush(cx),
            State::Tls(s) => Pin::new(s).poll_flush(cx),
            State::Handshake { .. } | State::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Plain(s) | State::Info(s, _) => Pin::new(s).poll_shutdown(cx),
            State::Tls(s) => Pin::new(s).poll_shutdown(cx),
            // Dropping the stream closes the socket.
            State::Handshake { .. } | State::Failed => Poll::Ready(Ok(())),
        }
    }
}

//! TLS for `warren serve` (rustls on ring, the backend the workspace already builds for its HTTP
//! client). The certificate chain and key are read once at start, so a bad file fails the
//! command before it listens. Handshakes run in their own tasks, bounded in time, and only
//! finished ones reach the HTTP server: a client that stalls its handshake holds no one up.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use warren_domain::{ErrorInfo, ReasonCode};

/// A client has this long to finish its handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const QUEUE: usize = 64;

/// The PEM files `--tls-cert` and `--tls-key` name.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn bad(message: String) -> ErrorInfo {
    ErrorInfo::new(ReasonCode::InvalidArgument, message)
        .with_hint("pass PEM files: --tls-cert with the certificate chain (leaf first), --tls-key with its private key")
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, ErrorInfo> {
    std::fs::read(path).map_err(|e| {
        bad(format!(
            "cannot read the TLS {what} {}: {e}",
            path.display()
        ))
    })
}

/// The acceptor for `files`, or an `invalid_argument` error that names the file at fault.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ErrorInfo> {
    let cert_pem = read("certificate", &files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad(format!(
                "the TLS certificate {} is not valid PEM: {e}",
                files.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(bad(format!(
            "the TLS certificate {} holds no certificate",
            files.cert.display()
        )));
    }
    let key_pem = read("key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(format!(
            "the TLS key {} holds no usable private key: {e}",
            files.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad(format!(
                "the TLS key {} does not fit the certificate {}: {e}",
                files.key.display(),
                files.cert.display()
            ))
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener of finished TLS handshakes, for `axum::serve`.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    // The server stopped accepting (shutdown): close the socket.
                    () = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off as axum's own loop does.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this receiver is gone; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The HTTP server on `tcp`, over TLS when `tls` is given, until `stop` is cancelled (then it
/// stops accepting and lets open requests finish).
pub(crate) fn serve(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    stop: CancellationToken,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let stopped = async move { stop.cancelled().await };
    match tls {
        None => Box::pin(
            axum::serve(tcp, router)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
        Some(acceptor) => match TlsListener::new(tcp, acceptor) {
            Ok(listener) => Box::pin(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            ),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        },
    }
}

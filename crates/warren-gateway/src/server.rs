//! The listening side: preparing the socket file the sandbox sees (or binding a TCP address) and
//! running the accept loop, so that shutdown can end every connection (including long SSE
//! streams) at once.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::error::GatewayError;
use crate::proxy::{self, Shared};

/// What the gateway accepts connections on.
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

pub(crate) async fn bind_tcp(address: std::net::SocketAddr) -> Result<Listener, GatewayError> {
    TcpListener::bind(address)
        .await
        .map(Listener::Tcp)
        .map_err(|e| GatewayError::BindTcp {
            address: address.to_string(),
            reason: e.to_string(),
        })
}

pub(crate) fn bind(path: &Path) -> Result<Listener, GatewayError> {
    let fail = |reason: String| GatewayError::Bind {
        path: path.to_owned(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket someone still answers on belongs to a live gateway; replacing it would cut
            // that sandbox off from its model.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(fail("another process is already listening on it".into()));
            }
            std::fs::remove_file(path)
                .map_err(|e| fail(format!("cannot remove stale socket: {e}")))?;
        }
        Ok(_) => return Err(fail("the path exists and is not a socket".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    // The sandbox may run as a mapped uid, so owner-only permissions would lock it out. Access is
    // limited by the directory, which only warren and the sandbox can see.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| fail(format!("cannot set socket permissions: {e}")))?;
    Ok(Listener::Unix(listener))
}

fn spawn_connection<S>(connections: &mut JoinSet<()>, stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connections.spawn(async move {
        let service = service_fn(move |req| proxy::handle(Arc::clone(&shared), req));
        if let Err(e) = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(error = %e, "model gateway connection ended with an error");
        }
    });
}

pub(crate) async fn serve(
    listener: Listener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Unix(stream)) => {
                    spawn_connection(&mut connections, stream, Arc::clone(&shared));
                }
                Ok(Accepted::Tcp(stream)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(&mut connections, stream, Arc::clone(&shared));
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning on a listener that keeps failing.
                    tracing::warn!(error = %e, "model gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reaps finished connections so the set does not grow for the sandbox's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
    }
}

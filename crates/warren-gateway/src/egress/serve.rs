//! The egress proxy's listener: its Unix socket beside the gateway's (or a loopback port a
//! provider's relay dials), an accept loop that can be stopped, and a stop that also ends the
//! tunnels, so nothing the sandbox opened outlives its run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::proxy::{self, Shared};
use super::{EgressAt, EgressListen};
use crate::error::GatewayError;
use crate::server::{self, Listener};
use crate::{GatewayNotice, remove_socket};

/// A running egress proxy, owned by the gateway's handle.
pub(crate) struct Running {
    /// Empty for a TCP proxy.
    socket: PathBuf,
    local_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    tunnels: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

pub(crate) async fn start(
    cfg: &EgressListen,
    notices: UnboundedSender<GatewayNotice>,
    connect_timeout: Duration,
) -> Result<Running, GatewayError> {
    let (listener, socket) = match &cfg.at {
        EgressAt::Unix(path) => (server::bind(path)?, path.clone()),
        EgressAt::Tcp(address) if !address.ip().is_loopback() => {
            return Err(GatewayError::BindTcp {
                address: address.to_string(),
                reason: "the egress proxy asks no credential, so it listens on loopback only"
                    .into(),
            });
        }
        EgressAt::Tcp(address) => (server::bind_tcp(*address).await?, PathBuf::new()),
    };
    let local_addr = listener.local_addr();
    let (tunnels, stop_tunnels) = watch::channel(false);
    let shared = Arc::new(Shared {
        policy: cfg.policy.clone(),
        notices,
        connect_timeout,
        stop: stop_tunnels,
        tunnels: std::sync::Mutex::default(),
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(serve(listener, shared, stop_rx));
    tracing::debug!(at = ?cfg.at, ?local_addr, rules = cfg.policy.rules().len(), "egress proxy listening");
    Ok(Running {
        socket,
        local_addr,
        stop: Some(stop_tx),
        tunnels,
        task: Some(task),
    })
}

impl Running {
    /// `None` for a TCP proxy.
    pub(crate) fn socket(&self) -> Option<&Path> {
        (!self.socket.as_os_str().is_empty()).then_some(self.socket.as_path())
    }

    /// The bound address of a TCP proxy (its real port).
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub(crate) async fn shutdown(mut self) {
        let _ = self.tunnels.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        remove_socket(&self.socket);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.tunnels.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
            remove_socket(&self.socket);
        }
    }
}

/// One accepted connection, whichever listener it came from.
async fn accept(listener: &Listener) -> std::io::Result<Box<dyn Connection>> {
    match listener {
        Listener::Unix(l) => Ok(Box::new(l.accept().await?.0)),
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            // CONNECT tunnels carry interactive traffic (TLS handshakes) in small writes.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
    }
}

trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Connection for T {}

async fn serve(listener: Listener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = accept(&listener) => match accepted {
                Ok(stream) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        let service = service_fn(move |req| proxy::handle(Arc::clone(&shared), req));
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                        {
                            tracing::debug!(error = %e, "egress proxy connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "egress proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
    let mut tunnels = std::mem::take(
        &mut *shared
            .tunnels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    // They were told to stop (the stop flag is set before the accept loop is); each sends its
    // record as it ends.
    while tunnels.join_next().await.is_some() {}
}

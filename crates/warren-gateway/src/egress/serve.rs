//! The egress proxy's listener: its Unix socket beside the gateway's, an accept loop that can be
//! stopped, and a stop that also ends the tunnels, so nothing the sandbox opened outlives its run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::EgressListen;
use super::proxy::{self, Shared};
use crate::error::GatewayError;
use crate::server::{self, Listener};
use crate::{GatewayNotice, remove_socket};

/// A running egress proxy, owned by the gateway's handle.
pub(crate) struct Running {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    tunnels: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

pub(crate) fn start(
    cfg: &EgressListen,
    notices: UnboundedSender<GatewayNotice>,
    connect_timeout: Duration,
) -> Result<Running, GatewayError> {
    let listener = server::bind(&cfg.socket)?;
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
    tracing::debug!(socket = %cfg.socket.display(), rules = cfg.policy.rules().len(), "egress proxy listening");
    Ok(Running {
        socket: cfg.socket.clone(),
        stop: Some(stop_tx),
        tunnels,
        task: Some(task),
    })
}

impl Running {
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
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

async fn serve(listener: Listener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let Listener::Unix(listener) = listener else {
        return;
    };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
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

//! The Unix socket side: preparing the socket file the sandbox sees and running the accept loop,
//! so that shutdown can end every connection (including long SSE streams) at once.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::error::GatewayError;
use crate::proxy::{self, Shared};

pub(crate) fn bind(path: &Path) -> Result<UnixListener, GatewayError> {
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
    Ok(listener)
}

pub(crate) async fn serve(
    listener: UnixListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
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
                            .await
                        {
                            tracing::debug!(error = %e, "model gateway connection ended with an error");
                        }
                    });
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

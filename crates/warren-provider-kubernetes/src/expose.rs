//! A loopback port of the pod served on a host Unix socket ([`warren_provider::Sandbox::expose`]):
//! how warren reaches the pod's warm OpenCode server. Nothing in the pod can write the host's run
//! directory, and the pod's network is closed, so each connection to the socket becomes a stream
//! over the relay's exec connection (`warren-mux`), which the pod side connects to
//! `127.0.0.1:<port>`. The socket lives as long as the sandbox: dropping [`Exposed`] (at destroy)
//! stops serving and removes the file.

use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warren_mux::Opener;

/// One exposed port.
pub(crate) struct Exposed {
    task: JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for Exposed {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Binds `socket` (replacing a stale file) and serves it until dropped.
pub(crate) fn start(
    port: u16,
    socket: &Path,
    openers: watch::Receiver<Option<Opener>>,
) -> std::io::Result<Exposed> {
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(socket)?;
    let task = tokio::spawn(serve(listener, port, openers));
    Ok(Exposed {
        task,
        socket: socket.to_path_buf(),
    })
}

async fn serve(listener: UnixListener, port: u16, openers: watch::Receiver<Option<Opener>>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        // The relay's connection of this moment: one restarted since has a new opener.
        let opener = openers.borrow().clone();
        tokio::spawn(async move {
            let Some(opener) = opener else {
                tracing::debug!("port {port} of the pod asked for while its relay is down");
                return;
            };
            if let Err(e) = carry(conn, &opener, port).await {
                tracing::debug!("a connection to port {port} of the pod ended: {e}");
            }
        });
    }
}

async fn carry(mut conn: UnixStream, opener: &Opener, port: u16) -> std::io::Result<()> {
    let mut stream = opener.connect(port).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut stream).await?;
    Ok(())
}

#[cfg(test)]
#[path = "expose_tests.rs"]
mod tests;

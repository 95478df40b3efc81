//! Polls one yamux connection: it owns the connection (yamux needs `&mut` for opening and for
//! accepting streams, and only polling inbound drives its I/O), serves requests to open
//! outbound streams from any task, and hands every inbound stream to a callback.

use std::future::poll_fn;
use std::io;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

/// A stream of the connection, as tokio reads and writes it.
pub(crate) type MuxStream = Compat<yamux::Stream>;

/// Asks the driver for a new outbound stream.
pub(crate) type OpenRequest = oneshot::Sender<io::Result<MuxStream>>;

/// Runs the connection over `io` until the peer goes or the byte stream ends.
pub(crate) async fn drive<T>(
    io: T,
    mode: yamux::Mode,
    mut opens: mpsc::UnboundedReceiver<OpenRequest>,
    mut inbound: impl FnMut(MuxStream),
) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = yamux::Connection::new(io.compat(), yamux::Config::default(), mode);
    let mut pending: Option<OpenRequest> = None;
    let mut opens_closed = false;
    poll_fn(|cx| {
        loop {
            if pending.is_none() && !opens_closed {
                match opens.poll_recv(cx) {
                    Poll::Ready(Some(tx)) => pending = Some(tx),
                    Poll::Ready(None) => opens_closed = true,
                    Poll::Pending => {}
                }
            }
            let Some(tx) = pending.take() else { break };
            match conn.poll_new_outbound(cx) {
                Poll::Ready(opened) => {
                    let _ = tx.send(opened.map(|s| s.compat()).map_err(io::Error::other));
                }
                Poll::Pending => {
                    pending = Some(tx);
                    break;
                }
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => inbound(stream.compat()),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Asks the driver behind `opens` for a stream.
pub(crate) async fn open(opens: &mpsc::UnboundedSender<OpenRequest>) -> io::Result<MuxStream> {
    let gone = || io::Error::new(io::ErrorKind::NotConnected, "the mux connection has ended");
    let (tx, rx) = oneshot::channel();
    opens.send(tx).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

//! The sandbox's end: listens on loopback ports and carries every connection to the host, tagged
//! with its channel; connects the host's streams to loopback ports here.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::driver::{self, MuxStream, OpenRequest};
use crate::{Channel, READY_LINE};

/// A loopback listener whose connections go to the host on `channel`.
pub struct Listen {
    pub channel: Channel,
    pub listener: TcpListener,
}

/// Serves until the host's side of the byte stream ends. The listeners are bound already, so
/// the ready line is true when it is written.
pub async fn serve_sandbox<R, W>(reader: R, mut writer: W, listens: Vec<Listen>) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    writer.write_all(READY_LINE.as_bytes()).await?;
    writer.flush().await?;
    let (opens_tx, opens) = mpsc::unbounded_channel();
    let accepting: Vec<_> = listens
        .into_iter()
        .map(|l| tokio::spawn(accept(l, opens_tx.clone())))
        .collect();
    drop(opens_tx);
    let served = driver::drive(
        tokio::io::join(reader, writer),
        yamux::Mode::Client,
        opens,
        |stream| {
            tokio::spawn(to_local_port(stream));
        },
    )
    .await;
    for task in accepting {
        task.abort();
    }
    served
}

async fn accept(listen: Listen, opens: mpsc::UnboundedSender<OpenRequest>) {
    loop {
        let Ok((tcp, _)) = listen.listener.accept().await else {
            continue;
        };
        let opens = opens.clone();
        tokio::spawn(async move {
            if let Err(e) = to_host(tcp, listen.channel, &opens).await {
                tracing::debug!("a connection on channel {} ended: {e}", listen.channel);
            }
        });
    }
}

async fn to_host(
    mut tcp: TcpStream,
    channel: Channel,
    opens: &mpsc::UnboundedSender<OpenRequest>,
) -> io::Result<()> {
    let mut stream = driver::open(opens).await?;
    stream.write_all(&[channel]).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut stream).await?;
    Ok(())
}

/// The host asked for a loopback port here: only loopback, whatever the port.
async fn to_local_port(mut stream: MuxStream) -> io::Result<()> {
    let port = stream.read_u16().await?;
    let mut tcp = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    tokio::io::copy_bidirectional(&mut stream, &mut tcp).await?;
    Ok(())
}

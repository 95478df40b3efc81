//! warren's end: connects each stream the sandbox opens to the address warren routed its
//! channel to, and opens streams to loopback ports in the sandbox.

use std::io;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::driver::{self, MuxStream, OpenRequest};
use crate::{Channel, READY_LINE};

/// Where the host connects a channel's streams (`host:port`, normally loopback).
#[derive(Debug, Clone)]
pub struct Route {
    pub channel: Channel,
    pub address: String,
}

/// Opens streams to loopback ports in the sandbox; cheap to clone.
#[derive(Debug, Clone)]
pub struct Opener {
    opens: mpsc::UnboundedSender<OpenRequest>,
}

impl Opener {
    /// A byte stream to `127.0.0.1:port` in the sandbox.
    pub async fn connect(&self, port: u16) -> io::Result<MuxStream> {
        let mut stream = driver::open(&self.opens).await?;
        stream.write_u16(port).await?;
        Ok(stream)
    }
}

/// The host side of one sandbox's byte stream.
pub struct HostMux;

impl HostMux {
    /// Waits for the sandbox's ready line on `reader`, then returns an [`Opener`] and the future
    /// that serves the connection (run it on a task; it ends when the stream does).
    pub async fn start<R, W>(
        mut reader: R,
        writer: W,
        routes: Vec<Route>,
    ) -> io::Result<(
        Opener,
        impl Future<Output = io::Result<()>> + Send + 'static,
    )>
    where
        R: AsyncBufRead + AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut line = String::new();
        // Bounded: the line is short, and anything else first is a sandbox side that is not ours.
        (&mut reader)
            .take(READY_LINE.len() as u64)
            .read_line(&mut line)
            .await?;
        if line != READY_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the sandbox's relay did not start (it said {:?})",
                    line.trim_end()
                ),
            ));
        }
        let (opens_tx, opens) = mpsc::unbounded_channel();
        let serve = async move {
            driver::drive(
                tokio::io::join(reader, writer),
                yamux::Mode::Server,
                opens,
                move |stream| {
                    let routes = routes.clone();
                    tokio::spawn(async move {
                        if let Err(e) = to_route(stream, &routes).await {
                            tracing::debug!("a relayed connection ended: {e}");
                        }
                    });
                },
            )
            .await
        };
        Ok((Opener { opens: opens_tx }, serve))
    }
}

async fn to_route(mut stream: MuxStream, routes: &[Route]) -> io::Result<()> {
    let channel = stream.read_u8().await?;
    let Some(route) = routes.iter().find(|r| r.channel == channel) else {
        // A channel warren did not route: the sandbox gets a closed stream, nothing else.
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("channel {channel} is not routed"),
        ));
    };
    let mut tcp = TcpStream::connect(&route.address).await?;
    tokio::io::copy_bidirectional(&mut stream, &mut tcp).await?;
    Ok(())
}

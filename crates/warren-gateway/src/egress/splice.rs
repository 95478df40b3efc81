//! Zero-copy CONNECT tunnels: bytes move socket → pipe → socket with `splice(2)` and never enter
//! user space. The tunnel is one of the three hops of every HTTPS download from a sandbox, and on
//! a fast link copying through a buffer there is what bounds the rate.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use super::record::Bytes;

/// What one direction asks its pipe for; the kernel's default pipe (64 KiB) is raised to this.
const PIPE_SIZE: usize = 256 * 1024;

/// A socket tokio drives: the splice loop waits on its readiness and clears it on `EAGAIN`.
pub(crate) trait Socket: AsFd {
    async fn wait(&self, interest: Interest) -> io::Result<()>;
    fn attempt<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl Socket for TcpStream {
    async fn wait(&self, interest: Interest) -> io::Result<()> {
        self.ready(interest).await.map(|_| ())
    }
    fn attempt<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(interest, f)
    }
}

impl Socket for UnixStream {
    async fn wait(&self, interest: Interest) -> io::Result<()> {
        self.ready(interest).await.map(|_| ())
    }
    fn attempt<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(interest, f)
    }
}

/// Both directions until both sources end (each end closes the other side's write half), or
/// until one fails. `up` counts what reaches `upstream`, `down` what is read from it: exact,
/// since every splice returns how many bytes it moved.
pub(crate) async fn both_ways(
    client: &UnixStream,
    upstream: &TcpStream,
    bytes: &Bytes,
) -> io::Result<()> {
    tokio::try_join!(
        one_way(client, upstream, None, Some(&bytes.up)),
        one_way(upstream, client, Some(&bytes.down), None),
    )?;
    Ok(())
}

/// Writes what the client sent before the tunnel existed (hyper read it with the CONNECT).
pub(crate) async fn write_all(
    to: &TcpStream,
    mut data: &[u8],
    count: &AtomicU64,
) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                data = &data[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn one_way<A: Socket, B: Socket>(
    from: &A,
    to: &B,
    read: Option<&AtomicU64>,
    written: Option<&AtomicU64>,
) -> io::Result<()> {
    // Non-blocking, so a splice never parks a runtime thread; it is emptied before each read.
    let (pipe_out, pipe_in) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    let capacity = rustix::pipe::fcntl_setpipe_size(&pipe_in, PIPE_SIZE)
        .or_else(|_| rustix::pipe::fcntl_getpipe_size(&pipe_in))
        .unwrap_or(64 * 1024);
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        let n = loop {
            from.wait(Interest::READABLE).await?;
            let moved = from.attempt(Interest::READABLE, || {
                Ok(rustix::pipe::splice(
                    from, None, &pipe_in, None, capacity, flags,
                )?)
            });
            match moved {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
            return Ok(());
        }
        if let Some(count) = read {
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
        let mut left = n;
        while left > 0 {
            to.wait(Interest::WRITABLE).await?;
            let moved = to.attempt(Interest::WRITABLE, || {
                Ok(rustix::pipe::splice(
                    &pipe_out, None, to, None, left, flags,
                )?)
            });
            match moved {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    left -= m;
                    if let Some(count) = written {
                        count.fetch_add(m as u64, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

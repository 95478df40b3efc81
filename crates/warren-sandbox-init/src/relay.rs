//! Relays between loopback TCP and Unix sockets. Out: OpenCode speaks HTTP over TCP, the gateway
//! listens on a Unix socket that is the sandbox's only way out. In: a warm OpenCode server listens
//! on loopback, and a Unix socket in the shared run directory is how warren on the host reaches it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

/// Listens on `socket` and relays every connection to `127.0.0.1:port`.
pub fn expose(socket: PathBuf, port: u16) -> Result<(), String> {
    // A socket file left by an earlier server of this sandbox would make bind fail.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    thread::Builder::new()
        .name(format!("expose-{port}"))
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || expose_one(conn, port));
            }
        })
        .map_err(|e| format!("cannot start relay thread: {e}"))?;
    Ok(())
}

fn expose_one(unix: UnixStream, port: u16) {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    pump(unix, tcp);
}

pub fn start(port: u16, socket: PathBuf) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    thread::Builder::new()
        .name(format!("relay-{port}"))
        .spawn(move || accept_loop(listener, socket))
        .map_err(|e| format!("cannot start relay thread: {e}"))?;
    Ok(())
}

fn accept_loop(listener: TcpListener, socket: PathBuf) {
    for conn in listener.incoming().flatten() {
        let socket = socket.clone();
        let _ = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || relay_one(conn, &socket));
    }
}

fn relay_one(tcp: TcpStream, socket: &Path) {
    let unix = match UnixStream::connect(socket) {
        Ok(u) => u,
        Err(e) => {
            eprintln!(
                "warren-sandbox-init: gateway socket {}: {e}",
                socket.display()
            );
            return;
        }
    };
    pump(tcp, unix);
}

/// Copies both ways until both sides are done, closing each write side when its source ends.
fn pump<A: Duplex, B: Duplex>(a: A, b: B) {
    let (Ok(a_read), Ok(b_write)) = (a.duplicate(), b.duplicate()) else {
        return;
    };
    let forward = thread::Builder::new().stack_size(64 * 1024).spawn(move || {
        copy(a_read, b_write, |w| w.close_write());
    });
    copy(b, a, |w| w.close_write());
    if let Ok(handle) = forward {
        let _ = handle.join();
    }
}

/// A connected stream of either kind.
trait Duplex: Read + Write + AsFd + Send + Sized + 'static {
    fn duplicate(&self) -> std::io::Result<Self>;
    fn close_write(&self);
}

impl Duplex for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Duplex for UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Large enough that a bulk download through the egress proxy is not bound by syscalls per byte;
/// on the heap, since relay threads have small stacks. Only an open connection holds one.
const COPY_BUFFER: usize = 128 * 1024;

/// What one direction asks the pipe for; the kernel's default pipe (64 KiB) is raised to this.
const PIPE_SIZE: usize = 256 * 1024;

fn copy<R: Read + AsFd, W: Write + AsFd>(mut from: R, mut to: W, close: impl FnOnce(&W)) {
    if let Splice::Unsupported = splice_copy(&from, &to) {
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
    close(&to);
}

enum Splice {
    /// The source ended or a side failed: the direction is over.
    Done,
    /// The kernel refused before any byte moved: copy through user space instead.
    Unsupported,
}

/// Moves bytes from `from` to `to` through a pipe with `splice(2)`, so they never enter user
/// space: the relay is one of the three hops of every egress download. The pipe is emptied before
/// the next read, so a blocking read never waits on a full pipe.
fn splice_copy(from: &impl AsFd, to: &impl AsFd) -> Splice {
    let Ok((pipe_out, pipe_in)) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC) else {
        return Splice::Unsupported;
    };
    let capacity = rustix::pipe::fcntl_setpipe_size(&pipe_in, PIPE_SIZE)
        .or_else(|_| rustix::pipe::fcntl_getpipe_size(&pipe_in))
        .unwrap_or(64 * 1024);
    let mut moved = false;
    loop {
        let n = match rustix::pipe::splice(from, None, &pipe_in, None, capacity, SpliceFlags::MOVE)
        {
            Ok(0) => return Splice::Done,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(Errno::INVAL | Errno::NOSYS) if !moved => return Splice::Unsupported,
            Err(_) => return Splice::Done,
        };
        moved = true;
        let mut left = n;
        while left > 0 {
            match rustix::pipe::splice(&pipe_out, None, to, None, left, SpliceFlags::MOVE) {
                Ok(0) => return Splice::Done,
                Ok(m) => left -= m,
                Err(Errno::INTR) => continue,
                Err(_) => return Splice::Done,
            }
        }
    }
}

//! Relays between loopback TCP and Unix sockets. Out: OpenCode speaks HTTP over TCP, the gateway
//! listens on a Unix socket that is the sandbox's only way out. In: a warm OpenCode server listens
//! on loopback, and a Unix socket in the shared run directory is how warren on the host reaches it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;

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
trait Duplex: Read + Write + Send + Sized + 'static {
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

fn copy<R: Read, W: Write>(mut from: R, mut to: W, close: impl FnOnce(&W)) {
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
    close(&to);
}

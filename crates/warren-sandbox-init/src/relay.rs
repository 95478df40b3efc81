//! Loopback TCP → Unix socket relay: OpenCode speaks HTTP over TCP, the gateway listens on a Unix
//! socket that is the sandbox's only way out.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;

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

fn relay_one(tcp: TcpStream, socket: &PathBuf) {
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
    let (Ok(tcp_read), Ok(unix_write)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let upstream = thread::Builder::new().stack_size(64 * 1024).spawn(move || {
        copy(tcp_read, unix_write, |u| {
            let _ = u.shutdown(Shutdown::Write);
        })
    });
    copy(unix, tcp, |t| {
        let _ = t.shutdown(Shutdown::Write);
    });
    if let Ok(handle) = upstream {
        let _ = handle.join();
    }
}

fn copy<R: Read, W: Write>(mut from: R, mut to: W, close: impl FnOnce(&mut W)) {
    let mut buf = [0u8; 16 * 1024];
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
    close(&mut to);
}

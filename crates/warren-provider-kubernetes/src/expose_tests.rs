//! The exposed socket over a real mux pair joined by an in-memory pipe (standing in for the
//! relay's exec): bytes reach the port, a relay that is down closes connections at once, a
//! restarted relay's new connection carries them again, and dropping the exposure removes the
//! socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warren_mux::{HostMux, Opener, serve_sandbox};

/// A loopback "server in the pod" that prefixes what it echoes.
async fn echo_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                tcp.write_all(b"pod:").await.unwrap();
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// One relay connection: its opener and the task serving its host side.
async fn connection() -> (Opener, JoinHandle<std::io::Result<()>>) {
    let (host_io, sandbox_io) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(sandbox_io);
    tokio::spawn(serve_sandbox(sr, sw, Vec::new()));
    let (hr, hw) = tokio::io::split(host_io);
    let (opener, serve) = HostMux::start(BufReader::new(hr), hw, Vec::new())
        .await
        .unwrap();
    (opener, tokio::spawn(serve))
}

async fn round_trip(socket: &std::path::Path, body: &[u8]) -> Vec<u8> {
    let mut conn = UnixStream::connect(socket).await.unwrap();
    conn.write_all(body).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn the_socket_follows_the_relays_current_connection_and_goes_with_the_sandbox() {
    let port = echo_port().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("opencode-1.sock");
    // A stale socket from an earlier server is replaced.
    std::fs::write(&socket, b"stale").unwrap();
    let (first, first_serving) = connection().await;
    let (current, openers) = watch::channel(Some(first));
    let exposed = super::start(port, &socket, openers).unwrap();

    assert_eq!(round_trip(&socket, b"one").await, b"pod:one");

    // The relay dropped: a connection is closed at once, not held.
    current.send_replace(None);
    first_serving.abort();
    let mut lost = UnixStream::connect(&socket).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        lost.read_to_end(&mut got),
    )
    .await
    .expect("a connection made while the relay is down was held");
    assert!(read.is_err() || got.is_empty(), "{got:?}");

    // The restarted relay is a new connection; the socket uses it.
    let (second, _serving) = connection().await;
    current.send_replace(Some(second));
    let body: Vec<u8> = (0..200_000u32).map(|b| (b * 13) as u8).collect();
    let got = round_trip(&socket, &body).await;
    assert_eq!(&got[..4], b"pod:");
    assert_eq!(got[4..], body[..]);

    drop(exposed);
    assert!(!socket.exists(), "the socket outlived the sandbox");
}

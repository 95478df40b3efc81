//! Both ends of the mux in one process, joined by an in-memory pipe standing in for the exec's
//! stdin and stdout: what a sandbox's program dials on loopback reaches the host's routed
//! address and nothing else, byte for byte, many connections at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use warren_mux::{EGRESS, GATEWAY, HostMux, Listen, Opener, Route, serve_sandbox};

/// A loopback server that answers every connection with its own name and then echoes.
async fn named_echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                tcp.write_all(name.as_bytes()).await.unwrap();
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// The sandbox listens for the gateway channel only; the host routes gateway and egress.
async fn pair(routes: Vec<Route>) -> (SocketAddr, Opener) {
    let (host_io, sandbox_io) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(sandbox_io);
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = gateway.local_addr().unwrap();
    tokio::spawn(serve_sandbox(
        sr,
        sw,
        vec![Listen {
            channel: GATEWAY,
            listener: gateway,
        }],
    ));
    let (hr, hw) = tokio::io::split(host_io);
    let (opener, serve) = HostMux::start(BufReader::new(hr), hw, routes)
        .await
        .unwrap();
    tokio::spawn(serve);
    (gateway_addr, opener)
}

#[tokio::test]
async fn many_connections_reach_the_routed_address_intact() {
    let gateway = named_echo("gateway:").await;
    let (listen, _) = pair(vec![Route {
        channel: GATEWAY,
        address: gateway.to_string(),
    }])
    .await;
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(listen).await.unwrap();
            let body: Vec<u8> = (0..300_000u32).map(|b| (b * 7 + i) as u8).collect();
            let (mut r, mut w) = tcp.split();
            let send = async {
                w.write_all(&body).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let ((), read) = tokio::join!(send, recv);
            read.unwrap();
            assert_eq!(&got[..8], b"gateway:");
            assert_eq!(got[8..], body[..], "connection {i} came back altered");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_channel_the_host_did_not_route_gets_nothing() {
    let egress = named_echo("egress:").await;
    // The sandbox listens for the gateway, but the host routes only egress: a gateway
    // connection must be closed without a byte, never sent somewhere else.
    let (listen, _) = pair(vec![Route {
        channel: EGRESS,
        address: egress.to_string(),
    }])
    .await;
    let mut tcp = TcpStream::connect(listen).await.unwrap();
    tcp.write_all(b"hello").await.unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got).await;
    assert!(got.is_empty(), "an unrouted channel answered: {got:?}");
}

#[tokio::test]
async fn the_host_reaches_a_loopback_port_in_the_sandbox() {
    let server = named_echo("warm:").await;
    let (_, opener) = pair(vec![]).await;
    let mut stream = opener.connect(server.port()).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 9];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"warm:ping");
}

#[tokio::test]
async fn a_sandbox_side_that_is_not_the_relay_is_refused() {
    let (host_io, mut sandbox_io) = tokio::io::duplex(1024);
    sandbox_io
        .write_all(b"exec: warren-sandbox-init: not found\n")
        .await
        .unwrap();
    let (hr, hw) = tokio::io::split(host_io);
    let err = HostMux::start(BufReader::new(hr), hw, vec![])
        .await
        .err()
        .expect("a stranger's output must not start the mux");
    assert!(err.to_string().contains("did not start"), "{err}");
}

/// A pod with an allow-list: the sandbox listens for the gateway and the egress port, and each
/// listener's connections reach its own routed address, never the other's.
#[tokio::test]
async fn gateway_and_egress_listeners_each_reach_their_own_route() {
    let gateway = named_echo("gateway:").await;
    let egress = named_echo("egress:").await;
    let (host_io, sandbox_io) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(sandbox_io);
    let gateway_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let egress_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (at_gateway, at_egress) = (
        gateway_listener.local_addr().unwrap(),
        egress_listener.local_addr().unwrap(),
    );
    tokio::spawn(serve_sandbox(
        sr,
        sw,
        vec![
            Listen {
                channel: GATEWAY,
                listener: gateway_listener,
            },
            Listen {
                channel: EGRESS,
                listener: egress_listener,
            },
        ],
    ));
    let (hr, hw) = tokio::io::split(host_io);
    let routes = vec![
        Route {
            channel: GATEWAY,
            address: gateway.to_string(),
        },
        Route {
            channel: EGRESS,
            address: egress.to_string(),
        },
    ];
    let (_, serve) = HostMux::start(BufReader::new(hr), hw, routes)
        .await
        .unwrap();
    tokio::spawn(serve);
    for (at, name) in [
        (at_egress, "egress:"),
        (at_gateway, "gateway:"),
        (at_egress, "egress:"),
    ] {
        let mut tcp = TcpStream::connect(at).await.unwrap();
        tcp.write_all(b"ping").await.unwrap();
        let mut got = vec![0u8; name.len() + 4];
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(got, format!("{name}ping").as_bytes());
    }
}

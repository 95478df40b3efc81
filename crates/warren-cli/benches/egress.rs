#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `cargo bench -p warren-cli --bench egress` (part of `make bench`): the throughput of a 100 MB
//! download through the egress proxy against the same download straight from the host (issue 12;
//! goal: at least 80%). The path through the proxy is the sandbox's: a loopback TCP port served
//! by the real `warren-sandbox-init --relay`, the proxy's Unix socket, then TCP to the server. Both
//! ways it crosses: a plain HTTP request forwarded by the proxy (absolute-form `GET`), and a
//! CONNECT tunnel (what HTTPS uses) carrying the same `GET`. The server is an in-process HTTP/1.1
//! responder on 127.0.0.1 that sends the body from memory; the client reads it to the end and
//! discards it. Rounds alternate direct / forwarded / tunnelled so machine noise hits all three;
//! the figures are the medians.
//!
//! Loopback is the hardest baseline there is: a direct download is one hop of kernel copies,
//! through the proxy it is three (server to proxy, proxy to relay, relay to client), all on the
//! same cores. A second set of rounds paces the server at a fast real link's rate (default
//! 100 MB/s, about 1 Gbit/s) to show what the proxy costs when the network, not the CPU, is the
//! limit.
//!
//! Environment: `WARREN_BENCH_EGRESS_MB` (default 100), `WARREN_BENCH_EGRESS_ROUNDS` (default 7),
//! `WARREN_BENCH_EGRESS_PACE_MBPS` (default 100; 0 skips the paced rounds).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_gateway::GatewayConfig;
use warren_gateway::egress::{EgressAt, EgressListen, EgressPolicy, RuleSpec};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Answers every request with `size` bytes, then closes; with `pace` (MB/s) no faster than that.
async fn serve_blob(size: usize, pace: Option<f64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                );
                if stream.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                let started = Instant::now();
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                    if let Some(rate) = pace {
                        let due = (size - left) as f64 / (rate * 1024.0 * 1024.0);
                        let ahead = due - started.elapsed().as_secs_f64();
                        if ahead > 0.0 {
                            tokio::time::sleep(Duration::from_secs_f64(ahead)).await;
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Reads the response to its end; returns the body's length.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    let mut head_end = None;
    let mut head = Vec::new();
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
        if head_end.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(
                    head.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&head)
                );
                head_end = Some(i + 4);
            }
        }
    }
    total - head_end.unwrap()
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &str,
    host: SocketAddr,
) -> usize {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(stream).await
}

async fn direct(server: SocketAddr) -> usize {
    let mut stream = TcpStream::connect(server).await.unwrap();
    get(&mut stream, "/blob", server).await
}

async fn forwarded(relay: SocketAddr, server: SocketAddr) -> usize {
    let mut stream = TcpStream::connect(relay).await.unwrap();
    get(&mut stream, &format!("http://{server}/blob"), server).await
}

async fn tunnelled(relay: SocketAddr, server: SocketAddr) -> usize {
    let mut stream = TcpStream::connect(relay).await.unwrap();
    let connect = format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    get(&mut stream, "/blob", server).await
}

/// `warren-sandbox-init --relay PORT=SOCKET`, as inside a sandbox, kept up by a long command.
fn start_relay(socket: &Path) -> (Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Its own process group, so stopping it stops the command it keeps running too.
    let child = Command::new(env!("CARGO_BIN_EXE_warren-sandbox-init"))
        .arg("--relay")
        .arg(format!("{port}={}", socket.display()))
        .args(["--", "sleep", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the relay never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of `rounds` alternating direct / forwarded / tunnelled downloads from `server`.
async fn measure(server: SocketAddr, relay: SocketAddr, size: usize, rounds: usize) -> [f64; 3] {
    // One warm-up of each, not counted.
    assert_eq!(direct(server).await, size);
    assert_eq!(forwarded(relay, server).await, size);
    assert_eq!(tunnelled(relay, server).await, size);
    let mb = size as f64 / (1024.0 * 1024.0);
    let rate = |start: Instant| mb / start.elapsed().as_secs_f64();
    let (mut d, mut f, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = Instant::now();
        assert_eq!(direct(server).await, size);
        d.push(rate(s));
        let s = Instant::now();
        assert_eq!(forwarded(relay, server).await, size);
        f.push(rate(s));
        let s = Instant::now();
        assert_eq!(tunnelled(relay, server).await, size);
        t.push(rate(s));
    }
    [median(d), median(f), median(t)]
}

fn report(title: &str, [d, f, t]: [f64; 3]) {
    println!("{title}");
    println!("  direct on the host            {d:>8.0} MB/s");
    println!(
        "  forwarded (plain HTTP)        {f:>8.0} MB/s  {:>5.1}% of direct",
        100.0 * f / d
    );
    println!(
        "  tunnelled (CONNECT)           {t:>8.0} MB/s  {:>5.1}% of direct",
        100.0 * t / d
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mb = env_or("WARREN_BENCH_EGRESS_MB", 100);
    let rounds = env_or("WARREN_BENCH_EGRESS_ROUNDS", 7).max(1);
    let pace = env_or("WARREN_BENCH_EGRESS_PACE_MBPS", 100);
    let size = mb * 1024 * 1024;
    let server = serve_blob(size, None).await;
    let paced = serve_blob(size, Some(pace as f64)).await;

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("egress.sock");
    let mut cfg = GatewayConfig::new(dir.path().join("gw.sock"), "http://127.0.0.1:9/v1");
    let rules = [server, paced].map(|a| RuleSpec::new(format!("127.0.0.1:{}", a.port())));
    cfg.egress = Some(EgressListen {
        at: EgressAt::Unix(socket.clone()),
        policy: EgressPolicy::parse(&rules).unwrap(),
    });
    let mut gateway = warren_gateway::start(cfg).await.unwrap();
    let mut notices = gateway.take_notices();
    tokio::spawn(async move { while notices.recv().await.is_some() {} });
    let (mut relay, relay_addr) = start_relay(&socket);

    let loopback = measure(server, relay_addr, size, rounds).await;
    let paced_figures = if pace > 0 {
        Some(measure(paced, relay_addr, size, rounds).await)
    } else {
        None
    };
    if let Some(group) = rustix::process::Pid::from_raw(relay.id() as i32) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = relay.wait();
    gateway.shutdown().await;

    report(
        &format!(
            "egress proxy: {mb} MB download, {rounds} rounds, median throughput, loopback server"
        ),
        loopback,
    );
    if let Some(figures) = paced_figures {
        report(&format!("the same, server paced at {pace} MB/s"), figures);
    }
    println!("  goal: >= 80% of direct");
}

//! What the server's tests share: a `warren serve` process on a free loopback port (on the
//! fixture's data dir, and on a shared store when given), tokens made with `warren token create`,
//! and readers of JSON and SSE responses. Every server started is stopped by its pid: SIGTERM,
//! which drains it, or SIGKILL, as a crash.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::harness::{Fixture, stderr, stdout};

/// A free loopback port (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: tokio::process::Child,
    pub base: String,
    pub http: reqwest::Client,
    pub port: u16,
}

impl Server {
    pub async fn start(fx: &Fixture) -> Server {
        Self::start_with(fx, None, &[]).await
    }

    /// A server on `store` (`--store`; SQLite in the data dir when `None`), with `env` set.
    pub async fn start_with(fx: &Fixture, store: Option<&str>, env: &[(&str, &str)]) -> Server {
        let mut args = vec!["--max-body-bytes", "65536"];
        if let Some(store) = store {
            args.extend(["--store", store]);
        }
        Self::launch(fx, free_port(), &args, env, reqwest::Client::new()).await
    }

    /// A server on the SQLite store of `fx` listening on `port` (a restart on the same address).
    pub async fn start_on(fx: &Fixture, port: u16) -> Server {
        Self::launch(fx, port, &[], &[], reqwest::Client::new()).await
    }

    /// `warren serve --listen 127.0.0.1:<free port> EXTRA...`, reached with `http` (a client
    /// trusting the server's certificate when `EXTRA` turns TLS on).
    pub async fn start_args(fx: &Fixture, extra: &[&str], http: reqwest::Client) -> Server {
        Self::launch(fx, free_port(), extra, &[], http).await
    }

    async fn launch(
        fx: &Fixture,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
        http: reqwest::Client,
    ) -> Server {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(extra);
        let mut command = fx.command(&args);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // The line names the address with its scheme (`https://` with TLS).
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, url)) = line.split_once("listening on ") {
                    return url.trim().to_owned();
                }
                seen.push(line);
            }
            panic!("warren serve ended before listening:\n{}", seen.join("\n"));
        })
        .await
        .expect("warren serve did not start");
        // Keep draining its log so it never blocks on a full pipe; shown when a test fails.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[serve {port}] {line}");
            }
        });
        Server {
            child,
            base,
            http,
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap();
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    }

    /// Stops the server by its pid with SIGTERM and waits for it to drain.
    pub async fn stop(mut self) {
        self.signal("-TERM");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the server did not stop on SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "the server exits cleanly on SIGTERM: {status}"
        );
    }

    /// Kills the server by its pid with SIGKILL, as a crash of its host would, and reaps it.
    pub async fn kill(mut self) {
        self.signal("-KILL");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server survived SIGKILL")
            .unwrap();
    }
}

/// A token for `owner`, made with `warren token create` (on `store` when given).
pub async fn token_in(fx: &Fixture, owner: &str, store: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--owner", owner];
    if let Some(store) = store {
        args.extend(["--store", store]);
    }
    let out = fx.warren(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

pub async fn token(fx: &Fixture, owner: &str) -> String {
    token_in(fx, owner, None).await
}

pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    )
}

/// Reads SSE events from `resp` (at most `max`), as `(id, data)`.
pub async fn sse(resp: reqwest::Response, max: usize) -> Vec<(u64, Value)> {
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream().eventsource();
    let mut out = Vec::new();
    while out.len() < max {
        let Some(event) = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .expect("the event stream stalled")
        else {
            break;
        };
        let event = event.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        out.push((event.id.parse().unwrap(), data));
    }
    out
}

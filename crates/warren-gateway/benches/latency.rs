//! The latency the model gateway adds to one model call: the same streamed chat completion (as
//! OpenCode sends it, usage included) to the scripted model server directly over TCP, and through
//! a gateway on a Unix socket in front of it, in the same run, interleaved, each over one
//! keep-alive connection, timed to the last byte of the body. The gateway meters and prices each
//! answer and checks a budget on the way, as in a real run. Goal: ≤ 2 ms added at p50.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use warren_domain::{BudgetLimits, BudgetScope, Spend};
use warren_gateway::{GatewayConfig, ModelPrice, ScopeBudget};
use warren_model_script::Scenario;

const WARMUP: usize = 200;
const GATEWAY_HOST: &str = "127.0.0.1:4096";
const ROUNDS: usize = 2000;
const BODY: &str = r#"{"model":"scripted","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"say something short"}]}"#;

/// An agent's request is mostly its conversation and tool schemas: this one carries 64 KiB.
fn large_body() -> Bytes {
    let filler = "x".repeat(64 * 1024);
    Bytes::from(format!(
        r#"{{"model":"scripted","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    ))
}

async fn call(sender: &mut SendRequest<Full<Bytes>>, host: &str, body: &Bytes) -> Duration {
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    sender
        .ready()
        .await
        .expect("the connection was closed: no keep-alive");
    let started = Instant::now();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    assert!(body.ends_with(b"data: [DONE]\n\n"), "{body:?}");
    elapsed
}

async fn handshake<S>(stream: S) -> SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(name: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name:<28} p50 {p50:>7.3} ms   p90 {:>7.3} ms   p99 {:>7.3} ms   ({} calls)",
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples.len()
    );
    p50
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let scenario = Scenario::from_json_str(
        r#"{"models":["scripted"],"fallback":{"text":"a short answer of a few words","usage":{"prompt_tokens":120,"completion_tokens":8}}}"#,
    )
    .unwrap();
    let model = warren_model_script::start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = model.base_url();
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::new(dir.path().join("gw.sock"), base.clone());
    cfg.prices = HashMap::from([(
        "scripted".to_owned(),
        ModelPrice {
            input: 2.5,
            output: 10.0,
        },
    )]);
    let mut gateway = warren_gateway::start(cfg).await.unwrap();
    gateway.set_budget(vec![ScopeBudget {
        scope: BudgetScope::Sandbox,
        limits: BudgetLimits {
            tokens: Some(u64::MAX / 2),
            cost: Some(1e12),
            ..Default::default()
        },
        spent: Spend::default(),
    }]);
    // The engine reads the gateway's records as they come; so does the bench.
    let mut notices = gateway.take_notices();
    tokio::spawn(async move { while notices.recv().await.is_some() {} });

    let mut direct = handshake(tokio::net::TcpStream::connect(&addr).await.unwrap()).await;
    let mut through = handshake(
        tokio::net::UnixStream::connect(gateway.socket_path())
            .await
            .unwrap(),
    )
    .await;

    let small = Bytes::from_static(BODY.as_bytes());
    let large = large_body();
    for (what, body) in [("a short request", &small), ("a 64 KiB request", &large)] {
        for _ in 0..WARMUP {
            call(&mut direct, &addr, body).await;
            call(&mut through, GATEWAY_HOST, body).await;
        }
        let (mut d, mut g) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
        for i in 0..ROUNDS {
            // Alternate which goes first so neither always runs on a warmer cache.
            if i % 2 == 0 {
                d.push(call(&mut direct, &addr, body).await);
                g.push(call(&mut through, GATEWAY_HOST, body).await);
            } else {
                g.push(call(&mut through, GATEWAY_HOST, body).await);
                d.push(call(&mut direct, &addr, body).await);
            }
        }
        println!("gateway latency: {what}, streamed answer with usage, {ROUNDS} calls each");
        let base_p50 = summary("direct to the model (TCP)", d.clone());
        let gw_p50 = summary("through the gateway (Unix)", g.clone());
        let mut added: Vec<Duration> = g
            .iter()
            .zip(&d)
            .map(|(g, d)| g.saturating_sub(*d))
            .collect();
        added.sort();
        println!(
            "added by the gateway: {:.3} ms (difference of p50s), pairwise p50 {:.3} ms; goal <= 2 ms at p50: {}\n",
            gw_p50 - base_p50,
            percentile(&added, 0.5),
            if gw_p50 - base_p50 <= 2.0 {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    gateway.shutdown().await;
    drop(model);
}

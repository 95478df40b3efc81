//! Budgets at the gateway: answers are costed from the price table and charged; the call after a
//! budget is spent is refused with a 400 (which OpenCode does not retry) and never reaches the
//! upstream; 80% of a budget is noticed once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::*;
use warren_domain::{BudgetKind, BudgetLimits, BudgetScope, Spend};
use warren_gateway::{GatewayConfig, GatewayNotice, ModelPrice, ScopeBudget};

/// Every answer reports 1000 input and 100 output tokens.
fn upstream(log: Log) -> Router {
    Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(Seen {
                    method: "POST".into(),
                    target: "/v1/chat/completions".into(),
                    headers: Default::default(),
                    body,
                });
                axum::Json(serde_json::json!({
                    "choices": [{ "message": { "role": "assistant", "content": "ok" } }],
                    "usage": { "prompt_tokens": 1000, "completion_tokens": 100 },
                }))
            }
        }),
    )
}

async fn gateway(limits: BudgetLimits, spent: Spend) -> (Fixture, Log) {
    let log = Log::default();
    let addr = spawn_upstream(upstream(log.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::new(dir.path().join("gw.sock"), format!("http://{addr}/v1"));
    // $2 per million in, $10 per million out: one answer costs $0.003.
    cfg.prices = HashMap::from([(
        "m".to_owned(),
        ModelPrice {
            input: 2.0,
            output: 10.0,
        },
    )]);
    let gateway = warren_gateway::start(cfg).await.unwrap();
    gateway.set_budget(vec![ScopeBudget {
        scope: BudgetScope::Sandbox,
        limits,
        spent,
    }]);
    (Fixture { dir, gateway }, log)
}

const CALL: &str = r#"{"model":"m","messages":[]}"#;

async fn call(fx: &Fixture) -> (u16, serde_json::Value) {
    let resp = send(&fx.socket(), request("POST", "/v1/chat/completions", CALL)).await;
    let status = resp.status().as_u16();
    (status, body_json(resp).await)
}

#[tokio::test]
async fn the_call_after_the_money_runs_out_is_refused_and_never_forwarded() {
    // $0.01 allows three answers ($0.009); the fourth crosses it, the fifth is refused.
    let (mut fx, log) = gateway(
        BudgetLimits {
            cost: Some(0.01),
            ..Default::default()
        },
        Spend::default(),
    )
    .await;
    let mut warnings = Vec::new();
    for n in 1..=4 {
        let (status, _) = call(&fx).await;
        assert_eq!(status, 200, "call {n}");
        let record = fx.next_record().await;
        assert!(
            (record.cost_usd.unwrap() - 0.003).abs() < 1e-12,
            "{record:?}"
        );
        while let Ok(notice) = fx.gateway.notices().try_recv() {
            warnings.push((n, notice));
        }
    }
    // The warning came with the third answer ($0.009 of $0.01), once.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (n, GatewayNotice::BudgetWarning(line)) = &warnings[0] else {
        panic!("{warnings:?}")
    };
    assert_eq!(
        (*n, line.budget, line.scope),
        (3, BudgetKind::Cost, BudgetScope::Sandbox)
    );

    let (status, body) = call(&fx).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "budget_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sandbox budget for cost is spent"),
        "{message}"
    );
    // No figure reaches the agent: OpenCode would read one as a retryable status number.
    assert!(
        !body.to_string().bytes().any(|b| b.is_ascii_digit()),
        "{body}"
    );
    let GatewayNotice::BudgetExceeded(line) = fx.next_notice().await else {
        panic!("no budget notice")
    };
    assert_eq!(line.budget, BudgetKind::Cost);
    // The figures go to warren, not to the agent.
    assert!(
        (line.spent - 0.012).abs() < 1e-12 && (line.limit - 0.01).abs() < 1e-12,
        "{line:?}"
    );
    assert_eq!(
        log.lock().unwrap().len(),
        4,
        "the refused call reached the upstream"
    );
    assert!(fx.no_pending_notice(), "a refused call is not metered");
}

#[tokio::test]
async fn spend_from_earlier_runs_counts_and_a_raised_budget_lets_calls_through_again() {
    let spent = Spend {
        input_tokens: 1900,
        output_tokens: 0,
        ..Default::default()
    };
    let (mut fx, log) = gateway(
        BudgetLimits {
            tokens: Some(2000),
            ..Default::default()
        },
        spent,
    )
    .await;
    assert_eq!(call(&fx).await.0, 200);
    fx.next_record().await;
    assert_eq!(call(&fx).await.0, 400);
    assert_eq!(log.lock().unwrap().len(), 1);

    fx.gateway.set_budget(vec![ScopeBudget {
        scope: BudgetScope::Sandbox,
        limits: BudgetLimits {
            tokens: Some(10_000),
            ..Default::default()
        },
        spent: Spend {
            input_tokens: 2900,
            output_tokens: 100,
            ..Default::default()
        },
    }]);
    assert_eq!(call(&fx).await.0, 200);
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_time_budget_counts_from_when_it_was_set() {
    let (fx, log) = gateway(
        BudgetLimits {
            time: Some(1),
            ..Default::default()
        },
        Spend::default(),
    )
    .await;
    assert_eq!(call(&fx).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = call(&fx).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget for time")
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use time::macros::datetime;
use warren_domain::{
    AgentEvent, EventRecord, ReasonCode, RequestSource, SandboxId, SandboxName, SandboxState, Usage,
};
use warren_store::SandboxRecord;

use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn record() -> SandboxRecord {
    SandboxRecord {
        id: SandboxId::from_stored(ID),
        name: SandboxName::parse("fix-login").unwrap(),
        repo: PathBuf::from("/r"),
        provider: "local".into(),
        state: SandboxState::Completed,
        created_at: datetime!(2026-01-02 03:04:05 UTC),
        updated_at: datetime!(2026-01-02 03:04:05 UTC),
        state_changed_at: datetime!(2026-01-02 03:04:05 UTC),
        model: Some("p/m".into()),
        prompt: None,
        role: None,
        session_id: Some("ses_1".into()),
        workspace: None,
        sync: None,
        outcome: None,
        error: None,
        branch: None,
        usage: Usage::default(),
        changed_files: None,
        exported_at: None,
        destroyed_at: None,
    }
}

fn at(seq: u64, event: AgentEvent) -> EventRecord {
    EventRecord {
        seq,
        at: datetime!(2026-01-02 03:04:05 UTC),
        sandbox: "fix-login".into(),
        event,
    }
}

fn request(status: u16, tokens: (u64, u64), cost: Option<f64>, model: &str) -> AgentEvent {
    AgentEvent::ModelRequest {
        source: RequestSource::Agent,
        endpoint: "chat/completions".into(),
        model: Some(model.into()),
        status,
        input_tokens: (status < 400).then_some(tokens.0),
        output_tokens: (status < 400).then_some(tokens.1),
        latency_ms: 7,
        error: None,
        cost_usd: cost,
        session_id: Some("ses_1".into()),
    }
}

fn retrying() -> AgentEvent {
    AgentEvent::Retrying {
        attempt: 1,
        max_attempts: 3,
        reason_code: ReasonCode::RateLimited,
        message: "slow down".into(),
        delay_ms: 10,
    }
}

#[test]
fn the_trail_numbers_attempts_and_adds_up_and_the_trailers_say_the_same() {
    let events = vec![
        at(1, request(429, (0, 0), None, "m")),
        at(2, retrying()),
        at(3, request(200, (100, 10), Some(0.25), "m")),
        at(4, request(200, (50, 5), Some(0.5), "m2")),
        at(
            5,
            AgentEvent::Finished {
                success: true,
                error: None,
            },
        ),
        at(6, request(200, (1, 1), Some(0.25), "m")),
    ];
    let view = trail(&record(), &events);
    let attempts: Vec<u32> = view.requests.iter().map(|r| r.attempt).collect();
    // The retry made the second attempt; the next prompt starts again at 1.
    assert_eq!(attempts, vec![1, 2, 2, 1]);
    assert_eq!(view.totals.requests, 4);
    assert_eq!(view.totals.errors, 1);
    assert_eq!(
        (view.totals.input_tokens, view.totals.output_tokens),
        (151, 16)
    );
    assert!((view.totals.cost_usd - 1.0).abs() < 1e-12);

    let trailers = trailers(&record(), &events);
    assert_eq!(
        trailers,
        format!(
            "Warren-Sandbox: {ID} (fix-login)\nWarren-Session: ses_1\nWarren-Model: m\nWarren-Model: m2\nWarren-Tokens: 151 in, 16 out\nWarren-Cost: 1.000000 USD\n"
        )
    );
    let sandbox = trailers.lines().next().unwrap();
    assert_eq!(
        sandbox_id_of(sandbox.strip_prefix("Warren-Sandbox: ").unwrap()),
        Some(ID)
    );
    assert_eq!(sandbox_id_of("not-an-id (x)"), None);
}

#[test]
fn without_requests_or_prices_the_trailers_say_so() {
    let trailers = trailers(&record(), &[]);
    assert!(trailers.contains("Warren-Model: p/m\n"), "{trailers}");
    assert!(
        trailers.contains("Warren-Tokens: 0 in, 0 out\n"),
        "{trailers}"
    );
    assert!(trailers.contains("Warren-Cost: unknown"), "{trailers}");
}

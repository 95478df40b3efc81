#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::event::RequestSource;

#[test]
fn parses_every_key_and_refuses_bad_parts() {
    let limits = BudgetLimits::parse("tokens=200_000, cost=$2.5,requests=40,time=30m").unwrap();
    assert_eq!(limits.tokens, Some(200_000));
    assert_eq!(limits.cost, Some(2.5));
    assert_eq!(limits.requests, Some(40));
    assert_eq!(limits.time, Some(1800));
    let io = BudgetLimits::parse("input_tokens=5,output_tokens=6,time=90").unwrap();
    assert_eq!(
        (io.input_tokens, io.output_tokens, io.time),
        (Some(5), Some(6), Some(90))
    );
    assert_eq!(BudgetLimits::parse("time=2h").unwrap().time, Some(7200));

    for (bad, says) in [
        ("", "no budget"),
        ("tokens", "not KEY=VALUE"),
        ("tokens=lots", "not a whole number"),
        ("cost=-1", "not an amount"),
        ("cost=NaN", "not an amount"),
        ("time=3d", "not a duration"),
        ("money=3", "unknown budget `money`"),
    ] {
        let err = BudgetLimits::parse(bad).unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn an_overlay_replaces_only_what_it_sets() {
    let base = BudgetLimits::parse("tokens=10,cost=1").unwrap();
    let over = BudgetLimits::parse("cost=5,requests=3").unwrap();
    let merged = base.overlay(&over);
    assert_eq!(merged.tokens, Some(10));
    assert_eq!(merged.cost, Some(5.0));
    assert_eq!(merged.requests, Some(3));
}

fn request(source: RequestSource, input: u64, output: u64, cost: f64) -> AgentEvent {
    AgentEvent::ModelRequest {
        source,
        endpoint: "chat/completions".into(),
        model: Some("m".into()),
        status: 200,
        input_tokens: Some(input),
        output_tokens: Some(output),
        latency_ms: 3,
        error: None,
        cost_usd: Some(cost),
        session_id: None,
    }
}

fn at(secs: i64, event: AgentEvent) -> EventRecord {
    EventRecord {
        seq: 0,
        at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs),
        sandbox: "s".into(),
        event,
    }
}

#[test]
fn spend_adds_the_agents_requests_and_its_running_time() {
    let running = AgentEvent::StateChanged {
        state: SandboxState::Running,
        detail: None,
    };
    let completed = AgentEvent::StateChanged {
        state: SandboxState::Completed,
        detail: None,
    };
    let records = vec![
        at(10, running.clone()),
        at(12, request(RequestSource::Agent, 100, 10, 0.5)),
        at(13, request(RequestSource::Structurer, 1000, 1000, 9.0)),
        at(15, completed),
        at(100, running),
        at(101, request(RequestSource::Agent, 1, 2, 0.25)),
    ];
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(103);
    let spend = Spend::from_records(&records, now);
    assert_eq!(spend.requests, 2);
    assert_eq!((spend.input_tokens, spend.output_tokens), (101, 12));
    assert!((spend.cost - 0.75).abs() < 1e-9);
    // 5 s of the first run, 3 s of the one still going.
    assert_eq!(spend.time_ms, 8000);

    let limits = BudgetLimits::parse("tokens=150,cost=1,requests=2").unwrap();
    let lines = BudgetLine::all(BudgetScope::Sandbox, &limits, &spend);
    assert_eq!(lines.len(), 3);
    let tokens = lines
        .iter()
        .find(|l| l.budget == BudgetKind::Tokens)
        .unwrap();
    assert!(!tokens.exhausted() && !tokens.near(), "{tokens:?}");
    let cost = lines.iter().find(|l| l.budget == BudgetKind::Cost).unwrap();
    assert!(!cost.exhausted() && !cost.near());
    let requests = lines
        .iter()
        .find(|l| l.budget == BudgetKind::Requests)
        .unwrap();
    assert!(requests.exhausted());
    assert_eq!(
        requests.describe(),
        "the sandbox budget for requests is spent: 2 requests used of 2 requests"
    );
}

/// Budget events are flattened into a record beside its `seq`, `at` and `sandbox`: none of their
/// fields may take one of those names, or the record would not read back.
#[test]
fn budget_events_read_back_as_records() {
    let limits = BudgetLimits::parse("tokens=10,cost=1").unwrap();
    let owner = OwnerBudget {
        owner: "alice".into(),
        limits,
        spent: Spend::default(),
    };
    for event in [
        AgentEvent::Budget {
            run_limits: Box::new(limits),
            sandbox_limits: Box::new(limits),
            given: Some(Box::new(limits)),
            owner: Some(Box::new(owner)),
        },
        AgentEvent::BudgetWarning {
            scope: BudgetScope::Owner,
            budget: BudgetKind::Cost,
            spent: 0.8,
            limit: 1.0,
        },
        AgentEvent::BudgetExceeded {
            scope: BudgetScope::Run,
            budget: BudgetKind::Tokens,
            spent: 12.0,
            limit: 10.0,
        },
    ] {
        let record = at(4, event);
        let json = serde_json::to_string(&record).unwrap();
        let back: EventRecord =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(back, record);
    }
}

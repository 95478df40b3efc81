//! The event stream: `seq` from 1 per sandbox, every event shape round-trips, and readers can
//! resume from any point. Concurrent appenders are in `races`.

use warren_domain::{AgentEvent, ErrorInfo, ReasonCode, SandboxState, Usage};

use super::{Factory, new_sandbox, open};

pub fn append_assigns_seq_from_one_and_records_the_name(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("stream")).unwrap();
    let first = store
        .append_event(
            &rec.id,
            &AgentEvent::Text {
                text: "hello".into(),
            },
        )
        .unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.sandbox, "stream");
    let second = store
        .append_event(
            &rec.id,
            &AgentEvent::StepFinish {
                reason: "stop".into(),
                usage: Usage::default(),
            },
        )
        .unwrap();
    assert_eq!(second.seq, 2);
    assert_eq!(store.events(&rec.id, 0, None).unwrap(), vec![first, second]);
}

pub fn sequences_are_per_sandbox(f: &dyn Factory) {
    let store = open(f);
    let a = store.create_sandbox(new_sandbox("a")).unwrap();
    let b = store.create_sandbox(new_sandbox("b")).unwrap();
    let ev = AgentEvent::Gateway {
        message: "x".into(),
    };
    assert_eq!(store.append_event(&a.id, &ev).unwrap().seq, 1);
    assert_eq!(store.append_event(&b.id, &ev).unwrap().seq, 1);
    assert_eq!(store.append_event(&a.id, &ev).unwrap().seq, 2);
    assert!(store.events(&b.id, 1, None).unwrap().is_empty());
}

pub fn events_round_trip_every_shape(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("shapes")).unwrap();
    let events = vec![
        AgentEvent::StateChanged {
            state: SandboxState::Running,
            detail: Some("started".into()),
        },
        AgentEvent::Unknown {
            raw: serde_json::json!({"type": "future", "x": [1, 2]}),
        },
        AgentEvent::Finished {
            success: false,
            error: Some(ErrorInfo::new(ReasonCode::Timeout, "ran too long")),
        },
    ];
    for ev in &events {
        store.append_event(&rec.id, ev).unwrap();
    }
    let back: Vec<_> = store
        .events(&rec.id, 0, None)
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(back, events);
}

pub fn events_resume_from_any_seq(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("resume")).unwrap();
    for i in 0..20 {
        let ev = AgentEvent::Text {
            text: format!("{i}"),
        };
        store.append_event(&rec.id, &ev).unwrap();
    }
    let seqs = |since, limit| -> Vec<u64> {
        store
            .events(&rec.id, since, limit)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(seqs(0, None), (1..=20).collect::<Vec<_>>());
    assert_eq!(seqs(17, None), vec![18, 19, 20]);
    assert_eq!(seqs(5, Some(3)), vec![6, 7, 8]);
    assert_eq!(seqs(0, Some(0)), Vec::<u64>::new());
    assert!(seqs(20, None).is_empty());
    assert!(seqs(1000, Some(5)).is_empty());
    let all = store.events(&rec.id, 0, None).unwrap();
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
}

//! The event stream: sequence numbers stay gapless under concurrent writers in separate
//! connections, and readers can resume from any point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::new_sandbox;
use warren_domain::{AgentEvent, SandboxState, Usage};
use warren_store::Store;

#[test]
fn append_assigns_seq_from_one_and_records_the_name() {
    let (_dir, store) = common::file_store();
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

#[test]
fn sequences_are_per_sandbox() {
    let store = Store::open_in_memory().unwrap();
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

#[test]
fn concurrent_writers_on_one_file_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warren.db");
    let id = Store::open(&path)
        .unwrap()
        .create_sandbox(new_sandbox("busy"))
        .unwrap()
        .id;

    let threads: Vec<_> = (0..4)
        .map(|writer| {
            let path = path.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                (0..50)
                    .map(|i| {
                        let ev = AgentEvent::Text {
                            text: format!("{writer}:{i}"),
                        };
                        store.append_event(&id, &ev).unwrap().seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());

    let store = Store::open(&path).unwrap();
    let all = store.events(&id, 0, None).unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    assert!(
        all.windows(2).all(|w| w[0].at <= w[1].at),
        "time order follows seq order"
    );
    // Each writer's own events appear in the order it wrote them.
    for writer in 0..4 {
        let mine: Vec<String> = all
            .iter()
            .filter_map(|r| match &r.event {
                AgentEvent::Text { text } if text.starts_with(&format!("{writer}:")) => {
                    Some(text.clone())
                }
                _ => None,
            })
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("{writer}:{i}")).collect();
        assert_eq!(mine, expected);
    }

    let tail = store.events(&id, 190, None).unwrap();
    assert_eq!(
        tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (191..=200).collect::<Vec<_>>()
    );
    let page = store.events(&id, 100, Some(3)).unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![101, 102, 103]
    );
    assert!(store.events(&id, 200, None).unwrap().is_empty());
}

#[test]
fn concurrent_first_opens_of_a_fresh_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh").join("warren.db");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                let rec = store
                    .create_sandbox(new_sandbox(&format!("open-{i}")))
                    .unwrap();
                store
                    .transition(&rec.id, SandboxState::Provisioning, None)
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(Store::open(&path).unwrap().list(false).unwrap().len(), 8);
}

#[test]
fn events_round_trip_every_shape() {
    let store = Store::open_in_memory().unwrap();
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
            error: Some(warren_domain::ErrorInfo::new(
                warren_domain::ReasonCode::Timeout,
                "ran too long",
            )),
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

//! The store enforces the lifecycle table and logs every change it allows.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use warren_domain::lifecycle::ALL_STATES;
use warren_domain::{ReasonCode, SandboxState, UserFacing};

use super::{Factory, new_sandbox, open};
use crate::StoreError;

pub fn a_full_lifecycle_is_recorded_in_order(f: &dyn Factory) {
    use SandboxState::*;
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("chain")).unwrap();
    let chain = [Provisioning, Running, Completed, TearingDown, Destroyed];
    let mut previous = rec.clone();
    for to in chain {
        let next = store.transition(&rec.id, to, Some("step")).unwrap();
        assert_eq!(next.state, to);
        assert!(next.state_changed_at >= previous.state_changed_at);
        assert_eq!(next.updated_at, next.state_changed_at);
        previous = next;
    }
    assert!(previous.destroyed_at.is_some());

    let log = store.transitions(&rec.id).unwrap();
    let edges: Vec<_> = log.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        edges,
        vec![
            (New, Provisioning),
            (Provisioning, Running),
            (Running, Completed),
            (Completed, TearingDown),
            (TearingDown, Destroyed),
        ]
    );
    assert_eq!(
        log.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(log.iter().all(|t| t.reason.as_deref() == Some("step")));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
}

pub fn an_invalid_transition_is_refused_and_changes_nothing(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("skip")).unwrap();
    let err = store
        .transition(&rec.id, SandboxState::Completed, None)
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: SandboxState::New,
            to: SandboxState::Completed
        }
    ));
    assert_eq!(err.reason_code(), ReasonCode::InvalidTransition);
    assert_eq!(
        err.to_error_info().reason_code.as_str(),
        "invalid_transition"
    );
    assert_eq!(store.get(&rec.id).unwrap(), rec);
    assert!(store.transitions(&rec.id).unwrap().is_empty());
}

pub fn destroyed_is_final(f: &dyn Factory) {
    let store = open(f);
    let rec = store.create_sandbox(new_sandbox("final")).unwrap();
    store
        .transition(&rec.id, SandboxState::TearingDown, None)
        .unwrap();
    store
        .transition(&rec.id, SandboxState::Destroyed, None)
        .unwrap();
    for to in ALL_STATES {
        let err = store.transition(&rec.id, to, None).unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition { .. }), "{to}");
    }
}

/// Random walks through the table: the stored state always follows it, and the log is exactly
/// the connected walk of accepted changes.
pub fn stored_state_follows_the_table(f: &dyn Factory) {
    let mut runner = TestRunner::new(Config::with_cases(64));
    let walks = proptest::collection::vec(0usize..ALL_STATES.len(), 0..24);
    let result = runner.run(&walks, |targets| {
        let store = open(f);
        let rec = store.create_sandbox(new_sandbox("walk")).unwrap();
        let mut expected = SandboxState::New;
        let mut accepted = 0usize;
        for t in targets {
            let to = ALL_STATES[t];
            let result = store.transition(&rec.id, to, None);
            match expected.transition(to) {
                Ok(next) => {
                    prop_assert_eq!(result.unwrap().state, next);
                    expected = next;
                    accepted += 1;
                }
                Err(_) => {
                    let is_invalid = matches!(result, Err(StoreError::InvalidTransition { .. }));
                    prop_assert!(is_invalid);
                }
            }
            prop_assert_eq!(store.get(&rec.id).unwrap().state, expected);
        }
        let log = store.transitions(&rec.id).unwrap();
        prop_assert_eq!(log.len(), accepted);
        let mut at = SandboxState::New;
        for row in log {
            prop_assert!(
                row.from.can_transition_to(row.to),
                "{} -> {}",
                row.from,
                row.to
            );
            prop_assert_eq!(row.from, at, "the log is a connected walk");
            at = row.to;
        }
        prop_assert_eq!(at, expected);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

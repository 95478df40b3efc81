//! What a server keeps beside the state ([`crate::TenancyStore`]): tokens are created once,
//! found by id, listed oldest first and revoked once; a sandbox's owner is set once and kept;
//! and the owners map agrees with the owners. Plus the reconciler's lead, which a handle keeps
//! while it asks again and gives up when it resigns.

use warren_domain::SandboxId;

use super::{Factory, open, sandbox};

pub fn tokens_are_created_found_listed_and_revoked_once(f: &dyn Factory) {
    let opened = open(f);
    let tenancy = opened.tenancy();
    let made = tenancy
        .create_token("t-alice", "alice", false, "ff00")
        .unwrap();
    assert_eq!(
        (
            made.id.as_str(),
            made.owner.as_str(),
            made.admin,
            made.hash.as_str()
        ),
        ("t-alice", "alice", false, "ff00")
    );
    assert_eq!(made.revoked_at, None);
    tenancy
        .create_token("t-root", "root", true, "00ff")
        .unwrap();
    assert!(
        tenancy
            .create_token("t-alice", "mallory", true, "aa")
            .is_err(),
        "token ids are unique"
    );

    let listed: Vec<_> = tenancy
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, ["t-alice", "t-root"], "oldest first");
    assert_eq!(tenancy.token("t-alice").unwrap(), Some(made.clone()));
    assert_eq!(tenancy.token("t-none").unwrap(), None);

    assert!(tenancy.revoke_token("t-alice").unwrap());
    assert!(!tenancy.revoke_token("t-alice").unwrap(), "revoked once");
    assert!(!tenancy.revoke_token("t-none").unwrap());
    let revoked = tenancy.token("t-alice").unwrap().unwrap();
    assert!(revoked.revoked_at.is_some_and(|at| at >= made.created_at));
    assert_eq!(
        tenancy.token("t-root").unwrap().unwrap().revoked_at,
        None,
        "only the one revoked"
    );
}

pub fn a_sandboxs_owner_is_set_once_and_kept(f: &dyn Factory) {
    let opened = open(f);
    let tenancy = opened.tenancy();
    let owned = sandbox(&*opened, "owned");
    let unowned = sandbox(&*opened, "unowned");
    assert_eq!(tenancy.owner(&owned).unwrap(), None);
    tenancy.set_owner(&owned, "alice").unwrap();
    tenancy.set_owner(&owned, "bob").unwrap();
    assert_eq!(tenancy.owner(&owned).unwrap().as_deref(), Some("alice"));
    assert!(
        tenancy.set_owner(&SandboxId::new(), "x").is_err(),
        "an unknown sandbox"
    );
    assert!(tenancy.owner(&SandboxId::new()).is_err());

    let owners = tenancy.owners().unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        owners.get(owned.as_str()).map(String::as_str),
        Some("alice")
    );
    assert!(!owners.contains_key(unowned.as_str()));
}

pub fn the_reconcilers_lead_is_kept_while_asked_and_free_after_resigning(f: &dyn Factory) {
    let opened = open(f);
    let first = opened.second();
    assert!(first.try_lead_reconciler().unwrap());
    assert!(
        first.try_lead_reconciler().unwrap(),
        "asking again keeps it"
    );
    first.resign_reconciler().unwrap();
    let next = opened.second();
    assert!(
        next.try_lead_reconciler().unwrap(),
        "a resigned lead is free for another handle"
    );
    next.resign_reconciler().unwrap();
}

pub fn a_page_filters_by_owner_and_state_and_resumes_after_its_cursor(f: &dyn Factory) {
    use crate::{PageQuery, StoreError};
    use warren_domain::SandboxState;

    let opened = open(f);
    let tenancy = opened.tenancy();
    // Oldest first: a0 b0 a1 b1 a2 a3 (a = alice's, b = bob's), then one unowned and one
    // destroyed of alice's.
    let mut alice = Vec::new();
    for (i, owner) in ["alice", "bob", "alice", "bob", "alice", "alice"]
        .iter()
        .enumerate()
    {
        let id = sandbox(&*opened, &format!("page-{i}"));
        tenancy.set_owner(&id, owner).unwrap();
        if *owner == "alice" {
            alice.push(id);
        }
    }
    let unowned = sandbox(&*opened, "page-unowned");
    let gone = sandbox(&*opened, "page-gone");
    tenancy.set_owner(&gone, "alice").unwrap();
    for to in [SandboxState::TearingDown, SandboxState::Destroyed] {
        opened.transition(&gone, to, None).unwrap();
    }
    opened
        .transition(&alice[1], SandboxState::Queued, None)
        .unwrap();
    alice.reverse(); // newest first
    let ids = |page: &crate::SandboxPage| -> Vec<SandboxId> {
        page.records.iter().map(|r| r.id.clone()).collect()
    };

    let first = tenancy
        .sandbox_page(&PageQuery {
            owner: Some("alice".into()),
            limit: 3,
            ..PageQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&first), alice[..3], "newest first, alice's only");
    assert!(first.more);
    let rest = tenancy
        .sandbox_page(&PageQuery {
            owner: Some("alice".into()),
            after: first.records.last().map(|r| r.id.clone()),
            limit: 3,
            ..PageQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&rest), alice[3..], "no gap, no repeat");
    assert!(!rest.more);

    let everything = tenancy
        .sandbox_page(&PageQuery {
            include_destroyed: true,
            limit: 100,
            ..PageQuery::default()
        })
        .unwrap();
    assert_eq!(everything.records.len(), 8, "an admin's list has all");
    assert_eq!(everything.records[0].id, gone);
    assert_eq!(everything.records[1].id, unowned);
    let listed: Vec<_> = opened
        .list(true)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids(&everything), listed, "the order of `list`");

    let queued = tenancy
        .sandbox_page(&PageQuery {
            owner: Some("alice".into()),
            state: Some(SandboxState::Queued),
            limit: 10,
            ..PageQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&queued), [alice[2].clone()]);
    assert!(matches!(
        tenancy.sandbox_page(&PageQuery {
            after: Some(SandboxId::new()),
            limit: 10,
            ..PageQuery::default()
        }),
        Err(StoreError::NotFound { .. })
    ));
}

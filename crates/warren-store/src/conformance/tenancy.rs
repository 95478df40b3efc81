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

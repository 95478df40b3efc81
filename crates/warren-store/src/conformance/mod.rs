//! The conformance suite: the behaviour every [`StateStore`] must show, written once as generic
//! cases over a [`Factory`], so the SQLite store and any later implementation (PostgreSQL) run
//! the very same tests. Enabled by the `conformance` feature; an implementation's crate takes
//! `warren-store = { features = ["conformance"] }` as a dev-dependency and writes
//!
//! ```ignore
//! struct MyFactory;
//! impl warren_store::conformance::Factory for MyFactory { /* ... */ }
//! warren_store::conformance_tests!(MyFactory);
//! ```
//!
//! which expands to one `#[test]` per case, named after the case. [`run_all`] runs every case in
//! one go instead.
//!
//! Several cases race two handles on the same store from two threads at the worst moment (two
//! acquirers of one lease, two transitions out of one state, concurrent event appenders), as two
//! processes or two server replicas would.

mod events;
mod leases;
mod liveness;
mod pools;
mod races;
mod reconciler;
mod sandboxes;
mod tenancy;
mod transitions;

pub use events::*;
pub use leases::*;
pub use liveness::*;
pub use pools::*;
pub use races::*;
pub use reconciler::*;
pub use sandboxes::*;
pub use tenancy::*;
pub use transitions::*;

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use warren_domain::{SandboxId, SandboxName};

use crate::{LeaseHolder, Liveness, NewSandbox, ProcessLiveness, StateStore, TenancyStore};

/// How the suite gets stores from an implementation.
pub trait Factory: Sync {
    /// A fresh, empty store whose holders are judged by `liveness`. Panics if it cannot (this
    /// is test code: the panic is the failure).
    fn open(&self, liveness: Arc<dyn Liveness>) -> Box<dyn Harness>;
}

/// One store opened by a [`Factory`], and whatever keeps it alive (a temp dir, a database).
pub trait Harness: Send + Sync {
    /// The handle the cases mostly use; the same one on every call.
    fn store(&self) -> Arc<dyn StateStore>;

    /// Another, independent handle on the same store (a new connection), as a second process or
    /// server replica would open it; a new one on every call. `None` if the store cannot have
    /// two (a private in-memory database): racing cases then share [`Harness::store`] between
    /// threads instead.
    fn second_handle(&self) -> Option<Arc<dyn StateStore>>;

    /// The tokens and owners of the same store ([`TenancyStore`]), usually the same object as
    /// [`Harness::store`].
    fn tenancy(&self) -> Arc<dyn TenancyStore>;
}

/// One case of the suite: it opens the stores it needs from the factory and panics on failure.
pub type Case = fn(&dyn Factory);

/// Every case of the suite, by name.
pub const CASES: &[(&str, Case)] = crate::__conformance_cases!(__conformance_table[]);

/// Runs every case against `factory`, in order; the first failure panics naming its case.
pub fn run_all(factory: &dyn Factory) {
    for (name, case) in CASES {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(factory)));
        if let Err(panic) = outcome {
            eprintln!("conformance case {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Expands to one `#[test]` per conformance case, each running the case against `$factory` (an
/// expression of a type implementing [`Factory`]). Invoke it once per module; the tests take the
/// cases' names.
///
/// `conformance_tests!(MyFactory, when = expr)` runs each case only if the `bool` expression
/// `expr` is true when the test starts, and returns (passes) otherwise: for a store that needs
/// a server the machine may lack (the expression prints why it skips, and should fail outright
/// where skipping is not acceptable, such as on CI).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr, when = $ready:expr) => {
        $crate::__conformance_cases!(__conformance_test_fns[$factory, when = $ready]);
    };
    ($factory:expr) => {
        $crate::__conformance_cases!(__conformance_test_fns[$factory]);
    };
}

/// The one list of cases, handed to `$callback` after `[$args]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($callback:ident [$($args:tt)*]) => {
        $crate::$callback! {[$($args)*]
            a_new_sandbox_is_found_by_id_and_name_and_listed,
            unknown_sandboxes_are_not_found,
            a_live_name_is_refused_and_a_destroyed_one_reused,
            usage_accumulates,
            descriptive_columns_round_trip,
            records_serialise_for_json_output,
            a_full_lifecycle_is_recorded_in_order,
            an_invalid_transition_is_refused_and_changes_nothing,
            destroyed_is_final,
            stored_state_follows_the_table,
            append_assigns_seq_from_one_and_records_the_name,
            sequences_are_per_sandbox,
            events_round_trip_every_shape,
            events_resume_from_any_seq,
            a_live_holder_excludes_others_until_it_releases,
            the_same_holder_reacquires_with_the_new_operation,
            an_expired_lease_is_taken_over,
            a_dead_holder_is_taken_over_before_its_lease_expires,
            only_the_holder_renews,
            expire_dead_leases_removes_only_expired_and_dead_ones,
            one_slot_serves_waiters_in_the_order_they_asked,
            two_slots_admit_two_and_queue_the_third,
            with_several_slots_free_the_first_waiters_may_take_them_in_any_order,
            a_dead_holder_frees_its_slot,
            a_dead_waiter_does_not_block_the_queue,
            asking_again_keeps_the_place_and_the_slot,
            pools_are_independent_and_zero_means_one,
            a_pool_with_an_unknown_sandbox_is_not_found,
            the_store_asks_its_liveness_policy,
            ttl_a_lease_whose_pid_died_is_held_until_it_expires,
            ttl_an_expired_lease_is_not_held_even_if_its_process_runs,
            ttl_a_pool_entry_lives_as_long_as_its_holders_lease,
            two_handles_racing_for_one_lease_exactly_one_wins,
            two_transitions_racing_out_of_one_state_exactly_one_wins,
            concurrent_appenders_get_gapless_distinct_seqs,
            concurrent_usage_adds_are_not_lost,
            mark_lost_moves_an_unsupervised_sandbox_to_error_once,
            mark_lost_leaves_a_supervised_or_moved_sandbox_alone,
            a_supervisor_taking_up_a_sandbox_races_the_reconciler_and_one_wins,
            tokens_are_created_found_listed_and_revoked_once,
            a_sandboxs_owner_is_set_once_and_kept,
            the_reconcilers_lead_is_kept_while_asked_and_free_after_resigning,
            a_page_filters_by_owner_and_state_and_resumes_after_its_cursor,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ([$factory:expr, when = $ready:expr] $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $ready {
                    $crate::conformance::$case(&$factory);
                }
            }
        )*
    };
    ([$factory:expr] $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$factory);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_table {
    ([] $($case:ident),* $(,)?) => {
        &[$((stringify!($case), $crate::conformance::$case as $crate::conformance::Case)),*]
    };
}

/// A store opened for one case: derefs to the store; keeps the harness alive.
pub(crate) struct Opened {
    // Dropped before the harness that owns its files.
    store: Arc<dyn StateStore>,
    harness: Box<dyn Harness>,
}

impl Deref for Opened {
    type Target = dyn StateStore;

    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

impl Opened {
    /// A handle for another thread: a second connection where the store can have one.
    pub(crate) fn second(&self) -> Arc<dyn StateStore> {
        self.harness
            .second_handle()
            .unwrap_or_else(|| Arc::clone(&self.store))
    }

    pub(crate) fn tenancy(&self) -> Arc<dyn TenancyStore> {
        self.harness.tenancy()
    }
}

/// A fresh store judged by [`ProcessLiveness`], the policy the cases were first written for.
pub(crate) fn open(factory: &dyn Factory) -> Opened {
    open_with(factory, Arc::new(ProcessLiveness))
}

pub(crate) fn open_with(factory: &dyn Factory, liveness: Arc<dyn Liveness>) -> Opened {
    let harness = factory.open(liveness);
    Opened {
        store: harness.store(),
        harness,
    }
}

pub(crate) fn name(raw: &str) -> SandboxName {
    SandboxName::parse(raw).expect("a valid sandbox name")
}

pub(crate) fn new_sandbox(raw_name: &str) -> NewSandbox {
    NewSandbox {
        id: SandboxId::new(),
        name: name(raw_name),
        repo: PathBuf::from("/home/user/project"),
        provider: "local".into(),
        model: Some("anthropic/claude-sonnet".into()),
        prompt: Some("fix the login test".into()),
        role: None,
    }
}

pub(crate) fn sandbox(store: &dyn StateStore, name: &str) -> SandboxId {
    store
        .create_sandbox(new_sandbox(name))
        .expect("creating a sandbox")
        .id
}

/// A live holder that is not this process's own identity: same (running) process, other name.
pub(crate) fn other(name: &str) -> LeaseHolder {
    LeaseHolder {
        name: name.into(),
        ..LeaseHolder::this_process()
    }
}

/// A holder whose process has exited and been reaped: certainly dead on this host.
pub(crate) fn dead(name: &str) -> LeaseHolder {
    LeaseHolder {
        name: name.into(),
        pid: dead_pid(),
        start_time: 1,
    }
}

/// The pid of a process that has exited and been reaped.
pub(crate) fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawning `true`");
    let pid = child.id();
    child.wait().expect("waiting for `true`");
    pid
}

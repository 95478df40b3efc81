//! Owners' daily budgets: the server knows who owns a sandbox (its token's owner), so it adds up
//! what that owner's sandboxes spent since 00:00 UTC and hands the engine the owner's
//! `[budget.owner]` limits with that figure; the gateway then enforces them like the others.

use time::{OffsetDateTime, Time};
use warren_config::Config;
use warren_domain::{OwnerBudget, SandboxId, Spend};
use warren_provider::Provider;

use crate::state::App;

/// `owner`'s daily budget and today's spend; `None` without `[budget.owner]` limits.
pub(crate) fn owner_budget<P: Provider + 'static>(
    app: &App<P>,
    owner: &str,
    config: &Config,
) -> Option<OwnerBudget> {
    if config.budget.owner.is_empty() {
        return None;
    }
    let now = OffsetDateTime::now_utc();
    let midnight = now.replace_time(Time::MIDNIGHT);
    let mut spent = Spend::default();
    match app.tenancy.owners() {
        Ok(owners) => {
            for (id, _) in owners.iter().filter(|(_, o)| o.as_str() == owner) {
                let id = SandboxId::from_stored(id.clone());
                match app.store.events(&id, 0, None) {
                    Ok(records) => {
                        let today: Vec<_> =
                            records.into_iter().filter(|r| r.at >= midnight).collect();
                        spent.add(&Spend::from_records(&today, now));
                    }
                    Err(e) => tracing::warn!("owner budget: cannot read {id}'s events: {e}"),
                }
            }
        }
        Err(e) => tracing::warn!("owner budget: cannot list owners: {e}"),
    }
    Some(OwnerBudget {
        owner: owner.to_owned(),
        limits: config.budget.owner,
        spent,
    })
}

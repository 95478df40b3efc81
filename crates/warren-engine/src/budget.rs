//! The budgets of one agent run: the run's own limits (config and role) and the sandbox's over
//! all its runs (config, or what `--budget` gave the sandbox, which later runs keep), with what
//! the sandbox had already spent as recorded. The gateway enforces them; this module decides
//! them and words the failure when one runs out.

use std::collections::HashMap;
use std::time::Duration;

use warren_config::Config;
use warren_domain::{
    AgentEvent, BudgetLimits, BudgetLine, BudgetScope, ErrorInfo, ReasonCode, SandboxId,
    SandboxName, Spend,
};
use warren_gateway::{ModelPrice, ScopeBudget};
use warren_store::StateStore;

use crate::resolve::Resolved;

#[derive(Debug, Clone, Default)]
pub(crate) struct RunBudget {
    pub run: BudgetLimits,
    pub sandbox: BudgetLimits,
    /// The `--budget` the sandbox was given (by this request or an earlier one).
    pub given: Option<BudgetLimits>,
    pub sandbox_spent: Spend,
    /// The owner's daily budget, for a server's job.
    pub owner: Option<warren_domain::OwnerBudget>,
}

impl RunBudget {
    /// `given` is this request's `--budget`; without one the sandbox keeps the last it was given.
    pub(crate) fn for_run(
        resolved: &Resolved,
        store: &dyn StateStore,
        id: &SandboxId,
        job: &crate::jobs::JobBudget,
    ) -> Self {
        let records = store.events(id, 0, None).unwrap_or_default();
        let given = job.given.or_else(|| {
            records.iter().rev().find_map(|r| match &r.event {
                AgentEvent::Budget { given, .. } => given.as_deref().copied(),
                _ => None,
            })
        });
        let sandbox = match &given {
            Some(given) => resolved.budget.sandbox.overlay(given),
            None => resolved.budget.sandbox,
        };
        Self {
            run: resolved.budget.run,
            sandbox,
            given,
            sandbox_spent: Spend::from_records(&records, time::OffsetDateTime::now_utc()),
            owner: job.owner.clone().filter(|o| !o.limits.is_empty()),
        }
    }

    pub(crate) fn event(&self) -> AgentEvent {
        AgentEvent::Budget {
            run_limits: Box::new(self.run),
            sandbox_limits: Box::new(self.sandbox),
            given: self.given.map(Box::new),
            owner: self.owner.clone().map(Box::new),
        }
    }

    /// What the gateway checks: the run from nothing, the sandbox from what it had spent.
    pub(crate) fn scopes(&self) -> Vec<ScopeBudget> {
        let mut scopes = Vec::new();
        if !self.run.is_empty() {
            scopes.push(ScopeBudget {
                scope: BudgetScope::Run,
                limits: self.run,
                spent: Spend::default(),
            });
        }
        if !self.sandbox.is_empty() {
            scopes.push(ScopeBudget {
                scope: BudgetScope::Sandbox,
                limits: self.sandbox,
                spent: self.sandbox_spent,
            });
        }
        if let Some(owner) = &self.owner {
            scopes.push(ScopeBudget {
                scope: BudgetScope::Owner,
                limits: owner.limits,
                spent: owner.spent,
            });
        }
        scopes
    }

    /// How long the agent may run before a time budget is spent, and that budget's line then.
    pub(crate) fn time_left(&self) -> Option<(Duration, BudgetLine)> {
        let run = self
            .run
            .time
            .map(|limit| (limit * 1000, 0, BudgetScope::Run));
        let sandbox = self.sandbox.time.map(|limit| {
            (
                limit * 1000,
                self.sandbox_spent.time_ms,
                BudgetScope::Sandbox,
            )
        });
        let owner = self.owner.as_ref().and_then(|o| {
            o.limits
                .time
                .map(|limit| (limit * 1000, o.spent.time_ms, BudgetScope::Owner))
        });
        [run, sandbox, owner]
            .into_iter()
            .flatten()
            .map(|(limit_ms, spent_ms, scope)| {
                let left = limit_ms.saturating_sub(spent_ms);
                #[expect(clippy::cast_precision_loss, reason = "seconds are far below 2^52")]
                let line = BudgetLine {
                    scope,
                    budget: warren_domain::BudgetKind::Time,
                    spent: limit_ms as f64 / 1000.0,
                    limit: limit_ms as f64 / 1000.0,
                };
                (Duration::from_millis(left), line)
            })
            .min_by_key(|(left, _)| *left)
    }
}

/// The resolved limits before any `--budget`: `[budget.run]` with the role's `budget` over it,
/// and `[budget.sandbox]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budgets {
    pub run: BudgetLimits,
    pub sandbox: BudgetLimits,
}

impl Budgets {
    pub(crate) fn resolve(config: &Config, role: Option<&warren_config::RoleConfig>) -> Self {
        let run = match role.and_then(|r| r.budget.as_ref()) {
            Some(over) => config.budget.run.overlay(over),
            None => config.budget.run,
        };
        Self {
            run,
            sandbox: config.budget.sandbox,
        }
    }
}

/// Model id as sent upstream → its price, for the models of the agent's endpoint.
pub(crate) fn prices(
    config: &Config,
    provider: &str,
    models: &[String],
) -> HashMap<String, ModelPrice> {
    models
        .iter()
        .filter_map(|model| {
            config.budget.price(provider, model).map(|p| {
                (
                    model.clone(),
                    ModelPrice {
                        input: p.input,
                        output: p.output,
                    },
                )
            })
        })
        .collect()
}

/// The sandbox's budget that is already spent, if one is: a follow-up prompt under it would be
/// refused at its first model call, so it is refused before anything starts. `given` is the
/// request's `--budget` (the sandbox keeps the last it was given otherwise).
pub(crate) fn already_spent(
    config: &Config,
    store: &dyn StateStore,
    id: &SandboxId,
    given: Option<BudgetLimits>,
) -> Option<BudgetLine> {
    let records = store.events(id, 0, None).ok()?;
    let given = given.or_else(|| {
        records.iter().rev().find_map(|r| match &r.event {
            AgentEvent::Budget { given, .. } => given.as_deref().copied(),
            _ => None,
        })
    });
    let limits = match &given {
        Some(given) => config.budget.sandbox.overlay(given),
        None => config.budget.sandbox,
    };
    let spent = Spend::from_records(&records, time::OffsetDateTime::now_utc());
    BudgetLine::all(BudgetScope::Sandbox, &limits, &spent)
        .into_iter()
        .find(BudgetLine::exhausted)
}

/// Spend against the budgets the last run started with (its `budget` event); `None` when that
/// run had none.
pub fn status(
    records: &[warren_domain::EventRecord],
    now: time::OffsetDateTime,
) -> Option<warren_api::BudgetStatusView> {
    let (at, run, sandbox, owner) = records.iter().enumerate().rev().find_map(|(i, r)| match &r
        .event
    {
        AgentEvent::Budget {
            run_limits: run,
            sandbox_limits: sandbox,
            owner,
            ..
        } => Some((i, **run, **sandbox, owner.clone())),
        _ => None,
    })?;
    if run.is_empty() && sandbox.is_empty() && owner.is_none() {
        return None;
    }
    let run_spent = Spend::from_records(&records[at..], now);
    let sandbox_spent = Spend::from_records(records, now);
    let mut lines = BudgetLine::all(BudgetScope::Run, &run, &run_spent);
    lines.extend(BudgetLine::all(
        BudgetScope::Sandbox,
        &sandbox,
        &sandbox_spent,
    ));
    if let Some(owner) = owner {
        // What the owner had spent when the run started, and this run since.
        let mut spent = owner.spent;
        spent.add(&run_spent);
        lines.extend(BudgetLine::all(BudgetScope::Owner, &owner.limits, &spent));
    }
    Some(warren_api::BudgetStatusView {
        lines,
        run: run_spent,
        sandbox: sandbox_spent,
    })
}

/// The run's failure when a budget ran out: which one, the figure, the limit, and how to go on,
/// which depends on the scope (`--budget` raises the sandbox's; a run's is fresh each prompt; an
/// owner's starts again each day).
pub(crate) fn exceeded(line: &BudgetLine, name: &SandboxName) -> ErrorInfo {
    let raised = line.limit * 2.0;
    let figure = match line.budget {
        warren_domain::BudgetKind::Cost => format!("{raised:.2}"),
        _ => format!("{raised:.0}"),
    };
    let key = line.budget.key();
    let hint = match line.scope {
        BudgetScope::Sandbox => format!(
            "raise it to go on in the same session: warren exec {name} --budget {key}={figure} \"continue\" (a one-shot run's work is on its branch: run again with a larger --budget)"
        ),
        BudgetScope::Run => format!(
            "each prompt gets this budget afresh ([budget.run], or the role's budget): warren exec {name} \"continue\" goes on in the same session, or raise budget.run.{key}"
        ),
        BudgetScope::Owner => format!(
            "the owner's daily budget (the server's [budget.owner]) starts again at 00:00 UTC; until then ask the server's operator to raise budget.owner.{key}"
        ),
    };
    ErrorInfo::new(
        ReasonCode::BudgetExceeded,
        format!(
            "{}; the agent was stopped and its work is kept",
            line.describe()
        ),
    )
    .with_hint(hint)
}

//! Budgets at the gateway: every metered answer is costed from the price table and charged to
//! the run's and the sandbox's budgets, and once one is spent the next model call is refused
//! before it reaches the upstream. The gateway is the only path to the model, so this holds
//! whatever the agent reports about itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use warren_domain::{BudgetKind, BudgetLimits, BudgetLine, BudgetScope, Spend};

use crate::meter::MeteredRequest;

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
}

impl ModelPrice {
    #[expect(
        clippy::cast_precision_loss,
        reason = "token counts are far below 2^52"
    )]
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input + output_tokens as f64 * self.output) / 1_000_000.0
    }
}

/// One scope's limits and what it had already spent when this gateway was given it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScopeBudget {
    pub scope: BudgetScope,
    pub limits: BudgetLimits,
    pub spent: Spend,
}

#[derive(Debug)]
struct Scope {
    budget: ScopeBudget,
    warned: HashSet<BudgetKind>,
}

/// The budgets in force and the price table; shared by every request of the gateway.
#[derive(Debug)]
pub(crate) struct Guard {
    prices: HashMap<String, ModelPrice>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    scopes: Vec<Scope>,
    /// When the current budgets were set: the run's clock.
    since: Instant,
}

impl Guard {
    pub(crate) fn new(prices: HashMap<String, ModelPrice>) -> Self {
        Self {
            prices,
            state: Mutex::new(State {
                scopes: Vec::new(),
                since: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set(&self, budgets: Vec<ScopeBudget>) {
        let mut state = self.lock();
        // A budget already past its warning share when it is set warns again only if raised.
        state.scopes = budgets
            .into_iter()
            .map(|budget| Scope {
                budget,
                warned: HashSet::new(),
            })
            .collect();
        state.since = Instant::now();
    }

    /// The cost of a metered answer, when its model has a price and it reported tokens.
    pub(crate) fn cost(&self, record: &MeteredRequest) -> Option<f64> {
        let model = record.model.as_deref()?;
        if record.input_tokens.is_none() && record.output_tokens.is_none() {
            return None;
        }
        let price = self.prices.get(model)?;
        Some(price.cost(
            record.input_tokens.unwrap_or(0),
            record.output_tokens.unwrap_or(0),
        ))
    }

    /// The first budget already spent: the request must not go upstream.
    pub(crate) fn refusal(&self) -> Option<BudgetLine> {
        let state = self.lock();
        let elapsed = millis(state.since);
        state.scopes.iter().find_map(|scope| {
            lines(&scope.budget, elapsed)
                .into_iter()
                .find(BudgetLine::exhausted)
        })
    }

    /// Charges one forwarded request; returns the budgets that just reached their warning share.
    pub(crate) fn charge(&self, record: &MeteredRequest) -> Vec<BudgetLine> {
        let mut state = self.lock();
        let elapsed = millis(state.since);
        let mut warnings = Vec::new();
        for scope in &mut state.scopes {
            let spent = &mut scope.budget.spent;
            spent.requests += 1;
            spent.input_tokens += record.input_tokens.unwrap_or(0);
            spent.output_tokens += record.output_tokens.unwrap_or(0);
            spent.cost += record.cost_usd.unwrap_or(0.0);
            for line in lines(&scope.budget, elapsed) {
                if line.near() && scope.warned.insert(line.budget) {
                    warnings.push(line);
                }
            }
        }
        warnings
    }
}

/// The scope's lines with the run's clock added to the time it had already spent.
fn lines(budget: &ScopeBudget, elapsed_ms: u64) -> Vec<BudgetLine> {
    let mut spent = budget.spent;
    spent.time_ms += elapsed_ms;
    BudgetLine::all(budget.scope, &budget.limits, &spent)
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

//! `[budget]`: what a run and a sandbox may spend on model traffic, and the price table that
//! turns metered tokens into money. The gateway enforces these; `--budget` (and the API's
//! `budget` field) replaces the sandbox's limits for one sandbox.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warren_domain::BudgetLimits;

use crate::layers::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Limits for each agent run (one prompt); a role's `budget` overrides them key by key.
    pub run: BudgetLimits,
    /// Limits for all runs of one sandbox together (`--budget` replaces them).
    pub sandbox: BudgetLimits,
    /// Limits for everything one owner's sandboxes run on one UTC day (`warren serve` only: an
    /// owner is an API token's owner).
    pub owner: BudgetLimits,
    /// Model id (as sent upstream, e.g. `gpt-4o`) or `provider/model` → its price.
    pub prices: BTreeMap<String, Price>,
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl BudgetConfig {
    /// The price of `provider`'s `model`: its `provider/model` entry, else its bare model id.
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        self.prices
            .get(&format!("{provider}/{model}"))
            .or_else(|| self.prices.get(model))
            .copied()
    }
}

pub(crate) fn check(
    config: &crate::Config,
    origin_of: &impl Fn(&str) -> String,
) -> Result<(), ConfigError> {
    for (model, price) in &config.budget.prices {
        for (side, figure) in [("input", price.input), ("output", price.output)] {
            if !figure.is_finite() || figure < 0.0 {
                let key = format!("budget.prices.{model}.{side}");
                return Err(ConfigError::Invalid {
                    origin: origin_of(&key),
                    message: format!("{key} = {figure} must be a price of zero or more"),
                    hint: Some("prices are US dollars per million tokens, e.g. input = 2.5".into()),
                });
            }
        }
    }
    let mut scopes = vec![
        ("budget.run".to_owned(), config.budget.run),
        ("budget.sandbox".to_owned(), config.budget.sandbox),
        ("budget.owner".to_owned(), config.budget.owner),
    ];
    for (name, role) in &config.roles {
        if let Some(limits) = role.budget {
            scopes.push((format!("roles.{name}.budget"), limits));
        }
    }
    for (key, limits) in scopes {
        if let Some(cost) = limits.cost
            && (!cost.is_finite() || cost < 0.0)
        {
            return Err(ConfigError::Invalid {
                origin: origin_of(&format!("{key}.cost")),
                message: format!("{key}.cost = {cost} must be an amount of zero or more"),
                hint: Some(format!(
                    "budgets count in US dollars, e.g. {key}.cost = 2.5"
                )),
            });
        }
    }
    Ok(())
}

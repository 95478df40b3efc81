//! Budgets: the limits a sandbox's model traffic must stay within (tokens, money, requests,
//! wall-clock time) and the spend measured against them. The gateway enforces them from what it
//! metered, the status view shows them, and `--budget` parses into them; all three use these
//! types so a budget means the same wherever it is read.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{AgentEvent, EventRecord};
use crate::lifecycle::SandboxState;

/// What a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// One agent run (one prompt: `run`, `launch`'s prompt, one `exec`).
    Run,
    /// Every run of the sandbox together.
    Sandbox,
    /// Every run of the sandbox's owner (a `warren serve` token's owner) on one UTC day.
    Owner,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Sandbox => "sandbox",
            Self::Owner => "owner",
        }
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// Input and output tokens together.
    Tokens,
    InputTokens,
    OutputTokens,
    /// Money in US dollars, from the price table.
    Cost,
    /// Model requests forwarded upstream.
    Requests,
    /// Wall-clock seconds the agent ran.
    Time,
}

impl BudgetKind {
    pub const ALL: [BudgetKind; 6] = [
        Self::Tokens,
        Self::InputTokens,
        Self::OutputTokens,
        Self::Cost,
        Self::Requests,
        Self::Time,
    ];

    /// The key in `--budget` and in `[budget.*]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::InputTokens => "input_tokens",
            Self::OutputTokens => "output_tokens",
            Self::Cost => "cost",
            Self::Requests => "requests",
            Self::Time => "time",
        }
    }

    /// A figure of this kind as a person reads it.
    pub fn show(self, figure: f64) -> String {
        match self {
            Self::Cost => format!("${figure:.4}"),
            Self::Time => format!("{figure:.0} s"),
            Self::Tokens | Self::InputTokens | Self::OutputTokens => format!("{figure:.0} tokens"),
            Self::Requests => format!("{figure:.0} requests"),
        }
    }
}

/// Limits of one scope; an unset limit does not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// US dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
}

impl BudgetLimits {
    pub fn is_empty(&self) -> bool {
        BudgetKind::ALL.iter().all(|k| self.limit(*k).is_none())
    }

    pub fn limit(&self, kind: BudgetKind) -> Option<f64> {
        #[expect(clippy::cast_precision_loss, reason = "budgets are far below 2^52")]
        let n = |v: Option<u64>| v.map(|v| v as f64);
        match kind {
            BudgetKind::Tokens => n(self.tokens),
            BudgetKind::InputTokens => n(self.input_tokens),
            BudgetKind::OutputTokens => n(self.output_tokens),
            BudgetKind::Cost => self.cost,
            BudgetKind::Requests => n(self.requests),
            BudgetKind::Time => n(self.time),
        }
    }

    /// `self` with every limit `over` sets replaced by its value.
    pub fn overlay(&self, over: &Self) -> Self {
        Self {
            tokens: over.tokens.or(self.tokens),
            input_tokens: over.input_tokens.or(self.input_tokens),
            output_tokens: over.output_tokens.or(self.output_tokens),
            cost: over.cost.or(self.cost),
            requests: over.requests.or(self.requests),
            time: over.time.or(self.time),
        }
    }

    /// Parses `tokens=200000,cost=2.5,requests=40,time=30m` (time takes `s`, `m` or `h`; plain
    /// seconds without). An error says which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut limits = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KEY=VALUE"))?;
            let (key, value) = (key.trim(), value.trim());
            let whole = |v: &str| {
                v.replace('_', "")
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: `{v}` is not a whole number"))
            };
            match key {
                "tokens" => limits.tokens = Some(whole(value)?),
                "input_tokens" => limits.input_tokens = Some(whole(value)?),
                "output_tokens" => limits.output_tokens = Some(whole(value)?),
                "requests" => limits.requests = Some(whole(value)?),
                "cost" => {
                    let v = value.trim_start_matches('$');
                    let cost: f64 = v
                        .parse()
                        .ok()
                        .filter(|c: &f64| c.is_finite() && *c >= 0.0)
                        .ok_or_else(|| format!("cost: `{value}` is not an amount in dollars"))?;
                    limits.cost = Some(cost);
                }
                "time" => limits.time = Some(parse_secs(value)?),
                other => {
                    return Err(format!(
                        "unknown budget `{other}` (known: tokens, input_tokens, output_tokens, cost, requests, time)"
                    ));
                }
            }
        }
        if limits.is_empty() {
            return Err("no budget given".into());
        }
        Ok(limits)
    }
}

fn parse_secs(value: &str) -> Result<u64, String> {
    let bad = || format!("time: `{value}` is not a duration such as 90, 90s, 30m or 2h");
    let (digits, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => value.split_at(i),
        None => (value, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

/// An owner's daily budget and what the owner's sandboxes had spent that day when a run started
/// (the server knows owners; the engine gets this with the job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OwnerBudget {
    pub owner: String,
    pub limits: BudgetLimits,
    pub spent: Spend,
}

/// What was spent, as the gateway metered it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spend {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars, from the price table (0 for a model without a price).
    pub cost: f64,
    pub requests: u64,
    /// Milliseconds the agent ran.
    pub time_ms: u64,
}

impl Spend {
    pub fn add(&mut self, other: &Spend) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost += other.cost;
        self.requests += other.requests;
        self.time_ms += other.time_ms;
    }

    #[expect(clippy::cast_precision_loss, reason = "spend is far below 2^52")]
    pub fn figure(&self, kind: BudgetKind) -> f64 {
        match kind {
            BudgetKind::Tokens => (self.input_tokens + self.output_tokens) as f64,
            BudgetKind::InputTokens => self.input_tokens as f64,
            BudgetKind::OutputTokens => self.output_tokens as f64,
            BudgetKind::Cost => self.cost,
            BudgetKind::Requests => self.requests as f64,
            BudgetKind::Time => self.time_ms as f64 / 1000.0,
        }
    }

    /// Counts one metered request: the agent's requests forwarded upstream (the structurer's
    /// are warren's own and not the agent's to spend).
    pub fn add_request(&mut self, event: &AgentEvent) {
        if let AgentEvent::ModelRequest {
            source: crate::event::RequestSource::Agent,
            input_tokens,
            output_tokens,
            cost_usd,
            ..
        } = event
        {
            self.requests += 1;
            self.input_tokens += input_tokens.unwrap_or(0);
            self.output_tokens += output_tokens.unwrap_or(0);
            self.cost += cost_usd.unwrap_or(0.0);
        }
    }

    /// The sandbox's spend from its recorded events: metered requests, and the time from each
    /// move to `running` to the next state change (a run still going counts up to `now`).
    pub fn from_records(records: &[EventRecord], now: time::OffsetDateTime) -> Self {
        let mut spend = Self::default();
        let mut running_since = None;
        for record in records {
            spend.add_request(&record.event);
            if let AgentEvent::StateChanged { state, .. } = &record.event {
                if let Some(since) = running_since.take() {
                    spend.time_ms += millis_between(since, record.at);
                }
                if *state == SandboxState::Running {
                    running_since = Some(record.at);
                }
            }
        }
        if let Some(since) = running_since {
            spend.time_ms += millis_between(since, now);
        }
        spend
    }
}

fn millis_between(from: time::OffsetDateTime, to: time::OffsetDateTime) -> u64 {
    u64::try_from((to - from).whole_milliseconds()).unwrap_or(0)
}

/// One budget against its spend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetLine {
    pub scope: BudgetScope,
    pub budget: BudgetKind,
    pub spent: f64,
    pub limit: f64,
}

impl BudgetLine {
    /// Every limit of `limits` that is set, with what `spend` used of it.
    pub fn all(scope: BudgetScope, limits: &BudgetLimits, spend: &Spend) -> Vec<Self> {
        BudgetKind::ALL
            .iter()
            .filter_map(|&budget| {
                limits.limit(budget).map(|limit| Self {
                    scope,
                    budget,
                    spent: spend.figure(budget),
                    limit,
                })
            })
            .collect()
    }

    pub fn exhausted(&self) -> bool {
        self.spent >= self.limit
    }

    /// At or past the share of the limit where warren warns.
    pub fn near(&self) -> bool {
        self.spent >= self.limit * WARN_SHARE
    }

    /// "the sandbox budget for tokens is spent: 1234 tokens used of 1000 tokens"
    pub fn describe(&self) -> String {
        format!(
            "the {} budget for {} is spent: {} used of {}",
            self.scope.as_str(),
            self.budget.key(),
            self.budget.show(self.spent),
            self.budget.show(self.limit)
        )
    }
}

/// The share of a budget at which a `budget_warning` event is recorded.
pub const WARN_SHARE: f64 = 0.8;

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;

//! A task: one prompt carried to an end. Around single agent runs it adds what makes the agent
//! dependable: waiting (visibly, in order) for a slot in the model backend's pool, bounded retries
//! with backoff for retryable model failures (fatal ones end at once), and, for roles that ask for
//! it, the outcome contract: parse the answer, else one structurer call, else stricter re-prompts
//! in the same session, else an ERROR outcome carrying the raw output.

use std::time::Duration;

use warren_agent::Limits;
use warren_agent::classify::{ClassifyPatterns, is_fatal, is_retryable_model_failure};
use warren_agent::contract::{
    ContractSpec, Outcome, OutcomeKind, StructurerRequest, call_structurer, instruction_block,
    parse_outcome,
};
use warren_config::Config;
use warren_domain::{
    AgentEvent, ErrorInfo, RequestSource, SandboxName, SandboxState, Usage, UserFacing,
};
use warren_gateway::GatewayConfig;
use warren_provider::Provider;
use warren_store::PoolTry;

use crate::agent::{AgentRequest, AgentResult, Host, record_metered, run_agent};
use crate::paths::SandboxDirs;
use crate::prepare::Prepared;
use crate::recorder::Recorder;
use crate::warm::WarmServer;

pub(crate) struct TaskRequest<'a> {
    pub name: &'a SandboxName,
    pub prompt: &'a str,
    pub session_id: Option<String>,
    /// `--budget` for the sandbox, when this request gave one, and the owner's.
    pub budget: crate::jobs::JobBudget,
}

// What a task produced, for the summary and the record: a protocol type.
pub use warren_api::TaskOutcome;

pub(crate) struct TaskResult {
    pub last: AgentResult,
    pub usage: Usage,
    pub outcome: TaskOutcome,
}

pub(crate) async fn run_task<P: Provider>(
    provider: &P,
    prepared: &Prepared,
    config: &Config,
    rec: &mut Recorder<'_>,
    dirs: &SandboxDirs,
    req: TaskRequest<'_>,
    warm: Option<&mut Option<WarmServer<P::Sandbox>>>,
) -> Result<TaskResult, ErrorInfo> {
    if warm.is_some() || prepared.resolved.approvals.is_none() {
        return run_task_on(provider, prepared, config, rec, dirs, req, warm).await;
    }
    // Only OpenCode's server can ask and wait for an answer (`opencode run` auto-rejects), so a
    // one-shot that may ask runs on a server of its own, stopped with the task before its work
    // is read. Without approval rules the one-shot stays `opencode run`: no extra cost.
    let mut own = None;
    let result = run_task_on(provider, prepared, config, rec, dirs, req, Some(&mut own)).await;
    if let Some(server) = own {
        let mut notices = server.shutdown_keeping_notices().await;
        record_metered(&mut notices, |event| rec.emit(event));
    }
    result
}

async fn run_task_on<P: Provider>(
    provider: &P,
    prepared: &Prepared,
    config: &Config,
    rec: &mut Recorder<'_>,
    dirs: &SandboxDirs,
    req: TaskRequest<'_>,
    warm: Option<&mut Option<WarmServer<P::Sandbox>>>,
) -> Result<TaskResult, ErrorInfo> {
    let resolved = &prepared.resolved;
    let limits = resolved.limits;
    let patterns = ClassifyPatterns {
        rate_limit: config.retry.rate_limit_patterns.clone(),
    };
    let contract = resolved.contract.clone();
    let mut prompt = match &contract {
        Some(spec) => format!("{}\n\n{}", req.prompt, instruction_block(spec, false)),
        None => req.prompt.to_owned(),
    };
    let mut outcome = TaskOutcome::default();
    let max_attempts = config.retry.max_attempts.max(1);
    let mut backoff = Duration::from_secs(config.retry.backoff_secs);
    let mut runner = Attempts {
        provider,
        prepared,
        dirs,
        name: req.name,
        limits,
        patterns: &patterns,
        session: req.session_id.clone(),
        budget: req.budget,
        usage: Usage::default(),
        count: 0,
        warm,
    };

    // The agent itself, with bounded retries for retryable model failures.
    let mut last = loop {
        let result = runner.attempt(rec, &prompt).await?;
        let Some(error) = &result.error else {
            break result;
        };
        if is_fatal(error) || !is_retryable_model_failure(error) || runner.count >= max_attempts {
            break result;
        }
        rec.emit(AgentEvent::Retrying {
            attempt: runner.count,
            max_attempts,
            reason_code: error.reason_code,
            message: error.message.clone(),
            delay_ms: u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
        });
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
        if runner.session.is_some() {
            // The failed turn is already in the session; ask it to carry on rather than repeat.
            prompt = "The previous attempt was interrupted by a model error. Continue the task."
                .to_owned();
        }
    };

    let Some(spec) = contract else {
        return Ok(runner.result(last, outcome));
    };
    if last.error.as_ref().is_some_and(is_fatal) {
        return Ok(runner.result(last, outcome));
    }
    // Round 0 reads the answer the agent already gave (then the structurer may recover it);
    // every later round is a stricter re-prompt in the same session.
    let max_reprompts = resolved
        .role
        .as_ref()
        .map_or(0, |(_, r)| r.max_retries_on_malformed_output);
    let mut problem = String::new();
    for round in 0..=max_reprompts {
        if round > 0 {
            let strict = format!(
                "{}\n\nWhat was wrong: {problem}",
                instruction_block(&spec, true)
            );
            last = runner.attempt(rec, &strict).await?;
            if last.error.as_ref().is_some_and(is_fatal) {
                return Ok(runner.result(last, outcome));
            }
        }
        let (parsed, via) = match parse_outcome(&last.final_text, &spec) {
            Ok((parsed, via)) => (parsed, via.as_str()),
            Err(e) => {
                problem = e.to_string();
                if round > 0 || last.final_text.trim().is_empty() {
                    continue;
                }
                match structure(prepared, config, dirs, rec, &last.final_text, &spec).await {
                    Ok(parsed) => (parsed, "structurer"),
                    Err(e) => {
                        tracing::info!("the structurer could not recover an outcome: {e}");
                        continue;
                    }
                }
            }
        };
        return Ok(finish(
            rec,
            last,
            runner.usage,
            runner.stamp(outcome),
            parsed,
            via,
        ));
    }
    // No valid outcome: an ERROR outcome with the raw output, not an exception.
    let raw = last.final_text.clone();
    let parsed = Outcome {
        outcome: OutcomeKind::Error,
        summary: format!("the agent gave no valid outcome: {problem}"),
        fields: serde_json::Map::new(),
    };
    outcome.raw_output = Some(raw);
    Ok(finish(
        rec,
        last,
        runner.usage,
        runner.stamp(outcome),
        parsed,
        "missing",
    ))
}

fn finish(
    rec: &mut Recorder<'_>,
    last: AgentResult,
    usage: Usage,
    mut outcome: TaskOutcome,
    parsed: Outcome,
    via: &str,
) -> TaskResult {
    let via = via.to_owned();
    rec.emit(AgentEvent::Outcome {
        outcome: parsed.outcome.as_str().to_owned(),
        summary: parsed.summary.clone(),
        via: via.clone(),
        fields: parsed.fields.clone(),
    });
    outcome.outcome = Some(parsed);
    outcome.via = Some(via);
    TaskResult {
        last,
        usage,
        outcome,
    }
}

/// The structurer call, through a model gateway of its own for the call's duration: its model
/// may be on another endpoint than the agent's (`structurer.model`), and a gateway serves one
/// upstream. Same policy and credential handling as the agent's, and its requests are metered
/// and recorded as the structurer's. The socket is in the sandbox's host-only directory, so the
/// agent cannot reach it.
async fn structure(
    prepared: &Prepared,
    config: &Config,
    dirs: &SandboxDirs,
    rec: &mut Recorder<'_>,
    narrative: &str,
    spec: &ContractSpec,
) -> Result<Outcome, ErrorInfo> {
    let target = &prepared.resolved.structurer;
    let (base_url, model, api_key) = (
        target.config.base_url.clone(),
        target.model.model.clone(),
        target.api_key.clone(),
    );
    let mut cfg = GatewayConfig::new(
        dirs.root
            .join(format!("structurer-{}.sock", std::process::id())),
        base_url,
    );
    cfg.api_key = api_key;
    cfg.connect_timeout = prepared.connect_timeout;
    cfg.source = RequestSource::Structurer;
    let mut gateway = warren_gateway::start(cfg)
        .await
        .map_err(|e| e.to_error_info())?;
    let mut notices = gateway.take_notices();
    let result = call_structurer(StructurerRequest {
        gateway_socket: gateway.socket_path(),
        model: &model,
        narrative,
        spec,
        timeout: Duration::from_secs(config.structurer.timeout_secs.max(1)),
    })
    .await;
    gateway.shutdown().await;
    record_metered(&mut notices, |event| rec.emit(event));
    result.map_err(|e| ErrorInfo::new(warren_domain::ReasonCode::ModelError, e.to_string()))
}

/// Runs the agent, one attempt at a time, carrying the session and adding up usage.
struct Attempts<'a, P: Provider> {
    provider: &'a P,
    prepared: &'a Prepared,
    dirs: &'a SandboxDirs,
    name: &'a SandboxName,
    limits: Limits,
    patterns: &'a ClassifyPatterns,
    session: Option<String>,
    budget: crate::jobs::JobBudget,
    usage: Usage,
    count: u32,
    /// The sandbox's warm server slot, for a launched sandbox; `None` runs one-shot.
    warm: Option<&'a mut Option<WarmServer<P::Sandbox>>>,
}

impl<P: Provider> Attempts<'_, P> {
    /// One agent run, after a slot in the model backend's pool (if it has one) is ours.
    async fn attempt(
        &mut self,
        rec: &mut Recorder<'_>,
        prompt: &str,
    ) -> Result<AgentResult, ErrorInfo> {
        self.count += 1;
        let pool = self.prepared.resolved.pool.clone();
        if let Some((pool, max)) = &pool {
            wait_for_slot(rec, pool, *max).await?;
        }
        let result = run_agent(
            self.provider,
            self.prepared,
            rec,
            self.dirs,
            AgentRequest {
                name: self.name,
                prompt,
                session_id: self.session.clone(),
                budget: self.budget.clone(),
                limits: self.limits,
                patterns: self.patterns,
                sync_limits: self.prepared.resolved.sync_limits,
                approvals: self.prepared.resolved.approvals.as_ref(),
            },
            match &mut self.warm {
                Some(slot) => Host::Warm(slot),
                None => Host::Cold,
            },
        )
        .await;
        if let Some((pool, _)) = &pool {
            let _ = rec.store.pool_release(pool, &rec.id);
        }
        let result = result?;
        self.usage.add(&result.usage);
        if result.session_id.is_some() {
            self.session.clone_from(&result.session_id);
        }
        Ok(result)
    }

    fn stamp(&self, mut outcome: TaskOutcome) -> TaskOutcome {
        outcome.attempts = self.count;
        outcome
    }

    fn result(&self, last: AgentResult, outcome: TaskOutcome) -> TaskResult {
        TaskResult {
            last,
            usage: self.usage,
            outcome: self.stamp(outcome),
        }
    }
}

async fn wait_for_slot(rec: &mut Recorder<'_>, pool: &str, max: u32) -> Result<(), ErrorInfo> {
    let mut announced: Option<usize> = None;
    loop {
        match rec
            .store
            .pool_try_acquire(pool, &rec.id, max)
            .map_err(|e| e.to_error_info())?
        {
            PoolTry::Granted => return Ok(()),
            PoolTry::Waiting { position, .. } => {
                if announced.is_none() {
                    rec.transition(
                        SandboxState::Queued,
                        Some(&format!("waiting for pool {pool}")),
                    )?;
                }
                if announced != Some(position) {
                    rec.emit(AgentEvent::Queued {
                        pool: pool.to_owned(),
                        position: position as u64,
                    });
                    announced = Some(position);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

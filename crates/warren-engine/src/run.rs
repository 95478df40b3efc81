//! `warren run`: the main job, end to end. Sync the repository into a fresh workspace, start the
//! model gateway, create the sandbox, run OpenCode, stream its events, export its changes as a
//! branch, tear everything down, and keep the record. Every state change goes through the store's
//! state machine; the agent's work is exported even when the agent failed, and a workspace whose
//! export failed is kept, never deleted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use warren_agent::{Limits, OpencodeLaunch, classify_failure, supervise};
use warren_config::Config;
use warren_domain::{
    AgentEvent, ErrorInfo, EventRecord, ReasonCode, SandboxId, SandboxName, SandboxState, Usage,
    UserFacing,
};
use warren_gateway::{GatewayConfig, GatewayNotice};
use warren_provider::{Provider, Sandbox, SandboxSpec, ToolMount};
use warren_store::{NewSandbox, Store};

use crate::paths::SandboxDirs;
use crate::preflight::probe_endpoint;
use crate::tools::Tools;

/// Inside the sandbox, host tools appear here (a tmpfs, so bind targets can be created).
const SANDBOX_TOOLS_DIR: &str = "/run/warren-tools";

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub repo: PathBuf,
    pub prompt: String,
    pub name: Option<SandboxName>,
    /// `provider/model`; the config's `model.default` when `None`.
    pub model: Option<String>,
    pub data_dir: PathBuf,
    pub config: Config,
}

/// Receives everything a run reports, as it happens.
pub trait RunObserver: Send {
    fn event(&mut self, record: &EventRecord);
    /// A step of warren's own work (for a progress line); not recorded.
    fn progress(&mut self, _message: &str) {}
}

/// Wall-clock time of each phase, for the summary and the benchmark.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub preflight_ms: f64,
    pub sync_in_ms: f64,
    pub gateway_ms: f64,
    pub sandbox_create_ms: f64,
    pub agent_ms: f64,
    pub export_ms: f64,
    pub teardown_ms: f64,
    pub total_ms: f64,
}

impl Phases {
    /// Create → ready: everything between the preflight and the agent's first instruction.
    pub fn ready_ms(&self) -> f64 {
        self.sync_in_ms + self.gateway_ms + self.sandbox_create_ms
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub sandbox_id: String,
    pub name: String,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub files_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub usage: Usage,
    pub duration_ms: f64,
    pub phases: Phases,
    /// Set when the workspace was kept because its changes could not be exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_workspace: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Appends to the store and tells the observer; a store failure is logged, never fatal to the agent.
struct Recorder<'a> {
    store: &'a Store,
    id: SandboxId,
    observer: &'a mut dyn RunObserver,
}

impl Recorder<'_> {
    fn emit(&mut self, event: AgentEvent) {
        match self.store.append_event(&self.id, &event) {
            Ok(record) => self.observer.event(&record),
            Err(e) => tracing::warn!("could not record event: {e}"),
        }
    }

    fn transition(&mut self, to: SandboxState, detail: Option<&str>) -> Result<(), ErrorInfo> {
        self.store
            .transition(&self.id, to, detail)
            .map_err(|e| e.to_error_info())?;
        self.emit(AgentEvent::StateChanged {
            state: to,
            detail: detail.map(str::to_owned),
        });
        Ok(())
    }
}

/// Runs the whole job. Errors before the sandbox record exists come back as `Err`; everything
/// after is in the summary (and the store).
pub async fn run<P: Provider>(
    provider: &P,
    req: RunRequest,
    observer: &mut dyn RunObserver,
) -> Result<RunSummary, ErrorInfo> {
    let started = Instant::now();
    let mut phases = Phases::default();
    let config = &req.config;

    // Preflight: everything that can be checked before creating anything.
    let model_raw = req
        .model
        .clone()
        .or_else(|| config.model.default.clone())
        .ok_or_else(|| {
            ErrorInfo::new(ReasonCode::InvalidConfig, "no model given and model.default is not set")
                .with_hint("pass --model provider/model, or set [model] default in ~/.config/warren/config.toml")
        })?;
    let model = config
        .resolve_model(&model_raw)
        .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?;
    let endpoint = config
        .model_providers
        .get(&model.provider)
        .cloned()
        .ok_or_else(|| ErrorInfo::new(ReasonCode::Internal, "resolved model has no provider"))?;
    let api_key = credential(&model.provider, &endpoint)?;
    provider.preflight().map_err(|e| e.to_error_info())?;
    let tools = Tools::locate(config.opencode.binary.as_deref())?;
    let repo = warren_sync::inspect_repo(&req.repo).map_err(|e| e.to_error_info())?;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| SandboxName::generate(&req.prompt));
    let branch = format!("warren/{name}");
    if warren_sync::branch_exists(&repo, &branch).map_err(|e| e.to_error_info())? {
        return Err(ErrorInfo::new(
            ReasonCode::BranchExists,
            format!("branch {branch} already exists in {}", repo.root.display()),
        )
        .with_hint(format!(
            "choose another --name, or delete it with 'git branch -D {branch}'"
        )));
    }
    let connect_timeout = Duration::from_secs(config.timeouts.connect_secs.max(1));
    probe_endpoint(&endpoint.base_url, connect_timeout).await?;
    phases.preflight_ms = ms(started.elapsed());

    let store = Store::open(&warren_store::default_db_path(&req.data_dir))
        .map_err(|e| e.to_error_info())?;
    let id = SandboxId::new();
    store
        .create_sandbox(NewSandbox {
            id: id.clone(),
            name: name.clone(),
            repo: repo.root.clone(),
            provider: provider.name().to_owned(),
            model: Some(model.to_string()),
            prompt: Some(req.prompt.clone()),
            role: None,
        })
        .map_err(|e| e.to_error_info())?;
    let dirs = SandboxDirs::new(&req.data_dir, &id);
    let mut rec = Recorder {
        store: &store,
        id: id.clone(),
        observer,
    };

    let ctx = Ctx {
        provider,
        repo: &repo,
        dirs: &dirs,
        tools: &tools,
        name: &name,
        branch: &branch,
        model_provider: &model.provider,
        model: &model.model,
        base_url: &endpoint.base_url,
        api_key,
        prompt: &req.prompt,
        config,
        connect_timeout,
    };
    let mut outcome = execute(&ctx, &mut rec, &mut phases).await;
    let teardown_started = Instant::now();
    if let Some(cleanup) = outcome.scratch_cleanup.take() {
        let _ = cleanup.join();
    }
    let kept_workspace = match &outcome.export_error {
        // Never delete work that could not be exported.
        Some(_) => Some(dirs.workspace.clone()),
        None => {
            let _ = rec.transition(SandboxState::TearingDown, None);
            if let Some(baseline) = &outcome.baseline_id {
                let _ = warren_sync::release_baseline(&repo, baseline);
            }
            match dirs.remove() {
                Ok(()) => {
                    let _ = rec.transition(SandboxState::Destroyed, None);
                }
                Err(e) => {
                    let _ = store.set_error(&id, &e);
                    let _ = rec.transition(SandboxState::Error, Some(&e.message));
                }
            }
            None
        }
    };
    phases.teardown_ms = ms(teardown_started.elapsed());
    phases.total_ms = ms(started.elapsed());

    let error = outcome.error.clone().or(outcome.export_error.clone());
    if let Some(e) = &error {
        let _ = store.set_error(&id, e);
    }
    let summary = RunSummary {
        sandbox_id: id.to_string(),
        name: name.to_string(),
        success: error.is_none(),
        error: error.clone(),
        branch: outcome.branch.clone(),
        files_changed: outcome.files_changed,
        session_id: outcome.session_id.clone(),
        usage: outcome.usage,
        duration_ms: phases.total_ms,
        phases: phases.clone(),
        kept_workspace,
        stderr_tail: outcome.stderr_tail.clone(),
    };
    if let Ok(value) = serde_json::to_value(&summary) {
        let _ = store.set_outcome_json(&id, &value);
    }
    rec.emit(AgentEvent::Finished {
        success: summary.success,
        error,
    });
    Ok(summary)
}

struct Ctx<'a, P> {
    provider: &'a P,
    repo: &'a warren_sync::RepoInfo,
    dirs: &'a SandboxDirs,
    tools: &'a Tools,
    name: &'a SandboxName,
    branch: &'a str,
    model_provider: &'a str,
    model: &'a str,
    base_url: &'a str,
    api_key: Option<String>,
    prompt: &'a str,
    config: &'a Config,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Outcome {
    error: Option<ErrorInfo>,
    export_error: Option<ErrorInfo>,
    branch: Option<String>,
    files_changed: u64,
    session_id: Option<String>,
    usage: Usage,
    baseline_id: Option<String>,
    stderr_tail: Vec<String>,
    scratch_cleanup: Option<std::thread::JoinHandle<()>>,
}

fn credential(
    provider: &str,
    endpoint: &warren_config::ModelProviderConfig,
) -> Result<Option<String>, ErrorInfo> {
    if let Some(var) = &endpoint.api_key_env {
        return match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(ErrorInfo::new(
                ReasonCode::InvalidConfig,
                format!("model_providers.{provider}.api_key_env names {var}, which is not set in warren's environment"),
            )
            .with_hint(format!("export {var}=<your key> before running warren, or remove api_key_env if the endpoint needs no key"))),
        };
    }
    Ok(endpoint.api_key.clone())
}

/// Provisioning through export. Failures become part of the outcome so teardown always runs.
async fn execute<P: Provider>(
    ctx: &Ctx<'_, P>,
    rec: &mut Recorder<'_>,
    phases: &mut Phases,
) -> Outcome {
    let mut out = Outcome::default();
    if let Err(e) = rec.transition(SandboxState::Provisioning, None) {
        out.error = Some(e);
        return out;
    }
    let result = provision_and_run(ctx, rec, phases, &mut out).await;
    if let Err(e) = result {
        out.error.get_or_insert(e);
    }
    out
}

async fn provision_and_run<P: Provider>(
    ctx: &Ctx<'_, P>,
    rec: &mut Recorder<'_>,
    phases: &mut Phases,
    out: &mut Outcome,
) -> Result<(), ErrorInfo> {
    let fail = |rec: &mut Recorder<'_>, e: ErrorInfo| {
        let _ = rec.transition(SandboxState::Error, Some(&e.message));
        e
    };

    // Sync in.
    let t = Instant::now();
    ctx.dirs.create().map_err(|e| fail(rec, e))?;
    rec.store
        .set_workspace(&rec.id, &ctx.dirs.workspace)
        .map_err(|e| fail(rec, e.to_error_info()))?;
    let baseline_id = rec.id.short().to_owned();
    let sync = warren_sync::sync_in(
        ctx.repo,
        &ctx.dirs.workspace,
        &ctx.dirs.baseline,
        &warren_sync::SyncOptions::new(baseline_id.clone(), ctx.name.as_str()),
    )
    .map_err(|e| fail(rec, e.to_error_info()))?;
    out.baseline_id = Some(baseline_id);
    if let Ok(value) = serde_json::to_value(&sync) {
        let _ = rec.store.set_sync_json(&rec.id, &value);
    }
    rec.emit(AgentEvent::SyncedIn {
        files: sync.files as u64,
        bytes: sync.bytes,
        dirty: sync.dirty,
        skipped: sync
            .skipped_submodules
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    });
    phases.sync_in_ms = ms(t.elapsed());

    // Gateway.
    let t = Instant::now();
    let mut gw_cfg = GatewayConfig::new(
        ctx.dirs.run.join(warren_agent::opencode::GATEWAY_SOCKET),
        ctx.base_url.to_owned(),
    );
    gw_cfg.api_key = ctx.api_key.clone();
    gw_cfg.connect_timeout = ctx.connect_timeout;
    let mut gateway = warren_gateway::start(gw_cfg)
        .await
        .map_err(|e| fail(rec, e.to_error_info()))?;
    let notices = gateway.take_notices();
    phases.gateway_ms = ms(t.elapsed());

    // Sandbox.
    let t = Instant::now();
    let opencode_in = format!("{SANDBOX_TOOLS_DIR}/opencode");
    let init_in = format!("{SANDBOX_TOOLS_DIR}/warren-sandbox-init");
    let spec = SandboxSpec {
        id: rec.id.clone(),
        name: ctx.name.clone(),
        workspace: ctx.dirs.workspace.clone(),
        home: ctx.dirs.home.clone(),
        run_dir: ctx.dirs.run.clone(),
        tools: vec![
            ToolMount {
                host_path: ctx.tools.opencode.clone(),
                sandbox_path: opencode_in.clone().into(),
            },
            ToolMount {
                host_path: ctx.tools.init.clone(),
                sandbox_path: init_in.clone().into(),
            },
        ],
    };
    let created = ctx.provider.create(&spec).await;
    let (sandbox, _timings) = match created {
        Ok(v) => v,
        Err(e) => {
            gateway.shutdown().await;
            return Err(fail(rec, e.to_error_info()));
        }
    };
    phases.sandbox_create_ms = ms(t.elapsed());

    // Agent.
    let launch = OpencodeLaunch {
        provider: ctx.model_provider.to_owned(),
        model: ctx.model.to_owned(),
        small_model: None,
        init_path: init_in,
        opencode_path: opencode_in,
        prompt: ctx.prompt.to_owned(),
        session_id: None,
    };
    let t = Instant::now();
    let child = match sandbox.exec(&launch.exec_spec()) {
        Ok(child) => child,
        Err(e) => {
            let _ = sandbox.destroy().await;
            gateway.shutdown().await;
            return Err(fail(rec, e.to_error_info()));
        }
    };
    rec.transition(SandboxState::Running, None)
        .map_err(|e| fail(rec, e))?;
    let limits = Limits {
        hard: Duration::from_secs(ctx.config.timeouts.run_secs.max(1)),
        inactivity: Duration::from_secs(ctx.config.timeouts.inactivity_secs.max(1)),
    };
    let mut session_recorded = false;
    let (store, id) = (rec.store, rec.id.clone());
    let agent = supervise(child, limits, stop_signal(notices), |event| {
        if let (false, AgentEvent::StepStart { session_id }) = (session_recorded, &event) {
            let _ = store.set_session_id(&id, session_id);
            session_recorded = true;
        }
        if let AgentEvent::StepFinish { usage, .. } = &event {
            let _ = store.add_usage(&id, usage);
        }
        rec.emit(event);
    })
    .await;
    phases.agent_ms = ms(t.elapsed());
    // Nothing may keep running in the sandbox while its files are read.
    let _ = sandbox.destroy().await;
    gateway.shutdown().await;
    // HOME and the run directory hold nothing to export: remove them while the export runs.
    let scratch = [ctx.dirs.home.clone(), ctx.dirs.run.clone()];
    out.scratch_cleanup = Some(std::thread::spawn(move || {
        for dir in scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }));
    out.session_id = agent.session_id.clone();
    out.usage = agent.usage;
    out.stderr_tail = agent.stderr_tail.clone();
    out.error = classify_failure(&agent);
    let detail = out.error.as_ref().map(|e| e.message.clone());
    rec.transition(SandboxState::Completed, detail.as_deref())
        .map_err(|e| fail(rec, e))?;

    // Export: even a failed agent's work is brought back.
    let t = Instant::now();
    rec.transition(SandboxState::Saving, None)?;
    match export(ctx, rec, &sync) {
        Ok((branch, files)) => {
            out.branch = branch;
            out.files_changed = files;
        }
        Err(e) => {
            let _ = rec.transition(SandboxState::Error, Some(&e.message));
            out.export_error = Some(e);
        }
    }
    phases.export_ms = ms(t.elapsed());
    Ok(())
}

fn export<P: Provider>(
    ctx: &Ctx<'_, P>,
    rec: &mut Recorder<'_>,
    sync: &warren_sync::SyncInReport,
) -> Result<(Option<String>, u64), ErrorInfo> {
    let limits = warren_sync::Limits {
        max_file_bytes: ctx.config.sync.max_file_bytes,
        max_total_bytes: ctx.config.sync.max_total_bytes,
        max_files: usize::try_from(ctx.config.sync.max_files).unwrap_or(usize::MAX),
    };
    let changes = warren_sync::collect_changes(&ctx.dirs.workspace, &ctx.dirs.baseline, &limits)
        .map_err(|e| e.to_error_info())?;
    if changes.is_empty() {
        return Ok((None, 0));
    }
    let request = warren_sync::ExportRequest {
        branch: ctx.branch.to_owned(),
        agent_message: agent_commit_message(ctx.prompt),
        user_changes_message: "warren: your uncommitted changes at the start of the run".into(),
        agent_author: ("OpenCode via warren".into(), "warren@localhost".into()),
    };
    let report =
        warren_sync::export_branch(ctx.repo, sync, &ctx.dirs.workspace, &changes, &request)
            .map_err(|e| e.to_error_info())?;
    // The agent's own changes, not the user's uncommitted ones that ride along on the branch.
    let files = changes.len() as u64;
    let _ = rec.store.set_export(&rec.id, &report.branch, files);
    rec.emit(AgentEvent::Exported {
        branch: report.branch.clone(),
        files_changed: files,
        commit: report.agent_commit.clone(),
    });
    Ok((Some(report.branch), files))
}

fn agent_commit_message(prompt: &str) -> String {
    let first_line = prompt.lines().next().unwrap_or("").trim();
    let mut subject: String = first_line.chars().take(60).collect();
    if first_line.chars().count() > 60 {
        subject.push('…');
    }
    format!(
        "warren: {subject}\n\nChanges made by an OpenCode agent in a warren sandbox.\n\nPrompt:\n{prompt}\n"
    )
}

/// Resolves when the run must stop: the gateway reports something it cannot recover from, or the
/// user presses Ctrl-C (the work so far is still exported).
async fn stop_signal(notices: tokio::sync::mpsc::UnboundedReceiver<GatewayNotice>) -> ErrorInfo {
    tokio::select! {
        info = fatal_notice(notices) => info,
        Ok(()) = tokio::signal::ctrl_c() => ErrorInfo::new(
            ReasonCode::Interrupted,
            "interrupted: the agent was stopped; its work so far was kept",
        ),
    }
}

/// Resolves when the gateway reports something the run cannot recover from.
async fn fatal_notice(
    mut notices: tokio::sync::mpsc::UnboundedReceiver<GatewayNotice>,
) -> ErrorInfo {
    while let Some(notice) = notices.recv().await {
        match notice {
            GatewayNotice::UpstreamUnreachable { url, error } => {
                return ErrorInfo::new(
                    ReasonCode::ModelUnreachable,
                    format!("the model endpoint {url} became unreachable: {error}"),
                )
                .with_hint("the model endpoint refused the connection: is it running?");
            }
            GatewayNotice::UpstreamAuthRejected { status, body } => {
                return ErrorInfo::new(
                    ReasonCode::ModelAuth,
                    format!("the model endpoint rejected the credential (HTTP {status}): {}", body.trim()),
                )
                .with_hint("check the API key: model_providers.<name>.api_key_env must name a variable that holds a valid key");
            }
            other => tracing::debug!("gateway notice: {other:?}"),
        }
    }
    std::future::pending().await
}

//! One agent run inside a sandbox: the model gateway, the sandbox, OpenCode on one prompt
//! (optionally continuing a session), supervision until it ends, and nothing left running after.
//! Moves the record `→ running → completed`; infrastructure failures come back as `Err`.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use warren_agent::attach::{AttachRequest, PermissionAsk};
use warren_agent::classify::{ClassifyPatterns, classify_failure_with};
use warren_agent::opencode::{egress_socket_name, gateway_socket_name};
use warren_agent::{AgentRun, EgressRoute, GatewayRoute, Limits, OpencodeLaunch, supervise};
use warren_domain::{
    AgentEvent, BudgetLine, ErrorInfo, ReasonCode, SandboxId, SandboxName, SandboxState, Usage,
    UserFacing,
};
use warren_gateway::egress::EgressAt;
use warren_gateway::{GatewayConfig, GatewayHandle, GatewayListen, GatewayNotice};
use warren_provider::{
    ExecChild, GatewayAttachment, HostDirs, IMAGE_TOOLS_DIR, Mounts, Provider, Sandbox,
    SandboxSpec, TcpGateway, Tool, ToolSource,
};
use warren_store::StateStore;

use crate::budget::RunBudget;
use crate::paths::SandboxDirs;
use crate::prepare::Prepared;
use crate::recorder::Recorder;
use crate::warm::WarmServer;

/// Inside the sandbox, host tools appear here (a tmpfs, so bind targets can be created).
const SANDBOX_TOOLS_DIR: &str = "/run/warren-tools";

pub(crate) struct AgentRequest<'a> {
    pub name: &'a SandboxName,
    pub prompt: &'a str,
    pub session_id: Option<String>,
    /// `--budget` for the sandbox, when this request gave one, and the owner's.
    pub budget: crate::jobs::JobBudget,
    pub limits: Limits,
    pub patterns: &'a ClassifyPatterns,
    /// What a sandbox without a shared file system may hand back (`sync.*` limits).
    pub sync_limits: warren_sync::Limits,
    /// Approval rules: the agent asks, and the run waits for an answer through the store.
    pub approvals: Option<&'a crate::resolve::Approvals>,
}

#[derive(Debug, Default)]
pub(crate) struct AgentResult {
    /// Set when the agent failed (timeout, model error, ...); its work is still in the workspace.
    pub error: Option<ErrorInfo>,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub stderr_tail: Vec<String>,
    /// Lines OpenCode printed on stdout that were not JSON events.
    pub stray_stdout: Vec<String>,
    /// The assistant text of the last step that said anything: where an outcome object lives.
    pub final_text: String,
    pub gateway_ms: f64,
    /// From starting OpenCode to its first event: its boot.
    pub opencode_ready_ms: f64,
    pub sandbox_create_ms: f64,
    pub agent_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where the agent runs: a fresh sandbox with a one-shot `opencode run` that is gone afterwards,
/// or the sandbox's warm server (started here if there is none, kept after a clean run).
pub(crate) enum Host<'w, S> {
    Cold,
    Warm(&'w mut Option<WarmServer<S>>),
}

pub(crate) async fn run_agent<P: Provider>(
    provider: &P,
    prepared: &Prepared,
    rec: &mut Recorder<'_>,
    dirs: &SandboxDirs,
    req: AgentRequest<'_>,
    host: Host<'_, P::Sandbox>,
) -> Result<AgentResult, ErrorInfo> {
    let mut result = AgentResult::default();
    let mounts = provider.mounts();
    // The warm server of a clean prompt goes back to its slot once the outcome is known.
    let mut kept = None;
    let run = match host {
        Host::Cold => {
            let t = Instant::now();
            let (mut gateway, attachment) = match mounts {
                Mounts::HostPaths => {
                    let path = socket_path(dirs);
                    let gateway =
                        start_gateway(prepared, GatewayListen::Unix(path.clone()), dirs).await?;
                    (gateway, GatewayAttachment::UnixSocket { host_path: path })
                }
                Mounts::None => start_tcp_gateway(prepared, &provider.tcp_gateway(), dirs).await?,
            };
            let (spec, launch) = sandbox_and_launch(prepared, rec, dirs, &req, mounts, attachment);
            let mut notices = gateway.take_notices();
            result.gateway_ms = ms(t.elapsed());
            let t = Instant::now();
            if mounts == Mounts::None
                && let Err(e) =
                    crate::leftovers::recover_before_run(provider, &rec.id, dirs, &req.sync_limits)
                        .await
            {
                gateway.shutdown().await;
                return Err(e);
            }
            let (sandbox, _timings) = match provider.create(&spec).await {
                Ok(v) => v,
                Err(e) => {
                    gateway.shutdown().await;
                    return Err(e.to_error_info());
                }
            };
            if mounts == Mounts::None
                && let Err(e) = crate::transfer::upload_all(&sandbox, dirs).await
            {
                let _ = sandbox.destroy().await;
                gateway.shutdown().await;
                return Err(e);
            }
            result.sandbox_create_ms = ms(t.elapsed());
            let budget = start_budget(prepared, rec, &req, &gateway);
            let watched = match sandbox.exec(&launch.exec_spec()) {
                Ok(child) => {
                    watch_run(child, rec, &req, &budget, &mut result, &mut notices, None).await
                }
                Err(e) => Err(e.to_error_info()),
            };
            // The agent has ended (or was killed): its work comes back before the sandbox goes,
            // whatever the outcome, so nothing it did is lost.
            let downloaded = match mounts {
                Mounts::None => {
                    crate::transfer::download_all(&sandbox, dirs, &req.sync_limits).await
                }
                Mounts::HostPaths => Ok(()),
            };
            // Nothing may keep running in the sandbox while its files are read.
            let _ = sandbox.destroy().await;
            gateway.shutdown().await;
            // After shutdown every forwarded request has its record, cut short or not.
            let session = watched
                .as_ref()
                .ok()
                .and_then(|run| run.session_id.clone())
                .or_else(|| req.session_id.clone());
            record_metered(&mut notices, |event| {
                rec.emit(with_session(event, session.as_deref()));
            });
            if let (Err(_), Err(e)) = (&watched, &downloaded) {
                tracing::warn!(
                    "the sandbox's files could not be brought back: {}",
                    e.message
                );
            }
            // A sandbox lost under the agent is why its files could not come back.
            if let (Ok(run), Err(e)) = (&watched, &downloaded)
                && let Some(lost) = &run.lost
            {
                return Err(ErrorInfo::new(ReasonCode::SandboxLost, lost.clone()).with_hint(
                    format!(
                        "what this run wrote in the sandbox could not be brought back ({}); the sandbox's files from before the run are kept (export or pull them); run the prompt again with 'warren run' or a new launch",
                        e.message
                    ),
                ));
            }
            let watched = watched?;
            downloaded?;
            watched
        }
        Host::Warm(slot) => {
            let mut server = warm_server(
                provider,
                prepared,
                rec,
                dirs,
                &req,
                slot.take(),
                &mut result,
            )
            .await?;
            // Without a shared file system the sandbox's workspace must be the host's first.
            if let Err(e) = server.freshen().await {
                server.shutdown().await;
                return Err(e);
            }
            // Whatever the gateway said between prompts belongs to no run, but the requests it
            // forwarded meanwhile were still the sandbox's.
            record_metered(&mut server.notices, |event| {
                rec.emit(with_session(event, req.session_id.as_deref()));
            });
            let (asks_tx, asks) = match req.approvals {
                Some(a) => {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    (Some(tx), Some((rx, a.timeout)))
                }
                None => (None, None),
            };
            let budget = start_budget(prepared, rec, &req, server.gateway());
            let child = warren_agent::attach::attach(AttachRequest {
                socket: dirs.run.join(&server.socket),
                session_id: req.session_id.clone(),
                prompt: req.prompt.to_owned(),
                asks: asks_tx,
            })
            .map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("cannot reach the sandbox's OpenCode server: {e}"),
                )
            });
            let watched = match child {
                Ok(child) => {
                    let notices = &mut server.notices;
                    watch_run(child, rec, &req, &budget, &mut result, notices, asks).await
                }
                Err(e) => Err(e),
            };
            // Without a shared file system the prompt's work comes back now, before its outcome
            // is recorded; a prompt that did not end cleanly stops the server first.
            let clean = watched
                .as_ref()
                .is_ok_and(|run| classify_failure_with(run, req.patterns).is_none())
                && server.is_alive();
            let downloaded = server.bring_back(!clean).await;
            match (watched, downloaded) {
                (Ok(run), Ok(())) => {
                    kept = Some((slot, server));
                    run
                }
                (Err(e), downloaded) => {
                    if let Err(d) = downloaded {
                        tracing::warn!(
                            "the sandbox's files could not be brought back: {}",
                            d.message
                        );
                    }
                    server.shutdown().await;
                    return Err(e);
                }
                (Ok(_), Err(e)) => {
                    let lost = server.lost();
                    server.shutdown().await;
                    // A sandbox lost under the server is why its files could not come back.
                    return Err(match lost {
                        Some(lost) => ErrorInfo::new(ReasonCode::SandboxLost, lost).with_hint(format!(
                            "what this prompt wrote in the sandbox could not be brought back ({}); the files from before the prompt are kept",
                            e.message
                        )),
                        None => e,
                    });
                }
            }
        }
    };
    result.session_id = run.session_id.clone().or(req.session_id);
    result.usage = run.usage;
    result.stderr_tail = run.stderr_tail.clone();
    result.stray_stdout = run.stray_stdout.clone();
    result.error = classify_failure_with(&run, req.patterns);
    if let Some((slot, server)) = kept {
        // A failed or stopped prompt may have left the server mid-turn: like a one-shot run,
        // everything in the sandbox stops (before its files are read), and the next prompt
        // boots a fresh server.
        if result.error.is_none() && server.is_alive() {
            *slot = Some(server);
        } else {
            server.shutdown().await;
        }
    }
    if let Some(error) = &result.error {
        let _ = rec.store.set_error(&rec.id, error);
    }
    let detail = result.error.as_ref().map(|e| e.message.clone());
    rec.transition(SandboxState::Completed, detail.as_deref())?;
    Ok(result)
}

/// The sandbox's warm server for this prompt: the one it has, if it is alive and was booted for
/// this model and endpoint; otherwise a new one (the old one stopped). Without a shared file
/// system the new one's gateway is on TCP and its sandbox starts from the host's files (what a
/// killed monitor's pod held recovered first, as before a one-shot run).
async fn warm_server<P: Provider>(
    provider: &P,
    prepared: &Prepared,
    rec: &Recorder<'_>,
    dirs: &SandboxDirs,
    req: &AgentRequest<'_>,
    current: Option<WarmServer<P::Sandbox>>,
    result: &mut AgentResult,
) -> Result<WarmServer<P::Sandbox>, ErrorInfo> {
    let mounts = provider.mounts();
    // A server booted under another egress policy has another proxy (or none) in front of it.
    let boot_key = format!(
        "{}\n{:?}",
        prepared.endpoint.base_url, prepared.resolved.egress
    );
    if let Some(server) = current {
        // The launch as this server's sandbox would get it: its gateway attachment (a TCP
        // one's token and port) is part of OpenCode's config.
        let (_, launch) =
            sandbox_and_launch(prepared, rec, dirs, req, mounts, server.attachment.clone());
        if server.is_alive() && server.serves(&launch, &boot_key) {
            return Ok(server);
        }
        if !server.is_alive() {
            tracing::warn!(
                "the warm OpenCode server had exited: {:?}",
                server.log_tail()
            );
        }
        server.shutdown().await;
    }
    let t = Instant::now();
    let (gateway, attachment) = match mounts {
        Mounts::HostPaths => {
            let path = socket_path(dirs);
            let gateway = start_gateway(prepared, GatewayListen::Unix(path.clone()), dirs).await?;
            (gateway, GatewayAttachment::UnixSocket { host_path: path })
        }
        Mounts::None => start_tcp_gateway(prepared, &provider.tcp_gateway(), dirs).await?,
    };
    result.gateway_ms = ms(t.elapsed());
    let files = match mounts {
        Mounts::HostPaths => None,
        Mounts::None => {
            if let Err(e) =
                crate::leftovers::recover_before_run(provider, &rec.id, dirs, &req.sync_limits)
                    .await
            {
                gateway.shutdown().await;
                return Err(e);
            }
            Some(crate::warm::Files::new(dirs.clone(), req.sync_limits))
        }
    };
    let (spec, launch) = sandbox_and_launch(prepared, rec, dirs, req, mounts, attachment);
    let server = WarmServer::start(provider, &spec, &launch, &boot_key, gateway, files).await?;
    result.sandbox_create_ms = ms(server.boot);
    Ok(server)
}

/// The sandbox every run of this sandbox uses, and OpenCode's launch for this prompt. A host-path
/// provider binds the host's directories and tools; one without a shared file system gets
/// neither (the engine uploads the files, the tools are in its image).
fn sandbox_and_launch(
    prepared: &Prepared,
    rec: &Recorder<'_>,
    dirs: &SandboxDirs,
    req: &AgentRequest<'_>,
    mounts: Mounts,
    gateway: GatewayAttachment,
) -> (SandboxSpec, OpencodeLaunch) {
    let (dir, host_dirs, opencode, init) = match mounts {
        Mounts::HostPaths => (
            SANDBOX_TOOLS_DIR,
            Some(HostDirs {
                workspace: dirs.workspace.clone(),
                home: dirs.home.clone(),
            }),
            ToolSource::Host(prepared.tools.opencode.clone()),
            ToolSource::Host(prepared.tools.init.clone()),
        ),
        Mounts::None => (IMAGE_TOOLS_DIR, None, ToolSource::Image, ToolSource::Image),
    };
    let opencode_in = format!("{dir}/opencode");
    let init_in = format!("{dir}/warren-sandbox-init");
    let route = match &gateway {
        GatewayAttachment::UnixSocket { host_path } => GatewayRoute::Socket(
            host_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        GatewayAttachment::Tcp { address, token, .. } => GatewayRoute::Tcp {
            address: address.clone(),
            token: token.clone(),
        },
    };
    // With a socket the init relays the egress port to the proxy's; over TCP the provider
    // carries it (the attachment names the proxy's address).
    let egress = prepared.resolved.egress.as_ref().map(|_| match &gateway {
        GatewayAttachment::UnixSocket { .. } => {
            EgressRoute::Socket(egress_socket_name(std::process::id()))
        }
        GatewayAttachment::Tcp { .. } => EgressRoute::Provider,
    });
    let spec = SandboxSpec {
        id: rec.id.clone(),
        name: req.name.clone(),
        host_dirs,
        gateway,
        tools: vec![
            Tool {
                sandbox_path: opencode_in.clone().into(),
                source: opencode,
            },
            Tool {
                sandbox_path: init_in.clone().into(),
                source: init,
            },
        ],
    };
    let launch = OpencodeLaunch {
        provider: prepared.model.provider.clone(),
        model: prepared.model.model.clone(),
        small_model: prepared.resolved.small_model.clone(),
        init_path: init_in,
        opencode_path: opencode_in,
        prompt: req.prompt.to_owned(),
        session_id: req.session_id.clone(),
        gateway: route,
        ask: req.approvals.map(|a| a.ask.clone()).unwrap_or_default(),
        egress,
    };
    (spec, launch)
}

/// This process's gateway socket in the sandbox's run directory.
fn socket_path(dirs: &SandboxDirs) -> std::path::PathBuf {
    dirs.run.join(gateway_socket_name(std::process::id()))
}

/// The gateway, and beside it the egress proxy when the sandbox's policy is an allow-list: its
/// socket in the same run directory, so only the sandbox and warren see it; or, for a gateway on
/// TCP (a sandbox that cannot see the run directory), a port on warren's loopback that only the
/// provider's relay hands the sandbox's connections to.
async fn start_gateway(
    prepared: &Prepared,
    listen: GatewayListen,
    dirs: &SandboxDirs,
) -> Result<GatewayHandle, ErrorInfo> {
    let mut cfg = GatewayConfig::on(listen, prepared.endpoint.base_url.clone());
    cfg.api_key = prepared.api_key.clone();
    cfg.prices = prepared.resolved.prices.clone();
    cfg.connect_timeout = prepared.connect_timeout;
    cfg.egress = match (&prepared.resolved.egress, &cfg.listen) {
        (None, _) => None,
        (Some(policy), GatewayListen::Unix(_)) => Some(warren_gateway::egress::EgressListen {
            at: EgressAt::Unix(dirs.run.join(egress_socket_name(std::process::id()))),
            policy: policy.clone(),
        }),
        (Some(policy), GatewayListen::Tcp { .. }) => Some(warren_gateway::egress::EgressListen {
            at: EgressAt::Tcp(std::net::SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                0,
            ))),
            policy: policy.clone(),
        }),
    };
    warren_gateway::start(cfg)
        .await
        .map_err(|e| e.to_error_info())
}

/// A gateway on TCP for a sandbox that cannot see a host socket, with a fresh random token it
/// alone is given; the address it is told is the bound one (the real port). The egress proxy,
/// when there is one, is on warren's loopback whatever the gateway's plan: the provider's relay
/// reaches it from this host, and nothing else should.
async fn start_tcp_gateway(
    prepared: &Prepared,
    plan: &TcpGateway,
    dirs: &SandboxDirs,
) -> Result<(GatewayHandle, GatewayAttachment), ErrorInfo> {
    let token = format!(
        "wgw-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let listen = GatewayListen::Tcp {
        address: plan.listen,
        token: token.clone(),
    };
    let gateway = start_gateway(prepared, listen, dirs).await?;
    let bound = gateway.local_addr().unwrap_or(plan.listen);
    let address = match &plan.advertise_host {
        Some(host) => format!("{host}:{}", bound.port()),
        None => bound.to_string(),
    };
    let egress = gateway.egress_addr().map(|at| at.to_string());
    Ok((
        gateway,
        GatewayAttachment::Tcp {
            address,
            token,
            egress,
        },
    ))
}

/// Moves the record to `running`, then supervises the agent process to its end: events recorded
/// as they come (the agent's, and the gateway's metered requests), the session id and usage
/// stored, the last text kept for the outcome contract. The gateway's notices can stop the run.
async fn watch_run(
    child: ExecChild,
    rec: &mut Recorder<'_>,
    req: &AgentRequest<'_>,
    budget: &RunBudget,
    result: &mut AgentResult,
    notices: &mut UnboundedReceiver<GatewayNotice>,
    asks: Option<(UnboundedReceiver<PermissionAsk>, Duration)>,
) -> Result<AgentRun, ErrorInfo> {
    let mut child = child;
    if let Err(e) = rec.transition(SandboxState::Running, None) {
        let _ = child.kill().await;
        return Err(e);
    }
    let t = Instant::now();
    let mut session_recorded = req.session_id.is_some();
    let (store, id, cancel) = (rec.store, rec.id.clone(), rec.cancel.clone());
    // The agent's events and the gateway's records are both recorded while the run is watched;
    // one task polls both, and the lock is never held across an await.
    let shared = Mutex::new(rec);
    // The gateway does not know OpenCode's session; its records get the one known when they end.
    // A first run's first request can end before OpenCode names its session: such records
    // wait for the name (or the end of the run).
    let session = Mutex::new((req.session_id.clone(), Vec::<AgentEvent>::new()));
    let emit = |event: AgentEvent| {
        let mut known = session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ready = Vec::new();
        match &event {
            AgentEvent::StepStart { session_id } if known.0.is_none() => {
                known.0 = Some(session_id.clone());
                ready.push(event);
                let waiting = std::mem::take(&mut known.1);
                ready.extend(
                    waiting
                        .into_iter()
                        .map(|e| with_session(e, known.0.as_deref())),
                );
            }
            AgentEvent::ModelRequest { .. } if known.0.is_none() => known.1.push(event),
            _ => ready.push(with_session(event, known.0.as_deref())),
        }
        drop(known);
        let mut rec = shared.lock().unwrap_or_else(PoisonError::into_inner);
        for event in ready {
            rec.emit(event);
        }
    };
    let (mut step_text, mut final_text) = (String::new(), String::new());
    let mut first_event: Option<Duration> = None;
    let in_flight = Mutex::new(None);
    let stop = Stop {
        store,
        id: id.clone(),
        name: req.name,
        cancel,
        time_left: budget.time_left(),
    };
    let stop = stop_signal(notices, stop, &emit);
    // The agent's permission requests are answered while the run is watched; they never end it.
    let approvals = async {
        match asks {
            Some((mut asks, timeout)) => {
                crate::approvals::serve(&mut asks, store, &id, timeout, &in_flight, &emit).await;
            }
            None => std::future::pending().await,
        }
    };
    let abort = async {
        tokio::select! {
            info = stop => info,
            () = approvals => std::future::pending().await,
        }
    };
    let run = supervise(child, req.limits, abort, |event| {
        first_event.get_or_insert_with(|| t.elapsed());
        match &event {
            AgentEvent::StepStart { .. } => step_text.clear(),
            AgentEvent::Text { text } => {
                step_text.push_str(text);
                final_text.clone_from(&step_text);
            }
            _ => {}
        }
        if let (false, AgentEvent::StepStart { session_id }) = (session_recorded, &event) {
            let _ = store.set_session_id(&id, session_id);
            session_recorded = true;
        }
        if let AgentEvent::StepFinish { usage, .. } = &event {
            let _ = store.add_usage(&id, usage);
        }
        emit(event);
    })
    .await;
    // A request still waiting when the run ended was never answered: the record says so.
    if let Some(request_id) = in_flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        emit(AgentEvent::ApprovalDecided {
            request_id,
            decision: warren_domain::Decision::Deny,
            by: warren_domain::DecidedBy::RunEnded,
            reason: None,
        });
    }
    // The run's last requests ended before it did; their records are waiting.
    record_metered(notices, emit);
    let waiting = std::mem::take(&mut session.lock().unwrap_or_else(PoisonError::into_inner).1);
    let mut rec = shared.lock().unwrap_or_else(PoisonError::into_inner);
    for event in waiting {
        rec.emit(event);
    }
    drop(rec);
    result.agent_ms = ms(t.elapsed());
    result.opencode_ready_ms = first_event.map_or(0.0, ms);
    result.final_text = final_text;
    Ok(run)
}

/// Resolves when the run must stop: the gateway reports something it cannot recover from, or the
/// operation's host cancels it (the work so far is still kept).
async fn stop_signal(
    notices: &mut UnboundedReceiver<GatewayNotice>,
    stop: Stop<'_>,
    emit: &impl Fn(AgentEvent),
) -> ErrorInfo {
    let time_budget = async {
        match stop.time_left {
            Some((left, line)) => {
                tokio::time::sleep(left).await;
                emit(exceeded_event(&line));
                crate::budget::exceeded(&line, stop.name)
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        info = fatal_notice(notices, stop.store, stop.id, stop.name, emit) => info,
        why = stop.cancel.cancelled() => why,
        info = time_budget => info,
    }
}

/// What can end a run from outside the agent.
struct Stop<'a> {
    store: &'a dyn StateStore,
    id: SandboxId,
    name: &'a SandboxName,
    cancel: crate::cancel::Cancel,
    /// How long until a time budget is spent.
    time_left: Option<(Duration, BudgetLine)>,
}

/// Decides the run's budgets, gives them to the gateway (starting the run's clock) and records
/// them.
fn start_budget(
    prepared: &Prepared,
    rec: &mut Recorder<'_>,
    req: &AgentRequest<'_>,
    gateway: &GatewayHandle,
) -> RunBudget {
    let budget = RunBudget::for_run(&prepared.resolved, rec.store, &rec.id, &req.budget);
    gateway.set_budget(budget.scopes());
    rec.emit(budget.event());
    budget
}

/// A gateway record with the session it belongs to, when the gateway could not know it.
fn with_session(mut event: AgentEvent, session: Option<&str>) -> AgentEvent {
    if let AgentEvent::ModelRequest { session_id, .. } = &mut event
        && session_id.is_none()
    {
        *session_id = session.map(str::to_owned);
    }
    event
}

fn exceeded_event(line: &BudgetLine) -> AgentEvent {
    AgentEvent::BudgetExceeded {
        scope: line.scope,
        budget: line.budget,
        spent: line.spent,
        limit: line.limit,
    }
}

/// Records the requests the gateway metered and the egress proxy's decisions that are waiting in
/// `notices`; other notices there came too late to matter and are dropped.
pub(crate) fn record_metered(
    notices: &mut UnboundedReceiver<GatewayNotice>,
    mut emit: impl FnMut(AgentEvent),
) {
    while let Ok(notice) = notices.try_recv() {
        match notice {
            GatewayNotice::ModelRequest(record) => emit(record.to_event()),
            GatewayNotice::Egress(record) => emit(record.to_event()),
            _ => {}
        }
    }
}

/// Resolves when the gateway reports something the run cannot recover from; records the requests
/// it metered meanwhile.
async fn fatal_notice(
    notices: &mut UnboundedReceiver<GatewayNotice>,
    store: &dyn StateStore,
    id: SandboxId,
    name: &SandboxName,
    emit: &impl Fn(AgentEvent),
) -> ErrorInfo {
    while let Some(notice) = notices.recv().await {
        match notice {
            GatewayNotice::ModelRequest(record) => emit(record.to_event()),
            GatewayNotice::BudgetWarning(line) => emit(AgentEvent::BudgetWarning {
                scope: line.scope,
                budget: line.budget,
                spent: line.spent,
                limit: line.limit,
            }),
            GatewayNotice::BudgetExceeded(line) => {
                emit(exceeded_event(&line));
                return crate::budget::exceeded(&line, name);
            }
            GatewayNotice::Egress(record) => emit(record.to_event()),
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
            GatewayNotice::UpstreamStatus { status, body } => {
                let kind = match status {
                    429 => "rate limited",
                    500..=599 => "server error",
                    _ => "error",
                };
                let body: String = body.trim().chars().take(200).collect();
                let message = format!("the model endpoint answered HTTP {status} ({kind}): {body}");
                let _ = store.append_event(&id, &AgentEvent::Gateway { message });
            }
            GatewayNotice::Blocked { method, path } => {
                let message =
                    format!("blocked a request that is not a model API call: {method} {path}");
                let _ = store.append_event(&id, &AgentEvent::Gateway { message });
            }
        }
    }
    std::future::pending().await
}

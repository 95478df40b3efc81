//! The routes. Each handler parses, checks the caller may see the sandbox, calls the engine (on
//! a blocking thread where the engine is synchronous) and returns a `warren-api` view.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use warren_api::{
    ChangesEnvelope, ExportBody, ExportEnvelope, LaunchBody, ListView, PromptBody, SandboxEnvelope,
    SyncEnvelope,
};
use warren_domain::{ReasonCode, SandboxName, SandboxState, UserFacing};
use warren_engine::{Cancel, ExportTarget, LaunchRequest, Lifecycle, NullObserver, SandboxDirs};
use warren_provider::Provider;

use crate::auth::Principal;
use crate::body::ApiJson;
use crate::error::{ApiError, ApiResult};
use crate::state::App;
use crate::tasks::TaskLauncher;

type AppState<P> = State<Arc<App<P>>>;
type Json<T> = axum::Json<T>;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ReasonCode::InvalidArgument, message)
}

/// A repository named by a request: an absolute path to a directory on the server's host.
pub(crate) fn repository(raw: &str) -> ApiResult<PathBuf> {
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(
            invalid(format!("repository {raw:?} is not an absolute path"))
                .with_hint("name the repository by its absolute path on the server's host"),
        );
    }
    // No '..': the path a client names is the one that is checked and recorded.
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(invalid(format!("repository {raw:?} has a '..' component"))
            .with_hint("name the repository by its absolute path without '..'"));
    }
    if !path.is_dir() {
        return Err(ApiError::new(
            ReasonCode::NotAGitRepo,
            format!("repository {raw:?} is not a directory on the server's host"),
        ));
    }
    Ok(path)
}

pub(crate) fn prompt(raw: &str) -> ApiResult<()> {
    if raw.trim().is_empty() {
        return Err(invalid("the prompt is empty"));
    }
    Ok(())
}

/// Adds a request's approval rules to the server's `[policy.approvals]`: a client may ask for
/// more approvals, never switch the server's off.
pub(crate) fn apply_approvals(
    config: &mut warren_config::Config,
    rules: Option<warren_api::ApprovalRules>,
) -> ApiResult<()> {
    let Some(rules) = rules else { return Ok(()) };
    if rules
        .bash
        .iter()
        .chain(&rules.edit)
        .any(|p| p.trim().is_empty())
    {
        return Err(invalid("approvals: a pattern is empty"));
    }
    let approvals = &mut config.policy.approvals;
    approvals.bash.extend(rules.bash);
    approvals.edit.extend(rules.edit);
    if let Some(secs) = rules.timeout_secs {
        if !(1..=warren_config::MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(invalid(format!(
                "approvals.timeout_secs {secs} is not {}",
                warren_config::timeout_range()
            )));
        }
        approvals.timeout_secs = secs;
    }
    Ok(())
}

/// A request's `budget`: at least one limit, and no negative amount.
pub(crate) fn budget(limits: Option<&warren_domain::BudgetLimits>) -> ApiResult<()> {
    match limits {
        Some(l) if l.is_empty() => Err(invalid("the budget sets no limit")),
        Some(l) if l.cost.is_some_and(|c| !c.is_finite() || c < 0.0) => Err(invalid(
            "budget.cost must be an amount of zero or more (US dollars)",
        )),
        _ => Ok(()),
    }
}

/// The settings for a new sandbox in `repo`, with the provider the request names.
/// Refuses a bad egress override before the repository is fetched or anything is created.
pub(crate) fn check_egress(mode: Option<&str>, allow: &[String]) -> ApiResult<()> {
    let mut scratch = warren_config::PolicyConfig::default();
    warren_engine::egress::apply_overrides(&mut scratch, mode, allow)?;
    Ok(())
}

pub(crate) fn new_config<P: Provider + 'static>(
    app: &App<P>,
    repo: &std::path::Path,
    provider: Option<&str>,
) -> ApiResult<warren_config::Config> {
    let mut config = (app.config)(Some(repo))?;
    if let Some(p) = provider {
        config.sandbox.provider = p.to_owned();
    }
    Ok(config)
}

#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes",
    request_body(content = ref("#/components/schemas/LaunchBody"), content_type = "application/json"),
    responses(
        (status = 201, description = "Launched: the agent runs (or the sandbox waits without a prompt)", body = ref("#/components/schemas/SandboxEnvelope")),
        (status = "4XX", description = "Refused; nothing was created unless the error says so", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn launch<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<LaunchBody>,
) -> ApiResult<(StatusCode, Json<SandboxEnvelope>)> {
    let name = SandboxName::parse(&body.name).map_err(|e| invalid(e.to_string()))?;
    if let Some(p) = &body.prompt {
        prompt(p)?;
    }
    budget(body.budget.as_ref())?;
    check_egress(body.egress.as_deref(), &body.allow)?;
    let repo = crate::sources::resolve(&app, &body.repository).await?;
    let record = app
        .blocking(move |app| {
            let mut config = new_config(app, &repo, body.provider.as_deref())?;
            apply_approvals(&mut config, body.approvals)?;
            warren_engine::egress::apply_overrides(
                &mut config.policy,
                body.egress.as_deref(),
                &body.allow,
            )?;
            let provider = (app.providers)(&config.sandbox.provider, &config, Some(&repo))?;
            let lc = Lifecycle::new(&provider, &config, &app.data_dir, app.store.clone());
            let launcher = TaskLauncher {
                app: app.clone(),
                owner: Some(who.owner.clone()),
            };
            let request = LaunchRequest {
                name,
                repo,
                model: body.model,
                prompt: body.prompt,
                role: body.role,
                budget: body.budget,
            };
            let handle = tokio::runtime::Handle::current();
            Ok(handle.block_on(lc.launch(request, &launcher))?)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SandboxEnvelope {
            sandbox: warren_engine::views::sandbox(&record),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only sandboxes in this state (`running`, `completed`, ...).
    state: Option<String>,
    /// Only this owner's sandboxes (admin tokens; others always see only their own).
    owner: Option<String>,
    /// Include destroyed sandboxes.
    #[serde(default)]
    all: bool,
    /// From `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500, nullable = false)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes", params(ListQuery),
    responses(
        (status = 200, description = "The sandboxes the caller may see, newest first", body = ref("#/components/schemas/ListView")),
        (status = "4XX", description = "Refused", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn list<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListView>> {
    let state = q
        .state
        .as_deref()
        .map(|s| {
            serde_json::from_value::<SandboxState>(serde_json::Value::String(s.to_owned()))
                .map_err(|_| {
                    invalid(format!("unknown state {s:?}")).with_hint(
                        "a state is one of new, queued, provisioning, running, saving, completed, error, tearing_down, destroyed",
                    )
                })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(invalid(format!("limit is 1 to 500, not {limit}"))
            .with_hint("leave it out for pages of 100"));
    }
    let view = app
        .blocking(move |app| {
            // The filters and the page run in the store: a page costs its size, not the number
            // of sandboxes recorded.
            let owner = if who.admin {
                q.owner.clone()
            } else if q.owner.as_deref().is_some_and(|o| o != who.owner) {
                return Ok(ListView {
                    sandboxes: Vec::new(),
                    next_cursor: None,
                });
            } else {
                Some(who.owner.clone())
            };
            let after = q
                .cursor
                .as_deref()
                .map(warren_domain::SandboxId::from_stored);
            // A cursor is a sandbox the caller may see; anything else is unknown to it.
            if let Some(after) = &after {
                let owner = app
                    .tenancy
                    .owner(after)
                    .map_err(|_| invalid("unknown cursor").with_hint(
                        "pass the next_cursor of the previous page, or leave it out for the first page",
                    ))?;
                if !who.sees(owner.as_deref()) {
                    return Err(invalid("unknown cursor").with_hint(
                        "pass the next_cursor of the previous page, or leave it out for the first page",
                    ));
                }
            }
            let page = app.tenancy.sandbox_page(&warren_store::PageQuery {
                owner,
                state,
                include_destroyed: q.all,
                after,
                limit,
            })?;
            let next_cursor = page
                .more
                .then(|| page.records.last().map(|r| r.id.to_string()))
                .flatten();
            Ok(ListView {
                sandboxes: page
                    .records
                    .iter()
                    .map(warren_engine::views::sandbox)
                    .collect(),
                next_cursor,
            })
        })
        .await?;
    Ok(axum::Json(view))
}

#[utoipa::path(get, path = "/v1/sandboxes/{name}", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name")),
    responses(
        (status = 200, description = "The sandbox as recorded", body = ref("#/components/schemas/SandboxEnvelope")),
        (status = 404, description = "No such sandbox (or another owner's)", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn get_sandbox<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<SandboxEnvelope>> {
    let record = app.blocking(move |app| app.find(&who, &name)).await?;
    Ok(axum::Json(SandboxEnvelope {
        sandbox: warren_engine::views::sandbox(&record),
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TeardownQuery {
    /// Export to `warren/<name>` first.
    #[serde(default)]
    export: bool,
    /// Stop a running agent and discard unexported work.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, path = "/v1/sandboxes/{name}", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name"), TeardownQuery),
    responses(
        (status = 200, description = "Torn down (`destroyed`)", body = ref("#/components/schemas/SandboxEnvelope")),
        (status = 409, description = "Busy, running, or holding unexported changes", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn teardown<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<TeardownQuery>,
) -> ApiResult<Json<SandboxEnvelope>> {
    let who2 = who.clone();
    let n = name.clone();
    let record = app.blocking(move |app| app.find(&who2, &n)).await?;
    if q.force {
        // This server's own supervisor of the sandbox is stopped by its token (a forced teardown
        // stops other processes by pid).
        let why = Cancel::stopped("a forced teardown");
        if app.tasks.cancel_sandbox(record.id.as_str(), &why) > 0 {
            app.tasks
                .wait_done(Some(record.id.as_str()), Duration::from_secs(30))
                .await;
        }
    }
    let record = app
        .blocking(move |app| {
            let config = app.config_for(&record)?;
            app.with_lifecycle(&config, |lc| {
                Ok(lc.teardown(&name, q.force, q.export, &mut NullObserver)?)
            })
        })
        .await?;
    Ok(axum::Json(SandboxEnvelope {
        sandbox: warren_engine::views::sandbox(&record),
    }))
}

#[utoipa::path(post, path = "/v1/sandboxes/{name}/prompts", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name")),
    request_body(content = ref("#/components/schemas/PromptBody"), content_type = "application/json"),
    responses(
        (status = 202, description = "The follow-up runs; follow it on the events route", body = ref("#/components/schemas/SandboxEnvelope")),
        (status = 409, description = "The sandbox is not idle", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn exec<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PromptBody>,
) -> ApiResult<(StatusCode, Json<SandboxEnvelope>)> {
    prompt(&body.prompt)?;
    budget(body.budget.as_ref())?;
    let record = app
        .blocking(move |app| {
            let record = app.find(&who, &name)?;
            let mut config = app.config_for(&record)?;
            apply_approvals(&mut config, body.approvals)?;
            let provider = (app.providers)(&record.provider, &config, Some(&record.repo))?;
            let lc = Lifecycle::new(&provider, &config, &app.data_dir, app.store.clone());
            let launcher = TaskLauncher {
                app: app.clone(),
                owner: None,
            };
            let handle = tokio::runtime::Handle::current();
            Ok(handle.block_on(lc.exec(&name, &body.prompt, body.role, body.budget, &launcher))?)
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(SandboxEnvelope {
            sandbox: warren_engine::views::sandbox(&record),
        }),
    ))
}

#[utoipa::path(post, path = "/v1/sandboxes/{name}/sync", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name")),
    request_body(content = ref("#/components/schemas/SyncBody"), content_type = "application/json"),
    responses(
        (status = 200, description = "What changed on the host since the last sync was sent in", body = ref("#/components/schemas/SyncEnvelope")),
        (status = 409, description = "The sandbox is not idle", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn sync<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<warren_api::SyncBody>,
) -> ApiResult<Json<SyncEnvelope>> {
    let report = app
        .blocking(move |app| {
            let record = app.find(&who, &name)?;
            let config = app.config_for(&record)?;
            if let Some(bundle) = &body.bundle {
                crate::sources::update_source(app, &record, bundle, &config)?;
            }
            app.with_lifecycle(&config, |lc| Ok(lc.sync(&name, &mut NullObserver)?))
        })
        .await?;
    Ok(axum::Json(SyncEnvelope {
        sync: warren_engine::views::sync(&report),
    }))
}

#[utoipa::path(post, path = "/v1/sandboxes/{name}/export", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name")),
    request_body(content = ref("#/components/schemas/ExportBody"), content_type = "application/json"),
    responses(
        (status = 200, description = "The branch written in the server's repository (and pushed to the sandbox's git URL with `push`); download it with GET /v1/sandboxes/{name}/bundle", body = ref("#/components/schemas/ExportEnvelope")),
        (status = 409, description = "Not idle, or the branch exists", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn export<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ExportBody>,
) -> ApiResult<Json<ExportEnvelope>> {
    let exported = app
        .blocking(move |app| {
            let record = app.find(&who, &name)?;
            let config = app.config_for(&record)?;
            let target = body.branch.map(ExportTarget::Branch);
            if body.push && warren_engine::source::origin_url(&record.repo).is_none() {
                return Err(ApiError(
                    warren_engine::source::SourceError::Unsupported(format!(
                        "sandbox {} was not launched from a git URL, so there is nowhere to push",
                        record.name
                    ))
                    .to_error_info(),
                ));
            }
            let exported = app.with_lifecycle(&config, |lc| {
                Ok(lc.export(&name, target, &mut NullObserver)?)
            })?;
            let mut view = warren_engine::views::export(&exported);
            if let (true, Some(branch)) = (body.push, &exported.branch) {
                let limits = warren_engine::source::SourceLimits::from_config(&config);
                let url = warren_engine::source::push_branch(&record.repo, branch, &limits)
                    .map_err(|e| ApiError(e.to_error_info()))?;
                view.pushed_to = Some(url);
            }
            Ok(view)
        })
        .await?;
    Ok(axum::Json(ExportEnvelope { export: exported }))
}

/// The diff's size cap unless the request names one, and the largest it may name.
const DIFF_BYTES_DEFAULT: u64 = 1024 * 1024;
const DIFF_BYTES_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// Cap on the diff's text, 1 to 16777216 bytes (default 1048576); past it `truncated` is set.
    #[param(minimum = 1, maximum = 16777216, nullable = false)]
    max_diff_bytes: Option<u64>,
}

#[utoipa::path(get, path = "/v1/sandboxes/{name}/changes", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name"), ChangesQuery),
    responses(
        (status = 200, description = "The files the agent changed and their unified diff (what an export would commit; empty while it runs)", body = ref("#/components/schemas/ChangesEnvelope")),
        (status = 404, description = "No such sandbox", body = ref("#/components/schemas/ErrorEnvelope")),
        (status = "4XX", description = "Refused", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn changes<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<ChangesEnvelope>> {
    let cap = q.max_diff_bytes.unwrap_or(DIFF_BYTES_DEFAULT);
    if !(1..=DIFF_BYTES_MAX).contains(&cap) {
        return Err(invalid(format!(
            "max_diff_bytes is 1 to {DIFF_BYTES_MAX}, not {cap}"
        ))
        .with_hint("leave it out for the default of 1 MiB"));
    }
    let view = app
        .blocking(move |app| {
            let record = app.find(&who, &name)?;
            let config = app.config_for(&record)?;
            let dirs = SandboxDirs::new(&app.data_dir, &record.id);
            let idle = matches!(record.state, SandboxState::Completed | SandboxState::Error);
            if idle && record.sync.is_some() && dirs.workspace.is_dir() {
                let (set, diff) = warren_engine::export::diff(&config, &record, &dirs, cap)?;
                Ok(warren_engine::views::changes(
                    record.name.as_str(),
                    &set,
                    &diff,
                ))
            } else {
                Ok(warren_engine::views::changes(
                    record.name.as_str(),
                    &Default::default(),
                    &Default::default(),
                ))
            }
        })
        .await?;
    Ok(axum::Json(ChangesEnvelope { changes: view }))
}

/// Why a caller stops what runs on a sandbox: the reason its operation records.
#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Another caller stopped it (`stopped`).
    #[default]
    Stopped,
    /// The user who started it interrupted it (Ctrl-C in the CLI's remote mode): `interrupted`,
    /// exactly as a local Ctrl-C records.
    Interrupted,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CancelQuery {
    /// The reason recorded as the operation's error (default `stopped`).
    #[serde(default)]
    #[param(inline)]
    reason: CancelReason,
}

#[utoipa::path(post, path = "/v1/sandboxes/{name}/cancel", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name"), CancelQuery),
    responses(
        (status = 202, description = "Asked to stop; its work so far is kept", body = ref("#/components/schemas/SandboxEnvelope")),
        (status = 409, description = "Nothing of this server runs on the sandbox", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn cancel<P: Provider + 'static>(
    State(app): AppState<P>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<CancelQuery>,
) -> ApiResult<(StatusCode, Json<SandboxEnvelope>)> {
    let record = app.blocking(move |app| app.find(&who, &name)).await?;
    let why = match q.reason {
        CancelReason::Stopped => Cancel::stopped("a cancel request"),
        CancelReason::Interrupted => Cancel::interrupted(),
    };
    if app.tasks.cancel_sandbox(record.id.as_str(), &why) == 0 {
        return Err(ApiError::new(
            ReasonCode::WrongState,
            format!("nothing runs on sandbox {}", record.name),
        ));
    }
    app.tasks
        .wait_done(Some(record.id.as_str()), Duration::from_secs(30))
        .await;
    let id = record.id.clone();
    let record = app.blocking(move |app| Ok(app.store.get(&id)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(SandboxEnvelope {
            sandbox: warren_engine::views::sandbox(&record),
        }),
    ))
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The store answers", body = String),
        (status = 503, description = "The store does not answer", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn readyz<P: Provider + 'static>(State(app): AppState<P>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ready = app
        .blocking(|app| {
            app.store.list(false)?;
            Ok(())
        })
        .await;
    match ready {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(warren_api::ErrorEnvelope { error: e.0 }),
        )
            .into_response(),
    }
}

pub async fn fallback() -> axum::response::Response {
    use axum::response::IntoResponse;
    let error = warren_api::ErrorEnvelope {
        error: warren_domain::ErrorInfo::new(ReasonCode::InvalidArgument, "no such route")
            .with_hint("see /openapi.json for the routes"),
    };
    (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
}

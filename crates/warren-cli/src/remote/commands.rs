//! The sandbox commands over the HTTP API. Each checks its arguments as the local command does,
//! calls the server, and renders the view that comes back with the local renderer.

use std::path::Path;

use reqwest::Method;
use serde_json::Value;
use warren_api::{
    BundleEnvelope, ExportBody, ExportEnvelope, ExportView, LaunchBody, ListView, PromptBody,
    RepositorySource, RunBody, RunSummary, SandboxEnvelope, SandboxView, StatusView, SyncBody,
    SyncEnvelope,
};
use warren_domain::{ErrorInfo, EventRecord, ReasonCode};
use warren_engine::RunObserver;

use super::client::Client;
use super::repo;
use crate::cli::{ExecArgs, ExportArgs, GlobalArgs, LaunchArgs, LogsArgs, RunArgs, TeardownArgs};
use crate::commands::{CliError, CmdResult, checks};
use crate::follow::{Follow, Seen};
use crate::output::{EventPrinter, Spinner, print_summary};
use crate::render;

fn bad_stream(what: &str, e: &impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::ServerUnreachable,
        format!("the server sent {what} warren cannot read: {e}"),
    )
}

/// The view inside `{"<key>": ...}` when `line` is that envelope. An event record is never one,
/// though some carry an `error` field of their own (a `finished` event with the agent's error).
fn envelope<'a>(line: &'a Value, key: &str) -> Option<&'a Value> {
    let object = line.as_object()?;
    (object.len() == 1).then(|| object.get(key)).flatten()
}

fn not_remote(flag: &str, hint: &str) -> CliError {
    ErrorInfo::new(
        ReasonCode::InvalidArgument,
        format!("{flag} does not work in remote mode"),
    )
    .with_hint(hint.to_owned())
    .into()
}

/// Sends the user's repository (HEAD + the uncommitted state) and returns the bundle's id.
async fn upload(client: &Client, top: &Path) -> Result<String, ErrorInfo> {
    let top_owned = top.to_path_buf();
    let outgoing = tokio::task::spawn_blocking(move || repo::bundle_for_launch(&top_owned))
        .await
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))??;
    let bytes = tokio::fs::read(&outgoing.file).await.map_err(|e| {
        ErrorInfo::new(ReasonCode::Internal, format!("cannot read the bundle: {e}"))
    })?;
    let stored: BundleEnvelope = client
        .json(
            client
                .request(Method::POST, "/v1/bundles")
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
        )
        .await?;
    Ok(stored.bundle.id)
}

/// Fetches the branch a sandbox exported into the user's repository.
async fn download(client: &Client, top: &Path, name: &str, branch: &str) -> Result<(), ErrorInfo> {
    let bytes = client
        .bytes(client.request(Method::GET, &format!("/v1/sandboxes/{name}/bundle")))
        .await?;
    let (top, branch) = (top.to_path_buf(), branch.to_owned());
    tokio::task::spawn_blocking(move || repo::fetch_branch(&top, &bytes, &branch))
        .await
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?
}

pub async fn run(client: &Client, g: &GlobalArgs, args: RunArgs) -> CmdResult<i32> {
    let name = args.name.as_deref().map(checks::sandbox_name).transpose()?;
    checks::prompt(&args.prompt, "warren run \"fix the failing test\"")?;
    let timeout_secs = args.timeout.map(checks::timeout).transpose()?;
    // A bad egress override is refused before anything is uploaded.
    warren_engine::egress::apply_overrides(
        &mut warren_config::PolicyConfig::default(),
        args.network.egress.as_deref(),
        &args.network.allow,
    )?;
    let top = repo::toplevel(&checks::repo_dir(&args.repo)?)?;
    if let Some(name) = &name {
        repo::check_branch_free(&top, &warren_engine::resolve::default_branch(name))?;
    }
    // The name is chosen here (as the local run would choose it) so that Ctrl-C can name the
    // run to cancel before the server has said anything.
    let name = name.unwrap_or_else(|| warren_domain::SandboxName::generate(&args.prompt));
    let bundle = upload(client, &top).await?;
    let body = RunBody {
        repository: RepositorySource::Bundle { bundle },
        prompt: args.prompt,
        name: Some(name.to_string()),
        model: args.model,
        role: args.role,
        provider: args.provider,
        timeout_secs,
        approvals: approval_rules(&args.approvals),
        budget: checks::budget(args.budget.as_deref())?,
        egress: args.network.egress,
        allow: args.network.allow,
    };
    let mut lines = client
        .lines(client.request(Method::POST, "/v1/runs").json(&body))
        .await?;
    let mut printer = EventPrinter::new(g.json);
    let mut summary: Option<RunSummary> = None;
    // Ctrl-C stops the run as it does locally: the server cancels it, keeps and exports its work,
    // and the stream still ends with the summary. A second Ctrl-C leaves at once.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, format!("cannot watch Ctrl-C: {e}")))?;
    let mut cancel: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let line = tokio::select! {
            line = lines.next() => line?,
            _ = interrupts.recv() => {
                if cancel.is_some() {
                    return Ok(130);
                }
                cancel = Some(tokio::spawn(cancel_run(client.clone(), name.to_string())));
                continue;
            }
        };
        let Some(line) = line else { break };
        if let Some(s) = envelope(&line, "summary") {
            summary =
                Some(serde_json::from_value(s.clone()).map_err(|e| bad_stream("a summary", &e))?);
        } else if let Some(e) = envelope(&line, "error") {
            let error: ErrorInfo =
                serde_json::from_value(e.clone()).map_err(|e| bad_stream("an error", &e))?;
            return Err(error.into());
        } else {
            let record: EventRecord =
                serde_json::from_value(line).map_err(|e| bad_stream("an event", &e))?;
            printer.event(&record);
        }
    }
    let summary = summary.ok_or_else(|| {
        ErrorInfo::new(
            ReasonCode::ServerUnreachable,
            "the run's stream ended without its summary",
        )
        .with_hint("the run goes on on the server: 'warren list' shows it")
    })?;
    if let Some(branch) = &summary.branch {
        download(client, &top, &summary.name, branch).await?;
    }
    print_summary(&summary, g.json)?;
    Ok(match &summary.error {
        None => 0,
        Some(e) => e.reason_code.exit_class().code(),
    })
}

/// Asks the server to stop the run `name` (its work is kept); a failure is only reported, since
/// the run's own stream says how it ended.
async fn cancel_run(client: Client, name: String) {
    let asked = client
        .send(client.request(
            Method::POST,
            &format!("/v1/sandboxes/{name}/cancel?reason=interrupted"),
        ))
        .await;
    if let Err(e) = asked {
        eprintln!(
            "warren: could not stop the run on the server: {}",
            e.message
        );
    }
}

pub async fn launch(client: &Client, g: &GlobalArgs, args: LaunchArgs) -> CmdResult<i32> {
    let name = checks::sandbox_name(&args.name)?;
    if let Some(prompt) = &args.prompt {
        checks::prompt(prompt, "--prompt \"fix the failing test\"")?;
    }
    if args.profile.is_some() {
        return Err(not_remote(
            "--profile",
            "image profiles are the server's: set sandbox.image_profile in the server's config",
        ));
    }
    let budget = checks::budget(args.budget.as_deref())?;
    warren_engine::egress::apply_overrides(
        &mut warren_config::PolicyConfig::default(),
        args.network.egress.as_deref(),
        &args.network.allow,
    )?;
    let top = repo::toplevel(&checks::repo_dir(&args.repo)?)?;
    let spinner = Spinner::start(g.json, &format!("launching {name}"));
    let launched = async {
        let bundle = upload(client, &top).await?;
        let body = LaunchBody {
            repository: RepositorySource::Bundle { bundle },
            name: name.to_string(),
            prompt: args.prompt,
            model: args.model,
            role: args.role,
            provider: args.provider,
            approvals: approval_rules(&args.approvals),
            budget,
            egress: args.network.egress,
            allow: args.network.allow,
        };
        client.post::<SandboxEnvelope>("/v1/sandboxes", &body).await
    }
    .await;
    spinner.finish();
    render::sandbox(&launched?.sandbox, g.json, true)?;
    Ok(0)
}

async fn sandbox(client: &Client, name: &str) -> Result<SandboxView, ErrorInfo> {
    Ok(client
        .get::<SandboxEnvelope>(&format!("/v1/sandboxes/{name}"))
        .await?
        .sandbox)
}

/// The seq of the last event recorded for `name`.
async fn last_seq(client: &Client, name: &str) -> Result<u64, ErrorInfo> {
    let mut lines = client
        .lines(client.request(
            Method::GET,
            &format!("/v1/sandboxes/{name}/events?recorded=true"),
        ))
        .await?;
    let mut last = 0;
    while let Some(line) = lines.next().await? {
        if let Some(seq) = line.get("seq").and_then(Value::as_u64) {
            last = seq;
        }
    }
    Ok(last)
}

pub async fn exec(client: &Client, g: &GlobalArgs, args: ExecArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    checks::prompt(
        &args.prompt,
        &format!("warren exec {} \"now add a regression test\"", args.name),
    )?;
    let since = last_seq(client, &args.name).await?;
    let body = PromptBody {
        prompt: args.prompt,
        role: args.role,
        approvals: approval_rules(&args.approvals),
        budget: checks::budget(args.budget.as_deref())?,
    };
    let started: SandboxEnvelope = client
        .post(&format!("/v1/sandboxes/{}/prompts", args.name), &body)
        .await?;
    if args.detach {
        render::detached(&started.sandbox, g.json)?;
        return Ok(0);
    }
    follow(client, g.json, &args.name, since, Follow::Prompt).await
}

pub async fn logs(client: &Client, g: &GlobalArgs, args: &LogsArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    let how = if args.follow {
        Follow::UntilIdle
    } else {
        Follow::No
    };
    follow(client, g.json, &args.name, args.since, how).await
}

/// Prints a sandbox's events from the server, with the exit code the local follower gives.
async fn follow(
    client: &Client,
    json: bool,
    name: &str,
    since: u64,
    how: Follow,
) -> CmdResult<i32> {
    let recorded = if how == Follow::No {
        "&recorded=true"
    } else {
        ""
    };
    let mut lines = client
        .lines(client.request(
            Method::GET,
            &format!("/v1/sandboxes/{name}/events?since={since}{recorded}"),
        ))
        .await?;
    let mut printer = EventPrinter::new(json);
    let mut seen = Seen::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let line = tokio::select! {
            line = lines.next() => line?,
            _ = &mut ctrl_c => return Ok(0),
        };
        let Some(line) = line else { break };
        if let Some(e) = envelope(&line, "error") {
            let error: ErrorInfo =
                serde_json::from_value(e.clone()).map_err(|e| bad_stream("an error", &e))?;
            return Err(error.into());
        }
        let record: EventRecord =
            serde_json::from_value(line).map_err(|e| bad_stream("an event", &e))?;
        printer.event(&record);
        seen.event(&record);
    }
    if how == Follow::No {
        return Ok(0);
    }
    let r = sandbox(client, name).await?;
    Ok(seen.exit(how, r.name.as_str(), r.state, r.error.as_ref())?)
}

pub async fn list(client: &Client, g: &GlobalArgs, all: bool) -> CmdResult<i32> {
    let mut sandboxes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor
            .as_deref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page: ListView = client
            .get(&format!("/v1/sandboxes?all={all}&limit=500{after}"))
            .await?;
        sandboxes.extend(page.sandboxes);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    render::list(&sandboxes, all, g.json)?;
    Ok(0)
}

pub async fn status(client: &Client, g: &GlobalArgs, name: &str) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    let view: StatusView = client.get(&format!("/v1/sandboxes/{name}/status")).await?;
    render::status(view, g.json)?;
    Ok(0)
}

/// Exports on the server and fetches the branch into the repository around the current
/// directory; an export the server already made (a fetch that failed before) is fetched again.
async fn export_and_fetch(
    client: &Client,
    name: &str,
    branch: Option<String>,
) -> Result<ExportView, ErrorInfo> {
    let cwd = std::env::current_dir()
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, format!("no current directory: {e}")))?;
    let top = repo::toplevel(&cwd)?;
    let wanted = branch.clone().unwrap_or_else(|| format!("warren/{name}"));
    repo::check_branch_free(&top, &wanted)?;
    let body = ExportBody {
        branch,
        push: false,
    };
    let exported = client
        .post::<ExportEnvelope>(&format!("/v1/sandboxes/{name}/export"), &body)
        .await;
    let mut view = match exported {
        Ok(e) => e.export,
        Err(e) if e.reason_code == ReasonCode::BranchExists => {
            let r = sandbox(client, name).await?;
            if r.branch.as_deref() != Some(wanted.as_str()) {
                return Err(e);
            }
            ExportView {
                branch: r.branch.clone(),
                patch: None,
                files_changed: r.changed_files.unwrap_or(0),
                commit: None,
                keep_cr: false,
                based_on: r
                    .sync
                    .as_ref()
                    .and_then(|s| s.get("head"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                head_moved_to: None,
                pushed_to: None,
            }
        }
        Err(e) => return Err(e),
    };
    if let Some(branch) = &view.branch {
        download(client, &top, name, branch).await?;
    }
    view.head_moved_to = match (&view.based_on, repo::head(&top)) {
        (Some(base), Some(now)) if *base != now => Some(now),
        _ => None,
    };
    Ok(view)
}

pub async fn export(client: &Client, g: &GlobalArgs, args: ExportArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    if args.patch.is_some() {
        return Err(not_remote(
            "--patch",
            &format!(
                "export the branch ('warren export {}'), then 'git format-patch BASE..warren/{}' writes the series",
                args.name, args.name
            ),
        ));
    }
    let spinner = Spinner::start(g.json, &format!("exporting {}", args.name));
    let view = export_and_fetch(client, &args.name, args.branch).await;
    spinner.finish();
    render::export(&view?, &args.name, g.json)?;
    Ok(0)
}

pub async fn teardown(client: &Client, g: &GlobalArgs, args: TeardownArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    if args.export && sandbox(client, &args.name).await?.branch.is_none() {
        export_and_fetch(client, &args.name, None).await?;
    }
    let envelope: SandboxEnvelope = client
        .json(client.request(
            Method::DELETE,
            &format!("/v1/sandboxes/{}?force={}", args.name, args.force),
        ))
        .await?;
    render::sandbox(&envelope.sandbox, g.json, false)?;
    Ok(0)
}

/// Sends the repository around the current directory as it is now; the server brings its copy
/// up to it and syncs what changed into the sandbox.
pub async fn sync(client: &Client, g: &GlobalArgs, name: &str) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    let cwd = std::env::current_dir()
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, format!("no current directory: {e}")))?;
    let top = repo::toplevel(&cwd)?;
    let bundle = upload(client, &top).await?;
    let body = SyncBody {
        bundle: Some(bundle),
    };
    let synced: SyncEnvelope = client
        .post(&format!("/v1/sandboxes/{name}/sync"), &body)
        .await?;
    render::sync(&synced.sync, name, g.json)?;
    Ok(0)
}

/// `approve` / `deny` against a server: the same answer, through its API.
pub async fn answer(
    client: &Client,
    g: &GlobalArgs,
    name: &str,
    request: Option<&str>,
    decision: warren_domain::Decision,
    reason: Option<String>,
) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    let body = warren_api::ApprovalBody { decision, reason };
    let request = request.unwrap_or("current");
    let answered: warren_api::ApprovalEnvelope = client
        .post(&format!("/v1/sandboxes/{name}/approvals/{request}"), &body)
        .await?;
    crate::render::approval(&answered.approval, name, g.json)?;
    Ok(0)
}

/// The approval flags as the request's rules; `None` (the server's policy) when none is given.
fn approval_rules(flags: &crate::cli::ApprovalFlags) -> Option<warren_api::ApprovalRules> {
    (!flags.bash.is_empty() || !flags.edit.is_empty() || flags.approval_timeout.is_some()).then(
        || warren_api::ApprovalRules {
            bash: flags.bash.clone(),
            edit: flags.edit.clone(),
            timeout_secs: flags.approval_timeout,
        },
    )
}

/// `warren audit REV` against the server: the trailers are read here, the trail there.
pub async fn audit(
    client: &Client,
    g: &GlobalArgs,
    args: &crate::cli::AuditArgs,
) -> CmdResult<i32> {
    let found = crate::commands::audit::read_commit(&args.repo, &args.rev)?;
    let view: warren_api::AuditView = client
        .get(&format!("/v1/sandboxes/{}/audit", found.sandbox))
        .await?;
    crate::commands::audit::print(view, found.commit, g.json)
}

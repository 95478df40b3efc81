//! Commands that read state: list, status, logs (with follow), open, config show. Reads never
//! write: a sandbox whose supervisor died is shown as such (the reconciler's pure assessment),
//! and recorded only by the reconciler (`gc`, and the sweep `list` runs).

use std::path::Path;
use std::time::Duration;

use warren_api::{OpenEnvelope, OpenView};
use warren_domain::{ErrorInfo, ReasonCode, SandboxState, UserFacing};
use warren_engine::reconcile::needs_supervisor;
use warren_engine::{Assessment, Lifecycle, RunObserver, SandboxDirs, assess};
use warren_provider_local::LocalProvider;
use warren_store::SandboxRecord;

use super::{CmdResult, checks, load_config, with_lifecycle};
use crate::cli::{GlobalArgs, LogsArgs};
use crate::follow::{Follow, Seen};
use crate::output::{EventPrinter, print_json};
use crate::provider::AnyProvider;
use crate::render;
use crate::views;

pub async fn list(global: &GlobalArgs, all: bool) -> CmdResult<i32> {
    let config = load_config(None, Vec::new())?.config;
    let (records, owners, accounted) = with_lifecycle(global, &config, |lc| {
        // Listing is when users look: apply retention and drop dead leases first, so what they
        // see is current (a failed sweep never hides the list).
        if let Err(e) = lc.gc() {
            tracing::warn!("retention sweep failed: {e}");
        }
        let records = lc.list(all)?;
        let owners = super::lifecycle::container_owners(lc)?;
        Ok((records, owners, lc.accounted()?))
    })?;
    if records.iter().any(|r| r.provider == "docker") || config.sandbox.provider == "docker" {
        super::lifecycle::docker_sweep(&config, &owners, false).await;
    }
    let kube = records.iter().any(|r| r.provider == "kubernetes")
        || config.sandbox.provider == "kubernetes";
    super::lifecycle::kube_sweep(&config, &accounted, kube).await;
    let views: Vec<_> = records.iter().map(views::sandbox).collect();
    render::list(&views, all, global.json)?;
    Ok(0)
}

pub fn status(global: &GlobalArgs, name: &str) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    let config = load_config(None, Vec::new())?.config;
    let view = with_lifecycle(global, &config, |lc| {
        let r = lc.find(name)?;
        let (view, warning) =
            warren_engine::status::status(&*lc.store, lc.data_dir, lc.config, &r)?;
        if let Some(e) = warning {
            // Status must still show a sandbox whose workspace cannot be read cleanly.
            eprintln!(
                "warning: cannot list the changed files: {} [{}]",
                e.message, e.reason_code
            );
        }
        Ok(view)
    })?;
    render::status(view, global.json)?;
    Ok(0)
}

/// Prints recorded events; with `follow`, keeps printing new ones until the sandbox is idle.
pub async fn logs(global: &GlobalArgs, args: &LogsArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    let config = load_config(None, Vec::new())?.config;
    let provider = AnyProvider::Local(LocalProvider::new());
    let data_dir = super::data_dir(global)?;
    let lc = Lifecycle::new(&provider, &config, &data_dir, super::open_store(&data_dir)?);
    let mut printer = EventPrinter::new(global.json);
    let follow = if args.follow {
        Follow::UntilIdle
    } else {
        Follow::No
    };
    follow_events(&lc, &args.name, args.since, follow, &mut printer).await
}

pub(crate) async fn follow_events(
    lc: &Lifecycle<'_, AnyProvider>,
    name: &str,
    since: u64,
    follow: Follow,
    printer: &mut EventPrinter,
) -> CmdResult<i32> {
    let mut seq = since;
    let mut seen = Seen::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        // Pure reads: following a sandbox never changes it.
        let record = lc.find(name)?;
        let events = lc
            .store
            .events(&record.id, seq, None)
            .map_err(|e| e.to_error_info())?;
        for event in &events {
            printer.event(event);
            seq = event.seq;
            seen.event(event);
        }
        let lease = lc.store.lease(&record.id).map_err(|e| e.to_error_info())?;
        let verdict = assess(&record, lease.as_ref(), time::OffsetDateTime::now_utc());
        let busy = needs_supervisor(record.state) || lease.is_some();
        if follow != Follow::No && verdict == Assessment::SupervisorLost && events.is_empty() {
            return Err(lost(&record).into());
        }
        if follow == Follow::No || (!busy && events.is_empty()) {
            return Ok(seen.exit(
                follow,
                record.name.as_str(),
                record.state,
                record.error.as_ref(),
            )?);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(150)) => {}
            _ = &mut ctrl_c => return Ok(0),
        }
    }
}

/// A sandbox whose supervisor died: said by a read, recorded only by the reconciler.
fn lost(record: &SandboxRecord) -> ErrorInfo {
    crate::hints::for_sandbox(warren_engine::reconcile::lost_error(record), &record.name)
}

pub fn open(global: &GlobalArgs, name: &str) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    let config = load_config(None, Vec::new())?.config;
    with_lifecycle(global, &config, |lc| {
        let r = lc.find(name)?;
        if r.state == SandboxState::Destroyed {
            return Err(ErrorInfo::new(
                ReasonCode::WrongState,
                format!("sandbox {} was torn down", r.name),
            )
            .with_hint(format!(
                "its record stays ('warren status {}'); launch a new sandbox to work on",
                r.name
            ))
            .into());
        }
        let dirs = SandboxDirs::new(lc.data_dir, &r.id);
        let exec = format!("warren exec {} \"<your follow-up prompt>\"", r.name);
        let warm = warren_engine::warm_control::warm_info(&dirs);
        if global.json {
            print_json(&OpenEnvelope {
                open: OpenView {
                    name: r.name.clone(),
                    provider: r.provider.clone(),
                    state: r.state,
                    workspace: dirs.workspace.to_string_lossy().into_owned(),
                    session_id: r.session_id.clone(),
                    exec,
                    logs: format!("warren logs {} -f", r.name),
                    server_socket: warm
                        .as_ref()
                        .map(|w| w.socket.to_string_lossy().into_owned()),
                },
            })?;
            return Ok(0);
        }
        println!("sandbox {} ({}, {})", r.name, r.provider, r.state);
        println!("  workspace:  {}", dirs.workspace.display());
        if let Some(session) = &r.session_id {
            println!("  session:    {session}");
        }
        println!("  continue:   {exec}");
        println!("  watch:      warren logs {} -f", r.name);
        match &warm {
            Some(w) => println!(
                "  server:     {} (OpenCode's HTTP API, warm until {} s idle; e.g. curl --unix-socket {} http://opencode/session)",
                w.socket.display(),
                w.idle_secs,
                w.socket.display()
            ),
            None => eprintln!(
                "No OpenCode server is warm for this sandbox: the next exec boots one on the saved session."
            ),
        }
        Ok(0)
    })
}

pub fn config_show(json: bool, repo: Option<&Path>) -> CmdResult<i32> {
    let repo = repo.map(checks::repo_dir).transpose()?;
    let loaded = load_config(repo.as_deref(), Vec::new())?;
    if json {
        print_json(&views::config(&loaded)?)?;
        return Ok(0);
    }
    let text = toml::to_string_pretty(&loaded.config)
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
    println!("{text}");
    for (key, source) in &loaded.sources {
        eprintln!("# {key} = from {source}");
    }
    Ok(0)
}

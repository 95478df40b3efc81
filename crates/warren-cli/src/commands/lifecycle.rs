//! Commands that change a sandbox: launch, exec, export, pull, teardown, gc, and the hidden
//! monitor entry point that launch and exec start in the background.

use warren_api::{GcView, ImageEnvelope, ImageView, PullEnvelope};
use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_engine::{Cancel, Engine, ExportTarget, LaunchRequest, Lifecycle, MonitorJob};
use warren_provider_local::LocalProvider;
use warren_store::StateStore;

use super::read::follow_events;
use super::{CmdResult, checks, data_dir, load_config, open_store, with_lifecycle};
use crate::cli::{
    ExecArgs, ExportArgs, GlobalArgs, LaunchArgs, MonitorArgs, PullArgs, TeardownArgs,
};
use crate::follow::Follow;
use crate::output::{EventPrinter, Spinner, print_json};
use crate::provider::AnyProvider;
use crate::render;
use crate::supervisor::{MONITOR_CONFIG_ENV, ProcessLauncher, cancel_on_signals};
use crate::views;

/// The config that applies to an existing sandbox: its repository's `.warren.toml` included.
fn config_for(global: &GlobalArgs, name: &str) -> CmdResult<Config> {
    config_with_flags(global, name, Vec::new())
}

fn config_with_flags(
    global: &GlobalArgs,
    name: &str,
    flags: Vec<(String, toml::Value, String)>,
) -> CmdResult<Config> {
    let base = load_config(None, Vec::new())?.config;
    let repo = with_lifecycle(global, &base, |lc| Ok(lc.find(name)?.repo))?;
    Ok(load_config(repo.is_dir().then_some(repo.as_path()), flags)?.config)
}

pub async fn launch(global: &GlobalArgs, args: LaunchArgs) -> CmdResult<i32> {
    let name = checks::sandbox_name(&args.name)?;
    if let Some(prompt) = &args.prompt {
        checks::prompt(prompt, "--prompt \"fix the failing test\"")?;
    }
    let repo = checks::repo_dir(&args.repo)?;
    let budget = checks::budget(args.budget.as_deref())?;
    let mut flags = Vec::new();
    if let Some(provider) = &args.provider {
        flags.push((
            "sandbox.provider".to_owned(),
            toml::Value::String(provider.clone()),
            "--provider".to_owned(),
        ));
    }
    if let Some(profile) = &args.profile {
        flags.push((
            "sandbox.image_profile".to_owned(),
            toml::Value::String(profile.clone()),
            "--profile".to_owned(),
        ));
    }
    flags.extend(checks::approval_flags(&args.approvals)?);
    let mut config = load_config(Some(&repo), flags)?.config;
    warren_engine::egress::apply_overrides(
        &mut config.policy,
        args.network.egress.as_deref(),
        &args.network.allow,
    )?;
    checks::model_and_role(&config, args.model.as_deref(), args.role.as_deref())?;
    let provider = AnyProvider::from_config(&config, Some(&repo))?;
    let data_dir = data_dir(global)?;
    let lc = Lifecycle::new(&provider, &config, &data_dir, open_store(&data_dir)?);
    let launcher = ProcessLauncher::new(data_dir.clone())?;
    let spinner = Spinner::start(global.json, &format!("launching {name}"));
    let record = lc
        .launch(
            LaunchRequest {
                name,
                repo,
                model: args.model,
                prompt: args.prompt,
                role: args.role,
                budget,
            },
            &launcher,
        )
        .await;
    spinner.finish();
    let record = record?;
    render::sandbox(&views::sandbox(&record), global.json, true)?;
    Ok(0)
}

pub async fn exec(global: &GlobalArgs, args: ExecArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    checks::prompt(
        &args.prompt,
        &format!("warren exec {} \"now add a regression test\"", args.name),
    )?;
    let flags = checks::approval_flags(&args.approvals)?;
    let budget = checks::budget(args.budget.as_deref())?;
    let config = config_with_flags(global, &args.name, flags)?;
    checks::model_and_role(&config, None, args.role.as_deref())?;
    let provider = AnyProvider::Local(LocalProvider::new());
    let data_dir = data_dir(global)?;
    let lc = Lifecycle::new(&provider, &config, &data_dir, open_store(&data_dir)?);
    let before = lc.find(&args.name)?;
    let last_seq = lc
        .store
        .events(&before.id, 0, None)
        .map(|e| e.last().map_or(0, |r| r.seq))
        .unwrap_or(0);
    let launcher = ProcessLauncher::new(data_dir.clone())?;
    let record = lc
        .exec(
            &args.name,
            &args.prompt,
            args.role.clone(),
            budget,
            &launcher,
        )
        .await?;
    if args.detach {
        render::detached(&views::sandbox(&record), global.json)?;
        return Ok(0);
    }
    let mut printer = EventPrinter::new(global.json);
    follow_events(&lc, &args.name, last_seq, Follow::Prompt, &mut printer).await
}

pub fn export(global: &GlobalArgs, args: ExportArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    // The destination is checked before the engine takes the lease and moves the sandbox to
    // `saving`: a refused export changes nothing.
    let patch = args
        .patch
        .as_deref()
        .map(|file| checks::patch_file(file, args.force))
        .transpose()?;
    let config = config_for(global, &args.name)?;
    let target = match (args.branch, patch) {
        (Some(branch), _) => Some(ExportTarget::Branch(branch)),
        (None, Some(file)) => Some(ExportTarget::Patch(file)),
        (None, None) => None,
    };
    let spinner = Spinner::start(global.json, &format!("exporting {}", args.name));
    let mut printer = EventPrinter::new(false);
    let result = with_lifecycle(global, &config, |lc| {
        Ok(lc.export(&args.name, target, &mut printer)?)
    });
    spinner.finish();
    let exported = result?;
    render::export(&views::export(&exported), &args.name, global.json)?;
    Ok(0)
}

pub fn sync(global: &GlobalArgs, name: &str) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    let config = config_for(global, name)?;
    let mut printer = EventPrinter::new(false);
    let report = with_lifecycle(global, &config, |lc| Ok(lc.sync(name, &mut printer)?))?;
    render::sync(&views::sync(&report), name, global.json)?;
    Ok(0)
}

pub fn pull(global: &GlobalArgs, args: PullArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    checks::pull_dir(&args.to)?;
    let config = config_for(global, &args.name)?;
    let report = with_lifecycle(global, &config, |lc| Ok(lc.pull(&args.name, &args.to)?))?;
    if global.json {
        print_json(&PullEnvelope {
            pull: views::pull(&report),
        })?;
    } else {
        println!(
            "wrote {} changed files to {}; {} deletions listed in {}",
            report.written,
            report.dir.display(),
            report.deleted,
            report.manifest.display()
        );
    }
    Ok(0)
}

pub async fn teardown(global: &GlobalArgs, args: TeardownArgs) -> CmdResult<i32> {
    checks::sandbox_name(&args.name)?;
    let config = config_for(global, &args.name)?;
    let mut printer = EventPrinter::new(false);
    let record = with_lifecycle(global, &config, |lc| {
        Ok(lc.teardown(&args.name, args.force, args.export, &mut printer)?)
    })?;
    if record.provider == "docker" {
        remove_sandbox_containers(&config, record.id.as_str()).await;
    }
    render::sandbox(&views::sandbox(&record), global.json, false)?;
    Ok(0)
}

/// Before a command reads or removes a kubernetes sandbox's files: a pod a dead warren left
/// holds work the host directories do not have yet, so it is read back first (what `gc` and
/// `list` do; a no-op for a live sandbox, another provider, or a name that is not there, whose
/// error the command itself reports).
pub(crate) async fn settle_leftover_pod(global: &GlobalArgs, name: &str) {
    let Ok(config) = config_for(global, name) else {
        return;
    };
    let found = with_lifecycle(global, &config, |lc| {
        let record = lc.find(name)?;
        Ok((record.provider == "kubernetes")
            .then(|| lc.accounted())
            .transpose()?)
    });
    if let Ok(Some(accounted)) = found {
        kube_sweep(&config, &accounted, true).await;
    }
}

/// A docker sandbox's container ends with the process that held it, but stays listed until
/// removed: teardown removes whatever is left of this sandbox's containers.
async fn remove_sandbox_containers(config: &Config, sandbox_id: &str) {
    let Ok(provider) = AnyProvider::for_kind("docker", config, None) else {
        return;
    };
    let Some(docker) = provider.docker() else {
        return;
    };
    if let Ok(containers) = docker.list_containers().await {
        for c in containers
            .into_iter()
            .filter(|c| c.sandbox_id == sandbox_id)
        {
            let _ = docker.remove_container(&c.id).await;
        }
    }
}

/// A container younger than this is never an orphan: its record may not be written yet.
const ORPHAN_GRACE_SECS: i64 = 60;

pub async fn gc(global: &GlobalArgs, volumes: bool) -> CmdResult<i32> {
    let config = load_config(None, Vec::new())?.config;
    let (report, owners, accounted, kube) = with_lifecycle(global, &config, |lc| {
        Ok((
            lc.gc()?,
            container_owners(lc)?,
            lc.accounted()?,
            uses_provider(lc, &config, "kubernetes")?,
        ))
    })?;
    let (orphan_containers, removed_volumes) = docker_sweep(&config, &owners, volumes).await;
    let pods = kube_sweep(&config, &accounted, kube).await;
    if global.json {
        print_json(&GcView {
            gc: views::gc(&report),
            orphan_containers_removed: orphan_containers,
            volumes_removed: removed_volumes,
            pods_recovered: pods.recovered,
            orphan_pods_removed: pods.removed,
        })?;
        return Ok(0);
    }
    let line = |label: &str, items: &[String]| {
        if !items.is_empty() {
            println!("{label}: {}", items.join(", "));
        }
    };
    line("expired leases", &report.expired_leases);
    line(
        "marked error (nothing supervised them)",
        &report.marked_error,
    );
    line("torn down (past retention, exported)", &report.torn_down);
    line(
        "kept (past retention but unexported)",
        &report.kept_unexported,
    );
    line("orphan directories removed", &report.orphan_dirs_removed);
    line("orphan containers removed", &orphan_containers);
    line("volumes removed", &removed_volumes);
    line(
        "pods recovered (their files are back in the sandbox)",
        &pods.recovered,
    );
    line("orphan pods removed", &pods.removed);
    let all = [
        &pods.recovered,
        &pods.removed,
        &report.expired_leases,
        &report.marked_error,
        &report.torn_down,
        &report.kept_unexported,
        &report.orphan_dirs_removed,
        &orphan_containers,
        &removed_volumes,
    ];
    if all.iter().all(|items| items.is_empty()) {
        println!("nothing to collect");
    }
    Ok(0)
}

/// Whether this machine has anything on `kind`: new sandboxes go there, or a record says one did.
pub(crate) fn uses_provider(
    lc: &Lifecycle<'_, AnyProvider>,
    config: &Config,
    kind: &str,
) -> CmdResult<bool> {
    Ok(config.sandbox.provider == kind
        || lc
            .store
            .list(true)
            .map_err(|e| e.to_error_info())?
            .iter()
            .any(|r| r.provider == kind))
}

/// Reads back and removes the pods a dead warren left (see `warren_engine::leftovers`), when this
/// machine uses the kubernetes provider at all; a cluster that does not answer is skipped.
pub(crate) async fn kube_sweep(
    config: &Config,
    accounted: &warren_engine::leftovers::Accounted,
    uses_kubernetes: bool,
) -> warren_engine::leftovers::LeftoverReport {
    if !uses_kubernetes {
        return Default::default();
    }
    let Ok(provider) = AnyProvider::for_kind("kubernetes", config, None) else {
        return Default::default();
    };
    warren_engine::leftovers::sweep_leftovers(
        &provider,
        accounted,
        &warren_engine::export::sync_limits(config),
    )
    .await
}

/// Which sandboxes may legitimately have a container right now, and which are known at all.
pub(crate) struct ContainerOwners {
    /// A live lease holds them, or a live monitor keeps their OpenCode warm.
    live: std::collections::HashSet<String>,
    /// Recorded and past `new`: a container of theirs that is not live is left over, at once.
    settled: std::collections::HashSet<String>,
}

pub(crate) fn container_owners(lc: &Lifecycle<'_, AnyProvider>) -> CmdResult<ContainerOwners> {
    let mut owners = ContainerOwners {
        live: Default::default(),
        settled: Default::default(),
    };
    for r in lc.store.list(false).map_err(|e| e.to_error_info())? {
        let dirs = warren_engine::SandboxDirs::new(lc.data_dir, &r.id);
        let warm =
            warren_engine::warm_control::warm_info(&dirs).is_some_and(|w| w.monitor.is_alive());
        if warm || lc.store.lease(&r.id).ok().flatten().is_some() {
            owners.live.insert(r.id.to_string());
        } else if r.state != warren_domain::SandboxState::New {
            owners.settled.insert(r.id.to_string());
        }
    }
    Ok(owners)
}

/// Removes this owner's warren containers that no live operation accounts for: at once when
/// their sandbox is recorded and settled (its supervisor is done or dead), after a grace period
/// when no record accounts for them yet. With `volumes`, the dependency volumes no container
/// uses. Quietly does nothing when no Docker engine is configured or reachable.
pub(crate) async fn docker_sweep(
    config: &Config,
    owners: &ContainerOwners,
    volumes: bool,
) -> (Vec<String>, Vec<String>) {
    let Ok(provider) = AnyProvider::for_kind("docker", config, None) else {
        return (Vec::new(), Vec::new());
    };
    let Some(docker) = provider.docker() else {
        return (Vec::new(), Vec::new());
    };
    let owner = docker.settings().owner.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut removed = Vec::new();
    if let Ok(containers) = docker.list_containers().await {
        for c in containers {
            let orphan = c.owner == owner
                && !owners.live.contains(&c.sandbox_id)
                && (owners.settled.contains(&c.sandbox_id) || now - c.created > ORPHAN_GRACE_SECS);
            if orphan && docker.remove_container(&c.id).await.is_ok() {
                removed.push(c.name);
            }
        }
    }
    let volumes_removed = if volumes {
        docker.remove_volumes().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    (removed, volumes_removed)
}

pub async fn image_build(global: &GlobalArgs, args: crate::cli::ImageBuildArgs) -> CmdResult<i32> {
    let config = load_config(None, Vec::new())?.config;
    let tag = match (&args.tag, &args.profile) {
        (Some(tag), _) => tag.clone(),
        (None, Some(profile)) => config
            .sandbox
            .image_profiles
            .get(profile)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = config
                    .sandbox
                    .image_profiles
                    .keys()
                    .map(String::as_str)
                    .collect();
                ErrorInfo::new(
                    ReasonCode::InvalidConfig,
                    format!("no image profile {profile:?} in sandbox.image_profiles"),
                )
                .with_hint(format!(
                    "pass --profile one of {}, or add {profile} = \"<image tag>\" under [sandbox.image_profiles]",
                    known.join(", ")
                ))
            })?,
        (None, None) => warren_provider_docker::DEFAULT_SANDBOX_IMAGE.to_owned(),
    };
    let tools = warren_engine::Tools::locate(config.opencode.binary.as_deref())?;
    let provider = AnyProvider::for_kind("docker", &config, None)?;
    let docker = provider
        .docker()
        .ok_or_else(|| ErrorInfo::new(ReasonCode::Internal, "docker provider expected"))?;
    let client = docker.docker().await.map_err(|e| e.to_error_info())?;
    let mut opts = warren_provider_docker::ImageBuildOptions::new(tools.opencode, tools.init);
    opts.base = args.base;
    opts.tag = tag.clone();
    let spinner = Spinner::start(global.json, &format!("building {tag}"));
    let id = warren_provider_docker::build_image(client, &opts).await;
    spinner.finish();
    let id = id.map_err(|e| e.to_error_info())?;
    if global.json {
        print_json(&ImageEnvelope {
            image: ImageView { tag, id },
        })?;
    } else {
        println!("built {tag} ({id})");
    }
    Ok(0)
}

pub async fn monitor(global: &GlobalArgs, args: MonitorArgs) -> CmdResult<i32> {
    let job: MonitorJob = serde_json::from_str(&args.job).map_err(|e| {
        ErrorInfo::new(ReasonCode::InvalidArgument, format!("bad monitor job: {e}"))
            .with_hint("__monitor is started by 'warren launch' and 'warren exec', not by hand")
    })?;
    let config: Config = match std::env::var(MONITOR_CONFIG_ENV) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            ErrorInfo::new(
                ReasonCode::InvalidConfig,
                format!("bad monitor config: {e}"),
            )
        })?,
        Err(_) => load_config(None, Vec::new())?.config,
    };
    let data_dir = data_dir(global)?;
    // The sandbox keeps the backend it was created on, whatever the config says now.
    // One handle for the whole monitor: the job, its heartbeat and any warm follow-ups.
    let store = open_store(&data_dir)?;
    let record = store.get(&job.id()).map_err(|e| e.to_error_info())?;
    let provider = AnyProvider::for_kind(&record.provider, &config, Some(&record.repo))?;
    // Its own process group: no terminal's Ctrl-C reaches it; SIGTERM (teardown --force) stops it.
    let cancel = Cancel::new();
    cancel_on_signals(&cancel, false);
    Engine::new(provider, config, data_dir, store)
        .run_monitor(job, cancel)
        .await?;
    Ok(0)
}

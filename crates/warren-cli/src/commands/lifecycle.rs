//! Commands that change a sandbox: launch, exec, export, pull, teardown, gc, and the hidden
//! monitor entry point that launch and exec start in the background.

use serde_json::json;
use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, SandboxName, UserFacing};
use warren_engine::{ExportTarget, LaunchRequest, Lifecycle, MONITOR_CONFIG_ENV, MonitorJob};
use warren_provider_local::LocalProvider;
use warren_store::StateStore;

use super::read::follow_events;
use super::{canonical_repo, data_dir, load_config, with_lifecycle};
use crate::cli::{
    ExecArgs, ExportArgs, GlobalArgs, LaunchArgs, MonitorArgs, PullArgs, TeardownArgs,
};
use crate::output::{EventPrinter, Spinner};
use crate::provider::AnyProvider;

fn current_exe() -> Result<std::path::PathBuf, ErrorInfo> {
    std::env::current_exe().map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("cannot locate the warren binary: {e}"),
        )
    })
}

/// The config that applies to an existing sandbox: its repository's `.warren.toml` included.
fn config_for(global: &GlobalArgs, name: &str) -> Result<Config, ErrorInfo> {
    let base = load_config(None, Vec::new())?.config;
    let repo = with_lifecycle(global, &base, |lc| Ok(lc.find(name)?.repo))?;
    Ok(load_config(repo.is_dir().then_some(repo.as_path()), Vec::new())?.config)
}

pub async fn launch(global: &GlobalArgs, args: LaunchArgs) -> Result<i32, ErrorInfo> {
    let name = SandboxName::parse(&args.name)
        .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
    let repo = canonical_repo(&args.repo)?;
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
    let config = load_config(Some(&repo), flags)?.config;
    let provider = AnyProvider::from_config(&config, Some(&repo))?;
    let data_dir = data_dir(global)?;
    let lc = Lifecycle::open(&provider, &config, &data_dir)?;
    let spinner = Spinner::start(global.json, &format!("launching {name}"));
    let record = lc
        .launch(
            LaunchRequest {
                name,
                repo,
                model: args.model,
                prompt: args.prompt,
                role: args.role,
            },
            &current_exe()?,
        )
        .await;
    spinner.finish();
    let record = record?;
    if global.json {
        println!("{}", json!({ "sandbox": record }));
    } else {
        println!("sandbox {} is {}", record.name, record.state);
        eprintln!("follow it with: warren logs {} -f", record.name);
    }
    Ok(0)
}

pub async fn exec(global: &GlobalArgs, args: ExecArgs) -> Result<i32, ErrorInfo> {
    if args.prompt.trim().is_empty() {
        return Err(ErrorInfo::new(
            ReasonCode::InvalidArgument,
            "the prompt is empty",
        ));
    }
    let config = config_for(global, &args.name)?;
    let provider = AnyProvider::Local(LocalProvider::new());
    let data_dir = data_dir(global)?;
    let lc = Lifecycle::open(&provider, &config, &data_dir)?;
    let before = lc.find(&args.name)?;
    let last_seq = lc
        .store
        .events(&before.id, 0, None)
        .map(|e| e.last().map_or(0, |r| r.seq))
        .unwrap_or(0);
    let record = lc
        .exec(&args.name, &args.prompt, args.role.clone(), &current_exe()?)
        .await?;
    if args.detach {
        if global.json {
            println!("{}", json!({ "sandbox": record }));
        } else {
            println!(
                "sandbox {} is {}; follow it with: warren logs {} -f",
                record.name, record.state, record.name
            );
        }
        return Ok(0);
    }
    let mut printer = EventPrinter::new(global.json);
    follow_events(&lc, &args.name, last_seq, true, &mut printer).await
}

pub fn export(global: &GlobalArgs, args: ExportArgs) -> Result<i32, ErrorInfo> {
    let config = config_for(global, &args.name)?;
    let target = match (args.branch, args.patch) {
        (Some(branch), _) => Some(ExportTarget::Branch(branch)),
        (None, Some(file)) => Some(ExportTarget::Patch(
            std::path::absolute(&file).unwrap_or(file),
        )),
        (None, None) => None,
    };
    let spinner = Spinner::start(global.json, &format!("exporting {}", args.name));
    let mut printer = EventPrinter::new(false);
    let result = with_lifecycle(global, &config, |lc| {
        lc.export(&args.name, target, &mut printer)
    });
    spinner.finish();
    let exported = result?;
    if let (Some(base), Some(now)) = (&exported.based_on, &exported.head_moved_to) {
        let short = |oid: &str| oid.chars().take(10).collect::<String>();
        eprintln!(
            "note: the export is based on {} (HEAD when the sandbox was last synced); your HEAD has moved on to {}. Run 'warren sync {}' before exporting to build on it, or rebase the branch.",
            short(base),
            short(now),
            args.name
        );
    }
    if global.json {
        println!("{}", json!({ "export": exported }));
    } else {
        match (&exported.branch, &exported.patch) {
            (Some(branch), _) => println!(
                "exported {} changed files to branch {branch}",
                exported.files_changed
            ),
            (None, Some(patch)) => {
                println!(
                    "wrote {} changed files as a patch series to {}",
                    exported.files_changed,
                    patch.display()
                );
                let keep_cr = if exported.keep_cr { " --keep-cr" } else { "" };
                eprintln!(
                    "apply it on the base commit with: git am{keep_cr} {}",
                    patch.display()
                );
            }
            (None, None) => println!("nothing to export: the agent changed no files"),
        }
    }
    Ok(0)
}

pub fn sync(global: &GlobalArgs, name: &str) -> Result<i32, ErrorInfo> {
    let config = config_for(global, name)?;
    let mut printer = EventPrinter::new(false);
    let report = with_lifecycle(global, &config, |lc| lc.sync(name, &mut printer))?;
    if global.json {
        println!("{}", json!({ "sync": report }));
    } else {
        println!(
            "sent {} updated and {} deleted paths into {name}",
            report.updated, report.deleted
        );
        if !report.conflicts.is_empty() {
            let paths: Vec<String> = report
                .conflicts
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            println!("kept the agent's version of: {}", paths.join(", "));
        }
    }
    Ok(0)
}

pub fn pull(global: &GlobalArgs, args: PullArgs) -> Result<i32, ErrorInfo> {
    let config = config_for(global, &args.name)?;
    let report = with_lifecycle(global, &config, |lc| lc.pull(&args.name, &args.to))?;
    if global.json {
        println!("{}", json!({ "pull": report }));
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

pub async fn teardown(global: &GlobalArgs, args: TeardownArgs) -> Result<i32, ErrorInfo> {
    let config = config_for(global, &args.name)?;
    let mut printer = EventPrinter::new(false);
    let record = with_lifecycle(global, &config, |lc| {
        lc.teardown(&args.name, args.force, args.export, &mut printer)
    })?;
    if record.provider == "docker" {
        remove_sandbox_containers(&config, record.id.as_str()).await;
    }
    if global.json {
        println!("{}", json!({ "sandbox": record }));
    } else {
        println!("sandbox {} is {}", record.name, record.state);
    }
    Ok(0)
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

pub async fn gc(global: &GlobalArgs, volumes: bool) -> Result<i32, ErrorInfo> {
    let config = load_config(None, Vec::new())?.config;
    let (report, live) = with_lifecycle(global, &config, |lc| Ok((lc.gc()?, live_sandboxes(lc)?)))?;
    let (orphan_containers, removed_volumes) = docker_sweep(&config, &live, volumes).await;
    if global.json {
        println!(
            "{}",
            json!({ "gc": report, "orphan_containers_removed": orphan_containers, "volumes_removed": removed_volumes })
        );
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
    let all = [
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

/// Sandboxes whose agent may legitimately have a container right now: those with a live lease.
pub(crate) fn live_sandboxes(
    lc: &Lifecycle<'_, AnyProvider>,
) -> Result<std::collections::HashSet<String>, ErrorInfo> {
    Ok(lc
        .store
        .list(false)
        .map_err(|e| e.to_error_info())?
        .into_iter()
        .filter(|r| lc.store.lease(&r.id).ok().flatten().is_some())
        .map(|r| r.id.to_string())
        .collect())
}

/// Removes this owner's warren containers that no live operation accounts for (past a grace
/// period), and with `volumes` the dependency volumes no container uses. Quietly does nothing
/// when no Docker engine is configured or reachable.
pub(crate) async fn docker_sweep(
    config: &Config,
    live: &std::collections::HashSet<String>,
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
                && !live.contains(&c.sandbox_id)
                && now - c.created > ORPHAN_GRACE_SECS;
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

pub async fn image_build(
    global: &GlobalArgs,
    args: crate::cli::ImageBuildArgs,
) -> Result<i32, ErrorInfo> {
    let config = load_config(None, Vec::new())?.config;
    let tag = match (&args.tag, &args.profile) {
        (Some(tag), _) => tag.clone(),
        (None, Some(profile)) => config
            .sandbox
            .image_profiles
            .get(profile)
            .cloned()
            .ok_or_else(|| {
                ErrorInfo::new(
                    ReasonCode::InvalidConfig,
                    format!("no image profile {profile:?} in sandbox.image_profiles"),
                )
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
        println!("{}", json!({ "image": { "tag": tag, "id": id } }));
    } else {
        println!("built {tag} ({id})");
    }
    Ok(0)
}

pub async fn monitor(global: &GlobalArgs, args: MonitorArgs) -> Result<i32, ErrorInfo> {
    let job: MonitorJob = serde_json::from_str(&args.job).map_err(|e| {
        ErrorInfo::new(ReasonCode::InvalidArgument, format!("bad monitor job: {e}"))
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
    let store = warren_store::Store::open(&warren_store::default_db_path(&data_dir))
        .map_err(|e| e.to_error_info())?;
    let record = store.get(&job.id()).map_err(|e| e.to_error_info())?;
    drop(store);
    let provider = AnyProvider::for_kind(&record.provider, &config, Some(&record.repo))?;
    warren_engine::run_monitor(&provider, &config, &data_dir, job).await?;
    Ok(0)
}

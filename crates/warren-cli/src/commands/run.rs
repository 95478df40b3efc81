//! `warren run`: the one-shot main job, hosted by the engine like every other operation. The
//! CLI streams the run's recorded events as they are written and owns the signals.

use warren_engine::{Engine, RunObserver, RunRequest};

use super::{CmdResult, checks, data_dir, load_config, open_store};
use crate::cli::{GlobalArgs, RunArgs};
use crate::output::{EventPrinter, print_summary};
use crate::provider::AnyProvider;
use crate::supervisor::cancel_on_signals;

pub async fn run(global: &GlobalArgs, args: RunArgs) -> CmdResult<i32> {
    let name = args.name.as_deref().map(checks::sandbox_name).transpose()?;
    checks::prompt(&args.prompt, "warren run \"fix the failing test\"")?;
    let budget = checks::budget(args.budget.as_deref())?;
    let mut flags = Vec::new();
    if let Some(secs) = args.timeout {
        let secs = i64::try_from(checks::timeout(secs)?).unwrap_or(i64::MAX);
        flags.push((
            "timeouts.run_secs".to_owned(),
            toml::Value::Integer(secs),
            "--timeout".to_owned(),
        ));
    }
    let repo_dir = checks::repo_dir(&args.repo)?;
    if let Some(provider) = &args.provider {
        flags.push((
            "sandbox.provider".to_owned(),
            toml::Value::String(provider.clone()),
            "--provider".to_owned(),
        ));
    }
    flags.extend(checks::approval_flags(&args.approvals)?);
    let mut loaded = load_config(Some(&repo_dir), flags)?;
    warren_engine::egress::apply_overrides(
        &mut loaded.config.policy,
        args.network.egress.as_deref(),
        &args.network.allow,
    )?;
    checks::model_and_role(&loaded.config, args.model.as_deref(), args.role.as_deref())?;
    let provider = AnyProvider::from_config(&loaded.config, Some(&repo_dir))?;
    let data_dir = data_dir(global)?;
    let store = open_store(&data_dir)?;
    let engine = Engine::new(provider, loaded.config.clone(), data_dir, store);
    let request = RunRequest {
        repo: repo_dir,
        prompt: args.prompt,
        name,
        model: args.model,
        role: args.role,
        config: loaded.config,
        budget,
        // Owners are a server's: a local run has none.
        owner_budget: None,
    };
    let handle = engine.start_run(request).await?;
    cancel_on_signals(&handle.cancel, true);
    let mut printer = EventPrinter::new(global.json);
    let mut events = handle.events(0);
    while let Some(record) = events.next().await? {
        printer.event(&record);
    }
    let summary = handle.finish().await?;
    print_summary(&summary, global.json)?;
    Ok(match &summary.error {
        None => 0,
        Some(e) => e.reason_code.exit_class().code(),
    })
}

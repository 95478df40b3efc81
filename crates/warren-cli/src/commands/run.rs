//! `warren run`: the one-shot main job, hosted by the engine like every other operation. The
//! CLI streams the run's recorded events as they are written and owns the signals.

use warren_domain::{ErrorInfo, ReasonCode, SandboxName};
use warren_engine::{Engine, RunObserver, RunRequest};

use super::{canonical_repo, data_dir, load_config};
use crate::cli::{GlobalArgs, RunArgs};
use crate::output::{EventPrinter, print_summary};
use crate::provider::AnyProvider;
use crate::supervisor::cancel_on_signals;

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<i32, ErrorInfo> {
    let name = args
        .name
        .as_deref()
        .map(SandboxName::parse)
        .transpose()
        .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
    if args.prompt.trim().is_empty() {
        return Err(
            ErrorInfo::new(ReasonCode::InvalidArgument, "the prompt is empty").with_hint(
                "say what the agent should do, e.g. warren run \"fix the failing test\"",
            ),
        );
    }
    let mut flags = Vec::new();
    if let Some(secs) = args.timeout {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        flags.push((
            "timeouts.run_secs".to_owned(),
            toml::Value::Integer(secs),
            "--timeout".to_owned(),
        ));
    }
    let repo_dir = canonical_repo(&args.repo)?;
    if let Some(provider) = &args.provider {
        flags.push((
            "sandbox.provider".to_owned(),
            toml::Value::String(provider.clone()),
            "--provider".to_owned(),
        ));
    }
    let loaded = load_config(Some(&repo_dir), flags)?;
    let provider = AnyProvider::from_config(&loaded.config, Some(&repo_dir))?;
    let engine = Engine::new(provider, loaded.config.clone(), data_dir(global)?);
    let request = RunRequest {
        repo: repo_dir,
        prompt: args.prompt,
        name,
        model: args.model,
        role: args.role,
        config: loaded.config,
    };
    let handle = engine.start_run(request).await?;
    cancel_on_signals(&handle.cancel, true);
    let mut printer = EventPrinter::new(global.json);
    let mut events = handle.events(0);
    while let Some(record) = events.next().await? {
        printer.event(&record);
    }
    let summary = handle.finish().await?;
    print_summary(&summary, global.json);
    Ok(match &summary.error {
        None => 0,
        Some(e) => e.reason_code.exit_class().code(),
    })
}

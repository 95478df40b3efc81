//! `warren run`: the one-shot main job.

use warren_domain::{ErrorInfo, ReasonCode, SandboxName};
use warren_engine::RunRequest;

use super::{canonical_repo, data_dir, load_config};
use crate::cli::{GlobalArgs, RunArgs};
use crate::output::{EventPrinter, print_summary};
use crate::provider::AnyProvider;

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
    let request = RunRequest {
        repo: repo_dir,
        prompt: args.prompt,
        name,
        model: args.model,
        role: args.role,
        data_dir: data_dir(global)?,
        config: loaded.config,
    };
    let mut printer = EventPrinter::new(global.json);
    let summary = warren_engine::run(&provider, request, &mut printer).await?;
    print_summary(&summary, global.json);
    Ok(match &summary.error {
        None => 0,
        Some(e) => e.reason_code.exit_class().code(),
    })
}

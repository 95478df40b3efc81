//! `warren run`: the one-shot main job.

use warren_domain::ErrorInfo;
use warren_engine::RunRequest;

use super::{checks, data_dir, load_config};
use crate::cli::{GlobalArgs, RunArgs};
use crate::output::{EventPrinter, print_summary};
use crate::provider::AnyProvider;

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<i32, ErrorInfo> {
    let name = args.name.as_deref().map(checks::sandbox_name).transpose()?;
    checks::prompt(&args.prompt, "warren run \"fix the failing test\"")?;
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
    let loaded = load_config(Some(&repo_dir), flags)?;
    checks::model_and_role(&loaded.config, args.model.as_deref(), args.role.as_deref())?;
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

//! `warren approve` / `warren deny`: answer the permission request a sandbox's agent waits on.
//! The answer goes through the store, so it reaches the run whichever process supervises it.

use warren_domain::{Decision, ErrorInfo, ReasonCode};

use super::{CmdResult, checks, data_dir, load_config, open_store};
use crate::cli::GlobalArgs;

pub(super) async fn answer(
    global: &GlobalArgs,
    name: &str,
    request: Option<&str>,
    decision: Decision,
    reason: Option<String>,
) -> CmdResult<i32> {
    checks::sandbox_name(name)?;
    if let Some(r) = request
        && (!r.starts_with("per") || r.len() > 128)
    {
        return Err(ErrorInfo::new(
            ReasonCode::InvalidArgument,
            format!("--request {r:?} is not a permission request id"),
        )
        .with_hint("request ids start with per_; `warren status NAME` shows the pending one")
        .into());
    }
    // Read for its validation only: a broken config is reported like everywhere else.
    let _ = load_config(None, Vec::new())?;
    let data_dir = data_dir(global)?;
    let store: std::sync::Arc<dyn warren_store::StateStore> = open_store(&data_dir)?;
    let parsed = warren_domain::SandboxName::parse(name)
        .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
    let record = store.get_by_name(&parsed)?;
    let answered =
        warren_engine::approvals::answer(&*store, &record, request, decision, reason).await?;
    let view = warren_engine::views::approval(&answered, decision);
    crate::render::approval(&view, name, global.json)?;
    Ok(0)
}

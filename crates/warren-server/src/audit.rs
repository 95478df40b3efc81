//! `GET /v1/sandboxes/{name}/audit`: a sandbox's audit trail (every metered model request with
//! its tokens, cost, latency, status, session and attempt). `{name}` may also be the sandbox's
//! id, as a commit's `Warren-Sandbox` trailer gives it, which still finds a destroyed sandbox.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use warren_api::AuditView;
use warren_domain::SandboxId;
use warren_provider::Provider;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::App;

#[utoipa::path(get, path = "/v1/sandboxes/{name}/audit", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name, or its id (from a commit's Warren-Sandbox trailer)")),
    responses(
        (status = 200, description = "What `warren audit REV --json` prints (without `commit`)", body = ref("#/components/schemas/AuditView")),
        (status = 404, description = "No such sandbox (or another owner's)", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn audit<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<AuditView>> {
    let view = app
        .blocking(move |app| {
            let record = if warren_engine::audit::sandbox_id_of(&name) == Some(name.as_str()) {
                let id = SandboxId::from_stored(name.clone());
                let record = app.store.get(&id)?;
                if !who.sees(app.tenancy.owner(&record.id)?.as_deref()) {
                    return Err(warren_store::StoreError::NotFound { sandbox: name }.into());
                }
                record
            } else {
                app.find(&who, &name)?
            };
            let events = app.store.events(&record.id, 0, None)?;
            Ok(warren_engine::audit::trail(&record, &events))
        })
        .await?;
    Ok(axum::Json(view))
}

//! `GET /v1/sandboxes/{name}/status`: what `warren status` shows (lease, supervisor lost, warm
//! server, changed files, gateway usage), assembled by the engine as for the CLI, so remote mode
//! prints the same.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use warren_api::StatusView;
use warren_provider::Provider;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::App;

#[utoipa::path(get, path = "/v1/sandboxes/{name}/status", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name")),
    responses(
        (status = 200, description = "What `warren status --json` prints", body = ref("#/components/schemas/StatusView")),
        (status = 404, description = "No such sandbox (or another owner's)", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn status<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<StatusView>> {
    let view = app
        .blocking(move |app| {
            let record = app.find(&who, &name)?;
            let config = app.config_for(&record)?;
            let (view, warning) =
                warren_engine::status::status(&*app.store, &app.data_dir, &config, &record)?;
            if let Some(e) = warning {
                tracing::warn!("status of {name}: cannot list the changed files: {e}");
            }
            Ok(view)
        })
        .await?;
    Ok(axum::Json(view))
}

//! `POST /v1/sandboxes/{name}/approvals/{request}`: answer the permission request a sandbox's
//! agent waits on, as `warren approve` / `deny` do. The answer goes through the store, so it
//! reaches the run on whichever replica supervises it.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use warren_api::{ApprovalBody, ApprovalEnvelope};
use warren_provider::Provider;

use crate::auth::Principal;
use crate::body::ApiJson;
use crate::error::ApiResult;
use crate::state::App;

#[utoipa::path(post, path = "/v1/sandboxes/{name}/approvals/{request}", tag = "sandboxes",
    params(
        ("name" = String, Path, description = "The sandbox's name"),
        ("request" = String, Path, description = "The request's id (`per_...`, from the status's `awaiting_approval` or an `approval_requested` event), or `current` for whichever is pending"),
    ),
    request_body(content = ref("#/components/schemas/ApprovalBody"), content_type = "application/json"),
    responses(
        (status = 200, description = "The answer and what the agent was told", body = ref("#/components/schemas/ApprovalEnvelope")),
        (status = 404, description = "No such sandbox (or another owner's)", body = ref("#/components/schemas/ErrorEnvelope")),
        (status = 409, description = "Nothing is waiting for an answer (`no_pending_approval`)", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn answer<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(who): Extension<Principal>,
    Path((name, request)): Path<(String, String)>,
    ApiJson(body): ApiJson<ApprovalBody>,
) -> ApiResult<axum::Json<ApprovalEnvelope>> {
    let record = app.blocking(move |app| app.find(&who, &name)).await?;
    let request = (request != "current").then_some(request);
    let answered = warren_engine::approvals::answer(
        &*app.store,
        &record,
        request.as_deref(),
        body.decision,
        body.reason,
    )
    .await?;
    Ok(axum::Json(ApprovalEnvelope {
        approval: warren_engine::views::approval(&answered, body.decision),
    }))
}

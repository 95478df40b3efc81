//! `GET /openapi.json`: OpenAPI 3.1, generated from the code. utoipa builds the paths from the
//! handlers' `#[utoipa::path]` attributes; the schemas are the protocol crate's (schemars, JSON
//! Schema 2020-12, which OpenAPI 3.1 uses as is), placed under `components/schemas`.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};
use utoipa::OpenApi;
use warren_api::{
    AuditView, BundleEnvelope, ChangesEnvelope, ErrorEnvelope, EventRecord, ExportBody,
    ExportEnvelope, LaunchBody, ListView, PromptBody, RunBody, SandboxEnvelope, StatusView,
    SummaryEnvelope, SyncBody, SyncEnvelope,
};

use crate::{approvals, audit, handlers, metrics, sources, status, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warren",
        description = "Run OpenCode agents in sandboxes and export their work as git branches."
    ),
    paths(
        handlers::launch,
        handlers::list,
        handlers::get_sandbox,
        handlers::teardown,
        handlers::exec,
        handlers::sync,
        handlers::export,
        handlers::changes,
        handlers::cancel,
        handlers::healthz,
        handlers::readyz,
        stream::events,
        stream::run,
        sources::upload_bundle,
        sources::download_bundle,
        status::status,
        audit::audit,
        metrics::metrics,
        approvals::answer,
        openapi_json,
    )
)]
struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi_json() -> axum::Json<Value> {
    axum::Json(document())
}

/// The routes that need no token.
pub const PUBLIC: &[&str] = &["/healthz", "/readyz", "/openapi.json"];

/// The whole document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    macro_rules! register {
        ($($t:ty),*) => { $( let _ = generator.subschema_for::<$t>(); )* };
    }
    register!(
        LaunchBody,
        RunBody,
        PromptBody,
        ExportBody,
        SandboxEnvelope,
        ListView,
        SyncEnvelope,
        ExportEnvelope,
        ChangesEnvelope,
        ErrorEnvelope,
        EventRecord,
        SummaryEnvelope,
        BundleEnvelope,
        StatusView,
        SyncBody,
        warren_api::ApprovalBody,
        warren_api::ApprovalEnvelope,
        AuditView
    );
    doc["components"]["schemas"] = Value::Object(generator.take_definitions(true));
    doc["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer", "description": "A token from 'warren token create'" }
    });
    // Every operation needs the token except the public ones, and any of them can be refused
    // with the wire error (a bad name or parameter, no token, a body too large, too many
    // streams): each documents its `4XX`.
    let refused = json!({
        "description": "Refused: the wire error, with a reason code",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorEnvelope" } } }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            if let Some(item) = item.as_object_mut() {
                for op in item.values_mut() {
                    if !public {
                        op["security"] = json!([{ "bearer": [] }]);
                    }
                    if let Some(responses) = op["responses"].as_object_mut() {
                        responses.entry("4XX").or_insert_with(|| refused.clone());
                    }
                }
            }
        }
    }
    doc
}

/// `(METHOD, path)` of every operation in the document, sorted.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops: Vec<(String, String)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    ops.sort();
    ops
}

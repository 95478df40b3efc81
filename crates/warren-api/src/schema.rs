//! The JSON Schema of every view, by name: what `warren schema` prints and `docs/schemas/`
//! holds. Schemas describe what is *serialised* (a field skipped when empty is not required).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

use crate::{
    ApprovalEnvelope, AuditView, ChangesEnvelope, ConfigView, DoctorEnvelope, ErrorEnvelope,
    EventRecord, ExportEnvelope, GcView, ImageEnvelope, ListView, OpenEnvelope, PullEnvelope,
    SandboxEnvelope, StatusView, SummaryEnvelope, SyncEnvelope,
};

/// One view: its name (`warren schema NAME`, `docs/schemas/NAME.json`), what prints it, and its
/// type's schema.
#[derive(Clone, Copy)]
pub struct View {
    pub name: &'static str,
    pub printed_by: &'static str,
    generate: fn() -> Schema,
}

impl View {
    /// The view's JSON Schema (draft 2020-12).
    pub fn schema(&self) -> serde_json::Value {
        (self.generate)().to_value()
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("name", &self.name).finish()
    }
}

fn root<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

const fn view<T: JsonSchema>(name: &'static str, printed_by: &'static str) -> View {
    View {
        name,
        printed_by,
        generate: root::<T>,
    }
}

/// Every view, by name.
pub const VIEWS: &[View] = &[
    view::<EventRecord>("event", "each event line of run, exec and logs with --json"),
    view::<SummaryEnvelope>("summary", "the last line of run --json"),
    view::<ErrorEnvelope>("error", "any command with --json that fails"),
    view::<SandboxEnvelope>("sandbox", "launch, exec --detach and teardown with --json"),
    view::<StatusView>("status", "status --json"),
    view::<ListView>("list", "list --json"),
    view::<ExportEnvelope>("export", "export --json"),
    view::<PullEnvelope>("pull", "pull --json"),
    view::<SyncEnvelope>("sync", "sync --json"),
    view::<OpenEnvelope>("open", "open --json"),
    view::<GcView>("gc", "gc --json"),
    view::<ImageEnvelope>("image", "image build --json"),
    view::<ConfigView>("config", "config show --json"),
    view::<DoctorEnvelope>("doctor", "doctor --json"),
    view::<ChangesEnvelope>("changes", "the server's GET /v1/sandboxes/{name}/changes"),
    view::<ApprovalEnvelope>("approval", "approve and deny with --json"),
    view::<AuditView>(
        "audit",
        "audit REV --json and the server's GET /v1/sandboxes/{name}/audit",
    ),
];

/// The schema of the view called `name`, if there is one.
pub fn schema(name: &str) -> Option<serde_json::Value> {
    VIEWS.iter().find(|v| v.name == name).map(View::schema)
}

/// Every view's schema, by name, in [`VIEWS`] order.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    VIEWS.iter().map(|v| (v.name, v.schema())).collect()
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;

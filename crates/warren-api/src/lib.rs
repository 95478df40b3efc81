//! warren's protocol: the typed views that `--json` prints and the HTTP server serves, one
//! definition for both front ends, each with its JSON Schema.
//!
//! Every top-level JSON line (or response body) is one of the types listed in [`VIEWS`]: an
//! envelope such as `{"summary": ...}` or `{"error": ...}` around a view. The types derive
//! `Serialize`, `Deserialize` and `JsonSchema`; [`schema`] gives a view's schema by name and
//! `docs/schemas/` holds them as generated. Conversions from the engine's and the store's types
//! live with the front ends, so this crate depends on `warren-domain` alone and does no I/O.

mod approval;
mod audit;
mod doctor;
mod ops;
mod run;
mod sandbox;
mod schema;
mod server;

pub use approval::{ApprovalBody, ApprovalEnvelope, ApprovalRules, ApprovalView};
pub use audit::{AuditCommit, AuditRequest, AuditTotals, AuditTrailer, AuditView};
pub use doctor::{CheckStatus, DoctorCheck, DoctorEnvelope, DoctorView};
pub use ops::{
    ConfigSource, ConfigView, ExportEnvelope, ExportView, GcReportView, GcView, ImageEnvelope,
    ImageView, OpenEnvelope, OpenView, PullEnvelope, PullView, SyncEnvelope, SyncView,
};
pub use run::{Phases, RunSummary, SummaryEnvelope, TaskOutcome};
pub use sandbox::{
    BudgetStatusView, ChangeKind, ChangedFile, LeaseView, ListView, MonitorView, SandboxEnvelope,
    SandboxView, StatusView, WarmServerView,
};
pub use schema::{VIEWS, View, schema, schemas};
pub use server::{
    BundleEnvelope, BundleView, ChangesEnvelope, ChangesView, ExportBody, LaunchBody, PromptBody,
    RepositorySource, RunBody, SyncBody,
};
pub use warren_domain::{ErrorInfo, EventRecord};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{"error": ...}`: how every failure is reported, alone on stdout with `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorInfo,
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod views_tests;

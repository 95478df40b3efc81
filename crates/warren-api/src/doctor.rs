//! `warren doctor --json`: every prerequisite checked, each with the command or setting that
//! fixes it when it fails, so a script (or a person on a fresh machine) learns what is missing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Fail,
    /// Not needed here (e.g. Docker when the local provider is configured); `detail` says why.
    Skip,
}

/// One prerequisite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoctorCheck {
    /// What was checked, e.g. `bubblewrap`, `model endpoint openai`.
    pub name: String,
    pub status: CheckStatus,
    /// What was found (a version, a path) or why it failed or was skipped.
    pub detail: String,
    /// On failure: the exact command or setting that fixes it (never a secret's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, and whether all the needed ones passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoctorView {
    /// True when no check failed (the exit code is 0 exactly then).
    pub ok: bool,
    pub checks: Vec<DoctorCheck>,
}

/// `{"doctor": ...}`: what `warren doctor --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoctorEnvelope {
    pub doctor: DoctorView,
}

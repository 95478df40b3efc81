//! The results of the commands that act on a sandbox or the machine: export, pull, sync, open,
//! gc, image build, and the effective configuration.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warren_domain::{SandboxName, SandboxState};

/// What an export wrote: a branch or a patch series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportView {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
    /// The patch file, with `--patch`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch: Option<String>,
    /// The agent's own changed paths (the user's uncommitted changes ride along uncounted).
    pub files_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub commit: Option<String>,
    /// The patch holds CRLF line endings: apply it with `git am --keep-cr`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub keep_cr: bool,
    /// The commit the export is based on (HEAD when the workspace was last synced).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub based_on: Option<String>,
    /// Where the repository's HEAD is now, when it moved since that sync.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub head_moved_to: Option<String>,
    /// The git URL the branch was pushed to (`warren serve`, export with `push`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pushed_to: Option<String>,
}

/// `{"export": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportEnvelope {
    pub export: ExportView,
}

/// What a pull wrote into its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullView {
    pub dir: String,
    /// Files and symlinks written.
    pub written: u64,
    /// Deleted paths listed in the manifest (left alone in `dir`).
    pub deleted: u64,
    /// The manifest, `DIR/.warren-pull.json`.
    pub manifest: String,
}

/// `{"pull": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullEnvelope {
    pub pull: PullView,
}

/// What `warren sync` sent into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncView {
    /// Files and symlinks written into the workspace.
    pub updated: u64,
    /// Paths removed from the workspace (or already gone there).
    pub deleted: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// The new user tree.
    pub user_tree: String,
    /// Paths the agent changed too: the workspace keeps the agent's version.
    pub conflicts: Vec<String>,
    /// The user's HEAD now: an export starts here.
    pub head: Option<String>,
    /// Whether the user has uncommitted changes relative to `head`.
    pub dirty: bool,
    /// Why the workspace's own repository got no "sync from host" commit, when it did not.
    pub workspace_git_skipped: Option<String>,
}

/// `{"sync": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncEnvelope {
    pub sync: SyncView,
}

/// How to reach a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OpenView {
    pub name: SandboxName,
    pub provider: String,
    pub state: SandboxState,
    /// The workspace directory on the host.
    pub workspace: String,
    pub session_id: Option<String>,
    /// The command that sends a follow-up prompt.
    pub exec: String,
    /// The command that follows its events.
    pub logs: String,
    /// The warm OpenCode server's Unix socket, while one runs.
    pub server_socket: Option<String>,
}

/// `{"open": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OpenEnvelope {
    pub open: OpenView,
}

/// What one reconciler sweep did (sandbox names, lease holders, directories).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcReportView {
    pub expired_leases: Vec<String>,
    pub marked_error: Vec<String>,
    pub torn_down: Vec<String>,
    pub kept_unexported: Vec<String>,
    pub orphan_dirs_removed: Vec<String>,
    /// When the next sweep has something to look at; absent when nothing is pending.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub requeue_after_secs: Option<u64>,
}

/// `warren gc --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcView {
    pub gc: GcReportView,
    /// Names of the docker containers removed.
    pub orphan_containers_removed: Vec<String>,
    /// Dependency volumes removed (`--volumes`).
    pub volumes_removed: Vec<String>,
    /// Kubernetes pods a dead warren left, whose files came back into their sandbox's
    /// directories before they were removed.
    #[serde(default)]
    pub pods_recovered: Vec<String>,
    /// Kubernetes pods removed without reading (no record, torn down, or unreadable).
    #[serde(default)]
    pub orphan_pods_removed: Vec<String>,
}

/// A built sandbox image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageView {
    pub tag: String,
    pub id: String,
}

/// `{"image": ...}`: what `warren image build` printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageEnvelope {
    pub image: ImageView,
}

/// The layer a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum ConfigSource {
    Default,
    /// The user's config file, at this path.
    UserFile(String),
    /// The repository's `.warren.toml`, at this path.
    RepoFile(String),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

/// `warren config show --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigView {
    /// The effective configuration (its keys are documented in `docs/config.md`).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Dotted key → the layer that set it, for every leaf value.
    pub sources: BTreeMap<String, ConfigSource>,
}

//! Moves files between the user's repository and a sandbox workspace, and turns what the agent
//! changed into a git branch without touching the user's checkout.
//!
//! The flow: [`inspect_repo`] → [`sync_in`] (before the agent runs, while the workspace is
//! trusted) → [`sync_partial`] as often as the user's later edits should follow them in (before
//! each `exec`; the workspace is hostile by then) → [`collect_changes`] (after, treating the
//! workspace as hostile) →
//! [`export_branch`] (or [`export_patch`] for a patch series, or [`pull_to_dir`] for plain files)
//! → [`release_baseline`] at teardown. For a sandbox that shares no file system with warren,
//! [`pack_dir`] sends a directory in as a tar stream and [`unpack_untrusted`] brings one back
//! with the same care as [`collect_changes`]. All git work shells out to the `git`
//! CLI; nothing the sandbox wrote is ever followed through a symlink or run as a program.

mod agent_git;
mod baseline;
mod collect;
mod commits;
mod conflicts;
mod content;
mod copy;
mod diff;
mod error;
mod export;
mod git;
mod index_file;
mod partial;
mod patch;
mod paths;
mod pull;
mod repo;
mod safe_fs;
mod safe_write;
mod sandbox_git;
mod sync_in;
mod unpack;
mod user_tree;

pub use collect::{
    Change, ChangeKind, ChangeSet, Limits, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK,
    collect_changes,
};
pub use diff::{ChangesDiff, diff_changes};
pub use error::{Result, SyncError};
pub use export::{ExportReport, ExportRequest, export_branch};
pub use partial::{PartialSyncReport, sync_partial};
pub use patch::{PatchReport, export_patch};
pub use pull::{PULL_MANIFEST, PullManifest, PullReport, PulledFile, pull_to_dir};
pub use repo::{RepoInfo, branch_exists, inspect_repo};
pub use sync_in::{SyncInReport, SyncOptions, release_baseline, sync_in};
pub use unpack::{UnpackReport, pack_dir, unpack_untrusted};

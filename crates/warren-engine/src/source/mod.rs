//! Where a sandbox's repository comes from when the server shares no disk with the user, and
//! how the work goes back: a git URL the server clones (`clone.rs`), or a git bundle the user
//! uploaded (`bundle.rs`), each turned into a plain work tree under `<data>/sources/<id>` that a
//! launch then syncs from exactly as from a local repository; and the branch an export wrote
//! there, pushed back to its URL or packed as a bundle for the user to fetch (`work.rs`). Git
//! runs with fsck on, no prompts, an allow-list of transports, a size cap and a time limit
//! (`git.rs`): whatever comes in is untrusted.

mod bundle;
mod clone;
mod git;
mod work;

use std::path::{Path, PathBuf};
use std::time::Duration;

use warren_domain::{ReasonCode, UserFacing};

pub use bundle::{ImportedBundle, import_bundle, update_from_bundle};
pub use clone::{check_url, clone_url, is_git_url};
pub use work::{bundle_branch, origin_url, push_branch};

/// The caps on what one source may bring in.
#[derive(Debug, Clone, Copy)]
pub struct SourceLimits {
    /// Bytes on disk a clone or an imported bundle may take (and an upload may be).
    pub max_bytes: u64,
    /// How long one git operation (clone, fetch, push) may run.
    pub timeout: Duration,
}

impl SourceLimits {
    /// The sync caps bound a source too: what cannot be synced need not be fetched.
    pub fn from_config(config: &warren_config::Config) -> Self {
        Self {
            max_bytes: config.sync.max_total_bytes,
            timeout: Duration::from_secs(600),
        }
    }
}

/// `<data>/sources`: one work tree per cloned URL or imported bundle.
pub fn sources_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sources")
}

/// `<data>/bundles`: uploads in flight.
pub fn uploads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("bundles")
}

/// A source's work tree by its id; `None` for an id that is not one of ours.
pub fn source_dir(data_dir: &Path, id: &str) -> Option<PathBuf> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-' || c.is_ascii_lowercase());
    let dir = sources_dir(data_dir).join(id);
    (ok && dir.join(".git").is_dir()).then_some(dir)
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A URL with a transport the server does not use, a relative path, an unknown bundle.
    #[error("{0}")]
    Unsupported(String),
    /// The upload is not a complete git bundle, or its objects fail fsck.
    #[error("{0}")]
    InvalidBundle(String),
    /// Fetching or pushing failed (unreachable, refused, credentials needed).
    #[error("{0}")]
    Remote(String),
    /// Over the size cap.
    #[error("{what} is larger than the server accepts ({max} bytes)")]
    TooLarge { what: String, max: u64 },
    /// Over the time limit.
    #[error("{what} took longer than {secs} s")]
    TimedOut { what: String, secs: u64 },
    /// The server's own disk or git failed.
    #[error("{0}")]
    Io(String),
}

impl UserFacing for SourceError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Unsupported(_) => ReasonCode::UnsupportedSource,
            Self::InvalidBundle(_) => ReasonCode::InvalidBundle,
            Self::Remote(_) | Self::TimedOut { .. } => ReasonCode::RemoteGitFailed,
            Self::TooLarge { .. } => ReasonCode::RequestTooLarge,
            Self::Io(_) => ReasonCode::SyncFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Unsupported(_) => "name the repository by an absolute path on the server's host, a git URL (https://, http://, ssh://, git://, file://), or {\"bundle\": id} from POST /v1/bundles".into(),
            Self::InvalidBundle(_) => "send a complete bundle: `git bundle create FILE refs/warren/wip` where refs/warren/wip is one commit on top of your HEAD (warren's remote mode does this)".into(),
            Self::Remote(_) | Self::TimedOut { .. } => "check the URL is reachable from the server without credentials prompts (a deploy key or a token in the URL), then retry".into(),
            Self::TooLarge { .. } => "raise the server's sync.max_total_bytes, or send a smaller repository".into(),
            Self::Io(_) => return None,
        })
    }
}

pub type Result<T> = std::result::Result<T, SourceError>;

//! Moving a sandbox's files in and out when its provider shares no file system with warren
//! ([`Mounts::None`]). The host directories stay the truth between agent runs: after sync-in the
//! workspace and HOME are uploaded into the new sandbox, and after the agent ended (before the
//! sandbox is destroyed) both come back, through warren-sync's hostile-safe unpacker, into fresh
//! directories that then replace the host's. So export, pull and status keep reading a host
//! directory, exactly as with a host-path provider, and a refused download leaves the host's copy
//! as it was. Host-path providers never come here: nothing is copied on the fast path.
//!
//! [`Mounts::None`]: warren_provider::Mounts::None

use std::path::{Path, PathBuf};

use tokio_util::io::SyncIoBridge;
use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_provider::{SANDBOX_HOME, SANDBOX_WORKSPACE, Sandbox, TarStream};

use crate::paths::SandboxDirs;

/// How much of an archive may be in flight between the packer and the provider.
const PIPE: usize = 256 * 1024;

/// Uploads the host workspace and HOME into a freshly created sandbox.
pub(crate) async fn upload_all<S: Sandbox>(
    sandbox: &S,
    dirs: &SandboxDirs,
) -> Result<(), ErrorInfo> {
    upload(sandbox, &dirs.workspace, SANDBOX_WORKSPACE).await?;
    upload(sandbox, &dirs.home, SANDBOX_HOME).await
}

/// Brings the sandbox's workspace and HOME back into the host directories. Call it only when
/// nothing runs in the sandbox any more.
pub(crate) async fn download_all<S: Sandbox>(
    sandbox: &S,
    dirs: &SandboxDirs,
    limits: &warren_sync::Limits,
) -> Result<(), ErrorInfo> {
    download(sandbox, SANDBOX_WORKSPACE, &dirs.workspace, limits).await?;
    download(sandbox, SANDBOX_HOME, &dirs.home, limits).await
}

pub(crate) async fn upload<S: Sandbox>(
    sandbox: &S,
    host: &Path,
    inside: &str,
) -> Result<(), ErrorInfo> {
    let (writer, reader) = tokio::io::duplex(PIPE);
    let bridge = SyncIoBridge::new(writer);
    let source = host.to_path_buf();
    // The archive is written while the provider reads it: never held whole.
    let pack = tokio::task::spawn_blocking(move || warren_sync::pack_dir(&source, bridge));
    let sent = sandbox.upload(inside, Box::pin(reader) as TarStream).await;
    let packed = pack.await;
    sent.map_err(|e| e.to_error_info())?;
    match packed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(failed(format!(
            "cannot pack {} for the sandbox: {e}",
            host.display()
        ))),
        Err(e) => Err(failed(format!(
            "the packer of {} failed: {e}",
            host.display()
        ))),
    }
}

pub(crate) async fn download<S: Sandbox>(
    sandbox: &S,
    inside: &str,
    host: &Path,
    limits: &warren_sync::Limits,
) -> Result<(), ErrorInfo> {
    let stream = sandbox
        .download(inside)
        .await
        .map_err(|e| e.to_error_info())?;
    let staging = sibling(host, "download");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| failed(format!("cannot create {}: {e}", staging.display())))?;
    let bridge = SyncIoBridge::new(stream);
    let (into, limits) = (staging.clone(), *limits);
    let unpacked =
        tokio::task::spawn_blocking(move || warren_sync::unpack_untrusted(bridge, &into, &limits))
            .await;
    let unpacked = match unpacked {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.to_error_info()),
        Err(e) => Err(failed(format!("the unpacker failed: {e}"))),
    };
    let report = match unpacked {
        Ok(report) => report,
        Err(e) => {
            // What was unpacked before the refusal is dropped; the host's copy is untouched.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    replace(host, &staging)?;
    tracing::debug!(
        dir = inside,
        files = report.files,
        bytes = report.bytes,
        "downloaded from the sandbox"
    );
    Ok(())
}

/// Puts `fresh` where `host` is: the old copy is moved aside first and removed once the new one
/// is in place, so a failure in between leaves one of them at `host`.
fn replace(host: &Path, fresh: &Path) -> Result<(), ErrorInfo> {
    let old = sibling(host, "old");
    let _ = std::fs::remove_dir_all(&old);
    std::fs::rename(host, &old)
        .map_err(|e| failed(format!("cannot move {} aside: {e}", host.display())))?;
    if let Err(e) = std::fs::rename(fresh, host) {
        let _ = std::fs::rename(&old, host);
        return Err(failed(format!(
            "cannot put the downloaded files at {}: {e}",
            host.display()
        )));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// `<parent>/.<name>.<what>`: next to `host`, on the same file system, so renames are atomic.
fn sibling(host: &Path, what: &str) -> PathBuf {
    let name = host
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    host.with_file_name(format!(".{name}.{what}"))
}

fn failed(message: String) -> ErrorInfo {
    ErrorInfo::new(ReasonCode::SandboxFailed, message)
}

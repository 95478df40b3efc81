//! The detached supervisor of a launched sandbox (a `warren __monitor` process, or a server's
//! task): it runs one job through the one supervision path (`jobs.rs`), so no command needs to
//! stay attached, and then, when its prompt ran cleanly and warm servers are on, it stays,
//! holding the sandbox's OpenCode server for the next follow-up, until that server idles out,
//! dies, or whoever hosts the monitor cancels it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::Cancel;
use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, SandboxId};
use warren_provider::Provider;
use warren_store::{LeaseHolder, StateStore};

use crate::jobs::{JobContext, MonitorJob};
use crate::paths::SandboxDirs;
use crate::recorder::NullObserver;
use crate::warm::WarmServer;
use crate::warm_control::{self, Answer, Request, WarmInfo};

/// The monitor's body. Errors are also recorded on the sandbox. With warm servers on, a monitor
/// whose prompt ran cleanly stays, holding the sandbox's OpenCode server for the next `exec`.
pub(crate) async fn run_monitor<P: Provider>(
    provider: &P,
    config: &Config,
    data_dir: &Path,
    store: &Arc<dyn StateStore>,
    job: MonitorJob,
    cancel: Cancel,
) -> Result<(), ErrorInfo> {
    let mut warm = None;
    let keep_warm = config.opencode.warm_idle_secs > 0;
    let ctx = JobContext {
        provider,
        config,
        data_dir,
        store,
    };
    let result = ctx
        .supervise(
            &job,
            None,
            keep_warm.then_some(&mut warm),
            &mut NullObserver,
            cancel.clone(),
        )
        .await
        .map(|_| ());
    if warm.is_some() {
        serve_warm(&ctx, &job.id(), &mut warm, &cancel).await;
    }
    if let Some(server) = warm.take() {
        server.shutdown().await;
    }
    result
}

/// Keeps the warm server until it idles out, dies, or the monitor is cancelled; runs each `exec`
/// handed over meanwhile on it.
async fn serve_warm<P: Provider>(
    ctx: &JobContext<'_, P>,
    id: &SandboxId,
    warm: &mut Option<WarmServer<P::Sandbox>>,
    cancel: &Cancel,
) {
    let dirs = SandboxDirs::new(ctx.data_dir, id);
    let path = warm_control::socket_path(&dirs);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "cannot listen on {}: {e}; not keeping OpenCode warm",
                path.display()
            );
            return;
        }
    };
    let idle = Duration::from_secs(ctx.config.opencode.warm_idle_secs);
    while let Some(server) = warm.as_mut() {
        warm_control::write_marker(
            &dirs,
            &WarmInfo {
                monitor: LeaseHolder::this_process(),
                idle_since: now_rfc3339(),
                idle_secs: idle.as_secs(),
                boot_ms: server.boot.as_secs_f64() * 1000.0,
                socket: dirs.run.join(&server.socket),
            },
        );
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tokio::time::sleep(idle) => break,
            () = server.wait_ended() => {
                tracing::warn!("the warm OpenCode server exited: {:?}", server.log_tail());
                break;
            }
            _ = cancel.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let Some((request, mut stream)) = read_request(stream).await else {
            continue;
        };
        let job = match request {
            Request::Shutdown => {
                let _ = answer(&mut stream, true, None).await;
                break;
            }
            Request::Run { job } => job,
        };
        if job.id() != *id || !matches!(job, MonitorJob::Exec { .. }) {
            let refusal = ErrorInfo::new(
                ReasonCode::InvalidArgument,
                "this monitor only runs follow-up prompts of its own sandbox",
            );
            let _ = answer(&mut stream, false, Some(refusal)).await;
            continue;
        }
        if let Ok(Some(lease)) = ctx.store.lease(id) {
            let busy = ErrorInfo::new(
                ReasonCode::SandboxBusy,
                format!(
                    "the sandbox is busy: {} is held by {}",
                    lease.operation, lease.holder
                ),
            )
            .with_hint("wait for it to finish, then run the prompt again");
            let _ = answer(&mut stream, false, Some(busy)).await;
            continue;
        }
        // The answer is the commitment: a caller that never got it starts its own monitor.
        if answer(&mut stream, true, None).await.is_err() {
            continue;
        }
        drop(stream);
        if let Err(e) = ctx
            .supervise(&job, None, Some(warm), &mut NullObserver, cancel.clone())
            .await
        {
            tracing::warn!("a follow-up prompt failed: {}", e.message);
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    warm_control::remove_marker(&dirs);
}

async fn read_request(
    stream: tokio::net::UnixStream,
) -> Option<(Request, tokio::io::BufReader<tokio::net::UnixStream>)> {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    match read {
        Ok(Ok(n)) if n > 0 => serde_json::from_str(&line).ok().map(|r| (r, reader)),
        _ => None,
    }
}

async fn answer(
    stream: &mut tokio::io::BufReader<tokio::net::UnixStream>,
    accepted: bool,
    error: Option<ErrorInfo>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut line =
        serde_json::to_vec(&Answer { accepted, error }).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.get_mut().write_all(&line).await?;
    stream.get_mut().flush().await
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

//! A warm OpenCode server for a launched sandbox. `opencode serve` stays up in the sandbox between
//! prompts, with the model gateway it reaches the model through, and each prompt runs as a short
//! client (`opencode run --attach`) that prints the same event stream as a one-shot run. A
//! follow-up `exec` then pays OpenCode's boot once per warm period instead of once per prompt.
//!
//! In a sandbox without a shared file system (a pod) the server is the same, with three
//! differences. Its socket is served on the host by the provider ([`Sandbox::expose`]) at the
//! path a host-path sandbox's init would write, so every client is unchanged. The sandbox keeps
//! a copy of the workspace between prompts while the host's stays the truth: each prompt's work
//! comes back as soon as the prompt ends ([`WarmServer::bring_back`]), before its outcome is
//! recorded, and the host's workspace is uploaded again before a prompt when anything changed it
//! meanwhile ([`WarmServer::freshen`]). HOME, where the idle server keeps OpenCode's session
//! store open, comes back once, when the server stops: read per prompt it could be caught
//! mid-write by the server's own work after a turn (titles, compaction), and nothing on the host
//! reads it while the server lives; a monitor killed meanwhile leaves the pod to recovery,
//! which reads HOME back then.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use warren_agent::OpencodeLaunch;
use warren_agent::opencode::{SERVER_PORT, SERVER_READY_LINE, server_socket_name};
use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_gateway::{GatewayHandle, GatewayNotice};
use warren_provider::{
    ExecChild, GatewayAttachment, Provider, SANDBOX_HOME, SANDBOX_WORKSPACE, Sandbox, SandboxSpec,
};

use crate::paths::SandboxDirs;
use crate::stamp::{Stamp, stamp};

/// OpenCode's server boots in a few seconds; a slow disk or a cold page cache can take longer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of the server's own output kept to explain a failure.
const LOG_LINES: usize = 40;

type LogTail = Arc<Mutex<VecDeque<String>>>;

pub(crate) struct WarmServer<S> {
    sandbox: S,
    gateway: GatewayHandle,
    pub(crate) notices: mpsc::UnboundedReceiver<GatewayNotice>,
    /// The server's socket, a file name in the sandbox's run directory.
    pub(crate) socket: String,
    ended: watch::Receiver<bool>,
    log: LogTail,
    /// Why the sandbox went away under the server (a pod evicted, its node lost), when it did.
    lost: Arc<Mutex<Option<String>>>,
    /// From creating the sandbox to the server accepting connections.
    pub(crate) boot: Duration,
    /// What the server was booted with: OpenCode's config and the gateway's upstream.
    booted_for: (String, String),
    /// How the sandbox reaches the gateway (a follow-up's launch is built with the same, so its
    /// config compares equal).
    pub(crate) attachment: GatewayAttachment,
    /// Set when the sandbox shares no file system with warren: its files move by the engine.
    files: Option<Files>,
    /// Kills the server's process (the sandbox stays, to read its files).
    stop: Option<oneshot::Sender<()>>,
}

/// What a warm sandbox without a shared file system needs to keep the host's copy the truth.
pub(crate) struct Files {
    pub(crate) dirs: SandboxDirs,
    pub(crate) limits: warren_sync::Limits,
    /// The host workspace as it was when the sandbox's copy last equalled it.
    synced: Option<Stamp>,
}

impl Files {
    pub(crate) fn new(dirs: SandboxDirs, limits: warren_sync::Limits) -> Self {
        Self {
            dirs,
            limits,
            synced: None,
        }
    }
}

impl<S: Sandbox> WarmServer<S> {
    /// The server's gateway, to set the budgets of each prompt on.
    pub(crate) fn gateway(&self) -> &GatewayHandle {
        &self.gateway
    }

    /// Creates the sandbox and starts the server in it; returns once it accepts connections.
    /// The gateway is the server's for its whole life and is shut down with it. With `files`
    /// (no shared file system) the host's workspace and HOME are uploaded first, and the
    /// provider exposes the server's port on the host.
    pub(crate) async fn start<P: Provider<Sandbox = S>>(
        provider: &P,
        spec: &SandboxSpec,
        launch: &OpencodeLaunch,
        upstream: &str,
        mut gateway: GatewayHandle,
        mut files: Option<Files>,
    ) -> Result<Self, ErrorInfo> {
        let started = Instant::now();
        let notices = gateway.take_notices();
        let sandbox = match provider.create(spec).await {
            Ok((sandbox, _)) => sandbox,
            Err(e) => {
                gateway.shutdown().await;
                return Err(e.to_error_info());
            }
        };
        if let Some(files) = &mut files {
            // Stamped before: a change made while the upload runs is seen as one.
            let before = stamp(&files.dirs.workspace);
            if let Err(e) = crate::transfer::upload_all(&sandbox, &files.dirs).await {
                let _ = sandbox.destroy().await;
                gateway.shutdown().await;
                return Err(e);
            }
            files.synced = before;
        }
        let socket = server_socket_name(std::process::id());
        let exec = match files {
            None => launch.server_exec_spec(&socket),
            Some(_) => launch.loopback_server_exec_spec(),
        };
        let child = match sandbox.exec(&exec) {
            Ok(child) => child,
            Err(e) => {
                let _ = sandbox.destroy().await;
                gateway.shutdown().await;
                return Err(e.to_error_info());
            }
        };
        let log = LogTail::default();
        let lost = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (ended_tx, ended) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(watch_server(
            child,
            (log.clone(), lost.clone()),
            ready_tx,
            ended_tx,
            stop_rx,
        ));
        let mut server = Self {
            sandbox,
            gateway,
            notices,
            socket,
            ended,
            log,
            lost,
            boot: Duration::ZERO,
            booted_for: (launch.config_json(), upstream.to_owned()),
            attachment: spec.gateway.clone(),
            files,
            stop: Some(stop_tx),
        };
        let failure = tokio::select! {
            Ok(()) = ready_rx => None,
            () = server.wait_ended() => Some("it exited during its boot".to_owned()),
            () = tokio::time::sleep(BOOT_TIMEOUT) => Some("it did not come up in time".to_owned()),
        };
        let failure = match (failure, &server.files) {
            (None, Some(files)) => {
                let path = files.dirs.run.join(&server.socket);
                match server.sandbox.expose(SERVER_PORT, &path).await {
                    Ok(()) => None,
                    Err(e) => Some(format!("its port could not be served on the host: {e}")),
                }
            }
            (failure, _) => failure,
        };
        if let Some(why) = failure {
            let tail = server.log_tail().join("\n");
            server.shutdown().await;
            return Err(ErrorInfo::new(
                ReasonCode::SandboxFailed,
                format!("the sandbox's OpenCode server could not start: {why}; its output:\n{tail}"),
            )
            .with_hint("set opencode.warm_idle_secs = 0 to run every prompt with a one-shot 'opencode run'"));
        }
        server.boot = started.elapsed();
        Ok(server)
    }

    /// Whether a prompt launched as `launch` against `upstream` can run on this server (a role
    /// with another model needs a server booted with that model's config).
    pub(crate) fn serves(&self, launch: &OpencodeLaunch, upstream: &str) -> bool {
        self.booted_for.0 == launch.config_json() && self.booted_for.1 == upstream
    }

    pub(crate) fn is_alive(&self) -> bool {
        !*self.ended.borrow()
    }

    /// Resolves when the server process has ended.
    pub(crate) async fn wait_ended(&mut self) {
        // An error means the watcher task is gone: the server cannot be relied on either way.
        let _ = self.ended.wait_for(|ended| *ended).await;
    }

    /// Why the sandbox went away under the server, if that is how the server ended.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    pub(crate) fn log_tail(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Before a prompt, with no shared file system: the sandbox's workspace is made the host's
    /// again when anything changed the host's since they were last equal. The marker that lets
    /// recovery skip the sandbox's workspace goes first: from now on it may hold new work.
    pub(crate) async fn freshen(&mut self) -> Result<(), ErrorInfo> {
        let Some(files) = &mut self.files else {
            return Ok(());
        };
        crate::leftovers::set_workspace_current(&files.dirs, false).map_err(|e| {
            ErrorInfo::new(
                ReasonCode::SandboxFailed,
                format!("cannot mark {} as running: {e}", files.dirs.root.display()),
            )
        })?;
        let now = stamp(&files.dirs.workspace);
        if now.is_some() && now == files.synced {
            return Ok(());
        }
        crate::transfer::upload(&self.sandbox, &files.dirs.workspace, SANDBOX_WORKSPACE).await?;
        files.synced = now;
        Ok(())
    }

    /// After a prompt, with no shared file system: its work comes back into the host's
    /// workspace. `stop_first` (a prompt that failed or was stopped, perhaps mid-turn) kills the
    /// server first, so nothing writes while the files are read; a clean prompt leaves an idle
    /// server, read as it is.
    pub(crate) async fn bring_back(&mut self, stop_first: bool) -> Result<(), ErrorInfo> {
        if self.files.is_none() {
            return Ok(());
        }
        if stop_first {
            self.stop_process().await;
        }
        let Some(files) = &mut self.files else {
            return Ok(());
        };
        files.synced = None;
        crate::transfer::download(
            &self.sandbox,
            SANDBOX_WORKSPACE,
            &files.dirs.workspace,
            &files.limits,
        )
        .await?;
        files.synced = stamp(&files.dirs.workspace);
        if let Err(e) = crate::leftovers::set_workspace_current(&files.dirs, true) {
            // Without it a killed monitor's pod would be recovered whole: still right, as long
            // as nothing changes the host's workspace before then.
            tracing::warn!("cannot mark the workspace as brought back: {e}");
        }
        Ok(())
    }

    /// Kills the server's process and waits for its end.
    async fn stop_process(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.wait_ended()).await;
    }

    /// With no shared file system, HOME (OpenCode's session store) comes back before the
    /// sandbox goes, the server stopped first; the workspace already came back after each prompt.
    async fn keep_home(&mut self) {
        if self.files.is_none() {
            return;
        }
        self.stop_process().await;
        let Some(files) = &self.files else { return };
        if let Err(e) =
            crate::transfer::download(&self.sandbox, SANDBOX_HOME, &files.dirs.home, &files.limits)
                .await
        {
            tracing::warn!(
                "the warm sandbox's HOME could not be brought back (its OpenCode sessions start over): {}",
                e.message
            );
        }
        // The marker stays: a pod still terminating when the next run looks for leftovers is
        // older than the host's workspace too. That run's recovery clears it.
    }

    /// Stops everything in the sandbox, then the gateway.
    pub(crate) async fn shutdown(mut self) {
        self.keep_home().await;
        let _ = self.sandbox.destroy().await;
        self.gateway.shutdown().await;
    }

    /// [`WarmServer::shutdown`], handing back what the gateway metered that nobody read yet (its
    /// last requests are recorded once it has shut down).
    pub(crate) async fn shutdown_keeping_notices(
        mut self,
    ) -> mpsc::UnboundedReceiver<GatewayNotice> {
        self.keep_home().await;
        let _ = self.sandbox.destroy().await;
        self.gateway.shutdown().await;
        self.notices
    }
}

/// Keeps the server's output (the last lines of it), says when it is ready, and when it ended;
/// kills it when told to.
async fn watch_server(
    mut child: ExecChild,
    (log, lost): (LogTail, Arc<Mutex<Option<String>>>),
    ready: oneshot::Sender<()>,
    ended: watch::Sender<bool>,
    stop: oneshot::Receiver<()>,
) {
    let mut ready = Some(ready);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_log = log.clone();
    let on_stdout = async move {
        read_lines(stdout, &out_log, |line| {
            if line.contains(SERVER_READY_LINE)
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        })
        .await;
    };
    let on_stderr = read_lines(stderr, &log, |_| {});
    let stopped = async {
        // A dropped sender (the server shut down by destroying its sandbox) is no stop.
        if stop.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = async { tokio::join!(on_stdout, on_stderr) } => {}
        () = stopped => {
            let _ = child.kill().await;
        }
    }
    if let Err(e) = child.wait().await
        && let Some(why) = warren_provider::SandboxLost::in_error(&e)
        && let Ok(mut lost) = lost.lock()
    {
        *lost = Some(why.0.clone());
    }
    let _ = ended.send(true);
}

async fn read_lines(
    stream: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    log: &LogTail,
    mut on_line: impl FnMut(&str),
) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        on_line(&line);
        if let Ok(mut log) = log.lock() {
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    }
}

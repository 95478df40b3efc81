//! A warm OpenCode server for a launched sandbox. `opencode serve` stays up in the sandbox between
//! prompts, with the model gateway it reaches the model through, and each prompt runs as a short
//! client (`opencode run --attach`) that prints the same event stream as a one-shot run. A
//! follow-up `exec` then pays OpenCode's boot once per warm period instead of once per prompt.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use warren_agent::OpencodeLaunch;
use warren_agent::opencode::{SERVER_READY_LINE, server_socket_name};
use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_gateway::{GatewayHandle, GatewayNotice};
use warren_provider::{ExecChild, Provider, Sandbox, SandboxSpec};

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
    /// From creating the sandbox to the server accepting connections.
    pub(crate) boot: Duration,
    /// What the server was booted with: OpenCode's config and the gateway's upstream.
    booted_for: (String, String),
}

impl<S: Sandbox> WarmServer<S> {
    /// The server's gateway, to set the budgets of each prompt on.
    pub(crate) fn gateway(&self) -> &GatewayHandle {
        &self.gateway
    }

    /// Creates the sandbox and starts the server in it; returns once it accepts connections.
    /// The gateway is the server's for its whole life and is shut down with it.
    pub(crate) async fn start<P: Provider<Sandbox = S>>(
        provider: &P,
        spec: &SandboxSpec,
        launch: &OpencodeLaunch,
        upstream: &str,
        mut gateway: GatewayHandle,
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
        let socket = server_socket_name(std::process::id());
        let child = match sandbox.exec(&launch.server_exec_spec(&socket)) {
            Ok(child) => child,
            Err(e) => {
                let _ = sandbox.destroy().await;
                gateway.shutdown().await;
                return Err(e.to_error_info());
            }
        };
        let log = LogTail::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (ended_tx, ended) = watch::channel(false);
        tokio::spawn(watch_server(child, log.clone(), ready_tx, ended_tx));
        let mut server = Self {
            sandbox,
            gateway,
            notices,
            socket,
            ended,
            log,
            boot: Duration::ZERO,
            booted_for: (launch.config_json(), upstream.to_owned()),
        };
        let failure = tokio::select! {
            Ok(()) = ready_rx => None,
            () = server.wait_ended() => Some("it exited during its boot"),
            () = tokio::time::sleep(BOOT_TIMEOUT) => Some("it did not come up in time"),
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

    pub(crate) fn log_tail(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops everything in the sandbox, then the gateway.
    pub(crate) async fn shutdown(self) {
        let _ = self.sandbox.destroy().await;
        self.gateway.shutdown().await;
    }

    /// [`WarmServer::shutdown`], handing back what the gateway metered that nobody read yet (its
    /// last requests are recorded once it has shut down).
    pub(crate) async fn shutdown_keeping_notices(self) -> mpsc::UnboundedReceiver<GatewayNotice> {
        let _ = self.sandbox.destroy().await;
        self.gateway.shutdown().await;
        self.notices
    }
}

/// Keeps the server's output (the last lines of it), says when it is ready, and when it ended.
async fn watch_server(
    mut child: ExecChild,
    log: LogTail,
    ready: oneshot::Sender<()>,
    ended: watch::Sender<bool>,
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
    tokio::join!(on_stdout, on_stderr);
    let _ = child.wait().await;
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

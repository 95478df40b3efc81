//! How the CLI hosts supervisors: a detached `warren __monitor` process per launched sandbox (its
//! own process group, so a Ctrl-C in the launching terminal never reaches it), and the signals
//! that stop an operation (Ctrl-C interrupts the foreground run; SIGTERM, which `teardown --force`
//! sends to a lease holder, stops it). The engine sees only its traits and a `Cancel`.

use std::path::PathBuf;
use std::process::Stdio;

use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode};
use warren_engine::{Cancel, LaunchedSupervisor, MonitorJob, SandboxDirs, SupervisorLauncher};

/// Environment variable carrying the launcher's effective config to the monitor, so both use
/// exactly the same settings.
pub const MONITOR_CONFIG_ENV: &str = "WARREN_MONITOR_CONFIG";

pub struct ProcessLauncher {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
}

impl ProcessLauncher {
    pub fn new(data_dir: PathBuf) -> Result<Self, ErrorInfo> {
        let exe = std::env::current_exe().map_err(|e| {
            ErrorInfo::new(
                ReasonCode::Internal,
                format!("cannot locate the warren binary: {e}"),
            )
        })?;
        Ok(Self { exe, data_dir })
    }
}

struct MonitorProcess(std::process::Child);

impl LaunchedSupervisor for MonitorProcess {
    fn exited(&mut self) -> Option<String> {
        self.0.try_wait().ok().flatten().map(|s| s.to_string())
    }
}

impl SupervisorLauncher for ProcessLauncher {
    fn launch(
        &self,
        job: &MonitorJob,
        config: &Config,
    ) -> Result<Box<dyn LaunchedSupervisor>, ErrorInfo> {
        use std::os::unix::process::CommandExt;
        let dirs = SandboxDirs::new(&self.data_dir, &job.id());
        std::fs::create_dir_all(&dirs.root).map_err(|e| {
            ErrorInfo::new(
                ReasonCode::SandboxFailed,
                format!("cannot create {}: {e}", dirs.root.display()),
            )
        })?;
        let log_path = dirs.root.join("monitor.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("cannot open {}: {e}", log_path.display()),
                )
            })?;
        let log_err = log
            .try_clone()
            .map_err(|e| ErrorInfo::new(ReasonCode::SandboxFailed, e.to_string()))?;
        let job_json = serde_json::to_string(job)
            .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
        let config_json = serde_json::to_string(config)
            .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
        let child = std::process::Command::new(&self.exe)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["__monitor", "--job", &job_json])
            .env(MONITOR_CONFIG_ENV, config_json)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("cannot start the monitor {}: {e}", self.exe.display()),
                )
            })?;
        Ok(Box::new(MonitorProcess(child)))
    }
}

/// Turns this process's signals into `cancel`: Ctrl-C (when `interruptible`) interrupts,
/// SIGTERM stops. Runs until the process ends.
pub fn cancel_on_signals(cancel: &Cancel, interruptible: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        let ctrl_c = async {
            if interruptible {
                let _ = tokio::signal::ctrl_c().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = ctrl_c => cancel.cancel(Cancel::interrupted()),
            _ = term.recv() => cancel.cancel(Cancel::stopped("a signal (teardown --force)")),
        }
    });
}

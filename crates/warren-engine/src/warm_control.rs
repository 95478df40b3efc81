//! How other warren processes reach a monitor that keeps its sandbox's OpenCode server warm: a
//! Unix socket in the sandbox's directory that takes the next `exec` (so it runs on the warm
//! server) or a request to shut down (teardown), and a marker file naming the monitor's process,
//! so `status` can show the warm server and teardown can stop it even if the socket does not answer.
//!
//! The protocol is one JSON line each way. A monitor that answers `accepted` has committed to the
//! job; any other outcome (no socket, no answer) leaves the caller to start a new monitor.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use warren_domain::ErrorInfo;
use warren_store::LeaseHolder;

use crate::jobs::MonitorJob;
use crate::paths::SandboxDirs;

const SOCKET: &str = "monitor.sock";
const MARKER: &str = "warm.json";
/// How long a caller waits for the monitor's answer: it answers at once unless it is busy.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long teardown waits for a warm monitor to stop its sandbox before it kills the monitor.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn socket_path(dirs: &SandboxDirs) -> PathBuf {
    dirs.root.join(SOCKET)
}

fn marker_path(dirs: &SandboxDirs) -> PathBuf {
    dirs.root.join(MARKER)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub(crate) enum Request {
    Run { job: MonitorJob },
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// What `status` shows about a sandbox's warm OpenCode server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmInfo {
    /// The monitor that holds the server (and the sandbox it runs in).
    pub monitor: LeaseHolder,
    /// When the server last finished a prompt (RFC 3339).
    pub idle_since: String,
    /// It stops this many seconds after `idle_since` unless a prompt comes.
    pub idle_secs: u64,
    /// From creating the sandbox to the server accepting connections, when it booted.
    pub boot_ms: f64,
    /// The server's HTTP API on the host (a Unix socket), e.g. for
    /// `curl --unix-socket SOCKET http://opencode/session`.
    pub socket: PathBuf,
}

/// The warm server of this sandbox, if a live monitor holds one.
pub fn warm_info(dirs: &SandboxDirs) -> Option<WarmInfo> {
    let text = std::fs::read_to_string(marker_path(dirs)).ok()?;
    let info: WarmInfo = serde_json::from_str(&text).ok()?;
    info.monitor.is_alive().then_some(info)
}

pub(crate) fn write_marker(dirs: &SandboxDirs, info: &WarmInfo) {
    let path = marker_path(dirs);
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(info)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!("cannot record the warm server in {}: {e}", path.display());
    }
}

pub(crate) fn remove_marker(dirs: &SandboxDirs) {
    let _ = std::fs::remove_file(marker_path(dirs));
}

/// What became of offering a job to the sandbox's warm monitor.
#[derive(Debug)]
pub(crate) enum Handoff {
    /// The warm monitor runs it.
    Accepted,
    /// The warm monitor answered, and said no (the error says why).
    Refused(ErrorInfo),
    /// There is no warm monitor, or it did not answer: start a new one.
    NoWarmMonitor,
}

/// Offers `job` to the sandbox's warm monitor.
pub(crate) fn hand_off(dirs: &SandboxDirs, job: &MonitorJob) -> Handoff {
    if warm_info(dirs).is_none() {
        return Handoff::NoWarmMonitor;
    }
    match ask(
        &socket_path(dirs),
        &Request::Run { job: job.clone() },
        ANSWER_TIMEOUT,
    ) {
        Some(Answer { accepted: true, .. }) => Handoff::Accepted,
        Some(Answer {
            error: Some(error), ..
        }) => Handoff::Refused(error),
        _ => Handoff::NoWarmMonitor,
    }
}

/// Stops the sandbox's warm monitor (and with it the server and its sandbox), if there is one:
/// asks it first, and kills it by its recorded pid if it does not stop in time.
pub(crate) fn stop_warm_monitor(dirs: &SandboxDirs) {
    let Some(info) = warm_info(dirs) else {
        return;
    };
    let _ = ask(&socket_path(dirs), &Request::Shutdown, ANSWER_TIMEOUT);
    // A monitor removes its marker when it stops serving, then ends its sandbox and (a monitor
    // process) exits. A server hosts warm monitors as tasks of its own process, which lives on:
    // whether this server hosts it or another replica on the same data dir does, its pid
    // outlives it, so a monitor whose marker is gone is never killed. One of this process is
    // gone with its marker; another process is waited for until it exits or the time is up.
    let own = info.monitor.pid == std::process::id();
    let serving = || marker_path(dirs).exists() && (own || info.monitor.is_alive());
    let running = || !own && info.monitor.is_alive();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while (serving() || running()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if serving()
        && !own
        && let Some(pid) = i32::try_from(info.monitor.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
    {
        tracing::warn!(
            "the warm monitor {} did not stop; killing it",
            info.monitor.pid
        );
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    remove_marker(dirs);
}

fn ask(socket: &Path, request: &Request, timeout: Duration) -> Option<Answer> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut line = serde_json::to_vec(request).ok()?;
    line.push(b'\n');
    stream.write_all(&line).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

//! Processes in a pod: the contract's exec over the API's exec subresource (a websocket carrying
//! stdin, stdout, stderr and the final status), and the workspace moved through it as tar
//! streams. The API's exec has no environment or working directory of its own, so every command
//! runs under `env -i -C <cwd> -- NAME=VALUE... argv`: the spec's environment is the whole
//! environment, as on the other providers. Nor can an exec be signalled: closing its stream
//! leaves its processes running. So each exec starts in a session of its own (`setsid -w`) whose
//! id it writes to a pid file in the pod's /tmp, and kill is a second exec that kills that whole
//! process group, leaving the pod (and its files, for the download that follows) in place.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use warren_provider::{ExecChild, ExecHandle, ExecSpec, SandboxLost};

use crate::lost::LossReceiver;

use crate::pod::CONTAINER;

/// A pid file name unique to this exec, among every warren process exec'ing into the pod.
fn pid_file() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("/tmp/.warren-exec-{}-{n}-{nanos}.pid", std::process::id())
}

/// The command the API runs for `spec`: a new session (so kill reaches every process it
/// starts) that records its id in `pid_file`, then the spec's command under a clean environment.
pub(crate) fn command(spec: &ExecSpec, pid_file: &str) -> Vec<String> {
    let mut argv = vec![
        "setsid".to_owned(),
        "-w".to_owned(),
        "sh".to_owned(),
        "-c".to_owned(),
        r#"echo $$ > "$0" && exec "$@""#.to_owned(),
        pid_file.to_owned(),
        "env".to_owned(),
        "-i".to_owned(),
        "-C".to_owned(),
        spec.cwd.clone(),
        "--".to_owned(),
    ];
    argv.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(spec.argv.iter().cloned());
    argv
}

pub(crate) fn params(stdin: bool, stdout: bool, stderr: bool) -> AttachParams {
    AttachParams::default()
        .container(CONTAINER)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
}

/// Kills the process group of the exec that wrote `pid_file`; an exec that never started (no
/// file) or already ended is not an error.
pub(crate) fn kill_command(pid_file: &str) -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        r#"[ -s "$0" ] && kill -KILL "-$(cat "$0")" 2>/dev/null; rm -f "$0"; exit 0"#.to_owned(),
        pid_file.to_owned(),
    ]
}

/// The exit code in an exec's final status: `Success` is 0; a failure carries the code as the
/// `ExitCode` cause; anything else (killed, the stream cut) is unknown.
pub(crate) fn exit_code(status: Option<&Status>) -> Option<i32> {
    let status = status?;
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    status
        .details
        .as_ref()?
        .causes
        .iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse().ok())
}

/// A human description of a failed exec's status, for errors.
pub(crate) fn describe(status: Option<&Status>) -> String {
    match status {
        None => "the exec stream ended without a status".into(),
        Some(s) => s
            .message
            .clone()
            .or_else(|| s.reason.clone())
            .unwrap_or_else(|| "the exec failed".into()),
    }
}

/// Starts `spec` in the pod. The API call happens on a task, since the contract's exec is not
/// async; a failure to start surfaces from [`ExecChild::wait`] as an error. With `lost`, the
/// exec ends as soon as the pod is known lost, with a [`SandboxLost`] error.
pub(crate) fn spawn(
    api: Api<Pod>,
    pod: String,
    spec: &ExecSpec,
    lost: Option<LossReceiver>,
) -> ExecChild {
    let pid_file = pid_file();
    let argv = command(spec, &pid_file);
    let killer = Killer {
        api: api.clone(),
        pod: pod.clone(),
        pid_file,
    };
    let (out_tx, out_rx) = tokio::io::duplex(64 * 1024);
    let (err_tx, err_rx) = tokio::io::duplex(64 * 1024);
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<std::io::Result<Option<i32>>>();
    tokio::spawn(async move {
        let result = run(api, pod, argv, out_tx, err_tx, kill_rx, lost).await;
        let _ = done_tx.send(result);
    });
    ExecChild::new(
        Some(Box::pin(out_rx)),
        Some(Box::pin(err_rx)),
        Box::new(KubeExecHandle {
            killer,
            kill: Some(kill_tx),
            done: Some(done_rx),
            result: None,
        }),
    )
}

/// How long an exec that ended badly waits for the pod's watch to say whether the pod went
/// with it (an eviction kills the process a moment before the status says "Evicted").
const LOSS_SETTLE: Duration = Duration::from_secs(3);

/// Resolves with the loss once the pod is known lost; never, when it is not or cannot be known.
async fn lost_pod(lost: Option<LossReceiver>) -> String {
    if let Some(mut rx) = lost
        && let Ok(why) = rx.wait_for(Option::is_some).await
        && let Some(why) = why.clone()
    {
        return why;
    }
    std::future::pending().await
}

fn lost_error(why: String) -> std::io::Error {
    std::io::Error::other(SandboxLost(why))
}

async fn run(
    api: Api<Pod>,
    pod: String,
    argv: Vec<String>,
    mut out_tx: tokio::io::DuplexStream,
    mut err_tx: tokio::io::DuplexStream,
    mut kill_rx: oneshot::Receiver<()>,
    lost: Option<LossReceiver>,
) -> std::io::Result<Option<i32>> {
    let streams = params(false, true, true);
    let started = tokio::select! {
        started = api.exec(&pod, argv, &streams) => started,
        _ = &mut kill_rx => return Ok(None),
        why = lost_pod(lost.clone()) => return Err(lost_error(why)),
    };
    let mut attached = match started {
        Ok(attached) => attached,
        Err(e) => {
            // An exec refused because the pod is gone is the pod's loss, not the command's.
            if lost.is_some()
                && let Ok(why) = tokio::time::timeout(LOSS_SETTLE, lost_pod(lost.clone())).await
            {
                return Err(lost_error(why));
            }
            return Err(std::io::Error::other(format!("exec in the pod {pod}: {e}")));
        }
    };
    let mut stdout = attached.stdout();
    let mut stderr = attached.stderr();
    let status = attached.take_status();
    let copy = async {
        let out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = tokio::io::copy(s, &mut out_tx).await;
            }
            let _ = out_tx.shutdown().await;
        };
        let err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = tokio::io::copy(s, &mut err_tx).await;
            }
            let _ = err_tx.shutdown().await;
        };
        tokio::join!(out, err);
        match status {
            Some(s) => s.await,
            None => None,
        }
    };
    tokio::select! {
        status = copy => {
            let code = exit_code(status.as_ref());
            if code != Some(0)
                && lost.is_some()
                && let Ok(why) = tokio::time::timeout(LOSS_SETTLE, lost_pod(lost)).await
            {
                return Err(lost_error(why));
            }
            Ok(code)
        }
        _ = kill_rx => {
            // Closing the stream is all the exec API offers; see docs/architecture.md.
            attached.abort();
            Ok(None)
        }
        why = lost_pod(lost.clone()) => {
            attached.abort();
            Err(lost_error(why))
        }
    }
}

/// Kills every process in the pod's container but its first (which keeps the pod up), as the
/// agent's user; a pod that no longer runs has nothing to stop.
pub(crate) async fn stop_all(api: &Api<Pod>, pod: &str) {
    let argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "kill -KILL -1 2>/dev/null; exit 0".to_owned(),
    ];
    if let Ok(mut attached) = api.exec(pod, argv, &params(false, false, true)).await
        && let Some(status) = attached.take_status()
    {
        let _ = status.await;
    }
}

/// What kill needs to reach an exec's processes.
struct Killer {
    api: Api<Pod>,
    pod: String,
    pid_file: String,
}

impl Killer {
    async fn kill(&self) -> std::io::Result<()> {
        let failed = |e: String| {
            std::io::Error::other(format!("killing an exec in the pod {}: {e}", self.pod))
        };
        let mut attached = self
            .api
            .exec(
                &self.pod,
                kill_command(&self.pid_file),
                &params(false, false, true),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = match attached.take_status() {
            Some(s) => s.await,
            None => None,
        };
        match exit_code(status.as_ref()) {
            Some(0) => Ok(()),
            _ => Err(failed(describe(status.as_ref()))),
        }
    }
}

struct KubeExecHandle {
    killer: Killer,
    kill: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<std::io::Result<Option<i32>>>>,
    result: Option<Option<i32>>,
}

impl ExecHandle for KubeExecHandle {
    fn kill(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + '_>> {
        Box::pin(async move {
            if self.kill.is_none() {
                return Ok(());
            }
            let killed = self.killer.kill().await;
            // Then the stream: whatever the kill did, nothing more is read from this exec.
            if let Some(tx) = self.kill.take() {
                let _ = tx.send(());
            }
            killed
        })
    }

    fn wait(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<Option<i32>>> + Send + '_>> {
        Box::pin(async move {
            if let Some(code) = self.result {
                return Ok(code);
            }
            let Some(rx) = self.done.take() else {
                return Ok(None);
            };
            let code = rx
                .await
                .map_err(|_| std::io::Error::other("the exec task ended without a result"))??;
            self.result = Some(code);
            Ok(code)
        })
    }
}

/// Replaces `dir`'s contents with the archive: `tar -x` in the pod, fed the stream on stdin.
pub(crate) async fn upload(
    api: &Api<Pod>,
    pod: &str,
    dir: &str,
    mut archive: warren_provider::TarStream,
) -> Result<(), String> {
    let script = r#"find "$1" -mindepth 1 -delete && exec tar -x -f - -C "$1" --no-same-owner"#;
    let argv = ["sh", "-c", script, "sh", dir];
    let mut attached = api
        .exec(pod, argv, &params(true, false, true))
        .await
        .map_err(|e| format!("exec in the pod {pod}: {e}"))?;
    let mut stdin = attached.stdin().ok_or("the exec has no stdin")?;
    let mut stderr = attached.stderr();
    let status = attached.take_status();
    let send = async {
        let sent = tokio::io::copy(&mut archive, &mut stdin).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
        sent
    };
    let read_err = async {
        let mut text = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = tokio::io::AsyncReadExt::read_to_string(s, &mut text).await;
        }
        text
    };
    let (sent, text) = tokio::join!(send, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    sent.map_err(|e| format!("sending the archive: {e}"))?;
    if exit_code(status.as_ref()) == Some(0) {
        Ok(())
    } else {
        Err(format!(
            "tar in the pod failed ({}): {}",
            describe(status.as_ref()),
            text.trim()
        ))
    }
}

/// `dir` as a tar stream (`tar -c` in the pod). The stream fails at its end, instead of ending
/// quietly, when tar in the pod did not succeed: a truncated archive is never taken as whole.
pub(crate) async fn download(
    api: &Api<Pod>,
    pod: &str,
    dir: &str,
) -> Result<warren_provider::TarStream, String> {
    let argv = ["tar", "-c", "-f", "-", "-C", dir, "."];
    let mut attached = api
        .exec(pod, argv, &params(false, true, false))
        .await
        .map_err(|e| format!("exec in the pod {pod}: {e}"))?;
    let stdout = attached.stdout().ok_or("the exec has no stdout")?;
    let status = attached.take_status().ok_or("the exec has no status")?;
    Ok(Box::pin(Checked {
        inner: stdout,
        status: Some(Box::pin(status)),
        _process: attached,
    }))
}

type StatusFuture = Pin<Box<dyn Future<Output = Option<Status>> + Send>>;

/// A reader whose end is an error unless the process that wrote it exited 0.
struct Checked<R> {
    inner: R,
    status: Option<StatusFuture>,
    /// Kept so the websocket lives as long as the reader.
    _process: AttachedProcess,
}

impl<R: AsyncRead + Unpin> AsyncRead for Checked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {}
            other => return other,
        }
        let Some(fut) = self.status.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let status = std::task::ready!(fut.as_mut().poll(cx));
        self.status = None;
        if exit_code(status.as_ref()) == Some(0) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(std::io::Error::other(format!(
                "tar in the pod failed: {}",
                describe(status.as_ref())
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn the_command_carries_the_whole_environment_and_the_directory() {
        let spec = ExecSpec {
            argv: vec!["opencode".into(), "run".into()],
            env: vec![("HOME".into(), "/home/agent".into())],
            cwd: "/workspace".into(),
        };
        let argv = command(&spec, "/tmp/p.pid");
        assert_eq!(
            argv[..6],
            [
                "setsid",
                "-w",
                "sh",
                "-c",
                r#"echo $$ > "$0" && exec "$@""#,
                "/tmp/p.pid"
            ]
        );
        assert_eq!(
            argv[6..],
            [
                "env",
                "-i",
                "-C",
                "/workspace",
                "--",
                "HOME=/home/agent",
                "opencode",
                "run"
            ]
        );
    }

    #[test]
    fn pid_files_differ_per_exec_and_kill_names_the_same_one() {
        let (a, b) = (pid_file(), pid_file());
        assert_ne!(a, b);
        assert!(a.starts_with("/tmp/"));
        assert_eq!(kill_command(&a).last(), Some(&a));
    }

    /// The two scripts, run by a real shell here: the session's id lands in the file, and kill
    /// ends the whole group (a child included) and tolerates a missing file.
    #[test]
    fn the_scripts_record_a_session_and_kill_its_group() {
        let dir = std::env::temp_dir().join(format!("warren-kube-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("x.pid").to_string_lossy().into_owned();
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), "sleep 60 & sleep 60".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/".into(),
        };
        let argv = command(&spec, &pid_file);
        let mut child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(true, |s| s.trim().is_empty()) {
            assert!(std::time::Instant::now() < deadline, "no pid file");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let sid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let kill = kill_command(&pid_file);
        let status = std::process::Command::new(&kill[0])
            .args(&kill[1..])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = child.wait().unwrap();
        // Nothing of the group is left (the background sleep included).
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Zombies waiting for the reaper are dead; anything else is left running.
        // Read from /proc (no `ps` needed): `pid (comm) state ppid pgrp session ...`.
        let running: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
                let fields: Vec<&str> = after.split_whitespace().collect();
                fields.len() > 3 && fields[3] == sid.to_string() && fields[0] != "Z"
            })
            .collect();
        assert!(running.is_empty(), "left running: {running:?}");
        assert!(!std::path::Path::new(&pid_file).exists());
        // Again, with no file: still fine.
        let status = std::process::Command::new(&kill[0])
            .args(&kill[1..])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        let success = Status {
            status: Some("Success".into()),
            ..Status::default()
        };
        assert_eq!(exit_code(Some(&success)), Some(0));
        // What the kubelet sends for `exit 3`.
        let failed = Status {
            status: Some("Failure".into()),
            message: Some("command terminated with non-zero exit code".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    field: None,
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        };
        assert_eq!(exit_code(Some(&failed)), Some(3));
        assert_eq!(
            describe(Some(&failed)),
            "command terminated with non-zero exit code"
        );
        assert_eq!(exit_code(None), None);
    }
}

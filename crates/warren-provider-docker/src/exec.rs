//! One process in a container through the Engine API's exec endpoints (no docker CLI): the
//! multiplexed output stream is split into two pipes, and the exec's state is polled for the
//! exit code. The contract's `exec` is synchronous, so creating and starting the exec happen in
//! a task; `wait` learns from that task whether the start worked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::KillContainerOptionsBuilder;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use warren_provider::{ExecHandle, ExecSpec};

/// How often `wait` asks the engine whether the exec has ended.
const POLL: Duration = Duration::from_millis(100);
/// Per-stream buffer between the engine's stream and the reader; a reader that stops reading
/// stalls the exec's output (as a full pipe would), it never grows memory without bound.
const PIPE_BUFFER: usize = 256 * 1024;
/// After the output ended, how long an exec with no exit code is waited for before it counts as
/// killed (its container died under it, so the engine will never record one).
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// The exec config for `spec`: `env -i` makes `spec.env` the whole environment, because the
/// engine would otherwise merge the image's and container's variables into every exec.
pub(crate) fn exec_config(spec: &ExecSpec, user: &str) -> Result<ExecConfig, String> {
    let Some(argv0) = spec.argv.first() else {
        return Err("an empty command line".into());
    };
    // `env` would take a first word with '=' for one more variable, not for the command.
    if argv0.contains('=') {
        return Err(format!("the program name {argv0:?} contains '='"));
    }
    let mut cmd = vec!["/usr/bin/env".to_owned(), "-i".to_owned(), "--".to_owned()];
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') {
            return Err(format!("invalid environment variable name {key:?}"));
        }
        cmd.push(format!("{key}={value}"));
    }
    cmd.extend(spec.argv.iter().cloned());
    Ok(ExecConfig {
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(cmd),
        user: Some(user.to_owned()),
        working_dir: Some(spec.cwd.clone()),
        ..Default::default()
    })
}

/// Starts `config` in `container` from a task and returns the output pipes and the handle.
pub(crate) fn spawn(
    docker: Docker,
    container: String,
    config: ExecConfig,
) -> io::Result<(DuplexStream, DuplexStream, DockerExec)> {
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let (stdout_w, stdout_r) = tokio::io::duplex(PIPE_BUFFER);
    let (stderr_w, stderr_r) = tokio::io::duplex(PIPE_BUFFER);
    let (started_tx, started_rx) = oneshot::channel();
    let task = runtime.spawn(run(
        docker.clone(),
        container.clone(),
        config,
        stdout_w,
        stderr_w,
        started_tx,
    ));
    let handle = DockerExec {
        docker,
        container,
        started: Some(started_rx),
        exec_id: None,
        output: task,
        killed: false,
    };
    Ok((stdout_r, stderr_r, handle))
}

async fn run(
    docker: Docker,
    container: String,
    config: ExecConfig,
    mut stdout: DuplexStream,
    mut stderr: DuplexStream,
    started: oneshot::Sender<Result<String, String>>,
) {
    let attached = async {
        let id = docker.create_exec(&container, config).await?.id;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let results = docker.start_exec(&id, Some(options)).await?;
        Ok::<_, BollardError>((id, results))
    };
    let (output, _input) = match attached.await {
        Ok((id, StartExecResults::Attached { output, input })) => {
            let _ = started.send(Ok(id));
            (output, input)
        }
        Ok((_, StartExecResults::Detached)) => {
            let _ = started.send(Err("the engine detached an attached exec".into()));
            return;
        }
        Err(e) => {
            // Also on stderr: that is where a supervisor looks for why a run produced nothing.
            let message = format!("warren: the container could not start the process: {e}");
            let _ = stderr.write_all(format!("{message}\n").as_bytes()).await;
            let _ = started.send(Err(message));
            return;
        }
    };
    forward(output, &mut stdout, &mut stderr).await;
}

/// Copies the engine's frames to the two pipes until the exec's output ends. A pipe whose reader
/// went away is dropped from then on; the other keeps flowing.
async fn forward(
    mut output: Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, BollardError>> + Send>>,
    stdout: &mut DuplexStream,
    stderr: &mut DuplexStream,
) {
    let (mut out_open, mut err_open) = (true, true);
    while let Some(frame) = output.next().await {
        let (pipe, open, message) = match frame {
            Ok(LogOutput::StdOut { message }) => (&mut *stdout, &mut out_open, message),
            Ok(LogOutput::StdErr { message }) => (&mut *stderr, &mut err_open, message),
            // Without a TTY the engine sends nothing else; a console frame is output too.
            Ok(LogOutput::Console { message }) => (&mut *stdout, &mut out_open, message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                tracing::debug!("exec output stream ended with an error: {e}");
                break;
            }
        };
        if *open && pipe.write_all(&message).await.is_err() {
            *open = false;
        }
    }
    let _ = stdout.shutdown().await;
    let _ = stderr.shutdown().await;
}

/// The handle of an exec: waits by polling the engine, kills by killing the container.
pub(crate) struct DockerExec {
    docker: Docker,
    container: String,
    started: Option<oneshot::Receiver<Result<String, String>>>,
    exec_id: Option<String>,
    output: JoinHandle<()>,
    killed: bool,
}

impl DockerExec {
    async fn exec_id(&mut self) -> io::Result<String> {
        if let Some(id) = &self.exec_id {
            return Ok(id.clone());
        }
        let started = self
            .started
            .take()
            .ok_or_else(|| io::Error::other("the exec failed to start"))?;
        match started.await {
            Ok(Ok(id)) => {
                self.exec_id = Some(id.clone());
                Ok(id)
            }
            Ok(Err(message)) => Err(io::Error::other(message)),
            Err(_) => Err(io::Error::other("the exec task ended before starting")),
        }
    }

    async fn wait_exit(&mut self) -> io::Result<Option<i32>> {
        let id = self.exec_id().await?;
        let mut ended_at: Option<tokio::time::Instant> = None;
        loop {
            let state = match self.docker.inspect_exec(&id).await {
                Ok(state) => state,
                // The container (and its execs) is gone: the process is certainly dead.
                Err(e) if is_status(&e, 404) => return Ok(None),
                Err(e) => return Err(io::Error::other(e)),
            };
            if state.running != Some(true) {
                if let Some(code) = state.exit_code {
                    if self.killed {
                        return Ok(None);
                    }
                    return Ok(Some(i32::try_from(code).unwrap_or(-1)));
                }
                // Not running and no code: either not started yet, or orphaned by a dead
                // container. The output ending tells the second case; give it a grace period.
                if self.killed {
                    return Ok(None);
                }
                if self.output.is_finished() {
                    let since = *ended_at.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= ORPHAN_GRACE {
                        return Ok(None);
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn kill_container(&mut self) -> io::Result<()> {
        self.killed = true;
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self
            .docker
            .kill_container(&self.container, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            // Already stopped (409) or removed (404): the process is dead either way.
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl ExecHandle for DockerExec {
    /// Kills the whole container: the engine destroys the sandbox after every agent run, and a
    /// container kill is the one operation that reliably ends every process an exec started.
    fn kill(&mut self) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + '_>> {
        Box::pin(self.kill_container())
    }

    fn wait(&mut self) -> Pin<Box<dyn Future<Output = io::Result<Option<i32>>> + Send + '_>> {
        Box::pin(self.wait_exit())
    }
}

pub(crate) fn is_status(e: &BollardError, status: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == status)
}

/// Boxes a pipe for [`warren_provider::ExecChild`].
pub(crate) fn boxed(pipe: DuplexStream) -> Option<Pin<Box<dyn AsyncRead + Send>>> {
    Some(Box::pin(pipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], env: &[(&str, &str)]) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: "/workspace".into(),
        }
    }

    #[test]
    fn env_is_the_whole_environment() -> Result<(), String> {
        let config = exec_config(
            &spec(&["sh", "-c", "x"], &[("A", "1 2"), ("B", "")]),
            "1000:1000",
        )?;
        let cmd = config.cmd.unwrap_or_default();
        assert_eq!(
            cmd,
            ["/usr/bin/env", "-i", "--", "A=1 2", "B=", "sh", "-c", "x"]
        );
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(config.working_dir.as_deref(), Some("/workspace"));
        assert_eq!(config.env, None);
        assert_eq!(config.attach_stdin, Some(false));
        Ok(())
    }

    #[test]
    fn ambiguous_command_lines_are_refused() {
        assert!(exec_config(&spec(&[], &[]), "0").is_err());
        assert!(exec_config(&spec(&["A=b"], &[]), "0").is_err());
        assert!(exec_config(&spec(&["sh"], &[("A=B", "c")]), "0").is_err());
        assert!(exec_config(&spec(&["sh"], &[("", "c")]), "0").is_err());
    }
}

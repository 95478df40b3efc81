//! Supervision of one OpenCode run: reads its stdout as events and its stderr as diagnostics,
//! enforces the hard and inactivity limits, and stops it when the caller aborts (for example when
//! the gateway sees the model endpoint refuse connections, which OpenCode would retry for a minute).

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::{Instant, sleep_until};
use warren_domain::{AgentEvent, ErrorInfo, Usage};
use warren_provider::{ExecChild, SandboxLost};

use crate::events::{Parsed, parse_line};

/// OpenCode prints nothing while it boots (seconds of CPU-bound start-up, more on a loaded
/// machine): until its first line, the inactivity limit is at least this long.
pub const BOOT_GRACE: Duration = Duration::from_secs(30);

/// How many trailing stderr lines (and stray stdout lines) a run keeps for diagnosis.
pub const TAIL_LINES: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub hard: Duration,
    pub inactivity: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EndReason {
    /// The process exited on its own.
    Exited,
    /// The hard wall-clock limit fired.
    Timeout(Duration),
    /// Nothing was printed for the inactivity limit.
    Inactive(Duration),
    /// The caller stopped the run.
    Aborted(ErrorInfo),
}

#[derive(Debug, Clone)]
pub struct AgentRun {
    pub end: EndReason,
    pub exit_code: Option<i32>,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub events: u64,
    pub last_step_reason: Option<String>,
    /// The last error event OpenCode printed: (name, message, HTTP status).
    pub error_event: Option<(String, String, Option<u16>)>,
    pub stderr_tail: Vec<String>,
    pub stray_stdout: Vec<String>,
    /// Why the sandbox itself ended under the agent (a pod evicted, a node lost), when the
    /// provider knows: the agent did not fail, its sandbox did.
    pub lost: Option<String>,
}

impl AgentRun {
    /// OpenCode's exit code alone is not enough (it is 0 when a permission is auto-rejected):
    /// success is exit 0, no error event, and a last step that finished with `stop`.
    pub fn succeeded(&self) -> bool {
        self.end == EndReason::Exited
            && self.exit_code == Some(0)
            && self.error_event.is_none()
            && self.last_step_reason.as_deref() == Some("stop")
    }
}

struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: String) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }
}

async fn next_line<R: AsyncRead + Unpin>(reader: &mut Option<BufReader<R>>) -> Option<String> {
    let r = reader.as_mut()?;
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => {
            *reader = None;
            None
        }
        Ok(_) => {
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// Runs `child` to its end. `on_event` sees every event as it arrives.
pub async fn supervise<A, F>(
    mut child: ExecChild,
    limits: Limits,
    abort: A,
    mut on_event: F,
) -> AgentRun
where
    A: Future<Output = ErrorInfo>,
    F: FnMut(AgentEvent),
{
    let started = Instant::now();
    let hard_deadline = started + limits.hard;
    let mut last_activity = Instant::now();
    let mut stdout = child.stdout.take().map(BufReader::new);
    let mut stderr = child.stderr.take().map(BufReader::new);
    let mut run = AgentRun {
        end: EndReason::Exited,
        exit_code: None,
        session_id: None,
        usage: Usage::default(),
        events: 0,
        last_step_reason: None,
        error_event: None,
        stderr_tail: Vec::new(),
        stray_stdout: Vec::new(),
        lost: None,
    };
    let mut stderr_tail = Tail(VecDeque::new());
    let mut stray = Tail(VecDeque::new());
    tokio::pin!(abort);
    let mut stop: Option<EndReason> = None;

    while stdout.is_some() || stderr.is_some() {
        let booting = run.events == 0 && stderr_tail.0.is_empty() && stray.0.is_empty();
        let idle_limit = if booting {
            limits.inactivity.max(BOOT_GRACE)
        } else {
            limits.inactivity
        };
        tokio::select! {
            line = next_line(&mut stdout), if stdout.is_some() => {
                let Some(line) = line else { continue };
                last_activity = Instant::now();
                if line.trim().is_empty() {
                    continue;
                }
                match parse_line(&line) {
                    Parsed::Event { event, session_id } => {
                        if run.session_id.is_none() {
                            run.session_id = session_id;
                        }
                        match &event {
                            AgentEvent::StepFinish { reason, usage } => {
                                run.usage.add(usage);
                                run.last_step_reason = Some(reason.clone());
                            }
                            AgentEvent::AgentError { name, message, status_code, .. } => {
                                run.error_event = Some((name.clone(), message.clone(), *status_code));
                            }
                            _ => {}
                        }
                        run.events += 1;
                        on_event(event);
                    }
                    Parsed::NotJson(text) => stray.push(text),
                }
            }
            line = next_line(&mut stderr), if stderr.is_some() => {
                if let Some(line) = line {
                    last_activity = Instant::now();
                    stderr_tail.push(strip_ansi(&line));
                }
            }
            () = sleep_until(hard_deadline) => {
                stop = Some(EndReason::Timeout(limits.hard));
                break;
            }
            () = sleep_until(last_activity + idle_limit) => {
                stop = Some(EndReason::Inactive(limits.inactivity));
                break;
            }
            reason = &mut abort => {
                stop = Some(EndReason::Aborted(reason));
                break;
            }
        }
    }
    if let Some(reason) = stop {
        // Killing the sandbox's outer process ends its PID namespace: every process inside dies.
        let _ = child.kill().await;
        run.end = reason;
    }
    match child.wait().await {
        Ok(code) => run.exit_code = code,
        Err(e) => run.lost = SandboxLost::in_error(&e).map(|l| l.0.clone()),
    }
    run.stderr_tail = stderr_tail.0.into();
    run.stray_stdout = stray.0.into();
    run
}

/// OpenCode colours its stderr; the record and error hints keep plain text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ansi_colours_are_stripped() {
        let line = "\u{1b}[93m\u{1b}[1m! \u{1b}[0mpermission requested";
        assert_eq!(super::strip_ansi(line), "! permission requested");
    }
}

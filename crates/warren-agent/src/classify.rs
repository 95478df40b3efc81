//! Turns how a run ended into warren's stable error contract. Fatal classes (auth, unknown model,
//! unreachable endpoint) are told apart from retryable ones so callers fail fast or retry.

use warren_domain::{ErrorInfo, ReasonCode};

use crate::supervise::{AgentRun, EndReason};

/// `None` when the run succeeded.
pub fn classify_failure(run: &AgentRun) -> Option<ErrorInfo> {
    match &run.end {
        EndReason::Timeout(limit) => {
            return Some(
                ErrorInfo::new(
                    ReasonCode::Timeout,
                    format!("the agent ran past the hard limit of {} s and was stopped", limit.as_secs()),
                )
                .with_hint("raise timeouts.run_secs (or WARREN_TIMEOUT_RUN_SECS); the work so far was kept"),
            );
        }
        EndReason::Inactive(limit) => {
            return Some(
                ErrorInfo::new(
                    ReasonCode::Inactive,
                    format!(
                        "the agent printed nothing for {} s and was stopped",
                        limit.as_secs()
                    ),
                )
                .with_hint(
                    "the model may be hung; raise timeouts.inactivity_secs if it is just slow",
                ),
            );
        }
        EndReason::Aborted(info) => return Some(info.clone()),
        EndReason::Exited => {}
    }
    if let Some((name, message, status)) = &run.error_event {
        return Some(from_error_event(name, message, *status));
    }
    if run.succeeded() {
        return None;
    }
    let tail = run
        .stderr_tail
        .iter()
        .rev()
        .take(5)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let message = match (run.exit_code, run.last_step_reason.as_deref()) {
        (Some(0), Some(reason)) => format!(
            "the agent stopped without finishing its task (last step ended with '{reason}')"
        ),
        (Some(0), None) => "the agent exited without taking a single model step".to_owned(),
        (Some(code), _) => format!("the agent exited with status {code}"),
        (None, _) => "the agent was killed by a signal".to_owned(),
    };
    let info = ErrorInfo::new(ReasonCode::AgentFailed, message);
    Some(if tail.is_empty() {
        info
    } else {
        info.with_hint(format!("last lines of OpenCode's stderr:\n{tail}"))
    })
}

fn from_error_event(name: &str, message: &str, status: Option<u16>) -> ErrorInfo {
    let lower = message.to_ascii_lowercase();
    let text = format!("the model endpoint failed: {message} ({name})");
    match status {
        Some(401 | 403) => ErrorInfo::new(ReasonCode::ModelAuth, text)
            .with_hint("check the API key: model_providers.<name>.api_key_env must name a variable that holds a valid key"),
        Some(404) if lower.contains("model") => ErrorInfo::new(ReasonCode::UnknownModel, text)
            .with_hint("check the model name in --model or model_providers.<name>.models"),
        Some(429) => ErrorInfo::new(ReasonCode::RateLimited, text),
        _ if lower.contains("model") && (lower.contains("not found") || lower.contains("does not exist")) => {
            ErrorInfo::new(ReasonCode::UnknownModel, text)
        }
        _ if lower.contains("econnrefused") || lower.contains("unable to connect") || lower.contains("cannot reach") => {
            ErrorInfo::new(ReasonCode::ModelUnreachable, text)
                .with_hint("the model endpoint refused the connection: is it running?")
        }
        _ => ErrorInfo::new(ReasonCode::ModelError, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_domain::Usage;

    fn run(
        end: EndReason,
        exit: Option<i32>,
        last: Option<&str>,
        err: Option<(&str, &str, Option<u16>)>,
    ) -> AgentRun {
        AgentRun {
            end,
            exit_code: exit,
            session_id: None,
            usage: Usage::default(),
            events: 0,
            last_step_reason: last.map(str::to_owned),
            error_event: err.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c)),
            stderr_tail: vec!["boom".into()],
            stray_stdout: vec![],
        }
    }

    #[test]
    fn success_needs_exit_zero_no_error_and_a_stop() {
        assert!(classify_failure(&run(EndReason::Exited, Some(0), Some("stop"), None)).is_none());
        let e = classify_failure(&run(EndReason::Exited, Some(0), Some("tool-calls"), None));
        assert_eq!(e.map(|e| e.reason_code), Some(ReasonCode::AgentFailed));
    }

    #[test]
    fn error_events_map_to_stable_codes() {
        let code = |status, msg: &str| {
            classify_failure(&run(
                EndReason::Exited,
                Some(1),
                None,
                Some(("APIError", msg, status)),
            ))
            .map(|e| e.reason_code)
        };
        assert_eq!(
            code(Some(401), "Incorrect API key"),
            Some(ReasonCode::ModelAuth)
        );
        assert_eq!(
            code(Some(404), "The model `x` does not exist"),
            Some(ReasonCode::UnknownModel)
        );
        assert_eq!(code(Some(429), "slow down"), Some(ReasonCode::RateLimited));
        assert_eq!(code(Some(500), "oops"), Some(ReasonCode::ModelError));
    }

    #[test]
    fn limits_and_aborts_win_over_everything_else() {
        let t = classify_failure(&run(
            EndReason::Timeout(std::time::Duration::from_secs(5)),
            None,
            None,
            None,
        ));
        assert_eq!(t.map(|e| e.reason_code), Some(ReasonCode::Timeout));
        let abort = ErrorInfo::new(ReasonCode::ModelUnreachable, "refused");
        let a = classify_failure(&run(EndReason::Aborted(abort.clone()), None, None, None));
        assert_eq!(a, Some(abort));
    }
}

//! Turns how a run ended into warren's stable error contract. Fatal classes (auth, unknown model,
//! unreachable endpoint) are told apart from retryable ones so callers fail fast or retry.

use warren_domain::{ErrorInfo, ReasonCode};

use crate::supervise::{AgentRun, EndReason};

/// Always treated as a rate limit, whatever is configured: the wording of OpenAI-compatible
/// servers and of the AI SDK OpenCode uses.
pub const BUILTIN_RATE_LIMIT_PATTERNS: &[&str] = &[
    "rate limit",
    "rate_limit",
    "too many requests",
    "quota",
    "429",
];

/// How servers say the conversation no longer fits (OpenAI, vLLM, llama.cpp, Ollama wordings).
pub const CONTEXT_LENGTH_PATTERNS: &[&str] = &[
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "context window",
];

/// Prefix of the message of a context-length failure (wording only: classification reads the code).
const CONTEXT_LENGTH_PREFIX: &str = "context length exceeded: ";
const CONTEXT_LENGTH_HINT: &str = "shorten the prompt or use a model with a larger context window";

/// Extra wording, from configuration, that marks a failure as a rate limit. Backends behind
/// proxies or gateways word it their own way ("slow down", "capacity exceeded").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassifyPatterns {
    /// Matched case-insensitively, in addition to [`BUILTIN_RATE_LIMIT_PATTERNS`].
    pub rate_limit: Vec<String>,
}

impl ClassifyPatterns {
    fn is_rate_limit(&self, lower: &str) -> bool {
        BUILTIN_RATE_LIMIT_PATTERNS
            .iter()
            .copied()
            .chain(self.rate_limit.iter().map(String::as_str))
            .any(|p| contains_pattern(lower, p))
    }
}

fn is_context_length_text(lower: &str) -> bool {
    CONTEXT_LENGTH_PATTERNS
        .iter()
        .any(|p| contains_pattern(lower, p))
}

/// `haystack` is already lowercase. A numeric pattern ("429") must stand alone: inside a longer
/// number ("14290 tokens", "took 4291 ms") it says nothing about rate limits.
fn contains_pattern(haystack: &str, pattern: &str) -> bool {
    let pattern = pattern.trim().to_lowercase();
    // An empty configured pattern would match everything and turn every failure into a retry.
    if pattern.is_empty() {
        return false;
    }
    if !pattern.bytes().all(|b| b.is_ascii_digit()) {
        return haystack.contains(&pattern);
    }
    let bytes = haystack.as_bytes();
    haystack.match_indices(&pattern).any(|(i, m)| {
        let before = i.checked_sub(1).and_then(|j| bytes.get(j));
        let after = bytes.get(i + m.len());
        !before.is_some_and(u8::is_ascii_digit) && !after.is_some_and(u8::is_ascii_digit)
    })
}

/// A failure caused by the conversation outgrowing the model's context window.
pub fn is_context_length(info: &ErrorInfo) -> bool {
    info.reason_code == ReasonCode::ContextLength
}

/// Failures where neither a retry nor the structurer can help: the endpoint cannot be reached or
/// refuses the credential, the setup is wrong, the user stopped the run, or the hard limit fired.
pub fn is_fatal(info: &ErrorInfo) -> bool {
    matches!(
        info.reason_code,
        ReasonCode::ModelUnreachable
            | ReasonCode::ModelAuth
            | ReasonCode::InvalidConfig
            | ReasonCode::MissingDependency
            | ReasonCode::NotAGitRepo
            | ReasonCode::SyncFailed
            | ReasonCode::UnsafeSandboxOutput
            | ReasonCode::Interrupted
            | ReasonCode::Stopped
            | ReasonCode::Timeout
    )
}

/// Model failures a bounded retry can clear: a local server still loading the model, a rate
/// limit, a transient server error. A context-length failure would only fail again.
pub fn is_retryable_model_failure(info: &ErrorInfo) -> bool {
    matches!(
        info.reason_code,
        ReasonCode::UnknownModel | ReasonCode::RateLimited | ReasonCode::ModelError
    )
}

fn context_length_error(text: &str) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::ContextLength,
        format!("{CONTEXT_LENGTH_PREFIX}{text}"),
    )
    .with_hint(CONTEXT_LENGTH_HINT)
}

/// `None` when the run succeeded. Only the built-in rate-limit wording is recognised; see
/// [`classify_failure_with`].
pub fn classify_failure(run: &AgentRun) -> Option<ErrorInfo> {
    classify_failure_with(run, &ClassifyPatterns::default())
}

/// `None` when the run succeeded. `patterns` adds rate-limit wording to the built-in list.
pub fn classify_failure_with(run: &AgentRun, patterns: &ClassifyPatterns) -> Option<ErrorInfo> {
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
    // The sandbox went first: whatever the agent printed after that is a symptom (its model
    // calls cut), not the cause.
    if let Some(why) = &run.lost {
        return Some(
            ErrorInfo::new(ReasonCode::SandboxLost, why.clone())
                .with_hint("what the run wrote was in the lost sandbox; the sandbox's files from before the run are kept (export or pull them); run the prompt again with 'warren run' or a new launch"),
        );
    }
    let stderr_lower = run.stderr_tail.join("\n").to_lowercase();
    if let Some((name, message, status)) = &run.error_event {
        let info = from_error_event(name, message, *status, patterns);
        // The event's message can be a bare "AI_APICallError"; the cause is then only on stderr.
        if info.reason_code == ReasonCode::ModelError {
            if is_context_length_text(&stderr_lower) {
                return Some(context_length_error(&info.message));
            }
            if patterns.is_rate_limit(&stderr_lower) {
                return Some(ErrorInfo::new(ReasonCode::RateLimited, info.message));
            }
        }
        return Some(info);
    }
    if run.succeeded() {
        return None;
    }
    // No error event, but OpenCode may still have logged why the model call failed.
    if let Some(line) = last_matching_line(&run.stderr_tail, is_context_length_text) {
        return Some(context_length_error(&format!("the agent failed: {line}")));
    }
    if let Some(line) = last_matching_line(&run.stderr_tail, |l| patterns.is_rate_limit(l)) {
        return Some(ErrorInfo::new(
            ReasonCode::RateLimited,
            format!("the model endpoint rate limited the agent: {line}"),
        ));
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

/// The last line of `lines` whose lowercase form satisfies `matches`, trimmed for a message.
fn last_matching_line(lines: &[String], matches: impl Fn(&str) -> bool) -> Option<String> {
    const MAX_CHARS: usize = 300;
    lines
        .iter()
        .rev()
        .find(|l| matches(&l.to_lowercase()))
        .map(|l| l.trim().chars().take(MAX_CHARS).collect())
}

fn from_error_event(
    name: &str,
    message: &str,
    status: Option<u16>,
    patterns: &ClassifyPatterns,
) -> ErrorInfo {
    let lower = message.to_lowercase();
    let text = format!("the model endpoint failed: {message} ({name})");
    // Statuses first: they are unambiguous, while wording overlaps (a 429 for tokens per minute
    // says "too many tokens", which alone would read as a context-length failure).
    match status {
        Some(401 | 403) => ErrorInfo::new(ReasonCode::ModelAuth, text)
            .with_hint("check the API key: model_providers.<name>.api_key_env must name a variable that holds a valid key"),
        Some(404) if lower.contains("model") => ErrorInfo::new(ReasonCode::UnknownModel, text)
            .with_hint("check the model name in --model or model_providers.<name>.models"),
        Some(429) => ErrorInfo::new(ReasonCode::RateLimited, text),
        _ if is_context_length_text(&lower) => context_length_error(&text),
        _ if patterns.is_rate_limit(&lower) => ErrorInfo::new(ReasonCode::RateLimited, text),
        _ if lower.contains("model") && (lower.contains("not found") || lower.contains("does not exist")) => {
            ErrorInfo::new(ReasonCode::UnknownModel, text)
                .with_hint("check the model name in --model or model_providers.<name>.models")
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
            lost: None,
        }
    }

    #[test]
    fn a_lost_sandbox_is_the_cause_not_the_agents_cut_model_calls() {
        let mut r = run(
            EndReason::Exited,
            None,
            None,
            Some(("APIError", "Unable to connect", None)),
        );
        r.lost = Some("the pod warren-x was evicted: The node was low on memory".into());
        let e = classify_failure(&r);
        assert_eq!(
            e.as_ref().map(|e| e.reason_code),
            Some(ReasonCode::SandboxLost)
        );
        assert!(e.is_some_and(|e| e.message.contains("evicted")));
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

    fn with_stderr(mut r: AgentRun, lines: &[&str]) -> AgentRun {
        r.stderr_tail = lines.iter().map(|l| (*l).to_owned()).collect();
        r
    }

    fn event_code(
        status: Option<u16>,
        msg: &str,
        patterns: &ClassifyPatterns,
    ) -> Option<ReasonCode> {
        classify_failure_with(
            &run(
                EndReason::Exited,
                Some(1),
                None,
                Some(("APIError", msg, status)),
            ),
            patterns,
        )
        .map(|e| e.reason_code)
    }

    #[test]
    fn configured_rate_limit_patterns_extend_the_built_ins() {
        let none = ClassifyPatterns::default();
        let custom = ClassifyPatterns {
            rate_limit: vec!["Slow Down".into(), "  ".into()],
        };
        assert_eq!(
            event_code(Some(500), "please slow down", &none),
            Some(ReasonCode::ModelError)
        );
        assert_eq!(
            event_code(Some(500), "Please SLOW DOWN", &custom),
            Some(ReasonCode::RateLimited)
        );
        // Built-ins apply with or without configuration, case-insensitively, without a status.
        for msg in [
            "Too Many Requests",
            "Rate limit reached",
            "insufficient_quota",
            "HTTP 429",
        ] {
            assert_eq!(
                event_code(None, msg, &none),
                Some(ReasonCode::RateLimited),
                "{msg}"
            );
        }
        // An empty pattern must not turn every failure into a rate limit.
        assert_eq!(
            event_code(Some(500), "oops", &custom),
            Some(ReasonCode::ModelError)
        );
        // "429" inside a longer number is not a status.
        assert_eq!(
            event_code(Some(500), "took 14290 ms", &none),
            Some(ReasonCode::ModelError)
        );
    }

    #[test]
    fn rate_limits_are_found_on_stderr_too() {
        let patterns = ClassifyPatterns {
            rate_limit: vec!["capacity exceeded".into()],
        };
        let failed = with_stderr(
            run(EndReason::Exited, Some(1), None, None),
            &["starting", "ERROR upstream: Capacity Exceeded, try later"],
        );
        let e = classify_failure_with(&failed, &patterns);
        assert_eq!(
            e.as_ref().map(|e| e.reason_code),
            Some(ReasonCode::RateLimited)
        );
        assert!(e.is_some_and(|e| e.message.contains("Capacity Exceeded")));
        assert_eq!(
            classify_failure(&failed).map(|e| e.reason_code),
            Some(ReasonCode::AgentFailed)
        );
        // A bare error event whose cause only shows on stderr.
        let bare = with_stderr(
            run(
                EndReason::Exited,
                Some(1),
                None,
                Some(("AI_APICallError", "", Some(500))),
            ),
            &["429 Too Many Requests"],
        );
        assert_eq!(
            classify_failure(&bare).map(|e| e.reason_code),
            Some(ReasonCode::RateLimited)
        );
        // A successful run stays a success whatever stderr says.
        let ok = with_stderr(
            run(EndReason::Exited, Some(0), Some("stop"), None),
            &["quota"],
        );
        assert!(classify_failure(&ok).is_none());
    }

    #[test]
    fn context_length_failures_get_their_own_reason_and_hint() {
        let msg = "This model's maximum context length is 8192 tokens. However, you requested 9000";
        let e = classify_failure(&run(
            EndReason::Exited,
            Some(1),
            None,
            Some(("APIError", msg, Some(400))),
        ));
        let Some(e) = e else { panic!("a failure") };
        assert!(is_context_length(&e));
        assert!(
            e.message.starts_with("context length exceeded: "),
            "{}",
            e.message
        );
        assert!(e.message.contains(msg));
        assert_eq!(e.hint.as_deref(), Some(CONTEXT_LENGTH_HINT));
        assert!(!is_retryable_model_failure(&e));
        assert!(!is_fatal(&e));
        for msg in [
            "context_length_exceeded",
            "exceeds the context window",
            "Too many tokens in prompt",
        ] {
            let e = classify_failure(&run(
                EndReason::Exited,
                Some(1),
                None,
                Some(("APIError", msg, None)),
            ));
            assert!(e.as_ref().is_some_and(is_context_length), "{msg}");
        }
        // From stderr alone.
        let failed = with_stderr(
            run(EndReason::Exited, Some(1), None, None),
            &["error: prompt exceeds the maximum context of the model"],
        );
        assert!(
            classify_failure(&failed)
                .as_ref()
                .is_some_and(is_context_length)
        );
        // Classification reads the code, never the message: a model_error that merely says
        // "context length" is a model error.
        let worded = ErrorInfo::new(ReasonCode::ModelError, "context length exceeded: too long");
        assert!(!is_context_length(&worded));
        assert!(is_retryable_model_failure(&worded));
        let plain = ErrorInfo::new(ReasonCode::ModelError, "server exploded");
        assert!(!is_context_length(&plain));
    }

    #[test]
    fn fatal_and_retryable_tables() {
        use ReasonCode as R;
        let table = [
            // (code, fatal, retryable model failure)
            (R::ModelUnreachable, true, false),
            (R::ModelAuth, true, false),
            (R::InvalidConfig, true, false),
            (R::MissingDependency, true, false),
            (R::NotAGitRepo, true, false),
            (R::SyncFailed, true, false),
            (R::UnsafeSandboxOutput, true, false),
            (R::Interrupted, true, false),
            (R::Stopped, true, false),
            (R::Timeout, true, false),
            (R::UnknownModel, false, true),
            (R::RateLimited, false, true),
            (R::ModelError, false, true),
            (R::ContextLength, false, false),
            (R::Inactive, false, false),
            (R::AgentFailed, false, false),
            (R::SandboxFailed, false, false),
            (R::Internal, false, false),
        ];
        for (code, fatal, retryable) in table {
            let info = ErrorInfo::new(code, "x");
            assert_eq!(is_fatal(&info), fatal, "is_fatal({code})");
            assert_eq!(
                is_retryable_model_failure(&info),
                retryable,
                "is_retryable({code})"
            );
        }
    }
}

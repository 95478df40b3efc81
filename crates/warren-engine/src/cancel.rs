//! Stopping an operation from outside, with the reason its host gives: Ctrl-C in the CLI is an
//! interruption, SIGTERM to a monitor (from `teardown --force`) or a server's cancel call a stop.
//! The agent is ended and its work kept; the reason becomes the operation's error.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use warren_domain::{ErrorInfo, ReasonCode};

#[derive(Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    why: Arc<OnceLock<ErrorInfo>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the operation to stop; the first reason given is the one recorded.
    pub fn cancel(&self, why: ErrorInfo) {
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// The reason of an interruption the user asked for (Ctrl-C).
    pub fn interrupted() -> ErrorInfo {
        ErrorInfo::new(
            ReasonCode::Interrupted,
            "interrupted: the agent was stopped; its work so far was kept",
        )
    }

    /// The reason of a stop another command or a caller asked for.
    pub fn stopped(by: &str) -> ErrorInfo {
        ErrorInfo::new(
            ReasonCode::Stopped,
            format!("stopped by {by} before it finished; its work so far was kept"),
        )
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves, with the reason, once the operation is asked to stop.
    pub async fn cancelled(&self) -> ErrorInfo {
        self.token.cancelled().await;
        self.why
            .get()
            .cloned()
            .unwrap_or_else(|| Self::stopped("its host"))
    }
}

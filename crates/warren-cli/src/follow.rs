//! Following a sandbox's events, the part the local and the remote follower share: how far to
//! follow, what the events said on the way (how the prompt ended, the last state), and the exit
//! code that gives, so `logs -f` and `exec` end the same way in both modes.

use warren_domain::{AgentEvent, ErrorInfo, EventRecord, ReasonCode, SandboxState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Print what is recorded and stop.
    No,
    /// Until the sandbox is idle.
    UntilIdle,
    /// Until the prompt handed over ends: its `finished` event says how (`exec`). A prompt that
    /// ends without one was stopped, and that is not a success.
    Prompt,
}

/// What the followed events said.
#[derive(Default)]
pub(crate) struct Seen {
    finished: Option<Option<ErrorInfo>>,
    last_detail: Option<String>,
}

impl Seen {
    pub(crate) fn event(&mut self, record: &EventRecord) {
        match &record.event {
            AgentEvent::Finished { error, .. } => self.finished = Some(error.clone()),
            AgentEvent::StateChanged { state, detail } => {
                self.last_detail = Some(match detail {
                    Some(d) => format!("{state}: {d}"),
                    None => state.to_string(),
                });
            }
            _ => {}
        }
    }

    /// The exit code once following ends, with the sandbox as it is then.
    pub(crate) fn exit(
        self,
        follow: Follow,
        name: &str,
        state: SandboxState,
        error: Option<&ErrorInfo>,
    ) -> Result<i32, ErrorInfo> {
        match follow {
            Follow::No => Ok(0),
            Follow::UntilIdle => Ok(match (state, error) {
                (SandboxState::Error, Some(e)) => e.reason_code.exit_class().code(),
                _ => 0,
            }),
            Follow::Prompt => match self.finished {
                Some(None) => Ok(0),
                Some(Some(e)) => Ok(e.reason_code.exit_class().code()),
                None => Err(ErrorInfo::new(
                    ReasonCode::Stopped,
                    format!(
                        "the prompt did not finish: sandbox {name} is {state}{}",
                        self.last_detail
                            .map(|d| format!(" (last: {d})"))
                            .unwrap_or_default()
                    ),
                )
                .with_hint(format!(
                    "see 'warren logs {name}' for what stopped it; its work is kept if the sandbox still exists ('warren status {name}')"
                ))),
            },
        }
    }
}

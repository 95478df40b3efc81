//! The headless permission contract. The supervisor of a run records each permission the agent
//! asks for as an `approval_requested` event and waits for an answer; any process that can reach
//! the store answers it (`warren approve` / `deny` in another terminal, the API on a server) by
//! appending `approval_answered`. The first answer the supervisor reads, or a denial when the
//! wait runs out, is what the agent is told, recorded as `approval_decided`. The event stream is
//! the record: it is durable, shared by every process and host, and its `seq` orders answers.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use warren_agent::attach::{PermissionAsk, PermissionReply};
use warren_domain::{
    AgentEvent, ApprovalRequest, DecidedBy, Decision, ErrorInfo, ReasonCode, SandboxId,
    SandboxState, UserFacing, pending_approval,
};
use warren_store::{SandboxRecord, StateStore};

/// How often a waiting supervisor (or answerer) reads the store for news.
const POLL: Duration = Duration::from_millis(200);
/// How long `approve`/`deny` wait for the supervisor to apply their answer before reporting it
/// as recorded but not yet applied.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// Answers the agent's requests one at a time, in the order asked, for as long as the run lasts
/// (never resolves). `in_flight` names the request being waited on, so the caller can record it
/// as denied if the run ends first.
pub(crate) async fn serve(
    asks: &mut UnboundedReceiver<PermissionAsk>,
    store: &dyn StateStore,
    id: &SandboxId,
    timeout: Duration,
    in_flight: &Mutex<Option<String>>,
    emit: &(impl Fn(AgentEvent) + ?Sized),
) {
    while let Some(ask) = asks.recv().await {
        let request = ApprovalRequest {
            request_id: ask.id.clone(),
            permission: ask.permission.clone(),
            title: title(&ask),
            patterns: ask.patterns.clone(),
            timeout_secs: timeout.as_secs(),
        };
        *in_flight.lock().unwrap_or_else(PoisonError::into_inner) = Some(ask.id.clone());
        emit(AgentEvent::ApprovalRequested(request.clone()));
        let (decision, by, reason) = wait_for_answer(store, id, &request, timeout).await;
        *in_flight.lock().unwrap_or_else(PoisonError::into_inner) = None;
        emit(AgentEvent::ApprovalDecided {
            request_id: request.request_id.clone(),
            decision,
            by,
            reason: reason.clone(),
        });
        let reply = match decision {
            Decision::Approve => PermissionReply::Allow,
            Decision::Deny => PermissionReply::Deny(refusal(&request, by, reason.as_deref())),
        };
        let _ = ask.reply.send(reply);
    }
    std::future::pending::<()>().await;
}

/// What the model is told when it may not: that a person (or the clock) said no, and why.
fn refusal(request: &ApprovalRequest, by: DecidedBy, reason: Option<&str>) -> String {
    let what = format!("{} `{}`", request.permission, request.title);
    match (by, reason) {
        (DecidedBy::Timeout, _) => format!(
            "Denied: nobody approved {what} within {} s. Do not retry it; continue without it or explain what you needed.",
            request.timeout_secs
        ),
        (_, Some(reason)) => {
            format!("Denied by the operator: {what} is not allowed. Reason: {reason}")
        }
        (_, None) => format!("Denied by the operator: {what} is not allowed."),
    }
}

fn title(ask: &PermissionAsk) -> String {
    if ask.patterns.is_empty() {
        ask.permission.clone()
    } else {
        ask.patterns.join(" && ")
    }
}

/// The first answer to `request` in the store, or a denial once `timeout` has passed.
async fn wait_for_answer(
    store: &dyn StateStore,
    id: &SandboxId,
    request: &ApprovalRequest,
    timeout: Duration,
) -> (Decision, DecidedBy, Option<String>) {
    let deadline = Instant::now() + timeout;
    let mut since = 0;
    loop {
        match store.events(id, since, None) {
            Ok(events) => {
                for record in &events {
                    since = record.seq;
                    if let AgentEvent::ApprovalAnswered {
                        request_id,
                        decision,
                        reason,
                    } = &record.event
                        && *request_id == request.request_id
                    {
                        return (*decision, DecidedBy::User, reason.clone());
                    }
                }
            }
            Err(e) => tracing::warn!("could not read answers to an approval request: {e}"),
        }
        let now = Instant::now();
        if now >= deadline {
            return (Decision::Deny, DecidedBy::Timeout, None);
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// What became of an answer: the request it answered and, once the supervisor applied it, the
/// decision the agent got (a timeout that came first wins over a late answer).
#[derive(Debug, Clone)]
pub struct Answered {
    pub request: ApprovalRequest,
    pub decided: Option<(Decision, DecidedBy)>,
}

/// Answers the request `record`'s agent is waiting on (`request_id`, when given, must be it).
/// `NoPendingApproval` when nothing waits: none was asked, it was decided already, or the
/// sandbox is not running.
pub async fn answer(
    store: &dyn StateStore,
    record: &SandboxRecord,
    request_id: Option<&str>,
    decision: Decision,
    reason: Option<String>,
) -> Result<Answered, ErrorInfo> {
    let events = store
        .events(&record.id, 0, None)
        .map_err(|e| e.to_error_info())?;
    let pending = (record.state == SandboxState::Running)
        .then(|| pending_approval(events.iter().map(|e| &e.event)))
        .flatten()
        .filter(|p| request_id.is_none_or(|r| r == p.request_id));
    let Some(request) = pending else {
        let what = match request_id {
            Some(r) => format!("request {r}"),
            None => "a request".to_owned(),
        };
        return Err(ErrorInfo::new(
            ReasonCode::NoPendingApproval,
            format!(
                "sandbox {} has no pending approval: {what} is not waiting for an answer",
                record.name
            ),
        )
        .with_hint(format!(
            "`warren status {}` shows the request the agent waits on, if any; an unanswered request is denied after its timeout",
            record.name
        )));
    };
    let since = events.last().map_or(0, |e| e.seq);
    store
        .append_event(
            &record.id,
            &AgentEvent::ApprovalAnswered {
                request_id: request.request_id.clone(),
                decision,
                reason,
            },
        )
        .map_err(|e| e.to_error_info())?;
    let deadline = Instant::now() + APPLY_WAIT;
    let decided = loop {
        let later = store
            .events(&record.id, since, None)
            .map_err(|e| e.to_error_info())?;
        let found = later.iter().find_map(|e| match &e.event {
            AgentEvent::ApprovalDecided {
                request_id,
                decision,
                by,
                ..
            } if *request_id == request.request_id => Some((*decision, *by)),
            _ => None,
        });
        if found.is_some() || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(POLL).await;
    };
    Ok(Answered { request, decided })
}

//! A sandbox's audit trail, and the commit trailers that lead back to it: every model request
//! the gateway metered for the sandbox (with its cost, session and attempt), and the `Warren-*`
//! lines warren writes at the end of the agent's commit message so a branch names its record.

use warren_api::{AuditRequest, AuditTotals, AuditView};
use warren_domain::{AgentEvent, EventRecord};
use warren_store::SandboxRecord;

/// The trailer naming the sandbox: `Warren-Sandbox: <id> (<name>)`.
pub const SANDBOX_TRAILER: &str = "Warren-Sandbox";

/// The trail of `record` from its recorded events.
pub fn trail(record: &SandboxRecord, events: &[EventRecord]) -> AuditView {
    let mut requests = Vec::new();
    let mut totals = AuditTotals::default();
    let mut attempt = 1;
    for e in events {
        match &e.event {
            AgentEvent::Retrying { .. } => attempt += 1,
            AgentEvent::ModelRequest {
                source,
                endpoint,
                model,
                status,
                input_tokens,
                output_tokens,
                latency_ms,
                error,
                cost_usd,
                session_id,
            } => {
                totals.requests += 1;
                totals.input_tokens += input_tokens.unwrap_or(0);
                totals.output_tokens += output_tokens.unwrap_or(0);
                totals.cost_usd += cost_usd.unwrap_or(0.0);
                if *status >= 400 || error.is_some() {
                    totals.errors += 1;
                }
                requests.push(AuditRequest {
                    seq: e.seq,
                    at: e.at,
                    source: *source,
                    endpoint: endpoint.clone(),
                    model: model.clone(),
                    session_id: session_id.clone(),
                    status: *status,
                    input_tokens: *input_tokens,
                    output_tokens: *output_tokens,
                    cost_usd: *cost_usd,
                    latency_ms: *latency_ms,
                    error: error.clone(),
                    attempt,
                });
            }
            AgentEvent::Finished { .. } => attempt = 1,
            _ => {}
        }
    }
    AuditView {
        sandbox_id: record.id.clone(),
        name: record.name.clone(),
        session_id: record.session_id.clone(),
        model: record.model.clone(),
        commit: None,
        requests,
        totals,
    }
}

/// The `Warren-*` trailers of the agent's commit: the sandbox, its session, the models that
/// answered, and the tokens and cost metered so far.
pub fn trailers(record: &SandboxRecord, events: &[EventRecord]) -> String {
    let view = trail(record, events);
    let mut models: Vec<String> = Vec::new();
    for r in &view.requests {
        if let Some(m) = &r.model
            && r.status < 400
            && !models.contains(m)
        {
            models.push(m.clone());
        }
    }
    if models.is_empty()
        && let Some(m) = &record.model
    {
        models.push(m.clone());
    }
    let mut out = format!("{SANDBOX_TRAILER}: {} ({})\n", record.id, record.name);
    if let Some(session) = &record.session_id {
        out.push_str(&format!("Warren-Session: {session}\n"));
    }
    for m in models {
        out.push_str(&format!("Warren-Model: {m}\n"));
    }
    let t = view.totals;
    out.push_str(&format!(
        "Warren-Tokens: {} in, {} out\n",
        t.input_tokens, t.output_tokens
    ));
    if view.requests.iter().any(|r| r.cost_usd.is_some()) {
        out.push_str(&format!("Warren-Cost: {:.6} USD\n", t.cost_usd));
    } else {
        out.push_str("Warren-Cost: unknown (no price in [budget.prices])\n");
    }
    out
}

/// The sandbox id a `Warren-Sandbox` trailer value names (`<id> (<name>)`).
pub fn sandbox_id_of(value: &str) -> Option<&str> {
    let id = value.split_whitespace().next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;

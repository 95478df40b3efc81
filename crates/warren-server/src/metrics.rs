//! `GET /metrics`: Prometheus text, computed from the store at scrape time (one replica, SQLite:
//! cheap enough) plus this process's run counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use warren_domain::{GatewayUsage, SandboxState};
use warren_provider::Provider;

use crate::error::ApiResult;
use crate::state::App;

const STATES: &[SandboxState] = &[
    SandboxState::New,
    SandboxState::Queued,
    SandboxState::Provisioning,
    SandboxState::Running,
    SandboxState::Saving,
    SandboxState::Completed,
    SandboxState::Error,
    SandboxState::TearingDown,
    SandboxState::Destroyed,
];

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
) -> ApiResult<impl IntoResponse> {
    let text = app
        .blocking(|app| {
            let store = &app.store;
            let records = store.list(true)?;
            let mut by_state: BTreeMap<&str, u64> =
                STATES.iter().map(|s| (s.as_str(), 0)).collect();
            let mut usage = GatewayUsage::default();
            let mut leases = 0u64;
            for r in &records {
                *by_state.entry(r.state.as_str()).or_default() += 1;
                for e in store.events(&r.id, 0, None)? {
                    usage.add(&e.event);
                }
                if r.state != SandboxState::Destroyed && store.lease(&r.id)?.is_some() {
                    leases += 1;
                }
            }
            let mut out = String::new();
            let _ = writeln!(out, "# HELP warren_sandboxes Sandboxes by state.");
            let _ = writeln!(out, "# TYPE warren_sandboxes gauge");
            for (state, n) in by_state {
                let _ = writeln!(out, "warren_sandboxes{{state=\"{state}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP warren_runs_total One-shot runs over HTTP since start, by outcome."
            );
            let _ = writeln!(out, "# TYPE warren_runs_total counter");
            let ok = app.runs_succeeded.load(Ordering::Relaxed);
            let failed = app.runs_failed.load(Ordering::Relaxed);
            let _ = writeln!(out, "warren_runs_total{{outcome=\"success\"}} {ok}");
            let _ = writeln!(out, "warren_runs_total{{outcome=\"failure\"}} {failed}");
            let _ = writeln!(
                out,
                "# HELP warren_model_requests_total Model requests the gateways forwarded."
            );
            let _ = writeln!(out, "# TYPE warren_model_requests_total counter");
            let _ = writeln!(out, "warren_model_requests_total {}", usage.requests);
            let _ = writeln!(out, "warren_model_request_errors_total {}", usage.errors);
            let _ = writeln!(
                out,
                "# HELP warren_model_tokens_total Tokens the gateways metered."
            );
            let _ = writeln!(out, "# TYPE warren_model_tokens_total counter");
            let _ = writeln!(
                out,
                "warren_model_tokens_total{{direction=\"input\"}} {}",
                usage.input
            );
            let _ = writeln!(
                out,
                "warren_model_tokens_total{{direction=\"output\"}} {}",
                usage.output
            );
            let _ = writeln!(
                out,
                "# HELP warren_leases_held Sandboxes whose lease an operation holds."
            );
            let _ = writeln!(out, "# TYPE warren_leases_held gauge");
            let _ = writeln!(out, "warren_leases_held {leases}");
            let _ = writeln!(
                out,
                "# HELP warren_supervisor_tasks Operations this server runs now."
            );
            let _ = writeln!(out, "# TYPE warren_supervisor_tasks gauge");
            let _ = writeln!(out, "warren_supervisor_tasks {}", app.tasks.len());
            Ok(out)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

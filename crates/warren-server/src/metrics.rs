//! `GET /metrics`: Prometheus text, computed from the store at scrape time (sandboxes by state,
//! model requests, tokens and latency from the gateways' `model_request` events, leases held)
//! plus what this process measures (runs, requests, operation durations, open streams).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use warren_domain::{AgentEvent, GatewayUsage, SandboxState};
use warren_provider::Provider;

use crate::error::ApiResult;
use crate::meter::Histogram;
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
    let text = app.blocking(|app| render(app)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
pub fn render<P: Provider + 'static>(app: &App<P>) -> ApiResult<String> {
    let store = &app.store;
    let records = store.list(true)?;
    let mut by_state: BTreeMap<&str, u64> = STATES.iter().map(|s| (s.as_str(), 0)).collect();
    let mut usage = GatewayUsage::default();
    let mut latency = Histogram::default();
    let mut leases = 0u64;
    for r in &records {
        *by_state.entry(r.state.as_str()).or_default() += 1;
        for e in store.events(&r.id, 0, None)? {
            usage.add(&e.event);
            if let AgentEvent::ModelRequest { latency_ms, .. } = &e.event {
                #[expect(clippy::cast_precision_loss, reason = "milliseconds fit an f64")]
                latency.observe(*latency_ms as f64 / 1000.0);
            }
        }
        if r.state != SandboxState::Destroyed && store.lease(&r.id)?.is_some() {
            leases += 1;
        }
    }
    let mut out = String::new();
    family(&mut out, "warren_sandboxes", "gauge", "Sandboxes by state.");
    for (state, n) in by_state {
        let _ = writeln!(out, "warren_sandboxes{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "warren_runs_total",
        "counter",
        "One-shot runs over HTTP since start, by outcome.",
    );
    let ok = app.runs_succeeded.load(Ordering::Relaxed);
    let failed = app.runs_failed.load(Ordering::Relaxed);
    let _ = writeln!(out, "warren_runs_total{{outcome=\"success\"}} {ok}");
    let _ = writeln!(out, "warren_runs_total{{outcome=\"failure\"}} {failed}");
    family(
        &mut out,
        "warren_model_requests_total",
        "counter",
        "Model requests the gateways forwarded.",
    );
    let _ = writeln!(out, "warren_model_requests_total {}", usage.requests);
    family(
        &mut out,
        "warren_model_request_errors_total",
        "counter",
        "Model requests that got a status >= 400 or did not complete.",
    );
    let _ = writeln!(out, "warren_model_request_errors_total {}", usage.errors);
    family(
        &mut out,
        "warren_model_tokens_total",
        "counter",
        "Tokens the gateways metered.",
    );
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
    family(
        &mut out,
        "warren_model_request_duration_seconds",
        "histogram",
        "Model request latency the gateways measured (request received to response body end).",
    );
    latency.write(&mut out, "warren_model_request_duration_seconds", "");
    family(
        &mut out,
        "warren_leases_held",
        "gauge",
        "Sandboxes whose lease an operation holds.",
    );
    let _ = writeln!(out, "warren_leases_held {leases}");
    family(
        &mut out,
        "warren_supervisor_tasks",
        "gauge",
        "Operations this server runs now.",
    );
    let _ = writeln!(out, "warren_supervisor_tasks {}", app.tasks.len());
    family(
        &mut out,
        "warren_streams_open",
        "gauge",
        "Event streams (events, one-shot runs) open now, over all tokens.",
    );
    let _ = writeln!(out, "warren_streams_open {}", app.streams.total());
    app.meter.write(&mut out);
    Ok(out)
}

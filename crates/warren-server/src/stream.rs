//! Streams: a sandbox's events as Server-Sent Events (`id:` is the event's `seq`, so
//! `Last-Event-ID` or `?since=` resumes with no gap and no duplicate) or NDJSON, read from the
//! store through the engine's `EventStream`; and the one-shot run, whose events and summary are
//! streamed as the NDJSON lines `warren run --json` prints.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use warren_api::{ErrorEnvelope, RunBody, SummaryEnvelope};
use warren_domain::{ErrorInfo, EventRecord, SandboxName};
use warren_engine::{Engine, EventStream, RunRequest, StreamEnd};
use warren_provider::Provider;

use crate::auth::Principal;
use crate::body::ApiJson;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{new_config, prompt};
use crate::state::{App, is_idle};

const NDJSON: &str = "application/x-ndjson";
/// How often an event stream without `follow` looks whether its sandbox went idle.
const IDLE_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events with a `seq` above this one (`Last-Event-ID` wins when both are given).
    since: Option<u64>,
    /// Keep the stream open after the sandbox goes idle.
    #[serde(default)]
    follow: bool,
    /// Only the events recorded now: end after the last of them, running or not (`warren logs`
    /// without `-f`).
    #[serde(default)]
    recorded: bool,
}

fn text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"reason_code":"internal","message":"{e}","retryable":false}}}}"#)
    })
}

fn line(value: &impl serde::Serialize) -> bytes::Bytes {
    let mut text = text(value);
    text.push('\n');
    bytes::Bytes::from(text)
}

/// The records of `stream`, ending when it does; an error ends it with one error item.
fn records(stream: EventStream) -> impl Stream<Item = Result<EventRecord, ErrorInfo>> {
    stream::unfold(Some(stream), |s| async move {
        let mut s = s?;
        match s.next().await {
            Ok(Some(record)) => Some((Ok(record), Some(s))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[utoipa::path(get, path = "/v1/sandboxes/{name}/events", tag = "sandboxes",
    params(("name" = String, Path, description = "The sandbox's name"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq")),
    responses(
        (status = 200, description = "Server-Sent Events (`id:` = seq, `data:` = the event record), or NDJSON with `Accept: application/x-ndjson`; ends when the sandbox is idle unless `follow`",
            content((String = "text/event-stream"), (ref("#/components/schemas/EventRecord") = "application/x-ndjson"))),
        (status = 404, description = "No such sandbox", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn events<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(who): Extension<Principal>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::new(
                    warren_domain::ReasonCode::InvalidArgument,
                    "Last-Event-ID is not a seq",
                )
                .with_hint("send the id: of the last event received (a whole number)")
            })
        })
        .transpose()?;
    let since = last_id.or(q.since).unwrap_or(0);
    let token = who.token.clone();
    let record = app.blocking(move |app| app.find(&who, &name)).await?;
    let slot = app.streams.acquire(&token)?;
    let end = StreamEnd::default();
    let stream = EventStream::new(app.store.clone(), record.id.clone(), since, end.clone());
    // Ends the stream once the sandbox is idle (unless following), or at shutdown.
    let (watch_app, id, follow) = (app.clone(), record.id.clone(), q.follow);
    let (alive, gone) = tokio::sync::oneshot::channel::<()>();
    if q.recorded {
        end.finish();
    }
    tokio::spawn(async move {
        let mut gone = gone;
        loop {
            if watch_app.shutdown.is_cancelled() {
                break;
            }
            if !follow {
                let id = id.clone();
                let idle = watch_app
                    .blocking(move |app| {
                        let record = app.store.get(&id)?;
                        Ok(is_idle(&*app.store, &record))
                    })
                    .await
                    .unwrap_or(true);
                if idle {
                    break;
                }
            }
            tokio::select! {
                _ = &mut gone => return,
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = watch_app.shutdown.cancelled() => break,
            }
        }
        end.finish();
    });
    // The watcher and the slot live as long as the response body: until the stream ends or
    // the client goes away.
    let records = records(stream).map(move |item| {
        let _keep = (&alive, &slot);
        item
    });
    let wants_ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    if wants_ndjson {
        let body = records.map(|item| {
            Ok::<_, Infallible>(match item {
                Ok(record) => line(&record),
                Err(error) => line(&ErrorEnvelope { error }),
            })
        });
        return Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response());
    }
    let sse = records.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(record) => Event::default()
                .id(record.seq.to_string())
                .data(text(&record)),
            Err(error) => Event::default()
                .event("error")
                .data(text(&ErrorEnvelope { error })),
        })
    });
    Ok(Sse::new(sse)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    request_body(content = ref("#/components/schemas/RunBody"), content_type = "application/json"),
    responses(
        (status = 200, description = "NDJSON: each event record as it is written, then `{\"summary\": ...}` (or `{\"error\": ...}`), exactly the lines of `warren run --json`",
            content((ref("#/components/schemas/EventRecord") = "application/x-ndjson"))),
        (status = "4XX", description = "Refused before anything was created", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn run<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult<Response> {
    prompt(&body.prompt)?;
    crate::handlers::budget(body.budget.as_ref())?;
    let name = body
        .name
        .as_deref()
        .map(SandboxName::parse)
        .transpose()
        .map_err(|e| ApiError::new(warren_domain::ReasonCode::InvalidArgument, e.to_string()))?;
    crate::handlers::check_egress(body.egress.as_deref(), &body.allow)?;
    let repo = crate::sources::resolve(&app, &body.repository).await?;
    let slot = app.streams.acquire(&who.token)?;
    let (repo2, kind, timeout) = (repo.clone(), body.provider.clone(), body.timeout_secs);
    let approvals = body.approvals.clone();
    let (egress, allow) = (body.egress.clone(), body.allow.clone());
    let (config, provider) = app
        .blocking(move |app| {
            let mut config = new_config(app, &repo2, kind.as_deref())?;
            crate::handlers::apply_approvals(&mut config, approvals)?;
            warren_engine::egress::apply_overrides(&mut config.policy, egress.as_deref(), &allow)?;
            if let Some(secs) = timeout {
                if !(1..=604_800).contains(&secs) {
                    return Err(ApiError::new(
                        warren_domain::ReasonCode::InvalidArgument,
                        format!("timeout_secs {secs} is not 1 to 604800"),
                    ));
                }
                config.timeouts.run_secs = secs;
            }
            let provider = (app.providers)(&config.sandbox.provider, &config, Some(&repo2))?;
            Ok((config, provider))
        })
        .await?;
    let engine = Engine::new(
        provider,
        config.clone(),
        app.data_dir.clone(),
        app.store.clone(),
    );
    let handle = engine
        .start_run(RunRequest {
            repo,
            prompt: body.prompt,
            name,
            model: body.model,
            role: body.role,
            owner_budget: crate::budget::owner_budget(&app, &who.owner, &config),
            config,
            budget: body.budget,
        })
        .await?;
    let id = handle.id.clone();
    let owner = who.owner.clone();
    app.blocking(move |app| Ok(app.tenancy.set_owner(&id, &owner)?))
        .await?;
    let key = app.tasks.add(handle.id.as_str(), handle.cancel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let task_app = app.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        // The run goes on to its end even when the client goes away (its work is exported).
        let mut events = handle.events(0);
        loop {
            match events.next().await {
                Ok(Some(record)) => {
                    let _ = tx.send(line(&record)).await;
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = tx.send(line(&ErrorEnvelope { error })).await;
                    break;
                }
            }
        }
        let result = handle.finish().await;
        task_app.count_run(result.as_ref().is_ok_and(|s| s.error.is_none()));
        task_app.meter.observe("run", started.elapsed());
        let _ = match result {
            Ok(summary) => tx.send(line(&SummaryEnvelope { summary })).await,
            Err(error) => tx.send(line(&ErrorEnvelope { error })).await,
        };
        task_app.tasks.remove(key);
    });
    // The slot is held while the client reads; the run itself goes on without it.
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |chunk| {
        let _held = &slot;
        Ok::<_, Infallible>(chunk)
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, NDJSON)],
        Body::from_stream(body),
    )
        .into_response())
}

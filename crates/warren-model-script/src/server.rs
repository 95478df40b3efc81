//! The HTTP side: routes, and an accept loop that serves each TCP connection with hyper itself
//! so a handler can make its connection close with no response bytes (the `drop` fault).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::chat::{Shared, chat_completions, error_response, unauthorized};

/// Per-connection signal: when triggered, the connection task drops the socket at once.
#[derive(Clone, Default)]
pub(crate) struct ConnAbort(Arc<Notify>);

impl ConnAbort {
    pub(crate) fn trigger(&self) {
        self.0.notify_one();
    }
}

/// All routes of the stand-in.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .route("/_script/requests", get(requests))
        .fallback(not_found)
        .with_state(shared)
}

async fn models(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if !shared.key_ok(request.headers()) {
        return unauthorized();
    }
    let data: Vec<serde_json::Value> = shared
        .scenario
        .models
        .iter()
        .map(|id| {
            serde_json::json!({
                "id": id,
                "object": "model",
                "created": 0,
                "owned_by": "warren-model-script",
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.records()).into_response()
}

async fn not_found(request: Request) -> Response {
    let message = format!(
        "warren-model-script: no route for {} {}",
        request.method(),
        request.uri().path()
    );
    error_response(
        StatusCode::NOT_FOUND,
        &message,
        "invalid_request_error",
        None,
    )
}

/// Accepts connections until `stop` changes (or its sender goes away), then drops every open
/// connection, hung ones included.
pub(crate) async fn serve(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(error) => {
                    // E.g. too many open files: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, router: Router) {
    // Streamed chunks should leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let abort = ConnAbort::default();
    let dropped = abort.0.clone();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(abort.clone());
            let mut router = router.clone();
            router.call(request)
        });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!("connection ended with error: {error}");
            }
        }
        () = dropped.notified() => {
            tracing::debug!("dropping connection without a response (scripted drop fault)");
        }
    }
}

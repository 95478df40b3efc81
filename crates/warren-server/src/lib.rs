//! `warren serve`: warren's HTTP API over the engine, on whichever store the host opens (SQLite
//! for one replica, PostgreSQL for several; the server sees only the store traits). The API
//! layer only parses and maps errors; each handler calls the engine and returns a `warren-api`
//! view. Supervisors run as tasks of this process (`tasks.rs`), every route but health needs a
//! bearer token of an owner (`auth.rs`), events stream from the store (`stream.rs`), and the
//! reconciler's sweep runs in a loop on the replica that leads it. The provider and the settings
//! loader are handed in by the host (the CLI), so this crate depends on no provider.

mod approvals;
mod audit;
mod auth;
mod body;
mod budget;
mod dashboard;
mod error;
mod handlers;
mod limits;
mod meter;
mod metrics;
pub mod openapi;
mod rejections;
mod sources;
mod state;
mod status;
mod stream;
mod tasks;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post};
use tokio_util::sync::CancellationToken;
use warren_domain::{ErrorInfo, ReasonCode};
use warren_engine::{Cancel, Lifecycle};
use warren_provider::Provider;
use warren_store::{StateStore, TenancyStore};

pub use auth::{Principal, create_token, verify};
pub use error::{ApiError, status_for};
pub use limits::DEFAULT_STREAMS_PER_TOKEN;
pub use state::{App, ConfigLoader, ProviderFactory};
pub use tls::TlsFiles;

/// How long shutdown waits for running supervisors to stop and keep their work.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The reconciler's sweep runs at least this often and at most this often.
const SWEEP_MIN: Duration = Duration::from_secs(1);
const SWEEP_MAX: Duration = Duration::from_secs(60);
/// How often a replica that does not lead the reconciler asks for the lead again.
const FOLLOWER_RETRY: Duration = Duration::from_secs(2);

pub struct ServeOptions<P> {
    pub listen: SocketAddr,
    /// Allow a non-loopback address without TLS.
    pub insecure_bind: bool,
    /// Serve HTTPS with this certificate and key (a non-loopback address is then allowed).
    pub tls: Option<TlsFiles>,
    pub data_dir: PathBuf,
    /// The state, opened (and migrated) by the host, which chooses the implementation.
    pub store: Arc<dyn StateStore>,
    /// Tokens and sandbox owners (the same object as `store` can be both).
    pub tenancy: Arc<dyn TenancyStore>,
    pub max_body_bytes: usize,
    /// Event streams one token may hold open at once (`GET .../events`, `POST /v1/runs`).
    pub max_streams_per_token: usize,
    pub providers: ProviderFactory<P>,
    pub config: ConfigLoader,
}

/// Refuses a non-loopback address without TLS unless `insecure_bind`: tokens would cross the
/// network in clear.
pub fn check_bind(listen: &SocketAddr, insecure_bind: bool, tls: bool) -> Result<(), ErrorInfo> {
    if listen.ip().is_loopback() || insecure_bind || tls {
        return Ok(());
    }
    Err(ErrorInfo::new(
        ReasonCode::InvalidArgument,
        format!("refusing to listen on {listen} without TLS: it is not a loopback address (bearer tokens would cross the network in clear)"),
    )
    .with_hint("pass --tls-cert and --tls-key, listen on 127.0.0.1, or pass --insecure-bind behind a TLS-terminating proxy"))
}

/// The app's routes, each with the path and method `/openapi.json` must list.
struct Routes<P> {
    router: Router<Arc<App<P>>>,
    listed: Vec<(String, String)>,
}

impl<P: Provider + 'static> Routes<P> {
    fn add(mut self, methods: &[&str], path: &str, route: MethodRouter<Arc<App<P>>>) -> Self {
        for m in methods {
            self.listed.push(((*m).to_owned(), path.to_owned()));
        }
        self.router = self.router.route(path, route);
        self
    }
}

/// The router and the `(METHOD, path)` of every route it serves.
pub fn router<P: Provider + 'static>(
    app: Arc<App<P>>,
    max_body_bytes: usize,
) -> (Router, Vec<(String, String)>) {
    use handlers as h;
    let mut private = Routes {
        router: Router::new(),
        listed: Vec::new(),
    }
    .add(
        &["GET", "POST"],
        "/v1/sandboxes",
        get(h::list::<P>).post(h::launch::<P>),
    )
    .add(
        &["GET", "DELETE"],
        "/v1/sandboxes/{name}",
        get(h::get_sandbox::<P>).delete(h::teardown::<P>),
    )
    .add(
        &["POST"],
        "/v1/sandboxes/{name}/prompts",
        post(h::exec::<P>),
    )
    .add(&["POST"], "/v1/sandboxes/{name}/sync", post(h::sync::<P>))
    .add(
        &["POST"],
        "/v1/sandboxes/{name}/export",
        post(h::export::<P>),
    )
    .add(
        &["GET"],
        "/v1/sandboxes/{name}/changes",
        get(h::changes::<P>),
    )
    .add(
        &["POST"],
        "/v1/sandboxes/{name}/cancel",
        post(h::cancel::<P>),
    )
    .add(
        &["GET"],
        "/v1/sandboxes/{name}/events",
        get(stream::events::<P>),
    )
    .add(&["POST"], "/v1/runs", post(stream::run::<P>))
    .add(
        &["GET"],
        "/v1/sandboxes/{name}/status",
        get(status::status::<P>),
    )
    .add(
        &["GET"],
        "/v1/sandboxes/{name}/bundle",
        get(sources::download_bundle::<P>),
    )
    .add(&["GET"], "/metrics", get(metrics::metrics::<P>))
    .add(
        &["POST"],
        "/v1/sandboxes/{name}/approvals/{request}",
        post(approvals::answer::<P>),
    )
    .add(
        &["GET"],
        "/v1/sandboxes/{name}/audit",
        get(audit::audit::<P>),
    );
    // Every route so far, with a body extractor or not, refuses a declared length over the limit.
    private.router = private
        .router
        .route_layer(tower_http::limit::RequestBodyLimitLayer::new(
            max_body_bytes,
        ));
    // A bundle has its own cap (the server's sync.max_total_bytes), checked as it streams in.
    let private = private.add(
        &["POST"],
        "/v1/bundles",
        post(sources::upload_bundle::<P>).layer(DefaultBodyLimit::disable()),
    );
    let private_router = private
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_token::<P>,
        ));
    let public = Routes {
        router: private_router,
        listed: private.listed,
    }
    .add(&["GET"], "/healthz", get(h::healthz))
    .add(&["GET"], "/readyz", get(h::readyz::<P>))
    .add(&["GET"], "/openapi.json", get(openapi::openapi_json));
    let mut listed = public.listed;
    listed.sort();
    let router = public
        .router
        .merge(dashboard::routes())
        .fallback(h::fallback)
        .layer(axum::middleware::map_response(rejections::as_wire_error))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            meter::record::<P>,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app);
    (router, listed)
}

/// Serves until SIGTERM or Ctrl-C, then drains: stops accepting, ends event streams, stops the
/// supervisors it runs (their work is kept) and waits for them up to [`SHUTDOWN_GRACE`].
pub async fn serve<P: Provider + 'static>(opts: ServeOptions<P>) -> Result<(), ErrorInfo> {
    check_bind(&opts.listen, opts.insecure_bind, opts.tls.is_some())?;
    // A bad certificate or key fails here, before anything listens.
    let tls = opts.tls.as_ref().map(tls::acceptor).transpose()?;
    let app = Arc::new(App {
        data_dir: opts.data_dir,
        store: opts.store,
        tenancy: opts.tenancy,
        providers: opts.providers,
        config: opts.config,
        tasks: tasks::Tasks::default(),
        shutdown: CancellationToken::new(),
        streams: limits::StreamLimits::new(opts.max_streams_per_token),
        meter: meter::Meter::default(),
        runs_succeeded: Default::default(),
        runs_failed: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            ErrorInfo::new(
                ReasonCode::InvalidArgument,
                format!("cannot listen on {}: {e}", opts.listen),
            )
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
    // The one line a caller (or a test) waits for.
    // The handler is in place before the line a caller waits for: a SIGTERM right after it
    // drains rather than kills.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("warren serve: listening on {scheme}://{local}");
    let sweeper = tokio::spawn(reconcile_loop(app.clone()));
    let (router, _) = router(app.clone(), opts.max_body_bytes);
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal(term).await;
        shutdown.cancel();
    });
    let server = tls::serve(listener, tls, router, app.shutdown.clone());
    let drained = async {
        app.shutdown.cancelled().await;
        app.tasks.cancel_all(&Cancel::stopped("server shutdown"));
        if !app.tasks.wait_done(None, SHUTDOWN_GRACE).await {
            tracing::warn!("{} supervisors did not stop in time", app.tasks.len());
        }
    };
    let (served, ()) = tokio::join!(
        async {
            // Requests still open after the grace (a client that never reads) are dropped.
            let graceful = server;
            tokio::select! {
                r = graceful => r,
                () = async { app.shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE + Duration::from_secs(5)).await } => Ok(()),
            }
        },
        drained
    );
    sweeper.abort();
    // Another replica takes the reconciler over at once rather than when this session closes.
    let _ = app.blocking(|app| Ok(app.store.resign_reconciler()?)).await;
    served.map_err(|e| ErrorInfo::new(ReasonCode::Internal, format!("the server failed: {e}")))
}

async fn wait_for_signal(term: Option<tokio::signal::unix::Signal>) {
    let Some(mut term) = term else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The reconciler's sweep (`Lifecycle::gc`) in a loop, on a blocking thread, waking when the
/// sweep says (bounded to 1..=60 s). Where replicas share the store, only the one that leads
/// (`StateStore::try_lead_reconciler`) sweeps; the others ask for the lead again every
/// [`FOLLOWER_RETRY`], so one takes over when the leader stops or dies.
async fn reconcile_loop<P: Provider + 'static>(app: Arc<App<P>>) {
    loop {
        let leads = app
            .blocking(|app| Ok(app.store.try_lead_reconciler()?))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("cannot ask for the reconciler's lead: {}", e.0);
                false
            });
        if !leads {
            tokio::select! {
                () = tokio::time::sleep(FOLLOWER_RETRY) => continue,
                () = app.shutdown.cancelled() => return,
            }
        }
        let swept = app
            .blocking(|app| {
                let config = (app.config)(None)?;
                let provider = (app.providers)("local", &config, None)?;
                let lc = Lifecycle::new(&provider, &config, &app.data_dir, app.store.clone());
                let lease_ttl = Duration::from_secs(config.timeouts.lease_ttl_secs);
                let report = lc.gc()?;
                // After gc, so the sandboxes it just settled have their leftovers read back.
                let accounted = lc.accounted()?;
                let mut kinds: Vec<String> = app
                    .store
                    .list(true)?
                    .into_iter()
                    .map(|r| r.provider)
                    .chain([config.sandbox.provider.clone()])
                    .collect();
                kinds.sort();
                kinds.dedup();
                Ok((report, lease_ttl, accounted, kinds, config))
            })
            .await;
        // What a dead process left on a backend that keeps sandboxes (pods): read back, removed.
        let swept = match swept {
            Ok((report, lease_ttl, accounted, kinds, config)) => {
                for kind in kinds {
                    let Ok(provider) = (app.providers)(&kind, &config, None) else {
                        continue;
                    };
                    let limits = warren_engine::export::sync_limits(&config);
                    let left =
                        warren_engine::leftovers::sweep_leftovers(&provider, &accounted, &limits)
                            .await;
                    if !left.recovered.is_empty() || !left.removed.is_empty() {
                        tracing::info!(
                            "reconciler: {kind} leftovers recovered {:?}, removed {:?}",
                            left.recovered,
                            left.removed
                        );
                    }
                }
                Ok((report, lease_ttl))
            }
            Err(e) => Err(e),
        };
        let next = match swept {
            // At least once a lease lifetime: a sandbox another replica launched after this
            // sweep is not in its requeue time, and must be looked at if that replica dies.
            Ok((report, lease_ttl)) => {
                if !report.marked_error.is_empty() || !report.torn_down.is_empty() {
                    tracing::info!(
                        "reconciler: marked {:?}, tore down {:?}",
                        report.marked_error,
                        report.torn_down
                    );
                }
                report
                    .requeue_after_secs
                    .map_or(SWEEP_MAX, Duration::from_secs)
                    .min(lease_ttl)
            }
            Err(e) => {
                tracing::warn!("reconciler sweep failed: {}", e.0);
                SWEEP_MAX
            }
        };
        tokio::select! {
            () = tokio::time::sleep(next.clamp(SWEEP_MIN, SWEEP_MAX)) => {}
            () = app.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests;

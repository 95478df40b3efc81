//! The model gateway: a sandbox has no network, so this HTTP/1.1 reverse proxy on a Unix socket is
//! its only path to a model endpoint (or, for a sandbox that shares no file system with warren, a
//! TCP listener that answers only requests carrying the sandbox's own token). It holds the real credential on the host, refuses anything
//! that is not a model API call, and tells the engine about upstream failures as they happen so a
//! doomed run can fail fast instead of waiting for the agent to give up. It also meters every
//! request it forwards (status, latency, the upstream's token counts), so what a sandbox used is
//! known from the traffic, not only from the agent's own report.

mod budget;
pub mod egress;
mod error;
mod headers;
mod meter;
mod policy;
mod proxy;
mod server;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use budget::{ModelPrice, ScopeBudget};
pub use error::GatewayError;
pub use meter::MeteredRequest;
pub use proxy::budget_refusal_message;
pub use warren_domain::RequestSource;

/// How long to wait for a TCP/TLS connection to the upstream before declaring it unreachable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a gateway listens.
#[derive(Clone, PartialEq, Eq)]
pub enum GatewayListen {
    /// A Unix socket. The parent directory must exist; a stale socket file there is replaced.
    /// Whoever can open the socket may use the gateway: the directory is the access control.
    Unix(PathBuf),
    /// A TCP address (port 0: any free port). Every request must carry
    /// `Authorization: Bearer <token>`, or it is answered 401 and never forwarded. The token is
    /// stripped like any sandbox credential; the real one is injected as for a socket.
    Tcp {
        address: std::net::SocketAddr,
        token: String,
    },
}

// By hand, so the token cannot leak through `{:?}`.
impl fmt::Debug for GatewayListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => f.debug_tuple("Unix").field(path).finish(),
            Self::Tcp { address, .. } => f
                .debug_struct("Tcp")
                .field("address", address)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

#[derive(Clone)]
pub struct GatewayConfig {
    pub listen: GatewayListen,
    /// The model endpoint's base URL including its own version path, e.g.
    /// `https://api.example.com/v1`.
    pub upstream_base_url: String,
    /// The real credential, sent upstream as `Authorization: Bearer <key>`. Never logged.
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Who the requests through this gateway come from, as its [`MeteredRequest`]s say.
    pub source: RequestSource,
    /// Model id (as in the request body) → its price: each metered answer is costed with it.
    pub prices: std::collections::HashMap<String, ModelPrice>,
    /// An egress proxy to run beside the gateway (`[policy] egress = "allow-list"`); its
    /// decisions arrive as [`GatewayNotice::Egress`]. `None`: the sandbox reaches the model only.
    pub egress: Option<egress::EgressListen>,
}

impl GatewayConfig {
    /// A gateway on a Unix socket.
    pub fn new(socket_path: impl Into<PathBuf>, upstream_base_url: impl Into<String>) -> Self {
        Self::on(GatewayListen::Unix(socket_path.into()), upstream_base_url)
    }

    /// A gateway on TCP that requires `token` as a bearer credential.
    pub fn tcp(
        address: std::net::SocketAddr,
        token: impl Into<String>,
        upstream_base_url: impl Into<String>,
    ) -> Self {
        let token = token.into();
        Self::on(GatewayListen::Tcp { address, token }, upstream_base_url)
    }

    /// A gateway listening on `listen`.
    pub fn on(listen: GatewayListen, upstream_base_url: impl Into<String>) -> Self {
        Self {
            listen,
            upstream_base_url: upstream_base_url.into(),
            api_key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            source: RequestSource::Agent,
            prices: std::collections::HashMap::new(),
            egress: None,
        }
    }
}

// Hand-written so the credential cannot leak through `{:?}` in a log line or error report.
impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("upstream_base_url", &self.upstream_base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("source", &self.source)
            .field("egress", &self.egress)
            .finish()
    }
}

/// Something the engine should know about while the run is going on.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayNotice {
    /// Could not connect to the upstream at all (refused, DNS, timeout): the run should fail fast.
    UpstreamUnreachable { url: String, error: String },
    /// Upstream answered 401/403: the credential is wrong; the run should fail fast.
    UpstreamAuthRejected { status: u16, body: String },
    /// Any other upstream HTTP error status (for classification: 404 model not found, 429, 5xx).
    UpstreamStatus { status: u16, body: String },
    /// A request the policy refused.
    Blocked { method: String, path: String },
    /// A forwarded request, metered. Exactly one per forwarded request, sent when its response
    /// body has ended (or failed, or was cut short), so after [`GatewayHandle::shutdown`] every
    /// request's record is in the channel.
    ModelRequest(MeteredRequest),
    /// A budget reached its warning share (80%) with the request just metered.
    BudgetWarning(warren_domain::BudgetLine),
    /// A budget is spent: a model call was refused (answered 400, never forwarded). The run
    /// should stop.
    BudgetExceeded(warren_domain::BudgetLine),
    /// One decision of the egress proxy, sent when the request or tunnel it allowed has ended
    /// (at once for a refusal).
    Egress(egress::EgressRecord),
}

/// A snapshot of the gateway's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Every request the sandbox sent, including refused ones.
    pub requests: u64,
    /// Requests the policy refused.
    pub blocked: u64,
    /// Upstream transport failures plus upstream responses with status >= 400.
    pub upstream_errors: u64,
    /// Request body bytes forwarded upstream.
    pub bytes_up: u64,
    /// Response body bytes passed back to the sandbox.
    pub bytes_down: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) blocked: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> GatewayStats {
        GatewayStats {
            requests: self.requests.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
        }
    }
}

/// A running gateway. Dropping it without [`GatewayHandle::shutdown`] still stops it and removes
/// the socket file, so an early return in the engine cannot leave a listener behind.
pub struct GatewayHandle {
    /// Empty for a TCP gateway.
    socket_path: PathBuf,
    local_addr: Option<std::net::SocketAddr>,
    shared: Arc<proxy::Shared>,
    notices: mpsc::UnboundedReceiver<GatewayNotice>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    egress: Option<egress::Running>,
}

/// Binds the socket and starts serving in the background.
pub async fn start(cfg: GatewayConfig) -> Result<GatewayHandle, GatewayError> {
    let base = validate_upstream(&cfg.upstream_base_url)?;
    let authorization = match &cfg.api_key {
        Some(key) => {
            let mut value = HeaderValue::try_from(format!("Bearer {key}"))
                .map_err(|_| GatewayError::InvalidApiKey)?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(cfg.connect_timeout)
        // One sandbox talks to one endpoint; a few idle connections cover its concurrency.
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| GatewayError::Client(e.to_string()))?;

    if let GatewayListen::Tcp { token, .. } = &cfg.listen
        && !token_is_usable(token)
    {
        return Err(GatewayError::InvalidToken);
    }
    let (listener, socket_path, local_addr) = match &cfg.listen {
        GatewayListen::Unix(path) => (server::bind(path)?, path.clone(), None),
        GatewayListen::Tcp { address, .. } => {
            let listener = server::bind_tcp(*address).await?;
            let local = listener.local_addr();
            (listener, PathBuf::new(), local)
        }
    };
    let (notice_tx, notices) = mpsc::unbounded_channel();
    let egress = match &cfg.egress {
        Some(listen) => Some(egress::start(listen, notice_tx.clone(), cfg.connect_timeout).await?),
        None => None,
    };
    let shared = Arc::new(proxy::Shared {
        client,
        base_url: base.as_str().trim_end_matches('/').to_owned(),
        display_base: redact_userinfo(base),
        authorization,
        notices: notice_tx,
        source: cfg.source,
        token: match &cfg.listen {
            GatewayListen::Tcp { token, .. } => Some(token.clone()),
            GatewayListen::Unix(_) => None,
        },
        counters: Counters::default(),
        budget: budget::Guard::new(cfg.prices.clone()),
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(server::serve(listener, Arc::clone(&shared), stop_rx));
    tracing::debug!(
        listen = ?cfg.listen,
        upstream = %shared.display_base,
        "model gateway listening"
    );
    Ok(GatewayHandle {
        socket_path,
        local_addr,
        shared,
        notices,
        stop: Some(stop_tx),
        task: Some(task),
        egress,
    })
}

/// A token must be long enough not to be guessed and fit in a header as it is.
fn token_is_usable(token: &str) -> bool {
    token.len() >= 16 && token.bytes().all(|b| b.is_ascii_graphic())
}

fn validate_upstream(url: &str) -> Result<reqwest::Url, GatewayError> {
    let invalid = |reason: &str| GatewayError::InvalidUpstreamUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a base URL cannot have a query or fragment"));
    }
    Ok(parsed)
}

/// The base URL as it may appear in messages: userinfo can hold a password.
fn redact_userinfo(mut url: reqwest::Url) -> String {
    // Both setters only fail for URLs without a host, which validation already excluded.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.as_str().trim_end_matches('/').to_owned()
}

impl GatewayHandle {
    /// The Unix socket's path; empty for a TCP gateway (see [`GatewayHandle::local_addr`]).
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The bound address of a TCP gateway (its real port when port 0 was asked for).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local_addr
    }

    /// The stream of notices. Notices queue up until read.
    pub fn notices(&mut self) -> &mut mpsc::UnboundedReceiver<GatewayNotice> {
        &mut self.notices
    }

    /// Moves the notice receiver out, e.g. into a task of its own. Afterwards
    /// [`GatewayHandle::notices`] returns a receiver that is already closed.
    pub fn take_notices(&mut self) -> mpsc::UnboundedReceiver<GatewayNotice> {
        let (_closed_tx, closed_rx) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.notices, closed_rx)
    }

    /// Sets the budgets the next requests are charged to and checked against (replacing any
    /// before), and starts the run's clock. Without budgets nothing is refused.
    pub fn set_budget(&self, budgets: Vec<ScopeBudget>) {
        self.shared.budget.set(budgets);
    }

    /// The egress proxy's socket, when one runs beside the gateway on a Unix socket.
    pub fn egress_socket(&self) -> Option<&Path> {
        self.egress.as_ref().and_then(egress::Running::socket)
    }

    /// The egress proxy's bound address, when one runs beside the gateway on loopback TCP.
    pub fn egress_addr(&self) -> Option<std::net::SocketAddr> {
        self.egress.as_ref().and_then(egress::Running::local_addr)
    }

    pub fn stats(&self) -> GatewayStats {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, ends in-flight requests and streams, and removes the socket file.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(egress) = self.egress.take() {
            egress.shutdown().await;
        }
        remove_socket(&self.socket_path);
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            remove_socket(&self.socket_path);
        }
    }
}

fn remove_socket(path: &Path) {
    if path.as_os_str().is_empty() {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "cannot remove gateway socket")
        }
    }
}

//! `warren-model-script` is a **scripted stand-in for a language model — not a language
//! model**. It is an OpenAI-compatible chat-completions server that plays a fixed scenario
//! (text, reasoning, tool calls, HTTP faults, hangs, dropped connections) so that the real
//! OpenCode CLI can be driven end to end in warren's tests and demo without any model.
//!
//! It exists because it is the one piece of this project that is not real: everything else
//! (OpenCode, sandboxes, the gateway) runs for real against it.
//!
//! Endpoints:
//! - `POST /v1/chat/completions` (also `/chat/completions`): streamed (SSE) or plain replies
//!   taken from the scenario's turns, in order;
//! - `GET /v1/models` (also `/models`): the scenario's model ids;
//! - `GET /health`: `ok`;
//! - `GET /_script/requests`: every chat-completion request received, as [`RecordedRequest`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use warren_model_script::{Scenario, start};
//! let scenario = Scenario::from_json_str(r#"{"turns": [{"text": "Done."}]}"#)?;
//! let server = start(scenario, "127.0.0.1:0".parse()?).await?;
//! println!("point OpenCode's baseURL at {}", server.base_url());
//! // ... run the client ...
//! for request in server.requests() {
//!     println!("request {} -> {}", request.index, request.outcome);
//! }
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The scenario format is described in [`Scenario`] and in the crate README.

mod chat;
mod record;
mod scenario;
mod select;
mod server;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use record::{Outcome, RecordedRequest};
pub use scenario::{Fault, Scenario, ScenarioError, ToolCall, Turn, Usage, When};

/// One-line statement of what this is, used in startup output and `--help`.
pub const STAND_IN_NOTICE: &str =
    "scripted stand-in for a language model (not a real model): plays a fixed scenario";

/// Starts serving `scenario` on `addr` (port 0 picks a free port) and returns once listening.
///
/// Pass a loopback address (`127.0.0.1:0`); nothing here needs to be reachable from elsewhere.
pub async fn start(scenario: Scenario, addr: SocketAddr) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(chat::Shared::new(scenario));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(
        listener,
        server::router(shared.clone()),
        stop_rx,
    ));
    Ok(ServerHandle {
        addr,
        shared,
        stop,
        task: Some(task),
    })
}

/// A running stand-in server. Dropping it stops the server; [`ServerHandle::shutdown`] stops
/// it and waits until every connection is closed.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<chat::Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address (with the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for an OpenAI-compatible client, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            self.addr.ip()
        };
        format!("http://{}/v1", SocketAddr::new(ip, self.addr.port()))
    }

    /// Every chat-completion request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.records()
    }

    /// How many turn uses (counting `repeat`) have not been served yet; 0 once the whole
    /// script has been played.
    pub fn remaining_turn_uses(&self) -> u64 {
        self.shared.remaining_turn_uses()
    }

    /// The number of scripted turns.
    pub fn turn_count(&self) -> usize {
        self.shared.scenario.turns.len()
    }

    /// Stops accepting, closes every open connection (hung ones included) and waits for that.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

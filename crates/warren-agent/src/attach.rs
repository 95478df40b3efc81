//! One prompt on a warm OpenCode server, driven from the host over the server's Unix socket, and
//! presented as an [`ExecChild`] whose stdout carries the same JSON lines `opencode run --format
//! json` prints. Supervision, event parsing and failure classification then work unchanged.
//!
//! Why not `opencode run --attach` inside the sandbox: it stops reading at the session's `idle`
//! status, which OpenCode 1.18 can publish before the last step's parts reach the event stream,
//! so the final answer was sometimes lost; and it costs a second OpenCode process (~1 s) per
//! prompt. Here the prompt's own response marks the end, and every part of the assistant
//! messages it produced is read back from the server, so nothing is missed.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warren_provider::{ExecChild, ExecHandle};

/// Any host name: the socket decides where requests go.
const BASE: &str = "http://opencode";
/// At most this long, after the prompt answered, live events are read until the session reports
/// idle; then the messages are read back.
const SETTLE: Duration = Duration::from_millis(300);
const PIPE_BUFFER: usize = 256 * 1024;
/// While a permission request waits for its answer the agent is not idle: a blank line this often
/// keeps the supervisor's inactivity limit from firing (the approval timeout bounds the wait).
const WAITING_PULSE: Duration = Duration::from_secs(1);

/// A permission the agent asked for, and where its answer goes. Dropping `reply` denies it.
#[derive(Debug)]
pub struct PermissionAsk {
    /// OpenCode's request id (`per_...`).
    pub id: String,
    /// `bash`, `edit`, ...
    pub permission: String,
    /// The command (bash) or paths (edit) it is about.
    pub patterns: Vec<String>,
    pub reply: oneshot::Sender<PermissionReply>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionReply {
    Allow,
    /// Refused; the message reaches the model as the tool's result, and the agent carries on.
    Deny(String),
}

#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// The server's socket on the host.
    pub socket: PathBuf,
    /// Continue this session; a new one is created when `None`.
    pub session_id: Option<String>,
    pub prompt: String,
    /// Where permission requests go to be answered; `None` denies every one at once.
    pub asks: Option<mpsc::UnboundedSender<PermissionAsk>>,
}

/// Starts the prompt. Must be called inside a Tokio runtime.
pub fn attach(req: AttachRequest) -> std::io::Result<ExecChild> {
    let client = reqwest::Client::builder()
        .unix_socket(req.socket.clone())
        .build()
        .map_err(std::io::Error::other)?;
    let (stdout_w, stdout_r) = tokio::io::duplex(PIPE_BUFFER);
    let (stderr_w, stderr_r) = tokio::io::duplex(PIPE_BUFFER);
    let (session_tx, session_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        client: client.clone(),
        out: stdout_w,
        emitted: HashSet::new(),
        session: String::new(),
        idle: false,
        asks: req.asks.clone(),
        waiting: Arc::new(AtomicUsize::new(0)),
    };
    let task = tokio::spawn(driver.run(req, stderr_w, session_tx));
    Ok(ExecChild::new(
        Some(Box::pin(stdout_r)),
        Some(Box::pin(stderr_r)),
        Box::new(AttachHandle {
            task: Some(task),
            client,
            session: session_rx,
            session_id: None,
        }),
    ))
}

struct Driver {
    client: reqwest::Client,
    out: DuplexStream,
    /// Parts already printed, by id: each is printed once, when it is complete.
    emitted: HashSet<String>,
    session: String,
    /// The session reported idle (the prompt's loop ended on the server).
    idle: bool,
    asks: Option<mpsc::UnboundedSender<PermissionAsk>>,
    /// Permission requests waiting for their answer.
    waiting: Arc<AtomicUsize>,
}

impl Driver {
    /// Returns the exit status `opencode run` would: 0, or 1 when the prompt could not be run.
    async fn run(
        mut self,
        req: AttachRequest,
        mut stderr: DuplexStream,
        session_tx: mpsc::UnboundedSender<String>,
    ) -> i32 {
        match self.drive(req, &session_tx).await {
            Ok(()) => 0,
            Err(message) => {
                let _ = stderr
                    .write_all(format!("Error: {message}\n").as_bytes())
                    .await;
                1
            }
        }
    }

    async fn drive(
        &mut self,
        req: AttachRequest,
        session_tx: &mpsc::UnboundedSender<String>,
    ) -> Result<(), String> {
        self.session = match req.session_id {
            Some(id) => {
                self.request(reqwest::Method::GET, &format!("/session/{id}"), None)
                    .await
                    .map_err(|e| format!("Session not found: {e}"))?;
                id
            }
            None => {
                // The same rules `opencode run` gives a new session: nobody is there to answer.
                let rules = json!({ "permission": [
                    { "permission": "question", "action": "deny", "pattern": "*" },
                    { "permission": "plan_enter", "action": "deny", "pattern": "*" },
                    { "permission": "plan_exit", "action": "deny", "pattern": "*" },
                ]});
                let created = self
                    .request(reqwest::Method::POST, "/session", Some(rules))
                    .await?;
                created["id"]
                    .as_str()
                    .ok_or("the server created no session")?
                    .to_owned()
            }
        };
        let _ = session_tx.send(self.session.clone());

        // Subscribe before prompting, so no event of this prompt is missed.
        let events = self
            .client
            .get(format!("{BASE}/event"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot subscribe to the server's events: {e}"))?;
        let mut events = events.bytes_stream().eventsource();

        let prompt = {
            let client = self.client.clone();
            let url = format!("{BASE}/session/{}/message", self.session);
            let body = json!({ "parts": [{ "type": "text", "text": req.prompt }] });
            tokio::spawn(async move {
                let response = client.post(url).json(&body).send().await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        r.json::<Value>().await.map_err(|e| e.to_string())
                    }
                    Ok(r) => {
                        let status = r.status();
                        Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
        };
        tokio::pin!(prompt);
        let mut pulse = tokio::time::interval(WAITING_PULSE);
        let answer = loop {
            tokio::select! {
                done = &mut prompt => break done.map_err(|e| e.to_string())?,
                _ = pulse.tick(), if self.waiting.load(Ordering::Relaxed) > 0 => {
                    let _ = self.out.write_all(b"\n").await;
                }
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if let Ok(value) = serde_json::from_str::<Value>(&event.data) {
                            self.on_event(&value).await;
                        }
                    }
                    // The stream ended or broke: the prompt's answer still decides the end.
                    _ => break (&mut prompt).await.map_err(|e| e.to_string())?,
                },
            }
        };
        let answer = answer?;
        // Live events still in flight arrive before the session reports idle; whatever does not
        // arrive by then (or by the cap) is read back below.
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        while !self.idle {
            tokio::select! {
                () = &mut settle => break,
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if let Ok(value) = serde_json::from_str::<Value>(&event.data) {
                            self.on_event(&value).await;
                        }
                    }
                    _ => break,
                },
            }
        }
        self.read_back(&answer).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.client.request(method, format!("{BASE}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("the OpenCode server did not answer: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("{path}: HTTP {status}: {text}"));
        }
        response.json().await.map_err(|e| format!("{path}: {e}"))
    }

    async fn on_event(&mut self, event: &Value) {
        let props = &event["properties"];
        match event["type"].as_str() {
            Some("message.part.updated") => {
                let part = &props["part"];
                if part["sessionID"] == self.session.as_str() {
                    self.emit_part(part).await;
                }
            }
            Some("session.status")
                if props["sessionID"] == self.session.as_str()
                    && props["status"]["type"] == "idle" =>
            {
                self.idle = true;
            }
            // Any session's: a subagent's (the task tool) asks in a child session, and the
            // server runs this sandbox's one prompt at a time, so every request is this prompt's.
            Some("permission.asked") => self.on_permission(props),
            Some("session.error")
                if props["sessionID"] == self.session.as_str() && !props["error"].is_null() =>
            {
                let line = json!({ "error": props["error"] });
                self.emit("error", line).await;
            }
            _ => {}
        }
    }

    /// Hands the request to whoever answers (or denies it when nobody can) and sends the answer
    /// to the server when it comes; the prompt's events keep flowing meanwhile.
    fn on_permission(&self, props: &Value) {
        let Some(id) = props["id"].as_str().map(str::to_owned) else {
            return;
        };
        let patterns: Vec<String> = props["patterns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        let (tx, rx) = oneshot::channel();
        let ask = PermissionAsk {
            id: id.clone(),
            permission: props["permission"].as_str().unwrap_or_default().to_owned(),
            patterns,
            reply: tx,
        };
        // A closed channel drops the ask, and with it the reply sender: a denial.
        if let Some(asks) = &self.asks {
            let _ = asks.send(ask);
        }
        let (client, waiting) = (self.client.clone(), self.waiting.clone());
        waiting.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let reply = rx.await.unwrap_or_else(|_| {
                PermissionReply::Deny("Nobody can approve this action in this run.".into())
            });
            let body = match reply {
                PermissionReply::Allow => json!({ "reply": "once" }),
                // With a message OpenCode tells the model and goes on; without one it would stop
                // the whole prompt.
                PermissionReply::Deny(message) => json!({ "reply": "reject", "message": message }),
            };
            let sent = client
                .post(format!("{BASE}/permission/{id}/reply"))
                .json(&body)
                .send()
                .await;
            if let Err(e) = sent.and_then(reqwest::Response::error_for_status) {
                tracing::warn!("could not answer OpenCode's permission request {id}: {e}");
            }
            waiting.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Prints every finished part of the assistant messages this prompt produced that the live
    /// stream did not deliver, in order.
    async fn read_back(&mut self, answer: &Value) -> Result<(), String> {
        let Some(parent) = answer["info"]["parentID"].as_str().map(str::to_owned) else {
            return Ok(());
        };
        let messages = self
            .request(
                reqwest::Method::GET,
                &format!("/session/{}/message", self.session),
                None,
            )
            .await?;
        for message in messages.as_array().into_iter().flatten() {
            let info = &message["info"];
            if info["role"] == "assistant" && info["parentID"] == parent.as_str() {
                for part in message["parts"].as_array().into_iter().flatten() {
                    self.emit_part(part).await;
                }
                if let Some(error) = info.get("error").filter(|e| !e.is_null()) {
                    let key = format!("error:{}", info["id"]);
                    if self.emitted.insert(key) {
                        self.emit("error", json!({ "error": error })).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The line `opencode run --format json` prints for a part, once the part is complete.
    async fn emit_part(&mut self, part: &Value) {
        let finished = part["time"]["end"].is_number();
        let kind = match part["type"].as_str() {
            Some("step-start") => "step_start",
            Some("step-finish") => "step_finish",
            Some("text") if finished => "text",
            Some("reasoning") if finished => "reasoning",
            Some("tool")
                if matches!(
                    part["state"]["status"].as_str(),
                    Some("completed" | "error")
                ) =>
            {
                "tool_use"
            }
            _ => return,
        };
        let Some(id) = part["id"].as_str().or(part["callID"].as_str()) else {
            return;
        };
        if self.emitted.insert(id.to_owned()) {
            self.emit(kind, json!({ "part": part })).await;
        }
    }

    async fn emit(&mut self, kind: &str, mut fields: Value) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        fields["type"] = json!(kind);
        fields["timestamp"] = json!(now);
        fields["sessionID"] = json!(self.session);
        let mut line = fields.to_string();
        line.push('\n');
        let _ = self.out.write_all(line.as_bytes()).await;
    }
}

struct AttachHandle {
    task: Option<JoinHandle<i32>>,
    client: reqwest::Client,
    session: mpsc::UnboundedReceiver<String>,
    session_id: Option<String>,
}

impl ExecHandle for AttachHandle {
    /// Stops the prompt on the server (the session is aborted) and the driver with it.
    fn kill(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + '_>> {
        Box::pin(async move {
            while let Ok(id) = self.session.try_recv() {
                self.session_id = Some(id);
            }
            if let Some(task) = self.task.take() {
                task.abort();
            }
            if let Some(id) = &self.session_id {
                let abort = self
                    .client
                    .post(format!("{BASE}/session/{id}/abort"))
                    .timeout(Duration::from_secs(5))
                    .send();
                let _ = abort.await;
            }
            Ok(())
        })
    }

    fn wait(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<Option<i32>>> + Send + '_>> {
        Box::pin(async move {
            let Some(task) = self.task.as_mut() else {
                return Ok(None);
            };
            let code = task.await.ok();
            self.task = None;
            Ok(code)
        })
    }
}

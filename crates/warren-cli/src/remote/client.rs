//! The HTTP client of remote mode: bearer-authenticated requests to the server's `/v1` API,
//! each failure turned back into the `ErrorInfo` the server sent (so the exit code is the one
//! a local run of the command would have), and NDJSON streams read line by line.

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use warren_api::ErrorEnvelope;
use warren_domain::{ErrorInfo, ReasonCode};

#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

fn unreachable(base: &str, e: &impl std::fmt::Display) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::ServerUnreachable,
        format!("cannot reach the warren server at {base}: {e}"),
    )
    .with_hint("check WARREN_SERVER (or --server) and that 'warren serve' runs there; unset it to work locally")
}

impl Client {
    pub fn new(base: &str, token: &str) -> Result<Self, ErrorInfo> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ErrorInfo::new(
                ReasonCode::InvalidArgument,
                format!("the server {base:?} is not an http:// or https:// URL"),
            )
            .with_hint("set WARREN_SERVER (or --server) to the URL 'warren serve' prints, e.g. http://127.0.0.1:8420"));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| unreachable(&base, &e))?;
        Ok(Self {
            base,
            token: token.to_owned(),
            http,
        })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `req`; a non-2xx answer becomes the server's error.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ErrorInfo> {
        let resp = req.send().await.map_err(|e| unreachable(&self.base, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(envelope) => envelope.error,
            Err(_) => unreachable(
                &self.base,
                &format!("HTTP {status} without warren's error body: {}", text.trim()),
            ),
        })
    }

    pub async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ErrorInfo> {
        let resp = self.send(req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            unreachable(
                &self.base,
                &format!("an answer that is not the expected view: {e}"),
            )
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ErrorInfo> {
        self.json(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ErrorInfo> {
        self.json(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn bytes(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ErrorInfo> {
        let resp = self.send(req).await?;
        Ok(resp
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, &e))?
            .to_vec())
    }

    /// An NDJSON stream: each line as JSON, in order.
    pub async fn lines(&self, req: reqwest::RequestBuilder) -> Result<Lines, ErrorInfo> {
        let resp = self
            .send(req.header(reqwest::header::ACCEPT, "application/x-ndjson"))
            .await?;
        Ok(Lines {
            stream: Box::pin(resp.bytes_stream()),
            buffer: Vec::new(),
            base: self.base.clone(),
        })
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

pub struct Lines {
    stream: ByteStream,
    buffer: Vec<u8>,
    base: String,
}

impl Lines {
    /// The next line as JSON, `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, ErrorInfo> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).map(Some).map_err(|e| {
                    unreachable(&self.base, &format!("a stream line that is not JSON: {e}"))
                });
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(unreachable(&self.base, &e)),
                None if self.buffer.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => self.buffer.push(b'\n'),
            }
        }
    }
}

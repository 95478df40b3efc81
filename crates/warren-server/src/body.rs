//! JSON request bodies: parsed here so every rejection is the wire error with a reason code
//! (malformed JSON, unknown or missing fields: 400 `invalid_argument`; over the limit: 413
//! `request_too_large`), never axum's text.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use warren_domain::ReasonCode;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ReasonCode::RequestTooLarge, "the request body is too large")
                    .with_hint("send a smaller body (the server's --max-body-bytes)")
            } else {
                ApiError::new(ReasonCode::InvalidArgument, e.body_text())
            }
        })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = T::deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| {
                let what = if e.classify() == serde_json::error::Category::Data {
                    "the request body does not fit"
                } else {
                    "the request body is not valid JSON"
                };
                ApiError::new(ReasonCode::InvalidArgument, format!("{what}: {e}"))
                    .with_hint("see /openapi.json for the body this route takes")
            })?;
        Ok(Self(value))
    }
}

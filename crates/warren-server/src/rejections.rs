//! axum's own rejections (a query string, a path segment or a method it cannot take) answer in
//! plain text; this layer turns every such error response into the wire error with a reason
//! code, so no route answers a client without one. Responses that are already JSON, and every
//! success, pass through untouched (streams included).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use warren_domain::ReasonCode;

use crate::error::ApiError;

/// The longest rejection text kept as the message (axum's are one line).
const MAX_TEXT: usize = 4096;

pub async fn as_wire_error(mut response: Response) -> Response {
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was refused unread, so this connection cannot carry another request: say so,
        // or a client that pools connections sends its next request into a closing socket.
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_owned()
    } else {
        text
    };
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ReasonCode::RequestTooLarge, "the request body is too large")
                .with_hint("send a smaller body (the server's --max-body-bytes)")
        }
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            ReasonCode::InvalidArgument,
            format!("this route does not take that method ({text})"),
        )
        .with_hint("see /openapi.json for the methods each route takes"),
        s if s.is_client_error() => ApiError::new(ReasonCode::InvalidArgument, text)
            .with_hint("see /openapi.json for the parameters this route takes"),
        _ => ApiError::new(ReasonCode::Internal, text),
    };
    let mut wire = error.into_response();
    // The status axum chose stands (a 405 stays a 405); only the body changes.
    *wire.status_mut() = status;
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        wire.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    wire
}

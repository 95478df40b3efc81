//! The server's one boundary for errors: an engine, store or request failure becomes the wire
//! error `{"error": {reason_code, message, retryable, hint}}` with the HTTP status of its class,
//! decided here and nowhere else, by reason code (never by message).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warren_api::ErrorEnvelope;
use warren_domain::{ErrorInfo, ExitClass, ReasonCode, UserFacing};
use warren_engine::EngineError;

/// A failed request, in wire form.
#[derive(Debug)]
pub struct ApiError(pub ErrorInfo);

impl ApiError {
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self(ErrorInfo::new(code, message))
    }

    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        Self(self.0.with_hint(hint))
    }
}

impl From<ErrorInfo> for ApiError {
    fn from(info: ErrorInfo) -> Self {
        Self(info)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self(e.to_error_info())
    }
}

impl From<warren_store::StoreError> for ApiError {
    fn from(e: warren_store::StoreError) -> Self {
        Self(e.to_error_info())
    }
}

/// The HTTP status of a failure, by its reason code's class: a user error is 4xx (not found 404,
/// wrong state or busy 409, invalid input 400/422, no token 401, too large 413), a retryable
/// condition 503 (busy: 409), an interruption 409, a failure of the machine or a bug 500.
pub fn status_for(info: &ErrorInfo) -> StatusCode {
    use ReasonCode as R;
    match info.reason_code {
        R::SandboxNotFound => StatusCode::NOT_FOUND,
        R::Unauthorized => StatusCode::UNAUTHORIZED,
        R::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        R::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
        R::WrongState
        | R::SandboxBusy
        | R::UnexportedChanges
        | R::BranchExists
        | R::InvalidTransition
        | R::Interrupted
        | R::Stopped
        | R::NoPendingApproval => StatusCode::CONFLICT,
        // A URL the server cannot clone is the client's to fix (or retry): not a server error.
        R::InvalidConfig
        | R::UnknownModel
        | R::NotAGitRepo
        | R::InvalidBundle
        | R::RemoteGitFailed => StatusCode::UNPROCESSABLE_ENTITY,
        R::InvalidArgument => StatusCode::BAD_REQUEST,
        code => match code.exit_class() {
            ExitClass::User => StatusCode::BAD_REQUEST,
            ExitClass::Retryable => StatusCode::SERVICE_UNAVAILABLE,
            ExitClass::Interrupted => StatusCode::CONFLICT,
            ExitClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(&self.0);
        (status, axum::Json(ErrorEnvelope { error: self.0 })).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_class() {
        let s = |c| status_for(&ErrorInfo::new(c, "x"));
        assert_eq!(s(ReasonCode::SandboxNotFound), StatusCode::NOT_FOUND);
        assert_eq!(s(ReasonCode::SandboxBusy), StatusCode::CONFLICT);
        assert_eq!(s(ReasonCode::WrongState), StatusCode::CONFLICT);
        assert_eq!(s(ReasonCode::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(
            s(ReasonCode::InvalidConfig),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(s(ReasonCode::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(
            s(ReasonCode::RequestTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(s(ReasonCode::TooManyStreams), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            s(ReasonCode::ModelUnreachable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            s(ReasonCode::StoreFailed),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(s(ReasonCode::Internal), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

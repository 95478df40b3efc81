//! Why the gateway could not start, mapped onto warren's stable error contract so the CLI can
//! report it like any other failure.

use std::path::PathBuf;

use warren_domain::{ReasonCode, UserFacing};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configured model endpoint is not a usable `http(s)://` base URL.
    #[error("invalid model endpoint URL `{url}`: {reason}")]
    InvalidUpstreamUrl { url: String, reason: String },

    /// The API key cannot be sent in an HTTP header. The key itself is deliberately not shown.
    #[error("the model API key contains characters that cannot be sent in an HTTP header")]
    InvalidApiKey,

    /// The gateway's Unix socket could not be prepared or bound.
    #[error("cannot listen on the model gateway socket {}: {reason}", path.display())]
    Bind { path: PathBuf, reason: String },

    /// The gateway's TCP address could not be bound.
    #[error("cannot listen for the model gateway on {address}: {reason}")]
    BindTcp { address: String, reason: String },

    /// A TCP gateway's token is too short to be unguessable or cannot be sent in a header.
    #[error("the model gateway's sandbox token must be at least 16 printable ASCII characters")]
    InvalidToken,

    /// The HTTP client for the upstream could not be built (TLS backend initialisation).
    #[error("cannot build the model gateway's HTTP client: {0}")]
    Client(String),
}

impl UserFacing for GatewayError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::InvalidUpstreamUrl { .. } | Self::InvalidApiKey => ReasonCode::InvalidConfig,
            Self::Bind { .. } | Self::BindTcp { .. } => ReasonCode::SandboxFailed,
            Self::Client(_) | Self::InvalidToken => ReasonCode::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::InvalidUpstreamUrl { .. } => Some(
                "set the model endpoint to a base URL such as https://api.example.com/v1".into(),
            ),
            Self::InvalidApiKey => {
                Some("check the API key for stray newlines or non-ASCII characters".into())
            }
            Self::Bind { .. } | Self::BindTcp { .. } | Self::Client(_) | Self::InvalidToken => None,
        }
    }
}

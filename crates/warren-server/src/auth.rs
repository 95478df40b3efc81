//! Bearer tokens. A token is `wrn_<id>_<secret>`: the id finds its record, the secret (32 random
//! bytes, hex) is checked against the stored SHA-256 in constant time. Only the hash is stored;
//! the token is shown once, when created. Each token belongs to an owner; an admin token sees
//! every sandbox.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warren_domain::{ErrorInfo, ReasonCode};
use warren_store::{TenancyStore, TokenRecord};

use crate::error::ApiError;
use crate::state::App;
use std::sync::Arc;
use warren_provider::Provider;

const PREFIX: &str = "wrn_";

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's id (never its secret): per-token limits count by it.
    pub token: String,
    pub owner: String,
    pub admin: bool,
}

impl Principal {
    /// Whether this caller may see a sandbox owned by `owner` (none: made outside the server).
    pub fn sees(&self, owner: Option<&str>) -> bool {
        self.admin || owner == Some(self.owner.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Creates a token for `owner` and returns it with its record; the token itself is never stored.
pub fn create_token(
    store: &dyn TenancyStore,
    owner: &str,
    admin: bool,
) -> Result<(String, TokenRecord), ErrorInfo> {
    if owner.is_empty() || owner.len() > 128 || owner.chars().any(char::is_control) {
        return Err(ErrorInfo::new(
            ReasonCode::InvalidArgument,
            "an owner is 1 to 128 printable characters",
        ));
    }
    let mut raw = [0u8; 38];
    getrandom::fill(&mut raw).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("no randomness for a token: {e}"),
        )
    })?;
    let (id, secret) = (hex(&raw[..6]), hex(&raw[6..]));
    let record = store
        .create_token(&id, owner, admin, &hash(&secret))
        .map_err(|e| warren_domain::UserFacing::to_error_info(&e))?;
    Ok((format!("{PREFIX}{id}_{secret}"), record))
}

/// The principal a presented token stands for, if it is valid and not revoked.
pub fn verify(store: &dyn TenancyStore, token: &str) -> Result<Option<Principal>, ErrorInfo> {
    let Some((id, secret)) = token
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(None);
    };
    let Some(record) = store
        .token(id)
        .map_err(|e| warren_domain::UserFacing::to_error_info(&e))?
    else {
        return Ok(None);
    };
    let same: bool = hash(secret).as_bytes().ct_eq(record.hash.as_bytes()).into();
    Ok((same && record.revoked_at.is_none()).then_some(Principal {
        token: record.id,
        owner: record.owner,
        admin: record.admin,
    }))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ReasonCode::Unauthorized, message)
        .with_hint("send 'Authorization: Bearer <token>' with a token from 'warren token create'")
}

/// Middleware: every route behind it needs a valid bearer token; the principal goes into the
/// request's extensions.
pub async fn require_token<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("this route needs a bearer token"))?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header is not 'Bearer <token>'"))?
        .trim()
        .to_owned();
    let principal = app
        .blocking(move |app| Ok(verify(&*app.tenancy, &token)?))
        .await?
        .ok_or_else(|| unauthorized("the bearer token is unknown or revoked"))?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test")]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_revoked() {
        let store = warren_store::Store::open_in_memory().unwrap();
        let (token, record) = create_token(&store, "alice", false).unwrap();
        assert_ne!(record.hash, token, "only the hash is stored");
        let p = verify(&store, &token).unwrap().unwrap();
        assert_eq!((p.owner.as_str(), p.admin), ("alice", false));
        let mut forged = token.clone();
        forged.pop();
        forged.push('x');
        assert!(verify(&store, &forged).unwrap().is_none());
        assert!(verify(&store, "garbage").unwrap().is_none());
        store.revoke_token(&record.id).unwrap();
        assert!(verify(&store, &token).unwrap().is_none());
        assert!(create_token(&store, "", false).is_err());
    }
}

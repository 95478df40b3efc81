//! Caps on the streams one token may hold open (`GET .../events`, `POST /v1/runs`): a client
//! that opens streams and never reads them would otherwise hold server tasks and store readers
//! without bound. A slot is taken before a stream starts and given back when its response body
//! is dropped: the stream ended, or the client went away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use warren_domain::ReasonCode;

use crate::error::ApiError;

/// The default of `--max-streams-per-token`.
pub const DEFAULT_STREAMS_PER_TOKEN: usize = 16;

pub struct StreamLimits {
    per_token: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream of a token; dropping it frees the slot.
pub struct StreamSlot {
    limits: Arc<StreamLimits>,
    token: String,
}

impl StreamLimits {
    pub fn new(per_token: usize) -> Arc<Self> {
        Arc::new(Self {
            per_token,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more stream of `token`, or `too_many_streams` (429) when it holds them all.
    pub fn acquire(self: &Arc<Self>, token: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open();
        let held = open.entry(token.to_owned()).or_default();
        if *held >= self.per_token {
            return Err(ApiError::new(
                ReasonCode::TooManyStreams,
                format!(
                    "this token already holds {} open event streams, the most the server allows",
                    self.per_token
                ),
            )
            .with_hint("close a stream you no longer read (or wait for one to end), then retry; the server's limit is --max-streams-per-token"));
        }
        *held += 1;
        Ok(StreamSlot {
            limits: self.clone(),
            token: token.to_owned(),
        })
    }

    /// Streams open now, over all tokens.
    pub fn total(&self) -> usize {
        self.open().values().sum()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open();
        if let Some(held) = open.get_mut(&self.token) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test")]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_at_most_its_slots_and_dropping_one_frees_it() {
        let limits = StreamLimits::new(2);
        let a = limits.acquire("t1").unwrap();
        let _b = limits.acquire("t1").unwrap();
        let refused = limits.acquire("t1").err().unwrap();
        assert_eq!(refused.0.reason_code, ReasonCode::TooManyStreams);
        assert!(refused.0.retryable && refused.0.hint.is_some());
        let _other = limits.acquire("t2").unwrap();
        assert_eq!(limits.total(), 3);
        drop(a);
        assert!(limits.acquire("t1").is_ok());
        assert_eq!(
            limits.total(),
            2,
            "the slot taken in the assert is freed again"
        );
    }
}

//! What the egress proxy reports about one request or tunnel: made while it is handled, sent as a
//! notice exactly once when it ends, however it ends (finished, failed, cut off by shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use warren_domain::{AgentEvent, EgressDecision};

use crate::GatewayNotice;

/// One egress decision, as the sandbox's `egress` event records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRecord {
    pub allowed: bool,
    pub method: String,
    pub host: String,
    pub port: u16,
    pub address: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
}

impl EgressRecord {
    pub fn to_event(&self) -> AgentEvent {
        AgentEvent::Egress {
            decision: if self.allowed {
                EgressDecision::Allowed
            } else {
                EgressDecision::Denied
            },
            method: self.method.clone(),
            host: self.host.clone(),
            port: self.port,
            address: self.address.clone(),
            rule: self.rule.clone(),
            reason: self.reason.clone(),
            status: self.status,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            duration_ms: self.duration_ms,
        }
    }
}

/// Byte counters shared by the two directions of one exchange.
#[derive(Debug, Default)]
pub(crate) struct Bytes {
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
}

/// Sends its record when dropped, with the bytes counted by then: the body or tunnel that owns
/// it decides when the exchange is over.
pub(crate) struct Pending {
    record: Option<EgressRecord>,
    started: Instant,
    bytes: Arc<Bytes>,
    notices: UnboundedSender<GatewayNotice>,
}

impl Pending {
    pub(crate) fn new(
        record: EgressRecord,
        started: Instant,
        notices: UnboundedSender<GatewayNotice>,
    ) -> Self {
        Self {
            record: Some(record),
            started,
            bytes: Arc::default(),
            notices,
        }
    }

    pub(crate) fn bytes(&self) -> Arc<Bytes> {
        Arc::clone(&self.bytes)
    }

    pub(crate) fn set_status(&mut self, status: u16) {
        if let Some(r) = &mut self.record {
            r.status = status;
        }
    }

    pub(crate) fn set_reason(&mut self, reason: String) {
        if let Some(r) = &mut self.record {
            r.reason.get_or_insert(reason);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.bytes_up = self.bytes.up.load(Ordering::Relaxed);
            record.bytes_down = self.bytes.down.load(Ordering::Relaxed);
            record.duration_ms =
                u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::debug!(?record, "egress decision");
            let _ = self.notices.send(GatewayNotice::Egress(record));
        }
    }
}

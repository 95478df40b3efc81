//! Whether the holder of a lease, a pool slot or a queue place still exists. A holder can die
//! without releasing anything, so every store asks a [`Liveness`] policy before it honours a row:
//! on one host the process table answers at once ([`ProcessLiveness`]); across hosts only the
//! lease's expiry, kept fresh by the holder's heartbeat, can ([`TtlLiveness`]).

use std::fmt::Debug;

use time::OffsetDateTime;

use crate::holder;

/// Who a lease or pool row names as its holder, as recorded when the row was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedHolder<'a> {
    pub name: &'a str,
    /// `None` for a lease written before schema version 2, which names no process.
    pub pid: Option<u32>,
    /// The pid's start time (`/proc/<pid>/stat` field 22); 0 when unknown.
    pub start_time: u64,
    /// The host the pid is meaningful on; `None` as for `pid`.
    pub host: Option<&'a str>,
}

/// A lease as a liveness policy sees it: its holder and its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedLease<'a> {
    pub holder: RecordedHolder<'a>,
    pub expires_at: OffsetDateTime,
}

/// The policy a store judges holders by. Both questions are asked inside the transaction that
/// acts on the answer, so the answer cannot go stale before the store uses it.
pub trait Liveness: Send + Sync + Debug {
    /// Whether `lease` still protects its operation at `now`. A lease past its expiry never does;
    /// a policy may also retire one earlier (its holder is known to be dead).
    fn lease_is_live(&self, lease: &RecordedLease<'_>, now: OffsetDateTime) -> bool;

    /// Whether a pool slot or queue place recorded for `entry` still counts at `now`. Pool rows
    /// carry no expiry of their own; `lease` is the sandbox's current lease, if any, for a policy
    /// that has no other evidence.
    fn pool_entry_is_live(
        &self,
        entry: &RecordedHolder<'_>,
        lease: Option<&RecordedLease<'_>>,
        now: OffsetDateTime,
    ) -> bool;
}

/// Today's policy for holders that are processes: a holder recorded on this host is alive while
/// its pid runs and started when it was recorded (so a reused pid is not mistaken for it); a
/// holder from another host cannot be checked from here, so only its lease's expiry retires it,
/// and its pool rows stay until released. A killed monitor's lease is dead at once, not after its
/// TTL. The default for the SQLite store.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessLiveness;

impl ProcessLiveness {
    fn process_alive(holder: &RecordedHolder<'_>) -> bool {
        match (holder.pid, holder.host) {
            (Some(pid), Some(host)) => holder::recorded_process_alive(pid, holder.start_time, host),
            // Names no process, so nothing here can prove it dead.
            _ => true,
        }
    }
}

impl Liveness for ProcessLiveness {
    fn lease_is_live(&self, lease: &RecordedLease<'_>, now: OffsetDateTime) -> bool {
        lease.expires_at > now && Self::process_alive(&lease.holder)
    }

    fn pool_entry_is_live(
        &self,
        entry: &RecordedHolder<'_>,
        _lease: Option<&RecordedLease<'_>>,
        _now: OffsetDateTime,
    ) -> bool {
        Self::process_alive(entry)
    }
}

/// For holders on several hosts (server replicas sharing one database): a pid means nothing
/// elsewhere, so a lease is live exactly while it has not expired, which the holder's heartbeat
/// keeps renewing. A crashed holder is noticed after its TTL.
///
/// A pool row has no expiry of its own: it counts while the sandbox's lease is live and held by
/// the holder that recorded the row. So under this policy whoever waits for or holds a pool slot
/// must hold the sandbox's lease and heartbeat it, as every supervised operation does.
#[derive(Debug, Clone, Copy, Default)]
pub struct TtlLiveness;

impl Liveness for TtlLiveness {
    fn lease_is_live(&self, lease: &RecordedLease<'_>, now: OffsetDateTime) -> bool {
        lease.expires_at > now
    }

    fn pool_entry_is_live(
        &self,
        entry: &RecordedHolder<'_>,
        lease: Option<&RecordedLease<'_>>,
        now: OffsetDateTime,
    ) -> bool {
        lease.is_some_and(|lease| lease.holder.name == entry.name && self.lease_is_live(lease, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATER: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);
    const NOW: OffsetDateTime = time::macros::datetime!(2029-01-01 00:00 UTC);
    const EARLIER: OffsetDateTime = time::macros::datetime!(2028-01-01 00:00 UTC);

    /// A pid no process has (above the kernel's `pid_max` limit of 2^22).
    const NO_SUCH_PID: u32 = 4_194_304 + 17;

    fn holder<'a>(name: &'a str, pid: u32, host: &'a str) -> RecordedHolder<'a> {
        RecordedHolder {
            name,
            pid: Some(pid),
            start_time: 0,
            host: Some(host),
        }
    }

    fn lease(holder: RecordedHolder<'_>, expires_at: OffsetDateTime) -> RecordedLease<'_> {
        RecordedLease { holder, expires_at }
    }

    #[test]
    fn process_liveness_checks_pids_here_and_only_expiry_elsewhere() {
        let here = holder::hostname();
        let me = holder("me", std::process::id(), here);
        let gone_here = holder("gone", NO_SUCH_PID, here);
        let gone_elsewhere = holder("far", NO_SUCH_PID, "another-host.invalid");
        let p = ProcessLiveness;
        assert!(p.lease_is_live(&lease(me, LATER), NOW));
        assert!(!p.lease_is_live(&lease(me, EARLIER), NOW));
        assert!(!p.lease_is_live(&lease(gone_here, LATER), NOW));
        assert!(p.lease_is_live(&lease(gone_elsewhere, LATER), NOW));
        assert!(!p.lease_is_live(&lease(gone_elsewhere, EARLIER), NOW));
        // Pool rows: the process alone, whatever the lease says.
        assert!(p.pool_entry_is_live(&me, None, NOW));
        assert!(!p.pool_entry_is_live(&gone_here, Some(&lease(gone_here, LATER)), NOW));
        assert!(p.pool_entry_is_live(&gone_elsewhere, None, NOW));
    }

    #[test]
    fn ttl_liveness_trusts_the_expiry_alone() {
        let here = holder::hostname();
        let gone_here = holder("gone", NO_SUCH_PID, here);
        let me = holder("me", std::process::id(), here);
        let t = TtlLiveness;
        assert!(t.lease_is_live(&lease(gone_here, LATER), NOW));
        assert!(!t.lease_is_live(&lease(me, EARLIER), NOW));
        // Pool rows follow their holder's lease on the sandbox.
        assert!(t.pool_entry_is_live(&gone_here, Some(&lease(gone_here, LATER)), NOW));
        assert!(!t.pool_entry_is_live(&gone_here, Some(&lease(gone_here, EARLIER)), NOW));
        assert!(!t.pool_entry_is_live(&gone_here, Some(&lease(me, LATER)), NOW));
        assert!(!t.pool_entry_is_live(&me, None, NOW));
    }
}

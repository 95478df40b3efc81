//! Timestamps are stored as fixed-width RFC 3339 UTC text so that SQL string ordering matches
//! time ordering and a human reading the database with `sqlite3` sees plain dates.

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

// Fixed microsecond precision keeps every stored value the same width, which string ordering needs.
const STORED: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time, truncated to what the store keeps so a written value reads back equal.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

pub(crate) fn format(at: OffsetDateTime) -> Result<String, time::error::Format> {
    at.to_offset(UtcOffset::UTC).format(STORED)
}

/// For messages: the stored form, which is unambiguous and sorts; `time`'s own `Display` is the
/// fallback only because formatting a valid UTC time cannot really fail.
pub(crate) fn display(at: OffsetDateTime) -> String {
    format(at).unwrap_or_else(|_| at.to_string())
}

pub(crate) fn parse(raw: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(raw, &Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_as_text() {
        let a = now();
        let text = format(a).unwrap_or_default();
        assert_eq!(parse(&text).ok(), Some(a));
        let early = format(time::macros::datetime!(2026-01-02 03:04:05 UTC)).unwrap_or_default();
        let later = format(time::macros::datetime!(2026-01-02 03:04:05.5 UTC)).unwrap_or_default();
        assert_eq!(early, "2026-01-02T03:04:05.000000Z");
        assert!(early < later);
    }
}

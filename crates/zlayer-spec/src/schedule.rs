//! Cron schedules of `rtype: cron` services: seven fields (seconds, minutes,
//! hours, day of month, month, day of week, year), evaluated in UTC.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

/// The first fire time strictly after `after_ms` (Unix milliseconds), if the
/// schedule parses and has one.
pub fn next_fire_ms(schedule: &str, after_ms: u64) -> Option<u64> {
    let schedule = cron::Schedule::from_str(schedule).ok()?;
    let after = DateTime::<Utc>::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
    let next = schedule.after(&after).next()?;
    u64::try_from(next.timestamp_millis()).ok()
}

/// `2026-11-22T03:00:00Z`, for messages.
pub fn format_utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T10:00:00Z
    const BASE: u64 = 1_795_341_600_000;

    #[test]
    fn every_two_seconds_fires_on_even_seconds() {
        assert_eq!(next_fire_ms("*/2 * * * * * *", BASE), Some(BASE + 2_000));
        assert_eq!(
            next_fire_ms("*/2 * * * * * *", BASE + 1),
            Some(BASE + 2_000)
        );
    }

    #[test]
    fn nightly_at_three_is_the_next_day_after_ten() {
        let next = next_fire_ms("0 0 3 * * * *", BASE).expect("fires");
        assert_eq!(format_utc(next), "2026-11-23T03:00:00Z");
    }

    #[test]
    fn a_past_year_never_fires_and_garbage_does_not_parse() {
        assert_eq!(next_fire_ms("0 0 3 * * * 2001", BASE), None);
        assert_eq!(next_fire_ms("every day", BASE), None);
    }
}

//! Reading what people type: prices in currency units, sale times, sale
//! rules, purchase tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a price such as `19.99`, `19.9` or `19` into cents, exactly: the
/// digits are read as integers, never through a float, so `0.29` is 29 cents
/// and not 28.999...
pub fn parse_price(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid price {s:?}: expected units with up to 2 decimals, like 19.99");
    let (units, fraction) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty() || !all_digits(units) || !all_digits(fraction) || fraction.len() > 2 {
        return Err(bad());
    }
    if s.ends_with('.') {
        return Err(bad());
    }
    let units: u64 = units.parse().map_err(|_| bad())?;
    // "9" after the point is 90 cents, "09" is 9.
    let cents = match fraction.len() {
        0 => 0,
        1 => u64::from(fraction.as_bytes()[0] - b'0') * 10,
        _ => fraction.parse::<u64>().map_err(|_| bad())?,
    };
    units
        .checked_mul(100)
        .and_then(|c| c.checked_add(cents))
        .ok_or_else(|| format!("price {s} is too large"))
}

/// Parses a goods id, which starts at 1: on the wire, RECONCILE's 0 means
/// every goods, so a typed 0 must not get that far.
pub fn parse_goods_id(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("goods ids start at 1".into()),
        Ok(id) => Ok(id),
        Err(e) => Err(format!("invalid goods id {s:?}: {e}")),
    }
}

/// Parses a purchase token from `seckill-cli token`. 0 is the protocol's "no
/// token": typed, it would silently buy without one.
pub fn parse_purchase_token(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => {
            Err("purchase tokens are never 0 (leave the option out to buy without one)".into())
        }
        Ok(token) => Ok(token),
        Err(e) => Err(format!("invalid purchase token {s:?}: {e}")),
    }
}

/// Parses a payment window such as `15m` or `90s` into milliseconds, as the
/// protocol carries it. Under a millisecond is refused rather than rounded
/// to 0, which would leave no time to pay at all.
pub fn parse_pay_window(s: &str) -> Result<u64, String> {
    let window =
        humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    match u64::try_from(window.as_millis()) {
        Ok(0) => Err("the payment window must be at least 1ms".into()),
        Ok(ms) => Ok(ms),
        Err(_) => Err(format!("payment window {s} is too long")),
    }
}

/// Shows milliseconds as a humantime duration: 900000 as `15m`.
pub fn format_duration_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// Shows cents as units with two decimals: 1999 as `19.99`.
pub fn format_price(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A sale time as typed on the command line, before it is tied to a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// An RFC3339 time in UTC, e.g. `2025-11-11T00:00:00Z`.
    At(SystemTime),
    /// `now` or `+10s`: that long from now.
    FromNow(Duration),
    /// A bare duration such as `1h`: that long after the sale's start (only
    /// meaningful for the end).
    AfterStart(Duration),
}

/// Parses `now`, `+DURATION`, `DURATION` or an RFC3339 UTC time. Durations are
/// humantime's: `90s`, `10m`, `1h 30m`, `2days`.
pub fn parse_when(s: &str) -> Result<When, String> {
    if s == "now" {
        return Ok(When::FromNow(Duration::ZERO));
    }
    if let Some(rest) = s.strip_prefix('+') {
        return humantime::parse_duration(rest)
            .map(When::FromNow)
            .map_err(|e| format!("invalid duration {rest:?}: {e}"));
    }
    if let Ok(at) = humantime::parse_rfc3339(s) {
        return Ok(When::At(at));
    }
    humantime::parse_duration(s)
        .map(When::AfterStart)
        .map_err(|_| {
            format!(
                "invalid time {s:?}: expected now, +DURATION (e.g. +10m), DURATION after the \
             start (e.g. 1h) or an RFC3339 UTC time (e.g. 2030-01-01T12:00:00Z)"
            )
        })
}

/// Ties `when` to the clock `now` and, for an end, to the `start` it may be
/// relative to.
pub fn resolve(
    when: When,
    now: SystemTime,
    start: Option<SystemTime>,
) -> Result<SystemTime, String> {
    let later = |base: SystemTime, by: Duration| {
        base.checked_add(by)
            .ok_or_else(|| "time is too far in the future".to_string())
    };
    match (when, start) {
        (When::At(at), _) => Ok(at),
        (When::FromNow(by), _) => later(now, by),
        (When::AfterStart(by), Some(start)) => later(start, by),
        (When::AfterStart(_), None) => {
            Err("a bare duration counts from the start; write +DURATION to count from now".into())
        }
    }
}

/// Unix milliseconds of `time`, as the protocol carries times.
pub fn unix_ms(time: SystemTime) -> Result<u64, String> {
    let since = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "time is before 1970".to_string())?;
    u64::try_from(since.as_millis()).map_err(|_| "time is too far in the future".to_string())
}

/// Shows Unix milliseconds as RFC3339 UTC to the second. Times beyond year
/// 9999 (which RFC3339 cannot write) are shown raw rather than failing: they
/// come from the server and must not crash the tool.
pub fn format_time(ms: u64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        return format!("{ms}ms");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_exactly_into_cents() {
        assert_eq!(parse_price("19.99"), Ok(1999));
        assert_eq!(parse_price("19.9"), Ok(1990));
        assert_eq!(parse_price("19"), Ok(1900));
        assert_eq!(parse_price("0.29"), Ok(29));
        assert_eq!(parse_price("0.05"), Ok(5));
        assert_eq!(parse_price("007.50"), Ok(750));
        assert_eq!(parse_price("184467440737095516.15"), Ok(u64::MAX));
    }

    #[test]
    fn bad_prices_are_refused() {
        for bad in [
            "", ".5", "5.", "1.999", "-1", "+1", "1,5", "1e3", "abc", " 1", "1.2.3", "١٢",
        ] {
            assert!(parse_price(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_price("184467440737095516.16").is_err());
        assert!(parse_price("99999999999999999999").is_err());
    }

    #[test]
    fn goods_ids_start_at_1() {
        assert_eq!(parse_goods_id("1"), Ok(1));
        assert_eq!(parse_goods_id("18446744073709551615"), Ok(u64::MAX));
        for bad in ["0", "-1", "", "x", "18446744073709551616"] {
            assert!(parse_goods_id(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn purchase_tokens_are_never_0() {
        assert_eq!(parse_purchase_token("77"), Ok(77));
        assert_eq!(parse_purchase_token("18446744073709551615"), Ok(u64::MAX));
        for bad in ["0", "-1", "", "0x4d", "18446744073709551616"] {
            assert!(parse_purchase_token(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn pay_windows_are_read_into_whole_milliseconds() {
        assert_eq!(parse_pay_window("15m"), Ok(900_000));
        assert_eq!(parse_pay_window("1m 30s"), Ok(90_000));
        assert_eq!(parse_pay_window("1ms"), Ok(1));
        for bad in ["", "0s", "500us", "soon", "-1m"] {
            assert!(parse_pay_window(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(format_duration_ms(900_000), "15m");
        assert_eq!(format_duration_ms(90_000), "1m 30s");
    }

    #[test]
    fn prices_are_shown_with_two_decimals() {
        assert_eq!(format_price(1999), "19.99");
        assert_eq!(format_price(5), "0.05");
        assert_eq!(format_price(1900), "19.00");
    }

    #[test]
    fn times_parse_in_every_form() {
        assert_eq!(parse_when("now"), Ok(When::FromNow(Duration::ZERO)));
        assert_eq!(
            parse_when("+10s"),
            Ok(When::FromNow(Duration::from_secs(10)))
        );
        assert_eq!(
            parse_when("1h 30m"),
            Ok(When::AfterStart(Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_when("2023-11-14T22:13:20Z"),
            Ok(When::At(UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
        );
        for bad in [
            "",
            "+",
            "+soon",
            "tomorrow",
            "2023-11-14 22:13",
            "2023-11-14T22:13:20+08:00",
        ] {
            assert!(parse_when(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn times_resolve_against_now_and_start() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let start = resolve(When::FromNow(Duration::from_secs(10)), now, None).unwrap();
        assert_eq!(unix_ms(start), Ok(1_010_000));
        let end = resolve(
            When::AfterStart(Duration::from_secs(3600)),
            now,
            Some(start),
        );
        assert_eq!(end.map(unix_ms), Ok(Ok(4_610_000)));
        let plus = resolve(When::FromNow(Duration::from_secs(3600)), now, Some(start));
        assert_eq!(plus.map(unix_ms), Ok(Ok(4_600_000)));
        assert!(resolve(When::AfterStart(Duration::from_secs(1)), now, None).is_err());
    }

    #[test]
    fn times_are_shown_as_rfc3339_utc() {
        assert_eq!(format_time(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(u64::MAX), format!("{}ms", u64::MAX));
    }
}

//! The configuration's flags, each with its variable, and what `Debug`
//! hides. Loading (the layers, the file, the secrets' files) is tested in
//! tests/config.rs, a test binary of its own: those tests set `SECKILL_*`
//! variables, which no other test's thread may read meanwhile.

use clap::Parser;

use super::layers::command;
use super::{Config, Secret};

#[test]
fn debug_hides_the_token() {
    let c = Config::parse_from(["seckill-server", "--admin-token", "hunter2"]);
    assert_eq!(c.admin_token.as_ref().map(Secret::expose), Some("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn a_secret_matches_itself_only() {
    let secret: Secret = "hunter2".parse().unwrap();
    assert!(secret.matches("hunter2"));
    for guess in ["", "hunter", "hunter22", "Hunter2", "hunter3"] {
        assert!(!secret.matches(guess), "{guess:?}");
    }
}

/// The stores' URLs are used as given, and `Debug` hides their passwords
/// (a `{:?}` of the configuration must log none).
#[test]
fn debug_hides_the_stores_passwords() {
    let c = Config::parse_from([
        "seckill-server",
        "--mysql",
        "mysql://u:pw-mysql@db/seckill,mysql://u:pw-mysql@db2/seckill",
        "--redis",
        "redis://:pw-redis@cache:6379",
    ]);
    assert_eq!(
        c.mysql.as_deref(),
        Some("mysql://u:pw-mysql@db/seckill,mysql://u:pw-mysql@db2/seckill")
    );
    let shown = format!("{c:?}");
    assert!(!shown.contains("pw-"), "{shown}");
    assert!(
        shown.contains("db2/seckill") && shown.contains("cache:6379"),
        "{shown}"
    );
    let c = Config::parse_from(["seckill-server", "--redis-cluster", ":pw-seed@a:1,b:2"]);
    let shown = format!("{c:?}");
    assert!(!shown.contains("pw-") && shown.contains("b:2"), "{shown}");
}

/// A timeout or interval too long for a clock is refused at start, not a
/// panic in the thread that first adds it to the time (at shutdown, say).
#[test]
fn timers_past_what_a_clock_holds_are_refused() {
    for flag in [
        "--frame-timeout",
        "--idle-timeout",
        "--expiry-interval",
        "--shutdown-grace",
        "--block-for",
    ] {
        let c = Config::parse_from(["seckill-server", flag, "500000000000years"]);
        let err = c.check().unwrap_err();
        assert!(err.contains(flag), "{err}");
        let c = Config::parse_from(["seckill-server", flag, "30days"]);
        assert_eq!(c.check(), Ok(()), "{flag}");
    }
}

/// Sizes that allocate at start are refused past what a server could
/// allocate, rather than abort it (or wrap around, for a product of them).
#[test]
fn sizes_allocated_at_start_are_bounded() {
    for (flag, too_big) in [
        ("--job-queue", "10000000000"),
        ("--batch-max", "18446744073709551615"),
    ] {
        for refused in ["0", too_big] {
            let c = Config::parse_from(["seckill-server", flag, refused]);
            let err = c.check().unwrap_err();
            assert!(err.contains(flag), "{err}");
        }
        let c = Config::parse_from(["seckill-server", flag, "1000"]);
        assert_eq!(c.check(), Ok(()), "{flag}");
    }
}

#[test]
fn every_flag_has_its_seckill_variable() {
    let cmd = command();
    let mut count = 0;
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let want = format!("SECKILL_{}", id.to_ascii_uppercase());
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(want.as_str()),
            "--{id}"
        );
        count += 1;
    }
    assert!(count > 30, "only {count} flags seen");
}

/// A frame limit that would let one connection's read buffer grow toward
/// 4 GiB, or refuse requests every client sends, is no setting.
#[test]
fn the_frame_limit_is_bounded() {
    let parse = |v: &str| Config::try_parse_from(["seckill-server", "--max-frame", v]);
    assert!(parse("4294967295").is_err());
    assert!(parse("16777217").is_err());
    assert!(parse("1023").is_err());
    assert_eq!(parse("16777216").unwrap().max_frame, 16 << 20);
    assert_eq!(parse("1024").unwrap().max_frame, 1024);
}

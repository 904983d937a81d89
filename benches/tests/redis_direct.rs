//! The redis-direct baselines against the real Redis (`SECKILL_TEST_REDIS`,
//! default redis://127.0.0.1:6379), no server: a tiny flash crowd straight
//! into the reserve script must sell exactly the stock, a short sustained
//! run must sell a unit per BUY, and both verify and leave no key behind.

use seckill_bench::verify::Verification;
use seckill_bench::{Output, Report};

mod common;
use common::run_bench;

#[test]
fn a_tiny_flash_crowd_straight_into_redis_sells_the_stock_and_cleans_up() {
    let url = redis_url();
    // A prefix of this run's own, so that parallel runs never share keys.
    let prefix = format!("seckill-bench-test:{}:", std::process::id());
    let (users, attempts, stock) = (300u64, 700u64, 50u64);
    let output = run_bench(&[
        "flash-crowd",
        "--target",
        "redis-direct",
        "--redis",
        &url,
        "--redis-prefix",
        &prefix,
        "--connections",
        "8",
        "--threads",
        "2",
        "--pipeline",
        "4",
        "--users",
        &users.to_string(),
        "--attempts",
        &attempts.to_string(),
        "--stock",
        &stock.to_string(),
    ]);
    let (report, v, text) = verified_redis_direct(&output);

    let o = &report.outcomes;
    assert_eq!(o.connection_failures, 0, "{text}");
    assert_eq!(o.lost, 0, "{text}");
    assert_eq!(report.sent, attempts);
    // More users than units: the stock sells out, one unit a user, and the
    // winners' retries come back already bought, with their order.
    assert_eq!(o.ok, stock, "{text}");
    assert_eq!((v.total, v.remaining), (stock as u32, 0));
    assert_eq!(v.holders, stock);
    assert!(o.already_bought > 0, "{text}");
    assert!(o.sold_out > 0, "{text}");
    assert_eq!(o.other_errors, 0, "{text}");

    assert_no_keys_left(&url, &prefix);
}

#[test]
fn a_short_sustained_run_straight_into_redis_sells_a_unit_per_buy() {
    let url = redis_url();
    let prefix = format!("seckill-bench-test-sustained:{}:", std::process::id());
    let output = run_bench(&[
        "sustained",
        "--target",
        "redis-direct",
        "--redis",
        &url,
        "--redis-prefix",
        &prefix,
        "--connections",
        "4",
        "--threads",
        "1",
        "--pipeline",
        "4",
        "--duration",
        "500ms",
    ]);
    let (report, v, text) = verified_redis_direct(&output);
    let o = &report.outcomes;
    assert_eq!(
        (o.connection_failures, o.lost, o.other_errors),
        (0, 0, 0),
        "{text}"
    );
    // Every BUY is a new user's on a goods that never sells out: each one
    // sold a unit, and Redis holds exactly those buyers.
    assert!(o.ok > 0, "{text}");
    assert_eq!(o.ok, report.answered, "{text}");
    assert_eq!((o.sold_out, o.already_bought), (0, 0), "{text}");
    assert_eq!(v.sold, o.ok, "{text}");
    assert_eq!(v.holders, o.ok, "{text}");
    assert_no_keys_left(&url, &prefix);
}

fn redis_url() -> String {
    std::env::var("SECKILL_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The one report of a redis-direct run, its verification (asserted to
/// have passed) and the report's text for failure messages.
fn verified_redis_direct(output: &Output) -> (&Report, &Verification, String) {
    let Output::Single(report) = output else {
        panic!("one report expected")
    };
    let text = output.text();
    assert_eq!(report.target, "redis-direct");
    let v = report.verification.as_ref().expect("a verification");
    assert!(v.passed, "{text}");
    (report, v, text)
}

/// The run deleted its goods' keys.
fn assert_no_keys_left(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut con = client.get_connection().expect("redis");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut con)
        .expect("KEYS");
    assert_eq!(left, Vec::<String>::new());
}

//! A tiny flash crowd through the bench's library API against the real
//! server binary, on an ephemeral port with a SQLite file of its own: the
//! verification must pass and the outcomes must add up.

use clap::Parser;
use seckill_bench::{Cli, Output};

mod common;
use common::{Server, TOKEN};

#[test]
fn a_tiny_flash_crowd_sells_exactly_the_stock_and_verifies() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();

    let (users, attempts, stock) = (300u64, 700u64, 50u64);
    let cli = Cli::try_parse_from([
        "seckill-bench",
        "flash-crowd",
        "--addr",
        &addr,
        "--token",
        TOKEN,
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
    ])
    .expect("flags");
    let output = seckill_bench::run(&cli).expect("the run");
    let Output::Single(report) = &output else {
        panic!("one report expected")
    };
    let text = output.text();
    let v = report.verification.as_ref().expect("a verification");
    assert!(v.passed, "{text}");
    assert!(output.passed());

    let o = &report.outcomes;
    assert_eq!(o.connection_failures, 0, "{text}");
    assert_eq!(o.lost, 0, "{text}");
    assert_eq!(report.connected, 8);
    assert_eq!(report.sent, attempts);
    assert_eq!(
        o.ok + o.sold_out + o.already_bought + o.busy + o.other_errors,
        attempts,
        "{text}"
    );
    assert_eq!(o.answered(), attempts);
    // Every user tries at least once and there are more users than units:
    // the stock sells out, each unit to one user, and the winners' retries
    // come back already_bought.
    assert_eq!(o.ok, stock, "{text}");
    assert_eq!(v.sold, stock);
    assert_eq!((v.total, v.remaining), (stock as u32, 0));
    assert_eq!(v.holders, stock);
    assert_eq!(v.orders_checked, stock);
    assert!(o.already_bought > 0, "{text}");
    assert!(o.sold_out > 0, "{text}");
    assert!(report.throughput_rps > 0.0);
    assert!(report.latency.p50_us > 0 && report.latency.max_us >= report.latency.p99_us);

    let json = output.json();
    assert_eq!(json["verification"]["passed"], true);
    assert_eq!(json["outcomes"]["ok"], stock);

    server.stop();
}

//! A small lifecycle run through the bench's library API against the real
//! server binary, with a SQLite file of its own and a fast expiry sweep:
//! every order must end paid or cancelled, every unit paid or back on sale,
//! and the returned units must sell in the second round.

use seckill_bench::Output;

mod common;
use common::{run_bench, Server, TOKEN};

#[test]
fn orders_end_paid_or_cancelled_and_the_returned_units_sell_again() {
    let server = Server::start(&["--expiry-interval", "100ms"]);
    let addr = server.addr.clone();

    let (users, stock) = (2000u64, 500u64);
    let output = run_bench(&[
        "lifecycle",
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
        "--stock",
        &stock.to_string(),
        "--pay-window",
        "1s",
        "--expiry-interval",
        "100ms",
        "--json",
    ]);
    let Output::Lifecycle(report) = &output else {
        panic!("a lifecycle report expected")
    };
    let text = output.text();
    let v = &report.verification;
    assert!(v.passed, "{text}");
    assert!(output.passed());

    // Round one: every user BUYs once and the stock sells out.
    let buy = &report.buy.outcomes;
    assert_eq!(report.buy.sent, users, "{text}");
    assert_eq!((buy.lost, buy.connection_failures), (0, 0), "{text}");
    assert_eq!(buy.ok, stock, "{text}");
    assert_eq!(buy.sold_out, users - stock, "{text}");

    // Every order got its PAY or CANCEL but the abandoned ones, answered.
    let t = &report.orders;
    assert_eq!(t.orders, stock);
    assert_eq!(t.to_pay + t.to_cancel + t.never_paid, stock);
    assert!(
        t.to_pay > 0 && t.to_cancel > 0 && t.never_paid > 0,
        "{text}"
    );
    assert!(t.to_pay_late > 0, "{text}");
    // Each once, and again if answered busy.
    let settle = &report.settle.outcomes;
    assert_eq!(
        report.settle.sent,
        t.to_pay + t.to_cancel + settle.busy,
        "{text}"
    );
    assert_eq!(settle.lost, 0, "{text}");
    assert_eq!(
        t.paid + t.pay_refused + t.cancelled + t.unsettled,
        t.to_pay + t.to_cancel
    );
    assert_eq!(t.cancelled, t.to_cancel, "{text}");
    assert_eq!(t.cancel_refused, 0);
    for request in ["pay", "cancel"] {
        let l = &report.settle.latency_by_request[request];
        assert!(l.p50_us > 0 && l.max_us >= l.p99_us, "{request}: {l:?}");
    }

    // Every unit is paid or back on sale.
    assert_eq!(v.orders_listed, stock);
    assert_eq!(v.users_listed, users);
    assert_eq!(v.still_created, 0);
    assert_eq!(v.paid + v.cancelled, stock);
    assert_eq!(v.paid + u64::from(v.remaining), stock);
    assert!(v.paid >= t.paid && v.cancelled >= t.to_cancel + t.never_paid);

    // Round two sells every unit that came back.
    let rebuy = v.rebuy.as_ref().expect("a second round");
    assert_eq!(rebuy.returned, v.remaining);
    assert_eq!(rebuy.buyers, users - v.paid);
    assert!(rebuy.sold >= u64::from(rebuy.returned), "{text}");
    assert!(rebuy.sold_to_returning > 0, "{text}");
    // Unless the round outlasted the window and some of its own orders
    // expired, it sold exactly what came back.
    if rebuy.exact {
        assert_eq!(rebuy.sold, u64::from(rebuy.returned), "{text}");
        assert_eq!(rebuy.remaining_after, 0, "{text}");
    }

    let json = output.json();
    assert_eq!(json["scenario"], "lifecycle");
    assert_eq!(json["verification"]["passed"], true);
    assert_eq!(json["orders"]["orders"], stock);
    assert!(json["settle"]["latency_by_request"]["pay"]["p99_us"].is_number());
    assert!(json["rebuy"]["outcomes"]["ok"].is_number());

    server.stop();
}

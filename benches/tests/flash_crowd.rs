//! A tiny flash crowd through the bench's library API against the real
//! server binary, on an ephemeral port with a SQLite file of its own: the
//! verification must pass and the outcomes must add up.

use seckill_bench::Output;

mod common;
use common::{run_bench, Server, SharedStores, TOKEN};

#[test]
fn a_tiny_flash_crowd_sells_exactly_the_stock_and_verifies() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();

    let (users, attempts, stock) = (300u64, 700u64, 50u64);
    let output = run_bench(&[
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
    ]);
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

/// A list of servers, here one server named twice: the connections are
/// spread over the entries, each entry's share is reported, and the
/// verification goes through every entry (what is left as each shows it,
/// each order at the entry that acknowledged it).
#[test]
fn a_flash_crowd_over_a_list_of_servers_is_spread_and_verified_over_each() {
    let server = Server::start(&[]);
    let list = format!("{},{}", server.addr, server.addr);
    let stock = 30u64;
    let output = run_bench(&[
        "flash-crowd",
        "--addr",
        &list,
        "--token",
        TOKEN,
        "--connections",
        "5",
        "--threads",
        "2",
        "--users",
        "100",
        "--attempts",
        "300",
        "--stock",
        &stock.to_string(),
    ]);
    let Output::Single(report) = &output else {
        panic!("one report expected")
    };
    let text = output.text();
    let v = report.verification.as_ref().expect("a verification");
    assert!(v.passed, "{text}");
    assert_eq!(report.addr, list);
    // 5 connections, round robin: 3 to the first entry, 2 to the second.
    let shares: Vec<(usize, usize)> = report
        .servers
        .iter()
        .map(|s| (s.connections, s.connected))
        .collect();
    assert_eq!(shares, [(3, 3), (2, 2)], "{text}");
    assert!(report.servers.iter().all(|s| s.answered > 0), "{text}");
    let answered: u64 = report.servers.iter().map(|s| s.answered).sum();
    assert_eq!(answered, report.answered);
    assert!(text.contains("  servers: "), "{text}");
    assert_eq!(report.outcomes.ok, stock, "{text}");
    assert_eq!(v.orders_checked, stock);
    assert_eq!(output.json()["servers"].as_array().map(Vec::len), Some(2));

    server.stop();
}

/// Two servers on one Redis + MySQL pair, the goods added through the first
/// before the second starts (it loads the goods then): the connections are
/// spread over both, and the verification covers both (what is left, as
/// both show it; each order at the server that acknowledged it; MySQL).
///
#[test]
fn a_flash_crowd_through_two_servers_is_spread_and_verified_over_both() {
    let stores = SharedStores::new();
    let node = |id: &str| {
        let mut flags = stores.args();
        // Each leases a node id of its own.
        let _ = id;
        flags.extend(["--expiry-interval", "100ms"].map(String::from));
        Server::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let a = node("1");
    let stock = 40u32;
    let goods = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        seckill_client::Client::builder(a.addr.as_str())
            .token(TOKEN)
            .connect()
            .expect("admin")
            .add_goods(seckill_client::NewGoods {
                name: "two servers".into(),
                price_cents: 100,
                stock,
                start_ms: now - 60_000,
                end_ms: now + 3_600_000,
                rules: seckill_client::SaleRules::default(),
                buckets: 1,
            })
            .expect("add goods")
            .id
    };
    let b = node("2");
    let addrs = format!("{},{}", a.addr, b.addr);

    let output = run_bench(&[
        "flash-crowd",
        "--addr",
        &addrs,
        "--goods",
        &goods.to_string(),
        "--mysql",
        &stores.mysql_url,
        "--connections",
        "6",
        "--threads",
        "2",
        "--users",
        "200",
        "--attempts",
        "400",
    ]);
    let Output::Single(report) = &output else {
        panic!("one report expected")
    };
    let text = output.text();
    let v = report.verification.as_ref().expect("a verification");
    assert!(v.passed, "{text}");
    for share in &report.servers {
        assert_eq!((share.connections, share.connected), (3, 3), "{text}");
        assert!(share.answered > 0, "{text}");
    }
    assert_eq!(v.total, stock, "{text}");
    assert_eq!(v.orders_checked, report.outcomes.ok, "{text}");
    assert_eq!(
        v.store.as_ref().map(|s| s.live_orders),
        Some(report.outcomes.ok),
        "{text}"
    );

    a.stop();
    b.stop();
}

/// The sweep over real TCP: two rates, two rounds, each run a sale of its
/// own (a new goods) that sells its stock and verifies; the summary has
/// each rate once with both rounds' p99s, and the plot is drawn.
#[test]
fn a_sweep_runs_a_verified_sale_per_rate_and_round() {
    let server = Server::start(&[]);
    let addr = server.addr.clone();
    let (attempts, stock) = (400u64, 30u64);
    let output = run_bench(&[
        "sweep",
        "--addr",
        &addr,
        "--token",
        TOKEN,
        "--connections",
        "8",
        "--threads",
        "2",
        "--rates",
        "2000,4000",
        "--rounds",
        "2",
        "--p99-target",
        "10s",
        "--users",
        "200",
        "--attempts",
        &attempts.to_string(),
        "--stock",
        &stock.to_string(),
    ]);
    let text = output.text();
    let Output::Sweep(sweep) = &output else {
        panic!("a sweep expected: {text}")
    };
    assert!(output.passed(), "{text}");
    assert_eq!(sweep.runs.len(), 4, "{text}");
    let rates: Vec<f64> = sweep.runs.iter().filter_map(|r| r.pace.rate).collect();
    assert_eq!(rates, vec![2000.0, 4000.0, 2000.0, 4000.0]);
    let mut goods = Vec::new();
    for r in &sweep.runs {
        assert_eq!(r.outcomes.ok, stock, "{text}");
        assert_eq!(r.outcomes.answered(), attempts, "{text}");
        assert_eq!(r.pace.latency_from, "schedule");
        goods.push(r.goods.as_ref().expect("its goods").id);
    }
    goods.sort_unstable();
    goods.dedup();
    assert_eq!(goods.len(), 4, "a goods per run: {goods:?}");
    assert_eq!(sweep.rates.len(), 2);
    assert!(sweep.rates.iter().all(|r| r.p99_rounds_us.len() == 2));
    // A 10 s target: both rates are within it, so the higher is named.
    assert_eq!(sweep.highest_within_target, Some(4000.0), "{text}");
    assert!(text.contains("by rate, over the rounds"), "{text}");

    let svg = std::env::temp_dir().join(format!("sweep-test-{}.svg", std::process::id()));
    sweep.draw(&svg).expect("the plot");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_file(&svg).unwrap();
    server.stop();
}

/// Sustained selling against the server is verified as the flash crowd is:
/// every `ok` a unit sold, to its own user, each order shown by
/// ORDER_STATUS.
#[test]
fn a_short_sustained_run_against_the_server_verifies_every_order() {
    let server = Server::start(&[]);
    let output = run_bench(&[
        "sustained",
        "--addr",
        &server.addr,
        "--token",
        TOKEN,
        "--connections",
        "8",
        "--threads",
        "2",
        "--duration",
        "1s",
    ]);
    let text = output.text();
    let Output::Single(report) = &output else {
        panic!("one report expected: {text}")
    };
    let o = &report.outcomes;
    assert!(o.ok > 0, "{text}");
    assert_eq!(o.ok, o.answered(), "every BUY a new user's order: {text}");
    let v = report.verification.as_ref().expect("a verification");
    assert!(v.passed, "{text}");
    assert_eq!(v.sold, o.ok, "{text}");
    assert_eq!(v.holders, o.ok, "{text}");
    assert_eq!(v.orders_checked, o.ok, "{text}");
    server.stop();
}

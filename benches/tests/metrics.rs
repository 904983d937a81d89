//! `--metrics`: tiny flash crowds against the real server with its metrics
//! endpoint (one on the embedded store, two on Redis and MySQL), whose own
//! count of the run must be exactly what the bench sent, with its latency
//! percentiles beside the bench's.

use seckill_bench::Output;

mod common;
use common::{run_bench, Server, SharedStores, TOKEN};

#[test]
fn the_server_counts_what_the_bench_sent() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics.clone().expect("a metrics address");
    let (connections, attempts) = (8u64, 700u64);
    let output = run_bench(&[
        "flash-crowd",
        "--addr",
        &server.addr,
        "--token",
        TOKEN,
        "--connections",
        &connections.to_string(),
        "--threads",
        "2",
        "--pipeline",
        "4",
        "--users",
        "300",
        "--attempts",
        &attempts.to_string(),
        "--stock",
        "50",
        "--metrics",
        &metrics,
    ]);
    let Output::Single(report) = &output else {
        panic!("one report expected")
    };
    let text = output.text();
    assert!(output.passed(), "{text}");
    assert_eq!((report.sent, report.outcomes.lost), (attempts, 0), "{text}");

    let m = report.server_metrics.as_ref().expect("server metrics");
    assert_eq!(m.error, None);
    assert_eq!(m.urls, [format!("http://{metrics}/metrics")]);
    // Every BUY the bench sent, and the HELLO of each of its connections:
    // the ADD_GOODS before and the verification after are outside.
    assert_eq!(m.requests_by_kind.get("buy"), Some(&attempts), "{text}");
    assert_eq!(
        m.requests_by_kind.get("hello"),
        Some(&connections),
        "{text}"
    );
    assert_eq!(m.requests, attempts + connections, "{text}");
    let buy = m.latency_buy.expect("the BUYs' latency");
    assert_eq!(buy.count, attempts);
    assert!(buy.p50_us > 0, "{text}");
    assert!(buy.p50_us <= buy.p90_us && buy.p90_us <= buy.p99_us && buy.p99_us <= buy.p999_us);
    assert_eq!(m.latency.map(|l| l.count), Some(attempts + connections));
    assert!(
        text.contains(&format!(
            "  server metrics: {} requests answered (buy {attempts}, hello {connections})",
            attempts + connections
        )),
        "{text}"
    );
    assert!(text.contains("  server latency: p50 "), "{text}");

    let json = output.json();
    assert_eq!(json["server_metrics"]["requests_by_kind"]["buy"], attempts);
    assert_eq!(json["server_metrics"]["latency_buy"]["p99_us"], buy.p99_us);
    server.stop();
}

/// Two servers on one Redis + MySQL pair, each scraped: their counts add
/// up to what the bench sent through both.
#[test]
fn two_servers_count_what_the_bench_sent_through_both() {
    let stores = SharedStores::new();
    let node = || {
        let mut flags = stores.args();
        flags.extend(["--metrics-listen", "127.0.0.1:0"].map(String::from));
        Server::start(&flags.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let a = node();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Added before the second server starts: it loads the goods then.
    let goods = seckill_client::Client::builder(a.addr.as_str())
        .token(TOKEN)
        .connect()
        .expect("admin")
        .add_goods(seckill_client::NewGoods {
            name: "two servers, two endpoints".into(),
            price_cents: 100,
            stock: 40,
            start_ms: now - 60_000,
            end_ms: now + 3_600_000,
            rules: seckill_client::SaleRules::default(),
            buckets: 1,
        })
        .expect("add goods")
        .id;
    let b = node();
    let addrs = format!("{},{}", a.addr, b.addr);
    let endpoints = [&a, &b].map(|s| s.metrics.clone().expect("a metrics address"));
    let attempts = 400u64;
    let output = run_bench(&[
        "flash-crowd",
        "--addr",
        &addrs,
        "--goods",
        &goods.to_string(),
        "--connections",
        "6",
        "--threads",
        "2",
        "--users",
        "200",
        "--attempts",
        &attempts.to_string(),
        "--metrics",
        &endpoints.join(","),
    ]);
    let Output::Single(report) = &output else {
        panic!("one report expected")
    };
    let text = output.text();
    assert!(output.passed(), "{text}");
    assert_eq!((report.sent, report.outcomes.lost), (attempts, 0), "{text}");
    let m = report.server_metrics.as_ref().expect("server metrics");
    assert_eq!(m.urls.len(), 2);
    assert_eq!(m.requests_by_kind.get("buy"), Some(&attempts), "{text}");
    assert_eq!(m.requests_by_kind.get("hello"), Some(&6), "{text}");
    assert_eq!(m.latency_buy.map(|l| l.count), Some(attempts), "{text}");
    a.stop();
    b.stop();
}

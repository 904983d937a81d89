//! The parsing and the arithmetic on pages written to the metrics contract,
//! with the expected numbers worked out by hand from the buckets.

use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

/// The request latency buckets of the contract, without `+Inf`.
const BOUNDS: [&str; 17] = [
    "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
];

/// The bucket lines of one series of the request latency histogram, as
/// prometheus-client writes them (`le` first): `counts` are cumulative, the
/// last one the `+Inf` bucket's.
fn series(kind: &str, outcome: &str, counts: [u64; 18]) -> String {
    let mut out = String::new();
    let labels = format!("kind=\"{kind}\",outcome=\"{outcome}\"");
    out.push_str(&format!(
        "seckill_request_duration_seconds_sum{{{labels}}} 0.5\n\
         seckill_request_duration_seconds_count{{{labels}}} {}\n",
        counts[17]
    ));
    for (le, count) in BOUNDS.iter().chain(&["+Inf"]).zip(counts) {
        out.push_str(&format!(
            "seckill_request_duration_seconds_bucket{{le=\"{le}\",{labels}}} {count}\n"
        ));
    }
    out
}

/// A page: BUYs answered `ok` and `sold_out`, PINGs, refusals, gauges and
/// two goods, in OpenMetrics as prometheus-client encodes it.
fn page(ok: [u64; 18], sold_out: [u64; 18], pings: u64, remaining: u64) -> String {
    format!(
        "# HELP seckill_build_info Build.\n\
         # TYPE seckill_build_info gauge\n\
         seckill_build_info{{version=\"0.1.0\",commit=\"e175a33\"}} 1\n\
         # HELP seckill_requests Requests answered.\n\
         # TYPE seckill_requests counter\n\
         seckill_requests_total{{kind=\"buy\",outcome=\"ok\"}} {}\n\
         seckill_requests_total{{kind=\"buy\",outcome=\"sold_out\"}} {}\n\
         seckill_requests_total{{kind=\"ping\",outcome=\"ok\"}} {pings}\n\
         # HELP seckill_request_duration_seconds Decode to reply.\n\
         # TYPE seckill_request_duration_seconds histogram\n\
         {}{}{}\
         # TYPE seckill_refusals counter\n\
         seckill_refusals_total{{reason=\"busy\"}} 4\n\
         seckill_refusals_total{{reason=\"rate_limited\"}} 3\n\
         # TYPE seckill_connections gauge\n\
         seckill_connections 12\n\
         # TYPE seckill_store_up gauge\n\
         seckill_store_up{{store=\"stock\"}} 1\n\
         seckill_store_up{{store=\"orders\"}} 0\n\
         # TYPE seckill_goods_stock gauge\n\
         seckill_goods_stock{{goods_id=\"1\"}} 200\n\
         seckill_goods_stock{{goods_id=\"2\"}} 5\n\
         # TYPE seckill_goods_remaining gauge\n\
         seckill_goods_remaining{{goods_id=\"1\"}} {remaining}\n\
         seckill_goods_remaining{{goods_id=\"2\"}} 5\n\
         # EOF\n",
        ok[17],
        sold_out[17],
        series("buy", "ok", ok),
        series("buy", "sold_out", sold_out),
        series("ping", "ok", [pings; 18]),
    )
}

fn before() -> Snapshot {
    let ok = [
        0, 0, 2, 6, 8, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    ];
    let sold_out = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    Snapshot::parse(&page(ok, sold_out, 3, 190))
}

fn after() -> Snapshot {
    let ok = [
        0, 0, 2, 16, 48, 90, 110, 110, 110, 110, 110, 110, 110, 110, 110, 110, 110, 110,
    ];
    let sold_out = [
        0, 1, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51,
    ];
    Snapshot::parse(&page(ok, sold_out, 5, 90))
}

fn close(got: Option<f64>, want: f64) {
    let got = got.expect("a value");
    assert!((got - want).abs() < 1e-12, "{got} != {want}");
}

#[test]
fn counters_and_gauges_are_read_by_name_and_labels() {
    let s = after();
    close(s.value("seckill_requests_total", &[]), 166.0);
    close(s.value("seckill_requests_total", &[("kind", "buy")]), 161.0);
    close(
        s.value(
            "seckill_requests_total",
            &[("kind", "buy"), ("outcome", "ok")],
        ),
        110.0,
    );
    assert_eq!(s.value("seckill_requests_total", &[("kind", "pay")]), None);
    assert_eq!(s.value("seckill_nothing", &[]), None);
    close(s.value("seckill_refusals_total", &[]), 7.0);
    close(s.value("seckill_connections", &[]), 12.0);
    close(s.value("seckill_store_up", &[("store", "orders")]), 0.0);
    let stock = s.by_label("seckill_goods_stock", "goods_id");
    let remaining = s.by_label("seckill_goods_remaining", "goods_id");
    assert_eq!(stock.keys().collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!((stock["1"], remaining["1"]), (200.0, 90.0));
    assert_eq!((stock["2"], remaining["2"]), (5.0, 5.0));
    let kinds = s.by_label("seckill_requests_total", "kind");
    assert_eq!((kinds["buy"], kinds["ping"]), (161.0, 5.0));
}

#[test]
fn counter_increases_are_per_series() {
    let (b, a) = (before(), after());
    // BUY ok 10 → 110, sold_out 1 → 51, PING 3 → 5.
    assert_eq!(a.increase_since(&b, "seckill_requests_total", &[]), 152.0);
    let buy = [("kind", "buy")];
    assert_eq!(a.increase_since(&b, "seckill_requests_total", &buy), 150.0);
    // A series the first scrape lacks counts from 0; one that went back
    // (a restart) counts what it shows.
    assert_eq!(
        a.increase_since(&Snapshot::parse(""), "seckill_requests_total", &buy),
        161.0
    );
    assert_eq!(b.increase_since(&a, "seckill_requests_total", &buy), 11.0);
    let none = a.increase_since(&b, "seckill_requests_total", &[("kind", "pay")]);
    assert!(none == 0.0 && none.is_sign_positive(), "{none}");
    assert_eq!(increase(5.0, 8.0), 3.0);
    assert_eq!(increase(8.0, 5.0), 5.0);
}

#[test]
fn histograms_merge_their_series_and_take_the_interval() {
    let (b, a) = (before(), after());
    let buy = [("kind", "buy")];
    let after_buy = a.histogram(REQUEST_DURATION, &buy).expect("buy latency");
    assert_eq!(after_buy.buckets().len(), 18);
    assert_eq!(after_buy.count(), 161.0);
    let delta = after_buy.since(&b.histogram(REQUEST_DURATION, &buy).expect("before"));
    // ok: 0 0 0 10 40 80 100 ...; sold_out: 0 0 50 50 ...
    let counts: Vec<f64> = delta.buckets().iter().map(|b| b.count).collect();
    assert_eq!(
        &counts[..8],
        [0.0, 0.0, 50.0, 60.0, 90.0, 130.0, 150.0, 150.0]
    );
    assert_eq!(delta.count(), 150.0);
    assert_eq!(delta.buckets()[17].le, f64::INFINITY);

    // Ranks of 150 observations: p50 is the 75th, in (0.0005, 0.001] which
    // holds 60..90: 0.0005 + 0.0005 × 15/30.
    close(delta.quantile(0.5), 0.00075);
    // p20, the 30th, in (0.0001, 0.00025] holding 0..50: 0.0001 + 0.00015 × 30/50.
    close(delta.quantile(0.2), 0.00019);
    // p90 (135th), p99 (148.5th), p99.9 (149.85th): in (0.0025, 0.005]
    // holding 130..150: 0.0025 + 0.0025 × 5/20, × 18.5/20, × 19.85/20.
    close(delta.quantile(0.9), 0.003125);
    close(delta.quantile(0.99), 0.0048125);
    close(delta.quantile(0.999), 0.00498125);
    close(delta.quantile(1.0), 0.005);

    // The ok BUYs alone: 100, p50 the 50th, in (0.001, 0.0025] holding
    // 40..80: 0.001 + 0.0015 × 10/40.
    let ok = [("kind", "buy"), ("outcome", "ok")];
    let ok_delta = a
        .histogram(REQUEST_DURATION, &ok)
        .expect("ok")
        .since(&b.histogram(REQUEST_DURATION, &ok).expect("ok before"));
    assert_eq!(ok_delta.count(), 100.0);
    close(ok_delta.quantile(0.5), 0.001375);

    // A restart in between: the later scrape is all new.
    let back = b
        .histogram(REQUEST_DURATION, &buy)
        .expect("buy")
        .since(&after_buy);
    assert_eq!(back.count(), 11.0);
    assert_eq!(a.histogram(REQUEST_DURATION, &[("kind", "pay")]), None);
}

#[test]
fn quantiles_follow_histogram_quantile_at_the_edges() {
    let h = |pairs: &[(f64, f64)]| {
        Histogram::new(
            pairs
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
        )
    };
    // In the first bucket: from 0 to its bound, 2 of 4 → halfway.
    close(
        h(&[(0.00005, 4.0), (f64::INFINITY, 4.0)]).quantile(0.5),
        0.000025,
    );
    // In the +Inf bucket: the highest finite bound.
    let tail = h(&[(1.0, 5.0), (10.0, 10.0), (f64::INFINITY, 12.0)]);
    close(tail.quantile(0.99), 10.0);
    // The buckets may come in any order.
    let shuffled = h(&[(f64::INFINITY, 12.0), (1.0, 5.0), (10.0, 10.0)]);
    assert_eq!(shuffled, tail);
    // Nothing to estimate from: no observations, no +Inf bucket, one
    // bucket only, a q outside 0..=1.
    assert_eq!(h(&[(1.0, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5), None);
    assert_eq!(h(&[(1.0, 3.0), (2.0, 4.0)]).quantile(0.5), None);
    assert_eq!(h(&[(f64::INFINITY, 4.0)]).quantile(0.5), None);
    assert_eq!(tail.quantile(1.5), None);
    assert_eq!(tail.quantile(-0.1), None);
    assert_eq!(Histogram::default().quantile(0.5), None);
}

#[test]
fn the_classic_text_format_reads_the_same() {
    // Version 0.0.4: the counter's TYPE line has the full name, no # EOF.
    let text = "# TYPE seckill_requests_total counter\n\
                seckill_requests_total{kind=\"buy\",outcome=\"ok\"} 7\n\
                # TYPE seckill_requests_in_flight gauge\n\
                seckill_requests_in_flight 2\n\
                not a sample line\n";
    let s = Snapshot::parse(text);
    close(s.value("seckill_requests_total", &[("outcome", "ok")]), 7.0);
    close(s.value("seckill_requests_in_flight", &[]), 2.0);
}

#[test]
fn metrics_urls_are_completed_as_typed() {
    let url = |s| metrics_url(s).unwrap();
    assert_eq!(url("127.0.0.1:9100"), "http://127.0.0.1:9100/metrics");
    assert_eq!(
        url("http://127.0.0.1:9100"),
        "http://127.0.0.1:9100/metrics"
    );
    assert_eq!(
        url("http://127.0.0.1:9100/"),
        "http://127.0.0.1:9100/metrics"
    );
    assert_eq!(url("localhost:9100/other"), "http://localhost:9100/other");
    assert!(matches!(
        metrics_url("https://a:1"),
        Err(Error::BadUrl { .. })
    ));
    assert!(matches!(
        metrics_url("http:///metrics"),
        Err(Error::BadUrl { .. })
    ));
    assert!(matches!(metrics_url(""), Err(Error::BadUrl { .. })));
}

/// An HTTP server on loopback that answers every request with `status` and
/// `body`, then closes.
fn http_server(status: &'static str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr.to_string()
}

#[test]
fn a_scrape_fetches_and_parses_or_says_why_not() {
    let ok = [1; 18];
    let addr = http_server("200 OK", page(ok, ok, 1, 5));
    let s = Scraper::new(&addr).unwrap().scrape().expect("a scrape");
    close(
        s.value("seckill_goods_remaining", &[("goods_id", "1")]),
        5.0,
    );

    let addr = http_server("503 Service Unavailable", "not ready".into());
    match Scraper::new(&addr).unwrap().scrape() {
        Err(Error::Status { status: 503, .. }) => {}
        other => panic!("{other:?}"),
    }
    let addr = http_server("200 OK", "<html>hello</html>".into());
    match Scraper::new(&addr).unwrap().scrape() {
        Err(e @ Error::NotSeckill { .. }) => assert!(e.to_string().contains("--metrics-listen")),
        other => panic!("{other:?}"),
    }
    // Nothing listens on a port just freed.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    match Scraper::new(&free.to_string()).unwrap().scrape() {
        Err(e @ Error::Http { .. }) => assert!(e.to_string().contains("cannot scrape")),
        other => panic!("{other:?}"),
    }
}

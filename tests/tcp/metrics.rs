//! `--metrics-listen`: /metrics counts what clients saw, passes promtool's
//! checks, and /healthz and /readyz follow the stores.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use seckill_client::Purchase;

use crate::faults::{MariaDb, RedisServer};
use crate::harness::{on_sale, Backends, Server};

/// The samples of a scrape in the text format: `name{labels}` → value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a sample value"))
        })
        .collect()
}

fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, body) = server.http_get("/metrics");
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

/// Polls `/readyz` until it answers `want`, for up to 60 s; returns the
/// body.
fn readyz_until(server: &Server, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.http_get("/readyz");
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {status}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// BUYs from several threads on a goods of 50 units: the requests, the
/// outcomes, the latency histogram and the goods' gauges served agree with
/// what the clients were told.
#[test]
fn metrics_count_what_clients_saw() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("m.db"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let goods = server.admin().add_goods(on_sale("bike", 50)).unwrap().id;
    let told: Vec<Purchase> = std::thread::scope(|s| {
        let buyers: Vec<_> = (0..4u64)
            .map(|t| {
                let server = &server;
                s.spawn(move || {
                    let mut client = server.client();
                    (0..20u64)
                        .map(|i| client.buy(1000 + t * 20 + i, goods).expect("BUY"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        buyers.into_iter().flat_map(|b| b.join().unwrap()).collect()
    });
    let ok = told
        .iter()
        .filter(|p| matches!(p, Purchase::Ordered(_)))
        .count();
    let sold_out = told.iter().filter(|p| **p == Purchase::SoldOut).count();
    assert_eq!((ok, sold_out), (50, 30), "{told:?}");

    let m = scrape(&server);
    let get = |series: &str| m.get(series).copied().unwrap_or(0.0);
    assert_eq!(
        get(r#"seckill_requests_total{kind="buy",outcome="ok"}"#),
        50.0
    );
    assert_eq!(
        get(r#"seckill_requests_total{kind="buy",outcome="sold_out"}"#),
        30.0
    );
    let buy_latencies = get(r#"seckill_request_duration_seconds_count{kind="buy",outcome="ok"}"#)
        + get(r#"seckill_request_duration_seconds_count{kind="buy",outcome="sold_out"}"#);
    assert_eq!(buy_latencies, 80.0);
    // Every BUY answered ok waited for a stock call and a commit.
    assert!(get(r#"seckill_request_duration_seconds_sum{kind="buy",outcome="ok"}"#) > 0.0);
    assert!(
        get(r#"seckill_store_call_duration_seconds_count{call="reserve",store="stock"}"#) >= 1.0
    );
    assert_eq!(get("seckill_order_commit_orders_sum"), 50.0);
    let gid = format!(r#"{{goods_id="{goods}"}}"#);
    assert_eq!(get(&format!("seckill_goods_stock{gid}")), 50.0);
    assert_eq!(get(&format!("seckill_goods_remaining{gid}")), 0.0);
    assert_eq!(get(r#"seckill_store_up{store="orders"}"#), 1.0);
    assert_eq!(get("seckill_requests_in_flight"), 0.0);
    assert!(
        m.keys().any(|k| k.starts_with("seckill_build_info{")
            && k.contains(r#"version=""#)
            && k.contains(r#"commit=""#)),
        "no build info"
    );
    assert!(m.contains_key("process_cpu_seconds_total"));
    assert!(get("process_resident_memory_bytes") > 0.0);

    assert_eq!(server.http_get("/healthz").0, 200);
    assert_eq!(server.http_get("/readyz").0, 200);
    assert_eq!(server.http_get("/nothing").0, 404);
}

/// `promtool check metrics` (from Debian's `prometheus` package) finds
/// nothing wrong with what /metrics serves during a sale.
#[test]
fn promtool_accepts_the_output() {
    let Ok(promtool) = which("promtool") else {
        eprintln!("SKIPPED: promtool is not installed (scripts/prometheus.sh installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("p.db"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let goods = server.admin().add_goods(on_sale("bike", 3)).unwrap().id;
    let mut client = server.client();
    for user in 0..5 {
        client.buy(user, goods).expect("BUY");
    }
    let (_, body) = server.http_get("/metrics");
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(program))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

/// /readyz says "not ready" while the stock store is down and "ready" once
/// it is back; /healthz says alive throughout.
#[test]
fn readyz_follows_the_stock_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(false);
    let mut stores = Backends::new();
    stores.redis_url = redis.url();
    let mut args = stores.args("durable");
    args.extend(["--metrics-listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.path().join("unused.db"), &args);
    readyz_until(&server, 200);
    // A goods, so that the server has stock to look at every tick.
    server.admin().add_goods(on_sale("bike", 10)).unwrap();

    redis.daemon.kill();
    let why = readyz_until(&server, 503);
    assert!(why.contains("stock"), "{why}");
    assert_eq!(server.http_get("/healthz").0, 200);
    let m = scrape(&server);
    assert_eq!(m.get(r#"seckill_store_up{store="stock"}"#), Some(&0.0));

    redis.daemon.start();
    readyz_until(&server, 200);
}

/// In the `queued` mode, orders told "ok" while MySQL is down wait in
/// Redis: the drain lag counts them and their age, and falls to zero once
/// MySQL is back and the drain has written them.
#[test]
fn drain_lag_counts_orders_not_yet_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut mariadb = MariaDb::start();
    let mut stores = Backends::new();
    stores.mysql_base = mariadb.url();
    let mut args = stores.args("queued");
    args.extend(["--metrics-listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.path().join("unused.db"), &args);
    let goods = server.admin().add_goods(on_sale("bike", 100)).unwrap().id;

    mariadb.daemon.kill();
    let mut client = server.client();
    let mut ok = 0;
    for user in 0..12 {
        if let Ok(Purchase::Ordered(_)) = client.buy(user, goods) {
            ok += 1;
        }
    }
    assert_eq!(ok, 12, "queued BUYs are told ok without MySQL");
    std::thread::sleep(Duration::from_millis(1100));
    let m = scrape(&server);
    assert_eq!(m.get("seckill_queued_drain_lag_entries"), Some(&12.0));
    let age = m["seckill_queued_drain_lag_seconds"];
    assert!(age >= 1.0, "oldest queued order waited {age} s");
    assert_eq!(m.get(r#"seckill_store_up{store="orders"}"#), Some(&0.0));

    mariadb.daemon.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = scrape(&server);
        if m.get("seckill_queued_drain_lag_entries") == Some(&0.0) {
            assert_eq!(m.get("seckill_queued_drain_lag_seconds"), Some(&0.0));
            break;
        }
        assert!(Instant::now() < deadline, "the drain never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

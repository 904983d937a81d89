//! `--metrics-listen`: /metrics counts what clients saw, passes promtool's
//! checks, and /healthz and /readyz follow the stores.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seckill_client::Purchase;

use crate::faults::{MariaDb, RedisServer};
use crate::harness::{connect_from, http_get, on_sale, Backends, Server};

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

    // The figure of what is left can lag the last stock call's answer by a
    // moment (merged calls' answers can be noted out of order): scraped
    // again until it shows the sell-out, for 10 s at most.
    let remaining = format!(r#"seckill_goods_remaining{{goods_id="{goods}"}}"#);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&server);
        if m.get(&remaining) == Some(&0.0) || std::time::Instant::now() >= deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
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
    // Every order handed to the writer was taken by it (the gauge went up
    // 50 times and down as often).
    assert_eq!(get("seckill_order_writer_backlog"), 0.0);
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
    let Some(promtool) = prometheus_tool("promtool") else {
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
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
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

/// A real Prometheus scrapes a server every second during a short sale;
/// what its HTTP API then says of the BUYs is what the clients were told.
#[test]
fn prometheus_reads_the_sale_as_clients_saw_it() {
    let Some(binary) = prometheus_tool("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("s.db"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let prometheus = Prometheus::start(&binary, dir.path(), server.metrics_addr.unwrap());
    // A scrape has seen the server before the sale starts, so that the
    // whole sale is in the series.
    prometheus.until(r#"up{job="seckill"}"#, |v| v == Some(1.0));
    // The `ok` and `sold_out` series exist, and a scrape has seen them, before
    // the sale: counted from their first scrape, a series that appeared in
    // the middle of the sale would hide what came before from rate().
    let warm_up = server.admin().add_goods(on_sale("bell", 1)).unwrap().id;
    let mut client = server.client();
    assert!(matches!(client.buy(1, warm_up), Ok(Purchase::Ordered(_))));
    assert!(matches!(client.buy(2, warm_up), Ok(Purchase::SoldOut)));
    for outcome in ["ok", "sold_out"] {
        let query = format!(r#"sum(seckill_requests_total{{kind="buy",outcome="{outcome}"}})"#);
        prometheus.until(&query, |v| v == Some(1.0));
    }
    let goods = server.admin().add_goods(on_sale("bike", 200)).unwrap().id;
    let (ok, sold_out) = std::thread::scope(|s| {
        let buyers: Vec<_> = (0..4u64)
            .map(|t| {
                let server = &server;
                s.spawn(move || {
                    let mut client = server.client();
                    let (mut ok, mut sold_out) = (0u64, 0u64);
                    // BUYs, each from a new user, until the goods sold out
                    // and three seconds passed (several scrapes saw the
                    // sale); thirty at most.
                    let start = Instant::now();
                    let mut user = t * 1_000_000;
                    while sold_out == 0 || start.elapsed() < Duration::from_secs(3) {
                        assert!(
                            start.elapsed() < Duration::from_secs(30),
                            "not sold out in 30 s: {ok} ok"
                        );
                        user += 1;
                        match client.buy(user, goods).expect("BUY") {
                            Purchase::Ordered(_) => ok += 1,
                            Purchase::SoldOut => sold_out += 1,
                            other => panic!("BUY answered {other:?}"),
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    (ok, sold_out)
                })
            })
            .collect();
        buyers
            .into_iter()
            .map(|b| b.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert_eq!(ok, 200, "the goods sold out");
    // With the warm-up's one of each.
    for (outcome, told) in [("ok", ok + 1), ("sold_out", sold_out + 1)] {
        let query = format!(r#"sum(seckill_requests_total{{kind="buy",outcome="{outcome}"}})"#);
        prometheus.until(&query, |v| v == Some(told as f64));
    }
    // The BUY rate as a dashboard computes it, over a window holding the
    // whole sale: rate() times the window is the BUYs sent, give or take
    // its extrapolation at the window's and the series' edges (each series
    // starts at its first scrape, the warm-up's one BUY).
    let rate = prometheus
        .query(r#"sum(rate(seckill_requests_total{kind="buy"}[5m]))"#)
        .expect("a BUY rate");
    let sent = (ok + sold_out) as f64;
    assert!(
        (0.5 * sent..=1.5 * sent).contains(&(rate * 300.0)),
        "rate {rate}/s over 5 min is {} BUYs; clients sent {sent}",
        rate * 300.0
    );
    // The server's own p99 BUY latency, from the histogram (NaN, which
    // fails, if the histogram had no samples in the window).
    let p99 = prometheus
        .query(
            r#"histogram_quantile(0.99, sum by (le) (rate(seckill_request_duration_seconds_bucket{kind="buy"}[5m])))"#,
        )
        .expect("a p99");
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99} s");
}

/// A Prometheus tool from Debian's package; `None`, with a note, only when
/// `SECKILL_SKIP_OPS_TOOLS=1` says that a machine without it is expected.
fn prometheus_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var_os("SECKILL_SKIP_OPS_TOOLS").is_some() => {
            eprintln!("skipped: {name} is not installed (SECKILL_SKIP_OPS_TOOLS is set)");
            None
        }
        None => panic!(
            "{name} is not installed: run scripts/ops-tools.sh (or set SECKILL_SKIP_OPS_TOOLS=1)"
        ),
    }
}

/// A Prometheus of the test's own on a free loopback port, scraping one
/// server every second; killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(binary: &Path, dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: seckill\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(&config, yaml).unwrap();
        let addr = free_port();
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(addr, "/-/ready").map(|(status, _)| status) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// An instant query's one value (`None`: no series).
    fn query(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(self.addr, &path).expect("the query API answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let result = reply["data"]["result"].as_array().expect("a vector");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits up to 30 s for `promql` to answer what `ok` accepts.
    fn until(&self, promql: &str, ok: impl Fn(Option<f64>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.query(promql);
            if ok(value) {
                return;
            }
            assert!(Instant::now() < deadline, "{promql} is still {value:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Percent-encodes a URL query parameter.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

/// What anyone who reaches the metrics listener may send harms nothing: a
/// request that declares a body of 4 EiB (the HTTP server it had before
/// allocated that much as it dropped the request, and the allocation's
/// failure aborted the whole server), one whose body never comes, a head
/// of 100 kB. Each gets an answer or a close; then the listener still
/// answers, and the server still sells.
#[test]
fn hostile_requests_to_the_metrics_listener_harm_nothing() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("m.db"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let addr = server.metrics_addr.expect("a metrics listener");
    let long_head = format!("GET /{} HTTP/1.1\r\n\r\n", "A".repeat(100_000));
    for request in [
        "GET /healthz HTTP/1.1\r\nContent-Length: 4611686018427387904\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
        &long_head,
    ] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // The server may close before it has read all of a long head.
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let got = stream.read_to_end(&mut answer);
        let head = String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned();
        assert!(
            got.is_ok() || !answer.is_empty(),
            "{:?}: no answer, no close: {got:?}",
            &request[..request.len().min(60)]
        );
        assert!(
            answer.is_empty() || head.starts_with("HTTP/1.1 "),
            "{:?}: {head:?}",
            &request[..request.len().min(60)]
        );
    }
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".into()));
    let _ = scrape(&server);
    server.client().ping().expect("the server still serves");
}

/// One client address holds at most 8 of the metrics listener's 64
/// connections: its 9th is told 503 at once, and a health check from
/// another address is answered meanwhile.
#[test]
fn one_address_cannot_hold_the_metrics_listener() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("m.db"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let addr = server.metrics_addr.expect("a metrics listener");
    let from = |local: &str| {
        let stream = connect_from(local, addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    };
    // Eight silent connections, each given its place.
    let held: Vec<_> = (0..8).map(|_| from("127.0.0.3")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut ninth = from("127.0.0.3");
    let mut answer = String::new();
    let read = ninth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?} ({read:?})");
    assert_eq!(server.http_get("/healthz"), (200, "ok\n".into()));
    drop(held);
}

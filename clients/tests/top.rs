//! `seckill-cli top` as a process: against a fake metrics endpoint whose
//! counters rise by a known amount at each scrape (lines, JSON and exit
//! codes as a shell sees them, and what a failed scrape does), and against
//! the real server, whose numbers must be what this test's clients did.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seckill_client::{Client, NewGoods, Purchase, SaleRules};

mod common;
use common::server::{Server, TOKEN};

/// A metrics endpoint on loopback: at its n-th scrape (from 0) it shows
/// 10·n BUYs answered `ok`, all within 1 ms, and goods 3 with 100 units of
/// which 10·n are sold.
fn endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let scrapes = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let n = 10 * scrapes.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                "# TYPE seckill_requests counter\n\
                 seckill_requests_total{{kind=\"buy\",outcome=\"ok\"}} {n}\n\
                 # TYPE seckill_request_duration_seconds histogram\n\
                 seckill_request_duration_seconds_bucket{{le=\"0.0005\",kind=\"buy\",outcome=\"ok\"}} 0\n\
                 seckill_request_duration_seconds_bucket{{le=\"0.001\",kind=\"buy\",outcome=\"ok\"}} {n}\n\
                 seckill_request_duration_seconds_bucket{{le=\"+Inf\",kind=\"buy\",outcome=\"ok\"}} {n}\n\
                 seckill_store_up{{store=\"stock\"}} 1\n\
                 seckill_goods_stock{{goods_id=\"3\"}} 100\n\
                 seckill_goods_remaining{{goods_id=\"3\"}} {}\n\
                 # EOF\n",
                100 - n.min(100)
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr.to_string()
}

fn top(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .arg("top")
        .args(args)
        .env_remove("SECKILL_METRICS")
        .output()
        .expect("run seckill-cli")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn top_json_prints_one_object_per_refresh() {
    let addr = endpoint();
    let out = top(&[
        "--metrics",
        &addr,
        "--json",
        "--count",
        "3",
        "--interval",
        "200ms",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, v) in lines.iter().enumerate() {
        // Each interval saw 10 more ok BUYs, all in (0.0005, 0.001] s.
        assert_eq!(v["buy_ok"], 10, "{v}");
        assert_eq!(v["requests"], 10, "{v}");
        assert_eq!(v["totals"]["buy_ok"], 10 * (i as u64 + 1), "{v}");
        let p50 = v["buy_p50_ms"].as_f64().expect("a p50");
        assert!((p50 - 0.75).abs() < 1e-9, "{v}");
        let rate = v["buy_ok_per_s"].as_f64().expect("a rate");
        let interval = v["interval_s"].as_f64().expect("an interval");
        assert!(interval > 0.1, "{v}");
        assert!((rate * interval - 10.0).abs() < 1e-6, "{v}");
        assert_eq!(v["goods"][0]["goods_id"], "3");
        assert_eq!(v["goods"][0]["sold"], 10 * (i as u64 + 1));
        assert_eq!(v["stores"]["stock"], "up");
    }
}

#[test]
fn top_prints_plain_lines_off_a_terminal() {
    let addr = endpoint();
    let out = top(&[
        "--metrics",
        &format!("http://{addr}/metrics"),
        "--count",
        "2",
        "--interval",
        "100ms",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        assert!(
            !line.contains('\x1b'),
            "no terminal control off a terminal: {line:?}"
        );
        assert!(line.contains(" p50 750 µs p99 "), "{line}");
        assert!(line.contains(" stock up goods 3 sold "), "{line}");
    }
}

#[test]
fn a_failed_scrape_is_reported_and_retried() {
    // Nothing listens on a port just freed.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = top(&[
        "--metrics",
        &free,
        "--json",
        "--count",
        "2",
        "--interval",
        "50ms",
    ]);
    assert_eq!(out.status.code(), Some(3), "a retryable failure");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per try");
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["status"], "scrape_failed");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("cannot scrape http://{free}/metrics")),
            "{message}"
        );
        // The last of --count tries promises no other.
        assert_eq!(
            message.contains("trying again in 50ms"),
            i == 0,
            "{message}"
        );
    }

    let out = top(&["--metrics", &free, "--count", "1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("error: cannot scrape"),
        "{}",
        text(&out.stderr)
    );

    // A URL that cannot be one is refused at once.
    let out = top(&["--metrics", "https://127.0.0.1:1", "--count", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("only http://"),
        "{}",
        text(&out.stderr)
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn goods(name: &str, stock: u32) -> NewGoods {
    NewGoods {
        name: name.into(),
        price_cents: 100,
        stock,
        start_ms: now_ms() - 1000,
        end_ms: now_ms() + 3_600_000,
        rules: SaleRules::default(),
        buckets: 1,
    }
}

/// BUYs `goods` for each of `users`: how many were ordered.
fn buy_each(client: &mut Client, goods: u64, users: impl IntoIterator<Item = u64>) -> u64 {
    let mut ordered = 0;
    for user in users {
        if let Purchase::Ordered(_) = client.buy(user, goods).expect("a BUY answer") {
            ordered += 1;
        }
    }
    ordered
}

#[test]
fn top_shows_what_the_clients_did_to_a_real_server() {
    let server = Server::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics.clone().expect("a metrics address");
    let mut admin = Client::builder(server.addr.as_str())
        .token(TOKEN)
        .connect()
        .unwrap();
    let phone = admin.add_goods(goods("Phone", 5)).unwrap();
    let lamp = admin.add_goods(goods("Lamp", 10)).unwrap();

    // Before top starts: 8 users rush 5 phones (5 ok, 3 sold out), 4 buy a
    // lamp, and one of them again (already bought: not an ok).
    let mut buyer = Client::connect(server.addr.as_str()).unwrap();
    assert_eq!(buy_each(&mut buyer, phone.id, 1..=8), 5);
    assert_eq!(buy_each(&mut buyer, lamp.id, 1..=4), 4);
    assert_eq!(buy_each(&mut buyer, lamp.id, [1]), 0);

    // While it runs: 4 more lamps, one every 100 ms.
    let watch = Command::new(env!("CARGO_BIN_EXE_seckill-cli"))
        .args(["top", "--metrics", &metrics, "--json", "--count", "3"])
        // Long enough for the 4 BUYs below to be in before the last
        // refresh on a loaded machine.
        .args(["--interval", "1500ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run seckill-cli top");
    for user in 5..=8 {
        assert_eq!(buy_each(&mut buyer, lamp.id, [user]), 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = watch.wait_with_output().expect("seckill-cli top");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");

    // Every ok BUY, counted by the server: the 9 before and the 4 during.
    let last = &lines[2];
    assert_eq!(last["totals"]["buy_ok"], 13, "{stdout}");
    // Each refresh's ok BUYs are what the total gained since the one
    // before; the first one's since top's own first scrape, which came
    // after the 9 and before or during the 4.
    let total = |v: &serde_json::Value| v["totals"]["buy_ok"].as_u64().expect("a total");
    let ok = |v: &serde_json::Value| v["buy_ok"].as_u64().expect("a count");
    for pair in lines.windows(2) {
        assert_eq!(ok(&pair[1]), total(&pair[1]) - total(&pair[0]), "{stdout}");
    }
    let baseline = total(&lines[0]) - ok(&lines[0]);
    assert!((9..=13).contains(&baseline), "{stdout}");
    for v in &lines {
        // An interval with BUYs has their latency; one without has none.
        let busy = ok(v) > 0;
        assert_eq!(v["buy_p50_ms"].is_f64(), busy, "{v}");
        if busy {
            let p50 = v["buy_p50_ms"].as_f64().unwrap_or_default();
            let p99 = v["buy_p99_ms"].as_f64().unwrap_or_default();
            assert!(p50 > 0.0 && p99 >= p50, "{v}");
        }
    }

    // Sold and left per goods, by id.
    let shown = |id: u64| {
        last["goods"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|g| g["goods_id"].as_str() == Some(&*id.to_string()))
            })
            .unwrap_or_else(|| panic!("goods {id} not in {last}"))
            .clone()
    };
    let (p, l) = (shown(phone.id), shown(lamp.id));
    assert_eq!(
        (&p["stock"], &p["sold"], &p["remaining"]),
        (&5.into(), &5.into(), &0.into())
    );
    assert_eq!(
        (&l["stock"], &l["sold"], &l["remaining"]),
        (&10.into(), &8.into(), &2.into())
    );
    assert_eq!(last["stores"]["stock"], "up", "{last}");
    assert_eq!(last["stores"]["orders"], "up", "{last}");
    assert_eq!(last["errors_per_s"]["internal_error"], 0.0, "{last}");
    // The admin and the buyer are connected, top is not (it speaks HTTP).
    assert_eq!(last["connections"], 2, "{last}");
}

//! `seckill-cli top`: what a server did over the last interval, from two
//! scrapes of its `/metrics`, as a screen (on a terminal), a line, or a
//! JSON object.

use std::collections::BTreeMap;

use seckill_client::metrics::{Snapshot, REQUEST_DURATION};
use serde::{Serialize, Serializer};

use super::input::format_time;
use super::output::{printable, Align, Table};

const REQUESTS: &str = "seckill_requests_total";
const REFUSALS: &str = "seckill_refusals_total";

/// One refresh of the view: rates over the interval between two scrapes,
/// and the gauges as the later one found them. Absent metrics (an older
/// server, a store mode without a writer) are `None`, `null` in JSON.
#[derive(Debug, Serialize)]
pub struct View {
    /// When the later scrape was taken (RFC 3339 UTC) and as Unix ms.
    pub time: String,
    pub time_ms: u64,
    /// Seconds between the two scrapes.
    pub interval_s: f64,
    /// Requests answered in the interval, of every kind, and per second.
    pub requests: u64,
    pub requests_per_s: f64,
    /// BUYs answered `ok` in the interval, and per second.
    pub buy_ok: u64,
    pub buy_ok_per_s: f64,
    /// Server-side latency of the requests answered in the interval, in
    /// milliseconds: every kind, then BUY alone (`None` for an interval
    /// without one).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub buy_p50_ms: Option<f64>,
    pub buy_p99_ms: Option<f64>,
    /// Error answers and refusals per second.
    pub errors_per_s: Errors,
    /// Gauges, as the later scrape found them.
    pub connections: Option<u64>,
    pub in_flight: Option<u64>,
    pub job_queue_depth: Option<u64>,
    pub writer_backlog: Option<u64>,
    pub drain_lag_entries: Option<u64>,
    pub drain_lag_s: Option<f64>,
    /// Each store, `up` or `down`.
    pub stores: BTreeMap<String, &'static str>,
    /// The goods the server reports (those on sale), by id.
    pub goods: Vec<GoodsView>,
    /// Counts since the server started: what the rates add up to.
    pub totals: Totals,
}

/// Error answers (by status, every kind of request) and refusals (every
/// reason: a refusal that got an answer is also counted by its status).
#[derive(Debug, Serialize)]
pub struct Errors {
    pub busy: f64,
    pub bad_request: f64,
    pub internal_error: f64,
    pub refusals: f64,
}

#[derive(Debug, Serialize)]
pub struct GoodsView {
    /// A string, as every 64-bit id in the CLI's JSON.
    #[serde(serialize_with = "id_string")]
    pub goods_id: u64,
    pub stock: u64,
    pub sold: u64,
    pub remaining: u64,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub buy_ok: u64,
}

fn id_string<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A count as an integer: the text format writes counters as floats.
fn whole(v: f64) -> u64 {
    // `as` saturates, and turns a NaN (which no counter holds) into 0.
    v.round().max(0.0) as u64
}

impl View {
    /// The view of the interval from `before` to `after`, taken at Unix
    /// milliseconds `time_ms`.
    pub fn between(before: &Snapshot, after: &Snapshot, time_ms: u64) -> View {
        let secs = after.seconds_since(before);
        let per_s = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let inc = |name: &str, labels: &[(&str, &str)]| after.increase_since(before, name, labels);
        let buy_ok = [("kind", "buy"), ("outcome", "ok")];
        let requests = inc(REQUESTS, &[]);
        let buys = inc(REQUESTS, &buy_ok);
        let latency = |labels: &[(&str, &str)]| {
            let now = after.histogram(REQUEST_DURATION, labels)?;
            let then = before
                .histogram(REQUEST_DURATION, labels)
                .unwrap_or_default();
            Some(now.since(&then))
        };
        let ms = |h: &Option<seckill_client::metrics::Histogram>, q| {
            h.as_ref().and_then(|h| h.quantile(q)).map(|s| s * 1e3)
        };
        let all = latency(&[]);
        let buy = latency(&[("kind", "buy")]);
        let errors = |status| per_s(inc(REQUESTS, &[("outcome", status)]));
        let gauge = |name: &str| after.value(name, &[]);
        let count = |name: &str| gauge(name).map(whole);
        View {
            time: format_time(time_ms),
            time_ms,
            interval_s: secs,
            requests: whole(requests),
            requests_per_s: per_s(requests),
            buy_ok: whole(buys),
            buy_ok_per_s: per_s(buys),
            p50_ms: ms(&all, 0.5),
            p99_ms: ms(&all, 0.99),
            buy_p50_ms: ms(&buy, 0.5),
            buy_p99_ms: ms(&buy, 0.99),
            errors_per_s: Errors {
                busy: errors("busy"),
                bad_request: errors("bad_request"),
                internal_error: errors("internal_error"),
                refusals: per_s(inc(REFUSALS, &[])),
            },
            connections: count("seckill_connections"),
            in_flight: count("seckill_requests_in_flight"),
            job_queue_depth: count("seckill_job_queue_depth"),
            writer_backlog: count("seckill_order_writer_backlog"),
            drain_lag_entries: count("seckill_queued_drain_lag_entries"),
            drain_lag_s: gauge("seckill_queued_drain_lag_seconds"),
            stores: after
                .by_label("seckill_store_up", "store")
                .into_iter()
                // The label as text safe for a terminal: the endpoint may
                // be anyone's.
                .map(|(store, up)| (printable(&store), if up >= 1.0 { "up" } else { "down" }))
                .collect(),
            goods: goods(after),
            totals: Totals {
                requests: whole(after.value(REQUESTS, &[]).unwrap_or(0.0)),
                buy_ok: whole(after.value(REQUESTS, &buy_ok).unwrap_or(0.0)),
            },
        }
    }

    /// The view on one line, for a log or a pipe.
    pub fn line(&self) -> String {
        let e = &self.errors_per_s;
        let mut line = format!(
            "{} req/s {:.0} buy_ok/s {:.0} p50 {} p99 {} busy/s {:.0} bad_request/s {:.0} \
             internal_error/s {:.0} refusals/s {:.0} conns {} in_flight {} queue {} backlog {} \
             drain_lag {} ({} s)",
            self.time,
            self.requests_per_s,
            self.buy_ok_per_s,
            millis(self.p50_ms),
            millis(self.p99_ms),
            e.busy,
            e.bad_request,
            e.internal_error,
            e.refusals,
            gauge(self.connections),
            gauge(self.in_flight),
            gauge(self.job_queue_depth),
            gauge(self.writer_backlog),
            gauge(self.drain_lag_entries),
            seconds(self.drain_lag_s),
        );
        for (store, state) in &self.stores {
            line.push_str(&format!(" {store} {state}"));
        }
        for g in &self.goods {
            line.push_str(&format!(
                " goods {} sold {} left {}",
                g.goods_id, g.sold, g.remaining
            ));
        }
        line
    }

    /// The view as a screen, for a terminal redrawn in place.
    pub fn screen(&self, url: &str) -> String {
        let e = &self.errors_per_s;
        let stores: Vec<String> = self
            .stores
            .iter()
            .map(|(store, state)| format!("{store} {state}"))
            .collect();
        let mut out = format!(
            "seckill top  {url}  {}  (every {:.1} s; Ctrl-C quits)\n\n\
             requests  {:.0}/s   BUY ok {:.0}/s\n\
             latency   p50 {}  p99 {}   BUY p50 {}  p99 {}\n\
             errors    busy {:.0}/s  bad_request {:.0}/s  internal_error {:.0}/s  refusals {:.0}/s\n\
             server    {} connections  {} in flight  job queue {}  writer backlog {}  \
             drain lag {} ({} s)\n\
             stores    {}\n\n",
            self.time,
            self.interval_s,
            self.requests_per_s,
            self.buy_ok_per_s,
            millis(self.p50_ms),
            millis(self.p99_ms),
            millis(self.buy_p50_ms),
            millis(self.buy_p99_ms),
            e.busy,
            e.bad_request,
            e.internal_error,
            e.refusals,
            gauge(self.connections),
            gauge(self.in_flight),
            gauge(self.job_queue_depth),
            gauge(self.writer_backlog),
            gauge(self.drain_lag_entries),
            seconds(self.drain_lag_s),
            if stores.is_empty() {
                "-".to_string()
            } else {
                stores.join("  ")
            },
        );
        if self.goods.is_empty() {
            out.push_str("no goods on sale\n");
        } else {
            let mut table = Table::new(&[
                ("GOODS", Align::Right),
                ("STOCK", Align::Right),
                ("SOLD", Align::Right),
                ("LEFT", Align::Right),
            ]);
            for g in &self.goods {
                table.row(vec![
                    g.goods_id.to_string(),
                    g.stock.to_string(),
                    g.sold.to_string(),
                    g.remaining.to_string(),
                ]);
            }
            out.push_str(&table.render());
        }
        out
    }
}

/// Every goods with a stock or a remaining gauge, by id. A goods id that is
/// not a number (no server writes one) is left out rather than shown wrong.
fn goods(s: &Snapshot) -> Vec<GoodsView> {
    let stock = s.by_label("seckill_goods_stock", "goods_id");
    let remaining = s.by_label("seckill_goods_remaining", "goods_id");
    let mut ids: Vec<u64> = stock
        .keys()
        .chain(remaining.keys())
        .filter_map(|id| id.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let key = id.to_string();
            let total = whole(stock.get(&key).copied().unwrap_or(0.0));
            let left = whole(remaining.get(&key).copied().unwrap_or(0.0));
            GoodsView {
                goods_id: id,
                stock: total,
                sold: total.saturating_sub(left),
                remaining: left,
            }
        })
        .collect()
}

/// Milliseconds for people, `-` for none.
fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1.0 => format!("{:.0} µs", ms * 1e3),
        Some(ms) if ms < 1000.0 => format!("{ms:.2} ms"),
        Some(ms) => format!("{:.2} s", ms / 1e3),
    }
}

/// A count for people, `-` when the server does not report it.
fn gauge(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Seconds for people, `-` when the server does not report them.
fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A page of the contract's metrics: BUYs answered `ok` (`ok` per
    /// latency bucket, cumulative, up to 0.01 s then +Inf), `busy` ones,
    /// refusals, gauges, and goods 2 and 10.
    fn page(ok: [u64; 9], busy: u64, refused: u64, remaining: u64) -> String {
        let bounds = [
            "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
        ];
        let mut text = String::from(
            "# TYPE seckill_requests counter\n# TYPE seckill_request_duration_seconds histogram\n",
        );
        text.push_str(&format!(
            "seckill_requests_total{{kind=\"buy\",outcome=\"ok\"}} {}\n\
             seckill_requests_total{{kind=\"buy\",outcome=\"busy\"}} {busy}\n",
            ok[8]
        ));
        for (le, count) in bounds.iter().chain(&["+Inf"]).zip(ok) {
            text.push_str(&format!(
                "seckill_request_duration_seconds_bucket{{le=\"{le}\",kind=\"buy\",outcome=\"ok\"}} {count}\n"
            ));
        }
        text.push_str(&format!(
            "seckill_refusals_total{{reason=\"busy\"}} {refused}\n\
             seckill_connections 3\n\
             seckill_requests_in_flight 1\n\
             seckill_job_queue_depth 0\n\
             seckill_order_writer_backlog 2\n\
             seckill_store_up{{store=\"stock\"}} 1\n\
             seckill_store_up{{store=\"orders\"}} 0\n\
             seckill_goods_stock{{goods_id=\"10\"}} 7\n\
             seckill_goods_remaining{{goods_id=\"10\"}} 7\n\
             seckill_goods_stock{{goods_id=\"2\"}} 100\n\
             seckill_goods_remaining{{goods_id=\"2\"}} {remaining}\n\
             # EOF\n"
        ));
        text
    }

    fn view() -> View {
        let t0 = Instant::now();
        let before = Snapshot::parse_at(&page([0, 0, 0, 0, 0, 0, 0, 0, 0], 0, 1, 100), t0);
        // 40 ok BUYs in 2 s: 10 in (0.00025, 0.0005], 20 in (0.0005, 0.001],
        // 10 in (0.001, 0.0025]; 6 busy, 4 more refusals.
        let after = Snapshot::parse_at(
            &page([0, 0, 0, 10, 30, 40, 40, 40, 40], 6, 5, 60),
            t0 + Duration::from_secs(2),
        );
        View::between(&before, &after, 1_700_000_000_000)
    }

    #[test]
    fn the_view_takes_rates_and_quantiles_over_the_interval() {
        let v = view();
        assert_eq!(v.interval_s, 2.0);
        assert_eq!((v.requests, v.buy_ok), (46, 40));
        assert_eq!((v.requests_per_s, v.buy_ok_per_s), (23.0, 20.0));
        // p50 is the 20th of 40: in (0.0005, 0.001] holding 10..30,
        // 0.0005 + 0.0005 × 10/20 s; p99 the 39.6th: in (0.001, 0.0025]
        // holding 30..40, 0.001 + 0.0015 × 9.6/10 s.
        let p50 = v.p50_ms.expect("p50");
        let p99 = v.p99_ms.expect("p99");
        assert!((p50 - 0.75).abs() < 1e-9, "{p50}");
        assert!((p99 - 2.44).abs() < 1e-9, "{p99}");
        assert_eq!((v.buy_p50_ms, v.buy_p99_ms), (v.p50_ms, v.p99_ms));
        assert_eq!((v.errors_per_s.busy, v.errors_per_s.refusals), (3.0, 2.0));
        assert_eq!(v.errors_per_s.bad_request, 0.0);
        assert_eq!((v.connections, v.writer_backlog), (Some(3), Some(2)));
        assert_eq!(v.drain_lag_s, None);
        assert_eq!(v.stores["stock"], "up");
        assert_eq!(v.stores["orders"], "down");
        // By number, not as strings: 2 before 10.
        let goods: Vec<_> = v
            .goods
            .iter()
            .map(|g| (g.goods_id, g.stock, g.sold, g.remaining))
            .collect();
        assert_eq!(goods, [(2, 100, 40, 60), (10, 7, 0, 7)]);
        assert_eq!((v.totals.requests, v.totals.buy_ok), (46, 40));
    }

    #[test]
    fn the_view_reads_as_json_a_line_and_a_screen() {
        let v = view();
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["time"], "2023-11-14T22:13:20Z");
        assert_eq!(json["buy_ok"], 40);
        assert_eq!(json["goods"][0]["goods_id"], "2");
        assert_eq!(json["goods"][0]["sold"], 40);
        assert_eq!(json["drain_lag_s"], serde_json::Value::Null);
        assert_eq!(json["errors_per_s"]["busy"], 3.0);

        let line = v.line();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("2023-11-14T22:13:20Z req/s 23 buy_ok/s 20 p50 750 µs p99 2.44 ms"),
            "{line}"
        );
        assert!(
            line.contains(" orders down stock up goods 2 sold 40 left 60 goods 10"),
            "{line}"
        );

        let screen = v.screen("http://127.0.0.1:9100/metrics");
        assert!(screen.contains("requests  23/s   BUY ok 20/s"), "{screen}");
        assert!(
            screen.contains("GOODS  STOCK  SOLD  LEFT\n    2    100    40    60\n"),
            "{screen}"
        );
    }

    #[test]
    fn an_idle_interval_has_no_latency() {
        let t0 = Instant::now();
        let text = page([0; 9], 0, 0, 100);
        let v = View::between(
            &Snapshot::parse_at(&text, t0),
            &Snapshot::parse_at(&text, t0 + Duration::from_secs(1)),
            0,
        );
        assert_eq!((v.requests, v.p50_ms, v.p99_ms), (0, None, None));
        assert!(v.line().contains("p50 - p99 -"));
    }

    /// A store's label from the endpoint reaches the terminal without its
    /// control characters: an escape sequence there would be the
    /// endpoint's to send to the operator's screen.
    #[test]
    fn a_store_label_sends_no_escape_sequence_to_the_terminal() {
        let t0 = Instant::now();
        let text =
            page([0; 9], 0, 0, 100).replace("store=\"stock\"", "store=\"\x1b]0;owned\x07\x1b[2J\"");
        assert!(text.contains('\x1b'));
        let before = Snapshot::parse_at(&text, t0);
        let after = Snapshot::parse_at(&text, t0 + Duration::from_secs(1));
        let v = View::between(&before, &after, 1_700_000_000_000);
        assert_eq!(v.stores.len(), 2, "{:?}", v.stores);
        for shown in [v.line(), v.screen("http://x")] {
            assert!(!shown.contains(['\x1b', '\x07']), "{shown:?}");
        }
    }
}

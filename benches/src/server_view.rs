//! The server's own view of a run (`--metrics`): its `/metrics` scraped
//! right before the engine starts and right after it ends, so that setup
//! and verification requests stay out of it. What it counted and how long
//! it says it took are printed beside what the bench measured: the gap
//! between the two is the network, the kernel and the bench itself.

use std::collections::BTreeMap;

use seckill_client::metrics::{Histogram, Scraper, Snapshot, REQUEST_DURATION};
use serde::Serialize;

use crate::error::Error;

const REQUESTS: &str = "seckill_requests_total";

/// What the servers' metrics say of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerMetrics {
    /// The endpoints scraped.
    pub urls: Vec<String>,
    /// Requests the servers answered during the run, HELLOs included, in
    /// all and by kind (`buy`, `hello`, `get_goods`, ...).
    pub requests: u64,
    pub requests_by_kind: BTreeMap<String, u64>,
    /// Server-side latency of the BUYs answered during the run (from the
    /// decoding of a request to its reply encoded), and of every request.
    /// Estimates: interpolated within the histogram's buckets, as
    /// Prometheus's `histogram_quantile` does. `None` without any.
    pub latency_buy: Option<ServerLatency>,
    pub latency: Option<ServerLatency>,
    /// Why the scrape after the run failed, if it did (the figures above
    /// are then zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Percentiles of a server-side latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerLatency {
    /// Requests it covers.
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl ServerLatency {
    fn of(h: &Histogram) -> Option<ServerLatency> {
        let us = |q| h.quantile(q).map(|s| (s * 1e6).round() as u64);
        Some(ServerLatency {
            count: h.count().round() as u64,
            p50_us: us(0.5)?,
            p90_us: us(0.9)?,
            p99_us: us(0.99)?,
            p999_us: us(0.999)?,
        })
    }
}

/// The scrapes before a run, waiting for the ones after.
pub struct Watch {
    scrapers: Vec<Scraper>,
    before: Vec<Snapshot>,
}

impl Watch {
    /// Scrapes every endpoint of `urls` (`--metrics`), or `None` without
    /// any. A failure here is the run's: nothing has been sent yet, and
    /// a mistyped URL is better learned before the sale than after it.
    pub fn start(urls: &[String]) -> Result<Option<Watch>, Error> {
        if urls.is_empty() {
            return Ok(None);
        }
        let scrapers = urls
            .iter()
            .map(|url| Scraper::new(url))
            .collect::<Result<Vec<_>, _>>()?;
        let before = scrapers
            .iter()
            .map(Scraper::scrape)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Watch { scrapers, before }))
    }

    /// Scrapes again and takes the difference. A failure is reported in
    /// the result rather than failing the run, whose own report stands.
    pub fn finish(self) -> ServerMetrics {
        let urls = self.scrapers.iter().map(|s| s.url().to_string()).collect();
        let after: Result<Vec<Snapshot>, _> = self.scrapers.iter().map(Scraper::scrape).collect();
        match after {
            Ok(after) => ServerMetrics::between(urls, &self.before, &after),
            Err(e) => ServerMetrics {
                urls,
                error: Some(e.to_string()),
                ..ServerMetrics::default()
            },
        }
    }
}

impl ServerMetrics {
    /// The run's share of the servers' metrics: `before[i]` and `after[i]`
    /// are scrapes of one server.
    pub fn between(urls: Vec<String>, before: &[Snapshot], after: &[Snapshot]) -> ServerMetrics {
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut all: Option<Histogram> = None;
        let mut buy: Option<Histogram> = None;
        let merge = |sum: &mut Option<Histogram>, h: Histogram| {
            *sum = Some(match sum.take() {
                Some(s) => s.merge(&h),
                None => h,
            });
        };
        for (b, a) in before.iter().zip(after) {
            for kind in a.by_label(REQUESTS, "kind").keys() {
                let n = a.increase_since(b, REQUESTS, &[("kind", kind.as_str())]);
                let n = n.round() as u64;
                if n > 0 {
                    // Saturating: a malformed page (a counter of +Inf, cast
                    // to u64::MAX) must not overflow the sums.
                    let sum = by_kind.entry(kind.clone()).or_default();
                    *sum = sum.saturating_add(n);
                }
            }
            let delta = |labels: &[(&str, &str)]| {
                let now = a.histogram(REQUEST_DURATION, labels)?;
                Some(now.since(&b.histogram(REQUEST_DURATION, labels).unwrap_or_default()))
            };
            if let Some(h) = delta(&[]) {
                merge(&mut all, h);
            }
            if let Some(h) = delta(&[("kind", "buy")]) {
                merge(&mut buy, h);
            }
        }
        ServerMetrics {
            urls,
            requests: by_kind.values().fold(0, |a, &n| a.saturating_add(n)),
            requests_by_kind: by_kind,
            latency_buy: buy.as_ref().and_then(ServerLatency::of),
            latency: all.as_ref().and_then(ServerLatency::of),
            error: None,
        }
    }

    /// The lines of the text report, indented as its others are.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(e) = &self.error {
            s.push_str(&format!("  server metrics: none, {e}\n"));
            return s;
        }
        let kinds: Vec<String> = self
            .requests_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        s.push_str(&format!(
            "  server metrics: {} requests answered ({})\n",
            self.requests,
            kinds.join(", ")
        ));
        let line = |l: &ServerLatency| {
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}",
                crate::report::human_us(l.p50_us),
                crate::report::human_us(l.p90_us),
                crate::report::human_us(l.p99_us),
                crate::report::human_us(l.p999_us)
            )
        };
        if let Some(l) = &self.latency {
            s.push_str(&format!(
                "  server latency: {}  (estimated from its buckets)\n",
                line(l)
            ));
        }
        if let Some(l) = &self.latency_buy {
            s.push_str(&format!("    buy        {}\n", line(l)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of one server: `buys` BUYs answered ok, cumulative per
    /// latency bucket up to 0.005 s then +Inf, and `hellos` HELLOs all
    /// within 0.0001 s.
    fn page(buys: [u64; 5], hellos: u64) -> Snapshot {
        let bounds = ["0.0001", "0.0005", "0.001", "0.005", "+Inf"];
        let mut text = format!(
            "# TYPE seckill_requests_total counter\n\
             seckill_requests_total{{kind=\"buy\",outcome=\"ok\"}} {}\n\
             seckill_requests_total{{kind=\"hello\",outcome=\"ok\"}} {hellos}\n\
             # TYPE seckill_request_duration_seconds histogram\n",
            buys[4]
        );
        for (le, n) in bounds.iter().zip(buys) {
            text.push_str(&format!(
                "seckill_request_duration_seconds_bucket{{kind=\"buy\",outcome=\"ok\",le=\"{le}\"}} {n}\n\
                 seckill_request_duration_seconds_bucket{{kind=\"hello\",outcome=\"ok\",le=\"{le}\"}} {hellos}\n"
            ));
        }
        Snapshot::parse(&text)
    }

    #[test]
    fn the_run_is_the_difference_of_the_scrapes() {
        // 1000 BUYs in the run: 100 in (0.0001, 0.0005], 800 in
        // (0.0005, 0.001], 100 in (0.001, 0.005]; and 10 HELLOs.
        let before = page([0, 50, 50, 50, 50], 2);
        let after = page([0, 150, 950, 1050, 1050], 12);
        let m = ServerMetrics::between(vec!["u".into()], &[before], &[after]);
        assert_eq!(m.requests, 1010);
        assert_eq!(m.requests_by_kind["buy"], 1000);
        assert_eq!(m.requests_by_kind["hello"], 10);
        let buy = m.latency_buy.expect("buy latency");
        assert_eq!(buy.count, 1000);
        // p50: the 500th, 400 into the 800 of (0.0005, 0.001]: 750 µs.
        // p90: the 900th, at that bucket's end: 1000 µs. p99: the 990th,
        // 90 into the 100 of (0.001, 0.005]: 1000 + 4000 × 0.9 = 4600 µs;
        // p99.9: the 999th, 99 into them, 1000 + 4000 × 0.99 = 4960 µs.
        assert_eq!(
            (buy.p50_us, buy.p90_us, buy.p99_us, buy.p999_us),
            (750, 1000, 4600, 4960)
        );
        let all = m.latency.expect("latency");
        assert_eq!(all.count, 1010);
        // The 505th of 1010: 10 HELLOs under 100 µs come first, then 100
        // BUYs in (100, 500], so 395 into the 800: 500 + 500 × 395/800.
        assert_eq!(all.p50_us, 747);
        let text = m.text();
        assert!(
            text.contains("1010 requests answered (buy 1000, hello 10)"),
            "{text}"
        );
        assert!(
            text.contains("    buy        p50 750 µs  p90 1.00 ms  p99 4.60 ms"),
            "{text}"
        );
    }

    #[test]
    fn two_servers_add_up() {
        let before = [page([0, 0, 0, 0, 0], 0), page([0, 0, 0, 0, 0], 0)];
        let after = [page([0, 10, 10, 10, 10], 1), page([0, 0, 30, 30, 30], 1)];
        let m = ServerMetrics::between(vec![], &before, &after);
        assert_eq!(m.requests_by_kind["buy"], 40);
        assert_eq!(m.requests, 42);
        // 10 in (100, 500] µs and 30 in (500, 1000]: the 20th is 10 into
        // the 30, 500 + 500/3 µs.
        assert_eq!(m.latency_buy.map(|l| l.p50_us), Some(667));
    }
}

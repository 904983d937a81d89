//! Reading a seckill server's own view of itself: its `/metrics` endpoint
//! (`seckill-server --metrics-listen ADDR`), in the Prometheus text format.
//!
//! A [`Scraper`] fetches the page and parses it into a [`Snapshot`]; two
//! snapshots taken some time apart give what happened in between: a counter's
//! increase ([`Snapshot::increase_since`]), and a latency histogram's share of
//! the interval ([`Histogram::since`]) with its quantiles
//! ([`Histogram::quantile`], interpolated within buckets as Prometheus's
//! `histogram_quantile` does). `seckill-cli top` and `seckill-bench
//! --metrics` are built on it.
//!
//! ```no_run
//! use std::time::Duration;
//! use seckill_client::metrics::{Scraper, REQUEST_DURATION};
//!
//! # fn main() -> Result<(), seckill_client::metrics::Error> {
//! let scraper = Scraper::new("127.0.0.1:9700")?; // http://…/metrics is implied
//! let before = scraper.scrape()?;
//! std::thread::sleep(Duration::from_secs(1));
//! let after = scraper.scrape()?;
//! let buy = [("kind", "buy")];
//! let buys = after.increase_since(&before, "seckill_requests_total", &buy);
//! let latency = after
//!     .histogram(REQUEST_DURATION, &buy)
//!     .map(|h| h.since(&before.histogram(REQUEST_DURATION, &buy).unwrap_or_default()));
//! let p99 = latency.and_then(|h| h.quantile(0.99));
//! println!("{buys} BUYs, p99 {p99:?} s");
//! # Ok(())
//! # }
//! ```
//!
//! Only with the cargo feature `metrics` (on by default).

mod histogram;
mod scrape;

#[cfg(test)]
mod tests;

pub use histogram::{increase, Bucket, Histogram};
pub use scrape::{metrics_url, Scraper, Snapshot, DEFAULT_SCRAPE_TIMEOUT};

/// The server's request latency histogram (seconds, by `kind` and
/// `outcome`), from the decoding of a request to its reply encoded for
/// writing.
pub const REQUEST_DURATION: &str = "seckill_request_duration_seconds";

/// Why a scrape gave no snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given cannot be a metrics URL (it names another scheme than
    /// `http`, or no host).
    #[error("{url:?} is not a metrics URL: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The request failed: connection refused, timeout, a broken response.
    #[error("cannot scrape {url}: {source}")]
    Http {
        /// The URL scraped.
        url: String,
        /// What the HTTP client said.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The endpoint answered with a status other than 200.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL scraped.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The page holds no `seckill_` metric: the URL names something other
    /// than a seckill server's metrics endpoint.
    #[error(
        "{url} serves no seckill_ metrics: is it a seckill server's --metrics-listen address?"
    )]
    NotSeckill {
        /// The URL scraped.
        url: String,
    },
}

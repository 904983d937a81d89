//! Fetching a `/metrics` page and looking samples up in it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};

use super::histogram::{Bucket, Histogram};
use super::Error;

/// How long a scrape may take, unless [`Scraper::timeout`] says otherwise:
/// the endpoint answers from memory, so a second is already slow.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The full URL of a metrics endpoint given as an operator types it:
/// `host:port` means `http://host:port/metrics`, and a URL without a path
/// gets `/metrics`.
pub fn metrics_url(given: &str) -> Result<String, Error> {
    let bad = |why| Error::BadUrl {
        url: given.to_string(),
        why,
    };
    let given = given.trim();
    let rest = match given.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return Err(bad("only http:// is served (the endpoint has no TLS)")),
        None => given,
    };
    let (host, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(bad("it names no host"));
    }
    let path = if path.is_empty() || path == "/" {
        "/metrics"
    } else {
        path
    };
    Ok(format!("http://{host}{path}"))
}

/// Scrapes one metrics endpoint, again and again.
#[derive(Debug, Clone)]
pub struct Scraper {
    url: String,
    agent: ureq::Agent,
}

impl Scraper {
    /// A scraper of `url` (see [`metrics_url`] for the forms it takes),
    /// with [`DEFAULT_SCRAPE_TIMEOUT`]. Nothing is sent yet.
    pub fn new(url: &str) -> Result<Scraper, Error> {
        Ok(Scraper {
            url: metrics_url(url)?,
            agent: agent(DEFAULT_SCRAPE_TIMEOUT),
        })
    }

    /// The same scraper with another timeout for the whole request.
    pub fn timeout(mut self, timeout: Duration) -> Scraper {
        self.agent = agent(timeout);
        self
    }

    /// The URL scraped.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the page and parses it.
    pub fn scrape(&self) -> Result<Snapshot, Error> {
        let http = |source| Error::Http {
            url: self.url.clone(),
            source: Box::new(source),
        };
        let mut response = self.agent.get(&self.url).call().map_err(http)?;
        let taken = Instant::now();
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Error::Status {
                url: self.url.clone(),
                status,
            });
        }
        let text = response.body_mut().read_to_string().map_err(http)?;
        let snapshot = Snapshot::parse_at(&text, taken);
        if !snapshot.is_seckill() {
            return Err(Error::NotSeckill {
                url: self.url.clone(),
            });
        }
        Ok(snapshot)
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // A 503 is reported with its code, by `scrape`.
        .http_status_as_error(false)
        .build()
        .into()
}

/// One scrape: every sample of the page, and when it was taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    samples: Vec<Sample>,
    taken: Instant,
}

impl Snapshot {
    /// The samples of a page in the Prometheus text format (or OpenMetrics,
    /// whose `# EOF` and `_total` counters it reads as well), taken now.
    /// Lines that are not samples are skipped, as Prometheus skips what it
    /// does not know.
    pub fn parse(text: &str) -> Snapshot {
        Snapshot::parse_at(text, Instant::now())
    }

    /// [`Snapshot::parse`] of a page fetched at `taken`.
    pub fn parse_at(text: &str, taken: Instant) -> Snapshot {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        // The parser's only error is that of its line source, and these
        // lines cannot fail.
        let samples = Scrape::parse(lines).map_or_else(|_| Vec::new(), |s| s.samples);
        Snapshot { samples, taken }
    }

    /// When the page was fetched.
    pub fn taken(&self) -> Instant {
        self.taken
    }

    /// Whether any sample is a seckill one.
    fn is_seckill(&self) -> bool {
        self.samples
            .iter()
            .any(|s| s.metric.starts_with("seckill_"))
    }

    /// The samples named `name` that carry every label of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the counters or gauges named `name` that carry every label
    /// of `labels` (all of them for `&[]`): `None` if there is none.
    ///
    /// A counter is looked up by its full name, `_total` included. The type
    /// does not matter: the text format and OpenMetrics name counters
    /// differently in their `# TYPE` lines, and a sample's value is its value.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels)
            .filter_map(|s| scalar(&s.value))
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
    }

    /// The values of `name` by the value of its label `label`, each summed
    /// over the other labels (the remaining units of each goods, the
    /// requests of each kind).
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.matching(name, &[]) {
            if let (Some(key), Some(v)) = (s.labels.get(label), scalar(&s.value)) {
                *out.entry(key.to_string()).or_insert(0.0) += v;
            }
        }
        out
    }

    /// The histogram `name` (without `_bucket`), summed over its series that
    /// carry every label of `labels`: `None` if there is none.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        self.matching(name, labels)
            .filter_map(|s| match &s.value {
                Value::Histogram(buckets) => Some(Histogram::new(
                    buckets
                        .iter()
                        .map(|b| Bucket {
                            le: b.less_than,
                            count: b.count,
                        })
                        .collect(),
                )),
                _ => None,
            })
            .reduce(|sum, h| sum.merge(&h))
    }

    /// How much the counters `name` with `labels` rose since `before` (0 if
    /// neither scrape has them), each series on its own, so that one
    /// server restart between the scrapes counts as such.
    pub fn increase_since(&self, before: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .filter_map(|s| {
                let after = scalar(&s.value)?;
                let was = before
                    .matching(name, &[])
                    .find(|b| b.labels == s.labels)
                    .and_then(|b| scalar(&b.value))
                    .unwrap_or(0.0);
                Some(super::histogram::increase(was, after))
            })
            // Not `sum`, whose empty sum of floats is -0.0 ("-0/s").
            .fold(0.0, |sum, v| sum + v)
    }

    /// Seconds from `before` to this scrape.
    pub fn seconds_since(&self, before: &Snapshot) -> f64 {
        self.taken
            .saturating_duration_since(before.taken)
            .as_secs_f64()
    }
}

/// The value of a counter, gauge or untyped sample.
fn scalar(value: &Value) -> Option<f64> {
    match *value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

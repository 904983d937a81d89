//! What a run measured: outcome counts, latency histograms (whole run and
//! per second) and the live counters the progress line reads.
//!
//! Each engine thread records into its own [`Recorder`]; the recorders are
//! merged once the threads are done, so the hot path shares nothing but the
//! live counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms hold, in microseconds (an hour); longer
/// ones are recorded as this.
const MAX_US: u64 = 3_600_000_000;
/// Significant figures of the whole-run histogram.
const SIGFIG: u8 = 3;
/// Significant figures of the per-second histograms: plenty for a plot, and
/// a tenth of the memory.
const SECOND_SIGFIG: u8 = 2;

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    SoldOut,
    AlreadyBought,
    Busy,
    /// Any other error, by its name (a protocol status or a Redis error).
    Error(&'static str),
}

/// Outcome counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub ok: u64,
    pub sold_out: u64,
    pub already_bought: u64,
    pub busy: u64,
    /// Every other error reply.
    pub other_errors: u64,
    /// `other_errors` by name.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Connections that could not be opened or greeted, or that broke.
    pub connection_failures: u64,
    /// Requests sent whose reply never came (their connection broke, or the
    /// run's drain deadline passed): their outcome is unknown.
    pub lost: u64,
    /// Requests never sent when the run stopped (a stall, or the drain
    /// deadline): an open loop's slots scheduled and not yet sent, and BUYs
    /// answered `busy` waiting to be sent again. Nothing was done for them,
    /// so the verification does not count them as unknown.
    pub unsent: u64,
}

impl Outcomes {
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::SoldOut => self.sold_out += 1,
            Outcome::AlreadyBought => self.already_bought += 1,
            Outcome::Busy => self.busy += 1,
            Outcome::Error(kind) => {
                self.other_errors += 1;
                *self.errors_by_kind.entry(kind.to_string()).or_default() += 1;
            }
        }
    }

    /// Requests answered, whatever the answer.
    pub fn answered(&self) -> u64 {
        self.ok + self.sold_out + self.already_bought + self.busy + self.other_errors
    }

    pub fn merge(&mut self, other: &Outcomes) {
        self.ok += other.ok;
        self.sold_out += other.sold_out;
        self.already_bought += other.already_bought;
        self.busy += other.busy;
        self.other_errors += other.other_errors;
        for (k, v) in &other.errors_by_kind {
            *self.errors_by_kind.entry(k.clone()).or_default() += v;
        }
        self.connection_failures += other.connection_failures;
        self.lost += other.lost;
        self.unsent += other.unsent;
    }
}

/// One second of the run (by when replies arrived).
#[derive(Debug, Clone)]
pub struct Bucket {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub latency: Histogram<u32>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            requests: 0,
            ok: 0,
            errors: 0,
            latency: second_histogram(),
        }
    }

    fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.errors += other.errors;
        // Same bounds on both sides: cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

fn run_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("valid histogram bounds")
}

fn second_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_US, SECOND_SIGFIG).expect("valid histogram bounds")
}

fn micros(latency: Duration) -> u64 {
    (latency.as_micros() as u64).clamp(1, MAX_US)
}

/// Counters the progress line reads while the run goes on, one set per
/// engine thread.
#[derive(Debug)]
pub struct Live {
    pub answered: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    /// Latencies since the progress line last took them.
    pub latency: Mutex<Histogram<u32>>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            answered: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(second_histogram()),
        }
    }
}

impl Live {
    /// Takes the latencies recorded since the last call, merged into `into`.
    pub fn take_latency(&self, into: &mut Histogram<u32>) {
        if let Ok(mut h) = self.latency.lock() {
            let _ = into.add(&*h);
            h.reset();
        }
    }
}

/// One engine thread's measurements.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub outcomes: Outcomes,
    pub latency: Histogram<u64>,
    /// The same latencies by request (`buy`, `pay`, ...), for runs that mix
    /// them.
    pub by_request: BTreeMap<&'static str, Histogram<u64>>,
    pub seconds: Vec<Bucket>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            outcomes: Outcomes::default(),
            latency: run_histogram(),
            by_request: BTreeMap::new(),
            seconds: Vec::new(),
        }
    }
}

impl Recorder {
    /// Records one reply to a `request` (its name) that arrived `at` (since
    /// the run's start) after `latency`.
    pub fn record(
        &mut self,
        request: &'static str,
        outcome: Outcome,
        latency: Duration,
        at: Duration,
        live: &Live,
    ) {
        let us = micros(latency);
        self.outcomes.add(outcome);
        self.latency.saturating_record(us);
        self.by_request
            .entry(request)
            .or_insert_with(run_histogram)
            .saturating_record(us);
        let second = at.as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Bucket::new);
        }
        let bucket = &mut self.seconds[second];
        bucket.requests += 1;
        live.answered.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok => {
                bucket.ok += 1;
                live.ok.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Busy | Outcome::Error(_) => {
                bucket.errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::SoldOut | Outcome::AlreadyBought => {}
        }
        bucket.latency.saturating_record(us);
        if let Ok(mut h) = live.latency.lock() {
            h.saturating_record(us);
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.outcomes.merge(&other.outcomes);
        let _ = self.latency.add(&other.latency);
        for (request, h) in &other.by_request {
            let _ = self
                .by_request
                .entry(request)
                .or_insert_with(run_histogram)
                .add(h);
        }
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), Bucket::new);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.merge(theirs);
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of<T: hdrhistogram::Counter>(h: &Histogram<T>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_counts_histograms_and_seconds() {
        let live = Live::default();
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(
            "buy",
            Outcome::Ok,
            Duration::from_millis(1),
            Duration::ZERO,
            &live,
        );
        a.record(
            "buy",
            Outcome::SoldOut,
            Duration::from_millis(2),
            Duration::ZERO,
            &live,
        );
        b.record(
            "get_goods",
            Outcome::Error("unknown_goods"),
            Duration::from_millis(3),
            Duration::from_millis(2500),
            &live,
        );
        b.outcomes.lost = 2;
        a.merge(&b);
        assert_eq!(a.outcomes.answered(), 3);
        assert_eq!(a.outcomes.ok, 1);
        assert_eq!(a.outcomes.errors_by_kind["unknown_goods"], 1);
        assert_eq!(a.outcomes.lost, 2);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.by_request["buy"].len(), 2);
        assert_eq!(a.by_request["get_goods"].len(), 1);
        assert_eq!(a.seconds.len(), 3);
        assert_eq!(a.seconds[0].requests, 2);
        assert_eq!(a.seconds[1].requests, 0);
        assert_eq!(a.seconds[2].errors, 1);
        assert_eq!(live.answered.load(Ordering::Relaxed), 3);
        let l = Latency::of(&a.latency);
        assert!(l.p50_us >= 1990 && l.p50_us <= 2010, "{l:?}");
        assert!(l.max_us >= 2990, "{l:?}");
    }
}

//! Histograms as Prometheus exposes them (cumulative bucket counts), the
//! part of one that falls between two scrapes, and its quantiles.

/// One bucket: how many observations were at most `le`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The upper bound, inclusive; the last bucket's is `+Inf`.
    pub le: f64,
    /// Observations at most `le`: cumulative, as in the text format.
    pub count: f64,
}

/// A histogram's buckets, by increasing bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: Vec<Bucket>,
}

impl Histogram {
    /// A histogram of these buckets, in any order.
    pub fn new(mut buckets: Vec<Bucket>) -> Histogram {
        // `total_cmp` orders a NaN bound (which no exporter writes) last
        // rather than panicking on it.
        buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
        Histogram { buckets }
    }

    /// The buckets, by increasing bound.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Observations in all: the `+Inf` bucket's count (0 for a histogram
    /// without buckets).
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.count)
    }

    /// The cumulative count at `le` as this histogram knows it: that of its
    /// largest bound not above `le`. For two series of one histogram (same
    /// bounds) it is exact; otherwise it is a lower estimate, never one that
    /// counts an observation twice.
    fn count_at(&self, le: f64) -> f64 {
        self.buckets
            .iter()
            .take_while(|b| b.le <= le)
            .last()
            .map_or(0.0, |b| b.count)
    }

    /// The sum of two histograms (two label sets of one metric, say BUYs
    /// answered `ok` and `sold_out`), over the union of their bounds.
    pub fn merge(&self, other: &Histogram) -> Histogram {
        let mut bounds: Vec<f64> = self
            .buckets
            .iter()
            .chain(&other.buckets)
            .map(|b| b.le)
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Histogram::new(
            bounds
                .into_iter()
                .map(|le| Bucket {
                    le,
                    count: self.count_at(le) + other.count_at(le),
                })
                .collect(),
        )
    }

    /// What was observed since `before`, an earlier scrape of the same
    /// series. If the series went back (the server restarted in between),
    /// all of this one is new, as Prometheus's `increase` takes it.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let reset = self.buckets.iter().any(|b| b.count < before.count_at(b.le));
        if reset {
            return self.clone();
        }
        Histogram::new(
            self.buckets
                .iter()
                .map(|b| Bucket {
                    le: b.le,
                    count: b.count - before.count_at(b.le),
                })
                .collect(),
        )
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) of the observations, as Prometheus's
    /// `histogram_quantile` estimates it: linear interpolation within the
    /// bucket where the rank falls, from the bucket below's bound (0 for the
    /// first bucket); a rank in the `+Inf` bucket gives the highest finite
    /// bound. `None` where Prometheus gives NaN: no observations, no `+Inf`
    /// bucket, fewer than two buckets, or `q` outside 0..=1 (for which
    /// Prometheus gives ±Inf, which no caller here wants).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let b = &self.buckets;
        let last = b.last()?;
        if b.len() < 2 || last.le != f64::INFINITY {
            return None;
        }
        let total = last.count;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        // The first bucket whose cumulative count reaches the rank; the
        // +Inf bucket holds them all, so there is one.
        let i = b.iter().position(|x| x.count >= rank)?;
        if i == b.len() - 1 {
            return Some(b[i - 1].le);
        }
        if i == 0 && b[0].le <= 0.0 {
            return Some(b[0].le);
        }
        let (start, below) = if i == 0 {
            (0.0, 0.0)
        } else {
            (b[i - 1].le, b[i - 1].count)
        };
        let in_bucket = b[i].count - below;
        if in_bucket <= 0.0 {
            // A rank of 0 at an empty bucket: its lower bound.
            return Some(start);
        }
        Some(start + (b[i].le - start) * ((rank - below) / in_bucket))
    }
}

/// A counter's increase from `before` to `after`. A counter only goes up; a
/// lower value means the server restarted in between, and then all of
/// `after` is new (as Prometheus's `increase` takes it).
pub fn increase(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

//! Histograms of what the server spends its time on: requests by kind and
//! outcome, store calls, and how much each merged call carries.
//!
//! Every observation is a few relaxed atomic adds (the `prometheus` crate's
//! histograms take no lock), so workers record on their hot paths. Requests
//! are many more: each reactor records them in [`LocalRequests`], without
//! atomics, and adds them to the shared series once a turn. The request
//! series are made on first use: a kind and outcome never seen costs no
//! series in the output.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use seckill_proto::{Opcode, Status};

use crate::store::StoreError;

/// Latency buckets, in seconds: 50 µs (a reply from the reactor) to 10 s (a
/// store past its timeouts).
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Batch-size buckets: 1 to 4096 requests or orders.
const BATCH_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// The request kinds, by opcode, with their label value. A frame whose
/// opcode is none of them is counted as `unknown`.
const KINDS: [(Opcode, &str); 16] = [
    (Opcode::Hello, "hello"),
    (Opcode::Ping, "ping"),
    (Opcode::ListGoods, "list_goods"),
    (Opcode::GetGoods, "get_goods"),
    (Opcode::Buy, "buy"),
    (Opcode::OrderStatus, "order_status"),
    (Opcode::Pay, "pay"),
    (Opcode::Cancel, "cancel"),
    (Opcode::ListOrders, "list_orders"),
    (Opcode::Token, "token"),
    (Opcode::AddGoods, "add_goods"),
    (Opcode::Restock, "restock"),
    (Opcode::Stats, "stats"),
    (Opcode::Reconcile, "reconcile"),
    (Opcode::SaleControl, "sale_control"),
    (Opcode::Stock, "stock"),
];
const UNKNOWN_KIND: usize = KINDS.len();
/// Statuses are numbered from 0 with no gaps (`Status::from_u8`).
const OUTCOMES: usize = Status::Pending as usize + 1;
/// Every kind (and unknown) by every outcome: the size of the tables of
/// request series, shared and reactor-local, which one index addresses.
const REQUEST_SERIES: usize = (KINDS.len() + 1) * OUTCOMES;

/// Where requests of this kind (by opcode) answered `status` are counted,
/// in a table of [`REQUEST_SERIES`].
fn series_index(opcode: u8, status: Status) -> Option<usize> {
    let kind = KINDS
        .iter()
        .position(|&(op, _)| op as u8 == opcode)
        .unwrap_or(UNKNOWN_KIND);
    let outcome = status as usize;
    // In range for every Status (OUTCOMES is its count); a status added
    // without growing OUTCOMES goes uncounted rather than panic.
    if outcome >= OUTCOMES {
        debug_assert!(false, "status {status:?} beyond OUTCOMES");
        return None;
    }
    Some(kind * OUTCOMES + outcome)
}

/// The stores, as the `store` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Stock,
    Orders,
}

impl Store {
    pub fn label(self) -> &'static str {
        match self {
            Store::Stock => "stock",
            Store::Orders => "orders",
        }
    }
}

/// The store calls that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCall {
    /// One merged stock deduction for the BUYs of one goods.
    Reserve,
    /// Units given back to the stock store.
    Release,
    /// A goods' stock reconciled with its orders.
    Reconcile,
    /// A batch of orders written to the order store.
    Commit,
}

impl StoreCall {
    const ALL: [StoreCall; 4] = [
        StoreCall::Reserve,
        StoreCall::Release,
        StoreCall::Reconcile,
        StoreCall::Commit,
    ];

    fn store(self) -> Store {
        match self {
            StoreCall::Commit => Store::Orders,
            _ => Store::Stock,
        }
    }

    fn label(self) -> &'static str {
        match self {
            StoreCall::Reserve => "reserve",
            StoreCall::Release => "release",
            StoreCall::Reconcile => "reconcile",
            StoreCall::Commit => "commit",
        }
    }
}

/// The latency histogram and the count of one kind of request and outcome.
type RequestSeries = (Histogram, IntCounter);

/// The server's histograms, and the health of its stores as its calls
/// found it.
pub struct Timing {
    requests: HistogramVec,
    request_counts: IntCounterVec,
    /// At [`series_index`], filled on first use.
    by_request: Box<[OnceLock<RequestSeries>; REQUEST_SERIES]>,
    store_calls: HistogramVec,
    by_call: [Histogram; StoreCall::ALL.len()],
    stock_call_buys: Histogram,
    order_commit_orders: Histogram,
    /// Indexed by `Store as usize`: the last call to it reached it.
    store_up: [AtomicBool; 2],
}

impl Default for Timing {
    fn default() -> Self {
        Timing::new()
    }
}

impl Timing {
    pub fn new() -> Timing {
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "seckill_request_duration_seconds",
                "Requests, from decoding to the reply encoded for writing, by kind and outcome.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind", "outcome"],
        )
        .expect("valid histogram options");
        let request_counts = IntCounterVec::new(
            Opts::new(
                "seckill_requests_total",
                "Requests answered, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )
        .expect("valid counter options");
        let store_calls = HistogramVec::new(
            HistogramOpts::new(
                "seckill_store_call_duration_seconds",
                "Calls to the stock and order stores.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["store", "call"],
        )
        .expect("valid histogram options");
        let by_call = StoreCall::ALL
            .map(|call| store_calls.with_label_values(&[call.store().label(), call.label()]));
        let sizes = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(BATCH_BUCKETS.to_vec()))
                .expect("valid histogram options")
        };
        Timing {
            requests,
            request_counts,
            by_request: Box::new([const { OnceLock::new() }; REQUEST_SERIES]),
            store_calls,
            by_call,
            stock_call_buys: sizes(
                "seckill_stock_call_buys",
                "BUYs decided by one merged call to the stock store.",
            ),
            order_commit_orders: sizes(
                "seckill_order_commit_orders",
                "Orders written by one commit to the order store.",
            ),
            store_up: [AtomicBool::new(true), AtomicBool::new(true)],
        }
    }

    /// The shared series at `index` (a [`series_index`]), labelled with the
    /// kind and outcome the index stands for.
    fn request_series(&self, index: usize) -> Option<&RequestSeries> {
        let slot = self.by_request.get(index)?;
        Some(slot.get_or_init(|| {
            let kind = KINDS
                .get(index / OUTCOMES)
                .map_or("unknown", |&(_, name)| name);
            // Below OUTCOMES, so a Status (they are numbered without gaps).
            let outcome = u8::try_from(index % OUTCOMES)
                .ok()
                .and_then(Status::from_u8)
                .map_or("unknown", Status::as_str);
            let labels = [kind, outcome];
            (
                self.requests.with_label_values(&labels),
                self.request_counts.with_label_values(&labels),
            )
        }))
    }

    /// Times a store call, and notes whether the store answered.
    pub fn store_call<T>(
        &self,
        call: StoreCall,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.time(call, f);
        self.store_seen(call.store(), &result);
        result
    }

    /// Times a call that spans both stores (a reconciliation), whose error
    /// does not say which store failed, if either did: store health is left
    /// to the calls of one store.
    pub fn time<T>(&self, call: StoreCall, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = f();
        self.by_call[call as usize].observe(started.elapsed().as_secs_f64());
        result
    }

    /// Notes whether a call to `store` reached it: a store that is down
    /// fails with `Unavailable`, or `Indeterminate` when the link broke
    /// mid-call; any other answer came from the store.
    pub fn store_seen<T>(&self, store: Store, result: &Result<T, StoreError>) {
        let up = !matches!(
            result,
            Err(StoreError::Unavailable(_) | StoreError::Indeterminate(_))
        );
        self.store_up[store as usize].store(up, Relaxed);
    }

    pub fn store_up(&self, store: Store) -> bool {
        self.store_up[store as usize].load(Relaxed)
    }

    pub fn stock_call(&self, buys: usize) {
        self.stock_call_buys.observe(buys as f64);
    }

    pub fn order_commit(&self, orders: usize) {
        self.order_commit_orders.observe(orders as f64);
    }

    /// Everything above, for the registry that /metrics gathers.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.request_counts.clone()),
            Box::new(self.store_calls.clone()),
            Box::new(self.stock_call_buys.clone()),
            Box::new(self.order_commit_orders.clone()),
        ]
    }
}

/// One reactor's requests, recorded on its own thread without atomics (a
/// reply costs a bucket search and a few adds, not five contended atomic
/// adds) and added to the shared series by [`flush`](Self::flush), which the
/// reactor calls once a turn, before it writes the turn's replies: a client
/// that has its reply finds it counted.
pub struct LocalRequests {
    /// At [`series_index`], as `Timing::by_request`, made from it on first
    /// use: after that a request touches nothing shared until the flush.
    series: Box<[Option<(LocalHistogram, LocalIntCounter)>; REQUEST_SERIES]>,
    /// Indexes observed since the last flush.
    touched: Vec<usize>,
}

impl LocalRequests {
    pub fn new() -> LocalRequests {
        LocalRequests {
            series: Box::new([const { None }; REQUEST_SERIES]),
            touched: Vec::new(),
        }
    }

    /// A request answered `status` after `elapsed`.
    pub fn request(&mut self, timing: &Timing, opcode: u8, status: Status, elapsed: Duration) {
        let Some(index) = series_index(opcode, status) else {
            return;
        };
        let Some(entry) = self.series.get_mut(index) else {
            return;
        };
        let (histogram, count) = match entry {
            Some(local) => local,
            None => {
                let Some((histogram, count)) = timing.request_series(index) else {
                    return;
                };
                entry.insert((histogram.local(), count.local()))
            }
        };
        if histogram.get_sample_count() == 0 {
            self.touched.push(index);
        }
        histogram.observe(elapsed.as_secs_f64());
        count.inc();
    }

    /// Adds what was recorded since the last flush to the shared series.
    pub fn flush(&mut self) {
        for index in self.touched.drain(..) {
            if let Some(Some((histogram, count))) = self.series.get(index) {
                histogram.flush();
                count.flush();
            }
        }
    }
}

impl Default for LocalRequests {
    fn default() -> Self {
        LocalRequests::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_series_slot() {
        for v in 0..=u8::MAX {
            if let Some(status) = Status::from_u8(v) {
                assert!((status as usize) < OUTCOMES, "{status}");
            }
        }
    }

    #[test]
    fn requests_are_counted_by_kind_and_outcome() {
        let t = Timing::new();
        let mut local = LocalRequests::new();
        local.request(
            &t,
            Opcode::Buy as u8,
            Status::Ok,
            Duration::from_micros(300),
        );
        local.request(&t, Opcode::Buy as u8, Status::Ok, Duration::from_millis(3));
        local.request(&t, 0x66, Status::BadRequest, Duration::ZERO);
        let buy = t.requests.with_label_values(&["buy", "ok"]);
        let unknown = t
            .request_counts
            .with_label_values(&["unknown", "bad_request"]);
        assert_eq!(buy.get_sample_count(), 0, "shared only once flushed");
        local.flush();
        assert_eq!(buy.get_sample_count(), 2);
        assert!((buy.get_sample_sum() - 0.0033).abs() < 1e-9);
        assert_eq!(unknown.get(), 1);
        // A second turn adds to the first, and a flush with nothing new
        // adds nothing.
        local.request(&t, Opcode::Buy as u8, Status::Ok, Duration::from_micros(50));
        local.flush();
        local.flush();
        assert_eq!(buy.get_sample_count(), 3);
        assert_eq!(unknown.get(), 1);
    }

    #[test]
    fn a_store_is_down_only_when_it_could_not_be_reached() {
        let t = Timing::new();
        let _ = t.store_call(StoreCall::Commit, || -> Result<(), _> {
            Err(StoreError::Unavailable("refused".into()))
        });
        assert!(!t.store_up(Store::Orders));
        assert!(t.store_up(Store::Stock));
        let _ = t.store_call(StoreCall::Commit, || -> Result<(), _> {
            Err(StoreError::UnknownGoods(7))
        });
        assert!(t.store_up(Store::Orders));
    }
}

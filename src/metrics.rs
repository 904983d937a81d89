//! Counters, shared by every thread, reported by STATS and /metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use seckill_proto::Stat;

use crate::telemetry::Timing;

macro_rules! metrics {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Monotonic counters (and a few gauges), updated with relaxed atomics:
        /// they are read for reporting, never to make a decision.
        #[derive(Default)]
        pub struct Metrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// The histograms /metrics serves (STATS has only the counters).
            pub timing: Timing,
        }

        impl Metrics {
            pub fn snapshot(&self) -> Vec<Stat> {
                vec![$(Stat { name: stringify!($name).to_owned(), value: self.$name.load(Relaxed) },)*]
            }
        }
    };
}

metrics! {
    /// Connections accepted since start.
    connections_accepted,
    /// Connections open now (a gauge).
    connections_open,
    /// Requests handed to workers and not yet answered (a gauge).
    requests_in_flight,
    /// Connections refused at accept: too many in all or from one address.
    connections_refused,
    /// Addresses blocked in the kernel for --block-for after being refused
    /// for --accept-rate-per-ip.
    addresses_blocked,
    /// Connections closed for not completing a frame in time.
    frame_timeouts,
    /// Connections closed for sending too many bad requests.
    bad_request_closes,
    /// HELLOs refused for a wrong admin token, or for one from an address
    /// that presented too many.
    wrong_admin_tokens,
    /// Connections that did not read their replies, closed to keep the
    /// unsent replies of all connections within --reply-budget.
    reply_budget_closes,
    /// Connections holding large unfinished frames, closed to keep the
    /// buffered input of all connections within --input-budget.
    input_budget_closes,
    /// Reserved orders handed to the order writer and not yet taken by it
    /// (a gauge: workers add, the writer subtracts).
    orders_awaiting_writer,
    /// Reply bytes encoded and not yet written, all connections (a gauge,
    /// as of the end of each reactor's last turn).
    unsent_reply_bytes,
    /// Input bytes read and not yet served (unfinished frames, and whole
    /// ones waiting), all connections (a gauge, as of each connection's
    /// last read or serve).
    buffered_input_bytes,
    /// BUYs answered `rate_limited`.
    buy_rate_limited,
    /// Frames decoded, good or bad.
    requests,
    /// Requests answered `bad_request`, and frames that closed a connection.
    bad_requests,
    /// BUYs that got a new order.
    buy_ok,
    /// BUYs by a user who already held an order.
    buy_already_bought,
    /// BUYs answered `sold_out`.
    buy_sold_out,
    /// BUYs answered `not_started`, `ended` or `paused`.
    buy_outside_window,
    /// BUYs answered by the reactor without a trip to a worker.
    buy_fast_path,
    /// Requests answered `busy`: a full queue or a store that failed.
    busy,
    /// Merged calls to the stock store, and the BUYs they carried.
    stock_calls,
    stock_buys,
    /// Batches written to the order store, and the orders in them.
    order_batches,
    orders_written,
    /// Batches the order store refused; their units went back to stock.
    order_batches_failed,
    /// BUYs refused for their purchase token (missing, invalid, expired,
    /// used), and tokens issued.
    buy_token_refused,
    tokens_issued,
    /// PAYs answered `ok` (a repeated PAY counts again); orders cancelled
    /// by their buyer, and by the end of their payment window (each unit
    /// returned to stock once).
    orders_paid,
    orders_cancelled,
    orders_expired,
}

/// `counter += n`, for brevity at call sites.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// For the gauges among the counters (open connections).
pub fn sub(gauge: &AtomicU64, n: u64) {
    gauge.fetch_sub(n, Relaxed);
}

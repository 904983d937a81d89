//! The load engine: few threads, many connections.
//!
//! ```text
//!   run() ──spawns──▶ thread 0 … T-1   each: one mio::Poll, its share of the C connections
//!     │                  │ connection k to server k mod S (round robin over the target's servers)
//!     │                  │ connect, greet (HELLO / PING), then wait at the barrier
//!     │                  │ start = the first thread past the barrier's Instant
//!     │                  ▼
//!     │               loop: fill windows ─▶ write ─▶ poll ─▶ read ─▶ decode ─▶ record
//!     │                  │   closed loop: keep --pipeline requests in flight per connection
//!     │                  │                (a timed workload: each request once it is due)
//!     │                  │   open loop:   slots of the Schedule, timed from the slot
//!     │                  ▼
//!     │               Recorder (histograms, outcomes, per-second buckets) + acks
//!     └─ live line every second (stderr is a terminal) ◀── Live counters
//! ```
//!
//! What to send comes from a [`Workload`], shared by every thread; how it
//! is encoded and how replies are read comes from the [`Target`].

mod conn;
mod driver;
#[cfg(test)]
mod tests;
mod window;
pub mod wire;

use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use crate::stats::{Live, Recorder};
use crate::users::Rng;
use crate::verify::Ack;
use driver::{Ctx, ThreadResult};
use wire::{Codec, RedisScript, RequestIds};

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// BUY. `order_no` is the order number proposed for it, which only the
    /// redis-direct baseline uses (the server makes its own).
    Buy {
        user: u64,
        goods: u64,
        order_no: u64,
    },
    GetGoods {
        goods: u64,
    },
    ListGoods,
    Pay {
        user: u64,
        order_no: u64,
    },
    Cancel {
        user: u64,
        order_no: u64,
    },
}

impl Op {
    /// The request's name, as the report shows its latency.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Buy { .. } => "buy",
            Op::GetGoods { .. } => "get_goods",
            Op::ListGoods => "list_goods",
            Op::Pay { .. } => "pay",
            Op::Cancel { .. } => "cancel",
        }
    }
}

/// What a workload gives a closed-loop connection that has room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this. `due`: the instant it was meant for, which its latency is
    /// counted from (none: from the send).
    Send { op: Op, due: Option<Instant> },
    /// Nothing is due before this instant.
    Wait(Instant),
    /// No more requests.
    Done,
}

/// What to send next; shared by every engine thread.
pub trait Workload: Sync {
    /// The next request, or `None` once the workload has no more.
    fn next(&self, rng: &mut Rng) -> Option<Op>;

    /// The next request due at `now`, for the closed loop. A workload whose
    /// requests have instants of their own (PAY at its time) overrides
    /// this; by default every request is due at once.
    fn next_at(&self, rng: &mut Rng, _now: Instant) -> Next {
        match self.next(rng) {
            Some(op) => Next::Send { op, due: None },
            None => Next::Done,
        }
    }
}

/// Whom the connections talk to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Seckill servers of one sale: the connections are spread over them
    /// round robin, connection k to `addrs[k % addrs.len()]`.
    Seckill {
        addrs: Vec<SocketAddr>,
        /// Each BUY with a client request id of its own, as the client
        /// crate sends them by default (the server then remembers each).
        request_ids: Option<RequestIds>,
    },
    RedisDirect {
        addr: SocketAddr,
        script: RedisScript,
        /// Each call's buyer with a request id of its own, as the server
        /// passes a BUY's.
        request_ids: Option<RequestIds>,
    },
}

impl Target {
    /// One seckill server.
    pub fn seckill(addr: SocketAddr) -> Target {
        Target::Seckill {
            addrs: vec![addr],
            request_ids: None,
        }
    }

    /// The servers, in the order connections are spread over them.
    pub fn addrs(&self) -> &[SocketAddr] {
        match self {
            Target::Seckill { addrs, .. } => addrs,
            Target::RedisDirect { addr, .. } => std::slice::from_ref(addr),
        }
    }

    fn codec(&self) -> Codec {
        match self {
            Target::Seckill { request_ids, .. } => Codec::seckill(request_ids.as_ref()),
            Target::RedisDirect {
                script,
                request_ids,
                ..
            } => Codec::redis(script.clone(), request_ids.as_ref()),
        }
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each connection keeps up to `pipeline` requests in flight; latency is
    /// counted from the send.
    Closed { pipeline: usize },
    /// `rate` requests/s in all, sent at their scheduled instants; at most
    /// `max_in_flight` per connection, the rest wait their turn with the
    /// clock running.
    Open { rate: f64, max_in_flight: usize },
}

/// A run's shape.
#[derive(Debug, Clone)]
pub struct Plan {
    pub connections: usize,
    pub threads: usize,
    pub pace: Pace,
    /// Stop sending after this long; `None`: when the workload runs out.
    pub duration: Option<Duration>,
    /// Once sending stops, how long to wait for the replies in flight.
    pub drain: Duration,
    /// Give up when nothing has been answered for this long.
    pub stall: Duration,
    pub seed: u64,
    /// Keep every BUY reply that carried an order number, and every PAY
    /// and CANCEL reply that settled an order, for verification.
    pub keep_acks: bool,
    /// Closed loop: a request answered `busy` is sent again after a pause
    /// (longer each time), up to this many times (0: never). Each try is
    /// timed and counted on its own.
    pub retry_busy: u32,
    /// Print a line per second on stderr (only if it is a terminal).
    pub live: bool,
    /// Processes whose CPU time to report (the server, then the stores).
    pub watch: Vec<u32>,
}

/// What a run measured, all threads merged.
#[derive(Debug, Clone)]
pub struct Finished {
    pub recorder: Recorder,
    pub acks: Vec<Ack>,
    /// The BUYs sent whose replies never came (counted as lost).
    pub lost_buys: Vec<LostBuy>,
    /// From the start to the last reply.
    pub elapsed: Duration,
    /// Connections that were greeted and took part.
    pub connected: usize,
    pub sent: u64,
    /// Each server of the target, in the target's order, with what it took.
    pub servers: Vec<(SocketAddr, ServerCounts)>,
    /// What each watched process spent over the run.
    pub cost: Vec<crate::cost::Cost>,
}

/// A BUY sent whose reply never came: it may or may not have made an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostBuy {
    pub user: u64,
    /// Which server of the target it went to (an index into its addresses).
    pub server: usize,
}

/// What one server of the target took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Connections given to it.
    pub connections: usize,
    /// Of those, greeted and carrying load.
    pub connected: usize,
    /// Its connections that failed, in setup or under load.
    pub connection_failures: u64,
    /// Replies it sent.
    pub answered: u64,
}

impl ServerCounts {
    fn merge(&mut self, other: &ServerCounts) {
        self.connections += other.connections;
        self.connected += other.connected;
        self.connection_failures += other.connection_failures;
        self.answered += other.answered;
    }
}

/// Runs `workload` against `target` as `plan` says.
pub fn run(plan: &Plan, target: &Target, workload: &dyn Workload) -> Finished {
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    let barrier = Barrier::new(threads);
    let start = OnceLock::new();
    let lives: Vec<Arc<Live>> = (0..threads).map(|_| Arc::default()).collect();
    let watches = crate::cost::Watch::start(&plan.watch);
    let results: Vec<ThreadResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let share =
                    plan.connections / threads + usize::from(index < plan.connections % threads);
                // The shares of the threads before this one: where its
                // connections start in the run's numbering.
                let first_conn =
                    index * (plan.connections / threads) + index.min(plan.connections % threads);
                let ctx = Ctx {
                    plan,
                    target,
                    workload,
                    barrier: &barrier,
                    start: &start,
                    live: lives[index].clone(),
                    index,
                    threads,
                    first_conn,
                };
                s.spawn(move || ctx.run(share))
            })
            .collect();
        if plan.live && std::io::stderr().is_terminal() {
            live_lines(&lives, &start, &handles);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut finished = Finished {
        recorder: Recorder::default(),
        acks: Vec::new(),
        lost_buys: Vec::new(),
        elapsed: Duration::ZERO,
        connected: 0,
        sent: 0,
        servers: target
            .addrs()
            .iter()
            .map(|&addr| (addr, ServerCounts::default()))
            .collect(),
        cost: Vec::new(),
    };
    for r in results {
        finished.recorder.merge(&r.recorder);
        finished.acks.extend(r.acks);
        finished.lost_buys.extend(r.lost_buys);
        finished.elapsed = finished.elapsed.max(r.elapsed);
        finished.connected += r.connected;
        finished.sent += r.sent;
        for ((_, total), counts) in finished.servers.iter_mut().zip(&r.servers) {
            total.merge(counts);
        }
    }
    let answered = finished.recorder.outcomes.answered();
    finished.cost = watches.iter().filter_map(|w| w.finish(answered)).collect();
    finished
}

/// One line per second while the threads run.
fn live_lines(
    lives: &[Arc<Live>],
    start: &OnceLock<Instant>,
    handles: &[std::thread::ScopedJoinHandle<'_, ThreadResult>],
) {
    let mut last = (0u64, 0u64, 0u64);
    let mut next = None;
    let mut latency = hdrhistogram::Histogram::<u32>::new_with_bounds(1, 3_600_000_000, 2)
        .expect("valid histogram bounds");
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let Some(&start) = start.get() else { continue };
        let next = next.get_or_insert(start + Duration::from_secs(1));
        if Instant::now() < *next {
            continue;
        }
        let second = (*next - start).as_secs();
        *next += Duration::from_secs(1);
        let sum = |f: fn(&Live) -> u64| lives.iter().map(|l| f(l)).sum::<u64>();
        let now = (
            sum(|l| l.answered.load(Ordering::Relaxed)),
            sum(|l| l.ok.load(Ordering::Relaxed)),
            sum(|l| l.errors.load(Ordering::Relaxed)),
        );
        latency.reset();
        lives.iter().for_each(|l| l.take_latency(&mut latency));
        let p99 = if latency.is_empty() {
            0
        } else {
            latency.value_at_quantile(0.99)
        };
        let _ = writeln!(
            std::io::stderr(),
            "[{second:>4}s] {:>8} req/s  ok {:>7}/s  errors {:>6}/s  p99 {:>9}  ({} answered)",
            now.0 - last.0,
            now.1 - last.1,
            now.2 - last.2,
            crate::report::human_us(p99),
            now.0,
        );
        last = now;
    }
}

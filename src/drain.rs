//! The queue drain (the `queued` ack mode): one thread that writes the
//! orders queued in the stock store to the order store, then acknowledges
//! them in the queue. In the `durable` mode on Redis it writes, at start
//! and before the sale opens, what servers that ran with `--ack queued`
//! left there ([`Drain::write_leftovers`]).
//!
//! Buyers were told "ok" when their order was queued, so nothing here
//! answers anyone, and a write that fails is retried (with backoff) until it
//! succeeds: MySQL may be down for a while; the queue keeps the orders. Every
//! write is idempotent on the order number, which is what makes it safe to
//! take over entries another consumer read but never acknowledged (a server
//! killed mid-write): they are written again, not twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::config::Config;
use crate::panics::{caught, survive};
use crate::sale::Sale;
use crate::stop::Stop;
use crate::store::{GoodsId, OrderQueue, OrderRecord, QueuedOrder, StoreError};

/// How long one read waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(200);
/// How often entries left unacknowledged by other consumers are looked for,
/// and how long they must have been idle to be taken over.
const CLAIM_EVERY: Duration = Duration::from_secs(10);
const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// Backoff between failed writes.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What became of a batch the drain wrote.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Written and acknowledged, but for `left` orders the order store
    /// refuses, left in the queue.
    Done { left: usize },
    /// The server is stopping and the order store still fails: the rest
    /// stays queued for the next start.
    Stopped,
}

pub struct Drain {
    sale: Arc<Sale>,
    queue: Arc<dyn OrderQueue>,
    consumer: String,
    batch_max: usize,
    stop: Stop,
    /// After a stop, how long a failing order store is retried before the
    /// entries are left in the queue for the next start.
    grace: Duration,
}

impl Drain {
    /// A drain of `queue` into the sale's order store. At `stop` it writes
    /// what is queued, then exits.
    pub fn new(config: &Config, sale: Arc<Sale>, queue: Arc<dyn OrderQueue>, stop: Stop) -> Drain {
        // Named after the node id leased at start, which no live server
        // shares.
        let consumer = format!("node-{}", sale.order_numbers().node().unwrap_or(0));
        Drain {
            sale,
            queue,
            consumer,
            batch_max: config.batch_max.max(1),
            stop,
            grace: config.shutdown_grace,
        }
    }

    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("queue-drain".into())
            .spawn(move || self.run())
    }

    /// The durable mode on Redis ([`crate::sale::Queues::Leftover`]): writes
    /// the orders queued servers left in the queues (a sale switched from
    /// `--ack queued`), at start, before the sale opens, so that BUYs and
    /// reads meet them in the order store as every durable order. Until
    /// then, reconciliations count them as held. Only goods whose queues
    /// hold entries are read, so that a durable server makes no queue (a
    /// read makes its consumer group). Passes go on while they write
    /// something; orders the order store refuses stay queued, counted as
    /// held, for an operator. A failed pass (a store down) is an error,
    /// for start-up to try again.
    pub fn write_leftovers(&self) -> Result<(), String> {
        loop {
            let goods = self
                .goods_with_entries()
                .map_err(|e| format!("reading the queues: {e}"))?;
            if goods.is_empty() {
                return Ok(());
            }
            warn!(
                "queue drain: {} goods hold orders queued by a server with --ack queued; writing them",
                goods.len()
            );
            let (claimed, claims_failed) = self.claim(&goods, Duration::ZERO);
            let read = self
                .read_all(&goods)
                .map_err(|e| format!("reading the queues: {e}"))?;
            if claims_failed {
                return Err("claiming the queues' entries failed".into());
            }
            if self.stop.is_triggered() {
                return Err("stopping".into());
            }
            if claimed + read == 0 {
                warn!("queue drain: the orders left queued cannot be written; they stay counted as held");
                return Ok(());
            }
        }
    }

    /// The goods of the catalog whose queues hold entries.
    fn goods_with_entries(&self) -> Result<Vec<GoodsId>, StoreError> {
        let mut goods = Vec::new();
        for id in self.sale.catalog().ids() {
            if self.queue.backlog(id)?.entries > 0 {
                goods.push(id);
            }
        }
        Ok(goods)
    }

    /// Reads and writes the new entries of `goods` until a read finds none;
    /// how many were written.
    fn read_all(&self, goods: &[GoodsId]) -> Result<usize, StoreError> {
        let mut written = 0;
        loop {
            let batch = self
                .queue
                .read(goods, &self.consumer, self.batch_max, Duration::ZERO)?;
            if batch.is_empty() {
                return Ok(written);
            }
            match self.write(&batch, None) {
                Written::Stopped => return Ok(written),
                Written::Done { left } => written += batch.len() - left,
            }
        }
    }

    fn run(self) {
        // Whatever any consumer left unacknowledged, this server's previous
        // life included, is written first.
        let catalog = self.sale.catalog();
        survive("the queue drain's claim", || {
            self.claim(&catalog.ids(), Duration::ZERO)
        });
        let mut last_claim = Instant::now();
        let mut stopped_at: Option<Instant> = None;
        loop {
            if stopped_at.is_none() && self.stop.is_triggered() {
                stopped_at = Some(Instant::now());
            }
            // Other servers may go on queuing orders as fast as this one
            // writes them, and the queue never read empty: past the grace
            // the rest is left to their drains, or to the next start.
            if stopped_at.is_some_and(|t| t.elapsed() > self.grace) {
                warn!("queue drain: stopping with orders still queued in Redis");
                return;
            }
            let goods = catalog.ids();
            // Once stopping, read without waiting: an empty read means done.
            let block = if stopped_at.is_some() {
                Duration::ZERO
            } else {
                READ_BLOCK
            };
            let batch = if goods.is_empty() {
                Some(Ok(Vec::new()))
            } else {
                survive("the queue drain's read", || {
                    self.queue
                        .read(&goods, &self.consumer, self.batch_max, block)
                })
            };
            match batch {
                Some(Ok(batch)) if batch.is_empty() => {
                    if stopped_at.is_some() {
                        return;
                    }
                    if goods.is_empty() {
                        thread::sleep(READ_BLOCK);
                    }
                }
                Some(Ok(batch)) => {
                    // A write that panicked leaves its entries pending, for
                    // a claim (this server's or another's) to write.
                    match survive("the queue drain's write", || self.write(&batch, stopped_at)) {
                        Some(Written::Stopped) => return,
                        Some(Written::Done { .. }) => {}
                        None => thread::sleep(RETRY_MAX),
                    }
                }
                // Logged once per outage by the store (a panic by
                // `survive`). Reads are retried; once stopping, the entries
                // wait for the next start.
                Some(Err(_)) | None => thread::sleep(RETRY_MAX),
            }
            if last_claim.elapsed() >= CLAIM_EVERY {
                survive("the queue drain's claim", || {
                    self.claim(&catalog.ids(), CLAIM_IDLE)
                });
                last_claim = Instant::now();
            }
        }
    }

    /// Takes over the entries of `goods` idle for `min_idle` and writes
    /// them; how many were written, and whether a claim failed.
    fn claim(&self, goods: &[GoodsId], min_idle: Duration) -> (usize, bool) {
        let (mut written, mut failed) = (0, false);
        for &goods in goods {
            loop {
                match self
                    .queue
                    .claim_stale(goods, &self.consumer, min_idle, self.batch_max)
                {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => {
                        info!(
                            "queue drain: took over {} unacknowledged orders of goods {goods}",
                            batch.len(),
                        );
                        // A batch short of the most is the end of what was
                        // pending: at start (any idle time) another claim
                        // would take what live servers read since, and are
                        // writing, for as long as the sale keeps them busy.
                        let last = batch.len() < self.batch_max;
                        match self.write(&batch, None) {
                            Written::Stopped => return (written, failed),
                            Written::Done { left } => {
                                written += batch.len() - left;
                                // What is left would be claimed again at
                                // once (at start any pending entry is idle
                                // enough): on to the next goods.
                                if left > 0 || last {
                                    break;
                                }
                            }
                        }
                    }
                    // Logged once per outage by the store; the other goods'
                    // entries are still taken over.
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        (written, failed)
    }

    /// Writes a batch until it sticks, acknowledging what is written, at
    /// most `batch_max` orders a transaction.
    ///
    /// A write the order store refuses as inconsistent (an order number
    /// another order has) or for a goods it does not have (a bug or a hand
    /// edit, never a passing fault: goods are never removed) would fail the
    /// same way forever, and retried,
    /// it would stop this drain, then each one that took the entries over.
    /// So the batch is written in halves down to the orders refused on
    /// their own, which are logged and left unacknowledged: pending, for an
    /// operator (and counted by reconciliations as queued). A write that
    /// panics is taken as such a refusal (its transaction rolled back as the
    /// panic unwound: SQLite's on the drop of the transaction, MySQL's by
    /// the server as the store closes the connection): else the order that makes it panic would make
    /// every claim of the queue panic, and the claims of the goods after
    /// it would never run.
    fn write(&self, batch: &[QueuedOrder], stopped_at: Option<Instant>) -> Written {
        self.write_with(batch, stopped_at, |orders| self.sale.write_queued(orders))
    }

    /// [`write`](Self::write), each part through `write_part`.
    fn write_with(
        &self,
        batch: &[QueuedOrder],
        stopped_at: Option<Instant>,
        write_part: impl Fn(&[OrderRecord]) -> Result<(), StoreError>,
    ) -> Written {
        let mut wait = RETRY_MIN;
        let mut stopped_at = stopped_at;
        let mut left = 0;
        // A read takes up to `batch_max` entries from each queue it reads:
        // written at most `batch_max` in a transaction, as the order writer
        // does, first part first.
        let mut parts: Vec<&[QueuedOrder]> = batch.chunks(self.batch_max).rev().collect();
        while let Some(part) = parts.pop() {
            let orders: Vec<OrderRecord> = part.iter().map(|q| q.order.clone()).collect();
            let written = caught("the queue drain's write", "written in halves", || {
                write_part(&orders)
            })
            .unwrap_or_else(|| Err(StoreError::Inconsistent("the write panicked".into())));
            match written {
                Ok(()) => {
                    self.ack(part);
                    wait = RETRY_MIN;
                }
                Err(StoreError::Inconsistent(_) | StoreError::UnknownGoods(_))
                    if part.len() > 1 =>
                {
                    let (first, second) = part.split_at(part.len() / 2);
                    parts.extend([second, first]);
                }
                Err(e @ (StoreError::Inconsistent(_) | StoreError::UnknownGoods(_))) => {
                    let o = &orders[0];
                    error!(
                        "queue drain: order {} of user {} for goods {} cannot be written ({e}); \
                         left in the queue, unacknowledged",
                        o.order_no, o.user_id, o.goods_id
                    );
                    left += 1;
                }
                Err(_) => {
                    if stopped_at.is_none() && self.stop.is_triggered() {
                        stopped_at = Some(Instant::now());
                    }
                    if stopped_at.is_some_and(|t| t.elapsed() > self.grace) {
                        let unwritten: usize = parts.iter().map(|p| p.len()).sum::<usize>();
                        warn!(
                            "queue drain: stopping with {} orders not written; they stay queued for the next start",
                            unwritten + part.len()
                        );
                        return Written::Stopped;
                    }
                    thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                    parts.push(part);
                }
            }
        }
        Written::Done { left }
    }

    /// Acknowledges written entries. One not acknowledged is written again
    /// later: harmless.
    fn ack(&self, written: &[QueuedOrder]) {
        let mut ids: BTreeMap<GoodsId, Vec<String>> = BTreeMap::new();
        for q in written {
            ids.entry(q.order.goods_id).or_default().push(q.id.clone());
        }
        for (goods, ids) in ids {
            let _ = self.queue.ack(goods, &ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use clap::Parser;
    use parking_lot::Mutex;
    use seckill_proto::{NewGoods, SaleRules};

    use super::*;
    use crate::metrics::Metrics;
    use crate::sale::Queues;
    use crate::store::fixtures::created;
    use crate::store::{Backlog, MemoryStock, OrderStore, SqliteStore};

    /// A queue that hands out `stale` on every claim and `to_read` at the
    /// first read that does not panic (the first panics if `panic_once`),
    /// and records acks.
    #[derive(Default)]
    struct Recorded {
        stale: Vec<QueuedOrder>,
        to_read: Mutex<Vec<QueuedOrder>>,
        panic_once: AtomicBool,
        /// Every read hands out one more order (other servers selling on).
        endless: AtomicBool,
        reads: AtomicUsize,
        claims: AtomicUsize,
        /// The ids of each ack.
        acked: Mutex<Vec<Vec<String>>>,
        /// Claims of this goods fail (its shard is down).
        claims_fail_for: Option<GoodsId>,
    }

    impl OrderQueue for Recorded {
        fn read(
            &self,
            _: &[GoodsId],
            _: &str,
            _: usize,
            _: Duration,
        ) -> Result<Vec<QueuedOrder>, StoreError> {
            if self.panic_once.swap(false, Ordering::SeqCst) {
                panic!("a read's bug");
            }
            let n = self.reads.fetch_add(1, Ordering::SeqCst) as u64;
            if self.endless.load(Ordering::SeqCst) {
                return Ok(vec![queued(&format!("2-{n}"), 1000 + n, 1000 + n, 1)]);
            }
            Ok(std::mem::take(&mut *self.to_read.lock()))
        }
        fn claim_stale(
            &self,
            goods: GoodsId,
            _: &str,
            _: Duration,
            _: usize,
        ) -> Result<Vec<QueuedOrder>, StoreError> {
            if self.claims_fail_for == Some(goods) {
                return Err(StoreError::Unavailable("its shard is down".into()));
            }
            // Bounded, so that a drain that claims on and on fails the test
            // rather than hangs it.
            match self.claims.fetch_add(1, Ordering::SeqCst) {
                0..100 => Ok(self.stale.clone()),
                _ => Ok(Vec::new()),
            }
        }
        fn ack(&self, _: GoodsId, ids: &[String]) -> Result<(), StoreError> {
            self.acked.lock().push(ids.to_vec());
            Ok(())
        }
        fn queued(&self, _: GoodsId) -> Result<Vec<OrderRecord>, StoreError> {
            Ok(Vec::new())
        }
        fn backlog(&self, _: GoodsId) -> Result<Backlog, StoreError> {
            Ok(Backlog::default())
        }
    }

    fn queued(id: &str, order_no: u64, user_id: u64, goods_id: GoodsId) -> QueuedOrder {
        QueuedOrder {
            id: id.into(),
            order: created(order_no, user_id, goods_id),
        }
    }

    /// A drain of `queue` with these flags into an embedded order store
    /// holding one goods, which it returns with the store.
    fn drain(
        dir: &tempfile::TempDir,
        queue: Arc<Recorded>,
        flags: &[&str],
    ) -> (Drain, Arc<SqliteStore>, GoodsId) {
        let orders = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let goods = orders
            .add_goods(
                &NewGoods {
                    name: "lamp".into(),
                    price_cents: 1,
                    stock: 10,
                    start_ms: 0,
                    end_ms: u64::MAX,
                    rules: SaleRules::default(),
                    buckets: 1,
                },
                None,
            )
            .unwrap()
            .id;
        let sale = Sale::open(
            Arc::new(MemoryStock::new()),
            orders.clone(),
            Queues::Acked(queue.clone()),
            1,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        let args = ["seckill-server", "--admin-token", "t"].iter().chain(flags);
        let config = Config::parse_from(args);
        let drain = Drain::new(&config, Arc::new(sale), queue, Stop::new());
        (drain, orders, goods)
    }

    /// An order the order store refuses (its number taken by another order,
    /// its goods unknown) is left in the queue, unacknowledged, and the
    /// rest of its batch is written; at start, the claim of such an entry
    /// does not go on for ever.
    #[test]
    fn an_order_the_store_refuses_is_left_and_the_rest_written() {
        let dir = tempfile::tempdir().unwrap();
        // The goods will be the store's first: 1.
        let bad = queued("0-2", 100, 2, 1);
        let queue = Arc::new(Recorded {
            stale: vec![bad.clone()],
            ..Recorded::default()
        });
        let (drain, orders, goods) = drain(&dir, queue.clone(), &[]);
        assert_eq!(goods, 1);
        let taken = queued("0-1", 100, 1, goods);
        orders
            .insert_orders(std::slice::from_ref(&taken.order))
            .unwrap();

        // And one of a goods the store does not have (SQLite says so as
        // an unknown goods, MySQL's foreign key as an inconsistency).
        let batch = [
            queued("1-1", 101, 3, goods),
            queued("1-2", 102, 4, goods),
            bad,
            queued("1-4", 104, 6, goods + 5),
            queued("1-3", 103, 5, goods),
        ];
        assert_eq!(drain.write(&batch, None), Written::Done { left: 2 });
        let mut acked = std::mem::take(&mut *queue.acked.lock()).concat();
        acked.sort();
        assert_eq!(acked, ["1-1", "1-2", "1-3"]);
        let mut users: Vec<u64> = orders
            .live_holders(goods)
            .unwrap()
            .iter()
            .map(|h| h.0)
            .collect();
        users.sort_unstable();
        assert_eq!(users, [1, 3, 4, 5], "the refused order is not written");

        drain.claim(&[goods], Duration::ZERO);
        assert_eq!(queue.claims.load(Ordering::SeqCst), 1);
        assert!(queue.acked.lock().is_empty());
    }

    /// A write that panics on an order is written in halves as one the
    /// store refuses: that order is left in the queue, the rest written.
    #[test]
    fn an_order_whose_write_panics_is_left_and_the_rest_written() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Recorded::default());
        let (drain, orders, goods) = drain(&dir, queue.clone(), &[]);
        let batch: Vec<QueuedOrder> = (1..=5)
            .map(|u| queued(&format!("1-{u}"), 100 + u, u, goods))
            .collect();
        let written = drain.write_with(&batch, None, |part| {
            if part.iter().any(|o| o.order_no == 103) {
                panic!("a write's bug");
            }
            drain.sale.write_queued(part)
        });
        assert_eq!(written, Written::Done { left: 1 });
        let mut acked = std::mem::take(&mut *queue.acked.lock()).concat();
        acked.sort();
        assert_eq!(acked, ["1-1", "1-2", "1-4", "1-5"]);
        assert_eq!(orders.live_holders(goods).unwrap().len(), 4);
    }

    /// A read takes up to `--batch-max` entries from each queue: they are
    /// written at most that many a transaction.
    #[test]
    fn a_read_of_many_queues_is_written_a_batch_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Recorded::default());
        let (drain, orders, goods) = drain(&dir, queue.clone(), &["--batch-max", "2"]);
        let batch: Vec<QueuedOrder> = (1..=5)
            .map(|u| queued(&format!("1-{u}"), 100 + u, u, goods))
            .collect();
        assert_eq!(drain.write(&batch, None), Written::Done { left: 0 });
        let sizes: Vec<usize> = queue.acked.lock().iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(orders.live_holders(goods).unwrap().len(), 5);
    }

    /// A read that panics does not end the drain's thread: the orders read
    /// after it are written, and the thread stops when asked.
    #[test]
    fn a_read_that_panics_does_not_end_the_drain() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Recorded {
            to_read: Mutex::new(vec![queued("1-1", 101, 3, 1)]),
            panic_once: AtomicBool::new(true),
            ..Recorded::default()
        });
        let (drain, orders, goods) = drain(&dir, queue.clone(), &[]);
        let stop = drain.stop.clone();
        let thread = drain.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.acked.lock().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!queue.panic_once.load(Ordering::SeqCst), "it panicked");
        assert_eq!(queue.acked.lock().concat(), ["1-1"]);
        assert_eq!(orders.live_holders(goods).unwrap().len(), 1);
        stop.trigger();
        thread.join().expect("the thread lived on");
    }

    /// Stopping while other servers go on queuing (every read hands out a
    /// new order): the drain writes what it reads for the shutdown grace,
    /// then leaves the rest queued and exits, rather than run as long as
    /// the sale does.
    #[test]
    fn a_stopping_drain_ends_while_others_go_on_queuing() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Recorded {
            endless: AtomicBool::new(true),
            ..Recorded::default()
        });
        let (drain, orders, goods) = drain(&dir, queue.clone(), &["--shutdown-grace", "300ms"]);
        drain.stop.trigger();
        let (done, ended) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            drain.run();
            let _ = done.send(());
        });
        assert!(
            ended.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the drain ran on ({} reads)",
            queue.reads.load(Ordering::SeqCst)
        );
        assert!(
            queue.reads.load(Ordering::SeqCst) > 1,
            "it read on while stopping"
        );
        assert_eq!(
            orders.live_holders(goods).unwrap().len(),
            queue.acked.lock().concat().len(),
            "an order read but not written, or written but not acked"
        );
    }

    /// A claim takes what is pending once: a batch short of the most ends
    /// it. Pending entries come back at every claim here, as the entries
    /// live servers read and are writing would during a busy sale; the
    /// claim at start took them on and on, until the sale calmed down.
    #[test]
    fn a_claim_takes_over_what_is_pending_once() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Recorded {
            stale: vec![queued("1-1", 10, 1, 1)],
            ..Recorded::default()
        });
        let (drain, _orders, goods) = drain(&dir, queue.clone(), &[]);
        assert_eq!(drain.claim(&[goods], Duration::ZERO), (1, false));
        assert_eq!(queue.claims.load(Ordering::SeqCst), 1);
    }

    /// A goods whose claim fails does not keep the next goods' pending
    /// entries from being taken over.
    #[test]
    fn a_claim_that_fails_for_one_goods_goes_on_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(Recorded {
            stale: vec![queued("1-1", 10, 1, 1)],
            claims_fail_for: Some(7),
            ..Recorded::default()
        });
        let (drain, _orders, goods) = drain(&dir, queue.clone(), &[]);
        assert_eq!(drain.claim(&[7, goods], Duration::ZERO), (1, true));
        assert_eq!(queue.acked.lock().concat(), ["1-1"]);
    }
}

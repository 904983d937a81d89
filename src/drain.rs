//! The queue drain (the `queued` ack mode): one thread that writes the
//! orders queued in the stock store to the order store, then acknowledges
//! them in the queue.
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

use log::{info, warn};

use crate::config::Config;
use crate::sale::Sale;
use crate::stop::Stop;
use crate::store::{GoodsId, OrderQueue, OrderRecord, QueuedOrder};

/// How long one read waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(200);
/// How often entries left unacknowledged by other consumers are looked for,
/// and how long they must have been idle to be taken over.
const CLAIM_EVERY: Duration = Duration::from_secs(10);
const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// Backoff between failed writes.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

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

    fn run(self) {
        // Whatever any consumer left unacknowledged, this server's previous
        // life included, is written first.
        self.claim(Duration::ZERO);
        let mut last_claim = Instant::now();
        let mut stopped_at: Option<Instant> = None;
        loop {
            if stopped_at.is_none() && self.stop.is_triggered() {
                stopped_at = Some(Instant::now());
            }
            let goods: Vec<GoodsId> = self.sale.catalog().all().iter().map(|e| e.id).collect();
            // Once stopping, read without waiting: an empty read means done.
            let block = if stopped_at.is_some() {
                Duration::ZERO
            } else {
                READ_BLOCK
            };
            let batch = if goods.is_empty() {
                Ok(Vec::new())
            } else {
                self.queue
                    .read(&goods, &self.consumer, self.batch_max, block)
            };
            match batch {
                Ok(batch) if batch.is_empty() => {
                    if stopped_at.is_some() {
                        return;
                    }
                    if goods.is_empty() {
                        thread::sleep(READ_BLOCK);
                    }
                }
                Ok(batch) => {
                    if !self.write(&batch, stopped_at) {
                        return;
                    }
                }
                // Logged once per outage by the store. Reads are retried;
                // once stopping, the entries wait for the next start.
                Err(_) => {
                    if stopped_at.is_some_and(|t| t.elapsed() > self.grace) {
                        warn!("queue drain: stopping with orders still queued in Redis");
                        return;
                    }
                    thread::sleep(RETRY_MAX);
                }
            }
            if last_claim.elapsed() >= CLAIM_EVERY {
                self.claim(CLAIM_IDLE);
                last_claim = Instant::now();
            }
        }
    }

    /// Takes over entries idle for `min_idle` and writes them.
    fn claim(&self, min_idle: Duration) {
        for entry in self.sale.catalog().all() {
            loop {
                match self
                    .queue
                    .claim_stale(entry.id, &self.consumer, min_idle, self.batch_max)
                {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => {
                        info!(
                            "queue drain: took over {} unacknowledged orders of goods {}",
                            batch.len(),
                            entry.id
                        );
                        if !self.write(&batch, None) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }
    }

    /// Writes a batch until it sticks, then acknowledges it. Returns false
    /// if it gave up because the server is stopping.
    fn write(&self, batch: &[QueuedOrder], stopped_at: Option<Instant>) -> bool {
        let orders: Vec<OrderRecord> = batch.iter().map(|q| q.order.clone()).collect();
        let mut wait = RETRY_MIN;
        let mut stopped_at = stopped_at;
        while self.sale.write_queued(&orders).is_err() {
            if stopped_at.is_none() && self.stop.is_triggered() {
                stopped_at = Some(Instant::now());
            }
            if stopped_at.is_some_and(|t| t.elapsed() > self.grace) {
                warn!(
                    "queue drain: stopping with {} orders not written; they stay queued for the next start",
                    batch.len()
                );
                return false;
            }
            thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
        let mut ids: BTreeMap<GoodsId, Vec<String>> = BTreeMap::new();
        for q in batch {
            ids.entry(q.order.goods_id).or_default().push(q.id.clone());
        }
        for (goods, ids) in ids {
            // An entry not acknowledged is written again later: harmless.
            let _ = self.queue.ack(goods, &ids);
        }
        true
    }
}

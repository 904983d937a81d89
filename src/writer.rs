//! The order writer: one thread that turns reserved orders into durable
//! rows, a batch per transaction, and only then answers the buyers.
//!
//! Group commit happens by itself: while one transaction commits, the next
//! orders queue up, and they all go into the next transaction.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::Receiver;

use crate::config::Config;
use crate::dispatch::{panicked, unless_panicked, Reactors};
use crate::metrics;
use crate::sale::Sale;
use crate::worker::Pending;

pub struct Writer {
    queue: Receiver<Pending>,
    sale: Arc<Sale>,
    reactors: Reactors,
    batch_max: usize,
}

impl Writer {
    pub fn new(
        config: &Config,
        queue: Receiver<Pending>,
        sale: Arc<Sale>,
        reactors: Reactors,
    ) -> Self {
        Writer {
            queue,
            sale,
            reactors,
            batch_max: config.batch_max.max(1),
        }
    }

    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("order-writer".into())
            .spawn(move || self.run())
    }

    /// Runs until every worker has gone and the queue is empty.
    fn run(self) {
        let mut origins = Vec::with_capacity(self.batch_max);
        let mut orders = Vec::with_capacity(self.batch_max);
        while let Ok(first) = self.queue.recv() {
            for p in std::iter::once(first).chain(self.queue.try_iter().take(self.batch_max - 1)) {
                origins.push(p.origin);
                orders.push(p.order);
            }
            metrics::sub(
                &self.sale.metrics().orders_awaiting_writer,
                orders.len() as u64,
            );
            let batch = std::mem::take(&mut orders);
            let replies = unless_panicked("an order batch", || self.sale.commit(batch))
                .unwrap_or_else(|| vec![panicked(); origins.len()]);
            self.reactors.complete_all(origins.drain(..).zip(replies));
        }
    }
}

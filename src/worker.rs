//! The worker pool: threads that take jobs from the bounded job channel and
//! talk to the stores. This is where blocking is allowed.
//!
//! A worker drains whatever is queued (up to a batch) each time it wakes, and
//! groups the BUYs by goods: all pending BUYs of one goods become one call to
//! the stock store. Under a flash crowd the queue is long, so batches are
//! large exactly when merging pays most.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use seckill_proto::{Reply, Status};

use crate::dispatch::{Job, Origin, Reactors, Task};
use crate::sale::{Buy, Decision, Sale};
use crate::store::GoodsId;
use crate::writer::Pending;

pub struct Worker {
    jobs: Receiver<Job>,
    sale: Arc<Sale>,
    reactors: Reactors,
    writer: Sender<Pending>,
    batch_max: usize,
}

impl Worker {
    pub fn new(
        jobs: Receiver<Job>,
        sale: Arc<Sale>,
        reactors: Reactors,
        writer: Sender<Pending>,
        batch_max: usize,
    ) -> Self {
        Worker {
            jobs,
            sale,
            reactors,
            writer,
            batch_max: batch_max.max(1),
        }
    }

    pub fn spawn(self, index: usize) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || self.run())
    }

    /// Runs until every reactor has dropped its end of the job channel and
    /// the queue is empty: at shutdown, in-flight work is finished.
    fn run(self) {
        let mut buys: HashMap<GoodsId, Vec<(Origin, Buy)>> = HashMap::new();
        while let Ok(first) = self.jobs.recv() {
            let batch = std::iter::once(first).chain(self.jobs.try_iter().take(self.batch_max - 1));
            for job in batch {
                let reply = match job.task {
                    Task::Buy { user, goods, token } => {
                        let buy = Buy { user, token };
                        buys.entry(goods).or_default().push((job.origin, buy));
                        continue;
                    }
                    Task::OrderStatus { user, goods } => self.sale.order_status(user, goods),
                    Task::Pay { user, order_no } => self.sale.pay(user, order_no),
                    Task::Cancel { user, order_no } => self.sale.cancel(user, order_no),
                    Task::ListOrders { user } => self.sale.list_orders(user),
                    Task::Token { user, goods } => self.sale.issue_token(user, goods),
                    Task::SaleControl { goods, action } => self.sale.control(goods, action),
                    Task::AddGoods(new) => self.sale.add_goods(&new),
                    Task::Restock { goods, amount } => self.sale.restock(goods, amount),
                    Task::Reconcile { goods } => self.sale.reconcile_reply(goods),
                };
                self.reactors.complete(job.origin, reply);
            }
            for (goods, buyers) in buys.drain() {
                self.buy(goods, &buyers);
            }
        }
    }

    fn buy(&self, goods: GoodsId, buyers: &[(Origin, Buy)]) {
        let buys: Vec<Buy> = buyers.iter().map(|&(_, buy)| buy).collect();
        let decisions = self.sale.reserve(goods, &buys);
        for (&(origin, _), decision) in buyers.iter().zip(decisions) {
            match decision {
                Decision::Answer(reply) => self.reactors.complete(origin, reply),
                Decision::Write(order) => {
                    if let Err(e) = self.writer.send(Pending { origin, order }) {
                        // Only possible if the writer thread died. The unit
                        // stays reserved with no order: never oversold, and
                        // returned to sale at the next start.
                        log::error!(
                            "order writer is gone; order {} not written",
                            e.0.order.order_no
                        );
                        if let Some(entry) = self.sale.catalog.get(goods) {
                            // Never to be committed: reconciliation must not
                            // wait for it, and returns the unit.
                            entry.settled(1);
                            entry.mark_unsure();
                        }
                        let reply = Reply::error(Status::InternalError, "order writer unavailable");
                        self.reactors.complete(origin, reply);
                    }
                }
            }
        }
    }
}

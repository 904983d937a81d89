//! The BUY workers: threads that take BUYs and the buyers' other requests
//! (ORDER_STATUS, PAY, CANCEL, LIST_ORDERS, TOKEN) from the bounded job
//! channel and talk to the stores. This is where blocking is allowed.
//!
//! A worker drains whatever is queued (up to a batch) each time it wakes, and
//! groups the BUYs by goods: all pending BUYs of one goods become one call to
//! the stock store. Under a flash crowd the queue is long, so batches are
//! large exactly when merging pays most. A reserved unit goes on to the order
//! writer as a [`PendingOrder`], which answers the buyer once it is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use seckill_proto::{Reply, Request, Status};

use crate::config::Config;
use crate::dispatch::{panicked, unless_panicked, Job, Origin, Reactors};
use crate::metrics;
use crate::sale::{Buy, Decision, PendingOrder, Sale};
use crate::store::GoodsId;

/// An order whose unit is reserved, on its way to the order writer, with
/// whom to answer once it is written.
pub struct Pending {
    pub origin: Origin,
    pub order: PendingOrder,
}

pub struct Worker {
    jobs: Receiver<Job>,
    sale: Arc<Sale>,
    reactors: Reactors,
    writer: Sender<Pending>,
    batch_max: usize,
}

impl Worker {
    /// Starts `config.workers` workers on one job queue, each thread put in
    /// `into` as it starts: should a spawn fail part of the way, those
    /// already running are stopped and joined with the rest.
    pub fn spawn_pool(
        config: &Config,
        jobs: &Receiver<Job>,
        writer: &Sender<Pending>,
        sale: &Arc<Sale>,
        reactors: &Reactors,
        into: &mut Vec<JoinHandle<()>>,
    ) -> std::io::Result<()> {
        for index in 0..config.workers.max(1) {
            let worker = Worker {
                jobs: jobs.clone(),
                sale: sale.clone(),
                reactors: reactors.clone(),
                writer: writer.clone(),
                batch_max: config.batch_max.max(1),
            };
            into.push(
                thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(())
    }

    /// Runs until every reactor has dropped its end of the job channel and
    /// the queue is empty: at shutdown, in-flight work is finished.
    fn run(self) {
        let mut buys: HashMap<GoodsId, Vec<(Origin, Buy)>> = HashMap::new();
        while let Ok(first) = self.jobs.recv() {
            let batch = std::iter::once(first).chain(self.jobs.try_iter().take(self.batch_max - 1));
            for job in batch {
                match job.request {
                    Request::Buy {
                        user_id,
                        goods_id,
                        token,
                        request_id,
                    } => {
                        let buy = Buy {
                            user: user_id,
                            token,
                            request_id,
                        };
                        buys.entry(goods_id).or_default().push((job.origin, buy));
                    }
                    request => {
                        let reply = unless_panicked("a request", || self.sale.serve(request));
                        self.reactors
                            .complete(job.origin, reply.unwrap_or_else(panicked));
                    }
                }
            }
            for (goods, buyers) in buys.drain() {
                self.buy(goods, &buyers);
            }
        }
    }

    fn buy(&self, goods: GoodsId, buyers: &[(Origin, Buy)]) {
        let buys: Vec<Buy> = buyers.iter().map(|&(_, buy)| buy).collect();
        let Some(decisions) = unless_panicked("a reservation", || self.sale.reserve(goods, &buys))
        else {
            let failed = buyers.iter().map(|&(origin, _)| (origin, panicked()));
            self.reactors.complete_all(failed);
            return;
        };
        let mut answers = Vec::new();
        let mut orders = Vec::new();
        for (&(origin, _), decision) in buyers.iter().zip(decisions) {
            match decision {
                Decision::Answer(reply) => answers.push((origin, reply)),
                Decision::Write(order) => orders.push(Pending { origin, order }),
            }
        }
        // The answers first, all at once: they need not wait for the
        // writer's queue, which may be full while the order store is slow.
        self.reactors.complete_all(answers);
        let mut unwritten = Vec::new();
        for pending in orders {
            // Counted before the send, so the writer's subtraction never
            // runs ahead of it.
            let backlog = &self.sale.metrics().orders_awaiting_writer;
            metrics::add(backlog, 1);
            // Fails only if the writer thread died (nothing else holds the
            // receiver, so a dead writer cannot leave the workers blocked on
            // a full queue). The order is dropped with the error, which
            // leaves its unit reserved for the next reconciliation: never
            // oversold.
            if let Err(e) = self.writer.send(pending) {
                metrics::sub(backlog, 1);
                log::error!(
                    "order writer is gone; order {} not written",
                    e.0.order.order().order_no
                );
                let reply = Reply::error(Status::InternalError, "order writer unavailable");
                unwritten.push((e.0.origin, reply));
            }
        }
        self.reactors.complete_all(unwritten);
    }
}

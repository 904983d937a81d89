//! Writing orders: the order writer's batches of [`PendingOrder`]s in the
//! `durable` mode, and the queue drain's batches in the `queued` mode.

use std::collections::{BTreeMap, BTreeSet};

use log::{error, warn};
use seckill_proto::{OrderState, Reply, RequestId, Status, NO_TOKEN};

use super::{by_goods, now_ms, store_failure, PendingOrder, Sale};
use crate::metrics;
use crate::store::{Epoch, GoodsId, OrderRecord, StoreError, Unmade, Written};
use crate::telemetry::StoreCall;

impl Sale {
    /// Writes reserved orders in one transaction and returns the reply for
    /// each, in order. Written orders join the catalog. Units whose orders
    /// were not written go back to the stock store: all of them when the
    /// write failed, and each one the database refused as a second order of
    /// its user (that user is told the order they hold). When the write's
    /// outcome is unknown, the units stay reserved and their goods in doubt
    /// until a reconciliation reads what the order store holds: releasing
    /// them could sell them twice.
    pub fn commit(&self, batch: Vec<PendingOrder>) -> Vec<Reply> {
        let orders: Vec<OrderRecord> = batch.iter().map(|p| p.order().clone()).collect();
        let epochs: Vec<Epoch> = batch.iter().map(PendingOrder::epoch).collect();
        let requests: Vec<Option<RequestId>> = batch.iter().map(PendingOrder::request_id).collect();
        let timing = &self.metrics.timing;
        timing.order_commit(orders.len());
        let written = match timing.store_call(StoreCall::Commit, || {
            // The request ids go with the orders only for a stock store that
            // forgets them at a restart.
            if self.stock.forgets_requests() {
                self.orders
                    .commit_requested_orders(&orders, &epochs, &requests)
            } else {
                self.orders.commit_orders(&orders, &epochs)
            }
        }) {
            Ok(written) => written,
            Err(e) => {
                metrics::add(&self.metrics.order_batches_failed, 1);
                let reply = store_failure("order store", &e);
                if !matches!(e, StoreError::Indeterminate(_)) {
                    // Nothing was written: every unit goes back, and every
                    // request id and token is free for its BUY's retry.
                    metrics::add(&self.metrics.busy, orders.len() as u64);
                    self.release(&orders);
                    self.forget_unmade(batch.iter());
                    batch.into_iter().for_each(PendingOrder::settle);
                }
                // Dropped unsettled otherwise: in doubt.
                return vec![reply; orders.len()];
            }
        };
        metrics::add(&self.metrics.order_batches, 1);
        let mut replies = Vec::with_capacity(orders.len());
        let mut kept = Vec::with_capacity(orders.len());
        let mut unsold = Vec::new();
        let mut never: Vec<&PendingOrder> = Vec::new();
        for (((o, w), &epoch), pending) in orders.iter().zip(written).zip(&epochs).zip(&batch) {
            if matches!(
                w,
                Written::Duplicate(_) | Written::Fenced | Written::SoldOut
            ) {
                never.push(pending);
            }
            match w {
                Written::Stored => {
                    kept.push(o);
                    replies.push(Reply::Bought {
                        order_no: o.order_no,
                    });
                }
                Written::Duplicate(order_no) => {
                    unsold.push(o);
                    replies.push(Reply::AlreadyBought { order_no });
                }
                // Reconciled meanwhile (by any server): its unit was counted
                // back into stock by that reconciliation, and must not be
                // released again. The buyer tries again.
                // The stock store sold a unit the goods does not have (it
                // lost a deduction): never written, never released; the
                // goods is reconciled, which counts it sold out.
                Written::SoldOut => {
                    metrics::add(&self.metrics.buy_sold_out, 1);
                    if let Some(entry) = self.catalog.get(o.goods_id) {
                        if !entry.gate.is_unsure() {
                            error!(
                                "goods {}: the stock store sold more units than the goods has; reconciling",
                                o.goods_id
                            );
                        }
                        entry.gate.mark_unsure();
                    }
                    replies.push(Reply::error(Status::SoldOut, "sold out"));
                }
                Written::Fenced => {
                    metrics::add(&self.metrics.busy, 1);
                    if let Some(entry) = self.catalog.get(o.goods_id) {
                        entry.gate.note_fenced(epoch, now_ms());
                    }
                    replies.push(Reply::error(
                        Status::Busy,
                        "the stock was reconciled while this order was written, retry",
                    ));
                }
            }
        }
        metrics::add(&self.metrics.orders_written, kept.len() as u64);
        metrics::add(&self.metrics.buy_ok, kept.len() as u64);
        for (goods, holders) in by_goods(kept) {
            if let Some(entry) = self.catalog.get(goods) {
                entry.holders.add(holders);
            }
        }
        self.release(unsold);
        self.forget_unmade(never);
        // Last: a reconciliation waiting for these units then finds their
        // holders in the catalog and their units back in stock.
        batch.into_iter().for_each(PendingOrder::settle);
        replies
    }

    /// Forgets what names orders that will never exist: their request ids,
    /// so that a retry of their BUY is decided afresh rather than told for
    /// an hour that its order is being written, and their tokens' marks, so
    /// that a retry with the same token buys (a token is spent only by a
    /// BUY that makes an order). Best effort: an id left behind is
    /// forgotten when a retry finds its order long gone (see `buy.rs`); a
    /// token left marked stays spent (its BUY is told `token_used`, and asks
    /// for a new one).
    fn forget_unmade<'a>(&self, pending: impl IntoIterator<Item = &'a PendingOrder>) {
        let mut by_goods: BTreeMap<GoodsId, Vec<Unmade>> = BTreeMap::new();
        for p in pending {
            let unmade = p.unmade();
            if unmade.request_id.is_some() || unmade.token != NO_TOKEN {
                by_goods.entry(p.order().goods_id).or_default().push(unmade);
            }
        }
        for (goods, unmade) in by_goods {
            if let Err(e) = self.stock.forget_unmade(goods, &unmade) {
                warn!(
                    "forgetting the request ids and tokens of {} orders of goods {goods}: {e}",
                    unmade.len()
                );
            }
        }
    }

    /// Writes orders drained from the queue (the `queued` ack mode). Their
    /// buyers were told "ok" already, so a failed write is retried by the
    /// caller, never answered. An order the database refuses as a second
    /// order of its user means the stock store had lost that user's first
    /// order (a failover to a replica that lacked it, a restart without
    /// persistence): the loss is logged, and the user keeps the order the
    /// database holds.
    ///
    /// Such an order is written as cancelled: its queue entry may be read
    /// again (an acknowledgement lost, a crash), and by then the user's
    /// other order may be gone, so that the order would be written live
    /// after all. Its unit is not released but the goods reconciled: the
    /// stock store may have lost the first order's deduction with its
    /// holder, and then this unit is that order's, counted sold by the
    /// database; released, it would be sold twice, and the database does
    /// not refuse queued orders past the total (their buyers were told
    /// "ok"). The reconciliation counts what the order store holds.
    ///
    /// An order written late (the order store was down, the backlog long)
    /// gets its whole payment window from when it is written, if that ends
    /// later: until then its PAY was answered `busy`, and the window could
    /// have run out before the buyer could ever pay.
    pub fn write_queued(&self, orders: &[OrderRecord]) -> Result<(), StoreError> {
        let now = now_ms();
        let late: Vec<OrderRecord>;
        let orders = if orders.iter().any(|o| written_late(o, now)) {
            late = orders.iter().map(|o| payable_from(o, now)).collect();
            &late[..]
        } else {
            orders
        };
        let timing = &self.metrics.timing;
        timing.order_commit(orders.len());
        let written = timing.store_call(StoreCall::Commit, || self.orders.insert_orders(orders))?;
        let mut refused = Vec::new();
        for (o, w) in orders.iter().zip(written) {
            if let Written::Duplicate(held) = w {
                error!(
                    "queued order {} of user {} for goods {} duplicates order {held}; written as cancelled, reconciling the goods",
                    o.order_no, o.user_id, o.goods_id
                );
                refused.push(OrderRecord {
                    state: OrderState::Cancelled,
                    ..o.clone()
                });
            }
        }
        if !refused.is_empty() {
            self.orders.insert_orders(&refused)?;
        }
        metrics::add(&self.metrics.order_batches, 1);
        metrics::add(
            &self.metrics.orders_written,
            (orders.len() - refused.len()) as u64,
        );
        let goods: BTreeSet<GoodsId> = refused.iter().map(|o| o.goods_id).collect();
        for entry in goods.into_iter().filter_map(|g| self.catalog.get(g)) {
            entry.gate.mark_unsure();
            self.request_repair(&entry);
        }
        Ok(())
    }
}

/// How long after its BUY a queued order may be written before its payment
/// window is moved: beyond any normal backlog, so that the deadline a
/// buyer read before the write stays the deadline.
const WRITTEN_LATE_MS: u64 = 10_000;

fn written_late(o: &OrderRecord, now_ms: u64) -> bool {
    now_ms.saturating_sub(o.created_ms) > WRITTEN_LATE_MS
}

/// The order with its window counted from `now_ms` if it was written late
/// and that ends later.
fn payable_from(o: &OrderRecord, now_ms: u64) -> OrderRecord {
    let window = o.pay_by_ms.saturating_sub(o.created_ms);
    OrderRecord {
        pay_by_ms: match written_late(o, now_ms) {
            true => o.pay_by_ms.max(now_ms.saturating_add(window)),
            false => o.pay_by_ms,
        },
        ..o.clone()
    }
}

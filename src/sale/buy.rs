//! BUY on a worker: every pending BUY of one goods decided by one merged
//! call to the stock store.

use std::collections::HashMap;

use seckill_proto::{OrderState, Reply, RequestId, Status};

use log::warn;

use super::{now_ms, order_no, store_failure, unknown_goods, Entry, PendingOrder, Sale};
use crate::metrics;
use crate::store::{
    Buyer, Closed, GoodsId, OrderNo, OrderRecord, Reservation, ReserveRules, StoreError,
    TokenRefusal, UserId,
};
use crate::telemetry::StoreCall;

/// How old an order a request id names must be, unwritten, before the id is
/// taken to be abandoned: far beyond any write's timeouts and retries.
const ABANDONED_AFTER_MS: u64 = 60_000;

/// One BUY as a worker hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buy {
    pub user: UserId,
    /// The purchase token it carried (`NO_TOKEN` when none).
    pub token: u64,
    /// The client request id it carried, if any: the name of the purchase,
    /// the same on every retry of it, to any server. A BUY whose id already
    /// made an order is to be answered with that order (PROTOCOL.md,
    /// section 9); the stock store does not look at it yet, so for now a
    /// BUY is decided the same with or without one.
    pub request_id: Option<RequestId>,
}

/// What a worker does with one BUY after the stock store has decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A unit is reserved: hand the order to the order writer, which
    /// answers once it is written.
    Write(PendingOrder),
    /// Answer now.
    Answer(Reply),
}

impl Sale {
    /// Decides the BUYs of one goods with one call to the stock store.
    /// Returns one decision per BUY, in order.
    pub fn reserve(&self, goods: GoodsId, buys: &[Buy]) -> Vec<Decision> {
        let answer_all = |reply: Reply| {
            buys.iter()
                .map(|_| Decision::Answer(reply.clone()))
                .collect()
        };
        let busy_all = |why: &str| {
            metrics::add(&self.metrics.busy, buys.len() as u64);
            answer_all(Reply::error(Status::Busy, why))
        };
        let Some(entry) = self.catalog.get(goods) else {
            return answer_all(unknown_goods(goods));
        };
        metrics::add(&self.metrics.stock_calls, 1);
        metrics::add(&self.metrics.stock_buys, buys.len() as u64);
        const IN_DOUBT: &str = "stock being reconciled after a store fault, retry later";
        // Not while a reconciliation or restock holds the goods across
        // store I/O: answered rather than kept waiting.
        let Some(gate) = entry.gate.enter_for_buy() else {
            return busy_all(IN_DOUBT);
        };
        // Selling now could meet reservations that have no order: the
        // goods is reconciled first, by the admin worker. Looked at under
        // the gate, which a restock holds alone: one in doubt marks the
        // goods before it lets go, and a sale from the stock store would
        // report the units it may have added as none left.
        if entry.gate.is_unsure() {
            self.request_repair(&entry);
            return busy_all(IN_DOUBT);
        }
        // Checked again under the gate, which a sale control takes alone,
        // and with the clock read now (waiting for the gate takes time):
        // once a pause or an end is answered, no BUY queued before it sells.
        // A batch with a repeat (a BUY sent again under its request id)
        // goes to the stock store anyway, which answers a repeat with its
        // first order before it looks at the controls.
        let repeats = buys
            .iter()
            .any(|b| b.request_id.is_some_and(RequestId::is_repeat));
        if let Some(closed) = entry.view.closed(now_ms()).filter(|_| !repeats) {
            return answer_all(closed);
        }
        // No numbers without this server's node id lease (not leased yet, or
        // lost and not leased again): numbers another server might make too
        // are never handed out.
        let Some(order_nos) = self.order_nos.take(buys.len()) else {
            return busy_all("no node id leased for order numbers, retry later");
        };
        let buyers: Vec<Buyer> = buys
            .iter()
            .zip(order_nos)
            .map(|(b, order_no)| Buyer {
                user: b.user,
                order_no,
                token: b.token,
                // The purchase's name, without the repeat mark: the same on
                // every send, which is what the stock store records.
                request_id: b.request_id.and_then(RequestId::purchase),
            })
            .collect();
        let created_ms = now_ms();
        let rules = ReserveRules {
            per_user_limit: entry.view.rules.per_user_limit,
            token_required: entry.view.rules.token_required,
            now_ms: created_ms,
            pay_by_ms: created_ms.saturating_add(entry.view.rules.pay_window_ms),
        };
        let timing = &self.metrics.timing;
        timing.stock_call(buyers.len());
        let reserved = match timing.store_call(StoreCall::Reserve, || {
            self.stock.reserve(goods, &rules, &buyers)
        }) {
            Ok(r) => r,
            Err(e) => {
                drop(gate);
                match e {
                    // The stock store lost this goods (a Redis restart):
                    // reload it from the order store, then buyers can retry.
                    StoreError::NotLoaded(_) => {
                        entry.gate.mark_unsure();
                        self.request_repair(&entry);
                    }
                    // The deduction may have run (the link failed after
                    // sending, or its answer could not be read): its
                    // reservations have no orders (durable mode) and must
                    // not stay, which the next reconciliation sees to.
                    StoreError::Indeterminate(_) | StoreError::Inconsistent(_) => {
                        entry.gate.mark_unsure()
                    }
                    _ => metrics::add(&self.metrics.busy, buys.len() as u64),
                }
                return answer_all(store_failure("stock store", &e));
            }
        };
        let queued = self.queues.acked().is_some();
        let written_elsewhere = self.held_elsewhere(&entry, &buyers, &reserved.decisions);
        let state = |order_no: OrderNo| {
            written_elsewhere
                .as_ref()
                .and_then(|w| w.get(&order_no).copied())
        };
        let written = |order_no: OrderNo| state(order_no).is_some();
        // Under the gate, so that a stale count cannot land after a restock
        // or a reconciliation and leave the sold-out flag wrongly set.
        entry.view.set_remaining(reserved.remaining);
        // Held for an order the order store has cancelled: the server that
        // cancelled it died before it gave the unit back. Given back here
        // (a release of a pair no longer held does nothing), and the buyer,
        // told nothing was done, buys afresh on the retry.
        let cancelled: Vec<(UserId, OrderNo)> = buyers
            .iter()
            .zip(&reserved.decisions)
            .filter_map(|(b, d)| match *d {
                Reservation::Held(order_no) if state(order_no) == Some(OrderState::Cancelled) => {
                    Some((b.user, order_no))
                }
                _ => None,
            })
            .collect();
        if !cancelled.is_empty() {
            warn!(
                "goods {goods}: {} cancelled orders still held their units; giving them back",
                cancelled.len()
            );
            match self.stock.release(goods, &cancelled) {
                Ok(left) => entry.view.set_remaining(left),
                // Still held (a reconciliation froze the goods, the store
                // failed): the next reconciliation gives them back.
                Err(e) => {
                    warn!("goods {goods}: giving back the units of cancelled orders: {e}");
                    entry.gate.mark_unsure();
                }
            }
        }
        if queued {
            // Also under the gate: a reconciliation after it then finds
            // these holders in the catalog already, and one before it cannot
            // have loaded them (they were not queued yet).
            let acknowledged: Vec<_> = buyers
                .iter()
                .zip(&reserved.decisions)
                .filter(|(_, d)| **d == Reservation::Reserved)
                .map(|(b, _)| (b.user, b.order_no))
                .collect();
            metrics::add(&self.metrics.buy_ok, acknowledged.len() as u64);
            entry.holders.add(acknowledged);
        }
        // Made under the gate too: a reconciliation, which takes the gate
        // alone, then waits for each of these units to settle.
        let decisions: Vec<Decision> = buyers
            .iter()
            .zip(reserved.decisions)
            .map(|(b, decision)| match decision {
                // Queued with the deduction: acknowledged now.
                Reservation::Reserved if queued => Decision::Answer(Reply::Bought {
                    order_no: b.order_no,
                }),
                Reservation::Reserved => Decision::Write(PendingOrder::new(
                    entry.clone(),
                    OrderRecord {
                        order_no: b.order_no,
                        user_id: b.user,
                        goods_id: goods,
                        state: OrderState::Created,
                        created_ms,
                        pay_by_ms: rules.pay_by_ms,
                    },
                    reserved.epoch,
                    b.request_id,
                    b.token,
                )),
                Reservation::Held(order_no) if state(order_no) == Some(OrderState::Cancelled) => {
                    metrics::add(&self.metrics.busy, 1);
                    Decision::Answer(Reply::error(
                        Status::Busy,
                        "this user's cancelled order held its unit until now, retry",
                    ))
                }
                Reservation::Held(order_no) if written(order_no) => {
                    entry.holders.add([(b.user, order_no)]);
                    metrics::add(&self.metrics.buy_already_bought, 1);
                    Decision::Answer(Reply::AlreadyBought { order_no })
                }
                // Held for an order neither this server nor the order store
                // has (durable mode: `written_elsewhere` asked): still being
                // written, or, if made long ago, its server died between the
                // deduction and the commit, and nothing else would give the
                // unit back or let the buyer buy again.
                Reservation::Held(order_no)
                    if written_elsewhere.is_some()
                        && !queued
                        && !entry.holders.holds(b.user, order_no) =>
                {
                    self.repair_if_abandoned(&entry, order_no);
                    Decision::Answer(self.refusal(&entry.holders, b.user, decision))
                }
                // A BUY retried under its request id: its first answer, once
                // that order is acknowledged (queued with the deduction, or
                // committed); until then the retry is told to come back.
                Reservation::Replayed(order_no)
                    if queued || entry.holders.holds(b.user, order_no) || written(order_no) =>
                {
                    metrics::add(&self.metrics.buy_already_bought, 1);
                    Decision::Answer(Reply::Bought { order_no })
                }
                Reservation::Replayed(order_no) => {
                    // Only on the order store's word that it has no such
                    // order, never on a failed read.
                    if written_elsewhere.is_some() {
                        self.forget_if_abandoned(&entry, b, order_no);
                    }
                    // `pending`, not `busy`: the server is not overloaded,
                    // the first attempt is simply not settled yet. Sent as
                    // `busy` to a version 1 connection.
                    metrics::add(&self.metrics.busy, 1);
                    Decision::Answer(Reply::error(
                        Status::Pending,
                        "this request's order is being written, retry later",
                    ))
                }
                // The store failed for this buyer's bucket mid-write, after
                // deciding for others: as for a whole call in doubt.
                Reservation::InDoubt => {
                    entry.gate.mark_unsure();
                    Decision::Answer(store_failure(
                        "stock store",
                        &StoreError::Indeterminate(format!("a bucket of goods {goods}")),
                    ))
                }
                other => Decision::Answer(self.refusal(&entry.holders, b.user, other)),
            })
            .collect();
        drop(gate);
        decisions
    }

    /// Of the orders the stock store says these buyers hold, those this
    /// server does not know but the order store has, with their states:
    /// bought through another server (or before a restart), and perhaps
    /// cancelled since by a server that died before it gave the unit back.
    /// Asked only in the durable mode, where a held order may also be one
    /// still being written, and only for orders this server does not know.
    /// Not in the queued mode, which must go on selling while the order
    /// store is down or slow: a held order is acknowledged there.
    fn held_elsewhere(
        &self,
        entry: &Entry,
        buyers: &[Buyer],
        decisions: &[Reservation],
    ) -> Option<HashMap<OrderNo, OrderState>> {
        if self.queues.acked().is_some() {
            return Some(HashMap::new());
        }
        let unknown: Vec<OrderNo> = buyers
            .iter()
            .zip(decisions)
            .filter_map(|(b, d)| match *d {
                Reservation::Held(order_no) | Reservation::Replayed(order_no)
                    if !entry.holders.holds(b.user, order_no) =>
                {
                    Some(order_no)
                }
                _ => None,
            })
            .collect();
        if unknown.is_empty() {
            return Some(HashMap::new());
        }
        // `None` when the order store cannot say: the buyers are told to
        // come back, as for an order still being written.
        self.orders
            .stored_states(&unknown)
            .map(|stored| stored.into_iter().collect())
            .ok()
    }

    /// A request id naming an order that neither this server nor the order
    /// store has, made so long ago that no write of it should still be under
    /// way (its server died between the deduction and the commit): the goods
    /// is reconciled, which fences off any write of it that is still late
    /// and takes its phantom holder out of the stock store, and only then is
    /// the id forgotten (see `reconcile.rs`), so that the BUY's next retry
    /// is decided afresh and can never meet that order written after all.
    fn forget_if_abandoned(&self, entry: &Entry, buyer: &Buyer, order_no: OrderNo) {
        let Some(id) = buyer.request_id else {
            return;
        };
        if !abandoned(order_no) {
            return;
        }
        if entry.gate.abandon_request(id, buyer.user, order_no) {
            warn!(
                "goods {}: request {id} names order {order_no}, which was never written; reconciling",
                entry.id
            );
            entry.gate.mark_unsure();
            self.request_repair(entry);
        }
    }

    /// A unit the stock store holds for an order that neither this server
    /// nor the order store has, made so long ago that no write of it should
    /// still be under way: the goods is reconciled, which fences off any
    /// late write of it and takes the phantom holder out, so that the unit
    /// goes back on sale and its buyer may buy again.
    fn repair_if_abandoned(&self, entry: &Entry, order_no: OrderNo) {
        if abandoned(order_no)
            && !entry.gate.is_unsure()
            && entry
                .gate
                .abandoned_holder_repair(now_ms(), ABANDONED_AFTER_MS)
        {
            warn!(
                "goods {}: a unit is held for order {order_no}, which was never written; reconciling",
                entry.id
            );
            entry.gate.mark_unsure();
            self.request_repair(entry);
        }
    }

    /// The answer to a BUY the stock store did not reserve a unit for.
    fn refusal(
        &self,
        holders: &super::catalog::Holders,
        user: UserId,
        decision: Reservation,
    ) -> Reply {
        match decision {
            // In the durable mode a held order is an acknowledged one only
            // once it is committed (the catalog then knows it). Until then
            // its write may still fail and the number never exist: the retry
            // is told to come back, not given the number.
            Reservation::Held(order_no)
                if self.queues.acked().is_none() && !holders.holds(user, order_no) =>
            {
                metrics::add(&self.metrics.busy, 1);
                Reply::error(
                    Status::Pending,
                    "this user's order is being written, retry later",
                )
            }
            Reservation::Held(order_no) => {
                metrics::add(&self.metrics.buy_already_bought, 1);
                Reply::AlreadyBought { order_no }
            }
            Reservation::SoldOut => {
                metrics::add(&self.metrics.buy_sold_out, 1);
                Reply::error(Status::SoldOut, "sold out")
            }
            Reservation::Token(refusal) => {
                metrics::add(&self.metrics.buy_token_refused, 1);
                let (status, message) = match refusal {
                    TokenRefusal::Invalid => (
                        Status::TokenInvalid,
                        "this purchase token was not issued to this user for this goods",
                    ),
                    TokenRefusal::Expired => {
                        (Status::TokenExpired, "this purchase token has expired")
                    }
                    TokenRefusal::Used => {
                        (Status::TokenUsed, "this purchase token was used already")
                    }
                };
                Reply::error(status, message)
            }
            Reservation::Closed(closed) => {
                metrics::add(&self.metrics.buy_outside_window, 1);
                match closed {
                    Closed::Paused => Reply::error(Status::Paused, "the sale is paused"),
                    Closed::NotStarted => {
                        Reply::error(Status::NotStarted, "the sale has not started")
                    }
                    Closed::Ended => Reply::error(Status::Ended, "the sale has ended"),
                }
            }
            Reservation::RequestIdTaken => Reply::error(
                Status::BadRequest,
                "this request id was used by another user's BUY",
            ),
            Reservation::Busy => {
                metrics::add(&self.metrics.busy, 1);
                Reply::error(
                    Status::Busy,
                    "units are on their way to this buyer's bucket, retry",
                )
            }
            Reservation::Reserved | Reservation::Replayed(_) | Reservation::InDoubt => {
                Reply::error(Status::InternalError, "decided above")
            }
        }
    }
}

/// Whether an order that no store has was made so long ago
/// ([`ABANDONED_AFTER_MS`]) that no write of it should still be under way.
fn abandoned(order_no: OrderNo) -> bool {
    now_ms().saturating_sub(order_no::made_at_ms(order_no)) >= ABANDONED_AFTER_MS
}

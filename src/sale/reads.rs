//! Reading orders: ORDER_STATUS and LIST_ORDERS, and, in the queued ack
//! mode, what a server knows of orders acknowledged and not yet written:
//! those it acknowledged itself, those the stock store holds for another
//! server's buyers, and whether some queue may still hold one (for PAY and
//! CANCEL of an order no store has yet).

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;
use seckill_proto::{Order, OrderState, Reply, Status};

use super::{now_ms, order_no, store_failure, to_order, unknown_goods, Entry, Sale};
use crate::store::{GoodsId, OrderNo, StoreError, UserId};

/// Orders one ORDER_LIST shows at most, newest first.
pub const MAX_LISTED: usize = 1000;

/// How far the queue's clock (Redis's) and an order number's (its
/// server's) may be apart, for [`Sale::may_be_queued`].
const QUEUE_CLOCK_SKEW_MS: u64 = 5_000;

/// The longest an acknowledged order is taken to wait in a queue, unwritten,
/// for [`Sale::may_be_queued`]: past it, an order no store has is
/// `no_order`, even while an entry the drain cannot write (a damaged one,
/// left for an operator) keeps some queue from emptying.
const QUEUED_AT_MOST_MS: u64 = 3600 * 1000;

/// How long a reading of the queues serves.
const QUEUES_READ_FOR: Duration = Duration::from_secs(1);

/// The goods whose queues hold entries, each with its oldest entry's time
/// (Unix ms, by the queue's clock), as last read, for
/// [`Sale::may_be_queued`] and LIST_ORDERS; a failed read is kept as such.
/// Its lock is held only to look and to store, never across the read:
/// several workers may read at once when it expires, one each.
#[derive(Default)]
pub(super) struct QueuedGoods(Mutex<Option<(Instant, Reading)>>);

/// What a reading of the queues found: the goods with entries, or that
/// they could not be read.
type Reading = Result<Arc<Vec<(GoodsId, u64)>>, ()>;

impl QueuedGoods {
    fn get(&self, read: impl FnOnce() -> Result<Vec<(GoodsId, u64)>, StoreError>) -> Reading {
        if let Some((at, reading)) = &*self.0.lock() {
            if at.elapsed() < QUEUES_READ_FOR {
                return reading.clone();
            }
        }
        let reading = read().map(Arc::new).map_err(|_| ());
        *self.0.lock() = Some((Instant::now(), reading.clone()));
        reading
    }
}

impl Sale {
    /// ORDER_STATUS: the user's order of a goods.
    pub fn order_status(&self, user: UserId, goods: GoodsId) -> Reply {
        let Some(entry) = self.catalog.get(goods) else {
            return unknown_goods(goods);
        };
        match self.orders.find_order(user, goods) {
            Ok(Some(o)) => Reply::Order(to_order(&o)),
            // In the queued mode an acknowledged order may not be written
            // yet: it is still the user's order.
            Ok(None) => self.unwritten_status(&entry, user),
            Err(e) => store_failure("order store", &e),
        }
    }

    /// ORDER_STATUS of a user the order store has no live order of, in the
    /// queued mode: an order acknowledged and not yet written, by this
    /// server (it knows) or another (the stock store holds it). A number
    /// the stock store gives may name an order the order store has by now:
    /// written since it was asked (then it is asked again), or cancelled
    /// by a server that died before it gave the unit back (no order; the
    /// goods is repaired, which gives the unit back: the queued BUY path
    /// does not ask the order store, so nothing else would until a
    /// reconciliation).
    fn unwritten_status(&self, entry: &Entry, user: UserId) -> Reply {
        let none = || Reply::error(Status::NoOrder, "no order for this user and goods");
        let ask_stock = entry.holders.of(user).is_empty();
        let unwritten = match self.unwritten_orders(entry, user, ask_stock) {
            Ok(unwritten) if unwritten.is_empty() => return none(),
            Ok(unwritten) => unwritten,
            Err(e) => return store_failure("stock store", &e),
        };
        let numbers: Vec<OrderNo> = unwritten.iter().map(|o| o.order_no).collect();
        let stored = match self.orders.stored_states(&numbers) {
            Ok(stored) => stored,
            Err(e) => return store_failure("order store", &e),
        };
        self.repair_if_cancelled_held(entry, user, &stored);
        if stored
            .iter()
            .any(|&(_, state)| state != OrderState::Cancelled)
        {
            return match self.orders.find_order(user, entry.id) {
                Ok(Some(o)) => Reply::Order(to_order(&o)),
                Ok(None) => none(),
                Err(e) => store_failure("order store", &e),
            };
        }
        match unwritten
            .into_iter()
            .find(|o| !stored.iter().any(|&(n, _)| n == o.order_no))
        {
            Some(o) => Reply::Order(o),
            None => none(),
        }
    }

    /// Asks for `entry` to be repaired if the stock store still holds, for
    /// `user`, an order `stored` has as cancelled: its server died between
    /// the cancel and giving the unit back. Checked against the stock store
    /// itself, not this server's holders (which may only be a moment
    /// behind a cancel through another server).
    fn repair_if_cancelled_held(
        &self,
        entry: &Entry,
        user: UserId,
        stored: &[(OrderNo, OrderState)],
    ) {
        let cancelled = |n: &OrderNo| {
            stored
                .iter()
                .any(|&(s, state)| s == *n && state == OrderState::Cancelled)
        };
        if !stored.iter().any(|(n, _)| cancelled(n)) {
            return;
        }
        if let Ok(held) = self.stock.held(entry.id, user) {
            if held.iter().any(cancelled) {
                warn!(
                    "goods {}: user {user} still holds a unit for a cancelled order; reconciling",
                    entry.id
                );
                entry.gate.mark_unsure();
                self.request_repair(entry);
            }
        }
    }

    /// ORDER_LIST: the user's orders, newest first. In the queued mode with
    /// those not written yet: this server's, and, of goods whose queues
    /// held entries at the last reading (at most a second old), those the
    /// stock store holds.
    pub fn list_orders(&self, user: UserId) -> Reply {
        // The queues first: an order still queued when they are read, and
        // written before the order store is, is then found in one or the
        // other.
        let queued = match self.queues.acked() {
            Some(_) => self.queued_goods().unwrap_or_default(),
            None => Arc::default(),
        };
        let stored = match self.orders.orders_of(user, MAX_LISTED) {
            Ok(stored) => stored,
            Err(e) => return store_failure("order store", &e),
        };
        let mut orders: Vec<Order> = stored.iter().map(to_order).collect();
        // With a full list, an order older than its oldest may be held and
        // written, only not listed: not one to add as unwritten.
        let listed_from = match stored.len() {
            MAX_LISTED => stored.iter().map(|o| o.created_ms).min().unwrap_or(0),
            _ => 0,
        };
        // Once the stock store could not say (down, or its replicas behind
        // with `--redis-wait`, each read waiting for them), not asked again
        // for the other goods of this list: one wait a LIST_ORDERS, not one
        // a goods.
        let mut stock_answers = true;
        for entry in self.catalog.all() {
            let ask_stock = stock_answers && queued.iter().any(|&(g, _)| g == entry.id);
            let unwritten = match self.unwritten_orders(&entry, user, ask_stock) {
                Ok(unwritten) => unwritten,
                // The stock store cannot say now: what this server knows.
                Err(e) => {
                    debug!("goods {}: the orders user {user} holds: {e}", entry.id);
                    stock_answers = false;
                    self.unwritten_orders(&entry, user, false)
                        .unwrap_or_default()
                }
            };
            for o in unwritten {
                if o.created_ms >= listed_from && !stored.iter().any(|s| s.order_no == o.order_no) {
                    orders.push(o);
                }
            }
        }
        orders.sort_by_key(|o| std::cmp::Reverse((o.created_ms, o.order_no)));
        orders.truncate(MAX_LISTED);
        Reply::Orders(orders)
    }

    /// In the queued mode, whether an order this server does not know may
    /// be one that another server acknowledged and no server has written
    /// yet (that server died, and its queue entries wait to be claimed; or
    /// the order store is slow): made within [`QUEUED_AT_MOST_MS`], not in
    /// the future, and some goods' queue still holds an entry queued no
    /// later than it was made. Redis's clock stamps the queue, this
    /// server's the order number: [`QUEUE_CLOCK_SKEW_MS`] either way is
    /// allowed for. A queue that cannot be read may hold it.
    ///
    /// The queues are read at most once a second ([`Sale::queued_goods`]).
    pub(super) fn may_be_queued(&self, order_no: OrderNo) -> bool {
        if self.queues.acked().is_none() {
            return false;
        }
        let (made_ms, now) = (order_no::made_at_ms(order_no), now_ms());
        if made_ms > now.saturating_add(QUEUE_CLOCK_SKEW_MS)
            || now.saturating_sub(made_ms) > QUEUED_AT_MOST_MS
        {
            return false;
        }
        match self.queued_goods() {
            Ok(queued) => queued
                .iter()
                .any(|&(_, oldest)| oldest <= made_ms.saturating_add(QUEUE_CLOCK_SKEW_MS)),
            Err(()) => true,
        }
    }

    /// The goods whose queues hold entries, with their oldest, read at most
    /// once a second ([`QueuedGoods`]): PAYs of made-up numbers and
    /// LIST_ORDERS, which anyone may send, share that one reading.
    fn queued_goods(&self) -> Reading {
        let Some(queue) = self.queues.acked() else {
            return Ok(Arc::default());
        };
        self.queued_goods.get(|| {
            let mut queued = Vec::new();
            for entry in self.catalog.all() {
                if let Some(oldest) = queue.backlog(entry.id)?.oldest_ms {
                    queued.push((entry.id, oldest));
                }
            }
            Ok(queued)
        })
    }

    /// In the queued mode, the orders `user` holds of a goods that the
    /// order store may not have yet, as `Created` (the caller leaves out
    /// those it has). Those this server acknowledged it knows; those
    /// another server did (that server may have died before its queue was
    /// drained) only the stock store does, which is asked if `ask_stock`.
    /// None in the durable mode, where a holder the order store lacks was
    /// never acknowledged.
    pub(super) fn unwritten_orders(
        &self,
        entry: &Entry,
        user: UserId,
        ask_stock: bool,
    ) -> Result<Vec<Order>, StoreError> {
        if self.queues.acked().is_none() {
            return Ok(Vec::new());
        }
        let mut held = entry.holders.of(user);
        if ask_stock {
            held.extend(self.stock.held(entry.id, user)?);
            held.sort_unstable();
            held.dedup();
        }
        Ok(held
            .into_iter()
            .map(|order_no| {
                let created_ms = order_no::made_at_ms(order_no);
                Order {
                    order_no,
                    user_id: user,
                    goods_id: entry.id,
                    state: OrderState::Created,
                    created_ms,
                    pay_by_ms: created_ms.saturating_add(entry.view.rules.pay_window_ms),
                }
            })
            .collect())
    }
}

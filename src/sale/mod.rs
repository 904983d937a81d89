//! The flash-sale rules, written against the store traits.
//!
//! A BUY passes three gates, cheapest first:
//! 1. the reactor, from the [`Catalog`]: unknown goods, outside the sale
//!    window, an order this user already has, the sold-out flag;
//! 2. a worker, through [`Sale::reserve`]: one merged call to the stock store
//!    decides every pending BUY of a goods at once;
//! 3. in the `durable` ack mode, the order writer, through [`Sale::commit`]:
//!    accepted orders are written in one transaction; only then is the buyer
//!    told "ok". If the write fails, the units go back to stock and the
//!    buyers are told `busy`. In the `queued` mode the stock store appended
//!    the order to its queue in the same atomic step as the deduction, so
//!    the buyer is told "ok" at once and the writer drains the queue
//!    ([`Sale::write_queued`]).
//!
//! The order store is the truth; [`Sale::reconcile`] rebuilds the stock
//! store from it (at start, on RECONCILE, and when the stock store lost a
//! goods).
//!
//! After "ok" the order lives on ([`lifecycle`]): it is paid, or cancelled
//! by its buyer, or cancelled when its payment window passes; a cancelled
//! order's unit goes back on sale exactly once.

mod catalog;
mod lifecycle;
mod order_no;
mod reconcile;

pub use catalog::{Catalog, Entry};
pub use lifecycle::{EXPIRE_BATCH, MAX_LISTED};
pub use order_no::{OrderNumbers, MAX_NODE_ID};
pub use reconcile::describe;

use std::collections::BTreeMap;
use std::sync::Arc;

use log::{error, warn};
use seckill_proto::{NewGoods, Order, OrderState, Reply, Status};

pub use crate::clock::now_ms;
use crate::metrics::{self, Metrics};
use crate::store::{
    Buyer, GoodsId, OrderNo, OrderQueue, OrderRecord, OrderStore, Reservation, ReserveRules,
    StockStore, StoreError, TokenRefusal, UserId, Written,
};

/// How long a purchase token is good for, unless configured.
pub const DEFAULT_TOKEN_TTL_MS: u64 = 30_000;
/// The longest payment window ADD_GOODS accepts: a year and a day, so that
/// every deadline is a plain timestamp in every store (SQLite's integers
/// are signed).
pub const MAX_PAY_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;

/// One BUY as a worker hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buy {
    pub user: UserId,
    /// The purchase token it carried (`NO_TOKEN` when none).
    pub token: u64,
}

/// What a worker does with one BUY after the stock store has decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A unit is reserved: write this order, then answer.
    Write(OrderRecord),
    /// Answer now.
    Answer(Reply),
}

pub struct Sale {
    pub catalog: Catalog,
    stock: Arc<dyn StockStore>,
    orders: Arc<dyn OrderStore>,
    /// Present in the `queued` ack mode.
    queue: Option<Arc<dyn OrderQueue>>,
    order_nos: OrderNumbers,
    metrics: Arc<Metrics>,
    token_ttl_ms: u64,
}

/// Orders grouped by goods as (user, order number) pairs.
fn by_goods(orders: &[&OrderRecord]) -> BTreeMap<GoodsId, Vec<(UserId, OrderNo)>> {
    let mut grouped: BTreeMap<GoodsId, Vec<_>> = BTreeMap::new();
    for o in orders {
        grouped
            .entry(o.goods_id)
            .or_default()
            .push((o.user_id, o.order_no));
    }
    grouped
}

/// The reply for a request that a store failed.
fn store_failure(what: &str, e: &StoreError) -> Reply {
    match e {
        StoreError::Unavailable(_) | StoreError::NotLoaded(_) => {
            // Logged once per outage by the store itself.
            Reply::error(Status::Busy, format!("{what} unavailable, retry later"))
        }
        StoreError::UnknownGoods(id) => {
            Reply::error(Status::UnknownGoods, format!("no goods {id}"))
        }
        StoreError::Inconsistent(_) => {
            error!("{what}: {e}");
            Reply::error(Status::InternalError, format!("{what} failed"))
        }
        StoreError::Indeterminate(_) => {
            error!("{what}: {e}");
            Reply::error(
                Status::InternalError,
                format!("{what} failed mid-write: the outcome is unknown; ask ORDER_STATUS"),
            )
        }
    }
}

impl Sale {
    /// Loads every goods into the catalog and reconciles its stock with
    /// the orders: remaining = total − orders (written or queued). This is
    /// what makes a restart after a crash exact. With a `queue`, buyers are
    /// told "ok" as soon as their order is queued (the `queued` ack mode).
    pub fn open(
        stock: Arc<dyn StockStore>,
        orders: Arc<dyn OrderStore>,
        queue: Option<Arc<dyn OrderQueue>>,
        node_id: u16,
        metrics: Arc<Metrics>,
    ) -> Result<Sale, StoreError> {
        let sale = Sale {
            catalog: Catalog::new(),
            stock,
            orders,
            queue,
            order_nos: OrderNumbers::new(node_id),
            metrics,
            token_ttl_ms: DEFAULT_TOKEN_TTL_MS,
        };
        for goods in sale.orders.goods()? {
            sale.catalog.insert(&goods, 0);
        }
        for drift in sale.reconcile(None)? {
            if !drift.is_in_step() {
                warn!("reconciled at start: {}", describe(&drift));
            }
        }
        Ok(sale)
    }

    pub fn queue(&self) -> Option<&Arc<dyn OrderQueue>> {
        self.queue.as_ref()
    }

    /// How long the purchase tokens this sale issues stay good.
    pub fn set_token_ttl(&mut self, ttl_ms: u64) {
        self.token_ttl_ms = ttl_ms.max(1);
    }

    /// Decides the BUYs of one goods with one call to the stock store.
    /// Returns one decision per BUY, in order.
    pub fn reserve(&self, goods: GoodsId, buys: &[Buy]) -> Vec<Decision> {
        let answer_all = |reply: Reply| {
            buys.iter()
                .map(|_| Decision::Answer(reply.clone()))
                .collect()
        };
        let Some(entry) = self.catalog.get(goods) else {
            return answer_all(Reply::error(
                Status::UnknownGoods,
                format!("no goods {goods}"),
            ));
        };
        let buyers: Vec<Buyer> = buys
            .iter()
            .map(|b| Buyer {
                user: b.user,
                order_no: self.order_nos.next(),
                token: b.token,
            })
            .collect();
        let created_ms = now_ms();
        let rules = ReserveRules {
            per_user_limit: entry.rules.per_user_limit,
            token_required: entry.rules.token_required,
            now_ms: created_ms,
            pay_by_ms: created_ms.saturating_add(entry.rules.pay_window_ms),
        };
        metrics::add(&self.metrics.stock_calls, 1);
        metrics::add(&self.metrics.stock_buys, buys.len() as u64);
        if entry.is_unsure() {
            // A write of this goods' orders ended in doubt: find out first.
            self.reconcile_lost(&entry);
        }
        // A goods in doubt may be being reconciled (by the periodic refresh),
        // which can hold its gate for the stores' timeouts: answer rather
        // than keep this worker from its other jobs.
        let gate = match entry.gate.try_read() {
            Some(gate) => gate,
            None if entry.is_unsure() => {
                metrics::add(&self.metrics.busy, buys.len() as u64);
                return answer_all(Reply::error(
                    Status::Busy,
                    "stock being reconciled after a store fault, retry later",
                ));
            }
            None => entry.gate.read(),
        };
        if entry.is_unsure() {
            // Still in doubt (the stores are not back yet): selling now could
            // meet reservations that have no order.
            drop(gate);
            metrics::add(&self.metrics.busy, buys.len() as u64);
            return answer_all(Reply::error(
                Status::Busy,
                "stock being reconciled after a store fault, retry later",
            ));
        }
        // Checked again under the gate, which a sale control takes alone,
        // and with the clock read now (waiting for the gate takes time):
        // once a pause or an end is answered, no BUY queued before it sells.
        if let Some(closed) = entry.closed(now_ms()) {
            return answer_all(closed);
        }
        let reserved = match self.stock.reserve(goods, &rules, &buyers) {
            Ok(r) => r,
            Err(e) => {
                drop(gate);
                match e {
                    // The stock store lost this goods (a Redis restart):
                    // reload it from the order store, then buyers can retry.
                    StoreError::NotLoaded(_) => self.reconcile_lost(&entry),
                    // The deduction may have run: its reservations have no
                    // orders (durable mode) and must not stay, which the
                    // next reconciliation sees to.
                    StoreError::Indeterminate(_) => entry.mark_unsure(),
                    _ => metrics::add(&self.metrics.busy, buys.len() as u64),
                }
                return answer_all(store_failure("stock store", &e));
            }
        };
        let units = reserved
            .decisions
            .iter()
            .filter(|d| **d == Reservation::Reserved)
            .count();
        let queued = self.queue.is_some();
        if !queued {
            // Settled by `commit`; reconciliation waits for that.
            entry.reserved(units as u32);
        }
        // Under the gate, so that a stale count cannot land after a restock
        // or a reconciliation and leave the sold-out flag wrongly set.
        entry.set_remaining(reserved.remaining);
        if queued {
            // Also under the gate: a reconciliation after it then finds
            // these holders in the catalog already, and one before it cannot
            // have loaded them (they were not queued yet).
            metrics::add(&self.metrics.buy_ok, units as u64);
            entry.add_holders(
                buyers
                    .iter()
                    .zip(&reserved.decisions)
                    .filter(|(_, d)| **d == Reservation::Reserved)
                    .map(|(b, _)| (b.user, b.order_no)),
            );
        }
        drop(gate);
        buyers
            .iter()
            .zip(reserved.decisions)
            .map(|(b, decision)| (b.user, b.order_no, decision))
            .map(|(user_id, order_no, decision)| match decision {
                // Queued with the deduction: acknowledged now.
                Reservation::Reserved if queued => Decision::Answer(Reply::Bought { order_no }),
                Reservation::Reserved => Decision::Write(OrderRecord {
                    order_no,
                    user_id,
                    goods_id: goods,
                    state: OrderState::Created,
                    created_ms,
                    pay_by_ms: rules.pay_by_ms,
                }),
                // In the durable mode a held order is an acknowledged one only
                // once it is committed (the catalog then knows it). Until
                // then its write may still fail and the number never exist:
                // the retry is told to come back, not given the number.
                Reservation::Held(order_no) if !queued && !entry.holds(user_id, order_no) => {
                    metrics::add(&self.metrics.busy, 1);
                    Decision::Answer(Reply::error(
                        Status::Busy,
                        "this user's order is being written, retry later",
                    ))
                }
                Reservation::Held(order_no) => {
                    metrics::add(&self.metrics.buy_already_bought, 1);
                    Decision::Answer(Reply::AlreadyBought { order_no })
                }
                Reservation::SoldOut => {
                    metrics::add(&self.metrics.buy_sold_out, 1);
                    Decision::Answer(Reply::error(Status::SoldOut, "sold out"))
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
                    Decision::Answer(Reply::error(status, message))
                }
            })
            .collect()
    }

    /// Writes reserved orders in one transaction and returns the reply for
    /// each, in order. Written orders join the catalog. Units whose orders
    /// were not written go back to the stock store: all of them when the
    /// write failed, and each one the database refused as a second order of
    /// its user (that user is told the order they hold).
    pub fn commit(&self, orders: &[OrderRecord]) -> Vec<Reply> {
        let batch = by_goods(&orders.iter().collect::<Vec<_>>());
        let (replies, kept, unsold) = match self.orders.insert_orders(orders) {
            Ok(written) => {
                let mut replies = Vec::with_capacity(orders.len());
                let mut kept = Vec::with_capacity(orders.len());
                let mut unsold = Vec::new();
                for (o, w) in orders.iter().zip(written) {
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
                    }
                }
                metrics::add(&self.metrics.order_batches, 1);
                (replies, kept, unsold)
            }
            Err(e) => {
                metrics::add(&self.metrics.order_batches_failed, 1);
                let reply = store_failure("order store", &e);
                let unsold = if let StoreError::Indeterminate(_) = e {
                    // The batch may be committed: releasing its units could
                    // sell them twice. They stay reserved until a
                    // reconciliation reads what the order store holds.
                    for goods in batch.keys() {
                        if let Some(entry) = self.catalog.get(*goods) {
                            entry.mark_unsure();
                        }
                    }
                    Vec::new()
                } else {
                    metrics::add(&self.metrics.busy, orders.len() as u64);
                    orders.iter().collect()
                };
                (vec![reply; orders.len()], Vec::new(), unsold)
            }
        };
        metrics::add(&self.metrics.orders_written, kept.len() as u64);
        metrics::add(&self.metrics.buy_ok, kept.len() as u64);
        for (goods, holders) in by_goods(&kept) {
            if let Some(entry) = self.catalog.get(goods) {
                entry.add_holders(holders);
            }
        }
        self.release(&unsold);
        for (goods, orders) in &batch {
            if let Some(entry) = self.catalog.get(*goods) {
                entry.settled(orders.len() as u32);
            }
        }
        replies
    }

    /// Returns the units of orders that were reserved but will never be
    /// written to the stock store.
    fn release(&self, unsold: &[&OrderRecord]) {
        for (goods, holders) in by_goods(unsold) {
            self.release_holders(goods, &holders);
        }
    }

    /// One release call for these holders of one goods.
    fn release_holders(&self, goods: GoodsId, holders: &[(UserId, OrderNo)]) {
        match self.stock.release(goods, holders) {
            Ok(remaining) => {
                if let Some(entry) = self.catalog.get(goods) {
                    entry.set_remaining(remaining);
                }
            }
            // The units stay reserved with no order behind them: never
            // oversold, and the next reconciliation returns them.
            Err(e) => {
                error!("releasing {} units of goods {goods}: {e}", holders.len());
                if let Some(entry) = self.catalog.get(goods) {
                    entry.mark_unsure();
                }
            }
        }
    }

    /// Writes orders drained from the queue (the `queued` ack mode). Their
    /// buyers were told "ok" already, so a failed write is retried by the
    /// caller, never answered. An order the database refuses as a second
    /// order of its user means the stock store had lost that user's first
    /// order (a Redis restart without persistence): the unit is returned and
    /// the loss is logged; the user keeps the order the database holds.
    ///
    /// Such an order is written as cancelled before its unit is returned:
    /// its queue entry may be read again (an acknowledgement lost, a crash),
    /// and by then the user's other order may be gone, so that the order
    /// would be written live after all, with its unit sold again. Written
    /// as cancelled, a retry finds it stored and returns nothing twice.
    pub fn write_queued(&self, orders: &[OrderRecord]) -> Result<(), StoreError> {
        let written = self.orders.insert_orders(orders)?;
        let mut unsold = Vec::new();
        for (o, w) in orders.iter().zip(written) {
            if let Written::Duplicate(held) = w {
                error!(
                    "queued order {} of user {} for goods {} duplicates order {held}; written as cancelled",
                    o.order_no, o.user_id, o.goods_id
                );
                unsold.push(o);
            }
        }
        let refused: Vec<OrderRecord> = unsold
            .iter()
            .map(|&o| OrderRecord {
                state: OrderState::Cancelled,
                ..o.clone()
            })
            .collect();
        if !refused.is_empty() {
            self.orders.insert_orders(&refused)?;
        }
        metrics::add(&self.metrics.order_batches, 1);
        metrics::add(
            &self.metrics.orders_written,
            (orders.len() - unsold.len()) as u64,
        );
        self.release(&unsold);
        Ok(())
    }

    /// RECONCILE: one goods, or all with `None`.
    pub fn reconcile_reply(&self, goods: Option<GoodsId>) -> Reply {
        match self.reconcile(goods) {
            Ok(drifts) => {
                for d in drifts.iter().filter(|d| !d.is_in_step()) {
                    warn!("reconciled: {}", describe(d));
                }
                Reply::Reconciled(drifts)
            }
            Err(e) => store_failure("reconcile", &e),
        }
    }

    pub fn order_status(&self, user: UserId, goods: GoodsId) -> Reply {
        let Some(entry) = self.catalog.get(goods) else {
            return Reply::error(Status::UnknownGoods, format!("no goods {goods}"));
        };
        match self.orders.find_order(user, goods) {
            Ok(Some(o)) => Reply::Order(to_order(&o)),
            // In the queued mode an acknowledged order may not be written
            // yet: it is still the user's order.
            Ok(None) => match self.unwritten_orders(&entry, user).first() {
                Some(o) => Reply::Order(o.clone()),
                None => Reply::error(Status::NoOrder, "no order for this user and goods"),
            },
            Err(e) => store_failure("order store", &e),
        }
    }

    pub fn add_goods(&self, new: &NewGoods) -> Reply {
        if new.name.trim().is_empty() {
            return Reply::error(Status::BadRequest, "a goods needs a name");
        }
        if new.end_ms <= new.start_ms {
            return Reply::error(Status::BadRequest, "the sale must end after it starts");
        }
        if new.rules.per_user_limit == 0 {
            return Reply::error(Status::BadRequest, "the purchase limit must be at least 1");
        }
        if new.rules.pay_window_ms == 0 || new.rules.pay_window_ms > MAX_PAY_WINDOW_MS {
            return Reply::error(
                Status::BadRequest,
                "the payment window must be between 1 ms and 366 days",
            );
        }
        let record = match self.orders.add_goods(new) {
            Ok(r) => r,
            Err(e) => return store_failure("order store", &e),
        };
        let loaded = self.stock.load(record.id, record.total, &[]);
        self.catalog.insert(&record, record.total);
        let Some(entry) = self.catalog.get(record.id) else {
            return Reply::error(Status::InternalError, "goods vanished after insert");
        };
        if let Err(e) = loaded {
            // The goods exists (the order store has it), so the command
            // succeeded: answering `busy` would have the admin add it twice.
            // Its stock is loaded by the reconciliation before its first
            // sale.
            warn!(
                "goods {} added; its stock is not loaded yet: {e}",
                record.id
            );
            entry.mark_unsure();
        }
        Reply::GoodsAdded(entry.to_goods(now_ms()))
    }

    pub fn restock(&self, goods: GoodsId, amount: u32) -> Reply {
        let Some(entry) = self.catalog.get(goods) else {
            return Reply::error(Status::UnknownGoods, format!("no goods {goods}"));
        };
        if amount == 0 {
            return Reply::error(Status::BadRequest, "restock amount must be positive");
        }
        if entry.total().checked_add(amount).is_none() {
            return Reply::error(Status::BadRequest, "total stock would overflow");
        }
        // Alone with the goods: a reconciliation in between would count the
        // new units twice.
        let _gate = entry.gate.write();
        // The order store first: if the stock store then fails, the total is
        // right and the units are merely not yet for sale (never oversold).
        let record = match self.orders.restock(goods, amount) {
            Ok(r) => r,
            Err(e) => return store_failure("order store", &e),
        };
        match self.stock.add(goods, amount) {
            Ok(remaining) => {
                entry.restocked(record.total, remaining);
                Reply::Restocked(entry.to_goods(now_ms()))
            }
            Err(e) => {
                // The order store has the new total, so the restock happened
                // (answering `busy` would have it done twice); the stock
                // store may or may not have the units, which the
                // reconciliation before the next sale settles (the epoch
                // fence stops a late ADD from counting them twice).
                warn!("goods {goods} restocked; the stock store not yet: {e}");
                entry.restocked(record.total, entry.remaining());
                entry.mark_unsure();
                Reply::Restocked(entry.to_goods(now_ms()))
            }
        }
    }
}

/// An order as the protocol shows it.
fn to_order(o: &OrderRecord) -> Order {
    Order {
        order_no: o.order_no,
        user_id: o.user_id,
        goods_id: o.goods_id,
        state: o.state,
        created_ms: o.created_ms,
        pay_by_ms: o.pay_by_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GoodsRecord, Holders, MemoryStock, OrderNo, Reserved, Settled};
    use seckill_proto::{SaleRules, NO_TOKEN};

    fn buys(users: &[UserId]) -> Vec<Buy> {
        users
            .iter()
            .map(|&user| Buy {
                user,
                token: NO_TOKEN,
            })
            .collect()
    }
    use parking_lot::Mutex;

    /// An order store with one goods whose writes fail while `failing`.
    #[derive(Default)]
    struct FlakyOrders {
        failing: Mutex<bool>,
        written: Mutex<Vec<OrderRecord>>,
    }

    impl OrderStore for FlakyOrders {
        fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError> {
            Ok(vec![GoodsRecord {
                id: 1,
                name: "phone".into(),
                price_cents: 100,
                total: 1,
                start_ms: 0,
                end_ms: u64::MAX,
                rules: SaleRules::default(),
                paused: false,
            }])
        }
        fn add_goods(&self, _: &NewGoods) -> Result<GoodsRecord, StoreError> {
            unreachable!()
        }
        fn restock(&self, _: GoodsId, _: u32) -> Result<GoodsRecord, StoreError> {
            unreachable!()
        }
        fn insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
            if *self.failing.lock() {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.written.lock().extend_from_slice(orders);
            Ok(vec![Written::Stored; orders.len()])
        }
        fn live_holders(&self, _: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
            Ok(self
                .written
                .lock()
                .iter()
                .map(|o| (o.user_id, o.order_no))
                .collect())
        }
        fn find_order(&self, _: UserId, _: GoodsId) -> Result<Option<OrderRecord>, StoreError> {
            Ok(None)
        }
        fn save_sale(
            &self,
            _: GoodsId,
            _: bool,
            _: u64,
            _: u64,
        ) -> Result<GoodsRecord, StoreError> {
            unreachable!()
        }
        fn orders_of(&self, _: UserId, _: usize) -> Result<Vec<OrderRecord>, StoreError> {
            unreachable!()
        }
        fn stored(&self, _: &[OrderNo]) -> Result<Vec<OrderNo>, StoreError> {
            Ok(Vec::new())
        }
        fn pay(&self, _: UserId, _: OrderNo, _: u64) -> Result<Option<Settled>, StoreError> {
            unreachable!()
        }
        fn cancel(&self, _: UserId, _: OrderNo) -> Result<Option<Settled>, StoreError> {
            unreachable!()
        }
        fn expire_due(&self, _: u64, _: usize) -> Result<Vec<OrderRecord>, StoreError> {
            unreachable!()
        }
    }

    /// Memory stock whose loads and adds fail while `failing`.
    #[derive(Default)]
    struct FlakyStock {
        inner: MemoryStock,
        failing: Mutex<bool>,
    }

    impl FlakyStock {
        fn check(&self) -> Result<(), StoreError> {
            match *self.failing.lock() {
                true => Err(StoreError::Unavailable("down".into())),
                false => Ok(()),
            }
        }
    }

    impl StockStore for FlakyStock {
        fn load(
            &self,
            g: GoodsId,
            left: u32,
            holders: &[(UserId, OrderNo)],
        ) -> Result<(), StoreError> {
            self.check()?;
            self.inner.load(g, left, holders)
        }
        fn reserve(
            &self,
            g: GoodsId,
            rules: &ReserveRules,
            buyers: &[Buyer],
        ) -> Result<Reserved, StoreError> {
            self.check()?;
            self.inner.reserve(g, rules, buyers)
        }
        fn issue_token(&self, g: GoodsId, u: UserId, t: u64, at: u64) -> Result<(), StoreError> {
            self.inner.issue_token(g, u, t, at)
        }
        fn release(&self, g: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError> {
            self.check()?;
            self.inner.release(g, buyers)
        }
        fn add(&self, g: GoodsId, amount: u32) -> Result<u32, StoreError> {
            self.check()?;
            self.inner.add(g, amount)
        }
        fn snapshot(&self, g: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
            self.inner.snapshot(g)
        }
        fn remaining(&self, g: GoodsId) -> Result<Option<u32>, StoreError> {
            self.inner.remaining(g)
        }
    }

    /// The order store has the goods and its total: ADD_GOODS and RESTOCK
    /// succeeded even when the stock store failed after them (a `busy`
    /// would have the admin do them twice), and the stock catches up before
    /// the next sale.
    #[test]
    fn admin_changes_stand_when_the_stock_store_fails_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let orders = Arc::new(crate::store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let stock = Arc::new(FlakyStock::default());
        let sale =
            Sale::open(stock.clone(), orders, None, 1, Arc::new(Metrics::default())).unwrap();
        *stock.failing.lock() = true;
        let new = NewGoods {
            name: "lamp".into(),
            price_cents: 100,
            stock: 1,
            start_ms: 0,
            end_ms: u64::MAX,
            rules: SaleRules::default(),
        };
        let Reply::GoodsAdded(goods) = sale.add_goods(&new) else {
            panic!("ADD_GOODS failed");
        };
        assert!(matches!(sale.restock(goods.id, 1), Reply::Restocked(g) if g.total == 2));
        // While the stock store is down, nothing sells.
        assert_eq!(status(&sale.reserve(goods.id, &buys(&[1]))), Status::Busy);
        // Once it is back, the goods sells exactly its new total.
        *stock.failing.lock() = false;
        let sold = sale.reserve(goods.id, &buys(&[1, 2, 3]));
        assert!(matches!(sold[0], Decision::Write(_)), "{sold:?}");
        assert!(matches!(sold[1], Decision::Write(_)), "{sold:?}");
        assert_eq!(status(&sold[2..]), Status::SoldOut);
    }

    fn written(decisions: Vec<Decision>) -> OrderRecord {
        match decisions.as_slice() {
            [Decision::Write(order)] => order.clone(),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn status(decisions: &[Decision]) -> Status {
        match decisions {
            [Decision::Answer(reply)] => reply.status(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    /// A retry while the first order is being written is not given its
    /// number: the write may fail, and then the number never existed.
    #[test]
    fn a_retry_before_the_commit_is_told_to_come_back() {
        let orders = Arc::new(FlakyOrders::default());
        let sale = Sale::open(
            Arc::new(MemoryStock::new()),
            orders.clone(),
            None,
            1,
            Arc::new(Metrics::default()),
        )
        .unwrap();

        let first = written(sale.reserve(1, &buys(&[7])));
        assert_eq!(status(&sale.reserve(1, &buys(&[7]))), Status::Busy);
        *orders.failing.lock() = true;
        assert_eq!(
            sale.commit(std::slice::from_ref(&first))[0].status(),
            Status::Busy
        );

        // The unit came back; the user buys again, under a new number.
        *orders.failing.lock() = false;
        let second = written(sale.reserve(1, &buys(&[7])));
        assert_ne!(second.order_no, first.order_no);
        assert_eq!(
            sale.commit(std::slice::from_ref(&second)),
            [Reply::Bought {
                order_no: second.order_no
            }]
        );
        // Committed: now a retry gets the number, and nobody else a unit.
        let again = sale.reserve(1, &buys(&[7, 8]));
        assert_eq!(
            again,
            [
                Decision::Answer(Reply::AlreadyBought {
                    order_no: second.order_no
                }),
                Decision::Answer(Reply::error(Status::SoldOut, "sold out")),
            ]
        );
    }

    fn lamp(stock: u32) -> NewGoods {
        NewGoods {
            name: "lamp".into(),
            price_cents: 100,
            stock,
            start_ms: 0,
            end_ms: u64::MAX,
            rules: SaleRules::default(),
        }
    }

    /// A cancel whose unit could not be returned (the stock store failed)
    /// leaves the goods sold out in the catalog, so no BUY reaches a worker
    /// to repair it: the periodic refresh reconciles it, and the unit sells.
    #[test]
    fn a_unit_whose_return_failed_comes_back_at_the_next_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let orders = Arc::new(crate::store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let stock = Arc::new(FlakyStock::default());
        let sale =
            Sale::open(stock.clone(), orders, None, 1, Arc::new(Metrics::default())).unwrap();
        let Reply::GoodsAdded(goods) = sale.add_goods(&lamp(1)) else {
            panic!("ADD_GOODS failed");
        };
        let order = written(sale.reserve(goods.id, &buys(&[7])));
        sale.commit(std::slice::from_ref(&order));
        let entry = sale.catalog.get(goods.id).unwrap();
        assert!(entry.quick_buy_answer(8, NO_TOKEN, now_ms()).is_some());

        *stock.failing.lock() = true;
        assert!(matches!(
            sale.cancel(7, order.order_no),
            Reply::Cancelled(_)
        ));
        // Still sold out here: the unit is held in the stock store.
        let quick = entry.quick_buy_answer(8, NO_TOKEN, now_ms());
        assert_eq!(quick.map(|r| r.status()), Some(Status::SoldOut));

        *stock.failing.lock() = false;
        sale.refresh_stock();
        assert_eq!(entry.quick_buy_answer(8, NO_TOKEN, now_ms()), None);
        assert!(matches!(
            sale.reserve(goods.id, &buys(&[8]))[0],
            Decision::Write(_)
        ));
    }

    /// A created order that is never due.
    fn created(order_no: OrderNo, user_id: UserId, goods_id: GoodsId) -> OrderRecord {
        OrderRecord {
            order_no,
            user_id,
            goods_id,
            state: OrderState::Created,
            created_ms: 1,
            pay_by_ms: u64::MAX,
        }
    }

    /// The queue of the `queued` mode, as a list of orders, to which one
    /// more order can be added (by a stock script sent before a
    /// reconciliation and run late) after the first read.
    struct TestQueue {
        first: Vec<OrderRecord>,
        late: Option<OrderRecord>,
        reads: Mutex<u32>,
    }

    impl TestQueue {
        fn fixed(orders: Vec<OrderRecord>) -> TestQueue {
            TestQueue {
                first: orders,
                late: None,
                reads: Mutex::new(0),
            }
        }
    }

    impl OrderQueue for TestQueue {
        fn read(
            &self,
            _: &[GoodsId],
            _: &str,
            _: usize,
            _: std::time::Duration,
        ) -> Result<Vec<crate::store::QueuedOrder>, StoreError> {
            Ok(Vec::new())
        }
        fn claim_stale(
            &self,
            _: GoodsId,
            _: &str,
            _: std::time::Duration,
            _: usize,
        ) -> Result<Vec<crate::store::QueuedOrder>, StoreError> {
            Ok(Vec::new())
        }
        fn ack(&self, _: GoodsId, _: &[String]) -> Result<(), StoreError> {
            Ok(())
        }
        fn queued(&self, _: GoodsId) -> Result<Vec<OrderRecord>, StoreError> {
            let reads = *self.reads.lock();
            let mut all = self.first.clone();
            all.extend(self.late.clone().filter(|_| reads > 1));
            Ok(all)
        }
        /// Moves once, with a late order: between the first
        /// reconciliation's read and load.
        fn last_added(&self, _: GoodsId) -> Result<Option<String>, StoreError> {
            let mut reads = self.reads.lock();
            *reads += 1;
            let moved = self.late.is_some() && *reads > 1;
            Ok(Some(if moved { "2-0" } else { "1-0" }.into()))
        }
    }

    /// An order queued while a goods was reconciled (after the queue was
    /// read, before the load) is counted by a second read and load.
    #[test]
    fn an_order_queued_during_a_reconciliation_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let orders = Arc::new(crate::store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let goods = orders.add_goods(&lamp(3)).unwrap().id;
        let record = |order_no, user_id| created(order_no, user_id, goods);
        let queue = Arc::new(TestQueue {
            first: vec![record(70, 7)],
            late: Some(record(80, 8)),
            reads: Mutex::new(0),
        });
        // Sale::open reconciles every goods: the queue moves during it.
        let stock = Arc::new(MemoryStock::new());
        Sale::open(
            stock.clone(),
            orders,
            Some(queue),
            1,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        assert_eq!(
            stock.snapshot(goods).unwrap(),
            Some((1, vec![(7, 70), (8, 80)]))
        );
    }

    /// An order written, then cancelled, whose queue entry is not yet
    /// acknowledged: reconciliation counts it from the order store
    /// (cancelled), not from the queue, so its unit stays on sale.
    #[test]
    fn a_cancelled_order_still_queued_holds_no_unit() {
        let dir = tempfile::tempdir().unwrap();
        let orders = Arc::new(crate::store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let goods = orders.add_goods(&lamp(2)).unwrap().id;
        let record = |order_no, user_id| created(order_no, user_id, goods);
        let (cancelled, queued_only) = (record(70, 7), record(80, 8));
        orders
            .insert_orders(std::slice::from_ref(&cancelled))
            .unwrap();
        orders.cancel(7, 70).unwrap();
        let queue = Arc::new(TestQueue::fixed(vec![cancelled, queued_only]));
        let sale = Sale::open(
            Arc::new(MemoryStock::new()),
            orders,
            Some(queue),
            1,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        let Reply::Reconciled(drifts) = sale.reconcile_reply(Some(goods)) else {
            panic!("RECONCILE failed");
        };
        // Only the order that is in the queue alone holds a unit.
        assert_eq!((drifts[0].holders, drifts[0].remaining), (1, 1));
    }
}

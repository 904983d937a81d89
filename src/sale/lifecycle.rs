//! After "ok": PAY, CANCEL, the expiry of unpaid orders, purchase tokens and
//! the admin's sale controls.
//!
//! Every change of an order is decided by the order store, in one
//! transaction that reads and moves the order's row: a created order
//! becomes paid or cancelled there exactly once, whoever asks first (a PAY,
//! a CANCEL, or an expiry sweep of this or another server). Only the call
//! that cancelled it returns its unit to the stock store, and the stock
//! store gives a unit back only for a holder it still has, so the unit
//! comes back exactly once even if that release is repeated. A crash
//! between the two leaves the unit held for a cancelled order: never
//! oversold, and returned by the next reconciliation, which the refresh
//! starts once the goods has looked sold out for a minute with units in no
//! live order (`STRANDED_AFTER_MS`), if the holder's BUY has not.

use std::collections::HashMap;

use log::{debug, error, warn};
use seckill_proto::{OrderState, Reply, Status};

use super::{now_ms, store_failure, to_order, unknown_goods, Entry, Sale};
use crate::metrics;
use crate::store::{GoodsId, OrderNo, OrderRecord, Settled, StoreError, UserId};
use crate::telemetry::Store;

/// How long after orders were fenced off the stock store may still have
/// their epoch before the goods is reconciled here: a reconciliation loads
/// within moments of taking its epoch, unless its server died in between.
const RELOAD_GRACE_MS: u64 = 2_000;

/// How long a goods another server added may go without stock in the
/// stock store before this server repairs it: that server loads it within
/// moments of adding it.
const NEW_GOODS_GRACE_MS: u64 = 2_000;

/// How long a goods may look sold out in the stock store while the order
/// store's live orders are short of its total before it is reconciled: the
/// units are held for orders that will never be written or were
/// cancelled (a server died between a reservation and its commit, or
/// between a cancel and its release, or a PAY or CANCEL panicked there),
/// and no BUY reaches a worker to find them, the reactors answering
/// "sold out" from the flag. As long as a reservation may take to be
/// written (`ABANDONED_AFTER_MS` in buy.rs), so that orders still on
/// their way are not fenced off.
const STRANDED_AFTER_MS: u64 = 60_000;

/// Orders one expiry sweep cancels at most: one transaction's worth.
pub const EXPIRE_BATCH: usize = 1000;

impl Sale {
    /// PAY. Paying a paid order is a no-op answered `ok`, so a retry is
    /// safe. After the payment window, the order is cancelled instead.
    pub fn pay(&self, user: UserId, order_no: OrderNo) -> Reply {
        match self.orders.pay(user, order_no, now_ms()) {
            Ok(Some(settled)) => {
                let reply = match settled.order.state {
                    OrderState::Paid => {
                        metrics::add(&self.metrics.orders_paid, 1);
                        Reply::Paid(to_order(&settled.order))
                    }
                    OrderState::Cancelled if settled.cancelled_now => Reply::error(
                        Status::OrderCancelled,
                        "the payment window has passed: the order is cancelled",
                    ),
                    OrderState::Cancelled => {
                        Reply::error(Status::OrderCancelled, "the order is cancelled")
                    }
                    _ => Reply::error(Status::InternalError, "the order was not paid"),
                };
                self.settled(&settled, &self.metrics.orders_expired);
                reply
            }
            Ok(None) => self.not_stored(user, order_no),
            Err(e) => self.failed("pay", user, order_no, &e),
        }
    }

    /// CANCEL. Cancelling a cancelled order is a no-op answered `ok`; only
    /// the call that cancelled it returns its unit.
    pub fn cancel(&self, user: UserId, order_no: OrderNo) -> Reply {
        match self.orders.cancel(user, order_no) {
            Ok(Some(settled)) => {
                self.settled(&settled, &self.metrics.orders_cancelled);
                match settled.order.state {
                    OrderState::Cancelled => Reply::Cancelled(to_order(&settled.order)),
                    _ => Reply::error(Status::OrderPaid, "a paid order cannot be cancelled"),
                }
            }
            Ok(None) => self.not_stored(user, order_no),
            Err(e) => self.failed("cancel", user, order_no, &e),
        }
    }

    /// Cancels the unpaid orders whose payment window has passed and
    /// returns their units. Returns how many this call cancelled: another
    /// server sweeping the same order store gets the others.
    pub fn expire_due(&self) -> Result<usize, StoreError> {
        let expired = match self.orders.expire_due(now_ms(), EXPIRE_BATCH) {
            Ok(expired) => expired,
            Err(e) => {
                if let StoreError::Indeterminate(_) = e {
                    // Some orders may be cancelled with their units still
                    // held: every goods is reconciled before it sells more.
                    self.all_unsure();
                }
                return Err(e);
            }
        };
        metrics::add(&self.metrics.orders_expired, expired.len() as u64);
        self.return_units(&expired.iter().collect::<Vec<_>>());
        Ok(expired.len())
    }

    /// Marks every goods unsure: each is reconciled before it sells more.
    /// For a fault whose orders this server cannot name: some may have been
    /// cancelled with their units still held. (The expiry thread calls it
    /// too, after a sweep that panicked.)
    pub fn all_unsure(&self) {
        self.catalog.all().iter().for_each(|e| e.gate.mark_unsure());
    }

    /// Sets what the catalog shows as left (and the sold-out flag) from the
    /// stock store. Reports of concurrent reservations and releases can
    /// reach the catalog out of order, and units another server returned
    /// (its expiry sweep) are not reported here at all: a periodic read
    /// bounds how long the catalog can be wrong, in particular a sold-out
    /// flag that would keep units from sale.
    ///
    /// A goods in doubt (a store fault), or that the stock store lost, is
    /// reconciled here rather than at its next BUY: the reactor may be
    /// answering every BUY of it from a sold-out flag, and then no BUY
    /// would ever reach a worker to do it.
    pub fn refresh_stock(&self) {
        self.refresh_stock_at(now_ms());
    }

    /// [`refresh_stock`](Self::refresh_stock) at `now` (the tests' clock).
    pub(super) fn refresh_stock_at(&self, now: u64) {
        let written = self.sync_catalog();
        // Repairs back off while the stores stay down (each one can hold
        // the goods' gate for the stores' timeouts).
        let entries = self.catalog.all();
        let ids: Vec<GoodsId> = entries.iter().map(|e| e.id).collect();
        // A failover may have lost deductions: reloaded from the order
        // store (fenced, so orders reserved before it are not written)
        // before the units they took are sold again. A failed look waits
        // for the next tick.
        for id in self.stock.lost_writes(&ids).unwrap_or_default() {
            if let Some(entry) = entries.iter().find(|e| e.id == id) {
                warn!("goods {id}: its stock store shard failed over and may have lost writes; reconciling");
                entry.gate.mark_unsure();
                entry.gate.defer_repair(now, 0);
            }
        }
        for entry in entries {
            // Counted only over readings one after another: not across a
            // time the goods was in doubt or could not be read.
            let readable = !entry.gate.is_unsure() && !entry.gate.has_fence();
            if !readable {
                entry.gate.stranded_for(false, now);
            }
            if entry.gate.is_unsure() {
                if entry.gate.repair_due(now) {
                    self.reconcile_lost(&entry);
                }
                continue;
            }
            let overdue = entry.gate.has_fence() && {
                let stock_epoch = self.stock.epoch(entry.id).ok().flatten();
                entry.gate.reload_overdue(stock_epoch, now, RELOAD_GRACE_MS)
            };
            if overdue {
                warn!(
                    "goods {}: orders were fenced off by a reconciliation whose load never came; reconciling",
                    entry.id
                );
                entry.gate.mark_unsure();
                continue;
            }
            // Logged once per outage by the store; the next tick retries.
            let levels = self.stock.levels(entry.id);
            self.metrics.timing.store_seen(Store::Stock, &levels);
            match levels {
                Ok(Some(levels)) => {
                    // Not over a goods marked meanwhile (a restock in
                    // doubt lowered the flag for its repair to set).
                    if !entry.gate.is_unsure() {
                        entry.view.set_remaining(levels.remaining);
                    }
                    self.refresh_holders(&entry, levels.released);
                    let short = levels.remaining == 0
                        && entry.view.closed(now).is_none()
                        && written
                            .get(&entry.id)
                            .is_some_and(|&(total, live)| live < u64::from(total));
                    if entry.gate.stranded_for(short, now) >= STRANDED_AFTER_MS
                        && self.nothing_queued(entry.id)
                        && self.still_short(entry.id)
                    {
                        warn!(
                            "goods {}: sold out in the stock store for a minute with units in no live order; reconciling",
                            entry.id
                        );
                        entry.gate.stranded_for(false, now);
                        entry.gate.mark_unsure();
                    }
                }
                Ok(None) if entry.gate.repair_due(now) => self.reconcile_lost(&entry),
                Ok(None) | Err(_) => {
                    entry.gate.stranded_for(false, now);
                }
            }
        }
    }

    /// The goods as the order store has them, for goods added, restocked
    /// or controlled through other servers: new goods join the catalog (the
    /// server that added one loaded its stock), and the pause, window and
    /// total follow. The stock store enforces the controls on every BUY
    /// anyway; this keeps the reactors' quick answers and LIST_GOODS close
    /// behind. A failed read waits for the next tick. Returns each goods'
    /// total and live orders as read (none after a failed read).
    fn sync_catalog(&self) -> HashMap<GoodsId, (u32, u64)> {
        let records = self.orders.goods();
        self.metrics.timing.store_seen(Store::Orders, &records);
        let Ok(records) = records else {
            return HashMap::new();
        };
        let written = records
            .iter()
            .map(|r| (r.id, (r.total, r.live_orders)))
            .collect();
        for record in records {
            let entry = self.catalog.get(record.id).unwrap_or_else(|| {
                // New here: what is left as the stock store says (all of it
                // while the server that added it is still loading it; the
                // store decides every sale anyway), and no repair before that
                // server has had time to load it.
                self.stock.split(record.id, record.buckets);
                let left = self.stock.remaining(record.id).ok().flatten();
                let entry = self.catalog.insert(&record, left.unwrap_or(record.total));
                entry.gate.defer_repair(now_ms(), NEW_GOODS_GRACE_MS);
                entry
            });
            // A control saved in the order store may not have reached the
            // stock store, which enforces it on every server's BUYs: its
            // server died in between, or was told busy by a store whose
            // reply was lost. Passed on by every server that has not yet
            // (once each; a goods new here too); the stock store keeps the
            // highest version it is given, so passing one on twice, or
            // late, changes nothing. One that fails is tried again at the
            // next refresh (an outage is logged by the store).
            let sale = record.sale();
            entry.view.set_sale(&sale);
            if entry.view.controls_behind(sale.version) {
                match self.stock.control(record.id, &sale) {
                    Ok(()) => entry.view.controls_passed(sale.version),
                    Err(e) => debug!("goods {}: sale controls not passed on: {e}", record.id),
                }
            }
            entry.view.raise_total(record.total);
        }
        written
    }

    /// Whether the order store's live orders of the goods are still short
    /// of its total, read again after the queues were found empty: the
    /// drain may have written their last orders between the catalog's
    /// reading and that look. Unknown is not short.
    fn still_short(&self, goods: GoodsId) -> bool {
        matches!(
            self.orders.find_goods(goods),
            Ok(Some(record)) if record.live_orders < u64::from(record.total)
        )
    }

    /// Whether no order of the goods waits in a queue (the queued mode's,
    /// or what a queued server left): a queued order holds its unit and is
    /// not yet among the order store's live orders. Unknown is not empty.
    fn nothing_queued(&self, goods: GoodsId) -> bool {
        match self.queues.holding() {
            Some(q) => q.backlog(goods).is_ok_and(|b| b.entries == 0),
            None => true,
        }
    }

    /// Reads a goods' holders again from the order store when some holder
    /// let go since the last read (a CANCEL or an expiry, through any
    /// server): this server's cache would otherwise keep answering that
    /// buyer "already bought". Committed orders only, which is what the
    /// cache holds in the durable mode; an order this server commits while
    /// it reads is missed until its buyer's next BUY finds it (see
    /// `held_elsewhere` in buy.rs).
    fn refresh_holders(&self, entry: &Entry, released: u64) {
        if !entry.holders.releases_moved(released) {
            return;
        }
        // What the cache held before the reads: only that may be dropped,
        // not an order acknowledged while they ran.
        let before = entry.holders.all();
        // What the order store does not have yet first, then what it has: an
        // order the drain writes in between is seen in both (and kept once),
        // never in neither.
        let read = self.unwritten_holders(&before).and_then(|queued| {
            let written = self.orders.live_holders(entry.id)?;
            Ok([written, queued].concat())
        });
        match read {
            Ok(fresh) => entry.holders.update(&before, &fresh),
            // Read again at the next tick.
            Err(_) => {
                entry.holders.releases_moved(0);
            }
        }
    }

    /// In the queued mode, the holders this server acknowledged whose
    /// orders the order store does not have yet (still queued): they hold
    /// their units as much as the written ones. None in the durable mode,
    /// where the cache holds committed orders only.
    fn unwritten_holders(
        &self,
        known: &[(UserId, OrderNo)],
    ) -> Result<Vec<(UserId, OrderNo)>, StoreError> {
        if self.queues.acked().is_none() {
            return Ok(Vec::new());
        }
        let numbers: Vec<OrderNo> = known.iter().map(|&(_, no)| no).collect();
        let stored: std::collections::HashSet<OrderNo> =
            self.orders.stored(&numbers)?.into_iter().collect();
        Ok(known
            .iter()
            .copied()
            .filter(|(_, no)| !stored.contains(no))
            .collect())
    }

    /// TOKEN: a purchase token for one BUY of this user, recorded by the
    /// stock store (so that every server, and every reactor, knows it).
    pub fn issue_token(&self, user: UserId, goods: GoodsId) -> Reply {
        let Some(entry) = self.catalog.get(goods) else {
            return unknown_goods(goods);
        };
        let now = now_ms();
        if let Some(reply) = entry.view.quick_token_answer(now) {
            return reply;
        }
        let token = match random_token() {
            Ok(token) => token,
            Err(e) => {
                error!("no randomness for a purchase token: {e}");
                return Reply::error(Status::InternalError, "cannot make a token now");
            }
        };
        let expires_ms = now.saturating_add(self.token_ttl_ms);
        match self.stock.issue_token(goods, user, token, expires_ms) {
            Ok(()) => {
                metrics::add(&self.metrics.tokens_issued, 1);
                Reply::Token { token, expires_ms }
            }
            Err(e) => store_failure("stock store", &e),
        }
    }

    /// Counts a settled order and returns its unit if this call cancelled
    /// it.
    fn settled(&self, settled: &Settled, cancelled: &std::sync::atomic::AtomicU64) {
        if settled.cancelled_now {
            metrics::add(cancelled, 1);
            self.return_units(&[&settled.order]);
        }
    }

    /// Cancelled orders' units go back on sale, one release call per goods;
    /// their buyers may buy again. The release clears the sold-out flag
    /// when units come back.
    ///
    /// Under each goods' gate: a reconciliation of this server that read the
    /// order store before the cancels committed then loads its (stale) view
    /// before this release runs, not after, so no unit is lost.
    fn return_units(&self, orders: &[&OrderRecord]) {
        for (goods, holders) in super::by_goods(orders.iter().copied()) {
            let entry = self.catalog.get(goods);
            let _gate = entry.as_ref().map(|e| e.gate.shared());
            if let Some(entry) = &entry {
                for &(user, order_no) in &holders {
                    entry.holders.remove(user, order_no);
                }
            }
            self.release_holders(goods, &holders);
        }
    }

    /// The order store has no such order of this user. In the queued mode
    /// an acknowledged order may not be written yet: the user is told to
    /// come back rather than that it does not exist.
    fn not_stored(&self, user: UserId, order_no: OrderNo) -> Reply {
        if self.goods_holding(user, order_no).is_some() || self.may_be_queued(order_no) {
            metrics::add(&self.metrics.busy, 1);
            return Reply::error(Status::Busy, "the order is being written, retry later");
        }
        Reply::error(Status::NoOrder, "this user has no order of that number")
    }

    /// A PAY or CANCEL whose outcome is unknown may have cancelled the order
    /// without its unit coming back: its goods (every goods, if this server
    /// does not know the order) is reconciled before it sells more.
    fn failed(&self, what: &str, user: UserId, order_no: OrderNo, e: &StoreError) -> Reply {
        if let StoreError::Indeterminate(_) = e {
            match self.goods_holding(user, order_no) {
                Some(entry) => entry.gate.mark_unsure(),
                None => self.all_unsure(),
            }
        }
        store_failure(what, e)
    }

    fn goods_holding(&self, user: UserId, order_no: OrderNo) -> Option<std::sync::Arc<Entry>> {
        self.catalog
            .all()
            .into_iter()
            .find(|e| e.holders.holds(user, order_no))
    }
}

/// An unguessable token, never 0 (which means "no token").
fn random_token() -> Result<u64, getrandom::Error> {
    loop {
        let token = getrandom::u64()?;
        if token != seckill_proto::NO_TOKEN {
            return Ok(token);
        }
    }
}

//! The product-info cache: every goods in memory, readable by reactors.
//!
//! LIST_GOODS and GET_GOODS are answered from here and never reach a store.
//! The reactor's fast answers for BUY come from here too: the sale window,
//! a pause, the sold-out flag, a missing purchase token, and the orders this
//! server has committed (so a user who retries after the goods sold out
//! still learns their order number). Sale controls change the atomics here,
//! so every reactor sees them at its next request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

use parking_lot::RwLock;
use seckill_proto::{Goods, GoodsState, Reply, SaleRules, Status, NO_TOKEN};

use crate::store::{GoodsId, GoodsRecord, OrderNo, UserId};

/// Cancelled orders remembered as never to be added (see
/// `Entry::forgotten`). Past this many (only orders this server never held,
/// such as another server's, pile up here) the memory is cleared.
const MAX_FORGOTTEN: usize = 4096;

#[derive(Default)]
pub struct Catalog {
    goods: RwLock<BTreeMap<GoodsId, Arc<Entry>>>,
}

/// One goods. Fields that change during a sale are atomics, so that readers
/// never wait on a writer.
pub struct Entry {
    pub id: GoodsId,
    pub name: String,
    pub price_cents: u64,
    pub rules: SaleRules,
    paused: AtomicBool,
    start_ms: AtomicU64,
    end_ms: AtomicU64,
    total: AtomicU32,
    /// As of the last deduction; shown to buyers, never used to decide a sale.
    remaining: AtomicU32,
    /// Set when the stock store answers "sold out"; from then on the reactor
    /// answers BUY itself. Cleared by a restock.
    sold_out: AtomicBool,
    /// Acknowledged live orders, user → order numbers (at most the purchase
    /// limit each). At most `total` orders in all.
    holders: RwLock<HashMap<UserId, Vec<OrderNo>>>,
    /// Orders cancelled before they were added to `holders`: an expiry or a
    /// CANCEL can settle an order between its commit and the order writer
    /// adding it here, and adding it after would keep its buyer "already
    /// bought" for good. Nearly always empty; bounded by [`MAX_FORGOTTEN`].
    forgotten: parking_lot::Mutex<HashSet<OrderNo>>,
    /// Reservations of this goods take it shared; reconciliation and
    /// restock take it alone, so that they never race a deduction.
    pub gate: RwLock<()>,
    /// Units reserved in the stock store whose orders are neither committed
    /// nor released yet: reconciliation waits for them to settle.
    in_flight: AtomicU32,
    /// A write of this goods' orders ended with an unknown outcome: the
    /// stock store needs reconciling before it sells more.
    ///
    /// Counted, not a flag: marks since the last reconciliation began. A
    /// reconciliation clears only the marks it was started after, so one
    /// made while it read the stores (a PAY or CANCEL in doubt meanwhile)
    /// keeps the goods in doubt for the next one.
    unsure: AtomicU64,
    unsure_cleared: AtomicU64,
    /// When the periodic refresh may next try to reconcile this goods, and
    /// how long it waited last (doubling while the stores stay down).
    repair_at_ms: AtomicU64,
    repair_backoff_ms: AtomicU64,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: GoodsId) -> Option<Arc<Entry>> {
        self.goods.read().get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.goods.read().values().cloned().collect()
    }

    pub fn insert(&self, record: &GoodsRecord, remaining: u32) {
        let entry = Entry {
            id: record.id,
            name: record.name.clone(),
            price_cents: record.price_cents,
            rules: record.rules,
            paused: AtomicBool::new(record.paused),
            start_ms: AtomicU64::new(record.start_ms),
            end_ms: AtomicU64::new(record.end_ms),
            total: AtomicU32::new(record.total),
            remaining: AtomicU32::new(remaining),
            sold_out: AtomicBool::new(remaining == 0),
            holders: RwLock::new(HashMap::new()),
            forgotten: parking_lot::Mutex::new(HashSet::new()),
            gate: RwLock::new(()),
            in_flight: AtomicU32::new(0),
            unsure: AtomicU64::new(0),
            unsure_cleared: AtomicU64::new(0),
            repair_at_ms: AtomicU64::new(0),
            repair_backoff_ms: AtomicU64::new(0),
        };
        self.goods.write().insert(record.id, Arc::new(entry));
    }
}

impl Entry {
    /// The answer to a BUY that needs no store, if there is one: the sale
    /// window or a pause, the orders this user already has, a missing
    /// purchase token, or the sold-out flag.
    pub fn quick_buy_answer(&self, user: UserId, token: u64, now_ms: u64) -> Option<Reply> {
        if let Some(closed) = self.closed(now_ms) {
            return Some(closed);
        }
        if let Some(order_no) = self.holder_at_limit(user) {
            return Some(Reply::AlreadyBought { order_no });
        }
        if self.rules.token_required && token == NO_TOKEN {
            return Some(Reply::error(
                Status::TokenRequired,
                "this goods needs a purchase token: ask TOKEN first",
            ));
        }
        if self.sold_out.load(Relaxed) {
            return Some(Reply::error(Status::SoldOut, "sold out"));
        }
        None
    }

    /// Why nothing can be bought now, if so: outside the window, or paused.
    pub fn closed(&self, now_ms: u64) -> Option<Reply> {
        if now_ms < self.start_ms.load(Relaxed) {
            return Some(Reply::error(Status::NotStarted, "the sale has not started"));
        }
        if now_ms >= self.end_ms.load(Relaxed) {
            return Some(Reply::error(Status::Ended, "the sale has ended"));
        }
        if self.paused.load(Relaxed) {
            return Some(Reply::error(Status::Paused, "the sale is paused"));
        }
        None
    }

    /// The answer to a TOKEN that needs no store, if there is one: tokens
    /// are issued only while the sale is open, and only for goods that
    /// need them.
    pub fn quick_token_answer(&self, now_ms: u64) -> Option<Reply> {
        if !self.rules.token_required {
            return Some(Reply::error(
                Status::BadRequest,
                "this goods is bought without a purchase token",
            ));
        }
        self.closed(now_ms)
    }

    pub fn window(&self) -> (u64, u64) {
        (self.start_ms.load(Relaxed), self.end_ms.load(Relaxed))
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Relaxed)
    }

    /// A sale control, once the order store has it.
    pub fn set_sale(&self, paused: bool, start_ms: u64, end_ms: u64) {
        self.paused.store(paused, Relaxed);
        self.start_ms.store(start_ms, Relaxed);
        self.end_ms.store(end_ms, Relaxed);
    }

    pub fn total(&self) -> u32 {
        self.total.load(Relaxed)
    }

    pub fn remaining(&self) -> u32 {
        self.remaining.load(Relaxed)
    }

    pub fn state(&self, now_ms: u64) -> GoodsState {
        if now_ms < self.start_ms.load(Relaxed) {
            GoodsState::Upcoming
        } else if now_ms >= self.end_ms.load(Relaxed) {
            GoodsState::Ended
        } else if self.paused.load(Relaxed) {
            GoodsState::Paused
        } else if self.remaining.load(Relaxed) == 0 {
            GoodsState::SoldOut
        } else {
            GoodsState::OnSale
        }
    }

    pub fn to_goods(&self, now_ms: u64) -> Goods {
        Goods {
            id: self.id,
            name: self.name.clone(),
            price_cents: self.price_cents,
            total: self.total.load(Relaxed),
            remaining: self.remaining.load(Relaxed),
            start_ms: self.start_ms.load(Relaxed),
            end_ms: self.end_ms.load(Relaxed),
            state: self.state(now_ms),
            rules: self.rules,
        }
    }

    /// Records what the stock store said is left. Reports from two workers
    /// can land out of order; a wrong flag is only ever a wasted trip to the
    /// stock store (which decides) or a `sold_out` a moment early or late.
    pub fn set_remaining(&self, remaining: u32) {
        self.remaining.store(remaining, Relaxed);
        self.sold_out.store(remaining == 0, Relaxed);
    }

    /// A restock: new total and remaining.
    pub fn restocked(&self, total: u32, remaining: u32) {
        self.total.store(total, Relaxed);
        self.set_remaining(remaining);
    }

    /// Orders of this goods that are now acknowledged.
    pub fn add_holders(&self, orders: impl IntoIterator<Item = (UserId, OrderNo)>) {
        let mut holders = self.holders.write();
        let mut forgotten = self.forgotten.lock();
        for (user, order_no) in orders {
            if forgotten.remove(&order_no) {
                continue;
            }
            let held = holders.entry(user).or_default();
            if !held.contains(&order_no) {
                held.push(order_no);
            }
        }
    }

    /// An order that is no longer live (cancelled or expired).
    pub fn remove_holder(&self, user: UserId, order_no: OrderNo) {
        let mut holders = self.holders.write();
        let held = holders.get_mut(&user);
        if let Some(held) = held.filter(|held| held.contains(&order_no)) {
            held.retain(|&n| n != order_no);
            if held.is_empty() {
                holders.remove(&user);
            }
            return;
        }
        // Not added yet (or never held here): never to be.
        let mut forgotten = self.forgotten.lock();
        if forgotten.len() >= MAX_FORGOTTEN {
            forgotten.clear();
        }
        forgotten.insert(order_no);
    }

    /// Whether this server knows `order_no` as a live order of `user`.
    pub fn holds(&self, user: UserId, order_no: OrderNo) -> bool {
        self.holders
            .read()
            .get(&user)
            .is_some_and(|held| held.contains(&order_no))
    }

    /// The live orders this server knows `user` to hold.
    pub fn orders_of(&self, user: UserId) -> Vec<OrderNo> {
        self.holders.read().get(&user).cloned().unwrap_or_default()
    }

    /// The user's first order, if they hold as many as the limit allows.
    fn holder_at_limit(&self, user: UserId) -> Option<OrderNo> {
        let holders = self.holders.read();
        let held = holders.get(&user)?;
        (held.len() >= usize::from(self.rules.per_user_limit))
            .then(|| held.first().copied())
            .flatten()
    }

    /// Replaces the holders with the stores' view (reconciliation).
    pub fn set_holders(&self, pairs: &[(UserId, OrderNo)]) {
        let mut holders: HashMap<UserId, Vec<OrderNo>> = HashMap::new();
        for &(user, order_no) in pairs {
            holders.entry(user).or_default().push(order_no);
        }
        *self.holders.write() = holders;
    }

    pub fn mark_unsure(&self) {
        self.unsure.fetch_add(1, SeqCst);
    }

    pub fn is_unsure(&self) -> bool {
        self.unsure.load(SeqCst) != self.unsure_cleared.load(SeqCst)
    }

    /// Taken before a reconciliation reads the stores; give it back to
    /// [`clear_unsure`](Self::clear_unsure) when it is done.
    pub fn unsure_marks(&self) -> u64 {
        self.unsure.load(SeqCst)
    }

    /// Reconciled: what was in doubt when `marks` was taken is settled.
    pub fn clear_unsure(&self, marks: u64) {
        self.unsure_cleared.fetch_max(marks, SeqCst);
        self.repair_backoff_ms.store(0, Relaxed);
    }

    /// Whether the periodic refresh should try to repair this goods now; if
    /// so, the next try waits twice as long (1 s doubling to 30 s) unless a
    /// reconciliation succeeds first.
    pub fn repair_due(&self, now_ms: u64) -> bool {
        if now_ms < self.repair_at_ms.load(Relaxed) {
            return false;
        }
        let wait = (self.repair_backoff_ms.load(Relaxed) * 2).clamp(1000, 30_000);
        self.repair_backoff_ms.store(wait, Relaxed);
        self.repair_at_ms.store(now_ms + wait, Relaxed);
        true
    }

    pub fn reserved(&self, units: u32) {
        self.in_flight.fetch_add(units, Relaxed);
    }

    pub fn settled(&self, units: u32) {
        self.in_flight.fetch_sub(units, Relaxed);
    }

    /// Waits until every reserved unit is committed or released, or the
    /// deadline passes. Called with the gate held, so none is added.
    pub fn wait_settled(&self, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while self.in_flight.load(Relaxed) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> GoodsRecord {
        GoodsRecord {
            id: 1,
            name: "phone".into(),
            price_cents: 100,
            total: 2,
            start_ms: 1000,
            end_ms: 2000,
            rules: SaleRules::default(),
            paused: false,
        }
    }

    #[test]
    fn quick_answers_follow_window_holders_and_flag() {
        let catalog = Catalog::new();
        catalog.insert(&record(), 1);
        let e = catalog.get(1).unwrap();
        e.add_holders([(7, 70)]);
        let quick = |user, now| e.quick_buy_answer(user, NO_TOKEN, now);
        assert_eq!(quick(1, 999).unwrap().status(), Status::NotStarted);
        assert_eq!(quick(1, 2000).unwrap().status(), Status::Ended);
        assert_eq!(quick(7, 1500), Some(Reply::AlreadyBought { order_no: 70 }));
        assert_eq!(quick(1, 1500), None);
        e.set_remaining(0);
        assert_eq!(quick(1, 1500).unwrap().status(), Status::SoldOut);
        assert_eq!(e.to_goods(1500).state, GoodsState::SoldOut);
        e.restocked(3, 1);
        assert_eq!(quick(1, 1500), None);
        assert_eq!(e.to_goods(1500).total, 3);
        // A pause closes the sale at once; a cancelled order frees its user.
        e.set_sale(true, 1000, 2000);
        assert_eq!(quick(1, 1500).unwrap().status(), Status::Paused);
        assert_eq!(e.to_goods(1500).state, GoodsState::Paused);
        e.set_sale(false, 1000, 2000);
        e.remove_holder(7, 70);
        assert_eq!(quick(7, 1500), None);
        // An order cancelled before the writer added it is not added after.
        e.remove_holder(8, 80);
        e.add_holders([(8, 80), (9, 90)]);
        assert_eq!(quick(8, 1500), None);
        assert_eq!(quick(9, 1500), Some(Reply::AlreadyBought { order_no: 90 }));
    }
}

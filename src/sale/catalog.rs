//! The product-info cache: every goods in memory, readable by reactors.
//!
//! LIST_GOODS and GET_GOODS are answered from here and never reach a store.
//! The reactor's fast answers for BUY come from here too: the sale window,
//! the sold-out flag, and the orders this server has committed (so a user who
//! retries after the goods sold out still learns their order number).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::RwLock;
use seckill_proto::{Goods, GoodsState, Reply, Status};

use crate::store::{GoodsId, GoodsRecord, OrderNo, UserId};

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
    start_ms: AtomicU64,
    end_ms: AtomicU64,
    total: AtomicU32,
    /// As of the last deduction; shown to buyers, never used to decide a sale.
    remaining: AtomicU32,
    /// Set when the stock store answers "sold out"; from then on the reactor
    /// answers BUY itself. Cleared by a restock.
    sold_out: AtomicBool,
    /// Acknowledged orders, user → order number. At most `total` entries.
    holders: RwLock<HashMap<UserId, OrderNo>>,
    /// Reservations of this goods take it shared; reconciliation and
    /// restock take it alone, so that they never race a deduction.
    pub gate: RwLock<()>,
    /// Units reserved in the stock store whose orders are neither committed
    /// nor released yet: reconciliation waits for them to settle.
    in_flight: AtomicU32,
    /// A write of this goods' orders ended with an unknown outcome: the
    /// stock store needs reconciling before it sells more.
    unsure: AtomicBool,
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

    pub fn insert(&self, record: &GoodsRecord, remaining: u32, holders: HashMap<UserId, OrderNo>) {
        let entry = Entry {
            id: record.id,
            name: record.name.clone(),
            price_cents: record.price_cents,
            start_ms: AtomicU64::new(record.start_ms),
            end_ms: AtomicU64::new(record.end_ms),
            total: AtomicU32::new(record.total),
            remaining: AtomicU32::new(remaining),
            sold_out: AtomicBool::new(remaining == 0),
            holders: RwLock::new(holders),
            gate: RwLock::new(()),
            in_flight: AtomicU32::new(0),
            unsure: AtomicBool::new(false),
        };
        self.goods.write().insert(record.id, Arc::new(entry));
    }
}

impl Entry {
    /// The answer to a BUY that needs no store, if there is one: the sale
    /// window, an order this user already has, or the sold-out flag.
    pub fn quick_buy_answer(&self, user: UserId, now_ms: u64) -> Option<Reply> {
        if now_ms < self.start_ms.load(Relaxed) {
            return Some(Reply::error(Status::NotStarted, "the sale has not started"));
        }
        if now_ms >= self.end_ms.load(Relaxed) {
            return Some(Reply::error(Status::Ended, "the sale has ended"));
        }
        if let Some(&order_no) = self.holders.read().get(&user) {
            return Some(Reply::AlreadyBought { order_no });
        }
        if self.sold_out.load(Relaxed) {
            return Some(Reply::error(Status::SoldOut, "sold out"));
        }
        None
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
        self.holders.write().extend(orders);
    }

    /// The order this user holds, if this server knows it.
    pub fn holder(&self, user: UserId) -> Option<OrderNo> {
        self.holders.read().get(&user).copied()
    }

    /// Replaces the holders with the stores' view (reconciliation).
    pub fn set_holders(&self, holders: HashMap<UserId, OrderNo>) {
        *self.holders.write() = holders;
    }

    pub fn mark_unsure(&self) {
        self.unsure.store(true, Relaxed);
    }

    pub fn is_unsure(&self) -> bool {
        self.unsure.load(Relaxed)
    }

    /// Reconciled: whatever was in doubt is settled.
    pub fn clear_unsure(&self) {
        self.unsure.store(false, Relaxed);
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
        }
    }

    #[test]
    fn quick_answers_follow_window_holders_and_flag() {
        let catalog = Catalog::new();
        catalog.insert(&record(), 1, HashMap::from([(7, 70)]));
        let e = catalog.get(1).unwrap();
        assert_eq!(
            e.quick_buy_answer(1, 999).unwrap().status(),
            Status::NotStarted
        );
        assert_eq!(e.quick_buy_answer(1, 2000).unwrap().status(), Status::Ended);
        assert_eq!(
            e.quick_buy_answer(7, 1500),
            Some(Reply::AlreadyBought { order_no: 70 })
        );
        assert_eq!(e.quick_buy_answer(1, 1500), None);
        e.set_remaining(0);
        assert_eq!(
            e.quick_buy_answer(1, 1500).unwrap().status(),
            Status::SoldOut
        );
        assert_eq!(e.to_goods(1500).state, GoodsState::SoldOut);
        e.restocked(3, 1);
        assert_eq!(e.quick_buy_answer(1, 1500), None);
        assert_eq!(e.to_goods(1500).total, 3);
    }
}

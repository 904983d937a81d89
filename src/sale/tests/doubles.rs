//! Test doubles for the sale: stores that fail on demand, and a queue
//! that changes between two reads.

use parking_lot::Mutex;
use seckill_proto::{NewGoods, OrderState, SaleRules};

use crate::store::{
    Buyer, Epoch, GoodsId, GoodsRecord, Holders, Levels, Loaded, MemoryStock, OrderNo, OrderQueue,
    OrderRecord, OrderStore, ReserveRules, Reserved, SaleChange, SaleState, Settled, StockStore,
    StoreError, UserId, Written,
};

/// An order store with one goods whose writes fail while `failing`; its
/// BUYs need a purchase token if `tokens`; its recount of live orders
/// fails while `recount_failing`.
#[derive(Default)]
pub struct FlakyOrders {
    pub failing: Mutex<bool>,
    pub recount_failing: Mutex<bool>,
    pub tokens: bool,
    written: Mutex<Vec<OrderRecord>>,
    epoch: Mutex<Epoch>,
    pub sweeps: Mutex<u32>,
}

impl FlakyOrders {
    pub fn with_tokens() -> Self {
        FlakyOrders {
            tokens: true,
            ..FlakyOrders::default()
        }
    }
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
            rules: SaleRules {
                token_required: self.tokens,
                ..SaleRules::default()
            },
            paused: false,
            sale_version: 0,
            buckets: 1,
            live_orders: 0,
        }])
    }
    fn find_goods(&self, g: GoodsId) -> Result<Option<GoodsRecord>, StoreError> {
        Ok(self.goods()?.into_iter().find(|r| r.id == g))
    }
    fn add_goods(
        &self,
        _: &NewGoods,
        _: Option<seckill_proto::RequestId>,
    ) -> Result<GoodsRecord, StoreError> {
        unreachable!()
    }
    fn added_by(&self, _: seckill_proto::RequestId) -> Result<Option<GoodsRecord>, StoreError> {
        Ok(None)
    }
    /// Only while `failing`: a restock whose COMMIT reply was lost.
    fn restock(&self, _: GoodsId, _: u32) -> Result<crate::store::Restocked, StoreError> {
        assert!(*self.failing.lock(), "a restock of FlakyOrders that works");
        Err(StoreError::Indeterminate(
            "the COMMIT's reply was lost".into(),
        ))
    }
    fn next_epoch(&self, _: GoodsId, above: Epoch) -> Result<Epoch, StoreError> {
        let mut epoch = self.epoch.lock();
        *epoch = (*epoch).max(above) + 1;
        Ok(*epoch)
    }
    fn commit_orders(
        &self,
        orders: &[OrderRecord],
        _: &[Epoch],
    ) -> Result<Vec<Written>, StoreError> {
        if *self.failing.lock() {
            return Err(StoreError::Unavailable("down".into()));
        }
        self.written.lock().extend_from_slice(orders);
        Ok(vec![Written::Stored; orders.len()])
    }
    /// It keeps no count of live orders to drift.
    fn recount_live(&self, _: GoodsId) -> Result<Option<(u64, u64)>, StoreError> {
        match *self.recount_failing.lock() {
            true => Err(StoreError::Unavailable("recount failing".into())),
            false => Ok(None),
        }
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
    fn save_sale(&self, _: GoodsId, _: SaleChange) -> Result<GoodsRecord, StoreError> {
        unreachable!()
    }
    fn orders_of(&self, _: UserId, _: usize) -> Result<Vec<OrderRecord>, StoreError> {
        unreachable!()
    }
    fn stored_states(
        &self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, OrderState)>, StoreError> {
        let written = self.written.lock();
        Ok(order_nos
            .iter()
            .filter_map(|&n| written.iter().find(|o| o.order_no == n))
            .map(|o| (o.order_no, o.state))
            .collect())
    }
    fn pay(&self, _: UserId, _: OrderNo, _: u64) -> Result<Option<Settled>, StoreError> {
        unreachable!()
    }
    fn cancel(&self, _: UserId, _: OrderNo) -> Result<Option<Settled>, StoreError> {
        unreachable!()
    }
    /// Counts the sweeps, and panics (a bug in the sweep).
    fn expire_due(&self, _: u64, _: usize) -> Result<Vec<OrderRecord>, StoreError> {
        *self.sweeps.lock() += 1;
        panic!("a sweep's bug");
    }
}

/// Memory stock whose loads and adds fail while `failing`, and those of
/// the goods in `failing_goods` (a shard down).
#[derive(Default)]
pub struct FlakyStock {
    inner: MemoryStock,
    pub failing: Mutex<bool>,
    pub failing_goods: Mutex<Vec<GoodsId>>,
    /// How many times [`StockStore::held`] was asked.
    pub held_asked: std::sync::atomic::AtomicUsize,
}

impl FlakyStock {
    fn check(&self) -> Result<(), StoreError> {
        match *self.failing.lock() {
            true => Err(StoreError::Unavailable("down".into())),
            false => Ok(()),
        }
    }

    fn check_goods(&self, g: GoodsId) -> Result<(), StoreError> {
        self.check()?;
        match self.failing_goods.lock().contains(&g) {
            true => Err(StoreError::Unavailable(format!("goods {g}'s shard down"))),
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
        epoch: Epoch,
        total: u32,
    ) -> Result<Loaded, StoreError> {
        self.check_goods(g)?;
        self.inner.load(g, left, holders, epoch, total)
    }
    fn forget_unmade(&self, g: GoodsId, unmade: &[crate::store::Unmade]) -> Result<(), StoreError> {
        self.inner.forget_unmade(g, unmade)
    }
    fn control(&self, g: GoodsId, sale: &SaleState) -> Result<(), StoreError> {
        self.check_goods(g)?;
        self.inner.control(g, sale)
    }
    fn begin_load(&self, g: GoodsId, epoch: Epoch) -> Result<Loaded, StoreError> {
        self.check_goods(g)?;
        self.inner.begin_load(g, epoch)
    }
    fn epoch(&self, g: GoodsId) -> Result<Option<Epoch>, StoreError> {
        self.inner.epoch(g)
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
    fn add(&self, g: GoodsId, amount: u32, total: u32) -> Result<u32, StoreError> {
        self.check()?;
        self.inner.add(g, amount, total)
    }
    fn snapshot(&self, g: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
        self.inner.snapshot(g)
    }
    fn levels(&self, g: GoodsId) -> Result<Option<Levels>, StoreError> {
        self.check()?;
        self.inner.levels(g)
    }
    fn remaining(&self, g: GoodsId) -> Result<Option<u32>, StoreError> {
        self.inner.remaining(g)
    }
    fn held(&self, g: GoodsId, u: UserId) -> Result<Vec<OrderNo>, StoreError> {
        self.held_asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.check_goods(g)?;
        self.inner.held(g, u)
    }
}

/// The queue of the `queued` mode, as a list of orders a test may change.
pub struct TestQueue(pub Mutex<Vec<OrderRecord>>);

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
        Ok(self.0.lock().clone())
    }
    fn backlog(&self, goods: GoodsId) -> Result<crate::store::Backlog, StoreError> {
        let queue = self.0.lock();
        let queued = queue.iter().filter(|o| o.goods_id == goods);
        Ok(crate::store::Backlog {
            entries: queued.clone().count() as u64,
            // As a stream stamps them: when queued, taken here as created.
            oldest_ms: queued.map(|o| o.created_ms).min(),
        })
    }
}

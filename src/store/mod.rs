//! The two stores a sale runs on, as traits, and their backends.
//!
//! The split follows the architecture: the *stock store* is the hot,
//! atomic counter that decides who gets a unit (memory or Redis); the
//! *order store* is the durable record of goods and orders (SQLite or
//! MySQL). The order store is the truth: the stock store is reconciled with
//! it at start and whenever the two may disagree, which is what makes a
//! crash unable to oversell or lose an order.

mod memory;
mod mysql;
pub mod outage;
mod redis;
mod sqlite;
#[cfg(test)]
pub(crate) mod testdb;

pub use self::mysql::MysqlStore;
pub use self::redis::{Keys as RedisKeys, RedisStock, RESERVE as REDIS_RESERVE};
pub use memory::MemoryStock;
pub use sqlite::SqliteStore;

use std::time::Duration;

use seckill_proto::{NewGoods, OrderState};
use thiserror::Error;

pub type GoodsId = u64;
pub type UserId = u64;
pub type OrderNo = u64;
/// Buyers holding a unit of a goods, with their order numbers.
pub type Holders = Vec<(UserId, OrderNo)>;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store could not be reached or failed for a reason that may pass:
    /// the request is answered `busy`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write whose outcome is unknown: the link to the store broke while
    /// it committed. Nothing may be assumed either way; reconciliation
    /// finds out.
    #[error("store write outcome unknown: {0}")]
    Indeterminate(String),
    /// The goods does not exist in this store.
    #[error("unknown goods {0}")]
    UnknownGoods(GoodsId),
    /// The stock store has lost a goods it was given (Redis restarted
    /// without its data): answered `busy` while the sale reloads it from the
    /// order store.
    #[error("stock of goods {0} is not loaded")]
    NotLoaded(GoodsId),
    /// The store holds something it should not (a broken invariant).
    #[error("store inconsistent: {0}")]
    Inconsistent(String),
}

/// A goods as the order store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodsRecord {
    pub id: GoodsId,
    pub name: String,
    pub price_cents: u64,
    pub total: u32,
    pub start_ms: u64,
    pub end_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_no: OrderNo,
    pub user_id: UserId,
    pub goods_id: GoodsId,
    pub state: OrderState,
    pub created_ms: u64,
}

/// What became of one order in a batch write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The order is stored (now or by an earlier try of the same batch).
    Stored,
    /// The user already holds this live order of the goods; ours was not
    /// written.
    Duplicate(OrderNo),
}

/// What the stock store decided for one buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A unit was taken and recorded under the proposed order number.
    Reserved,
    /// The buyer already holds this order; nothing was taken.
    Held(OrderNo),
    /// No unit left; nothing was taken.
    SoldOut,
}

/// The result of one merged deduction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// One decision per buyer, in the order given.
    pub decisions: Vec<Reservation>,
    /// Units left after the whole batch.
    pub remaining: u32,
}

/// The atomic stock counter and the record of who holds a unit.
pub trait StockStore: Send + Sync {
    /// Sets a goods' stock to `remaining` units held apart from `holders`,
    /// replacing whatever the store had: used at start and on ADD_GOODS.
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
    ) -> Result<(), StoreError>;

    /// The flash sale itself. For each buyer in turn, atomically with respect
    /// to every other call: a buyer who holds an order gets it back; else if
    /// a unit is left it is taken and recorded under the proposed order
    /// number; else sold out. Many buyers of one goods go in one call.
    fn reserve(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)])
        -> Result<Reserved, StoreError>;

    /// Gives back units reserved under these order numbers whose orders could
    /// not be written. A pair that is not held as given is left alone, so a
    /// release can be repeated.
    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError>;

    /// Adds units to a goods (a restock). Returns the units now left.
    fn add(&self, goods: GoodsId, amount: u32) -> Result<u32, StoreError>;

    /// What the store holds for a goods: units left and holders, or `None`
    /// if it holds nothing (never loaded, or lost). For reconciliation.
    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError>;
}

/// An order the stock store queued for writing (the `queued` ack mode),
/// with the queue's id for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedOrder {
    pub id: String,
    pub order: OrderRecord,
}

/// The queue of acknowledged orders not yet written to the order store, in
/// the `queued` ack mode: the stock store appends to it in the same atomic
/// step as the deduction, and the order writer drains it.
pub trait OrderQueue: Send + Sync {
    /// New entries of these goods for this consumer, waiting up to `block`.
    fn read(
        &self,
        goods: &[GoodsId],
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<QueuedOrder>, StoreError>;

    /// Entries another consumer read but did not acknowledge for
    /// `min_idle` (a crashed server's), taken over by this consumer.
    fn claim_stale(
        &self,
        goods: GoodsId,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<QueuedOrder>, StoreError>;

    /// Entries now written to the order store: acknowledged and removed.
    fn ack(&self, goods: GoodsId, ids: &[String]) -> Result<(), StoreError>;

    /// Every order still in the queue of a goods (for reconciliation).
    fn queued(&self, goods: GoodsId) -> Result<Vec<OrderRecord>, StoreError>;
}

/// The durable record of goods and orders.
pub trait OrderStore: Send + Sync {
    /// Every goods, for the in-memory catalog at start.
    fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError>;

    fn add_goods(&self, goods: &NewGoods) -> Result<GoodsRecord, StoreError>;

    /// Raises a goods' total stock by `amount`.
    fn restock(&self, goods: GoodsId, amount: u32) -> Result<GoodsRecord, StoreError>;

    /// Writes a batch of orders in one transaction and says what became of
    /// each, in order. Writing an order number that is already stored is
    /// not an error ([`Written::Stored`]), so a batch can be retried. An
    /// order for a user who already holds a live order of that goods under
    /// another number is not written ([`Written::Duplicate`]) and does not
    /// fail the rest of the batch: the database's unique key is the last
    /// guard of "one order per user", behind the stock store.
    fn insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError>;

    /// The users who hold a live (not cancelled) order for a goods, with the
    /// order numbers: what the stock store is rebuilt from.
    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError>;

    /// A user's live order for a goods, if any.
    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError>;
}

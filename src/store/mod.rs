//! The two stores a sale runs on, as traits, and their backends.
//!
//! The split follows the architecture: the *stock store* is the hot,
//! atomic counter that decides who gets a unit (memory or Redis); the
//! *order store* is the durable record of goods and orders (SQLite or
//! MySQL). The order store is the truth: the stock store is reconciled with
//! it at start and whenever the two may disagree, which is what makes a
//! crash unable to oversell or lose an order.

mod batch;
#[cfg(test)]
mod conformance;
#[cfg(test)]
pub(crate) mod fixtures;
mod memory;
mod mysql;
pub mod nodes;
pub mod outage;
mod redis;
mod sqlite;
#[cfg(test)]
pub(crate) mod testdb;

pub use self::mysql::{split_urls, MysqlStore};
pub use self::redis::{RedisStock, Replication};
pub use memory::MemoryStock;
pub use nodes::{Claimed, NodeClaim, NodeRegistry};
pub use sqlite::SqliteStore;

use std::time::Duration;

use seckill_proto::{NewGoods, OrderState, RequestId, SaleRules};
use thiserror::Error;

pub type GoodsId = u64;
pub type UserId = u64;
/// A map by user id, on a path every BUY takes. User ids come from clients,
/// so the hash is keyed at random per process (aHash with its runtime
/// seed), as std's SipHash is, so that ids chosen to collide cannot turn
/// look-ups linear; SipHash costs several times more per `u64`.
pub type UserMap<V> = std::collections::HashMap<UserId, V, ahash::RandomState>;
pub type OrderNo = u64;
/// Buyers holding a unit of a goods, with their order numbers.
pub type Holders = Vec<(UserId, OrderNo)>;
/// A BUY whose order will never exist, and what may still name that order
/// in the stock store ([`StockStore::forget_unmade`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmade {
    pub user: UserId,
    pub order_no: OrderNo,
    /// The BUY's client request id, if it had one.
    pub request_id: Option<RequestId>,
    /// The BUY's purchase token ([`seckill_proto::NO_TOKEN`]: none).
    pub token: u64,
}

/// A BUY's client request id and the order it made, as an order store
/// kept it, to be forgotten at `forget_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptRequest {
    pub request_id: RequestId,
    pub user: UserId,
    pub order_no: OrderNo,
    pub forget_at_ms: u64,
}

/// A goods' fencing token. The order store issues a new, higher one to
/// every reconciliation ([`OrderStore::next_epoch`]); the stock store is
/// loaded under it and refuses scripts that carry an older one; and an order
/// reserved under an older one is not written ([`Written::Fenced`]). So a
/// reconciliation, by any server, can never put back on sale a unit that
/// another server reserved and may still commit.
pub type Epoch = u64;

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
    pub rules: SaleRules,
    /// The buckets its stock is split over in the stock store (1: not
    /// split), fixed when it is added.
    pub buckets: u16,
    /// An admin paused the sale (SALE_CONTROL).
    pub paused: bool,
    /// Raised by every saved sale control: of two views of the pause and
    /// the window, the higher version is the later one.
    pub sale_version: u64,
    /// Its live (created or paid) orders, as the order store counts them
    /// with every write: what the stock store should hold units for.
    pub live_orders: u64,
}

impl GoodsRecord {
    /// The sale controls as the stock store enforces them.
    pub fn sale(&self) -> SaleState {
        SaleState {
            paused: self.paused,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            version: self.sale_version,
        }
    }
}

/// What the sale controls say of a goods, enforced by the stock store in the
/// same atomic step as each deduction, so that a pause or an end sent to
/// any server holds on every server from the next BUY on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleState {
    pub paused: bool,
    /// The sale window: [start_ms, end_ms).
    pub start_ms: u64,
    pub end_ms: u64,
    /// The goods' `sale_version`: a stock store keeps the highest it is
    /// given, so that a late write of an older state changes nothing.
    pub version: u64,
}

/// Why the stock store refused a whole batch: the sale is not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Paused,
    NotStarted,
    Ended,
}

impl SaleState {
    /// Why nothing may be bought at `now_ms`, if so.
    pub fn closed(&self, now_ms: u64) -> Option<Closed> {
        if self.paused {
            Some(Closed::Paused)
        } else if now_ms < self.start_ms {
            Some(Closed::NotStarted)
        } else if now_ms >= self.end_ms {
            Some(Closed::Ended)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_no: OrderNo,
    pub user_id: UserId,
    pub goods_id: GoodsId,
    pub state: OrderState,
    pub created_ms: u64,
    /// Unpaid then, the order is cancelled and its unit returned.
    pub pay_by_ms: u64,
}

/// An order after PAY or CANCEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The order as it now stands.
    pub order: OrderRecord,
    /// This very call cancelled it (a CANCEL, or a PAY that came after the
    /// payment window): the caller owes the stock store its unit. Exactly
    /// one call per order ever sees `true`, which is what makes a unit come
    /// back exactly once however many servers and retries race.
    pub cancelled_now: bool,
}

/// What a restock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restocked {
    /// The total was raised: the goods as it now stands.
    Raised(GoodsRecord),
    /// The total would pass `u32::MAX`: nothing changed; the total it has.
    Refused { total: u32 },
}

impl Restocked {
    /// The goods after a restock that must have been raised (tests).
    #[cfg(test)]
    pub fn raised(self) -> GoodsRecord {
        match self {
            Restocked::Raised(g) => g,
            Restocked::Refused { total } => panic!("a restock refused at a total of {total}"),
        }
    }
}

/// What became of one order in a batch write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The order is stored (now or by an earlier try of the same batch).
    Stored,
    /// The user already holds this live order of the goods; ours was not
    /// written.
    Duplicate(OrderNo),
    /// Not written: the goods was reconciled since the order's unit was
    /// reserved (its epoch is no longer the goods'). That reconciliation
    /// counted the orders stored before it, so the unit is back in stock
    /// already: it must not be released again.
    Fenced,
    /// Not written: the goods' live orders would exceed its total. The
    /// stock store sold a unit that does not exist (it lost a deduction,
    /// as a Redis failover can); the unit must not be released, and the
    /// goods is to be reconciled.
    SoldOut,
}

/// What PAY or CANCEL makes of an order, decided the same way by every
/// order store on the row it read (and locked) in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Paid while its payment window is open at `now_ms`, else cancelled.
    Pay {
        now_ms: u64,
    },
    Cancel,
}

impl Settle {
    /// The command on `order`, as the store read (and locked) it in its
    /// transaction: `None` if it is no order of `user`'s. A created order
    /// moves on, and `write` stores its new state; a paid or cancelled one
    /// stays as it is.
    pub(crate) fn run<E>(
        self,
        user: UserId,
        order: Option<OrderRecord>,
        write: impl FnOnce(OrderState) -> Result<(), E>,
    ) -> Result<Option<Settled>, E> {
        let Some(mut order) = order.filter(|o| o.user_id == user) else {
            return Ok(None);
        };
        if order.state != OrderState::Created {
            return Ok(Some(Settled {
                order,
                cancelled_now: false,
            }));
        }
        let to = match self {
            Settle::Pay { now_ms } if now_ms < order.pay_by_ms => OrderState::Paid,
            Settle::Pay { .. } | Settle::Cancel => OrderState::Cancelled,
        };
        write(to)?;
        order.state = to;
        Ok(Some(Settled {
            order,
            cancelled_now: to == OrderState::Cancelled,
        }))
    }
}

/// One BUY, as the stock store decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buyer {
    pub user: UserId,
    /// The number the order gets if a unit is reserved.
    pub order_no: OrderNo,
    /// The purchase token the BUY carried (`NO_TOKEN` when none).
    pub token: u64,
    /// The client's id of this BUY, the same on every retry of it.
    pub request_id: Option<RequestId>,
}

/// How long a stock store remembers a request id after the BUY that
/// reserved under it: PROTOCOL.md promises at least an hour.
pub const REQUEST_ID_TTL_MS: u64 = 3_600_000;

/// The rules of a goods that a reservation applies, and its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveRules {
    /// Orders one user may hold at once.
    pub per_user_limit: u8,
    /// Every buyer must carry a token issued to them for this goods, unused
    /// and not expired.
    pub token_required: bool,
    pub now_ms: u64,
    /// Written with a queued order (the `queued` ack mode).
    pub pay_by_ms: u64,
}

/// Why a purchase token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Never issued, or issued to another user or goods, or forgotten.
    Invalid,
    Expired,
    /// It reserved a unit before, and that order is no longer held.
    Used,
}

/// What the stock store decided for one buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A unit was taken and recorded under the proposed order number.
    Reserved,
    /// The buyer already holds as many orders as the limit allows, or the
    /// one their token bought: this is one of them; nothing was taken.
    Held(OrderNo),
    /// No unit left; nothing was taken.
    SoldOut,
    /// The buyer's token was refused; nothing was taken.
    Token(TokenRefusal),
    /// The sale is not open, as the stock store's sale controls say;
    /// nothing was taken.
    Closed(Closed),
    /// The BUY's request id reserved this order before (a retry, through
    /// this server or another): the first answer again; nothing was taken.
    Replayed(OrderNo),
    /// The BUY's request id is another user's; nothing was taken.
    RequestIdTaken,
    /// Nothing was taken, and the buyer may retry: the buyer's bucket of a
    /// goods split over buckets ran dry while units were left elsewhere
    /// (on their way to it), or the store failed for this buyer's bucket
    /// after it had decided for others in the same call.
    Busy,
    /// The store failed for this buyer's bucket mid-write, after it had
    /// decided for others in the same call: a unit may have been taken
    /// ([`StoreError::Indeterminate`] for this buyer alone).
    InDoubt,
}

/// The result of one merged deduction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// One decision per buyer, in the order given.
    pub decisions: Vec<Reservation>,
    /// Units left after the whole batch.
    pub remaining: u32,
    /// The epoch the units were reserved under: their orders are written
    /// only while the goods still has it.
    pub epoch: Epoch,
}

/// A sale control as the order store applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleChange {
    Pause,
    Resume,
    /// Ends the sale at `now_ms`: the window's ends are moved no later than
    /// it (an upcoming sale that is ended never opens).
    End {
        now_ms: u64,
    },
    Window {
        start_ms: u64,
        end_ms: u64,
    },
}

/// Where a goods' units are in the stock store, for the conservation check
/// of a goods split over buckets (one part, the whole stock, otherwise):
/// `pool + in_flight + Σ buckets + holders` must be the goods' total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockParts {
    /// Units in the pool, from which buckets are refilled (0 with one
    /// bucket).
    pub pool: u32,
    /// Units sent from one part to another and not received yet: a move cut
    /// short by a crash, or under way. Read part by part while moves go on,
    /// a move between two reads may count here as negative (the counters
    /// it is computed from make the sum exact; see `send.lua`).
    pub in_flight: i64,
    /// Units left in each bucket.
    pub buckets: Vec<u32>,
    /// Orders held: reserved (not yet in the order store) or sold.
    pub holders: u64,
}

impl StockParts {
    /// A goods in one part: `remaining` units left, and its holders.
    pub fn whole(remaining: u32, holders: &Holders) -> StockParts {
        StockParts {
            pool: 0,
            in_flight: 0,
            buckets: vec![remaining],
            holders: holders.len() as u64,
        }
    }

    /// Every unit the parts account for.
    pub fn accounted(&self) -> i64 {
        let buckets: u64 = self.buckets.iter().map(|&b| u64::from(b)).sum();
        i64::from(self.pool) + self.in_flight + (buckets + self.holders) as i64
    }
}

/// A goods' counters in the stock store, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub remaining: u32,
    /// Units given back by releases, ever.
    pub released: u64,
}

/// What became of a [`StockStore::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The stock store holds the load now, under its epoch.
    Now,
    /// A load under a later epoch came first, and stands: this one's count
    /// is older than that one's.
    Superseded(Epoch),
}

/// The atomic stock counter and the record of who holds a unit.
pub trait StockStore: Send + Sync {
    /// The first step of a load under `epoch` (from
    /// `OrderStore::next_epoch`): from now on every call carrying an
    /// older epoch changes nothing, and until the [`load`](Self::load) every
    /// reservation and restock is refused (`Unavailable`), so that what the
    /// caller counts next holds still. `Superseded` if the store is at that
    /// epoch or a later one already (another reconciliation, which stands).
    fn begin_load(&self, goods: GoodsId, epoch: Epoch) -> Result<Loaded, StoreError>;

    /// Sets a goods' stock to `remaining` units held apart from `holders`,
    /// replacing whatever the store had, under `epoch`, if the goods is
    /// still frozen for it by [`begin_load`](Self::begin_load) (else
    /// `Superseded`: a later reconciliation began since). `total` is the
    /// goods' total the count was made from: a restock ([`add`](Self::add))
    /// for a total no higher is in the count, and adds nothing after it.
    /// Used at start, on ADD_GOODS and by reconciliation.
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
        epoch: Epoch,
        total: u32,
    ) -> Result<Loaded, StoreError>;

    /// Records a goods' sale controls, unless the store has a higher
    /// version already; from the next reservation on, a batch at a time
    /// when they close the sale is refused whole ([`Reservation::Closed`]).
    /// A goods never given any is open.
    fn control(&self, goods: GoodsId, sale: &SaleState) -> Result<(), StoreError>;

    /// The epoch the store holds a goods under, `None` if it holds nothing
    /// of it: read from the store, for a reconciliation's new epoch to be
    /// higher.
    fn epoch(&self, goods: GoodsId) -> Result<Option<Epoch>, StoreError>;

    /// The flash sale itself. For each buyer in turn, atomically with respect
    /// to every other call:
    /// 0. a buyer who holds the proposed order number already was reserved
    ///    by an earlier run of this same call (a client library may send a
    ///    script twice): `Reserved` again, nothing taken;
    /// 0'. a buyer whose request id reserved an order before gets that
    ///    order ([`Reservation::Replayed`]), or is refused if the id is
    ///    another user's; ids are remembered for `REQUEST_ID_TTL_MS`;
    /// 0''. a sale the controls close sells nothing ([`Reservation::Closed`]);
    /// 1. a buyer whose token reserved an order they still hold gets it back
    ///    (a retried BUY);
    /// 2. a buyer who holds `per_user_limit` orders gets one of them back;
    /// 3. with `token_required`, a token that was not issued to this user
    ///    for this goods, has expired, or was used is refused;
    /// 4. else if a unit is left it is taken and recorded under the proposed
    ///    order number (and the token marked used by it); else sold out.
    ///
    /// Many buyers of one goods go in one call.
    fn reserve(
        &self,
        goods: GoodsId,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError>;

    /// Gives back units held under these order numbers: orders that could
    /// not be written, or that were cancelled. A pair that is not held as
    /// given is left alone, so a release can be repeated and never returns a
    /// unit twice.
    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError>;

    /// Forgets what names orders that will never exist (their write failed
    /// or was fenced off, or refused as a second order), each only if it
    /// still names that order: the BUY's request id, so that a repeat of it
    /// is decided afresh, and its purchase token's mark of the order, so
    /// that the token buys again (a token is spent only by a BUY that makes
    /// an order).
    fn forget_unmade(&self, goods: GoodsId, unmade: &[Unmade]) -> Result<(), StoreError>;

    /// Records a purchase token issued to `user` for one BUY of `goods`
    /// before `expires_ms`. Spent and expired tokens are forgotten some
    /// time after they expire (a BUY with one is then `Invalid`).
    fn issue_token(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError>;

    /// Adds units to a goods (a restock). Returns the units now left.
    /// A restock that makes the goods' total `total` (the order store's,
    /// which only grows). The store keeps the total its stock covers (the
    /// last restock's, or the last load's) and adds the units between that
    /// and `total` (`amount` if it has none): a call sent twice adds once,
    /// two restocks arriving in either order add both, and one a load
    /// counted adds nothing.
    fn add(&self, goods: GoodsId, amount: u32, total: u32) -> Result<u32, StoreError>;

    /// What the store holds for a goods: units left and holders, or `None`
    /// if it holds nothing (never loaded, or lost). For reconciliation.
    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError>;

    /// Units left of a goods, and how many units [`release`](Self::release)
    /// ever gave back (when that moves, some holder let go through some
    /// server, and a server's cache of holders is out of date), in one
    /// read; `None` if the store does not hold the goods. For the periodic
    /// refresh of the catalog.
    fn levels(&self, goods: GoodsId) -> Result<Option<Levels>, StoreError>;

    /// Units left of a goods, or `None` if the store does not hold it: a
    /// cheap read, for refreshing what the catalog shows.
    fn remaining(&self, goods: GoodsId) -> Result<Option<u32>, StoreError>;

    /// Whether the store starts empty, its BUYs' request ids forgotten, at
    /// each start of its server (memory): the order store then keeps them
    /// for it (`OrderStore::commit_requested_orders`), and gives them back
    /// at start. A store that keeps its own (Redis) needs no such copy.
    fn forgets_requests(&self) -> bool {
        false
    }

    /// Takes back the request ids an order store kept of a goods
    /// (`OrderStore::kept_requests`) after a restart: each names the
    /// order its BUY made, until its `forget_at_ms`. An id the store knows
    /// already is left as it is. Asked only of a store that
    /// [forgets them](Self::forgets_requests).
    fn restore_requests(&self, goods: GoodsId, kept: &[KeptRequest]) -> Result<(), StoreError> {
        let _ = (goods, kept);
        Ok(())
    }

    /// The order numbers `user` holds of a goods as the store records them,
    /// sorted (none if the store does not hold the goods). In the queued
    /// mode every server learns from it of orders another server
    /// acknowledged that the order store does not have yet. A store that
    /// waits for replicas (`--redis-wait`) answers once they have what it
    /// answers, or fails in doubt: the answer is told to the user as theirs.
    fn held(&self, goods: GoodsId, user: UserId) -> Result<Vec<OrderNo>, StoreError>;

    /// The goods among `goods` that may have lost writes since the last
    /// call through no fault of the caller's: on a Redis Cluster, those
    /// whose slot a failover gave to a replica, which may lack the last
    /// deductions (replication is asynchronous). Each must be reloaded from
    /// the order store. None by default: a store that loses its data whole
    /// answers [`StoreError::NotLoaded`] instead.
    fn lost_writes(&self, goods: &[GoodsId]) -> Result<Vec<GoodsId>, StoreError> {
        let _ = goods;
        Ok(Vec::new())
    }

    /// The store's own clock, Unix ms, where it is shared by several
    /// servers (Redis): what each server's clock is compared with at
    /// start. None for a store of one process.
    fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Tells the store that a goods is split over `buckets` buckets (its
    /// `GoodsRecord::buckets`, fixed when it was added), before any other
    /// call for it. A store that keeps each goods in one place (memory)
    /// ignores it.
    fn split(&self, goods: GoodsId, buckets: u16) {
        let _ = (goods, buckets);
    }
    /// Where a goods' units are, part by part: `None` if the store does not
    /// hold it. One bucket by default, from the [`snapshot`](Self::snapshot).
    fn parts(&self, goods: GoodsId) -> Result<Option<StockParts>, StoreError> {
        Ok(self
            .snapshot(goods)?
            .map(|(remaining, holders)| StockParts::whole(remaining, &holders)))
    }
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

    /// How far the writing of a goods' queued orders is behind (for
    /// /metrics): cheap, without reading the entries.
    fn backlog(&self, goods: GoodsId) -> Result<Backlog, StoreError>;

    /// Where the queue may lose orders told "ok" (a store that does not
    /// persist or replicate every write before it answers), one sentence
    /// each, for the log at start. None by default.
    fn risks(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// Orders acknowledged to buyers and not yet written to the order store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Entries in the queue, read by a writer or not.
    pub entries: u64,
    /// When the oldest of them was queued (Unix ms); none when empty.
    pub oldest_ms: Option<u64>,
}

/// The durable record of goods and orders.
pub trait OrderStore: Send + Sync {
    /// Every goods, for the in-memory catalog at start.
    fn goods(&self) -> Result<Vec<GoodsRecord>, StoreError>;

    /// The store's own clock, Unix ms, where it is a server of its own
    /// (MySQL: node leases are timed by it): what this server's clock is
    /// compared with at start. None for a file of this process.
    fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// One goods as it stands now, if it exists.
    fn find_goods(&self, goods: GoodsId) -> Result<Option<GoodsRecord>, StoreError>;

    /// Adds a goods. With a `request_id` (without its repeat mark), the id
    /// is recorded in the same transaction, and a second goods under one id
    /// is refused (the caller then looks it up with [`OrderStore::added_by`]).
    fn add_goods(
        &self,
        goods: &NewGoods,
        request_id: Option<RequestId>,
    ) -> Result<GoodsRecord, StoreError>;

    /// The goods an ADD_GOODS of this request id made, if one did.
    fn added_by(&self, request_id: RequestId) -> Result<Option<GoodsRecord>, StoreError>;

    /// Raises a goods' total stock by `amount`, in one statement that
    /// refuses to take it past `u32::MAX` (checked against the total the
    /// store has, which another server may have raised since this one read
    /// it). An amount of 0 changes nothing and is no refusal.
    fn restock(&self, goods: GoodsId, amount: u32) -> Result<Restocked, StoreError>;

    /// Applies a sale control in one statement that changes only what the
    /// control is about (a pause leaves the window as another server may
    /// just have set it), and raises the goods' `sale_version`.
    fn save_sale(&self, goods: GoodsId, change: SaleChange) -> Result<GoodsRecord, StoreError>;

    /// Writes a batch of orders in one transaction and says what became of
    /// each, in order. Writing an order number that is already stored is
    /// not an error ([`Written::Stored`]), so a batch can be retried. An
    /// order for a user who already holds a live order of that goods under
    /// another number is not written ([`Written::Duplicate`]) and does not
    /// fail the rest of the batch: the database's unique key is the last
    /// guard of "one order per user", behind the stock store.
    fn insert_orders(&self, orders: &[OrderRecord]) -> Result<Vec<Written>, StoreError> {
        self.commit_orders(orders, &[])
    }

    /// [`insert_orders`](Self::insert_orders), fenced: the unit of
    /// `orders[i]` was reserved under `epochs[i]`, and it is written only if
    /// its goods still has that epoch, checked in the same transaction
    /// (else [`Written::Fenced`]). An empty `epochs` fences nothing (orders
    /// already acknowledged, in the `queued` mode).
    fn commit_orders(
        &self,
        orders: &[OrderRecord],
        epochs: &[Epoch],
    ) -> Result<Vec<Written>, StoreError>;

    /// [`commit_orders`](Self::commit_orders), with the client request id
    /// of each order's BUY (`requests[i]` for `orders[i]`). A store that
    /// keeps them (SQLite) records those of the orders it stores in the
    /// same transaction, so that a repeat of the BUY gets its order after a
    /// restart of a stock store that forgets them (memory); see
    /// [`kept_requests`](Self::kept_requests). Others leave them to the
    /// stock store (Redis keeps its own).
    fn commit_requested_orders(
        &self,
        orders: &[OrderRecord],
        epochs: &[Epoch],
        requests: &[Option<RequestId>],
    ) -> Result<Vec<Written>, StoreError> {
        let _ = requests;
        self.commit_orders(orders, epochs)
    }

    /// The request ids [`commit_requested_orders`](Self::commit_requested_orders)
    /// recorded for a goods that are not yet to be forgotten at `now_ms`,
    /// for a stock store that starts empty ([`StockStore::restore_requests`]).
    /// None from a store that keeps none.
    fn kept_requests(&self, goods: GoodsId, now_ms: u64) -> Result<Vec<KeptRequest>, StoreError> {
        let _ = (goods, now_ms);
        Ok(Vec::new())
    }

    /// A new epoch for a goods, for a reconciliation: higher than every one
    /// issued before and than `above` (the stock store's, which may be
    /// ahead of a store that knows nothing of it yet). From then on no
    /// order reserved under an older epoch is written.
    fn next_epoch(&self, goods: GoodsId, above: Epoch) -> Result<Epoch, StoreError>;

    /// The users who hold a live (not cancelled) order for a goods, with the
    /// order numbers: what the stock store is rebuilt from.
    fn live_holders(&self, goods: GoodsId) -> Result<Vec<(UserId, OrderNo)>, StoreError>;

    /// Sets a goods' count of live orders (`goods.live_orders`, the order
    /// store's own cap: a batch that would take it past the total is
    /// refused) to the live orders the store holds, should it have drifted
    /// (an older server's writes, a hand edit): what it was and is now, if
    /// it was wrong. Run by each reconciliation.
    fn recount_live(&self, goods: GoodsId) -> Result<Option<(u64, u64)>, StoreError>;

    /// A user's live order for a goods, if any.
    fn find_order(&self, user: UserId, goods: GoodsId) -> Result<Option<OrderRecord>, StoreError>;

    /// Which of these order numbers the store holds, in any state.
    fn stored(&self, order_nos: &[OrderNo]) -> Result<Vec<OrderNo>, StoreError> {
        Ok(self
            .stored_states(order_nos)?
            .into_iter()
            .map(|(order_no, _)| order_no)
            .collect())
    }

    /// Of these order numbers, those the store holds, with their states.
    fn stored_states(
        &self,
        order_nos: &[OrderNo],
    ) -> Result<Vec<(OrderNo, OrderState)>, StoreError>;

    /// A user's orders, newest first, at most `max`.
    fn orders_of(&self, user: UserId, max: usize) -> Result<Vec<OrderRecord>, StoreError>;

    /// PAY: a created order of this user's becomes paid if its payment
    /// window is still open at `now_ms`, and is cancelled if it is not.
    /// A paid or cancelled order is left as it is. `None`: the user has no
    /// order of that number (not written yet, or someone else's).
    fn pay(
        &self,
        user: UserId,
        order_no: OrderNo,
        now_ms: u64,
    ) -> Result<Option<Settled>, StoreError>;

    /// CANCEL: a created order of this user's becomes cancelled; a paid or
    /// cancelled one is left as it is.
    fn cancel(&self, user: UserId, order_no: OrderNo) -> Result<Option<Settled>, StoreError>;

    /// Cancels up to `max` created orders whose payment window closed by
    /// `now_ms`, and returns those this call cancelled (each order is
    /// returned by exactly one call, whichever server makes it).
    fn expire_due(&self, now_ms: u64, max: usize) -> Result<Vec<OrderRecord>, StoreError>;
}

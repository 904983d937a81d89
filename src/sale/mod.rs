//! The flash-sale rules, written against the store traits.
//!
//! A BUY passes three gates, cheapest first:
//! 1. the reactor, from the [`Catalog`]: unknown goods, outside the sale
//!    window, an order this user already has, the sold-out flag;
//! 2. a worker, through [`Sale::reserve`] (`buy.rs`): one merged call to the
//!    stock store decides every pending BUY of a goods at once;
//! 3. in the `durable` ack mode, the order writer, through [`Sale::commit`]
//!    (`commit.rs`): each reserved unit travels as a [`PendingOrder`], and
//!    a batch of them is written in one transaction; only then is the buyer
//!    told "ok". If the write fails, the units go back to stock and the
//!    buyers are told `busy`. In the `queued` mode the stock store appended
//!    the order to its queue in the same atomic step as the deduction, so
//!    the buyer is told "ok" at once and the queue drain writes it
//!    ([`Sale::write_queued`]).
//!
//! The order store is the truth; [`Sale::reconcile`] rebuilds the stock
//! store from it (at start, on RECONCILE, and when the stock store lost a
//! goods or a write ended in doubt). Admin commands (`admin.rs`) run on a
//! worker of their own.
//!
//! After "ok" the order lives on (`lifecycle.rs`): it is paid, or cancelled
//! by its buyer, or cancelled when its payment window passes; a cancelled
//! order's unit goes back on sale exactly once.

mod admin;
mod buy;
pub mod catalog;
mod commit;
mod lifecycle;
mod order_no;
mod reads;
mod reconcile;
mod reservation;
#[cfg(test)]
mod tests;

pub use buy::{Buy, Decision};
pub use catalog::{Catalog, Entry};
pub use lifecycle::EXPIRE_BATCH;
pub use order_no::{OrderNumbers, MAX_NODE_ID};
pub use reconcile::describe;
pub use reservation::PendingOrder;

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use log::error;
use seckill_proto::{Order, Reply, Request, Status, ALL_GOODS};

pub use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::store::{
    GoodsId, OrderNo, OrderQueue, OrderRecord, OrderStore, StockStore, StoreError, UserId,
};
use crate::telemetry::StoreCall;

/// How long a purchase token is good for, unless configured.
pub const DEFAULT_TOKEN_TTL_MS: u64 = 30_000;
/// The longest payment window ADD_GOODS accepts: a year and a day, so that
/// every deadline is a plain timestamp in every store (SQLite's integers
/// are signed).
pub const MAX_PAY_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;
/// Goods waiting for a repair at most; more requests are dropped (the
/// periodic refresh repairs what a dropped request would have).
const REPAIR_QUEUE: usize = 1024;

/// The stock store's order queues, as a sale uses them.
#[derive(Clone, Default)]
pub enum Queues {
    /// None (the stock in process memory).
    #[default]
    None,
    /// The `queued` ack mode: a BUY is answered "ok" once its order is
    /// queued, and the queue drain writes it.
    Acked(Arc<dyn OrderQueue>),
    /// The `durable` mode on Redis: nothing is queued, but servers that ran
    /// with `--ack queued` before may have left orders there, told "ok" and
    /// not written yet. Reconciliations count them, as the queued mode does
    /// (a reload that did not would give their units back: sold twice, and
    /// the orders lost), and a drain writes them once at start.
    Leftover(Arc<dyn OrderQueue>),
}

impl Queues {
    /// The `queued` mode's queue.
    fn acked(&self) -> Option<&Arc<dyn OrderQueue>> {
        match self {
            Queues::Acked(q) => Some(q),
            Queues::None | Queues::Leftover(_) => None,
        }
    }

    /// A queue whose orders hold their units though the order store lacks
    /// them: the `queued` mode's, or one a queued server left.
    fn holding(&self) -> Option<&Arc<dyn OrderQueue>> {
        match self {
            Queues::Acked(q) | Queues::Leftover(q) => Some(q),
            Queues::None => None,
        }
    }
}

pub struct Sale {
    catalog: Catalog,
    stock: Arc<dyn StockStore>,
    orders: Arc<dyn OrderStore>,
    /// With the stock in Redis, its order queues ([`Queues`]).
    queues: Queues,
    order_nos: OrderNumbers,
    metrics: Arc<Metrics>,
    token_ttl_ms: u64,
    /// The most goods ADD_GOODS makes ([`seckill_proto::MAX_GOODS`]; the
    /// tests' own).
    max_goods: usize,
    /// Goods a BUY found in doubt, for the admin worker to reconcile: the
    /// BUY answers `busy` rather than run a reconciliation itself.
    repairs: (Sender<GoodsId>, Receiver<GoodsId>),
    /// The `queued` mode's oldest queue entry, as last read.
    queued_goods: reads::QueuedGoods,
}

/// Orders grouped by goods as (user, order number) pairs.
fn by_goods<'a>(
    orders: impl IntoIterator<Item = &'a OrderRecord>,
) -> BTreeMap<GoodsId, Vec<(UserId, OrderNo)>> {
    let mut grouped: BTreeMap<GoodsId, Vec<_>> = BTreeMap::new();
    for o in orders {
        grouped
            .entry(o.goods_id)
            .or_default()
            .push((o.user_id, o.order_no));
    }
    grouped
}

/// The reply to a request naming a goods that does not exist.
pub fn unknown_goods(goods: GoodsId) -> Reply {
    Reply::error(Status::UnknownGoods, format!("no goods {goods}"))
}

/// The reply for a request that a store failed.
fn store_failure(what: &str, e: &StoreError) -> Reply {
    match e {
        StoreError::Unavailable(_) | StoreError::NotLoaded(_) => {
            // Logged once per outage by the store itself.
            Reply::error(Status::Busy, format!("{what} unavailable, retry later"))
        }
        StoreError::UnknownGoods(id) => unknown_goods(*id),
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
    /// told "ok" as soon as their order is queued (the `queued` ack mode;
    /// see [`Queues`]).
    /// Order numbers come from `order_nos` (a node id's generator, granted
    /// by the node lease; a plain node id for one that is never leased):
    /// without a grant, BUYs are answered `busy`.
    pub fn open(
        stock: Arc<dyn StockStore>,
        orders: Arc<dyn OrderStore>,
        queues: Queues,
        order_nos: impl Into<OrderNumbers>,
        metrics: Arc<Metrics>,
    ) -> Result<Sale, StoreError> {
        let sale = Sale {
            catalog: Catalog::new(),
            stock,
            orders,
            queues,
            order_nos: order_nos.into(),
            metrics,
            token_ttl_ms: DEFAULT_TOKEN_TTL_MS,
            max_goods: seckill_proto::MAX_GOODS,
            repairs: crossbeam_channel::bounded(REPAIR_QUEUE),
            queued_goods: reads::QueuedGoods::default(),
        };
        let now = now_ms();
        for goods in sale.orders.goods()? {
            sale.stock.split(goods.id, goods.buckets);
            sale.catalog.insert(&goods, 0);
            // The BUYs' request ids, where the order store keeps them for a
            // stock store that starts empty: a repeat gets its order.
            if sale.stock.forgets_requests() {
                let kept = sale.orders.kept_requests(goods.id, now)?;
                sale.stock.restore_requests(goods.id, &kept)?;
            }
        }
        sale.reconcile_at_start()?;
        Ok(sale)
    }

    /// How long the purchase tokens this sale issues stay good.
    pub fn set_token_ttl(&mut self, ttl_ms: u64) {
        self.token_ttl_ms = ttl_ms.max(1);
    }

    #[cfg(test)]
    fn set_max_goods(&mut self, max: usize) {
        self.max_goods = max;
    }

    /// The counters this sale updates, shared with the rest of the server.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The order queue of the `queued` ack mode, for the queue drain.
    pub fn queue(&self) -> Option<Arc<dyn OrderQueue>> {
        self.queues.acked().cloned()
    }

    /// The queues a queued server may have left, in the `durable` mode on
    /// Redis, for the drain that writes what they hold at start.
    pub fn leftovers(&self) -> Option<Arc<dyn OrderQueue>> {
        match &self.queues {
            Queues::Leftover(q) => Some(q.clone()),
            Queues::None | Queues::Acked(_) => None,
        }
    }

    /// The generator of this sale's order numbers.
    pub fn order_numbers(&self) -> &OrderNumbers {
        &self.order_nos
    }

    /// The goods as reactors see them.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Goods found in doubt on the BUY path, to be repaired by
    /// [`Sale::repair`] off it.
    pub fn repair_requests(&self) -> &Receiver<GoodsId> {
        &self.repairs.1
    }

    /// Asks for a goods to be reconciled off the BUY path, once until the
    /// repair begins, and not while asked-for repairs back off after
    /// failing (every BUY batch of the goods would send one for nothing).
    /// A full queue drops the request: the periodic refresh repairs the
    /// goods anyway.
    fn request_repair(&self, entry: &Entry) {
        if entry.gate.asked_repairs_wait(now_ms()) {
            return;
        }
        if entry.gate.ask_repair() && self.repairs.0.try_send(entry.id).is_err() {
            entry.gate.repair_begins();
        }
    }

    /// Serves a request that needs a store, other than BUY (which a worker
    /// batches per goods for [`Sale::reserve`]): the one place a decoded
    /// request meets the sale rule that answers it.
    pub fn serve(&self, request: Request) -> Reply {
        match request {
            Request::OrderStatus { user_id, goods_id } => self.order_status(user_id, goods_id),
            Request::Pay { user_id, order_no } => self.pay(user_id, order_no),
            Request::Cancel { user_id, order_no } => self.cancel(user_id, order_no),
            Request::ListOrders { user_id } => self.list_orders(user_id),
            Request::Token { user_id, goods_id } => self.issue_token(user_id, goods_id),
            Request::SaleControl { goods_id, action } => self.control(goods_id, action),
            Request::AddGoods { goods, request_id } => self.add_goods(&goods, request_id),
            Request::Restock { goods_id, amount } => self.restock(goods_id, amount),
            Request::Reconcile { goods_id } => {
                self.reconcile_reply((goods_id != ALL_GOODS).then_some(goods_id))
            }
            Request::Stock { goods_id } => self.stock_parts(goods_id),
            Request::Buy { .. }
            | Request::Hello { .. }
            | Request::Ping
            | Request::ListGoods
            | Request::GetGoods { .. }
            | Request::Stats => {
                error!("{:?} reached Sale::serve", request.opcode());
                Reply::error(Status::InternalError, "request routed to the wrong place")
            }
        }
    }

    /// Returns the units of reserved orders that will never be written to
    /// the stock store.
    fn release<'a>(&self, unsold: impl IntoIterator<Item = &'a OrderRecord>) {
        for (goods, holders) in by_goods(unsold) {
            self.release_holders(goods, &holders);
        }
    }

    /// One release call for these holders of one goods.
    fn release_holders(&self, goods: GoodsId, holders: &[(UserId, OrderNo)]) {
        if self.catalog.get(goods).is_none() {
            // Another server's goods this server has not read yet (a
            // cancel within a refresh of its adding): the stock store must
            // know its buckets first, or the release goes to keys that hold
            // none of its units. Unknown, the release tries as it is, and a
            // failure is left to the refresh's look at stranded units.
            if let Ok(Some(record)) = self.orders.find_goods(goods) {
                self.stock.split(goods, record.buckets);
            }
        }
        let released = self
            .metrics
            .timing
            .store_call(StoreCall::Release, || self.stock.release(goods, holders));
        match released {
            Ok(remaining) => {
                if let Some(entry) = self.catalog.get(goods) {
                    entry.view.set_remaining(remaining);
                }
            }
            // The units stay reserved with no order behind them: never
            // oversold, and the next reconciliation returns them.
            Err(e) => {
                error!("releasing {} units of goods {goods}: {e}", holders.len());
                if let Some(entry) = self.catalog.get(goods) {
                    entry.gate.mark_unsure();
                }
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

//! The flash-sale rules, written against the store traits.
//!
//! A BUY passes three gates, cheapest first:
//! 1. the reactor, from the [`Catalog`]: unknown goods, outside the sale
//!    window, an order this user already has, the sold-out flag;
//! 2. a worker, through [`Sale::reserve`]: one merged call to the stock store
//!    decides every pending BUY of a goods at once;
//! 3. the order writer, through [`Sale::commit`]: accepted orders are written
//!    in one transaction; only then is the buyer told "ok". If the write
//!    fails, the units go back to stock and the buyers are told `busy`.

mod catalog;
mod order_no;

pub use catalog::{Catalog, Entry};
pub use order_no::{OrderNumbers, MAX_NODE_ID};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use log::error;
use seckill_proto::{NewGoods, Order, OrderState, Reply, Status};

use crate::metrics::{self, Metrics};
use crate::store::{
    GoodsId, OrderNo, OrderRecord, OrderStore, Reservation, StockStore, StoreError, UserId, Written,
};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    order_nos: OrderNumbers,
    metrics: Arc<Metrics>,
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
    }
}

impl Sale {
    /// Loads every goods into the catalog and rebuilds its stock from the
    /// orders: remaining = total − live orders. This is what makes a restart
    /// after a crash exact.
    pub fn open(
        stock: Arc<dyn StockStore>,
        orders: Arc<dyn OrderStore>,
        node_id: u16,
        metrics: Arc<Metrics>,
    ) -> Result<Sale, StoreError> {
        let catalog = Catalog::new();
        for goods in orders.goods()? {
            let holders = orders.live_holders(goods.id)?;
            let sold = u32::try_from(holders.len()).unwrap_or(u32::MAX);
            if sold > goods.total {
                error!(
                    "goods {} has {sold} live orders for a total of {}",
                    goods.id, goods.total
                );
            }
            let remaining = goods.total.saturating_sub(sold);
            stock.load(goods.id, remaining, &holders)?;
            catalog.insert(&goods, remaining, holders.into_iter().collect());
        }
        Ok(Sale {
            catalog,
            stock,
            orders,
            order_nos: OrderNumbers::new(node_id),
            metrics,
        })
    }

    /// Decides the BUYs of `users` for one goods with one call to the stock
    /// store. Returns one decision per user, in order.
    pub fn reserve(&self, goods: GoodsId, users: &[UserId]) -> Vec<Decision> {
        let answer_all = |reply: Reply| {
            users
                .iter()
                .map(|_| Decision::Answer(reply.clone()))
                .collect()
        };
        let Some(entry) = self.catalog.get(goods) else {
            return answer_all(Reply::error(
                Status::UnknownGoods,
                format!("no goods {goods}"),
            ));
        };
        let buyers: Vec<_> = users.iter().map(|&u| (u, self.order_nos.next())).collect();
        metrics::add(&self.metrics.stock_calls, 1);
        metrics::add(&self.metrics.stock_buys, users.len() as u64);
        let reserved = match self.stock.reserve(goods, &buyers) {
            Ok(r) => r,
            Err(e) => {
                metrics::add(&self.metrics.busy, users.len() as u64);
                return answer_all(store_failure("stock store", &e));
            }
        };
        entry.set_remaining(reserved.remaining);
        let created_ms = now_ms();
        buyers
            .iter()
            .zip(reserved.decisions)
            .map(|(&(user_id, order_no), decision)| match decision {
                Reservation::Reserved => Decision::Write(OrderRecord {
                    order_no,
                    user_id,
                    goods_id: goods,
                    state: OrderState::Created,
                    created_ms,
                }),
                Reservation::Held(order_no) => {
                    metrics::add(&self.metrics.buy_already_bought, 1);
                    Decision::Answer(Reply::AlreadyBought { order_no })
                }
                Reservation::SoldOut => {
                    metrics::add(&self.metrics.buy_sold_out, 1);
                    Decision::Answer(Reply::error(Status::SoldOut, "sold out"))
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
                metrics::add(&self.metrics.busy, orders.len() as u64);
                let reply = store_failure("order store", &e);
                (
                    vec![reply; orders.len()],
                    Vec::new(),
                    orders.iter().collect(),
                )
            }
        };
        metrics::add(&self.metrics.orders_written, kept.len() as u64);
        metrics::add(&self.metrics.buy_ok, kept.len() as u64);
        for (goods, holders) in by_goods(&kept) {
            if let Some(entry) = self.catalog.get(goods) {
                entry.add_holders(holders);
            }
        }
        for (goods, holders) in by_goods(&unsold) {
            match self.stock.release(goods, &holders) {
                Ok(remaining) => {
                    if let Some(entry) = self.catalog.get(goods) {
                        entry.set_remaining(remaining);
                    }
                }
                // The units stay reserved with no order behind them: never
                // oversold, and a restart (which rebuilds the stock from the
                // orders) returns them.
                Err(e) => error!("releasing {} units of goods {goods}: {e}", holders.len()),
            }
        }
        replies
    }

    pub fn order_status(&self, user: UserId, goods: GoodsId) -> Reply {
        if self.catalog.get(goods).is_none() {
            return Reply::error(Status::UnknownGoods, format!("no goods {goods}"));
        }
        match self.orders.find_order(user, goods) {
            Ok(Some(o)) => Reply::Order(Order {
                order_no: o.order_no,
                user_id: o.user_id,
                goods_id: o.goods_id,
                state: o.state,
                created_ms: o.created_ms,
            }),
            Ok(None) => Reply::error(Status::NoOrder, "no order for this user and goods"),
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
        let record = match self.orders.add_goods(new) {
            Ok(r) => r,
            Err(e) => return store_failure("order store", &e),
        };
        if let Err(e) = self.stock.load(record.id, record.total, &[]) {
            // The goods is stored but cannot sell until the stock is loaded:
            // a restart (or reconcile) loads it. Say so rather than hide it.
            return store_failure("stock store", &e);
        }
        self.catalog.insert(&record, record.total, HashMap::new());
        match self.catalog.get(record.id) {
            Some(entry) => Reply::GoodsAdded(entry.to_goods(now_ms())),
            None => Reply::error(Status::InternalError, "goods vanished after insert"),
        }
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
            Err(e) => store_failure("stock store", &e),
        }
    }
}

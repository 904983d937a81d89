//! The product-info cache: every goods in memory, readable by reactors.
//!
//! LIST_GOODS and GET_GOODS are answered from here and never reach a store.
//! The reactor's fast answers for BUY come from here too: the sale window,
//! a pause, the sold-out flag, a missing purchase token, and the orders this
//! server has committed (so a user who retries after the goods sold out
//! still learns their order number). Sale controls change the atomics here,
//! so every reactor sees them at its next request.
//!
//! Each goods is an [`Entry`] of three parts, each with its own readers and
//! writers: the [`GoodsView`] reactors read (atomics only), its
//! [`Holders`], and its [`Gate`].
//!
//! # Every lock in the server, and the order they are taken in
//!
//! A thread holding a lock may take only locks *below* it in this list,
//! never one above it; locks on one line are never held together.
//!
//! 1. [`Gate`] of a goods (per goods; one goods at a time). Shared: a
//!    reservation across its stock call and what its answers need (in the
//!    durable mode the order store's states of held orders this server
//!    does not know, and the release of units held for cancelled ones),
//!    the return of cancelled units across its release call. Alone:
//!    reconciliation across its reads and loads of both stores, a restock
//!    across its two writes, a sale control (no I/O). BUYs never wait for
//!    it across store I/O; a reconciliation waits for the shared holders,
//!    and, the lock being fair, shared takers after it wait for it.
//!
//!    Not a lock of this process: the database's row locks, taken by order
//!    batches goods row first, then order index entries, and by settles
//!    and the expiry sweep order rows first, then the goods row. The two
//!    orders can deadlock; InnoDB breaks it, and such a transaction is run
//!    again (`src/store/mysql/calls.rs`).
//! 2. [`Holders`]' `live` map (per goods), then its `forgotten` set.
//!    Held only for in-memory work, by reactors (read) and the order
//!    writer, expiry and reconciliation (write).
//! 3. The Redis stock store's `watch` (which primary served each part of
//!    each goods): held across its CLUSTER calls, so it takes the leaves
//!    below (the connection pool, the `splits` map).
//! 4. Leaves, never held while another lock is taken: the catalog's own
//!    map (held only to clone an entry out), the reactors' rate-limit
//!    shards and the acceptor's per-address counts, and each store's
//!    internal locks (connection pools, SQLite's two connections, the
//!    memory store's map and per-goods stock, Redis's loaded, epoch,
//!    loading, `splits` and `levels` maps).
//!    Stores are called with a gate held (level 1), never the other way.

mod gate;
mod holders;
mod view;

pub use gate::Gate;
pub use holders::Holders;
pub use view::GoodsView;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use seckill_proto::{Reply, Status, NO_TOKEN};

use crate::store::{GoodsId, GoodsRecord, UserId};

#[derive(Default)]
pub struct Catalog {
    goods: RwLock<BTreeMap<GoodsId, Arc<Entry>>>,
}

/// One goods.
pub struct Entry {
    pub id: GoodsId,
    pub view: GoodsView,
    pub holders: Holders,
    pub gate: Gate,
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

    /// The ids of every goods.
    pub fn ids(&self) -> Vec<GoodsId> {
        self.goods.read().keys().copied().collect()
    }

    /// How many goods it holds.
    pub fn len(&self) -> usize {
        self.goods.read().len()
    }

    /// Adds a goods, unless the catalog has it already (then that entry
    /// stays, with its gate and the units reserved under it).
    pub fn insert(&self, record: &GoodsRecord, remaining: u32) -> Arc<Entry> {
        let mut goods = self.goods.write();
        let entry = goods.entry(record.id).or_insert_with(|| {
            Arc::new(Entry {
                id: record.id,
                view: GoodsView::new(record, remaining),
                holders: Holders::default(),
                gate: Gate::default(),
            })
        });
        entry.clone()
    }
}

impl Entry {
    /// The answer to a BUY that needs no store, if there is one: the sale
    /// window or a pause, the orders this user already has, a missing
    /// purchase token, or the sold-out flag.
    pub fn quick_buy_answer(&self, user: UserId, token: u64, now_ms: u64) -> Option<Reply> {
        if let Some(closed) = self.view.closed(now_ms) {
            return Some(closed);
        }
        let limit = self.view.rules.per_user_limit;
        if let Some(order_no) = self.holders.at_limit(user, limit) {
            return Some(Reply::AlreadyBought { order_no });
        }
        if self.view.rules.token_required && token == NO_TOKEN {
            return Some(Reply::error(
                Status::TokenRequired,
                "this goods needs a purchase token: ask TOKEN first",
            ));
        }
        if self.view.is_sold_out() {
            return Some(Reply::error(Status::SoldOut, "sold out"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SaleState;
    use seckill_proto::{GoodsState, SaleRules};

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
            sale_version: 0,
            buckets: 1,
            live_orders: 0,
        }
    }

    /// A reread of the holders drops only what the cache held before it
    /// and the stores no longer have: an order acknowledged while it read
    /// stays.
    #[test]
    fn a_reread_of_holders_keeps_what_was_added_meanwhile() {
        let holders = Holders::default();
        holders.add([(1, 10), (2, 20)]);
        let before = holders.all();
        holders.add([(3, 30)]);
        holders.update(&before, &[(2, 20), (4, 40)]);
        let mut now = holders.all();
        now.sort_unstable();
        assert_eq!(now, [(2, 20), (3, 30), (4, 40)]);
    }

    /// Views of the sale set from several threads at once (the admin
    /// worker, the refresh), each of its own version: the newest stays,
    /// whole; an older one checked before it was stored never lands after.
    #[test]
    fn the_newest_sale_control_stays_whatever_the_threads() {
        let view = GoodsView::new(&record(), 1);
        let state = |version: u64| SaleState {
            paused: version % 2 == 1,
            start_ms: version,
            end_ms: version + 1,
            version,
        };
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let view = &view;
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        view.set_sale(&state(i * 4 + t));
                    }
                });
            }
        });
        let newest = 19_999 * 4 + 3;
        let shown = view.to_goods(0);
        assert_eq!((shown.start_ms, shown.end_ms), (newest, newest + 1));
        assert_eq!(
            view.closed(newest),
            Some(Reply::error(Status::Paused, "the sale is paused"))
        );
    }

    #[test]
    fn quick_answers_follow_window_holders_and_flag() {
        let catalog = Catalog::new();
        let e = catalog.insert(&record(), 1);
        e.holders.add([(7, 70)]);
        let quick = |user, now| e.quick_buy_answer(user, NO_TOKEN, now);
        assert_eq!(quick(1, 999).unwrap().status(), Status::NotStarted);
        assert_eq!(quick(1, 2000).unwrap().status(), Status::Ended);
        assert_eq!(quick(7, 1500), Some(Reply::AlreadyBought { order_no: 70 }));
        assert_eq!(quick(1, 1500), None);
        e.view.set_remaining(0);
        assert_eq!(quick(1, 1500).unwrap().status(), Status::SoldOut);
        assert_eq!(e.view.to_goods(1500).state, GoodsState::SoldOut);
        e.view.restocked(3, 1);
        assert_eq!(quick(1, 1500), None);
        assert_eq!(e.view.to_goods(1500).total, 3);
        // A pause closes the sale at once; a cancelled order frees its user.
        let sale = |paused, version| SaleState {
            paused,
            start_ms: 1000,
            end_ms: 2000,
            version,
        };
        e.view.set_sale(&sale(true, 1));
        assert_eq!(quick(1, 1500).unwrap().status(), Status::Paused);
        assert_eq!(e.view.to_goods(1500).state, GoodsState::Paused);
        // An older view of the controls (a refresh racing the admin) is
        // not shown over a newer one.
        e.view.set_sale(&sale(false, 0));
        assert_eq!(quick(1, 1500).unwrap().status(), Status::Paused);
        e.view.set_sale(&sale(false, 2));
        // What the stock store was told, apart from what is shown.
        assert!(e.view.controls_behind(2));
        e.view.controls_passed(2);
        e.view.controls_passed(1);
        assert!(!e.view.controls_behind(2), "never lowered");
        assert!(e.view.controls_behind(3));
        e.holders.remove(7, 70);
        assert_eq!(quick(7, 1500), None);
        // An order cancelled before the writer added it is not added after.
        e.holders.remove(8, 80);
        e.holders.add([(8, 80), (9, 90)]);
        assert_eq!(quick(8, 1500), None);
        assert_eq!(quick(9, 1500), Some(Reply::AlreadyBought { order_no: 90 }));
    }
}

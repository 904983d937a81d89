//! What reactors read of a goods: its description, its sale window and
//! pause, and the units left as of the last stock call. Every field that
//! changes during a sale is an atomic, so that a reader never waits.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use seckill_proto::{Goods, GoodsState, Reply, SaleRules, Status};

use crate::store::{GoodsId, GoodsRecord, SaleState};

pub struct GoodsView {
    pub id: GoodsId,
    pub name: String,
    pub price_cents: u64,
    pub rules: SaleRules,
    paused: AtomicBool,
    start_ms: AtomicU64,
    /// The order store's `sale_version` of the pause and window shown: a
    /// view of a lower version never replaces them.
    sale_version: AtomicU64,
    /// Held by [`set_sale`](Self::set_sale) across its check of the version
    /// and its stores, so that an older view checked before a newer one
    /// was stored cannot overwrite it. Taken last (after the goods' gate,
    /// where the caller holds it) and held for nothing else.
    sale_writer: parking_lot::Mutex<()>,
    /// The newest `sale_version` this server has told the stock store (or
    /// seen it take): a newer one found in the order store, which the
    /// server that saved it may never have passed on, is passed on by the
    /// catalog's refresh, again at each refresh until it is taken.
    controls_passed: AtomicU64,
    end_ms: AtomicU64,
    total: AtomicU32,
    /// As of the last deduction; shown to buyers, never used to decide a sale.
    remaining: AtomicU32,
    /// Set when the stock store answers "sold out"; from then on the reactor
    /// answers BUY itself. Cleared when units come back.
    sold_out: AtomicBool,
}

impl GoodsView {
    pub fn new(record: &GoodsRecord, remaining: u32) -> Self {
        GoodsView {
            id: record.id,
            name: record.name.clone(),
            price_cents: record.price_cents,
            rules: record.rules,
            paused: AtomicBool::new(record.paused),
            start_ms: AtomicU64::new(record.start_ms),
            sale_version: AtomicU64::new(record.sale_version),
            sale_writer: parking_lot::Mutex::new(()),
            controls_passed: AtomicU64::new(0),
            end_ms: AtomicU64::new(record.end_ms),
            total: AtomicU32::new(record.total),
            remaining: AtomicU32::new(remaining),
            sold_out: AtomicBool::new(remaining == 0),
        }
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

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Relaxed)
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

    /// A sale control, once the order store has it (this server's, or
    /// another's seen by the catalog's refresh), unless this view shows a
    /// later one already. The admin worker and a reconciliation call it
    /// under the goods' gate, the refresh from its own thread without it:
    /// one at a time by `sale_writer`. Readers see the fields one by one,
    /// as ever (a BUY racing a control is decided by the stock store).
    pub fn set_sale(&self, sale: &SaleState) {
        let _one = self.sale_writer.lock();
        if sale.version < self.sale_version.load(SeqCst) {
            return;
        }
        self.paused.store(sale.paused, Relaxed);
        self.start_ms.store(sale.start_ms, Relaxed);
        self.end_ms.store(sale.end_ms, Relaxed);
        self.sale_version.store(sale.version, SeqCst);
    }

    /// Whether the stock store may not have the controls of `version` yet,
    /// as far as this server knows.
    pub fn controls_behind(&self, version: u64) -> bool {
        self.controls_passed.load(Relaxed) < version
    }

    /// The stock store took the controls of `version` (or newer ones).
    pub fn controls_passed(&self, version: u64) {
        self.controls_passed.fetch_max(version, Relaxed);
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

    /// Units may have come that this view does not know of (a restock
    /// whose outcome was lost): the sold-out flag comes down, so that BUYs
    /// reach a worker, which answers `busy` while the goods is unsure,
    /// instead of being told `sold_out` by the reactor. The reconciliation
    /// that follows sets both.
    pub fn may_have_more(&self) {
        self.sold_out.store(false, Relaxed);
    }

    /// A restock: new total and remaining.
    pub fn restocked(&self, total: u32, remaining: u32) {
        self.total.store(total, Relaxed);
        self.set_remaining(remaining);
    }

    /// A total seen in the order store (another server's restock): totals
    /// only grow.
    pub fn raise_total(&self, total: u32) {
        self.total.fetch_max(total, Relaxed);
    }
}
